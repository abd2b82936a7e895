"""CTC prefix beam search: against brute-force enumeration of every path, with and without the LM."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from text_recognizer.lit_models.ctc import greedy_decode, indices_to_text
from text_recognizer.metadata import BLANK_INDEX, CHAR_TO_LINE_INDEX, LINE_TOKENS, PAD_INDEX
from text_recognizer.reading.char_lm import CharLM
from text_recognizer.reading.decoding import beam_decode, beam_search

TOY = ("<blank>", "a", "b", "c")  # no padding token: every class but the blank is a character


def brute_force(log_probs: np.ndarray, lm: CharLM | None = None, lm_weight: float = 0.0) -> dict[tuple, tuple]:
    """{labelling: (log P_ctc, score)} over all C^T paths of one (T, C) line; score adds lm_weight * log P_lm."""
    steps, classes = log_probs.shape
    ctc: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(classes), repeat=steps):
        labels = tuple(c for t, c in enumerate(path) if c != BLANK_INDEX and (t == 0 or c != path[t - 1]))
        ctc[labels] = np.logaddexp(ctc.get(labels, -np.inf), log_probs[np.arange(steps), path].sum())
    out = {}
    for labels, value in ctc.items():
        bonus = lm_weight * lm.line_log_probs("".join(TOY[i] for i in labels))[0] if lm is not None else 0.0
        out[labels] = (value, value + bonus)
    return out


def toy_logits(rng: np.random.Generator, lines: int, classes: int, steps: int) -> torch.Tensor:
    return torch.from_numpy(rng.normal(scale=2.0, size=(lines, classes, steps)))


def line_log_probs(logits: torch.Tensor, i: int) -> np.ndarray:
    return torch.log_softmax(logits[i].double(), dim=0).T.numpy()  # (T, C)


@pytest.mark.parametrize(("classes", "steps"), [(3, 1), (3, 4), (3, 6), (4, 3), (4, 5), (4, 6)])
def test_matches_brute_force_without_lm(classes: int, steps: int) -> None:
    rng = np.random.default_rng(10 * classes + steps)
    logits = toy_logits(rng, 6, classes, steps)
    result = beam_search(logits, beam_width=2048, excluded=(), top_k=classes)  # wide enough to be exact
    for i in range(len(logits)):
        scores = brute_force(line_log_probs(logits, i))
        best = max(scores, key=lambda labels: scores[labels][0])
        assert tuple(result.labels[i]) == best
        assert result.ctc_log_probs[i] == pytest.approx(scores[best][0], abs=1e-9)
        assert result.scores[i] == pytest.approx(scores[best][0], abs=1e-9)


@pytest.mark.parametrize("lm_weight", [0.5, 1.0, 3.0])
def test_matches_brute_force_with_lm(lm_weight: float) -> None:
    lm = CharLM.fit("abc\nabcabc\nab\ncab\nbca\naab\nc", 3, tokens=TOY)
    rng = np.random.default_rng(int(lm_weight * 10))
    logits = toy_logits(rng, 8, 4, 5)
    result = beam_search(logits, beam_width=1024, lm=lm, lm_weight=lm_weight, excluded=(), top_k=4)
    changed = 0
    for i in range(len(logits)):
        scores = brute_force(line_log_probs(logits, i), lm, lm_weight)
        best = max(scores, key=lambda labels: scores[labels][1])
        assert tuple(result.labels[i]) == best
        assert result.scores[i] == pytest.approx(scores[best][1], abs=1e-9)
        assert result.ctc_log_probs[i] == pytest.approx(scores[best][0], abs=1e-9)
        lm_part = lm.line_log_probs("".join(TOY[c] for c in best))[0]
        assert result.lm_log_probs[i] == pytest.approx(lm_part, abs=1e-9)
        changed += best != max(scores, key=lambda labels: scores[labels][0])
    assert changed > 0  # the LM did move some decision, so the fusion was really exercised


def peaked(text_steps: list[dict[str, float]]) -> torch.Tensor:
    """(1, 65, T) logits: each step's listed characters ("" for the blank) get those probabilities."""
    probs = np.full((len(LINE_TOKENS), len(text_steps)), 1e-6)
    for t, step in enumerate(text_steps):
        for ch, p in step.items():
            probs[BLANK_INDEX if ch == "" else CHAR_TO_LINE_INDEX[ch], t] = p
    return torch.from_numpy(np.log(probs / probs.sum(axis=0)))[None]


