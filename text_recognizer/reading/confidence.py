"""How sure a line model is of what it read: one confidence per character and one for the line.

A decoder (greedy or beam search with a language model) gives a text, not a probability, and beam search may pick
a text that no single best path spells. So the text is aligned to the CTC posteriors afterwards: a Viterbi pass over
the 2L+1 CTC states of the text (blank, c1, blank, c2, ..., cL, blank) finds the likeliest path that spells exactly
that text, and each character's confidence is the highest posterior its label reaches on the frames the path gives
it. Whatever the decoder, the confidence then asks the same question: how strongly did the network itself see each
character of the text that was printed.

The line's confidence is the CTC probability of its text, summed over every alignment (the forward algorithm, as
the CTC loss computes it), taken per character: P(text | image) ** (1 / L). Of the measures tried it separated
wrong lines from right ones best (AUROC 0.81 to 0.87 on two models' val and test lines, against 0.75 to 0.84 for the
minimum or the geometric mean of the characters' confidences, and 0.69 to 0.85 for the best path's probability per
character): a wrong line is often one where other texts share the probability, which one path does not see. An
empty reading has confidence 0: reading nothing from a line image is never a reading to trust.

Beam search (with or without the language model) knows more than the network: its final beam holds the other
texts it weighed, each with its fused score (CTC + LM weight x LM + length bonus). Its line confidence is the
printed text's share of the beam's probability, exp(score) / sum of exp(score) over the beam; a line where another
text scored nearly as well is an uncertain one. On the `make offline` model's beam readings this separated wrong
lines from right ones far better than the CTC probability (AUROC 0.95 / 0.92 on 300 val / test lines, against
0.70 / 0.61): with the LM, the network's own probability no longer says which texts were close. The characters'
confidences stay the alignment's. The decoder hands its shares over with its rows (DecodedRows).

A per-window model (line_model.arch simple) has no CTC path: each character is one window, and its confidence is
that window's probability of the class read (an empty window reads as a space: blank, padding and space together),
and the line's is their geometric mean (the probability of the text per character, the windows being independent).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from text_recognizer.metadata import BLANK_INDEX, PAD_INDEX, SPACE_INDEX


class DecodedRows(list):
    """A decoder's rows (list[list[int]], as every LineDecoder returns) with the line confidences it computed
    itself (beam search: the text's share of the beam), which then replace the CTC probability per character."""

    def __init__(self, rows: Sequence[Sequence[int]], line_confidence: np.ndarray) -> None:
        super().__init__(list(r) for r in rows)
        self.line_confidence = np.asarray(line_confidence, dtype=np.float64)


def decoder_line_confidence(rows: Sequence[Sequence[int]]) -> np.ndarray | None:
    """The line confidences a decoder returned with `rows` (DecodedRows), else None."""
    return rows.line_confidence if isinstance(rows, DecodedRows) else None


@dataclasses.dataclass(frozen=True)
class Confidence:
    """Per-character confidences (one per character of the text, in [0, 1]) and the line's."""

    chars: np.ndarray  # (L,) float64
    line: float


def geometric_mean(chars: np.ndarray) -> float:
    """exp(mean(log p)) of the characters' confidences; 0 for no characters."""
    if len(chars) == 0:
        return 0.0
    return float(np.exp(np.mean(np.log(np.maximum(chars, 1e-300)))))


def text_probabilities(logits: torch.Tensor, lengths: torch.Tensor, texts: Sequence[Sequence[int]]) -> np.ndarray:
    """P(text | image) ** (1 / L) of each text (B,): the CTC probability over all its alignments, per character.

    0 for an empty text, and for a text that its steps cannot spell.
    """
    sizes = torch.tensor([len(t) for t in texts], dtype=torch.long)
    targets = torch.full((len(texts), max(1, int(sizes.max()) if len(texts) else 1)), PAD_INDEX, dtype=torch.long)
    for b, text in enumerate(texts):
        targets[b, : len(text)] = torch.as_tensor(list(text), dtype=torch.long)
    log_probs = logits.detach().float().log_softmax(dim=1).permute(2, 0, 1).cpu()  # (T, B, C)
    nll = F.ctc_loss(log_probs, targets, lengths.cpu().long(), sizes, blank=BLANK_INDEX, reduction="none")
    per_char = torch.exp(-nll.double() / sizes.clamp(min=1))
    return torch.where(sizes > 0, per_char, 0.0).nan_to_num(0.0).numpy()


def ctc_paths(log_probs: np.ndarray, lengths: np.ndarray, texts: Sequence[Sequence[int]]) -> np.ndarray:
    """The likeliest CTC state path (B, T) that spells each text: state 2k+1 is the k-th character, even states blanks.

    log_probs (B, T, C) are log-posteriors, lengths (B,) each row's own steps (the path's states past them repeat
    its last state), texts the label indices (no blanks). A text that its steps cannot spell (too few of them) gets
    the path of all -1. Vectorised over the batch and the states; the loop runs over time.
    """
    batch, steps, _ = log_probs.shape
    most = max((len(t) for t in texts), default=0)
    states = 2 * most + 1
    ext = np.full((batch, states), BLANK_INDEX, dtype=np.int64)
    for b, text in enumerate(texts):
        ext[b, 1 : 2 * len(text) : 2] = np.asarray(text, dtype=np.int64)
    n_states = 2 * np.array([len(t) for t in texts], dtype=np.int64) + 1  # (B,)
    valid = np.arange(states)[None, :] < n_states[:, None]  # (B, S)
    emit = np.take_along_axis(log_probs, np.broadcast_to(ext[:, None, :], (batch, steps, states)), axis=2)
    emit = np.where(valid[:, None, :], emit, -np.inf)  # (B, T, S)
    skip = np.zeros((batch, states), dtype=bool)  # may come from two states back: a label unlike the one before
    skip[:, 2:] = (ext[:, 2:] != BLANK_INDEX) & (ext[:, 2:] != ext[:, :-2])
    delta = np.full((batch, states), -np.inf)
    delta[:, :2] = emit[:, 0, :2]
    back = np.zeros((batch, steps, states), dtype=np.int8)  # how many states the path moved to reach each state
    for t in range(1, steps):
        one, two = np.full_like(delta, -np.inf), np.full_like(delta, -np.inf)  # from one state back, from two
        one[:, 1:], two[:, 2:] = delta[:, :-1], delta[:, :-2]
        two[~skip] = -np.inf
        moves = np.stack([delta, one, two])  # (3, B, S)
        back[:, t] = moves.argmax(axis=0)
        active = (t < lengths)[:, None]
        delta = np.where(active, moves.max(axis=0) + emit[:, t], delta)
    rows = np.arange(batch)
    last_blank, last_char = n_states - 1, np.maximum(n_states - 2, 0)
    end = np.where(delta[rows, last_char] > delta[rows, last_blank], last_char, last_blank)
    feasible = np.isfinite(delta[rows, end])
    path = np.empty((batch, steps), dtype=np.int64)
    state = end.copy()
    for t in range(steps - 1, -1, -1):
        path[:, t] = state
        if t > 0:
            state = state - np.where(t < lengths, back[rows, t, state], 0)
    path[~feasible] = -1
    return path


def ctc_confidences(logits: torch.Tensor, lengths: torch.Tensor, texts: Sequence[Sequence[int]]) -> list[Confidence]:
    """The confidences of decoded texts (label indices) given the logits (B, C, T) and steps (B,) they came from."""
    log_probs = logits.detach().double().log_softmax(dim=1).permute(0, 2, 1).cpu().numpy()  # (B, T, C)
    steps = lengths.cpu().numpy().astype(np.int64)
    texts = [[i for i in t if i not in (BLANK_INDEX, PAD_INDEX)] for t in texts]
    paths = ctc_paths(log_probs, steps, texts)
    lines = text_probabilities(logits, lengths, texts)
    out = []
    for b, text in enumerate(texts):
        chars = np.zeros(len(text))
        path = paths[b, : steps[b]]
        if len(text) and path[0] >= 0:
            on_char = path % 2 == 1
            frames = np.flatnonzero(on_char)
            labels = np.asarray(text)[(path[frames] - 1) // 2]
            np.maximum.at(chars, (path[frames] - 1) // 2, np.exp(log_probs[b, frames, labels]))
        out.append(Confidence(chars=chars, line=float(lines[b])))
    return out


def window_confidences(logits: torch.Tensor, texts: Sequence[Sequence[int]]) -> list[Confidence]:
    """A per-window model's confidences: each character is one window (window_decode), read with this probability.

    An empty window reads as a space, so a space's probability is that of blank, padding and space together.
    """
    probs = logits.detach().float().softmax(dim=1).cpu().numpy().astype(np.float64)  # (B, C, L)
    empty = probs[:, BLANK_INDEX] + probs[:, PAD_INDEX] + probs[:, SPACE_INDEX]  # (B, L)
    out = []
    for b, text in enumerate(texts):
        idx = np.asarray(text, dtype=np.int64)
        windows = np.arange(len(idx))
        chars = np.where(idx == SPACE_INDEX, empty[b, windows], probs[b, idx, windows]) if len(idx) else np.zeros(0)
        out.append(Confidence(chars=chars, line=geometric_mean(chars)))
    return out
