"""ONNX import (issue 12): hand-built models for every op and attribute form, checked three ways.

Each case builds a small model with ``onnx.helper`` and writes the archcalc spec of the same
network by hand. The import must give exactly the analysis of that spec (every figure of every
layer: shape, params, buffers, MACs, other ops, memory, receptive field); where a number is
worth stating, the test also works it out by hand; and when onnxruntime imports, the model runs
there and its output shape must equal archcalc's. Exporters' decompositions (SiLU, GELU, linear
on N-D tensors, channel shuffle, shape computations) are recognised as the layers they were.
Torch models are exported with torch.onnx.export and compared with torch's own counts.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import archcalc  # noqa: E402
from archcalc.errors import MissingToolError, SpecError  # noqa: E402
from archcalc.importers.onnx import from_onnx  # noqa: E402
from archcalc.spec import from_dict  # noqa: E402

INT64_MAX = 2**63 - 1


class Model:
    """A small ONNX graph under construction: one input ``x``, nodes, initializers."""

    def __init__(self, shape, opset=17, name="m"):
        self.shape, self.opset, self.name = list(shape), opset, name
        self.nodes, self.inits, self.count = [], [], 0

    def init(self, name, value, dtype=np.float32):
        array = np.asarray(value, dtype=dtype) if not isinstance(value, tuple) else \
            np.random.default_rng(len(self.inits)).standard_normal(value).astype(dtype)
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, name=None, outputs=1, **attrs):
        self.count += 1
        name = name or f"{op.lower()}{self.count}"
        outs = [f"{name}_out{i}" if i else name + "_out" for i in range(outputs)] if isinstance(outputs, int) else outputs
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs[0] if len(outs) == 1 else outs

    def proto(self, outputs=None, input_shape=None):
        outputs = outputs or [self.nodes[-1].output[0]]
        graph = helper.make_graph(
            self.nodes, self.name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape or self.shape)],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])

    def save(self, directory, filename="model.onnx", **kwargs):
        path = Path(directory) / filename
        onnx.save(self.proto(**kwargs), str(path))
        return path


def summary(analysis):
    """Every figure of every layer except names: inputs by position instead."""
    index = {layer.name: i for i, layer in enumerate(analysis.layers)}
    rows = []
    for layer in analysis.layers:
        row = layer.to_dict()
        row["inputs"] = [index[name] for name in row["inputs"]]
        del row["name"], row["scope"]
        rows.append(row)
    return rows


def spec(shape, layers):
    return from_dict({"name": "spec", "input": list(shape), "layers": layers})


def check_against_spec(path, layers, input_shape=None, **kwargs):
    """Import path; its analysis equals the hand-written spec's; returns the analysis."""
    graph = from_onnx(path, input_shape, **kwargs)
    imported = archcalc.analyze(graph)
    expected = archcalc.analyze(spec(graph.input_shape, layers))
    assert summary(imported) == summary(expected)
    return imported


def ort_output_shapes(path, input_shape):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
    return [tuple(o.shape) for o in session.run(None, {"x": x})]


# ---- cases: (id, build) where build() returns (Model, spec layers); the import must equal the spec ----

def conv_case(**attrs):
    def build():
        m = Model([1, 3, 9, 9])
        w = m.init("w", (4, 3, 3, 3))
        m.node("Conv", ["x", w, m.init("b", (4,))], kernel_shape=[3, 3], **attrs)
        return m, None
    return build


def _conv_layers(padding, stride=1, dilation=1, groups=1, bias=True, filters=4, kernel=3):
    return [{"type": "conv", "filters": filters, "kernel": kernel, "stride": stride, "padding": padding,
             "dilation": dilation, "groups": groups, "bias": bias}]


def case_conv_pads_symmetric():
    m, _ = conv_case(pads=[1, 1, 1, 1])()
    return m, _conv_layers(1)


def case_conv_pads_asymmetric():
    m, _ = conv_case(pads=[0, 1, 2, 0], strides=[2, 2])()  # [h_begin, w_begin, h_end, w_end]
    return m, _conv_layers([[0, 2], [1, 0]], stride=2)


def case_conv_valid():
    m, _ = conv_case(auto_pad="VALID", strides=[2, 1])()
    return m, _conv_layers(0, stride=[2, 1])


def case_conv_same_upper():
    m, _ = conv_case(auto_pad="SAME_UPPER", strides=[2, 2])()
    return m, _conv_layers("same", stride=2)


def case_conv_same_lower():
    # in 9, k 3, s 2: out ceil(9/2) = 5, total = (5-1)*2 + 3 - 9 = 2 -> 1 and 1; on 8: total 1 -> 1 before, 0 after
    m = Model([1, 3, 8, 9])
    m.node("Conv", ["x", m.init("w", (4, 3, 3, 3))], auto_pad="SAME_LOWER", strides=[2, 2])
    return m, _conv_layers([[1, 0], [1, 1]], stride=2, bias=False)


def case_conv_dilated_grouped_1d():
    m = Model([1, 6, 20])
    m.node("Conv", ["x", m.init("w", (6, 1, 3))], dilations=[2], group=6, pads=[2, 2])
    return m, [{"type": "conv", "filters": 6, "kernel": 3, "dilation": 2, "groups": 6, "padding": 2, "bias": False}]


def case_conv_3d():
    m = Model([1, 2, 5, 6, 7])
    m.node("Conv", ["x", m.init("w", (3, 2, 3, 1, 2)), m.init("b", (3,))], strides=[1, 2, 1], pads=[1, 0, 0, 1, 0, 1])
    return m, [{"type": "conv", "filters": 3, "kernel": [3, 1, 2], "stride": [1, 2, 1],
                "padding": [[1, 1], [0, 0], [0, 1]]}]


def case_conv_transpose_pads():
    m = Model([1, 4, 5, 5])
    m.node("ConvTranspose", ["x", m.init("w", (4, 2, 3, 3)), m.init("b", (2,))], strides=[2, 2], pads=[1, 1, 1, 1],
           output_padding=[1, 1])
    return m, [{"type": "conv_transpose", "filters": 2, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1}]


def case_conv_transpose_output_shape():
    # output_shape 10 from 5 at stride 2, k 3: total = 2*4 + 0 + 3 - 10 = 1 -> begin 1, end 0 (NOTSET: begin gets the odd one)
    m = Model([1, 4, 5, 5])
    m.node("ConvTranspose", ["x", m.init("w", (4, 6, 3, 3))], strides=[2, 2], output_shape=[10, 10], group=2)
    return m, [{"type": "conv_transpose", "filters": 12, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1,
                "groups": 2, "bias": False}]


def case_conv_transpose_same_upper():
    # SAME_UPPER: out 5*2 = 10, total 2*4 + 3 - 10 = 1 -> begin 0, end 1: PyTorch's form cannot put more at the end
    m = Model([1, 4, 5, 5])
    m.node("ConvTranspose", ["x", m.init("w", (4, 2, 3, 3))], strides=[2, 2], auto_pad="SAME_UPPER")
    return m, None


def case_gemm_transb():
    m = Model([1, 12])
    m.node("Gemm", ["x", m.init("w", (5, 12)), m.init("b", (5,))], transB=1, alpha=0.5, beta=2.0)
    return m, [{"type": "linear", "units": 5}]


def case_gemm_plain_no_bias():
    m = Model([1, 12])
    m.node("Gemm", ["x", m.init("w", (12, 5))])
    return m, [{"type": "linear", "units": 5, "bias": False}]


def case_gemm_beta_zero():
    m = Model([1, 12])
    m.node("Gemm", ["x", m.init("w", (12, 5)), m.init("b", (5,))], beta=0.0)
    return m, [{"type": "linear", "units": 5, "bias": False}]


def case_matmul_add_nd():
    # ConvNeXt's pointwise linear on a channels-last tensor: (N, H, W, C) @ (C, 4C) + b
    m = Model([1, 3, 4, 8])
    y = m.node("MatMul", ["x", m.init("w", (8, 16))], name="fc")
    m.node("Add", [y, m.init("b", (16,))], name="fc_bias")
    return m, [{"type": "linear", "units": 16}]


