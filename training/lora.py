"""LoRA for fine-tuning (peft): apply an adapter (new, or an existing one checked against the base and task),
describe it for the run record, and merge it into a standalone model.

The adapter records its base as a resolvable reference: the absolute path of a local base (so it loads from any
working directory), or the Hub id; `scratchlm-publish` replaces a local path by the base's Hub id.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from scratchlm.model_cards.run_record import ADAPTER_WEIGHTS_FILE, MERGED_DIR, RunRecord

from .run import save_record

logger = logging.getLogger(__name__)


@dataclass
class LoraArguments:
    """The options of `scratchlm-finetune --method lora`."""

    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=16, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Layers that get LoRA adapters (default: every attention and MLP projection, and for "
                          "classification the embeddings too)."},
    )
    adapter_name_or_path: str | None = field(
        default=None, metadata={"help": "An existing adapter of this base model to continue training."}
    )
    merge: bool = field(
        default=False, metadata={"help": "Also save the adapter merged into a standalone model in output_dir/merged "
                                         "(loads without peft)."}
    )


def resolvable(name_or_path: str) -> str:
    """A local model directory as an absolute path (usable from any working directory); a Hub id as it is."""
    return str(Path(name_or_path).resolve()) if Path(name_or_path).is_dir() else name_or_path


def _same_base(recorded: str | None, given: str) -> bool:
    if not recorded:
        return True
    if Path(recorded).exists() and Path(given).exists():
        return Path(recorded).resolve() == Path(given).resolve()
    return recorded.rstrip("/") == given.rstrip("/")


def check_adapter(adapter_path: str, base_path: str, model, task_type: str) -> None:
    """Refuse an adapter trained for another task or whose weights do not fit `model` (another base); warn when
    it records another base path but fits (a moved or copied base)."""
    from peft import PeftConfig
    from safetensors import safe_open

    try:
        adapter_config = PeftConfig.from_pretrained(adapter_path)
    except (OSError, ValueError) as error:
        raise ValueError(f"{adapter_path} is not a peft adapter directory: {error}") from None
    if str(adapter_config.task_type) != task_type:
        raise ValueError(f"the adapter {adapter_path} was trained for {adapter_config.task_type}, this run is "
                         f"{task_type}")
    shapes = dict(model.named_parameters())
    mismatches = []
    weights = Path(adapter_path) / ADAPTER_WEIGHTS_FILE
    if weights.is_file():
        with safe_open(str(weights), framework="pt") as handle:
            for key in handle.keys():  # safe_open handles are not iterable
                mismatch = _adapter_weight_mismatch(key, tuple(handle.get_slice(key).get_shape()), model, shapes)
                if mismatch:
                    mismatches.append(mismatch)
    recorded = adapter_config.base_model_name_or_path
    if mismatches:
        raise ValueError(
            f"the adapter {adapter_path} was trained on another base model ({recorded}) than {base_path}: "
            + "; ".join(mismatches[:3]) + (f" (and {len(mismatches) - 3} more)" if len(mismatches) > 3 else "")
        )
    if not _same_base(recorded, base_path):
        logger.warning("the adapter %s records the base model %s, not %s; its weights fit, so it is used",
                       adapter_path, recorded, base_path)


def _adapter_weight_mismatch(key: str, shape: tuple, model, parameters: dict) -> str | None:
    """`key` is a saved adapter tensor ('base_model.model.<module>.lora_A.weight', or a fully saved module's)."""
    name = key.removeprefix("base_model.model.")
    for part, dim, attribute in ((".lora_A.weight", 1, "in_features"), (".lora_B.weight", 0, "out_features")):
        if name.endswith(part):
            module_name = name.removesuffix(part)
            try:
                module = model.get_submodule(module_name)
            except AttributeError:
                return f"the base has no layer {module_name}"
            expected = getattr(module, attribute, None)
            if expected != shape[dim]:
                return f"{module_name} has {attribute}={expected}, the adapter {shape[dim]}"
            return None
    name = name.replace(".modules_to_save.default.", ".").replace(".original_module.", ".")
    if name in parameters and tuple(parameters[name].shape) != shape:
        return f"{name} is {tuple(parameters[name].shape)} in the base, {shape} in the adapter"
    return None


def check_target_modules(model, targets: list[str]) -> None:
    """Every target names a linear or embedding layer of `model` (peft adapts both)."""
    adaptable = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding))})
    missing = [target for target in targets if target not in adaptable]
    if missing:
        raise ValueError(f"--lora_target_modules {', '.join(missing)} not in the model; its linear and embedding "
                         f"layers are {', '.join(adaptable)}")


def apply_lora(model, base: str, lora: LoraArguments, task_type: str, modules_to_save: list[str] | None):
    """`model` with a LoRA adapter: `--adapter_name_or_path` (checked) to continue, else a new one on
    `lora.lora_target_modules`."""
    from peft import LoraConfig, PeftModel, get_peft_model

    # What the adapter records as its base (peft reads the model's `name_or_path`, set from the config at load).
    model.name_or_path = model.config.name_or_path = resolvable(base)
    if lora.adapter_name_or_path:
        check_adapter(lora.adapter_name_or_path, base, model, task_type)
        return PeftModel.from_pretrained(model, lora.adapter_name_or_path, is_trainable=True)
    check_target_modules(model, lora.lora_target_modules)
    config = LoraConfig(
        task_type=task_type,
        r=lora.lora_r,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=list(lora.lora_target_modules),
        modules_to_save=modules_to_save,
    )
    return get_peft_model(model, config)


def adapter_summary(model) -> dict[str, Any]:
    config = model.peft_config[model.active_adapter]
    return {
        "base_model_name_or_path": config.base_model_name_or_path,
        "r": config.r,
        "lora_alpha": config.lora_alpha,
        "lora_dropout": config.lora_dropout,
        "target_modules": sorted(config.target_modules),
        "modules_to_save": sorted(set(config.modules_to_save or [])),
    }


def save_merged_model(model, tokenizer, output_dir: Path, record: RunRecord) -> Path:
    """Merge the LoRA weights into the base (the peft model is used up) and save a standalone model and its card."""
    with warnings.catch_warnings():
        if model.get_output_embeddings() is None:  # a classifier: no output layer shares the adapted embeddings
            warnings.filterwarnings("ignore", message="Model with `tie_word_embeddings=True`")
        merged = model.merge_and_unload()
    target = output_dir / MERGED_DIR
    merged.save_pretrained(target)
    tokenizer.save_pretrained(target)
    if getattr(merged, "generation_config", None) is not None and merged.can_generate():
        merged.generation_config.save_pretrained(target)
    merged_record = dataclasses.replace(record, merged=True, merged_model=None, num_parameters=merged.num_parameters(),
                                        model_name=f"{record.model_name or 'model'}-merged")
    save_record(target, merged_record)
    return target
