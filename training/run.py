"""The two ends of a training run, shared by every training command.

Start: `RunDirectory` checks the output directory (new, this same run to resume, this run already finished, or
something else: refused), takes its lock so that two runs cannot write into it at once, and records the run's
settings only when training really starts (`start`). End: `finish_run` saves the model (safetensors, with its
remote code), the tokenizer, the generation config, the metrics, the loss curve, the run record and the model
card; `add_samples` then adds sample generations, which can never lose what was saved before them;
`push_run_to_hub` publishes the run as `scratchlm-publish` does.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers

from scratchlm.files import pid_alive
from scratchlm.model_cards import write_model_card
from scratchlm.model_cards.publish import PublishResult, publish
from scratchlm.model_cards.run_record import (
    LOSS_CURVE_FILE,
    METRICS_FILE,
    MODEL_CARD_FILE,
    RUN_LOCK_FILE,
    RUN_RECORD_FILE,
    RUN_SETTINGS_FILE,
    RunRecord,
)
from scratchlm.modeling.weights import check_safetensors

from .callbacks import plot_loss_curve

logger = logging.getLogger(__name__)
CHECKPOINT_PATTERN = re.compile(r"checkpoint-(\d+)")
TOKENIZER_DIR = "tokenizer"  # a tokenizer trained by the run, kept for a retry before training starts
# A pretrained base whose validation bits per byte are above this has learnt little more than which tokens are
# frequent (README, quick start in Chinese: a unigram model of that corpus scores 2.86, the pretraining 2.49 after
# 100 steps, 2.39 after 300, 2.33 after 600); fine-tuning such a base leaves classifiers near the majority class and
# chat replies as strings of frequent characters. Below it is no guarantee: the 2.39 and 2.33 bases still classified
# worse than no pretraining at all.
UNDERTRAINED_BITS_PER_BYTE = 2.5


def _checkpoint_is_complete(path: Path) -> bool:
    """The Trainer writes trainer_state.json last: a checkpoint without it, or with unreadable weights, was cut."""
    if not (path / "trainer_state.json").is_file():
        return False
    try:
        check_safetensors(path)
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):  # any unreadable file makes the checkpoint unusable
        return False
    return True


def _checkpoints(output_dir: Path) -> list[Path]:
    """checkpoint-N directories, newest first."""
    numbered = [(int(m.group(1)), p) for p in output_dir.iterdir()
                if p.is_dir() and (m := CHECKPOINT_PATTERN.fullmatch(p.name))]
    return [path for _, path in sorted(numbered, reverse=True)]


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest checkpoint-N in `output_dir` that was completely written; cut ones are reported and skipped."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    for path in _checkpoints(output_dir):
        if _checkpoint_is_complete(path):
            return str(path)
        logger.warning("skipping %s: the checkpoint is incomplete or corrupt (the run was cut while saving it)", path)
    return None


def warn_if_base_undertrained(base_model: str | Path, task: str) -> float | None:
    """Warn before fine-tuning a base that its own pretraining record shows is clearly undertrained (validation bits
    per byte above `UNDERTRAINED_BITS_PER_BYTE`); returns its bits per byte when it has a pretraining record."""
    path = Path(base_model)
    if not (path / RUN_RECORD_FILE).is_file():
        return None
    try:
        record = RunRecord.load(path)
    except ValueError:
        return None
    bits_per_byte = record.metrics.get("eval_bits_per_byte")
    if record.kind != "pretraining" or not isinstance(bits_per_byte, (int, float)):
        return None
    if bits_per_byte > UNDERTRAINED_BITS_PER_BYTE:
        logger.warning(
            "the base model %s is undertrained for --task %s: its validation bits per byte are %.2f after %s steps "
            "(%s training tokens), above %.1f, where fine-tuning learns little (a classifier stays at the majority "
            "class, chat replies are strings of frequent characters); pretrain it longer first (README: quick start "
            "in Chinese)", base_model, task, bits_per_byte, record.global_step or "?",
            f"{record.train_tokens:,}" if record.train_tokens else "?", UNDERTRAINED_BITS_PER_BYTE)
    return float(bits_per_byte)


def _normalized(value: Any) -> Any:
    """Paths compared by what they name: `./init` and `init/` are the same model."""
    if isinstance(value, list):
        return [_normalized(item) for item in value]
    if isinstance(value, str) and value and os.path.exists(value):
        return str(Path(value).resolve())
    return value


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = _normalized(value)
    return flat


# Settings that change how fast a run goes, not what it computes: a run given another value is the same run. The
# settings file records the values a run started with, so that resuming it computes exactly as it began.
SPEED_SETTINGS = ("model.attn_implementation",)


def _identity(settings: dict) -> dict:
    return {key: value for key, value in settings.items() if key not in SPEED_SETTINGS}


def _before_start(name: str) -> bool:
    """What a run leaves before it has really started: its lock (and the lock's temporary files), its tokenizer."""
    return name.startswith(RUN_LOCK_FILE) or name == TOKENIZER_DIR


def _create_with_content(path: Path, content: str) -> bool:
    """Create `path` holding `content`, atomically: False when it exists. Another process never sees it empty
    (an empty lock would look like one whose process is gone): the content is written to a temporary file first,
    which is then hard-linked under the name (a link, unlike a rename, fails when the name exists)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(content)
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)


def _remove_if_unchanged(path: Path, content: str) -> bool:
    """Remove `path` if it still holds `content`; False when another process replaced or removed it first. Processes
    taking over the same lock do so one at a time (an exclusive `flock` on a file beside it, which the system releases
    if its process dies): between the check and the removal no other process can put a new lock there."""
    with open(path.with_name(f"{path.name}.takeover"), "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            if path.read_text() != content:
                return False
        except FileNotFoundError:
            return False
        path.unlink()
        return True


class RunDirectory:
    """The output directory of one run: checked when created, locked while the run writes into it.

    `state` is "new" (nothing there, or `overwrite` asked to start over), "resume" (this same run, unfinished) or
    "finished" (this same run, already finished: it is left as it is). A directory holding another run, anything
    that is not a ScratchLM run, or an existing file is refused unless `overwrite` is set (never for a file).
    """

    def __init__(self, output_dir: str | Path, settings: dict[str, Any], overwrite: bool, is_main: bool = True):
        self.path = Path(output_dir)
        self.settings = _identity(_flatten(json.loads(json.dumps(settings, default=str))))
        self.overwrite = overwrite
        self.is_main = is_main
        self._locked = False
        self._trainer = None  # set by `start`
        self._entries_before: set[str] = set()  # what the directory held when this run locked it
        self._created = False  # this run made the directory: a failure before anything was written removes it
        self.state = self._check()  # on every process: all of them must agree to resume, start or stop

    def _check(self) -> str:
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"--output_dir {self.path} is an existing file, not a directory")
        settings_file = self.path / RUN_SETTINGS_FILE
        started = [p for p in self.path.iterdir() if not _before_start(p.name)] if self.path.is_dir() else []
        if self.overwrite or not (started or settings_file.is_file()):
            return "new"
        if not settings_file.is_file():
            raise FileExistsError(
                f"output directory {self.path} is not empty and holds no ScratchLM run: choose another "
                "--output_dir, or pass --overwrite_output to write into it anyway"
            )
        previous = _identity(json.loads(settings_file.read_text()))
        changed = sorted(k for k in set(previous) | set(self.settings) if previous.get(k) != self.settings.get(k))
        if changed:
            raise FileExistsError(
                f"output directory {self.path} holds another run (different {', '.join(changed)}): choose "
                "another --output_dir, or pass --overwrite_output to start over in it"
            )
        return "finished" if (self.path / RUN_RECORD_FILE).is_file() else "resume"

    def finished_record(self, max_steps: int, num_train_epochs: float) -> RunRecord | None:
        """The record of this run when it already finished with the same length; a longer run continues it."""
        if self.state != "finished":
            return None
        record = RunRecord.load(self.path)
        if (record.hyperparameters.get("max_steps"), record.hyperparameters.get("num_train_epochs")) != (
                max_steps, num_train_epochs):
            return None
        logger.warning("%s already holds this run, finished at %s: left as it is (pass --overwrite_output to train "
                       "it again, or another --output_dir)", self.path, record.finished_at)
        return record

    def started_speed_settings(self) -> dict[str, Any]:
        """The SPEED_SETTINGS this unfinished (or finished and continued) run started with, as `start` recorded
        them; empty for a new run or one recorded before they were kept."""
        settings_file = self.path / RUN_SETTINGS_FILE
        if self.state == "new" or not settings_file.is_file():
            return {}
        recorded = json.loads(settings_file.read_text())
        return {key: recorded[key] for key in SPEED_SETTINGS if recorded.get(key) is not None}

    def lock(self) -> None:
        """Refuse a second run writing into this directory at the same time; a lock left by a dead process is
        taken over."""
        if not self.is_main:
            return
        self._created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        self._entries_before = {path.name for path in self.path.iterdir()}
        lock_file = self.path / RUN_LOCK_FILE
        for _ in range(10):
            if _create_with_content(lock_file, f"{os.getpid()}\n"):
                self._locked = True
                return
            try:
                content = lock_file.read_text()
            except FileNotFoundError:  # released, or being taken over, meanwhile: try again
                continue
            pid = int(content.strip()) if content.strip().isdigit() else 0
            if pid and pid != os.getpid() and pid_alive(pid):
                raise FileExistsError(f"another run (process {pid}) is writing into {self.path}: wait for it to "
                                      f"finish, or choose another --output_dir")
            if _remove_if_unchanged(lock_file, content):
                logger.warning("taking over the lock of %s left by a process that is gone (pid %s)", self.path, pid)
        raise FileExistsError(f"could not take the lock {lock_file}: another run is starting in {self.path}")

    def unlock(self) -> None:
        if self._locked:
            (self.path / RUN_LOCK_FILE).unlink(missing_ok=True)
            self._locked = False
            if self._created and not any(self.path.iterdir()):
                self.path.rmdir()

    def __enter__(self) -> RunDirectory:
        self.lock()
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is not None and self._trainer is not None and self._trainer.state.global_step == 0:
            self._unclaim()
        self.unlock()

    def _unclaim(self) -> None:
        """A new run that failed before its first optimizer step claims nothing: its settings, and whatever else it
        wrote (logs, loss curve), are removed, so that the corrected command starts cleanly here."""
        if self.state != "new":
            return
        for path in self.path.iterdir():
            if path.name not in self._entries_before and not _before_start(path.name):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        (self.path / RUN_SETTINGS_FILE).unlink(missing_ok=True)

    def start(self, trainer, speed_settings: dict[str, Any] | None = None) -> None:
        """Training really starts with `trainer`: record the settings and the `speed_settings` it runs with (and,
        when starting over, clear the previous run's checkpoints and results, which would otherwise be resumed or
        mistaken for this run's). Until the trainer's first step, a failure takes this back (`_unclaim`)."""
        if not self.is_main:
            return
        self._trainer = trainer
        self.path.mkdir(parents=True, exist_ok=True)
        if self.overwrite and self.state == "new":
            for checkpoint in _checkpoints(self.path):
                shutil.rmtree(checkpoint)
            for name in (RUN_RECORD_FILE, METRICS_FILE, MODEL_CARD_FILE):
                (self.path / name).unlink(missing_ok=True)
        speed_settings = speed_settings or {}
        if unknown := set(speed_settings) - set(SPEED_SETTINGS):
            raise ValueError(f"not speed settings: {', '.join(sorted(unknown))}")
        recorded = {**self.settings, **speed_settings}
        (self.path / RUN_SETTINGS_FILE).write_text(json.dumps(recorded, indent=2) + "\n")


def in_run_directory(training_args, settings: dict[str, Any], train: Callable[[RunDirectory], RunRecord]) -> RunRecord:
    """`train(run_dir)` inside the run's claimed output directory: the record of this run when it already finished
    with the same length (nothing is trained again), else the record `train` returns."""
    run_dir = RunDirectory(training_args.output_dir, settings, training_args.overwrite_output,
                           is_main=training_args.process_index == 0)
    if finished := run_dir.finished_record(training_args.max_steps, training_args.num_train_epochs):
        return finished
    with run_dir:
        return train(run_dir)


def _disk_full(error: BaseException) -> bool:
    """The error of a write to a full disk (or quota): an OSError, or torch's or safetensors' report of one."""
    return getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(
        text in str(error) for text in ("No space left on device", "file write failed"))


def run_training(trainer, resume_from: str | None):
    """`trainer.train`, resuming from `resume_from`. A disk that fills while a checkpoint is written is one line
    naming the checkpoint, which is removed (cut, it could not be resumed from): the same command run again once
    there is room resumes from the last complete one."""
    try:
        return trainer.train(resume_from_checkpoint=resume_from)
    except Exception as error:
        checkpoint = Path(trainer.args.output_dir) / f"checkpoint-{trainer.state.global_step}"
        if not _disk_full(error) or not checkpoint.is_dir() or _checkpoint_is_complete(checkpoint):
            raise
        shutil.rmtree(checkpoint, ignore_errors=True)
        last = last_complete_checkpoint(trainer.args.output_dir)
        raise OSError(f"the disk is full: the checkpoint {checkpoint} could not be written ({error}) and was removed; "
                      f"free some space and run the same command again: it resumes from "
                      f"{last or 'the start (no complete checkpoint)'}") from None


def architecture_summary(config) -> dict[str, Any]:
    return {
        "model_type": config.model_type,
        "num_hidden_layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_position_embeddings,
        "rope_type": config.rope_parameters.get("rope_type", "default"),
        "tie_word_embeddings": config.tie_word_embeddings,
    }


def hyperparameters(args) -> dict[str, Any]:
    return {
        "learning_rate": args.learning_rate,
        "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        "warmup_steps": args.warmup_steps,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "total_train_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps
        * max(args.world_size, 1),
        "max_steps": args.max_steps,
        "num_train_epochs": args.num_train_epochs,
        "weight_decay": args.weight_decay,
        "adam_beta1": args.adam_beta1,
        "adam_beta2": args.adam_beta2,
        "max_grad_norm": args.max_grad_norm,
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "gradient_checkpointing": bool(args.gradient_checkpointing),
        "seed": args.seed,
        "world_size": args.world_size,
        **optimizer_hyperparameters(args),
    }


def optimizer_hyperparameters(args) -> dict[str, Any]:
    """The optimizer and, for Muon + AdamW, each group's rate (one weight decay serves both); the time budget."""
    values: dict[str, Any] = {"optimizer": getattr(args, "optimizer_name", str(getattr(args.optim, "value", args.optim)))}
    if getattr(args, "use_muon", False):
        values["optimizer"] = ("muon for the blocks' 2-D matrices (learning rate: muon_learning_rate), adamw for "
                               "embeddings, heads, norms and biases (learning rate: learning_rate; norms and biases "
                               "without weight decay)")
        values["muon_learning_rate"] = args.muon_learning_rate or args.learning_rate
    if getattr(args, "max_time_minutes", None) is not None:
        values["lr_scheduler_type"] = "warmup-stable-decay over the time budget"
        values["max_time_minutes"] = args.max_time_minutes
        values["decay_fraction"] = args.decay_fraction
    return values


def environment() -> dict[str, str]:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()})"
    return {"torch": torch.__version__, "transformers": transformers.__version__, "device": device}


