"""PyTorch import: an ``nn.Module`` traced with torch.fx and mapped onto archcalc's ops.

:func:`from_torch` traces the module symbolically (``torch.fx``; ``torch.export`` where fx
cannot), propagates a sample's shape through the traced graph, and emits one archcalc layer per
module call or tensor function, through the shared :class:`~archcalc.importers._builder.Builder`:

- **Names** are module paths: a module call is named by its path (``features.3.block.0``, a
  second call of one module gets the builder's unique suffix); a function is named by the path of
  the module whose ``forward`` called it plus a short suffix (``layer1.0.add``, ``flatten`` at the
  top level).
- **Shapes**: the shape of every traced value comes from running the graph on zeros of
  ``(1, *input_shape)`` in eval mode (under torch's fake tensors when they can: no memory and no
  arithmetic; else on real zeros). Every emitted layer's shape must equal archcalc's own shape
  rule, and every parameter and buffer tensor of a module must have the shape archcalc's rule
  gives it: a mismatch is a SpecError naming the layer.
- **What maps**: torch.nn's layers (conv, transposed conv, linear, the norms, activations, pools,
  dropout, flatten, padding, upsampling, channel shuffle) and torchvision's StochasticDepth and
  ConvNeXt LayerNorm2d as one layer each; functional calls and tensor methods (``F.relu`` and the
  other activations, pools, ``F.interpolate``, ``F.pad``, ``torch.cat`` on channels, ``+``, ``*``,
  ``chunk``/``split``/indexing as slices, ``view``/``reshape``/``permute``/``transpose``/
  ``flatten``, a mean over the spatial axes as a global average pool) as the layer they compute;
  ``F.conv2d``/``F.linear``/``F.batch_norm``/``F.layer_norm`` on the module's own tensors, and a
  parameter multiplying a tensor per channel (ConvNeXt's layer scale, as ``scale``), with those
  tensors checked as a module's are (a learned parameter where archcalc's rule has a buffer, or
  the reverse, is refused). Arithmetic on parameters and sizes alone is evaluated, not mapped.
- **Counts follow archcalc's conventions** (docs/conventions.md). Parameters are what torch lists
  in ``parameters()``; buffers are the running statistics (batchnorm's, instancenorm's with
  ``track_running_stats``). Batchnorm's ``num_batches_tracked`` is an int64 step counter, not a
  statistic of the data: archcalc does not count it as a buffer, so a model's buffers are torch's
  ``sum(b.numel() for b in model.buffers())`` minus one per batchnorm layer.
- **Not mapped** (an op archcalc has no rule for, e.g. ``torchvision.ops.roi_align``,
  ``operator.sub``, ``torch.nn.LSTM``) goes to ``Builder.unsupported``: the import fails listing
  every such op with its count and first place, or with ``partial=True`` passes it through with
  its traced shape, counted as 0.
- **Said, not hidden**: a module whose parameters the forward pass never uses (GoogLeNet's
  auxiliary classifiers in eval mode) and a module called more than once (its parameters then
  counted at every call) are warnings on the graph.

torch is an optional extra: ``pip install "archcalc[torch]"``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from archcalc.errors import SpecError
from archcalc.graph import Graph
from archcalc.spec import MAX_LAYERS, quote

#: Most values the (1, *input_shape) sample may hold when the graph must run on real tensors.
MAX_REAL_INPUT = 2**26


def from_torch(module: Any, input_shape: Sequence[int], *, name: str | None = None, partial: bool = False,
               max_layers: int = MAX_LAYERS) -> Graph:
    """The archcalc graph of a PyTorch module, traced on a sample of ``input_shape``.

    Args:
        module: a ``torch.nn.Module`` (its train/eval flags are restored afterwards).
        input_shape: one sample's shape, channels-first, without the batch axis: ``(3, 224, 224)``.
        name: the graph's name (default: the module's class name).
        partial: pass ops archcalc cannot map through (0 params, 0 MACs) instead of failing.
        max_layers: the most layers the graph may have.

    Returns:
        The graph, the same type as :func:`archcalc.load` returns.

    Raises:
        MissingToolError: torch is not installed.
        SpecError: not a module, a bad input shape, a forward pass that fails on that input,
            a module neither torch.fx nor torch.export can trace, parameters that differ from
            archcalc's rule, or (without ``partial``) ops archcalc cannot map.
    """
    return import_module(module, input_shape, name=name, partial=partial, max_layers=max_layers).graph


@dataclass
class Imported:
    """What :func:`import_module` returns: the graph, and the archcalc layer of each module call
    (module path -> layer names in call order) for tests that compare layer by layer."""

    graph: Graph
    module_layers: dict[str, list[str]] = field(default_factory=dict)


def import_module(module: Any, input_shape: Sequence[int], *, name: str | None = None, partial: bool = False,
                  max_layers: int = MAX_LAYERS) -> Imported:
    """:func:`from_torch`, also returning which layer each module call became."""
    from archcalc.importers._builder import check_input_shape

    torch = _import_torch()
    if not isinstance(module, torch.nn.Module):
        raise SpecError(f"from_torch: expected a torch.nn.Module, got {type(module).__name__}")
    shape = check_input_shape(input_shape, "from_torch: input_shape")
    if len(shape) > 4:
        raise SpecError(f"from_torch: input_shape must be channels-first: (C,), (C, L), (C, H, W) or (C, D, H, W), "
                        f"got {shape}")
    label = name if name is not None else type(module).__name__
    if not isinstance(label, str) or not label:
        raise SpecError(f"from_torch: name must be a non-empty string, got {label!r:.200}")
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        gm = _trace(torch, module, shape, quote(label))
        return _Mapper(torch, gm, module, shape, label, partial, max_layers).run()
    finally:
        for m, training in flags:
            m.training = training


def _import_torch() -> Any:
    try:
        import torch
        import torch.fx  # noqa: F401
    except ImportError:
        from archcalc.importers._builder import missing

        raise missing("torch", "torch", "importing a PyTorch module") from None
    return torch


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0].strip() if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


# ---------------------------------------------------------------------------------------------
# Tracing and shapes


def _is_extra_leaf(m: Any) -> bool:
    """Modules outside torch.nn that archcalc maps whole (their insides would trace to more layers)."""
    cls = type(m)
    # torchvision's StochasticDepth, or a copy of it with its interface (the PyTorch source
    # archcalc's exporter writes holds one: torchvision is not its dependency)
    stochastic_depth = cls.__name__ == "StochasticDepth" and (
        cls.__module__.startswith("torchvision.ops")
        or (isinstance(getattr(m, "p", None), float) and getattr(m, "mode", None) in ("row", "batch")))
    return stochastic_depth or (cls.__module__ == "torchvision.models.convnext" and cls.__name__ == "LayerNorm2d")


def _tracer_class() -> type:
    from torch import fx

    class Tracer(fx.Tracer):
        """fx's tracer, whose leaves (modules recorded as one call) are torch.nn's layers and
        :func:`_is_extra_leaf`'s."""

        def is_leaf_module(self, m: Any, qualname: str) -> bool:
            return _is_extra_leaf(m) or super().is_leaf_module(m, qualname)

    return Tracer


def _trace(torch: Any, module: Any, shape: tuple[int, ...], label: str) -> Any:
    """``module`` as a ``torch.fx.GraphModule`` whose nodes carry their traced values' shapes
    (``node.meta["archcalc"]``): symbolic tracing, or torch.export where fx cannot trace (a
    Python branch on a tensor's shape)."""
    from torch import fx

    tracer = _tracer_class()()
    if tracer.is_leaf_module(module, ""):  # one layer: trace a parent holding it, so it stays whole
        module = _Holder(type(module).__name__.lower(), module)
    try:
        graph = tracer.trace(module, concrete_args=_defaults(module))
    except (Exception, SystemExit) as fx_error:  # noqa: BLE001 - any failure of user code while tracing
        try:
            return _export(torch, module, shape, tracer)
        except (Exception, SystemExit) as export_error:  # noqa: BLE001
            raise SpecError(
                f"{label}: torch.fx cannot trace {type(module).__name__} ({_one_line(fx_error)}), nor can torch.export "
                f"({_one_line(export_error)}); archcalc maps the calls they record, so the forward must not branch "
                "on tensor values"
            ) from None
    gm = fx.GraphModule(module, graph)
    _propagate(torch, gm, shape, label)
    return gm


