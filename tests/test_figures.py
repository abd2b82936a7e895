"""The figures evaluate writes as PNGs (text_recognizer/reading/figures.py), on fabricated results."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image

from text_recognizer.lit_models.callbacks import JsonMetrics
from text_recognizer.metadata import EMNIST_CLASSES, NUM_EMNIST_CLASSES
from text_recognizer.reading import figures
from text_recognizer.reading.figures import ConfusedPair


def fabricated_confusion() -> np.ndarray:
    """3 classes: 0 read as 1 six times (of 10), 2 read as 1 six times (of 30), 1 read as 0 twice (of 12)."""
    return np.array([[4, 6, 0], [2, 10, 0], [0, 6, 24]])


def labels_of(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, y_pred) with exactly `counts`, in a shuffled order."""
    pairs = [(t, p) for t in range(len(counts)) for p in range(len(counts)) for _ in range(counts[t, p])]
    order = np.random.default_rng(0).permutation(len(pairs))
    y = np.array(pairs)[order]
    return y[:, 0], y[:, 1]


def test_the_counts_are_the_confusion_and_each_true_class_row_sums_to_one():
    counts = fabricated_confusion()
    y_true, y_pred = labels_of(counts)
    assert np.array_equal(figures.confusion_counts(y_true, y_pred, 3), counts)
    rates = figures.normalize_rows(np.pad(counts, ((0, 1), (0, 1))))  # a 4th class without test glyphs
    assert np.allclose(rates[:3].sum(axis=1), 1.0)
    assert np.array_equal(rates[3], np.zeros(4))  # zeros, not NaN: the heatmap draws it blank
    assert rates[0, 1] == pytest.approx(0.6) and rates[2, 1] == pytest.approx(0.2)


def test_most_confused_pairs_come_by_count_then_rate_and_skip_the_diagonal():
    pairs = figures.most_confused_pairs(fabricated_confusion(), top=12)
    assert pairs == [ConfusedPair(0, 1, 6, 0.6), ConfusedPair(2, 1, 6, 0.2), ConfusedPair(1, 0, 2, 2 / 12)]
    assert [p.count for p in pairs] == sorted((p.count for p in pairs), reverse=True)
    assert figures.most_confused_pairs(fabricated_confusion(), top=1) == pairs[:1]
    assert figures.most_confused_pairs(np.diag([5, 3, 1])) == []  # no confusions, no pairs


def test_pair_examples_are_the_first_glyphs_of_each_pair_in_test_order(tmp_path):
    y_true, y_pred = labels_of(fabricated_confusion())
    pairs = figures.most_confused_pairs(fabricated_confusion())
    examples = figures.pair_examples(y_true, y_pred, pairs, per_pair=4)
    assert [len(e) for e in examples] == [4, 4, 2]
    for pair, idx in zip(pairs, examples, strict=True):
        assert np.all(np.diff(idx) > 0) and np.all(y_true[idx] == pair.true) and np.all(y_pred[idx] == pair.predicted)
    images = np.arange(len(y_true), dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), dtype=np.uint8)
    with h5py.File(tmp_path / "e.h5", "w") as f:
        f["test/images"] = images
    glyphs = figures.read_glyphs(tmp_path / "e.h5", examples)
    assert [g[:, 0, 0].tolist() for g in glyphs] == [e.tolist() for e in examples]  # each glyph is its index's


def test_vegas_ascending_sort_is_the_class_order():
    """dvc.yaml's confusion template sorts both axes "ascending" (by code point): that is EMNIST's order, so the
    Vega heatmap and the PNG list the classes alike, 0-9, A-Z, a-z, whatever order confusion.json's rows have."""
    assert list(EMNIST_CLASSES) == sorted(EMNIST_CLASSES)


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_the_confusion_png_labels_62_classes_legibly(tmp_path):
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, NUM_EMNIST_CLASSES, 3000)
    y_pred = np.where(rng.random(3000) < 0.8, y_true, rng.integers(0, NUM_EMNIST_CLASSES, 3000))
    counts = figures.confusion_counts(y_true, y_pred, NUM_EMNIST_CLASSES)
    figures.save_confusion_png(counts, EMNIST_CLASSES, tmp_path / "confusion.png")
    width, height = png_size(tmp_path / "confusion.png")
    assert width >= 1200 and height >= 1100  # ~18 px per class: room for a 7-pt label on each row and column


def test_the_confused_pairs_png_draws_pairs_or_says_there_are_none(tmp_path):
    pairs = figures.most_confused_pairs(fabricated_confusion())
    glyphs = [np.full((len(e), 28, 28), 200, dtype=np.uint8) for e in ([0, 1, 2, 3], [4, 5, 6, 7], [8, 9])]
    figures.save_confused_pairs_png(pairs, glyphs, ["a", "b", "c"], tmp_path / "pairs.png")
    width, height = png_size(tmp_path / "pairs.png")
    assert width >= 900 and height >= 150
    figures.save_confused_pairs_png([], [], ["a", "b", "c"], tmp_path / "none.png")
    assert png_size(tmp_path / "none.png")[0] >= 300


def test_training_curves_are_read_from_dvclives_files_and_drawn(tmp_path):
    """The files the train stages write (JsonMetrics writes dvclive's layout byte for byte, tests/test_publish.py)."""
    log = JsonMetrics(tmp_path / "train_line_cnn")
    for epoch in range(3):
        step = 10 * epoch + 9
        log.log(step, {"train/loss": 6.0 / 10**epoch, "val/cer": 0.9 - 0.3 * epoch, "val/loss": 5.0 / 10**epoch})
    curves = figures.read_curves(tmp_path / "train_line_cnn")
    assert sorted(curves) == ["train/loss", "val/cer", "val/loss"]
    steps, values = curves["val/cer"]
    assert steps.tolist() == [9, 19, 29] and values == pytest.approx([0.9, 0.6, 0.3])
    figures.save_curves_png(curves, tmp_path / "curves.png", title="line model")
    width, height = png_size(tmp_path / "curves.png")
    assert width >= 2 * 380 and height >= 300  # two panels: loss (train, val) and cer
    figures.save_curves_png({}, tmp_path / "empty.png", title="nothing logged")
    assert png_size(tmp_path / "empty.png")[0] >= 300
