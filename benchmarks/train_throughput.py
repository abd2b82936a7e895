"""Does the on-device data path feed training faster than the FSDL labs' per-sample DataLoader?

    .venv/bin/python benchmarks/train_throughput.py [--device auto] [--parts a,b,c] [--width 64,32,16]
        [--samples N] [--train-samples N] [--repeats N] [--threads N] [--quick] [--json results.json]

One run, one data set (glyphs drawn by text_recognizer.data.synthetic.render_glyphs, seeded; lines
composed from them by render_lines), three measurements:

(a) loader only: samples/s delivered as float batches on the training device. Baseline: a torch
    Dataset that turns one uint8 glyph into one float tensor per __getitem__, a DataLoader at batch
    128 (the FSDL default: one worker per CPU and pinned memory on a GPU, none on a CPU), then
    `.to(device)`. Project: DeviceLoader with augmentation on, at train_cnn.batch_size (lines:
    train_line_cnn.batch_size). Lines are measured at 1/max_length of the glyph count, i.e. the same
    number of pixels.
(b) training samples/s (forward, backward, AdamW step) of ResNetClassifier (params `model`, at each
    --width) and LineCNN (params `line_model`) fed by each loader, plus the model alone on one
    batch that is already on the device (the ceiling). bf16 autocast and channels_last on a GPU, as
    the project trains; float32 on a CPU.
(c) time to accuracy on held-out glyphs: the FSDL lab CNN (Adam 1e-3, batch 128, per-sample
    DataLoader) trains for a fixed number of epochs; its best held-out accuracy becomes the target.
    Then the project's recipe (ResNetClassifier, AdamW + OneCycle from train_cnn, DeviceLoader with
    augmentation) trains at each --width until it reaches the target, its schedule ends, or
    --budget-factor x the baseline's time has passed. Evaluation runs after every epoch, with the
    clock paused.

(b) and (c) use plain training loops, not Lightning, so the numbers measure the data path and the
model and not the trainer's per-step overhead. Every timed part runs after a warm-up, and on a GPU
the clock is read after torch.cuda.synchronize(). Figures and run times: benchmarks/RESULTS.md.

On a CPU that other jobs share, pass --threads 1: torch's intra-op threads then wait on cores they
do not get, and small ops (DeviceLoader's gather, cast and warp) slow down by 100x or more.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from machine import cpu_name, random_texts
from torch import nn
from torch.utils.data import DataLoader, Dataset

from text_recognizer.data.device_loader import CHAR_AUGMENTATION, LINE_AUGMENTATION, DeviceLoader
from text_recognizer.data.emnist_lines import encode_texts, render_lines
from text_recognizer.data.synthetic import render_glyphs
from text_recognizer.lit_models.classifier import LABEL_SMOOTHING
from text_recognizer.lit_models.ctc import ctc_loss
from text_recognizer.lit_models.optim import configure_adamw
from text_recognizer.metadata import NUM_EMNIST_CLASSES
from text_recognizer.models.line_cnn import LineCNN
from text_recognizer.models.resnet import ResNetClassifier
from text_recognizer.params import (
    EmnistLinesParams,
    LineModelParams,
    ModelParams,
    TrainParams,
    from_dict,
    load_params,
)
from text_recognizer.training import Hardware, adamw_settings, prepare_network

REPO = Path(__file__).resolve().parent.parent
BASELINE_BATCH = 128  # the FSDL labs' default batch size

# Defaults per device. GPU: (a) and (b) over 200k glyphs (lines: the same number of pixels), (c) on
# 200/30 glyphs per class; estimated at 2-3 minutes on one H100, inside a 5-minute slot. CPU: sized
# for about 8 minutes on 2 cores, so (b) is a single timed chunk per row (n=1, no std).
DEFAULTS: dict[str, dict[str, Any]] = {
    "cuda": dict(
        samples=200_000, train_samples=200_000, repeats=5, b_repeats=5, warmup=10,
        per_class=200, held_out=30, epochs=20, budget_factor=3.0,
    ),
    "cpu": dict(
        samples=20_000, train_samples=512, repeats=3, b_repeats=1, warmup=1,
        per_class=100, held_out=20, epochs=3, budget_factor=3.0,
    ),
    "quick": dict(
        samples=4_096, train_samples=256, repeats=2, b_repeats=1, warmup=0,
        per_class=16, held_out=8, epochs=1, budget_factor=1.0,
    ),
}  # fmt: skip


# --- the baseline: per-sample Dataset + DataLoader, and the FSDL lab CNN -----------------------------


class PerSampleDataset(Dataset):
    """The FSDL way: one uint8 image becomes one float tensor per __getitem__ (ToTensor's job), then collate."""

    def __init__(self, images: np.ndarray, *targets: np.ndarray) -> None:
        self.images = images
        self.targets = [t.astype(np.int64) for t in targets]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        x = torch.from_numpy(self.images[i]).unsqueeze(0).float().div_(255.0)  # (1, H, W) in [0, 1]
        return (x, *(torch.as_tensor(t[i]) for t in self.targets))


def baseline_loader(s: Setup, arrays: tuple[np.ndarray, ...]) -> DataLoader:
    workers = s.workers
    if workers:
        # Workers hand batches over through /dev/shm, 2 in flight each; containers often give it only
        # 64 MB, and 16 workers x 2 x 128 float lines (12.8 MB a batch) would die with a bus error.
        batch_bytes = s.baseline_batch * arrays[0][0].size * 4
        try:
            fit = int(0.5 * shutil.disk_usage("/dev/shm").free // (2 * batch_bytes))
        except OSError:
            fit = workers
        if fit < workers:
            print(f"   (/dev/shm has room for {fit} of the baseline's {workers} workers at this batch: using {fit})")
            workers = fit
    return DataLoader(
        PerSampleDataset(*arrays),
        batch_size=s.baseline_batch,
        shuffle=True,
        num_workers=workers,
        pin_memory=s.device.type == "cuda",
        persistent_workers=workers > 0,  # generous: no worker start-up per epoch
        generator=torch.Generator().manual_seed(s.seed),
    )


def on_device(loader: Iterable[tuple[torch.Tensor, ...]], device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
    """One epoch of `loader`, every tensor moved with `.to(device)` (asynchronous from pinned memory)."""
    for batch in loader:
        yield tuple(t.to(device, non_blocking=True) for t in batch)


class LabCNN(nn.Module):
    """The FSDL lab CNN (PyTorch's MNIST example): conv 32, conv 64, max pool, dropout, fc 128, dropout, fc.

    (B, 1, 28, 28) float -> (B, 62) logits. Unpadded 3x3 convolutions: 28 -> 26 -> 24 -> pooled 12.
    """

    def __init__(self, num_classes: int = NUM_EMNIST_CLASSES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.dropout1 = nn.Dropout(0.25)
        self.fc1 = nn.Linear(64 * 12 * 12, 128)
        self.dropout2 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))  # (B, 32, 26, 26)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 64, 12, 12)
        x = self.dropout1(x).flatten(1)  # (B, 9216)
        x = self.dropout2(F.relu(self.fc1(x)))  # (B, 128)
        return self.fc2(x)  # (B, 62)


# --- shared helpers ------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forever(make_epoch: Callable[[], Iterable[tuple[torch.Tensor, ...]]]) -> Iterator[tuple[torch.Tensor, ...]]:
    """Batches from epoch after epoch."""
    while True:
        yield from make_epoch()


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt_rate(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:>11,.0f} ± {std:<8,.0f}" if len(values) > 1 else f"{mean:>11,.0f}   (n=1)  "


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable[..., torch.Tensor], batch, amp: bool
) -> None:
    x, *targets = batch
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        loss = loss_fn(model(x), *targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def char_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, label_smoothing=LABEL_SMOOTHING)  # as CharClassifier


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, amp: bool, batch: int = 1024) -> float:
    """Top-1 accuracy on (N, 28, 28) uint8 images already on the device (no augmentation)."""
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        x = images[i : i + batch].unsqueeze(1).float().div_(255.0)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            correct += int((model(x).argmax(1) == labels[i : i + batch]).sum())
    model.train()
    return correct / len(images)


