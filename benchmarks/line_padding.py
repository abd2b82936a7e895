"""How much training time does cropping each line batch to its widest line save?

    .venv/bin/python benchmarks/line_padding.py [--lines 3000] [--steps 30] [--head none] [--threads N]

The offline recipe (`make offline`): 3000 lines of generated Brown phrases (896-px images) drawn
with synthetic glyphs, LineCNN width 16 / fc_dim 64, batch 64, AdamW, line augmentation. The same
shuffled batches are trained on uncropped (full width, as before) and cropped (the data module's
default); both with per-line CTC input lengths. Timed: --steps optimiser steps of each after 3
warm-up steps, the two alternating step by step (wall and CPU time). The cropped loader also
groups lines of similar width within pools of 8 random batches (DeviceLoader._width_pooled).
Also printed: the share of the columns the crop keeps, and the mean line width (the floor).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from machine import cpu_name

from text_recognizer.data.augmentation import augmentation
from text_recognizer.data.device_loader import EmnistLinesDataModule
from text_recognizer.data.emnist_lines import encode_texts, render_lines
from text_recognizer.data.sentences import load_brown_text, sample_phrases
from text_recognizer.data.synthetic import render_glyphs, write_brown_corpus
from text_recognizer.line_geometry import ink_extents, line_widths
from text_recognizer.lit_models.ctc import ctc_loss
from text_recognizer.metadata import LINE_TOKENS
from text_recognizer.models.line_archs import line_arch_kwargs, line_network
from text_recognizer.params import load_section

PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"

MAX_LENGTH, MIN_OVERLAP, MAX_OVERLAP = 32, 0.0, 0.33  # params.yaml's emnist_lines


def write_lines(path: Path, count: int, seed: int = 0) -> None:
    """An emnist_lines.h5 look-alike (train and a small val split) from generated text and glyphs."""
    rng = np.random.default_rng(seed)
    write_brown_corpus(path.with_name("brown.zip"), seed=seed)
    text = load_brown_text(path.with_name("brown.zip"))
    glyph_labels = np.repeat(np.arange(62), 30)
    glyphs = render_glyphs(glyph_labels, rng)
    with h5py.File(path, "w") as f:
        f.attrs["mapping"] = json.dumps(list(LINE_TOKENS))
        for split, n in (("train", count), ("val", 64)):
            labels, lengths = encode_texts(sample_phrases(text, n, MAX_LENGTH, rng), MAX_LENGTH)
            images, _ = render_lines(
                labels, lengths, glyphs, glyph_labels, min_overlap=MIN_OVERLAP, max_overlap=MAX_OVERLAP, rng=rng
            )
            f[f"{split}/images"], f[f"{split}/labels"], f[f"{split}/lengths"] = images, labels, lengths


def time_steps(path: Path, args: argparse.Namespace) -> dict[bool, tuple[float, float, float]]:
    """{crop: (median wall s per step, CPU s per step, mean batch width / full)}, the two interleaved step by step.

    Interleaving and CPU time keep the comparison fair on a machine that other work shares.
    """
    runs, samples = {}, {False: [], True: []}
    line_model = load_section("line_model", PARAMS_YAML, width=16, fc_dim=64, head=args.head)
    warp = augmentation(load_section("train_line_cnn", PARAMS_YAML, augment=True))
    window = {"window_width": line_model.window_width, "window_stride": line_model.window_stride}
    for crop in (False, True):
        data = EmnistLinesDataModule(path, batch_size=args.batch_size, seed=0, augment=warp, crop=crop, **window)
        torch.manual_seed(0)
        model = line_network(**line_arch_kwargs("ctc", vars(line_model))).train()  # CTC crops: the LineCNN
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.05)
        runs[crop] = (iter(data.train_dataloader()), model, optimizer, data.image_width)
    for step in range(3 + args.steps):
        for crop, (batches, model, optimizer, full) in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            x, labels, lengths, input_lengths = next(batches)
            loss = ctc_loss(model(x, input_lengths), labels, lengths, input_lengths)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step >= 3:
                samples[crop].append((time.perf_counter() - wall, time.process_time() - cpu, x.shape[-1] / full))
    return {
        crop: (float(np.median([s[0] for s in rows])), *np.mean(rows, axis=0)[1:].tolist())
        for crop, rows in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=30)  # < 3000 / 64 - 3: all within the first epoch
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--head", default="none", choices=["none", "lstm", "transformer"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads, commit {commit or '?'}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "emnist_lines.h5"
        write_lines(path, args.lines)
        with h5py.File(path) as f:
            images = torch.from_numpy(f["train/images"][:])
        line_model = load_section("line_model", PARAMS_YAML)
        widths = line_widths(ink_extents(images), images.shape[2], line_model.window_width, line_model.window_stride)
        widths = widths.float() / images.shape[2]
        (slow, slow_cpu, _), (fast, fast_cpu, kept) = time_steps(path, args).values()
    print(f"# {args.lines} lines, batch {args.batch_size}, head {args.head}, {args.steps} steps each, interleaved")
    print(f"uncropped: {slow:.3f} s/step wall (median), {slow_cpu:.3f} s/step CPU")
    print(f"cropped:   {fast:.3f} s/step wall (median), {fast_cpu:.3f} s/step CPU, {kept:.1%} of the columns kept")
    print(f"speed-up:  {slow / fast:.2f}x wall, {slow_cpu / fast_cpu:.2f}x CPU")
    print(f"mean line width {float(widths.mean()):.1%} of the image")


if __name__ == "__main__":
    main()
