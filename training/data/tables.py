"""Fine-tuning tables: labelled rows from csv/tsv/jsonl/json/parquet files, `save_to_disk` directories or Hub ids.

Sources are resolved by the corpus stage (`scratchlm.corpus`: the same files, globs, directories, `save_to_disk`
directories and Hub ids as every command, told apart by one rule) and files are checked there before `datasets`'
builders read them, so a bad file is named in the error: invalid UTF-8 (with the
byte offset), broken JSON (with the line), a JSON object where records are expected, an empty or header-only
CSV. Every row keeps where it came from (`ROW_ORIGIN`: "FILE row N"), so a bad value is reported at its place in
the file even after the rows were concatenated or shuffled for a hold-out split.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset

from scratchlm.corpus import (
    check_utf8,
    format_suffix,
    is_dataset_source,
    json_records,
    load_dataset_source,
    resolve_files,
    text_lines,
    unwrap_generation_error,
)

logger = logging.getLogger(__name__)

TABLE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
ROW_ORIGIN = "__row_origin__"  # "FILE row N" of each row, for error messages; not a column of the data
_NOT_UTF8_ADVICE = "re-save the file as UTF-8"


@dataclass(frozen=True)
class TableSettings:
    """Where a fine-tuning run's tables come from: `train_files`/`validation_files`, or `dataset_name` (with its
    config and splits); without validation data `validation_split_fraction` of the training rows is held out, and at
    most `max_train_documents` rows train. (The names are the flags', so an argument group with them reads as these
    settings.)"""

    train_files: tuple[str, ...] = ()
    validation_files: tuple[str, ...] = ()
    dataset_name: str | None = None
    dataset_config_name: str | None = None
    train_split: str = "train"
    validation_split: str | None = None
    validation_split_fraction: float = 0.1
    max_train_documents: int | None = None

    @classmethod
    def of(cls, options) -> TableSettings:
        """The settings an object with these attributes (the data argument group of a command) holds."""
        values = {field.name: getattr(options, field.name) for field in fields(cls)}
        return cls(**{**values, "train_files": tuple(values["train_files"] or ()),
                      "validation_files": tuple(values["validation_files"] or ())})


@dataclass
class FinetuneReport:
    """What preprocessing did to one split: rows read, dropped (and why), truncated, and what is left."""

    split: str
    rows: int = 0
    dropped_empty: int = 0
    dropped_no_reply: int = 0
    truncated: int = 0
    examples: int = 0
    tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def warn(self, max_length: int) -> None:
        if self.dropped_empty:
            logger.warning("%s: dropped %d of %d rows with an empty text", self.split, self.dropped_empty, self.rows)
        if self.dropped_no_reply:
            logger.warning("%s: dropped %d rows with nothing of the reply left within %d tokens", self.split,
                           self.dropped_no_reply, max_length)
        if self.truncated:
            logger.warning("%s: truncated %d of %d examples to %d tokens", self.split, self.truncated,
                           self.examples, max_length)


def is_empty(text: Any) -> bool:
    return text is None or (isinstance(text, str) and not text.strip())


def row_origins(dataset: Dataset, split: str) -> list[str]:
    """Where each row of `dataset` came from ("FILE row N"), or "SPLIT row N" when that is not known."""
    if ROW_ORIGIN in dataset.column_names:
        return dataset[ROW_ORIGIN]
    return [f"{split} row {row}" for row in range(len(dataset))]


def data_columns(dataset: Dataset) -> list[str]:
    return [column for column in dataset.column_names if column != ROW_ORIGIN]


def _check_json_records(path: Path) -> None:
    """Name the file and line of broken JSON, and refuse what is not a record (an object) in a JSON table."""
    for where, record in json_records(path):
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object (a record), got {type(record).__name__}")


def _check_csv_has_rows(path: Path) -> None:
    lines = list(itertools.islice((line for line in text_lines(path, advice=_NOT_UTF8_ADVICE) if line.strip()), 2))
    if len(lines) < 2:
        raise ValueError(f"{path}: a header but no rows" if lines else f"{path}: no header and no rows")


def _with_origins(table: Dataset, name: str) -> Dataset:
    return table.add_column(ROW_ORIGIN, [f"{name} row {row}" for row in range(1, len(table) + 1)])


def _load_file(path: Path, split: str) -> Dataset:
    suffix = format_suffix(path)
    options = {"delimiter": "\t"} if suffix == ".tsv" else {}
    if TABLE_BUILDERS[suffix] == "json":
        _check_json_records(path)
    elif TABLE_BUILDERS[suffix] == "csv":
        _check_csv_has_rows(path)
    try:
        table = unwrap_generation_error(datasets.load_dataset, TABLE_BUILDERS[suffix], data_files=[str(path)],
                                        split=split, **options)
    except (ValueError, TypeError, OSError) as error:
        raise ValueError(f"{path}: could not be read as a {suffix} table: {error}") from None
    return table


def load_table(source: str, *, split: str = "train", dataset_config: str | None = None,
               with_origins: bool = False) -> Dataset:
    """A table with its original columns, for fine-tuning: csv/tsv/jsonl/json/parquet files (a file, glob or
    directory, all of one format), a `save_to_disk` directory, or a Hub data set id. `with_origins` adds the
    column `ROW_ORIGIN` ("FILE row N") for error messages.

    Files make one split, "train"; `split` may slice it the `datasets` way ("train[:100]"). For a data
    set `split` names its split.
    """
    source = os.fspath(source)
    if is_dataset_source(source, suffixes=tuple(TABLE_BUILDERS)):
        dataset = load_dataset_source(source, dataset_config=dataset_config, split=split, streaming=False)
        if not isinstance(dataset, Dataset):
            raise ValueError(f"{source!r} split {split!r} did not load as a table (got {type(dataset).__name__})")
        return _with_origins(dataset, f"{source} ({split})") if with_origins else dataset
    files = resolve_files(source, suffixes=tuple(TABLE_BUILDERS), what="table")
    formats = {format_suffix(path) for path in files}
    if len({TABLE_BUILDERS[f] for f in formats}) > 1 or formats == {".csv", ".tsv"}:
        raise ValueError(f"{source!r} mixes table formats ({', '.join(sorted(formats))}); use one format")
    if not split.startswith("train"):
        raise ValueError(f"files load as the split 'train' (optionally sliced: 'train[:100]'), got {split!r}")
    check_utf8([path for path in files if format_suffix(path) != ".parquet"], advice=_NOT_UTF8_ADVICE)
    tables = [_load_file(path, "train") for path in files]
    if with_origins:
        tables = [_with_origins(table, str(path)) for table, path in zip(tables, files)]
    table = tables[0] if len(tables) == 1 else datasets.concatenate_datasets(tables)
    if split != "train":  # a slice of the rows of all files, in order
        table = _slice(table, split)
    return table


def _slice(table: Dataset, split: str) -> Dataset:
    """`table` sliced as `datasets` slices a split ("train[:100]", "train[10%:]")."""
    instruction = datasets.ReadInstruction.from_spec(split)
    absolute = instruction.to_absolute({"train": len(table)})[0]
    start = absolute.from_ or 0
    end = len(table) if absolute.to is None else absolute.to
    return table.select(range(start, min(end, len(table))))


def load_tables(sources: str | list[str] | None, *, split: str = "train", dataset_config: str | None = None,
                with_origins: bool = False):
    """`load_table` over one or several sources (their rows concatenated, in order); None for no sources."""
    if not sources:
        return None
    sources = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    tables = [load_table(source, split=split, dataset_config=dataset_config, with_origins=with_origins)
              for source in sources]
    return tables[0] if len(tables) == 1 else datasets.concatenate_datasets(tables)


def check_columns(dataset: Dataset, columns: dict[str, str | None], split: str) -> None:
    """Raise if a needed column is missing; `columns` maps the option naming it (e.g. "--label_column") to it."""
    for option, column in columns.items():
        if column is not None and column not in dataset.column_names:
            raise ValueError(
                f"the {split} data has no column {column!r} (its columns: {', '.join(data_columns(dataset))}); "
                f"name the right one with {option}"
            )


def load_splits(settings: TableSettings, *, seed: int, test_files: list[str] | None = None,
                test_split: str | None = None, max_eval_samples: int | None = None):
    """(train, validation, test) tables; without validation data `validation_split_fraction` of the training rows
    (random rows, seeded) is held out."""
    settings = TableSettings.of(settings)
    if settings.train_files and settings.dataset_name:
        raise ValueError("give either --train_files or --dataset_name, not both")
    if settings.train_files:
        train = load_tables(settings.train_files, with_origins=True)
        validation = load_tables(settings.validation_files, with_origins=True)
        test = load_tables(test_files, with_origins=True)
    elif settings.dataset_name:
        def split(name):
            return load_tables(settings.dataset_name, split=name, dataset_config=settings.dataset_config_name,
                               with_origins=True) if name else None
        train, validation, test = split(settings.train_split), split(settings.validation_split), split(test_split)
    else:
        raise ValueError("no training data: give --train_files or --dataset_name")
    return hold_out_and_limit(train, validation, test, settings, seed=seed, max_eval_samples=max_eval_samples)


def hold_out_and_limit(train, validation, test, settings: TableSettings, *, seed: int,
                       max_eval_samples: int | None = None):
    """Loaded (train, validation, test) -> the same with validation held out of train when there is none and the
    --max_train_documents / --max_eval_samples limits applied."""
    if len(train) == 0:
        raise ValueError("the training data is empty")
    if validation is None and settings.validation_split_fraction > 0:
        held_out = train.train_test_split(test_size=settings.validation_split_fraction, seed=seed, shuffle=True)
        train, validation = held_out["train"], held_out["test"]
        logger.info("no validation data: holding out %d of the training rows", len(validation))
    if settings.max_train_documents:
        train = train.select(range(min(settings.max_train_documents, len(train))))
    if max_eval_samples:
        validation, test = (t.select(range(min(max_eval_samples, len(t)))) if t is not None else None
                            for t in (validation, test))
    return train, validation, test

