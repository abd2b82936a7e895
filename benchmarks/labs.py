"""The FSDL labs' comparison, run as DVC experiments: MLP / CNN / ResNet and LineCNNSimple / LineCNN / LineCNN + LSTM.

    .venv/bin/python benchmarks/labs.py WORKDIR [--seeds 0,1,2] [--quick] [--json OUT]
    .venv/bin/python benchmarks/labs.py WORKDIR --table-only      # the table of a finished WORKDIR

WORKDIR/repo becomes a throw-away copy of this project whose params.yaml holds `make offline`'s recipe
(generated glyphs blended with the real handwriting of data.source: handwriting). After one `dvc repro`
of that baseline, three queue commands, one per family, run the comparison; only the training seeds
vary (the data is the same for every run):

    dvc exp run --queue -S 'model.arch=mlp,cnn,resnet' -S 'train_cnn.seed=0,1,2'
    dvc exp run --queue -S 'line_model.head=none,lstm' -S 'train_line_cnn.seed=0,1,2'
    dvc exp run --queue -S line_model.arch=simple -S emnist_lines.min_overlap=0 -S emnist_lines.max_overlap=0 \
        -S 'train_line_cnn.seed=0,1,2'
    dvc queue start --jobs 1

DVC's run cache restores every stage whose inputs an earlier run already had, so each experiment trains
only the network it changes. The figures are `dvc exp show`'s (metrics/evaluate.json) and each training
stage's wall time, which the stages print (`stage train_cnn took N s`) and `dvc queue logs` keeps.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import header, print_header

from tests.pipeline_repo import PipelineRepo

REPO = Path(__file__).resolve().parents[1]
FAMILIES = {  # the -S flags of each queue command, {seeds} filled in
    "chars": ["model.arch=mlp,cnn,resnet", "train_cnn.seed={seeds}"],
    "lines": ["line_model.head=none,lstm", "train_line_cnn.seed={seeds}"],
    "simple": [
        "line_model.arch=simple",
        "emnist_lines.min_overlap=0",
        "emnist_lines.max_overlap=0",
        "train_line_cnn.seed={seeds}",
    ],
}
QUICK = [  # a smoke run in minutes: the same commands on a tiny recipe
    "emnist_lines.num_train=300",
    "emnist_lines.num_val=60",
    "emnist_lines.num_test=60",
    "emnist_lines.max_length=12",
    "data.synthetic_train_per_class=40",
    "data.synthetic_test_per_class=10",
    "train_cnn.epochs=1",
    "train_line_cnn.epochs=2",
    "char_lm.num_phrases=2000",
    "evaluate.lm_weights=[0.0]",
    "evaluate.length_bonuses=[0.0]",
]
TOOK = re.compile(r"stage (train_cnn|train_line_cnn) took ([0-9.]+) s")


def recipe(quick: bool) -> dict[str, dict]:
    """`make offline`'s -S flags (one source: the Makefile), and QUICK's on top, as params.yaml sections."""
    flags = subprocess.run(["make", "-s", "offline-params"], cwd=REPO, check=True, capture_output=True, text=True)
    settings: dict[str, dict] = {}
    for assignment in [*shlex.split(flags.stdout)[1::2], *(QUICK if quick else [])]:
        dotted, value = assignment.split("=", 1)
        section, key = dotted.split(".", 1)
        settings.setdefault(section, {})[key] = yaml.safe_load(value)
    return settings


def queue_commands(seeds: str) -> dict[str, list[str]]:
    return {
        family: ["exp", "run", "--queue", *(a for flag in flags for a in ("-S", flag.format(seeds=seeds)))]
        for family, flags in FAMILIES.items()
    }


def run_all(repo: PipelineRepo, seeds: str, jobs: int) -> None:
    """The baseline once in the workspace (it fills the cache), then every family through one queue worker."""
    started = time.perf_counter()
    repo.dvc("repro")
    repo.git("add", "-A")  # dvc.lock and metrics/ committed, as on main: each experiment reruns only what it changes
    repo.git("commit", "-qm", "baseline run")
    print(f"baseline dvc repro: {time.perf_counter() - started:.0f} s", flush=True)
    for family, command in queue_commands(seeds).items():
        print(f"{family}: dvc {shlex.join(command)}", flush=True)
        repo.dvc(*command)
    repo.dvc("queue", "start", "--jobs", str(jobs))
    while True:
        time.sleep(30)
        status = repo.dvc("queue", "status").stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
    print(repo.dvc("queue", "status").stdout, flush=True)
    repo.dvc("queue", "stop", check=False)
    print(f"all runs: {time.perf_counter() - started:.0f} s", flush=True)


def experiments(repo: PipelineRepo) -> pd.DataFrame:
    """One row per finished experiment: its params, metrics and the training stages' wall times."""
    shown = repo.dvc("exp", "show", "--csv", "--no-pager", "--force").stdout
    table = pd.read_csv(io.StringIO(shown))
    table = table[table["typ"].isin(["branch_commit", "branch_base"])]
    table = table[~table["State"].isin(["Running", "Queued", "Failed"])].copy()  # a running one shows its base's
    for name in ("train_cnn", "train_line_cnn"):
        table[f"{name}_s"] = np.nan
    for index, row in table.iterrows():
        logs = repo.dvc("queue", "logs", str(row["Experiment"]), check=False).stdout
        for stage, seconds in TOOK.findall(logs):
            table.loc[index, f"{stage}_s"] = float(seconds)
    return table


