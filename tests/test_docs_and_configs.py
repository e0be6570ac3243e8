"""What the documentation and the shipped configs promise: every command line the README shows parses (no
unknown or deprecated flag) and fails only for want of its input files; every config in configs/ parses into its
command's options and names data that exists; CI never passes with the shared data missing."""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import yaml

from scratchlm.cli import parse_args
from scratchlm.training.arguments import (
    FinetuneDataArguments,
    ModelArguments,
    PretrainingDataArguments,
    ScratchLMTrainingArguments,
)
from scratchlm.training.finetune import FinetuneArguments, FinetuneTrainingArguments
from scratchlm.training.generation import SampleArguments
from scratchlm.training.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]


def console_commands() -> dict[str, str]:
    """Every `scratchlm-*` console script of setup.py: name -> "module:function"."""
    text = (ROOT / "setup.py").read_text(encoding="utf-8")
    return dict(re.findall(r'"(scratchlm-[\w-]+)=([\w.]+:\w+)"', text))


COMMANDS = console_commands()


def load_command(name: str):
    module, function = COMMANDS[name].split(":")
    return getattr(importlib.import_module(module), function)


# argparse's own complaints: a README line that draws one of these has drifted from the command.
PARSER_ERRORS = ("unrecognized arguments", "the following arguments are required", "invalid choice",
                 "expected one argument", "is deprecated")


def readme_command_lines() -> list[list[str]]:
    """Every `scratchlm-*` command in the README's bash blocks, as argument lists (continuations joined)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ")[0].strip()
            if line.startswith("scratchlm-"):
                lines.append(shlex.split(line))
    return lines


def test_the_readme_shows_only_real_commands_and_the_main_path():
    shown = {line[0] for line in readme_command_lines()}
    assert shown <= set(COMMANDS), sorted(shown - set(COMMANDS))
    assert {"scratchlm-tokenizer", "scratchlm-init", "scratchlm-pretrain", "scratchlm-finetune",
            "scratchlm-publish"} <= shown


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_answers_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_command(name)(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("argv", readme_command_lines(), ids=lambda argv: " ".join(argv)[:60])
def test_readme_command_lines_parse_and_fail_only_for_their_missing_inputs(argv, tmp_path, monkeypatch, capsys):
    """Run in an empty directory, each README command must get past its options and stop at a missing input
    (a tokenizer, a model, a corpus) with one clear line: that proves every flag it shows is current."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # a missing local model is no Hub id
    args = [str(ROOT / arg) if arg.startswith("configs/") else arg for arg in argv[1:]]
    with pytest.raises(SystemExit) as exit_info:
        load_command(argv[0])(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert not any(problem in err for problem in PARSER_ERRORS), err
    assert err.strip().splitlines()[-1].startswith(f"{argv[0]}: error: "), err


CONFIG_COMMANDS = {
    "pretrain": [ModelArguments, PretrainingDataArguments, ScratchLMTrainingArguments, SampleArguments],
    "bench": [ModelArguments, PretrainingDataArguments, ScratchLMTrainingArguments, SampleArguments],
    "finetune": [ModelArguments, FinetuneDataArguments, FinetuneArguments, FinetuneTrainingArguments,
                 SampleArguments],
}
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_every_config_belongs_to_a_command():
    assert CONFIGS and all(path.name.split("-")[0] in CONFIG_COMMANDS for path in CONFIGS)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.name)
def test_every_shipped_config_parses_and_names_data_that_exists(config, caplog):
    """Parse + validate every shipped config (the command's own dataclasses and checks, no deprecated option);
    the shared data it names must exist (data the user prepares, as the SST-2 files, is described in the file)."""
    parsed = parse_args(CONFIG_COMMANDS[config.name.split("-")[0]], [str(config)])
    assert "deprecated" not in caplog.text
    for name in parsed[1].train_files or []:
        if name.startswith("../shared/"):
            assert (ROOT / name).exists(), f"{config.name} names {name}, which does not exist"
    if config.name.startswith("finetune-"):
        get_task(parsed[2].task)


def _on_shared_data(path: Path) -> bool:
    train_files = yaml.safe_load(path.read_text(encoding="utf-8")).get("train_files") or []
    return bool(train_files) and all(name.startswith("../shared/") for name in train_files)


@pytest.mark.parametrize("config", [path for path in CONFIGS if path.name.startswith("finetune-")
                                    and _on_shared_data(path)], ids=lambda path: path.name)
def test_finetune_configs_build_their_data(config, data_dir, tiny_causal_lm_dir):
    """The data step of each fine-tuning config on its real (shared) data, on the first rows, with a tiny
    tokenizer: the columns, labels and formats it names are right."""
    from transformers import AutoTokenizer

    model_args, data_args, finetune_args, training_args, _ = parse_args(
        CONFIG_COMMANDS["finetune"], [str(config), "--max_train_documents", "40", "--max_eval_samples", "8"])
    data_args.train_files = [str(ROOT / name) for name in data_args.train_files]
    tokenizer = AutoTokenizer.from_pretrained(tiny_causal_lm_dir)
    task = get_task(finetune_args.task)  # the task reads its data (tables, or parallel text for seq2seq)
    train, validation, test = task.load_splits(data_args, seed=training_args.seed, test_files=finetune_args.test_files,
                                               max_eval_samples=finetune_args.max_eval_samples)
    data = task.build_data(train, validation, test, tokenizer, data_args=data_args,
                                                   finetune_args=finetune_args, max_length=64)
    assert len(data.train) > 0 and data.validation is not None


def test_ci_fails_instead_of_skipping_when_the_shared_data_is_missing(tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text("def test_needs_data(data_dir):\n    assert data_dir.is_dir()\n")
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    env = {**os.environ, "SCRATCHLM_DATA": str(tmp_path / "nowhere")}
    for ci, outcome in (("true", "1 error"), ("", "1 skipped")):
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)],
                                cwd=tmp_path, env={**env, "CI": ci}, capture_output=True, text=True, timeout=120)
        assert outcome in result.stdout, result.stdout
