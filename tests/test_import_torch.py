"""PyTorch import (archcalc/importers/torch.py) against PyTorch itself.

Every figure is checked against torch running the same module: output shapes against forward
hooks on every module call, parameters and buffers against the module's own tensors, conv and
linear MACs against the multiply-adds worked out here from the hooked shapes (written out below,
not archcalc's formulas). The registry round trip builds each op's own PyTorch equivalent
(``torch_module``, archcalc's statement of which PyTorch layer it is) and imports it back.
torchvision's classification models are checked the same way when torchvision is importable (CI).
"""

from __future__ import annotations

import json
import math
import sys

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import archcalc  # noqa: E402
from archcalc.errors import MissingToolError, SpecError  # noqa: E402
from archcalc.importers.torch import from_torch, import_module  # noqa: E402
from archcalc.ops import REGISTRY  # noqa: E402
from archcalc.passes import infer_shapes  # noqa: E402
from tests.helpers import run_main, single_op_graph  # noqa: E402

# ---------------------------------------------------------------------------------------------
# The oracle: torch's own forward pass, hooked


def hooked(module, input_shape, meta=False):
    """Every module call of a forward pass on zeros (eval, no grad): path -> [(in shapes, out
    shape, module)] in call order, shapes without the batch axis, and the output's shape.
    ``meta``: on the meta device, the module's tensors swapped for meta ones by
    torch.func.functional_call (torch's own shape functions, no arithmetic: the large torchvision
    models in bounded test time)."""
    calls: dict[str, list] = {}
    names = {m: name for name, m in module.named_modules()}

    def hook(m, inputs, output):
        if isinstance(output, torch.Tensor):
            ins = tuple(tuple(x.shape[1:]) for x in inputs if isinstance(x, torch.Tensor))
            calls.setdefault(names[m], []).append((ins, tuple(output.shape[1:]), m))

    handles = [m.register_forward_hook(hook) for m in names if m is not module]
    try:
        module.eval()
        with torch.no_grad():
            if meta:
                tensors = {n: t.to("meta") for n, t in (*module.named_parameters(), *module.named_buffers())}
                output = torch.func.functional_call(module, tensors, (torch.zeros((1, *input_shape), device="meta"),))
            else:
                output = module(torch.zeros((1, *input_shape)))
    finally:
        for handle in handles:
            handle.remove()
    return calls, tuple(output.shape[1:])


