"""Targets, decoding and the metric of a per-window line model (line_model.arch simple): one class per 28-px window.

Conventions as in ctc.py: logits are (B, C, L), classes index LINE_TOKENS, label rows are padded with PAD_INDEX. A
window past the text is padding, and so is its target. A space is drawn as an empty window too, so the network
cannot tell a space from padding: the decoder reads them by position (inside the text a space, after it nothing).
No LightningModule here: evaluate and predict import this without Lightning.
"""

from __future__ import annotations

import torch

from text_recognizer.metadata import PAD_INDEX, SPACE_INDEX


def window_targets(labels: torch.Tensor, windows: int) -> torch.Tensor:
    """The class of each of the first `windows` windows (B, windows): the label row, PAD_INDEX past its end.

    A batch cropped to its longest text has fewer windows than the row has labels; those dropped are padding.
    """
    if windows <= labels.shape[1]:
        return labels[:, :windows].long()
    return torch.nn.functional.pad(labels.long(), (0, windows - labels.shape[1]), value=PAD_INDEX)


def window_tokens(logits: torch.Tensor) -> torch.Tensor:
    """The argmax class of every window (B, L), an empty window's (padding or the never-trained blank) as a space:
    the network sees no difference between them, so only the position can tell."""
    best = logits.argmax(dim=1)  # (B, L)
    return best.masked_fill(best <= PAD_INDEX, SPACE_INDEX)  # BLANK_INDEX 0 and PAD_INDEX 1


def window_decode(logits: torch.Tensor, input_lengths: torch.Tensor | None = None) -> list[list[int]]:
    """Argmax per window read as text: the windows up to the last one read as a character, empty ones inside
    the text as spaces (phrases never end in a space, so trailing empty windows are padding and dropped).

    The per-window model's greedy reading, with evaluation.LineDecoder's signature: `input_lengths` (B,), when
    given, drops the windows past them. Returns B lists of LINE_TOKENS indices.
    """
    tokens = window_tokens(logits)  # (B, L)
    steps = torch.arange(tokens.shape[1], device=tokens.device)  # (L,)
    is_char = tokens != SPACE_INDEX  # (B, L)
    if input_lengths is not None:
        is_char &= steps[None, :] < input_lengths.to(tokens.device)[:, None]
    ends = torch.where(is_char, steps[None, :] + 1, 0).amax(dim=1)  # (B,) one past the last character, 0 if none
    return [row[:end] for row, end in zip(tokens.tolist(), ends.tolist(), strict=True)]


def window_hits(logits: torch.Tensor, labels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Whether each window inside its text reads its character (a flat bool tensor, one entry per character):
    what character accuracy counts. Windows past the text never count, so padding cannot inflate it."""
    tokens = window_tokens(logits)  # (B, L)
    if lengths.numel() and int(lengths.max()) > tokens.shape[1]:
        raise ValueError(f"a text of {int(lengths.max())} characters has only {tokens.shape[1]} windows")
    targets = window_targets(labels, tokens.shape[1])  # (B, L)
    inside = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths.to(tokens.device)[:, None]
    return (tokens == targets)[inside]  # (number of characters,)
