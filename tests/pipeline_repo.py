"""A throw-away copy of this project as its own git repo, to run the real DVC pipeline in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = [
    "stages",
    "text_recognizer",
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvcignore",
]


class PipelineRepo:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {
            **os.environ,
            # the copy's own code, and the venv's python for `python stages/...`
            "PYTHONPATH": str(path),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "TEXT_RECOGNIZER_DOWNLOADS": str(path / "data" / "downloads"),
            "GIT_AUTHOR_NAME": "test",
            "GIT_AUTHOR_EMAIL": "test@example.invalid",
            "GIT_COMMITTER_NAME": "test",
            "GIT_COMMITTER_EMAIL": "test@example.invalid",
        }

    @classmethod
    def create(cls, path: Path, overrides: dict[str, dict]) -> PipelineRepo:
        path.mkdir(parents=True, exist_ok=True)
        for name in PROJECT_FILES:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, path / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif src.exists():
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, path / name)
        repo = cls(path)
        repo.set_params(overrides)
        shutil.copy2(ROOT / ".gitignore", path / ".gitignore")  # the project's own, as a clone has it
        repo.git("init", "-q", "-b", "main")
        repo.git("add", "-A")
        repo.git("commit", "-qm", "pipeline under test")
        return repo

    def set_params(self, overrides: dict[str, dict]) -> None:
        params_file = self.path / "params.yaml"
        params = yaml.safe_load(params_file.read_text())
        for section, values in overrides.items():
            params[section].update(values)
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.path, env=self.env, check=True, capture_output=True, text=True
        ).stdout

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "dvc", *args], cwd=self.path, env=self.env, capture_output=True, text=True
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"dvc {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result


def ran_stages(output: str) -> set[str]:
    """Stages DVC says it ran (`Running stage 'x':`)."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}
