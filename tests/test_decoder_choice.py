"""The evaluate stage picks its decoder on the val lines: the lowest val CER of the grid (ties to the simpler
setting), test figures for the pick, and a reader record that predict reads with (its decoder, its length_bonus)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from text_recognizer import cli
from text_recognizer.data.download import file_digest
from text_recognizer.lit_models.ctc import greedy_decode
from text_recognizer.metadata import BLANK_INDEX, CHAR_TO_LINE_INDEX, EMNIST_CLASSES, LINE_TOKENS, PAD_INDEX
from text_recognizer.models.checkpoint import load_checkpoint, save_checkpoint, save_with_extra
from text_recognizer.models.line_cnn import LineCNN
from text_recognizer.models.resnet import ResNetClassifier
from text_recognizer.params import EvaluateParams, from_dict
from text_recognizer.reading import evaluation
from text_recognizer.reading.char_lm import CharLM
from text_recognizer.reading.decoder_choice import GREEDY, DecoderSetting, choose_decoder, decoder_grid, pick
from text_recognizer.reading.evaluation import evaluate_lines, line_decoder

try:
    from tests.tiny_nets import TINY_LINE_NET
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from tiny_nets import TINY_LINE_NET

ROOT = Path(__file__).resolve().parents[1]
LINE_KWARGS = {**TINY_LINE_NET, "width": 8, "fc_dim": 16}
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def beam(lm_weight: float, length_bonus: float) -> DecoderSetting:
    return DecoderSetting("beam", lm_weight, length_bonus)


def evaluate_params(**values) -> EvaluateParams:
    return from_dict(EvaluateParams, "evaluate", {**PARAMS["evaluate"], **values})


# --- the pick -------------------------------------------------------------------------------------


def test_the_pick_is_the_lowest_val_cer_whatever_the_order():
    digits = {GREEDY: 0.014, beam(0.0, 0.0): 0.015, beam(0.5, 0.0): 0.026, beam(0.5, 1.0): 0.02}  # the LM hurts
    prose = {GREEDY: 0.011, beam(0.0, 0.0): 0.011, beam(0.5, 0.0): 0.004, beam(0.5, 1.0): 0.001}  # a bonus helps
    for val_cer, best in ((digits, GREEDY), (prose, beam(0.5, 1.0))):
        for seed in range(5):
            items = list(val_cer.items())
            random.Random(seed).shuffle(items)
            assert pick(dict(items), ("greedy", "beam")) == best
    assert pick(digits, ("beam",)) == beam(0.0, 0.0)  # evaluate.decoders=[beam]: the best beam setting
    assert pick(prose, ("greedy",)) == GREEDY
    with pytest.raises(ValueError, match="no setting of decoder"):
        pick({GREEDY: 0.1}, ("beam",))


def test_ties_go_to_the_simpler_setting():
    """Greedy before beam, then the smaller lm_weight, then the smaller length_bonus: what reads no better is not
    worth its cost."""
    tied = [beam(1.0, 0.0), beam(0.5, 2.0), beam(0.5, 0.5), GREEDY, beam(0.0, 1.0)]
    order = [GREEDY, beam(0.0, 1.0), beam(0.5, 0.5), beam(0.5, 2.0), beam(1.0, 0.0)]
    for n in range(len(order)):
        assert pick(dict.fromkeys(tied[n:] + tied[:n], 0.01), ("greedy", "beam")) == GREEDY
        rest = order[n:]
        assert pick(dict.fromkeys(reversed(rest), 0.01), ("greedy", "beam")) == rest[0]
    grid = decoder_grid([0.5, 0.0], [1.0, 0.0])
    assert grid == [GREEDY, beam(0.0, 0.0), beam(0.0, 1.0), beam(0.5, 0.0), beam(0.5, 1.0)]


# --- the grid read on fabricated logits --------------------------------------------------------------


def frames(*probs: dict[str, float]) -> torch.Tensor:
    """(C, T) log probabilities: each frame's {token: p} ('' the blank), every other token ~0."""
    out = torch.full((len(LINE_TOKENS), len(probs)), -30.0)
    for t, frame in enumerate(probs):
        for token, p in frame.items():
            out[BLANK_INDEX if token == "" else CHAR_TO_LINE_INDEX[token], t] = float(np.log(p))
    return out


# "a" then maybe "b": greedy and beam without a bonus read "a" (p 0.54 against 0.36 for "ab"); a bonus of 1 per
# character reads "ab". Right when the line is "a" (HURT), wrong when it is "ab" (HELP: "ab" 0.27 vs "a" 0.33).
HURT = frames({"a": 0.9, "": 0.1}, {"": 0.6, "b": 0.4})
HELP = frames({"a": 0.6, "": 0.4}, {"": 0.55, "b": 0.45})
KINDS = {"hurt": (HURT, "a"), "help": (HELP, "ab")}


