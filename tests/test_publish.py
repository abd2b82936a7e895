"""Who writes a run's outputs and when (text_recognizer.processes), what it writes without dvclive,
and a stage that stops when its parent dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h5py
import numpy as np
import pytest
import yaml

from text_recognizer.data.synthetic import render_glyphs
from text_recognizer.lit_models.callbacks import DvcliveMetrics, JsonMetrics
from text_recognizer.metadata import EMNIST_CLASSES
from text_recognizer.processes import DistributedRunError, RankZeroOutputs, stop_with_parent

ROOT = Path(__file__).resolve().parents[1]


def fake_trainer(*children: subprocess.Popen[bytes], rank: int = 0) -> Any:
    """What RankZeroOutputs reads of a Trainer: its rank and the launcher's child processes."""
    launcher = SimpleNamespace(procs=list(children))
    return SimpleNamespace(is_global_zero=rank == 0, global_rank=rank, strategy=SimpleNamespace(launcher=launcher))


def child(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def running(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


@pytest.fixture
def no_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(name, raising=False)


def test_rank_zero_publishes_the_folder_only_after_every_child_exited(tmp_path: Path, no_rank: None) -> None:
    final = tmp_path / "metrics"
    final.mkdir()
    (final / "old.json").write_text("{}")
    ok = child("import time; time.sleep(0.5)")
    with RankZeroOutputs(final) as outputs:
        assert outputs.log_dir is not None and outputs.log_dir.parent == tmp_path and outputs.log_dir != final
        outputs.log_dir.mkdir()
        (outputs.log_dir / "metrics.json").write_text('{"new": 1}')
        outputs.watch(fake_trainer(ok))
        assert (final / "old.json").exists()  # nothing published during the run
        assert outputs.all_ranks_done()
        assert ok.returncode == 0  # waited for
    assert [p.name for p in tmp_path.iterdir()] == ["metrics"]
    assert [p.name for p in final.iterdir()] == ["metrics.json"]


def test_a_failure_on_rank_zero_publishes_nothing_and_stops_the_children(tmp_path: Path, no_rank: None) -> None:
    final = tmp_path / "metrics"
    final.mkdir()
    (final / "old.json").write_text("{}")
    waiting = child("import time; time.sleep(120)")  # a rank blocked in a collective, for a peer that is gone
    with pytest.raises(ValueError, match="injected"), RankZeroOutputs(final) as outputs:
        assert outputs.log_dir is not None
        outputs.log_dir.mkdir()
        (outputs.log_dir / "metrics.json").write_text("{}")
        outputs.watch(fake_trainer(waiting))
        raise ValueError("injected")
    assert waiting.returncode == -signal.SIGKILL  # killed and reaped
    assert [p.name for p in tmp_path.iterdir()] == ["metrics"]  # no temporary left
    assert [p.name for p in final.iterdir()] == ["old.json"]


def test_a_child_that_failed_stops_the_publication(tmp_path: Path, no_rank: None) -> None:
    failed, slow = child("raise SystemExit(3)"), child("import time; time.sleep(120)")
    failed.wait()
    with pytest.raises(DistributedRunError, match="rank 1 exited with code 3"), RankZeroOutputs(tmp_path / "m") as out:
        out.watch(fake_trainer(failed, slow))
        out.all_ranks_done()
    assert not running(slow)
    assert list(tmp_path.iterdir()) == []

    hanging = child("import time; time.sleep(120)")
    still = r"rank\(s\) \[1\] still running"
    with pytest.raises(DistributedRunError, match=still), RankZeroOutputs(tmp_path / "m", child_timeout_s=0.2) as out:
        out.watch(fake_trainer(hanging))
        out.all_ranks_done()
    assert not running(hanging)


def test_other_ranks_claim_nothing_and_a_confused_launcher_fails_loudly(
    tmp_path: Path, no_rank: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DistributedRunError, match="global rank 1"), RankZeroOutputs(tmp_path / "m") as outputs:
        outputs.watch(fake_trainer(rank=1))  # the environment says rank 0, Lightning says 1
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setenv("LOCAL_RANK", "1")
    with RankZeroOutputs(tmp_path / "m") as outputs:
        assert outputs.log_dir is None and not outputs.rank_zero
        outputs.watch(fake_trainer(rank=1))
        assert not outputs.all_ranks_done()
    assert list(tmp_path.iterdir()) == []


ROWS = [
    (4, {"train/loss": 2.5, "val/acc": 0.125, "val/loss": 2.25}),
    (9, {"train/loss": 1.0, "val/acc": 0.5, "val/loss": float("nan")}),
]


def test_without_dvclive_the_same_metrics_files_are_written(tmp_path: Path) -> None:
    pytest.importorskip("dvclive")
    live, plain = DvcliveMetrics(tmp_path / "live"), JsonMetrics(tmp_path / "plain")
    for step, metrics in ROWS:
        live.log(step, metrics)
        plain.log(step, metrics)
    live.close()  # frees the repository dvclive opened

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(tmp_path / "plain") == files(tmp_path / "live")
    assert sorted(files(tmp_path / "plain")) == [
        "metrics.json",
        "plots/metrics/train/loss.tsv",
        "plots/metrics/val/acc.tsv",
        "plots/metrics/val/loss.tsv",
    ]
    assert json.loads((tmp_path / "plain/metrics.json").read_text()) == {
        "train": {"loss": 1.0},
        "val": {"acc": 0.5, "loss": "nan"},
        "step": 9,
    }


# Runs the stage with dvc and dvclive made unimportable, as on a GPU machine that has neither.
WITHOUT_DVCLIVE = f"""
import importlib.abc, runpy, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("dvc", "dvclive"):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Absent())
sys.path.insert(0, {str(ROOT / "stages")!r})
sys.argv = [{str(ROOT / "stages" / "train_cnn.py")!r}, *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
assert "dvclive" not in sys.modules and "dvc" not in sys.modules
"""


def small_stage_dir(path: Path, **train: object) -> Path:
    path.mkdir()
    rng = np.random.default_rng(0)
    with h5py.File(path / "emnist.h5", "w") as f:
        f.attrs["mapping"] = json.dumps(list(EMNIST_CLASSES))
        for split, n in {"train": 8, "val": 2, "test": 1}.items():
            labels = rng.permutation(np.repeat(np.arange(10), n)).astype(np.uint8)
            f.create_dataset(f"{split}/images", data=render_glyphs(labels, rng))
            f.create_dataset(f"{split}/labels", data=labels)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"].update({"num_blocks": 1, "width": 8})
    params["train_cnn"].update({"epochs": 1, "batch_size": 16, "accelerator": "cpu", **train})
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def stage_env(**extra: str) -> dict[str, str]:
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath, **extra}


@pytest.mark.slow
def test_the_train_stage_runs_without_dvc_and_dvclive(tmp_path: Path) -> None:
    cwd = small_stage_dir(tmp_path / "stage")
    (cwd / "without_dvclive.py").write_text(WITHOUT_DVCLIVE)
    result = subprocess.run(
        [sys.executable, "without_dvclive.py", "emnist.h5", "models/cnn.pt", "metrics/train_cnn"],
        cwd=cwd,
        env=stage_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "dvclive is not installed" in result.stderr
    summary = json.loads((cwd / "metrics/train_cnn/metrics.json").read_text())
    assert set(summary) == {"train", "val", "step"} and set(summary["val"]) == {"acc", "loss"}
    assert (cwd / "metrics/train_cnn/plots/metrics/train/loss.tsv").read_text().splitlines()[0] == "step\tloss"
    assert (cwd / "models/cnn.pt").is_file()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_train_stage_stops_when_its_parent_dies(tmp_path: Path) -> None:
    cwd = small_stage_dir(tmp_path / "stage", epochs=10_000)  # far longer than the test
    log = cwd / "stage.log"
    # `; true` keeps sh waiting as the parent (a lone command would be exec'd in its place).
    stage_cmd = f"{sys.executable} {ROOT / 'stages/train_cnn.py'} emnist.h5 models/cnn.pt metrics/train_cnn ck"
    command = f"{stage_cmd} > {log} 2>&1; true"
    shell = subprocess.Popen(["sh", "-c", command], cwd=cwd, env=stage_env(DVC_ROOT=str(cwd)))  # as DVC runs it
    try:
        deadline = time.monotonic() + 180
        while b"from epoch 1" not in (log.read_bytes() if log.exists() else b""):  # training has started
            assert shell.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        (stage,) = _children(shell.pid)
        shell.send_signal(signal.SIGKILL)  # the parent dies without passing anything on
        shell.wait()
        deadline = time.monotonic() + 20
        while _alive(stage) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(stage), f"the stage (pid {stage}) outlived its parent by 20 s"
    finally:
        for pid in _children(shell.pid) if shell.poll() is None else []:
            os.kill(pid, signal.SIGKILL)
        if shell.poll() is None:
            shell.kill()
    assert not (cwd / "models").exists() and list((cwd / "metrics").iterdir()) == []  # nothing published or left


def test_only_processes_run_by_a_parent_are_tied_to_it(monkeypatch: pytest.MonkeyPatch, no_rank: None) -> None:
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert stop_with_parent() is False  # a user's own `nohup python stages/train_cnn.py` outlives its shell


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_stop_with_parent_signals_an_orphan_at_once() -> None:
    """A process whose parent is already gone when it asks gets SIGTERM straight away (no wait)."""
    # The first getppid (before prctl) reads 12345, the second (after) reads 1: orphaned in between.
    probe = (
        "import os, sys\n"
        "calls = iter([12345, 1])\n"
        "os.getppid = lambda: next(calls)\n"
        "from text_recognizer.processes import stop_with_parent\n"
        "stop_with_parent()\n"
        "import time; time.sleep(30)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=stage_env(DVC_ROOT="."), capture_output=True, timeout=60)
    assert result.returncode == 128 + signal.SIGTERM  # SystemExit from the SIGTERM handler, so `finally` runs
