"""TF-Slim networks as archcalc specs, layer by layer as TF-Slim builds them, for the checks
against google-research/receptive_field's table (tests/test_convention_tf_profiler.py).

Each builder follows tensorflow/models research/slim/nets/<net>.py as rf_benchmark.py
(receptive_field f12ae8e) calls it, and returns the graph and its end-points (TF-Slim's
end-point name -> the archcalc layer that outputs it):

- alexnet_v2, vgg_16, inception_v2_base, inception_v3_base, mobilenet_v1_base are built with no
  arg scope (mobilenet_v1: only batch norm's is_training), so every ``slim.conv2d`` has its
  default biases and ReLU and no batch norm;
- resnet_v1 is built under ``resnet_arg_scope()``: batch norm after every conv (no bias), ReLU,
  max pools with 'SAME' padding; ``conv2d_same`` pads explicitly ((k-1)//2 before, the rest
  after) and convolves 'VALID' when strided; a bottleneck's stride is in its 3x3 conv and, in
  TF-Slim's v1, in the *last* unit of a block, whose identity shortcut is ``subsample``: a 1x1
  max pool of that stride.
"""

from __future__ import annotations

from typing import Any

from archcalc.dsl import Net


class _Slim:
    """``slim.conv2d`` and friends over an archcalc Net: conv (bias unless batch norm), batch
    norm, activation, each a layer; returns the activation's (or the last layer's) name."""

    def __init__(self, name: str, resolution: int, batch_norm: bool = False) -> None:
        self.net = Net(name, input=(3, resolution, resolution))
        self.batch_norm = batch_norm
        self.end_points: dict[str, str] = {}

    def conv(self, name: str, filters: int, kernel: Any, stride: int = 1, padding: Any = "same",
             inputs: Any = None, activation: str | None = "relu", groups: int = 1) -> str:
        """A ``slim.conv2d``: conv, batch norm when the arg scope has it, activation."""
        last = self.net.conv(filters, kernel, stride=stride, padding=padding, groups=groups, bias=not self.batch_norm,
                             inputs=inputs, name=name)
        if self.batch_norm:
            last = self.net.batchnorm(name=f"{name}.bn")
        if activation:
            last = self.net.layer(activation, name=f"{name}.{activation}")
        return last

    def pool(self, kind: str, name: str, kernel: int, stride: int = 1, padding: Any = "valid", inputs: Any = None) -> str:
        """A ``slim.max_pool2d`` or ``slim.avg_pool2d``."""
        return self.net.layer(kind, inputs=inputs, name=name, kernel=kernel, stride=stride, padding=padding)

    def concat(self, name: str, *branches: str) -> str:
        """``tf.concat`` along channels."""
        return self.net.concat(*branches, name=name)

    def end(self, key: str, layer: str) -> str:
        """Record an end-point."""
        self.end_points[key] = layer
        return layer


def alexnet_v2(resolution: int) -> tuple[Any, dict[str, str]]:
    """alexnet.alexnet_v2(images, num_classes=None, is_training=False, global_pool=False)."""
    s = _Slim("alexnet_v2", resolution)
    s.end("alexnet_v2/conv1", s.conv("conv1", 64, 11, stride=4, padding="valid"))
    s.end("alexnet_v2/pool1", s.pool("maxpool", "pool1", 3, 2))
    s.end("alexnet_v2/conv2", s.conv("conv2", 192, 5))
    s.pool("maxpool", "pool2", 3, 2)
    s.end("alexnet_v2/conv3", s.conv("conv3", 384, 3))
    s.end("alexnet_v2/conv4", s.conv("conv4", 384, 3))
    s.end("alexnet_v2/conv5", s.conv("conv5", 256, 3))
    s.end("alexnet_v2/pool5", s.pool("maxpool", "pool5", 3, 2))
    return s.net.graph(), s.end_points


