"""The memory model (archcalc.memory and each op's ``saved`` rule) against PyTorch's autograd.

PyTorch is the oracle: ``torch.autograd.graph.saved_tensors_hooks`` sees every tensor autograd
keeps for backward, and each tensor's storage says whether it is an input, the output, a
parameter or a new buffer; the bytes of distinct storages must equal archcalc's figure.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest

from archcalc.ops import REGISTRY, UNKNOWN
from archcalc.passes import infer_shapes
from tests.helpers import single_op_graph

torch = pytest.importorskip("torch")
oracle = pytest.importorskip("tests.torch_oracle")

CASES = [(op_type, i, ex) for op_type, op in sorted(REGISTRY.items()) for i, ex in enumerate(op.examples)]
IDS = [f"{t}-{i}" for t, i, _ in CASES]
#: bytes per value of the dtypes saved tensors come in (the tests run torch in float64)
ITEMSIZE = {None: 8, "float64": 8, "int64": 8, "bool": 1}


def _storage(t):
    return t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()


def torch_saved(module, inputs):
    """The distinct storages autograd keeps for one forward call, classified: ``("input", i)``,
    ``("output",)``, ``("param", name)`` or ``("buffer",)``, each with its bytes and dtype."""
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        out = module(*inputs)
    owned = {t.untyped_storage().data_ptr(): name.removeprefix("inner.")
             for name, t in [*module.named_parameters(), *module.named_buffers()]}
    inputs_at = [x.untyped_storage().data_ptr() for x in inputs]
    found = {}
    for t in kept:
        ptr, nbytes = _storage(t)
        if ptr in found:
            continue
        if ptr in inputs_at:
            kind = ("input", inputs_at.index(ptr))
        elif ptr == out.untyped_storage().data_ptr():
            kind = ("output",)
        elif ptr in owned:
            kind = ("param", owned[ptr])
        else:
            kind = ("buffer",)
        found[ptr] = (kind, nbytes, str(t.dtype).removeprefix("torch."))
    return list(found.values())


def archcalc_saved(op, layer, batch):
    """The same, from the op's ``saved`` rule (distinct inputs, output and params once)."""
    seen, result = set(), []
    for s in op.saved(layer):
        kind = {"input": ("input", s.index), "output": ("output",), "param": ("param", s.name)}.get(s.kind, ("buffer",))
        if kind != ("buffer",) and kind in seen:
            continue
        seen.add(kind)
        result.append((kind, s.values(batch) * ITEMSIZE[s.dtype], s.dtype or "float64"))
    return result


@pytest.mark.parametrize(("op_type", "index", "example"), CASES, ids=IDS)
def test_every_op_saves_what_torch_saves(op_type, index, example):
    graph = single_op_graph(op_type, example)
    layer = infer_shapes(graph)[graph.nodes[-1].name]
    op = REGISTRY[op_type]
    for batch in (2, 3):
        module = op.torch_module(layer).double().train()
        torch.manual_seed(0)
        inputs = [torch.randn(batch, *shape, dtype=torch.float64, requires_grad=True) for shape in layer.in_shapes]
        measured = torch_saved(module, inputs)
        if op.saved(layer) == UNKNOWN:  # a stand-in: torch runs a made-up mean, nothing to compare
            assert op.stand_in
            continue
        expected = archcalc_saved(op, layer, batch)
        key = lambda entry: (entry[0], entry[1], entry[2])  # noqa: E731
        assert sorted(measured, key=key) == sorted(expected, key=key), (op_type, index, batch)


def test_saved_rule_is_stated_by_every_op():
    for op_type, op in REGISTRY.items():
        assert "saved" in vars(type(op)), op_type
        assert "saved for backward:" in type(op).__doc__, op_type
    # the values of a kept tensor follow the batch unless it is per channel (batchnorm's statistics)
    layer = REGISTRY["batchnorm"].infer({"eps": 1e-5, "momentum": 0.1}, ((3, 4, 4),))
    kept = REGISTRY["batchnorm"].saved(layer)
    assert [s.values(2) for s in kept if s.kind == "buffer"] == [3, 3]
    assert [s.values(2) for s in kept if s.kind == "input"] == [2 * math.prod((3, 4, 4))]
    assert Counter(s.kind for s in kept) == {"input": 1, "param": 3, "buffer": 2}


def _meta_net(graph):
    """The graph in torch, parameters and all on the meta device: shapes and storages, no values."""
    with torch.device("meta"):
        return oracle.TorchNet(graph).train()


