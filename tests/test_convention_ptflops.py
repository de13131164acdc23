"""The ``ptflops`` and ``ptflops-aten`` presets against ptflops 0.7.5 itself.

The oracle is the tool: ``get_model_complexity_info(module, input_res, as_strings=False, ...)`` on
archcalc's exported torch model (tests/peer_oracle.py), its printing sent to a buffer and read
back. ``flops_units="Mac"`` makes ptflops print every per-module figure as a plain number.

Per layer, the pytorch backend's figure is the module's own ``__flops__`` as ``print_per_layer_stat``
prints it, plus the counts of the ``torch.nn.functional``/``torch`` wrappers ptflops installs that
ran inside that module's ``forward`` (ptflops adds those to its total only; they are read here from
the wrappers' own ``collector`` lists, attributed to the innermost module running). A layer
without a module (``a + b``, ``torch.cat``, ``F.pad`` in the model's ``forward``) counts what was
collected outside every module. The aten backend lists only the model's direct children that are
called as modules; those are compared, and the totals.
"""

from __future__ import annotations

import copy
import functools
import io
import math
import re
from collections import defaultdict

import pytest

ptflops = pytest.importorskip("ptflops")
peer_oracle = pytest.importorskip("tests.peer_oracle")

import torch  # noqa: E402
import torch._dynamo  # noqa: E402,F401  (meta tensors import it lazily; under ptflops's patched torch.mul that import fails)
import torch.nn.functional as F  # noqa: E402
from ptflops.utils import flops_to_string  # noqa: E402

import archcalc  # noqa: E402
from archcalc import conventions  # noqa: E402
from archcalc.exporters.torch import to_torch  # noqa: E402
from archcalc.ops import REGISTRY  # noqa: E402
from archcalc.spec import from_dict  # noqa: E402
from tests.helpers import single_op_graph  # noqa: E402

ZOO = archcalc.zoo.names()
#: Op types archcalc cannot export to torch (so no tool can run them): each checked to refuse.
UNEXPORTABLE = {"opaque": "a stand-in for an unknown layer: its computation is not known, so it has no torch module"}
CASES = [(op_type, i, ex) for op_type, op in sorted(REGISTRY.items()) for i, ex in enumerate(op.examples)
         if op_type not in UNEXPORTABLE]


# --- the oracle ---------------------------------------------------------------------------------

_LINE = re.compile(r"^(?P<indent>\s*)\((?P<name>[^)]+)\): \w+\((?P<rest>.*)$")
_MAC = re.compile(r"(?P<value>[0-9.e+-]+) Mac, ")


def _printed_per_module(text: str) -> dict[str, float]:
    """Module name -> the figure ``print_per_layer_stat`` printed for it (``repr(model)`` with each
    module's ``extra_repr`` replaced by ``params, % Params, N Mac, % MACs, ...``). A module with
    children prints ``(name): Class(`` and its figures on the next line."""
    out: dict[str, float] = {}
    stack: list[tuple[int, str]] = []
    pending = None
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            indent = len(match.group("indent"))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            name = ".".join([s for _, s in stack] + [match.group("name")])
            rest = match.group("rest")
            figure = _MAC.search(rest)
            if figure:
                out[name] = float(figure.group("value"))
            else:  # a container: its figures follow on the next line
                stack.append((indent, match.group("name")))
                pending = name
            continue
        if pending is not None:
            figure = _MAC.search(line)
            if figure:
                out[pending] = float(figure.group("value"))
            pending = None
    return out


def run_pytorch_backend(module, input_shape, batch: int = 1):
    """ptflops's pytorch backend on ``module``: (total, per-module printed figure, wrapped-function
    counts by innermost module name, '' for outside every module). Nothing is printed."""
    names = {m: n for n, m in module.named_modules()}
    functional: dict[str, float] = defaultdict(float)
    stack = [""]
    seen = {}

    def flush():
        for wrapper in (F.relu, torch.mul):  # ptflops's two collectors: functional, tensor ops
            collected = getattr(wrapper, "collector", None)
            if collected is not None:
                functional[stack[-1]] += sum(collected[seen.get(id(collected), 0):])
                seen[id(collected)] = len(collected)

    def enter(mod, args):
        flush()
        stack.append(names.get(mod, stack[-1]))

    def leave(mod, args, out):
        flush()
        stack.pop()

    constructor = None
    if batch != 1:
        def constructor(shape):
            return torch.zeros(batch, *shape)
    buffer = io.StringIO()
    hooks = (torch.nn.modules.module.register_module_forward_pre_hook(enter),
             torch.nn.modules.module.register_module_forward_hook(leave))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see torchvision_oracle.trace_twin: two threads spin against each other on 2 cores
    try:
        with torch.no_grad():
            total, _ = ptflops.get_model_complexity_info(
                module, tuple(input_shape), print_per_layer_stat=True, as_strings=False, ost=buffer,
                flops_units="Mac", backend="pytorch", input_constructor=constructor)
        flush()
    finally:
        torch.set_num_threads(threads)
        for hook in hooks:
            hook.remove()
    assert total is not None, buffer.getvalue()
    return total, _printed_per_module(buffer.getvalue()), dict(functional)


