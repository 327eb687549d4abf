"""Online estimators against batch recomputations (pandas / numpy) on real returns, to 1e-12."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margincal.adjust.online import (
    BreachCounter,
    EWMAVariance,
    EWMStats,
    RollingCount,
    corwin_schultz_spread,
    halflife_to_lambda,
)
from margincal.config import sample_data_dir
from margincal.errors import ConfigError


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    df = pd.read_csv(sample_data_dir() / "btcusdt_perp_1h.csv.gz", parse_dates=["timestamp"])
    return df[(df["timestamp"] >= "2022-09-01") & (df["timestamp"] < "2022-12-01")].reset_index(drop=True)


@pytest.fixture(scope="module")
def returns(bars) -> np.ndarray:
    return np.diff(np.log(bars["close"].to_numpy()))


def test_halflife_to_lambda_worked_example():
    lam = halflife_to_lambda(24.0)
    assert lam**24 == pytest.approx(0.5, rel=1e-14)  # weights halve after 24 observations
    # RiskMetrics daily 0.94 has a half-life of ln(0.5)/ln(0.94) = 11.2 observations
    assert halflife_to_lambda(math.log(0.5) / math.log(0.94)) == pytest.approx(0.94, rel=1e-14)
    with pytest.raises(ConfigError, match="halflife"):
        halflife_to_lambda(0.0)


def test_ewma_variance_seed1_equals_pandas_ewm(returns):
    lam = halflife_to_lambda(24.0)
    est = EWMAVariance(lam, seed=1)
    got = np.array([est.update(x) for x in returns])
    ref = pd.Series(returns**2).ewm(alpha=1 - lam, adjust=False).mean().to_numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0)


def test_ewma_variance_seeded_equals_expanding_mean_then_pandas_ewm(returns):
    lam, k = halflife_to_lambda(48.0), 24
    est = EWMAVariance(lam, seed=k)
    got = np.array([est.update(x) for x in returns])
    x2 = returns**2
    # first k values: the running mean of the squares; then pandas' recursion seeded with that mean
    first = pd.Series(x2[:k]).expanding().mean().to_numpy()
    rest = pd.Series(np.concatenate([[x2[:k].mean()], x2[k:]])).ewm(alpha=1 - lam, adjust=False).mean().to_numpy()
    np.testing.assert_allclose(got[:k], first, rtol=1e-12, atol=0)
    np.testing.assert_allclose(got[k - 1:], rest, rtol=1e-12, atol=0)


def test_ewm_stats_equal_pandas_mean_and_biased_var(bars):
    x = np.log1p(bars["volume"].to_numpy())
    lam = halflife_to_lambda(168.0)
    est = EWMStats(lam)
    means, vars_, zs = [], [], []
    for v in x:
        zs.append(est.zscore(v))
        est.update(v)
        means.append(est.mean)
        vars_.append(est.var)
    ew = pd.Series(x).ewm(alpha=1 - lam, adjust=False)
    m_ref, v_ref = ew.mean().to_numpy(), ew.var(bias=True).to_numpy()
    np.testing.assert_allclose(means, m_ref, rtol=1e-12, atol=0)
    np.testing.assert_allclose(vars_[1:], v_ref[1:], rtol=1e-12, atol=0)
    assert vars_[0] == 0.0
    # the z-score uses the state BEFORE the observation
    z_ref = (x[2:] - m_ref[1:-1]) / np.sqrt(v_ref[1:-1])
    np.testing.assert_allclose(zs[2:], z_ref, rtol=1e-12, atol=1e-12)
    assert math.isnan(zs[0]) and math.isnan(zs[1])


def test_rolling_count_equals_pandas_rolling_sum():
    rng = np.random.default_rng(7)
    flags = rng.random(2000) < 0.1
    rc = RollingCount(240)
    got = [rc.update(f) for f in flags]
    ref = pd.Series(flags.astype(int)).rolling(240, min_periods=1).sum().to_numpy()
    np.testing.assert_array_equal(got, ref)


def _cs_batch(h: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Corwin & Schultz (2012) eq. (14), vectorised, written independently from the online version."""
    k = 3 - 2 * np.sqrt(2)
    beta = np.log(h[:-1] / lo[:-1]) ** 2 + np.log(h[1:] / lo[1:]) ** 2
    gamma = np.log(np.maximum(h[:-1], h[1:]) / np.minimum(lo[:-1], lo[1:])) ** 2
    alpha = (np.sqrt(2 * beta) - np.sqrt(beta)) / k - np.sqrt(gamma / k)
    s = 2 * (np.exp(alpha) - 1) / (1 + np.exp(alpha))
    return np.maximum(s, 0.0)


