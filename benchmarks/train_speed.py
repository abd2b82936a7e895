"""(b) Training samples/s of the project's models fed by each loader, and the model alone (the ceiling).

    .venv/bin/python benchmarks/train_speed.py [--device auto|cpu|cuda] [--compile] [--threads 1] [--quick]
        [--json OUT] [-S section.key=value ...]

Rows: ResNetClassifier (params `model`, at model.width, 32 and 16) and LineCNN (params `line_model`) on
train_cnn / train_line_cnn's batch size with the project's AdamW at a constant lr. Columns: fed by the
FSDL per-sample DataLoader at batch 128, by DeviceLoader with augmentation, and the model alone on one
batch already on the device (no data path at all). A plain loop (forward, backward, AdamW step), not
Lightning, so the figures measure the data path and the model, not the trainer. bf16 autocast and
channels_last on a GPU, as the project trains; float32 and channels_last on a CPU. Each row builds its model once; every
column runs its own warm-up steps, then `samples` in `repeats` timed chunks (the clock is read after
torch.cuda.synchronize()). --compile: torch.compile the model; the baseline column and widths 32 and 16
are then left out (a batch of 128 would compile the model a second time, and each compilation takes
about a minute). Goal on a GPU: the default CNN >= 150,000
samples/s with the project loader (stretch 300,000).
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from loaders import (
    Recipe,
    baseline_loader,
    char_loss,
    fmt_rate,
    forever,
    make_glyphs,
    make_lines,
    mean_std,
    on_device,
    project_loader,
    tile,
    train_step,
    warp,
)
from machine import arguments, report, start, sync

from text_recognizer.lit_models.ctc import ctc_loss

# per column: samples timed (lines: / max_length), in `repeats` chunks, after `warmup` steps
SIZES = {
    "cuda": {"samples": 200_704, "repeats": 5, "warmup": 10, "per_class": 200},
    "cpu": {"samples": 512, "repeats": 1, "warmup": 1, "per_class": 100},
    "quick": {"samples": 128, "repeats": 1, "warmup": 1, "per_class": 8},
}
Model, Optimizer, Size = torch.nn.Module, torch.optim.Optimizer, dict[str, int]
GOAL, STRETCH = 150_000, 300_000  # default CNN, project loader, one H100/H200-class GPU (issue 10)


def rates(model: Model, opt: Optimizer, loss_fn: Callable, batches: Iterator, size: Size, n: int, device, row: dict):
    """samples/s of training steps on `batches`: warm-up steps (their time added to row["warmup_s"]: with
    --compile, the compilation), then n samples in `repeats` timed chunks."""
    started = time.perf_counter()
    for _ in range(size["warmup"]):
        train_step(model, opt, loss_fn, next(batches))
    sync(device)
    row["warmup_s"] = row.get("warmup_s", 0.0) + time.perf_counter() - started
    out = []
    for _ in range(size["repeats"]):
        sync(device)
        started, seen = time.perf_counter(), 0
        while seen < n / size["repeats"]:  # whole batches: a chunk may run past n / repeats
            batch = next(batches)
            train_step(model, opt, loss_fn, batch)
            seen += len(batch[0])
        sync(device)
        out.append(seen / (time.perf_counter() - started))
    return out


def measure(
    model: Model,
    optimizer: Optimizer,
    loss_fn: Callable,
    arrays: tuple,
    batch: int,
    aug,
    count: int,
    size: Size,
    device: torch.device,
    baseline: int | None,
) -> dict[str, Any]:
    """One row: the same model fed by the baseline loader (unless `baseline` is None), the project's, and alone."""
    row: dict[str, Any] = {"samples": count, "batch_project": batch, "baseline": None}
    if baseline is not None:
        base = baseline_loader(arrays, baseline, device)
        feed = forever(lambda: on_device(base, device))
        row["baseline"] = rates(model, optimizer, loss_fn, feed, size, count, device, row)
        del base, feed  # its workers go
    proj = project_loader(arrays, batch, aug, device)
    row["project"] = rates(model, optimizer, loss_fn, forever(lambda: proj), size, count, device, row)
    one = next(iter(proj))  # the ceiling: one project batch that is already there
    row["model_alone"] = rates(model, optimizer, loss_fn, itertools.repeat(one), size, count, device, row)
    p, a = mean_std(row["project"])[0], mean_std(row["model_alone"])[0]
    row.update(ratio=p / mean_std(row["baseline"])[0] if row["baseline"] else None, project_over_alone=p / a)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__file__, __doc__)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (as train_*.compile)")
    args, device, head = start(parser, argv)
    recipe = Recipe.load(args.set, args.quick)
    size = SIZES["quick" if args.quick else device.type]
    n, tc, tl = size["samples"], recipe.train_cnn, recipe.train_line_cnn
    glyphs, labels = make_glyphs(size["per_class"])
    line_n = max(tl.batch_size, n // recipe.lines.max_length)  # the same pixels, at least one batch
    lines = tile(make_lines(glyphs, labels, min(4096, max(2 * tl.batch_size, line_n)), recipe.lines), line_n)
    chars = tile((glyphs, labels), max(n, 4 * tc.batch_size))
    precision = "bf16 autocast, channels_last" if device.type == "cuda" else "float32, channels_last"
    print(f"\n## (b) training samples/s, plain loop, {precision}, compile {args.compile}")
    print(f"   {size['warmup']} warm-up step(s) per column, then {size['repeats']} timed chunk(s) of ~{n:,} in all")
    print(
        f"{'model':<18}{'samples':>8}  {f'baseline loader b{recipe.baseline_batch}':>22}  {'project loader':>22}  "
        f"{'model alone':>22}  proj/base  proj/alone  warm-up s"
    )
    widths = recipe.widths()[:1] if args.compile else recipe.widths()  # compiling costs a minute a model
    rows = [(f"ResNet width {w}", lambda w=w: recipe.resnet(w, device, args.compile), tc) for w in widths]
    rows.append((f"LineCNN {recipe.lines.max_length} chars", lambda: recipe.linecnn(device, args.compile), tl))
    results: dict[str, Any] = {"sizes": size, "compile": args.compile, "recipe": recipe.describe()}
    for name, build, run in rows:
        is_line = name.startswith("LineCNN")
        data, loss_fn, aug = (
            (lines, ctc_loss, warp(recipe.train_line_cnn))
            if is_line
            else (chars, char_loss(recipe.train_cnn), warp(recipe.train_cnn))
        )
        try:
            torch.manual_seed(0)
            model = build()
            optimizer = recipe.optimizer(model, run)["optimizer"]
            baseline = None if args.compile else recipe.baseline_batch  # compiled: one batch shape only
            row = measure(
                model, optimizer, loss_fn, data, run.batch_size, aug, line_n if is_line else n, size, device, baseline
            )
        except Exception as error:  # one failing row does not cost the others
            print(f"{name}: FAILED ({type(error).__name__}: {error})")
            results[name] = {"error": f"{type(error).__name__}: {error}"}
        else:
            ratio = f"{row['ratio']:8.2f}x" if row["ratio"] else f"{'-':>9}"
            print(
                f"{name:<18}{row['samples']:>8,}  {fmt_rate(row['baseline']):>22}  {fmt_rate(row['project']):>22}  "
                f"{fmt_rate(row['model_alone']):>22}  {ratio}  {row['project_over_alone']:9.2f}  {row['warmup_s']:9.1f}"
            )
            results[name] = row
        report(head, results, args.json)  # after every row: a run stopped by a time limit keeps what it measured
    default = results.get(f"ResNet width {recipe.model.width}", {})
    if device.type == "cuda" and "project" in default:
        rate = mean_std(default["project"])[0]
        verdict = "stretch met" if rate >= STRETCH else "met" if rate >= GOAL else "NOT met"
        print(f"\ngoal: default CNN >= {GOAL:,} samples/s (stretch {STRETCH:,}): {rate:,.0f}, {verdict}")
    return 1 if any("error" in r for r in results.values() if isinstance(r, dict)) else 0


if __name__ == "__main__":
    sys.exit(main())