def torch_kept_bytes(graph, batch, net=None):
    """Bytes of the distinct storages autograd keeps for backward in one training forward pass of the
    whole network (the input needs no gradient, as in training), parameters and buffers left out."""
    net = (net or _meta_net(graph)).train()
    owned = {t.untyped_storage()._cdata for t in [*net.parameters(), *net.buffers()]}
    kept = []
    x = torch.empty(batch, *graph.input_shape, device="meta")
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        net(x)
    storages = {t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in kept}
    return sum(nbytes for key, nbytes in storages.items() if key not in owned)


def torch_inference_peak(graph, batch, net=None):
    """An independent liveness walk over the torch modules' forward (eval mode, no gradients, on the
    meta device): each tensor is dropped after its last reader, and the live bytes are the distinct
    storages the held tensors use (a view shares its base's). A layer archcalc runs in place writes
    into an input of its shape that nothing reads later. Returns (peak bytes, layer at the peak)."""
    from archcalc.ops import get_op
    from archcalc.passes import stored_outputs

    net = (net or _meta_net(graph)).eval()
    stores = stored_outputs(graph, infer_shapes(graph))
    remaining = Counter(ref for node in graph.nodes[1:] for ref in node.inputs)
    env = {graph.nodes[0].name: torch.empty(batch, *graph.input_shape, device="meta")}
    final = graph.nodes[-1].name

    def live():
        return sum({t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in env.values()}.values())

    peak, where = live(), graph.nodes[0].name
    with torch.no_grad():
        for node in graph.nodes[1:]:
            inputs = [env[ref] for ref in node.inputs]
            out = net.layers[oracle._key(node.name)](*inputs)
            if not get_op(node.type).view and not stores[node.name]:
                others = {t.untyped_storage()._cdata for name, t in env.items() if remaining[name] > node.inputs.count(name)}
                target = next(t for ref, t in zip(node.inputs, inputs) if remaining[ref] == node.inputs.count(ref)
                              and t.shape == out.shape
                              and t.untyped_storage()._cdata not in others)
                out = target.copy_(out)
            env[node.name] = out
            if live() > peak:
                peak, where = live(), node.name
            for ref in node.inputs:
                remaining[ref] -= 1
                if remaining[ref] == 0 and ref in env:
                    del env[ref]
            if remaining[node.name] == 0 and node.name != final:
                del env[node.name]
    return peak, where


def _zoo():
    from archcalc import zoo

    return zoo.names()


@pytest.mark.parametrize("name", _zoo())
def test_zoo_kept_bytes_and_inference_peak_equal_torch(name):
    """Every zoo model at batch 1 and 4: the distinct storages autograd keeps equal archcalc's
    saved bytes exactly, and the inference peak with reuse (and where it is) equals the torch walk."""
    from archcalc.loading import load
    from archcalc.memory import memory

    graph = load(name)
    net = _meta_net(graph)
    for batch in (1, 4):
        m = memory(graph, batch=batch)
        assert m.saved_bytes == torch_kept_bytes(graph, batch, net), (name, batch)
        assert (m.inference_peak, m.inference_peak_layer) == torch_inference_peak(graph, batch, net), (name, batch)
        assert m.inference_peak <= m.inference_no_reuse


def _tiny():
    from archcalc.spec import from_dict

    return from_dict({"name": "tiny", "input": [3, 4, 4],
                      "layers": [{"type": "conv", "filters": 4, "kernel": 1}, {"type": "relu"}]})


def test_the_timeline_by_hand():
    from archcalc.memory import memory

    m = memory(_tiny(), batch=1)
    # conv keeps its input (48 values = 192 B), relu its output (64 values = 256 B)
    assert m.saved_bytes == 192 + 256
    assert [(s.phase, s.layer, s.live, s.peak) for s in m.timeline] == [
        ("forward", "input", 192, 192),
        ("forward", "conv1", 192 + 256, 192 + 256),            # the conv's output lives until relu reads it
        ("forward", "relu1", 192 + 256, 192 + 256 + 256),      # out of place: both while relu runs
        ("backward", "relu1", 192 + 256, 448 + 256 + 256),     # kept + the output's gradient + dx
        ("backward", "conv1", 0, 192 + 256),                   # the input kept, dy; no gradient for the input
    ]
    assert (m.activation_peak, m.peak_layer, m.peak_phase) == (960, "relu1", "backward")
    assert m.transient_bytes == 960 - 448
    assert (m.params_bytes, m.gradient_bytes, m.optimizer_bytes) == (16 * 4, 16 * 4, 0)
    assert m.training_bytes == 128 + 960
    # inference: relu runs in place on the conv's output; the input is freed after the conv
    assert (m.inference_peak, m.inference_peak_layer, m.inference_no_reuse) == (448, "conv1", 448)
    assert [s.live for s in m.inference_timeline] == [192, 256, 256]
    # every figure scales with the batch here (no per-channel statistics)
    m4 = memory(_tiny(), batch=4, optimizer="adam")
    assert (m4.saved_bytes, m4.activation_peak, m4.inference_peak) == (4 * 448, 4 * 960, 4 * 448)
    assert m4.optimizer_bytes == 2 * 64


