"""Declared attributes of ops: name, converter, default, doc.

A converter takes the raw spec value and returns the stored one, or raises ``RuleError``
with a "must be ..., got ..." message. Validation and the docs of each op both read these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from archcalc.errors import RuleError

#: Largest int a spec may give for any size or count (an input axis, kernel, stride, padding,
#: dilation, filters, units, groups...): 2**31 - 1. No real layer comes near it, and it keeps
#: the C kernels' Py_ssize_t (int64) arithmetic safe: a padded size (in + 2 paddings < 2**33)
#: and a dilated span (d*(k-1) + 1 < 2**62) each fit with room to spare. The analysis itself
#: uses exact Python ints, so products of many such values (MACs, parameters) stay exact.
MAX_INT = 2**31 - 1


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


def _in_range(value: Any, minimum: int) -> bool:
    return _is_int(value) and minimum <= value <= MAX_INT


def describe(value: Any, limit: int = 80) -> str:
    """A spec value as JSON-like text for a message, shortened to about ``limit`` characters.

    Never fails: a huge int is shown by its digit count (``str`` refuses over 4300 digits),
    a deep or long list is cut, a non-finite float shows as JSON would not accept it.
    """
    text = _describe(value, 4)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(value: Any, depth: int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value) if value.bit_length() < 256 else f"an int of about {int(value.bit_length() * 0.30103)} digits"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else {"inf": "Infinity", "-inf": "-Infinity"}.get(repr(value), "NaN")
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if depth <= 0:
        return "..."
    if isinstance(value, (list, tuple)):
        items = [_describe(v, depth - 1) for v in value[:8]]
        return "[" + ", ".join(items) + (", ..." if len(value) > 8 else "") + "]"
    if isinstance(value, Mapping):
        items = [f"{_describe(k, 0)}: {_describe(v, depth - 1)}" for k, v in list(value.items())[:8]]
        return "{" + ", ".join(items) + (", ..." if len(value) > 8 else "") + "}"
    return f"a {type(value).__name__}"


_got = describe


def positive_int(value: Any) -> int:
    """A whole number from 1 to ``MAX_INT``."""
    if not _in_range(value, 1):
        raise RuleError(f"must be a positive int{_above_max(value)}, got {_got(value)}")
    return value


def _int_range(value: Any) -> str:
    """``>= 0``, or the whole range when the value broke the upper bound."""
    return f"from 0 to {MAX_INT} (2**31 - 1)" if _too_big(value) else ">= 0"


def _too_big(value: Any) -> str:
    """The bound, named when some int in the value (or its lists) broke it."""
    if isinstance(value, (list, tuple)):
        return next((_too_big(v) for v in value[:6] if _too_big(v)), "")
    return _above_max(value)


def _above_max(value: Any) -> str:
    """The bound, named when the value broke it."""
    return f" <= {MAX_INT} (2**31 - 1)" if _is_int(value) and value > MAX_INT else ""


def ints(minimum: int = 1) -> Callable[[Any], int | tuple[int, ...]]:
    """An int for every axis, or a list of 1 to 3 ints (one per axis), each >= ``minimum``."""
    what = "positive" if minimum == 1 else f">= {minimum}"

    def convert(value: Any) -> int | tuple[int, ...]:
        if _in_range(value, minimum):
            return value
        if isinstance(value, (list, tuple)) and 1 <= len(value) <= 3 and all(_in_range(v, minimum) for v in value):
            return tuple(value)
        raise RuleError(f"must be a {what} int{_too_big(value)} or a list of 1 to 3 of them, got {_got(value)}")

    convert.__doc__ = f"an int {what} (at most 2**31 - 1), or a list of 1 to 3 (one per axis)"
    return convert


def padding(value: Any) -> int | str | tuple[Any, ...]:
    """Padding in any CONVENTIONS form: int, per-axis list, per-side list, pairs, same, valid."""
    if isinstance(value, str) and value in ("same", "valid"):
        return value
    if _in_range(value, 0):
        return value
    if isinstance(value, (list, tuple)) and 1 <= len(value) <= 6:
        if all(_in_range(v, 0) for v in value):
            return tuple(value)
        if len(value) <= 3 and all(
            isinstance(v, (list, tuple)) and len(v) == 2 and all(_in_range(p, 0) for p in v)
            for v in value
        ):
            return tuple(tuple(v) for v in value)
    raise RuleError(
        f"must be an int {_int_range(value)}, a list per axis ([ph, pw]), per side ([top, left, bottom, right]), "
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
    """A finite real number in a range (Infinity and NaN are refused, as JSON refuses them)."""

    def convert(value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
        if ok and minimum is not None:
            ok = value > minimum if open_low else value >= minimum
        if ok and maximum is not None:
            ok = value <= maximum
        if not ok:
            low = "" if minimum is None else (f"> {minimum}" if open_low else f">= {minimum}")
            high = "" if maximum is None else f"<= {maximum}"
            bounds = " and ".join(b for b in (low, high) if b)
            raise RuleError(f"must be a finite number{' ' + bounds if bounds else ''}, got {_got(value)}")
        return value

    return convert


def _finite(value: int | float) -> bool:
    """True for a float that is not inf or NaN, and for an int a float can hold."""
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond 1.8e308
        return False
