"""transformers conventions every ScratchLM class follows, held against Llama at the installed version: tuple outputs,
hidden states and attentions recorded by transformers' output capturing, input past the trained context (a warning,
as RoPE computes any position) and RoPE scaling, and the renamed cache argument on every head (compilation is in
test_modeling_compile.py)."""

from __future__ import annotations

import inspect
import logging
import warnings

import pytest
import torch
from transformers import (
    Cache,
    DynamicCache,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForQuestionAnswering,
    LlamaForTokenClassification,
    LlamaModel,
)

from scratchlm.modeling import (
    ScratchLMForCausalLM,
    ScratchLMForQuestionAnswering,
    ScratchLMForSequenceClassification,
    ScratchLMForTokenClassification,
    ScratchLMModel,
)
from scratchlm.modeling.convert_llama import convert_model, llama_config_to_scratchlm
from scratchlm.modeling.modeling_scratchlm import ScratchLMAttention, ScratchLMDecoderLayer


def assert_same(ours, expected, where="output"):
    """Element-by-element equality of tensors, caches and nested tuples."""
    assert type(ours) is type(expected), f"{where}: {type(ours).__name__} != {type(expected).__name__}"
    if expected is None:
        return
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

@pytest.fixture(scope="module")
def ids(random_ids):
    return random_ids()


# (head, config changes, its inputs beside the ids, made from them)
CASES = [
    (ScratchLMModel, {}, lambda ids: dict(use_cache=True)),
    (ScratchLMForCausalLM, {}, lambda ids: dict(use_cache=True, labels=ids)),
    (ScratchLMForSequenceClassification, dict(num_labels=3),
     lambda ids: dict(use_cache=True, labels=torch.tensor([0, 2]))),
    (ScratchLMForTokenClassification, dict(num_labels=5), lambda ids: dict(labels=torch.randint(0, 5, ids.shape))),
    (ScratchLMForQuestionAnswering, {},
     lambda ids: dict(start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([3, 4]))),
]


@pytest.mark.parametrize("cls, config_overrides, inputs", CASES, ids=[case[0].__name__ for case in CASES])
def test_tuple_output_is_the_model_output_to_tuple(cls, config_overrides, inputs, tiny_model, ids):
    model = tiny_model(cls, attn_implementation="eager", **config_overrides)
    common = dict(output_hidden_states=True, output_attentions=True, **inputs(ids))
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


# --- 2. hidden states and attentions: recorded by transformers' output capturing, as in Llama --------------------


@pytest.fixture(scope="module")
def llama_twin(tiny_decoder_kwargs):
    """`llama_twin(**config_changes)`: a Llama with exactly the weights of a fresh ScratchLM base model (the same
    architecture), eager attention; returns (ScratchLM base, Llama base)."""

    def build(**changes):
        torch.manual_seed(0)
        llama = LlamaForCausalLM(LlamaConfig(**{**tiny_decoder_kwargs, **changes}, tie_word_embeddings=True)).eval()
        scratch = convert_model(llama, ScratchLMForCausalLM, llama_config_to_scratchlm(llama.config)).eval()
        for model in (scratch, llama):
            model.set_attn_implementation("eager")
        return scratch.model, llama.model

    return build


def test_hidden_states_and_attentions_are_declared_for_output_capturing():
    assert ScratchLMModel._can_record_outputs == {"hidden_states": ScratchLMDecoderLayer,
                                                  "attentions": ScratchLMAttention}
    assert LlamaModel._can_record_outputs.keys() == ScratchLMModel._can_record_outputs.keys()


