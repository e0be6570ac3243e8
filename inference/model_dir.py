"""What the inference commands share: checking a model directory, and whether it answers through its chat template."""

from __future__ import annotations

from pathlib import Path

from scratchlm.model_cards.run_record import RUN_RECORD_FILE, RunRecord


def check_model_dir(model_dir: str | Path) -> Path:
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} holds no config.json: not a model directory")
    return model_dir


def is_instruction_tuned(model_dir: str | Path, tokenizer) -> bool:
    """Whether replies should go through the chat template: a tokenizer with a template, and a run record (when
    there is one) of a chat-tuned run. A pretrained (base) model only continues text."""
    if not getattr(tokenizer, "chat_template", None):
        return False
    if not (Path(model_dir) / RUN_RECORD_FILE).is_file():
        return True
    return RunRecord.load(model_dir).is_instruction_tuned
