"""Touching letters cut by over-segmenting and grouping (text_recognizer/reading/cutting.py), with stand-in readers
whose verdicts are known, so that each test checks the grouping rather than a model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from text_recognizer.reading import cutting
from text_recognizer.reading.normalize import Glyph

HEIGHT = 40


def joined_letters(widths: list[int], bridge: int = 6) -> Glyph:
    """Full-height blocks (the letters) joined at mid-height by thin bridges: one connected glyph."""
    parts = []
    for k, width in enumerate(widths):
        if k:
            link = np.zeros((HEIGHT, bridge), np.float32)
            link[HEIGHT // 2 - 1 : HEIGHT // 2 + 2] = 1.0
            parts.append(link)
        parts.append(np.ones((HEIGHT, width), np.float32))
    ink = np.hstack(parts)
    return Glyph(0, HEIGHT, 0, ink.shape[1], ink)


def block_count(ink: np.ndarray) -> int:
    """How many separate full-height blocks a piece holds (runs of tall columns)."""
    tall = (ink > 0.5).sum(axis=0) > HEIGHT // 2
    return int(tall[0]) + int(np.count_nonzero(tall[1:] & ~tall[:-1]))


def one_block_reader(inks: list[np.ndarray]) -> np.ndarray:
    """A reader sure of a piece holding exactly one block and unsure of anything else."""
    return np.array([0.0 if block_count(ink) == 1 else -3.0 for ink in inks])


@pytest.mark.parametrize("widths", [[14, 14, 14], [10, 22], [12, 18, 12, 16]], ids=["3 letters", "2", "4"])
def test_touching_letters_are_cut_into_the_pieces_a_reader_reads_as_one_character(widths):
    glyph = joined_letters(widths)
    (pieces,) = cutting.cut_touching([glyph], one_block_reader)
    assert [block_count(p.ink) for p in pieces] == [1] * len(widths)
    left = 0
    for width, found in zip(widths, pieces, strict=True):  # each piece holds its own block, cut in the bridge
        assert found.left <= left and found.right >= left + width, (left, found.left, found.right)
        left += width + 6
    assert [p.left for p in pieces] == sorted(p.left for p in pieces)
    assert all(b.left >= a.right - 1 for a, b in itertools.pairwise(pieces))  # no column read twice


def test_a_wide_glyph_stays_whole_when_the_reader_cannot_tell():
    """The whole glyph pays no width prior, so with every piece read alike it is not cut."""
    glyph = joined_letters([17, 17])  # one letter height wide: it may be one letter ("m")
    (pieces,) = cutting.cut_touching([glyph], lambda inks: np.full(len(inks), -1.0))
    assert [(p.left, p.right) for p in pieces] == [(0, glyph.width)]


def test_the_width_prior_prefers_letter_sized_pieces_among_equally_read_cuts():
    """A reader that reads any piece of the glyph as one character (a plain bar): the whole glyph is read worse than
    its parts, so it is cut, and into pieces near LETTER_WIDTH heights rather than the narrowest allowed."""
    ink = np.ones((HEIGHT, 3 * HEIGHT // 2), np.float32)  # 1.5 letter heights wide
    glyph = Glyph(0, HEIGHT, 0, ink.shape[1], ink)
    (pieces,) = cutting.cut_touching([glyph], lambda inks: np.array([-5.0 if i.shape[1] == ink.shape[1] else 0.0
                                                                     for i in inks]))  # fmt: skip
    assert len(pieces) == 3
    assert all(abs(p.width / HEIGHT - cutting.LETTER_WIDTH) <= cutting.CUT_STEP for p in pieces)


def test_a_glyph_wider_than_any_letter_is_always_cut():
    glyph = joined_letters([30, 30])  # 1.65 letter heights
    (pieces,) = cutting.cut_touching([glyph], lambda inks: np.full(len(inks), -1.0))
    assert len(pieces) >= 2 and all(p.width <= cutting.MAX_PIECE * HEIGHT for p in pieces)


def test_narrow_glyphs_go_to_no_reader_and_a_line_is_scored_in_one_call():
    narrow = [Glyph(0, HEIGHT, x, x + 20, np.ones((HEIGHT, 20), np.float32)) for x in (0, 30, 60)]
    calls: list[int] = []

    def counting_reader(inks: list[np.ndarray]) -> np.ndarray:
        calls.append(len(inks))
        return one_block_reader(inks)

    assert cutting.cut_touching(narrow, counting_reader) == [[g] for g in narrow]
    assert calls == []
    wide = [joined_letters([14, 14]), *narrow, joined_letters([12, 12, 12])]
    grouped = cutting.cut_touching(wide, counting_reader)
    assert [len(pieces) for pieces in grouped] == [2, 1, 1, 1, 3]
    assert len(calls) == 1 and calls[0] > 10  # every candidate piece of both wide glyphs, in one batch
