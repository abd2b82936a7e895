"""IDX reading/writing and EMNIST's transposed storage."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from text_recognizer.data.idx import (
    IdxFormatError,
    emnist_to_upright,
    idx_bytes,
    read_idx,
    upright_to_emnist,
    write_idx,
)


def _letter_l() -> np.ndarray:
    """An upright 'L': a vertical bar at column 6 (rows 4..21), a foot along row 21 (columns 6..17)."""
    glyph = np.zeros((28, 28), dtype=np.uint8)
    glyph[4:22, 6] = 255
    glyph[21, 6:18] = 200
    return glyph


def test_emnist_storage_is_transposed_and_read_back_upright(tmp_path: Path) -> None:
    upright = _letter_l()
    stored = upright.T.copy()  # what NIST's file holds: the glyph's columns as rows
    write_idx(tmp_path / "images.gz", stored[None])

    raw = read_idx(tmp_path / "images.gz")
    assert raw.shape == (1, 28, 28) and raw.dtype == np.uint8
    # As stored, the vertical stroke lies along row 6 ...
    assert raw[0, 6, 10] == 255 and raw[0, 10, 6] == 0
    out = emnist_to_upright(raw)[0]
    # ... and upright it runs down column 6, with the foot to the right at the bottom.
    assert out[10, 6] == 255 and out[6, 10] == 0
    assert out[21, 15] == 200 and out[15, 21] == 0
    assert out[4, 6] == 255 and out[3, 6] == 0
    np.testing.assert_array_equal(out, upright)
    assert emnist_to_upright(raw).flags.c_contiguous
    np.testing.assert_array_equal(upright_to_emnist(upright[None])[0], stored)


def test_round_trip_images_and_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 62, 7).astype(np.uint8)
    write_idx(tmp_path / "i.gz", images)
    write_idx(tmp_path / "l.gz", labels)
    got_images, got_labels = read_idx(tmp_path / "i.gz"), read_idx(tmp_path / "l.gz")
    assert got_images.dtype == np.uint8 and got_labels.dtype == np.uint8
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.flags.writeable  # a copy, not a view of a read-only buffer


def test_header_layout_and_gzip_and_plain_both_read(tmp_path: Path) -> None:
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    plain = idx_bytes(labels)
    assert plain[:8] == struct.pack(">II", 2049, 5)
    assert idx_bytes(np.zeros((2, 3, 4), np.uint8))[:16] == struct.pack(">IIII", 2051, 2, 3, 4)
    (tmp_path / "plain").write_bytes(plain)
    (tmp_path / "zipped.gz").write_bytes(gzip.compress(plain))
    np.testing.assert_array_equal(read_idx(tmp_path / "plain"), labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "zipped.gz"), labels)


def test_write_idx_is_deterministic(tmp_path: Path) -> None:
    images = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 28, 28).astype(np.uint8)
    write_idx(tmp_path / "a.gz", images)
    write_idx(tmp_path / "b.gz", images)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_wrong_magic_names_file_and_expected_magics(tmp_path: Path) -> None:
    path = tmp_path / "float-images.gz"
    path.write_bytes(gzip.compress(struct.pack(">IIII", 0x00000D03, 1, 2, 2) + bytes(16)))
    with pytest.raises(IdxFormatError) as info:
        read_idx(path)
    message = str(info.value)
    assert "float-images.gz" in message
    assert "3331" in message and "0x00000d03" in message  # what was found
    assert "2051" in message and "2049" in message  # what was expected
    assert isinstance(info.value, ValueError)


def test_truncated_payload_is_reported(tmp_path: Path) -> None:
    data = idx_bytes(np.ones((3, 28, 28), dtype=np.uint8))
    path = tmp_path / "short"
    path.write_bytes(data[:-100])
    with pytest.raises(IdxFormatError, match=r"short: payload truncated: dims 3x28x28 need 2352 bytes, found 2252"):
        read_idx(path)
    (tmp_path / "long").write_bytes(data + b"\0")
    with pytest.raises(IdxFormatError, match="trailing"):
        read_idx(tmp_path / "long")
    (tmp_path / "header").write_bytes(data[:10])
    with pytest.raises(IdxFormatError, match="header cut short"):
        read_idx(tmp_path / "header")


def test_truncated_gzip_stream_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.ones(1000, dtype=np.uint8)))[:-12])
    with pytest.raises(IdxFormatError, match=r"cut\.gz: corrupt or truncated gzip"):
        read_idx(path)


def test_only_uint8_arrays_are_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "x.gz", np.zeros((2, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match="1-D"):
        write_idx(tmp_path / "x.gz", np.zeros((2, 28), dtype=np.uint8))
