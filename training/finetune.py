"""`scratchlm-finetune`: adapt a pretrained ScratchLM model to text classification, following instructions, or
(an encoder-decoder, `--task seq2seq`) translation and summarisation.

    # sentiment: text (or text pair) -> label, full fine-tuning
    scratchlm-finetune --task classification --model_name_or_path out/pretrained --train_files train.csv \\
        --validation_files dev.csv --test_files test.csv --text_column review --label_column label --output_dir out/cls
    # instruction following (Alpaca or chat format) with LoRA, merged into a standalone model at the end
    scratchlm-finetune --task sft --method lora --model_name_or_path out/pretrained --train_files data.json \\
        --activation_checkpointing --merge --output_dir out/sft
    # translation / summarisation with an encoder-decoder (scratchlm-init --architecture seq2seq, or pretrained
    # with scratchlm-pretrain --objective span_corruption): parallel text files (source first) or tables
    scratchlm-finetune --task seq2seq --model_name_or_path init-seq2seq --train_files train.en train.de \
        --validation_files val.en val.de --test_files test.en test.de --generation_num_beams 4 --output_dir out/mt
    scratchlm-finetune configs/finetune-sst2-lora.yaml --max_steps 10      # a config file plus overrides
    torchrun --nproc_per_node=2 -m scratchlm.training.finetune ...         # several processes, as for pretraining

Each task is a module of `scratchlm.training.tasks` (its data, model, collator, metrics and card fields);
this command picks one and does the rest.

LoRA (`--method lora`, with peft): rank, alpha and dropout are options; the target modules default to every linear
layer of attention and MLP (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`); the classification head is trained
in full and saved with the adapter. It works with `--activation_checkpointing` (gradient checkpointing, non-reentrant
unless `--activation_checkpointing_kwargs` says otherwise). `output_dir` then holds the adapter (`adapter_config.json`
with the base model's absolute path or Hub id, `adapter_model.safetensors`), which loads from any working directory
with `PeftModel.from_pretrained` or `AutoPeftModelForCausalLM`; for a classifier build the base first with
`AutoModelForSequenceClassification.from_pretrained(base, num_labels=...)`.
`--merge` also writes `output_dir/merged`: the adapter merged into a standalone model that loads with the Auto
classes without peft. `--adapter_name_or_path` continues training an existing adapter of the same base.

Data: `--train_files`/`--validation_files`/`--test_files` (csv, tsv, jsonl, json, parquet) or `--dataset_name` with
its splits; without validation data `--validation_split_fraction` of the training rows is held out (a seeded random
split).

Checks before training: the base directory holds a ScratchLM model (not a LoRA adapter or another architecture),
an adapter fits the base and the task, the columns exist, every label is in the label set (an error naming the label
and its row). Rows with an empty text are dropped with a count (an error when none is left). The run resumes from
its last complete checkpoint, logs to TensorBoard and ends with `metrics.json`, `scratchlm_run.json` and a model card;
sample answers (SFT) come after those are saved, and a finished run given again is left as it is.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, IntervalStrategy, Seq2SeqTrainingArguments, set_seed

from scratchlm.cli import command, parse_args
from scratchlm.model_cards.card import classification_summary
from scratchlm.model_cards.run_record import RunRecord, eval_results, is_adapter_dir
from scratchlm.modeling.initialization import parse_config_pairs
from scratchlm.modeling.weights import check_safetensors

from .acceleration import enable_compiled_training
from .arguments import (
    FinetuneDataArguments,
    ModelArguments,
    ScratchLMTrainingArguments,
    check_local_path,
    pretrained_config_overrides,
)
from .callbacks import LogEveryStepOnceCallback, LossCurveCallback, use_log_friendly_progress, whole_run_metrics
from .data import check_max_length, check_tokenizer_fits
from .data.qa import SPAN_SELECTIONS
from .generation import SampleArguments, sample_generations
from .language import run_languages, texts_of_rows
from .lora import adapter_summary, apply_lora, resolvable, save_merged_model
from .run import (
    RunDirectory,
    add_samples,
    finish_run,
    last_complete_checkpoint,
    push_run_to_hub,
    run_training,
    warn_if_base_undertrained,
)
from .tasks import TASKS, FinetuneTask, get_task

logger = logging.getLogger(__name__)

METHODS = ("full", "lora")
NOT_METRICS = ("_runtime", "_per_second", "_preparation_time")  # timings the Trainer adds to evaluation results


@dataclass
class FinetuneArguments:
    task: str = field(default="classification", metadata={"help": f"The task: {', '.join(TASKS)}."})
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
    classifier_pooling: str | None = field(
        default=None, metadata={"help": "Classification: what the head reads, the last real token (last) or the "
                                        "mean over the real tokens (mean); default: the model config's (last)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on at most this many rows."})
    system_prompt: str | None = field(default=None, metadata={"help": "SFT: system message put before every chat."})
    packing: bool = field(default=False, metadata={"help": "SFT: pack whole training examples into --max_length."})
    beta: float = field(default=0.1, metadata={"help": "DPO: how far the policy may move from the reference model "
                                                    "(higher: closer)."})
    doc_stride: int | None = field(default=None, metadata={"help": "QA: tokens shared by consecutive windows of a "
                                                                   "long context (default: max_length / 4, <= 128)."})
    max_question_tokens: int = field(default=64, metadata={"help": "QA: longer questions are cut to this."})
    source_column: str = field(default="source", metadata={"help": "Seq2seq: column of the source text (a list "
                                                                 "of sentences is joined)."})
    target_column: str = field(default="target", metadata={"help": "Seq2seq: column of the target text (a list "
                                                                 "holds several references)."})
    max_target_length: int = field(default=128, metadata={"help": "Seq2seq: longer targets are cut to this many "
                                                                  "tokens (counted)."})
    train_on: str = field(default="each", metadata={"help": "Seq2seq: train on each reference of a row (each) or "
                                                            "the first."})
    source_prefix: str = field(default="", metadata={"help": "Seq2seq: text put before every source (a T5-style "
                                                             "task prefix)."})
    n_best: int = field(default=20, metadata={"help": "QA: start and end candidates per window when decoding."})
    max_answer_length: int = field(default=30, metadata={"help": "QA: longest answer, in tokens."})
    null_score_threshold: float = field(default=0.0, metadata={"help": "QA, SQuAD 2.0 data: answer nothing when "
                                                                       "'no answer' beats the best span by more."})
    span_selection: str = field(default="best", metadata={
        "choices": list(SPAN_SELECTIONS),
        "help": "QA: answer with the best-scoring span, or with the one of the n-best whose expected F1 under the "
                "model's span probabilities is highest (higher F1, lower exact match)."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=16, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Layers that get LoRA adapters (default: every attention and MLP projection, and for "
                          "classification the embeddings too)."},
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
        get_task(self.task)  # refuses an unknown task
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.method != "lora" and (self.merge or self.adapter_name_or_path):
            raise ValueError("--merge and --adapter_name_or_path need --method lora")
        if self.classifier_pooling not in (None, "last", "mean"):
            raise ValueError(f"--classifier_pooling must be last or mean, got {self.classifier_pooling!r}")


@dataclass
class FinetuneTrainingArguments(ScratchLMTrainingArguments, Seq2SeqTrainingArguments):
    """The project's Trainer defaults, with a learning rate, schedule and checkpointing suited to fine-tuning; the
    `Seq2SeqTrainer` options (`--generation_num_beams`, `--generation_max_length`) are read by --task seq2seq."""

    learning_rate: float | None = field(default=None, metadata={
        "help": "Peak learning rate. Default: the task's, by --method: classification 1e-3 (measured best on SST-2 "
                "dev: 75.9 against 60.0 percent accuracy at 1e-4), the other tasks 1e-4."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Passes over the training data."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps, epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to checkpoint: no, steps, epoch."})


SEQ2SEQ_MODEL_TYPE = "scratchlm_seq2seq"


def check_base_model(path: str, trust_remote_code: bool = False, task: str = "classification"):
    """The config of the ScratchLM model at `path`; a clear error for an adapter, another model type, no model, or
    an architecture the task cannot use (the encoder-decoder is for --task seq2seq only, and only it)."""
    if is_adapter_dir(path):
        raise ValueError(f"{path} is a LoRA adapter, not a model: pass its base model as --model_name_or_path and "
                         "the adapter as --adapter_name_or_path")
    check_safetensors(path)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a model directory (or Hub id) with a config.json: {error}") from None
    if task == "seq2seq" and config.model_type != SEQ2SEQ_MODEL_TYPE:
        raise ValueError(f"{path} holds a {config.model_type!r} model, but --task seq2seq needs a ScratchLM "
                         "encoder-decoder (scratchlm-init --architecture seq2seq, or scratchlm-pretrain "
                         "--objective span_corruption)")
    if task != "seq2seq" and config.model_type == SEQ2SEQ_MODEL_TYPE:
        raise ValueError(f"{path} holds a ScratchLM encoder-decoder, which only --task seq2seq fine-tunes; --task "
                         f"{task} needs a decoder-only ScratchLM model")
    if config.model_type not in ("scratchlm", SEQ2SEQ_MODEL_TYPE):
        raise ValueError(f"{path} holds a {config.model_type!r} model, not a ScratchLM model: scratchlm-finetune "
                         "fine-tunes ScratchLM models (a Llama model converts with scratchlm-convert)")
    return config


def no_evaluation_without_validation_data(training_args) -> None:
    """Without validation data there is nothing to evaluate during training: the evaluation strategy is switched off
    (the Trainer would stop with its own error), unless the run needs it to pick the best checkpoint."""
    if training_args.load_best_model_at_end:
        raise ValueError("--load_best_model_at_end needs validation data: give --validation_files or a "
                         "--validation_split_fraction above 0")
    if training_args.eval_strategy != IntervalStrategy.NO:
        logger.warning("no validation data (no --validation_files, --validation_split_fraction 0): no evaluation "
                       "during training (--eval_strategy %s ignored)", training_args.eval_strategy.value)
        training_args.eval_strategy = IntervalStrategy.NO


def load_tokenizer(model_args: ModelArguments):
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name_or_path or model_args.model_name_or_path,
                                              trust_remote_code=model_args.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(task: FinetuneTask, model_args: ModelArguments, finetune_args: FinetuneArguments, tokenizer, data):
    """The task's model on the pretrained base, with LoRA applied for --method lora."""
    model = task.auto_model_class.from_pretrained(
        model_args.model_name_or_path, attn_implementation=model_args.attn_implementation or "sdpa",
        trust_remote_code=model_args.trust_remote_code, **task.model_kwargs(data, tokenizer),
        **parse_config_pairs(model_args.config_overrides),
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    task.configure_model(model, data)
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    check_tokenizer_fits(tokenizer, model.config)
    if finetune_args.method == "lora":
        model = apply_lora(model, model_args.model_name_or_path, finetune_args, task.peft_task_type,
                           task.lora_modules_to_save)
    return model


def count_parameters(model) -> tuple[int, int]:
    """(trainable, all) parameters; for a peft model, all = base + adapter."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def peak_memory_mb() -> float:
    """Peak accelerator memory allocated, or on a CPU the process's peak resident memory (MiB)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def finetune(model_args: ModelArguments, data_args: FinetuneDataArguments, finetune_args: FinetuneArguments,
             training_args: ScratchLMTrainingArguments, sample_args: SampleArguments | None = None) -> RunRecord:
    sample_args = sample_args or SampleArguments()
    if not model_args.model_name_or_path:
        raise ValueError("--model_name_or_path is required: the pretrained ScratchLM directory to fine-tune")
    model_args.check_local_paths()
    check_local_path("adapter_name_or_path", finetune_args.adapter_name_or_path)
    base_config = check_base_model(model_args.model_name_or_path, model_args.trust_remote_code, finetune_args.task)
    pretrained_config_overrides(model_args.config_overrides, base_config, model_args.model_name_or_path)
    if training_args.learning_rate is None:
        training_args.learning_rate = get_task(finetune_args.task).default_learning_rate[finetune_args.method]
    if finetune_args.lora_target_modules is None:
        finetune_args.lora_target_modules = list(get_task(finetune_args.task).lora_target_modules)
    if finetune_args.method == "lora" and training_args.activation_checkpointing:
        # Reentrant checkpointing needs inputs that require grad, which frozen embeddings do not give.
        # (transformers 5.24 reads activation_checkpointing*; gradient_checkpointing* are its deprecated aliases.)
        training_args.activation_checkpointing_kwargs = {"use_reentrant": False,
                                                         **(training_args.activation_checkpointing_kwargs or {})}
    settings = {"model": dataclasses.asdict(model_args), "data": dataclasses.asdict(data_args),
                "finetune": dataclasses.asdict(finetune_args), "training": training_args.run_identity()}
    run_dir = RunDirectory(training_args.output_dir, settings, training_args.overwrite_output,
                           is_main=training_args.process_index == 0)
    if finished := run_dir.finished_record(training_args.max_steps, training_args.num_train_epochs):
        return finished
    with run_dir:
        return _finetune(get_task(finetune_args.task), model_args, data_args, finetune_args, training_args,
                         sample_args, base_config, run_dir)