def test_corwin_schultz_worked_example_and_batch(bars):
    # worked example: two bars with identical ranges H/L = e^0.01 and no drift between them:
    # beta = 2 * 0.01^2, gamma = 0.01^2 -> alpha = 0.01 (sqrt(4) - sqrt(2)) / k - 0.01 / sqrt(k)
    h, lo = math.exp(0.01), 1.0
    k = 3 - 2 * math.sqrt(2)
    alpha = 0.01 * (2 - math.sqrt(2)) / k - 0.01 / math.sqrt(k)
    expected = 2 * (math.exp(alpha) - 1) / (1 + math.exp(alpha))
    assert corwin_schultz_spread(h, lo, h, lo) == pytest.approx(max(expected, 0.0), abs=1e-15)
    hi, low = bars["high"].to_numpy(), bars["low"].to_numpy()
    got = np.array([corwin_schultz_spread(hi[i], low[i], hi[i + 1], low[i + 1]) for i in range(len(hi) - 1)])
    np.testing.assert_allclose(got, _cs_batch(hi, low), rtol=1e-12, atol=1e-15)
    assert (got >= 0).all() and (got > 0).mean() > 0.2


def _breach_reference(close: np.ndarray, im: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain loop: breach at t if |close_t / close_{t-h} - 1| > im_{t-h}, then no new breach for h-1 bars."""
    flags = np.zeros(len(close), dtype=int)
    cooldown = 0
    for t in range(len(close)):
        if t < h:
            continue
        move = abs(close[t] / close[t - h] - 1.0)
        if cooldown > 0:
            cooldown -= 1
        elif move > im[t - h]:
            flags[t] = 1
            cooldown = h - 1
    counts = pd.Series(flags).rolling(w, min_periods=1).sum().to_numpy()
    return flags, counts


def test_breach_counter_equals_loop_reference(bars):
    close = bars["close"].to_numpy()
    im = np.where(np.arange(len(close)) < 1000, 0.04, 0.06)  # margin raised mid-way
    bc = BreachCounter(24, 240)
    flags, counts = [], []
    for c, m in zip(close, im, strict=True):
        flags.append(bc.update(c, m))
        counts.append(bc.count)
    ref_flags, ref_counts = _breach_reference(close, im, 24, 240)
    np.testing.assert_array_equal(np.array(flags, dtype=int), ref_flags)
    np.testing.assert_array_equal(counts, ref_counts)
    assert ref_flags.sum() >= 3  # the FTX week breaches a 4-6% daily margin several times


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=-0.2, max_value=0.2, allow_nan=False), min_size=3, max_size=80),
       st.integers(min_value=1, max_value=79))
def test_state_round_trip_continues_identically(xs, cut):
    """Saving the state (through JSON) and restoring it continues exactly as the uninterrupted estimator."""
    cut = min(cut, len(xs) - 1)
    lam = 0.97
    a_var, a_st, a_bc = EWMAVariance(lam, seed=3), EWMStats(lam), BreachCounter(3, 7)
    prices = 100.0 * np.exp(np.cumsum(xs))
    for x, p in zip(xs[:cut], prices[:cut], strict=True):
        a_var.update(x)
        a_st.update(x)
        a_bc.update(float(p), 0.05)
    b_var = EWMAVariance.from_state(json.loads(json.dumps(a_var.state())))
    b_st = EWMStats.from_state(json.loads(json.dumps(a_st.state())))
    b_bc = BreachCounter.from_state(json.loads(json.dumps(a_bc.state())))
    for x, p in zip(xs[cut:], prices[cut:], strict=True):
        assert a_var.update(x) == b_var.update(x)
        assert a_st.zscore(x) == b_st.zscore(x) or (math.isnan(a_st.zscore(x)) and math.isnan(b_st.zscore(x)))
        a_st.update(x)
        b_st.update(x)
        assert (a_st.mean, a_st.var) == (b_st.mean, b_st.var)
        assert a_bc.update(float(p), 0.05) == b_bc.update(float(p), 0.05)
        assert a_bc.count == b_bc.count


def test_invalid_parameters_raise_config_error():
    with pytest.raises(ConfigError, match="lam"):
        EWMAVariance(1.0)
    with pytest.raises(ConfigError, match="seed"):
        EWMAVariance(0.9, seed=0)
    with pytest.raises(ConfigError, match="window"):
        RollingCount(0)
    with pytest.raises(ConfigError, match="horizon"):
        BreachCounter(0, 10)
