"""Importance sampling for far-tail probabilities and ES."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from margincal.errors import DataError
from margincal.risk.montecarlo import GaussianLossFunction, TCopulaMonteCarlo
from margincal.risk.parametric import normal_var_es, student_t_var_es
from margincal.risk.rare_event import (
    default_scale_factor,
    design_point,
    expected_shortfall_is,
    tail_probability_is,
    weighted_tail_var_es,
)

P_TRUE = stats.norm.sf(4.5)  # 3.3977e-6


def test_reference_value() -> None:
    assert abs(P_TRUE / 3.3977e-6 - 1) < 1e-4


def test_normal_tail_fixed_seed_within_5_percent() -> None:
    r = tail_probability_is(stats.norm(), 4.5, 100_000, rng=20240601)
    assert abs(r.estimate / P_TRUE - 1) < 0.05
    # exponential tilting to 4.5: per-sample relative std sqrt(e^{a^2} Phi(-2a)/p^2 - 1) = 2.27 -> 0.72% at n=1e5
    assert r.relative_error == pytest.approx(0.0072, rel=0.1)
    assert r.shift == 4.5 and r.n == 100_000
    # crude MC at the same n expects 0.34 exceedances: its relative error is >= 100% or undefined
    assert r.crude_relative_error >= 1.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5, 6, 7])
def test_normal_tail_across_seeds(seed: int) -> None:
    r = tail_probability_is(stats.norm(), 4.5, 100_000, rng=seed)
    assert abs(r.estimate / P_TRUE - 1) < 0.05
    assert abs(r.estimate - P_TRUE) < 5 * r.std_error  # the reported error is honest


def test_scaled_normal_and_explicit_shift() -> None:
    d = stats.norm(0.001, 0.04)
    t = 0.001 + 0.04 * 4.5
    r = tail_probability_is(d, t, 100_000, rng=3)
    assert r.estimate == pytest.approx(P_TRUE, rel=0.05)
    r2 = tail_probability_is(stats.norm(), 4.5, 100_000, shift=4.0, rng=3)
    assert r2.estimate == pytest.approx(P_TRUE, rel=0.05)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_student_t_tail(seed: int) -> None:
    d = stats.t(4)
    p = d.sf(20.0)  # 1.84e-5
    r = tail_probability_is(d, 20.0, 100_000, rng=seed)
    assert r.estimate == pytest.approx(p, rel=0.05)
    assert r.relative_error < 0.01
    # a pure shift (scale_factor=1) is much less efficient for the heavy t tail
    pure = tail_probability_is(d, 20.0, 100_000, rng=seed, scale_factor=1.0)
    assert pure.relative_error > 3 * r.relative_error


def test_default_scale_factor() -> None:
    assert default_scale_factor(stats.norm(), 4.5) == 1.0
    # t_nu: E[T | T > t] = f(t) (nu + t^2) / ((nu - 1) sf(t)); mean excess = that - t (about t/(nu-1) = 6.7)
    f, sf = stats.t.pdf(20.0, 4), stats.t.sf(20.0, 4)
    assert default_scale_factor(stats.t(4), 20.0) == pytest.approx(f * 404 / (3 * sf) - 20.0, rel=1e-6)


def test_expected_shortfall_is_normal_and_t() -> None:
    level = 1 - 1e-6
    e = expected_shortfall_is(stats.norm(), level, 100_000, rng=11)
    v_true, es_true = normal_var_es(level)
    assert e.var == pytest.approx(v_true, rel=0.005)
    assert e.es == pytest.approx(es_true, rel=0.005)
    assert e.crude_expected_tail_count == pytest.approx(0.1)
    et = expected_shortfall_is(stats.t(4), level, 100_000, rng=12)
    v_t, es_t = student_t_var_es(level, 4.0)
    assert et.var == pytest.approx(v_t, rel=0.02)
    assert et.es == pytest.approx(es_t, rel=0.03)
    assert et.relative_error < 0.02


def test_weighted_tail_with_unit_weights_is_the_empirical_measure() -> None:
    from margincal.risk.measures import var_es

    x = np.random.default_rng(2).standard_normal(1003)
    v, e = weighted_tail_var_es(x, np.ones_like(x), 0.99)
    v2, e2 = var_es(x, 0.99)
    assert v == v2 and e == pytest.approx(e2, rel=1e-12)


def test_gaussian_loss_function_linear_case() -> None:
    # L = a'Z with |a| = 2: P(L > 9) = P(N(0,4) > 9) = sf(4.5); the design point is 9 a/|a|^2
    a = np.array([1.2, -1.6, 0.0])
    loss = GaussianLossFunction(lambda z: z @ a, 3)
    dp = design_point(loss, 9.0)
    assert dp == pytest.approx(9.0 * a / 4.0, abs=1e-6)
    r = tail_probability_is(loss, 9.0, 100_000, rng=5)
    assert r.estimate == pytest.approx(P_TRUE, rel=0.05)
    with pytest.raises(DataError, match="dim"):
        tail_probability_is(lambda z: z.sum(1), 1.0, 1000)


def _copula_sample(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    corr = np.array([[1.0, 0.6], [0.6, 1.0]])
    y = rng.standard_normal((n, 2)) @ np.linalg.cholesky(corr).T
    x = y / np.sqrt(rng.chisquare(4.0, n) / 4.0)[:, None]
    idx = pd.date_range("2019-01-01", periods=n, freq="D", tz="UTC")
    return pd.DataFrame(0.02 * x, index=idx, columns=["A", "B"])


def test_copula_portfolio_tail_is_vs_large_crude_run() -> None:
    m = TCopulaMonteCarlo(filter="none", df=4.0, n_sims=200_000, random_state=99).fit(_copula_sample(2000, 1))
    w = np.array([0.5, 0.5])
    threshold = 0.10
    crude = m.portfolio_losses(m.simulate(horizon=24).to_numpy(), w)
    p_crude = float((crude > threshold).mean())
    se_crude = math.sqrt(p_crude * (1 - p_crude) / crude.size)
    assert p_crude * crude.size > 100  # the reference itself is well determined (< 10% error)
    r = tail_probability_is(m.loss_function(w, 24), threshold, 20_000, rng=7)
    assert abs(r.estimate - p_crude) < 4 * math.hypot(r.std_error, se_crude)
    # the shift points to joint falls of both long legs (negative normals) and to a small chi-square
    # mixing variable (negative last normal), i.e. the heavy-tailed regime
    assert r.shift[0] < 0 and r.shift[1] < 0 and r.shift[2] < 0
    assert r.relative_error < r.crude_relative_error / 3
