"""The ScratchLM model: parity with Llama, caching, padding, checkpointing, saving and loading, bad configs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    DynamicCache,
    LlamaConfig,
    LlamaForCausalLM,
)

from scratchlm.modeling import (
    PRESETS,
    ScratchLMConfig,
    ScratchLMForCausalLM,
    ScratchLMForQuestionAnswering,
    ScratchLMForSequenceClassification,
    ScratchLMForTokenClassification,
    ScratchLMModel,
)
from scratchlm.modeling.convert_llama import convert_model, llama_config_to_scratchlm, scratchlm_config_to_llama

# --- parity with transformers' Llama -------------------------------------------------------------------------


def test_llama_parity_logits_and_greedy_generation(tiny_decoder_kwargs, random_ids):
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(**tiny_decoder_kwargs, tie_word_embeddings=True)).eval()
    scratch = convert_model(llama, ScratchLMForCausalLM, llama_config_to_scratchlm(llama.config)).eval()
    ids = random_ids()
    with torch.no_grad():
        difference = (llama(ids).logits - scratch(ids).logits).abs().max().item()
    assert difference <= 1e-5
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert torch.equal(llama.generate(ids[:1], **kwargs), scratch.generate(ids[:1], **kwargs))


def test_llama_parity_untied_with_yarn_and_back(tiny_decoder_kwargs, random_ids):
    rope = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 2.0, "original_max_position_embeddings": 64}
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(**tiny_decoder_kwargs, tie_word_embeddings=False, rope_parameters=rope)).eval()
    scratch = convert_model(llama, ScratchLMForCausalLM, llama_config_to_scratchlm(llama.config)).eval()
    back = convert_model(scratch, LlamaForCausalLM, scratchlm_config_to_llama(scratch.config)).eval()
    ids = random_ids(length=100)
    with torch.no_grad():
        reference = llama(ids).logits
        assert (reference - scratch(ids).logits).abs().max().item() <= 1e-5
        assert torch.equal(reference, back(ids).logits)


def test_convert_cli_round_trip(tmp_path, tiny_decoder_kwargs, random_ids):
    from scratchlm.modeling.cli import convert_main

    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(**tiny_decoder_kwargs, tie_word_embeddings=True)).eval()
    llama.save_pretrained(tmp_path / "llama")
    convert_main(["--from_llama", str(tmp_path / "llama"), "--output_dir", str(tmp_path / "scratch")])
    convert_main(["--to_llama", str(tmp_path / "scratch"), "--output_dir", str(tmp_path / "back")])
    assert json.loads((tmp_path / "scratch" / "config.json").read_text())["model_type"] == "scratchlm"
    ids = random_ids()
    with torch.no_grad():
        reference = llama(ids).logits
        scratch = AutoModelForCausalLM.from_pretrained(tmp_path / "scratch")
        assert isinstance(scratch, ScratchLMForCausalLM)
        assert (scratch(ids).logits - reference).abs().max().item() <= 1e-5
        assert torch.equal(LlamaForCausalLM.from_pretrained(tmp_path / "back")(ids).logits, reference)
    with pytest.raises(ValueError, match="'scratchlm' model, expected 'llama'"):
        convert_main.__wrapped__(["--from_llama", str(tmp_path / "scratch"), "--output_dir", str(tmp_path / "again")])


# --- attention, cache, padding ------------------------------------------------------------------------------


def test_eager_and_sdpa_agree_with_padding(tiny_model, random_ids):
    eager = tiny_model(attn_implementation="eager")
    sdpa = tiny_model(attn_implementation="sdpa")
    ids = random_ids()
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    with torch.no_grad():
        a = eager(ids, attention_mask=mask).logits
        b = sdpa(ids, attention_mask=mask).logits
    assert torch.allclose(a[0, 4:], b[0, 4:], atol=1e-5)
    assert torch.allclose(a[1], b[1], atol=1e-5)


@pytest.mark.parametrize("argument", ["cache", "past_key_values"])
def test_incremental_decoding_with_either_cache_argument_matches_full_forward(argument, tiny_model, random_ids):
    model = tiny_model()
    ids = random_ids(length=10)
    with torch.no_grad():
        full = model(ids, use_cache=False).logits
        out = model(ids[:, :6], use_cache=True)
        cache = out.cache
        steps = []
        for position in range(6, 10):
            out = model(ids[:, position : position + 1], use_cache=True, **{argument: cache})
            cache = out.cache
            steps.append(out.logits)
    assert isinstance(cache, DynamicCache) and cache.get_seq_length() == 10
    assert torch.allclose(torch.cat(steps, dim=1), full[:, 6:], atol=1e-5)


def test_generate_with_cache_equals_no_cache_loop(tiny_model, random_ids):
    model = tiny_model()
    prompt = random_ids(batch=1, length=5)
    generated = model.generate(prompt, max_new_tokens=15, do_sample=False, eos_token_id=None)
    ids = prompt
    with torch.no_grad():
        for _ in range(15):
            next_id = model(ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, next_id], dim=1)
    assert torch.equal(generated, ids)


def test_left_padded_batch_equals_sequences_one_by_one(tiny_model, random_ids):
    model = tiny_model()
    short, long = random_ids(batch=1, length=5, seed=2), random_ids(batch=1, length=9, seed=3)
    batch = torch.cat([torch.cat([torch.zeros(1, 4, dtype=torch.long), short], dim=1), long])
    mask = torch.ones_like(batch)
    mask[0, :4] = 0
    with torch.no_grad():
        logits = model(batch, attention_mask=mask).logits
        assert torch.allclose(logits[0, 4:], model(short).logits[0], atol=1e-5)
        assert torch.allclose(logits[1], model(long).logits[0], atol=1e-5)
    kwargs = dict(max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
    together = model.generate(batch, attention_mask=mask, **kwargs)
    assert torch.equal(together[0, 4:], model.generate(short, **kwargs)[0])
    assert torch.equal(together[1], model.generate(long, **kwargs)[0])


def test_inputs_embeds_position_ids_and_logits_to_keep(tiny_model, random_ids):
    model = tiny_model()
    ids = random_ids()
    with torch.no_grad():
        reference = model(ids).logits
        embeds = model.get_input_embeddings()(ids)
        assert torch.allclose(model(inputs_embeds=embeds).logits, reference, atol=1e-6)
        positions = torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids)
        assert torch.allclose(model(ids, position_ids=positions).logits, reference, atol=1e-6)
        assert torch.allclose(model(ids, logits_to_keep=3).logits, reference[:, -3:], atol=1e-6)
        shifted = model(ids, position_ids=positions + 7).logits  # RoPE is relative: a shift changes nothing
        assert torch.allclose(shifted, reference, atol=1e-4)


def test_output_hidden_states_and_attentions(tiny_decoder_kwargs, tiny_model, random_ids):
    model = tiny_model(attn_implementation="eager")
    ids = random_ids()
    out = model(ids, output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == tiny_decoder_kwargs["num_hidden_layers"] + 1
    assert len(out.attentions) == tiny_decoder_kwargs["num_hidden_layers"]
    attention = out.attentions[0]
    assert attention.shape == (2, tiny_decoder_kwargs["num_attention_heads"], 12, 12)
    assert torch.allclose(attention.sum(-1), torch.ones(2, tiny_decoder_kwargs["num_attention_heads"], 12), atol=1e-5)
    assert torch.all(attention.triu(diagonal=1) == 0)  # causal


@pytest.mark.parametrize("rope", [
    {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
    {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0},
    {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 32},
])
def test_rope_variants_run_and_survive_reload(rope, tmp_path, tiny_model, random_ids):
    model = tiny_model(rope_parameters=rope)
    ids = random_ids(length=40)
    model.save_pretrained(tmp_path)
    reloaded = ScratchLMForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits)
    assert torch.equal(model.model.rotary_emb.inv_freq, reloaded.model.rotary_emb.inv_freq)


# --- training behaviour -------------------------------------------------------------------------------------


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model, random_ids):
    ids = random_ids()
    gradients = []
    for checkpointing in (False, True):
        model = tiny_model().train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model(ids, labels=ids).loss.backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters()})
    for name, grad in gradients[0].items():
        assert torch.allclose(grad, gradients[1][name], atol=1e-6), name


def test_loss_honours_num_items_in_batch(tiny_model, random_ids):
    model = tiny_model()
    ids = random_ids()
    labels = ids.clone()
    labels[:, :5] = -100
    mean_loss = model(ids, labels=labels).loss
    summed = model(ids, labels=labels, num_items_in_batch=torch.tensor(100)).loss
    counted = (labels[:, 1:] != -100).sum()
    assert torch.allclose(summed * 100, mean_loss * counted, atol=1e-4)


# --- saving, loading, embeddings ----------------------------------------------------------------------------


def test_save_load_round_trip_is_safetensors_and_keeps_ties(tmp_path, tiny_model, random_ids):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    files = {path.name for path in tmp_path.iterdir()}
    assert "model.safetensors" in files and not any(name.endswith((".bin", ".pt")) for name in files)
    assert {"configuration_scratchlm.py", "modeling_scratchlm.py"} <= files
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSequenceClassification"].endswith("ScratchLMForSequenceClassification")

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = random_ids()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits)
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        reloaded.model.embed_tokens.weight[5] += 1.0
    assert torch.equal(reloaded.lm_head.weight[5], reloaded.model.embed_tokens.weight[5])


def test_untied_model_stays_untied(tmp_path, tiny_model):
    model = tiny_model(tie_word_embeddings=False)
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    model.save_pretrained(tmp_path)
    reloaded = ScratchLMForCausalLM.from_pretrained(tmp_path)
    assert torch.equal(reloaded.lm_head.weight, model.lm_head.weight)
    assert reloaded.lm_head.weight.data_ptr() != reloaded.model.embed_tokens.weight.data_ptr()


# The parameters of a one-layer model with every option, in the order a checkpoint saved before the layers were built
# from the shared block and attention (ScratchLMBlock, ScratchLMAttentionBase) holds them.
SAVED_BEFORE_SHARED_BLOCKS = [
    "model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
    "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.bias",
    "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.k_proj.bias",
    "model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.v_proj.bias",
    "model.layers.0.self_attn.o_proj.weight", "model.layers.0.self_attn.o_proj.bias",
    "model.layers.0.self_attn.q_norm.weight", "model.layers.0.self_attn.k_norm.weight",
    "model.layers.0.post_attention_layernorm.weight", "model.layers.0.mlp.gate_proj.weight",
    "model.layers.0.mlp.gate_proj.bias", "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.bias",
    "model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.down_proj.bias", "model.norm.weight",
    "lm_head.weight"
]


def test_checkpoint_saved_before_the_shared_blocks_loads(tmp_path, tiny_config):
    config = tiny_config(num_hidden_layers=1, use_qk_norm=True, attention_bias=True, mlp_bias=True,
                         tie_word_embeddings=False)
    shapes = {key: value.shape for key, value in ScratchLMForCausalLM(config).state_dict().items()}
    assert list(shapes) == SAVED_BEFORE_SHARED_BLOCKS  # same names, same order: a seed draws the same weights
    generator = torch.Generator().manual_seed(0)
    saved = {key: torch.randn(shapes[key], generator=generator) for key in SAVED_BEFORE_SHARED_BLOCKS}
    config.save_pretrained(tmp_path)
    save_file(saved, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    model, info = ScratchLMForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"]), info
    loaded = model.state_dict()
    assert all(torch.equal(loaded[key], tensor) for key, tensor in saved.items())


def test_resize_token_embeddings(tiny_decoder_kwargs, tiny_model, random_ids):
    model = tiny_model()
    ids = random_ids()
    with torch.no_grad():
        before = model(ids).logits
    model.resize_token_embeddings(300)
    assert model.config.vocab_size == 300
    assert model.lm_head.weight.shape == (300, tiny_decoder_kwargs["hidden_size"])
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        after = model(torch.cat([ids, torch.full((2, 1), 299)], dim=1)).logits
    assert after.shape[-1] == 300
    assert torch.allclose(after[:, :-1, :256], before, atol=1e-5)


def test_task_heads_compute_losses(tiny_model, random_ids):
    ids = random_ids()
    classifier = tiny_model(ScratchLMForSequenceClassification, num_labels=3)
    out = classifier(ids, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3) and out.loss.item() > 0
    tagger = tiny_model(ScratchLMForTokenClassification, num_labels=5)
    out = tagger(ids, labels=torch.randint(0, 5, ids.shape))
    assert out.logits.shape == (2, 12, 5) and out.loss.item() > 0
    reader = tiny_model(ScratchLMForQuestionAnswering)
    out = reader(ids, start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([3, 4]))
    assert out.start_logits.shape == (2, 12) and out.loss.item() > 0


def test_sequence_classification_pools_the_last_real_token_with_either_padding(tiny_model, random_ids):
    model = tiny_model(ScratchLMForSequenceClassification, num_labels=2)
    text = random_ids(batch=1, length=6)
    pad = torch.zeros(1, 3, dtype=torch.long)
    ones, zeros = torch.ones(1, 6, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long)
    with torch.no_grad():
        alone = model(text).logits
        right = model(torch.cat([text, pad], 1), attention_mask=torch.cat([ones, zeros], 1)).logits
        left = model(torch.cat([pad, text], 1), attention_mask=torch.cat([zeros, ones], 1)).logits
    assert torch.allclose(alone, right, atol=1e-5) and torch.allclose(alone, left, atol=1e-5)


def test_bidirectional_attention_sees_later_tokens_and_ignores_padding(tmp_path, tiny_config, tiny_model, random_ids):
    ids = random_ids(batch=1, length=8)
    changed = ids.clone()
    changed[0, -1] = 3 if ids[0, -1] != 3 else 4
    for implementation in ("eager", "sdpa"):
        causal = tiny_model(ScratchLMForQuestionAnswering, attn_implementation=implementation)
        both_ways = tiny_model(ScratchLMForQuestionAnswering, attn_implementation=implementation,
                               use_bidirectional_attention=True)
        with torch.no_grad():
            assert torch.equal(causal(ids).start_logits[:, :-1], causal(changed).start_logits[:, :-1])
            early, late = both_ways(ids).start_logits, both_ways(changed).start_logits
            assert (early[:, :-1] - late[:, :-1]).abs().max() > 1e-4  # the first tokens see the last one
            padded = both_ways(torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], 1),
                               attention_mask=torch.tensor([[1] * 8 + [0] * 3])).start_logits
        assert torch.allclose(padded[:, :8], early, atol=1e-5)  # padding is not attended to
    both_ways.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert reloaded.use_bidirectional_attention and not tiny_config().use_bidirectional_attention
    with pytest.raises(ValueError, match="use_bidirectional_attention is for the encoder heads"):
        ScratchLMForCausalLM(tiny_config(use_bidirectional_attention=True))


# --- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_have_exact_parameter_counts(name):
    config = ScratchLMConfig.from_preset(name)
    with torch.device("meta"):
        model = ScratchLMForCausalLM(config)
    assert model.num_parameters() == config.num_parameters


def test_preset_parameter_count_follows_options():
    config = ScratchLMConfig.from_preset(
        "tiny", use_qk_norm=True, attention_bias=True, mlp_bias=True, tie_word_embeddings=False
    )
    assert ScratchLMForCausalLM(config).num_parameters() == config.num_parameters
    assert 0.8e6 < ScratchLMConfig.from_preset("tiny").num_parameters < 1.2e6
    assert 10e6 < ScratchLMConfig.from_preset("small").num_parameters < 30e6


@pytest.mark.parametrize("overrides, field", [
    (dict(hidden_size=66), "hidden_size"),
    (dict(num_key_value_heads=3), "num_key_value_heads"),
    (dict(head_dim=15), "head_dim"),
    (dict(num_hidden_layers=0), "num_hidden_layers"),
    (dict(vocab_size=-5), "vocab_size"),
    (dict(intermediate_size=0), "intermediate_size"),
    (dict(rope_parameters={"rope_type": "spiral", "rope_theta": 10000.0}), "rope_type"),
    (dict(attn_implementation="magic"), "attention backend"),
    (dict(hidden_dropout=1.0), "hidden_dropout"),
    (dict(hidden_dropout="abc"), r"hidden_dropout must be a number in \[0, 1\), got 'abc'"),
    (dict(rms_norm_eps="abc"), "rms_norm_eps must be a positive number, got 'abc'"),
    (dict(pad_token_id=256), r"pad_token_id \(256\) must be a token id in \[0, 256\)"),
    (dict(bos_token_id=-1), "bos_token_id"),
    (dict(eos_token_id=[1, 999]), "eos_token_id"),
])
def test_bad_configs_raise_naming_the_field(overrides, field, tiny_config):
    with pytest.raises(ValueError, match=field):
        tiny_config(**overrides)


def test_unknown_preset_and_bad_saved_config(tmp_path, tiny_config):
    with pytest.raises(ValueError, match="unknown ScratchLM preset 'huge'"):
        ScratchLMConfig.from_preset("huge")
    tiny_config().save_pretrained(tmp_path)
    values = json.loads((tmp_path / "config.json").read_text())
    values["num_attention_heads"] = 5
    (tmp_path / "config.json").write_text(json.dumps(values))
    with pytest.raises(ValueError, match="hidden_size"):
        AutoConfig.from_pretrained(tmp_path)


def test_forward_rejects_unknown_token_ids_and_runs_past_the_context(tiny_decoder_kwargs, tiny_model, random_ids):
    model = tiny_model()
    with pytest.raises(ValueError, match="token id 256, outside the vocabulary"):
        model(torch.tensor([[5, 256]]))
    # Rotary positions exist past max_position_embeddings (128): as in Llama, the model runs there, with a warning
    # (checked in test_modeling_conventions.py), and caching still matches the full forward.
    with torch.no_grad():
        assert model(torch.randint(3, 200, (1, 129))).logits.shape == (1, 129, tiny_decoder_kwargs["vocab_size"])
        generated = model.generate(random_ids(batch=1, length=120), max_new_tokens=20, do_sample=False,
                                   eos_token_id=None)
        assert generated.shape[1] == 140
        assert model(generated[:, :-1], use_cache=False).logits[0, -1].argmax() == generated[0, -1]


# --- remote code --------------------------------------------------------------------------------------------


def test_fresh_process_loads_saved_models_as_remote_code(tmp_path, run_without_package, tiny_model, random_ids):
    ids = random_ids()
    causal, classifier = tiny_model(), tiny_model(ScratchLMForSequenceClassification, num_labels=2)
    causal.save_pretrained(tmp_path / "causal")
    classifier.save_pretrained(tmp_path / "classifier")
    with torch.no_grad():
        torch.save({"ids": ids, "causal": causal(ids).logits, "classifier": classifier(ids).logits,
                    "base": causal.model(ids).last_hidden_state}, tmp_path / "expected.pt")
    run_without_package(f"""
        import torch
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification
        expected = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
        ids = expected["ids"]
        config = AutoConfig.from_pretrained({str(tmp_path / "causal")!r}, trust_remote_code=True)
        assert config.model_type == "scratchlm" and type(config).__module__.startswith("transformers_modules")
        causal = AutoModelForCausalLM.from_pretrained({str(tmp_path / "causal")!r}, trust_remote_code=True)
        base = AutoModel.from_pretrained({str(tmp_path / "causal")!r}, trust_remote_code=True)
        classifier = AutoModelForSequenceClassification.from_pretrained(
            {str(tmp_path / "classifier")!r}, trust_remote_code=True)
        with torch.no_grad():
            assert torch.equal(causal(ids).logits, expected["causal"])
            assert torch.equal(base(ids).last_hidden_state, expected["base"])
            assert torch.equal(classifier(ids).logits, expected["classifier"])
        out = causal.generate(ids[:1], max_new_tokens=5, do_sample=False)
        assert out.shape == (1, 17)
        print(type(causal).__module__)
    """)


def test_auto_classes_resolve_to_scratchlm_in_process(tiny_config):
    config = tiny_config()
    assert isinstance(AutoModel.from_config(config), ScratchLMModel)
    assert isinstance(AutoModelForSequenceClassification.from_config(config), ScratchLMForSequenceClassification)


@pytest.mark.parametrize("head", [ScratchLMForSequenceClassification, ScratchLMForTokenClassification,
                                  ScratchLMForQuestionAnswering])
def test_task_heads_expose_and_resize_the_shared_embeddings(head, tiny_decoder_kwargs, tiny_model):
    model = tiny_model(head, num_labels=2)
    assert model.get_input_embeddings() is model.model.embed_tokens
    model.resize_token_embeddings(300)
    assert model.model.embed_tokens.weight.shape == (300, tiny_decoder_kwargs["hidden_size"])
    assert model.config.vocab_size == 300
    output = model(torch.tensor([[299, 5]]))
    assert torch.isfinite(output[0]).all()
