"""Fast margin paths == the risk module's models refitted every day; no look-ahead."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from margincal.backtest.models import (
    CornishFisherPath,
    EVTPath,
    FHSPath,
    HSPath,
    NormalPath,
    RefitModel,
    StudentTPath,
    cornish_fisher_domain_vec,
    inverted_cdf_index,
    make_path_model,
    per_bar_lambda,
    sorted_window_quantiles,
)
from margincal.errors import ConfigError
from margincal.risk.historical import FilteredHistoricalSimulation, HistoricalSimulation
from margincal.risk.parametric import CornishFisherModel, NormalModel, StudentTModel, cornish_fisher_domain


def fat_returns(n: int, seed: int = 0, scale: float = 0.03) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = scale * np.exp(np.cumsum(rng.normal(0, 0.08, n)) * 0.5)  # slowly varying volatility
    return rng.standard_t(4, size=n) * vol / np.sqrt(2.0)


def assert_paths_equal(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
                       rtol: float = 0.0) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
        ok = ~np.isnan(x)
        assert ok.sum() > 0
        np.testing.assert_allclose(x[ok], y[ok], rtol=rtol, atol=0)


def test_inverted_cdf_index_matches_numpy() -> None:
    for q in (0.5, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999, 0.2):
        n = np.arange(1, 1500)
        ref = np.array([np.quantile(np.arange(k), q, method="inverted_cdf") for k in n])
        np.testing.assert_array_equal(inverted_cdf_index(n, q), ref)


@pytest.mark.parametrize("window", [None, 37])
@pytest.mark.parametrize("refit", [1, 4])
def test_sorted_window_matches_a_sort_every_step(window: int | None, refit: int) -> None:
    x = np.random.default_rng(3).normal(size=300)
    x[50:60] = 0.25  # ties
    lo, hi = sorted_window_quantiles(x, first=5, window=window, t_min=25, q=0.97, refit_every=refit)
    last = None
    for t in range(x.size):
        if t < 25:
            assert np.isnan(lo[t]) and np.isnan(hi[t])
            continue
        if (t - 25) % refit == 0:
            s = x[5:t] if window is None else x[max(5, t - window):t]
            last = (np.quantile(-s, 0.97, method="inverted_cdf"), np.quantile(s, 0.97, method="inverted_cdf"))
        assert -lo[t] == last[0] and hi[t] == last[1]


@pytest.mark.parametrize("window", [None, 90])
@pytest.mark.parametrize("h", [1.0, 3.0])
def test_fhs_path_equals_refit_every_day(window: int | None, h: float) -> None:
    r = fat_returns(260, seed=1)
    fast = FHSPath(window=window).var_paths(r, side_level=0.995, horizon_bars=h, bar_hours=24.0)
    naive = RefitModel(FilteredHistoricalSimulation, window=window).var_paths(
        r, side_level=0.995, horizon_bars=h, bar_hours=24.0)
    assert_paths_equal(fast, naive)  # bit-identical: same order statistic, same arithmetic


@pytest.mark.parametrize("window", [None, 60])
def test_hs_path_equals_refit_every_day(window: int | None) -> None:
    r = fat_returns(220, seed=2)
    fast = HSPath(window=window).var_paths(r, side_level=0.99, horizon_bars=2.0, bar_hours=24.0)
    naive = RefitModel(HistoricalSimulation, window=window).var_paths(
        r, side_level=0.99, horizon_bars=2.0, bar_hours=24.0)
    assert_paths_equal(fast, naive)


@pytest.mark.parametrize("sigma", ["ewma", "sample"])
def test_normal_path_equals_refit_every_day(sigma: str) -> None:
    r = fat_returns(200, seed=4)
    fast = NormalPath(sigma=sigma).var_paths(r, side_level=0.995, horizon_bars=4.0, bar_hours=24.0)
    naive = RefitModel(NormalModel, sigma=sigma).var_paths(r, side_level=0.995, horizon_bars=4.0, bar_hours=24.0)
    assert_paths_equal(fast, naive, rtol=1e-12)


@pytest.mark.parametrize("kw", [{}, {"window": 60}, {"sigma": "sample"}])
def test_cornish_fisher_path_equals_refit_every_day(kw: dict) -> None:
    r = fat_returns(140, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the risk model warns when its monotonicity guard acts
        naive = RefitModel(CornishFisherModel, **kw).var_paths(r, side_level=0.995, horizon_bars=1.0, bar_hours=24.0)
    fast = CornishFisherPath(**kw).var_paths(r, side_level=0.995, horizon_bars=1.0, bar_hours=24.0)
    # moments by cumulative sums vs scipy's two-pass moments: equal to rounding
    assert_paths_equal(fast, naive, rtol=1e-9)


def test_cornish_fisher_guard_matches_risk_module() -> None:
    rng = np.random.default_rng(6)
    s = rng.uniform(-3, 3, 400)
    k = rng.uniform(-2, 20, 400)
    vs, vk = cornish_fisher_domain_vec(s, k)
    for i in range(s.size):
        es, ek, _ = cornish_fisher_domain(float(s[i]), float(k[i]))
        assert vs[i] == es and vk[i] == ek


@pytest.mark.parametrize("sigma", ["ewma", "sample"])
def test_student_t_path_equals_refit_at_refit_dates(sigma: str) -> None:
    """Between likelihood refits of nu the fast path moves with the volatility; at refit dates both fit
    scipy.stats.t.fit on the same residuals, so they agree exactly."""
    r = fat_returns(180, seed=7)
    k = 25
    t_min = 41 if sigma == "ewma" else 20
    fast = StudentTPath(sigma=sigma, refit_every=k).var_paths(r, side_level=0.995, horizon_bars=1.0,
                                                              bar_hours=24.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        naive = RefitModel(StudentTModel, refit_every=k, t_min=t_min, sigma=sigma).var_paths(
            r, side_level=0.995, horizon_bars=1.0, bar_hours=24.0)
    dates = np.arange(t_min, r.size, k)
    for a, b in zip(fast, naive, strict=True):
        np.testing.assert_allclose(a[dates], b[dates], rtol=1e-12)
        assert np.isnan(a[:t_min]).all()


def test_student_t_moment_dof_from_scipy_kurtosis() -> None:
    r = fat_returns(300, seed=8)
    vl, vs = StudentTPath(df_method="moments", window=120).var_paths(r, side_level=0.99, horizon_bars=1.0,
                                                                     bar_hours=24.0)
    lam = 0.94
    v = np.empty(r.size + 1)
    v[0] = np.mean(r[:30] ** 2)
    for i, x in enumerate(r):  # EWMA by the plain recursion
        v[i + 1] = lam * v[i] + (1 - lam) * x * x
    sig = np.sqrt(v)
    z = r / sig[:-1]
    for t in (60, 150, 299):
        zz = z[max(30, t - 120):t]
        kurt = stats.kurtosis(zz)  # excess, biased moment estimator
        nu = min(4 + 6 / kurt, 500.0) if kurt > 0 else 500.0
        q = stats.t.ppf(0.99, nu) * np.sqrt((nu - 2) / nu) * sig[t]
        assert vs[t] == pytest.approx(np.expm1(q), rel=1e-9)
        assert vl[t] == pytest.approx(-np.expm1(-q), rel=1e-9)


def test_lambda_is_per_day_on_hourly_bars() -> None:
    r = fat_returns(200, seed=9, scale=0.006)
    lam_h = per_bar_lambda(0.94, 1.0)
    assert lam_h == pytest.approx(0.94 ** (1 / 24))
    fast = FHSPath(lam=0.94).var_paths(r, side_level=0.995, horizon_bars=8.0, bar_hours=1.0)
    naive = RefitModel(FilteredHistoricalSimulation, lam=lam_h).var_paths(r, side_level=0.995, horizon_bars=8.0,
                                                                          bar_hours=1.0)
    assert_paths_equal(fast, naive)


def test_fhs_refit_every_k_holds_the_residual_quantile() -> None:
    r = fat_returns(200, seed=10)
    exact = FHSPath().var_paths(r, side_level=0.995, horizon_bars=1.0, bar_hours=24.0)
    every5 = FHSPath(refit_every=5).var_paths(r, side_level=0.995, horizon_bars=1.0, bar_hours=24.0)
    refits = np.arange(41, r.size, 5)
    np.testing.assert_array_equal(exact[1][refits], every5[1][refits])
    # between refits: margin / sigma is constant (same residual quantile, current volatility)
    from margincal.vol.ewma import ewma_variance

    sig = np.sqrt(ewma_variance(r, 0.94, 30))[:-1]
    ratio = np.log1p(every5[1][41:]) / sig[41:]
    blocks = (np.arange(41, r.size) - 41) // 5
    for b in np.unique(blocks):
        np.testing.assert_allclose(ratio[blocks == b], ratio[blocks == b][0], rtol=1e-12)


MODELS_FOR_LOOKAHEAD = [
    FHSPath(), FHSPath(window=50), HSPath(window=40), NormalPath(), NormalPath(sigma="sample"),
    CornishFisherPath(window=60), StudentTPath(df_method="moments"),
]
# likelihood-fitted shapes (slower): checked at fixed cuts below
MLE_MODELS_FOR_LOOKAHEAD = [StudentTPath(refit_every=30), EVTPath(refit_every=30)]


def _assert_past_unchanged(models: list, r: np.ndarray, r2: np.ndarray, cut: int) -> None:
    for m in models:
        a = m.var_paths(r, side_level=0.995, horizon_bars=1.0, bar_hours=24.0)
        b = m.var_paths(r2, side_level=0.995, horizon_bars=1.0, bar_hours=24.0)
        for x, y in zip(a, b, strict=True):
            # the margin for bar `cut` uses returns before it only
            np.testing.assert_array_equal(x[: cut + 1], y[: cut + 1], err_msg=repr(m))


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(45, 139), seed=st.integers(0, 10_000), shock=st.floats(-0.9, 2.0))
def test_changing_future_returns_never_changes_past_margins(cut: int, seed: int, shock: float) -> None:
    r = fat_returns(140, seed=seed)
    r2 = r.copy()
    rng = np.random.default_rng(seed + 1)
    r2[cut:] = rng.normal(0, 0.2, r.size - cut) + shock  # anything at and after the cut
    _assert_past_unchanged(MODELS_FOR_LOOKAHEAD, r, r2, cut)


@pytest.mark.parametrize("cut", [150, 199])
def test_changing_future_returns_never_changes_past_margins_mle(cut: int) -> None:
    r = fat_returns(220, seed=cut)
    r2 = r.copy()
    r2[cut:] = -r2[cut:] * 5 + 0.3
    _assert_past_unchanged(MLE_MODELS_FOR_LOOKAHEAD, r, r2, cut)


def test_make_path_model_parses_specs() -> None:
    assert isinstance(make_path_model("fhs"), FHSPath)
    m = make_path_model("fhs@5")
    assert isinstance(m, FHSPath) and m.refit_every == 5 and m.label == "fhs@5"
    assert make_path_model("t@20").label == "t@20"
    rm = make_path_model("risk:fhs@3")
    assert isinstance(rm, RefitModel) and rm.refit_every == 3 and rm.label == "risk:fhs@3"
    with pytest.raises(ConfigError, match="recursively"):
        make_path_model("normal@5")
    with pytest.raises(ConfigError, match="unknown model"):
        make_path_model("nope")
    with pytest.raises(ConfigError, match="whole number"):
        make_path_model("fhs@x")


@pytest.mark.parametrize("sigma", ["ewma", "sample"])
def test_evt_path_equals_refit_at_refit_dates(sigma: str) -> None:
    from margincal.risk.evt import EVTModel

    r = fat_returns(400, seed=11)
    k = 50
    t_min = 41 if sigma == "ewma" else 20
    fast = EVTPath(sigma=sigma, refit_every=k).var_paths(r, side_level=0.995, horizon_bars=1.0, bar_hours=24.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        naive = RefitModel(EVTModel, refit_every=k, t_min=t_min, filter="ewma" if sigma == "ewma" else "none"
                           ).var_paths(r, side_level=0.995, horizon_bars=1.0, bar_hours=24.0)
    dates = np.arange(t_min, r.size, k)
    ok = ~np.isnan(naive[0][dates])  # the risk model cannot fit a tail on fewer than 100 residuals
    assert ok.sum() >= 5
    for a, b in zip(fast, naive, strict=True):
        np.testing.assert_allclose(a[dates][ok], b[dates][ok], rtol=1e-12)
    # the fast path starts as soon as a tail can be fitted: k = round(n (1 - 0.9)) >= 10 exceedances
    # needs n = 96 residuals (95 * (1 - 0.9) is 9.4999... in floating point)
    assert round(95 * (1 - 0.9)) == 9 and round(96 * (1 - 0.9)) == 10
    first = int(np.flatnonzero(~np.isnan(fast[1]))[0])
    assert first == (96 + 30 if sigma == "ewma" else 96)


def test_gpd_var_matches_risk_module_and_exponential_limit() -> None:
    from margincal.backtest.models import gpd_var
    from margincal.risk.evt import gpd_var_es

    for xi in (-0.2, 0.1, 0.4, 0.9):
        assert gpd_var(0.995, 1.3, xi, 0.6, 1000, 100) == gpd_var_es(0.995, 1.3, xi, 0.6, 1000, 100)[0]
    # xi -> 0: u - beta ln(n/N_u (1-p)) = 1.3 - 0.6 ln(0.05)
    assert gpd_var(0.995, 1.3, 0.0, 0.6, 1000, 100) == pytest.approx(1.3 - 0.6 * np.log(0.05))
    assert np.isfinite(gpd_var(0.995, 1.3, 1.2, 0.6, 1000, 100))  # infinite ES, finite VaR
