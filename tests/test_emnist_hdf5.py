"""emnist.h5: splits, stratification, balancing, determinism, EMNIST's other splits and the checks on bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from text_recognizer.data.emnist import (
    balance_indices,
    build_emnist_files,
    build_emnist_hdf5,
    check_lines_source,
    load_official,
    main,
    mapping_path,
    official_paths,
    read_emnist_h5,
    stratified_split,
)
from text_recognizer.data.idx import emnist_to_upright, read_idx, upright_to_emnist, write_idx
from text_recognizer.data.sources import synthesize_emnist
from text_recognizer.errors import InputError, MissingInputError
from text_recognizer.metadata import (
    EMNIST_CLASSES,
    EMNIST_SPLITS,
    NUM_EMNIST_CLASSES,
    SPLIT_CLASSES,
    official_mapping_text,
)

VAL_FRACTION = 0.2
PER_CLASS = {"train": 4, "test": 2}  # glyphs per ByClass class in the offline archive's files
SETTINGS = {"val_fraction": 0.25, "balance": False, "seed": 5}


def _write_raw(raw_dir: Path, train_labels: np.ndarray, test_labels: np.ndarray, seed: int = 0) -> dict:
    """Official-layout files with random upright images (stored transposed, as NIST does)."""
    rng = np.random.default_rng(seed)
    raw_dir.mkdir(parents=True, exist_ok=True)
    upright = {}
    for split, labels in (("train", train_labels), ("test", test_labels)):
        images = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
        images_path, labels_path = official_paths(raw_dir, "byclass")[split]
        write_idx(images_path, upright_to_emnist(images))
        write_idx(labels_path, np.asarray(labels, dtype=np.uint8))
        upright[split] = images
    mapping_path(raw_dir, "byclass").write_text(official_mapping_text("byclass"))
    return upright


def _imbalanced_labels(rng: np.random.Generator) -> np.ndarray:
    """Every class 2..13 times (about 460 samples), shuffled."""
    counts = 2 + np.arange(NUM_EMNIST_CLASSES) % 12
    return rng.permutation(np.repeat(np.arange(NUM_EMNIST_CLASSES), counts)).astype(np.uint8)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    train_labels = _imbalanced_labels(rng)
    test_labels = rng.integers(0, NUM_EMNIST_CLASSES, 150).astype(np.uint8)
    raw_dir = tmp_path_factory.mktemp("raw")
    upright = _write_raw(raw_dir, train_labels, test_labels)
    return raw_dir, upright, train_labels, test_labels


@pytest.fixture(scope="module")
def built(raw, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("processed") / "emnist.h5"
    sizes = build_emnist_hdf5(raw[0], out, emnist_split="byclass", val_fraction=VAL_FRACTION, balance=False, seed=3)
    return out, sizes


def _split(path: Path, split: str) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {name: f[split][name][()] for name in ("images", "labels", "source_index")}


def test_layout_dtypes_and_attributes(built) -> None:
    path, sizes = built
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == ["test", "train", "val"]
        for split in ("train", "val", "test"):
            assert f[split]["images"].dtype == np.uint8 and f[split]["images"].shape == (sizes[split], 28, 28)
            assert f[split]["labels"].dtype == np.uint8 and f[split]["labels"].shape == (sizes[split],)
            assert f[split]["source_index"].dtype == np.int64
        assert json.loads(f.attrs["mapping"]) == list(EMNIST_CLASSES)
        assert f.attrs["emnist_split"] == "byclass"
        assert f.attrs["val_fraction"] == VAL_FRACTION
        assert not f.attrs["balance"]
        assert f.attrs["seed"] == 3


def test_split_sizes_and_stratification(built, raw) -> None:
    path, sizes = built
    _, _, train_labels, test_labels = raw
    assert sizes["train"] + sizes["val"] == len(train_labels)
    assert sizes["test"] == len(test_labels)
    val = _split(path, "val")
    for c in range(NUM_EMNIST_CLASSES):
        n_c = int(np.sum(train_labels == c))
        in_val = int(np.sum(val["labels"] == c))
        assert abs(in_val - VAL_FRACTION * n_c) <= 1, (c, n_c, in_val)
        assert 1 <= in_val < n_c  # every class is both trained on and measured


def test_train_and_val_partition_the_official_train_file(built, raw) -> None:
    path, _ = built
    _, upright, train_labels, _ = raw
    train, val = _split(path, "train"), _split(path, "val")
    assert np.intersect1d(train["source_index"], val["source_index"]).size == 0
    union = np.union1d(train["source_index"], val["source_index"])
    np.testing.assert_array_equal(union, np.arange(len(train_labels)))
    for split in (train, val):
        assert np.all(np.diff(split["source_index"]) > 0)  # sorted, no duplicates
        np.testing.assert_array_equal(split["labels"], train_labels[split["source_index"]])
        np.testing.assert_array_equal(split["images"], upright["train"][split["source_index"]])


def test_test_split_is_the_official_test_file_upright_in_order(built, raw) -> None:
    path, _ = built
    _, upright, _, test_labels = raw
    images, labels = read_emnist_h5(path, "test")
    np.testing.assert_array_equal(images, upright["test"])
    np.testing.assert_array_equal(labels, test_labels)
    np.testing.assert_array_equal(_split(path, "test")["source_index"], np.arange(len(test_labels)))


def test_two_builds_are_byte_identical_and_seed_matters(built, raw, tmp_path: Path) -> None:
    path, _ = built
    again = tmp_path / "again.h5"
    build_emnist_hdf5(raw[0], again, emnist_split="byclass", val_fraction=VAL_FRACTION, balance=False, seed=3)
    assert hashlib.sha256(again.read_bytes()).hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    other = tmp_path / "other.h5"
    build_emnist_hdf5(raw[0], other, emnist_split="byclass", val_fraction=VAL_FRACTION, balance=False, seed=4)
    assert not np.array_equal(_split(other, "val")["source_index"], _split(path, "val")["source_index"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_balanced_train_is_undersampled_without_replacement(built, raw, tmp_path: Path) -> None:
    path, _ = built
    out = tmp_path / "balanced.h5"
    sizes = build_emnist_hdf5(raw[0], out, emnist_split="byclass", val_fraction=VAL_FRACTION, balance=True, seed=3)
    train = _split(out, "train")
    counts = np.bincount(train["labels"], minlength=NUM_EMNIST_CLASSES)
    assert len(set(counts.tolist())) == 1 and counts[0] >= 1
    assert sizes["train"] == counts.sum()
    assert len(np.unique(train["source_index"])) == len(train["source_index"])
    unbalanced_train = _split(path, "train")["source_index"]
    assert np.all(np.isin(train["source_index"], unbalanced_train))  # same split, then undersampled
    # val and test keep their natural distribution
    np.testing.assert_array_equal(_split(out, "val")["source_index"], _split(path, "val")["source_index"])
    assert sizes["test"] == len(raw[3])
    with h5py.File(out, "r") as f:
        assert f.attrs["balance"]


def test_balance_indices_unit() -> None:
    labels = np.array([0] * 10 + [1] * 3 + [2] * 50)
    rng = np.random.default_rng(0)
    subset = np.arange(5, 63)  # classes 0 (5), 1 (3), 2 (50)
    picked = balance_indices(subset, labels, rng)
    assert np.all(np.diff(picked) > 0)
    np.testing.assert_array_equal(np.bincount(labels[picked]), [3, 3, 3])
    assert np.all(np.isin(picked, subset))


def test_stratified_split_unit() -> None:
    labels = np.array([0] * 10 + [1] * 2 + [2] * 1 + [3] * 7)
    train, val = stratified_split(labels, 0.3, np.random.default_rng(0))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    np.testing.assert_array_equal(np.bincount(labels[val], minlength=4), [3, 1, 0, 2])
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(labels, 1.0, np.random.default_rng(0))


def test_wrong_mapping_is_refused(built, tmp_path: Path) -> None:
    path, _ = built
    copy = tmp_path / "copy.h5"
    copy.write_bytes(path.read_bytes())
    with h5py.File(copy, "a") as f:
        f.attrs["mapping"] = json.dumps(list(EMNIST_CLASSES[::-1]))
    with pytest.raises(InputError, match="mapping"):  # a ValueError, reported by the stages in one line
        read_emnist_h5(copy, "train")
    with h5py.File(copy, "a") as f:
        del f.attrs["mapping"]
    with pytest.raises(ValueError, match="no 'mapping'"):
        read_emnist_h5(copy, "val")
    with pytest.raises(ValueError, match="split must be"):
        read_emnist_h5(path, "dev")


def test_bad_label_range_is_refused(tmp_path: Path) -> None:
    _write_raw(tmp_path, np.array([0, 1, 62, 70], dtype=np.uint8), np.array([0, 1], dtype=np.uint8))
    with pytest.raises(ValueError, match=r"2 label\(s\) outside 0\.\.61 \(max 70\); is this the byclass file"):
        build_emnist_hdf5(tmp_path, tmp_path / "out.h5", emnist_split="byclass", **SETTINGS)
    assert not (tmp_path / "out.h5").exists()


def test_count_mismatch_and_missing_files_are_refused(tmp_path: Path) -> None:
    _write_raw(tmp_path, np.array([0, 1, 2], dtype=np.uint8), np.array([0, 1], dtype=np.uint8))
    write_idx(official_paths(tmp_path, "byclass")["test"][1], np.array([0, 1, 2], dtype=np.uint8))
    with pytest.raises(InputError, match=r"test: 2 images .* but 3 labels"):
        load_official(tmp_path, "byclass")
    official_paths(tmp_path, "byclass")["train"][0].unlink()
    with pytest.raises(FileNotFoundError, match=r"emnist-byclass-train-images-idx3-ubyte\.gz") as err:
        load_official(tmp_path, "byclass")
    assert isinstance(err.value, MissingInputError) and "run the download_emnist stage" in str(err.value)


def test_cli_prints_sizes_and_stats(built, capsys: pytest.CaptureFixture[str]) -> None:
    path, sizes = built
    main([str(path)])
    out = capsys.readouterr().out
    assert f"n={sizes['test']:>8,d}" in out
    for split in ("train", "val", "test"):
        assert split in out
    assert "mean=" in out and "std=" in out and "max=255" in out


# --- EMNIST's other splits (emnist_hdf5.split), from the offline archive's files ---------------------------------


@pytest.fixture(scope="module")
def every_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The download stage's output for the synthetic source: every split's members and mapping files."""
    raw_dir = tmp_path_factory.mktemp("every_split") / "emnist"
    counts = {"train_per_class": PER_CLASS["train"], "test_per_class": PER_CLASS["test"]}
    synthesize_emnist(raw_dir, **counts, seed=11, pen_share=0.0)
    return raw_dir


