"""Preference pairs (DPO): tables of `prompt`/`chosen`/`rejected` -> checked pairs in TRL's preference format.

Accepted rows (read by `tables`: jsonl/json/parquet/csv files or a `datasets` id):
- `prompt`, `chosen`, `rejected` as strings (TRL's "standard" format);
- the same with chat messages (`[{"role", "content"}, ...]`): the prompt the conversation so far, chosen and
  rejected the competing assistant turns; a `messages` column may stand for `prompt`;
- `chosen` and `rejected` as whole conversations without a prompt column: the prompt is the turns both share
  (TRL's `extract_prompt`).

With a chat template (every ScratchLM tokenizer has one) every pair is made conversational: a plain prompt becomes
a user turn and a plain reply an assistant turn, so that TRL renders them with the template the SFT model learnt.
`--system_prompt` goes before every prompt that has no system turn. Rows with a missing or empty prompt, chosen
or rejected reply, and rows whose chosen and rejected replies are identical, are skipped (counted); pairs whose
prompt alone fills `max_length` are skipped and longer pairs counted (TRL cuts their end). No pair left is an error.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from datasets import Dataset
from trl.data_utils import extract_prompt

from .instructions import CHAT_ROLES
from .tables import data_columns, is_empty, row_origins

logger = logging.getLogger(__name__)


@dataclass
class PreferenceReport:
    """What preprocessing did to one split of preference pairs."""

    split: str
    rows: int = 0
    dropped_missing: int = 0  # a prompt, chosen or rejected reply missing or empty
    dropped_identical: int = 0  # chosen and rejected replies the same
    dropped_long_prompt: int = 0  # the prompt alone fills max_length: nothing of a reply would be left
    truncated: int = 0  # prompt + reply longer than max_length (the reply's end is cut)
    pairs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def warn(self, max_length: int) -> None:
        for count, why in ((self.dropped_missing, "a missing or empty prompt, chosen or rejected reply"),
                           (self.dropped_identical, "identical chosen and rejected replies"),
                           (self.dropped_long_prompt, f"a prompt of {max_length} tokens or more")):
            if count:
                logger.warning("%s: skipped %d of %d rows with %s", self.split, count, self.rows, why)
        if self.truncated:
            logger.warning("%s: %d of %d pairs are longer than %d tokens (their replies are cut)", self.split,
                           self.truncated, self.pairs, max_length)


@dataclass
class PreferenceData:
    train: Dataset  # prompt / chosen / rejected, conversational (or plain strings without a chat template)
    validation: Dataset | None
    test: Dataset | None
    max_length: int
    reports: dict[str, PreferenceReport] = field(default_factory=dict)
    # Held-out prompts with their chosen reply, for sample generations.
    sample_chats: list[list[dict]] = field(default_factory=list)


def _messages(value: Any, role: str, origin: str, column: str) -> list[dict] | None:
    """A string as one `role` turn, a message list checked and copied; None for a missing value."""
    if value is None or isinstance(value, str):
        return None if is_empty(value) else [{"role": role, "content": value}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        raise ValueError(f"{origin}: {column!r} must be a string or a list of {{'role': ..., 'content': ...}} "
                         f"messages, got {type(value).__name__}")
    for message in value:
        if message["role"] not in CHAT_ROLES:
            raise ValueError(f"{origin}: unsupported chat role {message['role']!r} in {column!r} "
                             f"(use {', '.join(CHAT_ROLES)})")
    return [{"role": m["role"], "content": m["content"] or ""} for m in value] or None


def _has_text(messages: list[dict] | None, role: str) -> bool:
    return bool(messages) and any(m["role"] == role and not is_empty(m["content"]) for m in messages)


def _row_pair(row: dict, origin: str, system_prompt: str | None) -> tuple[dict | None, str | None]:
    """One row as a conversational pair, or (None, why it is skipped)."""
    chosen, rejected = row.get("chosen"), row.get("rejected")
    prompt = row.get("prompt", row.get("messages"))
    if prompt is None and "prompt" not in row and "messages" not in row and chosen is not None \
            and rejected is not None and isinstance(chosen, type(rejected)):
        shared = extract_prompt({"chosen": chosen, "rejected": rejected})  # the prompt is what both begin with
        prompt, chosen, rejected = shared["prompt"], shared["chosen"], shared["rejected"]
    pair = {"prompt": _messages(prompt, "user", origin, "prompt"),
            "chosen": _messages(chosen, "assistant", origin, "chosen"),
            "rejected": _messages(rejected, "assistant", origin, "rejected")}
    if not (_has_text(pair["prompt"], "user") and _has_text(pair["chosen"], "assistant")
            and _has_text(pair["rejected"], "assistant")):
        return None, "missing"
    if [m["content"].strip() for m in pair["chosen"]] == [m["content"].strip() for m in pair["rejected"]]:
        return None, "identical"
    if system_prompt and pair["prompt"][0]["role"] != "system":
        pair["prompt"] = [{"role": "system", "content": system_prompt}, *pair["prompt"]]
    return pair, None


def _as_plain_text(pair: dict, origin: str) -> dict:
    """A pair of single turns as TRL's standard (string) format, for a tokenizer without a chat template."""
    if any(len(pair[key]) != 1 for key in ("prompt", "chosen", "rejected")):
        raise ValueError(f"{origin}: a conversation needs the tokenizer's chat template, and this tokenizer has "
                         "none (give plain prompt/chosen/rejected strings, or a tokenizer with a chat template)")
    return {key: pair[key][0]["content"] for key in ("prompt", "chosen", "rejected")}


