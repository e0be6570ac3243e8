"""Muon for the blocks' weight matrices, AdamW for everything else: the split modded-nanogpt and nanochat train with.

`torch.optim.Muon` orthogonalises the momentum of a 2-D weight (Newton–Schulz) before the update; it is meant
for the hidden matrices only. Embeddings, the LM head, task heads, norms and biases keep AdamW. `MuonWithAdamW`
is one `torch.optim.Optimizer` over both, so the Trainer's learning-rate schedule, gradient clipping,
checkpoints (its state dict holds both) and accelerate's wrapping work unchanged. The Trainer has no Muon option
of its own: the training commands build this optimizer and hand it over with `Trainer(optimizers=(optimizer,
None))`, the Trainer then makes the schedule.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import torch

from .arguments import bf16_supported

logger = logging.getLogger(__name__)

# A parameter inside a numbered block (`model.layers.3.`, `encoder.layers.0.`, LoRA's `...layers.3...lora_A...`).
BLOCK_PARAMETER = re.compile(r"(^|\.)layers\.\d+\.")


@dataclass(frozen=True)
class MuonSettings:
    """The two groups' learning rates and weight decays. Muon's rate is scaled per matrix by
    `adjust_lr_fn="match_rms_adamw"` (Moonshot's rule: 0.2·sqrt(max(A, B))), so it can share AdamW's rate."""

    muon_lr: float
    adamw_lr: float
    weight_decay: float
    adamw_betas: tuple[float, float] = (0.9, 0.999)
    adamw_eps: float = 1e-8
    momentum: float = 0.95


def is_muon_parameter(name: str, parameter: torch.Tensor) -> bool:
    return parameter.ndim == 2 and BLOCK_PARAMETER.search(name) is not None


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon on the trainable 2-D block matrices of `model`, AdamW on its other trainable parameters (weight decay
    on matrices such as embeddings and heads, none on norms and biases). Each param group carries `"muon"`."""

    def __init__(self, model: torch.nn.Module, settings: MuonSettings):
        muon, decay, no_decay = [], [], []
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            if is_muon_parameter(name, parameter):
                muon.append(parameter)
            elif parameter.ndim >= 2:
                decay.append(parameter)
            else:
                no_decay.append(parameter)
        if not muon:
            raise ValueError("--optim muon found no trainable 2-D weight matrix inside the model's blocks: use adamw_torch")
        self.settings = settings
        self.muon = torch.optim.Muon([{"params": muon, "muon": True}], lr=settings.muon_lr,
                                     weight_decay=settings.weight_decay, momentum=settings.momentum,
                                     adjust_lr_fn="match_rms_adamw")
        adamw_groups = [{"params": group, "weight_decay": wd, "muon": False}
                        for group, wd in ((decay, settings.weight_decay), (no_decay, 0.0)) if group]
        self.adamw = torch.optim.AdamW(adamw_groups, lr=settings.adamw_lr, betas=settings.adamw_betas,
                                       eps=settings.adamw_eps) if adamw_groups else None
        inner = [self.muon] + ([self.adamw] if self.adamw else [])
        # The same group dicts as the inner optimizers': a schedule that sets `lr` on these sets it for them.
        super().__init__([group for optimizer in inner for group in optimizer.param_groups], defaults={})
        self.inner = inner

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.inner:
            optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.inner:
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict() if self.adamw else None}

    def load_state_dict(self, state_dict: dict) -> None:
        if set(state_dict) != {"muon", "adamw"}:
            raise ValueError("the checkpoint's optimizer state is not Muon + AdamW's: resume with the --optim it began with")
        self.muon.load_state_dict(state_dict["muon"])
        if self.adamw is not None:
            self.adamw.load_state_dict(state_dict["adamw"])
        # Loading gives the inner optimizers new group dicts (accelerate loads the state once when it wraps the
        # optimizer, the Trainer again on resume): share them again, or the schedule would set rates no one reads.
        self.param_groups = [group for optimizer in self.inner for group in optimizer.param_groups]


def muon_settings(args) -> MuonSettings:
    """The groups' settings from the training arguments: Muon at `--muon_learning_rate` (default: the AdamW rate),
    AdamW at `--learning_rate` with the run's betas and epsilon, one weight decay for both."""
    return MuonSettings(muon_lr=args.muon_learning_rate or args.learning_rate, adamw_lr=args.learning_rate,
                        weight_decay=args.weight_decay, adamw_betas=(args.adam_beta1, args.adam_beta2),
                        adamw_eps=args.adam_epsilon)


def build_optimizer(model: torch.nn.Module, args) -> torch.optim.Optimizer:
    """`--optim muon`: Muon + AdamW; otherwise the optimizer the Trainer would make from `--optim`, over the same
    groups (weight decay on matrices, none on norms and biases)."""
    if args.use_muon:
        return MuonWithAdamW(model, muon_settings(args))
    from transformers import Trainer

    optimizer_class, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    groups = [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": args.weight_decay},
              {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}]
    return optimizer_class([group for group in groups if group["params"]], **kwargs)


@dataclass
class TrainerOptimization:
    """What a command hands its Trainer for `--optim muon` and `--max_time_minutes`: `optimizers=(optimizer,
    scheduler)`, Nones where the Trainer makes its own from the arguments, and the callbacks that go with them."""

    optimizer: torch.optim.Optimizer | None = None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    callbacks: tuple = ()

    @property
    def optimizers(self) -> tuple:
        return self.optimizer, self.scheduler


def trainer_optimization(model: torch.nn.Module, args) -> TrainerOptimization:
    """Today's recipe (the Trainer's AdamW and `--lr_scheduler_type`) unless `--optim muon` or `--max_time_minutes`
    asks for more; then the optimizer is built here, on `model` as the Trainer will train it (LoRA-wrapped, say)."""
    from .schedules import TimeBudget, time_budget_schedule

    if not args.use_muon and args.max_time_minutes is None:
        return TrainerOptimization()
    if args.use_muon and args.use_cpu and not bf16_supported():
        logger.warning("--optim muon on this CPU: torch.optim.Muon orthogonalises in bf16, which a CPU without "
                       "AVX512-BF16/AMX computes tens of times slower than fp32 (45x for a 512x512 product on an "
                       "AVX2 Zen 2): expect slow steps; Muon pays on GPUs and bf16 CPUs")
    optimizer = build_optimizer(model, args)
    if args.max_time_minutes is None:
        return TrainerOptimization(optimizer)
    budget = TimeBudget(args.max_time_minutes)
    return TrainerOptimization(optimizer, time_budget_schedule(optimizer, budget, args.warmup_steps,
                                                               args.decay_fraction), (budget,))
