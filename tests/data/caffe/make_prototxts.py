"""Write the four whole-network test prototxts of tests/test_import_caffe.py (checked in; rerun
after editing this script: ``python tests/data/caffe/make_prototxts.py``).

Typed from the papers' architectures in the layout of the published Caffe deploy files (layer
names, in-place layers, parameter blocks as there), each in another of Caffe's input forms:

- ``alexnet.prototxt``: BVLC AlexNet (Krizhevsky et al. 2012, models/bvlc_alexnet): an Input
  layer, LRN before pooling, conv2/4/5 in 2 groups, ``param { lr_mult }`` blocks.
- ``vgg16.prototxt``: VGG ILSVRC 16 layers (Simonyan and Zisserman 2014, configuration D), as
  its authors published it: V1 ``layers {}`` with enum types and ``input_dim`` x4.
- ``googlenet.prototxt``: BVLC GoogLeNet (Szegedy et al. 2015, Table 1) with Caffe's ceil
  pooling, ``input:`` with ``input_shape { dim }``, no auxiliary classifiers (as deploy).
- ``resnet50.prototxt``: ResNet-50 (He et al. 2016; Kaiming He's deploy file): BatchNorm + Scale
  pairs in place, the stride in each stage's first 1x1 conv, conv1 with a bias, pool1 3x3/2
  without padding (Caffe's ceil rounding), ``layer {}`` entries with ``input_dim`` x4.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def _block(kind: str, name: str, bottoms: list[str], tops: list[str], body: str = "", v1: bool = False) -> str:
    head = f'{"layers" if v1 else "layer"} {{\n  name: "{name}"\n  type: {kind if v1 else chr(34) + kind + chr(34)}\n'
    links = "".join(f'  bottom: "{b}"\n' for b in bottoms) + "".join(f'  top: "{t}"\n' for t in tops)
    return head + links + body + "}\n"


def _conv_body(num_output: int, kernel: int, stride: int = 1, pad: int = 0, group: int = 1, bias: bool = True,
               params: bool = False) -> str:
    lines = []
    if params:
        lines += ["  param {\n    lr_mult: 1\n    decay_mult: 1\n  }\n"]
        if bias:
            lines += ["  param {\n    lr_mult: 2\n    decay_mult: 0\n  }\n"]
    fields = [f"num_output: {num_output}"]
    fields += [f"pad: {pad}"] if pad else []
    fields += [f"kernel_size: {kernel}"]
    fields += [f"group: {group}"] if group != 1 else []
    fields += [f"stride: {stride}"] if stride != 1 else []
    fields += [] if bias else ["bias_term: false"]
    return "".join(lines) + "  convolution_param {\n" + "".join(f"    {f}\n" for f in fields) + "  }\n"


def _pool_body(method: str, kernel: int, stride: int, pad: int = 0) -> str:
    return (f"  pooling_param {{\n    pool: {method}\n    kernel_size: {kernel}\n    stride: {stride}\n"
            + (f"    pad: {pad}\n" if pad else "") + "  }\n")


def _fc_body(num_output: int, params: bool = False) -> str:
    lines = "  param {\n    lr_mult: 1\n    decay_mult: 1\n  }\n  param {\n    lr_mult: 2\n    decay_mult: 0\n  }\n" if params else ""
    return lines + f"  inner_product_param {{\n    num_output: {num_output}\n  }}\n"


LRN = "  lrn_param {\n    local_size: 5\n    alpha: 0.0001\n    beta: 0.75\n  }\n"


def alexnet() -> str:
    out = ['name: "AlexNet"\n',
           _block("Input", "data", [], ["data"], "  input_param { shape: { dim: 10 dim: 3 dim: 227 dim: 227 } }\n")]
    x = "data"
    for i, (filters, kernel, stride, pad, group, norm, pool) in enumerate(
        [(96, 11, 4, 0, 1, True, True), (256, 5, 1, 2, 2, True, True), (384, 3, 1, 1, 1, False, False),
         (384, 3, 1, 1, 2, False, False), (256, 3, 1, 1, 2, False, True)], 1):
        out.append(_block("Convolution", f"conv{i}", [x], [f"conv{i}"], _conv_body(filters, kernel, stride, pad, group, params=True)))
        out.append(_block("ReLU", f"relu{i}", [f"conv{i}"], [f"conv{i}"]))
        x = f"conv{i}"
        if norm:
            out.append(_block("LRN", f"norm{i}", [x], [f"norm{i}"], LRN))
            x = f"norm{i}"
        if pool:
            out.append(_block("Pooling", f"pool{i}", [x], [f"pool{i}"], _pool_body("MAX", 3, 2)))
            x = f"pool{i}"
    for i, units in ((6, 4096), (7, 4096), (8, 1000)):
        out.append(_block("InnerProduct", f"fc{i}", [x], [f"fc{i}"], _fc_body(units, params=True)))
        x = f"fc{i}"
        if i < 8:
            out.append(_block("ReLU", f"relu{i}", [x], [x]))
            out.append(_block("Dropout", f"drop{i}", [x], [x], "  dropout_param {\n    dropout_ratio: 0.5\n  }\n"))
    out.append(_block("Softmax", "prob", [x], ["prob"]))
    return "".join(out)


def vgg16() -> str:
    out = ['name: "VGG_ILSVRC_16_layers"\ninput: "data"\ninput_dim: 10\ninput_dim: 3\ninput_dim: 224\ninput_dim: 224\n']
    x = "data"
    for stage, (filters, count) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1):
        for j in range(1, count + 1):
            name = f"conv{stage}_{j}"
            out.append(_block("CONVOLUTION", name, [x], [name], _conv_body(filters, 3, pad=1), v1=True))
            out.append(_block("RELU", f"relu{stage}_{j}", [name], [name], v1=True))
            x = name
        out.append(_block("POOLING", f"pool{stage}", [x], [f"pool{stage}"], _pool_body("MAX", 2, 2), v1=True))
        x = f"pool{stage}"
    for i, units in ((6, 4096), (7, 4096), (8, 1000)):
        out.append(_block("INNER_PRODUCT", f"fc{i}", [x], [f"fc{i}"], _fc_body(units), v1=True))
        x = f"fc{i}"
        if i < 8:
            out.append(_block("RELU", f"relu{i}", [x], [x], v1=True))
            out.append(_block("DROPOUT", f"drop{i}", [x], [x], "  dropout_param {\n    dropout_ratio: 0.5\n  }\n", v1=True))
    out.append(_block("SOFTMAX", "prob", [x], ["prob"], v1=True))
    return "".join(out)


#: GoogLeNet's Inception modules (Table 1): #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTIONS = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}


def googlenet() -> str:
    out = ['name: "GoogleNet"\ninput: "data"\ninput_shape {\n  dim: 10\n  dim: 3\n  dim: 224\n  dim: 224\n}\n']

    def conv_relu(name: str, relu: str, bottom: str, filters: int, kernel: int, stride: int = 1, pad: int = 0) -> str:
        out.append(_block("Convolution", name, [bottom], [name], _conv_body(filters, kernel, stride, pad, params=True)))
        out.append(_block("ReLU", relu, [name], [name]))
        return name

    x = conv_relu("conv1/7x7_s2", "conv1/relu_7x7", "data", 64, 7, 2, 3)
    out.append(_block("Pooling", "pool1/3x3_s2", [x], ["pool1/3x3_s2"], _pool_body("MAX", 3, 2)))
    out.append(_block("LRN", "pool1/norm1", ["pool1/3x3_s2"], ["pool1/norm1"], LRN))
    x = conv_relu("conv2/3x3_reduce", "conv2/relu_3x3_reduce", "pool1/norm1", 64, 1)
    x = conv_relu("conv2/3x3", "conv2/relu_3x3", x, 192, 3, pad=1)
    out.append(_block("LRN", "conv2/norm2", [x], ["conv2/norm2"], LRN))
    out.append(_block("Pooling", "pool2/3x3_s2", ["conv2/norm2"], ["pool2/3x3_s2"], _pool_body("MAX", 3, 2)))
    x = "pool2/3x3_s2"
    for module, (c1, c3r, c3, c5r, c5, proj) in INCEPTIONS.items():
        p = f"inception_{module}"
        b1 = conv_relu(f"{p}/1x1", f"{p}/relu_1x1", x, c1, 1)
        r3 = conv_relu(f"{p}/3x3_reduce", f"{p}/relu_3x3_reduce", x, c3r, 1)
        b3 = conv_relu(f"{p}/3x3", f"{p}/relu_3x3", r3, c3, 3, pad=1)
        r5 = conv_relu(f"{p}/5x5_reduce", f"{p}/relu_5x5_reduce", x, c5r, 1)
        b5 = conv_relu(f"{p}/5x5", f"{p}/relu_5x5", r5, c5, 5, pad=2)
        out.append(_block("Pooling", f"{p}/pool", [x], [f"{p}/pool"], _pool_body("MAX", 3, 1, 1)))
        b4 = conv_relu(f"{p}/pool_proj", f"{p}/relu_pool_proj", f"{p}/pool", proj, 1)
        out.append(_block("Concat", f"{p}/output", [b1, b3, b5, b4], [f"{p}/output"]))
        x = f"{p}/output"
        if module in ("3b", "4e"):
            name = "pool3/3x3_s2" if module == "3b" else "pool4/3x3_s2"
            out.append(_block("Pooling", name, [x], [name], _pool_body("MAX", 3, 2)))
            x = name
    out.append(_block("Pooling", "pool5/7x7_s1", [x], ["pool5/7x7_s1"], _pool_body("AVE", 7, 1)))
    out.append(_block("Dropout", "pool5/drop_7x7_s1", ["pool5/7x7_s1"], ["pool5/7x7_s1"],
                      "  dropout_param {\n    dropout_ratio: 0.4\n  }\n"))
    out.append(_block("InnerProduct", "loss3/classifier", ["pool5/7x7_s1"], ["loss3/classifier"], _fc_body(1000, params=True)))
    out.append(_block("Softmax", "prob", ["loss3/classifier"], ["prob"]))
    return "".join(out)


def resnet50() -> str:
    out = ['name: "ResNet-50"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 224\ninput_dim: 224\n']
    bn = "  batch_norm_param {\n    use_global_stats: true\n  }\n"
    scale = "  scale_param {\n    bias_term: true\n  }\n"

    def conv_bn(conv: str, suffix: str, bottom: str, filters: int, kernel: int, stride: int = 1, pad: int = 0,
                bias: bool = False, relu: str | None = None) -> str:
        out.append(_block("Convolution", conv, [bottom], [conv], _conv_body(filters, kernel, stride, pad, bias=bias)))
        out.append(_block("BatchNorm", f"bn{suffix}", [conv], [conv], bn))
        out.append(_block("Scale", f"scale{suffix}", [conv], [conv], scale))
        if relu:
            out.append(_block("ReLU", relu, [conv], [conv]))
        return conv

    x = conv_bn("conv1", "_conv1", "data", 64, 7, 2, 3, bias=True, relu="conv1_relu")
    out.append(_block("Pooling", "pool1", [x], ["pool1"], _pool_body("MAX", 3, 2)))
    x = "pool1"
    for stage, (width, count) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], 2):
        for i in range(count):
            unit = f"{stage}{'abcdef'[i]}"
            stride = 2 if i == 0 and stage > 2 else 1
            shortcut = conv_bn(f"res{unit}_branch1", f"{unit}_branch1", x, 4 * width, 1, stride) if i == 0 else x
            y = conv_bn(f"res{unit}_branch2a", f"{unit}_branch2a", x, width, 1, stride, relu=f"res{unit}_branch2a_relu")
            y = conv_bn(f"res{unit}_branch2b", f"{unit}_branch2b", y, width, 3, 1, 1, relu=f"res{unit}_branch2b_relu")
            y = conv_bn(f"res{unit}_branch2c", f"{unit}_branch2c", y, 4 * width, 1)
            out.append(_block("Eltwise", f"res{unit}", [shortcut, y], [f"res{unit}"]))
            out.append(_block("ReLU", f"res{unit}_relu", [f"res{unit}"], [f"res{unit}"]))
            x = f"res{unit}"
    out.append(_block("Pooling", "pool5", [x], ["pool5"], _pool_body("AVE", 7, 1)))
    out.append(_block("InnerProduct", "fc1000", ["pool5"], ["fc1000"], _fc_body(1000)))
    out.append(_block("Softmax", "prob", ["fc1000"], ["prob"]))
    return "".join(out)


def main() -> None:
    for name, build in (("alexnet", alexnet), ("vgg16", vgg16), ("googlenet", googlenet), ("resnet50", resnet50)):
        path = HERE / f"{name}.prototxt"
        path.write_text(f"# GENERATED by make_prototxts.py (tests/data/caffe): {name}, in Caffe's deploy layout\n" + build(),
                        encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
