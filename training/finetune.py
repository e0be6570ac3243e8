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

Each task is a module of `scratchlm.training.tasks` (its options, data, model, collator, metrics and card fields);
this command picks one and does the rest. Options come in two steps: `--task` and `--method` (flags, else the config
file), then the shared groups and that task's only (`FinetuneTask.arguments`, its Trainer options, the samples' for
SFT and DPO; `LoraArguments` for --method lora), so `--task X --help` lists X's options and an option of another
task is refused in one line.

LoRA (`--method lora`, with peft; `LoraArguments` in `lora.py`): rank, alpha and dropout are options; the target
modules default to every linear layer of attention and MLP (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`,
`up_proj`, `down_proj`); the classification head is trained in full and saved with the adapter. It works with
`--activation_checkpointing` (gradient checkpointing, non-reentrant unless `--activation_checkpointing_kwargs` says
otherwise). `output_dir` then holds the adapter (`adapter_config.json`
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

import argparse
import dataclasses
import logging
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, IntervalStrategy, set_seed

from scratchlm.cli import CONFIG_SUFFIXES, command, load_config_file, parse_args
from scratchlm.model_cards.card import classification_summary
from scratchlm.model_cards.run_record import RunRecord, eval_results, is_adapter_dir
from scratchlm.modeling import ScratchLMConfig, ScratchLMSeq2SeqConfig
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
from .data import TableSettings, check_max_length, check_tokenizer_fits
from .generation import SampleArguments, sample_generations
from .language import run_languages, texts_of_rows
from .lora import LoraArguments, adapter_summary, apply_lora, resolvable, save_merged_model
from .run import (
    RunDirectory,
    add_samples,
    finish_run,
    in_run_directory,
    last_complete_checkpoint,
    push_run_to_hub,
    run_training,
    warn_if_base_undertrained,
)
from .tasks import TASKS, FinetuneTask, get_task
from .tasks.base import FinetuneTrainingArguments

logger = logging.getLogger(__name__)

METHODS = ("full", "lora")
NOT_METRICS = ("_runtime", "_per_second", "_preparation_time")  # timings the Trainer adds to evaluation results


@dataclass
class FinetuneArguments:
    """The options every task reads; each task adds its own group (`FinetuneTask.arguments`), --method lora LoRA's."""

    task: str = field(default="classification", metadata={
        "help": f"The task: {', '.join(TASKS)}; `--task X --help` lists its options."})
    method: str = field(default="full", metadata={"help": "full (every weight) or lora (peft adapter; "
                                                          "`--method lora --help` adds its options)."})
    test_files: list[str] | None = field(default=None, metadata={"help": "Test data, evaluated once at the end."})
    test_split: str | None = field(default=None, metadata={"help": "Split of --dataset_name to test on."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on at most this many rows."})
    evaluate_before_training: bool = field(
        default=True, metadata={"help": "Measure the validation and test metrics before training too (recorded as "
                                        "eval_*_before, test_*_before)."}
    )

    def __post_init__(self):
        get_task(self.task)  # refuses an unknown task
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")


SHARED_GROUPS = (ModelArguments, FinetuneDataArguments, FinetuneArguments)
DESCRIPTION = ("Fine-tune a ScratchLM model for text classification, instruction following, question answering, "
               "preference tuning or (an encoder-decoder) translation and summarisation.")


def task_groups(task: type[FinetuneTask]) -> tuple[type, ...]:
    """The argument groups a task adds to the shared ones: its Trainer options, its own, and the samples' if it
    answers sample prompts."""
    return (task.training_arguments, task.arguments, *((SampleArguments,) if task.answers_samples else ()))


def option_names(groups) -> set[str]:
    """Every option name of `groups` (a bool also has its `no_` complement)."""
    names = set()
    for group in groups:
        for option in dataclasses.fields(group):
            names.update((option.name, f"no_{option.name}") if option.type in (bool, "bool") else (option.name,))
    return names


def chosen_task_and_method(argv: list[str]) -> tuple[str | None, str, str | None, dict]:
    """(--task or None when not given, --method, the config file, its values): read from the command line, else from
    the config file, before the rest, since they decide which option groups the command has."""
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for name in ("--config", "--task", "--method"):
        early.add_argument(name)
    known, _ = early.parse_known_args(argv)
    config = known.config
    if config is None and argv and argv[0].endswith(CONFIG_SUFFIXES) and not argv[0].startswith("-"):
        config = argv[0]
    values = load_config_file(config) if config else {}
    return (known.task or values.get("task"), known.method or values.get("method") or FinetuneArguments.method,
            config, values)


def refuse_other_options(argv: list[str], config: str | None, values: dict, task: type[FinetuneTask],
                         method: str) -> None:
    """One line for an option of another task (or of --method lora in a full run), given as a flag or in the
    config file, instead of argparse's 'unrecognized arguments'."""
    own = option_names((*SHARED_GROUPS, *task_groups(task), *((LoraArguments,) if method == "lora" else ())))
    flags = [arg[2:].partition("=")[0].replace("-", "_") for arg in argv if arg.startswith("--")]
    for name, where in [*((flag, "--") for flag in flags), *((key, f"{config}: ") for key in values)]:
        if name in own:
            continue
        owners = [other for other, task_class in TASKS.items() if name in option_names(task_groups(task_class))]
        if owners:
            raise ValueError(f"{where}{name} is an option of {' and '.join(f'--task {o}' for o in owners)}, not "
                             f"of --task {task.name}")
        if name in option_names((LoraArguments,)):
            raise ValueError(f"{where}{name} is an option of --method lora, not of --method {method}")


def parse_finetune_args(argv=None):
    """`argv` in two steps: --task and --method (flags, else the config file), then the shared groups and those of
    that task (and LoRA's for --method lora) only. Returns (model, data, finetune, training arguments, the task
    with its options, LoRA arguments or None, sample arguments or None)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    task_name, method, config, values = chosen_task_and_method(argv)
    if task_name is None and any(arg in ("-h", "--help") for arg in argv):
        overview = (f"{DESCRIPTION} Tasks: {', '.join(TASKS)} (--task, default {FinetuneArguments.task}). Below: the "
                    "options every task reads; `scratchlm-finetune --task X --help` adds the options of task X, "
                    "`--method lora` LoRA's.")
        parse_args([*SHARED_GROUPS, FinetuneTrainingArguments], argv, description=overview)  # prints, exits
    task = type(get_task(task_name or FinetuneArguments.task))
    method_groups = [LoraArguments] if method == "lora" else []  # an unknown method: FinetuneArguments refuses it
    refuse_other_options(argv, config, values, task, method)
    groups = [*SHARED_GROUPS, *task_groups(task), *method_groups]
    model_args, data_args, finetune_args, training_args, options, *rest = parse_args(
        groups, argv, description=f"{DESCRIPTION} These are the options of --task {task.name}"
                                  f"{' --method lora' if method_groups else ''}.")
    sample_args = rest.pop(0) if task.answers_samples else None
    lora_args = rest.pop(0) if method_groups else None
    return model_args, data_args, finetune_args, training_args, task(options), lora_args, sample_args


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
    seq2seq_type = ScratchLMSeq2SeqConfig.model_type
    if task == "seq2seq" and config.model_type != seq2seq_type:
        raise ValueError(f"{path} holds a {config.model_type!r} model, but --task seq2seq needs a ScratchLM "
                         "encoder-decoder (scratchlm-init --architecture seq2seq, or scratchlm-pretrain "
                         "--objective span_corruption)")
    if task != "seq2seq" and config.model_type == seq2seq_type:
        raise ValueError(f"{path} holds a ScratchLM encoder-decoder, which only --task seq2seq fine-tunes; --task "
                         f"{task} needs a decoder-only ScratchLM model")
    if config.model_type not in (ScratchLMConfig.model_type, seq2seq_type):
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


def load_model(task: FinetuneTask, model_args: ModelArguments, lora_args: LoraArguments | None, tokenizer, data):
    """The task's model on the pretrained base, with LoRA applied for --method lora (`lora_args` given)."""
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
    if lora_args:
        model = apply_lora(model, model_args.model_name_or_path, lora_args, task.peft_task_type,
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
             training_args: ScratchLMTrainingArguments, task: FinetuneTask | None = None,
             lora_args: LoraArguments | None = None, sample_args: SampleArguments | None = None) -> RunRecord:
    """Fine-tune as `parse_finetune_args` returns the options; `task` (with its options), `lora_args` (for --method
    lora) and `sample_args` default to their defaults."""
    task = task or get_task(finetune_args.task)
    if finetune_args.method == "lora":
        lora_args = lora_args or LoraArguments()
        if lora_args.lora_target_modules is None:
            lora_args.lora_target_modules = list(task.lora_target_modules)
    sample_args = sample_args or SampleArguments()
    if not model_args.model_name_or_path:
        raise ValueError("--model_name_or_path is required: the pretrained ScratchLM directory to fine-tune")
    model_args.check_local_paths()
    if lora_args:
        check_local_path("adapter_name_or_path", lora_args.adapter_name_or_path)
    base_config = check_base_model(model_args.model_name_or_path, model_args.trust_remote_code, task.name)
    pretrained_config_overrides(model_args.config_overrides, base_config, model_args.model_name_or_path)
    if training_args.learning_rate is None:
        training_args.learning_rate = task.default_learning_rate[finetune_args.method]
    if lora_args and training_args.activation_checkpointing:
        # Reentrant checkpointing needs inputs that require grad, which frozen embeddings do not give.
        # (transformers 5.24 reads activation_checkpointing*; gradient_checkpointing* are its deprecated aliases.)
        training_args.activation_checkpointing_kwargs = {"use_reentrant": False,
                                                         **(training_args.activation_checkpointing_kwargs or {})}
    settings = {"model": dataclasses.asdict(model_args), "data": dataclasses.asdict(data_args),
                "finetune": dataclasses.asdict(finetune_args), task.name: dataclasses.asdict(task.options),
                **({"lora": dataclasses.asdict(lora_args)} if lora_args else {}),
                "training": training_args.run_identity()}
    return in_run_directory(training_args, settings, lambda run_dir: _finetune(
        task, model_args, data_args, finetune_args, training_args, lora_args, sample_args, base_config, run_dir))


def _finetune(task: FinetuneTask, model_args, data_args, finetune_args, training_args, lora_args, sample_args,
              base_config, run_dir: RunDirectory) -> RunRecord:
    output_dir = run_dir.path
    push, training_args.push_to_hub = training_args.push_to_hub, False  # published at the end by push_run_to_hub
    context = base_config.max_position_embeddings
    max_length = data_args.max_length or context
    check_max_length(max_length, base_config)
    warn_if_base_undertrained(model_args.model_name_or_path, finetune_args.task)
    with training_args.main_process_first(desc="data and model"):
        set_seed(training_args.seed)
        tokenizer = load_tokenizer(model_args)
        train, validation, test = task.load_splits(TableSettings.of(data_args), seed=training_args.seed,
                                                   test_files=finetune_args.test_files,
                                                   test_split=finetune_args.test_split,
                                                   max_eval_samples=finetune_args.max_eval_samples)
        data = task.build_data(train, validation, test, tokenizer, data_args=data_args,
                               max_length=max_length)  # the data is checked before the model is loaded
        if data.validation is None:
            no_evaluation_without_validation_data(training_args)
        model = load_model(task, model_args, lora_args, tokenizer, data)
        prompts = task.sample_prompts(data, tokenizer, sample_args, context)
    if lora_args and training_args.activation_checkpointing:
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
                                 lora=lora_args)

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
        adapter=adapter_summary(trainer.model) if lora_args else None,
        **task.card_fields(data),
    )
    record.language, record.language_inferred = run_languages(data_args.language, texts_of_rows(train))
    record = finish_run(trainer, tokenizer, record, training_args)
    if not trainer.is_world_process_zero():
        return record
    record = add_samples(trainer, record, lambda: sample_generations(
        trainer.model, tokenizer, prompts, sample_args.sample_max_new_tokens, training_args.seed))
    if lora_args and lora_args.merge:
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
    finetune(*parse_finetune_args(argv))


if __name__ == "__main__":
    main()
