"""The decoder the evaluate stage reads lines with, picked on the val lines from a small grid.

Which decoder reads a model's lines best is a measured fact about that model and its lines, not a
constant: beam search with the language model removes most errors on Brown-corpus prose, and made
real handwritten digit lines worse (greedy test CER 0.014, beam + LM 0.026), where a fixed
`decoder: beam` made the worse one the headline. Beam search also adds `length_bonus` per character,
which offsets the LM's cost per character; with no bonus every LM weight also penalises length.
So the stage reads the val lines with greedy and with beam search at every (lm_weight,
length_bonus) of params.yaml, picks the lowest val CER, and reads the test lines only with the
pick (its figure is the headline) and, for comparison, greedy and the best beam setting.

The val lines read with the pick also set the line confidence below which predict flags a reading
(calibration.choose_threshold); the test lines report what that threshold does.

A per-window line model (line_model.arch simple) has no CTC outputs to search: it is read by the argmax of each
window (its greedy reading), on the val and the test lines alike, and no beam figure is reported (WindowReading).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from text_recognizer.errors import InputError
from text_recognizer.models.checkpoint import load_checkpoint
from text_recognizer.params import EvaluateParams
from text_recognizer.reading import calibration
from text_recognizer.reading.char_lm import CharLM
from text_recognizer.reading.evaluation import LineDecoder, LineEvaluation, evaluate_lines, line_decoder


@dataclasses.dataclass(frozen=True)
class DecoderSetting:
    """One point of the grid: greedy (its weights are 0 and unused), or beam search at lm_weight and length_bonus."""

    decoder: str  # greedy | beam
    lm_weight: float
    length_bonus: float

    @property
    def name(self) -> str:
        """A key for evaluate_lines' `decoders` and for messages."""
        if self.decoder == "greedy":
            return "greedy"
        return f"beam(lm_weight={self.lm_weight:g}, length_bonus={self.length_bonus:g})"

    def simplicity(self) -> tuple[bool, float, float]:
        """Sort key, simplest first: greedy, then beam by lm_weight, then by length_bonus (ties go to the simpler)."""
        return self.decoder != "greedy", self.lm_weight, self.length_bonus

    def reader(self, beam_width: int, lm: CharLM | None) -> LineDecoder:
        """The decoding function of this setting."""
        if self.decoder == "greedy":
            return line_decoder("greedy")
        return line_decoder(
            "beam", beam_width=beam_width, lm=lm, lm_weight=self.lm_weight, length_bonus=self.length_bonus
        )


GREEDY = DecoderSetting("greedy", 0.0, 0.0)


def decoder_grid(lm_weights: Sequence[float], length_bonuses: Sequence[float]) -> list[DecoderSetting]:
    """Greedy and beam search at every (lm_weight, length_bonus), simplest first."""
    beams = [DecoderSetting("beam", float(w), float(b)) for w in lm_weights for b in length_bonuses]
    return sorted([GREEDY, *beams], key=DecoderSetting.simplicity)


def pick(val_cer: Mapping[DecoderSetting, float], decoders: Collection[str]) -> DecoderSetting:
    """The setting of lowest val CER among those of `decoders`; of equal CERs the simplest, since a setting that
    reads no better has not earned its cost (greedy before beam, then the smaller lm_weight and length_bonus)."""
    candidates = sorted((s for s in val_cer if s.decoder in decoders), key=DecoderSetting.simplicity)
    if not candidates:
        raise ValueError(f"no setting of decoder {sorted(decoders)} among {[s.name for s in val_cer]}")
    return min(candidates, key=lambda s: val_cer[s])  # min keeps the first of equal values: the simplest


