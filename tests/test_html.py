"""``archcalc html``: the page is self-contained and shows the analysis' own figures.

The browser side (clicking, sorting, filtering, toggles) is tests/test_browser_report.py.
"""

from __future__ import annotations

import functools
import html.parser
import json
import re
from pathlib import Path

import pytest

from archcalc.explain import explain_layer
from archcalc.loading import load
from archcalc.passes import analyze
from archcalc.render import html as report_html
from archcalc.render.table import footer
from tests.helpers import run_main

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def _payload(model: str, **options) -> dict:
    return report_html.payload(model, **options)


class _Page(html.parser.HTMLParser):
    """Every start tag with its attributes, and the text of each <script> and <style>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.styles: list[str] = []
        self._open: tuple[str, dict[str, str | None]] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._open = (tag, dict(attrs))

    def handle_data(self, data):
        if self._open is not None:
            tag, attrs = self._open
            (self.scripts.append((attrs, data)) if tag == "script" else self.styles.append(data))

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._open = None


def _parse(text: str) -> _Page:
    parser = _Page()
    parser.feed(text)
    parser.close()
    return parser


def _embedded(text: str) -> dict:
    """The payload a page carries, read back as the browser reads it (the script element's text)."""
    page = _parse(text)
    (data,) = [body for attrs, body in page.scripts if attrs.get("type") == "application/json"]
    return json.loads(data)


_REMOTE = re.compile(r"^\s*(https?:|//|ftp:)", re.IGNORECASE)


def test_page_is_self_contained():
    """No tag fetches anything: no src or href to the network, no stylesheet link, no external
    script; styles import nothing; the drawings link nowhere either."""
    payload = _payload("googlenet", depth=1)
    text = report_html.page(payload, title="googlenet")
    page = _parse(text)
    assert [t for t, _ in page.tags].count("script") == 3  # the payload, the view's script, the call
    for tag, attrs in page.tags:
        for name in ("src", "href", "srcset", "action", "data", "poster"):
            assert not (attrs.get(name) and _REMOTE.match(attrs[name])), (tag, name, attrs[name])
        assert tag not in ("link", "iframe", "object", "embed", "img", "base"), tag
    assert not any(attrs.get("src") for attrs, _ in page.scripts)
    assert all("@import" not in style and "url(" not in style for style in page.styles)
    for svg in payload["svg"].values():
        assert not re.search(r"(?:xlink:)?href=\"(?!#)", svg)  # no link out of the drawing
        assert "<!DOCTYPE" not in svg and "<?xml" not in svg
    assert "fetch(" not in report_html.script() and "XMLHttpRequest" not in report_html.script()


def test_page_carries_the_payload_unchanged():
    payload = _payload("vgg16")
    assert _embedded(report_html.page(payload, title="vgg16")) == json.loads(json.dumps(payload))


def test_payload_figures_are_the_analysis_own():
    """The page's numbers are analyze()'s: the full analysis and each folded depth, as to_dict gives them."""
    for model, options in (("vgg16", {}), ("googlenet", {"depth": 1}), ("resnet50", {})):
        payload = _payload(model, **options)
        analysis = analyze(load(model))
        assert payload["analysis"] == json.loads(json.dumps(analysis.to_dict()))
        for key, rows in payload["folded"].items():
            assert rows == json.loads(json.dumps(analysis.to_dict(depth=int(key))["layers"]))
        assert payload["footer"] == footer(analysis)


def test_options_reach_the_analysis():
    payload = report_html.payload("lenet5", batch=4, dtype="float16", optimizer="adam", memory_model="lecture")
    expected = analyze(load("lenet5"), batch=4, dtype="float16", optimizer="adam", memory_model="lecture")
    assert payload["analysis"] == json.loads(json.dumps(expected.to_dict()))
    assert payload["title"] == "lenet5: input 4x3x32x32, float16"
    assert payload["footer"] == footer(expected)


def test_table_cells_are_the_report_markdown_rows():
    """Each cell is what `archcalc report --format markdown` prints, at every depth the page offers."""
    payload = _payload("googlenet", depth=1)
    for key in payload["depths"]:
        status, out, _ = run_main("report", "googlenet", "--format", "markdown", *([] if key == "full" else ["--depth", key]))
        assert status == 0
        lines = [line for line in out.splitlines() if line.startswith("| ")][1:]  # header first
        rows = [[cell.strip().replace("\\|", "|") for cell in line[2:-2].split(" | ")] for line in lines]
        assert rows[:-1] == payload["cells"][key]
        assert [cell.strip("*") for cell in rows[-1]] == payload["totals"]
    headers = [c["header"] for c in payload["columns"]]
    assert headers[:2] == ["Layer", "Type"] and "MACs" in headers


def test_every_explain_line_is_there():
    """Every layer's lines, as `archcalc explain MODEL LAYER` prints them."""
    payload = _payload("vgg16")
    graph = load("vgg16")
    analysis = analyze(graph)
    assert set(payload["explain"]) == {row.name for row in analysis.layers}
    for name, lines in payload["explain"].items():
        assert lines == [list(line) for line in explain_layer(graph, analysis, name, group_digits=True)]
    status, out, _ = run_main("explain", "vgg16", "conv1_2")
    assert status == 0
    for quantity, text in payload["explain"]["conv1_2"]:
        assert re.search(rf"^  {re.escape(quantity)} +{re.escape(text)}$", out, re.MULTILINE), (quantity, text)
    # the arithmetic checks out: 64 filters of 3x3x64 plus biases
    assert any(text.endswith("= 36,928") for _, text in payload["explain"]["conv1_2"])


def test_depths_offered_and_chosen():
    assert _payload("vgg16")["depths"] == ["full"]  # no blocks: nothing folds
    googlenet = _payload("googlenet", depth=1)
    assert googlenet["depths"] == ["1", "full"] and googlenet["depth"] == "1"  # depth 2 folds nothing more
    resnet = _payload("resnet50")
    assert resnet["depths"] == ["1", "2", "full"] and resnet["depth"] == "full"
    assert report_html.payload("resnet50", depth=2, svg_budget=0)["depth"] == "2"
    assert report_html.payload("googlenet", depth=7, svg_budget=0)["depth"] == "full"
    assert len(resnet["folded"]["1"]) < len(resnet["folded"]["2"]) < len(resnet["analysis"]["layers"])


def test_drawings_are_render_s(tmp_path):
    """The embedded SVG is `archcalc render`'s drawing (prologue, comments and the font family aside)."""
    from archcalc.render.dot import render

    payload = _payload("googlenet", depth=1)
    drawn = render("googlenet", tmp_path / "g.svg", depth=1, color="macs").read_text()
    tidy = re.sub(r"<!--.*?-->\n?", "", drawn[drawn.index("<svg"):], flags=re.DOTALL).replace(' font-family="Helvetica,sans-Serif"', "")
    assert payload["svg"]["1/macs"] == tidy
    assert "% of MACs" in payload["svg"]["1/macs"] and "% of" not in payload["svg"]["1/none"]
    assert "% of params" in payload["svg"]["full/params"]


def test_nodes_map_rows_to_drawn_boxes():
    """Each drawn node holds the rows the payload says; every row is in exactly one node."""
    payload = _payload("resnet50")
    for key in payload["depths"]:
        svg = payload["svg"][f"{key}/macs"]
        titles = re.findall(r'<g id="node\d+" class="node">\n<title>(n\d+)</title>', svg)
        assert sorted(titles) == sorted(payload["boxes"][key])
        names = [row[0] for row in payload["cells"][key]]
        assert sorted(payload["nodes"][key]) == sorted(names)
        assert sorted(n for held in payload["boxes"][key].values() for n in held) == sorted(names)
        for node, held in payload["boxes"][key].items():
            assert all(payload["nodes"][key][name] == node for name in held)
    # compact: a conv, its batchnorm and ReLU are one box
    assert payload["boxes"]["full"][payload["nodes"]["full"]["conv1"]] == ["conv1", "bn1", "relu"]


def test_resnet50_page_is_under_a_megabyte():
    """The issue's bound; the figure itself is printed (and reported)."""
    payload = _payload("resnet50")
    size = len(report_html.page(payload, title="resnet50").encode("utf-8"))
    print(f"resnet50 page at full depth: {size:,} bytes")
    assert size < 2**20
    # the first colour is drawn at every depth; what the budget leaves out has a hint to regenerate it
    assert all(f"{key}/macs" in payload["svg"] for key in payload["depths"])
    for name in {f"{k}/{c}" for k in payload["depths"] for c in payload["colors"]} - set(payload["svg"]):
        assert "archcalc html resnet50" in payload["hints"][name] and "--color" in payload["hints"][name]


def test_budget_leaves_out_other_colours_with_a_hint():
    payload = report_html.payload("lenet5", color="params", svg_budget=0)
    assert list(payload["svg"]) == ["full/params"]
    assert payload["hints"]["full/none"].startswith("left out to keep the page small: regenerate with archcalc html lenet5 --color none")


def test_a_huge_network_is_refused_in_one_line():
    """A small spec whose blocks expand past the bound is refused before any analysis or drawing."""
    from archcalc.errors import ArchcalcError

    spec = {"name": "long", "input": [2, 4, 4], "blocks": {"r": {"layers": [{"type": "relu"}]}},
            "layers": [{"block": "r", "repeat": report_html.MAX_PAGE_LAYERS}]}
    with pytest.raises(ArchcalcError) as error:
        report_html.payload(spec)
    assert str(error.value) == (f"model 'long': {report_html.MAX_PAGE_LAYERS + 1:,} layers, more than a web page shows (at most "
                                f"{report_html.MAX_PAGE_LAYERS:,}); archcalc report MODEL (--depth N, --format json or csv) "
                                "has no such bound")


def test_deep_nesting_offers_the_shallowest_depths_and_the_one_asked():
    spec = {"name": "deep", "input": [2, 4, 4], "blocks": {"b0": {"layers": [{"type": "relu"}, {"type": "relu"}]}}, "layers": []}
    for level in range(1, 9):  # b8 holds b7 ... holds b0: 9 levels of blocks
        spec["blocks"][f"b{level}"] = {"layers": [{"block": f"b{level - 1}", "repeat": 2}]}
    spec["layers"] = [{"block": "b8"}]
    payload = report_html.payload(spec, svg_budget=0, depth=8)
    assert payload["depths"] == ["1", "2", "3", "4", "5", "6", "8", "full"] and payload["depth"] == "8"


def test_first_drawing_only_for_the_live_editor():
    payload = report_html.payload("googlenet", depth=1, color="params", drawings="first")
    assert list(payload["svg"]) == ["1/params"] and payload["hints"] == {}
    assert payload["depths"] == ["1", "full"] and set(payload["boxes"]) == {"1", "full"}


def test_windows_slide_as_the_output_shape_says():
    """Each 2D window's geometry gives the analyzer's output size by the conv arithmetic
    (Dumoulin and Visin 2016): o = floor((i' + p_before + p_after - d*(k-1) - 1) / s) + 1, with i' the
    input after inserting D-1 zeros between values (a transposed conv)."""
    graph = {"name": "t", "input": [3, 9, 9], "layers": [
        {"type": "conv", "name": "c", "filters": 4, "kernel": 3, "stride": 2, "padding": 1, "dilation": 2},
        {"type": "conv_transpose", "name": "up", "filters": 2, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1},
        {"type": "maxpool", "name": "pool", "kernel": [2, 3], "stride": [2, 1]},
        {"type": "relu", "name": "r"},
        {"type": "adaptive_avgpool", "name": "ap", "output_size": [3, 4]},  # 4x6 -> 3x4: columns 2 wide, 1 or 2 apart
    ]}
    payload = report_html.payload(graph, svg_budget=0)
    windows = payload["windows"]
    assert set(windows) == {"c", "up", "pool", "ap"}  # relu slides no window
    for name, w in windows.items():
        if not w["uniform"]:
            continue
        for axis in range(2):
            dilated = (w["input"][axis] - 1) * w["input_dilation"][axis] + 1
            before, after = w["padding"][axis]
            span = w["dilation"][axis] * (w["kernel"][axis] - 1) + 1
            assert (dilated + before + after - span) // w["stride"][axis] + 1 == w["output"][axis], (name, axis)
    assert windows["c"] | {"padding": None} == {
        "type": "conv", "summary": windows["c"]["summary"], "input": [9, 9], "output": [4, 4], "kernel": [3, 3],
        "stride": [2, 2], "dilation": [2, 2], "padding": None, "input_dilation": [1, 1], "uniform": True, "transposed": False}
    assert windows["c"]["padding"] == [[1, 1], [1, 1]]
    up = windows["up"]  # 4 -> (4-1)*2 - 2*1 + 3 + 1 = 8: zeros between inputs, padding k-1-p = 1 before, + output_padding after
    assert up["transposed"] and up["input_dilation"] == [2, 2] and up["stride"] == [1, 1]
    assert up["input"] == [4, 4] and up["output"] == [8, 8] and up["padding"] == [[1, 2], [1, 2]]
    assert windows["pool"]["kernel"] == [2, 3] and windows["pool"]["stride"] == [2, 1]
    assert windows["ap"]["uniform"] is False and windows["ap"]["input"] == [4, 6] and windows["ap"]["output"] == [3, 4]


def test_fields_on_the_input_grid():
    """VGG16's fields by hand (Araujo et al. 2019's recurrence): conv1_1 3x3 p1 sees 3 rows, 1 of
    padding; conv1_2 5 rows, 2 of padding; pool1 (2x2/2) 6 rows with jump 2."""
    fields = _payload("vgg16")["fields"]
    assert fields["conv1_1"] == {"input": [224, 224], "output": [224, 224], "size": [3, 3], "stride": [1, 1],
                                 "padding": [1, 1], "centre": [0, 0], "exact": True, "aligned": True, "uniform": True}
    assert fields["conv1_2"]["size"] == [5, 5] and fields["conv1_2"]["padding"] == [2, 2]
    assert fields["pool1"]["size"] == [6, 6] and fields["pool1"]["stride"] == [2, 2] and fields["pool1"]["centre"] == [0.5, 0.5]
    assert "fc6" not in fields  # global: no region to draw
    analysis = analyze(load("vgg16"))
    for name, field in fields.items():
        expected = analysis.layer(name).receptive_field.to_dict()
        assert all(field[key] == expected[key] for key in ("size", "stride", "padding", "centre"))


def test_names_cannot_break_out_of_the_page():
    """A layer named like markup stays data: the page has its three scripts and reads back the names."""
    name = '</script><script>alert(1)</script><!--'
    spec = {"name": "<b>x</b>", "description": "a </SCRIPT> <!-- c", "input": [1, 8, 8],
            "layers": [{"type": "conv", "name": name, "filters": 2, "kernel": 3}]}
    payload = report_html.payload(spec, svg_budget=0)
    text = report_html.page(payload, title=payload["title"])
    page = _parse(text)
    assert [t for t, _ in page.tags].count("script") == 3
    assert _embedded(text) == json.loads(json.dumps(payload))
    assert "<title>&lt;b&gt;x&lt;/b&gt;: input 1x8x8, float32</title>" in text
    assert "alert(1)</script>" not in text and "</SCRIPT>" not in text
    assert json.loads(report_html.inline_json(["a\u2028</b>"])) == ["a\u2028</b>"] and "\u2028" not in report_html.inline_json(["\u2028"])


def test_without_graphviz_the_page_still_has_its_table(monkeypatch):
    import graphviz

    def missing(*args, **kwargs):
        raise graphviz.ExecutableNotFound(("dot",))

    monkeypatch.setattr(graphviz.Source, "pipe", missing)
    payload = report_html.payload("lenet5")
    assert payload["svg"] == {} and "Graphviz" in payload["graph_note"]
    assert len(payload["cells"]["full"]) == len(payload["analysis"]["layers"])


@pytest.mark.parametrize("bad, message", [
    ({"color": "pink"}, "color must be one of none, macs, params, activations, got 'pink'"),
    ({"depth": 0}, "depth must be 1 or more (levels of blocks shown), got 0"),
    ({"drawings": "some"}, "drawings must be all or first, got 'some'"),
])
def test_bad_options_from_python(bad, message):
    from archcalc.errors import ArchcalcError

    with pytest.raises(ArchcalcError) as error:
        report_html.payload("lenet5", **bad)
    assert str(error.value) == message


def test_cli_writes_the_page(tmp_path):
    out = tmp_path / "v.html"
    status, stdout, stderr = run_main("html", "vgg16", "-o", str(out))
    assert status == 0 and stderr.strip() == f"wrote {out}"
    assert _embedded(out.read_text(encoding="utf-8"))["analysis"]["totals"]["params"] == 138357544  # the paper's count
    status, stdout, _ = run_main("html", "lenet5", "-o", "-", "--depth", "1", "--color", "params", "--batch", "2")
    assert status == 0 and stdout.startswith("<!DOCTYPE html>")
    payload = _embedded(stdout)
    assert payload["color"] == "params" and payload["analysis"]["batch"] == 2


def test_cli_default_output_is_the_model_name_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "net.json"
    spec.write_text(json.dumps({"name": "../escaped", "input": [1, 4, 4], "layers": [{"type": "relu"}]}))
    status, _, stderr = run_main("html", str(spec))
    assert status == 0 and (tmp_path / "escaped.html").is_file() and stderr.strip() == "wrote escaped.html"


def test_cli_bad_input_is_report_s_one_line(tmp_path):
    """The same error lines and exit status 2 as `archcalc report`."""
    spec = tmp_path / "net.json"
    spec.write_text(json.dumps({"name": "n", "input": [3, 8, 8], "layers": [{"type": "conv", "filters": 2, "kernel": 3, "strides": 2}]}))
    for args in (["nosuchmodel"], [str(spec)], ["vgg16", "--depth", "0"], ["vgg16", "--dtype", "int3"],
                 ["vgg16", "--batch", "1" + "0" * 4000]):
        report = run_main("report", *args)
        page = run_main("html", *args, "-o", str(tmp_path / "x.html"))
        assert page[0] == report[0] == 2, args
        assert page[2].replace("archcalc html", "archcalc report") == report[2], args
        assert page[2].count("\n") == 1 and page[2].startswith("error: ")
    assert not (tmp_path / "x.html").exists()


@pytest.mark.parametrize("name", ["x.png", "x.svg", "x"])
def test_cli_output_must_be_an_html_file(tmp_path, name):
    status, _, stderr = run_main("html", "lenet5", "-o", str(tmp_path / name))
    assert status == 2 and stderr == f"error: -o {tmp_path / name}: the page is HTML; give a file name ending in .html " \
                                     "(or - for standard output)\n"
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("where, reason", [("missing/x.html", "no such file or directory"), (".", "is a directory")])
def test_cli_unwritable_output_is_one_line(tmp_path, where, reason):
    status, _, stderr = run_main("html", "lenet5", "-o", str(tmp_path / where))
    assert status == 2 and stderr.startswith("error: ") and str(tmp_path / where) in stderr and reason in stderr.lower()
    assert stderr.count("\n") == 1


def test_assets_ship_in_the_wheel():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert set(data["archcalc.render"]) == {"web/*.js", "web/*.css"}
    assert "selenium" in " ".join(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"])
    assert "ArchcalcView" in report_html.script() and ".ac-view" in report_html.style()


def test_cli_takes_what_report_takes():
    """An imported network (a Caffe prototxt) with report's options: the page's analysis is report's JSON."""
    pytest.importorskip("google.protobuf")
    source = str(ROOT / "tests" / "data" / "caffe" / "alexnet.prototxt")
    options = ["--batch", "2", "--dtype", "float16", "--optimizer", "adam"]
    status, page, _ = run_main("html", source, *options, "--depth", "1", "-o", "-")
    assert status == 0
    status, report, _ = run_main("report", source, *options, "--format", "json")
    assert status == 0
    assert _embedded(page)["analysis"] == json.loads(report)
