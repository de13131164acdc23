"""The shared core of the importers: source layers in, a validated :class:`~archcalc.graph.Graph` out.

An importer reads its format (a traced PyTorch module, an ONNX file, a Caffe prototxt) and calls
:meth:`Builder.add` once per layer with archcalc's op type and attributes; :meth:`Builder.build`
then runs the result through the spec's own validation (:func:`archcalc.spec.from_dict`), so an
imported network obeys every rule a typed one does, and checks what the source says against
what archcalc's rules say (:meth:`Builder.expect`). Ops without a rule are tallied
(:meth:`Builder.unsupported`): the import fails listing all of them, or, with ``partial``,
passes them through as ``opaque`` layers counted as 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from archcalc.errors import ArchcalcError, SpecError
from archcalc.graph import INPUT, Graph
from archcalc.ops import Shape, format_shape, get_op
from archcalc.ops.attrs import MAX_INT
from archcalc.ops.base import MAX_RANK
from archcalc.spec import MAX_LAYERS, MAX_NAME_LENGTH, from_dict, name_problem, quote

#: How many unsupported op types the error lists before counting the rest.
MAX_LISTED = 20


class UnsupportedOpsError(SpecError):
    """An imported network holds ops archcalc has no rule for (and ``partial`` was not asked)."""


@dataclass
class _Unsupported:
    count: int
    first: str


@dataclass
class _Expected:
    where: str
    shape: Shape | None
    params: Mapping[str, Shape]


@dataclass
class Builder:
    """Collects an imported network's layers, then builds and checks its graph.

    Args:
        name: the model's name (the report's title).
        input_shape: one sample's shape, channels-first, without the batch axis: (3, 224, 224).
        source: names the source in messages (a path, ``torchvision:resnet50``).
        partial: pass ops without a rule through (as ``opaque`` layers counted as 0) instead
            of failing.
        max_layers: the most layers the graph may have.

    Raises:
        SpecError: a bad input shape (here), and from :meth:`build` everything the spec's
            validation refuses, a shape or parameter that disagrees with the source's, and
            (:class:`UnsupportedOpsError`) ops without a rule when not ``partial``.
    """

    name: str
    input_shape: Sequence[int]
    source: str
    partial: bool = False
    max_layers: int = MAX_LAYERS
    layers: list[dict[str, Any]] = field(default_factory=list, init=False)
    wheres: list[str] = field(default_factory=list, init=False)
    warnings: list[str] = field(default_factory=list, init=False)
    _names: set[str] = field(default_factory=lambda: {INPUT}, init=False)
    _suffixes: dict[str, int] = field(default_factory=dict, init=False)
    _unsupported: dict[str, _Unsupported] = field(default_factory=dict, init=False)
    _blocked: dict[str, _Unsupported] = field(default_factory=dict, init=False)
    _expected: dict[str, _Expected] = field(default_factory=dict, init=False)
    #: After :meth:`build`: the layers fused into another (:func:`fused`), by their name, to the fused layer's.
    renamed: dict[str, str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.input_shape = check_input_shape(self.input_shape, f"{quote(self.source)}: input shape")
        self.name = valid_name(self.name, "model")

    @property
    def input(self) -> str:
        """The graph's input node, which the first layers read."""
        return INPUT

    def add(self, type: str, attrs: Mapping[str, Any], inputs: Sequence[str], name: str, where: str = "") -> str:
        """Add a layer of archcalc op ``type`` reading ``inputs`` (names :meth:`add` returned, or
        :attr:`input`); returns its name in the graph: ``name`` made valid and unique.

        ``where`` locates the layer in the source (``node 'Conv_0' (Conv)``) for messages.
        Raises SpecError when too many layers are added (``max_layers``) or an input is None
        (an op that could not be passed through).
        """
        if len(self.layers) >= self.max_layers:
            raise SpecError(f"{quote(self.source)}: more than {self.max_layers:,} layers (raise the bound with "
                            "--max-layers or max_layers=)")
        if any(ref is None for ref in inputs):
            raise SpecError(f"{quote(self.source)}: {where or name}: reads the output of an op that could not be imported")
        unique = self._unique(valid_name(name, type))
        self.layers.append({"name": unique, "type": type, **attrs, "inputs": list(inputs)})
        self.wheres.append(where or f'layer "{unique}"')
        return unique

    def expect(self, name: str, shape: Sequence[int] | None = None, params: Mapping[str, Sequence[int]] | None = None) -> None:
        """Check at :meth:`build` that layer ``name``'s output shape (per sample) and its parameter
        tensors' shapes, by role name (``weight``, ``bias``, ``scale``, ``shift``,
        ``running_mean``, ``running_var``, ``slope``), equal the source's."""
        index = self._index(name)
        self._expected[name] = _Expected(
            self.wheres[index],
            None if shape is None else tuple(int(n) for n in shape),
            {role: tuple(int(n) for n in dims) for role, dims in (params or {}).items()},
        )

    def unsupported(self, op: str, inputs: Sequence[str], shape: Sequence[int] | None, name: str, where: str = "") -> str | None:
        """Tally an op archcalc has no rule for. With ``partial`` and a known output ``shape`` (per
        sample), add an ``opaque`` layer standing for it and return its name; otherwise None (the
        op cannot be passed through: :meth:`build` then fails, naming it)."""
        location = name or where
        self._unsupported.setdefault(op, _Unsupported(0, location)).count += 1
        if not self.partial or shape is None or not inputs or any(ref is None for ref in inputs):
            self._blocked.setdefault(op, _Unsupported(0, location)).count += 1
            return None
        shape = check_input_shape(shape, f"{quote(self.source)}: {where or name}: output shape of {op}")
        return self.add("opaque", {"op": op[:200], "shape": list(shape)}, inputs, name, where)

    def warn(self, text: str) -> None:
        """A note the report carries (``Graph.warnings``): one line, said once."""
        if text not in self.warnings:
            self.warnings.append(text)

    def build(self) -> Graph:
        """The graph, validated as a spec and checked against the source's shapes and parameters.

        Raises:
            UnsupportedOpsError: ops without a rule, unless ``partial`` passed them all through.
            SpecError: what the spec's validation refuses, or a disagreement with the source.
        """
        if self._blocked:
            raise UnsupportedOpsError(self._unsupported_text())
        if self._unsupported:  # every command says so, not only the report's footer (compare, memory --fit, plots)
            passed = ", ".join(f"{op} x{u.count}" for op, u in self._unsupported.items())
            self.warn(f"{quote(self.source)}: partial import: {passed} passed through uncounted; every count is a lower "
                      "bound (and a largest batch that fits, an upper bound)")
        spec = {"name": self.name, "input": list(self.input_shape), "layers": self.layers}
        graph = from_dict(spec, source=self.source, wheres=self.wheres, max_layers=self.max_layers)
        if self.warnings:
            graph = Graph(graph.name, graph.input_shape, graph.nodes, graph.description, graph.source,
                          (*graph.warnings, *self.warnings))
        from archcalc.passes import infer_shapes

        layers = infer_shapes(graph)  # once, for the checks and the fusing
        if self._expected:
            self._check(graph, layers)
        return scoped(simplest(fused(graph, self.renamed, layers)))

    def _check(self, graph: Graph, layers: Mapping[str, Any]) -> None:
        """Every expected shape and parameter shape against archcalc's rules (``layers``: the graph's inferred layers)."""
        for node in graph.nodes[1:]:
            expected = self._expected.get(node.name)
            if expected is None:
                continue
            layer = layers[node.name]
            label = f"{quote(self.source)}: {expected.where} (archcalc layer {node.name!r}, {node.type})"
            if expected.shape is not None and layer.out_shape != expected.shape:
                raise SpecError(f"{label}: archcalc's output shape {format_shape(layer.out_shape)} differs from the "
                                f"source's {format_shape(expected.shape)}")
            params = {param.role.name: param.shape for param in get_op(node.type).params(layer).values()}
            for role, shape in expected.params.items():
                if role not in params:
                    raise SpecError(f"{label}: the source has a {role} tensor {format_shape(shape)}; archcalc's rule "
                                    f"has none (it has: {', '.join(params) or 'no parameters'})")
                if params[role] != shape:
                    raise SpecError(f"{label}: the source's {role} is {format_shape(shape)}, archcalc's rule gives "
                                    f"{format_shape(params[role])}")

    def _unsupported_text(self) -> str:
        items = sorted(self._blocked.items(), key=lambda item: -item[1].count)
        listed = [f"{op} x{u.count} (first at {u.first})" for op, u in items[:MAX_LISTED]]
        more = f", and {len(items) - MAX_LISTED} more op types" if len(items) > MAX_LISTED else ""
        hint = ("; --partial (partial=True) counts them as 0 and marks the report partial" if not self.partial
                else "; --partial cannot pass these through: the source does not give their output shape")
        return f"{quote(self.source)}: unsupported: {', '.join(listed)}{more}{hint}"

    def _index(self, name: str) -> int:
        for index in range(len(self.layers) - 1, -1, -1):
            if self.layers[index]["name"] == name:
                return index
        raise KeyError(name)

    def _unique(self, name: str) -> str:
        unique, suffix = name, self._suffixes.get(name, 1)
        while unique in self._names:  # from the last suffix given to this name: n repeats cost O(n), not O(n^2)
            suffix += 1
            unique = f"{name}_{suffix}"
        self._suffixes[name] = suffix
        self._names.add(unique)
        return unique


