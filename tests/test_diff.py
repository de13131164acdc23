"""archcalc diff: two networks aligned layer by layer, or one network under two conventions.

The figures are checked against archcalc.analyze and conventions.count run on their own (and
hand arithmetic), the alignment rules on small hand-built specs, and every output format parses.
"""

from __future__ import annotations

import csv
import io
import json
import math
from fractions import Fraction

import pytest

import archcalc
from archcalc import conventions
from archcalc.conventions import Convention, Rule
from archcalc.diff import align, diff_analyses, diff_conventions, diff_models
from archcalc.spec import from_dict
from tests.helpers import run_main

run = run_main


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch):
    """Output as to a pipe with no COLUMNS, whatever the shell running the tests exports."""
    for name in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


def spec(*layers, name="net", input_shape=(3, 8, 8)):
    """A chain of layers as a graph: each layer a dict (type, name and attributes)."""
    return from_dict({"name": name, "input": list(input_shape), "layers": list(layers)})


CONV1 = {"name": "conv1", "type": "conv", "filters": 4, "kernel": 3, "padding": 1}
RELU1 = {"name": "relu1", "type": "relu"}
CONV2 = {"name": "conv2", "type": "conv", "filters": 8, "kernel": 3}
POOL = {"name": "pool", "type": "maxpool", "kernel": 2}
BN = {"name": "bn", "type": "batchnorm"}


def rows_by(diff):
    """(how, A's name, B's name, differs) per row, every row."""
    return [(r.aligned, r.a.name if r.a else None, r.b.name if r.b else None, r.differs) for r in diff.rows]


# -- alignment -------------------------------------------------------------------------------------

def test_identical_networks_have_no_differing_row():
    d = diff_models("lenet5", "lenet5")
    assert d.shown() == () and all(r.aligned == "name" and not r.differs for r in d.rows)
    assert len(d.rows) == len(archcalc.analyze("lenet5").layers)
    assert all(t.a == t.b and t.difference == 0 for t in d.totals())


def test_a_renamed_layer_is_aligned_by_position():
    a = spec(CONV1, RELU1, CONV2)
    b = spec(CONV1, {"name": "act", "type": "relu"}, CONV2)
    d = diff_models(a, b)
    assert rows_by(d) == [("name", "input", "input", ()), ("name", "conv1", "conv1", ()),
                          ("position", "relu1", "act", ("name",)), ("name", "conv2", "conv2", ())]
    # conv2's input is relu1 in A, act in B: aligned with each other, so its inputs do not differ
    assert [r.name for r in d.shown()] == ["relu1 -> act"]


def test_an_inserted_layer_is_added_and_its_reader_s_inputs_differ():
    a = spec(CONV1, RELU1, CONV2)
    b = spec(CONV1, BN, RELU1, CONV2)
    d = diff_models(a, b)
    assert rows_by(d) == [("name", "input", "input", ()), ("name", "conv1", "conv1", ()),
                          ("added", None, "bn", d.rows[2].differs), ("name", "relu1", "relu1", ("inputs",)),
                          ("name", "conv2", "conv2", ())]
    added = d.rows[2]
    assert added.b.type == "batchnorm" and "type" in added.differs and "params" in added.differs
    # batchnorm on 4 channels: a scale and a shift each (8 params), 2 running statistics (8 buffers)
    assert added.difference("params") == 8 and added.difference("buffers") == 8
    assert d.counts() == {"name": 4, "position": 0, "removed": 0, "added": 1, "differ": 1, "equal": 3}


def test_a_removed_layer_stays_where_it_was():
    a = spec(CONV1, POOL, RELU1, CONV2)
    b = spec(CONV1, RELU1, CONV2, input_shape=(3, 8, 8))
    d = diff_models(a, b)
    assert [(how, x, y) for how, x, y, _ in rows_by(d)] == [
        ("name", "input", "input"), ("name", "conv1", "conv1"), ("removed", "pool", None), ("name", "relu1", "relu1"),
        ("name", "conv2", "conv2")]
    removed = d.rows[2]
    assert removed.difference("activations") == -4 * 4 * 4  # the pool's output, 4x4x4, only in A
    relu1 = d.rows[3]
    assert relu1.differs == ("inputs", "output_shape", "other_ops", "activations", "activation_bytes")
    # conv2 (3x3, no padding): 8 filters x 4x3x3 taps at 2x2 positions in A (after the pool), 6x6 in B
    conv2 = d.rows[4]
    assert conv2.a.macs == 8 * 36 * 2 * 2 and conv2.b.macs == 8 * 36 * 6 * 6
    assert conv2.difference("macs") == 8 * 36 * (36 - 4)


