"""An archcalc network as plain PyTorch source: one ``nn.Module`` class a student can read and train.

The source imports torch alone (never archcalc). ``__init__`` builds one attribute per layer that
holds a module, nested as the layer names are: ``layer1.0.conv1`` becomes ``self.layer1[0].conv1``
(an ``nn.Sequential`` where the children are numbered 0, 1, ..., an ``nn.ModuleDict`` otherwise),
so the state dict's keys are the layer names, as torchvision's are. ``forward`` has one line per
layer, its variable named after the layer; merges are ``torch.cat``, ``+`` and ``*``.

Every op is written from its own :meth:`~archcalc.ops.base.Op.torch_module` rule, archcalc's
statement of the PyTorch layer: torch's own modules are written as constructor calls from their
attributes (and checked by building them again), archcalc's helpers (``Padded``, ``Cat``, ``Crop``,
``Pad``...) as the functional code they run, or, where a layer keeps state a function cannot
(``StochasticDepth``, ``ChannelScale``), as a copy of the helper's source. The few ops whose torch
module is a local class (reshape, permute, slice, average pooling over real inputs) or keeps no
constructor arguments (scale), or that read better another way (flatten to the last axis), have a
rule in :data:`_RULES`.
"""

from __future__ import annotations

import inspect
import keyword
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from archcalc.errors import MissingToolError, SpecError
from archcalc.graph import Graph
from archcalc.ops import get_op
from archcalc.ops.base import Layer

#: How to get torch when it is missing.
PIP_HINT = 'pip install "archcalc[torch]"'


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingToolError(f"exporting to PyTorch needs torch, which is not installed; {PIP_HINT}") from None
    return torch


# --- what one layer becomes -------------------------------------------------------------------

#: ``call(module, inputs)``: the forward expression, given the module's reference (``self.conv1``,
#: None for a layer without a module) and the input variables.
Call = Callable[[Any, list[str]], str]


@dataclass
class Written:
    """One layer as source: the constructor expression of its module (None: functional), its
    forward expression, and the helper classes and imports it needs."""

    init: str | None
    call: Call
    helpers: tuple[str, ...] = ()
    uses_functional: bool = False


def _plain_call(module: str | None, inputs: list[str]) -> str:
    return f"{module}({', '.join(inputs)})"


