"""One line per epoch on stderr when it is not a terminal, so `dvc repro` logs show where a run is.

On a terminal Lightning's progress bar does this job; in a log file its carriage returns are
noise, and a silent CPU run can last hours.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

import pytorch_lightning as pl


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def epoch_line(epoch: int, epochs: int, step: int, metrics: dict[str, float], elapsed: float) -> str:
    """`epoch 3/12 step 141 train/loss=0.912 val/cer=0.214 elapsed 1:02 eta 3:08` (ETA from the mean epoch)."""
    shown = " ".join(f"{name}={value:.4g}" for name, value in sorted(metrics.items()))
    eta = elapsed / epoch * (epochs - epoch)
    return f"epoch {epoch}/{epochs} step {step} {shown} elapsed {_clock(elapsed)} eta {_clock(eta)}".replace("  ", " ")


class EpochLog(pl.Callback):
    """Writes `epoch_line` after each epoch's validation, on global rank 0 only."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.started = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if "/" in name and not name.startswith("progress/") and value.numel() == 1
        }
        line = epoch_line(
            trainer.current_epoch + 1, trainer.max_epochs or 0, trainer.global_step, metrics, self._elapsed()
        )
        print(line, file=self.stream or sys.stderr, flush=True)

    def _elapsed(self) -> float:
        return time.perf_counter() - self.started


def progress_callbacks(stream: TextIO | None = None) -> list[pl.Callback]:
    """The epoch log when stderr is not a terminal (Lightning's bar is on otherwise)."""
    return [] if (stream or sys.stderr).isatty() else [EpochLog(stream)]
