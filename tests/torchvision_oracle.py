"""torchvision as an independent oracle for the zoo: its own models, compared layer by layer.

Only tests import this. A zoo spec written "layer for layer as torchvision.models.X" is checked
against ``X(weights=None)`` itself, not against a model rebuilt from archcalc's graph: torchvision's
code says what the network is. :func:`trace` runs the model in eval mode on a zero input of the
spec's shape with a forward hook on every leaf module (a module without children), recording each
call in execution order: its input and output shapes, the parameters and buffers it owns, and the
MACs torch's ``FlopCounterMode`` counted for it (its FLOPs / 2). :func:`align` pairs those calls
with archcalc's layers.

The alignment rule (what :func:`align` does, in order):

- archcalc's layers are taken in graph order (the order of the spec), torch's leaf-module calls
  in execution order; a spec written after a torchvision model lists its layers in the order the
  model's ``forward`` runs them.
- An archcalc layer *matches* a torch call when the call's module is an instance of the class of
  the layer's own PyTorch equivalent (the op's ``torch_module``, unwrapped from archcalc's
  padding wrapper): conv with ``nn.Conv2d``, batchnorm with ``nn.BatchNorm3d``, hardtanh with
  ``nn.ReLU6`` (a Hardtanh), global_avgpool with ``nn.AdaptiveAvgPool2d``...
- For each torch call, the next archcalc layer that matches it is taken, passing over layers that
  torch may run *without a module*: ``torch.cat``, ``+=``, ``torch.flatten``, ``F.relu``,
  ``F.avg_pool2d``, ``F.adaptive_avg_pool2d``... A layer passed over must own no parameters and
  no buffers (anything learned or saved lives in a module, so a conv, linear or batchnorm layer
  is never passed over: such a layer without its torch call is an alignment error).
- A torch call that matches no archcalc layer before the next one that owns parameters must be
  an identity here: no parameters, no buffers, output shape equal to its input's (VGG's
  ``AdaptiveAvgPool2d(7)`` on a 7x7 map). Anything else is an alignment error.
- The layers passed over are still checked: every matched call's *input* shape must be the
  archcalc layer's input shape, so the shape a functional concat, add or pool produced is the
  one the next module received, and the final output is compared too.

So each module is compared exactly (output shape, input shape, params, buffers, MACs), and what
torch does without modules is compared through the shapes it hands on and through the totals
(``model.parameters()``, buffers and ``FlopCounterMode``'s total for the whole forward).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Plain imports: without torchvision this module fails to import with ImportError, and the tests'
# pytest.importorskip("tests.torchvision_oracle") skip with that reason.
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from archcalc.graph import Graph
from archcalc.ops import get_op
from archcalc.passes import infer_shapes


def _models() -> dict[str, Any]:
    """The zoo's torchvision twins: zoo name -> a function building the model (weights=None)."""
    tv = torchvision.models
    twins: dict[str, Any] = {
        name: (lambda name=name: tv.get_model(name, weights=None))
        for name in ("vgg11", "vgg13", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                     "squeezenet1_0", "squeezenet1_1", "densenet121", "mobilenet_v2")
    }
    # the network itself: no auxiliary classifier (it runs only in training), no input rescaling
    twins["inception_v3"] = lambda: tv.inception_v3(weights=None, aux_logits=False, transform_input=False, init_weights=False)
    twins["r3d_18"] = lambda: tv.video.r3d_18(weights=None)
    twins["vgg16-cifar"] = lambda: tv.vgg16(weights=None)  # the same VGG16, fed 3x32x32
    return twins


TWINS = _models()


@dataclass(frozen=True)
class Call:
    """One call of a torchvision leaf module, shapes without the batch axis."""

    name: str  # the module's qualified name in the model, e.g. "features.3.squeeze"
    module: Any
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    params: int
    buffers: int
    macs: int  # FlopCounterMode's count for this module (its FLOPs / 2), shared among its calls


@dataclass
class Trace:
    """A traced forward pass: the leaf calls in order, and the model's totals."""

    calls: list[Call]
    params: int
    buffers: int
    macs: int
    out_shape: tuple[int, ...]


def _own_counts(module: Any) -> tuple[int, int]:
    """Parameters and buffers of a leaf module; batchnorm's step counter (an int64 scalar, no
    statistic) is not a buffer in archcalc's sense."""
    params = sum(p.numel() for p in module.parameters())
    buffers = sum(b.numel() for n, b in module.named_buffers() if not n.endswith("num_batches_tracked"))
    return params, buffers


def _shape(tensor: Any) -> tuple[int, ...]:
    return tuple(tensor.shape[1:])


