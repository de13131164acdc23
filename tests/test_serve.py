"""archcalc serve's HTTP API: a real server on a free port of 127.0.0.1, in a thread of the test.

The figures it answers with are archcalc.analyze's (and, for VGG-16, torchvision's published
counts); the security checks are exercised the way a hostile page would send its requests.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import archcalc
from archcalc import serve
from archcalc.passes import analyze
from archcalc.spec import from_json
from tests.helpers import run_main

VGG16 = serve.preset_text("vgg16")


def start(**kwargs):
    server = serve.make_server(0, **kwargs)
    serve.start_in_thread(server)
    return server


def stop(server):
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def server():
    """An editor with no file opened (the presets only)."""
    running = start()
    yield running
    stop(running)


def call(server, method, path, body=None, *, headers=None, raw=None, host=None, origin=True, token=True):
    """One request with exactly these headers: (status, headers, body bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host or f"127.0.0.1:{server.port}")
        sent = {}
        if method == "POST":
            data = raw if raw is not None else json.dumps(body).encode()
            sent = {"Content-Type": "application/json", "Content-Length": str(len(data))}
            if origin:
                sent["Origin"] = f"http://127.0.0.1:{server.port}"
            if token:
                sent["X-Archcalc-Token"] = server.token
        sent.update(headers or {})
        for key, value in sent.items():
            if value is not None:
                connection.putheader(key, value)
        connection.endheaders()
        if method == "POST":
            connection.send(data)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def post(server, path, body, **kwargs):
    status, headers, data = call(server, "POST", path, body, **kwargs)
    return status, json.loads(data) if headers.get("Content-Type", "").startswith("application/json") else data


# --- the analysis ---------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"batch": 8, "dtype": "float16", "optimizer": "adam", "memory_model": "lecture"}])
def test_analyze_answers_archcalc_analyze_figures(server, options):
    status, answer = post(server, "/api/analyze", {"spec": VGG16, **options})
    assert status == 200 and answer["ok"]
    expected = analyze(from_json(VGG16, "vgg16"), **options)
    assert answer["payload"]["analysis"]["totals"] == expected.totals.to_dict()
    assert answer["payload"]["analysis"]["layers"] == [row.to_dict() for row in expected.layers]
    assert answer["payload"]["format"] == "archcalc-html 1"  # what ArchcalcView.render takes
    batch = options.get("batch", 1)
    # torchvision's vgg16: 138,357,544 parameters; 15.47 GMACs per 224x224 image (as tests/test_zoo.py)
    assert answer["payload"]["analysis"]["totals"]["params"] == 138_357_544
    assert answer["payload"]["analysis"]["totals"]["macs"] == 15_470_264_320 * batch


def test_analyze_draws_the_views_depth_and_colour_only(server):
    spec = serve.preset_text("resnet50")
    status, answer = post(server, "/api/analyze", {"spec": spec, "depth": 1, "color": "params"})
    assert status == 200
    payload = answer["payload"]
    assert (payload["depth"], payload["color"]) == ("1", "params")
    assert list(payload["svg"]) == ["1/params"]  # the view's drawing only: it asks for another when toggled
    assert payload["depths"] == ["1", "2", "full"]
    assert payload["analysis"]["totals"]["params"] == 25_557_032  # torchvision's resnet50


@pytest.mark.parametrize("name", serve.LECTURE_MODELS)
def test_the_lectures_presets_analyse_through_the_api(server, name):
    status, preset = post(server, "/api/analyze", {"spec": serve.preset_text(name)})
    assert status == 200
    assert preset["payload"]["analysis"]["totals"] == analyze(archcalc.load(name)).totals.to_dict()


