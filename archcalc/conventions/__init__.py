"""Counting conventions: what each tool calls "FLOPs", as presets you can choose and reconcile.

A :class:`Convention` is data: one :class:`Rule` per op type, each a small arithmetic expression
over a layer's :data:`QUANTITIES` (``"macs - bias_adds"``), plus a default for the op types it
does not list. ``archcalc`` (the default, CONVENTIONS.md: multiply-accumulates) and one preset per
peer tool live in this package, one module each defining ``PRESET``; adding a preset for a new
tool is one module. :func:`count` applies a convention to every layer of a network;
:func:`explain` shows one layer's rule with its values.

    >>> import archcalc
    >>> count("lenet5", "archcalc").forward == archcalc.analyze("lenet5").totals.macs
    True
"""

from __future__ import annotations

import ast
import importlib
import math
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from archcalc.errors import ArchcalcError, RuleError
from archcalc.graph import Graph
from archcalc.loading import load
from archcalc.ops import REGISTRY, Layer, Window, get_op
from archcalc.ops.base import BIAS, did_you_mean

#: The names a rule may use, each per sample, what it is.
QUANTITIES: dict[str, str] = {
    "macs": "archcalc's multiply-accumulates of the layer (CONVENTIONS.md)",
    "other_ops": "archcalc's other (element-wise) ops of the layer",
    "outputs": "values of the output",
    "inputs": "values of the first input",
    "all_inputs": "values of all inputs together",
    "n_inputs": "how many inputs the layer takes",
    "bias_adds": "outputs when the layer has a learned bias (conv, transposed conv, linear), else 0",
    "params": "learned parameters",
    "weights": "kernel weights (conv, transposed conv, linear) only",
    "buffers": "buffers (batchnorm's running statistics)",
    "in_channels": "the first input's channels (its first axis)",
    "out_channels": "the output's channels (its first axis)",
    "groups": "the layer's groups attribute, 1 without one",
    "positions": "output values per output channel (1 for a rank-1 output)",
    "in_positions": "input values per input channel (1 for a rank-1 input)",
    "kernel": "values in one window (the product of the kernel) for ops that slide one, else 1",
    "in_shape": "the first input's shape, channels first, without the batch axis (a tuple)",
    "out_shape": "the output's shape (a tuple)",
    "attrs": "the layer's resolved attributes (a dict: attrs['mode'])",
    "input_grad_macs": "archcalc's MACs of the input gradient (as if needed)",
    "weight_grad_macs": "archcalc's MACs of the weight gradient",
    "needs_input_grad": "1 when backward computes the input gradient (an input depends on a learned "
                        "parameter), else 0: frameworks skip the first layer's",
}

#: Functions a rule may call.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "prod": math.prod, "floor": math.floor, "ceil": math.ceil, "min": min, "max": max, "sum": sum,
    "len": len, "int": int, "Fraction": Fraction, "gcd": math.gcd,
}

_ALLOWED_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Call, ast.Name,
    ast.Constant, ast.Subscript, ast.Tuple, ast.Load, ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
    ast.Slice,
)


@dataclass(frozen=True, slots=True)
class Rule:
    """How a tool counts one op type.

    ``forward`` and ``backward`` are expressions over :data:`QUANTITIES` and :data:`FUNCTIONS`,
    each an int per sample: the tool's count of the forward pass and of the backward pass (input
    and weight gradients; ``""`` for a tool that counts no backward). ``note`` says why, where the
    rule is a quirk of the tool.

    Raises:
        RuleError: at construction, for an expression that does not parse or uses another name.
    """

    forward: str
    backward: str = ""
    note: str = ""
    _code: tuple[Any, Any] = field(default=(None, None), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_code", (_compile(self.forward), _compile(self.backward) if self.backward else None))


def _compile(expression: str) -> Any:
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as error:
        raise RuleError(f"rule {expression!r} does not parse: {error.msg}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise RuleError(f"rule {expression!r} uses {type(node).__name__}, which rules may not")
        if isinstance(node, ast.Name) and node.id not in QUANTITIES and node.id not in FUNCTIONS:
            raise RuleError(f"rule {expression!r} uses {node.id!r}, which is no quantity{did_you_mean(node.id, QUANTITIES)}")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
            raise RuleError(f"rule {expression!r} calls something other than {', '.join(FUNCTIONS)}")
    return compile(tree, f"<rule {expression}>", "eval")


@dataclass(frozen=True, slots=True)
class Convention:
    """A tool's way of counting, as a table of per-op rules.

    Attributes:
        name: the preset's key (``--convention NAME``).
        tool: what it reproduces, with the version and the call (``fvcore 0.1.5 FlopCountAnalysis(...).total()``).
        unit: what the tool calls its number (``flops``, ``MACs``, ``mult-adds``).
        summary: one line: what it counts, in its own terms.
        rules: op type -> :class:`Rule`; op types not listed follow ``default``.
        default: the rule of every op type not in ``rules``.
        quirks: (what the tool does, why archcalc considers it wrong with archcalc's own count), each.
        per_layer: the tool breaks its total down per module (its per-layer figures are reproduced).
        scale: multiplies every rule's result (2 for a tool counting 2 FLOPs per multiply-add).
        display: how the tool prints a total, when not as an integer count (Darknet's BFLOPs).
    """

    name: str
    tool: str
    unit: str
    summary: str
    rules: Mapping[str, Rule]
    default: Rule = Rule("0")
    quirks: tuple[tuple[str, str], ...] = ()
    per_layer: bool = True
    scale: int = 1
    display: Callable[[int], str] | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.rules) - set(REGISTRY))
        if unknown:
            raise RuleError(f"convention {self.name!r} has rules for unknown op types: {', '.join(unknown)}")

    def rule(self, op_type: str) -> Rule:
        """The rule for an op type (the default when the convention lists none)."""
        return self.rules.get(op_type, self.default)

    @property
    def anchor(self) -> str:
        """Where its documentation is: a heading of docs/conventions.md."""
        return f"docs/conventions.md#convention-{self.name}"

    @property
    def counts_backward(self) -> bool:
        """Whether the tool counts the backward pass."""
        return any(r.backward for r in (*self.rules.values(), self.default))

    def format(self, value: int) -> str:
        """A total as the tool prints it: ``4,111,512,576 flops``, or the tool's own form."""
        return self.display(value) if self.display else f"{value:,} {self.unit}"