class Clock:
    """Wall time that can be paused (for evaluation); reads are preceded by a device sync."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.total, self.start = device, 0.0, None

    def go(self) -> None:
        sync(self.device)
        self.start = time.perf_counter()

    def pause(self) -> float:
        sync(self.device)
        self.total += time.perf_counter() - self.start
        self.start = None
        return self.total

    def peek(self) -> float:  # no sync: cheap enough to call every step, accurate to the queued work
        return self.total + (time.perf_counter() - self.start if self.start is not None else 0.0)


# --- the setting -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Setup:
    device: torch.device
    amp: bool
    hardware: Hardware
    workers: int
    model: ModelParams
    line_model: LineModelParams
    train_cnn: TrainParams
    train_line_cnn: TrainParams
    lines: EmnistLinesParams
    widths: list[int]
    seed: int
    baseline_batch: int = BASELINE_BATCH

    def resnet(self, width: int) -> nn.Module:
        kwargs = {**dataclasses.asdict(self.model), "width": width, "num_classes": NUM_EMNIST_CLASSES}
        return prepare_network(ResNetClassifier(**kwargs), self.hardware, compile=False).to(self.device)

    def linecnn(self) -> nn.Module:
        net = LineCNN(**dataclasses.asdict(self.line_model))
        return prepare_network(net, self.hardware, compile=False).to(self.device)

    def optimizer(self, model: nn.Module, run: TrainParams) -> torch.optim.Optimizer:
        # The project's AdamW and parameter groups at a constant lr: (b) and the warm-ups time steps, not a schedule.
        settings = dataclasses.replace(adamw_settings(run), schedule="constant")
        return configure_adamw(model, settings, total_steps=1)["optimizer"]


def make_glyphs(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(NUM_EMNIST_CLASSES), per_class))
    return render_glyphs(labels, rng), labels.astype(np.uint8)


def make_lines(glyphs: np.ndarray, glyph_labels: np.ndarray, count: int, lines: EmnistLinesParams, seed: int):
    """`count` lines of random text (lengths 1..max_length, about one space in eight) built from `glyphs`."""
    rng = np.random.default_rng(seed)
    labels, lengths = encode_texts(random_texts(rng, count, lines.max_length), lines.max_length)
    images, _ = render_lines(
        labels,
        lengths,
        glyphs,
        glyph_labels,
        min_overlap=lines.min_overlap,
        max_overlap=lines.max_overlap,
        rng=rng,
    )
    return images, labels, lengths


def tile(arrays: tuple[np.ndarray, ...], n: int) -> tuple[np.ndarray, ...]:
    """The first n rows of the arrays repeated end to end (a data set of exactly n samples)."""
    idx = np.arange(n) % len(arrays[0])
    return tuple(a[idx] for a in arrays)


def project_loader(s: Setup, arrays: tuple[np.ndarray, ...], batch_size: int, aug) -> DeviceLoader:
    images, *targets = arrays
    return DeviceLoader(
        torch.from_numpy(images),
        tuple(torch.from_numpy(t.astype(np.int64)) for t in targets),
        batch_size=batch_size,
        shuffle=True,
        seed=s.seed,
        drop_last=len(images) > batch_size,  # as the data modules: BatchNorm needs > 1 sample
        augment=aug,
        device=s.device,
    )


def row_failed(name: str, error: Exception) -> dict[str, str]:
    traceback.print_exc()
    print(f"{name}: FAILED ({type(error).__name__}: {error})")
    return {"error": f"{type(error).__name__}: {error}"}


# --- (a) loaders alone -------------------------------------------------------------------------------


def loader_rates(s: Setup, make_epoch: Callable[[], Iterable], repeats: int) -> list[float]:
    """samples/s over whole epochs delivered on the device, after a few warm-up batches."""
    for _ in itertools.islice(make_epoch(), 3):
        pass
    rates = []
    for _ in range(repeats):
        sync(s.device)
        start = time.perf_counter()
        seen = sum(len(batch[0]) for batch in make_epoch())  # < n where drop_last left out a partial batch
        sync(s.device)
        rates.append(seen / (time.perf_counter() - start))
    return rates


def part_a(s: Setup, chars: tuple[np.ndarray, ...], lines: tuple[np.ndarray, ...], repeats: int) -> dict[str, Any]:
    print(f"\n## (a) loader only: float batches on the device, samples/s (mean ± std over {repeats} epochs)")
    print(
        f"{'data':<7}{'samples':>9}  {f'baseline: per-sample b{s.baseline_batch}':>25}  "
        f"{'project: DeviceLoader+aug':>25}  ratio  {'(DeviceLoader, no aug)':>25}"
    )
    out = {}
    for name, arrays, batch, aug in (
        ("glyphs", chars, s.train_cnn.batch_size, CHAR_AUGMENTATION),
        ("lines", lines, s.train_line_cnn.batch_size, LINE_AUGMENTATION),
    ):
        try:
            base = baseline_loader(s, arrays)
            rates = {"baseline": loader_rates(s, lambda base=base: on_device(base, s.device), repeats)}
            del base
            for key, a in (("project", aug), ("project_no_aug", None)):
                proj = project_loader(s, arrays, batch, a)  # the one-time copy to the device is not timed here
                rates[key] = loader_rates(s, lambda proj=proj: proj, repeats)
                del proj
        except Exception as error:  # one failing row does not cost the others
            out[name] = row_failed(name, error)
            continue
        ratio = mean_std(rates["project"])[0] / mean_std(rates["baseline"])[0]
        n = len(arrays[0])
        print(
            f"{name:<7}{n:>9,}  {fmt_rate(rates['baseline']):>25}  {fmt_rate(rates['project']):>25}  {ratio:5.2f}x"
            f"  {fmt_rate(rates['project_no_aug']):>25}"
        )
        out[name] = {"samples": n, "batch_project": batch, **rates, "ratio": ratio}
    return out


# --- (b) training throughput -------------------------------------------------------------------------


def training_rates(s: Setup, model_fn, run: TrainParams, loss_fn, batches: Iterator, n: int, repeats: int, warmup: int):
    """samples/s of training steps on `batches`: `warmup` steps, then n samples in `repeats` timed chunks."""
    torch.manual_seed(s.seed)
    model = model_fn()
    optimizer = s.optimizer(model, run)
    for _ in range(warmup):
        train_step(model, optimizer, loss_fn, next(batches), s.amp)
    rates = []
    for _ in range(repeats):
        sync(s.device)
        start = time.perf_counter()
        seen = 0
        while seen < n / repeats:  # whole batches: a chunk may run past n / repeats
            batch = next(batches)
            train_step(model, optimizer, loss_fn, batch, s.amp)
            seen += len(batch[0])
        sync(s.device)
        rates.append(seen / (time.perf_counter() - start))
    return rates


def part_b(s: Setup, chars, lines, n: int, repeats: int, warmup: int) -> dict[str, Any]:
    precision = "bf16 autocast, channels_last" if s.amp else "float32"
    print(f"\n## (b) training samples/s: plain loop (forward, backward, AdamW step), no Lightning; {precision}")
    print(f"   {warmup} warm-up step(s), then mean ± std over {repeats} timed chunk(s) of ~{n:,} samples in all")
    print(
        f"{'model':<22}{'samples':>8}  {f'baseline loader b{s.baseline_batch}':>22}  {'project loader':>22}  "
        f"{'model alone':>22}  proj/base  proj/alone"
    )
    configs = [
        (f"ResNet width {w}", lambda w=w: s.resnet(w), s.train_cnn, char_loss, chars, CHAR_AUGMENTATION, n)
        for w in s.widths
    ]
    line_n = max(s.train_line_cnn.batch_size, n // s.lines.max_length)  # the same pixels, at least one batch
    line_name = f"LineCNN {s.lines.max_length} chars"
    configs.append((line_name, s.linecnn, s.train_line_cnn, ctc_loss, lines, LINE_AUGMENTATION, line_n))
    out = {}
    for name, model_fn, run, loss_fn, arrays, aug, count in configs:
        try:
            base = baseline_loader(s, arrays)
            base_batches = forever(lambda base=base: on_device(base, s.device))
            base_rates = training_rates(s, model_fn, run, loss_fn, base_batches, count, repeats, warmup)
            del base, base_batches
            proj = project_loader(s, arrays, run.batch_size, aug)
            proj_batches = forever(lambda proj=proj: proj)
            proj_rates = training_rates(s, model_fn, run, loss_fn, proj_batches, count, repeats, warmup)
            # The ceiling: the same model on one project batch that is already there (no data path at all).
            # Its shapes were just warmed up by the project row; on a CPU a warm-up step costs seconds.
            alone = itertools.repeat(next(iter(proj)))
            del proj, proj_batches
            alone_warmup = warmup if s.device.type == "cuda" else 0
            alone_rates = training_rates(s, model_fn, run, loss_fn, alone, count, repeats, alone_warmup)
        except Exception as error:  # one failing row does not cost the others
            out[name] = row_failed(name, error)
            continue
        b, p, a = (mean_std(r)[0] for r in (base_rates, proj_rates, alone_rates))
        print(
            f"{name:<22}{count:>8,}  {fmt_rate(base_rates):>22}  {fmt_rate(proj_rates):>22}  "
            f"{fmt_rate(alone_rates):>22}  {p / b:8.2f}x  {p / a:9.2f}"
        )
        out[name] = {"samples": count, "batch_project": run.batch_size, "baseline": base_rates, "project": proj_rates}
        out[name].update({"model_alone": alone_rates, "ratio": p / b})
    return out


# --- (c) time to accuracy ------------------------------------------------------------------------


def warm_up_model(s: Setup, model_fn, optimizer_fn, loss_fn, batch, val) -> None:
    """Steps and one evaluation on a throwaway model, so cuDNN/oneDNN set-up stays off the clock."""
    model = model_fn()
    optimizer = optimizer_fn(model)
    for _ in range(2 if s.device.type == "cuda" else 1):
        train_step(model, optimizer, loss_fn, batch, s.amp)
    accuracy(model, *val, s.amp)
    sync(s.device)


def fit_baseline(s: Setup, train: tuple[np.ndarray, ...], val, epochs: int) -> list[tuple[float, float]]:
    """FSDL lab CNN, Adam 1e-3, batch 128, per-sample DataLoader: [(train seconds, held-out acc)] per epoch."""
    loader = baseline_loader(s, train)
    warm_batch = tuple(t.to(s.device) for t in next(iter(loader)))  # also starts the workers, off the clock

    def make_model() -> nn.Module:
        return LabCNN().to(s.device)

    def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=1e-3)

    warm_up_model(s, make_model, make_optimizer, F.cross_entropy, warm_batch, val)

    torch.manual_seed(s.seed)
    model = make_model()
    optimizer = make_optimizer(model)
    clock, curve = Clock(s.device), []
    for epoch in range(epochs):
        clock.go()
        for batch in on_device(loader, s.device):
            train_step(model, optimizer, F.cross_entropy, batch, s.amp)
        seconds = clock.pause()
        curve.append((seconds, accuracy(model, *val, s.amp)))
        print(f"   baseline  epoch {epoch + 1:>3}: {seconds:8.1f} s  held-out acc {curve[-1][1]:.4f}")
    return curve


def fit_project(s: Setup, width: int, run: TrainParams, train, val, target: float, budget_s: float):
    """The project's recipe until acc >= target, the schedule ends or budget_s passes: (curve, why it stopped)."""
    aug = CHAR_AUGMENTATION if run.augment else None
    warm = project_loader(s, train, run.batch_size, aug)
    warm_up_model(s, lambda: s.resnet(width), lambda m: s.optimizer(m, run), char_loss, next(iter(warm)), val)
    del warm

    torch.manual_seed(s.seed)
    model = s.resnet(width)
    clock, curve = Clock(s.device), []
    clock.go()
    loader = project_loader(s, train, run.batch_size, aug)  # copying the uint8 data over is on the clock
    config = configure_adamw(model, adamw_settings(run), total_steps=run.epochs * len(loader))
    optimizer = config["optimizer"]
    scheduler = config["lr_scheduler"]["scheduler"] if "lr_scheduler" in config else None  # stepped once per batch
    for epoch in range(run.epochs):
        for batch in loader:
            train_step(model, optimizer, char_loss, batch, s.amp)
            if scheduler is not None:
                scheduler.step()
            if clock.peek() > budget_s:
                break
        seconds = clock.pause()
        curve.append((seconds, accuracy(model, *val, s.amp)))
        print(f"   width {width:>3} epoch {epoch + 1:>3}: {seconds:8.1f} s  held-out acc {curve[-1][1]:.4f}")
        if curve[-1][1] >= target:
            return curve, "reached"
        if seconds > budget_s:
            return curve, f"budget ({budget_s:.1f} s) spent"
        clock.go()
    return curve, f"schedule ended ({run.epochs} epochs)"


