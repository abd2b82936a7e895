"""CTC prefix beam search with an optional character language model (shallow fusion).

Written here rather than taken from a library: torchaudio's ctc_decoder (2.11.1, the newest
wheel) cannot load its native library against torch 2.13. flashlight-text 0.0.7 does install,
and `benchmarks/decode_speed.py --against flashlight` runs its C++ decoder with KenLM on this
model exported as ARPA: in the same runs on one thread it read 27-60 lines/s where this search
read 155-245 (beam 16, order 6), and its readings of peaky or text-like logits were within
0.4 % CER of these (docs/decisions.md). It also merges hypotheses that share an LM state (for a
character n-gram: the last n-1 characters), so it is no exact prefix search and cannot be
checked against brute force as this one is (tests/test_decoding.py). This search
keeps every line of a batch in numpy arrays, one vectorised update per time step, in four named
steps: extend the prefixes by a frame, merge equal prefixes, score with the LM, prune to the beam.

Each hypothesis is a prefix with log p_blank / log p_non_blank (paths ending in a blank or in
its last label); it is ranked by log P_ctc(prefix) + lm_weight * log P_lm(prefix) +
length_bonus * len(prefix), and at the end the LM's end-of-line probability joins the score.
Prefixes are told apart by a 64-bit rolling hash, so a prefix reached both by staying and by
extending its parent is merged (its probabilities summed), as prefix beam search requires.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from text_recognizer.metadata import BLANK_INDEX, PAD_INDEX
from text_recognizer.reading.char_lm import CharLM
from text_recognizer.reading.confidence import DecodedRows

_MUL1, _MUL2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9)
_NONE = -2  # length of an empty beam slot: no prefix length matches it


@dataclass(frozen=True)
class BeamResult:
    """Best labelling per line and the parts of its score (natural logs)."""

    labels: list[list[int]]  # indices into the tokens, blanks removed
    ctc_log_probs: np.ndarray  # (B,) log P_ctc(labelling) summed over the paths the beam kept
    lm_log_probs: np.ndarray  # (B,) log P_lm(labelling), end of line included; 0 without an LM
    scores: np.ndarray  # (B,) ctc + lm_weight * lm + length_bonus * length
    shares: np.ndarray  # (B,) exp(score) of the best over the sum over the final beam: how clearly it won


def _extend_hash(h: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Hash of a prefix with `labels` appended (splitmix64-style mixing, so collisions are ~2^-64)."""
    x = (h * _MUL1) ^ (labels.astype(np.uint64) + np.uint64(1))
    x ^= x >> np.uint64(31)
    x *= _MUL2
    return x ^ (x >> np.uint64(29))


@dataclass(frozen=True)
class _Beams:
    """The W prefixes kept for each line, one (B, W) array per field (an empty slot: length _NONE, -inf)."""

    pb: np.ndarray  # log p of the paths that spell the prefix and end in a blank
    pnb: np.ndarray  # log p of the paths that spell the prefix and end in its last label
    length: np.ndarray  # number of labels; _NONE for an empty slot
    last: np.ndarray  # last label, -1 for the empty prefix
    hsh: np.ndarray  # uint64 hash of the prefix
    parent: np.ndarray  # uint64 hash of the prefix less its last label
    lm_acc: np.ndarray  # log P_lm(prefix), end of line not included (0 without an LM)
    lm_state: np.ndarray  # int64 LM state after the prefix
    lm_row: np.ndarray  # (B, W, C) log P_lm(next class | prefix); zeros without an LM


@dataclass(frozen=True)
class _Step:
    """One frame's candidates: every slot stays (a blank or its last label again) or grows by a top label."""

    y: np.ndarray  # (B, C) log probabilities of the frame
    top: np.ndarray  # (B, K) labels that may extend a prefix
    total: np.ndarray  # (B, W) log p(prefix) before the frame, pb and pnb summed
    stay_pb: np.ndarray  # (B, W)
    stay_pnb: np.ndarray  # (B, W)
    ext_pnb: np.ndarray  # (B, W, K) slot w grown by label top[k]


