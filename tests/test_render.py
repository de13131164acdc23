"""Rendering: DOT text (pure, deterministic, escaped) and SVG from Graphviz's dot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

import archcalc
from archcalc import zoo
from archcalc.errors import ArchcalcError, MissingToolError
from archcalc.render.dot import default_output, render, to_dot
from archcalc.render.format import si
from archcalc.report import fold

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (apt-get install graphviz)")
SVG = "{http://www.w3.org/2000/svg}"


def svg_groups(path, kind):
    """The <g class=kind> elements of an SVG file: node, edge or cluster."""
    root = ET.parse(path).getroot()
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == kind]


def texts(group):
    return [t.text or "" for t in group.iter(f"{SVG}text")]


@needs_dot
@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_model_renders_to_svg(name, tmp_path):
    path = render(name, tmp_path / f"{name}.svg")
    analysis = archcalc.analyze(archcalc.load(name))
    nodes = svg_groups(path, "node")
    assert len(nodes) == len(analysis.layers)
    edges = svg_groups(path, "edge")
    assert len(edges) == sum(len(row.inputs) for row in analysis.layers)
    # every labelled figure is the analyzer's
    by_title = {n.find(f"{SVG}title").text: texts(n) for n in nodes}
    for index, row in enumerate(analysis.layers):
        lines = by_title[f"n{index}"]
        assert " ".join("x".join(map(str, row.output_shape)) for _ in [0]) in lines
        if row.params or row.macs:
            figures = [f"{si(v)} {w}" for v, w in ((row.params, "params"), (row.macs, "MACs")) if v]
            assert ", ".join(figures) in lines, (row.name, lines)


@needs_dot
def test_clusters_and_folding(tmp_path):
    googlenet = render("googlenet", tmp_path / "g.svg")
    assert len(svg_groups(googlenet, "cluster")) == 9  # one per Inception module
    resnet = render("resnet50", tmp_path / "r.svg")
    assert len(svg_groups(resnet, "cluster")) == 4 + (3 + 4 + 6 + 3)  # stages, and the blocks in them
    folded = render("resnet50", tmp_path / "r0.svg", depth=1)
    analysis = archcalc.analyze(archcalc.load("resnet50"))
    rows = fold(analysis.layers, 1)
    nodes = svg_groups(folded, "node")
    assert len(nodes) == len(rows) and not svg_groups(folded, "cluster")
    layer3 = next(texts(n) for n in nodes if "layer3" in texts(n))
    row = next(r for r in rows if r.name == "layer3")
    assert f"{si(row.params)} params, {si(row.macs)} MACs" in layer3
    in_layer3 = sum(1 for r in analysis.layers if r.scope[:1] == ("layer3",))
    assert in_layer3 == 12 + 5 * 10  # a projection block, then five identity bottlenecks
    assert f"block {in_layer3} layers" in layer3
    one = render("resnet50", tmp_path / "r1.svg", depth=2)
    assert len(svg_groups(one, "node")) == len(fold(analysis.layers, 2))
    assert len(svg_groups(one, "cluster")) == 4


@needs_dot
def test_color_legend_and_title(tmp_path):
    path = render("inception-reduced", tmp_path / "i.svg", color="macs", rankdir="LR")
    analysis = archcalc.analyze(archcalc.load("inception-reduced"))
    nodes = svg_groups(path, "node")
    assert len(nodes) == len(analysis.layers) + 1  # the legend
    conv5 = next(texts(n) for n in nodes if "conv5x5" in texts(n))
    share = 100 * analysis.layer("conv5x5").macs / analysis.totals.macs
    assert f"{share:.1f}% of MACs" in conv5
    title = " ".join(t.text or "" for t in ET.parse(path).getroot().iter(f"{SVG}text") if t.get("font-size") == "16.00")
    assert "346,720 params" in title and "271.35M MACs" in title
    dot = to_dot("inception-reduced", color="macs")
    assert "#ef6548" in dot  # the largest share gets the full colour


def test_names_are_escaped(tmp_path):
    spec = {"name": "x<y>", "input": [1, 4, 4], "layers": [{"type": "relu", "name": '<b>"x"&'}]}
    dot = to_dot(spec)
    assert '<b>"x"&' not in dot and "&lt;b&gt;&quot;x&quot;&amp;" in dot
    if shutil.which("dot"):
        path = render(spec, tmp_path / "e.svg")
        root = ET.parse(path).getroot()
        assert not list(root.iter(f"{SVG}b"))
        assert any(t.text == '<b>"x"&' for t in root.iter(f"{SVG}text"))


def test_dot_is_deterministic_across_processes(tmp_path):
    first = to_dot("googlenet", depth=1, color="params")
    assert first == to_dot("googlenet", depth=1, color="params")
    code = "import sys, archcalc; sys.stdout.write(archcalc.to_dot('googlenet', depth=1, color='params'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "123"}).stdout
    assert other == first


def test_dot_output_needs_no_graphviz(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot here
    path = render("lenet5", tmp_path / "l.dot")
    assert path.read_text().startswith('digraph "lenet5" {')
    with pytest.raises(MissingToolError, match="Graphviz's dot program is not on PATH, so wrote"):
        render("lenet5", tmp_path / "l2.svg")
    assert (tmp_path / "l2.dot").read_text() == to_dot("lenet5")
    assert not (tmp_path / "l2.svg").exists()


def test_cli_render(tmp_path):
    from click.testing import CliRunner

    from tests.test_cli import _Main

    runner = CliRunner()
    result = runner.invoke(_Main(), ["render", "lenet5", "-o", str(tmp_path / "l.dot"), "--rankdir", "LR"])
    assert result.exit_code == 0 and (tmp_path / "l.dot").read_text() == to_dot("lenet5", rankdir="LR")
    result = runner.invoke(_Main(), ["render", "lenet5", "-o", str(tmp_path / "l.txt")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "archcalc", "render", "lenet5", "-o", str(tmp_path / "m.svg")],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 3 and len(done.stderr.splitlines()) == 1 and "apt-get install graphviz" in done.stderr
    assert (tmp_path / "m.dot").exists()


def test_python_api_returns_the_path(tmp_path):
    assert archcalc.render("stack-3x3-2", tmp_path / "s.dot") == tmp_path / "s.dot"
    assert json.dumps(archcalc.to_dot("stack-3x3-2"))  # a str


# --- writing files only where asked ---------------------------------------------------------------


def _cli(*args):
    from click.testing import CliRunner

    from tests.test_cli import _Main

    return CliRunner().invoke(_Main(), list(args))


@pytest.mark.parametrize(("output", "reason"), [
    ("/nonexistent/dir/x.svg", "No such file or directory"),
    ("/nonexistent/dir/x.dot", "No such file or directory"),
    ("/proc/x.dot", "No such file or directory"),
    ("/proc/x.svg", "No such file or directory"),
])
def test_unwritable_output_is_one_error_line(output, reason):
    if output.endswith(".svg") and shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")
    result = _cli("render", "lenet5", "-o", output)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: output '{output}' cannot be written: {reason}\n"


def test_unwritable_output_from_the_api(tmp_path):
    (tmp_path / "d.dot").mkdir()
    with pytest.raises(ArchcalcError, match=r"^output '.*d\.dot' cannot be written: Is a directory$"):
        render("lenet5", tmp_path / "d.dot")


def test_permission_and_disk_errors_name_the_path(tmp_path, monkeypatch):
    """Whatever the OS refuses (root ignores file modes, so the refusals are simulated)."""
    import errno
    import pathlib

    for code in (errno.EACCES, errno.ENOSPC, errno.EROFS):
        def refuse(self, data, code=code):
            raise OSError(code, os.strerror(code), str(self))

        monkeypatch.setattr(pathlib.Path, "write_bytes", refuse)
        with pytest.raises(ArchcalcError) as raised:
            render("lenet5", tmp_path / "x.dot")
        assert str(raised.value) == f"output '{tmp_path / 'x.dot'}' cannot be written: {os.strerror(code)}"


@pytest.mark.parametrize(("name", "expected"), [
    ("vgg16", "vgg16.svg"),
    ("../escaped", "escaped.svg"),
    ("/etc/passwd", "etc_passwd.svg"),
    ("sub/dir/net", "sub_dir_net.svg"),
    ("..\\..\\win", "win.svg"),
    ("..", "graph.svg"),
    (".hidden", "hidden.svg"),
    ("...", "graph.svg"),
    ("", "graph.svg"),
    ("/", "graph.svg"),
    ("a\x1b[31mred\x07", "a_[31mred_.svg"),
    ("tab\tname\n", "tab_name_.svg"),
    ("nul", "_nul.svg"),
    ("x" * 300, "x" * 100 + ".svg"),
    ("résnet 50", "résnet 50.svg"),
    ("net.v2", "net.v2.svg"),
])
def test_default_output_is_a_safe_name_here(name, expected):
    assert default_output(name) == expected
    assert os.path.basename(expected) == expected and not expected.startswith(".")


@pytest.mark.parametrize("name", ["../escaped", "/tmp/absolute-name", "sub/dir/net"])
def test_cli_default_output_stays_in_the_current_directory(name, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    spec = work / "spec.json"
    spec.write_text(json.dumps({"name": name, "input": [1, 4, 4], "layers": [{"type": "relu"}]}))
    monkeypatch.setenv("PATH", str(tmp_path))  # no Graphviz: the .dot fallback is written, status 3
    result = _cli("render", str(spec))
    expected = default_output(name, "dot")
    assert result.exit_code == 3
    assert f"so wrote '{expected}' instead of '{default_output(name)}'" in result.stderr
    assert sorted(p.name for p in work.iterdir()) == sorted(["spec.json", expected])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


@pytest.fixture
def no_graphviz(monkeypatch):
    """Make Graphviz's dot look missing to the graphviz package."""
    import graphviz

    def missing(*args, **kwargs):
        raise graphviz.ExecutableNotFound(("dot",))

    monkeypatch.setattr(graphviz.Source, "pipe", missing)


