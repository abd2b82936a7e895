"""Stage char_lm: the character n-gram language model that beam search reads lines with.

usage: python stages/char_lm.py TRAIN_TEXT OUT_NPZ

Estimated from the train pool's text only (the emnist_lines stage writes it), so the test
lines' text is never part of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from common import require_file, run, section

from text_recognizer.data.sentences import phrases_text
from text_recognizer.io import atomic_path
from text_recognizer.params import CharLMParams, EmnistLinesParams
from text_recognizer.reading.char_lm import CharLM


def main(argv: list[str]) -> None:
    train_text, out_npz = argv
    params = section(CharLMParams, "char_lm")
    max_length = section(EmnistLinesParams, "emnist_lines").max_length
    require_file(train_text, made_by="emnist_lines")
    rng = np.random.default_rng(params.seed)
    text = phrases_text(Path(train_text).read_text(encoding="utf-8"), params.num_phrases, max_length, rng)
    lm = CharLM.fit(text, params.order)
    with atomic_path(out_npz) as tmp, open(tmp, "wb") as f:  # a file object: numpy would append ".npz" to a name
        lm.save(f)
    print(f"{out_npz}: order {params.order}, {Path(out_npz).stat().st_size:,} bytes")


if __name__ == "__main__":
    run(main)
