"""Every benchmark runs in its --quick mode and writes JSON with the header that makes a figure comparable.

The scripts run in this process (their `main(argv)`), not as subprocesses: importing torch and Lightning
again costs more than the quick runs themselves on a shared 2-core machine.
"""

from __future__ import annotations

import importlib
import itertools
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from text_recognizer.metadata import NUM_EMNIST_CLASSES

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
HEADER_KEYS = {"script", "date", "command", "commit", "cpu", "cpus", "python", "torch", "threads", "device"}
CHANCE = 1 / NUM_EMNIST_CLASSES  # a guess's accuracy


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


class Clock:
    """A perf_counter that moves one second per reading: a timed loop's rate is then what it counted."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 1.0
        return self.now


def finite_rates(values: list[float], repeats: int) -> bool:
    return len(values) == repeats and all(math.isfinite(v) and v > 0 for v in values)


def mean(values: list[float]) -> float:
    """The mean that the benchmarks' ratios divide (loaders.mean_std's)."""
    return importlib.import_module("loaders").mean_std(values)[0]


def test_loader_speed_quick(tmp_path: Path) -> None:
    """Which loader is faster is not asked: on a shared 2-core CPU the quick ratios (1.1x glyphs, 0.4x lines here)
    move with the load. What the figures must show: finite rates, the ratio of their means, and the cost of
    augmenting on the CPU (DeviceLoader ~10x slower with it, here), which a rate that ignored its input would miss."""
    results = run_quick("loader_speed", tmp_path)
    repeats = results["sizes"]["repeats"]
    for row in ("glyphs", "lines"):
        rates = results[row]
        assert all(finite_rates(rates[c], repeats) for c in ("baseline", "project", "project_no_aug")), rates
        assert rates["ratio"] == pytest.approx(mean(rates["project"]) / mean(rates["baseline"]))
        assert mean(rates["project_no_aug"]) > mean(rates["project"]), rates


def test_loader_speed_counts_the_samples_of_whole_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a clock that ticks once per reading, each rate is the samples of one epoch: warm-up batches left out."""
    loader_speed = importlib.import_module("loader_speed")
    monkeypatch.setattr(loader_speed, "time", Clock())
    epochs = []

    def make_epoch():
        epochs.append(None)
        return iter([(torch.zeros(8, 1),), (torch.zeros(8, 1),), (torch.zeros(8, 1),), (torch.zeros(5, 1),)])

    assert loader_speed.epoch_rates(make_epoch, torch.device("cpu"), repeats=3) == [29.0, 29.0, 29.0]
    assert len(epochs) == 1 + 3  # the warm-up's, then one per repeat


def test_train_speed_quick(tmp_path: Path) -> None:
    results = run_quick("train_speed", tmp_path)
    rows = [key for key in results if key.startswith(("ResNet", "LineCNN"))]
    assert len(rows) == 2, rows  # --quick: model.width alone, and the LineCNN
    for key in rows:  # which column is faster is not asked (see test_loader_speed_quick): finite, and the ratios'
        row = results[key]
        assert all(finite_rates(row[c], results["sizes"]["repeats"]) for c in ("baseline", "project", "model_alone"))
        assert row["ratio"] == pytest.approx(mean(row["project"]) / mean(row["baseline"]))
        assert row["project_over_alone"] == pytest.approx(mean(row["project"]) / mean(row["model_alone"]))


def test_train_speed_counts_the_samples_of_its_timed_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a clock that ticks once per reading, a chunk's rate is the samples of the whole batches it trained on."""
    train_speed = importlib.import_module("train_speed")
    monkeypatch.setattr(train_speed, "time", Clock())
    steps = []
    monkeypatch.setattr(train_speed, "train_step", lambda model, opt, loss_fn, batch: steps.append(len(batch[0])))
    row: dict = {}
    batches = itertools.repeat((torch.zeros(4, 1),))
    size = {"warmup": 2, "repeats": 3}
    assert train_speed.rates(None, None, None, batches, size, 30, torch.device("cpu"), row) == [12.0, 12.0, 12.0]
    assert len(steps) == 2 + 3 * 3 and row["warmup_s"] == 1.0  # 2 warm-up steps, then 3 batches to pass 30 / 3


