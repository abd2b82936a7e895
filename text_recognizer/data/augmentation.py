"""The random affine warp applied to training batches on the device (DeviceLoader), and its bounds.

The bounds are params.yaml's (`train_cnn.augment_*`, `train_line_cnn.augment_*`): `augmentation(run)`
builds them from a train section. Random erasing is deliberately absent: an EMNIST class often hinges
on one small stroke (i/l, O/Q, the dot of j), and blanking a patch turns those samples into label noise
rather than regularisation.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from text_recognizer.params import TrainParams


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Bounds of the random affine warp applied to each training image; all draws are uniform in [-bound, +bound].

    shift: max |dx|, |dy| in pixels; scale: max relative zoom along x and y; rotation: max degrees
    (applied in pixel space, so wide images stay undistorted).
    """

    shift: tuple[float, float]
    scale: tuple[float, float]
    rotation: float

    @property
    def keeps_columns(self) -> bool:
        """Whether the warp leaves every ink column where it is (no horizontal shift or zoom, no rotation)."""
        return not (self.shift[0] or self.scale[0] or self.rotation)


def augmentation(run: TrainParams) -> Augmentation | None:
    """The warp a train section asks for (its `augment_*` bounds), or None when `augment` is false."""
    if not run.augment:
        return None
    return Augmentation(
        shift=(run.augment_shift_x, run.augment_shift_y),
        scale=(run.augment_scale_x, run.augment_scale_y),
        rotation=run.augment_rotation,
    )


def augment_batch(x: torch.Tensor, generator: torch.Generator, aug: Augmentation) -> torch.Tensor:
    """Randomly shift, scale and rotate every image of a (B, 1, H, W) float batch in one warp.

    One `affine_grid` + `grid_sample` for the whole batch; the background (0, black) fills
    what comes in from outside the frame, so values stay in [0, 1]. `generator` must live on
    x's device; seeding it makes the augmentation reproducible.
    """
    b, _, h, w = x.shape
    u = torch.rand(b, 5, generator=generator, device=x.device, dtype=torch.float32) * 2 - 1  # uniform in [-1, 1]
    angle = u[:, 0] * math.radians(aug.rotation)
    zoom_x = 1 + u[:, 1] * aug.scale[0]
    zoom_y = 1 + u[:, 2] * aug.scale[1]
    shift_x, shift_y = u[:, 3] * aug.shift[0], u[:, 4] * aug.shift[1]
    # theta maps output to input coordinates. Built in pixel units (rotate, then divide by the
    # zoom), then rescaled to grid_sample's [-1, 1] coordinates: theta_n = S^-1 A S, S = diag(w/2, h/2).
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=torch.float32)
    theta[:, 0, 0] = cos / zoom_x
    theta[:, 0, 1] = -sin / zoom_x * (h / w)
    theta[:, 1, 0] = sin / zoom_y * (w / h)
    theta[:, 1, 1] = cos / zoom_y
    theta[:, 0, 2] = -shift_x * 2 / w  # moving the content right samples the input further left
    theta[:, 1, 2] = -shift_y * 2 / h
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.clamp_(0.0, 1.0).to(x.dtype)
