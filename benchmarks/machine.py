"""What every benchmark shares: the header that says where a figure came from, its JSON output, the common
flags, the device's clock, and random line texts.

A figure without its machine, torch version and commit cannot be compared with another, so every script
prints the same header and writes it next to its results: {"header": {...}, "results": {...}}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from text_recognizer.metadata import EMNIST_CLASSES

REPO = Path(__file__).resolve().parent.parent
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


def _output(*cmd: str) -> str | None:
    try:
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def git_commit() -> str:
    """Short HEAD, flagged when tracked files differ from it ("unknown" where there is no git)."""
    commit = _output("git", "rev-parse", "--short", "HEAD")
    if commit is None:
        return "unknown"
    dirty = _output("git", "status", "--porcelain", "--untracked-files=no")
    return commit + (" + uncommitted changes" if dirty else "")


def header(device: Any = None, argv: list[str] | None = None) -> dict[str, Any]:
    """Where and with what a figure was measured: date, command, commit, CPU, Python, and for a torch
    benchmark (device given) torch, its threads and the device. argv: the script and its arguments (default
    sys.argv)."""
    argv = sys.argv if argv is None else argv
    head: dict[str, Any] = {
        "script": Path(argv[0]).name,
        "date": f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        "command": " ".join([Path(argv[0]).name, *argv[1:]]),
        "commit": git_commit(),
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    if device is None:  # a benchmark without torch (noop_repro.py, emnist_lines_speed.py)
        return head
    import torch

    device = torch.device(device)
    head.update(torch=torch.__version__, threads=torch.get_num_threads(), device=str(device))
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        driver = _output("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader")
        head.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            driver=driver.splitlines()[0] if driver else "unknown",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return head


def print_header(head: dict[str, Any]) -> None:
    print(f"# {head['script']}, {head['date']}, commit {head['commit']}")
    print(f"# {head['cpu']}, {head['cpus']} CPUs, load average {head['load_average']}; Python {head['python']}")
    if "torch" in head:
        gpu = f": {head['gpu']}, {head['gpu_memory_gib']} GiB, driver {head['driver']}" if "gpu" in head else ""
        cuda = f", CUDA {head['cuda']}, cuDNN {head['cudnn']}" if "gpu" in head else ""
        print(f"# torch {head['torch']}{cuda}, {head['threads']} threads; device {head['device']}{gpu}")
        if head["device"] == "cpu" and (head["load_average"] or 0) >= 1.0 and head["threads"] > 1:
            print("# WARNING: other jobs seem to share these cores, where torch's threads stall: compare --threads 1")
    print(f"# command: {head['command']}")


def report(head: dict[str, Any], results: dict[str, Any], json_path: Path | None) -> None:
    """Write the header and the results to json_path (if given) as one object."""
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"header": head, "results": results}, indent=1, default=str) + "\n")
        print(f"# wrote {json_path}")


def arguments(script: str, doc: str) -> argparse.ArgumentParser:
    """The flags a torch benchmark takes: where it runs, how big, where the JSON goes, and params overrides."""
    parser = argparse.ArgumentParser(prog=Path(script).name, description=doc.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda if present")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds (figures mean little)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads; on a shared CPU pass 1")
    parser.add_argument("--json", type=Path, default=None, help="also write the header and every figure here")
    parser.add_argument(
        "-S", "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override params.yaml"
    )
    return parser


def override(params: dict[str, Any], items: list[str]) -> dict[str, Any]:
    """params (as read from params.yaml) with each `-S section.key=value` set, the value read as YAML."""
    import yaml

    for item in items:
        key, eq, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not (eq and dot and section and name):
            raise SystemExit(f"-S takes section.key=value, got {item!r}")
        params.setdefault(section, {})[name] = yaml.safe_load(value)
    return params


def start(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, Any, dict[str, Any]]:
    """Parse argv (default sys.argv[1:]), apply --threads and --device, print the header: (args, device, header)."""
    import torch

    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress shows up in logs
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no CUDA device")
    on_gpu = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if on_gpu else "cpu")
    head = header(device, [parser.prog, *argv])
    print_header(head)
    return args, device, head


def sync(device: Any) -> None:
    """Wait for the device's queued work, so that a clock read after it counts that work."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
