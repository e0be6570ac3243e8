"""The argument groups of `scratchlm-pretrain` and `scratchlm-finetune`.

Each command parses `ModelArguments`, its own data group (`PretrainingDataArguments` or `FinetuneDataArguments`,
both built on `DataSourceArguments`), its task arguments if any, and `ScratchLMTrainingArguments` with
`scratchlm.cli.parse_args`, from a YAML/JSON file and command-line overrides. `ScratchLMTrainingArguments` is the
one place that sets the project's Trainer defaults.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import TrainingArguments

from scratchlm.corpus import (
    ERRORS_CHOICES,
    SAMPLE_BY_CHOICES,
    CleaningSettings,
    DedupSettings,
    SourceSettings,
    split_text_columns,
)
from scratchlm.corpus.token_store import DEFAULT_SHARD_TOKENS
from scratchlm.modeling.initialization import parse_config_pairs

from .data.pretraining import DEFAULT_CACHE_DIR, PretrainingDataSettings

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def check_local_path(flag: str, value: str | None) -> None:
    """A model or tokenizer path that looks local (./, ../, /, ~, or separators that do not make an org/name Hub id)
    and does not exist: an error at once, instead of the Hub being asked for it (and retried) first."""
    if not value:
        return
    separators = [sep for sep in (os.sep, os.altsep) if sep]
    looks_local = value.startswith(("./", "../", "/", "~")) or (
        any(sep in value for sep in separators) and not HUB_ID.fullmatch(value))
    if looks_local and not Path(value).expanduser().exists():
        raise FileNotFoundError(f"--{flag} {value}: no such file or directory")


# Config fields that shape a model's weights or what they compute: a pretrained model keeps those it was trained with.
ARCHITECTURE_FIELDS = (
    "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "encoder_layers",
    "decoder_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_act", "tie_word_embeddings",
    "use_qk_norm", "attention_bias", "mlp_bias", "is_encoder_decoder",
)


def _same_kind(value, current) -> bool:
    if current is None:
        return True
    if isinstance(current, bool):
        return isinstance(value, bool)
    if isinstance(current, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(current))


def pretrained_config_overrides(text: str | None, config, model: str) -> dict:
    """`--config_overrides` for a pretrained `model` (whose config is `config`), checked: each must be a field of its
    config, of the field's kind (a number for a number), not one of its ARCHITECTURE_FIELDS (the saved weights would
    not fit), and a dropout between 0 and 1."""
    overrides = parse_config_pairs(text)
    current = config.to_dict()
    unknown = sorted(key for key in overrides if key not in current)
    if unknown:
        raise ValueError(f"--config_overrides: the config of {model} has no field {', '.join(unknown)}")
    for key, value in overrides.items():
        if key in ARCHITECTURE_FIELDS and value != current[key]:
            raise ValueError(f"--config_overrides {key}={value}: {model} was trained with {key}={current[key]}, and "
                             "its saved weights would not fit another (a new model's shape is set with --preset and "
                             "--config_overrides, without --model_name_or_path)")
        if not _same_kind(value, current[key]) or (key.endswith("dropout") and not 0 <= value < 1):
            expected = "a dropout in [0, 1)" if key.endswith("dropout") else f"a {type(current[key]).__name__}"
            raise ValueError(f"--config_overrides {key}={value}: expected {expected}, like {model}'s "
                             f"{key}={current[key]!r}")
    return overrides


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A ScratchLM directory or Hub id to start from; without it a new model is built from "
                          "--preset (pretraining from scratch)."},
    )
    preset: str = field(default="small", metadata={"help": "Shape of a new model: tiny, small, 125m, 350m, 1b."})
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Comma-separated field=value pairs applied to the preset, e.g. 'num_hidden_layers=4'."},
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Tokenizer directory or Hub id; defaults to the model's own, or one trained on the "
                          "training corpus when pretraining from scratch."},
    )
    tokenizer_vocab_size: int = field(
        default=8192, metadata={"help": "Vocabulary size of a tokenizer trained on the corpus."}
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "eager, sdpa, flash_attention_2, ... Unset: a pretraining run on one CPU process, long "
                          "enough to be compiled (1000+ steps), times eager and sdpa attention at its batch, block "
                          "length and precision and takes the faster (a resumed run keeps what it started with); otherwise sdpa."},
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow code from a Hub model repository."})

    def check_local_paths(self) -> None:
        """When the command starts (a config file may name a model an earlier step makes): see `check_local_path`."""
        check_local_path("model_name_or_path", self.model_name_or_path)
        check_local_path("tokenizer_name_or_path", self.tokenizer_name_or_path)


@dataclass
class DataSourceArguments:
    """Where the data comes from: the options every training command reads."""

    train_files: list[str] | None = field(
        default=None,
        metadata={"help": "Training data: files, globs or directories (.txt, .jsonl/.json, .csv, .parquet)."},
    )
    validation_files: list[str] | None = field(
        default=None, metadata={"help": "Validation data; without it a part of the training data is held out."}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "A `datasets` Hub id or a local `save_to_disk` directory."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    train_split: str = field(default="train", metadata={"help": "Split of --dataset_name to train on."})
    validation_split: str | None = field(
        default=None, metadata={"help": "Split of --dataset_name to validate on (default: hold out a part)."}
    )
    language: list[str] | None = field(
        default=None, metadata={"help": "Languages of the text (ISO 639-1, e.g. en zh), for the model card."}
    )
    max_train_documents: int | None = field(
        default=None, metadata={"help": "Use at most this many training documents (rows)."}
    )

    def __post_init__(self):
        if self.max_train_documents is not None and self.max_train_documents < 1:
            raise ValueError(f"--max_train_documents must be positive, got {self.max_train_documents}")


def _check_positive(flag: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"--{flag} must be a positive integer, got {value!r}")


OBJECTIVES = ("auto", "causal", "span_corruption", "text_infilling")


@dataclass
class PretrainingDataArguments(DataSourceArguments):
    """The data options of `scratchlm-pretrain`: reading, cleaning, holding out and packing a corpus."""

    text_column: list[str] = field(
        default_factory=lambda: ["text"],
        metadata={"help": "Field/column holding the text (not for .txt): one name for every source, or one per "
                          "source as FILE:COLUMN (e.g. poems.json:paragraphs reviews.csv:review), or a list "
                          "matched to --train_files in order."},
    )
    sample_by: str = field(
        default="paragraph",
        metadata={"help": "What a document of a .txt file is: a paragraph (up to a blank line), a line, or the "
                          "whole file (document).", "choices": list(SAMPLE_BY_CHOICES)},
    )
    errors: str = field(
        default="strict",
        metadata={"help": "Invalid UTF-8: stop with an error naming the file and byte, or replace it with U+FFFD.",
                  "choices": list(ERRORS_CHOICES)},
    )
    validation_fraction: float = field(
        default=0.1,
        metadata={"help": "Fraction of the training bytes held out for validation when no validation data is "
                          "given: the last documents, in order (nanoGPT's split of a single text file)."},
    )
    block_size: int | None = field(
        default=None, metadata={"help": "Tokens per packed training block (default: the model's context length)."}
    )
    streaming: bool = field(
        default=False, metadata={"help": "Stream the corpus instead of loading it (larger than memory)."}
    )
    objective: str = field(
        default="auto",
        metadata={"help": "causal (next-token prediction, a decoder-only model), or the denoising of an "
                          "encoder-decoder (--preset then names a seq2seq preset): span_corruption (T5: masked spans "
                          "as the target) or text_infilling (BART: the whole text reconstructed, which teaches "
                          "copying; suits summarisation); auto: span_corruption for an encoder-decoder "
                          "--model_name_or_path, else causal.", "choices": list(OBJECTIVES)},
    )
    noise_density: float = field(default=0.15, metadata={"help": "Span corruption: fraction of tokens masked."})
    mean_noise_span_length: float = field(default=3.0, metadata={"help": "Span corruption: mean masked span."})
    mask_ratio: float = field(default=0.3, metadata={"help": "Text infilling: fraction of tokens masked."})
    poisson_lambda: float = field(
        default=3.0, metadata={"help": "Text infilling: mean length of a masked span (Poisson; each span becomes "
                                       "one mask token)."}
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for datasets.map."})
    data_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where processed data is cached, keyed by its settings (default: ~/.cache/scratchlm)."},
    )
    normalize_unicode: bool = field(default=True, metadata={"help": "NFC-normalise the text."})
    remove_control_characters: bool = field(default=True, metadata={"help": "Drop control characters."})
    normalize_whitespace: bool = field(
        default=True, metadata={"help": "Collapse runs of spaces and of blank lines, strip line ends."}
    )
    min_document_chars: int = field(default=1, metadata={"help": "Drop documents shorter than this."})
    max_symbol_fraction: float = field(
        default=0.5, metadata={"help": "Drop documents in which more than this fraction of characters are "
                                       "neither letters, digits nor whitespace."}
    )
    deduplicate: bool = field(default=True, metadata={"help": "Drop exact duplicate documents."})
    near_deduplicate: bool = field(
        default=False, metadata={"help": "Drop near-duplicate documents (MinHash, Jaccard >= threshold)."}
    )
    near_duplicate_threshold: float = field(default=0.85, metadata={"help": "Jaccard threshold of near-dedup."})
    dedup_min_chars: int = field(
        default=50,
        metadata={"help": "Documents shorter than this are never dropped as duplicates (speaker names, headings)."},
    )
    shuffle_buffer_size: int = field(
        default=10_000,
        metadata={"help": "Streaming only: shuffle training blocks in a buffer of this many (<= 1: no shuffle)."},
    )
    store_shard_tokens: int = field(
        default=DEFAULT_SHARD_TOKENS,
        metadata={"help": "Tokens per shard file of the prepared token store (2 or 4 bytes each): the most a killed "
                          "preparation loses. A store is resumed only with the size it began with."},
    )

    def __post_init__(self):
        super().__post_init__()
        _check_positive("block_size", self.block_size)
        _check_positive("store_shard_tokens", self.store_shard_tokens)
        if isinstance(self.text_column, str):  # a single name from a config file
            self.text_column = [self.text_column]
        if self.sample_by not in SAMPLE_BY_CHOICES:
            raise ValueError(f"--sample_by must be one of {', '.join(SAMPLE_BY_CHOICES)}, got {self.sample_by!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.errors not in ERRORS_CHOICES:
            raise ValueError(f"--errors must be one of {', '.join(ERRORS_CHOICES)}, got {self.errors!r}")
        if not 0 < self.near_duplicate_threshold <= 1:
            raise ValueError(f"--near_duplicate_threshold must be in (0, 1], got {self.near_duplicate_threshold}")
        for flag in ("noise_density", "mask_ratio"):
            if not 0 < getattr(self, flag) < 1:
                raise ValueError(f"--{flag} must be between 0 and 1 (exclusive), got {getattr(self, flag)}")
        if self.mean_noise_span_length < 1:
            raise ValueError(f"--mean_noise_span_length must be at least 1, got {self.mean_noise_span_length}")
        if self.poisson_lambda <= 0:
            raise ValueError(f"--poisson_lambda must be positive, got {self.poisson_lambda}")

    def to_settings(self) -> PretrainingDataSettings:
        """The corpus and packing settings these flags describe (`--block_size` and the objective stay with the
        command); data options that cannot work together are an error naming the flags."""
        if not self.train_files and not self.dataset_name:
            raise ValueError("no training data: give --train_files or --dataset_name")
        if self.train_files and self.dataset_name:
            raise ValueError("give either --train_files or --dataset_name, not both")
        train_files, validation_files = tuple(self.train_files or ()), tuple(self.validation_files or ())
        has_validation = bool(validation_files) or bool(self.dataset_name and self.validation_split)
        if not has_validation and not 0 < self.validation_fraction < 1:
            raise ValueError(f"--validation_fraction must be between 0 and 1 (exclusive) when no validation data is "
                             f"given, got {self.validation_fraction}")
        train_columns, validation_columns = split_text_columns(self.text_column, train_files, validation_files)
        reading = {"dataset_config": self.dataset_config_name, "sample_by": self.sample_by, "errors": self.errors}
        datasets = (self.dataset_name,) if self.dataset_name else ()
        train = SourceSettings(files=train_files, datasets=datasets, split=self.train_split, text_column=train_columns,
                               max_documents=self.max_train_documents, streaming=self.streaming, **reading)
        validation = None
        if validation_files:
            validation = SourceSettings(files=validation_files, text_column=validation_columns, **reading)
        elif has_validation:
            validation = SourceSettings(datasets=datasets, split=self.validation_split, text_column=validation_columns,
                                        **reading)
        dedup = DedupSettings(exact=self.deduplicate, near=self.near_deduplicate,
                              near_threshold=self.near_duplicate_threshold, min_chars=self.dedup_min_chars)
        cleaning = CleaningSettings(
            normalize_unicode=self.normalize_unicode, remove_control_characters=self.remove_control_characters,
            normalize_whitespace=self.normalize_whitespace, min_document_chars=self.min_document_chars,
            max_symbol_fraction=self.max_symbol_fraction, dedup=dedup,
        )
        return PretrainingDataSettings(
            train=train, validation=validation, validation_fraction=self.validation_fraction, cleaning=cleaning,
            shuffle_buffer_size=self.shuffle_buffer_size, workers=self.preprocessing_num_workers,
            cache_dir=self.data_cache_dir or DEFAULT_CACHE_DIR, store_shard_tokens=self.store_shard_tokens,
        )


@dataclass
class FinetuneDataArguments(DataSourceArguments):
    """The data options of `scratchlm-finetune`: tables of examples, their text column and length limit."""

    text_column: str = field(default="text", metadata={"help": "Column holding the (first) text."})
    validation_split_fraction: float = field(
        default=0.1,
        metadata={"help": "Fraction of the training rows held out for validation when no validation data is "
                          "given: random rows (seeded with --seed); 0 holds out nothing."},
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "Tokens per example at most; longer ones are cut (counted). Default: the model's "
                          "context length; more than it is an error."},
    )

    def __post_init__(self):
        super().__post_init__()
        _check_positive("max_length", self.max_length)
        if not 0 <= self.validation_split_fraction < 1:
            raise ValueError(
                f"--validation_split_fraction must be in [0, 1), got {self.validation_split_fraction}"
            )


# What the optimizer (AdamW) accepts, checked before a run claims its directory: (flag, lowest, above the highest).
OPTIMIZER_VALUES = (("learning_rate", 0, None), ("weight_decay", 0, None), ("adam_epsilon", 0, None),
                    ("adam_beta1", 0, 1), ("adam_beta2", 0, 1))


def _check_optimizer_values(args) -> None:
    for flag, lowest, below in OPTIMIZER_VALUES:
        value = getattr(args, flag)
        if value is None and flag == "learning_rate":  # scratchlm-finetune: the task's default, set later
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or value < lowest or (below is not None and value >= below):
            bounds = f"at least {lowest}" if below is None else f"in [{lowest}, {below})"
            raise ValueError(f"--{flag} must be a number {bounds}, got {value!r}")


def has_accelerator() -> bool:
    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()) or (
        torch.backends.mps.is_available()
    )


def bf16_supported() -> bool:
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = torch.backends.cpu.get_cpu_capability()
    return "AVX512" in cpu or "AMX" in cpu


@dataclass
class ScratchLMTrainingArguments(TrainingArguments):
    """`TrainingArguments` with ScratchLM's defaults; every Trainer option is still available."""

    output_dir: str | None = field(default=None, metadata={"help": "Where the model, checkpoints and logs go."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule after warmup."})
    warmup_steps: float = field(
        default=0.05, metadata={"help": "Warmup steps, or a fraction of all steps when below 1."}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate."})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay."})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N optimizer steps."})
    logging_first_step: bool = field(default=True, metadata={"help": "Log the first step too."})
    eval_strategy: str = field(default="steps", metadata={"help": "When to evaluate: no, steps, epoch."})
    eval_steps: float | None = field(default=100, metadata={"help": "Evaluate every N steps."})
    save_strategy: str = field(default="steps", metadata={"help": "When to checkpoint: no, steps, epoch."})
    save_steps: float = field(default=100, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept on disk."})
    report_to: None | str | list[str] = field(
        default="tensorboard", metadata={"help": "Loggers: tensorboard (default), wandb, none, ..."}
    )
    torch_compile: bool | None = field(
        default=None,
        metadata={"help": "Compile the model (torch.compile). Default: where compilation works here and the run is "
                          "long enough to pay it back (from 1000 steps on a CPU, 100 on an accelerator); true or "
                          "false decides."},
    )
    optim: str = field(
        default=next(f.default for f in dataclasses.fields(TrainingArguments) if f.name == "optim"),
        metadata={"help": "The optimizer: muon (Muon for the 2-D weight matrices of the blocks, AdamW for embeddings, "
                          "heads, norms and biases; not under --fsdp), or any of the Trainer's (adamw_torch, ...)."},
    )
    muon_learning_rate: float | None = field(
        default=None,
        metadata={"help": "--optim muon: Muon's peak rate (default: --learning_rate; Muon's updates are scaled to "
                          "AdamW's size, so one rate serves both)."},
    )
    max_time_minutes: float | None = field(
        default=None,
        metadata={"help": "Train for this many minutes (evaluation and saving not counted) on a warmup-stable-decay "
                          "schedule driven by the time, so the decay ends with the budget (replaces "
                          "--lr_scheduler_type); --max_steps or --num_train_epochs still end the run if reached first."},
    )
    decay_fraction: float = field(
        default=0.2, metadata={"help": "--max_time_minutes: the last part of the budget over which the rate decays to 0."}
    )
    precision: str = field(
        default="auto",
        metadata={"help": "auto (bf16 where the hardware supports it), bf16, fp16 or fp32."},
    )
    resume: bool = field(
        default=True,
        metadata={"help": "Resume from the last complete checkpoint in output_dir when there is one."},
    )
    overwrite_output: bool = field(
        default=False,
        metadata={"help": "Start over in an output_dir that holds another run (its checkpoints are not used)."},
    )

    # The options that define a run; a run resumes only into a directory whose run had the same ones.
    RUN_IDENTITY = (
        "seed", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "weight_decay",
        "adam_beta1", "adam_beta2", "lr_scheduler_type", "warmup_steps", "max_grad_norm", "bf16", "fp16",
        "optimizer_name", "muon_learning_rate", "max_time_minutes", "decay_fraction",
    )

    @property
    def optimizer_name(self) -> str:
        return "muon" if self.use_muon else str(getattr(self.optim, "value", self.optim))

    def run_identity(self) -> dict:
        return {name: getattr(self, name) for name in self.RUN_IDENTITY}

    def __post_init__(self):
        if self.output_dir is None:
            raise ValueError("--output_dir is required")
        _check_optimizer_values(self)
        _check_positive("gradient_accumulation_steps", self.gradient_accumulation_steps)
        if self.max_steps == 0:
            raise ValueError("--max_steps 0 trains nothing; give a positive --max_steps (or -1 to train for "
                             "--num_train_epochs)")
        if self.max_steps < 0 and not self.num_train_epochs > 0:
            raise ValueError(f"--num_train_epochs must be positive when --max_steps is not given, got "
                             f"{self.num_train_epochs}")
        if self.precision not in ("auto", "bf16", "fp16", "fp32"):
            raise ValueError(f"--precision must be auto, bf16, fp16 or fp32, got {self.precision!r}")
        if not (self.bf16 or self.fp16):
            precision = ("bf16" if bf16_supported() else "fp32") if self.precision == "auto" else self.precision
            self.bf16, self.fp16 = precision == "bf16", precision == "fp16"
        fsdp = self.fsdp or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true")
        if fsdp and not has_accelerator():
            raise ValueError("--fsdp (or an accelerate FSDP config) needs GPUs: accelerate applies FSDP only on "
                             "accelerators, so on this CPU-only machine it would silently run DDP (drop it; torchrun "
                             "runs DDP on CPUs)")
        self.use_muon = self.optim == "muon"  # the Trainer knows no Muon: the command builds it (training/optimizers.py)
        if self.use_muon and fsdp:
            raise ValueError("--optim muon does not run under --fsdp: Muon orthogonalises whole weight matrices, and "
                             "FSDP shards them; use an AdamW --optim with --fsdp")
        if self.max_time_minutes is not None and fsdp:
            raise ValueError("--max_time_minutes does not run under --fsdp (its schedule needs the optimizer before "
                             "FSDP shards the model); give --max_steps instead")
        if self.use_muon:
            self.optim = "adamw_torch"
        if self.muon_learning_rate is not None and not self.muon_learning_rate > 0:
            raise ValueError(f"--muon_learning_rate must be positive, got {self.muon_learning_rate}")
        if self.max_time_minutes is not None and not self.max_time_minutes > 0:
            raise ValueError(f"--max_time_minutes must be positive, got {self.max_time_minutes}")
        if not 0 < self.decay_fraction <= 1:
            raise ValueError(f"--decay_fraction must be in (0, 1], got {self.decay_fraction}")
        if self.max_time_minutes is not None and 1 - self.decay_fraction <= self.warmup_steps < 1:
            raise ValueError(f"--warmup_steps {self.warmup_steps} (a fraction of the time budget) must end before the "
                             f"decay starts, at {1 - self.decay_fraction:g} of it (--decay_fraction {self.decay_fraction})")
        if not has_accelerator():
            self.use_cpu = True  # the Trainer runs bf16 autocast on a CPU only when told it is on one
        super().__post_init__()
