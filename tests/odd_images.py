"""Odd inputs for the image readers (`text-recognizer predict`, the web page's upload), for tests/test_fuzz_inputs.py.

Every Pillow mode saved in each format that takes it, damaged copies of those files (cut short,
bytes flipped), headers that claim billions of pixels, and paths that are not image files:
empty files, text with an image's name, symbolic links (to an image, dangling, a loop),
directories, FIFOs, a path through a file, a file nobody may read.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, features

FORMATS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}
MODES = (
    "1", "L", "P", "PA", "LA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV",
    "I", "I;16", "I;16L", "I;16B", "I;16N", "F",
)  # fmt: skip
HUGE_SIDE = 60_000  # a header claiming 60,000 x 60,000 = 3.6 billion pixels (GIF and JPEG stop at 65,535)

# Paths that are not (or not only) an image file: see `write_special`.
SPECIALS = (
    "empty", "text", "html", "symlink", "dangling", "loop", "directory", "symlink_to_directory", "fifo",
    "through_a_file", "missing", "newline_name",
)  # fmt: skip


def picture(mode: str, width: int = 96, height: int = 32, seed: int = 0) -> Image.Image:
    """A line-like picture in `mode`: four dark bars (glyphs of a line) on light paper, with a little noise.

    16-bit modes use the full 16-bit range and F holds values in [0, 1], as real files of those modes do.
    """
    rng = np.random.default_rng(seed)
    gray = np.full((height, width), 230.0) + rng.normal(0, 6, (height, width))
    top, bottom = height // 5, height - height // 5
    step = max(2, width // 5)
    for k in range(4):
        left = step // 2 + k * step
        gray[top:bottom, left : left + max(1, step // 3)] = 25.0
    gray = np.clip(gray, 0, 255)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):  # from bytes: Pillow's convert() to these clips at 255
        order = {"I;16B": ">u2", "I;16N": "=u2"}.get(mode, "<u2")
        return Image.frombytes(mode, (width, height), (gray * 257).astype(order).tobytes())
    if mode == "I":
        return Image.fromarray((gray * 257).astype(np.int32))
    if mode == "F":
        return Image.fromarray((gray / 255).astype(np.float32))
    rgb = Image.fromarray(np.stack([gray, gray * 0.9, gray * 0.8], axis=-1).astype(np.uint8))
    if mode in ("RGBA", "LA", "PA", "RGBa"):
        alpha = Image.fromarray(rng.integers(128, 256, (height, width), dtype=np.uint8))
        return Image.merge("RGBA", [*rgb.split(), alpha]).convert(mode)
    return rgb.convert(mode)


def encode(mode: str, fmt: str, width: int = 96, height: int = 32, seed: int = 0) -> bytes:
    """The picture in `mode` saved as `fmt` (raises whatever Pillow raises for a mode the format refuses)."""
    buf = io.BytesIO()
    picture(mode, width, height, seed).save(buf, format=fmt)
    return buf.getvalue()


@functools.cache
def encodings() -> tuple[tuple[str, str], ...]:
    """(mode, format) pairs that Pillow saves here: every mode in each format that accepts it."""
    pairs = []
    for fmt in FORMATS:
        if fmt == "WEBP" and not features.check("webp"):
            continue
        for mode in MODES:
            try:
                encode(mode, fmt, 8, 6)
            except (OSError, ValueError, KeyError, TypeError):
                continue
            pairs.append((mode, fmt))
    return tuple(pairs)


# Pairs that Pillow writes without the picture (Pillow 12): GIF and WebP take 16-bit and float
# pictures through an 8-bit conversion that clips everything above 255 to white, a blank file; a
# YCbCr TIFF comes out shorter than its own header says, so it cannot be read back.
BLANK_WRITES = frozenset(
    (mode, fmt) for mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F") for fmt in ("GIF", "WEBP")
)
BROKEN_WRITES = frozenset({("YCbCr", "TIFF")})


def truncated(data: bytes, keep: int) -> bytes:
    """The first `keep` bytes (at least one: an empty file is its own case)."""
    return data[: max(1, min(keep, len(data) - 1))]


def flipped(data: bytes, flips: list[tuple[float, int]]) -> bytes:
    """`data` with the byte at each relative position (0..1) XORed with a non-zero mask."""
    out = bytearray(data)
    for where, mask in flips:
        out[min(len(out) - 1, int(where * len(out)))] ^= mask or 0xFF
    return bytes(out)


# --- headers that claim billions of pixels -------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(width: int = HUGE_SIDE, height: int = HUGE_SIDE) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def huge_bmp(width: int = HUGE_SIDE, height: int = HUGE_SIDE) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 14 + 40) + info + b"\0" * 64


def huge_gif(width: int = HUGE_SIDE, height: int = HUGE_SIDE) -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"  # 2-colour global palette
    frame = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x4c\x01\x00"
    return b"GIF89a" + screen + frame + b";"


def huge_tiff(width: int = HUGE_SIDE, height: int = HUGE_SIDE) -> bytes:
    tags = [  # (tag, type, count, value): 3 = SHORT, 4 = LONG
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
        (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 64),
    ]  # fmt: skip
    ifd = struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        ifd += struct.pack("<HHI", tag, kind, count) + (
            struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        )
    return b"II*\0" + struct.pack("<I", 8) + ifd + b"\0\0\0\0" + b"\0" * 64


def huge_jpeg(width: int = HUGE_SIDE, height: int = HUGE_SIDE) -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + sof + sos + b"\0" * 64 + b"\xff\xd9"


def huge_webp(width: int = 16_384, height: int = 16_384) -> bytes:
    """A lossless WebP of one pixel whose VP8L header says width x height (WebP stops at 16,384 a side)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="WEBP", lossless=True)
    data = buf.getvalue()
    at = data.index(b"VP8L") + 8  # the chunk's signature byte, then 14 bits of width - 1 and of height - 1
    size = ((width - 1) | (height - 1) << 14).to_bytes(4, "little")
    return data[:at] + b"\x2f" + size + data[at + 5 :]


