"""Data-parallel training from params alone: the real train_cnn stage on 2 CPU processes (DDP over gloo)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests import train_stage
from tests.train_stage import STAGE, write_emnist_h5
from text_recognizer.models.checkpoint import load_checkpoint
from text_recognizer.params import ModelParams, ParamError, TrainParams, load_section
from text_recognizer.training import resolve_hardware, train

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS = 10, 16, 4  # 160 train glyphs: 80 per rank, 5 steps of 16
MODEL = {"num_blocks": 1, "width": 8}
RUN = {"epochs": 2, "batch_size": 16, "seed": 0, "accelerator": "cpu", "devices": 2, "strategy": "ddp"}
ARGS = ["emnist.h5", "models/cnn.pt", "metrics/train_cnn"]  # as in dvc.yaml, relative to the stage's cwd

# Wraps the stage so that one rank raises mid-training. Lightning re-runs sys.argv[0] for the
# other ranks, so every rank runs this file and gets the patch; each child rank leaves its pid.
FAILING_STAGE = f"""
import os, sys
sys.path.insert(0, {str(STAGE.parent)!r})
if os.environ.get("LOCAL_RANK", "0") != "0":
    with open(f"rank{{os.environ['LOCAL_RANK']}}.pid", "w") as f:
        f.write(str(os.getpid()))
import train_cnn
from common import run
from text_recognizer.lit_models.classifier import CharClassifier

step = CharClassifier.training_step

def failing_step(self, batch, batch_idx):
    if self.global_rank == int(os.environ["FAIL_RANK"]) and self.global_step == 3:
        raise ValueError(f"injected failure on rank {{self.global_rank}}")
    return step(self, batch, batch_idx)

CharClassifier.training_step = failing_step
if __name__ == "__main__":
    run(train_cnn.main)
"""


@pytest.fixture(scope="module")
def emnist_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    per_class = {"train": TRAIN_PER_CLASS, "val": VAL_PER_CLASS, "test": 2}
    return write_emnist_h5(tmp_path_factory.mktemp("data") / "emnist.h5", CLASSES, per_class)


def train_params(**overrides: object) -> TrainParams:
    """params.yaml's train_cnn section with `overrides` (sections have no defaults)."""
    return load_section("train_cnn", ROOT / "params.yaml", **overrides)


def model_params() -> ModelParams:
    return load_section("model", ROOT / "params.yaml", **MODEL)


def stage_dir(path: Path, emnist_h5: Path) -> Path:
    return train_stage.stage_dir(path, emnist_h5, MODEL, RUN)


def run_stage(cwd: Path, script: Path = STAGE, **env: str) -> subprocess.CompletedProcess[str]:
    return train_stage.run_stage(cwd, ARGS, script, timeout=180, **env)


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]


