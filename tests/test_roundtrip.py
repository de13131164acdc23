"""Round trips between archcalc and the formats it reads and writes: spec -> PyTorch -> import and
spec -> ONNX -> import give the identical analysis (every layer's type, resolved attributes,
shape, counts and receptive field), and an import written as a readable spec reloads identically."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import archcalc
from archcalc.passes import analyze

ROOT = Path(__file__).resolve().parent.parent
#: A zoo and example subset covering every family of layers (the exporters' own tests run every
#: zoo model; these are the ones whose weights are small enough to round-trip quickly).
MODELS = ["lenet5", "resnet18", "googlenet", "inception_v3", "mobilenet_v2", "densenet121", "squeezenet1_0", "unet",
          "vgg16-cifar", "r3d_18", "stack-3x3-3", str(ROOT / "examples" / "convnext_tiny.py")]
IDS = [Path(m).stem for m in MODELS]


def _figures(graph, onnx=False):
    """Everything the analysis says of each layer but its name, and the totals.

    Two layers have one form in the file and so come back as their twin, with the same figures
    (checked here: the values stay in the comparison): an adaptive average pool to 1 is PyTorch's
    and ONNX's global average pool; stochastic depth is the identity at inference, and ONNX
    files are for inference (it has no node of its own; the training-memory totals, which count
    its masks, are left out of that comparison). A crop centred by rule ("^": resolved
    from the input size) is written with its resolved offsets, which no longer depend on it.
    """
    analysis = analyze(graph)
    totals = dict(analysis.totals.values)
    if onnx and any(r.type in ("stochastic_depth", "identity") for r in analysis.layers):
        # what training keeps differs with them (stochastic depth's masks): an inference file has no such figure
        for key in ("saved_bytes", "transient_bytes", "pytorch_training_bytes", "training_bytes"):
            totals.pop(key)
    rows = []
    for r in analysis.layers[1:]:
        kind, attrs = r.type, dict(r.attrs)
        if kind == "adaptive_avgpool" and set(attrs["output_size"]) == {1}:
            kind, attrs = "global_avgpool", {}
        if onnx and kind == "stochastic_depth":
            kind, attrs = "identity", {}
        rows.append((kind, attrs, r.output_shape, r.values, r.receptive_field.text().replace(" ^", "")))
    return rows, totals


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_spec_to_pytorch_and_back_is_the_identical_analysis(model):
    pytest.importorskip("torch")
    graph = archcalc.load(model)
    back = archcalc.from_torch(archcalc.to_torch(graph), graph.input_shape, name=graph.name)
    assert _figures(back) == _figures(graph)


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_spec_to_onnx_and_back_is_the_identical_analysis(model, tmp_path):
    pytest.importorskip("onnx")
    graph = archcalc.load(model)
    path = tmp_path / "model.onnx"
    archcalc.to_onnx(graph, path)
    back = archcalc.from_onnx(path)
    assert _figures(back, onnx=True) == _figures(graph, onnx=True)


def test_an_import_written_as_a_readable_spec_reloads_to_the_same_graph(tmp_path):
    pytest.importorskip("torch")
    from archcalc.specwriter import dump_spec

    imported = archcalc.from_torch(archcalc.to_torch("resnet18"), (3, 224, 224), name="resnet18")
    text = dump_spec(imported)
    spec = tmp_path / "resnet18.json"
    spec.write_text(text)
    again = archcalc.load(str(spec))
    assert [(n.name, n.type, n.attrs, n.inputs) for n in again] == [(n.name, n.type, n.attrs, n.inputs) for n in imported]
    assert '"blocks"' in text  # repeated units written once
    assert '"kernel": [3, 3]' not in text  # per-axis values written as one where they are equal


def test_torch_onnx_scoped_node_names_become_the_pytorch_import_names(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from torch import nn

    class Unit(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.relu = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv1(x)) + x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.layer1 = nn.Conv2d(3, 4, 3), nn.Sequential(Unit(), Unit())

        def forward(self, x):
            return self.layer1(self.stem(x))

    module, path = Net().eval(), tmp_path / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(1, 3, 16, 16),), str(path), dynamo=False)
    names = [n.name for n in archcalc.from_onnx(path)]
    assert names == ["input", "stem", "layer1.0.conv1", "layer1.0.relu", "layer1.0.add", "layer1.1.conv1",
                     "layer1.1.relu", "layer1.1.add"]
    assert names == [n.name for n in archcalc.from_torch(module, (3, 16, 16))]


def test_import_rename_gives_blocks_for_names_that_do_not_nest(tmp_path, capsys):
    pytest.importorskip("google.protobuf")
    import json

    from archcalc.cli import main

    prototxt = ROOT / "tests" / "data" / "caffe" / "googlenet.prototxt"
    spec = tmp_path / "googlenet.json"
    main(["import", str(prototxt), "-o", str(spec)])
    flat = json.loads(spec.read_text())
    main(["import", str(prototxt), "--rename", "-o", str(spec)])
    renamed = json.loads(spec.read_text())
    capsys.readouterr()
    assert "blocks" not in flat and "blocks" in renamed
    assert len(renamed["layers"]) < len(flat["layers"]) / 3  # the nine Inception modules written once
    original, again = archcalc.analyze(str(prototxt)), archcalc.analyze(str(spec))
    assert again.totals == original.totals
    assert [r.values for r in again.layers] == [r.values for r in original.layers]
