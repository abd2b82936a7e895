"""The project's own errors: what a user can fix, reported by the stages in one line, no traceback.

Anything else (a shape bug in torch or numpy, h5py failing on a file nobody checked) is a bug
or a surprise and keeps its traceback (stages/common.py `run`). Each class also derives from
the built-in error it refines, so `except ValueError` / `except FileNotFoundError` still work.
"""

from __future__ import annotations


class ProjectError(Exception):
    """Base of the errors this project raises on purpose, with a message meant for the user."""


class InputError(ProjectError, ValueError):
    """Bad input the user can fix: a malformed or stale file, a value out of range."""


class MissingInputError(ProjectError, FileNotFoundError):
    """An input file does not exist; the message names the stage that makes it."""


class ParamError(InputError):
    """params.yaml is wrong: one message per problem (`problems`), each naming its key."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)

    def __reduce__(self) -> tuple[type[ParamError], tuple[str, ...]]:
        return type(self), tuple(self.problems)  # pickles with every problem (DDP children, spawn)


def is_project_error(err: BaseException) -> bool:
    """True for a ProjectError, or any exception class defined in text_recognizer or a stage script.

    The module test covers project classes that predate ProjectError (e.g. CheckpointError) and
    exceptions defined in the stage scripts themselves (module `__main__` or `common`).
    """
    module = type(err).__module__.partition(".")[0]
    return isinstance(err, ProjectError) or module in ("text_recognizer", "__main__", "common")