def write_lines(path: Path, splits: dict[str, list[str]]) -> Path:
    """An emnist_lines.h5 whose line i of a split is kind splits[split][i]: pixel (0, 0) says which."""
    with h5py.File(path, "w") as f:
        f.attrs["mapping"] = json.dumps(list(LINE_TOKENS))
        for split, kinds in splits.items():
            images = np.zeros((len(kinds), 28, 56), dtype=np.uint8)
            images[:, 0, 0] = [list(KINDS).index(k) for k in kinds]
            images[:, 4:24, 4:40] = 200
            texts = [KINDS[k][1] for k in kinds]
            labels = np.full((len(kinds), 2), PAD_INDEX, dtype=np.uint8)
            for i, text in enumerate(texts):
                labels[i, : len(text)] = [CHAR_TO_LINE_INDEX[c] for c in text]
            f[f"{split}/images"], f[f"{split}/labels"] = images, labels
            f[f"{split}/lengths"] = np.array([len(t) for t in texts], dtype=np.int32)
    return path


def fabricated_logits(loaded, images: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    """evaluation.line_logits, but each line's logits are its kind's."""
    logits = torch.stack([KINDS[list(KINDS)[int(k)]][0] for k in images[:, 0, 0]])
    return logits, torch.full((len(images),), logits.shape[-1])


@pytest.fixture
def line_checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "line_cnn.pt"
    state = LineCNN(**LINE_KWARGS).state_dict()
    save_checkpoint(path, kind="line", model_kwargs=LINE_KWARGS, state_dict=state, mapping=list(LINE_TOKENS))
    return path


@pytest.mark.parametrize(
    ("val", "picked", "val_cers"),
    [
        (["hurt"] * 3 + ["help"], GREEDY, (1 / 5, 3 / 5)),  # greedy misses 1 "b" of 5 characters, a bonus adds 3
        (["help"] * 3 + ["hurt"], beam(0.0, 1.0), (3 / 7, 1 / 7)),  # greedy misses 3 "b"s of 7, a bonus adds 1
    ],
    ids=["greedy-best", "length-bonus-best"],
)
def test_the_grid_reads_the_val_lines_and_the_test_lines_only_report(tmp_path, line_checkpoint, monkeypatch, val,
                                                                     picked, val_cers):  # fmt: skip
    """The pick is made on val; the test lines (where a bonus always hurts) report it, not what would win there."""
    monkeypatch.setattr(evaluation, "line_logits", fabricated_logits)
    lines = write_lines(tmp_path / "lines.h5", {"val": val, "test": ["hurt"] * 4})
    params = evaluate_params(lm_weights=[0.0], length_bonuses=[2.0, 0.0, 1.0], beam_width=4, num_sample_lines=2)
    choice = choose_decoder(line_checkpoint, lines, None, params, device="cpu")
    greedy_cer, bonus_cer = val_cers
    assert choice.val_cer == pytest.approx(
        {GREEDY: greedy_cer, beam(0.0, 0.0): greedy_cer, beam(0.0, 1.0): bonus_cer, beam(0.0, 2.0): bonus_cer}
    )
    assert choice.picked == picked  # ties: greedy before beam 0/0, bonus 1 before bonus 2
    assert choice.best_beam == (beam(0.0, 0.0) if picked == GREEDY else picked)
    metrics = choice.metrics()
    assert metrics["decoder"] == picked.decoder and metrics["val_cer"] == choice.val_cer[picked]
    assert metrics["test_cer"] == (1.0 if picked.length_bonus else 0.0)  # "ab" for every "a": 4 edits, 4 characters
    assert metrics["greedy"]["test_cer"] == 0.0
    assert [s.pred_text for s in choice.test.samples] == ["ab" if picked.length_bonus else "a"] * 2  # the pick's
    assert metrics["beam"] == {"lm_weight": 0.0, "length_bonus": choice.best_beam.length_bonus,
                               **{k: v for k, v in metrics["beam"].items() if k.endswith(("cer", "acc"))}}  # fmt: skip
    assert metrics["val_grid"] == {
        "lm_weights": [0.0],
        "length_bonuses": [2.0, 0.0, 1.0],
        "beam_cer": [[choice.val_cer[beam(0.0, b)] for b in (2.0, 0.0, 1.0)]],
    }


def test_an_empty_val_split_says_why_evaluate_needs_it(tmp_path, line_checkpoint):
    lines = write_lines(tmp_path / "lines.h5", {"val": [], "test": ["hurt"]})
    with pytest.raises(ValueError, match=r"the val split is empty .*emnist_lines\.num_val"):
        choose_decoder(line_checkpoint, lines, None, evaluate_params(), device="cpu")


def test_beam_search_needs_every_setting_from_its_caller():
    for missing in ("beam_width", "lm_weight", "length_bonus"):
        settings = {"beam_width": 4, "lm_weight": 0.5, "length_bonus": 1.0}
        del settings[missing]
        with pytest.raises(ValueError, match="beam_width, lm_weight and length_bonus"):
            line_decoder("beam", **settings)


# --- predict reads with the record -----------------------------------------------------------------------


@pytest.fixture
def reader_setup(tmp_path: Path, line_checkpoint: Path, monkeypatch) -> dict:
    """A line image, an LM, and a way to run `predict` on them with a reader recording `reading`."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (220, 60), 255)
    ImageDraw.Draw(image).text((10, 10), "ab ca", fill=0, font=ImageFont.load_default(size=36))
    image.save(tmp_path / "line.png")
    monkeypatch.chdir(tmp_path)
    CharLM.fit("ab ca\nab\n" * 20, order=3).save(tmp_path / "char_lm.npz")
    record = {"decoder": "beam", "beam_width": 4, "lm_weight": 0.0, "length_bonus": 0.0}
    return {"record": {**record, "lm_sha256": file_digest(tmp_path / "char_lm.npz")}, "checkpoint": line_checkpoint}


def predict(setup: dict, capsys, *args: str, **reading) -> tuple[int, str, str]:
    save_with_extra(setup["checkpoint"], "reader.pt", reading={**setup["record"], **reading})
    code = cli.main(["predict", "line.png", "--model", "reader.pt", "--lm", "char_lm.npz", "--layout", "line", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_reads_with_the_records_decoder_and_length_bonus(reader_setup, capsys, monkeypatch):
    """No --decoder: the record's pick. Beam search gets the record's beam_width, lm_weight and length_bonus."""
    calls: list[dict] = []

    def spy(logits, **kwargs):
        calls.append(kwargs)
        return greedy_decode(logits, kwargs["input_lengths"])

    monkeypatch.setattr(evaluation, "beam_decode", spy)
    predict(reader_setup, capsys, decoder="beam", lm_weight=0.25, length_bonus=7.5)
    assert [(c["beam_width"], c["lm_weight"], c["length_bonus"]) for c in calls] == [(4, 0.25, 7.5)]
    calls.clear()
    predict(reader_setup, capsys, decoder="greedy", length_bonus=7.5)  # the pick was greedy: so is the default
    assert calls == []
    predict(reader_setup, capsys, "--decoder", "beam", decoder="greedy", length_bonus=7.5)  # asked for: the record's
    assert [c["length_bonus"] for c in calls] == [7.5]
    calls.clear()
    predict(reader_setup, capsys, "--decoder", "greedy", decoder="beam")
    assert calls == []


def test_the_records_length_bonus_changes_what_predict_reads(reader_setup, capsys):
    code, zero, err = predict(reader_setup, capsys, length_bonus=0.0)
    assert code == 0 or "read no characters" in err, err  # an untrained network may read nothing
    code, huge, err = predict(reader_setup, capsys, length_bonus=50.0)
    assert code == 0, err
    assert len(huge.strip()) > len(zero.strip()), (zero, huge)  # a character at nearly every step
    reading = {k: v for k, v in reader_setup["record"].items() if k != "length_bonus"}
    save_with_extra(reader_setup["checkpoint"], "old_reader.pt", reading=reading)  # written before the bonus
    code = cli.main(["predict", "line.png", "--model", "old_reader.pt", "--lm", "char_lm.npz", "--layout", "line"])
    assert code == 1 and "records no length_bonus" in capsys.readouterr().err


# --- the stage -------------------------------------------------------------------------------------------


def test_the_stage_writes_the_pick_in_the_metrics_and_the_reader(tmp_path, line_checkpoint):
    """stages/evaluate.py on tiny untrained models: metrics/evaluate.json and the reader's record agree with
    each other and with reading the test lines with the recorded pick."""
    rng = np.random.default_rng(0)
    char_kwargs = {"num_blocks": 1, "width": 4, "dropout": 0.2}
    state = ResNetClassifier(**char_kwargs).state_dict()
    save_checkpoint(tmp_path / "cnn.pt", kind="char", model_kwargs=char_kwargs, state_dict=state,
                    mapping=EMNIST_CLASSES)  # fmt: skip
    with h5py.File(tmp_path / "emnist.h5", "w") as f:
        f.attrs["mapping"] = json.dumps(list(EMNIST_CLASSES))
        f["test/images"] = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
        f["test/labels"] = np.array([3, 3, 5, 7, 9], dtype=np.uint8)
    lines = write_lines(tmp_path / "lines.h5", {"val": ["hurt", "help"] * 3, "test": ["help", "hurt"] * 2})
    with h5py.File(lines, "a") as f:  # real pixels for the real network
        for split in ("val", "test"):
            f[f"{split}/images"][:, 4:24, :] = rng.integers(0, 256, size=(len(f[f"{split}/images"]), 20, 56))
    CharLM.fit("ab\na b\nba\n" * 30, order=3).save(tmp_path / "char_lm.npz")
    params = {**PARAMS, "evaluate": {**PARAMS["evaluate"], "lm_weights": [0.0, 0.5], "length_bonuses": [0.0, 1.0]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    args = ["cnn.pt", str(line_checkpoint), "char_lm.npz", "emnist.h5", "lines.h5", "evaluate.json", "plots",
            "reader.pt"]  # fmt: skip
    stage = subprocess.run([sys.executable, str(ROOT / "stages" / "evaluate.py"), *args], cwd=tmp_path,
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert stage.returncode == 0, stage.stderr
    line = json.loads((tmp_path / "evaluate.json").read_text())["line_cnn"]
    assert set(line) == {"decoder", "val_cer", "test_cer", "test_line_acc", "greedy", "beam", "val_grid", "confidence"}
    assert set(line["greedy"]) == {"val_cer", "test_cer", "test_line_acc"}
    assert set(line["beam"]) == {"lm_weight", "length_bonus", "val_cer", "test_cer", "test_line_acc"}
    assert np.array(line["val_grid"]["beam_cer"]).shape == (2, 2)
    assert line["val_cer"] == min(line["greedy"]["val_cer"], *np.ravel(line["val_grid"]["beam_cer"]))
    reading = load_checkpoint(tmp_path / "reader.pt").extra["reading"]
    assert set(reading) == {"decoder", "beam_width", "lm_weight", "length_bonus", "lm_sha256", "val_cer", "test_cer",
                            "low_confidence_threshold", "confidence_decoder"}  # fmt: skip
    confidence = line["confidence"]
    assert confidence["decoder"] == reading["confidence_decoder"] == line["decoder"]
    assert confidence["threshold"] == reading["low_confidence_threshold"]
    assert confidence["val"]["lines"] == 6 and confidence["test"]["lines"] == 4
    assert confidence["test"]["wrong"] == pytest.approx(1 - line["test_line_acc"])
    assert reading["decoder"] == line["decoder"] and reading["lm_sha256"] == file_digest(tmp_path / "char_lm.npz")
    assert (reading["lm_weight"], reading["length_bonus"]) == (line["beam"]["lm_weight"], line["beam"]["length_bonus"])
    assert reading["test_cer"] == {"greedy": line["greedy"]["test_cer"], "beam": line["beam"]["test_cer"]}
    assert reading["test_cer"][reading["decoder"]] == line["test_cer"]
    lm = CharLM.load(tmp_path / "char_lm.npz")
    recorded = beam(reading["lm_weight"], reading["length_bonus"]).reader(reading["beam_width"], lm)
    again = evaluate_lines(tmp_path / "reader.pt", lines, decoders={"beam": recorded}, device="cpu")
    assert again.cer == line["beam"]["test_cer"]
    picked = evaluate_lines(tmp_path / "reader.pt", lines, decoders={"pick": recorded if line["decoder"] == "beam"
                            else None}, device="cpu")  # fmt: skip
    if confidence["threshold"] is not None:  # an untrained network may read every line alike: nothing to separate
        flagged = picked.confidence["pick"] < confidence["threshold"]
        assert confidence["test"]["flagged"] == pytest.approx(flagged.mean())


def test_the_threshold_is_chosen_on_the_val_lines_read_with_the_pick(tmp_path, line_checkpoint, monkeypatch):
    """Val lines: 'hurt' read right and surely, 'help' read wrong and unsurely (greedy): the threshold lies between
    their confidences, and the test lines report what it flags."""
    monkeypatch.setattr(evaluation, "line_logits", fabricated_logits)
    lines = write_lines(tmp_path / "lines.h5", {"val": ["hurt"] * 3 + ["help"] * 2, "test": ["help", "hurt", "hurt"]})
    params = evaluate_params(decoders=["greedy"], lm_weights=[0.0], length_bonuses=[0.0], beam_width=4)
    choice = choose_decoder(line_checkpoint, lines, None, params, device="cpu")
    assert list(choice.val_wrong) == [False] * 3 + [True] * 2
    sure, unsure = choice.val_confidence[0], choice.val_confidence[3]
    calibration = choice.metrics()["confidence"]
    assert unsure < calibration["threshold"] < sure
    assert calibration["val"]["wrong_among_flagged"] == 1.0 and calibration["val"]["wrong_among_unflagged"] == 0.0
    assert calibration["test"]["flagged"] == calibration["test"]["wrong"] == pytest.approx(1 / 3)
    assert choice.record("0" * 64)["low_confidence_threshold"] == calibration["threshold"]
