"""Every benchmark runs in its --quick mode and writes JSON with the header that makes a figure comparable.

The scripts run in this process (their `main(argv)`), not as subprocesses: importing torch and Lightning
again costs more than the quick runs themselves on a shared 2-core machine.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
HEADER_KEYS = {"script", "date", "command", "commit", "cpu", "cpus", "python", "torch", "threads", "device"}


@pytest.fixture(autouse=True)
def benchmarks_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import machine and loaders as top-level modules


def run_quick(name: str, tmp_path: Path, *extra: str, device: str = "cpu") -> dict:
    out = tmp_path / f"{name}.json"
    module = importlib.import_module(name)
    assert module.main(["--quick", "--threads", "1", "--device", device, "--json", str(out), *extra]) == 0
    data = json.loads(out.read_text())
    assert data["header"].keys() >= HEADER_KEYS
    assert data["header"]["script"] == f"{name}.py"
    assert data["header"]["device"] == device
    assert data["header"]["threads"] == torch.get_num_threads()
    return data["results"]


def test_loader_speed_quick(tmp_path: Path) -> None:
    results = run_quick("loader_speed", tmp_path)
    for row in ("glyphs", "lines"):
        assert results[row]["ratio"] > 0
        assert len(results[row]["baseline"]) == len(results[row]["project"]) == results["sizes"]["repeats"]


def test_train_speed_quick(tmp_path: Path) -> None:
    results = run_quick("train_speed", tmp_path)
    rows = [key for key in results if key.startswith(("ResNet", "LineCNN"))]
    assert len(rows) == 2, rows  # --quick: model.width alone, and the LineCNN
    for key in rows:
        assert all(rate > 0 for column in ("baseline", "project", "model_alone") for rate in results[key][column])


def test_time_to_accuracy_quick_with_a_params_override(tmp_path: Path) -> None:
    results = run_quick("time_to_accuracy", tmp_path, "-S", "train_cnn.batch_size=16")
    assert 0.0 <= results["baseline"]["best_acc"] <= 1.0
    (project,) = (value for key, value in results.items() if key.startswith("width"))
    assert project["curve"] and project["stopped"]
    assert results["recipe"]["train_cnn"]["batch_size"] == 16  # the override reached the recipe


def test_make_big_emnist_writes_the_emnist_h5_layout(tmp_path: Path) -> None:
    from text_recognizer.data.emnist import SPLITS, read_emnist_h5

    sizes = importlib.import_module("make_big_emnist").build(tmp_path / "emnist.h5", train=620, test=62, pool=2)
    with h5py.File(tmp_path / "emnist.h5") as f:
        assert set(f) == set(SPLITS) and {"images", "labels", "source_index"} <= set(f["train"])
    images, labels = read_emnist_h5(tmp_path / "emnist.h5", "train")
    assert images.shape == (sizes["train"], 28, 28) and images.dtype == np.uint8
    assert sizes["train"] + sizes["val"] == 620 and sizes["test"] == 62
    assert len(np.unique(labels)) == 62 and len(np.unique(images.reshape(len(images), -1), axis=0)) > 124


def test_emnist_lines_speed_small(capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module("emnist_lines_speed")
    module.main(["--lines", "50", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "speed-up over the per-character loop" in out and "# command:" in out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_train_speed_quick_on_cuda(tmp_path: Path) -> None:
    results = run_quick("train_speed", tmp_path, device="cuda")
    assert all("error" not in row for row in results.values() if isinstance(row, dict))


def test_machine_header_without_a_device() -> None:
    machine = importlib.import_module("machine")
    head = machine.header(None, ["noop_repro.py", "--repeats", "1"])
    assert head["command"] == "noop_repro.py --repeats 1" and head["cpu"] == machine.cpu_name()
    assert "torch" not in head  # a benchmark without torch does not pay for importing it


def test_params_overrides_read_yaml_and_reject_a_bad_key() -> None:
    override = importlib.import_module("machine").override
    assert override({"model": {"width": 64}}, ["model.width=16", "train_cnn.augment=false"]) == {
        "model": {"width": 16},
        "train_cnn": {"augment": False},
    }
    with pytest.raises(SystemExit, match=r"section\.key=value"):
        override({}, ["width=16"])


def test_stage_speed_writes_the_stage_params_and_reads_its_metrics(tmp_path: Path) -> None:
    """The stage run itself (a subprocess, ~15 s) is left to `gpu_check.sh --cpu-smoke`."""
    import yaml

    stage_speed = importlib.import_module("stage_speed")
    stage_speed.stage_params(tmp_path, "cuda", 2, True, ["model.width=8"])
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert params["train_cnn"] | {"epochs": 2, "accelerator": "gpu", "compile": True} == params["train_cnn"]
    source = yaml.safe_load((BENCHMARKS.parent / "params.yaml").read_text())
    assert params["model"]["width"] == 8 and params["train_line_cnn"] == source["train_line_cnn"]
    assert stage_speed.final_metrics(tmp_path, ["INFO ...", "{'val/acc': 0.5, 'val/loss': 2.0}"]) == {
        "val/acc": 0.5,
        "val/loss": 2.0,
    }
