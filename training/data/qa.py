"""Extractive question answering data: SQuAD-format records -> token windows with answer spans, and back.

Reading (`load_squad`): the json file as published (`{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}`,
SQuAD 1.1 or 2.0), json/jsonl rows in the flat `datasets` layout (`id`, `title`, `context`, `question`, `answers`
as `{"text": [...], "answer_start": [...]}` or as a list of `{"text", "answer_start"}`), or a `datasets` id / a
`save_to_disk` directory. Every source becomes the flat layout; a missing field is an error naming the record.

Checking (`check_answers`): an answer whose text is not at its `answer_start` in the context is skipped (counted, the
first one quoted); a question left with no answer is dropped, unless it is unanswerable (SQuAD 2.0:
`is_impossible`, or no answers at all).

Windows (`build_features`): the input is `<|bos|> question <|eos|> context` — the question first, so every context
token of this left-to-right model has read the question. A context longer than `max_length` is cut into windows
that overlap by `stride` tokens (the tokenizer's `return_overflowing_tokens`). Answer character spans are mapped to
token positions through the tokenizer's offsets. A window that does not hold the whole answer, and an unanswerable
question, point both positions at index 0 — the bos token, ScratchLM's "no answer" position (it stands where BERT has
[CLS]). Questions longer than `max_question_tokens` are cut (counted); answers that fall in no window are counted.

Decoding (`postprocess_predictions`): per window the `n_best` start and end logits over context tokens give
candidate spans (end not before start, at most `max_answer_length` tokens); the best span over all windows of a
question, by start + end logit, is the answer. With `version_2` (SQuAD 2.0 data), the answer is empty when the
no-answer score (start + end logit at index 0, the lowest over the windows) beats the best span by more than
`null_score_threshold`. Evaluation and `scratchlm.inference.qa.answer_question` use these same functions.

Split (`split_by_article`): the last `test_fraction` of the articles (in file order) is the test part, so no
context is in both parts; for `../shared/data/squad-v1.1/dev-v1.1.json` that is 10 of its 48 articles.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, Features, List, Sequence, Value

from ..metrics.squad.squad import f1_score  # the metric's own F1, so the selection maximises what is scored
from .tables import ROW_ORIGIN, load_table

logger = logging.getLogger(__name__)

NO_ANSWER_INDEX = 0  # the bos token that opens every window
FEATURES = Features({
    "id": Value("string"), "title": Value("string"), "context": Value("string"), "question": Value("string"),
    "answers": {"text": List(Value("string")), "answer_start": List(Value("int32"))},
    "is_impossible": Value("bool"),
})  # fmt: skip
QUESTION_FIELDS = ("id", "question")


@dataclass
class QAReport:
    """What reading and windowing did to one split: skipped answers, dropped questions, windows without answer."""

    split: str = "train"
    questions: int = 0
    unanswerable: int = 0
    bad_answers: int = 0
    bad_answer_example: str = ""
    dropped_questions: int = 0
    truncated_questions: int = 0
    windows: int = 0
    answers_in_no_window: int = 0
    numbered_ids: int = 0  # questions without an id in data where none has one: numbered row-1, row-2, ...

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def warn(self) -> None:
        if self.bad_answers:
            logger.warning("%s: skipped %d answer(s) whose text is not at their answer_start (e.g. %s); %d question(s) "
                           "left without an answer dropped", self.split, self.bad_answers, self.bad_answer_example,
                           self.dropped_questions)
        if self.truncated_questions:
            logger.warning("%s: %d question(s) cut to fit the window", self.split, self.truncated_questions)
        if self.answers_in_no_window:
            logger.warning("%s: %d answer(s) fall in no window of their context (raise --max_length or --stride); "
                           "they train as 'no answer'", self.split, self.answers_in_no_window)


# ----------------------------------------------------------------------------------------------------- reading


def _require(record: Any, name: str, where: str) -> Any:
    if not isinstance(record, dict) or name not in record:
        raise ValueError(f"{where} has no {name!r} field")
    return record[name]


def _answer_columns(answers: Any, where: str) -> dict[str, list]:
    """Answers as `{"text": [...], "answer_start": [...]}`, from that layout or from a list of answer records."""
    if isinstance(answers, dict):
        texts, starts = _require(answers, "text", where + " answers"), _require(answers, "answer_start",
                                                                                  where + " answers")
        if len(texts) != len(starts):
            raise ValueError(f"{where}: answers have {len(texts)} texts but {len(starts)} answer_start values")
        return {"text": [str(t) for t in texts], "answer_start": [int(s) for s in starts]}
    if not isinstance(answers, list):
        raise ValueError(f"{where}: 'answers' must be a list of {{'text', 'answer_start'}} or a dict of two lists")
    return {"text": [str(_require(a, "text", f"{where} answer {i}")) for i, a in enumerate(answers)],
            "answer_start": [int(_require(a, "answer_start", f"{where} answer {i}")) for i, a in enumerate(answers)]}


def _flat_record(row: dict, where: str, title: str | None = None, context: str | None = None) -> dict:
    answers = _answer_columns(row["answers"], where) if "answers" in row else None
    impossible = bool(row.get("is_impossible", False))
    if answers is None:
        if not impossible:
            raise ValueError(f"{where} has no 'answers' field (and is not marked is_impossible)")
        answers = {"text": [], "answer_start": []}
    question_id = row.get("id") if isinstance(row, dict) else None
    return {
        "id": None if question_id is None or question_id == "" else str(question_id),
        "title": str(title if title is not None else row.get("title", "")),
        "context": context if context is not None else str(_require(row, "context", where)),
        "question": str(_require(row, "question", where)),
        "answers": answers,
        "is_impossible": impossible or not answers["text"],
    }


def _check_ids(records: list[dict], wheres: list[str], name: str, report: QAReport | None) -> None:
    """Every question needs its own id (its prediction is stored under it): a missing or repeated one is an error
    naming the record; data where no question has an id gets them numbered `row-1`, `row-2`, ... (in `report`)."""
    if all(record["id"] is None for record in records):
        for number, record in enumerate(records, 1):
            record["id"] = f"row-{number}"
        logger.warning("%s: no question has an id; numbered them row-1 to row-%d", name, len(records))
        if report is not None:
            report.numbered_ids += len(records)
        return
    seen: dict[str, str] = {}
    for record, where in zip(records, wheres):
        if record["id"] is None:
            raise ValueError(f"{where} has no 'id': give every question a unique id (or none at all, then they are "
                             "numbered row-1, row-2, ...)")
        if record["id"] in seen:
            raise ValueError(f"{where} repeats the id {record['id']!r} of {seen[record['id']]}: each question needs "
                             "its own id, or their predictions overwrite each other")
        seen[record["id"]] = where


def _flatten_published(articles: Any, path: str) -> tuple[list[dict], list[str]]:
    if not isinstance(articles, list):
        raise ValueError(f"{path}: 'data' must be a list of articles")
    records, wheres = [], []
    for a, article in enumerate(articles):
        title = str(article.get("title", "")) if isinstance(article, dict) else ""
        for p, paragraph in enumerate(_require(article, "paragraphs", f"{path} data[{a}]")):
            where = f"{path} data[{a}].paragraphs[{p}]"
            context = str(_require(paragraph, "context", where))
            for q, qa in enumerate(_require(paragraph, "qas", where)):
                wheres.append(f"{where}.qas[{q}]")
                records.append(_flat_record(qa, wheres[-1], title, context))
    return records, wheres


def _published_records(source: Dataset | str) -> tuple[list[dict], list[str]] | None:
    """The questions of SQuAD files as published (`{"data": [articles]}`), read as a file or as table rows (one per
    file); None for anything else."""
    if isinstance(source, Dataset):
        if "data" not in source.column_names or "question" in source.column_names:
            return None
        origins = source[ROW_ORIGIN] if ROW_ORIGIN in source.column_names else ["the data"] * len(source)
        records, wheres = [], []
        for origin, articles in zip(origins, source["data"]):
            file_records, file_wheres = _flatten_published(articles, origin.removesuffix(" row 1"))
            records += file_records
            wheres += file_wheres
        return records, wheres
    path = Path(source).expanduser()
    if path.suffix == ".json" and path.is_file():
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            if error.msg == "Extra data":  # JSON Lines in a .json file: rows, read as a table
                return None
            raise ValueError(f"{source} is not valid JSON: {error}") from None
        except UnicodeDecodeError as error:
            raise ValueError(f"{source} is not UTF-8 text: {error}") from None
        if isinstance(content, dict) and "data" in content:
            return _flatten_published(content["data"], source)
    return None


def load_squad(source: str | os.PathLike | Dataset, *, split: str = "train", dataset_config: str | None = None,
               report: QAReport | None = None) -> Dataset:
    """SQuAD-format records from a published json file, json/jsonl rows, a `datasets` id or a loaded `Dataset`,
    in the flat layout (`id`, `title`, `context`, `question`, `answers`, `is_impossible`). Ids are checked
    (`_check_ids`); `report` counts the questions numbered for want of any id."""
    name = "the data set" if isinstance(source, Dataset) else os.fspath(source)
    published = _published_records(source if isinstance(source, Dataset) else name)
    if published is not None:
        records, wheres = published
    else:
        rows = source if isinstance(source, Dataset) else load_table(name, split=split, dataset_config=dataset_config)
        wheres = [row.get(ROW_ORIGIN) or f"{name} row {index}" for index, row in enumerate(rows)]
        records = [_flat_record(row, where) for row, where in zip(rows, wheres)]
    if not records:
        raise ValueError(f"{name} holds no questions")
    _check_ids(records, wheres, name, report)
    return Dataset.from_list(records, features=FEATURES)


def is_version_2(dataset: Dataset) -> bool:
    """Whether the data has SQuAD 2.0-style unanswerable questions."""
    return any(list(dataset["is_impossible"]))


def check_answers(dataset: Dataset, split: str = "train", report: QAReport | None = None) -> tuple[Dataset, QAReport]:
    """Skip answers whose text is not at their `answer_start`; drop answerable questions left with none. Counts go
    to `report` (a new one if not given), which is returned."""
    report = report if report is not None else QAReport(split=split)
    keep, fixed_answers = [], []
    for index, row in enumerate(dataset):
        context, answers = row["context"], row["answers"]
        good = {"text": [], "answer_start": []}
        for text, start in zip(answers["text"], answers["answer_start"]):
            if context[start:start + len(text)] == text:
                good["text"].append(text)
                good["answer_start"].append(start)
            else:
                report.bad_answers += 1
                if not report.bad_answer_example:
                    found = context[start:start + len(text)]
                    report.bad_answer_example = (f"question {row['id']!r}: answer {text!r} at {start}, the context "
                                                 f"there reads {found!r}")
        if row["is_impossible"] or good["text"]:
            keep.append(index)
            fixed_answers.append(good)
        else:
            report.dropped_questions += 1
    if not keep:
        raise ValueError(f"no usable {split} question: every answer is off its answer_start "
                         f"(e.g. {report.bad_answer_example})")
    checked = dataset.select(keep)
    if report.bad_answers:
        checked = checked.remove_columns("answers").add_column("answers", fixed_answers,
                                                               feature=FEATURES["answers"])
    report.questions = len(checked)
    report.unanswerable = sum(list(checked["is_impossible"]))
    return checked, report


def split_by_article(dataset: Dataset, test_fraction: float = 0.2) -> tuple[Dataset, Dataset]:
    """(train, test): the last `test_fraction` of the articles (by title, in order of appearance) are the test part,
    so no article, and hence no context, is in both."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    titles = list(dict.fromkeys(list(dataset["title"])))
    if len(titles) < 2:
        raise ValueError(f"splitting by article needs at least two articles, the data has {len(titles)}")
    test_count = min(len(titles) - 1, max(1, round(len(titles) * test_fraction)))
    test_titles = set(titles[-test_count:])
    in_test = [title in test_titles for title in list(dataset["title"])]
    return (dataset.select([i for i, test in enumerate(in_test) if not test]),
            dataset.select([i for i, test in enumerate(in_test) if test]))


