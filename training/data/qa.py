"""Extractive question answering data: reading and checking SQuAD-format records, scoring inputs, splits.

Reading (`load_squad`): the json file as published (`{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}`,
SQuAD 1.1 or 2.0), json/jsonl rows in the flat `datasets` layout (`id`, `title`, `context`, `question`, `answers`
as `{"text": [...], "answer_start": [...]}` or as a list of `{"text", "answer_start"}`), or a `datasets` id / a
`save_to_disk` directory. Every source becomes the flat layout; a missing field is an error naming the record.

Checking (`check_answers`): an answer whose text is not at its `answer_start` in the context is skipped (counted, the
first one quoted); a question left with no answer is dropped, unless it is unanswerable (SQuAD 2.0:
`is_impossible`, or no answers at all).

Ids (`load_squad`): every question needs its own id, under which its prediction is stored; a missing or repeated
one is an error naming the record, and data in which no question has an id gets them numbered `row-1`, `row-2`, ...

The windows and their decoding (`build_features`, `postprocess_predictions`) live in
`scratchlm.modeling.span_decoding`, which answering a question uses too, without the training code.

Split (`split_by_article`): the last `test_fraction` of the articles (in file order) is the test part, so no
context is in both parts; for `../shared/data/squad-v1.1/dev-v1.1.json` that is 10 of its 48 articles.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from scratchlm.modeling.span_decoding import FEATURES, WindowReport

from .tables import ROW_ORIGIN, load_table

logger = logging.getLogger(__name__)

QUESTION_FIELDS = ("id", "question")


@dataclass
class QAReport(WindowReport):
    """What reading and windowing did to one split: skipped answers, dropped questions, windows without answer."""

    split: str = "train"
    questions: int = 0
    unanswerable: int = 0
    bad_answers: int = 0
    bad_answer_example: str = ""
    dropped_questions: int = 0
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


def metric_inputs(predictions: dict[str, dict], examples: Dataset) -> dict[str, list]:
    """`predictions` and `references` in the layout of the `squad` metric."""
    return {
        "predictions": [{"id": example_id, "prediction_text": predictions[example_id]["text"]}
                        for example_id in list(examples["id"])],
        "references": [{"id": example_id, "answers": answers}
                       for example_id, answers in zip(list(examples["id"]), list(examples["answers"]))],
    }
