"""StaticCacheDecoder: the same tokens as `model.generate`, compiled as one graph, for ScratchLM and Llama.

Dynamo's "eager" backend captures the full graph as inductor would (a graph break fails the same way) without a
minute of kernel generation on a 2-core machine; benchmarks/bench_model.py measures the inductor speed.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounter
from transformers import LlamaConfig, LlamaForCausalLM

from scratchlm.inference.decoding import StaticCacheDecoder, sample_next_token


@pytest.fixture
def left_padded_prompts(random_ids):
    prompt = random_ids(batch=3, length=7, seed=2)
    mask = torch.ones_like(prompt)
    mask[1, :3] = 0
    mask[2, :1] = 0
    return prompt.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("kind", ["scratchlm", "llama"])
def test_greedy_equals_generate_on_a_left_padded_batch(kind, tiny_model, tiny_decoder_kwargs, left_padded_prompts):
    if kind == "llama":
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(**tiny_decoder_kwargs, attn_implementation="sdpa")).eval()
    else:
        model = tiny_model(attn_implementation="sdpa")
    prompt, mask = left_padded_prompts
    expected = model.generate(prompt, attention_mask=mask, max_new_tokens=20, do_sample=False, eos_token_id=None)
    decoder = StaticCacheDecoder(model, compile=False)
    assert torch.equal(decoder.generate(prompt, mask, max_new_tokens=20), expected)
    # A second call reuses the cache: stale entries from the first must not leak in.
    assert torch.equal(decoder.generate(prompt, mask, max_new_tokens=20), expected)


def test_the_compiled_step_is_one_graph_and_gives_the_same_tokens(tiny_model, left_padded_prompts):
    torch._dynamo.reset()
    model = tiny_model(attn_implementation="sdpa")
    prompt, mask = left_padded_prompts
    counter = CompileCounter()
    decoder = StaticCacheDecoder(model, backend=counter)
    # Compiled on a CPU, the step attends with the plain matmul-softmax attention, on the decoder's own copy.
    assert decoder.model is not model and decoder.model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "sdpa"
    output = decoder.generate(prompt, mask, max_new_tokens=24)
    expected = model.generate(prompt, attention_mask=mask, max_new_tokens=24, do_sample=False, eos_token_id=None)
    assert torch.equal(output, expected)
    assert counter.frame_count == 1, "the decode step was not captured as one graph"
    decoder.generate(prompt, mask, max_new_tokens=30)  # same cache bucket: no recompilation
    assert counter.frame_count == 1


def test_bf16_decoding_is_generate_of_the_bf16_model_and_leaves_the_model_as_it_was(tiny_model, left_padded_prompts):
    model = tiny_model(attn_implementation="sdpa")
    prompt, mask = left_padded_prompts
    decoder = StaticCacheDecoder(model, compile=False, dtype=torch.bfloat16, attention="eager")
    output = decoder.generate(prompt, mask, max_new_tokens=16)
    reference = tiny_model(attn_implementation="eager")
    reference.load_state_dict(model.state_dict())
    reference.to(torch.bfloat16)
    expected = reference.generate(prompt, attention_mask=mask, max_new_tokens=16, do_sample=False, eos_token_id=None)
    assert torch.equal(output, expected)
    assert model.dtype == torch.float32 and model.config._attn_implementation == "sdpa"
    assert decoder.model.dtype == torch.bfloat16


def test_rows_stop_at_eos_and_are_padded_as_generate_pads_them(tiny_model, left_padded_prompts):
    model = tiny_model(attn_implementation="sdpa")
    prompt, mask = left_padded_prompts
    free = model.generate(prompt, attention_mask=mask, max_new_tokens=12, do_sample=False, eos_token_id=None)
    eos = int(free[0, prompt.shape[1] + 3])  # row 0's fourth new token becomes the end of sequence
    expected = model.generate(prompt, attention_mask=mask, max_new_tokens=12, do_sample=False, eos_token_id=eos,
                              pad_token_id=0)
    output = StaticCacheDecoder(model, compile=False).generate(prompt, mask, max_new_tokens=12, eos_token_id=eos,
                                                               pad_token_id=0)
    assert torch.equal(output, expected)
    assert (output[0, prompt.shape[1] + 4:] == 0).all()


def test_sampling_is_seeded_and_its_filters_do_what_they_say(tiny_model, left_padded_prompts):
    model = tiny_model(attn_implementation="sdpa")
    prompt, mask = left_padded_prompts
    decoder = StaticCacheDecoder(model, compile=False)

    def sample(**kwargs):
        return decoder.generate(prompt, mask, max_new_tokens=16, do_sample=True,
                                generator=torch.Generator().manual_seed(7), **kwargs)

    assert torch.equal(sample(temperature=0.9), sample(temperature=0.9))
    assert not torch.equal(sample(temperature=5.0), decoder.generate(prompt, mask, max_new_tokens=16))
    assert torch.equal(sample(top_k=1), decoder.generate(prompt, mask, max_new_tokens=16))
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9]])
    draws = {int(sample_next_token(logits, top_p=0.5, generator=torch.Generator().manual_seed(s)))
             for s in range(50)}
    assert draws == {1, 3}  # the two most likely tokens hold more than half of the mass; the rest never drawn
    draws = {int(sample_next_token(logits, top_k=3, generator=torch.Generator().manual_seed(s))) for s in range(200)}
    assert draws == {1, 2, 3}


def test_bad_requests_are_refused_before_any_work(tiny_model, random_ids):
    decoder = StaticCacheDecoder(tiny_model(attn_implementation="sdpa"), compile=False)
    prompt = random_ids(batch=1, length=100)
    with pytest.raises(ValueError, match=r"= 130 is past the model's context of 128"):
        decoder.generate(prompt, max_new_tokens=30)
    with pytest.raises(ValueError, match="temperature must be positive"):
        decoder.generate(prompt, max_new_tokens=3, do_sample=True, temperature=0)
