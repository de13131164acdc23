"""Export: archcalc networks as PyTorch source and as ONNX graphs, checked against the executor.

Every registry example and every zoo model is exported; the exported network's shapes and
parameter counts must equal archcalc's, and on the executor's weights its output must equal the
executor's (eval mode). The executor is archcalc's own NumPy implementation; torch and
onnxruntime run the exported network independently of it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import archcalc
from archcalc.errors import SpecError
from archcalc.execute import Executor
from archcalc.ops import REGISTRY
from archcalc.passes import analyze, infer_shapes
from archcalc.spec import from_dict
from tests.helpers import single_op_graph

CASES = [(op_type, i, ex) for op_type, op in sorted(REGISTRY.items()) for i, ex in enumerate(op.examples)]
IDS = [f"{t}-{i}" for t, i, _ in CASES]

#: Zoo models run end to end (numerically) at a small input, and the input they run at.
SMALL_ZOO = {
    "lenet5": None,
    "resnet18": (3, 64, 64),
    "mobilenet_v2": (3, 64, 64),
    "googlenet": None,
    "unet": (1, 188, 188),
    "squeezenet1_1": (3, 64, 64),
    "densenet121": (3, 32, 32),
    "inception_v3": (3, 96, 96),
    "inception-reduced": (256, 8, 8),
    "r3d_18": (3, 4, 32, 32),
}


def at_input(name, shape):
    """The zoo model ``name`` at another input shape (None: its own)."""
    graph = archcalc.load(name)
    if shape is None:
        return graph
    spec = graph.to_dict()
    spec["input"] = list(shape)
    return from_dict(spec)


def randomised_executor(graph, seed=0, dtype="float64"):
    """An executor in eval mode whose every parameter and running statistic is random (running
    variances positive), so that copying each one into the export is tested."""
    executor = Executor(graph, seed=seed, dtype=dtype).eval()
    rng = np.random.default_rng(seed + 1)
    layers = infer_shapes(executor.graph)
    for node in executor.graph.nodes[1:]:
        for name, param in REGISTRY[node.type].params(layers[node.name]).items():
            value = executor.params[f"{node.name}.{name}"]
            if param.role.init == "he_normal":
                continue  # random already
            if param.role.name == "running_var":
                value[...] = rng.uniform(0.5, 1.5, value.shape)
            else:
                value[...] = rng.normal(param.role.init == "ones", 0.5, value.shape)
    return executor


def archcalc_counts(graph):
    totals = analyze(graph).totals
    return totals.params, totals.buffers


# --- PyTorch ----------------------------------------------------------------------------------


def torch_counts(module):
    params = sum(p.numel() for p in module.parameters())
    buffers = sum(b.numel() for n, b in module.named_buffers() if not n.endswith("num_batches_tracked"))
    return params, buffers


def check_torch_export(graph, batch=2, rtol=1e-7, atol=1e-8):
    torch = pytest.importorskip("torch")
    executor = randomised_executor(graph)
    from archcalc.exporters import to_torch

    module = to_torch(graph, weights=executor.params)
    assert not module.training
    assert torch_counts(module) == archcalc_counts(graph)
    x = np.random.default_rng(3).normal(size=(batch, *graph.input_shape))
    expected = executor.forward(x)
    with torch.no_grad():
        got = module(torch.tensor(x)).numpy()
    assert got.shape == expected.shape == (batch, *infer_shapes(graph)[graph.nodes[-1].name].out_shape)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize(("op_type", "index", "example"), CASES, ids=IDS)
def test_every_registry_example_exports_to_torch(op_type, index, example):
    if op_type == "opaque":
        pytest.importorskip("torch")
        from archcalc.exporters import torch_source

        refusal = r'type="opaque"\): cannot export to PyTorch: the layer stands for \S+, which a partial import left uncounted'
        with pytest.raises(SpecError, match=refusal):
            torch_source(single_op_graph(op_type, example))
        return
    check_torch_export(single_op_graph(op_type, example))


def test_every_op_of_the_registry_has_a_torch_rule():
    """The generic rule (the op's own torch module) or a table entry writes every op."""
    pytest.importorskip("torch")
    from archcalc.exporters.torch import write_layer

    for op_type, op in REGISTRY.items():
        if op_type == "opaque":
            continue
        graph = single_op_graph(op_type, op.examples[0])
        node = graph.nodes[-1]
        written = write_layer(op_type, infer_shapes(graph)[node.name])
        assert written.call("self.m", ["a"] * len(node.inputs))


def ruff_check(source, tmp_path):
    """``ruff check`` of the source with the project's rules (skipped where ruff is not installed)."""
    path = tmp_path / "exported.py"
    path.write_text(source)
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "--config", str(Path(__file__).parent.parent / "pyproject.toml"),
                           str(path)], capture_output=True, text=True)
    if "No module named ruff" in ruff.stderr:
        pytest.skip("ruff is not installed")
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr


@pytest.mark.parametrize("name", archcalc.zoo.names())
def test_every_zoo_model_exports_with_archcalcs_shapes_and_counts(name, tmp_path):
    """On the meta device (no memory, no arithmetic): the output shape and the counts; the source is ruff-clean."""
    torch = pytest.importorskip("torch")
    from archcalc.exporters import torch_source
    from archcalc.exporters.torch import class_name

    graph = archcalc.load(name)
    source = torch_source(graph)
    ruff_check(source, tmp_path)
    namespace = {}
    exec(compile(source, name, "exec"), namespace)
    with torch.device("meta"):
        module = namespace[class_name(graph.name)]().eval()
        out = module(torch.empty(2, *graph.input_shape))
    assert tuple(out.shape) == (2, *infer_shapes(graph)[graph.nodes[-1].name].out_shape)
    assert torch_counts(module) == archcalc_counts(graph)


@pytest.mark.parametrize("name", list(SMALL_ZOO))
def test_zoo_models_export_to_torch_and_equal_the_executor(name):
    check_torch_export(at_input(name, SMALL_ZOO[name]), batch=2, rtol=1e-7, atol=1e-7)


def test_the_source_is_plain_readable_pytorch(tmp_path):
    pytest.importorskip("torch")
    from archcalc.exporters import torch_source

    graph = archcalc.load("googlenet")
    source = torch_source(graph)
    tree = ast.parse(source)
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    modules = {alias.name for node in imports for alias in node.names}
    modules |= {node.module for node in imports if isinstance(node, ast.ImportFrom)}
    assert not any("archcalc" in (m or "") for m in modules)
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    assert [c.name for c in classes] == ["Googlenet"]
    forward = next(f for f in classes[0].body if isinstance(f, ast.FunctionDef) and f.name == "forward")
    assert len(forward.body) == len(graph.nodes) - 1 + 1  # a line per layer, and the return
    assert "inception3a_branch1_conv1 = self.inception3a.branch1.conv1(pool2)" in source
    assert "torch.cat([inception3a_branch1_relu1, inception3a_branch2_relu2" in source
    ruff_check(source, tmp_path)


CONVNEXT = Path(__file__).parent.parent / "examples" / "convnext_tiny.py"


def test_a_modern_network_exports_with_its_helpers(tmp_path):
    """ConvNeXt-T (the README's DSL example): layer scale and stochastic depth need helper
    classes, copied into the source (which stays ruff-clean), and the channels-last blocks."""
    pytest.importorskip("torch")
    from archcalc.exporters import torch_source

    graph = at_input(str(CONVNEXT), (3, 32, 32))
    source = torch_source(graph)
    classes = [node.name for node in ast.parse(source).body if isinstance(node, ast.ClassDef)]
    assert classes == ["ChannelScale", "StochasticDepth", "ConvnextTiny"]
    check_torch_export(graph)
    check_onnx_export(graph, tmp_path)
    ruff_check(source, tmp_path)


def test_names_become_readable_identifiers():
    from archcalc.exporters.torch import class_name, identifier

    assert identifier("layer1.0.conv1") == "layer1_0_conv1"
    assert identifier("branch[pool]") == "branch_pool"
    assert identifier("0") == "layer_0"
    assert identifier("lambda") == "lambda_"
    assert class_name("inception-naive") == "InceptionNaive"
    assert class_name("3d-net") == "Net3dNet"