def test_lm_decides_where_the_ink_is_ambiguous() -> None:
    """'rn' and 'm' look alike; acoustically "com" wins narrowly, and an LM of "corn"-like words flips it."""
    logits = peaked(
        [
            {"c": 0.9},
            {"": 0.9},
            {"o": 0.9},
            {"": 0.9},
            {"m": 0.5, "r": 0.45},
            {"n": 0.45, "": 0.35, "m": 0.2},
            {"": 0.9},
        ]
    )
    lm = CharLM.fit("\n".join(["corn", "born", "horn", "corner", "worn", "come on", "more"] * 5), 4)
    plain = [indices_to_text(x) for x in beam_decode(logits, beam_width=8)]
    fused = [indices_to_text(x) for x in beam_decode(logits, beam_width=8, lm=lm, lm_weight=1.0)]
    assert plain == ["com"]
    assert fused == ["corn"]
    # With one hypothesis the LM must steer the pruning itself: "cor" has to outrank "com" at step 4.
    assert [indices_to_text(x) for x in beam_decode(logits, beam_width=1, lm=lm, lm_weight=1.0)] == ["corn"]


def test_beam_of_one_equals_greedy_on_clear_inputs() -> None:
    rng = np.random.default_rng(0)
    lines, steps = 32, 109
    logits = rng.normal(size=(lines, len(LINE_TOKENS), steps))
    best = np.where(rng.random((lines, steps)) < 0.4, BLANK_INDEX, rng.integers(2, len(LINE_TOKENS), (lines, steps)))
    np.put_along_axis(logits, best[:, None, :], 12.0, axis=1)
    logits = torch.from_numpy(logits).float()
    greedy = greedy_decode(logits)
    assert beam_decode(logits, beam_width=1) == greedy
    assert beam_decode(logits, beam_width=16) == greedy
    assert any(len(set(g)) < len(g) for g in greedy)  # repeats of a label (split by a blank) occur


def test_input_lengths_are_respected() -> None:
    rng = np.random.default_rng(5)
    logits = toy_logits(rng, 4, 4, 6)
    logits[:, 1, 3:] = 30.0  # a loud "a" after step 3: it must not reach a line cut at 3
    lengths = torch.tensor([6, 3, 1, 0])
    result = beam_search(logits, beam_width=512, excluded=(), top_k=4, input_lengths=lengths)
    for i, n in enumerate(lengths.tolist()):
        alone = beam_search(logits[i : i + 1, :, :n], beam_width=512, excluded=(), top_k=4)
        assert result.labels[i] == alone.labels[0]
        assert result.ctc_log_probs[i] == pytest.approx(alone.ctc_log_probs[0], abs=1e-9)
        if n:
            scores = brute_force(line_log_probs(logits, i)[:n])
            assert tuple(result.labels[i]) == max(scores, key=lambda labels: scores[labels][0])
    assert result.labels[3] == [] and result.ctc_log_probs[3] == 0.0  # no steps: the empty line, surely


