"""Registry-wide tests: every op, every example, against torch and hand-counted loops."""

from __future__ import annotations

import contextlib
import itertools
import math

import pytest

from archcalc.errors import RuleError
from archcalc.ops import GLOBAL, POINTWISE, REGISTRY, UNKNOWN, Op, get_op, register
from archcalc.ops.attrs import REQUIRED
from tests.helpers import single_op_graph as _graph

CASES = [(op_type, i, ex) for op_type, op in sorted(REGISTRY.items()) for i, ex in enumerate(op.examples)]
IDS = [f"{t}-{i}" for t, i, _ in CASES]


def test_every_op_has_examples_docs_and_attribute_docs():
    for op_type, op in REGISTRY.items():
        assert op.examples, op_type
        assert op.__doc__ and op.__doc__.strip(), op_type
        for attr in op.attrs:
            assert attr.doc or attr.default is REQUIRED, (op_type, attr.name)


def test_the_issue_op_set_is_registered():
    wanted = {"conv", "maxpool", "avgpool", "global_avgpool", "linear", "flatten", "relu", "leaky_relu", "sigmoid", "tanh",
              "gelu", "softmax", "dropout", "batchnorm", "lrn", "concat", "add", "identity"}
    modern = {"relu6", "hardtanh", "hardswish", "hardsigmoid", "silu", "mish", "elu", "prelu", "mul",  # issue 11
              "adaptive_avgpool", "adaptive_maxpool", "conv_transpose", "upsample", "layernorm", "groupnorm",
              "instancenorm", "permute", "reshape", "slice", "channel_shuffle", "pad", "crop", "stochastic_depth",
              "dropout2d"}
    assert wanted | modern <= set(REGISTRY)


def test_registration_rejects_duplicates_and_missing_rules():
    class Twice(Op):
        """Duplicate."""

        type = "conv"

    with pytest.raises(TypeError, match="registered twice"):
        register(Twice)

    class NoWindow(Op):
        """No window rule."""

        type = "no_window_op"

        def output_shape(self, attrs, in_shapes):
            return in_shapes[0]

        def cost(self, layer):
            return None

    with pytest.raises(TypeError, match="lacks rule.*window"):
        register(NoWindow)
    assert "no_window_op" not in REGISTRY

    class Silent(REGISTRY["relu"].__class__):
        """A complete op that does not say how it counts other ops."""

        type = "silent_op"
        other_ops_rule = ""

    with pytest.raises(TypeError, match="does not say how it counts other ops"):
        register(Silent)
    assert "silent_op" not in REGISTRY


def test_unknown_type_suggests_the_closest():
    with pytest.raises(RuleError, match="did you mean 'maxpool'"):
        get_op("maxpol")


@pytest.mark.parametrize(("op_type", "index", "example"), CASES, ids=IDS)
def test_shape_rule_matches_the_declared_output(op_type, index, example):
    """Torch-free: every example states its output shape, and the shape rule must give it."""
    from archcalc.passes import infer_shapes

    assert example.output, "an example must declare its output shape"
    graph = _graph(op_type, example)
    assert infer_shapes(graph)[graph.nodes[-1].name].out_shape == example.output


@pytest.mark.parametrize(("op_type", "index", "example"), CASES, ids=IDS)
def test_shape_rule_matches_torch(op_type, index, example):
    oracle = pytest.importorskip("tests.torch_oracle")
    torch = oracle.torch
    graph = _graph(op_type, example)
    last = graph.nodes[-1].name
    net = oracle.TorchNet(graph).eval()
    with torch.no_grad():
        out = net(torch.rand((2, *graph.input_shape)))[last]
    assert tuple(out.shape) == (2, *example.output)


@pytest.mark.parametrize(("op_type", "index", "example"), CASES, ids=IDS)
def test_params_match_torch(op_type, index, example):
    from archcalc.passes import analyze, infer_shapes

    oracle = pytest.importorskip("tests.torch_oracle")
    graph = _graph(op_type, example)
    row = analyze(graph).layers[-1]
    net = oracle.TorchNet(graph)
    params, buffers = oracle.layer_param_count(net, graph.nodes[-1].name)
    assert (row.params, row.params_trainable, row.buffers) == (params, params, buffers)
    tensors = get_op(op_type).params(infer_shapes(graph)[graph.nodes[-1].name])
    module = net.layers[graph.nodes[-1].name] if tensors else None
    for name, param in tensors.items():
        torch_tensor = getattr(getattr(module, "inner", module), name)
        assert tuple(torch_tensor.shape) == param.shape, name


