"""What a pretraining run's corpus is tokenized with, decided once for `scratchlm-pretrain` and `scratchlm-prepare`:
the denoising objective an encoder-decoder is pretrained with (its sentinels are tokens of the tokenizer, so they
decide the token store too) and the tokenizer a run is given."""

from __future__ import annotations

import logging

from transformers import AutoConfig, AutoTokenizer

from scratchlm.modeling import ScratchLMSeq2SeqConfig

from .arguments import ModelArguments, PretrainingDataArguments
from .data.denoising import add_sentinel_tokens

logger = logging.getLogger(__name__)
DENOISING_OBJECTIVES = ("span_corruption", "text_infilling")
NUM_SENTINELS = 100


def denoising_objective(model_args: ModelArguments, data_args: PretrainingDataArguments) -> str | None:
    """The denoising objective this run pretrains an encoder-decoder with, or None for a causal LM; an objective
    the model cannot take is an error."""
    denoising = data_args.objective if data_args.objective in DENOISING_OBJECTIVES else None
    if not model_args.model_name_or_path:
        return denoising
    model_type = AutoConfig.from_pretrained(model_args.model_name_or_path,
                                            trust_remote_code=model_args.trust_remote_code).model_type
    seq2seq = model_type == ScratchLMSeq2SeqConfig.model_type
    if data_args.objective == "causal" and seq2seq:
        raise ValueError(f"{model_args.model_name_or_path} is an encoder-decoder: it pretrains with --objective "
                         "span_corruption or text_infilling, not causal")
    if denoising and not seq2seq:
        raise ValueError(f"--objective {denoising} needs an encoder-decoder, but {model_args.model_name_or_path} "
                         f"holds a {model_type!r} model")
    return (denoising or "span_corruption") if seq2seq else None


def load_given_tokenizer(model_args: ModelArguments, num_sentinels: int = 0):
    """The tokenizer of `--tokenizer_name_or_path` (else of `--model_name_or_path`), with `num_sentinels`
    span-corruption sentinels added when it lacks them; None when neither flag names one."""
    source = model_args.tokenizer_name_or_path or model_args.model_name_or_path
    if not source:
        return None
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=model_args.trust_remote_code)
    if num_sentinels and (added := add_sentinel_tokens(tokenizer, num_sentinels)):
        logger.info("added %d span-corruption sentinel tokens to the tokenizer", added)
    return tokenizer
