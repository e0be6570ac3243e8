"""`scratchlm-init` (a randomly initialised model, the start of pretraining) and `scratchlm-convert`.

    scratchlm-init --preset small --tokenizer_name_or_path tok/ --output_dir init/
    scratchlm-init --architecture seq2seq --preset small --tokenizer_name_or_path tok/ --output_dir init-seq2seq/
    scratchlm-convert --from_llama llama/ --output_dir scratch/
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoTokenizer

from scratchlm.cli import command, parse_args

from .configuration_scratchlm import PRESETS, ScratchLMConfig
from .configuration_scratchlm_seq2seq import SEQ2SEQ_PRESETS, ScratchLMSeq2SeqConfig
from .initialization import init_model, parse_config_overrides
from .initialization_seq2seq import init_seq2seq_model
from .weights import check_safetensors

ARCHITECTURES = ("decoder", "seq2seq")


@dataclass
class InitArguments:
    output_dir: str = field(metadata={"help": "Directory to write the model (and its tokenizer) to."})
    architecture: str = field(
        default="decoder",
        metadata={"help": "decoder (a decoder-only language model) or seq2seq (an encoder-decoder for translation "
                          "and summarisation).", "choices": list(ARCHITECTURES)},
    )
    preset: str = field(default="small", metadata={"help": f"Model shape: decoder {', '.join(PRESETS)}; seq2seq "
                                                           f"{', '.join(SEQ2SEQ_PRESETS)}."})
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Comma-separated field=value pairs applied to the preset, e.g. 'num_hidden_layers=4,"
                          "max_position_embeddings=256'. Values are parsed as JSON where possible."},
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Tokenizer directory: sets vocab_size and the bos/eos/pad ids, and is saved alongside."},
    )
    seed: int = field(default=42, metadata={"help": "Random seed of the initialisation."})
    overwrite_output: bool = field(default=False, metadata={"help": "Replace a model already in --output_dir."})

    DEPRECATED_FLAGS = {"output": "output_dir", "overwrite": "overwrite_output", "tokenizer": "tokenizer_name_or_path"}


@dataclass
class ConvertArguments:
    output_dir: str = field(metadata={"help": "Directory to write the converted model to."})
    from_llama: str | None = field(default=None, metadata={"help": "A Llama checkpoint directory to convert."})
    to_llama: str | None = field(default=None, metadata={"help": "A ScratchLM directory to convert to Llama."})
    overwrite_output: bool = field(default=False, metadata={"help": "Replace a model already in --output_dir."})

    DEPRECATED_FLAGS = {"output": "output_dir", "overwrite": "overwrite_output"}


def check_output_dir(output_dir: Path, overwrite: bool) -> None:
    """A directory that is new, or holds a model `overwrite` allows replacing; never an existing file."""
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"--output_dir {output_dir} is an existing file, not a directory: choose another path")
    if (output_dir / "config.json").exists() and not overwrite:
        raise FileExistsError(f"{output_dir} already holds a model; pass --overwrite_output to replace it")


@command("scratchlm-init")
def init_main(argv=None) -> None:
    (args,) = parse_args([InitArguments], argv, description="Write a randomly initialised ScratchLM model.")
    output_dir = Path(args.output_dir)
    check_output_dir(output_dir, args.overwrite_output)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name_or_path) if args.tokenizer_name_or_path else None
    seq2seq = args.architecture == "seq2seq"
    overrides = parse_config_overrides(args.config_overrides, ScratchLMSeq2SeqConfig if seq2seq else ScratchLMConfig)
    model = (init_seq2seq_model if seq2seq else init_model)(args.preset, overrides, tokenizer, args.seed)
    model.save_pretrained(output_dir)
    if tokenizer is not None:
        tokenizer.save_pretrained(output_dir)
    config = model.config
    layers = (f"{config.encoder_layers} + {config.decoder_layers} encoder + decoder layers" if seq2seq
              else f"{config.num_hidden_layers} layers")
    print(
        f"ScratchLM{' encoder-decoder' if seq2seq else ''} '{args.preset}': {model.num_parameters():,} parameters, "
        f"{layers}, hidden {config.hidden_size}, vocab {config.vocab_size}, context "
        f"{config.max_position_embeddings} -> {output_dir}"
    )


@command("scratchlm-convert")
def convert_main(argv=None) -> None:
    from .convert_llama import convert_llama_directory, convert_scratchlm_directory_to_llama

    (args,) = parse_args([ConvertArguments], argv, description="Convert between Llama and ScratchLM checkpoints.")
    if (args.from_llama is None) == (args.to_llama is None):
        raise ValueError("give exactly one of --from_llama DIR or --to_llama DIR")
    output_dir = Path(args.output_dir)
    check_output_dir(output_dir, args.overwrite_output)
    check_safetensors(args.from_llama or args.to_llama)
    with torch.no_grad():
        if args.from_llama:
            model = convert_llama_directory(args.from_llama, output_dir)
        else:
            model = convert_scratchlm_directory_to_llama(args.to_llama, output_dir)
    print(f"converted {model.num_parameters():,} parameters -> {output_dir} ({model.config.model_type})")
