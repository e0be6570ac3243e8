"""`--task classification`: text (or text pair) -> label with a new `score` head on the pretrained model.

Labels (strings or integers) become the config's `id2label`/`label2id` (the sorted training labels, or
`--class_names` in id order). The model is `AutoModelForSequenceClassification`, pooling the last real token
(every text ends with eos; `DataCollatorWithPadding` pads on the right) or, with `--classifier_pooling mean`,
the mean over the real tokens. Metrics (accuracy, F1, precision, recall;
binary for two labels with label id 1 as the positive class, plus macro F1) come from the `evaluate` modules
shipped in `scratchlm/training/metrics/`, loaded by path: nothing needs the Hub.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from ..data import build_classification_data
from ..evaluation import load_metric
from .base import FinetuneTask

POOLINGS = ("last", "mean")


@dataclass
class ClassificationArguments:
    """The options of --task classification (the text column is a data option: `--text_column`)."""

    text_pair_column: str | None = field(
        default=None, metadata={"help": "Second text of a pair (e.g. a hypothesis)."}
    )
    label_column: str = field(default="label", metadata={"help": "Column holding the label."})
    class_names: list[str] | None = field(
        default=None, metadata={"help": "Every label, in id order (default: the sorted training labels). Integer "
                                        "labels then index these names."}
    )
    classifier_pooling: str | None = field(
        default=None, metadata={"choices": [None, *POOLINGS],
                                "help": "What the head reads, the last real token (last) or the mean over the real "
                                        "tokens (mean); default: the model config's (last)."}
    )

    def __post_init__(self):
        if self.classifier_pooling not in (None, *POOLINGS):
            raise ValueError(f"--classifier_pooling must be last or mean, got {self.classifier_pooling!r}")


def classification_metrics(predictions, references, num_labels: int) -> dict[str, float]:
    """Accuracy, macro F1 and, for two labels, binary F1/precision/recall of label 1 (else macro averages)."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    average = "binary" if num_labels == 2 else "macro"
    metrics = load_metric("accuracy").compute(predictions=predictions, references=references)
    metrics["f1"] = load_metric("f1").compute(predictions=predictions, references=references, average=average)["f1"]
    metrics["macro_f1"] = load_metric("f1").compute(predictions=predictions, references=references,
                                                    average="macro")["f1"]
    for name in ("precision", "recall"):
        metrics[name] = load_metric(name).compute(predictions=predictions, references=references,
                                                  average=average)[name]
    return metrics


def majority_label(labels) -> int:
    """The most frequent training label (the smallest id on a tie)."""
    counts = np.bincount(np.asarray(labels))
    return int(counts.argmax())


class ClassificationTask(FinetuneTask):
    name = "classification"
    pipeline_tag = "text-classification"
    card_task_name = "Text classification"
    peft_task_type = "SEQ_CLS"
    auto_model_class = AutoModelForSequenceClassification
    # the card's headline adds the majority-class rate (majority_rate), which is no result of the model
    result_metrics = (("accuracy", "accuracy", "Accuracy"), ("macro_f1", "f1", "Macro F1"),
                      ("f1", "f1", "F1 (of label 1 when binary, else macro)"))
    lora_modules_to_save = ["score"]
    # The embeddings adapted too (a low-rank update of embed_tokens: 68 k weights at r 8, 43 % more adapter): on a small
    # base, whose word embeddings have not learnt sentiment, SST-2 LoRA went from 75.3 % to 78.5 % test accuracy
    # (full fine-tuning 79.1-79.7 %; benchmarks/bench_finetune.py, 5.3 M-parameter base, lr 1e-3, r 8, 3 epochs).
    lora_target_modules = (*FinetuneTask.lora_target_modules, "embed_tokens")
    # benchmarks/bench_finetune.py on SST-2 dev: full fine-tuning 75.9 % at 1e-3 against 60.0 % at 1e-4 (tiny base, one
    # epoch); LoRA (r 8, 5.3 M-parameter base, 3 epochs) 74.7 % at 1e-3, 71.3 % at 5e-4, the majority class at 5e-3.
    default_learning_rate = {"full": 1e-3, "lora": 1e-3}
    arguments = ClassificationArguments

    def build_data(self, train, validation, test, tokenizer, *, data_args, max_length: int):
        return build_classification_data(
            train, validation, test, tokenizer, text_column=data_args.text_column,
            text_pair_column=self.options.text_pair_column, label_column=self.options.label_column,
            label_names=self.options.class_names, max_length=max_length,
        )

    def model_kwargs(self, data, tokenizer):
        pooling = self.options.classifier_pooling  # None keeps the model config's
        return {"num_labels": len(data.id2label), "id2label": data.id2label, "label2id": data.label2id,
                "pad_token_id": tokenizer.pad_token_id, **({"classifier_pooling": pooling} if pooling else {})}

    def collator(self, tokenizer):
        return DataCollatorWithPadding(tokenizer)

    def compute_metrics(self, data):
        num_labels = len(data.id2label)
        majority = majority_label(data.train["labels"])

        def compute(eval_prediction):
            logits = eval_prediction.predictions
            logits = logits[0] if isinstance(logits, tuple) else logits
            metrics = classification_metrics(logits.argmax(-1), eval_prediction.label_ids, num_labels)
            # what always answering the training labels' majority class scores on this split: the bar to beat
            metrics["majority_rate"] = float(np.mean(np.asarray(eval_prediction.label_ids) == majority))
            return metrics

        return compute

    def card_fields(self, data):
        return {"id2label": {str(index): label for index, label in data.id2label.items()}}
