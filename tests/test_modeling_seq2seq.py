"""The ScratchLM encoder–decoder: transformers' seq2seq contract, decoding, padding, checkpointing, LoRA, remote code."""

from __future__ import annotations

import functools
import json
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, DataCollatorForSeq2Seq
from transformers.models.bart.modeling_bart import BartDecoder, BartEncoder

from scratchlm.modeling import (
    SEQ2SEQ_PRESETS,
    ScratchLMSeq2SeqConfig,
    ScratchLMSeq2SeqForConditionalGeneration,
    ScratchLMSeq2SeqModel,
    init_seq2seq_model,
)
from scratchlm.modeling.modeling_scratchlm import ScratchLMBlock, ScratchLMDecoderLayer
from scratchlm.modeling.modeling_scratchlm_seq2seq import ScratchLMEncoderLayer, ScratchLMSeq2SeqDecoderLayer


@pytest.fixture(scope="module")
def random_ids(random_ids, tiny_seq2seq_kwargs):
    """conftest's `random_ids` over the encoder-decoder's vocabulary, 9 tokens long unless told."""
    return functools.partial(random_ids, length=9, vocab_size=tiny_seq2seq_kwargs["vocab_size"])


@pytest.fixture(scope="module")
def model(tiny_seq2seq_model):
    return tiny_seq2seq_model()


def greedy_without_cache(model, input_ids, attention_mask, steps):
    """The hand-written loop: re-run the whole decoder on the whole prefix, no cache, take the argmax."""
    decoder_ids = torch.full((input_ids.shape[0], 1), model.config.decoder_start_token_id)
    for _ in range(steps):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_ids,
                       use_cache=False).logits
        decoder_ids = torch.cat([decoder_ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return decoder_ids


# --- config -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(SEQ2SEQ_PRESETS))
def test_preset_parameter_counts_are_exact(preset):
    config = ScratchLMSeq2SeqConfig.from_preset(preset)
    with torch.device("meta"):
        model = ScratchLMSeq2SeqForConditionalGeneration(config)
    assert sum(p.numel() for p in model.parameters()) == config.num_parameters


def test_parameter_count_with_every_option(tiny_seq2seq_kwargs):
    config = ScratchLMSeq2SeqConfig(**{**tiny_seq2seq_kwargs, "tie_word_embeddings": False, "attention_bias": True,
                                       "mlp_bias": True, "use_qk_norm": True})
    with torch.device("meta"):
        model = ScratchLMSeq2SeqForConditionalGeneration(config)
    assert sum(p.numel() for p in model.parameters()) == config.num_parameters
    assert model.lm_head.weight is not model.model.encoder.embed_tokens.weight


@pytest.mark.parametrize(
    "field, value",
    [
        ("vocab_size", 0), ("hidden_size", -8), ("intermediate_size", 1.5), ("encoder_layers", 0),
        ("decoder_layers", 0), ("num_attention_heads", 3), ("num_key_value_heads", 3), ("head_dim", 15),
        ("max_position_embeddings", 0), ("hidden_dropout", 1.0), ("attention_dropout", -0.1),
        ("rms_norm_eps", 0.0), ("hidden_act", "gelu"), ("pad_token_id", 320), ("bos_token_id", -1),
        ("decoder_start_token_id", 999), ("eos_token_id", 400), ("is_encoder_decoder", False),
        ("rope_parameters", {"rope_type": "nonsense", "rope_theta": 1e4}),
    ],
)
def test_bad_config_raises_naming_the_field(field, value, tiny_seq2seq_kwargs):
    with pytest.raises(ValueError, match=field if field != "num_attention_heads" else "hidden_size|num_attention"):
        ScratchLMSeq2SeqConfig(**{**tiny_seq2seq_kwargs, field: value})


def test_auto_classes_pick_the_encoder_decoder(tmp_path, model, tiny_seq2seq_kwargs, random_ids):
    model.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config) is ScratchLMSeq2SeqConfig and config.is_encoder_decoder
    assert config.num_hidden_layers == tiny_seq2seq_kwargs["decoder_layers"]
    assert type(AutoModel.from_pretrained(tmp_path)) is ScratchLMSeq2SeqModel
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    ids = random_ids()
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids, decoder_input_ids=ids).logits,
                           model(input_ids=ids, decoder_input_ids=ids).logits)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForSeq2SeqLM"].endswith("ScratchLMSeq2SeqForConditionalGeneration")


