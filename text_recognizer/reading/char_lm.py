"""Character n-gram language model for CTC beam search (interpolated Kneser-Ney).

Each line of the training text is one sequence: padded on the left with order-1 start
symbols and closed by an end symbol, so the model scores whole lines, ends included.
Smoothing is interpolated Kneser-Ney (Chen & Goodman 1998) with one absolute discount per
order, D = n1 / (n1 + 2 n2): the highest order uses raw counts, lower orders continuation
counts (how many distinct symbols precede the n-gram), except n-grams that begin with the
start symbol, which keep raw counts (as KenLM does; they have no other left context), and
the unigram level interpolates with the uniform distribution, so no symbol gets zero mass.

A decoder state is one int64: the last order-1 context symbols in base V (the most recent
in the lowest digit, start symbol = 0), so advancing and backing off are integer arithmetic
and a whole beam is scored with one call (`next_log_probs`, a row over the C classes).
Train it on text shaped like the decoded lines (e.g. phrases drawn by sample_phrases from the
train pool): line starts and ends are modelled from the training lines' starts and ends.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from text_recognizer.metadata import LINE_TOKENS

_BOS = 0  # start symbol, context only; characters are 1..n_chars; end symbol is n_chars + 1
_CHUNK = 65536  # rows per next-distribution call when scoring long texts
_DENSE_LIMIT = 1 << 20  # orders with at most this many (context, outcome) cells keep full rows (8 MB)


@dataclass(frozen=True)
class _Order:
    """The n-grams of one order, sorted by (context, symbol), with their smoothed terms."""

    contexts: np.ndarray  # (H,) int64 distinct context codes, sorted
    starts: np.ndarray  # (H + 1,) int64 row pointers into the gram arrays
    symbols: np.ndarray  # (G,) int64 column (outcome - 1) of each gram
    terms: np.ndarray  # (G,) float64 max(a - D, 0) / A(h)
    gamma: np.ndarray  # (H,) float64 back-off mass D * N1+(h .) / A(h)


class CharLM:
    """Interpolated Kneser-Ney character n-gram model over the single-character tokens.

    Build one with `CharLM.fit(text, order)`; `save`/`load` keep the adjusted counts (.npz).
    """

    def __init__(
        self,
        order: int,
        chars: str,
        keys: Sequence[np.ndarray],
        counts: Sequence[np.ndarray],
        discounts: Sequence[float],
        tokens: Sequence[str] = LINE_TOKENS,
        fallback: str | None = " ",
    ) -> None:
        _check_order(order, len(chars))
        self.order = order
        self.chars = chars
        self.tokens = tuple(tokens)
        self.fallback = fallback if fallback is not None and fallback in chars else None
        self.n_out = len(chars) + 1  # characters and the end symbol
        self.base = len(chars) + 1  # context alphabet: start symbol and characters
        self.key_base = len(chars) + 2  # gram key = context * key_base + outcome (1..n_out)
        if len(keys) != order or len(counts) != order or len(discounts) != order:
            raise ValueError("need keys, counts and discounts for every order")
        self.keys = [np.asarray(k, dtype=np.int64) for k in keys]
        self.counts = [np.asarray(c, dtype=np.int64) for c in counts]
        self.discounts = [float(d) for d in discounts]
        self._char_index = {c: i + 1 for i, c in enumerate(chars)}
        # class (index into tokens) -> character symbol, 0 for tokens the model has no character for
        self.class_symbols = np.array([self._char_index.get(t, 0) if len(t) == 1 else 0 for t in self.tokens])
        self._orders = [self._derive(k) for k in range(order)]
        self._dense = self._dense_rows()

    # ---------------------------------------------------------------- estimation
    @classmethod
    def fit(
        cls, text: str, order: int = 6, *, tokens: Sequence[str] = LINE_TOKENS, fallback: str | None = " "
    ) -> CharLM:
        """Estimate the model from `text`, one sequence per line ("\\n"); counting is all numpy.

        Characters outside the printable tokens become `fallback` (dropped if None or not a token).
        """
        chars = "".join(t for t in tokens if len(t) == 1 and t != "\n")
        if not chars:
            raise ValueError("the tokens hold no single characters")
        _check_order(order, len(chars))
        symbols, lengths = _encode_lines(text, chars, fallback)
        base, key_base = len(chars) + 1, len(chars) + 2
        contexts, outcomes = _contexts(symbols, lengths, order, base, end=len(chars) + 1)
        keys: list[np.ndarray] = [np.empty(0, np.int64)] * order
        counts: list[np.ndarray] = [np.empty(0, np.int64)] * order
        keys[-1], counts[-1] = np.unique(contexts * key_base + outcomes, return_counts=True)
        for k in range(order - 1, 0, -1):  # k = context length of the lower order
            upper, upper_counts = keys[k], counts[k]
            ctx, out = np.divmod(upper, key_base)
            lower_ctx = ctx % base ** (k - 1)  # drop the oldest context symbol
            starts_with_bos = (lower_ctx // base ** (k - 2) == _BOS) if k >= 2 else np.zeros(len(ctx), bool)
            weights = np.where(starts_with_bos, upper_counts, 1)  # raw counts after the start, else N1+(. h c)
            keys[k - 1], inverse = np.unique(lower_ctx * key_base + out, return_inverse=True)
            counts[k - 1] = np.bincount(inverse, weights=weights, minlength=len(keys[k - 1])).astype(np.int64)
        discounts = [_discount(c) for c in counts]
        return cls(order, chars, keys, counts, discounts, tokens=tokens, fallback=fallback)

    # ---------------------------------------------------------------- derived arrays
    def _derive(self, k: int) -> _Order:
        keys, counts, d = self.keys[k], self.counts[k], self.discounts[k]
        ctx, out = np.divmod(keys, self.key_base)
        contexts, starts = np.unique(ctx, return_index=True)
        starts = np.append(starts, len(keys)).astype(np.int64)
        totals = np.add.reduceat(counts, starts[:-1]).astype(np.float64) if len(keys) else np.zeros(0)
        row = np.repeat(np.arange(len(contexts)), np.diff(starts))
        terms = np.maximum(counts - d, 0.0) / totals[row]
        gamma = d * np.diff(starts) / totals
        return _Order(contexts, starts, out - 1, terms, gamma)

    def _dense_rows(self) -> list[np.ndarray]:
        """Full interpolated rows P_k(. | h) of the low orders, whose contexts are few: the scatter of their
        long rows would dominate a query. A context seen at one order has its suffix seen one order down."""
        first = self._orders[0]
        unigram = np.full(self.n_out, first.gamma[0] / self.n_out if len(first.gamma) else 1.0 / self.n_out)
        unigram[first.symbols] += first.terms
        dense = [unigram[None, :]]
        for k in range(1, self.order):
            level = self._orders[k]
            if len(level.contexts) * self.n_out > _DENSE_LIMIT:
                break
            below = self._orders[k - 1].contexts
            rows = dense[-1][np.searchsorted(below, level.contexts % self.base ** (k - 1))] * level.gamma[:, None]
            rows[np.repeat(np.arange(len(level.contexts)), np.diff(level.starts)), level.symbols] += level.terms
            dense.append(rows)
        return dense

    # ---------------------------------------------------------------- queries
    @property
    def initial_state(self) -> int:
        """State before the first character of a line (all start symbols)."""
        return 0

    def advance(self, states: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """States after appending the token classes `classes` (same shape) to `states`."""
        symbols = self.class_symbols[np.asarray(classes)]
        if self.order == 1:
            return np.zeros_like(np.asarray(states, dtype=np.int64))
        return (np.asarray(states, dtype=np.int64) * self.base + symbols) % self.base ** (self.order - 1)

    def next_probs(self, states: np.ndarray) -> np.ndarray:
        """(N, n_chars + 1) probabilities of each character and (last column) the end, given each state."""
        states = np.asarray(states, dtype=np.int64).reshape(-1)
        deepest = np.zeros(len(states), dtype=np.int64)  # dense order of the longest seen context
        found = np.zeros(len(states), dtype=np.int64)  # its row there
        for k in range(1, len(self._dense)):
            contexts = self._orders[k].contexts
            codes = states % self.base**k
            row = np.searchsorted(contexts, codes).clip(max=len(contexts) - 1)
            seen = contexts[row] == codes
            deepest[seen], found[seen] = k, row[seen]
        probs = np.empty((len(states), self.n_out))
        for k, rows in enumerate(self._dense):
            at = np.flatnonzero(deepest == k)
            probs[at] = rows[found[at]]
        for k in range(len(self._dense), self.order):
            level = self._orders[k]
            codes = states % self.base**k
            row = np.searchsorted(level.contexts, codes).clip(max=len(level.contexts) - 1)
            seen = np.flatnonzero(level.contexts[row] == codes)  # unseen contexts back off with weight 1
            row = row[seen]
            probs[seen] *= level.gamma[row][:, None]
            begin, size = level.starts[row], level.starts[row + 1] - level.starts[row]
            which = np.repeat(np.arange(len(seen)), size)
            grams = np.arange(size.sum()) - np.repeat(np.cumsum(size) - size, size) + begin[which]
            probs[seen[which], level.symbols[grams]] += level.terms[grams]
        return probs

    def next_log_probs(self, states: np.ndarray) -> np.ndarray:
        """(N, C) log P(class | state) over the token classes; -inf where a class is no character."""
        probs = self.next_probs(states)
        out = np.full((probs.shape[0], len(self.tokens)), -np.inf)
        is_char = self.class_symbols > 0
        out[:, is_char] = np.log(probs[:, self.class_symbols[is_char] - 1])
        return out

    def end_log_probs(self, states: np.ndarray) -> np.ndarray:
        """(N,) log P(end of line | state)."""
        return np.log(self.next_probs(states)[:, -1])

    def _line_scores(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(log-probability of every predicted symbol, its line number), ends included."""
        symbols, lengths = _encode_lines(text, self.chars, self.fallback)
        contexts, outcomes = _contexts(symbols, lengths, self.order, self.base, end=self.n_out)
        scores = np.empty(len(outcomes))
        for i in range(0, len(outcomes), _CHUNK):
            probs = self.next_probs(contexts[i : i + _CHUNK])
            scores[i : i + _CHUNK] = np.log(probs[np.arange(len(probs)), outcomes[i : i + _CHUNK] - 1])
        return scores, np.repeat(np.arange(len(lengths)), lengths + 1)

    def line_log_probs(self, text: str) -> np.ndarray:
        """log P(line) (natural log, end symbol included) of every line of `text`."""
        scores, line = self._line_scores(text)
        return np.bincount(line, weights=scores, minlength=line.max() + 1 if len(line) else 0)

    def perplexity(self, text: str) -> float:
        """Per-symbol perplexity on held-out `text` (each line's characters and its end count)."""
        scores, _ = self._line_scores(text)
        return math.exp(-float(scores.mean()))

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str] | BinaryIO) -> None:
        """Write the adjusted counts and settings to one compressed .npz (the derived terms are recomputed)."""
        meta = {"order": self.order, "chars": self.chars, "tokens": list(self.tokens), "fallback": self.fallback}
        arrays = {f"keys{k}": self.keys[k] for k in range(self.order)}
        for k, counts in enumerate(self.counts):
            arrays[f"counts{k}"] = counts.astype(np.int32 if counts.max(initial=0) < 2**31 else np.int64)
        np.savez_compressed(path, meta=np.array(json.dumps(meta)), discounts=np.array(self.discounts), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str], tokens: Sequence[str] | None = None) -> CharLM:
        """Read a model written by `save`; if `tokens` is given it must match the saved ones."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            order = int(meta["order"])
            if tokens is not None and tuple(tokens) != tuple(meta["tokens"]):
                raise ValueError(f"{path}: the model was estimated for other tokens")
            return cls(
                order,
                meta["chars"],
                [data[f"keys{k}"] for k in range(order)],
                [data[f"counts{k}"] for k in range(order)],
                data["discounts"].tolist(),
                tokens=meta["tokens"],
                fallback=meta["fallback"],
            )


def _check_order(order: int, n_chars: int) -> None:
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    if (n_chars + 1) ** (order - 1) * (n_chars + 2) >= 2**62:
        raise ValueError(f"order {order} is too high for {n_chars} characters (gram keys are int64)")


def _discount(counts: np.ndarray) -> float:
    """Chen & Goodman's single discount n1 / (n1 + 2 n2), kept inside (0, 1)."""
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    if n1 == 0 or n2 == 0:
        return 0.5
    return min(max(n1 / (n1 + 2 * n2), 0.05), 0.95)


