"""The Python steps of benchmarks/gpu_check.sh (run that; it orders them and checks the machine first):

- `machine`: the GPU and the versions, or one line naming what is missing (no GPU, a package, an old transformers);
- `corpus FILE`: a synthetic English-like corpus (random words, fixed seed) for the pretraining run;
- `mfu`: bf16 training throughput of a preset on the GPU and its model FLOPs utilisation,
  tokens/s x 6 x parameters / peak (the 6N rule; the attention term is reported beside it);
- `merge`: a sharded FSDP checkpoint of the command's run -> `accelerate.utils.merge_fsdp_weights` -> a model
  directory (docs/scale-out.md's recipe) -> `from_pretrained`, its loss on the corpus against the untrained model's,
  and its logits against the run directory's own model when the run saved one.

Each writes one JSON file."""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from NVIDIA's data sheets, matched in this order against
# torch.cuda.get_device_name(); --peak_tflops overrides.
PEAK_BF16_TFLOPS = (
    ("H200", 989.4), ("H100 PCIe", 756.0), ("H100", 989.4), ("A100", 312.0), ("L40S", 362.05), ("L4", 121.0),
)
WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her she there one all we their been has when who will more no if out so said what up its "
         "about into than them can only other new some could time these two may then do first any my now such like "
         "our over man me even most made after also did many before must through back years where much your way "
         "well down should because each just those people how too little state good very make world still own see "
         "men work long get here between both life being under never day same another know while last might us "
         "great old year off come since against go came right used take three").split()


def describe_machine() -> dict:
    """The GPU and the library versions; a SystemExit naming the first thing that stops the check."""
    from importlib.metadata import version

    from packaging.version import Version

    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: error: no CUDA GPU is visible to this Python (torch.cuda.is_available() is False)")
    try:
        import scratchlm.training.pretrain  # noqa: F401  (everything the pretraining command imports)
    except ModuleNotFoundError as error:
        raise SystemExit(f"gpu_check: error: the pretraining command cannot import {error.name!r}: install it (or "
                         f"carry its wheel) into this Python") from None
    if Version(version("transformers")) < Version("5.24"):
        raise SystemExit(f"gpu_check: error: transformers {version('transformers')} is older than setup.py's 5.24")
    return {"device": torch.cuda.get_device_name(), "gpus": torch.cuda.device_count(), "cuda": torch.version.cuda,
            **{name: version(name) for name in ("torch", "transformers", "accelerate", "datasets", "tokenizers")}}


def write_corpus(path: Path, megabytes: float, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        written = 0
        while written < megabytes * 1e6:
            sentences = [" ".join(rng.choices(WORDS, k=rng.randint(6, 18))).capitalize() + "."
                         for _ in range(rng.randint(3, 8))]
            paragraph = " ".join(sentences) + "\n\n"
            handle.write(paragraph)
            written += len(paragraph)


def peak_tflops(device_name: str, given: float | None) -> float | None:
    if given is not None:
        return given
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in device_name), None)


