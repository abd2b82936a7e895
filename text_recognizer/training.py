"""Training runs, read top to bottom: params -> data -> network -> Lightning module -> Trainer ->
fit -> checkpoint + metrics. One path for both kinds of model (`train`), branching only where they differ.

The same params on a CPU give identical metrics run after run (seeded data order, augmentation
and weights; deterministic kernels), also across an interruption (`resume_dir`). On a GPU the
defaults trade that for speed: bf16 autocast, channels_last, TF32 matmuls, optionally torch.compile.

Data-parallel runs come from params alone: `devices: N` with `strategy: ddp` (or `auto`, which
means ddp as soon as devices > 1) trains on N processes, gloo on the CPU, nccl on GPUs. Lightning
re-runs the stage script for ranks 1..N-1, so all of this runs once per process; who writes the
outputs, and when, is text_recognizer.processes' business. Each process takes `batch_size`
examples per step from its own shard (DeviceLoader), so the effective batch is devices x
batch_size and an epoch has 1/devices of the steps; the learning rate is not rescaled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator

import h5py
import pytorch_lightning as pl
import torch
from torch import nn

from text_recognizer.data.augmentation import augmentation
from text_recognizer.data.device_loader import EmnistDataModule, EmnistLinesDataModule, EmnistLinesWindowsDataModule
from text_recognizer.data.emnist_lines import drawn_statistics, ink_measures
from text_recognizer.lit_models.callbacks import (
    MetricsLog,
    RecordProgress,
    ResumeCheckpoint,
    epoch_metrics,
    fingerprint,
)
from text_recognizer.lit_models.classifier import CharClassifier
from text_recognizer.lit_models.line_recognizer import LineRecognizer, LineSimpleRecognizer
from text_recognizer.lit_models.optim import AdamWSettings
from text_recognizer.lit_models.progress import progress_callbacks
from text_recognizer.models.char_archs import arch_kwargs
from text_recognizer.models.checkpoint import MODEL_BUILDERS, Kind, save_checkpoint
from text_recognizer.models.line_archs import line_arch_kwargs
from text_recognizer.params import CharTrainParams, LineModelParams, ModelParams, ParamError, TrainParams
from text_recognizer.processes import RankZeroOutputs

PathLike = str | os.PathLike[str]
CHAR_SECTION, LINE_SECTION = "train_cnn", "train_line_cnn"  # their params.yaml sections, named in errors
SECTIONS: dict[str, str] = {"char": CHAR_SECTION, "line": LINE_SECTION}
GLYPHS_MEASURED = 4096  # train glyphs measured for the checkpoint's record of their box and stroke


def train(
    data_path: PathLike,
    model: ModelParams | LineModelParams,
    run: TrainParams,
    *,
    checkpoint_path: PathLike,
    log_dir: PathLike,
    resume_dir: PathLike | None = None,
) -> dict[str, float]:
    """Fit the model that `model` describes for run.epochs (ModelParams: the character classifier of model.arch on
    emnist.h5; LineModelParams: the line network of line_model.arch on emnist_lines.h5, the LineCNN with CTC or
    the per-window LineCNNSimple with cross-entropy); returns the final val metrics, the same on every rank:
    {"val/acc", "val/loss"}, {"val/cer", "val/line_acc", "val/loss"} or (simple) those and "val/char_acc".

    checkpoint_path and log_dir (dvclive's metrics.json and plots) are final outputs, written by
    global rank 0 only, after every rank has finished. With `resume_dir`, each epoch but the last
    leaves a Lightning checkpoint there, and a rerun of the same run resumes from it.
    """
    kind: Kind = "line" if isinstance(model, LineModelParams) else "char"
    hardware = resolve_hardware(run, section=SECTIONS[kind])
    datamodule = build_datamodule(data_path, model, run)  # on the device; line batches cropped to their ink
    mapping = datamodule.config()["mapping"]
    model_kwargs = network_kwargs(model, num_classes=len(mapping))
    drawn = data_statistics(data_path, kind)  # what a reader must bring its input to: in the checkpoint

    pl.seed_everything(run.seed, workers=True)  # before the weights are drawn
    network = prepare_network(MODEL_BUILDERS[kind](**model_kwargs), hardware, compile=run.compile)
    lit = build_lightning_module(kind, network, run, num_classes=len(mapping), arch=str(model_kwargs["arch"]))

    record = {"train": dataclasses.asdict(run), **dataclasses.asdict(hardware)}  # in the checkpoint, and resume's key
    with RankZeroOutputs(log_dir) as outputs:  # outputs.log_dir: a temporary folder on rank 0, else None
        run_id = {"kind": kind, "model": model_kwargs, **record}
        resume = ResumeCheckpoint(resume_dir, fingerprint(run_id, data_path)) if resume_dir is not None else None
        trainer = build_trainer(run, hardware, outputs, resume)
        ckpt_path = resume.resume_from(rank_zero=outputs.rank_zero) if resume is not None else None
        with _restoring_determinism():  # the Trainer sets it process-wide
            trainer.fit(lit, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        metrics = {name: value for name, value in epoch_metrics(trainer).items() if name.startswith("val/")}
        if outputs.all_ranks_done():  # rank 0, once every child rank has exited cleanly
            save_checkpoint(
                checkpoint_path,
                kind=kind,
                model_kwargs=model_kwargs,
                state_dict=lit.model.state_dict(),  # save_checkpoint strips torch.compile's prefix
                mapping=mapping,
                extra=checkpoint_extra(kind, metrics, drawn, record, trainer),
            )
    if resume is not None and outputs.rank_zero:
        resume.clear()  # published: nothing left to resume
    return metrics


# --- the pieces --------------------------------------------------------------------------------------


def network_kwargs(model: ModelParams | LineModelParams, *, num_classes: int) -> dict[str, object]:
    """What builds the network and what its checkpoint records: the arch and the keys that arch reads (a section
    holds every arch's sizes, the others mean nothing to it)."""
    section = dataclasses.asdict(model)
    if isinstance(model, ModelParams):
        return {**arch_kwargs(model.arch, section), "num_classes": num_classes}
    return {**line_arch_kwargs(model.arch, section), "num_classes": num_classes}


def build_datamodule(
    data_path: PathLike, model: ModelParams | LineModelParams, run: TrainParams
) -> EmnistDataModule | EmnistLinesDataModule:
    """The data, on the device. Line batches are cropped to their widest line and carry per-line CTC
    input lengths; setup refuses lines that get fewer steps than CTC needs. A simple line model's batches are cut
    to their longest text, one 28-px window per character; setup refuses lines drawn off that grid."""
    if isinstance(model, LineModelParams) and model.arch == "simple":
        return EmnistLinesWindowsDataModule(
            data_path, batch_size=run.batch_size, seed=run.seed, augment=augmentation(run)
        )
    if isinstance(model, LineModelParams):
        return EmnistLinesDataModule(
            data_path,
            batch_size=run.batch_size,
            seed=run.seed,
            augment=augmentation(run),
            window_width=model.window_width,
            window_stride=model.window_stride,
        )
    return EmnistDataModule(data_path, batch_size=run.batch_size, seed=run.seed, augment=augmentation(run))


def build_lightning_module(
    kind: Kind, network: nn.Module, run: TrainParams, *, num_classes: int, arch: str
) -> pl.LightningModule:
    """The Lightning module that holds the loss, the optimiser and the metrics of a kind of model (and of a line
    model's arch: CTC, or cross-entropy per window for simple)."""
    if kind == "char":
        if not isinstance(run, CharTrainParams):
            raise TypeError(f"a char run needs train_cnn's CharTrainParams, got {type(run).__name__}")
        smoothing = run.label_smoothing
        return CharClassifier(
            network, optimizer=adamw_settings(run), num_classes=num_classes, label_smoothing=smoothing
        )
    if arch == "simple":
        return LineSimpleRecognizer(network, optimizer=adamw_settings(run))
    return LineRecognizer(network, optimizer=adamw_settings(run))


def build_trainer(
    run: TrainParams, hardware: Hardware, outputs: RankZeroOutputs, resume: ResumeCheckpoint | None
) -> pl.Trainer:
    """A Trainer that writes no logs or checkpoints of its own (MetricsLog and save_checkpoint do), watched
    by `outputs` so that a failed rank stops the others."""
    trainer = pl.Trainer(
        max_epochs=run.epochs,
        accelerator=hardware.accelerator,
        devices=hardware.devices,
        strategy=hardware.strategy,
        precision=hardware.precision,  # type: ignore[arg-type]
        logger=False,  # MetricsLog writes the metrics: one row per epoch, kept across a resume
        enable_checkpointing=False,  # the final weights are saved by train(), in our own format
        use_distributed_sampler=False,  # DeviceLoader shards by rank itself
        limit_train_batches=run.limit_train_batches,
        overfit_batches=run.overfit_batches,  # the same first batches every epoch: the data modules stop shuffling
        deterministic=hardware.deterministic,
        enable_progress_bar=sys.stderr.isatty(),  # off a terminal: one EpochLog line per epoch instead
        num_sanity_val_steps=0,
        callbacks=[MetricsLog(outputs.log_dir), RecordProgress(), *progress_callbacks(), *filter(None, [resume])],
    )
    outputs.watch(trainer)
    return trainer


@contextlib.contextmanager
def _restoring_determinism() -> Iterator[None]:
    """Put torch's deterministic-algorithms switch back after fit: the Trainer sets it process-wide."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def checkpoint_extra(
    kind: Kind, metrics: dict[str, float], drawn: dict[str, float], record: dict[str, object], trainer: pl.Trainer
) -> dict[str, object]:
    """What a checkpoint holds besides the network: its val metrics, what the training data looked like (what a
    reader must bring its input to), the run's params and hardware, and how far and on how many processes it ran."""
    extra = {"val_metrics": metrics, "lines" if kind == "line" else "glyphs": drawn, **record}
    extra.update(world_size=trainer.world_size, num_nodes=trainer.num_nodes, **_progress(trainer))
    return extra


def _progress(trainer: pl.Trainer) -> dict[str, int]:
    """Epochs and optimiser steps done (RecordProgress puts them in callback_metrics, the same on every rank)."""
    progress = trainer.callback_metrics
    return {"epochs": int(progress["progress/epochs"]), "global_step": int(progress["progress/global_step"])}


def data_statistics(data_path: PathLike, kind: Kind) -> dict[str, float]:
    """The training data's glyph box, stroke width and (lines) pitch and overlaps, measured from the file."""
    if kind == "line":
        return drawn_statistics(data_path, "train")
    with h5py.File(data_path, "r") as f:
        measured = ink_measures(f["train"]["images"][:GLYPHS_MEASURED])
    return {"ink_box": measured["ink_box"], "stroke_width": measured["stroke_width"]}


def adamw_settings(run: TrainParams) -> AdamWSettings:
    return AdamWSettings(
        lr=run.lr, weight_decay=run.weight_decay, schedule=run.schedule, warmup_fraction=run.warmup_fraction
    )


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
    """channels_last (on a GPU for tensor cores; on the CPU oneDNN's convolutions and batch norms run faster that
    way: a training step 1.45x for the char ResNet, 1.22x for the LineCNN, benchmarks/RESULTS.md), then
    torch.compile if asked."""
    if hardware.on_gpu:
        torch.set_float32_matmul_precision("high")  # TF32 for whatever still runs in float32
    network = network.to(memory_format=torch.channels_last)
    if compile:
        network = torch.compile(network)  # type: ignore[assignment]
    return network
