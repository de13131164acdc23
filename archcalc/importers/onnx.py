"""``from_onnx``: an ONNX file as an archcalc graph, read with the ``onnx`` package alone.

The file is parsed with ``onnx.load`` (external data from the file's directory), its shapes
are worked out by ONNX's own shape inference (strict mode, with data propagation), and each
node becomes the archcalc layer it computes, through the shared :class:`Builder`, which then
checks archcalc's own output shape and parameter shapes against ONNX's for every layer.

What is folded, never a layer: initializers and ``Constant`` nodes, and the nodes that only
compute constants from them or from static shapes (``Shape``/``Gather``/``Unsqueeze``/
``Concat`` chains feeding a ``Reshape``). What is recognised as one layer, the way exporters
decompose them: SiLU (``Sigmoid`` + ``Mul``), hardswish (``HardSigmoid`` + ``Mul``), GELU
(``Div``/``Erf``/``Add``/``Mul``/``Mul``, and the tanh form's cube, ``Tanh`` and the same tail),
a linear layer on any rank (``MatMul`` + ``Add``), a per-channel scale (``Mul``, + ``Add``, by
initializers of shape (C, 1, ...)), channel shuffle (``Reshape``/``Transpose``/``Reshape``),
torch's GroupNorm (``InstanceNormalization`` between two ``Reshape``s, then ``Mul``/``Add``),
LayerNorm before opset 17 (``ReduceMean``/``Sub``/``Pow``/``ReduceMean``/``Add``/``Sqrt``/
``Div``, then ``Mul``/``Add``) and torch.export's ``as_strided`` (``Reshape`` to 1D +
``Gather`` of arange indices: a reshape). Each pattern is fused only when its inner values
are read by the pattern alone; the layer takes the first node's name. ONNX numbers axes with
the batch axis first, as PyTorch and archcalc's layout ops do, so ``axis``/``perm`` carry over.

A pool padded past k//2 at the end (how exporters wrote ceil mode before opset 10) is read back
as ``ceil_mode`` with PyTorch's allowed padding when that gives ONNX's output size.

Attribute semantics follow the ONNX operator specs (``onnx.defs.get_schema``): ``pads`` is
``[x1_begin, x2_begin, ..., x1_end, x2_end, ...]``; ``auto_pad`` SAME_UPPER is archcalc's
``"same"`` (the odd pixel at the end, TensorFlow's), SAME_LOWER puts it at the start and is
given as explicit pads; AveragePool's ``count_include_pad`` defaults to 0 (PyTorch's to 1);
BatchNormalization's ``momentum`` weighs the running average (PyTorch's ``1 - momentum``).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from archcalc.errors import SpecError
from archcalc.graph import Graph
from archcalc.importers._builder import Builder, check_input_shape, missing, parse_input_shape
from archcalc.ops.attrs import MAX_INT
from archcalc.spec import MAX_LAYERS, quote

#: Largest constant (in values) the importer turns into a NumPy array to read or fold: shapes,
#: pads, scales and split sizes are tiny; weights are only ever read for their dims.
MAX_CONSTANT_VALUES = 1 << 16

#: Initializers of more values than this are handed to shape inference as typed inputs, not
#: data: inference needs their shapes only, and copying 100 MB of weights costs time.
_INFERENCE_DATA_LIMIT = 4096

#: ONNX ops that only compute constants (folded when all their inputs are known).
_FOLDABLE = frozenset({
    "Constant", "Shape", "Size", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Add", "Sub", "Mul",
    "Div", "Reshape", "Identity", "ConstantOfShape", "Range", "Equal", "Where", "Floor", "Ceil", "Sqrt", "Neg",
    "Abs", "Min", "Max", "Transpose", "ReduceProd", "Expand",
})

_DOMAINS = ("", "ai.onnx")

#: Graph names exporters give every model (torch.onnx: main_graph, torch_jit); the file's name is used instead.
_EXPORTER_GRAPH_NAMES = frozenset({"", "main_graph", "torch_jit", "torch-jit-export", "graph", "model"})


def from_onnx(path: str | os.PathLike[str], input_shape: Sequence[int] | str | None = None, *, partial: bool = False,
              max_layers: int = MAX_LAYERS) -> Graph:
    """Read an ONNX model file into an archcalc :class:`~archcalc.graph.Graph`.

    Args:
        path: the ``.onnx`` file; external data (``model.onnx.data``) is read from its directory.
        input_shape: the input's shape per sample, channels first, no batch axis
            (``(3, 224, 224)``). Needed when the file's input has dynamic sizes; when given it
            replaces the file's and every shape is inferred again.
        partial: pass ops archcalc cannot map through as uncounted (0 params, 0 MACs) layers,
            where ONNX's shape inference knows their output shape, instead of failing.

    Returns:
        The graph (``graph.warnings`` holds notes such as batchnorm folded into convs).

    Raises:
        MissingToolError: the ``onnx`` package is not installed.
        SpecError: the file is missing, not ONNX, truncated or inconsistent; its input is not
            one tensor with one leading batch axis; a size is dynamic and ``input_shape`` is not
            given; an op is unsupported (every one listed with its count and first location,
            unless ``partial``); or archcalc's shapes differ from ONNX's for a layer.
        max_layers: the most layers the graph may have.
    """
    onnx = _require_onnx()
    if not isinstance(path, (str, os.PathLike)):
        raise SpecError(f"from_onnx takes a path to an .onnx file, got a {type(path).__name__}")
    source = str(os.fspath(path))
    model = _load(onnx, Path(source), quote(source))
    return _Importer(onnx, model, source, input_shape, partial, max_layers).run()


def _require_onnx() -> Any:
    """The onnx module, or MissingToolError with the pip command."""
    try:
        import onnx
        import onnx.numpy_helper  # noqa: F401
        import onnx.shape_inference  # noqa: F401
    except ImportError:
        raise missing("onnx", "onnx", "reading ONNX files") from None
    return onnx


def _load(onnx: Any, path: Path, shown: str) -> Any:
    """Parse the file and read its external data; every failure is one SpecError line."""
    try:
        if path.is_dir():
            raise SpecError(f"{shown}: is a directory, not an ONNX file")
        if not path.exists():
            raise SpecError(f"{shown}: no such file")
        if not path.is_file():
            raise SpecError(f"{shown}: not a regular file")
        size = path.stat().st_size
        data = path.read_bytes()
    except OSError as error:
        raise SpecError(f"{shown}: cannot be read: {(error.strerror or type(error).__name__).lower()}") from None
    if size == 0:
        raise SpecError(f"{shown}: empty file, not an ONNX model")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as error:  # protobuf's DecodeError and friends: the file is not a ModelProto
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SpecError(f"{shown}: not an ONNX model (cannot parse it: {reason}); truncated or another format?") from None
    if not model.HasField("graph") or model.ir_version <= 0 or not model.graph.node:
        raise SpecError(f"{shown}: not an ONNX model (no graph with nodes in it); truncated or another format?")
    _load_external_data(onnx, model, path, shown)
    return model


def _external_tensors(model: Any) -> list[Any]:
    from onnx.external_data_helper import uses_external_data

    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        tensors.extend(attr.t for attr in node.attribute if attr.HasField("t"))
    return [t for t in tensors if uses_external_data(t)]


def _load_external_data(onnx: Any, model: Any, path: Path, shown: str) -> None:
    """Read tensors stored in files beside the model, checking each file first."""
    tensors = _external_tensors(model)
    if not tensors:
        return
    base = path.resolve().parent
    for tensor in tensors:
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        target = (base / location).resolve() if location else base
        if not location or os.path.isabs(location) or base not in (target, *target.parents):
            raise SpecError(f"{shown}: initializer {tensor.name!r} names external data {location!r} outside the model's directory")
        if not target.is_file():
            raise SpecError(f"{shown}: external data file {location!r} (for initializer {tensor.name!r}) is missing; "
                            "keep it in the model's directory")
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
        except ValueError:
            raise SpecError(f"{shown}: initializer {tensor.name!r} has a bad external data offset or length") from None
        if length >= 0 and offset + length > target.stat().st_size:
            raise SpecError(f"{shown}: external data file {location!r} is shorter than initializer {tensor.name!r} needs "
                            f"({offset + length} bytes, it has {target.stat().st_size}); truncated?")
    try:
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(base))
    except Exception as error:
        raise SpecError(f"{shown}: cannot read its external data: {str(error).splitlines()[0] if str(error) else error}") from None


def _dims(tensor_type: Any) -> tuple[int | str | None, ...] | None:
    """A tensor type's dims: an int, a dim_param name, or None where unknown; None if no shape."""
    if not tensor_type.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(dim.dim_value)
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def _shape_text(dims: Sequence[Any]) -> str:
    return "(" + ", ".join(str(d) if d is not None else "?" for d in dims) + ("," if len(dims) == 1 else "") + ")"