# --- training contract ------------------------------------------------------------------------------------------


def test_loss_at_init_is_about_ln_vocab(model, tiny_seq2seq_kwargs, random_ids):
    labels = random_ids(batch=4, length=12, seed=3)
    with torch.no_grad():
        loss = model(input_ids=random_ids(batch=4), labels=labels).loss
    assert abs(loss.item() - math.log(tiny_seq2seq_kwargs["vocab_size"])) < 0.1


def test_labels_are_shifted_right_into_decoder_inputs(model, random_ids):
    labels = random_ids(length=6, seed=4)
    labels[1, 4:] = -100
    decoder_ids = model.prepare_decoder_input_ids_from_labels(labels)
    assert torch.equal(decoder_ids[:, 0], torch.full((2,), model.config.decoder_start_token_id))
    assert torch.equal(decoder_ids[0, 1:], labels[0, :-1]) and decoder_ids[1, 5] == model.config.pad_token_id
    ids = random_ids()
    with torch.no_grad():
        implicit = model(input_ids=ids, labels=labels)
        explicit = model(input_ids=ids, decoder_input_ids=decoder_ids)
    assert torch.equal(implicit.logits, explicit.logits)
    expected = F.cross_entropy(explicit.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert torch.allclose(implicit.loss, expected)
    # The Trainer's token count across gradient-accumulation steps replaces the per-batch mean.
    with torch.no_grad():
        summed = model(input_ids=ids, labels=labels, num_items_in_batch=torch.tensor(100)).loss
    assert torch.allclose(summed, expected * (labels != -100).sum() / 100)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_encoder_is_bidirectional_and_decoder_causal(attn_implementation, tiny_seq2seq_model, random_ids):
    model = tiny_seq2seq_model(attn_implementation=attn_implementation)
    ids, decoder_ids = random_ids(), random_ids(length=6, seed=9)
    changed_ids, changed_decoder_ids = ids.clone(), decoder_ids.clone()
    changed_ids[:, -1] = 3
    changed_decoder_ids[:, -1] = 3
    with torch.no_grad():
        encoded = model.get_encoder()(input_ids=ids).last_hidden_state
        assert not torch.allclose(model.get_encoder()(input_ids=changed_ids).last_hidden_state[:, 0], encoded[:, 0])
        logits = model(input_ids=ids, decoder_input_ids=decoder_ids).logits
        changed = model(input_ids=ids, decoder_input_ids=changed_decoder_ids).logits
    assert torch.allclose(changed[:, :-1], logits[:, :-1], atol=1e-6)
    assert not torch.allclose(changed[:, -1], logits[:, -1])


def test_data_collator_for_seq2seq_builds_decoder_inputs(model, tiny_tokenizer):
    features = [{"input_ids": [5, 6, 7], "labels": [8, 9]}, {"input_ids": [5], "labels": [8, 9, 10]}]
    batch = DataCollatorForSeq2Seq(tiny_tokenizer, model=model)(features)
    assert torch.equal(batch["decoder_input_ids"], model.prepare_decoder_input_ids_from_labels(batch["labels"]))


def test_return_dict_false_is_the_output_as_tuple(model, random_ids):
    ids = random_ids()
    with torch.no_grad():
        as_tuple = model(input_ids=ids, labels=ids, return_dict=False)
        output = model(input_ids=ids, labels=ids)
    expected = output.to_tuple()
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(as_tuple, expected))


def test_gradient_checkpointing_gives_the_same_gradients(tiny_seq2seq_model, random_ids):
    model = tiny_seq2seq_model().train()
    ids, labels = random_ids(), random_ids(seed=5)

    def gradients():
        model.zero_grad()
        model(input_ids=ids, labels=labels).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    plain = gradients()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert model.model.decoder.layers[0].gradient_checkpointing
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys()
    assert all(torch.allclose(plain[name], checkpointed[name], atol=1e-6) for name in plain)
    assert plain["model.decoder.layers.0.cross_attn.k_proj.weight"].abs().sum() > 0


