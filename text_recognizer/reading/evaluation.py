"""Test-set evaluation of saved checkpoints (library only: the DVC stage writes the files).

Everything runs in batches under `torch.inference_mode` on the GPU when there is one; the
only per-sample Python is turning decoded index lists into strings for the line metrics.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from text_recognizer.errors import InputError
from text_recognizer.io import atomic_path
from text_recognizer.line_geometry import crop_lines, crop_width, ink_extents, line_widths, output_lengths
from text_recognizer.lit_models.ctc import (
    character_error_rate,
    greedy_decode,
    indices_to_text,
    labels_to_texts,
    line_accuracy,
)
from text_recognizer.lit_models.windows import window_decode
from text_recognizer.models.checkpoint import LoadedModel, load_checkpoint
from text_recognizer.reading.char_lm import CharLM
from text_recognizer.reading.confidence import (
    Confidence,
    ctc_confidences,
    decoder_line_confidence,
    text_probabilities,
    window_confidences,
)
from text_recognizer.reading.decoding import beam_decode


def default_device(device: str | torch.device | None = None) -> torch.device:
    """`device` if given, else CUDA when present, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclasses.dataclass
class CharEvaluation:
    """Single-character results on the test split.

    per_class_accuracy[c] is NaN for a class with no test sample.
    """

    accuracy: float
    per_class_accuracy: np.ndarray  # (num_classes,) float64
    y_true: np.ndarray  # (N,) int64
    y_pred: np.ndarray  # (N,) int64
    mapping: list[str]


@dataclasses.dataclass
class LineSample:
    image: np.ndarray  # (28, W) uint8, white ink on black
    true_text: str
    pred_text: str


@dataclasses.dataclass
class LineEvaluation:
    cer: float
    line_accuracy: float
    num_lines: int
    samples: list[LineSample]
    by_decoder: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # name -> cer, line_acc
    # name -> (N,) each line's confidence (reading/confidence.py) and whether it was read wrong, for calibration
    confidence: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    wrong: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def _read_mapping(f: h5py.File) -> list[str] | None:
    raw = f.attrs.get("mapping")
    if raw is None:
        return None
    return list(json.loads(raw.decode() if isinstance(raw, bytes) else str(raw)))


def _open_split(
    h5_path: str | os.PathLike[str], loaded: LoadedModel, names: Sequence[str], split: str = "test"
) -> dict[str, np.ndarray]:
    """Read `{split}/{name}` arrays, checking that the file's mapping is the checkpoint's."""
    h5_path = Path(h5_path)
    if not h5_path.is_file():
        raise FileNotFoundError(f"{h5_path} not found")
    with h5py.File(h5_path, "r") as f:
        mapping = _read_mapping(f)
        if mapping is not None and mapping != loaded.mapping:
            raise ValueError(f"{h5_path}: class mapping differs from the one stored in {loaded.path}")
        missing = [f"{split}/{n}" for n in names if f"{split}/{n}" not in f]
        if missing:
            raise InputError(f"{h5_path}: missing dataset(s) {', '.join(missing)}")
        return {n: f[f"{split}/{n}"][()] for n in names}


