"""`scratchlm-prepare` on a corpus of a given size: time, peak memory and bytes on disk, and its throughput against
the `tokenizers` library's own batch encoding of the same file with the same cores (issue 29).

The corpus is the documents of the .txt files of /work/shared/data (tinyshakespeare, wikitext-2) concatenated into
`--corpus_dir` up to `--mb` megabytes; each further copy numbers its documents ("[copy 3] ...") so that
deduplication keeps them (it drops the sources' own repeated documents, about 1% of the text). The tokenizer is trained here on the first 5 MB (or given with `--tokenizer`).
Each measurement runs in a fresh process, best of `--repeats`:

- `prepare`: `scratchlm-prepare` end to end (read, clean, dedup, hold out, tokenize, write the stores) into an empty
  cache: its time, CPU seconds, peak RSS (of the command's process) and the cache's bytes on disk;
- `encode` / `encode_fast`: `bench_token_store.py`'s measurement of `encode_batch` / `encode_batch_fast` on the file.

    python benchmarks/bench_prepare.py --mb 20
    python benchmarks/bench_prepare.py --mb 400 --repeats 1 --corpus_dir /tmp

Prints a table and writes benchmarks/results/prepare-<mb>mb.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_token_store import DATA_DIR, cpu_seconds, measure, peak_rss_mb  # noqa: E402

from scratchlm.corpus import read_corpus  # noqa: E402
from scratchlm.corpus.token_store import DEFAULT_ENCODE_BATCH, DEFAULT_SHARD_TOKENS  # noqa: E402
from scratchlm.tokenization import train_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("tinyshakespeare/input.txt", "wikitext-2-partial/test.txt", "wikitext-2-partial/valid.txt")


def make_corpus(path: Path, megabytes: float) -> Path:
    """The documents of `SOURCES` (as `read_corpus` reads them) up to `megabytes`, every copy after the first
    numbering its documents, so that only the sources' own duplicates are dropped."""
    target = int(megabytes * 1e6)
    if path.is_file() and path.stat().st_size >= target:
        return path
    sources = [list(read_corpus(str(DATA_DIR / name))) for name in SOURCES]
    written, copy = 0, 0
    with open(path, "w", encoding="utf-8") as out:
        while written < target:
            for documents in sources:
                for document in documents:
                    chunk = (f"[copy {copy}] " if copy else "") + document + "\n\n"
                    out.write(chunk)
                    written += len(chunk.encode("utf-8"))
                    if written >= target:
                        return path
            copy += 1
    return path


