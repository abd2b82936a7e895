"""Training runs, one readable function per kind of model (read top to bottom, nanoGPT-style).

Both kinds share the same skeleton, kept in the helpers at the end of the file: pick the
hardware, seed everything, fit with Lightning while dvclive writes the curves, then save the
final weights with everything needed to rebuild the model (text_recognizer.checkpoint).

The same params on a CPU give identical metrics run after run (seeded data order,
augmentation and weights; deterministic kernels). On a GPU the defaults trade that for
speed: bf16 autocast, channels_last, TF32 matmuls, optionally torch.compile.

Data-parallel runs come from params alone: `devices: N` with `strategy: ddp` (or `auto`, which
means ddp as soon as devices > 1) trains on N processes, gloo on the CPU, nccl on GPUs, same
code path. Lightning's `ddp` launcher re-runs the stage script for ranks 1..N-1, so everything
here runs once per process; the outputs are the library's business, not the stage's:
`log_dir` (dvclive's metrics.json and plots) and `checkpoint_path` are the *final* paths, and
only global rank 0 writes them, atomically, after every rank has finished (see fit_and_save).
Each process takes `batch_size` examples per step from its own shard of the data
(DeviceLoader), so the effective batch is devices x batch_size and an epoch has 1/devices of
the steps; the learning rate is not rescaled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytorch_lightning as pl
import torch
from dvclive import Live
from dvclive.lightning import DVCLiveLogger
from pytorch_lightning.loggers.logger import rank_zero_experiment
from torch import nn

from text_recognizer.checkpoint import Kind, save_checkpoint
from text_recognizer.data.device_loader import EmnistDataModule, EmnistLinesDataModule
from text_recognizer.io import atomic_path
from text_recognizer.lit_models.classifier import CharClassifier
from text_recognizer.lit_models.line_recognizer import LineRecognizer
from text_recognizer.lit_models.optim import AdamWSettings
from text_recognizer.models.line_cnn import LineCNN, output_length
from text_recognizer.models.resnet import ResNetClassifier
from text_recognizer.params import LineModelParams, ModelParams, ParamError, TrainParams

PathLike = str | os.PathLike[str]
CHAR_SECTION, LINE_SECTION = "train_cnn", "train_line_cnn"  # their params.yaml sections, named in errors


def adamw_settings(run: TrainParams) -> AdamWSettings:
    return AdamWSettings(
        lr=run.lr, weight_decay=run.weight_decay, schedule=run.schedule, warmup_fraction=run.warmup_fraction
    )


def train_char_model(
    data_path: PathLike, model: ModelParams, run: TrainParams, *, checkpoint_path: PathLike, log_dir: PathLike
) -> dict[str, float]:
    """Train the ResNet character classifier on emnist.h5; returns the final {"val/acc", "val/loss"}.

    checkpoint_path and log_dir are final outputs, written by global rank 0 only (fit_and_save).
    """
    hardware = resolve_hardware(run, section=CHAR_SECTION)
    datamodule = EmnistDataModule(data_path, batch_size=run.batch_size, seed=run.seed, augment=run.augment)
    mapping = datamodule.config()["mapping"]
    model_kwargs = {**dataclasses.asdict(model), "num_classes": len(mapping)}

    pl.seed_everything(run.seed, workers=True)  # before the weights are drawn
    network = prepare_network(ResNetClassifier(**model_kwargs), hardware, compile=run.compile)
    lit = CharClassifier(network, optimizer=adamw_settings(run), num_classes=len(mapping))
    return fit_and_save(
        lit,
        datamodule,
        run,
        hardware,
        kind="char",
        model_kwargs=model_kwargs,
        mapping=mapping,
        checkpoint_path=checkpoint_path,
        log_dir=log_dir,
    )


def train_line_model(
    data_path: PathLike, model: LineModelParams, run: TrainParams, *, checkpoint_path: PathLike, log_dir: PathLike
) -> dict[str, float]:
    """Train the LineCNN with CTC on emnist_lines.h5; returns the final {"val/cer", "val/line_acc", "val/loss"}.

    checkpoint_path and log_dir are final outputs, written by global rank 0 only (fit_and_save).
    """
    hardware = resolve_hardware(run, section=LINE_SECTION)
    # Each batch is cropped to its widest line and carries per-line CTC input lengths for this window
    # arithmetic; setup refuses lines that get fewer steps than CTC needs (EmnistLinesDataModule).
    datamodule = EmnistLinesDataModule(
        data_path,
        batch_size=run.batch_size,
        seed=run.seed,
        augment=run.augment,
        window_width=model.window_width,
        window_stride=model.window_stride,
    )
    config = datamodule.config()
    mapping = config["mapping"]
    model_kwargs = {**dataclasses.asdict(model), "num_classes": len(mapping)}
    # CTC needs at least one output step per character: fail now, not after an epoch of zero losses.
    (max_length,), image_width = config["output_dims"], config["input_dims"][2]
    steps = output_length(image_width, model.window_width, model.window_stride)
    if steps < max_length:
        raise ValueError(
            f"LineCNN emits {steps} steps for {image_width}-pixel lines but lines hold up to {max_length} "
            f"characters: lower line_model.window_stride ({model.window_stride})"
        )

    pl.seed_everything(run.seed, workers=True)  # before the weights are drawn
    network = prepare_network(LineCNN(**model_kwargs), hardware, compile=run.compile)
    lit = LineRecognizer(network, optimizer=adamw_settings(run))
    return fit_and_save(
        lit,
        datamodule,
        run,
        hardware,
        kind="line",
        model_kwargs=model_kwargs,
        mapping=mapping,
        checkpoint_path=checkpoint_path,
        log_dir=log_dir,
    )


# --- the shared part -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Hardware:
    accelerator: str  # "cpu", "gpu", "mps", ...
    precision: str  # "32-true", "bf16-mixed", ...
    devices: int = 1  # processes, one per device (CPU processes on the CPU)
    strategy: str = "auto"  # "auto" (one device), "ddp" or "ddp_spawn"

    @property
    def on_gpu(self) -> bool:
        return self.accelerator in ("gpu", "cuda")

    @property
    def deterministic(self) -> bool:
        # Only on the CPU: CUDA's CTC and scatter backward passes have no deterministic kernels
        # (deterministic=True would make them raise), and bit-exact GPU runs are not worth the speed.
        return self.accelerator == "cpu"


def resolve_hardware(run: TrainParams, *, section: str = CHAR_SECTION) -> Hardware:
    """Check the accelerator/devices/strategy combination and resolve the "auto"s; ParamError names the key.

    accelerator "auto" means the GPU (bf16 autocast) when there is one, else the CPU (float32).
    strategy "auto" means a single process for devices: 1 and "ddp" for devices > 1 (what
    Lightning would pick for a script; resolved here so that the checkpoint records it).
    `devices` counts processes: on the CPU any number (gloo), on GPUs at most the visible ones.
    """
    accelerator = run.accelerator
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ParamError(f"{section}.accelerator is {run.accelerator!r}, but torch sees no CUDA device")
        visible = torch.cuda.device_count()
        if run.devices > visible:
            shown = os.environ.get("CUDA_VISIBLE_DEVICES")
            where = f" (CUDA_VISIBLE_DEVICES={shown})" if shown is not None else ""
            raise ParamError(
                f"{section}.devices={run.devices}, but torch sees {visible} CUDA device(s){where}: "
                f"set {section}.devices to at most {visible}"
            )
    if accelerator == "mps" and (run.devices > 1 or run.strategy != "auto"):
        raise ParamError(
            f"{section}.devices={run.devices} with strategy {run.strategy!r}: mps is a single device; "
            f"use devices: 1 and strategy: auto there"
        )
    strategy = run.strategy
    if strategy == "auto" and run.devices > 1:
        strategy = "ddp"
    precision = run.precision
    if precision == "auto":
        precision = "bf16-mixed" if accelerator in ("gpu", "cuda") else "32-true"
    return Hardware(accelerator=accelerator, precision=precision, devices=run.devices, strategy=strategy)


def prepare_network(network: nn.Module, hardware: Hardware, *, compile: bool) -> nn.Module:
    """channels_last on a GPU (faster convolutions with tensor cores), then torch.compile if asked."""
    if hardware.on_gpu:
        torch.set_float32_matmul_precision("high")  # TF32 for whatever still runs in float32
        network = network.to(memory_format=torch.channels_last)
    if compile:
        network = torch.compile(network)  # type: ignore[assignment]
    return network


class _FilesOnlyLive(Live):
    """dvclive that only writes files into its folder: metrics.json and plots/metrics/**.tsv.

    Live's DVC integration opens the repository (and runs `dvc init` in a git repository
    without DVC) and, under `dvc exp run`, git-adds the files of its folder. Here the folder is a
    stage output written under a temporary name, so none of that is wanted; dvcyaml=None and
    save_dvc_exp=False keep dvc.yaml and the experiments untouched as well.
    """

    def _init_dvc(self) -> None:
        pass


class _FilesOnlyLogger(DVCLiveLogger):
    """DVCLiveLogger whose Live is a _FilesOnlyLive, created lazily on global rank 0 only."""

    @property
    @rank_zero_experiment
    def experiment(self) -> Live:
        if self._experiment is None:
            self._experiment = _FilesOnlyLive(**self._kwargs)
        return self._experiment


class _RecordProgress(pl.Callback):
    """Copies the loop counters into the callback metrics at the end of fit.

    Under ddp_spawn the process that saves the checkpoint is not a rank: of the trainer's state
    it gets back only the weights and the callback metrics, not the epoch and step counts.
    """

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.callback_metrics["progress/epochs"] = torch.tensor(trainer.current_epoch)
        trainer.callback_metrics["progress/global_step"] = torch.tensor(trainer.global_step)


# Where a launcher or scheduler put this process: Lightning's `ddp` launcher starts ranks > 0 with
# LOCAL_RANK (and NODE_RANK) set, torchrun sets RANK, SLURM and LSF their own. Rank 0 has none or 0.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


class DistributedRunError(RuntimeError):
    """A rank of a data-parallel run failed or disagrees with the others; nothing was written."""


def launched_as_rank_zero() -> bool:
    """Whether this process is global rank 0 of the run it is part of, known before the Trainer exists.

    Read from the environment, because outputs must be claimed before the Trainer starts (which
    is when Lightning's `ddp` launcher starts the other ranks). The Trainer's own rank is checked
    against this answer in fit_and_save, so a launcher this does not know fails loudly instead of
    writing from two processes.
    """
    return all(int(os.environ.get(name) or 0) == 0 for name in _RANK_VARIABLES)


def _child_ranks(trainer: pl.Trainer) -> list[subprocess.Popen[bytes]]:
    """The processes Lightning's `ddp` launcher started from this one (ranks 1..N-1 of this node)."""
    procs = getattr(trainer.strategy.launcher, "procs", None) or []  # ddp_spawn's are multiprocessing's own
    return [proc for proc in procs if isinstance(proc, subprocess.Popen)]


def _wait_for_child_ranks(trainer: pl.Trainer, timeout_s: float = 300.0) -> None:
    """Return once every child rank has exited with 0; raise if one did not, or is still running after timeout_s.

    After `fit` the children only tear down and exit, so this is quick. Polled rather than waited
    on in turn: a failure is reported at once, whichever rank it is.
    """
    children = _child_ranks(trainer)
    deadline = time.monotonic() + timeout_s
    while True:
        codes = [proc.poll() for proc in children]
        failed = [(rank, code) for rank, code in enumerate(codes, start=1) if code not in (None, 0)]
        if failed:
            rank, code = failed[0]
            raise DistributedRunError(f"rank {rank} exited with code {code}; no outputs were written")
        if all(code == 0 for code in codes):
            return
        if time.monotonic() > deadline:
            running = [rank for rank, code in enumerate(codes, start=1) if code is None]
            raise DistributedRunError(f"rank(s) {running} still running {timeout_s:.0f} s after training ended")
        time.sleep(0.05)


def _stop_child_ranks(trainer: pl.Trainer) -> None:
    """Kill the child ranks (after a failure here, they would wait in a collective for a peer that is gone)."""
    for proc in _child_ranks(trainer):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM if sys.platform == "win32" else signal.SIGKILL)
            proc.wait()


def fit_and_save(
    lit: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    run: TrainParams,
    hardware: Hardware,
    *,
    kind: Kind,
    model_kwargs: dict[str, Any],
    mapping: list[str],
    checkpoint_path: PathLike,
    log_dir: PathLike,
) -> dict[str, float]:
    """Fit for run.epochs; on global rank 0, publish log_dir and the checkpoint; return the final val metrics.

    Every rank runs this function and returns the same metrics (logged with sync_dist or
    torchmetrics, so they cover the whole validation set). Only global rank 0 writes anything:
    dvclive writes into a temporary folder beside `log_dir` (io.atomic_path) that is renamed onto
    `log_dir` at the end, after the checkpoint is saved (itself atomically) and after every child
    rank has exited with 0. Ranks > 0 get no logger and no folder at all. A failure on rank 0
    removes its temporary folder and kills the child ranks; a failure on another rank reaches
    rank 0 as an error in the next collective (or as the rank's exit code afterwards), and nothing
    is published. (Should Lightning's process observer have to SIGKILL rank 0 instead, its
    `.NAME.*.tmp` folder can stay beside `log_dir`: stray, never a half-written output.)
    """
    rank_zero = launched_as_rank_zero()
    trainer: pl.Trainer | None = None
    try:
        # Ranks > 0 must not even create a temporary name: only rank 0 claims the outputs.
        with atomic_path(log_dir) if rank_zero else contextlib.nullcontext(None) as tmp_dir:
            logger = (
                _FilesOnlyLogger(dir=str(tmp_dir), dvcyaml=None, save_dvc_exp=False, report=None)
                if tmp_dir is not None
                else False
            )
            trainer = pl.Trainer(
                max_epochs=run.epochs,
                accelerator=hardware.accelerator,
                devices=hardware.devices,
                strategy=hardware.strategy,
                precision=hardware.precision,  # type: ignore[arg-type]
                logger=logger,
                enable_checkpointing=False,  # the final weights are saved below, in our own format
                use_distributed_sampler=False,  # DeviceLoader shards by rank itself
                limit_train_batches=run.limit_train_batches,
                deterministic=hardware.deterministic,
                enable_progress_bar=sys.stderr.isatty(),  # no carriage-return spam in `dvc repro` logs
                num_sanity_val_steps=0,
                log_every_n_steps=1,  # only per-epoch values are logged; this just silences a warning
                default_root_dir=str(tmp_dir) if tmp_dir is not None else None,
                callbacks=[_RecordProgress()],
            )
            if trainer.is_global_zero != rank_zero:
                raise DistributedRunError(
                    f"Lightning makes this process global rank {trainer.global_rank}, but its environment "
                    f"({', '.join(f'{k}={os.environ[k]}' for k in _RANK_VARIABLES if k in os.environ) or 'no rank'}) "
                    "says otherwise: run the stage directly, or through torchrun"
                )
            was_deterministic = torch.are_deterministic_algorithms_enabled()
            try:
                trainer.fit(lit, datamodule=datamodule)
            finally:
                torch.use_deterministic_algorithms(was_deterministic)  # Trainer sets it process-wide
            metrics = {
                name: float(value)
                for name, value in sorted(trainer.callback_metrics.items())
                if name.startswith("val/")
            }
            progress = trainer.callback_metrics  # see _RecordProgress
            if rank_zero:
                _wait_for_child_ranks(trainer)  # publish only what every rank finished
                save_checkpoint(
                    checkpoint_path,
                    kind=kind,
                    model_kwargs=model_kwargs,
                    state_dict=lit.model.state_dict(),  # save_checkpoint strips torch.compile's prefix
                    mapping=mapping,
                    extra={
                        "val_metrics": metrics,
                        "train": dataclasses.asdict(run),
                        "accelerator": hardware.accelerator,
                        "precision": hardware.precision,
                        "devices": hardware.devices,
                        "strategy": hardware.strategy,
                        "world_size": trainer.world_size,
                        "num_nodes": trainer.num_nodes,
                        "epochs": int(progress["progress/epochs"]),
                        "global_step": int(progress["progress/global_step"]),  # optimiser steps, on every rank
                    },
                )
    except BaseException:
        if trainer is not None:
            _stop_child_ranks(trainer)  # after the temporary folder is gone
        raise
    return metrics
