"""Issue 15 liquidity inputs: spreads from bars (papers' worked examples), ADV window in days,
stressed-book cost, funding provision."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margincal.errors import ConfigError, DataError
from margincal.margin.liquidity import (
    LiquidityModel,
    abdi_ranaldo_spread,
    corwin_schultz_spread,
    funding_provision,
    spread_from_bars,
    stressed_liquidity_addon,
    window_bars,
)

REF = json.loads((Path(__file__).parents[1] / "reference" / "spread_estimators.json").read_text())


def test_corwin_schultz_worked_example():
    cs = REF["cs"]
    got = corwin_schultz_spread(cs["high"], cs["low"])
    assert got.shape == (1,)
    assert got[0] == pytest.approx(cs["spread"], rel=1e-12)


def test_corwin_schultz_negative_estimates_clipped():
    # a wide two-bar range relative to the one-bar ranges gives a negative alpha -> 0 (paper's rule)
    h, lo = [101.0, 110.0], [100.0, 109.0]
    raw = corwin_schultz_spread(h, lo, clip_negative=False)
    assert raw[0] < 0
    assert corwin_schultz_spread(h, lo)[0] == 0.0


def test_abdi_ranaldo_worked_example():
    ar = REF["ar"]
    assert abdi_ranaldo_spread(ar["high"], ar["low"], ar["close"]) == pytest.approx(ar["spread_two_day"], rel=1e-12)
    assert abdi_ranaldo_spread(ar["high"], ar["low"], ar["close"], method="sample") == pytest.approx(
        ar["spread_sample"], abs=1e-15)


def test_spread_estimators_recover_a_simulated_spread():
    # efficient log price random walk observed through bid/ask quotes +-S/2: both estimators are
    # built to recover S (the papers' simulations); 390 ticks per bar, 2000 bars. Clipping negative
    # two-bar CS estimates at 0 biases the mean up (the paper says so), so compare the unclipped mean.
    rng = np.random.default_rng(7)
    s_true, n_bars, ticks = 0.004, 2000, 390
    p = np.cumsum(rng.normal(0, 0.01 / math.sqrt(ticks), n_bars * ticks)).reshape(n_bars, ticks)
    side = rng.choice([-1.0, 1.0], size=p.shape)
    trade = np.exp(p + side * s_true / 2)
    h, lo, c = trade.max(axis=1), trade.min(axis=1), trade[:, -1]
    assert np.mean(corwin_schultz_spread(h, lo, clip_negative=False)) == pytest.approx(s_true, rel=0.35)
    assert np.mean(corwin_schultz_spread(h, lo)) >= np.mean(corwin_schultz_spread(h, lo, clip_negative=False))
    assert abdi_ranaldo_spread(h, lo, c) == pytest.approx(s_true, rel=0.35)


def test_spread_input_errors():
    with pytest.raises(DataError, match="high 1.0 < low"):
        corwin_schultz_spread([1.0, 2.0], [1.5, 1.0])
    with pytest.raises(DataError, match="prices must be"):
        abdi_ranaldo_spread([1.0, 2.0], [1.0, -1.0], [1.0, 1.0])
    with pytest.raises(ConfigError, match="method"):
        abdi_ranaldo_spread([2.0, 2.0], [1.0, 1.0], [1.5, 1.5], method="x")


def _hourly_bars(n_days: int) -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=24 * n_days, freq="h", tz="UTC")
    close = 100 * np.exp(np.cumsum(np.tile([0.001, -0.001], len(idx) // 2)))
    vol = np.arange(1, len(idx) + 1, dtype=float)
    return pd.DataFrame({"open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
                         "volume": vol}, index=idx)


def test_adv_window_is_in_days_on_hourly_bars():
    bars = _hourly_bars(40)
    m = LiquidityModel.from_bars(bars, window=30)
    last = bars.iloc[-720:]
    # ADV = mean traded notional per hour over the last 30 days x 24 hours
    assert m.adv == pytest.approx(float((last["close"] * last["volume"]).mean() * 24.0))
    assert m.source["adv_window_bars"] == 720 and m.source["adv_window_days"] == 30
    r = np.diff(np.log(bars["close"].to_numpy()[-721:]))
    assert m.sigma_daily == pytest.approx(float(np.std(r, ddof=1) * math.sqrt(24)))
    assert window_bars(30, 1.0) == 720 and window_bars(30, 24.0) == 30
    with pytest.raises(ConfigError):
        LiquidityModel.from_bars(bars, window=0)


def test_spread_from_bars_uses_the_day_window():
    bars = _hourly_bars(10)
    out = spread_from_bars(bars, window=2)
    tail = bars.iloc[-49:]
    assert out["corwin_schultz"] == pytest.approx(float(np.mean(corwin_schultz_spread(tail["high"], tail["low"]))))
    assert out["half_spread"] == pytest.approx(0.5 * max(out["corwin_schultz"], out["abdi_ranaldo"]))


def test_stressed_book_cost_hand_values():
    # normal depth 89M within 1%, collapse to 2M: D = 2M.
    kw = {"depth_notional": 89e6, "depth_band": 0.01, "collapse": 2.0 / 89.0}
    # Q = 1M <= D: 0.01 * 1M / (2 * 2M) = 0.0025
    assert stressed_liquidity_addon(1e6, **kw) == pytest.approx(0.0025)
    # Q = D: 0.005 from both branches (continuity)
    assert stressed_liquidity_addon(2e6, **kw) == pytest.approx(0.005)
    assert stressed_liquidity_addon(2e6 * (1 + 1e-9), **kw) == pytest.approx(0.005, rel=1e-6)
    # Q = 8M: 0.01 * (1 - 2/16) = 0.00875
    assert stressed_liquidity_addon(8e6, **kw) == pytest.approx(0.00875)
    with pytest.raises(ConfigError):
        stressed_liquidity_addon(1.0, depth_notional=1.0, depth_band=0.01, collapse=0.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1e10), min_size=2, max_size=30))
def test_stressed_book_cost_non_decreasing(sizes):
    q = np.sort(np.asarray(sizes))
    c = stressed_liquidity_addon(q, depth_notional=5e7, depth_band=0.02, collapse=0.05)
    assert np.all(np.diff(c) >= -1e-15) and np.all(c <= 0.02)


def test_funding_provision_events():
    rates = [0.0001, -0.003, 0.002, 0.0001]
    # max |rate| = 0.003 per 8 h. Pro rata: 2 minutes -> 0.003 / 240; 24 h -> 0.009
    assert funding_provision(rates, 2 / 60) == pytest.approx(0.003 / 240)
    assert funding_provision(rates, 24.0) == pytest.approx(0.009)
    # worst case by events: 2 minutes -> 1 event; 8 h -> 1; 9 h -> 2; 24 h -> 3
    ev = {"accrual": "events"}
    assert funding_provision(rates, 2 / 60, **ev) == pytest.approx(0.003)
    assert funding_provision(rates, 8.0, **ev) == pytest.approx(0.003)
    assert funding_provision(rates, 9.0, **ev) == pytest.approx(0.006)
    assert funding_provision(rates, 24.0, cap=0.00075, **ev) == pytest.approx(0.00225)
    assert funding_provision(rates, 0.0) == 0.0
    assert funding_provision(rates, 8.0, method="quantile", quantile=0.5, **ev) == pytest.approx(
        float(np.quantile(np.abs(rates), 0.5)))
    with pytest.raises(DataError):
        funding_provision([np.nan], 8.0)