def test_presets_are_the_zoo_lectures_four_first(server):
    names = [p["name"] for p in serve.presets()]
    assert names[:4] == ["alexnet", "vgg16", "googlenet", "resnet50"]
    assert sorted(names) == sorted(archcalc.zoo.names())
    for name in names:  # every preset is the zoo's file and a valid spec
        status, _, data = call(server, "GET", f"/api/preset/{name}")
        answer = json.loads(data)
        assert status == 200 and answer["spec"] == (Path(archcalc.zoo._folder()) / f"{name}.json").read_text(encoding="utf-8")
        assert from_json(answer["spec"], name).name == archcalc.load(name).name
    status, _, data = call(server, "GET", "/api/preset/..%2Fsetup.py")
    assert status == 404 and b"no zoo model" in data


# --- errors: one line, with the place -------------------------------------------------------------


def test_invalid_spec_gives_the_clis_one_line_error_with_its_place(server, tmp_path):
    bad = VGG16.replace('"kernel": 3, "padding": 1}', '"kernel": 3, "strides": 1}', 1)
    status, answer = post(server, "/api/analyze", {"spec": bad})
    assert status == 422 and not answer["ok"]
    assert answer["error"] == ("spec 'editor': layers[0] (name=\"conv1_1\", type=\"conv\"): unknown attribute 'strides'; "
                               "did you mean 'stride'?")
    line = bad.splitlines()[answer["line"] - 1]
    assert line[answer["column"] - 1:].startswith('"strides"')
    # the same line as `archcalc report` prints for the same text
    path = tmp_path / "net.json"
    path.write_text(bad, encoding="utf-8")
    code, _, err = run_main("report", str(path))
    assert code == 2 and err.strip() == "error: " + answer["error"].replace("'editor'", f"'{path}'")


def test_json_syntax_error_names_line_and_column(server):
    status, answer = post(server, "/api/analyze", {"spec": '{\n  "name": "x",\n  "input": [3, 8, 8\n}'})
    assert status == 422
    assert answer["error"] == "spec 'editor': not valid JSON: Expecting ',' delimiter at line 4, column 1"
    assert (answer["line"], answer["column"]) == (4, 1)


def test_shape_error_inside_a_block_points_at_the_blocks_layer(server):
    spec = serve.preset_text("resnet50")
    bad = spec.replace('"filters": "$width", "kernel": 3', '"filters": "$width", "kernel": 300', 1)
    status, answer = post(server, "/api/analyze", {"spec": bad})
    assert status == 422
    assert "blocks.bottleneck.layers[3]" in answer["error"] and "kernel 300 exceeds the padded input" in answer["error"]
    assert "\n" not in answer["error"]
    assert bad.splitlines()[answer["line"] - 1][answer["column"] - 1:].startswith('"kernel": 300')


def test_many_problems_come_as_a_list(server):
    bad = VGG16.replace('"padding": 1', '"padding": -1')
    status, answer = post(server, "/api/analyze", {"spec": bad})
    assert status == 422
    assert len(answer["problems"]) == 13 and answer["problems"][0] == answer["error"] and answer["more"] == 0


_LOCATED = '{"input": [3, 8, 8], "layers": [\n  {"type": "relu"},\n  {"type": "conv", "name": "c", "filters": 1, "stride": 0},\n' \
           '  {"block": "b"}]}'


@pytest.mark.parametrize("problem, there", [
    ("spec 'x': layers[2]: unknown block 'b'", '"block": "b"'),  # the first word that is a key of the object
    ('spec \'x\': layers[1] (name="c", type="conv"): stride must be a positive int, got 0', '"stride": 0'),
    ('spec \'x\': layers[1] (name="c", type="conv"): unknown attribute \'kernal\'', '{"type": "conv"'),
    ("spec 'x': layers[1] (name=\"c\", type=\"conv\"): kernel is required", '{"type": "conv"'),
    ("spec 'x': name must be a non-empty string, got nothing", None),
    ("spec 'x': layers[7]: unknown block 'b'", None),
    ("spec 'x': input[5]: must be a positive int", None),
    ("spec 'x': not valid JSON: Expecting value at line 2, column 4", '"type": "relu"'),
])
def test_locate(problem, there):
    got = serve.locate(_LOCATED, problem)
    if there is None:
        assert got is None
    else:
        line, column = got
        assert _LOCATED.splitlines()[line - 1][column - 1:].startswith(there)


