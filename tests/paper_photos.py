"""Font lines made to look like photos of paper, for tests/test_paper_photos.py.

A clean rendering (tests/font_lines.py: ink 20 on paper 245) is turned into what a phone camera
sees: grey paper with sensor noise, light falling off across the page, or writing that leans.
Each keeps the clean rendering's ink, so a test can compare what the reader found with the truth.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

CLEAN_PAPER, CLEAN_INK = 245.0, 20.0  # render_line's levels for dark ink on light paper


def ink_fraction(gray: np.ndarray) -> np.ndarray:
    """How much of each pixel of a clean dark-on-light rendering is ink, 0 (paper) to 1 (ink)."""
    return np.clip((CLEAN_PAPER - np.asarray(gray, dtype=np.float64)) / (CLEAN_PAPER - CLEAN_INK), 0.0, 1.0)


def to_uint8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def grey_noisy(
    gray: np.ndarray, paper: float = 150.0, ink: float = 45.0, noise: float = 20.0, seed: int = 0
) -> np.ndarray:
    """Grey paper with Gaussian sensor noise (standard deviation `noise` grey levels): a dim photo or a cheap scan."""
    t = ink_fraction(gray)
    rng = np.random.default_rng(seed)
    return to_uint8(paper - t * (paper - ink) + rng.normal(0.0, noise, t.shape))


def lit_unevenly(gray: np.ndarray, darkest: float = 0.25, noise: float = 4.0, seed: int = 0) -> np.ndarray:
    """Light falling off to the left: the left edge gets `darkest` of the right edge's light (a lamp to the right).

    The light multiplies paper and ink alike, as it does in a photo; the left half is far darker than the right.
    """
    a = np.asarray(gray, dtype=np.float64)
    x = np.linspace(0.0, 1.0, a.shape[1])
    light = darkest + (1.0 - darkest) * x  # the left half gets 25-63 % of the light, the right half 63-100 %
    rng = np.random.default_rng(seed)
    return to_uint8(a * light[None, :] + rng.normal(0.0, noise, a.shape))


def sheared(gray: np.ndarray, degrees: float) -> np.ndarray:
    """The rendering leaning right by `degrees` (italic-like: tops move right), on a canvas widened to hold it."""
    h, w = gray.shape
    paper = float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    slope = math.tan(math.radians(degrees))
    extra = math.ceil(abs(slope) * h)
    img = Image.fromarray(np.asarray(gray, dtype=np.uint8))
    # output (x, y) samples input (x + slope * y + c, y): c = -slope * h keeps the bottom row (leaning right) in
    # place, c = 0 the top row (leaning left), so the writing always fits the widened canvas
    coeffs = (1.0, slope, -slope * h if slope >= 0 else 0.0, 0.0, 1.0, 0.0)
    out = img.transform((w + extra, h), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=int(paper))
    return np.asarray(out)
