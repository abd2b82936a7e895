"""The step arithmetic of reading a line with CTC, in one place: the data modules, the LineCNN, the CTC
helpers and the params checks all count with these functions.

- `output_length(s)`: the T = (W - window_width) // window_stride + 1 outputs a LineCNN gives a W-pixel line.
- `ink_extents`, `line_widths`, `crop_widths`, `crop_width`, `crop_lines`: a line's own width on the
  window lattice (its ink plus INK_MARGIN), and the columns a batch keeps so that every line's logits
  within its length are those of the full-width image (RIGHT_CONTEXT).
- `ctc_steps_needed(_rows)`, `ctc_steps_bound`: the fewest output steps CTC needs to emit a text.
- `ink_sideways_shift`: how far the augmentation of a line (slant, elastic field, stroke width) may move its
  ink along x; params.py and the loader keep it within INK_MARGIN.

No torch import: params.py checks params with these functions without loading torch. The functions of
tensors take torch tensors and use only their methods.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import numpy as np

from text_recognizer.metadata import GLYPH_SIZE, PAD_INDEX

if TYPE_CHECKING:
    import torch

# Columns past a window's right edge that still reach its output in the LineCNN backbone, the larger of its two
# stems. A half-resolution column j holds pixels 2j and 2j + 1; a 3x3 conv at half resolution reaches 2 pixels
# further, one at full resolution 1, and the stride-2 conv itself (pixels 2j - 1 .. 2j + 1) none to the right:
# "strided" 2 (its second conv) + 2 x 2 (the residual block) = 6, "full" 1 + 4 = 5. tests/test_models.py checks
# that cropping with it keeps the logits of both.
RIGHT_CONTEXT = 6
# Blank columns kept after a line's last ink column, so that its last window ends on background. The
# augmentation of lines may move ink sideways by at most this much (`ink_sideways_shift`): it then stays
# within the columns the line's CTC steps read.
INK_MARGIN = 4


# --- output steps ------------------------------------------------------------------------------------


def output_length(image_width: int, window_width: int, window_stride: int) -> int:
    """Number of windows T = (W - window_width) // window_stride + 1 that LineCNN emits for a W-pixel line."""
    if image_width < window_width:
        raise ValueError(f"line image width {image_width} is narrower than window_width {window_width}")
    return (image_width - window_width) // window_stride + 1


def output_lengths(widths: torch.Tensor, window_width: int, window_stride: int) -> torch.Tensor:
    """`output_length` of every line width in `widths` (N,) at once: the per-line CTC input lengths (N,) int64."""
    if widths.numel() and int(widths.min()) < window_width:
        raise ValueError(f"line widths must be >= window_width {window_width}, got {int(widths.min())}")
    return (widths.long() - window_width).div(window_stride, rounding_mode="floor") + 1


def line_output_steps(max_length: int, window_width: int, window_stride: int) -> int:
    """T of a full EMNISTLines line of `max_length` glyphs (GLYPH_SIZE * max_length pixels)."""
    return output_length(GLYPH_SIZE * max_length, window_width, window_stride)


# --- a line's own width, and the crop of a batch -----------------------------------------------------


def ink_sideways_shift(height: int, slant: float, elastic_alpha: float, stroke: float) -> float:
    """The most pixels a line's ink moves along x under a slant of up to `slant` degrees (a shear about the
    middle row, so the top and bottom rows move tan(slant) * height / 2), an elastic field of at most
    `elastic_alpha` pixels, and a stroke-width change (a 3x3 dilation grows ink by 1 pixel when stroke > 0)."""
    return math.tan(math.radians(slant)) * height / 2 + elastic_alpha + (1.0 if stroke > 0 else 0.0)


def ink_extents(images: torch.Tensor) -> torch.Tensor:
    """Columns up to the last one holding ink (N,) int64, 0 for a blank line; images (N, H, W) or (N, 1, H, W)."""
    columns = (images.flatten(1, -2) > 0).any(dim=1)  # (N, W): any ink in the column
    width = columns.shape[1]
    last_from_right = columns.flip(1).int().argmax(dim=1)  # (N,) 0 when the last column has ink
    return (width - last_from_right).masked_fill(~columns.any(dim=1), 0).long()


