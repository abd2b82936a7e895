"""The real train_cnn stage run as a subprocess in a throw-away folder (DDP and resume tests share it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import yaml

from text_recognizer.data.synthetic import render_glyphs
from text_recognizer.metadata import EMNIST_CLASSES

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / "stages" / "train_cnn.py"


def write_emnist_h5(path: Path, classes: int, per_class: dict[str, int]) -> Path:
    """A tiny emnist.h5 in the layout of docs/architecture.md: the first `classes` digits, rendered."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.attrs["mapping"] = json.dumps(list(EMNIST_CLASSES))
        for split, n in per_class.items():
            labels = rng.permutation(np.repeat(np.arange(classes), n)).astype(np.uint8)
            f.create_dataset(f"{split}/images", data=render_glyphs(labels, rng))
            f.create_dataset(f"{split}/labels", data=labels)
            f.create_dataset(f"{split}/source_index", data=np.arange(len(labels), dtype=np.int64))
    return path


def stage_dir(path: Path, emnist_h5: Path, model: dict, run: dict) -> Path:
    """A working folder like the repo root: the data and a params.yaml (the repo's, with tiny overrides)."""
    path.mkdir()
    shutil.copy(emnist_h5, path / "emnist.h5")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"].update(model)
    params["train_cnn"].update(run)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def run_stage(cwd: Path, args: list[str], script: Path = STAGE, timeout: float = 300, **env: str):
    """The stage (or a wrapper script) with this checkout's code first on the path."""
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": pythonpath, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
