"""(c) How long does the project's recipe take to reach the FSDL lab CNN's held-out accuracy?

    .venv/bin/python benchmarks/time_to_accuracy.py [--device auto|cpu|cuda] [--threads 1] [--quick]
        [--json OUT] [-S section.key=value ...]

Glyphs from render_glyphs, seeded: `per_class` training and `held_out` held-out glyphs per class. The FSDL
lab CNN (Adam 1e-3, batch 128, per-sample DataLoader) trains for `epochs` epochs; its best held-out
accuracy becomes the target. Then the project's recipe (ResNetClassifier, AdamW + the schedule of
train_cnn, DeviceLoader with train_cnn.augment) trains at model.width, 32 and 16 until it reaches the
target, its train_cnn.epochs end, or `budget`x the baseline's time to its best has passed. Only training
is timed: the clock pauses for the evaluation after every epoch, and a throwaway model takes the warm-up
steps first. The project's copy of the uint8 set to the device is on its clock. Another recipe:
`-S train_cnn.batch_size=128`, `-S model.width=16` and so on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from loaders import Recipe, baseline_loader, char_loss, make_glyphs, on_device, project_loader, train_step
from machine import arguments, report, start, sync
from torch import nn

from text_recognizer.data.augmentation import augmentation
from text_recognizer.data.device_loader import DeviceLoader
from text_recognizer.metadata import NUM_EMNIST_CLASSES

Build, MakeLoader, Val = Callable[[], nn.Module], Callable[[], Iterable], tuple[torch.Tensor, torch.Tensor]
MakeOpt = Callable[[nn.Module, int], tuple[torch.optim.Optimizer, Any]]  # (model, total steps) -> (opt, scheduler)
SIZES = {
    "cuda": {"per_class": 200, "held_out": 30, "epochs": 20, "budget": 3.0},
    "cpu": {"per_class": 100, "held_out": 20, "epochs": 3, "budget": 3.0},
    "quick": {"per_class": 8, "held_out": 8, "epochs": 1, "budget": 1.0},
}


class LabCNN(nn.Module):
    """The FSDL lab CNN (PyTorch's MNIST example): (B, 1, 28, 28) -> conv 32, conv 64, pool, fc 128 -> (B, 62)."""

    def __init__(self, num_classes: int = NUM_EMNIST_CLASSES) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3), nn.Conv2d(32, 64, 3)  # unpadded: 28 -> 26 -> 24
        self.fc1, self.fc2 = nn.Linear(64 * 12 * 12, 128), nn.Linear(128, num_classes)
        self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)  # (B, 64, 12, 12)
        return self.fc2(self.dropout2(F.relu(self.fc1(self.dropout1(x).flatten(1)))))


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 1024) -> float:
    """Top-1 accuracy on (N, 28, 28) uint8 images already on the device (no augmentation)."""
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        x = images[i : i + batch].unsqueeze(1).float().div_(255.0)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
            correct += int((model(x).argmax(1) == labels[i : i + batch]).sum())
    model.train()
    return correct / len(images)


