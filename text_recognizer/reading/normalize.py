"""Bring a line of writing to the look of EMNISTLines: one EMNIST-fitted glyph per 28-px cell.

EMNIST fits *every* character, lowercase included, into the same box, and EMNISTLines draws
those 28x28 glyphs side by side. Scaling a whole line to height 28 therefore makes an "e" half
the size of any "e" the models saw. Instead the ink is split into glyphs and each one is fitted
into its own cell:

1. Glyphs: connected components of the ink (8-connected, scipy.ndimage.label) at half the
   peak, so the anti-aliased fringe between two close letters does not join them; merged where
   they share columns, so the dot of an i or j stays with its stem, or where fainter ink joins
   them across touching columns (a hairline thinner than half the peak). Letters that really
   touch (serifs, "rt", "ry", joined-up writing) stay one glyph here; reading/cutting.py cuts
   them where a reader reads the pieces best, since shape alone cannot tell "m" from "rn".
2. Each glyph is fitted the way the EMNIST paper (Cohen et al. 2017, section II-A) converted
   NIST's binary 128x128 forms: the glyph is scaled to NIST's resolution and binarised (a
   photo's anti-aliasing and contrast no longer matter), blurred with a Gaussian, cropped to
   its bounding box, centred in a square frame with its aspect ratio kept and
   downsampled with an antialiasing filter. The longest side becomes GLYPH_BOX = 20 pixels of
   the 28x28 cell, as in `preprocess_char` and in the pipeline's own glyphs (the offline source
   fits 18-22 px, median 20). NIST's 2-pixel padding gives real EMNIST glyphs about 24 px, so
   a model trained on them sees ours 17% small, more than its +-10% zoom augmentation:
   GLYPH_BOX is the knob to turn for such a model.
   The blur matches the training glyphs, not the paper: EMNIST's sigma of 1 NIST pixel left
   hard-edged cells, while the glyphs the models learn from (real letters blurred by half a
   source pixel, pen and font glyphs drawn anti-aliased) have edges about a pixel soft. At
   NIST_BLUR = 5 NIST pixels (about 1 px of the 20-px box), the glyph cropped where its glow
   falls below CROP_LEVEL, the offline CNN reads the real development letters at 0.84 instead
   of 0.54 and the font lines' tuning half went from 11.7% to 5.4% CER (docs/decisions.md,
   "Cells as soft as the training glyphs").
   One step EMNIST did not need: strokes thinner than the training glyphs' (a pen on a NIST
   form is never as thin as a 14 px font or a serif hairline) are thickened to that width at
   NIST resolution. The width is the one training measured and the checkpoint records
   (`extra["lines"]["stroke_width"]`, in pixels of the 28x28 cell, emnist_lines.ink_measures);
   STROKE_WIDTH stands in for a checkpoint that records none.
3. Centring: the centre of the *bounding box* goes to the centre of the cell, not the centre
   of mass (MNIST's choice). EMNIST and the offline source both centre the bounding box: an
   offline "L" has its mass 1.4 px left of the cell centre, and centring the mass instead
   would move a fitted "L" about 3 px right of where its training examples sit.
4. Layout: glyphs are drawn left-aligned at the mean pitch of the training lines (emnist_lines
   draws neighbours 28 * (1 - overlap) apart, overlap uniform in [0, 0.33] by default, so
   PITCH = 23 px; 19 or 28 px read worse), combined with a saturating maximum as there, and a
   space is an empty cell where the gap between two glyphs is wide compared with the line's
   letter size and its typical gap.

The whole-line scaling (`layout="line"` in predict) stays available for input that already
looks like EMNISTLines.

Library against hand-written code: scipy.ndimage labels the components (`label_components`),
boxes them (`find_objects`) and measures runs of covered rows (`count_lines`), and
scipy.sparse.csgraph joins components into glyphs. Two small pieces stay numpy by choice:
the square dilation (`_dilate`) and the erosion in `stroke_width` work on one glyph at a time
(a crop of about 30x20 pixels, or 125x125 at NIST resolution), where binary_dilation and
binary_erosion take 2.5 to 10 times as long as a few shifted ANDs and ORs (20-310 us against
10-120 us; maximum_filter catches up only at the largest radius), for every glyph of a line and
every cut that `predict` tries. The blur is Pillow's GaussianBlur, not ndimage.gaussian_filter:
Pillow approximates the Gaussian with box blurs in 8 bits, so the two differ by up to 2 grey
levels of 255, and the cells the models were checked on are the ones Pillow makes.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from text_recognizer.metadata import GLYPH_SIZE

GLYPH_BOX = 20  # longest side of a fitted glyph inside its 28x28 cell
DEFAULT_OVERLAP = (0.0, 0.33)  # params.yaml's emnist_lines.min_overlap and max_overlap


def pitch_for(min_overlap: float, max_overlap: float) -> int:
    """The mean step between neighbouring glyphs of EMNISTLines drawn with these overlaps."""
    return round(GLYPH_SIZE * (1 - (min_overlap + max_overlap) / 2))


PITCH = pitch_for(*DEFAULT_OVERLAP)  # 23 px
INK_THRESHOLD = 0.25  # fraction of the brightest ink above which a pixel counts as ink
SPLIT_THRESHOLD = 0.5  # a stricter one for labelling, so that anti-aliased fringes do not join neighbours
NIST_SIZE = 96  # the longest side of a glyph at NIST's resolution (the forms were 128x128), where it is binarised
NIST_BLUR = 5.0  # Gaussian sigma in NIST pixels: edges as soft as the training glyphs' (EMNIST's paper: 1)
CROP_LEVEL = 0.15  # the blurred glyph is cropped where its glow falls below this share of the peak
STROKE_WIDTH = 2.1  # px of a 28x28 cell: thinner strokes are thickened to this (the offline glyphs' measured width)
MAX_GROW = 8  # at most this many NIST pixels added on each side of a stroke
WORK_HEIGHT = 160  # lines with taller ink are shrunk to this before labelling (the cells are 28 px anyway)
MERGE_OVERLAP = 0.5  # components sharing this fraction of the narrower one's columns are one glyph
SPACE_HEIGHTS = 0.33  # a gap wider than this many letter heights is a space...
SPACE_GAPS = 2.0  # ...provided it is also this many times the line's median gap
TYPICAL_QUANTILE = 0.75  # the typical glyph height: this quantile of the component heights (dots pull the median)
LINE_GLYPH_SHARE = 0.6  # components this share of the typical glyph height or more are letters (not a dot or dash)
LINE_BAND_SHARE = 0.4  # bands of letter rows this share of the tallest band or more are lines of text
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)  # a pixel and its 8 neighbours


class BlankImageError(ValueError):
    """The image holds no ink."""


@dataclasses.dataclass(frozen=True)
class Glyph:
    """One glyph of a line: its box in the working image and its own ink (other glyphs' pixels zeroed)."""

    top: int
    bottom: int
    left: int
    right: int
    ink: np.ndarray  # (bottom - top, right - left) float32 in [0, 1]

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left


def white_on_black(gray: np.ndarray) -> np.ndarray:
    """Float image with background 0 and the brightest ink 1, whatever the input polarity.

    The background level is the median of the border pixels: light (> 127) means dark ink on
    paper, so the image is inverted.
    """
    a = np.asarray(gray, dtype=np.float32)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    background = float(np.median(border))
    if background > 127:
        a = 255.0 - a
        background = 255.0 - background
    a = np.clip(a - background, 0.0, None)
    peak = float(a.max())
    if peak <= 0:
        raise BlankImageError("the image is blank: no ink found")
    return a / peak


def ink_box(a: np.ndarray, threshold: float = INK_THRESHOLD) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the pixels above `threshold`, ends exclusive."""
    mask = a > threshold
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise BlankImageError("the image is blank: no ink found")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean image: (labels int32, 0 = background, 1..n), n.

    scipy.ndimage.label with the 3x3 structure: components are numbered in raster order of
    their first pixel.
    """
    labels, n = ndimage.label(np.asarray(mask, dtype=bool), structure=EIGHT_CONNECTED)
    return labels.astype(np.int32, copy=False), int(n)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square dilation by `radius` pixels, nothing outside the image (numpy: see the module docstring)."""
    out = mask.copy()
    for _ in range(radius):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
        out = grown
    return out


def _to_working_scale(a: np.ndarray) -> np.ndarray:
    """The ink crop (with a margin), shrunk when its ink is taller than WORK_HEIGHT."""
    top, bottom, left, right = ink_box(a)
    margin = 2
    a = a[max(0, top - margin) : bottom + margin, max(0, left - margin) : right + margin]
    if bottom - top > WORK_HEIGHT:
        scale = WORK_HEIGHT / (bottom - top)
        size = (max(1, round(a.shape[1] * scale)), max(1, round(a.shape[0] * scale)))
        a = np.asarray(Image.fromarray(a, mode="F").resize(size, Image.Resampling.BOX), dtype=np.float32)
        a = a / max(float(a.max()), 1e-6)
    return a


def _boxes(labels: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """(top, bottom, left, right, area) of labels 1..n, each (n,) int64, ends exclusive."""
    slices = ndimage.find_objects(labels, max_label=n)
    box = np.array([(r.start, r.stop, c.start, c.stop) for r, c in slices], dtype=np.int64).reshape(n, 4)
    top, bottom, left, right = (np.ascontiguousarray(side) for side in box.T)
    return top, bottom, left, right, np.bincount(labels.ravel(), minlength=n + 1)[1:]


def _not_specks(area: np.ndarray, top, bottom, left, right) -> np.ndarray:
    """Components that are not specks: not far smaller than the image's glyphs (dust, JPEG noise)."""
    extent = np.maximum(bottom - top, right - left)
    return (area >= max(3.0, 0.02 * area.max())) | (extent >= 0.25 * extent.max())


def count_lines(a: np.ndarray) -> int:
    """How many lines of text white-on-black ink (float, peak 1) holds, from the rows its letters cover.

    The horizontal ink profile of the letters: components are labelled as in `segment` and specks
    dropped; the typical glyph height is the TYPICAL_QUANTILE of their heights, and components
    shorter than LINE_GLYPH_SHARE of it are not letters (the dot of an i or j, a hyphen, an
    underline, a quote mark, a speck). The rows the letters cover form bands separated by blank
    rows, and bands at least LINE_BAND_SHARE as tall as the tallest are lines. Every letter of
    one line spans its baseline to x-height, so ascenders, descenders and a wandering baseline
    keep a line one band; lines whose letters touch or share rows count as one.
    """
    a = _to_working_scale(np.asarray(a, dtype=np.float32))
    labels, n = label_components(a > SPLIT_THRESHOLD)
    if n == 0:
        return 0
    top, bottom, left, right, area = _boxes(labels, n)
    keep = _not_specks(area, top, bottom, left, right)
    heights = (bottom - top)[keep]
    letters = keep & (bottom - top >= LINE_GLYPH_SHARE * float(np.quantile(heights, TYPICAL_QUANTILE)))
    size = a.shape[0] + 1  # letters starting at each row minus those ending there, summed down the rows
    depth = np.cumsum(np.bincount(top[letters], minlength=size) - np.bincount(bottom[letters], minlength=size))
    bands = np.bincount(ndimage.label(depth[:-1] > 0)[0])[1:]  # the height of each run of covered rows
    return int((bands >= LINE_BAND_SHARE * bands.max()).sum())


def segment(a: np.ndarray) -> tuple[np.ndarray, list[Glyph]]:
    """Split white-on-black ink (float, peak 1) into glyphs, left to right: (working image, glyphs).

    Components are labelled at SPLIT_THRESHOLD (half the peak), where the anti-aliased fringe
    between two close letters is not ink, and merged when they share at least MERGE_OVERLAP of
    the narrower one's columns (the dot of an i and its stem) or when they touch or overlap in
    columns and are joined by fainter ink (a hairline too thin to reach half the peak, as in a
    small serif h). Specks far smaller than the line's glyphs (dust, JPEG noise) are dropped
    first, so they neither become glyphs nor stretch a glyph's box, unless they sit right above
    or below a glyph (the dot of an i at 14 px is a single pixel).
    """
    a = _to_working_scale(np.asarray(a, dtype=np.float32))
    labels, n = label_components(a > SPLIT_THRESHOLD)
    if n == 0:
        raise BlankImageError("the image is blank: no ink found")
    loose, _ = label_components(a > INK_THRESHOLD)
    joined = np.zeros(n + 1, dtype=np.int64)  # each component's loose label (it lies inside one loose component)
    joined[labels] = loose
    top, bottom, left, right, area = _boxes(labels, n)
    keep = np.flatnonzero(_kept(area, top, bottom, left, right))
    glyph_of = np.zeros(n + 1, dtype=np.int32)  # component label -> glyph label, 0 for a dropped speck
    glyph_of[keep + 1] = _merged(left[keep], right[keep], joined[keep + 1]) + 1
    glyph_labels = glyph_of[labels]
    glyphs = []
    for g, (rows, cols) in enumerate(ndimage.find_objects(glyph_labels), start=1):
        own = _dilate(glyph_labels[rows, cols] == g, 1)  # the anti-aliased fringe just outside belongs to it
        ink = np.where(own, a[rows, cols], 0.0).astype(np.float32)
        glyphs.append(Glyph(rows.start, rows.stop, cols.start, cols.stop, ink))
    glyphs.sort(key=lambda g: (g.left, g.right))
    return a, glyphs


def _kept(area: np.ndarray, top, bottom, left, right) -> np.ndarray:
    """Components that are not specks, or are specks right above or below a kept one (a dot, or an i's dot)."""
    big = _not_specks(area, top, bottom, left, right)
    for i in np.flatnonzero(~big):  # in label order: a speck kept here counts for the later ones
        shared = np.minimum(right[big], right[i]) - np.maximum(left[big], left[i])
        gap = np.maximum(top[big] - bottom[i], top[i] - bottom[big])
        big[i] = bool(((shared >= MERGE_OVERLAP * (right[i] - left[i])) & (gap <= (bottom - top)[big] // 2)).any())
    return big


def _merged(left: np.ndarray, right: np.ndarray, joined: np.ndarray) -> np.ndarray:
    """Which glyph (0..g-1) each component belongs to, components that share columns merged (see `segment`).

    Two components are joined when they share MERGE_OVERLAP of the narrower one's columns, or when
    they touch or overlap in columns and lie in the same `joined` (loose) component; glyphs are
    the connected components of that graph (scipy.sparse.csgraph). Only pairs that can share a
    column are tried: sorted by left edge, those that start at or before the other's right edge.
    """
    order = np.lexsort((right, left))
    lft, rgt = left[order], right[order]
    reach = np.searchsorted(lft, rgt, side="right") - np.arange(order.size) - 1  # later ones starting by my end
    first = np.repeat(np.arange(order.size), reach)  # pairs (k, k + 1), ..., (k, k + reach[k]) of sorted positions
    second = first + 1 + np.arange(reach.sum()) - np.repeat(np.cumsum(reach) - reach, reach)
    i, j = order[first], order[second]
    shared = np.minimum(right[i], right[j]) - np.maximum(left[i], left[j])
    narrower = np.minimum(right[i] - left[i], right[j] - left[j])
    edge = (shared >= MERGE_OVERLAP * narrower) | ((shared >= 0) & (joined[i] == joined[j]))
    graph = coo_array((np.ones(int(edge.sum())), (i[edge], j[edge])), shape=(left.size, left.size))
    return connected_components(graph, directed=False)[1]


def find_spaces(glyphs: list[Glyph]) -> list[bool]:
    """For each glyph after the first, whether a space comes before it.

    A space is a gap wider than SPACE_HEIGHTS times the median glyph height (the letter size,
    so it does not depend on how many spaces the line has) and SPACE_GAPS times the median gap
    (so a loosely set or monospaced line does not turn every wide letter gap into a space).
    """
    if len(glyphs) < 2:
        return []
    gaps = np.array([b.left - a.right for a, b in itertools.pairwise(glyphs)], dtype=np.float64)
    height = float(np.median([g.height for g in glyphs]))
    typical = max(float(np.median(gaps)), 1.0)
    threshold = max(SPACE_HEIGHTS * height, SPACE_GAPS * typical)
    return [bool(gap > threshold) for gap in gaps]


def stroke_width(binary: np.ndarray) -> float:
    """Mean stroke width of a binary shape in pixels: 2 * area / boundary length (a long stroke of width w: w)."""
    inner = binary.copy()  # eroded by the 4-neighbourhood, outside the image counting as ink
    inner[1:] &= binary[:-1]
    inner[:-1] &= binary[1:]
    inner[:, 1:] &= binary[:, :-1]
    inner[:, :-1] &= binary[:, 1:]
    return 2.0 * float(binary.sum()) / max(int((binary & ~inner).sum()), 1)


def fit_glyph(ink: np.ndarray, box: int = GLYPH_BOX, stroke: float = STROKE_WIDTH) -> np.ndarray:
    """A glyph's ink (float, any size) -> (28, 28) uint8 cell, the way EMNIST converted NIST glyphs.

    Scaled so that its longest side is NIST_SIZE, binarised at half its peak, thickened when its
    strokes are thinner than `stroke` (pixels of the cell: the training glyphs' width, which
    NIST_SIZE / box turns into NIST pixels), blurred (sigma NIST_BLUR), cropped to its box,
    downsampled to `box` pixels on its longest side (aspect kept) and centred by bounding box in
    the 28x28 cell, brightest ink 255.
    """
    ink = np.asarray(ink, dtype=np.float32)
    top, bottom, left, right = ink_box(ink / max(float(ink.max()), 1e-6))
    ink = ink[top:bottom, left:right]
    h, w = ink.shape
    scale = NIST_SIZE / max(h, w)
    big = Image.fromarray(ink, mode="F").resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC
    )
    binary = np.pad(np.asarray(big) > 0.5 * float(ink.max()), MAX_GROW + 3 * round(NIST_BLUR) + 1)
    target = stroke * NIST_SIZE / box
    grow = int(np.clip(round((target - stroke_width(binary)) / 2), 0, MAX_GROW))
    if grow:
        binary = _dilate(binary, grow)
    soft = Image.fromarray(binary.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(NIST_BLUR))
    soft_a = np.asarray(soft, dtype=np.float32) / 255.0
    t, b, lf, r = ink_box(soft_a, threshold=CROP_LEVEL)
    soft_a = soft_a[t:b, lf:r]
    sh, sw = soft_a.shape
    factor = box / max(sh, sw)
    nh, nw = min(GLYPH_SIZE, max(1, round(sh * factor))), min(GLYPH_SIZE, max(1, round(sw * factor)))
    small = np.asarray(Image.fromarray(soft_a, mode="F").resize((nw, nh), Image.Resampling.LANCZOS))
    small = np.clip(small, 0.0, None)
    small = small / max(float(small.max()), 1e-6)
    cell = np.zeros((GLYPH_SIZE, GLYPH_SIZE), dtype=np.float32)
    y, x = (GLYPH_SIZE - nh) // 2, (GLYPH_SIZE - nw) // 2
    cell[y : y + nh, x : x + nw] = small
    return np.clip(np.rint(cell * 255.0), 0, 255).astype(np.uint8)


def lay_out(cells: list[np.ndarray], spaces: list[bool], pitch: int = PITCH, min_width: int = GLYPH_SIZE) -> np.ndarray:
    """Cells side by side at `pitch`, an empty pitch for each space, saturating max: (28, W) uint8.

    Left-aligned from column 0 like EMNISTLines, with one empty cell after the last glyph
    (the training lines end in black) and at least `min_width` columns.
    """
    x = [0]
    for space in spaces:
        x.append(x[-1] + pitch * (2 if space else 1))
    width = max(min_width, (x[-1] if cells else 0) + 2 * GLYPH_SIZE)
    line = np.zeros((GLYPH_SIZE, width), dtype=np.uint8)
    for cell, left in zip(cells, x, strict=False):
        window = line[:, left : left + GLYPH_SIZE]
        np.maximum(window, cell, out=window)
    return line


def normalize_line(a: np.ndarray, pitch: int = PITCH, min_width: int = GLYPH_SIZE) -> tuple[np.ndarray, int]:
    """White-on-black ink (float, peak 1) -> (EMNISTLines-like (28, W) uint8 image, number of glyphs)."""
    _, glyphs = segment(a)
    cells = [fit_glyph(g.ink) for g in glyphs]
    return lay_out(cells, find_spaces(glyphs), pitch=pitch, min_width=min_width), len(glyphs)
