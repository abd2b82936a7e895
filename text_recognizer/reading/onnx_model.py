"""Read with a model exported by text_recognizer.export: onnxruntime and numpy, no torch.

A machine that only reads (a server, a small box) then needs neither torch nor the checkpoint code. The numbers
are those of the torch path: the same input scaling as evaluation.to_model_input, the same crop of a batch of
lines to what they need (line_geometry.crop_lines), and greedy CTC decoding (lit_models.ctc.greedy_decode) or the
per-window argmax (lit_models.windows.window_decode), here in numpy.

Nothing in this module may import torch, directly or through another module (tests/test_onnx_export.py checks it
in a fresh interpreter).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from text_recognizer.errors import InputError
from text_recognizer.line_geometry import INK_MARGIN, RIGHT_CONTEXT, output_length
from text_recognizer.metadata import BLANK_INDEX, GLYPH_SIZE, PAD_INDEX, SPACE_INDEX

ONNX_FORMAT = "text-recognizer-onnx/1"  # export.ONNX_FORMAT (not imported from there: it imports torch)
INSTALL_HINT = "pip install 'text-recognizer[onnx]'"
_EXTRA_KEYS = ("reading", "lines", "glyphs", "val_metrics")  # export.EXTRA_KEYS
_JSON_KEYS = ("model_kwargs", "mapping", "window_width", "window_stride", "opset", *_EXTRA_KEYS)


class OnnxModelError(InputError):
    """An ONNX file that this reader cannot use: missing, not exported by text-recognizer, or no onnxruntime."""


def to_model_input(images: np.ndarray) -> np.ndarray:
    """(B, H, W) uint8 -> (B, 1, H, W) float32 in [0, 1]: evaluation.to_model_input's scaling, bit for bit."""
    arr = np.asarray(images)
    if arr.ndim != 3 or arr.dtype != np.uint8:
        raise InputError(f"expected a (N, H, W) uint8 batch of images, got {arr.dtype} {arr.shape}")
    return (arr.astype(np.float32) / np.float32(255))[:, None, :, :]


def ink_extents(images: np.ndarray) -> np.ndarray:
    """Columns up to the last one holding ink (N,) int64, 0 for a blank line (line_geometry.ink_extents)."""
    columns = (np.asarray(images) > 0).any(axis=1)  # (N, W)
    last = columns.shape[1] - columns[:, ::-1].argmax(axis=1)  # (N,)
    return np.where(columns.any(axis=1), last, 0).astype(np.int64)