def part_c(s: Setup, train, held_out, epochs: int, budget_factor: float, run: TrainParams) -> dict[str, Any]:
    print(
        f"\n## (c) time to held-out accuracy: {len(train[0]):,} train / {len(held_out[0]):,} held-out glyphs, "
        f"62 classes; training time only (evaluation after each epoch, off the clock)"
    )
    print(
        f"   project: batch {run.batch_size}, AdamW lr {run.lr} wd {run.weight_decay}, {run.schedule} "
        f"(warm-up {run.warmup_fraction:.0%}) over "
        f"{run.epochs} epochs, augment {run.augment}; budget {budget_factor}x the baseline's time to its best"
    )
    val = (torch.from_numpy(held_out[0]).to(s.device), torch.from_numpy(held_out[1].astype(np.int64)).to(s.device))
    curve = fit_baseline(s, train, val, epochs)
    best = max(acc for _, acc in curve)
    t_best = next(t for t, acc in curve if acc == best)
    out: dict[str, Any] = {"baseline": {"curve": curve, "best_acc": best, "time_to_best_s": t_best, "epochs": epochs}}
    for width in s.widths:
        proj_curve, why = fit_project(s, width, run, train, val, best, budget_factor * t_best)
        by_1x = [acc for t, acc in proj_curve if t <= t_best]
        out[f"width {width}"] = {
            "curve": proj_curve,
            "stopped": why,
            "time_s": proj_curve[-1][0] if why == "reached" else None,
            "best_acc": max(acc for _, acc in proj_curve),
            "acc_by_baseline_time": max(by_1x) if by_1x else None,
        }
    print(f"\n{'run':<26}{'best acc':>9}  {'acc by 1x':>9}  {'time to target':>14}  {'time ratio':>10}  note")
    print(
        f"{f'baseline: lab CNN, b{s.baseline_batch}':<26}{best:>9.4f}  {best:>9.4f}  {t_best:>12.1f} s  {1.0:>10.2f}  "
        f"target = {best:.4f}, reached after epoch {curve.index((t_best, best)) + 1} of {epochs}"
    )
    for width in s.widths:
        r = out[f"width {width}"]
        by_1x = "-" if r["acc_by_baseline_time"] is None else f"{r['acc_by_baseline_time']:.4f}"
        if r["time_s"] is not None:
            r["time_ratio"] = r["time_s"] / t_best
            q = r["time_ratio"]
            note = f"{1 / q:.1f}x faster" if q <= 1 else f"{q:.1f}x slower"
            time_s, ratio = f"{r['time_s']:.1f} s", f"{q:.2f}"
        else:
            spent = r["stopped"].startswith("budget")  # else the schedule ended below the target
            ratio = f"> {r['curve'][-1][0] / t_best:.2f}" if spent else "never"
            time_s, note = "not reached", r["stopped"]
        print(
            f"{'project width ' + str(width):<26}{r['best_acc']:>9.4f}  {by_1x:>9}  {time_s:>14}  {ratio:>10}  {note}"
        )
    return out