def test_same_name_different_type_is_aligned_by_name_and_differs_in_type():
    a = spec(CONV1, {"name": "x", "type": "relu"}, CONV2)
    b = spec(CONV1, {"name": "x", "type": "maxpool", "kernel": 1}, CONV2)
    d = diff_models(a, b)
    row = d.rows[2]
    assert (row.aligned, row.name, row.differs[:1]) == ("name", "x", ("type",))
    assert (row.a.type, row.b.type) == ("relu", "maxpool")


def test_same_type_different_attributes_differs_in_type_and_figures():
    a = spec(CONV1, RELU1, CONV2)
    b = spec(CONV1, RELU1, {**CONV2, "filters": 16})
    row = diff_models(a, b).rows[-1]
    assert row.differs[:1] == ("type",) and "params" in row.differs and "output_shape" in row.differs
    assert row.difference("params") == (16 - 8) * (4 * 9 + 1)


def test_position_step_pairs_alike_layers_first_within_a_stretch():
    # between conv1 and conv2 (name-aligned), A has [r1 relu], B has [b1 batchnorm, r2 relu]:
    # the relus pair (same kind), the batchnorm is added
    pairs = align([("input", "i"), ("conv1", "conv"), ("r1", "relu"), ("conv2", "conv")],
                  [("input", "i"), ("conv1", "conv"), ("b1", "batchnorm"), ("r2", "relu"), ("conv2", "conv")])
    assert pairs == [(0, 0, "name"), (1, 1, "name"), (None, 2, "added"), (2, 3, "position"), (3, 4, "name")]


def test_position_step_stays_within_its_stretch():
    # A's left-over x sits after c1, B's y after c2: different stretches, so never paired
    pairs = align([("c1", "t"), ("x", "t"), ("c2", "t")], [("c1", "t"), ("c2", "t"), ("y", "t")])
    assert pairs == [(0, 0, "name"), (1, None, "removed"), (2, 1, "name"), (None, 2, "added")]


def test_position_step_pairs_in_order_when_kinds_differ():
    pairs = align([("a1", "p"), ("a2", "q")], [("b1", "r"), ("b2", "s"), ("b3", "t")])
    assert pairs == [(0, 0, "position"), (1, 1, "position"), (None, 2, "added")]


def test_crossing_name_matches_and_removed_layers_keep_every_layer_once():
    a = [("x", "t"), ("y", "t"), ("gone", "u"), ("z", "t")]
    b = [("y", "t"), ("x", "t"), ("new", "v"), ("new2", "v")]
    pairs = align(a, b)
    assert sorted(i for i, _, _ in pairs if i is not None) == [0, 1, 2, 3]
    assert sorted(j for _, j, _ in pairs if j is not None) == [0, 1, 2, 3]
    assert (0, 1, "name") in pairs and (1, 0, "name") in pairs


def test_align_by_position_alone_ignores_names():
    pairs = align([("a", "conv"), ("b", "relu")], [("b", "conv"), ("a", "relu")], by_name=False)
    assert pairs == [(0, 0, "position"), (1, 1, "position")]


def test_a_long_stretch_is_paired_in_order_without_quadratic_matching():
    from archcalc.diff import MAX_ALIGNED_CELLS

    n = math.isqrt(MAX_ALIGNED_CELLS) + 1
    # past the common head (kinds 0, 1), the middle's table would be too large: paired in order
    pairs = align([(f"a{i}", i % 3) for i in range(n)], [(f"b{i}", i % 2) for i in range(n + 5)])
    assert pairs[:n] == [(i, i, "position") for i in range(n)] and len(pairs) == n + 5
    # structured like two networks' layers (conv, relu repeated; conv, relu, batchnorm in B):
    # 100,000 layers each are aligned in bounded (linear) work
    a = [(f"a{i}", "cr"[i % 2]) for i in range(10**5)]
    b = [(f"b{i}", "crb"[i % 3]) for i in range(10**5)]
    pairs = align(a, b)
    assert len(pairs) == 10**5 and pairs[:2] == [(0, 0, "position"), (1, 1, "position")]