HUGE = {"PNG": huge_png, "BMP": huge_bmp, "GIF": huge_gif, "TIFF": huge_tiff, "JPEG": huge_jpeg, "WEBP": huge_webp}


# --- paths that are not image files --------------------------------------------------------------


def write_special(folder: Path, kind: str, good: bytes) -> Path:
    """Create the odd path `kind` (one of SPECIALS) in `folder` and return it; `good` is a readable image file."""
    if kind == "empty":
        (path := folder / "empty.png").write_bytes(b"")
    elif kind == "text":
        (path := folder / "notes.jpg").write_text("not an image, only text with an image's name\n")
    elif kind == "html":
        (path := folder / "page.png").write_text("<!doctype html><title>404</title><p>Not found</p>\n")
    elif kind == "symlink":
        (folder / "real.png").write_bytes(good)
        (path := folder / "link.png").symlink_to("real.png")
    elif kind == "dangling":
        (path := folder / "gone.png").symlink_to("missing.png")
    elif kind == "loop":
        (path := folder / "loop.png").symlink_to("loop.png")
    elif kind == "directory":
        (path := folder / "folder.png").mkdir()
    elif kind == "symlink_to_directory":
        (folder / "sub").mkdir()
        (path := folder / "sub.png").symlink_to("sub")
    elif kind == "fifo":
        os.mkfifo(path := folder / "pipe.png")
    elif kind == "through_a_file":
        (folder / "file.png").write_bytes(good)
        path = folder / "file.png" / "inner.png"
    elif kind == "missing":
        path = folder / "nope.png"
    elif kind == "newline_name":
        (path := folder / "two\nlines.png").write_bytes(good)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return path


@contextlib.contextmanager
def fifo_guard(path: Path) -> Iterator[None]:
    """Make a FIFO safe to hand to code under test: if that code opens it to read, it gets end-of-file, never a hang.

    A daemon thread opens the FIFO for writing, which blocks until someone opens it for reading,
    then closes it at once. On exit, when nobody did, the FIFO is opened here without blocking to
    release the thread.
    """

    def writer() -> None:
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY))

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        yield
    finally:
        if thread.is_alive():
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            thread.join(timeout=5)
            os.close(fd)


def snapshot(*folders: Path) -> dict[str, tuple[int, int, int]]:
    """{path: (st_mode, size, mtime_ns)} of everything under the folders, links not followed."""
    seen = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for name in dirs + files:
                info = os.lstat(os.path.join(root, name))
                seen[os.path.join(root, name)] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return seen
