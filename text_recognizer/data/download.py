"""One download machinery for every file the pipeline fetches.

Downloads are the flakiest part of a reproducible pipeline, so every stage goes through
`fetch`, which behaves like a tool people trust:

- a file already in place that verifies is used as is, with no network request, so a user
  can pre-stage a large archive by hand;
- bytes stream into `<dest>.part` and only a verified file is renamed into `dest`, so nothing
  that looks finished is ever half-written or wrong;
- an interrupted download resumes with an HTTP Range request instead of starting over;
- transient failures (connection errors, timeouts, cut connections, HTTP 5xx and 429) are
  retried with exponential backoff, then the next mirror is tried;
- when everything fails, the error names every URL tried, why it failed, and what the user
  can do instead (the caller's `hint`).

Only the standard library speaks HTTP here (urllib), so there is no extra dependency to pin. requests/urllib3
retries stop at the response headers, so a cut body would still need this loop (a requests version was longer).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import IO

from tqdm import tqdm

from text_recognizer.errors import InputError
from text_recognizer.io import atomic_path

log = logging.getLogger(__name__)

USER_AGENT = "text-recognizer/0.1 (python-urllib)"  # some mirrors refuse the bare urllib default
CHUNK_SIZE = 1 << 20  # 1 MiB: large enough for speed, small enough for a smooth progress bar
_HEX = {"sha256": 64, "md5": 32}


class DownloadError(RuntimeError):
    """Every mirror failed; the message lists each URL tried, why it failed, and the caller's hint."""

    def __init__(self, message: str, failures: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


class ChecksumError(DownloadError):
    """A file (or archive member) does not have the expected hash; names file, expected and actual."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        expected: str = "",
        actual: str = "",
        failures: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message, failures)
        self.path = path
        self.expected = expected
        self.actual = actual


class ArchiveError(DownloadError):
    """An archive is unreadable, lacks a member, or names a member that would escape the output folder."""


class _Transient(Exception):
    """A failure worth retrying on the same mirror (connection, timeout, cut body, 5xx, 429)."""


class _Permanent(Exception):
    """A failure that retrying the same mirror cannot fix (4xx, missing local file, bad scheme)."""


# --- checksums -------------------------------------------------------------------------------


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks so a 535 MB archive does not fill memory."""
    return _digests(Path(path), [algorithm])[algorithm]


def _digests(path: Path, algorithms: Sequence[str]) -> dict[str, str]:
    """Several digests in one pass over the file (hashing twice would double the disk reads)."""
    hashers = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            for h in hashers.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in hashers.items()}


def _expected_hashes(sha256: str | None, md5: str | None) -> dict[str, str]:
    """Normalise the expected hashes and reject malformed ones early (a typo in params.yaml)."""
    expected: dict[str, str] = {}
    for name, value in (("sha256", sha256), ("md5", md5)):
        if value is None:
            continue
        value = value.strip().lower()
        if not re.fullmatch(f"[0-9a-f]{{{_HEX[name]}}}", value):
            raise InputError(f"{name} must be {_HEX[name]} hex digits, got {value!r}")
        expected[name] = value
    return expected


def _mismatch(path: Path, expected: Mapping[str, str]) -> tuple[str, str, str] | None:
    """(algorithm, expected, actual) of the first hash that differs, or None when the file verifies."""
    if not expected:
        return None
    actual = _digests(path, list(expected))
    for name, want in expected.items():
        if actual[name] != want:
            return name, want, actual[name]
    return None


# --- fetch -----------------------------------------------------------------------------------


