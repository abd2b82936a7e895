"""The real-data path (`data.source: nist`, what `make repro` runs), end to end and offline.

No test can reach NIST, so archives in NIST's and NLTK's exact layouts are generated
(text_recognizer.data.synthetic), served through file:// mirrors and the loopback HTTP server,
and pinned in params.yaml by their own checksums. The download stages then run the same code on
them as on the real archives: mirrors in order, verification, extraction, error reports.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import h5py
import pytest
import yaml

from tests.pipeline_repo import PipelineRepo, ran_stages
from text_recognizer.data.download import file_digest
from text_recognizer.data.sources import (
    EMNIST_SHA256_KEYS,
    emnist_member_hashes,
    pinned_member,
    synthesize_brown,
    synthesize_emnist,
)
from text_recognizer.data.synthetic import write_brown_corpus, write_emnist_archive
from text_recognizer.metadata import ALL_EMNIST_MEMBERS, EMNIST_MEMBERS, EMNIST_SPLITS, NUM_EMNIST_CLASSES

try:
    from tests.http_server import LoopbackServer
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from http_server import LoopbackServer

ROOT = Path(__file__).resolve().parents[1]
# Tiny counts keep generation and the stages fast; 5 per class gives every class a val glyph.
DATA = {"synthetic_train_per_class": 5, "synthetic_test_per_class": 1, "synthetic_seed": 7, "synthetic_pen_share": 0.5}
PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """gzip.zip and brown.zip as the synthetic source writes them, and the checksums to pin them by."""
    folder = tmp_path_factory.mktemp("archives")
    digests = write_emnist_archive(
        folder / "gzip.zip",
        train_per_class=DATA["synthetic_train_per_class"],
        test_per_class=DATA["synthetic_test_per_class"],
        seed=DATA["synthetic_seed"],
        pen_share=DATA["synthetic_pen_share"],
    )
    pinned = yaml.safe_load((ROOT / "params.yaml").read_text())["download_emnist"]["sha256"]  # the same splits
    by_key = {
        split: {key: digests["sha256"][PurePosixPath(pinned_member(split, key)).name] for key in EMNIST_SHA256_KEYS}
        for split in pinned
    }
    return {
        "emnist": folder / "gzip.zip",
        "md5": digests["md5"],
        "sha256": by_key,
        "brown": folder / "brown.zip",
        "brown_sha256": write_brown_corpus(folder / "brown.zip", seed=DATA["synthetic_seed"]),
    }


@pytest.fixture(scope="module")
def synthetic_outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `data.source: synthetic` writes with the same counts and seed: the files to compare with."""
    folder = tmp_path_factory.mktemp("synthetic")
    synthesize_emnist(
        folder / "emnist",
        train_per_class=DATA["synthetic_train_per_class"],
        test_per_class=DATA["synthetic_test_per_class"],
        seed=DATA["synthetic_seed"],
        pen_share=DATA["synthetic_pen_share"],
    )
    synthesize_brown(folder / "brown.zip", seed=DATA["synthetic_seed"])
    return folder


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback requests (here and in the stages' processes) must not go through a proxy."""
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def dead_url(path: str) -> str:
    """A loopback URL on a port where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def nist_params(archives: dict[str, Any], emnist_mirrors: list[str], brown_mirrors: list[str]) -> dict[str, dict]:
    """params.yaml overrides: the nist source, with mirrors and checksums of the generated archives."""
    fast = {"timeout_s": 5, "retries": 0}
    return {
        "data": {"source": "nist", **DATA},
        "download_emnist": {
            "mirrors": emnist_mirrors,
            "archive_md5": archives["md5"],
            "sha256": dict(archives["sha256"]),
            **fast,
        },
        "download_brown": {"mirrors": brown_mirrors, "sha256": archives["brown_sha256"], **fast},
    }


def files_under(folder: Path) -> list[str]:
    """Every file below `folder` (none when it does not exist), relative to it."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


class StageDir:
    """A working folder with this project's params.yaml (overridden) for running one stage script."""

    def __init__(self, path: Path, overrides: dict[str, dict]) -> None:
        self.path = path
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        for section, values in overrides.items():
            params[section].update(values)
        (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        (path / "nltk_data").mkdir()
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TEXT_RECOGNIZER_DOWNLOADS": str(path / "downloads"),
            "NLTK_DATA": str(path / "nltk_data"),
        }

    def set_param(self, assignment: str) -> None:
        """Change params.yaml as `dvc exp run -S assignment` would, with DVC's own parser."""
        from dvc.utils.hydra import apply_overrides

        apply_overrides(self.path / "params.yaml", [assignment])

    def run(self, script: str, out: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "stages" / script), out],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )


# --- the whole real path under DVC -------------------------------------------------------------


