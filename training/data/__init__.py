"""The data pipeline of ScratchLM: documents -> cleaned documents -> train/validation -> token blocks.

One module serves pretraining (`build_pretraining_data`) and, through `load_table`, fine-tuning.

Documents are read by `scratchlm.tokenization.corpus` (the project's one reader), so a document is what it
defines: for `.txt` a *paragraph* (lines up to the next blank line, line breaks inside kept), for
`.jsonl`/`.json`/`.csv`/`.parquet` the `text_column` of one record. Paragraphs matter for plain text: the
eos token goes between documents, so line documents would put an eos after every line of a play.

Cleaning (each step counted in a `CleaningReport`): Unicode NFC, control characters, whitespace, too-short
and mostly-symbol documents, exact duplicates, and (optional, not in streaming mode) MinHash near-duplicates.

Validation text is `validation_files`/`validation_split` or, without them, the *last* documents of the
training corpus holding `validation_fraction` of its UTF-8 bytes, as closely as document boundaries allow
(nanoGPT's split of tinyshakespeare: the first 90% of the bytes train, the last 10% validate).

Packing: every document's tokens are followed by `eos`, the stream is cut into blocks of `block_size`
tokens. Training drops the last partial block; validation keeps it (shorter), so every validation token
is evaluated and `validation_bytes` is exactly the UTF-8 size of the validation documents, for bits per
byte = summed validation nats / (validation_bytes * ln 2).

Processed data is saved under `data_cache_dir` (default `~/.cache/scratchlm/data`) in a folder named by a
hash of everything that decides its content (`pretraining_cache_key`); a later run with the same settings
loads it instead of preprocessing. Streaming mode reads the corpus on the fly and caches nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset, Features, IterableDataset, Value

from scratchlm.tokenization.corpus import (
    check_utf8,
    is_saved_dataset,
    load_dataset_source,
    read_corpus,
    resolve_files,
)

from ..arguments import DataArguments

logger = logging.getLogger(__name__)

# Bump when the processing changes, so caches written by older code are not reused.
PIPELINE_VERSION = 1
DEFAULT_CACHE_DIR = "~/.cache/scratchlm/data"
TEXT = "text"
DOCUMENT_FEATURES = Features({TEXT: Value("string")})
BLOCK_FEATURES = Features({"input_ids": datasets.List(Value("int32"))})

CLEANING_FIELDS = (
    "normalize_unicode", "remove_control_characters", "normalize_whitespace", "min_document_chars",
    "max_symbol_fraction", "deduplicate", "near_deduplicate", "near_duplicate_threshold", "dedup_min_chars",
)  # fmt: skip
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
_ANY_WHITESPACE_RUN = re.compile(r"\s+")

# MinHash near-deduplication: character 5-grams work for spaced and unspaced scripts alike.
MINHASH_PERMUTATIONS = 128
MINHASH_SHINGLE_CHARS = 5
_MINHASH_SEED = 1234
_MERSENNE_61 = np.uint64((1 << 61) - 1)


# --------------------------------------------------------------------------------------------- report


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
    def for_settings(cls, data_args: DataArguments, name: str) -> CleaningReport:
        enabled = {
            "unicode_nfc": data_args.normalize_unicode,
            "control_characters": data_args.remove_control_characters,
            "whitespace": data_args.normalize_whitespace,
            "too_short": data_args.min_document_chars > 0,
            "mostly_symbols": data_args.max_symbol_fraction < 1,
            "exact_duplicates": data_args.deduplicate,
            "near_duplicates": data_args.near_deduplicate,
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


# ------------------------------------------------------------------------------------------ checks


def check_block_size(block_size: int, model_config) -> None:
    """Raise a `ValueError` when `block_size` is not a positive integer or exceeds the model's context."""
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    context = getattr(model_config, "max_position_embeddings", None)
    if context is not None and block_size > context:
        raise ValueError(
            f"block_size={block_size} is larger than the model's context length "
            f"(max_position_embeddings={context}); use --block_size {context} or less"
        )


def check_tokenizer_fits(tokenizer, model_config) -> None:
    """Raise a `ValueError` when the tokenizer has ids the model's embedding table does not."""
    if len(tokenizer) > model_config.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary holds only "
            f"vocab_size={model_config.vocab_size}; use a model with vocab_size >= {len(tokenizer)} "
            "or a smaller tokenizer"
        )


def _check_data_args(data_args: DataArguments) -> None:
    if not data_args.train_files and not data_args.dataset_name:
        raise ValueError("no training data: give --train_files or --dataset_name")
    if data_args.train_files and data_args.dataset_name:
        raise ValueError("give either --train_files or --dataset_name, not both")
    if not _has_validation_source(data_args) and not 0 < data_args.validation_fraction < 1:
        raise ValueError(
            f"validation_fraction must be between 0 and 1 (exclusive) when no validation data is given, "
            f"got {data_args.validation_fraction}"
        )
    if data_args.streaming and data_args.near_deduplicate:
        raise ValueError(
            "near-deduplication compares every document with all the others and needs the whole corpus: "
            "it does not work with --streaming; turn off one of --near_deduplicate and --streaming"
        )
    if not 0 < data_args.near_duplicate_threshold <= 1:
        raise ValueError(f"near_duplicate_threshold must be in (0, 1], got {data_args.near_duplicate_threshold}")
    if data_args.max_train_documents is not None and data_args.max_train_documents < 1:
        raise ValueError(f"max_train_documents must be positive, got {data_args.max_train_documents}")


def _has_validation_source(data_args: DataArguments) -> bool:
    return bool(data_args.validation_files) or (bool(data_args.dataset_name) and bool(data_args.validation_split))


def _eos_token_id(tokenizer) -> int:
    if tokenizer.eos_token_id is None:
        raise ValueError(
            f"the tokenizer ({type(tokenizer).__name__}) has no eos token, which separates documents in "
            "packed blocks; set tokenizer.eos_token"
        )
    return tokenizer.eos_token_id


# ----------------------------------------------------------------------------------------- loading


def _open_dataset_id(name: str, config: str | None, split: str, *, streaming: bool):
    """A `save_to_disk` directory or a Hub data set, with a clear error when the Hub cannot be reached."""
    return load_dataset_source(name, dataset_config=config, split=split, streaming=streaming)


def _source_signature(data_args: DataArguments, split: str) -> dict[str, Any]:
    """What identifies the raw documents of `split`: files with sizes and mtimes, or the data set id."""
    files = data_args.train_files if split == "train" else data_args.validation_files
    signature: dict[str, Any] = {"text_column": data_args.text_column}
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


