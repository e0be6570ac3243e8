"""`scratchlm-finetune`: adapt a pretrained ScratchLM model to text classification or to following instructions.

    # sentiment: text (or text pair) -> label, full fine-tuning
    scratchlm-finetune --task classification --model_name_or_path out/pretrained --train_files train.csv \\
        --validation_files dev.csv --test_files test.csv --text_column review --label_column label --output_dir out/cls
    # instruction following (Alpaca or chat format) with LoRA, merged into a standalone model at the end
    scratchlm-finetune --task sft --method lora --model_name_or_path out/pretrained --train_files data.json \\
        --activation_checkpointing --merge --output_dir out/sft
    scratchlm-finetune configs/finetune-sst2-lora.yaml --max_steps 10      # a config file plus overrides
    torchrun --nproc_per_node=2 -m scratchlm.training.finetune ...         # several processes, as for pretraining

Classification: labels (strings or integers) become the config's `id2label`/`label2id` (the sorted training labels,
or `--class_names` in id order); the model is `AutoModelForSequenceClassification` with a new `score` head that
pools the last real token (every text ends with eos; `DataCollatorWithPadding` pads on the right and the model finds
the last real token from the attention mask). Metrics (accuracy, F1, precision, recall; binary for two labels with
label id 1 as the positive class, plus macro F1) come from the `evaluate` modules shipped in
`scratchlm/training/metrics/`, loaded by path: nothing needs the Hub.

SFT: every example is rendered with the tokenizer's chat template (Alpaca records become system/user/assistant
chats) and the loss counts the assistant replies only (closing eos included). Examples longer than `--block_size`
are cut (counted); those with nothing of the reply left are dropped (counted; an error when none is left).
`--packing` concatenates whole training examples into `--block_size` sequences. The held-out loss is measured
before and after training, and a few held-out prompts are answered at the end.

LoRA (`--method lora`, with peft): rank, alpha and dropout are options; the target modules default to every linear
layer of attention and MLP (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`); the classification head is trained
in full and saved with the adapter. It works with `--activation_checkpointing` (gradient checkpointing, non-reentrant
unless `--activation_checkpointing_kwargs` says otherwise). `output_dir` then holds the adapter (`adapter_config.json`
with the base model's path, `adapter_model.safetensors`), which loads with `PeftModel.from_pretrained` or
`AutoPeftModelForCausalLM`; for
a classifier build the base first with `AutoModelForSequenceClassification.from_pretrained(base, num_labels=...)`.
`--merge` also writes `output_dir/merged`: the adapter merged into a standalone model that loads with the Auto
classes without peft. `--adapter_name_or_path` continues training an existing adapter of the same base.

Data: `--train_files`/`--validation_files`/`--test_files` (csv, tsv, jsonl, json, parquet) or `--dataset_name` with
its splits; without validation data `--validation_fraction` of the training rows is held out (a seeded random split).

Checks before training: the base directory holds a ScratchLM model (not a LoRA adapter or another architecture),
an adapter fits the base and the task, the columns exist, every label is in the label set (an error naming the label
and its row). Rows with an empty text are dropped with a count (an error when none is left). The run resumes from
its last complete checkpoint, logs to TensorBoard and ends with `metrics.json`, `scratchlm_run.json` and a model card.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import resource
import sys
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import evaluate
import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    DataCollatorWithPadding,
    Trainer,
    set_seed,
)

from scratchlm.cli import parse_args

from .arguments import DataArguments, ModelArguments, ScratchLMTrainingArguments
from .callbacks import LossCurveCallback, PerplexityCallback, add_language_model_metrics
from .data import IGNORE_INDEX, build_classification_data, build_sft_data, check_tokenizer_fits, load_tables
from .pretrain import SampleArguments, sample_generations
from .publish import push_run_to_hub
from .run import finish_run, last_complete_checkpoint, prepare_output_dir

logger = logging.getLogger(__name__)

TASKS = ("classification", "sft")
METHODS = ("full", "lora")
DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
METRICS_DIR = Path(__file__).with_name("metrics")
MERGED_DIR = "merged"
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
NOT_METRICS = ("_runtime", "_per_second", "_preparation_time")  # timings the Trainer adds to evaluation results


@dataclass
class FinetuneArguments:
    task: str = field(default="classification", metadata={"help": "classification or sft (instruction following)."})
    method: str = field(default="full", metadata={"help": "full (every weight) or lora (peft adapter)."})
    test_files: list[str] | None = field(default=None, metadata={"help": "Test data, evaluated once at the end."})
    test_split: str | None = field(default=None, metadata={"help": "Split of --dataset_name to test on."})
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Classification: second text of a pair (e.g. a hypothesis)."}
    )
    label_column: str = field(default="label", metadata={"help": "Classification: column holding the label."})
    class_names: list[str] | None = field(
        default=None, metadata={"help": "Classification: every label, in id order (default: the sorted training "
                                        "labels). Integer labels then index these names."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on at most this many rows."})
    system_prompt: str | None = field(default=None, metadata={"help": "SFT: system message put before every chat."})
    packing: bool = field(default=False, metadata={"help": "SFT: pack whole training examples into --block_size."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=16, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_LORA_TARGETS),
        metadata={"help": "Linear layers that get LoRA adapters (default: all of attention and MLP)."},
    )
    adapter_name_or_path: str | None = field(
        default=None, metadata={"help": "LoRA: an existing adapter of this base model to continue training."}
    )
    merge: bool = field(
        default=False, metadata={"help": "LoRA: also save the adapter merged into a standalone model in "
                                         "output_dir/merged (loads without peft)."}
    )
    evaluate_before_training: bool = field(
        default=True, metadata={"help": "Measure the validation and test metrics before training too (recorded as "
                                        "eval_*_before, test_*_before)."}
    )

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.method != "lora" and (self.merge or self.adapter_name_or_path):
            raise ValueError("--merge and --adapter_name_or_path need --method lora")


@dataclass
class FinetuneTrainingArguments(ScratchLMTrainingArguments):
    """The project's Trainer defaults, with a learning rate, schedule and checkpointing suited to fine-tuning."""

    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate (LoRA usually wants ~1e-3)."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Passes over the training data."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps, epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to checkpoint: no, steps, epoch."})


