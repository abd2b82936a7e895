"""What every stage script shares: logging, and bad input reported in one line, not a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from text_recognizer.params import ParamError, from_dict, load_params

T = TypeVar("T")


def section(cls: type[T], name: str, params_file: str = "params.yaml") -> T:
    return from_dict(cls, name, load_params(params_file).get(name))


def run(main: Callable[[list[str]], None]) -> None:
    """Run a stage's main; expected failures exit 1 with a clear message and no traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main(sys.argv[1:])
    except (ParamError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except RuntimeError as err:  # download failures and other reported errors
        if type(err).__module__.startswith("text_recognizer"):
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        raise
