"""Depth as papers count it, and input-to-output paths (archcalc.paths)."""

from __future__ import annotations

import json
import random
from fractions import Fraction
from math import comb

import pytest

from archcalc import zoo
from archcalc.errors import ArchcalcError
from archcalc.passes import infer_shapes
from archcalc.paths import depth, is_pooling, is_weighted, paths
from archcalc.spec import from_dict

# The papers' own counts of layers with weights (and GoogLeNet's "27 layers with pooling").
PAPER_DEPTH = {
    "alexnet": 8, "alexnet-grouped": 8,   # Krizhevsky et al. 2012: "eight learned layers"
    "vgg11": 11, "vgg13": 13, "vgg16": 16, "vgg19": 19,  # Simonyan & Zisserman 2014, Table 1 (A, B, D, E)
    "googlenet": 22,                      # Szegedy et al. 2014: "22 layers deep when counting only layers with parameters"
    "resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101, "resnet152": 152,  # He et al. 2015, Table 1
    "unet": 23,                           # Ronneberger et al. 2015: "in total the network has 23 convolutional layers"
    "densenet121": 121,                   # Huang et al. 2017
    "lenet5": 5,                          # LeCun et al. 1998: C1, C3, C5, F6, output (the zoo's linear layers)
}


def _analyse(model):
    graph = zoo.load(model) if isinstance(model, str) else model
    return graph, infer_shapes(graph)


@pytest.mark.parametrize("model", sorted(PAPER_DEPTH))
def test_depth_is_the_papers_count(model):
    assert depth(*_analyse(model)).weighted == PAPER_DEPTH[model]


def test_googlenet_with_pooling_is_27():
    # "The network is 22 layers deep when counting only layers with parameters (or 27 layers
    # if we also count pooling)": 4 max pools on the main line and the final average pool; the
    # pool-projection branch (pool, 1x1) is no longer than the 3x3 branch (1x1, 3x3).
    assert depth(*_analyse("googlenet")).with_pooling == 27


def test_vgg_with_pooling_adds_its_five_pools():
    for name, weighted in [("vgg11", 11), ("vgg13", 13), ("vgg16", 16), ("vgg19", 19)]:
        assert depth(*_analyse(name)).with_pooling == weighted + 5


def test_classification_by_role_not_type_name():
    graph, layers = _analyse(from_dict({"name": "t", "input": [3, 8, 8], "layers": [
        {"type": "conv", "name": "c", "filters": 4, "kernel": 3},
        {"type": "batchnorm", "name": "bn"},          # learned scale/shift, no kernel
        {"type": "prelu", "name": "act"},             # a learned slope, no kernel
        {"type": "relu", "name": "r"},
        {"type": "maxpool", "name": "p", "kernel": 2},
        {"type": "conv_transpose", "name": "up", "filters": 2, "kernel": 2, "stride": 2},
        {"type": "global_avgpool", "name": "g"},
        {"type": "flatten", "name": "f"},
        {"type": "linear", "name": "fc", "units": 3},
    ]}))
    weighted = [n.name for n in graph.nodes if is_weighted(n.type, layers[n.name])]
    pooling = [n.name for n in graph.nodes if is_pooling(n.type, layers[n.name])]
    assert weighted == ["c", "up", "fc"]
    assert pooling == ["p", "g"]
    assert depth(graph, layers).weighted == 3 and depth(graph, layers).with_pooling == 5


# ---- paths: brute force on small graphs against the DP ----

def _enumerate(graph, layers):
    """Every input-to-output path by depth-first search backwards from the output: list of lengths."""
    by_name = {n.name: n for n in graph.nodes}
    weight = {n.name: int(is_weighted(n.type, layers[n.name])) for n in graph.nodes}
    lengths = []

    def walk(name, length):
        length += weight[name]
        if name == graph.nodes[0].name:
            lengths.append(length)
            return
        for ref in by_name[name].inputs:  # each input slot is an edge
            walk(ref, length)

    walk(graph.nodes[-1].name, 0)
    return lengths


