"""The ``fvcore`` preset against fvcore itself: FlopCountAnalysis on archcalc's exported models.

Every zoo model is exported to PyTorch (tests/peer_oracle.py: its module names are the layer
names) and run through ``FlopCountAnalysis(model.eval(), x)`` once; the preset's total must equal
``total()`` and, for every module fvcore lists in ``by_module()`` (leaf layers and the containers
that group them, ``layer1``, ``layer1.0``), the preset's sum over the layers under that name must
equal fvcore's figure. Every example of every registered op is run the same way (a batch of 2, so
the batch scaling is checked too): the rules were found there.
"""

from __future__ import annotations

import functools
import logging

import pytest

import archcalc
from archcalc import conventions
from archcalc.ops import REGISTRY
from tests.helpers import single_op_graph

fvcore_nn = pytest.importorskip("fvcore.nn", reason="fvcore is not installed (pip install -e '.[oracle]')")
peer = pytest.importorskip("tests.peer_oracle")
torch = peer.torch

#: Op types whose examples cannot be exported to PyTorch, hence not run through fvcore: an opaque
#: layer stands for an op a partial import could not read (archcalc does not know what it computes).
NOT_EXPORTABLE = {"opaque": "a stand-in for an unknown op: to_torch refuses it"}


def _analysis(module, x):
    logging.getLogger("fvcore").setLevel(logging.ERROR)  # "unsupported operator" lines: expected, see the preset
    analysis = fvcore_nn.FlopCountAnalysis(module, x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with torch.no_grad():
        return int(analysis.total()), {name: int(v) for name, v in analysis.by_module().items()}


@functools.cache
def _fvcore(model: str):
    graph, module, x = peer.exported(model)
    return _analysis(module, x)


def _under(counts: dict[str, int], prefix: str) -> int:
    """The preset's count of the layers a module holds: its own, or its descendants' for a container."""
    return sum(v for name, v in counts.items() if not prefix or name == prefix or name.startswith(prefix + "."))


def _check(graph, total, by_module, batch=1):
    counted = conventions.count(graph, "fvcore", batch=batch)
    per_layer = counted.per_layer()
    assert counted.forward == total
    assert by_module[""] == total
    wrong = {name: (value, _under(per_layer, name)) for name, value in by_module.items() if value != _under(per_layer, name)}
    assert not wrong, f"module: (fvcore, preset): {wrong}"
    return per_layer


@pytest.mark.parametrize("model", archcalc.zoo.names())
def test_total_and_every_module_equal_fvcore(model):
    graph, module, _ = peer.exported(model)
    total, by_module = _fvcore(model)
    per_layer = _check(graph, total, by_module)
    # every layer held by a module is compared on its own (the others, torch.cat and + in forward, count 0)
    held = set(peer.module_names(module)) & set(per_layer)
    assert held and held <= set(by_module)


EXAMPLES = [(t, i, ex) for t, op in sorted(REGISTRY.items()) if t not in NOT_EXPORTABLE for i, ex in enumerate(op.examples)]


@pytest.mark.parametrize(("op_type", "index", "example"), EXAMPLES, ids=[f"{t}-{i}" for t, i, _ in EXAMPLES])
def test_every_example_of_every_op_equals_fvcore(op_type, index, example):
    from archcalc.exporters.torch import to_torch

    graph = single_op_graph(op_type, example)
    torch.manual_seed(0)
    module = to_torch(graph).eval()
    total, by_module = _analysis(module, torch.randn(2, *graph.input_shape))
    _check(graph, total, by_module, batch=2)


@pytest.mark.parametrize("op_type", sorted(NOT_EXPORTABLE))
def test_the_ops_left_out_cannot_be_exported(op_type):
    from archcalc.errors import ArchcalcError
    from archcalc.exporters.torch import to_torch

    for example in REGISTRY[op_type].examples:
        with pytest.raises(ArchcalcError, match="cannot export to PyTorch"):
            to_torch(single_op_graph(op_type, example))


def test_hand_counts_of_resnet18():
    """Hand arithmetic for the rules that are fvcore's own: conv1 is 64 filters x 3x7x7 at 112x112
    positions, no bias; bn1 2 per value of 64x112x112 (eval); the 2D global pool 1 per value of
    512x7x7; max pool, relu and the residual adds 0."""
    counted = conventions.count("resnet18", "fvcore").per_layer()
    assert counted["conv1"] == 64 * 3 * 7 * 7 * 112 * 112 == 118_013_952
    assert counted["bn1"] == 2 * 64 * 112 * 112
    assert counted["avgpool"] == 512 * 7 * 7 == 25_088
    assert counted["maxpool"] == counted["relu"] == counted["layer1.0.add"] == 0
    # r3d_18's 3D global pool has no fvcore handle (aten::adaptive_avg_pool3d): 0
    assert conventions.count("r3d_18", "fvcore").per_layer()["avgpool"] == 0


def test_batchnorm_in_training_mode_is_a_different_count():
    """The preset is fvcore on model.eval(): in training mode fvcore counts a batchnorm 5 per value."""
    from archcalc.exporters.torch import to_torch
    from archcalc.spec import from_dict

    bn_graph = from_dict({"name": "bn", "input": [3, 4, 4], "layers": [{"name": "bn", "type": "batchnorm"}]})
    module = to_torch(bn_graph)
    x = torch.randn(1, 3, 4, 4)
    assert _analysis(module.eval(), x)[0] == conventions.count(bn_graph, "fvcore").forward == 2 * 48
    assert _analysis(module.train(), x)[0] == 5 * 48


#: torchvision's VGGs run ``AdaptiveAvgPool2d((7, 7))`` on their 7x7 map: an identity the zoo's specs
#: leave out (tests/torchvision_oracle.py), which fvcore counts as its input size, 512 x 7 x 7.
TORCHVISION_EXTRA = {"vgg11": 512 * 7 * 7}


@pytest.mark.parametrize("model", ["resnet18", "mobilenet_v2", "squeezenet1_1", "vgg11", "vgg16-cifar"])
def test_torchvision_twins_equal_fvcore(model):
    """fvcore on torchvision's own model (not archcalc's export) gives the preset's total, but for
    the identity pool of the VGGs. (The others of the zoo agree too when run: vgg13/16/19 by the same
    25,088, resnet34-152, squeezenet1_0, densenet121, inception_v3, r3d_18 exactly; left out here
    for time: each is a full CPU forward.)"""
    oracle = pytest.importorskip("tests.torchvision_oracle", reason="torchvision is not importable")
    graph = archcalc.load(model)
    torch.manual_seed(0)
    total, _ = _analysis(oracle.TWINS[model]().eval(), torch.randn(1, *graph.input_shape))
    assert total == conventions.count(graph, "fvcore").forward + TORCHVISION_EXTRA.get(model, 0)
