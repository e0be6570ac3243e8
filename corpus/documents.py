"""Documents as a `datasets` data set with one column, "text", from `SourceSettings`.

Files, globs and directories are read by `reader.read_corpus` (the one reader of files, also used to train a
tokenizer), so a document is what it defines: for `.txt` a paragraph (or a line, or the whole file: `sample_by`), for
`.jsonl`/`.json`/`.csv`/`.parquet` the text column of one record. `save_to_disk` directories and Hub ids load
through `sources.load_dataset_source`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, Features, IterableDataset, Value

from .formats import check_utf8
from .reader import read_corpus
from .sources import SourceSettings, is_saved_dataset, load_dataset_source, resolve_files

# Bump when the processing changes, so caches written by older code are not reused.
PIPELINE_VERSION = 2
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


def num_proc(workers: int | None, rows: int) -> int | None:
    """The processes for `datasets.map` over `rows` rows: `workers`, unless the data is too small to pay for them."""
    return workers if workers and workers > 1 and rows >= 10 * workers else None


def source_signature(source: SourceSettings) -> dict[str, Any]:
    """What identifies the raw documents of `source`: files with sizes and mtimes, or the data set ids, and how they
    are read."""
    signature: dict[str, Any] = {"text_column": source.text_column, "sample_by": source.sample_by,
                                 "errors": source.errors, "max_documents": source.max_documents}
    if source.files:
        signature["files"] = [
            (str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns) for path in resolve_files(source.files)
        ]
    if source.datasets:
        signature["dataset"] = (source.datasets, source.dataset_config, source.split)
        signature["saved"] = sorted(
            (str(p), p.stat().st_size, p.stat().st_mtime_ns)
            for name in source.datasets if is_saved_dataset(name) for p in Path(name).rglob("*") if p.is_file()
        )
    return signature


def _generate_documents(sources, read_options: dict, max_documents: int | None, signature: str) -> Iterator[dict]:
    # `signature` is unused here; it is part of the arguments so a changed file is a different data set.
    documents = read_corpus(sources, **read_options)
    for count, text in enumerate(documents):
        if max_documents is not None and count >= max_documents:
            return
        yield {TEXT: text}


def load_documents(source: SourceSettings, *, cache_dir: str | Path | None = None) -> Dataset | IterableDataset:
    """The documents of `source` as a data set with one column, "text" (an `IterableDataset` when
    `source.streaming`); `cache_dir` holds the `Dataset`'s arrow files (default: the `datasets` cache).

    Files are resolved and checked (missing files named, invalid UTF-8 located unless `errors="replace"`) before
    anything is read.
    """
    if source.files and source.errors == "strict":
        check_utf8(resolve_files(source.files))
    # A tuple: `datasets` would shard a list across generator calls.
    sources = (*source.files, *(
        load_dataset_source(name, dataset_config=source.dataset_config, split=source.split, streaming=source.streaming)
        for name in source.datasets))
    read_options = {"text_column": source.text_column, "errors": source.errors, "sample_by": source.sample_by}
    signature = content_hash(source_signature(source))
    gen_kwargs = {"sources": sources, "read_options": read_options, "max_documents": source.max_documents,
                  "signature": signature}
    if source.streaming:
        return IterableDataset.from_generator(_generate_documents, features=DOCUMENT_FEATURES, gen_kwargs=gen_kwargs)
    return unwrap_generation_error(
        Dataset.from_generator,
        _generate_documents,
        features=DOCUMENT_FEATURES,
        gen_kwargs=gen_kwargs,
        cache_dir=None if cache_dir is None else str(cache_dir),
        fingerprint=f"documents-{PIPELINE_VERSION}-{source.split}-{signature}",
    )
