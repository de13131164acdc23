"""Random ops in training: dropout2d's whole-channel masks and stochastic depth's per-sample or
per-batch drops, their rates, scaling, edge probabilities and seeding, and the ``random``
property the registry-wide torch comparison relies on."""

from __future__ import annotations

import numpy as np
import pytest

from archcalc.errors import ShapeError, SpecError
from archcalc.execute import Executor
from archcalc.ops import REGISTRY
from archcalc.spec import from_dict
from tests.helpers import single_op_graph


def _graph(layer, shape):
    return from_dict({"name": "r", "input": list(shape), "layers": [layer]}, "net.json")


def _bounds(count, p, sigmas=5):
    """A rate's acceptance interval: p +- sigmas binomial standard deviations over ``count`` draws."""
    spread = sigmas * np.sqrt(p * (1 - p) / count)
    return p - spread, p + spread


def test_every_random_op_declares_it_and_no_other_does():
    """An op whose training output changes with the seed must say ``random`` (the registry-wide
    torch comparison skips exactly those in training); a declared one must really draw."""
    for op_type, op in sorted(REGISTRY.items()):
        differs = False
        for example in op.examples:
            graph = single_op_graph(op_type, example)
            x = np.random.default_rng(0).standard_normal((4, *graph.input_shape))
            first, second = (Executor(graph, dtype="float64", stand_ins=True).forward(x, seed=s) for s in (1, 2))
            differs = differs or not np.array_equal(first, second)
        assert differs == op.random, op_type


@pytest.mark.parametrize("shape", [(40, 3, 3), (40, 5), (40, 2, 2, 2)], ids=["2d", "1d", "3d"])
def test_dropout2d_zeroes_whole_channels_at_its_rate(shape):
    p = 0.25
    graph = _graph({"type": "dropout2d", "p": p}, shape)
    executor = Executor(graph, seed=3, dtype="float64")
    x = np.ones((50, *shape))
    y = executor.forward(x)
    per_channel = y.reshape(50, shape[0], -1)
    assert (per_channel == per_channel[..., :1]).all()  # one value over each channel's positions
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / (1 - p)])
    dropped = (per_channel[..., 0] == 0).mean()
    low, high = _bounds(50 * shape[0], p)
    assert low < dropped < high
    executor.backward(np.ones_like(y))
    np.testing.assert_array_equal(executor.input_grad, y)  # the same mask, scaling included
    again = Executor(graph, seed=3, dtype="float64").forward(x)
    np.testing.assert_array_equal(again, y)  # seeded
    assert not np.array_equal(Executor(graph, seed=4, dtype="float64").forward(x), y)
    np.testing.assert_array_equal(Executor(graph).eval().forward(x.astype("float32")), x)  # identity at inference


@pytest.mark.parametrize("layer", [{"type": "dropout2d"}, {"type": "stochastic_depth", "mode": "row"},
                                   {"type": "stochastic_depth", "mode": "batch"}], ids=["dropout2d", "row", "batch"])
def test_edge_probabilities(layer):
    x = np.random.default_rng(0).standard_normal((6, 3, 4, 4))
    keep_all = Executor(_graph({**layer, "p": 0.0}, (3, 4, 4)), dtype="float64")
    np.testing.assert_array_equal(keep_all.forward(x), x)
    keep_all.backward(np.ones_like(x))
    np.testing.assert_array_equal(keep_all.input_grad, np.ones_like(x))
    drop_all = Executor(_graph({**layer, "p": 1.0}, (3, 4, 4)), dtype="float64")
    with np.errstate(all="raise"):  # no division by 1 - p = 0
        y = drop_all.forward(x)
        drop_all.backward(np.ones_like(x))
    np.testing.assert_array_equal(y, np.zeros_like(x))
    np.testing.assert_array_equal(drop_all.input_grad, np.zeros_like(x))


