"""The two data paths that loader_speed, train_speed and time_to_accuracy compare, their data, and the
project's recipe as params.yaml sets it.

Baseline, the FSDL labs' way: a torch Dataset that turns one uint8 glyph into one float tensor per
__getitem__, a DataLoader at batch 128 (one worker per CPU and pinned memory on a GPU, none on a CPU),
then `.to(device)`. Project: DeviceLoader, the uint8 set on the device, batches gathered, cast and
augmented there. The data: glyphs from render_glyphs (seeded), lines composed from them by render_lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from machine import REPO, override, random_texts
from torch import nn
from torch.utils.data import DataLoader, Dataset

from text_recognizer.data.augmentation import Augmentation, augmentation
from text_recognizer.data.device_loader import DeviceLoader
from text_recognizer.data.emnist_lines import encode_texts, render_lines
from text_recognizer.data.synthetic import render_glyphs
from text_recognizer.lit_models.optim import AdamWSettings, configure_adamw
from text_recognizer.metadata import NUM_EMNIST_CLASSES
from text_recognizer.models.char_archs import arch_kwargs, char_network
from text_recognizer.models.line_archs import line_arch_kwargs, line_network
from text_recognizer.params import (
    CharTrainParams,
    EmnistLinesParams,
    LineModelParams,
    LineTrainParams,
    ModelParams,
    TrainParams,
    from_dict,
    load_params,
)

SEED = 0
Batch = tuple[torch.Tensor, ...]


class PerSampleDataset(Dataset):
    """The FSDL way: one uint8 image becomes one float tensor per __getitem__ (ToTensor's job), then collate."""

    def __init__(self, images: np.ndarray, *targets: np.ndarray) -> None:
        self.images = images
        self.targets = [t.astype(np.int64) for t in targets]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Batch:
        x = torch.from_numpy(self.images[i]).unsqueeze(0).float().div_(255.0)  # (1, H, W) in [0, 1]
        return (x, *(torch.as_tensor(t[i]) for t in self.targets))


def baseline_loader(arrays: tuple[np.ndarray, ...], batch: int, device: torch.device) -> DataLoader:
    """FSDL's BaseDataModule: a worker per CPU with pinned memory for a GPU; none on a CPU (they would
    take cores from the training itself)."""
    workers = len(os.sched_getaffinity(0)) if device.type == "cuda" else 0
    if workers:  # 2 batches in flight per worker through /dev/shm, which containers often cap at 64 MB
        with contextlib.suppress(OSError):
            fit = int(0.5 * shutil.disk_usage("/dev/shm").free // (2 * batch * arrays[0][0].size * 4))
            if fit < workers:
                print(f"   (/dev/shm holds batches for {fit} of the baseline's {workers} workers: using {fit})")
                workers = fit
    return DataLoader(
        PerSampleDataset(*arrays),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,  # generous: no worker start-up per epoch
        generator=torch.Generator().manual_seed(SEED),
    )


def on_device(loader: Iterable[Batch], device: torch.device) -> Iterator[Batch]:
    """One epoch of `loader`, every tensor moved with `.to(device)` (asynchronous from pinned memory)."""
    for batch in loader:
        yield tuple(t.to(device, non_blocking=True) for t in batch)


def project_loader(arrays: tuple[np.ndarray, ...], batch: int, aug: Augmentation | None, device) -> DeviceLoader:
    images, *targets = arrays
    return DeviceLoader(
        torch.from_numpy(images),
        tuple(torch.from_numpy(t.astype(np.int64)) for t in targets),
        batch_size=batch,
        shuffle=True,
        seed=SEED,
        drop_last=len(images) > batch,  # as the data modules: BatchNorm needs > 1 sample
        augment=aug,
        device=device,
    )


def forever(make_epoch: Callable[[], Iterable[Batch]]) -> Iterator[Batch]:
    while True:
        yield from make_epoch()


def make_glyphs(per_class: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(NUM_EMNIST_CLASSES), per_class))
    return render_glyphs(labels, rng), labels.astype(np.uint8)


def make_lines(glyphs: np.ndarray, glyph_labels: np.ndarray, count: int, lines: EmnistLinesParams):
    """(images, labels, lengths) of `count` random-text lines (1..max_length characters) built from `glyphs`."""
    rng = np.random.default_rng(SEED)
    labels, lengths = encode_texts(random_texts(rng, count, lines.max_length), lines.max_length)
    images, _ = render_lines(
        labels, lengths, glyphs, glyph_labels, min_overlap=lines.min_overlap, max_overlap=lines.max_overlap, rng=rng
    )
    return images, labels, lengths


def tile(arrays: tuple[np.ndarray, ...], n: int) -> tuple[np.ndarray, ...]:
    """The rows repeated end to end: a data set of exactly n samples."""
    idx = np.arange(n) % len(arrays[0])
    return tuple(a[idx] for a in arrays)


def mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def fmt_rate(values: list[float] | None) -> str:
    if not values:
        return f"{'-':>11}{'':11}"
    mean, std = mean_std(values)
    return f"{mean:>11,.0f} ± {std:<8,.0f}" if len(values) > 1 else f"{mean:>11,.0f}   (n=1)  "


def char_loss(run: CharTrainParams) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The cross-entropy of CharClassifier, with the run's label smoothing."""
    return lambda logits, labels: F.cross_entropy(logits, labels, label_smoothing=run.label_smoothing)


def warp(run: TrainParams) -> Augmentation:
    """The run's augmentation bounds, also when its `augment` is false (the loader benchmarks time the warp)."""
    aug = augmentation(dataclasses.replace(run, augment=True))
    assert aug is not None
    return aug


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable, batch: Batch) -> None:
    """Forward, backward, step; bf16 autocast on a GPU, as the project trains there."""
    x, *targets = batch
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
        loss = loss_fn(model(x), *targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@dataclasses.dataclass
class Recipe:
    """The project's models and training runs from params.yaml, the one place for their defaults."""

    model: ModelParams
    line_model: LineModelParams
    train_cnn: CharTrainParams
    train_line_cnn: LineTrainParams
    lines: EmnistLinesParams
    baseline_batch: int = 128  # the FSDL labs' default
    quick: bool = False

    @classmethod
    def load(cls, overrides: list[str], quick: bool) -> Recipe:
        """params.yaml with `-S section.key=value` overrides; quick: every path runs, in seconds."""
        params = override(load_params(REPO / "params.yaml"), overrides)
        sections = ("model", "line_model", "train_cnn", "train_line_cnn", "emnist_lines")
        kinds = (ModelParams, LineModelParams, CharTrainParams, LineTrainParams, EmnistLinesParams)
        recipe = cls(*(from_dict(kind, name, params.get(name)) for kind, name in zip(kinds, sections, strict=True)))
        if quick:  # tiny models and short lines too: the figures mean nothing, the code paths all run
            recipe.baseline_batch, recipe.quick = 32, True
            recipe.model = dataclasses.replace(recipe.model, width=8)
            recipe.line_model = dataclasses.replace(recipe.line_model, width=8, fc_dim=32)
            recipe.lines = dataclasses.replace(recipe.lines, max_length=4)
            recipe.train_cnn = dataclasses.replace(recipe.train_cnn, batch_size=min(recipe.train_cnn.batch_size, 32))
            recipe.train_line_cnn = dataclasses.replace(recipe.train_line_cnn, batch_size=8)
        return recipe

    def describe(self) -> dict[str, Any]:
        """Every setting, for the JSON: a figure is only comparable with the recipe it was measured on."""
        return dataclasses.asdict(self)

    def widths(self) -> list[int]:
        """model.width first, then two cheaper ones (--quick: model.width alone)."""
        return [self.model.width] if self.quick else list(dict.fromkeys([self.model.width, 32, 16]))

    def resnet(self, width: int, device: torch.device, compile: bool = False) -> nn.Module:
        section = {**dataclasses.asdict(self.model), "width": width}
        kwargs = {**arch_kwargs("resnet", section), "num_classes": NUM_EMNIST_CLASSES}
        return prepare(char_network(**kwargs), device, compile)

    def linecnn(self, device: torch.device, compile: bool = False) -> nn.Module:
        kwargs = line_arch_kwargs("ctc", dataclasses.asdict(self.line_model))  # the LineCNN, whatever line_model.arch
        return prepare(line_network(**kwargs), device, compile)

    def optimizer(self, model: nn.Module, run: TrainParams, total_steps: int | None = None) -> dict[str, Any]:
        """The project's AdamW; a constant lr unless total_steps is given (then run's own schedule)."""
        schedule = run.schedule if total_steps else "constant"
        settings = AdamWSettings(run.lr, run.weight_decay, schedule, run.warmup_fraction)
        return configure_adamw(model, settings, total_steps=total_steps or 1)


def prepare(network: nn.Module, device: torch.device, compile: bool) -> nn.Module:
    """What training.prepare_network does (TF32 on a GPU, channels_last everywhere, then torch.compile if asked),
    repeated here because training.py imports dvclive, which the GPU machine lacks."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    network = network.to(memory_format=torch.channels_last)
    network = network.to(device)
    return torch.compile(network) if compile else network  # type: ignore[return-value]
