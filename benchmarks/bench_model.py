"""ScratchLM against transformers' LlamaForCausalLM, same shape and same weights, side by side in one run.

Each figure is measured for both models, alternating round after round (Llama first in even rounds), and
compared as the median of the per-round ratios with its spread (ScratchLM / Llama; above 1.0 is better):

- training tokens/s (AdamW, batch 8 x 256), fp32 and bf16 autocast, eager and under `torch.compile`; compiled runs
  train with the attention scratchlm-pretrain picks by measuring (eager matmul-softmax or SDPA; both models alike);
- `generate` tokens/s for greedy decoding at batch 1 and 8: the default (eager, dynamic cache) and a compiled
  static-cache decode (`cache_implementation="static"` + a full-graph `CompileConfig`);
- greedy decoding tokens/s through inference/decoding.py's `StaticCacheDecoder` (a static cache and one forward per
  token without `generate`'s per-token Python; the forward compiled in compiled runs), with the weights in fp32 and
  in bf16, for both models, so the gain of the loop (shared by Llama) and the model's own part can be told apart;
- with `--exactness_model DIR` (a trained causal LM, e.g. the demo's outputs/shakespeare): how far bf16 weights move
  its predictions on held-out text (next-token top-1 agreement with fp32, bits per token in both);
- headline ratios of ScratchLM's fastest path against Llama's default (eager) path, next to the same-settings
  ratios that say which part of a gain is the model's own and which is torch.compile's;
- compilation time, the fraction of the measured matmul peak (6N FLOPs per token), and peak memory of
  `generate` at a 2k context (each model in its own process);
- where a training step's time goes (one profiled step per model, mode and precision): matrix products, attention
  and everything else, and the ceilings that follow: tokens/s if everything but the matrix products (and attention)
  took no time, as a ratio to Llama's eager figure. A goal above them cannot be met by cutting overhead.

    python benchmarks/bench_model.py            # full: 5 rounds
    python benchmarks/bench_model.py --quick    # 2 rounds, fewer steps and tokens (a few minutes more for compiling)
    python benchmarks/bench_model.py --no-compile   # the eager figures only
    python benchmarks/bench_model.py --figures decode_b1,decode_b1_bf16,generate_b1 --exactness_model outputs/shakespeare

JSON goes to benchmarks/results/model.json (or --output).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import CompileConfig, LlamaConfig, LlamaForCausalLM

from scratchlm.inference.decoding import StaticCacheDecoder
from scratchlm.modeling import ScratchLMConfig, ScratchLMForCausalLM
from scratchlm.training.acceleration import fastest_attention_implementation

SHAPE = dict(
    vocab_size=8192, hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
    num_key_value_heads=6, max_position_embeddings=1024, tie_word_embeddings=True,
)
BATCH, SEQ, PROMPT = 8, 256, 16
MODELS = ("llama", "scratchlm")
FIGURES = ("train_fp32", "train_bf16", "generate_b1", "generate_b8", "decode_b1", "decode_b8", "decode_b1_bf16",
           "decode_b8_bf16")
DECODES = {"decode_b1": (1, None), "decode_b8": (8, None), "decode_b1_bf16": (1, torch.bfloat16),
           "decode_b8_bf16": (8, torch.bfloat16)}


def build(name: str, **overrides):
    """The model `name` with seed-0 weights: both models get identical tensors (same shapes, same init order)."""
    torch.manual_seed(0)
    shape = {**SHAPE, **overrides}
    if name == "llama":
        model = LlamaForCausalLM(LlamaConfig(**shape, attn_implementation="sdpa"))
    else:
        model = ScratchLMForCausalLM(ScratchLMConfig(**shape, attn_implementation="sdpa"))
    model.generation_config.pad_token_id = 0
    return model


class TrainingRun:
    """A model with its optimizer; `compiled` wraps the model in torch.compile (as the Trainer's torch_compile) and
    trains with `attention` ({bf16: implementation}), the fastest path's; eager runs keep SDPA, the default.
    Its decoders (fp32 and bf16) decode the initial weights: speed does not depend on training."""

    def __init__(self, model, compiled: bool, attention: dict[bool, str] | None = None):
        self.decoders = {dtype: StaticCacheDecoder(model.eval(), compile=compiled, dtype=dtype)
                         for dtype in (None, torch.bfloat16)}
        self.model = model.train()
        self.forward = torch.compile(model) if compiled else model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.batch = torch.randint(0, SHAPE["vocab_size"], (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
        default = model.config._attn_implementation
        self.attention = attention if compiled and attention else {False: default, True: default}

    def step(self, bf16: bool) -> float:
        default = self.model.config._attn_implementation
        self.model.set_attn_implementation(self.attention[bf16])  # generate and the decoders keep the default
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = self.forward(input_ids=self.batch, labels=self.batch, use_cache=False).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - start
        self.model.set_attn_implementation(default)
        return seconds

    def tokens_per_second(self, steps: int, bf16: bool) -> float:
        return steps * BATCH * SEQ / sum(self.step(bf16) for _ in range(steps))


def compiled_decode_config() -> CompileConfig:
    config = CompileConfig(fullgraph=True, dynamic=False, mode="default")
    config._compile_all_devices = True  # generate compiles only on accelerators unless told otherwise
    return config


def prompt_batch(batch_size: int) -> torch.Tensor:
    return torch.randint(1, SHAPE["vocab_size"], (batch_size, PROMPT), generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def generate_seconds(model, batch_size: int, new_tokens: int, compiled: bool) -> float:
    model.eval()
    prompt = prompt_batch(batch_size)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, eos_token_id=None)
    if compiled:
        kwargs.update(cache_implementation="static", compile_config=compiled_decode_config())
    start = time.perf_counter()
    model.generate(prompt, **kwargs)
    return time.perf_counter() - start


def decode_seconds(run: TrainingRun, figure: str, new_tokens: int) -> float:
    """Greedy decoding through inference/decoding.py's StaticCacheDecoder (its step compiled in compiled runs)."""
    batch_size, dtype = DECODES[figure]
    prompt = prompt_batch(batch_size)
    start = time.perf_counter()
    run.decoders[dtype].generate(prompt, max_new_tokens=new_tokens)
    return time.perf_counter() - start


@torch.no_grad()
def bf16_exactness(model_dir: str, text_file: str, *, windows: int = 16, window: int = 256) -> dict:
    """Next-token predictions of a trained model with fp32 and with bf16 weights on the last part of `text_file`
    (held out from the demo's training): top-1 agreement and bits per token of each."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
    fp32 = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True, dtype=torch.float32).eval()
    bf16 = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True, dtype=torch.bfloat16).eval()
    text = Path(text_file).read_text(encoding="utf-8")
    ids = tokenizer(text[-len(text) // 10:])["input_ids"]
    batch = torch.tensor([ids[i * window:(i + 1) * window] for i in range(min(windows, len(ids) // window))])
    logits = {name: model(input_ids=batch).logits[:, :-1].float() for name, model in (("fp32", fp32), ("bf16", bf16))}
    targets = batch[:, 1:]

    def bits_per_token(values: torch.Tensor) -> float:
        return float(torch.nn.functional.cross_entropy(values.transpose(1, 2), targets)) / 0.6931471805599453

    return {"model": model_dir, "tokens": targets.numel(),
            "top1_agreement": round(float((logits["fp32"].argmax(-1) == logits["bf16"].argmax(-1)).float().mean()), 4),
            "bits_per_token_fp32": round(bits_per_token(logits["fp32"]), 4),
            "bits_per_token_bf16": round(bits_per_token(logits["bf16"]), 4)}


def matmul_peak_gflops(dtype: torch.dtype, size: int = 2048) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times) / 1e9


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "mkldnn::_linear_pointwise",
              "mkl::_mkl_linear")


def training_step_split(run: TrainingRun, bf16: bool) -> dict:
    """Seconds of one profiled training step in matrix products, attention (SDPA) and the rest (self CPU time).
    With eager attention its two products count as matrix products and its softmax as the rest."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        run.step(bf16)
    events = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events) / 1e6
    matmul = sum(event.self_cpu_time_total for event in events if event.key in MATMUL_OPS) / 1e6
    attention = sum(event.self_cpu_time_total for event in events if "scaled_dot_product" in event.key) / 1e6
    return {"step_s": round(total, 6), "matmul_s": round(matmul, 6), "attention_s": round(attention, 6),
            "rest_s": round(total - matmul - attention, 6), "matmul_share": round(matmul / total, 3),
            "matmul_only_tokens_per_second": round(BATCH * SEQ / matmul, 1),
            "matmul_and_attention_tokens_per_second": round(BATCH * SEQ / (matmul + attention), 1)}


