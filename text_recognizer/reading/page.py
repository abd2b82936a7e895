"""Pages, not just lines: find the lines of text on a note or paragraph and read each with the line model.

The line model reads one line; read as one, the glyphs of several lines interleave into nonsense.
`find_lines` cuts a page into lines, in reading order (top to bottom, one column):

1. Ink: paper.find_ink (Sauvola on the flattened paper, either polarity, noise blurred away), at
   most paper.MAX_HEIGHT high: a phone photo is cut at that scale and its boxes scaled back.
2. Skew: the angle within +-MAX_SKEW degrees whose rotation makes the horizontal ink profile
   sharpest (largest sum of squares: the lines' ink piles into few rows), coarse then fine. The
   ink is rotated level when the skew is at least MIN_SKEW and clearly sharper than level.
3. Lines: the row profile of the letters (components at least LINE_GLYPH_SHARE of the typical
   letter height: no i-dots, commas or specks), smoothed, has one peak per line; neighbouring
   peaks closer than MIN_LINE_GAP letter heights, or not separated by a valley below VALLEY_SHARE
   of the lower peak, are one line (one short word on a line still makes its own peak). The
   valley rows bound the lines' bands.
4. Components go to the band that holds most of their ink, so a descender (g, y, p) or an ascender
   reaching into the neighbour's band stays home; a small one (an i's dot, a comma) goes with the
   nearest letter it shares columns with; a component that bridges two bands (a descender touching
   the next line's ascender) is cut at the valley. Each line's crop is its own ink only (a
   neighbour's descender inside its box is left out), dark on white, with a margin: what
   predict.read_array reads.

Boxes are in the deskewed image's pixels at the input's scale (`PageLayout.deskewed` draws that
image); `Line.corners` gives the same box in the input image's pixels.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from scipy import ndimage

from text_recognizer.reading import normalize, paper

if TYPE_CHECKING:
    from text_recognizer.models.checkpoint import LoadedModel
    from text_recognizer.reading.evaluation import LineDecoder
    from text_recognizer.reading.predict import Reading

MAX_SKEW = 10.0  # skews from -MAX_SKEW to MAX_SKEW degrees are tried...
COARSE_STEP = 0.5  # ...in steps of this many degrees, then around the best in FINE_STEP
FINE_STEP = 0.1
MIN_SKEW = 0.3  # a page skewed less than this (degrees) is not rotated: at 0.3 degrees a 600 px line drifts 3 px
SKEW_GAIN = 1.02  # ...nor one whose profile the rotation sharpens less than this (no clear lines to level)
SKEW_PIXELS = 40_000  # the skew is measured on at most this many ink pixels (every n-th)
LETTER_AREA = 0.3  # a letter has at least this share of the median ink of the page's tall components
CORE_TRIM = 0.2  # the profile leaves out this share of each letter's rows at its top and at its bottom
PROFILE_SIGMA = 0.1  # the row profile is smoothed by this many typical letter heights
MIN_LINE_GAP = 0.6  # peaks of the profile closer than this many letter heights are one line
VALLEY_SHARE = 0.6  # two peaks are two lines when the profile between them falls below this share of the lower
DOT_SIZE = 0.35  # a component at most this many letter heights tall and wide may be a dot (of an i or j)...
DOT_GAP = 0.5  # ...of a letter under or over it, this many letter heights away, when its band has none
STRAY_REACH = 0.5  # a component that is not a letter, this many letter heights beyond its line's letters, is dropped
BRIDGE_HEIGHT = 1.5  # a component this many letter heights tall...
BRIDGE_SHARE = 0.2  # ...with this share of its ink beyond a valley bridges two lines: it is cut there
CROP_MARGIN = 0.2  # a line's crop has this share of its height of paper around the ink (as preprocess_line)
FRINGE = 2.0  # ink this many pixels from a line's mask is its anti-aliased fringe (the mask is grown by one)
FOREIGN_GROW = 2  # other lines' ink in a crop is painted over this many pixels beyond it (its fringe)


@dataclasses.dataclass(frozen=True)
class Box:
    """A rectangle in pixels, ends exclusive (normalize.ink_box's order)."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left


@dataclasses.dataclass(frozen=True)
class Line:
    """One line of a page: where it is and the image the line reader is given."""

    box: Box  # the line's ink in the input image, upright rectangle (a skewed line's box takes in more paper)
    corners: tuple[tuple[float, float], ...]  # (x, y) in the input image of its tight box on the level page,
    # top-left first, clockwise: a rotated rectangle when the page was skewed (what a figure draws)
    level_box: Box  # the tight box in PageLayout.ink (the level page at the working scale)
    crop: np.ndarray  # (h, w) uint8: `box` of the input with a margin, other lines' ink painted over with paper
    ink_crop: np.ndarray  # (h, w) uint8: the line's own ink as the page's threshold found it, dark on white


@dataclasses.dataclass(frozen=True)
class PageLayout:
    """The lines found on a page, top to bottom, and the steps that found them (`--show-input` draws them)."""

    lines: list[Line]
    skew_degrees: float  # the lines rise to the right by this much (negative: they fall); measured, rotated or not
    rotated: bool  # whether the ink was rotated level to cut the lines (MIN_SKEW, SKEW_GAIN)
    gain: float  # how many times sharper the row profile is at skew_degrees than level
    ink: np.ndarray  # (h, w) float32 white on black, level, at the working scale (at most paper.MAX_HEIGHT high)
    scale: float  # working pixels per input pixel (1 unless the input was taller than paper.MAX_HEIGHT)
    how: str  # how the ink was found, in words


# --- skew ------------------------------------------------------------------------------------------


def _profile_score(ys: np.ndarray, xs: np.ndarray, degrees: float) -> float:
    """Sum of squares of the row profile of points (ys, xs) rotated by `degrees` (each point shared between
    the two rows it falls between, so that a fraction of a degree changes the score smoothly)."""
    t = math.radians(degrees)
    rows = ys * math.cos(t) + xs * math.sin(t)
    rows -= rows.min()
    low = np.floor(rows)
    upper = rows - low
    low = low.astype(np.int64)
    counts = np.bincount(low, weights=1.0 - upper, minlength=int(low.max()) + 2)
    counts[1:] += np.bincount(low, weights=upper, minlength=counts.size - 1)
    return float(np.dot(counts, counts))


def estimate_skew(mask: np.ndarray) -> tuple[float, float]:
    """(the skew in degrees, positive when the lines rise to the right; how many times sharper the row profile
    is at that angle than level). The angle is searched from -MAX_SKEW to MAX_SKEW, coarse then fine."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return 0.0, 1.0
    step = max(1, ys.size // SKEW_PIXELS)
    ys, xs = ys[::step].astype(np.float64), xs[::step].astype(np.float64)
    ys -= ys.mean()
    xs -= xs.mean()
    level = _profile_score(ys, xs, 0.0)
    coarse = np.arange(-MAX_SKEW, MAX_SKEW + COARSE_STEP / 2, COARSE_STEP)
    best = float(coarse[int(np.argmax([_profile_score(ys, xs, a) for a in coarse]))])
    fine = np.arange(best - COARSE_STEP, best + COARSE_STEP + FINE_STEP / 2, FINE_STEP)
    fine = fine[np.abs(fine) <= MAX_SKEW + 1e-9]
    scores = [_profile_score(ys, xs, a) for a in fine]
    k = int(np.argmax(scores))
    return round(float(fine[k]), 2), scores[k] / level


def _rotation(shape: tuple[int, int], degrees: float) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """(output (width, height), the input centre, the output centre) of rotating an image level by `degrees`."""
    h, w = shape
    t = math.radians(degrees)
    c, s = abs(math.cos(t)), abs(math.sin(t))
    out_w, out_h = w * c + h * s, w * s + h * c
    return (math.ceil(out_w), math.ceil(out_h)), np.array([w / 2, h / 2]), np.array([out_w / 2, out_h / 2])


def _to_input(points: np.ndarray, shape: tuple[int, int], degrees: float) -> np.ndarray:
    """Points (x, y) of the image rotated level by `degrees` -> the same points in the image of `shape`."""
    _, centre_in, centre_out = _rotation(shape, degrees)
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    d = np.asarray(points, dtype=np.float64) - centre_out
    return centre_in + np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)


def _to_level(points: np.ndarray, shape: tuple[int, int], degrees: float) -> np.ndarray:
    """Points (x, y) of the image of `shape` -> the same points in that image rotated level by `degrees`."""
    _, centre_in, centre_out = _rotation(shape, degrees)
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    d = np.asarray(points, dtype=np.float64) - centre_in
    return centre_out + np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1]], axis=1)


def _rotate(a: np.ndarray, degrees: float, fill: float = 0.0) -> np.ndarray:
    """Float image rotated so that lines skewed by `degrees` lie level, on a canvas grown to hold all of it."""
    size, centre_in, centre_out = _rotation(a.shape, degrees)
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    # the output pixel q samples the input at centre_in + R^T (q - centre_out)
    coeffs = (c, s, centre_in[0] - c * centre_out[0] - s * centre_out[1],
              -s, c, centre_in[1] + s * centre_out[0] - c * centre_out[1])  # fmt: skip
    img = Image.fromarray(np.asarray(a, dtype=np.float32), mode="F")
    out = img.transform(size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=fill)
    return np.asarray(out, dtype=np.float32)


# --- lines ------------------------------------------------------------------------------------------


def _bands(profile: np.ndarray, letter: float) -> list[int]:
    """The rows that separate the lines of a smoothed row profile (one fewer than the lines), top to bottom."""
    rows = np.arange(profile.size)
    is_peak = (profile > 0) & (profile >= np.roll(profile, 1)) & (profile >= np.roll(profile, -1))
    is_peak[0] &= profile[0] >= profile[1] if profile.size > 1 else True
    is_peak[-1] &= profile[-1] >= profile[-2] if profile.size > 1 else True
    peaks = list(rows[is_peak])
    merged = True
    while merged and len(peaks) > 1:
        merged = False
        for k in range(len(peaks) - 1):
            p, q = peaks[k], peaks[k + 1]
            low = float(profile[p : q + 1].min())
            if q - p < MIN_LINE_GAP * letter or low > VALLEY_SHARE * min(profile[p], profile[q]):
                peaks[k : k + 2] = [p if profile[p] >= profile[q] else q]
                merged = True
                break
    return [int(p + np.argmin(profile[p : q + 1])) for p, q in itertools.pairwise(peaks)]


def _line_labels(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """(each ink pixel's line, 1..n top to bottom and 0 off the ink; n) of a level page's ink mask."""
    labels, n = normalize.label_components(mask)
    if n == 0:
        raise normalize.BlankImageError("the image is blank: no ink found")
    top, bottom, left, right, area = normalize._boxes(labels, n)
    keep = normalize._not_specks(area, top, bottom, left, right)
    heights = bottom - top
    letter = float(np.quantile(heights[keep], normalize.TYPICAL_QUANTILE))
    tall = keep & (heights >= normalize.LINE_GLYPH_SHARE * letter)
    letters = tall & (area >= LETTER_AREA * float(np.median(area[tall])))  # not a speck of a dark corner's noise
    # the profile counts each letter's middle rows only: ascenders and descenders that reach into the
    # neighbour lines' rows would fill the valleys between them
    trim = np.round(CORE_TRIM * heights).astype(np.int64)
    rows = np.arange(mask.shape[0])[:, None]
    core_top = np.concatenate([[0], top + trim])[labels]
    core_bottom = np.concatenate([[0], bottom - trim])[labels]
    single = letters & (heights < BRIDGE_HEIGHT * letter)  # not two lines' letters touching
    is_core = np.concatenate([[False], single])[labels] & (rows >= core_top) & (rows < core_bottom)
    profile = ndimage.gaussian_filter1d(is_core.sum(axis=1).astype(np.float64), max(1.0, PROFILE_SIGMA * letter))
    cuts = np.array(_bands(profile, letter), dtype=np.int64)
    band_of_row = np.searchsorted(cuts, np.arange(mask.shape[0]), side="right") + 1  # 1..lines
    lines = cuts.size + 1
    # how much of each component's ink lies in each band: (component, band)
    ink = labels > 0
    share = np.zeros((n + 1, lines + 1))
    np.add.at(share, (labels[ink], np.broadcast_to(band_of_row[:, None], mask.shape)[ink]), 1.0)
    share = share[1:, 1:] / np.maximum(area[:, None], 1)
    line_of = np.zeros(n + 1, dtype=np.int64)
    line_of[1:] = np.argmax(share, axis=1) + 1
    line_of[1:][~keep] = 0
    letter_line = line_of[1:][letters]
    dots = keep & ~letters & (np.maximum(heights, right - left) <= DOT_SIZE * letter)
    for i in np.flatnonzero(dots):  # a dot beyond the valley: with the letter under or over it
        shared = np.minimum(right[letters], right[i]) - np.maximum(left[letters], left[i])
        gap = np.maximum(top[letters] - bottom[i], top[i] - bottom[letters])
        near = (shared > 0) & (gap <= DOT_GAP * letter)
        if near.any() and not (letter_line[near] == line_of[i + 1]).any():
            line_of[i + 1] = letter_line[near][np.argmin(gap[near])]
    for k in np.unique(line_of[1:][letters]):  # a speck far from its line's letters (noise, dirt) is no part of it
        own = letters & (line_of[1:] == k)
        lo, hi = top[own].min() - STRAY_REACH * letter, bottom[own].max() + STRAY_REACH * letter
        lft, rgt = left[own].min() - STRAY_REACH * letter, right[own].max() + STRAY_REACH * letter
        far = ~letters & (line_of[1:] == k) & ((bottom < lo) | (top > hi) | (right < lft) | (left > rgt))
        line_of[1:][far] = 0
    out = line_of[labels]
    second = np.sort(share, axis=1)[:, -2] if lines > 1 else np.zeros(n)
    bridges = np.flatnonzero(letters & (heights >= BRIDGE_HEIGHT * letter) & (second >= BRIDGE_SHARE))
    for i in bridges:  # touching lines: each row of the bridge goes to its own band
        own = labels == i + 1
        out[own] = np.broadcast_to(band_of_row[:, None], mask.shape)[own]
    used = np.unique(out[out > 0])
    renumber = np.zeros(lines + 1, dtype=np.int64)
    renumber[used] = np.arange(1, used.size + 1)
    return renumber[out], int(used.size)


def _box_of(own: np.ndarray) -> Box:
    rows, cols = np.flatnonzero(own.any(axis=1)), np.flatnonzero(own.any(axis=0))
    return Box(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def _crop(gray: np.ndarray, owner: np.ndarray, k: int, box: Box) -> np.ndarray:
    """Line k's box of the input with a margin, uint8, other lines' ink reaching into it (a descender from
    above, the neighbours of a skewed line) painted over with the paper around it.

    The input itself, neither the page's ink nor a rotated copy, is cropped: read_array then finds the
    ink at the line's own scale (the Sauvola window follows the image height), as for the line
    photographed alone, and no resampling softens thin joins (a level copy read worse: font lines
    skewed by up to 5 degrees, 5.1 % CER against 3.5 % as they were; the glyph reader takes a few degrees).
    """
    margin = max(2, round(CROP_MARGIN * box.height))
    top, left = max(0, box.top - margin), max(0, box.left - margin)
    bottom, right = min(gray.shape[0], box.bottom + margin), min(gray.shape[1], box.right + margin)
    sub, own = gray[top:bottom, left:right].astype(np.float64), owner[top:bottom, left:right]
    foreign = ndimage.binary_dilation((own > 0) & (own != k), iterations=FOREIGN_GROW) & (own != k)
    paper_only = (own == 0) & ~foreign
    if foreign.any() and paper_only.any():  # the paper's level near each pixel: a normalised Gaussian average
        sigma = max(2.0, box.height / 2)
        weight = ndimage.gaussian_filter(paper_only.astype(np.float64), sigma)
        level = ndimage.gaussian_filter(np.where(paper_only, sub, 0.0), sigma)
        fill = np.where(weight > 1e-3, level / np.maximum(weight, 1e-3), float(np.median(sub[paper_only])))
        # with the paper's own grain, so that the reader's noise estimate does not see smooth paper
        grain = np.random.default_rng(0).choice((sub - fill)[paper_only], size=int(foreign.sum()))
        sub[foreign] = fill[foreign] + grain
    return np.clip(np.rint(sub), 0, 255).astype(np.uint8)


def _ink_crop(ink: np.ndarray, own: np.ndarray, box: Box) -> np.ndarray:
    """A line's own ink on the level page, dark on white with a margin: nothing of another line can be in it."""
    line = np.pad(np.where(own, ink, 0.0)[box.top : box.bottom, box.left : box.right], max(2, round(0.2 * box.height)))
    return (255 - np.clip(np.rint(line * 255.0), 0, 255)).astype(np.uint8)


def _owners(ink: np.ndarray, level_lines: np.ndarray, skew: float, rotated: bool) -> np.ndarray:
    """Each ink pixel's line (0 off the ink) in the unrotated working image: the line of the level page's pixel
    it rotates onto, taken from the nearest labelled pixel there (so the fringe goes with its stroke)."""
    ys, xs = np.nonzero(ink > 0)
    points = np.stack([xs + 0.5, ys + 0.5], axis=1)
    if rotated:
        points = _to_level(points, ink.shape, skew)
    qx = np.clip(np.floor(points[:, 0]).astype(np.int64), 0, level_lines.shape[1] - 1)
    qy = np.clip(np.floor(points[:, 1]).astype(np.int64), 0, level_lines.shape[0] - 1)
    owner = np.zeros(ink.shape, dtype=np.int32)
    owner[ys, xs] = level_lines[qy, qx]
    return owner


def find_lines(gray: np.ndarray) -> PageLayout:
    """The lines of text of a grayscale page (either polarity), top to bottom: see the module docstring.

    ValueError for an image that is not (height, width); normalize.BlankImageError for one without ink.
    """
    g = np.asarray(gray)
    if g.ndim != 2 or g.size == 0:
        raise ValueError(f"expected a (height, width) grayscale image, got shape {g.shape}")
    mask, ink, how = paper.find_ink(g)
    scale = mask.shape[0] / g.shape[0]
    skew, gain = estimate_skew(mask)
    rotated = abs(skew) >= MIN_SKEW and gain >= SKEW_GAIN
    level_ink = _rotate(ink, skew) if rotated else ink
    level_mask = _rotate(mask.astype(np.float32), skew) >= 0.5 if rotated else mask
    labels, n = _line_labels(level_mask)
    distance, (near_y, near_x) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    # every pixel of the level page near a line's ink: that line (its anti-aliased fringe); a dropped speck: none
    nearest = np.where(distance <= FRINGE, labels[near_y, near_x], 0)
    level_owner = np.where(level_ink > 0, nearest, 0)
    owner = _owners(ink, nearest, skew, rotated)
    if owner.shape != g.shape:  # found at the working scale: each input pixel takes the nearest one's line
        owner = np.asarray(Image.fromarray(owner, mode="I").resize((g.shape[1], g.shape[0]), Image.Resampling.NEAREST))
    lines = []
    for k in range(1, n + 1):
        level_box, box = _box_of(level_owner == k), _box_of(owner == k)
        b = level_box
        xy = np.array([[b.left, b.top], [b.right, b.top], [b.right, b.bottom], [b.left, b.bottom]], dtype=np.float64)
        corners = (_to_input(xy, mask.shape, skew) if rotated else xy) / scale
        lines.append(
            Line(
                box=box,
                corners=tuple((float(x), float(y)) for x, y in corners),
                level_box=level_box,
                crop=_crop(g, owner, k, box),
                ink_crop=_ink_crop(level_ink, level_owner == k, level_box),
            )
        )
    return PageLayout(lines=lines, skew_degrees=skew, rotated=rotated, gain=gain, ink=level_ink, scale=scale, how=how)


# --- reading ----------------------------------------------------------------------------------------


def prepare_lines(
    gray: np.ndarray, loaded: LoadedModel, *, layout: str = "glyphs", page: PageLayout | None = None
) -> tuple[PageLayout, list[tuple[list[np.ndarray], paper.Ink]]]:
    """(the page's lines, each line's candidate model inputs and how its ink was found), top to bottom.

    Prepared, not read: predict reads every line of every image in the same batches. A line's crop is
    prepared as predict.read_array prepares a line image, with the shape check off (a line of one short
    word is still a line); when the reader refuses the crop (it took in ink the page's threshold missed)
    the line's own ink (`ink_crop`) is prepared instead. PredictError (one line) for a blank image, a
    character checkpoint, or a line refused both ways (the message says which line).
    """
    from text_recognizer.reading import predict  # here, so that predict may import this module to offer pages

    if loaded.kind != "line":
        raise predict.PredictError(f"reading a page needs a line checkpoint, got a {loaded.kind} one")
    if page is None:
        try:
            page = find_lines(gray)
        except ValueError as exc:  # normalize.BlankImageError too
            raise predict.PredictError(str(exc)) from exc
    if not page.lines:
        raise predict.PredictError("the image is blank: no line of text found")
    out = []
    for k, line in enumerate(page.lines, start=1):
        try:
            out.append(predict.candidate_inputs(line.crop, loaded, layout=layout, check_kind=False))
        except predict.PredictError:
            try:
                out.append(predict.candidate_inputs(line.ink_crop, loaded, layout=layout, check_kind=False))
            except predict.PredictError as exc:
                raise predict.PredictError(f"line {k} of {len(page.lines)}: {exc}") from exc
    return page, out


def read_page(
    gray: np.ndarray,
    loaded: LoadedModel,
    *,
    decode: LineDecoder | None = None,
    layout: str = "glyphs",
    page: PageLayout | None = None,
) -> list[tuple[Box, Reading]]:
    """Each line of a page read by a line checkpoint, top to bottom: prepare_lines' inputs read in one batched
    call (predict.read_model_inputs), each line's most confident candidate kept, as predict.read_array keeps.

    `page` is `find_lines(gray)` when the caller has it already. PredictError as prepare_lines says.
    """
    from text_recognizer.reading import predict

    page, prepared = prepare_lines(gray, loaded, layout=layout, page=page)
    read = iter(predict.read_model_inputs([i for images, _ in prepared for i in images], loaded, decode=decode))
    return [
        (line.box, dataclasses.replace(predict.most_confident([next(read) for _ in images]), steps=found))
        for line, (images, found) in zip(page.lines, prepared, strict=True)
    ]
