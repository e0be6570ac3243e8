"""The two ends of a training run, shared by every training command.

`prepare_output_dir` starts one: it refuses a directory holding another run; `last_complete_checkpoint` finds
where to resume. `finish_run` ends one: it saves the model (safetensors, with its remote code), the tokenizer and the
generation config, and writes the metrics JSON, the loss curve, the run record (`scratchlm_run.json`) and the
model card drawn from that record.
"""

from __future__ import annotations

import json
import logging
import platform
import re
import time
from pathlib import Path
from typing import Any

import torch
import transformers

from .callbacks import LOSS_CURVE_FILE, plot_loss_curve

RUN_RECORD_FILE = "scratchlm_run.json"
RUN_SETTINGS_FILE = "scratchlm_settings.json"

logger = logging.getLogger(__name__)


def _checkpoint_is_complete(path: Path) -> bool:
    """The Trainer writes trainer_state.json last: a checkpoint without it, or with unreadable weights, was cut."""
    if not (path / "trainer_state.json").is_file():
        return False
    try:
        from safetensors import safe_open

        for weights in path.glob("*.safetensors"):
            with safe_open(str(weights), framework="pt") as handle:
                handle.keys()
        json.loads((path / "trainer_state.json").read_text())
    except Exception:  # noqa: BLE001 - any unreadable file makes the checkpoint unusable
        return False
    return True


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest checkpoint-N in `output_dir` that was completely written; cut ones are reported and skipped."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    numbered = [(int(m.group(1)), p) for p in output_dir.iterdir()
                if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    for _, path in sorted(numbered, reverse=True):
        if _checkpoint_is_complete(path):
            return str(path)
        logger.warning("skipping %s: the checkpoint is incomplete or corrupt (the run was cut while saving it)", path)
    return None


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def prepare_output_dir(output_dir: str | Path, settings: dict[str, Any], overwrite: bool) -> None:
    """Check that `output_dir` is new or holds this same run, and record the run's settings there.

    `settings` are the options that define the run (model, data, optimisation); a directory holding a run with
    other settings, or anything that is not a ScratchLM run, is refused unless `overwrite` is set.
    """
    output_dir = Path(output_dir)
    settings = _flatten(json.loads(json.dumps(settings, default=str)))
    settings_file = output_dir / RUN_SETTINGS_FILE
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        if not settings_file.is_file():
            raise FileExistsError(
                f"output directory {output_dir} is not empty and holds no ScratchLM run: choose another "
                "--output_dir, or pass --overwrite_output to write into it anyway"
            )
        previous = json.loads(settings_file.read_text())
        changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
        if changed:
            raise FileExistsError(
                f"output directory {output_dir} holds another run (different {', '.join(changed)}): choose "
                "another --output_dir, or pass --overwrite_output to start over in it"
            )
    output_dir.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(json.dumps(settings, indent=2) + "\n")


def architecture_summary(config) -> dict[str, Any]:
    return {
        "model_type": config.model_type,
        "num_hidden_layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_position_embeddings,
        "rope_type": config.rope_parameters.get("rope_type", "default"),
        "tie_word_embeddings": config.tie_word_embeddings,
    }


def hyperparameters(args) -> dict[str, Any]:
    return {
        "learning_rate": args.learning_rate,
        "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        "warmup_steps": args.warmup_steps,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "total_train_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps
        * max(args.world_size, 1),
        "max_steps": args.max_steps,
        "num_train_epochs": args.num_train_epochs,
        "weight_decay": args.weight_decay,
        "adam_beta1": args.adam_beta1,
        "adam_beta2": args.adam_beta2,
        "max_grad_norm": args.max_grad_norm,
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "gradient_checkpointing": bool(args.gradient_checkpointing),
        "seed": args.seed,
        "world_size": args.world_size,
    }


def environment() -> dict[str, str]:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()})"
    return {"torch": torch.__version__, "transformers": transformers.__version__, "device": device}


def finish_run(trainer, tokenizer, record: dict[str, Any], model=None) -> dict[str, Any]:
    """Save everything a finished run leaves in `trainer.args.output_dir` and return the completed record.

    `record` holds what the command knows (task, datasets, metrics, samples, ...); this adds the architecture,
    parameter counts, hyperparameters, environment and file names, then writes the card from it.
    `model` is what gets saved, when it is not `trainer.model` (a merged LoRA model, say).
    """
    from scratchlm.model_cards import write_model_card

    output_dir = Path(trainer.args.output_dir)
    model = model if model is not None else trainer.model
    is_main = trainer.is_world_process_zero()
    trainer.save_model(str(output_dir)) if model is trainer.model else (is_main and model.save_pretrained(output_dir))
    if not is_main:
        return record
    if tokenizer is not None:
        tokenizer.save_pretrained(output_dir)
    base = getattr(model, "get_base_model", lambda: model)()
    if getattr(base, "generation_config", None) is not None and hasattr(base, "generate"):
        base.generation_config.save_pretrained(output_dir)

    record = {
        **record,
        "architecture": architecture_summary(base.config),
        "num_parameters": base.num_parameters(),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "hyperparameters": hyperparameters(trainer.args),
        "global_step": trainer.state.global_step,
        "train_losses": {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry},
        "environment": environment(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if plot_loss_curve(trainer.state.log_history, output_dir / LOSS_CURVE_FILE):
        record["loss_curve"] = LOSS_CURVE_FILE
    (output_dir / "metrics.json").write_text(json.dumps(record.get("metrics", {}), indent=2) + "\n")
    (output_dir / RUN_RECORD_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
    write_model_card(output_dir, record)
    return record