def _literal(value: Any) -> str:
    """A Python literal of an attribute value: ``3``, ``(3, 1)``, ``1e-05``, ``"bilinear"``, ``float("-inf")``."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float):
        if math.isinf(value):
            return 'float("-inf")' if value < 0 else 'float("inf")'
        if math.isnan(value):
            return 'float("nan")'
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (tuple, list)):
        items = ", ".join(_literal(v) for v in value)
        if isinstance(value, list):
            return f"[{items}]"
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, int):
        return repr(value)
    raise TypeError(f"no literal for {value!r}")


#: Attributes that take an int for the same value on every axis.
_PER_AXIS = {"kernel_size", "stride", "padding", "dilation", "output_padding", "output_size"}
#: Constructor arguments never written (they do not change what the layer computes or holds).
_SKIPPED = {"device", "dtype", "inplace", "min_value", "max_value", "return_indices", "recompute_scale_factor"}


def _torch_call(module: Any, prefix: str = "nn.") -> str:
    """``nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)``: a module's constructor call from its
    attributes, required arguments positional, others only where they differ from the default.

    Raises:
        TypeError: the module keeps no attribute for an argument it was given (a bug to fix here).
    """
    cls = type(module)
    positional, keywords = [], []
    for name, parameter in list(inspect.signature(cls.__init__).parameters.items())[1:]:
        if name in _SKIPPED or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if not hasattr(module, name):
            raise TypeError(f"{cls.__name__} keeps no attribute {name!r}")
        value = getattr(module, name)
        if isinstance(parameter.default, bool) and not isinstance(value, bool):  # bias=: a Parameter or None
            value = value is not None
            if name == "bias" and (getattr(module, "affine", True) is False or getattr(module, "elementwise_affine", True) is False):
                continue  # no affine part: bias says nothing
        if name in _PER_AXIS and isinstance(value, tuple) and value and len(set(value)) == 1 and isinstance(value[0], int):
            value = value[0]
        if name == "normalized_shape" and isinstance(value, tuple) and len(value) == 1:
            value = value[0]
        if name == "stride" and _same(value, getattr(module, "kernel_size", None)) and parameter.default is None:
            continue  # a pool's stride defaults to its kernel
        if parameter.default is parameter.empty:
            if parameter.kind == parameter.KEYWORD_ONLY or keywords:
                keywords.append(f"{name}={_literal(value)}")
            else:
                positional.append(_literal(value))
        elif not _same(value, parameter.default):
            keywords.append(f"{name}={_literal(value)}")
    return f"{prefix}{cls.__name__}({', '.join(positional + keywords)})"


def _same(value: Any, default: Any) -> bool:
    """Whether an attribute equals its default (0 and (0, 0), 1.0 and 1 alike)."""
    return _normal(value) == _normal(default)


def _normal(value: Any) -> Any:
    """A per-axis tuple of one value as that value: torch keeps ``padding=1`` as 1 or (1, 1)."""
    if isinstance(value, (tuple, list)) and value and all(v == value[0] for v in value) and not isinstance(value[0], (tuple, list)):
        return value[0]
    return value


def _check_rebuilt(original: Any, text: str, namespace: Mapping[str, Any]) -> None:
    """Build ``text`` again (on the meta device) and compare it with ``original``: every public
    attribute, and the names and shapes of parameters and buffers. A difference is a bug here."""
    torch = _torch()
    with torch.device("meta"):
        rebuilt = eval(text, dict(namespace))

    def state(module: Any) -> tuple[Any, ...]:
        public = {k: _normal(v) for k, v in vars(module).items() if not k.startswith("_")}
        tensors = [(n, tuple(t.shape)) for n, t in (*module.named_parameters(), *module.named_buffers())]
        return type(module), public, tensors

    if state(rebuilt) != state(original):
        raise TypeError(f"writing {type(original).__name__} as {text} loses an attribute: {state(original)} != {state(rebuilt)}")


def _is_torch_builtin(module: Any) -> bool:
    return type(module).__module__.startswith("torch.nn.modules")


# helpers of archcalc/ops/_torch.py, rendered


def _write_module(module: Any, layer: Layer) -> Written:
    """The generic rule: a layer from its torch module (torch's own, or an archcalc helper)."""
    from archcalc.ops import _torch as helpers

    torch = _torch()
    namespace = {"nn": torch.nn, "torch": torch}
    if _is_torch_builtin(module):
        text = _torch_call(module)
        _check_rebuilt(module, text, namespace)
        return Written(text, _plain_call)
    kind = type(module)
    if kind is helpers.Padded:
        inner = _write_module(module.inner, layer)
        pads = tuple(module.pads)
        if not pads or all(p == (0, 0) for p in pads):
            return inner
        conv = isinstance(module.inner, torch.nn.modules.conv._ConvNd)
        if conv and module.value == 0 and all(before == after for before, after in pads) and not any(module.inner.padding):
            module.inner.padding = tuple(before for before, _ in pads)  # a meta copy: fold symmetric padding in
            return _write_module(module.inner, layer)
        order = _literal(helpers.pad_order(pads))
        value = f", value={_literal(float(module.value))}" if module.value != 0 else ""
        return Written(inner.init, lambda m, xs: inner.call(m, [f"F.pad({xs[0]}, {order}{value})"]), inner.helpers, True)
    if kind is helpers.Cat:
        return Written(None, lambda m, xs: f"torch.cat([{', '.join(xs)}], dim=1)")
    if kind is helpers.Sum:
        return Written(None, lambda m, xs: " + ".join(xs))
    if kind is helpers.Product:
        return Written(None, lambda m, xs: " * ".join(xs))
    if kind is helpers.Crop:
        index = ", ".join(_slice_text(s) for s in module.index)
        return Written(None, lambda m, xs: f"{xs[0]}[{index}]")
    if kind is helpers.Pad:
        value = f", value={_literal(float(module.value))}" if module.value else ""
        how = f', mode="{module.mode}"' if module.mode != "constant" else value
        return Written(None, lambda m, xs: f"F.pad({xs[0]}, {_literal(list(module.pads))}{how})", uses_functional=True)
    if kind is helpers.ChannelsFirstLayerNorm:
        inner = _write_module(module.inner, layer)
        return Written(inner.init, lambda m, xs: f"{m}({xs[0]}.movedim(1, -1)).movedim(-1, 1)")
    if kind is helpers.StochasticDepth:
        text = _torch_call(module, prefix="")
        _check_rebuilt(module, text, {**namespace, "StochasticDepth": helpers.StochasticDepth})
        return Written(text, _plain_call, ("StochasticDepth",))
    raise _Unwritable(type(module).__name__)


class _Unwritable(Exception):
    """No rule writes this torch module."""


def _slice_text(part: slice) -> str:
    if part == slice(None):
        return ":"
    start = "" if part.start in (None, 0) else str(part.start)
    stop = "" if part.stop is None else str(part.stop)
    step = "" if part.step in (None, 1) else f":{part.step}"
    return f"{start}:{stop}{step}"


# rules for ops whose torch module is a local class, or whose helper keeps no constructor arguments


def _reshape(layer: Layer, module: Any) -> Written:
    shape = ", ".join(map(str, layer.attrs["shape"]))
    return Written(None, lambda m, xs: f"{xs[0]}.reshape({xs[0]}.shape[0], {shape})")


def _permute(layer: Layer, module: Any) -> Written:
    dims = ", ".join(map(str, layer.attrs["dims"]))
    return Written(None, lambda m, xs: f"{xs[0]}.permute({dims})")


def _slice(layer: Layer, module: Any) -> Written:
    axis = layer.attrs["dim"] - 1
    first, stop, step = slice(layer.attrs["start"], layer.attrs["stop"], layer.attrs["step"]).indices(layer.in_shape[axis])
    part = slice(first, None if stop >= layer.in_shape[axis] else stop, step)
    index = ", ".join([":"] * (axis + 1) + [_slice_text(part)])
    return Written(None, lambda m, xs: f"{xs[0]}[{index}]")


def _avgpool(layer: Layer, module: Any) -> Written:
    if _is_torch_builtin(module) or hasattr(module, "inner"):
        return _write_module(module, layer)
    # the mean over each window's real inputs: pool(pad(x)) / pool(pad(ones)), the equal divisors cancel
    from archcalc.ops import _torch as helpers

    inner = _write_module(module.pool, layer)
    order = _literal(helpers.pad_order(layer.attrs["padding"]))
    return Written(inner.init, lambda m, xs: f"{m}(F.pad({xs[0]}, {order})) / {m}(F.pad(torch.ones_like({xs[0]}[:, :1]), {order}))",
                   uses_functional=True)


def _flatten(layer: Layer, module: Any) -> Written:
    if module.end_dim == len(layer.in_shape):  # resolved to the last axis: written as PyTorch's default, -1
        module.end_dim = -1
    return _write_module(module, layer)


def _scale(layer: Layer, module: Any) -> Written:
    text = f"ChannelScale({layer.in_shape[0]}, {_literal(float(layer.attrs['init']))}, bias={layer.attrs['bias']})"
    return Written(text, _plain_call, ("ChannelScale",))


#: Op types whose torch module the generic rule cannot write, by type.
_RULES: dict[str, Callable[[Layer, Any], Written]] = {
    "reshape": _reshape,
    "permute": _permute,
    "slice": _slice,
    "avgpool": _avgpool,
    "scale": _scale,
    "flatten": _flatten,
}


def write_layer(op_type: str, layer: Layer) -> Written:
    """The source of one resolved layer (its module's constructor and its forward expression).

    Raises:
        SpecError: no rule writes the op's torch module.
    """
    torch = _torch()
    op = get_op(op_type)
    with torch.device("meta"):  # no memory for the weights: only the attributes are read
        module = op.torch_module(layer)
    rule = _RULES.get(op_type, lambda layer, module: _write_module(module, layer))
    try:
        return rule(layer, module)
    except _Unwritable as missing:
        raise SpecError(f"op {op_type!r}: no PyTorch export rule for its torch module {missing}") from None


# --- names ----------------------------------------------------------------------------------------

#: Names the model class and its containers already use, and the source's own names.
_TAKEN_ATTRIBUTES: set[str] = set()
_RESERVED_VARIABLES = {"self", "torch", "nn", "F", "x", "Any", "StochasticDepth", "ChannelScale"}


def _taken_attributes() -> set[str]:
    if not _TAKEN_ATTRIBUTES:
        nn = _torch().nn
        _TAKEN_ATTRIBUTES.update(dir(nn.Module), dir(nn.ModuleDict), dir(nn.Sequential))
    return _TAKEN_ATTRIBUTES


def identifier(name: str, prefix: str = "layer_") -> str:
    """``name`` as a Python identifier, readably: ``layer1.0.conv1`` -> ``layer1_0_conv1``,
    ``branch[pool]`` -> ``branch_pool``, ``0`` -> ``layer_0``, ``lambda`` -> ``lambda_``."""
    text = re.sub(r"\W+", "_", name).strip("_") or "layer"
    if not text.isascii():
        text = re.sub(r"[^0-9A-Za-z_]+", "_", text).strip("_") or "layer"
    if text[0].isdigit():
        text = prefix + text
    if keyword.iskeyword(text) or keyword.issoftkeyword(text):
        text += "_"
    return text


def class_name(model: str) -> str:
    """The class of a model name: ``resnet18`` -> ``Resnet18``, ``inception-naive`` -> ``InceptionNaive``."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", model) if p]
    text = "".join(p[0].upper() + p[1:] for p in parts) or "Model"
    return "Net" + text if text[0].isdigit() else text


def _unique(text: str, used: set[str]) -> str:
    candidate, n = text, 2
    while candidate in used:
        candidate, n = f"{text}_{n}", n + 1
    used.add(candidate)
    return candidate


@dataclass
class _Container:
    """A level of the module tree: children by key (containers or leaves)."""

    children: dict[str, Any] = field(default_factory=dict)
    #: Key of each child container by the name part it was made for.
    containers: dict[str, str] = field(default_factory=dict)

    def sequential(self) -> bool:
        return bool(self.children) and list(self.children) == [str(i) for i in range(len(self.children))]


@dataclass
class _Leaf:
    init: str


@dataclass
class Plan:
    """The whole source, planned: per node its module path (or None) and written form."""

    graph: Graph
    class_name: str
    tree: _Container
    paths: dict[str, tuple[str, ...] | None]
    written: dict[str, Written]
    variables: dict[str, str]

    def module_ref(self, path: tuple[str, ...]) -> str:
        """``self.layer1[0].conv1`` for the path ``("layer1", "0", "conv1")``."""
        text, level = "self", self.tree
        for depth, key in enumerate(path):
            if depth == 0:
                text += f".{key}" if key.isidentifier() else f".get_submodule({_literal(key)})"
            elif level.sequential():
                text += f"[{key}]"
            elif key.isidentifier():
                text += f".{key}"
            else:
                text += f"[{_literal(key)}]"
            child = level.children[key]
            level = child if isinstance(child, _Container) else level
        return text

    def state_key(self, node_name: str, param: str) -> str:
        """The state-dict key of a layer's parameter (``layer1.0.conv1.weight``)."""
        path = self.paths[node_name]
        if path is None:
            raise KeyError(node_name)
        return ".".join((*path, param))


def _key(part: str, used: set[str]) -> str:
    """A tree key: digits stay (a position), other parts become identifiers not already attributes."""
    if part.isdigit() and str(int(part)) == part:
        text = part
    else:
        text = identifier(part)
        if text in _taken_attributes():
            text += "_"
    return _unique(text, used)


def plan(graph: Graph) -> Plan:
    """Plan the source of ``graph``: modules, their places in the tree, forward variables.

    Raises:
        SpecError: an uncounted (``opaque``) layer, or an op no rule can write.
    """
    from archcalc.exporters import refuse_opaque, where
    from archcalc.passes import infer_shapes

    refuse_opaque(graph, "PyTorch")
    layers = infer_shapes(graph)
    written: dict[str, Written] = {}
    cache: dict[tuple[str, Any], Written] = {}
    for node in graph.nodes[1:]:
        layer = layers[node.name]
        signature = (node.type, repr((sorted(layer.attrs.items()), layer.in_shapes)))
        if signature not in cache:
            try:
                cache[signature] = write_layer(node.type, layer)
            except SpecError as error:
                raise SpecError(f"{where(graph, node)}: {error}") from None
        written[node.name] = cache[signature]
    tree = _Container()
    paths: dict[str, tuple[str, ...] | None] = {}
    for node in graph.nodes[1:]:
        if written[node.name].init is None:
            paths[node.name] = None
            continue
        parts = node.name.split(".") if all(node.name.split(".")) else [node.name]
        level, path = tree, []
        for part in parts[:-1]:
            if part not in level.containers:  # a new block: its key, unique among its siblings
                key = _key(part, set(level.children))
                level.children[key] = _Container()
                level.containers[part] = key
            key = level.containers[part]
            path.append(key)
            level = level.children[key]
        key = _key(parts[-1], set(level.children))
        level.children[key] = _Leaf(written[node.name].init)
        paths[node.name] = (*path, key)
    variables = {graph.nodes[0].name: "x"}
    used = set(_RESERVED_VARIABLES)
    for node in graph.nodes[1:]:
        variables[node.name] = _unique(identifier(node.name), used)
    return Plan(graph, class_name(graph.name), tree, paths, written, variables)


# --- the source -----------------------------------------------------------------------------------


def _tree_lines(container: _Container, indent: str) -> list[str]:
    """The constructor of a container: ``nn.Sequential(...)`` or ``nn.ModuleDict({...})``, over lines."""
    inner = indent + "    "
    lines = []
    for key, child in container.children.items():
        value = child.init if isinstance(child, _Leaf) else None
        if container.sequential():
            if value is not None:
                lines.append(f"{inner}{value},")
            else:
                sub = _tree_lines(child, inner)
                lines += [f"{inner}{sub[0]}", *sub[1:-1], f"{sub[-1]},"]
        else:
            if value is not None:
                lines.append(f"{inner}{_literal(key)}: {value},")
            else:
                sub = _tree_lines(child, inner)
                lines += [f"{inner}{_literal(key)}: {sub[0]}", *sub[1:-1], f"{sub[-1]},"]
    if container.sequential():
        return ["nn.Sequential(", *lines, f"{indent})"]
    return ["nn.ModuleDict({", *lines, f"{indent}}})"]


def _counts(graph: Graph) -> tuple[int, int]:
    from archcalc.passes import analyze

    totals = analyze(graph).totals
    return totals.params, totals.buffers


def torch_source(net: Any) -> str:
    """Plain PyTorch source of a network: imports, one ``nn.Module`` class named after the model.

    Args:
        net: anything :func:`archcalc.load` takes (a zoo name, a spec path or dict, a Net, a Graph).

    Returns:
        Python source that imports torch only (never archcalc), whose class's ``forward`` takes
        (N, *input_shape) and returns the last layer's output.

    Raises:
        SpecError: the spec is bad, or a layer cannot be exported (a partial import's ``opaque`` layer).
        MissingToolError: torch is not installed.
    """
    from archcalc.loading import load

    _torch()
    graph = load(net)
    p = plan(graph)
    params, buffers = _counts(graph)
    out_shape = _output_shape(graph)
    helpers = sorted({h for w in p.written.values() for h in w.helpers})
    uses_functional = any(w.uses_functional for w in p.written.values())
    lines = [f'"""{graph.name} as a PyTorch module, written by archcalc from its spec.', ""]
    if graph.description:
        lines += [_wrap_docstring(graph.description), ""]
    lines += [
        f"Input (N, {', '.join(map(str, graph.input_shape))}); output (N, {', '.join(map(str, out_shape))}).",
        f"{params:,} learned parameters and {buffers:,} buffer values, as archcalc counts them.",
        '"""',
        "",
    ]
    if helpers:
        lines += ["from typing import Any", ""]
    lines += ["import torch", "from torch import nn"]
    if uses_functional:
        lines.append("from torch.nn import functional as F")
    lines += ["", ""]
    from archcalc.ops import _torch as torch_helpers

    for helper in helpers:
        lines += [*inspect.getsource(getattr(torch_helpers, helper)).rstrip().splitlines(), "", ""]
    lines += [
        f"class {p.class_name}(nn.Module):",
        f'    """{graph.name}: {len(graph.nodes) - 1} layers."""',
        "",
        "    def __init__(self) -> None:",
        "        super().__init__()",
    ]
    for key, child in p.tree.children.items():
        target = f"self.{key}" if key.isidentifier() else None
        text = [child.init] if isinstance(child, _Leaf) else _tree_lines(child, "        ")
        if target is None:
            lines.append(f"        self.add_module({_literal(key)}, {text[0]}")
            lines += text[1:]
            lines[-1] += ")"
        else:
            lines.append(f"        {target} = {text[0]}")
            lines += text[1:]
    lines += ["", "    def forward(self, x: torch.Tensor) -> torch.Tensor:"]
    read = {ref for node in graph.nodes for ref in node.inputs} | {graph.nodes[-1].name}
    for node in graph.nodes[1:]:
        path = p.paths[node.name]
        module = p.module_ref(path) if path is not None else None
        inputs = [p.variables[ref] for ref in node.inputs]
        unread = "" if node.name in read else "  # noqa: F841 - no later layer reads it"
        lines += wrap(f"        {p.variables[node.name]} = {p.written[node.name].call(module, inputs)}{unread}")
    lines += [f"        return {p.variables[graph.nodes[-1].name]}", ""]
    lines += [
        "",
        'if __name__ == "__main__":',
        f"    model = {p.class_name}().eval()",
        f"    print(model(torch.randn(1, {', '.join(map(str, graph.input_shape))})).shape)",
        "",
    ]
    return "\n".join(lines)


def wrap(line: str, width: int = 120) -> list[str]:
    """A long line broken after commas inside brackets, continuations aligned after the bracket."""
    lines = []
    while len(line) > width:
        stack, cut = [], None
        for i, char in enumerate(line[:width]):
            if char in "([{":
                stack.append(i)
            elif char in ")]}" and stack:
                stack.pop()
            elif char == "," and stack and line[i + 1:i + 2] == " ":
                cut = (i + 1, stack[-1] + 1)
        if cut is None or not line[cut[0]:].strip():
            break
        lines.append(line[:cut[0]])
        line = " " * cut[1] + line[cut[0]:].lstrip()
    return [*lines, line]


def _wrap_docstring(text: str, width: int = 100) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text.replace('"""', "'''").replace("\\", "\\\\"), width))


