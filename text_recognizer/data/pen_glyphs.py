"""Generated glyphs that look written, not typeset: single-stroke Hershey fonts drawn with a random pen.

A font glyph is a filled outline; a written glyph is a path traced by a pen. The Hershey fonts
(the `Hershey-Fonts` package, MIT) hold each character as strokes, in print and script styles,
for all 62 EMNIST classes. Each glyph here is one of them, slanted, rotated and stretched at
random, its strokes resampled and bent by a smooth random walk (a hand is not a ruler), then drawn
with a round pen of random width whose pressure varies from stroke to stroke, and finally
fitted into the 28x28 frame as the other generated glyphs are.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw

from text_recognizer.metadata import EMNIST_CLASSES, GLYPH_SIZE

# Print and script styles; gothic, greek and symbol sets are left out (not how people write).
PEN_FONTS: tuple[str, ...] = ("futural", "futuram", "rowmans", "rowmand", "scripts", "scriptc", "cursive", "timesi")
_CANVAS = 64  # pixels of the drawing canvas; the glyph's longest side takes about 46 of them
_STEP = 0.02  # resampling step along a stroke, in glyph heights


@functools.cache
def _strokes(font: str, char: str) -> tuple[np.ndarray, ...]:
    """The strokes of one character, each an (n, 2) array of x, y (y down) in font units of about 1 per height."""
    strokes = [np.asarray(s, dtype=np.float64) * [1, -1] for s in _loaded(font).strokes_for_text(char)]
    return tuple(s for s in strokes if len(s) >= 2)


@functools.cache
def _loaded(font: str):  # -> HersheyFonts.HersheyFonts
    from HersheyFonts import HersheyFonts

    hershey = HersheyFonts()
    hershey.load_default_font(font)
    hershey.normalize_rendering(1.0)
    return hershey


def _resampled(stroke: np.ndarray) -> np.ndarray:
    """Points every _STEP along the polyline, so that jitter bends a stroke instead of moving its corners only."""
    lengths = np.r_[0, np.cumsum(np.linalg.norm(np.diff(stroke, axis=0), axis=1))]
    if lengths[-1] == 0:
        return stroke
    at = np.linspace(0, lengths[-1], max(2, int(lengths[-1] / _STEP) + 1))
    return np.stack([np.interp(at, lengths, stroke[:, 0]), np.interp(at, lengths, stroke[:, 1])], axis=1)


def _wobble(points: np.ndarray, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random walk added along the stroke (cumulative noise, mean removed, scaled to `amplitude`)."""
    walk = np.cumsum(rng.normal(0, 1, points.shape), axis=0)
    walk -= walk.mean(axis=0)
    scale = np.abs(walk).max() or 1.0
    return points + walk * (amplitude / scale)


def _pen_image(strokes: tuple[np.ndarray, ...], rng: np.random.Generator) -> np.ndarray:
    """One glyph drawn on the canvas: (64, 64) float32 ink 0..1."""
    slant, turn = np.tan(np.radians(rng.uniform(-18, 18))), np.radians(rng.uniform(-6, 6))
    aspect = rng.uniform(0.75, 1.25)
    matrix = np.array([[aspect, slant], [0, 1]]) @ np.array(
        [[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]]
    )
    amplitude = rng.uniform(0.005, 0.03)
    paths = [_wobble(_resampled(s), amplitude, rng) @ matrix.T for s in strokes]
    points = np.concatenate(paths)
    low, high = points.min(axis=0), points.max(axis=0)
    scale = 46 / max(high - low)
    centre = (low + high) / 2
    width = rng.uniform(2.5, 7.5)
    canvas = Image.new("F", (_CANVAS, _CANVAS), 0.0)
    draw = ImageDraw.Draw(canvas)
    for path in paths:
        xy = (path - centre) * scale + _CANVAS / 2
        pressure = rng.uniform(0.7, 1.0)
        draw.line(
            [tuple(p) for p in xy],
            fill=float(pressure),
            width=max(1, round(width * rng.uniform(0.8, 1.2))),
            joint="curve",
        )
    return np.asarray(canvas, dtype=np.float32)


def render_pen_glyphs(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One pen-drawn glyph per label (0..61): (N, 28, 28) uint8, upright, white on black, like render_glyphs."""
    from text_recognizer.data.handwriting import to_emnist_look

    labels = np.asarray(labels, dtype=np.int64)
    fonts = rng.integers(0, len(PEN_FONTS), len(labels))
    drawn = np.zeros((len(labels), _CANVAS, _CANVAS), dtype=np.float32)
    for i, (label, font) in enumerate(zip(labels.tolist(), fonts.tolist(), strict=True)):
        drawn[i] = _pen_image(_strokes(PEN_FONTS[font], EMNIST_CLASSES[label]), rng)
    if len(labels) == 0:
        return np.zeros((0, GLYPH_SIZE, GLYPH_SIZE), dtype=np.uint8)
    return to_emnist_look(drawn, rng)