#: torch.export's ATen ops as the torch functions the mapper knows, where the arguments line up.
def _aten_functions(torch: Any) -> dict[Any, Any]:
    from torch.nn import functional as F  # noqa: N812

    aten = torch.ops.aten
    table = {
        aten.relu: torch.relu, aten.relu_: torch.relu, aten.sigmoid: torch.sigmoid, aten.tanh: torch.tanh,
        aten.hardtanh: F.hardtanh, aten.hardtanh_: F.hardtanh, aten.silu: F.silu, aten.silu_: F.silu,
        aten.gelu: F.gelu, aten.hardswish: F.hardswish, aten.hardswish_: F.hardswish, aten.hardsigmoid: F.hardsigmoid,
        aten.leaky_relu: F.leaky_relu, aten.mish: F.mish, aten.softmax: torch.softmax, aten._softmax: torch.softmax,
        aten.dropout: F.dropout, aten.max_pool1d: F.max_pool1d, aten.max_pool2d: F.max_pool2d,
        aten.max_pool3d: F.max_pool3d, aten.avg_pool1d: F.avg_pool1d, aten.avg_pool2d: F.avg_pool2d,
        aten.avg_pool3d: F.avg_pool3d, aten.adaptive_avg_pool1d: F.adaptive_avg_pool1d,
        aten.adaptive_avg_pool2d: F.adaptive_avg_pool2d, aten.adaptive_avg_pool3d: F.adaptive_avg_pool3d,
        aten.cat: torch.cat, aten.concat: torch.cat, aten.flatten: torch.flatten, aten.view: torch.reshape,
        aten.reshape: torch.reshape, aten._unsafe_view: torch.reshape, aten.permute: torch.permute,
        aten.transpose: torch.transpose, aten.mean: torch.mean, aten.chunk: torch.chunk, aten.split: torch.split,
        aten.split_with_sizes: torch.split, aten.add: torch.add, aten.add_: torch.add, aten.mul: torch.mul,
        aten.mul_: torch.mul, aten.layer_norm: F.layer_norm, aten.linear: F.linear,
        aten.conv1d: F.conv1d, aten.conv2d: F.conv2d, aten.conv3d: F.conv3d, aten.channel_shuffle: torch.channel_shuffle,
        aten.squeeze: torch.squeeze, aten.unsqueeze: torch.unsqueeze, aten.pad: F.pad,
        aten.clone: _same, aten.contiguous: _same, aten.alias: _same, aten.detach: _same, aten.slice: _slice_op,
    }
    return {packet: fn for packet, fn in table.items()}


@contextlib.contextmanager
def _quiet_torch() -> Any:
    """torch's own log lines (torch.export's and fake tensors' warnings when a trace fails) kept off
    the terminal: archcalc says what failed in its one-line error."""
    # torch's loggers set their own levels and handlers (torch._dynamo's, torch.export's): quiet each one
    names = ["torch", *(name for name in list(logging.root.manager.loggerDict) if name.startswith("torch."))]
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    # and what it writes past logging (a failed torch.export prints its graph): standard error muted
    # at the descriptor for the attempt, restored before archcalc says what failed
    import os
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        saved = None
    if saved is not None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    try:
        yield
    finally:
        if saved is not None:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _same(x: Any, *args: Any, **kwargs: Any) -> Any:
    """A copy or view of the same values (torch.export's clone, contiguous, alias): no layer."""
    return x


def _slice_op(x: Any, dim: int = 0, start: Any = None, end: Any = None, step: int = 1) -> Any:
    """torch.export's ``aten.slice``: ``x[..., start:end:step]`` along ``dim``."""
    return x[(slice(None),) * dim + (slice(start, end, step),)]


def _export(torch: Any, module: Any, shape: tuple[int, ...], tracer: Any) -> Any:
    """``module`` through ``torch.export``, rewritten as the graph symbolic tracing would give:
    the ATen ops of one call of a leaf module become that ``call_module`` again, parameters
    ``get_attr`` nodes, other ATen ops the torch functions of :func:`_aten_functions`."""
    from collections import OrderedDict

    from torch import fx

    with _quiet_torch():
        program = torch.export.export(module, (torch.zeros((1, *shape), dtype=_dtype(torch, module)),))
    signature = program.graph_signature
    targets = {**signature.inputs_to_parameters, **signature.inputs_to_buffers}
    constants = {}  # tensors the forward made from constants (``self.boxes[:1]``), held by the program
    for placeholder in signature.inputs_to_lifted_tensor_constants:
        targets[placeholder] = constants[placeholder] = f"_archcalc_constant_{len(constants)}"
    aten = _aten_functions(torch)
    graph = fx.Graph()
    env: dict[Any, Any] = {}
    groups: dict[str, Any] = {}  # a leaf module call's key in nn_module_stack -> its call_module node

    def stack_of(node: Any) -> list[tuple[str, str]]:
        return [(key, value[0]) for key, value in (node.meta.get("nn_module_stack") or {}).items()]

    def leaf_call(node: Any) -> tuple[str, str] | None:
        for key, path in stack_of(node):
            if path and tracer.is_leaf_module(module.get_submodule(path), path):
                return key, path
        return None

    for node in program.graph.nodes:
        if node.op == "placeholder":
            new = graph.get_attr(targets[node.name]) if node.name in targets else graph.placeholder(node.name)
        elif node.op == "output":
            graph.output(fx.node.map_arg(node.args[0], lambda n: env[n]))
            continue
        else:
            call = leaf_call(node)
            if call is not None:
                key, path = call
                inputs = [env[n] for n in node.all_input_nodes if n.op != "placeholder" or n.name not in targets]
                if key not in groups:
                    first = next((n for n in inputs if n.op != "get_attr"), None)
                    groups[key] = graph.call_module(path, (first,) if first is not None else ())
                new = groups[key]  # the call's last ATen op gives its output (meta below)
                new.meta["nn_module_stack"] = OrderedDict((p, (p, "")) for _, p in stack_of(node))
            else:
                packet = getattr(node.target, "overloadpacket", None)
                target = aten.get(packet, node.target) if packet is not None else node.target
                new = graph.call_function(target, fx.node.map_arg(node.args, lambda n: env[n]),
                                          fx.node.map_arg(node.kwargs, lambda n: env[n]))
                # aten.relu_ and the like overwrite their first argument (see _in_place_statement)
                new.meta["in_place"] = packet is not None and packet.__name__.endswith("_")
                new.meta["nn_module_stack"] = OrderedDict((p, (p, "")) for _, p in stack_of(node) if p)
        new.meta["archcalc"] = _summary(torch, node.meta.get("val"))
        env[node] = new
    gm = fx.GraphModule(module, graph)
    for placeholder, attribute in constants.items():
        gm.register_buffer(attribute, program.constants[signature.inputs_to_lifted_tensor_constants[placeholder]])
    return gm


