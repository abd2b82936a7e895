"""Export a checkpoint to ONNX, so that a reader can run it with onnxruntime and numpy alone (no torch).

The file holds the network with a dynamic batch axis (and, for line models, a dynamic width axis) and, in its
metadata_props, everything a reader needs to turn its outputs into text: the kind, arch and constructor
arguments, the mapping, the `reading` record that the evaluate stage wrote (decoder, beam settings, the LM's
sha256), the drawn statistics (`lines` / `glyphs`, which predict fits its inputs to), the source checkpoint's
sha256 and the project version. Values are strings: JSON for anything that is not one.

The graph (see reading.onnx_model for the reader side):
- char: images (N, 1, 28, 28) float in [0, 1] -> logits (N, C).
- line, arch ctc: images (N, 1, 28, W) float in [0, 1], lengths (N,) int64 (each line's CTC steps, as
  line_geometry.crop_lines gives them) -> logits (N, C, T). An LSTM head reads each line up to its own length, as
  the packed LSTM of LineCNN does, and its padding steps are 0 as pad_packed_sequence leaves them.
- line, arch simple: images (N, 1, 28, W) -> logits (N, C, ceil(W / 28)).

The exporter is torch.export's (`dynamo=True`, torch's default since 2.9, with onnxscript): it exports every head
with dynamic batch and width. The legacy TorchScript exporter (`exporter="torchscript"`, ~1 s instead of ~15 s)
exports the none and lstm heads and the simple arch, but bakes the batch size into a transformer head's attention
reshapes, so it refuses that head.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from text_recognizer import __version__
from text_recognizer.errors import ProjectError
from text_recognizer.io import atomic_path, check_new_output
from text_recognizer.metadata import GLYPH_SIZE
from text_recognizer.models.checkpoint import LoadedModel, load_checkpoint
from text_recognizer.models.line_cnn import LineCNN

ONNX_FORMAT = "text-recognizer-onnx/1"
DEFAULT_OPSET = 18
INSTALL_HINT = "pip install 'text-recognizer[onnx]'"
Exporter = Literal["torchscript", "dynamo"]
# The checkpoint's `extra` entries a reader uses, copied into the metadata as JSON under the same keys.
EXTRA_KEYS = ("reading", "lines", "glyphs", "val_metrics")


class ExportError(ProjectError, RuntimeError):
    """An export that cannot be done: a missing package, a network the exporter cannot handle."""


class _ExactBiLSTM(nn.Module):
    """LineCNN's bidirectional LSTM head without pack_padded_sequence, which ONNX exporters do not export
    reliably: each line's backward pass starts at its own last step because the line is reversed within its
    length (a gather), read by the backward weights as a forward LSTM, and reversed back. Steps past a line's
    length give 0, as pad_packed_sequence does, so the logits are the packed LSTM's at every step."""

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        if lstm.num_layers != 1 or not lstm.bidirectional or not lstm.batch_first:
            raise ExportError(f"only a 1-layer bidirectional batch_first LSTM head can be exported, got {lstm}")
        self.forward_lstm = nn.LSTM(lstm.input_size, lstm.hidden_size, batch_first=True)
        self.backward_lstm = nn.LSTM(lstm.input_size, lstm.hidden_size, batch_first=True)
        with torch.no_grad():
            for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                getattr(self.forward_lstm, name).copy_(getattr(lstm, name))
                getattr(self.backward_lstm, name).copy_(getattr(lstm, f"{name}_reverse"))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, D) features and (B,) lengths -> (B, T, D): the features plus both directions' outputs."""
        steps = torch.arange(x.shape[1], device=x.device)[None, :]  # (1, T)
        ends = lengths.to(x.device)[:, None]  # (B, 1)
        inside = steps < ends  # (B, T)
        mirror = torch.where(inside, ends - 1 - steps, steps)  # (B, T): reversal within the length, an involution
        index = mirror[:, :, None].expand(-1, -1, x.shape[2])  # (B, T, D)
        ahead, _ = self.forward_lstm(x)  # (B, T, D): causal, so padding never reaches a step inside the line
        back, _ = self.backward_lstm(x.gather(1, index))  # (B, T, D) in reversed order
        both = (ahead + back.gather(1, index)) * inside[:, :, None].to(x.dtype)
        return x + both