def test_stochastic_depth_row_drops_whole_samples_at_its_rate():
    p = 0.3
    graph = _graph({"type": "stochastic_depth", "p": p, "mode": "row"}, (2, 3))
    executor = Executor(graph, seed=5, dtype="float64")
    x = np.ones((4000, 2, 3))
    y = executor.forward(x)
    rows = y.reshape(4000, -1)
    assert (rows == rows[:, :1]).all()  # a sample is kept or dropped whole
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / (1 - p)])
    low, high = _bounds(4000, p)
    assert low < (rows[:, 0] == 0).mean() < high
    executor.backward(np.ones_like(y))
    np.testing.assert_array_equal(executor.input_grad, y)
    np.testing.assert_array_equal(Executor(graph, seed=5, dtype="float64").forward(x), y)
    np.testing.assert_array_equal(Executor(graph).eval().forward(x.astype("float32")), x)


def test_stochastic_depth_batch_drops_the_whole_batch_at_its_rate():
    p = 0.4
    executor = Executor(_graph({"type": "stochastic_depth", "p": p, "mode": "batch"}, (3, 2, 2)), seed=6, dtype="float64")
    x = np.ones((5, 3, 2, 2))
    dropped = 0
    for _ in range(1000):
        y = executor.forward(x)
        values = np.unique(y)
        assert len(values) == 1 and values[0] in (0.0, 1 / (1 - p))  # one draw for the whole batch
        dropped += values[0] == 0
    low, high = _bounds(1000, p)
    assert low < dropped / 1000 < high


def test_the_torch_oracles_draw_the_same_kind_of_masks():
    """torch's Dropout2d and the written-out torchvision StochasticDepth: the same structure and
    values (the masks themselves come from other generators)."""
    oracle = pytest.importorskip("tests.torch_oracle")
    torch = oracle.torch
    torch.manual_seed(0)
    x = torch.ones((50, 40, 3, 3), dtype=torch.float64)
    for layer, constant_over in [({"type": "dropout2d", "p": 0.25}, (2, 3)),
                                 ({"type": "stochastic_depth", "p": 0.25, "mode": "row"}, (1, 2, 3))]:
        graph = _graph(layer, (40, 3, 3))
        module = oracle.TorchNet(graph).train()
        y = module(x)[graph.nodes[-1].name]
        assert torch.equal(y, y.amax(dim=constant_over, keepdim=True).expand_as(y))
        assert sorted(torch.unique(y).tolist()) == pytest.approx([0.0, 1 / 0.75])
    batch = oracle.TorchNet(_graph({"type": "stochastic_depth", "p": 0.25, "mode": "batch"}, (40, 3, 3))).train()
    assert len(torch.unique(batch(x)["stochastic_depth1"])) == 1


@pytest.mark.parametrize(
    ("layer", "shape", "error", "message"),
    [
        ({"type": "dropout2d"}, (5,), ShapeError, 'layers[0] (name="dropout2d1", type="dropout2d"): expects input (C, *spatial) '
         "with 1 to 3 spatial axes (whole channels are dropped), got (5,)"),
        ({"type": "dropout2d", "p": 1.5}, (3, 4, 4), SpecError,
         'layers[0] (name="dropout2d1", type="dropout2d"): p must be a finite number >= 0 and <= 1, got 1.5'),
        ({"type": "stochastic_depth", "p": 0.1, "mode": "sample"}, (3, 4, 4), SpecError,
         'layers[0] (name="stochastic_depth1", type="stochastic_depth"): mode must be "row" or "batch", got \'sample\''),
    ],
)
def test_bad_attributes_and_shapes(layer, shape, error, message):
    import archcalc

    with pytest.raises(error) as info:
        archcalc.analyze(_graph(layer, shape))
    assert str(info.value) == f"spec 'net.json': {message}"


def test_stochastic_depth_needs_p_and_mode_as_torchvision():
    with pytest.raises(SpecError) as info:
        _graph({"type": "stochastic_depth"}, (3, 4, 4))
    where = 'spec \'net.json\': layers[0] (name="stochastic_depth1", type="stochastic_depth")'
    assert info.value.problems == (
        f"{where}: p is required (probability of zeroing a sample (row) or the batch)",
        f'{where}: mode is required ("row" (a draw per sample) or "batch" (one draw for the whole batch))',
    )