def test_lora_trains_self_and_cross_attention_and_mlp(tiny_seq2seq_model, random_ids):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_seq2seq_model().train(), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    ))
    adapted = {name for name, _ in model.named_modules() if name.endswith("lora_A")}
    assert any(".cross_attn.k_proj" in name for name in adapted) and any(".self_attn.q_proj" in name for name in adapted)
    assert any("encoder.layers.0.mlp.down_proj" in name for name in adapted)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, labels = random_ids(), random_ids(length=5, seed=6)
    losses = []
    for _ in range(8):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


def test_forward_traces_with_fullgraph_compile(model, random_ids):
    ids = random_ids()
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # dynamo only: fails on any graph break
    with torch.no_grad():
        expected = model(input_ids=ids, labels=ids[:, :4].contiguous())
        traced = compiled(input_ids=ids, labels=ids[:, :4].contiguous())
    assert torch.allclose(traced.logits, expected.logits, atol=1e-6) and torch.allclose(traced.loss, expected.loss)


def test_eager_and_sdpa_agree_with_padding(model, tiny_seq2seq_model, random_ids):
    ids, mask = random_ids(), torch.ones(2, 9, dtype=torch.long)
    ids[1, 6:], mask[1, 6:] = model.config.pad_token_id, 0
    decoder_ids = random_ids(length=5, seed=7)
    eager = tiny_seq2seq_model(attn_implementation="eager")
    with torch.no_grad():
        sdpa_logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
        eager_logits = eager(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
    assert model.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    assert torch.allclose(sdpa_logits, eager_logits, atol=1e-5)


def test_out_of_vocabulary_ids_raise_before_the_model_runs(model, tiny_seq2seq_kwargs, random_ids):
    ids = random_ids()
    ids[0, 0] = tiny_seq2seq_kwargs["vocab_size"]
    with pytest.raises(ValueError, match="input_ids contains token id 320"):
        model(input_ids=ids, decoder_input_ids=random_ids())
    with pytest.raises(ValueError, match="decoder_input_ids contains token id 320"):
        model(input_ids=random_ids(), decoder_input_ids=ids)


# --- transformers' conventions at the installed version, as BART's -----------------------------------------------


def test_outputs_are_declared_for_output_capturing_as_in_bart(model):
    encoder, decoder = model.get_encoder(), model.model.decoder
    assert encoder._can_record_outputs.keys() == BartEncoder._can_record_outputs.keys() == {"hidden_states",
                                                                                            "attentions"}
    assert decoder._can_record_outputs.keys() == BartDecoder._can_record_outputs.keys() == {
        "hidden_states", "attentions", "cross_attentions"}


def test_recorded_outputs_are_each_layers_input_and_attention_weights(tiny_seq2seq_kwargs, tiny_seq2seq_model,
                                                                      random_ids):
    """What output capturing returns, against plain torch hooks on the model's own modules: the input of every layer
    and the output of the final norm; the weights of every self- and cross-attention."""
    model = tiny_seq2seq_model(attn_implementation="eager", encoder_layers=3)
    ids, decoder_ids = random_ids(), random_ids(length=5, seed=9)
    seen = {f"{side}_{kind}": [] for side in ("encoder", "decoder") for kind in ("hidden_states", "attentions")}
    seen["cross_attentions"] = []

    handles = []
    for side in ("encoder", "decoder"):
        stack = getattr(model.model, side)
        for layer in stack.layers:
            handles.append(layer.register_forward_pre_hook(lambda m, args, side=side: seen[f"{side}_hidden_states"]
                                                           .append(args[0])))
            handles.append(layer.self_attn.register_forward_hook(lambda m, args, out, side=side:
                                                                 seen[f"{side}_attentions"].append(out[1])))
            if side == "decoder":
                handles.append(layer.cross_attn.register_forward_hook(lambda m, args, out:
                                                                      seen["cross_attentions"].append(out[1])))
        handles.append(stack.norm.register_forward_hook(lambda m, args, out, side=side:
                                                        seen[f"{side}_hidden_states"].append(out)))
    with torch.no_grad():
        out = model(input_ids=ids, decoder_input_ids=decoder_ids, output_hidden_states=True, output_attentions=True)
    for handle in handles:
        handle.remove()
    for name, expected in seen.items():
        recorded = getattr(out, name)
        assert len(recorded) == len(expected), name
        for index, (a, b) in enumerate(zip(recorded, expected)):
            assert torch.equal(a, b), f"{name}[{index}]"
    assert len(out.encoder_hidden_states) == 4 and len(out.decoder_hidden_states) == 3
    assert len(out.encoder_attentions) == 3 and len(out.decoder_attentions) == len(out.cross_attentions) == 2
    assert out.cross_attentions[0].shape == (2, tiny_seq2seq_kwargs["num_attention_heads"], 5, 9)
    # Selecting by index (a v5 feature of output capturing): the others come back as None, and negative indices
    # count each stack's own layers (3 in the encoder, 2 in the decoder).
    with torch.no_grad():
        selected = model(input_ids=ids, decoder_input_ids=decoder_ids, output_hidden_states=[-1])
    assert [h is None for h in selected.encoder_hidden_states] == [True, True, True, False]
    assert [h is None for h in selected.decoder_hidden_states] == [True, True, False]
    assert torch.equal(selected.encoder_hidden_states[-1], out.encoder_last_hidden_state)
    assert torch.equal(selected.decoder_hidden_states[-1], out.decoder_hidden_states[-1])


def test_source_and_target_past_the_context_run_with_a_warning(model, caplog, tiny_seq2seq_kwargs, random_ids):
    # Rotary positions exist for any length, so, as in transformers' models, a longer input runs, with one warning.
    source, target = random_ids(length=96), random_ids(length=80, seed=9)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="scratchlm"), torch.no_grad():
        logits = model(input_ids=source, decoder_input_ids=target).logits
    assert logits.shape == (2, 80, tiny_seq2seq_kwargs["vocab_size"]) and torch.isfinite(logits).all()
    logged = [r.getMessage() for r in caplog.records if "longer than the model's context" in r.getMessage()]
    assert len(logged) == 2
    assert logged[0].startswith("input_ids longer than the model's context of 64 tokens (max_position_embeddings)")
    assert logged[1].startswith("decoder_input_ids longer than the model's context of 64 tokens")


