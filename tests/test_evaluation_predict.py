"""Test-set evaluation, the sample-lines PNG and prediction from image files."""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import math
import struct
import sys
import warnings
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from text_recognizer import cli
from text_recognizer.cli import main
from text_recognizer.metadata import CHAR_TO_LINE_INDEX, EMNIST_CLASSES, GLYPH_SIZE, LINE_TOKENS, PAD_INDEX
from text_recognizer.models.checkpoint import CheckpointError, save_checkpoint
from text_recognizer.models.line_cnn import LineCNN
from text_recognizer.models.resnet import ResNetClassifier
from text_recognizer.reading import normalize
from text_recognizer.reading.evaluation import (
    LineSample,
    evaluate_char,
    evaluate_lines,
    per_class_summary,
    save_line_predictions,
    to_model_input,
)
from text_recognizer.reading.predict import (
    DEFAULT_MAX_PIXELS,
    PredictError,
    Reading,
    load_image,
    load_model,
    predict_file,
    preprocess_char,
    preprocess_line,
    read_array,
)
from text_recognizer.reading.show_steps import BACKGROUND, LABEL_COLOUR, LABEL_HEIGHT, MODEL_SCALE

try:
    from tests.font_lines import FONT_NAMES, FONT_PACKAGE, PHRASES, STYLES, Style, find_font, render_line
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from font_lines import FONT_NAMES, FONT_PACKAGE, PHRASES, STYLES, Style, find_font, render_line

try:
    from tests.tiny_nets import TINY_CHAR_NET, TINY_LINE_NET
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from tiny_nets import TINY_CHAR_NET, TINY_LINE_NET

CHAR_KWARGS = TINY_CHAR_NET
LINE_KWARGS = TINY_LINE_NET


def forced_char_checkpoint(path, cls: int):
    """A char checkpoint whose model answers class `cls` for every input (zero head weights, one-hot bias)."""
    model = ResNetClassifier(**CHAR_KWARGS)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[cls] = 1.0
    save_checkpoint(path, kind="char", model_kwargs=CHAR_KWARGS, state_dict=model.state_dict(), mapping=EMNIST_CLASSES)
    return path


def forced_line_checkpoint(path, token: int, extra: dict | None = None):
    """A line checkpoint whose model scores `token` highest at every step (`extra`: what training recorded)."""
    model = LineCNN(**LINE_KWARGS)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[token] = 1.0
    save_checkpoint(
        path, kind="line", model_kwargs=LINE_KWARGS, state_dict=model.state_dict(), mapping=LINE_TOKENS, extra=extra
    )
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


# --- the reading API ---------------------------------------------------------------------------


def test_read_array_char_gives_top_five_classes(tmp_path):
    q = EMNIST_CLASSES.index("Q")
    loaded = load_model(forced_char_checkpoint(tmp_path / "cnn.pt", cls=q), device="cpu")
    gray = load_image(draw_glyph(tmp_path / "glyph.png"))
    reading = read_array(gray, loaded)
    assert isinstance(reading, Reading) and reading.kind == "char" and reading.text == "Q"
    assert reading.model_input.shape == (28, 28) and reading.model_input.dtype == np.uint8
    assert np.array_equal(reading.model_input, preprocess_char(gray))
    labels, probs = zip(*reading.top_classes, strict=True)
    assert len(labels) == 5 and labels[0] == "Q" and len(set(labels)) == 5
    # softmax of a one-hot bias of 1 over 62 classes: e / (e + 61) for Q, 1 / (e + 61) for the rest
    assert probs[0] == pytest.approx(np.e / (np.e + 61), rel=1e-4)
    assert probs[1:] == pytest.approx([1 / (np.e + 61)] * 4, rel=1e-4)


