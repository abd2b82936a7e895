"""Training runs, one readable function per kind of model (read top to bottom, nanoGPT-style).

Both kinds share the same skeleton, kept in the helpers at the end of the file: pick the
hardware, seed everything, fit with Lightning while dvclive writes the curves, then save the
final weights with everything needed to rebuild the model (text_recognizer.checkpoint).

The same params on a CPU give identical metrics run after run (seeded data order,
augmentation and weights; deterministic kernels). On a GPU the defaults trade that for
speed: bf16 autocast, channels_last, TF32 matmuls, optionally torch.compile.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

import pytorch_lightning as pl
import torch
from dvclive import Live
from dvclive.lightning import DVCLiveLogger
from pytorch_lightning.loggers.logger import rank_zero_experiment
from torch import nn

from text_recognizer.checkpoint import Kind, save_checkpoint
from text_recognizer.data.device_loader import EmnistDataModule, EmnistLinesDataModule
from text_recognizer.lit_models.classifier import CharClassifier
from text_recognizer.lit_models.line_recognizer import LineRecognizer
from text_recognizer.models.line_cnn import LineCNN, output_length
from text_recognizer.models.resnet import ResNetClassifier
from text_recognizer.params import LineModelParams, ModelParams, TrainParams

PathLike = str | os.PathLike[str]


def train_char_model(
    data_path: PathLike, model: ModelParams, run: TrainParams, *, checkpoint_path: PathLike, log_dir: PathLike
) -> dict[str, float]:
    """Train the ResNet character classifier on emnist.h5; returns the final {"val/acc", "val/loss"}."""
    hardware = resolve_hardware(run)
    datamodule = EmnistDataModule(data_path, batch_size=run.batch_size, seed=run.seed, augment=run.augment)
    mapping = datamodule.config()["mapping"]
    model_kwargs = {**dataclasses.asdict(model), "num_classes": len(mapping)}

    pl.seed_everything(run.seed, workers=True)  # before the weights are drawn
    network = prepare_network(ResNetClassifier(**model_kwargs), hardware, compile=run.compile)
    lit = CharClassifier(
        network, lr=run.lr, weight_decay=run.weight_decay, schedule=run.schedule, num_classes=len(mapping)
    )
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
    """Train the LineCNN with CTC on emnist_lines.h5; returns the final {"val/cer", "val/line_acc", "val/loss"}."""
    hardware = resolve_hardware(run)
    datamodule = EmnistLinesDataModule(data_path, batch_size=run.batch_size, seed=run.seed, augment=run.augment)
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
    lit = LineRecognizer(network, lr=run.lr, weight_decay=run.weight_decay, schedule=run.schedule)
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

    @property
    def on_gpu(self) -> bool:
        return self.accelerator in ("gpu", "cuda")

    @property
    def deterministic(self) -> bool:
        # Only on the CPU: CUDA's CTC and scatter backward passes have no deterministic kernels
        # (deterministic=True would make them raise), and bit-exact GPU runs are not worth the speed.
        return self.accelerator == "cpu"


def resolve_hardware(run: TrainParams) -> Hardware:
    """ "auto" means the GPU with bf16 autocast when there is one, else the CPU in float32."""
    accelerator = run.accelerator
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"accelerator {run.accelerator!r} asked for, but torch sees no CUDA device")
    precision = run.precision
    if precision == "auto":
        precision = "bf16-mixed" if accelerator in ("gpu", "cuda") else "32-true"
    return Hardware(accelerator=accelerator, precision=precision)


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
    """Fit for run.epochs, save the final weights (rank 0), return the final val metrics as floats."""
    logger = _FilesOnlyLogger(dir=str(log_dir), dvcyaml=None, save_dvc_exp=False, report=None)
    trainer = pl.Trainer(
        max_epochs=run.epochs,
        accelerator=hardware.accelerator,
        devices=run.devices,
        strategy=run.strategy,
        precision=hardware.precision,  # type: ignore[arg-type]
        logger=logger,
        enable_checkpointing=False,  # the final weights are saved below, in our own format
        use_distributed_sampler=False,  # DeviceLoader shards by rank itself
        limit_train_batches=run.limit_train_batches,
        deterministic=hardware.deterministic,
        enable_progress_bar=sys.stderr.isatty(),  # no carriage-return spam in `dvc repro` logs
        num_sanity_val_steps=0,
        log_every_n_steps=1,  # only per-epoch values are logged; this just silences a warning
        default_root_dir=str(log_dir),
    )
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        trainer.fit(lit, datamodule=datamodule)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)  # Trainer sets it process-wide
    metrics = {
        name: float(value) for name, value in sorted(trainer.callback_metrics.items()) if name.startswith("val/")
    }
    if trainer.is_global_zero:
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
                "epochs": trainer.current_epoch,
                "global_step": trainer.global_step,
            },
        )
    return metrics
