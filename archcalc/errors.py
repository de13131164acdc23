"""Errors archcalc raises for bad input, and the one helper that raises them.

A message is location, then constraint, then the values, then a hint::

    spec 'net.json': layers[3] (name="conv2", type="conv"): stride must be a positive int, got 0

The CLI prints each problem on a line of its own and exits with status 2; anything that is
not an :class:`ArchcalcError` is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Callable


class ArchcalcError(Exception):
    """Base class of every error caused by the user's input (spec, command line, files)."""

    #: The CLI's exit status for this error.
    exit_code = 2

    def __init__(self, *problems: str, omitted: int = 0) -> None:
        super().__init__(*problems)
        self.problems: tuple[str, ...] = problems
        #: Further problems found but not listed (a spec with hundreds of mistakes lists the first ones).
        self.omitted = omitted

    def __str__(self) -> str:
        more = [f"... and {self.omitted} more problem(s) (the first {len(self.problems)} are shown)"] if self.omitted else []
        return "\n".join([*self.problems, *more])


class SpecError(ArchcalcError):
    """The spec is malformed: unknown type, bad attribute, bad reference, cycle."""


class ShapeError(ArchcalcError):
    """The spec is well formed but its shapes do not work out (sizes < 1, mismatched merges)."""


class MissingToolError(ArchcalcError):
    """A program or package archcalc needs for this command is not installed (exit status 3)."""

    exit_code = 3


class RuleError(ValueError):
    """Raised inside an op rule or formula without location; the caller adds where it happened."""


def check(condition: object, message: Callable[[], str], error: type[Exception] = RuleError) -> None:
    """Raise ``error(message())`` unless ``condition`` holds; the message is built only then."""
    if not condition:
        raise error(message())
