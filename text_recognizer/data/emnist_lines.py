"""EMNISTLines: lines of handwriting synthesised from Brown-corpus phrases and EMNIST glyphs.

Each character of a phrase is drawn as a random EMNIST glyph of its class (a space is an
empty 28-px cell); neighbours overlap by a random fraction of the glyph width, so the model
sees touching and crowded letters as in real handwriting. Glyphs combine with a saturating
maximum (`np.maximum`): where two strokes cross, the brighter one wins, so two 255 strokes
stay 255. A sum would wrap around in uint8 (255 + 255 = 254) and, even widened and
clipped, would make crossings brighter than any stroke, which real ink never does.

Train lines use only train glyphs, val lines only val glyphs, test lines only test glyphs,
so no test glyph is ever seen in training; likewise each split's phrases come only from its
own Brown documents (sentences.split_documents), so no test text is either. The file layout
is in docs/architecture.md.

    python -m text_recognizer.data.emnist_lines data/processed/emnist_lines.h5 [--grid lines.png]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from text_recognizer.data.emnist import SPLITS, check_lines_source, check_mapping
from text_recognizer.data.sentences import (
    TextPools,
    load_text_pools,
    random_strings,
    sample_phrases,
    write_pool_text,
)
from text_recognizer.errors import InputError
from text_recognizer.io import atomic_path, require_file
from text_recognizer.metadata import (
    CHAR_TO_LINE_INDEX,
    FIRST_CLASS_INDEX,
    GLYPH_SIZE,
    LINE_TOKENS,
    NUM_EMNIST_CLASSES,
    PAD_INDEX,
    SPACE_INDEX,
    line_width,
)
from text_recognizer.params import EmnistLinesParams, ParamError, from_dict

CHUNK_LINES = 1024  # lines rendered and written at a time: bounds memory (1024 x 28 x 896 B = 26 MB)
_RENDER_BLOCK = 256  # lines composited at a time inside render_lines, to stay in cache
_COMPRESSION: dict[str, Any] = {"compression": "gzip", "compression_opts": 4}
_GLYPH_ROW = np.dtype((np.void, GLYPH_SIZE))  # one row of a glyph, moved as a single item
RANDOM_TEXT_STREAM = 1  # seeds the made-up train lines' generator beside emnist_lines.seed
_IMAGE_CHUNK_BYTES = 1 << 19  # HDF5 chunks of about 0.5 MB: inside h5py's default 1 MB chunk cache

# Byte -> line token; 255 marks characters that have no token.
_CHAR_LUT = np.full(256, 255, dtype=np.uint8)
for _char, _index in CHAR_TO_LINE_INDEX.items():
    _CHAR_LUT[ord(_char)] = _index


# --- labels ----------------------------------------------------------------------------------


def encode_texts(texts: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels (M, max_length) uint8 indices into LINE_TOKENS padded with PAD_INDEX, lengths (M,) int32)."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    labels = np.full((len(texts), max_length), PAD_INDEX, dtype=np.uint8)
    lengths = np.zeros(len(texts), dtype=np.int32)
    for i, text in enumerate(texts):
        if len(text) > max_length:
            raise ValueError(f"text {i} is longer than max_length={max_length}: {text!r}")
        tokens = _CHAR_LUT[np.frombuffer(text.encode("ascii", errors="replace"), dtype=np.uint8)]
        if not text.isascii() or (tokens == 255).any():
            bad = sorted({c for c in text if c not in CHAR_TO_LINE_INDEX})
            raise ValueError(f"text {i} has characters outside LINE_CHARSET {bad}: {text!r}")
        labels[i, : len(text)] = tokens
        lengths[i] = len(text)
    return labels, lengths


def decode_labels(row: np.ndarray) -> str:
    """The text of one label row: tokens up to the first PAD_INDEX."""
    out = []
    for token in np.asarray(row).tolist():
        if token == PAD_INDEX:
            break
        if not (PAD_INDEX < token < len(LINE_TOKENS)):
            raise ValueError(f"label {token} is not a character token (row {np.asarray(row).tolist()})")
        out.append(LINE_TOKENS[token])
    return "".join(out)


# --- rendering -------------------------------------------------------------------------------


def draw_layout(
    labels: np.ndarray,
    lengths: np.ndarray,
    glyph_labels: np.ndarray,
    *,
    min_overlap: float,
    max_overlap: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Choose a glyph for each character and an x offset for each position.

    Returns glyph_index (M, L) int64, the pool row of each character's glyph (-1 for space
    and padding), and x (M, L) int64: x[:, 0] = 0, x[:, k] = x[:, k - 1] + round(28 * (1 -
    overlap)) with one overlap per neighbour pair, uniform in [min_overlap, max_overlap].
    The glyph of each character is uniform among the pool's glyphs of its class, drawn for
    all characters at once (rng.integers with one upper bound per character).
    """
    labels = np.asarray(labels)
    lengths = np.asarray(lengths)
    glyph_labels = np.asarray(glyph_labels)
    if labels.ndim != 2 or lengths.shape != labels.shape[:1]:
        raise ValueError(f"labels must be (M, L) and lengths (M,), got {labels.shape} and {lengths.shape}")
    if not 0.0 <= min_overlap <= max_overlap < 1.0:
        raise ValueError(f"need 0 <= min_overlap <= max_overlap < 1, got {min_overlap}, {max_overlap}")
    num_lines, max_length = labels.shape
    if num_lines and (lengths.min() < 0 or lengths.max() > max_length):
        raise ValueError(f"lengths must be in 0..{max_length}")
    if glyph_labels.ndim != 1 or (
        glyph_labels.size and (glyph_labels.min() < 0 or glyph_labels.max() >= NUM_EMNIST_CLASSES)
    ):
        raise ValueError("glyph_labels must be a 1-d array of EMNIST classes 0..61")

    in_text = np.arange(max_length) < lengths[:, None]
    tokens = labels.astype(np.int64)
    if ((tokens[in_text] <= PAD_INDEX) | (tokens[in_text] > SPACE_INDEX)).any():
        raise ValueError("labels hold a blank, pad or unknown token inside the text")
    is_glyph = in_text & (tokens != SPACE_INDEX)

    classes = tokens[is_glyph] - FIRST_CLASS_INDEX  # EMNIST class of each drawn character
    counts = np.bincount(glyph_labels.astype(np.int64), minlength=NUM_EMNIST_CLASSES)
    missing = np.unique(classes[counts[classes] == 0])
    if missing.size:
        chars = "".join(LINE_TOKENS[c + FIRST_CLASS_INDEX] for c in missing.tolist())
        raise ValueError(f"the glyph pool has no glyph of class(es) {chars!r} that the text needs")
    by_class = np.argsort(glyph_labels, kind="stable")  # pool rows grouped by class
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    glyph_index = np.full((num_lines, max_length), -1, dtype=np.int64)
    glyph_index[is_glyph] = by_class[first[classes] + rng.integers(0, counts[classes])]

    overlap = rng.uniform(min_overlap, max_overlap, size=(num_lines, max(max_length - 1, 0)))
    steps = np.rint(GLYPH_SIZE * (1.0 - overlap)).astype(np.int64)
    x = np.zeros((num_lines, max_length), dtype=np.int64)
    np.cumsum(steps, axis=1, out=x[:, 1:])
    return glyph_index, x


