"""The cumulative figure (archcalc.cumulative): each layer's figure summed over it and its
ancestors, each ancestor once; hand-computed DAGs and a brute-force ancestor walk."""

from __future__ import annotations

from fractions import Fraction
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archcalc import cumulative as cumulative_module
from archcalc import zoo
from archcalc.cumulative import cumulative
from archcalc.errors import ArchcalcError
from archcalc.passes import analyze


def _graph(edges: dict[str, tuple[str, ...]]):
    """A graph-like object from name -> inputs, in insertion (topological) order."""
    return SimpleNamespace(nodes=[SimpleNamespace(name=name, inputs=inputs) for name, inputs in edges.items()])


def _brute(graph, figure):
    """Each node's ancestors by a backward walk from it, their figures summed once each."""
    by_name = {node.name: node for node in graph.nodes}
    out = {}
    for node in graph.nodes:
        seen, stack = set(), [node.name]
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack.extend(by_name[name].inputs)
        out[node.name] = sum(figure[name] for name in seen)
    return out


def test_chain_is_the_running_sum():
    graph = _graph({"input": (), "a": ("input",), "b": ("a",), "c": ("b",)})
    assert cumulative(graph, {"input": 0, "a": 5, "b": 7, "c": 11}) == {"input": 0, "a": 5, "b": 12, "c": 23}


def test_diamond_counts_the_shared_ancestor_once():
    # input -> a -> (b, c) -> d: d depends on a once, though both branches read it
    graph = _graph({"input": (), "a": ("input",), "b": ("a",), "c": ("a",), "d": ("b", "c")})
    figure = {"input": 0, "a": 100, "b": 10, "c": 1, "d": 1000}
    # by hand: d = 1000 + 10 + 1 + 100 (not 1000 + (110) + (101) = 1211, the sum of the inputs' totals)
    assert cumulative(graph, figure) == {"input": 0, "a": 100, "b": 110, "c": 101, "d": 1111}


def test_residual_block_and_a_layer_beside_the_merge():
    # x -> conv1 -> conv2 -> add(conv2, x) -> relu; and "side" reads conv1 only
    graph = _graph({"input": (), "x": ("input",), "conv1": ("x",), "conv2": ("conv1",), "side": ("conv1",),
                    "add": ("conv2", "x"), "relu": ("add",)})
    figure = {"input": 0, "x": 1, "conv1": 20, "conv2": 300, "side": 4000, "add": 50000, "relu": 600000}
    got = cumulative(graph, figure)
    assert got["add"] == 50000 + 300 + 20 + 1          # not the side branch, x once
    assert got["side"] == 4000 + 20 + 1
    assert got["relu"] == 600000 + 50321


def test_inception_module():
    # four branches from one input, concatenated: every branch layer once, the input once
    graph = _graph({"input": (), "stem": ("input",),
                    "b1": ("stem",),
                    "b2a": ("stem",), "b2b": ("b2a",),
                    "b3a": ("stem",), "b3b": ("b3a",),
                    "b4pool": ("stem",), "b4": ("b4pool",),
                    "concat": ("b1", "b2b", "b3b", "b4"),
                    "next": ("concat",)})
    figure = {"input": 0, "stem": 1, "b1": 2, "b2a": 4, "b2b": 8, "b3a": 16, "b3b": 32, "b4pool": 64, "b4": 128,
              "concat": 256, "next": 512}
    got = cumulative(graph, figure)
    assert got["concat"] == 511                          # 1 + 2 + ... + 256: each once
    assert got["next"] == 1023
    assert got["b3b"] == 1 + 16 + 32


def test_densenet_like_block():
    # each layer reads the concatenation of the block input and every earlier layer's output
    graph = _graph({"input": (), "x0": ("input",),
                    "c1": ("x0",), "cat1": ("x0", "c1"),
                    "c2": ("cat1",), "cat2": ("x0", "c1", "c2"),
                    "c3": ("cat2",), "cat3": ("x0", "c1", "c2", "c3"),
                    "trans": ("cat3",)})
    figure = {"input": 0, "x0": 1, "c1": 10, "cat1": 0, "c2": 100, "cat2": 0, "c3": 1000, "cat3": 0, "trans": 7}
    got = cumulative(graph, figure)
    # by hand: c3 depends on cat2 <- (x0, c1, c2), c2 <- cat1 <- (x0, c1): 1000 + 100 + 10 + 1
    assert got["c3"] == 1111
    assert got["cat3"] == 1111 and got["trans"] == 1118


