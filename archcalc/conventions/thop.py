"""thop's convention: ``thop.profile(model, inputs)``, the "MACs" of its per-module hooks.

thop (pytorch-OpCounter 0.1.1.post2209072238, ``thop/profile.py`` and ``thop/vision/``) hooks
every module whose *exact* class is in its table ``register_hooks`` and adds each hook's figure
to a float64 buffer ``total_ops`` of the module, once per call; ``profile`` returns the sum over
the modules. A module of any other class (``nn.GELU``, ``nn.GroupNorm``, a subclass of
``nn.Conv3d`` such as torchvision's ``Conv3DSimple``) and every functional call (``torch.cat``,
``+``, ``F.relu``, ``F.adaptive_avg_pool2d``, ``x.reshape``) counts 0. The rules below are those
hooks applied to the module archcalc exports for each op (``archcalc.exporters.torch``), found by
running thop on every example of every op and on every zoo model (tests/test_convention_thop.py).
"""

from __future__ import annotations

from archcalc.conventions import Convention, Rule

#: The per-axis kernel thop gives an adaptive average pool, multiplied in thop's order (each
#: factor a float64 division, as torch.div of two DoubleTensors; torch.prod multiplies left to
#: right): in/out on the first spatial axis, then the second and third where the input has them.
_ADAPTIVE_KERNEL = ("(in_shape[1] / out_shape[1])"
                    " * (in_shape[2] / out_shape[2] if len(in_shape) > 2 else 1)"
                    " * (in_shape[3] / out_shape[3] if len(in_shape) > 3 else 1)")

#: Whether archcalc's export runs the average pool twice, ``pool(pad(x)) / pool(pad(ones))`` (the mean
#: over each window's real inputs after asymmetric padding, ops/pool.py): padding uneven on some axis,
#: the divisor counting only real inputs. ``sum(padding, ())`` flattens the (before, after) pairs.
_AVGPOOL_TWICE = ("sum(attrs['padding'], ())[::2] != sum(attrs['padding'], ())[1::2]"
                  " and not attrs['count_include_pad'] and attrs['divisor_override'] is None")