def _random_dag(seed):
    """A random DAG of 1x1 convs, relus and adds/concats over 4x4 maps of 2 channels."""
    rng = random.Random(seed)
    layers, names = [], ["input"]
    for i in range(rng.randint(1, 12)):
        kind = rng.choice(["conv", "relu", "add", "concat", "add"])
        name = f"n{i}"
        if kind in ("add", "concat") and len(names) >= 2:
            inputs = [rng.choice(names) for _ in range(rng.randint(2, 3))]
            if kind == "concat":
                layers.append({"type": "concat", "name": name, "inputs": inputs})
                layers.append({"type": "conv", "name": name + "c", "filters": 2, "kernel": 1, "inputs": [name]})
                names.append(name + "c")
                continue
            layers.append({"type": "add", "name": name, "inputs": inputs})
        elif kind == "conv":
            layers.append({"type": "conv", "name": name, "filters": 2, "kernel": 1, "inputs": [rng.choice(names)]})
        else:
            layers.append({"type": "relu", "name": name, "inputs": [rng.choice(names)]})
        names.append(name)
    # the output reads the last node and, sometimes, an earlier one
    last = [names[-1]] + ([rng.choice(names)] if rng.random() < 0.5 else [])
    layers.append({"type": "add", "name": "out", "inputs": last} if len(last) > 1 else
                  {"type": "relu", "name": "out", "inputs": last})
    return from_dict({"name": f"r{seed}", "input": [2, 4, 4], "layers": layers})


@pytest.mark.parametrize("seed", range(40))
def test_paths_equal_brute_force(seed):
    graph, layers = _analyse(_random_dag(seed))
    lengths = _enumerate(graph, layers)
    result = paths(graph, layers)
    assert result.count == len(lengths)
    expected = {}
    for length in lengths:
        expected[length] = expected.get(length, 0) + 1
    assert dict(result.lengths) == dict(sorted(expected.items()))
    assert result.mean == Fraction(sum(lengths), len(lengths))
    assert max(lengths) == depth(graph, layers).weighted


def test_paths_of_a_chain_and_of_a_diamond():
    chain, chain_layers = _analyse("vgg16")
    assert paths(chain, chain_layers).count == 1 and dict(paths(chain, chain_layers).lengths) == {16: 1}
    graph, layers = _analyse(from_dict({"name": "d", "input": [2, 4, 4], "layers": [
        {"type": "conv", "name": "a", "filters": 2, "kernel": 1},
        {"type": "conv", "name": "b", "filters": 2, "kernel": 1},
        {"type": "add", "name": "sum", "inputs": ["a", "b", "input"]},   # three edges in
        {"type": "add", "name": "twice", "inputs": ["sum", "sum"]},     # the same input twice: two edges
    ]}))
    # into sum: input->a->b (2 weighted), input->a (1), input (0); "twice" doubles each
    result = paths(graph, layers)
    assert result.count == 6
    assert dict(result.lengths) == {0: 2, 1: 2, 2: 2}
    assert result.mean == 1


def _poly_mul(p, q):
    out = {}
    for a, x in p.items():
        for b, y in q.items():
            out[a + b] = out.get(a + b, 0) + x * y
    return out


def test_resnet18_256_paths_binomial():
    # 8 residual blocks each double the paths (Veit et al. 2016): 2^8. Every path crosses the
    # stem conv and the fc (2 weighted layers). An identity block adds 2 (both convs) or 0 (the
    # skip); a downsampling block's skip is a 1x1 conv: 2 or 1. The distribution is the product
    # of the generating polynomials x^2 (1 + x^2)^5 (x + x^2)^3.
    graph, layers = _analyse("resnet18")
    result = paths(graph, layers)
    assert result.count == 2 ** 8 == 256
    expected = {2: 1}
    for _ in range(5):
        expected = _poly_mul(expected, {0: 1, 2: 1})
    for _ in range(3):
        expected = _poly_mul(expected, {1: 1, 2: 1})
    assert dict(result.lengths) == dict(sorted(expected.items()))
    assert result.mean == 2 + 5 * 1 + 3 * Fraction(3, 2)   # 11.5: each block adds its mean
    assert depth(graph, layers).weighted == max(result.lengths) == 18


