"""Monte Carlo models: univariate t / GARCH-t and the t-copula portfolio model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from margincal.errors import ConfigError, DataError
from margincal.risk.measures import expected_shortfall
from margincal.risk.montecarlo import MonteCarloModel, TCopulaMonteCarlo, kendall_correlation, t_copula_loglik
from margincal.risk.parametric import StudentTModel, student_t_var_es


def _series(x: np.ndarray, name: str = "SIM") -> pd.Series:
    return pd.Series(x, index=pd.date_range("2018-01-01", periods=x.size, freq="D", tz="UTC"), name=name)


@pytest.fixture(scope="module")
def t_series() -> pd.Series:
    rng = np.random.default_rng(77)
    return _series(0.025 * rng.standard_t(4, 3000))


def test_mc_t_matches_closed_form_t(t_series: pd.Series) -> None:
    mc = MonteCarloModel(n_sims=400_000, side="short").fit(t_series)
    par = StudentTModel(side="short").fit(t_series)
    assert mc.df_ == pytest.approx(par.df_, rel=1e-12)
    f = mc.forecast(24, 0.99)
    v_log, e_log = student_t_var_es(0.99, par.df_, 0.0, par.sigma_next_ * math.sqrt((par.df_ - 2) / par.df_))
    # quantile sampling error sqrt(p(1-p)/n)/f(q) ~ 0.5%: 3% is ~6 standard errors
    assert f.var == pytest.approx(math.expm1(v_log), rel=0.03)
    # ES on the log scale mapped by exp(x) - 1, as the parametric model (heavier sampling noise: 6%)
    assert f.es == pytest.approx(math.expm1(e_log), rel=0.06)


def test_mc_reproducible_and_seed_sensitive(t_series: pd.Series) -> None:
    a = MonteCarloModel(n_sims=20_000, random_state=1).fit(t_series)
    # a second, separately fitted model with the same seed draws the same paths
    a2 = MonteCarloModel(n_sims=20_000, random_state=1).fit(t_series)
    fa, fa2 = a.forecast(24, 0.99), a2.forecast(24, 0.99)
    assert (fa.var, fa.es) == (fa2.var, fa2.es)
    np.testing.assert_array_equal(a.simulate(24), a2.simulate(24))
    # one daily bar: sigma * sqrt((nu - 2) / nu) * t_nu draws from numpy's generator seeded with random_state
    nu = a.df_
    draws = np.random.default_rng(1).standard_t(nu, 20_000)
    np.testing.assert_allclose(a.simulate(24), a.sigma_next_ * math.sqrt((nu - 2) / nu) * draws, rtol=1e-12)
    b = MonteCarloModel(n_sims=20_000, random_state=2).fit(t_series)
    assert a.forecast(24, 0.99).var != b.forecast(24, 0.99).var


def test_mc_direct_paths_sum_iid_draws(t_series: pd.Series) -> None:
    m = MonteCarloModel(n_sims=200_000, scaling="direct").fit(t_series)
    sims = m.simulate(24 * 9)
    # variance of a sum of 9 i.i.d. unit-variance t draws times sigma: 9 sigma^2 (4 standard errors of var)
    assert np.var(sims) == pytest.approx(9 * m.sigma_next_**2, rel=0.05)
    # sums of 9 t4 draws are closer to normal than one t4 scaled by 3: lower excess kurtosis
    one = MonteCarloModel(n_sims=200_000).fit(t_series).simulate(24 * 9)
    assert stats.kurtosis(sims) < stats.kurtosis(one)


def test_mc_garch_t_simulation_matches_arch_variance_forecast() -> None:
    from arch import arch_model

    sim = arch_model(None, mean="Zero", vol="GARCH", p=1, q=1, dist="t")
    data = sim.simulate([0.05, 0.08, 0.9, 6.0], 3000, burn=500, initial_value=None)["data"].to_numpy() / 100
    m = MonteCarloModel(dist="garch-t", n_sims=100_000, scaling="direct").fit(_series(data))
    g = m.garch_params_
    assert 0.0 < g["alpha"] < 0.3 and 0.6 < g["beta"] < 1.0 and g["nu"] > 2
    res = arch_model(100 * data, mean="Zero", vol="GARCH", p=1, q=1, dist="t", rescale=False).fit(disp="off")
    fc = res.forecast(horizon=5, reindex=False).variance.to_numpy()[-1] / 1e4
    sims = m.simulate(24 * 5)
    # E[(sum of 5 GARCH shocks)^2] = sum of the 5 variance forecasts (shocks are uncorrelated)
    assert np.mean(sims**2) == pytest.approx(fc.sum(), rel=0.05)
    assert m.sigma_next_ == pytest.approx(math.sqrt(fc[0]), rel=1e-6)


def test_mc_rejects_small_n_sims(t_series: pd.Series) -> None:
    with pytest.raises(ConfigError, match="n_sims"):
        MonteCarloModel(n_sims=10).fit(t_series)


# ---------------------------------------------------------------- t copula


def _copula_sample(n: int, corr: np.ndarray, nu: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    d = corr.shape[0]
    y = rng.standard_normal((n, d)) @ np.linalg.cholesky(corr).T
    w = rng.chisquare(nu, n) / nu
    x = y / np.sqrt(w)[:, None]  # multivariate t: t margins with nu df, t copula
    scales = np.array([0.03, 0.04, 0.05][:d])
    idx = pd.date_range("2018-01-01", periods=n, freq="D", tz="UTC")
    return pd.DataFrame(x * scales * math.sqrt((nu - 2) / nu), index=idx, columns=["A", "B", "C"][:d])


@pytest.fixture(scope="module")
def copula_data() -> tuple[pd.DataFrame, np.ndarray]:
    corr = np.array([[1.0, 0.7, 0.3], [0.7, 1.0, 0.5], [0.3, 0.5, 1.0]])
    return _copula_sample(4000, corr, 5.0, 3), corr


def test_kendall_to_pearson_map() -> None:
    # for elliptical distributions tau = 2/pi arcsin(rho): the map sin(pi tau / 2) recovers rho
    rng = np.random.default_rng(0)
    x = rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], 20_000)
    assert kendall_correlation(x)[0, 1] == pytest.approx(0.6, abs=0.015)


def test_copula_loglik_against_scipy_multivariate_t() -> None:
    # copula density = multivariate t density / product of univariate t densities
    rng = np.random.default_rng(1)
    corr = np.array([[1.0, 0.4], [0.4, 1.0]])
    nu = 6.0
    x = stats.multivariate_t(loc=[0, 0], shape=corr, df=nu).rvs(50, random_state=rng)
    u = stats.t.cdf(x, nu)
    expected = np.sum(stats.multivariate_t(loc=[0, 0], shape=corr, df=nu).logpdf(x) - stats.t.logpdf(x, nu).sum(1))
    assert t_copula_loglik(u, corr, nu) == pytest.approx(expected, rel=1e-9)


def test_copula_fit_recovers_parameters(copula_data) -> None:  # type: ignore[no-untyped-def]
    df, corr = copula_data
    m = TCopulaMonteCarlo(filter="none").fit(df)
    assert np.allclose(m.corr_.to_numpy(), corr, atol=0.04)
    assert 3.5 < m.df_ < 8.0  # true 5
    assert [mg["df"] for mg in m.marginals_] == pytest.approx([5.0, 5.0, 5.0], abs=1.5)
    assert not m.repaired_


def test_copula_simulation_reproduces_dependence(copula_data) -> None:  # type: ignore[no-untyped-def]
    df, corr = copula_data
    m = TCopulaMonteCarlo(filter="none", n_sims=50_000).fit(df)
    sims = m.simulate(horizon=24)
    assert list(sims.columns) == ["A", "B", "C"] and len(sims) == 50_000
    assert np.allclose(kendall_correlation(sims.to_numpy()[:8000]), m.corr_.to_numpy(), atol=0.04)
    # tail dependence: joint extreme falls happen far more often than under independence
    q = sims.quantile(0.01)
    joint = ((sims["A"] < q["A"]) & (sims["B"] < q["B"])).mean()
    assert joint > 5 * 0.01 * 0.01


def test_portfolio_forecast_single_asset_equals_marginal(copula_data) -> None:  # type: ignore[no-untyped-def]
    df, _ = copula_data
    m = TCopulaMonteCarlo(filter="none", n_sims=100_000).fit(df)
    f = m.portfolio_forecast({"A": 1.0}, 24, 0.99)
    mg = m.marginals_[0]
    # long A: loss = 1 - exp(sigma * scale * T_df); VaR = 1 - exp(sigma * scale * t_{0.01})
    # (sampling error of the 1% quantile of 1e5 draws ~1%; 4% is 4 standard errors)
    q = stats.t.ppf(0.01, mg["df"]) * mg["scale"] * m.sigma_next_[0]
    assert f.var == pytest.approx(-math.expm1(q), rel=0.04)
    assert f.side == "portfolio" and f.params["weights"] == {"A": 1.0, "B": 0.0, "C": 0.0}
    # sub-additivity of ES on the common scenario set: half A + half B <= ES(half A) + ES(half B)
    sims = m.simulate().to_numpy()
    es = {k: expected_shortfall(m.portfolio_losses(sims, np.array(w)), 0.99)
          for k, w in {"ab": [0.5, 0.5, 0.0], "a": [0.5, 0.0, 0.0], "b": [0.0, 0.5, 0.0]}.items()}
    assert es["ab"] <= es["a"] + es["b"]
    assert m.portfolio_forecast([0.5, 0.5, 0.0], 24, 0.99).es == pytest.approx(es["ab"], rel=1e-12)


def test_copula_empirical_marginals(copula_data) -> None:  # type: ignore[no-untyped-def]
    df, _ = copula_data
    m = TCopulaMonteCarlo(marginals="empirical", filter="none", n_sims=20_000).fit(df)
    sims = m.simulate()
    # empirical marginals never leave the observed range of the residuals
    lo = m.residuals_.min().to_numpy() * m.sigma_next_
    hi = m.residuals_.max().to_numpy() * m.sigma_next_
    assert (sims.to_numpy() >= lo - 1e-12).all() and (sims.to_numpy() <= hi + 1e-12).all()


def test_copula_repairs_a_non_psd_kendall_matrix(copula_data, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from margincal.dependence.nearest import nearest_correlation
    from margincal.risk import montecarlo

    bad = np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])  # 1~2, 2~3 but 1 anti 3
    assert np.linalg.eigvalsh(bad).min() < 0
    monkeypatch.setattr(montecarlo, "kendall_correlation", lambda x: bad.copy())
    m = TCopulaMonteCarlo(filter="none", df=5.0, n_sims=2000).fit(copula_data[0])
    assert m.repaired_
    assert np.allclose(m.corr_.to_numpy(), nearest_correlation(bad, eig_floor=1e-8), atol=1e-10)
    assert np.linalg.eigvalsh(m.corr_.to_numpy()).min() > 0


def test_copula_input_errors(copula_data) -> None:  # type: ignore[no-untyped-def]
    df, _ = copula_data
    bad = df.copy()
    bad.iloc[5, 1] = np.nan
    with pytest.raises(DataError, match="NaN in columns"):
        TCopulaMonteCarlo().fit(bad)
    m = TCopulaMonteCarlo(filter="none", n_sims=2000).fit(df)
    with pytest.raises(DataError, match="not in the fitted data"):
        m.portfolio_forecast({"Z": 1.0})
    with pytest.raises(DataError, match="3 instruments"):
        m.portfolio_forecast([1.0, 2.0])