def fit(
    build: Build,
    optimizer: MakeOpt,
    loader: MakeLoader,
    loss_fn: Callable,
    epochs: int,
    val: Val,
    target: float,
    budget: float,
) -> tuple[list[tuple[float, float]], str]:
    """Train a fresh model epoch by epoch until acc >= target, `epochs` end or `budget` s pass:
    ([(train seconds, held-out acc)], why it stopped).

    A throwaway model first takes the warm-up steps and one evaluation off the clock, fed by the first
    loader (which starts the baseline's workers there). The project's loader is made again on the clock,
    since copying its uint8 set to the device is part of its cost.
    """
    device, make_loader, make_optimizer = val[0].device, loader, optimizer
    loader, warm = make_loader(), build()
    warm_optimizer, warm_batch = make_optimizer(warm, 1)[0], tuple(t.to(device) for t in next(iter(loader)))
    for _ in range(2 if device.type == "cuda" else 1):
        train_step(warm, warm_optimizer, loss_fn, warm_batch)
    accuracy(warm, *val)
    del warm, warm_optimizer
    torch.manual_seed(0)
    model, curve, total = build(), [], 0.0
    sync(device)
    started = time.perf_counter()
    if isinstance(loader, DeviceLoader):
        loader = make_loader()
    optimizer, scheduler = make_optimizer(model, epochs * len(loader))
    for _ in range(epochs):
        for batch in on_device(loader, device):
            train_step(model, optimizer, loss_fn, batch)
            if scheduler is not None:
                scheduler.step()  # once per batch, as Lightning steps it
            if total + time.perf_counter() - started > budget:  # no sync: cheap, accurate to the queued work
                break
        sync(device)
        total += time.perf_counter() - started
        curve.append((total, accuracy(model, *val)))
        print(f"   epoch {len(curve):>3}: {total:8.1f} s  held-out acc {curve[-1][1]:.4f}")
        if curve[-1][1] >= target:
            return curve, "reached"
        if total > budget:
            return curve, f"budget {budget:.1f} s spent"
        started = time.perf_counter()
    return curve, f"{epochs} epochs done"


def main(argv: list[str] | None = None) -> int:
    args, device, head = start(arguments(__file__, __doc__), argv)
    recipe = Recipe.load(args.set, args.quick)
    size, run = SIZES["quick" if args.quick else device.type], recipe.train_cnn
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32, what the project sets, for the baseline too
    train = make_glyphs(size["per_class"])
    held = make_glyphs(size["held_out"], seed=1)
    val = (torch.from_numpy(held[0]).to(device), torch.from_numpy(held[1].astype(np.int64)).to(device))
    print(f"\n## (c) time to held-out accuracy: {len(train[0]):,} train / {len(val[0]):,} held-out glyphs")
    print(f"   baseline: lab CNN, Adam 1e-3, b{recipe.baseline_batch}, {size['epochs']} epochs")
    base_curve, _ = fit(
        lambda: LabCNN().to(device),
        lambda m, steps: (torch.optim.Adam(m.parameters(), lr=1e-3), None),
        lambda: baseline_loader(train, recipe.baseline_batch, device),
        F.cross_entropy,
        size["epochs"],
        val,
        2.0,
        float("inf"),
    )
    target, t_best = max((acc, -t) for t, acc in base_curve)
    t_best = -t_best
    budget = size["budget"] * t_best
    results: dict[str, Any] = {"sizes": size, "recipe": recipe.describe()}
    results["baseline"] = {"curve": base_curve, "best_acc": target, "time_s": t_best}
    print(f"   target {target:.4f} at {t_best:.1f} s; project budget {budget:.1f} s")
    print(f"   project: b{run.batch_size}, {run.schedule} over {run.epochs} epochs (params train_cnn: {run})")

    def optimizer(model: nn.Module, steps: int) -> tuple[torch.optim.Optimizer, Any]:
        config = recipe.optimizer(model, run, total_steps=steps)
        return config["optimizer"], config.get("lr_scheduler", {}).get("scheduler")

    for width in recipe.widths():
        print(f"   width {width}:")
        curve, why = fit(
            lambda w=width: recipe.resnet(w, device),
            optimizer,
            lambda: project_loader(train, run.batch_size, augmentation(run), device),
            char_loss(run),
            run.epochs,
            val,
            target,
            budget,
        )
        time_s = curve[-1][0] if why == "reached" else None
        ratio = time_s / t_best if time_s is not None else None
        results[f"width {width}"] = {"curve": curve, "stopped": why, "time_s": time_s, "time_ratio": ratio}
        best = max(acc for _, acc in curve)
        print(f"   -> {why}" + (f" at {time_s:.1f} s: {ratio:.2f}x the baseline's" if ratio else f", best {best:.4f}"))
    report(head, results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