def test_shared_storages_count_once():
    from archcalc.memory import memory

    m = memory("lenet5", batch=2)
    rows = {row.name: row for row in m.layers}
    # relu1 keeps its output and pool1 keeps the same tensor as its input: once, at relu1
    assert [k.shared for k in rows["pool1"].kept if k.saved.kind == "input"] == [True]
    assert rows["pool1"].kept_bytes == 2 * 6 * 14 * 14 * 8  # only its int64 indices are new
    assert sum(row.kept_bytes for row in m.layers) == m.saved_bytes
    # the network input is kept because conv1 keeps its input
    assert rows["conv1"].kept_bytes == 2 * 3 * 32 * 32 * 4
    # vs the lecture's rule (2 x the forward activations), as the report's footer gives it
    assert m.lecture_training_bytes > m.training_bytes
    from archcalc.passes import analyze

    for name, batch, optimizer in (("lenet5", 2, "sgd"), ("resnet18", 3, "adam"), ("googlenet", 1, "momentum")):
        lecture = analyze(name, batch, optimizer=optimizer, memory_model="lecture").totals.training_bytes
        assert memory(name, batch, optimizer=optimizer).lecture_training_bytes == lecture


def test_batchnorm_statistics_do_not_scale_with_the_batch():
    from archcalc.memory import memory

    one, two = memory("resnet18", batch=1), memory("resnet18", batch=2)
    statistics = 2 * 4 * sum(row.kept[0].saved.shape[0] for row in one.layers if row.type == "batchnorm")
    assert two.saved_bytes - one.saved_bytes == one.saved_bytes - statistics


def test_fit_finds_the_largest_batch():
    from archcalc.memory import fit, memory

    limit = 16 * 2**30
    f = fit("resnet50", limit, optimizer="adam")
    assert memory("resnet50", f.training, optimizer="adam").training_bytes <= limit
    assert memory("resnet50", f.training + 1, optimizer="adam").training_bytes > limit
    assert memory("resnet50", f.inference).inference_peak + memory("resnet50").params_bytes <= limit
    assert memory("resnet50", f.inference + 1).inference_peak + memory("resnet50").params_bytes > limit
    assert f.training_bytes == memory("resnet50", f.training, optimizer="adam").training_bytes
    assert "excluded" in f.assumptions and "adam" in f.assumptions
    lecture = fit("resnet50", limit, optimizer="adam", memory_model="lecture")
    assert analyze_training("resnet50", lecture.training) <= limit < analyze_training("resnet50", lecture.training + 1)
    assert fit("vgg16", 1000).training == 0  # not even the parameters fit


def analyze_training(model, batch):
    from archcalc.passes import analyze

    return analyze(model, batch, optimizer="adam", memory_model="lecture").totals.training_bytes


def test_bad_input():
    from archcalc.errors import SpecError
    from archcalc.memory import fit, memory

    with pytest.raises(SpecError, match="batch must be a positive int"):
        memory("lenet5", batch=0)
    with pytest.raises(SpecError, match="memory model must be one of"):
        fit("lenet5", 10**9, memory_model="torchinfo")
    with pytest.raises(SpecError, match="memory limit must be a positive number"):
        fit("lenet5", 0)


def test_an_opaque_layer_is_marked_unknown():
    from archcalc.memory import memory
    from archcalc.spec import from_dict

    graph = from_dict({"name": "partial", "input": [3, 8, 8], "layers": [
        {"type": "conv", "filters": 4, "kernel": 3},
        {"type": "opaque", "op": "aten.roi_align", "shape": [4, 2, 2]},
        {"type": "flatten"}, {"type": "linear", "units": 2}]})
    m = memory(graph)
    assert m.unknown == ("opaque1",)
    assert [row.unknown for row in m.layers] == [False, True, False, False]
    assert next(row for row in m.layers if row.unknown).kept_bytes == 0