def hooked_macs(m, in_shape, out_shape):
    """Multiply-adds of a conv, transposed conv or linear call, from the hooked shapes (None for
    other modules): each output value of a conv sums (c/groups) * prod(k) products; each input
    value of a transposed conv scatters (f/groups) * prod(k) of them; a linear's output value sums
    in_features products at every position."""
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return out_shape[0] * (in_shape[0] // m.groups) * math.prod(m.kernel_size) * math.prod(out_shape[1:])
    if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        return in_shape[0] * (m.out_channels // m.groups) * math.prod(m.kernel_size) * math.prod(in_shape[1:])
    if isinstance(m, nn.Linear):
        return m.in_features * m.out_features * math.prod(out_shape[:-1])
    return None


def torch_counts(module):
    """(params, buffers) as torch lists them; batchnorm's num_batches_tracked step counters apart."""
    params = sum(p.numel() for p in module.parameters())
    counters = sum(b.numel() for n, b in module.named_buffers() if n.endswith("num_batches_tracked"))
    return params, sum(b.numel() for b in module.buffers()) - counters, counters


def check_against_torch(module, input_shape, check_inputs=True, meta=False, **kwargs):
    """Import ``module`` and compare every module call, the totals and conv/linear MACs with torch
    (``check_inputs`` false: not each call's input shape, where an F.pad before it was folded in)."""
    imported = import_module(module, input_shape, **kwargs)
    analysis = archcalc.analyze(imported.graph)
    rows = {row.name: row for row in analysis.layers}
    calls, output_shape = hooked(module, input_shape, meta)
    macs = 0
    for path, layers in imported.module_layers.items():
        assert len(layers) == len(calls[path]), path
        for name, (ins, out, m) in zip(layers, calls[path]):
            row = rows[name]
            assert row.output_shape == out, (name, row.output_shape, out)
            refs = rows[f"{name}.pad"].inputs if row.inputs == (f"{name}.pad",) else row.inputs  # padding_mode
            assert not check_inputs or tuple(rows[ref].output_shape for ref in refs) == ins, name
            expected = hooked_macs(m, ins[0], out)
            if expected is not None:
                assert row.macs == expected, (name, row.macs, expected)
                macs += expected
    # every call of a leaf module (one without children) is a layer of its own, or part of the one
    # layer its enclosing module became (the layernorm of a channels-first layernorm)
    whole = [path for path in imported.module_layers if path and list(module.get_submodule(path).children())]
    leaves = {path for path in calls if not list(module.get_submodule(path).children())
              and not any(path.startswith(f"{outer}.") for outer in whole)
              and (type(module.get_submodule(path)).__module__.startswith("torch.nn")
                   or type(module.get_submodule(path)).__name__ in ("StochasticDepth", "LayerNorm2d"))}
    assert leaves <= set(imported.module_layers), leaves - set(imported.module_layers)
    params, buffers, _ = torch_counts(module)
    assert analysis.totals.params == params
    assert analysis.totals.buffers == buffers
    module_rows = [rows[n] for layers in imported.module_layers.values() for n in layers]
    assert sum(r.macs for r in module_rows if r.type in ("conv", "conv_transpose", "linear")) == macs
    assert analysis.layers[-1].output_shape == output_shape
    return imported, analysis


# ---------------------------------------------------------------------------------------------
# Modules


class Block(nn.Module):
    """A residual block with functional calls: names of functions follow the calling module."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return torch.relu(out)


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.layer1 = nn.Sequential(Block(8), Block(8))
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.layer1(self.stem(x))
        x = x.mean((2, 3))
        return self.fc(x)


def test_names_are_module_paths_and_functions_take_their_callers_path():
    imported, analysis = check_against_torch(TinyResNet(), (3, 16, 16))
    names = [row.name for row in analysis.layers]
    assert names[:4] == ["input", "stem.0", "stem.1", "stem.2"]
    assert names[4:10] == ["layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu", "layer1.0.conv2", "layer1.0.bn2",
                           "layer1.0.add"]
    # the block's second relu (torch.relu) gets the builder's unique form of the same name
    assert names[10].startswith("layer1.0.relu") and names[10] != "layer1.0.relu"
    types = {row.name: row.type for row in analysis.layers}
    assert types["layer1.0.add"] == "add" and types["layer1.1.add"] == "add"
    # x.mean over the spatial axes without keepdim: a global average pool, then a flatten
    assert types["mean"] == "global_avgpool" and types["mean.flatten"] == "flatten"
    assert rows_of(analysis)["mean"].output_shape == (8, 1, 1) and rows_of(analysis)["mean.flatten"].output_shape == (8,)
    assert rows_of(analysis)["layer1.1.add"].inputs == ("layer1.1.bn2", names[10])
    assert imported.graph.warnings == ()


def rows_of(analysis):
    return {row.name: row for row in analysis.layers}


class Everything(nn.Module):
    """One of each mapped module (2D), in a chain whose shapes work."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.ZeroPad2d((1, 2, 0, 1)), nn.Conv2d(3, 8, 3, padding=1, dilation=1), nn.BatchNorm2d(8), nn.ReLU6(),
            nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8, bias=False), nn.GroupNorm(2, 8), nn.Hardswish(),
            nn.Conv2d(8, 16, 1, padding="same"), nn.InstanceNorm2d(16, affine=True, track_running_stats=True),
            nn.Hardsigmoid(), nn.LocalResponseNorm(3), nn.SiLU(), nn.Mish(), nn.ELU(0.5), nn.GELU("tanh"),
            nn.PReLU(16), nn.LeakyReLU(0.2), nn.Sigmoid(), nn.Tanh(), nn.Hardtanh(-2.0, 3.0),
            nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.AvgPool2d(2, 1, 1, count_include_pad=False),
            nn.Dropout2d(0.1), nn.ReflectionPad2d(1), nn.ReplicationPad2d((0, 1, 1, 0)),
            nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.ChannelShuffle(2),
            nn.AdaptiveMaxPool2d((3, 4)), nn.AdaptiveAvgPool2d(2), nn.Identity(), nn.Conv2d(8, 6, 2, padding_mode="reflect",
                                                                                       padding=1),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(54, 12), nn.LayerNorm(12),
                                  nn.Unflatten(1, (3, 4)), nn.Softmax(dim=1))

    def forward(self, x):
        return self.head(self.features(x))


def test_every_mapped_2d_module_equals_torch():
    imported, analysis = check_against_torch(Everything(), (3, 20, 18))
    types = [row.type for row in analysis.layers[1:]]
    assert types == [
        "pad", "conv", "batchnorm", "relu6", "conv", "groupnorm", "hardswish", "conv", "instancenorm", "hardsigmoid",
        "lrn", "silu", "mish", "elu", "gelu", "prelu", "leaky_relu", "sigmoid", "tanh", "hardtanh", "maxpool", "avgpool",
        "dropout2d", "pad", "pad", "conv_transpose", "upsample", "channel_shuffle", "adaptive_maxpool", "adaptive_avgpool",
        "identity", "pad", "conv", "flatten", "dropout", "linear", "layernorm", "reshape", "softmax"]
    rows = rows_of(analysis)
    # the reflect-padded conv is a reflect pad and an unpadded conv, both named after the module
    assert rows["features.31.pad"].type == "pad" and rows["features.31"].inputs == ("features.31.pad",)
    # instancenorm's running statistics are buffers; its scale and shift parameters
    assert (rows["features.8"].params, rows["features.8"].buffers) == (32, 32)


