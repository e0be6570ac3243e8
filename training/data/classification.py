"""Text classification data: labelled tables -> token ids ([text] eos ([text pair] eos)) and the label set."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset

from .checks import eos_token_id
from .tables import FinetuneReport, check_columns, is_empty, row_origins


def _label_key(value: Any) -> str | None:
    """A label as the string it is known by: 1, 1.0 and "1" are all "1"; None stays None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _sorted_labels(keys) -> list[str]:
    keys = set(keys)
    if all(re.fullmatch(r"-?\d+", key) for key in keys):
        return sorted(keys, key=int)  # 0, 1, ..., 10 rather than "0", "1", "10", "2"
    return sorted(keys)


def label_names_from(dataset: Dataset, label_column: str, label_names: list[str] | None = None) -> list[str]:
    """The label set, in id order: `label_names` when given, else the training labels sorted (numerically when
    they are numbers, so that integer labels 0..n-1 keep their values as ids)."""
    if label_names:
        if len(set(label_names)) != len(label_names):
            raise ValueError(f"--class_names has duplicates: {label_names}")
        return [str(name) for name in label_names]
    keys = {key for key in map(_label_key, dataset[label_column]) if key is not None}
    if len(keys) < 2:
        raise ValueError(f"the training data has {len(keys)} distinct label(s) in column {label_column!r}; "
                         "classification needs at least two")
    return _sorted_labels(keys)


def _label_ids(values: list, label2id: dict[str, int], origins: list[str], label_column: str) -> list[int]:
    keys = [_label_key(value) for value in values]
    # Integer labels of which none is a label name index the names (labels 0/1 with --class_names neg pos).
    by_index = all(key is None or key.isdigit() for key in keys) and not any(key in label2id for key in keys)
    ids = []
    for origin, value, key in zip(origins, values, keys):
        if key is None:
            raise ValueError(f"{origin}: no label in column {label_column!r}")
        if key in label2id:
            ids.append(label2id[key])
        elif by_index and int(key) < len(label2id):
            ids.append(int(key))
        else:
            raise ValueError(
                f"{origin}: label {value!r} is not in the label set "
                f"({', '.join(label2id)}); fix the data or give the full label set with --class_names"
            )
    return ids


def _truncate_pair(first: list[int], second: list[int] | None, budget: int) -> tuple[list[int], list[int] | None]:
    """Cut the longer of the two token lists first until both fit in `budget` tokens (tokenizers' longest_first)."""
    first = list(first)
    second = None if second is None else list(second)
    while len(first) + len(second or []) > budget:
        if second is not None and len(second) > len(first):
            second.pop()
        else:
            first.pop()
    return first, second


def _encode_classification_batch(batch, tokenizer, text_column, text_pair_column, max_length):
    """[text] eos ([text pair] eos): the model pools the last real token, the eos, as in pretraining where eos
    closes every document; the eos also separates a text pair."""
    eos = eos_token_id(tokenizer)
    texts = tokenizer(batch[text_column], add_special_tokens=False)["input_ids"]
    pairs = tokenizer(batch[text_pair_column], add_special_tokens=False)["input_ids"] if text_pair_column else None
    budget = max_length - (2 if pairs else 1)
    input_ids, truncated = [], []
    for index, first in enumerate(texts):
        second = pairs[index] if pairs else None
        cut_first, cut_second = _truncate_pair(first, second, budget)
        truncated.append(len(cut_first) + len(cut_second or []) < len(first) + len(second or []))
        input_ids.append(cut_first + [eos] + (cut_second + [eos] if second is not None else []))
    return {"input_ids": input_ids, "attention_mask": [[1] * len(ids) for ids in input_ids],
            "truncated": truncated}


@dataclass
class ClassificationData:
    train: Dataset
    validation: Dataset | None
    test: Dataset | None
    id2label: dict[int, str]
    label2id: dict[str, int]
    reports: dict[str, FinetuneReport] = field(default_factory=dict)


def prepare_classification_split(dataset: Dataset, tokenizer, *, split: str, text_column: str,
                                 text_pair_column: str | None, label_column: str, label2id: dict[str, int],
                                 max_length: int) -> tuple[Dataset, FinetuneReport]:
    """Check, label and tokenize one split: columns `input_ids`, `attention_mask`, `labels`."""
    check_columns(dataset, {"--text_column": text_column, "--text_pair_column": text_pair_column,
                            "--label_column": label_column}, split)
    report = FinetuneReport(split=split, rows=len(dataset))
    text_columns = [c for c in (text_column, text_pair_column) if c]
    keep = [i for i, row in enumerate(zip(*(dataset[c] for c in text_columns))) if not any(map(is_empty, row))]
    report.dropped_empty = len(dataset) - len(keep)
    labels = _label_ids(dataset[label_column], label2id, row_origins(dataset, split), label_column)
    if not keep:
        raise ValueError(f"every row of the {split} data has an empty {' or '.join(map(repr, text_columns))}")
    if report.dropped_empty:
        dataset = dataset.select(keep)
        labels = [labels[i] for i in keep]
    dataset = dataset.select_columns(text_columns).add_column("labels", labels)
    dataset = dataset.map(
        _encode_classification_batch, batched=True, remove_columns=text_columns, desc=f"tokenizing {split}",
        fn_kwargs={"tokenizer": tokenizer, "text_column": text_column, "text_pair_column": text_pair_column,
                   "max_length": max_length},
    )
    report.truncated = int(sum(dataset["truncated"]))
    dataset = dataset.remove_columns("truncated")
    report.examples = len(dataset)
    report.tokens = int(sum(map(len, dataset["input_ids"])))
    report.warn(max_length)
    return dataset, report


def build_classification_data(train: Dataset, validation: Dataset | None, test: Dataset | None, tokenizer, *,
                              text_column: str = "text", text_pair_column: str | None = None,
                              label_column: str = "label", label_names: list[str] | None = None,
                              max_length: int = 512) -> ClassificationData:
    """Labelled tables -> tokenized classification datasets with the label set (`id2label`/`label2id`).

    The label set comes from `label_names` or the training labels; validation and test labels must be in it.
    """
    check_columns(train, {"--text_column": text_column, "--text_pair_column": text_pair_column,
                          "--label_column": label_column}, "train")
    names = label_names_from(train, label_column, label_names)
    label2id = {name: index for index, name in enumerate(names)}
    splits, reports = {}, {}
    for split, table in (("train", train), ("validation", validation), ("test", test)):
        if table is not None:
            splits[split], reports[split] = prepare_classification_split(
                table, tokenizer, split=split, text_column=text_column, text_pair_column=text_pair_column,
                label_column=label_column, label2id=label2id, max_length=max_length,
            )
    return ClassificationData(train=splits["train"], validation=splits.get("validation"), test=splits.get("test"),
                              id2label=dict(enumerate(names)), label2id=label2id, reports=reports)
