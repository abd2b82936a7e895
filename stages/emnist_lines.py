"""Stage emnist_lines: Brown-corpus phrases drawn with EMNIST glyphs, a sample picture, and the train text.

usage: python stages/emnist_lines.py EMNIST_H5 BROWN_ZIP OUT_H5 SAMPLES_PNG TRAIN_TEXT

TRAIN_TEXT is the train pool's cleaned text, one document per line: the only text that
anything estimated later (the evaluate stage's language model) may learn from.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from common import require_file, require_h5, run, section

from text_recognizer.data.emnist_lines import build_emnist_lines, save_sample_grid
from text_recognizer.params import EmnistLinesParams


def main(argv: list[str]) -> None:
    emnist_h5, brown_zip, out_h5, samples_png, train_text = argv
    params = section(EmnistLinesParams, "emnist_lines")
    require_h5(emnist_h5, made_by="emnist_hdf5")
    require_file(brown_zip, made_by="download_brown")
    stats = build_emnist_lines(
        Path(emnist_h5), Path(brown_zip), Path(out_h5), **dataclasses.asdict(params), train_text_path=Path(train_text)
    )
    save_sample_grid(Path(out_h5), Path(samples_png))
    print(f"{out_h5}: lines {stats['lines']}, {Path(out_h5).stat().st_size:,} bytes")
    print(f"text pools: documents {stats['documents']}, words {stats['words']}")
    print(f"{train_text}: train pool text, {Path(train_text).stat().st_size:,} bytes")


if __name__ == "__main__":
    run(main)
