"""`read_corpus`: the documents of many sources as one stream, one string at a time.

Used by tokenizer training and by the pretraining data pipeline. Files are read by `formats` (what a document is,
per format); `datasets` data sets are iterated in batches or streamed from the Hub. `text_column` is one name for
every source, or one per source (`TextColumns`): `FILE:COLUMN` entries (`poems.json:paragraphs reviews.csv:review`),
or as many names as sources, matched in order.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from typing import Any

from .formats import BATCH_SIZE, as_text, check_utf8, read_file
from .sources import (
    ERRORS_CHOICES,
    SAMPLE_BY_CHOICES,
    SourceSettings,
    TextColumns,
    is_dataset_source,
    load_dataset_source,
    resolve_files,
)


def _read_dataset(dataset, text_column: str, name: str) -> Iterator[str]:
    columns = dataset.column_names
    if columns is not None and text_column not in columns:
        raise ValueError(f"data set {name}: no text column {text_column!r}; columns found: {', '.join(columns)}")
    for batch in dataset.iter(batch_size=BATCH_SIZE):
        if text_column not in batch:
            raise ValueError(
                f"data set {name}: no text column {text_column!r}; columns found: {', '.join(batch)}"
            )
        for value in batch[text_column]:
            if text := as_text(value, text_column, f"data set {name}"):
                yield text



def read_corpus(
    sources: Any,
    *,
    text_column: str | Sequence[str] | TextColumns = "text",
    errors: str = "strict",
    dataset_config: str | None = None,
    split: str = "train",
    sample_by: str = "paragraph",
    precheck_utf8: bool = False,
) -> Iterator[str]:
    """An iterator over the documents of `sources`, one string at a time (see the module docstring).

    `sources` is one source or a list of them: files, globs, directories, `save_to_disk` directories,
    `datasets` objects, or Hub data set ids. `text_column` is one name, or one per source (`TextColumns`).
    `errors="strict"` raises on invalid UTF-8 naming the file and
    byte offset; `errors="replace"` substitutes U+FFFD. Missing or empty files raise here, before any
    reading; the iterator raises `ValueError` at its end when no text was read at all. `precheck_utf8=True`
    (with `errors="strict"`) checks the encoding of every file before returning, so a long job fails at
    once on a bad byte near the end of its corpus.
    """
    if errors not in ERRORS_CHOICES:
        raise ValueError(f"errors must be one of {ERRORS_CHOICES}, got {errors!r}")
    if sample_by not in SAMPLE_BY_CHOICES:
        raise ValueError(f"sample_by must be one of {SAMPLE_BY_CHOICES}, got {sample_by!r}")
    sources = [sources] if not isinstance(sources, (list, tuple)) else list(sources)
    if not sources:
        raise ValueError("no corpus sources given")

    columns = TextColumns.parse(text_column, sources)
    # Resolve every file source before reading any, so a typo in the last one fails at once.
    plan: list[tuple[str, Any, str]] = []
    for index, source in enumerate(sources):
        if is_dataset_source(source):
            plan.append(("dataset", source, columns.column(index, source)))
        else:
            plan.extend(("file", path, columns.column(index, source, path)) for path in resolve_files(source))

    if precheck_utf8 and errors == "strict":
        check_utf8(source for kind, source, _ in plan if kind == "file")
    return _read_plan(plan, errors, dataset_config, split, sample_by, sources)


def _read_plan(plan, errors, dataset_config, split, sample_by, sources) -> Iterator[str]:
    count = 0
    for kind, source, text_column in plan:
        if kind == "file":
            documents = read_file(source, text_column=text_column, errors=errors, sample_by=sample_by)
        else:
            dataset = load_dataset_source(source, dataset_config=dataset_config, split=split)
            name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__
            documents = _read_dataset(dataset, text_column, repr(name))
        for document in documents:
            count += 1
            yield document
    if count == 0:
        raise ValueError(f"the corpus is empty: no text was read from {', '.join(map(str, sources))}")


def read_source(settings: SourceSettings, *, precheck_utf8: bool = False) -> Iterator[str]:
    """The documents `settings` name (at most its `max_documents`), one string at a time (see `read_corpus`)."""
    documents = read_corpus(
        list(settings.sources), text_column=settings.text_column, errors=settings.errors,
        dataset_config=settings.dataset_config, split=settings.split, sample_by=settings.sample_by,
        precheck_utf8=precheck_utf8,
    )
    return itertools.islice(documents, settings.max_documents)
