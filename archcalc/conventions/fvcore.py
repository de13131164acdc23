"""fvcore's ``FlopCountAnalysis``: multiply-adds of conv and linear, plus a few element-wise handles.

fvcore 0.1.5 traces the model with ``torch.jit`` and counts only the aten ops it has a handle for
(``fvcore/nn/flop_count.py`` ``_DEFAULT_SUPPORTED_OPS``, formulas in ``fvcore/nn/jit_handles.py``);
every other op (``aten::max_pool2d``, ``aten::avg_pool2d``, ``aten::add``, ``aten::hardtanh``, ...)
is skipped with a warning and counts 0. It calls one multiply-add one "flop". The rules below were
found by running fvcore on every example of every op archcalc registers (exported with
``archcalc.exporters.torch.to_torch``) and are checked against it on every zoo model, in total and
per module (``by_module()``), and on torchvision's own models, by tests/test_convention_fvcore.py.
"""

from __future__ import annotations

from archcalc.conventions import Convention, Rule


def _norm(affine: str) -> Rule:
    """fvcore's ``norm_flop_counter`` (``aten::group_norm``, ``aten::layer_norm``,
    ``aten::instance_norm``): 5 per input value with a learned scale ("5 is just a rough
    estimate"), 4 without; ``affine`` names the attribute that says whether the layer has one."""
    return Rule(f"5 * inputs if attrs['{affine}'] else 4 * inputs",
                note="norm_flop_counter: 5 per input value with a learned scale ('a rough estimate'), 4 without")


#: ``aten::adaptive_avg_pool2d`` is the only adaptive pool with a handle (1 per input value); the
#: 1D and 3D ones (``aten::adaptive_avg_pool1d``/``3d``) have none and count 0.
_ADAPTIVE_AVG = Rule("inputs if len(in_shape) == 3 else 0",
                     note="aten::adaptive_avg_pool2d: 1 per input value; the 1D and 3D ops have no handle: 0")

PRESET = Convention(
    name="fvcore",
    tool="fvcore 0.1.5 FlopCountAnalysis(model.eval(), inputs).total()",
    unit="flops",
    summary="one 'flop' per multiply-add of conv, transposed conv and linear (no bias); eval batchnorm 2 per value, "
            "group/layer/instance norm 5 per value (4 without affine), 2D adaptive/global average pool 1 per input "
            "value, 2D nearest upsample 1 and bilinear 4 per output value; everything else (pooling, activations, "
            "adds, 1D/3D adaptive pools and other upsampling modes) 0",
    rules={
        "conv": Rule("macs", note="aten::_convolution: prod(w.shape) * prod(out spatial), the multiply-adds without bias"),
        "conv_transpose": Rule("macs", note="aten::_convolution, transposed: prod(w.shape) * prod(in spatial)"),
        "linear": Rule("macs", note="aten::linear: prod(input) * out_features, no bias"),
        "batchnorm": Rule("2 * inputs", note="aten::batch_norm in eval with a learned scale: 2 per input value "
                                             "(5 per value in training mode)"),
        "groupnorm": _norm("affine"),
        "instancenorm": _norm("affine"),
        "layernorm": _norm("elementwise_affine"),
        "adaptive_avgpool": _ADAPTIVE_AVG,
        "global_avgpool": _ADAPTIVE_AVG,
        "upsample": Rule("outputs if attrs['mode'] == 'nearest' and len(out_shape) == 3 else "
                         "4 * outputs if attrs['mode'] == 'bilinear' else 0",
                         note="aten::upsample_nearest2d 1 and aten::upsample_bilinear2d 4 per output value; "
                              "1D/3D nearest, linear, trilinear and bicubic have no handle: 0"),
    },
    default=Rule("0", note="no handle: fvcore skips the op (a warning) and counts 0"),
    quirks=(
        ("it calls a multiply-add one 'flop' (its docstring says 'We count one fused multiply-add as one flop')",
         "the number is MACs, not FLOPs; archcalc's macs for conv and linear, FLOPs = 2 x macs"),
        ("it adds element-wise counts to the multiply-adds (eval batchnorm 2 per value, norms 5 per value, 2D "
         "adaptive average pool 1 per input value, bilinear upsample 4 per output value)",
         "a MAC count mixed with element-wise ops is neither MACs nor FLOPs; archcalc counts these layers 0 MACs and "
         "their arithmetic apart as other ops (batchnorm 4 per value, norms 5 to 7 per value, global average pool 1 "
         "per input value, bilinear upsample 7 per output value)"),
        ("it skips ops without a handle (max and average pooling, activations, residual adds, every upsampling mode "
         "but 2D nearest and bilinear, and the 1D and 3D adaptive average pools, so r3d_18's final pool counts 0 "
         "where resnet18's counts 25,088)",
         "the same layer then counts differently with its rank; archcalc counts each as other ops whatever the rank"),
        ("it counts a 2D nearest upsample 1 per output value",
         "nearest upsampling copies values and computes nothing; archcalc counts 0 MACs and 0 other ops"),
        ("it counts a batchnorm 5 per value in training mode and 2 in eval (this preset is the eval count)",
         "archcalc counts 0 MACs and 4 other ops per value, whatever the mode"),
    ),
    per_layer=True,
)
