"""Train a `ScratchLMTokenizer` (byte-level BPE) on documents with the `tokenizers` library.

The trainer takes texts; reading them from files or data sets is the corpus stage's job (`scratchlm.corpus.read_corpus`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence

from tokenizers import AddedToken, Regex, Tokenizer, pre_tokenizers
from tokenizers.trainers import BpeTrainer

from .tokenization_scratchlm import (
    BOS_TOKEN,
    CHAT_START_TOKEN,
    DEFAULT_PRETOKENIZER,
    EOS_TOKEN,
    PAD_TOKEN,
    ScratchLMTokenizer,
    build_backend,
    build_pre_tokenizer,
    pretokenizer_regex,
)

NUM_BYTES = 256
# Documents go to the Rust trainer in lists: fewer Python -> Rust calls, and the trainer pre-tokenizes a
# list in parallel.
_TRAIN_BATCH_SIZE = 1000
# The BPE trainer rewrites a whole word for every merge inside it, so one long unbroken run (megabytes of letters
# without a space) makes training time grow with the square of its length. While training, pre-tokens longer than
# this are cut into pieces of at most this many characters; the saved tokenizer keeps the plain named split, so
# llama.cpp still recognises it. Merges never get this long in real text, so the vocabulary does not change.
MAX_PRETOKEN_CHARS = 256


def _unique(tokens: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(token for token in tokens if token is not None))


def _check_tokens(name: str, tokens: Sequence[str]) -> None:
    for token in tokens:
        if not isinstance(token, str) or not token:
            raise ValueError(f"{name} must be non-empty strings, got {token!r}")


def _batched(documents: Iterator[str], stats: dict[str, int]) -> Iterator[list[str]]:
    batch: list[str] = []
    for document in documents:
        if not isinstance(document, str):
            raise TypeError(f"the corpus must yield strings, got {type(document).__name__}")
        if not document:
            continue
        stats["documents"] += 1
        stats["bytes"] += len(document.encode("utf-8", "surrogatepass"))
        batch.append(document)
        if len(batch) == _TRAIN_BATCH_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


def train_tokenizer(
    documents: Iterable[str],
    *,
    vocab_size: int = 8192,
    min_frequency: int = 2,
    bos_token: str | None = BOS_TOKEN,
    eos_token: str | None = EOS_TOKEN,
    pad_token: str | None = PAD_TOKEN,
    special_tokens: Sequence[str] = (),
    extra_tokens: Sequence[str] = (),
    pretokenizer: str = DEFAULT_PRETOKENIZER,
    show_progress: bool = True,
    stats: dict | None = None,
) -> ScratchLMTokenizer:
    """Train a byte-level BPE `ScratchLMTokenizer`, ready for `save_pretrained`.

    Args:
        documents: an iterable of texts, one document per string (a list, a generator, or
            `scratchlm.corpus.read_corpus(...)` for files and data sets); read once, in order.
        vocab_size: size of the whole vocabulary: 256 bytes, the special and extra tokens, and the merges.
        min_frequency: a pair is merged only if it occurs at least this often.
        bos_token, eos_token, pad_token: the named special tokens (`None` leaves one out).
        special_tokens: more special tokens (never split, dropped by `decode(skip_special_tokens=True)`).
            `<|im_start|>`, the chat turn marker, is always added.
        extra_tokens: user tokens that are never split but decode as text (domain words, markup).
        pretokenizer: name of the pre-tokenizer (see `PRETOKENIZERS`): "qwen2", the default, is the one
            llama.cpp knows by name; "scratchlm-v1" is the split of earlier releases.
        show_progress: show the trainer's progress bars.
        stats: if given, filled with the number of `documents` and `bytes` read.

    Special tokens take the first ids (`<|bos|>` 0, `<|eos|>` 1, `<|pad|>` 2, `<|im_start|>` 3 by default),
    then the extra tokens, then the 256 bytes and the merges.
    """
    special = _unique([bos_token, eos_token, pad_token, CHAT_START_TOKEN, *special_tokens])
    extra = [token for token in _unique(extra_tokens) if token not in special]
    _check_tokens("special tokens", special)
    _check_tokens("extra tokens", extra)
    smallest = NUM_BYTES + len(special) + len(extra)
    if not isinstance(vocab_size, int) or vocab_size < smallest:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: the vocabulary needs the {NUM_BYTES} bytes plus "
            f"{len(special)} special and {len(extra)} extra tokens, at least {smallest}"
        )
    if not isinstance(min_frequency, int) or min_frequency < 1:
        raise ValueError(f"min_frequency must be a positive integer, got {min_frequency!r}")
    pretokenizer_regex(pretokenizer)

    if isinstance(documents, (str, bytes, os.PathLike)):
        raise TypeError(
            f"train_tokenizer takes documents (an iterable of texts), got a {type(documents).__name__}: read files "
            "with scratchlm.corpus.read_corpus, or pass a single text as [text]"
        )

    stats = {} if stats is None else stats
    stats.update(documents=0, bytes=0)
    batches = _batched(iter(documents), stats)
    # Read the first batch before training starts so an empty corpus fails here with a clear message.
    first = next(batches, None)
    if first is None:
        raise ValueError("the corpus is empty: it holds no text to train on")

    def all_batches():
        yield first
        yield from batches

    backend = build_backend(pretokenizer=pretokenizer)
    backend.pre_tokenizer = _training_pre_tokenizer(pretokenizer)
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[AddedToken(token, special=True, normalized=False) for token in special + extra],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    backend.train_from_iterator(all_batches(), trainer=trainer)
    backend.pre_tokenizer = build_pre_tokenizer(pretokenizer)
    if extra:
        backend = _unmark_special(backend, set(extra))

    named = {"bos_token": bos_token, "eos_token": eos_token, "pad_token": pad_token}
    tokenizer = ScratchLMTokenizer(
        tokenizer_object=backend,
        **named,
        extra_special_tokens=[token for token in special if token not in named.values()],
    )
    return tokenizer


def _training_pre_tokenizer(pretokenizer: str) -> pre_tokenizers.PreTokenizer:
    """The named split with over-long pieces cut to `MAX_PRETOKEN_CHARS`, then the byte-level mapping."""
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pretokenizer_regex(pretokenizer)), behavior="isolated"),
            pre_tokenizers.Split(Regex(rf"[\s\S]{{1,{MAX_PRETOKEN_CHARS}}}"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )


def _unmark_special(backend: Tokenizer, tokens: set[str]) -> Tokenizer:
    """The trainer registers all its tokens as special; extra tokens must decode as text."""
    state = json.loads(backend.to_str())
    for added in state["added_tokens"]:
        if added["content"] in tokens:
            added["special"] = False
    return Tokenizer.from_str(json.dumps(state))