def vgg_16(resolution: int) -> tuple[Any, dict[str, str]]:
    """vgg.vgg_16(images, num_classes=None, is_training=False, global_pool=False): 3x3 'SAME'
    convs with bias and ReLU, 2x2 stride-2 max pools."""
    s = _Slim("vgg_16", resolution)
    for stage, (repeat, filters) in enumerate([(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)], start=1):
        for unit in range(1, repeat + 1):
            s.end(f"vgg_16/conv{stage}/conv{stage}_{unit}", s.conv(f"conv{stage}_{unit}", filters, 3))
        s.end(f"vgg_16/pool{stage}", s.pool("maxpool", f"pool{stage}", 2, 2))
    return s.net.graph(), s.end_points


def mobilenet_v1(resolution: int, depth_multiplier: float = 1.0) -> tuple[Any, dict[str, str]]:
    """mobilenet_v1.mobilenet_v1_base(images, depth_multiplier): _CONV_DEFS, 'SAME' padding;
    depth(d) = max(int(d * depth_multiplier), 8)."""
    s = _Slim("mobilenet_v1", resolution)

    def depth(d: int) -> int:
        return max(int(d * depth_multiplier), 8)

    s.end("Conv2d_0", s.conv("Conv2d_0", depth(32), 3, stride=2))
    channels = depth(32)
    separable = [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512), (1, 512), (1, 512), (1, 512), (1, 512),
                 (1, 512), (2, 1024), (1, 1024)]
    for i, (stride, filters) in enumerate(separable, start=1):
        s.conv(f"Conv2d_{i}_depthwise", channels, 3, stride=stride, groups=channels)
        s.end(f"Conv2d_{i}_pointwise", s.conv(f"Conv2d_{i}_pointwise", depth(filters), 1))
        channels = depth(filters)
    return s.net.graph(), s.end_points


def _conv2d_same(s: _Slim, name: str, filters: int, kernel: int, stride: int, activation: str | None = "relu") -> str:
    """resnet_utils.conv2d_same: 'SAME' at stride 1; else explicit padding and 'VALID'."""
    if stride == 1:
        return s.conv(name, filters, kernel, activation=activation)
    total = kernel - 1
    before = total // 2
    pads = [[before, total - before], [before, total - before]]
    return s.conv(name, filters, kernel, stride=stride, padding=pads, activation=activation)


def resnet_v1(resolution: int, units: tuple[int, int, int, int] = (3, 4, 6, 3),
              name: str = "resnet_v1_50") -> tuple[Any, dict[str, str]]:
    """resnet_v1.resnet_v1_50/101/152/200 under resnet_arg_scope() (num_classes=None,
    global_pool=False): the root (7x7/2 conv2d_same, 3x3/2 'SAME' max pool) and four blocks of
    bottlenecks, the block's stride in its last unit."""
    s = _Slim(name, resolution, batch_norm=True)
    last = _conv2d_same(s, "conv1", 64, 7, 2)
    last = s.pool("maxpool", "pool1", 3, 2, padding="same")
    channels = 64
    for block, (count, base, block_stride) in enumerate(zip(units, (64, 128, 256, 512), (2, 2, 2, 1)), start=1):
        for unit in range(1, count + 1):
            stride = block_stride if unit == count else 1
            prefix = f"block{block}.unit_{unit}"
            depth = base * 4
            if depth == channels:
                shortcut = last if stride == 1 else s.pool("maxpool", f"{prefix}.shortcut", 1, stride, inputs=last)
            else:
                shortcut = s.conv(f"{prefix}.shortcut", depth, 1, stride=stride, inputs=last, activation=None)
            s.conv(f"{prefix}.conv1", base, 1, inputs=last)
            _conv2d_same(s, f"{prefix}.conv2", base, 3, stride)
            residual = s.conv(f"{prefix}.conv3", depth, 1, activation=None)
            s.net.add(shortcut, residual, name=f"{prefix}.add")
            last = s.net.relu(name=f"{prefix}.relu")
            channels = depth
        s.end(f"{name}/block{block}", last)
    return s.net.graph(), s.end_points


