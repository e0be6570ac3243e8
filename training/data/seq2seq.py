"""Sequence-to-sequence data: parallel text or source/target tables -> token ids for an encoder-decoder.

Sources of pairs (`load_pairs`):
- two aligned text files, one sentence a line (`.gz` read as gzip): `source_file=train.en.gz, target_file=train.de.gz`.
  Files of different lengths are an error naming both files and both counts.
- a table (csv/tsv/jsonl/json/parquet files, a `save_to_disk` directory or a `datasets` id, through `load_table`)
  with a source and a target column. A column may hold a list: a list *source* is joined with spaces (SciTLDR's
  abstract is a list of sentences); a list *target* is a set of references (SciTLDR's dev/test hold several
  TL;DRs).

Tokenizing (`prepare_seq2seq_split`): every row keeps all its non-empty references for scoring (`references`);
the loss is on one reference per example. With `train_on="each"` (the default for training) a row with several
references becomes one example per reference, as SciTLDR's authors train; `train_on="first"` keeps the first
reference only (the default for evaluation, so an evaluation example is one row). Rows with an empty source or no
non-empty reference are dropped and counted (an error when nothing is left); sources longer than
`max_source_length` and targets longer than `max_target_length` tokens are truncated and counted. Both sides end
with the tokenizer's eos (the tokenizer's own special tokens, such as BART's bos, are kept), so generation learns to
stop.

Batches are padded by transformers' `DataCollatorForSeq2Seq(tokenizer, model=model)` (labels padded with -100,
`decoder_input_ids` from the model's `prepare_decoder_input_ids_from_labels`).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset

from scratchlm.corpus import text_lines
from scratchlm.tokenization.encoding import encode_with_eos

from .tables import check_columns, load_tables, row_origins

logger = logging.getLogger(__name__)

SOURCE = "source"
TARGET = "target"
TRAIN_ON_CHOICES = ("each", "first")


# ----------------------------------------------------------------------------------------------- reading


def read_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a UTF-8 text file (gzip when it ends in .gz), without their line ends, read by the corpus
    reader (`text_lines`): only "\\n" ends a line, so U+2028 and friends cannot shift one side of a parallel
    corpus against the other; invalid UTF-8 and a corrupt or cut-off .gz are errors naming the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"parallel text file not found: {path}")
    return list(text_lines(path, advice="re-save the file as UTF-8"))


def read_parallel_files(source_file: str | os.PathLike, target_file: str | os.PathLike) -> Dataset:
    """Two aligned text files -> a table with `source` and `target` columns (one row per line pair)."""
    sources, targets = read_lines(source_file), read_lines(target_file)
    if len(sources) != len(targets):
        raise ValueError(
            f"parallel files differ in length: {source_file} has {len(sources):,} lines, {target_file} has "
            f"{len(targets):,}; each line of one must be the translation of the same line of the other"
        )
    return Dataset.from_dict({SOURCE: sources, TARGET: targets})


def load_pairs(*, source_file: str | None = None, target_file: str | None = None,
               table: str | Sequence[str] | None = None, source_column: str = SOURCE, target_column: str = TARGET,
               split: str = "train", dataset_config: str | None = None) -> Dataset:
    """Source/target pairs from two aligned text files or from a table (see the module docstring).

    The result has the columns `source` (a string, list sources joined) and `target` (a list of references).
    """
    if (source_file is None) != (target_file is None):
        raise ValueError("parallel text needs both a source file and a target file")
    if (source_file is None) == (table is None):
        raise ValueError("give either parallel text files (source and target) or a table, not both or neither")
    if source_file is not None:
        return pairs_from_table(read_parallel_files(source_file, target_file))
    return pairs_from_table(load_tables(table, split=split, dataset_config=dataset_config), source_column,
                            target_column, split)


def pairs_from_table(dataset: Dataset, source_column: str = SOURCE, target_column: str = TARGET,
                     split: str = "train") -> Dataset:
    """A loaded table -> `source` (a string; a list of sentences joined with spaces) and `target` (the list of
    non-empty references); a missing column is an error naming it and the columns there are, and a value that is
    neither a string nor a list of strings (a mapping, a number) one naming its file, row and column."""
    check_columns(dataset, {"--source_column": source_column, "--target_column": target_column}, split)
    origins = row_origins(dataset, split)
    sources = [" ".join(_texts(value, origin, source_column))
               for value, origin in zip(dataset[source_column], origins)]
    targets = [_texts(value, origin, target_column) for value, origin in zip(dataset[target_column], origins)]
    return Dataset.from_dict({SOURCE: sources, TARGET: targets})


def _texts(value: Any, origin: str, column: str) -> list[str]:
    """The non-empty texts of a string or a list of strings (None and empty strings are no text)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for text in values:
        if text is not None and not isinstance(text, str):
            what = f"value of type {type(text).__name__}"
            held = f"a list with a {what}" if values is value else f"a {what}"
            raise ValueError(f"{origin}: column {column!r} holds {held} ({text!r:.60}), expected a string or a list "
                             "of strings")
    return [text.strip() for text in values if text is not None and text.strip()]


# -------------------------------------------------------------------------------------------- tokenizing


@dataclass
class Seq2SeqReport:
    """What preprocessing did to one split: rows read, dropped as empty, truncated, and what is left."""

    split: str
    rows: int = 0
    dropped_empty: int = 0
    truncated_sources: int = 0
    truncated_targets: int = 0
    examples: int = 0
    source_tokens: int = 0
    target_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def log(self, max_source_length: int, max_target_length: int) -> None:
        if self.dropped_empty:
            logger.warning("%s: dropped %d of %d rows with an empty source or target", self.split,
                           self.dropped_empty, self.rows)
        if self.truncated_sources:
            logger.warning("%s: truncated %d sources to %d tokens", self.split, self.truncated_sources,
                           max_source_length)
        if self.truncated_targets:
            logger.warning("%s: truncated %d targets to %d tokens", self.split, self.truncated_targets,
                           max_target_length)
        logger.info("%s: %d rows -> %d examples (%d source, %d target tokens)", self.split, self.rows,
                    self.examples, self.source_tokens, self.target_tokens)


