"""torchinfo's convention: ``torchinfo.summary(model, input_data=...).total_mult_adds``.

torchinfo 1.8.0 (``LayerInfo.calculate_macs``, ``torchinfo/layer_info.py``) counts, for every
call of a leaf module, each of its parameters named ``weight`` or ``bias``: once per output
position (batch and spatial axes, channels excluded) when the module's class name contains
"Conv", once per sample otherwise. Nothing else counts: a module without parameters (ReLU,
pooling, upsampling, softmax) and every functional call (``+``, ``torch.cat``) are 0. The rules
below are that rule applied to the module archcalc exports for each op
(``archcalc.exporters.torch``), checked by running torchinfo on every example of every op and on
every zoo model (tests/test_convention_torchinfo.py).
"""

from __future__ import annotations

from archcalc.conventions import Convention, Rule

PRESET = Convention(
    name="torchinfo",
    tool="torchinfo 1.8.0 summary(model, input_data=[x]).total_mult_adds",
    unit="mult-adds",
    summary="every learned parameter (weight and bias) of a module once per output position for Conv classes "
            "(conv, transposed conv), once per sample for every other module (linear, norms, PReLU, scale); "
            "modules without parameters and functional ops 0",
    rules={
        "conv": Rule("params * positions",
                     note="'Conv' in the class name: (weights + biases) x output positions; a bias counts as a "
                          "multiply-add"),
        "conv_transpose": Rule("params * positions",
                               note="'Conv' in the class name: (weights + biases) x *output* positions, about "
                                    "stride^d times the transposed conv's multiply-accumulates (a quirk)"),
        "linear": Rule("params",
                       note="not a Conv class: every parameter once per sample, however many positions a "
                            "channels-last input has (a quirk)"),
        "opaque": Rule("0", note="uncounted: an imported op archcalc has no rule for (no torch module to summarise)"),
    },
    default=Rule("params", note="every learned parameter once per sample (batchnorm, layernorm, groupnorm, affine "
                                "instancenorm: 2 per channel or normalised value; PReLU's slopes; scale's multipliers); "
                                "0 for a layer without parameters"),
    quirks=(
        ("a Linear layer's parameters are counted once per sample, not once per position: a channels-last Linear "
         "on H x W positions (ConvNeXt's pointwise layers) is counted 1/(H x W) of its work (0.02x at 7x7: 37,248 "
         "for 96 -> 384 on 7x7x96)",
         "a Linear acting on the last axis multiplies its weight at every position: archcalc counts in x out x "
         "positions MACs, 1,806,336 there (FlopCounterMode and the NumPy executor agree)"),
        ("a transposed conv is counted as (weights + biases) x its output positions",
         "each input value scatters one kernel: archcalc counts in_channels x (out_channels/groups) x kernel x "
         "input positions MACs; torchinfo's figure is about stride^d times that (12,544 for archcalc's 3,072 at "
         "stride 2 in 2D)"),
        ("biases are counted as multiply-adds (a conv's bias once per output value, a linear's once per unit)",
         "a bias add multiplies nothing: archcalc counts it as one other op per output value, not a MAC"),
        ("a norm's scale and shift count once per sample (2 per channel for batchnorm), whatever the map's size",
         "a norm multiplies no weight into a sum: archcalc counts 0 MACs and its element-wise work per value as "
         "other ops (batchnorm 4 per value)"),
        ("modules without parameters count 0: pooling, softmax, upsampling, activations, and functional ops",
         "archcalc counts their element-wise work as other ops (never MACs)"),
    ),
    per_layer=True,
)
