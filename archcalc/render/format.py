"""Number formatting for people: SI counts (powers of 1000) and binary bytes (powers of 1024).

Every function works on exact integers of any size: no value is converted to float, so a count
with hundreds of digits (a huge ``--batch``) is formatted as exactly as a small one.
"""

from __future__ import annotations

import re
from typing import Any

from archcalc.errors import ArchcalcError

_SI_PREFIXES = ("K", "M", "G", "T", "P", "E", "Z", "Y")
_BINARY_PREFIXES = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


#: The most digits a figure may have: Python refuses to turn ints of more than 4,300 digits into
#: text (JSON and CSV output, f-strings), and no real network's figures come near.
MAX_DIGITS = 4000


def check_printable(analysis: Any) -> None:
    """Raise ArchcalcError when a figure of ``analysis`` (an Analysis) has more than :data:`MAX_DIGITS` digits.

    Only an absurd batch gets there: the message says so, naming the model and the batch.
    """
    figures = analysis.totals.to_dict().values()  # every layer's figure is at most its total
    bits = max((abs(value).bit_length() for value in figures if isinstance(value, int)), default=0)
    digits = int(bits * 0.30103) + 1  # log10(2): within one digit
    if digits > MAX_DIGITS:
        raise ArchcalcError(
            f"model {analysis.model!r} at batch {si(analysis.batch)}: a figure would have about {digits:,} digits, "
            f"more than archcalc writes out (at most {MAX_DIGITS:,}); use a smaller --batch"
        )


def decimal(value: int) -> str:
    """``str(value)`` for an int of any size (Python refuses above 4,300 digits by default)."""
    try:
        return str(value)
    except ValueError:  # int_max_str_digits: split in halves, each converted on its own
        if value < 0:
            return "-" + decimal(-value)
        half = max(1, len(format(value, "x")) * 2 // 5)  # about half the decimal digits
        high, low = divmod(value, 10**half)
        return decimal(high) + decimal(low).rjust(half, "0")


def _fixed(numerator: int, denominator: int, digits: int) -> tuple[int, str]:
    """``numerator / denominator`` rounded half to even at ``digits`` decimals: (units, text)."""
    quotient, remainder = divmod(numerator * 10**digits, denominator)
    if 2 * remainder > denominator or (2 * remainder == denominator and quotient % 2):
        quotient += 1
    units, fraction = divmod(quotient, 10**digits)
    text = decimal(units) + (f".{decimal(fraction).rjust(digits, '0')}" if digits else "")
    return units, text


def _scaled(magnitude: int, base: int, prefixes: tuple[str, ...], digits: int) -> tuple[str, str] | None:
    """(mantissa text, prefix) with the mantissa below ``base`` after rounding; None above the last prefix."""
    power = 0
    while power < len(prefixes) and magnitude >= base ** (power + 1):
        power += 1
    while power <= len(prefixes):
        if power == 0:
            return decimal(magnitude), ""
        units, text = _fixed(magnitude, base**power, digits)
        if units < base:
            return text, prefixes[power - 1]
        power += 1  # rounding reached the next prefix: 999.96K is 1.0M
    return None


def _scientific(magnitude: int, digits: int) -> str:
    """``1.2e400``: exact, for values past the largest prefix."""
    exponent = len(decimal(magnitude)) - 1
    units, text = _fixed(magnitude, 10**exponent, digits)
    if units >= 10:  # 9.96e400 rounds to 10.0e400: 1.0e401
        exponent += 1
        _, text = _fixed(magnitude, 10**exponent, digits)
    return f"{text}e{exponent}"


def si(value: int, digits: int = 1) -> str:
    """A count with an SI suffix: ``si(3211264) == '3.2M'``, ``si(1728) == '1.7K'``, ``si(512) == '512'``.

    Trailing zeros are dropped (``si(240000) == '240K'``). Past yotta (10**27 and up) the count
    is written in exact scientific form: ``si(10**400) == '1e400'``.
    """
    sign, magnitude = ("-", -value) if value < 0 else ("", value)
    scaled = _scaled(magnitude, 1000, _SI_PREFIXES, digits)
    if scaled is None:
        mantissa, suffix = _scientific(magnitude, digits).split("e")
        suffix = "e" + suffix
    else:
        mantissa, suffix = scaled
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return sign + mantissa + suffix


def binary_bytes(value: int, digits: int = 1) -> str:
    """Bytes in binary units: ``binary_bytes(12845056) == '12.2 MiB'``, ``binary_bytes(40) == '40 B'``.

    Past yobibytes (2**90 and up) in exact scientific form: ``binary_bytes(10**400) == '1.0e400 B'``.
    """
    sign, magnitude = ("-", -value) if value < 0 else ("", value)
    scaled = _scaled(magnitude, 1024, _BINARY_PREFIXES, digits)
    if scaled is None:
        return f"{sign}{_scientific(magnitude, digits)} B"
    mantissa, suffix = scaled
    return f"{sign}{mantissa} {suffix or 'B'}"


def grouped(value: int) -> str:
    """Thousands separators: ``grouped(138357544) == '138,357,544'``, for an int of any size."""
    text = decimal(value)
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    head = len(digits) % 3 or 3
    return sign + ",".join([digits[:head], *(digits[i:i + 3] for i in range(head, len(digits), 3))])


def shape(dims: tuple[int, ...], batch: int | None = None) -> str:
    """``64x224x224``, with the batch axis first when one is given: ``8x64x224x224``."""
    return "x".join(map(decimal, ((batch,) if batch else ()) + tuple(dims)))


_SENTENCE_END = re.compile(r"(?<=[a-z0-9)\]][.!?])\s+(?=[A-Z])")


def short_description(text: str, limit: int = 80) -> str:
    """The first sentence of ``text``, cut at a word with an ellipsis when longer than ``limit``.

    ``short_description("A net. More.") == 'A net.'``. A period inside parentheses or after
    "et al" does not end the sentence.
    """
    text = " ".join(text.split())
    first = text
    depth = 0
    for position, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth <= 0 and char in ".!?" and _SENTENCE_END.match(text, position + 1) \
                and not text[:position + 1].endswith(("et al.", "e.g.", "i.e.")):
            first = text[:position + 1]
            break
    if len(first) <= limit:
        return first
    cut = first[:limit].rsplit(" ", 1)[0] if " " in first[:limit] else first[:limit - 1]
    return cut.rstrip(" ,;:") + "…"


def ratio(value: Any) -> str:
    """An exact ratio (a Fraction) to two decimals, rounded half up, for ints of any size:
    ``ratio(Fraction(1, 3)) == '0.33x'``."""
    hundredths = (200 * value.numerator + value.denominator) // (2 * value.denominator)
    return f"{grouped(hundredths // 100)}.{hundredths % 100:02d}x"


def figure_text(kind: str, value: Any) -> str:
    """A figure's value as people read it, by its kind (archcalc.figures): counts grouped by
    thousands, bytes in binary units, shapes as ``64x56x56``."""
    if kind == "bytes":
        return binary_bytes(value)
    if kind == "shape":
        return shape(value)
    return grouped(value)
