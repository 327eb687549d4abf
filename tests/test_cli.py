"""The CLI through Typer's CliRunner and as a real process (exit codes, no tracebacks, --json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from margincal import __version__
from margincal.cli.app import app
from margincal.data.store import open_store
from margincal.margin.params import load

runner = CliRunner()


def test_help_lists_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("run", "ingest", "calibrate", "fetch"):
        assert cmd in r.output


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"margincal {__version__}"


def _bad_csv(tmp_path: Path) -> Path:
    p = tmp_path / "btc.csv"
    p.write_text("date,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,3\n2024-01-02,1,2,0.5,-3.2,3\n")
    return p


def test_bad_ingest_exits_2_with_one_clear_line(tmp_path):
    r = runner.invoke(app, ["ingest", str(_bad_csv(tmp_path)), "-i", "BTC-USDT", "-t", "1d",
                            "--store", str(tmp_path / "s.duckdb")])
    assert r.exit_code == 2
    assert "error: btc.csv line 3: close is -3.2; prices must be > 0" in r.stderr
    assert "Traceback" not in r.output + r.stderr


def test_bad_ingest_as_a_real_process_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "margincal.cli.app", "ingest", str(_bad_csv(tmp_path)),
                           "-i", "BTC-USDT", "-t", "1d", "--store", str(tmp_path / "s.duckdb")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: btc.csv line 3: close is -3.2; prices must be > 0"
    assert "Traceback" not in proc.stdout + proc.stderr


def test_ingest_json_and_idempotent(tmp_path, data_dir):
    store = str(tmp_path / "s.duckdb")
    args = ["ingest", str(data_dir / "sol_daily.csv"), "-i", "SOL-USDT", "-t", "1d", "--store", store, "--json"]
    first = json.loads(runner.invoke(app, args).stdout)
    second = json.loads(runner.invoke(app, args).stdout)
    assert first["rows_inserted"] == 2052 and second["rows_inserted"] == 0
    assert second["rows_already_present"] == 2052


@pytest.fixture(scope="module")
def ran_store(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    store, report = d / "m.duckdb", d / "report.html"
    r = runner.invoke(app, ["run", "--store", str(store), "--report", str(report), "--json"])
    assert r.exit_code == 0, r.output + r.stderr
    return store, report, json.loads(r.stdout)


def test_run_end_to_end(ran_store):
    store, report, out = ran_store
    assert out["version"] == 1
    names = {p["instrument"] for p in out["parameters"]}
    assert {"BTC-USDT", "ETH-USDT", "SOL-USDT", "LTC-USDT", "BTC-PERP", "ETH-PERP"} <= names
    assert len(names) == 12
    html = report.read_text()
    assert "plotly" in html and "BTC-PERP" in html and "<script" in html
    assert 'src="http' not in html  # plotly.js is inlined: the report opens offline
    # 12 instruments' history + one backtest chart per instrument (IM and MM on the same chart)
    # + the bracket curve beside the venues for each perpetual
    assert html.count("class='mc-fig'") == 26 and "Backtest of the published IM and MM" in html
    assert html.count("id='mc-plotly'") == 1 and report.stat().st_size < 5_000_000  # plotly.js once, compressed
    assert "BTC-PERP: published brackets beside the venues" in html and "hyperliquid btc" in html  # table_html shows names with spaces
    assert "Per-tier coverage of the published rule" in html and "MM breach" in html
    b = out["backtest"]["breaches"]
    assert {k: v["instruments"] for k, v in b.items()} == {"IM 1d": 10, "MM 1d": 10, "IM 1h": 2, "MM 1h": 2}
    # independent recount of the breach counts from the per-instrument rows
    rows = out["backtest"]["rows"]
    for rate in ("IM", "MM"):
        mine = [r for r in rows if r["rate"] == rate]
        assert len(mine) == 12
        assert sum(r["breaches"] for r in mine) == b[f"{rate} 1d"]["breaches"] + b[f"{rate} 1h"]["breaches"]
        assert sum(r["n_obs"] for r in mine) == b[f"{rate} 1d"]["n_obs"] + b[f"{rate} 1h"]["n_obs"]
    assert b["IM 1d"]["breach_rate"] == pytest.approx(b["IM 1d"]["breaches"] / b["IM 1d"]["n_obs"])
    with open_store(store, read_only=True) as c:
        p = load(c)
        assert p.version == 1 and p.provenance["model"] == "fhs" and p.provenance["level"] == 0.99
        from margincal.data.store import latest_result, load_bars

        assert latest_result(c, "backtest")["params"]["source"] == "margincal run"
        btc_bars = load_bars(c, "BTC-USDT", "1d")
        btc_ref = load_bars(c, "BTC-USDT", "1h")  # the coin's reference series (item 3)
        for ip in p.params.values():
            assert 0 < ip.mm_rate <= ip.im_rate <= 1
            # margin v2: the headline rates are the curve at the reference size, brackets from the curve
            ref = next(c for c in ip.details["curve"] if c["notional"] == 1e6)
            assert (ref["im_rate"], ref["mm_rate"]) == (ip.im_rate, ip.mm_rate)
            assert ip.im_rate >= 1.5 * ip.mm_rate - 0.0005 - 1e-12  # IM keeps the documented gap above MM
            tiers = ip.details["tiers"]
            assert len(tiers) == 10 and tiers[0]["max_leverage"] >= tiers[-1]["max_leverage"]
            assert ip.details["horizon_hours"] == pytest.approx(ref["h_mm_hours"])
        # issue 15 item 3: one tail risk per coin, from its most granular then longest stored series
        refs = {i: p.params[i].details["underlying_risk"]["reference"] for i in ("BTC-USDT", "BTC-PERP", "DOGE-USDT")}
        assert refs == {"BTC-USDT": "BTC-USDT 1h", "BTC-PERP": "BTC-USDT 1h", "DOGE-USDT": "DOGE-USDT 1d"}
    # independent recount for BTC: the causal margin path against the loss of the losing side, bar by bar
    import numpy as np

    from margincal.config import CalibrationSettings
    from margincal.margin.published import published_history, underlying_risk

    und = underlying_risk(btc_ref, "BTC-USDT", "1h", CalibrationSettings())
    path = published_history(btc_bars, "1d", CalibrationSettings(), underlying=und)
    for rate, col in (("IM", "im_rate"), ("MM", "mm_rate")):
        row = next(r for r in out["backtest"]["rows"] if r["instrument"] == "BTC-USDT" and r["rate"] == rate)
        p = path.loc[row["start"]:row["end"]]
        loss = np.maximum(-np.expm1(p["ret"]), np.expm1(p["ret"]))
        assert p[col].notna().all() and len(p) == row["n_obs"]
        assert int((loss > p[col]).sum()) == row["breaches"]
    # the published numbers are the last row of the history that was backtested
    assert p["im_rate"].iloc[-1] > 0
    b = out["backtest"]["breaches"]
    assert set(b) == {"IM 1d", "MM 1d", "IM 1h", "MM 1h"}
    assert b["MM 1d"]["breaches"] > b["IM 1d"]["breaches"] > 0
    # per-tier intrabar backtest: recount BTC-USDT's first MM tier from the bars, written out here
    from margincal.margin.published import published_curve_path

    row = next(r for r in out["backtest"]["tiers"] if r["instrument"] == "BTC-USDT" and r["rate"] == "MM")
    assert row["horizon_bars"] == 1 and row["tier_cap"] == 5e4
    cp = published_curve_path(btc_bars, "1d", CalibrationSettings(), underlying=und)
    c, hi, lo = (btc_bars[k].to_numpy() for k in ("close", "high", "low"))
    exc = np.maximum(1 - lo[1:] / c[:-1], hi[1:] / c[:-1] - 1)
    mm = cp.mm[:-1, 0]
    ok = np.isfinite(mm)
    assert row["n_obs"] == int(ok.sum()) and row["breaches"] == int((exc[ok] > mm[ok]).sum())


def test_run_again_reuses_store(ran_store):
    store, report, _ = ran_store
    r = runner.invoke(app, ["run", "--store", str(store), "--report", str(report), "--json"])
    out = json.loads(r.stdout)
    # nothing new to ingest, and the same bars give the same parameters: publish() keeps the version in force
    # (margincal.margin.params.publish: an identical result writes nothing)
    assert out["rows_ingested"] == 0 and out["version"] == 1
    assert [p["im_rate"] for p in out["parameters"]] == [p["im_rate"] for p in _["parameters"]]


def test_calibrate_other_model_json(ran_store):
    store, _, _ = ran_store
    r = runner.invoke(app, ["calibrate", "--model", "hs", "-i", "BTC-USDT", "--horizon", "3d", "--store",
                            str(store), "--json"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["provenance"]["model"] == "hs" and out["provenance"]["horizon_hours"] == 72
    assert [x["instrument"] for x in out["rows"]] == ["BTC-USDT"]


def test_calibrate_errors(ran_store):
    store, _, _ = ran_store
    r = runner.invoke(app, ["calibrate", "--model", "nope", "--store", str(store)])
    assert r.exit_code == 2 and "is not one of" in r.stderr
    r = runner.invoke(app, ["calibrate", "-i", "NOPE-USDT", "--store", str(store)])
    assert r.exit_code == 2 and "no bars stored for NOPE-USDT" in r.stderr
    r = runner.invoke(app, ["calibrate", "--level", "1.5", "--store", str(store)])
    assert r.exit_code == 2 and "level is 1.5" in r.stderr