def _dataset_split(data_args: DataArguments, split: str) -> str:
    return data_args.train_split if split == "train" else data_args.validation_split


def _generate_documents(sources, text_column: str, max_documents: int | None, signature: str) -> Iterator[dict]:
    # `signature` is unused here; it is part of the arguments so a changed file is a different data set.
    documents = read_corpus(sources, text_column=text_column)
    for count, text in enumerate(documents):
        if max_documents is not None and count >= max_documents:
            return
        yield {TEXT: text}


def _cache_root(data_args: DataArguments) -> Path:
    return Path(data_args.data_cache_dir or DEFAULT_CACHE_DIR).expanduser()


def _intermediate_dir(data_args: DataArguments) -> str:
    return str(_cache_root(data_args) / "intermediate")


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _unwrap_generation_error(function, *args, **kwargs):
    """`datasets` wraps errors raised while generating; re-raise the original, clearer one."""
    try:
        return function(*args, **kwargs)
    except datasets.exceptions.DatasetGenerationError as error:
        if error.__cause__ is not None:
            raise error.__cause__ from None
        raise


def load_documents(data_args: DataArguments, split: str = "train") -> Dataset | IterableDataset:
    """The raw documents of `split` ("train" or "validation") as a data set with one column, "text".

    Files are resolved and checked (missing files named, invalid UTF-8 located) before anything is read.
    `max_train_documents` limits the training documents. Streaming mode returns an `IterableDataset`.
    """
    if split not in ("train", "validation"):
        raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
    files = data_args.train_files if split == "train" else data_args.validation_files
    if files:
        sources: Any = [str(path) for path in resolve_files(files)]
        check_utf8(Path(source) for source in sources)
    elif data_args.dataset_name:
        if split == "validation" and not data_args.validation_split:
            raise ValueError("no validation data: give --validation_files or --validation_split")
        sources = _open_dataset_id(
            data_args.dataset_name, data_args.dataset_config_name, _dataset_split(data_args, split),
            streaming=data_args.streaming,
        )  # fmt: skip
    else:
        raise ValueError(f"no {split} data: give --{split}_files or --dataset_name")

    max_documents = data_args.max_train_documents if split == "train" else None
    signature = _hash(_source_signature(data_args, split))
    gen_kwargs = {
        "sources": sources, "text_column": data_args.text_column, "max_documents": max_documents,
        "signature": signature,
    }  # fmt: skip
    if data_args.streaming:
        return IterableDataset.from_generator(_generate_documents, features=DOCUMENT_FEATURES, gen_kwargs=gen_kwargs)
    return _unwrap_generation_error(
        Dataset.from_generator,
        _generate_documents,
        features=DOCUMENT_FEATURES,
        gen_kwargs=gen_kwargs,
        cache_dir=_intermediate_dir(data_args),
        fingerprint=f"documents-{PIPELINE_VERSION}-{split}-{signature}",
    )


# ---------------------------------------------------------------------------------------- cleaning


def _cleaning_settings(data_args: DataArguments) -> dict[str, Any]:
    return {name: getattr(data_args, name) for name in CLEANING_FIELDS}


def _normalize_text(text: str, settings: dict[str, Any]) -> tuple[str, dict[str, bool]]:
    changed = dict.fromkeys(CHANGE_STEPS, False)
    if settings["normalize_unicode"] and not unicodedata.is_normalized("NFC", text):
        text, changed["unicode_nfc"] = unicodedata.normalize("NFC", text), True
    if settings["remove_control_characters"]:
        cleaned = _CONTROL_CHARACTERS.sub("", text)
        text, changed["control_characters"] = cleaned, cleaned != text
    if settings["normalize_whitespace"]:
        cleaned = text.replace("\r\n", "\n").replace("\r", "\n")
        cleaned = _TRAILING_SPACE.sub("", cleaned)
        cleaned = _INNER_SPACE_RUN.sub(" ", cleaned)
        cleaned = _BLANK_LINE_RUN.sub("\n\n", cleaned).strip("\n")
        text, changed["whitespace"] = cleaned, cleaned != text
    return text, changed


def _symbol_fraction(text: str) -> float:
    # Combining marks (vowel signs of Indic scripts) are not \w but are part of words.
    symbols = [c for c in _NOT_WORD_OR_SPACE.findall(text) if not unicodedata.category(c).startswith("M")]
    return len(symbols) / max(len(text), 1)


def _drop_reason(text: str, settings: dict[str, Any]) -> str:
    if len(text) < settings["min_document_chars"]:
        return "too_short"
    if settings["max_symbol_fraction"] < 1 and _symbol_fraction(text) > settings["max_symbol_fraction"]:
        return "mostly_symbols"
    return ""


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _annotate_batch(batch: dict[str, list], settings: dict[str, Any]) -> dict[str, list]:
    """Normalise each document and record what changed, why it would be dropped and its hash."""
    out: dict[str, list] = {TEXT: [], "drop_reason": [], "digest": [], **{step: [] for step in CHANGE_STEPS}}
    for text in batch[TEXT]:
        text, changed = _normalize_text(text, settings)
        out[TEXT].append(text)
        for step in CHANGE_STEPS:
            out[step].append(changed[step])
        out["drop_reason"].append(_drop_reason(text, settings))
        # Short documents repeat by nature (a speaker's name in a play, a heading): never duplicates.
        out["digest"].append(_digest(text) if len(text) >= settings["dedup_min_chars"] else "")
    return out


def clean_documents(dataset: Dataset | IterableDataset, data_args: DataArguments, *, name: str = "train"):
    """Apply the cleaning steps of `data_args` to a "text" data set; returns `(cleaned, CleaningReport)`.

    A `Dataset` is cleaned at once (with `preprocessing_num_workers` processes) and its report is complete.
    An `IterableDataset` is cleaned lazily, on every pass afresh; its report is filled by the first
    complete pass. Near-deduplication needs a `Dataset`.
    """
    report = CleaningReport.for_settings(data_args, name)
    settings = _cleaning_settings(data_args)
    if isinstance(dataset, IterableDataset):
        if data_args.near_deduplicate:
            raise ValueError("near-deduplication needs the whole corpus and does not work with --streaming")
        annotated = dataset.map(_annotate_batch, batched=True, fn_kwargs={"settings": settings})
        report.complete = False
        cleaned = IterableDataset.from_generator(
            _generate_clean_stream, features=DOCUMENT_FEATURES,
            gen_kwargs={"annotated": annotated, "deduplicate": data_args.deduplicate, "report": report},
        )  # fmt: skip
        return cleaned, report
    return _clean_dataset(dataset, data_args, settings, report)


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