class _LineGraph(nn.Module):
    """LineCNN.forward(x, lengths) in ops that export with dynamic batch and width (the LSTM head as
    _ExactBiLSTM); the other heads run the model's own code."""

    def __init__(self, model: LineCNN) -> None:
        super().__init__()
        self.model = model
        self.lstm = _ExactBiLSTM(model.context) if isinstance(model.context, nn.LSTM) else None

    def forward(self, images: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        model = self.model
        if self.lstm is None:
            return model(images, lengths)
        steps = (images.shape[3] - model.window_width) // model.window_stride + 1  # T, line_geometry.output_length
        x = model.relu(model.window_bn(model.window(model.backbone(images))))  # (B, fc_dim, 1, T')
        seq = self.lstm(x[:, :, 0, :steps].transpose(1, 2), lengths)  # (B, T, fc_dim)
        return model.classifier(seq.transpose(1, 2)[:, :, None, :])[:, :, 0, :]  # (B, C, T); dropout: eval


class _SimpleGraph(nn.Module):
    """LineCNNSimple with its input padded to whole windows first: its own padding counts windows as -(-W // 28),
    which the TorchScript exporter turns into a division that rounds toward zero (one window short). Padding
    with black is what the model does itself, so the logits are the same."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        width = images.shape[3]
        windows = (width + GLYPH_SIZE - 1) // GLYPH_SIZE  # non-negative operands: every exporter floors alike
        return self.model(nn.functional.pad(images, (0, windows * GLYPH_SIZE - width)))


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in chunks: the metadata names the exact checkpoint it came from."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _graph(loaded: LoadedModel) -> tuple[nn.Module, tuple[torch.Tensor, ...], list[str], dict[int, str]]:
    """(module to export, example inputs, input names, the images' dynamic axes) of a loaded checkpoint."""
    if loaded.kind == "char":
        return loaded.model, (torch.zeros(2, 1, GLYPH_SIZE, GLYPH_SIZE),), ["images"], {0: "batch"}
    width = 4 * int(loaded.model.window_width)  # any width >= one window: the axis is dynamic
    images = torch.zeros(2, 1, GLYPH_SIZE, width)
    if loaded.arch == "simple":
        return _SimpleGraph(loaded.model).eval(), (images,), ["images"], {0: "batch", 3: "width"}
    steps = loaded.model.output_length(width)
    return (
        _LineGraph(loaded.model).eval(),
        (images, torch.tensor([steps, steps - 1])),
        ["images", "lengths"],
        {
            0: "batch",
            3: "width",
        },
    )


def _export_bytes(loaded: LoadedModel, opset: int, exporter: Exporter) -> bytes:
    """The serialized ONNX graph of the checkpoint's network, before its metadata is added."""
    module, example, names, image_axes = _graph(loaded)
    output_axes = {0: "batch"} if loaded.kind == "char" else {0: "batch", 2: "steps"}
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1)
        shapes: list[dict[int, Any]] = [{0: batch}]
        if 3 in image_axes:  # a line is at least one window wide (the reader pads a simple model's narrower ones)
            shapes[0][3] = torch.export.Dim("width", min=int(loaded.model.window_width))
        if "lengths" in names:
            shapes.append({0: batch})
        registry = logging.getLogger("torch.onnx._internal.exporter._registration")
        level = registry.level
        registry.setLevel(logging.ERROR)  # one warning per torchvision op it skips: not this project's concern
        try:
            with warnings.catch_warnings():
                # torch.export's notes on its own internals (LeafSpec, _check_is_size, LSTM _flat_weights, axis
                # names): nothing a user can act on; the tests check the exported numbers instead.
                for category in (FutureWarning, UserWarning, DeprecationWarning):
                    warnings.filterwarnings("ignore", category=category, module=r"(torch|onnxscript|copyreg|<eval)")
                    warnings.filterwarnings("ignore", category=category, message=r".*(LeafSpec|_check_is_size|_flat_w)")
                program = torch.onnx.export(
                    module,
                    example,
                    dynamo=True,
                    input_names=names,
                    output_names=["logits"],
                    dynamic_shapes=tuple(shapes),
                    opset_version=opset,
                    verbose=False,
                )
        finally:
            registry.setLevel(level)
        return program.model_proto.SerializeToString()
    buffer = io.BytesIO()
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    axes = {"images": image_axes, "logits": output_axes, **({"lengths": {0: "batch"}} if "lengths" in names else {})}
    with warnings.catch_warnings():
        # The legacy exporter's deprecation notice, and its note that an LSTM's initial state may pin the batch
        # size (not so here: the tests run other batch sizes), are no news to the user.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*LSTM can cause an error.*", category=UserWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            example,
            buffer,
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            **legacy,
        )
    return buffer.getvalue()


