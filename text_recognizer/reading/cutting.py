"""Touching letters cut where a reader reads them best: over-segment, then group by dynamic programming.

Handwriting joins its letters, so one connected glyph may hold a whole word, and shape alone cannot count
its letters ("m" or "rn", "w" or "vv"). So a glyph wider than CUT_FROM letter heights is sliced every
CUT_STEP heights, and of all the ways to group those slices into pieces MIN_PIECE..MAX_PIECE heights wide
(the glyph itself is one, when it is no wider than that), the one kept has the highest sum over its pieces
of (a reader's log-confidence that the piece is one character) + (a width prior: letters are about
LETTER_WIDTH heights wide). The glyph left whole pays no width prior, so a wide single letter stays whole
unless its cut pieces read better. Measured in docs/decisions.md ("Touching letters: over-segment and group").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from text_recognizer.reading.normalize import (
    TYPICAL_QUANTILE,
    BlankImageError,
    Glyph,
    ink_box,
)

CUT_FROM = 0.8  # glyphs wider than this many letter heights may be several letters
CUT_STEP = 0.1  # candidate cuts every this many letter heights...
MIN_PIECE = 0.2  # ...grouped into pieces at least...
MAX_PIECE = 1.2  # ...and at most this many letter heights wide
LETTER_WIDTH = 0.5  # the width prior's centre, in letter heights
WIDTH_SD = 0.3  # its spread (letter heights): "i" to "m" in most hands

# Log-confidence, for each piece (its ink, float, any size), that the piece is one character.
PieceScorer = Callable[[list[np.ndarray]], np.ndarray]


def letter_height(glyphs: list[Glyph]) -> float:
    """The line's letter height: a high quantile of its glyph heights (dots and dashes pull the median)."""
    return float(np.quantile([g.height for g in glyphs], TYPICAL_QUANTILE))


def piece(glyph: Glyph, left: int, right: int) -> Glyph | None:
    """Columns left..right of a glyph, cropped to their ink; None when they hold none."""
    ink = glyph.ink[:, left:right]
    peak = float(ink.max()) if ink.size else 0.0
    if peak <= 0.0:
        return None
    try:
        top, bottom, lft, rgt = ink_box(ink / peak)
    except BlankImageError:
        return None
    return Glyph(
        glyph.top + top,
        glyph.top + bottom,
        glyph.left + left + lft,
        glyph.left + left + rgt,
        np.ascontiguousarray(ink[top:bottom, lft:rgt]),
    )


def _candidates(glyph: Glyph, height: float) -> tuple[list[int], list[tuple[int, int, Glyph]]]:
    """(the cut columns, every (first cut, last cut, piece) between them of an allowed width)."""
    step = max(1, round(CUT_STEP * height))
    cuts = [*range(0, glyph.width, step), glyph.width]
    pieces = []
    for i, left in enumerate(cuts):
        for j in range(i + 1, len(cuts)):
            width = cuts[j] - left
            if width > MAX_PIECE * height:
                break
            if width < MIN_PIECE * height and not (i == 0 and j == len(cuts) - 1):
                continue
            found = piece(glyph, left, cuts[j])
            if found is not None:
                pieces.append((i, j, found))
    return cuts, pieces


def _best_grouping(
    cuts: list[int], pieces: list[tuple[int, int, Glyph]], scores: np.ndarray, height: float
) -> list[Glyph] | None:
    """The pieces of the best-scoring path from the first cut to the last (None when no path exists)."""
    last = len(cuts) - 1
    best: dict[int, tuple[float, int, Glyph | None]] = {0: (0.0, -1, None)}
    for (i, j, found), score in sorted(zip(pieces, scores, strict=True), key=lambda p: (p[0][1], p[0][0])):
        if i not in best:
            continue
        share = (cuts[j] - cuts[i]) / height
        prior = 0.0 if (i == 0 and j == last) else -0.5 * ((share - LETTER_WIDTH) / WIDTH_SD) ** 2
        total = best[i][0] + float(score) + prior
        if j not in best or total > best[j][0]:
            best[j] = (total, i, found)
    if last not in best:
        return None
    path, at = [], last
    while at:
        _, before, found = best[at]
        path.append(found)
        at = before
    return list(reversed(path))


def cut_touching(glyphs: list[Glyph], score: PieceScorer) -> list[list[Glyph]]:
    """Each glyph as the pieces it reads best as: itself, or its touching letters (see the module's docstring).

    All candidate pieces of the line go to `score` in one call (a reader batches them).
    """
    if not glyphs:
        return []
    height = letter_height(glyphs)
    wide = {k: _candidates(g, height) for k, g in enumerate(glyphs) if g.width > CUT_FROM * height}
    flat = [found.ink for _, pieces in wide.values() for _, _, found in pieces]
    scores = np.asarray(score(flat), dtype=np.float64) if flat else np.zeros(0)
    out, used = [], 0
    for k, glyph in enumerate(glyphs):
        if k not in wide:
            out.append([glyph])
            continue
        cuts, pieces = wide[k]
        grouping = _best_grouping(cuts, pieces, scores[used : used + len(pieces)], height)
        used += len(pieces)
        out.append(grouping or [glyph])
    return out
