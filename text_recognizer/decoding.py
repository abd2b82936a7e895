"""CTC prefix beam search with an optional character language model (shallow fusion).

Written here rather than taken from a library: torchaudio's ctc_decoder (2.11.1, the newest
wheel) cannot load its native library against torch 2.13; flashlight-text 0.0.7 installs, but
calls a Python LM once per hypothesis and token (24 lines/s at beam 16 here, with a trivial LM)
and merges hypotheses that share an LM state (for a character n-gram: the last n-1 characters).
This search keeps every line of a batch in numpy arrays, one vectorised update per time step.

Each hypothesis is a prefix with log p_blank / log p_non_blank (paths ending in a blank or in
its last label); it is ranked by log P_ctc(prefix) + lm_weight * log P_lm(prefix) +
length_bonus * len(prefix), and at the end the LM's end-of-line probability joins the score.
Prefixes are told apart by a 64-bit rolling hash, so a prefix reached both by staying and by
extending its parent is merged (its probabilities summed), as prefix beam search requires.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from text_recognizer.char_lm import CharLM
from text_recognizer.metadata import BLANK_INDEX, PAD_INDEX

_MUL1, _MUL2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9)
_NONE = -2  # length of an empty beam slot: no prefix length matches it


@dataclass(frozen=True)
class BeamResult:
    """Best labelling per line and the parts of its score (natural logs)."""

    labels: list[list[int]]  # indices into the tokens, blanks removed
    ctc_log_probs: np.ndarray  # (B,) log P_ctc(labelling) summed over the paths the beam kept
    lm_log_probs: np.ndarray  # (B,) log P_lm(labelling), end of line included; 0 without an LM
    scores: np.ndarray  # (B,) ctc + lm_weight * lm + length_bonus * length


def _extend_hash(h: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Hash of a prefix with `labels` appended (splitmix64-style mixing, so collisions are ~2^-64)."""
    x = (h * _MUL1) ^ (labels.astype(np.uint64) + np.uint64(1))
    x ^= x >> np.uint64(31)
    x *= _MUL2
    return x ^ (x >> np.uint64(29))


