"""The Python DSL: build a spec in code (loops and functions welcome).

    net = Net("tiny", input=(3, 32, 32))
    x = net.conv(6, 5)                 # required attributes in order: filters, kernel
    net.relu()                         # optional attributes by keyword only: net.dropout(p=0.2)
    with net.block("stage1"):          # names inside get the prefix "stage1."
        a = net.conv(8, 3, padding=1)
        b = net.conv(8, 1, inputs=x)   # reads x, not the previous layer
        net.add(a, b)                  # merge ops take their inputs positionally...
    branches = [net.conv(4, 1, inputs="input", name=f"b{i}") for i in range(3)]
    net.concat(*branches)              # ...or as one list, or as inputs=[...]

Each call returns the new layer's full name, to use as an input later; ``"input"`` is the
network input (also inside ``block``, which only prefixes names). ``net.graph()``
validates through the same rules as JSON (``archcalc.spec.from_dict``), so a Python spec and
its ``to_json()`` load to identical graphs. A ``.py`` spec file defines ``model = Net(...)``.

A ``.py`` spec is a Python program: loading it runs it with your rights. Load only files you
have read (JSON specs never execute anything).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from archcalc.errors import ArchcalcError, SpecError
from archcalc.graph import INPUT, Graph
from archcalc.ops import REGISTRY
from archcalc.ops.attrs import REQUIRED, describe
from archcalc.ops.base import did_you_mean
from archcalc.spec import MAX_LAYERS, auto_name, from_dict, name_problem, quote, stem_of

_PACKAGE_DIR = str(Path(__file__).resolve().parent)


class Net:
    """A spec under construction; one method per registered op type."""

    def __init__(self, name: str, input: tuple[int, ...] | list[int], description: str = "") -> None:  # noqa: A002
        """Start a spec; values are checked by :meth:`graph` (``Net("t", input=5)`` is reported there)."""
        self.name = name
        self.input = list(input) if isinstance(input, (list, tuple)) else input
        self.description = description
        self.layers: list[dict[str, Any]] = []
        self._scope: list[str] = []
        self._counters: dict[tuple[tuple[str, ...], str], int] = {}
        self._taken: set[str] = {INPUT}
        self._last = INPUT
        #: A block's full name -> its last layer, so that a block's name reads its output (as in JSON).
        self._block_outputs: dict[str, str] = {}

    def layer(self, type: str, *inputs: Any, name: str | None = None, **attrs: Any) -> str:  # noqa: A002
        """Add a layer of any type; returns its full name.

        The layers it reads are given positionally or as ``inputs=`` (a name or a list of names;
        one positional list also works), default the previous layer; ``"input"`` is the network
        input. Unnamed layers are named as the JSON builder names them (``archcalc.spec.auto_name``).

        Raises:
            SpecError: inputs given both positionally and as ``inputs=`` (located at the calling line).
        """
        refs = _inputs(type, inputs, attrs.pop("inputs", None))
        if isinstance(refs, list):
            refs = [self._block_outputs.get(r, r) if isinstance(r, str) and r not in self._taken else r for r in refs]
        scope = tuple(self._scope)
        if name is None and isinstance(type, str):
            name = auto_name(self._counters, self._taken, scope, stem_of(type))
        full: Any = ".".join((*scope, name)) if isinstance(name, str) else name
        if isinstance(full, str):
            self._taken.add(full)
        layer: dict[str, Any] = {"type": type, "name": full, **attrs}
        layer["inputs"] = [self._last] if refs is None else refs
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
        optional = [a.name for a in op.attrs if a.default is not REQUIRED]
        merges = op.arity[1] != 1

        def add(*args: Any, inputs: Any = None, name: str | None = None, **attrs: Any) -> str:
            if merges:  # a merge's positional arguments are the layers it reads
                return self.layer(op_type, *args, inputs=inputs, name=name, **attrs)
            if len(args) > len(required):
                raise SpecError(f"{_caller()}: {self._positional_problem(op_type, required, optional, args)}")
            twice = [attr for attr in required[: len(args)] if attr in attrs]
            if twice:
                raise SpecError(f"{_caller()}: {op_type} got two values for {twice[0]!r} (positional and keyword)")
            attrs.update(zip(required, args))
            return self.layer(op_type, inputs=inputs, name=name, **attrs)

        add.__doc__ = op.__doc__
        return add

    def _positional_problem(self, op_type: str, required: list[str], optional: list[str], args: tuple[Any, ...]) -> str:
        """Why ``args`` are too many positional arguments for ``op_type``, and what to write instead:
        required attributes may be positional, optional ones are keyword-only."""
        extra = args[len(required):]
        if required:
            plural = "s" if len(required) > 1 else ""
            head = f"{op_type} takes {len(required)} positional attribute{plural} ({', '.join(required)}), got {len(args)}"
        elif optional:
            head = f"{op_type} takes no positional attributes"
        else:
            values = ", ".join(map(_python, args))
            head = f"{op_type} takes no attributes, got {len(args)} positional argument{'s' if len(args) > 1 else ''} ({values})"
        hints = []
        if optional:
            named = ", ".join(f"{attr}={_python(value)}" for attr, value in zip(optional, extra))
            hints.append(f"pass {named} by keyword (optional attributes are keyword-only)")
            unmatched = extra[len(optional):]
            if unmatched:
                hints.append(f"{', '.join(map(_python, unmatched))} match{'es' if len(unmatched) == 1 else ''} no attribute")
        layer = next((v for v in extra if isinstance(v, str) and v in self._taken), None)
        if layer is not None:
            hints.append(f"to read layer {layer!r}, pass inputs={layer!r}")
        return head + (": " if optional else "; ") + "; ".join(hints) if hints else head

    @contextmanager
    def block(self, name: str) -> Iterator[None]:
        """Prefix the names of the layers added inside with ``name.``; nests.

        After the block, its full name (``stage1``, ``stage1.unit2``) as an input reads its last
        layer, as a JSON block instance's name does.

        Raises:
            SpecError: ``name`` is not a valid name (located at the calling line).
        """
        problem = name_problem(name, "block name")
        if problem:
            raise SpecError(f"{_caller()}: {problem}")
        self._scope.append(name)
        full, count = ".".join(self._scope), len(self.layers)
        try:
            yield
        finally:
            self._scope.pop()
        if len(self.layers) > count:
            self._block_outputs[full] = self._last

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict (flat layers with explicit names and inputs)."""
        spec: dict[str, Any] = {"name": self.name}
        if self.description:
            spec["description"] = self.description
        spec["input"] = self.input
        spec["layers"] = [{k: v for k, v in layer.items() if k != "_where"} for layer in self.layers]
        return spec

    def graph(self, source: str = "", max_layers: int = MAX_LAYERS) -> Graph:
        """Validate and build the graph, locating problems by the Python line of each call.

        Raises:
            SpecError: every problem, each located at its ``file.py:line``.
        """
        source = source or f"<Net {describe(self.name, 60)}>"
        return from_dict(self.to_dict(), source, [layer["_where"] for layer in self.layers], max_layers=max_layers)


