"""Muon for the blocks' weight matrices, AdamW for everything else: the split modded-nanogpt and nanochat train with.

`torch.optim.Muon` orthogonalises the momentum of a 2-D weight (Newton–Schulz) before the update; it is meant
for the hidden matrices only. Embeddings, the LM head, task heads, norms and biases keep AdamW. `MuonWithAdamW`
is one `torch.optim.Optimizer` over both, so the Trainer's learning-rate schedule, gradient clipping,
checkpoints (its state dict holds both) and accelerate's wrapping work unchanged. The Trainer has no Muon option
of its own: the training commands build this optimizer and hand it over with `Trainer(optimizers=(optimizer,
None))`, the Trainer then makes the schedule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

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

    def describe(self) -> dict:
        return {"optimizer": "muon", "muon": {"lr": self.muon_lr, "weight_decay": self.weight_decay,
                                              "momentum": self.momentum, "adjust_lr_fn": "match_rms_adamw",
                                              "parameters": "2-D weight matrices of the blocks"},
                "adamw": {"lr": self.adamw_lr, "weight_decay": self.weight_decay, "betas": list(self.adamw_betas),
                          "parameters": "embeddings, LM and task heads (weight decay), norms and biases (none)"}}


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
                                     adjust_lr_fn="match_rms_adamw")  # fmt: skip
        adamw_groups = [{"params": group, "weight_decay": wd, "muon": False}
                        for group, wd in ((decay, settings.weight_decay), (no_decay, 0.0)) if group]  # fmt: skip
        self.adamw = torch.optim.AdamW(adamw_groups, lr=settings.adamw_lr, betas=settings.adamw_betas,
                                       eps=settings.adamw_eps) if adamw_groups else None  # fmt: skip
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