def test_locate_finds_paths_keys_and_indices():
    text = '{\n "blocks": {"b": {"layers": [{"type": "relu"}, {"type": "conv", "kernel": 9}]}},\n "layers": [{"block": "b"}]\n}'
    here = serve.locate(text, "spec 'x': layers[0] (instance \"b1\" of block \"b\") > blocks.b.layers[1] (name=\"b1.c\"): "
                              "kernel 9 exceeds the padded input")
    assert here is not None
    line, column = here
    assert text.splitlines()[line - 1][column - 1:].startswith('"kernel": 9')
    line, column = serve.locate(text, "spec 'x': layers[0]: repeat must be a positive int")
    assert text.splitlines()[line - 1][column - 1:].startswith('{"block": "b"}')


def test_the_clis_max_layers_bound_applies(tmp_path):
    bounded = start(max_layers=50)
    try:
        status, answer = post(bounded, "/api/analyze", {"spec": serve.preset_text("resnet50")})
    finally:
        stop(bounded)
    assert status == 422 and "above the limit of 50" in answer["error"]
    path = tmp_path / "resnet50.json"
    path.write_text(serve.preset_text("resnet50"), encoding="utf-8")
    code, _, err = run_main("--max-layers", "50", "report", str(path))
    assert code == 2 and err.splitlines()[0] == "error: " + answer["problems"][0].replace("'editor'", f"'{path}'")


def test_the_server_header_names_archcalc_alone(server):
    status, headers, _ = call(server, "GET", "/")
    assert status == 200 and headers["Server"] == "archcalc-serve"  # no trailing space, no Python version


def test_a_spec_above_the_page_limit_is_refused_before_it_is_expanded(server):
    """A 200-byte spec asking for 800,000 layers: refused from its block structure (under a
    second, no expansion), naming the page's limit rather than the CLI's --max-layers."""
    import time

    spec = json.dumps({"name": "huge", "input": [3, 8, 8], "blocks": {"b": {"layers": [
                           {"type": "conv", "filters": 3, "kernel": 1}, {"type": "relu"}]}},
                       "layers": [{"block": "b", "repeat": 400_000}]})
    start_time = time.perf_counter()
    status, answer = post(server, "/api/analyze", {"spec": spec})
    assert time.perf_counter() - start_time < 5  # measured ~0.01 s; expanding and analysing took 74 s
    assert status == 422
    assert "expands to 800,000 layers, above the limit of 5,000; the most layers a web page shows" in answer["error"]
    assert "--max-layers" not in answer["error"]


@pytest.mark.parametrize("body, message", [
    ({"spec": VGG16, "batch": 0}, "batch must be an int from 1"),
    ({"spec": VGG16, "batch": True}, "batch must be an int from 1"),
    ({"spec": VGG16, "dtype": "float8"}, "dtype must be one of"),
    ({"spec": VGG16, "depth": 0}, "depth must be null or an int"),
    ({"spec": VGG16, "color": "red"}, "color must be one of"),
    ({"spec": {"layers": []}}, "spec must be the spec's JSON text"),
    ({}, "spec must be the spec's JSON text"),
])
def test_bad_options_are_400(server, body, message):
    status, answer = post(server, "/api/analyze", body)
    assert status == 400 and message in answer["error"]


def test_the_largest_batch_scales_the_figures(server):
    status, answer = post(server, "/api/analyze", {"spec": VGG16, "batch": 2**31 - 1})
    assert status == 200
    assert answer["payload"]["analysis"]["totals"]["macs"] == 15_470_264_320 * (2**31 - 1)


