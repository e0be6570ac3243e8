"""The fastest path where it is measured faster: compiled training and compiled static-cache generation.

`torch.compile` pays a one-off compilation (tens of seconds for a small model on a CPU, more on a busy one) for
faster steps afterwards. Measured on a CPU (benchmarks/bench_model.py, benchmarks/bench_compile_race.py), the
compiled step wins once a run is long enough to pay the compilation back, so these helpers turn compilation on only
where (1) it works here, proven by compiling and running a tiny function once per process, and (2) the work ahead is
long enough. Where compilation is unavailable (no C++ compiler for inductor, an unsupported Python, a broken
toolchain) they fall back to eager execution with one log line saying why.
"""

from __future__ import annotations

import functools
import logging

import torch
import torch._dynamo

logger = logging.getLogger(__name__)

# Break-even points measured with benchmarks/bench_model.py on a 2-core CPU (small preset): compiling a training
# step costs roughly as much as a few dozen eager steps and a compiled decode a few hundred eager tokens.
MIN_COMPILED_TRAINING_STEPS = 200
MIN_COMPILED_GENERATION_TOKENS = 512


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


def use_compiled_training(max_steps: int | None, *, requested: bool | None = None, backend: str = "inductor") -> bool:
    """Whether a Trainer run should set `torch_compile`: False/True when the user said so (True falls back to eager
    with a warning where compilation fails here), else compiled where it works and the run is long enough.

    Compilation works with gradient checkpointing (non-reentrant, as the Trainer uses for ScratchLM) and with
    LoRA (peft's wrapped model is compiled as a whole).
    """
    if requested is False:
        return False
    if not requested and (max_steps is None or 0 < max_steps < MIN_COMPILED_TRAINING_STEPS):
        logger.info("training runs eagerly: %s steps are too few to pay back compilation", max_steps)
        return False
    available, why = compilation_available(backend)
    if not available:
        log = logger.warning if requested else logger.info
        log("training runs eagerly: torch.compile (%s) is not available here (%s)", backend, why)
        return False
    logger.info("training is compiled (torch.compile, %s)", backend)
    return True


def compiled_generation_kwargs(max_new_tokens: int, num_sequences: int = 1, *, requested: bool | None = None,
                               backend: str = "inductor") -> dict:
    """Keyword arguments for `model.generate` selecting a compiled static-cache decode where it pays, else {}.

    The prompt is processed eagerly; each decoded token runs one compiled full-graph forward over a static cache.
    """
    if requested is False:
        return {}
    if not requested and max_new_tokens * num_sequences < MIN_COMPILED_GENERATION_TOKENS:
        return {}
    available, why = compilation_available(backend)
    if not available:
        log = logger.warning if requested else logger.info
        log("generation runs eagerly: torch.compile (%s) is not available here (%s)", backend, why)
        return {}
    from transformers import CompileConfig

    compile_config = CompileConfig(fullgraph=True, dynamic=False, backend=backend, mode="default")
    # generate compiles only on accelerators unless told otherwise; a CPU gains as well (bench_model.py).
    compile_config._compile_all_devices = True
    return {"cache_implementation": "static", "compile_config": compile_config}
