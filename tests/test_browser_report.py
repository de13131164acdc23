"""The report page in a real browser: headless Chromium opens it from file:// (tests/browser.py).

Clicking a node shows its explain lines and highlights its row; sorting and filtering the table;
the depth and colour toggles; the window and field drawings; ArchcalcView.render replacing a view.
The time resnet50's page takes to open is printed (run with -s to see it), never asserted.
"""

from __future__ import annotations

import json
import time

import pytest

from archcalc.render import html as report_html
from tests import browser as chromium
from tests.browser import console_errors, file_url
from tests.helpers import run_main

browser = chromium.browser  # the module's headless Chromium (a fixture)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """vgg16 and googlenet --depth 1 written by the CLI, with their payloads."""
    folder = tmp_path_factory.mktemp("pages")
    out = {}
    for name, args in (("vgg16", ["vgg16"]), ("googlenet", ["googlenet", "--depth", "1"])):
        path = folder / f"{name}.html"
        status, _, stderr = run_main("html", *args, "-o", str(path))
        assert status == 0, stderr
        out[name] = (path, _payload_of(path))
    return out


def _payload_of(path):
    text = path.read_text(encoding="utf-8")
    tag = '<script type="application/json" id="archcalc-payload">'
    start = text.index(tag) + len(tag)
    return json.loads(text[start:text.index("</script>", start)])


def _open(driver, path):
    driver.get(file_url(path))
    console_errors(driver)  # what came before this page


