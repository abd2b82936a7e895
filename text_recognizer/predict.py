"""Read the text of an image file with a saved checkpoint.

A photo or scan looks nothing like the training data, so the image is first brought to the
EMNIST look: grayscale, white ink on black, cropped to the ink, and scaled like the training
images (a glyph fitted into 20x20 and centred in 28x28, as EMNIST glyphs are; a line scaled
to height 28 with the ink about 20 pixels tall, as in EMNISTLines).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from text_recognizer.checkpoint import CheckpointError, Kind, LoadedModel, load_checkpoint
from text_recognizer.evaluation import default_device, to_model_input
from text_recognizer.lit_models.ctc import greedy_decode, indices_to_text
from text_recognizer.metadata import GLYPH_SIZE

GLYPH_BOX = 20  # EMNIST glyphs are fitted into 20x20 and centred in 28x28
INK_THRESHOLD = 0.25  # fraction of the brightest ink above which a pixel counts as ink for the crop


class PredictError(RuntimeError):
    """The image or the checkpoint cannot be used for prediction."""


def load_image(image_path: str | os.PathLike[str]) -> np.ndarray:
    """(H, W) uint8 grayscale of an image file; transparent areas count as white paper."""
    path = Path(image_path)
    if not path.is_file():
        raise PredictError(f"image {path} not found")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(paper, rgba)
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise PredictError(f"{path} is not a readable image (PNG, JPEG, ...): {exc}") from exc


def _white_on_black(gray: np.ndarray) -> np.ndarray:
    """Float image with background 0 and the brightest ink 1, whatever the input polarity.

    The background level is the median of the border pixels: light (> 127) means dark ink on
    paper, so the image is inverted.
    """
    a = gray.astype(np.float32)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    background = float(np.median(border))
    if background > 127:
        a = 255.0 - a
        background = 255.0 - background
    a = np.clip(a - background, 0.0, None)
    peak = float(a.max())
    if peak <= 0:
        raise PredictError("the image is blank: no ink found")
    return a / peak


def _ink_box(a: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero((a > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((a > INK_THRESHOLD).any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _resize(a: np.ndarray, height: int, width: int) -> np.ndarray:
    img = Image.fromarray(np.clip(a * 255.0, 0, 255).astype(np.uint8))
    return np.asarray(img.resize((max(width, 1), max(height, 1)), Image.Resampling.LANCZOS), dtype=np.uint8)


def preprocess_char(gray: np.ndarray) -> np.ndarray:
    """(H, W) uint8 of any polarity -> (28, 28) uint8, white glyph on black fitted into 20x20 and centred."""
    a = _white_on_black(gray)
    top, bottom, left, right = _ink_box(a)
    a = a[top:bottom, left:right]
    h, w = a.shape
    scale = GLYPH_BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    glyph = _resize(a, nh, nw)
    out = np.zeros((GLYPH_SIZE, GLYPH_SIZE), dtype=np.uint8)
    y, x = (GLYPH_SIZE - nh) // 2, (GLYPH_SIZE - nw) // 2
    out[y : y + nh, x : x + nw] = glyph
    return out


def preprocess_line(gray: np.ndarray, window_width: int = GLYPH_SIZE) -> np.ndarray:
    """(H, W) uint8 of any polarity -> (28, W') uint8 white-on-black line, W' >= window_width.

    Cropped to the ink with a margin of 20% of the ink height on every side (so the ink is about
    20 of the 28 rows, as in EMNISTLines), scaled to height 28 keeping the aspect ratio, then
    padded with black on the right up to `window_width` (the model needs one full window).
    """
    a = _white_on_black(gray)
    top, bottom, left, right = _ink_box(a)
    a = a[top:bottom, left:right]
    margin = max(1, round(0.2 * a.shape[0]))
    a = np.pad(a, margin)
    h, w = a.shape
    nw = max(1, round(w * GLYPH_SIZE / h))
    line = _resize(a, GLYPH_SIZE, nw)
    if nw < window_width:
        line = np.pad(line, ((0, 0), (0, window_width - nw)))
    return line


def _load_model(
    checkpoint_path: str | os.PathLike[str], device: torch.device, expected_kind: Kind | None
) -> LoadedModel:
    try:
        return load_checkpoint(checkpoint_path, map_location=device, expected_kind=expected_kind, needed_by="predict")
    except CheckpointError as exc:
        raise PredictError(f"cannot predict: {exc}") from exc


def preprocess_for(loaded: LoadedModel, gray: np.ndarray) -> np.ndarray:
    """The model input image (uint8, white on black) for a checkpoint's kind."""
    if loaded.kind == "char":
        return preprocess_char(gray)
    return preprocess_line(gray, window_width=int(loaded.model_kwargs.get("window_width", GLYPH_SIZE)))


def predict_file(
    image_path: str | os.PathLike[str],
    checkpoint_path: str | os.PathLike[str],
    *,
    expected_kind: Kind | None = None,
    device: str | torch.device | None = None,
) -> str:
    """The text in an image: one character for a char checkpoint, a greedy CTC decode for a line one.

    `expected_kind` ("char" or "line") makes a checkpoint of the other kind an error instead of
    silently switching between single-glyph and line reading.
    """
    dev = default_device(device)
    gray = load_image(image_path)  # the cheap check first: a bad path fails before the model loads
    loaded = _load_model(checkpoint_path, dev, expected_kind)
    try:
        image = preprocess_for(loaded, gray)
    except PredictError as exc:
        raise PredictError(f"{image_path}: {exc}") from exc
    x = to_model_input(image[None], dev)  # (1, 1, 28, W)
    with torch.inference_mode():
        logits = loaded.model(x)
    if loaded.kind == "char":
        return loaded.mapping[int(logits.argmax(dim=1).item())]  # logits: (1, num_classes)
    return indices_to_text(greedy_decode(logits)[0], loaded.mapping)  # logits: (1, C, T)
