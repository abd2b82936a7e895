"""Atomic writes, so a crash or a bad input never leaves a half-written output behind; and input
checks, so a missing or truncated input fails in one line naming the stage that makes it."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from text_recognizer.errors import InputError, MissingInputError, ProjectError


class OutputError(ProjectError, OSError):
    """An output path that would destroy something: a directory, or a file the user did not ask to replace."""


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str], suffix: str = "", *, replace_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only if the block succeeds.

    Works for files and directories alike. The temporary sits in the same folder so the
    rename is atomic on POSIX file systems. An existing directory at `final` is replaced only
    with `replace_dir=True`, which stages pass for a directory that dvc.yaml declares as their own
    output; anywhere else a directory there is an OutputError before anything is written, since
    replacing it would delete what is inside.
    """
    final = Path(final)
    if final.name in ("", ".", ".."):
        raise OutputError(f"{final} is a directory: name a file to write")
    if final.is_dir() and not final.is_symlink() and not replace_dir:
        raise OutputError(f"{final} is a directory: name a file to write, not a folder")
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix + ".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # the caller decides whether it becomes a file or a directory
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():  # replace_dir, checked above: the stage's own output
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def check_new_output(path: str | os.PathLike[str], *, overwrite: bool = False, flag: str = "--overwrite") -> Path:
    """`path` as a place a command may write a file the user named, checked before any work starts.

    A directory (or a name ending in a separator) is an error, an existing file is one unless
    `overwrite` (`flag` names the option that sets it), and so is anything that is not a regular
    file (a FIFO, a device) or a folder in the way. Nothing is created or removed here.
    """
    text = os.fspath(path)
    path = Path(text)
    if text.endswith(os.sep) or path.name in ("", ".", "..") or path.is_dir():
        raise OutputError(f"{text} is a directory: name a file to write, e.g. {path / 'out.png'}")
    if path.exists() or path.is_symlink():
        if not path.is_file() and path.exists():
            raise OutputError(f"{text} exists and is not a regular file: name another path")
        if not overwrite:
            raise OutputError(f"{text} exists: pass {flag} to replace it, or name another file")
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise OutputError(f"cannot write {text}: {parent} is not a directory")
            if not os.access(parent, os.W_OK | os.X_OK) and parent == path.parent:
                raise OutputError(f"cannot write {text}: {parent} is not writable")
            break
    return path


def remove_stale_temporaries(final: str | os.PathLike[str]) -> list[Path]:
    """Delete what a killed earlier write of `final` left beside it (SIGKILL skips `finally`).

    A stage's outputs have one writer at a time (DVC runs a stage once; under DDP only rank 0
    writes), so any temporary of the same output is a leftover, never a write in progress.
    """
    final = Path(final)
    stale = sorted(final.parent.glob(f".{glob.escape(final.name)}.*.tmp"))
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON atomically, keys sorted so equal data gives equal bytes."""
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def require_file(path: str | os.PathLike[str], made_by: str) -> Path:
    """`path`, which must exist; else a MissingInputError naming the stage `made_by` that makes it."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{path} does not exist: run the {made_by} stage first (dvc repro {made_by})")
    return path


def require_h5(path: str | os.PathLike[str], made_by: str) -> Path:
    """`path`, an HDF5 file that opens and whose every dataset's first and last element reads.

    A truncated or corrupt file (a killed copy, a full disk) then fails before any work, in one
    line naming the file and the stage to rerun, not as an h5py traceback an hour into training.
    """
    import h5py  # here, so that importing io stays light

    def touch(_name: str, obj: Any) -> None:
        dict(obj.attrs)
        if isinstance(obj, h5py.Dataset) and obj.size:
            for index in ((0,) * obj.ndim, tuple(n - 1 for n in obj.shape)):
                obj[index]  # a scalar dataset reads with the empty index ()

    path = require_file(path, made_by)
    try:
        with h5py.File(path, "r") as f:
            dict(f.attrs)
            f.visititems(touch)
    except (OSError, RuntimeError, KeyError) as err:
        raise InputError(
            f"{path} is unreadable or truncated ({err}): rerun the {made_by} stage (dvc repro {made_by})"
        ) from err
    return path
