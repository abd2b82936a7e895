"""How well does `text-recognizer predict` read lines set in fonts that no pipeline code draws with?

    .venv/bin/python benchmarks/read_fonts.py --models models [--phrases tuning] [--layout glyphs line] [--show]

Every phrase of tests/font_lines.py is set in every style there (Liberation fonts at 14-80 px,
margins, both polarities, extra stroke, JPEG noise), read through `read_array` exactly as the CLI
reads a file, and scored as a corpus character error rate (edits / reference characters, case
sensitive, and ignoring case: EMNIST fits c and C into the same box) per layout: `line` is the older
whole-line scaling (the "before" figure), `glyphs` the EMNIST-like normalisation; each read greedily
and with beam search + the language model (models/char_lm.npz) at the beam setting models/line_reader.pt records.
Tune the normaliser with `--phrases tuning` (half the phrases): tests/test_read_fonts.py asserts on the
other half (`held-out`), which tuning must not look at.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.font_lines, run from anywhere

from tests.font_lines import (
    FONT_NAMES,
    FONT_PACKAGE,
    HELD_OUT_PHRASES,
    PHRASES,
    STYLES,
    TUNING_PHRASES,
    Style,
    find_font,
    render_line,
)
from text_recognizer.lit_models.ctc import character_error_rate, greedy_decode
from text_recognizer.models.checkpoint import LoadedModel
from text_recognizer.reading.char_lm import CharLM
from text_recognizer.reading.decoder_choice import recorded_beam
from text_recognizer.reading.evaluation import LineDecoder, line_decoder
from text_recognizer.reading.predict import LAYOUTS, PredictError, load_model, read_array

PHRASE_SETS = {"all": PHRASES, "tuning": TUNING_PHRASES, "held-out": HELD_OUT_PHRASES}


def decoder_for(models: Path, name: str) -> LineDecoder:
    """greedy, or beam search with models/char_lm.npz at the settings models/line_reader.pt records (the evaluate
    stage's best beam setting on the val lines: what `predict --decoder beam` reads with)."""
    if name == "greedy":
        return line_decoder("greedy")
    reading = load_model(models / "line_reader.pt", device="cpu", expected_kind="line").extra["reading"]
    beam_width, beam = recorded_beam(reading)
    return beam.reader(beam_width, CharLM.load(models / "char_lm.npz"))


def read_all(
    loaded: LoadedModel,
    layout: str,
    phrases: tuple[str, ...],
    styles: tuple[Style, ...] = STYLES,
    decode: LineDecoder = greedy_decode,
) -> dict[Style, list[str]]:
    """The reading of every phrase in every style; a refused image reads as the empty string."""
    out: dict[Style, list[str]] = {}
    for style in styles:
        readings = []
        for phrase in phrases:
            try:
                image = render_line(phrase, style)
                readings.append(read_array(image, loaded, layout=layout, check_kind=False, decode=decode).text)
            except PredictError:
                readings.append("")
        out[style] = readings
    return out


def corpus_cer(readings: dict[Style, list[str]], phrases: tuple[str, ...], ignore_case: bool = False) -> float:
    """One CER over all styles and phrases (long phrases weigh more, as in evaluate_lines)."""
    preds = [r for style in readings for r in readings[style]]
    truths = list(phrases) * len(readings)
    if ignore_case:
        preds, truths = [p.lower() for p in preds], [t.lower() for t in truths]
    return character_error_rate(preds, truths)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        type=Path,
        default=Path("models"),
        help="folder with line_reader.pt (else line_cnn.pt: greedy only) and char_lm.npz for beam",
    )
    parser.add_argument("--phrases", choices=PHRASE_SETS, default="all", help="which half (tune on 'tuning')")
    parser.add_argument("--layout", nargs="+", choices=LAYOUTS, default=["line", "glyphs"])
    parser.add_argument("--decoder", nargs="+", choices=["greedy", "beam"], default=["greedy", "beam"])
    parser.add_argument("--per-style", action="store_true", help="also print the CER of each style")
    parser.add_argument("--show", action="store_true", help="print every wrong reading")
    args = parser.parse_args(argv)
    missing = [name for name in FONT_NAMES if find_font(name) is None]
    if missing:
        print(f"error: fonts {missing} not found: apt-get install {FONT_PACKAGE}", file=sys.stderr)
        return 1
    try:
        reader = args.models / "line_reader.pt"  # what predict reads with: its glyph model cuts touching letters
        loaded = load_model(
            reader if reader.is_file() else args.models / "line_cnn.pt", device="cpu", expected_kind="line"
        )
    except PredictError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    phrases = PHRASE_SETS[args.phrases]
    print(f"{len(phrases)} phrases x {len(STYLES)} styles, {sum(map(len, phrases)) * len(STYLES)} characters")
    for layout, decoder in itertools.product(args.layout, args.decoder):
        start = time.perf_counter()
        readings = read_all(loaded, layout, phrases, decode=decoder_for(args.models, decoder))
        took = time.perf_counter() - start
        caseless = corpus_cer(readings, phrases, ignore_case=True)
        cer = corpus_cer(readings, phrases)
        print(f"layout={layout:<6} {decoder:6}  CER {cer:6.1%}  (ignoring case {caseless:.1%}; {took:.1f} s)")
        for style, texts in readings.items():
            if args.per_style:
                print(f"    {corpus_cer({style: texts}, phrases):6.1%}  {style}")
            if args.show:
                for truth, text in zip(phrases, texts, strict=True):
                    if text != truth:
                        print(f"        {truth!r:36} -> {text!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