def test_a_repeated_input_counts_once():
    graph = _graph({"input": (), "a": ("input",), "sq": ("a", "a")})
    assert cumulative(graph, {"input": 0, "a": 3, "sq": 4})["sq"] == 7


def test_the_input_figure_is_counted_and_fractions_stay_exact():
    graph = _graph({"input": (), "a": ("input",), "b": ("input",), "c": ("a", "b")})
    figure = {"input": Fraction(1, 3), "a": Fraction(1, 6), "b": Fraction(1, 2), "c": 0}
    assert cumulative(graph, figure)["c"] == Fraction(1)


def test_a_missing_figure_is_an_error_naming_the_layer():
    graph = _graph({"input": (), "a": ("input",), "b": ("a",)})
    with pytest.raises(ArchcalcError, match=r"no figure for layer 'a' \(and 1 more\)"):
        cumulative(graph, {"input": 0})


def test_the_work_bound_is_an_error(monkeypatch):
    # a long chain that every later layer also reads at its end: the sets must span it
    edges = {"input": (), "n0": ("input",)}
    for i in range(1, 300):
        edges[f"n{i}"] = (f"n{i - 1}",)
    edges["wide"] = (*(f"n{i}" for i in range(0, 300, 3)), "n299", "input")
    graph = _graph(edges)
    figure = dict.fromkeys(edges, 1)
    assert cumulative(graph, figure)["wide"] == 302  # the input, n0..n299, itself
    monkeypatch.setattr(cumulative_module, "MAX_WORK_BITS", 1000)
    with pytest.raises(ArchcalcError, match="cumulative figure: the ancestor sets of this graph need more than 1,000 bits"):
        cumulative(graph, figure)


def test_wide_concat_and_long_sets_take_the_numpy_paths():
    # 200 branches merged at once (the many-sets union) and a 150-layer chain per merge (many bits)
    edges = {"input": (), "stem": ("input",)}
    for b in range(200):
        edges[f"b{b}"] = ("stem",)
    edges["cat"] = tuple(f"b{b}" for b in range(200))
    for i in range(150):
        edges[f"l{i}"] = ("cat",) if i == 0 else (f"l{i - 1}",)
    edges["m"] = ("l149", "b7", "stem")
    graph = _graph(edges)
    figure = {name: i * i + 1 for i, name in enumerate(edges)}
    assert cumulative(graph, figure) == _brute(graph, figure)


@st.composite
def dags(draw):
    """Random DAGs in topological order: each node reads 1-4 earlier ones, near or far, or
    (rarely) none: a second source, which depends on nothing before it."""
    size = draw(st.integers(1, 70))
    edges = {"n0": ()}
    for i in range(1, size):
        reach = draw(st.sampled_from([1, 3, 12, i]))
        count = draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3, 4]))
        inputs = tuple(f"n{draw(st.integers(max(0, i - reach), i - 1))}" for _ in range(count))
        edges[f"n{i}"] = inputs
    figure = {name: draw(st.integers(0, 10**12)) for name in edges}
    return _graph(edges), figure


@settings(max_examples=150, derandomize=True, deadline=None)
@given(case=dags())
def test_equals_a_brute_force_ancestor_walk(case):
    graph, figure = case
    assert cumulative(graph, figure) == _brute(graph, figure)


@pytest.mark.parametrize("model", ["resnet50", "inception_v3", "densenet121", "googlenet", "unet"])
def test_zoo_models_match_the_brute_force_walk(model):
    graph = zoo.load(model)
    macs = {row.name: row.macs for row in analyze(graph).layers}
    got = cumulative(graph, macs)
    assert got == _brute(graph, macs)
    assert got[graph.nodes[-1].name] == sum(macs.values())  # the output depends on every layer


# ---- the per-layer figure: analysis, JSON, CSV, --depth, report --cumulative ----

