"""`margincal backtest --published`: the per-tier validation of the published margin v2 rule (issue 15)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from margincal import datasets
from margincal.cli.app import app
from margincal.config import CalibrationSettings
from margincal.errors import DataError
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


def test_z2_null_sampler_is_causal_and_matches_the_fhs_filter():
    from margincal.backtest.validation import fhs_null_sampler
    from margincal.units import Decay
    from margincal.vol.ewma import ewma_variance_reference

    rng = np.random.default_rng(3)
    r = 0.01 * rng.standard_t(4, 400)
    sim = fhs_null_sampler(r, 24.0, 0.94)
    x = sim(np.random.default_rng(7))
    assert np.all(np.isnan(x[:31])) and np.all(np.isfinite(x[31:]))
    # every draw is sigma_i (the loop EWMA from returns before i) times a residual held before i
    sig = np.sqrt(ewma_variance_reference(r, Decay(per_day=0.94).for_bars(24.0), 30))
    for i in (31, 100, 399):
        z = r[30:i] / sig[30:i]
        cand = np.maximum(-np.expm1(sig[i] * z), np.expm1(sig[i] * z))
        assert np.min(np.abs(cand - x[i])) < 1e-12
    # changing returns at or after i leaves draws before i (same random numbers) unchanged
    r2 = r.copy()
    r2[200:] *= 5
    y = fhs_null_sampler(r2, 24.0, 0.94)(np.random.default_rng(7))
    np.testing.assert_array_equal(x[:201], y[:201])


def test_published_z2_has_a_simulated_pvalue_that_can_reject():
    from margincal.backtest.stats import z2_test
    from margincal.backtest.validation import fhs_null_sampler
    from margincal.risk.models import make_model
    from margincal.units import Decay

    rng = np.random.default_rng(11)
    r = 0.02 * rng.standard_t(5, 1500)
    path = make_model("fhs", lam=Decay(per_day=0.94)).fit_path(r, horizon=24.0, level=0.99, refit=1, bar_hours=24.0)
    v, e = path["var"].to_numpy()[:-1], path["es"].to_numpy()[:-1]
    sim = fhs_null_sampler(r, 24.0, 0.94)
    ok = np.isfinite(v) & np.isfinite(e) & np.isfinite(sim(np.random.default_rng(0)))
    ok[:250] = False
    loss = np.maximum(-np.expm1(r), np.expm1(r))
    p_null = z2_test(loss[ok], v[ok], e[ok], 0.99, simulate=lambda g: sim(g)[ok], n_sims=200, seed=1).pvalue
    # the same forecasts against losses drawn twice as wide: the ES is too small and Z2 must reject
    wide = np.maximum(-np.expm1(2 * r), np.expm1(2 * r))
    p_alt = z2_test(wide[ok], v[ok], e[ok], 0.99, simulate=lambda g: sim(g)[ok], n_sims=200, seed=1).pvalue
    assert p_null > 0.05 and p_alt < 0.01


def test_crash_day_rows_recount_engine_and_venue_breaches_by_hand():
    from margincal.backtest.validation import crash_day_rows, crash_summary
    from margincal.margin import presets

    bars = datasets.load_daily("BTC")
    p = published_curve_path(bars, "1d", CalibrationSettings())
    rows = crash_day_rows(bars, p, "BTC-USDT", "1d", days=[("2020-03-12", "covid")], tiers=[1e6, 1e9])
    assert [r["tier_cap"] for r in rows] == [1e6, 1e9]
    t = int(np.flatnonzero(bars.index == pd.Timestamp("2020-03-12", tz="UTC"))[0]) - 1  # the close before the day
    c, hi, lo = (bars[k].to_numpy() for k in ("close", "high", "low"))
    for r in rows:
        j = p.column(r["tier_cap"])
        h = max(1, int(np.ceil(p.h_mm[t, j] / 24 - 1e-9)))
        exc = max(1 - lo[t + 1: t + h + 1].min() / c[t], hi[t + 1: t + h + 1].max() / c[t] - 1)
        assert r["horizon_bars"] == h and r["closeouts"] == 1
        assert r["worst_excursion"] == pytest.approx(exc) and r["engine_mm"] == p.mm[t, j]
        assert r["engine_breaches"] == int(exc > p.mm[t, j])
        vm = float(np.ravel(presets.get("binance_btcusdt").margin_rate(np.array([r["tier_cap"]]), price=c[t]).mm)[0])
        assert r["binance_btcusdt_mm"] == pytest.approx(vm) and r["binance_btcusdt_breaches"] == int(exc > vm)
    # 2020-03-12 fell about 40% from the previous close: every margin of the 1M tier is breached
    assert rows[0]["worst_excursion"] > 0.35 and rows[0]["engine_breaches"] == 1
    pooled = crash_summary(rows + [{**rows[0], "day": "2020-03-13", "closeouts": 1, "engine_breaches": 0,
                                    "worst_excursion": 0.01}])
    assert pooled[0]["days"] == 2 and pooled[0]["closeouts"] == 2 and pooled[0]["day"] == "2020-03-12"


def test_crash_day_rows_on_five_minute_bars_use_the_last_closed_hour():
    from margincal.backtest.validation import crash_day_rows

    bars = datasets.load_hourly("BTC", "perpetual")
    fine = datasets.load_intraday("BTC", "5m")
    p = published_curve_path(bars, "1h", CalibrationSettings(), funding=datasets.load_funding("BTC"))
    rows = crash_day_rows(bars, p, "BTC-PERP", "1h", days=[("2025-10-10", "x")], tiers=[5e4], fine=fine,
                          fine_label="5m")
    assert len(rows) == 1 and rows[0]["closeouts"] == 288 and rows[0]["bars"] == "5m"
    # the worst 5-minute close-out of the day: 8.87% (docs/margin_v2.md, 21:10 UTC)
    assert rows[0]["worst_excursion"] == pytest.approx(0.0887, abs=5e-4)


def test_run_prints_each_tier_at_its_own_horizon():
    from margincal.cli.run import tier_validation_rows

    rows = [{"instrument": "X", "bars": "1h", "rate": "MM", "tier_cap": 5e4, "horizon_hours": 0.02, "n_obs": 1000,
             "breaches": 30, "breach_rate": 0.03, "red": 2, "yellow": 5},
            {"instrument": "X", "bars": "1h", "rate": "MM", "tier_cap": 1e9, "horizon_hours": 20.0, "n_obs": 50,
             "breaches": 0, "breach_rate": 0.0}]
    (r,) = tier_validation_rows(rows, 0.99)
    assert r["tiers <= target"] == "1 of 2" and r["breach rate"] == "2.86%"  # 30 / 1,050
    assert r["worst tier"] == "50,000: 3.00%" and r["horizons"] == "0.02-20 h"
    assert r["red / yellow 250-windows"] == "2 / 5"


def _bars(ts: pd.DatetimeIndex, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, ts.size)))
    hi = c * np.exp(np.abs(rng.normal(0, 0.001, ts.size)))
    lo = c * np.exp(-np.abs(rng.normal(0, 0.001, ts.size)))
    return pd.DataFrame({"open": c, "high": hi, "low": lo, "close": c, "volume": 1.0}, index=ts)


def _gappy_minutes() -> pd.DatetimeIndex:
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    a = pd.date_range(t0, periods=600, freq="1min")
    b = pd.date_range(t0 + pd.Timedelta(minutes=603), periods=400, freq="1min")  # 3 missing minutes
    c = pd.date_range(t0 + pd.Timedelta(days=2), periods=900, freq="1min")  # a 2-day gap
    return a.append(b).append(c).as_unit("ns")


def test_gapless_excursion_never_spans_a_gap_of_the_fine_bars():
    from margincal.backtest.intrabar import adverse_excursion_reference
    from margincal.backtest.validation import gapless_excursion

    fine = _bars(_gappy_minutes(), 1)
    got = gapless_excursion(fine, 7, 1 / 60)
    ts = fine.index
    want = np.full(len(fine), np.nan)
    for s, e in ((0, 600), (600, 1000), (1000, 1900)):  # contiguous stretches, each on its own
        want[s:e] = adverse_excursion_reference(fine.iloc[s:e], 7)["both"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=0)
    # the last 7 rows of each stretch have no whole window; nothing else is dropped
    assert np.isnan(got).sum() == 21 and ts[599] + pd.Timedelta(minutes=4) == ts[600]


class _Path:
    """A published-curve-like history with one tier: MM/IM and their horizons per hourly bar."""

    def __init__(self, n: int, h_hours: float, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.bar_hours, self.caps = 1.0, np.array([1e6])
        self.mm = rng.uniform(0.002, 0.006, (n, 1))
        self.im = 1.5 * self.mm
        self.h_mm = np.full((n, 1), h_hours)
        self.h_im = np.full((n, 1), h_hours + 1 / 60)

    def column(self, notional: float) -> int:
        return 0


def _reference_fine_row(hourly: pd.DataFrame, margin: np.ndarray, fine: pd.DataFrame, hb: int,
                        bar_minutes: int) -> tuple[int, int]:
    """Loop: the rate of the last CLOSED hour at each fine close; the excursion over the next hb fine bars when
    they are consecutive; every hb-th such close-out."""
    step = pd.Timedelta(minutes=bar_minutes)
    ts = fine.index
    c, hi, lo = fine["close"].to_numpy(), fine["high"].to_numpy(), fine["low"].to_numpy()
    closes = list(hourly.index + pd.Timedelta(hours=1))
    n_valid, n, b = 0, 0, 0
    for i in range(len(fine)):
        known = [j for j, t in enumerate(closes) if t <= ts[i] + step]
        if not known or i + hb >= len(fine) or ts[i + hb] - ts[i] != hb * step:
            continue
        n_valid += 1
        if (n_valid - 1) % hb:
            continue
        loss = max(1 - lo[i + 1: i + hb + 1].min() / c[i], hi[i + 1: i + hb + 1].max() / c[i] - 1)
        n += 1
        b += int(loss > margin[known[-1]])
    return n, b


def test_fine_rows_judge_each_tier_on_bars_that_resolve_it_and_recount():
    from margincal.backtest.validation import fine_rows

    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    hourly = _bars(pd.date_range(t0 - pd.Timedelta(hours=3), periods=40, freq="1h").as_unit("ns"), 2)
    one = _bars(_gappy_minutes()[:1000], 3)  # 1,000 minutes over ~17 h
    five = _bars(pd.date_range(t0, periods=400, freq="5min").as_unit("ns"), 4)  # 2,000 minutes
    sets = [("1m", one), ("5m", five)]
    for h_min, want_data in ((3.0, "1m"), (20.0, "5m"), (0.5, "1m")):
        p = _Path(len(hourly), h_min / 60, 5)
        rows = fine_rows(hourly, p, "X-PERP", "1h", sets)
        mm = next(r for r in rows if r["rate"] == "MM")
        # 3 min: only the 1-minute bars resolve it; 20 min: both do, the 5-minute file covers more time;
        # 0.5 min: none does, the finest is used (one bar, conservative)
        assert mm["data"] == want_data, (h_min, mm["data"])
        fine, bm = (one, 1) if want_data == "1m" else (five, 5)
        hb = max(1, int(np.ceil(h_min / bm - 1e-9)))
        assert mm["bars_tested"] == hb and mm["bars"] == "1h"
        assert (mm["n_obs"], mm["breaches"]) == _reference_fine_row(hourly, p.mm[:, 0], fine, hb, bm)
    # a tier closed out over more than the own bar is left to the whole-bar rows
    assert fine_rows(hourly, _Path(len(hourly), 1.5, 5), "X-PERP", "1h", sets) == []


def test_finest_rows_and_item5_targets_replace_only_the_short_tiers():
    from margincal.backtest.validation import finest_rows, item5_targets

    whole = [{"instrument": "X", "tier_cap": c, "rate": r, "breach_rate": 0.3 if c < 1e7 else 0.004,
              "red": 5 if c < 1e7 else 0, "ind_p": 0.5, "avg_over_static": 1.1} for c in (1e6, 1e8) for r in ("MM", "IM")]
    fine = [{"instrument": "X", "tier_cap": 1e6, "rate": r, "data": "1m", "breach_rate": 0.002, "red": 0,
             "ind_p": 0.2, "avg_over_static": 0.9} for r in ("MM", "IM")]
    fin = finest_rows(whole, fine)
    assert [r.get("data") for r in fin] == ["1m", "1m", None, None]
    apc = [{"max_30d_rise_emir_a": 1.0, "max_30d_rise_off": 1.5}]
    assert item5_targets(whole, apc, 0.99)["mm_tiers_within_1pct"] == (1, 2)
    t = item5_targets(fin, apc, 0.99)
    assert t["mm_tiers_within_1pct"] == (2, 2) and t["instruments_without_red_window"] == (1, 1)
    assert t["im_tiers_cheaper_than_static"] == (1, 2) and t["instruments_apc_halves_30d_rise"] == (0, 1)


def test_load_minute_reads_every_stretch_without_filling_gaps():
    one = datasets.load_minute("BTC-PERP", "1m", "spot")
    five = datasets.load_minute("eth", "5m", "perpetual")
    assert len(one) == 653_764 and len(five) == 340_727  # row counts of the shared files' README
    gaps = np.diff(one.index.asi8) // 60_000_000_000
    assert gaps.min() == 1 and (gaps > 1).sum() == 17  # 5 gaps inside stretches + 12 between them
    assert one.loc["2024-08-05", "low"].min() == 49000.0  # Binance spot low of the day
    with pytest.raises(DataError, match="no bundled 1m perpetual file"):
        datasets.load_minute("BTC", "1m", "perpetual")


def test_rate_row_at_is_unit_safe():
    from margincal.backtest.validation import rate_row_at

    hours = pd.date_range("2024-01-01", periods=5, freq="1h", tz="UTC")
    minutes = pd.date_range("2024-01-01 00:58", periods=4, freq="1min", tz="UTC")
    want = [-1, 0, 0, 0]  # closes 00:59 (no hour closed yet), 01:00, 01:01, 01:02 -> the 00:00 bar's rate
    for a in ("s", "us", "ns"):
        for b in ("us", "ns"):
            assert list(rate_row_at(hours.as_unit(a), 1.0, minutes.as_unit(b), 1 / 60)) == want, (a, b)


def test_apc_tradeoff_agrees_with_the_published_validation():
    from margincal.backtest.validation import apc_tradeoff, validate_published

    rows = apc_tradeoff(names=("off", "emir_a"), instruments=["DOGE-USDT"], timeframes=("1d",))
    assert [r["apc"] for r in rows] == ["off", "emir_a"]
    off, a = rows
    assert off["rise_over_off"] == 1.0 and off["avg_im_over_off"] == 1.0
    v = validate_published(instruments=["DOGE-USDT"], timeframes=("1d",))
    (ap,) = v["apc"]  # the same rule reached through validate_published's own loop
    assert a["max_30d_rise"] == pytest.approx(ap["max_30d_rise_emir_a"], rel=1e-12)
    assert off["max_30d_rise"] == pytest.approx(ap["max_30d_rise_off"], rel=1e-12)
    assert a["avg_im"] == pytest.approx(ap["avg_im_emir_a"], rel=1e-12)
    mm = next(r for r in v["rows"] if r["rate"] == "MM" and r["tier_cap"] == 1e6)
    assert a["mm_breach_rate"] == mm["breach_rate"]
    assert a["rise_over_off"] == pytest.approx(a["max_30d_rise"] / off["max_30d_rise"])
