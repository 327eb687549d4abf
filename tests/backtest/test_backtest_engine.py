"""The rolling engine: breach counting, overlap handling, no look-ahead, fast == naive reference."""

from __future__ import annotations

import csv
import math

import numpy as np
import pandas as pd
import pytest

from margincal.backtest import (
    STRESS_EVENTS,
    BacktestWarning,
    FamilyPath,
    PathModel,
    StaticTunedPolicy,
    crash_positions,
    horizon_log_returns,
    load_returns,
    procyclicality,
    run_backtest,
)
from margincal.backtest.procyclicality import max_increase, trailing_rms
from margincal.config import sample_data_dir
from margincal.errors import ConfigError, DataError
from margincal.risk.historical import FilteredHistoricalSimulation, HistoricalSimulation


class ConstantPath(PathModel):
    """A margin of ``rate`` on every bar after the first (for constructed breach counts)."""

    name = "const"

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def var_paths(self, returns, *, side_level, horizon_bars, bar_hours, index=None):  # type: ignore[no-untyped-def]
        v = np.full(len(returns), self.rate)
        v[0] = np.nan
        return v, v


def daily(values: np.ndarray, start: str = "2021-01-01", name: str = "X") -> pd.Series:
    return pd.Series(values, index=pd.date_range(start, periods=len(values), freq="D", tz="UTC"), name=name)


def constructed() -> pd.Series:
    r = np.zeros(40)
    r[10] = math.log(1.08)   # +8%: the short side loses 8%
    r[20] = math.log(0.93)   # -7%: the long side loses 7%
    r[30] = math.log(1.03)   # +3%: inside a 5% margin
    return daily(r)


def test_horizon_log_returns_and_losses() -> None:
    r = np.array([0.1, -0.2, 0.05, 0.3])
    R = horizon_log_returns(r, 2)
    np.testing.assert_allclose(R[:3], [-0.1, -0.15, 0.35])
    assert np.isnan(R[3])
    np.testing.assert_array_equal(horizon_log_returns(r, 1), r)


def test_breach_counting_on_a_constructed_series_one_day() -> None:
    res = run_backtest({"X": constructed()}, models=[ConstantPath(0.05)], policies=["raw"], min_history=5)
    (p,) = res.paths
    # evaluation bars 5..39: 35 days; breaches on bar 10 (short loses 8%) and bar 20 (long loses 7%)
    assert p.stats.n_obs == 35
    assert list(p.index[p.breach]) == [p.index[5], p.index[15]]  # positions 10 and 20 of the data
    assert (p.stats.n_breaches, p.stats.n_long_breaches, p.stats.n_short_breaches) == (2, 1, 1)
    assert p.loss_short[5] == pytest.approx(0.08) and p.loss_long[15] == pytest.approx(0.07)
    assert p.stats.n_test == 35 and p.stats.kupiec.n_breaches == 2
    assert p.stats.breach_rate == pytest.approx(2 / 35)


def test_overlapping_horizon_counts_all_windows_tests_non_overlapping() -> None:
    res = run_backtest({"X": constructed()}, models=[ConstantPath(0.05)], policies=["raw"], min_history=5,
                       horizons=[48.0])
    (p,) = res.paths
    assert p.horizon_bars == 2
    # 2-day windows starting at 5..38 (34 of them); each shock is in two windows: starts 9, 10, 19, 20
    assert p.stats.n_obs == 34
    starts = [int(i) + 5 for i in np.flatnonzero(p.breach)]
    assert starts == [9, 10, 19, 20] and p.stats.n_breaches == 4
    # tests on the non-overlapping windows starting at 5, 7, ..., 37 (17 of them): breaches at 9 and 19
    assert p.stats.n_test == 17 and p.stats.kupiec.n_breaches == 2
    assert p.stats.christoffersen.n_obs == 17 and p.stats.traffic_light.n_obs == 17


def test_static_policy_breach_rate_is_one_minus_level_in_sample() -> None:
    r = np.random.default_rng(0).standard_t(3, 501) * 0.04
    res = run_backtest({"X": daily(r)}, models=[ConstantPath(0.05)], policies=["static"], min_history=1)
    (p,) = res.paths
    assert p.model == "-" and p.stats.n_obs == 500
    # inverted_cdf 99% quantile of 500 losses is the 495th smallest: exactly 5 losses exceed it
    assert p.stats.n_breaches == 5
    assert np.ptp(p.margin) == 0
    assert StaticTunedPolicy.in_sample