def test_awkward_layer_names_still_export(tmp_path):
    """Names that are keywords, module attributes, digits at the top, or clash once made valid."""
    spec = {"name": "awkward net", "input": [2, 6, 6], "layers": [
        {"name": "0", "type": "conv", "filters": 3, "kernel": 3, "padding": 1},
        {"name": "lambda", "type": "relu"},
        {"name": "forward", "type": "conv", "filters": 3, "kernel": 1},
        {"name": "a-b", "type": "batchnorm"},
        {"name": "a_b", "type": "conv", "filters": 3, "kernel": 1},
        {"name": "x", "type": "relu"},
        {"name": "blk.0", "type": "conv", "filters": 3, "kernel": 1},
        {"name": "blk.train", "type": "batchnorm"},
        {"name": "dead_end", "type": "relu", "inputs": ["forward"]},  # read by no layer: ruff must not mind
        {"name": "sum", "type": "add", "inputs": ["blk.train", "0"]},
    ]}
    check_torch_export(from_dict(spec))
    from archcalc.exporters import torch_source

    ruff_check(torch_source(spec), tmp_path)


def test_to_torch_writes_the_file(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "lenet.py"
    from archcalc.exporters import to_torch

    module = to_torch("lenet5", path)
    assert path.read_text().startswith('"""lenet5 as a PyTorch module')
    assert not module.training


def test_bad_outputs_are_one_line_errors(tmp_path):
    pytest.importorskip("torch")
    from archcalc.exporters import to_torch

    with pytest.raises(SpecError, match=r"directory '.*missing' does not exist"):
        to_torch("lenet5", tmp_path / "missing" / "net.py")
    with pytest.raises(SpecError, match="is a directory"):
        to_torch("lenet5", tmp_path)


def test_missing_torch_says_how_to_install(monkeypatch):
    import builtins

    from archcalc.errors import MissingToolError
    from archcalc.exporters import torch_source

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(MissingToolError, match=r'pip install "archcalc\[torch\]"'):
        torch_source("lenet5")


def test_weights_by_layer_and_role():
    """{layer: {role: array}} (a batchnorm's scale and shift) loads as the executor's names do."""
    torch = pytest.importorskip("torch")
    from archcalc.exporters import to_torch

    spec = {"name": "t", "input": [2, 3, 3], "layers": [{"name": "bn", "type": "batchnorm"}]}
    weights = {"bn": {"scale": np.full(2, 2.0), "shift": np.full(2, 1.0), "running_mean": np.zeros(2), "running_var": np.ones(2)}}
    module = to_torch(spec, weights=weights)
    x = torch.ones(1, 2, 3, 3, dtype=torch.float64)
    np.testing.assert_allclose(module(x).detach().numpy(), 2 / np.sqrt(1 + 1e-5) + 1)


def test_weights_are_checked():
    pytest.importorskip("torch")
    from archcalc.exporters import to_torch

    with pytest.raises(SpecError, match="'conv1.weight' has shape"):
        to_torch("lenet5", weights={"conv1": {"weight": np.zeros((1, 1))}})
    with pytest.raises(SpecError, match="'nope.weight' is no parameter"):
        to_torch("lenet5", weights={"nope.weight": np.zeros((1, 1))})






# --- ONNX -----------------------------------------------------------------------------------------


def onnx_outputs(graph, tmp_path, x, weights=None):
    """(onnxruntime's output, the model) of ``graph`` exported with ``weights``."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from archcalc.exporters import to_onnx

    path = tmp_path / "net.onnx"
    to_onnx(graph, path, weights=weights)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": x.astype(np.float32)})
    return out, onnx.load(str(path))


def inferred_shapes(model):
    """Every tensor's shape from onnx's own shape inference (strict), by name."""
    import onnx

    # large weights become graph inputs of their shape: inference needs their shapes only (and no 500 MB copies)
    large = [t for t in model.graph.initializer if len(t.raw_data) > 4096]
    for tensor in large:
        model.graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
        model.graph.initializer.remove(tensor)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_param if d.dim_param else d.dim_value for d in dims)
    return shapes


#: Past this many parameters the executor runs in float32, as onnxruntime does (memory: VGG16 on CIFAR's
#: 138M parameters would take 1.1 GB in float64, beside the ONNX model's copies).
FLOAT64_LIMIT = 30_000_000


def check_onnx_export(graph, tmp_path, batch=2, tolerance=1e-5):
    big = archcalc_counts(graph)[0] > FLOAT64_LIMIT
    executor = randomised_executor(graph, dtype="float32" if big else "float64")
    # float32 weights, as the ONNX file holds them; the executor runs them in float64 (up to FLOAT64_LIMIT)
    weights = executor.params if big else {k: v.astype(np.float32) for k, v in executor.params.items()}
    for key, value in weights.items():
        executor.params[key][...] = value
    x = np.random.default_rng(3).normal(size=(batch, *graph.input_shape)).astype(np.float32)
    try:
        got, model = onnx_outputs(graph, tmp_path, x, weights)
    finally:  # a zoo model's file is up to ~130 MB: pytest keeps tmp_path after the run
        for written in tmp_path.glob("*.onnx*"):
            written.unlink()
    expected = executor.forward(x if big else x.astype(np.float64))
    assert got.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance * scale)
    shapes = inferred_shapes(model)
    for name, layer in infer_shapes(graph).items():
        assert shapes[name] == ("N", *layer.out_shape), name


def exportable_to_onnx(op_type, example):
    """False for the adaptive pools whose windows ONNX cannot express (checked to be refused)."""
    if not op_type.startswith("adaptive_"):
        return True
    layer = infer_shapes(single_op_graph(op_type, example))
    (node,) = [v for k, v in layer.items() if k != "input"]
    return all(n % o == 0 or n == 1 for n, o in zip(node.in_shape[1:], node.out_shape[1:]))


@pytest.mark.parametrize(("op_type", "index", "example"), CASES, ids=IDS)
def test_every_registry_example_exports_to_onnx(op_type, index, example, tmp_path):
    graph = single_op_graph(op_type, example)
    if op_type == "opaque":
        pytest.importorskip("onnx")
        from archcalc.exporters import to_onnx

        refusal = r'type="opaque"\): cannot export to ONNX: the layer stands for \S+, which a partial import left uncounted'
        with pytest.raises(SpecError, match=refusal):
            to_onnx(graph, tmp_path / "net.onnx")
        assert not (tmp_path / "net.onnx").exists()
        return
    if exportable_to_onnx(op_type, example):
        check_onnx_export(graph, tmp_path)
    else:
        pytest.importorskip("onnx")
        from archcalc.exporters import to_onnx

        with pytest.raises(SpecError, match=r'name="\w+", type="adaptive_\w+"\): cannot export to ONNX: its windows are not uniform'):
            to_onnx(graph, tmp_path / "net.onnx")


def test_every_op_of_the_registry_has_an_onnx_rule():
    from archcalc.exporters.onnx import RULES

    assert sorted(set(REGISTRY) - {"opaque"} - set(RULES)) == []


#: Cases the registry's examples leave out where an export takes another path.
EXTRA = [
    ("lrn", {"size": 4}, (6, 3, 3)),  # an even size: ONNX centres its window the other way
    ("lrn", {"size": 2, "k": 2.0}, (5, 3)),  # even, and not 4D
    ("lrn", {"size": 3}, (4, 2, 2, 3)),  # 5D
    ("conv_transpose", {"filters": 2, "kernel": 3, "dilation": 3, "output_padding": 2}, (2, 4, 5)),  # op > p, op >= s
    ("conv_transpose", {"filters": 2, "kernel": 2, "dilation": 3, "output_padding": 2, "bias": False}, (2, 4)),
    ("avgpool", {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}, (2, 8, 8)),
    ("avgpool", {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (2, 6, 7)),
    ("avgpool", {"kernel": [3, 2], "stride": 2, "padding": [1, 1, 1, 0], "ceil_mode": True, "divisor_override": 4}, (1, 6, 7)),
    ("maxpool", {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True, "dilation": 2}, (2, 9, 8)),
    ("maxpool", {"kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 5, 6)),  # PyTorch drops a window in the padding
    ("avgpool", {"kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 5, 6)),
    ("avgpool", {"kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}, (1, 5, 6)),
    ("avgpool", {"kernel": [3], "stride": 2, "padding": 1, "ceil_mode": True}, (2, 6)),
    ("linear", {"units": 3, "bias": False}, (2, 4, 5)),
    ("layernorm", {"elementwise_affine": False}, (4, 3, 3)),
    ("layernorm", {"normalized_shape": [4, 5], "bias": False}, (3, 4, 5)),
    ("groupnorm", {"num_groups": 2, "affine": False}, (4, 3, 3)),
    ("upsample", {"mode": "bilinear", "scale_factor": [1.5, 2.25]}, (1, 5, 4)),
    ("upsample", {"mode": "trilinear", "size": [3, 5, 4], "align_corners": True}, (1, 2, 3, 3)),
    ("upsample", {"mode": "bicubic", "size": [9, 7], "align_corners": True}, (1, 4, 5)),
    ("upsample", {"mode": "nearest", "scale_factor": 3}, (2, 2, 2, 3)),
    ("upsample", {"mode": "linear", "size": 1}, (2, 8)),  # one output: sampled at (0.5 * 8) - 0.5, as PyTorch
    ("upsample", {"mode": "bilinear", "scale_factor": 0.3}, (1, 6, 7)),
    ("maxpool", {"kernel": 2, "stride": 3, "padding": [0, 1, 0, 1], "ceil_mode": True, "dilation": 2}, (1, 4, 8)),
    ("adaptive_maxpool", {"output_size": [5, 1]}, (2, 1, 6)),
    ("channel_shuffle", {"groups": 3}, (6, 4)),
    ("prelu", {"num_parameters": 1}, (3,)),
]
EXTRA_IDS = [f"{t}-{i}" for i, (t, _, _) in enumerate(EXTRA)]


def extra_graph(op_type, attrs, shape):
    return from_dict({"name": "t", "input": list(shape), "layers": [{"type": op_type, **attrs}]})


@pytest.mark.parametrize(("op_type", "attrs", "shape"), EXTRA, ids=EXTRA_IDS)
def test_edge_cases_export_to_torch(op_type, attrs, shape):
    check_torch_export(extra_graph(op_type, attrs, shape))


@pytest.mark.parametrize(("op_type", "attrs", "shape"), EXTRA, ids=EXTRA_IDS)
def test_edge_cases_export_to_onnx(op_type, attrs, shape, tmp_path):
    check_onnx_export(extra_graph(op_type, attrs, shape), tmp_path)


def small_input(name):
    """The zoo model at the smallest of a few spatial sizes its layers take (its linear layers then
    take fewer inputs: another network, as good a test of the export)."""
    graph = archcalc.load(name)
    channels, *spatial = graph.input_shape
    for size in (16, 32, 96, 188):
        shape = [channels, *(min(size // 4 if len(spatial) == 3 and i == 0 else size, n) for i, n in enumerate(spatial))]
        try:
            small = at_input(name, shape)
            infer_shapes(small)
            return small
        except archcalc.errors.ArchcalcError:
            continue
    return graph


@pytest.mark.parametrize("name", archcalc.zoo.names())
def test_every_zoo_model_exports_to_onnx_and_equals_the_executor(name, tmp_path):
    check_onnx_export(small_input(name), tmp_path, batch=1)


def test_default_weights_are_the_executors_at_the_seed(tmp_path):
    """weights=None: the float32 executor's own initialisation at ``seed``; "zeros": every value 0."""
    graph = archcalc.load("lenet5")
    x = np.random.default_rng(0).normal(size=(2, *graph.input_shape)).astype(np.float32)
    pytest.importorskip("onnxruntime")
    from archcalc.exporters import to_onnx

    ort = pytest.importorskip("onnxruntime")
    for seed in (0, 7):
        to_onnx(graph, tmp_path / "net.onnx", seed=seed)
        session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
        expected = Executor(graph, seed=seed, dtype="float32").eval().forward(x)  # float32: its own random stream
        np.testing.assert_allclose(session.run(None, {"input": x})[0], expected, rtol=1e-5, atol=1e-5)
    to_onnx(graph, tmp_path / "zeros.onnx", weights="zeros")
    session = ort.InferenceSession(str(tmp_path / "zeros.onnx"), providers=["CPUExecutionProvider"])
    assert not session.run(None, {"input": x})[0].any()


def test_the_onnx_model_names_its_input_batch_and_opset(tmp_path):
    onnx = pytest.importorskip("onnx")
    from archcalc.exporters import to_onnx
    from archcalc.exporters.onnx import OPSET

    to_onnx("resnet18", tmp_path / "r.onnx")
    model = onnx.load(str(tmp_path / "r.onnx"))
    assert OPSET >= 17 and [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    (graph_input,) = model.graph.input
    assert graph_input.name == "input"
    assert [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim] == ["N", 3, 224, 224]
    assert [o.name for o in model.graph.output] == ["fc"]
    assert {t.name for t in model.graph.initializer} >= {"conv1.weight", "bn1.running_var", "fc.weight", "fc.bias"}
    onnx.checker.check_model(model, full_check=True)


def test_onnx_bad_inputs_are_one_line_errors(tmp_path):
    pytest.importorskip("onnx")
    from archcalc.exporters import to_onnx

    with pytest.raises(SpecError, match=r"directory '.*missing' does not exist"):
        to_onnx("lenet5", tmp_path / "missing" / "net.onnx")
    with pytest.raises(SpecError, match="is a directory"):
        to_onnx("lenet5", tmp_path)
    with pytest.raises(SpecError, match="'conv1.weight' has shape"):
        to_onnx("lenet5", tmp_path / "a.onnx", weights={"conv1": {"weight": np.zeros((1, 1))}})
    with pytest.raises(SpecError, match="'nope.weight' is no parameter"):
        to_onnx("lenet5", tmp_path / "a.onnx", weights={"nope.weight": np.zeros(1)})
    with pytest.raises(SpecError, match="missing 10 parameter"):
        to_onnx("lenet5", tmp_path / "a.onnx", weights={})
    with pytest.raises(SpecError, match="weights must be None"):
        to_onnx("lenet5", tmp_path / "a.onnx", weights="ones")
    uneven = {"name": "t", "input": [2, 5, 5], "layers": [{"name": "pool", "type": "adaptive_maxpool", "output_size": 3}]}
    with pytest.raises(SpecError) as refused:
        to_onnx(uneven, tmp_path / "a.onnx")
    assert str(refused.value) == (
        'model \'t\': layers[0] (name="pool", type="adaptive_maxpool"): cannot export to ONNX: its windows are not '
        "uniform (5 -> 3, 5 -> 3: the input size is no multiple of the output's), and ONNX pools have one window size")
    assert not (tmp_path / "a.onnx").exists()
    # onnxruntime sizes a resize as floor(30 * 4.1) in float32: 123, PyTorch (and archcalc) 122
    rounding = {"name": "t", "input": [1, 30], "layers": [{"name": "up", "type": "upsample", "mode": "linear", "scale_factor": 4.1}]}
    with pytest.raises(SpecError, match=r"with a float32 scale, \(123,\), where PyTorch gives \(122,\); give the upsampling a size"):
        to_onnx(rounding, tmp_path / "a.onnx")
    # the same size at another scale: onnxruntime copies, PyTorch's nearest samples at 1/1.3 (1, 1, 2)
    same = {"name": "t", "input": [1, 3], "layers": [{"name": "up", "type": "upsample", "scale_factor": 1.3}]}
    with pytest.raises(SpecError, match=r"its output keeps the input's size 3 at scale_factor 1.3: onnxruntime then copies"):
        to_onnx(same, tmp_path / "a.onnx")


def test_missing_onnx_says_how_to_install(monkeypatch, tmp_path):
    import builtins

    from archcalc.errors import MissingToolError
    from archcalc.exporters import to_onnx

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(MissingToolError, match=r'pip install "archcalc\[onnx\]"'):
        to_onnx("lenet5", tmp_path / "net.onnx")


def test_export_from_the_command_line(tmp_path):
    from tests.helpers import run_main

    status, out, err = run_main("export", "lenet5", "--to", "torch")
    assert status == 0 and "class Lenet5(nn.Module):" in out
    pytest.importorskip("onnx")
    status, out, err = run_main("export", "lenet5", "--to", "onnx", "-o", str(tmp_path / "missing" / "x.onnx"))
    assert status == 2 and err.count("\n") == 1 and "does not exist" in err


def test_a_model_past_protobufs_limit_keeps_its_weights_beside_it(tmp_path, monkeypatch):
    """Past 2 GiB the weights go to ``<file>.data`` (ONNX external data), as torch.onnx.export does;
    shown here by lowering the threshold to 0 bytes."""
    ort = pytest.importorskip("onnxruntime")
    from archcalc.exporters import onnx as onnx_export

    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 0)
    graph = archcalc.load("lenet5")
    onnx_export.to_onnx(graph, tmp_path / "net.onnx", seed=3)
    assert (tmp_path / "net.onnx.data").stat().st_size > 0.9 * 4 * archcalc_counts(graph)[0]  # tensors under 1 KiB stay inline
    assert (tmp_path / "net.onnx").stat().st_size < 20_000
    x = np.random.default_rng(0).normal(size=(2, *graph.input_shape)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    expected = Executor(graph, seed=3, dtype="float32").eval().forward(x)
    np.testing.assert_allclose(session.run(None, {"input": x})[0], expected, rtol=1e-5, atol=1e-5)


def _runs_in_onnxruntime_as_the_executor(spec, tmp_path):
    """The spec's ONNX export equals the executor in onnxruntime, or the export refuses it in one line."""
    from archcalc.exporters import to_onnx

    try:
        graph = archcalc.load(spec)
        infer_shapes(graph)
    except archcalc.errors.ArchcalcError:
        return  # not a valid layer: nothing to export
    try:
        to_onnx(graph, tmp_path / "net.onnx")
    except SpecError as refusal:
        assert "\n" not in str(refusal) and "cannot export to ONNX" in str(refusal)
        return
    check_onnx_export(graph, tmp_path, batch=1)


@settings(max_examples=40, deadline=None)
@given(
    op=st.sampled_from(["maxpool", "avgpool"]),
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    pads=st.lists(st.integers(0, 2), min_size=4, max_size=4),
    ceil_mode=st.booleans(),
    dilation=st.integers(1, 2),
    count_include_pad=st.booleans(),
    divisor=st.one_of(st.none(), st.integers(1, 5)),
)
def test_random_pools_export_to_onnx(op, shape, kernel, stride, pads, ceil_mode, dilation, count_include_pad, divisor,
                                     tmp_path_factory):
    """Ceil mode, asymmetric padding, dilation and divisors: where ONNX's rules differ from PyTorch's
    (a last ceil-mode window in the padding) the export still equals the executor."""
    pytest.importorskip("onnxruntime")
    layer = {"type": op, "kernel": kernel, "stride": stride, "padding": [min(p, kernel // 2) for p in pads],
             "ceil_mode": ceil_mode}
    if op == "maxpool":
        layer["dilation"] = dilation
    else:
        layer.update(count_include_pad=count_include_pad, divisor_override=divisor)
    _runs_in_onnxruntime_as_the_executor({"name": "t", "input": [2, *shape], "layers": [layer]}, tmp_path_factory.mktemp("pool"))


@settings(max_examples=40, deadline=None)
@given(
    mode=st.sampled_from(["nearest", "linear"]),
    n=st.integers(1, 12),
    size=st.one_of(st.none(), st.integers(1, 40)),
    scale=st.sampled_from([0.3, 0.5, 0.75, 1.3, 1.5, 1.7, 2, 2.5, 3, 4.1, 7, 41]),
    align=st.booleans(),
)
def test_random_upsamplings_export_to_onnx(mode, n, size, scale, align, tmp_path_factory):
    """Sizes and scales, ratios ONNX computes otherwise included: equal to the executor, or refused in one line."""
    pytest.importorskip("onnxruntime")
    layer = {"type": "upsample", "mode": mode, **({"size": size} if size else {"scale_factor": scale})}
    if align and mode == "linear":
        layer["align_corners"] = True
    _runs_in_onnxruntime_as_the_executor({"name": "t", "input": [2, n], "layers": [layer]}, tmp_path_factory.mktemp("up"))
