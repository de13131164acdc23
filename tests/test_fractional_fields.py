"""Fields after fractional strides and layers resolved from their input size: the written
arithmetic, the resolution-dependence marks, and the memory estimate stay exact."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

import archcalc
from archcalc.execute import estimate_memory

DCGAN_STEP = {"name": "dcgan-step", "input": [16, 4, 4], "layers": [
    {"type": "conv_transpose", "name": "up1", "filters": 8, "kernel": 4, "stride": 2, "padding": 1, "bias": False},
    {"type": "relu"},
    {"type": "conv_transpose", "name": "up2", "filters": 3, "kernel": 4, "stride": 2, "padding": 1},
    {"type": "upsample", "name": "up3", "scale_factor": 2},
    {"type": "conv", "name": "conv", "filters": 2, "kernel": 3},
]}


def _exactly(expression: str) -> Fraction:
    """The value of written arithmetic with every number an exact Fraction."""
    return eval(re.sub(r"\d+", lambda m: f"F({m.group()})", expression), {"F": Fraction, "__builtins__": {}})


@pytest.mark.parametrize("layer", ["up1", "up2", "up3", "conv"])
def test_the_written_field_arithmetic_after_a_fractional_stride_is_exact(layer):
    field = archcalc.analyze(DCGAN_STEP).layer(layer).receptive_field
    lines = [text for quantity, text in archcalc.explain(DCGAN_STEP, layer) if quantity == "receptive field (height)"]
    assert lines, "no receptive-field line"
    checked = {}
    for clause in lines[0].split("; "):
        name, *rest = [part.strip() for part in clause.split(" = ")]
        if rest:
            value = _exactly(rest[-1])
            if len(rest) >= 2 and not re.search(r"[a-z]", rest[-2]):  # the numbers written out
                assert _exactly(rest[-2]) == value, clause
            checked[name.split()[0]] = value
    # the written results are the analyzer's: r, jump, padding and centre on the height axis
    assert checked["r"] == field.size[0] and checked["jump"] == field.stride[0]
    assert checked["padding"] == field.padding[0] and checked["centre"] == field.centre[0]


def test_a_transposed_conv_step_divides_the_jump_by_its_stride_in_writing():
    text = dict(archcalc.explain(DCGAN_STEP, "up2"))["receptive field (height)"]
    # up1 left jump 1/2; up2 steps over its zero-inserted input at (1/2)/2 = 1/4
    assert text.startswith("step = jump_in / D = (1/2)/2 = 1/4; r = r_in + (k'-1)*step = 5/2 + (4-1)*(1/4) = 13/4")


def _flags(spec):
    rows = {row["name"]: row for row in archcalc.analyze(spec).to_dict()["layers"]}
    return {name: (row["resolution_dependent"], row["receptive_field"]["resolution_dependent"]) for name, row in rows.items()}


def _net(size, *layers):
    return {"name": "t", "input": [2, size, size], "layers": [{"type": "conv", "name": "conv", "filters": 2, "kernel": 3},
                                                               *layers]}


@pytest.mark.parametrize(("layer", "size"), [
    ({"type": "crop", "name": "x", "size": 7}, 20),                     # centred: (18 - 7) // 2 = 5, at 19: 6
    ({"type": "adaptive_avgpool", "name": "x", "output_size": 5}, 22),   # 20 -> 5: k4 s4; 21 -> 5 other windows
    ({"type": "adaptive_maxpool", "name": "x", "output_size": 3}, 11),
    ({"type": "upsample", "name": "x", "size": 12, "mode": "bilinear"}, 8),  # scale 12/6; at 7: 12/7
])
def test_layers_resolved_from_their_input_size_are_marked_and_do_move(layer, size):
    flags = _flags(_net(size, layer, {"type": "relu", "name": "after"}))
    assert flags["x"] == (True, True) and flags["after"] == (False, True) and flags["conv"] == (False, False)
    here = archcalc.analyze(_net(size, layer)).layer("x").receptive_field
    other = archcalc.analyze(_net(size + 1, layer)).layer("x").receptive_field
    assert (here.centre, here.size, here.stride) != (other.centre, other.size, other.stride)


@pytest.mark.parametrize("layer", [
    {"type": "crop", "name": "x", "size": 7, "offset": 2},             # a given offset holds at any size
    {"type": "adaptive_avgpool", "name": "x", "output_size": [None, None]},  # every axis kept
    {"type": "upsample", "name": "x", "scale_factor": 2},              # the output follows the input
])
def test_layers_that_hold_at_any_size_are_not_marked(layer):
    assert _flags(_net(20, layer))["x"] == (False, False)


def test_the_explain_of_a_centred_crop_gives_the_offset_arithmetic_here_and_at_the_next_size():
    lines = [text for quantity, text in archcalc.explain(_net(20, {"type": "crop", "name": "x", "size": 7}), "x")
             if "centred" in text]
    assert lines and "offset = (in - size) // 2 = (18 - 7) // 2 = 5; at input height 19 it would be (19 - 7) // 2 = 6" in lines[0]


@pytest.mark.parametrize("layer", [
    {"type": "conv_transpose", "filters": 2, "kernel": 1, "stride": 4, "padding": 18},  # padding before d*(k-1) - p < 0
    {"type": "upsample", "scale_factor": 3, "mode": "bilinear"},
    {"type": "adaptive_avgpool", "output_size": 4},                     # 10 -> 4: non-uniform, fractional stride
    {"type": "crop", "size": 3},
])
def test_the_memory_estimate_stays_a_whole_non_negative_number(layer):
    spec = {"name": "t", "input": [2, 10, 10], "layers": [layer]}
    estimate = estimate_memory(spec, batch=2)
    for part in ("parameters", "activations", "saved", "im2col", "temporaries"):
        value = getattr(estimate, part)
        assert type(value) is int and value >= 0, (part, value)


def test_the_table_footer_explains_each_field_mark_it_shows():
    from archcalc.render.table import footer

    plain = archcalc.analyze({"name": "p", "input": [2, 8, 8], "layers": [{"type": "conv", "filters": 2, "kernel": 3}]})
    assert not any(line.startswith("Receptive field:") for line in footer(plain))
    marked = archcalc.analyze({"name": "m", "input": [2, 9, 9], "layers": [
        {"type": "conv", "name": "a", "filters": 2, "kernel": 3, "padding": 1},
        {"type": "conv", "name": "b", "filters": 2, "kernel": 2, "inputs": ["input"]},
        {"type": "crop", "name": "bc", "size": 8, "offset": 0, "inputs": ["a"]},
        {"type": "add", "name": "merged", "inputs": ["bc", "b"]},          # centres 0 and 1/2: "!"
        {"type": "adaptive_avgpool", "name": "pool", "output_size": 3},    # 8 -> 3: "~"
        {"type": "reshape", "name": "flat", "shape": [2, 9]},
        {"type": "conv", "name": "over_merged", "filters": 2, "kernel": [3]},  # a window along merged axes: "?"
    ]})
    lines = [line for line in footer(marked) if line.startswith("Receptive field:")]
    assert lines == ["Receptive field: ! where merged branches' centres or strides differ; ~ where windows differ in size "
                     "(adaptive pooling): a field that contains every window; ? where an axis could not be followed "
                     "through a reshape (the whole axis), or a transposed conv or upsampling follows other windows "
                     "(the span of its taps): an upper bound."]


def test_a_transposed_conv_after_other_windows_is_an_upper_bound_the_perturbation_confirms():
    """A 2x2 max-pool then a kernel-2 stride-2 transposed conv: each output reads one pool unit,
    which sees 2 pixels per axis; the span of the taps over the zero-inserted input gives 3. The
    field is reported as that span, flagged not exact (?), and contains what torch measures."""
    oracle = pytest.importorskip("tests.torch_oracle")
    spec = {"name": "t", "input": [1, 8, 8], "layers": [
        {"type": "maxpool", "name": "pool", "kernel": 2},
        {"type": "conv_transpose", "name": "up", "filters": 1, "kernel": 2, "stride": 2}]}
    graph = archcalc.load(spec)
    field = archcalc.analyze(graph).layer("up").receptive_field
    assert (field.size, field.exact) == ((3, 3), False)
    centre, measured = oracle.measured_fields(graph, ["up"])["up"]
    assert [end - first + 1 for first, end in measured] == [2, 2]  # what each unit really sees: inside the bound
    first = archcalc.analyze({**spec, "layers": spec["layers"][1:]}).layer("up").receptive_field
    assert first.exact  # on the input itself the span is exact (3/2: one pixel per unit, in pixel terms)
