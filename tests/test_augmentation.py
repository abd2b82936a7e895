"""Augmentation geometry: the warp moves ink where its parameters say, and lines keep their last glyph; slant,
elastic field and stroke width do what handwriting does, in one grid_sample per batch, and off they change
nothing; the bounds are params.yaml's."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from text_recognizer.data import augmentation as augmentation_module
from text_recognizer.data.augmentation import Augmentation, augment_batch, augmentation
from text_recognizer.line_geometry import INK_MARGIN
from text_recognizer.params import load_section

PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"
CHAR_RUN, LINE_RUN = load_section("train_cnn", PARAMS_YAML), load_section("train_line_cnn", PARAMS_YAML)
CHAR_AUGMENTATION, LINE_AUGMENTATION = augmentation(CHAR_RUN), augmentation(LINE_RUN)
HANDWRITING_OFF = {"slant": 0.0, "elastic_alpha": 0.0, "elastic_sigma": 4.0, "stroke": 0.0}


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
    shift_only = Augmentation(shift=(2.0, 2.0), scale=(0.0, 0.0), rotation=0.0, **HANDWRITING_OFF)
    for u, moved in ((1.0, 2), (-1.0, -2), (0.5, 1)):
        forced(monkeypatch, u)
        out = augment_batch(x, torch.Generator(), shift_only)
        torch.testing.assert_close(out[0, 0], torch.roll(x[0, 0], shifts=(moved, moved), dims=(0, 1)))


def test_zoom_and_rotation_keep_the_glyph_centred_and_in_frame(monkeypatch: pytest.MonkeyPatch):
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 6:22, 12:16] = 1.0  # an upright bar through the centre
    no_shift = Augmentation(shift=(0.0, 0.0), scale=(0.1, 0.1), rotation=10.0, **HANDWRITING_OFF)
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
    line[0, 0, 4:24, 450:474] = 1.0  # one in the middle
    line[0, 0, 4:24, -26:-2] = 1.0  # the last glyph, against the right edge
    for u in (1.0, -1.0):
        forced(monkeypatch, u)
        out = augment_batch(line, torch.Generator(), LINE_AUGMENTATION)[0, 0]  # params.yaml's train_line_cnn
        first, middle, last = (float(out[:, c : c + 28].sum()) for c in (0, 448, out.shape[1] - 28))
        assert last >= 0.8 * float(line[0, 0, :, -28:].sum())  # squashed at most 10 %, thinned at most 10 %
        # and not cut: the end glyphs keep what a glyph inside the line keeps (the first, 2 px from the left edge,
        # may lose a fringe at the extreme draws: 1 % here)
        assert first >= 0.97 * middle and last >= 0.97 * middle
        top, bottom, left, right = ink_box(out)
        # no horizontal shift, zoom or turn; slant, elastic field and stroke move ink at most INK_MARGIN px sideways
        assert abs(left - 2) <= INK_MARGIN and right >= out.shape[1] - 3 - INK_MARGIN
        assert top > 0 and bottom < 27


def test_the_bounds_are_the_train_sections_and_augment_false_means_none():
    assert (
        Augmentation(
            shift=(CHAR_RUN.augment_shift_x, CHAR_RUN.augment_shift_y),
            scale=(CHAR_RUN.augment_scale_x, CHAR_RUN.augment_scale_y),
            rotation=CHAR_RUN.augment_rotation,
            slant=CHAR_RUN.augment_slant,
            elastic_alpha=CHAR_RUN.augment_elastic_alpha,
            elastic_sigma=CHAR_RUN.augment_elastic_sigma,
            stroke=CHAR_RUN.augment_stroke,
        )
        == CHAR_AUGMENTATION
    )
    assert augmentation(dataclasses.replace(CHAR_RUN, augment=False)) is None
    assert CHAR_AUGMENTATION is not None and CHAR_AUGMENTATION.sideways(28) == math.inf
    assert LINE_AUGMENTATION is not None and 0 < LINE_AUGMENTATION.sideways(28) <= INK_MARGIN
    warp = augmentation(dataclasses.replace(CHAR_RUN, augment_rotation=3.0, augment_shift_y=0.5, augment_slant=7.0))
    assert warp is not None and (warp.rotation, warp.shift[1], warp.slant) == (3.0, 0.5, 7.0)
    assert all(getattr(LINE_AUGMENTATION, k) > 0 for k in ("slant", "elastic_alpha", "stroke"))  # all on for lines


# --- what varies like handwriting: slant, elastic field, stroke width ---------------------------------------


def affine_only(x: torch.Tensor, generator: torch.Generator, aug: Augmentation) -> torch.Tensor:
    """augment_batch as it was before slant, elastic field and stroke width (commit fc18539), verbatim."""
    b, _, h, w = x.shape
    u = torch.rand(b, 5, generator=generator, device=x.device, dtype=torch.float32) * 2 - 1
    angle = u[:, 0] * math.radians(aug.rotation)
    zoom_x = 1 + u[:, 1] * aug.scale[0]
    zoom_y = 1 + u[:, 2] * aug.scale[1]
    shift_x, shift_y = u[:, 3] * aug.shift[0], u[:, 4] * aug.shift[1]
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=torch.float32)
    theta[:, 0, 0] = cos / zoom_x
    theta[:, 0, 1] = -sin / zoom_x * (h / w)
    theta[:, 1, 0] = sin / zoom_y * (w / h)
    theta[:, 1, 1] = cos / zoom_y
    theta[:, 0, 2] = -shift_x * 2 / w
    theta[:, 1, 2] = -shift_y * 2 / h
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.clamp_(0.0, 1.0).to(x.dtype)


def glyphs(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 1, 28, 28) blurred random strokes inside the central 20x20, as EMNIST centres its glyphs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 4:24, 4:24] = (torch.rand(n, 1, 20, 20, generator=g) > 0.7).float()
    return F.avg_pool2d(x, 3, stride=1, padding=1).gt(0.3).float()


def test_with_slant_elastic_and_stroke_off_the_batch_is_the_affine_warps_bit_for_bit():
    x = glyphs(64)
    assert CHAR_AUGMENTATION is not None
    off = dataclasses.replace(CHAR_AUGMENTATION, slant=0.0, elastic_alpha=0.0, stroke=0.0, elastic_sigma=9.0)
    for seed in (0, 1, 2):
        old, new = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        for _ in range(2):  # and the next batch too: nothing more is drawn from the stream
            assert torch.equal(augment_batch(x, new, off), affine_only(x, old, CHAR_AUGMENTATION))
        expected = affine_only(x, torch.Generator().manual_seed(seed), CHAR_AUGMENTATION)
        for on in ({"slant": 15.0}, {"elastic_alpha": 2.0}, {"stroke": 0.5}):  # each one alone changes the batch
            changed = augment_batch(x, torch.Generator().manual_seed(seed), dataclasses.replace(off, **on))
            assert (changed - expected).abs().amax() > 0.1, on


def test_slant_leans_a_vertical_bar(monkeypatch: pytest.MonkeyPatch):
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 4:24, 13:15] = 1.0  # an upright bar, 2 px wide, rows 4..23
    slant_only = Augmentation(shift=(0.0, 0.0), scale=(0.0, 0.0), rotation=0.0, **{**HANDWRITING_OFF, "slant": 15.0})
    for u in (1.0, -1.0, 0.0):
        forced(monkeypatch, u)
        out = augment_batch(x, torch.Generator(), slant_only)[0, 0]
        columns = torch.arange(28.0)
        top, bottom = (float((out[r] * columns).sum() / out[r].sum()) for r in (4, 23))  # the bar's centre column
        expected = u * math.tan(math.radians(15.0)) * (23 - 4)  # the top leans right for a positive draw
        assert top - bottom == pytest.approx(expected, abs=0.3)
        assert (top + bottom) / 2 == pytest.approx(13.5, abs=0.3)  # about the middle row: the bar stays centred


def test_the_elastic_field_moves_ink_at_most_alpha_and_keeps_its_mass():
    x = glyphs(256)
    elastic = Augmentation(
        shift=(0.0, 0.0), scale=(0.0, 0.0), rotation=0.0, **{**HANDWRITING_OFF, "elastic_alpha": 2.0}
    )
    out = augment_batch(x, torch.Generator().manual_seed(0), elastic)
    assert (out - x).abs().sum((1, 2, 3)).min() > 5  # every glyph moved
    mass, moved = x.sum((1, 2, 3)), out.sum((1, 2, 3))
    # a glyph stretched here and squeezed there (~7 % apart, 18 % at most, for these blobs), the same on average
    assert float((moved / mass - 1).abs().max()) < 0.25 and abs(float((moved / mass).mean()) - 1) < 0.02
    dot = torch.zeros(256, 1, 28, 28)
    dot[:, :, 14, 14] = 1.0
    spots = torch.nonzero(augment_batch(dot, torch.Generator().manual_seed(1), elastic)[:, 0] > 0.01)
    assert int((spots[:, 1:] - 14).abs().max()) <= 2 + 1  # alpha px, and the pixel bilinear sampling spreads to
    assert float(spots[:, 1:].float().sub(14).abs().mean()) > 0.3  # but it did move


def test_stroke_width_thickens_with_positive_draws_and_thins_with_negative(monkeypatch: pytest.MonkeyPatch):
    x = glyphs(64)
    stroke = Augmentation(shift=(0.0, 0.0), scale=(0.0, 0.0), rotation=0.0, **{**HANDWRITING_OFF, "stroke": 0.5})
    mass = x.sum((1, 2, 3))
    forced(monkeypatch, 1.0)
    thick = augment_batch(x, torch.Generator(), stroke).sum((1, 2, 3))
    forced(monkeypatch, -1.0)
    thin = augment_batch(x, torch.Generator(), stroke).sum((1, 2, 3))
    assert bool((thick > 1.1 * mass).all()) and bool((thin < 0.9 * mass).all())
    monkeypatch.undo()
    drawn = augment_batch(x, torch.Generator().manual_seed(0), stroke).sum((1, 2, 3)) / mass
    assert bool((drawn > 1.05).any()) and bool((drawn < 0.95).any())  # random draws go both ways
    assert float(drawn.min()) >= 0.5 - 1e-6 and float(drawn.max()) <= 1 + 0.5 * 9  # at most half of either


def test_a_batch_of_512_glyphs_takes_one_grid_sample(monkeypatch: pytest.MonkeyPatch):
    calls = []
    real = F.grid_sample

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(augmentation_module.F, "grid_sample", counting)
    x = glyphs(512)
    assert CHAR_AUGMENTATION is not None and CHAR_AUGMENTATION.elastic_alpha and CHAR_AUGMENTATION.stroke
    out = augment_batch(x, torch.Generator().manual_seed(0), CHAR_AUGMENTATION)  # every transform on
    assert calls == [x.shape] and out.shape == x.shape  # one warp for the whole batch, no per-sample loop


def test_the_line_augmentation_moves_ink_sideways_at_most_ink_margin():
    lines = torch.zeros(128, 1, 28, 112)
    lines[:, :, 4:24, 40:60] = 1.0
    out = augment_batch(lines, torch.Generator().manual_seed(0), LINE_AUGMENTATION)[:, 0]
    columns = (out > 1e-3).any(dim=1)  # (B, W): any ink in the column
    first = columns.int().argmax(dim=1)
    last = 111 - columns.flip(1).int().argmax(dim=1)
    assert int(first.min()) >= 40 - INK_MARGIN and int(last.max()) <= 59 + INK_MARGIN
    assert int(last.max()) >= 59 + 2  # and the draws did move it


def test_the_fast_paths_compute_the_gaussian_convolution_and_the_max_pool():
    """The elastic field's blur is two matrix products and the stroke's max-pool shifted maxima (both ~4-8x
    faster on the CPU): they must give conv2d's and max_pool2d's values, a line's blocks included."""
    g = torch.Generator().manual_seed(0)
    for width, sigma in ((28, 4.0), (300, 5.0), (128, 1.0)):
        noise = torch.rand(3, 28, width, generator=g) * 2 - 1
        k = augmentation_module._gaussian(sigma, noise.device)
        r = (k.numel() - 1) // 2
        reference = F.conv2d(noise.unsqueeze(1), k.view(1, 1, 1, -1), padding=(0, r))
        reference = F.conv2d(reference, k.view(1, 1, -1, 1), padding=(r, 0))[:, 0]
        torch.testing.assert_close(augmentation_module._blur(noise, k), reference, atol=1e-6, rtol=0)
    x = torch.rand(4, 1, 28, 60, generator=g)
    assert torch.equal(augmentation_module._max3x3(x), F.max_pool2d(x, 3, stride=1, padding=1))