def test_identity_blocks_give_a_binomial():
    # k identity blocks (two convs and a skip) between a stem conv and a head conv: C(k, j)
    # paths cross j blocks, each of length 2 + 2j (Veit et al. 2016's unraveled view).
    k = 8
    layers = [{"type": "conv", "name": "stem", "filters": 2, "kernel": 1}]
    previous = "stem"
    for i in range(k):
        layers += [{"type": "conv", "name": f"b{i}a", "filters": 2, "kernel": 3, "padding": 1, "inputs": [previous]},
                   {"type": "relu", "name": f"b{i}r"},
                   {"type": "conv", "name": f"b{i}b", "filters": 2, "kernel": 3, "padding": 1},
                   {"type": "add", "name": f"b{i}", "inputs": [f"b{i}b", previous]}]
        previous = f"b{i}"
    layers.append({"type": "conv", "name": "head", "filters": 2, "kernel": 1})
    graph, resolved = _analyse(from_dict({"name": "res", "input": [2, 4, 4], "layers": layers}))
    result = paths(graph, resolved)
    assert result.count == 2 ** k
    assert dict(result.lengths) == {2 + 2 * j: comb(k, j) for j in range(k + 1)}
    assert result.mean == 2 + k
    assert len(_enumerate(graph, resolved)) == 2 ** k


def test_resnet_path_counts_are_two_to_the_blocks():
    # ResNet-34: 3+4+6+3 = 16 blocks; ResNet-50: 16 bottlenecks; -101: 33; -152: 50
    for name, blocks in [("resnet34", 16), ("resnet50", 16), ("resnet101", 33), ("resnet152", 50)]:
        assert paths(*_analyse(name)).count == 2 ** blocks


def test_googlenet_4_to_the_9_paths():
    # Nine inception modules of four branches each, in series, and a single chain elsewhere
    # (the zoo model has no auxiliary classifiers: they are training-only side outputs, not on
    # an input-to-output path of the inference graph): 4^9 = 262,144 paths. Per module the
    # branches add 1 (1x1), 2 (1x1 reduce, 3x3), 2 (1x1 reduce, 5x5), 1 (pool, 1x1 projection)
    # weighted layers, on top of the 4 every path crosses (conv1, conv2 reduce, conv2, fc).
    graph, layers = _analyse("googlenet")
    result = paths(graph, layers)
    assert result.count == 4 ** 9 == 262_144
    expected = {4: 1}
    for _ in range(9):
        expected = _poly_mul(expected, {1: 2, 2: 2})
    assert dict(result.lengths) == dict(sorted(expected.items()))
    assert result.mean == 4 + 9 * Fraction(3, 2)


def test_densenet121_dense_layers_double_the_paths():
    # 6 + 12 + 24 + 16 = 58 dense layers, each concat([x, layer(x)]): x goes on
    # directly or through the layer's two convs, so 2^58 paths, C(58, j) of them through j
    # layers' convs, each crossing the 5 weighted layers all paths do (conv0, 3 transitions, fc).
    graph, layers = _analyse("densenet121")
    result = paths(graph, layers)
    assert result.count == 2 ** 58
    assert dict(result.lengths) == {5 + 2 * j: comb(58, j) for j in range(59)}
    assert len(result.lengths) <= depth(graph, layers).weighted + 1
    assert sum(result.lengths.values()) == result.count


# ---- the report: footer, JSON and --paths ----

def _cli(*args):
    from click.testing import CliRunner

    from archcalc.cli import cli

    return CliRunner().invoke(cli, list(args))


def test_footer_and_json_carry_the_depth():
    from archcalc.passes import analyze
    from archcalc.render.table import footer

    analysis = analyze("googlenet")
    assert ("Depth: 22 layers with weights (conv, transposed conv, linear) on the longest path, as the papers "
            "count; 27 with pooling.") in footer(analysis)
    data = analysis.to_dict()
    assert data["network_depth"] == {"weighted": 22, "with_pooling": 27}
    assert "paths" not in data
    assert json.loads(analysis.to_json()) == data
    assert json.loads(analysis.to_json(depth=1))["depth"] == 1   # --depth's folding level keeps its key


