"""Stage emnist_lines: Brown-corpus phrases drawn with EMNIST glyphs, plus a sample picture.

usage: python stages/emnist_lines.py EMNIST_H5 BROWN_ZIP OUT_H5 SAMPLES_PNG
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from common import run, section

from text_recognizer.data.emnist_lines import build_emnist_lines, save_sample_grid
from text_recognizer.params import EmnistLinesParams


def main(argv: list[str]) -> None:
    emnist_h5, brown_zip, out_h5, samples_png = argv
    params = section(EmnistLinesParams, "emnist_lines")
    sizes = build_emnist_lines(Path(emnist_h5), Path(brown_zip), Path(out_h5), **dataclasses.asdict(params))
    save_sample_grid(Path(out_h5), Path(samples_png))
    print(f"{out_h5}: {sizes}, {Path(out_h5).stat().st_size:,} bytes")


if __name__ == "__main__":
    run(main)