def case_matmul_alone():
    m = Model([1, 8])
    m.node("MatMul", ["x", m.init("w", (8, 3))])
    return m, [{"type": "linear", "units": 3, "bias": False}]


def unary_case(op, layer, shape=(1, 4, 5, 5), opset=17, **attrs):
    def build():
        m = Model(list(shape), opset)
        m.node(op, ["x"], **attrs)
        return m, [layer]
    return build


def case_prelu_per_channel():
    m = Model([1, 4, 5, 5])
    m.node("PRelu", ["x", m.init("slope", np.full((4, 1, 1), 0.25))])
    return m, [{"type": "prelu", "num_parameters": 4}]


def case_prelu_shared():
    m = Model([1, 4, 5, 5])
    m.node("PRelu", ["x", m.init("slope", [0.25])])
    return m, [{"type": "prelu"}]


def clip_case(opset, low, high, layer):
    def build():
        m = Model([1, 4, 5, 5], opset)
        if opset < 11:
            attrs = {k: v for k, v in (("min", low), ("max", high)) if v is not None}
            m.node("Clip", ["x"], **attrs)
        else:
            inputs = ["x", m.init("lo", low) if low is not None else "", m.init("hi", high) if high is not None else ""]
            while inputs[-1] == "":
                inputs.pop()
            m.node("Clip", inputs)
        return m, [layer]
    return build


def case_silu_pattern():
    m = Model([1, 4, 5, 5])
    s = m.node("Sigmoid", ["x"], name="act")
    m.node("Mul", ["x", s], name="act_mul")
    return m, [{"type": "silu"}]


def case_hardswish_pattern():
    m = Model([1, 4, 5, 5])
    s = m.node("HardSigmoid", ["x"], alpha=1 / 6, beta=0.5)
    m.node("Mul", [s, "x"])
    return m, [{"type": "hardswish"}]


def gelu_case(form):
    def build():
        m = Model([1, 4, 5, 5])
        sqrt2 = m.init("sqrt2", np.float32(math.sqrt(2)))
        one, half = m.init("one", np.float32(1.0)), m.init("half", np.float32(0.5))
        if form == "torch":  # torch's legacy export: ((x * (erf(x / sqrt2) + 1)) * 0.5
            d = m.node("Div", ["x", sqrt2])
            e = m.node("Erf", [d])
            a = m.node("Add", [e, one])
            p = m.node("Mul", ["x", a])
            m.node("Mul", [p, half])
        elif form == "half_first":  # (x * 0.5) * (1 + erf(x * (1/sqrt2)))
            h = m.node("Mul", ["x", half])
            d = m.node("Mul", ["x", m.init("rsqrt2", np.float32(1 / math.sqrt(2)))])
            e = m.node("Erf", [d])
            a = m.node("Add", [one, e])
            m.node("Mul", [h, a])
        else:  # x * ((erf(x / sqrt2) + 1) * 0.5)
            d = m.node("Div", ["x", sqrt2])
            e = m.node("Erf", [d])
            a = m.node("Add", [e, one])
            h = m.node("Mul", [a, half])
            m.node("Mul", ["x", h])
        return m, [{"type": "gelu"}]
    return build


def case_add_mul_activations():
    m = Model([1, 4, 5, 5])
    r = m.node("Relu", ["x"], name="r")
    a = m.node("Add", ["x", r], name="a")
    pooled = m.node("GlobalAveragePool", [a], name="g")
    gate = m.node("Sigmoid", [pooled], name="s")
    m.node("Mul", [a, gate], name="se")
    return m, [{"type": "relu", "name": "r"}, {"type": "add", "name": "a", "inputs": ["input", "r"]},
               {"type": "global_avgpool", "name": "g"}, {"type": "sigmoid", "name": "s"},
               {"type": "mul", "inputs": ["a", "s"]}]


def case_layer_scale():
    m = Model([1, 4, 5, 5])
    m.node("Mul", [m.init("gamma", np.full((4, 1, 1), 1e-6)), "x"])
    return m, [{"type": "scale"}]


def case_scale_with_bias():
    m = Model([1, 4, 5, 5])
    s = m.node("Mul", ["x", m.init("gamma", (1, 4, 1, 1))])
    m.node("Add", [s, m.init("beta", (4, 1, 1))])
    return m, [{"type": "scale", "bias": True}]


def case_concat():
    m = Model([1, 4, 5, 5])
    r = m.node("Relu", ["x"], name="r")
    m.node("Concat", ["x", r], axis=-3)
    return m, [{"type": "relu", "name": "r"}, {"type": "concat", "inputs": ["input", "r"]}]


def split_case(opset, how):
    def build():
        m = Model([1, 6, 4, 4], opset)
        if how == "attr":
            outs = m.node("Split", ["x"], outputs=["a", "b"], axis=1, split=[2, 4])
        elif how == "input":
            outs = m.node("Split", ["x", m.init("sizes", [2, 4], np.int64)], outputs=["a", "b"], axis=1)
        elif how == "num_outputs":  # 6 channels in 3 parts of 2
            outs = m.node("Split", ["x"], outputs=["a", "b", "c"], axis=1, num_outputs=3)
        else:  # no sizes: equal parts, one per output
            outs = m.node("Split", ["x"], outputs=["a", "b"], axis=1)
        relu = m.node("Relu", ["a"], name="ra")
        total = m.node("Add", ["a", relu], name="sum")
        m.node("Concat", [total, "b"], axis=1, name="cat")
        stops = {"attr": [2, 6], "input": [2, 6], "num_outputs": [2, 4, 6], "equal": [3, 6]}[how]
        assert len(stops) == len(outs)
        layers = [{"type": "slice", "name": f"s{i}", "dim": 1, "start": ([0] + stops)[i], "stop": stop, "inputs": ["input"]}
                  for i, stop in enumerate(stops)]
        layers += [{"type": "relu", "name": "ra", "inputs": ["s0"]}, {"type": "add", "name": "sum", "inputs": ["s0", "ra"]},
                   {"type": "concat", "inputs": ["sum", "s1"]}]
        return m, layers
    return build


def slice_case(opset):
    def build():
        m = Model([1, 6, 8, 8], opset)
        if opset < 10:
            m.node("Slice", ["x"], starts=[1, -6], ends=[INT64_MAX, 7], axes=[1, 3])
            return m, [{"type": "slice", "dim": 1, "start": 1, "stop": 6},
                       {"type": "slice", "dim": 3, "start": 2, "stop": 7}]
        ints = lambda name, v: m.init(name, v, np.int64)  # noqa: E731
        m.node("Slice", ["x", ints("starts", [-100, 1]), ints("ends", [INT64_MAX, 6]), ints("axes", [-1, 2]),
                         ints("steps", [2, 3])])
        return m, [{"type": "slice", "dim": 3, "start": 0, "stop": 8, "step": 2},
                   {"type": "slice", "dim": 2, "start": 1, "stop": 6, "step": 3}]
    return build


def case_maxpool_ceil():
    m = Model([1, 4, 10, 10])
    m.node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    return m, [{"type": "maxpool", "kernel": 3, "stride": 2, "ceil_mode": True}]


def case_maxpool_same_upper_dilated():
    m = Model([1, 4, 10, 11])
    m.node("MaxPool", ["x"], kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER")
    return m, [{"type": "maxpool", "kernel": [3, 2], "stride": 2, "padding": "same"}]


def case_maxpool_default_stride():
    # ONNX's default stride is 1 (PyTorch's is the kernel): the import must give it explicitly
    m = Model([1, 4, 10, 10])
    m.node("MaxPool", ["x"], kernel_shape=[2, 2], pads=[1, 0, 0, 1], dilations=[2, 1])
    return m, [{"type": "maxpool", "kernel": 2, "stride": 1, "padding": [[1, 0], [0, 1]], "dilation": [2, 1]}]


def avgpool_case(include):
    def build():
        m = Model([1, 4, 10, 10])
        attrs = {"count_include_pad": include} if include is not None else {}
        m.node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], **attrs)
        return m, [{"type": "avgpool", "kernel": 3, "stride": 2, "padding": 1, "count_include_pad": bool(include)}]
    return build


