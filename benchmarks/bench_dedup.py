"""Near-deduplication: `datasketch` MinHash + LSH (what `scratchlm.corpus.dedup` uses) vs the project's own
numpy MinHash/LSH that it replaced (copied below as the reference, from training/data.py before the data package).

Protocol (issue 9): the corpus is the paragraphs of `tinyshakespeare/input.txt` and of `wikitext-2-partial/test.txt`
with at least 50 characters, plus planted near-duplicates: every 10th document of at least 300 characters copied
with one character changed in its middle (character 5-gram Jaccard about 0.95) and put at the end. Both
implementations run on the same `datasets.Dataset` in one process, interleaved and repeated (the best time is
kept, since other work may share the CPUs), with threshold 0.85, 128 permutations and `min_chars=50`. Checked: both
drop every planted copy, keep every other document of the test corpus, and their kept sets are compared; every
dropped document is checked against the exact Jaccard similarity (a drop below the threshold is a false positive).

    python benchmarks/bench_dedup.py [--repeats 3] [--threshold 0.85]

Prints a table and writes benchmarks/results/dedup.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import time
from pathlib import Path

import numpy as np
from datasets import Dataset, Features, Value
from datasets import List as ListFeature

from scratchlm.corpus import near_duplicate_keep_indices, shingles

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SCRATCHLM_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results" / "dedup.json"
MIN_CHARS = 50

# ------------------------------------------------------------------------------ the reference (the old code)

_PERMUTATIONS, _SHINGLE, _SEED = 128, 5, 1234
_MERSENNE_61 = np.uint64((1 << 61) - 1)
_WHITESPACE = re.compile(r"\s+")


def _reference_permutations(num_perm):
    rng = np.random.default_rng(_SEED)
    a = rng.integers(1, 1 << 31, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, 1 << 31, size=num_perm, dtype=np.uint64)
    return a, b


def _reference_shingle_hashes(text, width):
    normalized = _WHITESPACE.sub(" ", text.lower()).strip()
    codes = np.frombuffer(normalized.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    width = max(1, min(width, len(codes)))
    count = len(codes) - width + 1
    hashes = np.zeros(max(count, 1), dtype=np.uint64)
    for offset in range(width):
        hashes = hashes * np.uint64(1_000_003) + codes[offset : offset + count]
    hashes ^= hashes >> np.uint64(29)
    return np.unique((hashes >> np.uint64(32)) ^ (hashes & np.uint64(0xFFFFFFFF)))


def reference_signature(text, num_perm=_PERMUTATIONS):
    a, b = _reference_permutations(num_perm)
    signature = np.full(num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
    hashes = _reference_shingle_hashes(text, _SHINGLE)
    for start in range(0, len(hashes), 4096):
        chunk = hashes[start : start + 4096, None]
        signature = np.minimum(signature, ((chunk * a + b) % _MERSENNE_61).min(axis=0))
    return (signature & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _reference_signature_batch(batch, num_perm):
    return {"signature": [reference_signature(t, num_perm) for t in batch["text"]],
            "length": [len(t) for t in batch["text"]]}


def reference_lsh_bands(threshold, num_perm=_PERMUTATIONS):
    best, best_error = (1, num_perm), math.inf
    below, above = np.linspace(0, threshold, 200), np.linspace(threshold, 1, 200)
    for bands in range(1, num_perm + 1):
        rows = num_perm // bands
        false_positive = np.trapezoid(1 - (1 - below**rows) ** bands, below)
        false_negative = np.trapezoid((1 - above**rows) ** bands, above)
        if false_positive + false_negative < best_error:
            best, best_error = (bands, rows), false_positive + false_negative
    return best


def reference_keep_indices(dataset, threshold, min_chars=0):
    signatures = dataset.map(
        _reference_signature_batch, batched=True, remove_columns=dataset.column_names,
        fn_kwargs={"num_perm": _PERMUTATIONS},
        features=Features({"signature": ListFeature(Value("uint32")), "length": Value("int64")}),
    )
    matrix = np.asarray(signatures.with_format("numpy")["signature"], dtype=np.uint32)
    lengths = np.asarray(signatures.with_format("numpy")["length"])
    bands, rows = reference_lsh_bands(threshold, matrix.shape[1])
    buckets, keep = {}, []
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


# ------------------------------------------------------------------------------------------------ the corpus


def paragraphs(path: Path) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")) if len(p.strip()) >= MIN_CHARS]


def planted_corpus(data_dir: Path) -> tuple[list[str], int]:
    """(documents, index of the first planted copy): distinct paragraphs, then near-copies of every 10th long one."""
    documents = list(dict.fromkeys(paragraphs(data_dir / "tinyshakespeare" / "input.txt")
                                   + paragraphs(data_dir / "wikitext-2-partial" / "test.txt")))
    long_ones = [text for text in documents if len(text) >= 300][::10]
    copies = []
    for text in long_ones:
        middle = len(text) // 2
        copies.append(text[:middle] + ("#" if text[middle] != "#" else "%") + text[middle + 1 :])
    return documents + copies, len(documents)


def false_positives(documents: list[str], kept: list[int], threshold: float) -> list[dict]:
    """Dropped documents whose exact 5-gram Jaccard similarity with every earlier document is below `threshold`."""
    grams = [shingles(text) for text in documents]
    wrong = []
    for index in sorted(set(range(len(documents))) - set(kept)):
        best = max((len(grams[index] & grams[other]) / len(grams[index] | grams[other]) for other in range(index)),
                   default=0.0)
        if best < threshold:
            wrong.append({"document": index, "max_exact_jaccard": round(best, 3), "start": documents[index][:40]})
    return wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.85)
    args = parser.parse_args()

    documents, first_copy = planted_corpus(DATA_DIR)
    dataset = Dataset.from_dict({"text": documents})
    implementations = {
        "reference (own numpy MinHash/LSH)": lambda: reference_keep_indices(dataset, args.threshold, MIN_CHARS),
        "datasketch MinHash + MinHashLSH": lambda: near_duplicate_keep_indices(dataset, args.threshold,
                                                                               min_chars=MIN_CHARS),
    }
    best = dict.fromkeys(implementations, math.inf)
    kept = {}
    for _ in range(args.repeats):
        for name, run in implementations.items():
            dataset.cleanup_cache_files()
            started = time.perf_counter()
            kept[name] = run()
            best[name] = min(best[name], time.perf_counter() - started)

    originals, copies = set(range(first_copy)), set(range(first_copy, len(documents)))
    wrongly_dropped = {name: false_positives(documents, kept[name], args.threshold) for name in implementations}
    reference, ours = (set(kept[name]) for name in implementations)
    results = {
        "documents": len(documents), "planted_copies": len(copies), "threshold": args.threshold,
        "platform": platform.platform(), "cpus": os.cpu_count(),
        "implementations": {
            name: {"best_seconds": round(best[name], 3), "kept": len(kept[name]),
                   "planted_copies_dropped": len(copies - set(kept[name])),
                   "originals_dropped": len(originals - set(kept[name])),
                   "dropped_below_threshold": len(wrongly_dropped[name]),
                   "dropped_below_threshold_examples": wrongly_dropped[name][:5]}
            for name in implementations
        },
        "kept_sets_equal": reference == ours,
        "kept_only_by_reference": sorted(reference - ours), "kept_only_by_datasketch": sorted(ours - reference),
        "time_ratio_datasketch_over_reference": round(best["datasketch MinHash + MinHashLSH"]
                                                      / best["reference (own numpy MinHash/LSH)"], 3),
    }
    print(f"{len(documents)} documents ({len(copies)} planted near-copies), threshold {args.threshold}")
    print(f"{'implementation':<36} {'best s':>8} {'kept':>6} {'copies dropped':>15} {'originals dropped':>18} "
          f"{'dropped, exact J < threshold':>29}")
    for name, row in results["implementations"].items():
        print(f"{name:<36} {row['best_seconds']:>8.2f} {row['kept']:>6} {row['planted_copies_dropped']:>15} "
              f"{row['originals_dropped']:>18} {row['dropped_below_threshold']:>29}")
    print(f"kept sets equal: {results['kept_sets_equal']}; time ratio datasketch / reference: "
          f"{results['time_ratio_datasketch_over_reference']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
