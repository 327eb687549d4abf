"""Backtest path models are the family's causal fit_path: kernels against their definitions; no look-ahead."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from margincal.backtest.models import FamilyPath, PublishedPath, make_path_model
from margincal.errors import ConfigError
from margincal.risk.measures import expected_shortfall, value_at_risk
from margincal.risk.parametric import cornish_fisher_domain
from margincal.risk.path import cornish_fisher_domain_vec, inverted_cdf_index, rolling_moments, sorted_tails


def fat_returns(n: int, seed: int = 0, scale: float = 0.03) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = scale * np.exp(np.cumsum(rng.normal(0, 0.08, n)) * 0.5)  # slowly varying volatility
    return rng.standard_t(4, size=n) * vol / np.sqrt(2.0)


def test_inverted_cdf_index_matches_numpy() -> None:
    for q in (0.5, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999, 0.2):
        n = np.arange(1, 1500)
        ref = np.array([np.quantile(np.arange(k), q, method="inverted_cdf") for k in n])
        np.testing.assert_array_equal(inverted_cdf_index(n, q), ref)


@pytest.mark.parametrize("window", [None, 37])
@pytest.mark.parametrize("level", [0.97, 0.99, 0.995])
def test_sorted_tails_match_the_measures_on_every_prefix(window: int | None, level: float) -> None:
    """The sorted-list kernel gives, at each row, value_at_risk / expected_shortfall of the scaled sample."""
    x = np.random.default_rng(3).standard_t(3, size=300) * 0.02
    x[50:60] = 0.004  # ties
    first, n = 5, x.size
    scale = np.linspace(0.5, 2.0, n + 1)
    drop = None if window is None else np.maximum(0, np.arange(n + 1) - window - first)
    out = sorted_tails(x[first:], np.arange(first, n) + 1, scale, level=level, t_min=25, drop_before=drop)
    for t in range(25, n + 1):
        lo = first if window is None else max(first, t - window)
        s = scale[t] * x[lo:t]
        for side, loss in (("long", -np.expm1(s)), ("short", np.expm1(s))):
            assert out[f"var_{side}"][t] == pytest.approx(value_at_risk(loss, level), rel=1e-12)
            assert out[f"es_{side}"][t] == pytest.approx(max(expected_shortfall(loss, level),
                                                             value_at_risk(loss, level)), rel=1e-12)
    assert np.isnan(out["var_long"][:25]).all()


@pytest.mark.parametrize("refit", [1, 3, 90])
@pytest.mark.parametrize("level", [0.5, 0.97, 0.99, 0.995])
@pytest.mark.parametrize("ties", ["none", "rounded", "three values", "signed zeros"])
def test_var_only_read_of_a_growing_sample_is_the_es_reads_order_statistics(refit: int, level: float,
                                                                            ties: str) -> None:
    """es=False without a window reads the order statistics from the tail candidates only: the same values
    (bit for bit, ties and the sign of zero included) as the sorted list of the ES read."""
    rng = np.random.default_rng(11)
    x = rng.standard_t(3, size=900) * 0.02
    if ties == "rounded":
        x = np.round(x, 2)
    elif ties == "three values":
        x = rng.integers(-1, 2, size=x.size) * 0.01
    elif ties == "signed zeros":
        x = np.where(rng.random(x.size) < 0.3, np.where(rng.random(x.size) < 0.5, 0.0, -0.0), x)
    first, n = 7, x.size
    scale = np.linspace(0.5, 2.0, n + 1)
    avail = np.arange(first, n) + 1
    full = sorted_tails(x[first:], avail, scale, level=level, t_min=25, refit=refit)
    var_only = sorted_tails(x[first:], avail, scale, level=level, t_min=25, refit=refit, es=False)
    for c in ("var_long", "var_short"):
        np.testing.assert_array_equal(var_only[c], full[c])
        ok = np.isfinite(full[c])
        np.testing.assert_array_equal(np.signbit(var_only[c][ok]), np.signbit(full[c][ok]))
    assert np.isnan(var_only["es_long"]).all()


@pytest.mark.parametrize("window", [None, 50])
def test_rolling_moments_match_scipy(window: int | None) -> None:
    z = np.random.default_rng(7).standard_t(5, size=260)
    _, sk, ku = rolling_moments(z, 10, window)
    for t in (12, 40, 61, 200, 260):
        lo = 10 if window is None else max(10, t - window)
        assert sk[t] == pytest.approx(stats.skew(z[lo:t]), rel=1e-8, abs=1e-10)
        assert ku[t] == pytest.approx(stats.kurtosis(z[lo:t]), rel=1e-8, abs=1e-10)


def test_cornish_fisher_domain_vec_matches_scalar() -> None:
    rng = np.random.default_rng(2)
    s, k = rng.normal(0, 1.5, 300), rng.uniform(-2, 15, 300)
    vs, vk, adj = cornish_fisher_domain_vec(s, k)
    for i in range(s.size):
        a, b, c = cornish_fisher_domain(float(s[i]), float(k[i]))
        assert (vs[i], vk[i], adj[i]) == (pytest.approx(a, abs=1e-12), pytest.approx(b, abs=1e-12), c)


@pytest.mark.parametrize("spec", ["fhs", "hs", "normal", "cf", "t@30", "evt@30"])
def test_family_path_is_the_models_fit_path(spec: str) -> None:
    r = fat_returns(300, seed=4)
    m = make_path_model(spec)
    assert isinstance(m, FamilyPath)
    vl, vs = m.var_paths(r, side_level=0.995, horizon_bars=2.0, bar_hours=24.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = m.tail_model().fit_path(r, horizon=48, level=0.995, refit=m.refit_bars(24.0), bar_hours=24.0)
    np.testing.assert_array_equal(vl, p["var_long"].to_numpy()[:-1])
    np.testing.assert_array_equal(vs, p["var_short"].to_numpy()[:-1])


def test_default_refit_of_likelihood_models_is_90_days_in_bars() -> None:
    assert make_path_model("t").refit_bars(24.0) == 90
    assert make_path_model("t").refit_bars(1.0) == 2160
    assert make_path_model("fhs").refit_bars(1.0) == 1
    assert make_path_model("evt@7").refit_bars(1.0) == 7


MODELS_FOR_LOOKAHEAD = ["fhs", "hs", "normal", "cf", "fhs@5", "cf@3", "risk:normal@9"]


@settings(max_examples=20, deadline=None)
@given(cut=st.integers(45, 139), seed=st.integers(0, 10_000), shock=st.floats(-0.9, 2.0))
def test_changing_future_returns_never_changes_past_margins(cut: int, seed: int, shock: float) -> None:
    r = fat_returns(140, seed=seed)
    r2 = r.copy()
    rng = np.random.default_rng(seed + 1)
    r2[cut:] = rng.normal(0, 0.2, r.size - cut) + shock  # anything at and after the cut
    for spec in MODELS_FOR_LOOKAHEAD:
        m = make_path_model(spec)
        a = m.var_paths(r, side_level=0.995, horizon_bars=1.0, bar_hours=24.0)
        b = m.var_paths(r2, side_level=0.995, horizon_bars=1.0, bar_hours=24.0)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x[: cut + 1], y[: cut + 1], err_msg=spec)


@pytest.mark.parametrize("cut", [150, 199])
def test_changing_future_returns_never_changes_past_margins_mle(cut: int) -> None:
    r = fat_returns(220, seed=cut)
    r2 = r.copy()
    r2[cut:] = -r2[cut:] * 5 + 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for spec in ("t@20", "evt@20", "mc@40"):
            m = make_path_model(spec)
            a = m.var_paths(r, side_level=0.995, horizon_bars=1.0, bar_hours=24.0)
            b = m.var_paths(r2, side_level=0.995, horizon_bars=1.0, bar_hours=24.0)
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x[: cut + 1], y[: cut + 1], err_msg=spec)


def test_make_path_model_parses_specs() -> None:
    m = make_path_model("fhs@5")
    assert isinstance(m, FamilyPath) and m.refit == 5 and m.label == "fhs@5"
    assert make_path_model("t@20").label == "t@20"
    rm = make_path_model("risk:fhs@3")
    assert isinstance(rm, FamilyPath) and not rm.fast and rm.label == "risk:fhs@3"
    assert isinstance(make_path_model("published"), PublishedPath)
    assert make_path_model("published-mm").label == "published-mm"
    with pytest.raises(ConfigError, match="unknown model"):
        make_path_model("nope")
    with pytest.raises(ConfigError, match="whole number"):
        make_path_model("fhs@x")
    with pytest.raises(ConfigError, match=">= 1"):
        make_path_model("fhs@0")