# --- decoding ---------------------------------------------------------------------------------------------------


def test_cached_decoding_equals_the_no_cache_loop(model, random_ids):
    ids, mask = random_ids(), torch.ones(2, 9, dtype=torch.long)
    ids[0, 7:], mask[0, 7:] = model.config.pad_token_id, 0
    with torch.no_grad():
        expected = greedy_without_cache(model, ids, mask, steps=8)
        generated = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=8)
        # Step by step with the cache: each new position's logits equal those of the full, uncached decoder.
        full = model(input_ids=ids, attention_mask=mask, decoder_input_ids=expected, use_cache=False).logits
        encoder_outputs = model.get_encoder()(input_ids=ids, attention_mask=mask)
        cache, stepwise = None, []
        for position in range(expected.shape[1]):
            out = model(encoder_outputs=encoder_outputs, attention_mask=mask, cache=cache, use_cache=True,
                        decoder_input_ids=expected[:, position:position + 1])
            cache = out.cache
            stepwise.append(out.logits)
    assert torch.equal(generated, expected)
    assert type(cache).__name__ == "EncoderDecoderCache" and cache.get_seq_length() == expected.shape[1]
    assert torch.allclose(torch.cat(stepwise, dim=1), full, atol=1e-5)


def test_past_key_values_is_accepted_as_the_old_name_of_cache(model, random_ids):
    ids, decoder_ids = random_ids(), random_ids(length=4, seed=8)
    with torch.no_grad():
        first = model(input_ids=ids, decoder_input_ids=decoder_ids[:, :3], use_cache=True)
        new = model(input_ids=ids, decoder_input_ids=decoder_ids[:, 3:], past_key_values=first.cache).logits
        full = model(input_ids=ids, decoder_input_ids=decoder_ids, use_cache=False).logits
    assert torch.allclose(new[:, -1], full[:, -1], atol=1e-5)