def _mean_std(values: pd.Series, digits: int = 4) -> str:
    values = values.dropna().astype(float)
    if values.empty:
        return "–"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.{digits}f} (n={len(values)})"


def _column(table: pd.DataFrame, key: str) -> str:
    """The csv column of a metric or param (`dvc exp show` names params bare and may prefix metrics)."""
    matches = [c for c in table.columns if c == key or c.endswith(f":{key}")]
    if not matches:
        raise KeyError(f"no column {key!r} in dvc exp show (columns: {', '.join(table.columns)})")
    return matches[0]


def labs_table(table: pd.DataFrame) -> dict[str, dict[str, str]]:
    """mean ± std over seeds per model: test accuracy and training time (chars), test CER (lines)."""
    arch, head, line_arch = (_column(table, k) for k in ("model.arch", "line_model.head", "line_model.arch"))
    char_seed, line_seed = _column(table, "train_cnn.seed"), _column(table, "train_line_cnn.seed")
    overlap = _column(table, "emnist_lines.max_overlap")
    rows: dict[str, dict[str, str]] = {}
    default_lines = (table[line_arch] == "ctc") & (table[head] == "lstm") & (table[overlap].astype(float) > 0)
    for name in ("mlp", "cnn", "resnet"):
        runs = table[default_lines & (table[arch] == name)].drop_duplicates(char_seed)
        rows[name] = {
            "test_acc": _mean_std(runs[_column(table, "cnn.test_acc")]),
            "train_s": _mean_std(runs["train_cnn_s"], 0),
        }
    cer, greedy = _column(table, "line_cnn.test_cer"), _column(table, "line_cnn.greedy.test_cer")
    line_runs = {
        "LineCNNSimple (no overlap)": table[table[line_arch] == "simple"],
        "LineCNN": table[(table[line_arch] == "ctc") & (table[head] == "none")],
        "LineCNN + LSTM": table[default_lines & (table[arch] == "resnet")],
    }
    for name, runs in line_runs.items():
        runs = runs.drop_duplicates(line_seed)
        rows[name] = {
            "test_cer": _mean_std(runs[cer]),
            "greedy_test_cer": _mean_std(runs[greedy]),
            "train_s": _mean_std(runs["train_line_cnn_s"], 0),
        }
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    parser.add_argument("--quick", action="store_true", help="a tiny recipe: a smoke run of the commands")
    parser.add_argument("--jobs", type=int, default=1, help="queue workers (default 1: the times stay comparable)")
    parser.add_argument("--table-only", action="store_true", help="only read the experiments of WORKDIR")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    head = header(None, argv=[sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    print_header(head)
    path = args.workdir / "repo"
    if args.table_only:
        repo = PipelineRepo(path)
    else:
        if path.exists():
            raise SystemExit(f"error: {path} exists: pass a new WORKDIR, or --table-only to read it")
        repo = PipelineRepo.create(path, recipe(args.quick))
        repo.env["TEXT_RECOGNIZER_DOWNLOADS"] = str(REPO / "data" / "downloads")  # the package cache, shared
        repo.env["OMP_NUM_THREADS"] = "1"  # a contended 2-core machine stalls with 2 threads per process
        run_all(repo, args.seeds, args.jobs)
    table = experiments(repo)
    rows = labs_table(table)
    print("\n| model | test accuracy / CER (pick) | greedy CER | train_* stage time (s) |\n| --- | --- | --- | --- |")
    for name, row in rows.items():
        print(
            f"| {name} | {row.get('test_acc', row.get('test_cer'))} | {row.get('greedy_test_cer', '–')} | "
            f"{row['train_s']} |"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"header": head, "results": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
