"""One reading path: `text-recognizer predict` on a model's own test lines, written as PNGs (black on white) and
read through the CLI, reads what the evaluate stage reads from the same lines.

With `--layout line` a 28-px-high line goes to the model as it is, so the text must equal evaluate's greedy
text; the glyph layout cuts and refits every glyph (what a photo needs) and, for a line already 28 px high, also
reads it as it is and keeps the more confident reading, so there the bound is a CER within twice evaluate's
(measured on the offline fixture models: 0.054 against evaluate's 0.041; 0.122 before the choice).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest
from PIL import Image

from text_recognizer.cli import main
from text_recognizer.lit_models.ctc import character_error_rate
from text_recognizer.reading.evaluation import evaluate_lines


@pytest.fixture(scope="module")
def test_lines(offline_models: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], list]:
    """The offline line model's first test lines as black-on-white PNGs, with evaluate's reading of each."""
    lines_h5 = offline_models / "emnist_lines_test.h5"
    evaluation = evaluate_lines(offline_models / "line_cnn.pt", lines_h5, num_samples=10**6, device="cpu")
    folder = tmp_path_factory.mktemp("test_lines")
    with h5py.File(lines_h5, "r") as f:
        images = f["test"]["images"][()]
    pngs = []
    for i, image in enumerate(images):
        Image.fromarray(255 - image).save(folder / f"line{i:03d}.png")  # ink dark on white paper, as a scan
        pngs.append(folder / f"line{i:03d}.png")
    return offline_models / "line_cnn.pt", pngs, evaluation.samples


def read_with_cli(model: Path, pngs: list[Path], layout: str, capsys) -> list[str]:
    texts = []
    for png in pngs:
        code = main(["predict", str(png), "--model", str(model), "--layout", layout])
        captured = capsys.readouterr()
        texts.append(captured.out.rstrip("\n") if code == 0 else "")
    return texts


def test_predict_line_layout_reads_what_evaluate_reads(test_lines, capsys):
    model, pngs, samples = test_lines
    read = read_with_cli(model, pngs, "line", capsys)
    same = sum(r == s.pred_text.strip() for r, s in zip(read, samples, strict=True))
    assert same >= 0.99 * len(pngs), [(r, s.pred_text) for r, s in zip(read, samples, strict=True) if r != s.pred_text]


def test_predict_glyph_layout_is_within_twice_evaluates_error(test_lines, capsys):
    model, pngs, samples = test_lines
    truth = [s.true_text for s in samples]
    evaluate_cer = character_error_rate([s.pred_text for s in samples], truth)
    glyph_cer = character_error_rate(read_with_cli(model, pngs, "glyphs", capsys), truth)
    print(f"test-line CER: evaluate {evaluate_cer:.4f}, predict glyph layout {glyph_cer:.4f}")
    assert glyph_cer <= 2 * evaluate_cer, (glyph_cer, evaluate_cer)
