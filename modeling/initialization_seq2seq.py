"""A new, randomly initialised ScratchLM encoder–decoder: a preset, field overrides and the ids of its tokenizer."""

from __future__ import annotations

from transformers import GenerationConfig, set_seed

from .configuration_scratchlm_seq2seq import ScratchLMSeq2SeqConfig
from .initialization import check_config_fields, generation_token_ids, special_token_ids
from .modeling_scratchlm_seq2seq import ScratchLMSeq2SeqForConditionalGeneration


def init_seq2seq_model(
    preset: str, overrides: dict | None = None, tokenizer=None, seed: int = 42
) -> ScratchLMSeq2SeqForConditionalGeneration:
    """An encoder–decoder of shape `preset` (with `overrides`), sized and wired for `tokenizer` when one is given.

    The decoder starts from the tokenizer's bos token (`decoder_start_token_id`) and generation stops at its eos.
    """
    values = dict(overrides or {})
    check_config_fields(values, ScratchLMSeq2SeqConfig, "the overrides")
    if tokenizer is not None:
        values.update(special_token_ids(tokenizer), decoder_start_token_id=tokenizer.bos_token_id)
    config = ScratchLMSeq2SeqConfig.from_preset(preset, **values)
    set_seed(seed)
    model = ScratchLMSeq2SeqForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        **generation_token_ids(config),
        decoder_start_token_id=config.decoder_start_token_id,
        # max_length, not max_new_tokens: the latter would override Seq2SeqTrainer's `generation_max_length`.
        max_length=min(128, config.max_position_embeddings),
    )
    return model
