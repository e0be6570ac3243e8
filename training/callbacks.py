"""Trainer callbacks shared by every training command."""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from scratchlm.model_cards.run_record import LOSS_CURVE_FILE

logger = logging.getLogger(__name__)


def plot_loss_curve(log_history: list[dict], path: str | Path, title: str = "ScratchLM training") -> Path | None:
    """Training and validation loss against optimizer steps, from `TrainerState.log_history`."""
    train = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry]
    validation = [(entry["step"], entry["eval_loss"]) for entry in log_history if "eval_loss" in entry]
    if not train and not validation:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2), dpi=110)
    if train:
        axis.plot(*zip(*train), label="training loss", linewidth=1.2)
    if validation:
        axis.plot(*zip(*validation), "o-", label="validation loss", linewidth=1.5, markersize=3)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss (nats per token)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


class LossCurveCallback(TrainerCallback):
    """Redraws `loss_curve.png` in the output directory at every evaluation, checkpoint and at the end."""

    def _draw(self, args, state):
        if state.is_world_process_zero:
            plot_loss_curve(state.log_history, Path(args.output_dir) / LOSS_CURVE_FILE)

    def on_evaluate(self, args, state, control, **kwargs):
        self._draw(args, state)

    def on_save(self, args, state, control, **kwargs):
        self._draw(args, state)

    def on_train_end(self, args, state, control, **kwargs):
        self._draw(args, state)


class LogEveryStepOnceCallback(TrainerCallback):
    """Logs the training loss at every checkpoint and at the last step too, so that the log history covers every step
    once: a resumed run then recomputes the whole run's mean loss from it (`whole_run_metrics`). Without it the loss
    of the steps between the last log and a checkpoint is lost when a run is cut and resumed from that checkpoint."""

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save or control.should_training_stop:
            control.should_log = True

    def on_epoch_end(self, args, state, control, **kwargs):
        if control.should_save:
            control.should_log = True


def whole_run_metrics(state) -> dict:
    """`train_loss` (the mean loss over every step), `epoch` and `total_flos` of the whole run from the Trainer's
    state. After a resume, the Trainer's own `train_loss` is the mean over the steps since the resume only."""
    total, steps, previous = 0.0, 0, 0
    for entry in state.log_history:
        if "loss" in entry:
            total += entry["loss"] * (entry["step"] - previous)
            steps, previous = steps + entry["step"] - previous, entry["step"]
    metrics = {"epoch": state.epoch, "total_flos": state.total_flos}
    return {**metrics, "train_loss": total / steps} if steps else metrics


class PerplexityCallback(TrainerCallback):
    """Adds perplexity (and bits per byte, when the evaluated bytes are known) to every evaluation's metrics.

    Bits per byte = total validation nats / (validation bytes x ln 2): independent of the tokenizer.
    """

    def __init__(self, validation_tokens: int | None = None, validation_bytes: int | None = None):
        self.validation_tokens = validation_tokens
        self.validation_bytes = validation_bytes

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or "eval_loss" not in metrics:
            return
        add_language_model_metrics(metrics, self.validation_tokens, self.validation_bytes)
        # The Trainer logged the metrics before this callback ran: record the additions in the log history too.
        if state.log_history and state.log_history[-1].get("eval_loss") == metrics["eval_loss"]:
            state.log_history[-1].update({k: v for k, v in metrics.items() if k not in state.log_history[-1]})


def add_language_model_metrics(metrics: dict, tokens: int | None, num_bytes: int | None, prefix: str = "eval_"):
    loss = metrics[f"{prefix}loss"]
    metrics[f"{prefix}perplexity"] = math.exp(min(loss, 50.0))
    if tokens and num_bytes:
        # eval_loss is the mean over predicted tokens; each block predicts all but its first token.
        metrics[f"{prefix}bits_per_byte"] = loss * tokens / (num_bytes * math.log(2))
    return metrics


class ProgressLogCallback(TrainerCallback):
    """Progress as one log line per logging step (`step 40/1200 (3%), loss 5.21, 0.8 s/step, 16 min left`), for
    output that is not a terminal, where tqdm's redrawn bar becomes blank or run-together lines."""

    def __init__(self):
        self.started, self.first_step = None, None  # on_log comes before on_train_begin when evaluating first

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.first_step = time.perf_counter(), state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        shown = ", ".join(f"{key} {value:.4g}" for key, value in logs.items()
                          if isinstance(value, float) and key in ("loss", "eval_loss", "eval_bits_per_byte",
                                                                  "eval_accuracy", "learning_rate"))
        if not state.max_steps:  # an evaluation before training starts
            logger.info("before training%s", f": {shown}" if shown else "")
            return
        line = f"step {state.global_step}/{state.max_steps} ({state.global_step / state.max_steps:.0%})"
        done = state.global_step - (self.first_step or 0)
        if self.started is not None and done > 0:
            per_step = (time.perf_counter() - self.started) / done
            line += f", {per_step:.2f} s/step, {(state.max_steps - state.global_step) * per_step / 60:.1f} min left"
        logger.info("%s%s", line, f": {shown}" if shown else "")


def use_log_friendly_progress(trainer, stream=None) -> bool:
    """When `stream` (default: stderr) is not a terminal, replace the Trainer's tqdm bar (and its printing of the
    logs) with `ProgressLogCallback`; returns whether it did."""
    stream = stream if stream is not None else sys.stderr
    if stream.isatty():
        return False
    trainer.args.disable_tqdm = True
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(ProgressLogCallback())
    return True
