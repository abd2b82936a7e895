"""Lightning wrappers that train a line reader: LineRecognizer with CTC (any nn.Module giving (B, C, T) logits),
LineSimpleRecognizer with cross-entropy per 28-px window (line_model.arch simple)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from text_recognizer.lit_models.ctc import ctc_loss, greedy_decode, indices_to_text, labels_to_texts
from text_recognizer.lit_models.optim import AdamWSettings, configure_adamw
from text_recognizer.lit_models.windows import window_decode, window_hits, window_targets

LineBatch = tuple[torch.Tensor, ...]  # (x, labels, lengths) or (x, labels, lengths, input_lengths)


class LineRecognizer(pl.LightningModule):
    """CTC training of `model`; logs train/loss, val/loss, val/cer and val/line_acc once per epoch.

    A batch may carry per-line CTC input lengths (EmnistLinesDataModule's 4th element): the
    model gets them (a context head masks the padding with them), the loss aligns each line
    within its own steps, and decoding ignores the steps past them. Without them every line has
    the full T steps.
    """

    def __init__(self, model: nn.Module, *, optimizer: AdamWSettings) -> None:
        super().__init__()
        self.model = model
        self.optimizer_settings = optimizer
        # corpus-level: summed edits / summed reference characters, exact across batches and DDP ranks
        self.val_cer = torchmetrics.text.CharErrorRate()
        self.val_line_acc = torchmetrics.MeanMetric()

    def forward(self, x: torch.Tensor, input_lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x) if input_lengths is None else self.model(x, input_lengths)

    @staticmethod
    def _unpack(batch: LineBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        x, labels, lengths, *rest = batch  # (B, 1, 28, W) float, (B, L) int64 padded, (B,) int64[, (B,) int64]
        return x, labels, lengths, (rest[0] if rest else None)

    def training_step(self, batch: LineBatch, batch_idx: int) -> torch.Tensor:
        x, labels, lengths, input_lengths = self._unpack(batch)
        loss = ctc_loss(self(x, input_lengths), labels, lengths, input_lengths)  # float32 even under bf16 autocast
        self.log("train/loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(x))
        return loss

    def validation_step(self, batch: LineBatch, batch_idx: int) -> None:
        x, labels, lengths, input_lengths = self._unpack(batch)
        logits = self(x, input_lengths)  # (B, C, T)
        loss = ctc_loss(logits, labels, lengths, input_lengths)
        self.log("val/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(x))
        preds = [indices_to_text(row) for row in greedy_decode(logits, input_lengths)]
        targets = labels_to_texts(labels, lengths)  # cut at each length: padding never scores
        self.val_cer(preds, targets)
        exact = [float(p == t) for p, t in zip(preds, targets, strict=True)]
        self.val_line_acc(torch.tensor(exact, device=self.device))
        self.log("val/cer", self.val_cer, on_epoch=True, batch_size=len(x))
        self.log("val/line_acc", self.val_line_acc, on_epoch=True, batch_size=len(x))

    def configure_optimizers(self) -> dict[str, Any]:
        # estimated_stepping_batches counts epochs, limit_train_batches and devices
        return configure_adamw(self.model, self.optimizer_settings, int(self.trainer.estimated_stepping_batches))


class LineSimpleRecognizer(pl.LightningModule):
    """Cross-entropy per window of `model` (LineCNNSimple: (B, C, L) logits, window i for character i); logs
    train/loss, val/loss, val/cer, val/line_acc and val/char_acc once per epoch.

    Batches are (x, labels, lengths) cropped to their longest text (EmnistLinesWindowsDataModule). The loss counts
    every window of the crop, the padding class too (the lab's loss): the empty windows past a text must read as
    nothing. The metrics never count padding: the CER and line accuracy compare texts (window_decode against the
    labels cut at their lengths, as LineRecognizer's do), char_acc only the windows inside each text.
    """

    def __init__(self, model: nn.Module, *, optimizer: AdamWSettings) -> None:
        super().__init__()
        self.model = model
        self.optimizer_settings = optimizer
        self.val_cer = torchmetrics.text.CharErrorRate()
        self.val_line_acc = torchmetrics.MeanMetric()
        self.val_char_acc = torchmetrics.MeanMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        targets = window_targets(labels, logits.shape[2])  # (B, L)
        return F.cross_entropy(logits.float(), targets)  # float32 even under bf16 autocast

    def training_step(self, batch: LineBatch, batch_idx: int) -> torch.Tensor:
        x, labels, _ = batch  # (B, 1, 28, 28 * L) float, (B, max_length) int64 padded, (B,) int64
        loss = self._loss(self(x), labels)
        self.log("train/loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(x))
        return loss

    def validation_step(self, batch: LineBatch, batch_idx: int) -> None:
        x, labels, lengths = batch
        logits = self(x)  # (B, C, L)
        self.log("val/loss", self._loss(logits, labels), on_epoch=True, sync_dist=True, batch_size=len(x))
        preds = [indices_to_text(row) for row in window_decode(logits)]
        targets = labels_to_texts(labels, lengths)  # cut at each length: padding never scores
        self.val_cer(preds, targets)
        exact = [float(p == t) for p, t in zip(preds, targets, strict=True)]
        self.val_line_acc(torch.tensor(exact, device=self.device))
        self.val_char_acc(window_hits(logits, labels, lengths).float())
        self.log("val/cer", self.val_cer, on_epoch=True, batch_size=len(x))
        self.log("val/line_acc", self.val_line_acc, on_epoch=True, batch_size=len(x))
        self.log("val/char_acc", self.val_char_acc, on_epoch=True, batch_size=len(x))

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_adamw(self.model, self.optimizer_settings, int(self.trainer.estimated_stepping_batches))
