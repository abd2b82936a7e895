"""Test-set evaluation, the sample-lines PNG and prediction from image files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from text_recognizer.checkpoint import CheckpointError, save_checkpoint
from text_recognizer.evaluation import (
    LineSample,
    evaluate_char,
    evaluate_lines,
    per_class_summary,
    save_line_predictions,
)
from text_recognizer.metadata import CHAR_TO_LINE_INDEX, EMNIST_CLASSES, LINE_TOKENS, PAD_INDEX
from text_recognizer.models.line_cnn import LineCNN
from text_recognizer.models.resnet import ResNetClassifier
from text_recognizer.predict import PredictError, load_image, predict_file, preprocess_char, preprocess_line

CHAR_KWARGS = {"num_blocks": 1, "width": 4}
LINE_KWARGS = {"width": 4, "fc_dim": 8}


def forced_char_checkpoint(path, cls: int):
    """A char checkpoint whose model answers class `cls` for every input (zero head weights, one-hot bias)."""
    model = ResNetClassifier(**CHAR_KWARGS)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[cls] = 1.0
    save_checkpoint(path, kind="char", model_kwargs=CHAR_KWARGS, state_dict=model.state_dict(), mapping=EMNIST_CLASSES)
    return path


def forced_line_checkpoint(path, token: int):
    """A line checkpoint whose model scores `token` highest at every step."""
    model = LineCNN(**LINE_KWARGS)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[token] = 1.0
    save_checkpoint(path, kind="line", model_kwargs=LINE_KWARGS, state_dict=model.state_dict(), mapping=LINE_TOKENS)
    return path


@pytest.fixture
def emnist_h5(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array([3, 3, 3, 5, 7, 3, 5], dtype=np.uint8)  # classes 3, 5, 7 present, the others absent
    path = tmp_path / "emnist.h5"
    with h5py.File(path, "w") as f:
        f.attrs["mapping"] = json.dumps(list(EMNIST_CLASSES))
        f["test/images"] = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
        f["test/labels"] = labels
        f["test/source_index"] = np.arange(len(labels), dtype=np.int64)
    return path


LINE_TEXTS = ["ab", "a", "ba c"]


@pytest.fixture
def lines_h5(tmp_path):
    max_length = 4
    labels = np.full((len(LINE_TEXTS), max_length), PAD_INDEX, dtype=np.uint8)
    for i, text in enumerate(LINE_TEXTS):
        labels[i, : len(text)] = [CHAR_TO_LINE_INDEX[c] for c in text]
    path = tmp_path / "emnist_lines.h5"
    with h5py.File(path, "w") as f:
        f.attrs["mapping"] = json.dumps(list(LINE_TOKENS))
        f.attrs["max_length"] = max_length
        f["test/images"] = np.random.default_rng(1).integers(0, 256, size=(3, 28, 28 * max_length), dtype=np.uint8)
        f["test/labels"] = labels
        f["test/lengths"] = np.array([len(t) for t in LINE_TEXTS], dtype=np.int32)
        f["test/glyph_index"] = np.full((3, max_length), -1, dtype=np.int64)
    return path


# --- evaluation ------------------------------------------------------------------------------


def test_evaluate_char_forced_predictions(tmp_path, emnist_h5):
    ckpt = forced_char_checkpoint(tmp_path / "cnn.pt", cls=3)
    result = evaluate_char(ckpt, emnist_h5, batch_size=3, device="cpu")  # 3 batches, the last one partial
    assert result.y_pred.tolist() == [3] * 7
    assert result.y_true.tolist() == [3, 3, 3, 5, 7, 3, 5]
    assert result.accuracy == pytest.approx(4 / 7)
    assert result.per_class_accuracy.shape == (62,)
    assert result.per_class_accuracy[3] == 1.0
    assert result.per_class_accuracy[5] == 0.0 and result.per_class_accuracy[7] == 0.0
    assert np.isnan(result.per_class_accuracy[0])  # no test sample of class 0


def test_evaluate_char_real_model_consistent(tmp_path, emnist_h5):
    torch.manual_seed(0)
    model = ResNetClassifier(**CHAR_KWARGS).eval()
    ckpt = tmp_path / "cnn.pt"
    save_checkpoint(ckpt, kind="char", model_kwargs=CHAR_KWARGS, state_dict=model.state_dict(), mapping=EMNIST_CLASSES)
    result = evaluate_char(ckpt, emnist_h5, batch_size=2, device="cpu")
    with h5py.File(emnist_h5) as f:
        x = torch.from_numpy(f["test/images"][()]).float().div(255).unsqueeze(1)
    assert result.y_pred.tolist() == model(x).argmax(1).tolist()
    assert result.accuracy == pytest.approx(float(np.mean(result.y_pred == result.y_true)))


def test_evaluate_char_rejects_line_checkpoint_and_foreign_mapping(tmp_path, emnist_h5):
    line = forced_line_checkpoint(tmp_path / "line_cnn.pt", token=CHAR_TO_LINE_INDEX["a"])
    with pytest.raises(CheckpointError, match=r"line_cnn\.pt is a line checkpoint; evaluate_char needs a char"):
        evaluate_char(line, emnist_h5, device="cpu")
    with h5py.File(emnist_h5, "a") as f:
        f.attrs["mapping"] = json.dumps(list(reversed(EMNIST_CLASSES)))
    with pytest.raises(ValueError, match="mapping differs"):
        evaluate_char(forced_char_checkpoint(tmp_path / "cnn.pt", cls=0), emnist_h5, device="cpu")


def test_evaluate_lines_forced_predictions(tmp_path, lines_h5):
    ckpt = forced_line_checkpoint(tmp_path / "line_cnn.pt", token=CHAR_TO_LINE_INDEX["a"])
    result = evaluate_lines(ckpt, lines_h5, batch_size=2, device="cpu", num_samples=2)
    # every line reads "a" (all steps 'a', repeats collapsed); edits: ab->1, a->0, "ba c"->3 over 2+1+4 chars
    assert result.cer == pytest.approx(4 / 7)
    assert result.line_accuracy == pytest.approx(1 / 3)
    assert result.num_lines == 3
    assert [(s.true_text, s.pred_text) for s in result.samples] == [("ab", "a"), ("a", "a")]
    assert result.samples[0].image.shape == (28, 112) and result.samples[0].image.dtype == np.uint8


def test_evaluate_lines_all_blank_reads_nothing(tmp_path, lines_h5):
    ckpt = forced_line_checkpoint(tmp_path / "line_cnn.pt", token=0)
    result = evaluate_lines(ckpt, lines_h5, device="cpu")
    assert result.cer == pytest.approx(1.0)  # every reference character deleted
    assert result.line_accuracy == 0.0
    assert len(result.samples) == 3  # num_samples (12) capped at the number of lines


def test_save_line_predictions_writes_png(tmp_path):
    samples = [
        LineSample(image=np.zeros((28, 112), np.uint8), true_text="ab", pred_text="ab"),
        LineSample(image=np.full((28, 112), 255, np.uint8), true_text="cd", pred_text="c"),
    ]
    out = tmp_path / "plots" / "line_predictions.png"
    save_line_predictions(samples, out)
    with Image.open(out) as img:
        assert img.format == "PNG"
        assert img.size[0] > 200 and img.size[1] > 50
    assert sorted(p.name for p in out.parent.iterdir()) == ["line_predictions.png"]
    save_line_predictions([], tmp_path / "empty.png")
    assert (tmp_path / "empty.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_per_class_summary():
    acc = np.array([0.9, np.nan, 0.5, 1.0, 0.7, 0.2, 0.8])
    summary = per_class_summary(acc, list("abcdefg"), worst=3)
    assert summary["min"] == 0.2 and summary["max"] == 1.0
    assert summary["median"] == pytest.approx(0.75)  # of the six classes with samples
    assert summary["worst"] == [
        {"class": "f", "accuracy": 0.2},
        {"class": "c", "accuracy": 0.5},
        {"class": "e", "accuracy": 0.7},
    ]
    with pytest.raises(ValueError, match="3 accuracies for 2 classes"):
        per_class_summary(np.zeros(3), ["a", "b"])


# --- prediction --------------------------------------------------------------------------------


def draw_glyph(path, *, dark_on_light: bool = True, size=(60, 100)):
    """An 'L' of thick strokes, off-centre, on a 60x100 (w x h) canvas."""
    paper, ink = (240, 20) if dark_on_light else (10, 230)
    img = Image.new("L", size, paper)
    draw = ImageDraw.Draw(img)
    draw.rectangle([10, 20, 18, 80], fill=ink)  # vertical stroke
    draw.rectangle([10, 72, 40, 80], fill=ink)  # foot
    img.save(path)
    return path


def test_preprocess_char_inverts_dark_on_light_and_centres(tmp_path):
    glyph = preprocess_char(load_image(draw_glyph(tmp_path / "l.png")))
    assert glyph.shape == (28, 28) and glyph.dtype == np.uint8
    assert glyph[0].max() == glyph[-1].max() == glyph[:, 0].max() == glyph[:, -1].max() == 0  # black border
    assert glyph.max() == 255  # white ink
    rows = np.flatnonzero(glyph.max(axis=1) > 64)
    cols = np.flatnonzero(glyph.max(axis=0) > 64)
    assert rows[-1] - rows[0] + 1 in (19, 20, 21)  # the taller side fitted to 20 pixels
    assert abs((rows[0] + rows[-1]) / 2 - 13.5) <= 1 and abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1
    assert glyph[rows[0] + 2, cols[0] + 1] > 128  # the vertical stroke is on the left, as drawn
    light = preprocess_char(load_image(draw_glyph(tmp_path / "l2.png", dark_on_light=False)))
    assert np.abs(light.astype(int) - glyph.astype(int)).max() <= 16  # polarity does not matter


def test_preprocess_line_height_and_min_width(tmp_path):
    img = Image.new("L", (400, 50), 255)
    ImageDraw.Draw(img).rectangle([20, 10, 380, 40], fill=0)
    line = preprocess_line(np.asarray(img), window_width=28)
    assert line.shape[0] == 28 and line.shape[1] > 28 * 5
    assert line[0].max() == 0 and line[:, 0].max() == 0 and line[14, line.shape[1] // 2] == 255
    dot = Image.new("L", (30, 30), 255)
    ImageDraw.Draw(dot).rectangle([12, 5, 15, 25], fill=0)  # a tall thin stroke: narrower than a window
    assert preprocess_line(np.asarray(dot), window_width=36).shape == (28, 36)


def test_predict_file_char_and_line(tmp_path):
    image = draw_glyph(tmp_path / "glyph.png")
    q = EMNIST_CLASSES.index("Q")
    assert predict_file(image, forced_char_checkpoint(tmp_path / "cnn.pt", cls=q), device="cpu") == "Q"
    line_ckpt = forced_line_checkpoint(tmp_path / "line_cnn.pt", token=CHAR_TO_LINE_INDEX["z"])
    assert predict_file(image, line_ckpt, device="cpu") == "z"
    blank_ckpt = forced_line_checkpoint(tmp_path / "blank.pt", token=0)
    assert predict_file(image, blank_ckpt, device="cpu", expected_kind="line") == ""


def test_predict_file_errors(tmp_path):
    ckpt = forced_char_checkpoint(tmp_path / "cnn.pt", cls=0)
    with pytest.raises(PredictError, match=r"missing\.png not found"):
        predict_file(tmp_path / "missing.png", ckpt)
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    with pytest.raises(PredictError, match=r"notes\.png is not a readable image"):
        predict_file(not_image, ckpt)
    blank = tmp_path / "blank.png"
    Image.new("L", (40, 40), 255).save(blank)
    with pytest.raises(PredictError, match=r"blank\.png: the image is blank"):
        predict_file(blank, ckpt)
    image = draw_glyph(tmp_path / "glyph.png")
    with pytest.raises(PredictError, match=r"cnn\.pt is a char checkpoint; predict needs a line checkpoint"):
        predict_file(image, ckpt, expected_kind="line")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(PredictError, match=r"garbage\.pt is not a readable torch checkpoint"):
        predict_file(image, garbage)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_evaluation_and_predict_default_to_cuda_and_match_cpu(tmp_path, emnist_h5, lines_h5):
    torch.manual_seed(0)
    model = ResNetClassifier(**CHAR_KWARGS).eval()
    ckpt = tmp_path / "cnn.pt"
    save_checkpoint(ckpt, kind="char", model_kwargs=CHAR_KWARGS, state_dict=model.state_dict(), mapping=EMNIST_CLASSES)
    on_gpu, on_cpu = evaluate_char(ckpt, emnist_h5), evaluate_char(ckpt, emnist_h5, device="cpu")
    assert on_gpu.y_pred.tolist() == on_cpu.y_pred.tolist()
    line_ckpt = forced_line_checkpoint(tmp_path / "line_cnn.pt", token=CHAR_TO_LINE_INDEX["a"])
    assert evaluate_lines(line_ckpt, lines_h5).cer == pytest.approx(4 / 7)
    assert predict_file(draw_glyph(tmp_path / "g.png"), line_ckpt) == "a"
