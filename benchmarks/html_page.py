"""Size and speed of `archcalc html`: the payload, the page's bytes, and how long a browser takes to open it.

Run: python benchmarks/html_page.py [MODEL ...]        (default: vgg16 googlenet resnet50 resnet152)
Prints, per model: the time to build the payload (analysis, explain lines, Graphviz drawings),
the page's size and its biggest parts, and, when headless Chromium is here (tests/browser.py),
the time from navigation to the load event (the view is drawn by then) over three openings.
(Not html.py: a script of that name would shadow the standard library's html module.)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from archcalc.render.html import page, payload  # noqa: E402


def main(models: list[str]) -> None:
    driver = None
    try:
        from tests.browser import _missing, file_url, start_chromium

        if _missing() is None:
            driver = start_chromium()
        with tempfile.TemporaryDirectory() as folder:
            for model in models:
                started = time.perf_counter()
                data = payload(model)
                built = time.perf_counter() - started
                text = page(data, title=data["title"])
                path = Path(folder) / f"{model}.html"
                path.write_text(text, encoding="utf-8")
                parts = sorted(((len(json.dumps(value)), key) for key, value in data.items()), reverse=True)[:4]
                line = (f"{model}: payload {built:.2f} s; page {len(text.encode()):,} bytes "
                        f"({', '.join(f'{key} {size / 1000:.0f} kB' for size, key in parts)}); "
                        f"{len(data['svg'])} drawings, {len(data['hints'])} left out")
                if driver is not None:
                    times = []
                    for _ in range(3):
                        driver.get(file_url(path))
                        times.append(driver.execute_script("return performance.getEntriesByType('navigation')[0].loadEventEnd"))
                    line += f"; opens in {min(times):.0f}-{max(times):.0f} ms"
                print(line)
    finally:
        if driver is not None:
            driver.quit()


if __name__ == "__main__":
    main(sys.argv[1:] or ["vgg16", "googlenet", "resnet50", "resnet152"])