def to_model_input(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, H, W) uint8 -> (B, 1, H, W) float in [0, 1] on `device` (the cast happens there).

    A read-only array (a decoded image, np.broadcast_to, a memory map) is copied first: torch
    shares numpy's memory and warns that it "is not writable" otherwise.
    """
    arr = np.ascontiguousarray(images)
    if not arr.flags.writeable:
        arr = arr.copy()
    return torch.from_numpy(arr).to(device, non_blocking=True).unsqueeze(1).float().div_(255)


def evaluate_char(
    checkpoint_path: str | os.PathLike[str],
    emnist_h5: str | os.PathLike[str],
    *,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> CharEvaluation:
    """Accuracy and per-class accuracy of a char checkpoint on the `test` split of emnist.h5."""
    dev = default_device(device)
    loaded = load_checkpoint(checkpoint_path, map_location=dev, expected_kind="char", needed_by="evaluate_char")
    data = _open_split(emnist_h5, loaded, ("images", "labels"))
    images, y_true = data["images"], data["labels"].astype(np.int64)
    preds: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            logits = loaded.model(to_model_input(images[start : start + batch_size], dev))  # (B, num_classes)
            preds.append(logits.argmax(dim=1).cpu())
    y_pred = torch.cat(preds).numpy().astype(np.int64) if preds else np.zeros(0, dtype=np.int64)
    num_classes = len(loaded.mapping)
    counts = np.bincount(y_true, minlength=num_classes)[:num_classes]
    correct = np.bincount(y_true[y_pred == y_true], minlength=num_classes)[:num_classes]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(counts > 0, correct / np.maximum(counts, 1), np.nan)
    accuracy = float(np.mean(y_pred == y_true)) if len(y_true) else float("nan")
    return CharEvaluation(
        accuracy=accuracy, per_class_accuracy=per_class, y_true=y_true, y_pred=y_pred, mapping=loaded.mapping
    )


LineDecoder = Callable[[torch.Tensor, torch.Tensor], list[list[int]]]  # (logits, input_lengths) -> labels


def line_decoder(
    decoder: str,
    *,
    beam_width: int | None = None,
    lm: CharLM | None = None,
    lm_weight: float | None = None,
    length_bonus: float | None = None,
) -> LineDecoder:
    """`greedy` (best path) or `beam` (CTC prefix beam search, fused with `lm` when given).

    Beam search has no settings of its own: beam_width, lm_weight and length_bonus come from evaluate's grid or
    a reader checkpoint's record, so that what is evaluated is what is read.
    """
    if decoder == "greedy":
        return greedy_decode
    if decoder == "beam":
        if beam_width is None or lm_weight is None or length_bonus is None:
            raise ValueError(
                "beam search needs beam_width, lm_weight and length_bonus (evaluate's, or the reader's record)"
            )

        def beam(logits: torch.Tensor, input_lengths: torch.Tensor) -> list[list[int]]:
            return beam_decode(
                logits,
                beam_width=beam_width,
                lm=lm,
                lm_weight=lm_weight,
                length_bonus=length_bonus,
                input_lengths=input_lengths,
            )

        return beam
    raise ValueError(f"decoder must be greedy or beam, got {decoder!r}")


def reading_decoder(loaded: LoadedModel, decode: LineDecoder | None = None) -> LineDecoder:
    """The decoder a line checkpoint is read with: `decode` (None: greedy) for a CTC model; for a simple one the
    argmax per window (window_decode), which is its greedy reading, so greedy_decode stands for it too.

    ValueError for a decoder that does not fit the model: beam search (CTC) on per-window outputs, or
    window_decode on CTC steps.
    """
    if loaded.arch == "simple":
        if decode not in (None, greedy_decode, window_decode):
            raise ValueError(
                f"{loaded.path} is a per-window line model (line_model.arch simple), read by the argmax of each "
                "window: beam search applies to CTC models only"
            )
        return window_decode
    if decode is window_decode:
        raise ValueError(f"{loaded.path} is a CTC line model: read it with greedy or beam, not per window")
    return greedy_decode if decode is None else decode


def line_logits(
    loaded: LoadedModel, images: np.ndarray, device: torch.device, widths: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, C, T), input lengths (B,)) of a batch of lines, cut to what its lines need.

    The model is trained on batches cropped to their widest line (DeviceLoader), so it reads
    each line up to its own length, never the long blank tail of a full-width image. A simple (per-window) model
    reads the whole image: its windows do not see each other, and the empty ones past the text read as padding.
    `widths` (B,), when given, are the lines' own widths in a batch padded (black, on the right) to its widest: no
    line is then read past its own width, so each reads as it would alone (predict's batches of many images).
    """
    model = loaded.model
    x = to_model_input(images, device)
    if loaded.arch == "simple":
        logits = model(x)  # (B, C, L)
        if widths is None:
            return logits, torch.full((len(images),), logits.shape[2], dtype=torch.long, device=logits.device)
        return logits, torch.tensor([model.output_length(int(w)) for w in widths], device=logits.device)
    if widths is None:
        x, lengths = crop_lines(x, model.window_width, model.window_stride)
        return model(x, lengths), lengths
    own = line_widths(ink_extents(x), x.shape[-1], model.window_width, model.window_stride)
    own = torch.minimum(own, torch.as_tensor(list(widths), dtype=torch.long, device=own.device))
    lengths = output_lengths(own, model.window_width, model.window_stride)
    x = x[..., : crop_width(own, x.shape[-1], model.window_width, model.window_stride)]
    return model(x, lengths), lengths


def line_confidences(
    loaded: LoadedModel, logits: torch.Tensor, lengths: torch.Tensor, rows: Sequence[Sequence[int]]
) -> list[Confidence]:
    """Per-character and line confidences of decoded rows (reading/confidence.py): from the CTC posteriors, or for a
    simple (per-window) model from each character's window."""
    if loaded.arch == "simple":
        return window_confidences(logits, rows)
    found = ctc_confidences(logits, lengths, rows)
    shares = decoder_line_confidence(rows)  # beam search's own: the text's share of the beam
    if shares is None:
        return found
    return [dataclasses.replace(c, line=float(share)) for c, share in zip(found, shares, strict=True)]


