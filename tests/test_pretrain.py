"""`scratchlm-pretrain` end to end: outputs, config files, resume after kill -9, DDP, bad input."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from scratchlm.modeling.initialization import init_model
from scratchlm.tokenization import train_tokenizer
from scratchlm.training.pretrain import main as console_main

# The command without its console wrapper, so that a user error reaches the test as the exception it is.
main = console_main.__wrapped__

CORPUS_BYTES = 60_000


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("pretrain")
    text = (data_dir / "tinyshakespeare" / "input.txt").read_bytes()[:CORPUS_BYTES].decode("utf-8", "ignore")
    corpus = root / "shakespeare.txt"
    corpus.write_text(text, encoding="utf-8")
    tokenizer = train_tokenizer([text], vocab_size=512, show_progress=False)
    tokenizer.save_pretrained(root / "tokenizer")
    return root


def base_args(workspace, output_dir, *extra: str) -> list[str]:
    return [
        "--train_files", str(workspace / "shakespeare.txt"),
        "--tokenizer_name_or_path", str(workspace / "tokenizer"),
        "--preset", "tiny", "--config_overrides", "max_position_embeddings=64,num_hidden_layers=1",
        "--output_dir", str(output_dir), "--data_cache_dir", str(workspace / "cache"),
        "--per_device_train_batch_size", "8", "--learning_rate", "3e-3", "--precision", "fp32",
        "--logging_steps", "1", "--report_to", "none", "--num_samples", "0", "--dataloader_num_workers", "0",
        *extra,
    ]


def read_record(output_dir):
    return json.loads((output_dir / "scratchlm_run.json").read_text())


def test_pretrain_end_to_end_outputs(workspace, tmp_path):
    output = tmp_path / "run"
    main(base_args(workspace, output, "--max_steps", "6", "--eval_steps", "3", "--save_steps", "3",
                   "--report_to", "tensorboard", "--num_samples", "1", "--sample_max_new_tokens", "8"))
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "modeling_scratchlm.py", "tokenization_scratchlm.py", "loss_curve.png", "README.md",
                 "metrics.json", "scratchlm_run.json"):
        assert (output / name).is_file(), name
    assert not list(output.glob("*.bin")) or [p.name for p in output.glob("*.bin")] == ["training_args.bin"]
    assert list((output / "runs").rglob("events.out.tfevents.*")), "no TensorBoard logs"
    metrics = json.loads((output / "metrics.json").read_text())
    assert 0 < metrics["eval_bits_per_byte"] < 20 and metrics["eval_perplexity"] > 1
    assert read_record(output)["samples"][0]["completion"] is not None

    model = AutoModelForCausalLM.from_pretrained(output)
    tokenizer = AutoTokenizer.from_pretrained(output)
    assert model.config.eos_token_id == tokenizer.eos_token_id and model.config.vocab_size == len(tokenizer)
    inputs = tokenizer("ROMEO:", return_tensors="pt")
    assert model.generate(**inputs, max_new_tokens=4, do_sample=False).shape[1] == inputs["input_ids"].shape[1] + 4


def test_config_file_with_overrides_and_data_cache(workspace, tmp_path):
    config = tmp_path / "run.yaml"
    args = base_args(workspace, tmp_path / "first", "--max_steps", "2", "--eval_steps", "2", "--save_steps", "2")
    values = {args[i].lstrip("-"): args[i + 1] for i in range(0, len(args), 2)}
    values["train_files"] = [values["train_files"]]
    values["max_steps"] = 99
    config.write_text(yaml.safe_dump(values))
    main(["--config", str(config), "--max_steps", "2"])
    assert read_record(tmp_path / "first")["global_step"] == 2  # the command line overrode the file's 99
    second = dict(values, output_dir=str(tmp_path / "second"), max_steps=1)
    config.write_text(yaml.safe_dump(second))
    main([str(config)])
    assert read_record(tmp_path / "second")["data_from_cache"] is True


def test_kill_9_then_same_command_resumes_to_the_same_result(workspace, tmp_path, kill_9_when):
    common = ("--max_steps", "24", "--save_steps", "4", "--eval_steps", "24", "--seed", "7")
    main(base_args(workspace, tmp_path / "straight", *common))

    interrupted = tmp_path / "interrupted"
    kill_9_when("scratchlm.training.pretrain", base_args(workspace, interrupted, *common),
                (interrupted / "checkpoint-4" / "trainer_state.json").exists, "training ended before its first checkpoint")
    assert not (interrupted / "model.safetensors").exists(), "the run finished before it was killed"

    main(base_args(workspace, interrupted, *common))  # the same command again
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(interrupted / "model.safetensors")
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-6, msg=name)
    assert read_record(interrupted)["metrics"]["eval_loss"] == pytest.approx(
        read_record(tmp_path / "straight")["metrics"]["eval_loss"], abs=1e-6
    )


def test_a_resumed_run_reports_the_whole_runs_training_loss_epoch_and_flos(workspace, tmp_path):
    # A constant learning rate: the run of 4 steps continued to 10 is the run of 10 steps, cut after checkpoint-4.
    common = ("--save_steps", "4", "--eval_steps", "100", "--logging_steps", "3", "--lr_scheduler_type", "constant",
              "--warmup_steps", "0", "--seed", "5")
    main(base_args(workspace, tmp_path / "straight", "--max_steps", "10", *common))
    main(base_args(workspace, tmp_path / "resumed", "--max_steps", "4", *common))
    main(base_args(workspace, tmp_path / "resumed", "--max_steps", "10", *common))
    straight, resumed = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("straight", "resumed"))
    assert resumed["eval_loss"] == pytest.approx(straight["eval_loss"], abs=1e-6)  # the same run
    for key in ("train_loss", "epoch", "total_flos"):
        assert resumed[key] == pytest.approx(straight[key], rel=1e-6), key


def test_a_cut_checkpoint_is_skipped_when_resuming(workspace, tmp_path):
    output = tmp_path / "run"
    main(base_args(workspace, output, "--max_steps", "4", "--save_steps", "2", "--eval_steps", "4",
                   "--save_total_limit", "3"))
    # A run killed while writing checkpoint-6: weights half written, no trainer_state.json.
    cut = output / "checkpoint-6"
    shutil.copytree(output / "checkpoint-4", cut)
    (cut / "trainer_state.json").unlink()
    (cut / "model.safetensors").write_bytes((cut / "model.safetensors").read_bytes()[:1000])
    main(base_args(workspace, output, "--max_steps", "6", "--save_steps", "2", "--eval_steps", "6",
                   "--save_total_limit", "3"))
    assert read_record(output)["global_step"] == 6


def test_a_continued_run_keeps_the_attention_it_started_with(workspace, tmp_path, caplog):
    # Eager and SDPA attention round differently: a run continued without --attn_implementation goes on with the
    # implementation it started with (given, or measured for long runs), as its settings file recorded it.
    output = tmp_path / "run"
    main(base_args(workspace, output, "--max_steps", "2", "--save_steps", "2", "--eval_steps", "2",
                   "--attn_implementation", "eager"))
    assert json.loads((output / "scratchlm_settings.json").read_text())["model.attn_implementation"] == "eager"
    assert read_record(output)["hyperparameters"]["attn_implementation"] == "eager"
    caplog.set_level(logging.INFO, logger="scratchlm")
    main(base_args(workspace, output, "--max_steps", "3", "--save_steps", "3", "--eval_steps", "3"))
    assert "attention: eager, as when this run started" in caplog.text
    record = read_record(output)
    assert record["global_step"] == 3 and record["hyperparameters"]["attn_implementation"] == "eager"
    fresh = tmp_path / "fresh"  # a short new run keeps SDPA, and its card says so
    main(base_args(workspace, fresh, "--max_steps", "1", "--save_steps", "1", "--eval_steps", "1"))
    assert read_record(fresh)["hyperparameters"]["attn_implementation"] == "sdpa"
    assert "attn_implementation" in (fresh / "README.md").read_text()


@pytest.mark.parametrize("streaming", [(), ("--streaming",)], ids=["store", "streaming"])
def test_two_ddp_processes_match_one_process_with_the_same_global_batch(workspace, tmp_path, streaming):
    # Each process reads its own half of every global batch (the store's blocks through the DistributedSampler; a
    # stream through accelerate without dispatching from rank 0): the same 8 blocks a step as one process.
    common = ("--max_steps", "6", "--eval_steps", "6", "--save_steps", "6", "--seed", "3", *streaming)
    single = base_args(workspace, tmp_path / "single", *common)
    main(single)
    ddp = base_args(workspace, tmp_path / "ddp", *common)
    ddp[ddp.index("--per_device_train_batch_size") + 1] = "4"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    subprocess.run([torchrun, "--nproc_per_node=2", "-m", "scratchlm.training.pretrain", *ddp], check=True,
                   capture_output=True, timeout=600)

    single_losses = read_record(tmp_path / "single")["train_losses"]
    ddp_losses = read_record(tmp_path / "ddp")["train_losses"]
    assert single_losses.keys() == ddp_losses.keys() and len(single_losses) == 6
    for step, loss in single_losses.items():
        assert ddp_losses[step] == pytest.approx(loss, rel=1e-3), step


# --- bad input, caught before training starts ----------------------------------------------------------------


def test_missing_training_file_is_named(workspace, tmp_path):
    args = base_args(workspace, tmp_path / "run", "--max_steps", "1")
    args[args.index("--train_files") + 1] = str(tmp_path / "nowhere.txt")
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        main(args)
    assert not (tmp_path / "run").exists()  # nothing half-written: the failed attempt leaves no output directory


def test_corpus_empty_after_cleaning(workspace, tmp_path):
    symbols = tmp_path / "symbols.txt"
    symbols.write_text("#### $$$$ %%%%\n\n@@@@ ^^^^ &&&&\n", encoding="utf-8")
    args = base_args(workspace, tmp_path / "run", "--max_steps", "1")
    args[args.index("--train_files") + 1] = str(symbols)
    with pytest.raises(ValueError, match="empty after cleaning|no documents"):
        main(args)


def test_block_size_beyond_context(workspace, tmp_path):
    with pytest.raises(ValueError, match="block"):
        main(base_args(workspace, tmp_path / "run", "--max_steps", "1", "--block_size", "65"))


def test_tokenizer_that_does_not_fit_the_model(workspace, tmp_path):
    small = init_model("tiny", {"vocab_size": 300})
    small.save_pretrained(tmp_path / "small")
    args = base_args(workspace, tmp_path / "run", "--max_steps", "1", "--model_name_or_path", str(tmp_path / "small"),
                     "--config_overrides", "")  # the base's own shape
    with pytest.raises(ValueError, match="512.*300|300.*512"):
        main(args)


def test_unknown_preset(workspace, tmp_path):
    args = base_args(workspace, tmp_path / "run", "--max_steps", "1")
    args[args.index("--preset") + 1] = "huge"
    with pytest.raises(ValueError, match="unknown ScratchLM preset 'huge'"):
        main(args)


def test_output_directory_holding_another_run(workspace, tmp_path):
    output = tmp_path / "run"
    main(base_args(workspace, output, "--max_steps", "1", "--eval_steps", "1", "--save_steps", "1"))
    with pytest.raises(FileExistsError, match="holds another run.*learning_rate"):
        main(base_args(workspace, output, "--max_steps", "1", "--learning_rate", "1e-4"))
    # The attention implementation changes the speed, not the run: the finished run is found and left as it is.
    weights = (output / "model.safetensors").stat().st_mtime_ns
    main(base_args(workspace, output, "--max_steps", "1", "--eval_steps", "1", "--save_steps", "1",
                   "--attn_implementation", "eager"))
    assert (output / "model.safetensors").stat().st_mtime_ns == weights
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds no ScratchLM run"):
        main(base_args(workspace, other, "--max_steps", "1"))
    assert (other / "notes.txt").read_text() == "mine"


def test_output_dir_that_is_a_file(workspace, tmp_path):
    target = tmp_path / "model.txt"
    target.write_text("mine")
    with pytest.raises(NotADirectoryError, match="is an existing file"):
        main(base_args(workspace, target, "--max_steps", "1"))
    assert target.read_text() == "mine"


# --- a finished run is never lost to what comes after it; a failed attempt locks nothing ------------------------


def test_over_long_sample_prompts_are_skipped_before_training_and_the_run_finishes(workspace, tmp_path, caplog):
    output = tmp_path / "run"
    long_prompt = "ROMEO: " + "speak again bright angel " * 40  # far beyond the 64-token context
    caplog.set_level(logging.WARNING, logger="scratchlm")
    main(base_args(workspace, output, "--max_steps", "1", "--eval_steps", "1", "--save_steps", "1",
                   "--num_samples", "2", "--sample_max_new_tokens", "4",
                   "--sample_prompts", long_prompt, "JULIET:"))
    assert "skipping 1 of 2 --sample_prompts" in caplog.text
    record = read_record(output)
    assert [sample["prompt"] for sample in record["samples"]] == ["JULIET:"]
    for name in ("model.safetensors", "metrics.json", "README.md"):
        assert (output / name).is_file(), name


def test_a_failed_attempt_or_a_dead_run_leaves_the_directory_free_and_a_live_one_keeps_it(workspace, tmp_path):
    output = tmp_path / "run"
    with pytest.raises(ValueError, match="block"):
        main(base_args(workspace, output, "--max_steps", "1", "--block_size", "65"))
    assert not (output / "scratchlm_settings.json").exists()  # the failed attempt recorded no run
    assert not output.exists()  # and left no directory behind
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        output.mkdir()  # a run of another process holds the directory
        (output / ".scratchlm.lock").write_text(f"{other.pid}\n")
        with pytest.raises(FileExistsError, match=f"another run \\(process {other.pid}\\) is writing into"):
            main(base_args(workspace, output, "--max_steps", "1"))
    finally:
        other.kill()
        other.wait()
    # The corrected command takes over the lock of the process that is gone, runs, and releases the lock.
    main(base_args(workspace, output, "--max_steps", "1", "--eval_steps", "1", "--save_steps", "1"))
    assert read_record(output)["global_step"] == 1 and not (output / ".scratchlm.lock").exists()


def test_a_value_the_optimizer_rejects_is_named_first_and_a_run_that_took_no_step_claims_nothing(workspace, tmp_path):
    output = tmp_path / "run"
    with pytest.raises(ValueError, match=r"--learning_rate must be a number at least 0, got -5"):
        main(base_args(workspace, output, "--max_steps", "1", "--learning_rate", "-5"))
    args = base_args(workspace, output, "--max_steps", "1", "--eval_steps", "1", "--save_steps", "1")
    at = args.index("--learning_rate")
    del args[at:at + 2]
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"learning_rate": [1, 2]}))
    with pytest.raises(ValueError, match=r"learning_rate.*\[1, 2\]"):
        main(["--config", str(config), *args])
    assert not output.exists()
    # A mistake the Trainer finds only as training starts (its optimizer's options), before the first step: the
    # attempt leaves nothing behind, and the corrected command (another learning rate) is not "another run".
    with pytest.raises(ValueError):
        main([*args, "--learning_rate", "3e-3", "--optim_args", "betas"])
    assert not output.exists()
    main([*args, "--learning_rate", "1e-3"])
    assert read_record(output)["hyperparameters"]["learning_rate"] == 1e-3


def test_a_finished_run_is_left_as_it_is_and_a_failed_overwrite_keeps_it(workspace, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(workspace)
    output = tmp_path / "run"
    args = base_args(workspace, output, "--max_steps", "2", "--eval_steps", "2", "--save_steps", "1",
                     "--save_total_limit", "2")
    args[args.index("--tokenizer_name_or_path") + 1] = "./tokenizer"
    main(args)
    before = {path.relative_to(output): path.stat().st_mtime_ns for path in output.rglob("*") if path.is_file()}

    caplog.set_level(logging.WARNING, logger="scratchlm")
    args[args.index("--tokenizer_name_or_path") + 1] = "tokenizer/"  # the same directory, spelled otherwise
    main(args)  # the same run, finished: nothing is retrained, deleted or rewritten
    assert "already holds this run" in caplog.text
    with pytest.raises(ValueError, match="block"):
        main([*args, "--overwrite_output", "--block_size", "65"])  # fails before it starts: nothing replaced
    after = {path.relative_to(output): path.stat().st_mtime_ns for path in output.rglob("*") if path.is_file()}
    assert after == before and (output / "checkpoint-2").is_dir()

    main([*args, "--max_steps", "3"])  # a longer run continues it
    assert read_record(output)["global_step"] == 3


def make_full_device(path) -> None:
    """A device node like Linux's /dev/full at `path`: every write to it fails as on a full disk (ENOSPC)."""
    if sys.platform != "linux":
        pytest.skip("/dev/full is Linux's")
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 7))
    except PermissionError:
        pytest.skip("making a device node needs root (CAP_MKNOD)")


