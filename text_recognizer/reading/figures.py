"""Figures a person can read without `dvc plots show`, whose pages load Vega from a CDN: PNGs of the character
model's confusion (normalised per true class), its most-confused pairs with test glyphs, and the training curves.

The evaluate stage writes them into its plots folder; dvc.yaml lists each under `plots`. Only numpy and
matplotlib (drawn on an Agg canvas, no display needed); no torch, so the functions test in milliseconds.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from text_recognizer.io import atomic_path

if TYPE_CHECKING:  # matplotlib itself is imported where a figure is drawn, so importing this module stays light
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PathLike = str | os.PathLike[str]
# Readable names for the metrics' basenames (dvclive's file names under plots/metrics/<split>/), and for the splits.
METRIC_LABELS = {"loss": "loss", "acc": "accuracy", "cer": "character error rate", "line_acc": "exact-line accuracy"}
SPLIT_LABELS = {"train": "train (mean over the epoch)", "val": "val (after the epoch)"}


@dataclasses.dataclass(frozen=True)
class ConfusedPair:
    true: int  # class index
    predicted: int
    count: int  # test glyphs of class `true` read as `predicted`
    rate: float  # count / the number of test glyphs of class `true`


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows the true class, columns the predicted one."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.shape} true labels for {y_pred.shape} predictions")
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat[: num_classes * num_classes].reshape(num_classes, num_classes)


def normalize_rows(counts: np.ndarray) -> np.ndarray:
    """Each true class's row divided by its test glyphs, so a class with 5 glyphs weighs as much as one with 5,000
    (ByClass's classes differ ~50-fold); a class without test glyphs stays a row of zeros rather than NaN."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def most_confused_pairs(counts: np.ndarray, top: int = 12) -> list[ConfusedPair]:
    """The `top` off-diagonal cells by count, most first; ties by rate, then by class order, so the list is stable."""
    counts = np.asarray(counts, dtype=np.int64)
    rates = normalize_rows(counts)
    true, pred = np.nonzero(counts * (1 - np.eye(len(counts), dtype=np.int64)))
    order = np.lexsort((pred, true, -rates[true, pred], -counts[true, pred]))[:top]
    return [ConfusedPair(int(true[i]), int(pred[i]), int(counts[true[i], pred[i]]), float(rates[true[i], pred[i]]))
            for i in order]  # fmt: skip


def pair_examples(
    y_true: np.ndarray, y_pred: np.ndarray, pairs: Sequence[ConfusedPair], per_pair: int = 4
) -> list[np.ndarray]:
    """For each pair, the indices of its first `per_pair` test glyphs (in test-set order, so reruns show the same)."""
    return [np.flatnonzero((y_true == p.true) & (y_pred == p.predicted))[:per_pair] for p in pairs]


def _new_figure(width: float, height: float) -> Figure:
    """A figure on an Agg canvas: no pyplot, so no GUI backend and no global state between figures."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, png_path: PathLike, dpi: int) -> None:
    with atomic_path(png_path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


def save_confusion_png(counts: np.ndarray, mapping: Sequence[str], png_path: PathLike, *, title: str = "") -> None:
    """The normalised confusion as a heatmap with every class labelled, rows true and columns predicted.

    A square-root colour scale, so that the off-diagonal cells of a good model (a few per cent) are not all white;
    off-diagonal cells of 5 % and more carry their percentage; lines separate digits, upper and lower case.
    """
    from matplotlib.colors import PowerNorm

    rates, n = normalize_rows(counts), len(mapping)
    fig = _new_figure(14, 13)
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=1), interpolation="nearest")
    for t, p in zip(*np.nonzero((rates >= 0.05) & ~np.eye(n, dtype=bool)), strict=True):
        ax.text(p, t, f"{100 * rates[t, p]:.0f}", ha="center", va="center", fontsize=6.5,
                color="white" if rates[t, p] > 0.5 else "black")  # fmt: skip
    ax.set_xticks(range(n), list(mapping), fontsize=7)
    ax.set_yticks(range(n), list(mapping), fontsize=7)
    ax.tick_params(top=True, labeltop=True)
    for edge in _group_edges(mapping):
        ax.axhline(edge - 0.5, color="0.4", linewidth=0.6)
        ax.axvline(edge - 0.5, color="0.4", linewidth=0.6)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "confusion, each true class's row sums to 1 (numbers: off-diagonal %)")
    fig.colorbar(image, ax=ax, shrink=0.6, label="share of the true class's test glyphs")
    _save(fig, png_path, dpi=100)


def _group_edges(mapping: Sequence[str]) -> list[int]:
    """Indices where the class kind changes (digit, upper, lower): where the heatmap draws a separating line."""
    kind = [0 if c.isdigit() else 1 if c.isupper() else 2 for c in mapping]
    return [i for i in range(1, len(kind)) if kind[i] != kind[i - 1]]


def save_confused_pairs_png(
    pairs: Sequence[ConfusedPair], glyphs: Sequence[np.ndarray], mapping: Sequence[str], png_path: PathLike
) -> None:
    """Each pair's count and rate above some of its test glyphs (dark ink on white), three pairs a row."""
    cols, per_pair = 3, max([len(g) for g in glyphs] + [1])
    rows = max(math.ceil(len(pairs) / cols), 1)
    fig = _new_figure(cols * per_pair * 0.95 + 0.5, rows * 1.45 + 0.4)
    fig.suptitle("most-confused pairs on the test set: true → predicted, with test glyphs read that way")
    if not pairs:
        fig.text(0.5, 0.5, "no confusions: every test glyph was read as its class", ha="center", va="center")
    cells = fig.subfigures(rows, cols, squeeze=False).ravel()
    for cell, pair, images in zip(cells, pairs, glyphs, strict=False):
        cell.suptitle(f"{mapping[pair.true]!r} → {mapping[pair.predicted]!r}: {pair.count} ({100 * pair.rate:.1f} % "
                      f"of {mapping[pair.true]!r})", fontsize=10)  # fmt: skip
        for ax, image in zip(cell.subplots(1, per_pair), [*images, *[None] * per_pair], strict=False):
            if image is None:
                ax.axis("off")
                continue
            ax.imshow(image, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():  # a light frame: where one glyph's box ends and the next begins
                spine.set_color("0.75")
    _save(fig, png_path, dpi=90)


def read_curves(metrics_dir: PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """dvclive's `plots/metrics/**/<name>.tsv` of a training run: {"val/acc": (steps, values)}, by name."""
    root = Path(metrics_dir) / "plots" / "metrics"
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for path in sorted(root.rglob("*.tsv")):
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        name = path.relative_to(root).with_suffix("").as_posix()
        field = path.stem  # dvclive's header: step, then the metric's basename
        curves[name] = (np.array([int(r["step"]) for r in rows]), np.array([float(r[field]) for r in rows]))
    return curves


def save_curves_png(curves: dict[str, tuple[np.ndarray, np.ndarray]], png_path: PathLike, *, title: str) -> None:
    """One panel per metric (train and val on the same panel), against epoch below and optimizer step above.

    Rows are one per epoch, so epoch k is the k-th distinct step logged; the step axis assumes equal epochs.
    """
    from matplotlib.ticker import MaxNLocator

    panels = sorted({name.rpartition("/")[2] for name in curves}, key=lambda m: (m != "loss", m))
    steps = np.unique(np.concatenate([s for s, _ in curves.values()])) if curves else np.zeros(0, dtype=np.int64)
    per_epoch = (steps[-1] + 1) / len(steps) if len(steps) else 1.0
    fig = _new_figure(4.6 * max(len(panels), 1), 3.6)
    fig.suptitle(title)
    axes = fig.subplots(1, max(len(panels), 1), squeeze=False)[0]
    for ax, metric in zip(axes, panels, strict=False):
        for name, (step, value) in sorted(curves.items()):
            if name.rpartition("/")[2] == metric:
                epoch = np.searchsorted(steps, step) + 1
                split = name.rpartition("/")[0] or name
                ax.plot(epoch, value, marker="o", markersize=3, label=SPLIT_LABELS.get(split, split))
        if _spans_decades(ax):
            ax.set_yscale("log")  # CTC's loss falls from ~6 to ~0.05: linear, the last epochs are one flat line
        ax.set_xlabel("epoch")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        top = ax.secondary_xaxis("top", functions=(lambda e: e * per_epoch - 1, lambda s: (s + 1) / per_epoch))
        top.set_xlabel("optimizer step", fontsize=8)
        top.tick_params(labelsize=7)
    if not panels:
        axes[0].text(0.5, 0.5, "no training curves found", ha="center", va="center")
    _save(fig, png_path, dpi=90)


def _spans_decades(ax: Axes) -> bool:
    """Whether the panel's values are all positive and span more than a factor of 20."""
    values = np.concatenate([line.get_ydata() for line in ax.get_lines()] or [np.zeros(0)])
    finite = values[np.isfinite(values)]
    return bool(len(finite)) and finite.min() > 0 and finite.max() / finite.min() > 20


def read_glyphs(h5_path: PathLike, index_lists: Sequence[np.ndarray], split: str = "test") -> list[np.ndarray]:
    """`{split}/images` at each list's indices, read in one sorted pass (h5py wants increasing indices) rather
    than loading a split of 116,000 glyphs for a few dozen."""
    import h5py

    wanted = np.unique(np.concatenate([np.asarray(i, dtype=np.int64) for i in index_lists] or [np.zeros(0, int)]))
    with h5py.File(h5_path, "r") as f:
        images = f[f"{split}/images"][wanted] if len(wanted) else np.zeros((0, 28, 28), dtype=np.uint8)
    return [images[np.searchsorted(wanted, np.asarray(i, dtype=np.int64))] for i in index_lists]