class OneD(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(2, 4, 3, stride=2), nn.BatchNorm1d(4), nn.MaxPool1d(2), nn.AvgPool1d(2, 1),
                                 nn.ConvTranspose1d(4, 2, 4, stride=2), nn.InstanceNorm1d(2), nn.ConstantPad1d(2, 1.5),
                                 nn.AdaptiveAvgPool1d(5), nn.Dropout1d(0.2), nn.Upsample(size=9, mode="linear"))

    def forward(self, x):
        return self.net(x)


class ThreeD(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv3d(1, 4, 3, stride=(1, 2, 2), padding=1), nn.BatchNorm3d(4), nn.ReLU(),
                                 nn.MaxPool3d(2), nn.ConvTranspose3d(4, 2, 2, stride=2), nn.AvgPool3d(2),
                                 nn.AdaptiveMaxPool3d(1), nn.Flatten(), nn.Linear(2, 3))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize(("module", "shape"), [(OneD(), (2, 31)), (ThreeD(), (1, 4, 8, 8))], ids=["1d", "3d"])
def test_1d_and_3d_modules_equal_torch(module, shape):
    check_against_torch(module, shape)


class Functional(nn.Module):
    """The functional calls and tensor methods the importer maps."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.ln_weight = nn.Parameter(torch.ones(8))
        self.ln_bias = nn.Parameter(torch.zeros(8))
        self.gamma = nn.Parameter(torch.full((8,), 0.5))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.conv(x))
        x = F.leaky_relu(F.hardtanh(F.relu6(x), -1.0, 5.0), 0.1)
        x = F.elu(F.gelu(F.silu(F.hardswish(F.hardsigmoid(F.mish(x))))))
        x = torch.sigmoid(x).tanh()
        x = F.max_pool2d(x, 2, ceil_mode=True)
        x = F.avg_pool2d(x, 3, stride=1, padding=1)
        x = F.dropout(x, 0.2, training=self.training)
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        a, b = torch.chunk(x, 2, dim=1)
        c, d = b.split([1, 3], dim=1)
        x = torch.cat([a, d, c], 1)
        x = x * torch.sigmoid(F.adaptive_avg_pool2d(x, 1))  # a squeeze-excitation gate
        x = F.pad(x, (1, 1, 2, 0))
        y = x.permute(0, 2, 3, 1)
        y = F.layer_norm(y, (8,), self.ln_weight, self.ln_bias, 1e-6)
        x = y.permute(0, 3, 1, 2).contiguous() * self.gamma.view(8, 1, 1)
        x = x[:, :, 1:]
        x = x.transpose(2, 3).reshape(x.size(0), 8, -1)
        x = F.softmax(x, dim=1)
        x = F.adaptive_max_pool1d(x, 4)
        x = x.mean(-1, keepdim=True).flatten(1)
        return self.fc(x)


def test_functional_calls_and_methods_equal_torch():
    imported, analysis = check_against_torch(Functional(), (3, 12, 10))
    assert imported.graph.warnings == ()  # gamma, used through a view of it, is used
    types = [row.type for row in analysis.layers[1:]]
    assert types == [
        "conv", "relu", "relu6", "hardtanh", "leaky_relu", "mish", "hardsigmoid", "hardswish", "silu", "gelu", "elu",
        "sigmoid", "tanh", "maxpool", "avgpool", "dropout", "upsample", "slice", "slice", "slice", "slice", "concat",
        "global_avgpool", "sigmoid", "mul", "pad", "layernorm", "scale", "slice", "permute",
        "reshape", "softmax", "adaptive_maxpool", "global_avgpool", "flatten", "linear"]
    rows = rows_of(analysis)
    # chunk/split pieces are slices named after the call, numbered
    assert [rows[n].output_shape[0] for n in ("chunk.1", "split.0", "split.1")] == [4, 1, 3]
    assert rows["layer_norm"].params == 16 and rows["mul_2"].params == 8
    # a parameter used as a per-channel multiplier is archcalc's scale (its value is the init)
    scale = next(n for n in imported.graph.nodes if n.type == "scale")
    assert scale.attrs["init"] == 0.5


# ---------------------------------------------------------------------------------------------
# Registry round trip: archcalc's own torch equivalent of every example imports back to itself

def _examples():
    for op_type, op in sorted(REGISTRY.items()):
        if op_type == "opaque":  # the pass-through of ops without a rule: its torch module is a stand-in
            continue
        for i, example in enumerate(op.examples):
            if len(example.inputs) == 1:  # merges (add, mul, concat, a two-input crop): tested above
                yield pytest.param(op_type, example, id=f"{op_type}-{i}")


def _is_torch_layer(module):
    return type(module).__module__.startswith("torch.nn")


#: Torch equivalents that are archcalc's own code around torch calls with no archcalc op of
#: their own: the mean over real inputs of an asymmetrically padded average pool (a pool of a
#: mask made with ones_like), and scale's bias, added as a parameter tensor (archcalc has no op
#: adding a learned per-channel vector on its own). Each must fail exactly so. (The written-out
#: StochasticDepth has torchvision's interface and is one layer; the permutes around a
#: channels-first layernorm are fused back into it.)
NOT_ONE_LAYER = {"avgpool": "torch.ones_like", "scale": "operator.add"}
#: archcalc's own wrappers that import back as the one layer they are.
ONE_LAYER_WRAPPERS = ("Padded", "ChannelScale", "ChannelsFirstLayerNorm", "StochasticDepth")


@pytest.mark.parametrize(("op_type", "example"), list(_examples()))
def test_registry_torch_module_imports_back_to_the_same_layer(op_type, example):
    op = REGISTRY[op_type]
    graph = single_op_graph(op_type, example)
    layer = infer_shapes(graph)[graph.nodes[-1].name]
    torch.manual_seed(0)
    module = nn.Sequential(op.torch_module(layer))
    inner = module[0]
    shape = example.inputs[0]
    bias_added = op_type == "scale" and layer.attrs["bias"]
    if op_type in NOT_ONE_LAYER and type(inner).__name__ in ("Padded", "ChannelScale") and not bias_added:
        pass  # these wrappers are one layer here: an F.pad folded into the max pool, a scale without bias
    elif op_type in NOT_ONE_LAYER and not _is_torch_layer(inner):
        if NOT_ONE_LAYER[op_type] is None:
            with pytest.raises(SpecError, match="the forward pass has no operation archcalc maps"):
                from_torch(module, shape)
        else:
            with pytest.raises(SpecError, match=rf"unsupported: {NOT_ONE_LAYER[op_type]}.* x1"):
                from_torch(module, shape)
        return
    imported, analysis = check_against_torch(module, shape, check_inputs=type(inner).__name__ != "Padded")
    layers = infer_shapes(imported.graph)
    nodes = imported.graph.nodes[1:]
    if _is_torch_layer(inner) or type(inner).__name__ in ONE_LAYER_WRAPPERS and len(nodes) == 1:
        # one PyTorch layer: the same op, resolved attributes, output shape and parameter tensors
        assert [n.type for n in nodes] == [op_type]
        got = layers[nodes[0].name]
        assert dict(got.attrs) == dict(layer.attrs)
        assert got.out_shape == layer.out_shape
        assert {k: (p.shape, p.role) for k, p in op.params(got).items()} == {
            k: (p.shape, p.role) for k, p in op.params(layer).items()}
    else:
        # archcalc's wrapper (F.pad before an asymmetrically padded conv or pool; the permutes
        # around a channels-first layernorm; crop's slicing; scale's reshaped multiplier): the
        # op is there (crop: as slices), the figures equal
        assert op_type in [n.type for n in nodes] or op_type == "crop" and {n.type for n in nodes} == {"slice"}
        ours = archcalc.analyze({"name": "x", "input": list(shape), "layers": [{"type": op_type, **example.attrs}]})
        assert (analysis.totals.params, analysis.totals.buffers, analysis.totals.macs) == (
            ours.totals.params, ours.totals.buffers, ours.totals.macs)
        assert analysis.layers[-1].output_shape == layer.out_shape


def _merge_examples():
    for op_type, op in sorted(REGISTRY.items()):
        for i, example in enumerate(op.examples):
            if len(example.inputs) > 1 and op_type != "opaque":
                yield pytest.param(op_type, example, id=f"{op_type}-{i}")


class Branches(nn.Module):
    """tests.helpers.single_op_graph's network in torch: each input of a merge reached through a
    1x1 conv (a linear for one axis) from one common input, then the op's own torch module."""

    def __init__(self, shapes, merge):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Linear(1, shape[0]) if len(shape) == 1 else (nn.Conv1d, nn.Conv2d, nn.Conv3d)[len(shape) - 2](1, shape[0], 1)
            for shape in shapes)
        self.merge = merge

    def forward(self, x):
        return self.merge(*[branch(x) for branch in self.branches])


