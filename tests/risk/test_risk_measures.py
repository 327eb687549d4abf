"""Pure measures value_at_risk / expected_shortfall against closed forms, hand arithmetic and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from margincal.errors import DataError
from margincal.risk.measures import expected_shortfall, value_at_risk, var_es

# ---------------------------------------------------------------- closed forms on large samples


@pytest.mark.parametrize("level", [0.95, 0.99])
def test_normal_sample_matches_closed_form(level: float) -> None:
    # N(0, 0.04^2) losses; closed form VaR = s z_p, ES = s phi(z_p)/(1-p) (scipy for z_p and phi)
    rng = np.random.default_rng(7)
    s, n = 0.04, 2_000_000
    x = rng.normal(0.0, s, n)
    z = stats.norm.ppf(level)
    var_true, es_true = s * z, s * stats.norm.pdf(z) / (1 - level)
    # sampling std of the p-quantile: sqrt(p(1-p)/n)/f(q); of ES roughly sqrt(Var(L|L>VaR)/(n(1-p)))
    se_var = np.sqrt(level * (1 - level) / n) / (stats.norm.pdf(z) / s)  # density of the loss at VaR
    se_es = s * 1.0 / np.sqrt(n * (1 - level))
    assert abs(value_at_risk(x, level) - var_true) < 5 * se_var
    assert abs(expected_shortfall(x, level) - es_true) < 5 * se_es


def test_student_t_sample_matches_closed_form() -> None:
    # t with 5 df scaled by 0.02: ES = scale * f(t_p)(df + t_p^2)/((df-1)(1-p))
    rng = np.random.default_rng(11)
    df, sc, level, n = 5.0, 0.02, 0.99, 2_000_000
    x = sc * rng.standard_t(df, n)
    q = stats.t.ppf(level, df)
    var_true = sc * q
    es_true = sc * stats.t.pdf(q, df) * (df + q * q) / ((df - 1) * (1 - level))
    se_var = np.sqrt(level * (1 - level) / n) / (stats.t.pdf(q, df) / sc)
    assert abs(value_at_risk(x, level) - var_true) < 5 * se_var
    # tail of a t5 has finite variance; 2% relative tolerance is > 5 standard errors here
    assert expected_shortfall(x, level) == pytest.approx(es_true, rel=0.02)


# ---------------------------------------------------------------- hand-computed example


def test_small_example_by_hand() -> None:
    # losses (sorted): -3 -2 -1 0 1 2 3 4 5 10 ; n = 10, level 0.85
    # VaR = smallest x with F(x) >= 0.85: F(4) = 8/10 < 0.85, F(5) = 9/10 >= 0.85  -> VaR = 5
    # ES: n(1-level) = 1.5 observations in the tail: all of 10 and half of 5
    #     ES = (10 + 0.5 * 5) / 1.5 = 12.5 / 1.5 = 8.3333...
    losses = [3, -1, 10, 0, 5, -3, 1, 4, -2, 2]
    assert value_at_risk(losses, 0.85) == 5.0
    assert expected_shortfall(losses, 0.85) == pytest.approx(12.5 / 1.5, abs=1e-12)
    # level 0.9: n(1-level) = 1 -> ES = 10, VaR: F(5) = 0.9 >= 0.9 -> 5
    assert var_es(losses, 0.9) == (5.0, pytest.approx(10.0, abs=1e-9))


def test_weighted_example_by_hand() -> None:
    # losses 1, 2, 3, 4 with weights 0.1, 0.2, 0.3, 0.4; level 0.8 -> tail mass 0.2
    # sorted descending: 4 (0.4) already exceeds 0.2 -> VaR = 4? F(3) = 0.6 < 0.8, F(4) = 1 >= 0.8 -> VaR = 4
    # ES = 0.2 * 4 / 0.2 = 4
    x, w = [1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4]
    assert value_at_risk(x, 0.8, weights=w) == 4.0
    assert expected_shortfall(x, 0.8, weights=w) == pytest.approx(4.0)
    # level 0.5 -> tail mass 0.5: 4 (0.4) + 0.1 of 3 -> ES = (1.6 + 0.3) / 0.5 = 3.8 ; VaR: F(3) = 0.6 >= 0.5 -> 3
    assert value_at_risk(x, 0.5, weights=w) == 3.0
    assert expected_shortfall(x, 0.5, weights=w) == pytest.approx(3.8)


def test_integer_weights_equal_repeated_observations() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    reps = rng.integers(1, 5, size=40)
    expanded = np.repeat(x, reps)
    for level in (0.9, 0.95, 0.975):
        assert value_at_risk(x, level, weights=reps) == pytest.approx(value_at_risk(expanded, level))
        assert expected_shortfall(x, level, weights=reps) == pytest.approx(expected_shortfall(expanded, level))


# ---------------------------------------------------------------- errors


def test_nan_raises_data_error() -> None:
    with pytest.raises(DataError, match=r"losses\[2\] is NaN"):
        value_at_risk([0.1, 0.2, np.nan], 0.99)
    with pytest.raises(DataError, match="NaN"):
        expected_shortfall([0.1, np.nan], 0.99)


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.1])
def test_level_out_of_range(bad: float) -> None:
    with pytest.raises(DataError, match="level"):
        value_at_risk([1.0, 2.0], bad)


def test_bad_weights() -> None:
    with pytest.raises(DataError, match="weights"):
        value_at_risk([1.0, 2.0], 0.9, weights=[1.0])
    with pytest.raises(DataError, match="weights"):
        expected_shortfall([1.0, 2.0], 0.9, weights=[-1.0, 2.0])
    with pytest.raises(DataError, match="empty"):
        expected_shortfall([], 0.9)


# ---------------------------------------------------------------- properties

samples = arrays(np.float64, st.integers(5, 200), elements=st.floats(-1e3, 1e3, allow_nan=False))
levels = st.floats(0.5, 0.995)


@settings(max_examples=80, deadline=None)
@given(samples, levels)
def test_es_at_least_var(x: np.ndarray, level: float) -> None:
    assert expected_shortfall(x, level) >= value_at_risk(x, level) - 1e-9 * (1 + abs(x).max())


@settings(max_examples=80, deadline=None)
@given(samples, levels, levels)
def test_monotone_in_level(x: np.ndarray, a: float, b: float) -> None:
    lo, hi = min(a, b), max(a, b)
    tol = 1e-9 * (1 + abs(x).max())
    assert value_at_risk(x, lo) <= value_at_risk(x, hi) + tol
    assert expected_shortfall(x, lo) <= expected_shortfall(x, hi) + tol


@settings(max_examples=60, deadline=None)
@given(samples, levels, st.randoms(use_true_random=False))
def test_invariant_to_row_order(x: np.ndarray, level: float, rnd) -> None:  # type: ignore[no-untyped-def]
    perm = list(range(x.size))
    rnd.shuffle(perm)
    y = x[perm]
    assert value_at_risk(y, level) == value_at_risk(x, level)
    assert expected_shortfall(y, level) == pytest.approx(expected_shortfall(x, level), rel=1e-12, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(samples, levels, st.floats(0.01, 100.0))
def test_positive_homogeneity(x: np.ndarray, level: float, c: float) -> None:
    assert value_at_risk(c * x, level) == pytest.approx(c * value_at_risk(x, level), rel=1e-12, abs=1e-9)
    assert expected_shortfall(c * x, level) == pytest.approx(c * expected_shortfall(x, level), rel=1e-9, abs=1e-7)