def _output_shape(graph: Graph) -> tuple[int, ...]:
    from archcalc.passes import infer_shapes

    return infer_shapes(graph)[graph.nodes[-1].name].out_shape


def parameter_names(net: Any) -> dict[str, str]:
    """Executor parameter names (``layer.weight``, as :class:`archcalc.execute.Executor` keys them)
    -> the exported module's state-dict keys."""
    from archcalc.loading import load
    from archcalc.passes import infer_shapes

    graph = load(net)
    p = plan(graph)
    layers = infer_shapes(graph)
    names = {}
    for node in graph.nodes[1:]:
        for name in get_op(node.type).params(layers[node.name]):
            names[f"{node.name}.{name}"] = p.state_key(node.name, name)
    return names


def to_torch(net: Any, path: Any = None, *, weights: Mapping[str, Any] | None = None) -> Any:
    """The network as a torch module in eval mode, built from :func:`torch_source`'s source.

    Args:
        net: anything :func:`archcalc.load` takes.
        path: where to write the source as well (a ``.py`` file), or None.
        weights: parameters to load, as the executor names them (``Executor.params``:
            ``{"layer.weight": array}``) or ``{layer: {role: array}}``; None keeps torch's
            own initialisation. The module takes their dtype (float64 arrays make a float64 module).

    Raises:
        SpecError: as :func:`torch_source`; a missing output directory; a weight for no parameter
            or of the wrong shape.
        MissingToolError: torch is not installed.
    """
    from archcalc.exporters import check_output_path
    from archcalc.loading import load

    _torch()
    graph = load(net)
    target = check_output_path(path, "PyTorch") if path is not None else None
    source = torch_source(graph)
    if target is not None:
        try:
            target.write_text(source)
        except OSError as error:
            raise SpecError(f"PyTorch output path '{target}': {error.strerror or error}") from None
    namespace: dict[str, Any] = {"__name__": f"archcalc_export_{identifier(graph.name)}"}
    exec(compile(source, str(target or f"<archcalc export of {graph.name}>"), "exec"), namespace)
    module = namespace[class_name(graph.name)]()
    if weights is not None:
        load_weights(module, graph, weights)
    return module.eval()


def load_weights(module: Any, net: Any, weights: Mapping[str, Any]) -> None:
    """Copy archcalc weights (the executor's names, or ``{layer: {role: array}}``) into an exported module.

    Raises:
        SpecError: a weight names no parameter, or its shape differs from the parameter's.
    """
    from archcalc.exporters import flat_weights
    from archcalc.loading import load

    torch = _torch()
    graph = load(net)
    names = parameter_names(graph)
    state = module.state_dict()
    flat = flat_weights(graph, weights)
    dtypes = {torch.as_tensor(v).dtype for v in flat.values()}
    if len(dtypes) == 1:
        module.to(dtypes.pop())
        state = module.state_dict()
    with torch.no_grad():
        for key, value in flat.items():
            if key not in names:
                raise SpecError(f"weights: {key!r} is no parameter of the network")
            tensor = state[names[key]]
            value = torch.as_tensor(value)
            if tuple(value.shape) != tuple(tensor.shape):
                raise SpecError(f"weights: {key!r} has shape {tuple(value.shape)}, the parameter {tuple(tensor.shape)}")
            tensor.copy_(value)
