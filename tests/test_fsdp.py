"""FSDP2 (`torch.distributed.fsdp.fully_shard`) on both architectures, two processes on CPUs (torchrun + gloo, the
worker is tests/fsdp_worker.py): the trained weights equal one process's on the same global batches, and a sharded
torch.distributed.checkpoint becomes, through `accelerate merge-weights`, a model directory that `from_pretrained`
loads with the trained model's logits. The commands reach FSDP2 only on GPUs (configs/accelerate/fsdp2.yaml,
benchmarks/gpu_check.sh); this is the model and checkpoint side of it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fsdp_worker
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

TOLERANCE = 1e-5
AUTO_CLASSES = {"causal": AutoModelForCausalLM, "seq2seq": AutoModelForSeq2SeqLM}


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory) -> Path:
    """Both architectures trained by two FSDP2 processes; their outputs (see tests/fsdp_worker.py)."""
    out = tmp_path_factory.mktemp("fsdp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             str(Path(fsdp_worker.__file__)), str(out)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return out


@pytest.mark.parametrize("architecture", fsdp_worker.ARCHITECTURES)
def test_two_fsdp2_processes_train_the_same_weights_as_one(sharded_run, architecture, one_torch_thread):
    sharded = torch.load(sharded_run / f"{architecture}_trained.pt")
    single = fsdp_worker.train(architecture).state_dict()
    initial = fsdp_worker.build_model(architecture).state_dict()
    assert sharded["state_dict"].keys() == single.keys()
    for name, weight in single.items():
        torch.testing.assert_close(sharded["state_dict"][name], weight, atol=TOLERANCE, rtol=0, msg=name)
    moved = max((single[name] - initial[name]).abs().max().item() for name in single)
    assert moved > 100 * TOLERANCE  # the steps changed the weights by far more than the tolerance


@pytest.mark.parametrize("architecture", fsdp_worker.ARCHITECTURES)
def test_a_sharded_checkpoint_merges_into_a_model_that_from_pretrained_loads(sharded_run, architecture, tmp_path,
                                                                            one_torch_thread):
    accelerate = Path(sys.executable).with_name("accelerate")
    subprocess.run([str(accelerate), "merge-weights", str(sharded_run / f"{architecture}_sharded" /
                                                          "pytorch_model_fsdp_0"), str(tmp_path / "merged")],
                   check=True, capture_output=True, timeout=300)
    model = fsdp_worker.build_model(architecture)
    model.load_state_dict(load_file(tmp_path / "merged" / "model.safetensors"))
    model.save_pretrained(tmp_path / "model")

    loaded = AUTO_CLASSES[architecture].from_pretrained(tmp_path / "model", trust_remote_code=True).eval()
    assert loaded.get_output_embeddings().weight is loaded.get_input_embeddings().weight
    trained = torch.load(sharded_run / f"{architecture}_trained.pt")
    torch.testing.assert_close(fsdp_worker.probe_logits(loaded, architecture), trained["logits"],
                               atol=TOLERANCE, rtol=0)
