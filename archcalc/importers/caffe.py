"""Import a Caffe network description: the text format of Caffe's ``NetParameter`` (a
``deploy.prototxt`` or ``train_val.prototxt``, what Netscope draws) as an archcalc graph.

Parsing is protobuf's own: ``google.protobuf.text_format`` against Caffe's schema (BVLC's
``caffe.proto``, vendored beside this module with its BSD licence, loaded from the
FileDescriptorSet in ``_caffe_schema.py`` into a private descriptor pool). It checks every field
name, type and range as Caffe's C++ parser does and reports ``line:column``; no ``protoc`` runs
at install time, and no generated ``caffe_pb2`` ties archcalc to one protobuf release. The
protobuf package is the optional extra ``archcalc[caffe]``.

The network is the one Caffe builds for inference: phase TEST (the file's ``state`` gives the
level and stages), layers kept or dropped by their ``include``/``exclude`` rules as Caffe's
``Net::FilterNet``. Both ``layer {}`` and the older ``layers {}`` (V1, enum types such as
``CONVOLUTION``) are read. In-place layers (``bottom == top``, Caffe's norm for ReLU, BatchNorm,
Scale, Dropout) are followed by tracking each blob's latest producer.

Mapping (Caffe -> archcalc; layer names are Caffe's):

- ``Input`` / ``input:`` with ``input_shape`` or four ``input_dim`` / ``DummyData`` /
  ``MemoryData`` -> the graph's input (per sample: Caffe's batch axis is dropped); ``Data``,
  ``ImageData``, ``HDF5Data``, ``WindowData`` read their size from a database: give
  ``input_shape``. A data layer's second top (the labels) feeds only loss and accuracy layers.
- ``Convolution`` -> conv; ``Deconvolution`` -> conv_transpose (num_output, kernel_size or
  kernel_h/kernel_w, stride, pad or pad_h/pad_w, dilation, group, bias_term).
- ``Pooling`` MAX/AVE -> maxpool/avgpool with Caffe's output size: ``ceil((in + 2p - k)/s) + 1``
  (``round_mode: FLOOR``: floor), then, when there is padding, one less if the last window would
  start in the padding. archcalc's ``ceil_mode`` is PyTorch's rule, which clips that window with
  or without padding; the importer sets ``ceil_mode`` only where Caffe's size needs it and checks
  the two agree (they differ only for a stride above the kernel with no padding, where Caffe keeps
  a window wholly past the input: unsupported). AVE divides by the window clipped to the padded
  input, as PyTorch's ``count_include_pad``. ``global_pooling`` -> global_avgpool /
  adaptive_maxpool(1).
- ``InnerProduct`` -> linear, after a flatten named ``<layer>/flatten`` when its input has
  spatial axes (Caffe flattens implicitly from ``axis`` 1).
- ``ReLU`` -> relu, or leaky_relu with its ``negative_slope``; ``Sigmoid``, ``TanH``, ``ELU``,
  ``PReLU`` -> sigmoid, tanh, elu, prelu.
- ``LRN`` ACROSS_CHANNELS -> lrn (local_size, alpha, beta, k): Caffe and PyTorch both divide
  ``alpha`` by ``local_size``, so it carries over unchanged.
- ``Concat`` on the channel axis -> concat; ``Eltwise`` SUM (coefficients 1) -> add, PROD -> mul;
  ``Split`` -> nothing: its tops are the bottom (Caffe's explicit fan-out); ``Flatten`` ->
  flatten; ``Reshape`` (keeping the batch axis) -> reshape; ``Slice`` -> one slice per top,
  named ``<layer>/<top>``; ``Crop`` of spatial axes -> crop (Caffe's offsets, 0 by default);
  ``Dropout`` -> dropout; ``Softmax`` on the channel axis -> softmax.
- ``BatchNorm`` followed by a per-channel ``Scale`` with ``bias_term`` on its output -> one
  batchnorm named as the BatchNorm layer: Caffe's BatchNorm holds the running mean and variance
  (and a moving-average factor, Caffe's bookkeeping, not counted) and learns nothing; the
  Scale's gamma and beta are batchnorm's learned scale and shift, so the pair counts as
  PyTorch's BatchNorm2d (2c learned, 2c buffers). ``momentum`` is ``1 - moving_average_fraction``.
  A BatchNorm without such a Scale is unsupported (archcalc's batchnorm always learns 2c). A
  ``Scale`` on its own -> scale (c, + c with bias_term).
- ``SoftmaxWithLoss`` -> softmax over its first bottom (the probabilities the loss is taken of;
  the label bottom is ignored). ``Accuracy``, the other ``*Loss`` layers and ``Silence`` compute
  training or evaluation scalars: skipped, with a warning naming them.

Every other layer type (or a form above that archcalc cannot represent) is unsupported: the
import fails listing each with its count and first layer; with ``partial`` it passes through
(counted as 0) where Caffe's output shape is known (element-wise types, and the forms above).
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archcalc.errors import RuleError, SpecError
from archcalc.ops.attrs import MAX_INT
from archcalc.spec import MAX_LAYERS, quote

#: The largest prototxt read: a network description is text of a few hundred KB (ResNet-152's
#: deploy.prototxt is about 200 KB); protobuf's text parser is pure Python and takes seconds
#: per ten MB.
MAX_FILE_BYTES = 16 * 2**20

#: V1 ``layers {}`` enum types -> the type strings of ``layer {}`` (Caffe's UpgradeV1LayerType).
V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL", "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution", "DECONVOLUTION": "Deconvolution",
    "DATA": "Data", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct", "LRN": "LRN", "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power",
    "RELU": "ReLU", "SIGMOID": "Sigmoid", "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence", "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split",
    "SLICE": "Slice", "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

#: Layers that provide the network's input (their first top) and labels (their second).
DATA_LAYERS = frozenset({"Input", "Data", "ImageData", "HDF5Data", "WindowData", "MemoryData", "DummyData"})
#: Layers computing a training or evaluation scalar from the outputs: not part of the network analysed.
SKIPPED_LAYERS = frozenset({
    "Accuracy", "Silence", "ContrastiveLoss", "EuclideanLoss", "HingeLoss", "InfogainLoss",
    "MultinomialLogisticLoss", "SigmoidCrossEntropyLoss",
})
#: Unsupported types whose output has their (first) bottom's shape: passed through with --partial.
SAME_SHAPE = frozenset({"AbsVal", "BNLL", "Power", "Exp", "Log", "Threshold", "MVN", "Bias", "Clip", "Swish"})


@dataclass(frozen=True)
class _Blob:
    """A named blob: the archcalc node that holds it and its per-sample shape (Caffe's).

    ``node`` is None behind an unsupported layer (the import then fails, or with --partial the
    layer had no known shape): shapes still flow where known, so every unsupported layer is
    listed. ``why``: the blob is no feature map (labels, a mask, a second input): reading it is
    an error."""

    node: str | None
    shape: tuple[int, ...] | None
    why: str | None = None


@functools.lru_cache(maxsize=1)
def net_parameter_class() -> tuple[Any, Any]:
    """Caffe's NetParameter message class (in a private descriptor pool) and protobuf's
    ``text_format`` module.

    Raises:
        MissingToolError: protobuf is not installed (``pip install "archcalc[caffe]"``).
    """
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
    except ImportError:
        from archcalc.importers._builder import missing

        raise missing("protobuf", "caffe", "reading a Caffe prototxt") from None
    import base64

    from archcalc.importers._caffe_schema import DESCRIPTOR_SET_BASE64

    files = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(DESCRIPTOR_SET_BASE64))
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.AddSerializedFile(file.SerializeToString())
    descriptor = pool.FindMessageTypeByName("caffe.NetParameter")
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.21
        return message_factory.GetMessageClass(descriptor), text_format
    return message_factory.MessageFactory(pool).GetPrototype(descriptor), text_format  # pragma: no cover


def parse_prototxt(path: str | Path) -> Any:
    """Read a text-format Caffe ``NetParameter`` file.

    Returns:
        The parsed message (Caffe's schema: ``net.layer``, ``net.input``...).

    Raises:
        MissingToolError: without protobuf.
        SpecError: one line naming the file: unreadable, over ``MAX_FILE_BYTES``, binary (a
            ``.caffemodel``), or protobuf's parse error with its ``line:column``.
    """
    net_class, text_format = net_parameter_class()
    path = Path(path)
    where = quote(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{where}: is a directory, not a prototxt file") from None
    except OSError as error:
        raise SpecError(f"{where}: cannot read: {error.strerror or error}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(f"{where}: over {MAX_FILE_BYTES // 2**20} MiB: not a network description (a prototxt is a few hundred KB)")
    binary = data.find(b"\0")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        binary = error.start if binary < 0 else min(binary, error.start)
    if binary >= 0:
        raise SpecError(f"{where}: not a text prototxt (binary data at byte {binary}); "
                        "a .caffemodel holds trained weights: give the network's .prototxt")
    net = net_class()
    try:
        text_format.Parse(text, net)
    except text_format.ParseError as error:
        line, column = error.GetLine(), error.GetColumn()
        message = str(error)
        if line is not None:
            prefix = f"{line}:{column} : "
            message = message[len(prefix):] if message.startswith(prefix) else message
            raise SpecError(f"{where}: {line}:{column}: {message}") from None
        raise SpecError(f"{where}: {message}") from None
    return net


def from_caffe(path: str | Path, input_shape: Sequence[int] | None = None, *, partial: bool = False,
               max_layers: int = MAX_LAYERS) -> Any:
    """Import a Caffe prototxt as an archcalc :class:`~archcalc.graph.Graph`.

    Args:
        path: a text-format ``NetParameter`` file (``deploy.prototxt``).
        input_shape: the input's shape per sample, channels first, without the batch axis
            ((3, 224, 224)); replaces the file's own; required when the file declares none
            (a ``Data`` layer reads it from a database).
        partial: pass unsupported layers through (0 params, 0 MACs) where their output shape is
            known, instead of failing.
        max_layers: the most layers the graph may have.

    Returns:
        The graph, as :func:`archcalc.load` returns; layer names are Caffe's.

    Raises:
        MissingToolError: without protobuf (``pip install "archcalc[caffe]"``).
        SpecError: a bad file, one line naming it and the layer; UnsupportedOpsError (a
            SpecError) listing the unsupported layer types with their counts and first layers.
    """
    net = parse_prototxt(path)
    return _Importer(net, str(path), input_shape, partial, max_layers).run()


def _f32(value: float) -> float:
    """A float32 field's value as the shortest decimal that reads back to it (0.1, not 0.100000001)."""
    if not math.isfinite(value):
        return value
    for digits in range(1, 10):
        short = float(f"{value:.{digits}g}")
        if struct.unpack("f", struct.pack("f", short))[0] == value:
            return short
    return value  # pragma: no cover - 9 significant digits always round-trip a float32


def _compact(values: Sequence[int]) -> int | list[int]:
    """One int when every axis has the same value (``3``), else the list (``[3, 5]``)."""
    return values[0] if len(set(values)) == 1 else list(values)


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


class _Importer:
    """One import: walks the (filtered) layers, tracking blobs, and feeds the Builder."""

    def __init__(self, net: Any, source: str, input_shape: Sequence[int] | None, partial: bool, max_layers: int) -> None:
        self.net, self.source, self.partial, self.max_layers = net, source, partial, max_layers
        self.given_shape = self._checked_input_shape(input_shape) if input_shape is not None else None
        self.blobs: dict[str, _Blob] = {}
        self.builder: Any = None
        self.skipped: list[str] = []
        self.losses: list[str] = []  # SoftmaxWithLoss layers, counted as their softmax
        self.kind = ""  # the type of the layer being mapped
        self.positions: dict[int, int] = {}  # id(layer) -> its index among the file's layers

    # ---- errors and locations -------------------------------------------------------------

    def fail(self, where: str, problem: str) -> SpecError:
        """The error for a problem at ``where`` (a layer or input), one line naming the file."""
        return SpecError(f"{quote(self.source)}: {where}: {problem}")

    def where(self, layer: Any, kind: str) -> str:
        """How messages name a layer: ``layer 'conv1' (Convolution)``; unnamed, by its place in the file."""
        return f"layer '{layer.name}' ({kind})" if layer.name else f"layer {self.positions[id(layer)]} (from 0; {kind}, unnamed)"

    def _checked_input_shape(self, shape: Any) -> tuple[int, ...]:
        try:
            dims = tuple(shape)
        except TypeError:
            dims = None
        if not dims or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_INT for v in dims):
            raise SpecError(f"{quote(self.source)}: input_shape must be 1 or more sizes, each from 1 to {MAX_INT} (2**31 - 1), "
                            f"per sample without the batch axis, e.g. (3, 224, 224); got {shape!r}")
        return dims

    def _sample_shape(self, dims: Sequence[int], where: str) -> tuple[int, ...]:
        """A declared Caffe shape (batch first) as archcalc's per-sample shape."""
        dims = tuple(int(v) for v in dims)
        if len(dims) < 2:
            raise self.fail(where, f"shape must have a batch axis and at least one more (N, C, ...), got {_shape_text(dims) or 'none'}")
        bad = [v for v in dims if not 1 <= v <= MAX_INT]
        if bad:
            raise self.fail(where, f"each dim must be from 1 to {MAX_INT} (2**31 - 1), got {bad[0]} in {_shape_text(dims)}")
        return dims[1:]

    # ---- the layers -----------------------------------------------------------------------

    def layers(self) -> list[tuple[Any, str]]:
        """The layers Caffe keeps for phase TEST, each with its type string."""
        net = self.net
        if not len(net.layer) and not len(net.layers) and not len(net.input):
            raise SpecError(f"{quote(self.source)}: has no layers (an empty prototxt, or only comments and inputs)")
        if len(net.layer) and len(net.layers):
            raise SpecError(f"{quote(self.source)}: both 'layer' and V1 'layers' entries; Caffe refuses such a file: use one kind")
        state = net.state
        kept = []
        for index, layer in enumerate(net.layer if len(net.layer) else net.layers):
            self.positions[id(layer)] = index
            if len(net.layer):
                kind = layer.type
            elif layer.HasField("type"):
                enum_name = layer.DESCRIPTOR.fields_by_name["type"].enum_type.values_by_number[layer.type].name
                kind = V1_TYPES.get(enum_name, enum_name)
            elif layer.HasField("layer"):
                raise self.fail(f"layer '{layer.layer.name}'" if layer.layer.name else f"layer {index} (from 0)",
                                "is in Caffe's V0 form (layers { layer { ... } }); upgrade the file with Caffe's upgrade_net_proto_text")
            else:
                kind = ""
            if not kind:
                raise self.fail(f"layer '{layer.name}'" if layer.name else f"layer {index} (from 0)", "has no type")
            if len(layer.include) and len(layer.exclude):
                raise self.fail(self.where(layer, kind), "has both include and exclude rules; Caffe accepts one kind")
            included = not len(layer.include)
            if any(_meets_rule(state, rule) for rule in layer.exclude):
                included = False
            if any(_meets_rule(state, rule) for rule in layer.include):
                included = True
            if included:
                kept.append((layer, kind))
        return kept

    def declared_input(self, layers: list[tuple[Any, str]]) -> tuple[str, tuple[int, ...] | None, str]:
        """The first input: its blob name, per-sample shape (None if the file gives none) and where."""
        net = self.net
        if len(net.input):
            name = net.input[0]
            where = f"input '{name}'"
            if len(net.input_shape):
                if len(net.input_shape) != len(net.input):
                    raise self.fail(where, f"needs one input_shape per input: {len(net.input)} inputs, {len(net.input_shape)} input_shape")
                return name, self._sample_shape(net.input_shape[0].dim, where), where
            if len(net.input_dim):
                if len(net.input_dim) != 4 * len(net.input):
                    raise self.fail(where, f"needs 4 input_dim per input (N, C, H, W): {len(net.input)} inputs, "
                                           f"{len(net.input_dim)} input_dim")
                return name, self._sample_shape(net.input_dim[:4], where), where
            return name, None, where
        for layer, kind in layers:
            if kind in DATA_LAYERS and len(layer.top):
                where = self.where(layer, kind)
                return layer.top[0], self._data_layer_shape(layer, kind, where), where
        raise SpecError(f"{quote(self.source)}: no input: declare one (an Input layer, or 'input:' with 'input_shape' or "
                        "four 'input_dim') or give input_shape (--input)")

    def _data_layer_shape(self, layer: Any, kind: str, where: str) -> tuple[int, ...] | None:
        if kind in ("Input", "DummyData"):
            shapes = layer.input_param.shape if kind == "Input" else layer.dummy_data_param.shape
            if len(shapes) not in (0, 1, len(layer.top)):
                raise self.fail(where, f"needs 1 shape, or one per top ({len(layer.top)}), got {len(shapes)}")
            if len(shapes):
                return self._sample_shape(shapes[0].dim, where)
            if kind == "DummyData" and len(layer.dummy_data_param.num):
                p = layer.dummy_data_param
                return self._sample_shape((p.num[0], p.channels[0], p.height[0], p.width[0]), where)
            return None
        if kind == "MemoryData":
            p = layer.memory_data_param
            return self._sample_shape((p.batch_size, p.channels, p.height, p.width), where)
        return None  # Data, ImageData, HDF5Data, WindowData: the size is in the database

    def run(self) -> Any:
        from archcalc.importers._builder import Builder

        layers = self.layers()
        input_blob, declared, input_where = self.declared_input(layers)
        shape = self.given_shape or declared
        if shape is None:
            crop = next((layer.transform_param.crop_size for layer, kind in layers
                         if kind in DATA_LAYERS and layer.top[:1] == [input_blob] and layer.HasField("transform_param")), 0)
            example = f"3x{crop}x{crop} (its transform_param crop_size is {crop})" if crop else "3x224x224"
            raise self.fail(input_where, "has no shape in the file (its data come from a database or are declared "
                                         f"without dims); give input_shape (--input), e.g. {example}")
        if not len(self.net.layer) and not len(self.net.layers):
            raise SpecError(f"{quote(self.source)}: has no layers (an empty prototxt, or only comments and inputs)")
        name = self.net.name or Path(self.source).stem
        self.builder = Builder(name=name, input_shape=shape, source=self.source, partial=self.partial, max_layers=self.max_layers)
        self.blobs[input_blob] = _Blob(self.builder.input, tuple(shape))
        for extra in list(self.net.input)[1:]:
            self.blobs[extra] = _Blob(None, None, f"'{extra}' is a second network input; archcalc analyses networks with one input")
        consumed: set[int] = set()
        for index, (layer, kind) in enumerate(layers):
            if index in consumed:
                continue
            self.layer(layer, kind, layers, index, consumed, input_blob)
        if self.skipped:
            shown = ", ".join(self.skipped[:3]) + (f" and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else "")
            self.builder.warn(f"skipped {len(self.skipped)} training/evaluation-only layer(s) (loss, accuracy, silence): {shown}")
        if self.losses:
            shown = ", ".join(self.losses[:3]) + (f" and {len(self.losses) - 3} more" if len(self.losses) > 3 else "")
            self.builder.warn(f"SoftmaxWithLoss counted as the softmax of its first input (its probabilities; the loss and "
                              f"its label input are not counted): {shown}")
        return self.builder.build()

    def layer(self, layer: Any, kind: str, layers: list[tuple[Any, str]], index: int, consumed: set[int], input_blob: str) -> None:
        where = self.where(layer, kind)
        if kind in DATA_LAYERS:
            for position, top in enumerate(layer.top):
                if top == input_blob and position == 0 and self.blobs.get(top, _Blob(None, None)).node == self.builder.input:
                    continue
                why = (f"'{top}' holds the labels of {where}" if position else
                       f"'{top}' is a second network input ({where}); archcalc analyses networks with one input")
                self.blobs[top] = _Blob(None, None, why)
            return
        if kind in SKIPPED_LAYERS or (kind.endswith("Loss") and kind != "SoftmaxWithLoss"):
            self.skipped.append(f"'{layer.name}' ({kind})" if layer.name else where)
            return
        names = layer.bottom[:1] if kind == "SoftmaxWithLoss" else layer.bottom  # its label bottom is no feature
        if kind == "SoftmaxWithLoss":
            self.losses.append(f"'{layer.name}'" if layer.name else where)
        bottoms = [self.bottom(layer, where, position, name) for position, name in enumerate(names)]
        handler = _HANDLERS.get(kind)
        if any(blob.shape is None for blob in bottoms):  # behind an unsupported layer of unknown output shape
            if handler is None:
                self.builder.unsupported(kind, inputs=[], shape=None, name=layer.name or None, where=where)
            for top in layer.top:
                self.blobs[top] = _Blob(None, None)
            return
        if handler is None:
            shape = bottoms[0].shape if kind in SAME_SHAPE and bottoms else None
            self.unsupported(layer, kind, where, bottoms, shape)
            return
        if kind != "Split":
            self.count_bottoms(layer, where, bottoms, kind)
        self.kind = kind
        handler(self, layer, kind, where, bottoms, layers, index, consumed)

    def bottom(self, layer: Any, where: str, position: int, name: str) -> _Blob:
        blob = self.blobs.get(name)
        if blob is None:
            raise self.fail(where, f"bottom '{name}' is not produced by any layer before it (nor is it an input)")
        if blob.node is None and blob.why is not None:
            raise self.fail(where, f"bottom '{name}': {blob.why}")
        return blob

    def count_bottoms(self, layer: Any, where: str, bottoms: list[_Blob], kind: str) -> None:
        least = 2 if kind in ("Eltwise", "Crop") else 1
        most = None if kind in ("Concat", "Eltwise") else (2 if kind in ("Scale", "Crop") else 1)
        if len(bottoms) < least or (most is not None and len(bottoms) > most):
            wanted = f"at least {least}" if most is None else (f"{least}" if least == most else f"{least} to {most}")
            raise self.fail(where, f"takes {wanted} bottom(s), got {len(bottoms)}")
        if kind == "Slice":
            if len(layer.top) < 1:
                raise self.fail(where, "takes at least 1 top, got 0")
            return
        if kind == "SoftmaxWithLoss":  # tops: the loss (Caffe adds one when none is named) and the probabilities
            if len(layer.top) > 2:
                raise self.fail(where, f"takes at most 2 tops (loss, probabilities), got {len(layer.top)}")
            return
        tops = 2 if kind == "Pooling" else 1
        if not 1 <= len(layer.top) <= tops:
            raise self.fail(where, f"takes {'1 or 2 tops' if tops == 2 else '1 top'}, got {len(layer.top)}")

    # ---- emitting -------------------------------------------------------------------------

    def emit(self, layer: Any, where: str, op: str, attrs: dict[str, Any], inputs: Iterable[_Blob], shape: tuple[int, ...],
             params: dict[str, tuple[int, ...]] | None = None, name: str | None = None) -> _Blob:
        """Add one archcalc layer, have the builder check its shape (and params) against Caffe's,
        and make it the producer of the layer's first top."""
        inputs = list(inputs)
        node = None
        if all(blob.node is not None for blob in inputs):  # else behind an unsupported layer: shapes only
            node = self.builder.add(op, attrs, inputs=[blob.node for blob in inputs], name=name or layer.name or None, where=where)
            self.builder.expect(node, shape=shape, params=params or None)
        blob = _Blob(node, tuple(shape))
        if name is None:
            self.set_tops(layer, where, blob)
        return blob

    def set_tops(self, layer: Any, where: str, blob: _Blob) -> None:
        if self.kind == "SoftmaxWithLoss":  # its loss and its probabilities: both the softmax here
            for top in layer.top:
                self.blobs[top] = blob
            return
        for position, top in enumerate(layer.top):
            mask = f"'{top}' is the mask output of {where}; archcalc does not produce it"
            self.blobs[top] = blob if position == 0 else _Blob(None, None, mask)

    def unsupported(self, layer: Any, label: str, where: str, bottoms: list[_Blob], shape: tuple[int, ...] | None) -> None:
        available = all(blob.node is not None for blob in bottoms)
        node = self.builder.unsupported(label, inputs=[blob.node for blob in bottoms] if available else [],
                                        shape=shape if available else None, name=layer.name or None, where=where)
        blob = _Blob(node, None if shape is None else tuple(shape))
        for position, top in enumerate(layer.top):
            self.blobs[top] = blob if position == 0 else _Blob(None, None)

    def axis(self, axis: int, rank: int, where: str, name: str = "axis") -> int:
        """Caffe's CanonicalAxisIndex: ``axis`` in [-rank, rank) of a blob with ``rank`` axes (batch included)."""
        if not -rank <= axis < rank:
            raise self.fail(where, f"{name} must be from {-rank} to {rank - 1} for a blob of {rank} axes (batch included), got {axis}")
        return axis + rank if axis < 0 else axis


def _meets_rule(state: Any, rule: Any) -> bool:
    """Caffe's Net::StateMeetsRule for phase TEST, the state's level and stages."""
    phase_test = 1  # caffe.Phase.TEST; Caffe's Python and C++ deploy loads pass TEST
    if rule.HasField("phase") and rule.phase != phase_test:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    return all(stage in stages for stage in rule.stage) and not any(stage in stages for stage in rule.not_stage)


# ---- handlers: (importer, layer, kind, where, bottoms, layers, index, consumed) ----------------


def _spatial(im: _Importer, p: Any, where: str, n: int, name: str, default: int, minimum: int) -> list[int]:
    """A convolution's repeated per-axis field (kernel_size, stride, pad, dilation) with its
    ``_h``/``_w`` forms, as Caffe's BaseConvolutionLayer::LayerSetUp reads them."""
    repeated = list(getattr(p, name))
    short = {"kernel_size": "kernel", "stride": "stride", "pad": "pad"}.get(name)
    if short is not None and (p.HasField(f"{short}_h") or p.HasField(f"{short}_w")):
        if n != 2:
            raise im.fail(where, f"{short}_h and {short}_w are for 2D convolutions only; this input has {n} spatial axes")
        if repeated:
            raise im.fail(where, f"give {name} or {short}_h and {short}_w, not both")
        if not (p.HasField(f"{short}_h") and p.HasField(f"{short}_w")):
            raise im.fail(where, f"give both {short}_h and {short}_w")
        values = [getattr(p, f"{short}_h"), getattr(p, f"{short}_w")]
    elif not repeated:
        if name == "kernel_size":
            raise im.fail(where, "needs kernel_size (or kernel_h and kernel_w)")
        values = [default] * n
    elif len(repeated) in (1, n):
        values = repeated * n if len(repeated) == 1 else repeated
    else:
        raise im.fail(where, f"{name} must be given once or once per spatial axis ({n}), got {len(repeated)} values")
    if any(v < minimum for v in values):
        raise im.fail(where, f"{name} must be at least {minimum}, got {_shape_text(values)}")
    return values


def _convolution(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
    p = layer.convolution_param
    x = bottoms[0].shape
    if im.axis(p.axis, len(x) + 1, where) != 1 or len(x) < 2:
        shape_note = "a blob with spatial axes after the channels" if len(x) < 2 else "axis 1 (channels)"
        im.unsupported(layer, f"{kind} (not on {shape_note})", where, bottoms, None)
        return
    n = len(x) - 1
    kernel = _spatial(im, p, where, n, "kernel_size", 0, 1)
    stride = _spatial(im, p, where, n, "stride", 1, 1)
    pad = _spatial(im, p, where, n, "pad", 0, 0)
    dilation = _spatial(im, p, where, n, "dilation", 1, 1)
    if not p.HasField("num_output") or p.num_output < 1:
        raise im.fail(where, f"num_output must be given, at least 1, got {p.num_output if p.HasField('num_output') else 'none'}")
    filters, groups, channels = p.num_output, p.group, x[0]
    if groups < 1 or filters % groups or channels % groups:
        raise im.fail(where, f"group {groups} must divide num_output {filters} and the input's {channels} channels")
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    if kind == "Convolution":
        out = []
        for axis, (size, span, s, q) in enumerate(zip(x[1:], spans, stride, pad)):
            if size + 2 * q < span:
                raise im.fail(where, f"kernel extent {span} exceeds the padded input {size} + 2*{q} on spatial axis {axis}")
            out.append((size + 2 * q - span) // s + 1)
        weight = (filters, channels // groups, *kernel)
        op = "conv"
    else:  # Deconvolution: Caffe's output = s*(in - 1) + d*(k - 1) + 1 - 2p
        out = [s * (size - 1) + span - 2 * q for size, span, s, q in zip(x[1:], spans, stride, pad)]
        if min(out) < 1:
            raise im.fail(where, f"output size {_shape_text(out)} has an axis below 1 (stride*(in - 1) + kernel extent - 2*pad)")
        weight = (channels, filters // groups, *kernel)
        op = "conv_transpose"
    attrs = {"filters": filters, "kernel": _compact(kernel), "stride": _compact(stride), "padding": _compact(pad),
             "dilation": _compact(dilation), "groups": groups, "bias": bool(p.bias_term)}
    params = {"weight": weight, **({"bias": (filters,)} if p.bias_term else {})}
    im.emit(layer, where, op, attrs, bottoms, (filters, *out), params)


def caffe_pool_size(size: int, kernel: int, stride: int, pad: int, ceil: bool, padded: bool) -> int:
    """Caffe's PoolingLayer::Reshape output size along one axis.

    ``ceil((in + 2p - k) / s) + 1`` (``floor`` for round_mode FLOOR); then, when the layer has
    any padding (``padded``), one less if the last window would start in the padding
    (``(out - 1) * s >= in + p``). Exact integer arithmetic (Caffe computes in float, equal for
    sizes below 2**24).

    >>> caffe_pool_size(112, 3, 2, 0, True, False)    # GoogLeNet pool1: ceil(109/2) + 1
    56
    >>> caffe_pool_size(5, 1, 3, 0, True, False)      # a window starting past the input is kept
    3
    """
    numerator = size + 2 * pad - kernel
    out = (-(-numerator // stride) if ceil else numerator // stride) + 1
    if padded and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pooling(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
    from archcalc import formulas

    p = layer.pooling_param
    x = bottoms[0].shape
    if len(x) != 3:
        raise im.fail(where, f"Caffe pools (N, C, H, W) blobs; this input is {_shape_text(x)} per sample")
    method = p.DESCRIPTOR.fields_by_name["pool"].enum_type.values_by_number[p.pool].name
    has_kernel = p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w")
    if p.global_pooling:
        if has_kernel:
            raise im.fail(where, "with global_pooling the kernel size cannot be given")
    elif p.HasField("kernel_size") == (p.HasField("kernel_h") and p.HasField("kernel_w")):
        raise im.fail(where, "give kernel_size, or kernel_h and kernel_w, not both" if p.HasField("kernel_size") else
                      "needs kernel_size (or both kernel_h and kernel_w)")
    for short, name in (("pad", "pad"), ("stride", "stride")):
        if p.HasField(f"{short}_h") != p.HasField(f"{short}_w") or (p.HasField(f"{short}_h") and p.HasField(name)):
            raise im.fail(where, f"give {name}, or {short}_h and {short}_w")
    kernel = list(x[1:]) if p.global_pooling else (
        [p.kernel_size] * 2 if p.HasField("kernel_size") else [p.kernel_h, p.kernel_w])
    pad = [p.pad_h, p.pad_w] if p.HasField("pad_h") else [p.pad] * 2
    stride = [p.stride_h, p.stride_w] if p.HasField("stride_h") else [p.stride] * 2
    if min(kernel) < 1 or min(stride) < 1:
        raise im.fail(where, f"kernel and stride must be at least 1, got kernel {_shape_text(kernel)}, stride {_shape_text(stride)}")
    if p.global_pooling:
        if max(pad) or max(stride) != 1:
            raise im.fail(where, "with global_pooling, pad must be 0 and stride 1")
        if method == "STOCHASTIC":
            im.unsupported(layer, "Pooling STOCHASTIC", where, bottoms, (x[0], 1, 1))
            return
        op, attrs = ("global_avgpool", {}) if method == "AVE" else ("adaptive_maxpool", {"output_size": 1})
        im.emit(layer, where, op, attrs, bottoms, (x[0], 1, 1))
        return
    if max(pad) and any(q >= k for q, k in zip(pad, kernel)):
        raise im.fail(where, f"pad {_shape_text(pad)} must be below the kernel {_shape_text(kernel)}")
    ceil = p.round_mode == 0  # CEIL, Caffe's default
    out = [caffe_pool_size(size, k, s, q, ceil, bool(max(pad))) for size, k, s, q in zip(x[1:], kernel, stride, pad)]
    shape = (x[0], *out)
    if min(out) < 1:
        raise im.fail(where, f"output size {_shape_text(out)} has an axis below 1: the kernel {_shape_text(kernel)} "
                             f"exceeds the padded input {_shape_text(x[1:])}")
    if method == "STOCHASTIC":
        im.unsupported(layer, "Pooling STOCHASTIC", where, bottoms, shape)
        return
    mode = None
    if all(q <= k // 2 for q, k in zip(pad, kernel)):
        for ceil_mode in (False, True):
            try:
                sizes = [formulas.conv_output_size(size, k, s, q, ceil_mode=ceil_mode) for size, k, s, q in zip(x[1:], kernel, stride, pad)]
            except RuleError:
                continue
            if sizes == out:
                mode = ceil_mode
                break
    if mode is None:  # a window wholly past the input, or pad above kernel/2: no archcalc pool has that size
        why = "pad above kernel/2" if any(q > k // 2 for q, k in zip(pad, kernel)) else "a last window past the input"
        im.unsupported(layer, f"Pooling {method} ({why})", where, bottoms, shape)
        return
    attrs: dict[str, Any] = {"kernel": _compact(kernel), "stride": _compact(stride), "padding": _compact(pad)}
    if mode:
        attrs["ceil_mode"] = True
    if method == "AVE" and max(pad):
        attrs["count_include_pad"] = True  # Caffe divides by the window clipped to the padded input, as PyTorch
    im.emit(layer, where, "maxpool" if method == "MAX" else "avgpool", attrs, bottoms, shape)


def _inner_product(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
    p = layer.inner_product_param
    x = bottoms[0].shape
    if not p.HasField("num_output") or p.num_output < 1:
        raise im.fail(where, f"num_output must be given, at least 1, got {p.num_output if p.HasField('num_output') else 'none'}")
    units, rank = p.num_output, len(x) + 1
    axis = im.axis(p.axis, rank, where)
    if axis == 0:
        raise im.fail(where, "axis 0 would merge the batch axis into the features")
    bias = {"bias": (units,)} if p.bias_term else {}
    attrs = {"units": units, "bias": bool(p.bias_term)}
    if axis == 1:
        features = math.prod(x)
        source = bottoms[0]
        if len(x) > 1:  # Caffe flattens from axis 1 implicitly; archcalc's linear acts on the last axis
            source = im.emit(layer, where, "flatten", {"start_dim": 1, "end_dim": -1}, bottoms, (features,),
                             name=f"{layer.name or 'fc'}/flatten")
        im.emit(layer, where, "linear", attrs, [source], (units,), {"weight": (units, features), **bias})
    elif axis == rank - 1:
        im.emit(layer, where, "linear", attrs, bottoms, (*x[:-1], units), {"weight": (units, x[-1]), **bias})
    else:
        im.unsupported(layer, f"{kind} (axis {axis})", where, bottoms, (*x[:axis - 1], units))


def _relu(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
    slope = _f32(layer.relu_param.negative_slope)
    op, attrs = ("relu", {}) if slope == 0 else ("leaky_relu", {"negative_slope": slope})
    im.emit(layer, where, op, attrs, bottoms, bottoms[0].shape)


def _pointwise(op: str) -> Any:
    def handler(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
        im.emit(layer, where, op, {}, bottoms, bottoms[0].shape)

    return handler


def _elu(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
    im.emit(layer, where, "elu", {"alpha": _f32(layer.elu_param.alpha)}, bottoms, bottoms[0].shape)


def _prelu(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
    x = bottoms[0].shape
    count = 1 if layer.prelu_param.channel_shared else x[0]
    im.emit(layer, where, "prelu", {"num_parameters": count}, bottoms, x, {"slope": (count,)})


def _dropout(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
    im.emit(layer, where, "dropout", {"p": _f32(layer.dropout_param.dropout_ratio)}, bottoms, bottoms[0].shape)


def _lrn(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
    p = layer.lrn_param
    x = bottoms[0].shape
    if p.local_size % 2 == 0:
        raise im.fail(where, f"local_size must be odd (Caffe's LRN), got {p.local_size}")
    if p.norm_region != 0:  # WITHIN_CHANNEL
        im.unsupported(layer, "LRN WITHIN_CHANNEL", where, bottoms, x)
        return
    if len(x) != 3:
        raise im.fail(where, f"Caffe's LRN takes (N, C, H, W) blobs; this input is {_shape_text(x)} per sample")
    attrs = {"size": p.local_size, "alpha": _f32(p.alpha), "beta": _f32(p.beta), "k": _f32(p.k)}
    im.emit(layer, where, "lrn", attrs, bottoms, x)


def _softmax(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
    x = bottoms[0].shape
    if im.axis(layer.softmax_param.axis, len(x) + 1, where) != 1:
        im.unsupported(layer, f"{kind} (axis {layer.softmax_param.axis})", where, bottoms, x)
        return
    im.emit(layer, where, "softmax", {}, bottoms, x)


def _concat(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
    p = layer.concat_param
    x = bottoms[0].shape
    axis = im.axis(p.concat_dim if p.HasField("concat_dim") else p.axis, len(x) + 1, where)
    if axis == 0:
        raise im.fail(where, "axis 0 would concatenate along the batch")
    for position, blob in enumerate(bottoms[1:], 1):
        if len(blob.shape) != len(x) or any(a != b for i, (a, b) in enumerate(zip(blob.shape, x)) if i != axis - 1):
            raise im.fail(where, f"bottom {position} '{layer.bottom[position]}' is {_shape_text(blob.shape)}, bottom 0 "
                                 f"'{layer.bottom[0]}' is {_shape_text(x)}: they must agree on every axis but {axis}")
    shape = list(x)
    shape[axis - 1] = sum(blob.shape[axis - 1] for blob in bottoms)
    if len(bottoms) == 1:
        im.emit(layer, where, "identity", {}, bottoms, x)
    elif axis == 1:
        im.emit(layer, where, "concat", {}, bottoms, tuple(shape))
    else:
        im.unsupported(layer, f"{kind} (axis {axis})", where, bottoms, tuple(shape))


def _eltwise(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
    p = layer.eltwise_param
    x = bottoms[0].shape
    for position, blob in enumerate(bottoms[1:], 1):
        if blob.shape != x:
            raise im.fail(where, f"bottom {position} '{layer.bottom[position]}' is {_shape_text(blob.shape)}, bottom 0 "
                                 f"'{layer.bottom[0]}' is {_shape_text(x)}: Eltwise needs equal shapes")
    operation = p.DESCRIPTOR.fields_by_name["operation"].enum_type.values_by_number[p.operation].name
    coefficients = list(p.coeff)
    if coefficients and len(coefficients) != len(bottoms):
        raise im.fail(where, f"needs one coeff per bottom ({len(bottoms)}), got {len(coefficients)}")
    if coefficients and operation != "SUM":
        raise im.fail(where, "coeff is for operation SUM only")
    if operation == "SUM" and any(c != 1 for c in coefficients):
        im.unsupported(layer, "Eltwise SUM (coefficients other than 1)", where, bottoms, x)
    elif operation in ("SUM", "PROD"):
        im.emit(layer, where, "add" if operation == "SUM" else "mul", {}, bottoms, x)
    else:
        im.unsupported(layer, f"Eltwise {operation}", where, bottoms, x)


def _flatten(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
    x = bottoms[0].shape
    rank = len(x) + 1
    start = im.axis(layer.flatten_param.axis, rank, where)
    end = im.axis(layer.flatten_param.end_axis, rank, where, "end_axis")
    if start == 0 or end < start:
        raise im.fail(where, f"axis {start} to end_axis {end}: must keep the batch axis and run forwards (1 <= axis <= end_axis)")
    shape = (*x[:start - 1], math.prod(x[start - 1:end]), *x[end:])
    im.emit(layer, where, "flatten", {"start_dim": start, "end_dim": end}, bottoms, shape)


def _split(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
    if len(bottoms) != 1:
        raise im.fail(where, f"takes 1 bottom, got {len(bottoms)}")
    for top in layer.top:
        im.blobs[top] = bottoms[0]


def _scale_is_per_channel(p: Any, rank: int) -> bool:
    return p.axis in (1, 1 - rank) and p.num_axes == 1


def _batch_norm(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], layers: list[tuple[Any, str]],
                index: int, consumed: set[int]) -> None:
    x = bottoms[0].shape
    top = layer.top[0]
    following = layers[index + 1] if index + 1 < len(layers) else None
    fused = following is not None and following[1] == "Scale" and list(following[0].bottom) == [top]
    if fused:
        scale = following[0].scale_param
        fused = _scale_is_per_channel(scale, len(x) + 1) and scale.bias_term and len(following[0].top) == 1
    if fused and following[0].top[0] != top:  # not in place: nothing else may read the unscaled output
        for later, _kind in layers[index + 2:]:
            if top in later.bottom:
                fused = False
                break
            if top in later.top:
                break
    if not fused:
        im.unsupported(layer, "BatchNorm (without a per-channel Scale with bias_term after it)", where, bottoms, x)
        return
    p = layer.batch_norm_param
    momentum = float(f"{1 - _f32(p.moving_average_fraction):.7g}")  # 0.999 -> 0.001, to float32's precision
    if not 0 <= momentum <= 1:
        raise im.fail(where, f"moving_average_fraction must be from 0 to 1, got {_f32(p.moving_average_fraction)}")
    channels = (x[0],)
    params = {"running_mean": channels, "running_var": channels, "scale": channels, "shift": channels}
    blob = im.emit(layer, where, "batchnorm", {"eps": _f32(p.eps), "momentum": momentum}, bottoms, x, params)
    im.blobs[following[0].top[0]] = blob
    consumed.add(index + 1)


def _scale(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
    p = layer.scale_param
    x = bottoms[0].shape
    if len(bottoms) != 1 or not _scale_is_per_channel(p, len(x) + 1):
        what = "2 bottoms" if len(bottoms) != 1 else f"axis {p.axis}, num_axes {p.num_axes}"
        im.unsupported(layer, f"Scale ({what})", where, bottoms, x)
        return
    channels = (x[0],)
    im.emit(layer, where, "scale", {"bias": bool(p.bias_term)}, bottoms, x,
            {"scale": channels, **({"shift": channels} if p.bias_term else {})})


def _reshape(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
    """Caffe's ReshapeLayer: ``shape``'s dims replace the input's axes ``axis`` to
    ``axis + num_axes`` (batch included); 0 copies the input's size there, -1 is inferred."""
    p = layer.reshape_param
    x = bottoms[0].shape
    full = [None, *x]  # the batch size is not known here
    rank = len(full)
    start = p.axis if p.axis >= 0 else rank + p.axis + 1
    if not 0 <= start <= rank:
        raise im.fail(where, f"axis must be from {-rank - 1} to {rank} for a blob of {rank} axes (batch included), got {p.axis}")
    if p.num_axes < -1 or (p.num_axes >= 0 and start + p.num_axes > rank):
        raise im.fail(where, f"num_axes must be -1 or 0 to {rank - start} from axis {start}, got {p.num_axes}")
    end = rank if p.num_axes == -1 else start + p.num_axes
    dims = [int(d) for d in p.shape.dim]
    if sum(d == -1 for d in dims) > 1 or any(d < -1 for d in dims):
        raise im.fail(where, f"shape dims must be >= 0 (0 copies the input's), with at most one -1, got {_shape_text(dims)}")
    new: list[int | None] = []
    for i, d in enumerate(dims):
        if d == 0:
            if start + i >= rank:
                raise im.fail(where, f"dim {i} is 0 (copy) but the input has no axis {start + i}")
            new.append(full[start + i])
        else:
            new.append(d)
    out = [*full[:start], *new, *full[end:]]
    known = math.prod(v for v in out if v is not None and v != -1)
    if out[0] is None and -1 in out:  # the batch is kept: infer the -1 from the sample's size
        if known == 0 or math.prod(x) % known:
            raise im.fail(where, f"cannot infer the -1 in {_shape_text(dims)}: {math.prod(x)} values per sample")
        out[out.index(-1)] = math.prod(x) // known
    elif out[0] == -1 and None not in out[1:] and known == math.prod(x):  # the batch inferred: unchanged
        out[0] = None
    if out[0] is not None or None in out[1:]:
        im.unsupported(layer, f"{kind} (of the batch axis)", where, bottoms, None)
        return
    shape = tuple(out[1:])
    if math.prod(shape) != math.prod(x) or min(shape, default=1) < 1:
        raise im.fail(where, f"shape {_shape_text(shape)} per sample has {math.prod(shape)} values, the input {_shape_text(x)} "
                             f"{math.prod(x)}")
    im.emit(layer, where, "reshape", {"shape": list(shape)}, bottoms, shape)


def _slice(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
    p = layer.slice_param
    x = bottoms[0].shape
    axis = im.axis(p.slice_dim if p.HasField("slice_dim") else p.axis, len(x) + 1, where)
    if axis == 0:
        raise im.fail(where, "axis 0 would slice the batch")
    size, tops = x[axis - 1], len(layer.top)
    points = list(p.slice_point)
    if points:
        if len(points) != tops - 1 or points != sorted(set(points)) or points[0] < 1 or points[-1] >= size:
            raise im.fail(where, f"slice_point {', '.join(map(str, points))} must be {tops - 1} increasing point(s) for {tops} tops, "
                                 f"strictly inside axis {axis} of size {size}")
    elif size % tops:
        raise im.fail(where, f"axis {axis} of size {size} does not split into {tops} equal tops")
    else:
        points = [size // tops * i for i in range(1, tops)]
    for top, begin, stop in zip(layer.top, [0, *points], [*points, size]):
        shape = (*x[:axis - 1], stop - begin, *x[axis:])
        blob = im.emit(layer, where, "slice", {"dim": axis, "start": begin, "stop": stop}, bottoms, shape,
                       name=f"{layer.name or 'slice'}/{top}")
        im.blobs[top] = blob


def _crop(im: _Importer, layer: Any, kind: str, where: str, bottoms: list[_Blob], *_: Any) -> None:
    p = layer.crop_param
    x, like = bottoms[0].shape, bottoms[1].shape
    rank = len(x) + 1
    axis = im.axis(p.axis, rank, where)
    if len(like) != len(x):
        raise im.fail(where, f"bottom 1 '{layer.bottom[1]}' is {_shape_text(like)}, bottom 0 {_shape_text(x)}: ranks differ")
    offsets = list(p.offset)
    if len(offsets) > 1 and len(offsets) != rank - axis:
        raise im.fail(where, f"needs 1 offset or one per axis from {axis} ({rank - axis}), got {len(offsets)}")
    per_axis = [0 if i < axis else (offsets[0] if len(offsets) == 1 else offsets[i - axis] if offsets else 0) for i in range(1, rank)]
    shape = tuple(size if i + 1 < axis else ref for i, (size, ref) in enumerate(zip(x, like)))
    for i, (offset, size, out) in enumerate(zip(per_axis, x, shape)):
        if offset + out > size:
            raise im.fail(where, f"offset {offset} + size {out} exceeds the input's {size} on axis {i + 1}")
    if axis < 2:
        im.unsupported(layer, f"{kind} (axis {axis})", where, bottoms[:1], shape)
        return
    attrs = {"size": list(shape[1:]), "offset": per_axis[1:]}
    im.emit(layer, where, "crop", attrs, bottoms[:1], shape)


_HANDLERS = {
    "Convolution": _convolution,
    "Deconvolution": _convolution,
    "Pooling": _pooling,
    "InnerProduct": _inner_product,
    "ReLU": _relu,
    "Sigmoid": _pointwise("sigmoid"),
    "TanH": _pointwise("tanh"),
    "ELU": _elu,
    "PReLU": _prelu,
    "Dropout": _dropout,
    "LRN": _lrn,
    "Softmax": _softmax,
    "SoftmaxWithLoss": _softmax,
    "Concat": _concat,
    "Eltwise": _eltwise,
    "Flatten": _flatten,
    "Split": _split,
    "BatchNorm": _batch_norm,
    "Scale": _scale,
    "Reshape": _reshape,
    "Slice": _slice,
    "Crop": _crop,
}
