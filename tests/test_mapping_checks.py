"""Every reader of the project's HDF5 files refuses a file whose stored mapping is not this code's."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest

from text_recognizer.data.device_loader import EmnistDataModule, EmnistLinesDataModule
from text_recognizer.data.emnist_lines import save_sample_grid
from text_recognizer.metadata import EMNIST_CLASSES, LINE_TOKENS


def h5_with_mapping(path: Path, mapping: list[str] | None) -> Path:
    with h5py.File(path, "w") as f:
        if mapping is not None:
            f.attrs["mapping"] = json.dumps(mapping)
    return path


@pytest.mark.parametrize(
    ("module", "window"), [(EmnistDataModule, {}), (EmnistLinesDataModule, {"window_width": 28, "window_stride": 8})]
)
@pytest.mark.parametrize("mapping", [None, ["x", "y"]])
def test_data_modules_refuse_a_foreign_mapping(tmp_path: Path, module, window, mapping):
    path = h5_with_mapping(tmp_path / "data.h5", mapping)
    with pytest.raises(ValueError, match="mapping"):
        module(path, batch_size=4, seed=0, augment=None, **window)


def test_sample_grid_refuses_a_foreign_mapping(tmp_path: Path):
    path = h5_with_mapping(tmp_path / "lines.h5", list(EMNIST_CLASSES))  # an emnist.h5, not a lines file
    with pytest.raises(ValueError, match="mapping"):
        save_sample_grid(path, tmp_path / "grid.png")
    assert not (tmp_path / "grid.png").exists()


def test_the_right_mapping_passes_the_check(tmp_path: Path):
    path = h5_with_mapping(tmp_path / "lines.h5", list(LINE_TOKENS))
    with pytest.raises(ValueError, match="no split 'test'"):  # past the mapping check: the file has no lines
        save_sample_grid(path, tmp_path / "grid.png")