def run_prepare(corpus: Path, tokenizer_dir: Path, shard_tokens: int) -> dict:
    """`scratchlm-prepare` in this process into an empty cache (then removed): time, CPU, peak RSS, bytes on disk."""
    from scratchlm.training.prepare import main as prepare

    cache = Path(tempfile.mkdtemp(prefix="bench-prepare-cache-"))
    try:
        start, cpu_start = time.perf_counter(), cpu_seconds()
        with contextlib.redirect_stdout(io.StringIO()):
            prepare(["--train_files", str(corpus), "--tokenizer_name_or_path", str(tokenizer_dir),
                     "--data_cache_dir", str(cache), "--store_shard_tokens", str(shard_tokens)])
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
        tokens = sum(json.loads(path.read_text())["num_tokens"] for path in cache.rglob("index.json"))
        files = [path for path in cache.rglob("*") if path.is_file()]
        on_disk = sum(path.stat().st_size for path in files)
        return {"seconds": seconds, "cpu_seconds": cpu, "tokens": tokens, "tokens_per_second": tokens / seconds,
                "peak_rss_mb": peak_rss_mb(), "bytes_on_disk": on_disk, "bytes_per_token": on_disk / tokens,
                "files": len(files)}
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def measure_prepare(corpus: Path, tokenizer_dir: Path, shard_tokens: int) -> dict:
    """`run_prepare` in a fresh interpreter (its own peak memory; the cleaning workers it starts are not counted)."""
    command = [sys.executable, __file__, "--phase", "prepare", "--corpus", str(corpus), "--tokenizer",
               str(tokenizer_dir), "--shard_tokens", str(shard_tokens)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=20)
    parser.add_argument("--corpus_dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--tokenizer", type=Path, help="a saved ScratchLM tokenizer (default: train one here)")
    parser.add_argument("--vocab_size", type=int, default=8192)
    parser.add_argument("--shard_tokens", type=int, default=DEFAULT_SHARD_TOKENS)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--phase", choices=["prepare"], help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_prepare(args.corpus, args.tokenizer, args.shard_tokens)))
        return
    corpus = make_corpus(args.corpus_dir / f"scratchlm-bench-documents-{args.mb:g}mb.txt", args.mb)

    with tempfile.TemporaryDirectory(prefix="bench-prepare-tokenizer-") as scratch:
        tokenizer_dir = args.tokenizer
        if tokenizer_dir is None:
            with open(corpus, encoding="utf-8") as handle:
                sample = handle.read(5_000_000)
            train_tokenizer(sample.split("\n\n"), vocab_size=args.vocab_size, show_progress=False).save_pretrained(
                scratch)
            tokenizer_dir = Path(scratch)
        encoder_args = SimpleNamespace(file=corpus, batch_size=DEFAULT_ENCODE_BATCH, shard_tokens=args.shard_tokens)
        runs = {"prepare": [], "encode": [], "encode_fast": []}
        for repeat in range(args.repeats):
            for phase in runs:
                result = (measure_prepare(corpus, tokenizer_dir, args.shard_tokens) if phase == "prepare"
                          else measure(phase, encoder_args, tokenizer_dir))
                runs[phase].append(result)
                print(f"repeat {repeat + 1} {phase:12s} {result['seconds']:8.2f} s")

    best = {phase: min(results, key=lambda result: result["seconds"]) for phase, results in runs.items()}
    # The store holds the cleaned documents (duplicates and the held-out part included in the count of both
    # stores): tokens/s compares the throughputs, not the token counts.
    report = {
        "corpus": str(corpus), "corpus_bytes": corpus.stat().st_size, "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "shard_tokens": args.shard_tokens, "best": best, "runs": runs,
        "prepare_vs_encode_batch": best["prepare"]["tokens_per_second"] / best["encode"]["tokens_per_second"],
        "prepare_vs_encode_batch_fast":
            best["prepare"]["tokens_per_second"] / best["encode_fast"]["tokens_per_second"],
        # The same file read by both: its bytes per second, whatever cleaning removed.
        "prepare_vs_encode_batch_file_rate": best["encode"]["seconds"] / best["prepare"]["seconds"],
    }
    print(f"\n{report['corpus_bytes'] / 1e6:.1f} MB corpus, {os.cpu_count()} cores")
    print(f"{'':12s} {'seconds':>8s} {'CPU s':>7s} {'tokens/s':>10s} {'peak RSS MB':>12s}")
    for phase, result in best.items():
        print(f"{phase:12s} {result['seconds']:8.2f} {result['cpu_seconds']:7.2f} {result['tokens_per_second']:10,.0f} "
              f"{result['peak_rss_mb']:12.0f}")
    print(f"prepare / encode_batch throughput: {report['prepare_vs_encode_batch']:.2f}; "
          f"/ encode_batch_fast: {report['prepare_vs_encode_batch_fast']:.2f}; file bytes per second / encode_batch's: "
          f"{report['prepare_vs_encode_batch_file_rate']:.2f}")
    print(f"cache: {best['prepare']['bytes_on_disk']:,} bytes on disk, {best['prepare']['bytes_per_token']:.3f} "
          f"bytes per token, {best['prepare']['files']} files")
    results = ROOT / "benchmarks" / "results" / f"prepare-{args.mb:g}mb.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
