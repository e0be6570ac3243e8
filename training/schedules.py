"""A learning-rate schedule that fits a time budget: warmup, stable, then a decay that ends when the time does.

With a fixed step count, a user who has ten minutes must guess how many steps fit; guessed long, the run is cut
before its decay (and the decay is where most of the loss goes); guessed short, minutes are left unused.
Warmup–stable–decay driven by elapsed training time ends training at the budget with the decay finished:
warmup over the first `--warmup_steps` optimizer steps (below 1: that fraction of the budget), the full rate until
`1 - decay_fraction` of the budget has passed, then linearly to zero at the budget, where `TimeBudget` stops the
run. The run also ends at `--max_steps` or `--num_train_epochs` if it gets there first.

Under DDP every process must take the same learning rate and stop at the same step: the elapsed time is the
slowest process's, agreed at each step's end (one all-reduce of a number), and the schedule reads only that.
"""

from __future__ import annotations

import time

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState


class TimeBudget(TrainerCallback, ExportableState):
    """Elapsed training time against a budget, kept across a resume (the Trainer saves it in its checkpoints'
    trainer_state.json), and the stop at the budget. Time spent evaluating or saving is not training time."""

    def __init__(self, minutes: float, elapsed_s: float = 0.0):
        if not minutes > 0:
            raise ValueError(f"--max_time_minutes must be positive, got {minutes}")
        self.budget_s = minutes * 60.0
        self.elapsed_s = elapsed_s
        self.last_step_s = 0.0
        self._step_started: float | None = None

    @property
    def fraction(self) -> float:
        """The part of the budget that will be spent when the next step ends: the schedule is stepped inside a step,
        before that step's time is known, to set the rate of the step after it; so the finished steps' time plus
        two steps at the last one's duration (the same number in every process)."""
        return min(1.0, (self.elapsed_s + 2 * self.last_step_s) / self.budget_s)

    def on_train_begin(self, args, state, control, **kwargs):
        saved = (state.stateful_callbacks or {}).get(type(self).__name__) if state.global_step else None
        if saved:  # resuming: the time the run had already trained
            self.elapsed_s = saved["attributes"]["elapsed_s"]

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        previous = self.elapsed_s
        if self._step_started is not None:
            self.elapsed_s += time.perf_counter() - self._step_started
            self._step_started = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            elapsed = torch.tensor([self.elapsed_s], dtype=torch.float64, device=args.device)
            torch.distributed.all_reduce(elapsed, op=torch.distributed.ReduceOp.MAX)
            self.elapsed_s = elapsed.item()
        self.last_step_s = self.elapsed_s - previous
        if self.elapsed_s >= self.budget_s:
            control.should_training_stop = True
            control.should_save = True  # the run's end is a checkpoint too: resuming it finds nothing left to do

    def state(self) -> dict:
        return {"args": {"minutes": self.budget_s / 60.0}, "attributes": {"elapsed_s": self.elapsed_s}}


def time_budget_schedule(optimizer, budget: TimeBudget, warmup: float, decay_fraction: float) -> LambdaLR:
    """Each group's rate times: the warmup's progress (`warmup` steps, or below 1 that fraction of the budget);
    1 until `1 - decay_fraction` of the budget; then falling linearly to 0 at the budget."""
    if not 0 < decay_fraction <= 1:
        raise ValueError(f"--decay_fraction must be in (0, 1], got {decay_fraction}")

    def factor(step: int) -> float:
        if warmup >= 1:
            warmed = min(1.0, (step + 1) / warmup)
        else:
            warmed = min(1.0, max(budget.fraction / warmup, 1 / 1000)) if warmup > 0 else 1.0
        decay = min(1.0, (1.0 - budget.fraction) / decay_fraction)
        return warmed * decay

    return LambdaLR(optimizer, factor)
