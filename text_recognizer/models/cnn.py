"""The FSDL lab's CNN for one 28x28 glyph: the baseline that `model.arch: cnn` trains under this project's recipe."""

from __future__ import annotations

import torch
from torch import nn

from text_recognizer.metadata import GLYPH_SIZE, NUM_EMNIST_CLASSES


class CNN(nn.Module):
    """Two 3x3 convs (+ ReLU) at full resolution, one 2x2 max-pool, dropout, a hidden dense layer, the class layer.

    Kept as the lab wrote it (no BatchNorm, no stride, no residuals) so that the ResNet's gain over it is measured
    under the same training, augmentation and evaluation, not assumed. Most of its weights sit in the first dense
    layer: conv_dim * 14 * 14 inputs (12,544 at conv_dim 64) to fc_dim units.

    Parameters (keyword-only; no defaults but num_classes: training passes params.yaml's model section)
    ----------
    num_classes : int
        Number of output logits: the classes of emnist.h5's EMNIST split (62 for ByClass).
    conv_dim : int
        Channels of both conv layers, >= 1.
    fc_dim : int
        Units of the hidden dense layer, >= 1.
    dropout : float
        Dropout probability after the pooling and after the hidden dense layer.

    Shapes
    ------
    input: (B, 1, 28, 28) float in [0, 1], white ink on black
    output: (B, num_classes) logits
    """

    def __init__(self, *, num_classes: int = NUM_EMNIST_CLASSES, conv_dim: int, fc_dim: int, dropout: float) -> None:
        super().__init__()
        if conv_dim < 1 or fc_dim < 1:
            raise ValueError(f"conv_dim and fc_dim must be >= 1, got {conv_dim} and {fc_dim}")
        self.convs = nn.Sequential(
            nn.Conv2d(1, conv_dim, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(conv_dim, conv_dim, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(conv_dim * (GLYPH_SIZE // 2) ** 2, fc_dim)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Linear(fc_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.convs(x))  # (B, conv_dim, 14, 14)
        x = self.dropout(self.relu(self.fc(torch.flatten(x, 1))))  # (B, fc_dim)
        return self.head(x)  # (B, num_classes)