def test_analysis_carries_it_for_the_batch_and_folds_to_the_block_output():
    analysis = analyze("resnet18", batch=3)
    graph = zoo.load("resnet18")
    per_sample = _brute(graph, {row.name: row.macs // 3 for row in analysis.layers})
    assert {row.name: row.cumulative_macs for row in analysis.layers} == {k: 3 * v for k, v in per_sample.items()}
    assert analysis.layers[-1].cumulative_macs == analysis.totals.macs
    # layer1's first add: conv1 + the two 3x3 convs of the block, not the stem twice
    add = analysis.layer("layer1.0.add")
    assert add.cumulative_macs == analysis.layer("conv1").macs + analysis.layer("layer1.0.conv1").macs \
        + analysis.layer("layer1.0.conv2").macs
    from archcalc.report import fold
    folded = {row.name: row for row in fold(analysis.layers, 1)}
    assert folded["layer2"].cumulative_macs == analysis.layer("layer2.1.relu2").cumulative_macs
    assert "cumulative_macs" not in analysis.totals.to_dict()  # no network total: the output's row has it


def test_json_csv_and_the_table_option():
    import csv
    import io
    import json

    from click.testing import CliRunner

    from archcalc.cli import cli

    runner = CliRunner()
    data = json.loads(runner.invoke(cli, ["report", "lenet5", "--format", "json"]).output)
    # a chain: the running sum of MACs (conv1 352,800; conv2 240,000; fc1 48,000; fc2 10,080; fc3 840)
    assert [layer["cumulative_macs"] for layer in data["layers"] if layer["macs"]] == \
        [352_800, 592_800, 640_800, 650_880, 651_720]
    rows = list(csv.DictReader(io.StringIO(runner.invoke(cli, ["report", "lenet5", "--format", "csv"]).output)))
    assert rows[-1]["cumulative_macs"] == "651720"
    plain = runner.invoke(cli, ["report", "lenet5"]).output
    shown = runner.invoke(cli, ["report", "lenet5", "--cumulative"]).output
    assert "Cumulative MACs" not in plain and "Cumulative MACs" in shown
    header = next(line for line in shown.splitlines() if "Cumulative MACs" in line)
    assert header.index("MACs") < header.index("Cumulative MACs") < header.index("Activations")
    fc3 = next(line for line in shown.splitlines() if line.startswith("│ fc3"))
    assert "651.7K" in fc3
    markdown = runner.invoke(cli, ["report", "lenet5", "--cumulative", "--format", "markdown"]).output
    assert "| Cumulative MACs |" in markdown and "| 651.7K |" in markdown


def test_under_a_convention_the_cumulative_count_sums_the_presets_counts():
    import json

    from click.testing import CliRunner

    from archcalc.cli import cli
    from archcalc.cumulative import under_convention

    analysis = analyze("resnet18", batch=2, convention="tf-profiler")
    expected = under_convention("resnet18", "tf-profiler", batch=2)
    assert {row.name: row.cumulative_count for row in analysis.layers} == expected
    assert analysis.layers[-1].cumulative_count == sum(row.convention_count for row in analysis.layers)
    # tf-profiler counts the stem's max pool (9 per output) where MACs count none
    assert analysis.layer("maxpool").cumulative_count == analysis.layer("conv1").convention_count + 9 * 64 * 56 * 56 * 2
    assert analysis.layer("maxpool").cumulative_macs == analysis.layer("conv1").macs
    runner = CliRunner()
    shown = runner.invoke(cli, ["report", "resnet18", "--convention", "tf-profiler", "--cumulative"]).output
    header = next(line for line in shown.splitlines() if "Cumulative" in line)
    assert "Cumulative tf-profiler flops" in header and "Cumulative MACs" not in header
    data = json.loads(runner.invoke(cli, ["report", "resnet18", "--convention", "darknet", "--format", "json"]).output)
    assert data["layers"][-1]["cumulative_count"] == data["convention"]["forward"]


def test_a_crop_depends_on_the_values_it_cuts_not_on_its_size_reference():
    # U-Net's crop reads (encoder output, decoder upconv) but only the first one's values reach it
    # (Crop.field_inputs = 1): exported to PyTorch it is a slice of the encoder output alone
    analysis = analyze("unet")
    graph = zoo.load("unet")
    crop = graph.node("dec4.crop")
    assert crop.inputs == ("enc4.convs.relu2", "dec4.upconv")
    assert analysis.layer("dec4.crop").cumulative_macs == analysis.layer("enc4.convs.relu2").cumulative_macs
    # the concat after it reads both: from there on the decoder's layers count
    concat = next(n for n in graph.nodes if n.type == "concat" and "dec4.crop" in n.inputs)
    macs = {row.name: row.macs for row in analysis.layers}
    assert analysis.layer(concat.name).cumulative_macs == _brute(graph, macs)[concat.name]
