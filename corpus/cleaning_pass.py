"""Cleaning one source as a stream, with no intermediate files: the same steps as `cleaning.clean_documents`.

`survey` reads the documents once, cleans them on worker processes and decides which are kept (the filters, then exact
duplicates in order, the first kept) and their cleaned UTF-8 sizes, filling the `CleaningReport`; no text is kept.
`cleaned_texts` reads them again and yields the kept documents, cleaned, in order (normalising again only those the
survey saw change), for the token store writer. Both keep at most a few batches in flight, whatever the corpus size.

Memory grows only with the number of documents: 1 byte a document read, 9 a kept one (its size and whether to
normalise it again) and 8-16 a distinct document for the digests of exact deduplication (`SeenDigests`): about
20-30 MB per million documents.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np

from .cleaning import CHANGE_STEPS, CleaningReport, CleaningSettings, drop_reason, empty_after_cleaning, normalize_text
from .dedup import SeenDigests, exact_digest64
from .reader import read_source
from .sources import SourceSettings

BATCH_DOCUMENTS = 512
BATCHES_AHEAD = 8
_DROP_REASONS = ("", "too_short", "mostly_symbols")  # as codes 0, 1, 2


@dataclass
class CleaningSurvey:
    """What the first pass over a source found: its report, which documents read are `keep`, whether each kept one
    must be normalised again (`renormalize`), and the UTF-8 bytes of each kept one after cleaning (`kept_bytes`)."""

    report: CleaningReport
    keep: np.ndarray
    renormalize: np.ndarray
    kept_bytes: np.ndarray

    @property
    def documents_out(self) -> int:
        return len(self.kept_bytes)


@contextmanager
def cleaning_workers(workers: int | None):
    """A pool of `workers` processes for the cleaning (None when fewer than 2 are asked: cleaning in this process).
    Start it before any Rust encoding, so that no process forks after the encoder's threads started."""
    if not workers or workers < 2:
        yield None
        return
    with multiprocessing.get_context().Pool(workers) as pool:
        yield pool


def _batches(items: Iterable, size: int = BATCH_DOCUMENTS) -> Iterator[list]:
    items = iter(items)
    while batch := list(itertools.islice(items, size)):
        yield batch


def _ordered_map(pool, function: Callable, batches: Iterable[list]) -> Iterator:
    """`function` of each batch, in order, on `pool` (in this process without one), at most `BATCHES_AHEAD` batches
    ahead (`Pool.imap` would read the whole input ahead)."""
    if pool is None:
        yield from map(function, batches)
        return
    pending: deque = deque()
    for batch in batches:
        pending.append(pool.apply_async(function, (batch,)))
        if len(pending) > BATCHES_AHEAD:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _survey_batch(texts: list[str], settings: CleaningSettings) -> tuple[np.ndarray, ...]:
    changed = np.zeros((len(texts), len(CHANGE_STEPS)), dtype=bool)
    reasons = np.zeros(len(texts), dtype=np.int8)
    sizes = np.zeros(len(texts), dtype=np.int64)
    digests = np.zeros(len(texts), dtype=np.uint64)
    # Short documents repeat by nature (a speaker's name in a play, a heading): never duplicates.
    comparable = np.zeros(len(texts), dtype=bool)
    for row, text in enumerate(texts):
        text, steps = normalize_text(text, settings)
        changed[row] = [steps[step] for step in CHANGE_STEPS]
        reasons[row] = _DROP_REASONS.index(drop_reason(text, settings))
        sizes[row] = len(text.encode("utf-8"))
        if settings.dedup.exact and len(text) >= settings.dedup.min_chars:
            digests[row], comparable[row] = exact_digest64(text), True
    return changed, reasons, sizes, digests, comparable


def survey(source: SourceSettings, settings: CleaningSettings, *, name: str, pool=None) -> CleaningSurvey:
    """Read and clean the documents of `source` once (see the module docstring). Raises before anything is written
    when a file is missing or not UTF-8, or when no document is left after cleaning. Near-deduplication is not done
    here (it needs the whole corpus: `cleaning.clean_documents`)."""
    report = CleaningReport.for_settings(settings, name)
    seen = SeenDigests()
    keep_parts, renormalize_parts, size_parts = [], [], []
    documents = read_source(source, precheck_utf8=True)
    for changed, reasons, sizes, digests, comparable in _ordered_map(
            pool, partial(_survey_batch, settings=settings), _batches(documents)):
        report.documents_in += len(reasons)
        for column, step in enumerate(CHANGE_STEPS):
            report.changed[step] += int(changed[:, column].sum())
        for code, step in enumerate(_DROP_REASONS[1:], start=1):
            report.dropped[step] += int((reasons == code).sum())
        keep = reasons == 0
        if settings.dedup.exact:
            candidates = np.flatnonzero(keep & comparable)
            duplicates = candidates[~seen.first_seen(digests[candidates])]
            report.dropped["exact_duplicates"] += len(duplicates)
            keep[duplicates] = False
        keep_parts.append(keep)
        renormalize_parts.append(changed[keep].any(axis=1))
        size_parts.append(sizes[keep])
    kept_bytes = np.concatenate(size_parts) if size_parts else np.empty(0, dtype=np.int64)
    report.documents_out = len(kept_bytes)
    if report.documents_out == 0:
        raise empty_after_cleaning(report)
    return CleaningSurvey(report, np.concatenate(keep_parts), np.concatenate(renormalize_parts), kept_bytes)


def _normalize_batch(items: list[tuple[str, bool]], settings: CleaningSettings) -> list[str]:
    return [normalize_text(text, settings)[0] if again else text for text, again in items]


def cleaned_texts(source: SourceSettings, settings: CleaningSettings, found: CleaningSurvey, *, start: int = 0,
                  stop: int | None = None, pool=None) -> Iterator[str]:
    """The kept documents `start` .. `stop` - 1 (numbered among the kept ones) of `source`, cleaned, read again in
    the order `survey` read them (`found` is its result); the documents before are read but not cleaned."""
    stop = found.documents_out if stop is None else stop
    if start >= stop:
        return
    kept = np.flatnonzero(found.keep)[:stop]

    def selected() -> Iterator[tuple[str, bool]]:
        number = 0  # of the next kept document
        for index, text in enumerate(itertools.islice(read_source(source), int(kept[-1]) + 1)):
            if found.keep[index]:
                if number >= start:
                    yield text, bool(found.renormalize[number])
                number += 1

    for batch in _ordered_map(pool, partial(_normalize_batch, settings=settings), _batches(selected())):
        yield from batch