# ----------------------------------------------------------------------------------------------------------------
# Checks on the base model and the adapter


def check_base_model(path: str, trust_remote_code: bool = False):
    """The config of the ScratchLM model at `path`; a clear error for an adapter, another model type or no model."""
    local = Path(path)
    if (local / ADAPTER_CONFIG_FILE).is_file() and not (local / "config.json").is_file():
        raise ValueError(f"{path} is a LoRA adapter, not a model: pass its base model as --model_name_or_path and "
                         "the adapter as --adapter_name_or_path")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a model directory (or Hub id) with a config.json: {error}") from None
    if config.model_type != "scratchlm":
        raise ValueError(f"{path} holds a {config.model_type!r} model, not a ScratchLM model: scratchlm-finetune "
                         "fine-tunes ScratchLM models (a Llama model converts with scratchlm-convert)")
    return config


def _same_base(recorded: str | None, given: str) -> bool:
    if not recorded:
        return True
    if Path(recorded).exists() and Path(given).exists():
        return Path(recorded).resolve() == Path(given).resolve()
    return recorded.rstrip("/") == given.rstrip("/")


def check_adapter(adapter_path: str, base_path: str, model, task_type: str) -> None:
    """Refuse an adapter trained for another task or whose weights do not fit `model` (another base); warn when
    it records another base path but fits (a moved or copied base)."""
    from peft import PeftConfig
    from safetensors import safe_open

    try:
        adapter_config = PeftConfig.from_pretrained(adapter_path)
    except (OSError, ValueError) as error:
        raise ValueError(f"{adapter_path} is not a peft adapter directory: {error}") from None
    if str(adapter_config.task_type) != task_type:
        raise ValueError(f"the adapter {adapter_path} was trained for {adapter_config.task_type}, this run is "
                         f"{task_type}")
    shapes = dict(model.named_parameters())
    mismatches = []
    weights = Path(adapter_path) / ADAPTER_WEIGHTS_FILE
    if weights.is_file():
        with safe_open(str(weights), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
                mismatch = _adapter_weight_mismatch(key, tuple(handle.get_slice(key).get_shape()), model, shapes)
                if mismatch:
                    mismatches.append(mismatch)
    recorded = adapter_config.base_model_name_or_path
    if mismatches:
        raise ValueError(
            f"the adapter {adapter_path} was trained on another base model ({recorded}) than {base_path}: "
            + "; ".join(mismatches[:3]) + (f" (and {len(mismatches) - 3} more)" if len(mismatches) > 3 else "")
        )
    if not _same_base(recorded, base_path):
        logger.warning("the adapter %s records the base model %s, not %s; its weights fit, so it is used",
                       adapter_path, recorded, base_path)


def _adapter_weight_mismatch(key: str, shape: tuple, model, parameters: dict) -> str | None:
    """`key` is a saved adapter tensor ('base_model.model.<module>.lora_A.weight', or a fully saved module's)."""
    name = key.removeprefix("base_model.model.")
    for part, dim, attribute in ((".lora_A.weight", 1, "in_features"), (".lora_B.weight", 0, "out_features")):
        if name.endswith(part):
            module_name = name.removesuffix(part)
            try:
                module = model.get_submodule(module_name)
            except AttributeError:
                return f"the base has no layer {module_name}"
            expected = getattr(module, attribute, None)
            if expected != shape[dim]:
                return f"{module_name} has {attribute}={expected}, the adapter {shape[dim]}"
            return None
    name = name.replace(".modules_to_save.default.", ".").replace(".original_module.", ".")
    if name in parameters and tuple(parameters[name].shape) != shape:
        return f"{name} is {tuple(parameters[name].shape)} in the base, {shape} in the adapter"
    return None


def check_target_modules(model, targets: list[str]) -> None:
    linear = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                     if isinstance(module, torch.nn.Linear)})
    missing = [target for target in targets if target not in linear]
    if missing:
        raise ValueError(f"--lora_target_modules {', '.join(missing)} not in the model; its linear layers are "
                         f"{', '.join(linear)}")