@pytest.mark.parametrize(("op_type", "example"), list(_merge_examples()))
def test_registry_merge_torch_module_imports_back_to_the_same_figures(op_type, example):
    graph = single_op_graph(op_type, example)
    layer = infer_shapes(graph)[graph.nodes[-1].name]
    module = Branches(example.inputs, REGISTRY[op_type].torch_module(layer))
    imported, analysis = check_against_torch(module, graph.input_shape)
    merged = [n.type for n in imported.graph.nodes[1 + len(example.inputs):]]
    # torch's sum of n tensors is n - 1 additions (Python's sum); crop's index is slices
    assert set(merged) == ({"slice"} if op_type == "crop" else {op_type}), merged
    ours = archcalc.analyze(graph)
    assert (analysis.totals.params, analysis.totals.macs, analysis.totals.other_ops) == (
        ours.totals.params, ours.totals.macs, ours.totals.other_ops)
    assert analysis.layers[-1].output_shape == layer.out_shape


def test_a_module_that_is_one_layer_is_named_after_its_class():
    graph = from_torch(nn.Conv2d(3, 4, 3), (3, 8, 8))
    assert [(n.name, n.type) for n in graph.nodes] == [("input", "input"), ("conv2d", "conv")]


# ---------------------------------------------------------------------------------------------
# Unsupported ops, errors


class Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.rnn_like = nn.Bilinear(4, 4, 4)
        self.shift = nn.Parameter(torch.zeros(4, 1, 1))
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        x = self.conv(x)
        y = x - 1.0
        z = x * 2.0
        w = torch.abs(y + z) + self.shift
        return self.shuffle(torch.abs(w) / 3)


def test_unsupported_ops_are_listed_with_counts_and_first_place():
    with pytest.raises(SpecError) as error:
        from_torch(Unsupported(), (3, 8, 8), name="net")
    text = str(error.value)
    assert "\n" not in text
    assert text.startswith("'net': unsupported: ")
    assert "operator.sub x1 (first at sub)" in text
    assert "operator.mul (with a constant) x1 (first at mul)" in text
    assert "torch.abs x2 (first at abs)" in text
    assert "operator.truediv x1 (first at truediv)" in text
    # y + z, two tensors, is an add layer; w + self.shift, a parameter tensor added, has no rule
    assert "operator.add (with a parameter or buffer) x1 (first at add" in text
    assert "torch.nn.PixelShuffle x1 (first at shuffle)" in text
    assert "--partial" in text


def test_partial_passes_unsupported_ops_through_with_their_traced_shapes():
    graph = from_torch(Unsupported(), (3, 8, 8), name="net", partial=True)
    analysis = archcalc.analyze(graph)
    rows = rows_of(analysis)
    assert rows["conv"].params == 4 * 3 * 9 + 4
    assert rows["sub"].output_shape == (4, 6, 6) and rows["sub"].params == rows["sub"].macs == 0
    assert rows["add"].type == "add" and rows["add"].inputs == ("sub", "mul")
    assert rows["truediv"].output_shape == (4, 6, 6)
    assert analysis.layers[-1].name == "shuffle" and analysis.layers[-1].output_shape == (1, 12, 12)
    assert analysis.totals.params == rows["conv"].params  # the shift parameter is in an uncounted op
    # the unused Bilinear is said, not silently dropped
    unused = [w for w in graph.warnings if "parameters of modules the forward pass does not use" in w]
    assert len(unused) == 1 and "rnn_like" in unused[0] and "shift" not in unused[0]


