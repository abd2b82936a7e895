"""The offline data source: font-rendered glyphs in EMNIST's exact file layout.

When NIST's archive cannot be downloaded (no network, CI, quick experiments) the pipeline can
run on this source instead (`data.source: synthetic`). Everything downstream of the download
stage reads the same files either way, so the archive written here copies the official one
member for member: every split's names, gzip'd IDX, glyphs stored transposed, its mapping file. The
ByClass glyphs (labels 0..61) are generated; the other splits are derived from them as EMNIST
derived its own (`derive_split`).

Glyphs are drawn from the fonts bundled with matplotlib (always installed, so no download) and
jittered (font, stroke, rotation, shear, aspect, size, position, blur, contrast) so that a
classifier has something to learn but cannot trivially reach 100%. They are then fitted like
NIST's preprocessing: the bounding box scaled to fit a ~20x20 square keeping its aspect,
centred in the 28x28 frame.

Byte-level determinism holds for a given seed and a given matplotlib/Pillow/FreeType install;
a different font rasteriser may change pixels (and so the archive checksums).
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib
import numpy as np
from matplotlib.ft2font import FT2Font
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from text_recognizer.data.download import file_digest
from text_recognizer.data.idx import gzip_bytes, idx_bytes, upright_to_emnist
from text_recognizer.metadata import (
    ALL_EMNIST_MEMBERS,
    EMNIST_CLASSES,
    EMNIST_SPLITS,
    GLYPH_SIZE,
    NUM_EMNIST_CLASSES,
    byclass_to_split,
    official_mapping_text,
    split_mapping_member,
    split_members,
)

# Fonts shipped in matplotlib's mpl-data whose ASCII code points really hold Latin letters
# and digits (the STIX size variants, cmmi/cmsy/cmex and LastResort map them to symbols or boxes).
FONT_FILES: tuple[str, ...] = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmb10.ttf",
    "cmti10.ttf",
)

_HIRES_SIZE = 64  # font size of the cached master glyphs (cap height ~46 px)
_STROKES = (0, 1, 3)  # extra stroke widths (px, at _HIRES_SIZE) to vary ink thickness
_PREBLUR = 1.2  # Gaussian radius on the master: anti-aliasing before the ~2.5x shrink
_MARGIN = 6  # empty border kept around each master so the blur and bilinear sampling fade to 0
FIT_RANGE = (18.0, 22.0)  # longest side of the fitted glyph, in pixels of the 28x28 frame


def _font_dir() -> Path:
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=1)
def _fonts_per_class() -> tuple[tuple[int, ...], ...]:
    """For each class, the indices into FONT_FILES of the fonts that contain its glyph."""
    per_class: list[list[int]] = [[] for _ in EMNIST_CLASSES]
    for font_index, name in enumerate(FONT_FILES):
        path = _font_dir() / name
        if not path.exists():
            continue
        charmap = FT2Font(str(path)).get_charmap()
        for label, char in enumerate(EMNIST_CLASSES):
            if ord(char) in charmap:
                per_class[label].append(font_index)
    empty = [EMNIST_CLASSES[i] for i, fonts in enumerate(per_class) if not fonts]
    if empty:
        raise RuntimeError(f"no bundled matplotlib font in {_font_dir()} has the glyph(s) {''.join(empty)!r}")
    return tuple(tuple(fonts) for fonts in per_class)


@functools.cache
def _font(font_index: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_font_dir() / FONT_FILES[font_index]), _HIRES_SIZE)


@functools.cache
def _master(font_index: int, label: int, stroke: int) -> tuple[Image.Image, float, float]:
    """High-resolution glyph, blurred, cropped to its ink with a margin; returns (image, cx, cy).

    Rendered once per (font, class, stroke) and reused, so each sample costs only one small
    affine transform. (cx, cy) is the centre of the ink bounding box in the image.
    """
    font = _font(font_index)
    char = EMNIST_CLASSES[label]
    canvas = Image.new("L", (3 * _HIRES_SIZE, 3 * _HIRES_SIZE), 0)
    ImageDraw.Draw(canvas).text(
        (_HIRES_SIZE // 2, _HIRES_SIZE // 2), char, fill=255, font=font, stroke_width=stroke, stroke_fill=255
    )
    bbox = canvas.getbbox()
    if bbox is None:
        raise RuntimeError(f"font {FONT_FILES[font_index]} renders {char!r} without ink")
    left, top, right, bottom = bbox
    crop = canvas.crop((left - _MARGIN, top - _MARGIN, right + _MARGIN, bottom + _MARGIN))
    crop = crop.filter(ImageFilter.GaussianBlur(_PREBLUR))
    return crop, _MARGIN + (right - left) / 2.0, _MARGIN + (bottom - top) / 2.0


class _Jitter(NamedTuple):
    """The random draws of render_glyphs, one array of n per kind of jitter, drawn together (_draw_jitter)."""

    font_u: np.ndarray  # uniform in [0, 1): picks one of the fonts that have the class
    stroke_i: np.ndarray  # index into _STROKES
    angle: np.ndarray  # rotation, radians
    shear: np.ndarray
    aspect: np.ndarray  # width scale
    fit: np.ndarray  # longest side of the fitted glyph, frame pixels
    shift: np.ndarray  # (n, 2): offset of the ink centre from the frame centre, frame pixels
    blur: np.ndarray  # weight of the blurred copy in the finish
    gain: np.ndarray  # contrast gain of the finish


def render_glyphs(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Render one jittered glyph per label (0..61): (N, 28, 28) uint8, upright, white on black.

    All random draws happen up front as arrays, in a fixed order, so the result depends only
    on the labels and the generator's state (not on what the master-glyph cache holds).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    n = labels.shape[0]
    if n and (labels.min() < 0 or labels.max() >= NUM_EMNIST_CLASSES):
        raise ValueError(f"labels must be in 0..{NUM_EMNIST_CLASSES - 1}, got {labels.min()}..{labels.max()}")
    if n == 0:
        return np.zeros((0, GLYPH_SIZE, GLYPH_SIZE), dtype=np.uint8)
    labels = labels.astype(np.int64)
    fonts_per_class = _fonts_per_class()
    jitter = _draw_jitter(n, rng)
    masters, geometry = _masters(labels, jitter, fonts_per_class)
    out = _transform(masters, _affine_coefficients(geometry, jitter))
    return _finish(out, jitter)


def _draw_jitter(n: int, rng: np.random.Generator) -> _Jitter:
    """Every random draw of render_glyphs, in one fixed order: the order is part of what a seed means, so
    the archive of a seed stays the same bytes."""
    font_u = rng.random(n)
    stroke_i = rng.integers(0, len(_STROKES), n)
    angle = np.deg2rad(rng.normal(0.0, 5.0, n).clip(-12.0, 12.0))
    shear = rng.normal(0.0, 0.12, n).clip(-0.3, 0.3)
    aspect = np.exp(rng.normal(0.0, 0.12, n))
    fit = rng.uniform(*FIT_RANGE, n)
    shift = rng.uniform(-1.5, 1.5, (n, 2))
    blur = rng.uniform(0.0, 1.0, n)
    gain = rng.uniform(1.0, 1.5, n)
    return _Jitter(font_u, stroke_i, angle, shear, aspect, fit, shift, blur, gain)


def _masters(
    labels: np.ndarray, jitter: _Jitter, fonts_per_class: tuple[tuple[int, ...], ...]
) -> tuple[list[Image.Image], np.ndarray]:
    """The cached master of each sample and its geometry (n, 4): ink width, ink height, ink centre x and y,
    in master pixels. The only loop per glyph before the transforms: it looks up, it computes nothing."""
    n = len(labels)
    masters: list[Image.Image] = []
    geometry = np.empty((n, 4))  # ink width, ink height, ink centre x, ink centre y (master pixels)
    for i in range(n):
        fonts = fonts_per_class[labels[i]]
        font_index = fonts[min(int(jitter.font_u[i] * len(fonts)), len(fonts) - 1)]
        master, cx, cy = _master(font_index, int(labels[i]), _STROKES[jitter.stroke_i[i]])
        masters.append(master)
        geometry[i] = (master.size[0] - 2 * _MARGIN, master.size[1] - 2 * _MARGIN, cx, cy)
    return masters, geometry


def _affine_coefficients(geometry: np.ndarray, jitter: _Jitter) -> list[list[float]]:
    """PIL AFFINE coefficients (frame -> master) of every sample, built at once with numpy (no Python maths
    per glyph): rotate . shear . aspect around the ink centre, scaled so the longest side is `fit`, shifted."""
    n = len(geometry)
    # Forward map (master coordinates around the ink centre -> frame) = rotate . shear . aspect
    cos, sin = np.cos(jitter.angle), np.sin(jitter.angle)
    aspect, shear = jitter.aspect, jitter.shear
    m = np.empty((n, 2, 2))
    m[:, 0, 0] = cos * aspect
    m[:, 0, 1] = cos * shear - sin
    m[:, 1, 0] = sin * aspect
    m[:, 1, 1] = sin * shear + cos
    half_w, half_h = geometry[:, 0] / 2.0, geometry[:, 1] / 2.0
    corners = np.stack([np.stack([sx * half_w, sy * half_h]) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))], -1)
    mapped = np.einsum("nij,jnk->nik", m, corners)  # (n, 2, 4)
    extent = np.ptp(mapped, axis=2).max(axis=1)
    m *= (jitter.fit / np.maximum(extent, 1e-6))[:, None, None]
    inv = np.linalg.inv(m)  # frame -> master, as PIL's AFFINE wants it
    tx = GLYPH_SIZE / 2.0 + jitter.shift[:, 0]
    ty = GLYPH_SIZE / 2.0 + jitter.shift[:, 1]
    a, b, d, e = inv[:, 0, 0], inv[:, 0, 1], inv[:, 1, 0], inv[:, 1, 1]
    return np.stack([a, b, geometry[:, 2] - a * tx - b * ty, d, e, geometry[:, 3] - d * tx - e * ty], 1).tolist()


def _transform(masters: list[Image.Image], coeffs: list[list[float]]) -> np.ndarray:
    """(n, 28, 28) float32: each master through its affine map, one small PIL transform per sample."""
    size = (GLYPH_SIZE, GLYPH_SIZE)
    affine, bilinear = Image.Transform.AFFINE, Image.Resampling.BILINEAR
    raw = b"".join(
        master.transform(size, affine, c, resample=bilinear).tobytes()
        for master, c in zip(masters, coeffs, strict=True)
    )
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(masters), GLYPH_SIZE, GLYPH_SIZE).astype(np.float32)


def _finish(out: np.ndarray, jitter: _Jitter) -> np.ndarray:
    """Vectorised finish, to uint8: normalise the peak to 255, mild blur, then a contrast gain that
    saturates the anti-aliased edges and so thickens strokes a little."""
    n = len(out)
    peak = out.reshape(n, -1).max(axis=1)
    out *= (255.0 / np.maximum(peak, 1.0))[:, None, None]
    padded = np.pad(out, ((0, 0), (1, 1), (1, 1)))
    smooth = (
        4 * padded[:, 1:-1, 1:-1]
        + 2 * (padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:])
        + padded[:, :-2, :-2]
        + padded[:, :-2, 2:]
        + padded[:, 2:, :-2]
        + padded[:, 2:, 2:]
    ) / 16.0
    out = (1.0 - jitter.blur)[:, None, None] * out + jitter.blur[:, None, None] * smooth
    out *= jitter.gain[:, None, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --- the EMNIST archive ------------------------------------------------------------------------

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member dates, so the archive's bytes depend on its content only


def _zip_info(name: str, compress_type: int) -> zipfile.ZipInfo:
    """A member header with fixed date, system and permissions (nothing from the writing machine)."""
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = compress_type
    info.create_system = 3  # Unix
    if name.endswith("/"):
        info.external_attr = (0o40755 << 16) | 0x10  # directory
    else:
        info.external_attr = 0o100644 << 16
    return info


def _shuffled_labels(per_class: int, rng: np.random.Generator) -> np.ndarray:
    """per_class samples of each of the 62 classes, in shuffled order (as NIST's files are)."""
    return rng.permutation(np.repeat(np.arange(NUM_EMNIST_CLASSES, dtype=np.uint8), per_class))


def _generated(labels: np.ndarray, rng: np.random.Generator, pen_share: float) -> np.ndarray:
    """Font glyphs, with a pen_share of them drawn with a pen instead (no extra draws when pen_share is 0)."""
    if pen_share <= 0:
        return render_glyphs(labels, rng)
    from text_recognizer.data.pen_glyphs import render_pen_glyphs

    pen = rng.random(len(labels)) < pen_share
    images = np.empty((len(labels), GLYPH_SIZE, GLYPH_SIZE), dtype=np.uint8)
    images[~pen] = render_glyphs(labels[~pen], rng)
    images[pen] = render_pen_glyphs(labels[pen], rng)
    return images


# EMNIST's splits with the same count in every class (NIST's readme calls their classes "balanced"): Balanced cuts
# ByMerge down to it, Letters, Digits and MNIST are drawn so. ByClass and ByMerge keep NIST's natural counts.
EQUAL_COUNT_SPLITS = frozenset({"balanced", "letters", "digits", "mnist"})


def derive_split(
    split: str, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One split's (images, labels in its files' numbering) from ByClass glyphs, the way EMNIST derived its splits:
    relabelled (a merged lower-case letter joins its upper case), classes the split lacks dropped, the equal-count
    splits undersampled to their rarest class without replacement. Rows keep ByClass's (shuffled) order."""
    table = np.array([-1 if label is None else label for label in byclass_to_split(split)], dtype=np.int64)
    relabelled = table[np.asarray(labels, dtype=np.int64)]
    keep = np.flatnonzero(relabelled >= 0)
    if split in EQUAL_COUNT_SPLITS:
        keep = _equal_counts(keep, relabelled[keep], rng)
    return images[keep], relabelled[keep].astype(np.uint8)


def _equal_counts(rows: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`rows` undersampled to the rarest label's count, without replacement, sorted. Not emnist.balance_indices:
    importing emnist.py would make the download stages depend on (and rerun for) the HDF5 writer."""
    present, counts = np.unique(labels, return_counts=True)
    if len(present) == 0:
        return rows
    picked = [rng.choice(rows[labels == label], size=int(counts.min()), replace=False) for label in present]
    return np.sort(np.concatenate(picked))


def _byclass_files(
    train_per_class: int,
    test_per_class: int,
    rng: np.random.Generator,
    pen_share: float,
    extra: Mapping[str, tuple[np.ndarray, np.ndarray]] | None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train"|"test": (upright images, ByClass labels)}: generated glyphs, with `extra`'s shuffled in."""
    files = {}
    for part, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = _shuffled_labels(per_class, rng)
        images = _generated(labels, rng, pen_share)
        if extra is not None and part in extra:
            real_images, real_labels = extra[part]
            order = rng.permutation(len(labels) + len(real_labels))
            images = np.concatenate([images, real_images])[order]
            labels = np.concatenate([labels, real_labels.astype(np.uint8)])[order]
        files[part] = (images, labels)
    return files


def emnist_members(
    *,
    train_per_class: int,
    test_per_class: int,
    seed: int,
    pen_share: float,
    extra: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, bytes]:
    """{member name: bytes} for every member of NIST's archive: each split's gzip'd IDX files (images stored
    transposed) and its mapping file, so that every emnist_hdf5.split works offline.

    A `pen_share` of the generated glyphs is drawn with a pen (pen_glyphs), the rest from fonts.
    `extra` ({"train"|"test": (upright uint8 images, ByClass labels)}) joins the generated glyphs of that file
    and is shuffled in with them: the handwriting source's real glyphs, which the derived splits then hold too.
    """
    if train_per_class < 1 or test_per_class < 1:
        raise ValueError(f"per-class counts must be >= 1, got train {train_per_class}, test {test_per_class}")
    byclass = _byclass_files(train_per_class, test_per_class, np.random.default_rng(seed), pen_share, extra)
    members: dict[str, bytes] = {}
    derived: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for index, split in enumerate(EMNIST_SPLITS):
        source = "digits" if split == "mnist" else split  # the same ten classes: offline, the same glyphs
        names = split_members(split)
        for first, part in ((0, "train"), (2, "test")):
            if (source, part) not in derived:  # its own generator: ByClass's bytes do not depend on the others
                rng = np.random.default_rng([seed, index, first])
                derived[source, part] = derive_split(source, *byclass[part], rng)
            images, labels = derived[source, part]
            members[names[first]] = gzip_bytes(idx_bytes(upright_to_emnist(images)))
            members[names[first + 1]] = gzip_bytes(idx_bytes(labels))
        members[split_mapping_member(split)] = official_mapping_text(split).encode("ascii")
    return members


def write_emnist_archive(
    path: str | os.PathLike[str],
    *,
    train_per_class: int,
    test_per_class: int,
    seed: int,
    pen_share: float,
    extra: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Write a zip laid out like NIST's gzip.zip (every split, in its alphabetical order); return its checksums.

    Members are stored uncompressed (the IDX files are gzip'd already, as in the official archive).
    Returns {"md5": md5 of the archive, "sha256": {member basename: sha256 of the member}},
    the same shape of digests that params.yaml pins for the real download.
    """
    members = emnist_members(
        train_per_class=train_per_class, test_per_class=test_per_class, seed=seed, pen_share=pen_share, extra=extra
    )
    path = Path(path)
    with zipfile.ZipFile(path, "w") as archive:
        for name in ALL_EMNIST_MEMBERS:
            archive.writestr(_zip_info(name, zipfile.ZIP_STORED), members[name])
    return {
        "md5": file_digest(path, "md5"),
        "sha256": {Path(name).name: hashlib.sha256(data).hexdigest() for name, data in members.items()},
    }


# --- the Brown corpus look-alike -----------------------------------------------------------------

# Brown's category codes (the letter after 'c' in a file name) and names, as in its cats.txt.
BROWN_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("a", "news"),
    ("b", "editorial"),
    ("c", "reviews"),
    ("d", "religion"),
    ("e", "hobbies"),
    ("f", "lore"),
    ("g", "belles_lettres"),
    ("h", "government"),
    ("j", "learned"),
    ("k", "fiction"),
    ("l", "mystery"),
    ("m", "science_fiction"),
    ("n", "adventure"),
    ("p", "romance"),
    ("r", "humor"),
)


# A small tagged vocabulary (Brown tags). Words are plain ASCII letters and digits, the
# characters the line images can show.
def _split(words: str) -> tuple[str, ...]:
    return tuple(words.split())


_WORDS: dict[str, tuple[str, ...]] = {
    "at": ("the", "a", "an", "every", "no"),
    "ap": ("many", "few", "several", "other", "last", "next"),
    "dti": ("some", "any"),
    "nn": _split(
        "man woman child house city county state year day week time work water money land road river school "
        "church office law court jury election plan program report market price company family friend door "
        "window room table car train letter book paper story music song game team party group member "
        "question answer problem reason result power force light fire wind rain morning evening night "
        "country nation government policy history art science language voice face hand eye heart mind "
        "idea truth problem garden field farm hill island ship boat bridge street corner village"
    ),
    "nns": _split(
        "men women children houses cities years days weeks things people workers students teachers "
        "officials members voters farmers leaders friends letters books papers songs games ideas plans "
        "questions answers problems reasons results schools roads rivers hands eyes"
    ),
    "np": _split(
        "John Mary Robert Helen James Ruth William Anne George Alice Thomas Martha Charles Susan Henry Laura "
        "Atlanta Texas Boston Chicago Georgia Ohio London Paris Washington Dallas Europe America"
    ),
    "np-surname": _split("Fulton Kennedy Lincoln Smith Brown Miller Davis Wilson Taylor Clark Baker Hughes"),
    "vbd": _split(
        "said made took gave found told asked saw came went left kept brought thought felt wrote called "
        "opened moved played worked helped turned started wanted needed used showed seemed carried held"
    ),
    "vbz": _split(
        "says makes takes gives finds tells asks sees comes goes keeps brings thinks feels writes calls "
        "opens moves plays works helps turns starts wants needs uses shows seems carries holds"
    ),
    "vb": _split(
        "make take give find tell ask see come go keep bring think feel write call open move play work "
        "help turn start want need use show hold carry build"
    ),
    "md": ("will", "would", "can", "could", "should", "may", "might", "must"),
    "jj": _split(
        "new old good great small large long young early late local public political social national "
        "recent important possible free strong clear full hard real simple special whole white dark "
        "open quiet happy busy short high low warm cold fine true human private"
    ),
    "rb": ("also", "never", "often", "still", "always", "soon", "again", "just", "only", "quickly", "slowly"),
    "in": ("of", "in", "on", "at", "for", "with", "from", "by", "into", "about", "after", "before", "under"),
    "cc": ("and", "but", "or"),
    "cs": ("that", "because", "when", "while", "if"),
    "pps": ("he", "she", "it"),
    "ppss": ("they", "we", "you"),
    "ppo": ("him", "her", "it", "them", "us", "me"),
    "cd": ("one", "two", "three", "four", "five", "ten", "12", "20", "1959", "1960", "1961", "100", "3"),
}


def _pick(rng: np.random.Generator, tag: str) -> tuple[str, str]:
    words = _WORDS[tag]
    return words[int(rng.integers(len(words)))], tag.split("-")[0]


def _noun_phrase(rng: np.random.Generator, subject: bool) -> list[tuple[str, str]]:
    roll = rng.random()
    if roll < 0.2:
        return [_pick(rng, "np")] if rng.random() < 0.6 else [_pick(rng, "np"), _pick(rng, "np-surname")]
    if roll < 0.3:
        return [_pick(rng, ("pps" if rng.random() < 0.5 else "ppss") if subject else "ppo")]
    if roll < 0.4:
        return [_pick(rng, "cd"), *([_pick(rng, "jj")] if rng.random() < 0.3 else []), _pick(rng, "nns")]
    phrase = [_pick(rng, "at" if rng.random() < 0.8 else "dti")]
    if rng.random() < 0.5:
        phrase.append(_pick(rng, "jj"))
    phrase.append(_pick(rng, "nn"))
    if phrase[0][0] in ("a", "an"):  # article agrees with the next word's sound (roughly)
        phrase[0] = ("an" if phrase[1][0][0] in "aeiou" else "a", "at")
    return phrase


def _clause(rng: np.random.Generator) -> list[tuple[str, str]]:
    words = _noun_phrase(rng, subject=True)
    if rng.random() < 0.25:
        words += [_pick(rng, "md"), *([_pick(rng, "rb")] if rng.random() < 0.3 else []), _pick(rng, "vb")]
    else:
        words.append(_pick(rng, "vbd" if rng.random() < 0.7 else "vbz"))
    words += _noun_phrase(rng, subject=False)
    while rng.random() < 0.45:
        words += [_pick(rng, "in"), *_noun_phrase(rng, subject=False)]
    return words


def _sentence(rng: np.random.Generator) -> list[tuple[str, str]]:
    words = _clause(rng)
    roll = rng.random()
    if roll < 0.2:
        words += [(",", ","), _pick(rng, "cc"), *_clause(rng)]
    elif roll < 0.35:
        words += [_pick(rng, "cs"), *_clause(rng)]
    elif roll < 0.45:
        words += [(";", "."), *_clause(rng)]
    first, tag = words[0]
    words[0] = (first[:1].upper() + first[1:], tag)
    words.append(("?", ".") if rng.random() < 0.08 else (".", "."))
    return words


def _brown_text(rng: np.random.Generator, num_sentences: int) -> str:
    """One file in Brown's format: each sentence on its own tab-indented line, blank lines between,
    and one more newline at the end (as the real files have)."""
    lines = []
    for _ in range(num_sentences):
        tokens = " ".join(f"{word}/{tag}" for word, tag in _sentence(rng))
        lines.append(f"\n\n\t{tokens}\n")
    return "".join(lines) + "\n"


# How many documents each genre has in the real corpus (cats.txt of NLTK's brown.zip): 500 in all.
BROWN_DOCUMENTS_PER_CATEGORY: dict[str, int] = {
    "a": 44, "b": 27, "c": 17, "d": 17, "e": 36, "f": 48, "g": 75, "h": 30,
    "j": 80, "k": 29, "l": 24, "m": 6, "n": 29, "p": 29, "r": 9,
}  # fmt: skip
BROWN_NUM_FILES = sum(BROWN_DOCUMENTS_PER_CATEGORY.values())


def brown_fileids(num_files: int = BROWN_NUM_FILES) -> list[tuple[str, str]]:
    """[(fileid, category)] sorted, numbered within each genre (ca01, ca02, ..., cb01, ...).

    The genres share num_files in proportion to the real corpus (largest remainder, ties to
    the earlier genre), so 500 gives exactly the real file ids ca01 ... cr09 and their
    categories, and a smaller corpus keeps the real mix of genres (the text pools of
    emnist_lines are stratified by genre, so they see the same proportions on either corpus).
    """
    if not 1 <= num_files <= BROWN_NUM_FILES:
        raise ValueError(f"num_files must be in 1..{BROWN_NUM_FILES} (the real corpus's size), got {num_files}")
    real = [BROWN_DOCUMENTS_PER_CATEGORY[letter] for letter, _ in BROWN_CATEGORIES]
    quotas = [num_files * n / BROWN_NUM_FILES for n in real]
    counts = [int(q) for q in quotas]
    by_remainder = sorted(range(len(real)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder[: num_files - sum(counts)]:
        counts[i] += 1
    return [
        (f"c{letter}{k:02d}", name)
        for (letter, name), count in zip(BROWN_CATEGORIES, counts, strict=True)
        for k in range(1, count + 1)
    ]


def write_brown_corpus(
    path: str | os.PathLike[str], *, seed: int, num_files: int = BROWN_NUM_FILES, sentences_per_file: int = 20
) -> str:
    """Write a generated corpus laid out like NLTK's brown.zip; return the zip's sha256.

    NLTK's CategorizedTaggedCorpusReader reads it as it reads the real corpus, so the sentence
    stage cannot tell the two apart. By default it has the real corpus's 500 file ids and
    cats.txt (byte for byte), so that emnist_lines can deal whole documents into text pools
    as it does on the real one; 20 sentences a file (the real files have about 115) keep it
    quick to write and read. Sentences come from a seeded grammar over a few hundred common
    words; same seed, same bytes. Members are in the real zip's order (case-insensitive).
    """
    if num_files < 1 or sentences_per_file < 1:
        raise ValueError(f"num_files and sentences_per_file must be >= 1, got {num_files}, {sentences_per_file}")
    rng = np.random.default_rng(seed)
    files = brown_fileids(num_files)
    texts = {fileid: _brown_text(rng, sentences_per_file) for fileid, _ in files}
    cats = "".join(f"{fileid} {category}\n" for fileid, category in files)
    contents = "".join(f"{fileid}\t{category}\t{texts[fileid].count(chr(9))} sentences\n" for fileid, category in files)
    readme = (
        "Synthetic look-alike of the Brown Corpus (NLTK's brown.zip layout), generated by\n"
        f"text_recognizer.data.synthetic.write_brown_corpus(seed={seed}). It is not the Brown Corpus:\n"
        "sentences come from a small grammar over a built-in vocabulary, tagged with Brown's tags,\n"
        "so that the pipeline can run without network access.\n"
    )
    path = Path(path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(_zip_info("brown/", zipfile.ZIP_STORED), b"")
        entries = [("CONTENTS", contents), ("README", readme), ("cats.txt", cats)] + [
            (fileid, texts[fileid]) for fileid, _ in files
        ]
        for name, text in sorted(entries, key=lambda entry: entry[0].lower()):
            archive.writestr(_zip_info(f"brown/{name}", zipfile.ZIP_DEFLATED), text.encode("ascii"), compresslevel=9)
    return file_digest(path, "sha256")


def main(argv: list[str]) -> None:
    """python -m text_recognizer.data.synthetic OUT_DIR: write gzip.zip and brown.zip for a look."""
    if len(argv) != 1:
        print("usage: python -m text_recognizer.data.synthetic OUT_DIR", file=sys.stderr)
        raise SystemExit(2)
    out_dir = Path(argv[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    digests = write_emnist_archive(out_dir / "gzip.zip", train_per_class=300, test_per_class=50, seed=0, pen_share=0.0)
    print(f"{out_dir / 'gzip.zip'}  md5 {digests['md5']}")
    for name, digest in digests["sha256"].items():
        print(f"  {name}  sha256 {digest}")
    print(f"{out_dir / 'brown.zip'}  sha256 {write_brown_corpus(out_dir / 'brown.zip', seed=0)}")


if __name__ == "__main__":
    main(sys.argv[1:])
