"""How well, and how reliably, does the offline line recipe read? Test CER per head and decoder, over seeds.

    .venv/bin/python benchmarks/line_quality.py WORKDIR [--heads none,lstm,transformer] [--seeds 0,1,2]
        [--jobs 2] [--evaluate-only] [--json OUT] [-S section.key=value ...]

One float-rounding difference moved a single offline run from CER 0.058 (Intel) to 0.120 (AMD), so
a figure is only worth its spread. The data is made once by the real stage scripts (run without
DVC, params.yaml + the Makefile's offline recipe + -S), then the train_line_cnn stage runs for
every (head, seed), --jobs at a time with one torch thread each, and the test split is read with
greedy and with the beam setting the evaluate stage would pick on the val lines (its grid of lm_weight and
length_bonus, reading/decoder_choice.py). Each run keeps its checkpoint in WORKDIR, so
--evaluate-only re-reads finished runs (e.g. after a decoder change) without training.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import dataclasses
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from machine import header, override, print_header, report

REPO = Path(__file__).resolve().parents[1]


def offline_recipe() -> list[str]:
    flags = subprocess.run(["make", "-s", "offline-params"], cwd=REPO, check=True, capture_output=True, text=True)
    words = shlex.split(flags.stdout)
    return words[1::2]


def stage(workdir: Path, name: str, *args: str, params: dict[str, Any]) -> float:
    """Run stages/NAME.py in `workdir` with its own params.yaml; seconds taken."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.perf_counter()
    with open(workdir / f"{name}.log", "w") as log:
        subprocess.run(
            [sys.executable, str(REPO / "stages" / f"{name}.py"), *args],
            cwd=workdir,
            env=env,
            check=True,
            stdout=log,
            stderr=log,
        )
    return time.perf_counter() - started


def make_data(workdir: Path, params: dict[str, Any]) -> Path:
    data = workdir / "data"
    if not (data / "processed" / "emnist_lines.h5").is_file():
        stage(workdir, "download_emnist", "data/raw/emnist", params=params)
        stage(workdir, "download_brown", "data/raw/brown.zip", params=params)
        processed = ["data/processed/emnist.h5", "data/processed/emnist_byclass.h5"]
        stage(workdir, "emnist_hdf5", "data/raw/emnist", *processed, params=params)
        outs = ["data/processed/emnist_lines.h5", "samples.png", "data/processed/train_text.txt"]
        stage(workdir, "emnist_lines", processed[1], "data/raw/brown.zip", *outs, params=params)
    return data / "processed"


def train(run_dir: Path, lines_h5: Path, params: dict[str, Any]) -> float:
    if (run_dir / "line_cnn.pt").is_file():
        return 0.0
    return stage(run_dir, "train_line_cnn", str(lines_h5), "line_cnn.pt", "metrics", params=params)


def evaluate(run_dir: Path, processed: Path, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Test CER and exact lines of greedy and of the best beam setting on the val lines, as the evaluate stage."""
    from text_recognizer.data.sentences import phrases_text
    from text_recognizer.params import EvaluateParams, from_dict
    from text_recognizer.reading.char_lm import CharLM
    from text_recognizer.reading.decoder_choice import GREEDY, choose_decoder

    lm_params = params["char_lm"]
    train_text = (processed / "train_text.txt").read_text(encoding="utf-8")
    rng = np.random.default_rng(lm_params["seed"])
    text = phrases_text(train_text, lm_params["num_phrases"], params["emnist_lines"]["max_length"], rng)
    lm = CharLM.fit(text, lm_params["order"])
    grid = dataclasses.replace(from_dict(EvaluateParams, "evaluate", params["evaluate"]), num_sample_lines=0)
    choice = choose_decoder(run_dir / "line_cnn.pt", processed / "emnist_lines.h5", lm, grid)
    beam = choice.best_beam
    return {
        "greedy": choice.test.by_decoder[GREEDY.name],
        "beam": {**choice.test.by_decoder[beam.name], "lm_weight": beam.lm_weight, "length_bonus": beam.length_bonus},
    }


def spread(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "max": max(values),
        "min": min(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--heads", default="none,lstm,transformer")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--evaluate-only", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("-S", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    head = header(device="cpu")
    print_header(head)
    base = override(yaml.safe_load((REPO / "params.yaml").read_text()), offline_recipe() + args.overrides)
    processed = make_data(args.workdir, base)
    runs = {
        (h, int(seed)): args.workdir / "runs" / f"{h}-seed{seed}"
        for h in args.heads.split(",")
        for seed in args.seeds.split(",")
    }

    def params_of(h: str, seed: int) -> dict[str, Any]:
        return override(copy.deepcopy(base), [f"line_model.head={h}", f"train_line_cnn.seed={seed}"])

    seconds: dict[str, float] = {}
    if not args.evaluate_only:
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {
                key: pool.submit(train, d, processed / "emnist_lines.h5", params_of(*key)) for key, d in runs.items()
            }
            seconds = {f"{h}-seed{s}": f.result() for (h, s), f in futures.items()}
    per_run = {f"{h}-seed{s}": evaluate(d, processed, params_of(h, s)) for (h, s), d in runs.items()}
    summary: dict[str, Any] = {}
    for h in args.heads.split(","):
        for decoder in ("greedy", "beam"):
            rows = [per_run[f"{h}-seed{s}"][decoder] for s in args.seeds.split(",")]
            summary[f"{h}/{decoder}"] = {m: spread([r[m] for r in rows]) for m in ("cer", "line_acc")}
            cer, acc = summary[f"{h}/{decoder}"]["cer"], summary[f"{h}/{decoder}"]["line_acc"]
            print(
                f"{h:12s} {decoder:6s} test CER {cer['mean']:.4f} ± {cer['std']:.4f} (max {cer['max']:.4f})  "
                f"exact lines {acc['mean']:.3f} ± {acc['std']:.3f}  over {len(rows)} seeds"
            )
    report(head, {"recipe": args.overrides, "train_seconds": seconds, "runs": per_run, "summary": summary}, args.json)


if __name__ == "__main__":
    main()