def tool_per_layer(graph, module, printed, functional) -> dict[str, float]:
    """Layer name -> ptflops's count for it: its module's printed figure plus the wrapped functions
    called inside it; a layer without a module takes what ran outside every module (each check
    then asserts that only one such layer counts anything)."""
    modules = dict(module.named_modules())
    out = {}
    for node in graph.nodes[1:]:
        if node.name in modules:
            out[node.name] = printed[node.name] + sum(
                v for name, v in functional.items() if name == node.name or name.startswith(node.name + "."))
    outside = functional.get("", 0)
    return out, outside


def run_aten_backend(module, input_shape):
    """ptflops's aten backend: (total, {direct child: {aten op: count}}), its printing parsed."""
    buffer = io.StringIO()
    total, _ = ptflops.get_model_complexity_info(
        module, tuple(input_shape), print_per_layer_stat=True, as_strings=False, ost=buffer,
        flops_units="Mac", backend="aten")
    assert total is not None, buffer.getvalue()
    per: dict[str, dict[str, int]] = defaultdict(dict)
    current = None
    for line in buffer.getvalue().splitlines():
        if line.startswith("Module: "):
            current = line[len("Module: "):].strip()
        elif current and line.endswith(" Mac") and ": " in line:
            op, value = line.rsplit(": ", 1)
            per[current][op] = int(value[:-len(" Mac")])
    return total, dict(per)


@functools.cache
def pytorch_zoo(name: str):
    graph, module, _ = peer_oracle.exported(name)
    total, printed, functional = run_pytorch_backend(module, graph.input_shape)
    return total, *tool_per_layer(graph, module, printed, functional)


@functools.cache
def aten_zoo(name: str, device: str = "meta"):
    """On the meta device (shapes only, no arithmetic: the counts are functions of the shapes, and
    test_aten_on_meta_counts_as_on_cpu checks they are the same): a fresh module, since the aten
    backend leaves its forward hooks on the model's children."""
    graph = archcalc.load(name)
    with torch.device(device):
        module = to_torch(graph)
    return run_aten_backend(module, graph.input_shape)


# --- the zoo ------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ZOO)
def test_ptflops_preset_is_the_tools_total_and_per_layer_figures(model):
    graph = archcalc.load(model)
    total, per_layer, outside = pytorch_zoo(model)
    counted = conventions.count(graph, "ptflops")
    assert counted.forward == total
    assert {name: counted.layers[name].forward for name in per_layer} == per_layer
    # what ran outside every module belongs to the layers that have none (the model's forward:
    # +, torch.cat, F.pad...): archcalc's export writes no counted call there
    moduleless = {name: c.forward for name, c in counted.layers.items() if name not in per_layer}
    assert sum(moduleless.values()) == outside == 0, moduleless


@pytest.mark.parametrize("model", ZOO)
def test_ptflops_aten_preset_is_the_tools_total_and_per_child_figures(model):
    total, per_child = aten_zoo(model)
    counted = conventions.count(model, "ptflops-aten")
    assert counted.forward == total == sum(per_child["Global"].values())
    # the direct children run as modules (none where every layer sits in a container the forward
    # indexes, as in mobilenet_v2's features.N)
    children = {name: sum(ops.values()) for name, ops in per_child.items() if name != "Global"}
    assert {name: counted.layers[name].forward for name in children} == children


def test_aten_on_meta_counts_as_on_cpu():
    """The zoo's aten runs use the meta device; the same models on the CPU count the same."""
    for name in ("lenet5", "squeezenet1_1", "mobilenet_v2", "inception-reduced"):
        assert aten_zoo(name, "cpu") == aten_zoo(name, "meta"), name