def _finetune(task: FinetuneTask, model_args, data_args, finetune_args, training_args, sample_args, base_config,
              run_dir: RunDirectory) -> RunRecord:
    output_dir = run_dir.path
    push, training_args.push_to_hub = training_args.push_to_hub, False  # published at the end by push_run_to_hub
    context = base_config.max_position_embeddings
    max_length = data_args.max_length or context
    check_max_length(max_length, base_config)
    warn_if_base_undertrained(model_args.model_name_or_path, finetune_args.task)
    with training_args.main_process_first(desc="data and model"):
        set_seed(training_args.seed)
        tokenizer = load_tokenizer(model_args)
        train, validation, test = task.load_splits(data_args, seed=training_args.seed,
                                                   test_files=finetune_args.test_files,
                                                   test_split=finetune_args.test_split,
                                                   max_eval_samples=finetune_args.max_eval_samples)
        data = task.build_data(train, validation, test, tokenizer, data_args=data_args, finetune_args=finetune_args,
                               max_length=max_length)  # the data is checked before the model is loaded
        if data.validation is None:
            no_evaluation_without_validation_data(training_args)
        model = load_model(task, model_args, finetune_args, tokenizer, data)
        prompts = task.sample_prompts(data, tokenizer, sample_args, context)
    if finetune_args.method == "lora" and training_args.activation_checkpointing:
        model.enable_input_require_grads()  # for reentrant checkpointing, when asked for explicitly

    trainable, total = count_parameters(model)
    resume_from = (
        last_complete_checkpoint(output_dir) if training_args.resume and not training_args.overwrite_output else None
    )
    logger.info("%s fine-tuning (%s) of %s: %s of %s parameters trainable; %d training examples%s",
                task.name, finetune_args.method, model_args.model_name_or_path, f"{trainable:,}",
                f"{total:,}", len(data.train), f"; resuming from {resume_from}" if resume_from else "")
    enable_compiled_training(training_args)
    trainer = task.build_trainer(model=model, args=training_args, data=data, tokenizer=tokenizer,
                                 callbacks=[LossCurveCallback(), LogEveryStepOnceCallback(), *task.callbacks()],
                                 finetune_args=finetune_args)

    use_log_friendly_progress(trainer)
    run_dir.start(trainer)
    metrics: dict[str, float] = {}
    if finetune_args.evaluate_before_training and not resume_from:
        for prefix, dataset in (("eval", data.validation), ("test", data.test)):
            if dataset is not None:
                before = trainer.evaluate(dataset, metric_key_prefix=prefix)
                metrics.update({f"{key}_before": value for key, value in before.items()
                                if key.startswith(f"{prefix}_") and not key.endswith(NOT_METRICS)})
    started = time.perf_counter()
    train_result = run_training(trainer, resume_from)
    training_time = time.perf_counter() - started
    metrics.update({**train_result.metrics, **whole_run_metrics(trainer.state)})
    if data.validation is not None:
        metrics.update(trainer.evaluate())
    if data.test is not None:
        metrics.update(task.test(trainer, data, output_dir))
    task.add_metrics(metrics)
    metrics["peak_memory_mb"] = round(peak_memory_mb(), 1)
    trainer.log_metrics("all", metrics)

    record = RunRecord(
        task=task.pipeline_tag,
        kind="finetuning",
        method=finetune_args.method,
        base_model=resolvable(model_args.model_name_or_path),
        model_name=output_dir.name,
        datasets=list(data_args.train_files or [data_args.dataset_name]),  # training data only
        validation_datasets=list(data_args.validation_files or []),
        test_datasets=list(finetune_args.test_files or []),
        finetune_task=task.name,
        metrics=metrics,
        eval_results=eval_results(metrics, task.result_metrics, task_type=task.pipeline_tag,
                                  task_name=task.card_task_name, sources=_result_sources(data_args, finetune_args),
                                  dataset_type=data_args.dataset_name or "text"),
        training_time_s=round(training_time, 1),
        trainable_parameters=trainable,
        data_report={split: report.to_dict() for split, report in data.reports.items()},
        adapter=adapter_summary(trainer.model) if finetune_args.method == "lora" else None,
        **task.card_fields(data),
    )
    record.language, record.language_inferred = run_languages(data_args.language, texts_of_rows(train))
    record = finish_run(trainer, tokenizer, record, training_args)
    if not trainer.is_world_process_zero():
        return record
    record = add_samples(output_dir, record, lambda: sample_generations(
        trainer.model, tokenizer, prompts, sample_args.sample_max_new_tokens, training_args.seed))
    if finetune_args.merge:
        record.merged_model = str(save_merged_model(trainer.model, tokenizer, output_dir, record))
        record.save(output_dir)
    if push:
        push_run_to_hub(trainer)
    report_run(record, output_dir)
    return record