@dataclasses.dataclass(frozen=True)
class DecoderChoice:
    """The pick, the best beam setting (the pick when beam won; what `--decoder beam` reads with either way),
    every setting's val CER, and the test lines read with the pick first (so `test.cer` and the samples are its);
    `val_confidence` and `val_wrong` are the val lines' as the pick read them (for the confidence threshold)."""

    picked: DecoderSetting
    best_beam: DecoderSetting
    params: EvaluateParams  # the grid
    val_cer: dict[DecoderSetting, float]
    test: LineEvaluation
    val_confidence: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    val_wrong: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=bool))

    def calibration(self) -> dict[str, Any]:
        """The confidence threshold of the pick's readings (calibration.calibrate)."""
        name = self.picked.name
        return calibration.calibrate(
            self.picked.decoder, self.val_confidence, self.val_wrong, self.test.confidence[name], self.test.wrong[name]
        )

    def _figures(self, setting: DecoderSetting) -> dict[str, float]:
        test = self.test.by_decoder[setting.name]
        return {"val_cer": self.val_cer[setting], "test_cer": test["cer"], "test_line_acc": test["line_acc"]}

    def metrics(self) -> dict[str, Any]:
        """metrics/evaluate.json's `line_cnn`: the pick's figures first, then greedy's and the best beam setting's,
        and the val CER of every beam setting as a table (rows: lm_weights, columns: length_bonuses)."""
        beam, weights, bonuses = self.best_beam, self.params.lm_weights, self.params.length_bonuses
        table = [[self.val_cer[DecoderSetting("beam", float(w), float(b))] for b in bonuses] for w in weights]
        return {
            "decoder": self.picked.decoder,
            **self._figures(self.picked),
            "greedy": self._figures(GREEDY),
            "beam": {"lm_weight": beam.lm_weight, "length_bonus": beam.length_bonus, **self._figures(beam)},
            "val_grid": {"lm_weights": list(weights), "length_bonuses": list(bonuses), "beam_cer": table},
            "confidence": self.calibration(),
        }

    def record(self, lm_sha256: str) -> dict[str, Any]:
        """The reader checkpoint's `reading`: the pick (predict's default decoder), the beam setting that
        `--decoder beam` reads with, the LM it needs, and both decoders' CERs."""
        chosen = {"greedy": GREEDY, "beam": self.best_beam}
        return {
            "decoder": self.picked.decoder,
            "beam_width": self.params.beam_width,
            "lm_weight": self.best_beam.lm_weight,
            "length_bonus": self.best_beam.length_bonus,
            "lm_sha256": lm_sha256,
            "val_cer": {name: self.val_cer[s] for name, s in chosen.items()},
            "test_cer": {name: self.test.by_decoder[s.name]["cer"] for name, s in chosen.items()},
            **calibration.record(self.calibration()),
        }


WINDOW_ARGMAX = "argmax"  # the decoder of a per-window model, as metrics and the reader's record name it
NO_BEAM = "not applicable: line_model.arch simple reads one class per window, there is no CTC output to search"


@dataclasses.dataclass(frozen=True)
class WindowReading:
    """How a per-window (simple) line model was read: argmax per window, the only decoder it has, on val and test.

    Its metrics and record have DecoderChoice's shape where they can (`decoder`, the figures, `greedy`: the argmax
    is the greedy reading of per-window outputs), so the stage, the plots and predict treat both alike; `beam` says
    why there is no beam figure instead of holding one.
    """

    val_cer: float
    test: LineEvaluation
    val_confidence: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    val_wrong: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=bool))

    def calibration(self) -> dict[str, Any]:
        """The confidence threshold of the argmax readings (calibration.calibrate)."""
        test_confidence, test_wrong = self.test.confidence[WINDOW_ARGMAX], self.test.wrong[WINDOW_ARGMAX]
        return calibration.calibrate(WINDOW_ARGMAX, self.val_confidence, self.val_wrong, test_confidence, test_wrong)

    def _figures(self) -> dict[str, float]:
        test = self.test.by_decoder[WINDOW_ARGMAX]
        return {"val_cer": self.val_cer, "test_cer": test["cer"], "test_line_acc": test["line_acc"]}

    def metrics(self) -> dict[str, Any]:
        """metrics/evaluate.json's `line_cnn` for a simple model."""
        figures = self._figures()
        return {
            "decoder": WINDOW_ARGMAX, **figures, "greedy": figures, "beam": NO_BEAM, "confidence": self.calibration()
        }  # fmt: skip

    def record(self, lm_sha256: str) -> dict[str, Any]:
        """The reader checkpoint's `reading`: argmax, and its CERs; no LM is read (`lm_sha256` is not recorded)."""
        return {
            "decoder": WINDOW_ARGMAX,
            "val_cer": {WINDOW_ARGMAX: self.val_cer},
            "test_cer": {WINDOW_ARGMAX: self.test.by_decoder[WINDOW_ARGMAX]["cer"]},
            **calibration.record(self.calibration()),
        }


