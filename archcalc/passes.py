"""Passes over a graph: shapes, parameters, costs, memory and receptive fields.

Each pass is a plain function over ``graph.nodes`` in order that calls the op's rule; a new
op changes no pass. :func:`analyze` composes them into a :class:`~archcalc.report.Analysis`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from archcalc import figures, formulas
from archcalc.errors import RuleError, ShapeError, SpecError, check
from archcalc.figures import LayerFacts
from archcalc.graph import Graph
from archcalc.loading import load
from archcalc.ops import GLOBAL, POINTWISE, Cost, Layer, get_op
from archcalc.report import Analysis, LayerReport, ReceptiveField, Totals


def _attrs_key(op_type: str, attrs: Mapping[str, Any]) -> tuple[Any, ...]:
    """A key equal for equal attributes of one op type; the value's type too: 1 and 1.0 are equal
    keys but print differently. Hashing it raises TypeError for an unhashable value."""
    return (op_type, *((name, type(value), value) for name, value in attrs.items()))


def infer_shapes(graph: Graph) -> dict[str, Layer]:
    """Resolve every node's attributes and output shape; stops at the first shape error.

    Raises:
        ShapeError: naming the layer, the axis and the arithmetic that failed.
    """
    layers = {graph.nodes[0].name: Layer({}, (), graph.input_shape)}
    # Nodes of one type with equal attributes and input shapes (a repeated block's layers) share
    # one Layer: its rules then run once, and a long network holds one copy of each.
    known: dict[tuple[Any, ...], Layer] = {}
    # equal resolved attributes (the same conv at another input size) are held once too
    resolved: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for node in graph.nodes[1:]:
        in_shapes = tuple(layers[ref].out_shape for ref in node.inputs)
        try:
            key = (in_shapes, *_attrs_key(node.type, node.attrs))
            hash(key)
        except TypeError:  # an unhashable attribute value: no sharing for this node
            key = None
        layer = known.get(key) if key is not None else None
        if layer is None:
            try:
                layer = get_op(node.type).infer(node.attrs, in_shapes)
            except RuleError as error:
                prefix = f"spec '{graph.source}': " if graph.source else ""
                raise ShapeError(f"{prefix}{node.label()}: {error}") from None
            if key is not None:
                known[key] = layer
                try:
                    attrs = resolved.setdefault(_attrs_key(node.type, layer.attrs), layer.attrs)
                except TypeError:  # an unhashable resolved value
                    attrs = layer.attrs
                if attrs is not layer.attrs:
                    layer = known[key] = Layer(attrs, layer.in_shapes, layer.out_shape)
        layers[node.name] = layer
    return layers


def stored_outputs(graph: Graph, layers: Mapping[str, Layer] | None = None) -> dict[str, bool]:
    """Whether each node's output needs new storage.

    The input does; views (flatten, identity) never do; an in-place op (ReLU, dropout, add) does
    not when it can overwrite an input that nothing else reads, and does when every input it
    could overwrite is also read by another layer (``relu(c1)`` beside ``add(c1, ...)``: c1's
    values must survive, so the ReLU writes new storage, as a framework would). With ``layers``
    (the shapes), it can overwrite only an input of its output's shape: a broadcasting add of a
    (C, 1, 1) tensor cannot hold its (C, H, W) sum in that tensor.
    """
    # a view's values are its input's: follow views back to the tensor they show
    value_of: dict[str, str] = {}
    readers: dict[str, set[str]] = {}  # tensor -> the layers that read it, through views or not
    for node in graph:
        op = get_op(node.type) if node.inputs else None
        value_of[node.name] = value_of[node.inputs[0]] if op is not None and op.view else node.name
        if op is not None and not op.view:
            for ref in node.inputs:
                readers.setdefault(value_of[ref], set()).add(node.name)
    stores = {}
    for node in graph:
        if not node.inputs:
            stores[node.name] = True
            continue
        op = get_op(node.type)
        overwritable = any(
            readers.get(value_of[ref]) == {node.name}
            and (layers is None or layers[ref].out_shape == layers[node.name].out_shape)
            for ref in node.inputs
        )
        stores[node.name] = op.stores_output or (not op.view and not overwritable)
    return stores


def receptive_fields(graph: Graph, layers: Mapping[str, Layer]) -> dict[str, ReceptiveField]:
    """Every node's receptive field w.r.t. the network input (Distill's recurrences).

    In a DAG a node's field is the largest over its input paths (``size``); ``size_min`` is
    the smallest, and ``aligned`` is false where the merged inputs' centres or jumps differ;
    ``uniform`` is false from a layer whose windows differ in size (adaptive pooling) onwards,
    the size then being the largest window's.
    """
    spatial = graph.input_shape[1:]
    whole = ReceptiveField.whole(spatial)
    start = tuple(formulas.INPUT_FIELD for _ in spatial)
    fields: dict[str, ReceptiveField] = {graph.nodes[0].name: ReceptiveField.of(start, start, True)}
    for node in graph.nodes[1:]:
        inputs = [fields[ref] for ref in node.inputs]
        if any(f.is_global for f in inputs):
            fields[node.name] = whole
            continue
        window = get_op(node.type).window(layers[node.name])
        if window == GLOBAL:
            fields[node.name] = whole
            continue
        if len(inputs) == 1:  # a chain: nothing to merge
            largest, smallest, aligned = inputs[0].path_max, inputs[0].path_min, True
        else:
            largest, smallest = _pick(inputs, max), _pick(inputs, min)
            aligned = all(f.centre == inputs[0].centre and f.stride == inputs[0].stride for f in inputs[1:])
        spread = _broadcast_inputs(inputs, layers[node.name]) if window == POINTWISE else []
        # an input broadcast over space (an SE gate) gives its one value to every output: when that
        # value saw the whole input, so does every output; when it did not, the outputs' fields are
        # no sliding window (the gate's region joined to each position's): flagged, the largest shown
        if spread and all(_covers(f, spatial) for f in spread):
            fields[node.name] = whole
            continue
        if window == POINTWISE:
            uniform = all(f.uniform for f in inputs) and not spread
            fields[node.name] = inputs[0] if len(inputs) == 1 else ReceptiveField.of(largest, smallest, aligned, uniform)
        else:
            if len(window.kernel) != len(spatial):
                raise SpecError(f"{node.label()}: a {len(window.kernel)}D window on a {len(spatial)}D input")
            dilated = window.input_dilation or (1,) * len(window.kernel)
            steps = list(zip(window.kernel, window.stride, window.dilation, (b for b, _ in window.padding), dilated))
            grown = tuple(formulas.receptive_field_step(f, *s) for f, s in zip(largest, steps))
            if smallest is not largest:  # in a chain both are one path: step it once
                smallest = tuple(formulas.receptive_field_step(f, *s) for f, s in zip(smallest, steps))
            uniform = window.uniform and all(f.uniform for f in inputs)
            fields[node.name] = ReceptiveField.of(grown, grown if smallest is largest else smallest, aligned, uniform)
    return fields


def _broadcast_inputs(inputs: list[ReceptiveField], layer: Layer) -> list[ReceptiveField]:
    """The fields of the inputs a pointwise merge broadcasts over a spatial axis (size 1 there, the output larger)."""
    if len(inputs) < 2:
        return []
    return [f for f, shape in zip(inputs, layer.in_shapes) if any(n == 1 < o for n, o in zip(shape[1:], layer.out_shape[1:]))]


def _covers(field: ReceptiveField, spatial: tuple[int, ...]) -> bool:
    """Whether unit 0's field spans the whole input on every axis."""
    return all(f.padding >= 0 and f.size - f.padding >= n for f, n in zip(field.path_max, spatial))


