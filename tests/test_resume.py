"""Long training resumes: the real train_cnn stage killed after epoch 1 and run again ends where an
uninterrupted run ends, to the last bit (CPU); a change of params or data starts afresh."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import signal
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tests import train_stage
from tests.train_stage import STAGE, write_emnist_h5
from text_recognizer.lit_models.callbacks import ResumeCheckpoint, fingerprint, rng_states, set_rng_states
from text_recognizer.models.checkpoint import load_checkpoint
from text_recognizer.params import load_section

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
MODEL = {"num_blocks": 1, "width": 8, "dropout": 0.2}  # dropout: the run draws from torch's global RNG
RUN = {"epochs": 3, "batch_size": 32, "seed": 0, "accelerator": "cpu", "augment": True}
ARGS = ["emnist.h5", "models/cnn.pt", "metrics/train_cnn", "checkpoints/train_cnn"]  # as in dvc.yaml

# The stage, SIGKILLed right after the resume checkpoint of epoch KILL_AFTER_EPOCH (1-based) is written.
KILLED_STAGE = f"""
import os, signal, sys
sys.path.insert(0, {str(STAGE.parent)!r})
import train_cnn
from common import run
from text_recognizer.lit_models.callbacks import ResumeCheckpoint

save = ResumeCheckpoint.on_train_epoch_end

def save_then_die(self, trainer, pl_module):
    save(self, trainer, pl_module)
    if trainer.current_epoch + 1 == int(os.environ["KILL_AFTER_EPOCH"]):
        os.kill(os.getpid(), signal.SIGKILL)

ResumeCheckpoint.on_train_epoch_end = save_then_die
if __name__ == "__main__":
    run(train_cnn.main)
"""


@pytest.fixture(scope="module")
def emnist_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_emnist_h5(tmp_path_factory.mktemp("data") / "emnist.h5", 10, {"train": 20, "val": 5, "test": 2})


def stage_dir(path: Path, emnist_h5: Path, **run: object) -> Path:
    return train_stage.stage_dir(path, emnist_h5, MODEL, {**RUN, **run})


def run_stage(cwd: Path, script: Path = STAGE, **env: str) -> subprocess.CompletedProcess[str]:
    return train_stage.run_stage(cwd, ARGS, script, timeout=300, **env)


def outputs(cwd: Path) -> dict[str, bytes]:
    """Every file of the metrics folder, by relative path."""
    folder = cwd / "metrics/train_cnn"
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_killed_run_resumes_to_the_numbers_of_an_uninterrupted_run(emnist_h5: Path, tmp_path: Path) -> None:
    whole = stage_dir(tmp_path / "whole", emnist_h5)
    done = run_stage(whole)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "from epoch 1" in done.stdout

    cut = stage_dir(tmp_path / "cut", emnist_h5)
    script = cut / "killed_stage.py"
    script.write_text(KILLED_STAGE)
    killed = run_stage(cut, script, KILL_AFTER_EPOCH="1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    saved = list((cut / "checkpoints/train_cnn").glob("*.ckpt"))
    assert len(saved) == 1
    assert not (cut / "models").exists() and not (cut / "metrics/train_cnn").exists()  # nothing published

    resumed = run_stage(cut)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"resuming from {Path('checkpoints/train_cnn') / saved[0].name}" in resumed.stdout
    assert [p.name for p in (cut / "checkpoints/train_cnn").iterdir()] == ["README.txt"]  # nothing left to resume

    a, b = load_checkpoint(whole / "models/cnn.pt"), load_checkpoint(cut / "models/cnn.pt")
    print("uninterrupted:", a.extra["epochs"], "epochs", a.extra["global_step"], "steps", a.extra["val_metrics"])
    print(
        "killed after epoch 1, resumed:",
        b.extra["epochs"],
        "epochs",
        b.extra["global_step"],
        "steps",
        b.extra["val_metrics"],
    )
    assert b.extra["val_metrics"] == a.extra["val_metrics"]  # exactly
    assert (b.extra["epochs"], b.extra["global_step"]) == (a.extra["epochs"], a.extra["global_step"]) == (3, 18)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert outputs(cut) == outputs(whole)  # metrics.json and every plot row, the epochs before the kill too
    assert (
        len(json.loads(outputs(cut)["metrics.json"])) >= 3
        and outputs(cut)["plots/metrics/val/acc.tsv"].count(b"\n") == 4
    )


def _settings(**run: object) -> dict[str, object]:
    train = dataclasses.asdict(load_section("train_cnn", ROOT / "params.yaml", **{**RUN, **run}))
    return {"kind": "char", "model": MODEL, "train": train}


def test_a_change_of_params_or_data_starts_afresh(emnist_h5: Path, tmp_path: Path) -> None:
    data = tmp_path / "emnist.h5"
    shutil.copy(emnist_h5, data)
    same = fingerprint(_settings(), data)
    assert fingerprint(_settings(), data) == same
    assert fingerprint(_settings(lr=0.01), data) != same
    assert fingerprint(_settings(epochs=4), data) != same  # the schedule spans the epochs: not a continuation
    with h5py.File(data, "a") as f:
        f["train/labels"][0] = (int(f["train/labels"][0]) + 1) % 10
    assert fingerprint(_settings(), data) != same

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / f"{same[:20]}.ckpt").write_bytes(b"the old run's")
    (folder / ".abc.ckpt.tmp").write_bytes(b"a killed save")
    changed = ResumeCheckpoint(folder, fingerprint(_settings(), data))
    before = sorted(folder.iterdir())
    assert changed.resume_from(rank_zero=False) is None
    assert sorted(folder.iterdir()) == before  # ranks > 0 delete nothing
    assert changed.resume_from(rank_zero=True) is None
    assert [p.name for p in folder.iterdir()] == ["README.txt"]  # the stale checkpoint and the temporary are gone

    again = ResumeCheckpoint(folder, same)
    again.path.write_bytes(b"this run's")
    assert again.resume_from(rank_zero=True) == again.path
    again.clear()
    assert [p.name for p in folder.iterdir()] == ["README.txt"]


def test_rng_states_round_trip_through_weights_only_loading(tmp_path: Path) -> None:
    states = rng_states()
    torch.save(states, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    set_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]
