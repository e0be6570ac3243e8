"""Denoising pretraining data for the encoder-decoder: T5 span corruption and BART text infilling.

The two objectives trade text for copying. T5's span corruption (`SpanCorruptionCollator`) targets only the
corrupted spans (about `noise_density` of the text plus one sentinel per span): with the default 15 % noise the
decoder works on roughly a fifth of the tokens BART's does, so a CPU-sized budget sees more text, and its inputs
have an exact length, so packed blocks stay packed. It is what T5 (and T5Gemma) pretrain with, and what a
translation model needs. BART's text infilling (`TextInfillingCollator`) reconstructs the whole block from an input
in which spans were each replaced by one mask token, so the decoder also learns to copy from the encoder, the
skill an extractive-leaning summary (SciTLDR's TL;DRs reuse the abstract's phrases) leans on most.

A block of token ids (a packed pretraining block, `build_pretraining_data`) becomes:

    original  a b c d e f g h i j
    input_ids a b <extra_id_0> e f g <extra_id_1> j <eos>
    labels    <extra_id_0> c d <extra_id_1> h i <eos>

Spans are drawn as T5 draws them (`random_spans_noise_mask`): round(length * noise_density) noise tokens in
round(noise_tokens / mean_noise_span_length) spans, span lengths and the gaps between them random partitions,
the text starting with a kept token. Replacing each sentinel of the input by the tokens after that sentinel in the
labels gives the original back (`reconstruct`).

The sentinels `<extra_id_0>`, `<extra_id_1>`, ... must be special tokens of the tokenizer (never split, dropped
when decoding with `skip_special_tokens=True`): train the tokenizer with them (`train_joint_tokenizer(...,
num_sentinels=100)`, or `train_tokenizer(..., special_tokens=sentinel_tokens(100))`), or add them to an existing
one with `add_sentinel_tokens(tokenizer, 100)` and resize the model's embeddings to `len(tokenizer)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

IGNORE_INDEX = -100


def sentinel_tokens(count: int) -> list[str]:
    return [f"<extra_id_{index}>" for index in range(count)]


def add_sentinel_tokens(tokenizer, count: int = 100) -> int:
    """Add `<extra_id_0>`... `<extra_id_{count-1}>` to the tokenizer as special tokens; returns how many were new.
    Resize the model's embeddings to `len(tokenizer)` afterwards."""
    return tokenizer.add_tokens(sentinel_tokens(count), special_tokens=True)


def sentinel_token_ids(tokenizer, count: int) -> list[int]:
    """The ids of the first `count` sentinels; an error saying how to add them when the tokenizer lacks them."""
    vocab = tokenizer.get_vocab()
    missing = [token for token in sentinel_tokens(count) if token not in vocab]
    if missing:
        raise ValueError(
            f"the tokenizer has no sentinel token {missing[0]!r} ({len(missing)} of the {count} span-corruption "
            "sentinels are missing); train it with train_joint_tokenizer(..., num_sentinels=N) or add them with "
            "scratchlm.training.data.denoising.add_sentinel_tokens(tokenizer, N) and resize the model's embeddings"
        )
    return [vocab[token] for token in sentinel_tokens(count)]