# --- every op type, on its examples -------------------------------------------------------------

@pytest.mark.parametrize(("op_type", "number", "example"), CASES, ids=[f"{t}-{i}" for t, i, _ in CASES])
def test_every_op_example_counts_as_ptflops_counts_it(op_type, number, example):
    """One layer (merges: fed by 1x1 convs), both backends on the CPU: total and per layer."""
    graph = single_op_graph(op_type, example)
    torch.manual_seed(0)
    module = to_torch(graph)
    total, printed, functional = run_pytorch_backend(copy.deepcopy(module), graph.input_shape)
    per_layer, outside = tool_per_layer(graph, module, printed, functional)
    counted = conventions.count(graph, "ptflops")
    assert counted.forward == total
    assert {name: counted.layers[name].forward for name in per_layer} == per_layer
    assert sum(c.forward for name, c in counted.layers.items() if name not in per_layer) == outside
    aten_total, _ = run_aten_backend(copy.deepcopy(module), graph.input_shape)
    assert conventions.count(graph, "ptflops-aten").forward == aten_total


@pytest.mark.parametrize("op_type", sorted(UNEXPORTABLE))
def test_an_op_without_a_torch_module_cannot_be_run_by_the_tool(op_type):
    from archcalc.errors import SpecError

    with pytest.raises(SpecError, match="cannot export to PyTorch"):
        to_torch(single_op_graph(op_type, REGISTRY[op_type].examples[0]))


# --- the quirks, as the presets document them ---------------------------------------------------

class _Written(torch.nn.Module):
    """conv -> relu -> max pool -> global average pool, the activation and pools as modules or as
    F.* calls in forward (the same network)."""

    def __init__(self, functional: bool) -> None:
        super().__init__()
        self.functional = functional
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.pool = torch.nn.MaxPool2d(2)
        self.gap = torch.nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.conv(x)
        if self.functional:
            return F.adaptive_avg_pool2d(F.max_pool2d(F.relu(x), 2), 1)
        return self.gap(self.pool(self.relu(x)))


def test_a_module_is_counted_twice_and_the_same_function_call_once():
    """8x16x16 conv output: ReLU 2,048 per count, the pool's input 2,048, the average pool's
    input 8x8x8 = 512. Modules: each twice; F.* calls: each once."""
    conv = 8 * 27 * 256 + 8 * 256
    modules, _, _ = run_pytorch_backend(_Written(False), (3, 16, 16))
    functions, _, _ = run_pytorch_backend(_Written(True), (3, 16, 16))
    assert modules == conv + 2 * 2048 + 2 * 2048 + 2 * 512
    assert functions == conv + 2048 + 2048 + 512
    spec = from_dict({"name": "w", "input": [3, 16, 16], "layers": [
        {"type": "conv", "filters": 8, "kernel": 3, "padding": 1}, {"type": "relu"},
        {"type": "maxpool", "kernel": 2}, {"type": "global_avgpool"}]})
    assert conventions.count(spec, "ptflops").forward == modules


def test_with_a_batch_modules_count_per_image_and_functions_per_batch():
    """The preset reproduces ptflops's batch-1 call; with a batch of N (input_constructor) ptflops
    divides the module counts by N and not the wrapped functions' (the quirk its doc states)."""
    graph, module, _ = peer_oracle.exported("lenet5")
    one, printed, functional = run_pytorch_backend(module, graph.input_shape)
    three, printed3, functional3 = run_pytorch_backend(module, graph.input_shape, batch=3)
    assert printed3 == printed
    functions = sum(functional.values())
    assert functions > 0 and sum(functional3.values()) == 3 * functions
    assert three == one + 2 * functions
    assert conventions.count(graph, "ptflops").forward == one


def test_aten_counts_no_bias_for_a_linear_fed_by_a_permute():
    """A documented difference: the bias of a linear layer on a non-contiguous input (straight from
    a permute) is added by an add_ the aten backend does not count; the preset counts it."""
    spec = {"name": "t", "input": [4, 5, 6], "layers": [{"type": "permute", "dims": [0, 2, 3, 1]},
                                                        {"type": "linear", "units": 3}]}
    graph = from_dict(spec)
    total, _ = run_aten_backend(to_torch(graph), graph.input_shape)
    counted = conventions.count(graph, "ptflops-aten")
    assert total == 5 * 6 * 4 * 3  # the MACs alone: 30 positions x 4 in x 3 out
    assert counted.forward - total == 5 * 6 * 3  # the bias adds the tool leaves out
    # without the permute the input is contiguous: aten.addmm, bias counted, as the preset does
    contiguous = from_dict({**spec, "layers": spec["layers"][1:]})
    assert run_aten_backend(to_torch(contiguous), contiguous.input_shape)[0] == \
        conventions.count(contiguous, "ptflops-aten").forward == 4 * 5 * 6 * 3 + 4 * 5 * 3


