"""Which line confidences to distrust: a threshold chosen on the val lines, as the decoder is (decoder_choice.py).

A confidence is only useful with a line drawn under it: below it a reading should be checked by a person. Where
that line lies is a measured fact about one model on its lines, so the evaluate stage chooses it on the val lines,
reports what it does on the test lines, and records it in the reader checkpoint for predict's `low_confidence`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def choose_threshold(confidence: np.ndarray, wrong: np.ndarray) -> float | None:
    """The line confidence below which a line is flagged, chosen on lines whose rightness is known.

    The rule: the threshold that maximises Youden's J, the share of wrong lines flagged minus the share of right
    lines flagged (catching wrong lines is worth as much as sparing right ones, whatever their numbers), among the
    midpoints between neighbouring distinct confidences; of equal J the lowest (fewest lines flagged). None when it
    cannot separate anything: no wrong lines, no right lines, or no threshold that flags a larger share of the wrong
    lines than of the right ones (J <= 0).
    """
    confidence, wrong = np.asarray(confidence, dtype=np.float64), np.asarray(wrong, dtype=bool)
    if confidence.shape != wrong.shape or confidence.ndim != 1:
        raise ValueError(f"confidence and wrong must be (N,) alike, got {confidence.shape} and {wrong.shape}")
    if not wrong.any() or wrong.all():
        return None
    values = np.unique(confidence)
    cuts = (values[:-1] + values[1:]) / 2  # (K,) flagging the lines below each
    flagged = confidence[None, :] < cuts[:, None]  # (K, N)
    youden = flagged[:, wrong].mean(axis=1) - flagged[:, ~wrong].mean(axis=1)
    if len(cuts) == 0 or youden.max() <= 0:
        return None
    return float(cuts[int(np.argmax(youden))])  # argmax keeps the first (lowest) of equal values


def flag_figures(confidence: np.ndarray, wrong: np.ndarray, threshold: float | None) -> dict[str, Any]:
    """What a threshold does on some lines: the share flagged, and the share of wrong lines among the flagged and
    among the others (None where a group is empty, and every share None without a threshold)."""
    confidence, wrong = np.asarray(confidence, dtype=np.float64), np.asarray(wrong, dtype=bool)
    flagged = confidence < threshold if threshold is not None else np.zeros(len(wrong), dtype=bool)

    def share(mask: np.ndarray) -> float | None:
        return float(wrong[mask].mean()) if mask.any() else None

    known = threshold is not None
    return {
        "lines": len(wrong),
        "wrong": float(wrong.mean()) if len(wrong) else None,
        "flagged": float(flagged.mean()) if known and len(wrong) else None,
        "wrong_among_flagged": share(flagged) if known else None,
        "wrong_among_unflagged": share(~flagged) if known else None,
        "auroc": auroc(confidence, wrong),
    }


def auroc(confidence: np.ndarray, wrong: np.ndarray) -> float | None:
    """How well confidence ranks right lines above wrong ones: P(a right line's > a wrong line's), ties half.
    None without both kinds of line."""
    confidence, wrong = np.asarray(confidence, dtype=np.float64), np.asarray(wrong, dtype=bool)
    right, bad = confidence[~wrong], confidence[wrong]
    if len(right) == 0 or len(bad) == 0:
        return None
    ranks = _midranks(np.concatenate([right, bad]))
    return float((ranks[: len(right)].sum() - len(right) * (len(right) + 1) / 2) / (len(right) * len(bad)))


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing their mean rank (Mann-Whitney's U counts a tie as half)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


MEASURES = {  # reading/confidence.py: what `confidence` means in the figures, per decoder
    "greedy": "ctc text probability per character",
    "beam": "the text's share of the beam's probability",
    "argmax": "windows' probability per character",
}
RULE = "Youden's J on the val lines: max(share of wrong lines flagged - share of right lines flagged)"


def calibrate(
    decoder: str, val_confidence: np.ndarray, val_wrong: np.ndarray, test_confidence: np.ndarray, test_wrong: np.ndarray
) -> dict[str, Any]:
    """metrics/evaluate.json's `line_cnn.confidence`: the threshold chosen on the val lines (choose_threshold) for
    the lines read with `decoder`, and what it does on the val and on the test lines (flag_figures)."""
    threshold = choose_threshold(val_confidence, val_wrong)
    return {
        "decoder": decoder,
        "measure": MEASURES.get(decoder, MEASURES["greedy"]),
        "rule": RULE,
        "threshold": threshold,
        "val": flag_figures(val_confidence, val_wrong, threshold),
        "test": flag_figures(test_confidence, test_wrong, threshold),
    }


def record(calibration: dict[str, Any]) -> dict[str, Any]:
    """The reader checkpoint's share of it: the threshold, and the decoder whose readings it was chosen on
    (predict flags lines only when it reads with that decoder)."""
    return {"low_confidence_threshold": calibration["threshold"], "confidence_decoder": calibration["decoder"]}