# ----------------------------------------------------------------------------------------------------------------
# Model


def load_model(model_args: ModelArguments, finetune_args: FinetuneArguments, tokenizer, labels=None):
    """The base model for the task (a new `score` head for classification), with LoRA applied for --method lora."""
    path = model_args.model_name_or_path
    common = {"attn_implementation": model_args.attn_implementation, "trust_remote_code": model_args.trust_remote_code}
    if finetune_args.task == "classification":
        id2label, label2id = labels
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(id2label), id2label=id2label, label2id=label2id,
            pad_token_id=tokenizer.pad_token_id, **common,
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **common)
        if model.generation_config is not None and model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    check_tokenizer_fits(tokenizer, model.config)
    if finetune_args.method == "lora":
        model = apply_lora(model, model_args, finetune_args)
    return model


def peft_task_type(task: str) -> str:
    return "SEQ_CLS" if task == "classification" else "CAUSAL_LM"


def apply_lora(model, model_args: ModelArguments, finetune_args: FinetuneArguments):
    from peft import LoraConfig, PeftModel, get_peft_model

    task_type = peft_task_type(finetune_args.task)
    # Record where the base is, so AutoPeftModel* finds it from any working directory.
    base = model_args.model_name_or_path
    model.config._name_or_path = str(Path(base).resolve()) if Path(base).is_dir() else base
    if finetune_args.adapter_name_or_path:
        check_adapter(finetune_args.adapter_name_or_path, base, model, task_type)
        return PeftModel.from_pretrained(model, finetune_args.adapter_name_or_path, is_trainable=True)
    check_target_modules(model, finetune_args.lora_target_modules)
    config = LoraConfig(
        task_type=task_type,
        r=finetune_args.lora_r,
        lora_alpha=finetune_args.lora_alpha,
        lora_dropout=finetune_args.lora_dropout,
        target_modules=list(finetune_args.lora_target_modules),
        modules_to_save=["score"] if finetune_args.task == "classification" else None,
    )
    return get_peft_model(model, config)


def adapter_summary(model) -> dict[str, Any]:
    config = model.peft_config[model.active_adapter]
    return {
        "base_model_name_or_path": config.base_model_name_or_path,
        "r": config.r,
        "lora_alpha": config.lora_alpha,
        "lora_dropout": config.lora_dropout,
        "target_modules": sorted(config.target_modules),
        "modules_to_save": sorted(set(config.modules_to_save or [])),
    }