class Reused(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(self.conv(x))


def test_a_module_called_twice_is_two_layers_and_a_warning():
    imported = import_module(Reused(), (3, 5, 5))
    assert len(imported.module_layers["conv"]) == 2
    assert any("module conv (Conv2d) is called 2 times" in w for w in imported.graph.warnings)


def test_parameters_that_differ_from_archcalcs_rule_name_the_layer():
    prelu = nn.Sequential(nn.PReLU())
    prelu[0].num_parameters = 3  # the attribute disagrees with the weight the forward uses
    with pytest.raises(SpecError, match=r"0") as error:
        from_torch(prelu, (3, 4, 4), name="net")
    assert "\n" not in str(error.value) and "0" in str(error.value)
    linear = nn.Sequential(nn.Linear(4, 5))
    linear[0].out_features = 7  # archcalc's units from the attribute: the traced shape disagrees
    with pytest.raises(SpecError, match=r"0"):
        from_torch(linear, (4,), name="net")
    conv = nn.Conv2d(3, 4, 3)
    conv.register_buffer("mask", torch.ones(4))
    with pytest.raises(SpecError, match=r"module conv \(Conv2d\) has tensors archcalc's layer does not hold: mask"):
        from_torch(_Named(conv), (3, 5, 5), name="net")


class _Named(nn.Module):
    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize(("module", "shape", "message"), [
    ([nn.ReLU()], (3,), r"^from_torch: expected a torch\.nn\.Module, got list$"),
    (nn.ReLU(), (3, 0, 4), r"^from_torch: input_shape must be .* got \(3, 0, 4\)$"),
    (nn.ReLU(), (1, 2, 3, 4, 5), r"^from_torch: input_shape must be channels-first: .* got \(1, 2, 3, 4, 5\)$"),
    (nn.ReLU(), (2,) * 64, r"^from_torch: input_shape must be 1 to 63 positive ints"),
    (nn.ReLU(), (3, 2**31), r"^from_torch: input_shape must be .*"),
    (nn.ReLU(), "3x4", r"^from_torch: input_shape must be .*"),
    (nn.Conv2d(3, 4, 3), (5, 8, 8), r"^'Conv2d': the forward pass fails on input 5x8x8 at module conv2d: RuntimeError: .*channels"),
    (nn.Conv2d(3, 4, 9), (3, 4, 4), r"^'Conv2d': the forward pass fails on input 3x4x4 at module conv2d: RuntimeError: .*Kernel size"),
])
def test_bad_inputs_are_one_line_spec_errors(module, shape, message):
    with pytest.raises(SpecError, match=message) as error:
        from_torch(module, shape)
    assert "\n" not in str(error.value)


class Branchy(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # a Python branch on a tensor's value: no symbolic trace
            return x
        return -x


def test_untraceable_forward_says_what_failed():
    message = r"^'Branchy': torch\.fx cannot trace Branchy \(TraceError: .*\), nor can torch\.export \(.*\)"
    with pytest.raises(SpecError, match=message) as error:
        from_torch(Branchy(), (3, 4, 4))
    assert "\n" not in str(error.value)


def test_without_torch_the_error_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingToolError, match=r'pip install "archcalc\[torch\]"'):
        from_torch(object(), (3, 4, 4))


def test_train_mode_is_restored_and_weights_untouched():
    module = TinyResNet().train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    from_torch(module, (3, 16, 16))
    assert all(m.training for m in module.modules())
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ---------------------------------------------------------------------------------------------
# torchvision (CI: torch 2.14.1 + torchvision 0.29.1)

TORCHVISION_MODELS = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnext50_32x4d", "wide_resnet50_2", "vgg11", "vgg16_bn",
    "alexnet", "squeezenet1_0", "squeezenet1_1", "densenet121", "mobilenet_v2", "mobilenet_v3_small",
    "mobilenet_v3_large", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "regnet_x_400mf", "regnet_y_400mf", "regnet_y_800mf",
    "convnext_tiny", "convnext_small", "googlenet", "inception_v3",
]


def _torchvision():
    return pytest.importorskip("torchvision", reason="torchvision is not importable (pip install torchvision==0.29.1)")


def _build(tv, name, **kwargs):
    """torchvision's model (weights=None), built on the meta device where its constructor allows
    (no random initialisation of millions of weights) and given uninitialised storage (no figure
    depends on the values), else as usual."""
    if name in ("googlenet", "inception_v3"):
        kwargs = {"aux_logits": False, "init_weights": False, **kwargs}
    if name.startswith("regnet"):  # its constructor computes widths with tensors: not on meta
        return tv.models.get_model(name, weights=None, **kwargs)
    with torch.device("meta"):
        model = tv.models.get_model(name, weights=None, **kwargs)
    return model.to_empty(device="cpu")


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_torchvision_model_imports_and_equals_torch(name):
    tv = _torchvision()
    shape = (3, 299, 299) if name == "inception_v3" else (3, 224, 224)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = _build(tv, name)
        imported, analysis = check_against_torch(model, shape, meta=True, name=name)
    finally:
        torch.set_num_threads(threads)
    params, buffers, counters = torch_counts(model)
    # num_batches_tracked: one int64 counter per batchnorm, which archcalc does not count as a buffer
    batchnorms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert counters == batchnorms
    assert analysis.totals.buffers == sum(b.numel() for b in model.buffers()) - batchnorms
    assert imported.graph.warnings == ()


def test_torchvision_aux_classifiers_unused_in_eval_are_a_warning():
    tv = _torchvision()
    model = _build(tv, "googlenet", aux_logits=True)
    graph = from_torch(model, (3, 224, 224))
    unused = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("aux1.", "aux2.")))
    assert archcalc.analyze(graph).totals.params == sum(p.numel() for p in model.parameters()) - unused
    assert any(f"{unused:,} parameters of modules the forward pass does not use" in w for w in graph.warnings)


