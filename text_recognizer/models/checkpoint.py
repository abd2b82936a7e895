"""Self-describing model checkpoints: weights plus everything needed to rebuild and use the model.

A checkpoint is a plain dict saved with torch.save and read back with `weights_only=True`
(no arbitrary unpickling):

    {"format": "text-recognizer/2", "kind": "char" | "line", "model_kwargs": {...},
     "mapping": [...], "state_dict": {...}, "extra": {...}}

`kind` picks the network (char -> char_archs.char_network, line -> line_archs.line_network), `model_kwargs`
its constructor arguments (both include their `arch`: a char network's resnet, cnn or mlp, a line network's
ctc (LineCNN) or simple (LineCNNSimple)) and `mapping`
the meaning of each output class, so evaluate and predict need no params.yaml and cannot pair
weights with the wrong architecture.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from text_recognizer.io import atomic_path
from text_recognizer.models.char_archs import CHAR_NETWORKS, char_network
from text_recognizer.models.line_archs import line_network
from text_recognizer.models.line_cnn import LineCNN
from text_recognizer.models.line_simple import LineCNNSimple

FORMAT = "text-recognizer/2"  # 2: ResNetClassifier with a stride-2 stem and a 4x4-grid head
Kind = Literal["char", "line"]
MODEL_BUILDERS: dict[str, Callable[..., nn.Module]] = {"char": char_network, "line": line_network}
# Constructor arguments that a kind's checkpoints may lack because they were written before the argument
# existed, and the value that rebuilds the network they hold (line checkpoints before the context heads or
# line_model.arch, char checkpoints before model.arch). Only a checkpoint without `arch` is that old: one that
# records its arch records every key its arch reads (a simple line model has no head). The networks themselves
# have no defaults: training passes every value from params.yaml.
WRITTEN_BEFORE: dict[str, dict[str, Any]] = {"line": {"arch": "ctc", "head": "none"}, "char": {"arch": "resnet"}}
# Keys an arch gained after its checkpoints began recording it, and the value its older checkpoints hold: LineCNN
# checkpoints written before line_model.stem have the full-resolution stem.
ADDED_TO_ARCH: dict[tuple[str, str], dict[str, Any]] = {("line", "ctc"): {"stem": "full"}}
_COMPILE_PREFIX = re.compile(r"(^|\.)_orig_mod\.")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, of another format or of the wrong kind."""


@dataclasses.dataclass
class LoadedModel:
    """A rebuilt network (in eval mode) with what is needed to interpret its outputs."""

    kind: Kind
    model: nn.Module
    mapping: list[str]
    model_kwargs: dict[str, Any]
    extra: dict[str, Any]
    path: Path
    # A line reader's character model, which cuts touching letters (reading/cutting.py); evaluate bundles it.
    glyph_model: LoadedModel | None = None

    @property
    def arch(self) -> str:
        """The network's arch (char: resnet, cnn or mlp; line: ctc or simple), also for checkpoints older than it."""
        return str(with_written_before(self.kind, self.model_kwargs)["arch"])


def strip_compile_prefix(key: str) -> str:
    """'_orig_mod.stem.0.weight' (torch.compile's wrapper) -> 'stem.0.weight', at any nesting depth."""
    return _COMPILE_PREFIX.sub(lambda m: m.group(1), key)


