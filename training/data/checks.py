"""Checks of lengths and tokenizers against a model, shared by pretraining and fine-tuning data."""

from __future__ import annotations


def check_length(flag: str, value: int, model_config) -> None:
    """Raise a `ValueError` naming `--flag` when `value` is not a positive integer or exceeds the model's context."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{flag} must be a positive integer, got {value!r}")
    context = getattr(model_config, "max_position_embeddings", None)
    if context is not None and value > context:
        raise ValueError(
            f"{flag}={value} is larger than the model's context length "
            f"(max_position_embeddings={context}); use --{flag} {context} or less"
        )


def check_block_size(block_size: int, model_config) -> None:
    """Pretraining's packed block: a positive integer within the model's context."""
    check_length("block_size", block_size, model_config)


def check_max_length(max_length: int, model_config) -> None:
    """Fine-tuning's longest example: a positive integer within the model's context."""
    check_length("max_length", max_length, model_config)


def check_tokenizer_fits(tokenizer, model_config) -> None:
    """Raise a `ValueError` when the tokenizer has ids the model's embedding table does not."""
    if len(tokenizer) > model_config.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary holds only "
            f"vocab_size={model_config.vocab_size}; use a model with vocab_size >= {len(tokenizer)} "
            "or a smaller tokenizer"
        )


def eos_token_id(tokenizer) -> int:
    """The tokenizer's eos id, which ends every document and example; an error when it has none."""
    if tokenizer.eos_token_id is None:
        raise ValueError(
            f"the tokenizer ({type(tokenizer).__name__}) has no eos token, which separates documents in "
            "packed blocks; set tokenizer.eos_token"
        )
    return tokenizer.eos_token_id
