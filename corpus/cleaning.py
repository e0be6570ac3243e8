"""Cleaning documents: Unicode NFC, control characters, whitespace, too-short and mostly-symbol documents, exact
duplicates and (optional, not in streaming mode) near-duplicates; each step counted in a `CleaningReport`."""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, IterableDataset

from .dedup import DedupSettings, exact_digest, near_duplicate_keep_indices
from .documents import DOCUMENT_FEATURES, TEXT, num_proc

CHANGE_STEPS = ("unicode_nfc", "control_characters", "whitespace")
DROP_STEPS = ("too_short", "mostly_symbols", "exact_duplicates", "near_duplicates")

# Control characters (Unicode Cc) except tab, line feed and carriage return (the whitespace step turns
# \r\n and \r into \n), plus a stray byte-order mark inside the text.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff]")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
# Runs of spaces between words; indentation at a line start is kept (code, verse).
_INNER_SPACE_RUN = re.compile(r"(?<=\S)[ \t]{2,}(?=\S)")
_BLANK_LINE_RUN = re.compile(r"\n{3,}")
_NOT_WORD_OR_SPACE = re.compile(r"[^\w\s]")


@dataclass(frozen=True)
class CleaningSettings:
    """Which cleaning steps run: NFC, control characters, whitespace, a minimum length, a ceiling on the share of
    symbols (1 keeps all), and deduplication."""

    normalize_unicode: bool = True
    remove_control_characters: bool = True
    normalize_whitespace: bool = True
    min_document_chars: int = 1
    max_symbol_fraction: float = 0.5
    dedup: DedupSettings = field(default_factory=DedupSettings)


