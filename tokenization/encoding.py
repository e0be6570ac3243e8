"""The eos rule of the encoder-decoder: every source and target ends with the tokenizer's eos token, so that
generation learns to stop. Training (`scratchlm.training.data.seq2seq`) and generation (`scratchlm-generate`) encode
through this one function, so a model reads at inference exactly what it was trained on."""

from __future__ import annotations

from collections.abc import Sequence


def encode_with_eos(texts: Sequence[str], tokenizer, max_length: int) -> tuple[list[list[int]], int]:
    """Token ids of each text with the tokenizer's special tokens, ending in eos, cut to `max_length` (eos kept
    last); also how many were cut."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError(f"the tokenizer ({type(tokenizer).__name__}) has no eos token, which ends every "
                         "source and target; set tokenizer.eos_token")
    if max_length < 2:
        raise ValueError(f"the maximum source/target length must be at least 2 tokens, got {max_length}")
    encoded, truncated = [], 0
    for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"]:
        if not ids or ids[-1] != eos:
            ids = [*ids, eos]
        if len(ids) > max_length:
            truncated += 1
            ids = [*ids[:max_length - 1], eos]
        encoded.append(ids)
    return encoded, truncated
