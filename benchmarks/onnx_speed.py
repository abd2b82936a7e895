"""Lines per second of reading test lines on the CPU: the torch checkpoint against its ONNX export in onnxruntime.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/onnx_speed.py --threads 1 [--model models/line_cnn.pt]
        [--lines data/processed/emnist_lines.h5] [--batches 1,64] [--repeats 3] [--json F]

Both sides read the same lines the same way: crop each batch to what its lines need, run the network, greedy
decode (evaluation.line_logits + greedy_decode for torch, OnnxModel.read_lines for onnxruntime), so a figure is
the whole reading of a line, not the network alone. The lines are sorted by their ink width first, so a batch
holds lines of similar widths (as a server that groups its requests would). Each side runs the batch sizes one
after the other, best of --repeats (shared machines); both use --threads threads. The texts of both are
compared: a speed-up that changes a reading would not count.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch
from machine import REPO, arguments, report, start

from text_recognizer.export import export_onnx
from text_recognizer.lit_models.ctc import indices_to_text
from text_recognizer.models.checkpoint import load_checkpoint
from text_recognizer.reading.evaluation import line_logits, reading_decoder
from text_recognizer.reading.onnx_model import OnnxModel, ink_extents


def torch_reader(checkpoint: Path, device: torch.device) -> Callable[[np.ndarray], list[str]]:
    """A function reading a uint8 batch (N, 28, W) into texts, as evaluate_lines does."""
    loaded = load_checkpoint(checkpoint, map_location=device, expected_kind="line", needed_by="onnx_speed")
    decode = reading_decoder(loaded)

    def read(images: np.ndarray) -> list[str]:
        with torch.inference_mode():
            logits, lengths = line_logits(loaded, images, device)
            return [indices_to_text(row, loaded.mapping) for row in decode(logits, lengths)]

    return read


def lines_per_second(
    read: Callable[[np.ndarray], list[str]], images: np.ndarray, batch: int, repeats: int
) -> tuple[float, list[str]]:
    """Best rate over `repeats` passes over `images` in batches of `batch`, and the texts of the last pass."""
    best, texts = 0.0, []
    for _ in range(repeats):
        texts = []
        began = time.perf_counter()
        for first in range(0, len(images), batch):
            texts.extend(read(images[first : first + batch]))
        best = max(best, len(images) / (time.perf_counter() - began))
    return best, texts


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__file__, __doc__)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "line_cnn.pt", help="a line checkpoint")
    parser.add_argument("--lines", type=Path, default=REPO / "data" / "processed" / "emnist_lines.h5")
    parser.add_argument("--split", default="test", help="the split of --lines to read")
    parser.add_argument("--batches", default="1,64", help="comma-separated batch sizes")
    parser.add_argument("--limit", type=int, default=None, help="read at most this many lines (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    args, device, head = start(parser, argv)
    if device.type != "cpu":
        raise SystemExit("onnx_speed compares CPU readers: pass --device cpu")
    batches = [int(b) for b in args.batches.split(",")]
    limit = 32 if args.quick and args.limit is None else args.limit
    repeats = 1 if args.quick else args.repeats
    if min(batches) < 1 or repeats < 1:
        raise SystemExit("--batches and --repeats must be >= 1")
    import onnxruntime

    head["onnxruntime"] = onnxruntime.__version__
    print(f"# onnxruntime {onnxruntime.__version__}, {torch.get_num_threads()} intra-op threads on both sides")
    with h5py.File(args.lines, "r") as f:
        images = f[f"{args.split}/images"][:limit]
    images = images[np.argsort(ink_extents(images), kind="stable")]  # batches of similar widths
    with tempfile.TemporaryDirectory() as folder:
        exported = export_onnx(args.model, Path(folder) / "model.onnx")
        onnx_model = OnnxModel(exported, threads=torch.get_num_threads())
        readers = {"torch": torch_reader(args.model, device), "onnxruntime": onnx_model.read_lines}
        results: dict[str, dict[str, float]] = {}
        print(f"{len(images)} lines of {args.lines.name} ({args.split}), {args.model.name}, best of {repeats}")
        print(f"{'batch':>5} {'torch lines/s':>14} {'onnxruntime lines/s':>20} {'ratio':>6} {'same texts':>10}")
        for batch in batches:
            rates, texts = {}, {}
            for name, read in readers.items():
                read(images[:batch])  # warm-up: the first call allocates
                rates[name], texts[name] = lines_per_second(read, images, batch, repeats)
            same = sum(a == b for a, b in zip(texts["torch"], texts["onnxruntime"], strict=True))
            ratio = rates["onnxruntime"] / rates["torch"]
            results[f"batch_{batch}"] = {
                "torch_lines_per_s": rates["torch"],
                "onnxruntime_lines_per_s": rates["onnxruntime"],
                "speedup": ratio,
                "same_texts": same,
                "lines": len(images),
            }
            print(
                f"{batch:>5} {rates['torch']:>14.1f} {rates['onnxruntime']:>20.1f} {ratio:>5.2f}x "
                f"{same:>5}/{len(images)}"
            )
    report(head, results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
