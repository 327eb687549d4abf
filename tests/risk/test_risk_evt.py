"""EVT: GPD formulas vs scipy, parameter recovery, mean excess, conditional EVT model."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from margincal.errors import CalibrationError
from margincal.risk.base import ModelFitWarning
from margincal.risk.evt import (
    EVTModel,
    fit_gpd,
    gpd_var_es,
    mean_excess,
    mean_excess_figure,
    mean_excess_reference,
    pot_tail,
    pot_var_es,
    threshold_stability,
)


def test_gpd_formulas_vs_reference_json(reference_dir) -> None:  # type: ignore[no-untyped-def]
    # tests/reference/risk_closed_forms.py: VaR from genpareto.isf, ES by quadrature of the quantile
    ref = json.loads((reference_dir / "risk_closed_forms.json").read_text())["gpd_tail"]
    for r in ref:
        v, e = gpd_var_es(r["level"], r["u"], r["xi"], r["beta"], r["n"], r["n_u"])
        assert v == pytest.approx(r["var"], rel=1e-12)
        assert e == pytest.approx(r["es"], rel=1e-9)


@pytest.mark.parametrize(("xi", "beta"), [(0.3, 0.02), (1e-12, 0.02), (-0.2, 0.05)])
def test_gpd_var_is_genpareto_ppf_and_es_is_conditional_mean(xi: float, beta: float) -> None:
    n, nu, u, p = 2000, 150, 0.04, 0.995
    v, e = gpd_var_es(p, u, xi, beta, n, nu)
    # P(L > x) = nu/n * (1 - G(x - u)) = 1 - p  =>  x = u + G^-1(1 - (1-p) n/nu)
    g = stats.genpareto(xi, scale=beta)
    assert v == pytest.approx(u + g.ppf(1 - (1 - p) * n / nu), rel=1e-9)
    # ES = VaR + E[Y - (VaR - u) | Y > VaR - u] = VaR + int_{VaR-u}^inf sf(y) dy / sf(VaR - u)
    a = v - u
    upper = g.support()[1]
    tail_int, _ = integrate.quad(g.sf, a, upper if np.isfinite(upper) else np.inf, limit=200)
    assert e == pytest.approx(v + tail_int / g.sf(a), rel=1e-7)


def test_gpd_infinite_es_raises() -> None:
    with pytest.raises(CalibrationError, match="infinite"):
        gpd_var_es(0.99, 0.0, 1.2, 1.0, 1000, 100)


def test_gpd_parameter_recovery() -> None:
    rng = np.random.default_rng(42)
    xi, beta = 0.25, 0.02
    y = stats.genpareto.rvs(xi, scale=beta, size=5000, random_state=rng)
    xi_hat, beta_hat = fit_gpd(y)
    # MLE standard errors (Smith 1985): sd(xi) ~ (1+xi)/sqrt(n) = 0.018, sd(beta)/beta ~ sqrt(2(1+xi)/n) = 0.022
    assert xi_hat == pytest.approx(xi, abs=4 * 0.018)
    assert beta_hat == pytest.approx(beta, rel=4 * 0.022)


def test_pot_on_exact_pareto_tail_recovers_quantile() -> None:
    # Student-t with 3 df: tail index 1/3; POT 99.9% VaR on 50,000 draws within 5% of the true quantile
    rng = np.random.default_rng(8)
    x = stats.t.rvs(3, size=50_000, random_state=rng)
    v, e, t = pot_var_es(x, 0.999, threshold=0.95)
    assert t["k"] == 2500 and t["xi"] == pytest.approx(1 / 3, abs=0.08)
    assert v == pytest.approx(stats.t.ppf(0.999, 3), rel=0.05)
    q = stats.t.ppf(0.999, 3)
    es_true = stats.t.pdf(q, 3) * (3 + q * q) / (2 * 0.001)
    assert e == pytest.approx(es_true, rel=0.10)


def test_pot_threshold_is_order_statistic() -> None:
    x = np.arange(1, 201, dtype=float)  # 1..200
    rng = np.random.default_rng(0)
    rng.shuffle(x)
    t = pot_tail(x, threshold=0.9)  # k = round(200 * 0.1) = 20 exceedances; u = 21st largest = 180
    assert t["k"] == 20 and t["u"] == 180.0 and t["n"] == 200
    with pytest.raises(CalibrationError, match="exceedances"):
        pot_tail(x[:50], threshold=0.9)  # k = 5 < 10


def test_mean_excess_vectorised_equals_loop_and_exponential_is_flat() -> None:
    rng = np.random.default_rng(3)
    x = rng.exponential(2.0, 20_000)  # memoryless: e(u) = 2 for every u
    u = np.linspace(0.0, 6.0, 13)
    me = mean_excess(x, u)
    assert np.allclose(me["mean_excess"], mean_excess_reference(x, u), rtol=1e-10)
    assert np.allclose(me["mean_excess"], 2.0, atol=4 * me["std_error"].max())
    assert (me["n_exceed"].to_numpy() == [(x > ui).sum() for ui in u]).all()


def test_mean_excess_gpd_slope() -> None:
    # GPD(xi, beta): e(u) = (beta + xi u)/(1 - xi); slope xi/(1-xi) = 0.25 for xi = 0.2
    rng = np.random.default_rng(4)
    y = stats.genpareto.rvs(0.2, scale=1.0, size=200_000, random_state=rng)
    me = mean_excess(y, [0.0, 1.0, 2.0])
    assert me["mean_excess"].to_numpy() == pytest.approx([1.25, 1.5, 1.75], rel=0.03)


def test_mean_excess_figure() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_t(4, 3000)
    t = pot_tail(x, 0.9)
    fig = mean_excess_figure(x, fitted=t)
    names = [tr.name for tr in fig.data]
    assert "mean excess" in names and "GPD fit" in names
    me = mean_excess(x)
    assert np.allclose(np.asarray(fig.data[2].y, float), me["mean_excess"].to_numpy(), equal_nan=True)


def test_threshold_stability_table() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_t(4, 4000)
    tab = threshold_stability(x, 0.99)
    assert list(tab.index) == [0.85, 0.875, 0.90, 0.925, 0.95]
    truth = stats.t.ppf(0.99, 4)
    assert (abs(tab["var"] / truth - 1) < 0.08).all()


def _series(x: np.ndarray) -> pd.Series:
    return pd.Series(x, index=pd.date_range("2019-01-01", periods=x.size, freq="D", tz="UTC"), name="SIM")


def test_evt_model_on_iid_t_matches_truth() -> None:
    rng = np.random.default_rng(12)
    x = 0.03 * rng.standard_t(4, 6000)
    m = EVTModel(filter="none", stability=True).fit(_series(x))
    assert set(m.tails_) == {"long", "short"} and set(m.stability_) == {"long", "short"}
    f = m.forecast(24, 0.995)
    v_true = 0.03 * stats.t.ppf(0.995, 4)
    assert f.var == pytest.approx(math.expm1(v_true), rel=0.10)
    assert f.es >= f.var


def test_evt_model_conditional_default_and_direct() -> None:
    rng = np.random.default_rng(13)
    x = 0.02 * rng.standard_t(5, 2000)
    m = EVTModel().fit(_series(x))
    s = m.sigma_next_
    t = m.tails_["short"]
    f = EVTModel(side="short").fit(_series(x)).forecast(24, 0.99)
    v, e = gpd_var_es(0.99, t["u"], t["xi"], t["beta"], int(t["n"]), int(t["k"]))
    assert f.var == pytest.approx(math.expm1(s * v), rel=1e-12)
    assert f.es == pytest.approx(math.expm1(s * e), rel=1e-12)
    d = EVTModel(scaling="direct").fit(_series(x)).forecast(24 * 10, 0.99)
    assert d.effective_n == pytest.approx(m.residuals_.size / 10)
    assert d.var > f.var


def test_evt_level_below_threshold_falls_back_with_warning() -> None:
    rng = np.random.default_rng(14)
    x = 0.02 * rng.standard_t(5, 1000)
    m = EVTModel(filter="none", threshold=0.95, side="short").fit(_series(x))
    with pytest.warns(ModelFitWarning, match="not beyond"):
        f = m.forecast(24, 0.9)
    # the fallback is the empirical tail of the (unfiltered, one-bar) short losses x: with n = 1000 and
    # level 0.9 the tail is exactly the 100 largest, VaR the 900th order statistic (inverted cdf)
    tail = np.sort(x)[900:]
    assert f.var == pytest.approx(math.expm1(np.sort(x)[899]), rel=1e-12)
    assert f.es == pytest.approx(math.expm1(tail.mean()), rel=1e-12)
