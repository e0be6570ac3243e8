"""Export a ScratchLM model to run outside transformers: `scratchlm-export`.

    scratchlm-export MODEL_DIR --format gguf [--outtype f16|q8_0] --output_file model.gguf
    scratchlm-export MODEL_DIR --format gguf --output_dir exports/          (writes exports/NAME-f16.gguf)

MODEL_DIR is a decoder-only ScratchLM model, or the adapter directory of a LoRA run (exported merged into its base).
NAME is the model directory's name, or the run's for the `merged` directory of a LoRA run (`chat/merged` -> chat).
GGUF files run in llama.cpp and Ollama: docs/chat-serve-export.md, "Export: GGUF, llama.cpp and Ollama".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scratchlm.cli import command, move_bare_argument, parse_args

from .gguf_export import OUTTYPES, export_gguf
from .model_dir import check_model_dir, model_name

FORMATS = ("gguf",)


@dataclass
class ExportArguments:
    DEPRECATED_FLAGS = {"model_dir": "model_name_or_path", "output": "output_file"}

    model_name_or_path: str = field(metadata={"help": "The ScratchLM model directory (weights and tokenizer), or a "
                                                      "LoRA adapter directory (exported merged into its base); may be "
                                                      "given first, bare."})
    format: str = field(default="gguf", metadata={"help": f"Output format: one of {', '.join(FORMATS)}."})
    outtype: str = field(default="f16", metadata={"help": f"Weight type: one of {', '.join(OUTTYPES)}."})
    output_file: str | None = field(default=None, metadata={"help": "The file to write (or give --output_dir)."})
    output_dir: str | None = field(
        default=None,
        metadata={"help": "Instead of --output_file: a directory (made if missing) to write an automatically named "
                          "NAME-OUTTYPE.gguf into. NAME is the model directory's name, or its run's for a LoRA run's "
                          "merged/ directory (chat/merged -> chat)."},
    )
    overwrite_output: bool = field(default=False, metadata={"help": "Replace an existing output file."})


def output_path(args: ExportArguments, model_dir: Path) -> Path:
    if (args.output_file is None) == (args.output_dir is None):
        raise ValueError("give exactly one of --output_file FILE or --output_dir DIR")
    path = (Path(args.output_file) if args.output_file
            else Path(args.output_dir) / f"{model_name(model_dir)}-{args.outtype}.gguf")
    if path.is_dir():
        raise IsADirectoryError(f"--output_file {path} is a directory: give a file name or use --output_dir")
    if path.exists() and not args.overwrite_output:
        raise FileExistsError(f"{path} exists; pass --overwrite_output to replace it")
    return path


@command("scratchlm-export")
def main(argv=None) -> None:
    (args,) = parse_args([ExportArguments], move_bare_argument(argv), description=__doc__.split("\n\n")[0])
    if args.format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {args.format!r}")
    if args.outtype not in OUTTYPES:
        raise ValueError(f"--outtype must be one of {', '.join(OUTTYPES)}, got {args.outtype!r}")
    model_dir = check_model_dir(args.model_name_or_path)
    path = export_gguf(model_dir, output_path(args, model_dir), args.outtype)
    print(f"wrote {path} ({args.outtype}, {path.stat().st_size / 1e6:.1f} MB)")