def _contexts(
    symbols: np.ndarray, lengths: np.ndarray, order: int, base: int, end: int
) -> tuple[np.ndarray, np.ndarray]:
    """(context code of the order-1 preceding symbols, outcome) for every character and line end."""
    pad = order - 1
    n_lines = len(lengths)
    total = int(lengths.sum()) + n_lines * (pad + 1)
    padded = np.full(total, _BOS, dtype=np.int64)
    line_start = np.zeros(n_lines, dtype=np.int64)
    np.cumsum(lengths[:-1] + pad + 1, out=line_start[1:])
    line_of = np.repeat(np.arange(n_lines), lengths)
    offset = np.arange(len(symbols)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded[line_start[line_of] + pad + offset] = symbols
    ends = line_start + pad + lengths
    padded[ends] = end
    predicted = np.flatnonzero(padded != _BOS)
    contexts = np.zeros(len(predicted), dtype=np.int64)
    for j in range(1, pad + 1):
        contexts += padded[predicted - j] * base ** (j - 1)
    return contexts, padded[predicted]


def _encode_lines(text: str, chars: str, fallback: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(symbols 1..len(chars) of all lines concatenated, length of each line); others -> fallback."""
    index = {c: i + 1 for i, c in enumerate(chars)}
    text = text.replace("\r", "")
    if text.endswith("\n"):
        text = text[:-1]
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    uniq, inverse = np.unique(points, return_inverse=True)
    other = index.get(fallback, -1) if fallback is not None else -1
    table = np.array([-2 if p == 10 else index.get(chr(p), other) for p in uniq.tolist()], dtype=np.int64)
    mapped = table[inverse].reshape(-1)
    is_newline = mapped == -2
    line_of = np.cumsum(is_newline) - is_newline  # line number of every code point
    keep = mapped > 0
    lengths = np.bincount(line_of[keep], minlength=int(is_newline.sum()) + 1)
    return mapped[keep], lengths