def test_fast_engine_equals_naive_refit_every_day() -> None:
    r = np.random.default_rng(1).standard_t(4, 320) * 0.03
    data = {"X": daily(r)}
    kw = {"policies": ["raw", "static", "apc:buffer25"], "min_history": 60, "horizons": [24.0, 72.0]}
    fast = run_backtest(data, models=[FamilyPath("fhs"), FamilyPath("hs", window=100)], **kw)
    naive = run_backtest(data, models=[FamilyPath(FilteredHistoricalSimulation(), fast=False),
                                       FamilyPath(HistoricalSimulation(window=100), fast=False)], **kw)
    names = {"fhs": "risk:fhs", "hs": "risk:hs", "-": "-"}
    by_key = {(p.model, p.policy, p.horizon_hours): p for p in naive.paths}
    assert len(fast.paths) == len(naive.paths) == 2 * (2 * 2 + 1)
    for p in fast.paths:
        q = by_key[(names[p.model], p.policy, p.horizon_hours)]
        # the same model through its one-pass path and its refit loop: equal up to float rounding (1e-15)
        np.testing.assert_allclose(p.margin, q.margin, rtol=1e-12, atol=0)
        a, b = p.row(), q.row()
        for k in a:
            if k == "model":
                continue
            if isinstance(a[k], float) and not (math.isnan(a[k]) and math.isnan(b[k])):
                assert a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-12), k
            elif not isinstance(a[k], float):
                assert a[k] == b[k], k


def test_changing_future_data_never_changes_past_margins_in_the_engine() -> None:
    r = np.random.default_rng(2).standard_t(4, 400) * 0.03
    cut = 300
    r2 = r.copy()
    r2[cut:] = np.random.default_rng(3).normal(0.2, 0.3, r.size - cut)
    pols = ["raw", "apc:buffer25", "apc:floor", "apc:slowdown"]
    a = run_backtest({"X": daily(r)}, models=["fhs", "normal", "cf"], policies=pols, min_history=100)
    b = run_backtest({"X": daily(r2)}, models=["fhs", "normal", "cf"], policies=pols, min_history=100)
    assert len(a.paths) == 12
    for p, q in zip(a.paths, b.paths, strict=True):
        k = int(np.searchsorted(p.index, daily(r).index[cut]))  # evaluation position of bar `cut`
        np.testing.assert_array_equal(p.margin[: k + 1], q.margin[: k + 1], err_msg=f"{p.model}/{p.policy}")
        assert not np.array_equal(p.margin, q.margin)  # the future did change later margins


def test_all_models_share_the_evaluation_sample() -> None:
    r = np.random.default_rng(4).normal(0, 0.03, 300)
    res = run_backtest({"X": daily(r)}, models=["fhs", "hs", FamilyPath("normal", sigma="sample")], policies=["raw"],
                       min_history=10)
    starts = {p.index[0] for p in res.paths}
    assert len(starts) == 1 and res.paths[0].stats.n_obs == 300 - 41  # FHS needs 41 returns (seed 30 + 11)


def test_engine_rejects_bad_configuration() -> None:
    s = {"X": daily(np.random.default_rng(5).normal(0, 0.02, 100))}
    with pytest.raises(ConfigError, match="whole number"):
        run_backtest(s, models=["normal"], policies=["raw"], horizons=[36.0])
    with pytest.raises(ConfigError, match="duplicates"):
        run_backtest(s, models=["normal", "normal"], policies=["raw"])
    with pytest.raises(ConfigError, match="level"):
        run_backtest(s, models=["normal"], policies=["raw"], levels=[1.2])
    with pytest.raises(ConfigError, match="unknown policy"):
        run_backtest(s, models=["normal"], policies=["nope"])
    with pytest.raises(DataError):
        run_backtest({}, models=["normal"])
    with pytest.warns(BacktestWarning, match="no evaluation bars"):
        res = run_backtest(s, models=["normal"], policies=["raw"], min_history=500)
    assert res.paths == ()


# ---------------------------------------------------------------- procyclicality