def test_the_preset_prints_a_total_as_ptflops_does(capsys):
    graph, module, _ = peer_oracle.exported("lenet5")
    printed, _ = ptflops.get_model_complexity_info(module, tuple(graph.input_shape), print_per_layer_stat=False)
    assert conventions.get("ptflops").format(conventions.count(graph, "ptflops").forward) == printed
    for value in (0, 999, 1000, 123_456, 4_132_436_968, 10**13 + 5):
        assert conventions.get("ptflops").format(value) == flops_to_string(value)
    capsys.readouterr()


def test_the_oracle_prints_nothing(capsys):
    graph, module, _ = peer_oracle.exported("lenet5")
    run_pytorch_backend(module, graph.input_shape)
    run_aten_backend(copy.deepcopy(module), graph.input_shape)
    assert capsys.readouterr() == ("", "")


# --- torchvision's own models (where torchvision is installed: CI) ------------------------------

def _layers_of(graph, op_type, counted, where=lambda name: True):
    return sum(c.forward for name, c in counted.layers.items() if graph.node(name).type == op_type and where(name))


def _torchvision_differences(name, graph, counted):
    """(why, how much) ptflops's pytorch backend counts beyond the preset on torchvision's twin of a
    zoo model: torchvision writes some layers as F.* calls (counted once, not twice), one layer as
    a subclass ptflops does not look up (counted 0), and VGG has a layer archcalc's spec omits."""
    from archcalc.passes import infer_shapes

    if name in ("vgg11", "vgg13", "vgg16", "vgg19"):
        return ("nn.AdaptiveAvgPool2d(7) on the 7x7 map: an identity archcalc's spec leaves out, counted twice "
                "its input", 2 * math.prod(infer_shapes(graph)["pool5"].out_shape))
    if name == "densenet121":
        return ("F.relu and F.adaptive_avg_pool2d after features: counted once",
                -(counted.layers["relu"].forward + counted.layers["avgpool"].forward) // 2)
    if name == "mobilenet_v2":
        return "F.adaptive_avg_pool2d: counted once", -counted.layers["avgpool"].forward // 2
    if name == "inception_v3":
        return ("F.relu in every BasicConv2d and F.avg_pool2d/F.max_pool2d in the Mixed blocks: counted once",
                -(_layers_of(graph, "relu", counted) + _layers_of(graph, "avgpool", counted)
                  + _layers_of(graph, "maxpool", counted, lambda n: n.startswith("Mixed"))) // 2)
    if name == "r3d_18":
        return ("the blocks' convs are Conv3DSimple, a subclass of nn.Conv3d: ptflops looks module types up "
                "exactly, finds no hook, counts 0",
                -_layers_of(graph, "conv", counted, lambda n: n.endswith((".conv1.0", ".conv2.0"))))
    return "the same modules", 0


@pytest.mark.parametrize("name", ["vgg11", "vgg13", "vgg16", "vgg19", "vgg16-cifar", "resnet18", "resnet34", "resnet50",
                                  "resnet101", "resnet152", "squeezenet1_0", "squeezenet1_1", "densenet121",
                                  "mobilenet_v2", "inception_v3", "r3d_18"])
def test_torchvision_models_count_as_the_presets_say(name):
    """On torchvision's own model, the aten backend's total is the preset's; the pytorch backend's
    differs from the preset on the zoo spec by exactly what the model's code explains."""
    tv = pytest.importorskip("tests.torchvision_oracle", reason="torchvision is not importable")
    graph = archcalc.load(name)
    total, _, _ = run_pytorch_backend(tv.build_twin(name).eval(), graph.input_shape)
    with torch.device("meta"):  # shapes only, as aten_zoo
        aten_total, _ = run_aten_backend(tv.TWINS[name]().eval(), graph.input_shape)
    assert aten_total == conventions.count(graph, "ptflops-aten").forward
    counted = conventions.count(graph, "ptflops")
    why, difference = _torchvision_differences(name, graph, counted)
    assert total - counted.forward == difference, why
