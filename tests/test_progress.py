"""The per-epoch log line that `dvc repro` shows when stderr is not a terminal."""

from __future__ import annotations

import io
import re

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from text_recognizer.lit_models.progress import EpochLog, epoch_line, progress_callbacks


class _Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", nn.functional.mse_loss(self.net(x), y), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_epoch_line_shows_position_metrics_and_eta():
    line = epoch_line(3, 12, 141, {"val/cer": 0.21432, "train/loss": 0.9}, elapsed=60.0)
    assert line == "epoch 3/12 step 141 train/loss=0.9 val/cer=0.2143 elapsed 1:00 eta 3:00"
    assert epoch_line(1, 2, 5, {}, elapsed=4000.0).endswith("elapsed 1:06:40 eta 1:06:40")


def test_one_line_per_epoch_with_the_logged_metrics():
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    stream = io.StringIO()
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[EpochLog(stream)],
    )
    trainer.fit(_Regression(), DataLoader(data, batch_size=16), DataLoader(data, batch_size=32))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3, lines
    for epoch, line in enumerate(lines, start=1):
        pattern = rf"epoch {epoch}/3 step {4 * epoch} train/loss=\S+ val/loss=\S+ elapsed \d+:\d\d eta \d+:\d\d"
        assert re.fullmatch(pattern, line), line


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_the_log_replaces_the_bar_only_off_a_terminal():
    assert progress_callbacks(_Stream(tty=True)) == []
    (callback,) = progress_callbacks(_Stream(tty=False))
    assert isinstance(callback, EpochLog)
