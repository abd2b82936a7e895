"""params.yaml loads into checked dataclasses; bad values fail naming the key, all of them at once."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from text_recognizer import params as P

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {
    "data": P.DataParams,
    "download_emnist": P.DownloadEmnistParams,
    "download_brown": P.DownloadBrownParams,
    "emnist_hdf5": P.EmnistHdf5Params,
    "emnist_lines": P.EmnistLinesParams,
    "model": P.ModelParams,
    "train_cnn": P.CharTrainParams,
    "line_model": P.LineModelParams,
    "train_line_cnn": P.LineTrainParams,
    "char_lm": P.CharLMParams,
    "evaluate": P.EvaluateParams,
}
YAML = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_yaml(section: str, **values) -> dict:
    """params.yaml's section with some keys changed: the classes have no defaults of their own."""
    return {**YAML[section], **values}


def test_params_yaml_has_every_key_of_every_section():
    """Every key `dvc exp run -S` may set is written out in params.yaml, none left to code defaults."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(params) == set(SECTIONS) and P.SECTIONS == SECTIONS
    for name, cls in SECTIONS.items():
        section = P.from_dict(cls, name, params[name])
        assert set(params[name]) == set(vars(section)), name
    assert P.load_params(ROOT / "params.yaml") == params  # and the sections agree with each other


GE = "Input should be greater than or equal to"
LE = "Input should be less than or equal to"
PAST_INK = "more than the 4 px its CTC steps read past its ink (INK_MARGIN)"
OVERFIT = "Input should be 0 (off), a number of batches (an int) or a share of them (a float in (0, 1))"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"num_blocks": 0}, f"model.num_blocks: {GE} 1, got 0"),
        ({"num_blocks": "abc"}, "model.num_blocks: Input should be a valid integer, got 'abc'"),
        ({"num_block": 3}, "model.num_block: Extra inputs are not permitted (no such key)"),
        ({"dropout": float("nan")}, "model.dropout: Input should be a finite number, got nan"),
        ({"lr": -0.1}, "train_cnn.lr: Input should be greater than 0, got -0.1"),
        (
            {"accelerator": "tpu"},
            "train_cnn.accelerator: Input should be 'auto', 'cpu', 'gpu', 'cuda' or 'mps', got 'tpu'",
        ),
        ({"compile": 1}, "train_cnn.compile: Input should be a valid boolean, got 1"),
        ({"label_smoothing": 1.0}, "train_cnn.label_smoothing: Input should be less than 1, got 1.0"),
        ({"augment_shift_y": -1}, f"train_cnn.augment_shift_y: {GE} 0, got -1"),
        ({"augment_scale_x": 1.0}, "train_cnn.augment_scale_x: Input should be less than 1, got 1.0"),
        ({"augment_rotation": 181}, "train_cnn.augment_rotation: Input should be less than or equal to 180, got 181"),
        (
            {"augment_rotation": 2.0},
            "train_line_cnn.augment_rotation: Input should be 0 (batches of lines are cropped to their ink: the warp "
            "may only move it vertically), got 2.0",
        ),
        ({"augment_slant": -1}, f"train_cnn.augment_slant: {GE} 0, got -1"),
        ({"augment_slant": 46}, "train_cnn.augment_slant: Input should be less than or equal to 45, got 46"),
        ({"augment_elastic_alpha": -0.5}, f"train_cnn.augment_elastic_alpha: {GE} 0, got -0.5"),
        ({"augment_elastic_alpha": 8}, f"train_cnn.augment_elastic_alpha: {LE} 7, got 8"),
        ({"augment_elastic_sigma": 0.5}, f"train_cnn.augment_elastic_sigma: {GE} 1, got 0.5"),
        ({"augment_stroke": -0.1}, f"train_cnn.augment_stroke: {GE} 0, got -0.1"),
        ({"augment_stroke": 1.5}, "train_cnn.augment_stroke: Input should be less than or equal to 1, got 1.5"),
        ({"augment_stroke": -0.5}, f"train_line_cnn.augment_stroke: {GE} 0, got -0.5"),
        (
            {"augment_slant": 10.0},
            "train_line_cnn.augment_slant: Input with augment_elastic_alpha (1.0) and augment_stroke (0.5) moves a "
            f"line's ink up to 4.47 px sideways, {PAST_INK}, got 10.0",
        ),
        (
            {"augment_slant": 0, "augment_elastic_alpha": 3.5},
            "train_line_cnn.augment_elastic_alpha: Input with augment_slant (0.0) and augment_stroke (0.5) moves a "
            f"line's ink up to 4.50 px sideways, {PAST_INK}, got 3.5",
        ),
        ({"label_smoothing": 0.1}, "train_line_cnn.label_smoothing: Extra inputs are not permitted (no such key)"),
        ({"limit_train_batches": 0}, "train_cnn.limit_train_batches: Input should be greater than 0, got 0"),
        ({"warmup_fraction": 1.0}, "train_line_cnn.warmup_fraction: Input should be less than 1, got 1.0"),
        ({"warmup_fraction": 0}, "train_line_cnn.warmup_fraction: Input should be greater than 0, got 0"),
        (
            {"min_overlap": 0.5, "max_overlap": 0.2},
            "emnist_lines.min_overlap: Input should be less than or equal to max_overlap (0.2), got 0.5",
        ),
        ({"max_overlap": 1.0}, "emnist_lines.max_overlap: Input should be less than 1, got 1.0"),
        ({"max_length": 0}, f"emnist_lines.max_length: {GE} 1, got 0"),
        ({"num_val": -1}, f"emnist_lines.num_val: {GE} 0, got -1"),
        ({"seed": -1}, f"emnist_lines.seed: {GE} 0, got -1"),
        ({"text_val_fraction": 1.0}, "emnist_lines.text_val_fraction: Input should be less than 1, got 1.0"),
        ({"text_test_fraction": -0.1}, f"emnist_lines.text_test_fraction: {GE} 0, got -0.1"),
        (
            {"text_val_fraction": 0.6, "text_test_fraction": 0.4},
            "emnist_lines.text_test_fraction: Input plus text_val_fraction (0.6) should be less than 1 "
            "(the train pool needs documents), got 0.4",
        ),
        ({"text_seed": -2}, f"emnist_lines.text_seed: {GE} 0, got -2"),
        ({"text_seed": "a"}, "emnist_lines.text_seed: Input should be a valid integer, got 'a'"),
        ({"random_text_share": 1.0}, "emnist_lines.random_text_share: Input should be less than 1, got 1.0"),
        ({"random_text_share": -0.1}, f"emnist_lines.random_text_share: {GE} 0, got -0.1"),
        ({"val_fraction": 1.0}, "emnist_hdf5.val_fraction: Input should be less than 1, got 1.0"),
        ({"source": "kaggle"}, "data.source: Input should be 'nist', 'synthetic' or 'handwriting', got 'kaggle'"),
        ({"window_stride": 7}, "line_model.window_stride: Input should be a multiple of 2, got 7"),
        ({"window_width": 0}, f"line_model.window_width: {GE} 2, got 0"),
        ({"head": "gru"}, "line_model.head: Input should be 'none', 'lstm' or 'transformer', got 'gru'"),
        (
            {"head": "transformer", "fc_dim": 33},
            "line_model.fc_dim: Input should be even with head 'transformer' (sinusoidal positions), got 33",
        ),
        ({"arch": "vit"}, "model.arch: Input should be 'resnet', 'cnn' or 'mlp', got 'vit'"),
        ({"arch": None}, "model.arch: Input should be 'resnet', 'cnn' or 'mlp', got None"),
        ({"conv_dim": 0}, f"model.conv_dim: {GE} 1, got 0"),
        ({"fc1_dim": -8}, f"model.fc1_dim: {GE} 1, got -8"),
        ({"fc2_dim": 64.5}, "model.fc2_dim: Input should be a valid integer, got 64.5"),
        ({"fc_dim": "128"}, "model.fc_dim: Input should be a valid integer, got '128'"),
        ({"overfit_batches": -1}, f"train_cnn.overfit_batches: {OVERFIT}, got -1"),
        ({"overfit_batches": 1.0}, f"train_cnn.overfit_batches: {OVERFIT}, got 1.0"),  # Lightning: all batches
        ({"overfit_batches": 2.0}, f"train_line_cnn.overfit_batches: {OVERFIT}, got 2.0"),
        ({"overfit_batches": True}, f"train_line_cnn.overfit_batches: {OVERFIT}, got True"),
        ({"overfit_batches": float("nan")}, f"train_cnn.overfit_batches: {OVERFIT}, got nan"),
        (
            {"overfit_batches": 2, "limit_train_batches": 0.5},
            "train_cnn.limit_train_batches: Input should be 1.0 with overfit_batches (2), which sets the batches of "
            "an epoch itself (Lightning would ignore this), got 0.5",
        ),
        ({"timeout_s": 0}, "download_brown.timeout_s: Input should be greater than 0, got 0"),
        ({"mirrors": []}, "download_brown.mirrors: Tuple should have at least 1 item after validation, not 0, got []"),
        ({"mirrors": "https://x"}, "download_brown.mirrors: Input should be a valid tuple, got 'https://x'"),
        ({"mirrors": [1]}, "download_brown.mirrors[0]: Input should be a valid string, got 1"),  # and no length error
        (
            {"sha256": {"byclass": {"train_images": 7}}},
            "download_emnist.sha256.byclass.train_images: Input should be a valid string, got 7",
        ),
        (
            {"sha256": {"train_images": "ab"}},  # the flat keys before every split was kept
            "download_emnist.sha256.train_images: Input should be a valid dictionary, got 'ab'",
        ),
        (
            {"split": "emnist"},
            "emnist_hdf5.split: Input should be 'byclass', 'bymerge', 'balanced', 'letters', 'digits' or 'mnist', "
            "got 'emnist'",
        ),
        (
            {"split": "ByClass"},  # the paper's spelling: the key is the archive's, lower case
            "emnist_hdf5.split: Input should be 'byclass', 'bymerge', 'balanced', 'letters', 'digits' or 'mnist', "
            "got 'ByClass'",
        ),
    ],
)
def test_bad_values_name_the_key(values, message):
    section = message.split(".")[0]
    with pytest.raises(P.ParamError) as err:
        P.from_dict(SECTIONS[section], section, with_yaml(section, **values))
    assert err.value.problems == [message]  # the whole message, on one line: key first, then the value


def test_types_are_coerced_only_where_safe():
    run = P.from_dict(P.CharTrainParams, "train_cnn", with_yaml("train_cnn", lr=1, epochs=2))
    assert run.lr == 1.0 and isinstance(run.lr, float)
    with pytest.raises(P.ParamError, match=r"^train_cnn\.epochs: Input should be a valid integer, got 2\.5$"):
        P.from_dict(P.CharTrainParams, "train_cnn", with_yaml("train_cnn", epochs=2.5))
    with pytest.raises(P.ParamError, match=r"^train_cnn\.epochs: Input should be a valid integer, got True$"):
        P.from_dict(P.CharTrainParams, "train_cnn", with_yaml("train_cnn", epochs=True))


# --- the CTC guard: line_model against emnist_lines ----------------------------------------------


def fits(max_length: int, window_width: int = 28, window_stride: int = 8) -> list[str]:
    return P.check_line_model_fits_lines(
        P.from_dict(
            P.LineModelParams,
            "line_model",
            with_yaml("line_model", window_width=window_width, window_stride=window_stride),
        ),
        P.from_dict(P.EmnistLinesParams, "emnist_lines", with_yaml("emnist_lines", max_length=max_length)),
    )


def test_ctc_guard_counts_the_blanks_between_repeats():
    # stride 28 gives T = 32 = max_length, which a per-character check let through; CTC needs 63.
    (message,) = fits(32, window_stride=28)
    for part in ("line_model.window_stride=28", "line_model.window_width=28", "emnist_lines.max_length=32",
                 "= 32 output steps", "need 63", "window_stride <= 14"):  # fmt: skip
        assert part in message, (part, message)
    (message,) = fits(32, window_stride=16)  # T = 55: more than 32, fewer than 63
    assert "= 55 output steps" in message
    assert fits(32, window_stride=14) == []  # T = 63: exactly enough
    assert fits(32) == []  # the defaults: T = 109
    assert fits(1, window_stride=28) == []  # one character needs one step
    (message,) = fits(2, window_width=56, window_stride=2)  # T = 1 < 3 and no stride helps
    assert "lower line_model.window_width or emnist_lines.max_length" in message
    (message,) = fits(2, window_width=58)
    assert "line_model.window_width=58 is wider than the lines" in message and "56 px" in message


def test_ctc_guard_bound_and_steps_match_the_model():
    import torch

    from text_recognizer.models.line_archs import line_arch_kwargs, line_network

    for max_length in (1, 2, 8, 32):
        for window_width in (16, 28, 40):
            for window_stride in (2, 8, 14, 28):
                if 28 * max_length >= window_width:
                    expected = (28 * max_length - window_width) // window_stride + 1
                    assert P.line_output_steps(max_length, window_width, window_stride) == expected
    assert [P.ctc_steps_bound(n) for n in (1, 2, 32)] == [1, 3, 63]
    # the model gives a full line the steps the guard counts (the guard and the model share line_geometry)
    line_model = P.from_dict(P.LineModelParams, "line_model", with_yaml("line_model", width=4, fc_dim=8))
    model = line_network(**line_arch_kwargs(line_model.arch, vars(line_model))).eval()
    with torch.no_grad():
        steps = model(torch.rand(1, 1, 28, 28 * 4)).shape[-1]
    assert steps == P.line_output_steps(4, line_model.window_width, line_model.window_stride)


def test_every_line_head_params_accept_builds():
    from text_recognizer.models.line_archs import line_arch_kwargs, line_network

    assert P.LINE_HEADS == ("none", "lstm", "transformer")
    for head in P.LINE_HEADS:  # every head params accept builds, from the section as training passes it
        model = P.from_dict(P.LineModelParams, "line_model", with_yaml("line_model", head=head, width=4, fc_dim=8))
        assert line_network(**line_arch_kwargs(model.arch, vars(model))).head == head


def test_every_line_arch_params_accept_builds_from_the_section():
    from text_recognizer.models.line_archs import line_arch_kwargs, line_network

    assert P.LINE_ARCHS == ("ctc", "simple") and YAML["line_model"]["arch"] == "ctc"  # the default
    for arch in P.LINE_ARCHS:
        model = P.from_dict(P.LineModelParams, "line_model", with_yaml("line_model", arch=arch, width=4, fc_dim=8))
        kwargs = line_arch_kwargs(model.arch, vars(model))
        assert type(line_network(**kwargs)).__name__ == {"ctc": "LineCNN", "simple": "LineCNNSimple"}[arch]
    # simple reads the char CNN's sizes only: window_*, head mean nothing to it and are not recorded
    assert line_arch_kwargs("simple", YAML["line_model"]) == {
        "arch": "simple",
        "width": 64,
        "fc_dim": 256,
        "dropout": 0.2,
    }
    with pytest.raises(P.ParamError, match=r"line_model\.arch: Input should be 'ctc' or 'simple', got 'lstm'"):
        P.from_dict(P.LineModelParams, "line_model", with_yaml("line_model", arch="lstm"))


def simple_fits(**lines) -> list[str]:
    model = P.from_dict(P.LineModelParams, "line_model", with_yaml("line_model", arch="simple"))
    drawn = P.from_dict(P.EmnistLinesParams, "emnist_lines", with_yaml("emnist_lines", **lines))
    return P.check_line_model_fits_lines(model, drawn)


def test_simple_line_model_needs_lines_without_overlap():
    (message,) = simple_fits(min_overlap=0.0, max_overlap=0.33)
    assert message == (
        "line_model.arch=simple reads each character from its own 28-px window, so the lines must be drawn without "
        "overlap, got emnist_lines.min_overlap=0.0 and emnist_lines.max_overlap=0.33: set both to 0 "
        "(or use line_model.arch=ctc)"
    )
    (message,) = simple_fits(min_overlap=0.1, max_overlap=0.1)
    assert "min_overlap=0.1 and emnist_lines.max_overlap=0.1" in message
    assert simple_fits(min_overlap=0.0, max_overlap=0.0) == []
    # no CTC guard for a model without CTC: stride 28 at max_length 32 would need 63 steps
    assert simple_fits(max_overlap=0.0, max_length=32) == [] and len(fits(32, window_stride=28)) == 1


def test_simple_with_overlap_is_reported_with_every_other_problem(tmp_path):
    """The check across sections runs beside each section's own, and every stage stops on it before its work."""
    bad = write_params(tmp_path, line_model={"arch": "simple"}, emnist_lines={"max_overlap": 0.25},
                       train_line_cnn={"epochs": 0})  # fmt: skip
    with pytest.raises(P.ParamError) as err:
        P.load_params(bad)
    epochs, overlap = err.value.problems
    assert epochs.startswith("train_line_cnn.epochs: ") and overlap.startswith("line_model.arch=simple reads")
    assert "emnist_lines.max_overlap=0.25: set both to 0" in overlap
    write_params(tmp_path, line_model={"arch": "simple"}, emnist_lines={"max_overlap": 0.0})
    assert P.load_params(bad)["line_model"]["arch"] == "simple"
    write_params(tmp_path, line_model={"arch": "simple"}, emnist_lines={"max_overlap": 0.25})
    result = subprocess.run([sys.executable, str(ROOT / "stages" / "emnist_lines.py"), "no.h5", "no.zip", "o.h5",
                             "o.png", "o.txt"], cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 1 and "error: line_model.arch=simple reads each character" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_every_arch_params_accept_builds_from_the_section():
    from text_recognizer.models.char_archs import arch_kwargs, char_network

    assert P.CHAR_ARCHS == ("resnet", "cnn", "mlp") and YAML["model"]["arch"] == "resnet"  # the default
    small = {"width": 4, "conv_dim": 4, "fc_dim": 8, "fc1_dim": 8, "fc2_dim": 8}
    for arch in P.CHAR_ARCHS:  # as training builds it: the arch's keys of the checked section
        model = P.from_dict(P.ModelParams, "model", with_yaml("model", arch=arch, **small))
        assert type(char_network(**arch_kwargs(model.arch, vars(model)))).__name__ == {
            "resnet": "ResNetClassifier", "cnn": "CNN", "mlp": "MLP"
        }[arch]  # fmt: skip


@pytest.mark.parametrize("section", ["train_cnn", "train_line_cnn"])
@pytest.mark.parametrize("value", [0, 1, 2, 0.25])
def test_overfit_batches_takes_lightnings_forms(section, value):
    """0 is off, an int counts batches (1: one batch), a float in (0, 1) is a share of them; kept as given,
    since Lightning tells them apart by type."""
    run = P.from_dict(SECTIONS[section], section, with_yaml(section, overfit_batches=value))
    assert run.overfit_batches == value and type(run.overfit_batches) is type(value)
    assert YAML[section]["overfit_batches"] == 0  # off unless asked for


def test_the_checks_across_keys_of_a_run_report_together():
    values = with_yaml("train_line_cnn", overfit_batches=2, limit_train_batches=0.5, augment_rotation=2.0)
    with pytest.raises(P.ParamError) as err:
        P.from_dict(P.LineTrainParams, "train_line_cnn", values)
    assert [p.split(":")[0] for p in err.value.problems] == [
        "train_line_cnn.limit_train_batches",
        "train_line_cnn.augment_rotation",
    ]


def write_params(folder: Path, **sections: dict) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, values in sections.items():
        params[name] = {**params[name], **values}
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_every_stage_refuses_lines_the_line_model_cannot_align(tmp_path):
    """load_params, which every stage reads its section through, runs the cross-check."""
    bad = write_params(tmp_path, line_model={"window_stride": 28})
    with pytest.raises(P.ParamError, match=r"line_model\.window_stride=28 .* emnist_lines\.max_length=32"):
        P.load_params(bad)
    write_params(tmp_path, emnist_lines={"max_length": 64}, line_model={"window_stride": 16})
    with pytest.raises(P.ParamError, match=r"= 111 output steps.*need 127 .*window_stride <= 14"):
        P.load_params(bad)
    write_params(tmp_path, emnist_lines={"max_length": 64}, line_model={"window_stride": 14})
    assert P.load_params(bad)["emnist_lines"]["max_length"] == 64  # T = 127: exactly enough
    write_params(tmp_path, emnist_lines={"max_length": 8}, line_model={"window_stride": 14})
    assert P.load_params(bad)["line_model"]["window_stride"] == 14
    # A stage that does not use either section stops too, before it touches its (absent) inputs.
    write_params(tmp_path, line_model={"window_stride": 28})
    for stage, args in (("emnist_lines.py", ["no.h5", "no.zip", "o.h5", "o.png", "o.txt"]),
                        ("emnist_hdf5.py", ["no_dir", "o.h5", "o_byclass.h5"])):  # fmt: skip
        result = subprocess.run(
            [sys.executable, str(ROOT / "stages" / stage), *args], cwd=tmp_path, capture_output=True, text=True
        )
        assert result.returncode == 1, result.stderr
        assert "error: line_model.window_stride=28" in result.stderr, result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


# --- every problem at once, no defaults, every stage checks the whole file ---------------------------


def test_every_problem_of_a_section_is_reported_each_naming_its_key():
    values = with_yaml("model", num_blocks=0, width="abc", dropout=True, depth=3)
    with pytest.raises(P.ParamError) as err:
        P.from_dict(P.ModelParams, "model", values)
    assert err.value.problems == [
        "model.num_blocks: Input should be greater than or equal to 1, got 0",
        "model.width: Input should be a valid integer, got 'abc'",
        "model.dropout: Input should be a valid number, got True",
        "model.depth: Extra inputs are not permitted (no such key)",
    ]
    with pytest.raises(P.ParamError) as err:  # the checks that span keys report together too
        P.from_dict(
            P.EmnistLinesParams,
            "emnist_lines",
            with_yaml("emnist_lines", min_overlap=0.3, max_overlap=0.2, text_val_fraction=0.5, text_test_fraction=0.5),
        )
    assert [p.split(":")[0] for p in err.value.problems] == [
        "emnist_lines.min_overlap",
        "emnist_lines.text_test_fraction",
    ]


def test_a_missing_key_is_an_error_naming_it_and_the_classes_have_no_defaults():
    values = with_yaml("train_cnn")
    del values["lr"], values["seed"]
    with pytest.raises(P.ParamError) as err:
        P.from_dict(P.CharTrainParams, "train_cnn", values)
    assert err.value.problems == [
        "train_cnn.lr: Field required (params.yaml sets every key)",
        "train_cnn.seed: Field required (params.yaml sets every key)",
    ]
    for cls in set(SECTIONS.values()):  # params.yaml is the one place for values
        assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(cls)), cls
    with pytest.raises(
        P.ParamError, match=r"^model: Input should be a dictionary or an instance of ModelParams, got None$"
    ):
        P.from_dict(P.ModelParams, "model", None)


