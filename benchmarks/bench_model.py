"""ScratchLM against transformers' LlamaForCausalLM, same shape, side by side in one run.

Training tokens/s (fp32 and bf16 autocast, AdamW, batch 8 x 256), `generate` tokens/s for 128 new tokens at
batch 1 and 8, and peak memory of a training run (each model in its own process). Measurements alternate
between the two models, round after round, and the medians are compared as ratios (ScratchLM / Llama; above
1.0 is better, except memory, where below 1.0 is better).

    python benchmarks/bench_model.py [--rounds 3] [--output benchmarks/results/model.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from scratchlm.modeling import ScratchLMConfig, ScratchLMForCausalLM

SHAPE = dict(
    vocab_size=8192, hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
    num_key_value_heads=6, max_position_embeddings=1024, tie_word_embeddings=True,
)
BATCH, SEQ, NEW_TOKENS = 8, 256, 128


def build(name: str):
    torch.manual_seed(0)
    if name == "llama":
        model = LlamaForCausalLM(LlamaConfig(**SHAPE, attn_implementation="sdpa"))
    else:
        model = ScratchLMForCausalLM(ScratchLMConfig(**SHAPE, attn_implementation="sdpa"))
    model.generation_config.pad_token_id = 0
    return model


def train_tokens_per_second(model, steps: int, bf16: bool) -> float:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randint(0, SHAPE["vocab_size"], (BATCH, SEQ))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=batch, labels=batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * BATCH * SEQ / (time.perf_counter() - start)


@torch.no_grad()
def generate_tokens_per_second(model, batch_size: int) -> float:
    model.eval()
    prompt = torch.randint(1, SHAPE["vocab_size"], (batch_size, 16))
    kwargs = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None)
    model.generate(prompt, **{**kwargs, "max_new_tokens": 8, "min_new_tokens": 8})  # warm-up
    start = time.perf_counter()
    model.generate(prompt, **kwargs)
    return batch_size * NEW_TOKENS / (time.perf_counter() - start)


def peak_memory_gib(name: str) -> float:
    """Peak RSS of a fresh process that builds the model and runs 3 fp32 training steps."""
    code = (
        f"import resource, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_model as b; "
        f"b.train_tokens_per_second(b.build({name!r}), 3, False); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1]) / 2**20  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=4)
    parser.add_argument("--output", default="benchmarks/results/model.json")
    args = parser.parse_args()

    models = {name: build(name) for name in ("llama", "scratchlm")}
    assert models["llama"].num_parameters() == models["scratchlm"].num_parameters()
    figures = {name: {key: [] for key in ("train_fp32", "train_bf16", "generate_b1", "generate_b8")} for name in models}
    for round_index in range(args.rounds):
        for name in (("llama", "scratchlm") if round_index % 2 == 0 else ("scratchlm", "llama")):
            model = models[name]
            figures[name]["train_fp32"].append(train_tokens_per_second(model, args.train_steps, bf16=False))
            figures[name]["train_bf16"].append(train_tokens_per_second(model, args.train_steps, bf16=True))
            figures[name]["generate_b1"].append(generate_tokens_per_second(model, 1))
            figures[name]["generate_b8"].append(generate_tokens_per_second(model, 8))
            print(f"round {round_index + 1}/{args.rounds} {name}: "
                  + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in figures[name].items()), flush=True)

    medians = {name: {key: statistics.median(values) for key, values in f.items()} for name, f in figures.items()}
    for name in models:
        medians[name]["peak_memory_gib"] = peak_memory_gib(name)
    # Each round measures both models back to back, so the median of the per-round ratios cancels the slow drift
    # of a shared machine better than a ratio of medians.
    ratios = {
        key: statistics.median(ours / theirs for ours, theirs in zip(figures["scratchlm"][key], figures["llama"][key]))
        for key in figures["llama"]
    }
    ratios["peak_memory_gib"] = medians["scratchlm"]["peak_memory_gib"] / medians["llama"]["peak_memory_gib"]

    print(f"\n{'figure':<18}{'Llama':>12}{'ScratchLM':>12}{'ratio':>8}")
    for key, ratio in ratios.items():
        print(f"{key:<18}{medians['llama'][key]:>12,.2f}{medians['scratchlm'][key]:>12,.2f}{ratio:>8.3f}")
    result = {
        "shape": SHAPE, "batch": BATCH, "seq": SEQ, "new_tokens": NEW_TOKENS, "rounds": args.rounds,
        "parameters": models["llama"].num_parameters(), "torch": torch.__version__,
        "medians": medians, "ratios_scratchlm_over_llama": ratios, "samples": figures,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