# --- header and main -------------------------------------------------------------------------------


def run_text(*cmd: str) -> str | None:
    try:
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def git_commit() -> str:
    commit = run_text("git", "rev-parse", "--short", "HEAD")
    if commit is None:
        return "unknown"
    dirty = run_text("git", "status", "--porcelain", "--untracked-files=no")
    return commit + (" + uncommitted changes" if dirty else "")


def hardware_line(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        driver = run_text("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader")
        driver = driver.splitlines()[0] if driver else "unknown"
        return (
            f"{props.name}, {props.total_memory / 2**30:.0f} GiB, driver {driver}; CUDA {torch.version.cuda}, "
            f"cuDNN {torch.backends.cudnn.version()}; {os.cpu_count()} CPUs"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu_name()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, load average {load:.1f}"


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows up in logs
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--parts", default="a,b,c", help="comma-separated subset of a,b,c")
    parser.add_argument("--width", default=None, help="ResNet width(s), comma-separated; default model.width,32,16")
    parser.add_argument("--samples", type=int, default=None, help="(a) glyphs per epoch; lines: / max_length")
    parser.add_argument("--train-samples", type=int, default=None, help="(b) samples per row; lines: / max_length")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats in (a) and (b)")
    parser.add_argument("--per-class", type=int, default=None, help="(c) training glyphs per class")
    parser.add_argument("--held-out", type=int, default=None, help="(c) held-out glyphs per class")
    parser.add_argument("--baseline-epochs", type=int, default=None, help="(c) the baseline's fixed budget")
    parser.add_argument("--budget-factor", type=float, default=None, help="(c) project budget, x baseline time")
    parser.add_argument("--project-epochs", type=int, default=None, help="(c) override train_cnn.epochs")
    parser.add_argument("--project-batch", type=int, default=None, help="(c) override train_cnn.batch_size")
    parser.add_argument("--workers", type=int, default=None, help="baseline DataLoader workers; default FSDL's")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU); default torch's")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    args = parser.parse_args()

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    on_gpu = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if on_gpu else "cpu")
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not parts or not parts <= {"a", "b", "c"}:
        parser.error(f"--parts takes a, b and c, got {args.parts!r}")
    d = {**DEFAULTS["quick" if args.quick else device.type]}
    for name in ("samples", "train_samples", "per_class", "held_out", "budget_factor"):
        if getattr(args, name) is not None:
            d[name] = getattr(args, name)
    if args.repeats is not None:
        d["repeats"] = d["b_repeats"] = args.repeats
    if args.baseline_epochs is not None:
        d["epochs"] = args.baseline_epochs

    params = load_params(args.params)
    model = from_dict(ModelParams, "model", params.get("model"))
    widths = [int(w) for w in args.width.split(",")] if args.width else list(dict.fromkeys([model.width, 32, 16]))
    # FSDL's BaseDataModule: one worker per CPU and pinned memory when training on a GPU. On a CPU,
    # workers would only take cores from the training itself, so none.
    workers = args.workers if args.workers is not None else (len(os.sched_getaffinity(0)) if on_gpu else 0)
    s = Setup(
        device=device,
        amp=on_gpu,
        hardware=Hardware(accelerator="gpu" if on_gpu else "cpu", precision="bf16-mixed" if on_gpu else "32-true"),
        workers=workers,
        model=model,
        line_model=from_dict(LineModelParams, "line_model", params.get("line_model")),
        train_cnn=from_dict(TrainParams, "train_cnn", params.get("train_cnn")),
        train_line_cnn=from_dict(TrainParams, "train_line_cnn", params.get("train_line_cnn")),
        lines=from_dict(EmnistLinesParams, "emnist_lines", params.get("emnist_lines")),
        widths=widths,
        seed=args.seed,
    )
    if args.quick:  # a smoke run: small batches, so every path runs in seconds (the figures mean little)
        s.baseline_batch = 32
        s.train_cnn = dataclasses.replace(s.train_cnn, batch_size=min(s.train_cnn.batch_size, 64))
        s.train_line_cnn = dataclasses.replace(s.train_line_cnn, batch_size=min(s.train_line_cnn.batch_size, 8))
    tc, tl = s.train_cnn, s.train_line_cnn
    run_c = dataclasses.replace(
        tc,
        epochs=args.project_epochs if args.project_epochs is not None else tc.epochs,
        batch_size=args.project_batch if args.project_batch is not None else tc.batch_size,
    )

    # The header: enough to reproduce the numbers.
    hw, commit = hardware_line(device), git_commit()
    print(f"# train_throughput.py, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, commit {commit}")
    print(f"# {hw}")
    if not on_gpu and hasattr(os, "getloadavg") and os.getloadavg()[0] >= 1.0 and torch.get_num_threads() > 1:
        print("# WARNING: the load average says other jobs may share these cores; torch's threads stall on busy cores")
        print("#          (100x on DeviceLoader's small ops, 3x on the models here): compare with --threads 1")
    print(f"# torch {torch.__version__}, Python {platform.python_version()}, device {device}")
    print(f"# command: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}; cudnn.benchmark {args.cudnn_benchmark}")
    print(
        f"# parts {','.join(sorted(parts))}; (a) {d['samples']:,} glyphs x {d['repeats']}, (b) {d['train_samples']:,} "
        f"samples x {d['b_repeats']}; baseline DataLoader: {workers} workers, pin_memory {on_gpu}"
    )
    print(f"# model {dataclasses.asdict(model)}, widths {widths}; line_model {dataclasses.asdict(s.line_model)}")
    print(
        f"# train_cnn batch {tc.batch_size} lr {tc.lr} wd {tc.weight_decay} {tc.schedule} {tc.epochs} epochs "
        f"augment {tc.augment}; train_line_cnn batch {tl.batch_size} lr {tl.lr}; lines of {s.lines.max_length}"
    )
    print(
        f"# (c) {d['per_class']}/class train, {d['held_out']}/class held-out, baseline {d['epochs']} epochs, "
        f"budget {d['budget_factor']}x; seed {args.seed}"
    )

    torch.backends.cudnn.benchmark = args.cudnn_benchmark  # the project leaves it off (Lightning's default)
    if on_gpu:
        torch.set_float32_matmul_precision("high")  # what prepare_network sets: TF32 for the baseline too
    results: dict[str, Any] = {"hardware": hw, "torch": torch.__version__, "commit": commit, "args": vars(args)}
    results["sizes"] = d
    started = time.perf_counter()
    glyphs, labels = make_glyphs(d["per_class"], args.seed)  # (c)'s training set; (a) and (b) repeat it
    held = make_glyphs(d["held_out"], args.seed + 1) if "c" in parts else None
    n_lines_a = max(tl.batch_size, d["samples"] // s.lines.max_length)
    n_lines_b = max(2 * tl.batch_size, d["train_samples"] // s.lines.max_length)
    line_set = None
    if parts & {"a", "b"}:  # at most 4096 distinct lines, repeated as needed
        line_set = make_lines(glyphs, labels, min(4096, max(n_lines_a, n_lines_b)), s.lines, args.seed)
    print(f"# data drawn in {time.perf_counter() - started:.1f} s (not timed)")

    failed: list[str] = []
    for part in sorted(parts):  # one failing part does not cost the others' figures
        try:
            if part == "a":
                chars = tile((glyphs, labels), d["samples"])
                results["a"] = part_a(s, chars, tile(line_set, n_lines_a), d["repeats"])
            elif part == "b":
                chars = tile((glyphs, labels), max(d["train_samples"], 4 * tc.batch_size))
                args_b = (d["train_samples"], d["b_repeats"], d["warmup"])
                results["b"] = part_b(s, chars, tile(line_set, n_lines_b), *args_b)
            else:
                results["c"] = part_c(s, (glyphs, labels), held, d["epochs"], d["budget_factor"], run_c)
        except Exception:
            traceback.print_exc()
            failed.append(part)
        if any(isinstance(row, dict) and "error" in row for row in results.get(part, {}).values()):
            failed.append(part)
    total = time.perf_counter() - started
    results["total_s"] = total
    print(f"\n# total {total:.0f} s" + (f"; FAILED parts: {','.join(failed)}" if failed else ""))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
