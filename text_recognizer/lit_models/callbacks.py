"""What a training run keeps per epoch: the metrics files, and a checkpoint to resume from.

MetricsLog writes one row per epoch into dvclive's layout (`metrics.json` and
`plots/metrics/<name>.tsv`, which dvc.yaml declares) through dvclive when it is installed, else
through a small writer of the same files, so a machine without dvc or dvclive still trains.

ResumeCheckpoint keeps a Lightning checkpoint of the last finished epoch, plus the global RNG
states (dropout draws from torch's; Lightning does not save them), under a file name that is the
run's fingerprint: params, the input file's digest, the code and the library versions. A rerun of
the same run resumes from it and ends with the same numbers as an uninterrupted run (on the CPU,
where runs are deterministic); any change starts afresh. The epochs' metrics rows travel in the
same checkpoint, so a resumed run's metrics files also equal an uninterrupted run's.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import json
import math
import os
import random
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytorch_lightning as pl
import torch

PathLike = str | os.PathLike[str]
Row = tuple[int, dict[str, float]]  # (step, {"train/loss": ..., "val/acc": ...})


# --- metrics files -------------------------------------------------------------------------------


class MetricsWriter(Protocol):
    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class JsonMetrics:
    """dvclive's files without dvclive: `metrics.json` (latest values, nested at "/", plus "step")
    and `plots/metrics/<name>.tsv` (a `step <basename>` header, one row per call), byte for byte."""

    def __init__(self, directory: PathLike) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.summary: dict[str, Any] = {}

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            shown: float | str = value if math.isfinite(value) else str(value)  # as dvclive writes nan
            path = self.directory / "plots" / "metrics" / f"{name}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists()
            with open(path, "a", encoding="utf-8", newline="") as f:
                writer = csv.writer(f, delimiter="\t", lineterminator=os.linesep)
                if new:
                    writer.writerow(["step", os.path.basename(name)])
                writer.writerow([step, shown])
            *parents, leaf = name.split("/")
            node = self.summary
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = shown
        self.summary["step"] = step
        with open(self.directory / "metrics.json", "w", encoding="utf-8") as f:
            json.dump(self.summary, f, indent=4)
            f.write("\n")

    def close(self) -> None:
        pass  # every call writes its files whole


class DvcliveMetrics:
    """dvclive's Live with its DVC integration off through its public options: no dvc.yaml
    (dvc.yaml declares the metrics and plots itself), no experiment saved, no report.

    `Live.end` is never called: besides the summary written here each epoch, it only does DVC's
    experiment bookkeeping (under `dvc exp run` it git-adds the folder, here a temporary name).
    """

    def __init__(self, directory: PathLike) -> None:
        from dvclive import Live

        self.live: Live | None = Live(dir=str(directory), save_dvc_exp=False, dvcyaml=None, report=None)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        assert self.live is not None, "log after close"
        self.live.step = step
        for name, value in metrics.items():
            self.live.log_metric(name, value)
        self.live.make_summary()

    def close(self) -> None:
        # Live keeps the git repository it opened (dulwich) and never closes it; freed only at
        # interpreter shutdown, its objects print "Exception ignored in __del__" noise. Free it now.
        self.live = None
        gc.collect()


def metrics_writer(directory: PathLike) -> MetricsWriter:
    """dvclive's writer when dvclive is installed, else JsonMetrics (the same files)."""
    try:
        import dvclive  # noqa: F401
    except ImportError:
        print(f"dvclive is not installed: {directory} is written by text_recognizer's own JSON writer", file=sys.stderr)
        return JsonMetrics(directory)
    return DvcliveMetrics(directory)


def epoch_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """The epoch's logged scalars ("train/loss", "val/acc", ...), sorted by name."""
    return {
        name: float(value)
        for name, value in sorted(trainer.callback_metrics.items())
        if "/" in name and not name.startswith("progress/") and value.numel() == 1
    }