def _on_lattice(widths: np.ndarray, window_width: int, window_stride: int) -> np.ndarray:
    steps = np.maximum(widths.astype(np.int64) - window_width, 0)
    return window_width + -(-steps // window_stride) * window_stride


def crop_lines(
    images: np.ndarray, window_width: int, window_stride: int, widths: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(images cut to the columns the batch needs, each line's CTC steps (N,) int64) of a (N, 28, W) batch, as
    evaluation.line_logits crops for the torch model (line_geometry.crop_lines), so that the logits within each
    line's steps are those of its image alone. `widths` (N,): the lines' own widths in a batch padded on the right
    to its widest; no line is then read past its own width."""
    image_width = images.shape[-1]
    if image_width < window_width:
        raise InputError(f"line image width {image_width} is narrower than window_width {window_width}")
    own = np.minimum(_on_lattice(ink_extents(images) + INK_MARGIN, window_width, window_stride), image_width)
    if widths is not None:
        own = np.minimum(own, np.asarray(widths, dtype=np.int64))
        if len(own) and own.min() < window_width:
            raise InputError(f"line widths must be >= window_width {window_width}, got {int(own.min())}")
    lengths = (own - window_width) // window_stride + 1
    keep = int(np.minimum(_on_lattice(own.max(initial=0) + RIGHT_CONTEXT, window_width, window_stride), image_width))
    return images[..., :keep], lengths.astype(np.int64)


def greedy_decode(logits: np.ndarray, lengths: np.ndarray | None = None) -> list[list[int]]:
    """Best-path CTC decoding of (B, C, T) logits: argmax per step, collapse repeats, drop blanks and the steps
    past each row's length. lit_models.ctc.greedy_decode in numpy."""
    best = np.asarray(logits).argmax(axis=1)  # (B, T)
    previous = np.concatenate([np.full((best.shape[0], 1), -1), best[:, :-1]], axis=1)
    keep = (best != previous) & (best != BLANK_INDEX)
    if lengths is not None:
        keep &= np.arange(best.shape[1])[None, :] < np.asarray(lengths)[:, None]
    return [row[mask].tolist() for row, mask in zip(best, keep, strict=True)]


def window_decode(logits: np.ndarray, lengths: np.ndarray | None = None) -> list[list[int]]:
    """The per-window (simple) model's reading of (B, C, L) logits: lit_models.windows.window_decode in numpy
    (empty windows are spaces inside the text, nothing after it)."""
    tokens = np.asarray(logits).argmax(axis=1)  # (B, L)
    tokens = np.where(tokens <= PAD_INDEX, SPACE_INDEX, tokens)
    steps = np.arange(tokens.shape[1])
    is_char = tokens != SPACE_INDEX
    if lengths is not None:
        is_char &= steps[None, :] < np.asarray(lengths)[:, None]
    ends = np.where(is_char, steps[None, :] + 1, 0).max(axis=1, initial=0)
    return [row[:end].tolist() for row, end in zip(tokens, ends, strict=True)]


def indices_to_text(indices: Sequence[int], mapping: Sequence[str]) -> str:
    """The characters of `indices`, blank and padding skipped (lit_models.ctc.indices_to_text)."""
    return "".join(mapping[i] for i in indices if i != BLANK_INDEX and i != PAD_INDEX)


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise OnnxModelError(
            f"reading an ONNX model needs onnxruntime, which is not installed: {INSTALL_HINT}"
        ) from None
    return onnxruntime


class OnnxModel:
    """An exported model in an onnxruntime session, with what its metadata says about reading its outputs.

    Attributes as LoadedModel's where they mean the same: `kind` ("char" / "line"), `arch`, `mapping`,
    `model_kwargs`, `extra` (the checkpoint's `reading`, `lines`, `glyphs`, `val_metrics` that were recorded),
    `path`; `metadata` holds every entry, parsed.
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise OnnxModelError(f"ONNX model {self.path} not found")
        ort = _import_onnxruntime()
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf / RuntimeError
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OnnxModelError(f"{self.path} is not a readable ONNX model: {first}") from None
        raw = dict(self.session.get_modelmeta().custom_metadata_map)
        if raw.get("text_recognizer_format") != ONNX_FORMAT:
            found = raw.get("text_recognizer_format")
            raise OnnxModelError(
                f"{self.path} is not an ONNX model exported by text-recognizer (format {ONNX_FORMAT!r} expected, "
                f"found {found!r}): export one with text_recognizer.export.export_onnx"
            )
        self.metadata: dict[str, Any] = {k: json.loads(v) if k in _JSON_KEYS else v for k, v in raw.items()}
        self.kind: str = self.metadata["kind"]
        self.arch: str = self.metadata["arch"]
        self.mapping: list[str] = list(self.metadata["mapping"])
        self.model_kwargs: dict[str, Any] = dict(self.metadata["model_kwargs"])
        self.extra: dict[str, Any] = {k: self.metadata[k] for k in _EXTRA_KEYS if k in self.metadata}
        self.source_sha256: str = self.metadata.get("source_sha256", "")
        self._inputs = {i.name for i in self.session.get_inputs()}
        if self.kind == "line":
            self.window_width = int(self.metadata["window_width"])
            self.window_stride = int(self.metadata["window_stride"])

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r}, kind={self.kind!r}, arch={self.arch!r})"

    def output_length(self, image_width: int) -> int:
        """Output steps of a line image of `image_width` pixels, as the torch model's output_length counts."""
        if self.kind != "line":
            raise OnnxModelError(f"{self.path} is a char model: it has one output per glyph, no steps")
        if self.arch == "simple":
            if image_width < 1:
                raise InputError(f"line image width must be >= 1, got {image_width}")
            return -(-image_width // GLYPH_SIZE)
        return output_length(image_width, self.window_width, self.window_stride)

    def logits(self, images: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """The network's output for a uint8 batch (N, 28, W) (char models: W = 28): (N, C) for a char model,
        (N, C, T) for a line model. `lengths` (N,): each line's steps, for a CTC model whose head reads lines
        up to their length (default: every step); line_logits computes them from the ink."""
        return self.run(to_model_input(images), lengths)

    def run(self, x: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """`logits` of a batch already scaled as to_model_input scales it: (N, 1, 28, W) float32 in [0, 1] (the
        entry point of predict's torch-module adapter, which scales with the torch code)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 1:
            raise InputError(f"expected a (N, 1, {GLYPH_SIZE}, W) float batch, got {x.shape}")
        if x.shape[2] != GLYPH_SIZE or (self.kind == "char" and x.shape[3] != GLYPH_SIZE):
            expected = f"(N, {GLYPH_SIZE}, {GLYPH_SIZE})" if self.kind == "char" else f"(N, {GLYPH_SIZE}, W)"
            raise InputError(f"{self.path} takes {expected} images, got {(x.shape[0], *x.shape[2:])}")
        feeds: dict[str, np.ndarray] = {"images": x}
        if "lengths" in self._inputs:
            steps = self.output_length(x.shape[3])
            if lengths is None:
                lengths = np.full(len(x), steps, dtype=np.int64)
            lengths = np.asarray(lengths, dtype=np.int64)
            if lengths.shape != (len(x),) or (len(x) and (lengths.min() < 1 or lengths.max() > steps)):
                raise InputError(f"lengths must be {len(x)} values in 1..{steps}, got {lengths.tolist()}")
            feeds["lengths"] = lengths
        elif self.kind == "line" and x.shape[3] < GLYPH_SIZE:  # the simple model pads to whole windows itself
            self.output_length(x.shape[3])  # a width < 1 fails here in one line
            x = np.pad(x, ((0, 0), (0, 0), (0, 0), (0, GLYPH_SIZE - x.shape[3])))
        return self.session.run(["logits"], feeds)[0]

    def line_logits(self, images: np.ndarray, widths: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(logits (N, C, T), lengths (N,)) of a batch of lines cut to what it needs, as evaluation.line_logits
        gives them: a simple model reads the whole image (every window counts, or those within `widths`). `widths`
        (N,): the lines' own widths in a batch padded on the right to its widest (see crop_lines)."""
        if self.kind != "line":
            raise OnnxModelError(f"{self.path} is a char model: use logits() on (N, 28, 28) glyphs")
        if widths is not None and len(widths) != len(images):
            raise InputError(f"{len(widths)} widths for {len(images)} lines")
        if self.arch == "simple":
            logits = self.logits(images)
            if widths is None:
                return logits, np.full(len(logits), logits.shape[2], dtype=np.int64)
            return logits, np.array([self.output_length(int(w)) for w in widths], dtype=np.int64)
        cropped, lengths = crop_lines(np.asarray(images), self.window_width, self.window_stride, widths)
        return self.logits(cropped, lengths), lengths

    def decode(self, logits: np.ndarray, lengths: np.ndarray | None = None) -> list[str]:
        """Texts of line logits: greedy CTC, or the argmax per window for a simple model."""
        rows = (window_decode if self.arch == "simple" else greedy_decode)(logits, lengths)
        return [indices_to_text(row, self.mapping) for row in rows]

    def read_lines(self, images: np.ndarray, batch_size: int = 64) -> list[str]:
        """The greedy text of every line in a uint8 batch (N, 28, W), read `batch_size` lines at a time."""
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        texts: list[str] = []
        for start in range(0, len(images), batch_size):
            texts.extend(self.decode(*self.line_logits(images[start : start + batch_size])))
        return texts

    def classify(self, glyphs: np.ndarray) -> list[str]:
        """The top class of each glyph of a char model, (N, 28, 28) uint8 white ink on black."""
        if self.kind != "char":
            raise OnnxModelError(f"{self.path} is a line model: use read_lines() on (N, 28, W) lines")
        return [self.mapping[i] for i in self.logits(glyphs).argmax(axis=1).tolist()]
