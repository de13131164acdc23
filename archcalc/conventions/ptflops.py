"""ptflops 0.7.5, pytorch backend: what ``get_model_complexity_info(model, input_res, backend="pytorch")`` counts.

The backend counts in two ways at once, and adds them up:

- a forward hook on every module of a type it knows (``nn.Conv2d``, ``nn.ReLU``, ``nn.MaxPool2d``,
  ``nn.BatchNorm2d``, ``nn.Linear``, ``nn.Upsample``...), kept in the module's ``__flops__`` and
  printed per module by ``print_per_layer_stat``;
- while the model runs, ``torch.nn.functional``'s ``relu``, ``prelu``, ``elu``, ``relu6``,
  ``gelu``, ``silu``, ``softmax``, every ``*_pool*d``, ``interpolate`` and ``upsample``, and
  ``torch.add``/``torch.mul``/``Tensor.add``/``Tensor.mul`` and the matrix products, are replaced
  by counting wrappers; their counts go into the total only, under no module.

A module whose own ``forward`` calls one of those functions is counted twice: ``nn.ReLU`` (hook:
its output, ``F.relu``: its input), ``nn.ELU``, ``nn.PReLU``, ``nn.GELU``, every pooling module,
``nn.Upsample`` (through ``F.interpolate``). ``nn.ReLU6`` is not (it runs ``F.hardtanh``), nor
``nn.LeakyReLU`` (``F.leaky_relu`` is not wrapped); ``nn.SiLU`` and ``nn.Softmax`` have no hook and
are counted once, through the function. A model written with ``F.relu(x)`` in its ``forward``
instead of an ``nn.ReLU`` module is counted once there: these rules are for models written with
modules, as archcalc exports them (``archcalc export MODEL --to torch``) and as torchvision
writes most layers. Per layer, a rule is the module's own ``__flops__`` plus the wrapped
functions its ``forward`` called (which ptflops adds to the total but to no module).

On torchvision's own models (tests/test_convention_ptflops.py, ptflops run on both): resnet18 to
resnet152, squeezenet1_0/1_1 and vgg16-cifar give this preset's total exactly; the others differ
by what their code does: vgg11-19 +50,176 (an ``AdaptiveAvgPool2d(7)`` on the 7x7 map, an identity
archcalc's spec leaves out, counted twice its input), densenet121 -100,352 and mobilenet_v2
-62,720 (``F.relu``/``F.adaptive_avg_pool2d`` in ``forward``: once, not twice), inception_v3
-11,544,640 (``F.relu`` in every BasicConv2d, ``F.*_pool2d`` in the Mixed blocks),
r3d_18 -39,190,265,856 (``Conv3DSimple`` is a subclass of ``nn.Conv3d``; ptflops finds no hook).
"""

from __future__ import annotations

from archcalc.conventions import Convention, Rule


def _ptflops_string(value: int) -> str:
    """A count as ptflops prints it by default (``flops_to_string``, precision 2): ``4.13 GMac``."""
    for power, unit in ((9, "GMac"), (6, "MMac"), (3, "KMac")):
        if value // 10**power > 0:
            return f"{round(value / 10.0**power, 2)} {unit}"
    return f"{value} Mac"


#: Whether every axis of a pool is padded equally before and after (the flattened padding's befores
#: are its afters); otherwise the exported module pads with F.pad first, and the pool's hook and
#: F.*_pool*d see the padded input.
_SYMMETRIC = "sum(attrs['padding'], ())[::2] == sum(attrs['padding'], ())[1::2]"
#: Values of one channel of the padded input (rules have no loops: the axes are spelled out, pools
#: are 1D to 3D).
_PADDED_POSITIONS = ("(in_shape[1] + sum(attrs['padding'][0]))"
                     " * (in_shape[2] + sum(attrs['padding'][1]) if len(in_shape) > 2 else 1)"
                     " * (in_shape[3] + sum(attrs['padding'][2]) if len(in_shape) > 3 else 1)")
