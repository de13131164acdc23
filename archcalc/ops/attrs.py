"""Declared attributes of ops: name, converter, default, doc.

A converter takes the raw spec value and returns the stored one, or raises ``RuleError``
with a "must be ..., got ..." message. Validation and the docs of each op both read these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from archcalc.errors import RuleError


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Marks an attribute that has no default.
REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Attr:
    """One declared attribute of an op."""

    name: str
    convert: Callable[[Any], Any]
    default: Any = REQUIRED
    doc: str = ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _got(value: Any) -> str:
    return repr(value) if isinstance(value, str) else _json_text(value)


def _json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_got(v) for v in value) + "]"
    return str(value)


def positive_int(value: Any) -> int:
    """A whole number >= 1."""
    if not _is_int(value) or value < 1:
        raise RuleError(f"must be a positive int, got {_got(value)}")
    return value


def ints(minimum: int = 1) -> Callable[[Any], int | tuple[int, ...]]:
    """An int for every axis, or a list of 1 to 3 ints (one per axis), each >= ``minimum``."""
    what = "positive" if minimum == 1 else f">= {minimum}"

    def convert(value: Any) -> int | tuple[int, ...]:
        if _is_int(value) and value >= minimum:
            return value
        if (
            isinstance(value, (list, tuple))
            and 1 <= len(value) <= 3
            and all(_is_int(v) and v >= minimum for v in value)
        ):
            return tuple(value)
        raise RuleError(f"must be a {what} int or a list of 1 to 3 of them, got {_got(value)}")

    convert.__doc__ = f"an int {what}, or a list of 1 to 3 (one per axis)"
    return convert


def padding(value: Any) -> int | str | tuple[Any, ...]:
    """Padding in any CONVENTIONS form: int, per-axis list, per-side list, pairs, same, valid."""
    if value in ("same", "valid"):
        return value
    if _is_int(value) and value >= 0:
        return value
    if isinstance(value, (list, tuple)) and 1 <= len(value) <= 6:
        if all(_is_int(v) and v >= 0 for v in value):
            return tuple(value)
        if len(value) <= 3 and all(
            isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_int(p) and p >= 0 for p in v)
            for v in value
        ):
            return tuple(tuple(v) for v in value)
    raise RuleError(
        "must be an int >= 0, a list per axis ([ph, pw]), per side ([top, left, bottom, right]), "
        f'[before, after] pairs per axis, "same" or "valid", got {_got(value)}'
    )


def optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``convert``, or null."""

    def convert_optional(value: Any) -> Any:
        return None if value is None else convert(value)

    return convert_optional


def boolean(value: Any) -> bool:
    """true or false."""
    if not isinstance(value, bool):
        raise RuleError(f"must be true or false, got {_got(value)}")
    return value


def number(minimum: float | None = None, maximum: float | None = None, open_low: bool = False) -> Callable[[Any], float]:
    """A real number in a range."""

    def convert(value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and minimum is not None:
            ok = value > minimum if open_low else value >= minimum
        if ok and maximum is not None:
            ok = value <= maximum
        if not ok:
            low = "" if minimum is None else (f"> {minimum}" if open_low else f">= {minimum}")
            high = "" if maximum is None else f"<= {maximum}"
            bounds = " and ".join(b for b in (low, high) if b)
            raise RuleError(f"must be a number{' ' + bounds if bounds else ''}, got {_got(value)}")
        return value

    return convert
