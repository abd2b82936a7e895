"""ONNX export (text_recognizer.export) and the torch-free reader (reading.onnx_model): an exported model reads
what its checkpoint reads, at any batch size and width, with the metadata a reader needs, and without torch."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install -e '.[onnx]'")
pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install -e '.[onnx]'")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed: pip install -e '.[onnx]'")

from text_recognizer import __version__
from text_recognizer.export import ExportError, export_onnx
from text_recognizer.io import OutputError
from text_recognizer.line_geometry import crop_lines as torch_crop_lines
from text_recognizer.lit_models.ctc import greedy_decode as torch_greedy
from text_recognizer.lit_models.ctc import indices_to_text
from text_recognizer.lit_models.windows import window_decode as torch_window_decode
from text_recognizer.metadata import BLANK_INDEX, GLYPH_SIZE, LINE_TOKENS
from text_recognizer.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    save_with_extra,
)
from text_recognizer.models.line_archs import line_network
from text_recognizer.reading import onnx_model
from text_recognizer.reading.evaluation import evaluate_lines, line_logits, to_model_input
from text_recognizer.reading.onnx_model import OnnxModel, OnnxModelError

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
LOGIT_TOLERANCE = 1e-3  # float32 through two runtimes: measured differences are ~2e-5 on logits of size ~10


@pytest.fixture(scope="module")
def test_images(offline_models: Path) -> np.ndarray:
    with h5py.File(offline_models / "emnist_lines_test.h5", "r") as f:
        return f["test"]["images"][()]


@pytest.fixture(scope="module")
def exported(offline_models: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The offline line and char models exported with the default (dynamo) exporter."""
    folder = tmp_path_factory.mktemp("onnx")
    return {
        "line": export_onnx(offline_models / "line_cnn.pt", folder / "line.onnx"),
        "char": export_onnx(offline_models / "cnn.pt", folder / "char.onnx"),
    }


