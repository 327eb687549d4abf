"""`margincal backtest --published`: the per-tier validation of the published margin v2 rule (issue 15)."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from margincal import datasets
from margincal.cli.app import app
from margincal.config import CalibrationSettings
from margincal.margin.published import published_curve_path


def test_backtest_published_json_recounts(tmp_path):
    r = CliRunner().invoke(app, ["backtest", "--published", "-i", "DOGE-USDT", "--json",
                                 "--store", str(tmp_path / "none.duckdb")])
    assert r.exit_code == 0, r.output[-2000:]
    out = json.loads(r.stdout)
    rows = [x for x in out["rows"] if x["bars"] == "1d"]
    assert {x["instrument"] for x in rows} == {"DOGE-USDT"} and len(rows) == 20
    # the largest tier's MM, recounted from the bundled bars: adverse excursion over its horizon in days
    last = next(x for x in rows if x["rate"] == "MM" and x["tier_cap"] == 1e9)
    bars = datasets.load_daily("DOGE")
    p = published_curve_path(bars, "1d", CalibrationSettings())
    h = last["horizon_bars"]
    assert h == max(1, int(np.ceil(np.nanmedian(p.h_mm[:, -1]) / 24 - 1e-9)))
    c, hi, lo = (bars[k].to_numpy() for k in ("close", "high", "low"))
    exc = np.full(len(c), np.nan)
    for t in range(len(c) - h):
        exc[t] = max(1 - lo[t + 1: t + h + 1].min() / c[t], hi[t + 1: t + h + 1].max() / c[t] - 1)
    m = p.mm[:, -1]
    ok = np.flatnonzero(np.isfinite(m) & np.isfinite(exc))[::h]
    assert last["n_obs"] == ok.size and last["breaches"] == int((exc[ok] > m[ok]).sum())
    mm = [x for x in out["rows"] if x["rate"] == "MM"]
    assert out["targets"]["mm_tiers_within_1pct"] == [sum(x["breach_rate"] <= 0.01 for x in mm), len(mm)]