def test_beam_search_scores_are_the_sequences_log_probabilities(model, random_ids):
    ids = random_ids(batch=1)
    with torch.no_grad():
        greedy = model.generate(input_ids=ids, do_sample=False, max_new_tokens=6)
        one_beam = model.generate(input_ids=ids, num_beams=1, do_sample=False, max_new_tokens=6)
        beams = model.generate(input_ids=ids, num_beams=4, num_return_sequences=4, do_sample=False,
                               max_new_tokens=6, length_penalty=0.0, early_stopping=True,
                               return_dict_in_generate=True, output_scores=True)
        # Teacher-forced log-probability of each returned beam, summed by hand.
        logits = model(input_ids=ids.expand(4, -1), decoder_input_ids=beams.sequences[:, :-1]).logits
        hand = logits.log_softmax(-1).gather(-1, beams.sequences[:, 1:, None]).squeeze(-1).sum(-1)
    assert torch.equal(one_beam, greedy)
    assert torch.allclose(beams.sequences_scores, hand, atol=1e-4)
    assert torch.all(beams.sequences_scores[:-1] >= beams.sequences_scores[1:])


def test_sampling_is_seeded_and_top_k_one_is_greedy(model, random_ids):
    ids = random_ids()
    with torch.no_grad():
        greedy = model.generate(input_ids=ids, do_sample=False, max_new_tokens=6)
        runs = []
        for _ in range(2):
            torch.manual_seed(11)
            runs.append(model.generate(input_ids=ids, do_sample=True, temperature=1.5, max_new_tokens=6))
        top_1 = model.generate(input_ids=ids, do_sample=True, top_k=1, max_new_tokens=6)
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], greedy)
    assert torch.equal(top_1, greedy)


def test_padded_batch_equals_its_rows_one_by_one(model, random_ids):
    rows = [random_ids(batch=1, length=9, seed=12)[0], random_ids(batch=1, length=5, seed=13)[0]]
    ids = torch.full((2, 9), model.config.pad_token_id)
    mask = torch.zeros(2, 9, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    with torch.no_grad():
        batch = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=7)
        beams = model.generate(input_ids=ids, attention_mask=mask, num_beams=3, max_new_tokens=7)
        for i, row in enumerate(rows):
            alone = model.generate(input_ids=row[None], do_sample=False, max_new_tokens=7)
            assert torch.equal(batch[i : i + 1], alone)
            assert torch.equal(beams[i : i + 1], model.generate(input_ids=row[None], num_beams=3, max_new_tokens=7))


def test_generate_from_encoder_outputs_equals_generate_from_input_ids(model, random_ids):
    ids, mask = random_ids(), torch.ones(2, 9, dtype=torch.long)
    ids[1, 5:], mask[1, 5:] = model.config.pad_token_id, 0
    with torch.no_grad():
        from_ids = model.generate(input_ids=ids, attention_mask=mask, num_beams=2, max_new_tokens=6)
        encoder_outputs = model.get_encoder()(input_ids=ids, attention_mask=mask)
        from_outputs = model.generate(encoder_outputs=encoder_outputs, attention_mask=mask, num_beams=2,
                                      max_new_tokens=6)
    assert torch.equal(from_ids, from_outputs)


def test_generation_stops_each_row_at_eos_and_pads_it(model, random_ids):
    ids = random_ids()
    with torch.no_grad():
        free = model.generate(input_ids=ids, do_sample=False, max_new_tokens=6)
        eos = int(free[0, 1])  # the first token row 0 generates ends it
        stopped = model.generate(input_ids=ids, do_sample=False, max_new_tokens=6, eos_token_id=eos)
    for row, generated in zip(free, stopped):
        hits = (row[1:] == eos).nonzero()
        length = 1 + (int(hits[0]) + 1 if len(hits) else len(row) - 1)
        assert torch.equal(generated[:length], row[:length])
        assert torch.all(generated[length:] == model.config.pad_token_id)
    assert stopped.shape[1] <= free.shape[1]


# --- initialisation, saving, remote code ------------------------------------------------------------------------


