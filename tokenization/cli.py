"""`scratchlm-tokenizer`: train a ScratchLM tokenizer on a corpus and save it.

    scratchlm-tokenizer --train_files 'corpus/*.txt' --vocab_size 8192 --output_dir tok/
    scratchlm-tokenizer --train_files poems.json reviews.csv --text_column poems.json:paragraphs reviews.csv:review \
        --output_dir tok/
    scratchlm-tokenizer --dataset_name path/to/saved_dataset --text_column content --output_dir tok/
    scratchlm-tokenizer tokenizer.yaml

The saved directory loads with `AutoTokenizer.from_pretrained("tok/", trust_remote_code=True)`. The report shows
compression, how many of the corpus's characters are single tokens, and sample tokens as text.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from scratchlm.corpus import ERRORS_CHOICES, SAMPLE_BY_CHOICES, SourceSettings, read_source

from ..cli import command, parse_args
from .readable import character_coverage, readable_tokens, token_bytes
from .tokenization_scratchlm import BOS_TOKEN, DEFAULT_PRETOKENIZER, EOS_TOKEN, PAD_TOKEN, PRETOKENIZERS
from .train import train_tokenizer

logger = logging.getLogger(__name__)

SAMPLE_BYTES = 1 << 20
SAMPLE_TEXT_CHARS = 80
NEWEST_TOKENS_SHOWN = 16
# Files whose presence marks a directory as holding a tokenizer or a model.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "adapter_config.json")


@dataclass
class TokenizerTrainingArguments:
    DEPRECATED_FLAGS: ClassVar[dict[str, str]] = {
        "files": "train_files",
        "output": "output_dir",
        "dataset": "dataset_name",
        "dataset_config": "dataset_config_name",
    }

    output_dir: str = field(metadata={"help": "Directory to save the tokenizer to."})
    train_files: list[str] = field(
        default_factory=list,
        metadata={"help": "Corpus files, globs or directories (.txt, .jsonl, .json, .csv, .parquet, optionally .gz)."},
    )
    dataset_name: list[str] = field(
        default_factory=list,
        metadata={"help": "`datasets` data sets: save_to_disk directories or Hub ids (streamed, needs the network)."},
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration name of a Hub data set."})
    split: str = field(default="train", metadata={"help": "Split of the data set(s) to read."})
    text_column: list[str] = field(
        default_factory=lambda: ["text"],
        metadata={
            "help": "Field/column holding the text (not for .txt): one name for all sources, one per source in "
            "order, or SOURCE:COLUMN entries."
        },
    )
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
    pretokenizer: str = field(
        default=DEFAULT_PRETOKENIZER,
        metadata={
            "help": "How text is split before BPE: qwen2 (llama.cpp knows it by that name) or scratchlm-v1 "
            "(the split of earlier releases).",
            "choices": list(PRETOKENIZERS),
        },
    )
    bos_token: str = field(default=BOS_TOKEN, metadata={"help": "Beginning-of-sequence token."})
    eos_token: str = field(default=EOS_TOKEN, metadata={"help": "End-of-sequence (and end-of-turn) token."})
    pad_token: str = field(default=PAD_TOKEN, metadata={"help": "Padding token."})
    special_tokens: list[str] = field(default_factory=list, metadata={"help": "More special tokens."})
    extra_tokens: list[str] = field(
        default_factory=list, metadata={"help": "User tokens that are never split but decode as text."}
    )
    overwrite_output: bool = field(
        default=False,
        metadata={"help": "Write into --output_dir even if it holds a tokenizer, a model or other files."},
    )
    show_progress: bool = field(default=True, metadata={"help": "Show progress bars while training."})

    def source_settings(self) -> SourceSettings:
        """The corpus these flags name, for the corpus stage."""
        if not self.train_files and not self.dataset_name:
            raise ValueError("give the corpus with --train_files and/or --dataset_name")
        return SourceSettings(files=tuple(self.train_files), datasets=tuple(self.dataset_name),
                              dataset_config=self.dataset_config_name, split=self.split,
                              text_column=tuple(self.text_column), sample_by=self.sample_by, errors=self.errors)


def check_output_dir(output_dir: Path, overwrite: bool) -> None:
    """Refuse to write into a directory that holds a tokenizer, a model or anything else, unless `overwrite`."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--output_dir {output_dir} exists and is not a directory")
    if not output_dir.is_dir() or not any(output_dir.iterdir()):
        return
    if (found := [name for name in MODEL_FILES if (output_dir / name).exists()]) and not overwrite:
        raise FileExistsError(
            f"--output_dir {output_dir} holds a model ({found[0]}); its tokenizer would be replaced by one it was "
            "not trained with: choose another --output_dir, or pass --overwrite_output to replace it anyway"
        )
    if (found := [name for name in TOKENIZER_FILES if (output_dir / name).exists()]) and not overwrite:
        raise FileExistsError(
            f"--output_dir {output_dir} already holds a tokenizer ({found[0]}): choose another --output_dir, "
            "or pass --overwrite_output to replace it"
        )
    if not overwrite:
        raise FileExistsError(
            f"--output_dir {output_dir} is not empty: choose another --output_dir, or pass --overwrite_output "
            "to write into it anyway"
        )
    logger.info("--overwrite_output: writing the tokenizer into %s, replacing its tokenizer files", output_dir)