def save_record(output_dir: Path, record: RunRecord) -> None:
    """The run record, its metrics file and the model card drawn from it."""
    (output_dir / METRICS_FILE).write_text(json.dumps(record.metrics, indent=2) + "\n")
    record.save(output_dir)
    write_model_card(output_dir, record)


def finish_run(trainer, tokenizer, record: RunRecord, training_args=None) -> RunRecord:
    """Save everything a finished run leaves in `trainer.args.output_dir` and return the completed record.

    `record` holds what the command knows (task, datasets, metrics, ...); this adds the architecture, parameter
    counts, hyperparameters, environment and loss curve, then writes the metrics, the record and the card.
    `training_args` are the command's, where the trainer holds a copy without ScratchLM's options (TRL's config).
    """
    output_dir = Path(trainer.args.output_dir)
    if trainer.is_fsdp_enabled:  # the run directory holds the whole model, whatever the checkpoints' state dict type
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(output_dir))
    if not trainer.is_world_process_zero():
        return record
    model = trainer.model
    if tokenizer is not None:
        tokenizer.save_pretrained(output_dir)
    base = getattr(model, "get_base_model", lambda: model)()
    if getattr(base, "generation_config", None) is not None and base.can_generate():
        base.generation_config.save_pretrained(output_dir)
    record.architecture = architecture_summary(base.config)
    record.num_parameters = base.num_parameters()
    record.trainable_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    record.hyperparameters = {**hyperparameters(trainer.args), **optimizer_hyperparameters(training_args or trainer.args),
                              "attn_implementation": getattr(base.config, "_attn_implementation", None)}
    record.global_step = trainer.state.global_step
    record.train_losses = {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry}
    record.environment = environment()
    record.finished_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if plot_loss_curve(trainer.state.log_history, output_dir / LOSS_CURVE_FILE):
        record.loss_curve = LOSS_CURVE_FILE
    save_record(output_dir, record)
    return record