def test_memory_format_quick(tmp_path: Path) -> None:
    """Both networks time a training step in both formats (which is faster is the figure, not asked here)."""
    results = run_quick("memory_format", tmp_path, "-S", "model.width=8")
    assert set(results) == {"char resnet", "line ctc (lstm)"}, results
    for times in results.values():
        assert set(times) == {"contiguous", "channels_last"} and all(0 < t < 60 for t in times.values()), times


def test_line_stem_quick(tmp_path: Path) -> None:
    """Both stems of the LineCNN time a training step (which is faster is the figure, not asked here)."""
    results = run_quick("line_stem", tmp_path, "-S", "line_model.fc_dim=16")
    assert set(results) == {"line ctc"} and set(results["line ctc"]) == {"full", "strided"}, results
    assert all(0 < t < 60 for t in results["line ctc"].values()), results


def test_time_to_accuracy_quick_with_a_params_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The baseline trains 3 epochs (--quick's 1 leaves it at chance: 0.018), so its target is one a model reaches by
    learning: 0.165 here, held-out accuracy by epoch 0.018, 0.065, 0.165 (on the CPU the run is deterministic)."""
    monkeypatch.setitem(importlib.import_module("time_to_accuracy").SIZES["quick"], "epochs", 3)
    results = run_quick("time_to_accuracy", tmp_path, "-S", "train_cnn.batch_size=16")
    baseline = results["baseline"]
    assert len(baseline["curve"]) == results["sizes"]["epochs"] == 3
    assert baseline["best_acc"] == max(acc for _, acc in baseline["curve"]) >= CHANCE + 0.1, baseline
    (project,) = (value for key, value in results.items() if key.startswith("width"))
    assert project["curve"] and project["stopped"]
    if project["stopped"] == "reached":  # else its time budget ran out: a timing, which a loaded machine moves
        assert project["curve"][-1][1] >= baseline["best_acc"] and project["time_s"] == project["curve"][-1][0]
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


def test_labs_table_groups_the_queues_experiments_by_model_over_seeds() -> None:
    """benchmarks/labs.py's table from `dvc exp show --csv` rows: each model's runs over the seeds, and the runs of
    another family (the line sweep keeps the char model at seed 0) not counted twice."""
    import pandas as pd

    labs = importlib.import_module("labs")
    rows = []

    def run(
        arch="resnet", cseed=0, head="lstm", larch="ctc", lseed=0, overlap=0.33, acc=0.8, cer=0.01, cs=10.0, ls=20.0
    ):
        rows.append({"Experiment": f"e{len(rows)}", "typ": "branch_commit", "model.arch": arch, "train_cnn.seed": cseed,
                     "line_model.head": head, "line_model.arch": larch, "train_line_cnn.seed": lseed,
                     "emnist_lines.max_overlap": overlap, "metrics/evaluate.json:cnn.test_acc": acc,
                     "line_cnn.test_cer": cer, "line_cnn.greedy.test_cer": 2 * cer, "train_cnn_s": cs,
                     "train_line_cnn_s": ls})  # fmt: skip

    for seed, acc in enumerate([0.70, 0.72, 0.74]):
        run(arch="mlp", cseed=seed, acc=acc)
    for seed, cer in enumerate([0.010, 0.020, 0.030]):
        run(head="none", lseed=seed, cer=cer)
        run(lseed=seed, cer=cer / 10)  # LineCNN + LSTM
    run(arch="resnet", cseed=0, acc=0.9, cer=0.001)  # the chars sweep's resnet seed 0: its line model is seed 0 again
    run(larch="simple", overlap=0.0, lseed=1, cer=0.2)
    rows.append({**rows[0], "typ": "workspace"})  # not an experiment
    table = labs.labs_table(pd.DataFrame(rows).query("typ != 'workspace'"))
    assert table["mlp"]["test_acc"] == "0.7200 ± 0.0200 (n=3)"
    assert table["LineCNN"]["test_cer"] == "0.0200 ± 0.0100 (n=3)"
    assert table["LineCNN + LSTM"]["test_cer"].endswith("(n=3)")  # seed 0 counted once
    assert table["LineCNN + LSTM"]["greedy_test_cer"] == "0.0040 ± 0.0020 (n=3)"
    assert table["LineCNNSimple (no overlap)"]["test_cer"] == "0.2000 ± 0.0000 (n=1)"
    assert table["cnn"]["test_acc"] == "–"  # no run: said, not invented
    assert table["mlp"]["train_s"] == "10 ± 0 (n=3)"