def test_read_array_line_layouts(tmp_path):
    loaded = load_model(forced_line_checkpoint(tmp_path / "line.pt", token=CHAR_TO_LINE_INDEX["z"]), device="cpu")
    img = Image.new("L", (400, 60), 255)
    draw = ImageDraw.Draw(img)
    for x in (20, 60, 100, 200, 240):  # five bars, a wide gap (a space) after the third
        draw.rectangle([x, 10, x + 8, 50], fill=0)
    gray = np.asarray(img)
    glyphs = read_array(gray, loaded)
    assert glyphs.kind == "line" and glyphs.text == "z" and glyphs.top_classes == []
    cells = glyphs.model_input
    assert cells.shape[0] == 28 and cells.dtype == np.uint8
    ink_cols = np.flatnonzero(cells.max(axis=0) > 128)
    starts = ink_cols[np.flatnonzero(np.diff(ink_cols, prepend=-10) > 1)]
    pitch = normalize.PITCH
    assert np.diff(starts).tolist() == [pitch, pitch, 2 * pitch, pitch]  # one cell per bar, an empty one for the space
    line = read_array(gray, loaded, layout="line")
    assert np.array_equal(line.model_input, preprocess_line(gray, window_width=28))
    with pytest.raises(PredictError, match="layout must be one of glyphs, line"):
        read_array(gray, loaded, layout="words")


def test_glyphs_are_thickened_to_the_stroke_width_the_checkpoint_records(tmp_path):
    """predict brings thin strokes to the width training measured (extra["lines"]["stroke_width"]), and a checkpoint
    that records none is read with normalize.STROKE_WIDTH."""
    img = Image.new("L", (300, 120), 255)
    draw = ImageDraw.Draw(img)
    for x in (20, 110, 200):  # three thin L shapes
        draw.line([(x, 10), (x, 100), (x + 50, 100)], fill=0, width=1)
    gray = np.asarray(img)

    def model_input(name: str, drawn: dict | None) -> np.ndarray:
        extra = None if drawn is None else {"lines": drawn}
        path = forced_line_checkpoint(tmp_path / f"{name}.pt", token=CHAR_TO_LINE_INDEX["z"], extra=extra)
        return read_array(gray, load_model(path, device="cpu")).model_input

    thin, thick = model_input("thin", {"stroke_width": 1.5}), model_input("thick", {"stroke_width": 3.5})
    assert thick.shape == thin.shape and float(thick.sum()) > 1.1 * float(thin.sum())
    default = model_input("default", {"stroke_width": normalize.STROKE_WIDTH})
    assert np.array_equal(model_input("unrecorded", None), default)


def joined_blocks_image() -> np.ndarray:
    """Dark on white: a block, then three blocks joined at mid-height by thin bridges (touching letters)."""
    img = Image.new("L", (260, 100), 255)
    draw = ImageDraw.Draw(img)
    draw.rectangle([20, 20, 43, 79], fill=0)
    for x in (80, 112, 144):
        draw.rectangle([x, 20, x + 23, 79], fill=0)
    for x in (104, 136):
        draw.rectangle([x, 48, x + 7, 51], fill=0)
    return np.asarray(img)


def blocks_reader(inks: list[np.ndarray]) -> np.ndarray:
    """Sure of a piece holding one full-height block, unsure of anything else."""
    scores = []
    for ink in inks:
        tall = (ink > 0.5).sum(axis=0) > ink.shape[0] // 2
        runs = int(tall[0]) + int(np.count_nonzero(tall[1:] & ~tall[:-1]))
        scores.append(0.0 if runs == 1 else -3.0)
    return np.array(scores)


def test_touching_letters_are_cut_by_the_readers_glyph_model_else_by_the_line_model(tmp_path, monkeypatch):
    """The reader evaluate writes bundles the char model, which scores the cut pieces; a line checkpoint without
    one scores them itself. Either way the three joined blocks become three cells."""
    from text_recognizer.models.checkpoint import save_with_extra
    from text_recognizer.reading import predict

    line = forced_line_checkpoint(tmp_path / "line.pt", token=CHAR_TO_LINE_INDEX["a"])
    save_with_extra(line, tmp_path / "reader.pt", glyph_model=forced_char_checkpoint(tmp_path / "cnn.pt", cls=10))
    calls: list[str] = []

    def scored_by(name: str):
        return lambda *args: (calls.append(name), blocks_reader(args[-1]))[1]

    monkeypatch.setattr(predict, "_glyph_model_scores", scored_by("glyph model"))
    monkeypatch.setattr(predict, "_line_model_scores", scored_by("line model"))
    gray = joined_blocks_image()
    by_reader = read_array(gray, load_model(tmp_path / "reader.pt", device="cpu")).model_input
    by_line = read_array(gray, load_model(line, device="cpu")).model_input
    assert calls == ["glyph model", "line model"]
    four_cells = normalize.lay_out([np.zeros((GLYPH_SIZE, GLYPH_SIZE), np.uint8)] * 4, [False] * 3)
    assert by_reader.shape == by_line.shape == four_cells.shape
    monkeypatch.undo()  # the forced CNN is equally sure of every piece: as few pieces as the width allows (two)
    fewest = read_array(gray, load_model(tmp_path / "reader.pt", device="cpu")).model_input
    assert fewest.shape == normalize.lay_out([four_cells[:, :GLYPH_SIZE]] * 3, [False] * 2).shape


