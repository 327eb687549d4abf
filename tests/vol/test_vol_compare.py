"""Diebold-Mariano test (hand example, statsmodels HAC), losses, walk-forward alignment and no look-ahead."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from margincal.errors import DataError
from margincal.vol.compare import (
    diebold_mariano,
    evaluate,
    newey_west_lags,
    qlike,
    squared_error,
    walk_forward,
)
from margincal.vol.ewma import ewma_variance
from margincal.vol.garch import GarchVolatility
from margincal.vol.har import HARVolatility
from margincal.vol.ml import daily_panel

REFERENCE = Path(__file__).resolve().parents[1] / "reference"

# ------------------------------------------------------------------ DM test: the worked example in
# tests/reference/vol_diebold_mariano_example.md
D = [1.0, -1.0, 2.0, 0.0, 3.0, 1.0]


def test_dm_hand_example_no_lag():
    # d_bar = 6/6 = 1; deviations 0, -2, 1, -1, 2, 0; g0 = (0+4+1+1+4+0)/6 = 10/6
    # DM = 1 / sqrt((10/6)/6) = 1 / sqrt(10/36) = 6/sqrt(10) = 1.897367
    r = diebold_mariano(D, np.zeros(6), h=1, lags=0, hln=False)
    assert r.stat == pytest.approx(6 / math.sqrt(10), rel=1e-12)
    assert r.pvalue == pytest.approx(2 * stats.norm.sf(6 / math.sqrt(10)), rel=1e-12)
    # HLN, h = 1: factor sqrt((T + 1 - 2h + h(h-1)/T)/T) = sqrt(5/6); DM* = 6/sqrt(10) * sqrt(5/6) = sqrt(3)
    r = diebold_mariano(D, np.zeros(6), h=1, lags=0)
    assert r.stat == pytest.approx(math.sqrt(3), rel=1e-12)
    assert r.pvalue == pytest.approx(2 * stats.t.sf(math.sqrt(3), df=5), rel=1e-12)
    assert r.mean_diff == 1.0 and r.n == 6


def test_dm_hand_example_one_newey_west_lag():
    # g1 = (1/6) sum_{t>=1} e_t e_{t-1} = (1/6)((-2)(0) + (1)(-2) + (-1)(1) + (2)(-1) + (0)(2)) = -5/6
    # Bartlett weight for lag 1 of L = 1: 1 - 1/2 = 1/2 ; V = 10/6 + 2 * (1/2) * (-5/6) = 5/6
    # DM = 1 / sqrt((5/6)/6) = 6/sqrt(5) = 2.683282 ; with HLN (h=1): * sqrt(5/6) = sqrt(6)
    r = diebold_mariano(D, np.zeros(6), h=1, lags=1, hln=False)
    assert r.stat == pytest.approx(6 / math.sqrt(5), rel=1e-12)
    assert diebold_mariano(D, np.zeros(6), h=1, lags=1).stat == pytest.approx(math.sqrt(6), rel=1e-12)
    # h = 2 uses lags = h - 1 = 1 by default; HLN factor sqrt((6 + 1 - 4 + 2/6)/6) = sqrt(5/9); DM* = 6/sqrt(5) * sqrt(5)/3 = 2
    r2 = diebold_mariano(D, np.zeros(6), h=2)
    assert r2.lags == 1
    assert r2.stat == pytest.approx(2.0, rel=1e-12)
    assert r2.pvalue == pytest.approx(2 * stats.t.sf(2.0, df=5), rel=1e-12)


def test_dm_hand_example_matches_reference_file():
    ref = json.loads((REFERENCE / "vol_diebold_mariano_example.json").read_text())
    for case in ref["cases"]:
        r = diebold_mariano(ref["loss_a"], ref["loss_b"], h=case["h"], lags=case["lags"], hln=case["hln"])
        assert r.stat == pytest.approx(case["stat"], rel=1e-9)
        assert r.pvalue == pytest.approx(case["pvalue"], rel=1e-6)


@pytest.mark.parametrize("lags", [0, 3, 7])
def test_dm_equals_statsmodels_hac_t_stat(lags):
    # DM without HLN is the t-statistic of the mean of d with a Newey-West (Bartlett) HAC variance,
    # i.e. statsmodels OLS of d on a constant, cov_type="HAC", no small-sample correction
    rng = np.random.default_rng(lags)
    a = rng.gamma(2.0, 1.0, 400)
    b = a + 0.1 + np.convolve(rng.normal(0, 1, 403), [1, 0.5, 0.25, 0.1], "valid")
    r = diebold_mariano(a, b, lags=lags, hln=False)
    ols = sm.OLS(a - b, np.ones(a.size)).fit(cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": False})
    assert r.stat == pytest.approx(float(ols.tvalues[0]), rel=1e-10)
    assert r.pvalue == pytest.approx(float(ols.pvalues[0]), rel=1e-8)


def test_dm_edge_cases():
    assert newey_west_lags(1961) == 7  # floor(4 * 19.61^(2/9)) = floor(7.77)
    with pytest.raises(DataError, match="constant"):
        diebold_mariano([1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0])
    with pytest.raises(DataError, match="aligned"):
        diebold_mariano([1.0, 2.0], [1.0])


def test_losses_by_hand():
    # QLIKE(RV=2, F=1) = 2 - ln 2 - 1 = 0.306853 ; QLIKE(1, 2) = 0.5 - ln 0.5 - 1 = 0.193147 ; QLIKE(x, x) = 0
    np.testing.assert_allclose(qlike([2.0, 1.0, 3.0], [1.0, 2.0, 3.0]), [1 - math.log(2), math.log(2) - 0.5, 0.0], atol=1e-15)
    np.testing.assert_allclose(squared_error([2.0, 1.0], [1.0, 3.0]), [1.0, 4.0])
    with pytest.raises(DataError):
        qlike([1.0], [0.0])


# ------------------------------------------------------------------ walk-forward on synthetic hourly data
def _synthetic_inputs(n_days: int = 520, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = n_days * 24
    # hourly GARCH-like returns: variance mean-reverting with shocks
    s2 = np.empty(n)
    r = np.empty(n)
    s2[0] = 1e-5
    z = rng.standard_t(5, n) * math.sqrt(3 / 5)
    for t in range(n):
        if t:
            s2[t] = 2e-7 + 0.05 * r[t - 1] ** 2 + 0.93 * s2[t - 1]
        r[t] = math.sqrt(s2[t]) * z[t]
    close = 100 * np.exp(np.cumsum(r))
    open_ = np.concatenate([[100.0], close[:-1]])
    wig = np.abs(rng.normal(0, 0.3, (2, n))) * np.sqrt(s2)
    high = np.maximum(open_, close) * np.exp(wig[0])
    low = np.minimum(open_, close) * np.exp(-wig[1])
    idx = pd.date_range("2022-01-01", periods=n, freq="h", tz="UTC")
    hourly = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                           "volume": rng.lognormal(3, 0.5, n)}, index=idx)
    days = pd.date_range("2022-01-01", periods=n_days, freq="D", tz="UTC")
    oi = pd.Series(1e9 * np.exp(np.cumsum(rng.normal(0, 0.02, n_days))), index=days)
    f_idx = pd.date_range("2022-01-01", periods=n_days * 3, freq="8h", tz="UTC")
    funding = pd.Series(rng.normal(1e-4, 1e-4, f_idx.size), index=f_idx)
    return hourly, oi, funding


ML_FAST = {"max_iter": 60, "learning_rate": 0.1}


def test_walk_forward_alignment_against_direct_fits():
    hourly, oi, funding = _synthetic_inputs()
    panel = daily_panel(hourly, open_interest=oi, funding=funding)
    start = panel.index[400]
    f = walk_forward(panel, start=start, refit_every=50, models=("EWMA", "GARCH(1,1)-t", "HAR"))
    rv = panel["rv"].to_numpy()
    ret = panel["ret"].to_numpy()
    assert f.index[0] == start and f.index[-1] == panel.index[-1]
    np.testing.assert_array_equal(f["rv"].to_numpy(), rv[400:])
    # refit origins are 399, 449, 499: day 437 is forecast from origin 436 with the model refitted at 399
    D, t0 = 437, 399
    har = HARVolatility().fit(rv[: t0 + 1])
    assert f.loc[panel.index[D], "HAR"] == pytest.approx(har.predict_one_step(rv[:D])[-1], rel=1e-12)
    g = GarchVolatility(kind="garch", dist="t").fit(ret[1 : t0 + 1])
    assert f.loc[panel.index[D], "GARCH(1,1)-t"] == pytest.approx(g.filter_variance(ret[1:D])[-1], rel=1e-9)
    assert f.loc[panel.index[D], "EWMA"] == pytest.approx(ewma_variance(ret[1:D], 0.94)[-1], rel=1e-12)
    assert not f.isna().any().any()


def test_no_look_ahead_perturbing_future_data_never_changes_past_forecasts():
    hourly, oi, funding = _synthetic_inputs()
    panel = daily_panel(hourly, open_interest=oi, funding=funding)
    start = panel.index[400]
    kw = {"start": start, "refit_every": 40, "ml_params": ML_FAST}
    base = walk_forward(panel, **kw)

    cut = panel.index[450]  # data of days <= 450 kept; everything after is changed
    rng = np.random.default_rng(99)
    h2 = hourly.copy()
    after = h2.index >= cut + pd.Timedelta(days=1)
    shock = np.exp(np.cumsum(rng.normal(0, 0.02, after.sum())))
    for c in ("open", "high", "low", "close"):
        h2.loc[after, c] = h2.loc[after, c].to_numpy() * shock
    h2.loc[after, "volume"] = h2.loc[after, "volume"].to_numpy() * 5
    oi2 = oi.copy()
    oi2[oi2.index > cut] *= 3
    f2 = funding.copy()
    f2[f2.index >= cut + pd.Timedelta(days=1)] = -0.002
    panel2 = daily_panel(h2, open_interest=oi2, funding=f2)
    pert = walk_forward(panel2, **kw)

    past = base.index <= cut + pd.Timedelta(days=1)  # forecasts made at the end of day <= cut
    assert past.sum() == 52
    pd.testing.assert_frame_equal(base[past].drop(columns="rv"), pert[past].drop(columns="rv"), check_exact=True)
    # and the perturbation does reach the later forecasts of every model
    for m in ("EWMA", "GARCH(1,1)-t", "HAR", "ML"):
        assert not np.allclose(base.loc[~past, m], pert.loc[~past, m]), m


def test_evaluate_table_shape_and_reference_model():
    hourly, oi, funding = _synthetic_inputs(460, seed=3)
    panel = daily_panel(hourly, open_interest=oi, funding=funding)
    f = walk_forward(panel, start=panel.index[380], refit_every=40, ml_params=ML_FAST)
    t = evaluate(f)
    assert list(t["model"]) == ["EWMA", "GARCH(1,1)-t", "HAR", "ML"]
    best = t[t["model"].isin(["EWMA", "GARCH(1,1)-t", "HAR"])].sort_values("qlike")["model"].iloc[0]
    assert (t["dm_qlike_vs"] == best).all()
    assert np.isnan(t.loc[t["model"] == best, "dm_qlike_stat"]).all()
    # sign convention: a model with larger mean loss than the reference has a positive DM statistic
    others = t[t["model"] != best]
    assert (np.sign(others["dm_qlike_stat"]) == np.sign(others["qlike"] - t.loc[t["model"] == best, "qlike"].iloc[0])).all()


def test_real_btc_short_window_runs():
    # a short out-of-sample window on the bundled BTC data (classical models only, fast)
    from margincal.vol.compare import load_asset_panel

    panel = load_asset_panel("BTC")
    assert {"open_interest", "funding", "volume", "rv"} <= set(panel.columns)
    f = walk_forward(panel, start="2024-01-01", end="2024-03-31", refit_every=30, models=("EWMA", "GARCH(1,1)-t", "HAR"))
    assert len(f) == 91 and not f.isna().any().any()
    t = evaluate(f)
    assert (t["qlike"] > 0).all() and (t["qlike"] < 2).all()
