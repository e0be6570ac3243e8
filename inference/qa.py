"""Answering a question from a context with a fine-tuned extractive QA model — the same windows and span decoding as
evaluation (`scratchlm.modeling.span_decoding`), so an answer here is the answer the reported EM/F1 scored.

    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    from scratchlm.inference.qa import answer_question
    model = AutoModelForQuestionAnswering.from_pretrained("qa/", trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained("qa/", trust_remote_code=True)
    answer_question(model, tokenizer, "Who won?", "The Broncos won the game.")
    # {'answer': 'The Broncos', 'start': 0, 'end': 11, 'score': 7.3, 'no_answer_score': -2.1}

    scratchlm-qa qa/ --question "Who won?" --context "The Broncos won the game."   # or --context_file

(transformers 5 has no `question-answering` pipeline any more; this is its replacement for ScratchLM models.)
The window settings default to those the model was evaluated with: `config.qa_decoding`, which a model fine-tuned with
`scratchlm-finetune --task qa` carries to the Hub, else (models fine-tuned before it) the run record next to the
weights (`scratchlm_run.json`, key `qa`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer

from scratchlm.cli import command, move_bare_argument, parse_args
from scratchlm.inference.model_dir import check_model_dir
from scratchlm.model_cards.run_record import ADAPTER_CONFIG_FILE, CONFIG_FILE, is_adapter_dir, is_hub_id
from scratchlm.modeling.span_decoding import (
    FEATURES,
    SPAN_SELECTIONS,
    QASettings,
    build_features,
    postprocess_predictions,
)

logger = logging.getLogger(__name__)

RUN_RECORD = "scratchlm_run.json"


def recorded_settings(model) -> dict:
    """The window and decoding settings the model was evaluated with: its config's, else its run record's."""
    if settings := getattr(model.config, "qa_decoding", None):
        return dict(settings)
    path = Path(str(model.config.name_or_path or "")) / RUN_RECORD
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8")).get("qa") or {}


def window_settings(model, **given) -> dict:
    """Window and decoding settings: those `given` (not None), else the model's (`recorded_settings`), else
    `QASettings`' defaults; `max_length` capped at the model's context length (the default stride follows it)."""
    settings = {**recorded_settings(model), **{k: v for k, v in given.items() if v is not None}}
    settings["max_length"] = min(settings.get("max_length", QASettings.max_length),
                                 model.config.max_position_embeddings)
    return {**asdict(QASettings(max_length=settings["max_length"])), **settings}


@torch.no_grad()
def window_logits(model, tokenizer, features: Dataset, batch_size: int = 16) -> tuple[list, list]:
    """Start and end logits of every window in `features` (from `build_features`)."""
    starts, ends = [], []
    model.eval()
    for first in range(0, len(features), batch_size):
        batch = tokenizer.pad({"input_ids": features["input_ids"][first:first + batch_size]}, return_tensors="pt")
        output = model(input_ids=batch["input_ids"].to(model.device),
                       attention_mask=batch["attention_mask"].to(model.device))
        starts.extend(output.start_logits.float().cpu().numpy())
        ends.extend(output.end_logits.float().cpu().numpy())
    return starts, ends


def predict_answers(model, tokenizer, examples: Dataset, *, allow_no_answer: bool = False, batch_size: int = 16,
                    **settings) -> dict[str, dict]:
    """Question id -> {"text", "answer_start", "score", "no_answer_score"} for SQuAD-layout `examples`
    (`scratchlm.training.data.qa.load_squad`); `settings` as in `window_settings`."""
    settings = window_settings(model, **settings)
    features = build_features(examples, tokenizer, max_length=settings["max_length"], stride=settings["stride"],
                              max_question_tokens=settings["max_question_tokens"])
    starts, ends = window_logits(model, tokenizer, features, batch_size)
    return postprocess_predictions(examples, features, starts, ends, n_best=settings["n_best"],
                                   max_answer_length=settings["max_answer_length"], version_2=allow_no_answer,
                                   null_score_threshold=settings["null_score_threshold"],
                                   span_selection=settings["span_selection"])


def answer_question(model, tokenizer, question: str, context: str, *, max_length: int | None = None,
                    stride: int | None = None, max_question_tokens: int | None = None, n_best: int | None = None,
                    max_answer_length: int | None = None, span_selection: str | None = None,
                    allow_no_answer: bool = False, batch_size: int = 16) -> dict:
    """The answer span of `question` in `context`: {"answer", "start", "end", "score", "no_answer_score"}.

    `start`/`end` are character offsets in `context` (-1, and an empty answer, when `allow_no_answer` and the
    model's no-answer score wins, or when no span fits: then `score` is None). Unset settings come from the model
    (`recorded_settings`), else `QASettings`' defaults. An empty question or context is a ValueError."""
    for name, text in (("question", question), ("context", context)):
        if not text.strip():
            raise ValueError(f"the {name} is empty")
    example = Dataset.from_list([{"id": "0", "title": "", "context": context, "question": question,
                                  "answers": {"text": [], "answer_start": []}, "is_impossible": False}],
                                features=FEATURES)
    prediction = predict_answers(model, tokenizer, example, allow_no_answer=allow_no_answer, batch_size=batch_size,
                                 max_length=max_length, stride=stride, max_question_tokens=max_question_tokens,
                                 n_best=n_best, max_answer_length=max_answer_length,
                                 span_selection=span_selection)["0"]
    score, no_answer_score = (value if math.isfinite(value) else None
                              for value in (prediction["score"], prediction["no_answer_score"]))
    start = prediction["answer_start"] if score is not None else -1
    text = prediction["text"] if start >= 0 else ""
    return {"answer": text, "start": start, "end": start + len(text) if start >= 0 else -1, "score": score,
            "no_answer_score": no_answer_score}


def _json_object(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    return value if isinstance(value, dict) else {}


def check_qa_model(model: str, trust_remote_code: bool = True) -> None:
    """Refuse, before any weights are loaded, a model that is not an extractive question-answering model: its config
    (a local directory's config.json, else the Hub model's) must name a `...ForQuestionAnswering` architecture, a
    LoRA adapter directory the task type QUESTION_ANS."""
    advice = "fine-tune one with scratchlm-finetune --task qa"
    path = Path(model)
    if path.exists() or not is_hub_id(model):
        if is_adapter_dir(check_model_dir(path)):
            task_type = _json_object(path / ADAPTER_CONFIG_FILE).get("task_type")
            if task_type != "QUESTION_ANS":
                raise ValueError(f"{model} is a LoRA adapter for {task_type}, not a question-answering model: {advice}")
            return
        architectures = _json_object(path / CONFIG_FILE).get("architectures") or []
    else:
        architectures = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code).architectures or []
    if not any(str(name).endswith("ForQuestionAnswering") for name in architectures):
        raise ValueError(f"{model} is not a question-answering model (its architectures: "
                         f"{', '.join(map(str, architectures)) or 'none'}): {advice}")


@dataclass
class QAArguments:
    DEPRECATED_FLAGS = {"model": "model_name_or_path", "model_dir": "model_name_or_path"}

    model_name_or_path: str = field(metadata={"help": "Directory (or Hub id) of a fine-tuned extractive QA model; may "
                                                      "be given first, bare."})
    question: str = field(metadata={"help": "The question."})
    context: str | None = field(default=None, metadata={"help": "The text holding the answer."})
    context_file: str | None = field(default=None, metadata={"help": "A UTF-8 file holding the context instead."})
    allow_no_answer: bool = field(default=False, metadata={"help": "Answer nothing when the model's no-answer "
                                                                    "score wins (SQuAD 2.0-style models)."})
    span_selection: str | None = field(default=None, metadata={
        "choices": list(SPAN_SELECTIONS), "help": "The best-scoring span, or the one of highest expected F1 "
                                                    "(default: as the model was evaluated)."})
    trust_remote_code: bool = field(default=True, metadata={"help": "Load the model's own code."})


@command("scratchlm-qa")
def main(argv=None) -> None:
    (args,) = parse_args([QAArguments], move_bare_argument(argv),
                         description="Answer a question from a context with a QA model.")
    if (args.context is None) == (args.context_file is None):
        raise ValueError("give the context as exactly one of --context and --context_file")
    context = args.context if args.context is not None else Path(args.context_file).read_text(encoding="utf-8")
    if not args.question.strip():
        raise ValueError("--question is empty: give the question to answer")
    if not context.strip():
        where = f"--context_file {args.context_file}" if args.context_file else "--context"
        raise ValueError(f"{where} is empty: give the text that holds the answer")
    check_qa_model(args.model_name_or_path, args.trust_remote_code)
    model = AutoModelForQuestionAnswering.from_pretrained(args.model_name_or_path,
                                                          trust_remote_code=args.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path, trust_remote_code=args.trust_remote_code)
    result = answer_question(model, tokenizer, args.question, context, allow_no_answer=args.allow_no_answer,
                             span_selection=args.span_selection)
    print(json.dumps(result, ensure_ascii=False, allow_nan=False))


if __name__ == "__main__":
    main()