def test_the_line_model_scores_a_piece_only_when_it_reads_one_character(tmp_path):
    from text_recognizer.reading import predict

    inks = [np.ones((40, w), np.float32) for w in (10, 20, 30)]
    fit = normalize.fit_glyph
    one = load_model(forced_line_checkpoint(tmp_path / "a.pt", token=CHAR_TO_LINE_INDEX["a"]), device="cpu")
    none = load_model(forced_line_checkpoint(tmp_path / "blank.pt", token=0), device="cpu")
    sure = predict._line_model_scores(one, fit, normalize.PITCH, inks)
    assert sure.shape == (3,) and np.all(sure > predict.NOT_ONE_CHARACTER) and np.all(sure <= 0)
    assert np.all(predict._line_model_scores(none, fit, normalize.PITCH, inks) == predict.NOT_ONE_CHARACTER)


def test_read_array_names_the_wrong_kind_of_model(tmp_path):
    line = load_model(forced_line_checkpoint(tmp_path / "line.pt", token=CHAR_TO_LINE_INDEX["a"]), device="cpu")
    char = load_model(forced_char_checkpoint(tmp_path / "cnn.pt", cls=0), device="cpu")
    glyph = load_image(draw_glyph(tmp_path / "glyph.png"))
    with pytest.raises(PredictError, match=r"looks like a single character.*--model models/cnn\.pt"):
        read_array(glyph, line)
    assert read_array(glyph, line, check_kind=False).text == "a"
    assert read_array(glyph, char).text == "0"
    img = Image.new("L", (300, 60), 255)
    for x in (20, 80, 140, 200):
        ImageDraw.Draw(img).ellipse([x, 15, x + 30, 45], outline=0, width=5)
    row = np.asarray(img)
    with pytest.raises(PredictError, match=r"looks like a line of about 4 characters.*--model models/line_cnn\.pt"):
        read_array(row, char)
    assert read_array(row, line).text == "a"
    joined = Image.new("L", (300, 60), 255)
    ImageDraw.Draw(joined).line([(20, 40), (80, 15), (140, 45), (200, 15), (260, 40)], fill=0, width=6)
    assert read_array(np.asarray(joined), line).text == "a"  # one wide stroke: joined-up writing, not one character


