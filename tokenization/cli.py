"""`scratchlm-tokenizer`: train a ScratchLM tokenizer on a corpus and save it.

    scratchlm-tokenizer --files 'corpus/*.txt' --vocab-size 8192 --output tok/
    scratchlm-tokenizer --dataset path/to/saved_dataset --text-column content --output tok/
    scratchlm-tokenizer --config tokenizer.yaml

The saved directory loads with `AutoTokenizer.from_pretrained("tok/", trust_remote_code=True)`.
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..cli import parse_args
from .corpus import ERRORS_CHOICES, SAMPLE_BY_CHOICES, read_corpus
from .tokenization_scratchlm import BOS_TOKEN, EOS_TOKEN, PAD_TOKEN
from .train import train_tokenizer

SAMPLE_BYTES = 1 << 20


@dataclass
class TokenizerTrainingArguments:
    output: str = field(metadata={"help": "Directory to save the tokenizer to."})
    files: list[str] = field(
        default_factory=list,
        metadata={"help": "Corpus files, globs or directories (.txt, .jsonl, .json, .csv, .parquet, optionally .gz)."},
    )
    dataset: list[str] = field(
        default_factory=list,
        metadata={"help": "`datasets` data sets: save_to_disk directories or Hub ids (streamed, needs the network)."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Configuration name of a Hub data set."})
    split: str = field(default="train", metadata={"help": "Split of the data set(s) to read."})
    text_column: str = field(default="text", metadata={"help": "Field/column holding the text (not for .txt)."})
    sample_by: str = field(
        default="paragraph",
        metadata={"help": "What a document of a .txt file is.", "choices": list(SAMPLE_BY_CHOICES)},
    )
    errors: str = field(
        default="strict",
        metadata={"help": "Invalid UTF-8: stop with an error, or replace with U+FFFD.", "choices": list(ERRORS_CHOICES)},
    )
    vocab_size: int = field(default=8192, metadata={"help": "Vocabulary size, bytes and special tokens included."})
    min_frequency: int = field(default=2, metadata={"help": "Minimum count of a pair to be merged."})
    bos_token: str = field(default=BOS_TOKEN, metadata={"help": "Beginning-of-sequence token."})
    eos_token: str = field(default=EOS_TOKEN, metadata={"help": "End-of-sequence (and end-of-turn) token."})
    pad_token: str = field(default=PAD_TOKEN, metadata={"help": "Padding token."})
    special_tokens: list[str] = field(default_factory=list, metadata={"help": "More special tokens."})
    extra_tokens: list[str] = field(
        default_factory=list, metadata={"help": "User tokens that are never split but decode as text."}
    )
    show_progress: bool = field(default=True, metadata={"help": "Show progress bars while training."})


def run(args: TokenizerTrainingArguments):
    """Train and save a tokenizer as `args` describe; returns it with a summary of the run."""
    sources = [*args.files, *args.dataset]
    if not sources:
        raise ValueError("give the corpus with --files and/or --dataset")
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} exists and is not a directory")
    read_options = {
        "text_column": args.text_column,
        "errors": args.errors,
        "dataset_config": args.dataset_config,
        "split": args.split,
        "sample_by": args.sample_by,
    }

    stats: dict[str, int] = {}
    start = time.perf_counter()
    tokenizer = train_tokenizer(
        sources=sources,
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        bos_token=args.bos_token,
        eos_token=args.eos_token,
        pad_token=args.pad_token,
        special_tokens=args.special_tokens,
        extra_tokens=args.extra_tokens,
        show_progress=args.show_progress,
        stats=stats,
        **read_options,
    )
    seconds = time.perf_counter() - start
    tokenizer.save_pretrained(output)

    # Compression on the first MB of the corpus (training data, so a slight overestimate).
    sample_bytes = sample_tokens = 0
    for document in itertools.islice(read_corpus(sources, **read_options), 100_000):
        sample_bytes += len(document.encode("utf-8"))
        sample_tokens += len(tokenizer.encode(document))
        if sample_bytes >= SAMPLE_BYTES:
            break
    summary = {
        "output": str(output),
        "vocab_size": len(tokenizer),
        "documents": stats["documents"],
        "megabytes": stats["bytes"] / 1e6,
        "seconds": seconds,
        "megabytes_per_second": stats["bytes"] / 1e6 / max(seconds, 1e-9),
        "bytes_per_token": sample_bytes / max(sample_tokens, 1),
    }
    return tokenizer, summary


def main(argv: list[str] | None = None) -> None:
    (args,) = parse_args([TokenizerTrainingArguments], argv, description=__doc__.split("\n")[0])
    try:
        _, summary = run(args)
    except (FileNotFoundError, ValueError, ConnectionError) as error:
        raise SystemExit(f"scratchlm-tokenizer: error: {error}") from error
    print(
        f"saved tokenizer to {summary['output']}: vocabulary {summary['vocab_size']}, "
        f"{summary['documents']} documents ({summary['megabytes']:.2f} MB) in {summary['seconds']:.1f} s "
        f"({summary['megabytes_per_second']:.2f} MB/s), {summary['bytes_per_token']:.2f} bytes/token on a sample",
        file=sys.stdout,
    )


if __name__ == "__main__":
    main()
