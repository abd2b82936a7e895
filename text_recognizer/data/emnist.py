"""EMNIST: one split's official IDX files → one HDF5 file with train / val / test.

The split (`emnist_hdf5.split`: byclass, bymerge, balanced, letters, digits or mnist) is the char
model's; the lines always read a ByClass file, written beside it (`build_emnist_files`). The official
release has only train and test, so a validation split is carved out of train, stratified per class
with a seeded generator (the same params give the same split, and the same bytes). The test split is
the official test file, untouched and in its order, so test numbers compare with published results
for that split. Labels are stored 0..classes-1 (Letters' files count 1..26). Layout: docs/architecture.md.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from text_recognizer.data.idx import emnist_to_upright, read_idx
from text_recognizer.errors import InputError, MissingInputError
from text_recognizer.io import atomic_path
from text_recognizer.metadata import (
    EMNIST_CLASSES,
    EMNIST_SPLITS,
    GLYPH_SIZE,
    LINES_SPLIT,
    SPLIT_CLASSES,
    SPLIT_LABEL_OFFSET,
    split_mapping_member,
    split_members,
)

SPLITS = ("train", "val", "test")
_CHUNK_ROWS = 4096  # fixed chunk length: the bytes must not depend on h5py's automatic chunk guess
_COMPRESSION = {"compression": "gzip", "compression_opts": 4}


def official_paths(raw_dir: str | os.PathLike[str], emnist_split: str) -> dict[str, tuple[Path, Path]]:
    """{"train"|"test": (images path, labels path)} of one EMNIST split's official files in raw_dir."""
    names = [Path(member).name for member in split_members(emnist_split)]
    raw_dir = Path(raw_dir)
    return {
        "train": (raw_dir / names[0], raw_dir / names[1]),
        "test": (raw_dir / names[2], raw_dir / names[3]),
    }


def mapping_path(raw_dir: str | os.PathLike[str], emnist_split: str) -> Path:
    return Path(raw_dir) / Path(split_mapping_member(emnist_split)).name


