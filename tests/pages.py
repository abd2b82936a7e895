"""Pages of several lines composed from single lines, for tests/test_page_layout.py.

Lines are placed in ink-fraction space (0 paper, 1 ink) with chosen gaps and indents, the page is
rotated by a known skew, set as a clean rendering (tests/font_lines.py's levels) and then turned
into a photo by tests/paper_photos.py. The truth is kept with it: each line's text, top to bottom.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

try:
    from tests import paper_photos as photos
    from tests.font_lines import Style, render_line
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    import paper_photos as photos
    from font_lines import Style, render_line

PHOTOS = {
    "clean": lambda gray, seed: gray,
    "light on dark": lambda gray, seed: 255 - gray,
    "grey noisy paper": lambda gray, seed: photos.grey_noisy(gray, seed=seed),
    "uneven light": lambda gray, seed: photos.lit_unevenly(gray, seed=seed),
}


@dataclasses.dataclass(frozen=True)
class Page:
    """A composed page: the photo, each line's text top to bottom, and each line's ink alone (for reading alone)."""

    gray: np.ndarray
    texts: list[str]
    lines: list[np.ndarray]  # each line's ink fraction as placed, before skew
    centres: list[tuple[float, float]]  # each line's ink-box centre (x, y) in `gray`, skew included


def emnist_test_lines(h5_path: Path) -> list[tuple[np.ndarray, str]]:
    """The test lines of an emnist_lines.h5 as (ink fraction (28, w) cut to the ink's columns, text)."""
    with h5py.File(h5_path, "r") as f:
        mapping = json.loads(f.attrs["mapping"])
        images, labels, lengths = f["test"]["images"][()], f["test"]["labels"][()], f["test"]["lengths"][()]
    out = []
    for image, label, length in zip(images, labels, lengths, strict=True):
        cols = np.flatnonzero(image.max(axis=0) > 0)
        text = "".join(mapping[i] for i in label[:length]).strip()
        if cols.size and text:
            out.append((image[:, cols[0] : cols[-1] + 1].astype(np.float64) / 255.0, text))
    return out


def font_line(text: str, size: int = 32, font: str = Style().font) -> np.ndarray:
    """A font-rendered line as ink fraction, cut to its ink."""
    return photos.ink_fraction(render_line(text, Style(font, size, margin=0)))


def zoom(frac: np.ndarray, factor: float) -> np.ndarray:
    h, w = frac.shape
    img = Image.fromarray(frac.astype(np.float32), mode="F")
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.clip(np.asarray(img.resize(size, Image.Resampling.BICUBIC), dtype=np.float64), 0.0, 1.0)


def compose(
    lines: list[np.ndarray], gaps: list[int], indents: list[int], margin: int = 20
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Lines (ink fraction) stacked top to bottom, `gaps[k]` rows between line k and k + 1 (negative: they
    overlap, ink combined by maximum) and line k shifted right by `indents[k]`; with each line's centre (x, y)."""
    tops = [margin]
    for line, gap in zip(lines[:-1], gaps, strict=True):
        tops.append(tops[-1] + line.shape[0] + gap)
    height = max(t + line.shape[0] for t, line in zip(tops, lines, strict=True)) + margin
    width = max(i + line.shape[1] for i, line in zip(indents, lines, strict=True)) + 2 * margin
    page = np.zeros((height, width))
    for line, top, indent in zip(lines, tops, indents, strict=True):
        window = page[top : top + line.shape[0], margin + indent : margin + indent + line.shape[1]]
        np.maximum(window, line, out=window)
    centres = [
        (margin + i + line.shape[1] / 2, t + line.shape[0] / 2) for line, t, i in zip(lines, tops, indents, strict=True)
    ]
    return page, centres


def rotate(frac: np.ndarray, degrees: float) -> np.ndarray:
    """Ink fraction rotated counterclockwise by `degrees` (lines then rise to the right), canvas grown."""
    if degrees == 0:
        return frac
    img = Image.fromarray(frac.astype(np.float32), mode="F")
    return np.asarray(img.rotate(degrees, Image.Resampling.BILINEAR, expand=True, fillcolor=0.0), dtype=np.float64)


def rotate_point(x: float, y: float, shape: tuple[int, int], degrees: float) -> tuple[float, float]:
    """Where `rotate` takes the point (x, y) of an image of `shape` (Pillow turns about the centre, then grows)."""
    h, w = shape
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    out_w, out_h = abs(w * c) + abs(h * s), abs(w * s) + abs(h * c)
    dx, dy = x - w / 2, y - h / 2
    return out_w / 2 + dx * c + dy * s, out_h / 2 - dx * s + dy * c


def to_gray(frac: np.ndarray) -> np.ndarray:
    """Ink fraction set as a clean rendering: ink 20 on paper 245, as tests/font_lines.py draws."""
    return photos.to_uint8(photos.CLEAN_PAPER - frac * (photos.CLEAN_PAPER - photos.CLEAN_INK))


def make_page(
    pool: list[tuple[np.ndarray, str]], rng: np.random.Generator, n_lines: int, photo: str, skew: float,
    gap_range: tuple[int, int], indent_max: int,
) -> Page:  # fmt: skip
    """A page of `n_lines` lines drawn from `pool` (ink fraction, text), random gaps and indents."""
    picks = rng.choice(len(pool), size=n_lines, replace=False)
    lines = [pool[k][0] for k in picks]
    gaps = [int(g) for g in rng.integers(gap_range[0], gap_range[1] + 1, size=n_lines - 1)]
    indents = [int(i) for i in rng.integers(0, indent_max + 1, size=n_lines)]
    level, centres = compose(lines, gaps, indents)
    frac = rotate(level, skew)
    gray = PHOTOS[photo](to_gray(frac), int(rng.integers(1 << 30)))
    centres = [rotate_point(x, y, level.shape, skew) if skew else (x, y) for x, y in centres]
    return Page(gray=gray, texts=[pool[k][1] for k in picks], lines=lines, centres=centres)


def alone(line: np.ndarray, photo: str, skew: float = 0.0, seed: int = 0, margin: int = 20) -> np.ndarray:
    """One line set alone on its own paper, as the same photo with the same skew: what it reads as without
    the page (as if each line had been photographed on its own)."""
    return PHOTOS[photo](to_gray(rotate(np.pad(line, margin), skew)), seed)