_INVALID = re.compile(r"[^\w.\-:/+#@\[\]()]+")


def fused(graph: Graph, renames: dict[str, str] | None = None, layers: Mapping[str, Any] | None = None) -> Graph:
    """``graph`` with the patterns exporters write for one layer made that layer again, whatever
    the source (the PyTorch source archcalc writes, torch.onnx, a hand-written forward):

    - permute to channels-last, layernorm over the channels, permute back: a channels-first
      layernorm (ConvNeXt's LayerNorm2d), named after the layernorm;
    - slices of every spatial axis (2D, 3D) with step 1, one after another: a crop (U-Net's);
    - reshape (C, ...) to (g, C/g, ...), swap the two, reshape back: a channel shuffle (ShuffleNet).

    ``layers``: the graph's inferred layers, when the caller has them. ``renames`` (when given)
    receives each fused layer's old name -> the name of the layer it is now.
    Only a chain whose inner tensors nothing else reads is fused. The layernorm and the crop have
    the figures of their chains (the permutes and slices are views); the channel shuffle counts
    the copy PyTorch makes (a reshape of the transposed view copies), which the chain's views miss.
    """
    from dataclasses import replace

    from archcalc.passes import infer_shapes

    layers = infer_shapes(graph) if layers is None else layers
    readers: dict[str, list[Any]] = {}
    for node in graph.nodes:
        for ref in node.inputs:
            readers.setdefault(ref, []).append(node)
    by_name = {node.name: node for node in graph.nodes}
    prefixes: dict[str, int] = {}  # each dotted prefix of a name (the name too): how many names start with it
    for node in graph.nodes:
        parts = node.name.split(".")
        for k in range(1, len(parts) + 1):
            key = ".".join(parts[:k])
            prefixes[key] = prefixes.get(key, 0) + 1
    nodes = list(graph.nodes)
    renamed: dict[str, str] = {}
    dropped: set[str] = set()
    position = {node.name: index for index, node in enumerate(nodes)}

    def chain(start: Any, length: int) -> list[Any] | None:
        """``start`` and the nodes after it, each the only reader of the one before."""
        found = [start]
        while len(found) < length:
            following = readers.get(found[-1].name, [])
            if len(following) != 1 or len(following[0].inputs) != 1:
                return None
            found.append(following[0])
        return found

    for node in graph.nodes[1:]:
        if node.name in dropped:
            continue
        replacement = None
        links = chain(node, 3) if node.type in ("permute", "reshape") else None
        if node.type == "slice":
            links = chain(node, len(layers[node.name].in_shape) - 1)
        if links and all(n.name not in dropped for n in links):
            replacement = _fused_layer(links, layers)
        if replacement is None:
            continue
        name, op_type, attrs = replacement
        keep = by_name[name]
        # named after the module the chain is the whole of (a LayerNorm2d's "features.0.1"), if any
        prefix = _module_of([n.name for n in links], prefixes)
        nodes[position[keep.name]] = replace(keep, name=prefix or keep.name, type=op_type, attrs=attrs, inputs=links[0].inputs)
        name = prefix or name
        for other in links:
            if other.name != name:
                dropped.add(other.name)
        renamed[links[-1].name] = name
        if renames is not None:
            renames.update((n.name, name) for n in links if n.name != name)
    if not dropped:
        return graph
    # the kept layer stands where one of its chain stood: after the chain's input, before its readers
    out = [replace(node, inputs=tuple(renamed.get(ref, ref) for ref in node.inputs)) for node in nodes if node.name not in dropped]
    return replace(graph, nodes=tuple(out))


