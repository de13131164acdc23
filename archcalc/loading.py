"""``archcalc.load``: one entry point for zoo names, spec files, dicts and DSL nets."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archcalc import zoo
from archcalc.dsl import Net, load_python
from archcalc.errors import SpecError
from archcalc.graph import Graph
from archcalc.ops.base import did_you_mean
from archcalc.spec import from_dict, from_json


def load(model: Any) -> Graph:
    """Load a network.

    Args:
        model: a zoo name (``"vgg16"``), a path to a ``.json`` or ``.py`` spec, a spec dict,
            a :class:`~archcalc.dsl.Net`, or a :class:`~archcalc.graph.Graph` (returned as is).

    Raises:
        SpecError: the model cannot be found or its spec is invalid.
    """
    if isinstance(model, Graph):
        return model
    if isinstance(model, Net):
        return model.graph()
    if isinstance(model, Mapping):
        return from_dict(model)
    if not isinstance(model, (str, Path)):
        raise SpecError(f"cannot load a {type(model).__name__}: give a zoo name, a spec path, a dict or a Net")
    path = Path(model)
    if path.suffix in (".json", ".py") or path.is_file():
        if not path.is_file():
            raise SpecError(f"spec file '{path}' does not exist")
        if path.suffix == ".py":
            return load_python(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise SpecError(f"spec file '{path}' cannot be read: {error}") from None
        return from_json(text, str(path))
    if str(model) in zoo.names():
        return zoo.load(str(model))
    raise SpecError(f"no zoo model or spec file {str(model)!r}{did_you_mean(str(model), zoo.names())} (`archcalc list` shows the zoo)")