def test_cli_memory_report_and_fit(tmp_path):
    import json

    from archcalc.memory import fit, memory
    from tests.helpers import run_main

    code, out, _ = run_main("memory", "lenet5", "--batch", "2")
    assert code == 0 and "backward" in out and "<- peak" in out and "Excluded:" in out
    code, out, _ = run_main("memory", "lenet5", "--batch", "2", "--format", "json")
    data = json.loads(out)
    m = memory("lenet5", batch=2)
    assert code == 0 and data["saved_bytes"] == m.saved_bytes and data["training_bytes"] == m.training_bytes
    assert sum(row["kept_bytes"] for row in data["layers"]) == m.saved_bytes
    assert len(data["timeline"]) == len(m.timeline)
    code, out, _ = run_main("memory", "resnet18", "--fit", "4GiB", "--optimizer", "adam", "--format", "json")
    data = json.loads(out)
    f = fit("resnet18", 4 * 2**30, optimizer="adam")
    assert code == 0 and (data["training_batch"], data["inference_batch"]) == (f.training, f.inference)
    code, out, _ = run_main("memory", "resnet18", "--fit", "4GiB")
    assert code == 0 and f"largest batch {fit('resnet18', 4 * 2**30).training:,}" in out and "Assumptions:" in out
    code, out, _ = run_main("memory", "vgg16", "--fit", "1KiB")
    assert code == 0 and "not even batch 1 fits" in out
    code, _, err = run_main("memory", "lenet5", "--fit", "0")
    assert code == 2 and err.startswith("error:")
    code, _, err = run_main("memory", "lenet5", "--memory-model", "lecture")
    assert code == 2 and "goes with --fit" in err
    code, out, _ = run_main("report", "lenet5", "--training")
    assert code == 0 and "what backward keeps" in out and "input (shared), buffer=indices" in out
    assert "Training memory, pytorch model" in out and "2 x activations" in out  # the lecture's line stays
    code, _, err = run_main("report", "lenet5", "--training", "--format", "json")
    assert code == 2 and "archcalc memory MODEL --format json" in err
    pytest.importorskip("matplotlib")
    target = tmp_path / "timeline.svg"
    code, _, err = run_main("memory", "lenet5", "--plot", str(target))
    assert code == 0 and target.read_text().lstrip().startswith("<?xml") and "wrote" in err
    code, _, err = run_main("memory", "lenet5", "--plot", str(tmp_path / "missing" / "x.svg"))
    assert code == 2 and "cannot write" in err


def test_readme_memory_figures():
    """The README's VGG16 and ResNet-50 figures are what archcalc computes (itself checked against torch above)."""
    from pathlib import Path

    from archcalc.memory import fit, memory
    from archcalc.passes import analyze
    from archcalc.render.format import binary_bytes as b

    text = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    section = text[text.index("## Memory: what backward keeps"):text.index("## Running the network")]
    vgg, resnet = memory("vgg16"), memory("resnet50")
    vgg32, resnet32 = memory("vgg16", 32), memory("resnet50", 32)
    for one, many in ((vgg, vgg32), (resnet, resnet32)):
        forward = analyze(one.name).totals.activation_bytes
        for figure in (forward, one.saved_bytes, one.activation_peak, one.inference_peak, one.inference_no_reuse):
            assert b(figure) in section
        assert f"{b(one.activation_peak)} ({one.peak_layer} {one.peak_phase})" in section
        assert f"{b(one.inference_peak)} ({one.inference_peak_layer})" in section
        assert f"{b(one.lecture_training_bytes)} / {b(many.lecture_training_bytes)}" in section
        assert f"{b(one.training_bytes)} / {b(many.training_bytes)}" in section
        assert f"{one.saved_bytes / forward:.2f}"[:4].rstrip("0") in ("1.2", "0.95")
    full = text[text.index("a.totals.training_bytes"):]
    assert full.startswith(f"a.totals.training_bytes                    # {analyze('vgg16').totals.training_bytes}: ")
    assert f'memory_model="lecture": {analyze("vgg16", memory_model="lecture").totals.training_bytes})' in full
    f = fit("resnet50", 16 * 2**30, optimizer="adam")
    assert f"largest batch {f.training} ({b(f.training_bytes, 2)} of 16.00 GiB" in section
    assert f"largest batch {f.inference:,} ({b(f.inference_bytes, 2)} of 16.00 GiB" in section
    assert f.assumptions in section
    assert f"By the lecture's rule, {fit('resnet50', 16 * 2**30, optimizer='adam', memory_model='lecture').training}" in section