def test_recorded_hidden_states_and_attentions_equal_llamas(llama_twin, ids):
    scratch, llama = llama_twin(num_hidden_layers=3)
    with torch.no_grad():
        ours = scratch(ids, output_hidden_states=True, output_attentions=True)
        theirs = llama(ids, output_hidden_states=True, output_attentions=True)
    # The input of every layer, then the normed output of the last: 4 hidden states for 3 layers.
    assert len(ours.hidden_states) == len(theirs.hidden_states) == 4
    assert len(ours.attentions) == len(theirs.attentions) == 3
    for a, b in zip(ours.hidden_states + ours.attentions, theirs.hidden_states + theirs.attentions, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(ours.hidden_states[0], scratch.embed_tokens(ids))
    assert torch.equal(ours.hidden_states[-1], ours.last_hidden_state)
    # The config's flags are the defaults, as in every transformers model.
    scratch.config.output_hidden_states = scratch.config.output_attentions = True
    with torch.no_grad():
        from_config = scratch(ids)
    assert_same(from_config.hidden_states, ours.hidden_states)
    assert_same(from_config.attentions, ours.attentions)


def test_hidden_states_selected_by_index_as_in_llama(llama_twin, ids):
    # A v5 feature of output capturing: `output_hidden_states` may name the indices wanted (negative ones too);
    # the others come back as None, and are not kept in memory.
    scratch, llama = llama_twin(num_hidden_layers=3)
    for selection in (2, [1, -1]):
        with torch.no_grad():
            ours = scratch(ids, output_hidden_states=selection).hidden_states
            theirs = llama(ids, output_hidden_states=selection).hidden_states
        assert [h is None for h in ours] == [h is None for h in theirs] and any(h is None for h in ours)
        for a, b in zip(ours, theirs):
            assert a is None or torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("cls, config_overrides", [case[:2] for case in CASES[1:]],
                         ids=[case[0].__name__ for case in CASES[1:]])
def test_every_head_returns_its_bases_recorded_outputs(cls, config_overrides, tiny_model, tiny_decoder_kwargs, ids):
    model = tiny_model(cls, attn_implementation="eager", **config_overrides)
    with torch.no_grad():
        head = model(ids, output_hidden_states=[0, -1], output_attentions=True)
        base = model.model(ids, output_hidden_states=[0, -1], output_attentions=True)
    assert_same(head.hidden_states, base.hidden_states)
    assert_same(head.attentions, base.attentions)
    assert head.hidden_states[1] is None and len(head.attentions) == tiny_decoder_kwargs["num_hidden_layers"]


# --- 3. input past the trained context: computed, as in Llama, with one warning; RoPE scaling -------------------


def context_warnings(caplog, run):
    """(run(), the messages of the past-the-context warnings it logged)."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="scratchlm"):
        result = run()
    return result, [r.getMessage() for r in caplog.records if "longer than the model's context" in r.getMessage()]


def test_input_past_the_context_runs_as_in_llama_with_one_warning(llama_twin, random_ids, caplog):
    # Rotary positions are computed for any length, so a longer input is a quality concern, not an error: like Llama,
    # the model runs it. The warning is logged once per process and message (transformers' `warning_once`), so this
    # test uses a context length (48) no other test does.
    scratch, llama = llama_twin(max_position_embeddings=48)
    long = random_ids(length=72, batch=1)
    with torch.no_grad():
        _, logged = context_warnings(caplog, lambda: scratch(long[:, :48]))
        assert logged == []
        ours, logged = context_warnings(caplog, lambda: scratch(long).last_hidden_state)
        assert torch.allclose(ours, llama(long).last_hidden_state, atol=1e-5)
        assert len(logged) == 1 and "context of 48 tokens (max_position_embeddings)" in logged[0]
        _, logged = context_warnings(caplog, lambda: scratch(long))
        assert logged == []  # once


@pytest.mark.parametrize("scaling_type", ["linear", "dynamic", "yarn"])
def test_scaled_against_unscaled_rope_past_the_context(scaling_type, tiny_model, tiny_decoder_kwargs, random_ids):
    # transformers' common RoPE test: a default-RoPE model and one scaled by 10 from the same seed, each fed a short
    # input and one of 1.5 times the context.
    default = {"rope_type": "default", "rope_theta": 10000.0, "original_max_position_embeddings": 16384}
    short = random_ids(length=10, batch=1)
    long = random_ids(length=int(tiny_decoder_kwargs["max_position_embeddings"] * 1.5), batch=1)
    outputs = []
    for rope in (default, {**default, "rope_type": scaling_type, "factor": 10.0}):
        model = tiny_model(ScratchLMModel, rope_parameters=rope)
        with torch.no_grad():
            outputs.append([model(x).last_hidden_state for x in (short, long)])
    (original_short, original_long), (scaled_short, scaled_long) = outputs
    # Dynamic NTK changes nothing until the input is longer than the context.
    assert torch.allclose(original_short, scaled_short, atol=1e-5) == (scaling_type == "dynamic")
    assert not torch.allclose(original_long, scaled_long, atol=1e-5)


@pytest.mark.parametrize("rope, limit", [
    ({"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}, 256),
    ({"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64}, 256),
    ({"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}, None),
])
def test_rope_scaling_extends_the_context(rope, limit, tiny_model, random_ids, caplog):
    model = tiny_model(rope_parameters=rope)
    assert model.config.max_sequence_length == limit
    longest = limit or 300
    with torch.no_grad():
        logits, logged = context_warnings(caplog, lambda: model(random_ids(length=longest, batch=1)).logits)
        assert logits.shape[1] == longest and torch.isfinite(logits).all() and logged == []
        if limit is not None:  # past the scaled context: still computed, with the warning naming the scaling
            logits, logged = context_warnings(caplog, lambda: model(random_ids(length=limit + 1, batch=1)).logits)
            assert torch.isfinite(logits).all()
            assert logged and f"context of {limit} tokens (max_position_embeddings scaled by its {rope['rope_type']} " \
                "RoPE factor)" in logged[0]
    # Generation crosses max_position_embeddings (128) with the cache, and matches a cache-free forward.
    prompt = random_ids(length=124, batch=1)
    generated = model.generate(prompt, max_new_tokens=8, do_sample=False, eos_token_id=None)
    assert generated.shape[1] == 132
    with torch.no_grad():
        assert model(generated[:, :-1], use_cache=False).logits[0, -1].argmax() == generated[0, -1]


# --- 4. the old `past_key_values` name: accepted with the library's warning, output field named `cache` ----------


def calls_with_old_name(model, sequence):
    """Prefill all but the last token, then one step passing the cache as `past_key_values`; returns (step output,
    warnings)."""
    with torch.no_grad():
        cache = model(sequence[:, :6], use_cache=True).cache
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step = model(sequence[:, 6:], past_key_values=cache, use_cache=True)
    return step, [(w.category, str(w.message)) for w in caught]


def test_past_key_values_is_deprecated_exactly_as_in_llama(tiny_model, tiny_decoder_kwargs, random_ids):
    scratch = tiny_model()
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(**tiny_decoder_kwargs, tie_word_embeddings=True)).eval()
    sequence = random_ids(length=7, batch=1)
    ours, our_warnings = calls_with_old_name(scratch, sequence)
    theirs, their_warnings = calls_with_old_name(llama, sequence)
    assert our_warnings and [(c, m.replace("ScratchLM", "Llama")) for c, m in our_warnings] == their_warnings
    assert our_warnings[0][0] is FutureWarning and "Use `cache` instead" in our_warnings[0][1]
    assert list(ours.keys()) == list(theirs.keys()) == ["logits", "cache"]
    assert ours.cache.get_seq_length() == 7

    with torch.no_grad():
        cache = scratch(sequence[:, :6], use_cache=True).cache
        expected = scratch(sequence[:, 6:], cache=cache).logits
    assert torch.allclose(ours.logits, expected, atol=1e-6)
    with torch.no_grad():  # the base model and the classification head follow the same rule
        for model in (scratch.model, tiny_model(ScratchLMForSequenceClassification, num_labels=2)):
            with pytest.warns(FutureWarning, match="`past_key_values` is deprecated .* Use `cache` instead"):
                out = model(sequence[:, :6], past_key_values=None, use_cache=True)
            assert "cache" in out.keys() and "past_key_values" not in out.keys()


@pytest.mark.parametrize("cls, llama_cls", [
    (ScratchLMForTokenClassification, LlamaForTokenClassification),
    (ScratchLMForQuestionAnswering, LlamaForQuestionAnswering),
])
def test_token_classification_and_qa_heads_take_the_cache_as_llamas_do(cls, llama_cls, tiny_model, tiny_decoder_kwargs,
                                                                       random_ids):
    assert "cache" in inspect.signature(cls.forward).parameters
    assert "cache" in inspect.signature(llama_cls.forward).parameters
    torch.manual_seed(0)
    llama = llama_cls(LlamaConfig(**tiny_decoder_kwargs)).eval()
    scratch = tiny_model(cls)
    sequence = random_ids(length=7, batch=1)
    messages = []
    for model in (scratch, llama):
        cache = DynamicCache(config=model.config)
        with torch.no_grad():
            model(sequence[:, :6], cache=cache)
            assert cache.get_seq_length() == 6  # the head handed the cache to its base
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                step = model(sequence[:, 6:], past_key_values=cache)
            full = model(sequence)
        assert cache.get_seq_length() == 7
        messages.append([(w.category, str(w.message)) for w in caught])
        name = "logits" if "logits" in full else "start_logits"
        assert torch.allclose(step[name], full[name][:, 6:], atol=1e-5)
    ours, theirs = messages
    assert ours and ours[0][0] is FutureWarning and "Use `cache` instead" in ours[0][1]
    assert [(c, m.replace("ScratchLM", "Llama")) for c, m in ours] == theirs
