"""Readable specs (archcalc.specwriter): short, and loading back to the very same graph.

Every check of identity loads the written spec with archcalc's own loader and compares the
nodes one by one (name, type, attributes, inputs, in order). The written spec with blocks is
also checked directly (``_structured``), so that the flat fallback of ``readable_spec`` cannot
hide a wrong block.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archcalc
from archcalc import zoo
from archcalc.errors import SpecError
from archcalc.graph import Graph
from archcalc.spec import from_dict, from_json
from archcalc.specwriter import LINE_WIDTH, _structured, dump_spec, flat_spec, readable_spec, structural_renaming


def flattened(graph: Graph) -> Graph:
    """The graph as an importer hands it over: the expanded spec, every layer flat (no scope)."""
    spec = graph.to_dict()
    for layer in spec["layers"]:
        layer.pop("scope", None)
    return from_dict(spec, graph.name)


def same_nodes(a: Graph, b: Graph) -> None:
    assert (a.name, a.input_shape, a.description) == (b.name, b.input_shape, b.description)
    assert len(a.nodes) == len(b.nodes)
    for x, y in zip(a.nodes, b.nodes):
        assert (x.name, x.type, dict(x.attrs), x.inputs) == (y.name, y.type, dict(y.attrs), y.inputs)


def round_trip(graph: Graph) -> dict:
    """readable_spec of the graph, checked to load back to it, as a dict and as JSON text; the
    spec with blocks, when one is written, must load back by itself (no fallback)."""
    structured = _structured(graph)
    if structured is not None:
        same_nodes(graph, from_dict(structured))
    spec = readable_spec(graph)
    same_nodes(graph, from_dict(spec))
    same_nodes(graph, from_json(dump_spec(spec)))
    same_nodes(graph, from_dict(flat_spec(graph)))
    return spec


def written(spec: dict) -> int:
    """Layers written: the top level's entries (layers and instances) and every block's layers."""
    return len(spec["layers"]) + sum(len(block["layers"]) for block in spec.get("blocks", {}).values())


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_model_round_trips_from_its_flat_graph(name):
    graph = flattened(archcalc.load(name))
    spec = round_trip(graph)
    assert written(spec) <= len(graph.nodes) - 1
    # the zoo's own specs (scopes kept) round-trip too
    round_trip(archcalc.load(name))


@pytest.mark.parametrize(("name", "ratio"), [("resnet50", 0.2), ("googlenet", 0.3), ("densenet121", 0.07)])
def test_repeated_structures_make_the_spec_much_shorter(name, ratio):
    # measured: resnet50 33 of 175 layers written (0.19), googlenet 38/143 (0.27), densenet121 27/427 (0.063)
    graph = flattened(archcalc.load(name))
    spec = round_trip(graph)
    assert written(spec) / (len(graph.nodes) - 1) <= ratio
    assert spec["blocks"]


def test_resnet50_stages_are_a_bottleneck_block_repeated_with_a_first_override():
    spec = readable_spec(flattened(archcalc.load("resnet50")))
    stages = [layer for layer in spec["layers"] if "block" in layer]
    assert [s["name"] for s in stages] == ["layer1", "layer2", "layer3", "layer4"]
    assert [s["repeat"] for s in stages] == [3, 4, 6, 3]
    unit, down = stages[0]["block"], stages[0]["first"]["block"]
    assert len(spec["blocks"][unit]["layers"]) == 10 and len(spec["blocks"][down]["layers"]) == 12
    assert all(s["block"] == unit and s["first"]["block"] == down for s in stages)
    # the downsampling unit's stride is an argument: 2 by default, 1 in layer1
    assert spec["blocks"][down]["args"]["stride"] == 2
    assert stages[0]["first"]["args"] == {"stride": 1}
    assert "args" not in stages[1]["first"]


def test_googlenet_inception_modules_share_one_block_with_their_widths_as_arguments():
    spec = readable_spec(flattened(archcalc.load("googlenet")))
    instances = [layer for layer in spec["layers"] if "block" in layer]
    assert len(instances) == 9 and {i["block"] for i in instances} == {"inception"}
    assert len([node for node in from_dict(spec).nodes if node.scope[:1] == ("inception3a",)]) == 14
    inception3a = instances[0]
    assert inception3a["name"] == "inception3a"
    # Szegedy et al. 2015, Table 1: inception (3a) is 64, 96, 128, 16, 32, 32
    assert sorted(inception3a["args"].values()) == sorted([64, 96, 128, 16, 32, 32])


def test_defaults_and_default_inputs_are_left_out():
    graph = from_dict({"name": "n", "input": [3, 8, 8], "layers": [
        {"type": "conv", "name": "c", "filters": 4, "kernel": 3, "stride": 1, "padding": 0, "bias": True},
        {"type": "relu", "name": "r", "inputs": ["c"]},
        {"type": "conv", "name": "d", "filters": 4, "kernel": 1, "bias": False, "inputs": ["c"]},
        {"type": "add", "name": "s", "inputs": ["r", "d"]},
    ]})
    spec = round_trip(graph)
    assert spec["layers"] == [
        {"type": "conv", "name": "c", "filters": 4, "kernel": 3},
        {"type": "relu", "name": "r"},
        {"type": "conv", "name": "d", "filters": 4, "kernel": 1, "bias": False, "inputs": ["c"]},
        {"type": "add", "name": "s", "inputs": ["r", "d"]},
    ]
    assert "blocks" not in spec


def torchvision_resnet_names() -> Graph:
    """A small ResNet written flat with torchvision's module paths (as the torch importer names
    layers): stem, layer1 of two basic blocks, layer2 whose first block downsamples."""
    layers = [{"type": "conv", "name": "conv1", "filters": 8, "kernel": 7, "stride": 2, "padding": 3, "bias": False},
              {"type": "batchnorm", "name": "bn1"}, {"type": "relu", "name": "relu"},
              {"type": "maxpool", "name": "maxpool", "kernel": 3, "stride": 2, "padding": 1}]
    previous = "maxpool"
    for stage, width in ((1, 8), (2, 16)):
        for unit in range(3):
            p = f"layer{stage}.{unit}"
            down = stage == 2 and unit == 0
            layers += [
                {"type": "conv", "name": f"{p}.conv1", "filters": width, "kernel": 3, "stride": 2 if down else 1, "padding": 1,
                 "bias": False, "inputs": [previous]},
                {"type": "batchnorm", "name": f"{p}.bn1"}, {"type": "relu", "name": f"{p}.relu"},
                {"type": "conv", "name": f"{p}.conv2", "filters": width, "kernel": 3, "padding": 1, "bias": False},
                {"type": "batchnorm", "name": f"{p}.bn2"}]
            shortcut = previous
            if down:
                layers += [{"type": "conv", "name": f"{p}.downsample.0", "filters": width, "kernel": 1, "stride": 2,
                            "bias": False, "inputs": [previous]},
                           {"type": "batchnorm", "name": f"{p}.downsample.1"}]
                shortcut = f"{p}.downsample.1"
            layers += [{"type": "add", "name": f"{p}.add", "inputs": [f"{p}.bn2", shortcut]},
                       {"type": "relu", "name": f"{p}.relu_1"}]
            previous = f"{p}.relu_1"
    layers += [{"type": "global_avgpool", "name": "avgpool"}, {"type": "flatten", "name": "flatten"},
               {"type": "linear", "name": "fc", "units": 10}]
    return from_dict({"name": "mini-resnet", "input": [3, 32, 32], "layers": layers})


def test_module_paths_become_blocks_with_repeat_and_names_are_kept():
    graph = torchvision_resnet_names()
    spec = round_trip(graph)
    stages = [layer for layer in spec["layers"] if "block" in layer]
    assert [(s["name"], s["repeat"]) for s in stages] == [("layer1", 3), ("layer2", 3)]
    assert "first" not in stages[0] and stages[1]["first"]["block"] != stages[1]["block"]
    # the unit's layers are named as torchvision's modules
    names = [layer["name"] for layer in spec["blocks"][stages[0]["block"]]["layers"]]
    assert names == ["conv1", "bn1", "relu", "conv2", "bn2", "add", "relu_1"]
    # loaded back, the layers carry the blocks' scopes
    loaded = from_dict(spec)
    assert [n.scope for n in loaded.nodes if n.name == "layer2.1.conv1"] == [("layer2", "1")]


def test_the_dsl_with_blocks_round_trips():
    net = archcalc.Net("dsl", input=(3, 16, 16))
    for index, width in enumerate((4, 4, 8, 8)):
        with net.block(f"features.{index}"):
            net.conv(width, 3, padding=1)
            net.relu()
    net.flatten()
    net.linear(10)
    graph = flattened(archcalc.load(net))
    spec = round_trip(graph)
    assert spec["layers"][0] == {"block": spec["layers"][0]["block"], "name": "features", "repeat": 4,
                                 "args": {"filters": 4}, "at": {"2": {"args": {"filters": 8}}},
                                 "last": {"args": {"filters": 8}}} or len(spec["layers"]) <= 4


def test_blocks_nest_conv_units_inside_modules():
    # inception_v3's conv-batchnorm-relu units (torchvision's BasicConv2d) inside its modules
    spec = round_trip(flattened(archcalc.load("inception_v3")))
    unit = next(name for name, block in spec["blocks"].items()
                if [layer.get("type") for layer in block["layers"]] == ["conv", "batchnorm", "relu"])
    assert list(spec["blocks"])[0] == unit  # defined before the blocks that use it
    modules = [block for block in spec["blocks"].values() if any(layer.get("block") == unit for layer in block["layers"])]
    assert len(modules) == 2
    mixed_5b = next(layer for layer in spec["layers"] if layer.get("name") == "Mixed_5b")
    assert [layer.get("name") for layer in spec["blocks"][mixed_5b["block"]]["layers"]][:2] == ["branch1x1", "branch5x5_1"]
    # the module's concat reads its branches by their instance names
    assert spec["blocks"][mixed_5b["block"]]["layers"][-1]["inputs"] == ["branch1x1", "branch5x5_2", "branch3x3dbl_3", "branch_pool"]
    # measured: 82 layers and instances written for 314 layers
    assert written(spec) <= 82


def test_names_without_dots_stay_flat():
    # ONNX node names and Caffe layer names: the spec's blocks could only name layers "instance.layer"
    layers = []
    for index in range(6):
        layers += [{"type": "conv", "name": f"Conv_{2 * index}", "filters": 4, "kernel": 3, "padding": 1},
                   {"type": "relu", "name": f"Relu_{2 * index + 1}"}]
    graph = from_dict({"name": "onnx-like", "input": [4, 8, 8], "layers": layers})
    spec = round_trip(graph)
    assert "blocks" not in spec
    assert [layer["name"] for layer in spec["layers"]] == [layer["name"] for layer in layers]


@pytest.mark.parametrize("case", ["prefix_is_a_layer", "local_input", "dollar", "graph_input_inside", "shadowed",
                                  "prefix_twice", "entry_elsewhere"])
def test_names_blocks_cannot_reproduce_are_kept(case):
    """Structures a block cannot write with the same names and inputs stay flat, or are written
    another way; the graph is always the same."""
    layers = []
    for unit in range(3):
        p = f"u.{unit}"
        layers += [{"type": "conv", "name": f"{p}.conv", "filters": 4, "kernel": 1},
                   {"type": "relu", "name": f"{p}.input" if case == "local_input" else f"{p}.relu"}]
        if case == "dollar":
            layers[-1]["name"] = f"{p}.$relu"
        if case == "graph_input_inside":
            layers.append({"type": "add", "name": f"{p}.add", "inputs": [layers[-1]["name"], "input"]})
        if case == "shadowed":  # reads the top-level "conv" from inside, where "conv" is a local name
            layers.append({"type": "add", "name": f"{p}.add", "inputs": [layers[-1]["name"], "conv"]})
        if case == "prefix_twice" and unit == 1:
            layers.append({"type": "relu", "name": "between"})
    if case == "prefix_twice":
        layers.append({"type": "relu", "name": "u.1.again"})
    if case == "prefix_is_a_layer":
        layers.append({"type": "relu", "name": "u.1"})
    if case == "shadowed":
        layers.insert(0, {"type": "conv", "name": "conv", "filters": 4, "kernel": 1})
    if case == "entry_elsewhere":  # the second unit reads the input, not the first unit
        layers[2]["inputs"] = ["input"]
    graph = from_dict({"name": case, "input": [4, 8, 8], "layers": layers})
    round_trip(graph)


def test_onnx_node_names_keep_their_slashes_and_share_blocks_where_their_dots_allow():
    # torch.onnx's node names: "/layer2/layer2.0/conv1/Conv"; the text before the first dot
    # ("/layer2/layer2") names each stage, so stages equal in structure share a block
    layers = [{"type": "conv", "name": "/conv1/Conv", "filters": 4, "kernel": 3, "padding": 1}]
    previous = "/conv1/Conv"
    for stage, width in ((2, 8), (3, 16), (4, 32)):
        for unit in range(2):
            p = f"/layer{stage}/layer{stage}.{unit}"
            layers += [{"type": "conv", "name": f"{p}/conv1/Conv", "filters": width, "kernel": 3, "padding": 1, "inputs": [previous]},
                       {"type": "relu", "name": f"{p}/relu/Relu"},
                       {"type": "add", "name": f"{p}/Add", "inputs": [f"{p}/relu/Relu", previous]}]
            previous = f"{p}/Add"
    graph = from_dict({"name": "onnx", "input": [8, 8, 8], "layers": layers})
    spec = round_trip(graph)
    assert list(spec["blocks"]) == ["layer"]
    assert [layer.get("name") for layer in spec["layers"][1:]] == ["/layer2/layer2", "/layer3/layer3", "/layer4/layer4"]
    assert spec["blocks"]["layer"]["layers"][0]["name"] == "0/conv1/Conv"


def test_a_wrong_spec_with_blocks_falls_back_to_the_flat_spec(monkeypatch):
    import archcalc.specwriter as specwriter

    graph = flattened(archcalc.load("resnet18"))
    wrong = specwriter._structured(graph)
    wrong["blocks"][next(iter(wrong["blocks"]))]["layers"][0]["kernel"] = 5
    monkeypatch.setattr(specwriter, "_structured", lambda graph, nest=True: wrong)
    assert readable_spec(graph) == flat_spec(graph)


def test_a_nested_instance_never_shadows_a_layer_read_from_outside():
    # each unit nests a group named "b" and reads the top-level layer "b": inside the unit's
    # block, an instance named "b" would shadow it, so the group stays flat
    layers = [{"type": "conv", "name": "b", "filters": 4, "kernel": 1}, {"type": "relu", "name": "pre"}]
    for unit in range(3):
        p = f"m.{unit}"
        layers += [{"type": "conv", "name": f"{p}.b.conv", "filters": 4, "kernel": 1},
                   {"type": "relu", "name": f"{p}.b.relu"},
                   {"type": "add", "name": f"{p}.add", "inputs": [f"{p}.b.relu", "b"]}]
    spec = round_trip(from_dict({"name": "shadow", "input": [4, 8, 8], "layers": layers}))
    assert spec["layers"][-1]["repeat"] == 3


def test_external_inputs_become_arguments():
    # a DenseNet-like chain where each unit also reads the stem: the stem's name is an argument
    layers = [{"type": "conv", "name": "stem", "filters": 4, "kernel": 1}, {"type": "relu", "name": "pre"}]
    for unit in range(4):
        layers += [{"type": "conv", "name": f"d.{unit}.conv", "filters": 4, "kernel": 3, "padding": 1},
                   {"type": "concat", "name": f"d.{unit}.cat", "inputs": [f"d.{unit}.conv", "stem"]},
                   {"type": "conv", "name": f"d.{unit}.proj", "filters": 4, "kernel": 1}]
    graph = from_dict({"name": "ext", "input": [4, 8, 8], "layers": layers})
    spec = round_trip(graph)
    (block,) = spec["blocks"].values()
    assert block["layers"][1]["inputs"] == ["conv", "$input2"]
    assert spec["layers"][2]["repeat"] == 4 and spec["layers"][2]["args"] == {"input2": "stem"}


def test_units_that_start_by_merging_earlier_features_keep_the_merge_flat():
    # torchvision's DenseNet as traced: each dense layer concatenates every earlier feature map
    # (a concat of 1, 2, 3... inputs), then BN-ReLU-conv-BN-ReLU-conv: the concat stays flat
    layers = [{"type": "conv", "name": "features.conv0", "filters": 8, "kernel": 3, "padding": 1}]
    features = ["features.conv0"]
    for index in range(1, 6):
        p = f"features.denseblock1.denselayer{index}"
        if index > 1:
            layers.append({"type": "concat", "name": f"{p}.cat", "inputs": list(features)})
        layers += [{"type": "batchnorm", "name": f"{p}.norm1"}, {"type": "relu", "name": f"{p}.relu1"},
                   {"type": "conv", "name": f"{p}.conv1", "filters": 16, "kernel": 1, "bias": False},
                   {"type": "batchnorm", "name": f"{p}.norm2"}, {"type": "relu", "name": f"{p}.relu2"},
                   {"type": "conv", "name": f"{p}.conv2", "filters": 4, "kernel": 3, "padding": 1, "bias": False}]
        features.append(f"{p}.conv2")
    graph = from_dict({"name": "dense", "input": [3, 8, 8], "layers": layers})
    spec = round_trip(graph)
    (block,) = spec["blocks"].values()
    assert [layer["name"] for layer in block["layers"]] == ["norm1", "relu1", "conv1", "norm2", "relu2", "conv2"]
    kinds = [layer.get("type", "instance") for layer in spec["layers"]]
    assert kinds == ["conv", "instance"] + ["concat", "instance"] * 4


def test_dump_spec_writes_one_layer_per_line_where_it_fits():
    graph = flattened(archcalc.load("resnet50"))
    text = dump_spec(graph)
    assert text == dump_spec(readable_spec(graph))
    same_nodes(graph, from_json(text))
    spec = json.loads(text)
    lines = [line.rstrip(",") for line in text.splitlines()]
    for layer in spec["layers"]:
        line = json.dumps(layer, separators=(", ", ": "))
        if len(line) <= LINE_WIDTH - 4:
            assert "    " + line in lines
    # only a string longer than a line (the description) is longer than a line
    assert max(len(line) for line in text.splitlines() if '"description"' not in line) <= LINE_WIDTH + 4
    # a layer too long for one line is broken over lines, and still loads
    wide = from_dict({"name": "wide", "input": [4, 8, 8], "layers": [
        *({"type": "relu", "name": f"a_rather_long_layer_name_{i}", "inputs": ["input"]} for i in range(12)),
        {"type": "concat", "name": "cat", "inputs": [f"a_rather_long_layer_name_{i}" for i in range(12)]}]})
    text = dump_spec(wide)
    assert max(len(line) for line in text.splitlines()) <= LINE_WIDTH
    same_nodes(wide, from_json(text))


def test_archcalc_import_writes_the_readable_spec(tmp_path):
    from click.testing import CliRunner

    from archcalc.cli import cli

    target = tmp_path / "resnet50.json"
    result = CliRunner().invoke(cli, ["import", "resnet50", "-o", str(target)])
    assert result.exit_code == 0, result.output
    text = target.read_text(encoding="utf-8")
    assert text == dump_spec(archcalc.load("resnet50"))
    same_nodes(archcalc.load("resnet50"), archcalc.load(str(target)))


def test_readable_spec_is_deterministic_and_blocks_false_is_flat():
    graph = flattened(archcalc.load("densenet121"))
    assert readable_spec(graph) == readable_spec(graph)
    assert readable_spec(graph, blocks=False) == flat_spec(graph)
    assert "blocks" not in flat_spec(graph)


def test_a_100k_layer_chain_is_written_in_time_comparable_to_loading_it():
    layers = []
    for index in range(50_000):
        layers += [{"type": "conv", "name": f"conv{index}", "filters": 4, "kernel": 3, "padding": 1},
                   {"type": "relu", "name": f"relu{index}"}]
    spec = {"name": "chain", "input": [4, 8, 8], "layers": layers}
    start = time.perf_counter()
    graph = from_dict(spec)
    load = time.perf_counter() - start
    start = time.perf_counter()
    written_spec = readable_spec(graph)
    write = time.perf_counter() - start
    assert len(written_spec["layers"]) == 100_000
    # measured 0.15-0.3x from_dict (benchmarks/specwriter.py); bounded by a loose factor on a shared machine
    assert write <= 2 * load + 1.0


def test_a_chain_of_dotted_units_becomes_one_repeat_in_time_comparable_to_loading_it():
    layers = []
    for index in range(10_000):
        layers += [{"type": "conv", "name": f"b.{index}.conv", "filters": 4, "kernel": 3, "padding": 1},
                   {"type": "relu", "name": f"b.{index}.relu"}]
    spec = {"name": "chain", "input": [4, 8, 8], "layers": layers}
    start = time.perf_counter()
    graph = from_dict(spec)
    load = time.perf_counter() - start
    start = time.perf_counter()
    written_spec = readable_spec(graph)
    write = time.perf_counter() - start
    assert written_spec["layers"] == [{"block": "b", "name": "b", "repeat": 10_000}]
    # measured 1.5-2.1x from_dict (the check that the spec loads back is one from_dict)
    assert write <= 5 * load + 1.0


# --- random graphs ----------------------------------------------------------------------------

PARTS = ["a", "b", "0", "1", "2", "conv", "input", "$x", "layer1", "/x/Conv", "üb"]
OPS = ["conv", "relu", "add", "concat", "maxpool", "dropout", "slice", "batchnorm"]


def random_layer(draw, kind: str, name: str, inputs: list[str]) -> dict:
    layer = {"type": kind, "name": name, "inputs": inputs}
    if kind == "conv":
        layer.update(filters=draw(st.sampled_from([2, 4])), kernel=draw(st.sampled_from([1, 3])),
                     stride=draw(st.sampled_from([1, 2])), bias=draw(st.booleans()))
    elif kind == "maxpool":
        layer.update(kernel=2, stride=draw(st.sampled_from([None, 1, 2])))
    elif kind == "dropout":
        layer.update(p=draw(st.sampled_from([0.5, 0.25, 0.0])))
    elif kind == "slice":
        layer.update(dim=1, start=draw(st.sampled_from([None, 0, 1])), stop=draw(st.sampled_from([None, 2])))
    return layer


@st.composite
def flat_graphs(draw):
    """Random valid graphs: dotted names from a few parts (some a block cannot reproduce),
    random wiring to earlier layers."""
    names: list[str] = []
    layers = []
    for index in range(draw(st.integers(1, 24))):
        parts = draw(st.lists(st.sampled_from(PARTS), min_size=1, max_size=3))
        name = ".".join(parts)
        if name in names or name == "input":
            name = f"n{index}"
        kind = draw(st.sampled_from(OPS))
        earlier = ["input", *names]
        if kind in ("add", "concat"):
            inputs = draw(st.lists(st.sampled_from(earlier), min_size=2, max_size=3))
        else:
            inputs = [draw(st.sampled_from(earlier))] if draw(st.booleans()) else [earlier[-1]]
        layers.append(random_layer(draw, kind, name, inputs))
        names.append(name)
    return from_dict({"name": "random", "input": [4, 8, 8], "layers": layers})


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(flat_graphs())
def test_random_flat_graphs_round_trip(graph):
    round_trip(graph)


@st.composite
def block_specs(draw):
    """Random specs with blocks (repeats, overrides, arguments, reads from outside), expanded and
    flattened as an importer would give them."""
    blocks = {}
    for block_name in ("p", "q"):
        body = []
        locals_: list[str] = []
        for index in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["conv", "relu", "add", "concat", "batchnorm"]))
            name = draw(st.sampled_from(["c", "r", "x.y", "0", "1", f"l{index}"]))
            if name in locals_:
                name = f"l{index}"
            earlier = ["input", *locals_]
            if kind in ("add", "concat"):
                refs = draw(st.lists(st.sampled_from([*earlier, "$skip"]), min_size=2, max_size=3))
            else:
                refs = [earlier[-1]]
            layer = {"type": kind, "name": name, "inputs": refs}
            if kind == "conv":
                layer.update(filters=draw(st.sampled_from(["$f", 4])), kernel=1, stride=draw(st.sampled_from(["$s", 1])))
            body.append(layer)
            locals_.append(name)
            if block_name == "p" and draw(st.booleans()):  # a block inside the block
                inner = draw(st.sampled_from(["u", "v.w", "0", "1", "c2"]))
                if inner not in locals_:
                    body.append({"block": "q", "name": inner, "args": {"f": draw(st.sampled_from(["$f", 2]))}})
                    locals_.append(inner)
        blocks[block_name] = {"args": {"f": 4, "s": 1, "skip": "stem"}, "layers": body}
    layers = [{"type": "conv", "name": "stem", "filters": 4, "kernel": 1}]
    for index in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            layers.append({"type": "relu", "name": f"flat{index}"})
        instance = {"block": draw(st.sampled_from(["p", "q"])), "name": draw(st.sampled_from(["s", "m.0", "layer1", "f"])) + str(index),
                    "repeat": draw(st.integers(1, 4)), "args": {"f": draw(st.sampled_from([2, 4, 8])), "s": draw(st.sampled_from([1, 2]))}}
        if draw(st.booleans()):
            instance["first"] = {"block": draw(st.sampled_from(["p", "q"])), "args": {"f": 16}}
        if instance["repeat"] > 2 and draw(st.booleans()):
            instance["at"] = {"1": {"args": {"s": 2}}}
        layers.append(instance)
    try:
        graph = from_dict({"name": "blocks", "input": [4, 8, 8], "blocks": blocks, "layers": layers})
    except SpecError:  # e.g. a name used twice after expansion: not a graph
        return None
    return graph


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(block_specs())
def test_random_block_structured_graphs_round_trip_flattened(graph):
    if graph is None:
        return
    round_trip(graph)
    round_trip(flattened(graph))


# --- opt-in renaming: structural detection for names without dots ------------------------------


def same_but_renamed(graph: Graph, spec: dict, mapping: dict) -> None:
    """The spec loads to the graph's nodes with the renamed layers' names (and inputs) mapped."""
    loaded = from_dict(spec)
    assert len(loaded.nodes) == len(graph.nodes)
    for x, y in zip(graph.nodes, loaded.nodes):
        assert (mapping.get(x.name, x.name), x.type, dict(x.attrs), tuple(mapping.get(r, r) for r in x.inputs)) == \
            (y.name, y.type, dict(y.attrs), y.inputs)


def undotted(graph: Graph) -> Graph:
    """The graph with every layer renamed n0, n1...: names no block can reproduce."""
    spec = graph.to_dict()
    names = {layer["name"]: f"n{index}" for index, layer in enumerate(spec["layers"])}
    for layer in spec["layers"]:
        layer.pop("scope", None)
        layer["name"] = names[layer["name"]]
        layer["inputs"] = [names.get(ref, ref) for ref in layer["inputs"]]
    return from_dict(spec, graph.name)


def test_rename_finds_repeated_runs_among_names_without_dots():
    layers = []
    for index in range(6):
        layers += [{"type": "conv", "name": f"Conv_{2 * index}", "filters": 4, "kernel": 3, "padding": 1},
                   {"type": "relu", "name": f"Relu_{2 * index + 1}"}]
    graph = from_dict({"name": "onnx-like", "input": [4, 8, 8], "layers": layers})
    mapping = structural_renaming(graph)
    assert mapping["Conv_0"] == "stage1.0.conv1" and mapping["Relu_11"] == "stage1.5.relu1"
    spec = readable_spec(graph, rename=True)
    assert spec["layers"] == [{"block": "stage", "name": "stage1", "repeat": 6}]
    same_but_renamed(graph, spec, mapping)


@pytest.mark.parametrize(("name", "entries"), [("resnet50", 27), ("googlenet", 21), ("densenet121", 25), ("vgg16", 13)])
def test_rename_makes_blocks_of_zoo_models_whose_names_were_stripped(name, entries):
    # measured: resnet50 27 top-level entries (of 175 layers), googlenet 21 (143), densenet121 25 (427), vgg16 13 (39)
    graph = undotted(archcalc.load(name))
    assert "blocks" not in readable_spec(graph)
    mapping = structural_renaming(graph)
    spec = readable_spec(graph, rename=True)
    same_but_renamed(graph, spec, mapping)
    assert spec["blocks"] and len(spec["layers"]) <= entries


def test_rename_leaves_dotted_names_alone():
    graph = flattened(archcalc.load("resnet50"))
    assert structural_renaming(graph) == {}
    assert readable_spec(graph, rename=True) == readable_spec(graph)


def test_rename_of_a_100k_layer_chain_is_bounded():
    layers = []
    for index in range(50_000):
        layers += [{"type": "conv", "name": f"Conv_{index}", "filters": 4, "kernel": 3, "padding": 1},
                   {"type": "relu", "name": f"Relu_{index}"}]
    graph = from_dict({"name": "chain", "input": [4, 8, 8], "layers": layers})
    start = time.perf_counter()
    mapping = structural_renaming(graph)
    seconds = time.perf_counter() - start
    assert len(mapping) == 100_000 and mapping["Relu_49999"] == "stage1.49999.relu1"
    assert seconds < 60  # O(n * MAX_PERIOD) key compares, in C: measured 2.4 s (0.35x its from_dict) on a loaded machine


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(flat_graphs())
def test_random_graphs_round_trip_renamed(graph):
    mapping = structural_renaming(graph)
    same_but_renamed(graph, readable_spec(graph, rename=True), mapping)