def add_samples(trainer, record: RunRecord, generate: Callable[[], list[dict]]) -> RunRecord:
    """Generate samples after the run was saved and add them to its record and card. A failure is reported and
    leaves the saved run as it was: samples are an extra, never the reason a finished run is lost. The main process
    samples alone, so a model that FSDP shards over several processes is not sampled (it would wait for the others)."""
    if trainer.is_fsdp_enabled and trainer.args.world_size > 1:
        logger.info("no samples: the model is sharded over %d processes (sample the saved model with "
                    "scratchlm-generate)", trainer.args.world_size)
        return record
    output_dir = trainer.args.output_dir
    try:
        samples = generate()
    except Exception as error:  # generation is an extra: whatever breaks it must not undo the run
        logger.warning("sample generation failed (%s: %s); the model, metrics and card are saved without samples",
                       type(error).__name__, error)
        return record
    if samples:
        record.samples = samples
        save_record(Path(output_dir), record)
    return record


def push_run_to_hub(trainer, **kwargs) -> PublishResult | None:
    """What a training command calls after `finish_run` when `--push_to_hub` is set.

    Publishes `trainer.args.output_dir` as `scratchlm-publish` does (same checks, same files, same card) to
    `--hub_model_id` (default: the output directory's name, under the token's user), with `--hub_token` and
    `--hub_private_repo`. Use it instead of `Trainer.push_to_hub`, which would replace the card and upload the
    whole output directory. Does nothing on processes other than the main one.
    """
    if not trainer.is_world_process_zero():
        return None
    args = trainer.args
    output_dir = Path(args.output_dir)
    repo_id = args.hub_model_id or output_dir.resolve().name
    return publish(
        output_dir, repo_id, private=bool(args.hub_private_repo), token=args.hub_token,
        commit_message="End of training", require_namespace=False, **kwargs,
    )