def _defaults(module: Any) -> dict[str, Any] | None:
    """The forward's arguments after the first that have defaults (``mask=None``), fixed to them:
    the network takes one tensor, as archcalc's graphs do."""
    import inspect

    try:
        parameters = list(inspect.signature(module.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    fixed = {p.name: p.default for p in parameters
             if p.default is not inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return fixed or None


def _holder_class() -> type:
    from torch import nn

    class Holder(nn.Module):
        """A module that is itself one layer (``nn.Conv2d(3, 8, 3)``), held as a child named after its class."""

        def __init__(self, name: str, inner: Any) -> None:
            super().__init__()
            self.add_module(name, inner)
            self.inner_name = name

        def forward(self, x: Any) -> Any:
            return getattr(self, self.inner_name)(x)

    return Holder


def _Holder(name: str, inner: Any) -> Any:  # noqa: N802 - builds the class on first use (it needs torch)
    return _holder_class()(name, inner)


def _summary(torch: Any, value: Any) -> Any:
    """A traced value as the mapper needs it: a tensor's shape as a :class:`_Shape`, tuples
    element-wise, anything else (ints from ``x.size()``) as it is."""
    if isinstance(value, torch.Tensor):
        return _Shape(tuple(int(n) for n in value.shape))
    if isinstance(value, torch.Size):
        return tuple(int(n) for n in value)
    if isinstance(value, (tuple, list)):
        return type(value)(_summary(torch, v) for v in value) if not hasattr(value, "_fields") else tuple(
            _summary(torch, v) for v in value)
    return value


@dataclass(frozen=True)
class _Shape:
    """The shape of a traced tensor, batch axis included."""

    dims: tuple[int, ...]


def _propagate(torch: Any, gm: Any, shape: tuple[int, ...], label: str) -> None:
    """Run ``gm`` on zeros of (1, *shape), recording every node's value summary in
    ``node.meta["archcalc"]``: on the meta device (torch's shape functions, no memory, no
    arithmetic: resnet50 in about 0.3 s against 0.7 s for real on one thread), else under fake
    tensors (a forward making tensors of its own), else on real zeros."""
    from torch import fx, nn

    failed: list[Any] = []
    dtype = _dtype(torch, gm)

    class Recorder(fx.Interpreter):
        def __init__(self, module: Any, shortcut: bool = False) -> None:
            super().__init__(module)
            self.shortcut = shortcut

        def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
            # on the meta device, torch runs batchnorm's shape function through its decomposition
            # (10 ms a call); in eval mode it is the identity on shapes (its tensors' sizes are
            # checked against archcalc's rule by the builder)
            m = self.fetch_attr(target)
            if (self.shortcut and isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.training and len(args) == 1
                    and not kwargs and isinstance(args[0], torch.Tensor) and args[0].dim() >= 2
                    and args[0].shape[1] == m.num_features):
                return args[0]
            return super().call_module(target, args, kwargs)

        def run_node(self, node: Any) -> Any:
            try:
                result = super().run_node(node)
            except Exception:
                failed.append(node)
                raise
            node.meta["archcalc"] = _summary(torch, result)
            return result

    class OnMeta(nn.Module):
        """Runs the recorder with every parameter and buffer swapped for a meta tensor
        (``torch.func.functional_call``; the module's own tensors are back afterwards)."""

        def __init__(self) -> None:
            super().__init__()
            self.gm = gm

        def forward(self, x: Any) -> Any:
            return Recorder(self.gm, shortcut=True).run(x)

    try:
        holder = OnMeta()
        tensors = {name: t.to("meta") for name, t in (*holder.named_parameters(), *holder.named_buffers())}
        with torch.no_grad():
            torch.func.functional_call(holder, tensors, (torch.zeros((1, *shape), device="meta", dtype=dtype),))
        return
    except Exception:  # noqa: BLE001 - an op without a meta kernel, or tensors made on the CPU: fake tensors
        failed.clear()
    try:
        from torch._subclasses.fake_tensor import FakeTensorMode

        with _quiet_torch(), FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
            Recorder(gm).run(torch.zeros((1, *shape), dtype=dtype))
        return
    except Exception:  # noqa: BLE001 - an op without a fake kernel: run it for real below
        failed.clear()
    if math.prod(shape) > MAX_REAL_INPUT:
        raise SpecError(f"{label}: the input {'x'.join(map(str, shape))} is too large to run the module on "
                        f"(at most {MAX_REAL_INPUT:,} values when fake tensors cannot be used)")
    try:
        with torch.no_grad():
            Recorder(gm).run(torch.zeros((1, *shape), dtype=dtype))
    except (Exception, SystemExit) as error:  # noqa: BLE001 - the user's forward failing on this input
        where = _where_node(failed[-1]) if failed else "the forward pass"
        raise SpecError(f"{label}: the forward pass fails on input {'x'.join(map(str, shape))} at {where}: "
                        f"{_one_line(error)}") from None


def _dtype(torch: Any, module: Any) -> Any:
    """The sample's dtype: the module's first floating-point parameter's (a half-precision model
    gets a float16 sample), else float32."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


def _where_node(node: Any) -> str:
    if node.op == "call_module":
        return f"module {node.target}"
    return f"{_target_name(node)} in {_scope(node) or 'forward'}"


def _scope(node: Any) -> str:
    """Path of the innermost module whose forward created ``node`` ("" at the top level)."""
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack.values()))[0] if stack else ""


def _target_name(node: Any) -> str:
    """A function's or method's name as messages show it: ``torch.cat``, ``Tensor.view``,
    ``operator.add``, ``torch.nn.functional.relu``, ``torchvision.ops.roi_align``."""
    target = node.target
    if node.op == "call_method":
        return f"Tensor.{target}"
    schema = getattr(target, "_schema", None)
    if schema is not None:  # an ATen or custom op from torch.export: aten.abs, torchvision.ops.roi_align
        namespace, _, op_name = schema.name.partition("::")
        return f"torchvision.ops.{op_name}" if namespace == "torchvision" else f"{namespace}.{op_name}"
    if node.op == "call_module":
        return str(target)
    name = getattr(target, "__name__", str(target))
    module = getattr(target, "__module__", None) or ""
    if module.startswith("torch._C._nn") or module == "torch.nn.functional":
        return f"torch.nn.functional.{name}"
    if module.startswith("torchvision.ops"):
        return f"torchvision.ops.{name}"
    if module in ("_operator", "operator"):
        return f"operator.{name}"
    if module.startswith("torch") and getattr(_torch_module(), name, None) is target:
        return f"torch.{name}"
    return f"{module}.{name}" if module else name


def _torch_module() -> Any:
    import torch

    return torch


def _module_name(m: Any) -> str:
    """``torch.nn.LSTM`` rather than ``torch.nn.modules.rnn.LSTM`` where the short path holds it."""
    import sys

    cls = type(m)
    for package in ("torch.nn", "torchvision.ops"):
        if cls.__module__.startswith(package) and getattr(sys.modules.get(package), cls.__name__, None) is cls:
            return f"{package}.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


# ---------------------------------------------------------------------------------------------
# Mapping


@dataclass(frozen=True)
class _T:
    """A tensor value of the mapped graph: the archcalc layer holding it (None when it comes from
    an op that could not be passed through) and its shape, batch axis included."""

    ref: str | None
    shape: tuple[int, ...]


@dataclass(frozen=True)
class _P:
    """A parameter or buffer tensor read with ``get_attr`` (ConvNeXt's ``layer_scale``)."""

    tensor: Any
    path: str
    #: The module's own tensors it was computed from (a reshape of a parameter is not the parameter).
    origins: tuple[Any, ...] = ()

    def used(self) -> set[int]:
        """Ids of the module tensors behind it, for the warning about unused parameters."""
        return {id(t) for t in self.origins or (self.tensor,)}


@dataclass
class _Parts:
    """The pieces of ``chunk``/``split``: slices of ``source`` along ``dim``, made on first use."""

    source: _T
    dim: int
    bounds: list[tuple[int, int]]
    name: str
    made: dict[int, _T] = field(default_factory=dict)


@dataclass(frozen=True)
class _NegInfPad:
    """``F.pad(x, pads, value=-inf)``: no layer of its own; the max pool reading it takes the
    padding (archcalc's maxpool pads with -inf, per side)."""

    source: _T
    pairs: list[list[int]]
    op: str


class _Unsupported(Exception):
    """Raised by a handler: the node is an op archcalc does not map (``op`` names it)."""

    def __init__(self, op: str) -> None:
        super().__init__(op)
        self.op = op


#: In-place or copying methods that leave the values as they are: no layer.
_PASS_METHODS = {"contiguous", "clone", "detach", "float", "requires_grad_"}


class _Mapper:
    """Walks the traced graph once, emitting archcalc layers through the Builder."""

    def __init__(self, torch: Any, gm: Any, module: Any, shape: tuple[int, ...], label: str, partial: bool,
                 max_layers: int) -> None:
        from archcalc.importers._builder import Builder

        self.torch, self.gm, self.root, self.label = torch, gm, module, quote(label)
        self.b = Builder(name=label, input_shape=shape, source=label, partial=partial, max_layers=max_layers)
        self.env: dict[Any, Any] = {}
        self.module_layers: dict[str, list[str]] = {}
        self.called: dict[str, int] = {}
        self.used_params: set[int] = set()
        #: Layers added and ops tallied as unsupported.
        self.added = 0

    # -- the walk ---------------------------------------------------------------------------

    def run(self) -> Imported:
        graph = self.gm.graph
        live = _live_nodes(graph, self.gm)
        result = None
        for node in graph.nodes:
            if node not in live:
                continue
            if node.op == "placeholder" and not isinstance(node.meta.get("archcalc"), _Shape):
                self.env[node] = node.meta.get("archcalc")  # an argument fixed at its default (mask=None)
            elif node.op == "placeholder":
                if any(isinstance(v, _T) for v in self.env.values()):
                    raise SpecError(f"{self.label}: forward takes more than one tensor ({node.target}); archcalc "
                                    "networks have one input")
                self.env[node] = _T(self.b.input, node.meta["archcalc"].dims)
            elif node.op == "get_attr":
                value = _fetch_attr(self.gm, node.target)
                self.env[node] = _P(value, node.target) if isinstance(value, self.torch.Tensor) else value
            elif node.op == "output":
                result = self._arg(node.args[0])
            else:
                self.env[node] = self._node(node)
                if _in_place_statement(node, self.gm) and isinstance(self.env[node], _T):
                    self.env[node.args[0]] = self.env[node]  # later reads of the argument see the result
        self._finish(result)
        if not self.added:
            raise SpecError(f"{self.label}: the forward pass has no operation archcalc maps (it returns its input "
                            "as it is at inference)")
        graph = self.b.build()
        # a module call fused into a larger layer (the layernorm of a permute-layernorm-permute chain) became
        # part of it, not a layer with its output
        fused = self.b.renamed
        layers = {target: refs for target, refs in self.module_layers.items() if not fused.keys() & set(refs)}
        modules = dict(self.root.named_modules())
        for name in set(fused.values()) & modules.keys():  # the whole of a module (ConvNeXt's LayerNorm2d): its call's layer
            layers[name] = [name]
        return Imported(graph, layers)

    def _finish(self, result: Any) -> None:
        outputs = [v for v in _flatten(result) if isinstance(v, _T)]
        if len(outputs) > 1:
            self.b.warn(f"{self.label} returns {len(outputs)} tensors; archcalc's graph has one output, its last "
                        f"layer (the last tensor returned is {outputs[-1].ref or 'from an op that was not imported'})")
        for path, count in self.called.items():
            m = self.gm.get_submodule(path)
            if count > 1 and any(True for _ in m.parameters()):
                self.b.warn(f"module {path} ({type(m).__name__}) is called {count} times: archcalc counts its "
                            f"{sum(p.numel() for p in m.parameters()):,} parameters at every call, torch once")
        unused: dict[str, int] = {}
        for pname, p in self.root.named_parameters():
            if id(p) not in self.used_params:
                top = pname.rsplit(".", 1)[0]
                unused[top] = unused.get(top, 0) + p.numel()
        if unused:
            total = sum(unused.values())
            names = ", ".join(list(unused)[:5]) + (", ..." if len(unused) > 5 else "")
            self.b.warn(f"{total:,} parameters of modules the forward pass does not use at this input in eval mode "
                        f"are not counted ({names})")

    def _arg(self, value: Any) -> Any:
        from torch import fx

        return fx.node.map_aggregate(value, lambda v: self.env[v] if isinstance(v, fx.Node) else v)

    def _node(self, node: Any) -> Any:
        out = node.meta.get("archcalc")
        args, kwargs = self._arg(node.args), self._arg(node.kwargs)
        if node.op == "call_module":
            m = self.gm.get_submodule(node.target)
            return self._call(node, lambda: self._module(node, m, args, kwargs, out), _module_name(m), args, kwargs, out)
        if not any(isinstance(v, _Shape) for v in _flatten(out)):
            return out  # sizes and arithmetic on them: x.size(), shape[2] // 2
        values = _flatten((args, kwargs))
        if (node.op in ("call_method", "call_function") and any(isinstance(v, _P) for v in values)
                and not any(isinstance(v, (_T, _Parts, _NegInfPad)) for v in values)):
            # computed from parameters and constants alone (a per-channel multiplier viewed as
            # (1, C, 1, 1), a slice of a buffer of boxes): evaluated here, no layer
            return self._fold(node, args, kwargs)
        if node.op == "call_method":
            handler = _METHODS.get(node.target)
            return self._call(node, lambda: handler(self, node, args, kwargs, out) if handler else _refuse(node),
                              _target_name(node), args, kwargs, out)
        handler = _function_handler(node.target)
        return self._call(node, lambda: handler(self, node, args, kwargs, out) if handler else _refuse(node),
                          _target_name(node), args, kwargs, out)

    def _fold(self, node: Any, args: Any, kwargs: Any) -> Any:
        from torch import fx

        real_args, real_kwargs = fx.node.map_aggregate((args, kwargs), lambda v: v.tensor if isinstance(v, _P) else v)
        with self.torch.no_grad():
            if node.op == "call_method":
                result = getattr(real_args[0], node.target)(*real_args[1:], **real_kwargs)
            else:
                result = node.target(*real_args, **real_kwargs)
        inputs = [v for v in _flatten((args, kwargs)) if isinstance(v, _P)]
        origins = tuple(t for v in inputs for t in v.origins or (v.tensor,))
        return fx.node.map_aggregate(
            result, lambda v: _P(v, inputs[0].path, origins) if isinstance(v, self.torch.Tensor) else v)

    def _call(self, node: Any, handle: Callable[[], Any], op: str, args: Any, kwargs: Any, out: Any) -> Any:
        inputs = [v for v in _flatten((args, kwargs)) if isinstance(v, _T)]
        try:
            # with an input from an op that could not be passed through, the handler still runs
            # (an unsupported op further on is listed too) but emits nothing (see emit)
            return handle()
        except _Unsupported as unsupported:
            # its tensors are read (the report is partial, or the import fails), not unused
            for v in _flatten((args, kwargs)):
                if isinstance(v, _P):
                    self.used_params |= v.used()
            if node.op == "call_module":
                self.used_params.update(id(p) for p in self.gm.get_submodule(node.target).parameters())
            shape = out.dims[1:] if isinstance(out, _Shape) else None
            self.added += 1
            # an op made of constants alone (torch.arange) stands after the input; an input that
            # could not be passed through (None) blocks it too
            refs = [v.ref for v in inputs] or [self.b.input]
            ref = self.b.unsupported(unsupported.op or op, inputs=refs,
                                     shape=shape, name=self._name(node), where=_where_node(node))
            return _T(ref, out.dims) if isinstance(out, _Shape) and ref is not None else _poisoned(out)

    # -- emitting ---------------------------------------------------------------------------

    def _name(self, node: Any, suffix: str = "") -> str:
        if node.op == "call_module":
            return node.target + suffix
        scope = _scope(node)
        short = _short(node) + suffix
        return f"{scope}.{short}" if scope else short

    def emit(self, node: Any, op_type: str, attrs: dict[str, Any], inputs: list[_T], out: Any,
             params: dict[str, Any] | None = None, suffix: str = "", shape: tuple[int, ...] | None = None,
             name: str | None = None) -> _T:
        """Add one archcalc layer reading ``inputs``; expect the traced shape (``shape``, else
        ``out``'s) and ``params`` (role name -> torch tensor) to equal archcalc's rules."""
        dims = shape if shape is not None else out.dims
        if any(t.ref is None for t in inputs):
            return _T(None, tuple(dims))
        where = _where_node(node)
        if node.op == "call_module":
            where = f"module {node.target} ({type(self.gm.get_submodule(node.target)).__name__})"
        self.added += 1
        ref = self.b.add(op_type, attrs, inputs=[t.ref for t in inputs], name=name or self._name(node, suffix),
                       where=where)
        expected = {role: tuple(t.shape) for role, t in (params or {}).items()}
        for t in (params or {}).values():
            self.used_params.add(id(t))
        self.b.expect(ref, shape=tuple(dims[1:]), params=expected)
        if node.op == "call_module" and not suffix:
            self.module_layers.setdefault(node.target, []).append(ref)
        return _T(ref, tuple(dims))

    # -- modules ----------------------------------------------------------------------------

    def _module(self, node: Any, m: Any, args: Any, kwargs: Any, out: Any) -> Any:
        self.called[node.target] = self.called.get(node.target, 0) + 1
        if _is_extra_leaf(m):
            x = args[0]
            if type(m).__name__ == "StochasticDepth":
                return self.emit(node, "stochastic_depth", {"p": float(m.p), "mode": m.mode}, [x], out)
            return _layernorm_module(self, node, m, x, out, channels_first=True)
        for handler_class, handler in _module_handlers(self.torch):
            if isinstance(m, handler_class):
                x = args[0] if args else next(iter(kwargs.values()))
                if isinstance(x, _NegInfPad) and handler is _maxpool:
                    return handler(self, node, m, x, out)
                if not isinstance(x, _T) or not isinstance(out, _Shape) or len(args) + len(kwargs) != 1:
                    raise _Unsupported(_module_name(m))
                return handler(self, node, m, x, out)
        raise _Unsupported(_module_name(m))


def _refuse(node: Any) -> Any:
    raise _Unsupported(_target_name(node))


def _poisoned(out: Any) -> Any:
    if isinstance(out, _Shape):
        return _T(None, out.dims)
    if isinstance(out, (tuple, list)):
        return tuple(_poisoned(v) for v in out)
    return out


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _flatten(v)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _flatten(v)]
    if isinstance(value, slice):
        return _flatten([value.start, value.stop, value.step])
    return [value]


def _live_nodes(graph: Any, root: Any) -> set[Any]:
    """Nodes the output depends on (fx keeps dead ones, e.g. an unused ``x.size()``), and the
    in-place calls on them whose result is not used (``x.relu_()`` as a statement: it changes x)."""
    live: set[Any] = set()
    stack = [n for n in graph.nodes if n.op in ("output", "placeholder")]
    while True:
        while stack:
            node = stack.pop()
            if node in live:
                continue
            live.add(node)
            stack.extend(node.all_input_nodes)
        stack = [n for n in graph.nodes if n not in live and _in_place_statement(n, root) and n.args[0] in live]
        if not stack:
            return live


def _in_place_statement(node: Any, root: Any) -> bool:
    """A call whose result nobody uses that overwrites its first argument."""
    from torch import fx

    if node.users or not node.args or not isinstance(node.args[0], fx.Node):
        return False
    if node.op == "call_method":
        return node.target.endswith("_") and not node.target.startswith("_") and node.target != "requires_grad_"
    if node.op == "call_module":
        return bool(getattr(root.get_submodule(node.target), "inplace", False))
    if node.op == "call_function":
        return (node.kwargs.get("inplace") is True or node.target in (operator.iadd, operator.imul)
                or bool(node.meta.get("in_place")))
    return False


def _fetch_attr(gm: Any, target: str) -> Any:
    value = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _short(node: Any) -> str:
    """The suffix of a function's layer name: ``add``, ``cat``, ``flatten``, ``mean``."""
    if node.target is _slice_op:
        return "slice"
    schema = getattr(node.target, "_schema", None)
    if schema is not None:
        name = schema.name.partition("::")[2]
    else:
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
    name = name.strip("_")
    if name.startswith("i") and name[1:] in ("add", "mul"):
        name = name[1:]
    return name.rstrip("_") or "op"


# ---------------------------------------------------------------------------------------------
# Argument binding


def _bind(args: Any, kwargs: Any, names: Sequence[str], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Positional and keyword arguments by parameter name, defaults filled in."""
    bound = dict(defaults or {})
    bound.update(zip(names, args))
    bound.update(kwargs)
    return bound


def _axis(dim: int, rank: int) -> int:
    return dim % rank if -rank <= dim < rank else dim


def _ints(value: Any, rank: int) -> list[int]:
    """An int or a sequence, as one int per spatial axis."""
    if isinstance(value, int):
        return [value] * rank
    return [int(v) for v in value]


def _need(condition: bool, op: str) -> None:
    if not condition:
        raise _Unsupported(op)


# ---------------------------------------------------------------------------------------------
# Module handlers


def _module_handlers(torch: Any) -> list[tuple[type, Callable[..., Any]]]:
    global _MODULE_HANDLERS  # noqa: PLW0603 - built once, on the first import (needs torch)
    if _MODULE_HANDLERS is None:
        _MODULE_HANDLERS = _build_module_handlers(torch.nn)
    return _MODULE_HANDLERS


_MODULE_HANDLERS: list[tuple[type, Callable[..., Any]]] | None = None


def _own_tensors(m: Any) -> dict[str, Any]:
    """A module's parameters and buffers by name (``num_batches_tracked`` left out: see the module docstring)."""
    tensors = dict(m.named_parameters())
    tensors.update((n, b) for n, b in m.named_buffers() if not n.endswith("num_batches_tracked"))
    return tensors


def _params(mp: _Mapper, node: Any, m: Any, roles: dict[str, str]) -> dict[str, Any]:
    """The module's tensors by archcalc role; a tensor archcalc's op has no role for is an error."""
    tensors = _own_tensors(m)
    extra = sorted(set(tensors) - set(roles))
    if extra:
        raise SpecError(f"{mp.label}: module {node.target} ({type(m).__name__}) has tensors archcalc's layer does not "
                        f"hold: {', '.join(extra)}")
    learned = dict(m.named_parameters())
    for name, role in roles.items():
        if name in tensors and (name in learned) != (role in _LEARNED):
            kind = "a learned parameter" if name in learned else "a buffer"
            raise SpecError(f"{mp.label}: module {node.target} ({type(m).__name__}): its {name} is {kind}; archcalc's "
                            f"rule counts the {role} as {'a buffer' if name in learned else 'a learned parameter'}")
    return {role: tensors[name] for name, role in roles.items() if name in tensors}


#: Roles whose tensors archcalc counts as learned parameters (the others are buffers).
_LEARNED = {"weight", "bias", "scale", "shift", "slope"}


def _conv(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
    rank = len(m.kernel_size)
    attrs = {"filters": m.out_channels, "kernel": list(m.kernel_size), "stride": list(m.stride),
             "dilation": list(m.dilation), "groups": m.groups, "bias": m.bias is not None}
    params = _params(mp, node, m, {"weight": "weight", "bias": "bias"})
    if m.padding_mode != "zeros":
        modes = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}
        _need(m.padding_mode in modes and not isinstance(m.padding, str), f"{_module_name(m)}(padding_mode={m.padding_mode})")
        pads = [[p, p] for p in m.padding]
        padded = (*x.shape[:2], *(n + 2 * p for n, p in zip(x.shape[2:], m.padding)))
        x = mp.emit(node, "pad", {"padding": pads, "mode": modes[m.padding_mode], "value": 0.0}, [x], out,
                    suffix=".pad", shape=padded)
        attrs["padding"] = 0
    elif isinstance(m.padding, str):
        attrs["padding"] = m.padding
    else:
        attrs["padding"] = [[p, p] for p in _ints(m.padding, rank)]
    return mp.emit(node, "conv", attrs, [x], out, params)


def _conv_transpose(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
    _need(m.padding_mode == "zeros", f"{_module_name(m)}(padding_mode={m.padding_mode})")
    attrs = {"filters": m.out_channels, "kernel": list(m.kernel_size), "stride": list(m.stride),
             "padding": list(m.padding), "output_padding": list(m.output_padding), "dilation": list(m.dilation),
             "groups": m.groups, "bias": m.bias is not None}
    return mp.emit(node, "conv_transpose", attrs, [x], out, _params(mp, node, m, {"weight": "weight", "bias": "bias"}))


def _linear(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
    attrs = {"units": m.out_features, "bias": m.bias is not None}
    return mp.emit(node, "linear", attrs, [x], out, _params(mp, node, m, {"weight": "weight", "bias": "bias"}))


_NORM_ROLES = {"weight": "scale", "bias": "shift", "running_mean": "running_mean", "running_var": "running_var"}


def _batchnorm(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
    _need(m.affine, f"{_module_name(m)}(affine=False)")
    _need(m.track_running_stats, f"{_module_name(m)}(track_running_stats=False)")
    momentum = m.momentum
    if momentum is None:
        mp.b.warn(f"module {node.target}: momentum=None (a cumulative average) is shown as archcalc's momentum 0.1; "
                  "no count depends on it")
        momentum = 0.1
    attrs = {"eps": float(m.eps), "momentum": float(momentum)}
    return mp.emit(node, "batchnorm", attrs, [x], out, _params(mp, node, m, _NORM_ROLES))


def _layernorm_module(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape, channels_first: bool = False) -> _T:
    attrs = {"normalized_shape": None if channels_first else list(m.normalized_shape), "eps": float(m.eps),
             "elementwise_affine": bool(m.elementwise_affine), "bias": getattr(m, "bias", None) is not None}
    if not m.elementwise_affine:
        attrs["bias"] = False
    return mp.emit(node, "layernorm", attrs, [x], out, _params(mp, node, m, _NORM_ROLES))


def _groupnorm(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
    attrs = {"num_groups": m.num_groups, "eps": float(m.eps), "affine": bool(m.affine)}
    return mp.emit(node, "groupnorm", attrs, [x], out, _params(mp, node, m, _NORM_ROLES))


def _instancenorm(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
    _need(m.momentum is not None, f"{_module_name(m)}(momentum=None)")
    attrs = {"eps": float(m.eps), "momentum": float(m.momentum), "affine": bool(m.affine),
             "track_running_stats": bool(m.track_running_stats)}
    return mp.emit(node, "instancenorm", attrs, [x], out, _params(mp, node, m, _NORM_ROLES))


def _simple(op_type: str, attrs: Callable[[Any], dict[str, Any]] = lambda m: {}) -> Callable[..., _T]:
    def handle(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
        _params(mp, node, m, {})
        return mp.emit(node, op_type, attrs(m), [x], out)

    return handle


def _prelu(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
    init = _shared_value(m.weight, 0.25)
    attrs = {"num_parameters": m.num_parameters, "init": init}
    return mp.emit(node, "prelu", attrs, [x], out, _params(mp, node, m, {"weight": "slope"}))


def _shared_value(tensor: Any, default: float) -> float:
    """The value every element of ``tensor`` holds (an ``init`` attribute: PReLU's 0.25, ConvNeXt's
    layer scale 1e-6), as the shortest decimal that is that float32 (1e-06, not 9.99999997e-07);
    ``default`` when the elements differ (trained weights) or the tensor is empty."""
    import numpy as np

    values = tensor.detach().flatten()
    if not values.numel() or not bool((values == values[0]).all()):
        return default
    first = values[0].item()
    return float(str(np.float32(first))) if values.dtype == _torch_module().float32 else float(first)


def _softmax_dim(mp: _Mapper, dim: Any, x: _T, op: str) -> None:
    _need(dim is not None and _axis(dim, len(x.shape)) == 1, f"{op}(dim={dim})")


def _softmax(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
    _softmax_dim(mp, m.dim, x, _module_name(m))
    return mp.emit(node, "softmax", {}, [x], out)


def _maxpool(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
    _need(not m.return_indices, f"{_module_name(m)}(return_indices=True)")
    return _pool_attrs(mp, node, x, out, "maxpool", m.kernel_size, m.stride, m.padding, m.ceil_mode,
                       dilation=m.dilation)


def _avgpool(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
    return _pool_attrs(mp, node, x, out, "avgpool", m.kernel_size, m.stride, m.padding, m.ceil_mode,
                       count_include_pad=m.count_include_pad, divisor_override=getattr(m, "divisor_override", None))


def _pool_attrs(mp: _Mapper, node: Any, x: _T, out: _Shape, op_type: str, kernel: Any, stride: Any, padding: Any,
                ceil_mode: bool, dilation: Any = None, count_include_pad: Any = None, divisor_override: Any = None) -> _T:
    pads = [[0, 0]] * (len(x.source.shape if isinstance(x, _NegInfPad) else x.shape) - 2)
    if isinstance(x, _NegInfPad):
        _need(op_type == "maxpool", x.op)
        x, pads = x.source, x.pairs
    rank = len(x.shape) - 2
    kernel = _ints(kernel, rank)
    stride = kernel if stride is None or (not isinstance(stride, int) and len(stride) == 0) else _ints(stride, rank)
    padding = [[before + p, after + p] for (before, after), p in zip(pads, _ints(padding, rank))]
    attrs: dict[str, Any] = {"kernel": kernel, "stride": stride, "padding": padding, "ceil_mode": bool(ceil_mode)}
    if op_type == "maxpool":
        attrs["dilation"] = _ints(dilation if dilation is not None else 1, rank)
    else:
        attrs["count_include_pad"] = bool(count_include_pad)
        attrs["divisor_override"] = divisor_override
    return mp.emit(node, op_type, attrs, [x], out)


def _adaptive(mp: _Mapper, node: Any, x: _T, out: _Shape, op_type: str, output_size: Any) -> _T:
    rank = len(x.shape) - 2
    sizes = [output_size] * rank if isinstance(output_size, int) or output_size is None else list(output_size)
    if op_type == "adaptive_avgpool" and all(s == 1 for s in sizes):
        return mp.emit(node, "global_avgpool", {}, [x], out)
    return mp.emit(node, op_type, {"output_size": sizes}, [x], out)


def _adaptive_avg(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
    return _adaptive(mp, node, x, out, "adaptive_avgpool", m.output_size)


def _adaptive_max(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
    _need(not m.return_indices, f"{_module_name(m)}(return_indices=True)")
    return _adaptive(mp, node, x, out, "adaptive_maxpool", m.output_size)


def _upsample_attrs(mode: str, size: Any, scale_factor: Any, align_corners: Any, x: _T, op: str) -> dict[str, Any]:
    from archcalc.ops.upsample import MODES

    _need(mode in MODES, f"{op}(mode={mode!r})")
    rank = len(x.shape) - 2
    attrs: dict[str, Any] = {"mode": mode, "align_corners": None if mode == "nearest" else align_corners}
    if size is not None:
        attrs["size"] = _ints(size, rank)
    else:
        attrs["scale_factor"] = [float(s) for s in scale_factor] if isinstance(scale_factor, (list, tuple)) else float(
            scale_factor)
    return attrs


def _upsample(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
    attrs = _upsample_attrs(m.mode, m.size, m.scale_factor, m.align_corners, x, _module_name(m))
    if getattr(m, "recompute_scale_factor", None) and m.size is None:  # torch then uses the size it worked out
        attrs.pop("scale_factor")
        attrs["size"] = list(out.dims[2:])
    return mp.emit(node, "upsample", attrs, [x], out)


def _pad_pairs(pad: Sequence[int], x: _T, op: str) -> list[list[int]]:
    """F.pad's (last axis first) list as archcalc's [before, after] per spatial axis."""
    rank = len(x.shape) - 2
    pairs = [[int(pad[i]), int(pad[i + 1])] for i in range(0, len(pad), 2)][::-1]
    _need(len(pad) % 2 == 0 and len(pairs) <= rank and all(p >= 0 for pair in pairs for p in pair), f"{op}(pad={list(pad)})")
    return [[0, 0]] * (rank - len(pairs)) + pairs


def _pad_module(mode: str) -> Callable[..., _T]:
    def handle(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
        value = float(getattr(m, "value", 0.0))
        attrs = {"padding": _pad_pairs(m.padding, x, _module_name(m)), "mode": mode, "value": value}
        return mp.emit(node, "pad", attrs, [x], out)

    return handle


def _dropout2d(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
    _need(len(x.shape) >= 3, _module_name(m))
    return mp.emit(node, "dropout2d", {"p": float(m.p)}, [x], out)


def _flatten_module(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
    return _flatten_layer(mp, node, x, out, m.start_dim, m.end_dim, _module_name(m))


def _flatten_layer(mp: _Mapper, node: Any, x: _T, out: _Shape, start: int, end: int, op: str) -> _T:
    _need(_axis(start, len(x.shape)) >= 1, f"{op}(start_dim={start})")
    return mp.emit(node, "flatten", {"start_dim": int(start), "end_dim": int(end)}, [x], out)


def _unflatten_module(mp: _Mapper, node: Any, m: Any, x: _T, out: _Shape) -> _T:
    return _reshape_layer(mp, node, x, out, _module_name(m))


def _build_module_handlers(nn: Any) -> list[tuple[type, Callable[..., Any]]]:
    handlers: list[tuple[type, Callable[..., Any]]] = [
        ((nn.Conv1d, nn.Conv2d, nn.Conv3d), _conv),
        ((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), _conv_transpose),
        (nn.Linear, _linear),
        ((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d), _batchnorm),
        (nn.LayerNorm, _layernorm_module),
        (nn.GroupNorm, _groupnorm),
        ((nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d), _instancenorm),
        (nn.LocalResponseNorm, _simple("lrn", lambda m: {"size": m.size, "alpha": float(m.alpha),
                                                          "beta": float(m.beta), "k": float(m.k)})),
        (nn.ReLU, _simple("relu")),
        (nn.ReLU6, _simple("relu6")),
        (nn.Hardtanh, _simple("hardtanh", lambda m: {"min_val": float(m.min_val), "max_val": float(m.max_val)})),
        (nn.Hardswish, _simple("hardswish")),
        (nn.Hardsigmoid, _simple("hardsigmoid")),
        (nn.SiLU, _simple("silu")),
        (nn.Mish, _simple("mish")),
        (nn.ELU, _simple("elu", lambda m: {"alpha": float(m.alpha)})),
        (nn.GELU, _simple("gelu", lambda m: {"approximate": m.approximate})),
        (nn.PReLU, _prelu),
        (nn.LeakyReLU, _simple("leaky_relu", lambda m: {"negative_slope": float(m.negative_slope)})),
        (nn.Sigmoid, _simple("sigmoid")),
        (nn.Tanh, _simple("tanh")),
        (nn.Softmax, _softmax),
        ((nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d), _maxpool),
        ((nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d), _avgpool),
        ((nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d), _adaptive_avg),
        ((nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d), _adaptive_max),
        (nn.Dropout, _simple("dropout", lambda m: {"p": float(m.p)})),
        ((nn.Dropout1d, nn.Dropout2d, nn.Dropout3d), _dropout2d),
        (nn.Flatten, _flatten_module),
        (nn.Unflatten, _unflatten_module),
        (nn.Identity, _simple("identity")),
        (nn.Upsample, _upsample),
        ((nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d),
         _pad_module("constant")),
        ((nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d), _pad_module("reflect")),
        ((nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d), _pad_module("replicate")),
        (nn.ChannelShuffle, _simple("channel_shuffle", lambda m: {"groups": m.groups})),
    ]
    circular = tuple(getattr(nn, f"CircularPad{d}d") for d in (1, 2, 3) if hasattr(nn, f"CircularPad{d}d"))
    if circular:
        handlers.append((circular, _pad_module("circular")))
    # ReLU6 is a Hardtanh: the more specific classes first (the list order above), exact type wins
    return [(cls if isinstance(cls, tuple) else (cls,), handler) for cls, handler in handlers]


# ---------------------------------------------------------------------------------------------
# Function and method handlers: (mapper, node, args, kwargs, out) -> value


def _tensor(value: Any, op: str) -> _T:
    _need(isinstance(value, _T), op)
    return value


def _activation(op_type: str, attr_names: Sequence[str] = (), defaults: dict[str, Any] | None = None,
                names: Sequence[str] = ("input",)) -> Callable[..., _T]:
    """A function or method ``f(input, *attrs)`` that is archcalc's ``op_type``."""

    def handle(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
        bound = _bind(args, kwargs, [*names, *attr_names, "inplace"], defaults)
        x = _tensor(bound["input"], _target_name(node))
        attrs = {name: bound[name] for name in attr_names}
        return mp.emit(node, op_type, attrs, [x], out)

    return handle


def _f_hardtanh(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    bound = _bind(args, kwargs, ["input", "min_val", "max_val", "inplace"], {"min_val": -1.0, "max_val": 1.0})
    x = _tensor(bound["input"], _target_name(node))
    return mp.emit(node, "hardtanh", {"min_val": float(bound["min_val"]), "max_val": float(bound["max_val"])}, [x], out)


def _f_softmax(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    bound = _bind(args, kwargs, ["input", "dim"], {"dim": None})
    x = _tensor(bound["input"], _target_name(node))
    _softmax_dim(mp, bound["dim"], x, _target_name(node))
    return mp.emit(node, "softmax", {}, [x], out)


def _f_dropout(op_type: str) -> Callable[..., _T]:
    def handle(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
        bound = _bind(args, kwargs, ["input", "p", "training", "inplace"], {"p": 0.5})
        x = _tensor(bound["input"], _target_name(node))
        return mp.emit(node, op_type, {"p": float(bound["p"])}, [x], out)

    return handle


def _f_pool(op_type: str) -> Callable[..., _T]:
    def handle(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
        if op_type == "maxpool":
            names = ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]
        else:
            names = ["input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"]
        bound = _bind(args, kwargs, names, {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                                            "return_indices": False, "count_include_pad": True, "divisor_override": None})
        x = bound["input"]
        _need(isinstance(x, _T) or isinstance(x, _NegInfPad) and op_type == "maxpool", _target_name(node))
        _need(not bound["return_indices"] and isinstance(out, _Shape), f"{_target_name(node)}(return_indices=True)")
        return _pool_attrs(mp, node, x, out, op_type, bound["kernel_size"], bound["stride"], bound["padding"],
                           bound["ceil_mode"], dilation=bound["dilation"], count_include_pad=bound["count_include_pad"],
                           divisor_override=bound["divisor_override"])

    return handle


def _f_adaptive(op_type: str) -> Callable[..., _T]:
    def handle(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
        bound = _bind(args, kwargs, ["input", "output_size", "return_indices"], {"return_indices": False})
        x = _tensor(bound["input"], _target_name(node))
        _need(not bound["return_indices"] and isinstance(out, _Shape), f"{_target_name(node)}(return_indices=True)")
        return _adaptive(mp, node, x, out, op_type, bound["output_size"])

    return handle


def _f_interpolate(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    names = ["input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias"]
    bound = _bind(args, kwargs, names, {"size": None, "scale_factor": None, "mode": "nearest", "align_corners": None,
                                        "recompute_scale_factor": None, "antialias": False})
    x = _tensor(bound["input"], _target_name(node))
    _need(not bound["antialias"], f"{_target_name(node)}(antialias=True)")
    attrs = _upsample_attrs(bound["mode"], bound["size"], bound["scale_factor"], bound["align_corners"], x,
                            _target_name(node))
    if bound["recompute_scale_factor"] and bound["size"] is None:  # torch then uses the size it worked out
        attrs.pop("scale_factor")
        attrs["size"] = list(out.dims[2:])
    return mp.emit(node, "upsample", attrs, [x], out)


def _f_cat(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    bound = _bind(args, kwargs, ["tensors", "dim"], {"dim": 0})
    tensors = [_tensor(t, _target_name(node)) for t in bound["tensors"]]
    _need(len(tensors) >= 1 and _axis(bound["dim"], len(out.dims)) == 1, f"{_target_name(node)}(dim={bound['dim']})")
    if len(tensors) == 1:
        return tensors[0]
    return mp.emit(node, "concat", {}, tensors, out)


def _f_flatten(names: Sequence[str]) -> Callable[..., _T]:
    def handle(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
        bound = _bind(args, kwargs, names, {"start_dim": 0, "end_dim": -1})
        x = _tensor(bound["input"], _target_name(node))
        return _flatten_layer(mp, node, x, out, bound["start_dim"], bound["end_dim"], _target_name(node))

    return handle


def _reshape_layer(mp: _Mapper, node: Any, x: _T, out: _Shape, op: str) -> _T:
    """A view or reshape to the traced shape; the batch axis must stay the first."""
    _need(len(out.dims) >= 2 and out.dims[0] == x.shape[0], f"{op} (moving the batch axis)")
    return mp.emit(node, "reshape", {"shape": list(out.dims[1:])}, [x], out)


def _m_reshape(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    x = _tensor(args[0] if args else kwargs.get("input"), _target_name(node))
    _need(isinstance(out, _Shape), _target_name(node))
    return _reshape_layer(mp, node, x, out, _target_name(node))


def _m_squeeze(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    bound = _bind(args, kwargs, ["input", "dim"], {"dim": None})
    x = _tensor(bound["input"], _target_name(node))
    dims = bound["dim"] if isinstance(bound["dim"], (list, tuple)) else [bound["dim"]]
    _need(bound["dim"] is not None and all(_axis(d, len(x.shape) + (node.target == "unsqueeze")) != 0 for d in dims),
          f"{_target_name(node)}(dim={bound['dim']})")
    return _reshape_layer(mp, node, x, out, _target_name(node))


def _m_permute(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    x = _tensor(args[0] if args else kwargs.get("input"), _target_name(node))
    rest = list(args[1:]) or [kwargs.get("dims")]
    dims = list(rest[0]) if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
    dims = [_axis(int(d), len(x.shape)) for d in dims]
    _need(dims[:1] == [0], f"{_target_name(node)}(dims={dims}) (moving the batch axis)")
    if dims == list(range(len(dims))):
        return x
    return mp.emit(node, "permute", {"dims": dims}, [x], out)


def _m_transpose(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    bound = _bind(args, kwargs, ["input", "dim0", "dim1"])
    x = _tensor(bound["input"], _target_name(node))
    rank = len(x.shape)
    a, b = _axis(bound["dim0"], rank), _axis(bound["dim1"], rank)
    _need(0 not in (a, b), f"{_target_name(node)}({a}, {b}) (moving the batch axis)")
    dims = list(range(rank))
    dims[a], dims[b] = dims[b], dims[a]
    if a == b:
        return x
    return mp.emit(node, "permute", {"dims": dims}, [x], out)


def _m_movedim(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    bound = _bind(args, kwargs, ["input", "source", "destination"])
    x = _tensor(bound["input"], _target_name(node))
    rank = len(x.shape)
    sources = bound["source"] if isinstance(bound["source"], (list, tuple)) else [bound["source"]]
    targets = bound["destination"] if isinstance(bound["destination"], (list, tuple)) else [bound["destination"]]
    order: list[int | None] = [None] * rank
    for source, target in zip(sources, targets):
        order[_axis(target, rank)] = _axis(source, rank)
    rest = iter(d for d in range(rank) if d not in order)
    dims = [d if d is not None else next(rest) for d in order]
    _need(dims[0] == 0, f"{_target_name(node)} (moving the batch axis)")
    if dims == list(range(rank)):
        return x
    return mp.emit(node, "permute", {"dims": dims}, [x], out)


def _m_pass(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    x = _tensor(args[0], _target_name(node))
    _need(isinstance(out, _Shape) and out.dims == x.shape, _target_name(node))
    return x


def _m_mean(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    bound = _bind(args, kwargs, ["input", "dim", "keepdim"], {"dim": None, "keepdim": False})
    x = _tensor(bound["input"], _target_name(node))
    rank = len(x.shape)
    dims = bound["dim"] if isinstance(bound["dim"], (list, tuple)) else [bound["dim"]]
    spatial = set(range(2, rank))
    _need(bound["dim"] is not None and rank >= 3 and {_axis(d, rank) for d in dims} == spatial and len(dims) == len(spatial),
          f"{_target_name(node)} (over axes other than the spatial ones)")
    pooled = (*x.shape[:2], *([1] * (rank - 2)))
    if bound["keepdim"]:
        return mp.emit(node, "global_avgpool", {}, [x], out)
    y = mp.emit(node, "global_avgpool", {}, [x], out, shape=pooled)
    return mp.emit(node, "flatten", {"start_dim": 1, "end_dim": -1}, [y], out, suffix=".flatten")


def _f_split(kind: str) -> Callable[..., _Parts]:
    def handle(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _Parts:
        second = "chunks" if kind == "chunk" else "split_size_or_sections"
        bound = _bind(args, kwargs, ["input", second, "dim"], {"dim": 0})
        x = _tensor(bound["input"], _target_name(node))
        dim = _axis(bound["dim"], len(x.shape))
        _need(dim != 0 and isinstance(out, (tuple, list)) and all(isinstance(o, _Shape) for o in out),
              f"{_target_name(node)}(dim={bound['dim']})")
        bounds, start = [], 0
        for part in out:
            bounds.append((start, start + part.dims[dim]))
            start += part.dims[dim]
        return _Parts(x, dim, bounds, mp._name(node))

    return handle


def _f_getitem(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> Any:
    container, index = args
    if isinstance(container, _Parts):
        i = index % len(container.bounds)
        if i not in container.made:
            start, stop = container.bounds[i]
            container.made[i] = mp.emit(node, "slice", {"dim": container.dim, "start": start, "stop": stop},
                                        [container.source], out, name=f"{container.name}.{i}")
        return container.made[i]
    if isinstance(container, (tuple, list)):
        return container[index]
    x = _tensor(container, "Tensor.__getitem__")
    return _index(mp, node, x, index, out)


def _index(mp: _Mapper, node: Any, x: _T, index: Any, out: Any) -> _T:
    """``x[:, a:b]`` and the like: one sliced axis (not the batch) becomes a slice layer."""
    op = "Tensor.__getitem__"
    items = list(index) if isinstance(index, tuple) else [index]
    _need(all(isinstance(i, slice) or i is Ellipsis for i in items) and items.count(Ellipsis) <= 1, op)
    if Ellipsis in items:
        k = items.index(Ellipsis)
        items = items[:k] + [slice(None)] * (len(x.shape) - len(items) + 1) + items[k + 1:]
    cut = [(axis, s) for axis, s in enumerate(items) if s != slice(None)]
    _need(len(items) <= len(x.shape) and all(axis != 0 and (s.step is None or s.step > 0) for axis, s in cut), op)
    # one slice layer per sliced axis, in axis order (U-Net's crop slices height and width)
    shape = list(x.shape)
    for k, (axis, s) in enumerate(cut):
        shape[axis] = len(range(*s.indices(shape[axis])))
        attrs = {"dim": axis, "start": s.start, "stop": s.stop, "step": s.step or 1}
        x = mp.emit(node, "slice", attrs, [x], out, shape=tuple(shape), suffix=f".{k}" if k else "")
    return x


def _f_slice_op(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    bound = _bind(args, kwargs, ["input", "dim", "start", "end", "step"], {"dim": 0, "start": None, "end": None, "step": 1})
    x = _tensor(bound["input"], "aten.slice")
    size = x.shape[_axis(bound["dim"], len(x.shape))]
    end = None if bound["end"] is not None and bound["end"] >= size else bound["end"]  # torch.export's INT64_MAX
    return _index(mp, node, x, (slice(None),) * _axis(bound["dim"], len(x.shape)) + (slice(bound["start"], end,
                                                                                          bound["step"]),), out)


def _binary(op_type: str) -> Callable[..., _T]:
    """``a + b`` / ``a * b``: archcalc's add or mul of two tensors of one rank; a parameter times a
    tensor (ConvNeXt's layer scale) is a ``scale`` layer."""

    def handle(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
        bound = _bind(args, kwargs, ["input", "other", "alpha"], {"alpha": 1})
        a, b = bound["input"], bound["other"]
        op = _target_name(node)
        _need(bound["alpha"] == 1, f"{op}(alpha={bound['alpha']})")
        if op_type == "mul" and {type(a), type(b)} == {_T, _P}:
            x, p = (a, b) if isinstance(a, _T) else (b, a)
            return _scale(mp, node, x, p, out, op)
        _need(not isinstance(a, _P) and not isinstance(b, _P), f"{op} (with a parameter or buffer)")
        _need(isinstance(a, _T) and isinstance(b, _T), f"{op} (with a constant)")
        _need(len(a.shape) == len(b.shape), f"{op} (of tensors of different ranks)")
        return mp.emit(node, op_type, {}, [a, b], out)

    return handle


def _scale(mp: _Mapper, node: Any, x: _T, p: _P, out: Any, op: str) -> _T:
    rank = len(x.shape)
    channels = x.shape[1]
    shape = list(p.tensor.shape)
    while len(shape) > rank - 1 and shape[0] == 1:  # broadcast's leading ones: (1, C, 1, 1) is (C, 1, 1)
        shape.pop(0)
    _need(shape == [channels, *([1] * (rank - 2))], f"{op} (by a parameter of shape {list(p.tensor.shape)})")
    _need(_learned(p) is True, f"{op} (by a buffer)")  # FrozenBatchNorm2d's folded statistics: not learned
    init = _shared_value(p.tensor, 1.0)
    mp.used_params |= p.used()
    if x.ref is None:
        return _T(None, out.dims)
    mp.added += 1
    ref = mp.b.add("scale", {"init": init, "bias": False}, inputs=[x.ref], name=mp._name(node), where=_where_node(node))
    mp.b.expect(ref, shape=tuple(out.dims[1:]), params={"scale": (channels,)})
    return _T(ref, out.dims)


def _f_layer_norm(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    bound = _bind(args, kwargs, ["input", "normalized_shape", "weight", "bias", "eps"],
                  {"weight": None, "bias": None, "eps": 1e-5})
    x = _tensor(bound["input"], _target_name(node))
    weight, bias = bound["weight"], bound["bias"]
    _need(all(v is None or isinstance(v, _P) for v in (weight, bias)) and (weight is not None or bias is None),
          _target_name(node))
    attrs = {"normalized_shape": list(bound["normalized_shape"]), "eps": float(bound["eps"]),
             "elementwise_affine": weight is not None, "bias": bias is not None}
    params = {role: v.tensor for role, v in (("scale", weight), ("shift", bias)) if v is not None}
    for v in (weight, bias):
        if v is not None:
            mp.used_params |= v.used()
    return mp.emit(node, "layernorm", attrs, [x], out, params)


def _learned(p: _P) -> bool | None:
    """True when every module tensor behind ``p`` is a parameter, False when every one is a buffer."""
    from torch import nn

    kinds = {isinstance(t, nn.Parameter) for t in p.origins or (p.tensor,)}
    return kinds.pop() if len(kinds) == 1 else None


def _parameters(mp: _Mapper, node: Any, roles: dict[str, Any]) -> dict[str, Any]:
    """Parameter tensors given to a functional call, by archcalc role (None ones left out); each
    must be a module's tensor (a computed weight is not one archcalc can count)."""
    _need(all(v is None or isinstance(v, _P) for v in roles.values()), f"{_target_name(node)} (with a computed weight)")
    for role, v in roles.items():
        if v is not None:
            _need(_learned(v) is (role in _LEARNED),
                  f"{_target_name(node)} (with {'parameters' if _learned(v) else 'buffers'} as its {role})")
    for v in roles.values():
        if v is not None:
            mp.used_params |= v.used()
    return {role: v.tensor for role, v in roles.items() if v is not None}


def _f_linear(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    bound = _bind(args, kwargs, ["input", "weight", "bias"], {"bias": None})
    x = _tensor(bound["input"], _target_name(node))
    params = _parameters(mp, node, {"weight": bound["weight"], "bias": bound["bias"]})
    _need("weight" in params and params["weight"].dim() == 2, _target_name(node))
    return mp.emit(node, "linear", {"units": int(params["weight"].shape[0]), "bias": "bias" in params}, [x], out, params)


def _f_conv(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    bound = _bind(args, kwargs, ["input", "weight", "bias", "stride", "padding", "dilation", "groups"],
                  {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1})
    x = _tensor(bound["input"], _target_name(node))
    params = _parameters(mp, node, {"weight": bound["weight"], "bias": bound["bias"]})
    _need("weight" in params, _target_name(node))
    rank = params["weight"].dim() - 2
    padding = bound["padding"]
    attrs = {"filters": int(params["weight"].shape[0]), "kernel": list(params["weight"].shape[2:]),
             "stride": _ints(bound["stride"], rank), "dilation": _ints(bound["dilation"], rank),
             "groups": int(bound["groups"]), "bias": "bias" in params,
             "padding": padding if isinstance(padding, str) else [[p, p] for p in _ints(padding, rank)]}
    return mp.emit(node, "conv", attrs, [x], out, params)


def _f_batch_norm(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    bound = _bind(args, kwargs, ["input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"],
                  {"weight": None, "bias": None, "training": False, "momentum": 0.1, "eps": 1e-5})
    x = _tensor(bound["input"], _target_name(node))
    roles = {"running_mean": bound["running_mean"], "running_var": bound["running_var"], "scale": bound["weight"],
             "shift": bound["bias"]}
    _need(all(v is not None for v in roles.values()), f"{_target_name(node)} (without affine or running statistics)")
    params = _parameters(mp, node, roles)
    attrs = {"eps": float(bound["eps"]), "momentum": float(bound["momentum"] if bound["momentum"] is not None else 0.1)}
    return mp.emit(node, "batchnorm", attrs, [x], out, params)


def _f_pad(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    bound = _bind(args, kwargs, ["input", "pad", "mode", "value"], {"mode": "constant", "value": None})
    x = _tensor(bound["input"], _target_name(node))
    _need(bound["mode"] in ("constant", "reflect", "replicate", "circular"), f"{_target_name(node)}(mode={bound['mode']!r})")
    pairs = _pad_pairs(bound["pad"], x, _target_name(node))
    value = float(bound["value"] or 0.0)
    if bound["mode"] == "constant" and value == -math.inf:
        return _NegInfPad(x, pairs, f"{_target_name(node)}(value=-inf)")
    attrs = {"padding": pairs, "mode": bound["mode"], "value": value}
    return mp.emit(node, "pad", attrs, [x], out)


def _f_channel_shuffle(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    bound = _bind(args, kwargs, ["input", "groups"])
    x = _tensor(bound["input"], _target_name(node))
    return mp.emit(node, "channel_shuffle", {"groups": int(bound["groups"])}, [x], out)


def _f_stochastic_depth(mp: _Mapper, node: Any, args: Any, kwargs: Any, out: Any) -> _T:
    bound = _bind(args, kwargs, ["input", "p", "mode", "training"], {"training": True})
    x = _tensor(bound["input"], _target_name(node))
    return mp.emit(node, "stochastic_depth", {"p": float(bound["p"]), "mode": bound["mode"]}, [x], out)


_ACTIVATIONS: dict[str, tuple[str, Sequence[str], dict[str, Any]]] = {
    "relu": ("relu", (), {}),
    "relu6": ("relu6", (), {}),
    "hardswish": ("hardswish", (), {}),
    "hardsigmoid": ("hardsigmoid", (), {}),
    "silu": ("silu", (), {}),
    "mish": ("mish", (), {}),
    "sigmoid": ("sigmoid", (), {}),
    "tanh": ("tanh", (), {}),
    "elu": ("elu", ("alpha",), {"alpha": 1.0}),
    "gelu": ("gelu", ("approximate",), {"approximate": "none"}),
    "leaky_relu": ("leaky_relu", ("negative_slope",), {"negative_slope": 0.01}),
}

_METHODS: dict[str, Callable[..., Any]] = {
    **{name: _activation(t, a, d) for name, (t, a, d) in _ACTIVATIONS.items() if name in ("relu", "sigmoid", "tanh")},
    **{f"{name}_": _activation(t, a, d) for name, (t, a, d) in _ACTIVATIONS.items() if name in ("relu", "sigmoid", "tanh")},
    "softmax": _f_softmax,
    "view": _m_reshape,
    "reshape": _m_reshape,
    "unflatten": _m_reshape,
    "squeeze": _m_squeeze,
    "unsqueeze": _m_squeeze,
    "flatten": _f_flatten(["input", "start_dim", "end_dim"]),
    "permute": _m_permute,
    "transpose": _m_transpose,
    "swapaxes": _m_transpose,
    "movedim": _m_movedim,
    "mean": _m_mean,
    "chunk": _f_split("chunk"),
    "split": _f_split("split"),
    "add": _binary("add"),
    "add_": _binary("add"),
    "mul": _binary("mul"),
    "mul_": _binary("mul"),
    **{name: _m_pass for name in _PASS_METHODS},
}

_FUNCTIONS: dict[Any, Callable[..., Any]] | None = None


def _function_handler(target: Any) -> Callable[..., Any] | None:
    global _FUNCTIONS  # noqa: PLW0603 - built once, on the first import (needs torch)
    if _FUNCTIONS is None:
        _FUNCTIONS = _build_functions()
    try:
        return _FUNCTIONS.get(target)
    except TypeError:  # an unhashable target
        return None


def _build_functions() -> dict[Any, Callable[..., Any]]:
    import torch
    from torch.nn import functional as F  # noqa: N812

    table: dict[Any, Callable[..., Any]] = {}
    for name, (op_type, attrs, defaults) in _ACTIVATIONS.items():
        for owner in (F, torch):
            fn = getattr(owner, name, None)
            if fn is not None:
                table[fn] = _activation(op_type, attrs, defaults)
        inplace = getattr(torch, f"{name}_", None)
        if inplace is not None:
            table[inplace] = _activation(op_type, attrs, defaults)
    table[F.hardtanh] = _f_hardtanh
    table[F.softmax] = table[torch.softmax] = _f_softmax
    table[F.dropout] = _f_dropout("dropout")
    for fn in (F.dropout1d, F.dropout2d, F.dropout3d):
        table[fn] = _f_dropout("dropout2d")
    for fn in (F.max_pool1d, F.max_pool2d, F.max_pool3d):
        table[fn] = _f_pool("maxpool")
    for fn in (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d):
        table[fn] = _f_pool("avgpool")
    for fn in (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d):
        table[fn] = _f_adaptive("adaptive_avgpool")
    for fn in (F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d):
        table[fn] = _f_adaptive("adaptive_maxpool")
    table[F.interpolate] = _f_interpolate
    for fn in (torch.cat, torch.concat, torch.concatenate):
        table[fn] = _f_cat
    table[torch.flatten] = _f_flatten(["input", "start_dim", "end_dim"])
    table[torch.reshape] = _m_reshape
    table[torch.squeeze] = table[torch.unsqueeze] = _m_squeeze
    table[torch.permute] = _m_permute
    table[torch.transpose] = table[torch.swapaxes] = _m_transpose
    table[torch.movedim] = _m_movedim
    table[torch.mean] = _m_mean
    table[torch.chunk] = _f_split("chunk")
    table[torch.split] = _f_split("split")
    table[operator.getitem] = _f_getitem
    for fn in (operator.add, operator.iadd, torch.add):
        table[fn] = _binary("add")
    for fn in (operator.mul, operator.imul, torch.mul):
        table[fn] = _binary("mul")
    table[_same] = _m_pass
    table[_slice_op] = _f_slice_op
    table[F.layer_norm] = _f_layer_norm
    table[F.linear] = _f_linear
    for fn in (F.conv1d, F.conv2d, F.conv3d):
        table[fn] = _f_conv
    table[F.batch_norm] = _f_batch_norm
    table[F.pad] = _f_pad
    table[torch.nn.functional.channel_shuffle] = table[torch.channel_shuffle] = _f_channel_shuffle
    try:
        import torchvision.ops
    except ImportError:
        pass
    else:
        table[torchvision.ops.stochastic_depth] = _f_stochastic_depth
    return table
