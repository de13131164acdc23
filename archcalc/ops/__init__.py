"""The op registry. Importing this package imports every module in it, which registers its ops:
a new layer type is one new module here, and nothing else lists it."""

from __future__ import annotations

import importlib
import pkgutil

from archcalc.ops.base import (
    GLOBAL,
    POINTWISE,
    REGISTRY,
    UNKNOWN,
    BackwardCost,
    Cost,
    Example,
    Layer,
    Op,
    Param,
    RunContext,
    Saved,
    Shape,
    Window,
    format_shape,
    get_op,
    register,
)

__all__ = [
    "BackwardCost", "GLOBAL", "POINTWISE", "REGISTRY", "Cost", "Example", "Layer", "Op", "Param", "RunContext", "Saved", "Shape",
    "UNKNOWN", "Window", "format_shape", "get_op", "register",
]

# Every public module of the package (private ones, such as _torch, need torch and register nothing).
for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
