"""GELU: x * Phi(x), Phi the standard normal CDF, exactly (erf) or by Hendrycks and Gimpel's tanh form."""

from __future__ import annotations

import math
from typing import Any

from archcalc.errors import RuleError
from archcalc.ops.attrs import Attr, describe
from archcalc.ops.base import UNKNOWN, Cost, Example, Layer, RunContext, Saved, keeps_input, keeps_output, keeps_param, new_buffer, register  # noqa: F401
from archcalc.ops.pointwise import _Elementwise

#: sqrt(2 / pi), the tanh form's scale.
_TANH_SCALE = math.sqrt(2 / math.pi)
#: The tanh form's cubic coefficient (Hendrycks and Gimpel, 2016).
_CUBIC = 0.044715
#: Other ops per value of each form, counted term by term in the docstring.
_OPS_PER_VALUE = {"none": 5, "tanh": 9}


def approximate(value: Any) -> str:
    """"none" (the exact erf form) or "tanh" (the tanh approximation), as PyTorch's ``approximate``."""
    if value not in ("none", "tanh"):
        raise RuleError(f'must be "none" or "tanh", got {describe(value)}')
    return value


@register
class GELU(_Elementwise):
    """x * Phi(x) per value, Phi the standard normal CDF, as PyTorch's GELU (`approximate`: "none" or "tanh").

    "none": x * 0.5 * (1 + erf(x / sqrt(2)))
      other ops = 5 per value (divide by sqrt 2, erf, add 1, multiply by 0.5, multiply by x)
    "tanh": 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
      other ops = 9 per value (x*x, *x, *0.044715, +x, *sqrt(2/pi), tanh, +1, *x, *0.5)
    out = the input's shape; params = 0; MACs = 0
    stores its output (nn.GELU has no in-place form); receptive field: unchanged (pointwise)
    gradient: "none": dy * (Phi(x) + x * phi(x)), phi the normal density;
    "tanh": dy * (0.5 * (1 + t) + 0.5 * x * (1 - t^2) * sqrt(2/pi) * (1 + 3 * 0.044715 * x^2)), t the tanh
    Source: Hendrycks and Gimpel, "Gaussian Error Linear Units (GELUs)" (2016).
    The executor evaluates erf exactly, the C library's erf in float64 (archcalc.kernels.erf: a C
    loop, or math.erf per value without the extension).
    saved for backward: its input (PyTorch saves self)
    """

    type = "gelu"
    mixes_channels = False
    attrs = (Attr("approximate", approximate, "none", '"none" (exact, with erf) or "tanh" (the tanh approximation)'),)
    other_ops_rule = (
        '"none": 5 per value (divide by sqrt 2, erf, add 1, 2 multiplies); '
        '"tanh": 9 per value (3 multiplies for 0.044715*x^3, add x, multiply, tanh, add 1, 2 multiplies)'
    )
    stores_output = True
    examples = (
        Example({}, ((3, 4, 4),), (3, 4, 4)),
        Example({}, ((5,),), (5,)),
        Example({"approximate": "tanh"}, ((2, 7),), (2, 7)),
        Example({"approximate": "tanh"}, ((3, 4, 4),), (3, 4, 4)),
        Example({}, ((2, 3, 3, 4),), (2, 3, 3, 4)),
    )

    def saved(self, layer: Layer) -> tuple[Saved, ...] | str:
        """What backward keeps: "saved for backward" in the class docstring."""
        return (keeps_input(layer),)

    def cost(self, layer: Layer) -> Cost:
        return Cost(0, _OPS_PER_VALUE[layer.attrs["approximate"]] * math.prod(layer.out_shape))

    def summary(self, layer: Layer) -> str:
        return "tanh" if layer.attrs["approximate"] == "tanh" else ""

    def forward(self, layer: Layer, inputs: list[Any], params: dict[str, Any], ctx: RunContext) -> tuple[Any, Any]:
        import numpy as np

        from archcalc import kernels

        x = inputs[0]
        if layer.attrs["approximate"] == "tanh":
            t = np.tanh(_TANH_SCALE * (x + _CUBIC * x * x * x))
            return 0.5 * x * (1 + t), (x, t)
        # the C library's erf, as torch's (kernels.erf: in C, or per value through math.erf)
        erf = kernels.erf(x * (1 / math.sqrt(2)))
        cdf = 0.5 * (1 + erf)
        return x * cdf, (x, cdf)

    def backward(self, layer: Layer, dy: Any, cache: Any) -> tuple[list[Any], dict[str, Any]]:
        import numpy as np

        x = cache[0]
        if layer.attrs["approximate"] == "tanh":
            t = cache[1]
            slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _TANH_SCALE * (1 + 3 * _CUBIC * x * x)
            return [dy * slope], {}
        density = np.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
        return [dy * (cache[1] + x * density)], {}

    def torch_module(self, layer: Layer) -> Any:
        from torch import nn

        return nn.GELU(approximate=layer.attrs["approximate"])
