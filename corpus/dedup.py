"""Duplicate detection: exact (a hash of the cleaned text) and near-duplicates (MinHash + LSH from `datasketch`).

Near-duplicates are judged on the set of character 5-grams of the lowercased text with whitespace runs made one
space, which works for spaced and unspaced scripts alike. A document is dropped when an earlier kept one has an
estimated Jaccard similarity of at least the threshold with it; LSH (bands and rows chosen by `datasketch` for the
threshold) only proposes the candidates, the estimate decides.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass

import numpy as np
from datasets import Dataset, Features, Value
from datasketch import LeanMinHash, MinHash, MinHashLSH

from .documents import TEXT, num_proc

MINHASH_PERMUTATIONS = 128
MINHASH_SHINGLE_CHARS = 5
MINHASH_SEED = 1234
_MINHASH_SCHEME = "affine32"  # datasketch's default scheme; needed to rebuild a MinHash from stored values
_ANY_WHITESPACE_RUN = re.compile(r"\s+")
# Shingle ids: CRC-32 is stable across processes and ~4x cheaper than datasketch's default SHA-1; the MinHash
# permutations (datasketch's) do the mixing.
_SHINGLE_HASH = zlib.crc32


@dataclass(frozen=True)
class DedupSettings:
    """Exact deduplication (`exact`), near-deduplication at a Jaccard `near_threshold` (`near`), and the length under
    which a document is never a duplicate (`min_chars`: a speaker's name in a play, a heading)."""

    exact: bool = True
    near: bool = False
    near_threshold: float = 0.85
    min_chars: int = 50

    def __post_init__(self):
        if not 0 < self.near_threshold <= 1:
            raise ValueError(f"near_threshold must be in (0, 1], got {self.near_threshold}")


def exact_digest(text: str) -> str:
    """A 128-bit hash of the text, for exact deduplication."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def exact_digest64(text: str) -> int:
    """A 64-bit hash of the text, for exact deduplication of a stream (`SeenDigests`): 8 bytes a document. Two different
    documents share one with a probability of about n^2 / 2^65 (3e-6 for 10 million documents)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


class SeenDigests:
    """The 64-bit digests seen so far: a sorted numpy array (8 bytes a digest; 16 while a merge copies it) plus a set of
    the latest `merge_every` digests, merged into the array when full. About 8-16 MB per million distinct documents."""

    def __init__(self, merge_every: int = 2**16):
        self.merge_every = merge_every
        self._sorted = np.empty(0, dtype=np.uint64)
        self._recent: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def first_seen(self, digests: np.ndarray) -> np.ndarray:
        """Which of `digests` (in order) were not seen before, neither earlier in `digests`; remembers them all."""
        digests = np.asarray(digests, dtype=np.uint64)
        new = np.ones(len(digests), dtype=bool)
        if len(self._sorted) and len(digests):
            positions = np.minimum(np.searchsorted(self._sorted, digests), len(self._sorted) - 1)
            new = self._sorted[positions] != digests
        for row in np.flatnonzero(new):
            digest = int(digests[row])
            if digest in self._recent:
                new[row] = False
            else:
                self._recent.add(digest)
        if len(self._recent) >= self.merge_every:
            recent = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
            self._sorted = np.union1d(self._sorted, recent)
            self._recent.clear()
        return new


def shingles(text: str, width: int = MINHASH_SHINGLE_CHARS) -> set[bytes]:
    """The distinct character `width`-grams of the lowercased, whitespace-collapsed text (UTF-8 encoded)."""
    normalized = _ANY_WHITESPACE_RUN.sub(" ", text.lower()).strip()
    width = max(1, min(width, len(normalized)))
    return {normalized[start : start + width].encode("utf-8") for start in range(len(normalized) - width + 1)}


def minhash(text: str, num_perm: int = MINHASH_PERMUTATIONS) -> MinHash:
    """The MinHash of the character 5-grams of `text`."""
    sketch = MinHash(num_perm=num_perm, seed=MINHASH_SEED, hashfunc=_SHINGLE_HASH)
    sketch.update_batch(shingles(text))
    return sketch


def _signature_batch(batch: dict[str, list], num_perm: int) -> dict[str, list]:
    # `bulk` shares one set of permutations across the batch (building them per MinHash costs as much as hashing).
    sketches = MinHash.bulk([shingles(text) for text in batch[TEXT]], num_perm=num_perm, seed=MINHASH_SEED,
                            hashfunc=_SHINGLE_HASH)
    return {"signature": [sketch.hashvalues for sketch in sketches], "length": [len(text) for text in batch[TEXT]]}


def near_duplicate_keep_indices(
    dataset: Dataset, threshold: float, *, min_chars: int = 0, workers: int | None = None
) -> list[int]:
    """Indices of the documents of a "text" data set to keep: each document is dropped when an earlier kept one
    has an estimated Jaccard similarity (of character 5-grams) of at least `threshold` with it. Documents
    shorter than `min_chars` are always kept and compared with nothing. `workers` processes hash the documents."""
    signatures = dataset.map(
        _signature_batch, batched=True, num_proc=num_proc(workers, len(dataset)), remove_columns=dataset.column_names,
        fn_kwargs={"num_perm": MINHASH_PERMUTATIONS},
        features=Features({"signature": [Value("uint64")], "length": Value("int64")}),
        desc="MinHash signatures",
    )
    columns = signatures.with_format("numpy")
    matrix, lengths = np.asarray(columns["signature"], dtype=np.uint64), np.asarray(columns["length"])
    index = MinHashLSH(threshold=threshold, num_perm=MINHASH_PERMUTATIONS)
    kept_sketches: dict[int, LeanMinHash] = {}
    keep: list[int] = []
    for row, values in enumerate(matrix):
        if lengths[row] < min_chars:
            keep.append(row)
            continue
        sketch = LeanMinHash(seed=MINHASH_SEED, hashvalues=values, scheme=_MINHASH_SCHEME)
        if any(sketch.jaccard(kept_sketches[other]) >= threshold for other in index.query(sketch)):
            continue
        keep.append(row)
        kept_sketches[row] = sketch
        index.insert(row, sketch)
    return keep