def load_official(raw_dir: str | os.PathLike[str], emnist_split: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train"|"test": (upright images (N, 28, 28) uint8, labels (N,) uint8 from 0)}, checked against the split's
    mapping file, which must name the classes metadata gives the split."""
    paths = official_paths(raw_dir, emnist_split)
    mapping = mapping_path(raw_dir, emnist_split)
    missing = [str(p) for p in (*(p for pair in paths.values() for p in pair), mapping) if not p.is_file()]
    if missing:
        raise MissingInputError(
            f"missing EMNIST file(s): {', '.join(missing)}: run the download_emnist stage (dvc repro download_emnist)"
        )
    check_official_mapping(mapping, emnist_split)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, (images_path, labels_path) in paths.items():
        images = read_idx(images_path)
        labels = read_idx(labels_path)
        if images.ndim != 3 or images.shape[1:] != (GLYPH_SIZE, GLYPH_SIZE):
            raise InputError(f"{images_path}: expected images of shape (N, 28, 28), got {images.shape}")
        if labels.ndim != 1:
            raise InputError(f"{labels_path}: expected a 1-D labels file, got shape {labels.shape}")
        if len(images) != len(labels):
            raise InputError(
                f"{split}: {len(images)} images in {images_path} but {len(labels)} labels in {labels_path}"
            )
        check_labels(labels, str(labels_path), emnist_split)
        offset = SPLIT_LABEL_OFFSET.get(emnist_split, 0)
        out[split] = (emnist_to_upright(images), (labels - offset).astype(np.uint8))
    return out


def check_official_mapping(path: Path, emnist_split: str) -> None:
    """The split's `emnist-<split>-mapping.txt` must give SPLIT_CLASSES in label order (its first code per line):
    our class names are metadata's, so a file that disagrees means a wrong file or a wrong class list here."""
    try:
        rows = [line.split() for line in path.read_text(encoding="ascii").splitlines() if line.strip()]
        labels = [int(row[0]) for row in rows]
        names = "".join(chr(int(row[1])) for row in rows)
    except (UnicodeDecodeError, ValueError, IndexError) as err:
        raise InputError(f"{path}: not an EMNIST mapping file (lines of `label code`): {err}") from err
    offset, expected = SPLIT_LABEL_OFFSET.get(emnist_split, 0), "".join(SPLIT_CLASSES[emnist_split])
    if labels != list(range(offset, offset + len(expected))) or names != expected:
        first = labels[0] if labels else "none"
        raise InputError(
            f"{path} names {names!r} from label {first}, expected {expected!r} from label {offset} "
            f"(metadata.SPLIT_CLASSES); is this EMNIST's {emnist_split} mapping?"
        )


def check_labels(labels: np.ndarray, where: str, emnist_split: str) -> None:
    """Labels must index the split's classes (from its offset); anything else means a wrong file or split."""
    low = SPLIT_LABEL_OFFSET.get(emnist_split, 0)
    high = low + len(SPLIT_CLASSES[emnist_split]) - 1
    if len(labels) and (int(labels.min()) < low or int(labels.max()) > high):
        bad = int(np.count_nonzero((labels < low) | (labels > high)))
        extreme = f"max {int(labels.max())}" if int(labels.max()) > high else f"min {int(labels.min())}"
        raise InputError(f"{where}: {bad} label(s) outside {low}..{high} ({extreme}); is this the {emnist_split} file?")


def stratified_split(
    labels: np.ndarray, val_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val), both sorted: per class, a seeded permutation, round(val_fraction·n_c) to val.

    A class with n_c >= 2 gets at least one val and at least one train sample, so every class
    is both learned and measured; a class with a single sample stays in train.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    classes, counts = np.unique(labels, return_counts=True)
    train_parts, val_parts = [], []
    start = 0
    for _, count in zip(classes, counts, strict=True):
        members = rng.permutation(order[start : start + count])
        start += count
        k = int(np.floor(val_fraction * count + 0.5))
        k = min(max(k, 1), count - 1) if count >= 2 else 0
        val_parts.append(members[:k])
        train_parts.append(members[k:])
    train = np.sort(np.concatenate(train_parts)) if train_parts else np.zeros(0, np.int64)
    val = np.sort(np.concatenate(val_parts)) if val_parts else np.zeros(0, np.int64)
    return train.astype(np.int64), val.astype(np.int64)


def balance_indices(indices: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Undersample `indices` (rows of `labels`) so every class present has the rarest class's count.

    Sampling is without replacement, so no glyph is ever repeated; the result is sorted.
    Used on the train split only: val and test keep the natural (imbalanced) distribution so
    their accuracy compares with published ByClass numbers.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) == 0:
        return indices
    sub_labels = np.asarray(labels)[indices]
    order = np.argsort(sub_labels, kind="stable")
    _, counts = np.unique(sub_labels, return_counts=True)
    target = int(counts.min())
    parts, start = [], 0
    for count in counts:
        group = indices[order[start : start + count]]
        start += count
        parts.append(rng.choice(group, size=target, replace=False))
    return np.sort(np.concatenate(parts))


def _write_dataset(group: h5py.Group, name: str, data: np.ndarray) -> None:
    """One dataset with fixed chunks, deterministic compression and no timestamps."""
    if len(data) == 0:
        group.create_dataset(name, data=data, track_times=False)
        return
    chunks = (min(len(data), _CHUNK_ROWS), *data.shape[1:])
    group.create_dataset(name, data=data, chunks=chunks, track_times=False, **_COMPRESSION)


def build_emnist_hdf5(
    raw_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    emnist_split: str,
    val_fraction: float,
    balance: bool,
    seed: int,
) -> dict[str, int]:
    """Write one EMNIST split's emnist.h5 (train/val/test, see docs/architecture.md) atomically; return split sizes.

    `balance` undersamples the train split only (see balance_indices). Same inputs and params
    give a byte-identical file.
    """
    official = load_official(raw_dir, emnist_split)
    rng = np.random.default_rng(seed)
    train_images, train_labels = official["train"]
    test_images, test_labels = official["test"]
    train_idx, val_idx = stratified_split(train_labels, val_fraction, rng)
    if balance:
        train_idx = balance_indices(train_idx, train_labels, rng)
    splits = {
        "train": (train_images[train_idx], train_labels[train_idx], train_idx),
        "val": (train_images[val_idx], train_labels[val_idx], val_idx),
        "test": (test_images, test_labels, np.arange(len(test_labels), dtype=np.int64)),
    }
    with atomic_path(out_path, suffix=".h5") as tmp, h5py.File(tmp, "w", libver="earliest") as f:
        f.attrs["mapping"] = json.dumps(list(SPLIT_CLASSES[emnist_split]))
        f.attrs["emnist_split"] = emnist_split
        f.attrs["val_fraction"] = float(val_fraction)
        f.attrs["balance"] = bool(balance)
        f.attrs["seed"] = int(seed)
        for split, (images, labels, source_index) in splits.items():
            group = f.create_group(split)
            _write_dataset(group, "images", np.ascontiguousarray(images, dtype=np.uint8))
            _write_dataset(group, "labels", np.ascontiguousarray(labels, dtype=np.uint8))
            _write_dataset(group, "source_index", np.ascontiguousarray(source_index, dtype=np.int64))
    return {split: len(data[1]) for split, data in splits.items()}


def build_emnist_files(
    raw_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    lines_path: str | os.PathLike[str],
    *,
    emnist_split: str,
    val_fraction: float,
    balance: bool,
    seed: int,
) -> dict[str, dict[str, int]]:
    """The emnist_hdf5 stage: `out_path` holds the char model's split, `lines_path` ByClass for the lines.

    The ByClass file depends on val_fraction, balance and seed only, so a change of split rewrites it byte for
    byte the same and DVC leaves emnist_lines alone (docs/decisions.md). With split byclass it is a copy.
    Returns {"chars": split sizes, "lines": split sizes}.
    """
    settings = {"val_fraction": val_fraction, "balance": balance, "seed": seed}
    chars = build_emnist_hdf5(raw_dir, out_path, emnist_split=emnist_split, **settings)
    if emnist_split == LINES_SPLIT:
        with atomic_path(lines_path, suffix=".h5") as tmp:
            shutil.copyfile(out_path, tmp)
        return {"chars": chars, "lines": chars}
    return {"chars": chars, "lines": build_emnist_hdf5(raw_dir, lines_path, emnist_split=LINES_SPLIT, **settings)}


def check_mapping(f: h5py.File, expected: tuple[str, ...] = EMNIST_CLASSES) -> list[str]:
    """The file's `mapping` attribute, which must equal `expected`: labels mean nothing otherwise."""
    if "mapping" not in f.attrs:
        raise InputError(f"{f.filename}: no 'mapping' attribute; not a file written by this project")
    raw = f.attrs["mapping"]
    try:
        mapping = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except json.JSONDecodeError as err:
        raise InputError(f"{f.filename}: 'mapping' attribute is not JSON ({err})") from err
    if tuple(mapping) != tuple(expected):
        raise InputError(
            f"{f.filename}: stored class mapping {''.join(map(str, mapping))!r} differs from the expected "
            f"{''.join(expected)!r}; rebuild the file with this version of the code"
        )
    return list(mapping)


def stored_split(f: h5py.File) -> str:
    """The EMNIST split an emnist.h5 holds: its `emnist_split` attribute, ByClass for a file without one (the only
    split before emnist_hdf5.split existed)."""
    raw = f.attrs.get("emnist_split", LINES_SPLIT)
    split = raw.decode() if isinstance(raw, bytes) else str(raw)
    if split not in EMNIST_SPLITS:
        raise InputError(f"{f.filename}: unknown EMNIST split {split!r}; expected one of {', '.join(EMNIST_SPLITS)}")
    return split


def check_split_mapping(f: h5py.File) -> list[str]:
    """The classes of an emnist.h5, checked against metadata for the split it holds."""
    return check_mapping(f, SPLIT_CLASSES[stored_split(f)])


def check_lines_source(f: h5py.File) -> None:
    """The lines write case, so their glyphs must be ByClass's: one line saying which file to give instead."""
    split = stored_split(f)
    if split != LINES_SPLIT:
        raise InputError(
            f"{f.filename} holds EMNIST's {split} split ({len(SPLIT_CLASSES[split])} classes, "
            f"{'no letters' if split in ('digits', 'mnist') else 'cases merged'}); lines are drawn from {LINES_SPLIT} "
            f"glyphs (upper and lower case): give emnist_lines data/processed/emnist_{LINES_SPLIT}.h5, which "
            "emnist_hdf5 writes whatever emnist_hdf5.split is"
        )
    check_mapping(f, SPLIT_CLASSES[split])


def read_emnist_h5(path: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) uint8) of one split, after checking the mapping."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    with h5py.File(path, "r") as f:
        check_split_mapping(f)
        if split not in f:
            raise InputError(f"{path}: no split '{split}'")
        return f[split]["images"][()], f[split]["labels"][()]