@pytest.mark.parametrize(
    ("split", "classes", "merged"),
    [("balanced", 47, "C"), ("bymerge", 47, "C"), ("letters", 26, "A"), ("digits", 10, None), ("mnist", 10, None)],
)
def test_each_split_writes_its_classes_and_mapping(every_split, tmp_path, split, classes, merged) -> None:
    out = tmp_path / f"{split}.h5"
    sizes = build_emnist_hdf5(every_split, out, emnist_split=split, **SETTINGS)
    with h5py.File(out, "r") as f:
        assert json.loads(f.attrs["mapping"]) == list(SPLIT_CLASSES[split]) and len(SPLIT_CLASSES[split]) == classes
        assert f.attrs["emnist_split"] == split
        for part in ("train", "val", "test"):
            labels = f[part]["labels"][()]
            assert set(np.unique(labels).tolist()) == set(range(classes)), part  # 0-based, every class present
    assert sizes["test"] == len(read_idx(official_paths(every_split, split)["test"][1]))
    images, labels = read_emnist_h5(out, "test")  # the mapping is checked against the split the file holds
    raw_labels = read_idx(official_paths(every_split, split)["test"][1])
    offset = 1 if split == "letters" else 0
    np.testing.assert_array_equal(labels, raw_labels - offset)  # Letters' 1..26 become 0..25, nothing else moves
    np.testing.assert_array_equal(images, emnist_to_upright(read_idx(official_paths(every_split, split)["test"][0])))
    if merged is not None:  # a merged class holds both cases' glyphs: twice a single-case class's count here
        counts = np.bincount(read_idx(official_paths(every_split, split)["train"][1]) - offset)
        doubled = counts[SPLIT_CLASSES[split].index(merged)] == 2 * PER_CLASS["train"]
        assert doubled == (split in ("bymerge", "letters")), counts  # balanced and letters are equal-count