def fetch(
    urls: Sequence[str],
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    md5: str | None = None,
    timeout_s: float = 60.0,
    retries: int = 3,
    backoff_s: float = 1.0,
    progress: bool = True,
    hint: str = "",
) -> Path:
    """Download `dest` from the first mirror in `urls` that works, verify it, and return its path.

    A `dest` that already verifies is returned without any network request. Without sha256 or
    md5 an existing `dest` is trusted as is. Raises ChecksumError when the only failures were
    hash mismatches, DownloadError otherwise.
    """
    if isinstance(urls, str):  # a bare string is a Sequence too; do not iterate its characters
        urls = [urls]
    if not urls:
        raise InputError("fetch needs at least one URL")
    if retries < 0:
        raise InputError(f"retries must be >= 0, got {retries}")
    dest = Path(dest)
    expected = _expected_hashes(sha256, md5)
    if _already_present(dest, expected):
        return dest

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures: list[tuple[str, str]] = []
    mismatches: list[tuple[str, str, str]] = []

    for url in urls:
        try:
            bad = _fetch_verified(url, part, dest.name, expected, timeout_s, retries, backoff_s, progress)
        except _Permanent as e:
            failures.append((url, str(e)))
            log.warning("mirror %s failed: %s", url, e)
            continue
        if bad is not None:
            part.unlink(missing_ok=True)
            reason = f"checksum mismatch: expected {bad[0]} {bad[1]}, got {bad[2]}"
            failures.append((url, reason))
            mismatches.append(bad)
            log.warning("mirror %s: %s", url, reason)
            continue
        os.replace(part, dest)
        log.info("downloaded %s (%s bytes) from %s", dest, f"{dest.stat().st_size:,}", url)
        return dest
    raise _every_mirror_failed(dest, part, len(urls), failures, mismatches, hint)


def _already_present(dest: Path, expected: Mapping[str, str]) -> bool:
    """Whether `dest` is in place and verifies, so that no request is made (a user may pre-stage a large
    archive by hand); a file that does not verify is logged and downloaded again."""
    if not dest.is_file():
        return False
    bad = _mismatch(dest, expected)
    if bad is None:
        log.info("%s is already present%s; not downloading", dest, " and verified" if expected else "")
        return True
    log.warning("%s exists but does not verify (%s: expected %s, got %s); downloading it again", dest, *bad)
    return False


def _fetch_verified(
    url: str,
    part: Path,
    name: str,
    expected: Mapping[str, str],
    timeout_s: float,
    retries: int,
    backoff_s: float,
    progress: bool,
) -> tuple[str, str, str] | None:
    """Fill `part` from one mirror and verify it: the first mismatch (as `_mismatch`), or None when it verifies.

    A mirror is blamed for a bad file only after a download of its own from zero; raises _Permanent when it
    gives up.
    """
    resumed = part.is_file() and part.stat().st_size > 0
    _fetch_mirror(url, part, name, timeout_s, retries, backoff_s, progress)
    bad = _mismatch(part, expected)
    if bad is not None and resumed:
        # The bytes we resumed from (an earlier run or another mirror) may be the culprit:
        # give this mirror one clean download before blaming it.
        log.warning("%s from %s did not verify after resuming; downloading it again from zero", name, url)
        part.unlink()
        _fetch_mirror(url, part, name, timeout_s, retries, backoff_s, progress)
        bad = _mismatch(part, expected)
    return bad


def _every_mirror_failed(
    dest: Path,
    part: Path,
    num_urls: int,
    failures: Sequence[tuple[str, str]],
    mismatches: Sequence[tuple[str, str, str]],
    hint: str,
) -> DownloadError:
    """The error once every mirror failed: each URL and why, the kept partial file, the caller's hint.

    A ChecksumError when every failure was a hash mismatch (the file itself is wrong, not the network).
    """
    lines = [f"could not download {dest.name} to {dest.parent} from any of {num_urls} mirror(s):"]
    lines += [f"  - {url}: {reason}" for url, reason in failures]
    if part.is_file():
        lines.append(f"  ({part.stat().st_size:,} bytes kept in {part}; the next run resumes from there)")
    if hint:
        lines.append(hint)
    if len(mismatches) == len(failures):
        name, want, got = mismatches[-1]
        lines[0] = f"checksum mismatch for {dest.name}: expected {name} {want}, got {got} (from every mirror):"
        return ChecksumError("\n".join(lines), path=str(dest), expected=want, actual=got, failures=failures)
    return DownloadError("\n".join(lines), failures)


