"""Stage emnist_hdf5: official IDX files -> the char model's split in one HDF5, and ByClass for the lines.

usage: python stages/emnist_hdf5.py RAW_DIR OUT_H5 LINES_H5

OUT_H5 holds emnist_hdf5.split (train / val / test); LINES_H5 holds ByClass, split the same way,
whatever emnist_hdf5.split is, so that changing it leaves emnist_lines' input byte for byte as it was.
"""

from __future__ import annotations

from pathlib import Path

from common import require_file, run, section

from text_recognizer.data.emnist import build_emnist_files
from text_recognizer.params import EmnistHdf5Params


def main(argv: list[str]) -> None:
    raw_dir, out_h5, lines_h5 = argv
    params = section(EmnistHdf5Params, "emnist_hdf5")
    require_file(raw_dir, made_by="download_emnist")
    sizes = build_emnist_files(
        Path(raw_dir),
        Path(out_h5),
        Path(lines_h5),
        emnist_split=params.split,
        val_fraction=params.val_fraction,
        balance=params.balance,
        seed=params.seed,
    )
    print(f"{out_h5}: EMNIST {params.split} {sizes['chars']}, {Path(out_h5).stat().st_size:,} bytes")
    print(f"{lines_h5}: EMNIST byclass {sizes['lines']}, {Path(lines_h5).stat().st_size:,} bytes")


if __name__ == "__main__":
    run(main)