def split_stats(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Size and pixel min/mean/std/max of each split, read in chunks (the full train is ~0.5 GB)."""
    stats: dict[str, dict[str, Any]] = {}
    with h5py.File(path, "r") as f:
        check_split_mapping(f)
        for split in SPLITS:
            if split not in f:
                continue
            images = f[split]["images"]
            n = len(images)
            total, total_sq, lo, hi = 0.0, 0.0, 255, 0
            for start in range(0, n, 8192):
                block = images[start : start + 8192].astype(np.float64)
                total += block.sum()
                total_sq += np.square(block).sum()
                lo, hi = min(lo, int(block.min())), max(hi, int(block.max()))
            count = max(n * GLYPH_SIZE * GLYPH_SIZE, 1)
            mean = total / count
            std = float(np.sqrt(max(total_sq / count - mean * mean, 0.0)))
            num_classes = len(np.unique(f[split]["labels"][()]))
            stats[split] = {"n": n, "classes": num_classes, "min": lo, "mean": mean, "std": std, "max": hi}
    return stats


def main(argv: list[str]) -> None:
    """python -m text_recognizer.data.emnist PATH: split sizes and pixel statistics."""
    if len(argv) != 1:
        print("usage: python -m text_recognizer.data.emnist PATH/TO/emnist.h5", file=sys.stderr)
        raise SystemExit(2)
    for split, s in split_stats(argv[0]).items():
        print(
            f"{split:5s} n={s['n']:>8,d} classes={s['classes']:2d} "
            f"min={s['min']:3d} mean={s['mean']:7.3f} std={s['std']:7.3f} max={s['max']:3d}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
