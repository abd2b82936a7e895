"""AdamW and its learning-rate schedule, shared by the character and the line models."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class AdamWSettings:
    """The optimiser part of a train_* params section (see TrainParams for the meaning of each key).

    No defaults: the values come from params.yaml through TrainParams, so there is one set of defaults.
    """

    lr: float
    weight_decay: float
    schedule: str
    warmup_fraction: float


def one_cycle(
    optimizer: torch.optim.Optimizer, lr: float, total_steps: int, warmup_fraction: float
) -> torch.optim.lr_scheduler.OneCycleLR | None:
    """OneCycleLR to be stepped once per batch; None (keep `lr`) for runs under 4 steps.

    The warm-up is kept between 2 steps and all but the last 2: PyTorch's OneCycleLR divides by
    zero when either phase is empty, which a 10 % warm-up of a short test run would give.
    """
    if total_steps < 4:
        return None
    pct_start = min(max(warmup_fraction, 2 / total_steps), (total_steps - 2) / total_steps)
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=pct_start)


def configure_adamw(model: nn.Module, settings: AdamWSettings, total_steps: int) -> dict[str, Any]:
    """AdamW (decay on weight matrices and kernels only, not on biases or norms) plus the schedule,
    in the form LightningModule.configure_optimizers returns.

    "onecycle": warm up to `lr` over the first `warmup_fraction` of the run's `total_steps`
    optimiser steps, then anneal (cosine), stepping once per batch. "constant": `lr` throughout.
    """
    lr, schedule = settings.lr, settings.schedule
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": settings.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    if schedule == "constant":
        return {"optimizer": optimizer}
    if schedule != "onecycle":
        raise ValueError(f"schedule must be 'onecycle' or 'constant', got {schedule!r}")
    scheduler = one_cycle(optimizer, lr, total_steps, settings.warmup_fraction)
    if scheduler is None:
        return {"optimizer": optimizer}
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