def _read_when_trained(source: SourceSettings) -> Iterator[str]:
    # Read on the trainer's first request: its own options are checked first, so a bad --vocab_size fails at once.
    yield from read_source(source, precheck_utf8=True)


def run(args: TokenizerTrainingArguments):
    """Train and save a tokenizer as `args` describe; returns it with a summary of the run."""
    source = args.source_settings()
    output_dir = Path(args.output_dir)
    check_output_dir(output_dir, args.overwrite_output)

    stats: dict[str, int] = {}
    start = time.perf_counter()
    tokenizer = train_tokenizer(
        _read_when_trained(source),
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        pretokenizer=args.pretokenizer,
        bos_token=args.bos_token,
        eos_token=args.eos_token,
        pad_token=args.pad_token,
        special_tokens=args.special_tokens,
        extra_tokens=args.extra_tokens,
        show_progress=args.show_progress,
        stats=stats,
    )
    seconds = time.perf_counter() - start
    tokenizer.save_pretrained(output_dir)

    # Measured on the first MB of the corpus (training data, so compression is slightly overestimated).
    sample, sample_bytes = [], 0
    for document in itertools.islice(read_source(source), 100_000):
        sample.append(document)
        sample_bytes += len(document.encode("utf-8"))
        if sample_bytes >= SAMPLE_BYTES:
            break
    coverage = character_coverage(tokenizer, sample)
    first_line = next((line for line in sample[0].splitlines() if line.strip()), "")[:SAMPLE_TEXT_CHARS]
    # The last merges learnt: the highest ids that are neither added tokens nor single bytes.
    added = tokenizer.added_tokens_decoder
    merged_ids = (
        i for i in range(len(tokenizer) - 1, -1, -1) if i not in added and len(token_bytes(tokenizer, [i])[0]) > 1
    )
    newest_ids = list(itertools.islice(merged_ids, NEWEST_TOKENS_SHOWN))
    summary = {
        "output_dir": str(output_dir),
        "vocab_size": len(tokenizer),
        "pretokenizer": tokenizer.pretokenizer,
        "documents": stats["documents"],
        "megabytes": stats["bytes"] / 1e6,
        "seconds": seconds,
        "megabytes_per_second": stats["bytes"] / 1e6 / max(seconds, 1e-9),
        "sample_megabytes": sample_bytes / 1e6,
        "bytes_per_token": sample_bytes / max(coverage.tokens, 1),
        "coverage": coverage,
        "sample_tokens": readable_tokens(tokenizer, tokenizer.encode(first_line)),
        "newest_tokens": readable_tokens(tokenizer, newest_ids),
    }
    return tokenizer, summary


def format_report(summary: dict) -> str:
    def shown(token: str) -> str:  # spaces as ␣, line breaks and other control characters as escapes
        return "".join(
            "␣" if c == " " else c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in token
        )

    def pieces(tokens: list[str]) -> str:
        return " | ".join(shown(token) for token in tokens)

    return "\n".join([
        f"saved tokenizer to {summary['output_dir']}: vocabulary {summary['vocab_size']}, pre-tokenizer "
        f"{summary['pretokenizer']}, {summary['documents']} documents ({summary['megabytes']:.2f} MB) in "
        f"{summary['seconds']:.1f} s ({summary['megabytes_per_second']:.2f} MB/s)",
        f"on a {summary['sample_megabytes']:.2f} MB sample of the corpus: {summary['bytes_per_token']:.2f} "
        f"bytes/token, {summary['coverage'].describe()}",
        f"sample (␣ is a space): {pieces(summary['sample_tokens'])}",
        f"newest tokens: {pieces(summary['newest_tokens'])}",
    ])


@command("scratchlm-tokenizer")
def main(argv: list[str] | None = None) -> None:
    (args,) = parse_args([TokenizerTrainingArguments], argv, description=__doc__.split("\n")[0])
    _, summary = run(args)
    print(format_report(summary))


if __name__ == "__main__":
    main()