def test_inserted_layers_in_the_middle_of_long_networks_are_found():
    """The common head and tail are matched before the table, so a few layers inserted into a long
    network are found however long it is."""
    a = [(f"l{i}", ("conv", i % 7)) for i in range(5000)]
    b = [*a[:2500], ("x1", ("batchnorm", 0)), ("x2", ("relu", 0)), *a[2500:]]
    pairs = align(a, b, by_name=False)
    assert [(i, j) for i, j, how in pairs if how == "added"] == [(None, 2500), (None, 2501)]
    assert sum(1 for *_, how in pairs if how == "position") == 5000


def test_auto_numbered_names_after_an_insert_align_better_by_position():
    """vgg16 -> vgg19: three convs inserted, and the relus numbered in order then name other layers."""
    by_name, by_position = diff_models("vgg16", "vgg19"), diff_models("vgg16", "vgg19", by_name=False)
    relu8 = next(r for r in by_name.rows if r.a is not None and r.a.name == "relu8")
    assert relu8.aligned == "name" and relu8.a.output_shape != relu8.b.output_shape
    counts = by_position.counts()
    assert (counts["name"], counts["position"], counts["added"], counts["removed"]) == (0, 40, 6, 0)
    # by position, every aligned pair has the same type, attributes and figures: only relus renumbered
    # (relu8 -> relu9...) and the readers of an inserted conv differ
    assert {d for r in by_position.rows if r.a and r.b for d in r.differs} == {"name", "inputs"}
    # by name, relu8, relu11, relu12, relu14 and relu15 pair layers of different shapes
    assert [r.name for r in by_name.rows if r.a and r.b and "output_shape" in r.differs] == \
        ["relu8", "relu11", "relu12", "relu14", "relu15"]
    added = [r.b.name for r in by_position.rows if r.aligned == "added"]
    assert added == ["conv3_4", "relu8", "conv4_4", "relu12", "conv5_4", "relu16"]  # VGG19's extra convs


# -- figures against analyze -------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b"), [("inception-naive", "inception-reduced"), ("vgg16", "vgg19"),
                                      ("resnet18", "resnet34")])
def test_rows_and_totals_are_the_analyses_figures(a, b):
    analysis_a, analysis_b = archcalc.analyze(a, batch=2), archcalc.analyze(b, batch=2)
    d = diff_models(a, b, batch=2)
    # every layer of each network appears exactly once
    assert sorted(r.a.name for r in d.rows if r.a) == sorted(r.name for r in analysis_a.layers)
    assert sorted(r.b.name for r in d.rows if r.b) == sorted(r.name for r in analysis_b.layers)
    for row in d.rows:
        for side, analysis in ((row.a, analysis_a), (row.b, analysis_b)):
            if side is not None:
                assert side.values == analysis.layer(side.name).values
        if row.a is not None and row.b is not None:
            assert row.difference("macs") == analysis_b.layer(row.b.name).macs - analysis_a.layer(row.a.name).macs
    totals = {t.figure.name: t for t in d.totals()}
    for name in ("params", "macs", "activations", "training_bytes"):
        assert (totals[name].a, totals[name].b) == (getattr(analysis_a.totals, name), getattr(analysis_b.totals, name))
        assert totals[name].ratio == Fraction(getattr(analysis_b.totals, name), getattr(analysis_a.totals, name))
    # the rows' MAC differences add up to the totals' difference
    assert sum(r.difference("macs") for r in d.rows) == totals["macs"].difference


def test_inception_naive_vs_reduced_by_hand():
    """GoogLeNet's module on 256x28x28 (Szegedy et al. 2014, fig. 2): 1x1 reductions to 64 channels
    before the 3x3 (192) and 5x5 (96) convs, and a 64-channel projection after the pool."""
    d = diff_models("inception-naive", "inception-reduced")
    assert [r.b.name for r in d.rows if r.aligned == "added"] == ["reduce3x3", "reduce5x5", "pool_proj"]
    conv3 = next(r for r in d.rows if r.name == "conv3x3")
    assert conv3.a.params == 3 * 3 * 256 * 192 + 192 and conv3.b.params == 3 * 3 * 64 * 192 + 192
    assert conv3.difference("macs") == 28 * 28 * 192 * 9 * (64 - 256)
    assert "inputs" in conv3.differs and conv3.mapped_inputs == ("input",) and conv3.b.inputs == ("reduce3x3",)
    concat = next(r for r in d.rows if r.name == "concat")
    assert (concat.a.output_shape, concat.b.output_shape) == ((128 + 192 + 96 + 256, 28, 28), (128 + 192 + 96 + 64, 28, 28))
    macs = {t.figure.name: t for t in d.totals()}["macs"]
    reduce = 28 * 28 * 64 * 256  # one 1x1 reduction to 64 channels
    naive = 28 * 28 * (128 * 256 + 192 * 9 * 256 + 96 * 25 * 256)
    assert (macs.a, macs.b) == (naive, 28 * 28 * (128 * 256 + 192 * 9 * 64 + 96 * 25 * 64) + 3 * reduce)


