"""A small residual CNN that classifies one 28x28 EMNIST glyph."""

from __future__ import annotations

import torch
from torch import nn

from text_recognizer.metadata import NUM_EMNIST_CLASSES

MAX_STAGES = 3  # 14 -> 7 -> 4 after the stem: a fourth halving would leave 2x2 maps
HEAD_GRID = 4  # the head reads a 4x4 grid of features (the last stage's maps when there are three stages)


def stage_sizes(num_blocks: int) -> list[int]:
    """Split `num_blocks` into up to three stages as evenly as possible, earlier stages first.

    >>> [stage_sizes(n) for n in (1, 2, 3, 4, 8)]
    [[1], [1, 1], [1, 1, 1], [2, 1, 1], [3, 3, 2]]
    """
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
    num_stages = min(MAX_STAGES, num_blocks)
    base, extra = divmod(num_blocks, num_stages)
    return [base + (1 if s < extra else 0) for s in range(num_stages)]


class ResidualBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a skip connection, ReLU after the sum.

    The skip is the identity when the shape is kept, else a 1x1 conv + BN (stride and channel change).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels C_in of the input and C_out of the output.
    stride : int
        1 keeps the spatial size; 2 halves it (rounding up, as 3x3 convs with padding 1 do).

    Shapes
    ------
    (B, C_in, H, W) -> (B, C_out, ceil(H / stride), ceil(W / stride))
    """

    def __init__(self, *, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (B, C_out, H', W')
        out = self.bn2(self.conv2(out))  # (B, C_out, H', W')
        return self.relu(out + self.shortcut(x))  # (B, C_out, H', W')


class ResNetClassifier(nn.Module):
    """Residual CNN for single EMNIST characters.

    Layout: stem conv3x3 stride 2 (1 -> width) + BN + ReLU, then `num_blocks` residual blocks,
    average pooling to a 4x4 grid, dropout and a linear head over the flattened grid.

    Why the stride-2 stem: a 28x28 glyph has no detail that needs full-resolution 64-channel maps,
    and halving the side first quarters the area every stage works on (about 0.27x the FLOPs of
    the same network with a stride-1 stem). Why a 4x4 grid and
    not one global average: where a stroke sits is most of what tells glyphs apart, and a global
    average makes the network relearn position through depth. On the benchmark's glyphs
    (benchmarks/RESULTS.md) the grid head reached 0.66 held-out accuracy after one epoch where
    global pooling was at 0.14.

    Downsampling rule: the blocks are split into up to three stages as evenly as possible, the
    earlier stages taking the extra blocks (num_blocks 1 -> [1], 2 -> [1, 1], 3 -> [1, 1, 1],
    4 -> [2, 1, 1], 8 -> [3, 3, 2]). Stage s works on width * 2**s channels; the first block of
    every stage s >= 1 has stride 2 and doubles the channels, so the maps go 14 -> 7 -> 4.
    Fewer than three blocks stop earlier and the pooling brings their maps to 4x4. Any
    num_blocks >= 1 therefore builds, and depth grows without shrinking the maps further.

    Parameters (keyword-only; no defaults but num_classes: training passes params.yaml's model section)
    ----------
    num_classes : int
        Number of output logits: the classes of emnist.h5's EMNIST split (62 for ByClass).
    num_blocks : int
        Number of residual blocks, >= 1.
    width : int
        Channels of the stem and of the first stage, >= 1.
    dropout : float
        Dropout probability before the linear head.

    Shapes
    ------
    input: (B, 1, 28, 28) float in [0, 1], white ink on black
    output: (B, num_classes) logits
    """

    def __init__(self, *, num_classes: int = NUM_EMNIST_CLASSES, num_blocks: int, width: int, dropout: float) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        channels = width
        for stage, size in enumerate(stage_sizes(num_blocks)):
            out_channels = width * 2**stage
            for i in range(size):
                stride = 2 if stage >= 1 and i == 0 else 1
                blocks.append(ResidualBlock(in_channels=channels, out_channels=out_channels, stride=stride))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(HEAD_GRID)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels * HEAD_GRID**2, num_classes)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, width, 14, 14)
        x = self.blocks(x)  # (B, C, S, S): C = width * 2**(stages-1), S = 14, 7 or 4 for 1, 2 or 3 stages
        x = self.pool(x).flatten(1)  # (B, C * 16)
        x = self.dropout(x)  # (B, C * 16)
        return self.head(x)  # (B, num_classes)
