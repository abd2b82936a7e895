"""line_model.arch simple: the lab's LineCNNSimple (the char CNN on each 28-px window) trained with cross-entropy,
its targets, decoder and metrics, its data on the 28-px grid, its checkpoint, and evaluate and predict reading it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from text_recognizer import cli
from text_recognizer.data.device_loader import EmnistLinesWindowsDataModule
from text_recognizer.data.synthetic import render_glyphs
from text_recognizer.lit_models.ctc import character_error_rate, greedy_decode, indices_to_text, labels_to_texts
from text_recognizer.lit_models.windows import window_decode, window_hits, window_targets
from text_recognizer.metadata import (
    BLANK_INDEX,
    CHAR_TO_LINE_INDEX,
    GLYPH_SIZE,
    LINE_TOKENS,
    PAD_INDEX,
    SPACE_INDEX,
    emnist_class_to_line_index,
)
from text_recognizer.models.checkpoint import load_checkpoint, save_checkpoint
from text_recognizer.models.line_archs import line_network
from text_recognizer.models.line_simple import LineCNNSimple
from text_recognizer.params import LineModelParams, from_dict, load_section
from text_recognizer.reading.decoder_choice import NO_BEAM, choose_decoder
from text_recognizer.reading.evaluation import evaluate_lines, line_decoder, to_model_input
from text_recognizer.reading.predict import PredictError, load_model, read_array
from text_recognizer.training import network_kwargs, train

PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"
LINE_MODEL = yaml.safe_load(PARAMS_YAML.read_text())["line_model"]


def simple_params(**overrides: object) -> LineModelParams:
    """line_model with arch simple (load_section would refuse it beside params.yaml's overlapping lines)."""
    return from_dict(LineModelParams, "line_model", {**LINE_MODEL, "arch": "simple", **overrides})


def simple_net(**overrides: object) -> LineCNNSimple:
    kwargs = network_kwargs(simple_params(width=4, fc_dim=8, dropout=0.0, **overrides), num_classes=len(LINE_TOKENS))
    return line_network(**kwargs)


def write_grid_lines(path: Path, counts: dict[str, int], *, classes: int, max_length: int, seed: int) -> Path:
    """Lines as emnist_lines draws them at overlap 0: character k at x = 28k, a space an empty cell (never first
    or last), labels padded with PAD_INDEX, glyph_x and the overlap attributes recorded."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.attrs.update(mapping=json.dumps(list(LINE_TOKENS)), max_length=max_length, min_overlap=0.0, max_overlap=0.0)
        for split, m in counts.items():
            lengths = rng.integers(1, max_length + 1, m).astype(np.int32)
            chars = rng.integers(0, classes, (m, max_length))
            inside = (np.arange(max_length) > 0) & (np.arange(max_length) < lengths[:, None] - 1)
            spaces = inside & (rng.random((m, max_length)) < 0.2)
            glyphs = render_glyphs(chars.reshape(-1), rng).reshape(m, max_length, GLYPH_SIZE, GLYPH_SIZE)
            glyphs[spaces] = 0
            in_text = np.arange(max_length) < lengths[:, None]
            labels = np.where(spaces, SPACE_INDEX, emnist_class_to_line_index(0) + chars)
            labels = np.where(in_text, labels, PAD_INDEX).astype(np.uint8)
            cells = np.where(in_text[:, :, None, None], glyphs, 0)  # (m, L, 28, 28)
            f[f"{split}/images"] = cells.transpose(0, 2, 1, 3).reshape(m, GLYPH_SIZE, GLYPH_SIZE * max_length)
            f[f"{split}/labels"] = labels
            f[f"{split}/lengths"] = lengths
            f[f"{split}/glyph_x"] = np.broadcast_to(np.arange(max_length) * GLYPH_SIZE, (m, max_length)).astype(
                np.int32
            )
    return path


@pytest.fixture(scope="module")
def grid_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "grid_lines.h5"
    return write_grid_lines(path, {"train": 768, "val": 128, "test": 64}, classes=10, max_length=5, seed=1)


def _texts(path: Path, split: str) -> tuple[np.ndarray, list[str]]:
    with h5py.File(path) as f:
        images = f[f"{split}/images"][:]
        texts = labels_to_texts(torch.from_numpy(f[f"{split}/labels"][:]), torch.from_numpy(f[f"{split}/lengths"][:]))
    return images, texts


def _one_hot(rows: list[list[int]]) -> torch.Tensor:
    """(B, C, L) logits whose argmax is rows[b][i]."""
    return torch.nn.functional.one_hot(torch.tensor(rows), len(LINE_TOKENS)).float().transpose(1, 2)


# --- the network ---------------------------------------------------------------------------------------------


def test_windows_are_one_batched_call_of_the_char_cnn_equal_to_each_window_alone() -> None:
    torch.manual_seed(0)
    net = simple_net().eval()
    x = torch.rand(3, 1, GLYPH_SIZE, GLYPH_SIZE * 6)
    calls: list[tuple[int, ...]] = []
    net.char.register_forward_hook(lambda module, args, out: calls.append(tuple(args[0].shape)))
    with torch.no_grad():
        logits = net(x)
        assert calls == [(3 * 6, 1, GLYPH_SIZE, GLYPH_SIZE)]  # once, every window in one batch: no loop over windows
        alone = torch.stack([net.char(x[..., GLYPH_SIZE * i : GLYPH_SIZE * (i + 1)]) for i in range(6)], dim=2)
    assert logits.shape == (3, len(LINE_TOKENS), 6)
    torch.testing.assert_close(logits, alone, rtol=1e-5, atol=1e-5)
    # a width off the grid is padded with black to whole windows
    with torch.no_grad():
        padded = net(torch.nn.functional.pad(x[..., :-10], (0, 10)))
        assert net(x[..., :-10]).shape[2] == 6 and torch.equal(net(x[..., :-10]), padded)
    with pytest.raises(ValueError, match=r"expects \(B, 1, 28, W\) images"):
        net(torch.rand(1, 1, 32, 56))


def test_network_kwargs_record_the_arch_and_only_the_keys_it_reads() -> None:
    kwargs = network_kwargs(simple_params(width=4, fc_dim=8), num_classes=len(LINE_TOKENS))
    assert kwargs == {"arch": "simple", "width": 4, "fc_dim": 8, "dropout": 0.2, "num_classes": 65}
    net = line_network(**kwargs)
    assert isinstance(net, LineCNNSimple) and (net.char.convs[0].out_channels, net.char.fc.out_features) == (4, 8)


# --- targets, decoder, metric --------------------------------------------------------------------------------

A, B = CHAR_TO_LINE_INDEX["a"], CHAR_TO_LINE_INDEX["b"]


def test_targets_pad_past_the_text_and_a_crop_drops_only_padding() -> None:
    labels = torch.tensor([[A, B, PAD_INDEX], [A, PAD_INDEX, PAD_INDEX]])
    assert window_targets(labels, 2).tolist() == [[A, B], [A, PAD_INDEX]]
    assert window_targets(labels, 4).tolist() == [[A, B, PAD_INDEX, PAD_INDEX], [A, PAD_INDEX, PAD_INDEX, PAD_INDEX]]


def test_the_decoder_reads_empty_windows_inside_the_text_as_spaces_and_drops_those_after() -> None:
    rows = [
        [A, PAD_INDEX, B, PAD_INDEX, PAD_INDEX],  # a space read as padding (the same empty window): still a space
        [A, SPACE_INDEX, B, SPACE_INDEX, PAD_INDEX],  # trailing spaces are padding: phrases never end in one
        [A, BLANK_INDEX, B, B, PAD_INDEX],  # the never-trained blank reads as empty; no CTC collapse of "bb"
        [PAD_INDEX] * 5,
    ]
    assert [indices_to_text(r) for r in window_decode(_one_hot(rows))] == ["a b", "a b", "a bb", ""]
    assert [indices_to_text(r) for r in window_decode(_one_hot(rows[:1]), torch.tensor([2]))] == ["a"]
    assert [indices_to_text(r) for r in greedy_decode(_one_hot(rows[2:3]))] == ["ab"]  # what CTC would make of it


def test_character_accuracy_counts_the_text_only_never_the_padding() -> None:
    labels = torch.tensor([[A, SPACE_INDEX, B, PAD_INDEX, PAD_INDEX]])
    lengths = torch.tensor([3])
    all_padding = _one_hot([[PAD_INDEX] * 5])  # right on the 2 padding windows, and (as a space) on the space
    assert window_hits(all_padding, labels, lengths).tolist() == [False, True, False]
    assert window_hits(_one_hot([[A, PAD_INDEX, B, A, A]]), labels, lengths).all()  # windows past the text: unscored
    with pytest.raises(ValueError, match="a text of 3 characters has only 2 windows"):
        window_hits(all_padding[..., :2], labels, lengths)


# --- data ------------------------------------------------------------------------------------------------------


def test_batches_are_cut_to_their_longest_text_on_the_grid(grid_h5: Path) -> None:
    module = EmnistLinesWindowsDataModule(grid_h5, batch_size=16, seed=0, augment=None)
    x, labels, lengths = next(iter(module.val_dataloader()))
    assert x.shape == (16, 1, GLYPH_SIZE, GLYPH_SIZE * int(lengths.max()))
    assert (labels[:, int(lengths.max()) :] == PAD_INDEX).all()  # what the cut drops is padding


def test_lines_off_the_grid_are_refused_naming_the_fix(tmp_path: Path) -> None:
    path = write_grid_lines(tmp_path / "lines.h5", {"train": 8, "val": 4}, classes=10, max_length=4, seed=0)
    with h5py.File(path, "a") as f:
        f.attrs["max_overlap"] = 0.25
    module = EmnistLinesWindowsDataModule(path, batch_size=4, seed=0, augment=None)
    with pytest.raises(ValueError, match=r"drawn with max_overlap=0.25.*emnist_lines.max_overlap=0"):
        module.setup()
    with h5py.File(path, "a") as f:
        f.attrs["max_overlap"] = 0.0
        f["val/glyph_x"][1, 1] = 20  # inside line 1's text when it has 2 characters or more
        f["val/lengths"][1] = 3
    with pytest.raises(ValueError, match=r"1 val lines .* off the 28-px grid, e.g. line 1 at x = \[0, 20, 56\]"):
        EmnistLinesWindowsDataModule(path, batch_size=4, seed=0, augment=None).setup()


# --- checkpoint ------------------------------------------------------------------------------------------------


def test_checkpoint_round_trip_rebuilds_the_simple_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = simple_net().eval()
    kwargs = network_kwargs(simple_params(width=4, fc_dim=8, dropout=0.0), num_classes=len(LINE_TOKENS))
    save_checkpoint(
        tmp_path / "s.pt", kind="line", model_kwargs=kwargs, state_dict=net.state_dict(), mapping=LINE_TOKENS
    )
    loaded = load_checkpoint(tmp_path / "s.pt", expected_kind="line")
    assert isinstance(loaded.model, LineCNNSimple) and loaded.arch == "simple" and loaded.model_kwargs == kwargs
    x = torch.rand(2, 1, GLYPH_SIZE, GLYPH_SIZE * 3)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), net(x))
    # a line checkpoint that records no arch predates it: a LineCNN (with no head when it records none, and the
    # full-resolution stem, which every LineCNN had before line_model.stem)
    ctc = {"width": 4, "fc_dim": 8, "window_width": 28, "window_stride": 8, "dropout": 0.0}
    old = line_network(arch="ctc", head="none", stem="full", **ctc).eval()
    save_checkpoint(
        tmp_path / "old.pt", kind="line", model_kwargs=ctc, state_dict=old.state_dict(), mapping=LINE_TOKENS
    )
    loaded_old = load_checkpoint(tmp_path / "old.pt")
    assert loaded_old.arch == "ctc" and loaded_old.model.stem == "full"
    with torch.no_grad():
        torch.testing.assert_close(loaded_old.model(x), old(x), rtol=0, atol=0)


# --- training, evaluate and predict ------------------------------------------------------------------------------


def _read_tsv(path: Path) -> list[float]:
    with open(path) as f:
        return [float(row[-1]) for row in list(csv.reader(f, delimiter="\t"))[1:]]


def _direct_cer(net: torch.nn.Module, images: np.ndarray, texts: list[str]) -> float:
    with torch.no_grad():
        logits = net.eval()(to_model_input(images, torch.device("cpu")))
    return character_error_rate([indices_to_text(r) for r in window_decode(logits)], texts)


def test_simple_model_learns_and_evaluate_and_predict_read_it(
    grid_h5: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = simple_params(width=16, fc_dim=64, dropout=0.0)
    run = load_section(
        "train_line_cnn", PARAMS_YAML, epochs=4, batch_size=32, lr=3e-3, seed=0, augment=False, accelerator="cpu"
    )  # 4 x 24 steps
    val_images, val_texts = _texts(grid_h5, "val")
    torch.manual_seed(0)
    untrained = _direct_cer(line_network(**network_kwargs(model, num_classes=len(LINE_TOKENS))), val_images, val_texts)
    metrics = train(grid_h5, model, run, checkpoint_path=tmp_path / "s.pt", log_dir=tmp_path / "live")
    print("simple metrics:", metrics, "untrained CER:", untrained)
    assert set(metrics) == {"val/loss", "val/cer", "val/line_acc", "val/char_acc"}
    assert metrics["val/cer"] < 0.3 < 0.8 < untrained and metrics["val/char_acc"] > 0.7
    losses = _read_tsv(tmp_path / "live/plots/metrics/train/loss.tsv")
    assert len(losses) == run.epochs and losses[-1] < 0.5 * losses[0]

    loaded = load_checkpoint(tmp_path / "s.pt", expected_kind="line")
    assert loaded.model_kwargs == {"arch": "simple", "width": 16, "fc_dim": 64, "dropout": 0.0, "num_classes": 65}
    # the logged CER (cropped batches) is the CER of the weights on the full lines: windows do not see each other
    assert _direct_cer(loaded.model, val_images, val_texts) == pytest.approx(metrics["val/cer"], abs=1e-6)
    test_images, test_texts = _texts(grid_h5, "test")
    test = evaluate_lines(tmp_path / "s.pt", grid_h5, device="cpu")
    assert list(test.by_decoder) == ["argmax"] and test.num_lines == 64
    assert test.cer == pytest.approx(_direct_cer(loaded.model, test_images, test_texts), abs=1e-9)
    beam = line_decoder("beam", beam_width=4, lm_weight=0.0, length_bonus=0.0)
    with pytest.raises(ValueError, match="beam search applies to CTC models only"):
        evaluate_lines(tmp_path / "s.pt", grid_h5, decoders={"beam": beam}, device="cpu")

    params = load_section("evaluate", PARAMS_YAML, batch_size=64, num_sample_lines=3)
    choice = choose_decoder(tmp_path / "s.pt", grid_h5, None, params, device="cpu")
    figures = choice.metrics()
    assert figures["decoder"] == "argmax" and figures["beam"] == NO_BEAM
    assert figures["test_cer"] == figures["greedy"]["test_cer"] == pytest.approx(test.cer)
    assert figures["val_cer"] == pytest.approx(metrics["val/cer"], abs=1e-6)
    assert choice.record("unused")["decoder"] == "argmax" and len(choice.test.samples) == 3

    reader = load_model(tmp_path / "s.pt", device="cpu")
    read = [read_array(image, reader, layout="line", check_kind=False).text for image in test_images[:8]]
    assert read == [
        s.pred_text for s in evaluate_lines(tmp_path / "s.pt", grid_h5, device="cpu", num_samples=8).samples
    ]
    with pytest.raises(PredictError, match="per-window line model"):
        read_array(test_images[0], reader, layout="line", check_kind=False, decode=beam)
    Image.fromarray(255 - test_images[0]).save(tmp_path / "line.png")  # dark ink on paper, as a user's file
    predict = ["predict", str(tmp_path / "line.png"), "--model", str(tmp_path / "s.pt"), "--layout", "line"]
    capsys.readouterr()
    assert cli.main(predict) == (0 if read[0] else 1) and capsys.readouterr().out.strip() == read[0]
    assert cli.main([*predict, "--decoder", "beam"]) == 1
    assert "--decoder beam applies to CTC models only" in capsys.readouterr().err