def test_two_process_ddp_stage_writes_one_checkpoint_and_one_metrics_folder(emnist_h5: Path, tmp_path: Path) -> None:
    cwd = stage_dir(tmp_path / "ddp", emnist_h5)
    result = run_stage(cwd)
    assert result.returncode == 0, result.stderr[-4000:]

    # Exactly one of each output, written once (by rank 0), nothing else anywhere.
    assert sorted(p.name for p in cwd.iterdir()) == ["emnist.h5", "metrics", "models", "params.yaml"]
    assert [p.name for p in (cwd / "models").iterdir()] == ["cnn.pt"]
    assert [p.name for p in (cwd / "metrics").iterdir()] == ["train_cnn"]
    assert sorted(p.name for p in (cwd / "metrics/train_cnn").iterdir()) == ["metrics.json", "plots"]
    assert temporaries(cwd) == []

    loaded = load_checkpoint(cwd / "models/cnn.pt", expected_kind="char")
    extra = loaded.extra
    assert (extra["devices"], extra["strategy"], extra["world_size"], extra["accelerator"]) == (2, "ddp", 2, "cpu")
    # Each rank took its own half of the train split: 80 glyphs / 16 = 5 steps per epoch.
    assert extra["global_step"] == RUN["epochs"] * (CLASSES * TRAIN_PER_CLASS // 2 // RUN["batch_size"]) == 10
    summary = json.loads((cwd / "metrics/train_cnn/metrics.json").read_text())
    assert summary["val"]["loss"] == pytest.approx(extra["val_metrics"]["val/loss"])

    # The same data and batch size on one process: twice the steps per epoch (one epoch, to save time).
    single = train_params(**{**RUN, "epochs": 1, "devices": 1, "strategy": "auto"})
    train(cwd / "emnist.h5", model_params(), single, checkpoint_path=tmp_path / "one.pt", log_dir=tmp_path / "one")
    assert load_checkpoint(tmp_path / "one.pt").extra["global_step"] == 2 * extra["global_step"] // RUN["epochs"]

    # The logged val metrics are global (synced over both ranks' halves), and are those of the saved weights.
    with h5py.File(cwd / "emnist.h5") as f:
        x = torch.from_numpy(f["val/images"][:]).unsqueeze(1).float() / 255
        y = torch.from_numpy(f["val/labels"][:].astype(np.int64))
    with torch.no_grad():
        logits = loaded.model(x)

    def loss(rows: slice) -> float:  # with the run's label smoothing, as the checkpoint records it
        return float(F.cross_entropy(logits[rows], y[rows], label_smoothing=extra["train"]["label_smoothing"]))

    half = len(y) // 2  # rank 0's shard of the unshuffled val split
    assert extra["val_metrics"]["val/loss"] == pytest.approx(loss(slice(None)), abs=1e-5)
    assert extra["val_metrics"]["val/loss"] != pytest.approx(loss(slice(0, half)), abs=1e-5)  # not rank 0's alone
    assert extra["val_metrics"]["val/acc"] == pytest.approx(float((logits.argmax(1) == y).float().mean()))


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("fail_rank", [1, 0], ids=["child-rank-fails", "rank-0-fails"])
def test_a_failing_rank_leaves_the_previous_outputs_untouched(emnist_h5: Path, tmp_path: Path, fail_rank: int) -> None:
    cwd = stage_dir(tmp_path / "fail", emnist_h5)
    (cwd / "models").mkdir()
    (cwd / "models/cnn.pt").write_bytes(b"previous checkpoint")
    (cwd / "metrics/train_cnn").mkdir(parents=True)
    (cwd / "metrics/train_cnn/metrics.json").write_text("{}")
    script = cwd / "failing_stage.py"
    script.write_text(FAILING_STAGE)

    result = run_stage(cwd, script, FAIL_RANK=str(fail_rank))  # rank 0 writes, rank 1 does not
    assert result.returncode != 0
    assert f"injected failure on rank {fail_rank}" in result.stderr, result.stderr[-3000:]
    assert (cwd / "models/cnn.pt").read_bytes() == b"previous checkpoint"
    assert [p.name for p in (cwd / "metrics/train_cnn").iterdir()] == ["metrics.json"]
    assert (cwd / "metrics/train_cnn/metrics.json").read_text() == "{}"
    assert temporaries(cwd) == []
    assert sorted(p.name for p in (cwd / "metrics").iterdir()) == ["train_cnn"]
    child = int((cwd / "rank1.pid").read_text())
    assert not running(child)  # stopped with rank 0, not left waiting for a peer that is gone


def test_device_combinations_are_checked_before_training(monkeypatch: pytest.MonkeyPatch) -> None:
    # devices > 1 with strategy auto means ddp (what Lightning picks for a script), recorded as such.
    hardware = resolve_hardware(train_params(accelerator="cpu", devices=2), section="train_cnn")
    assert (hardware.accelerator, hardware.devices, hardware.strategy) == ("cpu", 2, "ddp")
    assert resolve_hardware(train_params(accelerator="cpu")).strategy == "auto"  # one process

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParamError, match=r"train_line_cnn\.accelerator"):
        resolve_hardware(train_params(accelerator="gpu"), section="train_line_cnn")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ParamError, match=r"train_cnn\.devices=4, but torch sees 2 CUDA device"):
        resolve_hardware(train_params(accelerator="gpu", devices=4, strategy="ddp"), section="train_cnn")
    gpus = resolve_hardware(train_params(accelerator="auto", devices=2, strategy="ddp"), section="train_cnn")
    assert (gpus.accelerator, gpus.precision, gpus.strategy) == ("gpu", "bf16-mixed", "ddp")
    with pytest.raises(ParamError, match=r"train_cnn\.devices"):
        resolve_hardware(train_params(accelerator="mps", devices=2), section="train_cnn")