def prepare_seq2seq_split(pairs: Dataset, tokenizer, *, split: str, max_source_length: int,
                          max_target_length: int, train_on: str = "first",
                          source_prefix: str = "") -> tuple[Dataset, list[list[str]], Seq2SeqReport]:
    """Pairs (`load_pairs`) -> (tokenized examples, the references of every kept row, report).

    The examples have `input_ids`, `attention_mask` and `labels`; with `train_on="each"` a row with n references
    gives n examples, so the references list (one entry per kept row) is then shorter than the examples.
    `source_prefix` is put before every source (T5-style task prefixes such as "translate English to German: ").
    """
    if train_on not in TRAIN_ON_CHOICES:
        raise ValueError(f"train_on must be one of {', '.join(TRAIN_ON_CHOICES)}, got {train_on!r}")
    report = Seq2SeqReport(split=split, rows=len(pairs))
    kept = [(source, refs) for source, refs in zip(pairs[SOURCE], pairs[TARGET]) if source and refs]
    report.dropped_empty = report.rows - len(kept)
    if not kept:
        raise ValueError(f"no usable {split} example: every one of the {report.rows:,} rows has an empty source "
                         "or target")
    sources = [source_prefix + source for source, _ in kept]
    references = [refs for _, refs in kept]
    per_row = [refs if train_on == "each" else refs[:1] for refs in references]
    source_ids, report.truncated_sources = encode_with_eos(sources, tokenizer, max_source_length)
    target_ids, report.truncated_targets = encode_with_eos(list(itertools.chain.from_iterable(per_row)),
                                                           tokenizer, max_target_length)
    counts = [len(refs) for refs in per_row]
    inputs = list(itertools.chain.from_iterable(itertools.repeat(ids, n) for ids, n in zip(source_ids, counts)))
    dataset = Dataset.from_dict({
        "input_ids": inputs,
        "attention_mask": [[1] * len(ids) for ids in inputs],
        "labels": target_ids,
    })
    report.examples = len(dataset)
    report.source_tokens = sum(map(len, inputs))
    report.target_tokens = sum(map(len, target_ids))
    report.log(max_source_length, max_target_length)
    return dataset, references, report


@dataclass
class Seq2SeqData:
    """Tokenized splits (`train`, `validation`, `test`: `input_ids`, `attention_mask`, `labels`) with what scoring
    and prediction files need: per split the source texts and all references of every kept row (for evaluation
    splits one row is one example, in order)."""

    train: Dataset
    validation: Dataset | None = None
    test: Dataset | None = None
    sources: dict[str, list[str]] = field(default_factory=dict)
    references: dict[str, list[list[str]]] = field(default_factory=dict)
    reports: dict[str, Seq2SeqReport] = field(default_factory=dict)


def build_seq2seq_data(train: Dataset, validation: Dataset | None, test: Dataset | None, tokenizer, *,
                       max_source_length: int = 512, max_target_length: int = 128, train_on: str = "each",
                       source_prefix: str = "") -> Seq2SeqData:
    """Pairs (`load_pairs`/`pairs_from_table`) of each split -> `Seq2SeqData`; training uses `train_on` ("each"
    reference or the "first"), evaluation splits always the first reference for the loss and all for scoring."""
    data = Seq2SeqData(train=None)
    for split, pairs in (("train", train), ("validation", validation), ("test", test)):
        if pairs is None:
            continue
        examples, references, report = prepare_seq2seq_split(
            pairs, tokenizer, split=split, max_source_length=max_source_length, max_target_length=max_target_length,
            train_on=train_on if split == "train" else "first", source_prefix=source_prefix)
        setattr(data, split, examples)
        data.sources[split] = [source for source, refs in zip(pairs[SOURCE], pairs[TARGET]) if source and refs]
        data.references[split] = references
        data.reports[split] = report
    return data


# ------------------------------------------------------------------------------------------- tokenizer


def pair_texts(pairs: Iterable[Dataset]) -> Iterable[str]:
    """Every source and every reference of the given pair tables, for training a joint tokenizer."""
    for table in pairs:
        yield from table[SOURCE]
        for refs in table[TARGET]:
            yield from refs


def train_joint_tokenizer(pairs: Dataset | Sequence[Dataset], *, vocab_size: int = 8192, min_frequency: int = 2,
                          num_sentinels: int = 0, show_progress: bool = False):
    """One byte-level BPE tokenizer trained on both sides of the pairs (English + German, abstract + TL;DR), so
    source, target and LM head share one vocabulary. `num_sentinels` > 0 also reserves T5's span-corruption
    sentinels `<extra_id_0>`... as special tokens (see `scratchlm.training.data.denoising`)."""
    from scratchlm.tokenization import train_tokenizer

    from .denoising import sentinel_tokens

    tables = [pairs] if isinstance(pairs, Dataset) else list(pairs)
    return train_tokenizer(list(pair_texts(tables)), vocab_size=vocab_size, min_frequency=min_frequency,
                           special_tokens=sentinel_tokens(num_sentinels), show_progress=show_progress)


__all__ = [
    "Seq2SeqData",
    "Seq2SeqReport",
    "build_seq2seq_data",
    "load_pairs",
    "pair_texts",
    "pairs_from_table",
    "prepare_seq2seq_split",
    "read_lines",
    "read_parallel_files",
    "train_joint_tokenizer",
]
