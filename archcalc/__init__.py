"""archcalc: ConvNet architecture analysis and cost calculator.

    import archcalc
    net = archcalc.load("vgg16")                 # zoo name, .json/.py path, dict or Net
    a = archcalc.analyze(net, batch=1, dtype="float32")
    a.totals.params, a.layers[1].output_shape, a.layers[1].receptive_field.size
"""

from __future__ import annotations

from archcalc.dsl import Net
from archcalc.errors import ArchcalcError, ShapeError, SpecError
from archcalc.explain import explain
from archcalc.graph import Graph, Node
from archcalc.loading import load
from archcalc.passes import analyze
from archcalc.render.dot import render, to_dot
from archcalc.report import Analysis, LayerReport, ReceptiveField, Totals

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """The executor loads NumPy, so it is imported on first use, not with the analyzer."""
    if name in ("Executor", "gradcheck"):
        from archcalc import execute

        return getattr(execute, name)
    if name == "explain_im2col":  # the lecture's worked im2col example (NumPy too)
        from archcalc.im2col import explain_im2col

        return explain_im2col
    raise AttributeError(f"module 'archcalc' has no attribute {name!r}")

__all__ = [
    "Analysis", "ArchcalcError", "Executor", "Graph", "LayerReport", "Net", "Node", "ReceptiveField",
    "ShapeError", "SpecError", "Totals", "analyze", "explain", "explain_im2col", "gradcheck", "load", "render", "to_dot", "__version__",
]