def reduce_mean_case(opset, keepdims):
    def build():
        m = Model([1, 4, 5, 6], opset)
        if opset >= 18:
            m.node("ReduceMean", ["x", m.init("axes", [-1, 2], np.int64)], keepdims=keepdims)
        else:
            m.node("ReduceMean", ["x"], axes=[2, 3], keepdims=keepdims)
        return m, [{"type": "global_avgpool"}] + ([] if keepdims else [{"type": "flatten"}])
    return build


def case_batchnorm():
    m = Model([1, 4, 5, 5])
    c = m.node("Conv", ["x", m.init("w", (4, 4, 1, 1))])
    m.node("BatchNormalization", [c] + [m.init(n, (4,)) for n in ("g", "b", "mean")] + [m.init("var", np.ones(4))],
           epsilon=1e-3, momentum=0.99)
    return m, [{"type": "conv", "filters": 4, "kernel": 1, "bias": False},
               {"type": "batchnorm", "eps": 1e-3, "momentum": 0.01}]


def case_layernorm_channels_last():
    m = Model([1, 8, 3, 4])
    t = m.node("Transpose", ["x"], perm=[0, 2, 3, 1])
    n = m.node("LayerNormalization", [t, m.init("g", (8,)), m.init("b", (8,))], epsilon=1e-6)
    m.node("Transpose", [n], perm=[0, 3, 1, 2])
    # channels last, normalised, channels first again: the channels-first layernorm it was (ConvNeXt's LayerNorm2d)
    return m, [{"type": "layernorm", "eps": 1e-6}]


def case_layernorm_no_bias_axis1():
    m = Model([1, 8, 3])
    m.node("LayerNormalization", ["x", m.init("g", (8, 3))], axis=1)
    return m, [{"type": "layernorm", "normalized_shape": [8, 3], "bias": False}]


def case_instancenorm():
    m = Model([1, 4, 5, 5])
    m.node("InstanceNormalization", ["x", m.init("g", (4,)), m.init("b", (4,))], epsilon=1e-4)
    return m, [{"type": "instancenorm", "eps": 1e-4, "affine": True}]


def case_groupnorm():
    m = Model([1, 6, 5, 5], opset=21)
    m.node("GroupNormalization", ["x", m.init("g", (6,)), m.init("b", (6,))], num_groups=3)
    return m, [{"type": "groupnorm", "num_groups": 3}]


def case_lrn():
    m = Model([1, 6, 5, 5])
    m.node("LRN", ["x"], size=5, alpha=1e-4, beta=0.75, bias=2.0)
    return m, [{"type": "lrn", "size": 5, "k": 2.0}]


def case_flatten_gemm():
    m = Model([1, 4, 3, 3])
    f = m.node("Flatten", ["x"])
    m.node("Gemm", [f, m.init("w", (7, 36)), m.init("b", (7,))], transB=1)
    return m, [{"type": "flatten"}, {"type": "linear", "units": 7}]


def case_reshape_shape_chain():
    # x.view(x.size(0), -1) as the legacy exporter writes it: Shape, Gather, Unsqueeze, Concat, Reshape
    m = Model([1, 4, 3, 3], opset=13)
    shape = m.node("Shape", ["x"])
    batch = m.node("Gather", [shape, m.init("zero", np.int64(0), np.int64)], axis=0)
    unsq = m.node("Unsqueeze", [batch, m.init("ax", [0], np.int64)])
    cat = m.node("Concat", [unsq, m.init("minus1", [-1], np.int64)], axis=0)
    m.node("Reshape", ["x", cat], name="view")
    return m, [{"type": "reshape", "shape": [36]}]


def case_reshape_zero_minus_one():
    m = Model([1, 4, 3, 6])
    m.node("Reshape", ["x", m.init("shape", [0, 0, -1, 2], np.int64)])
    return m, [{"type": "reshape", "shape": [4, 9, 2]}]


def case_squeeze_unsqueeze():
    m = Model([1, 4, 1, 1], opset=13)
    s = m.node("Squeeze", ["x", m.init("axes", [2, 3], np.int64)])
    m.node("Unsqueeze", [s, m.init("axes2", [-1], np.int64)])
    return m, [{"type": "reshape", "shape": [4]}, {"type": "reshape", "shape": [4, 1]}]


def case_channel_shuffle():
    m = Model([1, 6, 4, 4])
    r = m.node("Reshape", ["x", m.init("s1", [1, 2, 3, 4, 4], np.int64)], name="shuffle")
    t = m.node("Transpose", [r], perm=[0, 2, 1, 3, 4])
    m.node("Reshape", [t, m.init("s2", [1, 6, 4, 4], np.int64)])
    return m, [{"type": "channel_shuffle", "groups": 2}]


def resize_case(opset, mode, how, transform=None, nearest_mode=None, layer=None, shape=(1, 2, 4, 6)):
    def build():
        m = Model(list(shape), opset)
        attrs = {"mode": mode}
        if transform:
            attrs["coordinate_transformation_mode"] = transform
        if nearest_mode:
            attrs["nearest_mode"] = nearest_mode
        if opset < 11:
            m.node("Resize", ["x", m.init("scales", [1, 1, 2, 3])], **attrs)
        elif how == "scales":
            m.node("Resize", ["x", "", m.init("scales", [1, 1, 2, 1.5])], **attrs)
        else:
            m.node("Resize", ["x", "", "", m.init("sizes", [1, 2, 7, 9], np.int64)], **attrs)
        return m, [layer]
    return build


def case_upsample_9():
    m = Model([1, 2, 4, 6], opset=9)
    m.node("Upsample", ["x", m.init("scales", [1, 1, 2, 2])], mode="nearest")
    return m, [{"type": "upsample", "scale_factor": 2}]


def pad_case(opset, mode, layer_mode):
    def build():
        m = Model([1, 2, 5, 6], opset)
        pads = [0, 0, 1, 2, 0, 0, 3, 0]  # [N, C, H, W begins, N, C, H, W ends]
        if opset < 11:
            m.node("Pad", ["x"], pads=pads, mode=mode)
        else:
            m.node("Pad", ["x", m.init("pads", pads, np.int64)] + ([m.init("v", np.float32(0.5))] if mode == "constant" else []),
                   mode=mode)
        value = {"value": 0.5} if mode == "constant" and opset >= 11 else {}
        return m, [{"type": "pad", "padding": [[1, 3], [2, 0]], "mode": layer_mode, **value}]
    return build


def case_pad_axes_18():
    m = Model([1, 2, 5, 6], 18)
    m.node("Pad", ["x", m.init("pads", [1, 2, 3, 4], np.int64), "", m.init("axes", [-1, 2], np.int64)])
    return m, [{"type": "pad", "padding": [[2, 4], [1, 3]]}]


def case_dropout_12():
    m = Model([1, 10], opset=13)
    m.node("Dropout", ["x", m.init("ratio", np.float32(0.3))])
    return m, [{"type": "dropout", "p": float(np.float32(0.3))}]


def case_constant_node_reshape():
    m = Model([1, 4, 3, 3], opset=13)
    shape = m.node("Constant", [], value=numpy_helper.from_array(np.array([1, 12, 3], np.int64)))
    m.node("Reshape", ["x", shape])
    return m, [{"type": "reshape", "shape": [12, 3]}]