def test_the_lines_file_is_byclass_and_the_same_bytes_for_every_split(every_split, tmp_path) -> None:
    """What keeps `dvc repro` from rerunning emnist_lines when emnist_hdf5.split changes: its input does not."""
    lines = {}
    for split in EMNIST_SPLITS:
        chars_h5, lines_h5 = tmp_path / f"{split}.h5", tmp_path / f"{split}_byclass.h5"
        sizes = build_emnist_files(every_split, chars_h5, lines_h5, emnist_split=split, **SETTINGS)
        lines[split] = hashlib.sha256(lines_h5.read_bytes()).hexdigest()
        with h5py.File(lines_h5, "r") as f:
            check_lines_source(f)
        assert sizes["lines"]["test"] == NUM_EMNIST_CLASSES * PER_CLASS["test"]
    assert len(set(lines.values())) == 1, lines
    chars = {hashlib.sha256((tmp_path / f"{split}.h5").read_bytes()).hexdigest() for split in EMNIST_SPLITS}
    assert len(chars) == len(EMNIST_SPLITS)  # while the char model's file follows the split
    assert (tmp_path / "byclass.h5").read_bytes() == (tmp_path / "byclass_byclass.h5").read_bytes()


def test_a_line_stage_given_another_split_says_so_in_one_line(every_split, tmp_path) -> None:
    out = tmp_path / "balanced.h5"
    build_emnist_hdf5(every_split, out, emnist_split="balanced", **SETTINGS)
    with h5py.File(out, "r") as f, pytest.raises(InputError) as err:
        check_lines_source(f)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{out} holds EMNIST's balanced split (47 classes, cases merged)")
    assert "give emnist_lines data/processed/emnist_byclass.h5" in message


