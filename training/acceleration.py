"""The fastest path where it is measured faster: compiled training and compiled static-cache generation.

`torch.compile` pays a one-off compilation for faster steps afterwards. These helpers turn it on only where
(1) it works here, proven by compiling and running a tiny function once per process, and (2) the measured gain pays
the compilation back over the work ahead. Where compilation is unavailable (no C++ compiler for inductor, an
unsupported Python, a broken toolchain) they fall back to eager execution with one log line saying why.

Measured on the project's 2-core CPU, on a quiet machine: the demo's model (configs/pretrain-shakespeare.yaml, bf16)
trains at 0.27 s/step eagerly and 0.22 s/step compiled, after about 20 s of compilation, so compilation pays back
from roughly 500 steps (the default compiles from 1000); benchmarks/bench_model.py's shape trains 1.10x (fp32) and
1.23x (bf16) faster compiled. A compiled static-cache decode was only 1.03-1.10x faster than an eager one, not worth
minutes of compilation, so on a CPU generation compiles only when asked. On an accelerator (where transformers itself
compiles static-cache decoding) both are on from modest sizes (estimates, not measured here).
"""

from __future__ import annotations

import functools
import logging

import torch
import torch._dynamo

logger = logging.getLogger(__name__)

# Training steps from which compilation pays back (compile time / per-step saving, bench_model.py figures).
MIN_COMPILED_TRAINING_STEPS = {"cpu": 1000, "accelerator": 100}
# Tokens (new tokens x sequences) from which a compiled decode pays back; None: never by default.
MIN_COMPILED_GENERATION_TOKENS = {"cpu": None, "accelerator": 512}


def _device_kind(device: str | torch.device) -> str:
    return "cpu" if torch.device(device).type in ("cpu", "mps") else "accelerator"


@functools.cache
def compilation_available(backend: str = "inductor") -> tuple[bool, str]:
    """(True, "") when `torch.compile` with `backend` compiles and runs a tiny function here, else (False, why)."""
    if not hasattr(torch, "compile"):
        return False, f"torch {torch.__version__} has no torch.compile"
    try:
        if not torch._dynamo.is_dynamo_supported():
            return False, "torch.compile does not support this Python version"

        def probe(x):
            return torch.nn.functional.silu(x) * 2 + 1

        x = torch.arange(8, dtype=torch.float32)
        compiled = torch.compile(probe, backend=backend, fullgraph=True)
        if not torch.allclose(compiled(x), probe(x)):
            return False, "a compiled probe function returned wrong values"
    except Exception as error:  # any toolchain failure means: run eagerly
        return False, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".strip()
    return True, ""


def use_compiled_training(max_steps: int | None, device: str | torch.device = "cpu", *,
                          requested: bool | None = None, backend: str = "inductor") -> bool:
    """Whether a Trainer run should set `torch_compile`: the user's explicit True/False (True falls back to eager
    with a warning where compilation fails here), else compiled where it works and the run is long enough.

    Compilation works with gradient checkpointing (non-reentrant, as the Trainer uses for ScratchLM) and with
    LoRA (peft's wrapped model is compiled as a whole).
    """
    if requested is False:
        return False
    threshold = MIN_COMPILED_TRAINING_STEPS[_device_kind(device)]
    if not requested and (max_steps is None or max_steps < threshold):  # -1: epochs, length unknown
        logger.info("training runs eagerly: %s steps are too few to pay back compilation (from %d)", max_steps,
                    threshold)
        return False
    available, why = compilation_available(backend)
    if not available:
        log = logger.warning if requested else logger.info
        log("training runs eagerly: torch.compile (%s) is not available here (%s)", backend, why)
        return False
    logger.info("training is compiled (torch.compile, %s)", backend)
    return True


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
    compiled = use_compiled_training(training_args.max_steps, training_args.device, requested=requested,
                                     backend=backend)
    training_args.torch_compile = compiled
    training_args.torch_compile_backend = backend if compiled else None
    return compiled


def compiled_generation_kwargs(max_new_tokens: int, num_sequences: int = 1, device: str | torch.device = "cpu", *,
                               requested: bool | None = None, backend: str = "inductor") -> dict:
    """Keyword arguments for `model.generate` selecting a compiled static-cache decode where it pays, else {}.

    The prompt is processed eagerly; each decoded token runs one compiled full-graph forward over a static cache.
    """
    if requested is False:
        return {}
    threshold = MIN_COMPILED_GENERATION_TOKENS[_device_kind(device)]
    if not requested and (threshold is None or max_new_tokens * num_sequences < threshold):
        return {}
    available, why = compilation_available(backend)
    if not available:
        log = logger.warning if requested else logger.info
        log("generation runs eagerly: torch.compile (%s) is not available here (%s)", backend, why)
        return {}
    from transformers import CompileConfig

    compile_config = CompileConfig(fullgraph=True, dynamic=False, backend=backend, mode="default")
    # generate compiles only on accelerators unless told otherwise; this lets an explicit request work on a CPU.
    compile_config._compile_all_devices = True
    return {"cache_implementation": "static", "compile_config": compile_config}