CASES = {
    "conv_pads_symmetric": case_conv_pads_symmetric,
    "conv_pads_asymmetric": case_conv_pads_asymmetric,
    "conv_valid": case_conv_valid,
    "conv_same_upper": case_conv_same_upper,
    "conv_same_lower": case_conv_same_lower,
    "conv_dilated_grouped_1d": case_conv_dilated_grouped_1d,
    "conv_3d": case_conv_3d,
    "conv_transpose_pads": case_conv_transpose_pads,
    "conv_transpose_output_shape": case_conv_transpose_output_shape,
    "gemm_transb": case_gemm_transb,
    "gemm_plain_no_bias": case_gemm_plain_no_bias,
    "gemm_beta_zero": case_gemm_beta_zero,
    "matmul_add_nd": case_matmul_add_nd,
    "matmul_alone": case_matmul_alone,
    "relu": unary_case("Relu", {"type": "relu"}),
    "sigmoid": unary_case("Sigmoid", {"type": "sigmoid"}),
    "tanh": unary_case("Tanh", {"type": "tanh"}),
    "hardswish": unary_case("HardSwish", {"type": "hardswish"}),
    "hardsigmoid": unary_case("HardSigmoid", {"type": "hardsigmoid"}, alpha=1 / 6, beta=0.5),
    "leaky_relu": unary_case("LeakyRelu", {"type": "leaky_relu", "negative_slope": 0.2}, alpha=0.2),
    "leaky_relu_default": unary_case("LeakyRelu", {"type": "leaky_relu", "negative_slope": 0.01}),
    "elu": unary_case("Elu", {"type": "elu", "alpha": 0.5}, alpha=0.5),
    "gelu_native": unary_case("Gelu", {"type": "gelu"}, opset=20),
    "gelu_native_tanh": unary_case("Gelu", {"type": "gelu", "approximate": "tanh"}, opset=20, approximate="tanh"),
    "softmax_13": unary_case("Softmax", {"type": "softmax"}, shape=(1, 10)),
    "softmax_11_axis1": unary_case("Softmax", {"type": "softmax"}, shape=(1, 10, 1, 1), opset=11, axis=1),
    "identity": unary_case("Identity", {"type": "identity"}),
    "dropout_10": unary_case("Dropout", {"type": "dropout", "p": float(np.float32(0.2))}, opset=10, ratio=0.2),
    "dropout_12": case_dropout_12,
    "global_avgpool": unary_case("GlobalAveragePool", {"type": "global_avgpool"}),
    "global_maxpool": unary_case("GlobalMaxPool", {"type": "adaptive_maxpool", "output_size": 1}),
    "prelu_per_channel": case_prelu_per_channel,
    "prelu_shared": case_prelu_shared,
    "clip_6_relu6": clip_case(6, 0.0, 6.0, {"type": "relu6"}),
    "clip_13_relu6": clip_case(13, np.float32(0), np.float32(6), {"type": "relu6"}),
    "clip_13_hardtanh": clip_case(13, np.float32(-1), np.float32(1), {"type": "hardtanh"}),
    "clip_6_hardtanh": clip_case(6, -2.0, 3.0, {"type": "hardtanh", "min_val": -2.0, "max_val": 3.0}),
    "clip_13_relu": clip_case(13, np.float32(0), None, {"type": "relu"}),
    "silu_pattern": case_silu_pattern,
    "hardswish_pattern": case_hardswish_pattern,
    "gelu_torch": gelu_case("torch"),
    "gelu_half_first": gelu_case("half_first"),
    "gelu_half_last": gelu_case("half_last"),
    "add_mul_activations": case_add_mul_activations,
    "layer_scale": case_layer_scale,
    "scale_with_bias": case_scale_with_bias,
    "concat": case_concat,
    "split_11_attr": split_case(11, "attr"),
    "split_13_input": split_case(13, "input"),
    "split_18_num_outputs": split_case(18, "num_outputs"),
    "split_13_equal": split_case(13, "equal"),
    "slice_9_attrs": slice_case(9),
    "slice_13_inputs": slice_case(13),
    "maxpool_ceil": case_maxpool_ceil,
    "maxpool_same_upper": case_maxpool_same_upper_dilated,
    "maxpool_default_stride": case_maxpool_default_stride,
    "avgpool_exclude_pad_default": avgpool_case(None),
    "avgpool_include_pad": avgpool_case(1),
    "reduce_mean_13_keep": reduce_mean_case(13, 1),
    "reduce_mean_18_drop": reduce_mean_case(18, 0),
    "batchnorm": case_batchnorm,
    "layernorm_channels_last": case_layernorm_channels_last,
    "layernorm_no_bias_axis1": case_layernorm_no_bias_axis1,
    "instancenorm": case_instancenorm,
    "groupnorm": case_groupnorm,
    "lrn": case_lrn,
    "flatten_gemm": case_flatten_gemm,
    "reshape_shape_chain": case_reshape_shape_chain,
    "reshape_zero_minus_one": case_reshape_zero_minus_one,
    "squeeze_unsqueeze": case_squeeze_unsqueeze,
    "channel_shuffle": case_channel_shuffle,
    "resize_nearest_scales": resize_case(13, "nearest", "scales", "asymmetric", "floor",
                                         {"type": "upsample", "scale_factor": [2, 1.5]}),
    "resize_linear_sizes": resize_case(13, "linear", "sizes", "half_pixel", None,
                                       {"type": "upsample", "mode": "bilinear", "size": [7, 9], "align_corners": False}),
    "resize_linear_align": resize_case(13, "linear", "sizes", "align_corners", None,
                                       {"type": "upsample", "mode": "bilinear", "size": [7, 9], "align_corners": True}),
    "resize_cubic_pytorch": resize_case(13, "cubic", "scales", "pytorch_half_pixel", None,
                                        {"type": "upsample", "mode": "bicubic", "scale_factor": [2, 1.5],
                                         "align_corners": False}),
    "resize_10": resize_case(10, "nearest", "scales", layer={"type": "upsample", "scale_factor": [2, 3]}),
    "upsample_9": case_upsample_9,
    "pad_2_reflect": pad_case(2, "reflect", "reflect"),
    "pad_13_constant": pad_case(13, "constant", "constant"),
    "pad_13_edge": pad_case(13, "edge", "replicate"),
    "pad_18_axes": case_pad_axes_18,
    "constant_node_reshape": case_constant_node_reshape,
}


@pytest.mark.parametrize("case", CASES)
def test_case_equals_its_spec_and_onnxruntime(case, tmp_path):
    model, layers = CASES[case]()
    path = model.save(tmp_path)
    analysis = check_against_spec(path, layers)
    pytest.importorskip("onnxruntime")
    shapes = ort_output_shapes(path, model.shape)
    assert shapes[0] == (1, *analysis.layers[-1].output_shape)


# ---- hand arithmetic ----

def test_conv_same_lower_by_hand(tmp_path):
    # ONNX SAME_LOWER on height 8, k 3, s 2: out ceil(8/2) = 4, total (4-1)*2 + 3 - 8 = 1, the odd pixel before
    model, _ = case_conv_same_lower()
    analysis = archcalc.analyze(from_onnx(model.save(tmp_path)))
    conv = analysis.layers[1]
    assert conv.output_shape == (4, 4, 5)
    assert conv.macs == 4 * 3 * 3 * 3 * 4 * 5
    assert conv.params == 4 * 3 * 3 * 3


def test_linear_on_channels_last_by_hand(tmp_path):
    model, _ = case_matmul_add_nd()
    analysis = archcalc.analyze(from_onnx(model.save(tmp_path)))
    fc = analysis.layers[1]
    assert (fc.name, fc.type, fc.output_shape) == ("fc", "linear", (3, 4, 16))
    assert fc.params == 8 * 16 + 16
    assert fc.macs == 3 * 4 * 8 * 16  # at every one of the 3x4 positions


def test_conv_transpose_output_shape_by_hand(tmp_path):
    # out = s*(in-1) + op + k - pads = 2*4 + 0 + 3 - 1 = 10; MACs = c * (f/g) * k*k * in*in = 4 * 6 * 9 * 25
    model, _ = case_conv_transpose_output_shape()
    layer = archcalc.analyze(from_onnx(model.save(tmp_path))).layers[1]
    assert layer.output_shape == (12, 10, 10)
    assert layer.macs == 4 * 6 * 9 * 25


