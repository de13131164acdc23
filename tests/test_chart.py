"""The architectures chart (`archcalc compare ... --plot FILE`) and the specs' cited references."""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import archcalc
from archcalc import zoo
from archcalc.cli import main
from archcalc.errors import ArchcalcError, MissingToolError, SpecError
from archcalc.graph import Reference
from archcalc.render.chart import BUBBLES_ID, MAX_BUBBLE_AREA, ChartPoint, chart_points, write_chart
from archcalc.spec import from_dict, from_json

SVG = "{http://www.w3.org/2000/svg}"
LECTURE = ["alexnet", "vgg16", "googlenet", "resnet50"]

# ------------------------------------------------------------------------------ the references

#: Zoo models whose spec follows torchvision layer for layer, and the weights whose documented
#: ImageNet-1K accuracy their reference cites (torchvision/models/*.py, `_metrics` "acc@1").
TORCHVISION_WEIGHTS = {
    "vgg11": "VGG11_Weights.IMAGENET1K_V1", "vgg13": "VGG13_Weights.IMAGENET1K_V1",
    "vgg16": "VGG16_Weights.IMAGENET1K_V1", "vgg19": "VGG19_Weights.IMAGENET1K_V1",
    "resnet18": "ResNet18_Weights.IMAGENET1K_V1", "resnet34": "ResNet34_Weights.IMAGENET1K_V1",
    "resnet50": "ResNet50_Weights.IMAGENET1K_V1", "resnet101": "ResNet101_Weights.IMAGENET1K_V1",
    "resnet152": "ResNet152_Weights.IMAGENET1K_V1", "squeezenet1_0": "SqueezeNet1_0_Weights.IMAGENET1K_V1",
    "squeezenet1_1": "SqueezeNet1_1_Weights.IMAGENET1K_V1", "densenet121": "DenseNet121_Weights.IMAGENET1K_V1",
    "mobilenet_v2": "MobileNet_V2_Weights.IMAGENET1K_V1", "inception_v3": "Inception_V3_Weights.IMAGENET1K_V1",
}
#: The documented values, as torchvision 0.29.1's source files give them (read there, and on
#: https://pytorch.org/vision/stable/models.html); the test below rechecks them against torchvision.
DOCUMENTED_TOP1 = {
    "vgg11": 69.020, "vgg13": 69.928, "vgg16": 71.592, "vgg19": 72.376, "resnet18": 69.758, "resnet34": 73.314,
    "resnet50": 76.130, "resnet101": 77.374, "resnet152": 78.312, "squeezenet1_0": 58.092, "squeezenet1_1": 58.178,
    "densenet121": 74.434, "mobilenet_v2": 71.878, "inception_v3": 77.294,
}


def test_which_zoo_models_carry_a_reference() -> None:
    cited = {name for name in zoo.names() if zoo.load(name).reference is not None}
    # alexnet-grouped: the paper's own network; the others torchvision's, layer for layer. Left out:
    # alexnet (Caffe's single-group form: no published accuracy of its own), googlenet (the paper
    # reports top-5 error only), vgg16-cifar (32x32 input), r3d_18 (Kinetics-400 clips, not ImageNet),
    # and the lecture's exercises and LeNet-5, U-Net.
    assert cited == set(TORCHVISION_WEIGHTS) | {"alexnet-grouped"}


@pytest.mark.parametrize("name", sorted(TORCHVISION_WEIGHTS))
def test_torchvision_references(name: str) -> None:
    reference = zoo.load(name).reference
    assert reference.top1 == DOCUMENTED_TOP1[name]
    assert TORCHVISION_WEIGHTS[name] in reference.source
    assert f"acc@1) {DOCUMENTED_TOP1[name]:.3f}%" in reference.source
    assert "https://pytorch.org/vision/stable/models.html" in reference.source


@pytest.mark.parametrize("name", sorted(TORCHVISION_WEIGHTS))
def test_references_against_torchvision(name: str) -> None:
    models = pytest.importorskip("torchvision.models")
    weights = models.get_weight(TORCHVISION_WEIGHTS[name])
    assert zoo.load(name).reference.top1 == weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]


def test_alexnet_reference_from_the_paper() -> None:
    # Krizhevsky et al. 2012, abstract: "top-1 and top-5 error rates of 37.5% and 17.0%" (ILSVRC-2010 test)
    reference = zoo.load("alexnet-grouped").reference
    assert reference.top1 == 100 - 37.5
    assert "37.5%" in reference.source and "ILSVRC-2010" in reference.source


def test_a_reference_reloads_identically() -> None:
    for name in ("resnet50", "alexnet-grouped"):
        graph = zoo.load(name)
        again = from_json(graph.to_json())
        assert again == graph and again.reference == graph.reference
    spec = {"name": "n", "reference": {"top1": 50, "source": "a book"}, "input": [1, 4], "layers": [{"type": "linear", "units": 2}]}
    graph = from_dict(spec)
    assert graph.reference == Reference(50.0, "a book")
    assert graph.to_dict()["reference"] == {"top1": 50.0, "source": "a book"}
    assert from_json(graph.to_json()) == graph
    assert from_dict({k: v for k, v in spec.items() if k != "reference"}) != graph  # the reference is part of the graph
    assert archcalc.load(json.loads(graph.to_json())) == graph


