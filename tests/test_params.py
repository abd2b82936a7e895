"""params.yaml loads into checked dataclasses; bad values fail naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    "train_cnn": P.TrainParams,
    "line_model": P.LineModelParams,
    "train_line_cnn": P.TrainParams,
    "evaluate": P.EvaluateParams,
}


def test_params_yaml_has_every_key_of_every_section():
    """Every key `dvc exp run -S` may set is written out in params.yaml, none left to code defaults."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(params) == set(SECTIONS)
    for name, cls in SECTIONS.items():
        section = P.from_dict(cls, name, params[name])
        assert set(params[name]) == set(vars(section)), name
    assert P.load_params(ROOT / "params.yaml") == params  # and the sections agree with each other


@pytest.mark.parametrize(
    ("cls", "section", "values", "message"),
    [
        (P.ModelParams, "model", {"num_blocks": 0}, "model.num_blocks must be >= 1"),
        (P.ModelParams, "model", {"num_blocks": "abc"}, "model.num_blocks must be int, got 'abc'"),
        (P.ModelParams, "model", {"num_block": 3}, "unknown key(s) in 'model': model.num_block"),
        (P.TrainParams, "train_cnn", {"lr": -0.1}, "train_cnn.lr must be > 0"),
        (P.TrainParams, "train_cnn", {"accelerator": "tpu"}, "train_cnn.accelerator must be one of"),
        (P.TrainParams, "train_cnn", {"compile": 1}, "train_cnn.compile must be bool"),
        (P.TrainParams, "train_line_cnn", {"warmup_fraction": 1.0}, "train_line_cnn.warmup_fraction must be > 0"),
        (P.EmnistLinesParams, "emnist_lines", {"min_overlap": 0.5, "max_overlap": 0.2}, "emnist_lines.min_overlap"),
        (P.EmnistLinesParams, "emnist_lines", {"max_overlap": 1.0}, "emnist_lines.max_overlap must be < 1"),
        (P.EmnistLinesParams, "emnist_lines", {"max_length": 0}, "emnist_lines.max_length must be >= 1"),
        (P.EmnistLinesParams, "emnist_lines", {"num_val": -1}, "emnist_lines.num_val must be >= 0"),
        (P.EmnistLinesParams, "emnist_lines", {"seed": -1}, "emnist_lines.seed must be >= 0"),
        (P.EmnistLinesParams, "emnist_lines", {"text_val_fraction": 1.0}, "emnist_lines.text_val_fraction must be in"),
        (P.EmnistLinesParams, "emnist_lines", {"text_test_fraction": -0.1}, "emnist_lines.text_test_fraction must be"),
        (
            P.EmnistLinesParams,
            "emnist_lines",
            {"text_val_fraction": 0.6, "text_test_fraction": 0.4},
            "emnist_lines.text_test_fraction plus text_val_fraction must be < 1",
        ),
        (P.EmnistLinesParams, "emnist_lines", {"text_seed": -2}, "emnist_lines.text_seed must be >= 0"),
        (P.EmnistLinesParams, "emnist_lines", {"text_seed": "a"}, "emnist_lines.text_seed must be int"),
        (P.EmnistHdf5Params, "emnist_hdf5", {"val_fraction": 1.0}, "emnist_hdf5.val_fraction"),
        (P.DataParams, "data", {"source": "kaggle"}, "data.source must be 'nist' or 'synthetic'"),
        (P.LineModelParams, "line_model", {"window_stride": 7}, "line_model.window_stride must be an even"),
        (P.LineModelParams, "line_model", {"head": "gru"}, "line_model.head must be one of none, lstm, transformer"),
        (P.LineModelParams, "line_model", {"head": "transformer", "fc_dim": 33}, "line_model.fc_dim must be even"),
    ],
)
def test_bad_values_name_the_key(cls, section, values, message):
    with pytest.raises(P.ParamError) as err:
        P.from_dict(cls, section, values)
    assert message in str(err.value)


def test_types_are_coerced_only_where_safe():
    run = P.from_dict(P.TrainParams, "train_cnn", {"lr": 1, "epochs": 2})
    assert run.lr == 1.0 and isinstance(run.lr, float)
    with pytest.raises(P.ParamError, match=r"train_cnn\.epochs must be int"):
        P.from_dict(P.TrainParams, "train_cnn", {"epochs": 2.5})
    with pytest.raises(P.ParamError, match=r"train_cnn\.epochs must be int"):
        P.from_dict(P.TrainParams, "train_cnn", {"epochs": True})


# --- the CTC guard: line_model against emnist_lines ----------------------------------------------


def fits(max_length: int, window_width: int = 28, window_stride: int = 8) -> list[str]:
    return P.check_line_model_fits_lines(
        P.LineModelParams(window_width=window_width, window_stride=window_stride),
        P.EmnistLinesParams(max_length=max_length),
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
    from text_recognizer.models.line_cnn import output_length

    for max_length in (1, 2, 8, 32):
        for window_width in (16, 28, 40):
            for window_stride in (2, 8, 14, 28):
                if 28 * max_length >= window_width:
                    expected = output_length(28 * max_length, window_width, window_stride)
                    assert P.line_output_steps(max_length, window_width, window_stride) == expected
    assert [P.ctc_steps_bound(n) for n in (1, 2, 32)] == [1, 3, 63]


def test_line_heads_are_the_models_heads():
    from text_recognizer.models.line_cnn import HEADS, LineCNN

    assert P.LINE_HEADS == HEADS
    for head in P.LINE_HEADS:  # every head params accept builds, from the section as training passes it
        model = P.from_dict(P.LineModelParams, "line_model", {"head": head, "width": 4, "fc_dim": 8})
        LineCNN(**vars(model))


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
                        ("emnist_hdf5.py", ["no_dir", "o.h5"])):  # fmt: skip
        result = subprocess.run(
            [sys.executable, str(ROOT / "stages" / stage), *args], cwd=tmp_path, capture_output=True, text=True
        )
        assert result.returncode == 1, result.stderr
        assert "error: line_model.window_stride=28" in result.stderr, result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
