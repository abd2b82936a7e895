"""`text-recognizer predict` on pages: an image of several lines is cut into lines (reading/page.py) and each is read.

Pages of 1 to 6 EMNISTLines test lines (tests/pages.py) go through the CLI: the line count, each line's text
against the same line read alone, the jsonl and tsv shapes of a page, `auto` reading a one-line image exactly
as the glyph layout always did, the one-line layouts still refusing several lines, --show-input drawing the
page, and an exported ONNX model reading a page as its checkpoint does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from text_recognizer.cli import TSV_COLUMNS, main
from text_recognizer.lit_models.ctc import character_error_rate
from text_recognizer.models.checkpoint import save_with_extra
from text_recognizer.reading import page
from text_recognizer.reading.predict import PageReading, Reading, load_image, load_model, read_array, read_image
from text_recognizer.reading.show_steps import PAGE_BOX_COLOUR, page_figure

try:
    from tests import pages as P
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    import pages as P

SEVERAL = (
    "found 2 lines of text; predict reads one line: crop the image to one line (or read it as a page: --layout page)"
)


@pytest.fixture(scope="module")
def composed(offline_models: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Clean pages of 1..6 EMNISTLines test lines as PNGs (page1.png .. page6.png), each page's lines alone, and
    a one-line image (an EMNISTLines line, as a scan)."""
    folder = tmp_path_factory.mktemp("pages")
    pool = P.emnist_test_lines(offline_models / "emnist_lines_test.h5")
    rng = np.random.default_rng(0)
    pages = {}
    for n in range(1, 7):
        pg = P.make_page(pool, rng, n, "clean", 0.0, (4, 10), 40)
        Image.fromarray(pg.gray).save(folder / f"page{n}.png")
        pages[n] = pg
    Image.fromarray(P.alone(pool[7][0], "clean")).save(folder / "line.png")
    return {"folder": folder, "pages": pages, "model": offline_models / "line_cnn.pt", "cnn": offline_models / "cnn.pt"}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["predict", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def jsonl(capsys, *argv: str) -> list[dict]:
    code, out, err = run(capsys, *argv, "--format", "jsonl")
    assert code == 0 and err == "", err
    return [json.loads(line) for line in out.splitlines()]


def texts_of(record: dict) -> list[str]:
    """A record's lines' texts: a page's `lines`, or the one line it is."""
    return [line["text"] for line in record["lines"]] if "lines" in record else [record["text"]]


def test_pages_of_1_to_6_lines_are_read_line_by_line(composed, capsys):
    """Every page in one call: as many lines as composed, top to bottom, each line's text as the library reads the
    image alone (the same batches), and the whole as well as the lines read alone (CER within 0.04 of it)."""
    folder, model = composed["folder"], composed["model"]
    loaded = load_model(model, device="cpu")
    records = jsonl(capsys, *(str(folder / f"page{n}.png") for n in range(1, 7)), "--model", str(model))
    assert [Path(r["path"]).name for r in records] == [f"page{n}.png" for n in range(1, 7)]
    on_page, alone, truth = [], [], []
    for n, record in zip(range(1, 7), records, strict=True):
        pg = composed["pages"][n]
        assert len(texts_of(record)) == n, (n, record)
        assert ("lines" in record) == (n > 1)  # auto: one line reads as a line, as before
        own = read_image(load_image(folder / f"page{n}.png"), loaded)
        assert isinstance(own, PageReading if n > 1 else Reading)
        assert texts_of(record) == own.text.split("\n")
        if n > 1:
            tops = [line["box"][1] for line in record["lines"]]
            assert tops == sorted(tops)
            for line, (x, y) in zip(record["lines"], pg.centres, strict=True):  # each box holds its line's centre
                x0, y0, x1, y1 = line["box"]
                assert x0 <= x <= x1 and y0 <= y <= y1, (line, (x, y))
        on_page.append(" ".join(t.strip() for t in texts_of(record)))
        alone.append(" ".join(read_array(P.alone(x, "clean"), loaded, check_kind=False).text.strip() for x in pg.lines))
        truth.append(" ".join(pg.texts))
    page_cer, alone_cer = character_error_rate(on_page, truth), character_error_rate(alone, truth)
    assert page_cer <= alone_cer + 0.04, (page_cer, alone_cer)


def test_a_page_record_and_its_rows(composed, capsys, tmp_path):
    """jsonl: one record per image with its lines (text, confidence, low_confidence, char_confidences, box), its
    text the lines' joined by newlines and its confidence the least confident line's; tsv: a row per line with
    its number; text: PATH<TAB>text per line; and a single page alone prints its lines' texts, one per line."""
    folder, model = composed["folder"], composed["model"]
    path = str(folder / "page3.png")
    (record,) = jsonl(capsys, path, "--model", str(model))
    assert set(record) == {"path", "text", "confidence", "low_confidence", "lines", "decoder", "model_sha256"}
    lines = record["lines"]
    assert len(lines) == 3 and record["text"] == "\n".join(line["text"] for line in lines)
    assert record["confidence"] == min(line["confidence"] for line in lines)
    height, width = load_image(path).shape
    for line in lines:
        assert set(line) == {"text", "confidence", "low_confidence", "char_confidences", "box"}
        assert len(line["char_confidences"]) == len(line["text"]) and 0 <= line["confidence"] <= 1
        x0, y0, x1, y1 = line["box"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert line["low_confidence"] is None  # a model never evaluated has no threshold

    code, out, _ = run(capsys, path, "--model", str(model), "--format", "tsv")
    header, *rows = [row.split("\t") for row in out.splitlines()]
    assert code == 0 and tuple(header) == TSV_COLUMNS and len(rows) == 3
    cells = [dict(zip(header, row, strict=True)) for row in rows]
    assert [c["line"] for c in cells] == ["1", "2", "3"] and {c["path"] for c in cells} == {path}
    assert [c["text"] for c in cells] == [line["text"] for line in lines]
    assert [float(c["confidence"]) for c in cells] == [line["confidence"] for line in lines]
    assert all(c["error"] == "" for c in cells)

    code, out, _ = run(capsys, path, path, "--model", str(model))  # two inputs: PATH<TAB>text, a row per line
    assert code == 0 and out.splitlines() == [f"{path}\t{line['text']}" for line in lines] * 2
    code, out, err = run(capsys, path, "--model", str(model))  # one: the text alone, one row per line
    assert code == 0 and err == "" and out == record["text"] + "\n"


def test_low_confidence_of_a_page_is_any_lines(composed, capsys, tmp_path):
    folder, model = composed["folder"], composed["model"]
    (plain,) = jsonl(capsys, str(folder / "page4.png"), "--model", str(model))
    confidences = sorted(line["confidence"] for line in plain["lines"])
    threshold = (confidences[1] + confidences[2]) / 2  # two lines below it
    reading = {"decoder": "greedy", "low_confidence_threshold": threshold, "confidence_decoder": "greedy"}
    save_with_extra(model, tmp_path / "reader.pt", reading=reading)
    (record,) = jsonl(capsys, str(folder / "page4.png"), "--model", str(tmp_path / "reader.pt"))
    assert [line["low_confidence"] for line in record["lines"]] == [
        line["confidence"] < threshold for line in record["lines"]
    ]
    assert sum(line["low_confidence"] for line in record["lines"]) == 2 and record["low_confidence"] is True


def test_auto_reads_a_one_line_image_exactly_as_before(composed, capsys, offline_models):
    """The default layout is auto: a one-line image reads as the glyph layout reads it (every field), by file and in
    a batch, and the library's read_image gives read_array's reading."""
    folder, model = composed["folder"], composed["model"]
    line = str(folder / "line.png")
    for argv in ([line], [line, line]):
        for form in ("text", "jsonl", "tsv"):
            auto = run(capsys, *argv, "--model", str(model), "--format", form)
            glyphs = run(capsys, *argv, "--model", str(model), "--format", form, "--layout", "glyphs")
            assert auto == glyphs and auto[0] == 0 and auto[1]
    (record,) = jsonl(capsys, line, "--model", str(model))
    assert "lines" not in record and record["text"]
    loaded = load_model(model, device="cpu")
    gray = load_image(line)
    one, auto = read_array(gray, loaded), read_image(gray, loaded)
    assert isinstance(auto, Reading) and auto.text == one.text and auto.confidence == pytest.approx(one.confidence)
    assert np.array_equal(auto.model_input, one.model_input)
    glyph = np.full((60, 60), 255, dtype=np.uint8)
    glyph[10:50, 27:33] = 0  # an "l" or "1" or "I"
    Image.fromarray(glyph).save(folder / "glyph.png")
    for image in ("glyph.png", "line.png"):  # a character model: auto is its one reading (or refusal of a line)
        auto = run(capsys, str(folder / image), "--model", str(composed["cnn"]), "--format", "jsonl")
        assert auto == run(capsys, str(folder / image), "--model", str(composed["cnn"]), "--format", "jsonl",
                           "--layout", "glyphs")  # fmt: skip
        assert ("error" in json.loads(auto[1])) == (image == "line.png")


@pytest.mark.parametrize("layout", ["glyphs", "line"])
def test_a_one_line_layout_still_refuses_two_lines(composed, capsys, layout):
    folder, model = composed["folder"], composed["model"]
    path = folder / "page2.png"
    code, out, err = run(capsys, str(path), "--model", str(model), "--layout", layout)
    assert code == 1 and out == "" and err == f"error: {path}: {SEVERAL}\n"
    code, out, err = run(capsys, str(path), str(folder / "line.png"), "--model", str(model), "--layout", layout,
                         "--format", "jsonl")  # fmt: skip
    refused, read = (json.loads(line) for line in out.splitlines())
    assert code == 1 and refused == {"path": str(path), "error": f"{path}: {SEVERAL}"} and read["text"]


def test_page_layout_reads_one_line_as_a_page_and_refuses_a_character_model(composed, capsys):
    folder, model = composed["folder"], composed["model"]
    (record,) = jsonl(capsys, str(folder / "line.png"), "--model", str(model), "--layout", "page")
    (alone,) = jsonl(capsys, str(folder / "line.png"), "--model", str(model))
    assert len(record["lines"]) == 1 and record["text"]
    assert character_error_rate([record["text"]], [alone["text"]]) <= 0.1  # its crop, not the whole image
    for argv in ([str(folder / "page2.png")], [str(folder / "page2.png"), str(folder / "line.png")]):
        code, out, err = run(capsys, *argv, "--model", str(composed["cnn"]), "--layout", "page")
        assert code == 1 and out == "" and err == "error: reading a page needs a line checkpoint, got a char one\n"


def test_show_input_draws_the_pages_boxes_and_readings(composed, capsys, tmp_path):
    folder, model = composed["folder"], composed["model"]
    path, out = folder / "page3.png", tmp_path / "seen.png"
    code, printed, _ = run(capsys, str(path), "--model", str(model), "--show-input", str(out))
    assert code == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["seen.png"]
    gray = load_image(path)
    read = read_image(gray, load_model(model, device="cpu"))
    assert [r.text for _, r in read.lines] == printed.splitlines()
    texts = [f"{r.text} ({r.confidence:.2f})" for _, r in read.lines]
    with Image.open(out) as drawn:
        figure = np.asarray(drawn.convert("RGB"))
    assert np.array_equal(figure, np.asarray(page_figure(gray, page.find_lines(gray), texts)))
    bare = np.asarray(page_figure(gray, page.find_lines(gray)))
    assert figure.shape[0] > bare.shape[0] and np.array_equal(figure[: bare.shape[0]], bare)  # readings below
    assert (figure == PAGE_BOX_COLOUR).all(axis=2).sum() > 0
    with pytest.raises(ValueError, match="2 readings for 3 lines"):
        page_figure(gray, page.find_lines(gray), texts[:2])


def test_an_onnx_model_reads_a_page_as_its_checkpoint(composed, capsys, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install -e '.[onnx]'")
    pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install -e '.[onnx]'")
    from text_recognizer.export import export_onnx

    onnx = export_onnx(composed["model"], tmp_path / "line.onnx", exporter="torchscript")
    pngs = [str(composed["folder"] / f"page{n}.png") for n in (3, 5)]
    by_torch = jsonl(capsys, *pngs, "--model", str(composed["model"]))
    by_onnx = jsonl(capsys, *pngs, "--model", str(onnx))
    assert [len(r["lines"]) for r in by_onnx] == [3, 5]
    for t, o in zip(by_torch, by_onnx, strict=True):
        assert texts_of(o) == texts_of(t)
        assert [line["box"] for line in o["lines"]] == [line["box"] for line in t["lines"]]
        assert [line["confidence"] for line in o["lines"]] == pytest.approx(
            [line["confidence"] for line in t["lines"]], abs=2e-4
        )