@dataclass(frozen=True, slots=True)
class LayerCount:
    """One layer under a convention: the forward and backward counts for the batch, the rule's text
    (``conv: macs - bias_adds``) and the rule with this layer's values in (per sample)."""

    forward: int
    backward: int
    rule: str
    explained: str


@dataclass(frozen=True, slots=True)
class Counted:
    """A network under a convention: per-layer counts (by layer name, the input node left out)
    and the totals for the batch."""

    convention: Convention
    model: str
    batch: int
    layers: Mapping[str, LayerCount]

    @property
    def forward(self) -> int:
        """The tool's forward total for the batch."""
        return sum(c.forward for c in self.layers.values())

    @property
    def backward(self) -> int:
        """The tool's backward total for the batch (0 for a tool counting none)."""
        return sum(c.backward for c in self.layers.values())

    def per_layer(self) -> dict[str, int]:
        """Forward count by layer name."""
        return {name: c.forward for name, c in self.layers.items()}


def _discover() -> dict[str, Convention]:
    found: dict[str, Convention] = {}
    for module in pkgutil.iter_modules(__path__):
        preset = getattr(importlib.import_module(f"{__name__}.{module.name}"), "PRESET", None)
        if isinstance(preset, Convention):
            if preset.name in found:
                raise RuleError(f"two presets are named {preset.name!r}")
            found[preset.name] = preset
    return dict(sorted(found.items(), key=lambda item: (item[0] != "archcalc", item[0])))


#: The presets by name, ``archcalc`` first.
PRESETS: dict[str, Convention] = {}


def get(name: str | Convention) -> Convention:
    """A preset by name (a Convention is returned as is).

    Raises:
        ArchcalcError: for an unknown name, listing the presets (and the closest).
    """
    if isinstance(name, Convention):
        return name
    if not PRESETS:
        PRESETS.update(_discover())
    try:
        return PRESETS[name]
    except KeyError:
        raise ArchcalcError(f"unknown convention {name!r}{did_you_mean(str(name), PRESETS)}; "
                            f"the presets: {', '.join(PRESETS)}") from None


def presets() -> dict[str, Convention]:
    """Every preset by name, ``archcalc`` first."""
    get("archcalc")
    return dict(PRESETS)


def quantities(op_type: str, layer: Layer, needs_input_grad: bool = True) -> dict[str, Any]:
    """A layer's :data:`QUANTITIES`, per sample."""
    op = get_op(op_type)
    params = op.params(layer)
    cost = op.cost(layer)
    window = op.window(layer)
    backward = op.backward_cost(layer) if hasattr(op, "backward_cost") else None
    outputs = math.prod(layer.out_shape)
    inputs = math.prod(layer.in_shape) if layer.in_shapes else 0
    out_channels = layer.out_shape[0] if layer.out_shape else 1
    in_channels = layer.in_shape[0] if layer.in_shapes and layer.in_shape else 1
    return {
        "macs": cost.macs,
        "other_ops": cost.other_ops,
        "outputs": outputs,
        "inputs": inputs,
        "all_inputs": sum(math.prod(s) for s in layer.in_shapes),
        "n_inputs": len(layer.in_shapes),
        "bias_adds": outputs if any(p.role == BIAS for p in params.values()) else 0,
        "params": sum(p.size for p in params.values() if p.role.learned),
        "weights": sum(p.size for p in params.values() if p.role.kernel),
        "buffers": sum(p.size for p in params.values() if not p.role.learned),
        "in_channels": in_channels,
        "out_channels": out_channels,
        "groups": layer.attrs.get("groups", 1) or 1,
        "positions": outputs // out_channels if len(layer.out_shape) > 1 else 1,
        "in_positions": inputs // in_channels if layer.in_shapes and len(layer.in_shape) > 1 else 1,
        "kernel": math.prod(window.kernel) if isinstance(window, Window) else 1,
        "in_shape": tuple(layer.in_shape) if layer.in_shapes else (),
        "out_shape": tuple(layer.out_shape),
        "attrs": dict(layer.attrs),
        "input_grad_macs": backward.input_grad_macs if backward else 0,
        "weight_grad_macs": backward.weight_grad_macs if backward else 0,
        "needs_input_grad": int(needs_input_grad),
    }


