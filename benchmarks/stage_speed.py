"""How long does the real train_cnn stage take, end to end, on a ByClass-sized set? Samples/s included.

    python benchmarks/stage_speed.py [--device auto|cpu|cuda] [--compile] [--quick] [--json OUT]
        [-S section.key=value ...] [--work DIR]

Builds a synthetic emnist.h5 of ByClass's size (make_big_emnist.py; not timed with the stage), writes
params.yaml with train_cnn.epochs set to `epochs` (and accelerator, compile, -S overrides) into a work
folder, then runs `python stages/train_cnn.py emnist.h5 model.pt metrics` there, without dvc, and
times the process from start to exit: imports, reading the file, the copy to the device, every epoch
with its validation, and the checkpoint. samples/s = epochs x train glyphs / that time. The stage's
own exit status is this script's. dvclive is looked up first: where it is missing (the GPU machine), a
failing stage is reported as such, not as a crash of this script.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from machine import REPO, arguments, override, report, start
from make_big_emnist import BYCLASS_TEST, BYCLASS_TRAIN, build

SIZES = {  # official train/test glyphs, rendered glyphs per class, epochs
    "cuda": {"train": BYCLASS_TRAIN, "test": BYCLASS_TEST, "pool": 200, "epochs": 2},
    "cpu": {"train": 62 * 320, "test": 62 * 20, "pool": 100, "epochs": 1},
    "quick": {"train": 62 * 20, "test": 62 * 4, "pool": 4, "epochs": 1},
}
QUICK = ["model.width=8", "train_cnn.batch_size=64"]  # a smoke run: a tiny model


def stage_params(work: Path, device: str, epochs: int, compile: bool, overrides: list[str]) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train_cnn"].update(epochs=epochs, accelerator="gpu" if device == "cuda" else "cpu", compile=compile)
    override(params, overrides)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_stage(work: Path, threads: int | None) -> tuple[int, float, list[str]]:
    """(exit status, seconds from start to exit, output lines), the output echoed as it comes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, str(REPO / "stages" / "train_cnn.py"), "emnist.h5", "model.pt", "metrics"]
    print(f"$ (cd {work} && {' '.join(cmd)})")
    started, lines = time.perf_counter(), []
    with subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(f"   | {line}", end="")
            lines.append(line.rstrip("\n"))
    return proc.returncode, time.perf_counter() - started, lines


def final_metrics(work: Path, lines: list[str]) -> dict[str, Any] | None:
    """metrics/metrics.json where dvclive wrote it, else the dict the stage prints last."""
    path = work / "metrics" / "metrics.json"
    if path.is_file():
        return json.loads(path.read_text())
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                return ast.literal_eval(line)
            except (ValueError, SyntaxError):
                return None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__file__, __doc__)
    parser.add_argument("--compile", action="store_true", help="train_cnn.compile: true")
    parser.add_argument("--work", type=Path, default=None, help="folder for the data and outputs (default: a temp)")
    args, device, head = start(parser, argv)
    size = SIZES["quick" if args.quick else device.type]
    work = args.work or Path(tempfile.mkdtemp(prefix="stage_speed_"))  # a temp one goes at the end
    work.mkdir(parents=True, exist_ok=True)
    try:
        has_dvclive = importlib.util.find_spec("dvclive") is not None
    except ImportError:
        has_dvclive = False
    print(f"# dvclive {'installed' if has_dvclive else 'NOT installed (text_recognizer.training may need it)'}")
    started = time.perf_counter()
    splits = build(work / "emnist.h5", size["train"], size["test"], size["pool"])
    build_s = time.perf_counter() - started
    print(f"# emnist.h5 {splits} built in {build_s:.1f} s (not timed with the stage)")
    stage_params(work, device.type, size["epochs"], args.compile, (QUICK if args.quick else []) + args.set)
    rc, seconds, lines = run_stage(work, args.threads)
    results: dict[str, Any] = {"sizes": size, "splits": splits, "build_s": build_s, "work": str(work)}
    results.update(rc=rc, wall_s=seconds, dvclive=has_dvclive, compile=args.compile, metrics=final_metrics(work, lines))
    if rc == 0:
        results["samples_per_s"] = size["epochs"] * splits["train"] / seconds
        print(f"\ntrain_cnn: {size['epochs']} epochs of {splits['train']:,} glyphs in {seconds:.1f} s end to end")
        print(f"= {results['samples_per_s']:,.0f} training samples/s; final {results['metrics']}")
    else:
        why = "; dvclive is not installed here, which the stage may need" if not has_dvclive else ""
        print(f"\ntrain_cnn FAILED (exit {rc}) after {seconds:.1f} s{why}")
    report(head, results, args.json)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
