"""`--optim muon` and `--max_time_minutes` through the training commands: the optimizer and its groups are the
ones the run record states, a continued Muon run equals an uninterrupted one, the budget ends the run with the
rate decayed, DDP processes agree on when the budget is spent, and what cannot work is refused in one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from scratchlm.cli import parse_args
from scratchlm.training.arguments import ScratchLMTrainingArguments
from scratchlm.training.pretrain import main as console_main

main = console_main.__wrapped__  # the command without its console wrapper: a user error arrives as its exception


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, data_dir, tiny_tokenizer):
    root = tmp_path_factory.mktemp("optimizer_options")
    text = (data_dir / "tinyshakespeare" / "input.txt").read_bytes()[:40_000].decode("utf-8", "ignore")
    (root / "corpus.txt").write_text(text, encoding="utf-8")
    tiny_tokenizer.save_pretrained(root / "tokenizer")
    return root


def pretrain_args(workspace, output_dir, *extra: str) -> list[str]:
    return [
        "--train_files", str(workspace / "corpus.txt"), "--tokenizer_name_or_path", str(workspace / "tokenizer"),
        "--preset", "tiny", "--config_overrides", "max_position_embeddings=64,num_hidden_layers=1",
        "--output_dir", str(output_dir), "--data_cache_dir", str(workspace / "cache"),
        "--per_device_train_batch_size", "8", "--learning_rate", "3e-3", "--precision", "fp32",
        "--logging_steps", "1", "--report_to", "none", "--num_samples", "0", "--dataloader_num_workers", "0",
        "--eval_steps", "1000", "--seed", "5", *extra,
    ]


def record(output_dir) -> dict:
    return json.loads((output_dir / "scratchlm_run.json").read_text())


def test_a_muon_run_states_its_groups_and_continued_equals_uninterrupted(workspace, tmp_path):
    muon = ("--optim", "muon", "--muon_learning_rate", "0.02", "--lr_scheduler_type", "constant", "--save_steps", "3")
    main(pretrain_args(workspace, tmp_path / "straight", *muon, "--max_steps", "6"))
    main(pretrain_args(workspace, tmp_path / "continued", *muon, "--max_steps", "3"))
    main(pretrain_args(workspace, tmp_path / "continued", *muon, "--max_steps", "6"))  # a longer run continues it

    straight = load_file(tmp_path / "straight" / "model.safetensors")
    continued = load_file(tmp_path / "continued" / "model.safetensors")
    for name, tensor in straight.items():
        torch.testing.assert_close(continued[name], tensor, rtol=0, atol=1e-6, msg=name)
    hyperparameters = record(tmp_path / "straight")["hyperparameters"]
    assert hyperparameters["optimizer"].startswith("muon for the blocks' 2-D matrices")
    assert (hyperparameters["muon_learning_rate"], hyperparameters["learning_rate"]) == (0.02, 3e-3)
    card = (tmp_path / "straight" / "README.md").read_text()
    assert "muon_learning_rate" in card and "muon for the blocks' 2-D matrices" in card

    adamw = tmp_path / "adamw"
    main(pretrain_args(workspace, adamw, "--lr_scheduler_type", "constant", "--max_steps", "6"))
    assert record(adamw)["hyperparameters"]["optimizer"] == "adamw_torch_fused"
    assert any(not torch.equal(load_file(adamw / "model.safetensors")[name], tensor)
               for name, tensor in straight.items())  # Muon trained differently: the option reached the Trainer


def test_the_time_budget_ends_the_run_with_the_rate_decayed(workspace, tmp_path):
    output = tmp_path / "budget"
    main(pretrain_args(workspace, output, "--max_time_minutes", "0.08", "--decay_fraction", "0.5",
                       "--warmup_steps", "0", "--max_steps", "100000", "--save_steps", "100000"))
    run = record(output)
    assert 2 <= run["global_step"] < 100_000  # the budget ended it, not the step count
    state = json.loads((output / "checkpoint-{}".format(run["global_step"]) / "trainer_state.json").read_text())
    rates = [entry["learning_rate"] for entry in state["log_history"] if "learning_rate" in entry]
    assert rates[0] == pytest.approx(3e-3) and rates[-1] < 0.3 * 3e-3  # the full rate, then decayed at the end
    hyperparameters = run["hyperparameters"]
    assert hyperparameters["lr_scheduler_type"] == "warmup-stable-decay over the time budget"
    assert (hyperparameters["max_time_minutes"], hyperparameters["decay_fraction"]) == (0.08, 0.5)


def test_two_ddp_processes_stop_together_at_the_budget(workspace, tmp_path):
    output = tmp_path / "ddp"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    argv = pretrain_args(workspace, output, "--max_time_minutes", "0.03", "--max_steps", "100000",
                         "--save_steps", "100000", "--optim", "muon")
    argv[argv.index("--per_device_train_batch_size") + 1] = "4"
    subprocess.run([torchrun, "--nproc_per_node=2", "-m", "scratchlm.training.pretrain", *argv], check=True,
                   capture_output=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    run = record(output)  # a process stopping a step before the other would have left them waiting forever
    assert run["hyperparameters"]["world_size"] == 2 and run["global_step"] >= 2


@pytest.mark.parametrize("argv, message", [
    (["--fsdp", "full_shard"], "--fsdp (or an accelerate FSDP config) needs GPUs"),
    (["--optim", "muon", "--muon_learning_rate", "-1"], "--muon_learning_rate must be positive"),
    (["--max_time_minutes", "0"], "--max_time_minutes must be positive"),
    (["--decay_fraction", "1.5"], "--decay_fraction must be in (0, 1]"),
    (["--max_time_minutes", "1", "--warmup_steps", "0.9"], "must end before the decay starts"),
])
def test_what_cannot_work_is_refused_in_one_line(tmp_path, argv, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_args([ScratchLMTrainingArguments], ["--output_dir", str(tmp_path), *argv])


def test_muon_groups_of_the_encoder_decoder_are_its_blocks_matrices(tiny_seq2seq_model, tmp_path):
    from scratchlm.training.optimizers import trainer_optimization

    model = tiny_seq2seq_model()
    (args,) = parse_args([ScratchLMTrainingArguments], ["--output_dir", str(tmp_path), "--optim", "muon"])
    optimizer = trainer_optimization(model, args).optimizer
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for group in optimizer.param_groups if group["muon"] for p in group["params"]}
    attention = [f"self_attn.{m}_proj" for m in "qkvo"]
    expected = {f"model.encoder.layers.{i}.{m}.weight" for i in range(2)
                for m in attention + ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]}
    expected |= {f"model.decoder.layers.{i}.{m}.weight" for i in range(2) for m in
                 attention + [f"cross_attn.{m}_proj" for m in "qkvo"] + ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]}
    assert muon == expected  # the embeddings (tied), norms and the LM head stay with AdamW
    assert all(not group["muon"] for group in optimizer.param_groups[1:])
