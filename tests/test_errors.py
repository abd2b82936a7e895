"""Only the project's own errors become one-line messages; anything else keeps its traceback.

And an unreadable, truncated or missing HDF5 input is one line naming the file and the stage
that makes it, before any work.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from text_recognizer.data.idx import IdxFormatError
from text_recognizer.data.sentences import BrownCorpusError
from text_recognizer.errors import InputError, MissingInputError, ParamError, ProjectError, is_project_error
from text_recognizer.io import require_file, require_h5
from text_recognizer.metadata import EMNIST_CLASSES

ROOT = Path(__file__).resolve().parents[1]


def write_h5(path: Path, n: int = 2000) -> Path:
    """An emnist.h5-shaped file, compressed and chunked like the real one, with random (incompressible) glyphs."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w", libver="earliest") as f:
        f.attrs["mapping"] = json.dumps(list(EMNIST_CLASSES))
        for split in ("train", "val", "test"):
            images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
            f.create_dataset(f"{split}/images", data=images, chunks=(min(n, 256), 28, 28), compression="gzip")
            f.create_dataset(f"{split}/labels", data=rng.integers(0, 62, n, dtype=np.uint8))
    return path


def truncate(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def stage_dir(path: Path) -> Path:
    (path / "params.yaml").write_text(yaml.safe_dump(yaml.safe_load((ROOT / "params.yaml").read_text())))
    return path


def run_stage(cwd: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "stages" / script), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


# --- the HDF5 check --------------------------------------------------------------------------------


def test_require_h5_passes_a_whole_file_and_refuses_every_truncation(tmp_path):
    good = write_h5(tmp_path / "emnist.h5")
    assert require_h5(good, made_by="emnist_hdf5") == good
    for fraction in (0.1, 0.5, 0.9, 0.999):
        cut = truncate(write_h5(tmp_path / f"cut{fraction}.h5"), fraction)
        with pytest.raises(InputError) as err:
            require_h5(cut, made_by="emnist_hdf5")
        message = str(err.value)
        assert message.startswith(f"{cut} is unreadable or truncated (")
        assert message.endswith("): rerun the emnist_hdf5 stage (dvc repro emnist_hdf5)")
    damaged = write_h5(tmp_path / "damaged.h5")  # full length, but the last chunk of glyphs is zeroed
    with h5py.File(damaged) as f:
        images = f["test/images"]
        last = images.id.get_chunk_info(images.id.get_num_chunks() - 1)
    with open(damaged, "r+b") as f:
        f.seek(last.byte_offset)
        f.write(bytes(last.size))
    with pytest.raises(InputError, match=r"damaged\.h5 is unreadable or truncated \(.*\): rerun the emnist_hdf5"):
        require_h5(damaged, made_by="emnist_hdf5")
    (tmp_path / "notes.h5").write_text("not hdf5")
    with pytest.raises(InputError, match=r"notes\.h5 is unreadable"):
        require_h5(tmp_path / "notes.h5", made_by="emnist_lines")


def test_a_missing_input_names_the_stage_that_makes_it(tmp_path):
    with pytest.raises(MissingInputError) as err:
        require_h5(tmp_path / "emnist.h5", made_by="emnist_hdf5")
    assert (
        str(err.value)
        == f"{tmp_path / 'emnist.h5'} does not exist: run the emnist_hdf5 stage first (dvc repro emnist_hdf5)"
    )
    assert isinstance(err.value, FileNotFoundError)  # callers that catch the built-in still do
    with pytest.raises(MissingInputError, match="run the train_cnn stage"):
        require_file(tmp_path / "cnn.pt", made_by="train_cnn")


def test_a_truncated_emnist_h5_is_one_line_from_the_train_cnn_stage(tmp_path):
    cwd = stage_dir(tmp_path)
    truncate(write_h5(cwd / "emnist.h5"), 0.5)
    result = run_stage(cwd, "train_cnn.py", "emnist.h5", "models/cnn.pt", "metrics/train_cnn")
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: emnist.h5 is unreadable or truncated (") and "truncated file" in line, line
    assert line.endswith("): rerun the emnist_hdf5 stage (dvc repro emnist_hdf5)"), line
    assert sorted(p.name for p in cwd.iterdir()) == ["emnist.h5", "params.yaml"]  # nothing written


@pytest.mark.parametrize(
    ("script", "args", "made_by"),
    [
        ("train_cnn.py", ["emnist.h5", "o.pt", "m"], "emnist_hdf5"),
        ("train_line_cnn.py", ["emnist.h5", "o.pt", "m"], "emnist_lines"),
        ("emnist_lines.py", ["emnist.h5", "brown.zip", "o.h5", "o.png", "o.txt"], "emnist_hdf5"),
        (
            "evaluate.py",
            ["cnn.pt", "line_cnn.pt", "lm.npz", "emnist.h5", "emnist.h5", "o.json", "p", "r"],
            "emnist_hdf5",
        ),
    ],
)
def test_every_stage_checks_its_h5_inputs_first(tmp_path, script, args, made_by):
    cwd = stage_dir(tmp_path)
    truncate(write_h5(cwd / "emnist.h5"), 0.9)
    for model in (arg for arg in args if arg.endswith((".pt", ".npz")) and script == "evaluate.py"):
        (cwd / model).touch()  # the evaluate stage checks its models first
    result = run_stage(cwd, script, *args)
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: emnist.h5 is unreadable or truncated"), line
    assert line.endswith(f"rerun the {made_by} stage (dvc repro {made_by})"), line
    (cwd / "emnist.h5").unlink()
    missing = run_stage(cwd, script, *args)
    assert missing.returncode == 1, missing.stderr
    assert missing.stderr.splitlines() == [f"error: emnist.h5 does not exist: run the {made_by} stage first "
                                           f"(dvc repro {made_by})"]  # fmt: skip


# --- which errors become one line ------------------------------------------------------------------


def test_a_plain_exception_inside_a_stage_keeps_its_traceback(tmp_path):
    """A shape bug (numpy, torch) is no user error: `run` must not flatten it to one line."""
    cwd = stage_dir(tmp_path)
    write_h5(cwd / "emnist.h5", n=10)
    program = f"""
import runpy, sys
sys.path.insert(0, {str(ROOT / "stages")!r})
import common
def broken(*args, **kwargs):
    raise ValueError("operands could not be broadcast together with shapes (2,) (3,)")
common.require_h5 = broken
sys.argv = ["train_cnn.py", "emnist.h5", "o.pt", "m"]
runpy.run_path({str(ROOT / "stages" / "train_cnn.py")!r}, run_name="__main__")
"""
    result = subprocess.run([sys.executable, "-c", program], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr, result.stderr
    assert result.stderr.rstrip().endswith("ValueError: operands could not be broadcast together with shapes (2,) (3,)")
    assert "error: " not in result.stderr


@pytest.fixture
def common(monkeypatch):
    """stages/common.py, imported as the stage scripts import it."""
    spec = importlib.util.spec_from_file_location("common", ROOT / "stages" / "common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["stage.py"])
    return module


def raising(err: BaseException):
    def main(argv: list[str]) -> None:
        raise err

    return main


@pytest.mark.parametrize(
    "err",
    [
        ValueError("shape mismatch"),
        FileNotFoundError("libcuda.so"),
        OSError("Unable to open file (truncated file)"),  # what h5py raises
        RuntimeError("CUDA error"),
        KeyError("images"),
    ],
)
def test_run_lets_foreign_errors_through(common, err):
    with pytest.raises(type(err)):
        common.run(raising(err))


def test_run_reports_the_projects_errors_in_one_line_each(common, capsys):
    from text_recognizer.models.checkpoint import CheckpointError  # a project class that predates ProjectError

    cases = [
        (ParamError("model.width must be >= 1, got 0", "char_lm.order must be in 1..10, got 0"),
         "error: model.width must be >= 1, got 0\nerror: char_lm.order must be in 1..10, got 0\n"),
        (MissingInputError("x.h5 does not exist"), "error: x.h5 does not exist\n"),
        (IdxFormatError("a.gz: truncated"), "error: a.gz: truncated\n"),
        (CheckpointError("cnn.pt is not a readable torch checkpoint"),
         "error: cnn.pt is not a readable torch checkpoint\n"),
    ]  # fmt: skip
    for err, expected in cases:
        with pytest.raises(SystemExit) as exit_info:
            common.run(raising(err))
        assert exit_info.value.code == 1
        assert capsys.readouterr().err == expected


def test_project_errors_stay_the_built_in_kinds_callers_catch():
    for cls in (InputError, ParamError, IdxFormatError, BrownCorpusError):
        assert issubclass(cls, ProjectError) and issubclass(cls, ValueError), cls
    assert issubclass(MissingInputError, FileNotFoundError)
    assert is_project_error(ParamError("x")) and not is_project_error(ValueError("x"))
    err = pickle.loads(pickle.dumps(ParamError("a.b must be >= 1, got 0", "c.d must be int, got 'x'")))
    assert err.problems == ["a.b must be >= 1, got 0", "c.d must be int, got 'x'"]
