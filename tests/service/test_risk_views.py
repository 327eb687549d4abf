"""The risk officer's views (issue 16 item 7) on the store `make run` builds: the `/api/views/...` routes, the
offline report (one version, evidence of that version, under 5 MB) and the dashboard in headless Chromium.

The store is built once per module the way a user does it: `margincal run` (bundled data, publish v1, backtest
of the published rule), `margincal stress --margin published`, `margincal cascade --event 2025-10-10`, then keys
and two proposals by alice. Screenshots go to ``test-artifacts/`` at the repository root (gitignored).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from margincal.cli.app import app as cli_app
from margincal.data.store import connect

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
REPORT_LIMIT = 5_000_000  # bytes (issue 16 item 7: the report stays under 5 MB)


def _cli(*args: str) -> str:
    r = CliRunner().invoke(cli_app, list(args))
    assert r.exit_code == 0, r.output[-2000:]
    return r.stdout


@pytest.fixture(scope="module")
def run_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], dict[str, str]]:
    """(store, role -> key, name -> proposal id): `make run`, a stress and a cascade run, keys, two proposals."""
    from margincal.adjust.approval import create_proposal
    from margincal.margin import params as mparams
    from margincal.service.auth import create_key

    d = tmp_path_factory.mktemp("run-store")
    store = d / "margincal.duckdb"
    _cli("run", "--store", str(store), "--report", str(d / "run-report.html"), "--json")
    _cli("stress", "--store", str(store), "--margin", "published", "--accounts", "300", "--json")
    _cli("cascade", "--store", str(store), "--event", "2025-10-10", "--accounts", "200", "--paths", "10", "--json")
    con = connect(store)
    try:
        keys = {r: create_key(con, r, name=f"{r}-user", actor="test").key for r in ("viewer", "risk_officer")}
        keys["alice"] = create_key(con, "risk_officer", name="alice", actor="test").key
        p = mparams.load(con)
        eth, btc = p["ETH-USDT"], p["BTC-USDT"]
        props = {
            "raise": create_proposal(con, author="alice", reason="ETH volatility up (test)", base_version=p.version,
                                     changes=[{"instrument": "ETH-USDT", "im_before": eth.im_rate,
                                               "im_after": eth.im_rate * 1.2, "mm_before": eth.mm_rate,
                                               "mm_after": eth.mm_rate * 1.2}]),
            "cut": create_proposal(con, author="alice", reason="BTC volatility down (test)", base_version=p.version,
                                   changes=[{"instrument": "BTC-USDT", "im_before": btc.im_rate,
                                             "im_after": btc.im_rate * 0.9, "mm_before": btc.mm_rate,
                                             "mm_after": btc.mm_rate * 0.9}]),
        }
    finally:
        con.close()
    return store, keys, props


def _copy(store: Path, dst: Path) -> Path:
    out = dst / "copy.duckdb"
    shutil.copy(store, out)
    if Path(str(store) + ".wal").exists():
        shutil.copy(Path(str(store) + ".wal"), Path(str(out) + ".wal"))
    return out


@pytest.fixture(scope="module")
def views_client(run_store: tuple[Path, dict[str, str], dict[str, str]], tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from margincal.service.app import ServiceSettings, create_app

    store, keys, _ = run_store
    path = _copy(store, tmp_path_factory.mktemp("views-client"))
    with TestClient(create_app(ServiceSettings(store=path)), raise_server_exceptions=False) as c:
        c.headers["X-API-Key"] = keys["viewer"]
        yield c


# ------------------------------------------------------------------ API


def test_timeline_and_evidence_of_the_published_version(views_client: Any) -> None:
    tl = views_client.get("/api/views/timeline").json()
    assert [t["version"] for t in tl] == [1]
    assert tl[0]["created_by"] == "system:calibrate" and tl[0]["added"] == 12 and tl[0]["diff"].endswith("/1/diff")
    ev = views_client.get("/api/views/evidence").json()
    assert ev["version"] == 1
    assert ev["backtest"]["params"]["version"] == 1 and ev["stress"]["params"]["version"] == 1
    assert views_client.get("/api/views/evidence?version=9").status_code == 404


def test_margin_view_breaches_agree_with_the_backtest_rows(views_client: Any, run_store: Any) -> None:
    """The breaches marked on the chart are those the backtest engine counted (its own per-instrument rows)."""
    from margincal.data.store import latest_result

    store = run_store[0]
    con = connect(store, read_only=True)
    try:
        rows = latest_result(con, "backtest")["payload"]["rows"]
    finally:
        con.close()
    for inst in ("BTC-USDT", "BTC-PERP"):
        v = views_client.get(f"/api/views/margin/{inst}").json()
        assert len(v["ts"]) == len(v["close"]) == len(v["im_rate"]) and 100 < len(v["ts"]) <= 1500
        for key, model in (("im", "published"), ("mm", "published-mm")):
            row = next(r for r in rows if r["instrument"] == inst and r["model"] == model)
            assert v["breaches"][f"{key}_count"] == row["breaches"], (inst, key)
            assert v["breaches"]["n_obs"][key] == row["n_obs"]
        assert all(b["loss"] > b["margin"] for b in v["breaches"]["im"])
    assert views_client.get("/api/views/margin/NOPE-USDT").status_code == 404


def test_bracket_view_is_the_published_tiers_beside_the_venue_presets(views_client: Any) -> None:
    from margincal.margin import presets

    r = views_client.get("/api/views/brackets").json()
    names = [b["instrument"] for b in r["instruments"]]
    assert names == ["BTC-PERP", "ETH-PERP"]
    for b in r["instruments"]:
        first = b["tiers"][0]
        inside = [i for i, n in enumerate(b["notional"]) if n < first["upper"]]
        assert inside and all(math.isclose(b["im_rate"][i], first["im_rate"], rel_tol=1e-6) for i in inside)
        assert all(x >= y - 1e-12 for x, y in zip(b["im_rate"], b["mm_rate"], strict=True))  # IM >= MM everywhere
        assert set(b["venues"]) >= {"hyperliquid_" + b["instrument"][:3].lower()}
        name = next(iter(b["venues"]))
        k = len(b["notional"]) // 2
        want = float(presets.get(name).margin_rate(b["notional"][k], price=b["price"]).im)
        assert math.isclose(b["venues"][name][k], want, rel_tol=1e-5)


def test_smiles_are_the_bundled_deribit_marks(views_client: Any) -> None:
    from margincal import datasets

    s = views_client.get("/api/views/smiles").json()
    assert s["snapshot"] == "deribit_btc_options_snapshot_2024-05.csv" and len(s["snapshots"]) == 3
    raw = pd.read_csv(datasets.path(s["snapshot"]))
    marks = set((raw["mark_iv"] / 100).round(3))
    quoted = [x for sl in s["slices"] for x in sl["iv"]]
    assert len(quoted) > 100 and sum(round(x, 3) in marks for x in quoted) / len(quoted) > 0.95
    import numpy as np

    for sl in s["slices"]:  # the drawn SVI line passes near the quotes of its expiry
        err = np.interp(sl["k"], sl["k_fit"], sl["iv_fit"]) - np.asarray(sl["iv"])
        assert float(np.sqrt(np.mean(err**2))) < 0.06, sl["expiry"]
    assert 0 < s["rmse_iv"] < 0.05  # SVI fits the marks within 5 vol points
    assert views_client.get("/api/views/smiles?snapshot=nope.csv").status_code == 404


def test_stress_heatmap_spot_down_30_is_30pct_over_the_im_rate(views_client: Any) -> None:
    v = views_client.get("/api/views/stress").json()
    im = {r["instrument"]: r["im_rate"] for r in views_client.get("/api/instruments").json()}
    i = v["scenarios"].index("spot-down-30")
    for j, inst in enumerate(v["instruments"]):
        assert math.isclose(v["z"][i][j], 0.30 / im[inst], rel_tol=1e-3), inst
    assert v["stored"]["summary"] and v["stored"]["attribution"] == "run of version 1"


def test_cascade_and_audit_views(views_client: Any) -> None:
    c = views_client.get("/api/views/cascade").json()
    assert c["available"] and c["events"] == ["2025-10-10"] and len(c["policies"]) >= 2
    a = views_client.get("/api/views/audit").json()
    assert a["ok"] and a["entries"] >= 4 and len(a["last_hash"]) == 64


# ------------------------------------------------------------------ report


def _figures(html: str) -> list[dict[str, Any]]:
    from margincal.reports.html import figures_of

    return figures_of(html)


def test_report_states_one_version_shows_its_evidence_and_stays_under_5mb(run_store: Any, tmp_path: Path) -> None:
    store = _copy(run_store[0], tmp_path)
    out = tmp_path / "report.html"
    meta = json.loads(_cli("report", "--store", str(store), "--out", str(out), "--json"))
    size = out.stat().st_size
    assert size < REPORT_LIMIT, f"report is {size:,} bytes"
    html = out.read_text(encoding="utf-8")
    header = re.search(r"id='report-version' data-version='(\d+)'", html)
    assert header and int(header.group(1)) == meta["version"] == 1
    evidence = {int(v) for v in re.findall(r"data-evidence-version='(\d+)'", html)}
    assert evidence == {1}
    con = connect(store, read_only=True)
    try:
        runs = dict(con.execute("SELECT kind, run_id FROM results").fetchall())
    finally:
        con.close()
    assert runs["backtest"] in html and runs["stress"] in html and runs["cascade"] in html
    status = {s["section"]: s for s in meta["sections"]}
    assert status["Price, forecast volatility and margin over time"]["figures"] == 12
    assert status["Bracket curve beside the venues"]["figures"] == 2
    figs = _figures(html)
    # every axis of names is categorical (a cascade event "2025-10-10" must not become a date)
    def names(vals: Any) -> bool:
        return bool(vals) and all(isinstance(x, str) for x in vals) and (
            "2025-10-10" in vals or any(not re.match(r"^\d{4}-\d{2}-\d{2}", x) for x in vals))

    checked = 0
    for f in figs:
        for t in f["data"]:
            for axis in ("x", "y"):
                if t["type"] in ("bar", "heatmap") and names(t.get(axis)):
                    ax = f"{axis}axis" + str(t.get(f"{axis}axis", axis))[1:]
                    assert f["layout"][ax]["type"] == "category", (f["layout"].get("title"), ax)
                    checked += 1
    assert checked >= 4  # cascade bars, stress heatmap (both axes), surface heatmap
    assert any("2025-10-10" in (t.get("x") or []) for f in figs for t in f["data"] if t["type"] == "bar")
    assert "hash chain: intact" in html
    assert len(re.findall(r"<script[^>]+src=", html)) == 0  # self-contained


def test_report_never_shows_evidence_of_another_version(run_store: Any, tmp_path: Path) -> None:
    """After v2 is published, the report of v2 has no backtest or stress (they ran on v1) and says so; the report
    of v1 (--version 1) still shows them."""
    from margincal.adjust.approval import approve

    store = _copy(run_store[0], tmp_path)
    con = connect(store)
    try:
        approve(con, run_store[2]["raise"], "risk_officer-user", "test", role="risk_officer")
    finally:
        con.close()
    out2 = tmp_path / "v2.html"
    meta2 = json.loads(_cli("report", "--store", str(store), "--out", str(out2), "--no-charts", "--json"))
    html2 = out2.read_text(encoding="utf-8")
    assert meta2["version"] == 2 and "data-version='2'" in html2
    assert "No backtest of version 2 is stored" in html2 and "No stored book stress of version 2" in html2
    assert set(re.findall(r"data-evidence-version='(\d+)'", html2)) <= {"2"}
    out1 = tmp_path / "v1.html"
    meta1 = json.loads(_cli("report", "--store", str(store), "--out", str(out1), "--no-charts", "--version", "1",
                            "--json"))
    html1 = out1.read_text(encoding="utf-8")
    assert meta1["version"] == 1 and "No backtest of version" not in html1
    assert "Changes in version 2 from version 1" in html2 and "ETH-USDT" in html2


# ------------------------------------------------------------------ dashboard in headless Chromium

TABS = ("proposals", "versions", "margin", "brackets", "smiles", "stress", "cascade", "audit")
# plotly divs each tab must draw, with at least this many traces holding data
PLOTS = {"versions": {"#timeline-chart": 1}, "margin": {"#margin-chart": 5},
         "brackets": {"#bracket-BTC-PERP": 4, "#bracket-ETH-PERP": 4},
         "smiles": {"#smile-chart": 10, "#surface-chart": 1}, "stress": {"#stress-chart": 1},
         "cascade": {"#cascade-chart": 2}}


class _Server:
    """uvicorn serving the app on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any, port: int):
        import threading

        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        import time

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