# ----------------------------------------------------------------------------------------------------- windows


def _question_prefixes(questions: list[str], tokenizer, max_question_tokens: int, report: QAReport) -> list[str]:
    """`<|bos|> question <|eos|>`, the question cut to `max_question_tokens` tokens."""
    if tokenizer.bos_token is None or tokenizer.eos_token is None:
        raise ValueError("question answering needs a tokenizer with bos and eos tokens (bos marks 'no answer')")
    prefixes = []
    encoded = tokenizer([q.strip() for q in questions], add_special_tokens=False)["input_ids"]
    for question, ids in zip(questions, encoded):
        question = question.strip()
        if len(ids) > max_question_tokens:
            report.truncated_questions += 1
            question = tokenizer.decode(ids[:max_question_tokens])
        prefixes.append(f"{tokenizer.bos_token}{question}{tokenizer.eos_token}")
    return prefixes


def _answer_positions(sequence_ids: list, offsets: list, start_char: int, end_char: int) -> tuple[int, int] | None:
    """Token positions of the answer characters [start_char, end_char) in this window, or None when the window does
    not hold all of it. Byte-level tokens carry their leading space, so a token holds a character when its offsets
    end after it."""
    context = [i for i, s in enumerate(sequence_ids) if s == 1]
    if not context or offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return None
    start = next(i for i in context if offsets[i][1] > start_char)
    end = next(i for i in reversed(context) if offsets[i][0] < end_char)
    return start, end