class MetricsLog(pl.Callback):
    """One metrics row per epoch (at step global_step - 1) into `directory`, on global rank 0 only.

    `directory` is None on the other ranks. The rows so far are part of the callback's state, so a
    resumed run writes the earlier epochs' rows again before its own.
    """

    def __init__(self, directory: PathLike | None) -> None:
        self.directory = directory
        self.rows: list[Row] = []
        self._writer: MetricsWriter | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.directory is not None and trainer.is_global_zero:
            self._writer = metrics_writer(self.directory)
            for step, metrics in self.rows:  # a resumed run: the epochs before the checkpoint
                self._writer.log(step, metrics)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rows.append((trainer.global_step - 1, epoch_metrics(trainer)))
        if self._writer is not None:
            self._writer.log(*self.rows[-1])

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [[step, metrics] for step, metrics in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [(int(step), {k: float(v) for k, v in metrics.items()}) for step, metrics in state_dict["rows"]]


class RecordProgress(pl.Callback):
    """Copies the loop counters into the callback metrics at the end of fit.

    Under ddp_spawn the process that saves the checkpoint is not a rank: of the trainer's state
    it gets back only the weights and the callback metrics, not the epoch and step counts.
    """

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.callback_metrics["progress/epochs"] = torch.tensor(trainer.current_epoch)
        trainer.callback_metrics["progress/global_step"] = torch.tensor(trainer.global_step)


# --- resuming -------------------------------------------------------------------------------------


def file_digest(path: PathLike) -> str:
    """sha256 of a file's bytes (an EMNIST-sized HDF5 file reads in a second or two)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _loaded_code() -> Iterable[tuple[str, bytes]]:
    """(module, source) of every text_recognizer module this process has imported: the run's code.

    Only what the run imports, so an edit elsewhere (evaluation, say) keeps an interrupted run
    resumable. Every rank runs the same script up to here, so every rank finds the same modules.
    """
    for name, module in sorted(sys.modules.items()):
        source = getattr(module, "__file__", None)
        if (name == "text_recognizer" or name.startswith("text_recognizer.")) and source and source.endswith(".py"):
            yield name, Path(source).read_bytes()


def fingerprint(settings: dict[str, Any], data_path: PathLike) -> str:
    """Hex digest of everything that decides a run's numbers: `settings` (JSON-like: the params
    sections), the data file's bytes, the project's imported code and the torch/Lightning versions."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(f"\0data {file_digest(data_path)}\0torch {torch.__version__}\0pl {pl.__version__}".encode())
    for name, source in _loaded_code():
        digest.update(f"\0{name}\0".encode() + hashlib.sha256(source).digest())
    return digest.hexdigest()


def rng_states() -> dict[str, Any]:
    """The global RNG states (torch, CUDA, numpy, random) in types that `weights_only` loading takes."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, gauss],
        "python": [version, list(internal), gauss_next],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


class ResumeCheckpoint(pl.Callback):
    """A Lightning checkpoint of the last finished epoch in `directory`, named by the run's fingerprint.

    Written at the end of every epoch but the last (after it the run publishes its outputs, and
    the stage removes the checkpoint), atomically: saved under a temporary name on every rank
    (Trainer.save_checkpoint is collective; rank 0 writes) and renamed by rank 0.
    """

    README = "README.txt"  # keeps the folder, a DVC output, from being empty (which DVC warns about)
    README_TEXT = "The last finished epoch of an interrupted run, which a rerun of the same run resumes from.\n"

    def __init__(self, directory: PathLike, run_fingerprint: str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / f"{run_fingerprint[:20]}.ckpt"
        self._restored_rng: dict[str, Any] | None = None

    def resume_from(self, *, rank_zero: bool) -> Path | None:
        """This run's checkpoint if there is one, else None; rank 0 deletes every other checkpoint here.

        Call it before the Trainer starts the other ranks, so only one process ever deletes.
        """
        if rank_zero:
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / self.README).write_text(self.README_TEXT)
            for stale in self.directory.iterdir():
                if stale not in (self.path, self.directory / self.README) and stale.is_file():
                    stale.unlink()
        found = self.path if self.path.is_file() else None
        if rank_zero:
            print(f"resuming from {found}" if found else f"no checkpoint of this run in {self.directory}: from epoch 1")
        return found

    def clear(self) -> None:
        """Delete the checkpoint: the run is published and there is nothing left to resume."""
        self.path.unlink(missing_ok=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        # The whole state, not the weights only: resuming needs the optimizer, the schedule and the callbacks'
        # states (RNG, metrics rows). Said outright, Lightning does not log that it defaulted to it each epoch.
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored_rng = state_dict["rng"]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Set just before the first batch: nothing between the save and the next epoch draws from them.
        if self._restored_rng is not None:
            set_rng_states(self._restored_rng)
            self._restored_rng = None