def _naive_macs(layer, op_type):
    """Count multiply-accumulates one by one: every output value times every kernel tap."""
    a = layer.attrs
    count = 0
    if op_type == "conv":
        per_output = (layer.in_shape[0] // a["groups"]) * math.prod(a["kernel"])
        for _ in itertools.product(range(a["filters"]), *(range(n) for n in layer.out_shape[1:])):
            for _ in range(per_output):
                count += 1
    elif op_type == "conv_transpose":  # every input value times one kernel: (f/groups) filters * prod(k) taps
        per_input = (a["filters"] // a["groups"]) * math.prod(a["kernel"])
        for _ in itertools.product(range(layer.in_shape[0]), *(range(n) for n in layer.in_shape[1:])):
            for _ in range(per_input):
                count += 1
    elif op_type == "linear":  # at every position of the axes before the last
        for _ in itertools.product(*(range(n) for n in layer.in_shape[:-1])):
            for _ in range(a["units"]):
                for _ in range(layer.in_shape[-1]):
                    count += 1
    return count


@pytest.mark.parametrize(("op_type", "index", "example"), CASES, ids=IDS)
def test_macs_match_a_naive_count(op_type, index, example):
    from archcalc.passes import infer_shapes

    graph = _graph(op_type, example)
    layer = infer_shapes(graph)[graph.nodes[-1].name]
    assert get_op(op_type).cost(layer).macs == _naive_macs(layer, op_type)


@pytest.mark.parametrize(("op_type", "index", "example"), CASES, ids=IDS)
def test_macs_match_torchs_flop_counter(op_type, index, example):
    """FlopCounterMode counts 2 FLOPs per multiply-accumulate of conv and matmul ops, and 0 for
    element-wise work: an oracle for every op, whatever its type."""
    from archcalc.passes import infer_shapes

    oracle = pytest.importorskip("tests.torch_oracle")
    torch = oracle.torch
    graph = _graph(op_type, example)
    node = graph.nodes[-1]
    layer = infer_shapes(graph)[node.name]
    module = oracle.build_module(op_type, layer).eval()
    inputs = [torch.rand((1, *shape)) for shape in layer.in_shapes]
    assert get_op(op_type).cost(layer).macs == oracle.torch_macs(module, inputs)


@pytest.mark.parametrize(("op_type", "index", "example"), CASES, ids=IDS)
def test_receptive_field_matches_a_perturbation(op_type, index, example):
    """The analytic field of the centre unit == where torch's input gradient is non-zero."""
    from archcalc.passes import analyze, infer_shapes

    oracle = pytest.importorskip("tests.torch_oracle")
    graph = _graph(op_type, example)
    last = graph.nodes[-1].name
    field = analyze(graph).layer(last).receptive_field
    window = get_op(op_type).window(infer_shapes(graph)[last])
    if len(graph.input_shape) == 1:
        assert field.size == ()  # no spatial axes: nothing to measure
        return
    centre, measured = oracle.measured_fields(graph, [last])[last]
    sizes = graph.input_shape[1:]
    for axis, (first, end) in enumerate(measured):
        if field.is_global or window in (GLOBAL, UNKNOWN):  # unknown: the stand-in's field is the whole input
            assert (first, end) == (0, sizes[axis] - 1)
            continue
        # the unit sees the whole input pixels in [low, low + size - 1] (rational after a fractional stride)
        low = centre[axis] * field.stride[axis] - field.padding[axis]
        high = low + field.size[axis] - 1
        if not field.uniform:  # windows of several sizes: the largest is reported
            assert end - first <= high - low, (axis, field)
            continue
        expected = (max(math.ceil(low), 0), min(math.floor(high), sizes[axis] - 1))
        assert (first, end) == expected, (axis, field)
    assert window in (GLOBAL, POINTWISE, UNKNOWN) or len(window.kernel) == len(sizes)


#: Values no attribute of any op takes: huge ints beyond a float's range, non-finite floats, wrong
#: types and shapes. Each must be refused as a spec error, never raise anything else.
HOSTILE = [2**1100, -(2**1100), 10**400, float("nan"), float("inf"), 1e308, -1e308, 2**63, [2**1100], [2**1100, 2],
           [0.5], [[1, 2]], [], {}, "x", None, True]


@pytest.mark.parametrize("op_type", sorted(REGISTRY))
def test_hostile_attribute_values_are_spec_errors(op_type):
    import archcalc
    from archcalc.errors import ArchcalcError
    from archcalc.spec import from_dict

    op = REGISTRY[op_type]
    example = op.examples[0]
    for attr in op.attrs:
        for value in HOSTILE:
            spec = {"name": "h", "input": list(example.inputs[0]), "layers": [{"type": op_type, **example.attrs,
                                                                                attr.name: value}]}
            # refused with a message (ArchcalcError); accepted values (None for an optional one) analyse
            with contextlib.suppress(ArchcalcError):
                archcalc.analyze(from_dict(spec))