def build_features(dataset: Dataset, tokenizer, *, max_length: int = 384, stride: int = 128,
                   max_question_tokens: int = 64, report: QAReport | None = None) -> Dataset:
    """Token windows of every question + context: `input_ids`, `attention_mask`, `start_positions`/`end_positions`
    (the first answer; index 0 where the window lacks it or there is none), `example_id` and `offset_mapping`
    (character offsets of context tokens, None elsewhere) for decoding. Drop the last two before training."""
    if max_length <= max_question_tokens + 2 + stride:
        raise ValueError(f"max_length ({max_length}) must exceed max_question_tokens + 2 + stride "
                         f"({max_question_tokens} + 2 + {stride}) so that windows advance through the context")
    report = report if report is not None else QAReport()
    prefixes = _question_prefixes(list(dataset["question"]), tokenizer, max_question_tokens, report)
    encoded = tokenizer(
        prefixes, list(dataset["context"]), truncation="only_second", max_length=max_length, stride=stride,
        return_overflowing_tokens=True, return_offsets_mapping=True, add_special_tokens=False,
    )
    columns: dict[str, list] = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                                "start_positions": [], "end_positions": [], "example_id": [], "offset_mapping": []}
    answered = set()
    all_answers, ids = list(dataset["answers"]), list(dataset["id"])
    for window, example in enumerate(encoded["overflow_to_sample_mapping"]):
        sequence_ids, offsets = encoded.sequence_ids(window), encoded["offset_mapping"][window]
        answers = all_answers[example]
        positions = None
        if answers["text"]:
            start_char = answers["answer_start"][0]
            positions = _answer_positions(sequence_ids, offsets, start_char, start_char + len(answers["text"][0]))
        if positions is not None:
            answered.add(example)
        start, end = positions or (NO_ANSWER_INDEX, NO_ANSWER_INDEX)
        columns["start_positions"].append(start)
        columns["end_positions"].append(end)
        columns["example_id"].append(ids[example])
        columns["offset_mapping"].append([list(o) if s == 1 else None for s, o in zip(sequence_ids, offsets)])
    report.windows += len(columns["input_ids"])
    report.answers_in_no_window += sum(1 for i, answers in enumerate(all_answers)
                                       if answers["text"] and i not in answered)
    features = Features({
        "input_ids": List(Value("int32")), "attention_mask": List(Value("int8")),
        "start_positions": Value("int32"), "end_positions": Value("int32"), "example_id": Value("string"),
        "offset_mapping": List(Sequence(Value("int32"), length=2)),
    })  # fmt: skip
    return Dataset.from_dict(columns, features=features)


