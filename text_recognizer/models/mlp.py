"""The FSDL lab's MLP for one 28x28 glyph: the baseline that `model.arch: mlp` trains under this project's recipe."""

from __future__ import annotations

import torch
from torch import nn

from text_recognizer.metadata import GLYPH_SIZE, NUM_EMNIST_CLASSES


class MLP(nn.Module):
    """Flatten, two hidden dense layers with ReLU and dropout, the class layer.

    No convolution at all: every pixel is its own input, so a glyph shifted by a pixel is a new input to it. The
    augmentation (shifts, slant, elastic wobble) the recipe applies to every arch is then most of what it sees of
    position, which is what comparing it with the CNNs measures.

    Parameters (keyword-only; no defaults but num_classes: training passes params.yaml's model section)
    ----------
    num_classes : int
        Number of output logits: the classes of emnist.h5's EMNIST split (62 for ByClass).
    fc1_dim, fc2_dim : int
        Units of the first and the second hidden layer, >= 1.
    dropout : float
        Dropout probability after each hidden layer.

    Shapes
    ------
    input: (B, 1, 28, 28) float in [0, 1], white ink on black
    output: (B, num_classes) logits
    """

    def __init__(self, *, num_classes: int = NUM_EMNIST_CLASSES, fc1_dim: int, fc2_dim: int, dropout: float) -> None:
        super().__init__()
        if fc1_dim < 1 or fc2_dim < 1:
            raise ValueError(f"fc1_dim and fc2_dim must be >= 1, got {fc1_dim} and {fc2_dim}")
        self.hidden = nn.Sequential(
            nn.Flatten(),
            nn.Linear(GLYPH_SIZE * GLYPH_SIZE, fc1_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc1_dim, fc2_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(fc2_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (1, GLYPH_SIZE, GLYPH_SIZE):
            raise ValueError(f"MLP reads (B, 1, {GLYPH_SIZE}, {GLYPH_SIZE}) glyphs, got {tuple(x.shape)}")
        return self.head(self.hidden(x))  # (B, 784) -> (B, fc2_dim) -> (B, num_classes)
