"""What the documentation and the shipped configs promise: every command line the README, the guides in docs/ and
benchmarks/README.md show parses (no unknown or deprecated flag) and fails only for want of its input files; the
README stays short and every relative link in them leads to a file (and heading) that exists; every config in
configs/ parses into its command's options and names data that exists; CI never passes with the shared data
missing."""

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
    ModelArguments,
    PretrainingDataArguments,
    ScratchLMTrainingArguments,
)
from scratchlm.training.finetune import parse_finetune_args
from scratchlm.training.generation import SampleArguments

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


README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
README_MAX_LINES = 300


def command_lines(path: Path) -> list[list[str]]:
    """Every `scratchlm-*` command in a Markdown file's bash blocks, as argument lists (continuations joined)."""
    text = path.read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ")[0].strip()
            if line.startswith("scratchlm-"):
                lines.append(shlex.split(line))
    return lines


DOC_COMMAND_LINES = [(path, argv) for path in DOCS for argv in command_lines(path)]


def test_the_readme_shows_only_real_commands_and_the_main_path():
    shown = {line[0] for line in command_lines(README)}
    assert shown <= set(COMMANDS), sorted(shown - set(COMMANDS))
    assert {"scratchlm-tokenizer", "scratchlm-init", "scratchlm-pretrain", "scratchlm-finetune",
            "scratchlm-publish"} <= shown


def test_the_guides_exist_and_show_only_real_commands():
    assert {"tokenizer.md", "pretraining.md", "finetuning.md", "translation-and-summarisation.md", "chinese.md",
            "chat-serve-export.md", "scale-out.md", "model.md"} <= {path.name for path in DOCS}
    shown = {argv[0] for _, argv in DOC_COMMAND_LINES}
    assert shown <= set(COMMANDS), sorted(shown - set(COMMANDS))


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines < README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/ or benchmarks/README.md"


def heading_anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def relative_links(path: Path) -> list[str]:
    """The targets of the Markdown links of a file that are not web addresses (code blocks and spans skipped)."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("path", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(path):
    broken = []
    for target in relative_links(path):
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists() or ROOT not in linked.parents:
            broken.append(f"{target} (no such file in the repository)")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {linked.relative_to(ROOT)})")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_answers_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_command(name)(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize(("doc", "argv"), DOC_COMMAND_LINES,
                         ids=[f"{path.relative_to(ROOT)}: {' '.join(argv)[:60]}" for path, argv in DOC_COMMAND_LINES])
def test_doc_command_lines_parse_and_fail_only_for_their_missing_inputs(doc, argv, tmp_path, monkeypatch, capsys,
                                                                        caplog):
    """Run in an empty directory, each command of the README, the guides and the benchmarks page must get past its
    options and stop at a missing input (a tokenizer, a model, a corpus) with one clear line: that proves every flag
    it shows is current (a deprecated one is logged, which pytest captures in `caplog`, not on stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # a missing local model is no Hub id
    args = [str(ROOT / arg) if arg.startswith("configs/") else arg for arg in argv[1:]]
    with pytest.raises(SystemExit) as exit_info:
        load_command(argv[0])(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, f"{doc.name}: {err}"
    assert not any(problem in err for problem in PARSER_ERRORS), err
    assert "is deprecated" not in caplog.text, caplog.text
    assert err.strip().splitlines()[-1].startswith(f"{argv[0]}: error: "), err


CONFIG_COMMANDS = {
    "pretrain": [ModelArguments, PretrainingDataArguments, ScratchLMTrainingArguments, SampleArguments],
    "bench": [ModelArguments, PretrainingDataArguments, ScratchLMTrainingArguments, SampleArguments],
    "finetune": None,  # groups by task: parse_finetune_args
}
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_every_config_belongs_to_a_command():
    assert CONFIGS and all(path.name.split("-")[0] in CONFIG_COMMANDS for path in CONFIGS)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.name)
def test_every_shipped_config_parses_and_names_data_that_exists(config, caplog):
    """Parse + validate every shipped config (the command's own dataclasses and checks, no deprecated option);
    the shared data it names must exist (data the user prepares, as the SST-2 files, is described in the file)."""
    groups = CONFIG_COMMANDS[config.name.split("-")[0]]
    parsed = parse_args(groups, [str(config)]) if groups else parse_finetune_args([str(config)])
    assert "deprecated" not in caplog.text
    for name in parsed[1].train_files or []:
        if name.startswith("../shared/"):
            assert (ROOT / name).exists(), f"{config.name} names {name}, which does not exist"


def _on_shared_data(path: Path) -> bool:
    train_files = yaml.safe_load(path.read_text(encoding="utf-8")).get("train_files") or []
    return bool(train_files) and all(name.startswith("../shared/") for name in train_files)


@pytest.mark.parametrize("config", [path for path in CONFIGS if path.name.startswith("finetune-")
                                    and _on_shared_data(path)], ids=lambda path: path.name)
def test_finetune_configs_build_their_data(config, data_dir, tiny_causal_lm_dir):
    """The data step of each fine-tuning config on its real (shared) data, on the first rows, with a tiny
    tokenizer: the columns, labels and formats it names are right."""
    from transformers import AutoTokenizer

    model_args, data_args, finetune_args, training_args, task, _, _ = parse_finetune_args(
        [str(config), "--max_train_documents", "40", "--max_eval_samples", "8"])
    data_args.train_files = [str(ROOT / name) for name in data_args.train_files]
    tokenizer = AutoTokenizer.from_pretrained(tiny_causal_lm_dir)
    # the task, with the config's options, reads its data (tables, or parallel text for seq2seq)
    train, validation, test = task.load_splits(data_args, seed=training_args.seed, test_files=finetune_args.test_files,
                                               max_eval_samples=finetune_args.max_eval_samples)
    data = task.build_data(train, validation, test, tokenizer, data_args=data_args, max_length=64)
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
