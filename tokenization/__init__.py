"""Tokenizer training and the ScratchLM tokenizer (`scratchlm.tokenization`)."""

from .readable import character_coverage, decode_whole_characters, readable_tokens
from .tokenization_scratchlm import DEFAULT_PRETOKENIZER, PRETOKENIZERS, ScratchLMTokenizer
from .train import train_tokenizer

# Tokenizers saved from this package carry their code and an `auto_map`, so they load anywhere with
# `trust_remote_code=True`.
ScratchLMTokenizer.register_for_auto_class("AutoTokenizer")

__all__ = [
    "DEFAULT_PRETOKENIZER",
    "PRETOKENIZERS",
    "ScratchLMTokenizer",
    "character_coverage",
    "decode_whole_characters",
    "readable_tokens",
    "train_tokenizer",
]