def beam_search(
    logits: torch.Tensor,
    *,
    beam_width: int,
    lm: CharLM | None = None,
    lm_weight: float = 0.0,
    input_lengths: torch.Tensor | None = None,
    length_bonus: float = 0.0,
    top_k: int = 16,
    blank: int = BLANK_INDEX,
    excluded: Collection[int] = (PAD_INDEX,),
) -> BeamResult:
    """CTC prefix beam search over (B, C, T) logits, all lines of the batch at once.

    Per step only the `top_k` most likely labels of each line extend the beam (the pruning that
    keeps T x C x beam small); `excluded` classes (the padding token) are never emitted. Steps at
    or past a line's `input_lengths` are ignored. With `lm`, its classes must be these C classes;
    lm_weight 0 (or lm None) decodes on the acoustic scores alone.
    """
    if beam_width < 1 or top_k < 1:
        raise ValueError(f"beam_width and top_k must be >= 1, got {beam_width} and {top_k}")
    batch, classes, steps = logits.shape
    if lm is not None and len(lm.tokens) != classes:
        raise ValueError(f"the LM has {len(lm.tokens)} classes, the logits {classes}")
    use_lm = lm is not None and lm_weight != 0.0
    lengths = np.full(batch, steps) if input_lengths is None else input_lengths.detach().cpu().numpy().astype(int)
    with torch.no_grad():
        log_probs = F.log_softmax(logits.detach().cpu().double(), dim=1).permute(0, 2, 1).numpy()
    emit = np.array([c for c in range(classes) if c != blank and c not in set(excluded)], dtype=np.int64)
    k = min(top_k, len(emit))
    kk = max(k, 1)  # divisor when decoding a flat candidate index
    w = beam_width
    rows = np.arange(batch)[:, None]  # (B, 1) for indexing (B, W) arrays

    pb = np.full((batch, w), -np.inf)
    pb[:, 0] = 0.0  # the empty prefix: every path so far is blanks
    pnb = np.full((batch, w), -np.inf)
    length = np.full((batch, w), _NONE)
    length[:, 0] = 0
    last = np.full((batch, w), -1)  # last label, -1 for the empty prefix
    hsh = np.zeros((batch, w), np.uint64)
    parent = np.zeros((batch, w), np.uint64)
    lm_acc = np.zeros((batch, w))
    lm_state = np.full((batch, w), lm.initial_state if lm is not None else 0, dtype=np.int64)
    lm_row = np.zeros((batch, w, classes))  # log P_lm(next class | prefix) of every beam slot
    if use_lm:
        lm_row[:] = lm.next_log_probs(np.array([lm.initial_state]))[0]
    row_offsets = (np.arange(batch * w) * classes).reshape(batch, w, 1)  # flat np.take is 4x take_along_axis
    back_src, back_label = [], []

    for t in range(steps):
        active = t < lengths
        if not active.any():
            break
        y = log_probs[:, t, :]  # (B, C)
        # Candidates: each beam stays (a blank, or its last label again) or grows by one of the top K labels.
        total = np.logaddexp(pb, pnb)
        stay_pb = total + y[:, blank, None]
        stay_pnb = np.where(length > 0, pnb + np.take_along_axis(y, np.maximum(last, 0), axis=1), -np.inf)

        if k == len(emit):
            top = np.broadcast_to(emit, (batch, k))
        else:
            top = emit[np.argpartition(-y[:, emit], k - 1, axis=1)[:, :k]]  # (B, K) labels
        y_top = np.take_along_axis(y, top, axis=1)
        repeat = top[:, None, :] == last[:, :, None]  # a repeat needs a blank in between
        ext_pnb = np.where(repeat, pb[:, :, None], total[:, :, None]) + y_top[:, None, :]  # (B, W, K)

        # Beam j may be beam i plus one label: its p_non_blank also gains i's extension (merge).
        b, j, i = np.nonzero((parent[:, :, None] == hsh[:, None, :]) & (length[:, :, None] == length[:, None, :] + 1))
        label = last[b, j]
        gain = np.where(label == last[b, i], pb[b, i], total[b, i]) + y[b, label]
        stay_pnb[b, j] = np.logaddexp(stay_pnb[b, j], gain)
        m, pos = np.nonzero(top[b] == label[:, None])
        ext_pnb[b[m], i[m], pos] = -np.inf  # that extension now lives in beam j

        stay_score = np.logaddexp(stay_pb, stay_pnb) + length_bonus * length
        ext_score = ext_pnb + length_bonus * (length[:, :, None] + 1)
        if use_lm:
            lm_top = np.take(lm_row, row_offsets + top[:, None, :])  # (B, W, K)
            stay_score = stay_score + lm_weight * lm_acc
            ext_score = ext_score + lm_weight * (lm_acc[:, :, None] + lm_top)
        # Keep the W best candidates; a stay keeps its slot's state, a growth derives it from its source slot.
        candidates = np.concatenate([stay_score, ext_score.reshape(batch, w * k)], axis=1)
        if candidates.shape[1] > w:  # the W best, in no particular order
            pick = np.argpartition(-candidates, w - 1, axis=1)[:, :w]
        else:
            pick = np.broadcast_to(np.arange(w), (batch, w))
        valid = np.isfinite(np.take_along_axis(candidates, pick, axis=1))
        stay = pick < w
        src = np.where(stay, pick, (pick - w) // kk)
        slot = np.where(stay, 0, (pick - w) % kk)
        new_label = np.where(stay, -1, top[rows, slot])

        new_pb = np.where(stay & valid, stay_pb[rows, src], -np.inf)
        new_pnb = np.where(valid, np.where(stay, stay_pnb[rows, src], ext_pnb[rows, src, slot]), -np.inf)
        new_length = np.where(valid, length[rows, src] + ~stay, _NONE)
        new_last = np.where(stay, last[rows, src], new_label)
        new_hsh = np.where(stay, hsh[rows, src], _extend_hash(hsh[rows, src], np.maximum(new_label, 0)))
        new_parent = np.where(stay, parent[rows, src], hsh[rows, src])
        keep = active[:, None]  # finished lines keep their beam unchanged
        if use_lm:
            new_lm_acc = np.where(stay, lm_acc[rows, src], lm_acc[rows, src] + lm_top[rows, src, slot])
            flat_src = (rows * w + src).reshape(-1)
            new_lm_state = lm_state[rows, src]
            new_lm_row = lm_row.reshape(batch * w, classes)[flat_src].reshape(batch, w, classes)
            grown = ~stay & valid & keep
            new_lm_state[grown] = lm.advance(new_lm_state[grown], new_label[grown])
            states, inverse = np.unique(new_lm_state[grown], return_inverse=True)  # beams share contexts
            new_lm_row[grown] = lm.next_log_probs(states)[inverse.reshape(-1)]
            if active.all():
                lm_acc, lm_state, lm_row = new_lm_acc, new_lm_state, new_lm_row
            else:
                lm_acc, lm_state = np.where(keep, new_lm_acc, lm_acc), np.where(keep, new_lm_state, lm_state)
                lm_row = np.where(keep[:, :, None], new_lm_row, lm_row)

        pb, pnb = np.where(keep, new_pb, pb), np.where(keep, new_pnb, pnb)
        length, last = np.where(keep, new_length, length), np.where(keep, new_last, last)
        hsh, parent = np.where(keep, new_hsh, hsh), np.where(keep, new_parent, parent)
        back_src.append(np.where(keep, src, np.arange(w)))
        back_label.append(np.where(keep, new_label, -1))

    ctc = np.logaddexp(pb, pnb)
    lm_total = lm_acc + lm.end_log_probs(lm_state.reshape(-1)).reshape(batch, w) if use_lm else np.zeros_like(ctc)
    final = ctc + (lm_weight * lm_total if use_lm else 0.0) + length_bonus * np.maximum(length, 0)
    best = np.argmax(final, axis=1)
    labels = _backtrack(back_src, back_label, best)
    pick_best = (np.arange(batch), best)
    return BeamResult(labels, ctc[pick_best], lm_total[pick_best], final[pick_best])


def _backtrack(back_src: list[np.ndarray], back_label: list[np.ndarray], slot: np.ndarray) -> list[list[int]]:
    """Labels of the beam slots `slot` (B,) after the last step, read back through the pointers."""
    rows = np.arange(len(slot))
    collected = []
    for src, label in zip(reversed(back_src), reversed(back_label), strict=True):
        collected.append(label[rows, slot])
        slot = src[rows, slot]
    if not collected:
        return [[] for _ in rows]
    emitted = np.stack(collected[::-1], axis=1)  # (B, steps), -1 where nothing was appended
    return [row[row >= 0].tolist() for row in emitted]


def beam_decode(
    logits: torch.Tensor,
    *,
    beam_width: int,
    lm: CharLM | None = None,
    lm_weight: float = 0.0,
    input_lengths: torch.Tensor | None = None,
    length_bonus: float = 0.0,
    top_k: int = 16,
) -> list[list[int]]:
    """Best labelling of each line (indices into LINE_TOKENS, no blanks), as ctc.greedy_decode returns."""
    return beam_search(
        logits,
        beam_width=beam_width,
        lm=lm,
        lm_weight=lm_weight,
        input_lengths=input_lengths,
        length_bonus=length_bonus,
        top_k=top_k,
    ).labels