def onnx_metadata(loaded: LoadedModel, source_sha256: str, opset: int) -> dict[str, str]:
    """The metadata_props of an exported checkpoint: strings, JSON for structures (see the module doc)."""
    meta: dict[str, Any] = {
        "text_recognizer_format": ONNX_FORMAT,
        "text_recognizer_version": __version__,
        "kind": loaded.kind,
        "arch": loaded.arch,
        "model_kwargs": loaded.model_kwargs,
        "mapping": loaded.mapping,
        "source_checkpoint": loaded.path.name,
        "source_sha256": source_sha256,
        "opset": opset,
        "torch_version": torch.__version__,
    }
    if loaded.kind == "line":
        meta["window_width"] = int(loaded.model.window_width)
        meta["window_stride"] = int(loaded.model.window_stride)
    meta.update({key: loaded.extra[key] for key in EXTRA_KEYS if key in loaded.extra})
    return {key: value if isinstance(value, str) else json.dumps(value, sort_keys=True) for key, value in meta.items()}


def export_onnx(
    checkpoint_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    exporter: Exporter = "dynamo",
) -> Path:
    """Write checkpoint `checkpoint_path` (char or line) as an ONNX file at `out_path`, atomically; returns it.

    Checked before any work: `out_path` ends in .onnx and does not exist (unless `overwrite`), the checkpoint is
    one (CheckpointError otherwise), and onnx (and for the dynamo exporter onnxscript) is installed (ExportError
    naming the extra to install).
    """
    out = check_new_output(out_path, overwrite=overwrite)
    if out.suffix != ".onnx":
        raise ExportError(f"{out} should end in .onnx (readers pick the ONNX runtime by that suffix)")
    if exporter not in ("torchscript", "dynamo"):
        raise ValueError(f"exporter must be torchscript or dynamo, got {exporter!r}")
    if not 13 <= opset <= 21:
        raise ValueError(f"opset must be between 13 and 21, got {opset}")
    needed = ["onnx", "onnxscript"] if exporter == "dynamo" else ["onnx"]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"exporting to ONNX needs {' and '.join(missing)}, not installed: {INSTALL_HINT}")
    import onnx

    checkpoint = Path(checkpoint_path)
    loaded = load_checkpoint(checkpoint, needed_by="export")
    if exporter == "torchscript" and loaded.kind == "line" and loaded.model_kwargs.get("head") == "transformer":
        raise ExportError(
            f"{checkpoint} has a transformer head, which the torchscript exporter ties to one batch size: "
            "use the dynamo exporter"
        )
    source_sha256 = file_sha256(checkpoint)
    # Not under no_grad: a transformer head then takes torch's fused inference kernel, which has no ONNX form.
    proto = onnx.load_model_from_string(_export_bytes(loaded, opset, exporter))
    del proto.metadata_props[:]
    for key, value in onnx_metadata(loaded, source_sha256, opset).items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"text-recognizer {loaded.kind} model ({loaded.arch}) exported from {checkpoint.name}"
    onnx.checker.check_model(proto)
    with atomic_path(out, suffix=".onnx") as tmp:
        onnx.save_model(proto, str(tmp))
    return out
