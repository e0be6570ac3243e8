"""A new, randomly initialised ScratchLM model: a preset, field overrides and the ids of its tokenizer."""

from __future__ import annotations

import json

from transformers import GenerationConfig, set_seed

from .configuration_scratchlm import ScratchLMConfig
from .modeling_scratchlm import ScratchLMForCausalLM


def parse_config_overrides(text: str | None, config_class: type) -> dict:
    """`'num_hidden_layers=4,rope_theta=1e4'` -> `{"num_hidden_layers": 4, "rope_theta": 10000.0}` (JSON values),
    every field one of `config_class`'s: the config of the architecture being built."""
    overrides = parse_config_pairs(text)
    check_config_fields(overrides, config_class, "--config_overrides")
    return overrides


def check_config_fields(values: dict, config_class: type, where: str) -> None:
    """A ValueError naming the keys of `values` that are no field of `config_class`."""
    unknown = sorted(set(values) - set(config_class.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown {config_class.__name__} field(s) in {where}: {', '.join(unknown)}")


def parse_config_pairs(text: str | None) -> dict:
    """`'a=1,b=x'` -> `{"a": 1, "b": "x"}`: comma-separated field=value pairs, values read as JSON where they are."""
    overrides = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        if "=" not in item:
            raise ValueError(f"config override {item!r} is not of the form field=value")
        key, raw = (part.strip() for part in item.split("=", 1))
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    return overrides


def special_token_ids(tokenizer) -> dict:
    """The ids a model created for `tokenizer` must know: vocabulary size and bos/eos/pad."""
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def generation_token_ids(config) -> dict:
    """bos/eos/pad of a new model's generation config; padding falls back to eos when the tokenizer has no pad."""
    pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
    return {"bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id, "pad_token_id": pad}


def init_model(preset: str, overrides: dict | None = None, tokenizer=None, seed: int = 42) -> ScratchLMForCausalLM:
    """A model of shape `preset` (with `overrides`), sized and wired for `tokenizer` when one is given."""
    values = dict(overrides or {})
    if tokenizer is not None:
        values.update(special_token_ids(tokenizer))
    config = ScratchLMConfig.from_preset(preset, **values)
    set_seed(seed)
    model = ScratchLMForCausalLM(config)
    model.generation_config = GenerationConfig(**generation_token_ids(config), max_new_tokens=128)
    return model