def _css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def _click(driver, element):
    """Click ``element`` as a user does, once scrolled to the middle of its pane (clear of the
    table's sticky header and totals row)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'})", element)
    element.click()


def _visible_names(driver):
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.ac-table tbody tr')).filter(r => !r.hidden).map(r => r.dataset.name)")


def test_vgg16_click_a_node_shows_its_explain_lines(browser, pages):
    path, payload = pages["vgg16"]
    _open(browser, path)
    assert browser.title == "vgg16: input 3x224x224, float32"
    assert len(_css(browser, ".ac-table tbody tr")) == len(payload["analysis"]["layers"]) == 40
    node = payload["nodes"]["full"]["conv1_2"]
    (g,) = _css(browser, f'g[data-node="{node}"]')
    _click(browser, g)
    (panel,) = _css(browser, '[data-role="panel"]')
    assert panel.is_displayed()
    shown = [[cell.text for cell in row.find_elements("css selector", "th, td")]
             for row in panel.find_elements("css selector", '[data-role="explain"] tr')]
    assert shown == payload["explain"]["conv1_2"]
    assert any("36,928" in text for _, text in shown)  # 3*3*64*64 + 64 params
    assert [tr.get_attribute("data-name") for tr in _css(browser, ".ac-table tr.ac-selected")] == ["conv1_2"]
    assert g.get_attribute("class").split() == ["node", "ac-node", "ac-selected"]
    assert console_errors(browser) == []


def test_vgg16_click_a_row_highlights_its_node(browser, pages):
    path, payload = pages["vgg16"]
    _open(browser, path)
    (row,) = _css(browser, '.ac-table tr[data-name="fc6"]')
    _click(browser, row)
    node = payload["nodes"]["full"]["fc6"]
    assert [g.get_attribute("data-node") for g in _css(browser, "g.ac-selected")] == [node]
    assert _css(browser, '[data-role="panel"] h2 span')[0].text == "fc6"


def test_vgg16_sort_by_macs_then_filter(browser, pages):
    path, payload = pages["vgg16"]
    _open(browser, path)
    layers = payload["analysis"]["layers"]
    network = [row["name"] for row in layers]
    (button,) = [b for b in _css(browser, ".ac-table th button") if b.text == "MACs"]
    button.click()  # largest first; ties keep the network's order
    expected = [row["name"] for row in sorted(layers, key=lambda row: -row["macs"])]
    assert _visible_names(browser) == expected
    assert expected[0] == "conv1_2" and expected[1] == "conv2_2"  # 1.85G MACs each, conv1_2 first in the network
    button.click()  # smallest first
    assert _visible_names(browser) == [row["name"] for row in sorted(layers, key=lambda row: row["macs"])]
    (layer,) = [b for b in _css(browser, ".ac-table th button") if b.text == "Layer"]
    layer.click()
    assert _visible_names(browser) == sorted(network, key=str.lower)

    (box,) = _css(browser, '[data-role="filter"]')
    box.send_keys("maxpool")  # by type: the five pools
    assert _visible_names(browser) == [name for name in sorted(network, key=str.lower) if name.startswith("pool")]
    assert _css(browser, '[data-role="count"]')[0].text == "5 of 40 rows"
    box.clear()
    box.send_keys("conv5")  # by name
    assert _visible_names(browser) == ["conv5_1", "conv5_2", "conv5_3"]


def test_vgg16_window_and_field_drawings(browser, pages):
    path, _ = pages["vgg16"]
    _open(browser, path)
    _click(browser, _css(browser, '.ac-table tr[data-name="pool1"]')[0])
    (caption,) = _css(browser, '[data-role="window-text"]')
    assert caption.text.startswith("Output (0, 0) of 112x112: kernel 2x2, stride 2x2, dilation 1x1, padding 0/0, 0/0")
    _css(browser, '[data-role="window"] button[aria-label="next position"]')[0].click()
    assert caption.text.startswith("Output (0, 1) of 112x112")
    (row_input, column_input) = _css(browser, '[data-role="field"] input')
    for element in (row_input, column_input):
        element.clear()
        element.send_keys("0")
    # pool1: field 6, jump 2, padding 2: unit 0 sees rows -2..3, centred on 0.5
    text = _css(browser, '[data-role="field-text"]')[0].text
    assert "sees input rows -2 to 3 and columns -2 to 3 of 224x224" in text and "centred on (0.5, 0.5)" in text
    assert "(columns alike)" in text  # field 6, jump 2, padding 2 on both axes
    for typed, shown in (("999", "111"), ("-3", "0")):  # pool1's output is 112x112
        row_input.clear()
        row_input.send_keys(typed)
        column_input.click()  # leaving the box ends the edit
        assert row_input.get_attribute("value") == shown
        assert f"Output unit ({shown}, 0) of 112x112" in _css(browser, '[data-role="field-text"]')[0].text
    assert console_errors(browser) == []


def test_a_field_unlike_along_rows_and_columns_states_each_axis(browser, tmp_path):
    """A 3x1 conv of stride 2x1 after a 3x3 conv: rows see 3 + (3-1)*1 = 5 values with jump 2,
    columns 3 with jump 1 (each axis's own arithmetic, by hand)."""
    spec = tmp_path / "axes.json"
    spec.write_text(json.dumps({"name": "axes", "input": [1, 9, 9], "layers": [
        {"name": "a", "type": "conv", "filters": 2, "kernel": 3},
        {"name": "g", "type": "conv", "filters": 2, "kernel": [3, 1], "stride": [2, 1]}]}), encoding="utf-8")
    path = tmp_path / "axes.html"
    status, _, stderr = run_main("html", str(spec), "-o", str(path))
    assert status == 0, stderr
    _open(browser, path)
    _click(browser, _css(browser, '.ac-table tr[data-name="g"]')[0])
    text = _css(browser, '[data-role="field-text"]')[0].text
    assert "Unit i's rows: from i*2 to i*2 + 4" in text and "(field 5, padding 0)" in text
    assert "unit j's columns: from j*1 to j*1 + 2" in text and "(field 3, padding 0)" in text
    assert "alike" not in text
    assert console_errors(browser) == []


def test_googlenet_depth_and_colour_toggles(browser, pages):
    from selenium.webdriver.support.ui import Select

    path, payload = pages["googlenet"]
    _open(browser, path)
    assert len(_css(browser, ".ac-table tbody tr")) == len(payload["folded"]["1"])
    assert len(_css(browser, "g.ac-node")) == len(payload["boxes"]["1"])
    _click(browser, _css(browser, '.ac-table tr[data-name="inception3a"]')[0])
    assert "A block of" in _css(browser, '[data-role="panel"]')[0].text
    Select(_css(browser, '[data-role="depth"]')[0]).select_by_value("full")
    assert len(_css(browser, ".ac-table tbody tr")) == len(payload["analysis"]["layers"])
    assert len(_css(browser, "g.ac-node")) == len(payload["boxes"]["full"])
    # the selected block is now its first layer
    assert [tr.get_attribute("data-name") for tr in _css(browser, ".ac-table tr.ac-selected")][0].startswith("inception3a.")
    def drawn():
        return browser.execute_script("return document.querySelector('[data-role=\"graph\"]').textContent")

    assert "% of MACs" in drawn()
    Select(_css(browser, '[data-role="color"]')[0]).select_by_value("params")
    assert "% of params" in drawn() and "% of MACs" not in drawn()
    Select(_css(browser, '[data-role="color"]')[0]).select_by_value("none")
    assert "% of" not in drawn()
    assert console_errors(browser) == []


def test_render_replaces_the_view(browser, pages):
    """The live editor's use: render() again into the same element, with another payload."""
    path, _ = pages["vgg16"]
    _open(browser, path)
    lenet = report_html.payload("lenet5", svg_budget=0)
    browser.execute_script("ArchcalcView.render(document.getElementById('archcalc-view'), arguments[0])", lenet)
    assert len(_css(browser, ".ac-view")) == 1
    assert len(_css(browser, ".ac-table tbody tr")) == len(lenet["analysis"]["layers"])
    assert _css(browser, ".ac-head h1")[0].text == "lenet5: input 3x32x32, float32"
    from selenium.webdriver.support.ui import Select

    Select(_css(browser, '[data-role="color"]')[0]).select_by_value("params")
    assert _css(browser, '[data-role="hint"]')[0].text.startswith("left out to keep the page small")
    # a payload with the first drawing only asks the editor for another one when the user toggles
    first = report_html.payload("googlenet", depth=1, drawings="first")
    browser.execute_script("window.asked = []; ArchcalcView.render(document.getElementById('archcalc-view'), arguments[0], "
                           "{onMissingDrawing: function (depth, color) { window.asked.push([depth, color]); }})", first)
    assert len(_css(browser, ".ac-table tbody tr")) == len(first["folded"]["1"])
    Select(_css(browser, '[data-role="depth"]')[0]).select_by_value("full")
    assert browser.execute_script("return window.asked") == [["full", "macs"]]
    # the same network again (the editor's next payload) keeps the depth and colour the user chose
    Select(_css(browser, '[data-role="color"]')[0]).select_by_value("params")
    browser.execute_script("ArchcalcView.render(document.getElementById('archcalc-view'), arguments[0])", first)
    assert [Select(_css(browser, f'[data-role="{role}"]')[0]).first_selected_option.get_attribute("value")
            for role in ("depth", "color")] == ["full", "params"]
    assert console_errors(browser) == []


def test_resnet50_opens(browser, tmp_path):
    """The issue's figures, reported: the page's size and the time from navigation to the load
    event (the view is drawn by then: its script runs inline before it)."""
    path = tmp_path / "resnet50.html"
    assert run_main("html", "resnet50", "-o", str(path))[0] == 0
    started = time.perf_counter()
    _open(browser, path)
    wall = time.perf_counter() - started
    loaded = browser.execute_script("return performance.getEntriesByType('navigation')[0].loadEventEnd")
    rows = len(_css(browser, ".ac-table tbody tr"))
    print(f"\nresnet50 page: {path.stat().st_size:,} bytes; opened in {loaded:.0f} ms (load event), {wall:.2f} s (driver)")
    assert rows == len(_payload_of(path)["analysis"]["layers"])
    assert console_errors(browser) == []


def test_a_crop_draws_the_whole_input_with_the_window_at_its_offset(browser, tmp_path):
    """crop 4 at offset (2, 3) of an 8x8 input: the window of output (0, 0) covers input rows 2
    (and columns 3) on: the grid holds all 8x8 input cells, the 4x4 reached by no window pale."""
    spec = tmp_path / "crop.json"
    spec.write_text(json.dumps({"name": "crop", "input": [1, 8, 8], "layers": [
        {"name": "cr", "type": "crop", "size": 4, "offset": [2, 3]}]}), encoding="utf-8")
    path = tmp_path / "crop.html"
    status, _, stderr = run_main("html", str(spec), "-o", str(path))
    assert status == 0, stderr
    _open(browser, path)
    _click(browser, _css(browser, '.ac-table tr[data-name="cr"]')[0])
    caption = _css(browser, '[data-role="window-text"]')[0].text
    assert "padding -2/-2, -3/-1" in caption and "Negative padding crops" in caption
    (canvas,) = _css(browser, '[data-role="window"] canvas')
    assert canvas.get_attribute("data-grid") == "8x8"  # the whole input, not the 4x4 the windows reach
    assert canvas.get_attribute("data-window-at") == "2,3"
    assert console_errors(browser) == []