def _clean_dataset(dataset: Dataset, data_args: DataArguments, settings: dict[str, Any], report: CleaningReport):
    report.documents_in = len(dataset)
    annotated = dataset.map(
        _annotate_batch, batched=True, num_proc=_num_proc(data_args, len(dataset)),
        fn_kwargs={"settings": settings}, desc=f"Cleaning {report.name} documents",
    )  # fmt: skip
    flags = annotated.select_columns([*CHANGE_STEPS, "drop_reason", "digest"]).to_dict()
    for step in CHANGE_STEPS:
        report.changed[step] = int(sum(flags[step]))
    reasons = Counter(reason for reason in flags["drop_reason"] if reason)
    for step in ("too_short", "mostly_symbols"):
        report.dropped[step] = reasons[step]

    keep = [index for index, reason in enumerate(flags["drop_reason"]) if not reason]
    if data_args.deduplicate:
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
    if data_args.near_deduplicate and len(cleaned) > 1:
        distinct = near_duplicate_keep_indices(
            cleaned, data_args.near_duplicate_threshold, data_args, min_chars=data_args.dedup_min_chars
        )
        report.dropped["near_duplicates"] = len(cleaned) - len(distinct)
        cleaned = cleaned.select(distinct)
    report.documents_out = len(cleaned)
    return cleaned, report


def _num_proc(data_args: DataArguments, rows: int) -> int | None:
    workers = data_args.preprocessing_num_workers
    # A worker process costs more than it saves on a small corpus.
    return workers if workers and workers > 1 and rows >= 10 * workers else None


def _check_not_empty(dataset: Dataset | IterableDataset, report: CleaningReport) -> None:
    empty = len(dataset) == 0 if isinstance(dataset, Dataset) else next(iter(dataset), None) is None
    if empty:
        raise ValueError(
            f"the {report.name} data is empty after cleaning: {report.documents_in} documents read, removed "
            f"by step: {report.removed_summary()}; relax the cleaning settings (e.g. --min_document_chars, "
            "--max_symbol_fraction) or check --text_column"
        )


# --------------------------------------------------------------------------- near-duplicates (MinHash)


def _minhash_permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_MINHASH_SEED)
    # Below 2**31, so a * h + b with h < 2**32 stays below 2**64.
    a = rng.integers(1, 1 << 31, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, 1 << 31, size=num_perm, dtype=np.uint64)
    return a, b


