"""Atomic writes, and the leftovers of a write that was killed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from text_recognizer.io import OutputError, atomic_path, check_new_output, write_json

ROOT = Path(__file__).resolve().parents[1]


def test_failed_block_leaves_nothing(tmp_path: Path):
    final = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writer_leaves_a_temporary_that_the_next_write_removes(tmp_path: Path):
    final = tmp_path / "lines.h5"
    script = (
        "import os, signal, sys\n"
        "from text_recognizer.io import atomic_path\n"
        f"with atomic_path({str(final)!r}) as tmp:\n"
        "    tmp.mkdir(); (tmp / 'part').write_text('x')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=False)
    leftovers = list(tmp_path.glob(".lines.h5.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].is_dir()  # SIGKILL skipped the clean-up
    other = tmp_path / ".lines.h5.keep"  # not a temporary of ours: must survive
    other.write_text("mine")
    sibling = tmp_path / ".other.h5.123.tmp"  # another output's temporary: not ours to remove
    sibling.write_text("x")
    write_json(final, {"ok": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["lines.h5", ".lines.h5.keep", ".other.h5.123.tmp"])


def test_git_ignores_temporaries():
    for name in ["data/processed/.emnist_lines.h5.ab12.tmp", "metrics/.train_cnn.x1y2.tmp/metrics.json"]:
        result = subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT, check=False)
        assert result.returncode == 0, f"{name} is not ignored by git"


def test_an_existing_directory_is_never_replaced_unless_declared_a_stage_output(tmp_path: Path):
    """atomic_path used to rmtree a directory at the output path: `--show-input notes/` deleted notes/."""
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("mine")
    with pytest.raises(OutputError, match="is a directory"), atomic_path(mine) as tmp:
        tmp.write_text("x")
    assert (mine / "todo.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes"]
    with pytest.raises(OutputError, match="is a directory"), atomic_path(tmp_path / "."):
        pass
    with atomic_path(mine, replace_dir=True) as tmp:  # a stage's own declared output folder (evaluate's plots)
        tmp.mkdir()
        (tmp / "new.json").write_text("{}")
    assert sorted(p.name for p in mine.iterdir()) == ["new.json"]


def test_check_new_output_refuses_what_it_would_destroy(tmp_path: Path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file.png").write_bytes(b"mine")
    assert check_new_output(tmp_path / "new.png") == tmp_path / "new.png"
    assert check_new_output(tmp_path / "deeper" / "new.png") == tmp_path / "deeper" / "new.png"
    assert check_new_output(tmp_path / "file.png", overwrite=True) == tmp_path / "file.png"
    for path, message in [
        (tmp_path / "dir", "is a directory"),
        (f"{tmp_path / 'new'}/", "is a directory"),
        (tmp_path / "file.png", "exists: pass --force to replace it"),
        (tmp_path / "file.png" / "x.png", "file.png is not a directory"),
    ]:
        with pytest.raises(OutputError, match=message):
            check_new_output(path, flag="--force")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file.png"]  # nothing created or removed
