"""The HTML report in a real browser: headless Chromium (Playwright) opens the page of a small stored run
from a file:// URL, with no network, and finds no console error, the family tables' rows, and one
coloured token per scored token in every heat-map.

Artefact: a full-page screenshot, ``report.png``, next to the page (``report.html``) in the test's
``tmp_path`` (pytest prints nothing for a passing test: see ``pytest --basetemp=DIR`` to choose where, or
the latest run under ``$(python -c 'import tempfile; print(tempfile.gettempdir())')/pytest-of-$USER/``);
when the environment variable ``BENCH_TEST_ARTEFACTS`` names a folder, both are copied there too.

Skipped when Playwright is not importable or no Chromium is installed (/usr/bin/chromium or
``chromium`` on PATH: ``apt-get install chromium``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_html_report import EXAMPLES, SCRIPT, small_run

from harness.report.html import html_report

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str | None:
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = chromium()
    if executable is None:
        pytest.skip("no Chromium: neither /usr/bin/chromium nor chromium on PATH (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def test_the_report_opens_in_chromium_without_errors_and_shows_its_tables_and_heat_maps(browser, tmp_path):
    report, store, run_id = small_run(tmp_path / "run")
    path = tmp_path / "report.html"
    path.write_text(html_report(report, store, examples=EXAMPLES), encoding="utf-8")

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, requests = [], []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    try:
        assert errors == []
        assert [url for url in requests if not url.startswith("file://")] == []
        assert page.evaluate("document.querySelector('script') === null")

        rows = page.eval_on_selector_all(
            "table.report-table",
            "tables => tables.map(t => [...t.tBodies[0].rows].map(r => r.cells[0].textContent.trim()))",
        )
        assert rows == [[SCRIPT, "saliency", "occlusion"]] * 2  # cost, faithfulness

        expected: dict[str, int] = {}
        for row in store.attributions(run_id):
            key = f"{row['dataset']}/{row['example_id']}"
            expected[key] = expected.get(key, 0) + sum(segment >= 0 for segment in row["segments"])
        shown = page.eval_on_selector_all(
            "table.heat",
            """tables => tables.map(t => ({
                pair: t.querySelector('td.segment-name') !== null,
                id: t.dataset.example,
                tokens: t.querySelectorAll('.tok').length,
                coloured: [...t.querySelectorAll('.tok')].filter(
                    s => getComputedStyle(s).backgroundColor !== 'rgba(0, 0, 0, 0)').length,
                visible: [...t.querySelectorAll('.tok')].every(s => s.getClientRects().length > 0),
            }))""",
        )
        assert len(shown) == 2 * EXAMPLES
        for example in shown:
            dataset = "pairs" if example["pair"] else "single"
            assert example["tokens"] == example["coloured"] == expected[f"{dataset}/{example['id']}"]
            assert example["visible"]
        assert page.locator("figure.plot svg").count() == 6  # 4 curves, 2 runtime bars
    finally:
        screenshot = tmp_path / "report.png"
        page.screenshot(path=str(screenshot), full_page=True)
        page.close()
        artefacts = os.environ.get("BENCH_TEST_ARTEFACTS")
        if artefacts:
            Path(artefacts).mkdir(parents=True, exist_ok=True)
            shutil.copy(screenshot, Path(artefacts) / "report.png")
            shutil.copy(path, Path(artefacts) / "report.html")