def test_fallback_never_overwrites_a_dot_file(tmp_path, no_graphviz):
    existing = tmp_path / "m.dot"
    existing.write_text("mine")
    with pytest.raises(MissingToolError) as raised:
        render("lenet5", tmp_path / "m.svg")
    assert existing.read_text() == "mine"
    assert (tmp_path / "m-1.dot").read_text() == to_dot("lenet5")
    assert str(raised.value) == (
        f"Graphviz's dot program is not on PATH, so wrote '{tmp_path / 'm-1.dot'}' instead of '{tmp_path / 'm.svg'}' "
        f"('{existing}' exists and was left alone); install Graphviz (Debian/Ubuntu: apt-get install graphviz; "
        "macOS: brew install graphviz) or write -o model.dot"
    )
    with pytest.raises(MissingToolError, match="so wrote '.*m-2.dot'"):
        render("lenet5", tmp_path / "m.png")
    assert (tmp_path / "m-1.dot").read_text() == to_dot("lenet5")


def test_fallback_refuses_when_every_fresh_name_is_taken(tmp_path, no_graphviz, monkeypatch):
    monkeypatch.setattr(sys.modules["archcalc.render.dot"], "_FRESH_NAMES", 2)
    for name in ("m.dot", "m-1.dot", "m-2.dot"):
        (tmp_path / name).write_text(name)
    with pytest.raises(MissingToolError, match=r"'.*m\.dot' and 'm-2\.dot' already exist, so nothing was written"):
        render("lenet5", tmp_path / "m.svg")
    assert [(tmp_path / n).read_text() for n in ("m.dot", "m-1.dot", "m-2.dot")] == ["m.dot", "m-1.dot", "m-2.dot"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-1.dot", "m-2.dot", "m.dot"]


def test_fallback_that_cannot_write_says_so(no_graphviz):
    with pytest.raises(MissingToolError, match=r"^Graphviz's dot program is not on PATH, and the DOT source could not be "
                                               r"written to '/nonexistent/dir/x\.dot' either: No such file or directory; "):
        render("lenet5", "/nonexistent/dir/x.svg")


def test_cli_fallback_exit_status_and_message(tmp_path, no_graphviz):
    (tmp_path / "m.dot").write_text("mine")
    result = _cli("render", "lenet5", "-o", str(tmp_path / "m.svg"))
    assert result.exit_code == 3 and result.stderr.count("\n") == 1
    assert f"so wrote '{tmp_path / 'm-1.dot'}'" in result.stderr and "exists and was left alone" in result.stderr
    assert (tmp_path / "m.dot").read_text() == "mine"
