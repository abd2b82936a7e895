"""Seconds per training step of the LineCNN with each `line_model.stem`: full (the first conv at the 28-px height)
vs strided (the first conv halves the image).

    .venv/bin/python benchmarks/line_stem.py [--device cpu] [--threads N] [--repeats 8] [--quick] [--json OUT]
        [-S section.key=value ...]

Why it exists: on a CPU the full stem's 28 x W activations (its conv, batch norm and ReLU, forward and backward)
took a third of a step of `make offline`'s LineCNN; the strided stem drops them. The line row of
memory_format.py, with the stem in place of the format: `make offline`'s sizes unless -S says otherwise, a batch
of random lines 760 px wide, loaders.train_step on each, channels_last as training prepares them, the two stems
alternating step by step so a busy neighbour slows both. Whether the strided stem reads as well is a training
question: README "Line stem" has the CER of both (generated lines as well, real handwriting worse).
"""

from __future__ import annotations

import torch
from loaders import Recipe
from machine import arguments, report, start
from memory_format import LINE_WIDTH, OFFLINE, alternating_times, line_loss

STEMS = ("full", "strided")


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__file__, __doc__)
    parser.add_argument("--repeats", type=int, default=8, help="timed steps per stem")
    args, device, head = start(parser, argv)
    runs = {}
    for stem in STEMS:
        recipe = Recipe.load([*OFFLINE, *args.set, f"line_model.stem={stem}"], args.quick)
        torch.manual_seed(0)
        network = recipe.linecnn(device)
        lines = torch.rand(recipe.train_line_cnn.batch_size, 1, 28, LINE_WIDTH, device=device)
        runs[stem] = (network, torch.optim.AdamW(network.parameters()), (lines.to(memory_format=torch.channels_last),))
    times = alternating_times(runs, line_loss, 1 if args.quick else args.repeats)
    print("\n| stem | s/step | speed-up over full |\n| --- | --- | --- |")
    for stem, seconds in times.items():
        print(f"| {stem} | {seconds:.3f} | {times['full'] / seconds:.2f}x |")
    report(head, {"line ctc": times}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
