"""(a) How fast do float batches reach the training device: DeviceLoader vs the FSDL per-sample DataLoader?

    .venv/bin/python benchmarks/loader_speed.py [--device auto|cpu|cuda] [--threads 1] [--quick] [--json OUT]

Samples/s delivered as float batches on the device, over whole epochs after 3 warm-up batches (on a GPU
the clock is read after torch.cuda.synchronize()). Baseline: per-sample Dataset + DataLoader at batch
128, then `.to(device)` (benchmarks/loaders.py). Project: DeviceLoader with augmentation at
train_cnn.batch_size (lines: train_line_cnn.batch_size), and without augmentation for reference; its
one-time copy of the uint8 set to the device is not timed. Lines are timed at 1/max_length of the glyph
count, i.e. the same number of pixels. Goal on a GPU: the project >= 10x the baseline on glyphs.
Batch sizes and line length come from params.yaml; the sizes below are this script's own.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from loaders import (
    Recipe,
    baseline_loader,
    fmt_rate,
    make_glyphs,
    make_lines,
    mean_std,
    on_device,
    project_loader,
    tile,
    warp,
)
from machine import arguments, report, start, sync

# glyphs per epoch (a multiple of every batch size, so no partial batch), epochs timed, glyphs per class drawn
SIZES = {
    "cuda": {"samples": 200_704, "repeats": 5, "per_class": 200},
    "cpu": {"samples": 20_480, "repeats": 3, "per_class": 100},
    "quick": {"samples": 2_048, "repeats": 2, "per_class": 8},
}
GOAL = 10.0  # the project's glyph rate over the baseline's, on a GPU (issue 10)


def epoch_rates(make_epoch: Callable[[], Iterable], device: torch.device, repeats: int) -> list[float]:
    """samples/s over whole epochs delivered on the device, after 3 warm-up batches."""
    for _ in itertools.islice(make_epoch(), 3):
        pass
    rates = []
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        seen = sum(len(batch[0]) for batch in make_epoch())  # < n where drop_last left out a partial batch
        sync(device)
        rates.append(seen / (time.perf_counter() - started))
    return rates


def main(argv: list[str] | None = None) -> int:
    args, device, head = start(arguments(__file__, __doc__), argv)
    recipe = Recipe.load(args.set, args.quick)
    size = SIZES["quick" if args.quick else device.type]
    glyphs, labels = make_glyphs(size["per_class"])
    n_lines = size["samples"] // recipe.lines.max_length
    lines = make_lines(glyphs, labels, min(n_lines, 4096), recipe.lines)  # at most 4096 distinct lines
    print(f"\n## (a) float batches on the device, samples/s (mean ± std over {size['repeats']} epochs)")
    print(
        f"{'data':<7}{'samples':>9}  {f'baseline: per-sample b{recipe.baseline_batch}':>25}  "
        f"{'project: DeviceLoader+aug':>25}  ratio  {'(DeviceLoader, no aug)':>25}"
    )
    results: dict[str, Any] = {"sizes": size, "recipe": recipe.describe()}
    rows = (
        ("glyphs", tile((glyphs, labels), size["samples"]), recipe.train_cnn.batch_size, warp(recipe.train_cnn)),
        ("lines", tile(lines, n_lines), recipe.train_line_cnn.batch_size, warp(recipe.train_line_cnn)),
    )
    failed = False
    for name, arrays, batch, aug in rows:
        try:
            base = baseline_loader(arrays, recipe.baseline_batch, device)
            rates = {"baseline": epoch_rates(lambda base=base: on_device(base, device), device, size["repeats"])}
            del base  # its workers go before the project's rows
            for key, augment in (("project", aug), ("project_no_aug", None)):
                loader = project_loader(arrays, batch, augment, device)
                rates[key] = epoch_rates(lambda loader=loader: loader, device, size["repeats"])
        except Exception as error:  # one failing row does not cost the other
            print(f"{name}: FAILED ({type(error).__name__}: {error})")
            results[name], failed = {"error": f"{type(error).__name__}: {error}"}, True
            continue
        ratio = mean_std(rates["project"])[0] / mean_std(rates["baseline"])[0]
        print(
            f"{name:<7}{len(arrays[0]):>9,}  {fmt_rate(rates['baseline']):>25}  {fmt_rate(rates['project']):>25}  "
            f"{ratio:5.2f}x  {fmt_rate(rates['project_no_aug']):>25}"
        )
        results[name] = {"samples": len(arrays[0]), "batch_project": batch, **rates, "ratio": ratio}
    if device.type == "cuda" and "ratio" in results["glyphs"]:
        met = results["glyphs"]["ratio"] >= GOAL
        print(f"\ngoal: DeviceLoader >= {GOAL:.0f}x the per-sample baseline on glyphs: {'met' if met else 'NOT met'}")
    report(head, results, args.json)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
