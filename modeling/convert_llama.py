"""Conversion between transformers' Llama architecture and ScratchLM.

ScratchLM keeps Llama's parameter names (`model.layers.N.self_attn.q_proj.weight`, ...), so a conversion maps
the configuration and checks every tensor; weights are copied unchanged. Not remote code: it may import Llama.
"""

from __future__ import annotations

import logging
from pathlib import Path

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


def convert_model(source, target_class, target_config):
    """Build `target_class(target_config)` holding exactly the tensors of `source`."""
    target = target_class(target_config).to(next(source.parameters()).dtype)
    source_state = source.state_dict()
    missing, unexpected = target.load_state_dict(source_state, strict=False)
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