def test_sections_are_frozen_dataclasses_that_training_can_take_apart():
    model = P.from_dict(P.ModelParams, "model", YAML["model"])
    assert dataclasses.asdict(model) == YAML["model"] == vars(model)
    assert dataclasses.replace(model, width=8).width == 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.width = 8  # type: ignore[misc]
    with pytest.raises(ValueError, match="num_blocks"):  # replace checks the new value too
        dataclasses.replace(model, num_blocks=0)
    assert P.from_dict(P.DownloadBrownParams, "download_brown", YAML["download_brown"]).mirrors == tuple(
        YAML["download_brown"]["mirrors"]
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"decoders": ["viterbi"]}, "evaluate.decoders[0]: Input should be 'greedy' or 'beam', got 'viterbi'"),
        ({"decoders": []}, "evaluate.decoders: Tuple should have at least 1 item after validation, not 0, got []"),
        ({"decoders": "beam"}, "evaluate.decoders: Input should be a valid tuple, got 'beam'"),
        ({"decoders": ["beam", "beam"]}, "evaluate.decoders: Input should name each value once, got ['beam', 'beam']"),
        ({"beam_width": 0}, "evaluate.beam_width: Input should be greater than or equal to 1, got 0"),
        ({"beam_width": True}, "evaluate.beam_width: Input should be a valid integer, got True"),
        ({"lm_weights": [0.5, -0.5]}, "evaluate.lm_weights[1]: Input should be greater than or equal to 0, got -0.5"),
        ({"lm_weights": [float("inf")]}, "evaluate.lm_weights[0]: Input should be a finite number, got inf"),
        ({"lm_weights": 0.5}, "evaluate.lm_weights: Input should be a valid tuple, got 0.5"),
        ({"lm_weights": [0, 0.0]}, "evaluate.lm_weights: Input should name each value once, got [0.0, 0.0]"),
        ({"length_bonuses": []}, "evaluate.length_bonuses: Tuple should have at least 1 item after validation, not 0, "
                                 "got []"),
        ({"length_bonuses": [-1.0]}, f"evaluate.length_bonuses[0]: {GE} 0, got -1.0"),
        ({"length_bonuses": ["x"]}, "evaluate.length_bonuses[0]: Input should be a valid number, got 'x'"),
        ({"lm_weight": 0.5}, "evaluate.lm_weight: Extra inputs are not permitted (no such key)"),  # the grid's now
    ],
)  # fmt: skip
def test_decoder_params_are_checked(values, message):
    with pytest.raises(P.ParamError) as err:
        P.from_dict(P.EvaluateParams, "evaluate", with_yaml("evaluate", **values))
    assert err.value.problems == [message]
    evaluate = P.load_all(ROOT / "params.yaml").evaluate
    assert set(evaluate.decoders) == {"greedy", "beam"} and evaluate.beam_width == 32
    assert 0.0 in evaluate.lm_weights and 0.0 in evaluate.length_bonuses  # the grid holds beam search without either
    assert len(evaluate.lm_weights) * len(evaluate.length_bonuses) <= 16  # each is a beam pass over the val lines


