"""ptflops 0.7.5, aten backend: what ``get_model_complexity_info(model, input_res, backend="aten")`` counts.

The backend runs the model under a ``TorchDispatchMode`` and counts the ATen ops it knows:
``aten.convolution`` (``batch x prod(weight shape) x prod(output spatial)``, or the input's spatial
size for a transposed conv, plus one per output for a bias), ``aten.addmm`` (a linear layer with a
bias: in x out per row, plus out per row), ``aten.mm``, ``aten.matmul``, ``aten.bmm``. Every other op
counts 0. A linear layer reaches ``aten.addmm`` (bias counted) when its input is 2-D, or contiguous,
and ``aten.mm`` followed by an uncounted ``add_`` otherwise (an input straight from a permute).

Its per-module output (``print_per_layer_stat``) lists only the model's direct children that are
called as modules (``conv1``, ``fc``), per ATen op; layers inside an ``nn.ModuleDict`` or
``nn.Sequential`` that the model's ``forward`` indexes are not listed (only in ``Global``).
"""

from __future__ import annotations

from archcalc.conventions import Convention, Rule
from archcalc.conventions.ptflops import _ptflops_string

PRESET = Convention(
    name="ptflops-aten",
    tool='ptflops 0.7.5 get_model_complexity_info(model, input_res, as_strings=False, backend="aten")',
    unit="MACs",
    summary="conv, transposed conv and linear MACs plus their bias adds (aten.convolution, aten.addmm, aten.mm); "
            "nothing for any other op type (batchnorm, activations, pooling, add, upsample...)",
    rules={
        "conv": Rule("macs + bias_adds", note="aten.convolution: prod(weight shape) per output position, plus one "
                                              "per output for a bias"),
        "conv_transpose": Rule("macs + bias_adds", note="aten.convolution (transposed): prod(weight shape) per INPUT "
                                                        "position (the true MACs), plus one per output for a bias"),
        "linear": Rule("macs + bias_adds", note="aten.addmm: in x out per position, plus one per output for a bias "
                                                "(aten.mm without a bias)"),
    },
    default=Rule("0"),
    quirks=(
        ("bias adds are added to the conv and linear MACs, and the sum is printed as MACs (GMac)",
         "a bias add is one add per output, not a multiply-accumulate: archcalc counts it among other ops "
         "(resnet50: 4,089,184,256 MACs; the 1,000 fc bias adds are other ops)"),
        ("a linear layer's bias is counted only when its input is 2-D or contiguous: fed straight from a permute, "
         "torch runs aten.mm then an add_ the backend does not count. This preset counts the bias adds whatever "
         "the layout (no zoo model has such a layer; the test measures the difference on one)",
         "the bias adds are the same whatever the memory layout: out values each"),
        ("everything but conv, transposed conv and linear counts 0: batchnorm, activations, pooling, residual adds, "
         "upsampling, normalisation",
         "archcalc counts their work as other ops (resnet50: 61,290,984 other ops beside its 4,089,184,256 MACs), apart from "
         "MACs rather than left out"),
    ),
    per_layer=False,
    display=_ptflops_string,
)