class RoIHead(nn.Module):
    """A detection head's RoI pooling: torchvision.ops.roi_align on fixed boxes."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3, padding=1)
        self.register_buffer("boxes", torch.tensor([[0, 0.0, 0.0, 4.0, 4.0], [0, 2.0, 2.0, 7.0, 7.0]]))
        self.head = nn.Linear(8 * 2 * 2, 4)

    def forward(self, x):
        import torchvision

        features = self.backbone(x)
        pooled = torchvision.ops.roi_align(features, self.boxes, output_size=2)
        pooled = torchvision.ops.roi_align(pooled, self.boxes[:1], output_size=2)
        return self.head(pooled.flatten(1))


def test_detection_roi_ops_give_the_unsupported_error_and_import_with_partial():
    _torchvision()
    with pytest.raises(SpecError, match=r"^'net': unsupported: torchvision\.ops\.roi_align x2 \(first at roi_align\)"):
        from_torch(RoIHead(), (3, 8, 8), name="net")
    graph = from_torch(RoIHead(), (3, 8, 8), name="net", partial=True)
    rows = rows_of(archcalc.analyze(graph))
    assert rows["roi_align"].output_shape == (8, 2, 2)


class ShapeBranch(nn.Module):
    """A Python branch on a tensor's shape: fx cannot trace it (the shape is symbolic there),
    torch.export can (it specialises on the example input's shape)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.side = nn.Conv2d(3, 8, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = F.relu(self.bn(self.conv(x)))
        if y.shape[-1] > 4:
            y = F.max_pool2d(y, 2)
        a, b = y.chunk(2, 1)
        y = torch.cat([b, a], 1)[:, :, 1:]
        y = y + self.side(x)[:, :, :4, 1:6]
        return self.fc(y.mean((2, 3)))


def test_where_fx_cannot_trace_torch_export_does_with_the_same_names():
    imported, analysis = check_against_torch(ShapeBranch(), (3, 10, 10))
    types = [(row.name, row.type) for row in analysis.layers[1:]]
    assert types[:5] == [("conv", "conv"), ("bn", "batchnorm"), ("relu", "relu"), ("max_pool2d", "maxpool"),
                         ("chunk.0", "slice")]
    assert types[-1] == ("fc", "linear")
    assert ("add", "add") in types and ("slice", "slice") in types
    assert imported.graph.warnings == ()


class InPlace(nn.Module):
    """In-place calls as statements: their results are unused, the tensor they change is read on."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.conv(x)
        x.sigmoid_()
        self.act(x)
        F.relu(x, inplace=True)
        return x.flatten(1)


def test_in_place_statements_are_layers_in_their_order():
    graph = from_torch(InPlace(), (3, 5, 5))
    assert [(n.name, n.type, n.inputs) for n in graph.nodes[1:]] == [
        ("conv", "conv", ("input",)), ("sigmoid", "sigmoid", ("conv",)), ("act", "relu", ("sigmoid",)),
        ("relu", "relu", ("act",)), ("flatten", "flatten", ("relu",))]


class Arithmetic(nn.Module):
    """torch.add, torch.mul, the methods, and indexing of several axes."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        y = torch.add(a, b)
        y = torch.mul(y, b).add(a).mul(torch.sigmoid(a.mean((2, 3), keepdim=True)))
        y = y[:, 1:, 1:-1, ::2]
        return y.reshape(y.size(0), -1)


def test_torch_add_mul_their_methods_and_multi_axis_indexing():
    imported, analysis = check_against_torch(Arithmetic(), (3, 6, 7))
    assert [(row.name, row.type, row.output_shape) for row in analysis.layers[3:]] == [
        ("add", "add", (4, 6, 7)), ("mul", "mul", (4, 6, 7)), ("add_2", "add", (4, 6, 7)),
        ("mean", "global_avgpool", (4, 1, 1)), ("sigmoid", "sigmoid", (4, 1, 1)), ("mul_2", "mul", (4, 6, 7)),
        ("getitem", "slice", (3, 6, 7)), ("getitem.1", "slice", (3, 4, 7)), ("getitem.2", "slice", (3, 4, 4)),
        ("reshape", "reshape", (48,))]


def test_the_command_line_reports_a_module_named_package_module_name(tmp_path, monkeypatch):
    (tmp_path / "tinynets.py").write_text(
        "import torch\n"
        "from torch import nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=8))\n"
        "        self.fc = nn.Linear(8, 2)\n\n"
        "    def forward(self, x):\n"
        "        x = self.features(x) - 0.5\n"
        "        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    status, out, err = run_main("report", "tinynets:Net", "--input", "3x12x12", "--format", "json")
    assert status == 2
    assert err.startswith("error: 'Net': unsupported: operator.sub x1 (first at sub)") and "--partial" in err
    status, out, err = run_main("report", "tinynets:Net", "--input", "3x12x12", "--format", "json", "--partial")
    assert status == 0, err
    report = json.loads(out)
    rows = {row["name"]: row for row in report["layers"]}
    assert rows["features.0"]["params"] == 8 * 3 * 9 + 8 and rows["features.2"]["macs"] == 8 * 9 * 8 * 8
    assert rows["sub"]["type"] == "opaque" and report["status"] == "partial"
    assert report["totals"]["params"] == 224 + 80 + 18


class Optional(nn.Module):
    """A forward with an optional second argument: traced at its default."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x, mask=None, *, scale=False):
        y = self.fc(x)
        if mask is not None:
            y = y * mask
        return torch.sigmoid(y) if scale else y


def test_optional_forward_arguments_take_their_defaults():
    graph = from_torch(Optional(), (6,))
    assert [n.type for n in graph.nodes[1:]] == ["linear"]


class ShapeBranchReused(nn.Module):
    """torch.export's path: a module called twice (its calls told apart) and an in-place statement."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        if x.shape[-1] > 4:
            x = self.conv(x)
        x.relu_()
        return self.conv(x)


def test_torch_export_keeps_repeated_calls_and_in_place_statements():
    imported = import_module(ShapeBranchReused(), (4, 6, 6))
    assert [(n.name, n.type, n.inputs) for n in imported.graph.nodes[1:]] == [
        ("conv", "conv", ("input",)), ("relu", "relu", ("conv",)), ("conv_2", "conv", ("relu",))]
    assert imported.module_layers == {"conv": ["conv", "conv_2"]}
    assert any("module conv (Conv2d) is called 2 times" in w for w in imported.graph.warnings)


class FunctionalWeights(nn.Module):
    """Layers written as functions of the module's own parameters (weight standardisation style)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(6, 3, 3, 3))
        self.register_buffer("mean", torch.zeros(6))
        self.register_buffer("var", torch.ones(6))
        self.gamma = nn.Parameter(torch.ones(6))
        self.beta = nn.Parameter(torch.zeros(6))
        self.fc_weight = nn.Parameter(torch.randn(5, 6))
        self.depthwise = nn.Parameter(torch.randn(6, 1, 3, 3))

    def forward(self, x):
        x = F.conv2d(x, self.weight, None, 2, 1)
        x = F.batch_norm(x, self.mean, self.var, self.gamma, self.beta, False, 0.1, 1e-3)
        x = F.conv2d(x, self.depthwise, padding="same", groups=6)
        return F.linear(x.mean((2, 3)), self.fc_weight)


def test_functional_layers_on_the_modules_parameters():
    imported, analysis = check_against_torch(FunctionalWeights(), (3, 9, 9))
    assert [(row.name, row.type, row.params, row.buffers) for row in analysis.layers[1:]] == [
        ("conv2d", "conv", 162, 0), ("batch_norm", "batchnorm", 12, 12), ("conv2d_2", "conv", 54, 0),
        ("mean", "global_avgpool", 0, 0), ("mean.flatten", "flatten", 0, 0), ("linear", "linear", 30, 0)]
    # multiply-adds by hand: each output value of a conv sums c/groups * k*k products
    assert [rows_of(analysis)[n].macs for n in ("conv2d", "conv2d_2", "linear")] == [
        6 * 3 * 9 * 5 * 5, 6 * 1 * 9 * 5 * 5, 6 * 5]
    assert imported.graph.warnings == ()


def test_a_tensor_whose_kind_differs_from_archcalcs_rule_is_an_error_or_unsupported():
    conv = nn.Conv2d(3, 4, 3)
    bias = conv.bias.detach().clone()
    del conv.bias
    conv.register_buffer("bias", bias)  # the bias saved, not learned
    with pytest.raises(SpecError, match=r"^'net': module conv \(Conv2d\): its bias is a buffer; archcalc's rule "
                                        r"counts the bias as a learned parameter$"):
        from_torch(_Named(conv), (3, 5, 5), name="net")
    tv = pytest.importorskip("torchvision")
    frozen = nn.Sequential(nn.Conv2d(3, 4, 3), tv.ops.misc.FrozenBatchNorm2d(4))  # detection backbones' batchnorm
    with pytest.raises(SpecError, match=r"unsupported: operator.mul \(by a buffer\) x1 \(first at 1.mul\), "
                                        r"operator.add \(with a parameter or buffer\) x1"):
        from_torch(frozen, (3, 5, 5), name="net")


def test_a_half_precision_module_is_traced_on_a_sample_of_its_dtype():
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).half()
    graph = from_torch(module, (3, 6, 6))
    assert [n.type for n in graph.nodes[1:]] == ["conv", "batchnorm", "relu"]


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head_a = nn.Linear(4, 2)
        self.head_b = nn.Linear(4, 3)

    def forward(self, x):
        x = self.body(x)
        return self.head_a(x), self.head_b(x)


def test_several_outputs_are_a_warning_and_every_head_is_counted():
    graph = from_torch(TwoHeads(), (4,))
    assert [n.name for n in graph.nodes[1:]] == ["body", "head_a", "head_b"]
    assert archcalc.analyze(graph).totals.params == 20 + 10 + 15
    assert any("returns 2 tensors" in w and "head_b" in w for w in graph.warnings)
