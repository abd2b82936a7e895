"""The picture `text-recognizer predict --show-input OUT.png` writes: every step from the photo to the model's input.

A misreading is explained by the first step that went wrong, so all four are drawn, top to
bottom, each under a labelled band: the image as decoded (grayscale, upright by EXIF), the ink
mask the threshold found, the ink stood upright (or left as it was, with the slant measured), and
what the model saw, MODEL_SCALE times its size with nearest-neighbour pixels so that it can be
read back exactly. For a page (page.py), `page_figure` draws each line's box on the input, numbered in reading
order, with the skew it measured, and under it each line's reading beside its number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from text_recognizer.reading.page import PageLayout
from text_recognizer.reading.paper import SLANT_GAIN, SLANT_MIN, Ink

MODEL_SCALE = 3  # the model's 28-px input is drawn this many times its size
MIN_WIDTH = 480  # the figure is at least this wide, whatever the line's length
MAX_PANEL_HEIGHT = 160  # the input, mask and upright panels are drawn at one scale, at most this high
LABEL_HEIGHT = 16
LABEL_COLOUR = (28, 60, 120)  # the bands above the panels (no grayscale panel holds this colour)
BACKGROUND = (64, 64, 64)  # where a panel is narrower than the figure


def _panel(a: np.ndarray, scale: float) -> Image.Image:
    """A grayscale or float (peak 1) image resized by `scale`."""
    a = np.asarray(a)
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    h, w = a.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return Image.fromarray(a).resize(size, Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR)


def _labels(steps: Ink, model_input: np.ndarray) -> list[str]:
    measured = f"the writing leans {steps.slant:+.0f} degrees, {steps.gain:.2f}x sharper upright"
    if steps.deslanted:
        upright = f"3. sheared upright: {measured}"
    else:
        upright = f"3. not sheared: {measured} (sheared from {SLANT_MIN:.0f} degrees and {SLANT_GAIN:.2f}x)"
    h, w = model_input.shape
    return [
        "1. the image, grayscale",
        f"2. ink mask: {steps.how}",
        upright,
        f"4. what the model saw: {w}x{h} px, drawn {MODEL_SCALE}x",
    ]


def steps_figure(gray: np.ndarray, steps: Ink, model_input: np.ndarray) -> Image.Image:
    """An RGB picture of the four steps, top to bottom, each under a LABEL_COLOUR band with its caption."""
    model = np.asarray(model_input, dtype=np.uint8)
    width = max(MIN_WIDTH, model.shape[1] * MODEL_SCALE)
    enlarged = model.repeat(MODEL_SCALE, axis=0).repeat(MODEL_SCALE, axis=1)
    shrunk = steps.mask.shape[0] / np.shape(gray)[0]  # the ink of a photo taller than paper.MAX_HEIGHT is smaller
    widest = max(np.shape(gray)[1] * shrunk, steps.mask.shape[1], steps.upright.shape[1])
    scale = min(width / widest, MAX_PANEL_HEIGHT / steps.mask.shape[0])  # one scale for the first three panels
    panels = [
        _panel(gray, scale * shrunk),
        _panel(steps.mask.astype(np.uint8) * 255, scale),
        _panel(steps.upright, scale),
        Image.fromarray(enlarged),
    ]
    height = sum(LABEL_HEIGHT + p.height for p in panels)
    figure = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(figure)
    y = 0
    for panel, label in zip(panels, _labels(steps, model), strict=True):
        draw.rectangle([0, y, width - 1, y + LABEL_HEIGHT - 1], fill=LABEL_COLOUR)
        draw.text((4, y + 2), label, fill=(255, 255, 255))
        figure.paste(panel.convert("RGB"), (0, y + LABEL_HEIGHT))
        y += LABEL_HEIGHT + panel.height
    return figure


PAGE_BOX_COLOUR = (230, 40, 40)  # the lines' boxes on the page (no grayscale panel holds this colour)
MAX_PAGE_WIDTH = 1200  # the page figure is drawn at most this wide


def page_figure(gray: np.ndarray, layout: PageLayout, readings: Sequence[str] | None = None) -> Image.Image:
    """An RGB picture of a page with each line's box drawn on the input (a rotated rectangle when the page is
    skewed) and numbered in reading order, under a LABEL_COLOUR band saying the skew and the line count.

    `readings` (one per line) are written under the page, each after its line's number, so that a misread
    line can be matched to its box.
    """
    gray = np.asarray(gray)
    if readings is not None and len(readings) != len(layout.lines):
        raise ValueError(f"{len(readings)} readings for {len(layout.lines)} lines")
    scale = min(1.0, MAX_PAGE_WIDTH / gray.shape[1])
    panel = _panel(gray, scale).convert("RGB")
    below = LABEL_HEIGHT * len(readings) if readings else 0
    figure = Image.new("RGB", (max(MIN_WIDTH, panel.width), LABEL_HEIGHT + panel.height + below), BACKGROUND)
    figure.paste(panel, (0, LABEL_HEIGHT))
    draw = ImageDraw.Draw(figure)
    levelled = "levelled" if layout.rotated else "not levelled"
    label = f"{len(layout.lines)} lines, skew {layout.skew_degrees:+.1f} degrees ({levelled}); ink: {layout.how}"
    draw.rectangle([0, 0, figure.width - 1, LABEL_HEIGHT - 1], fill=LABEL_COLOUR)
    draw.text((4, 2), label, fill=(255, 255, 255))
    for k, line in enumerate(layout.lines, start=1):
        points = [(x * scale, LABEL_HEIGHT + y * scale) for x, y in line.corners]
        draw.polygon(points, outline=PAGE_BOX_COLOUR, width=2)
        draw.text((points[0][0] + 2, points[0][1] + 1), str(k), fill=PAGE_BOX_COLOUR)
    for k, text in enumerate(readings or [], start=1):
        draw.text((4, LABEL_HEIGHT + panel.height + (k - 1) * LABEL_HEIGHT + 2), f"{k}. {text}", fill=(255, 255, 255))
    return figure