class _Importer:
    """One import: the model, its inferred shapes and constants, and the Builder it fills."""

    def __init__(self, onnx: Any, model: Any, source: str, input_shape: Any, partial: bool,
                 max_layers: int = MAX_LAYERS) -> None:
        self.onnx, self.model, self.source, self.partial = onnx, model, source, partial
        self.shown, self.max_layers = quote(source), max_layers
        self.graph = model.graph
        self.opset = self._opset()
        self.requested = _checked_input_shape(input_shape, self.shown)
        self.nodes = list(self.graph.node)
        # ONNX values -> what they are: an archcalc layer's name, or a constant NumPy array
        self.layer_of: dict[str, str | None] = {}
        self.consts: dict[str, Any] = {}
        self.large: dict[str, tuple[int, ...]] = {}  # constants known by their shape only (too large to compute)
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.shapes: dict[str, tuple[int | None, ...]] = {}
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = {}
        for index, node in enumerate(self.nodes):
            for out in node.output:
                if out:
                    if out in self.producer or out in self.initializers:  # ONNX's single assignment
                        first = self.nodes[self.producer[out]] if out in self.producer else None
                        earlier = f"node {first.name or self.producer[out]!r} ({first.op_type})" if first else "an initializer"
                        raise SpecError(f"{self.shown}: {_where(node, index)} writes {out!r}, which {earlier} writes "
                                        "too; an ONNX value is written once")
                    self.producer[out] = index
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(index)
        self.graph_outputs = {o.name for o in self.graph.output}
        self.names, self.scopes = _module_paths(self.nodes)
        self.skip: set[int] = set()
        self.fused: dict[int, Callable[[], None]] = {}
        self.notes: list[str] = []  # warnings found before the Builder exists
        self.members: dict[int, list[int]] = {}  # the nodes each fused layer was made of, by its last node

    # ---- setup: opset, input, shapes ----

    def _opset(self) -> int:
        for entry in self.model.opset_import:
            if entry.domain in _DOMAINS:
                return int(entry.version)
        if not self.model.opset_import:  # IR version 1-2 files have none: opset 1
            return 1
        raise SpecError(f"{self.shown}: imports no version of the standard ONNX operator set (opset_import)")

    def _input(self) -> Any:
        inputs = [i for i in self.graph.input if i.name not in self.initializers]
        if len(inputs) != 1:
            names = ", ".join(repr(i.name) for i in inputs[:5]) + (", ..." if len(inputs) > 5 else "")
            raise SpecError(f"{self.shown}: archcalc analyses a network of one input tensor; this one has {len(inputs)}"
                            + (f" ({names})" if inputs else ""))
        value = inputs[0]
        if not value.type.HasField("tensor_type"):
            raise SpecError(f"{self.shown}: input {value.name!r} is not a tensor (a sequence or map); archcalc reads tensors only")
        return value

    def _sample_shape(self, value: Any) -> tuple[int, ...]:
        """The input's per-sample shape, from input_shape or the file; the batch axis checked."""
        dims = _dims(value.type.tensor_type)
        name = value.name
        for dim in dims or ():
            if isinstance(dim, int) and dim > MAX_INT:
                raise SpecError(f"{self.shown}: input {name!r} has a size of {dim}, more than 2**31 - 1 = {MAX_INT}")
        if dims is not None and len(dims) < 2:
            raise SpecError(f"{self.shown}: input {name!r} has shape {_shape_text(dims)}; archcalc needs a leading batch "
                            "axis then the sample's axes, (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W)")
        if dims is not None and len(dims) > 5:
            raise SpecError(f"{self.shown}: input {name!r} has shape {_shape_text(dims)}: more than one batch axis or "
                            "over three spatial axes; archcalc takes (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W)")
        if self.requested is not None:
            if dims is not None and len(dims) - 1 != len(self.requested):
                raise SpecError(f"{self.shown}: input_shape {_shape_text(self.requested)} has {len(self.requested)} axes; "
                                f"input {name!r} has {len(dims) - 1} per sample, {_shape_text(dims)} with the batch axis")
            fixed = (dims or (None,))[1:]
            if dims is not None and all(isinstance(d, int) and d > 0 for d in fixed) and tuple(fixed) != self.requested:
                self.notes.append(f"{self.shown}: the given input {_shape_text(self.requested)} replaces the file's "
                                     f"fixed input {_shape_text(tuple(fixed))}; shapes were inferred again at the given size")
            return self.requested
        sample = (dims or (None, None))[1:]
        if dims is None or not all(isinstance(d, int) and d > 0 for d in sample):
            example = [d if isinstance(d, int) and d > 0 else None for d in sample] if dims else [3, None, None]
            if example and example[0] is None:
                example[0] = 3
            text = "x".join(str(d) if d is not None else "224" for d in example)
            raise SpecError(f"{self.shown}: input {name!r} has a dynamic shape {_shape_text(dims or ('N', '?', '?', '?'))}; "
                            f"give its per-sample shape: --input {text} (input_shape=({text.replace('x', ', ')}) in Python)")
        return tuple(int(d) for d in sample)

    def _inference_model(self, input_value: Any, sample: tuple[int, ...]) -> Any:
        """A copy of the model for shape inference: large initializers as typed inputs, the input's
        shape set (a dynamic batch becomes 1), earlier inferred shapes dropped when it changed."""
        onnx = self.onnx
        helper = onnx.helper
        dims = _dims(input_value.type.tensor_type)
        batch = dims[0] if dims and isinstance(dims[0], int) and dims[0] > 0 else 1
        self.batch = batch
        graph = helper.make_graph([], self.graph.name or "graph", [], [])
        graph.node.extend(node for index, node in enumerate(self.nodes) if index not in self.skip)
        folded = {name for index in self.skip for name in self.nodes[index].output if name}
        graph.initializer.extend(self.onnx.numpy_helper.from_array(self.consts[name], name) for name in sorted(folded)
                                 if name in self.consts and self.consts[name].dtype.kind in "biuf")
        graph.input.extend(helper.make_tensor_value_info(name, self.onnx.TensorProto.FLOAT, list(self.large[name]))
                           for name in sorted(folded) if name in self.large)
        new_input = helper.make_tensor_value_info(input_value.name, input_value.type.tensor_type.elem_type, (batch, *sample))
        graph.input.append(new_input)
        for tensor in self.graph.initializer:
            if math.prod(tensor.dims) <= _INFERENCE_DATA_LIMIT:
                graph.initializer.append(tensor)
            else:
                graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
        changed = self.requested is not None
        for output in self.graph.output:
            if changed:
                output = helper.make_tensor_value_info(output.name, output.type.tensor_type.elem_type, None) \
                    if output.type.HasField("tensor_type") else output
            graph.output.append(output)
        if not changed:
            graph.value_info.extend(self.graph.value_info)
        light = helper.make_model(graph, opset_imports=list(self.model.opset_import), ir_version=max(self.model.ir_version, 4))
        light.functions.extend(self.model.functions)
        return light

    def _infer(self, input_value: Any, sample: tuple[int, ...]) -> None:
        """Fill self.shapes from ONNX's shape inference (strict, with data propagation)."""
        light = self._inference_model(input_value, sample)
        try:
            inferred = self.onnx.shape_inference.infer_shapes(light, check_type=False, strict_mode=True, data_prop=True)
        except Exception as error:
            text = str(error).strip().splitlines()
            reason = next((line for line in text if line.strip()), type(error).__name__)
            raise SpecError(f"{self.shown}: ONNX shape inference fails: {reason.strip()}") from None
        self.shapes = {t.name: tuple(t.dims) for t in self.graph.initializer}
        for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
            if value.type.HasField("tensor_type"):
                dims = _dims(value.type.tensor_type)
                if dims is not None:
                    self.shapes[value.name] = tuple(d if isinstance(d, int) and d >= 0 else None for d in dims)

    def _check_initializers(self) -> None:
        for tensor in self.graph.initializer:
            for dim in tensor.dims:
                if dim < 0 or dim > MAX_INT:
                    raise SpecError(f"{self.shown}: initializer {tensor.name!r} has a size of {dim}; sizes must be 0 to "
                                    f"2**31 - 1 = {MAX_INT}")
            self.shapes[tensor.name] = tuple(tensor.dims)

    # ---- the import ----

    def run(self) -> Graph:
        self._check_initializers()
        input_value = self._input()
        sample = self._sample_shape(input_value)
        self._infer(input_value, sample)
        name = self.graph.name.strip()
        if name.lower() in _EXPORTER_GRAPH_NAMES:  # torch's exporters call every graph this: the file says more
            name = Path(self.source).stem or name
        self.builder = Builder(name=_model_name(name, self.source), input_shape=sample, source=self.source,
                               partial=self.partial, max_layers=self.max_layers)
        self.layer_of[input_value.name] = self.builder.input
        # fold what ONNX's inference left open (sizes computed from Shape), then infer again with the folded
        # values as initializers: a Slice or Reshape fed by them gets its shape, which may fold more
        for _ in range(8):
            folded = len(self.skip)
            self._fold_constants()
            if len(self.skip) == folded:
                break
            self._infer(input_value, sample)
        self._find_patterns()
        for index, node in enumerate(self.nodes):
            if index in self.skip:
                continue
            if index in self.fused:
                self.fused[index]()
                continue
            self._convert(node)
        self._note_folded_batchnorm()
        self._note_shared_weights()
        for note in self.notes:
            self.builder.warn(note)
        return self.builder.build()

    def _note_shared_weights(self) -> None:
        """An initializer two layers use as their weights (a module called twice) is counted with each layer."""
        users: dict[str, list[str]] = {}
        for node in self.nodes:
            if node.op_type in _WEIGHTED_OPS:
                for value in node.input[1:]:
                    if value in self.initializers and math.prod(self.initializers[value].dims) > 1:
                        users.setdefault(value, []).append(node.name or node.output[0])
        empty = [value for value in users if not _has_values(self.initializers[value])]
        if empty:
            self.builder.warn(f"{self.shown}: initializer {empty[0]!r}"
                              f"{f' (and {len(empty) - 1} more)' if len(empty) > 1 else ''} declares a shape but holds no "
                              "values; its parameters are counted from the shape")
        shared = {value: names for value, names in users.items() if len(names) > 1}
        if shared:
            value, names = next(iter(shared.items()))
            more = f" (and {len(shared) - 1} more shared initializers)" if len(shared) > 1 else ""
            self.builder.warn(
                f"{self.shown}: initializer {value!r} ({math.prod(self.initializers[value].dims):,} values) is the weights "
                f"of {len(names)} nodes ({', '.join(names[:3])}){more}; archcalc counts each layer's own parameters, so "
                "the Params total counts shared weights once per layer, more than the file holds")

    def _note_folded_batchnorm(self) -> None:
        ops = {node.op_type for node in self.nodes}
        biased = any(node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 2 and node.input[2] for node in self.nodes)
        if biased and "BatchNormalization" not in ops:
            self.builder.warn(
                f"{self.shown}: its convs have biases and it has no BatchNormalization; exporters fold a trained "
                "network's batchnorm into the conv before it, so if this one was trained with batchnorm, the "
                "parameter count here (conv biases, no batchnorm scale, shift or running statistics) differs from "
                "the training framework's")

    # ---- values ----

    def is_const(self, value: str) -> bool:
        return value in self.consts or value in self.initializers or value in self.large

    def const(self, value: str) -> Any:
        """The constant's values as a NumPy array (refused beyond MAX_CONSTANT_VALUES values)."""
        if value in self.consts:
            return self.consts[value]
        if value in self.large:
            raise SpecError(f"{self.shown}: the constant {value!r} of {math.prod(self.large[value])} values is used as a "
                            f"shape or setting; archcalc reads at most {MAX_CONSTANT_VALUES} values of such a constant")
        tensor = self.initializers[value]
        if math.prod(tensor.dims) > MAX_CONSTANT_VALUES:
            raise SpecError(f"{self.shown}: initializer {value!r} of {math.prod(tensor.dims)} values is used as a shape or "
                            f"setting; archcalc reads at most {MAX_CONSTANT_VALUES} values of such a constant")
        try:
            array = self.onnx.numpy_helper.to_array(tensor)
        except Exception as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise SpecError(f"{self.shown}: initializer {value!r} cannot be read: {reason}") from None
        self.consts[value] = array
        return array

    def shape(self, value: str) -> tuple[int | None, ...] | None:
        if value in self.consts:
            return tuple(self.consts[value].shape)
        if value in self.large:
            return self.large[value]
        return self.shapes.get(value)

    def sample_shape(self, value: str) -> tuple[int, ...] | None:
        """The per-sample shape (no batch axis) when every size is known."""
        dims = self.shape(value)
        if dims is None or len(dims) < 2 or any(d is None for d in dims[1:]):
            return None
        if dims[0] is not None and dims[0] != self.batch:  # no leading batch axis (a detector's (K, 4) boxes)
            return None
        return tuple(int(d) for d in dims[1:])  # type: ignore[arg-type]

    def rank(self, value: str) -> int | None:
        dims = self.shape(value)
        return None if dims is None else len(dims)

    # ---- constant folding ----

    def _fold_constants(self) -> None:
        """Evaluate every node that computes a constant (from constants or static shapes)."""
        for index, node in enumerate(self.nodes):
            if index in self.skip or node.domain not in _DOMAINS or node.op_type not in _FOLDABLE:
                continue
            if node.op_type in ("Shape", "Size"):
                dims = self.shape(node.input[0]) if node.input else None
                if dims is None or any(d is None for d in dims):
                    continue
                inputs: list[Any] = [dims]
            else:
                if not all(not name or self.is_const(name) for name in node.input):
                    continue
                if any(name in self.large or name in self.initializers and math.prod(self.initializers[name].dims)
                       > MAX_CONSTANT_VALUES for name in node.input):
                    self._fold_large(index, node)
                    continue
                inputs = [self.const(name) if name else None for name in node.input]
            try:
                outputs = _evaluate(node, inputs, self.opset)
            except _CannotFold:
                self._fold_large(index, node)
                continue
            except Exception as error:  # constants the op cannot take: the file is inconsistent
                raise SpecError(f"{self.shown}: {_where(node, index)}: cannot compute its constant output: "
                                f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
            for name, array in zip(node.output, outputs, strict=False):
                if name:
                    self.consts[name] = array
            self.skip.add(index)

    def _fold_large(self, index: int, node: Any) -> None:
        """A constant too large to compute (a weight transposed for MatMul): folded to its shape alone."""
        if node.op_type == "Constant":
            tensor = _attrs(node).get("value")
            shapes = [tuple(tensor.dims)] if tensor is not None and hasattr(tensor, "dims") else [None]
        elif node.op_type in ("Shape", "Size"):
            return
        else:
            shapes = [self.shapes.get(name) for name in node.output]
        if not node.output or any(shape is None or None in shape for shape in shapes[:1]):
            return
        for name, shape in zip(node.output, shapes, strict=False):
            if name and shape is not None:
                self.large[name] = shape  # type: ignore[assignment]
        self.skip.add(index)

    # ---- patterns exporters emit ----

    def _only_consumer(self, value: str) -> Any:
        """The one node reading value (and value no graph output), else None."""
        users = self.consumers.get(value, [])
        if len(users) != 1 or value in self.graph_outputs:
            return None
        return users[0]

    def _scalar(self, value: str) -> float | None:
        if not self.is_const(value):
            return None
        try:
            array = self.const(value)
        except SpecError:
            return None
        return float(array.reshape(-1)[0]) if array.size == 1 else None

    def _other(self, node: Any, value: str) -> str | None:
        """The other input of a two-input node, given one of them."""
        if len(node.input) != 2 or value not in node.input:
            return None
        return node.input[1] if node.input[0] == value else node.input[0]

    def _find_patterns(self) -> None:
        for index, node in enumerate(self.nodes):
            if index in self.skip or node.domain not in _DOMAINS:
                continue
            matcher = _MATCHERS.get(node.op_type)
            if matcher is not None:
                matcher(self, index, node)

    def _claim(self, indices: list[int], emit: Callable[[], None]) -> bool:
        """Fuse nodes into one layer emitted at the last of them (all others skipped)."""
        if any(i in self.skip or i in self.fused for i in indices):
            return False
        last = max(indices)
        self.skip.update(i for i in indices if i != last)
        self.fused[last] = emit
        self.members[last] = list(indices)
        return True

    def _is(self, index: int | None, op_type: str) -> bool:
        return index is not None and self.nodes[index].op_type == op_type and self.nodes[index].domain in _DOMAINS

    def _match_silu(self, index: int, node: Any, fused_type: str = "silu") -> None:
        x, out = node.input[0], node.output[0]
        user = self._only_consumer(out)
        if not self._is(user, "Mul") or self._other(self.nodes[user], out) != x:
            return
        self._claim([index, user], lambda: self._emit_fused(fused_type, {}, x, index, user))

    def _match_hardswish(self, index: int, node: Any) -> None:
        alpha, beta = _attrs(node).get("alpha", 0.2), _attrs(node).get("beta", 0.5)
        if math.isclose(alpha, 1 / 6, rel_tol=1e-6) and math.isclose(beta, 0.5, rel_tol=1e-6):
            self._match_silu(index, node, "hardswish")

    def _match_gelu(self, index: int, node: Any) -> None:
        """x * 0.5 * (1 + erf(x / sqrt 2)), in the orders exporters write it."""
        first = self.producer.get(node.input[0])
        if first is None or self._only_consumer(node.input[0]) != index:
            return
        pre = self.nodes[first]
        divisor = {"Div": math.sqrt(2), "Mul": 1 / math.sqrt(2)}.get(pre.op_type)
        if divisor is None or len(pre.input) != 2:
            return
        if self._close(pre.input[1], divisor):
            x = pre.input[0]
        elif pre.op_type == "Mul" and self._close(pre.input[0], divisor):
            x = pre.input[1]
        else:
            return
        tail = self._gelu_tail(x, node.output[0])
        if tail is not None:
            indices = [first, index, *tail]
            self._claim(indices, lambda: self._emit_fused("gelu", {"approximate": "none"}, x, min(indices), max(indices)))

    def _match_gelu_tanh(self, index: int, node: Any) -> None:
        """x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))), GELU's tanh form as exporters write it."""
        inner = self._scaled(node.input[0], math.sqrt(2 / math.pi), index)
        if inner is None:
            return
        scale_index, summed = inner
        add = self.producer.get(summed)
        if not self._is(add, "Add") or self._only_consumer(summed) != scale_index:
            return
        for x, cubic in (self.nodes[add].input[:2], self.nodes[add].input[1::-1]):  # type: ignore[index]
            found = self._scaled(cubic, 0.044715, add)
            if found is None:
                continue
            cube_index = self.producer.get(found[1])
            cube = self._cube_of(x, found[1], found[0]) if cube_index is not None else None
            if cube is None:
                continue
            tail = self._gelu_tail(x, node.output[0])
            if tail is None:
                return
            indices = [*cube, found[0], add, scale_index, index, *tail]  # type: ignore[list-item]
            self._claim(indices, functools.partial(self._emit_fused, "gelu", {"approximate": "tanh"}, x, min(indices),
                                                   max(indices)))
            return

    def _scaled(self, value: str, factor: float, user: int | None) -> tuple[int, str] | None:
        """(index, operand) when value is Mul(operand, factor) read by user alone."""
        producer = self.producer.get(value)
        if not self._is(producer, "Mul") or self._only_consumer(value) != user or len(self.nodes[producer].input) != 2:
            return None
        a, b = self.nodes[producer].input  # type: ignore[index]
        if self._close(b, factor):
            return producer, a  # type: ignore[return-value]
        if self._close(a, factor):
            return producer, b  # type: ignore[return-value]
        return None

    def _cube_of(self, x: str, value: str, user: int) -> list[int] | None:
        """The nodes computing x**3 as value (Pow(x, 3), or x * (x * x) in either order), each read once."""
        producer = self.producer.get(value)
        if producer is None or self._only_consumer(value) != user:
            return None
        node = self.nodes[producer]
        if node.op_type == "Pow" and node.input[0] == x and self._close(node.input[1], 3.0):
            return [producer]
        if node.op_type != "Mul" or x not in node.input:
            return None
        square = self._other(node, x) if list(node.input) != [x, x] else None
        s_index = self.producer.get(square) if square else None
        if s_index is None or not self._is(s_index, "Mul") or list(self.nodes[s_index].input) != [x, x] \
                or self._only_consumer(square or "") != producer:
            return None
        return [s_index, producer]

    def _gelu_tail(self, x: str, inner: str) -> list[int] | None:
        """The nodes of x * 0.5 * (1 + inner) after inner, in the orders exporters write them."""
        add = self._only_consumer(inner)
        if not self._is(add, "Add") or not self._close(self._other(self.nodes[add], inner) or "", 1.0):
            return None
        a_out = self.nodes[add].output[0]
        user = self._only_consumer(a_out)
        if not self._is(user, "Mul"):
            return None
        other = self._other(self.nodes[user], a_out)
        u_out = self.nodes[user].output[0]
        indices = [add, user]
        if other == x:  # (x * (1 + f)) * 0.5
            last = self._only_consumer(u_out)
            if not self._is(last, "Mul") or not self._close(self._other(self.nodes[last], u_out) or "", 0.5):
                return None
            indices.append(last)  # type: ignore[arg-type]
        elif other is not None and self._close(other, 0.5):  # x * ((1 + f) * 0.5)
            last = self._only_consumer(u_out)
            if not self._is(last, "Mul") or self._other(self.nodes[last], u_out) != x:
                return None
            indices.append(last)  # type: ignore[arg-type]
        else:  # (x * 0.5) * (1 + f)
            half = self.producer.get(other) if other else None
            if half is None or not self._is(half, "Mul") or self._only_consumer(other or "") != user:
                return None
            if not self._close(self._other(self.nodes[half], x) or "", 0.5):
                return None
            indices.append(half)
        return indices  # type: ignore[return-value]

    def _close(self, value: str, target: float) -> bool:
        scalar = self._scalar(value) if value else None
        return scalar is not None and math.isclose(scalar, target, rel_tol=1e-4)

    def _match_channel_shuffle(self, index: int, node: Any) -> None:
        """Reshape (N, C, *S) -> (N, g, C/g, *S), Transpose [0, 2, 1, ...], Reshape back."""
        x = node.input[0]
        before, split = self.shape(x), self.shape(node.output[0])
        t_index = self._only_consumer(node.output[0])
        if before is None or split is None or not self._is(t_index, "Transpose") or None in before or None in split:
            return
        if len(split) != len(before) + 1 or split[0] != before[0] or split[3:] != before[2:]:
            return
        groups = split[1]
        if groups * split[2] != before[1]:  # type: ignore[operator]
            return
        transpose = self.nodes[t_index]
        perm = list(_attrs(transpose).get("perm", []))
        if perm != [0, 2, 1, *range(3, len(split))]:
            return
        r_index = self._only_consumer(transpose.output[0])
        if not self._is(r_index, "Reshape") or self.shape(self.nodes[r_index].output[0]) != before:
            return
        self._claim([index, t_index, r_index],
                    lambda: self._emit_fused("channel_shuffle", {"groups": groups}, x, index, r_index))

    def _match_flat_gather(self, index: int, node: Any) -> None:
        """Reshape to (N*...,) then Gather of arange indices in a new shape: torch.export's as_strided, a reshape."""
        x, flat = node.input[0], node.output[0]
        before, after = self.shape(x), self.shape(flat)
        g_index = self._only_consumer(flat)
        if before is None or None in before or after is None or len(after) != 1 or before[0] != 1 \
                or not self._is(g_index, "Gather"):
            return
        gather = self.nodes[g_index]
        if gather.input[0] != flat or int(_attrs(gather).get("axis", 0)) != 0 or not self.is_const(gather.input[1]) \
                or gather.input[1] in self.large or math.prod(self.shape(gather.input[1]) or (0,)) > MAX_CONSTANT_VALUES:
            return
        import numpy as np

        indices = self.const(gather.input[1])
        total = math.prod(before)  # type: ignore[arg-type]
        if indices.ndim < 2 or indices.shape[0] != 1 or indices.size != total \
                or not np.array_equal(indices.reshape(-1), np.arange(total)):
            return
        shape = [int(d) for d in indices.shape[1:]]
        self._claim([index, g_index], lambda: self._emit_fused("reshape", {"shape": shape}, x, index, g_index))

    def _match_groupnorm(self, index: int, node: Any) -> None:
        """torch.onnx's GroupNorm: Reshape (N, G, -1), InstanceNormalization (scale 1, bias 0), Reshape back,
        then Mul and Add by the per-channel weight and bias (absent without affine)."""
        import numpy as np

        first = self.producer.get(node.input[0])
        if first is None or not self._is(first, "Reshape") or self._only_consumer(node.input[0]) != index \
                or len(node.input) < 3 or not all(self._small_const(v) for v in node.input[1:3]):
            return
        x = self.nodes[first].input[0]
        before, grouped = self.shape(x), self.shape(node.input[0])
        if before is None or grouped is None or None in before or None in grouped or len(before) < 3 \
                or len(grouped) != 3 or grouped[0] != before[0]:
            return
        groups, channels = int(grouped[1]), int(before[1])  # type: ignore[arg-type]
        if channels % groups or grouped[2] * groups != math.prod(before[1:]):  # type: ignore[operator]
            return
        if not (np.all(self.const(node.input[1]) == 1) and np.all(self.const(node.input[2]) == 0)):
            return
        back = self._only_consumer(node.output[0])
        if not self._is(back, "Reshape") or self.shape(self.nodes[back].output[0]) != before:
            return
        indices, out = [first, index, back], self.nodes[back].output[0]
        mul = self._only_consumer(out)
        affine = False
        if self._is(mul, "Mul") and _per_channel(self, out, self._other(self.nodes[mul], out) or "") == channels \
                and self.is_const(self._other(self.nodes[mul], out) or ""):
            add = self._only_consumer(self.nodes[mul].output[0])
            m_out = self.nodes[mul].output[0]
            shift = self._other(self.nodes[add], m_out) if self._is(add, "Add") else None
            if shift and self.is_const(shift) and _per_channel(self, m_out, shift) == channels:
                indices += [mul, add]  # type: ignore[list-item]
                affine = True
        eps = float(_attrs(node).get("epsilon", 1e-5))
        attrs = {"num_groups": groups, "eps": eps, "affine": affine}
        params = {"scale": (channels,), "shift": (channels,)} if affine else {}
        self._claim(indices, lambda: self._emit_fused("groupnorm", attrs, x, first, max(indices), params))

    def _reduce_axes(self, node: Any) -> list[int] | None:
        """A ReduceMean's axes, normalised, when constant and keepdims is 1; else None."""
        a = _attrs(node)
        rank = self.rank(node.input[0])
        if rank is None or not a.get("keepdims", 1):
            return None
        if self.opset >= 18:
            if len(node.input) < 2 or not self._small_const(node.input[1]):
                return None
            axes = [int(v) for v in self.const(node.input[1]).reshape(-1)]
        else:
            axes = [int(v) for v in a.get("axes", [])]
        normal = [_normalized_axis(axis, rank) for axis in axes]
        return None if not axes or None in normal else sorted(normal)  # type: ignore[type-var]

    def _match_layernorm(self, index: int, node: Any) -> None:
        """LayerNorm as exporters wrote it before opset 17: ReduceMean, Sub, Pow 2, ReduceMean, Add eps, Sqrt,
        Div, then Mul by the weight and Add of the bias (each absent without them)."""
        x, mean = node.input[0], node.output[0]
        dims, axes = self.shape(x), self._reduce_axes(node)
        if dims is None or None in dims or not axes or axes != list(range(axes[0], len(dims))) or axes[0] < 1:
            return
        sub = self._only_consumer(mean)
        if not self._is(sub, "Sub") or list(self.nodes[sub].input) != [x, mean]:
            return
        centred = self.nodes[sub].output[0]
        users = self.consumers.get(centred, [])
        if len(users) != 2 or centred in self.graph_outputs:
            return
        power = next((u for u in users if self._is(u, "Pow")), None)
        divide = next((u for u in users if self._is(u, "Div")), None)
        if power is None or divide is None or not self._close(self.nodes[power].input[1], 2.0):
            return
        variance = self._only_consumer(self.nodes[power].output[0])
        if not self._is(variance, "ReduceMean") or self._reduce_axes(self.nodes[variance]) != axes:
            return
        add = self._only_consumer(self.nodes[variance].output[0])
        if not self._is(add, "Add"):
            return
        eps = self._scalar(self._other(self.nodes[add], self.nodes[variance].output[0]) or "")
        root = self._only_consumer(self.nodes[add].output[0])
        if eps is None or not self._is(root, "Sqrt") or self._only_consumer(self.nodes[root].output[0]) != divide \
                or list(self.nodes[divide].input) != [centred, self.nodes[root].output[0]]:  # type: ignore[index]
            return
        normalized = [int(d) for d in dims[axes[0]:]]  # type: ignore[arg-type]
        indices = [index, sub, power, variance, add, root, divide]  # type: ignore[list-item]
        out, affine, bias = self.nodes[divide].output[0], False, False  # type: ignore[index]

        def per_value(value: str | None) -> bool:
            shape = self.shape(value) if value and self.is_const(value) else None
            return shape is not None and math.prod(shape) == math.prod(normalized) and \
                tuple(shape[-len(normalized):]) == tuple(normalized[-len(shape):])

        mul = self._only_consumer(out)
        if self._is(mul, "Mul") and per_value(self._other(self.nodes[mul], out)):
            indices.append(mul)  # type: ignore[arg-type]
            out, affine = self.nodes[mul].output[0], True
            shift = self._only_consumer(out)
            if self._is(shift, "Add") and per_value(self._other(self.nodes[shift], out)):
                indices.append(shift)  # type: ignore[arg-type]
                bias = True
        attrs = {"normalized_shape": normalized, "eps": eps, "elementwise_affine": affine, "bias": bias}
        params = {"scale": tuple(normalized), **({"shift": tuple(normalized)} if bias else {})} if affine else {}
        self._claim(indices, lambda: self._emit_fused("layernorm", attrs, x, index, max(indices), params))

    def _small_const(self, value: str) -> bool:
        return bool(value) and self.is_const(value) and value not in self.large \
            and math.prod(self.shape(value) or (MAX_CONSTANT_VALUES + 1,)) <= MAX_CONSTANT_VALUES

    def _match_reshape(self, index: int, node: Any) -> None:
        self._match_channel_shuffle(index, node)
        if index not in self.skip and index not in self.fused:
            self._match_flat_gather(index, node)

    def _emit_fused(self, op_type: str, attrs: dict[str, Any], x: str, first: int, last: int,
                    params: dict[str, Any] | None = None) -> None:
        node, end = self.nodes[first], self.nodes[last]
        source = self.layer_of.get(x)
        if source is None:
            return self._map_none(end)
        # the module the pattern came from when it is the whole of one (torchvision's LayerNorm2d, an nn.SiLU)
        fused = self.members.get(last, [first, last])
        path, count = self.scopes.get(node.name, ("", 0))
        whole = path and count == len(fused) and all(self.scopes.get(self.nodes[i].name, ("",))[0] == path for i in fused)
        name = self.builder.add(op_type, attrs, inputs=[source], name=path if whole else _node_name(node, self.names),
                                where=_where(node, first))
        self._done(end, name, self.sample_shape(end.output[0]), params)
        return None

    # ---- conversion of one node ----

    def _done(self, node: Any, layer: str, shape: tuple[int, ...] | None, params: dict[str, Any] | None = None) -> None:
        self.layer_of[node.output[0]] = layer
        if shape is not None or params:
            self.builder.expect(layer, shape=shape, params=params)

    def _map_none(self, node: Any) -> None:
        for out in node.output:
            if out:
                self.layer_of[out] = None

    def _convert(self, node: Any) -> None:
        """Map one node through its handler; unmapped ops go to Builder.unsupported."""
        handler = _HANDLERS.get(node.op_type) if node.domain in _DOMAINS else None
        activations = [name for name in node.input if name and not self.is_const(name)]
        if any(self.layer_of.get(name, "") is None for name in activations):
            # reads an op that could not be mapped: no layer, but an unmapped op here is listed too
            if handler is None:
                self.builder.unsupported(node.op_type if node.domain in _DOMAINS else f"{node.domain}.{node.op_type}",
                                         inputs=[self.builder.input], shape=None, name=_node_name(node, self.names),
                                         where=_where(node, self._index(node)))
            return self._map_none(node)
        missing = [name for name in activations if name not in self.layer_of]
        if missing:
            raise SpecError(f"{self.shown}: {_where(node, self._index(node))}: input {missing[0]!r} is not the model's "
                            "input, an initializer or an earlier node's output")
        label = node.op_type if node.domain in _DOMAINS else f"{node.domain}.{node.op_type}"
        if handler is None:
            return self.unsupported(node, label)
        if not activations:
            return self.unsupported(node, f"{label} (of constants only)")
        reason = handler(self, node)
        if reason:  # a form of the op archcalc has no layer for
            self.unsupported(node, f"{label} ({reason})")
        return None

    def unsupported(self, node: Any, label: str) -> None:
        inputs = [self.layer_of[name] for name in node.input if name and not self.is_const(name) and self.layer_of.get(name)]
        shape = self.sample_shape(node.output[0]) if node.output else None
        layer = self.builder.unsupported(label, inputs=inputs or [self.builder.input], shape=shape,
                                         name=_node_name(node, self.names), where=_where(node, self._index(node)))
        self._map_none(node)
        if layer is not None:
            self.layer_of[node.output[0]] = layer

    def _index(self, node: Any) -> int:
        if not hasattr(self, "_indices"):
            self._indices = {id(n): i for i, n in enumerate(self.nodes)}
        return self._indices.get(id(node), -1)

    def add(self, node: Any, op_type: str, attrs: dict[str, Any], inputs: list[str] | None = None,
            params: dict[str, Any] | None = None, name: str | None = None, expect: bool = True) -> str:
        """Add the archcalc layer for node (reading its first input unless told), and expect ONNX's shapes."""
        sources = [self.layer_of[v] for v in (inputs if inputs is not None else node.input[:1])]
        layer = self.builder.add(op_type, attrs, inputs=sources, name=name or _node_name(node, self.names),
                                 where=_where(node, self._index(node)))
        self._done(node, layer, self.sample_shape(node.output[0]) if expect else None, params)
        return layer


def _checked_input_shape(input_shape: Any, shown: str) -> tuple[int, ...] | None:
    """input_shape as a tuple (``"3x224x224"`` parsed as --input is), or None."""
    if input_shape is None:
        return None
    if isinstance(input_shape, str):
        return parse_input_shape(input_shape)
    return check_input_shape(input_shape, f"{shown}: input_shape")


def _model_name(name: str, shown: str) -> str:
    from archcalc.spec import name_problem

    cleaned = " ".join(name.split())[:120]
    if cleaned and name_problem(cleaned, "name", spaces=True) is None:
        return cleaned
    stem = Path(shown).stem
    return stem if stem and name_problem(stem, "name", spaces=True) is None else "onnx-model"


#: ONNX ops whose initializer inputs are an archcalc layer's parameters.
_WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "LayerNormalization",
                           "InstanceNormalization", "GroupNormalization", "PRelu"})


