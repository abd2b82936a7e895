"""The `text-recognizer` command reports bad input in one line, with exit code 1, and never deletes or
replaces what a user owns: an output option given a directory or an existing file refuses before any work."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from text_recognizer.cli import main
from text_recognizer.metadata import CHAR_TO_LINE_INDEX, LINE_TOKENS, PAD_INDEX
from text_recognizer.models.checkpoint import save_checkpoint
from text_recognizer.models.line_cnn import LineCNN

try:
    from tests.tiny_nets import TINY_LINE_NET
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from tiny_nets import TINY_LINE_NET

LINE_KWARGS = {**TINY_LINE_NET, "width": 8, "fc_dim": 16}


def test_show_lines_on_a_missing_file_is_one_clear_error(tmp_path: Path, capsys):
    missing = tmp_path / "nope.h5"
    assert main(["show-lines", str(missing), str(tmp_path / "out.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err
    assert not (tmp_path / "out.png").exists()


def test_predict_on_a_missing_image_is_one_clear_error(tmp_path: Path, capsys):
    assert main(["predict", str(tmp_path / "nope.png"), "--model", str(tmp_path / "model.pt")]) == 1
    assert "nope.png" in capsys.readouterr().err


# --- outputs: nothing a user owns is deleted or replaced ------------------------------------------


@pytest.fixture
def line_inputs(tmp_path: Path) -> dict[str, Path]:
    """A line checkpoint that reads "k" at every step, a line image, and an emnist_lines.h5 of two lines."""
    model = LineCNN(**LINE_KWARGS)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[CHAR_TO_LINE_INDEX["k"]] = 1.0
    ckpt = tmp_path / "inputs" / "line_cnn.pt"
    ckpt.parent.mkdir()
    save_checkpoint(ckpt, kind="line", model_kwargs=LINE_KWARGS, state_dict=model.state_dict(), mapping=LINE_TOKENS)
    img = Image.new("L", (300, 60), 255)
    for x in (20, 80, 140, 200):
        ImageDraw.Draw(img).rectangle([x, 10, x + 10, 50], fill=0)
    img.save(tmp_path / "inputs" / "line.png")
    lines = tmp_path / "inputs" / "emnist_lines.h5"
    with h5py.File(lines, "w") as f:
        f.attrs["mapping"] = json.dumps(list(LINE_TOKENS))
        f["test/images"] = np.random.default_rng(0).integers(0, 256, size=(2, 28, 56), dtype=np.uint8)
        f["test/labels"] = np.full((2, 2), PAD_INDEX, dtype=np.uint8)
        f["test/labels"][:, 0] = CHAR_TO_LINE_INDEX["a"]
    return {"model": ckpt, "image": tmp_path / "inputs" / "line.png", "lines": lines}


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and folder under root with its mode and content, to prove that nothing changed."""
    found = {}
    for path in sorted(root.rglob("*")):
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        found[str(path.relative_to(root))] = (os.lstat(path).st_mode, content)
    return found


def commands(inputs: dict[str, Path], out: str) -> dict[str, list[str]]:
    """Every output option of the command, aimed at `out`."""
    return {
        "predict --show-input": ["predict", str(inputs["image"]), "--model", str(inputs["model"]), "--show-input", out],
        "show-lines": ["show-lines", str(inputs["lines"]), out],
    }


@pytest.mark.parametrize("option", ["predict --show-input", "show-lines"])
def test_an_output_that_is_a_directory_is_refused_and_left_whole(tmp_path, line_inputs, capsys, monkeypatch, option):
    """`--show-input notes/` used to delete notes/ and everything in it; `.` emptied the current folder."""
    work = tmp_path / "work"
    (work / "notes" / "deep").mkdir(parents=True)
    (work / "notes" / "todo.txt").write_text("buy milk")
    (work / "notes" / "deep" / "keep.png").write_bytes(b"\x89PNG mine")
    (work / "keep.txt").write_text("mine")
    monkeypatch.chdir(work)
    before = snapshot(work)
    for out in ("notes", "notes/", str(work / "notes"), ".", "..", "notes/deep/.."):
        assert main(commands(line_inputs, out)[option]) == 1, out
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith("error: ") and "is a directory" in captured.err, captured.err
        assert captured.err.count("\n") == 1
        assert snapshot(work) == before, out


@pytest.mark.parametrize("option", ["predict --show-input", "show-lines"])
def test_an_existing_file_is_replaced_only_with_overwrite(tmp_path, line_inputs, capsys, option):
    out = tmp_path / "mine.png"
    out.write_bytes(b"the user's own picture")
    argv = commands(line_inputs, str(out))[option]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == f"error: {out} exists: pass --overwrite to replace it, or name another file\n"
    assert out.read_bytes() == b"the user's own picture"

    assert main([*argv, "--overwrite"]) == 0
    capsys.readouterr()
    with Image.open(out) as written:
        assert written.format == "PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs", "mine.png"]  # no temporary left


@pytest.mark.parametrize("option", ["predict --show-input", "show-lines"])
def test_a_new_output_is_written_and_nothing_else_changes(tmp_path, line_inputs, capsys, option):
    before = snapshot(line_inputs["model"].parent)
    out = tmp_path / "new" / "folder" / "out.png"
    assert main(commands(line_inputs, str(out))[option]) == 0
    capsys.readouterr()
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == ["out.png"]
    assert snapshot(line_inputs["model"].parent) == before


@pytest.mark.parametrize("option", ["predict --show-input", "show-lines"])
def test_outputs_that_cannot_be_files_are_refused_before_any_work(tmp_path, line_inputs, capsys, option):
    (tmp_path / "a_file").write_text("mine")
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link").symlink_to(tmp_path / "a_file")
    cases = {
        str(tmp_path / "a_file" / "out.png"): "a_file is not a directory",
        str(tmp_path / "pipe"): "exists and is not a regular file",
        str(tmp_path / "link"): "exists: pass --overwrite",
    }
    before = snapshot(tmp_path)
    for out, message in cases.items():
        assert main(commands(line_inputs, out)[option]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert snapshot(tmp_path) == before


def test_a_pickled_module_as_model_is_one_line(tmp_path, line_inputs, capsys):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    assert main(["predict", str(line_inputs["image"]), "--model", str(tmp_path / "module.pt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "weights_only" not in err
    assert "holds pickled Python objects (torch.nn.modules.linear.Linear)" in err
    (tmp_path / "text.pt").write_text("not a checkpoint")
    assert main(["predict", str(line_inputs["image"]), "--model", str(tmp_path / "text.pt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert f"{tmp_path / 'text.pt'} is not a readable torch checkpoint (not written by torch.save, or damaged)" in err
