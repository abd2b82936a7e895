"""The decoders as evaluate and predict use them: cropped lines, both decoders on the same logits, the LM."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from text_recognizer import cli
from text_recognizer.lit_models.ctc import character_error_rate, greedy_decode, indices_to_text
from text_recognizer.metadata import CHAR_TO_LINE_INDEX, LINE_TOKENS, PAD_INDEX
from text_recognizer.models.checkpoint import save_checkpoint
from text_recognizer.models.line_cnn import LineCNN
from text_recognizer.reading.char_lm import CharLM
from text_recognizer.reading.evaluation import evaluate_lines, line_decoder, line_logits
from text_recognizer.reading.predict import load_model

try:
    from tests.tiny_nets import TINY_LINE_NET
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from tiny_nets import TINY_LINE_NET

KWARGS = {**TINY_LINE_NET, "width": 8, "fc_dim": 16}
TEXTS = ["ab", "a", "ba c", "cab"]


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = LineCNN(**KWARGS).eval()
    path = tmp_path / "line_cnn.pt"
    save_checkpoint(path, kind="line", model_kwargs=KWARGS, state_dict=model.state_dict(), mapping=list(LINE_TOKENS))
    return path


@pytest.fixture
def lines_h5(tmp_path: Path) -> Path:
    """Lines whose ink ends at different columns, right-padded with black to 28 * max_length."""
    max_length, rng = 4, np.random.default_rng(2)
    images = np.zeros((len(TEXTS), 28, 28 * max_length), dtype=np.uint8)
    labels = np.full((len(TEXTS), max_length), PAD_INDEX, dtype=np.uint8)
    for i, text in enumerate(TEXTS):
        images[i, 4:24, : 28 * len(text) - 6] = rng.integers(0, 256, size=(20, 28 * len(text) - 6))
        labels[i, : len(text)] = [CHAR_TO_LINE_INDEX[c] for c in text]
    path = tmp_path / "emnist_lines.h5"
    with h5py.File(path, "w") as f:
        f.attrs["mapping"] = json.dumps(list(LINE_TOKENS))
        f["test/images"], f["test/labels"] = images, labels
        f["test/lengths"] = np.array([len(t) for t in TEXTS], dtype=np.int32)
    return path


def test_evaluation_reads_each_line_as_if_it_were_alone(checkpoint: Path, lines_h5: Path):
    """Cropping a batch to its widest line and cutting each line at its own length changes nothing."""
    loaded = load_model(checkpoint, device="cpu")
    with h5py.File(lines_h5) as f:
        images = f["test/images"][()]
    alone = []
    with torch.inference_mode():
        for image in images:
            logits, lengths = line_logits(loaded, image[None], torch.device("cpu"))
            alone.append(indices_to_text(greedy_decode(logits, lengths)[0]))
        batch_logits, batch_lengths = line_logits(loaded, images, torch.device("cpu"))
        short_logits, _ = line_logits(loaded, images[:2], torch.device("cpu"))  # "ab" and "a"
    assert short_logits.shape[-1] < (images.shape[2] - 28) // 8 + 1  # their padding was cut off
    assert [indices_to_text(r) for r in greedy_decode(batch_logits, batch_lengths)] == alone
    result = evaluate_lines(checkpoint, lines_h5, batch_size=3, device="cpu", num_samples=4)
    assert result.cer == pytest.approx(character_error_rate(alone, TEXTS))
    assert [s.pred_text for s in result.samples] == alone


def test_both_decoders_read_the_same_logits_and_the_first_one_leads(checkpoint: Path, lines_h5: Path):
    lm = CharLM.fit("\n".join(["ab", "cab", "ba c"] * 50), order=3)
    decoders = {
        "beam": line_decoder("beam", beam_width=4, lm=lm, lm_weight=0.5, length_bonus=0.0),
        "greedy": line_decoder("greedy"),
    }
    result = evaluate_lines(checkpoint, lines_h5, decoders=decoders, device="cpu")
    assert set(result.by_decoder) == {"beam", "greedy"}
    assert result.cer == result.by_decoder["beam"]["cer"]
    greedy_only = evaluate_lines(checkpoint, lines_h5, device="cpu")
    assert greedy_only.by_decoder["greedy"] == result.by_decoder["greedy"]
    beam_without_lm = evaluate_lines(
        checkpoint,
        lines_h5,
        decoders={"beam": line_decoder("beam", beam_width=1, lm_weight=0.0, length_bonus=0.0)},
        device="cpu",
    )
    assert beam_without_lm.cer == pytest.approx(greedy_only.cer)  # beam 1, no LM: the best path
    with pytest.raises(ValueError, match="greedy or beam"):
        line_decoder("viterbi")


def test_cli_predict_decoder_choice(checkpoint: Path, tmp_path: Path, capsys, monkeypatch):
    """--decoder beam reads with the settings and the LM the checkpoint records (evaluate's reader), from any folder."""
    from PIL import Image, ImageDraw, ImageFont

    from text_recognizer.data.download import file_digest
    from text_recognizer.models.checkpoint import save_with_extra

    image = Image.new("L", (200, 60), 255)
    ImageDraw.Draw(image).text((10, 10), "ab ca", fill=0, font=ImageFont.load_default(size=36))
    png = tmp_path / "line.png"
    image.save(png)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("evaluate:\n  beam_width: x\n")  # not read: a broken one proves it
    lm_path = tmp_path / "char_lm.npz"
    CharLM.fit("ab ca\nab\n" * 20, order=3).save(lm_path)

    def predict(model: Path, lm: Path, decoder: str = "beam") -> tuple[int, str, str]:
        code = cli.main(["predict", str(png), "--model", str(model), "--decoder", decoder, "--lm", str(lm)])
        out, err = capsys.readouterr()
        return code, out, err

    code, _, err = predict(checkpoint, lm_path)  # trained, never evaluated: no decoder settings to read with
    assert code == 1 and "records no decoder settings" in err
    reader = tmp_path / "line_reader.pt"
    reading = {
        "decoder": "beam",
        "beam_width": 4,
        "lm_weight": 0.5,
        "length_bonus": 0.0,
        "lm_sha256": file_digest(lm_path),
    }
    save_with_extra(checkpoint, reader, reading=reading)
    code, _, err = predict(reader, tmp_path / "none.npz")
    assert code == 1 and "no language model at" in err and "none.npz" in err
    other = tmp_path / "other.npz"
    CharLM.fit("ca ab\n" * 20, order=2).save(other)
    code, _, err = predict(reader, other)
    assert code == 1 and "is not the language model" in err
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a model")
    save_with_extra(checkpoint, reader, reading={**reading, "lm_sha256": file_digest(bad)})
    code, _, err = predict(reader, bad)
    assert code == 1 and "not a language model" in err
    save_with_extra(checkpoint, reader, reading=reading)
    for decoder in ("beam", "greedy"):
        code, out, err = predict(reader, lm_path, decoder)
        assert (code == 0 and out.strip()) or (code == 1 and "read no characters" in err), (decoder, out, err)


def test_char_lm_stage_writes_a_model_of_the_train_text(tmp_path: Path):
    import subprocess
    import sys

    import yaml

    root = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["char_lm"].update(order=3, num_phrases=500)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "train_text.txt").write_text("the cat sat on the mat\nthe dog sat on the log\n" * 20)
    stage = [sys.executable, str(root / "stages" / "char_lm.py"), "train_text.txt", "models/char_lm.npz"]
    result = subprocess.run(stage, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    lm = CharLM.load(tmp_path / "models" / "char_lm.npz")
    assert lm.order == 3 and not list((tmp_path / "models").glob(".*"))  # no temporary left
    assert lm.perplexity("the cat sat on the log") < lm.perplexity("zqx vjk wpf")
    missing = subprocess.run([*stage[:2], "none.txt", "o.npz"], cwd=tmp_path, capture_output=True, text=True)
    assert missing.returncode == 1 and "emnist_lines" in missing.stderr and "Traceback" not in missing.stderr
