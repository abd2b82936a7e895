"""The random augmentation applied to training batches on the device (DeviceLoader), and its bounds.

The bounds are params.yaml's (`train_cnn.augment_*`, `train_line_cnn.augment_*`): `augmentation(run)`
builds them from a train section. What varies the way handwriting varies: the pen's width (a grey-level
dilation or erosion), its slant (a shear folded into the affine matrix) and the hand's wobble (an elastic
displacement field, Simard et al. 2003, added to the affine grid), all as batched tensor ops with one
`grid_sample` per batch. Random erasing is deliberately absent: an EMNIST class often hinges on one small
stroke (i/l, O/Q, the dot of j), and blanking a patch turns those samples into label noise rather than
regularisation.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from text_recognizer.line_geometry import ink_sideways_shift
from text_recognizer.params import TrainParams


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Bounds of the random augmentation of each training image; all draws are uniform in [-bound, +bound].

    shift: max |dx|, |dy| in pixels; scale: max relative zoom along x and y; rotation: max degrees
    (applied in pixel space, so wide images stay undistorted); slant: max degrees of horizontal shear
    (positive: the top leans right); elastic_alpha: the most pixels the elastic field moves any point
    along x or y (0: off), elastic_sigma: its smoothing in pixels; stroke: max fraction of a 3x3
    dilation (positive draws) or erosion (negative draws) blended into the image.
    """

    shift: tuple[float, float]
    scale: tuple[float, float]
    rotation: float
    slant: float
    elastic_alpha: float
    elastic_sigma: float
    stroke: float

    def sideways(self, height: int) -> float:
        """The most pixels ink moves along x in a `height`-row image, for the crop of lines to their ink.

        inf under a horizontal shift, zoom or rotation: they move a whole line, or more the wider it is.
        """
        if self.shift[0] or self.scale[0] or self.rotation:
            return math.inf
        return ink_sideways_shift(height, self.slant, self.elastic_alpha, self.stroke)


def augmentation(run: TrainParams) -> Augmentation | None:
    """The augmentation a train section asks for (its `augment_*` bounds), or None when `augment` is false."""
    if not run.augment:
        return None
    return Augmentation(
        shift=(run.augment_shift_x, run.augment_shift_y),
        scale=(run.augment_scale_x, run.augment_scale_y),
        rotation=run.augment_rotation,
        slant=run.augment_slant,
        elastic_alpha=run.augment_elastic_alpha,
        elastic_sigma=run.augment_elastic_sigma,
        stroke=run.augment_stroke,
    )


def augment_batch(x: torch.Tensor, generator: torch.Generator, aug: Augmentation) -> torch.Tensor:
    """Randomly thicken or thin, shift, scale, rotate, slant and elastically distort every image of a
    (B, 1, H, W) float batch, with one `grid_sample` for the whole batch.

    The background (0, black) fills what comes in from outside the frame, so values stay in [0, 1].
    `generator` must live on x's device; seeding it makes the augmentation reproducible. The draws
    come in a fixed order (the affine's, then slant, stroke, elastic), each only when its bound is
    non-zero: with slant, stroke and elastic off the output is the affine-only warp's, bit for bit.
    """
    b, _, h, w = x.shape
    u = torch.rand(b, 5, generator=generator, device=x.device, dtype=torch.float32) * 2 - 1  # uniform in [-1, 1]
    theta = _affine(u, _slant(b, generator, x.device, aug.slant), aug, h, w)
    image = x.float()
    if aug.stroke:
        image = _stroke_width(image, generator, aug.stroke)
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    if aug.elastic_alpha:
        grid = grid + _elastic_field(b, h, w, generator, x.device, aug.elastic_alpha, aug.elastic_sigma)
    out = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.clamp_(0.0, 1.0).to(x.dtype)


def _slant(b: int, generator: torch.Generator, device: torch.device, slant: float) -> torch.Tensor | None:
    """(B,) shear factors tan(angle), angle uniform in [-slant, slant] degrees; None (no draw) when slant is 0."""
    if not slant:
        return None
    u = torch.rand(b, generator=generator, device=device, dtype=torch.float32) * 2 - 1
    return torch.tan(u * math.radians(slant))


def _affine(u: torch.Tensor, shear: torch.Tensor | None, aug: Augmentation, h: int, w: int) -> torch.Tensor:
    """(B, 2, 3) theta of affine_grid from the five uniform draws `u` (B, 5) and the shear factors, if any."""
    b = u.shape[0]
    angle = u[:, 0] * math.radians(aug.rotation)
    zoom_x = 1 + u[:, 1] * aug.scale[0]
    zoom_y = 1 + u[:, 2] * aug.scale[1]
    shift_x, shift_y = u[:, 3] * aug.shift[0], u[:, 4] * aug.shift[1]
    # theta maps output to input coordinates. Built in pixel units (rotate, then divide by the
    # zoom), then rescaled to grid_sample's [-1, 1] coordinates: theta_n = S^-1 A S, S = diag(w/2, h/2).
    cos, sin = torch.cos(angle), torch.sin(angle)
    m00, m01 = cos / zoom_x, -sin / zoom_x
    m10, m11 = sin / zoom_y, cos / zoom_y
    if shear is not None:
        # A K, K = [[1, k], [0, 1]]: output x samples the input at x + k (y - h/2), about the centre row,
        # so the top of a glyph leans right for k > 0 and its middle stays put.
        m01, m11 = m01 + m00 * shear, m11 + m10 * shear
    theta = torch.zeros(b, 2, 3, device=u.device, dtype=torch.float32)
    theta[:, 0, 0] = m00
    theta[:, 0, 1] = m01 * (h / w)
    theta[:, 1, 0] = m10 * (w / h)
    theta[:, 1, 1] = m11
    theta[:, 0, 2] = -shift_x * 2 / w  # moving the content right samples the input further left
    theta[:, 1, 2] = -shift_y * 2 / h
    return theta