def with_written_before(kind: str, model_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """`model_kwargs` with the values an older checkpoint does not record: WRITTEN_BEFORE's where it records no
    arch, ADDED_TO_ARCH's where its arch gained a key later (see there)."""
    kwargs = dict(model_kwargs) if "arch" in model_kwargs else {**WRITTEN_BEFORE.get(kind, {}), **model_kwargs}
    return {**ADDED_TO_ARCH.get((kind, str(kwargs.get("arch"))), {}), **kwargs}


def build_model(kind: str, model_kwargs: Mapping[str, Any]) -> nn.Module:
    """The untrained network of a checkpoint kind."""
    if kind not in MODEL_BUILDERS:
        raise CheckpointError(f"unknown checkpoint kind {kind!r}; expected one of {sorted(MODEL_BUILDERS)}")
    try:
        return MODEL_BUILDERS[kind](**with_written_before(kind, model_kwargs))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot build a {kind} model from {dict(model_kwargs)}: {exc}") from exc


def _check_json(name: str, value: Any) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"checkpoint {name} must hold only JSON-like values (str, int, float, bool, list, dict): {exc}"
        ) from exc


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    kind: Kind,
    model_kwargs: dict[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    mapping: list[str] | tuple[str, ...],
    extra: dict[str, Any] | None = None,
    glyph_model: LoadedModel | None = None,
) -> None:
    """Write a checkpoint atomically (a crash leaves the previous file, never half a file).

    Tensors are moved to the CPU and torch.compile's `_orig_mod.` prefixes are removed, so the file
    loads on any machine into a plain model. `model_kwargs` and `extra` must be JSON-like (that keeps
    the file loadable with `weights_only=True`).
    """
    if kind not in MODEL_BUILDERS:
        raise ValueError(f"kind must be one of {sorted(MODEL_BUILDERS)}, got {kind!r}")
    _check_json("model_kwargs", model_kwargs)
    _check_json("extra", extra or {})
    _check_json("mapping", list(mapping))
    payload = _payload(kind, model_kwargs, state_dict, mapping, extra)
    if glyph_model is not None:
        if kind != "line" or glyph_model.kind != "char":
            raise ValueError("only a line checkpoint bundles a glyph model, and only a char one")
        payload["glyph_model"] = _payload(
            "char", glyph_model.model_kwargs, glyph_model.model.state_dict(), glyph_model.mapping, glyph_model.extra
        )
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def _payload(
    kind: str,
    model_kwargs: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    mapping: list[str] | tuple[str, ...],
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "kind": kind,
        "model_kwargs": dict(model_kwargs),
        "mapping": [str(c) for c in mapping],
        "state_dict": {strip_compile_prefix(k): v.detach().cpu() for k, v in state_dict.items()},
        "extra": dict(extra or {}),
    }


def save_with_extra(
    source: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    glyph_model: str | os.PathLike[str] | None = None,
    **extra: Any,
) -> None:
    """Write a copy of checkpoint `source` with more `extra` entries (and the char checkpoint `glyph_model`
    bundled): the evaluate stage's reader, the line checkpoint plus the decoder it was evaluated with and the
    character model that cuts touching letters (a stage may not change another stage's output)."""
    loaded = load_checkpoint(source)
    bundled = (
        load_checkpoint(glyph_model, expected_kind="char", needed_by="a reader's glyph model")
        if glyph_model is not None
        else loaded.glyph_model
    )
    save_checkpoint(
        path,
        kind=loaded.kind,
        model_kwargs=loaded.model_kwargs,
        state_dict=loaded.model.state_dict(),
        mapping=loaded.mapping,
        extra={**loaded.extra, **extra},
        glyph_model=bundled,
    )


def _num_outputs(model: nn.Module) -> int | None:
    if isinstance(model, tuple(CHAR_NETWORKS.values())):
        return model.head.out_features
    if isinstance(model, LineCNN):
        return model.classifier.out_channels
    if isinstance(model, LineCNNSimple):
        return model.char.head.out_features
    return None


