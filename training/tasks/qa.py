"""`--task qa`: extractive question answering (SQuAD format) with the `qa_outputs` start/end head.

Data: SQuAD json as published (SQuAD 1.1 or 2.0), json/jsonl rows in the flat `datasets` layout, or a `datasets`
id (`scratchlm.training.data.qa`). Every question + context becomes `<|bos|> question <|eos|> context` windows of
`--max_length` tokens overlapping by `--doc_stride`, with the answer's characters mapped to token positions
through the tokenizer's offsets; index 0 (the bos) is the "no answer" position. Answers off their `answer_start`
are skipped (counted, one quoted), answers in no window counted, missing fields named.

Metrics: after every evaluation the windows' start/end logits are decoded into one answer per question (n-best
spans of at most `--max_answer_length` tokens; for SQuAD 2.0 data the empty answer where "no answer" scores
higher) and scored with the `squad` metric shipped in `scratchlm/training/metrics/` (exact match and F1, percent).
The answers go to `eval_predictions.json` / `test_predictions.json` in the output directory ({id: answer}, the
official SQuAD prediction format); the window settings go to the run record (`qa`), where
`scratchlm.inference.qa.answer_question` finds them.

Every question needs its own id (its prediction is stored under it): a missing or repeated id is an error naming
the record; data in which no question has an id gets them numbered `row-1`, `row-2`, ... (a warning, the run record's
data report and the card say so). Without `--validation_files`, `--validation_split_fraction` of the training
questions (random, seeded) is held out; it and `--max_train_documents`/`--max_eval_samples` count questions, also in
a published SQuAD file (which is one row of a table).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset
from transformers import AutoModelForQuestionAnswering, DataCollatorWithPadding, TrainerCallback

from scratchlm.files import atomic_write_text
from scratchlm.modeling.span_decoding import SPAN_SELECTIONS, QASettings, build_features, postprocess_predictions

from ..data.qa import QAReport, check_answers, is_version_2, load_squad, metric_inputs
from ..data.tables import TableSettings, hold_out_and_limit, load_splits
from ..evaluation import load_metric
from .base import FinetuneTask

MODEL_COLUMNS = ["input_ids", "attention_mask", "start_positions", "end_positions"]
SPLITS = ("train", "validation", "test")


@dataclass
class QAArguments:
    """The options of --task qa: the windows of a long context and the decoding of answers (defaults:
    `QASettings`', shared with `scratchlm.inference.qa`)."""

    doc_stride: int | None = field(default=None, metadata={"help": "Tokens shared by consecutive windows of a long "
                                                                   "context (default: max_length / 4, <= 128)."})
    max_question_tokens: int = field(default=QASettings.max_question_tokens,
                                     metadata={"help": "Longer questions are cut to this."})
    n_best: int = field(default=QASettings.n_best, metadata={"help": "Start and end candidates per window when "
                                                                     "decoding."})
    max_answer_length: int = field(default=QASettings.max_answer_length, metadata={"help": "Longest answer, in "
                                                                                           "tokens."})
    null_score_threshold: float = field(default=QASettings.null_score_threshold, metadata={
        "help": "SQuAD 2.0 data: answer nothing when 'no answer' beats the best span by more."})
    span_selection: str = field(default=QASettings.span_selection, metadata={
        "choices": list(SPAN_SELECTIONS),
        "help": "Answer with the best-scoring span, or with the one of the n-best whose expected F1 under the "
                "model's span probabilities is highest (higher F1, lower exact match)."})

    def settings(self, max_length: int) -> QASettings:
        return QASettings(max_length=max_length, stride=self.doc_stride, max_question_tokens=self.max_question_tokens,
                          n_best=self.n_best, max_answer_length=self.max_answer_length,
                          null_score_threshold=self.null_score_threshold, span_selection=self.span_selection)


@dataclass
class QAData:
    train: Dataset  # windows, model columns only
    validation: Dataset | None
    test: Dataset | None
    settings: QASettings
    version_2: bool
    examples: dict[str, Dataset]  # split -> the checked questions
    windows: dict[str, Dataset]  # split -> windows with example ids and offsets, for decoding
    reports: dict[str, QAReport]


def build_qa_data(train, validation, test, tokenizer, settings: QASettings,
                  reports: dict[str, QAReport] | None = None) -> QAData:
    """Checked questions and their windows for each split given; `reports` (split -> QAReport) holds what reading
    the data counted already."""
    reports = dict(reports or {})
    examples, windows, model_inputs = {}, {}, {}
    for split, table in zip(SPLITS, (train, validation, test)):
        if table is None:
            reports.pop(split, None)
            continue
        examples[split], reports[split] = check_answers(load_squad(table), split, reports.get(split))
        windows[split] = build_features(examples[split], tokenizer, max_length=settings.max_length,
                                        stride=settings.stride, max_question_tokens=settings.max_question_tokens,
                                        report=reports[split])
        model_inputs[split] = windows[split].select_columns(MODEL_COLUMNS)
        reports[split].warn()
    return QAData(train=model_inputs["train"], validation=model_inputs.get("validation"),
                  test=model_inputs.get("test"), settings=settings,
                  version_2=any(is_version_2(data) for data in examples.values()),
                  examples=examples, windows=windows, reports=reports)


def split_of(data: QAData, start_positions: np.ndarray, end_positions: np.ndarray) -> str:
    """Which evaluation split these labels are: the Trainer's `compute_metrics` is not told."""
    for split in ("validation", "test"):
        windows = data.windows.get(split)
        if windows is not None and len(windows) == len(start_positions) \
                and np.array_equal(windows["start_positions"], start_positions) \
                and np.array_equal(windows["end_positions"], end_positions):
            return split
    raise ValueError("evaluated windows match neither the validation nor the test data")


class PredictionsWriter(TrainerCallback):
    """Writes the answers of each evaluation to `{eval,test}_predictions.json` in the output directory."""

    def __init__(self, task: QATask):
        self.task = task

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not state.is_world_process_zero or not self.task.last_predictions:
            return
        _, predictions = self.task.last_predictions
        prefix = "test" if any(key.startswith("test_") for key in metrics or {}) else "eval"
        answers = {key: value["text"] for key, value in predictions.items()}
        # a temporary name, renamed when complete: a run killed mid-write leaves the previous predictions
        atomic_write_text(Path(args.output_dir) / f"{prefix}_predictions.json",
                          json.dumps(answers, ensure_ascii=False, indent=1) + "\n")


def qa_decoding(data: QAData) -> dict[str, Any]:
    """The windows and span decoding of the evaluation, which `scratchlm.inference.qa` answers with."""
    return {**asdict(data.settings), "version_2": data.version_2}


class QATask(FinetuneTask):
    name = "qa"
    pipeline_tag = "question-answering"
    card_task_name = "Extractive question answering"
    peft_task_type = "QUESTION_ANS"
    auto_model_class = AutoModelForQuestionAnswering
    result_metrics = (("exact_match", "exact_match", "Exact match"), ("f1", "f1", "F1"))
    lora_modules_to_save = ["qa_outputs"]
    arguments = QAArguments

    def __init__(self, options: QAArguments | None = None):
        super().__init__(options)
        self.last_predictions: tuple[str, dict] | None = None
        self.reading_reports: dict[str, QAReport] = {}

    def load_splits(self, sources: TableSettings, *, seed: int, test_files=None, test_split=None, max_eval_samples=None):
        """The questions of each split. The validation hold-out and the limits count questions, after reading: a
        published SQuAD file is a single table row."""
        tables = load_splits(replace(sources, validation_split_fraction=0, max_train_documents=None), seed=seed,
                             test_files=test_files, test_split=test_split)
        self.reading_reports = {split: QAReport(split=split) for split in SPLITS}
        train, validation, test = (None if table is None else load_squad(table, report=self.reading_reports[split])
                                   for split, table in zip(SPLITS, tables))
        return hold_out_and_limit(train, validation, test, sources, seed=seed, max_eval_samples=max_eval_samples)

    def build_data(self, train, validation, test, tokenizer, *, data_args, max_length: int):
        return build_qa_data(train, validation, test, tokenizer, self.options.settings(max_length),
                             self.reading_reports)

    def configure_model(self, model, data: QAData) -> None:
        # In config.json, so a model downloaded from the Hub (without its run record) answers as it was evaluated.
        model.config.qa_decoding = qa_decoding(data)

    def collator(self, tokenizer):
        return DataCollatorWithPadding(tokenizer)

    def compute_metrics(self, data: QAData):
        settings = data.settings

        def compute(eval_prediction) -> dict[str, float]:
            start_logits, end_logits = eval_prediction.predictions[:2]
            split = split_of(data, *eval_prediction.label_ids)
            predictions = postprocess_predictions(
                data.examples[split], data.windows[split], start_logits, end_logits, n_best=settings.n_best,
                max_answer_length=settings.max_answer_length, version_2=data.version_2,
                null_score_threshold=settings.null_score_threshold,
                span_selection=settings.span_selection,
            )
            self.last_predictions = (split, predictions)
            return load_metric("squad").compute(**metric_inputs(predictions, data.examples[split]))

        return compute

    def callbacks(self) -> list:
        return [PredictionsWriter(self)]

    def card_fields(self, data: QAData) -> dict[str, Any]:
        numbered = sum(report.numbered_ids for report in data.reports.values())
        ids = {"question_ids": f"numbered row-1, row-2, ... ({numbered} questions had none)"} if numbered else {}
        return {"qa": {**qa_decoding(data), **ids}}