def count_parameters(model) -> tuple[int, int]:
    """(trainable, all) parameters; for a peft model, all = base + adapter."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def save_merged_model(model, tokenizer, output_dir: Path, record: dict[str, Any]) -> Path:
    """Merge the LoRA weights into the base (the peft model is used up) and save a standalone model and its card."""
    from scratchlm.model_cards import write_model_card

    merged = model.merge_and_unload()
    target = output_dir / MERGED_DIR
    merged.save_pretrained(target)
    tokenizer.save_pretrained(target)
    if getattr(merged, "generation_config", None) is not None and hasattr(merged, "generate"):
        merged.generation_config.save_pretrained(target)
    merged_record = {**record, "merged": True, "num_parameters": merged.num_parameters(),
                     "model_name": f"{record.get('model_name', 'model')}-merged"}
    (target / "scratchlm_run.json").write_text(json.dumps(merged_record, indent=2, default=str) + "\n")
    write_model_card(target, merged_record)
    return target


# ----------------------------------------------------------------------------------------------------------------
# Data and metrics


def load_splits(data_args: DataArguments, finetune_args: FinetuneArguments, seed: int):
    """(train, validation, test) tables; without validation data a `validation_fraction` of train is held out."""
    if data_args.train_files:
        train = load_tables(data_args.train_files)
        validation = load_tables(data_args.validation_files)
        test = load_tables(finetune_args.test_files)
    elif data_args.dataset_name:
        def split(name):
            return load_tables(data_args.dataset_name, split=name, dataset_config=data_args.dataset_config_name) \
                if name else None
        train, validation, test = split(data_args.train_split), split(data_args.validation_split), \
            split(finetune_args.test_split)
    else:
        raise ValueError("no training data: give --train_files or --dataset_name")
    if len(train) == 0:
        raise ValueError("the training data is empty")
    if validation is None and data_args.validation_fraction > 0:
        held_out = train.train_test_split(test_size=data_args.validation_fraction, seed=seed, shuffle=True)
        train, validation = held_out["train"], held_out["test"]
        logger.warning("no validation data: holding out %d of the training rows", len(validation))
    if data_args.max_train_documents:
        train = train.select(range(min(data_args.max_train_documents, len(train))))
    if finetune_args.max_eval_samples:
        validation, test = (t.select(range(min(finetune_args.max_eval_samples, len(t)))) if t is not None else None
                            for t in (validation, test))
    return train, validation, test


def data_sources(data_args: DataArguments, finetune_args: FinetuneArguments) -> list[str]:
    if data_args.dataset_name:
        return [data_args.dataset_name]
    return [*data_args.train_files, *(data_args.validation_files or []), *(finetune_args.test_files or [])]


@cache
def load_metric(name: str):
    """One of the `evaluate` metric modules shipped with the package (accuracy, f1, precision, recall), by path."""
    path = METRICS_DIR / name
    if not (path / f"{name}.py").is_file():
        raise ValueError(f"no metric {name!r} in {METRICS_DIR} (there are: "
                         f"{', '.join(sorted(p.name for p in METRICS_DIR.iterdir() if p.is_dir()))})")
    return evaluate.load(str(path))


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


def compute_classification_metrics(num_labels: int):
    def compute(eval_prediction):
        logits = eval_prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        return classification_metrics(logits.argmax(-1), eval_prediction.label_ids, num_labels)

    return compute


def peak_memory_mb() -> float:
    """Peak accelerator memory allocated, or on a CPU the process's peak resident memory (MiB)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def chat_samples(model, tokenizer, chats: list[list[dict]], sample_args: SampleArguments, seed: int) -> list[dict]:
    """Answers to held-out chats (their reference reply kept) or to --sample_prompts, via the chat template."""
    if sample_args.sample_prompts:
        chats = [[{"role": "user", "content": prompt}] for prompt in sample_args.sample_prompts]
    chats = chats[:sample_args.num_samples]
    prompts = [chat[:-1] if chat[-1]["role"] == "assistant" else chat for chat in chats]
    rendered = [tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) for prompt in prompts]
    generated = sample_generations(model, tokenizer, rendered, sample_args.sample_max_new_tokens, seed)
    samples = []
    for chat, prompt, sample in zip(chats, prompts, generated):
        entry = {"prompt": prompt[-1]["content"], "completion": sample["completion"].strip()}
        if chat[-1]["role"] == "assistant":
            entry["reference"] = chat[-1]["content"]
        samples.append(entry)
    return samples


# ----------------------------------------------------------------------------------------------------------------
# The command


