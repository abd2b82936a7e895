"""Typed, validated parameter sections.

Each section of params.yaml loads into a frozen dataclass. Unknown keys, wrong types and
out-of-range values raise ParamError naming the full key (e.g. `model.num_blocks`) before any
work starts, so a typo in `dvc exp run -S ...` fails in a second, not after an hour.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any, TypeVar

import yaml

from text_recognizer.metadata import GLYPH_SIZE

T = TypeVar("T")


class ParamError(ValueError):
    """A parameter is missing, unknown, of the wrong type or out of range."""


def _check_type(key: str, value: Any, expected: Any) -> Any:
    origin = typing.get_origin(expected)
    if origin in (types.UnionType, typing.Union):
        for option in typing.get_args(expected):
            try:
                return _check_type(key, value, option)
            except ParamError:
                pass
        raise ParamError(f"{key} must be {expected}, got {value!r}")
    if expected is type(None):
        if value is None:
            return None
        raise ParamError(f"{key} must be null, got {value!r}")
    if origin is list or origin is tuple:
        if not isinstance(value, list | tuple):
            raise ParamError(f"{key} must be a list, got {value!r}")
        (item_type, *_) = typing.get_args(expected) or (Any,)
        return tuple(_check_type(f"{key}[{i}]", v, item_type) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamError(f"{key} must be a mapping, got {value!r}")
        _, value_type = typing.get_args(expected)
        return {str(k): _check_type(f"{key}.{k}", v, value_type) for k, v in value.items()}
    if expected is Any:
        return value
    accepted = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }
    if expected in accepted and accepted[expected](value):
        return float(value) if expected is float else value
    raise ParamError(f"{key} must be {getattr(expected, '__name__', expected)}, got {value!r}")


def from_dict(cls: type[T], section: str, data: dict[str, Any] | None) -> T:
    """Build the dataclass `cls` from one params section, checking keys, types and ranges."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamError(f"params section '{section}' must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamError(f"unknown key(s) in '{section}': {', '.join(f'{section}.{k}' for k in unknown)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _check_type(f"{section}.{name}", value, hints[name]) for name, value in data.items()}
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ParamError(f"missing key(s) in '{section}': {', '.join(f'{section}.{k}' for k in missing)}")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        for key, message in validate():
            raise ParamError(f"{section}.{key} {message}")
    return obj


def load_params(path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    """The sections of params.yaml, after the checks that span sections (check_across_sections).

    Every stage reads its section through here, so a combination that one stage would only
    trip over later (lines the line model cannot align) stops every stage before any work.
    """
    with open(path) as f:
        params = yaml.safe_load(f) or {}
    if not isinstance(params, dict):
        raise ParamError(f"{path} must hold a mapping of sections")
    check_across_sections(params)
    return params


Problems = list[tuple[str, str]]


def _require(problems: Problems, ok: bool, key: str, message: str) -> None:
    if not ok:
        problems.append((key, message))


# --- data ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DataParams:
    source: str = "nist"
    synthetic_train_per_class: int = 300
    synthetic_test_per_class: int = 50
    synthetic_seed: int = 0

    def validate(self) -> Problems:
        p: Problems = []
        _require(
            p, self.source in ("nist", "synthetic"), "source", f"must be 'nist' or 'synthetic', got {self.source!r}"
        )
        _require(p, self.synthetic_train_per_class >= 1, "synthetic_train_per_class", "must be >= 1")
        _require(p, self.synthetic_test_per_class >= 1, "synthetic_test_per_class", "must be >= 1")
        return p


@dataclasses.dataclass(frozen=True)
class DownloadEmnistParams:
    mirrors: tuple[str, ...]
    archive_md5: str
    sha256: dict[str, str]
    timeout_s: float = 60.0
    retries: int = 3

    def validate(self) -> Problems:
        p: Problems = []
        _require(p, len(self.mirrors) >= 1, "mirrors", "must list at least one URL")
        _require(p, self.timeout_s > 0, "timeout_s", "must be > 0")
        _require(p, self.retries >= 0, "retries", "must be >= 0")
        return p


@dataclasses.dataclass(frozen=True)
class DownloadBrownParams:
    mirrors: tuple[str, ...]
    sha256: str
    timeout_s: float = 60.0
    retries: int = 3

    def validate(self) -> Problems:
        p: Problems = []
        _require(p, len(self.mirrors) >= 1, "mirrors", "must list at least one URL")
        _require(p, self.timeout_s > 0, "timeout_s", "must be > 0")
        _require(p, self.retries >= 0, "retries", "must be >= 0")
        return p


@dataclasses.dataclass(frozen=True)
class EmnistHdf5Params:
    val_fraction: float = 0.1
    balance: bool = False
    seed: int = 0

    def validate(self) -> Problems:
        p: Problems = []
        _require(p, 0.0 < self.val_fraction < 1.0, "val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        return p


@dataclasses.dataclass(frozen=True)
class EmnistLinesParams:
    max_length: int = 32
    min_overlap: float = 0.0
    max_overlap: float = 0.33
    num_train: int = 30000
    num_val: int = 3000
    num_test: int = 3000
    seed: int = 0
    text_val_fraction: float = 0.1  # share of the Brown documents whose text only val lines show
    text_test_fraction: float = 0.1  # share whose text only test lines show
    text_seed: int = 0  # which documents go to which pool; apart from `seed`, so new lines keep the test text

    def validate(self) -> Problems:
        p: Problems = []
        _require(p, self.max_length >= 1, "max_length", f"must be >= 1, got {self.max_length}")
        _require(p, self.min_overlap >= 0.0, "min_overlap", f"must be >= 0, got {self.min_overlap}")
        _require(p, self.max_overlap < 1.0, "max_overlap", f"must be < 1, got {self.max_overlap}")
        _require(
            p,
            self.min_overlap <= self.max_overlap,
            "min_overlap",
            f"must be <= max_overlap ({self.min_overlap} > {self.max_overlap})",
        )
        for name in ("num_train", "num_val", "num_test"):
            _require(p, getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        _require(p, self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        for name in ("text_val_fraction", "text_test_fraction"):
            value = getattr(self, name)
            _require(p, 0.0 <= value < 1.0, name, f"must be in [0, 1), got {value}")
        _require(
            p,
            self.text_val_fraction + self.text_test_fraction < 1.0,
            "text_test_fraction",
            f"plus text_val_fraction must be < 1 (the train pool needs documents), got "
            f"{self.text_test_fraction} + {self.text_val_fraction}",
        )
        _require(p, self.text_seed >= 0, "text_seed", f"must be >= 0, got {self.text_seed}")
        return p


# --- models and training ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelParams:
    num_blocks: int = 3
    width: int = 64
    dropout: float = 0.2

    def validate(self) -> Problems:
        p: Problems = []
        _require(p, self.num_blocks >= 1, "num_blocks", f"must be >= 1, got {self.num_blocks}")
        _require(p, self.width >= 1, "width", f"must be >= 1, got {self.width}")
        _require(p, 0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        return p


LINE_HEADS = ("none", "lstm", "transformer")  # the same as models.line_cnn.HEADS, without importing torch


@dataclasses.dataclass(frozen=True)
class LineModelParams:
    width: int = 64
    window_width: int = 28
    window_stride: int = 8
    fc_dim: int = 256
    dropout: float = 0.2
    head: str = "none"  # context over the window features: none | lstm | transformer (models.line_cnn.HEADS)

    def validate(self) -> Problems:
        p: Problems = []
        _require(p, self.width >= 1, "width", f"must be >= 1, got {self.width}")
        _require(p, self.head in LINE_HEADS, "head", f"must be one of {', '.join(LINE_HEADS)}, got {self.head!r}")
        _require(
            p,
            self.head != "transformer" or self.fc_dim % 2 == 0,
            "fc_dim",
            f"must be even with head 'transformer' (sinusoidal positions), got {self.fc_dim}",
        )
        _require(
            p, self.window_width >= 2 and self.window_width % 2 == 0, "window_width", "must be an even number >= 2"
        )
        _require(
            p, self.window_stride >= 2 and self.window_stride % 2 == 0, "window_stride", "must be an even number >= 2"
        )
        _require(p, self.fc_dim >= 1, "fc_dim", f"must be >= 1, got {self.fc_dim}")
        _require(p, 0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        return p


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed")


@dataclasses.dataclass(frozen=True)
class TrainParams:
    """The run: shared by train_cnn and train_line_cnn (each has its own section)."""

    epochs: int = 10
    batch_size: int = 512
    lr: float = 3e-3
    weight_decay: float = 0.05
    schedule: str = "onecycle"
    warmup_fraction: float = 0.1  # onecycle only: share of the steps spent warming up to lr
    seed: int = 0
    precision: str = "auto"
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"
    compile: bool = False
    augment: bool = True
    limit_train_batches: float = 1.0  # fraction (<= 1.0) of each epoch, for quick runs

    def validate(self) -> Problems:
        p: Problems = []
        _require(p, self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        _require(p, self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _require(p, self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _require(p, self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        _require(
            p,
            self.schedule in ("onecycle", "constant"),
            "schedule",
            f"must be 'onecycle' or 'constant', got {self.schedule!r}",
        )
        _require(
            p,
            0 < self.warmup_fraction < 1,
            "warmup_fraction",
            f"must be > 0 and < 1, got {self.warmup_fraction}",
        )
        _require(p, self.precision in PRECISIONS, "precision", f"must be one of {PRECISIONS}, got {self.precision!r}")
        _require(
            p,
            self.accelerator in ACCELERATORS,
            "accelerator",
            f"must be one of {ACCELERATORS}, got {self.accelerator!r}",
        )
        _require(p, self.devices >= 1, "devices", f"must be >= 1, got {self.devices}")
        _require(
            p,
            self.strategy in ("auto", "ddp", "ddp_spawn"),
            "strategy",
            f"must be 'auto', 'ddp' or 'ddp_spawn', got {self.strategy!r}",
        )
        _require(p, 0.0 < self.limit_train_batches <= 1.0, "limit_train_batches", "must be in (0, 1]")
        return p


@dataclasses.dataclass(frozen=True)
class EvaluateParams:
    batch_size: int = 1024
    num_sample_lines: int = 12

    def validate(self) -> Problems:
        p: Problems = []
        _require(p, self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _require(p, self.num_sample_lines >= 0, "num_sample_lines", "must be >= 0")
        return p


# --- checks across sections ------------------------------------------------------------------


def line_output_steps(max_length: int, window_width: int, window_stride: int) -> int:
    """T = (28 * max_length - window_width) // window_stride + 1, the LineCNN's steps on an EMNISTLines line.

    The same formula as models.line_cnn.output_length, kept here so that checking params
    needs no torch (tests/test_params.py compares the two).
    """
    return (GLYPH_SIZE * max_length - window_width) // window_stride + 1


def ctc_steps_bound(max_length: int) -> int:
    """The most CTC steps a line of max_length characters can need: one per character, plus one
    per pair of equal neighbours ("ll"), of which such a line holds at most max_length - 1."""
    return 2 * max_length - 1


def check_line_model_fits_lines(model: LineModelParams, lines: EmnistLinesParams) -> list[str]:
    """Messages (naming the keys and numbers) if some line could not be aligned by CTC, else [].

    CTC must emit a blank between two equal labels, so "aaaa" needs 7 steps, not 4; with
    fewer the loss is infinite and zero_infinity would silently make it 0.
    """
    length, width, stride = lines.max_length, model.window_width, model.window_stride
    line_px = GLYPH_SIZE * length
    if width > line_px:
        return [
            f"line_model.window_width={width} is wider than the lines: {GLYPH_SIZE} * "
            f"emnist_lines.max_length ({length}) = {line_px} px"
        ]
    steps, need = line_output_steps(length, width, stride), ctc_steps_bound(length)
    if steps >= need:
        return []
    widest = (line_px - width) // (need - 1) // 2 * 2  # need >= 2 here, since steps >= 1
    fix = (
        f"use line_model.window_stride <= {widest}"
        if widest >= 2
        else "lower line_model.window_width or emnist_lines.max_length"
    )
    return [
        f"line_model.window_stride={stride} with line_model.window_width={width} gives "
        f"T = ({GLYPH_SIZE}*{length} - {width})//{stride} + 1 = {steps} output steps, but a line of "
        f"emnist_lines.max_length={length} characters can need {need} for CTC ({length} characters + "
        f"{length - 1} blanks between equal neighbours, as in one letter repeated): {fix}"
    ]


def check_across_sections(params: dict[str, Any]) -> None:
    """Raise ParamError for the first check spanning two sections that fails; a missing section counts as defaults."""
    model = from_dict(LineModelParams, "line_model", params.get("line_model"))
    lines = from_dict(EmnistLinesParams, "emnist_lines", params.get("emnist_lines"))
    for message in check_line_model_fits_lines(model, lines):
        raise ParamError(message)
