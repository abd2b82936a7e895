"""params.yaml loads into checked dataclasses; bad values fail naming the key."""

from __future__ import annotations

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
        (P.EmnistHdf5Params, "emnist_hdf5", {"val_fraction": 1.0}, "emnist_hdf5.val_fraction"),
        (P.DataParams, "data", {"source": "kaggle"}, "data.source must be 'nist' or 'synthetic'"),
        (P.LineModelParams, "line_model", {"window_stride": 7}, "line_model.window_stride must be an even"),
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
