"""Lines per second of CTC decoding on CPU: greedy, beam search, beam search with a character LM.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/decode_speed.py --threads 1 [--beam 16] [--order 6] [--json F]

Logits are (lines, 65, 109), as LineCNN emits them for 32-character lines. "flat" logits are
standard normal (every class plausible at every step: the worst case for the beam); "peaky"
ones add 8 to one class per step, blank half the time, like a trained network. The LM is fitted
on Brown phrases when --brown exists, else on random texts. Best of --repeats (shared machines).
The search is numpy on the CPU whatever --device says.
"""

from __future__ import annotations

import timeit
from functools import partial
from pathlib import Path

import numpy as np
import torch
from machine import arguments, random_texts, report, start

from text_recognizer.char_lm import CharLM
from text_recognizer.data.sentences import load_brown_text, sample_phrases
from text_recognizer.decoding import beam_decode
from text_recognizer.lit_models.ctc import greedy_decode
from text_recognizer.metadata import BLANK_INDEX, LINE_TOKENS

STEPS = 109
BROWN = Path(__file__).resolve().parents[2] / "shared/datasets/nltk_data/corpora/brown.zip"


def lm_text(brown: Path, phrases: int, rng: np.random.Generator) -> tuple[str, str]:
    """(training text, its source) for the LM: Brown phrases if the zip is there."""
    if not brown.exists():
        return "\n".join(random_texts(rng, phrases, 32)), f"{phrases} random texts"
    return "\n".join(sample_phrases(load_brown_text(brown), phrases, 32, rng)), f"{phrases} Brown phrases"


def logits_for(kind: str, lines: int, rng: np.random.Generator) -> torch.Tensor:
    logits = rng.standard_normal((lines, len(LINE_TOKENS), STEPS)).astype(np.float32)
    if kind == "peaky":
        top = np.where(rng.random((lines, STEPS)) < 0.5, BLANK_INDEX, rng.integers(2, len(LINE_TOKENS), (lines, STEPS)))
        np.put_along_axis(logits, top[:, None, :], 8.0, axis=1)
    return torch.from_numpy(logits)


def seconds(fn, repeats: int = 1) -> float:
    """Fewest seconds over `repeats` calls (the minimum is the least disturbed by other jobs)."""
    return min(timeit.repeat(fn, number=1, repeat=repeats))


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__file__, __doc__)
    for flag, default in [("--lines", 256), ("--beam", 16), ("--order", 6), ("--repeats", 3), ("--lm-weight", 0.5)]:
        parser.add_argument(f"{flag}", type=type(default), default=default)
    parser.add_argument("--brown", type=Path, default=BROWN)
    args, _, head = start(parser, argv)
    lines, repeats, phrases = (16, 1, 2_000) if args.quick else (args.lines, args.repeats, 200_000)
    rng = np.random.default_rng(0)
    text, source = lm_text(args.brown, phrases, rng)
    lms: list[CharLM] = []  # filled by the timed fit
    results = {"lm": {"order": args.order, "text": source, "mb": len(text) / 1e6}, "sizes": {"lines": lines}}
    results["lm"]["fit_s"] = seconds(lambda: lms.append(CharLM.fit(text, args.order)))
    print(f"# LM: order {args.order} on {source}, {len(text) / 1e6:.1f} MB, fitted in {results['lm']['fit_s']:.2f} s")
    print(f"\n{lines} lines x {len(LINE_TOKENS)} x {STEPS}, beam {args.beam}, best of {repeats}; lines/s")
    print("| logits | greedy | beam | beam + LM |\n|---|---|---|---|")
    for kind in ("flat", "peaky"):
        logits = logits_for(kind, lines, rng)
        beam = partial(beam_decode, logits, beam_width=args.beam)
        runs = {"greedy": partial(greedy_decode, logits), "beam": beam}
        runs["beam_lm"] = partial(beam, lm=lms[0], lm_weight=args.lm_weight)
        results[kind] = {name: lines / seconds(fn, repeats) for name, fn in runs.items()}
        print(f"| {kind} | {' | '.join(f'{v:,.0f}' for v in results[kind].values())} |")
    report(head, results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