def test_avgpool_count_include_pad_default_is_onnx_s(tmp_path):
    # ONNX's AveragePool leaves padding out of the divisor unless count_include_pad = 1 (PyTorch's default is 1)
    model, _ = avgpool_case(None)()
    graph = from_onnx(model.save(tmp_path))
    assert graph.nodes[1].attrs["count_include_pad"] is False


def test_batchnorm_momentum_converted(tmp_path):
    model, _ = case_batchnorm()
    graph = from_onnx(model.save(tmp_path))
    assert graph.nodes[2].attrs["momentum"] == pytest.approx(0.01)
    assert graph.warnings == ()  # batchnorm present, conv without bias: nothing folded to warn about


def test_names_are_node_names_else_first_output(tmp_path):
    m = Model([1, 4, 5, 5])
    r = m.node("Relu", ["x"], name="features.0.act")
    m.nodes.append(helper.make_node("Sigmoid", [r], ["gate_output"]))  # no name
    graph = from_onnx(m.save(tmp_path))
    assert [n.name for n in graph.nodes] == ["input", "features.0.act", "gate_output"]


def test_dynamic_batch_is_accepted_and_static_batch_dropped(tmp_path):
    model, layers = case_conv_pads_symmetric()
    check_against_spec(model.save(tmp_path, "a.onnx", input_shape=["batch", 3, 9, 9]), layers)
    check_against_spec(model.save(tmp_path, "b.onnx", input_shape=[4, 3, 9, 9]), layers)


def test_input_shape_overrides_the_file(tmp_path):
    model, layers = case_conv_pads_symmetric()
    path = model.save(tmp_path)
    analysis = check_against_spec(path, layers, input_shape=(3, 20, 16))
    assert analysis.layers[1].output_shape == (4, 20, 16)
    assert archcalc.analyze(from_onnx(path, "3x20x16")).layers[1].output_shape == (4, 20, 16)


def test_dynamic_spatial_size_needs_input_shape(tmp_path):
    model, layers = case_conv_pads_symmetric()
    path = model.save(tmp_path, input_shape=["N", 3, "H", "W"])
    with pytest.raises(SpecError) as error:
        from_onnx(path)
    assert str(error.value) == (f"'{path}': input 'x' has a dynamic shape (N, 3, H, W); give its per-sample shape: "
                                "--input 3x224x224 (input_shape=(3, 224, 224) in Python)")
    analysis = check_against_spec(path, layers, input_shape=(3, 12, 12))
    assert analysis.layers[1].output_shape == (4, 12, 12)


def test_fused_patterns_keep_the_first_node_s_name(tmp_path):
    model, _ = gelu_case("torch")()
    graph = from_onnx(model.save(tmp_path))
    assert [(n.name, n.type) for n in graph.nodes[1:]] == [("div1", "gelu")]


def test_shared_sigmoid_is_not_fused(tmp_path):
    # the sigmoid's output is read twice: SiLU cannot be claimed, both stay
    m = Model([1, 4, 5, 5])
    s = m.node("Sigmoid", ["x"], name="s")
    a = m.node("Mul", ["x", s], name="m")
    m.node("Add", [a, s], name="a")
    check_against_spec(m.save(tmp_path), [{"type": "sigmoid", "name": "s"}, {"type": "mul", "name": "m", "inputs": ["input", "s"]},
                                          {"type": "add", "inputs": ["m", "s"]}])


def test_conv_bias_without_batchnorm_warns(tmp_path):
    model, _ = case_conv_pads_symmetric()
    path = model.save(tmp_path)
    assert from_onnx(path).warnings == (
        f"'{path}': its convs have biases and it has no BatchNormalization; exporters fold a trained network's "
        "batchnorm into the conv before it, so if this one was trained with batchnorm, the parameter count here "
        "(conv biases, no batchnorm scale, shift or running statistics) differs from the training framework's",)


# ---- external data ----

def test_external_data(tmp_path):
    model, layers = case_conv_pads_symmetric()
    proto = model.proto()
    onnx.save(proto, str(tmp_path / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx.data", size_threshold=0)
    assert (tmp_path / "model.onnx.data").exists()
    check_against_spec(tmp_path / "model.onnx", layers)
    (tmp_path / "model.onnx.data").unlink()
    with pytest.raises(SpecError) as error:
        from_onnx(tmp_path / "model.onnx")
    assert str(error.value) == (f"'{tmp_path / 'model.onnx'}': external data file 'model.onnx.data' (for initializer 'w') "
                                "is missing; keep it in the model's directory")


def test_external_data_truncated(tmp_path):
    model, _ = case_conv_pads_symmetric()
    onnx.save(model.proto(), str(tmp_path / "m.onnx"), save_as_external_data=True, location="m.data", size_threshold=0)
    data = (tmp_path / "m.data").read_bytes()
    (tmp_path / "m.data").write_bytes(data[:100])
    with pytest.raises(SpecError, match=r"m\.onnx': external data file 'm\.data' is shorter than initializer"):
        from_onnx(tmp_path / "m.onnx")


# ---- refused inputs: one line naming the file ----

def test_missing_file_directory_empty_garbage_truncated(tmp_path):
    cases = []
    cases.append((tmp_path / "none.onnx", "'{}': no such file"))
    cases.append((tmp_path, "'{}': is a directory, not an ONNX file"))
    (tmp_path / "empty.onnx").write_bytes(b"")
    cases.append((tmp_path / "empty.onnx", "'{}': empty file, not an ONNX model"))
    (tmp_path / "text.onnx").write_text("hello, I am not a model\n")
    model, _ = case_conv_pads_symmetric()
    data = model.proto().SerializeToString()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    for path, message in cases:
        with pytest.raises(SpecError) as error:
            from_onnx(path)
        assert str(error.value) == message.format(path)
    for name in ("text.onnx", "cut.onnx"):
        with pytest.raises(SpecError) as error:
            from_onnx(tmp_path / name)
        text = str(error.value)
        assert text.startswith(f"'{tmp_path / name}': not an ONNX model (") and "\n" not in text
        assert text.endswith("truncated or another format?")


def test_two_inputs_refused(tmp_path):
    m = Model([1, 4])
    m.node("Add", ["x", "y"])
    proto = m.proto()
    proto.graph.input.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]))
    onnx.save(proto, str(tmp_path / "two.onnx"))
    with pytest.raises(SpecError) as error:
        from_onnx(tmp_path / "two.onnx")
    assert str(error.value) == f"'{tmp_path / 'two.onnx'}': archcalc analyses a network of one input tensor; this one has 2 ('x', 'y')"


def test_no_batch_axis_refused(tmp_path):
    m = Model([7])
    m.node("Relu", ["x"])
    path = m.save(tmp_path)
    with pytest.raises(SpecError) as error:
        from_onnx(path)
    assert str(error.value) == (f"'{path}': input 'x' has shape (7,); archcalc needs a leading batch axis then the sample's "
                                "axes, (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W)")
    m = Model([1, 2, 3, 4, 5, 6])
    m.node("Relu", ["x"])
    with pytest.raises(SpecError, match=r"more than one batch axis or over three spatial axes"):
        from_onnx(m.save(tmp_path, "six.onnx"))


def test_huge_dims_refused(tmp_path):
    m = Model([1, 3, 2**40, 4])
    m.node("Relu", ["x"])
    path = m.save(tmp_path)
    with pytest.raises(SpecError) as error:
        from_onnx(path)
    assert str(error.value) == f"'{path}': input 'x' has a size of {2**40}, more than 2**31 - 1 = 2147483647"
    m = Model([1, 3, 4, 4])
    m.node("Conv", ["x", "w"])
    proto = m.proto()
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT)
    weight.dims.extend([2**40, 3, 1, 1])
    proto.graph.initializer.append(weight)
    onnx.save(proto, str(tmp_path / "w.onnx"))
    with pytest.raises(SpecError) as error:
        from_onnx(tmp_path / "w.onnx")
    assert str(error.value) == f"'{tmp_path / 'w.onnx'}': initializer 'w' has a size of {2**40}; sizes must be 0 to 2**31 - 1 = 2147483647"