def _modern_graph():
    """A DAG of the modern ops: no-parameter layers before the first weights (no gradient there:
    nothing kept), a squeeze-excite gate (mul keeps both inputs), layernorm, GELU, stochastic depth,
    dropout, a concat and an add whose inputs other layers keep too."""
    from archcalc.spec import from_dict

    return from_dict({"name": "modern", "input": [3, 16, 16], "layers": [
        {"type": "maxpool", "kernel": 2, "stride": 2, "name": "pool0"},
        {"type": "relu", "name": "relu0"},
        {"type": "conv", "filters": 8, "kernel": 3, "padding": 1, "name": "stem"},
        {"type": "batchnorm", "name": "bn"},
        {"type": "silu", "name": "act"},
        {"type": "global_avgpool", "name": "squeeze", "inputs": ["act"]},
        {"type": "conv", "filters": 8, "kernel": 1, "name": "excite"},
        {"type": "hardsigmoid", "name": "gate"},
        {"type": "mul", "name": "scaled", "inputs": ["act", "gate"]},
        {"type": "layernorm", "name": "ln"},
        {"type": "conv", "filters": 8, "kernel": 3, "padding": "same", "stride": 2, "name": "down"},
        {"type": "gelu", "name": "gelu"},
        {"type": "stochastic_depth", "p": 0.1, "mode": "row", "name": "drop_path"},
        {"type": "conv", "filters": 8, "kernel": 3, "stride": 2, "padding": 1, "name": "skip", "inputs": ["scaled"]},
        {"type": "add", "name": "sum", "inputs": ["drop_path", "skip"]},
        {"type": "concat", "name": "cat", "inputs": ["sum", "skip"]},
        {"type": "tanh", "name": "tanh"},
        {"type": "flatten", "name": "flat"},
        {"type": "dropout", "p": 0.5, "name": "drop"},
        {"type": "linear", "units": 4, "name": "fc"},
        {"type": "softmax", "name": "probs"}]})


def test_a_modern_dag_keeps_what_torch_keeps():
    from archcalc.memory import memory

    graph = _modern_graph()
    net = _meta_net(graph)
    for batch in (1, 4):
        m = memory(graph, batch=batch)
        assert m.saved_bytes == torch_kept_bytes(graph, batch, net), batch
        assert (m.inference_peak, m.inference_peak_layer) == torch_inference_peak(graph, batch, net), batch
    rows = {row.name: row for row in memory(graph).layers}
    assert rows["pool0"].kept == () and rows["relu0"].kept == ()  # before any weights: no gradient, nothing kept
    assert rows["sum"].kept == () and rows["cat"].kept == ()  # add and concat keep nothing
    assert [(k.saved.kind, k.shared) for k in rows["scaled"].kept] == [("input", False), ("input", False)]
    # the mul's output is kept by layernorm and by the skip conv: one storage, counted at layernorm
    assert [(k.saved.kind, k.storage, k.shared) for k in rows["skip"].kept if k.saved.kind == "input"] == [
        ("input", "scaled", True)]


@pytest.mark.parametrize("shape", [(3, 5), (3, 5, 4), (2, 3, 4, 5)])
@pytest.mark.parametrize("size", [1, 2])
def test_adaptive_average_to_one_is_a_mean(shape, size):
    """torch computes an adaptive average pool to 1 on every axis as a mean, which keeps nothing
    (ConvNeXt's head); to any other size it keeps the input."""
    op = REGISTRY["adaptive_avgpool"]
    layer = op.infer({"output_size": size}, (shape,))
    inputs = [torch.randn(2, *shape, dtype=torch.float64, requires_grad=True)]
    assert torch_saved(op.torch_module(layer).double(), inputs) == archcalc_saved(op, layer, 2)
    assert (op.saved(layer) == ()) == (size == 1)


def test_convnext_example_keeps_what_torch_keeps():
    """examples/convnext_tiny.py (layernorm, GELU, layer scale, stochastic depth, depthwise 7x7 convs)."""
    from pathlib import Path

    from archcalc.loading import load
    from archcalc.memory import memory

    graph = load(str(Path(__file__).resolve().parents[1] / "examples" / "convnext_tiny.py"))
    net = _meta_net(graph)
    for batch in (1, 2):
        m = memory(graph, batch=batch)
        assert m.saved_bytes == torch_kept_bytes(graph, batch, net), batch
        assert (m.inference_peak, m.inference_peak_layer) == torch_inference_peak(graph, batch, net), batch


