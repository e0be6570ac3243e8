"""The fastest path for training where it is measured faster: compiled training steps and the attention kernel.

Whether compiling pays is decided as for generation, by `scratchlm.modeling.compilation.worth_compiling` (compiled
only where it works here and where the measured gain pays the compilation back); generation's and decoding's own
choices live there too, below both training and inference.

Measured on the project's 2-core CPU, on a quiet machine: the demo's model (configs/pretrain-shakespeare.yaml, bf16)
trains at 0.27 s/step eagerly and 0.22 s/step compiled, after about 20 s of compilation, so compilation pays back
from roughly 500 steps (the default compiles from 1000); benchmarks/bench_model.py's shape trains 1.10x (fp32) and
1.23x (bf16) faster compiled.

Attention is chosen the same way, by measuring: on a CPU, `fastest_attention_implementation` times one attention
forward and backward of the run's shape with each implementation. On the project's CPU (Zen 4, AVX512-BF16, no AMX)
the plain matmul-softmax ("eager") attention runs 8 x 6 heads x 256 tokens in bf16 at 17 ms against 25 ms for
SDPA's flash kernel, which makes a whole compiled bf16 training step 7-9 % faster; in fp32, and from ~1,024 tokens
in either precision, SDPA is the faster (2x at 1,024 tokens).
"""

from __future__ import annotations

import logging
import time

import torch

from scratchlm.modeling.compilation import device_kind, worth_compiling

logger = logging.getLogger(__name__)

# Training steps from which compilation pays back (compile time / per-step saving, bench_model.py figures).
MIN_COMPILED_TRAINING_STEPS = {"cpu": 1000, "accelerator": 100}


# Eager attention keeps a batch x heads x tokens x tokens score matrix per layer for the backward: above this size
# it is not tried (SDPA's flash kernel never builds it).
MAX_EAGER_SCORES_BYTES = 256 * 2**20


def fastest_attention_implementation(config, batch_size: int, seq_len: int, dtype: torch.dtype,
                                     device: str | torch.device = "cpu", *, repeats: int = 5) -> tuple[str, dict]:
    """("eager" or "sdpa", seconds of each) for training a decoder of `config` on `batch_size` x `seq_len` blocks in
    `dtype`: on a CPU, whichever runs one causal attention forward and backward of that shape faster here. Eager wins
    only by more than 10 %: SDPA needs less memory, and closer timings are within this machine's noise (in fp32 the
    two measure within 5 %, and with a 5 % margin the choice flipped between runs). SDPA on an accelerator, or where
    eager's scores would pass MAX_EAGER_SCORES_BYTES. The measurement draws from its own generator: the run's seed
    is untouched."""
    heads, head_dim = config.num_attention_heads, config.head_dim
    if device_kind(device) != "cpu" or batch_size * heads * seq_len**2 * 4 > MAX_EAGER_SCORES_BYTES:
        return "sdpa", {}
    generator = torch.Generator().manual_seed(0)
    query, key, value, grad = (torch.randn(batch_size, heads, seq_len, head_dim, generator=generator).to(dtype)
                               for _ in range(4))
    for tensor in (query, key, value):
        tensor.requires_grad_(True)
    future = torch.ones(seq_len, seq_len, dtype=torch.bool).triu(1)
    mask = torch.zeros(seq_len, seq_len, dtype=dtype).masked_fill(future, torch.finfo(dtype).min)

    def sdpa():
        return torch.nn.functional.scaled_dot_product_attention(query, key, value, is_causal=True)

    def eager():  # the ops of the model's eager_attention_forward
        scores = torch.matmul(query, key.transpose(2, 3)) * head_dim**-0.5 + mask
        return torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32).to(dtype), value)

    seconds = {"sdpa": float("inf"), "eager": float("inf")}
    for attempt in range(repeats + 1):  # the first is a warm-up
        for name, attention in (("sdpa", sdpa), ("eager", eager)):
            started = time.perf_counter()
            attention().backward(grad)
            if attempt:
                seconds[name] = min(seconds[name], time.perf_counter() - started)
    choice = "eager" if seconds["eager"] < 0.9 * seconds["sdpa"] else "sdpa"
    return choice, seconds


def set_fastest_attention(model, training_args, seq_len: int) -> str:
    """Give `model` the attention `fastest_attention_implementation` picks for the Trainer run of `training_args` on
    `seq_len`-token blocks (its precision, per-device batch and device), and return it. Only a run long enough to
    take the fast path (as `use_compiled_training` counts its steps) on one process measures: eager and SDPA round
    differently, and a measured choice may differ between two runs of one command, so short runs (compared exactly
    when resumed) and the processes of a distributed run (which must agree) keep SDPA."""
    choice, seconds = "sdpa", {}
    steps = training_args.max_steps
    long_run = steps is not None and steps >= MIN_COMPILED_TRAINING_STEPS[device_kind(training_args.device)]
    if long_run and training_args.world_size == 1:
        dtype = torch.bfloat16 if training_args.bf16 else torch.float16 if training_args.fp16 else torch.float32
        choice, seconds = fastest_attention_implementation(
            model.config, training_args.per_device_train_batch_size, seq_len, dtype, training_args.device)
        if seconds:
            logger.info("attention: %s (one forward and backward of %d x %d tokens in %s: eager %.1f ms, sdpa %.1f "
                        "ms)", choice, training_args.per_device_train_batch_size, seq_len,
                        str(dtype).removeprefix("torch."), seconds["eager"] * 1e3, seconds["sdpa"] * 1e3)
    model.set_attn_implementation(choice)
    return choice


def use_compiled_training(max_steps: int | None, device: str | torch.device = "cpu", *,
                          requested: bool | None = None, backend: str = "inductor") -> bool:
    """Whether a Trainer run should set `torch_compile` (`worth_compiling` over its steps; -1: epochs, unknown).

    Compilation works with gradient checkpointing (non-reentrant, as the Trainer uses for ScratchLM) and with
    LoRA (peft's wrapped model is compiled as a whole).
    """
    steps = max_steps if max_steps is not None and max_steps > 0 else None
    return worth_compiling("training", steps, MIN_COMPILED_TRAINING_STEPS[device_kind(device)],
                           requested=requested, backend=backend)


def enable_compiled_training(training_args) -> bool:
    """Set the Trainer's `torch_compile` (and its backend) on `training_args` as `use_compiled_training` decides.

    `--torch_compile true` (or a `--torch_compile_backend`) is an explicit request and `--torch_compile false` an
    explicit refusal (ScratchLM's arguments default to None, "not said"; plain `TrainingArguments` cannot say false).
    Otherwise the default decides. Call it before the Trainer is built; returns whether training is compiled.
    """
    requested = training_args.torch_compile  # None: not said
    if requested is False and type(training_args).__dataclass_fields__["torch_compile"].default is False:
        requested = None  # transformers' own TrainingArguments: False is its default, not a choice
    backend = training_args.torch_compile_backend or "inductor"
    steps = training_args.max_steps
    if getattr(training_args, "max_time_minutes", None) is not None:  # a time budget: long enough from 10 minutes
        budget_steps = 1000 if training_args.max_time_minutes >= 10 else 1
        steps = min(steps, budget_steps) if steps > 0 else budget_steps
    compiled = use_compiled_training(steps, training_args.device, requested=requested, backend=backend)
    training_args.torch_compile = compiled
    training_args.torch_compile_backend = backend if compiled else None
    return compiled