def _shingle_hashes(text: str, width: int) -> np.ndarray:
    """32-bit hashes (in uint64) of the distinct character `width`-grams of the lowercased text."""
    normalized = _ANY_WHITESPACE_RUN.sub(" ", text.lower()).strip()
    codes = np.frombuffer(normalized.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    width = max(1, min(width, len(codes)))
    count = len(codes) - width + 1
    hashes = np.zeros(max(count, 1), dtype=np.uint64)
    for offset in range(width):  # polynomial hash, wrapping modulo 2**64
        hashes = hashes * np.uint64(1_000_003) + codes[offset : offset + count]
    hashes ^= hashes >> np.uint64(29)
    return np.unique((hashes >> np.uint64(32)) ^ (hashes & np.uint64(0xFFFFFFFF)))


def minhash_signature(text: str, num_perm: int = MINHASH_PERMUTATIONS) -> np.ndarray:
    """The MinHash signature (`num_perm` uint32 values) of the character 5-grams of `text`."""
    a, b = _minhash_permutations(num_perm)
    signature = np.full(num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
    hashes = _shingle_hashes(text, MINHASH_SHINGLE_CHARS)
    for start in range(0, len(hashes), 4096):  # bounded memory for long documents
        chunk = hashes[start : start + 4096, None]
        signature = np.minimum(signature, ((chunk * a + b) % _MERSENNE_61).min(axis=0))
    return (signature & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _signature_batch(batch: dict[str, list], num_perm: int) -> dict[str, list]:
    return {
        "signature": [minhash_signature(text, num_perm) for text in batch[TEXT]],
        "length": [len(text) for text in batch[TEXT]],
    }


def lsh_bands(threshold: float, num_perm: int = MINHASH_PERMUTATIONS) -> tuple[int, int]:
    """(bands, rows) for LSH that best separate Jaccard similarities above and below `threshold`.

    Minimises the area of false positives (below the threshold) plus false negatives (above it) of the
    candidate probability 1 - (1 - s**rows)**bands, as datasketch does.
    """
    best, best_error = (1, num_perm), math.inf
    below, above = np.linspace(0, threshold, 200), np.linspace(threshold, 1, 200)
    for bands in range(1, num_perm + 1):
        rows = num_perm // bands
        false_positive = np.trapezoid(1 - (1 - below**rows) ** bands, below)
        false_negative = np.trapezoid((1 - above**rows) ** bands, above)
        if false_positive + false_negative < best_error:
            best, best_error = (bands, rows), false_positive + false_negative
    return best


def near_duplicate_keep_indices(
    dataset: Dataset, threshold: float, data_args: DataArguments | None = None, *, min_chars: int = 0
) -> list[int]:
    """Indices of the documents to keep: each document is dropped when an earlier kept one has an
    estimated Jaccard similarity (of character 5-grams) of at least `threshold` with it. Documents
    shorter than `min_chars` are always kept and compared with nothing."""
    num_proc = _num_proc(data_args, len(dataset)) if data_args else None
    signatures = dataset.map(
        _signature_batch, batched=True, num_proc=num_proc, remove_columns=dataset.column_names,
        fn_kwargs={"num_perm": MINHASH_PERMUTATIONS},
        features=Features({"signature": datasets.List(Value("uint32")), "length": Value("int64")}),
        desc="MinHash signatures",
    )  # fmt: skip
    matrix = np.asarray(signatures.with_format("numpy")["signature"], dtype=np.uint32)
    lengths = np.asarray(signatures.with_format("numpy")["length"])
    bands, rows = lsh_bands(threshold, matrix.shape[1])
    buckets: dict[tuple[int, bytes], list[int]] = {}
    keep: list[int] = []
    for index, signature in enumerate(matrix):
        if lengths[index] < min_chars:
            keep.append(index)
            continue
        keys = [(band, signature[band * rows : (band + 1) * rows].tobytes()) for band in range(bands)]
        candidates = {other for key in keys for other in buckets.get(key, ())}
        if any(np.mean(matrix[other] == signature) >= threshold for other in candidates):
            continue
        keep.append(index)
        for key in keys:
            buckets.setdefault(key, []).append(index)
    return keep


# ------------------------------------------------------------------------------------------- split


def _count_bytes_batch(batch: dict[str, list]) -> dict[str, list]:
    return {"num_bytes": [len(text.encode("utf-8")) for text in batch[TEXT]]}


def tail_split_index(document_bytes: np.ndarray, fraction: float) -> int:
    """The first held-out document: the tail from it holds `fraction` of the bytes as closely as possible,
    with at least one document on each side."""
    if len(document_bytes) < 2:
        raise ValueError(
            f"cannot hold out validation documents from {len(document_bytes)} training document(s); give "
            "--validation_files (or a corpus of several documents)"
        )
    tail_bytes = np.cumsum(document_bytes[::-1])[::-1]  # tail_bytes[k] = bytes of documents k, k+1, ...
    target = fraction * tail_bytes[0]
    return int(np.argmin(np.abs(tail_bytes[1:] - target))) + 1


def hold_out_tail(documents: Dataset | IterableDataset, fraction: float, data_args: DataArguments):
    """Split cleaned documents into (train, validation): the last documents holding `fraction` of the
    bytes validate. A stream is read once to count its bytes; validation is then a `Dataset`."""
    if isinstance(documents, Dataset):
        sizes = documents.map(_count_bytes_batch, batched=True, remove_columns=[TEXT], desc="Counting bytes")
        split = tail_split_index(np.asarray(sizes.with_format("numpy")["num_bytes"]), fraction)
        return documents.select(range(split)), documents.select(range(split, len(documents)))
    logger.info("Streaming: reading the training corpus once to find the last %.0f%% of its bytes", 100 * fraction)
    sizes = np.fromiter((len(example[TEXT].encode("utf-8")) for example in documents), dtype=np.int64)
    split = tail_split_index(sizes, fraction)
    fingerprint = _hash(["stream-validation", PIPELINE_VERSION, _source_signature(data_args, "train"),
                         _cleaning_settings(data_args), fraction])  # fmt: skip
    validation = _unwrap_generation_error(
        Dataset.from_generator, _generate_rows, features=DOCUMENT_FEATURES,
        gen_kwargs={"rows": documents.skip(split)}, cache_dir=_intermediate_dir(data_args),
        fingerprint=f"stream-validation-{fingerprint}",
    )  # fmt: skip
    return documents.take(split), validation


def _generate_rows(rows) -> Iterator[dict]:
    yield from rows


def _cleaned_train_and_validation(data_args: DataArguments):
    """(train documents, validation documents, train report, validation report or None), checked non-empty."""
    _check_data_args(data_args)
    train, report = clean_documents(load_documents(data_args, "train"), data_args, name="train")
    _check_not_empty(train, report)
    if _has_validation_source(data_args):
        validation_args = replace(data_args, streaming=False)
        validation, validation_report = clean_documents(
            load_documents(validation_args, "validation"), validation_args, name="validation"
        )
        _check_not_empty(validation, validation_report)
        return train, validation, report, validation_report
    train, validation = hold_out_tail(train, data_args.validation_fraction, data_args)
    return train, validation, report, None


def iter_training_texts(data_args: DataArguments) -> Iterator[str]:
    """The cleaned training documents (without the held-out validation part), one string at a time; for
    training a tokenizer on the same text the model will see."""
    train, _, report, _ = _cleaned_train_and_validation(data_args)
    logger.info("%s", report)
    for batch in train.iter(batch_size=1000):
        yield from batch[TEXT]


# ---------------------------------------------------------------------------------- tokens, blocks


def _tokenize_batch(batch: dict[str, list], tokenizer, eos_token_id: int) -> dict[str, list]:
    encoded = tokenizer(batch[TEXT], add_special_tokens=False, return_attention_mask=False, verbose=False)
    return {"input_ids": [ids + [eos_token_id] for ids in encoded["input_ids"]]}


def _generate_blocks(documents, block_size: int, keep_tail: bool) -> Iterator[dict]:
    """Concatenate the documents' tokens and cut them into blocks of `block_size` (across batches, so
    only the very end of the stream can be a partial block)."""
    buffer: list[int] = []
    for batch in documents.iter(batch_size=1000):
        for ids in batch["input_ids"]:
            buffer.extend(ids)
        full = len(buffer) // block_size * block_size
        for start in range(0, full, block_size):
            yield {"input_ids": buffer[start : start + block_size]}
        del buffer[:full]
    if keep_tail and buffer:
        yield {"input_ids": buffer}


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything that decides how the tokenizer encodes: its full `tokenizer.json` when it has
    one (vocabulary, merges, pre-tokenizer, added tokens), else its vocabulary; and the eos id."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    content = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return _hash([type(tokenizer).__name__, content, tokenizer.eos_token_id])


def _tokenize_and_pack(documents, tokenizer, block_size: int, *, keep_tail: bool, data_args: DataArguments):
    eos = _eos_token_id(tokenizer)
    kwargs = {"tokenizer": tokenizer, "eos_token_id": eos}
    if isinstance(documents, IterableDataset):
        tokenized = documents.map(_tokenize_batch, batched=True, remove_columns=[TEXT], fn_kwargs=kwargs)
        return IterableDataset.from_generator(
            _generate_blocks, features=BLOCK_FEATURES,
            gen_kwargs={"documents": tokenized, "block_size": block_size, "keep_tail": keep_tail},
        )  # fmt: skip
    tokenized = documents.map(
        _tokenize_batch, batched=True, num_proc=_num_proc(data_args, len(documents)), remove_columns=[TEXT],
        fn_kwargs=kwargs, new_fingerprint=_hash([documents._fingerprint, tokenizer_fingerprint(tokenizer)]),
        desc="Tokenizing",
    )  # fmt: skip
    total_tokens = pc.sum(pc.list_value_length(tokenized.data.column("input_ids"))).as_py() or 0
    if not keep_tail and total_tokens < block_size:
        raise _too_short_for_a_block(total_tokens, block_size)
    return _unwrap_generation_error(
        Dataset.from_generator, _generate_blocks, features=BLOCK_FEATURES,
        gen_kwargs={"documents": tokenized, "block_size": block_size, "keep_tail": keep_tail},
        cache_dir=_intermediate_dir(data_args),
        fingerprint=f"blocks-{_hash([tokenized._fingerprint, block_size, keep_tail])}",
    )  # fmt: skip


def _too_short_for_a_block(total_tokens: int | None, block_size: int) -> ValueError:
    tokens = "" if total_tokens is None else f" ({total_tokens} tokens)"
    return ValueError(
        f"the training text{tokens} is shorter than one block of block_size={block_size} tokens; use a "
        "smaller --block_size or more text"
    )


def _document_bytes(documents: Dataset) -> int:
    return sum(len(text.encode("utf-8")) for batch in documents.iter(batch_size=1000) for text in batch[TEXT])


def _count_tokens(blocks: Dataset) -> int:
    return sum(len(ids) for batch in blocks.iter(batch_size=1000) for ids in batch["input_ids"])


# --------------------------------------------------------------------------------------- collator


@dataclass
class PackedBlockCollator:
    """Batches packed blocks for causal LM training: `labels` = `input_ids` (the model shifts them).

    Blocks are all `block_size` long except possibly the last validation block; a shorter one is padded
    with `pad_token_id`, label -100 and attention 0. Unlike `DataCollatorForLanguageModeling`, padding is
    found by position, not by token id, so an eos token is never masked out of the labels (it would be
    with a tokenizer whose pad token is its eos token).
    """

    pad_token_id: int = 0

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [len(feature["input_ids"]) for feature in features]
        longest = max(lengths)
        input_ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), longest), -100, dtype=torch.long)
        for row, feature in enumerate(features):
            ids = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            input_ids[row, : len(ids)] = ids
            labels[row, : len(ids)] = ids
        batch = {"input_ids": input_ids, "labels": labels}
        if min(lengths) < longest:
            positions = torch.arange(longest)[None, :]
            batch["attention_mask"] = (positions < torch.tensor(lengths)[:, None]).long()
        return batch