def _first_line(exc: BaseException) -> str:
    """`Type: first line` of an exception, without terminal escapes: errors are printed as one line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {text[0].strip()}" if text else type(exc).__name__


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    *,
    expected_kind: Kind | None = None,
    needed_by: str = "this step",
) -> LoadedModel:
    """Rebuild the model of a checkpoint written by `save_checkpoint`, in eval mode on `map_location`.

    Raises CheckpointError with the path for a missing file, a file that is not a torch checkpoint,
    another format, and (with `expected_kind`) a checkpoint of the other kind, e.g.
    "models/cnn.pt is a char checkpoint; predict needs a line checkpoint".
    """
    path = Path(path)
    payload = _read_payload(path)
    _check_format(path, payload)
    kind = payload["kind"]
    if expected_kind is not None and kind != expected_kind:
        raise CheckpointError(f"{path} is a {kind} checkpoint; {needed_by} needs a {expected_kind} checkpoint")
    loaded = _loaded(path, payload, map_location)
    if "glyph_model" in payload:  # a reader's bundled character model (save_checkpoint)
        bundled = payload["glyph_model"]
        _check_format(path, bundled)
        if bundled["kind"] != "char":
            raise CheckpointError(f"{path} bundles a {bundled['kind']} model as its glyph model; a char one expected")
        loaded.glyph_model = _loaded(path, bundled, map_location)
    return loaded


def _loaded(path: Path, payload: dict[str, Any], map_location: str | torch.device) -> LoadedModel:
    """The model of a checked payload (a checkpoint's, or the glyph model it bundles), in eval mode on map_location."""
    model, mapping = _rebuild(path, payload)
    return LoadedModel(
        kind=payload["kind"],
        model=model.to(map_location).eval(),
        mapping=mapping,
        model_kwargs=dict(payload["model_kwargs"]),
        extra=dict(payload.get("extra") or {}),
        path=path,
    )


def _read_payload(path: Path) -> Any:
    """What torch.load gives with `weights_only=True`, on the CPU; a missing, damaged or pickled-code file
    becomes a CheckpointError naming it (never torch's advice to load it with weights_only=False)."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        # On the CPU first: the weights are copied into a CPU-built model, which then moves to map_location.
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:  # torch's text advises weights_only=False, never right for a file of unknown origin
            raise CheckpointError(
                f"{path} is not a readable torch checkpoint (not written by torch.save, or damaged)"
            ) from exc
        raise CheckpointError(  # weights_only met a class: a pickled model, or any other code
            f"{path} holds pickled Python objects ({found.group(1)}), not a text-recognizer checkpoint; such files "
            "are never loaded, since unpickling them can run code: use a model the train stages wrote"
        ) from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, ... for bad files
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {_first_line(exc)}") from exc


def _check_format(path: Path, payload: Any) -> None:
    """Refuse anything but a complete checkpoint of this FORMAT: an older format is told to retrain, any
    other file is named for what it is."""
    found_format = payload.get("format") if isinstance(payload, dict) else None
    if isinstance(found_format, str) and found_format.startswith("text-recognizer/") and found_format != FORMAT:
        raise CheckpointError(
            f"{path} was written in checkpoint format {found_format!r}, whose networks this version does not build "
            f"(it reads {FORMAT!r}): train the model again (dvc repro)"
        )
    if not isinstance(payload, dict) or found_format != FORMAT:
        found = found_format if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path} is not a text-recognizer checkpoint (format {FORMAT!r} expected, found {found!r})"
        )
    missing = [k for k in ("kind", "model_kwargs", "mapping", "state_dict") if k not in payload]
    if missing:
        raise CheckpointError(f"{path} is incomplete: no {', '.join(missing)}")


def _rebuild(path: Path, payload: dict[str, Any]) -> tuple[nn.Module, list[str]]:
    """The network with the checkpoint's weights (on the CPU) and its mapping, checked against each other:
    weights that do not fit the recorded architecture, or a mapping of another length, are refused."""
    kind = payload["kind"]
    model = build_model(kind, payload["model_kwargs"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: weights do not fit a {kind} model with {payload['model_kwargs']}: {exc}"
        ) from exc
    mapping = list(payload["mapping"])
    outputs = _num_outputs(model)
    if outputs is not None and outputs != len(mapping):
        raise CheckpointError(f"{path}: the model has {outputs} outputs but the mapping has {len(mapping)} entries")
    return model, mapping