@dataclass(frozen=True)
class _Choice:
    """The W candidates a line keeps, as (B, W) arrays."""

    src: np.ndarray  # slot the candidate comes from
    stay: np.ndarray  # True: the source prefix unchanged; False: grown by `label`
    slot: np.ndarray  # column of `label` in the step's top labels (0 for a stay)
    label: np.ndarray  # label appended, -1 for a stay
    valid: np.ndarray  # False for a candidate of probability zero (the slot stays empty)


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
    batch, classes, _ = logits.shape
    if lm is not None and len(lm.tokens) != classes:
        raise ValueError(f"the LM has {len(lm.tokens)} classes, the logits {classes}")
    fused = lm if lm is not None and lm_weight != 0.0 else None
    log_probs, lengths = _frames(logits, input_lengths)
    emit = np.array([c for c in range(classes) if c != blank and c not in set(excluded)], dtype=np.int64)
    k = min(top_k, len(emit))
    beams = _initial_beams(batch, beam_width, classes, fused)
    back_src, back_label = [], []
    for t in range(log_probs.shape[1]):
        active = t < lengths
        if not active.any():
            break
        step = _extend(beams, log_probs[:, t, :], emit, k, blank)
        _merge_equal_prefixes(beams, step)
        stay_score, ext_score, lm_top = _score(beams, step, length_bonus, lm_weight if fused is not None else None)
        choice = _prune(stay_score, ext_score, step.top)
        beams = _keep_finished(beams, _advance(beams, step, choice, fused, lm_top, active), active)
        keep = active[:, None]  # a finished line's slots point at themselves and append nothing
        back_src.append(np.where(keep, choice.src, np.arange(beam_width)))
        back_label.append(np.where(keep, choice.label, -1))
    return _best(beams, back_src, back_label, fused, lm_weight, length_bonus)


