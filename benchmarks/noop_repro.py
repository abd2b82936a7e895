"""How long does `dvc repro` take when nothing changed? (target: <= 3 s)

    python benchmarks/noop_repro.py [--repeats 5]

Run it in a checkout whose pipeline is up to date (after `make repro` or `make offline`). It
fails if `dvc status` says a stage would run, since then the timing would not be a no-op.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from machine import header, print_header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    dvc = [sys.executable, "-m", "dvc"]
    status = subprocess.run([*dvc, "status"], capture_output=True, text=True, check=True).stdout
    if "up to date" not in status:
        sys.exit(f"the pipeline is not up to date, so this would not time a no-op:\n{status}")
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = subprocess.run([*dvc, "repro"], capture_output=True, text=True, check=True).stdout
        times.append(time.perf_counter() - start)
        if "Running stage" in out:
            sys.exit(f"dvc repro ran a stage:\n{out}")
    print_header(header())
    print(f"# no-op dvc repro, {args.repeats} runs")
    spread = statistics.stdev(times) if len(times) > 1 else 0.0
    print(f"{statistics.mean(times):.2f} s ± {spread:.2f} s (min {min(times):.2f} s)")


if __name__ == "__main__":
    main()
