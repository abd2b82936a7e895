"""A ByClass-sized emnist.h5 in under a minute, for timing the real train_cnn stage where NIST's archive is not.

    python benchmarks/make_big_emnist.py OUT.h5 [--train 697932] [--test 116323] [--pool 200]

Rendering 800k glyphs with render_glyphs would take minutes, so a pool of `pool` glyphs per class is
rendered once and every sample is one of its class's pool glyphs at a random shift of up to 2 px
(25 x pool distinct images per class). The file is written by the pipeline's own writer: plain IDX files
under the official member names go through text_recognizer.data.emnist.build_emnist_hdf5, with
emnist_hdf5's val_fraction and seed from params.yaml, so its layout is exactly what the stage reads.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from text_recognizer.data.emnist import build_emnist_hdf5, mapping_path, official_paths
from text_recognizer.data.idx import idx_bytes, upright_to_emnist
from text_recognizer.data.synthetic import render_glyphs
from text_recognizer.metadata import GLYPH_SIZE, NUM_EMNIST_CLASSES, official_mapping_text
from text_recognizer.params import EmnistHdf5Params, from_dict, load_params

REPO = Path(__file__).resolve().parent.parent
BYCLASS_TRAIN, BYCLASS_TEST = 697_932, 116_323  # the official ByClass files' sizes
SHIFT = 2  # px, each way


def shifted_samples(pool: np.ndarray, per_class: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(images, labels) of n samples: every class about equally often, each a pool glyph at a random shift."""
    labels = rng.permutation(np.arange(n) % NUM_EMNIST_CLASSES).astype(np.uint8)
    source = labels.astype(np.int64) * per_class + rng.integers(0, per_class, n)  # pool is sorted by class
    padded = np.pad(pool, ((0, 0), (SHIFT, SHIFT), (SHIFT, SHIFT)))
    offset = rng.integers(0, 2 * SHIFT + 1, (n, 2))
    images = np.empty((n, GLYPH_SIZE, GLYPH_SIZE), dtype=np.uint8)
    for dy in range(2 * SHIFT + 1):  # one gather per shift, not one per sample
        for dx in range(2 * SHIFT + 1):
            rows = np.flatnonzero((offset[:, 0] == dy) & (offset[:, 1] == dx))
            images[rows] = padded[source[rows], dy : dy + GLYPH_SIZE, dx : dx + GLYPH_SIZE]
    return images, labels


def build(out: Path, train: int = BYCLASS_TRAIN, test: int = BYCLASS_TEST, pool: int = 200, seed: int = 0):
    """Write out (emnist.h5) from `train` + `test` synthetic glyphs; {split: size} as the writer returns it."""
    rng = np.random.default_rng(seed)
    glyphs = render_glyphs(np.repeat(np.arange(NUM_EMNIST_CLASSES), pool), rng)  # (62 * pool, 28, 28)
    params = from_dict(EmnistHdf5Params, "emnist_hdf5", load_params(REPO / "params.yaml").get("emnist_hdf5"))
    with tempfile.TemporaryDirectory(prefix="big_emnist_") as raw:
        for split, n in (("train", train), ("test", test)):
            images, labels = shifted_samples(glyphs, pool, n, rng)
            images_path, labels_path = official_paths(raw, "byclass")[split]
            images_path.write_bytes(idx_bytes(upright_to_emnist(images)))  # plain IDX: read_idx takes it as is
            labels_path.write_bytes(idx_bytes(labels))
            del images
        mapping_path(raw, "byclass").write_text(official_mapping_text("byclass"))
        settings = {"val_fraction": params.val_fraction, "seed": params.seed}
        return build_emnist_hdf5(raw, out, emnist_split="byclass", balance=False, **settings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=BYCLASS_TRAIN, help="glyphs in the official train file")
    parser.add_argument("--test", type=int, default=BYCLASS_TEST)
    parser.add_argument("--pool", type=int, default=200, help="rendered glyphs per class")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    sizes = build(args.out, args.train, args.test, args.pool)
    print(f"{args.out}: {sizes} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