@pytest.mark.slow
def test_repro_on_nist_source_matches_synthetic_source(archives, synthetic_outputs, tmp_path):
    """`dvc repro` of the real download stages: a 404 mirror falls through to a file:// one, brown.zip
    comes over HTTP, and the verified outputs are byte for byte what the synthetic source writes."""
    with LoopbackServer() as server:
        missing = server.add("/missing/gzip.zip", status=404)
        brown_url = server.add("/brown.zip", archives["brown"].read_bytes())
        overrides = nist_params(archives, [missing, archives["emnist"].as_uri()], [brown_url])
        repo = PipelineRepo.create(tmp_path / "repo", overrides)
        repo.env["NLTK_DATA"] = str(tmp_path / "empty_nltk_data")
        result = repo.dvc("repro", "download_emnist", "download_brown", "emnist_hdf5")
        assert len(server.requests_for("/missing/gzip.zip")) == 1
        assert len(server.requests_for("/brown.zip")) == 1

    assert ran_stages(result.stdout) == {"download_emnist", "download_brown", "emnist_hdf5"}, result.stdout
    raw = repo.path / "data" / "raw"
    assert files_under(raw / "emnist") == sorted(PurePosixPath(m).name for m in ALL_EMNIST_MEMBERS)  # every split
    for name in files_under(synthetic_outputs / "emnist"):
        assert (raw / "emnist" / name).read_bytes() == (synthetic_outputs / "emnist" / name).read_bytes(), name
    assert (raw / "brown.zip").read_bytes() == (synthetic_outputs / "brown.zip").read_bytes()
    assert file_digest(raw / "brown.zip") == archives["brown_sha256"]

    with h5py.File(repo.path / "data" / "processed" / "emnist.h5") as f:
        assert len(f["train/labels"]) + len(f["val/labels"]) == NUM_EMNIST_CLASSES * DATA["synthetic_train_per_class"]
        assert len(f["test/labels"]) == NUM_EMNIST_CLASSES * DATA["synthetic_test_per_class"]
    lock = yaml.safe_load((repo.path / "dvc.lock").read_text())
    recorded = lock["stages"]["download_emnist"]["params"]["params.yaml"]
    assert recorded["data"]["source"] == "nist"
    assert recorded["download_emnist"]["sha256"] == archives["sha256"]


# --- failures through the stage scripts ---------------------------------------------------------


@pytest.mark.parametrize("split", ["byclass", "balanced", "letters"])
def test_wrong_member_checksum_set_with_S_fails_and_writes_nothing(archives, tmp_path, split):
    """`-S download_emnist.sha256.<split>.train_images=<wrong>` (DVC's own parser) stops the stage with the
    pinned message naming the member and the key to change; nothing lands in data/, the verified archive stays
    cached. Every pinned split is checked, whichever emnist_hdf5.split will read."""
    stage = StageDir(tmp_path, nist_params(archives, [archives["emnist"].as_uri()], [dead_url("/brown.zip")]))
    stage.set_param(f"emnist_hdf5.split={split}")
    wrong = "ab" * 32
    stage.set_param(f"download_emnist.sha256.{split}.train_images={wrong}")
    pins = yaml.safe_load((tmp_path / "params.yaml").read_text())["download_emnist"]["sha256"]
    assert pins[split]["train_images"] == wrong

    result = stage.run("download_emnist.py", "data/raw/emnist")

    assert result.returncode == 1, result.stdout + result.stderr
    member, actual = pinned_member(split, "train_images"), archives["sha256"][split]["train_images"]
    assert member == f"gzip/emnist-{split}-train-images-idx3-ubyte.gz"
    pinned = f"error: checksum mismatch for archive member {member}: expected sha256 {wrong}, got {actual}"
    assert pinned in result.stderr, result.stderr
    assert f"(pinned by download_emnist.sha256.{split}.train_images in params.yaml)" in result.stderr
    assert "Traceback" not in result.stderr
    assert files_under(tmp_path / "data") == []
    assert files_under(tmp_path / "downloads") == ["emnist/gzip.zip"]  # a fixed hash needs no new download


def test_wrong_archive_md5_fails_and_keeps_nothing(archives, tmp_path):
    stage = StageDir(tmp_path, nist_params(archives, [archives["emnist"].as_uri()], [dead_url("/brown.zip")]))
    wrong = "cd" * 16
    stage.set_param(f"download_emnist.archive_md5={wrong}")

    result = stage.run("download_emnist.py", "data/raw/emnist")

    assert result.returncode == 1, result.stdout + result.stderr
    pinned = f"error: checksum mismatch for gzip.zip: expected md5 {wrong}, got {archives['md5']} (from every mirror)"
    assert pinned in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert files_under(tmp_path / "data") == []
    assert files_under(tmp_path / "downloads") == []  # neither the wrong archive nor a .part of it


