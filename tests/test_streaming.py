"""`scratchlm-pretrain --streaming`: the stream's shards divided among DDP processes, and a killed run resumed at its
saved stream position without reading again the shards it consumed."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from scratchlm.tokenization import train_tokenizer
from scratchlm.training.pretrain import main as console_main

main = console_main.__wrapped__


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("streaming")
    text = (data_dir / "tinyshakespeare" / "input.txt").read_bytes()[:60_000].decode("utf-8", "ignore")
    (root / "first.txt").write_text(text[:4_000], encoding="utf-8")
    (root / "second.txt").write_text(text[4_000:50_000], encoding="utf-8")
    (root / "validation.txt").write_text(text[50_000:], encoding="utf-8")
    train_tokenizer([text], vocab_size=512, show_progress=False).save_pretrained(root / "tokenizer")
    return root


def stream_args(workspace, output_dir, *extra: str) -> list[str]:
    return [
        "--train_files", str(workspace / "first.txt"), str(workspace / "second.txt"), "--streaming",
        "--tokenizer_name_or_path", str(workspace / "tokenizer"),
        "--preset", "tiny", "--config_overrides", "max_position_embeddings=64,num_hidden_layers=1",
        "--output_dir", str(output_dir), "--data_cache_dir", str(workspace / "cache"),
        "--per_device_train_batch_size", "8", "--learning_rate", "3e-3", "--precision", "fp32",
        "--logging_steps", "1", "--report_to", "none", "--num_samples", "0", "--dataloader_num_workers", "0",
        *extra,
    ]


def test_two_ddp_processes_each_read_only_their_own_file(workspace, tmp_path):
    args = stream_args(workspace, tmp_path / "ddp", "--validation_files", str(workspace / "validation.txt"),
                       "--max_steps", "3", "--save_steps", "3", "--eval_steps", "3")
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    finished = subprocess.run([torchrun, "--nproc_per_node=2", "-m", "scratchlm.training.pretrain", *args],
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "2 shards, 1 per process" in finished.stderr
    lines = finished.stderr.splitlines()
    training = lines[:next(i for i, line in enumerate(lines) if "eval_loss" in line)]  # then the language pass
    reads = [line for line in training if "Stream shard: reading" in line]
    # One read of each file between the two processes: each trained on its own file only.
    assert sorted(line.rsplit("/", 1)[-1] for line in reads) == ["first.txt", "second.txt"], reads


def test_kill_9_resumes_at_the_saved_stream_position_and_matches_an_uninterrupted_run(workspace, tmp_path, caplog,
                                                                                     kill_9_when):
    # No shuffle buffer: the stream's position is saved with each checkpoint. first.txt fills about 4 steps, so
    # checkpoint-8 is inside second.txt, whose tail is held out for validation.
    common = ("--max_steps", "14", "--save_steps", "8", "--eval_steps", "14", "--seed", "5",
              "--shuffle_buffer_size", "1")
    main(stream_args(workspace, tmp_path / "straight", *common))

    interrupted = tmp_path / "interrupted"
    kill_9_when("scratchlm.training.pretrain", stream_args(workspace, interrupted, *common),
                (interrupted / "checkpoint-8" / "stream_position-rank0.pt").exists, "training ended before its checkpoint")
    assert not (interrupted / "model.safetensors").exists(), "the run finished before it was killed"

    caplog.set_level(logging.INFO, logger="scratchlm")
    caplog.clear()  # only the resumed run's records (an earlier test may have left the logger at INFO already)
    main(stream_args(workspace, interrupted, *common))  # the same command again
    messages = [record.getMessage() for record in caplog.records]
    training = messages[:next(i for i, message in enumerate(messages) if "eval_loss" in message)]
    reads = [message for message in training if "Stream shard: reading" in message]
    assert any("second.txt" in read for read in reads) and not any("first.txt" in read for read in reads), reads
    assert any("Stream resumed at its saved position" in message for message in training)

    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(interrupted / "model.safetensors")
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-6, msg=name)