# ------------------------------------------------------------------------------------- pretraining


@dataclass
class PretrainingData:
    """What `build_pretraining_data` returns. `train_tokens` is None for a stream (unknown length)."""

    train: Dataset | IterableDataset
    validation: Dataset
    validation_bytes: int
    validation_tokens: int
    train_tokens: int | None
    report: CleaningReport
    from_cache: bool
    collator: PackedBlockCollator
    validation_report: CleaningReport | None = None
    cache_dir: Path | None = None


def pretraining_cache_key(data_args: DataArguments, tokenizer, block_size: int) -> str:
    """The name of the cache folder: a hash of the sources (paths, sizes, mtimes or data set id, config and
    splits), text column, document limit, cleaning settings, validation settings, tokenizer and block size."""
    has_validation = _has_validation_source(data_args)
    settings = {
        "version": PIPELINE_VERSION,
        "train": _source_signature(data_args, "train"),
        "validation": _source_signature(data_args, "validation") if has_validation else None,
        "validation_fraction": None if has_validation else data_args.validation_fraction,
        "cleaning": _cleaning_settings(data_args),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "block_size": block_size,
    }
    return _hash(settings)


def build_pretraining_data(
    data_args: DataArguments, tokenizer, block_size: int, *, seed: int = 42
) -> PretrainingData:
    """Load, clean, split, tokenize and pack the pretraining corpus into blocks of `block_size` tokens.

    Everything that can be wrong with the input (missing files, bad UTF-8, offline Hub id, no eos token,
    a corpus empty after cleaning or too small for one block) raises before training starts. The result
    is cached (see `pretraining_cache_key`); `seed` orders the shuffle buffer of a stream.
    """
    check_block_size(block_size, model_config=None)
    _check_data_args(data_args)
    eos = _eos_token_id(tokenizer)
    collator = PackedBlockCollator(pad_token_id=eos if tokenizer.pad_token_id is None else tokenizer.pad_token_id)
    if data_args.streaming:
        return _build_streaming(data_args, tokenizer, block_size, seed, collator)

    cache_dir = _cache_root(data_args) / pretraining_cache_key(data_args, tokenizer, block_size)
    if (cache_dir / "meta.json").is_file():
        logger.info("Pretraining data loaded from cache %s", cache_dir)
        return _load_cached(cache_dir, collator)

    train_documents, validation_documents, report, validation_report = _cleaned_train_and_validation(data_args)
    logger.info("%s", report)
    if validation_report is not None:
        logger.info("%s", validation_report)
    train = _tokenize_and_pack(train_documents, tokenizer, block_size, keep_tail=False, data_args=data_args)
    validation = _tokenize_and_pack(validation_documents, tokenizer, block_size, keep_tail=True, data_args=data_args)
    meta = {
        "validation_bytes": _document_bytes(validation_documents),
        "validation_tokens": _count_tokens(validation),
        "train_tokens": len(train) * block_size,
        "train_documents": len(train_documents),
        "validation_documents": len(validation_documents),
        "block_size": block_size,
        "report": report.to_dict(),
        "validation_report": validation_report.to_dict() if validation_report else None,
    }
    _save_atomically(cache_dir, train, validation, meta)
    logger.info(
        "Pretraining data processed and cached in %s: %d training blocks (%d tokens), %d validation tokens "
        "covering %d bytes", cache_dir, len(train), meta["train_tokens"], meta["validation_tokens"],
        meta["validation_bytes"],
    )  # fmt: skip
    return _load_cached(cache_dir, collator, from_cache=False)


