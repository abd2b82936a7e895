"""Lightning wrapper that trains a character classifier (any nn.Module giving (B, C) logits).

Batches arrive already on the device, as floats in [0, 1] and (for training) augmented by
`text_recognizer.data.device_loader`, so this module only holds the loss, the optimiser,
the schedule and the metrics.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from text_recognizer.metadata import NUM_EMNIST_CLASSES

# EMNIST ByClass has classes that even people cannot tell apart from the glyph alone
# (o/O/0, l/I/1, s/S, c/C, x/X, ...). Hard targets push the logits of those pairs apart without
# bound; smoothing caps that, which keeps the probabilities calibrated and the loss honest.
LABEL_SMOOTHING = 0.1


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


def configure_adamw(
    module: pl.LightningModule,
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    schedule: str,
    warmup_fraction: float,
) -> dict[str, Any]:
    """AdamW (decay on weight matrices and kernels only, not on biases or norms) plus the schedule.

    "onecycle": warm up to `lr` over the first `warmup_fraction` of the trainer's optimiser
    steps (epochs, limit_train_batches and devices included), then anneal (cosine), stepping
    once per batch. "constant": `lr` throughout.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    if schedule == "constant":
        return {"optimizer": optimizer}
    if schedule != "onecycle":
        raise ValueError(f"schedule must be 'onecycle' or 'constant', got {schedule!r}")
    scheduler = one_cycle(optimizer, lr, int(module.trainer.estimated_stepping_batches), warmup_fraction)
    if scheduler is None:
        return {"optimizer": optimizer}
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class CharClassifier(pl.LightningModule):
    """Cross-entropy training of `model`; logs train/loss, val/loss and val/acc once per epoch."""

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: float = 3e-3,
        weight_decay: float = 5e-4,
        schedule: str = "onecycle",
        warmup_fraction: float = 0.1,
        num_classes: int = NUM_EMNIST_CLASSES,
        label_smoothing: float = LABEL_SMOOTHING,
    ) -> None:
        super().__init__()
        self.model = model
        self.lr = lr
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.warmup_fraction = warmup_fraction
        self.label_smoothing = label_smoothing
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch  # (B, 1, 28, 28) float, (B,) int64
        loss = F.cross_entropy(self(x), y, label_smoothing=self.label_smoothing)
        self.log("train/loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)  # (B, C)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.val_acc(logits, y)
        self.log("val/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(y))
        self.log("val/acc", self.val_acc, on_epoch=True, batch_size=len(y))  # the metric syncs itself

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_adamw(
            self,
            self.model,
            lr=self.lr,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            warmup_fraction=self.warmup_fraction,
        )
