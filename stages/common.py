"""What every stage script shares: params checked whole, inputs checked, and the project's errors in one line.

Only the project's own errors (text_recognizer.errors, or any exception class defined in
text_recognizer or a stage script) become `error: ...` lines: they are things a user can fix.
Anything else, a shape bug in torch or numpy say, is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from text_recognizer.errors import is_project_error
from text_recognizer.io import require_file, require_h5
from text_recognizer.params import ParamError, load_all

T = TypeVar("T")
__all__ = ["require_file", "require_h5", "run", "section"]


def section(cls: type[T], name: str, params_file: str = "params.yaml") -> T:
    """One section of params.yaml, after checking all of it: a bad value anywhere stops any stage."""
    value = getattr(load_all(params_file), name)
    if not isinstance(value, cls):
        raise ParamError(f"section '{name}' holds {type(value).__name__}, not {cls.__name__}")
    return value


def run(main: Callable[[list[str]], None]) -> None:
    """Run a stage's main; the project's errors exit 1 with one `error:` line per problem, no traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    try:
        main(sys.argv[1:])
    except Exception as err:
        if not is_project_error(err):
            raise
        for problem in getattr(err, "problems", None) or [str(err)]:
            print(f"error: {problem}", file=sys.stderr)
        sys.exit(1)
    # In `dvc repro` output and `dvc queue logs`: how benchmarks/labs.py times each network's training
    print(f"stage {Path(sys.argv[0]).stem} took {time.perf_counter() - started:.1f} s", flush=True)
