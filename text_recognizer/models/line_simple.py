"""The FSDL lab's LineCNNSimple: the character CNN applied to every 28-px window of a line, one class per window.

`line_model.arch: simple`. It reads lines drawn without overlap only (params.py refuses it otherwise): there every
character, a space too, fills exactly one window, so window i holds character i.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from text_recognizer.metadata import GLYPH_SIZE, LINE_TOKENS
from text_recognizer.models.cnn import CNN


class LineCNNSimple(nn.Module):
    """One character per 28-px window, read by the lab's CNN (models.cnn.CNN) with line_model's sizes.

    The lab looped over the windows in Python; here the (B, 1, 28, 28 * L) line is reshaped into a batch of
    (B * L, 1, 28, 28) glyphs and the CNN runs once, so the windows cost one batched call whatever L is. No window
    sees its neighbours: a space and the padding past the text are the same empty window, which the decoder
    (lit_models.windows.window_decode) tells apart by position.

    Parameters (keyword-only; no defaults but num_classes: training passes params.yaml's line_model section)
    ----------
    num_classes : int
        Classes per window: LINE_TOKENS (65; the CTC blank is never a target, the padding class is).
    width : int
        Channels of the CNN's two conv layers (the CNN's conv_dim).
    fc_dim : int
        Units of the CNN's hidden dense layer.
    dropout : float
        The CNN's dropout.

    Shapes
    ------
    input: (B, 1, 28, W) float in [0, 1], white ink on black; a W that is no multiple of 28 is padded with black
    output: (B, num_classes, L) logits, L = ceil(W / 28): column i holds window [28i, 28i + 28)
    """

    window_width = GLYPH_SIZE  # as LineCNN's attributes: what predict pads a line to, and the step of the outputs
    window_stride = GLYPH_SIZE

    def __init__(self, *, num_classes: int = len(LINE_TOKENS), width: int, fc_dim: int, dropout: float) -> None:
        super().__init__()
        self.char = CNN(num_classes=num_classes, conv_dim=width, fc_dim=fc_dim, dropout=dropout)

    def output_length(self, image_width: int) -> int:
        """L for a line image of `image_width` pixels: one output per (started) window."""
        if image_width < 1:
            raise ValueError(f"line image width must be >= 1, got {image_width}")
        return -(-image_width // GLYPH_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != GLYPH_SIZE:
            raise ValueError(f"LineCNNSimple expects (B, 1, {GLYPH_SIZE}, W) images, got {tuple(x.shape)}")
        batch, width = x.shape[0], x.shape[3]
        windows = self.output_length(width)
        x = F.pad(x, (0, windows * GLYPH_SIZE - width))  # (B, 1, 28, 28 * L)
        x = x.reshape(batch, GLYPH_SIZE, windows, GLYPH_SIZE).permute(0, 2, 1, 3)  # (B, L, 28, 28)
        logits = self.char(x.reshape(batch * windows, 1, GLYPH_SIZE, GLYPH_SIZE))  # (B * L, C)
        return logits.view(batch, windows, -1).transpose(1, 2)  # (B, C, L)