def _branches(s: _Slim, mixed: str, net: str, branches: list[list[tuple[Any, ...]]]) -> str:
    """An Inception module: each branch a list of ops on ``net`` ("pool" entries are
    (kind, kernel, stride, padding), the rest (filters, kernel, stride, padding)), concatenated."""
    outputs = []
    for b, ops in enumerate(branches):
        last = net
        for k, op in enumerate(ops):
            name = f"{mixed}.Branch_{b}.{k}"
            if op[0] in ("maxpool", "avgpool"):
                kind, kernel, stride, padding = op
                last = s.pool(kind, name, kernel, stride, padding, inputs=last)
            else:
                filters, kernel, stride, padding = op
                last = s.conv(name, filters, kernel, stride=stride, padding=padding, inputs=last)
        outputs.append(last)
    return s.end(mixed, s.concat(mixed, *outputs))


def _c(filters: int, kernel: Any, stride: int = 1, padding: Any = "same") -> tuple[Any, ...]:
    return (filters, kernel, stride, padding)


def _p(kind: str, kernel: int = 3, stride: int = 1, padding: Any = "same") -> tuple[Any, ...]:
    return (kind, kernel, stride, padding)


def inception_v3(resolution: int) -> tuple[Any, dict[str, str]]:
    """inception.inception_v3_base(images): the 'VALID' stem, then the Mixed modules ('SAME')."""
    s = _Slim("inception_v3", resolution)
    s.end("Conv2d_1a_3x3", s.conv("Conv2d_1a_3x3", 32, 3, stride=2, padding="valid"))
    s.end("Conv2d_2a_3x3", s.conv("Conv2d_2a_3x3", 32, 3, padding="valid"))
    s.end("Conv2d_2b_3x3", s.conv("Conv2d_2b_3x3", 64, 3))
    s.end("MaxPool_3a_3x3", s.pool("maxpool", "MaxPool_3a_3x3", 3, 2))
    s.end("Conv2d_3b_1x1", s.conv("Conv2d_3b_1x1", 80, 1, padding="valid"))
    s.end("Conv2d_4a_3x3", s.conv("Conv2d_4a_3x3", 192, 3, padding="valid"))
    net = s.end("MaxPool_5a_3x3", s.pool("maxpool", "MaxPool_5a_3x3", 3, 2))
    for mixed, pool_filters in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
        net = _branches(s, mixed, net, [[_c(64, 1)], [_c(48, 1), _c(64, 5)], [_c(64, 1), _c(96, 3), _c(96, 3)],
                                        [_p("avgpool"), _c(pool_filters, 1)]])
    net = _branches(s, "Mixed_6a", net, [[_c(384, 3, 2, "valid")], [_c(64, 1), _c(96, 3), _c(96, 3, 2, "valid")],
                                         [_p("maxpool", 3, 2, "valid")]])
    for mixed, mid in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        net = _branches(s, mixed, net, [
            [_c(192, 1)],
            [_c(mid, 1), _c(mid, [1, 7]), _c(192, [7, 1])],
            [_c(mid, 1), _c(mid, [7, 1]), _c(mid, [1, 7]), _c(mid, [7, 1]), _c(192, [1, 7])],
            [_p("avgpool"), _c(192, 1)]])
    net = _branches(s, "Mixed_7a", net, [[_c(192, 1), _c(320, 3, 2, "valid")],
                                         [_c(192, 1), _c(192, [1, 7]), _c(192, [7, 1]), _c(192, 3, 2, "valid")],
                                         [_p("maxpool", 3, 2, "valid")]])
    for mixed in ("Mixed_7b", "Mixed_7c"):
        branch_0 = s.conv(f"{mixed}.Branch_0", 320, 1, inputs=net)
        b1 = s.conv(f"{mixed}.Branch_1.0", 384, 1, inputs=net)
        branch_1 = s.concat(f"{mixed}.Branch_1.concat", s.conv(f"{mixed}.Branch_1.1x3", 384, [1, 3], inputs=b1),
                            s.conv(f"{mixed}.Branch_1.3x1", 384, [3, 1], inputs=b1))
        b2 = s.conv(f"{mixed}.Branch_2.0", 448, 1, inputs=net)
        b2 = s.conv(f"{mixed}.Branch_2.1", 384, 3, inputs=b2)
        branch_2 = s.concat(f"{mixed}.Branch_2.concat", s.conv(f"{mixed}.Branch_2.1x3", 384, [1, 3], inputs=b2),
                            s.conv(f"{mixed}.Branch_2.3x1", 384, [3, 1], inputs=b2))
        s.pool("avgpool", f"{mixed}.Branch_3.pool", 3, 1, "same", inputs=net)
        branch_3 = s.conv(f"{mixed}.Branch_3.conv", 192, 1)
        net = s.end(mixed, s.concat(mixed, branch_0, branch_1, branch_2, branch_3))
    return s.net.graph(), s.end_points