def test_decoder_grid_values_are_set_as_dvc_sets_them():
    """`dvc exp run -S 'evaluate.lm_weights=[0,0.5]'` writes a YAML list, ints included: read as floats."""
    values = yaml.safe_load("decoders: [greedy]\nlm_weights: [0, 0.5]\nlength_bonuses: [1]")
    evaluate = P.from_dict(P.EvaluateParams, "evaluate", with_yaml("evaluate", **values))
    assert (evaluate.decoders, evaluate.lm_weights, evaluate.length_bonuses) == (("greedy",), (0.0, 0.5), (1.0,))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"order": 0}, "char_lm.order: Input should be greater than or equal to 1, got 0"),
        ({"order": 11}, "char_lm.order: Input should be less than or equal to 10, got 11"),
        ({"num_phrases": 0}, "char_lm.num_phrases: Input should be greater than or equal to 1, got 0"),
        ({"seed": -1}, "char_lm.seed: Input should be greater than or equal to 0, got -1"),
    ],
)
def test_language_model_params_are_checked(values, message):
    with pytest.raises(P.ParamError) as err:
        P.from_dict(P.CharLMParams, "char_lm", with_yaml("char_lm", **values))
    assert err.value.problems == [message]


def test_load_all_reports_every_section_at_once(tmp_path):
    path = write_params(tmp_path, model={"num_blocks": 0}, evaluate={"lm_weights": [-1]}, data={"source": "kaggle"})
    params = yaml.safe_load(path.read_text())
    del params["download_brown"]
    params["extra"] = {}
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(P.ParamError) as err:
        P.load_all(path)
    assert err.value.problems == [
        f"{path} has no section 'download_brown'",
        f"{path} has an unknown section 'extra'",
        "data.source: Input should be 'nist', 'synthetic' or 'handwriting', got 'kaggle'",
        "model.num_blocks: Input should be greater than or equal to 1, got 0",
        "evaluate.lm_weights[0]: Input should be greater than or equal to 0, got -1",
    ]
    with pytest.raises(P.ParamError, match="is not valid YAML"):
        (tmp_path / "bad.yaml").write_text("model: [")
        P.load_all(tmp_path / "bad.yaml")