def test_huge_attribute_refused_naming_the_node(tmp_path):
    m = Model([1, 3, 4, 4])
    m.node("MaxPool", ["x"], name="pool", kernel_shape=[2**40, 1])
    path = m.save(tmp_path)
    with pytest.raises(SpecError) as error:
        from_onnx(path)
    text = str(error.value)
    assert "\n" not in text and str(path) in text and "pool" in text and "2147483647" in text


def test_bad_input_shape_argument(tmp_path):
    model, _ = case_conv_pads_symmetric()
    path = model.save(tmp_path)
    with pytest.raises(SpecError) as error:
        from_onnx(path, (3, 9))
    assert str(error.value) == f"'{path}': input_shape (3, 9) has 2 axes; input 'x' has 3 per sample, (1, 3, 9, 9) with the batch axis"
    with pytest.raises(SpecError) as error:
        from_onnx(path, (3, 0, 9))
    assert str(error.value) == (f"'{path}': input_shape must be 1 to 63 positive ints (at most 2**31 - 1) for one sample, "
                                "without the batch axis, got (3, 0, 9)")
    with pytest.raises(SpecError, match=r"^--input '3by9': give one sample's shape"):
        from_onnx(path, "3by9")


def test_inconsistent_model_is_one_line(tmp_path):
    # ONNX's inference does not check a conv's weight against its input channels: archcalc's own rule does
    m = Model([1, 3, 9, 9])
    m.node("Conv", ["x", m.init("w", (4, 5, 3, 3))], name="conv1")  # 5 input channels for a 3-channel input
    path = m.save(tmp_path)
    with pytest.raises(SpecError) as error:
        from_onnx(path)
    text = str(error.value)
    assert text.startswith(f"'{path}': ") and "conv1" in text and "(4, 5, 3, 3)" in text and "\n" not in text
    m = Model([1, 3, 9, 9])
    m.node("Add", ["x", m.init("b", (4, 1, 1))], name="add1")  # 4 does not broadcast with 3: inference refuses
    path = m.save(tmp_path, "add.onnx")
    with pytest.raises(SpecError) as error:
        from_onnx(path)
    text = str(error.value)
    assert text.startswith(f"'{path}': ONNX shape inference fails: ") and "\n" not in text


def test_missing_onnx_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingToolError) as error:
        from_onnx(tmp_path / "m.onnx")
    assert str(error.value) == 'reading ONNX files needs the onnx package, which is not installed: pip install "archcalc[onnx]"'


# ---- unsupported ops: listed with counts and first location; --partial passes them through ----

def unsupported_model():
    m = Model([1, 4, 5, 5])
    a = m.node("Relu", ["x"], name="r")
    b = m.node("Cos", [a], name="cos1")
    c = m.node("Cos", [b], name="cos2")
    d = m.node("Clip", [a, m.init("lo", np.float32(-1))], name="clip")  # one bound: no archcalc layer
    e = m.node("Relu", [d], name="r2")
    m.node("Add", [c, e], name="sum")
    return m


def test_unsupported_ops_listed(tmp_path):
    path = unsupported_model().save(tmp_path)
    with pytest.raises(SpecError) as error:
        from_onnx(path)
    assert str(error.value) == (f"'{path}': unsupported: Cos x2 (first at cos1), Clip (min -1, max inf) x1 (first at clip); "
                                "--partial (partial=True) counts them as 0 and marks the report partial")


def test_partial_passes_unsupported_through(tmp_path):
    graph = from_onnx(unsupported_model().save(tmp_path), partial=True)
    analysis = archcalc.analyze(graph)
    assert [layer.name for layer in analysis.layers] == ["input", "r", "cos1", "cos2", "clip", "r2", "sum"]
    assert all(layer.output_shape == (4, 5, 5) for layer in analysis.layers)
    assert all(layer.params == 0 and layer.macs == 0 for layer in analysis.layers[2:5])


def test_unsupported_forms_of_supported_ops(tmp_path):
    m = Model([1, 4, 6, 6])
    t = m.node("Transpose", ["x"], name="t", perm=[1, 0, 2, 3])
    m.node("Softmax", [t], name="sm", axis=2)
    path = m.save(tmp_path)
    with pytest.raises(SpecError) as error:
        from_onnx(path)
    assert str(error.value) == (f"'{path}': unsupported: Transpose (perm [1, 0, 2, 3] (it moves the batch axis)) x1 "
                                "(first at t); --partial (partial=True) counts them as 0 and marks the report partial")


def test_matmul_of_two_activations_unsupported(tmp_path):
    m = Model([1, 4, 4])
    m.node("MatMul", ["x", "x"], name="mm")
    path = m.save(tmp_path)
    with pytest.raises(SpecError, match=r"MatMul \(of two activations \(archcalc has no batched matrix product\)\) x1"):
        from_onnx(path)


def test_conv_transpose_more_padding_at_the_end_is_unsupported(tmp_path):
    model, _ = case_conv_transpose_same_upper()
    path = model.save(tmp_path)
    with pytest.raises(SpecError, match=r"unsupported: ConvTranspose \(pads \[\(0, 1\), \(0, 1\)\]"):
        from_onnx(path)


def test_groupnorm_opset18_per_group_scale_unsupported(tmp_path):
    m = Model([1, 6, 5, 5], opset=18)
    m.node("GroupNormalization", ["x", m.init("g", (3,)), m.init("b", (3,))], num_groups=3, name="gn")
    with pytest.raises(SpecError, match=r"GroupNormalization \(a scale of shape \(3,\), one per group"):
        from_onnx(m.save(tmp_path))


def test_resize_nearest_other_rounding_unsupported(tmp_path):
    build = resize_case(13, "nearest", "scales", "half_pixel", "round_prefer_ceil", None)
    model, _ = build()
    with pytest.raises(SpecError, match=r"Resize \(nearest_mode 'round_prefer_ceil' with 'half_pixel' coordinates"):
        from_onnx(model.save(tmp_path))


# ---- exported from PyTorch ----

def _export(module, x, path):
    torch = pytest.importorskip("torch")
    with torch.no_grad():
        torch.onnx.export(module.eval(), (x,), str(path), dynamo=False, opset_version=17)
    return path


def _conv_linear_macs(analysis):
    return sum(layer.macs for layer in analysis.layers if layer.type in ("conv", "conv_transpose", "linear"))


def _torch_macs(module, x):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() // 2