#: The input the pool module receives: the layer's input, or its padded copy.
_POOL_INPUT = f"(inputs if {_SYMMETRIC} else in_channels * {_PADDED_POSITIONS})"
#: An average over real inputs only with asymmetric padding runs the pool a second time, on the
#: padded mask of real inputs (one channel): pool(pad(x)) / pool(pad(ones)).
_MASK = (f"(0 if {_SYMMETRIC} or attrs['count_include_pad'] or attrs['divisor_override'] is not None"
         f" else {_PADDED_POSITIONS})")
#: F.interpolate's wrapper: outputs when called with a size; with a per-axis scale tuple the
#: input times the product of the scales, each truncated to an int (np.prod(..., dtype=np.int64)).
_INTERPOLATE = ("(outputs if attrs['size'] is not None else inputs * int(attrs['scale_factor'][0])"
                " * (int(attrs['scale_factor'][1]) if len(attrs['scale_factor']) > 1 else 1)"
                " * (int(attrs['scale_factor'][2]) if len(attrs['scale_factor']) > 2 else 1))")

_TWICE = "the module's hook counts its output, the wrapped F.{f} its input again: twice the element count"
_POOL = ("the module's hook counts its input, the wrapped F.{f} its input again: twice the input, whatever the "
         "kernel (asymmetric padding: the padded input)")

