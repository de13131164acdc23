"""PyTorch's ``torch.utils.flop_counter.FlopCounterMode``: 2 FLOPs per multiply-add of conv and matmul,
forward and backward.

FlopCounterMode counts the aten ops of its ``flop_registry`` (torch/utils/flop_counter.py): ``mm``,
``addmm``, ``bmm``, ``baddbmm``, the convolutions, ``convolution_backward`` and attention; every
other op (batch norm, pooling, activations, adds, interpolation, ...) counts 0, forward and
backward. Forward, that is exactly 2 x archcalc's MACs for every op archcalc registers (the
registry's tests check it op by op). Backward:

- a linear layer's ``addmm``/``mm`` backward runs one ``mm`` for the input gradient (only when the
  input requires a gradient) and one for the weight gradient, each as many multiply-adds as the
  forward;
- ``conv_backward_flop`` counts the input gradient as the forward (``output_mask[0]``, only when
  the input requires a gradient), but the weight gradient as ``conv_flop_count(x.T, grad_out.T,
  grad_weight.T)``, a convolution of all input channels with all output channels: ``groups`` times
  the multiply-adds of a grouped conv's weight gradient (a depthwise conv's: ``channels`` times).

The preset is ``get_total_flops()`` of ``model(x)`` (forward) and of ``model(x).sum().backward()``
(forward + backward) with ``x`` not requiring a gradient, and ``get_flop_counts()`` per module.
Checked on every zoo model (forward; forward + backward with the input requiring a gradient or not;
per module) and on torchvision's own models by tests/test_convention_flopcounter.py.
"""

from __future__ import annotations

from archcalc.conventions import Convention, Rule

#: conv_backward_flop: the input gradient as the forward (when needed), the weight gradient as if groups = 1.
_CONV = Rule("macs", backward="needs_input_grad * macs + groups * macs",
             note="convolution_backward: input gradient = forward (when the input needs one); weight gradient counted "
                  "as an ungrouped conv, groups x the forward")

PRESET = Convention(
    name="flopcounter",
    tool="torch 2.13 FlopCounterMode().get_total_flops() (torch.utils.flop_counter; 2.14.1 has the same rules)",
    unit="FLOPs",
    summary="2 per multiply-add of conv, transposed conv and linear (matmul), no bias; everything else 0. Backward: "
            "input gradient (when needed) and weight gradient each as the forward, except a grouped conv's weight "
            "gradient, counted groups times",
    rules={
        "conv": _CONV,
        "conv_transpose": _CONV,
        "linear": Rule("macs", backward="needs_input_grad * macs + macs",
                       note="addmm/mm forward; backward one mm for the input gradient (when needed), one for the weight"),
    },
    default=Rule("0", backward="0",
                 note="no flop formula: FlopCounterMode counts mm, addmm, bmm, baddbmm, convolutions and attention only"),
    quirks=(
        ("it counts a grouped conv's weight gradient as an ungrouped conv's, groups times the true count (a "
         "depthwise conv's, channels times), as conv_backward_flop calls conv_flop_count(x.T, grad_out.T, "
         "grad_weight.T), which knows no groups; mobilenet_v2's forward + backward comes out 12,279,700,992 FLOPs, "
         "6.9x the 1,782,969,600 it runs",
         "a conv's weight gradient takes as many multiply-adds as its forward (each weight meets each of its input "
         "values once per output position), so archcalc's weight_grad_macs = macs, divided by groups as the forward"),
        ("per module (not in total), it charges a module every backward FLOP run between its entry (its output's "
         "gradient) and its exit (its inputs' gradients all complete, after every other layer reading the same input "
         "has run its backward, so a ResNet shortcut conv is charged its block's first convs); a module whose inputs "
         "need no gradient (the first conv, every branch reading the network input) or that returns its input tensor "
         "itself (nn.Dropout and nn.Identity in eval) is never left, and is charged all the backward after its own",
         "these are ModuleTracker's hooks, not the counting; archcalc gives each layer its own backward"),
        ("it calls 2 x MACs 'FLOPs' and counts nothing else (bias adds, batch norm, pooling, activations, residual "
         "adds and interpolation are 0)",
         "archcalc counts those as other ops (a bias add 1 per output value, batch norm 4 per value...); this is the "
         "FLOPs of the multiply-adds alone"),
    ),
    per_layer=True,
    scale=2,
)