def inception_v2(resolution: int, use_separable_conv: bool = True) -> tuple[Any, dict[str, str]]:
    """inception.inception_v2_base(images, use_separable_conv): everything 'SAME'; the first
    layer a separable 7x7/2 conv (depthwise multiplier 8, then a 1x1 to 64, one bias) or a plain one."""
    s = _Slim("inception_v2", resolution)
    if use_separable_conv:
        s.net.conv(24, 7, stride=2, padding="same", groups=3, bias=False, name="Conv2d_1a_7x7.depthwise")
        s.end("Conv2d_1a_7x7", s.conv("Conv2d_1a_7x7", 64, 1))
    else:
        s.end("Conv2d_1a_7x7", s.conv("Conv2d_1a_7x7", 64, 7, stride=2))
    s.end("MaxPool_2a_3x3", s.pool("maxpool", "MaxPool_2a_3x3", 3, 2, "same"))
    s.end("Conv2d_2b_1x1", s.conv("Conv2d_2b_1x1", 64, 1))
    s.end("Conv2d_2c_3x3", s.conv("Conv2d_2c_3x3", 192, 3))
    net = s.end("MaxPool_3a_3x3", s.pool("maxpool", "MaxPool_3a_3x3", 3, 2, "same"))

    def module(mixed: str, net: str, b0: int, b1: tuple[int, int], b2: tuple[int, int], pool: str, b3: int) -> str:
        return _branches(s, mixed, net, [[_c(b0, 1)], [_c(b1[0], 1), _c(b1[1], 3)],
                                         [_c(b2[0], 1), _c(b2[1], 3), _c(b2[1], 3)], [_p(pool), _c(b3, 1)]])

    def reduction(mixed: str, net: str, b0: tuple[int, int], b1: tuple[int, int]) -> str:
        return _branches(s, mixed, net, [[_c(b0[0], 1), _c(b0[1], 3, 2)],
                                         [_c(b1[0], 1), _c(b1[1], 3), _c(b1[1], 3, 2)],
                                         [_p("maxpool", 3, 2)]])

    net = module("Mixed_3b", net, 64, (64, 64), (64, 96), "avgpool", 32)
    net = module("Mixed_3c", net, 64, (64, 96), (64, 96), "avgpool", 64)
    net = reduction("Mixed_4a", net, (128, 160), (64, 96))
    net = module("Mixed_4b", net, 224, (64, 96), (96, 128), "avgpool", 128)
    net = module("Mixed_4c", net, 192, (96, 128), (96, 128), "avgpool", 128)
    net = module("Mixed_4d", net, 160, (128, 160), (128, 160), "avgpool", 96)
    net = module("Mixed_4e", net, 96, (128, 192), (160, 192), "avgpool", 96)
    net = reduction("Mixed_5a", net, (128, 192), (192, 256))
    net = module("Mixed_5b", net, 352, (192, 320), (160, 224), "avgpool", 128)
    module("Mixed_5c", net, 352, (192, 320), (192, 224), "maxpool", 128)
    return s.net.graph(), s.end_points
