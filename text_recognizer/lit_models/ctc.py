"""CTC loss, greedy decoding and the line metrics (character error rate from torchmetrics, line accuracy).

How many steps CTC needs for a text, and how many a line gets, is text_recognizer.line_geometry's.

Conventions (text_recognizer.metadata): logits are (B, C, T) as LineCNN emits them, class 0
is the CTC blank, label rows are padded with PAD_INDEX past `target_lengths`. Metrics take
the real texts only, so padding can never be counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torchmetrics.functional.text import char_error_rate

from text_recognizer.metadata import BLANK_INDEX, LINE_TOKENS, PAD_INDEX


def ctc_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    input_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean CTC loss, always computed in float32 (bf16/fp16 log-probabilities make CTC unstable).

    Parameters
    ----------
    logits : (B, C, T) tensor, any float dtype
    targets : (B, L) integer tensor, indices into LINE_TOKENS padded with PAD_INDEX
    target_lengths : (B,) integer tensor, real characters per row (padding excluded)
    input_lengths : (B,) integer tensor, optional: each line's own steps (<= T, those of its width
        in a cropped batch); defaults to T for every row

    Returns
    -------
    () float32 tensor. Impossible alignments (T too short) give 0 instead of inf (zero_infinity);
    EmnistLinesDataModule refuses such lines at setup, so training never leans on that.
    """
    batch, _, steps = logits.shape
    with torch.autocast(device_type=logits.device.type, enabled=False):
        log_probs = F.log_softmax(logits.float(), dim=1).permute(2, 0, 1)  # (T, B, C)
        if input_lengths is None:
            input_lengths = torch.full((batch,), steps, dtype=torch.long, device=logits.device)
        return F.ctc_loss(
            log_probs,
            targets.long(),
            input_lengths.long(),
            target_lengths.long(),
            blank=BLANK_INDEX,
            reduction="mean",
            zero_infinity=True,
        )


def greedy_decode(logits: torch.Tensor, input_lengths: torch.Tensor | None = None) -> list[list[int]]:
    """Best-path CTC decoding: argmax per step, collapse repeats, drop blanks.

    Parameters
    ----------
    logits : (B, C, T) tensor (scores or log-probabilities; only the argmax matters)
    input_lengths : (B,) integer tensor, optional: steps of each row that belong to its line
        (a cropped batch's shorter lines end before T); the steps past them are ignored

    Returns
    -------
    B lists of token indices (into LINE_TOKENS), blanks removed.
    """
    best = logits.argmax(dim=1)  # (B, T)
    previous = F.pad(best, (1, 0), value=-1)[:, :-1]  # (B, T): the step before, -1 at t = 0
    keep = (best != previous) & (best != BLANK_INDEX)  # (B, T)
    if input_lengths is not None:
        steps = torch.arange(best.shape[1], device=best.device)  # (T,)
        keep &= steps[None, :] < input_lengths.to(best.device)[:, None]  # (B, T): padding steps dropped
    values = best[keep].tolist()  # kept tokens of all rows, row-major
    counts = keep.sum(dim=1).tolist()  # (B,)
    out: list[list[int]] = []
    start = 0
    for n in counts:
        out.append(values[start : start + n])
        start += n
    return out


def indices_to_text(indices: Iterable[int], mapping: Sequence[str] = LINE_TOKENS) -> str:
    """Join the characters of `indices`; blank and padding tokens are skipped (they are not text)."""
    return "".join(mapping[i] for i in indices if i != BLANK_INDEX and i != PAD_INDEX)


def labels_to_texts(labels: torch.Tensor, lengths: torch.Tensor, mapping: Sequence[str] = LINE_TOKENS) -> list[str]:
    """Texts of padded label rows (B, L), each cut at its length (B,): the padding never reaches a metric."""
    rows = labels.tolist()
    return ["".join(mapping[i] for i in row[:n]) for row, n in zip(rows, lengths.tolist(), strict=True)]


def _check_pairs(preds: Sequence[str], targets: Sequence[str]) -> None:
    if len(preds) != len(targets):
        raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets")
    if not targets:
        raise ValueError("no lines to score")


def character_error_rate(preds: Sequence[str], targets: Sequence[str]) -> float:
    """Corpus-level CER: total edit distance / total reference characters (torchmetrics' CharErrorRate).

    Long lines weigh more than short ones, unlike a mean of per-line rates. If every reference
    is empty the denominator is taken as 1 (so the CER is the number of inserted characters).
    """
    _check_pairs(preds, targets)
    if not any(targets):
        return float(sum(map(len, preds)))
    return float(char_error_rate(list(preds), list(targets)))


def line_accuracy(preds: Sequence[str], targets: Sequence[str]) -> float:
    """Fraction of lines read exactly right."""
    _check_pairs(preds, targets)
    return sum(p == t for p, t in zip(preds, targets, strict=True)) / len(targets)
