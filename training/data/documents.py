"""Documents of a pretraining corpus from any source, as a `datasets` data set with one column, "text".

Files, globs and directories are read by `scratchlm.tokenization.corpus` (the project's one reader of files, also
used by `scratchlm-tokenizer`), so a document is what it defines: for `.txt` a paragraph (or a line, or the whole
file: `--sample_by`), for `.jsonl`/`.json`/`.csv`/`.parquet` the text column of one record. `save_to_disk`
directories and Hub ids load through `corpus.load_dataset_source`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, Features, IterableDataset, Value

from scratchlm.tokenization.corpus import (
    TextColumns,
    check_utf8,
    is_saved_dataset,
    load_dataset_source,
    read_corpus,
    resolve_files,
)

from ..arguments import PretrainingDataArguments

# Bump when the processing changes, so caches written by older code are not reused.
PIPELINE_VERSION = 2
DEFAULT_CACHE_DIR = "~/.cache/scratchlm/data"
TEXT = "text"
DOCUMENT_FEATURES = Features({TEXT: Value("string")})


def content_hash(value: Any) -> str:
    """A short hash of a JSON-serialisable value (cache keys, fingerprints)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


def unwrap_generation_error(function, *args, **kwargs):
    """`datasets` wraps errors raised while generating; re-raise the original, clearer one."""
    try:
        return function(*args, **kwargs)
    except datasets.exceptions.DatasetGenerationError as error:
        if error.__cause__ is not None:
            raise error.__cause__ from None
        raise


def cache_root(data_args: PretrainingDataArguments) -> Path:
    return Path(data_args.data_cache_dir or DEFAULT_CACHE_DIR).expanduser()


def intermediate_dir(data_args: PretrainingDataArguments) -> str:
    return str(cache_root(data_args) / "intermediate")


def num_proc(data_args: PretrainingDataArguments | None, rows: int) -> int | None:
    workers = data_args.preprocessing_num_workers if data_args else None
    # A worker process costs more than it saves on a small corpus.
    return workers if workers and workers > 1 and rows >= 10 * workers else None


def has_validation_source(data_args: PretrainingDataArguments) -> bool:
    return bool(data_args.validation_files) or (bool(data_args.dataset_name) and bool(data_args.validation_split))


def text_columns(data_args: PretrainingDataArguments, split: str) -> TextColumns:
    """The text column of each source of `split`: `--text_column` read against the training and validation files
    together (a list of names is matched to them in that order)."""
    train, validation = list(data_args.train_files or []), list(data_args.validation_files or [])
    columns = TextColumns.parse(data_args.text_column, train + validation if train or validation else [None])
    if columns.in_order:
        names = columns.in_order[: len(train)] if split == "train" else columns.in_order[len(train) :]
        return TextColumns(in_order=names)
    return columns


def source_signature(data_args: PretrainingDataArguments, split: str) -> dict[str, Any]:
    """What identifies the raw documents of `split`: files with sizes and mtimes, or the data set id, and how
    they are read."""
    files = data_args.train_files if split == "train" else data_args.validation_files
    signature: dict[str, Any] = {"text_column": data_args.text_column, "sample_by": data_args.sample_by,
                                 "errors": data_args.errors}
    if split == "train":
        signature["max_documents"] = data_args.max_train_documents
    if files:
        resolved = resolve_files(files)
        signature["files"] = [
            (str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns) for path in resolved
        ]
    else:
        name = data_args.dataset_name
        signature["dataset"] = (name, data_args.dataset_config_name, _dataset_split(data_args, split))
        if is_saved_dataset(name):
            signature["saved"] = sorted(
                (str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in Path(name).rglob("*") if p.is_file()
            )
    return signature


def _dataset_split(data_args: PretrainingDataArguments, split: str) -> str:
    return data_args.train_split if split == "train" else data_args.validation_split


def _generate_documents(sources, read_options: dict, max_documents: int | None, signature: str) -> Iterator[dict]:
    # `signature` is unused here; it is part of the arguments so a changed file is a different data set.
    documents = read_corpus(sources, **read_options)
    for count, text in enumerate(documents):
        if max_documents is not None and count >= max_documents:
            return
        yield {TEXT: text}


def load_documents(data_args: PretrainingDataArguments, split: str = "train") -> Dataset | IterableDataset:
    """The raw documents of `split` ("train" or "validation") as a data set with one column, "text".

    Files are resolved and checked (missing files named, invalid UTF-8 located unless `--errors replace`) before
    anything is read. `max_train_documents` limits the training documents. Streaming mode returns an
    `IterableDataset`.
    """
    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
    files = data_args.train_files if split == "train" else data_args.validation_files
    if files:
        sources: Any = tuple(files)  # a tuple: `datasets` would shard a list across generator calls
        if data_args.errors == "strict":
            check_utf8(resolve_files(files))
    elif data_args.dataset_name:
        if split == "validation" and not data_args.validation_split:
            raise ValueError("no validation data: give --validation_files or --validation_split")
        sources = load_dataset_source(
            data_args.dataset_name, dataset_config=data_args.dataset_config_name,
            split=_dataset_split(data_args, split), streaming=data_args.streaming,
        )
    else:
        raise ValueError(f"no {split} data: give --{split}_files or --dataset_name")

    read_options = {"text_column": text_columns(data_args, split), "errors": data_args.errors,
                    "sample_by": data_args.sample_by}
    max_documents = data_args.max_train_documents if split == "train" else None
    signature = content_hash(source_signature(data_args, split))
    gen_kwargs = {"sources": sources, "read_options": read_options, "max_documents": max_documents,
                  "signature": signature}
    if data_args.streaming:
        return IterableDataset.from_generator(_generate_documents, features=DOCUMENT_FEATURES, gen_kwargs=gen_kwargs)
    return unwrap_generation_error(
        Dataset.from_generator,
        _generate_documents,
        features=DOCUMENT_FEATURES,
        gen_kwargs=gen_kwargs,
        cache_dir=intermediate_dir(data_args),
        fingerprint=f"documents-{PIPELINE_VERSION}-{split}-{signature}",
    )
