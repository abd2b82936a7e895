"""A fully convolutional line reader: one logit vector per sliding window, for CTC, with an optional context head.

The window arithmetic (the steps a line gets, its own width, the crop of a batch) is in
text_recognizer.line_geometry, which the data modules use too.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from text_recognizer.line_geometry import output_length
from text_recognizer.metadata import GLYPH_SIZE, LINE_TOKENS
from text_recognizer.models.resnet import ResidualBlock
from text_recognizer.params import LINE_HEADS, LINE_STEMS, LineHead, LineStem

_TRANSFORMER_LAYERS = 2


def sinusoidal_positions(steps: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(steps, dim) position codes of "Attention is all you need": no learned table, so any line length works."""
    position = torch.arange(steps, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10_000.0) / dim))
    codes = torch.zeros(steps, dim, device=device, dtype=torch.float32)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return codes.to(dtype)


class LineCNN(nn.Module):
    """Reads a line of handwriting as a sequence of per-window class scores (the FSDL LineCNN idea).

    Backbone (shared by all windows), stem "full": conv3x3(1 -> width/2) + BN + ReLU at full resolution,
    conv3x3 stride 2 (-> width channels, 14 x W/2) + BN + ReLU, one residual block at 14 x W/2.
    Stem "strided": the stride moves to the first conv (1 -> width/2, 14 x W/2), the second keeps the
    half resolution: the same layers and output, without the 28 x W activations that made the first
    conv, BN and ReLU a third of a CPU training step (~1.4x faster steps, but real handwriting read
    worse; docs/decisions.md).
    The "sliding window" is then a single convolution, Conv2d(width, fc_dim,
    kernel=(14, window_width/2), stride=(1, window_stride/2)), which is exactly a fully connected
    layer applied to every window of the half-resolution map; BN + ReLU, then the context head,
    dropout and a 1x1 convolution to `num_classes`. No Python loop over windows.

    Receptive field: output position t is computed from the half-resolution columns
    [t * window_stride/2, t * window_stride/2 + window_width/2), i.e. the window of window_width
    pixels of the line starting at pixel t * window_stride; consecutive positions are window_stride
    pixels apart. The 3x3 convolutions of the backbone add a context margin of 6 pixels on the
    left and 5 on the right of that window with the full stem, 7 and 6 with the strided one
    (line_geometry.RIGHT_CONTEXT is the larger); the whole 28-pixel height is always seen.

    Context heads (between the window features and the classifier; the window alone sees ~1.5 glyphs):
    "none": nothing, the network above (checkpoints without `head` are this one, same weights: see
    checkpoint.build_model).
    "lstm": a bidirectional LSTM over the window features (CRNN; FSDL's LineCNNLSTM), hidden size
    fc_dim, the two directions summed and added to the features (residual, so the window evidence
    stays). With `lengths` it runs packed (pack_padded_sequence): each line's backward pass starts
    at its own last step, so its outputs do not depend on the batch's padding at all; cropping
    alone would leave a few padding steps in the widest-but-one lines.
    "transformer": 2 pre-norm encoder layers (4 heads where fc_dim allows, feed-forward 2 x fc_dim)
    over the features plus sinusoidal positions; `lengths` give the key padding mask.

    Parameters (keyword-only; no defaults but num_classes: training passes params.yaml's line_model section)
    ----------
    num_classes : int
        Output classes per position, blank included (65 = len(LINE_TOKENS)).
    width : int
        Channels of the backbone (its first conv has width // 2).
    window_width, window_stride : int
        Window size and step in pixels of the input line; both even (the map is halved once).
    fc_dim : int
        Channels of the per-window fully connected layer (and of the context head).
    dropout : float
        Dropout probability before the classifier (and inside the transformer layers).
    head : "none" | "lstm" | "transformer"
        The context head, see above.
    stem : "full" | "strided"
        Where the backbone halves the image, see above (checkpoints without `stem` are "full").

    Shapes
    ------
    input: (B, 1, 28, W) float in [0, 1], white ink on black, W >= window_width;
        lengths (B,) int, optional: steps of each line that count (`output_lengths` of its width), <= T
    output: (B, num_classes, T) logits, T = (W - window_width) // window_stride + 1; with `lengths`,
        the steps past a line's length are padding (ignore them)
    """

    def __init__(
        self,
        *,
        num_classes: int = len(LINE_TOKENS),
        width: int,
        window_width: int,
        window_stride: int,
        fc_dim: int,
        dropout: float,
        head: LineHead,
        stem: LineStem,
    ) -> None:
        super().__init__()
        if window_width < 2 or window_width % 2:
            raise ValueError(f"window_width must be an even number >= 2, got {window_width}")
        if window_stride < 2 or window_stride % 2:
            raise ValueError(f"window_stride must be an even number >= 2, got {window_stride}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if head not in LINE_HEADS:
            raise ValueError(f"head must be one of {', '.join(LINE_HEADS)}, got {head!r}")
        if stem not in LINE_STEMS:
            raise ValueError(f"stem must be one of {', '.join(LINE_STEMS)}, got {stem!r}")
        if head == "transformer" and fc_dim % 2:
            raise ValueError(f"head 'transformer' needs an even fc_dim (sinusoidal positions), got {fc_dim}")
        self.window_width = window_width
        self.window_stride = window_stride
        self.head = head
        self.stem = stem
        half = max(1, width // 2)
        first_stride, second_stride = (2, 1) if stem == "strided" else (1, 2)
        self.backbone = nn.Sequential(
            nn.Conv2d(1, half, kernel_size=3, stride=first_stride, padding=1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            nn.Conv2d(half, width, kernel_size=3, stride=second_stride, padding=1, bias=False),
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
        # Registered only for a context head, so that "none" keeps the state_dict keys of older checkpoints.
        self.context: nn.Module | None = None
        if head == "lstm":
            self.context = nn.LSTM(fc_dim, fc_dim, batch_first=True, bidirectional=True)
        elif head == "transformer":
            nhead = next(n for n in (4, 2, 1) if fc_dim % n == 0)
            layer = nn.TransformerEncoderLayer(
                fc_dim, nhead, dim_feedforward=2 * fc_dim, dropout=dropout, batch_first=True, norm_first=True
            )
            self.context = nn.TransformerEncoder(
                layer, _TRANSFORMER_LAYERS, norm=nn.LayerNorm(fc_dim), enable_nested_tensor=False
            )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(fc_dim, num_classes, kernel_size=1)

    def output_length(self, image_width: int) -> int:
        """T for a line image of `image_width` pixels."""
        return output_length(image_width, self.window_width, self.window_stride)

    def _add_context(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """The head over the window features (B, T, fc_dim) -> (B, T, fc_dim)."""
        batch, steps, dim = x.shape
        if isinstance(self.context, nn.LSTM):
            if lengths is None:
                out, _ = self.context(x)  # (B, T, 2 * fc_dim)
            else:
                packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
                out, _ = pad_packed_sequence(self.context(packed)[0], batch_first=True, total_length=steps)
            return x + out.view(batch, steps, 2, dim).sum(dim=2)  # (B, T, fc_dim): directions summed, residual
        assert self.context is not None
        mask = None
        if lengths is not None:
            mask = torch.arange(steps, device=x.device)[None, :] >= lengths.to(x.device)[:, None]  # (B, T), True: pad
        x = x + sinusoidal_positions(steps, dim, x.device, x.dtype)  # (B, T, fc_dim)
        return self.context(x, src_key_padding_mask=mask)  # (B, T, fc_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != GLYPH_SIZE:
            raise ValueError(f"LineCNN expects (B, 1, {GLYPH_SIZE}, W) images, got {tuple(x.shape)}")
        t = self.output_length(x.shape[3])
        x = self.backbone(x)  # (B, width, 14, ceil(W/2))
        x = self.relu(self.window_bn(self.window(x)))  # (B, fc_dim, 1, T') with T' >= T (T' = T for even W)
        if self.context is not None:  # "none" skips this and runs exactly the ops it always ran
            seq = self._add_context(x[:, :, 0, :t].transpose(1, 2), lengths)  # (B, T, fc_dim)
            x = seq.transpose(1, 2)[:, :, None, :]  # (B, fc_dim, 1, T)
        x = self.dropout(x)  # (B, fc_dim, 1, T')
        x = self.classifier(x)  # (B, num_classes, 1, T')
        return x[:, :, 0, :t]  # (B, num_classes, T); an odd W's extra half-column window is dropped