def trace(model: Any, input_shape: tuple[int, ...]) -> Trace:
    """Run ``model`` (eval, no grad) on zeros of ``(1, *input_shape)``, hooking every leaf module."""
    model.eval()
    leaves = {module: name for name, module in model.named_modules() if not list(module.children())}
    raw: list[tuple[Any, tuple, tuple]] = []

    def hook(module: Any, inputs: tuple, output: Any) -> None:
        raw.append((module, tuple(_shape(x) for x in inputs if isinstance(x, torch.Tensor)), _shape(output)))

    handles = [module.register_forward_hook(hook) for module in leaves]
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            output = model(torch.zeros((1, *input_shape)))
    finally:
        for handle in handles:
            handle.remove()
    prefix = type(model).__name__
    flops = {key: sum(ops.values()) for key, ops in counter.get_flop_counts().items()}
    calls_per_module: dict[Any, int] = {}
    for module, _, _ in raw:
        calls_per_module[module] = calls_per_module.get(module, 0) + 1
    calls = []
    for module, in_shapes, out_shape in raw:
        name = leaves[module]
        module_flops = flops.get(f"{prefix}.{name}", 0)
        assert module_flops % (2 * calls_per_module[module]) == 0, (name, module_flops)
        calls.append(Call(name, module, in_shapes, out_shape, *_own_counts(module), module_flops // 2 // calls_per_module[module]))
    total_flops = counter.get_total_flops()
    assert total_flops % 2 == 0
    return Trace(
        calls=calls,
        params=sum(p.numel() for p in model.parameters()),
        buffers=sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked")),
        macs=total_flops // 2,
        out_shape=_shape(output),
    )


def build_twin(name: str) -> Any:
    """The zoo model's torchvision twin, built by torchvision's own code, its tensors all zero.

    It is built on the meta device and then given real (zeroed) storage: initialising VGG's 138M
    random weights took longer than running the network, and no figure compared here depends on
    the values.
    """
    with torch.device("meta"):
        model = TWINS[name]()
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.zero_()
    return model


def trace_twin(name: str, input_shape: tuple[int, ...]) -> Trace:
    """:func:`build_twin` and :func:`trace`, on one thread: on a loaded 2-core machine torch's
    two OpenMP threads spin against each other (resnet152's forward took about 20 s on two
    threads there, 2.5 s on one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return trace(build_twin(name), input_shape)
    finally:
        torch.set_num_threads(threads)


class AlignmentError(AssertionError):
    """archcalc's layers and torchvision's module calls cannot be paired by the rule above."""


@dataclass
class Alignment:
    """Pairs (archcalc layer report, torch call), and what each side had without a partner."""

    pairs: list[tuple[Any, Call]] = field(default_factory=list)
    functional: list[Any] = field(default_factory=list)  # archcalc layers torch runs without a module
    identities: list[Call] = field(default_factory=list)  # torch calls that are identities here


def _twin_class(layer: Any, op_type: str) -> type:
    """The class of the layer's own PyTorch equivalent (unwrapped from archcalc's padding), built on
    the meta device (VGG's fc6 would otherwise initialise 102M weights to learn a class name)."""
    with torch.device("meta"):
        module = get_op(op_type).torch_module(layer)
    return type(getattr(module, "inner", module))


def align(graph: Graph, analysis: Any, calls: list[Call]) -> Alignment:
    """Pair archcalc's layers with torch's leaf calls by the module docstring's rule.

    Raises:
        AlignmentError: a layer owning parameters or buffers has no call, or a call that is not
            an identity has no layer.
    """
    layers = infer_shapes(graph)
    rows = analysis.layers[1:]
    classes = [_twin_class(layers[row.name], row.type) for row in rows]
    result = Alignment()
    index = 0
    for call in calls:
        scan = index
        while scan < len(rows) and not isinstance(call.module, classes[scan]) and _functional(rows[scan]):
            scan += 1
        if scan < len(rows) and isinstance(call.module, classes[scan]):
            result.functional.extend(rows[index:scan])
            result.pairs.append((rows[scan], call))
            index = scan + 1
            continue
        if call.params or call.buffers or call.in_shapes != (call.out_shape,):
            where = (
                f"archcalc's next layer with parameters is {rows[scan].name!r} ({rows[scan].type})"
                if scan < len(rows)
                else "archcalc has no layers left"
            )
            raise AlignmentError(f"torch call {call.name} ({type(call.module).__name__}) matches no archcalc layer: {where}")
        result.identities.append(call)
    for row in rows[index:]:
        if not _functional(row):
            raise AlignmentError(f"archcalc layer {row.name!r} ({row.type}) owns parameters or buffers but torch made no call for it")
    result.functional.extend(rows[index:])
    return result


def _functional(row: Any) -> bool:
    """A layer torch may run without a module: it owns no parameters and no buffers."""
    return row.params == 0 and row.buffers == 0
