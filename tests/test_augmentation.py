"""Augmentation geometry: the warp moves ink where its parameters say, and lines keep their last glyph; its
bounds are params.yaml's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from text_recognizer.data import augmentation as augmentation_module
from text_recognizer.data.augmentation import Augmentation, augment_batch, augmentation
from text_recognizer.params import load_section

PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"
CHAR_RUN, LINE_RUN = load_section("train_cnn", PARAMS_YAML), load_section("train_line_cnn", PARAMS_YAML)
CHAR_AUGMENTATION, LINE_AUGMENTATION = augmentation(CHAR_RUN), augmentation(LINE_RUN)


def forced(monkeypatch: pytest.MonkeyPatch, u: float) -> None:
    """Make every uniform draw of augment_batch equal `u` (in [-1, 1]), so the warp is known."""

    def rand(*size, generator=None, device=None, dtype=None):
        return torch.full(size, (u + 1) / 2, device=device, dtype=dtype or torch.float32)

    monkeypatch.setattr(augmentation_module.torch, "rand", rand)


def ink_box(image: torch.Tensor, threshold: float = 0.5) -> tuple[int, int, int, int]:
    rows = torch.nonzero((image > threshold).any(dim=1)).flatten()
    cols = torch.nonzero((image > threshold).any(dim=0)).flatten()
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def test_a_two_pixel_shift_moves_the_ink_two_pixels(monkeypatch: pytest.MonkeyPatch):
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 10:14, 8:12] = 1.0
    shift_only = Augmentation(shift=(2.0, 2.0), scale=(0.0, 0.0), rotation=0.0)
    for u, moved in ((1.0, 2), (-1.0, -2), (0.5, 1)):
        forced(monkeypatch, u)
        out = augment_batch(x, torch.Generator(), shift_only)
        torch.testing.assert_close(out[0, 0], torch.roll(x[0, 0], shifts=(moved, moved), dims=(0, 1)))


def test_zoom_and_rotation_keep_the_glyph_centred_and_in_frame(monkeypatch: pytest.MonkeyPatch):
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 6:22, 12:16] = 1.0  # an upright bar through the centre
    no_shift = Augmentation(shift=(0.0, 0.0), scale=(0.1, 0.1), rotation=10.0)
    for u in (1.0, -1.0):
        forced(monkeypatch, u)
        out = augment_batch(x, torch.Generator(), no_shift)[0, 0]
        top, bottom, left, right = ink_box(out)
        assert top > 0 and bottom < 27 and left > 0 and right < 27  # nothing pushed out of the frame
        rows, cols = torch.nonzero(out > 0.5, as_tuple=True)
        assert abs(float(rows.float().mean()) - 13.5) < 0.6 and abs(float(cols.float().mean()) - 13.5) < 0.6
        assert right - left > 4  # rotated by 10 degrees: the bar now spans more columns than its 4


def test_the_line_warp_keeps_the_last_glyph_in_frame(monkeypatch: pytest.MonkeyPatch):
    line = torch.zeros(1, 1, 28, 28 * 32)
    line[0, 0, 4:24, 2:26] = 1.0  # the first glyph
    line[0, 0, 4:24, -26:-2] = 1.0  # the last glyph, against the right edge
    for u in (1.0, -1.0):
        forced(monkeypatch, u)
        out = augment_batch(line, torch.Generator(), LINE_AUGMENTATION)[0, 0]  # params.yaml's train_line_cnn
        last = out[:, -28:]
        assert float(last.sum()) >= 0.85 * float(line[0, 0, :, -28:].sum())  # squashed at most 10 %, never cut
        top, bottom, left, right = ink_box(out)
        assert left == 2 and right == out.shape[1] - 3  # no horizontal move: the columns stay where they were
        assert top > 0 and bottom < 27


def test_the_bounds_are_the_train_sections_and_augment_false_means_none():
    assert (
        Augmentation(
            shift=(CHAR_RUN.augment_shift_x, CHAR_RUN.augment_shift_y),
            scale=(CHAR_RUN.augment_scale_x, CHAR_RUN.augment_scale_y),
            rotation=CHAR_RUN.augment_rotation,
        )
        == CHAR_AUGMENTATION
    )
    assert augmentation(dataclasses.replace(CHAR_RUN, augment=False)) is None
    assert not CHAR_AUGMENTATION.keeps_columns and LINE_AUGMENTATION is not None and LINE_AUGMENTATION.keeps_columns
    warp = augmentation(dataclasses.replace(CHAR_RUN, augment_rotation=3.0, augment_shift_y=0.5))
    assert warp is not None and (warp.rotation, warp.shift[1]) == (3.0, 0.5)