def line_confidence(
    loaded: LoadedModel, logits: torch.Tensor, lengths: torch.Tensor, rows: Sequence[Sequence[int]]
) -> np.ndarray:
    """Only the lines' confidences (B,), as line_confidences gives them, without aligning characters (cheaper)."""
    if loaded.arch == "simple":
        return np.array([c.line for c in window_confidences(logits, rows)])
    shares = decoder_line_confidence(rows)
    return shares if shares is not None else text_probabilities(logits, lengths, rows)


def evaluate_lines(
    checkpoint_path: str | os.PathLike[str],
    lines_h5: str | os.PathLike[str],
    *,
    decoders: dict[str, LineDecoder] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    num_samples: int = 12,
    split: str = "test",
) -> LineEvaluation:
    """Corpus CER and exact-line accuracy of a line checkpoint on one split of emnist_lines.h5 (`test`; the
    evaluate stage picks its decoder on `val`).

    The network runs once per batch and every decoder in `decoders` (default: greedy; for a simple checkpoint
    `{"argmax": window_decode}`) reads the same logits; `cer`, `line_accuracy` and the samples are the first
    decoder's, `by_decoder` has them all. Targets are the label rows cut at `{split}/lengths`, so padding is never
    scored. `samples` holds the first `num_samples` lines with their true and predicted texts.
    """
    dev = default_device(device)
    loaded = load_checkpoint(checkpoint_path, map_location=dev, expected_kind="line", needed_by="evaluate_lines")
    default = "argmax" if loaded.arch == "simple" else "greedy"
    decoders = {name: reading_decoder(loaded, d) for name, d in (decoders or {default: None}).items()}
    data = _open_split(lines_h5, loaded, ("images", "labels", "lengths"), split)
    images = data["images"]
    if len(images) == 0:
        raise InputError(f"{lines_h5}: the {split} split is empty")
    targets = labels_to_texts(torch.from_numpy(data["labels"].astype(np.int64)), torch.from_numpy(data["lengths"]))
    preds: dict[str, list[str]] = {name: [] for name in decoders}
    confidence: dict[str, list[np.ndarray]] = {name: [] for name in decoders}
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            logits, lengths = line_logits(loaded, images[start : start + batch_size], dev)
            for name, decode in decoders.items():
                rows = decode(logits, lengths)
                preds[name].extend(indices_to_text(row, loaded.mapping) for row in rows)
                confidence[name].append(line_confidence(loaded, logits, lengths, rows))
    by_decoder = {
        name: {"cer": character_error_rate(p, targets), "line_acc": line_accuracy(p, targets)}
        for name, p in preds.items()
    }
    first = next(iter(decoders))
    samples = [
        LineSample(image=images[i], true_text=targets[i], pred_text=preds[first][i])
        for i in range(min(num_samples, len(images)))
    ]
    return LineEvaluation(
        cer=by_decoder[first]["cer"],
        line_accuracy=by_decoder[first]["line_acc"],
        num_lines=len(targets),
        samples=samples,
        by_decoder=by_decoder,
        confidence={name: np.concatenate(c) for name, c in confidence.items()},
        wrong={name: np.array([a != b for a, b in zip(p, targets, strict=True)]) for name, p in preds.items()},
    )


def save_line_predictions(samples: Sequence[LineSample], png_path: str | os.PathLike[str]) -> None:
    """One PNG with each sample line drawn and titled "true: ... / pred: ...", written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = max(len(samples), 1)
    fig = Figure(figsize=(12, 1.1 * rows + 0.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, squeeze=False)[:, 0]
    if not samples:
        axes[0].text(0.5, 0.5, "no test lines", ha="center", va="center")
        axes[0].axis("off")
    for ax, sample in zip(axes, samples, strict=False):
        ax.imshow(sample.image, cmap="gray", vmin=0, vmax=255, interpolation="nearest", aspect="equal")
        ok = "ok" if sample.pred_text == sample.true_text else "x"
        ax.set_title(f"true: {sample.true_text!r} / pred: {sample.pred_text!r}  [{ok}]", fontsize=9, loc="left")
        ax.axis("off")
    with atomic_path(png_path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)


def per_class_summary(per_class_acc: np.ndarray, mapping: Sequence[str], *, worst: int = 5) -> dict[str, Any]:
    """min / median / max of the per-class accuracies and the `worst` classes, ignoring classes without samples."""
    acc = np.asarray(per_class_acc, dtype=np.float64)
    if len(acc) != len(mapping):
        raise ValueError(f"{len(acc)} accuracies for {len(mapping)} classes")
    present = np.flatnonzero(~np.isnan(acc))
    if len(present) == 0:
        return {"min": None, "median": None, "max": None, "worst": []}
    order = present[np.argsort(acc[present], kind="stable")]
    return {
        "min": float(acc[present].min()),
        "median": float(np.median(acc[present])),
        "max": float(acc[present].max()),
        "worst": [{"class": mapping[i], "accuracy": float(acc[i])} for i in order[:worst]],
    }
