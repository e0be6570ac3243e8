"""Instruction data (SFT): Alpaca or chat tables -> chats -> token ids with labels on the assistant replies only,
optionally packed."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset

from .tables import FinetuneReport, is_empty, row_origins

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of tokens the loss skips (PyTorch's cross-entropy default)
CHAT_ROLES = ("system", "user", "assistant")


def instruction_format(columns: list[str]) -> str:
    """"chat" for a `messages` column, "alpaca" for `instruction`/`output` (optional `input`); else an error."""
    if "messages" in columns:
        return "chat"
    if {"instruction", "output"} <= set(columns):
        return "alpaca"
    raise ValueError(
        f"instruction data needs a 'messages' column (chat format: a list of {{'role', 'content'}}) or "
        f"'instruction' and 'output' columns (Alpaca format, 'input' optional); found: {', '.join(columns)}"
    )


def alpaca_to_messages(instruction: str | None, input_text: str | None, output: str | None,
                       system_prompt: str | None = None) -> list[dict[str, str]]:
    """One Alpaca record as a chat: [system], user = instruction (+ blank line + input), assistant = output."""
    user = (instruction or "").strip()
    if input_text and input_text.strip():
        user = f"{user}\n\n{input_text.strip()}" if user else input_text.strip()
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": user}, {"role": "assistant", "content": output or ""}]


def _check_messages(messages: Any, origin: str) -> None:
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m and "content" in m
                                                  for m in messages):
        raise ValueError(f"{origin}: 'messages' must be a list of {{'role': ..., 'content': ...}}")
    for message in messages:
        if message["role"] not in CHAT_ROLES:
            raise ValueError(f"{origin}: unsupported chat role {message['role']!r} "
                             f"(use {', '.join(CHAT_ROLES)})")


def conversations_from_table(dataset: Dataset, *, split: str, system_prompt: str | None = None) -> list[list[dict]]:
    """The rows of an Alpaca-format or chat-format table as chats (lists of role/content messages)."""
    if instruction_format(dataset.column_names) == "chat":
        conversations = []
        for origin, messages in zip(row_origins(dataset, split), dataset["messages"]):
            _check_messages(messages, origin)
            messages = [{"role": m["role"], "content": m["content"] or ""} for m in messages]
            if system_prompt and messages and messages[0]["role"] != "system":
                messages = [{"role": "system", "content": system_prompt}, *messages]
            conversations.append(messages)
        return conversations
    inputs = dataset["input"] if "input" in dataset.column_names else [None] * len(dataset)
    return [alpaca_to_messages(instruction, input_text, output, system_prompt)
            for instruction, input_text, output in zip(dataset["instruction"], inputs, dataset["output"])]


def _usable_conversation(messages: list[dict]) -> str | None:
    """Why a chat cannot train (None when it can): no user text, or no assistant reply."""
    if not any(m["role"] == "user" and not is_empty(m["content"]) for m in messages):
        return "empty"
    if not any(m["role"] == "assistant" and not is_empty(m["content"]) for m in messages):
        return "empty"
    return None


def tokenize_conversations(conversations: list[list[dict]], tokenizer, *, max_length: int,
                           split: str) -> tuple[Dataset, FinetuneReport]:
    """Chats -> `input_ids`, `attention_mask` and `labels`, where labels are the input ids on the assistant replies
    (marked by the chat template's `{% generation %}` blocks, closing eos included) and IGNORE_INDEX elsewhere.

    Longer chats are cut to `max_length` tokens (counted in the report); a chat with nothing of a reply left is
    dropped (counted), and it is an error when no chat is left.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template; SFT renders every example with it")
    report = FinetuneReport(split=split, rows=len(conversations))
    usable = [c for c in conversations if _usable_conversation(c) is None]
    report.dropped_empty = len(conversations) - len(usable)
    columns: dict[str, list] = {"input_ids": [], "attention_mask": [], "labels": []}
    for start in range(0, len(usable), 256):
        encoded = tokenizer.apply_chat_template(
            usable[start:start + 256], tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
        )
        for ids, mask in zip(encoded["input_ids"], encoded["assistant_masks"]):
            if len(ids) > max_length:
                report.truncated += 1
                ids, mask = ids[:max_length], mask[:max_length]
            if not any(mask):
                report.dropped_no_reply += 1
                continue
            columns["input_ids"].append(list(ids))
            columns["attention_mask"].append([1] * len(ids))
            columns["labels"].append([t if m else IGNORE_INDEX for t, m in zip(ids, mask)])
    report.examples = len(columns["input_ids"])
    report.tokens = int(sum(map(len, columns["input_ids"])))
    if not report.examples:
        reason = (f"no reply is left within {max_length} tokens (raise --max_length)" if report.dropped_no_reply
                  else "every row has an empty instruction or reply")
        raise ValueError(f"no usable {split} example: {reason}")
    report.warn(max_length)
    return Dataset.from_dict(columns), report


def pack_examples(dataset: Dataset, max_length: int) -> Dataset:
    """Concatenate whole examples, in order, into sequences of at most `max_length` tokens (fewer, shorter
    sequences, less padding). Labels are kept, so the loss still counts the replies only; as in pretraining, a
    later example in a sequence attends to the earlier ones, each ending with eos."""
    keys = ("input_ids", "attention_mask", "labels")
    packed: dict[str, list] = {key: [] for key in keys}
    current: dict[str, list] = {key: [] for key in keys}
    for example in dataset:
        if current["input_ids"] and len(current["input_ids"]) + len(example["input_ids"]) > max_length:
            for key, sequences in packed.items():
                sequences.append(current[key])
            current = {key: [] for key in keys}
        for key, tokens in current.items():
            tokens.extend(example[key])
    if current["input_ids"]:
        for key, sequences in packed.items():
            sequences.append(current[key])
    return Dataset.from_dict(packed)


@dataclass
class SFTData:
    train: Dataset
    validation: Dataset | None
    test: Dataset | None
    reports: dict[str, FinetuneReport] = field(default_factory=dict)
    # Held-out chats (validation, else test), for sample generations: prompt messages and the reference reply.
    sample_chats: list[list[dict]] = field(default_factory=list)


def build_sft_data(train: Dataset, validation: Dataset | None, test: Dataset | None, tokenizer, *,
                   max_length: int, system_prompt: str | None = None, packing: bool = False) -> SFTData:
    """Instruction tables (Alpaca or chat format) -> token ids with reply-only labels; training data optionally
    packed. Evaluation data is never packed, so its loss is per example as in training without packing."""
    splits, reports, chats = {}, {}, {}
    for split, table in (("train", train), ("validation", validation), ("test", test)):
        if table is None:
            continue
        chats[split] = conversations_from_table(table, split=split, system_prompt=system_prompt)
        splits[split], reports[split] = tokenize_conversations(chats[split], tokenizer, max_length=max_length,
                                                               split=split)
    if packing:
        splits["train"] = pack_examples(splits["train"], max_length)
        logger.info("packed %d training examples into %d sequences of at most %d tokens",
                    reports["train"].examples, len(splits["train"]), max_length)
    held_out = chats.get("validation") or chats.get("test") or []
    return SFTData(train=splits["train"], validation=splits.get("validation"), test=splits.get("test"),
                   reports=reports, sample_chats=[c for c in held_out if _usable_conversation(c) is None])
