"""archcalc serve in headless Chromium: load a preset, type a change, see the totals follow; type
an error, see its message while the last good view stays; save the opened file from the page.

The update time (keystroke to new totals, the debounce included) is printed, not asserted: the
machine running the tests may be busy.
"""

from __future__ import annotations

import time

import pytest

from archcalc import serve
from archcalc.errors import ArchcalcError
from archcalc.spec import from_json
from tests.browser import browser  # noqa: F401 (the fixture)

#: Most seconds any step may take before the test fails (a loaded CI machine; a step takes < 1 s).
PATIENCE = 30


@pytest.fixture(scope="module")
def server():
    running = serve.make_server(0)
    serve.start_in_thread(running)
    yield running
    running.shutdown()
    running.server_close()


def _wait(driver, condition, what):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, PATIENCE, poll_frequency=0.02).until(lambda d: condition(d), message=what)


def _totals(driver):
    return driver.execute_script("var f = document.querySelector('#ae-view tfoot'); return f ? f.textContent : '';")


def _status(driver):
    return driver.execute_script("return document.getElementById('ae-status').textContent;")


def _select_text(driver, needle, occurrence=0):
    """Select the ``occurrence``-th ``needle`` in the textarea (the next keys typed replace it)."""
    driver.execute_script("""
        var spec = document.getElementById('ae-spec'), at = -1;
        for (var i = 0; i <= arguments[1]; i++) { at = spec.value.indexOf(arguments[0], at + 1); }
        spec.focus(); spec.setSelectionRange(at, at + arguments[0].length);""", needle, occurrence)


def test_edit_a_preset_and_see_the_totals_and_errors(browser, server):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(server.url)
    _wait(browser, lambda d: "alexnet: 24 layers" in _status(d), "the default preset's view")
    assert "62,378,344" in _totals(browser)  # AlexNet (the lecture's, single group): as tests/test_lecture.py
    assert browser.find_element(By.ID, "ae-save").get_attribute("disabled") is not None  # no file opened: no save

    Select(browser.find_element(By.ID, "ae-preset")).select_by_value("vgg16")
    _wait(browser, lambda d: "138,357,544" in _totals(d), "vgg16's totals")  # torchvision's vgg16 parameter count

    # conv1_1 64 -> 32 filters: conv1_1 loses 32 x (3*3*3 + 1) = 896 params, conv1_2 (64 filters) loses
    # 64 x 32*3*3 = 18,432 of its input weights: 138,357,544 - 19,328 = 138,338,216
    _select_text(browser, '"filters": 64')
    started = time.perf_counter()
    browser.find_element(By.ID, "ae-spec").send_keys('"filters": 32')
    _wait(browser, lambda d: "138,338,216" in _totals(d), "the totals after the edit")
    print(f"\nserve: vgg16 edit to new totals in the browser: {time.perf_counter() - started:.3f} s (debounce 150 ms included)")

    _select_text(browser, '"filters": 32')
    browser.find_element(By.ID, "ae-spec").send_keys('"filters": -32')
    _wait(browser, lambda d: "must be a positive int" in _status(d), "the error message")
    status = _status(browser)
    assert status.startswith("spec 'editor': layers[0] (name=\"conv1_1\", type=\"conv\"): filters must be a positive int, got -32")
    assert "(line 7, column 41)" in status and "The view shows the last valid spec." in status
    assert "138,338,216" in _totals(browser)  # the last good view stays
    assert "ae-stale" in browser.find_element(By.TAG_NAME, "body").get_attribute("class")

    browser.find_element(By.PARTIAL_LINK_TEXT, "line 7, column 41").click()  # puts the cursor on the attribute
    assert browser.execute_script("var s = document.getElementById('ae-spec'); "
                                  "return s.value.substr(s.selectionStart, 9);") == '"filters"'

    _select_text(browser, '"filters": -32,')
    browser.find_element(By.ID, "ae-spec").send_keys('"filters": 32,,')
    _wait(browser, lambda d: "not valid JSON" in _status(d), "the JSON error")
    text = browser.execute_script("return document.getElementById('ae-spec').value;")
    with pytest.raises(ArchcalcError) as error:
        from_json(text, "editor")
    assert _status(browser).startswith(str(error.value) + " (line ")  # the library's own message, then where
    _select_text(browser, '"filters": 32,,')
    browser.find_element(By.ID, "ae-spec").send_keys('"filters": 32,')
    _wait(browser, lambda d: "vgg16: 40 layers" in _status(d), "valid again")
    assert "138,338,216" in _totals(browser)


