"""Tokenizer training and the ScratchLM tokenizer (`scratchlm.tokenization`)."""

from .corpus import read_corpus, resolve_files
from .tokenization_scratchlm import ScratchLMTokenizer
from .train import train_tokenizer

# Tokenizers saved from this package carry their code and an `auto_map`, so they load anywhere with
# `trust_remote_code=True`.
ScratchLMTokenizer.register_for_auto_class("AutoTokenizer")

__all__ = ["ScratchLMTokenizer", "read_corpus", "resolve_files", "train_tokenizer"]