def valid_logits(logits: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The logits of every step within its line's length, (steps, C): the padding steps are nobody's output."""
    inside = np.arange(logits.shape[2])[None, :] < np.asarray(lengths)[:, None]
    return logits.transpose(0, 2, 1)[inside]


def test_line_model_reads_every_test_line_as_torch_does(offline_models, exported, test_images):
    evaluation = evaluate_lines(
        offline_models / "line_cnn.pt", offline_models / "emnist_lines_test.h5", num_samples=10**6, device="cpu"
    )
    torch_texts = [sample.pred_text for sample in evaluation.samples]
    model = OnnxModel(exported["line"])
    assert len(torch_texts) == len(test_images) > 0
    assert model.read_lines(test_images, batch_size=64) == torch_texts
    assert model.read_lines(test_images, batch_size=1) == torch_texts  # other crops, same readings
    assert sum(t == s.true_text for t, s in zip(torch_texts, evaluation.samples, strict=True)) > 0  # texts, not ""


def test_line_logits_match_torch_within_each_line(offline_models, exported, test_images):
    loaded = load_checkpoint(offline_models / "line_cnn.pt")
    model = OnnxModel(exported["line"])
    worst = 0.0
    for batch in (1, 7, 64):
        for first in range(0, len(test_images), batch):
            images = test_images[first : first + batch]
            with torch.inference_mode():
                expected, expected_lengths = line_logits(loaded, images, CPU)
            logits, lengths = model.line_logits(images)
            assert logits.shape == tuple(expected.shape)
            np.testing.assert_array_equal(lengths, expected_lengths.numpy())
            worst = max(worst, float(np.abs(valid_logits(logits - expected.numpy(), lengths)).max()))
    print(f"max |onnx - torch| logit difference over the test lines: {worst:.2e}")
    assert worst < LOGIT_TOLERANCE


def padded_batch(test_images: np.ndarray, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, list[int]]:
    """`batch` test lines cut to random widths and padded with black to the widest, as predict batches images of
    several widths; and their widths."""
    widths = rng.integers(40, test_images.shape[2] + 1, batch).tolist()
    images = np.zeros((batch, GLYPH_SIZE, max(widths)), dtype=np.uint8)
    for row, (index, width) in enumerate(zip(rng.choice(len(test_images), batch), widths, strict=True)):
        images[row, :, :width] = test_images[index, :, :width]
    return images, widths


def assert_same_line_logits(model: OnnxModel, loaded, images: np.ndarray, widths: list[int] | None = None) -> None:
    with torch.inference_mode():
        expected, expected_lengths = line_logits(loaded, images, CPU, widths)
    logits, lengths = model.line_logits(images, widths)
    assert logits.shape == tuple(expected.shape)
    np.testing.assert_array_equal(lengths, expected_lengths.numpy())
    assert np.abs(valid_logits(logits - expected.numpy(), lengths)).max() < LOGIT_TOLERANCE


def test_padded_batches_of_own_widths_match_torch(offline_models, exported, test_images):
    """predict's batches: lines of several widths padded to the widest, each read up to its own width."""
    loaded = load_checkpoint(offline_models / "line_cnn.pt")
    model = OnnxModel(exported["line"])
    rng = np.random.default_rng(1)
    for batch in (1, 6, 20):
        assert_same_line_logits(model, loaded, *padded_batch(test_images, rng, batch))
    with pytest.raises(onnx_model.InputError, match="widths"):
        model.line_logits(test_images[:2], [100])


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_dynamic_batch_and_width(offline_models, exported, test_images, batch):
    """Widths the export never saw (it traced 112 columns), lines of their own lengths, any batch size."""
    loaded = load_checkpoint(offline_models / "line_cnn.pt")
    model = OnnxModel(exported["line"])
    rng = np.random.default_rng(batch)
    for width in (28, 61, 333, test_images.shape[2]):
        images = test_images[rng.choice(len(test_images), batch)][:, :, :width]
        steps = loaded.model.output_length(width)
        assert model.output_length(width) == steps
        lengths = rng.integers(1, steps + 1, batch)
        with torch.inference_mode():
            expected = loaded.model(to_model_input(images, CPU), torch.from_numpy(lengths)).numpy()
        logits = model.logits(images, lengths)
        assert logits.shape == (batch, len(LINE_TOKENS), steps)
        assert np.abs(valid_logits(logits - expected, lengths)).max() < LOGIT_TOLERANCE


def test_char_model_top_class_matches_torch(offline_models, exported, test_images):
    """Glyph-sized windows of the test lines, at every glyph position: the same top class as torch's."""
    windows = test_images[:, :, : 28 * (test_images.shape[2] // 28)].reshape(len(test_images), 28, -1, 28)
    glyphs = np.ascontiguousarray(windows.transpose(0, 2, 1, 3).reshape(-1, 28, 28))
    glyphs = glyphs[glyphs.reshape(len(glyphs), -1).max(axis=1) > 0]  # inked ones
    loaded = load_checkpoint(offline_models / "cnn.pt")
    model = OnnxModel(exported["char"])
    with torch.inference_mode():
        expected = loaded.model(to_model_input(glyphs, CPU)).numpy()
    logits = model.logits(glyphs)
    assert len(glyphs) > 100 and logits.shape == expected.shape == (len(glyphs), len(loaded.mapping))
    assert model.classify(glyphs) == [loaded.mapping[i] for i in expected.argmax(axis=1)]
    assert np.abs(logits - expected).max() < LOGIT_TOLERANCE
    assert model.logits(glyphs[:1]).shape == (1, len(loaded.mapping))  # dynamic batch


def test_metadata_round_trips(offline_models, exported):
    for kind, name in (("line", "line_cnn.pt"), ("char", "cnn.pt")):
        loaded = load_checkpoint(offline_models / name)
        model = OnnxModel(exported[kind])
        assert (model.kind, model.arch) == (loaded.kind, loaded.arch)
        assert model.mapping == loaded.mapping
        assert model.model_kwargs == loaded.model_kwargs
        statistics = "lines" if kind == "line" else "glyphs"
        assert model.extra[statistics] == loaded.extra[statistics]
        assert model.extra["val_metrics"] == loaded.extra["val_metrics"]
        assert model.source_sha256 == hashlib.sha256((offline_models / name).read_bytes()).hexdigest()
        assert model.metadata["text_recognizer_version"] == __version__
    line = OnnxModel(exported["line"])
    loaded = load_checkpoint(offline_models / "line_cnn.pt")
    for width in range(loaded.model.window_width, 1000, 37):
        assert line.output_length(width) == loaded.model.output_length(width)


def test_reading_record_travels_and_the_torchscript_exporter_agrees(offline_models, tmp_path, test_images):
    """A reader checkpoint's `reading` (what evaluate writes) reaches the ONNX metadata; the legacy exporter reads
    the same lines as torch too."""
    reading = {"decoder": "beam", "beam_width": 16, "lm_weight": 0.5, "length_bonus": 1.0, "lm_sha256": "ab" * 32}
    reader = tmp_path / "line_reader.pt"
    save_with_extra(offline_models / "line_cnn.pt", reader, reading=reading)
    model = OnnxModel(export_onnx(reader, tmp_path / "reader.onnx", exporter="torchscript"))
    assert model.extra["reading"] == reading
    assert model.metadata["source_checkpoint"] == "line_reader.pt"
    loaded = load_checkpoint(reader)
    images = test_images[:20]
    with torch.inference_mode():
        expected, lengths = line_logits(loaded, images, CPU)
    texts = [indices_to_text(row, loaded.mapping) for row in torch_greedy(expected, lengths)]
    assert model.read_lines(images, batch_size=8) == texts


def random_line_checkpoint(path: Path, **kwargs) -> Path:
    """A line checkpoint of untrained weights with non-trivial batch-norm statistics: parity needs no training."""
    torch.manual_seed(0)
    model_kwargs = {"num_classes": len(LINE_TOKENS), "dropout": 0.1, **kwargs}
    network = line_network(**model_kwargs)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    save_checkpoint(path, kind="line", model_kwargs=model_kwargs, state_dict=network.state_dict(), mapping=LINE_TOKENS)
    return path


@pytest.mark.parametrize(
    ("kwargs", "exporter"),
    [
        (
            {
                "arch": "ctc",
                "head": "none",
                "stem": "full",
                "width": 8,
                "fc_dim": 16,
                "window_width": 28,
                "window_stride": 8,
            },
            "torchscript",
        ),
        (
            {
                "arch": "ctc",
                "head": "transformer",
                "stem": "strided",
                "width": 8,
                "fc_dim": 16,
                "window_width": 20,
                "window_stride": 6,
            },
            "dynamo",
        ),
        ({"arch": "simple", "width": 8, "fc_dim": 16}, "torchscript"),
    ],
    ids=["ctc-none", "ctc-transformer", "simple"],
)
def test_other_line_archs_match_torch(tmp_path, test_images, kwargs, exporter):
    checkpoint = random_line_checkpoint(tmp_path / "line.pt", **kwargs)
    model = OnnxModel(export_onnx(checkpoint, tmp_path / "line.onnx", exporter=exporter))
    loaded = load_checkpoint(checkpoint)
    assert model.arch == loaded.arch
    for batch, width in ((1, test_images.shape[2]), (5, 300), (12, 200)):
        images = test_images[10 : 10 + batch, :, :width]
        with torch.inference_mode():
            expected, lengths = line_logits(loaded, images, CPU)
        logits, onnx_lengths = model.line_logits(images)
        np.testing.assert_array_equal(onnx_lengths, lengths.numpy())
        assert logits.shape == tuple(expected.shape)
        assert np.abs(valid_logits(logits - expected.numpy(), onnx_lengths)).max() < LOGIT_TOLERANCE
        decode = torch_window_decode if loaded.arch == "simple" else torch_greedy
        texts = [indices_to_text(row, loaded.mapping) for row in decode(expected, lengths)]
        assert model.decode(logits, onnx_lengths) == texts
    assert_same_line_logits(model, loaded, *padded_batch(test_images, np.random.default_rng(2), 9))
    if loaded.arch == "simple":  # narrower than one window: padded to it, as the torch model pads
        with torch.inference_mode():
            expected = loaded.model(to_model_input(test_images[:2, :, :11], CPU)).numpy()
        assert np.abs(model.logits(test_images[:2, :, :11]) - expected).max() < LOGIT_TOLERANCE


def test_torchscript_exporter_refuses_a_transformer_head(tmp_path):
    kwargs = {
        "arch": "ctc",
        "head": "transformer",
        "stem": "strided",
        "width": 4,
        "fc_dim": 8,
        "window_width": 28,
        "window_stride": 8,
    }
    checkpoint = random_line_checkpoint(tmp_path / "line.pt", **kwargs)
    with pytest.raises(ExportError, match="dynamo"):
        export_onnx(checkpoint, tmp_path / "line.onnx", exporter="torchscript")
    assert not (tmp_path / "line.onnx").exists()


def test_numpy_decoders_and_crop_match_torch(test_images):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((40, len(LINE_TOKENS), 50)).astype(np.float32)
    logits[:, BLANK_INDEX] += rng.choice([0.0, 3.0], size=(40, 50))  # blank runs, and repeats between them
    logits[:, 5] += rng.choice([0.0, 2.5], size=(40, 50))
    lengths = rng.integers(0, 51, 40)
    lengths[:3] = 0
    for decode_numpy, decode_torch in (
        (onnx_model.greedy_decode, torch_greedy),
        (onnx_model.window_decode, torch_window_decode),
    ):
        expected = decode_torch(torch.from_numpy(logits), torch.from_numpy(lengths))
        assert decode_numpy(logits, lengths) == expected
        assert decode_numpy(logits) == decode_torch(torch.from_numpy(logits))
        assert any(expected) and not all(expected)  # lengths of 0 read nothing; the rest read something
    blank = np.zeros((3, GLYPH_SIZE, 400), dtype=np.uint8)
    for images in (
        test_images[:50],
        test_images[50:51, :, :300],
        blank,
        np.concatenate([blank, test_images[:2, :, :400]]),
    ):
        cropped, lengths = onnx_model.crop_lines(images, 28, 8)
        expected, expected_lengths = torch_crop_lines(torch.from_numpy(images)[:, None], 28, 8)
        np.testing.assert_array_equal(cropped, expected[:, 0].numpy())
        np.testing.assert_array_equal(lengths, expected_lengths.numpy())


def test_reading_path_imports_no_torch(exported, test_images, tmp_path):
    lines = tmp_path / "lines.npy"
    np.save(lines, test_images[:8])
    code = (
        "import sys, numpy as np\n"
        "from text_recognizer.reading.onnx_model import OnnxModel\n"
        f"texts = OnnxModel({str(exported['line'])!r}).read_lines(np.load({str(lines)!r}))\n"
        f"top = OnnxModel({str(exported['char'])!r}).classify(np.load({str(lines)!r})[:, :, :28])\n"
        "print(len(texts), len(top), 'torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["8", "8", "False"]


def test_export_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    not_a_checkpoint = tmp_path / "notes.pt"
    not_a_checkpoint.write_text("just some text\n")
    with pytest.raises(CheckpointError, match=r"notes\.pt is not a readable torch checkpoint"):
        export_onnx(not_a_checkpoint, tmp_path / "out.onnx")
    with pytest.raises(CheckpointError, match="not found"):
        export_onnx(tmp_path / "missing.pt", tmp_path / "out.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.pt"]  # nothing written, no temporary left


def test_export_refuses_an_existing_output_unless_overwrite(offline_models, tmp_path):
    out = tmp_path / "line.onnx"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match="exists"):
        export_onnx(offline_models / "line_cnn.pt", out, exporter="torchscript")
    assert out.read_bytes() == b"precious"
    with pytest.raises(ExportError, match=r"\.onnx"):
        export_onnx(offline_models / "line_cnn.pt", tmp_path / "line.bin", exporter="torchscript")
    export_onnx(offline_models / "line_cnn.pt", out, overwrite=True, exporter="torchscript")
    assert OnnxModel(out).kind == "line"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["line.onnx"]


def test_reader_refuses_what_it_cannot_read(tmp_path, monkeypatch, exported):
    import onnx
    from onnx import TensorProto, helper

    with pytest.raises(OnnxModelError, match="not found"):
        OnnxModel(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a protobuf")
    with pytest.raises(OnnxModelError, match="not a readable ONNX model"):
        OnnxModel(garbage)
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save_model(helper.make_model(graph), str(foreign))
    with pytest.raises(OnnxModelError, match="not an ONNX model exported by text-recognizer"):
        OnnxModel(foreign)
    line = OnnxModel(exported["line"])
    with pytest.raises(onnx_model.InputError, match="uint8"):
        line.logits(np.zeros((1, 28, 100), dtype=np.float32))
    with pytest.raises(onnx_model.InputError, match="narrower than window_width"):
        line.read_lines(np.zeros((1, 28, 20), dtype=np.uint8))
    with pytest.raises(onnx_model.InputError, match="lengths"):
        line.logits(np.zeros((2, 28, 100), dtype=np.uint8), np.array([1, 99]))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    with pytest.raises(OnnxModelError, match=r"pip install 'text-recognizer\[onnx\]'"):
        OnnxModel(exported["line"])


def test_benchmark_quick_run(offline_models, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import onnx_speed

    out = tmp_path / "onnx_speed.json"
    argv = ["--quick", "--threads", "1", "--device", "cpu", "--json", str(out), "--batches", "1,8"]
    argv += ["--model", str(offline_models / "line_cnn.pt"), "--lines", str(offline_models / "emnist_lines_test.h5")]
    assert onnx_speed.main(argv) == 0
    data = json.loads(out.read_text())
    assert data["header"]["script"] == "onnx_speed.py" and data["header"]["onnxruntime"]
    for batch in ("batch_1", "batch_8"):
        figures = data["results"][batch]
        assert figures["same_texts"] == figures["lines"] == 32
        assert figures["torch_lines_per_s"] > 0 and figures["onnxruntime_lines_per_s"] > 0


def test_export_without_the_onnx_extra_names_it(offline_models, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(ExportError, match=r"needs onnxscript, not installed: pip install 'text-recognizer\[onnx\]'"):
        export_onnx(offline_models / "line_cnn.pt", tmp_path / "line.onnx")
    assert list(tmp_path.iterdir()) == []


# --- the command line: `text-recognizer export`, and `predict --model FILE.onnx` ------------------------------------


def _test_line_pngs(test_images: np.ndarray, folder: Path, count: int) -> list[Path]:
    from PIL import Image

    folder.mkdir()
    paths = []
    for i, image in enumerate(test_images[:count]):
        Image.fromarray(255 - image).save(folder / f"line{i:03d}.png")  # dark ink on white paper, as a scan
        paths.append(folder / f"line{i:03d}.png")
    return paths


def _tsv(main, capsys, *args: str) -> tuple[int, list[list[str]]]:
    code = main(["predict", *args, "--format", "tsv"])
    return code, [row.split("\t") for row in capsys.readouterr().out.splitlines()[1:]]


@pytest.mark.parametrize("layout", ["glyphs", "line"])
def test_predict_reads_an_onnx_file_as_the_checkpoint(offline_models, exported, test_images, tmp_path, capsys, layout):
    """The same texts and confidences (to the printed 4 digits) through the CLI, whichever runs the network; the
    glyph layout also runs the network while it lays glyphs out (touching letters are cut by the model's vote)."""
    from text_recognizer.cli import main

    pngs = _test_line_pngs(test_images, tmp_path / "pngs", 30)
    torch_code, torch_rows = _tsv(main, capsys, str(tmp_path / "pngs"), "--model",
                                  str(offline_models / "line_cnn.pt"), "--layout", layout)  # fmt: skip
    onnx_code, onnx_rows = _tsv(main, capsys, str(tmp_path / "pngs"), "--model", str(exported["line"]),
                                "--layout", layout)  # fmt: skip
    assert onnx_code == torch_code  # 1 when a line is refused (one glyph: "use the character model"), for both
    assert [r[0] for r in onnx_rows] == [str(p) for p in pngs]
    read = [r for r in onnx_rows if r[1]]
    assert len(read) >= 25, onnx_rows
    assert [r[1:4] + r[7:] for r in onnx_rows] == [r[1:4] + r[7:] for r in torch_rows]  # text, confidences, errors
    digest = hashlib.sha256(exported["line"].read_bytes()).hexdigest()
    assert {r[6] for r in read} == {digest}  # the file that read them


def test_export_command_writes_a_readable_file_and_refuses_to_replace_one(offline_models, tmp_path, capsys):
    from text_recognizer.cli import main

    out = tmp_path / "cnn.onnx"
    assert main(["export", str(offline_models / "cnn.pt"), "-o", str(out), "--exporter", "torchscript"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert OnnxModel(out).kind == "char"
    before = out.read_bytes()
    assert main(["export", str(offline_models / "cnn.pt"), "-o", str(out), "--exporter", "torchscript"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "exists" in err and len(err.strip().splitlines()) == 1, err
    assert out.read_bytes() == before
    notes = tmp_path / "notes.pt"
    notes.write_text("not a checkpoint\n")
    assert main(["export", str(notes)]) == 1
    err = capsys.readouterr().err
    assert "notes.pt" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "notes.onnx").exists()
    with pytest.raises(SystemExit):
        main(["export", str(offline_models / "cnn.pt"), "--opset", "7"])
