"""How fast does render_lines draw EMNISTLines, against a naive per-character Python loop?

    .venv/bin/python benchmarks/emnist_lines_speed.py [--lines 10000] [--max-length 32] [--repeats 3]

Both draw the same lines: random texts (lengths uniform in 1..max_length, about one space
in eight characters) with glyphs from a random pool of 62 classes x 100 uint8 glyphs. The
first naive loop does all the work per character, as the FSDL lab did: draw an overlap, pick a
glyph of the class, place it with a saturating np.maximum. The second, stricter baseline gets
the glyphs and x offsets that render_lines chose (draw_layout with the same seed) and only
places them; its output is checked to be identical. render_lines is timed in full (choosing
glyphs and overlaps included). Each is run once to warm up, then all alternate --repeats times
and the best time of each is shown.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from machine import header, print_header, random_texts

from text_recognizer.data.emnist_lines import draw_layout, encode_texts, render_lines
from text_recognizer.metadata import EMNIST_CLASSES, GLYPH_SIZE, SPACE_INDEX, line_width

MIN_OVERLAP, MAX_OVERLAP = 0.0, 0.33  # params.yaml defaults


def naive_render(glyph_index: np.ndarray, x: np.ndarray, glyphs: np.ndarray) -> np.ndarray:
    """One np.maximum per character: the obvious loop that render_lines replaces."""
    num_lines, max_length = glyph_index.shape
    images = np.zeros((num_lines, GLYPH_SIZE, line_width(max_length)), dtype=np.uint8)
    for i in range(num_lines):
        for k in range(max_length):
            g = int(glyph_index[i, k])
            if g < 0:
                continue
            col = int(x[i, k])
            window = images[i, :, col : col + GLYPH_SIZE]
            np.maximum(window, glyphs[g], out=window)
    return images


def naive_full(
    labels: np.ndarray, lengths: np.ndarray, glyphs: np.ndarray, glyph_labels: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Everything per character in Python: the FSDL-style loop (overlap, glyph choice, placement)."""
    num_lines, max_length = labels.shape
    pools = [np.flatnonzero(glyph_labels == c) for c in range(len(EMNIST_CLASSES))]
    images = np.zeros((num_lines, GLYPH_SIZE, line_width(max_length)), dtype=np.uint8)
    for i in range(num_lines):
        col = 0
        for k in range(int(lengths[i])):
            if k > 0:
                col += round(GLYPH_SIZE * (1.0 - rng.uniform(MIN_OVERLAP, MAX_OVERLAP)))
            token = int(labels[i, k])
            if token == SPACE_INDEX:
                continue
            glyph = glyphs[rng.choice(pools[token - 2])]
            window = images[i, :, col : col + GLYPH_SIZE]
            np.maximum(window, glyph, out=window)
    return images


def best_times(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Best wall time of each function; runs alternate so that both see the same machine load."""
    for fn in fns:
        fn()  # warm-up
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="emnist_lines_speed.py", description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    data_rng = np.random.default_rng(0)
    glyphs = data_rng.integers(0, 256, size=(62 * 100, GLYPH_SIZE, GLYPH_SIZE), dtype=np.uint8)
    glyph_labels = np.repeat(np.arange(62, dtype=np.uint8), 100)
    labels, lengths = encode_texts(random_texts(data_rng, args.lines, args.max_length), args.max_length)
    kwargs = {"min_overlap": MIN_OVERLAP, "max_overlap": MAX_OVERLAP}

    def vectorised() -> np.ndarray:
        return render_lines(labels, lengths, glyphs, glyph_labels, **kwargs, rng=np.random.default_rng(1))[0]

    glyph_index, x = draw_layout(labels, lengths, glyph_labels, **kwargs, rng=np.random.default_rng(1))
    assert np.array_equal(vectorised(), naive_render(glyph_index, x, glyphs)), "render_lines differs from the loop"

    print_header(header(None, None if argv is None else [parser.prog, *argv]))
    print(f"# EMNISTLines rendering: {args.lines:,} lines, max_length {args.max_length}, overlap {kwargs}")
    print(f"# {int(lengths.sum()):,} characters, {int((glyph_index >= 0).sum()):,} glyphs; best of {args.repeats}")
    t_vec, t_full, t_place = best_times(
        [
            vectorised,
            lambda: naive_full(labels, lengths, glyphs, glyph_labels, np.random.default_rng(1)),
            lambda: naive_render(glyph_index, x, glyphs),
        ],
        args.repeats,
    )
    print(f"render_lines (vectorised):          {args.lines / t_vec:10,.0f} lines/s  ({t_vec:.3f} s)")
    print(f"naive loop, all work per character: {args.lines / t_full:10,.0f} lines/s  ({t_full:.3f} s)")
    print(f"naive loop, placement only:         {args.lines / t_place:10,.0f} lines/s  ({t_place:.3f} s)")
    print(f"speed-up over the per-character loop: {t_full / t_vec:.1f}x")
    print(f"speed-up over placement alone:        {t_place / t_vec:.1f}x")


if __name__ == "__main__":
    main()
