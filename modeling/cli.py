"""`scratchlm-init` (a randomly initialised model, the start of pretraining) and `scratchlm-convert`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoTokenizer, GenerationConfig, set_seed

from .configuration_scratchlm import PRESETS, ScratchLMConfig
from .modeling_scratchlm import ScratchLMForCausalLM


@dataclass
class InitArguments:
    output: str = field(metadata={"help": "Directory to write the model (and its tokenizer) to."})
    preset: str = field(default="small", metadata={"help": f"Model shape: one of {', '.join(PRESETS)}."})
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Comma-separated field=value pairs applied to the preset, e.g. 'num_hidden_layers=4,"
                          "max_position_embeddings=256'. Values are parsed as JSON where possible."},
    )
    tokenizer: str | None = field(
        default=None,
        metadata={"help": "Tokenizer directory: sets vocab_size and the bos/eos/pad ids, and is saved alongside."},
    )
    seed: int = field(default=42, metadata={"help": "Random seed of the initialisation."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a model already in --output."})


def parse_overrides(text: str | None) -> dict:
    overrides = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        if "=" not in item:
            raise ValueError(f"config override {item!r} is not of the form field=value")
        key, raw = (part.strip() for part in item.split("=", 1))
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    unknown = sorted(set(overrides) - set(ScratchLMConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown ScratchLMConfig field(s) in --config_overrides: {', '.join(unknown)}")
    return overrides


def special_token_ids(tokenizer) -> dict:
    """The ids a model created for `tokenizer` must know: vocabulary size and bos/eos/pad."""
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def init_model(preset: str, overrides: dict | None = None, tokenizer=None, seed: int = 42) -> ScratchLMForCausalLM:
    values = dict(overrides or {})
    if tokenizer is not None:
        values.update(special_token_ids(tokenizer))
    config = ScratchLMConfig.from_preset(preset, **values)
    set_seed(seed)
    model = ScratchLMForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id if config.pad_token_id is not None else config.eos_token_id,
        max_new_tokens=128,
    )
    return model


def ensure_writable(output: Path, overwrite: bool) -> None:
    if (output / "config.json").exists() and not overwrite:
        raise FileExistsError(f"{output} already holds a model; pass --overwrite to replace it")


def init_main(argv=None) -> None:
    from scratchlm.cli import parse_args

    (args,) = parse_args([InitArguments], argv, description="Write a randomly initialised ScratchLM model.")
    output = Path(args.output)
    ensure_writable(output, args.overwrite)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer) if args.tokenizer else None
    model = init_model(args.preset, parse_overrides(args.config_overrides), tokenizer, args.seed)
    model.save_pretrained(output)
    if tokenizer is not None:
        tokenizer.save_pretrained(output)
    config = model.config
    print(
        f"ScratchLM '{args.preset}': {model.num_parameters():,} parameters, {config.num_hidden_layers} layers, "
        f"hidden {config.hidden_size}, vocab {config.vocab_size}, context {config.max_position_embeddings} "
        f"-> {output}"
    )


@dataclass
class ConvertArguments:
    output: str = field(metadata={"help": "Directory to write the converted model to."})
    from_llama: str | None = field(default=None, metadata={"help": "A Llama checkpoint directory to convert."})
    to_llama: str | None = field(default=None, metadata={"help": "A ScratchLM directory to convert to Llama."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a model already in --output."})


def convert_main(argv=None) -> None:
    from scratchlm.cli import parse_args

    from .convert_llama import convert_llama_directory, convert_scratchlm_directory_to_llama

    (args,) = parse_args([ConvertArguments], argv, description="Convert between Llama and ScratchLM checkpoints.")
    if (args.from_llama is None) == (args.to_llama is None):
        raise SystemExit("give exactly one of --from_llama DIR or --to_llama DIR")
    output = Path(args.output)
    ensure_writable(output, args.overwrite)
    with torch.no_grad():
        if args.from_llama:
            model = convert_llama_directory(args.from_llama, output)
        else:
            model = convert_scratchlm_directory_to_llama(args.to_llama, output)
    print(f"converted {model.num_parameters():,} parameters -> {output} ({model.config.model_type})")