def test_input_lengths_with_the_lm_match_lines_decoded_alone() -> None:
    """A finished line keeps its LM state and row while the others go on: as if decoded on its own."""
    lm = CharLM.fit("abc\nabcabc\nab\ncab\nbca\naab\nc", 3, tokens=TOY)
    logits = toy_logits(np.random.default_rng(6), 4, 4, 7)
    lengths = torch.tensor([7, 4, 2, 0])
    settings = {"beam_width": 3, "lm": lm, "lm_weight": 1.0, "excluded": (), "top_k": 2}
    result = beam_search(logits, input_lengths=lengths, **settings)
    for i, n in enumerate(lengths.tolist()):
        alone = beam_search(logits[i : i + 1, :, :n], **settings)
        assert result.labels[i] == alone.labels[0]
        assert result.scores[i] == pytest.approx(alone.scores[0], abs=1e-12)
        assert result.lm_log_probs[i] == pytest.approx(alone.lm_log_probs[0], abs=1e-12)


def test_padding_token_is_never_emitted() -> None:
    logits = torch.zeros(1, len(LINE_TOKENS), 4)
    logits[0, PAD_INDEX] = 10.0
    logits[0, CHAR_TO_LINE_INDEX["x"], 1] = 9.0
    assert greedy_decode(logits) == [[PAD_INDEX]]  # greedy would emit it; the beam keeps to characters
    assert beam_decode(logits, beam_width=4) == [[CHAR_TO_LINE_INDEX["x"]]]


def test_length_bonus_and_argument_checks() -> None:
    logits = peaked([{"a": 0.6, "": 0.4}, {"b": 0.6, "": 0.4}])
    assert beam_decode(logits, beam_width=4) == [[CHAR_TO_LINE_INDEX["a"], CHAR_TO_LINE_INDEX["b"]]]
    assert beam_decode(logits, beam_width=4, length_bonus=-5.0) == [[]]
    with pytest.raises(ValueError, match="beam_width"):
        beam_decode(logits, beam_width=0)
    with pytest.raises(ValueError, match="classes"):
        beam_decode(logits, beam_width=2, lm=CharLM.fit("ab", 2, tokens=TOY), lm_weight=1.0)


@pytest.mark.parametrize(("classes", "steps"), [(3, 4), (4, 5)])
def test_share_is_the_best_texts_probability_when_the_beam_holds_every_text(classes: int, steps: int) -> None:
    """Without an LM the labellings' CTC probabilities sum to 1, so an exhaustive beam's share of the best text is
    its probability: the share is a probability over texts, not a score."""
    rng = np.random.default_rng(classes * steps)
    logits = toy_logits(rng, 5, classes, steps)
    result = beam_search(logits, beam_width=2048, excluded=(), top_k=classes)
    for i in range(len(logits)):
        scores = brute_force(line_log_probs(logits, i))
        best = max(scores, key=lambda labels: scores[labels][0])
        assert result.shares[i] == pytest.approx(np.exp(scores[best][0]), rel=1e-6)


def test_share_is_high_for_a_clear_line_and_near_a_half_for_a_coin_flip() -> None:
    clear = peaked([{"c": 0.98}, {"": 0.98}, {"a": 0.98}, {"": 0.98}, {"t": 0.98}])
    coin = peaked([{"c": 0.98}, {"": 0.98}, {"a": 0.49, "o": 0.49}, {"": 0.98}, {"t": 0.98}])
    rows = beam_decode(torch.cat([clear, coin]), beam_width=16)
    assert indices_to_text(rows[0], LINE_TOKENS) == "cat"
    shares = rows.line_confidence  # beam_decode hands its shares over with the rows (confidence.DecodedRows)
    assert shares[0] > 0.85, shares
    assert 0.3 < shares[1] < 0.55, shares
    from text_recognizer.reading.confidence import ctc_confidences
    from text_recognizer.reading.evaluation import line_confidences

    class Line:  # line_confidences reads only the arch of the loaded model
        arch = "ctc"

    lengths = torch.tensor([5, 5])
    found = line_confidences(Line(), torch.cat([clear, coin]), lengths, rows)
    assert [c.line for c in found] == pytest.approx(shares.tolist())
    aligned = ctc_confidences(torch.cat([clear, coin]), lengths, list(rows))  # the characters stay the alignment's
    assert all(np.array_equal(a.chars, f.chars) for a, f in zip(aligned, found, strict=True))