# ---------------------------------------------------------------------------------------------------- decoding


def best_spans(start_logits, end_logits, offsets: list, *, n_best: int = 20,
               max_answer_length: int = 30) -> list[tuple[float, int, int]]:
    """The valid candidate spans of one window, best first: (start + end logit, start char, end char).

    Candidates pair the `n_best` highest start and end logits over context tokens (positions whose offsets are not
    None); a span is valid when its end is not before its start and it has at most `max_answer_length` tokens."""
    length = len(offsets)
    start_logits, end_logits = np.asarray(start_logits)[:length], np.asarray(end_logits)[:length]
    context = np.array([o is not None for o in offsets])
    if not context.any():
        return []
    masked_start = np.where(context, start_logits, -np.inf)
    masked_end = np.where(context, end_logits, -np.inf)
    starts = [i for i in np.argsort(masked_start)[::-1][:n_best] if context[i]]
    ends = [i for i in np.argsort(masked_end)[::-1][:n_best] if context[i]]
    spans = []
    for s in starts:
        for e in ends:
            if s <= e < s + max_answer_length:
                spans.append((float(start_logits[s] + end_logits[e]), offsets[s][0], offsets[e][1]))
    spans.sort(key=lambda span: -span[0])
    return spans[:n_best]


def span_text(context: str, start_char: int, end_char: int) -> tuple[str, int]:
    """The answer text of a character span and its start, without the leading space a byte-level token carries."""
    text = context[start_char:end_char]
    stripped = text.lstrip()
    return stripped.rstrip(), start_char + len(text) - len(stripped)


