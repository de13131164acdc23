"""Element-wise product of inputs with broadcasting: squeeze-excitation's gate times its input."""

from __future__ import annotations

from typing import Any

from archcalc.ops.base import UNKNOWN, Layer, RunContext, Saved, keeps_input, keeps_output, keeps_param, new_buffer, register  # noqa: F401
from archcalc.ops.merge import _Broadcast, reduce_to


@register
class Mul(_Broadcast):
    """Element-wise product of inputs, broadcast over size-1 axes as NumPy/PyTorch (SE's (C,1,1) x (C,H,W)).

    out = the broadcast shape: per axis, the inputs' size where not 1 (all inputs of one rank)
    params = 0; MACs = 0 (element-wise products are no multiply-accumulates, as FlopCounterMode,
    fvcore and ptflops count them); other ops = (inputs - 1) multiplies per output value
    stores its output (torchvision's SqueezeExcitation returns `scale * input`, a new tensor)
    receptive field: pointwise, the largest of the inputs': an SE gate after global pooling saw the
    whole input, so the product is global (every output depends on the whole input through the gate);
    a broadcast input that saw part of the input makes the field flagged non-uniform
    gradient: dy times the product of the other inputs, summed over the axes that input was broadcast along
    saved for backward: every input, and each partial product of three or more inputs ((a*b)*c keeps a, b, a*b
    and c)
    """

    type = "mul"
    mixes_channels = False
    other_ops_rule = "(inputs - 1) multiplies per output value"

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        from archcalc.ops.merge import broadcast_shape

        kept = [keeps_input(layer, i) for i in range(len(layer.in_shapes))]
        for k in range(2, len(layer.in_shapes)):
            kept.append(new_buffer("partial product", broadcast_shape(layer.in_shapes[:k])))
        return tuple(kept)

    def explain(self, layer: Layer) -> list[tuple[str, str]]:
        no_macs = "0 (element-wise products are no multiply-accumulates: MACs count conv and linear sums of products)"
        return [*super().explain(layer), ("MACs", no_macs)]

    def torch_module(self, layer: Layer) -> Any:
        from archcalc.ops import _torch

        return _torch.Product()

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        y = inputs[0]
        for x in inputs[1:]:
            y = y * x
        return y, inputs

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        grads = []
        for i, x in enumerate(cache):
            grad = dy
            for j, other in enumerate(cache):
                if j != i:
                    grad = grad * other
            grads.append(reduce_to(grad, x.shape))
        return grads, {}
