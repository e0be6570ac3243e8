"""Whether to compile: `torch.compile` where it works here and where the measured gain pays it back.

`torch.compile` pays a one-off compilation for faster steps afterwards. These helpers turn it on only where
(1) it works here, proven by compiling and running a tiny function once per process, and (2) the measured gain pays
the compilation back over the work ahead. Where compilation is unavailable (no C++ compiler for inductor, an
unsupported Python, a broken toolchain) they fall back to eager execution with one log line saying why.

The choices of generation and decoding (`scratchlm-generate`) are made here, below training and inference alike;
training's own (compiled steps, the attention kernel) are in `scratchlm.training.acceleration`, which decides through
`worth_compiling` too.

Measured on the project's 2-core CPU, on a quiet machine: inference/decoding.py's compiled static-cache loop decodes
benchmarks/bench_model.py's shape at 6.1 ms a token (fp32, batch 1) against 8.6 ms for the default `generate`, after
~10 s of compilation, so it pays back from roughly 4,000 forwards; `generate`'s own compiled static cache gains only
1.03-1.10x and stays off on a CPU unless asked. On an accelerator (where transformers itself compiles static-cache
decoding) compilation is on from modest sizes (estimates, not measured here).
"""

from __future__ import annotations

import functools
import logging

import torch
import torch._dynamo

logger = logging.getLogger(__name__)

# Tokens (new tokens x sequences) from which generate's compiled static-cache decode pays back; None: never by default.
MIN_COMPILED_GENERATION_TOKENS = {"cpu": None, "accelerator": 512}
# Forwards (new tokens x batches) from which StaticCacheDecoder's compiled step pays back its compilation.
MIN_COMPILED_DECODE_STEPS = {"cpu": 4000, "accelerator": 512}


def device_kind(device: str | torch.device) -> str:
    """"cpu" (a CPU, or Apple's MPS, where transformers does not compile by itself) or "accelerator"."""
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


def worth_compiling(what: str, work: int | None, threshold: int | None, *, requested: bool | None = None,
                    backend: str = "inductor") -> bool:
    """Whether to compile `what`: the user's explicit True/False (True falls back to eager with a warning where
    compilation fails here), else compiled where it works and `work` reaches the pay-back `threshold` (None: never
    by default; a `work` of None is unknown and counts as too little)."""
    if requested is False:
        return False
    if not requested:
        if threshold is None:
            logger.info("%s runs eagerly: on this device it is compiled only when asked", what)
            return False
        if work is None or work < threshold:
            logger.info("%s runs eagerly: %s too little to pay back compilation (from %d)", what,
                        "an unknown amount of work is" if work is None else f"{work} is", threshold)
            return False
    available, why = compilation_available(backend)
    if not available:
        log = logger.warning if requested else logger.info
        log("%s runs eagerly: torch.compile (%s) is not available here (%s)", what, backend, why)
        return False
    logger.info("%s is compiled (torch.compile, %s)", what, backend)
    return True


def use_compiled_decoding(decode_steps: int, device: str | torch.device = "cpu", *, requested: bool | None = None,
                          backend: str = "inductor") -> bool:
    """Whether inference/decoding.py's StaticCacheDecoder should compile its step, for `decode_steps` forwards
    (new tokens x batches) ahead."""
    return worth_compiling("decoding", decode_steps, MIN_COMPILED_DECODE_STEPS[device_kind(device)],
                           requested=requested, backend=backend)


def compiled_generation_kwargs(max_new_tokens: int, num_sequences: int = 1, device: str | torch.device = "cpu", *,
                               requested: bool | None = None, backend: str = "inductor") -> dict:
    """Keyword arguments for `model.generate` selecting a compiled static-cache decode where it pays, else {}.

    The prompt is processed eagerly; each decoded token runs one compiled full-graph forward over a static cache.
    """
    threshold = MIN_COMPILED_GENERATION_TOKENS[device_kind(device)]
    if not worth_compiling("generation", max_new_tokens * num_sequences, threshold, requested=requested,
                           backend=backend):
        return {}
    from transformers import CompileConfig

    compile_config = CompileConfig(fullgraph=True, dynamic=False, backend=backend, mode="default")
    # generate compiles only on accelerators unless told otherwise; this lets an explicit request work on a CPU.
    compile_config._compile_all_devices = True
    return {"cache_implementation": "static", "compile_config": compile_config}