def _has_values(tensor: Any) -> bool:
    """Whether an initializer holds its values (inline, in one of the typed fields, or as external data)."""
    if tensor.data_location == 1 or tensor.raw_data:  # TensorProto.EXTERNAL
        return True
    return any(len(getattr(tensor, field)) for field in
               ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data"))


def _node_name(node: Any, names: Mapping[str, str] | None = None) -> str:
    name = node.name or (node.output[0] if node.output else node.op_type)
    return names.get(name, name) if names else name


def _module_paths(nodes: list[Any]) -> tuple[dict[str, str], dict[str, tuple[str, int]]]:
    """torch.onnx's scoped node names as the module paths they come from, so that an exported
    PyTorch model imports with the names of its PyTorch import: ``/layer1/layer1.0/conv1/Conv`` ->
    ``layer1.0.conv1``; a node of a module that holds other modules, or one of several nodes of
    a module, gets its op after the path (``/layer1/layer1.0/Add`` -> ``layer1.0.add``).
    Names not in that form (no leading ``/``) are kept. Also returns each scoped node's module
    path with the number of nodes in it, for naming fused patterns after their module."""
    paths: dict[str, tuple[str, str]] = {}
    for node in nodes:
        if not node.name.startswith("/") or node.name.count("/") < 1:
            continue
        *scopes, last = node.name[1:].split("/")
        path = ""
        for part in scopes:
            path = part if not path or part == path or part.startswith(path + ".") else f"{path}.{part}"
        paths[node.name] = (path, last)
    counts: dict[str, int] = {}
    for path, _ in paths.values():
        counts[path] = counts.get(path, 0) + 1
    containers = {prefix for path, _ in paths.values() for prefix in _prefixes(path)}
    names: dict[str, str] = {}
    for name, (path, last) in paths.items():
        op = last.lower()
        names[name] = path if path and counts[path] == 1 and path not in containers else (f"{path}.{op}" if path else op)
    scopes = {name: (path, counts[path]) for name, (path, _) in paths.items() if path and path not in containers}
    return names, scopes


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def _where(node: Any, index: int | None) -> str:
    if node.name:
        return f"node {node.name!r} ({node.op_type})"
    out = node.output[0] if node.output else ""
    return f"node {index} ({node.op_type}, output {out!r})" if index is not None and index >= 0 else \
        f"node ({node.op_type}, output {out!r})"


def _attrs(node: Any) -> dict[str, Any]:
    """A node's attributes as Python values (ints, floats, strings, lists; tensors left as protos)."""
    from onnx import helper

    values: dict[str, Any] = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, float):
            value = _float32(value)
        elif isinstance(value, list) and value and all(isinstance(v, float) for v in value):
            value = [_float32(v) for v in value]
        values[attr.name] = value
    return values