def resolution_dependence(
    graph: Graph, layers: Mapping[str, Layer], fields: Mapping[str, ReceptiveField]
) -> tuple[set[str], set[str]]:
    """The nodes whose resolved attributes depend on their input size, and the nodes whose
    receptive field does.

    A layer depends when :meth:`~archcalc.ops.base.Op.size_dependence` names an attribute (a
    "same" padding with a stride: MobileNetV1's first conv pads 0 before at 224 and 1 at 225).
    Its field depends when such an attribute moves the field (the padding before, which sets
    the effective padding and centre), or an input's field depends; a global field never does.
    """
    # a Layer shared by several nodes (see infer_shapes) had equal attributes: ask once
    known: dict[int, tuple[bool, bool]] = {}
    layer_depends: set[str] = set()
    field_depends: set[str] = set()
    for node in graph.nodes[1:]:
        layer = layers[node.name]
        if id(layer) not in known:
            dependences = get_op(node.type).size_dependence(node.attrs, layer)
            known[id(layer)] = (bool(dependences), any(d.moves_field for d in dependences))
        depends, moves_field = known[id(layer)]
        if depends:
            layer_depends.add(node.name)
        if not fields[node.name].is_global and (moves_field or any(ref in field_depends for ref in node.inputs)):
            field_depends.add(node.name)
    return layer_depends, field_depends