def noise_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(noise tokens, noise spans) for a block of `length` tokens, as T5 computes them."""
    num_noise = int(round(length * noise_density))
    num_noise = min(max(num_noise, 1), length - 1)
    num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)
    return num_noise, num_spans


def random_spans_noise_mask(length: int, noise_density: float, mean_noise_span_length: float,
                            rng: np.random.Generator) -> np.ndarray:
    """A boolean mask of `length` with the noise tokens (T5's `random_spans_noise_mask`)."""
    num_noise, num_spans = noise_counts(length, noise_density, mean_noise_span_length)
    num_nonnoise = length - num_noise

    def random_partition(items: int, parts: int) -> np.ndarray:
        """`items` split into `parts` non-empty runs, uniformly at random."""
        cuts = np.zeros(items - 1, dtype=np.int64)
        cuts[rng.permutation(items - 1)[:parts - 1]] = 1
        ids = np.concatenate([[0], np.cumsum(cuts)])
        return np.bincount(ids, minlength=parts)

    noise_lengths = random_partition(num_noise, num_spans)
    nonnoise_lengths = random_partition(num_nonnoise, num_spans)
    runs = np.stack([nonnoise_lengths, noise_lengths], axis=1).reshape(-1)
    return np.repeat(np.tile([False, True], num_spans), runs)


def corrupt_spans(ids: Sequence[int], mask: np.ndarray, sentinel_ids: Sequence[int],
                  eos_token_id: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one block: each noise span replaced by the next sentinel in the input, and the
    sentinels each followed by their span in the labels; both end with eos."""
    inputs: list[int] = []
    labels: list[int] = []
    span = -1
    for index, (token, noise) in enumerate(zip(ids, mask)):
        if noise:
            if index == 0 or not mask[index - 1]:
                span += 1
                if span >= len(sentinel_ids):
                    raise ValueError(f"a block needs more than the {len(sentinel_ids)} sentinel tokens available; "
                                     "add more sentinels or use shorter blocks / a longer mean span length")
                inputs.append(sentinel_ids[span])
                labels.append(sentinel_ids[span])
            labels.append(token)
        else:
            inputs.append(token)
    return [*inputs, eos_token_id], [*labels, eos_token_id]


def reconstruct(input_ids: Sequence[int], labels: Sequence[int], sentinel_ids: Sequence[int],
                eos_token_id: int) -> list[int]:
    """The original block from a corrupted pair: every sentinel of the input replaced by its span in the labels."""
    sentinels = set(sentinel_ids)
    spans: dict[int, list[int]] = {}
    current = None
    for token in labels:
        if token == eos_token_id:
            break
        if token in sentinels:
            current = spans.setdefault(token, [])
        elif current is not None:
            current.append(token)
    original: list[int] = []
    for token in input_ids:
        if token == eos_token_id:
            break
        original.extend(spans.get(token, []) if token in sentinels else [token])
    return original


def input_and_target_lengths(block_size: int, noise_density: float = 0.15,
                             mean_noise_span_length: float = 3.0) -> tuple[int, int]:
    """The lengths of the input ids and the labels a block of `block_size` tokens corrupts into (eos included);
    T5 packs raw blocks so that the input comes out at the encoder's length."""
    num_noise, num_spans = noise_counts(block_size, noise_density, mean_noise_span_length)
    return block_size - num_noise + num_spans + 1, num_noise + num_spans + 1


class DenoisingCollator:
    """What both objectives share: a collator from packed blocks (`{"input_ids": [...]}`) to padded `input_ids`,
    `attention_mask` and `labels` tensors (labels padded with -100), corrupting each block afresh each time it is
    seen (every epoch differs, as in T5 and BART); `seed` makes the sequence of draws reproducible. Subclasses
    define `corrupt_block`. The model turns `labels` into `decoder_input_ids` itself (shifted right from
    `decoder_start_token_id`)."""

    objective = "denoising"

    def __init__(self, tokenizer, seed: int):
        if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError(f"{self.objective} needs a tokenizer with an eos and a pad token")
        self.eos_token_id = tokenizer.eos_token_id
        self.pad_token_id = tokenizer.pad_token_id
        self.rng = np.random.default_rng(seed)

    def corrupt_block(self, ids: list[int]) -> tuple[list[int], list[int]]:
        raise NotImplementedError

    def corrupt(self, ids: Sequence[int]) -> tuple[list[int], list[int]]:
        """(input ids, labels) of one block."""
        ids = list(ids)
        if len(ids) < 2:
            raise ValueError(f"{self.objective} needs blocks of at least 2 tokens, got {len(ids)}")
        return self.corrupt_block(ids)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return pad_pairs([self.corrupt(feature["input_ids"]) for feature in features], self.pad_token_id)


class SpanCorruptionCollator(DenoisingCollator):
    """T5's span corruption of packed blocks: `noise_density` of the tokens masked in spans of mean length
    `mean_noise_span_length`, each span a sentinel in the input and the sentinel followed by the span in the labels.
    """

    objective = "span corruption"

    def __init__(self, tokenizer, *, noise_density: float = 0.15, mean_noise_span_length: float = 3.0,
                 num_sentinels: int = 100, seed: int = 0):
        if not 0 < noise_density < 1:
            raise ValueError(f"noise_density must be between 0 and 1 (exclusive), got {noise_density}")
        if mean_noise_span_length < 1:
            raise ValueError(f"mean_noise_span_length must be at least 1, got {mean_noise_span_length}")
        super().__init__(tokenizer, seed)
        self.noise_density = noise_density
        self.mean_noise_span_length = mean_noise_span_length
        self.sentinel_ids = sentinel_token_ids(tokenizer, num_sentinels)

    def corrupt_block(self, ids: list[int]) -> tuple[list[int], list[int]]:
        mask = random_spans_noise_mask(len(ids), self.noise_density, self.mean_noise_span_length, self.rng)
        return corrupt_spans(ids, mask, self.sentinel_ids, self.eos_token_id)


def pad_pairs(pairs: list[tuple[list[int], list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """A batch from (input ids, labels) pairs: inputs padded with `pad_token_id`, labels with -100."""
    input_width = max(len(inputs) for inputs, _ in pairs)
    label_width = max(len(labels) for _, labels in pairs)
    input_ids = torch.full((len(pairs), input_width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(pairs), input_width), dtype=torch.long)
    labels = torch.full((len(pairs), label_width), IGNORE_INDEX, dtype=torch.long)
    for row, (inputs, targets) in enumerate(pairs):
        input_ids[row, :len(inputs)] = torch.tensor(inputs)
        attention_mask[row, :len(inputs)] = 1
        labels[row, :len(targets)] = torch.tensor(targets)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def infilling_mask(length: int, mask_ratio: float, poisson_lambda: float, rng: np.random.Generator) -> np.ndarray:
    """BART's span mask over `length` tokens: spans with Poisson(`poisson_lambda`) lengths (at least one token) at
    random starts until round(length * mask_ratio) tokens are masked; the first token is always kept."""
    mask = np.zeros(length, dtype=bool)
    budget = min(max(int(round(length * mask_ratio)), 1), length - 1)
    masked = 0
    while masked < budget:
        span = min(max(int(rng.poisson(poisson_lambda)), 1), budget - masked)
        start = int(rng.integers(1, length - span + 1))
        masked += int((~mask[start:start + span]).sum())
        mask[start:start + span] = True
    return mask


def infill(ids: Sequence[int], mask: np.ndarray, mask_token_id: int, eos_token_id: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one block: each run of masked tokens replaced by one mask token in the input; the
    labels are the whole block. Both end with eos."""
    inputs = [mask_token_id if noise else token for index, (token, noise) in enumerate(zip(ids, mask))
              if not (noise and index > 0 and mask[index - 1])]
    return [*inputs, eos_token_id], [*ids, eos_token_id]


class TextInfillingCollator(DenoisingCollator):
    """BART's text infilling of packed blocks: the labels are the block itself, the input the block with
    `mask_ratio` of its tokens masked in spans of Poisson(`poisson_lambda`) length, each span one mask token (BART:
    30 %, lambda 3). The mask token is the tokenizer's `mask_token` where it has one, else the first sentinel
    `<extra_id_0>` (which a seq2seq tokenizer of this package has).

    BART also inserts mask tokens for zero-length spans; here every span masks at least one token, so an input is
    never longer than its block and a block of the decoder's length fits the encoder too.
    """

    objective = "text infilling"

    def __init__(self, tokenizer, *, mask_ratio: float = 0.3, poisson_lambda: float = 3.0, seed: int = 0):
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must be between 0 and 1 (exclusive), got {mask_ratio}")
        if poisson_lambda <= 0:
            raise ValueError(f"poisson_lambda must be positive, got {poisson_lambda}")
        super().__init__(tokenizer, seed)
        self.mask_ratio = mask_ratio
        self.poisson_lambda = poisson_lambda
        self.mask_token_id = (tokenizer.mask_token_id if tokenizer.mask_token_id is not None
                              else sentinel_token_ids(tokenizer, 1)[0])

    def corrupt_block(self, ids: list[int]) -> tuple[list[int], list[int]]:
        mask = infilling_mask(len(ids), self.mask_ratio, self.poisson_lambda, self.rng)
        return infill(ids, mask, self.mask_token_id, self.eos_token_id)


__all__ = [
    "DenoisingCollator",
    "SpanCorruptionCollator",
    "TextInfillingCollator",
    "add_sentinel_tokens",
    "corrupt_spans",
    "infill",
    "infilling_mask",
    "input_and_target_lengths",
    "noise_counts",
    "random_spans_noise_mask",
    "reconstruct",
    "sentinel_token_ids",
    "sentinel_tokens",
]
