"""Number formatting for people: SI counts (powers of 1000) and binary bytes (powers of 1024)."""

from __future__ import annotations

_SI = ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K"))
_BINARY = ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))


def si(value: int, digits: int = 1) -> str:
    """A count with an SI suffix: ``si(3211264) == '3.2M'``, ``si(1728) == '1.7K'``, ``si(512) == '512'``."""
    for scale, suffix in _SI:
        if abs(value) >= scale:
            text = f"{value / scale:.{digits}f}"
            return (text.rstrip("0").rstrip(".") if "." in text else text) + suffix
    return str(value)


def binary_bytes(value: int, digits: int = 1) -> str:
    """Bytes in binary units: ``binary_bytes(12845056) == '12.2 MiB'``, ``binary_bytes(40) == '40 B'``."""
    for scale, suffix in _BINARY:
        if value >= scale:
            return f"{value / scale:.{digits}f} {suffix}"
    return f"{value} B"


def grouped(value: int) -> str:
    """Thousands separators: ``grouped(138357544) == '138,357,544'``."""
    return f"{value:,}"


def shape(dims: tuple[int, ...], batch: int | None = None) -> str:
    """``64x224x224``, with the batch axis first when one is given: ``8x64x224x224``."""
    return "x".join(map(str, ((batch,) if batch else ()) + tuple(dims)))