def _pick(inputs: list[ReceptiveField], choose: type[max] | type[min]) -> tuple[formulas.Field, ...]:
    """Per axis, the input field with the largest (or smallest) size."""
    paths = [f.path_max if choose is max else f.path_min for f in inputs]
    return tuple(choose(axis, key=lambda field: field.size) for axis in zip(*paths))


def _figures(node: Any, layer: Layer, batch: int, dtype: str) -> tuple[str, tuple[Any, ...]]:
    """One node's summary and its figures for a batch."""
    if not node.inputs:  # the network input: stored, no parameters, no cost
        facts = LayerFacts(layer, {}, Cost(), batch, dtype)
        return "", figures.layer_values(facts)
    op = get_op(node.type)
    facts = LayerFacts(layer, op.params(layer), op.cost(layer), batch, dtype)
    return op.summary(layer), figures.layer_values(facts)


def analyze(model: Any, batch: int = 1, dtype: str = "float32", optimizer: str = "sgd") -> Analysis:
    """Run every pass and collect per-layer figures and totals for a batch.

    Args:
        model: the network: a Graph from :func:`archcalc.load`, or anything it takes.
        batch: samples per batch; MACs and activations scale with it, parameters don't.
        dtype: one of ``float32``, ``float16``, ``bfloat16``, ``int8`` (bytes per value).
        optimizer: ``sgd``, ``momentum`` or ``adam``, for the training-memory total.

    Raises:
        ShapeError: at the first layer whose shapes do not work out.
        ArchcalcError: for a bad batch, dtype or optimizer.
    """
    check(
        isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1,
        lambda: f"batch must be a positive int, got {batch!r}",
        SpecError,
    )
    check(
        dtype in formulas.DTYPE_BYTES,
        lambda: f"dtype must be one of {', '.join(formulas.DTYPE_BYTES)}, got {dtype!r}",
        SpecError,
    )
    check(
        optimizer in formulas.OPTIMIZER_SLOTS,
        lambda: f"optimizer must be one of {', '.join(formulas.OPTIMIZER_SLOTS)}, got {optimizer!r}",
        SpecError,
    )
    graph = load(model)
    layers = infer_shapes(graph)
    fields = receptive_fields(graph, layers)
    layer_depends, field_depends = resolution_dependence(graph, layers, fields)
    marked: dict[int, ReceptiveField] = {}  # one marked copy of a field shared by several nodes
    rows = []
    # a Layer shared by several nodes (see infer_shapes) has its figures worked out once
    known: dict[int, tuple[str, tuple[Any, ...]]] = {}
    stores = stored_outputs(graph, layers)
    for node in graph:
        layer = layers[node.name]
        summary, values = known.get(id(layer)) or known.setdefault(id(layer), _figures(node, layer, batch, dtype))
        field = fields[node.name]
        if node.name in field_depends:
            field = marked.get(id(field)) or marked.setdefault(id(field), replace(field, resolution_dependent=True))
        rows.append(LayerReport(node.name, node.type, node.inputs, node.scope, summary, layer.attrs, stores[node.name],
                                field, values, resolution_dependent=node.name in layer_depends))
    totals = Totals(figures.totals(rows, batch, dtype, optimizer))
    return Analysis(graph.name, graph.input_shape, batch, dtype, optimizer, tuple(rows), totals, graph.description, graph.warnings)
