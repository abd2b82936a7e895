"""Augmentation geometry: the warp moves ink where its parameters say, and lines keep their last glyph."""

from __future__ import annotations

import pytest
import torch

from text_recognizer.data import device_loader
from text_recognizer.data.device_loader import CHAR_AUGMENTATION, LINE_AUGMENTATION, Augmentation, augment_batch


def forced(monkeypatch: pytest.MonkeyPatch, u: float) -> None:
    """Make every uniform draw of augment_batch equal `u` (in [-1, 1]), so the warp is known."""

    def rand(*size, generator=None, device=None, dtype=None):
        return torch.full(size, (u + 1) / 2, device=device, dtype=dtype or torch.float32)

    monkeypatch.setattr(device_loader.torch, "rand", rand)


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
    no_shift = Augmentation(shift=(0.0, 0.0), scale=CHAR_AUGMENTATION.scale, rotation=CHAR_AUGMENTATION.rotation)
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
        out = augment_batch(line, torch.Generator(), LINE_AUGMENTATION)[0, 0]
        last = out[:, -28:]
        assert float(last.sum()) >= 0.85 * float(line[0, 0, :, -28:].sum())  # squashed at most 10 %, never cut
        top, bottom, left, right = ink_box(out)
        assert left == 2 and right == out.shape[1] - 3  # no horizontal move: the columns stay where they were
        assert top > 0 and bottom < 27
