"""Extractive question answering: the token windows of a question and its context, and the decoding of a model's
start/end logits into answer spans. Evaluation (`scratchlm-finetune --task qa`, `scratchlm.training.data.qa`) and
answering (`scratchlm.inference.qa`) share these, so an answer given is an answer the reported EM/F1 scored; this module
needs neither the training code nor a metric script.

Windows (`build_features`): the input is `<|bos|> question <|eos|> context` — the question first, so every context
token of this left-to-right model has read the question. A context longer than `max_length` is cut into windows
that overlap by `stride` tokens (the tokenizer's `return_overflowing_tokens`). Answer character spans are mapped to
token positions through the tokenizer's offsets. A window that does not hold the whole answer, and an unanswerable
question, point both positions at index 0 — the bos token, ScratchLM's "no answer" position (it stands where BERT has
[CLS]). Questions longer than `max_question_tokens` are cut (counted); answers that fall in no window are counted.

Decoding (`postprocess_predictions`): per window the `n_best` start and end logits over context tokens give
candidate spans (end not before start, at most `max_answer_length` tokens); the best span over all windows of a
question, by start + end logit, is the answer (or, with `span_selection="expected_f1"`, the candidate of highest
expected F1). With `version_2` (SQuAD 2.0 data), the answer is empty when the no-answer score (start + end logit at
index 0, the lowest over the windows) beats the best span by more than `null_score_threshold`.

Scoring text (`normalize_answer`, `f1_score`, `exact_match_score`): the official SQuAD evaluation script's, which the
shipped `squad` metric uses too, so the expected-F1 selection maximises what is scored.
"""

from __future__ import annotations

import collections
import math
import re
import string
from dataclasses import dataclass

import numpy as np
from datasets import Dataset, Features, List, Sequence, Value

NO_ANSWER_INDEX = 0  # the bos token that opens every window
FEATURES = Features({  # one question: the flat SQuAD layout
    "id": Value("string"), "title": Value("string"), "context": Value("string"), "question": Value("string"),
    "answers": {"text": List(Value("string")), "answer_start": List(Value("int32"))},
    "is_impossible": Value("bool"),
})


def default_stride(max_length: int) -> int:
    """Tokens shared by consecutive windows when not given: a quarter of the window, at most 128."""
    return min(128, max_length // 4)


@dataclass
class QASettings:
    """The window and decoding settings of extractive QA: what `scratchlm-finetune --task qa` trains and evaluates
    with and records, and what `scratchlm.inference.qa` answers with; these defaults are the one home of both."""

    max_length: int = 384
    stride: int | None = None  # None: default_stride(max_length)
    max_question_tokens: int = 64
    n_best: int = 20
    max_answer_length: int = 30
    null_score_threshold: float = 0.0
    span_selection: str = "best"

    def __post_init__(self):
        if self.stride is None:
            self.stride = default_stride(self.max_length)


@dataclass
class WindowReport:
    """What windowing did: windows made, questions cut to fit, answers that fall in no window."""

    windows: int = 0
    truncated_questions: int = 0
    answers_in_no_window: int = 0


# ----------------------------------------------------------------------------------------------------- windows


def _question_prefixes(questions: list[str], tokenizer, max_question_tokens: int, report: WindowReport) -> list[str]:
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
                   max_question_tokens: int = 64, report: WindowReport | None = None) -> Dataset:
    """Token windows of every question + context: `input_ids`, `attention_mask`, `start_positions`/`end_positions`
    (the first answer; index 0 where the window lacks it or there is none), `example_id` and `offset_mapping`
    (character offsets of context tokens, None elsewhere) for decoding. Drop the last two before training."""
    if max_length <= max_question_tokens + 2 + stride:
        raise ValueError(f"max_length ({max_length}) must exceed max_question_tokens + 2 + stride "
                         f"({max_question_tokens} + 2 + {stride}) so that windows advance through the context")
    report = report if report is not None else WindowReport()
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
    })
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


# ------------------------------------------------------------------------------------------------ scoring text

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the official script's normalisation)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match_score(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def f1_score(prediction: str, reference: str) -> float:
    prediction_tokens, reference_tokens = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not prediction_tokens or not reference_tokens:
        return float(prediction_tokens == reference_tokens)  # v2.0: both empty (no answer) is a match
    common = collections.Counter(prediction_tokens) & collections.Counter(reference_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(prediction_tokens), overlap / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)