def test_small_torch_modules(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(8)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.act = nn.SiLU()
            self.gelu = nn.GELU()
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.head = nn.Linear(8, 5)

        def forward(self, x):
            y = self.act(self.bn(self.conv(x)))
            y = self.gelu(self.dw(y)) + y
            y = torch.cat([y, nn.functional.relu6(y)], 1)
            a, b = y.chunk(2, dim=1)
            y = self.up(a * torch.sigmoid(b))
            y = y.mean((2, 3))
            return self.head(y)

    module = Block().eval()
    x = torch.randn(1, 3, 16, 16)
    try:
        path = _export(module, x, tmp_path / "block.onnx")
    except Exception as error:  # an exporter that cannot run here (no onnxscript): skip, do not hide a bug of ours
        pytest.skip(f"torch.onnx.export: {type(error).__name__}: {error}")
    analysis = archcalc.analyze(from_onnx(path))
    assert _conv_linear_macs(analysis) == _torch_macs(module, x)
    types = [layer.type for layer in analysis.layers]
    assert "silu" in types and "gelu" in types and "relu6" in types and types.count("slice") == 2
    assert analysis.layers[-1].output_shape == (5,)


# ---- torchvision models exported to ONNX (CI: torch 2.14.1 + torchvision 0.29.1) ----
# The legacy TorchScript exporter (dynamo=False) runs in seconds per model; the dynamo exporter
# takes far longer and needs onnxscript. With do_constant_folding=False it keeps batchnorm as its
# own node, so parameters can be compared too; the default export folds it into the convs (below).

TORCHVISION = {  # model: (input size, zoo twin or None)
    "resnet18": (224, "resnet18"),
    "resnet50": (224, "resnet50"),
    "mobilenet_v2": (224, "mobilenet_v2"),
    "mobilenet_v3_small": (224, None),
    "efficientnet_b0": (224, None),
    "shufflenet_v2_x1_0": (224, None),
    "regnet_y_400mf": (224, None),
    "convnext_tiny": (224, None),
    "googlenet": (224, None),
    "inception_v3": (299, "inception_v3"),
    "densenet121": (224, "densenet121"),
    "squeezenet1_0": (224, "squeezenet1_0"),
    "vgg16": (224, "vgg16"),
    "alexnet": (224, None),
}


def _torchvision_model(name):
    torchvision = pytest.importorskip("torchvision")
    extra = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    return getattr(torchvision.models, name)(weights=None, **extra).eval()


def _hooked_macs(model, x):
    """Multiply-adds of every conv and linear layer from the output shapes forward hooks see."""
    import torch

    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            total += output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        else:
            total += output.numel() * module.in_features

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(x)
    for handle in hooks:
        handle.remove()
    return total


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_export_imports_with_torch_s_counts(name, tmp_path):
    torch = pytest.importorskip("torch")
    model = _torchvision_model(name)
    size, zoo = TORCHVISION[name]
    x = torch.randn(1, 3, size, size)
    path = tmp_path / f"{name}.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, do_constant_folding=False)
    analysis = archcalc.analyze(from_onnx(path))
    macs = _conv_linear_macs(analysis)
    assert macs == _hooked_macs(model, x)
    assert analysis.totals.params == sum(p.numel() for p in model.parameters())
    assert analysis.layers[-1].output_shape == (1000,)
    if zoo:
        assert macs == _conv_linear_macs(archcalc.analyze(archcalc.load(zoo)))


def test_torchvision_export_with_batchnorm_folded(tmp_path):
    # the exporter's default folds each batchnorm into the conv before it: the same MACs, other params, and a note
    torch = pytest.importorskip("torch")
    model = _torchvision_model("resnet18")
    x = torch.randn(1, 3, 224, 224)
    path = tmp_path / "resnet18.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17)
    graph = from_onnx(path)
    analysis = archcalc.analyze(graph)
    assert _conv_linear_macs(analysis) == _hooked_macs(model, x) == 1_814_073_344
    batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    # each conv gains a bias of its filters; each batchnorm's scale and shift are gone
    expected = sum(p.numel() for p in model.parameters()) + sum(c.out_channels for c in convs) \
        - sum(2 * b.num_features for b in batchnorms)
    assert analysis.totals.params == expected
    assert len(graph.warnings) == 1 and "BatchNormalization" in graph.warnings[0]


def test_model_name_from_graph_or_file(tmp_path):
    m = Model([1, 4, 5, 5], name="my_net")
    m.node("Relu", ["x"])
    assert from_onnx(m.save(tmp_path)).name == "my_net"
    m.name = "main_graph"  # torch's exporters name every graph so
    assert from_onnx(m.save(tmp_path, "resnet_tiny.onnx")).name == "resnet_tiny"


def case_flat_gather_reshape():
    # torch.export's as_strided: Reshape to (N*C*H*W,), then Gather of arange indices shaped (1, C, H, W)
    m = Model([1, 4, 1, 1])
    flat = m.node("Reshape", ["x", m.init("minus1", [-1], np.int64)], name="flat")
    m.node("Gather", [flat, m.init("idx", np.arange(4).reshape(1, 1, 1, 4), np.int64)], axis=0)
    return m, [{"type": "reshape", "shape": [1, 1, 4]}]


def case_groupnorm_decomposed():
    # torch.onnx (legacy) writes GroupNorm(2, 6) so: InstanceNormalization over (N, G, -1), then the affine per channel
    m = Model([1, 6, 3, 4], opset=13)
    grouped = m.node("Reshape", ["x", m.init("s", [1, 2, -1], np.int64)], name="gn")
    norm = m.node("InstanceNormalization", [grouped, m.init("ones", np.ones(2)), m.init("zeros", np.zeros(2))],
                  epsilon=1e-5)
    back = m.node("Reshape", [norm, m.init("s2", [1, 6, 3, 4], np.int64)])
    scaled = m.node("Mul", [back, m.init("w", (6, 1, 1))])
    m.node("Add", [scaled, m.init("b", (6, 1, 1))])
    return m, [{"type": "groupnorm", "num_groups": 2}]


def case_layernorm_decomposed_no_affine():
    # before opset 17: mean, x - mean, its square's mean, + eps, sqrt, divide (no weight, no bias here)
    m = Model([1, 3, 4, 6], opset=13)
    mean = m.node("ReduceMean", ["x"], axes=[-1], name="ln")
    centred = m.node("Sub", ["x", mean])
    square = m.node("Pow", [centred, m.init("two", np.float32(2))])
    variance = m.node("ReduceMean", [square], axes=[3])
    shifted = m.node("Add", [variance, m.init("eps", np.float32(1e-6))])
    m.node("Div", [centred, m.node("Sqrt", [shifted])])
    return m, [{"type": "layernorm", "normalized_shape": [6], "eps": float(np.float32(1e-6)), "elementwise_affine": False}]


def case_maxpool_end_padding_as_ceil():
    # opset 9 has no ceil_mode: torch pads the end instead. k 3, s 3 on 10: floor((10 + 2 - 3)/3) + 1 = 4 =
    # ceil((10 - 3)/3) + 1; padding 2 exceeds PyTorch's k//2 = 1, so it is read back as ceil_mode
    m = Model([1, 2, 10, 10], opset=9)
    m.node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[3, 3], pads=[0, 0, 2, 2])
    return m, [{"type": "maxpool", "kernel": 3, "stride": 3, "ceil_mode": True}]


def gelu_tanh_case(cube):
    def build():
        m = Model([1, 4, 5, 5])
        # torch's: x * x, then x * that
        cubed = m.node("Pow", ["x", m.init("three", np.float32(3))]) if cube == "pow" else \
            m.node("Mul", ["x", m.node("Mul", ["x", "x"])])
        inner = m.node("Add", ["x", m.node("Mul", [m.init("c", np.float32(0.044715)), cubed])])
        t = m.node("Tanh", [m.node("Mul", [m.init("k", np.float32(math.sqrt(2 / math.pi))), inner])])
        m.node("Mul", [m.init("half", np.float32(0.5)), m.node("Mul", ["x", m.node("Add", [m.init("one", np.float32(1)), t])])])
        return m, [{"type": "gelu", "approximate": "tanh"}]
    return build


def case_sum_of_three():
    m = Model([1, 4, 5, 5])
    r = m.node("Relu", ["x"], name="r")
    m.node("Sum", ["x", r, r])
    return m, [{"type": "relu", "name": "r"}, {"type": "add", "inputs": ["input", "r", "r"]}]


CASES.update({"gelu_tanh_torch": gelu_tanh_case("mul"), "gelu_tanh_pow": gelu_tanh_case("pow"), "sum": case_sum_of_three})
CASES.update({"flat_gather_reshape": case_flat_gather_reshape, "maxpool_end_padding_as_ceil": case_maxpool_end_padding_as_ceil,
              "groupnorm_decomposed": case_groupnorm_decomposed,
              "layernorm_decomposed_no_affine": case_layernorm_decomposed_no_affine})


