"""Stage emnist_hdf5: official IDX files -> one HDF5 with train / val / test.

usage: python stages/emnist_hdf5.py RAW_DIR OUT_H5
"""

from __future__ import annotations

from pathlib import Path

from common import require_file, run, section

from text_recognizer.data.emnist import build_emnist_hdf5
from text_recognizer.params import EmnistHdf5Params


def main(argv: list[str]) -> None:
    raw_dir, out_h5 = argv
    params = section(EmnistHdf5Params, "emnist_hdf5")
    require_file(raw_dir, made_by="download_emnist")
    sizes = build_emnist_hdf5(
        Path(raw_dir), Path(out_h5), val_fraction=params.val_fraction, balance=params.balance, seed=params.seed
    )
    print(f"{out_h5}: {sizes}, {Path(out_h5).stat().st_size:,} bytes")


if __name__ == "__main__":
    run(main)