@pytest.mark.parametrize(("op_type", "attrs"), [
    ("dropout", {"p": 0.0}), ("dropout", {"p": 1.0}), ("dropout", {"p": 0.2}),
    ("stochastic_depth", {"p": 1.0, "mode": "batch"}), ("stochastic_depth", {"p": 0.0, "mode": "batch"}),
    ("maxpool", {"kernel": 1}), ("avgpool", {"kernel": [4, 5]}), ("leaky_relu", {"negative_slope": 0.0}),
    ("lrn", {"size": 3}), ("adaptive_maxpool", {"output_size": 1}),
])
def test_random_and_degenerate_attributes_keep_what_torch_keeps(op_type, attrs):
    """The siblings of the registry's examples where torch keeps something else (p = 0 keeps
    nothing, p = 1 a scalar zero) or where a window covers everything."""
    op = REGISTRY[op_type]
    shape = (3, 4, 5) if op_type != "lrn" else (4, 2, 3, 3)
    layer = op.infer({**op.defaults(), **attrs}, (shape,))
    inputs = [torch.randn(2, *shape, dtype=torch.float64, requires_grad=True)]
    module = op.torch_module(layer).double().train()
    key = lambda entry: (entry[0], entry[1], entry[2])  # noqa: E731
    assert sorted(torch_saved(module, inputs), key=key) == sorted(archcalc_saved(op, layer, 2), key=key)


def test_names_are_shown_literally():
    import json

    from tests.helpers import run_main

    spec = json.dumps({"name": "[bold]net", "input": [3, 8, 8], "layers": [
        {"type": "conv", "filters": 4, "kernel": 3, "name": "[red]c[/red]"}, {"type": "relu", "name": "r[x]"}]})
    code, out, _ = run_main("memory", "-", input=spec)
    assert code == 0 and "[red]c[/red]" in out and "r[x]" in out and "[bold]net" in out
    code, out, _ = run_main("report", "-", "--training", input=spec)
    assert code == 0 and out.count("[red]c[/red]") >= 2


# -- the pytorch model as analyze()'s default: totals, the report's footer, JSON, compare --------------------------


def _residual():
    """conv a -> relu r -> conv b, and add(b, r): a skip connection, every tensor 2x4x4 = 128 B."""
    from archcalc.spec import from_dict

    return from_dict({"name": "res", "input": [2, 4, 4], "layers": [
        {"type": "conv", "filters": 2, "kernel": 1, "name": "a"}, {"type": "relu", "name": "r"},
        {"type": "conv", "filters": 2, "kernel": 1, "name": "b"}, {"type": "add", "inputs": ["b", "r"], "name": "s"}]})


def test_residual_totals_and_footer_by_hand():
    from archcalc.passes import analyze
    from archcalc.render.table import footer

    t = 128  # bytes of each tensor
    analysis = analyze(_residual())
    totals = analysis.totals
    # a keeps the input, r its output, b its input (r's output again: once), the add nothing
    assert totals.saved_bytes == 2 * t
    # the worst step is the add's backward: the two kept tensors + the gradients of s (the output),
    # of b and of r (an add passes its gradient to both inputs: each counted as its own buffer)
    assert (analysis.memory.activation_peak, analysis.memory.peak_layer, analysis.memory.peak_phase) == (5 * t, "s", "backward")
    assert totals.transient_bytes == 3 * t
    params = 2 * (2 * 2 + 2)  # two 1x1 convs, 2 -> 2 channels with bias
    assert totals.pytorch_training_bytes == totals.training_bytes == params * 4 * 2 + 5 * t  # + gradients, sgd: no state
    # the lecture: 2 x (the input, a, b: relu and add run in place)
    assert totals.lecture_training_bytes == params * 4 * 2 + 2 * 3 * t
    # inference: relu overwrites a, the add overwrites b; the peak is the input and a, at a
    assert (totals.inference_peak_bytes, analysis.memory.inference_peak_layer) == (2 * t, "a")
    lines = footer(analysis)
    assert ("Training memory (sgd, batch 1): params + gradients + optimizer state + what backward keeps (256 B: the "
            "storages PyTorch's autograd saves, each once) + the largest backward transient (384 B, at s's backward "
            "step) = 736 B; the lecture's x2 rule: 864 B (--memory-model lecture).") in lines
    assert any(line.startswith("Inference peak with buffer reuse: 256 B of activations (at a)") for line in lines)
    lecture = analyze(_residual(), memory_model="lecture")
    assert lecture.totals.training_bytes == 864 and lecture.memory_model == "lecture"
    assert ("Training memory (sgd, batch 1), the lecture's x2 rule: params + gradients + optimizer state + 2 x "
            "activations = 864 B; by what autograd keeps for backward: 736 B (--memory-model pytorch, the default).") in (
        footer(lecture))
    # and the torch oracle agrees on what is kept and on the inference peak
    graph = _residual()
    assert torch_kept_bytes(graph, 1) == 2 * t and torch_inference_peak(graph, 1) == (2 * t, "a")


