"""The op registry. Importing this package registers every op family."""

from __future__ import annotations

from archcalc.ops import conv, linear, merge, norm, pointwise, pool  # noqa: F401  (registers)
from archcalc.ops.base import (
    GLOBAL,
    POINTWISE,
    REGISTRY,
    Cost,
    Example,
    Layer,
    Op,
    Param,
    RunContext,
    Shape,
    Window,
    format_shape,
    get_op,
    register,
)

__all__ = [
    "GLOBAL", "POINTWISE", "REGISTRY", "Cost", "Example", "Layer", "Op", "Param", "RunContext", "Shape",
    "Window", "format_shape", "get_op", "register",
]