def test_depth_folds_blocks_before_aligning():
    d = diff_models("resnet18", "resnet34", depth=1)
    analysis_a, analysis_b = archcalc.analyze("resnet18"), archcalc.analyze("resnet34")
    assert [r.name for r in d.rows] == [r.name for r in analysis_a.rows(1)] == [r.name for r in analysis_b.rows(1)]
    assert [r.name for r in d.shown()] == ["layer1", "layer2", "layer3", "layer4"]
    layer3 = d.rows[[r.name for r in d.rows].index("layer3")]
    assert (layer3.a.layers, layer3.b.layers) == (16, 44)  # resnet34's stage 3: 6 blocks of 7 + the downsample's 2
    assert layer3.a.macs == analysis_a.layer("layer3.0.conv1").macs + sum(
        r.macs for r in analysis_a.layers if r.scope[:1] == ("layer3",) and r.name != "layer3.0.conv1")
    assert all("inputs" not in r.differs for r in d.rows)  # a stage reads the stage before, in both


def test_diff_analyses_refuses_different_settings():
    with pytest.raises(ValueError, match="same batch"):
        diff_analyses(archcalc.analyze("lenet5"), archcalc.analyze("lenet5", batch=2))


# -- conventions ---------------------------------------------------------------------------------------

#: A small preset defined here (the peers' presets arrive separately): conv without bias adds,
#: batchnorm as 2 per element, linear as 2 per MAC, an add as 1 per value, everything else 0.
TINY = Convention("tiny", "a test preset", "flops", "conv and linear only, batchnorm 2 per value",
                  {"conv": Rule("macs - bias_adds", note="bias adds are not counted"),
                   "batchnorm": Rule("2 * outputs"), "linear": Rule("2 * macs"),
                   "add": Rule("outputs", note="an add as one op per value")}, default=Rule("0"))


def test_conventions_rows_are_the_layers_counted_differently():
    a, b = conventions.count("resnet18", "archcalc", batch=3), conventions.count("resnet18", TINY, batch=3)
    d = diff_conventions("resnet18", "archcalc", TINY, batch=3)
    expected = [name for name in a.layers if a.layers[name].forward != b.layers[name].forward]
    assert [r.name for r in d.shown()] == expected
    assert [r.name for r in d.shown(include_equal=True)] == list(a.layers)
    for row in d.rows:
        assert (row.forward_a, row.forward_b) == (a.layers[row.name].forward, b.layers[row.name].forward)
    assert d.totals()[0] == ("forward", a.forward, b.forward)
    # resnet18's convs have no bias: only batchnorm (0 MACs -> 2 per value), the residual adds (0 MACs
    # -> 1 per value) and fc (512x1000 -> twice) differ
    assert {r.type for r in d.shown()} == {"batchnorm", "add", "linear"}
    add = next(r for r in d.rows if r.name == "layer1.0.add")
    assert (add.forward_a, add.forward_b) == (0, 3 * 64 * 56 * 56)
    fc = next(r for r in d.rows if r.name == "fc")
    assert (fc.forward_a, fc.forward_b, fc.difference) == (3 * 512_000, 3 * 1_024_000, 3 * 512_000)
    assert (fc.rule_a, fc.rule_b) == ("macs", "2 * macs")
    assert fc.explained_b == "2 * macs = 2 * 512,000 = 1,024,000"
    bn1 = next(r for r in d.rows if r.name == "bn1")
    assert bn1.forward_b == 3 * 2 * 64 * 112 * 112 and bn1.rule_b == "2 * outputs"


def test_conventions_rule_and_note_of_a_conv_with_bias():
    a = conventions.count("lenet5", "archcalc")
    d = diff_conventions("lenet5", "archcalc", TINY)
    conv1 = next(r for r in d.rows if r.name == "conv1")
    assert conv1.difference == -6 * 28 * 28  # one bias add per output value, not counted by TINY
    assert conv1.forward_a == a.layers["conv1"].forward == 6 * 3 * 25 * 28 * 28
    assert conv1.note_b == "bias adds are not counted" and conv1.note_a == ""


