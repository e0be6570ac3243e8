"""Conversion between transformers' Llama architecture and ScratchLM.

ScratchLM computes what Llama computes, with two fused projections: `self_attn.qkv_proj` holds Llama's
`q_proj`, `k_proj` and `v_proj` stacked along the output dimension, and `mlp.gate_up_proj` holds `gate_proj`
and `up_proj`. Every other tensor keeps its name. Not remote code: this file may import Llama.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from .configuration_scratchlm import ScratchLMConfig
from .modeling_scratchlm import ScratchLMForCausalLM

logger = logging.getLogger(__name__)

# Fields with the same name and meaning in both configurations.
SHARED_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps",
    "attention_dropout", "initializer_range", "tie_word_embeddings", "attention_bias", "mlp_bias", "use_cache",
    "pad_token_id", "bos_token_id", "eos_token_id",
)


def llama_config_to_scratchlm(config: LlamaConfig) -> ScratchLMConfig:
    if getattr(config, "pretraining_tp", 1) not in (None, 1):
        logger.info("pretraining_tp=%s is a numerics setting of old checkpoints; ScratchLM computes exactly", config.pretraining_tp)
    values = {name: getattr(config, name) for name in SHARED_FIELDS}
    values["rope_parameters"] = dict(config.rope_parameters)
    return ScratchLMConfig(**values)


def scratchlm_config_to_llama(config: ScratchLMConfig) -> LlamaConfig:
    if config.use_qk_norm:
        raise ValueError("this ScratchLM model uses QK-norm (use_qk_norm=True), which Llama has no place for")
    if config.hidden_dropout:
        logger.warning("Llama has no residual dropout: hidden_dropout=%s is dropped", config.hidden_dropout)
    values = {name: getattr(config, name) for name in SHARED_FIELDS}
    values["rope_parameters"] = dict(config.rope_parameters)
    return LlamaConfig(**values)


FUSED = {"self_attn.qkv_proj": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
         "mlp.gate_up_proj": ("mlp.gate_proj", "mlp.up_proj")}


def _split_sizes(config, fused: str) -> list[int]:
    if fused == "mlp.gate_up_proj":
        return [config.intermediate_size] * 2
    return [config.num_attention_heads * config.head_dim] + [config.num_key_value_heads * config.head_dim] * 2


def llama_state_dict_to_scratchlm(state: dict, config) -> dict:
    state = dict(state)
    for key in [k for k in state if ".self_attn.q_proj." in k or ".mlp.gate_proj." in k]:
        part = "self_attn.q_proj" if ".self_attn.q_proj." in key else "mlp.gate_proj"
        fused = next(name for name, parts in FUSED.items() if parts[0] == part)
        keys = [key.replace(part, piece) for piece in FUSED[fused]]
        state[key.replace(part, fused)] = torch.cat([state.pop(k) for k in keys], dim=0)
    return state


def scratchlm_state_dict_to_llama(state: dict, config) -> dict:
    state = dict(state)
    for key in [k for k in state if ".self_attn.qkv_proj." in k or ".mlp.gate_up_proj." in k]:
        fused = "self_attn.qkv_proj" if ".self_attn.qkv_proj." in key else "mlp.gate_up_proj"
        pieces = state.pop(key).split(_split_sizes(config, fused), dim=0)
        for piece_name, tensor in zip(FUSED[fused], pieces):
            state[key.replace(fused, piece_name)] = tensor.clone()
    return state


def convert_model(source, target_class, target_config):
    """Build `target_class(target_config)` holding exactly the tensors of `source`."""
    target = target_class(target_config).to(next(source.parameters()).dtype)
    to_target = scratchlm_state_dict_to_llama if target_config.model_type == "llama" else llama_state_dict_to_scratchlm
    missing, unexpected = target.load_state_dict(to_target(source.state_dict(), target_config), strict=False)
    # The LM head may be absent from the state dict of a tied model; it is tied again below.
    missing = [key for key in missing if not (key == "lm_head.weight" and target_config.tie_word_embeddings)]
    if missing or unexpected:
        raise ValueError(f"checkpoint does not match the architecture: missing {missing}, unexpected {unexpected}")
    target.tie_weights()
    target.generation_config = source.generation_config
    return target


def _load_tokenizer(directory: Path):
    try:
        return AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError):
        logger.warning("no tokenizer in %s: the converted directory holds the model alone", directory)
        return None


def _check_source(directory: Path, expected_model_type: str) -> None:
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{directory} holds no config.json: not a transformers model directory")
    import json

    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type != expected_model_type:
        raise ValueError(f"{directory} holds a {model_type!r} model, expected {expected_model_type!r}")


def convert_llama_directory(source: str | Path, output: str | Path) -> ScratchLMForCausalLM:
    """Convert a Llama checkpoint directory (weights + tokenizer) into a ScratchLM directory."""
    source, output = Path(source), Path(output)
    _check_source(source, "llama")
    llama = LlamaForCausalLM.from_pretrained(source)
    model = convert_model(llama, ScratchLMForCausalLM, llama_config_to_scratchlm(llama.config))
    model.save_pretrained(output)
    if (tokenizer := _load_tokenizer(source)) is not None:
        tokenizer.save_pretrained(output)
    return model


def convert_scratchlm_directory_to_llama(source: str | Path, output: str | Path) -> LlamaForCausalLM:
    """Convert a ScratchLM directory back into a stock Llama directory (no remote code needed)."""
    source, output = Path(source), Path(output)
    _check_source(source, ScratchLMConfig.model_type)
    scratch = ScratchLMForCausalLM.from_pretrained(source)
    model = convert_model(scratch, LlamaForCausalLM, scratchlm_config_to_llama(scratch.config))
    model.save_pretrained(output)
    if (tokenizer := _load_tokenizer(source)) is not None:
        tokenizer.save_pretrained(output)
    return model
