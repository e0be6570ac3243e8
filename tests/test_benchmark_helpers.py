"""The benchmarks' own bookkeeping: a finished fine-tuning run is never overwritten by a variant with other
arguments, and the training-step profile splits a real step into its parts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_finetune  # noqa: E402
import bench_model  # noqa: E402


def test_a_finished_run_with_other_arguments_is_refused_and_kept(tmp_path):
    output, args = bench_finetune.finetune_arguments("sst2-full-x", tmp_path, Path("base"), ["--seed", "42"])
    output.mkdir(parents=True)
    done = output.parent / "sst2-full-x.done.json"
    done.write_text(json.dumps({"args": args, "wall_time_s": 1.0}))

    bench_finetune.refuse_overwriting("sst2-full-x", tmp_path, Path("base"), ["--seed", "42"])  # same: reused
    with pytest.raises(SystemExit) as error:
        bench_finetune.refuse_overwriting("sst2-full-x", tmp_path, Path("base"),
                                          ["--seed", "42", "--classifier_pooling", "last"])
    message = str(error.value)
    assert "sst2-full-x" in message and "--classifier_pooling '(unset)' -> 'last'" in message
    assert "--tag" in message and str(done) in message
    assert json.loads(done.read_text())["args"] == args  # the finished run's record is untouched


def test_training_step_split_adds_up_and_finds_the_matrix_products(monkeypatch):
    monkeypatch.setattr(bench_model, "BATCH", 2)
    monkeypatch.setattr(bench_model, "SEQ", 16)
    model = bench_model.build("scratchlm", vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=2, num_key_value_heads=2)
    run = bench_model.TrainingRun(model, compiled=False)
    run.batch = bench_model.torch.randint(0, 256, (2, 16))  # within this model's vocabulary
    split = bench_model.training_step_split(run, bf16=False)
    assert split["matmul_s"] > 0 and split["attention_s"] > 0
    assert split["matmul_s"] + split["attention_s"] + split["rest_s"] == pytest.approx(split["step_s"], abs=1e-5)
    assert split["matmul_only_tokens_per_second"] == pytest.approx(32 / split["matmul_s"], rel=0.05)
    assert split["matmul_and_attention_tokens_per_second"] < split["matmul_only_tokens_per_second"]