def _module_of(chain: list[str], prefixes: Mapping[str, int]) -> str:
    """The dotted prefix every name of ``chain`` shares and no other layer's name has (the module
    the chain is the whole of), or "". ``prefixes``: how many of all the names start with each."""
    parts = [name.split(".")[:-1] for name in chain]
    common: list[str] = []
    for column in zip(*parts):
        if any(part != column[0] for part in column):
            break
        common.append(column[0])
    prefix = ".".join(common)
    return prefix if prefix and prefixes.get(prefix, 0) == len(chain) else ""


def _fused_layer(links: list[Any], layers: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
    """(the name kept, op type, attributes) of the one layer a chain of layers is, or None."""
    first, last = layers[links[0].name], layers[links[-1].name]
    types = [n.type for n in links]
    rank = len(first.in_shape)  # without the batch axis
    if types == ["permute", "layernorm", "permute"] and rank >= 2:
        to_last, back = first.attrs["dims"], last.attrs["dims"]
        norm = layers[links[1].name].attrs
        if (to_last == (0, *range(2, rank + 1), 1) and back == (0, rank, *range(1, rank))
                and tuple(norm.get("normalized_shape") or ()) == (first.in_shape[0],)):
            return links[1].name, "layernorm", {**dict(links[1].attrs), "normalized_shape": None}
        return None
    if types == ["reshape", "permute", "reshape"] and rank >= 1:
        channels, middle = first.in_shape[0], first.out_shape
        swap = layers[links[1].name].attrs["dims"]
        if (last.out_shape == first.in_shape and len(middle) == rank + 1 and middle[0] * middle[1] == channels
                and middle[2:] == first.in_shape[1:] and swap == (0, 2, 1, *range(3, rank + 2))):
            return links[0].name, "channel_shuffle", {"groups": middle[0]}
        return None
    if all(t == "slice" for t in types) and rank >= 3 and len(links) == rank - 1:
        axes = [layers[n.name].attrs["dim"] for n in links]
        axes = [a if a > 0 else a + rank + 1 for a in axes]
        if sorted(axes) != list(range(2, rank + 1)) or any(layers[n.name].attrs["step"] != 1 for n in links):
            return None
        offset = [0] * (rank - 1)
        for n in links:
            layer = layers[n.name]
            dim = layer.attrs["dim"] if layer.attrs["dim"] > 0 else layer.attrs["dim"] + rank + 1
            start, _, _ = slice(layer.attrs["start"], layer.attrs["stop"], 1).indices(layer.in_shape[dim - 1])
            offset[dim - 2] = start
        return links[0].name, "crop", {"size": list(last.out_shape[1:]), "offset": offset}
    return None


def scoped(graph: Graph) -> Graph:
    """``graph`` with each layer's scope read from its dotted name, as module paths are
    (``layer1.0.conv1`` is in ``layer1`` > ``layer1.0``), so that ``--depth`` folds an imported
    network's stages and units as torchinfo's depth does; unchanged when the graph has scopes
    already, or when its names do not nest (a block's layers apart, a name both a layer and a block)."""
    from dataclasses import replace

    if any(node.scope for node in graph.nodes) or not any("." in node.name for node in graph.nodes):
        return graph
    nodes = [graph.nodes[0], *(replace(node, scope=tuple(node.name.split(".")[:-1])) for node in graph.nodes[1:])]
    try:
        return replace(graph, nodes=tuple(nodes))
    except SpecError:
        return graph


def simplest(graph: Graph) -> Graph:
    """``graph`` with each layer's attributes in their shortest equivalent form: a per-axis list
    of equal values as one value (``kernel [3, 3]`` as ``3``, ``padding [[1, 1], [1, 1]]`` as
    ``1``), a value equal to the default as the default, where the op resolves both to the same
    attributes on the layer's input. The importers write every axis explicitly; a spec written
    from the graph (``archcalc import``) then reads as one typed by hand."""
    from dataclasses import replace

    from archcalc.errors import RuleError
    from archcalc.passes import infer_shapes

    layers = infer_shapes(graph)
    shapes = {name: layer.out_shape for name, layer in layers.items()}
    nodes = [graph.nodes[0]]
    for node in graph.nodes[1:]:
        op = get_op(node.type)
        in_shapes = tuple(shapes[ref] for ref in node.inputs)
        attrs = dict(node.attrs)
        target = layers[node.name]
        declared = {attr.name: attr for attr in op.attrs}
        for name, value in node.attrs.items():
            attr = declared.get(name)
            if attr is None or not isinstance(value, tuple):
                continue
            for candidate in _shorter(value, attr):
                try:
                    trial = {**attrs, name: attr.convert(candidate)}
                    layer = op.infer(trial, in_shapes)
                except (RuleError, TypeError, ValueError):
                    continue
                if layer == target and op.params(layer) == op.params(target):
                    attrs = trial
                    break
        nodes.append(replace(node, attrs=attrs) if attrs != node.attrs else node)
    return replace(graph, nodes=tuple(nodes))


def _shorter(value: tuple[Any, ...], attr: Any) -> list[Any]:
    """Shorter forms of a per-axis attribute value, shortest first: its default, one value for
    every axis (``(3, 3)`` -> 3; ``((1, 1), (1, 1))`` -> 1)."""
    from archcalc.ops.attrs import REQUIRED

    found = [] if attr.default is REQUIRED or attr.default is None else [attr.default]
    flat = value
    while isinstance(flat, tuple) and flat and all(v == flat[0] for v in flat):
        flat = flat[0]
        if not isinstance(flat, tuple):
            found.append(flat)
    return found


def valid_name(name: Any, fallback: str) -> str:
    """A source's name as an archcalc name: kept when valid; otherwise white space and other
    characters a name cannot hold become ``_``, each dot-separated part is cut to
    ``MAX_NAME_LENGTH``, and an empty result becomes ``fallback``."""
    text = str(name) if name is not None else ""
    if text and name_problem(text) is None and text != INPUT:
        return text
    text = _INVALID.sub("_", text).strip("_")
    parts = [part[:MAX_NAME_LENGTH] or "_" for part in text.split(".")]
    text = ".".join(parts)[:2048].strip(".") if text else ""
    if not text or name_problem(text) is not None:
        text = re.sub(r"\W+", "_", fallback)[:MAX_NAME_LENGTH] or "layer"
    return text if text != INPUT else f"{INPUT}_"


def check_input_shape(shape: Any, what: str) -> tuple[int, ...]:
    """A sample's shape as a tuple of ints from 1 to 2**31-1, at most MAX_RANK axes; SpecError otherwise."""
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if (dims is None or not 1 <= len(dims) <= MAX_RANK
            or not all(_is_int(n) and 1 <= int(n) <= MAX_INT for n in dims)):
        raise SpecError(f"{what} must be 1 to {MAX_RANK} positive ints (at most 2**31 - 1) for one sample, "
                        f"without the batch axis, got {shape!r:.200}")
    return tuple(int(n) for n in dims)


def _is_int(value: Any) -> bool:
    import numbers

    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``3x224x224`` (or ``3,224,224``) as a sample's shape; SpecError naming the text otherwise."""
    parts = re.split(r"\s*[x,×]\s*", str(text).strip().lower()) if len(str(text)) <= 400 else []
    if not parts or not all(re.fullmatch(r"\d{1,12}", part) for part in parts):
        raise SpecError(f"--input {text!r:.200}: give one sample's shape without the batch axis, e.g. 3x224x224")
    return check_input_shape([int(part) for part in parts], f"--input {text!r:.200}")


def missing(package: str, extra: str, why: str) -> ArchcalcError:
    """The error for an optional package that is not installed: what needs it and the pip command."""
    from archcalc.errors import MissingToolError

    return MissingToolError(f"{why} needs the {package} package, which is not installed: pip install \"archcalc[{extra}]\"")