def composite(glyph_index: np.ndarray, x: np.ndarray, glyphs: np.ndarray) -> np.ndarray:
    """Line images (M, 28, 28 * L) uint8: glyph_index[i, k] drawn at column x[i, k], saturating max.

    Vectorised, no loop per glyph: positions are split into D layers (k mod D) such that no
    two glyphs of a layer overlap (D = ceil(28 / smallest step)). Layer 0 goes into the
    zeroed images with one fancy assignment; each later layer reads its windows, takes
    np.maximum with its glyphs and writes them back, again one call each. Glyph rows are
    moved as single 28-byte items (see _row_windows), and lines are done in blocks of 256
    to stay in cache.
    """
    num_lines, max_length = glyph_index.shape
    images = np.zeros((num_lines, GLYPH_SIZE, line_width(max_length)), dtype=np.uint8)
    if num_lines == 0:
        return images
    steps = np.diff(x, axis=1)
    if (x[:, 0] != 0).any() or (steps < 0).any() or (steps > GLYPH_SIZE).any():
        raise ValueError("x must start at 0 and grow by 0..28 per position")
    glyphs = np.ascontiguousarray(glyphs, dtype=np.uint8)
    min_step = int(steps.min()) if steps.size else GLYPH_SIZE
    layers = max_length if min_step == 0 else min(max_length, -(-GLYPH_SIZE // min_step))
    for start in range(0, num_lines, _RENDER_BLOCK):
        stop = min(start + _RENDER_BLOCK, num_lines)
        windows = _row_windows(images[start:stop])
        block_index, block_x = glyph_index[start:stop], x[start:stop]
        for layer in range(layers):
            line, pos = np.nonzero(block_index[:, layer::layers] >= 0)
            if line.size == 0:
                continue
            pos = pos * layers + layer
            where = (line, block_x[line, pos])
            ink = np.take(glyphs, block_index[line, pos], axis=0)
            if layer > 0:
                np.maximum(ink, windows[where].view(np.uint8).reshape(ink.shape), out=ink)
            windows[where] = ink.view(_GLYPH_ROW).reshape(len(ink), GLYPH_SIZE)
    return images


def _row_windows(block: np.ndarray) -> np.ndarray:
    """A writable view (n, W - 27, 28) of 28-byte items: [i, c, y] is row y of the 28x28 window at column c of line i.

    Fancy indexing [line, column] then moves whole glyphs as 28 row items each, about 1.5x
    faster than indexing a 28x28 uint8 window, where numpy loops over the 28 rows itself.
    """
    n, height, width = block.shape
    return np.ndarray(
        shape=(n, width - GLYPH_SIZE + 1, height),
        dtype=_GLYPH_ROW,
        buffer=block,
        strides=(height * width, 1, width),
    )


def render_lines(
    labels: np.ndarray,
    lengths: np.ndarray,
    glyphs: np.ndarray,
    glyph_labels: np.ndarray,
    *,
    min_overlap: float,
    max_overlap: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw lines of text with glyphs from a pool: (images (M, 28, 28 * L) uint8, glyph_index (M, L) int64).

    Pure: the output depends only on the arguments and the state of `rng`. `glyphs` is the
    pool (G, 28, 28) uint8 with EMNIST classes `glyph_labels` (G,); glyph_index holds pool
    rows (-1 for space and padding). Lines are left-aligned; see draw_layout and composite.
    """
    images, glyph_index, _ = _render(labels, lengths, glyphs, glyph_labels, min_overlap, max_overlap, rng)
    return images, glyph_index


def _render(
    labels: np.ndarray,
    lengths: np.ndarray,
    glyphs: np.ndarray,
    glyph_labels: np.ndarray,
    min_overlap: float,
    max_overlap: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """render_lines, plus the x offset of each position (M, L): kept in the file, so that what reads
    these lines later can measure the pitch they were drawn at (drawn_statistics)."""
    glyphs = np.asarray(glyphs)
    if glyphs.ndim != 3 or glyphs.shape[1:] != (GLYPH_SIZE, GLYPH_SIZE) or glyphs.dtype != np.uint8:
        raise ValueError(f"glyphs must be (G, 28, 28) uint8, got {glyphs.shape} {glyphs.dtype}")
    if len(glyphs) != len(glyph_labels):
        raise ValueError(f"{len(glyphs)} glyphs but {len(glyph_labels)} glyph labels")
    glyph_index, x = draw_layout(
        labels, lengths, glyph_labels, min_overlap=min_overlap, max_overlap=max_overlap, rng=rng
    )
    return composite(glyph_index, x, glyphs), glyph_index, x


# --- the HDF5 file ---------------------------------------------------------------------------


def _check_pools(pools: TextPools, sizes: dict[str, int]) -> None:
    """A split that needs lines needs text: fail naming the fraction that left its pool empty."""
    keys = {"train": "text_val_fraction + text_test_fraction", "val": "text_val_fraction",
            "test": "text_test_fraction"}  # fmt: skip
    for split in SPLITS:
        if sizes[split] and not pools.text(split):
            raise ParamError(
                f"emnist_lines.{keys[split]} leaves the {split} text pool with {len(pools.fileids[split])} "
                f"document(s) and no words, but emnist_lines.num_{split}={sizes[split]} lines need phrases "
                f"(the corpus has {sum(len(ids) for ids in pools.fileids.values())} documents)"
            )


def split_rngs(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per split, so that changing num_train leaves val and test as they were."""
    return dict(zip(SPLITS, np.random.default_rng(seed).spawn(len(SPLITS)), strict=True))


def _create(group: h5py.Group, name: str, shape: tuple[int, ...], dtype: Any, chunk_rows: int) -> h5py.Dataset:
    """A dataset with fixed chunks, deterministic compression and no timestamps (same inputs, same bytes)."""
    if shape[0] == 0:
        return group.create_dataset(name, shape=shape, dtype=dtype, track_times=False)
    chunks = (min(shape[0], chunk_rows), *shape[1:])
    return group.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, track_times=False, **_COMPRESSION)


def _read_pool(src: h5py.File, split: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if split not in src or "images" not in src[split] or "labels" not in src[split]:
        raise InputError(f"{path}: no {split}/images and {split}/labels (see docs/architecture.md)")
    images, labels = src[split]["images"][()], src[split]["labels"][()]
    if images.ndim != 3 or images.shape[1:] != (GLYPH_SIZE, GLYPH_SIZE) or images.dtype != np.uint8:
        raise InputError(f"{path}: {split}/images must be (N, 28, 28) uint8, got {images.shape} {images.dtype}")
    if labels.shape != images.shape[:1] or (labels.size and labels.max() >= NUM_EMNIST_CLASSES):
        raise InputError(f"{path}: {split}/labels must be (N,) classes 0..61")
    return images, labels


def build_emnist_lines(
    emnist_h5: str | os.PathLike[str],
    brown_zip: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    max_length: int,
    min_overlap: float,
    max_overlap: float,
    num_train: int,
    num_val: int,
    num_test: int,
    seed: int,
    text_val_fraction: float,
    text_test_fraction: float,
    text_seed: int,
    random_text_share: float,
    train_text_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write emnist_lines.h5 atomically (layout in docs/architecture.md); return its per-split figures.

    Parameters are checked (as the emnist_lines section of params.yaml) before anything is read
    or written; the values are params.yaml's, which has no defaults here. The Brown documents are
    dealt into text pools (text_*_fraction, text_seed); each split samples its phrases from
    its own pool and draws its lines from its own glyph pool, with its own child of
    np.random.default_rng(seed), CHUNK_LINES lines at a time. train_text_path, if given,
    receives the train pool's text (write_pool_text), the only text a language model may
    learn from. Same inputs and parameters give byte-identical files. Memory: the split's
    glyph pool (about 0.5 GB for ByClass train) plus one chunk.

    Returns {"lines": {split: n} (train: prose and made-up lines), "documents": {split: n}, "words": {split: n}}.
    """
    given = {"max_length": max_length, "min_overlap": min_overlap, "max_overlap": max_overlap,
             "num_train": num_train, "num_val": num_val, "num_test": num_test, "seed": seed,
             "text_val_fraction": text_val_fraction, "text_test_fraction": text_test_fraction,
             "text_seed": text_seed, "random_text_share": random_text_share}  # fmt: skip
    params = from_dict(EmnistLinesParams, "emnist_lines", given)
    emnist_h5, out_path = require_file(emnist_h5, made_by="emnist_hdf5"), Path(out_path)
    pools = load_text_pools(
        brown_zip, val_fraction=params.text_val_fraction, test_fraction=params.text_test_fraction, seed=params.text_seed
    )
    sizes = {"train": params.num_train, "val": params.num_val, "test": params.num_test}
    _check_pools(pools, sizes)
    rngs = split_rngs(params.seed)
    encoded = _encode_phrases(pools, sizes, params, rngs)
    with h5py.File(emnist_h5, "r") as src, atomic_path(out_path, suffix=".h5") as tmp:
        check_lines_source(src)
        with h5py.File(tmp, "w", libver="earliest") as dst:
            _write_attrs(dst, params, pools)
            for split in SPLITS:
                pool = _read_pool(src, split, emnist_h5) if sizes[split] else (None, None)
                _write_split(dst, split, encoded[split], pool, params, rngs[split], progress=progress)
    if train_text_path is not None:
        write_pool_text(train_text_path, pools, "train")
    return {"lines": {split: len(encoded[split][1]) for split in SPLITS}, **pools.counts()}


def _encode_phrases(
    pools: TextPools, sizes: dict[str, int], params: EmnistLinesParams, rngs: dict[str, np.random.Generator]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every split's phrases, sampled and encoded before any output: each split's generator then goes on to
    draw its layouts, so a split's lines depend on its phrases and its own generator only.

    The train split then gets round(random_text_share * num_train) lines of made-up words after its
    prose lines (sentences.random_strings, from a generator of their own), so the prose texts stay
    as they were: replacing prose instead cost the generated test lines a third more errors (beam
    CER 0.0062 against 0.0044, offline). Val and test stay Brown prose: the decoder is picked for, and
    the test CER measures, the text the language model knows; benchmarks/real_handwriting.py
    measures digit strings.
    """
    encoded = {}
    for split in SPLITS:
        n = sizes[split]
        phrases = sample_phrases(pools.text(split), n, params.max_length, rngs[split]) if n else []
        if split == "train" and n:
            made_up = np.random.default_rng([params.seed, RANDOM_TEXT_STREAM])
            phrases += random_strings(round(params.random_text_share * n), params.max_length, made_up)
        encoded[split] = encode_texts(phrases, params.max_length)
    return encoded


def _write_attrs(dst: h5py.File, params: EmnistLinesParams, pools: TextPools) -> None:
    """The file's attributes: the parameters it was drawn with and the documents of each text pool, so that
    a reader can tell how the lines were made (and which text no model may have learned from)."""
    dst.attrs["mapping"] = json.dumps(list(LINE_TOKENS))
    dst.attrs["max_length"] = int(params.max_length)
    dst.attrs["min_overlap"] = float(params.min_overlap)
    dst.attrs["max_overlap"] = float(params.max_overlap)
    dst.attrs["seed"] = int(params.seed)
    dst.attrs["text_val_fraction"] = params.text_val_fraction
    dst.attrs["text_test_fraction"] = params.text_test_fraction
    dst.attrs["text_seed"] = params.text_seed
    dst.attrs["random_text_share"] = params.random_text_share
    dst.attrs["text_pool_documents"] = json.dumps(pools.counts()["documents"])
    dst.attrs["text_pool_fileids"] = json.dumps({k: list(v) for k, v in pools.fileids.items()})


def _write_split(
    dst: h5py.File,
    split: str,
    encoded: tuple[np.ndarray, np.ndarray],
    pool: tuple[np.ndarray, np.ndarray] | tuple[None, None],
    params: EmnistLinesParams,
    rng: np.random.Generator,
    *,
    progress: bool,
) -> None:
    """One split's group: its labels and lengths, then its lines drawn from its glyph `pool` with its own `rng`,
    CHUNK_LINES at a time, so that memory holds one chunk of images and never the whole split."""
    labels, lengths = encoded
    count = len(labels)  # one line per sampled phrase
    glyphs, glyph_labels = pool
    group = dst.create_group(split)
    group.create_dataset("labels", data=labels, track_times=False)
    group.create_dataset("lengths", data=lengths, track_times=False)
    width = line_width(params.max_length)
    image_rows = max(1, _IMAGE_CHUNK_BYTES // (GLYPH_SIZE * width))
    images_ds = _create(group, "images", (count, GLYPH_SIZE, width), np.uint8, image_rows)
    index_ds = _create(group, "glyph_index", (count, params.max_length), np.int64, 4096)
    x_ds = _create(group, "glyph_x", (count, params.max_length), np.int32, 4096)
    chunks = range(0, count, CHUNK_LINES)
    for start in tqdm(chunks, desc=f"emnist_lines {split}", unit="chunk", disable=not progress):
        stop = min(start + CHUNK_LINES, count)
        images, glyph_index, x = _render(
            labels[start:stop], lengths[start:stop], glyphs, glyph_labels, params.min_overlap, params.max_overlap, rng
        )
        images_ds[start:stop] = images
        index_ds[start:stop] = glyph_index
        x_ds[start:stop] = x


# --- looking at it ---------------------------------------------------------------------------


def save_sample_grid(
    lines_h5: str | os.PathLike[str], png_path: str | os.PathLike[str], *, split: str = "test", n: int = 8
) -> None:
    """Write a PNG of the first n lines of a split, each under its text: the first thing to look at.

    Ink is drawn dark on white (as on paper); the title is the label, so a mismatch between
    picture and label is visible at a glance. Written atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lines_h5 = Path(lines_h5)
    with h5py.File(lines_h5, "r") as f:
        check_mapping(f, LINE_TOKENS)
        if split not in f:
            raise InputError(f"{lines_h5}: no split {split!r}")
        count = min(n, len(f[split]["images"]))
        if count <= 0:
            raise InputError(f"{lines_h5}: split {split!r} has no lines to show (n={n})")
        images = f[split]["images"][:count]
        texts = [decode_labels(row) for row in f[split]["labels"][:count]]

    height_px, width_px = images.shape[1:]
    fig_width = 12.0
    row_height = fig_width * height_px / width_px + 0.35  # image plus room for its title
    fig = Figure(figsize=(fig_width, row_height * count + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"{lines_h5.name}: {split} lines", fontsize=12)
    for i, (image, text) in enumerate(zip(images, texts, strict=True)):
        ax = fig.add_subplot(count, 1, i + 1)
        ax.imshow(255 - image, cmap="gray", vmin=0, vmax=255, interpolation="nearest", aspect="equal")
        ax.set_title(f"{text!r}  ({len(text)} characters)", loc="left", fontsize=11, family="monospace")
        ax.set_xticks([])
        ax.set_yticks([])
    with atomic_path(png_path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})


def lines_stats(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Per split: number of lines, mean text length, ink fraction and pixel mean/max, read in chunks."""
    path = Path(path)
    stats: dict[str, dict[str, Any]] = {}
    with h5py.File(path, "r") as f:
        check_mapping(f, LINE_TOKENS)
        for split in SPLITS:
            if split not in f:
                continue
            images = f[split]["images"]
            total, ink, peak = 0, 0, 0
            for start in range(0, len(images), CHUNK_LINES):
                block = images[start : start + CHUNK_LINES]
                total += int(block.sum(dtype=np.int64))
                ink += int(np.count_nonzero(block))
                peak = max(peak, int(block.max()))
            pixels = max(images.size, 1)
            lengths = f[split]["lengths"][()]
            stats[split] = {
                "lines": len(images),
                "shape": tuple(images.shape),
                "mean_length": float(lengths.mean()) if lengths.size else 0.0,
                "ink_fraction": ink / pixels,
                "pixel_mean": total / pixels,
                "pixel_max": peak,
            }
    return stats


INK_LEVEL = 128  # a pixel at or above this is ink when measuring strokes and boxes (the glyphs' own midpoint)


def ink_measures(images: np.ndarray) -> dict[str, float]:
    """Median ink-box height and longest side, and mean stroke width, of (N, H, W) uint8 white-on-black images.

    Stroke width is 2 * area / boundary of the ink (a long stroke of width w gives w), the boundary
    counted as ink pixels' edges that touch paper; empty images are skipped.
    """
    ink = np.asarray(images) >= INK_LEVEL
    rows, cols = ink.any(axis=2), ink.any(axis=1)
    keep = rows.any(axis=1)
    if not keep.any():
        raise ValueError("no ink in any image: nothing to measure")
    ink, rows, cols = ink[keep], rows[keep], cols[keep]

    def extent(mask: np.ndarray) -> np.ndarray:  # last ink index - first + 1, per image
        first = mask.argmax(axis=1)
        last = mask.shape[1] - 1 - mask[:, ::-1].argmax(axis=1)
        return last - first + 1

    height, width = extent(rows), extent(cols)
    padded = np.pad(ink, ((0, 0), (1, 1), (1, 1)))
    edges = sum(
        np.count_nonzero(padded[:, 1:-1, 1:-1] & ~np.roll(padded, shift, axis)[:, 1:-1, 1:-1])
        for axis in (1, 2)
        for shift in (1, -1)
    )
    return {
        "ink_height": float(np.median(height)),
        "ink_box": float(np.median(np.maximum(height, width))),
        "stroke_width": float(2 * np.count_nonzero(ink) / max(edges, 1)),
    }


def drawn_statistics(path: str | os.PathLike[str], split: str = "train", max_lines: int = 2048) -> dict[str, float]:
    """How the lines of one split were drawn, measured from the file: what a reader must reproduce.

    pitch: the mean step between neighbouring positions (glyph_x); ink_height: the median height
    of a line's ink, which for EMNIST-style glyphs is the box they were fitted into; stroke_width:
    the ink's mean stroke width; plus the overlaps the file was drawn with. The first `max_lines`
    lines are measured (the layout is random per line, so they are a fair sample).
    """
    with h5py.File(path, "r") as f:
        group = f[split]
        count = min(max_lines, len(group["images"]))
        if count == 0:
            raise ValueError(f"{path}: split {split!r} has no lines to measure")
        lengths = group["lengths"][:count]
        measured = ink_measures(group["images"][:count])
        stats = {"ink_height": measured["ink_height"], "stroke_width": measured["stroke_width"]}
        stats.update({k: float(f.attrs[k]) for k in ("min_overlap", "max_overlap") if k in f.attrs})
        if "glyph_x" in group:
            x = group["glyph_x"][:count].astype(np.int64)
            inside = np.arange(1, x.shape[1]) < lengths[:, None]  # step k -> k+1 lies within the text
            steps = np.diff(x, axis=1)[inside]
            if steps.size:
                stats["pitch"] = float(steps.mean())
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print split sizes and pixel stats of an emnist_lines.h5 file.")
    parser.add_argument("path", type=Path)
    parser.add_argument("--grid", type=Path, help="also write a PNG grid of sample test lines here")
    args = parser.parse_args(argv)
    with h5py.File(args.path, "r") as f:
        keys = ("max_length", "min_overlap", "max_overlap", "seed", "text_seed", "text_pool_documents")
        attrs = {k: f.attrs[k] for k in keys if k in f.attrs}
    print(f"{args.path}: " + ", ".join(f"{k}={v}" for k, v in attrs.items()))
    for split, s in lines_stats(args.path).items():
        print(
            f"  {split:5s} {s['lines']:7d} lines {s['shape']}  mean length {s['mean_length']:.1f}  "
            f"ink {s['ink_fraction']:.3f}  pixel mean {s['pixel_mean']:.2f} max {s['pixel_max']}"
        )
    if args.grid:
        save_sample_grid(args.path, args.grid)
        print(f"  sample grid: {args.grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