def test_init_seq2seq_model_is_wired_for_its_tokenizer(tiny_tokenizer):
    model = init_seq2seq_model("tiny", {"encoder_layers": 1}, tokenizer=tiny_tokenizer, seed=3)
    config = model.config
    assert config.vocab_size == len(tiny_tokenizer) and config.encoder_layers == 1 and config.decoder_layers == 2
    assert config.decoder_start_token_id == tiny_tokenizer.bos_token_id == model.generation_config.decoder_start_token_id
    assert config.pad_token_id == tiny_tokenizer.pad_token_id
    assert model.generation_config.eos_token_id == tiny_tokenizer.eos_token_id
    assert model.generation_config.max_new_tokens is None  # so Seq2SeqTrainer's generation_max_length applies
    again = init_seq2seq_model("tiny", {"encoder_layers": 1}, tokenizer=tiny_tokenizer, seed=3)
    assert torch.equal(model.lm_head.weight, again.lm_head.weight)
    with pytest.raises(ValueError, match="num_layers"):
        init_seq2seq_model("tiny", {"num_layers": 1})


# The parameters of a one-layer model with every option, in the order a checkpoint saved before the encoder, decoder
# and cross-attention were built from the decoder's shared block and attention (ScratchLMBlock, ScratchLMAttentionBase)
# holds them.
SAVED_BEFORE_SHARED_BLOCKS = [
    "model.encoder.embed_tokens.weight", "model.encoder.layers.0.input_layernorm.weight",
    "model.encoder.layers.0.self_attn.q_proj.weight", "model.encoder.layers.0.self_attn.q_proj.bias",
    "model.encoder.layers.0.self_attn.k_proj.weight", "model.encoder.layers.0.self_attn.k_proj.bias",
    "model.encoder.layers.0.self_attn.v_proj.weight", "model.encoder.layers.0.self_attn.v_proj.bias",
    "model.encoder.layers.0.self_attn.o_proj.weight", "model.encoder.layers.0.self_attn.o_proj.bias",
    "model.encoder.layers.0.self_attn.q_norm.weight", "model.encoder.layers.0.self_attn.k_norm.weight",
    "model.encoder.layers.0.post_attention_layernorm.weight", "model.encoder.layers.0.mlp.gate_proj.weight",
    "model.encoder.layers.0.mlp.gate_proj.bias", "model.encoder.layers.0.mlp.up_proj.weight",
    "model.encoder.layers.0.mlp.up_proj.bias", "model.encoder.layers.0.mlp.down_proj.weight",
    "model.encoder.layers.0.mlp.down_proj.bias", "model.encoder.norm.weight",
    "model.decoder.layers.0.input_layernorm.weight", "model.decoder.layers.0.self_attn.q_proj.weight",
    "model.decoder.layers.0.self_attn.q_proj.bias", "model.decoder.layers.0.self_attn.k_proj.weight",
    "model.decoder.layers.0.self_attn.k_proj.bias", "model.decoder.layers.0.self_attn.v_proj.weight",
    "model.decoder.layers.0.self_attn.v_proj.bias", "model.decoder.layers.0.self_attn.o_proj.weight",
    "model.decoder.layers.0.self_attn.o_proj.bias", "model.decoder.layers.0.self_attn.q_norm.weight",
    "model.decoder.layers.0.self_attn.k_norm.weight", "model.decoder.layers.0.cross_attn_layernorm.weight",
    "model.decoder.layers.0.cross_attn.q_proj.weight", "model.decoder.layers.0.cross_attn.q_proj.bias",
    "model.decoder.layers.0.cross_attn.k_proj.weight", "model.decoder.layers.0.cross_attn.k_proj.bias",
    "model.decoder.layers.0.cross_attn.v_proj.weight", "model.decoder.layers.0.cross_attn.v_proj.bias",
    "model.decoder.layers.0.cross_attn.o_proj.weight", "model.decoder.layers.0.cross_attn.o_proj.bias",
    "model.decoder.layers.0.post_attention_layernorm.weight", "model.decoder.layers.0.mlp.gate_proj.weight",
    "model.decoder.layers.0.mlp.gate_proj.bias", "model.decoder.layers.0.mlp.up_proj.weight",
    "model.decoder.layers.0.mlp.up_proj.bias", "model.decoder.layers.0.mlp.down_proj.weight",
    "model.decoder.layers.0.mlp.down_proj.bias", "model.decoder.norm.weight", "lm_head.weight"
]


