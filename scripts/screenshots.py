"""Regenerate the README's screenshots of the report page: docs/vgg16.png and docs/googlenet-depth1.png.

    python scripts/screenshots.py            # needs Graphviz, chromium and chromium-driver, selenium

Each page is written by ``archcalc html`` into a temporary folder, opened from file:// in headless
Chromium (tests/browser.py's), one layer is selected as a user would click it, and the window is
saved as a PNG.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from archcalc.cli import main  # noqa: E402
from tests.browser import file_url, start_chromium  # noqa: E402

#: (output PNG, the `archcalc html` arguments, the layer to select)
SHOTS = (
    ("vgg16.png", ["vgg16"], "conv3_1"),
    ("googlenet-depth1.png", ["googlenet", "--depth", "1"], "inception4a"),
)
WINDOW = (1500, 900)


def _write_page(arguments: list[str], path: Path) -> None:
    try:
        main(["html", *arguments, "-o", str(path)])
    except SystemExit as status:
        if status.code:
            raise


def main_screenshots(docs: Path = ROOT / "docs") -> list[Path]:
    """Write the screenshots into ``docs``; returns their paths."""
    written = []
    driver = start_chromium(WINDOW)
    try:
        with tempfile.TemporaryDirectory() as folder:
            for name, arguments, layer in SHOTS:
                page = Path(folder) / (Path(name).stem + ".html")
                _write_page(arguments, page)
                driver.get(file_url(page))
                driver.execute_script("document.getElementById('archcalc-view').archcalcView.select(arguments[0], true);"
                                      "window.scrollTo(0, 0);", layer)
                errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
                if errors:
                    raise SystemExit(f"{name}: the page logged errors: {errors}")
                out = docs / name
                driver.save_screenshot(str(out))
                written.append(out)
                print(f"wrote {out}")
    finally:
        driver.quit()
    return written


if __name__ == "__main__":
    main_screenshots()
