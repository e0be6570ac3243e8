"""transformers conventions every ScratchLM class follows: tuple outputs, RoPE scaling past the trained context,
and the renamed cache argument (compilation is in test_modeling_compile.py)."""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import Cache, LlamaConfig, LlamaForCausalLM

from scratchlm.modeling import (
    ScratchLMConfig,
    ScratchLMForCausalLM,
    ScratchLMForQuestionAnswering,
    ScratchLMForSequenceClassification,
    ScratchLMForTokenClassification,
    ScratchLMModel,
)

TINY = dict(
    vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, eos_token_id=1, bos_token_id=2,
)


def tiny_model(cls=ScratchLMForCausalLM, **overrides):
    torch.manual_seed(0)
    return cls(ScratchLMConfig(**{**TINY, **overrides})).eval()


def ids_of(length=12, batch=2):
    return torch.randint(3, TINY["vocab_size"], (batch, length), generator=torch.Generator().manual_seed(1))


def assert_same(ours, expected, where="output"):
    """Element-by-element equality of tensors, caches and nested tuples."""
    assert type(ours) is type(expected), f"{where}: {type(ours).__name__} != {type(expected).__name__}"
    if isinstance(expected, torch.Tensor):
        assert torch.equal(ours, expected), where
    elif isinstance(expected, Cache):
        assert ours.get_seq_length() == expected.get_seq_length(), where
        for index, (a, b) in enumerate(zip(ours.layers, expected.layers, strict=True)):
            assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values), f"{where}: cache layer {index}"
    else:
        assert len(ours) == len(expected), where
        for index, (a, b) in enumerate(zip(ours, expected)):
            assert_same(a, b, f"{where}[{index}]")


# --- 1. return_dict=False is exactly to_tuple() of the ModelOutput --------------------------------------------

ids = ids_of()
CASES = [
    (ScratchLMModel, {}, dict(use_cache=True)),
    (ScratchLMForCausalLM, {}, dict(use_cache=True, labels=ids)),
    (ScratchLMForSequenceClassification, dict(num_labels=3), dict(use_cache=True, labels=torch.tensor([0, 2]))),
    (ScratchLMForTokenClassification, dict(num_labels=5), dict(labels=torch.randint(0, 5, ids.shape))),
    (ScratchLMForQuestionAnswering, {}, dict(start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([3, 4]))),
]


@pytest.mark.parametrize("cls, config_overrides, inputs", CASES, ids=[case[0].__name__ for case in CASES])
def test_tuple_output_is_the_model_output_to_tuple(cls, config_overrides, inputs):
    model = tiny_model(cls, attn_implementation="eager", **config_overrides)
    common = dict(output_hidden_states=True, output_attentions=True, **inputs)
    with torch.no_grad():
        as_dict = model(ids, return_dict=True, **common)
        as_tuple = model(ids, return_dict=False, **common)
    assert isinstance(as_tuple, tuple)
    assert as_dict.hidden_states is not None and as_dict.attentions is not None
    assert_same(as_tuple, as_dict.to_tuple())
    # The config's return_dict=False gives the same tuple, and the heads still read their base's fields.
    model.config.return_dict = False
    with torch.no_grad():
        assert_same(model(ids, **common), as_dict.to_tuple())


# --- 3. RoPE scaling lets the model run past its trained context ------------------------------------------------


@pytest.mark.parametrize("rope, limit", [
    ({"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}, 256),
    ({"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64}, 256),
    ({"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}, None),
])
def test_rope_scaling_extends_the_accepted_length(rope, limit):
    model = tiny_model(rope_parameters=rope)
    assert model.config.max_sequence_length == limit
    longest = limit or 300
    with torch.no_grad():
        logits = model(ids_of(length=longest, batch=1)).logits
        assert logits.shape[1] == longest and torch.isfinite(logits).all()
        if limit is not None:
            with pytest.raises(ValueError, match=f"longer than the model's context of {limit} .*RoPE factor"):
                model(ids_of(length=limit + 1, batch=1))
    # Generation crosses max_position_embeddings (128) with the cache, and matches a cache-free forward.
    prompt = ids_of(length=124, batch=1)
    generated = model.generate(prompt, max_new_tokens=8, do_sample=False, eos_token_id=None)
    assert generated.shape[1] == 132
    with torch.no_grad():
        assert model(generated[:, :-1], use_cache=False).logits[0, -1].argmax() == generated[0, -1]


def test_unscaled_model_still_refuses_input_past_its_context():
    model = tiny_model()
    assert model.config.max_sequence_length == 128
    with pytest.raises(ValueError, match=r"context of 128 \(max_position_embeddings\)"):
        model(ids_of(length=129, batch=1))


# --- 4. the old `past_key_values` name: accepted with the library's warning, output field named `cache` ----------


def calls_with_old_name(model):
    """Prefill, then one step passing the cache as `past_key_values`; returns (step output, warnings)."""
    sequence = ids_of(length=7, batch=1)
    with torch.no_grad():
        cache = model(sequence[:, :6], use_cache=True).cache
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step = model(sequence[:, 6:], past_key_values=cache, use_cache=True)
    return step, [(w.category, str(w.message)) for w in caught]


def test_past_key_values_is_deprecated_exactly_as_in_llama():
    scratch = tiny_model()
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(**TINY, tie_word_embeddings=True)).eval()
    ours, our_warnings = calls_with_old_name(scratch)
    theirs, their_warnings = calls_with_old_name(llama)
    assert our_warnings and [(c, m.replace("ScratchLM", "Llama")) for c, m in our_warnings] == their_warnings
    assert our_warnings[0][0] is FutureWarning and "Use `cache` instead" in our_warnings[0][1]
    assert list(ours.keys()) == list(theirs.keys()) == ["logits", "cache"]
    assert ours.cache.get_seq_length() == 7

    sequence = ids_of(length=7, batch=1)
    with torch.no_grad():
        cache = scratch(sequence[:, :6], use_cache=True).cache
        expected = scratch(sequence[:, 6:], cache=cache).logits
    assert torch.allclose(ours.logits, expected, atol=1e-6)
    with torch.no_grad():  # the base model and the classification head follow the same rule
        for model in (scratch.model, tiny_model(ScratchLMForSequenceClassification, num_labels=2)):
            with pytest.warns(FutureWarning, match="`past_key_values` is deprecated .* Use `cache` instead"):
                out = model(sequence[:, :6], past_key_values=None, use_cache=True)
            assert "cache" in out.keys() and "past_key_values" not in out.keys()