@dataclass
class CleaningReport:
    """How many documents each cleaning step changed or dropped.

    For a streaming corpus the counts are filled by the first complete pass over it (`complete`).
    """

    name: str = "train"
    documents_in: int = 0
    documents_out: int = 0
    enabled: dict[str, bool] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHANGE_STEPS, 0))
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_STEPS, 0))
    complete: bool = True

    @classmethod
    def for_settings(cls, settings: CleaningSettings, name: str) -> CleaningReport:
        enabled = {
            "unicode_nfc": settings.normalize_unicode,
            "control_characters": settings.remove_control_characters,
            "whitespace": settings.normalize_whitespace,
            "too_short": settings.min_document_chars > 0,
            "mostly_symbols": settings.max_symbol_fraction < 1,
            "exact_duplicates": settings.dedup.exact,
            "near_duplicates": settings.dedup.near,
        }
        return cls(name=name, enabled=enabled)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CleaningReport:
        return cls(**values)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    def removed_summary(self) -> str:
        return ", ".join(f"{step}: {count}" for step, count in self.dropped.items())

    def to_table(self) -> str:
        status = "" if self.complete else " (counts so far: the stream has not been read to its end)"
        lines = [
            f"Cleaning of the {self.name} documents: {self.documents_in:,} in, {self.documents_out:,} out{status}",
            f"{'step':<20} {'enabled':>7} {'changed':>10} {'dropped':>10}",
        ]
        for step in CHANGE_STEPS + DROP_STEPS:
            on = "yes" if self.enabled.get(step, False) else "no"
            changed = f"{self.changed[step]:,}" if step in self.changed else "-"
            dropped = f"{self.dropped[step]:,}" if step in self.dropped else "-"
            lines.append(f"{step:<20} {on:>7} {changed:>10} {dropped:>10}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_table()


def normalize_text(text: str, settings: CleaningSettings) -> tuple[str, dict[str, bool]]:
    """The text after the NFC, control character and whitespace steps of `settings`, and which steps changed it."""
    changed = dict.fromkeys(CHANGE_STEPS, False)
    if settings.normalize_unicode and not unicodedata.is_normalized("NFC", text):
        text, changed["unicode_nfc"] = unicodedata.normalize("NFC", text), True
    if settings.remove_control_characters:
        cleaned = _CONTROL_CHARACTERS.sub("", text)
        text, changed["control_characters"] = cleaned, cleaned != text
    if settings.normalize_whitespace:
        # Each regular expression runs only where a cheap substring test says it can match (most text is clean).
        cleaned = text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
        if " \n" in cleaned or "\t\n" in cleaned or cleaned.endswith((" ", "\t")):
            cleaned = _TRAILING_SPACE.sub("", cleaned)
        if "  " in cleaned or "\t" in cleaned:
            cleaned = _INNER_SPACE_RUN.sub(" ", cleaned)
        if "\n\n\n" in cleaned:
            cleaned = _BLANK_LINE_RUN.sub("\n\n", cleaned)
        cleaned = cleaned.strip("\n")
        text, changed["whitespace"] = cleaned, cleaned != text
    return text, changed


def _symbol_fraction(text: str) -> float:
    symbols = _NOT_WORD_OR_SPACE.findall(text)
    if not text.isascii():  # combining marks (vowel signs of Indic scripts) are not \w but are part of words
        symbols = [c for c in symbols if not unicodedata.category(c).startswith("M")]
    return len(symbols) / max(len(text), 1)


def drop_reason(text: str, settings: CleaningSettings) -> str:
    """The step that drops the (normalised) text, "" when it is kept: too short, or mostly symbols."""
    if len(text) < settings.min_document_chars:
        return "too_short"
    if settings.max_symbol_fraction < 1 and _symbol_fraction(text) > settings.max_symbol_fraction:
        return "mostly_symbols"
    return ""


def _annotate_batch(batch: dict[str, list], settings: CleaningSettings) -> dict[str, list]:
    """Normalise each document and record what changed, why it would be dropped and its hash."""
    out: dict[str, list] = {TEXT: [], "drop_reason": [], "digest": [], **{step: [] for step in CHANGE_STEPS}}
    for text in batch[TEXT]:
        text, changed = normalize_text(text, settings)
        out[TEXT].append(text)
        for step in CHANGE_STEPS:
            out[step].append(changed[step])
        out["drop_reason"].append(drop_reason(text, settings))
        # Short documents repeat by nature (a speaker's name in a play, a heading): never duplicates.
        out["digest"].append(exact_digest(text) if len(text) >= settings.dedup.min_chars else "")
    return out


def clean_documents(dataset: Dataset | IterableDataset, settings: CleaningSettings, *, name: str = "train",
                    workers: int | None = None):
    """Apply the cleaning steps of `settings` to a "text" data set; returns `(cleaned, CleaningReport)`.

    A `Dataset` is cleaned at once (with `workers` processes) and its report is complete.
    An `IterableDataset` is cleaned lazily, on every pass afresh; its report is filled by the first
    complete pass. Near-deduplication needs a `Dataset`.
    """
    report = CleaningReport.for_settings(settings, name)
    if isinstance(dataset, IterableDataset):
        if settings.dedup.near:
            raise ValueError("near-deduplication needs the whole corpus and does not work with --streaming")
        annotated = dataset.map(_annotate_batch, batched=True, fn_kwargs={"settings": settings})
        report.complete = False
        cleaned = IterableDataset.from_generator(
            _generate_clean_stream, features=DOCUMENT_FEATURES,
            gen_kwargs={"annotated": annotated, "deduplicate": settings.dedup.exact, "report": report},
        )
        return cleaned, report
    return _clean_dataset(dataset, settings, report, workers)


def _generate_clean_stream(annotated: IterableDataset, deduplicate: bool, report: CleaningReport) -> Iterator[dict]:
    # State (the seen hashes, the counts) lives in this generator, so every pass (epoch) starts afresh.
    counts = CleaningReport(name=report.name, enabled=report.enabled)
    seen: set[str] = set()
    for example in annotated:
        counts.documents_in += 1
        for step in CHANGE_STEPS:
            counts.changed[step] += int(example[step])
        if example["drop_reason"]:
            counts.dropped[example["drop_reason"]] += 1
            continue
        if deduplicate and example["digest"]:
            if example["digest"] in seen:
                counts.dropped["exact_duplicates"] += 1
                continue
            seen.add(example["digest"])
        counts.documents_out += 1
        yield {TEXT: example[TEXT]}
    if not report.complete:
        report.documents_in, report.documents_out = counts.documents_in, counts.documents_out
        report.changed, report.dropped, report.complete = counts.changed, counts.dropped, True


def _clean_dataset(dataset: Dataset, settings: CleaningSettings, report: CleaningReport, workers: int | None):
    report.documents_in = len(dataset)
    annotated = dataset.map(
        _annotate_batch, batched=True, num_proc=num_proc(workers, len(dataset)),
        fn_kwargs={"settings": settings}, desc=f"Cleaning {report.name} documents",
    )
    flags = annotated.select_columns([*CHANGE_STEPS, "drop_reason", "digest"]).to_dict()
    for step in CHANGE_STEPS:
        report.changed[step] = int(sum(flags[step]))
    reasons = Counter(reason for reason in flags["drop_reason"] if reason)
    for step in ("too_short", "mostly_symbols"):
        report.dropped[step] = reasons[step]

    keep = [index for index, reason in enumerate(flags["drop_reason"]) if not reason]
    if settings.dedup.exact:
        seen: set[str] = set()
        unique = []
        for index in keep:
            digest = flags["digest"][index]
            if not digest or digest not in seen:
                seen.add(digest)
                unique.append(index)
        report.dropped["exact_duplicates"] = len(keep) - len(unique)
        keep = unique
    cleaned = annotated.select(keep).select_columns([TEXT])
    if settings.dedup.near and len(cleaned) > 1:
        distinct = near_duplicate_keep_indices(
            cleaned, settings.dedup.near_threshold, min_chars=settings.dedup.min_chars, workers=workers
        )
        report.dropped["near_duplicates"] = len(cleaned) - len(distinct)
        cleaned = cleaned.select(distinct)
    report.documents_out = len(cleaned)
    return cleaned, report


def check_not_empty(dataset: Dataset | IterableDataset, report: CleaningReport) -> None:
    empty = len(dataset) == 0 if isinstance(dataset, Dataset) else next(iter(dataset), None) is None
    if empty:
        raise empty_after_cleaning(report)


def empty_after_cleaning(report: CleaningReport) -> ValueError:
    return ValueError(
        f"the {report.name} data is empty after cleaning: {report.documents_in} documents read, removed "
        f"by step: {report.removed_summary()}; relax the cleaning settings (e.g. --min_document_chars, "
        "--max_symbol_fraction) or check --text_column"
    )