def _inputs(op_type: Any, positional: tuple[Any, ...], keyword: Any) -> Any:
    """The ``inputs`` of a layer from positional names and ``inputs=``: a list of names, None for
    the default (the previous layer), or a malformed value as given (the spec check reports it)."""
    if positional and keyword is not None:
        raise SpecError(f"{_caller()}: {op_type} got its inputs both positionally and as inputs=; give them one way")
    if len(positional) == 1 and isinstance(positional[0], (list, tuple)):
        keyword = positional[0]  # model.concat(branches): one list of names
    elif positional:
        return list(positional)
    if keyword is None:
        return None
    return list(keyword) if isinstance(keyword, (list, tuple)) else [keyword] if isinstance(keyword, str) else keyword


def _python(value: Any) -> str:
    """A value as Python source for a hint (``True``, ``'same'``, ``0.2``), shortened."""
    return repr(value) if isinstance(value, (bool, type(None))) else describe(value, 40)


def _caller() -> str:
    """``file.py:12`` of the nearest frame outside archcalc."""
    frame = sys._getframe(1)
    while frame is not None and (
        frame.f_code.co_filename == contextlib.__file__
        or str(Path(frame.f_code.co_filename).resolve()).startswith(_PACKAGE_DIR)
    ):
        frame = frame.f_back
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}" if frame else "<python>"


def load_python(path: Path, source: bytes | None = None, max_layers: int = MAX_LAYERS) -> Graph:
    """Run a ``.py`` spec file and take its ``model`` (a :class:`Net`).

    The file is Python code and runs with the caller's rights: this is not a sandbox.

    Raises:
        SpecError: the file does not compile, raises (or calls ``sys.exit``) while running,
            defines no single Net, or its net is invalid; one line naming the file and line.
    """
    prefix = f"spec {quote(str(path))}: "
    namespace: dict[str, Any] = {"__name__": "__archcalc_spec__", "__file__": str(path)}
    try:
        code = compile(path.read_bytes() if source is None else source, str(path), "exec")
    except SyntaxError as error:  # also a file that is not UTF-8 (without a coding line)
        raise SpecError(f"{prefix}Python syntax error{f' at line {error.lineno}' if error.lineno else ''}: {_clean(error.msg)}") from None
    except (ValueError, OSError) as error:  # NUL bytes; a file gone since it was found
        raise SpecError(f"{prefix}cannot be compiled: {_clean(str(error))}") from None
    try:
        exec(code, namespace)  # noqa: S102 - a spec file is the user's own program
    except SystemExit as stop:
        raise SpecError(
            f"{prefix}{_where_in(stop, path)}the spec called sys.exit({describe(stop.code)}); "
            "a spec file defines `model = Net(...)` and must not exit"
        ) from None
    except ArchcalcError as error:
        raise SpecError(*(p if p.startswith(prefix) else prefix + p for p in error.problems)) from None
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # any exception a spec raises, its own BaseException subclasses too
        raise SpecError(f"{prefix}{_where_in(error, path)}{type(error).__name__}: {_clean(str(error))}") from None
    model = namespace.get("model")
    if not isinstance(model, Net):
        nets = [v for v in namespace.values() if isinstance(v, Net)]
        if len(nets) != 1:
            raise SpecError(f"{prefix}define the network as `model = Net(...)` (found {len(nets)} Net objects)")
        model = nets[0]
    try:
        return model.graph(str(path), max_layers=max_layers)
    except ArchcalcError:
        raise
    except Exception as error:  # a spec that tampered with the Net's own state (model.layers = None)
        raise SpecError(f"{prefix}the model's layers cannot be read ({type(error).__name__}: {_clean(str(error))}); "
                        "build it with Net's methods only") from None


def _where_in(error: BaseException, path: Path) -> str:
    """``net.py:12: ``, the last line of the spec file the exception passed through."""
    line = None
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == str(path):
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return f"{path.name}:{line}: " if line is not None else ""


def _clean(text: str, limit: int = 300) -> str:
    """A message from user code on one printable line, at most ``limit`` characters."""
    text = " ".join(text.split())
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."