SEEDS = [("data", "synthetic_seed"), ("emnist_hdf5", "seed"), ("emnist_lines", "seed"), ("emnist_lines", "text_seed")]
SEEDS += [("train_cnn", "seed"), ("train_line_cnn", "seed"), ("char_lm", "seed")]


@pytest.mark.parametrize(("section", "key"), SEEDS)
def test_every_seed_is_checked_to_numpys_range(section, key):
    """NumPy and Lightning take seeds in 0..2**32-1; outside it the stage died with their traceback after
    DVC had removed its outputs, so the check belongs with the other params."""
    cls = SECTIONS[section]
    for bad, bound in ((-1, "greater than or equal to 0"), (2**32, "less than or equal to 4294967295")):
        with pytest.raises(P.ParamError) as err:
            P.from_dict(cls, section, with_yaml(section, **{key: bad}))
        assert err.value.problems == [f"{section}.{key}: Input should be {bound}, got {bad}"]
    for good in (0, 2**32 - 1):
        assert getattr(P.from_dict(cls, section, with_yaml(section, **{key: good})), key) == good
    np.random.default_rng(2**32 - 1)  # the top of the range is one NumPy takes


def test_a_key_written_twice_is_an_error_naming_the_line(tmp_path):
    text = (ROOT / "params.yaml").read_text()
    assert "\ntrain_cnn:\n" in text
    path = tmp_path / "params.yaml"
    path.write_text(text.replace("\ntrain_cnn:\n", "\ntrain_cnn:\n  seed: 7\n", 1))
    line = text[: text.index("\ntrain_cnn:\n")].count("\n") + 3  # the new line, 1-based
    with pytest.raises(P.ParamError) as err:
        P.load_all(path)
    (message,) = err.value.problems
    assert message.startswith(f"{path} line ") and f"duplicate key 'seed' (first on line {line})" in message
    assert "\n" not in message
    (tmp_path / "sections.yaml").write_text(text + "\nmodel:\n  num_blocks: 2\n")  # a whole section twice
    with pytest.raises(P.ParamError, match="duplicate key 'model'"):
        P.load_all(tmp_path / "sections.yaml")