def test_procyclicality_metrics_by_hand() -> None:
    m = np.array([0.1, 0.2, 0.4, 0.2, 0.1])
    loss = np.array([0.05, 0.3, 0.1, 0.2, 0.0])
    rv = np.array([1.0, 2.0, 4.0, 2.0, 1.0])
    p = procyclicality(m, loss, rv)
    assert p.peak_to_trough == pytest.approx(4.0)
    assert p.max_1d_increase == pytest.approx(1.0)          # 0.1 -> 0.2 and 0.2 -> 0.4
    assert p.max_30d_increase == 0.0                         # fewer than 31 bars
    assert p.avg_margin == pytest.approx(0.2)
    assert p.avg_excess == pytest.approx((0.05 + 0 + 0.3 + 0 + 0.1) / 5)
    assert p.avg_shortfall == pytest.approx((0 + 0.1 + 0 + 0 + 0) / 5)
    assert p.corr_vol == pytest.approx(1.0) and p.elasticity == pytest.approx(1.0)  # m = 0.1 * rv


def test_elasticity_and_constant_margin() -> None:
    rv = np.exp(np.random.default_rng(6).normal(0, 0.5, 200))
    p = procyclicality(0.2 * np.sqrt(rv), np.zeros(200), rv)
    assert p.elasticity == pytest.approx(0.5)
    c = procyclicality(np.full(200, 0.1), np.zeros(200), rv)
    assert (c.corr_vol, c.elasticity, c.peak_to_trough, c.max_1d_increase) == (0.0, 0.0, 1.0, 0.0)


def test_max_increase_over_30_days() -> None:
    m = np.ones(40)
    m[35:] = 3.0
    assert max_increase(m, 30) == pytest.approx(2.0)       # m[35] / m[5] - 1
    assert max_increase(m[::-1], 30) == 0.0                # only falls
    hourly = procyclicality(m, np.zeros(40), np.ones(40), bars_per_day=24)
    assert hourly.max_1d_increase == pytest.approx(2.0)    # 24-bar lag: m[35] / m[11]


def test_trailing_rms_uses_the_past_only() -> None:
    r = np.array([1.0, 2.0, 3.0, 4.0])
    rv = trailing_rms(r, 2)
    assert np.isnan(rv[0])
    np.testing.assert_allclose(rv[1:], [1.0, math.sqrt(2.5), math.sqrt(6.5)])


# ---------------------------------------------------------------- crash days


def test_crash_positions_named_day_and_worst_days() -> None:
    idx = pd.date_range("2020-03-01", "2020-03-31", freq="D", tz="UTC")
    loss = np.full(idx.size, 0.01)
    loss[11] = 0.40   # 2020-03-12
    loss[20] = 0.20   # 2020-03-21
    out = crash_positions(idx, loss, worst_n=2)
    assert out == [(11, "2020-03-12", "COVID crash (Black Thursday); worst #1"), (20, "2020-03-21", "worst #2")]


def test_crash_positions_on_hourly_bars_pick_the_worst_hour() -> None:
    idx = pd.date_range("2022-11-08", periods=72, freq="h", tz="UTC")
    loss = np.full(72, 0.001)
    loss[5], loss[30], loss[60] = 0.05, 0.08, 0.02
    out = crash_positions(idx, loss, worst_n=0)
    assert [(p, d) for p, d, _ in out] == [(5, "2022-11-08"), (30, "2022-11-09"), (60, "2022-11-10")]
    assert all(lab == "FTX collapse" for _, _, lab in out)
    assert {e.day for e in STRESS_EVENTS} >= {"2022-05-09", "2022-05-12", "2025-10-10"}


def _btc_close() -> dict[str, float]:
    with open(sample_data_dir() / "btc_daily.csv", newline="") as f:
        return {row["date"]: float(row["close"]) for row in csv.DictReader(f)}


def test_crash_table_on_bundled_btc_matches_the_file_and_the_risk_model() -> None:
    data = load_returns(["btc_daily"], use_store=False)
    assert data[0].instrument == "BTC-USDT"
    res = run_backtest(data, models=["fhs"], policies=["raw"], worst_n=3)
    rows = {r["day"]: r for r in res.crash_rows()}
    close = _btc_close()
    # the 2020-03-12 move from the raw file: 4,800.00 (PROVENANCE.md) over the 2020-03-11 close
    move = close["2020-03-12"] / close["2020-03-11"] - 1
    assert close["2020-03-12"] == 4800.0
    assert rows["2020-03-12"]["move"] == pytest.approx(move, rel=1e-12)
    assert rows["2020-03-12"]["loss"] == pytest.approx(-move, rel=1e-12) and rows["2020-03-12"]["losing_side"] == "long"
    assert "worst #1" in rows["2020-03-12"]["event"]
    # margin in force = FHS fitted on every return before 2020-03-12, per-side VaR at (1 + 0.99) / 2
    r = data[0].returns
    past = r[r.index < pd.Timestamp("2020-03-12", tz="UTC")]
    vl = FilteredHistoricalSimulation(side="long").fit(past.to_numpy(), bar_hours=24).forecast(24, 0.995).var
    vs = FilteredHistoricalSimulation(side="short").fit(past.to_numpy(), bar_hours=24).forecast(24, 0.995).var
    assert rows["2020-03-12"]["margin"] == pytest.approx(max(vl, vs), rel=1e-12)
    assert rows["2020-03-12"]["covered"] is False
    named = {e.day for e in STRESS_EVENTS}
    assert named <= set(rows)  # every named day is inside the BTC sample