def evaluate(expression: str, code: Any, values: Mapping[str, Any], where: str) -> int:
    """One rule's value for one layer; RuleError (a preset's bug) when it is not an int."""
    value = eval(code, {"__builtins__": {}, **FUNCTIONS}, dict(values))  # noqa: S307 - a preset's own expression
    if isinstance(value, Fraction) and value.denominator == 1:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleError(f"{where}: rule {expression!r} gave {value!r}, not an int")
    return value


def explained(expression: str, values: Mapping[str, Any]) -> str:
    """The expression with the quantities' values in: ``macs - bias_adds`` -> ``118,013,952 - 0``."""
    tree = ast.parse(expression, mode="eval")

    class _Values(ast.NodeTransformer):
        def visit_Subscript(self, node: ast.Subscript) -> Any:
            if isinstance(node.value, ast.Name) and node.value.id == "attrs":
                value = eval(compile(ast.Expression(node), "<attr>", "eval"), {"__builtins__": {}}, dict(values))  # noqa: S307
                return ast.Name(id=repr(value))
            return self.generic_visit(node)

        def visit_Name(self, node: ast.Name) -> Any:
            if node.id in values:
                value = values[node.id]
                return ast.Name(id=f"{value:,}" if isinstance(value, int) else str(value))
            return node

    return ast.unparse(_Values().visit(tree))


def count(model: Any, convention: str | Convention = "archcalc", batch: int = 1) -> Counted:
    """Every layer's count under a convention, for a batch.

    Args:
        model: the network: a Graph, or anything :func:`archcalc.load` takes.
        convention: a preset's name or a :class:`Convention`.
        batch: samples; every count is per sample times the batch (as the tools count a batch).

    Raises:
        ArchcalcError: an unknown convention; ShapeError from the shape pass.
    """
    from archcalc.passes import infer_shapes

    graph: Graph = load(model)
    return count_layers(get(convention), graph, infer_shapes(graph), batch)


def count_layers(preset: Convention, graph: Graph, layers: Mapping[str, Layer], batch: int) -> Counted:
    """:func:`count` on a graph whose shapes are inferred (``layers``, by node name)."""
    from archcalc.passes import input_grad_needed

    needed = input_grad_needed(graph, layers)
    known: dict[tuple[int, bool], LayerCount] = {}
    out: dict[str, LayerCount] = {}
    for node in graph.nodes[1:]:
        layer = layers[node.name]
        key = (id(layer), needed[node.name])
        if key not in known:
            known[key] = _layer_count(preset, node.type, layer, needed[node.name], batch)
        out[node.name] = known[key]
    return Counted(preset, graph.name, batch, out)


def _layer_count(preset: Convention, op_type: str, layer: Layer, needs_input_grad: bool, batch: int) -> LayerCount:
    rule = preset.rule(op_type)
    values = quantities(op_type, layer, needs_input_grad)
    where = f"convention {preset.name!r}, op {op_type!r}"
    forward_code, backward_code = rule._code
    forward = evaluate(rule.forward, forward_code, values, where)
    backward = evaluate(rule.backward, backward_code, values, where) if backward_code else 0
    text = f"{op_type}: {rule.forward}" + (f"; backward {rule.backward}" if rule.backward else "")
    shown = _chain(rule.forward, values, forward, preset.scale)
    if rule.backward:
        shown += f"; backward {_chain(rule.backward, values, backward, preset.scale)}"
    return LayerCount(forward * preset.scale * batch, backward * preset.scale * batch, text, shown)


def _chain(expression: str, values: Mapping[str, Any], result: int, scale: int) -> str:
    """``macs - bias_adds = 118,013,952 - 0 = 118,013,952``, each step shown once; with the scale."""
    steps = [expression, explained(expression, values), f"{result:,}"]
    if scale != 1:
        steps = [f"{scale} x ({steps[0]})", f"{scale} x ({steps[1]})", f"{scale * result:,}"]
    return " = ".join(dict.fromkeys(steps))


def explain(model: Any, layer: str, convention: str | Convention = "archcalc", batch: int = 1) -> str:
    """One layer's rule under a convention with its values: ``fvcore, conv: macs - bias_adds =
    118,013,952 - 0 = 118,013,952 (per sample)``.

    Raises:
        ArchcalcError: an unknown convention or layer name.
    """
    counted = count(model, convention, batch)
    if layer not in counted.layers:
        raise ArchcalcError(f"no layer {layer!r} in {counted.model}{did_you_mean(layer, counted.layers)}")
    found = counted.layers[layer]
    op_type = found.rule.split(":", 1)[0]
    return f"{counted.convention.name}, {op_type}: {found.explained} (per sample)"
