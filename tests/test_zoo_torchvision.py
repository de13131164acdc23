"""The zoo's torchvision models against torchvision itself, layer by layer.

Each zoo spec written "as torchvision.models.X" is compared with ``X(weights=None)`` run on a zero
input of the spec's shape (tests/torchvision_oracle.py: hooks on every leaf module, torch's
FlopCounterMode, and the rule that pairs module calls with archcalc's layers). Skips when
torchvision is not importable (CI installs it: `.ci/run`).
"""

from __future__ import annotations

import pytest

import archcalc
from archcalc import zoo

oracle = pytest.importorskip(
    "tests.torchvision_oracle", reason="torchvision is not importable (pip install torch==2.14.1 torchvision==0.29.1)"
)

# torch calls that are identities at the zoo input: VGG's AdaptiveAvgPool2d(7) on its 7x7 map
IDENTITY_CALLS = {name: ["avgpool"] for name in ("vgg11", "vgg13", "vgg16", "vgg19")}

ZOO_TWINS = sorted(name for name in oracle.TWINS if name in zoo.names())


def _compare(name):
    graph = archcalc.load(name)
    analysis = archcalc.analyze(graph)
    traced = oracle.trace_twin(name, graph.input_shape)
    alignment = oracle.align(graph, analysis, traced.calls)
    return graph, analysis, traced, alignment


@pytest.mark.parametrize("name", ZOO_TWINS)
def test_zoo_model_equals_torchvision_layer_by_layer(name):
    graph, analysis, traced, alignment = _compare(name)
    shapes = {row.name: row.output_shape for row in analysis.layers}
    for row, call in alignment.pairs:
        where = f"{row.name} ({row.type}) vs torch {call.name} ({type(call.module).__name__})"
        assert call.in_shapes == tuple(shapes[ref] for ref in row.inputs), where
        assert call.out_shape == row.output_shape, where
        assert (call.params, call.buffers, call.macs) == (row.params, row.buffers, row.macs), where
    assert [call.name for call in alignment.identities] == IDENTITY_CALLS.get(name, [])
    # every module that owns something was paired, and the totals agree
    assert sum(row.params for row, _ in alignment.pairs) == traced.params
    assert analysis.totals.params == analysis.totals.params_trainable == traced.params
    assert analysis.totals.buffers == traced.buffers
    assert analysis.totals.macs == traced.macs
    assert analysis.layers[-1].output_shape == traced.out_shape
    # what torch ran without a module owns nothing and multiplies nothing
    assert all(row.params == row.buffers == row.macs == 0 for row in alignment.functional)


def test_alignment_rule_passes_over_functional_layers_and_refuses_missing_modules():
    torch = oracle.torch
    nn = torch.nn
    graph = archcalc.load({"name": "t", "input": [3, 8, 8], "layers": [
        {"type": "conv", "name": "a", "filters": 4, "kernel": 3}, {"type": "relu", "name": "r"},
        {"type": "conv", "name": "b", "filters": 4, "kernel": 3}]})
    analysis = archcalc.analyze(graph)
    # the ReLU run as F.relu (no module) is passed over; its shape reaches conv b's input
    alignment = oracle.align(graph, analysis, oracle.trace(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)), (3, 8, 8)).calls)
    assert [(row.name, call.name) for row, call in alignment.pairs] == [("a", "0"), ("b", "1")]
    assert [row.name for row in alignment.functional] == ["r"] and alignment.identities == []
    # a layer with parameters is never passed over, and a module with parameters never goes unpaired
    with pytest.raises(oracle.AlignmentError, match=r"archcalc layer 'b' \(conv\) owns parameters or buffers but torch made no call"):
        oracle.align(graph, analysis, oracle.trace(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), (3, 8, 8)).calls)
    extra = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3))
    with pytest.raises(oracle.AlignmentError, match=r"torch call 1 \(BatchNorm2d\) matches no archcalc layer: .* 'b' \(conv\)"):
        oracle.align(graph, analysis, oracle.trace(extra, (3, 8, 8)).calls)
    # a parameterless module that is an identity here is recorded as such
    dropout = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(), nn.Conv2d(4, 4, 3))
    alignment = oracle.align(graph, analysis, oracle.trace(dropout, (3, 8, 8)).calls)
    assert [call.name for call in alignment.identities] == ["1"]