def test_conventions_with_a_scale_show_it_in_the_rule():
    doubled = Convention("twice", "test", "flops", "2 per MAC", {}, default=Rule("macs"), scale=2)
    d = diff_conventions("lenet5", "archcalc", doubled)
    assert all(r.forward_b == 2 * r.forward_a for r in d.rows)
    assert {r.rule_b for r in d.shown()} == {"2 x (macs)"}
    assert d.totals()[0][2] == 2 * archcalc.analyze("lenet5").totals.macs


def test_conventions_depth_sums_blocks_and_names_their_rules():
    d = diff_conventions("resnet18", "archcalc", TINY, depth=1)
    flat = diff_conventions("resnet18", "archcalc", TINY)
    layer1 = next(r for r in d.rows if r.name == "layer1")
    members = [r for r in flat.rows if r.name.startswith("layer1.")]
    assert layer1.layers == len(members) == 14
    assert layer1.forward_b == sum(r.forward_b for r in members)
    assert layer1.rule_b == "batchnorm: 2 * outputs; add: outputs"  # the ops of the block counted differently
    assert sum(r.forward_b for r in d.rows) == flat.totals()[0][2]


def test_backward_is_compared_only_when_both_conventions_count_it():
    from archcalc.render.diff import convention_diff_markdown

    twice = Convention("bw2", "test", "flops", "t", {}, default=Rule("macs", backward="2 * macs"))
    once = Convention("bw1", "test", "flops", "t", {}, default=Rule("macs", backward="macs"))
    d = diff_conventions("lenet5", twice, once, batch=2)
    assert d.counts_backward and d.totals()[1] == ("backward", 2 * 2 * 651_720, 2 * 651_720)
    # forward counts are equal: the rows differ in their backward count alone (the layers with MACs)
    assert [r.name for r in d.shown()] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    conv1 = d.rows[0]
    assert (conv1.forward_a, conv1.forward_b) == (2 * 352_800, 2 * 352_800)
    assert (conv1.backward_a, conv1.backward_b) == (2 * 2 * 352_800, 2 * 352_800)
    assert conv1.rule_a == "macs; backward 2 * macs"
    data = d.to_dict()
    assert data["backward_compared"] and data["rows"][0]["backward"] == {"a": 1_411_200, "b": 705_600, "diff": -705_600}
    assert "| Backward A | Backward B |" in convention_diff_markdown(d)

    d = diff_conventions("lenet5", twice, TINY)
    assert not d.counts_backward and len(d.totals()) == 1 and all(r.backward_a == 0 for r in d.rows)
    assert "backward" not in next(r for r in d.rows if r.name == "conv1").rule_a
    assert not d.to_dict()["backward_compared"] and "backward" not in d.to_dict()["rows"][0]
    assert "Backward passes are not compared: only one of the conventions counts one." in convention_diff_markdown(d)


# -- formats through the command line --------------------------------------------------------------------

@pytest.fixture
def tiny_preset(monkeypatch):
    """TINY as a preset the CLI can name."""
    conventions.presets()
    monkeypatch.setitem(conventions.PRESETS, "tiny", TINY)


