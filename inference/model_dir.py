"""What the inference commands share: the bare MODEL_DIR argument, and loading a model directory to generate."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from scratchlm.cli import CONFIG_SUFFIXES

logger = logging.getLogger(__name__)

RUN_RECORD_FILE = "scratchlm_run.json"
CHAT_TASKS = ("sft", "dpo")  # fine-tuning tasks whose model answers through its chat template


def move_bare_model_dir(argv: Sequence[str] | None) -> list[str]:
    """`cmd MODEL_DIR ...` -> `cmd --model_dir MODEL_DIR ...` (a bare config file stays where it is)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    named = any(arg in ("--model_dir", "--model-dir") or arg.startswith(("--model_dir=", "--model-dir=")) for arg in argv)
    if named:
        return argv
    for position, arg in enumerate(argv[:2]):
        if arg.startswith("-"):
            break
        if not (position == 0 and arg.endswith(CONFIG_SUFFIXES)):
            return [*argv[:position], "--model_dir", arg, *argv[position + 1 :]]
    return argv


def check_model_dir(model_dir: str | Path) -> Path:
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} holds no config.json: not a model directory")
    return model_dir


def is_instruction_tuned(model_dir: str | Path, tokenizer) -> bool:
    """Whether replies should go through the chat template: a tokenizer with a template, and a run record (when
    there is one) of a fine-tuning run for text generation. A pretrained (base) model only continues text."""
    if not getattr(tokenizer, "chat_template", None):
        return False
    record_file = Path(model_dir) / RUN_RECORD_FILE
    if not record_file.is_file():
        return True
    record = json.loads(record_file.read_text(encoding="utf-8"))
    if record.get("finetune_task") is not None:  # the --task of scratchlm-finetune
        return record["finetune_task"] in CHAT_TASKS
    return record.get("kind") == "finetuning" and record.get("task", "text-generation") == "text-generation"