def _save_atomically(cache_dir: Path, train: Dataset, validation: Dataset, meta: dict) -> None:
    # Written to a temporary folder renamed at the end: a killed run leaves no half-written cache.
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache_dir.parent / f".tmp-{cache_dir.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        train.save_to_disk(str(temporary / "train"))
        validation.save_to_disk(str(temporary / "validation"))
        CleaningReport.from_dict(meta["report"]).save(temporary / "cleaning_report.json")
        if meta["validation_report"]:
            CleaningReport.from_dict(meta["validation_report"]).save(temporary / "cleaning_report_validation.json")
        (temporary / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        try:
            os.rename(temporary, cache_dir)
        except OSError:
            if not (cache_dir / "meta.json").is_file():  # not just another run finishing first
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _load_cached(cache_dir: Path, collator: PackedBlockCollator, from_cache: bool = True) -> PretrainingData:
    meta = json.loads((cache_dir / "meta.json").read_text(encoding="utf-8"))
    validation_report = meta["validation_report"]
    return PretrainingData(
        train=datasets.load_from_disk(str(cache_dir / "train")),
        validation=datasets.load_from_disk(str(cache_dir / "validation")),
        validation_bytes=meta["validation_bytes"],
        validation_tokens=meta["validation_tokens"],
        train_tokens=meta["train_tokens"],
        report=CleaningReport.from_dict(meta["report"]),
        from_cache=from_cache,
        collator=collator,
        validation_report=CleaningReport.from_dict(validation_report) if validation_report else None,
        cache_dir=cache_dir,
    )


def _build_streaming(data_args, tokenizer, block_size, seed, collator) -> PretrainingData:
    logger.info("Streaming the training corpus: cleaned and tokenized on the fly, not cached")
    train_documents, validation_documents, report, validation_report = _cleaned_train_and_validation(data_args)
    train = _tokenize_and_pack(train_documents, tokenizer, block_size, keep_tail=False, data_args=data_args)
    if next(iter(train), None) is None:
        raise _too_short_for_a_block(None, block_size)
    if data_args.shuffle_buffer_size > 1:
        train = train.shuffle(seed=seed, buffer_size=data_args.shuffle_buffer_size)
    validation = _tokenize_and_pack(validation_documents, tokenizer, block_size, keep_tail=True, data_args=data_args)
    return PretrainingData(
        train=train,
        validation=validation,
        validation_bytes=_document_bytes(validation_documents),
        validation_tokens=_count_tokens(validation),
        train_tokens=None,
        report=report,
        from_cache=False,
        collator=collator,
        validation_report=validation_report,
    )


# ------------------------------------------------------------------------------- fine-tuning tables

TABLE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def _table_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _resolve_table_files(source: str) -> list[Path]:
    path = Path(source).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _table_suffix(p) in TABLE_BUILDERS)
        if not files:
            raise FileNotFoundError(f"no table files ({', '.join(TABLE_BUILDERS)}) found in directory {source!r}")
        return files
    if set("*?[") & set(source):
        import glob

        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(source), recursive=True) if Path(p).is_file())
        if not files:
            raise FileNotFoundError(f"no files match the pattern {source!r}")
        return files
    return []


def load_table(source: str, *, split: str = "train", dataset_config: str | None = None) -> Dataset:
    """A table with its original columns, for fine-tuning: csv/tsv/jsonl/json/parquet files (a file, glob
    or directory, all of one format), a `save_to_disk` directory, or a Hub data set id.

    Files make one split, "train"; `split` may slice it the `datasets` way ("train[:100]"). For a data
    set `split` names its split.
    """
    source = os.fspath(source)
    if is_saved_dataset(source) or not (files := _resolve_table_files(source)):
        if not is_saved_dataset(source) and (Path(source).suffix or source.startswith((".", "/", "~"))):
            raise FileNotFoundError(f"table file not found: {source!r}")
        dataset = _open_dataset_id(source, dataset_config, split, streaming=False)
        if not isinstance(dataset, Dataset):
            raise ValueError(f"{source!r} split {split!r} did not load as a table (got {type(dataset).__name__})")
        return dataset
    formats = {_table_suffix(path) for path in files}
    unsupported = sorted(formats - set(TABLE_BUILDERS))
    if unsupported:
        raise ValueError(
            f"unsupported table file type {unsupported[0] or '(none)'!r} in {source!r}; supported: "
            f"{', '.join(TABLE_BUILDERS)}"
        )
    if len({TABLE_BUILDERS[f] for f in formats}) > 1 or formats == {".csv", ".tsv"}:
        raise ValueError(f"{source!r} mixes table formats ({', '.join(sorted(formats))}); use one format")
    if not split.startswith("train"):
        raise ValueError(f"files load as the split 'train' (optionally sliced: 'train[:100]'), got {split!r}")
    suffix = formats.pop()
    options = {"delimiter": "\t"} if suffix == ".tsv" else {}
    return _unwrap_generation_error(
        datasets.load_dataset, TABLE_BUILDERS[suffix], data_files=[str(path) for path in files], split=split, **options
    )



# ----------------------------------------------------------------------------------------------------------------
# Fine-tuning data: text classification and supervised fine-tuning (SFT) on instruction data.
#
# Both start from tables (`load_tables`: files or a data set id) and end as token-id datasets for the Trainer.
# Bad input is reported before training starts: a missing column or a label outside the label set is an error
# naming the column (and the columns there are) or the label and its row; rows with an empty text (or, for SFT,
# an empty reply) are dropped with a warning giving their count, and it is an error when nothing is left.

IGNORE_INDEX = -100  # label of tokens the loss skips (PyTorch's cross-entropy default)
CHAT_ROLES = ("system", "user", "assistant")


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


def load_tables(sources: str | list[str] | None, *, split: str = "train", dataset_config: str | None = None):
    """`load_table` over one or several sources (their rows concatenated, in order); None for no sources."""
    if not sources:
        return None
    sources = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    tables = [load_table(source, split=split, dataset_config=dataset_config) for source in sources]
    return tables[0] if len(tables) == 1 else datasets.concatenate_datasets(tables)


def check_columns(dataset: Dataset, columns: dict[str, str | None], split: str) -> None:
    """Raise if a needed column is missing; `columns` maps the option naming it (e.g. "--label_column") to it."""
    for option, column in columns.items():
        if column is not None and column not in dataset.column_names:
            raise ValueError(
                f"the {split} data has no column {column!r} (its columns: {', '.join(dataset.column_names)}); "
                f"name the right one with {option}"
            )


def _is_empty(text: Any) -> bool:
    return text is None or (isinstance(text, str) and not text.strip())