def _fetch_mirror(
    url: str, part: Path, name: str, timeout_s: float, retries: int, backoff_s: float, progress: bool
) -> None:
    """Fill `part` from one mirror, retrying transient failures; raise _Permanent when giving up."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise _Permanent(f"unsupported URL scheme {scheme!r} (use http, https or file)")
    attempts = retries + 1
    for attempt in range(attempts):
        try:
            if scheme == "file":
                _copy_file_url(url, part, name, progress)
            else:
                _download_http(url, part, name, timeout_s, progress)
            return
        except _Transient as e:
            if attempt + 1 >= attempts:
                raise _Permanent(f"{e} (gave up after {attempts} attempt(s))") from e
            delay = backoff_s * 2**attempt
            log.warning("%s: %s; retrying in %.1f s (attempt %d of %d)", url, e, delay, attempt + 2, attempts)
            time.sleep(delay)


def _describe(error: BaseException, timeout_s: float) -> str:
    """A one-line reason for the error report, e.g. 'connection refused'."""
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        reason = error.reason
        if isinstance(reason, BaseException):
            return _describe(reason, timeout_s)
        return str(reason)
    if isinstance(error, TimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, http.client.IncompleteRead):
        return f"connection closed mid-body after {len(error.partial)} more bytes"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _download_http(url: str, part: Path, name: str, timeout_s: float, progress: bool) -> None:
    """One attempt: request the missing tail of `part` (or all of it) and append it."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        with contextlib.closing(e):
            if e.code == 416 and offset:
                content_range = e.headers.get("Content-Range", "")
                if content_range.strip() == f"bytes */{offset}":
                    return  # the part is already complete; verification decides whether it is right
                log.warning("%s: server refused to resume at byte %d (HTTP 416); starting over", url, offset)
                part.unlink()
                raise _Transient("HTTP 416 Range Not Satisfiable for the partial file; restarting from zero") from e
            reason = f"HTTP {e.code} {e.reason}"
            if e.code >= 500 or e.code == 429:
                raise _Transient(reason) from e
            raise _Permanent(reason) from e
    except (OSError, http.client.HTTPException) as e:
        raise _Transient(_describe(e, timeout_s)) from e

    with response:
        status = response.status
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if status == 206:
            start = _content_range_start(response.headers.get("Content-Range", ""))
            if not offset or start != offset:
                part.unlink(missing_ok=True)
                raise _Transient(f"server sent an unexpected range ({response.headers.get('Content-Range')!r})")
            mode = "ab"
        elif status == 200:
            if offset:
                log.info("%s: server ignored the Range request; downloading from zero", url)
            offset, mode = 0, "wb"
        else:
            raise _Permanent(f"unexpected HTTP status {status}")
        total = offset + length if length is not None else None
        log.info("downloading %s from %s (%s)", name, url, _size_text(total, offset))
        _stream(response, part, mode, name, offset, total, progress, timeout_s)


def _content_range_start(value: str) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value)
    return int(match.group(1)) if match else None


def _size_text(total: int | None, offset: int) -> str:
    size = f"{total:,} bytes" if total is not None else "size unknown"
    return f"{size}, resuming at byte {offset:,}" if offset else size


def _stream(
    source: IO[bytes],
    part: Path,
    mode: str,
    name: str,
    offset: int,
    total: int | None,
    progress: bool,
    timeout_s: float,
) -> None:
    """Copy `source` into `part`; a short body raises _Transient and keeps the bytes received."""
    received = offset
    with (
        open(part, mode) as out,
        tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=name,
            disable=None if progress else True,  # None: on when stderr is a terminal
            leave=False,
        ) as bar,
    ):
        try:
            while chunk := source.read(CHUNK_SIZE):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as e:
            raise _Transient(f"{_describe(e, timeout_s)} after {received:,} bytes") from e
        finally:
            out.flush()
            os.fsync(out.fileno())
    if total is not None and received < total:
        raise _Transient(f"connection closed after {received:,} of {total:,} bytes")