def _val_lines(
    checkpoint_path: str | os.PathLike[str], lines_h5: str | os.PathLike[str], **kwargs: Any
) -> LineEvaluation:
    """evaluate_lines on the val lines, an empty split named by the key that sets it."""
    try:
        return evaluate_lines(checkpoint_path, lines_h5, split="val", num_samples=0, **kwargs)
    except InputError as exc:
        raise InputError(f"{exc} (evaluate picks the decoder on the val lines: emnist_lines.num_val)") from exc


def read_per_window(
    checkpoint_path: str | os.PathLike[str],
    lines_h5: str | os.PathLike[str],
    params: EvaluateParams,
    *,
    device: str | torch.device | None = None,
) -> WindowReading:
    """A simple line model's val and test CER, read by argmax per window (evaluate_lines' default for it)."""
    val = _val_lines(checkpoint_path, lines_h5, batch_size=params.batch_size, device=device)
    test = evaluate_lines(
        checkpoint_path, lines_h5, batch_size=params.batch_size, num_samples=params.num_sample_lines, device=device
    )
    return WindowReading(
        val_cer=val.by_decoder[WINDOW_ARGMAX]["cer"],
        test=test,
        val_confidence=val.confidence[WINDOW_ARGMAX],
        val_wrong=val.wrong[WINDOW_ARGMAX],
    )


def choose_decoder(
    checkpoint_path: str | os.PathLike[str],
    lines_h5: str | os.PathLike[str],
    lm: CharLM | None,
    params: EvaluateParams,
    *,
    device: str | torch.device | None = None,
) -> DecoderChoice | WindowReading:
    """Pick the decoder on the `val` lines and read the `test` lines with it (see the module's docstring); a simple
    line model is read per window instead (read_per_window), since the grid's decoders are CTC's.

    The network runs once per batch of val lines and every setting decodes the same logits.
    """
    if load_checkpoint(checkpoint_path, expected_kind="line", needed_by="evaluate").arch == "simple":
        return read_per_window(checkpoint_path, lines_h5, params, device=device)
    grid = decoder_grid(params.lm_weights, params.length_bonuses)
    readers = {s.name: s.reader(params.beam_width, lm) for s in grid}
    val = _val_lines(checkpoint_path, lines_h5, decoders=readers, batch_size=params.batch_size, device=device)
    val_cer = {s: val.by_decoder[s.name]["cer"] for s in grid}
    picked, best_beam = pick(val_cer, params.decoders), pick(val_cer, ("beam",))
    shown = dict.fromkeys([picked, GREEDY, best_beam])  # the pick first, each once
    test = evaluate_lines(
        checkpoint_path, lines_h5, decoders={s.name: readers[s.name] for s in shown}, batch_size=params.batch_size,
        num_samples=params.num_sample_lines, device=device,
    )  # fmt: skip
    return DecoderChoice(picked, best_beam, params, val_cer, test, val.confidence[picked.name], val.wrong[picked.name])


def recorded_beam(reading: Mapping[str, Any]) -> tuple[int, DecoderSetting]:
    """(beam_width, setting) of a reader's `reading` record: what `predict --decoder beam` reads with.

    KeyError for a record without them (written before length_bonus was recorded).
    """
    setting = DecoderSetting("beam", float(reading["lm_weight"]), float(reading["length_bonus"]))
    return int(reading["beam_width"]), setting