def _label_key(value: Any) -> str | None:
    """A label as the string it is known by: 1, 1.0 and "1" are all "1"; None stays None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _sorted_labels(keys) -> list[str]:
    keys = set(keys)
    if all(re.fullmatch(r"-?\d+", key) for key in keys):
        return sorted(keys, key=int)  # 0, 1, ..., 10 rather than "0", "1", "10", "2"
    return sorted(keys)


def label_names_from(dataset: Dataset, label_column: str, label_names: list[str] | None = None) -> list[str]:
    """The label set, in id order: `label_names` when given, else the training labels sorted (numerically when
    they are numbers, so that integer labels 0..n-1 keep their values as ids)."""
    if label_names:
        if len(set(label_names)) != len(label_names):
            raise ValueError(f"--class_names has duplicates: {label_names}")
        return [str(name) for name in label_names]
    keys = {key for key in map(_label_key, dataset[label_column]) if key is not None}
    if len(keys) < 2:
        raise ValueError(f"the training data has {len(keys)} distinct label(s) in column {label_column!r}; "
                         "classification needs at least two")
    return _sorted_labels(keys)


def _label_ids(values: list, label2id: dict[str, int], split: str, label_column: str) -> list[int]:
    keys = [_label_key(value) for value in values]
    # Integer labels of which none is a label name index the names (labels 0/1 with --class_names neg pos).
    by_index = all(key is None or key.isdigit() for key in keys) and not any(key in label2id for key in keys)
    ids = []
    for row, (value, key) in enumerate(zip(values, keys)):
        if key is None:
            raise ValueError(f"{split} row {row}: no label in column {label_column!r}")
        if key in label2id:
            ids.append(label2id[key])
        elif by_index and int(key) < len(label2id):
            ids.append(int(key))
        else:
            raise ValueError(
                f"{split} row {row}: label {value!r} is not in the label set "
                f"({', '.join(label2id)}); fix the data or give the full label set with --class_names"
            )
    return ids


def _truncate_pair(first: list[int], second: list[int] | None, budget: int) -> tuple[list[int], list[int] | None]:
    """Cut the longer of the two token lists first until both fit in `budget` tokens (tokenizers' longest_first)."""
    first = list(first)
    second = None if second is None else list(second)
    while len(first) + len(second or []) > budget:
        if second is not None and len(second) > len(first):
            second.pop()
        else:
            first.pop()
    return first, second


def _encode_classification_batch(batch, tokenizer, text_column, text_pair_column, max_length):
    """[text] eos ([text pair] eos): the model pools the last real token, the eos, as in pretraining where eos
    closes every document; the eos also separates a text pair."""
    eos = _eos_token_id(tokenizer)
    texts = tokenizer(batch[text_column], add_special_tokens=False)["input_ids"]
    pairs = tokenizer(batch[text_pair_column], add_special_tokens=False)["input_ids"] if text_pair_column else None
    budget = max_length - (2 if pairs else 1)
    input_ids, truncated = [], []
    for index, first in enumerate(texts):
        second = pairs[index] if pairs else None
        cut_first, cut_second = _truncate_pair(first, second, budget)
        truncated.append(len(cut_first) + len(cut_second or []) < len(first) + len(second or []))
        input_ids.append(cut_first + [eos] + (cut_second + [eos] if second is not None else []))
    return {"input_ids": input_ids, "attention_mask": [[1] * len(ids) for ids in input_ids],
            "truncated": truncated}


@dataclass
class ClassificationData:
    train: Dataset
    validation: Dataset | None
    test: Dataset | None
    id2label: dict[int, str]
    label2id: dict[str, int]
    reports: dict[str, FinetuneReport] = field(default_factory=dict)


def prepare_classification_split(dataset: Dataset, tokenizer, *, split: str, text_column: str,
                                 text_pair_column: str | None, label_column: str, label2id: dict[str, int],
                                 max_length: int) -> tuple[Dataset, FinetuneReport]:
    """Check, label and tokenize one split: columns `input_ids`, `attention_mask`, `labels`."""
    check_columns(dataset, {"--text_column": text_column, "--text_pair_column": text_pair_column,
                            "--label_column": label_column}, split)
    report = FinetuneReport(split=split, rows=len(dataset))
    text_columns = [c for c in (text_column, text_pair_column) if c]
    keep = [i for i, row in enumerate(zip(*(dataset[c] for c in text_columns))) if not any(map(_is_empty, row))]
    report.dropped_empty = len(dataset) - len(keep)
    labels = _label_ids(dataset[label_column], label2id, split, label_column)  # rows as numbered in the file
    if not keep:
        raise ValueError(f"every row of the {split} data has an empty {' or '.join(map(repr, text_columns))}")
    if report.dropped_empty:
        dataset = dataset.select(keep)
        labels = [labels[i] for i in keep]
    dataset = dataset.select_columns(text_columns).add_column("labels", labels)
    dataset = dataset.map(
        _encode_classification_batch, batched=True, remove_columns=text_columns, desc=f"tokenizing {split}",
        fn_kwargs={"tokenizer": tokenizer, "text_column": text_column, "text_pair_column": text_pair_column,
                   "max_length": max_length},
    )
    report.truncated = int(sum(dataset["truncated"]))
    dataset = dataset.remove_columns("truncated")
    report.examples = len(dataset)
    report.tokens = int(sum(map(len, dataset["input_ids"])))
    report.warn(max_length)
    return dataset, report


def build_classification_data(train: Dataset, validation: Dataset | None, test: Dataset | None, tokenizer, *,
                              text_column: str = "text", text_pair_column: str | None = None,
                              label_column: str = "label", label_names: list[str] | None = None,
                              max_length: int = 512) -> ClassificationData:
    """Labelled tables -> tokenized classification datasets with the label set (`id2label`/`label2id`).

    The label set comes from `label_names` or the training labels; validation and test labels must be in it.
    """
    check_columns(train, {"--text_column": text_column, "--text_pair_column": text_pair_column,
                          "--label_column": label_column}, "train")
    names = label_names_from(train, label_column, label_names)
    label2id = {name: index for index, name in enumerate(names)}
    splits, reports = {}, {}
    for split, table in (("train", train), ("validation", validation), ("test", test)):
        if table is not None:
            splits[split], reports[split] = prepare_classification_split(
                table, tokenizer, split=split, text_column=text_column, text_pair_column=text_pair_column,
                label_column=label_column, label2id=label2id, max_length=max_length,
            )
    return ClassificationData(train=splits["train"], validation=splits.get("validation"), test=splits.get("test"),
                              id2label=dict(enumerate(names)), label2id=label2id, reports=reports)


def instruction_format(columns: list[str]) -> str:
    """"chat" for a `messages` column, "alpaca" for `instruction`/`output` (optional `input`); else an error."""
    if "messages" in columns:
        return "chat"
    if {"instruction", "output"} <= set(columns):
        return "alpaca"
    raise ValueError(
        f"instruction data needs a 'messages' column (chat format: a list of {{'role', 'content'}}) or "
        f"'instruction' and 'output' columns (Alpaca format, 'input' optional); found: {', '.join(columns)}"
    )


def alpaca_to_messages(instruction: str | None, input_text: str | None, output: str | None,
                       system_prompt: str | None = None) -> list[dict[str, str]]:
    """One Alpaca record as a chat: [system], user = instruction (+ blank line + input), assistant = output."""
    user = (instruction or "").strip()
    if input_text and input_text.strip():
        user = f"{user}\n\n{input_text.strip()}" if user else input_text.strip()
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": user}, {"role": "assistant", "content": output or ""}]


def _check_messages(messages: Any, split: str, row: int) -> None:
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m and "content" in m
                                                  for m in messages):
        raise ValueError(f"{split} row {row}: 'messages' must be a list of {{'role': ..., 'content': ...}}")
    for message in messages:
        if message["role"] not in CHAT_ROLES:
            raise ValueError(f"{split} row {row}: unsupported chat role {message['role']!r} "
                             f"(use {', '.join(CHAT_ROLES)})")


