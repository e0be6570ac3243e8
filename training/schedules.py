"""A learning-rate schedule that fits a time budget: warmup, stable, then a decay that ends when the time does.

With a fixed step count, a user who has ten minutes must guess how many steps fit; guessed long, the run is cut
before its decay (and the decay is where most of the loss goes); guessed short, minutes are left unused.
Warmup–stable–decay driven by elapsed training time ends training at the budget with the decay finished:
warmup over the first `warmup_steps` optimizer steps, the full rate until `1 - decay_fraction` of the budget has
passed, then linearly to zero at the budget, where `TimeBudget` stops the run.
"""

from __future__ import annotations

import time

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
        self._step_started: float | None = None

    @property
    def fraction(self) -> float:
        """The part of the budget spent, the step under way included (the schedule is stepped inside it)."""
        running = time.perf_counter() - self._step_started if self._step_started is not None else 0.0
        return min(1.0, (self.elapsed_s + running) / self.budget_s)

    def on_train_begin(self, args, state, control, **kwargs):
        saved = (state.stateful_callbacks or {}).get(type(self).__name__) if state.global_step else None
        if saved:  # resuming: the time the run had already trained
            self.elapsed_s = saved["attributes"]["elapsed_s"]

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._step_started is not None:
            self.elapsed_s += time.perf_counter() - self._step_started
            self._step_started = None
        if self.elapsed_s >= self.budget_s:
            control.should_training_stop = True
            control.should_save = True  # the run's end is a checkpoint too: resuming it finds nothing left to do

    def state(self) -> dict:
        return {"args": {"minutes": self.budget_s / 60.0}, "attributes": {"elapsed_s": self.elapsed_s}}


def time_budget_schedule(optimizer, budget: TimeBudget, warmup_steps: int, decay_fraction: float) -> LambdaLR:
    """Each group's rate times: step/warmup_steps while warming up; 1 until `1 - decay_fraction` of the budget;
    then falling linearly to 0 at the budget."""
    if not 0 < decay_fraction <= 1:
        raise ValueError(f"--decay_fraction must be in (0, 1], got {decay_fraction}")

    def factor(step: int) -> float:
        warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
        decay = min(1.0, (1.0 - budget.fraction) / decay_fraction)
        return warmup * decay

    return LambdaLR(optimizer, factor)
