"""TensorFlow's profiler, as google-research/receptive_field's table of TF-Slim networks uses it.

The table (receptive_field/RECEPTIVE_FIELD_TABLE.md, made by rf_benchmark.py) gives the FLOPs of
every end-point as ``tf.profiler.profile(graph, options=float_operation()).total_float_ops`` over
the graph pruned to that end-point (``convert_variables_to_constants`` keeps its ancestors): the
*cumulative* figure of the end-point (:mod:`archcalc.cumulative`). The profiler counts only ops
with a ``flops`` statistic registered (tensorflow/python/profiler/internal/flops_registry.py,
nn_ops.py, math_ops.py):

- ``Conv2D`` / ``DepthwiseConv2dNative``: ``2 * output values * kernel area * input depth`` (2 per
  multiply-add); ``MatMul`` likewise; ``BiasAdd``: 1 per value;
- ``MaxPool`` / ``AvgPool``: ``kernel area * output values``, padding or not, 1x1 stride-2
  subsampling included (TF-Slim ResNet's shortcut);
- ``Mean`` (a global average pool): 1 per input value; ``Softmax``: 5 per value; ``Mul``: 1 per
  output value; ``Minimum``/``Maximum`` (``clip_by_value``): 1 each;
- nothing for ``Relu``, ``Relu6``, ``FusedBatchNorm``, ``ConcatV2``, ``Pad``, reshapes, and the
  residual ``+`` (``AddV2``, which the registry of the table's TensorFlow 1.x did not list).

The table's rows (alexnet_v2, vgg_16, mobilenet_v1, resnet_v1_50, inception_v2, inception_v3 at
224 and 321) are reproduced to their printed precision by tests/test_convention_tf_profiler.py.
Rules for layers outside the table (GELU, hardswish, the norms but batch norm...) are the TF op
they lower to read from the registry, not measured; composites whose lowering changed across TF
versions (GELU, layer/group/instance norm, LRN, upsample, PReLU, hardswish, hardsigmoid) count 0.
"""

from __future__ import annotations

from archcalc.conventions import Convention, Rule

PRESET = Convention(
    name="tf-profiler",
    tool="TensorFlow 1.x tf.profiler total_float_ops, as google-research/receptive_field's table (f12ae8e) uses it",
    unit="flops",
    summary="2 per multiply-add of conv and linear layers, 1 per bias add, the window area per output of every max "
            "or average pool, 1 per input of a global mean; nothing for ReLU, batch norm, concat or residual adds; "
            "every op without a registered TF flops statistic 0",
    rules={
        "conv": Rule("2 * macs + bias_adds", note="Conv2D/DepthwiseConv2dNative: 2 * outputs * kernel area * input "
                                                   "depth; BiasAdd: 1 per output"),
        "linear": Rule("2 * macs + bias_adds", note="MatMul: 2 * outputs * k; BiasAdd: 1 per output"),
        "conv_transpose": Rule("floor(Fraction(2 * outputs * prod(attrs['kernel']) * (in_channels // groups), "
                               "prod(attrs['stride']))) + bias_adds",
                               note="Conv2DBackpropInput: 2 * output values * kernel values / (output depth * "
                                    "stride product), truncated to an int"),
        "maxpool": Rule("kernel * outputs", note="MaxPool: kernel area * output values"),
        "avgpool": Rule("kernel * outputs", note="AvgPool: kernel area * output values"),
        "global_avgpool": Rule("inputs", note="tf.reduce_mean (Mean): 1 per input value (the divide per output "
                                              "is not added)"),
        "adaptive_avgpool": Rule("inputs", note="as tf.reduce_mean, what TF code writes for a global pool"),
        "softmax": Rule("5 * inputs", note="Softmax: 5 per value (shift, exp, divide)"),
        "mul": Rule("outputs * (n_inputs - 1)", note="Mul: 1 per output value per product"),
        "scale": Rule("outputs * (2 if attrs['bias'] else 1)", note="x * gamma (Mul) + beta (Add, BiasAdd)"),
        "hardtanh": Rule("2 * outputs", note="tf.clip_by_value: Minimum and Maximum"),
        "silu": Rule("outputs", note="tf.nn.silu = x * sigmoid(x): one Mul (Sigmoid unregistered)"),
        "mish": Rule("outputs", note="x * tanh(softplus(x)): one Mul"),
        "add": Rule("0", note="the residual '+' is AddV2, which the table's TF 1.x registry did not list"),
    },
    default=Rule("0"),
    quirks=(
        ("the residual add costs nothing (AddV2 had no flops statistic in TF 1.x)",
         "one add per output value is real work; archcalc counts it among other ops (outputs per extra input)"),
        ("batch norm, ReLU and concat cost nothing (no flops statistic for FusedBatchNorm, Relu, ConcatV2)",
         "archcalc counts inference batch norm as other ops (a multiply and an add per value, once folded) and "
         "ReLU as one max per value"),
        ("a max pool's comparisons count as floating-point operations (kernel area per output)",
         "archcalc counts them among other ops, with the MACs of no multiply"),
    ),
    per_layer=True,
)