def test_predict_file_reads_without_the_not_writable_warning(tmp_path):
    line_ckpt = forced_line_checkpoint(tmp_path / "line_cnn.pt", token=CHAR_TO_LINE_INDEX["z"])
    image = draw_glyph(tmp_path / "glyph.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert predict_file(image, line_ckpt, device="cpu") == "z"
        frozen = np.zeros((2, 28, 28), dtype=np.uint8)
        frozen.flags.writeable = False
        x = to_model_input(frozen, torch.device("cpu"))
    assert x.shape == (2, 1, 28, 28) and x.dtype == torch.float32
    assert not frozen.flags.writeable  # the caller's array is left as it was


# --- bad input ---------------------------------------------------------------------------------


def png_header(path, width: int, height: int):
    """A PNG that declares width x height but holds almost no pixel data: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize("side", [15000, 10000])
def test_decompression_bombs_are_refused_from_the_header(tmp_path, side):
    bomb = png_header(tmp_path / "bomb.png", side, side)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(PredictError, match=r"bomb\.png is .* pixels, above the limit of 40,000,000") as info:
            load_image(bomb)
    assert caught == []  # neither Pillow's DecompressionBombWarning nor anything else
    assert "\n" not in str(info.value) and "--max-pixels" in str(info.value)


def test_max_pixels_raises_and_lowers_the_limit(tmp_path):
    small = tmp_path / "small.png"
    Image.new("L", (100, 80), 200).save(small)
    with pytest.raises(PredictError, match=r"100x80 = 8,000 pixels, above the limit of 7,999"):
        load_image(small, max_pixels=7999)
    assert load_image(small, max_pixels=8000).shape == (80, 100)
    bomb = png_header(tmp_path / "bomb.png", 15000, 15000)  # above Pillow's own guard too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PredictError, match=r"bomb\.png is not a readable image"):  # past the limit: decoded
            load_image(bomb, max_pixels=300_000_000)
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's guard is back for everyone else


def test_sixteen_bit_and_palette_images_are_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 1000, 32768, 65535]], dtype=np.uint16)
    deep = tmp_path / "deep.png"
    Image.fromarray(values).save(deep)  # mode I;16
    with Image.open(deep) as img:
        assert img.mode.startswith("I")
    assert load_image(deep).tolist() == [[0, 1, 4, 128, 255]]
    wide = tmp_path / "wide.tif"
    Image.fromarray(values.astype(np.int32), mode="I").save(wide)
    assert load_image(wide).tolist() == [[0, 1, 4, 128, 255]]
    palette = Image.new("P", (3, 1))
    palette.putpalette([0, 0, 0, 255, 255, 255, 255, 0, 0] + [0] * (768 - 9))
    palette.putdata([0, 1, 2])
    palette.save(tmp_path / "palette.png")
    assert load_image(tmp_path / "palette.png").tolist() == [[0, 255, 76]]  # red through its luma


def test_a_faint_sixteen_bit_line_keeps_its_ink(tmp_path):
    img = Image.new("L", (200, 60), 250)
    ImageDraw.Draw(img).rectangle([20, 10, 180, 50], fill=100)
    deep = (np.asarray(img).astype(np.uint16) * 257).astype(np.uint16)  # the same picture in 16 bits
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert np.abs(load_image(tmp_path / "deep.png").astype(int) - np.asarray(img)).max() <= 1


# --- the command line --------------------------------------------------------------------------


def model_panel(figure: Image.Image, width: int) -> np.ndarray:
    """The last panel of a --show-input picture (what the model saw, drawn MODEL_SCALE times), `width` columns of
    it at its own size; what lies right of it is the figure's background."""
    a = np.asarray(figure.convert("RGB"))
    below = a[np.flatnonzero((a[:, 0] == LABEL_COLOUR).all(axis=1))[-1] + 1 :]
    assert below.shape[0] == GLYPH_SIZE * MODEL_SCALE and (below[:, width * MODEL_SCALE :] == BACKGROUND).all()
    assert (below[..., 0] == below[..., 2]).all()  # gray
    return below[::MODEL_SCALE, : width * MODEL_SCALE : MODEL_SCALE, 0]


def test_cli_predict_show_input_layout_and_bad_input(tmp_path, capsys):
    line_ckpt = forced_line_checkpoint(tmp_path / "line_cnn.pt", token=CHAR_TO_LINE_INDEX["k"])
    img = Image.new("L", (300, 60), 255)
    for x in (20, 80, 140, 200):
        ImageDraw.Draw(img).rectangle([x, 10, x + 10, 50], fill=0)
    img.save(tmp_path / "line.png")
    out = tmp_path / "seen" / "input.png"
    assert main(["predict", str(tmp_path / "line.png"), "--model", str(line_ckpt), "--show-input", str(out)]) == 0
    assert capsys.readouterr().out == "k\n"
    loaded = load_model(line_ckpt, device="cpu")
    seen_by_model = read_array(np.asarray(img), loaded).model_input
    with Image.open(out) as seen:
        assert np.array_equal(model_panel(seen, seen_by_model.shape[1]), seen_by_model)
    assert sorted(p.name for p in out.parent.iterdir()) == ["input.png"]  # written atomically, no temporary left
    assert main(["predict", str(tmp_path / "line.png"), "--model", str(line_ckpt), "--layout", "line",
                 "--show-input", str(out), "--overwrite"]) == 0  # fmt: skip
    seen_by_model = preprocess_line(np.asarray(img))
    with Image.open(out) as seen:
        assert np.array_equal(model_panel(seen, seen_by_model.shape[1]), seen_by_model)
    capsys.readouterr()

    draw_glyph(tmp_path / "glyph.png")
    png_header(tmp_path / "bomb.png", 15000, 15000)
    blank = forced_line_checkpoint(tmp_path / "blank.pt", token=0)
    cases = [
        (["glyph.png"], "looks like a single character; use the character model (--model models/cnn.pt)"),
        (["bomb.png"], "above the limit of 40,000,000"),
        (["line.png", "--max-pixels", "100"], "above the limit of 100 "),
        (["line.png", "--model", str(blank)], "the model read no characters"),
    ]
    for args, message in cases:
        argv = ["predict", str(tmp_path / args[0]), "--model", str(line_ckpt), *args[1:]]
        assert main(argv) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.startswith("error: ") and message in captured.err
        assert captured.err.count("\n") == 1, captured.err


def test_show_input_draws_each_step_from_the_photo_to_the_model(tmp_path, capsys):
    """Four panels under four bands: the image, the ink mask (both at the image's size), the line stood upright
    (as high, wider), what the model saw (28 px drawn MODEL_SCALE times, read back exactly)."""
    line_ckpt = forced_line_checkpoint(tmp_path / "line_cnn.pt", token=CHAR_TO_LINE_INDEX["k"])
    light = np.linspace(90, 250, 320)[None, :]  # light falling off to the left
    img = Image.fromarray(np.full((80, 320), 1.0) * light).convert("L")
    slope = math.tan(math.radians(20))
    for x in (30, 90, 150, 210):  # bars leaning 20 degrees, ink a fifth of the light's paper
        ImageDraw.Draw(img).polygon([(x, 65), (x + 10, 65), (x + 10 + 50 * slope, 15), (x + 50 * slope, 15)], fill=30)
    img.save(tmp_path / "leaning.png")
    out = tmp_path / "steps.png"
    assert main(["predict", str(tmp_path / "leaning.png"), "--model", str(line_ckpt), "--show-input", str(out)]) == 0
    assert capsys.readouterr().out == "k\n"
    reading = read_array(np.asarray(img), load_model(line_ckpt, device="cpu"))
    assert reading.steps.deslanted and abs(reading.steps.slant - 20) <= 2
    with Image.open(out) as figure:
        a = np.asarray(figure.convert("RGB"))
        panel = model_panel(figure, reading.model_input.shape[1])
    band = (a[:, 0] == LABEL_COLOUR).all(axis=1)
    starts = np.flatnonzero(band & ~np.r_[False, band[:-1]])
    assert starts.tolist()[0] == 0 and len(starts) == 4
    assert all(band[s : s + LABEL_HEIGHT].all() and not band[s + LABEL_HEIGHT] for s in starts)
    heights = np.diff([*starts, a.shape[0]]) - LABEL_HEIGHT
    assert heights[0] == heights[1] == heights[2] and heights[3] == GLYPH_SIZE * MODEL_SCALE, heights
    assert np.array_equal(panel, reading.model_input)


def test_cli_default_pixel_limit_matches_predict():
    assert cli.DEFAULT_MAX_PIXELS == DEFAULT_MAX_PIXELS


class _AppFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Stands in for text_recognizer.app: records serve() calls, or fails to import like an app without gradio."""

    def __init__(self, missing: str | None):
        self.missing, self.calls = missing, []

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name == "text_recognizer.app" else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if self.missing:
            raise ModuleNotFoundError(f"No module named {self.missing!r}", name=self.missing)
        module.serve = lambda **kwargs: self.calls.append(kwargs)


@pytest.mark.parametrize("missing", [None, "gradio", "gradio.themes"])
def test_cli_serve(monkeypatch, capsys, missing):
    finder = _AppFinder(missing)
    monkeypatch.delitem(sys.modules, "text_recognizer.app", raising=False)
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    code = main(["serve", "--model", "m.pt", "--port", "9999", "--host", "0.0.0.0"])
    err = capsys.readouterr().err
    if missing:
        assert code == 1 and finder.calls == []
        assert err == "error: the web page needs the app extra: pip install 'text-recognizer[app]'\n"
    else:
        assert code == 0 and err == ""
        assert finder.calls == [
            {
                "model_path": Path("m.pt"),
                "port": 9999,
                "host": "0.0.0.0",
                "max_pixels": DEFAULT_MAX_PIXELS,
                "decode": None,
                "low_confidence": None,
            }
        ]


def test_cli_serve_on_a_taken_port_is_one_line(monkeypatch, capsys):
    import types

    def serve(**kwargs):
        raise OSError(98, "Address already in use")

    monkeypatch.setitem(sys.modules, "text_recognizer.app", types.SimpleNamespace(serve=serve))
    assert main(["serve", "--model", "m.pt", "--port", "7860"]) == 1
    assert capsys.readouterr().err == "error: cannot serve on 127.0.0.1:7860: [Errno 98] Address already in use\n"


# --- several lines of text ----------------------------------------------------------------------

needs_fonts = pytest.mark.skipif(
    any(find_font(name) is None for name in FONT_NAMES), reason=f"fonts not found: apt-get install {FONT_PACKAGE}"
)
SEVERAL_LINES = "found {n} lines of text; predict reads one line: crop the image to one line"


def bar_line(draw: ImageDraw.ImageDraw, top: int, *, dots: bool = False, jiggle: int = 0, n: int = 6) -> None:
    """A line of n bar glyphs from row `top` (40 high, some taller or lower by `jiggle`), with i-dots above."""
    for k in range(n):
        x = 20 + 40 * k
        shift = (-jiggle, jiggle, 0)[k % 3]  # ascenders and descenders, a wandering baseline
        draw.rectangle([x, top + shift, x + 10, top + 40 + shift], fill=0)
        if dots and k % 2:
            draw.rectangle([x, top + shift - 16, x + 10, top + shift - 6], fill=0)  # a dot as wide as the stroke


def stacked(rows: list[np.ndarray], gap: int, paper: int, margin: int = 10) -> np.ndarray:
    """Lines one above the other, `gap` blank rows between them, left-aligned."""
    width = max(r.shape[1] for r in rows)
    parts = []
    for k, row in enumerate(rows):
        parts.append(np.pad(row, ((0, 0), (0, width - row.shape[1])), constant_values=paper))
        if k < len(rows) - 1:
            parts.append(np.full((gap, width), paper, dtype=np.uint8))
    return np.pad(np.vstack(parts), margin, constant_values=paper)


def jiggly_line(text: str, size: int, seed: int, font: str = FONT_NAMES[0]) -> np.ndarray:
    """`text` drawn a letter at a time, each one sized, tilted and lifted or dropped at random: handwriting's wobble."""
    rng = np.random.default_rng(seed)
    img = Image.new("L", (int(size * 0.9 * len(text)) + 4 * size, 4 * size), 255)
    x = size
    for char in text:
        s = int(size * rng.uniform(0.85, 1.2))
        face = ImageFont.truetype(str(find_font(font)), s)
        glyph = Image.new("L", (2 * s, 2 * s), 0)
        ImageDraw.Draw(glyph).text((s // 2, s // 4), char, font=face, fill=255)
        glyph = glyph.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BICUBIC)
        img.paste(0, (x - s // 2, int(size + rng.uniform(-0.3, 0.3) * size) - s // 4), glyph)
        x += int(face.getlength(char) * rng.uniform(0.95, 1.25)) + 1
    return np.asarray(img)


@pytest.mark.parametrize("lines", [2, 3])
@pytest.mark.parametrize("layout", ["glyphs", "line"])
def test_several_lines_of_bars_are_refused(tmp_path, lines, layout):
    loaded = load_model(forced_line_checkpoint(tmp_path / "line.pt", token=CHAR_TO_LINE_INDEX["z"]), device="cpu")
    img = Image.new("L", (300, 30 + 70 * lines), 255)
    for k in range(lines):
        bar_line(ImageDraw.Draw(img), 30 + 70 * k, dots=True, jiggle=6)
    with pytest.raises(PredictError, match=SEVERAL_LINES.format(n=lines)):
        read_array(np.asarray(img), loaded, layout=layout)
    with pytest.raises(PredictError, match=SEVERAL_LINES.format(n=lines)):
        read_array(np.asarray(img), loaded, check_kind=False)  # whatever the caller's shape check


def test_one_line_with_dots_underline_specks_and_a_wandering_baseline_is_read(tmp_path):
    loaded = load_model(forced_line_checkpoint(tmp_path / "line.pt", token=CHAR_TO_LINE_INDEX["z"]), device="cpu")
    for jiggle in (0, 8, 15):
        img = Image.new("L", (300, 120), 255)
        draw = ImageDraw.Draw(img)
        bar_line(draw, 40, dots=True, jiggle=jiggle)
        draw.rectangle([20, 105, 250, 107], fill=0)  # an underline
        draw.point([(280, 5), (5, 115)], fill=0)  # dust
        assert normalize.count_lines(normalize.white_on_black(np.asarray(img))) == 1
        assert read_array(np.asarray(img), loaded).text == "z"


def test_several_lines_are_one_line_of_error_on_the_command_line(tmp_path, capsys):
    ckpt = forced_line_checkpoint(tmp_path / "line.pt", token=CHAR_TO_LINE_INDEX["z"])
    img = Image.new("L", (300, 170), 255)
    bar_line(ImageDraw.Draw(img), 30)
    bar_line(ImageDraw.Draw(img), 100)
    img.save(tmp_path / "page.png")
    argv = ["predict", str(tmp_path / "page.png"), "--model", str(ckpt)]
    assert main([*argv, "--layout", "glyphs"]) == 1  # a one-line layout refuses, and names the one that reads it
    captured = capsys.readouterr()
    assert captured.out == ""
    page = "(or read it as a page: --layout page)"
    assert captured.err == f"error: {tmp_path / 'page.png'}: {SEVERAL_LINES.format(n=2)} {page}\n"
    assert main(argv) == 0  # the default layout, auto, reads it as a page: one line of text per line
    captured = capsys.readouterr()
    assert captured.err == "" and [set(line) for line in captured.out.splitlines()] == [{"z"}, {"z"}]


@needs_fonts
@pytest.mark.parametrize("lines", [2, 3])
@pytest.mark.parametrize("style", STYLES, ids=str)
def test_several_lines_of_text_are_counted(style, lines):
    """Phrases set one above the other, down to a single blank row between them, in every style of the font tests."""
    paper = 245 if style.dark_on_light else 15
    tight = Style(style.font, style.size, 0, style.dark_on_light, style.stroke)  # cropped to the ink: gaps are exact
    for k in range(0, len(PHRASES), 4):
        rows = [render_line(PHRASES[(k + 7 * j) % len(PHRASES)], tight) for j in range(lines)]
        for gap in (1, max(2, style.size // 4)):
            gray = stacked(rows, gap, paper, margin=style.margin)
            assert normalize.count_lines(normalize.white_on_black(gray)) == lines, (k, gap)


@needs_fonts
def test_several_lines_of_text_are_refused_by_read_array(tmp_path):
    loaded = load_model(forced_line_checkpoint(tmp_path / "line.pt", token=CHAR_TO_LINE_INDEX["z"]), device="cpu")
    style = Style(FONT_NAMES[0], 32, 0)
    gray = stacked([render_line("hello world", style), render_line("a second line", style)], gap=8, paper=245)
    with pytest.raises(PredictError, match=SEVERAL_LINES.format(n=2)):
        read_array(gray, loaded)


@needs_fonts
def test_single_lines_are_never_counted_as_several():
    """Every phrase in every style of the font tests, dots and quotes at small sizes, jiggly handwriting-like lines."""
    for style in STYLES:
        for phrase in PHRASES:
            assert normalize.count_lines(normalize.white_on_black(render_line(phrase, style))) == 1, (phrase, style)
    for size in (10, 14, 24, 60):
        for text in ("ij", "jig iii", "Jimi join it", "mini", 'it\'s "ok" - x_y', "Typography quip jig"):
            for font in FONT_NAMES:
                gray = render_line(text, Style(font, size, 6))
                assert normalize.count_lines(normalize.white_on_black(gray)) == 1, (text, font, size)
    for seed, phrase in enumerate((*PHRASES, "jiggly jumpy yogi", "mini iii jig")):
        for size in (20, 48):
            gray = jiggly_line(phrase, size, seed, font=FONT_NAMES[seed % len(FONT_NAMES)])
            assert normalize.count_lines(normalize.white_on_black(gray)) == 1, (phrase, size, seed)