def _token_lengths(pairs: list[dict], tokenizer, conversational: bool) -> tuple[list[int], list[int]]:
    """(prompt tokens, longest prompt + reply tokens) of every pair, as TRL tokenizes them."""
    if conversational:
        prompts = tokenizer.apply_chat_template([p["prompt"] for p in pairs], add_generation_prompt=True,
                                                tokenize=True, return_dict=True)["input_ids"]
        full = [tokenizer.apply_chat_template([p["prompt"] + p[key] for p in pairs], tokenize=True,
                                              return_dict=True)["input_ids"] for key in ("chosen", "rejected")]
    else:
        prompts = tokenizer([p["prompt"] for p in pairs])["input_ids"]
        full = [tokenizer([p["prompt"] + p[key] + tokenizer.eos_token for p in pairs])["input_ids"]
                for key in ("chosen", "rejected")]
    return [len(ids) for ids in prompts], [max(len(c), len(r)) for c, r in zip(*full)]


def preference_pairs(table: Dataset, tokenizer, *, split: str, max_length: int,
                     system_prompt: str | None = None) -> tuple[Dataset, PreferenceReport]:
    """The usable pairs of one table, counted in a report; an error when none is left."""
    columns = data_columns(table)
    if not {"chosen", "rejected"} <= set(columns):
        raise ValueError(f"preference data needs 'chosen' and 'rejected' columns (and 'prompt', or a chat "
                         f"'messages' column; without one the prompt is the turns both replies share); the {split} "
                         f"data has: {', '.join(columns)}")
    report = PreferenceReport(split=split, rows=len(table))
    conversational = bool(getattr(tokenizer, "chat_template", None))
    pairs = []
    for origin, row in zip(row_origins(table, split), table.select_columns(columns)):
        pair, skipped = _row_pair(row, origin, system_prompt)
        if skipped:
            setattr(report, f"dropped_{skipped}", getattr(report, f"dropped_{skipped}") + 1)
            continue
        pairs.append(pair if conversational else _as_plain_text(pair, origin))
    if pairs:
        prompt_lengths, pair_lengths = _token_lengths(pairs, tokenizer, conversational)
        kept = [p for p, n in zip(pairs, prompt_lengths) if n < max_length]
        report.dropped_long_prompt = len(pairs) - len(kept)
        report.truncated = sum(1 for n, total in zip(prompt_lengths, pair_lengths) if n < max_length < total)
        pairs = kept
    report.pairs = len(pairs)
    if not pairs:
        raise ValueError(f"no usable {split} preference pair in {report.rows} rows: {report.dropped_missing} with "
                         f"a missing or empty prompt, chosen or rejected reply, {report.dropped_identical} with "
                         f"identical replies, {report.dropped_long_prompt} with a prompt of {max_length} tokens or "
                         "more")
    report.warn(max_length)
    return Dataset.from_list(pairs), report


def build_preference_data(train: Dataset, validation: Dataset | None, test: Dataset | None, tokenizer, *,
                          max_length: int, system_prompt: str | None = None) -> PreferenceData:
    splits, reports = {}, {}
    for split, table in (("train", train), ("validation", validation), ("test", test)):
        if table is not None:
            splits[split], reports[split] = preference_pairs(table, tokenizer, split=split, max_length=max_length,
                                                             system_prompt=system_prompt)
    held_out = splits.get("validation") or splits.get("test")
    sample_chats = ([pair["prompt"] + pair["chosen"][-1:] for pair in held_out]
                    if held_out is not None and isinstance(held_out[0]["prompt"], list) else [])
    return PreferenceData(train=splits["train"], validation=splits.get("validation"), test=splits.get("test"),
                          max_length=max_length, reports=reports, sample_chats=sample_chats)