def test_report_paths_json():
    result = _cli("report", "resnet18", "--format", "json", "--paths")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["paths"]["count"] == 256
    assert sum(count for _, count in data["paths"]["lengths"]) == 256
    assert data["paths"]["mean"] == 11.5 and data["paths"]["mean_exact"] == "23/2"
    assert len(data["paths"]["lengths"]) <= data["network_depth"]["weighted"] + 1


def test_report_paths_table_and_markdown():
    table = _cli("report", "googlenet", "--paths")
    assert table.exit_code == 0, table.output
    assert "262,144 input-to-output paths; mean length 35/2 = 17.5 layers with weights" in table.output
    assert "Paths by length" in table.output
    markdown = _cli("report", "resnet18", "--paths", "--format", "markdown")
    assert markdown.exit_code == 0, markdown.output
    assert "| 11 | 40 | 15.62% |" in markdown.output   # 40 of 256 paths have 11 weighted layers
    assert "256 input-to-output paths; mean length 23/2 = 11.5" in markdown.output


def test_report_paths_refuses_csv(capsys):
    from archcalc.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["report", "resnet18", "--paths", "--format", "csv"])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        "error: --paths goes with --format table, markdown or json (CSV holds the layer rows only)"]


def test_paths_without_the_flag_are_not_computed():
    result = _cli("report", "resnet18", "--format", "json")
    assert "paths" not in json.loads(result.output)


def test_report_paths_refuses_a_count_too_long_to_write(tmp_path, capsys):
    # each layer adds its input to itself 10 times: 10^4100 paths, more digits than JSON can write
    from archcalc.cli import main

    layers = [{"type": "add", "name": f"a{i}", "inputs": [f"a{i - 1}" if i else "input"] * 10} for i in range(4100)]
    spec = tmp_path / "many.json"
    spec.write_text(json.dumps({"name": "many", "input": [1, 2, 2], "layers": layers}))
    graph, resolved = _analyse(from_dict(json.loads(spec.read_text())))
    assert paths(graph, resolved).count == 10 ** 4100   # exact, computed in bounded time
    for fmt in ("json", "table"):
        with pytest.raises(SystemExit) as exit_info:
            main(["report", str(spec), "--paths", "--format", fmt])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["error: model 'many': the path count would have about 4,101 digits, more than archcalc writes "
                       "out (at most 4,000); leave out --paths"]


def test_path_work_is_bounded(monkeypatch):
    # every block reads the input and the previous block through a conv: block i's table has
    # i + 1 lengths, so the DP's work grows as blocks^2; past the bound it stops with one line
    import archcalc.paths as paths_module

    layers, previous = [], "input"
    for i in range(60):
        layers += [{"type": "conv", "name": f"c{i}", "filters": 1, "kernel": 1, "inputs": [previous]},
                   {"type": "add", "name": f"b{i}", "inputs": [f"c{i}", "input"]}]
        previous = f"b{i}"
    graph, resolved = _analyse(from_dict({"name": "tangle", "input": [1, 2, 2], "layers": layers}))
    result = paths(graph, resolved)
    assert result.count == 61 and dict(result.lengths) == {k: 1 for k in range(61)}
    monkeypatch.setattr(paths_module, "MAX_PATH_WORK", 500)
    with pytest.raises(ArchcalcError, match=r"^model 'tangle': counting the paths by length would take more than 500 "
                       r"steps \(at .*\); the network is too entangled$"):
        paths(graph, resolved)


def test_list_shows_the_depth():
    result = _cli("list", "--format", "json")
    assert result.exit_code == 0, result.output
    models = {m["model"]: m for m in json.loads(result.output)}
    assert {name: models[name]["network_depth"]["weighted"] for name in PAPER_DEPTH} == PAPER_DEPTH
    assert models["googlenet"]["network_depth"]["with_pooling"] == 27
    table = _cli("list")
    header = next(line for line in table.output.splitlines() if "Model" in line)
    assert "Depth" in header
    googlenet = next(line for line in table.output.splitlines() if line.startswith("│ googlenet "))
    column = [cell.strip() for cell in header.split("┃")].index("Depth")
    assert [cell.strip() for cell in googlenet.split("│")][column] == "22"