def generate_peak_memory_gib(name: str, context: int = 2048, new_tokens: int = 32) -> float:
    """Peak RSS of a fresh process that builds the model and generates up to a `context`-token sequence."""
    code = (
        f"import resource, sys, torch; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_model as b\n"
        f"model = b.build({name!r}, max_position_embeddings={context}).eval()\n"
        f"prompt = torch.randint(1, b.SHAPE['vocab_size'], (1, {context - new_tokens}))\n"
        f"with torch.no_grad(): model.generate(prompt, max_new_tokens={new_tokens}, do_sample=False, eos_token_id=None)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1]) / 2**20  # ru_maxrss is in KiB on Linux


def ratio_summary(ours: list[float], theirs: list[float]) -> dict:
    ratios = [a / b for a, b in zip(ours, theirs)]
    return {"median": round(statistics.median(ratios), 3), "min": round(min(ratios), 3),
            "max": round(max(ratios), 3), "per_round": [round(r, 3) for r in ratios]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 rounds, 2 training steps, 32 new tokens")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--train-steps", type=int, default=None)
    parser.add_argument("--new-tokens", type=int, default=None)
    parser.add_argument("--no-compile", action="store_true", help="eager figures only")
    parser.add_argument("--no-memory", action="store_true", help="skip the 2k-context generate memory figure")
    parser.add_argument("--figures", default=",".join(FIGURES), help=f"a subset of {','.join(FIGURES)}")
    parser.add_argument("--exactness_model", default=None,
                        help="a trained causal LM directory: report how bf16 weights change its predictions")
    parser.add_argument("--exactness_text", default="../shared/data/tinyshakespeare/input.txt",
                        help="text whose last tenth is scored for --exactness_model")
    parser.add_argument("--output", default="benchmarks/results/model.json")
    args = parser.parse_args()
    if args.exactness_model and not (Path(args.exactness_model) / "config.json").is_file():
        parser.error(f"--exactness_model {args.exactness_model}: no model there (no config.json)")
    if args.exactness_model and not Path(args.exactness_text).is_file():
        parser.error(f"--exactness_text {args.exactness_text}: no such file")
    rounds = args.rounds or (2 if args.quick else 5)
    train_steps = args.train_steps or (2 if args.quick else 4)
    new_tokens = args.new_tokens or (32 if args.quick else 128)
    modes = ("eager",) if args.no_compile else ("eager", "compiled")
    wanted = args.figures.split(",")
    if unknown := set(wanted) - set(FIGURES):
        parser.error(f"unknown figure(s) {', '.join(sorted(unknown))} (known: {', '.join(FIGURES)})")
    precisions = [bf16 for bf16 in (False, True) if f"train_{'bf16' if bf16 else 'fp32'}" in wanted]
    batch_sizes = [size for size in (1, 8) if f"generate_b{size}" in wanted]
    decodes = [figure for figure in DECODES if figure in wanted]

    # The attention scratchlm-pretrain picks for this shape and precision, measured once here and given to both
    # models' compiled runs.
    attention = {bf16: fastest_attention_implementation(ScratchLMConfig(**SHAPE), BATCH, SEQ,
                                                        torch.bfloat16 if bf16 else torch.float32)
                 for bf16 in (False, True)}
    print("attention of the compiled runs: " + ", ".join(
        f"{'bf16' if bf16 else 'fp32'} {choice} (eager {seconds['eager'] * 1e3:.1f} ms, "
        f"sdpa {seconds['sdpa'] * 1e3:.1f} ms)"
        for bf16, (choice, seconds) in attention.items()), flush=True)
    chosen = {bf16: choice for bf16, (choice, _) in attention.items()}
    runs = {(name, mode): TrainingRun(build(name), mode == "compiled", chosen) for name in MODELS for mode in modes}
    assert runs["llama", "eager"].model.num_parameters() == runs["scratchlm", "eager"].model.num_parameters()
    compile_seconds = {}
    for (name, mode), run in runs.items():  # warm-up; for compiled runs this is the compilation
        for bf16 in precisions:
            compile_seconds[f"{name}_{mode}_train_{'bf16' if bf16 else 'fp32'}_first_step"] = round(run.step(bf16), 1)
        for batch_size in batch_sizes:
            started = time.perf_counter()
            generate_seconds(run.model, batch_size, new_tokens if mode == "compiled" else 8, mode == "compiled")
            compile_seconds[f"{name}_{mode}_generate_b{batch_size}_first_call"] = round(time.perf_counter() - started, 1)
        for figure in decodes:
            compile_seconds[f"{name}_{mode}_{figure}_first_call"] = round(decode_seconds(run, figure, new_tokens), 1)
        print(f"warm {name} {mode} {compile_seconds}", flush=True)

    keys = [f"{what}_{mode}" for mode in modes for what in FIGURES if what in wanted]
    figures = {name: {key: [] for key in keys} for name in MODELS}
    for round_index in range(rounds):
        for name in MODELS if round_index % 2 == 0 else MODELS[::-1]:
            for mode in modes:
                run, f = runs[name, mode], figures[name]
                for bf16 in precisions:
                    f[f"train_{'bf16' if bf16 else 'fp32'}_{mode}"].append(run.tokens_per_second(train_steps, bf16))
                for batch_size in batch_sizes:
                    seconds = generate_seconds(run.model, batch_size, new_tokens, compiled=mode == "compiled")
                    f[f"generate_b{batch_size}_{mode}"].append(batch_size * new_tokens / seconds)
                for figure in decodes:
                    seconds = decode_seconds(run, figure, new_tokens)
                    f[f"{figure}_{mode}"].append(DECODES[figure][0] * new_tokens / seconds)
            print(f"round {round_index + 1}/{rounds} {name}: "
                  + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in figures[name].items()), flush=True)

    medians = {name: {key: round(statistics.median(v), 1) for key, v in f.items()} for name, f in figures.items()}
    # Each round measures both models back to back, so per-round ratios cancel the slow drift of a shared machine.
    same_settings = {key: ratio_summary(figures["scratchlm"][key], figures["llama"][key]) for key in keys}
    fastest_vs_llama_default = {}
    if "compiled" in modes:
        for what in wanted:
            fastest_vs_llama_default[what] = ratio_summary(
                figures["scratchlm"][f"{what}_compiled"], figures["llama"][f"{what}_eager"])
        for figure in decodes:  # the headline: our decoding against the generate a user calls
            batch_size = DECODES[figure][0]
            if f"generate_b{batch_size}" in wanted:
                fastest_vs_llama_default[f"{figure}_vs_generate"] = ratio_summary(
                    figures["scratchlm"][f"{figure}_compiled"], figures["llama"][f"generate_b{batch_size}_eager"])
    parameters = runs["llama", "eager"].model.num_parameters()
    peaks = {"fp32": matmul_peak_gflops(torch.float32), "bf16": matmul_peak_gflops(torch.bfloat16)}
    fraction_of_peak = {
        name: {key: round(medians[name][key] * 6 * parameters / 1e9 / peaks[key.split("_")[1]], 3)
               for key in keys if key.startswith("train")}
        for name in MODELS
    }
    splits = {name: {f"train_{'bf16' if bf16 else 'fp32'}_{mode}": training_step_split(runs[name, mode], bf16)
                     for mode in modes for bf16 in precisions} for name in MODELS}
    for split in splits.values():  # the ceiling: tokens/s if only the matrix products took time
        for key, figures_of_step in split.items():
            llama_eager = medians["llama"].get(key.replace("_compiled", "_eager"))
            if llama_eager:
                figures_of_step["ceiling_over_llama_eager"] = round(
                    figures_of_step["matmul_only_tokens_per_second"] / llama_eager, 3)
                figures_of_step["ceiling_with_attention_over_llama_eager"] = round(
                    figures_of_step["matmul_and_attention_tokens_per_second"] / llama_eager, 3)
    memory = {} if args.no_memory else {name: round(generate_peak_memory_gib(name), 3) for name in MODELS}
    exactness = bf16_exactness(args.exactness_model, args.exactness_text) if args.exactness_model else {}

    print(f"\n{'figure':<26}{'Llama':>10}{'ScratchLM':>11}{'ratio':>8}{'spread':>16}")
    for key, summary in same_settings.items():
        print(f"{key:<26}{medians['llama'][key]:>10,.0f}{medians['scratchlm'][key]:>11,.0f}"
              f"{summary['median']:>8.3f}   [{summary['min']:.3f}, {summary['max']:.3f}]")
    for key, summary in fastest_vs_llama_default.items():
        print(f"{'ours compiled / Llama eager ' + key:<45}{summary['median']:>8.3f}   "
              f"[{summary['min']:.3f}, {summary['max']:.3f}]")
    print(f"\n{'training step (one profiled), seconds':<40}{'step':>7}{'matmul':>8}{'attn':>7}{'rest':>7}"
          f"{'ceiling: matmul (+attn) / Llama eager':>40}")
    for name, split in splits.items():
        for key, row in split.items():
            print(f"{name + ' ' + key:<40}{row['step_s']:>7.3f}{row['matmul_s']:>8.3f}{row['attention_s']:>7.3f}"
                  f"{row['rest_s']:>7.3f}{row.get('ceiling_over_llama_eager', float('nan')):>30.2f}x"
                  f" ({row.get('ceiling_with_attention_over_llama_eager', float('nan')):.2f}x)")
    if memory:
        print(f"generate peak RSS at 2k context (GiB): Llama {memory['llama']:.3f}, ScratchLM {memory['scratchlm']:.3f}")
    if exactness:
        print(f"bf16 weights on {exactness['tokens']} held-out tokens: top-1 agreement with fp32 "
              f"{exactness['top1_agreement']:.2%}, bits/token {exactness['bits_per_token_fp32']:.4f} (fp32) vs "
              f"{exactness['bits_per_token_bf16']:.4f} (bf16)")
    print(f"first step / first call seconds (compilation for compiled runs): {compile_seconds}")

    result = {
        "shape": SHAPE, "batch": BATCH, "seq": SEQ, "prompt": PROMPT, "new_tokens": new_tokens, "rounds": rounds,
        "train_steps": train_steps, "parameters": parameters, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "medians_tokens_per_second": medians, "ratios_same_settings": same_settings,
        "ratios_scratchlm_fastest_over_llama_default": fastest_vs_llama_default,
        "first_step_seconds": compile_seconds, "matmul_peak_gflops": peaks, "fraction_of_matmul_peak": fraction_of_peak,
        "training_step_split": splits,
        "compiled_training_attention": {"bf16" if bf16 else "fp32": {"choice": choice, "seconds": seconds}
                                        for bf16, (choice, seconds) in attention.items()},
        "generate_2k_context_peak_rss_gib": memory, "bf16_exactness": exactness, "samples": figures,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
