"""The tinyshakespeare race with and without `torch.compile`, compilation time counted.

Runs benchmarks/bench_pretrain.py (the race recipe, its clock starting when training starts, so the first,
compiling step is on it) once eagerly and once with the Trainer's `--torch_compile true`, alternating the order
over repeats, and reports for each: seconds to 2.72 bits per byte, bits per byte at 100 s, tokens/s and the
fraction of the matmul peak. Any further option goes to both runs (e.g. `--bf16 true`).

    python benchmarks/bench_compile_race.py [--quick] [--repeats 1] [-- extra scratchlm-pretrain options]

JSON goes to benchmarks/results/compile_race.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RACE = ROOT / "benchmarks" / "bench_pretrain.py"
RACE_RESULT = ROOT / "benchmarks" / "results" / "pretrain_race.json"
KEPT = ("seconds_to_2_72", "bits_per_byte_at_100s", "bits_per_byte_at_50s", "final_bits_per_byte", "train_seconds",
        "tokens_per_second", "fraction_of_peak", "precision")


def race(compiled: bool, extra: list[str]) -> dict:
    command = [sys.executable, str(RACE), "--torch_compile", "true" if compiled else "false", *extra]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)
    result = json.loads(RACE_RESULT.read_text())
    return {key: result.get(key) for key in KEPT} | {"points": result["points"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="300 steps instead of the recipe's 1000")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "compile_race.json"))
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"] + (["--max_steps", "300"] if args.quick else [])

    runs = {"eager": [], "compiled": []}
    for repeat in range(args.repeats):
        for mode in ("eager", "compiled") if repeat % 2 == 0 else ("compiled", "eager"):
            runs[mode].append(race(mode == "compiled", extra))
    summary = {}
    for mode, results in runs.items():
        summary[mode] = {key: [r[key] for r in results] for key in KEPT}
    print(json.dumps(summary, indent=2))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"extra_options": extra, "summary": summary, "runs": runs}, indent=2))
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
