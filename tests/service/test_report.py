"""`margincal report`: one self-contained HTML file from whatever the store holds."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from margincal.cli.app import app
from margincal.data.store import connect, save_result


def _report(store: Path, out: Path, *extra: str) -> dict[str, Any]:
    r = CliRunner().invoke(app, ["report", "--store", str(store), "--out", str(out), "--json", *extra])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_report_sections_say_how_to_produce_missing_results(seeded: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    store, _ = seeded
    out = tmp_path / "r.html"
    meta = _report(store, out)
    html = out.read_text(encoding="utf-8")
    status = {s["section"]: s for s in meta["sections"]}
    # the seeded store's backtest does not name a version nor the published rule: it is no evidence of v1
    assert meta["version"] == 1 and not status["Backtests"]["has_results"]
    assert "No backtest of version 1 is stored" in html
    assert not status["Liquidation cascades"]["has_results"]
    assert "margincal stress --margin published --store STORE" in html and "margincal cascade --store STORE" in html
    assert status["Price, forecast volatility and margin over time"]["figures"] == 2  # BTC-USDT, ETH-USDT
    # self-contained: plotly.js is embedded once (compressed), nothing is loaded from the network
    assert len(re.findall(r"<script[^>]+src=", html)) == 0
    from margincal.reports.html import figures_of

    assert html.count("id='mc-plotly'") == 1 and html.count("class='mc-fig'") == sum(
        s["figures"] for s in meta["sections"]) == len(figures_of(html))
    assert len(html) > 1_500_000  # plotly.min.js gzip + base64 alone is ~2 MB
    assert "hash chain: intact" in html


def test_report_draws_the_versions_backtest_and_stress(seeded: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    store, _ = seeded
    idx = [f"2024-01-0{d}T00:00:00+00:00" for d in range(1, 6)]
    con = connect(store)
    try:
        save_result(con, "bt-2", "backtest", {"levels": [0.99], "models": ["published"], "version": 1}, {
            "summary": [{"instrument": "BTC-USDT", "model": "published", "breaches": 1}],
            "rows": [{"instrument": "BTC-USDT", "model": "published", "n_obs": 5, "breaches": 1,
                      "breach_rate": 0.2, "kupiec_p": 0.03, "zone": "red"}],
            "series": [{"instrument": "BTC-USDT", "model": "published", "policy": "raw", "level": 0.99,
                        "horizon_hours": 24.0, "index": idx, "margin": [0.05] * 5,
                        "loss_long": [0.01, 0.07, 0.0, 0.02, 0.0], "loss_short": [0.0] * 5}]})
        save_result(con, "st-1", "stress", {"scenario": "all", "margin": "published", "version": 1}, {
            "summary": [{"scenario": "covid-2020", "total_loss": 1e6, "total_shortfall": 2e5, "cover1": 1e5,
                         "cover2": 1.5e5}]})
        # stored later, but of no version: the report of v1 keeps showing bt-2, not whatever ran last
        save_result(con, "bt-3", "backtest", {"levels": [0.99], "models": ["ewma"]}, {"rows": []})
    finally:
        con.close()
    out = tmp_path / "r.html"
    meta = _report(store, out, "--no-charts")
    status = {s["section"]: s for s in meta["sections"]}
    assert status["Backtests"]["has_results"] and status["Stress tests"]["figures"] == 1  # the heatmap
    assert "Price, forecast volatility and margin over time" not in status
    html = out.read_text(encoding="utf-8")
    assert "covid-2020" in html and "1,000,000" in html  # the stress summary table, thousands separators
    assert "run bt-2" in html and "st-1" in html and "bt-3" not in html
    assert "20.00%" in html  # breach rate in percent


def test_report_on_an_empty_store(tmp_path: Path) -> None:
    store = tmp_path / "empty.duckdb"
    connect(store).close()
    out = tmp_path / "r.html"
    meta = _report(store, out)
    assert all(s["figures"] == 0 for s in meta["sections"])
    html = out.read_text(encoding="utf-8")
    assert "No parameter set is published yet" in html and "margincal run" in html


def test_report_on_a_missing_store_is_a_one_line_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["report", "--store", str(tmp_path / "nope.duckdb"), "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 2 and "does not exist" in r.output and "Traceback" not in r.output