def test_a_full_disk_during_a_checkpoint_is_one_line_naming_it_and_the_same_command_resumes(workspace, tmp_path):
    output = tmp_path / "run"
    common = ("--save_steps", "2", "--eval_steps", "100", "--save_total_limit", "3")
    main(base_args(workspace, output, "--max_steps", "2", *common))
    # Continued to 4 steps, the run writes checkpoint-4 onto a full disk: its trainer_state.json is a full device.
    (output / "checkpoint-4").mkdir()
    make_full_device(output / "checkpoint-4" / "trainer_state.json")
    message = r"the disk is full: the checkpoint .*checkpoint-4 could not be written .* resumes from .*checkpoint-2"
    with pytest.raises(OSError, match=message):
        main(base_args(workspace, output, "--max_steps", "4", *common))
    assert not (output / "checkpoint-4").exists()  # the cut checkpoint is gone, the complete one kept
    main(base_args(workspace, output, "--max_steps", "4", *common))  # room again: the same command
    assert read_record(output)["global_step"] == 4 and (output / "checkpoint-4" / "trainer_state.json").is_file()


def test_a_local_path_that_does_not_exist_is_named_at_once(workspace, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for flag, value in (("--tokenizer_name_or_path", "./tokenzier"), ("--model_name_or_path", "runs/pretrained/final"),
                        ("--model_name_or_path", str(tmp_path / "missing"))):
        args = base_args(workspace, tmp_path / "run", "--max_steps", "1", flag, value)
        started = time.perf_counter()
        with pytest.raises(FileNotFoundError, match=f"{flag} {value}: no such file or directory"):
            main(args)
        assert time.perf_counter() - started < 5  # not the Hub's retries
    assert not (tmp_path / "run").exists()


def test_config_overrides_of_a_pretrained_base_are_applied_and_checked(workspace, tmp_path):
    base = tmp_path / "base"
    main(base_args(workspace, base, "--max_steps", "1", "--eval_steps", "1", "--save_steps", "1"))
    args = base_args(workspace, tmp_path / "run", "--max_steps", "1", "--eval_steps", "1", "--save_steps", "1",
                     "--model_name_or_path", str(base))
    with pytest.raises(ValueError, match=r"--config_overrides hidden_dropout=abc: expected a dropout"):
        main([*args, "--config_overrides", "hidden_dropout=abc"])
    with pytest.raises(ValueError, match=r"--config_overrides num_hidden_layers=2: .* trained with num_hidden_layers=1"):
        main([*args, "--config_overrides", "num_hidden_layers=2"])
    main([*args, "--config_overrides", "hidden_dropout=0.1"])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["hidden_dropout"] == 0.1


def test_a_user_error_is_one_line_and_exit_status_2(workspace, tmp_path, capsys):
    args = base_args(workspace, tmp_path / "run", "--max_steps", "1")
    args[args.index("--train_files") + 1] = str(tmp_path / "nowhere.txt")
    with pytest.raises(SystemExit) as exit_info:
        console_main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("scratchlm-pretrain: error: ")