def measure_mfu(preset: str, batch_size: int, seq_len: int, steps: int, warmup: int, peak: float | None,
                compile_model: bool) -> dict:
    """Training steps as the Trainer takes them in bf16 (fp32 weights, bf16 autocast, fused AdamW), timed after
    `warmup` steps with the GPU synchronised."""
    from scratchlm.modeling import ScratchLMConfig, ScratchLMForCausalLM

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    config = ScratchLMConfig.from_preset(preset, attn_implementation="sdpa")
    model = ScratchLMForCausalLM(config).to(device).train()
    parameters = model.num_parameters()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=device.type == "cuda")
    step_fn = torch.compile(model) if compile_model else model
    ids = torch.randint(0, config.vocab_size, (batch_size, seq_len), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = step_fn(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens_per_s = batch_size * seq_len * steps / seconds
    flops_per_token = 6 * parameters
    # The attention scores and their use, forward and backward, which 6N leaves out (as nanoGPT's estimate_mfu).
    attention_flops_per_token = 12 * config.num_hidden_layers * config.hidden_size * seq_len
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = peak_tflops(name, peak)
    result = {
        "device": name, "preset": preset, "parameters": parameters, "batch_size": batch_size, "seq_len": seq_len,
        "steps_timed": steps, "warmup_steps": warmup, "compiled": compile_model, "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens_per_s), "peak_bf16_tflops": peak,
        "achieved_tflops_6n": round(tokens_per_s * flops_per_token / 1e12, 1),
        "mfu_6n": None, "mfu_with_attention": None,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
    }
    if peak:
        result["mfu_6n"] = round(tokens_per_s * flops_per_token / (peak * 1e12), 4)
        result["mfu_with_attention"] = round(
            tokens_per_s * (flops_per_token + attention_flops_per_token) / (peak * 1e12), 4)
    return result


def corpus_loss(model, tokenizer, corpus: Path, length: int = 256, rows: int = 8) -> float:
    ids = tokenizer(corpus.read_text(encoding="utf-8")[:200_000], return_tensors="pt")["input_ids"][0]
    batch = ids[: rows * length].reshape(rows, length).to(model.device)
    with torch.no_grad():
        return model(input_ids=batch, labels=batch).loss.item()


def check_merge(checkpoint: Path, init_dir: Path, run_dir: Path, corpus: Path, work: Path) -> dict:
    """docs/scale-out.md's recipe for a sharded checkpoint, then the merged model against the untrained one and
    against the run directory's own model (present when the run's final save wrote one)."""
    from accelerate.utils import merge_fsdp_weights
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    shards = checkpoint / "pytorch_model_fsdp_0"
    if not shards.is_dir():
        return {"sharded_checkpoint": False, "error": f"{shards} is missing: the run did not save through FSDP"}
    work.mkdir(parents=True, exist_ok=True)
    merge_fsdp_weights(str(shards), str(work / "merged"))
    model = AutoModelForCausalLM.from_pretrained(init_dir, trust_remote_code=True)
    model.load_state_dict(load_file(work / "merged" / "model.safetensors"))
    model.save_pretrained(work / "model")
    tokenizer = AutoTokenizer.from_pretrained(init_dir, trust_remote_code=True)
    merged = AutoModelForCausalLM.from_pretrained(work / "model", trust_remote_code=True).eval()
    untrained = AutoModelForCausalLM.from_pretrained(init_dir, trust_remote_code=True).eval()
    result = {"sharded_checkpoint": True, "checkpoint": checkpoint.name,
              "merged_loss": round(corpus_loss(merged, tokenizer, corpus), 4),
              "untrained_loss": round(corpus_loss(untrained, tokenizer, corpus), 4),
              "run_dir_has_model": (run_dir / "model.safetensors").is_file()}
    result["merged_learnt"] = result["merged_loss"] < result["untrained_loss"]
    if result["run_dir_has_model"]:
        final = AutoModelForCausalLM.from_pretrained(run_dir, trust_remote_code=True).eval()
        probe = torch.randint(0, merged.config.vocab_size, (2, 64))
        with torch.no_grad():
            difference = (final(input_ids=probe).logits - merged(input_ids=probe).logits).abs().max().item()
        result["max_logit_difference_to_run_dir_model"] = difference
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    machine = steps.add_parser("machine")
    machine.add_argument("--json", type=Path, required=True)
    corpus = steps.add_parser("corpus")
    corpus.add_argument("file", type=Path)
    corpus.add_argument("--megabytes", type=float, default=8.0)
    mfu = steps.add_parser("mfu")
    mfu.add_argument("--json", type=Path, required=True)
    mfu.add_argument("--preset", default="125m")
    mfu.add_argument("--batch_size", type=int, default=16)
    mfu.add_argument("--seq_len", type=int, default=1024)
    mfu.add_argument("--steps", type=int, default=20)
    mfu.add_argument("--warmup", type=int, default=5)
    mfu.add_argument("--peak_tflops", type=float, default=None, help="the GPU's dense bf16 peak, if not in the table")
    mfu.add_argument("--compile", action="store_true", help="time the torch.compile'd model")
    merge = steps.add_parser("merge")
    merge.add_argument("--json", type=Path, required=True)
    merge.add_argument("--checkpoint", type=Path, required=True)
    merge.add_argument("--init_dir", type=Path, required=True)
    merge.add_argument("--run_dir", type=Path, required=True)
    merge.add_argument("--corpus", type=Path, required=True)
    merge.add_argument("--work_dir", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.step == "corpus":
        write_corpus(args.file, args.megabytes)
        return
    if args.step == "machine":
        result = describe_machine()
    elif args.step == "mfu":
        result = measure_mfu(args.preset, args.batch_size, args.seq_len, args.steps, args.warmup, args.peak_tflops,
                             args.compile)
    else:
        result = check_merge(args.checkpoint, args.init_dir, args.run_dir, args.corpus, args.work_dir)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
