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
