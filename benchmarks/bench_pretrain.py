"""The tinyshakespeare race: validation bits per byte against training wall time.

nanoGPT's split (first 90 % of the bytes of tinyshakespeare/input.txt train, the last 10 % validate), a
tokenizer trained on the training part, and `scratchlm-pretrain` with the recipe in
configs/bench-shakespeare-race.yaml (command-line options override it). The clock counts training only:
evaluation time is subtracted. Reports bits per byte at 50 s and 100 s, the time to reach 2.72 bits per byte
(nanoGPT's CPU recipe: ~100 s), tokens/s, achieved FLOP/s against the matmul peak, and peak memory.

    python benchmarks/bench_pretrain.py [--result_file F] [--max_steps N] [...any scratchlm-pretrain option]

The result goes to --result_file (default benchmarks/results/pretrain_race.json).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from scratchlm.cli import parse_args
from scratchlm.training.arguments import ModelArguments, PretrainingDataArguments, ScratchLMTrainingArguments
from scratchlm.training.generation import SampleArguments
from scratchlm.training.pretrain import pretrain

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "bench-shakespeare-race.yaml"
TARGET_BPB = 2.72


class TrainingClock(TrainerCallback):
    """Records (training seconds, step, tokens, bits per byte) at every evaluation, evaluation time excluded."""

    def __init__(self, tokens_per_step: int):
        self.tokens_per_step = tokens_per_step
        self.points: list[dict] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.evaluating = time.perf_counter(), 0.0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.evaluating += metrics.get("eval_runtime", 0.0)
        seconds = time.perf_counter() - self.start - self.evaluating
        self.points.append({"seconds": round(seconds, 2), "step": state.global_step,
                            "tokens": state.global_step * self.tokens_per_step,
                            "bits_per_byte": metrics.get("eval_bits_per_byte")})
        print(f"[clock] {seconds:7.1f} s  step {state.global_step:5d}  bpb {metrics.get('eval_bits_per_byte'):.4f}",
              flush=True)


def matmul_peak_gflops(dtype: torch.dtype) -> float:
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * 2048**3 / sorted(times)[len(times) // 2] / 1e9


def interpolate_time(points: list[dict], target: float) -> float | None:
    previous = None
    for point in points:
        if point["bits_per_byte"] <= target:
            if previous is None:
                return point["seconds"]
            fraction = (previous["bits_per_byte"] - target) / (previous["bits_per_byte"] - point["bits_per_byte"])
            return previous["seconds"] + fraction * (point["seconds"] - previous["seconds"])
        previous = point
    return None


def value_at(points: list[dict], seconds: float) -> float | None:
    """Best validation bits per byte measured within `seconds` of training."""
    within = [p["bits_per_byte"] for p in points if p["seconds"] <= seconds * 1.02]
    return min(within) if within else None


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    out = ROOT / "benchmarks" / "results" / "pretrain_race.json"
    if "--result_file" in argv:
        at = argv.index("--result_file")
        out = Path(argv[at + 1])
        del argv[at:at + 2]
    model_args, data_args, training_args, sample_args = parse_args(
        [ModelArguments, PretrainingDataArguments, ScratchLMTrainingArguments, SampleArguments],
        ["--config", str(RECIPE), *argv],
    )
    block = data_args.block_size
    tokens_per_step = block * training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    clock = TrainingClock(tokens_per_step)
    started = time.perf_counter()
    record = pretrain(model_args, data_args, training_args, sample_args, callbacks=[clock])
    total = time.perf_counter() - started

    points = clock.points
    train_seconds = points[-1]["seconds"]
    tokens_per_second = points[-1]["tokens"] / train_seconds
    flops_per_token = 6 * record.num_parameters
    dtype = torch.bfloat16 if training_args.bf16 else torch.float32
    peak = matmul_peak_gflops(dtype)
    result = {
        "recipe": str(RECIPE.relative_to(ROOT)), "overrides": argv,
        "num_parameters": record.num_parameters, "precision": "bf16" if training_args.bf16 else "fp32",
        "bits_per_byte_at_50s": value_at(points, 50), "bits_per_byte_at_100s": value_at(points, 100),
        "seconds_to_2_72": interpolate_time(points, TARGET_BPB), "final_bits_per_byte": points[-1]["bits_per_byte"],
        "train_seconds": train_seconds, "wall_seconds_including_eval_and_setup": round(total, 1),
        "tokens_per_second": round(tokens_per_second), "achieved_gflops": round(tokens_per_second * flops_per_token / 1e9, 1),
        "matmul_peak_gflops": round(peak, 1), "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "points": points, "samples": record.samples,
    }
    result["fraction_of_peak"] = round(result["achieved_gflops"] / peak, 3)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("points", "samples")}, indent=2))


if __name__ == "__main__":
    main()