def conversations_from_table(dataset: Dataset, *, split: str, system_prompt: str | None = None) -> list[list[dict]]:
    """The rows of an Alpaca-format or chat-format table as chats (lists of role/content messages)."""
    if instruction_format(dataset.column_names) == "chat":
        conversations = []
        for row, messages in enumerate(dataset["messages"]):
            _check_messages(messages, split, row)
            messages = [{"role": m["role"], "content": m["content"] or ""} for m in messages]
            if system_prompt and messages and messages[0]["role"] != "system":
                messages = [{"role": "system", "content": system_prompt}, *messages]
            conversations.append(messages)
        return conversations
    inputs = dataset["input"] if "input" in dataset.column_names else [None] * len(dataset)
    return [alpaca_to_messages(instruction, input_text, output, system_prompt)
            for instruction, input_text, output in zip(dataset["instruction"], inputs, dataset["output"])]


def _usable_conversation(messages: list[dict]) -> str | None:
    """Why a chat cannot train (None when it can): no user text, or no assistant reply."""
    if not any(m["role"] == "user" and not _is_empty(m["content"]) for m in messages):
        return "empty"
    if not any(m["role"] == "assistant" and not _is_empty(m["content"]) for m in messages):
        return "empty"
    return None


def tokenize_conversations(conversations: list[list[dict]], tokenizer, *, max_length: int,
                           split: str) -> tuple[Dataset, FinetuneReport]:
    """Chats -> `input_ids`, `attention_mask` and `labels`, where labels are the input ids on the assistant replies
    (marked by the chat template's `{% generation %}` blocks, closing eos included) and IGNORE_INDEX elsewhere.

    Longer chats are cut to `max_length` tokens (counted in the report); a chat with nothing of a reply left is
    dropped (counted), and it is an error when no chat is left.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template; SFT renders every example with it")
    report = FinetuneReport(split=split, rows=len(conversations))
    usable = [c for c in conversations if _usable_conversation(c) is None]
    report.dropped_empty = len(conversations) - len(usable)
    columns: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": []}
    for start in range(0, len(usable), 256):
        encoded = tokenizer.apply_chat_template(
            usable[start:start + 256], tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
        )
        for ids, mask in zip(encoded["input_ids"], encoded["assistant_masks"]):
            if len(ids) > max_length:
                report.truncated += 1
                ids, mask = ids[:max_length], mask[:max_length]
            if not any(mask):
                report.dropped_no_reply += 1
                continue
            columns["input_ids"].append(list(ids))
            columns["attention_mask"].append([1] * len(ids))
            columns["labels"].append([t if m else IGNORE_INDEX for t, m in zip(ids, mask)])
    report.examples = len(columns["input_ids"])
    report.tokens = int(sum(map(len, columns["input_ids"])))
    if not report.examples:
        reason = (f"no reply is left within {max_length} tokens (raise --block_size)" if report.dropped_no_reply
                  else "every row has an empty instruction or reply")
        raise ValueError(f"no usable {split} example: {reason}")
    report.warn(max_length)
    return Dataset.from_dict(columns), report


def pack_examples(dataset: Dataset, max_length: int) -> Dataset:
    """Concatenate whole examples, in order, into sequences of at most `max_length` tokens (fewer, shorter
    sequences, less padding). Labels are kept, so the loss still counts the replies only; as in pretraining, a
    later example in a sequence attends to the earlier ones, each ending with eos."""
    keys = ("input_ids", "attention_mask", "labels")
    packed: dict[str, list] = {key: [] for key in keys}
    current: dict[str, list] = {key: [] for key in keys}
    for example in dataset:
        if current["input_ids"] and len(current["input_ids"]) + len(example["input_ids"]) > max_length:
            for key, sequences in packed.items():
                sequences.append(current[key])
            current = {key: [] for key in keys}
        for key, tokens in current.items():
            tokens.extend(example[key])
    if current["input_ids"]:
        for key, sequences in packed.items():
            sequences.append(current[key])
    return Dataset.from_dict(packed)


@dataclass
class SFTData:
    train: Dataset
    validation: Dataset | None
    test: Dataset | None
    reports: dict[str, FinetuneReport] = field(default_factory=dict)
    # Held-out chats (validation, else test), for sample generations: prompt messages and the reference reply.
    sample_chats: list[list[dict]] = field(default_factory=list)


def build_sft_data(train: Dataset, validation: Dataset | None, test: Dataset | None, tokenizer, *,
                   max_length: int, system_prompt: str | None = None, packing: bool = False) -> SFTData:
    """Instruction tables (Alpaca or chat format) -> token ids with reply-only labels; training data optionally
    packed. Evaluation data is never packed, so its loss is per example as in training without packing."""
    splits, reports, chats = {}, {}, {}
    for split, table in (("train", train), ("validation", validation), ("test", test)):
        if table is None:
            continue
        chats[split] = conversations_from_table(table, split=split, system_prompt=system_prompt)
        splits[split], reports[split] = tokenize_conversations(chats[split], tokenizer, max_length=max_length,
                                                               split=split)
    if packing:
        splits["train"] = pack_examples(splits["train"], max_length)
        logger.warning("packed %d training examples into %d sequences of at most %d tokens",
                       reports["train"].examples, len(splits["train"]), max_length)
    held_out = chats.get("validation") or chats.get("test") or []
    return SFTData(train=splits["train"], validation=splits.get("validation"), test=splits.get("test"),
                   reports=reports, sample_chats=[c for c in held_out if _usable_conversation(c) is None])

__all__ = [
    "IGNORE_INDEX",
    "ClassificationData",
    "CleaningReport",
    "FinetuneReport",
    "PackedBlockCollator",
    "PretrainingData",
    "SFTData",
    "alpaca_to_messages",
    "build_classification_data",
    "build_pretraining_data",
    "build_sft_data",
    "check_block_size",
    "check_columns",
    "check_tokenizer_fits",
    "clean_documents",
    "conversations_from_table",
    "hold_out_tail",
    "instruction_format",
    "iter_training_texts",
    "label_names_from",
    "load_documents",
    "load_table",
    "load_tables",
    "minhash_signature",
    "near_duplicate_keep_indices",
    "pack_examples",
    "prepare_classification_split",
    "pretraining_cache_key",
    "tail_split_index",
    "tokenize_conversations",
    "tokenizer_fingerprint",
]
