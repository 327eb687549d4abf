"""The dashboard's account view in a real headless Chromium: the figures rendered equal the what-if API's JSON.

Issue 17 item 9. A trader fills an account what-if (positions, an order, collateral in two currencies with
a haircut) and submits it; the test captures the JSON the page received from ``POST /api/margin/what-if``
and checks every figure of the account table (equity, collateral after haircuts, IM, MM, margin ratio,
liquidation prices, driving scenario, before and after the order) against it: the full-precision value
kept in each cell and the rounded text shown. It also posts the same body itself and checks that the
page's figures are the service's. Screenshot: ``test-artifacts/dashboard-account.png``.
"""

from __future__ import annotations

import importlib.util
import json
import math
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest


def _browser_helpers() -> Any:
    """The server thread and Chromium helpers of the existing browser test (loaded by path: tests is no package)."""
    spec = importlib.util.spec_from_file_location("dashboard_browser_helpers",
                                                  Path(__file__).with_name("test_dashboard_browser.py"))
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


_h = _browser_helpers()
ARGS, ARTIFACTS, ServerThread, _chromium, _free_port = _h.ARGS, _h.ARTIFACTS, _h.ServerThread, _h._chromium, _h._free_port

pytestmark = pytest.mark.browser

FIELDS = ("equity", "collateral_value", "collateral_after_haircuts", "im", "mm", "margin_ratio", "available")


def _shown(field: str, v: Any) -> str:
    """The dashboard's rounding: ``toLocaleString("en-US", {maximumFractionDigits: 2})`` rounds the shortest
    decimal form of the number half away from zero (Intl's "halfExpand"); ratios with ``toFixed(2)`` as %."""
    if v is None:
        return "-"
    if field == "margin_ratio":
        return f"{100 * v:.2f}%"
    x = Decimal(repr(float(v))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    s = f"{x:,.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def test_account_what_if_renders_the_api_figures(seeded: tuple[Path, dict[str, str]]) -> None:
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    from margincal.service.app import ServiceSettings, create_app

    path, keys = seeded
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(ServiceSettings(store=path, sse_poll_interval=0.2))
    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    with ServerThread(app, port), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(exe), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/dashboard", wait_until="domcontentloaded")
            page.fill("#api-key", keys["trader"])
            page.click("#key-submit")
            page.wait_for_selector("#who-role:has-text('trader')", timeout=15000)
            page.click("#tabs button[data-tab='instruments']")  # the what-if lives on its own tab
            # an account: long 2 BTC perps and a short call, USDT and BTC collateral, BTC haircut 10%
            page.fill("#whatif-positions", "BTC-PERP 2\nBTC-26JUN26-90000-C -1")
            page.select_option("#whatif-side", "buy")
            page.fill("#whatif-qty", "1")
            page.fill("#whatif-instrument", "BTC-PERP")
            page.select_option("#whatif-method", "risk_matrix")
            page.fill("#whatif-vol", "0.6")
            page.fill("#whatif-collateral", "USDT 50000, BTC 0.5")
            page.fill("#whatif-haircuts", "BTC 0.1")
            try:
                with page.expect_response(lambda r: r.url.endswith("/api/margin/what-if")) as resp_info:
                    page.click("#whatif-submit")
                resp = resp_info.value
                assert resp.status == 200, resp.text()
                got = resp.json()
                sent = json.loads(resp.request.post_data or "{}")
                page.wait_for_selector("#whatif-account tbody tr[data-field='equity']", timeout=15000)
                cells = page.eval_on_selector_all(
                    "#whatif-account td",
                    "els => els.map(e => [e.dataset.side, e.dataset.field, e.dataset.value, e.textContent])")
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "dashboard-account-failure.png"), full_page=True)
                raise
            page.locator("#whatif-section").screenshot(path=str(ARTIFACTS / "dashboard-account.png"))
        finally:
            browser.close()

        # the same body posted by the test: the page shows the service's figures, not figures of its own
        direct = httpx.post(f"{base}/api/margin/what-if", json=sent, headers={"X-API-Key": keys["trader"]},
                            timeout=60).json()

    assert errors == [], errors
    assert sent["collateral"] == {"USDT": 50000, "BTC": 0.5} and sent["haircuts"] == {"BTC": 0.1}
    acc = got["account"]
    assert acc is not None and set(acc) >= {"before", "after"}
    table = {(side, field): (value, text) for side, field, value, text in cells}
    liq_fields = set()
    for side in ("before", "after"):
        a = acc[side]
        for f in FIELDS:
            value, text = table[(side, f)]
            want = a.get(f)
            if want is None:
                assert value == "" and text == "-", (side, f, value, text)
                continue
            assert float(value) == want, (side, f, value, want)  # the full-precision number, unchanged
            assert text == _shown(f, want), (side, f, text, want)
        for u, p in a["liquidation_prices"].items():
            liq_fields.add(u)
            value, text = table[(side, f"liquidation_prices.{u}")]
            if p is None:
                assert value == "" and text == "none"
            else:
                assert float(value) == p and text == _shown("price", p)
        value, text = table[(side, "driving_scenario")]
        assert value == (a["driving_scenario"] or "") and text == (a["driving_scenario"] or "-")
    assert liq_fields == {"BTC"}
    # the figures hang together: equity = collateral after haircuts, margin ratio = MM / equity
    after = acc["after"]
    assert after["collateral_after_haircuts"] < after["collateral_value"]  # the BTC haircut bites
    assert after["margin_ratio"] == pytest.approx(after["mm"] / after["equity"], rel=1e-12)
    assert after["im"] > acc["before"]["im"] > 0
    assert math.isfinite(after["liquidation_prices"]["BTC"] or math.nan)
    assert direct["account"] == acc
    assert (ARTIFACTS / "dashboard-account.png").stat().st_size > 10_000
