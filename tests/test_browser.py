"""Open generated reports in headless Chromium: every figure renders, nothing is fetched,
the console stays clean. Skipped without Chromium, except under CI where it fails (tests/ci.py)."""

from pathlib import Path

import pytest

from profiler import report
from profiler.gates.compare import compare
from profiler.storage import store
from tests.ci import missing, require

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run installs it)")
    sync_playwright = require("playwright.sync_api", "make venv (the dev extra)").sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def open_page(browser, path: Path):
    """Load a page; return it with its console errors and every URL it requested."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.figure')).every(d => d.querySelector('.main-svg .trace'))",
        timeout=30000)
    return page, errors, requests


def assert_all_rendered(page, errors, requests):
    figures = page.evaluate("""() => Array.from(document.querySelectorAll('.figure')).map(d => ({
        id: d.id, plotly: d.classList.contains('js-plotly-plot'),
        traces: d.querySelectorAll('.main-svg .trace').length,
        data: d.data ? d.data.length : 0}))""")
    assert figures, "no figure in the page"
    for f in figures:
        assert f["plotly"] and f["data"] > 0 and f["traces"] > 0, f
    assert errors == []
    assert all(url.startswith("file://") for url in requests), requests
    return {f["id"] for f in figures}


def test_real_report_renders(browser, real_results, tmp_path):
    out = report.write_report(real_results, tmp_path / "real.html")
    page, errors, requests = open_page(browser, out)
    ids = assert_all_rendered(page, errors, requests)
    assert {"fig-time_compile_s", "fig-cost_flops", "fig-mem_temp_bytes"} <= ids
    # one click shows XLA's raw count: the visible traces swap
    visible = "() => document.getElementById('fig-cost_flops').data.map(t => t.visible !== false)"
    before = page.evaluate(visible)
    page.locator("#fig-cost_flops .updatemenu-button").nth(1).click()
    after = page.evaluate(visible)
    assert before != after and any(after)


def test_report_with_every_view_renders(browser, synthetic, tmp_path):
    df = store.load(synthetic(modes=("loop", "scan", "scan_shared"), layers=(2, 8, 32, 64, 128),
                              hidden=(256, 512), remat=("none", "full"),
                              failures=[("crash", "the measuring process died by signal SIGSEGV")]))
    out = report.write_page(tmp_path / "all.html", report.report_html(df))
    page, errors, requests = open_page(browser, out)
    ids = assert_all_rendered(page, errors, requests)
    assert "fig-remat" in ids
    page.screenshot(path=str(tmp_path / "all.png"))


def test_comparison_and_index_render(browser, synthetic, tmp_path):
    a, b = synthetic(name="a"), synthetic(name="b", scale={"time_compile_s": 1.2})
    result = compare(a, b, tmp_path / "cmp.html")
    page, errors, requests = open_page(browser, result.path)
    assert "fig-ratio-time_compile_s" in assert_all_rendered(page, errors, requests)
    index = browser.new_page()
    index.goto((tmp_path / "index.html").as_uri())
    assert index.locator("a[href='cmp.html']").count() == 1
