"""The forward compiles as one graph, and `generate` runs a compiled static-cache decode; the input checks stay.

Dynamo's "eager" backend captures the graph exactly as inductor would see it (a graph break or data-dependent
Python fails the same way) without spending a minute generating kernels on a 2-core machine.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounter
from transformers import CompileConfig

from scratchlm.modeling import ScratchLMForCausalLM, ScratchLMForQuestionAnswering


@pytest.mark.parametrize("bidirectional", [False, True])
def test_fullgraph_forward_and_the_input_errors_outside_it(bidirectional, tiny_model, random_ids):
    torch._dynamo.reset()
    if bidirectional:  # the encoder heads' attention compiles too
        model = tiny_model(ScratchLMForQuestionAnswering, use_bidirectional_attention=True)
    else:
        model = tiny_model()
    ids = random_ids()
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    with torch.no_grad():
        for attention_mask in (None, mask):
            expected = model(ids, attention_mask=attention_mask)
            output = compiled(ids, attention_mask=attention_mask)
            name = "end_logits" if bidirectional else "logits"
            assert torch.allclose(output[name], expected[name], atol=1e-6)
    assert counter.frame_count >= 1 and counter.op_count > 0
    # Eagerly the clear error still fires, before any work; input past the context runs (with a warning), as Llama's.
    with pytest.raises(ValueError, match="token id 256, outside the vocabulary"):
        model(torch.tensor([[5, 256]]))
    assert model(torch.randint(3, 200, (1, 129)))[0].shape[1] == 129


def test_generate_with_a_compiled_static_cache_matches_eager_generate(tiny_model, random_ids):
    torch._dynamo.reset()
    model = tiny_model()
    prompt = random_ids(length=6, seed=2)
    mask = torch.ones_like(prompt)
    mask[1, :2] = 0  # left padding
    kwargs = dict(attention_mask=mask, max_new_tokens=10, do_sample=False, eos_token_id=None)
    compile_config = CompileConfig(fullgraph=True, backend="eager", mode="default")
    compile_config._compile_all_devices = True  # generate compiles only on accelerators unless told otherwise
    compiled = model.generate(prompt, cache_implementation="static", compile_config=compile_config, **kwargs)
    assert hasattr(model, "_compiled_call"), "generate did not take its compiled decode path"
    assert torch.equal(compiled, model.generate(prompt, **kwargs))


def test_acceleration_defaults_fall_back_to_eager_where_compilation_fails(caplog, tmp_path):
    from transformers import TrainingArguments

    from scratchlm.modeling.compilation import compilation_available, compiled_generation_kwargs, use_compiled_decoding
    from scratchlm.training.acceleration import enable_compiled_training, use_compiled_training

    available, why = compilation_available("no_such_backend")
    assert not available and "no_such_backend" in why
    with caplog.at_level("WARNING", logger="scratchlm.modeling.compilation"):
        assert use_compiled_training(10_000, requested=True, backend="no_such_backend") is False
        assert compiled_generation_kwargs(64, requested=True, backend="no_such_backend") == {}
        assert use_compiled_decoding(10**6, requested=True, backend="no_such_backend") is False
        args = TrainingArguments(tmp_path, use_cpu=True, max_steps=10_000, torch_compile_backend="no_such_backend")
        assert args.torch_compile and enable_compiled_training(args) is False
        assert not args.torch_compile and args.torch_compile_backend is None
    assert sum("runs eagerly" in record.getMessage() for record in caplog.records) == 4
    # ScratchLM's arguments tell "not said" (None: the default decides) from an explicit --torch_compile false.
    from scratchlm.training.arguments import ScratchLMTrainingArguments

    refused = ScratchLMTrainingArguments(str(tmp_path), max_steps=10_000, torch_compile=False, report_to="none")
    assert enable_compiled_training(refused) is False and refused.torch_compile is False
    unsaid = ScratchLMTrainingArguments(str(tmp_path), max_steps=10, report_to="none")
    assert unsaid.torch_compile is None and enable_compiled_training(unsaid) is False
    asked = ScratchLMTrainingArguments(str(tmp_path), max_steps=10, torch_compile=True,
                                       torch_compile_backend="eager", report_to="none")
    assert enable_compiled_training(asked) is True and asked.torch_compile_backend == "eager"
    # Explicit choices and runs too short to pay back compilation decide without compiling anything.
    assert use_compiled_training(10_000, requested=False) is False
    assert use_compiled_training(5) is False and use_compiled_training(5, "cuda") is False
    assert use_compiled_training(999, "cpu") is False  # below the measured pay-back on a CPU
    assert compiled_generation_kwargs(16) == {} and compiled_generation_kwargs(10_000, 8, "cpu") == {}
    # The decoding loop compiles by default once the forwards ahead pay compilation back (measured on a CPU).
    assert use_compiled_decoding(100) is False and use_compiled_decoding(10_000, requested=False) is False
    assert use_compiled_decoding(10_000, backend="eager") is True
    assert use_compiled_decoding(600, "cuda", backend="eager") is True
    eager_backend = compiled_generation_kwargs(16, requested=True, backend="eager")
    assert eager_backend["cache_implementation"] == "static" and eager_backend["compile_config"].fullgraph


def test_attention_is_measured_for_long_single_process_runs_and_sdpa_otherwise(tiny_config, tmp_path):
    from scratchlm.training.acceleration import fastest_attention_implementation, set_fastest_attention
    from scratchlm.training.arguments import ScratchLMTrainingArguments

    config = tiny_config()
    # No measurement on an accelerator, or where eager's score matrices would be too large to keep.
    assert fastest_attention_implementation(config, 8, 64, torch.float32, "cuda") == ("sdpa", {})
    assert fastest_attention_implementation(config, 64, 4096, torch.bfloat16, "cpu") == ("sdpa", {})
    rng = torch.random.get_rng_state()
    choice, seconds = fastest_attention_implementation(config, 4, 64, torch.bfloat16, "cpu")
    assert torch.equal(torch.random.get_rng_state(), rng), "the measurement moved the run's random numbers"
    assert set(seconds) == {"eager", "sdpa"} and all(0 < value < 1 for value in seconds.values())
    assert choice == ("eager" if seconds["eager"] < 0.9 * seconds["sdpa"] else "sdpa")

    model = ScratchLMForCausalLM(tiny_config(attn_implementation="eager"))
    short = ScratchLMTrainingArguments(str(tmp_path), max_steps=10, precision="bf16", report_to="none")
    assert set_fastest_attention(model, short, 64) == "sdpa" == model.config._attn_implementation
    long = ScratchLMTrainingArguments(str(tmp_path), max_steps=5_000, precision="bf16", report_to="none")
    chosen = set_fastest_attention(model, long, 64)
    assert chosen in ("eager", "sdpa") and model.config._attn_implementation == chosen
