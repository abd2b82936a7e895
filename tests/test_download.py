"""Tests for text_recognizer.data.download, all against a loopback HTTP server (no internet)."""

from __future__ import annotations

import gzip
import hashlib
import io
import socket
import struct
import zipfile

import numpy as np
import pytest

from text_recognizer.data import download
from text_recognizer.data.download import ArchiveError, ChecksumError, DownloadError, extract_members, fetch
from text_recognizer.metadata import EMNIST_MEMBERS, GLYPH_SIZE

try:
    from tests.http_server import LoopbackServer
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from http_server import LoopbackServer

FAST = {"backoff_s": 0.001, "timeout_s": 5.0, "progress": False}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def idx_images(images: np.ndarray) -> bytes:
    """An IDX3 file: magic 2051, big-endian dims (N, rows, cols), then uint8 pixels."""
    return struct.pack(">IIII", 2051, *images.shape) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    """An IDX1 file: magic 2049, big-endian N, then uint8 labels."""
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def make_emnist_zip(
    n: int = 50, seed: int = 0, extra: dict[str, bytes] | None = None
) -> tuple[bytes, dict[str, bytes]]:
    """A small zip in the layout of NIST's gzip.zip; returns (zip bytes, {member: gzip'd bytes})."""
    rng = np.random.default_rng(seed)
    members: dict[str, bytes] = {}
    for member in EMNIST_MEMBERS:
        if "images" in member:
            raw = idx_images(rng.integers(0, 256, size=(n, GLYPH_SIZE, GLYPH_SIZE), dtype=np.uint8))
        else:
            raw = idx_labels(rng.integers(0, 62, size=n, dtype=np.uint8))
        members[member] = gzip.compress(raw, mtime=0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        # a member of another EMNIST split sits beside ours, as in the real archive
        archive.writestr("gzip/emnist-balanced-test-labels-idx1-ubyte.gz", gzip.compress(b"other", mtime=0))
        for member, data in members.items():
            archive.writestr(member, data)
        for member, data in (extra or {}).items():
            archive.writestr(member, data)
    return buffer.getvalue(), members


@pytest.fixture(scope="module")
def archive() -> tuple[bytes, dict[str, bytes]]:
    return make_emnist_zip()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback requests must not be routed through a proxy from the environment."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server():
    with LoopbackServer() as s:
        yield s


def dead_url(path: str = "/gzip.zip") -> str:
    """A loopback URL on a port where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def test_archive_helper_has_official_layout(archive):
    data, members = archive
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert set(EMNIST_MEMBERS) <= set(names)
    images = gzip.decompress(members["gzip/emnist-byclass-train-images-idx3-ubyte.gz"])
    labels = gzip.decompress(members["gzip/emnist-byclass-train-labels-idx1-ubyte.gz"])
    assert struct.unpack(">IIII", images[:16]) == (2051, 50, 28, 28) and len(images) == 16 + 50 * 28 * 28
    assert struct.unpack(">II", labels[:8]) == (2049, 50) and len(labels) == 8 + 50


# 1 --------------------------------------------------------------------------------------------
def test_fresh_download_verified(server, archive, tmp_path):
    data, _ = archive
    url = server.add("/gzip.zip", data)
    dest = tmp_path / "raw" / "gzip.zip"
    result = fetch([url], dest, sha256=sha256(data), md5=hashlib.md5(data).hexdigest(), **FAST)
    assert result == dest
    assert dest.read_bytes() == data
    assert not dest.with_name("gzip.zip.part").exists()
    (request,) = server.requests
    assert request.range is None
    assert request.user_agent and request.user_agent.startswith("text-recognizer")
    assert download.file_digest(dest) == sha256(data)
    assert download.file_digest(dest, "md5") == hashlib.md5(data).hexdigest()


# 2 --------------------------------------------------------------------------------------------
def test_resume_after_connection_cut(server, archive, tmp_path):
    data, _ = archive
    cut = len(data) // 3
    url = server.add("/gzip.zip", data, cut_after=cut)
    dest = tmp_path / "gzip.zip"
    fetch([url], dest, sha256=sha256(data), retries=1, **FAST)
    assert dest.read_bytes() == data
    first, second = server.requests_for("/gzip.zip")
    assert first.range is None
    assert second.range == f"bytes={cut}-"


def test_resume_from_existing_part_starts_progress_at_partial_size(server, archive, tmp_path, monkeypatch):
    data, _ = archive
    url = server.add("/gzip.zip", data)
    dest = tmp_path / "gzip.zip"
    partial = len(data) // 2
    dest.with_name("gzip.zip.part").write_bytes(data[:partial])
    bars: list[dict] = []
    real_tqdm = download.tqdm

    def recording_tqdm(*args, **kwargs):
        bars.append(kwargs)
        return real_tqdm(*args, **kwargs)

    monkeypatch.setattr(download, "tqdm", recording_tqdm)
    fetch([url], dest, sha256=sha256(data), backoff_s=0.001, progress=True)
    assert dest.read_bytes() == data
    assert [r.range for r in server.requests] == [f"bytes={partial}-"]
    (bar,) = bars
    assert bar["initial"] == partial and bar["total"] == len(data)
    assert bar["unit"] == "B" and bar["unit_scale"] is True


def test_server_ignoring_range_restarts_from_zero(server, archive, tmp_path):
    data, _ = archive
    url = server.add("/gzip.zip", data, honor_range=False)
    dest = tmp_path / "gzip.zip"
    dest.with_name("gzip.zip.part").write_bytes(data[:1000])
    fetch([url], dest, sha256=sha256(data), **FAST)
    assert dest.read_bytes() == data  # not the first 1000 bytes twice
    assert [r.range for r in server.requests] == ["bytes=1000-"]  # the 200 body was used, not re-fetched


def test_part_longer_than_file_416_starts_over(server, archive, tmp_path):
    data, _ = archive
    url = server.add("/gzip.zip", data)
    dest = tmp_path / "gzip.zip"
    dest.with_name("gzip.zip.part").write_bytes(data + b"junk")
    fetch([url], dest, sha256=sha256(data), retries=1, **FAST)
    assert dest.read_bytes() == data
    assert [r.range for r in server.requests] == [f"bytes={len(data) + 4}-", None]


def test_stale_part_with_wrong_bytes_is_redownloaded_from_zero(server, archive, tmp_path):
    data, _ = archive
    url = server.add("/gzip.zip", data)
    dest = tmp_path / "gzip.zip"
    dest.with_name("gzip.zip.part").write_bytes(b"\0" * 100)  # bytes from some other file
    fetch([url], dest, sha256=sha256(data), **FAST)
    assert dest.read_bytes() == data
    assert [r.range for r in server.requests] == ["bytes=100-", None]


# 3 --------------------------------------------------------------------------------------------
def test_retry_after_503(server, archive, tmp_path):
    data, _ = archive
    url = server.add("/gzip.zip", data, fail_first=2)
    dest = tmp_path / "gzip.zip"
    fetch([url], dest, sha256=sha256(data), retries=2, **FAST)
    assert dest.read_bytes() == data
    assert len(server.requests_for("/gzip.zip")) == 3


def test_503_beyond_retries_gives_up(server, archive, tmp_path):
    data, _ = archive
    url = server.add("/gzip.zip", data, fail_first=5)
    with pytest.raises(DownloadError, match="HTTP 503") as info:
        fetch([url], tmp_path / "gzip.zip", sha256=sha256(data), retries=2, **FAST)
    assert "3 attempt" in str(info.value)
    assert len(server.requests) == 3
    assert not (tmp_path / "gzip.zip").exists()


def test_timeout_is_retried(server, archive, tmp_path):
    data, _ = archive
    url = server.add("/gzip.zip", data, stall_first=1, stall_s=1.0)
    dest = tmp_path / "gzip.zip"
    fetch([url], dest, sha256=sha256(data), retries=1, backoff_s=0.001, timeout_s=0.2, progress=False)
    assert dest.read_bytes() == data
    assert len(server.requests) == 2


# 4 --------------------------------------------------------------------------------------------
def test_dead_and_404_mirrors_fall_through(server, archive, tmp_path):
    data, _ = archive
    missing = server.add("/missing.zip", status=404)
    good = server.add("/gzip.zip", data)
    dest = tmp_path / "gzip.zip"
    fetch([dead_url(), missing, good], dest, sha256=sha256(data), retries=3, **FAST)
    assert dest.read_bytes() == data
    assert len(server.requests_for("/missing.zip")) == 1  # a 404 is not retried
    assert len(server.requests_for("/gzip.zip")) == 1


# 5 --------------------------------------------------------------------------------------------
def test_checksum_mismatch(server, archive, tmp_path):
    data, _ = archive
    url = server.add("/gzip.zip", data)
    dest = tmp_path / "gzip.zip"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        fetch([url], dest, sha256=wrong, **FAST)
    message = str(info.value)
    assert "gzip.zip" in message and wrong in message and sha256(data) in message
    assert info.value.expected == wrong and info.value.actual == sha256(data)
    assert list(tmp_path.iterdir()) == []


def test_checksum_mismatch_then_good_mirror(server, archive, tmp_path):
    data, _ = archive
    bad = server.add("/bad.zip", data[:-1] + b"x")
    good = server.add("/gzip.zip", data)
    dest = tmp_path / "gzip.zip"
    fetch([bad, good], dest, sha256=sha256(data), **FAST)
    assert dest.read_bytes() == data


def test_malformed_expected_hash_is_rejected_before_downloading(server, tmp_path):
    url = server.add("/gzip.zip", b"abc")
    with pytest.raises(ValueError, match="sha256"):
        fetch([url], tmp_path / "gzip.zip", sha256="abc123", **FAST)
    assert server.requests == []


# 6 --------------------------------------------------------------------------------------------
def test_no_server_names_every_url_and_hint(tmp_path):
    urls = [dead_url("/a/gzip.zip"), dead_url("/b/gzip.zip")]
    hint = "Download gzip.zip by hand into data/raw/ or run with data.source=synthetic."
    with pytest.raises(DownloadError) as info:
        fetch(urls, tmp_path / "gzip.zip", sha256="1" * 64, retries=1, hint=hint, **FAST)
    assert not isinstance(info.value, ChecksumError)
    message = str(info.value)
    for url in urls:
        (line,) = [line for line in message.splitlines() if url in line]
        assert "connection refused" in line.lower() or "refused" in line.lower()
    assert hint in message
    assert [url for url, _ in info.value.failures] == urls
    assert not (tmp_path / "gzip.zip").exists()


# 7 --------------------------------------------------------------------------------------------
def test_prestaged_file_needs_no_request(server, archive, tmp_path):
    data, _ = archive
    url = server.add("/gzip.zip", data)
    dest = tmp_path / "gzip.zip"
    dest.write_bytes(data)
    assert fetch([url], dest, md5=hashlib.md5(data).hexdigest(), **FAST) == dest
    assert server.requests == []


def test_prestaged_file_that_does_not_verify_is_replaced(server, archive, tmp_path, caplog):
    data, _ = archive
    url = server.add("/gzip.zip", data)
    dest = tmp_path / "gzip.zip"
    dest.write_bytes(b"truncated")
    with caplog.at_level("WARNING", logger=download.__name__):
        fetch([url], dest, sha256=sha256(data), **FAST)
    assert dest.read_bytes() == data
    assert len(server.requests) == 1
    assert any("does not verify" in r.getMessage() for r in caplog.records)


# 8 --------------------------------------------------------------------------------------------
def test_file_url_mirror(archive, tmp_path):
    data, _ = archive
    source = tmp_path / "mirror dir" / "gzip.zip"
    source.parent.mkdir()
    source.write_bytes(data)
    dest = tmp_path / "out" / "gzip.zip"
    fetch([dead_url(), source.as_uri()], dest, sha256=sha256(data), retries=0, **FAST)
    assert dest.read_bytes() == data


def test_missing_file_url_is_reported(tmp_path):
    url = (tmp_path / "nope.zip").as_uri()
    with pytest.raises(DownloadError, match="no such file"):
        fetch([url], tmp_path / "gzip.zip", retries=5, **FAST)


# 9 --------------------------------------------------------------------------------------------
def test_extract_members(archive, tmp_path):
    data, members = archive
    zip_path = tmp_path / "gzip.zip"
    zip_path.write_bytes(data)
    out_dir = tmp_path / "emnist"
    wanted = {m: sha256(members[m]) for m in EMNIST_MEMBERS}
    wanted[EMNIST_MEMBERS[1]] = None  # no hash: extracted unverified
    paths = extract_members(zip_path, wanted, out_dir)
    assert paths == [out_dir / m.removeprefix("gzip/") for m in EMNIST_MEMBERS]
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(m.removeprefix("gzip/") for m in EMNIST_MEMBERS)
    for member, path in zip(EMNIST_MEMBERS, paths, strict=True):
        assert path.read_bytes() == members[member]


@pytest.mark.parametrize("evil", ["../evil", "/abs", "gzip/../../evil"])
def test_extract_rejects_unsafe_names(evil, tmp_path):
    data, _ = make_emnist_zip(n=2, extra={evil: b"pwned"})
    zip_path = tmp_path / "gzip.zip"
    zip_path.write_bytes(data)
    out_dir = tmp_path / "a" / "b"
    with pytest.raises(ArchiveError, match="refusing"):
        extract_members(zip_path, {EMNIST_MEMBERS[0]: None, evil: None}, out_dir)
    assert not out_dir.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["gzip.zip"]


def test_extract_checksum_mismatch_leaves_nothing(archive, tmp_path):
    data, members = archive
    zip_path = tmp_path / "gzip.zip"
    zip_path.write_bytes(data)
    out_dir = tmp_path / "emnist"
    wanted: dict[str, str | None] = {m: sha256(members[m]) for m in EMNIST_MEMBERS}
    bad_member = EMNIST_MEMBERS[2]
    wanted[bad_member] = "f" * 64
    with pytest.raises(ChecksumError) as info:
        extract_members(zip_path, wanted, out_dir)
    message = str(info.value)
    assert bad_member in message and "f" * 64 in message and sha256(members[bad_member]) in message
    assert list(out_dir.iterdir()) == []  # neither the members before it nor temporaries


def test_extract_missing_member_lists_what_is_there(archive, tmp_path):
    data, _ = archive
    zip_path = tmp_path / "gzip.zip"
    zip_path.write_bytes(data)
    with pytest.raises(ArchiveError) as info:
        extract_members(zip_path, {"gzip/emnist-byclass-train-images-idx3-ubyte": None}, tmp_path / "out")
    message = str(info.value)
    assert "gzip/emnist-byclass-train-images-idx3-ubyte" in message
    assert "gzip/emnist-byclass-train-images-idx3-ubyte.gz" in message  # what the zip has instead
    assert not (tmp_path / "out").exists()


def test_extract_corrupt_zip(tmp_path):
    zip_path = tmp_path / "gzip.zip"
    zip_path.write_bytes(b"<html>503 Service Unavailable</html>")
    with pytest.raises(ArchiveError, match="not a valid zip"):
        extract_members(zip_path, {EMNIST_MEMBERS[0]: None}, tmp_path / "out")
