"""The run record: what a finished run knows about itself, written to `scratchlm_run.json` by every command.

One typed object (`RunRecord`, to and from JSON) that the model card, publishing and the commands read as fields;
and the one home of the names of a run directory's files, of "is this directory a LoRA adapter?", of Hub-id
checks and of the card's evaluation results.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from scratchlm.files import atomic_write_text

# The files of a run directory.
RUN_RECORD_FILE = "scratchlm_run.json"
CHAT_TASKS = ("sft", "dpo")  # fine-tuning tasks whose model is used through its chat template
RUN_SETTINGS_FILE = "scratchlm_settings.json"
RUN_LOCK_FILE = ".scratchlm.lock"
METRICS_FILE = "metrics.json"
LOSS_CURVE_FILE = "loss_curve.png"
MODEL_CARD_FILE = "README.md"
CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
SAFE_WEIGHTS_FILE = "model.safetensors"
SAFE_WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
MERGED_DIR = "merged"

TASKS = ("text-generation", "text-classification", "question-answering", "text2text-generation")
TASK_NAMES = {"text-generation": "Language modelling", "text-classification": "Text classification",
              "question-answering": "Extractive question answering", "text2text-generation": "Sequence to sequence"}
# Metric key -> (metric type on the Hub, label on the card), in the order the card shows them.
KNOWN_METRICS = {
    "eval_perplexity": ("perplexity", "Perplexity"),
    "eval_bits_per_byte": ("bits_per_byte", "Bits per byte"),
    "eval_loss": ("loss", "Loss (nats per token)"),
    "eval_accuracy": ("accuracy", "Accuracy"),
    "eval_f1": ("f1", "F1"),
    "eval_macro_f1": ("f1", "Macro F1"),
}


def is_adapter_dir(path: str | Path) -> bool:
    """A LoRA adapter saved on its own: adapter_config.json and no config.json of a full model beside it."""
    path = Path(path)
    return (path / ADAPTER_CONFIG_FILE).is_file() and not (path / CONFIG_FILE).is_file()


def is_hub_id(name: Any) -> bool:
    """Whether `name` can be a Hub repository id (and is not a path on this machine)."""
    if not isinstance(name, str) or not name or name.startswith((".", "/", "~")) or "\\" in name:
        return False
    if Path(name).exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def check_hub_id(repo_id: Any, *, require_namespace: bool = True) -> str:
    """A Hub model repository id (`user/name`), or a `ValueError` saying what is wrong with it."""
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise ValueError("a repository id is needed: --repo_id USER/NAME")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"invalid repository id {repo_id!r}: {error}") from None
    if require_namespace and repo_id.count("/") != 1:
        raise ValueError(f"invalid repository id {repo_id!r}: give it as USER/NAME (or ORGANIZATION/NAME), "
                         f"e.g. alice/{repo_id}")
    return repo_id


def finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def eval_result(metric_key: str, value: float, *, task_type: str, task_name: str, dataset_name: str,
                dataset_type: str = "text", split: str = "validation", metric_type: str | None = None,
                label: str | None = None) -> dict[str, Any]:
    """One model-index entry of the card (`huggingface_hub.EvalResult` fields)."""
    known_type, known_label = KNOWN_METRICS.get(f"eval_{metric_key.split('_', 1)[-1]}", (metric_key, metric_key))
    return {"task_type": task_type, "task_name": task_name, "dataset_name": dataset_name,
            "dataset_type": dataset_type, "dataset_split": split, "metric_type": metric_type or known_type,
            "metric_name": label or known_label, "metric_value": round(float(value), 4)}


def eval_results(metrics: Mapping[str, Any], names: tuple[tuple[str, str, str], ...], *, task_type: str,
                 task_name: str, sources: Mapping[str, str], dataset_type: str = "text") -> list[dict[str, Any]]:
    """The card's results: each finite metric `{prefix}_{key}` of `names` ((key, metric type, label), ...) for each
    split of `sources` ({"eval": "validation data names", "test": ...})."""
    splits = {"eval": "validation", "test": "test"}
    results = []
    for prefix, dataset_name in sources.items():
        for key, metric_type, label in names:
            value = metrics.get(f"{prefix}_{key}")
            if finite_number(value):
                results.append(eval_result(key, value, task_type=task_type, task_name=task_name,
                                           dataset_name=dataset_name, dataset_type=dataset_type,
                                           split=splits[prefix], metric_type=metric_type, label=label))
    return results


@dataclass
class RunRecord:
    """Everything the model card and publishing know about a run. Written by `finish_run` of every command."""

    task: str | None = None  # the Hub pipeline tag: text-generation, text-classification
    model_name: str | None = None
    kind: str = "pretraining"  # pretraining or finetuning
    method: str = "full"  # full or lora
    base_model: str | None = None  # what the run started from (absolute path locally, or a Hub id)
    datasets: list[str] = field(default_factory=list)  # the training data
    validation_datasets: list[str] = field(default_factory=list)  # evaluation data that is not training data
    test_datasets: list[str] = field(default_factory=list)
    language: list[str] | None = None
    language_inferred: bool = False  # `language` was detected in the training text, not given with --language
    license: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    eval_results: list[dict[str, Any]] = field(default_factory=list)
    samples: list[Any] = field(default_factory=list)
    training_time_s: float | None = None
    architecture: dict[str, Any] = field(default_factory=dict)
    num_parameters: int | None = None
    trainable_parameters: int | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    global_step: int | None = None
    train_losses: dict[str, float] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    finished_at: str | None = None
    loss_curve: str | None = None
    # pretraining
    cleaning_report: dict[str, Any] | None = None
    train_tokens: int | None = None
    validation_bytes: int | None = None
    data_from_cache: bool | None = None
    # fine-tuning
    data_report: dict[str, Any] | None = None
    id2label: dict[str, str] | None = None
    finetune_task: str | None = None  # the --task of a fine-tuning run: classification, sft, qa, ...
    qa: dict[str, Any] | None = None  # extractive QA: window and span-decoding settings (read by inference.qa)
    adapter: dict[str, Any] | None = None  # LoRA: base_model_name_or_path, r, lora_alpha, ...
    merged: bool = False  # this directory holds the adapter merged into its base
    merged_model: str | None = None  # where the merged model of this (adapter) run is

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunRecord:
        """A record from its JSON form. Missing fields take their defaults and fields this version does not know
        (written by a newer one) are ignored, so records written by other versions still load."""
        if isinstance(values, RunRecord):
            return values
        if not isinstance(values, Mapping):
            raise TypeError(f"a run record must be a mapping, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known and value is not None})

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    @classmethod
    def load(cls, directory: str | Path) -> RunRecord:
        path = Path(directory) / RUN_RECORD_FILE
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read the run record {path}: {error}") from None
        return cls.from_dict(values)

    def save(self, directory: str | Path) -> Path:
        return atomic_write_text(Path(directory) / RUN_RECORD_FILE, json.dumps(self.to_dict(), indent=2) + "\n")

    @property
    def is_instruction_tuned(self) -> bool:
        """Tuned on chats (SFT, DPO): the model answers prompts given through its chat template."""
        if self.finetune_task is not None:
            return self.finetune_task in CHAT_TASKS
        return self.kind == "finetuning" and self.task == "text-generation"

    @property
    def is_finetune(self) -> bool:
        return self.kind == "finetuning" or self.method == "lora" or bool(self.adapter)

    @property
    def adapter_base(self) -> str | None:
        """The base model of a LoRA run (as its adapter records it), else the model the run started from."""
        return (self.adapter or {}).get("base_model_name_or_path") or self.base_model
