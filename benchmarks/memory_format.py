"""Seconds per training step of the offline recipe's networks in each memory format: contiguous vs channels_last.

    .venv/bin/python benchmarks/memory_format.py [--device cpu] [--threads N] [--repeats 8] [--quick] [--json OUT]
        [-S section.key=value ...]

Why it exists: training.prepare_network puts the network in channels_last on every device. On a GPU that is
for tensor cores; on the CPU oneDNN's convolutions and batch norms run faster that way too, which this measures.
Rows: the char ResNet (params `model`, batch train_cnn.batch_size of 28x28 glyphs) and the LineCNN (params
`line_model`, batch train_line_cnn.batch_size of lines 760 px wide, a typical width-pooled batch), at
`make offline`'s sizes unless -S says otherwise, built as loaders.Recipe builds them. A step is
loaders.train_step (forward, loss, backward, AdamW) on random inputs (speed does not depend on the values). The
two formats alternate step by step, so a busy neighbour slows both.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from loaders import Recipe, char_loss, train_step
from machine import arguments, report, start, sync

# make offline's sizes (Makefile OFFLINE_PARAMS), before the command line's own -S
OFFLINE = ["model.width=16", "line_model.width=16", "line_model.fc_dim=64", "train_cnn.batch_size=256",
           "train_line_cnn.batch_size=64"]  # fmt: skip
LINE_WIDTH = 760  # px: a width-pooled batch of offline lines is about this wide
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def rows(recipe: Recipe, device: torch.device) -> dict[str, tuple[Callable[[], torch.nn.Module], tuple, Callable]]:
    """{row: (a function building the network, a batch (x, targets...), the loss)} at the recipe's sizes."""
    glyphs = torch.rand(recipe.train_cnn.batch_size, 1, 28, 28, device=device)
    labels = torch.randint(0, 62, (len(glyphs),), device=device)
    lines = torch.rand(recipe.train_line_cnn.batch_size, 1, 28, LINE_WIDTH, device=device)
    return {
        "char resnet": (
            lambda: recipe.resnet(recipe.model.width, device),
            (glyphs, labels),
            char_loss(recipe.train_cnn),
        ),
        f"line ctc ({recipe.line_model.head})": (
            lambda: recipe.linecnn(device),
            (lines,),
            line_loss,
        ),
    }


def line_loss(out: torch.Tensor) -> torch.Tensor:
    """A stand-in for the CTC loss: speed does not depend on which loss."""
    return out.float().logsumexp(1).mean()


def alternating_times(runs: dict[str, tuple[torch.nn.Module, torch.optim.Optimizer, tuple]], loss_fn: Callable,
                      repeats: int) -> dict[str, float]:  # fmt: skip
    """Seconds per step of each run after a warm-up step each, the runs taking turns step by step (so a busy
    neighbour slows them all alike)."""
    for network, optimizer, batch in runs.values():
        timed_step(network, optimizer, loss_fn, batch)
    times = dict.fromkeys(runs, 0.0)
    for _ in range(repeats):
        for name, (network, optimizer, batch) in runs.items():
            times[name] += timed_step(network, optimizer, loss_fn, batch) / repeats
    return times


def timed_step(network: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable, batch: tuple) -> float:
    started = time.perf_counter()
    train_step(network, optimizer, loss_fn, batch)
    sync(batch[0].device)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__file__, __doc__)
    parser.add_argument("--repeats", type=int, default=8, help="timed steps per format and row")
    args, device, head = start(parser, argv)
    recipe = Recipe.load([*OFFLINE, *args.set], args.quick)
    repeats = 1 if args.quick else args.repeats
    results: dict[str, dict[str, float]] = {}
    print("\n| network | contiguous s/step | channels_last s/step | speed-up |\n| --- | --- | --- | --- |")
    for row, (build, batch, loss_fn) in rows(recipe, device).items():
        runs = {}
        for name, fmt in FORMATS.items():
            torch.manual_seed(0)  # the same weights in both formats
            network = build().to(memory_format=fmt)  # built as training prepares it, then put in this format
            x = batch[0].to(memory_format=fmt)
            runs[name] = (network, torch.optim.AdamW(network.parameters()), (x, *batch[1:]))
        results[row] = times = alternating_times(runs, loss_fn, repeats)
        print(f"| {row} | {times['contiguous']:.3f} | {times['channels_last']:.3f} | "
              f"{times['contiguous'] / times['channels_last']:.2f}x |")  # fmt: skip
    report(head, results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