def test_body_that_is_not_json_is_400(server):
    for raw in (b"not json", b"[1, 2]", b"\xff\xfe"):
        status, answer = post(server, "/api/analyze", None, raw=raw)
        assert status == 400 and not answer["ok"]


# --- the page -------------------------------------------------------------------------------------


def test_page_is_self_contained_with_nonce_scripts_and_no_framing(server):
    status, headers, data = call(server, "GET", "/")
    page = data.decode()
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    policy = headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    assert "frame-ancestors 'none'" in policy and "connect-src 'self'" in policy and "default-src 'none'" in policy
    assert headers["X-Frame-Options"] == "DENY"
    scripts = re.findall(r"<script([^>]*)>", page)
    assert [s for s in scripts if "application/json" not in s] == [f' nonce="{nonce}"'] * 2
    assert "window.ArchcalcView = api" in page  # report.js, inline
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing from the network
    config = json.loads(re.search(r'<script type="application/json" id="ae-config">(.*?)</script>', page, re.S).group(1))
    assert config["token"] == server.token and config["document"] is None
    assert config["defaultSpec"] == serve.preset_text("alexnet")
    assert call(server, "GET", "/")[1]["Content-Security-Policy"] != policy  # a fresh nonce per page


def test_a_refused_post_closes_its_connection_and_a_served_one_keeps_it(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{server.port}", "X-Archcalc-Token": server.token}
        connection.request("POST", "/api/analyze", json.dumps({"spec": VGG16}), headers)
        first = connection.getresponse()
        first.read()
        assert first.status == 200 and first.getheader("Connection") is None
        connection.request("POST", "/nowhere", "x" * 1000, headers)  # refused before its body was read
        second = connection.getresponse()
        second.read()
        assert second.status == 404 and second.getheader("Connection") == "close"
    finally:
        connection.close()


def test_unknown_paths_and_methods(server):
    assert call(server, "GET", "/etc/passwd")[0] == 404
    assert call(server, "GET", "/api/analyze")[0] == 405
    assert call(server, "POST", "/", {})[0] == 405
    assert call(server, "PUT", "/api/save")[0] == 501


# --- security -------------------------------------------------------------------------------------


def test_oversized_body_is_413_before_it_is_read(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall((f"POST /api/analyze HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                      f"Origin: http://127.0.0.1:{server.port}\r\nX-Archcalc-Token: {server.token}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {serve.MAX_BODY_BYTES + 1}\r\n\r\n").encode())
        started = time.monotonic()
        chunks = [sock.recv(65536)]  # no body was sent: a server that waited for it would time out here
        assert time.monotonic() - started < 5
        while chunks[-1]:  # then the server closes the connection
            chunks.append(sock.recv(65536))
        answer = b"".join(chunks).decode()
    assert answer.startswith("HTTP/1.1 413 ") and "Connection: close" in answer
    assert "more than the editor takes (4 MiB)" in answer


def test_body_without_length_is_411(server):
    status, _ = post(server, "/api/analyze", {"spec": VGG16}, headers={"Content-Length": None, "Transfer-Encoding": "chunked"})
    assert status == 411


@pytest.mark.parametrize("headers, why", [
    ({"Origin": "http://evil.example"}, "requests from 'http://evil.example' are refused"),
    ({"Origin": "null"}, "requests from 'null' are refused"),
    ({"Origin": "http://127.0.0.1:1"}, "are refused"),
    ({"Origin": "https://127.0.0.1:{port}"}, "are refused"),
    ({"Sec-Fetch-Site": "cross-site"}, "cross-site requests are refused"),
    ({"X-Archcalc-Token": "guess"}, "lacks this server's token"),
    ({"X-Archcalc-Token": None}, "lacks this server's token"),
    ({"Origin": None}, "it has no Origin"),
])
def test_cross_site_posts_are_403(server, headers, why):
    headers = {k: v.format(port=server.port) if v else v for k, v in headers.items()}
    status, answer = post(server, "/api/analyze", {"spec": VGG16}, headers=headers)
    assert status == 403 and why in answer["error"]


def test_a_link_from_another_site_opens_the_page_but_not_the_api(server):
    cross = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert call(server, "GET", "/", headers=cross)[0] == 200  # it cannot be framed (X-Frame-Options) nor read
    assert call(server, "GET", "/api/preset/vgg16", headers=cross)[0] == 403


def test_a_form_post_is_refused(server):
    """An HTML form can post text/plain cross-site without a preflight: refused (and it lacks the token)."""
    status, answer = post(server, "/api/analyze", None, raw=b'{"spec": "x"}', headers={"Content-Type": "text/plain"})
    assert status == 415


@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "127.0.0.1", "127.0.0.1:1", "0.0.0.0:{port}"])
def test_dns_rebinding_host_is_403_even_for_the_page(server, host):
    status, _, data = call(server, "GET", "/", host=host.format(port=server.port))
    assert status == 403 and server.token.encode() not in data
    assert post(server, "/api/analyze", {"spec": VGG16}, host=host.format(port=server.port))[0] == 403


def test_localhost_is_this_server_too(server):
    port = server.port
    status, _ = post(server, "/api/analyze", {"spec": VGG16}, host=f"localhost:{port}", headers={"Origin": f"http://localhost:{port}"})
    assert status == 200


def test_binds_to_loopback_only(server):
    assert server.server_address[0] == "127.0.0.1"
    assert server.url == f"http://127.0.0.1:{server.port}/"


def test_a_python_spec_sent_from_the_page_is_never_run(server, tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('x')\nfrom archcalc.dsl import Net\nnet = Net('evil', (3, 8, 8))\n")
    for spec in (str(evil), evil.read_text(), json.dumps(str(evil))):
        for path in ("/api/analyze", "/api/export", "/api/save"):
            status, answer = post(server, path, {"spec": spec, "format": "json"})
            assert status in (403, 422) and not answer["ok"]
    assert not marker.exists()


def test_analyze_and_export_write_no_file(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for fmt in serve.EXPORT_FORMATS:
        assert call(server, "POST", "/api/export", {"spec": VGG16, "format": fmt})[0] == 200
    assert post(server, "/api/analyze", {"spec": VGG16})[0] == 200
    assert list(tmp_path.iterdir()) == []


# --- downloads ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, args, filename", [
    ("json", ["--format", "json"], "vgg16-report.json"),
    ("csv", ["--format", "csv"], "vgg16.csv"),
    ("markdown", ["--format", "markdown"], "vgg16.md"),
])
def test_export_is_what_archcalc_report_writes(server, tmp_path, fmt, args, filename):
    status, headers, data = call(server, "POST", "/api/export", {"spec": VGG16, "format": fmt, "batch": 2})
    assert status == 200 and headers["Content-Disposition"] == f'attachment; filename="{filename}"'
    path = tmp_path / "vgg16.json"
    path.write_text(VGG16, encoding="utf-8")
    code, out, _ = run_main("report", str(path), "--batch", "2", *args)
    assert code == 0 and data.decode() == out


def test_export_html_is_archcalc_htmls_page(server):
    status, headers, data = call(server, "POST", "/api/export", {"spec": VGG16, "format": "html"})
    page = data.decode()
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.startswith("<!DOCTYPE html>") and 'id="archcalc-payload"' in page
    from archcalc.render.html import page as html_page
    from archcalc.render.html import payload

    assert page == html_page(payload(from_json(VGG16, "editor")), title="vgg16")


def test_export_of_an_invalid_spec_is_the_error(server):
    status, answer = post(server, "/api/export", {"spec": "{", "format": "csv"})
    assert status == 422 and "not valid JSON" in answer["error"]
    status, answer = post(server, "/api/export", {"spec": VGG16, "format": "pdf"})
    assert status == 400 and "format must be one of json, csv, markdown, html" in answer["error"]


# --- save -----------------------------------------------------------------------------------------


@pytest.fixture
def opened(tmp_path):
    """A server that opened tmp/net.json (mode 0640)."""
    path = tmp_path / "net.json"
    path.write_text(VGG16, encoding="utf-8")
    path.chmod(0o640)
    running = start(document=serve.open_document(str(path)))
    yield running, path
    stop(running)


def test_save_writes_the_opened_file_and_nothing_else(opened):
    server, path = opened
    edited = VGG16.replace('"filters": 64', '"filters": 32')
    status, answer = post(server, "/api/save", {"spec": edited})
    assert status == 200 and answer["saved"] == str(path.resolve())
    assert path.read_text(encoding="utf-8") == edited
    assert sorted(p.name for p in path.parent.iterdir()) == ["net.json"]  # no temporary file left
    assert path.stat().st_mode & 0o777 == 0o640
    status, answer = post(server, "/api/save", {"spec": VGG16})  # saved twice: the editor's own write is no conflict
    assert status == 200 and path.read_text(encoding="utf-8") == VGG16


def test_save_follows_a_symlink_to_its_file(tmp_path):
    target = tmp_path / "real.json"
    target.write_text(VGG16, encoding="utf-8")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    server = start(document=serve.open_document(str(link)))
    try:
        assert post(server, "/api/save", {"spec": VGG16 + "\n"})[0] == 200
    finally:
        stop(server)
    assert link.is_symlink() and target.read_text(encoding="utf-8") == VGG16 + "\n"


def test_save_refuses_an_invalid_spec(opened):
    server, path = opened
    status, answer = post(server, "/api/save", {"spec": VGG16.replace('"kernel": 3', '"kernel": 0', 1)})
    assert status == 422 and answer["error"].startswith("not saved: spec 'net.json': layers[0]")
    assert path.read_text(encoding="utf-8") == VGG16


def test_save_refuses_to_overwrite_a_file_changed_on_disk(opened):
    server, path = opened
    time.sleep(0.01)
    path.write_text(VGG16 + " ", encoding="utf-8")
    status, answer = post(server, "/api/save", {"spec": VGG16})
    assert status == 409 and "changed on disk" in answer["error"]
    assert path.read_text(encoding="utf-8") == VGG16 + " "


def test_errors_name_the_opened_file(opened):
    server, _ = opened
    status, answer = post(server, "/api/analyze", {"spec": "{", "document": True})
    assert status == 422 and answer["error"].startswith("spec 'net.json': not valid JSON")


def test_save_is_refused_without_an_opened_json_file(server, tmp_path):
    status, answer = post(server, "/api/save", {"spec": VGG16})
    assert status == 403 and "opened no file" in answer["error"]
    for model in ("vgg16", _python_spec(tmp_path)):
        document = serve.open_document(str(model))
        assert not document.savable
        readonly = start(document=document)
        try:
            status, answer = post(readonly, "/api/save", {"spec": VGG16})
        finally:
            stop(readonly)
        assert status == 403 and answer["error"] == f"nothing to save to: {document.note}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.py"]
    assert (tmp_path / "net.py").read_text() == _PYTHON_SPEC


_PYTHON_SPEC = """\
from archcalc.dsl import Net
net = Net("small", (3, 16, 16))
for i in range(2):
    net.conv(8, 3, padding=1, name=f"conv{i}")
net.flatten()
net.linear(10, name="fc")
"""


def _python_spec(folder):
    path = folder / "net.py"
    path.write_text(_PYTHON_SPEC)
    return path


def test_a_python_spec_on_the_command_line_opens_as_json_read_only(tmp_path):
    path = _python_spec(tmp_path)
    document = serve.open_document(str(path))
    assert not document.savable and "read-only" in document.note
    graph = from_json(document.text, "editor")
    assert analyze(graph).totals == analyze(archcalc.load(str(path))).totals


def test_open_document_errors(tmp_path):
    with pytest.raises(archcalc.ArchcalcError, match="does not exist"):
        serve.open_document(str(tmp_path / "missing.json"))
    (tmp_path / "latin1.json").write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(archcalc.ArchcalcError, match="not UTF-8 text"):
        serve.open_document(str(tmp_path / "latin1.json"))
    (tmp_path / "big.json").write_bytes(b" " * (serve.MAX_BODY_BYTES + 1))
    with pytest.raises(archcalc.ArchcalcError, match="more than the editor takes"):
        serve.open_document(str(tmp_path / "big.json"))
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(archcalc.ArchcalcError, match="not a regular file"):
        serve.open_document(str(tmp_path / "dir.json"))
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    assert serve.open_document(str(broken)).savable  # opened to be fixed


# --- the command ----------------------------------------------------------------------------------


def _run_serve(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "archcalc", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=cwd)


def test_serve_prints_its_url_and_ctrl_c_stops_it_cleanly(tmp_path):
    process = _run_serve("--max-layers", "50", "serve", cwd=tmp_path)
    try:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert url, line
        port = int(url.group(1))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 200
        token = re.search(r'"token": "([^"]+)"', response.read().decode()).group(1)
        body = json.dumps({"spec": serve.preset_text("resnet50")})
        connection.request("POST", "/api/analyze", body, {"Content-Type": "application/json", "X-Archcalc-Token": token,
                                                          "Origin": f"http://127.0.0.1:{port}"})
        answer = json.loads(connection.getresponse().read())
        assert "above the limit of 50" in answer["error"]  # the group's --max-layers reaches the editor
        connection.close()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Traceback" not in err and "stopped" in out
    assert list(tmp_path.iterdir()) == []


def test_serve_on_a_busy_port_is_one_error_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run_main("serve", "--port", str(port))
    assert code == 2
    assert err == f"error: port {port} on 127.0.0.1 is in use; choose another --port, or leave it out for a free one\n"


def test_serve_of_a_missing_file_is_one_error_line(tmp_path):
    code, _, err = run_main("serve", str(tmp_path / "nope.json"))
    assert code == 2 and err.startswith("error: spec file ") and "does not exist" in err and err.count("\n") == 1


# --- stale requests and repeated answers ----------------------------------------------------------


def test_a_request_its_page_has_replaced_is_not_computed(server):
    import threading

    answers = {}

    def send(name):
        answers[name] = post(server, "/api/analyze", {"spec": VGG16, "client": "page-1"})

    with server.analysis_lock:  # an analysis is running: both requests wait
        first = threading.Thread(target=send, args=("first",))
        first.start()
        deadline = time.monotonic() + 10
        while server.latest.get("page-1") != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        second = threading.Thread(target=send, args=("second",))
        second.start()
        while server.latest.get("page-1") != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    first.join(30)
    second.join(30)
    assert answers["first"] == (409, {"ok": False, "superseded": True, "error": "superseded by a newer edit"})
    assert answers["second"][0] == 200
    # another page's request is never superseded by this one's
    assert post(server, "/api/analyze", {"spec": VGG16, "client": "page-2"})[0] == 200


def test_an_edit_that_changes_nothing_is_answered_from_the_last_answers(server):
    server.answers.clear()
    first = call(server, "POST", "/api/analyze", {"spec": VGG16})
    second = call(server, "POST", "/api/analyze", {"spec": VGG16.replace("\n", "\n  ")})  # white space only
    assert first[0] == second[0] == 200 and first[2] == second[2]
    assert len(server.answers) == 1
    third = call(server, "POST", "/api/analyze", {"spec": VGG16, "batch": 2})
    assert third[2] != first[2] and len(server.answers) == 2