def load_tokenizer(model_args: ModelArguments):
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name_or_path or model_args.model_name_or_path,
                                              trust_remote_code=model_args.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def prepare_data_and_model(model_args: ModelArguments, data_args: DataArguments, finetune_args: FinetuneArguments,
                           tokenizer, base_config, seed: int):
    """(data, model, collator) for the task: the data checked and tokenized first, so bad data fails fast."""
    context = base_config.max_position_embeddings
    max_length = min(data_args.block_size or context, context)
    train, validation, test = load_splits(data_args, finetune_args, seed)
    if finetune_args.task == "classification":
        data = build_classification_data(
            train, validation, test, tokenizer, text_column=data_args.text_column,
            text_pair_column=finetune_args.text_pair_column, label_column=finetune_args.label_column,
            label_names=finetune_args.class_names, max_length=max_length,
        )
        model = load_model(model_args, finetune_args, tokenizer, (data.id2label, data.label2id))
        return data, model, DataCollatorWithPadding(tokenizer)
    data = build_sft_data(train, validation, test, tokenizer, max_length=max_length,
                          system_prompt=finetune_args.system_prompt, packing=finetune_args.packing)
    model = load_model(model_args, finetune_args, tokenizer)
    return data, model, DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX, padding=True)


def finetune(model_args: ModelArguments, data_args: DataArguments, finetune_args: FinetuneArguments,
             training_args: ScratchLMTrainingArguments, sample_args: SampleArguments | None = None) -> dict:
    sample_args = sample_args or SampleArguments()
    if not model_args.model_name_or_path:
        raise ValueError("--model_name_or_path is required: the pretrained ScratchLM directory to fine-tune")
    base_config = check_base_model(model_args.model_name_or_path, model_args.trust_remote_code)
    output_dir = Path(training_args.output_dir)
    push = training_args.push_to_hub
    training_args.push_to_hub = False  # published at the end by push_run_to_hub (the card and the right files)
    if finetune_args.method == "lora" and training_args.activation_checkpointing:
        # Reentrant checkpointing needs inputs that require grad, which frozen embeddings do not give.
        # (transformers 5.24 reads activation_checkpointing*; gradient_checkpointing* are its deprecated aliases.)
        training_args.activation_checkpointing_kwargs = {"use_reentrant": False,
                                                         **(training_args.activation_checkpointing_kwargs or {})}
    settings = {"model": dataclasses.asdict(model_args), "data": dataclasses.asdict(data_args),
                "finetune": dataclasses.asdict(finetune_args), "training": training_args.run_identity()}
    classification = finetune_args.task == "classification"

    with training_args.main_process_first(desc="output directory, data and model"):
        if training_args.process_index == 0:
            prepare_output_dir(output_dir, settings, training_args.overwrite_output)
        set_seed(training_args.seed)
        tokenizer = load_tokenizer(model_args)
        data, model, collator = prepare_data_and_model(model_args, data_args, finetune_args, tokenizer, base_config,
                                                       training_args.seed)
    if finetune_args.method == "lora" and training_args.activation_checkpointing:
        model.enable_input_require_grads()  # for reentrant checkpointing, when asked for explicitly

    trainable, total = count_parameters(model)
    resume_from = (
        last_complete_checkpoint(output_dir) if training_args.resume and not training_args.overwrite_output else None
    )
    logger.warning("%s fine-tuning (%s) of %s: %s of %s parameters trainable; %d training examples%s",
                   finetune_args.task, finetune_args.method, model_args.model_name_or_path, f"{trainable:,}",
                   f"{total:,}", len(data.train), f"; resuming from {resume_from}" if resume_from else "")
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=compute_classification_metrics(len(data.id2label)) if classification else None,
        callbacks=[LossCurveCallback()] + ([] if classification else [PerplexityCallback()]),
    )

    metrics: dict[str, float] = {}
    if finetune_args.evaluate_before_training and not resume_from:
        for prefix, dataset in (("eval", data.validation), ("test", data.test)):
            if dataset is not None:
                before = trainer.evaluate(dataset, metric_key_prefix=prefix)
                metrics.update({f"{key}_before": value for key, value in before.items()
                                if key.startswith(f"{prefix}_") and not key.endswith(NOT_METRICS)})
    started = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=resume_from)
    training_time = time.perf_counter() - started
    metrics.update(train_result.metrics)
    if data.validation is not None:
        metrics.update(trainer.evaluate())
    if data.test is not None:
        metrics.update(trainer.evaluate(data.test, metric_key_prefix="test"))
    if not classification:
        for prefix in ("eval_", "test_"):
            if f"{prefix}loss" in metrics:
                add_language_model_metrics(metrics, None, None, prefix=prefix)
    metrics["peak_memory_mb"] = round(peak_memory_mb(), 1)
    trainer.log_metrics("all", metrics)

    samples = []
    if not classification and trainer.is_world_process_zero() and sample_args.num_samples > 0:
        samples = chat_samples(trainer.model, tokenizer, data.sample_chats, sample_args, training_args.seed)

    record = {
        "task": "text-classification" if classification else "text-generation",
        "kind": "finetuning",
        "method": finetune_args.method,
        "base_model": model_args.model_name_or_path,
        "model_name": output_dir.name,
        "datasets": data_sources(data_args, finetune_args),
        "language": data_args.language,
        "metrics": metrics,
        "eval_results": eval_results(metrics, finetune_args, data_args),
        "samples": samples,
        "training_time_s": round(training_time, 1),
        "trainable_parameters": trainable,
        "data_report": {split: report.to_dict() for split, report in data.reports.items()},
    }
    if classification:
        record["id2label"] = {str(index): label for index, label in data.id2label.items()}
    if finetune_args.method == "lora":
        record["adapter"] = adapter_summary(trainer.model)
    record = finish_run(trainer, tokenizer, record)
    if finetune_args.merge and trainer.is_world_process_zero():
        record["merged_model"] = str(save_merged_model(trainer.model, tokenizer, output_dir, record))
    if push and trainer.is_world_process_zero():
        push_run_to_hub(trainer, record)
    if trainer.is_world_process_zero():
        report_run(record, output_dir)
    return record