def test_a_mapping_file_that_disagrees_with_metadata_is_refused(every_split, tmp_path) -> None:
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for path in every_split.iterdir():
        (raw_dir / path.name).write_bytes(path.read_bytes())
    mapping_path(raw_dir, "balanced").write_text(official_mapping_text("bymerge").replace("36 97", "36 99"))
    wrong = r"names '0123.*XYZcbd.*' from label 0, expected '.*XYZabd.*' .* is this EMNIST's balanced"
    with pytest.raises(InputError, match=wrong):
        build_emnist_hdf5(raw_dir, tmp_path / "out.h5", emnist_split="balanced", **SETTINGS)
    mapping_path(raw_dir, "letters").unlink()
    with pytest.raises(MissingInputError, match=r"emnist-letters-mapping\.txt"):
        load_official(raw_dir, "letters")
    assert not (tmp_path / "out.h5").exists()


def test_letters_labels_outside_1_to_26_are_refused(every_split, tmp_path) -> None:
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for path in every_split.iterdir():
        (raw_dir / path.name).write_bytes(path.read_bytes())
    labels_path = official_paths(raw_dir, "letters")["test"][1]
    labels = read_idx(labels_path)
    labels[:3] = 0  # a 0-based file where Letters counts from 1
    write_idx(labels_path, labels)
    with pytest.raises(InputError, match=r"3 label\(s\) outside 1\.\.26 \(min 0\); is this the letters file"):
        load_official(raw_dir, "letters")


@pytest.mark.slow
def test_changing_the_split_under_dvc_reruns_emnist_hdf5_and_not_the_lines(tmp_path) -> None:
    """In a throw-away repo: after `dvc repro emnist_lines`, `emnist_hdf5.split: letters` reruns emnist_hdf5 only;
    the download keeps every split and the lines' ByClass input comes out byte for byte the same."""
    from tests.pipeline_repo import PipelineRepo, ran_stages

    tiny = {
        "data": {"source": "synthetic", "synthetic_train_per_class": 4, "synthetic_test_per_class": 2},
        "emnist_lines": {"max_length": 8, "num_train": 16, "num_val": 4, "num_test": 4},
    }
    repo = PipelineRepo.create(tmp_path / "repo", tiny)
    first = repo.dvc("repro", "emnist_lines")
    assert ran_stages(first.stdout) == {"download_emnist", "download_brown", "emnist_hdf5", "emnist_lines"}
    repo.set_params({"emnist_hdf5": {"split": "letters"}})
    again = repo.dvc("repro", "emnist_lines")
    assert ran_stages(again.stdout) == {"emnist_hdf5"}, again.stdout
    assert "up to date" in repo.dvc("status", "emnist_lines").stdout
    with h5py.File(repo.path / "data" / "processed" / "emnist.h5", "r") as f:
        assert f.attrs["emnist_split"] == "letters" and len(json.loads(f.attrs["mapping"])) == 26