def _drawn(driver):
    """(depth, colour) the view shows with a drawing, or None while it has none."""
    return driver.execute_script("""
        var v = document.getElementById('ae-view').archcalcView;
        return v && document.querySelector('#ae-view .ac-svg svg') ? [v.depth, v.color] : null;""")


def test_another_depth_or_colour_is_fetched_and_kept_across_edits(browser, server):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(server.url)
    Select(browser.find_element(By.ID, "ae-preset")).select_by_value("googlenet")
    _wait(browser, lambda d: "googlenet: " in _status(d) and _drawn(d) == ["full", "macs"], "googlenet drawn")
    Select(browser.find_element(By.CSS_SELECTOR, '#ae-view select[data-role="color"]')).select_by_value("params")
    _wait(browser, lambda d: _drawn(d) == ["full", "params"], "the params drawing, fetched")
    Select(browser.find_element(By.CSS_SELECTOR, '#ae-view select[data-role="depth"]')).select_by_value("1")
    _wait(browser, lambda d: _drawn(d) == ["1", "params"], "depth 1 in params, fetched")
    payload_before = browser.execute_script("return document.getElementById('ae-view').archcalcView.payload;")
    assert list(payload_before["svg"]) == ["1/params"]
    _select_text(browser, '"filters": 64')  # an edit: the view keeps its depth and colour
    browser.find_element(By.ID, "ae-spec").send_keys('"filters": 63')
    _wait(browser, lambda d: d.execute_script("return document.getElementById('ae-view').archcalcView.payload;")
          ["analysis"]["totals"]["params"] != payload_before["analysis"]["totals"]["params"], "the edit's view")
    assert _drawn(browser) == ["1", "params"]


def test_save_from_the_page_writes_the_opened_file(browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    path = tmp_path / "net.json"
    path.write_text(serve.preset_text("lenet5"), encoding="utf-8")
    running = serve.make_server(0, serve.open_document(str(path)))
    serve.start_in_thread(running)
    try:
        browser.get(running.url)
        _wait(browser, lambda d: "lenet5: " in _status(d), "the opened file's view")
        _select_text(browser, '"units": 120')
        browser.find_element(By.ID, "ae-spec").send_keys('"units": 100')
        _wait(browser, lambda d: d.find_element(By.ID, "ae-save").text == "Save*", "the unsaved mark")
        browser.find_element(By.ID, "ae-save").click()
        _wait(browser, lambda d: "saved" in d.find_element(By.ID, "ae-save-note").text, "the save")
        assert path.read_text(encoding="utf-8") == serve.preset_text("lenet5").replace('"units": 120', '"units": 100')
        assert sorted(p.name for p in tmp_path.iterdir()) == ["net.json"]
        assert browser.find_element(By.ID, "ae-save").text == "Save"
    finally:
        browser.get("about:blank")
        running.shutdown()
        running.server_close()


def test_resnet50_edit_time_is_reported(browser, server):  # noqa: F811
    """ResNet-50 (176 layers, three depths drawn): keystroke to new totals, printed (pytest -s)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(server.url)
    _wait(browser, lambda d: "alexnet: 24 layers" in _status(d), "the default preset's view")
    Select(browser.find_element(By.ID, "ae-preset")).select_by_value("resnet50")
    _wait(browser, lambda d: "25,557,032" in _totals(d), "resnet50's totals")  # torchvision's resnet50
    # the stem conv 64 -> 65 filters: conv1 gains 3*7*7 = 147 weights, bn1 2 params, and layer1.0's
    # conv1 (64 filters, 1x1) and downsample conv (256 filters, 1x1) one input channel each: 64 + 256
    _select_text(browser, '"filters": 64')
    started = time.perf_counter()
    browser.find_element(By.ID, "ae-spec").send_keys('"filters": 65')
    _wait(browser, lambda d: f"{25_557_032 + 147 + 2 + 64 + 256:,}" in _totals(d), "the totals after the edit")
    print(f"\nserve: resnet50 edit to new totals in the browser: {time.perf_counter() - started:.3f} s (debounce 150 ms included)")