def test_checkpoint_saved_before_the_shared_blocks_loads(tmp_path, tiny_seq2seq_kwargs):
    options = dict(encoder_layers=1, decoder_layers=1, use_qk_norm=True, attention_bias=True, mlp_bias=True,
                   tie_word_embeddings=False)
    config = ScratchLMSeq2SeqConfig(**{**tiny_seq2seq_kwargs, **options})
    torch.manual_seed(0)
    shapes = {key: value.shape for key, value in ScratchLMSeq2SeqForConditionalGeneration(config).state_dict().items()}
    # The same names in the same order: a seed still draws the weights it drew before.
    assert list(shapes) == SAVED_BEFORE_SHARED_BLOCKS
    generator = torch.Generator().manual_seed(0)
    saved = {key: torch.randn(shapes[key], generator=generator) for key in SAVED_BEFORE_SHARED_BLOCKS}
    config.save_pretrained(tmp_path)
    save_file(saved, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    model, info = ScratchLMSeq2SeqForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info
    loaded = model.state_dict()
    assert all(torch.equal(loaded[key], tensor) for key, tensor in saved.items())


def test_encoder_and_decoder_layers_are_the_shared_block_under_their_own_names(tiny_seq2seq_model):
    # FSDP's `transformer_layer_cls_to_wrap` and `_no_split_modules` name layer classes: the encoder's must be
    # nameable apart from the decoder-only model's ScratchLMDecoderLayer.
    model = tiny_seq2seq_model()
    encoder_layer, decoder_layer = model.model.encoder.layers[0], model.model.decoder.layers[0]
    assert type(encoder_layer) is ScratchLMEncoderLayer and type(decoder_layer) is ScratchLMSeq2SeqDecoderLayer
    assert isinstance(encoder_layer, ScratchLMBlock) and isinstance(decoder_layer, ScratchLMBlock)
    assert not isinstance(encoder_layer, ScratchLMDecoderLayer) and not isinstance(decoder_layer, ScratchLMDecoderLayer)
    assert not encoder_layer.self_attn.is_causal and decoder_layer.self_attn.is_causal
    assert not decoder_layer.cross_attn.is_causal and not hasattr(decoder_layer.cross_attn, "q_norm")


def test_untied_head_saves_and_loads_its_own_weights(tmp_path, tiny_seq2seq_model):
    model = tiny_seq2seq_model(tie_word_embeddings=False)
    assert model.lm_head.weight.data_ptr() != model.model.encoder.embed_tokens.weight.data_ptr()
    model.save_pretrained(tmp_path)
    loaded = ScratchLMSeq2SeqForConditionalGeneration.from_pretrained(tmp_path)
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    assert torch.equal(loaded.model.encoder.embed_tokens.weight, model.model.encoder.embed_tokens.weight)


def test_fresh_process_translates_with_remote_code(tmp_path, run_without_package, tiny_tokenizer, tiny_seq2seq_sizes):
    texts = ["ein Hund läuft über die Wiese", "zwei Kinder spielen im Park"]
    model = init_seq2seq_model("tiny", tiny_seq2seq_sizes, tokenizer=tiny_tokenizer, seed=0)
    model.eval().save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    inputs = tiny_tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = model.generate(**inputs, num_beams=2, max_new_tokens=6)
        logits = model(**inputs, decoder_input_ids=expected).logits
    torch.save({"expected": expected, "logits": logits}, tmp_path / "expected.pt")
    saved = {path.name for path in (tmp_path / "model").iterdir()}
    assert {"modeling_scratchlm_seq2seq.py", "modeling_scratchlm.py", "configuration_scratchlm_seq2seq.py",
            "configuration_scratchlm.py", "tokenization_scratchlm.py"} <= saved
    run_without_package(f"""
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        directory = {str(tmp_path / "model")!r}
        expected = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
        tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=True)
        model = AutoModelForSeq2SeqLM.from_pretrained(directory, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        inputs = tokenizer({texts!r}, return_tensors="pt", padding=True)
        with torch.no_grad():
            generated = model.generate(**inputs, num_beams=2, max_new_tokens=6)
            logits = model(**inputs, decoder_input_ids=generated).logits
        assert torch.equal(generated, expected["expected"]), (generated, expected["expected"])
        assert torch.equal(logits, expected["logits"])
        print(tokenizer.batch_decode(generated, skip_special_tokens=True))
    """)