@pytest.mark.parametrize("opset", [9, 11, 13, 17, 20])
def test_many_torch_layers(opset, tmp_path):
    """Layers of every family through torch.onnx.export at old and new opsets (Split, Slice, Clip, Pad, Resize,
    ReduceMean as attributes or inputs; LayerNorm decomposed before 17): params and MACs equal torch's.
    (nn.LocalResponseNorm is not here: torch writes it as Pow/Div/AvgPool under an If, not ONNX's LRN, and the
    import says so. Before opset 11 torch's bilinear export samples elsewhere than PyTorch: refused, so nearest.)"""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.ReflectionPad2d((1, 2, 0, 1)), nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8),
                                      nn.PReLU(8), nn.MaxPool2d(3, 2, ceil_mode=True))
            self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=4), nn.GroupNorm(4, 8), nn.LeakyReLU(0.1),
                                      nn.ConvTranspose2d(8, 6, 4, stride=2, padding=1), nn.InstanceNorm2d(6, affine=True),
                                      nn.ELU(), nn.Hardswish(), nn.AvgPool2d(2, count_include_pad=False),
                                      nn.Hardsigmoid(), nn.Upsample(scale_factor=2, mode="bilinear" if opset >= 11 else "nearest"),
                                      nn.ReLU6(), nn.Tanh(), nn.Dropout(0.2), nn.SiLU(), nn.GELU(),
                                      nn.GELU(approximate="tanh"))
            self.norm = nn.LayerNorm(6)
            self.head = nn.Linear(6, 3)

        def forward(self, x):
            y = self.body(self.stem(x))
            a, b = y.chunk(2, dim=1)
            y = torch.cat([b, a], 1)
            n, c, h, w = y.shape  # ShuffleNet's channel shuffle, as torchvision writes it
            y = y.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
            y = nn.functional.pad(y, (1, 1, 2, 0))[:, :, 1:-1, 2:]
            y = self.norm(y.permute(0, 2, 3, 1))
            return torch.softmax(self.head(y).permute(0, 3, 1, 2).mean((2, 3)), dim=1)

    module = Net().eval()
    x = torch.randn(1, 3, 17, 15)
    path = tmp_path / "net.onnx"
    with torch.no_grad():
        torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=opset, do_constant_folding=False)
    analysis = archcalc.analyze(from_onnx(path))
    assert analysis.totals.params == sum(p.numel() for p in module.parameters())
    assert _conv_linear_macs(analysis) == _torch_macs(module, x)
    assert analysis.layers[-1].output_shape == tuple(module(x).shape[1:])
    types = {layer.type for layer in analysis.layers}
    assert {"pad", "prelu", "maxpool", "groupnorm", "leaky_relu", "conv_transpose", "instancenorm", "elu", "hardswish",
            "avgpool", "hardsigmoid", "upsample", "relu6", "tanh", "layernorm", "linear", "softmax", "silu", "gelu",
            "channel_shuffle", "slice", "concat"} <= types
    assert sum(layer.type == "gelu" for layer in analysis.layers) == 2


def test_bilinear_before_opset_11_refused(tmp_path):
    torch = pytest.importorskip("torch")
    module = torch.nn.Upsample(scale_factor=2, mode="bilinear").eval()
    path = tmp_path / "up.onnx"
    with torch.no_grad():
        torch.onnx.export(module, (torch.randn(1, 2, 4, 4),), str(path), dynamo=False, opset_version=10)
    with pytest.raises(SpecError, match=r"Resize \(mode 'linear' before opset 11, which samples at o \* in/out"):
        from_onnx(path)


def test_dynamo_exporter(tmp_path):
    """torch.onnx.export's default since torch 2.9 (dynamo=True, needs onnxscript): weights in model.onnx.data,
    node names such as node_Conv_0, opset 18+ forms (ReduceMean's axes as an input)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    nn = torch.nn
    module = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU(), nn.Conv2d(8, 16, 3, stride=2),
                           nn.GELU(), nn.Hardswish(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)).eval()
    x = torch.randn(1, 3, 16, 16)
    path = tmp_path / "dyn.onnx"
    torch.onnx.export(module, (x,), str(path), dynamo=True, external_data=True)
    analysis = archcalc.analyze(from_onnx(path))
    assert _conv_linear_macs(analysis) == _torch_macs(module, x)
    assert analysis.layers[-1].output_shape == (4,)
    assert {"silu", "gelu", "hardswish"} <= {layer.type for layer in analysis.layers}


def custom_op_model(output_shape):
    m = Model([1, 4, 5, 5])
    r = m.node("Relu", ["x"], name="r")
    m.nodes.append(helper.make_node("RoiAlign2", [r], ["roi_out"], name="roi", domain="com.example"))
    m.node("Relu", ["roi_out"], name="r2")
    proto = m.proto()
    proto.opset_import.append(helper.make_opsetid("com.example", 1))
    if output_shape:  # the file states the custom op's output shape, as exporters often do
        proto.graph.value_info.append(helper.make_tensor_value_info("roi_out", TensorProto.FLOAT, output_shape))
    return proto


def test_custom_domain_op(tmp_path):
    path = tmp_path / "custom.onnx"
    onnx.save(custom_op_model(None), str(path))
    for partial in (False, True):
        with pytest.raises(SpecError) as error:
            from_onnx(path, partial=partial)
        assert str(error.value).startswith(f"'{path}': unsupported: com.example.RoiAlign2 x1 (first at roi); --partial ")
    onnx.save(custom_op_model([1, 4, 7, 7]), str(path))
    analysis = archcalc.analyze(from_onnx(path, partial=True))
    assert [(layer.name, layer.type, layer.output_shape) for layer in analysis.layers] == [
        ("input", "input", (4, 5, 5)), ("r", "relu", (4, 5, 5)), ("roi", "opaque", (4, 7, 7)), ("r2", "relu", (4, 7, 7))]
    onnx.save(custom_op_model([12, 4]), str(path))  # no leading batch axis (K boxes): its shape cannot be passed on
    with pytest.raises(SpecError, match=r"--partial cannot pass these through"):
        from_onnx(path, partial=True)


def test_initializers_listed_as_inputs(tmp_path):
    # before IR version 4 every initializer was also a graph input: they are weights, not a second input
    model, layers = case_conv_pads_symmetric()
    proto = model.proto()
    for tensor in proto.graph.initializer:
        proto.graph.input.append(helper.make_tensor_value_info(tensor.name, TensorProto.FLOAT, list(tensor.dims)))
    proto.ir_version = 3
    proto.opset_import[0].version = 8
    onnx.save(proto, str(tmp_path / "ir3.onnx"))
    check_against_spec(tmp_path / "ir3.onnx", layers)


# ---- the command line ----

def test_cli_report_onnx(tmp_path):
    import json

    from tests.helpers import run_main

    model, _ = case_conv_pads_symmetric()
    path = model.save(tmp_path, input_shape=["N", 3, "H", "W"])
    status, out, err = run_main("report", str(path))
    assert status == 2 and err == (f"error: '{path}': input 'x' has a dynamic shape (N, 3, H, W); give its per-sample "
                                   "shape: --input 3x224x224 (input_shape=(3, 224, 224) in Python)\n")
    status, out, err = run_main("report", str(path), "--input", "3x9x9", "--format", "json")
    assert status == 0 and json.loads(out)["layers"][1]["macs"] == 4 * 3 * 9 * 9 * 9 and json.loads(out)["status"] == "complete"
    assert "its convs have biases and it has no BatchNormalization" in err  # the warning, on standard error
    path = unsupported_model().save(tmp_path, "cos.onnx")
    status, out, err = run_main("report", str(path), "--partial", "--format", "json")
    report = json.loads(out)
    assert status == 0 and report["status"] == "partial"
    assert report["uncounted"] == [{"op": "Cos", "count": 2, "first": "cos1"},
                                   {"op": "Clip (min -1, max inf)", "count": 1, "first": "clip"}]


def test_dangling_and_unordered_inputs(tmp_path):
    m = Model([1, 4, 5, 5])
    m.node("Relu", ["ghost"], name="r")
    path = m.save(tmp_path, "ghost.onnx")
    with pytest.raises(SpecError) as error:
        from_onnx(path)
    assert str(error.value).startswith(f"'{path}': ONNX shape inference fails: ") and "node name: r" in str(error.value)
    m = Model([1, 4, 5, 5])  # nodes out of topological order, as the ONNX spec forbids
    m.node("Relu", ["b_out"], name="a")
    m.node("Relu", ["x"], name="b")
    path = m.save(tmp_path, "order.onnx")
    with pytest.raises(SpecError) as error:
        from_onnx(path)
    assert str(error.value) == (f"'{path}': node 'a' (Relu): input 'b_out' is not the model's input, an initializer or "
                                "an earlier node's output")