def _on_lattice(widths: torch.Tensor, window_width: int, window_stride: int) -> torch.Tensor:
    """The smallest window_width + k * window_stride >= each width: a width that whole windows tile exactly."""
    steps = (widths.long() - window_width).clamp(min=0)
    return window_width + (steps + window_stride - 1).div(window_stride, rounding_mode="floor") * window_stride


def line_widths(
    extents: torch.Tensor, image_width: int, window_width: int, window_stride: int, margin: int = INK_MARGIN
) -> torch.Tensor:
    """Each line's own width (N,): its ink extent plus `margin`, rounded up to the window lattice, <= image_width.

    Its last window then ends at least `margin` pixels past the last ink, and `output_lengths`
    of these widths are the CTC input lengths the line gets.
    """
    if image_width < window_width:
        raise ValueError(f"line image width {image_width} is narrower than window_width {window_width}")
    return _on_lattice(extents + margin, window_width, window_stride).clamp(max=image_width)


def crop_widths(widths: torch.Tensor, image_width: int, window_width: int, window_stride: int) -> torch.Tensor:
    """Columns (N,) a line of each width needs in a batch so that its logits within its length stay exact.

    Its windows read RIGHT_CONTEXT columns past its width; rounded up to the window lattice (one
    more window), never past image_width. A batch keeps the largest of its lines' crop widths.
    """
    return _on_lattice(widths + RIGHT_CONTEXT, window_width, window_stride).clamp(max=image_width)


def crop_width(widths: torch.Tensor, image_width: int, window_width: int, window_stride: int) -> int:
    """Columns a batch of lines of `widths` (B,) keeps: the largest of their `crop_widths`."""
    return int(crop_widths(widths.max().reshape(1), image_width, window_width, window_stride))


def crop_lines(
    x: torch.Tensor, window_width: int, window_stride: int, extents: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of lines (B, 1, 28, W) cut to what its lines need, and their CTC input lengths (B,) int64.

    `extents` (B,) are the lines' ink extents in pixels when known (the h5 `widths`); else they
    are read from the ink. Feed both outputs to `LineCNN(x, lengths)` and `greedy_decode`.
    """
    if extents is None:
        extents = ink_extents(x)
    widths = line_widths(extents.to(x.device), x.shape[-1], window_width, window_stride)
    lengths = output_lengths(widths, window_width, window_stride)
    return x[..., : crop_width(widths, x.shape[-1], window_width, window_stride)], lengths


# --- what CTC needs ----------------------------------------------------------------------------------


def ctc_steps_needed(labels_row_or_text: str | np.ndarray | list[int]) -> int:
    """The fewest CTC output steps that can emit this line: its length plus one per pair of equal neighbours.

    CTC collapses repeats, so "ll" can only be read as two letters with a blank between
    them: "bookkeeper" (10 characters, 3 such pairs) needs 13 steps, "aaaa" needs 7. A
    label row counts up to its first PAD_INDEX. Fewer steps than this make the line's loss
    infinite, which zero_infinity would silently turn into 0.
    """
    if isinstance(labels_row_or_text, str):
        text = labels_row_or_text
        return len(text) + sum(a == b for a, b in itertools.pairwise(text))
    row = np.asarray(labels_row_or_text)
    if row.ndim != 1:
        raise ValueError(f"expected one label row or a string, got shape {row.shape}")
    pads = np.flatnonzero(row == PAD_INDEX)
    seq = row[: pads[0]] if pads.size else row
    return int(len(seq) + np.count_nonzero(seq[1:] == seq[:-1]))


def ctc_steps_needed_rows(labels: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """ctc_steps_needed for every row of labels (M, L) with lengths (M,), vectorised: (M,) int64."""
    labels, lengths = np.asarray(labels), np.asarray(lengths)
    if labels.ndim != 2 or lengths.shape != labels.shape[:1]:
        raise ValueError(f"labels must be (M, L) and lengths (M,), got {labels.shape} and {lengths.shape}")
    both_in_text = np.arange(1, labels.shape[1]) < lengths[:, None]  # position k and k - 1 inside the text
    repeats = np.count_nonzero((labels[:, 1:] == labels[:, :-1]) & both_in_text, axis=1)
    return lengths.astype(np.int64) + repeats


def ctc_steps_bound(max_length: int) -> int:
    """The most CTC steps a line of max_length characters can need (`ctc_steps_needed` of one letter repeated):
    one per character, plus one per pair of equal neighbours, of which such a line holds at most max_length - 1."""
    return 2 * max_length - 1