def _result_sources(data_args: FinetuneDataArguments, finetune_args: FinetuneArguments) -> dict[str, str]:
    """The data each split's results were measured on, as the card names it."""
    validation = data_args.validation_files or ([data_args.dataset_name] if data_args.dataset_name else None) \
        or data_args.train_files
    test = finetune_args.test_files or [data_args.dataset_name]
    return {"eval": ", ".join(str(s) for s in validation if s), "test": ", ".join(str(s) for s in test if s)}


def report_run(record: RunRecord, output_dir: Path) -> None:
    for sample in record.samples:
        print(f"\n--- {sample['prompt']}\n>>> {sample['completion']}")
    shown = {key: value for key, value in record.metrics.items()
             if key.startswith(("eval_", "test_")) and not key.endswith(NOT_METRICS)}
    print("\n" + ", ".join(f"{key} {value:.4f}" for key, value in shown.items() if isinstance(value, float)))
    if record.task == "text-classification":
        headline, warnings = classification_summary(record.metrics)
        print("\n".join(headline))
        for warning in warnings:
            print(f"WARNING: {warning}")
    print(f"{record.trainable_parameters:,} trainable parameters, {record.training_time_s:.0f} s, "
          f"peak memory {record.metrics['peak_memory_mb']:.0f} MiB; model, metrics and card in {output_dir}"
          + (f"; merged model in {record.merged_model}" if record.merged_model else ""))


@command("scratchlm-finetune")
def main(argv=None) -> None:
    model_args, data_args, finetune_args, training_args, sample_args = parse_args(
        [ModelArguments, FinetuneDataArguments, FinetuneArguments, FinetuneTrainingArguments, SampleArguments], argv,
        description="Fine-tune a ScratchLM model for text classification, instruction following, question "
                    "answering, preference tuning or (an encoder-decoder) translation and summarisation.",
    )
    finetune(model_args, data_args, finetune_args, training_args, sample_args)


if __name__ == "__main__":
    main()
