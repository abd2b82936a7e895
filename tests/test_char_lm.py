"""The character n-gram model: a proper distribution, Kneser-Ney by hand, held-out perplexity, storage."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from text_recognizer.metadata import BLANK_INDEX, LINE_TOKENS, PAD_INDEX
from text_recognizer.reading import char_lm
from text_recognizer.reading.char_lm import CharLM

TOY = ("<blank>", "a", "b")
WORDS = ("the", "of", "and", "to", "a", "in", "that", "is", "was", "he", "for", "it", "with", "as", "his", "on")


def english_like(rng: np.random.Generator, lines: int) -> str:
    """Lines of words drawn with Zipf-like weights: structure an n-gram model can learn."""
    weights = 1.0 / np.arange(1, len(WORDS) + 1)
    weights /= weights.sum()
    out = []
    for n in rng.integers(1, 7, size=lines).tolist():
        out.append(" ".join(rng.choice(WORDS, size=n, p=weights).tolist()))
    return "\n".join(out)


def states_of(lm: CharLM, texts: list[str]) -> np.ndarray:
    """Decoder states after each text, built with advance() as the beam search does."""
    index = {t: i for i, t in enumerate(lm.tokens)}
    states = []
    for text in texts:
        state = np.array([lm.initial_state])
        for ch in text:
            state = lm.advance(state, np.array([index[ch]]))
        states.append(int(state[0]))
    return np.array(states)


@pytest.mark.parametrize("order", [1, 2, 4, 6])
def test_probabilities_sum_to_one_for_any_context(order: int) -> None:
    rng = np.random.default_rng(order)
    lm = CharLM.fit(english_like(rng, 500), order)
    seen = states_of(lm, ["", "t", "the", "the of", "and to a"])
    unseen = states_of(lm, ["Q", "zzzz", "9X q7", "of the Z"])
    random = rng.integers(0, lm.base ** max(order - 1, 1), size=200) % lm.base ** (order - 1)
    for states in (seen, unseen, random):
        log_probs = lm.next_log_probs(states)
        total = np.exp(log_probs).sum(axis=1) + np.exp(lm.end_log_probs(states))
        np.testing.assert_allclose(total, 1.0, rtol=1e-12)
        assert np.isfinite(log_probs[:, 2:]).all()  # smoothing leaves no character impossible
        assert np.isneginf(log_probs[:, [BLANK_INDEX, PAD_INDEX]]).all()  # not characters


def test_kneser_ney_matches_hand_computation() -> None:
    # Lines "ab" and "b", order 2. Bigram counts (<s>,a)=1 (a,b)=1 (b,</s>)=2 (<s>,b)=1, so D2 = 3/(3+2*1);
    # continuation counts a:1 b:2 </s>:1, D1 = 2/(2+2), and p1 = (0.25, 0.5, 0.25) over (a, b, </s>).
    lm = CharLM.fit("ab\nb", 2, tokens=TOY)
    assert lm.discounts == pytest.approx([0.5, 0.6])
    after = {}  # P(a), P(b), P(</s>) after each context
    for context in ["", "a", "b"]:
        state = states_of(lm, [context])
        after[context] = np.exp(np.append(lm.next_log_probs(state)[0, 1:], lm.end_log_probs(state)))
    np.testing.assert_allclose(after[""], [0.4 / 2 + 0.6 * 0.25, 0.4 / 2 + 0.6 * 0.5, 0.6 * 0.25])
    np.testing.assert_allclose(after["a"], [0.6 * 0.25, 0.4 + 0.6 * 0.5, 0.6 * 0.25])
    np.testing.assert_allclose(after["b"], [0.3 * 0.25, 0.3 * 0.5, 1.4 / 2 + 0.3 * 0.25])
    assert lm.line_log_probs("ab\nb") == pytest.approx([math.log(0.35 * 0.7 * 0.775), math.log(0.5 * 0.775)])


def reference_kneser_ney(lines: list[str], order: int, chars: str) -> dict[str, list[float]]:
    """Interpolated Kneser-Ney from its definition, with dicts: {context: [P(c | context) for c, then end]}.

    "^" is the start padding and "$" the end. Adjusted counts: raw at the top order and for n-grams that
    begin with "^", else the number of distinct symbols seen before the n-gram.
    """
    raw: list[Counter] = [Counter() for _ in range(order + 1)]  # raw[k][(context, outcome)], len(context) = k - 1
    for line in lines:
        padded = "^" * (order - 1) + line + "$"
        for pos in range(order - 1, len(padded)):
            for k in range(1, order + 1):
                raw[k][(padded[pos - k + 1 : pos], padded[pos])] += 1
    adjusted: list[dict] = [{}] + [{} for _ in range(order)]
    for k in range(1, order + 1):
        for (ctx, out), n in raw[k].items():
            if k == order or ctx.startswith("^"):
                adjusted[k][(ctx, out)] = n
            else:
                adjusted[k][(ctx, out)] = len({c[0] for c, o in raw[k + 1] if c[1:] == ctx and o == out})
    discounts = {}
    for k in range(1, order + 1):
        values = list(adjusted[k].values())
        n1, n2 = values.count(1), values.count(2)
        discounts[k] = min(max(n1 / (n1 + 2 * n2), 0.05), 0.95) if n1 and n2 else 0.5
    outcomes = [*chars, "$"]

    def prob(out: str, ctx: str) -> float:
        k = len(ctx) + 1
        row = {o: a for (c, o), a in adjusted[k].items() if c == ctx}
        lower = prob(out, ctx[1:]) if ctx else 1.0 / len(outcomes)
        if not row:
            return lower
        total, d = sum(row.values()), discounts[k]
        return (max(row.get(out, 0) - d, 0.0) + d * len(row) * lower) / total

    contexts = {c for (c, _) in raw[order]} | {"^" * (order - 1 - 1) + "x"} if order > 1 else {""}
    return {ctx: [prob(o, ctx) for o in outcomes] for ctx in contexts}


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_matches_a_reference_kneser_ney(order: int, dense: bool, monkeypatch) -> None:
    """Every context seen in training (and one unseen), through both the dense and the sparse query path."""
    if not dense:
        monkeypatch.setattr(char_lm, "_DENSE_LIMIT", 0)
    rng = np.random.default_rng(order)
    chars = "abx "
    lines = ["".join(rng.choice(list("aab b"), size=n)) for n in rng.integers(0, 8, size=40)] + ["ab"] * 6
    lm = CharLM.fit("\n".join(lines), order, tokens=("<blank>", *chars))
    assert len(lm._dense) == (order if dense else 1)
    expected = reference_kneser_ney(lines, order, chars)
    index = {c: i + 1 for i, c in enumerate(chars)}
    for ctx, probs in expected.items():
        state = sum(index.get(ch, 0) * lm.base**j for j, ch in enumerate(reversed(ctx)))  # "^" is symbol 0
        np.testing.assert_allclose(lm.next_probs(np.array([state]))[0], probs, rtol=1e-12, err_msg=repr(ctx))


def test_line_log_probs_equal_the_decoder_steps() -> None:
    """Scoring a text at once and step by step (advance / next_log_probs / end_log_probs) must agree."""
    rng = np.random.default_rng(3)
    lm = CharLM.fit(english_like(rng, 300), 5)
    lines = ["the of", "Zebra 42", "", "a"]
    index = {t: i for i, t in enumerate(LINE_TOKENS)}
    for line, whole in zip(lines, lm.line_log_probs("\n".join(lines)), strict=True):
        state, total = np.array([lm.initial_state]), 0.0
        for ch in line:
            total += lm.next_log_probs(state)[0, index[ch]]
            state = lm.advance(state, np.array([index[ch]]))
        assert whole == pytest.approx(total + lm.end_log_probs(state)[0], abs=1e-9)


def test_model_of_abab_prefers_b_after_a() -> None:
    lm = CharLM.fit("\n".join(["abababab", "ababab", "abab"] * 20), 3, tokens=TOY)
    after_a = lm.next_log_probs(states_of(lm, ["aba"]))[0]
    after_b = lm.next_log_probs(states_of(lm, ["ab"]))[0]
    assert after_a[2] > math.log(0.9) > after_a[1]
    assert after_b[1] > after_b[2]
    assert lm.line_log_probs("abab")[0] > lm.line_log_probs("aabb")[0]


def test_held_out_perplexity_beats_unigram_and_order_helps() -> None:
    rng = np.random.default_rng(0)
    train, held_out = english_like(rng, 3000), english_like(rng, 300)
    perplexity = {order: CharLM.fit(train, order).perplexity(held_out) for order in (1, 3, 5)}
    assert perplexity[5] < perplexity[3] < 0.75 * perplexity[1]
    assert perplexity[1] < 63  # the unigram itself beats uniform guessing over 63 characters + end


def test_unknown_characters_map_to_the_fallback() -> None:
    spaced = CharLM.fit("a b\nb a", 3, tokens=(*TOY, " "))
    punctuated = CharLM.fit("a,b\nb!a", 3, tokens=(*TOY, " "))
    dropped = CharLM.fit("a,b\nb!a", 3, tokens=(*TOY, " "), fallback=None)
    for k in range(3):
        np.testing.assert_array_equal(spaced.keys[k], punctuated.keys[k])
        np.testing.assert_array_equal(spaced.counts[k], punctuated.counts[k])
    assert dropped.line_log_probs("ab")[0] > spaced.line_log_probs("ab")[0]
    assert punctuated.line_log_probs("a,b")[0] == pytest.approx(punctuated.line_log_probs("a b")[0])


def test_save_and_load_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(1)
    text, held_out = english_like(rng, 2000), english_like(rng, 100)
    lm = CharLM.fit(text, 6)
    path = tmp_path / "lm.npz"
    lm.save(path)
    loaded = CharLM.load(path, tokens=LINE_TOKENS)
    assert loaded.order == 6 and loaded.chars == lm.chars
    states = states_of(lm, ["", "the", "of and t", "xyz"])
    np.testing.assert_array_equal(loaded.next_log_probs(states), lm.next_log_probs(states))
    assert loaded.perplexity(held_out) == lm.perplexity(held_out)
    assert path.stat().st_size < len(text)  # counts compress below the text they came from
    with pytest.raises(ValueError, match="other tokens"):
        CharLM.load(path, tokens=TOY)


def test_rejects_bad_orders() -> None:
    with pytest.raises(ValueError, match="order"):
        CharLM.fit("ab", 0, tokens=TOY)
    with pytest.raises(ValueError, match="too high"):
        CharLM.fit("ab", 12)
