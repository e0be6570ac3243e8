"""`scratchlm-prepare`: a corpus prepared once as token stores, then read by pretraining runs (one process or two
"nodes"); a preparation killed mid-way resumes to the same store."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import psutil
import pytest
import torch
from safetensors.torch import load_file

from scratchlm.tokenization import train_tokenizer
from scratchlm.training.prepare import main as prepare_console
from scratchlm.training.pretrain import main as pretrain_console

prepare_main, pretrain_main = prepare_console.__wrapped__, pretrain_console.__wrapped__
SHARD_TOKENS = "4096"  # ~120 shards for tinyshakespeare: a kill lands mid-way, the index stays small
TORCHRUN = os.path.join(os.path.dirname(sys.executable), "torchrun")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("prepare")
    corpus = data_dir / "tinyshakespeare" / "input.txt"
    tokenizer = train_tokenizer([corpus.read_text(encoding="utf-8")[:200_000]], vocab_size=512, show_progress=False)
    tokenizer.save_pretrained(root / "tokenizer")
    return root


def data_args(workspace, data_dir, cache) -> list[str]:
    return ["--train_files", str(data_dir / "tinyshakespeare" / "input.txt"),
            "--tokenizer_name_or_path", str(workspace / "tokenizer"), "--data_cache_dir", str(cache),
            "--store_shard_tokens", SHARD_TOKENS]


def pretrain_args(workspace, data_dir, cache, output_dir, *extra: str) -> list[str]:
    return [*data_args(workspace, data_dir, cache),
            "--preset", "tiny", "--config_overrides", "max_position_embeddings=64,num_hidden_layers=1",
            "--output_dir", str(output_dir), "--per_device_train_batch_size", "4", "--per_device_eval_batch_size",
            "64", "--learning_rate", "3e-3", "--precision", "fp32", "--logging_steps", "1", "--report_to", "none",
            "--num_samples", "0", "--dataloader_num_workers", "0", *extra]


def store_files(cache) -> dict[str, bytes]:
    return {str(path.relative_to(cache)): path.read_bytes() for path in sorted(cache.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def prepared(workspace, data_dir):
    """A cache holding the prepared corpus (what the pretraining tests read)."""
    cache = workspace / "cache"
    prepare_main(data_args(workspace, data_dir, cache))
    return cache


def test_prepare_prints_the_store_and_a_run_then_reads_it_without_preparing(workspace, data_dir, tmp_path, capsys,
                                                                             caplog):
    cache = tmp_path / "cache"
    prepare_main(data_args(workspace, data_dir, cache))
    printed = capsys.readouterr().out
    (folder,) = cache.iterdir()
    assert f"prepared: {folder}" in printed and "bytes per token" in printed
    assert sorted(path.name for path in folder.iterdir()) == ["meta.json", "train", "validation"]

    caplog.set_level(logging.INFO, logger="scratchlm")
    output = tmp_path / "run"
    pretrain_main(pretrain_args(workspace, data_dir, cache, output, "--max_steps", "1", "--eval_steps", "1",
                                "--save_steps", "1"))
    record = json.loads((output / "scratchlm_run.json").read_text())
    assert record["data_from_cache"] is True
    assert "Pretraining data loaded from cache" in caplog.text and "Tokenizing" not in caplog.text
    assert [path.name for path in cache.iterdir()] == [folder.name]  # nothing prepared again


def test_a_preparation_killed_mid_way_resumes_to_the_same_store(workspace, data_dir, prepared, tmp_path, caplog,
                                                               kill_9_when):
    cache = tmp_path / "cache"

    def a_shard_is_written() -> bool:
        found = list(cache.glob("*/train/index.json"))
        return bool(found) and bool(json.loads(found[0].read_text())["shards"])

    kill_9_when("scratchlm.training.prepare", data_args(workspace, data_dir, cache), a_shard_is_written,
                "the preparation ended before it was killed", timeout=120)
    index = json.loads(next(cache.glob("*/train/index.json")).read_text())
    assert not index["complete"] and not (cache / "intermediate").exists()  # no intermediate files

    caplog.set_level(logging.INFO, logger="scratchlm")
    prepare_main(data_args(workspace, data_dir, cache))  # the same command again
    assert f"{index['shards'][-1]['documents']} train documents stored by an earlier run, skipped" in caplog.text
    assert store_files(cache) == store_files(prepared)  # byte for byte, index and meta included
    (folder,) = cache.iterdir()  # the intermediates are gone
    tokens = sum(json.loads((folder / name / "index.json").read_text())["num_tokens"]
                 for name in ("train", "validation"))
    on_disk = sum(len(content) for content in store_files(cache).values())
    assert on_disk / tokens <= 2.1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_two_nodes(args: list[str]) -> list[subprocess.Popen]:
    """Two torchrun agents, one process each, meeting by c10d rendezvous on this machine: two "nodes"."""
    rendezvous = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d",
                  "--rdzv_endpoint", f"127.0.0.1:{free_port()}", "--rdzv_id", uuid.uuid4().hex[:8]]
    command = [TORCHRUN, *rendezvous, "-m", "scratchlm.training.pretrain", *args]
    return [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                             env={**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"})
            for _ in range(2)]


def kill_node(agent: subprocess.Popen) -> None:
    """kill -9 a "node": its torchrun agent and its worker (torchrun starts each worker in a session of its own)."""
    for process in [*psutil.Process(agent.pid).children(recursive=True), psutil.Process(agent.pid)]:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def wait_all(nodes, timeout=240) -> list[int]:
    return [node.wait(timeout=timeout) for node in nodes]


@pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="torchrun is not installed")
def test_two_nodes_read_the_store_and_resume_after_one_is_killed(workspace, data_dir, prepared, tmp_path):
    common = ("--max_steps", "16", "--save_steps", "4", "--eval_steps", "16", "--seed", "11")
    straight = tmp_path / "straight"
    assert wait_all(launch_two_nodes(pretrain_args(workspace, data_dir, prepared, straight, *common))) == [0, 0]

    interrupted = tmp_path / "interrupted"
    args = pretrain_args(workspace, data_dir, prepared, interrupted, *common)
    nodes = launch_two_nodes(args)
    deadline = time.time() + 240
    while not (interrupted / "checkpoint-4" / "trainer_state.json").exists():
        assert all(node.poll() is None for node in nodes) and time.time() < deadline, "no checkpoint before the end"
        time.sleep(0.02)
    kill_node(nodes[1])
    try:  # the other node's worker loses its peer and stops
        nodes[0].wait(timeout=60)
    except subprocess.TimeoutExpired:
        kill_node(nodes[0])
    wait_all(nodes)
    assert not (interrupted / "model.safetensors").exists(), "the run finished before a node was killed"

    assert wait_all(launch_two_nodes(args)) == [0, 0]  # both nodes again, the same command
    record = json.loads((interrupted / "scratchlm_run.json").read_text())
    assert record["global_step"] == 16 and record["data_from_cache"] is True
    expected, resumed = load_file(straight / "model.safetensors"), load_file(interrupted / "model.safetensors")
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-6, msg=name)
