"""What the benchmarks share: the machine name for their headers, and random line texts."""

from __future__ import annotations

import platform

import numpy as np

from text_recognizer.metadata import EMNIST_CLASSES

_TEXT_ALPHABET = np.array(list("".join(EMNIST_CLASSES) + " " * 9))  # about 1 space in 8 characters


def random_texts(rng: np.random.Generator, count: int, max_length: int) -> list[str]:
    """`count` texts of 1..max_length random characters, single spaces inside, never empty."""
    texts = []
    for length in rng.integers(1, max_length + 1, size=count).tolist():
        texts.append(" ".join("".join(rng.choice(_TEXT_ALPHABET, size=length).tolist()).split()) or "a")
    return texts


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
