"""AdamW against Muon (+ the time-budget schedule) on the tinyshakespeare race, side by side in one run.

Each variant is `benchmarks/bench_pretrain.py` (the race recipe, configs/bench-shakespeare-race.yaml) with a few
options changed, run one after the other in its own process so that none shares the CPU with another. The
learning-rate sweep of each optimizer is part of the table, so neither is handicapped by a rate chosen for the
other. Writes benchmarks/results/optimizers.json and prints a markdown table.

    python benchmarks/bench_optimizers.py                  # the default sweep
    python benchmarks/bench_optimizers.py --only adamw-2e-3 muon-2e-3 -- --max_steps 600   # a subset, extra options
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# name -> options over the race recipe (AdamW at 2e-3 with a cosine schedule over 1000 steps is today's recipe).
VARIANTS = {
    "adamw-2e-3": [],
    "adamw-4e-3": ["--learning_rate", "4e-3"],
    "muon-2e-3": ["--optim", "muon"],
    "muon-4e-3": ["--optim", "muon", "--muon_learning_rate", "4e-3"],
    "muon-8e-3": ["--optim", "muon", "--muon_learning_rate", "8e-3"],
    # the recipe's training minutes (~2 on a 2-core Zen 2) as a budget: warmup-stable-decay by the clock instead of
    # cosine over 1000 steps
    "adamw-2e-3-budget": ["--max_time_minutes", "2", "--max_steps", "100000", "--torch_compile", "true"],
}


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def run_variant(name: str, options: list[str], extra: list[str]) -> dict:
    result_file = RESULTS / f"optimizers-{name}.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_pretrain.py"), "--result_file", str(result_file),
               "--output_dir", f"outputs/bench-optimizers-{name}", *options, *extra]
    print(f"\n=== {name}: {' '.join(options + extra) or 'the recipe'}", flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    result = json.loads(result_file.read_text())
    result["wall_seconds_of_process"] = round(time.perf_counter() - started, 1)
    return result


def cell(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), help="Run only these variants.")
    parser.add_argument("extra", nargs="*", help="Options for every variant (after --).")
    args = parser.parse_args(argv)
    names = args.only or list(VARIANTS)
    results = {name: run_variant(name, VARIANTS[name], args.extra) for name in names}
    summary = {"cpu": cpu_model(), "date": time.strftime("%Y-%m-%d"), "extra_options": args.extra,
               "variants": {name: {key: value for key, value in result.items() if key not in ("points", "samples")}
                            for name, result in results.items()},
               "points": {name: result["points"] for name, result in results.items()}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "optimizers.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{summary['cpu']}, {summary['date']}\n")
    print("| variant | options | s to 2.72 bpb | bpb at 50 s | bpb at 100 s | final bpb | train s | tokens/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, result in results.items():
        print(f"| {name} | `{' '.join(VARIANTS[name]) or 'recipe'}` | {cell(result['seconds_to_2_72'], 1)} | "
              f"{cell(result['bits_per_byte_at_50s'])} | {cell(result['bits_per_byte_at_100s'])} | "
              f"{cell(result['final_bits_per_byte'])} | {cell(result['train_seconds'], 1)} | "
              f"{result['tokens_per_second']} |")


if __name__ == "__main__":
    main()
