"""A fully convolutional line reader: one logit vector per sliding window, for CTC."""

from __future__ import annotations

import torch
from torch import nn

from text_recognizer.metadata import GLYPH_SIZE, LINE_TOKENS
from text_recognizer.models.resnet import ResidualBlock


def output_length(image_width: int, window_width: int = 28, window_stride: int = 8) -> int:
    """Number of windows T = (W - window_width) // window_stride + 1 that LineCNN emits for a W-pixel line."""
    if image_width < window_width:
        raise ValueError(f"line image width {image_width} is narrower than window_width {window_width}")
    return (image_width - window_width) // window_stride + 1


class LineCNN(nn.Module):
    """Reads a line of handwriting as a sequence of per-window class scores (the FSDL LineCNN idea).

    Backbone (shared by all windows): conv3x3(1 -> width/2) + BN + ReLU at full resolution,
    conv3x3 stride 2 (-> width channels, 14 x W/2) + BN + ReLU, one residual block at 14 x W/2.
    The "sliding window" is then a single convolution, Conv2d(width, fc_dim,
    kernel=(14, window_width/2), stride=(1, window_stride/2)), which is exactly a fully connected
    layer applied to every window of the half-resolution map; BN + ReLU, dropout and a 1x1
    convolution to `num_classes` follow. No Python loop over windows.

    Receptive field: output position t is computed from the half-resolution columns
    [t * window_stride/2, t * window_stride/2 + window_width/2), i.e. the window of window_width
    pixels of the line starting at pixel t * window_stride; consecutive positions are window_stride
    pixels apart. The 3x3 convolutions of the backbone add a context margin of a few pixels
    (about 6) on each side of that window; the whole 28-pixel height is always seen.

    Parameters
    ----------
    num_classes : int
        Output classes per position, blank included (65 = len(LINE_TOKENS)).
    width : int
        Channels of the backbone (its first conv has width // 2).
    window_width, window_stride : int
        Window size and step in pixels of the input line; both even (the map is halved once).
    fc_dim : int
        Channels of the per-window fully connected layer.
    dropout : float
        Dropout probability before the classifier.

    Shapes
    ------
    input: (B, 1, 28, W) float in [0, 1], white ink on black, W >= window_width
    output: (B, num_classes, T) logits, T = (W - window_width) // window_stride + 1
    """

    def __init__(
        self,
        num_classes: int = len(LINE_TOKENS),
        width: int = 64,
        window_width: int = 28,
        window_stride: int = 8,
        fc_dim: int = 256,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if window_width < 2 or window_width % 2:
            raise ValueError(f"window_width must be an even number >= 2, got {window_width}")
        if window_stride < 2 or window_stride % 2:
            raise ValueError(f"window_stride must be an even number >= 2, got {window_stride}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.window_width = window_width
        self.window_stride = window_stride
        half = max(1, width // 2)
        self.backbone = nn.Sequential(
            nn.Conv2d(1, half, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            nn.Conv2d(half, width, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            ResidualBlock(in_channels=width, out_channels=width),
        )
        self.window = nn.Conv2d(
            width,
            fc_dim,
            kernel_size=(GLYPH_SIZE // 2, window_width // 2),
            stride=(1, window_stride // 2),
            bias=False,
        )
        self.window_bn = nn.BatchNorm2d(fc_dim)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(fc_dim, num_classes, kernel_size=1)

    def output_length(self, image_width: int) -> int:
        """T for a line image of `image_width` pixels."""
        return output_length(image_width, self.window_width, self.window_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != GLYPH_SIZE:
            raise ValueError(f"LineCNN expects (B, 1, {GLYPH_SIZE}, W) images, got {tuple(x.shape)}")
        t = self.output_length(x.shape[3])
        x = self.backbone(x)  # (B, width, 14, ceil(W/2))
        x = self.relu(self.window_bn(self.window(x)))  # (B, fc_dim, 1, T') with T' >= T (T' = T for even W)
        x = self.dropout(x)  # (B, fc_dim, 1, T')
        x = self.classifier(x)  # (B, num_classes, 1, T')
        return x[:, :, 0, :t]  # (B, num_classes, T); an odd W's extra half-column window is dropped