_BASE = {"name": "n", "input": [1, 4], "layers": [{"type": "linear", "units": 2}]}


@pytest.mark.parametrize(("reference", "message"), [
    (5, 'reference must be an object {"top1": <percent>, "source": "<citation>"}, got 5'),
    ({"top1": 101, "source": "x"}, "reference.top1 must be a number from 0 to 100 (top-1 accuracy in percent), got 101"),
    ({"top1": -0.5, "source": "x"}, "reference.top1 must be a number from 0 to 100 (top-1 accuracy in percent), got -0.5"),
    ({"top1": True, "source": "x"}, "reference.top1 must be a number from 0 to 100 (top-1 accuracy in percent), got true"),
    ({"top1": "76", "source": "x"}, "reference.top1 must be a number from 0 to 100 (top-1 accuracy in percent), got '76'"),
    ({"top1": float("nan"), "source": "x"}, "reference.top1 must be a number from 0 to 100 (top-1 accuracy in percent), got NaN"),
    ({"top1": 10**400, "source": "x"}, "reference.top1 must be a number from 0 to 100 (top-1 accuracy in percent), got an int of"),
    ({"source": "x"}, "reference.top1 must be a number from 0 to 100 (top-1 accuracy in percent), got nothing"),
    ({"top1": 50}, "reference.source must be a non-empty string (the citation), got nothing"),
    ({"top1": 50, "source": " "}, "reference.source must be a non-empty string (the citation), got ' '"),
    ({"top1": 50, "source": 7}, "reference.source must be a non-empty string (the citation), got 7"),
    ({"top1": 50, "source": "a\nb"}, "reference.source must be printable characters"),
    ({"top1": 50, "source": "x" * 2001}, "reference.source must be at most 2000 characters, got 2001"),
    ({"top1": 50, "source": "x", "url": "y"}, "reference: unknown key 'url'"),
])
def test_bad_references(reference: object, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        from_dict({**_BASE, "reference": reference}, "net.json")
    assert str(caught.value).startswith("spec 'net.json': " + message)


def test_bad_reference_in_json_text() -> None:
    with pytest.raises(SpecError, match=r"reference\.top1: NaN is not a number JSON allows"):
        from_json(json.dumps(_BASE)[:-1] + ', "reference": {"top1": NaN, "source": "x"}}', "net.json")


# ------------------------------------------------------------------------------ the chart

def _svg(path: Path) -> tuple[list, list[str]]:
    """The bubbles' <path> elements and the labels' texts, in order."""
    root = ET.parse(path).getroot()
    groups = {g.get("id"): g for g in root.iter(f"{SVG}g")}
    bubbles = list(groups[BUBBLES_ID].iter(f"{SVG}path"))
    labels = []
    i = 0
    while f"label-{i}" in groups:
        labels.append("".join(t.text or "" for t in groups[f"label-{i}"].iter(f"{SVG}text")))
        i += 1
    return bubbles, labels


def _extent(path_element) -> tuple[float, float, float]:
    """A circle's centre (x, y) and radius from its <path> outline."""
    numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", path_element.get("d"))]
    xs, ys = numbers[0::2], numbers[1::2]
    return (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2, (max(ys) - min(ys)) / 2


def test_the_lectures_chart_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "chart.svg"
    main(["compare", *LECTURE, "--plot", str(out)])
    captured = capsys.readouterr()
    assert captured.out.rstrip().endswith(f"wrote {out}")
    assert "Params" in captured.out  # the comparison table is still printed
    bubbles, labels = _svg(out)
    assert labels == LECTURE
    assert len(bubbles) == 4
    # bubble area proportional to params: radius^2 ratios equal the params ratios
    params = [archcalc.analyze(name).totals.params for name in LECTURE]
    radii = [_extent(b)[2] for b in bubbles]
    largest = max(range(4), key=lambda i: params[i])
    for i in range(4):
        assert radii[i] ** 2 / radii[largest] ** 2 == pytest.approx(params[i] / params[largest], rel=1e-3)
    # x: MACs on a log scale, y: params on a log scale; SVG's y grows downwards
    macs = [archcalc.analyze(name).totals.macs for name in LECTURE]
    xs = [_extent(b)[0] for b in bubbles]
    ys = [_extent(b)[1] for b in bubbles]
    assert sorted(range(4), key=lambda i: xs[i]) == sorted(range(4), key=lambda i: macs[i])
    assert sorted(range(4), key=lambda i: -ys[i]) == sorted(range(4), key=lambda i: params[i])
    text = out.read_text()
    assert "MACs per image" in text and "params, M" in text


def test_the_same_chart_twice_is_the_same_file(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    graphs = [zoo.load(name) for name in LECTURE]
    points = chart_points(graphs, [archcalc.analyze(g) for g in graphs])
    first = write_chart(points, tmp_path / "a.svg").read_bytes()
    assert write_chart(points, tmp_path / "b.svg").read_bytes() == first


def test_top1_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    models = ["alexnet-grouped", "vgg16", "resnet50", "resnet152", "mobilenet_v2", "inception_v3"]
    graphs = [zoo.load(name) for name in models]
    points = chart_points(graphs, [archcalc.analyze(g) for g in graphs], "top1")
    assert [p.top1 for p in points] == [g.reference.top1 for g in graphs] == [62.5, 71.592, 76.13, 78.312, 71.878, 77.294]
    assert [p.source for p in points] == [g.reference.source for g in graphs]
    out = tmp_path / "top1.svg"
    main(["compare", *models, "--plot", str(out), "--y", "top1", "--format", "json"])
    captured = capsys.readouterr()
    assert [m["model"] for m in json.loads(captured.out)] == models  # JSON on stdout stays JSON
    assert captured.err == f"wrote {out}\n"
    bubbles, labels = _svg(out)
    assert labels == models and len(bubbles) == len(models)
    ys = [_extent(b)[1] for b in bubbles]
    top1 = [p.top1 for p in points]
    assert sorted(range(len(models)), key=lambda i: -ys[i]) == sorted(range(len(models)), key=lambda i: top1[i])
    assert "top-1 accuracy, %" in out.read_text()


def test_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "chart.PNG"
    main(["compare", "lenet5", "resnet18", "--plot", str(out)])
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR" and int.from_bytes(data[16:20], "big") > 100


def test_one_point_and_a_batch(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "one.svg"
    main(["compare", "lenet5", "--plot", str(out), "--batch", "4"])
    bubbles, labels = _svg(out)
    assert labels == ["lenet5"] and len(bubbles) == 1
    assert "MACs for a batch of 4" in out.read_text()
    assert MAX_BUBBLE_AREA > 0


# ------------------------------------------------------------------------------ errors

def _fails(args: list[str], capsys: pytest.CaptureFixture[str], code: int = 2) -> str:
    with pytest.raises(SystemExit) as status:
        main(args)
    assert status.value.code == code
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing printed before the error
    assert captured.err.count("\n") == 1
    return captured.err


def test_top1_without_a_reference_names_the_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _fails(["compare", *LECTURE, "--plot", str(tmp_path / "c.svg"), "--y", "top1"], capsys)
    assert err.startswith("error: --y top1: no cited top-1 accuracy for 'alexnet', 'googlenet' (a spec's \"reference\"")
    assert not (tmp_path / "c.svg").exists()


def test_bad_suffix_and_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _fails(["compare", "lenet5", "--plot", str(tmp_path / "c.pdf")], capsys) == (
        f"error: --plot '{tmp_path / 'c.pdf'}': the chart's file name must end in .svg or .png\n")
    assert _fails(["compare", "lenet5", "--plot", str(tmp_path / "c")], capsys).startswith("error: --plot")
    assert _fails(["compare", "lenet5", "--y", "top1"], capsys).startswith("error: --y chooses the chart's y axis: give --plot FILE too")
    assert _fails(["compare", "lenet5", "--plot", "x.svg", "--y", "top5"], capsys).startswith("error: Invalid value for '--y'")


def test_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "missing" / "c.svg"
    err = _fails(["compare", "lenet5", "--plot", str(out)], capsys)
    assert err == f"error: output '{out}' cannot be written: No such file or directory\n"


def test_without_matplotlib(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    err = _fails(["compare", "lenet5", "--plot", str(tmp_path / "c.svg")], capsys, code=3)
    assert err == "error: the chart needs matplotlib, an optional extra: pip install 'archcalc[chart]' (or pip install matplotlib)\n"
    with pytest.raises(MissingToolError):
        write_chart([ChartPoint("n", 1, 1)], tmp_path / "c.svg")


def test_chart_function_errors(tmp_path: Path) -> None:
    with pytest.raises(ArchcalcError, match="at least one model"):
        write_chart([], tmp_path / "c.svg")
    with pytest.raises(ArchcalcError, match="--y must be one of params, top1, got 'macs'"):
        chart_points([], [], "macs")
    with pytest.raises(ArchcalcError, match="every point needs it"):
        write_chart([ChartPoint("n", 1, 1)], tmp_path / "c.svg", y="top1")


def test_names_are_literal_and_zero_counts_draw(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    # a name with matplotlib's math markup and XML's specials; a network with no params and no MACs
    graphs = [from_dict({"name": "z $\\frac$ <b>&", "input": [1, 4], "layers": [{"type": "relu"}]}),
              from_dict({"name": "fc", "input": [1, 4], "layers": [{"type": "linear", "units": 3}]})]
    out = write_chart(chart_points(graphs, [archcalc.analyze(g) for g in graphs]), tmp_path / "z.svg")
    bubbles, labels = _svg(out)
    assert labels == ["z $\\frac$ <b>&", "fc"]
    assert len(bubbles) == 2
