"""Realized variance estimators: hand-computed bars, closed forms, Monte Carlo properties, fast == reference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margincal.errors import ConfigError, DataError
from margincal.vol.realized import (
    close_to_close_variance,
    garman_klass_variance,
    intraday_to_ohlc,
    parkinson_variance,
    realized_variance_from_intraday,
    rogers_satchell_variance,
    rolling_variance,
    rolling_variance_reference,
    yang_zhang_bar_variance,
    yang_zhang_k,
    yang_zhang_variance,
)

# Three bars written out by hand (open, high, low, close).
BARS = pd.DataFrame(
    {"open": [100.0, 106.0, 101.0], "high": [110.0, 108.0, 104.0], "low": [95.0, 100.0, 96.0], "close": [105.0, 102.0, 97.0]},
    index=pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC"),
)
_ROWS = [(100.0, 110.0, 95.0, 105.0), (106.0, 108.0, 100.0, 102.0), (101.0, 104.0, 96.0, 97.0)]


# The textbook formulas, written out with math.log on one bar (open, high, low, close).
def _pk(o: float, h: float, lo: float, c: float) -> float:
    return math.log(h / lo) ** 2 / (4 * math.log(2))


def _gk(o: float, h: float, lo: float, c: float) -> float:
    return 0.5 * math.log(h / lo) ** 2 - (2 * math.log(2) - 1) * math.log(c / o) ** 2


def _rs(o: float, h: float, lo: float, c: float) -> float:
    return math.log(h / c) * math.log(h / o) + math.log(lo / c) * math.log(lo / o)


def test_parkinson_by_hand():
    # bar 0: ln(H/L) = ln(110/95) = 0.146603474192; squared = 0.021492578...; / (4 ln 2 = 2.772588722) = 0.007751809157
    # bar 1: ln(108/100) = 0.076961041136 -> 0.005922999... / 2.772588722 = 0.002136271350
    # bar 2: ln(104/96)  = 0.080042707674 -> 0.006406835... / 2.772588722 = 0.002310777289
    got = parkinson_variance(BARS).to_numpy()
    np.testing.assert_allclose(got, [0.007751809157, 0.002136271350, 0.002310777289], rtol=1e-9)
    np.testing.assert_allclose(got, [_pk(*b) for b in _ROWS], rtol=1e-12)


def test_garman_klass_by_hand():
    # GK = 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2, 2 ln 2 - 1 = 0.386294361
    # bar 0: 0.5 * 0.146603474192^2 - 0.386294361 * ln(105/100)^2 = 0.010746289 - 0.386294361 * 0.048790164169^2
    #        = 0.010746289 - 0.000919566 = 0.009826723
    # bar 1: 0.5 * 0.076961041136^2 - 0.386294361 * (-0.038466280828)^2 = 0.002961500 - 0.000571581 = 0.002389919
    # bar 2: 0.5 * 0.080042707674^2 - 0.386294361 * (-0.040409538338)^2 = 0.003203417 - 0.000630791 = 0.002572626
    got = garman_klass_variance(BARS).to_numpy()
    np.testing.assert_allclose(got, [0.009826723, 0.002389919, 0.002572626], rtol=1e-6)
    np.testing.assert_allclose(got, [_gk(*b) for b in _ROWS], rtol=1e-12)


def test_rogers_satchell_by_hand():
    # RS = ln(H/C) ln(H/O) + ln(L/C) ln(L/O)
    # bar 0: 0.046520015635 * 0.095310179804 + (-0.100083458557) * (-0.051293294388) = 0.004433827 + 0.005133611 = 0.009567441
    # bar 1: 0.057158413840 * 0.018692133012 + (-0.019802627296) * (-0.058268908124) = 0.001068413 + 0.001153877 = 0.002222290
    # bar 2: 0.069679920638 * 0.029270382300 + (-0.010362787036) * (-0.050772325373) = 0.002039559 + 0.000526143 = 0.002565701
    got = rogers_satchell_variance(BARS).to_numpy()
    np.testing.assert_allclose(got, [0.009567441, 0.002222290, 0.002565701], rtol=1e-6)
    np.testing.assert_allclose(got, [_rs(*b) for b in _ROWS], rtol=1e-12)


def test_close_to_close_by_hand():
    # ln(102/105) = -0.028987536873 -> 0.000840277294 ; ln(97/102) = -0.050261834781 -> 0.002526252036
    got = close_to_close_variance(BARS).to_numpy()
    assert math.isnan(got[0])
    np.testing.assert_allclose(got[1:], [0.000840277294, 0.002526252036], rtol=1e-9)
    np.testing.assert_allclose(got[1:], [math.log(102 / 105) ** 2, math.log(97 / 102) ** 2], rtol=1e-12)


def test_yang_zhang_by_hand_window_2():
    # window n = 2 over bars 1, 2 (bar 0 only supplies the previous close):
    # overnight o = ln(106/105) = 0.009478744, ln(101/102) = -0.009852296 -> sample var (divisor 1)
    #   mean -0.000186776; (0.009665520^2 + 0.009665520^2) = 0.000186845
    # open-to-close c = ln(102/106) = -0.038466281, ln(97/101) = -0.040409538 -> sample var 1.888125e-06
    # RS mean = (0.002222290 + 0.002565701) / 2 = 0.002393995
    # k = 0.34 / (1.34 + (2+1)/(2-1)) = 0.34 / 4.34 = 0.078341014
    # YZ = 0.000186845 + 0.078341014 * 1.888125e-06 + 0.921658986 * 0.002393995 = 0.002393440
    got = yang_zhang_variance(BARS, 2).to_numpy()
    assert np.isnan(got[:2]).all()
    assert got[2] == pytest.approx(0.002393440, rel=1e-6)
    o = np.log([106 / 105, 101 / 102])
    c = np.log([102 / 106, 97 / 101])
    k = 0.34 / 4.34
    rs_mean = (_rs(*_ROWS[1]) + _rs(*_ROWS[2])) / 2
    expected = np.var(o, ddof=1) + k * np.var(c, ddof=1) + (1 - k) * rs_mean
    assert got[2] == pytest.approx(expected, rel=1e-12)


def test_yang_zhang_k_formula():
    # n = 22: 0.34 / (1.34 + 23/21) = 0.34 / 2.435238095 = 0.139616...
    assert yang_zhang_k(22) == pytest.approx(0.34 / (1.34 + 23 / 21), rel=1e-15)
    assert yang_zhang_k(22) == pytest.approx(0.1396168, rel=1e-6)


def test_rolling_mean_of_per_bar():
    # Parkinson over a 2-bar window at bar 2: (0.002136271350 + 0.002310777289) / 2 = 0.002223524320
    got = rolling_variance(BARS, 2, "parkinson").to_numpy()
    assert math.isnan(got[0])
    assert got[2] == pytest.approx((_pk(*_ROWS[1]) + _pk(*_ROWS[2])) / 2, rel=1e-12)
    assert got[2] == pytest.approx(0.002223524320, rel=1e-9)


# ---------------------------------------------------------------- closed-form properties
ohlc = st.tuples(
    st.floats(0.5, 2.0), st.floats(0.0, 0.2), st.floats(0.0, 0.2), st.floats(0.0, 1.0), st.floats(0.0, 1.0)
)


def _bar_from(o, up, dn, u_close, u_open):
    # a consistent bar: the open sits at fraction u_open of [low, high], the close at u_close
    lo = math.log(o) - dn
    hi = math.log(o) + up
    op = lo + u_open * (hi - lo)
    c = lo + u_close * (hi - lo)
    return math.exp(op), math.exp(hi), math.exp(lo), math.exp(c)


@settings(max_examples=60, deadline=None)
@given(st.lists(ohlc, min_size=2, max_size=30))
def test_estimators_match_closed_forms_and_are_scale_invariant(rows):
    bars = pd.DataFrame([_bar_from(*r) for r in rows], columns=["open", "high", "low", "close"])
    o, h, lo, c = (np.log(bars[x].to_numpy()) for x in ("open", "high", "low", "close"))
    np.testing.assert_allclose(parkinson_variance(bars), (h - lo) ** 2 / (4 * math.log(2)), rtol=1e-12, atol=1e-300)
    gk = garman_klass_variance(bars).to_numpy()
    assert (gk >= -1e-15).all()  # |ln C/O| <= ln H/L makes GK >= (0.5 - 0.386) ln(H/L)^2 >= 0
    rs = rogers_satchell_variance(bars).to_numpy()
    assert (rs >= -1e-15).all()  # each product is a product of a non-negative and a non-negative term
    scaled = bars * 37.5
    for f in (parkinson_variance, garman_klass_variance, rogers_satchell_variance, close_to_close_variance):
        np.testing.assert_allclose(f(scaled), f(bars), rtol=1e-9, atol=1e-15)


@settings(max_examples=50, deadline=None)
@given(st.lists(ohlc, min_size=3, max_size=40), st.integers(2, 8), st.sampled_from(
    ["parkinson", "garman_klass", "rogers_satchell", "close_to_close", "yang_zhang"]), st.booleans())
def test_rolling_fast_equals_reference(rows, window, estimator, demean):
    bars = pd.DataFrame([_bar_from(*r) for r in rows], columns=["open", "high", "low", "close"])
    fast = rolling_variance(bars, window, estimator, demean=demean).to_numpy()
    ref = rolling_variance_reference(bars, window, estimator, demean=demean).to_numpy()
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
    np.testing.assert_allclose(fast[~np.isnan(fast)], ref[~np.isnan(ref)], rtol=1e-8, atol=1e-14)


def _brownian_bars(n_bars: int, steps: int, sigma2: float, drift: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    inc = rng.normal(drift / steps, math.sqrt(sigma2 / steps), size=(n_bars, steps))
    path = np.cumsum(inc, axis=1)
    level = np.concatenate([[0.0], np.cumsum(path[:, -1])[:-1]])  # log open of each bar = previous close
    full = np.concatenate([np.zeros((n_bars, 1)), path], axis=1) + level[:, None]
    return pd.DataFrame({"open": np.exp(full[:, 0]), "high": np.exp(full.max(1)), "low": np.exp(full.min(1)),
                         "close": np.exp(full[:, -1])})


def test_monte_carlo_unbiased_for_brownian_bars():
    # Brownian log price, variance 1e-4 per bar, 2000 bars of 2000 steps: each estimator's mean ~ 1e-4.
    # Discrete sampling shrinks the range by ~0.58 sqrt(1/2000) per sigma, i.e. ~2.6 % on squared ranges;
    # the standard error of the mean is ~1-2 %. Tolerance 7 %.
    bars = _brownian_bars(2000, 2000, 1e-4, 0.0, seed=7)
    for f in (parkinson_variance, garman_klass_variance, rogers_satchell_variance):
        assert np.nanmean(f(bars)) == pytest.approx(1e-4, rel=0.07), f.__name__
    assert np.nanmean(close_to_close_variance(bars)) == pytest.approx(1e-4, rel=0.07)


def test_rogers_satchell_is_drift_independent_parkinson_is_not():
    # with a drift of 3 sigma per bar, Parkinson overstates the variance (~4x here); Rogers-Satchell does not
    # (RS 1991). 4000 steps per bar keep RS's discretisation bias (larger under drift) at ~4 %.
    bars = _brownian_bars(800, 4000, 1e-4, 0.03, seed=11)
    assert np.mean(rogers_satchell_variance(bars)) == pytest.approx(1e-4, rel=0.1)
    assert np.mean(parkinson_variance(bars)) > 2.0e-4


def test_yang_zhang_bar_mean_matches_zero_mean_window():
    bars = _brownian_bars(300, 50, 1e-4, 0.0, seed=3)
    per_bar = yang_zhang_bar_variance(bars, k=0.2).to_numpy()
    o = np.log(bars["open"].to_numpy()[1:] / bars["close"].to_numpy()[:-1])
    c = np.log(bars["close"] / bars["open"]).to_numpy()[1:]
    rs = rogers_satchell_variance(bars).to_numpy()[1:]
    np.testing.assert_allclose(per_bar[1:], o**2 + 0.2 * c**2 + 0.8 * rs, rtol=1e-12, atol=1e-18)


# ---------------------------------------------------------------- intraday -> daily
def test_realized_variance_from_intraday_by_hand():
    # closes at open times 2024-01-01 22:00, 23:00, 2024-01-02 00:00, 01:00 (hourly bars)
    idx = pd.DatetimeIndex(["2024-01-01 22:00", "2024-01-01 23:00", "2024-01-02 00:00", "2024-01-02 01:00"], tz="UTC")
    bars = pd.DataFrame({"close": [100.0, 101.0, 99.0, 99.5]}, index=idx)
    rv = realized_variance_from_intraday(bars, return_counts=True)
    # day 1: the 23:00 bar's return ln(101/100) = 0.009950331 -> 9.900908e-05
    # day 2: ln(99/101) = -0.020000667, ln(99.5/99) = 0.005037794 -> 0.000400027 + 0.000025379 = 0.000425406
    assert rv.loc["2024-01-01", "rv"] == pytest.approx(math.log(101 / 100) ** 2, rel=1e-12)
    assert rv.loc["2024-01-02", "rv"] == pytest.approx(math.log(99 / 101) ** 2 + math.log(99.5 / 99) ** 2, rel=1e-12)
    assert rv["n_returns"].tolist() == [1, 2]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-0.05, 0.05), min_size=2, max_size=120), st.integers(0, 23))
def test_intraday_rv_sums_to_total_and_respects_days(rets, start_hour):
    idx = pd.date_range("2024-03-01", periods=len(rets) + 1, freq="h", tz="UTC") + pd.Timedelta(hours=start_hour)
    close = 100 * np.exp(np.concatenate([[0.0], np.cumsum(rets)]))
    bars = pd.DataFrame({"close": close}, index=idx)
    rv = realized_variance_from_intraday(bars)
    r = np.diff(np.log(close))
    assert rv.sum() == pytest.approx(float(np.sum(r**2)), rel=1e-9, abs=1e-18)
    # each return belongs to the UTC day of its bar's open time
    days = idx[1:].floor("D")
    for d, v in rv.items():
        assert v == pytest.approx(float(np.sum(r[days == d] ** 2)), rel=1e-9, abs=1e-18)


def test_intraday_to_ohlc_aggregates():
    idx = pd.date_range("2024-01-01", periods=48, freq="h", tz="UTC")
    rng = np.random.default_rng(0)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 48)))
    o = np.concatenate([[100.0], c[:-1]])
    h = np.maximum(o, c) * 1.002
    lo = np.minimum(o, c) * 0.998
    bars = pd.DataFrame({"open": o, "high": h, "low": lo, "close": c, "volume": np.arange(48.0)}, index=idx)
    d = intraday_to_ohlc(bars)
    assert d["open"].tolist() == [o[0], o[24]]
    assert d["close"].tolist() == [c[23], c[47]]
    assert d["high"].tolist() == [h[:24].max(), h[24:].max()]
    assert d["low"].tolist() == [lo[:24].min(), lo[24:].min()]
    assert d["volume"].tolist() == [sum(range(24)), sum(range(24, 48))]


def test_real_btc_daily_rv_close_to_squared_daily_return_on_average():
    # On the bundled BTC hourly data the mean daily RV (2021-2025) and the mean squared daily return agree
    # within 25 % (they estimate the same variance; hourly returns are nearly uncorrelated).
    from margincal.config import sample_data_dir

    df = pd.read_csv(sample_data_dir() / "btcusdt_1h.csv.gz", index_col="timestamp", parse_dates=True)
    df = df.loc["2021-01-01":"2025-12-31"]
    rv = realized_variance_from_intraday(df)
    d = intraday_to_ohlc(df)
    r2 = np.log(d["close"]).diff().dropna() ** 2
    assert rv.mean() == pytest.approx(r2.mean(), rel=0.25)
    # Parkinson from daily high/low is also in the same range
    assert parkinson_variance(d).mean() == pytest.approx(rv.mean(), rel=0.35)


# ---------------------------------------------------------------- errors
def test_errors_name_the_problem():
    with pytest.raises(DataError, match="no 'high' column"):
        parkinson_variance(BARS.drop(columns="high"))
    bad = BARS.copy()
    bad.loc[bad.index[1], "high"] = 90.0
    with pytest.raises(DataError, match="row 1"):
        garman_klass_variance(bad)
    neg = BARS.copy()
    neg.loc[neg.index[2], "close"] = -1.0
    with pytest.raises(DataError, match="close"):
        parkinson_variance(neg)
    with pytest.raises(ConfigError, match="window"):
        rolling_variance(BARS, 1)
    with pytest.raises(DataError, match="increasing"):
        realized_variance_from_intraday(pd.DataFrame({"close": [1.0, 2.0]}, index=pd.DatetimeIndex(["2024-01-02", "2024-01-01"])))