def test_lenet5_totals_by_hand():
    from archcalc.passes import analyze
    from archcalc.render.format import binary_bytes as b
    from archcalc.render.table import footer

    for batch in (1, 3):
        analysis = analyze("lenet5", batch)
        totals, n = analysis.totals, batch
        conv1_in, conv1_out, pool1, conv2_out, pool2 = 3 * 32 * 32, 6 * 28 * 28, 6 * 14 * 14, 16 * 10 * 10, 16 * 5 * 5
        # conv1 keeps the input, relu1/relu2 their outputs (which the pools keep too), the pools int64 indices,
        # conv2 its input (pool1's output), fc1 pool2's output (through the flatten), relu3/relu4 their outputs
        # (the next linear layers keep the same tensors)
        kept = (conv1_in + conv1_out + conv2_out + pool1 + pool2 + 120 + 84) * 4 + (pool1 + pool2) * 8
        assert totals.saved_bytes == kept * n == torch_kept_bytes(analysis_graph("lenet5"), n)
        # the worst step is relu1's backward: the input and relu1's output still kept, the gradient of relu1's
        # output (from pool1) and the one relu1 writes for conv1's output
        peak = (conv1_in + conv1_out + 2 * conv1_out) * 4 * n
        assert (analysis.memory.activation_peak, analysis.memory.peak_layer) == (peak, "relu1")
        assert totals.transient_bytes == peak - kept * n
        params = 62_006
        assert totals.training_bytes == params * 4 * 2 + peak
        stored = conv1_in + conv1_out + pool1 + conv2_out + pool2 + 120 + 84 + 10
        assert totals.lecture_training_bytes == params * 4 * 2 + 2 * stored * 4 * n
        # inference: the input and conv1's output at conv1 (relu1 then runs in place)
        assert totals.inference_peak_bytes == (conv1_in + conv1_out) * 4 * n
        assert (totals.inference_peak_bytes, analysis.memory.inference_peak_layer) == torch_inference_peak(
            analysis_graph("lenet5"), n)
        line = next(line for line in footer(analysis) if line.startswith("Training memory"))
        assert (f"what backward keeps ({b(kept * n)}: the storages PyTorch's autograd saves, each once) + the largest "
                f"backward transient ({b(peak - kept * n)}, at relu1's backward step) = {b(params * 8 + peak, 2)}; the "
                f"lecture's x2 rule: {b(params * 8 + 2 * stored * 4 * n, 2)}") in line
    assert analyze("lenet5").totals.training_bytes == 564_784  # 551.55 KiB, the README's example


def analysis_graph(name):
    from archcalc.loading import load

    return load(name)


@pytest.mark.parametrize(("name", "batch"), [("resnet18", 1), ("googlenet", 8), ("vgg16", 1), ("resnet50", 32)])
def test_report_totals_are_the_memory_model_and_torch(name, batch):
    """The totals of the golden and README reports: what is kept and the inference peak against torch, the
    training total against the memory model's timeline (checked by hand above), the lecture's by its formula."""
    from archcalc.memory import memory
    from archcalc.passes import analyze

    graph = analysis_graph(name)
    for optimizer in ("sgd", "adam"):
        analysis = analyze(graph, batch, optimizer=optimizer)
        t, m = analysis.totals, memory(graph, batch, optimizer=optimizer)
        assert (t.saved_bytes, t.transient_bytes, t.training_bytes, t.inference_peak_bytes) == (
            m.saved_bytes, m.transient_bytes, m.training_bytes, m.inference_peak)
        assert t.lecture_training_bytes == m.lecture_training_bytes == 4 * (
            t.params + t.buffers + t.params * (1 + 2 * (optimizer == "adam")) + 2 * t.activations)
        assert (analysis.memory.peak_layer, analysis.memory.inference_peak_layer) == (m.peak_layer, m.inference_peak_layer)
    if batch <= 8:
        net = _meta_net(graph)
        assert t.saved_bytes == torch_kept_bytes(graph, batch, net)
        assert (t.inference_peak_bytes, analysis.memory.inference_peak_layer) == torch_inference_peak(graph, batch, net)


