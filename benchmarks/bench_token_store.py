"""The token store's writer against the `tokenizers` library's own batch encoding of the same file (issue 29).

The documents are the paragraphs of `--file` (`read_corpus`, the reader of the tokenizer trainer), read as a stream.
Each measurement runs in a fresh process (so each peak RSS is its own), on the same cores, interleaved and repeated;
the best time of each is kept, since other work may share the CPUs:

- `encode`: `backend_tokenizer.encode_batch` on batches of `--batch-size` documents, counting tokens, nothing kept;
- `encode_fast`: the same with `encode_batch_fast` (no character offsets), what the writer calls;
- `write`: `write_token_store` end to end (read, encode, append eos, shard, write, index) into a fresh directory.

Reports tokens/s and CPU seconds (all threads) of each, the writer's throughput as a fraction of each encoder's, bytes on disk per token of the
store (every file of its directory), and peak RSS. The tokenizer is `--tokenizer` (a saved directory) or one trained
here with `train_tokenizer` on the first `--train-bytes` of the file.

    python benchmarks/bench_token_store.py [--file PATH] [--tokenizer DIR] [--vocab-size 8192] [--repeats 2]

Prints a table and writes benchmarks/results/token_store.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scratchlm.corpus import read_corpus
from scratchlm.corpus.token_store import DEFAULT_ENCODE_BATCH, DEFAULT_SHARD_TOKENS, write_token_store
from scratchlm.tokenization import ScratchLMTokenizer, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SCRATCHLM_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results" / "token_store.json"
PHASES = ("encode", "encode_fast", "write")


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM, not `ru_maxrss`: a child keeps the `ru_maxrss` of the
    parent that forked it (here the parent trained a tokenizer), VmHWM starts afresh at exec."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024


def cpu_seconds() -> float:
    """User + system time of this process, all its threads (the Rust encoder's too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_phase(phase: str, file: Path, tokenizer_dir: Path, batch_size: int, shard_tokens: int) -> dict:
    """One measurement, in this process."""
    tokenizer = ScratchLMTokenizer.from_pretrained(tokenizer_dir)
    documents = read_corpus(str(file))
    start, cpu_start = time.perf_counter(), cpu_seconds()
    if phase == "write":
        out_dir = Path(tempfile.mkdtemp(prefix="token-store-bench-"))
        try:
            store = write_token_store(documents, tokenizer, out_dir, key="bench", shard_tokens=shard_tokens,
                                      batch_size=batch_size)
            seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
            on_disk = sum(entry.stat().st_size for entry in out_dir.iterdir())
            result = {"tokens": store.num_tokens, "documents": store.num_documents, "bytes_on_disk": on_disk,
                      "bytes_per_token": on_disk / store.num_tokens, "files": len(list(out_dir.iterdir())),
                      "dtype": store.dtype.name}
        finally:
            shutil.rmtree(out_dir)
    else:
        backend = tokenizer.backend_tokenizer
        encode = backend.encode_batch if phase == "encode" else backend.encode_batch_fast
        tokens = count = 0
        batch: list[str] = []
        for text in documents:
            batch.append(text)
            if len(batch) == batch_size:
                tokens += sum(len(encoding) for encoding in encode(batch, add_special_tokens=False))
                count, batch = count + len(batch), []
        if batch:
            tokens += sum(len(encoding) for encoding in encode(batch, add_special_tokens=False))
            count += len(batch)
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
        result = {"tokens": tokens + count, "documents": count}  # + one eos a document, as the store holds
    return {**result, "seconds": seconds, "cpu_seconds": cpu, "tokens_per_second": result["tokens"] / seconds,
            "peak_rss_mb": peak_rss_mb()}


def measure(phase: str, args, tokenizer_dir: Path) -> dict:
    """`run_phase` in a fresh interpreter: its own peak memory, no warm state from the other phases."""
    command = [sys.executable, __file__, "--phase", phase, "--file", str(args.file), "--tokenizer", str(tokenizer_dir),
               "--batch-size", str(args.batch_size), "--shard-tokens", str(args.shard_tokens)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DATA_DIR / "tinyshakespeare" / "input.txt")
    parser.add_argument("--tokenizer", type=Path, help="a saved ScratchLM tokenizer (default: train one here)")
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--train-bytes", type=int, default=5_000_000)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_ENCODE_BATCH)
    parser.add_argument("--shard-tokens", type=int, default=DEFAULT_SHARD_TOKENS)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.file, args.tokenizer, args.batch_size, args.shard_tokens)))
        return

    with tempfile.TemporaryDirectory(prefix="token-store-bench-tokenizer-") as scratch:
        tokenizer_dir = args.tokenizer
        if tokenizer_dir is None:
            with open(args.file, encoding="utf-8") as handle:
                sample = handle.read(args.train_bytes)
            start = time.perf_counter()
            train_tokenizer(sample.split("\n\n"), vocab_size=args.vocab_size, show_progress=False).save_pretrained(
                scratch)
            print(f"tokenizer trained on {len(sample):,} characters in {time.perf_counter() - start:.1f} s")
            tokenizer_dir = Path(scratch)
        runs = {phase: [] for phase in PHASES}
        for repeat in range(args.repeats):
            for phase in PHASES:
                runs[phase].append(measure(phase, args, tokenizer_dir))
                print(f"repeat {repeat + 1} {phase:12s} {runs[phase][-1]['seconds']:7.2f} s")

    best = {phase: min(results, key=lambda result: result["seconds"]) for phase, results in runs.items()}
    assert best["write"]["tokens"] == best["encode"]["tokens"] == best["encode_fast"]["tokens"]
    report = {
        "file": str(args.file), "file_bytes": args.file.stat().st_size, "batch_size": args.batch_size,
        "shard_tokens": args.shard_tokens, "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "best": best, "runs": runs,
        "write_vs_encode_batch": best["encode"]["seconds"] / best["write"]["seconds"],
        "write_vs_encode_batch_fast": best["encode_fast"]["seconds"] / best["write"]["seconds"],
        "write_vs_encode_batch_fast_cpu": best["encode_fast"]["cpu_seconds"] / best["write"]["cpu_seconds"],
    }
    print(f"\n{report['file_bytes'] / 1e6:.1f} MB, {best['write']['documents']:,} documents, "
          f"{best['write']['tokens']:,} tokens (with one eos a document), {os.cpu_count()} cores")
    print(f"{'':12s} {'seconds':>8s} {'CPU s':>7s} {'tokens/s':>10s} {'peak RSS MB':>12s}")
    for phase in PHASES:
        result = best[phase]
        print(f"{phase:12s} {result['seconds']:8.2f} {result['cpu_seconds']:7.2f} {result['tokens_per_second']:10,.0f} "
              f"{result['peak_rss_mb']:12.0f}")
    print(f"writer / encode_batch throughput: {report['write_vs_encode_batch']:.2f}; "
          f"writer / encode_batch_fast: {report['write_vs_encode_batch_fast']:.2f} "
          f"(CPU time: {report['write_vs_encode_batch_fast_cpu']:.2f})")
    print(f"store: {best['write']['bytes_per_token']:.4f} bytes on disk per token ({best['write']['dtype']}, "
          f"{best['write']['files']} files)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
