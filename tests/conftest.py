"""Shared test set-up: one torch thread, and the offline models that reading tests need.

One thread: on a 2-core shared machine torch's default thread pool contends with itself and
with the subprocesses that the pipeline tests start (the determinism test ran 43 s -> 17 s).
The variables are set before torch is imported, so child processes inherit them too.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest
import torch
import yaml

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
MODEL_FILES = ("cnn.pt", "line_cnn.pt", "emnist_lines_test.h5")  # the models, and test lines they never trained on
TEST_LINES = 100  # lines of the offline test split kept beside the models


def offline_overrides() -> dict[str, dict]:
    """The Makefile's offline recipe (`make offline-params`) as {section: {key: value}}."""
    flags = subprocess.run(
        ["make", "-s", "--no-print-directory", "offline-params"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    overrides: dict[str, dict] = {}
    words = shlex.split(flags)
    for flag, assignment in zip(words[::2], words[1::2], strict=True):
        assert flag == "-S", flags
        dotted, value = assignment.split("=", 1)
        section, key = dotted.split(".", 1)
        overrides.setdefault(section, {})[key] = yaml.safe_load(value)
    return overrides


def _code_key(overrides: dict[str, dict]) -> str:
    """Hash of everything that decides the offline models: code, params and the recipe."""
    from tests.pipeline_repo import PROJECT_FILES

    h = hashlib.sha256(repr(sorted(overrides.items())).encode())
    for name in [*PROJECT_FILES, "tests/package_lookalikes.py"]:
        path = ROOT / name
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def offline_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with cnn.pt and line_cnn.pt trained by the offline recipe (`make offline`), and the first
    TEST_LINES test lines of their emnist_lines.h5 (emnist_lines_test.h5, the same layout).

    TEXT_RECOGNIZER_TEST_MODELS names a folder to use as it is. Otherwise the models are trained
    once by the real pipeline in a throw-away repo (about 20 minutes on 2 CPU cores) and kept in
    a cache keyed by a hash of the code and the recipe, so a rerun of the same code reuses them.
    """
    given = os.environ.get("TEXT_RECOGNIZER_TEST_MODELS")
    if given:
        folder = Path(given)
        missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
        assert not missing, f"TEXT_RECOGNIZER_TEST_MODELS={given} lacks {missing}"
        return folder
    from tests.pipeline_repo import PipelineRepo

    overrides = offline_overrides()
    cache_root = Path(os.environ.get("TEXT_RECOGNIZER_TEST_CACHE", Path.home() / ".cache" / "text-recognizer-tests"))
    cached = cache_root / f"offline-models-{_code_key(overrides)}"
    if all((cached / name).is_file() for name in MODEL_FILES):
        return cached
    path = tmp_path_factory.mktemp("offline") / "repo"
    repo = PipelineRepo.create(path, _without_network(overrides, path / "data" / "downloads"))
    repo.env["OMP_NUM_THREADS"] = repo.env["MKL_NUM_THREADS"] = str(os.cpu_count() or 1)  # the one long job
    repo.dvc("repro", "train_cnn", "train_line_cnn")
    staging = cache_root / f".{cached.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ("cnn.pt", "line_cnn.pt"):
        shutil.copy2(repo.path / "models" / name, staging / name)
    _keep_test_lines(repo.path / "data" / "processed" / "emnist_lines.h5", staging / "emnist_lines_test.h5")
    shutil.rmtree(cached, ignore_errors=True)
    staging.rename(cached)
    return cached


def _without_network(overrides: dict[str, dict], downloads: Path) -> dict[str, dict]:
    """The recipe, with the handwriting source's package files replaced by look-alikes put in the repo's
    download cache (PipelineRepo's TEXT_RECOGNIZER_DOWNLOADS): tests never reach the package index, and
    the pins follow the look-alikes."""
    if overrides.get("data", {}).get("source") != "handwriting":
        return overrides
    from tests.package_lookalikes import write_packages

    pins = write_packages(downloads / "handwriting")
    return {**overrides, "download_emnist": {**overrides.get("download_emnist", {}), "handwriting_sha256": pins}}


def _keep_test_lines(lines_h5: Path, out: Path) -> None:
    import h5py

    with h5py.File(lines_h5, "r") as src, h5py.File(out, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for name in ("images", "labels", "lengths"):
            dst[f"test/{name}"] = src["test"][name][:TEST_LINES]
