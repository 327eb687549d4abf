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
    assert status["Backtests"]["has_results"]  # the seeded store holds a backtest result
    assert not status["Stress tests"]["has_results"] and not status["Liquidation cascades"]["has_results"]
    assert "margincal stress --store STORE" in html and "margincal cascade --store STORE" in html
    assert status["Price, forecast volatility and margin over time"]["figures"] == 2  # BTC-USDT, ETH-USDT
    # self-contained: plotly.js is inlined once, nothing is loaded from the network
    assert len(re.findall(r"<script[^>]+src=", html)) == 0
    assert html.count("Plotly.newPlot") >= 2
    assert len(html) > 3_000_000  # plotly.min.js alone is ~4.6 MB
    assert "hash chain: intact" in html


def test_report_draws_stored_backtest_and_stress_figures(seeded: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    store, _ = seeded
    idx = [f"2024-01-0{d}T00:00:00+00:00" for d in range(1, 6)]
    con = connect(store)
    try:
        save_result(con, "bt-2", "backtest", {"levels": [0.99]}, {
            "summary": [{"instrument": "BTC-USDT", "model": "fhs", "breaches": 1}],
            "rows": [{"instrument": "BTC-USDT", "model": "fhs", "coverage": 0.99, "breaches": 1}],
            "series": [{"instrument": "BTC-USDT", "model": "fhs", "policy": "raw", "level": 0.99, "horizon_hours": 24.0,
                        "index": idx, "margin": [0.05] * 5, "loss_long": [0.01, 0.07, 0.0, 0.02, 0.0],
                        "loss_short": [0.0] * 5}]})
        save_result(con, "st-1", "stress", {"scenario": "all"}, {
            "summary": [{"scenario": "covid-2020", "total_loss": 1e6, "total_shortfall": 2e5, "cover1": 1e5,
                         "cover2": 1.5e5}]})
    finally:
        con.close()
    out = tmp_path / "r.html"
    meta = _report(store, out, "--no-charts")
    status = {s["section"]: s for s in meta["sections"]}
    assert status["Backtests"]["figures"] == 1 and status["Stress tests"]["figures"] == 1
    assert "Price, forecast volatility and margin over time" not in status
    html = out.read_text(encoding="utf-8")
    assert "covid-2020" in html  # the stress summary table
    assert "run bt-2" in html and "run st-1" in html


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