@pytest.mark.browser
@pytest.mark.parametrize("role", ["viewer", "risk_officer"])
def test_dashboard_views_in_chromium(run_store: Any, tmp_path: Path, role: str) -> None:
    import socket

    chromium = Path("/usr/bin/chromium") if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
    if not chromium:
        pytest.skip("headless Chromium not found (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    from margincal.service.app import ServiceSettings, create_app

    store, keys, props = run_store
    path = _copy(store, tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    base = f"http://127.0.0.1:{port}"
    outside: list[str] = []
    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    with _Server(create_app(ServiceSettings(store=path, sse_poll_interval=0.2)), port), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else outside.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{base}/dashboard", wait_until="domcontentloaded")
            page.fill("#api-key", keys[role])
            page.click("#key-submit")
            page.wait_for_selector(f"#who-role:has-text('{role}')", timeout=15000)
            try:
                _check_views(page, role, props)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / f"views-{role}-failure.png"), full_page=True)
                raise
        finally:
            browser.close()
    assert outside == [], f"the page reached outside the server: {outside}"
    assert errors == [], errors


def _check_views(page: Any, role: str, props: dict[str, str]) -> None:
    # proposals first, pending first, with filters; approve buttons only for a risk officer (not the author)
    page.wait_for_selector("#proposals tbody tr[data-proposal]", timeout=15000)
    assert page.get_attribute("#tabs button[data-tab='proposals']", "aria-selected") == "true"
    assert page.locator("#proposals tbody tr[data-proposal]").count() == 2
    assert page.inner_text("#pending-count") == "2"
    assert page.locator("button[data-action='approve']").count() == (2 if role == "risk_officer" else 0)
    page.select_option("#filter-kind", "cut")
    assert page.locator("#proposals tbody tr[data-proposal]").count() == 1
    assert page.locator(f"#proposals tr[data-proposal='{props['cut']}']").count() == 1
    page.select_option("#filter-kind", "")
    page.select_option("#filter-instrument", "ETH-USDT")
    assert page.locator(f"#proposals tr[data-proposal='{props['raise']}']").count() == 1
    assert page.locator("#proposals tbody tr[data-proposal]").count() == 1
    page.select_option("#filter-instrument", "")
    page.select_option("#filter-status", "approved")
    # only the run's own calibration proposal (decided by system:calibrate) is approved; the two open ones hide
    assert page.locator("#proposals tbody tr[data-proposal]").count() == 1
    assert page.locator(f"#proposals tr[data-proposal='{props['cut']}']").count() == 0
    assert page.locator(f"#proposals tr[data-proposal='{props['raise']}']").count() == 0
    page.select_option("#filter-status", "open")
    assert page.evaluate("document.documentElement.scrollHeight") < 3000  # no 25,000 px page
    page.screenshot(path=str(ARTIFACTS / f"views-{role}-proposals.png"), full_page=True)
    for tab in TABS[1:]:
        page.click(f"#tabs button[data-tab='{tab}']")
        for sel, n_traces in PLOTS.get(tab, {}).items():
            page.wait_for_selector(f"{sel}.js-plotly-plot", timeout=60000)
            got = page.eval_on_selector(sel, "d => (d.data || []).filter(t => (t.x || t.z || []).length > 0).length")
            assert got >= n_traces, (tab, sel, got)
        if tab == "cascade":  # "2025-10-10" is a category: its bars are drawn
            assert page.eval_on_selector("#cascade-chart", "d => d._fullLayout.xaxis.type") == "category"
            assert page.locator("#cascade-chart g.point").count() >= 2
        if tab == "stress":
            assert page.eval_on_selector("#stress-chart", "d => d._fullLayout.yaxis.type") == "category"
            assert page.locator("#stress-table tbody tr").count() >= 5
        if tab == "audit":
            page.wait_for_selector("#audit-status dd", timeout=15000)
            assert page.get_attribute("#audit-status", "data-ok") == "true"
            assert "intact" in page.inner_text("#audit-status")
        if tab == "versions":
            page.wait_for_selector("#versions tr[data-version='1']", timeout=15000)
            assert "v1" in page.inner_text("#diff-title")
        if tab == "margin":
            page.wait_for_function("document.getElementById('margin-note').textContent.includes('breaches')",
                                   timeout=60000)
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / f"views-{role}-{tab}.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollHeight") < 6000, tab
