"""Darknet's BFLOPs: what ``darknet detector test`` prints per layer and as "Total BFLOPS".

Reproduces AlexeyAB/darknet (the maintained fork; src/convolutional_layer.c, maxpool_layer.c,
shortcut_layer.c, parser.c at 59596d7, Dec 2025), which sets ``l.bflops`` for three layer types
and sums them in ``parse_network_cfg``:

- ``[convolutional]``: ``(2.0 * l.nweights * l.out_h * l.out_w) / 1e9`` with
  ``nweights = c / groups * n * size * size``: 2 per multiply-add, no bias, no batch norm;
- ``[maxpool]`` (and its ``avgpool=1`` local average): ``size * size * c * out_h * out_w / 1e9``,
  the window area per output value;
- ``[shortcut]``: ``out_w * out_h * out_c * n / 1e9``, n the layers in ``from=``: one add per
  output per extra input.

Every other layer prints no BF and adds nothing: ``[connected]``, ``[deconvolutional]``,
``[avgpool]`` (global), ``[route]``, ``[upsample]``, ``[batchnorm]``, activations, ``[softmax]``,
``[scale_channels]``. pjreddie/darknet (the original, f6afaab) prints the same conv figure,
``(2.0 * l.n * l.size*l.size*l.c/l.groups * l.out_h*l.out_w)/1e9 BFLOPs``, and nothing for other
layers and no total: its figures are this preset's conv rows.
"""

from __future__ import annotations

import struct

from archcalc.conventions import Convention, Rule


def bflops(value: int) -> str:
    """A count as darknet prints it: billions in single precision (``l.bflops`` is a C ``float``),
    ``%5.3f`` (``0.150 BFLOPS``)."""
    single = struct.unpack("f", struct.pack("f", value / 1e9))[0]
    return f"{single:5.3f} BFLOPS"


PRESET = Convention(
    name="darknet",
    tool="AlexeyAB/darknet 59596d7 (2025): the 'BF' column and 'Total BFLOPS' of parse_network_cfg",
    unit="BFLOPS",
    summary="2 per multiply-add of conv layers (no bias), the window area per output of max/average pools, one per "
            "output per extra input of a shortcut (add); every other layer 0, fully connected layers included",
    rules={
        "conv": Rule("2 * macs", note="(2.0 * l.nweights * l.out_h * l.out_w) / 1e9, nweights = c/groups * n * "
                                      "size^2: the multiply-adds twice; bias and batch norm not counted"),
        "maxpool": Rule("kernel * outputs", note="size*size*c * out_h*out_w: one per window value per output"),
        "avgpool": Rule("kernel * outputs", note="[maxpool] with avgpool=1 counts as the max pool"),
        "add": Rule("outputs * (n_inputs - 1)", note="[shortcut]: out_w*out_h*out_c * n, n the layers in from="),
    },
    default=Rule("0"),
    quirks=(
        ("[connected] (linear) layers print no BF and add 0 to the total",
         "a linear layer does units x in_features multiply-adds (archcalc: macs = units x inputs), as many as a "
         "1x1 conv on a 1x1 input, which darknet does count"),
        ("[deconvolutional] (transposed conv) layers add 0",
         "archcalc: every input value times the kernel's k^d x f/groups weights"),
        ("the total is summed in a C float (single precision)",
         "a float keeps about 7 significant digits, so a total of tens of BFLOPS gathers rounding near 1e-5 and "
         "its printed third decimal can differ from the exact sum's; archcalc sums exactly and rounds once"),
    ),
    per_layer=True,
    display=bflops,
)