def test_models_json_csv_markdown_table_parse():
    code, out, _ = run("diff", "inception-naive", "inception-reduced", "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["kind"] == "models" and data["a"]["model"] == "inception-naive"
    assert data["counts"] == {"name": 6, "position": 0, "removed": 0, "added": 3, "differ": 3, "equal": 3}
    assert [r["aligned"] for r in data["rows"]] == ["added", "name", "added", "name", "added", "name"]
    conv3 = data["rows"][1]
    assert conv3["a"]["name"] == "conv3x3" and conv3["figures"]["params"] == {"a": 442_560, "b": 110_784, "diff": -331_776}
    assert conv3["figures"]["output_shape"] == {"a": [192, 28, 28], "b": [192, 28, 28], "diff": None}
    assert data["totals"]["macs"]["diff"] == data["totals"]["macs"]["b"] - data["totals"]["macs"]["a"]
    assert all(isinstance(t["a"], int) and isinstance(t["b"], int) for t in data["totals"].values())

    code, out, _ = run("diff", "inception-naive", "inception-reduced", "--format", "csv", "--all")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 9 + 1 and rows[-1]["aligned"] == "total"
    conv3 = next(r for r in rows if r["name_a"] == "conv3x3")
    assert (conv3["params_a"], conv3["params_b"], conv3["params_diff"]) == ("442560", "110784", "-331776")
    assert conv3["differs"] == ("inputs;params;params_trainable;params_weights_only;macs;flops;input_grad_macs;"
                               "weight_grad_macs;convention_count")
    assert rows[-1]["macs_a"] == str(archcalc.analyze("inception-naive").totals.macs)

    code, out, _ = run("diff", "inception-naive", "inception-reduced", "--format", "markdown")
    lines = out.splitlines()
    assert code == 0 and lines[2].startswith("| Layer | Aligned |")
    table = [line for line in lines[2:] if line.startswith("|")]
    assert len(table) == 2 + 6 + 2 + 11  # header, rule, rows; header, rule, totals
    assert "| conv3x3 | name | conv 3x3/1 p1, 192 | input -> reduce3x3 |" in out
    assert "| MACs | 854,196,224 | 271,351,808 | -582,844,416 | 0.32x |" in out

    code, out, _ = run("diff", "inception-naive", "inception-reduced")
    assert code == 0 and "442,560 -> 110,784 (-331,776)" in out and "0.32x" in out
    assert "6 rows by layer name, 0 by position; 3 added (only in B), 0 removed" in out


def test_all_shows_equal_rows_too():
    _, some, _ = run("diff", "inception-naive", "inception-reduced", "--format", "json")
    _, every, _ = run("diff", "inception-naive", "inception-reduced", "--format", "json", "--all")
    assert len(json.loads(some)["rows"]) == 6 and len(json.loads(every)["rows"]) == 9


def test_identical_models_say_so():
    code, out, _ = run("diff", "lenet5", "lenet5")
    assert code == 0 and "No layer differs." in out and "1.00x" in out


def test_conventions_every_format_parses(tiny_preset):
    code, out, _ = run("diff", "resnet18", "--convention", "archcalc", "--vs", "tiny", "--format", "json")
    data = json.loads(out)
    counted = conventions.count("resnet18", TINY)
    assert code == 0 and data["kind"] == "conventions" and data["b"]["name"] == "tiny"
    assert data["totals"]["forward"]["b"] == counted.forward
    assert data["totals"]["forward"]["a"] == archcalc.analyze("resnet18").totals.macs
    fc = next(r for r in data["rows"] if r["name"] == "fc")
    assert fc["forward"] == {"a": 512_000, "b": 1_024_000, "diff": 512_000} and fc["rule"]["b"] == "2 * macs"

    code, out, _ = run("diff", "resnet18", "--vs", "tiny", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and rows[-1]["name"] == "total" and rows[-1]["forward_b"] == str(counted.forward)
    assert sum(int(r["forward_diff"]) for r in rows[:-1]) == int(rows[-1]["forward_diff"])

    code, out, _ = run("diff", "resnet18", "--vs", "tiny", "--format", "markdown", "--explain")
    assert code == 0 and "| fc | linear | 512,000 | 1,024,000 | +512,000 | macs = 512,000 | 2 * macs = 2 * 512,000 = 1,024,000 |" in out

    code, out, _ = run("diff", "resnet18", "--vs", "tiny")
    ratio = Fraction(counted.forward, archcalc.analyze("resnet18").totals.macs)
    assert code == 0 and "2 * outputs" in out and f"{math.floor(ratio * 100 + Fraction(1, 2)) / 100:.2f}x" in out
    assert "Note: tiny, conv" not in out  # resnet18's convs have no bias: conv rows are alike, their note not shown
    code, out, _ = run("diff", "lenet5", "--vs", "tiny")
    assert "Note: tiny, conv: bias adds are not counted." in out


def test_two_models_under_a_convention_compare_its_counts_too(tiny_preset):
    """resnet18 -> resnet34 counted as TINY: each row's count is conventions.count's for that layer."""
    code, out, _ = run("diff", "resnet18", "resnet34", "--convention", "tiny", "--format", "json", "--all")
    data = json.loads(out)
    a, b = conventions.count("resnet18", TINY), conventions.count("resnet34", TINY)
    assert code == 0 and data["convention"] == "tiny"
    assert data["totals"]["convention_count"] == {"a": a.forward, "b": b.forward, "diff": b.forward - a.forward,
                                                  "ratio": b.forward / a.forward}
    for row in data["rows"]:
        for side, counted in (("a", a), ("b", b)):
            if row[side] is not None and row[side]["name"] != "input":
                assert row["figures"]["convention_count"][side] == counted.layers[row[side]["name"]].forward
    code, out, _ = run("diff", "resnet18", "resnet34", "--convention", "tiny", "--format", "markdown")
    lines = out.splitlines()
    assert code == 0 and lines[2].startswith("| Layer | Aligned | Type | Inputs | Output shape | Params | MACs | tiny (flops) |")
    assert f"| tiny (flops) | {a.forward:,} | {b.forward:,} |" in out
    assert "counted as tiny too (a test preset: docs/conventions.md#convention-tiny)" in out
    # under archcalc's own convention the count is the MACs: no column of its own, not named again
    code, out, _ = run("diff", "resnet18", "resnet34", "--format", "markdown")
    assert "| Also differs |" not in out and "(MACs)" not in out


def test_conventions_depth_through_the_cli(tiny_preset):
    code, out, _ = run("diff", "resnet18", "--vs", "tiny", "--depth", "1", "--format", "json")
    names = [r["name"] for r in json.loads(out)["rows"]]
    assert code == 0 and names == ["bn1", "layer1", "layer2", "layer3", "layer4", "fc"]
    code, out, _ = run("diff", "resnet18", "--vs", "tiny", "--depth", "1")
    assert code == 0 and "Note: tiny, add: an add as one op per value." in out  # adds are inside blocks only


@pytest.mark.parametrize(("args", "message"), [
    (("lenet5",), "one model is compared under two conventions: give --vs NAME"),
    (("lenet5", "vgg16", "--vs", "archcalc"), "--vs goes with one model"),
    (("lenet5", "vgg16", "--convention", "fvcoer"), "unknown convention 'fvcoer'"),
    (("lenet5", "vgg16", "vgg11"), "diff compares two models, or one model under two conventions; got 3 models"),
    (("lenet5", "--vs", "archcalk"), "unknown convention 'archcalk'; did you mean 'archcalc'?"),
    (("lenet5", "--convention", "nope", "--vs", "archcalc"), "unknown convention 'nope'"),
    (("lenet5", "vgg16", "--explain"), "--explain shows the conventions' arithmetic"),
    (("lenet5", "--vs", "archcalc", "--align", "position"), "--align goes with two models"),
    (("lenet5", "--vs", "archcalc", "--dtype", "float16"), "--dtype applies to a diff of two models"),
    (("lenet5", "--vs", "archcalc", "--explain", "--format", "json"), "--explain goes with --format table or markdown"),
    (("lenet5", "nosuchnet"), "no zoo model or spec file 'nosuchnet'"),
    (("lenet5", "vgg16", "--input", "3x32x32"), "--input and --partial apply to imported networks"),
])
def test_bad_input_is_one_line_and_status_2(args, message):
    code, out, err = run("diff", *args)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


def test_a_huge_batch_is_refused_not_printed():
    code, _, err = run("diff", "lenet5", "--vs", "archcalc", "--batch", str(10**4100), "--format", "json")
    assert code == 2 and "digits" in err
    code, _, err = run("diff", "lenet5", "lenet5", "--batch", str(10**4100), "--format", "json")
    assert code == 2 and "digits" in err


def test_spec_files_and_names_are_shown_literally(tmp_path):
    a = tmp_path / "a.json"
    b = tmp_path / "b.json"
    a.write_text(json.dumps({"name": "[bold]a", "input": [3, 8, 8], "layers": [{**CONV1, "name": "[red]c"}]}))
    b.write_text(json.dumps({"name": "b", "input": [3, 8, 8], "layers": [{**CONV1, "name": "[red]c", "filters": 5}]}))
    code, out, _ = run("diff", str(a), str(b))
    assert code == 0 and "[red]c" in out and "[bold]a -> b" in out


def test_readme_example_is_the_real_output():
    """The README's `archcalc diff alexnet alexnet-grouped` block is what the command prints (piped)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```console\n\$ archcalc diff alexnet alexnet-grouped\n(.*?)```", text, re.S)
    assert block, "the README lost its diff example"
    code, out, _ = run("diff", "alexnet", "alexnet-grouped")
    assert code == 0 and block.group(1) == out
    # the grouped convs halve params and MACs (2 groups), as Krizhevsky et al.'s two-GPU split
    assert "614,656 -> 307,456 (-307,200)" in out and 614_656 - 256 == 2 * (307_456 - 256)


@pytest.mark.parametrize("model", ["resnet18", "inception-reduced", "lenet5"])
def test_a_network_and_its_torch_round_trip_differ_only_in_functional_ops_names(model):
    """Exported to torch modules and traced back by torch.fx (an independent path to a graph):
    every figure of every layer is equal; only the ops torch runs without a module (the residual
    adds, the concat) come back under torch's names, aligned by position."""
    pytest.importorskip("torch")
    from archcalc.exporters.torch import to_torch
    from archcalc.importers import from_torch

    graph = archcalc.load(model)
    d = diff_models(graph, from_torch(to_torch(graph), graph.input_shape))
    assert {reason for row in d.rows for reason in row.differs} <= {"name"}
    assert all(row.aligned in ("name", "position") for row in d.rows)
    assert all(row.aligned == "name" or row.a.type in ("add", "concat") for row in d.rows)
    assert all(t.a == t.b for t in d.totals())


def test_the_zoo_resnet18_and_torchvision_s_differ_only_in_relu_names():
    """torchvision's resnet18 (imported from its own code) against the zoo's spec: equal figures
    layer by layer; torchvision's BasicBlock calls its one nn.ReLU twice (relu, relu_2 after fx)."""
    pytest.importorskip("torchvision")
    d = diff_models("resnet18", "torchvision:resnet18")
    assert all(t.a == t.b for t in d.totals())
    changed = d.shown()
    assert len(changed) == 16 and all(r.differs == ("name",) and r.a.type == "relu" for r in changed)
    assert ("layer1.0.relu1", "layer1.0.relu") in [(r.a.name, r.b.name) for r in changed]


def test_a_partial_import_is_said_in_the_footer_and_json():
    """A network imported with --partial (an op without a rule, counted as 0): its totals are lower bounds."""
    torch = pytest.importorskip("torch")
    from archcalc.importers import from_torch
    from archcalc.render.diff import model_diff_markdown

    class WithAbs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return torch.abs(self.conv(x))

    partial = from_torch(WithAbs(), (3, 8, 8), name="net", partial=True)
    whole = spec({"name": "conv", "type": "conv", "filters": 4, "kernel": 3}, {"name": "abs", "type": "relu"})
    d = diff_models(whole, partial)
    assert d.to_dict()["b"]["status"] == "partial" and d.to_dict()["a"]["status"] == "complete"
    text = model_diff_markdown(d)
    assert "- Partial: B = net has 1 layer(s) of ops archcalc has no rule for, counted as 0 (torch.abs x1" in text
    row = next(r for r in d.rows if r.name == "abs")
    assert row.aligned == "name" and "type" in row.differs and row.difference("other_ops") == -4 * 6 * 6


def test_random_diff_command_lines_exit_0_or_2_without_a_traceback():
    """Random models (zoo names, typos, random spec files, standard input) and options, as the CLI
    fuzz test draws them for the other commands: exit 0 with output, or one error line per problem."""
    import os
    import tempfile
    from pathlib import Path

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.test_cli_fuzz import model_args, numbers, run_cli

    @settings(max_examples=int(os.environ.get("ARCHCALC_FUZZ_EXAMPLES", "40")), deadline=None,
              derandomize=not os.environ.get("ARCHCALC_FUZZ_EXAMPLES"),
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def check(data):
        with tempfile.TemporaryDirectory() as directory:
            workdir = Path(directory)
            first, stdin = data.draw(model_args(workdir), label="A")
            second, stdin_b = data.draw(model_args(workdir), label="B")
            models = data.draw(st.sampled_from([[first], [first, second], [first, second, "lenet5"]]), label="models")
            argv = ["diff", *models]
            argv += data.draw(st.sampled_from([[], ["--vs", "archcalc"], ["--convention", "archcalc"],
                                               ["--vs", "archcalk"], ["--explain", "--vs", "archcalc"]]))
            argv += data.draw(st.sampled_from([[], ["--format", "json"], ["--format", "csv"], ["--format", "markdown"],
                                               ["--format", "yaml"], ["--all"], ["--align", "position"]]))
            argv += data.draw(st.sampled_from([[], ["--depth", data.draw(numbers())],
                                               ["--batch", data.draw(numbers())]]))
            code, out, err, error = run_cli(argv, stdin if stdin is not None else stdin_b, workdir)
        where = f"archcalc {' '.join(argv)!r}"
        assert error is None and "Traceback" not in out + err, f"{where}: {error!r}\n{err}"
        assert code in (0, 2), f"{where} exited {code}:\n{err}"
        if code == 0:
            assert out.strip(), f"{where} exited 0 with no output"
        else:
            lines = err.splitlines()
            assert 1 <= len(lines) <= 21 and all(line.startswith("error: ") for line in lines), f"{where}:\n{err}"

    check()
