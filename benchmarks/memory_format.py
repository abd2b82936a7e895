"""Seconds per training step of the offline recipe's networks in each memory format: contiguous vs channels_last.

    .venv/bin/python benchmarks/memory_format.py [--device cpu] [--threads N] [--repeats 8] [--quick] [--json OUT]
        [-S section.key=value ...]

Why it exists: training.prepare_network puts the network in channels_last on every device. On a GPU that is
for tensor cores; on the CPU oneDNN's convolutions and batch norms run faster that way too, which this measures.
Rows: the char ResNet (params `model`, batch train_cnn.batch_size of 28x28 glyphs) and the LineCNN (params
`line_model`, batch train_line_cnn.batch_size of lines 760 px wide, a typical width-pooled batch), at
`make offline`'s sizes unless -S says otherwise. A step is forward, a loss, backward and AdamW, on random inputs
(speed does not depend on the values). The two formats alternate step by step, so a busy neighbour slows both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from machine import REPO, arguments, override, report, start

from text_recognizer.models.char_archs import arch_kwargs, char_network
from text_recognizer.models.line_archs import line_arch_kwargs, line_network

OFFLINE = {"model": {"width": 16}, "line_model": {"width": 16, "fc_dim": 64}, "train_cnn": {"batch_size": 256},
           "train_line_cnn": {"batch_size": 64}}  # fmt: skip
LINE_WIDTH = 760  # px: a width-pooled batch of offline lines is about this wide


def networks(params: dict[str, Any]) -> dict[str, tuple[Callable[[], torch.nn.Module], torch.Tensor, Any]]:
    """{row: (a function building the network, an input batch, the loss of its output)} at params' sizes."""
    model, line = params["model"], params["line_model"]
    glyphs = torch.rand(params["train_cnn"]["batch_size"], 1, 28, 28)
    labels = torch.randint(0, 62, (len(glyphs),))
    lines = torch.rand(params["train_line_cnn"]["batch_size"], 1, 28, LINE_WIDTH)
    return {
        f"char {model['arch']}": (
            lambda: char_network(**arch_kwargs(model["arch"], model)),
            glyphs,
            lambda out: F.cross_entropy(out, labels),
        ),
        f"line {line['arch']} ({line['head']})": (
            lambda: line_network(**line_arch_kwargs(line["arch"], line)),
            lines,
            lambda out: out.float().logsumexp(1).mean(),
        ),
    }


def step(network: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, loss_of: Any) -> float:
    start_s = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss_of(network(x)).backward()
    optimizer.step()
    return time.perf_counter() - start_s


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__file__, __doc__)
    parser.add_argument("--repeats", type=int, default=8, help="timed steps per format and row")
    args, device, head = start(parser, argv)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in OFFLINE.items():
        params[section].update(values)
    params = override(params, args.set)
    repeats = 1 if args.quick else args.repeats
    results: dict[str, dict[str, float]] = {}
    print("\n| network | contiguous s/step | channels_last s/step | speed-up |\n| --- | --- | --- | --- |")
    formats = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    for row, (build, x, loss_of) in networks(params).items():
        runs = {}
        for name, fmt in formats.items():
            torch.manual_seed(0)  # the same weights in both formats
            net = build().to(device).to(memory_format=fmt)
            runs[name] = (net, torch.optim.AdamW(net.parameters()), x.to(device).to(memory_format=fmt))
        for net, optimizer, batch in runs.values():  # warm-up
            step(net, optimizer, batch, loss_of)
        times = {name: 0.0 for name in runs}
        for _ in range(repeats):
            for name, (net, optimizer, batch) in runs.items():
                times[name] += step(net, optimizer, batch, loss_of) / repeats
        results[row] = times
        print(f"| {row} | {times['contiguous']:.3f} | {times['channels_last']:.3f} | "
              f"{times['contiguous'] / times['channels_last']:.2f}x |")  # fmt: skip
    report(head, results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