def _float32(value: float) -> float:
    """An ONNX float attribute (stored as float32) as the shortest decimal that is that float32:
    ``epsilon`` 9.999999747378752e-06 is the 1e-05 the exporter was given."""
    import numpy as np

    return float(str(np.float32(value)))




# ---- handlers: one per ONNX op; each adds the layer(s) or returns why this form cannot be mapped ----

Handler = Callable[[_Importer, Any], "str | None"]


def _spatial(imp: _Importer, value: str) -> tuple[int, ...] | None:
    dims = imp.shape(value)
    if dims is None or len(dims) < 3 or any(d is None for d in dims[2:]):
        return None
    return tuple(int(d) for d in dims[2:])  # type: ignore[arg-type]


def _window_padding(imp: _Importer, node: Any, a: dict[str, Any], kernel: list[int], stride: list[int],
                    dilation: list[int]) -> Any:
    """ONNX's pads/auto_pad as archcalc's padding: 0, per axis, pairs or "same"; a str reason if none fits."""
    n = len(kernel)
    auto = a.get("auto_pad", "NOTSET") or "NOTSET"
    if auto == "VALID":
        return 0
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        if auto == "SAME_UPPER":  # the odd pixel at the end: TensorFlow's "same", as archcalc's
            return "same"
        spatial = _spatial(imp, node.input[0])
        if spatial is None:
            return "auto_pad SAME_LOWER on an input of unknown size"
        pairs = []
        for size, k, s, d in zip(spatial, kernel, stride, dilation, strict=True):
            total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
            pairs.append([total - total // 2, total // 2])  # SAME_LOWER: the odd pixel at the start
        return pairs
    if auto != "NOTSET":
        raise SpecError(f"{imp.shown}: {_where(node, imp._index(node))}: auto_pad must be NOTSET, SAME_UPPER, SAME_LOWER or "
                        f"VALID, got {auto!r}")
    pads = list(a.get("pads", [0] * (2 * n)))
    if len(pads) != 2 * n:
        raise SpecError(f"{imp.shown}: {_where(node, imp._index(node))}: pads must have {2 * n} values "
                        f"[x1_begin, ..., x1_end, ...], got {pads}")
    if any(p < 0 for p in pads):
        return "negative pads"
    pairs = [[pads[i], pads[i + n]] for i in range(n)]
    if all(b == 0 and e == 0 for b, e in pairs):
        return 0
    if all(b == e for b, e in pairs):
        return [b for b, _ in pairs]
    return pairs


def _shared_value(imp: _Importer, value: str) -> float | None:
    """The one value every element of a constant holds, as the shortest decimal of its float32;
    None when they differ (trained weights), or the constant is too large to read."""
    import numpy as np

    try:
        array = np.asarray(imp.const(value)).reshape(-1)
    except SpecError:
        return None
    if not array.size or not (array == array[0]).all() or not np.isfinite(array[0]):
        return None
    return float(str(np.float32(array[0]))) if array.dtype == np.float32 else float(array[0])


def _const_input(imp: _Importer, node: Any, position: int) -> Any:
    """The constant at input position (None when absent); raises _NotConstant when it is an activation."""
    if len(node.input) <= position or not node.input[position]:
        return None
    name = node.input[position]
    if not imp.is_const(name):
        raise _NotConstant(name)
    return imp.const(name)


class _NotConstant(Exception):
    """A setting input (shape, pads, scales...) computed at run time: archcalc cannot read it."""


def _handles_settings(handler: Handler) -> Handler:
    def wrapped(imp: _Importer, node: Any) -> str | None:
        try:
            return handler(imp, node)
        except _NotConstant as error:
            return f"input {error.args[0]!r} computed at run time"
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _conv_weights(imp: _Importer, node: Any) -> tuple[tuple[int, ...], bool] | str:
    """Conv's and ConvTranspose's weight shape and whether a bias is given, both initializers; or
    why the node cannot be mapped."""
    if len(node.input) < 2 or not imp.is_const(node.input[1]):
        return "a weight that is not an initializer"
    has_bias = len(node.input) > 2 and bool(node.input[2])
    if has_bias and not imp.is_const(node.input[2]):
        return "a bias that is not an initializer"
    w = tuple(imp.shape(node.input[1]) or ())
    return (w, has_bias) if 1 <= len(w) - 2 <= 3 else f"a {len(w) - 2}D kernel"


def _conv(imp: _Importer, node: Any) -> str | None:
    """Conv: weight (f, c/groups, *k) and optional bias (f,) initializers."""
    weights = _conv_weights(imp, node)
    if isinstance(weights, str):
        return weights
    w, has_bias = weights
    n = len(w) - 2
    a = _attrs(node)
    kernel = list(w[2:])
    if "kernel_shape" in a and list(a["kernel_shape"]) != kernel:
        raise SpecError(f"{imp.shown}: {_where(node, imp._index(node))}: kernel_shape {list(a['kernel_shape'])} differs "
                        f"from its weight's {kernel}")
    stride, dilation = list(a.get("strides", [1] * n)), list(a.get("dilations", [1] * n))
    padding = _window_padding(imp, node, a, kernel, stride, dilation)
    if isinstance(padding, str) and padding != "same":
        return padding
    attrs = {"filters": w[0], "kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation,
             "groups": int(a.get("group", 1)), "bias": has_bias}
    params = {"weight": w, **({"bias": tuple(imp.shape(node.input[2]) or ())} if has_bias else {})}
    imp.add(node, "conv", attrs, params=params)
    return None


def _conv_transpose(imp: _Importer, node: Any) -> str | None:
    """ConvTranspose: weight (c, f/groups, *k); pads, output_padding or output_shape as PyTorch's padding."""
    weights = _conv_weights(imp, node)
    if isinstance(weights, str):
        return weights
    w, has_bias = weights
    n = len(w) - 2
    a = _attrs(node)
    groups = int(a.get("group", 1))
    kernel = list(w[2:])
    stride, dilation = list(a.get("strides", [1] * n)), list(a.get("dilations", [1] * n))
    output_padding = list(a.get("output_padding", [0] * n))
    auto = a.get("auto_pad", "NOTSET") or "NOTSET"
    spatial = _spatial(imp, node.input[0])
    if "output_shape" in a or auto in ("SAME_UPPER", "SAME_LOWER"):
        if spatial is None:
            return "an output_shape or auto_pad on an input of unknown size"
        wanted = list(a["output_shape"])[-n:] if "output_shape" in a else [i * s for i, s in zip(spatial, stride, strict=True)]
        pairs = []
        for i, s, k, d, op, out in zip(spatial, stride, kernel, dilation, output_padding, wanted, strict=True):
            total = s * (i - 1) + op + (k - 1) * d + 1 - out
            half = total // 2
            pairs.append((half, total - half) if auto == "SAME_UPPER" else (total - half, half))
    elif auto == "VALID":
        pairs = [(0, 0)] * n
    else:
        pads = list(a.get("pads", [0] * (2 * n)))
        if len(pads) != 2 * n:
            raise SpecError(f"{imp.shown}: {_where(node, imp._index(node))}: pads must have {2 * n} values, got {pads}")
        pairs = [(pads[i], pads[i + n]) for i in range(n)]
    padding, extra = [], []
    for (begin, end), op in zip(pairs, output_padding, strict=True):
        if begin < 0 or end < 0 or end > begin:
            return f"pads {list(pairs)} (PyTorch's form needs begin >= end, with output_padding making up the difference)"
        padding.append(begin)
        extra.append(op + begin - end)
    attrs = {"filters": w[1] * groups, "kernel": kernel, "stride": stride, "padding": padding,
             "output_padding": extra, "dilation": dilation, "groups": groups, "bias": has_bias}
    params = {"weight": w, **({"bias": tuple(imp.shape(node.input[2]) or ())} if has_bias else {})}
    imp.add(node, "conv_transpose", attrs, params=params)
    return None


def _gemm(imp: _Importer, node: Any) -> str | None:
    """Gemm Y = alpha * A B' + beta * C, B an initializer: a linear layer (alpha scales the weight)."""
    a = _attrs(node)
    if a.get("transA", 0):
        return "transA (the batch axis moved)"
    if len(node.input) < 2 or not imp.is_const(node.input[1]) or imp.is_const(node.input[0]):
        return "a second operand that is not an initializer"
    b = tuple(imp.shape(node.input[1]) or ())
    if len(b) != 2:
        return f"a weight of shape {b}"
    units, n_in = (b[0], b[1]) if a.get("transB", 0) else (b[1], b[0])
    has_bias = len(node.input) > 2 and bool(node.input[2]) and a.get("beta", 1.0) != 0
    if has_bias:
        if not imp.is_const(node.input[2]):
            return "a bias that is not an initializer"
        c = tuple(imp.shape(node.input[2]) or ())
        if math.prod(c) != units or (c and c[-1] != units):
            return f"a bias of shape {c}, not one per unit ({units})"
    params = {"weight": (units, n_in), **({"bias": (units,)} if has_bias else {})}
    imp.add(node, "linear", {"units": units, "bias": has_bias}, params=params)
    return None


def _matmul(imp: _Importer, node: Any) -> str | None:
    """MatMul by a 2D initializer (in, out): a linear layer on the last axis; + Add of a bias (out,)."""
    x, w = node.input[0], node.input[1]
    if not imp.is_const(w):
        return "of two activations (archcalc has no batched matrix product)"
    if imp.is_const(x):
        return "a constant first operand"
    shape = tuple(imp.shape(w) or ())
    if len(shape) != 2:
        return f"a weight of shape {shape}"
    n_in, units = shape
    user = imp._only_consumer(node.output[0])
    bias_node = None
    if imp._is(user, "Add") and user not in imp.skip:
        bias = imp._other(imp.nodes[user], node.output[0])
        if bias and imp.is_const(bias):
            b = tuple(imp.shape(bias) or ())
            if b and b[-1] == units and math.prod(b) == units:
                bias_node = imp.nodes[user]
    params = {"weight": (units, n_in), **({"bias": (units,)} if bias_node is not None else {})}
    layer = imp.add(node, "linear", {"units": units, "bias": bias_node is not None}, params=params,
                    expect=bias_node is None)
    if bias_node is not None:
        imp.skip.add(user)  # type: ignore[arg-type]
        imp._done(bias_node, layer, imp.sample_shape(bias_node.output[0]))
    return None


def _per_channel(imp: _Importer, x: str, const: str) -> int | None:
    """C when the constant broadcasts as one value per channel of x ((C, 1, ..., 1) aligned to axis 1)."""
    dims, c = imp.shape(x), imp.shape(const)
    if dims is None or c is None or len(c) > len(dims) or len(dims) < 2 or dims[1] is None:
        return None
    padded = (1,) * (len(dims) - len(c)) + tuple(c)
    if padded[0] == 1 and padded[1] == dims[1] and all(v == 1 for v in padded[2:]) and dims[1] > 1:
        return int(dims[1])
    return None


def _binary(op_type: str) -> Handler:
    def handler(imp: _Importer, node: Any) -> str | None:
        consts = [name for name in node.input if imp.is_const(name)]
        if not consts:
            if len(node.input) < 2:
                return f"{len(node.input)} input"
            imp.add(node, op_type, {}, inputs=list(node.input))
            return None
        x = next(name for name in node.input if not imp.is_const(name))
        channels = _per_channel(imp, x, consts[0]) if op_type == "mul" else None
        if channels is None:
            return "by a constant" if op_type == "mul" else "of a constant"
        # a per-channel scale (ConvNeXt's layer scale), with a per-channel Add after it: Caffe's Scale with bias
        user = imp._only_consumer(node.output[0])
        bias_node = None
        if imp._is(user, "Add") and user not in imp.skip:
            other = imp._other(imp.nodes[user], node.output[0])
            if other and imp.is_const(other) and _per_channel(imp, node.output[0], other) == channels:
                bias_node = imp.nodes[user]
        params = {"scale": (channels,), **({"shift": (channels,)} if bias_node is not None else {})}
        attrs: dict[str, Any] = {"bias": bias_node is not None}
        init = _shared_value(imp, consts[0])
        if init is not None:  # every value alike: the init a spec gives (ConvNeXt's layer scale 1e-6)
            attrs["init"] = init
        layer = imp.add(node, "scale", attrs, inputs=[x], params=params, expect=bias_node is None)
        if bias_node is not None:
            imp.skip.add(user)  # type: ignore[arg-type]
            imp._done(bias_node, layer, imp.sample_shape(bias_node.output[0]))
        return None
    handler.__doc__ = f"{op_type} of activations (broadcast), or a per-channel scale by an initializer."
    return handler


def _unary(op_type: str, attrs: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Handler:
    def handler(imp: _Importer, node: Any) -> str | None:
        imp.add(node, op_type, attrs(_attrs(node)) if attrs else {})
        return None
    handler.__doc__ = f"as archcalc's {op_type}"
    return handler


def _hardsigmoid(imp: _Importer, node: Any) -> str | None:
    a = _attrs(node)
    alpha, beta = a.get("alpha", 0.2), a.get("beta", 0.5)
    if not (math.isclose(alpha, 1 / 6, rel_tol=1e-6) and math.isclose(beta, 0.5, rel_tol=1e-6)):
        return f"alpha {alpha:g}, beta {beta:g}; archcalc's hardsigmoid is relu6(x + 3) / 6 (alpha 1/6, beta 0.5)"
    imp.add(node, "hardsigmoid", {})
    return None


def _prelu(imp: _Importer, node: Any) -> str | None:
    if not imp.is_const(node.input[1]):
        return "a slope that is not an initializer"
    slope = tuple(imp.shape(node.input[1]) or ())
    count = math.prod(slope)
    if count != 1 and _per_channel(imp, node.input[0], node.input[1]) is None:
        return f"slopes of shape {slope}, not one shared or one per channel"
    imp.add(node, "prelu", {"num_parameters": count}, params={"slope": (count,)})
    return None


def _bound(value: Any, default: float) -> float:
    if value is None:
        return default
    number = float(value.reshape(-1)[0]) if hasattr(value, "reshape") else float(value)
    return default if math.isinf(number) or abs(number) >= 3.4e38 else number


@_handles_settings
def _clip(imp: _Importer, node: Any) -> str | None:
    """Clip: min/max as attributes (opset < 11) or inputs; ReLU6 for 0..6, ReLU for 0..inf, else hardtanh."""
    if imp.opset < 11:
        a = _attrs(node)
        low, high = _bound(a.get("min"), -math.inf), _bound(a.get("max"), math.inf)
    else:
        low, high = _bound(_const_input(imp, node, 1), -math.inf), _bound(_const_input(imp, node, 2), math.inf)
    if low == 0 and high == 6:
        imp.add(node, "relu6", {})
    elif low == 0 and math.isinf(high):
        imp.add(node, "relu", {})
    elif math.isfinite(low) and math.isfinite(high) and high > low:
        imp.add(node, "hardtanh", {"min_val": low, "max_val": high})
    else:
        return f"min {low:g}, max {high:g}"
    return None


def _normalized_axis(axis: int, rank: int | None) -> int | None:
    if rank is None or not -rank <= axis < rank:
        return None
    return axis + rank if axis < 0 else axis


def _concat(imp: _Importer, node: Any) -> str | None:
    axis = _normalized_axis(int(_attrs(node).get("axis", 1)), imp.rank(node.output[0]))
    if axis != 1:
        return f"along axis {_attrs(node).get('axis')}; archcalc concatenates channels (axis 1)"
    if any(imp.is_const(name) for name in node.input):
        return "a constant input"
    if len(node.input) < 2:
        imp.add(node, "identity", {})
    else:
        imp.add(node, "concat", {}, inputs=list(node.input))
    return None


@_handles_settings
def _split(imp: _Importer, node: Any) -> str | None:
    """Split into slices along one axis: sizes from the `split` attribute or input, or equal parts."""
    a = _attrs(node)
    dims = imp.shape(node.input[0])
    axis = _normalized_axis(int(a.get("axis", 0)), None if dims is None else len(dims))
    if axis is None or dims is None or dims[axis] is None:
        return "an axis of unknown size"
    if axis == 0:
        return "along the batch axis"
    size = int(dims[axis])  # type: ignore[arg-type]
    given = _const_input(imp, node, 1) if imp.opset >= 13 or (imp.opset < 2 and len(node.input) > 1) else None
    if given is not None:
        sizes = [int(v) for v in given.reshape(-1)]
    elif "split" in a:
        sizes = [int(v) for v in a["split"]]
    else:
        parts = len(node.output) if "num_outputs" not in a else int(a["num_outputs"])
        step = -(-size // parts)
        sizes = [min(step, size - i * step) for i in range(parts)]
    if len(sizes) != len(node.output) or sum(sizes) != size or any(s < 0 for s in sizes):
        raise SpecError(f"{imp.shown}: {_where(node, imp._index(node))}: split sizes {sizes} do not cut axis {axis} of "
                        f"size {size} into {len(node.output)} outputs")
    source, base, start = imp.layer_of[node.input[0]], _node_name(node, imp.names), 0
    for i, (out, part) in enumerate(zip(node.output, sizes, strict=True)):
        if out:
            name = imp.builder.add("slice", {"dim": axis, "start": start, "stop": start + part, "step": 1},
                                   inputs=[source], name=base if len(sizes) == 1 else f"{base}_{i}",
                                   where=_where(node, imp._index(node)))
            imp.layer_of[out] = name
            shape = imp.sample_shape(out)
            if shape is not None:
                imp.builder.expect(name, shape=shape)
        start += part
    return None


@_handles_settings
def _slice(imp: _Importer, node: Any) -> str | None:
    """Slice: starts/ends/axes/steps as attributes (opset < 10) or constant inputs; one archcalc slice per axis."""
    dims = imp.shape(node.input[0])
    if dims is None:
        return "an input of unknown shape"
    rank = len(dims)
    if imp.opset < 10:
        a = _attrs(node)
        starts, ends = list(a.get("starts", [])), list(a.get("ends", []))
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = [int(v) for v in _const_input(imp, node, 1).reshape(-1)]
        ends = [int(v) for v in _const_input(imp, node, 2).reshape(-1)]
        given_axes, given_steps = _const_input(imp, node, 3), _const_input(imp, node, 4)
        axes = [int(v) for v in given_axes.reshape(-1)] if given_axes is not None else list(range(len(starts)))
        steps = [int(v) for v in given_steps.reshape(-1)] if given_steps is not None else [1] * len(starts)
    cuts = []
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        k = _normalized_axis(int(axis), rank)
        if k is None or dims[k] is None:
            return f"axis {axis} of unknown size"
        if step <= 0:
            return f"step {step} (archcalc slices forwards)"
        size = int(dims[k])  # type: ignore[arg-type]
        first = min(max(start + size if start < 0 else start, 0), size)
        stop = min(max(end + size if end < 0 else end, 0), size)
        if first == 0 and stop == size and step == 1:
            continue
        if k == 0:
            return "along the batch axis"
        cuts.append((k, first, stop, step))
    if not cuts:
        imp.add(node, "identity", {})
        return None
    listed = sorted({_normalized_axis(int(axis), rank) for axis in axes})
    if rank >= 4 and listed == list(range(2, rank)) and all(step == 1 for *_, step in cuts):
        # a window of every spatial axis (2D, 3D), as archcalc and U-Nets write a crop: one crop layer
        spans = {k: (first, stop) for k, first, stop, _ in cuts}
        offset = [spans.get(k, (0, dims[k]))[0] for k in range(2, rank)]
        size = [spans[k][1] - spans[k][0] if k in spans else dims[k] for k in range(2, rank)]
        imp.add(node, "crop", {"size": size, "offset": offset})
        return None
    source, base = imp.layer_of[node.input[0]], _node_name(node, imp.names)
    for i, (k, first, stop, step) in enumerate(cuts):
        source = imp.builder.add("slice", {"dim": k, "start": first, "stop": stop, "step": step}, inputs=[source],
                                 name=base if i == 0 else f"{base}_{i}", where=_where(node, imp._index(node)))
    imp._done(node, source, imp.sample_shape(node.output[0]))
    return None


def _expand(imp: _Importer, node: Any) -> str | None:
    """Expand of a map whose spatial axes are 1 (or kept) to a larger size: every output value is its
    input position's, an adaptive average pool to that size (how archcalc and PyTorch export
    AdaptiveAvgPool2d(7) on a 1x1 map: VGG on CIFAR)."""
    dims, out = imp.shape(node.input[0]), imp.shape(node.output[0])
    if dims is None or out is None or len(dims) != len(out) or len(dims) < 3 or None in dims or None in out:
        return "an input or output of unknown shape"
    if dims[:2] != out[:2] or not all(n == 1 or n == o for n, o in zip(dims[2:], out[2:])):
        return "along the batch or channel axis, or of an axis longer than 1"
    imp.add(node, "adaptive_avgpool", {"output_size": [int(o) for o in out[2:]]})  # type: ignore[arg-type]
    return None


def _pool(op_type: str) -> Handler:
    def handler(imp: _Importer, node: Any) -> str | None:
        a = _attrs(node)
        kernel = [int(k) for k in a.get("kernel_shape", [])]
        n = len(kernel)
        if not 1 <= n <= 3:
            return f"kernel_shape {kernel}"
        stride, dilation = list(a.get("strides", [1] * n)), list(a.get("dilations", [1] * n))
        if op_type == "maxpool" and len(node.output) > 1 and node.output[1] and imp.consumers.get(node.output[1]):
            return "its Indices output used"
        if op_type == "avgpool" and any(d != 1 for d in dilation):
            return f"dilations {dilation}"
        padding = _window_padding(imp, node, a, kernel, stride, dilation)
        if isinstance(padding, str) and padding != "same":
            return padding
        ceil_mode = bool(a.get("ceil_mode", 0))
        include_pad = op_type == "avgpool" and bool(a.get("count_include_pad", 0))
        if isinstance(padding, list) and not ceil_mode and not include_pad:
            padding, ceil_mode = _ceil_for_end_padding(imp, node, padding, kernel, stride, dilation)
        attrs: dict[str, Any] = {"kernel": kernel, "stride": stride, "padding": padding, "ceil_mode": ceil_mode}
        if op_type == "maxpool":
            attrs["dilation"] = dilation
        else:  # ONNX's default is 0 (PyTorch's True): always given
            attrs["count_include_pad"] = bool(a.get("count_include_pad", 0))
        imp.add(node, op_type, attrs)
        return None
    handler.__doc__ = f"ONNX's {op_type}: kernel_shape, strides, pads or auto_pad, ceil_mode"
    return handler


def _ceil_for_end_padding(imp: _Importer, node: Any, padding: list[Any], kernel: list[int], stride: list[int],
                          dilation: list[int]) -> tuple[Any, bool]:
    """Padding past k//2 at the end (how exporters before opset 10 wrote a ceil-mode pool) as ceil_mode with the
    end padding PyTorch allows, when that gives ONNX's output size on every axis; else the padding unchanged."""
    pairs = [list(p) if isinstance(p, list) else [p, p] for p in padding]
    spatial = _spatial(imp, node.input[0])
    if spatial is None or all(max(b, e) <= k // 2 for (b, e), k in zip(pairs, kernel, strict=True)):
        return padding, False
    chosen = []
    for (before, after), size, k, s, d in zip(pairs, spatial, kernel, stride, dilation, strict=True):
        target = (size + before + after - d * (k - 1) - 1) // s + 1
        for end in range(k // 2 + 1):
            out = -(-(size + before + end - d * (k - 1) - 1) // s) + 1
            if (out - 1) * s >= size + before:  # PyTorch's ceil rule: no window starts in the end padding
                out -= 1
            if out == target and before <= k // 2:
                chosen.append([before, end])
                break
        else:
            return padding, False
    return chosen, True


@_handles_settings
def _reduce_mean(imp: _Importer, node: Any) -> str | None:
    """ReduceMean over every spatial axis: global average pooling (keepdims 0: then a flatten)."""
    a = _attrs(node)
    rank = imp.rank(node.input[0])
    if imp.opset >= 18:
        given = _const_input(imp, node, 1)
        axes = [int(v) for v in given.reshape(-1)] if given is not None else []
    else:
        axes = [int(v) for v in a.get("axes", [])]
    normal = sorted(_normalized_axis(axis, rank) for axis in axes) if rank else []  # type: ignore[type-var]
    if rank is None or rank < 3 or normal != list(range(2, rank)):
        return f"axes {axes or 'all'}; archcalc averages over every spatial axis (global average pooling)"
    if a.get("keepdims", 1):
        imp.add(node, "global_avgpool", {})
    else:
        name = _node_name(node, imp.names)
        pooled = imp.builder.add("global_avgpool", {}, inputs=[imp.layer_of[node.input[0]]], name=name,
                                 where=_where(node, imp._index(node)))
        flat = imp.builder.add("flatten", {"start_dim": 1, "end_dim": -1}, inputs=[pooled], name=f"{name}_flatten",
                               where=_where(node, imp._index(node)))
        imp._done(node, flat, imp.sample_shape(node.output[0]))
    return None


def _batchnorm(imp: _Importer, node: Any) -> str | None:
    if len(node.input) < 5 or not all(imp.is_const(name) for name in node.input[1:5]):
        return "statistics or scale that are not initializers"
    a = _attrs(node)
    # ONNX weighs the running average, PyTorch the batch: 1 - 0.9 in decimal is 0.1, not 1 - 0.9 in binary
    momentum = float(1 - Decimal(repr(float(a.get("momentum", 0.9)))))
    roles = ("scale", "shift", "running_mean", "running_var")
    params = {role: tuple(imp.shape(name) or ()) for role, name in zip(roles, node.input[1:5], strict=True)}
    imp.add(node, "batchnorm", {"eps": float(a.get("epsilon", 1e-5)), "momentum": momentum}, params=params)
    return None


def _layernorm(imp: _Importer, node: Any) -> str | None:
    dims = imp.shape(node.input[0])
    a = _attrs(node)
    axis = _normalized_axis(int(a.get("axis", -1)), None if dims is None else len(dims))
    if dims is None or axis is None or any(d is None for d in dims[axis:]):
        return "an input of unknown shape"
    if axis == 0:
        return "over the batch axis"
    if len(node.input) < 2 or not imp.is_const(node.input[1]) or (len(node.input) > 2 and node.input[2]
                                                                    and not imp.is_const(node.input[2])):
        return "a scale or bias that is not an initializer"
    normalized = [int(d) for d in dims[axis:]]  # type: ignore[arg-type]
    has_bias = len(node.input) > 2 and bool(node.input[2])
    scale = tuple(imp.shape(node.input[1]) or ())
    if math.prod(scale) != math.prod(normalized):
        return f"a scale of shape {scale}, not one per normalised value {tuple(normalized)}"
    params = {"scale": tuple(normalized), **({"shift": tuple(normalized)} if has_bias else {})}
    attrs = {"normalized_shape": normalized, "eps": float(a.get("epsilon", 1e-5)), "elementwise_affine": True, "bias": has_bias}
    imp.add(node, "layernorm", attrs, params=params)
    return None


def _instancenorm(imp: _Importer, node: Any) -> str | None:
    if len(node.input) < 3 or not (imp.is_const(node.input[1]) and imp.is_const(node.input[2])):
        return "a scale or bias that is not an initializer"
    params = {"scale": tuple(imp.shape(node.input[1]) or ()), "shift": tuple(imp.shape(node.input[2]) or ())}
    attrs = {"eps": float(_attrs(node).get("epsilon", 1e-5)), "affine": True, "track_running_stats": False}
    imp.add(node, "instancenorm", attrs, params=params)
    return None


def _groupnorm(imp: _Importer, node: Any) -> str | None:
    if len(node.input) < 3 or not (imp.is_const(node.input[1]) and imp.is_const(node.input[2])):
        return "a scale or bias that is not an initializer"
    a = _attrs(node)
    groups = int(a.get("num_groups", 0))
    dims = imp.shape(node.input[0])
    scale = tuple(imp.shape(node.input[1]) or ())
    if dims is None or len(dims) < 2 or scale != (dims[1],):
        return f"a scale of shape {scale}, one per group (opset 18's form); archcalc's, as PyTorch's, is one per channel"
    params = {"scale": scale, "shift": tuple(imp.shape(node.input[2]) or ())}
    imp.add(node, "groupnorm", {"num_groups": groups, "eps": float(a.get("epsilon", 1e-5)), "affine": True}, params=params)
    return None


def _lrn(imp: _Importer, node: Any) -> str | None:
    a = _attrs(node)
    attrs = {"size": int(a.get("size", 0)), "alpha": float(a.get("alpha", 1e-4)), "beta": float(a.get("beta", 0.75)),
             "k": float(a.get("bias", 1.0))}
    imp.add(node, "lrn", attrs)
    return None


def _reshape_to_output(imp: _Importer, node: Any) -> str | None:
    """Reshape, Flatten, Squeeze, Unsqueeze on an activation: archcalc's reshape to ONNX's inferred shape,
    when the batch axis stays the leading one (Flatten at axis 1 is archcalc's flatten)."""
    before, after = imp.shape(node.input[0]), imp.shape(node.output[0])
    if (after is None or None in after) and node.op_type == "Reshape" and before is not None and None not in before \
            and len(node.input) > 1 and imp.is_const(node.input[1]):
        after = _reshaped(before, [int(v) for v in imp.const(node.input[1]).reshape(-1)],
                          bool(_attrs(node).get("allowzero", 0)))  # shape inference left it open: ONNX's rule here
        if after is None:
            raise SpecError(f"{imp.shown}: {_where(node, imp._index(node))}: cannot reshape {_shape_text(before)} to "
                            f"{[int(v) for v in imp.const(node.input[1]).reshape(-1)]}")
        imp.shapes[node.output[0]] = after
    if after is None or any(d is None for d in after[1:]):
        return "an output of unknown shape"
    if before is None or not after or after[0] != before[0] or (after[0] is None and before[0] is None and len(after) < 1):
        return "a new batch axis (it merges or splits the batch)"
    if len(after) < 2:
        return "a scalar per sample"
    shape = [int(d) for d in after[1:]]  # type: ignore[arg-type]
    if node.op_type == "Flatten" and _normalized_axis(int(_attrs(node).get("axis", 1)), len(before)) == 1:
        imp.add(node, "flatten", {"start_dim": 1, "end_dim": -1})
    else:
        imp.add(node, "reshape", {"shape": shape})
    return None


def _reshaped(before: Sequence[Any], target: list[int], allowzero: bool) -> tuple[int, ...] | None:
    """ONNX Reshape's output shape: 0 copies the input's size there (unless allowzero), one -1 takes the rest."""
    sizes = [before[i] if v == 0 and not allowzero and i < len(before) else v for i, v in enumerate(target)]
    total = math.prod(before)
    if sizes.count(-1) > 1 or any(v < -1 for v in sizes):
        return None
    if -1 in sizes:
        known = math.prod(v for v in sizes if v != -1)
        if known == 0 or total % known:
            return None
        sizes[sizes.index(-1)] = total // known
    return tuple(sizes) if math.prod(sizes) == total else None


def _transpose(imp: _Importer, node: Any) -> str | None:
    rank = imp.rank(node.input[0])
    perm = list(_attrs(node).get("perm", range((rank or 0) - 1, -1, -1)))
    if not perm or perm[0] != 0:
        return f"perm {perm} (it moves the batch axis)"
    imp.add(node, "permute", {"dims": perm})
    return None


@_handles_settings
def _resize(imp: _Importer, node: Any) -> str | None:
    """Resize (opset 10+: scales; 11+: roi, scales, sizes) and Upsample (7: scales attribute; 9: input)."""
    a = _attrs(node)
    dims = imp.shape(node.input[0])
    if dims is None or len(dims) < 3:
        return "an input of unknown or unspatial shape"
    rank = len(dims)
    n = rank - 2
    mode = a.get("mode", "nearest")
    if node.op_type == "Upsample" or imp.opset < 11:
        scales = a.get("scales") if node.op_type == "Upsample" and imp.opset < 9 else _const_input(imp, node, 1)
        sizes = None
        transform, nearest_mode = "asymmetric", "floor"  # Upsample and Resize-10: out = floor(in * scale), asymmetric
    else:
        scales, sizes = _const_input(imp, node, 2), _const_input(imp, node, 3)
        transform = a.get("coordinate_transformation_mode", "half_pixel")
        nearest_mode = a.get("nearest_mode", "round_prefer_floor")
    if a.get("antialias", 0) or a.get("keep_aspect_ratio_policy", "stretch") != "stretch" or "axes" in a:
        return "antialias, keep_aspect_ratio_policy or axes"
    if a.get("exclude_outside", 0) or not math.isclose(a.get("cubic_coeff_a", -0.75), -0.75):
        return "exclude_outside or a cubic_coeff_a other than -0.75 (PyTorch's)"
    attrs: dict[str, Any] = {}
    if sizes is not None and sizes.size:
        sizes = [int(v) for v in sizes.reshape(-1)]
        if len(sizes) != rank or sizes[:2] != list(dims[:2]):
            return f"sizes {sizes} (it resizes the batch or channel axis)"
        attrs["size"] = sizes[2:]
    elif scales is not None and len(scales):
        factors = [float(v) for v in (scales.reshape(-1) if hasattr(scales, "reshape") else scales)]
        if len(factors) != rank or factors[0] != 1 or factors[1] != 1:
            return f"scales {factors} (it resizes the batch or channel axis)"
        attrs["scale_factor"] = [int(f) if f.is_integer() else f for f in factors[2:]]
    else:
        return "neither scales nor sizes"
    if mode == "nearest":
        if transform != "asymmetric" or nearest_mode != "floor":
            return (f"nearest_mode {nearest_mode!r} with {transform!r} coordinates; archcalc's nearest reads "
                    "floor(o * in / out) (asymmetric, floor: PyTorch's)")
        attrs["mode"] = "nearest"
    elif mode in ("linear", "bilinear", "cubic"):
        if mode == "cubic" and n != 2:
            return f"cubic on {n} spatial axes (bicubic is 2D)"
        if transform in ("half_pixel", "pytorch_half_pixel"):
            attrs["align_corners"] = False
        elif transform == "align_corners":
            attrs["align_corners"] = True
        elif node.op_type == "Upsample" or imp.opset < 11:
            return (f"mode {mode!r} before opset 11, which samples at o * in/out (PyTorch's bilinear samples at "
                    "(o + 0.5) * in/out - 0.5: export with opset 11 or later)")
        else:
            return f"coordinate_transformation_mode {transform!r}"
        attrs["mode"] = "bicubic" if mode == "cubic" else {1: "linear", 2: "bilinear", 3: "trilinear"}.get(n, "linear")
    else:
        return f"mode {mode!r}"
    imp.add(node, "upsample", attrs)
    return None


@_handles_settings
def _pad(imp: _Importer, node: Any) -> str | None:
    """Pad: pads as attribute (opset < 11) or input, [x1_begin, ..., x1_end, ...]; spatial axes only."""
    a = _attrs(node)
    dims = imp.shape(node.input[0])
    if dims is None:
        return "an input of unknown shape"
    rank = len(dims)
    if imp.opset < 11:
        pads = [int(v) for v in a.get("pads", a.get("paddings", []))]
        value = float(a.get("value", 0.0))
    else:
        given = _const_input(imp, node, 1)
        pads = [int(v) for v in given.reshape(-1)] if given is not None else []
        constant = _const_input(imp, node, 2)
        value = float(constant.reshape(-1)[0]) if constant is not None and constant.size else 0.0
    axes_value = _const_input(imp, node, 3) if imp.opset >= 18 else None
    axes = [_normalized_axis(int(v), rank) for v in axes_value.reshape(-1)] if axes_value is not None else list(range(rank))
    if None in axes or len(pads) != 2 * len(axes):
        raise SpecError(f"{imp.shown}: {_where(node, imp._index(node))}: pads must have 2 values per padded axis "
                        f"({2 * len(axes)}), got {len(pads)}")
    full = {axis: (pads[i], pads[i + len(axes)]) for i, axis in enumerate(axes)}
    if any(full.get(axis, (0, 0)) != (0, 0) for axis in (0, 1)):
        return "padding of the batch or channel axis"
    if any(v < 0 for pair in full.values() for v in pair):
        return "negative pads (a crop)"
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(a.get("mode", "constant"))
    if mode is None or rank < 3:
        return f"mode {a.get('mode')!r}" if mode is None else "no spatial axis"
    padding = [list(full.get(axis, (0, 0))) for axis in range(2, rank)]
    imp.add(node, "pad", {"padding": padding, "mode": mode, **({"value": value} if mode == "constant" else {})})
    return None


def _softmax(imp: _Importer, node: Any) -> str | None:
    dims = imp.shape(node.input[0])
    rank = None if dims is None else len(dims)
    axis = int(_attrs(node).get("axis", 1 if imp.opset < 13 else -1))
    k = _normalized_axis(axis, rank)
    # before opset 13 the input is flattened to 2D at axis: over C alone only when nothing follows C
    channel = k == 1 and (imp.opset >= 13 or all(d == 1 for d in dims[2:]))  # type: ignore[index]
    if not channel:
        return f"axis {axis}; archcalc's softmax is over the channel axis"
    imp.add(node, "softmax", {})
    return None


@_handles_settings
def _dropout(imp: _Importer, node: Any) -> str | None:
    if len(node.output) > 1 and node.output[1] and imp.consumers.get(node.output[1]):
        return "its mask output used"
    if imp.opset >= 12:
        ratio = _const_input(imp, node, 1)
        p = _float32(float(ratio.reshape(-1)[0])) if ratio is not None else 0.5
    else:
        p = float(_attrs(node).get("ratio", 0.5))
    imp.add(node, "dropout", {"p": p})
    return None


def _gelu(imp: _Importer, node: Any) -> str | None:
    imp.add(node, "gelu", {"approximate": _attrs(node).get("approximate", "none")})
    return None


def _global_pool(op_type: str, attrs: dict[str, Any]) -> Handler:
    def handler(imp: _Importer, node: Any) -> str | None:
        if (imp.rank(node.input[0]) or 0) < 3:
            return "an input without spatial axes"
        imp.add(node, op_type, dict(attrs))
        return None
    return handler


_HANDLERS: dict[str, Handler] = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Relu": _unary("relu"),
    "Sigmoid": _unary("sigmoid"),
    "Tanh": _unary("tanh"),
    "HardSwish": _unary("hardswish"),
    "HardSigmoid": _hardsigmoid,
    "LeakyRelu": _unary("leaky_relu", lambda a: {"negative_slope": float(a.get("alpha", 0.01))}),
    "Elu": _unary("elu", lambda a: {"alpha": float(a.get("alpha", 1.0))}),
    "PRelu": _prelu,
    "Clip": _clip,
    "Gelu": _gelu,
    "Mul": _binary("mul"),
    "Add": _binary("add"),
    "Sum": _binary("add"),
    "Concat": _concat,
    "Split": _split,
    "Slice": _slice,
    "Expand": _expand,
    "MaxPool": _pool("maxpool"),
    "AveragePool": _pool("avgpool"),
    "GlobalAveragePool": _global_pool("global_avgpool", {}),
    "GlobalMaxPool": _global_pool("adaptive_maxpool", {"output_size": 1}),
    "ReduceMean": _reduce_mean,
    "BatchNormalization": _batchnorm,
    "LayerNormalization": _layernorm,
    "InstanceNormalization": _instancenorm,
    "GroupNormalization": _groupnorm,
    "LRN": _lrn,
    "Flatten": _reshape_to_output,
    "Reshape": _reshape_to_output,
    "Squeeze": _reshape_to_output,
    "Unsqueeze": _reshape_to_output,
    "Transpose": _transpose,
    "Resize": _resize,
    "Upsample": _resize,
    "Pad": _pad,
    "Softmax": _softmax,
    "Dropout": _dropout,
    "Identity": _unary("identity"),
}

_MATCHERS: dict[str, Callable[[_Importer, int, Any], None]] = {
    "Sigmoid": _Importer._match_silu,
    "HardSigmoid": _Importer._match_hardswish,
    "Erf": _Importer._match_gelu,
    "Tanh": _Importer._match_gelu_tanh,
    "Reshape": _Importer._match_reshape,
    "InstanceNormalization": _Importer._match_groupnorm,
    "ReduceMean": _Importer._match_layernorm,
}


# ---- constant folding: NumPy for the few ops exporters use to compute shapes ----

class _CannotFold(Exception):
    """This node is not folded (a form the evaluator does not cover, or a result too large)."""


def _evaluate(node: Any, inputs: list[Any], opset: int) -> list[Any]:
    """The node's outputs as NumPy arrays, from constant inputs (Shape/Size: the input's dims)."""
    import numpy as np
    from onnx import helper, numpy_helper

    op, a = node.op_type, _attrs(node)

    def guard(array: Any) -> Any:
        array = np.asarray(array)
        if array.size > MAX_CONSTANT_VALUES:
            raise _CannotFold
        return array

    def axes_of(position: int, name: str = "axes") -> list[int] | None:
        if opset >= 13 and op in ("Squeeze", "Unsqueeze") or opset >= 18 and op == "ReduceProd":
            value = inputs[position] if len(inputs) > position else None
            return None if value is None else [int(v) for v in value.reshape(-1)]
        return [int(v) for v in a[name]] if name in a else None

    if op == "Constant":
        if "value" in a:
            tensor = a["value"]
            if math.prod(tensor.dims) > MAX_CONSTANT_VALUES:
                raise _CannotFold
            return [numpy_helper.to_array(tensor)]
        for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                           ("value_ints", np.int64)):
            if key in a:
                return [guard(np.array(a[key], dtype=dtype))]
        raise _CannotFold
    if op == "Shape":
        dims = list(inputs[0])
        start, end = int(a.get("start", 0)), a.get("end")
        return [np.array(dims[start:None if end is None else int(end)], dtype=np.int64)]
    if op == "Size":
        return [np.array(math.prod(inputs[0]), dtype=np.int64)]
    x = inputs[0]
    if op == "Identity":
        return [x]
    if op == "Cast":
        return [x.astype(helper.tensor_dtype_to_np_dtype(int(a["to"])))]
    if op == "Gather":
        return [guard(np.take(x, inputs[1].astype(np.int64), axis=int(a.get("axis", 0))))]
    if op == "Unsqueeze":
        axes = axes_of(1)
        if axes is None:
            raise _CannotFold
        rank = x.ndim + len(axes)
        result = x
        for axis in sorted(v + rank if v < 0 else v for v in axes):
            result = np.expand_dims(result, axis)
        return [result]
    if op == "Squeeze":
        axes = axes_of(1)
        return [np.squeeze(x) if axes is None else np.squeeze(x, axis=tuple(axes))]
    if op == "Concat":
        return [guard(np.concatenate([np.atleast_1d(v) for v in inputs if v is not None], axis=int(a.get("axis", 0))))]
    if op in ("Add", "Sub", "Mul", "Div", "Equal", "Min", "Max"):
        y = inputs[1] if len(inputs) > 1 else None
        if op == "Div" and np.issubdtype(x.dtype, np.integer):
            return [guard(np.trunc(np.true_divide(x, y)).astype(x.dtype))]
        if op in ("Min", "Max"):
            result = inputs[0]
            for other in inputs[1:]:
                result = (np.minimum if op == "Min" else np.maximum)(result, other)
            return [guard(result)]
        function = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Equal": np.equal}[op]
        return [guard(function(x, y).astype(np.result_type(x, y)) if op != "Equal" else function(x, y))]
    if op in ("Floor", "Ceil", "Sqrt", "Neg", "Abs"):
        return [{"Floor": np.floor, "Ceil": np.ceil, "Sqrt": np.sqrt, "Neg": np.negative, "Abs": np.abs}[op](x)]
    if op == "Where":
        return [guard(np.where(x, inputs[1], inputs[2]))]
    if op == "Transpose":
        perm = a.get("perm")
        return [np.transpose(x, perm)]
    if op == "Reshape":
        target = [int(v) for v in inputs[1].reshape(-1)]
        if not a.get("allowzero", 0):
            target = [x.shape[i] if v == 0 and i < x.ndim else v for i, v in enumerate(target)]
        return [x.reshape(target)]
    if op == "ConstantOfShape":
        shape = [int(v) for v in x.reshape(-1)]
        if any(v < 0 for v in shape) or math.prod(shape) > MAX_CONSTANT_VALUES:
            raise _CannotFold
        value = numpy_helper.to_array(a["value"]).reshape(-1)[0] if "value" in a else np.float32(0)
        return [np.full(shape, value, dtype=np.asarray(value).dtype)]
    if op == "Range":
        start, limit, delta = (v.reshape(-1)[0] for v in inputs[:3])
        if delta == 0 or math.ceil((limit - start) / delta) > MAX_CONSTANT_VALUES:
            raise _CannotFold
        return [np.arange(start, limit, delta, dtype=np.asarray(start).dtype)]
    if op == "Expand":
        shape = [int(v) for v in inputs[1].reshape(-1)]
        out = np.broadcast_shapes(x.shape, tuple(shape))
        if math.prod(out) > MAX_CONSTANT_VALUES:
            raise _CannotFold
        return [np.broadcast_to(x, out).copy()]
    if op == "ReduceProd":
        axes = axes_of(1)
        keep = bool(a.get("keepdims", 1))
        return [np.prod(x, axis=None if not axes else tuple(axes), keepdims=keep)]
    if op == "Slice":
        if opset < 10:
            starts, ends = list(a["starts"]), list(a["ends"])
            axes = list(a.get("axes", range(len(starts))))
            steps = [1] * len(starts)
        else:
            starts, ends = [int(v) for v in inputs[1].reshape(-1)], [int(v) for v in inputs[2].reshape(-1)]
            axes = [int(v) for v in inputs[3].reshape(-1)] if len(inputs) > 3 and inputs[3] is not None else list(range(len(starts)))
            steps = [int(v) for v in inputs[4].reshape(-1)] if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
        index = [slice(None)] * x.ndim
        for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
            index[int(axis)] = slice(int(start), int(end), int(step))
        return [x[tuple(index)]]
    raise _CannotFold