def test_report_training_columns_are_the_timeline():
    """`report --training`: per layer the bytes first kept there, and the live bytes after its forward and
    backward steps, as the timeline has them (by hand for the residual net: 128 B per tensor)."""
    import json

    from archcalc.memory import memory
    from tests.helpers import run_main

    spec = json.dumps(_residual().to_dict())
    code, out, _ = run_main("report", "-", "--training", "--format", "markdown", input=spec)
    assert code == 0
    table = out[out.index("| Layer | Type | Kept for backward"):]
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")]
                                             for line in table.splitlines()[2:] if line.startswith("|"))}
    assert rows["a"][:5] == ["conv", "128 B", "input", "256 B", "0 B"]
    assert rows["r"][:5] == ["relu", "128 B", "output", "256 B", "256 B"]
    assert rows["b"][:5] == ["conv", "0 B", "input (shared)", "384 B", "384 B"]
    assert rows["s"][:5] == ["add", "0 B", "-", "384 B", "512 B"]
    m = memory(_residual())
    for step in m.timeline:
        if step.layer != "input":
            column = 3 if step.phase == "forward" else 4
            assert rows[step.layer][column] == f"{step.live} B"


def test_memory_model_option_and_json_contract():
    import csv
    import io
    import json

    from archcalc.errors import SpecError
    from archcalc.passes import analyze
    from tests.helpers import run_main

    with pytest.raises(SpecError, match="memory model must be one of pytorch, lecture, got 'x2'"):
        analyze("lenet5", memory_model="x2")
    code, _, err = run_main("report", "lenet5", "--memory-model", "x2")
    assert code == 2 and "x2" in err
    for model in ("pytorch", "lecture"):
        code, out, _ = run_main("report", "lenet5", "--format", "json", "--memory-model", model, "--batch", "2")
        data = json.loads(out)
        t = analyze("lenet5", 2, memory_model=model).totals
        assert code == 0 and data["memory_model"] == model and data["totals"] == t.to_dict()
        assert data["totals"]["training_bytes"] == data["totals"][f"{model}_training_bytes"]
        assert {"saved_bytes", "transient_bytes", "inference_peak_bytes", "lecture_training_bytes"} <= set(data["totals"])
        code, out, _ = run_main("report", "lenet5", "--format", "csv", "--memory-model", model)
        assert code == 0 and len(list(csv.DictReader(io.StringIO(out)))) == 13
        code, out, _ = run_main("compare", "lenet5", "alexnet", "--format", "json", "--memory-model", model)
        assert code == 0 and [d["memory_model"] for d in json.loads(out)] == [model, model]
        code, out, _ = run_main("compare", "lenet5", "alexnet", "--memory-model", model)
        assert code == 0 and f"training memory by the {model} model" in out and "Kept for backward" in out
    code, _, err = run_main("report", "lenet5", "--training", "--format", "csv")
    assert code == 2 and "--training goes with --format table or markdown" in err
    code, _, err = run_main("report", "lenet5", "--training", "--memory-model", "lecture")
    assert code == 2 and "leave out --memory-model lecture" in err


def test_an_add_of_a_tensor_to_itself_runs_in_place():
    """add(c, c), c read by nothing else: the add may overwrite c (passes.stored_outputs says so), which the
    inference walk follows (it used to find no tensor to overwrite and fail)."""
    from archcalc.memory import memory
    from archcalc.spec import from_dict

    graph = from_dict({"name": "t", "input": [3, 4, 4], "layers": [
        {"type": "conv", "filters": 4, "kernel": 1, "name": "c"}, {"type": "add", "inputs": ["c", "c"], "name": "a"},
        {"type": "relu"}]})
    m = memory(graph)
    assert (m.inference_peak, m.inference_peak_layer) == (48 * 4 + 64 * 4, "c") == torch_inference_peak(graph, 1)
    assert [s.live for s in m.inference_timeline] == [192, 256, 256, 256]
    assert m.saved_bytes == 192 + 256 == torch_kept_bytes(graph, 1)


def test_vgg16_footer_keeps_the_lectures_figure_beside_the_default():
    """VGG16, whose table the lecture gives: its x2 rule from the lecture's own totals (138,357,544 params,
    15,237,608 forward values), beside what autograd keeps (checked against torch above)."""
    from tests.helpers import run_main

    lecture = (138_357_544 * 2 + 15_237_608 * 2) * 4  # params + gradients (sgd) + 2 x activations, float32
    assert lecture == 1_228_761_216
    code, out, _ = run_main("report", "vgg16")
    assert code == 0 and "the lecture's x2 rule: 1.14 GiB (--memory-model lecture)" in out
    assert "what backward keeps (69.9 MiB" in out and "= 1.10 GiB;" in out  # 73,254,912 B kept (torch's figure)
    code, out, _ = run_main("report", "vgg16", "--memory-model", "lecture")
    assert code == 0 and "2 x activations = 1.14 GiB; by what autograd keeps for backward: 1.10 GiB" in out