def _stroke_width(x: torch.Tensor, generator: torch.Generator, stroke: float) -> torch.Tensor:
    """x with each image blended towards its 3x3 grey-level dilation (a wider pen) or erosion (a finer one).

    The blend fraction is uniform in [-stroke, stroke] per image, negative thinning. Dilation is a 3x3
    max-pool and erosion -max-pool(-x), both with the outside of the frame as background, so values stay
    in [0, 1]; one pass serves both, on x flipped in sign where the draw thins.
    """
    f = (torch.rand(x.shape[0], 1, 1, 1, generator=generator, device=x.device, dtype=torch.float32) * 2 - 1) * stroke
    sign = torch.where(f > 0, 1.0, -1.0)
    return torch.lerp(x, sign * _max3x3(sign * x), f.abs())


def _max3x3(x: torch.Tensor) -> torch.Tensor:
    """F.max_pool2d(x, 3, stride=1) over a zero border, as two passes of shifted maxima: the same values,
    ~8x faster than max_pool2d on the CPU (1-channel pooling is not vectorised there)."""
    p = F.pad(x, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(p[..., :-2, :], p[..., 1:-1, :]), p[..., 2:, :])
    return torch.maximum(torch.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])


def _gaussian(sigma: float, device: torch.device) -> torch.Tensor:
    """A normalised 1-D Gaussian kernel of radius ceil(3 sigma)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _band(k: torch.Tensor, rows: int, cols: int, offset: int) -> torch.Tensor:
    """(rows, cols) matrix with k[i - j + offset] at (i, j), 0 off k's support: a convolution as a matmul."""
    idx = torch.arange(rows, device=k.device)[:, None] - torch.arange(cols, device=k.device)[None, :] + offset
    inside = (idx >= 0) & (idx < k.numel())
    return torch.where(inside, k[idx.clamp(0, k.numel() - 1)], torch.zeros((), device=k.device))


def _blur(t: torch.Tensor, k: torch.Tensor, block: int = 128) -> torch.Tensor:
    """t (N, H, W) convolved with the symmetric kernel k along both axes, zero padded, as matrix products.

    A 1-channel conv2d is slow on the CPU (~4x these products). Along a W wider than `block` the product
    runs over blocks of `block` columns and their 2r neighbours, so a line costs O(W), not O(W^2).
    """
    r = (k.numel() - 1) // 2
    h, w = t.shape[-2:]
    if w <= block:
        along_x = t @ _band(k, w, w, r)
    else:
        blocks = -(-w // block)
        windows = F.pad(t, (r, r + blocks * block - w)).unfold(-1, block + 2 * r, block)  # (N, H, blocks, ...)
        along_x = (windows.reshape(-1, block + 2 * r) @ _band(k, block + 2 * r, block, 0)).view(*t.shape[:-1], -1)
        along_x = along_x[..., :w]
    return _band(k, h, h, r) @ along_x


def _elastic_field(
    b: int, h: int, w: int, generator: torch.Generator, device: torch.device, alpha: float, sigma: float
) -> torch.Tensor:
    """(B, H, W, 2) displacements in grid_sample's units: uniform noise in [-1, 1], Gaussian-smoothed,
    scaled so that no point moves more than `alpha` pixels along x or y.

    Scaling by each field's own peak, not by Simard's fixed alpha, keeps the bound a bound (which the
    line crop relies on) whatever sigma and the image size are.
    """
    step = max(1, int(sigma))  # the field is drawn and smoothed on a grid this coarse, then interpolated:
    coarse = (-(-h // step) + 1, -(-w // step) + 1)  # a smooth field loses nothing, and a line costs step^2 less
    noise = torch.rand(b * 2, *coarse, generator=generator, device=device, dtype=torch.float32).mul_(2).sub_(1)
    field = _blur(noise, _gaussian(sigma / step, device))
    field = F.interpolate(field[:, None], size=(h, w), mode="bilinear", align_corners=False).view(b, 2, h, w)
    peak = field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min_(1e-12)
    to_grid = torch.tensor([2 / w, 2 / h], device=device, dtype=torch.float32).view(1, 2, 1, 1)  # pixels -> [-1, 1]
    return field.mul_(to_grid / peak * alpha).permute(0, 2, 3, 1)
