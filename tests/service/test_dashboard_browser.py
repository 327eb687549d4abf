"""The dashboard in a real headless Chromium against a real uvicorn server on 127.0.0.1.

Needs Debian's chromium (``apt-get install chromium chromium-driver``); skipped without it.
The page must work offline: the test fails if the page requested anything outside the test server
(plotly.js is served from the plotly Python package, no CDN). A screenshot goes to ``test-artifacts/dashboard.png``.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from margincal.data.store import connect

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    found = shutil.which("chromium")
    if not found:
        pytest.skip("headless Chromium not found at /usr/bin/chromium: install it with "
                    "`apt-get install chromium chromium-driver` to run the dashboard browser test")
    return Path(found)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """uvicorn serving the app in a background thread; stops on exit."""

    def __init__(self, app: Any, port: int):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start within 20 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_dashboard_charts_and_approval(seeded: tuple[Path, dict[str, str]]) -> None:
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    from margincal.service.app import ServiceSettings, create_app

    path, keys = seeded
    con = connect(path)
    try:
        from margincal.adjust.approval import create_proposal
        from margincal.margin import params as mparams

        p = mparams.load(con)["ETH-USDT"]
        pid = create_proposal(con, author="alice", reason="ETH volatility regime up (test)", base_version=1,
                              changes=[{"instrument": "ETH-USDT", "im_before": p.im_rate, "im_after": p.im_rate * 1.25,
                                        "mm_before": p.mm_rate, "mm_after": p.mm_rate * 1.25}])
    finally:
        con.close()

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(ServiceSettings(store=path, sse_poll_interval=0.2))
    outside: list[str] = []
    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    with ServerThread(app, port), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(exe), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1700})

            page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else outside.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

            page.goto(f"{base}/", wait_until="domcontentloaded")  # / redirects to /dashboard
            assert page.url.endswith("/dashboard")
            try:
                _drive(page, keys, pid, (p.im_rate, p.im_rate * 1.25))
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "dashboard-failure.png"), full_page=True)
                raise
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            # sign out clears the key
            page.click("#sign-out")
            assert page.evaluate("sessionStorage.getItem('margincal.apiKey')") is None
        finally:
            browser.close()
    assert outside == [], f"the page tried to reach outside the server: {outside}"
    assert [e for e in errors if "favicon" not in e and "404" not in e] == [], errors
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 20_000


def _drive(page: Any, keys: dict[str, str], pid: str, rates: tuple[float, float]) -> None:
    """Sign in as the risk officer, check the charts, approve ``pid``, see version 2 appear."""
    page.fill("#api-key", keys["risk_officer"])
    page.click("#key-submit")
    page.wait_for_selector("#who-role:has-text('risk_officer')", timeout=15000)
    assert page.evaluate("sessionStorage.getItem('margincal.apiKey')") == keys["risk_officer"]

    # the proposals view comes first; the charts are on the instruments tab
    assert page.get_attribute("#tabs button[data-tab='proposals']", "aria-selected") == "true"
    page.click("#tabs button[data-tab='instruments']")
    # charts rendered by plotly.js (served from the plotly package): SVG line paths with data
    page.wait_for_selector("#chart.js-plotly-plot", timeout=30000)
    page.wait_for_function(
        "document.querySelectorAll('#chart.js-plotly-plot path.js-line').length >= 4", timeout=30000)
    n_lines = page.eval_on_selector_all("#chart.js-plotly-plot path.js-line",
                                        "els => els.filter(e => (e.getAttribute('d') || '').length > 100).length")
    assert n_lines >= 4  # price, volatility, IM, MM
    assert page.locator("#version-chart.js-plotly-plot").count() == 1
    assert page.locator("#instruments tbody tr").count() == 2

    # approve the proposal written by alice; the new version appears
    page.click("#tabs button[data-tab='proposals']")
    btn = page.locator(f"button[data-action='approve'][data-proposal='{pid}']")
    btn.wait_for(timeout=15000)
    assert btn.is_enabled()
    btn.click()
    # a confirmation dialog shows the diff and its evidence; it publishes only after a comment and confirm
    page.wait_for_selector("#decide-dialog[open]", timeout=15000)
    diff = page.inner_text("#decide-diff")
    assert f"{100 * rates[0]:.2f}%" in diff and f"{100 * rates[1]:.2f}%" in diff, diff
    assert page.is_disabled("#decide-confirm")
    page.click("#decide-cancel")
    page.wait_for_timeout(300)
    assert page.locator("#versions tr[data-version='2']").count() == 0  # cancelled: nothing published
    btn.click()
    page.wait_for_selector("#decide-dialog[open]", timeout=15000)
    page.fill("#decide-comment", "vol regime change confirmed")
    page.screenshot(path=str(ARTIFACTS / "dashboard-decide-dialog.png"))
    page.click("#decide-confirm")
    page.wait_for_selector("#versions tr[data-version='2']", state="attached", timeout=15000)
    page.select_option("#filter-status", "approved")  # decided proposals leave the default (open) filter
    page.wait_for_selector(f"#proposals tr[data-proposal='{pid}'][data-status='approved']", timeout=15000)
    # the live stream delivered the approval as an event
    page.wait_for_selector("#events li:has-text('approve')", state="attached", timeout=15000)
    assert "v2" in page.inner_text("#status")
    # the views follow the new live version (the user had not picked an older one)
    page.wait_for_function("document.getElementById('view-version').value === '2'", timeout=15000)
    im_before, im_after = rates
    row = page.inner_text(f"#proposals tr[data-proposal='{pid}']")
    assert f"IM {100 * im_before:.2f}% -> {100 * im_after:.2f}%" in row, row

    # a pre-trade what-if on the published rates (risk officers may run margin queries)
    page.click("#tabs button[data-tab='instruments']")
    page.select_option("#whatif-method", "standalone")
    page.click("#whatif-submit")
    page.wait_for_selector("#whatif-result:has-text('IM before')", timeout=15000)
    assert "marginal" in page.inner_text("#whatif-result")
    page.wait_for_timeout(500)