SPAN_SELECTIONS = ("best", "expected_f1")


def expected_f1_span(context: str, spans: list[tuple[float, int, int]]) -> tuple[float, int, int]:
    """Of the candidate `spans` (score, start char, end char), the one whose answer has the highest F1 expected
    under the model's distribution over them (softmax of the span scores, equal answers pooled): minimum Bayes
    risk decoding for the F1 metric."""
    answers: dict[str, list] = {}
    for span in spans:
        answers.setdefault(span_text(context, span[1], span[2])[0], []).append(span)
    scores = np.array([np.logaddexp.reduce([span[0] for span in group]) for group in answers.values()])
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    expected = [sum(p * f1_score(mine, other) for p, other in zip(probabilities, answers)) for mine in answers]
    best_group = list(answers.values())[int(np.argmax(expected))]
    return max(best_group, key=lambda span: span[0])


def postprocess_predictions(examples: Dataset, features: Dataset, start_logits, end_logits, *, n_best: int = 20,
                            max_answer_length: int = 30, version_2: bool = False,
                            null_score_threshold: float = 0.0, span_selection: str = "best") -> dict[str, dict]:
    """Question id -> {"text", "answer_start", "score", "no_answer_score"}: over the question's windows, the span
    with the best score, or (`span_selection="expected_f1"`) the one of the `n_best` best with the highest expected
    F1 (`expected_f1_span`); with `version_2`, the empty answer where the no-answer score beats the best span's by
    more than the threshold."""
    if span_selection not in SPAN_SELECTIONS:
        raise ValueError(f"unknown span selection {span_selection!r}: choose one of {', '.join(SPAN_SELECTIONS)}")
    windows: dict[str, list[int]] = {}
    for index, example_id in enumerate(list(features["example_id"])):
        windows.setdefault(example_id, []).append(index)
    offsets_column = list(features["offset_mapping"])
    predictions = {}
    for example in examples:
        candidates = []
        null_score = math.inf
        for index in windows.get(example["id"], []):
            candidates += best_spans(start_logits[index], end_logits[index], offsets_column[index], n_best=n_best,
                                     max_answer_length=max_answer_length)
            no_answer = float(start_logits[index][NO_ANSWER_INDEX] + end_logits[index][NO_ANSWER_INDEX])
            null_score = min(null_score, no_answer)
        candidates = sorted(candidates, key=lambda span: -span[0])[:n_best] or [(-math.inf, 0, 0)]
        top = candidates[0][0]
        best = candidates[0]
        if span_selection == "expected_f1" and top > -math.inf:
            best = expected_f1_span(example["context"], candidates)
        text, start = span_text(example["context"], best[1], best[2])
        if version_2 and (top == -math.inf or null_score > top + null_score_threshold):
            text, start = "", -1
        predictions[example["id"]] = {"text": text, "answer_start": start, "score": best[0],
                                      "no_answer_score": null_score}
    return predictions


def metric_inputs(predictions: dict[str, dict], examples: Dataset) -> dict[str, list]:
    """`predictions` and `references` in the layout of the `squad` metric."""
    return {
        "predictions": [{"id": example_id, "prediction_text": predictions[example_id]["text"]}
                        for example_id in list(examples["id"])],
        "references": [{"id": example_id, "answers": answers}
                       for example_id, answers in zip(list(examples["id"]), list(examples["answers"]))],
    }
