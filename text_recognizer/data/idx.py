"""The IDX file format of (E)MNIST, and EMNIST's transposed glyph storage.

IDX: a 4-byte big-endian magic (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the payload. EMNIST ships only unsigned-byte files:
images (magic 2051, dims N, rows, cols) and labels (magic 2049, dim N), each gzip'd.

EMNIST stores every glyph transposed (its rows are the glyph's columns), an artefact of how
the data set was converted from NIST's MATLAB files. Everything after this module works on
upright glyphs (row = y, column = x), so the conversion lives here, once.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from text_recognizer.errors import InputError

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
_NUM_DIMS = {IMAGES_MAGIC: 3, LABELS_MAGIC: 1}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(InputError):
    """A file is not an unsigned-byte IDX file of EMNIST's kind, or its payload is cut short."""


def _read_bytes(path: Path) -> bytes:
    """Whole file content, gunzipped if it starts with gzip's magic (1f 8b)."""
    data = path.read_bytes()
    if data[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as err:  # BadGzipFile is an OSError; truncation raises EOFError
            raise IdxFormatError(f"{path}: corrupt or truncated gzip stream ({err})") from err
    return data


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX images (uint8, (N, rows, cols)) or labels (uint8, (N,)) file, gzip'd or plain."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IdxFormatError(f"{path}: {len(data)} bytes is too short for an IDX header")
    (magic,) = struct.unpack(">I", data[:4])
    if magic not in _NUM_DIMS:
        raise IdxFormatError(
            f"{path}: unknown IDX magic number {magic} (0x{magic:08x}); expected {IMAGES_MAGIC} (0x{IMAGES_MAGIC:08x}, "
            f"uint8 images) or {LABELS_MAGIC} (0x{LABELS_MAGIC:08x}, uint8 labels)"
        )
    ndim = _NUM_DIMS[magic]
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IdxFormatError(f"{path}: header cut short ({len(data)} bytes, need {header_size} for {ndim} dimensions)")
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    expected = int(np.prod(dims, dtype=np.int64))
    payload = len(data) - header_size
    if payload != expected:
        what = "truncated" if payload < expected else "has trailing bytes"
        raise IdxFormatError(
            f"{path}: payload {what}: dims {'x'.join(map(str, dims))} need {expected} bytes, found {payload}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims).copy()


def idx_bytes(array: np.ndarray) -> bytes:
    """The uncompressed IDX encoding of a uint8 labels (N,) or images (N, rows, cols) array."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"IDX arrays here must be uint8, got {array.dtype}")
    magic = {1: LABELS_MAGIC, 3: IMAGES_MAGIC}.get(array.ndim)
    if magic is None:
        raise ValueError(f"IDX arrays must be 1-D (labels) or 3-D (images), got shape {array.shape}")
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def gzip_bytes(data: bytes) -> bytes:
    """gzip with mtime 0 and no file name, so equal input gives equal bytes."""
    return gzip.compress(data, compresslevel=6, mtime=0)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a gzip'd IDX file (bytes depend only on the array)."""
    Path(path).write_bytes(gzip_bytes(idx_bytes(array)))


def emnist_to_upright(images: np.ndarray) -> np.ndarray:
    """Undo EMNIST's transposed storage: (N, 28, 28) as stored → upright (row = y, column = x)."""
    return np.ascontiguousarray(np.asarray(images).transpose(0, 2, 1))


def upright_to_emnist(images: np.ndarray) -> np.ndarray:
    """Upright glyphs → EMNIST's transposed storage (what the official files hold)."""
    return np.ascontiguousarray(np.asarray(images).transpose(0, 2, 1))
