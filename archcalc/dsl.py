"""The Python DSL: build a spec in code (loops and functions welcome).

    net = Net("tiny", input=(3, 32, 32))
    x = net.conv(6, 5)                 # required attributes in order: filters, kernel
    net.relu()
    with net.block("stage1"):          # names inside get the prefix "stage1."
        a = net.conv(8, 3, padding=1)
        b = net.conv(8, 1, inputs=x)
        net.add(a, b)                  # merge ops take their inputs positionally

Each call returns the new layer's full name, to use as an input later. ``net.graph()``
validates through the same rules as JSON (``archcalc.spec.from_dict``), so a Python spec and
its ``to_json()`` load to identical graphs. A ``.py`` spec file defines ``model = Net(...)``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from archcalc.errors import SpecError
from archcalc.graph import INPUT, Graph
from archcalc.ops import REGISTRY
from archcalc.ops.attrs import REQUIRED
from archcalc.ops.base import did_you_mean
from archcalc.spec import NAME_PREFIX, from_dict

_PACKAGE_DIR = str(Path(__file__).resolve().parent)


class Net:
    """A spec under construction; one method per registered op type."""

    def __init__(self, name: str, input: tuple[int, ...] | list[int], description: str = "") -> None:  # noqa: A002
        self.name = name
        self.input = list(input)
        self.description = description
        self.layers: list[dict[str, Any]] = []
        self._scope: list[str] = []
        self._counters: dict[tuple[tuple[str, ...], str], int] = {}
        self._last = INPUT

    def layer(self, type: str, *inputs: str, name: str | None = None, **attrs: Any) -> str:  # noqa: A002
        """Add a layer of any type; returns its full name. Inputs default to the previous layer."""
        scope = tuple(self._scope)
        if name is None:
            stem = NAME_PREFIX.get(type, type)
            count = self._counters.get((scope, stem), 0) + 1
            self._counters[(scope, stem)] = count
            name = f"{stem}{count}"
        full = ".".join((*scope, name))
        layer: dict[str, Any] = {"type": type, "name": full, **attrs}
        layer["inputs"] = list(inputs) if inputs else [self._last]
        if scope:
            layer["scope"] = list(scope)
        layer["_where"] = _caller()
        self.layers.append(layer)
        self._last = full
        return full

    def __getattr__(self, op_type: str) -> Any:
        if op_type.startswith("_") or op_type not in REGISTRY:
            raise AttributeError(f"Net has no layer type {op_type!r}{did_you_mean(op_type, REGISTRY)}")
        op = REGISTRY[op_type]
        required = [a.name for a in op.attrs if a.default is REQUIRED]
        merges = op.arity[1] != 1

        def add(*args: Any, inputs: str | list[str] | None = None, name: str | None = None, **attrs: Any) -> str:
            if merges:
                refs = list(args)
            else:
                if len(args) > len(required):
                    raise SpecError(
                        f"{_caller()}: {op_type} takes {len(required)} positional attribute(s) "
                        f"({', '.join(required)}), got {len(args)}"
                    )
                attrs.update(zip(required, args))
                refs = [inputs] if isinstance(inputs, str) else list(inputs or [])
            return self.layer(op_type, *refs, name=name, **attrs)

        add.__doc__ = op.__doc__
        return add

    @contextmanager
    def block(self, name: str) -> Iterator[None]:
        """Prefix the names of the layers added inside with ``name.``; nests."""
        self._scope.append(name)
        try:
            yield
        finally:
            self._scope.pop()

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict (flat layers with explicit names and inputs)."""
        spec: dict[str, Any] = {"name": self.name}
        if self.description:
            spec["description"] = self.description
        spec["input"] = self.input
        spec["layers"] = [{k: v for k, v in layer.items() if k != "_where"} for layer in self.layers]
        return spec

    def graph(self, source: str = "") -> Graph:
        """Validate and build the graph, locating problems by the Python line of each call."""
        return from_dict(self.to_dict(), source or f"<Net {self.name}>", [layer["_where"] for layer in self.layers])


def _caller() -> str:
    """``file.py:12`` of the nearest frame outside archcalc."""
    frame = sys._getframe(1)
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(_PACKAGE_DIR):
        frame = frame.f_back
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}" if frame else "<python>"


def load_python(path: Path) -> Graph:
    """Run a ``.py`` spec file and take its ``model`` (a :class:`Net`)."""
    namespace: dict[str, Any] = {"__name__": "__archcalc_spec__", "__file__": str(path)}
    try:
        code = compile(path.read_text(), str(path), "exec")
    except SyntaxError as error:
        raise SpecError(f"spec '{path}': Python syntax error at line {error.lineno}: {error.msg}") from None
    exec(code, namespace)  # noqa: S102 - a spec file is the user's own program
    model = namespace.get("model")
    if not isinstance(model, Net):
        nets = [v for v in namespace.values() if isinstance(v, Net)]
        if len(nets) != 1:
            raise SpecError(f"spec '{path}': define the network as `model = Net(...)` (found {len(nets)} Net objects)")
        model = nets[0]
    return model.graph(str(path))