def test_load_section_changes_keys_and_checks_the_whole_file():
    run = P.load_section("train_cnn", ROOT / "params.yaml", epochs=2, accelerator="cpu")
    assert (run.epochs, run.accelerator, run.lr) == (2, "cpu", YAML["train_cnn"]["lr"])
    with pytest.raises(P.ParamError, match=r"line_model\.window_stride=28"):  # the cross-check runs too
        P.load_section("line_model", ROOT / "params.yaml", window_stride=28)
    with pytest.raises(P.ParamError, match=r"^model\.depth: Extra inputs are not permitted"):
        P.load_section("model", ROOT / "params.yaml", depth=3)


STAGES = {
    "download_emnist.py": ["data/raw/emnist"],
    "download_brown.py": ["data/raw/brown.zip"],
    "emnist_hdf5.py": ["no_dir", "o.h5", "o_byclass.h5"],
    "emnist_lines.py": ["no.h5", "no.zip", "o.h5", "o.png", "o.txt"],
    "train_cnn.py": ["no.h5", "o.pt", "metrics"],
    "train_line_cnn.py": ["no.h5", "o.pt", "metrics"],
    "char_lm.py": ["no.txt", "o.npz"],
    "evaluate.py": ["a.pt", "b.pt", "lm.npz", "no.h5", "no_lines.h5", "o.json", "plots", "reader.pt"],
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_checks_every_section_before_its_own_work(tmp_path, stage):
    """A bad value in a section the stage does not read stops it anyway: the first stage to run fails."""
    write_params(tmp_path, data={"source": "synthetic"}, model={"num_blocks": 0}, evaluate={"lm_weights": [-1]})
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages" / stage), *STAGES[stage]], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        "error: model.num_blocks: Input should be greater than or equal to 1, got 0",
        "error: evaluate.lm_weights[0]: Input should be greater than or equal to 0, got -1",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