PRESET = Convention(
    name="thop",
    tool="thop 0.1.1.post2209072238 thop.profile(model, inputs)[0]",
    unit="MACs",
    summary="conv and linear multiply-accumulates without bias (a transposed conv by the conv formula on its "
            "output), batchnorm/layernorm/instancenorm 4 per element (2 without affine), average pools 1 per "
            "output, adaptive average pools (in/out + 1) per output, softmax 3n-1 per vector, PReLU 1 per element, "
            "upsampling per output by mode; every other module (ReLU, max-pools, GELU, SiLU, GroupNorm...) and "
            "every functional op (add, concat, reshape) 0",
    rules={
        "conv": Rule("outputs * (in_channels // groups) * kernel",
                     note="count_convNd: output values x (input channels / groups) x kernel; the bias is not counted"),
        "conv_transpose": Rule("outputs * (in_channels // groups) * kernel",
                               note="count_convNd, the ordinary conv's formula on the transposed conv's output: "
                                    "about stride^d times its multiply-accumulates (a quirk)"),
        "linear": Rule("outputs * in_shape[-1]",
                       note="count_linear: in_features per output value (every position of a channels-last "
                            "input); the bias is not counted"),
        "batchnorm": Rule("4 * inputs", note="count_normalization: 2 per element, doubled when affine"),
        "instancenorm": Rule("(4 if attrs['affine'] else 2) * inputs",
                             note="count_normalization: 2 per element, doubled when affine"),
        "layernorm": Rule("(4 if attrs['elementwise_affine'] else 2) * inputs",
                          note="count_normalization: 2 per element, doubled with elementwise_affine (a shift or not)"),
        "groupnorm": Rule("0", note="nn.GroupNorm has no hook (thop registers the other norms)"),
        "prelu": Rule("inputs", note="count_prelu in eval mode: 1 per element"),
        "softmax": Rule("in_positions * (3 * in_channels - 1)",
                        note="count_softmax over the channel axis (n values): n exp + (n - 1) adds + n divides "
                             "per vector"),
        "avgpool": Rule(f"outputs + (positions if {_AVGPOOL_TWICE} else 0)",
                        note="count_avgpool: 1 per output value, whatever the window; archcalc's export runs the "
                             "pool a second time, on a one-channel mask, where asymmetric padding must not count "
                             "in the divisor, and thop counts both calls"),
        "adaptive_avgpool": Rule(f"int(({_ADAPTIVE_KERNEL} + 1) * outputs)",
                                 note="count_adap_avgpool: (prod(in/out) + 1) per output value in float64, "
                                      "truncated to an int once for the layer (a fractional mean kernel)"),
        "global_avgpool": Rule("(in_positions + 1) * outputs",
                               note="count_adap_avgpool of AdaptiveAvgPool(1): (input positions + 1) per output"),
        "upsample": Rule("outputs * (1 if attrs['mode'] == 'nearest' else 5 if attrs['mode'] == 'linear' else "
                         "11 if attrs['mode'] == 'bilinear' else 259 if attrs['mode'] == 'bicubic' else 0)",
                         note="count_upsample: per output value 1 (nearest), 5 (linear), 11 (bilinear), 259 "
                              "(bicubic); trilinear is 'not implemented yet' (0, with a warning)"),
        "relu": Rule("0", note="zero_ops"),
        "relu6": Rule("0", note="zero_ops (ReLU6; a general Hardtanh has no hook: 0 too)"),
        "leaky_relu": Rule("0", note="count_relu returns 0"),
        "maxpool": Rule("0", note="zero_ops"),
        "adaptive_maxpool": Rule("0", note="zero_ops"),
        "dropout": Rule("0", note="zero_ops"),
        "opaque": Rule("0", note="uncounted: an imported op archcalc has no rule for (no torch module to hook)"),
    },
    default=Rule("0", note="not hooked: thop has no rule for the module's class, or the export runs it as a function"),
    quirks=(
        ("a transposed conv is counted with the ordinary conv's formula on its output: output values x "
         "in_channels/groups x kernel",
         "each input value scatters one kernel: archcalc counts in_channels x (out_channels/groups) x kernel x "
         "input positions MACs (CONVENTIONS.md; fvcore, ptflops and FlopCounterMode agree); thop's figure is about "
         "stride^d times that (4x for a stride-2 2D upsampling conv: 12,288 for archcalc's 3,072)"),
        ("element-wise work is added to the MACs for a few module classes: batchnorm, layernorm and instancenorm 4 "
         "per element (2 without affine), softmax 3n - 1 per vector, PReLU 1 per element, average pools, upsampling",
         "none of it multiplies a learned weight into a sum: archcalc counts 0 MACs and keeps it apart as other ops "
         "(batchnorm 4 per value: subtract the mean, divide by the std, scale, shift; layernorm 5 per value + 1 each "
         "for the scale and the shift; softmax 3 per value; PReLU 2 per value). Batchnorm alone adds 44,455,936 to "
         "resnet50's 4,089,184,256 MACs (1.1%) and 26,712,448 to mobilenet_v2's 300,774,272 (8.9%)"),
        ("the same kind of work counts for some classes and not others: ReLU, max-pools, GELU, SiLU, Hardswish, "
         "GroupNorm, LRN, residual adds and concats count 0",
         "archcalc counts every op's element-wise work as other ops (GroupNorm as LayerNorm, GELU 5 per value...)"),
        ("an adaptive average pool counts (prod(in/out) + 1) per output in float64, truncated: a mean window no "
         "window has (64/9 values for 8 -> 3), and 409 where exact arithmetic gives 410 (13 -> 6 on 2 channels)",
         "PyTorch's windows have floor/ceil bounds, 3 + 4 + 3 = 10 values per axis for 8 -> 3: archcalc counts "
         "each actual window's adds and divide as other ops, c x prod(in + out - gcd(in, out)), and 0 MACs"),
        ("an average pool counts 1 per output value whatever its kernel; a global one (input positions + 1)",
         "averaging k values is k - 1 adds and a divide: archcalc's other ops are prod(k) per output (a global pool "
         "prod(S) per channel), 0 MACs"),
        ("bilinear upsampling counts 11 per output, linear 5, bicubic 259, nearest 1, trilinear 0",
         "nothing multiplies a learned weight (0 MACs); archcalc counts 2T - 1 other ops per output for T taps "
         "(bilinear 7, linear 3, bicubic 31, trilinear 15, nearest 0)"),
        ("a module counts only when its exact class is registered: a subclass (torchvision's Conv3DSimple, a "
         "nn.Conv3d) counts 0: thop gives torchvision's r3d_18 1,591,637,504, its export (plain nn.Conv3d) 40,781,903,360",
         "archcalc counts by op type, whatever a framework calls the class: r3d_18 has 40,696,553,472 MACs"),
        ("a function (F.adaptive_avg_pool2d, F.avg_pool2d, torch.cat, +) is never counted, so the same network "
         "counts differently as modules or as functions (torchvision's mobilenet_v2 64,000 less than its export)",
         "archcalc counts the layer, however the framework runs it"),
        ("the adaptive pool's float figure is truncated once per call over the whole batch",
         "this preset counts per sample times the batch: for a batch of B the two may differ by less than B on a "
         "layer whose in/out is fractional (819 for thop, 818 here, 13 -> 6 on 2 channels, a batch of 2)"),
    ),
    per_layer=True,
)
