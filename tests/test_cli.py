"""The `text-recognizer` command reports bad input in one line, with exit code 1."""

from __future__ import annotations

from pathlib import Path

from text_recognizer.cli import main


def test_show_lines_on_a_missing_file_is_one_clear_error(tmp_path: Path, capsys):
    missing = tmp_path / "nope.h5"
    assert main(["show-lines", str(missing), str(tmp_path / "out.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err
    assert not (tmp_path / "out.png").exists()


def test_predict_on_a_missing_image_is_one_clear_error(tmp_path: Path, capsys):
    assert main(["predict", str(tmp_path / "nope.png"), "--model", str(tmp_path / "model.pt")]) == 1
    assert "nope.png" in capsys.readouterr().err