def _copy_file_url(url: str, part: Path, name: str, progress: bool) -> None:
    """file:// mirrors: a streamed copy (resuming like HTTP) so local and remote sources behave alike."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.netloc not in ("", "localhost"):
        raise _Permanent(f"file URL with a remote host {parsed.netloc!r} is not supported")
    source_path = Path(urllib.request.url2pathname(parsed.path))
    if not source_path.is_file():
        raise _Permanent(f"no such file: {source_path}")
    total = source_path.stat().st_size
    offset = part.stat().st_size if part.is_file() else 0
    if offset > total:
        offset = 0
    try:
        with open(source_path, "rb") as source:
            source.seek(offset)
            _stream(source, part, "ab" if offset else "wb", name, offset, total, progress, 0.0)
    except OSError as e:
        raise _Permanent(f"cannot read {source_path}: {e}") from e


# --- archives --------------------------------------------------------------------------------


def _safe_basename(member: str) -> str:
    """The file name a member is written under; refuse names that could point outside out_dir."""
    if not member or "\\" in member or "\0" in member:
        raise ArchiveError(f"refusing archive member {member!r}: empty name, backslash or NUL byte")
    path = PurePosixPath(member)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", member):
        raise ArchiveError(f"refusing absolute archive member name {member!r}")
    if ".." in path.parts:
        raise ArchiveError(f"refusing archive member {member!r}: '..' would leave the output folder")
    if member.endswith("/") or path.name in ("", "."):
        raise ArchiveError(f"archive member {member!r} is a folder, not a file")
    return path.name


def extract_members(
    zip_path: str | os.PathLike[str],
    members: Mapping[str, str | None],
    out_dir: str | os.PathLike[str],
) -> list[Path]:
    """Extract only the named members of a zip into `out_dir/<basename>`, verifying each sha256.

    All members are written to temporary files first and renamed into place only after every
    one has verified, so a bad archive leaves no output behind (nor a mix of old and new).
    Returns the written paths in the order of `members`.
    """
    zip_path, out_dir = Path(zip_path), Path(out_dir)
    targets: dict[str, Path] = {}
    for member in members:
        basename = _safe_basename(member)
        target = out_dir / basename
        if target in targets.values():
            raise ArchiveError(f"two requested members would both be written to {target}")
        targets[member] = target
    expected = {m: _expected_hashes(sha, None).get("sha256") for m, sha in members.items()}

    try:
        with zipfile.ZipFile(zip_path) as archive:
            names = set(archive.namelist())
            missing = [m for m in members if m not in names]
            if missing:
                raise ArchiveError(_missing_message(zip_path, missing, names))
            out_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.ExitStack() as stack:  # every rename happens only if no member failed
                for member, target in targets.items():
                    tmp = stack.enter_context(atomic_path(target, suffix=".extract"))
                    _extract_one(archive, member, tmp, expected[member])
    except zipfile.BadZipFile as e:
        raise ArchiveError(f"{zip_path} is not a valid zip archive (corrupt or truncated download?): {e}") from e
    log.info("extracted %d member(s) of %s into %s", len(targets), zip_path.name, out_dir)
    return list(targets.values())


def _extract_one(archive: zipfile.ZipFile, member: str, tmp: Path, sha256: str | None) -> None:
    hasher = hashlib.sha256()
    with archive.open(member) as source, open(tmp, "wb") as out:
        while chunk := source.read(CHUNK_SIZE):  # zipfile checks the member's CRC at the end
            hasher.update(chunk)
            out.write(chunk)
    actual = hasher.hexdigest()
    if sha256 is not None and actual != sha256:
        raise ChecksumError(
            f"checksum mismatch for archive member {member}: expected sha256 {sha256}, got {actual}",
            path=member,
            expected=sha256,
            actual=actual,
        )


def _missing_message(zip_path: Path, missing: Sequence[str], names: set[str]) -> str:
    """Name each missing member and what the archive holds under the same folder, to spot a layout change."""
    lines = [f"{zip_path} lacks the member(s) {', '.join(missing)}"]
    for prefix in sorted({str(PurePosixPath(m).parent) for m in missing}):
        prefix = "" if prefix == "." else prefix + "/"
        present = sorted(n for n in names if n.startswith(prefix) and not n.endswith("/"))
        shown = ", ".join(present[:20]) + (f", ... ({len(present)} in all)" if len(present) > 20 else "")
        lines.append(f"  under {prefix or '/'!r} it has: {shown or 'nothing'}")
    return "\n".join(lines)