@pytest.mark.parametrize("stage_name", ["emnist", "brown"])
def test_unreachable_mirrors_list_every_url_and_point_at_make_offline(archives, tmp_path, stage_name):
    missing_file = (tmp_path / "nowhere" / "archive.zip").as_uri()
    urls = [dead_url(f"/{stage_name}.zip"), missing_file]
    overrides = nist_params(archives, urls, urls)
    stage = StageDir(tmp_path, overrides)
    script, out = {
        "emnist": ("download_emnist.py", "data/raw/emnist"),
        "brown": ("download_brown.py", "data/raw/brown.zip"),
    }[stage_name]

    result = stage.run(script, out)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: could not download" in result.stderr and "from any of 2 mirror(s)" in result.stderr
    lines = result.stderr.splitlines()
    assert any(urls[0] in line and "refused" in line for line in lines), result.stderr
    assert any(missing_file in line and "no such file" in line for line in lines), result.stderr
    assert "No network? `make offline` runs the pipeline on generated look-alike data" in result.stderr
    assert files_under(tmp_path / "data") == []


def test_brown_in_an_nltk_data_folder_needs_no_mirror(archives, synthetic_outputs, tmp_path):
    stage = StageDir(tmp_path, nist_params(archives, [dead_url("/gzip.zip")], [dead_url("/brown.zip")]))
    (tmp_path / "nltk_data" / "corpora").mkdir()
    shutil.copyfile(archives["brown"], tmp_path / "nltk_data" / "corpora" / "brown.zip")

    result = stage.run("download_brown.py", "data/raw/brown.zip")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data/raw/brown.zip").read_bytes() == (synthetic_outputs / "brown.zip").read_bytes()
    assert not (tmp_path / "downloads").exists()  # nothing was downloaded


# --- params.yaml keys that `-S` can address -----------------------------------------------------


def leaf_keys(value: Any, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The key path of every mapping leaf under `prefix` (a list counts as a leaf)."""
    if not isinstance(value, dict):
        return [prefix]
    return [path for key, item in value.items() for path in leaf_keys(item, (*prefix, str(key)))]


def test_every_download_emnist_key_is_dot_free_and_settable_with_S(tmp_path):
    """DVC splits `-S a.b.c=v` on dots, so a key with a dot cannot be set; set each leaf as -S does."""
    section = yaml.safe_load((ROOT / "params.yaml").read_text())["download_emnist"]
    paths = leaf_keys(section, ("download_emnist",))
    assert ("download_emnist", "sha256", "byclass", "train_images") in paths
    assert [path for path in paths if any("." in key for key in path)] == []

    stage = StageDir(tmp_path, {})
    for path in paths:
        if path[-1] == "mirrors":
            continue  # a list: set whole, as the EMNIST hint shows
        stage.set_param(f"{'.'.join(path)}=deadbeef")
        value: Any = yaml.safe_load((tmp_path / "params.yaml").read_text())
        for key in path:
            value = value[key]
        assert value == "deadbeef", path


def test_params_pin_the_published_splits_and_the_md5_covers_the_rest():
    pinned = yaml.safe_load((ROOT / "params.yaml").read_text())["download_emnist"]["sha256"]
    assert list(pinned) == ["byclass", "balanced", "letters"]  # shared/datasets/PROVENANCE.md publishes these
    assert all(list(keys) == list(EMNIST_SHA256_KEYS) for keys in pinned.values())
    assert [pinned_member("byclass", key) for key in EMNIST_SHA256_KEYS] == list(EMNIST_MEMBERS)
    for key in EMNIST_SHA256_KEYS:  # train_images pins ...-train-images-..., and so on
        assert f"-{key.replace('_', '-')}-" in pinned_member("letters", key), key
    hashes = emnist_member_hashes(pinned)
    assert list(hashes) == list(ALL_EMNIST_MEMBERS)  # every member of every split is extracted
    assert {m: h for m, h in hashes.items() if h is not None} == {
        pinned_member(split, key): digest for split, keys in pinned.items() for key, digest in keys.items()
    }
    unpinned = {m for m, h in hashes.items() if h is None}
    assert {m.split("-")[1] for m in unpinned if m.endswith(".gz")} == {"bymerge", "digits", "mnist"}
    assert {m for m in unpinned if m.endswith(".txt")} == {f"gzip/emnist-{s}-mapping.txt" for s in EMNIST_SPLITS}


def test_old_or_missing_sha256_keys_are_rejected_naming_the_expected_ones():
    flat = dict.fromkeys(EMNIST_SHA256_KEYS, "ab" * 32)  # the keys before every split was kept
    with pytest.raises(ValueError, match="has unknown split train_images") as info:
        emnist_member_hashes(flat)
    assert "lacks byclass" in str(info.value)
    assert "expected splits among byclass, bymerge, balanced, letters, digits, mnist" in str(info.value)
    partial = {"byclass": {key: "ab" * 32 for key in EMNIST_SHA256_KEYS[:3]}, "letters": {"train_image": "ab"}}
    with pytest.raises(ValueError, match="byclass lacks test_labels; letters lacks train_images, ") as info:
        emnist_member_hashes(partial)
    assert "letters has unknown train_image" in str(info.value)
    assert "each with the keys train_images, train_labels, test_images, test_labels" in str(info.value)