def eval_results(metrics: dict[str, float], finetune_args: FinetuneArguments, data_args: DataArguments) -> list[dict]:
    """The model card's results: each measured metric on the validation and test data."""
    if finetune_args.task == "classification":
        task_type, task_name = "text-classification", "Text classification"
        names = (("accuracy", "accuracy", "Accuracy"), ("f1", "f1", "F1"), ("macro_f1", "f1", "Macro F1"))
    else:
        task_type, task_name = "text-generation", "Instruction following"
        names = (("loss", "loss", "Loss on the replies (nats per token)"), ("perplexity", "perplexity", "Perplexity"))
    sources = {"eval": data_args.validation_files or ([data_args.dataset_name] if data_args.dataset_name else None)
               or data_args.train_files, "test": finetune_args.test_files or [data_args.dataset_name]}
    results = []
    for prefix, split in (("eval", "validation"), ("test", "test")):
        for key, metric_type, label in names:
            value = metrics.get(f"{prefix}_{key}")
            if isinstance(value, (int, float)) and math.isfinite(value):
                results.append({"task_type": task_type, "task_name": task_name,
                                "dataset_name": ", ".join(str(s) for s in sources[prefix] if s),
                                "dataset_type": data_args.dataset_name or "text", "dataset_split": split,
                                "metric_type": metric_type, "metric_name": label,
                                "metric_value": round(float(value), 4)})
    return results


def report_run(record: dict[str, Any], output_dir: Path) -> None:
    metrics = record["metrics"]
    for sample in record.get("samples") or []:
        print(f"\n--- {sample['prompt']}\n>>> {sample['completion']}")
    shown = {key: value for key, value in metrics.items()
             if key.startswith(("eval_", "test_")) and not key.endswith(NOT_METRICS)}
    print("\n" + ", ".join(f"{key} {value:.4f}" for key, value in shown.items() if isinstance(value, float)))
    print(f"{record['trainable_parameters']:,} trainable parameters, {record['training_time_s']:.0f} s, "
          f"peak memory {metrics['peak_memory_mb']:.0f} MiB; model, metrics and card in {output_dir}"
          + (f"; merged model in {record['merged_model']}" if record.get("merged_model") else ""))


def main(argv=None) -> None:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    model_args, data_args, finetune_args, training_args, sample_args = parse_args(
        [ModelArguments, DataArguments, FinetuneArguments, FinetuneTrainingArguments, SampleArguments], argv,
        description="Fine-tune a pretrained ScratchLM model for text classification or instruction following.",
    )
    finetune(model_args, data_args, finetune_args, training_args, sample_args)


if __name__ == "__main__":
    main()
