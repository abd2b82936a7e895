"""Lightning wrapper that trains a character classifier (any nn.Module giving (B, C) logits).

Batches arrive already on the device, as floats in [0, 1] and (for training) augmented by
`text_recognizer.data.device_loader` (DeviceLoader), so this module only holds the loss, the optimiser,
the schedule and the metrics.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from text_recognizer.lit_models.optim import AdamWSettings, configure_adamw
from text_recognizer.metadata import NUM_EMNIST_CLASSES


class CharClassifier(pl.LightningModule):
    """Cross-entropy training of `model`; logs train/loss, val/loss and val/acc once per epoch.

    label_smoothing (train_cnn.label_smoothing): EMNIST ByClass has classes that even people cannot
    tell apart from the glyph alone (o/O/0, l/I/1, s/S, c/C, x/X, ...). Hard targets push the logits
    of those pairs apart without bound; smoothing caps that, which keeps the probabilities
    calibrated and the loss honest.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        optimizer: AdamWSettings,
        num_classes: int = NUM_EMNIST_CLASSES,
        label_smoothing: float,
    ) -> None:
        super().__init__()
        self.model = model
        self.optimizer_settings = optimizer
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
        # estimated_stepping_batches counts epochs, limit_train_batches and devices
        return configure_adamw(self.model, self.optimizer_settings, int(self.trainer.estimated_stepping_batches))