def _frames(logits: torch.Tensor, input_lengths: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
    """((B, T, C) float64 log probabilities, (B,) number of frames of each line)."""
    batch, _, steps = logits.shape
    lengths = np.full(batch, steps) if input_lengths is None else input_lengths.detach().cpu().numpy().astype(int)
    with torch.no_grad():
        log_probs = F.log_softmax(logits.detach().cpu().double(), dim=1).permute(0, 2, 1).numpy()
    return log_probs, lengths


def _initial_beams(batch: int, w: int, classes: int, lm: CharLM | None) -> _Beams:
    """Slot 0 holds the empty prefix (every path so far is blanks); the other W - 1 slots are empty."""
    pb = np.full((batch, w), -np.inf)
    pb[:, 0] = 0.0
    length = np.full((batch, w), _NONE)
    length[:, 0] = 0
    lm_row = np.zeros((batch, w, classes))
    if lm is not None:
        lm_row[:] = lm.next_log_probs(np.array([lm.initial_state]))[0]
    return _Beams(
        pb=pb,
        pnb=np.full((batch, w), -np.inf),
        length=length,
        last=np.full((batch, w), -1),
        hsh=np.zeros((batch, w), np.uint64),
        parent=np.zeros((batch, w), np.uint64),
        lm_acc=np.zeros((batch, w)),
        lm_state=np.full((batch, w), lm.initial_state if lm is not None else 0, dtype=np.int64),
        lm_row=lm_row,
    )


def _extend(beams: _Beams, y: np.ndarray, emit: np.ndarray, k: int, blank: int) -> _Step:
    """Extend every prefix by frame `y` (B, C): it stays, or grows by one of the line's K likeliest labels."""
    batch = len(y)
    total = np.logaddexp(beams.pb, beams.pnb)
    stay_pb = total + y[:, blank, None]
    last_prob = np.take_along_axis(y, np.maximum(beams.last, 0), axis=1)
    stay_pnb = np.where(beams.length > 0, beams.pnb + last_prob, -np.inf)
    if k == len(emit):
        top = np.broadcast_to(emit, (batch, k))
    else:
        top = emit[np.argpartition(-y[:, emit], k - 1, axis=1)[:, :k]]  # (B, K) labels
    y_top = np.take_along_axis(y, top, axis=1)
    repeat = top[:, None, :] == beams.last[:, :, None]  # a repeat needs a blank in between
    ext_pnb = np.where(repeat, beams.pb[:, :, None], total[:, :, None]) + y_top[:, None, :]  # (B, W, K)
    return _Step(y, top, total, stay_pb, stay_pnb, ext_pnb)


def _merge_equal_prefixes(beams: _Beams, step: _Step) -> None:
    """Where slot j holds slot i's prefix plus one label, i's extension by that label is slot j's
    prefix: add its probability to j's stay and drop it from i's extensions (in place)."""
    parent, hsh, length, last = beams.parent, beams.hsh, beams.length, beams.last
    b, j, i = np.nonzero((parent[:, :, None] == hsh[:, None, :]) & (length[:, :, None] == length[:, None, :] + 1))
    label = last[b, j]
    gain = np.where(label == last[b, i], beams.pb[b, i], step.total[b, i]) + step.y[b, label]
    step.stay_pnb[b, j] = np.logaddexp(step.stay_pnb[b, j], gain)
    m, pos = np.nonzero(step.top[b] == label[:, None])
    step.ext_pnb[b[m], i[m], pos] = -np.inf


def _score(
    beams: _Beams, step: _Step, length_bonus: float, lm_weight: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(stay scores (B, W), extension scores (B, W, K), LM log P of each extension or None without an LM)."""
    stay_score = np.logaddexp(step.stay_pb, step.stay_pnb) + length_bonus * beams.length
    ext_score = step.ext_pnb + length_bonus * (beams.length[:, :, None] + 1)
    if lm_weight is None:
        return stay_score, ext_score, None
    batch, w, classes = beams.lm_row.shape
    row_offsets = (np.arange(batch * w) * classes).reshape(batch, w, 1)  # flat np.take is 4x take_along_axis
    lm_top = np.take(beams.lm_row, row_offsets + step.top[:, None, :])  # (B, W, K)
    stay_score = stay_score + lm_weight * beams.lm_acc
    ext_score = ext_score + lm_weight * (beams.lm_acc[:, :, None] + lm_top)
    return stay_score, ext_score, lm_top


def _prune(stay_score: np.ndarray, ext_score: np.ndarray, top: np.ndarray) -> _Choice:
    """The W best of the W stays and W x K extensions of each line, in no particular order."""
    batch, w, k = ext_score.shape
    candidates = np.concatenate([stay_score, ext_score.reshape(batch, w * k)], axis=1)
    if candidates.shape[1] > w:
        pick = np.argpartition(-candidates, w - 1, axis=1)[:, :w]
    else:
        pick = np.broadcast_to(np.arange(w), (batch, w))
    valid = np.isfinite(np.take_along_axis(candidates, pick, axis=1))
    stay = pick < w
    kk = max(k, 1)  # divisor when decoding a flat candidate index
    src = np.where(stay, pick, (pick - w) // kk)
    slot = np.where(stay, 0, (pick - w) % kk)
    label = np.where(stay, -1, top[np.arange(batch)[:, None], slot])
    return _Choice(src, stay, slot, label, valid)


def _advance(
    beams: _Beams, step: _Step, choice: _Choice, lm: CharLM | None, lm_top: np.ndarray | None, active: np.ndarray
) -> _Beams:
    """The beams after the frame: a stay keeps its source slot's prefix, a growth derives it from its source."""
    src, stay, valid = choice.src, choice.stay, choice.valid
    rows = np.arange(len(src))[:, None]
    hsh = beams.hsh[rows, src]
    if lm is None:
        lm_fields = beams.lm_acc, beams.lm_state, beams.lm_row
    else:
        lm_fields = _advance_lm(beams, choice, lm, lm_top, active)
    return _Beams(
        np.where(stay & valid, step.stay_pb[rows, src], -np.inf),
        np.where(valid, np.where(stay, step.stay_pnb[rows, src], step.ext_pnb[rows, src, choice.slot]), -np.inf),
        np.where(valid, beams.length[rows, src] + ~stay, _NONE),
        np.where(stay, beams.last[rows, src], choice.label),
        np.where(stay, hsh, _extend_hash(hsh, np.maximum(choice.label, 0))),
        np.where(stay, beams.parent[rows, src], hsh),
        *lm_fields,
    )


def _advance_lm(
    beams: _Beams, choice: _Choice, lm: CharLM, lm_top: np.ndarray, active: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lm_acc, lm_state, lm_row) after the frame: a grown prefix adds its label's LM term and moves to the
    next state, whose row of next-class log probabilities is computed once per distinct state."""
    batch, w, classes = beams.lm_row.shape
    rows, src, stay = np.arange(batch)[:, None], choice.src, choice.stay
    lm_acc = np.where(stay, beams.lm_acc[rows, src], beams.lm_acc[rows, src] + lm_top[rows, src, choice.slot])
    lm_state = beams.lm_state[rows, src]
    lm_row = beams.lm_row.reshape(batch * w, classes)[(rows * w + src).reshape(-1)].reshape(batch, w, classes)
    moved = ~stay & choice.valid & active[:, None]
    lm_state[moved] = lm.advance(lm_state[moved], choice.label[moved])
    states, inverse = np.unique(lm_state[moved], return_inverse=True)  # beams share contexts
    lm_row[moved] = lm.next_log_probs(states)[inverse.reshape(-1)]
    return lm_acc, lm_state, lm_row


def _keep_finished(old: _Beams, new: _Beams, active: np.ndarray) -> _Beams:
    """`new` where the line is still active, `old` for the lines whose input has ended."""
    if active.all():
        return new
    keep = active[:, None]
    kept = {}
    for field in fields(_Beams):
        before, after = getattr(old, field.name), getattr(new, field.name)
        if after is before:  # not updated this frame (the LM fields without an LM)
            kept[field.name] = before
        else:
            kept[field.name] = np.where(keep if before.ndim == 2 else keep[:, :, None], after, before)
    return _Beams(**kept)


def _best(
    beams: _Beams,
    back_src: list[np.ndarray],
    back_label: list[np.ndarray],
    lm: CharLM | None,
    lm_weight: float,
    length_bonus: float,
) -> BeamResult:
    """Each line's best slot once the LM's end-of-line term joins the score, and its labels."""
    batch, w = beams.pb.shape
    ctc = np.logaddexp(beams.pb, beams.pnb)
    if lm is not None:
        lm_total = beams.lm_acc + lm.end_log_probs(beams.lm_state.reshape(-1)).reshape(batch, w)
    else:
        lm_total = np.zeros_like(ctc)
    final = ctc + (lm_weight * lm_total if lm is not None else 0.0) + length_bonus * np.maximum(beams.length, 0)
    best = np.argmax(final, axis=1)
    labels = _backtrack(back_src, back_label, best)
    pick_best = (np.arange(batch), best)
    live = np.where(np.isfinite(final), final, -np.inf)  # empty slots (fewer prefixes than the beam) count nothing
    top = live[pick_best]
    shares = np.where(np.isfinite(top), 1.0 / np.exp(live - top[:, None]).sum(axis=1), 0.0)
    return BeamResult(labels, ctc[pick_best], lm_total[pick_best], final[pick_best], shares)


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
    """Best labelling of each line (indices into LINE_TOKENS, no blanks), as ctc.greedy_decode returns, with each
    text's share of its beam as the line confidence (confidence.DecodedRows)."""
    result = beam_search(
        logits,
        beam_width=beam_width,
        lm=lm,
        lm_weight=lm_weight,
        input_lengths=input_lengths,
        length_bonus=length_bonus,
        top_k=top_k,
    )
    return DecodedRows(result.labels, result.shares)