def test_figures_mark_every_breach() -> None:
    from margincal.backtest import backtest_figures

    r = np.random.default_rng(7).standard_t(3, 400) * 0.04
    res = run_backtest({"X": daily(r)}, models=["fhs", "normal"], policies=["raw", "static"], min_history=60)
    figs = backtest_figures(res)
    assert len(figs) == 1
    traces = {t.name: t for t in figs[0].data}
    for p in res.paths:
        lab = p.model if p.policy == "raw" else p.policy
        marks = traces[f"breaches {lab} ({p.stats.n_breaches})"]
        assert len(marks.x) == p.stats.n_breaches
        np.testing.assert_allclose(np.asarray(marks.y, dtype=float), p.loss[p.breach])
    # the stored payload gives the same figure
    again = backtest_figures(res.to_payload(include_series=True))
    assert [t.name for t in again[0].data] == [t.name for t in figs[0].data]


def test_published_models_are_the_published_history() -> None:
    from margincal.backtest import PublishedPath
    from margincal.config import CalibrationSettings
    from margincal.margin.published import published_history

    bars = pd.read_csv(sample_data_dir() / "eth_daily.csv", parse_dates=["date"]).set_index("date")
    bars.index = bars.index.tz_localize("UTC")
    expected = published_history(bars, "1d", CalibrationSettings(horizon_hours=24.0))
    r = np.log(bars["close"]).diff().iloc[1:].to_numpy()
    vl, vs = PublishedPath().var_paths(r, side_level=0.995, horizon_bars=1.0, bar_hours=24.0, bars=bars)
    np.testing.assert_array_equal(vl, expected["im_rate"].to_numpy())
    np.testing.assert_array_equal(vl, vs)
    ml, _ = PublishedPath(rate="mm").var_paths(r, side_level=0.995, horizon_bars=1.0, bar_hours=24.0, bars=bars)
    np.testing.assert_array_equal(ml, expected["mm_rate"].to_numpy())
    with pytest.raises(ConfigError, match="bars"):
        PublishedPath().var_paths(r, side_level=0.995, horizon_bars=1.0, bar_hours=24.0)


def test_backtest_published_counts_im_and_mm_breaches_of_the_published_rule() -> None:
    """The published backtest counts, for IM and MM, the bars whose realised two-sided loss exceeds the
    published history (recounted here independently from the history and the prices)."""
    from margincal.backtest.published import backtest_published_data, breach_summary
    from margincal.config import CalibrationSettings
    from margincal.margin.published import published_history

    data = load_returns(["eth", "ltc"], timeframe="1d", use_store=False)
    s = CalibrationSettings()
    res = backtest_published_data(data, s)
    summ = breach_summary(res)
    assert set(summ) == {"IM 1d", "MM 1d"}
    counts = {"IM": 0, "MM": 0}
    n = 0
    for d in data:
        h = published_history(d.bars, "1d", s)
        loss = np.abs(np.expm1(h["ret"].to_numpy()))
        ok = np.isfinite(h["im_rate"].to_numpy())
        ok[: s.min_history] = False
        n += int(ok.sum())
        counts["IM"] += int((loss[ok] > h["im_rate"].to_numpy()[ok]).sum())
        counts["MM"] += int((loss[ok] > h["mm_rate"].to_numpy()[ok]).sum())
    assert summ["IM 1d"]["breaches"] == counts["IM"] and summ["MM 1d"]["breaches"] == counts["MM"]
    assert summ["IM 1d"]["n_obs"] == n
    assert counts["MM"] > counts["IM"] > 0