PRESET = Convention(
    name="ptflops",
    tool='ptflops 0.7.5 get_model_complexity_info(model, input_res, as_strings=False, backend="pytorch")',
    unit="MACs",
    summary="conv and linear MACs plus bias adds; ReLU, ELU, PReLU, GELU twice per element, pooling twice per "
            "input (module hook plus its wrapped F.* call: modules only, once if the model calls F.* directly); "
            "ReLU6, LeakyReLU, SiLU, softmax once; batchnorm 2 per element, layernorm 1; upsample its output "
            "plus F.interpolate's count; nothing for add, mul, concat and the other op types",
    rules={
        "conv": Rule("macs + bias_adds", note="kernel x in_channels/groups x out_channels per output position, "
                                              "plus one per output for a bias"),
        "linear": Rule("macs + bias_adds", note="in x out per position, plus one per output for a bias"),
        "conv_transpose": Rule("macs + bias_adds", note="kernel x in_channels/groups x out_channels per INPUT "
                                                        "position (the true MACs), plus one per output for a bias"),
        "relu": Rule("outputs + inputs", note=_TWICE.format(f="relu")),
        "elu": Rule("outputs + inputs", note=_TWICE.format(f="elu")),
        "prelu": Rule("outputs + inputs", note=_TWICE.format(f="prelu")),
        "gelu": Rule("outputs + inputs", note=_TWICE.format(f="gelu")),
        "relu6": Rule("outputs", note="the module's hook only: nn.ReLU6 runs F.hardtanh, which is not wrapped"),
        "leaky_relu": Rule("outputs", note="the module's hook only: F.leaky_relu is not wrapped"),
        "silu": Rule("inputs", note="no hook for nn.SiLU; the wrapped F.silu counts its input"),
        "softmax": Rule("inputs", note="no hook for nn.Softmax; the wrapped F.softmax counts its input"),
        "maxpool": Rule(f"2 * {_POOL_INPUT}", note=_POOL.format(f="max_pool")),
        "avgpool": Rule(f"2 * ({_POOL_INPUT} + {_MASK})",
                        note=_POOL.format(f="avg_pool") + "; an average over real inputs only with asymmetric "
                             "padding pools the padded mask too, and that is counted as well"),
        "adaptive_avgpool": Rule("2 * inputs", note=_POOL.format(f="adaptive_avg_pool")),
        "adaptive_maxpool": Rule("2 * inputs", note=_POOL.format(f="adaptive_max_pool")),
        "global_avgpool": Rule("2 * inputs", note="nn.AdaptiveAvgPool(1): " + _POOL.format(f="adaptive_avg_pool")),
        "batchnorm": Rule("2 * inputs", note="2 per input element (affine)"),
        "instancenorm": Rule("(2 if attrs['affine'] else 1) * inputs",
                             note="2 per input element with a learned affine part, else 1"),
        "groupnorm": Rule("(2 if attrs['affine'] else 1) * inputs",
                          note="2 per input element with a learned affine part, else 1"),
        "layernorm": Rule("inputs", note="1 per input element, affine or not: the hook looks for an `affine` "
                                         "attribute, and nn.LayerNorm's is called `elementwise_affine`"),
        "lrn": Rule("3 * inputs + (in_channels + attrs['size'] - 1) * in_positions",
                    note="no hook for nn.LocalResponseNorm; inside F.local_response_norm the wrapped Tensor.mul "
                         "(twice) and Tensor.add count the input each, and the wrapped F.avg_pool*d its input, the "
                         "squares padded by size-1 channels"),
        "upsample": Rule(f"outputs + {_INTERPOLATE}",
                         note="the module's hook counts its output; the wrapped F.interpolate counts the output "
                              "again when given a size, else the input times the product of the scale factors, "
                              "each truncated to an int"),
    },
    default=Rule("0"),
    quirks=(
        ("nn.ReLU, nn.ELU, nn.PReLU, nn.GELU are counted twice: 2 per element (module hook plus the wrapped "
         "F.relu... the module calls); nn.ReLU6 and nn.LeakyReLU once",
         "the work per element does not depend on which module or function computes it: archcalc counts "
         "other ops, ReLU 1 per element (a max), ReLU6 2 (a min and a max), ELU and GELU more, never as MACs"),
        ("pooling is counted as twice its input's size (module hook plus the wrapped F.*pool*d), whatever the "
         "kernel and stride",
         "a max pool makes prod(kernel) - 1 comparisons per output, an average pool prod(kernel) - 1 adds and 1 "
         "divide per output (archcalc's other ops): vgg16's 2x2/2 pool1 is 3 x 802,816 = 2,408,448, not "
         "2 x 3,211,264 = 6,422,528; resnet50's 3x3/2 max pool agrees only by coincidence (8 per output = 2 per "
         "input: 1,605,632)"),
        ("nn.Upsample counts its output twice (hook and F.interpolate); with a scale tuple F.interpolate's count "
         "truncates each scale to an int (1.5 x 1.7 counts as 1 x 1 = the input's size)",
         "the arithmetic is per output value and by mode: archcalc's other ops are 0 for nearest (a copy), 7 per "
         "output for bilinear, 31 for bicubic, and a scale is never truncated"),
        ("the count depends on how the model is written: F.relu(x) in forward is counted once, nn.ReLU twice; "
         "torch.add(a, b) is counted, a + b (and x += y) is not; nn.SiLU and nn.Softmax count only through F.*",
         "a network's cost does not depend on whether its code uses modules or functions"),
        ("module types are looked up exactly (type(module) in its table): a subclass of a known module counts 0. "
         "torchvision's r3d_18 builds its blocks' convs as Conv3DSimple(nn.Conv3d): ptflops gives it 1.59 GMac, "
         "this preset (every conv an nn.Conv3d, as archcalc exports it) 40.78 GMac",
         "a conv is a conv whatever its class is called: archcalc's r3d_18 is 40,696,553,472 MACs"),
        ("a residual add, an element-wise product and a concat count 0 when written with + and * (as "
         "torchvision and archcalc's export write them)",
         "an add or multiply of two tensors is one op per output: archcalc's other ops (resnet50's 16 residual adds: "
         "5,519,360)"),
        ("batchnorm is 2 per element, layernorm 1 per element (the hook reads an `affine` attribute nn.LayerNorm "
         "does not have); sigmoid, tanh, hardswish, hardsigmoid, mish, hardtanh are 0",
         "eval batchnorm folds to one multiply and one add per element (2), layernorm computes mean and variance "
         "too (archcalc: 7 per element with the affine part); every activation costs at least 1 per element"),
        ("bias adds are added to conv and linear MACs: the total mixes multiply-accumulates with single adds and "
         "pooling, yet is printed as GMac",
         "archcalc keeps MACs (conv, linear) and other ops (bias, activations, pooling, norms) apart"),
        ("with a batch of N (input_constructor), the module counts are divided by N (per image) but the wrapped "
         "functions' counts are not: the total is modules per image plus functions for the whole batch",
         "a count is per sample or per batch, not both; archcalc's figures for a batch are N x per sample "
         "(this preset too: it reproduces ptflops's batch-1 call)"),
    ),
    per_layer=True,
    display=_ptflops_string,
)
