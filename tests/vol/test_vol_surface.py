"""SVI / SSVI: parameter recovery, Gatheral-Jacquier arbitrage example, density vs Breeden-Litzenberger,
calendar check, interpolation, Deribit loaders and fits on the bundled snapshots."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from margincal.config import sample_data_dir
from margincal.errors import ConfigError, DataError
from margincal.vol.surface import (
    QuoteFilterWarning,
    SSVISurface,
    SVIParams,
    SVISurface,
    butterfly_violations,
    calendar_violations,
    fit_svi,
    g_function_reference,
    load_deribit_book_summary,
    load_deribit_mark_iv_snapshot,
    ssvi_slice_to_svi,
    ssvi_total_variance,
    svi_total_variance,
)

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
GJ = json.loads((REFERENCE / "vol_gatheral_jacquier_svi_example.json").read_text())
CLEAN = SVIParams(a=0.04, b=0.4, rho=-0.4, m=0.05, sigma=0.2)


# ------------------------------------------------------------------ raw SVI recovery
@pytest.mark.parametrize("p", [
    (0.04, 0.4, -0.4, 0.05, 0.2),
    (0.02, 0.1, -0.7, -0.1, 0.3),
    (-0.01, 0.25, 0.3, 0.1, 0.15),
    (0.002, 0.03, -0.3, 0.0, 0.05),  # a short-dated slice
])
def test_svi_recovers_known_parameters_exactly(p):
    k = np.linspace(-0.8, 0.8, 31)
    w = svi_total_variance(k, *p)
    f = fit_svi(k, w, T=0.5)
    np.testing.assert_allclose(f.params.as_tuple(), p, atol=2e-5)
    assert f.rmse_w < 1e-8


def test_svi_recovers_parameters_under_noise():
    rng = np.random.default_rng(1)
    p = (0.04, 0.4, -0.4, 0.05, 0.2)
    k = np.linspace(-1.0, 1.0, 60)
    w = svi_total_variance(k, *p) + rng.normal(0, 2e-4, k.size)
    f = fit_svi(k, w, T=1.0)
    assert f.rmse_w < 3e-4  # of the order of the noise
    np.testing.assert_allclose(f.params.as_tuple(), p, atol=0.02)
    fiv = fit_svi(k, w, T=1.0, space="iv")
    np.testing.assert_allclose(fiv.params.as_tuple(), p, atol=0.03)


def test_fit_respects_constraints():
    # a slice with few, noisy quotes: whatever the fit, b >= 0, |rho| < 1, sigma > 0, min w >= 0, Lee bound
    rng = np.random.default_rng(2)
    k = np.linspace(-0.3, 0.3, 8)
    w = 0.01 + 0.05 * k**2 + rng.normal(0, 2e-3, k.size)
    p = fit_svi(k, np.abs(w), T=0.1).params
    assert p.b >= 0 and abs(p.rho) < 1 and p.sigma > 0
    assert p.min_total_variance >= -1e-12
    assert p.b * (1 + abs(p.rho)) <= 2 + 1e-9


# ------------------------------------------------------------------ butterfly: Gatheral-Jacquier example
def test_gj_example_is_flagged_and_clean_slice_passes():
    gj = SVIParams(**{k: GJ["params"][k] for k in ("a", "b", "rho", "m", "sigma")})
    v = butterfly_violations(gj)
    assert len(v) > 0
    lo, hi = GJ["negative_g_interval"]
    assert v["k"].min() == pytest.approx(lo, abs=0.006) and v["k"].max() == pytest.approx(hi, abs=0.006)
    assert v["g"].min() == pytest.approx(GJ["g_min"], rel=1e-3)
    assert butterfly_violations(CLEAN).empty
    assert butterfly_violations(CLEAN, np.linspace(-5, 5, 2001)).empty


@settings(max_examples=60, deadline=None)
@given(st.floats(-0.05, 0.1), st.floats(0.01, 1.0), st.floats(-0.95, 0.95), st.floats(-0.5, 0.5), st.floats(0.02, 1.0))
def test_g_closed_form_equals_finite_differences(a, b, rho, m, sigma):
    p = SVIParams(a, b, rho, m, sigma)
    k = np.linspace(-1, 1, 41)
    w = p.total_variance(k)
    if (w <= 1e-4).any():
        return
    np.testing.assert_allclose(p.g(k), g_function_reference(p.total_variance, k, dk=1e-4), rtol=1e-4, atol=1e-4)


def _black_call(F, K, w):
    s = np.sqrt(w)
    d1 = (np.log(F / K) + 0.5 * w) / s
    return F * stats.norm.cdf(d1) - K * stats.norm.cdf(d1 - s)


@pytest.mark.parametrize("params", [CLEAN, SVIParams(**{k: GJ["params"][k] for k in ("a", "b", "rho", "m", "sigma")})])
def test_density_from_g_matches_breeden_litzenberger(params):
    # F = 1, T = 1: the risk-neutral density of K is d2C/dK2 (Breeden-Litzenberger), computed here from Black
    # call prices on the SVI vols by finite differences; Gatheral-Jacquier: p(k) = g(k)/sqrt(2 pi w) exp(-d_-^2/2),
    # and the density in K is p(k)/K.
    k = np.linspace(-0.8, 1.4, 45)
    K = np.exp(k)
    dK = 1e-4
    C = lambda x: _black_call(1.0, x, params.total_variance(np.log(x)))  # noqa: E731
    bl = (C(K + dK) - 2 * C(K) + C(K - dK)) / dK**2
    w = params.total_variance(k)
    d_minus = -k / np.sqrt(w) - np.sqrt(w) / 2
    gj = params.g(k) / np.sqrt(2 * np.pi * w) * np.exp(-(d_minus**2) / 2) / K
    np.testing.assert_allclose(gj, bl, atol=2e-4)
    # and the two agree on WHERE the density is negative
    assert ((bl < -1e-3) <= (params.g(k) < 0)).all()


# ------------------------------------------------------------------ SSVI
def test_ssvi_slice_is_raw_svi():
    th, rho, eta, gam = 0.09, -0.35, 0.9, 0.4
    k = np.linspace(-2, 2, 101)
    p = ssvi_slice_to_svi(th, rho, eta, gam)
    np.testing.assert_allclose(p.total_variance(k), ssvi_total_variance(k, th, rho, eta, gam), rtol=1e-12)
    assert ssvi_total_variance(0.0, th, rho, eta, gam) == pytest.approx(th)  # theta is the ATM total variance


def _synthetic_quotes(rho=-0.3, eta=0.8, gamma=0.4, thetas=(0.01, 0.03, 0.06, 0.12), Ts=(0.05, 0.2, 0.5, 1.0)):
    rows = []
    for T, th in zip(Ts, thetas, strict=True):
        k = np.linspace(-0.6, 0.6, 15)
        w = ssvi_total_variance(k, th, rho, eta, gamma)
        rows.append(pd.DataFrame({"T": T, "k": k, "w": w, "iv": np.sqrt(w / T), "forward": 100.0,
                                  "expiry": pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=365 * T)}))
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize("space", ["iv", "w"])
def test_ssvi_recovers_parameters(space):
    q = _synthetic_quotes()
    s = SSVISurface(space=space).fit(q)
    assert s.rho_ == pytest.approx(-0.3, abs=1e-4)
    assert s.eta_ == pytest.approx(0.8, rel=1e-3)
    assert s.gamma_ == pytest.approx(0.4, abs=1e-3)
    np.testing.assert_allclose(s.theta_.to_numpy(), [0.01, 0.03, 0.06, 0.12], rtol=1e-4)
    assert s.rmse_iv_ < 1e-5
    assert calendar_violations(s, np.linspace(-1.5, 1.5, 301)).empty  # power law + increasing theta
    assert s.gj_butterfly_conditions()["ok"].all()


def test_calendar_check_flags_crossing_slices():
    short = SVIParams(0.02, 0.2, -0.5, 0.0, 0.2)
    long_ = SVIParams(0.03, 0.1, 0.0, 0.0, 0.2)  # flatter: lower total variance in the left wing
    v = calendar_violations([(0.25, short), (0.5, long_)], np.linspace(-1, 1, 201))
    # ATM: w_short(0) = 0.02 + 0.2*0.2 = 0.06 > w_long(0) = 0.03 + 0.1*0.2 = 0.05; far right the long slice is higher
    # (slopes 0.2*(1-0.5) = 0.1 vs 0.1): the crossing is on the left and around the money only
    assert len(v) > 0 and v["k"].min() == -1.0 and (v["k"] < 0.5).all()
    w_s, w_l = short.total_variance(v["k"].to_numpy()), long_.total_variance(v["k"].to_numpy())
    assert (w_l < w_s).all()
    assert calendar_violations([(0.25, short), (0.5, SVIParams(0.05, 0.2, -0.5, 0.0, 0.2))]).empty


# ------------------------------------------------------------------ interpolation
def test_svi_surface_interpolates_total_variance_linearly_in_T():
    q = _synthetic_quotes()
    s = SVISurface().fit(q)
    Ts = s.expiries_T_
    k = np.linspace(-0.5, 0.5, 11)
    w0, w1 = (s.params_[i].total_variance(k) for i in (1, 2))
    T_mid = 0.25 * Ts[1] + 0.75 * Ts[2]
    np.testing.assert_allclose(s.total_variance(k, T_mid), 0.25 * w0 + 0.75 * w1, rtol=1e-12)
    np.testing.assert_allclose(s.implied_vol(k, Ts[1]), np.sqrt(w0 / Ts[1]), rtol=1e-12)
    # before the first expiry: w scales with T (flat implied vol); strike mode uses k = ln(K/F)
    np.testing.assert_allclose(s.implied_vol(k, Ts[0] / 2), s.implied_vol(k, Ts[0]), rtol=1e-12)
    np.testing.assert_allclose(s.implied_vol(strike=100 * np.exp(k), T=0.3), s.implied_vol(k, 0.3), rtol=1e-12)
    # each slice reproduces the SSVI data it was fitted on
    assert s.rmse_iv_ < 1e-4
    with pytest.raises(ConfigError):
        s.implied_vol(k, 0.3, strike=100.0)


def test_ssvi_interpolation_of_theta():
    s = SSVISurface().fit(_synthetic_quotes())
    assert s.theta(0.35) == pytest.approx(0.03 + (0.35 - 0.2) / 0.3 * 0.03, rel=1e-4)
    assert s.theta(2.0) == pytest.approx(0.12 * 2.0, rel=1e-4)
    assert float(s.implied_vol(0.0, 0.35)) == pytest.approx(math.sqrt(float(s.theta(0.35)) / 0.35), rel=1e-12)


# ------------------------------------------------------------------ loaders and real snapshots
def test_mark_iv_loader_filters_placeholders():
    path = sample_data_dir() / "deribit_btc_options_snapshot_2024-05.csv"
    raw = pd.read_csv(path)
    with pytest.warns(QuoteFilterWarning, match=f"dropped {int((raw['mark_iv'] == 100.0).sum())} rows"):
        q = load_deribit_mark_iv_snapshot(path)
    assert (q["iv"] != 1.0).all()
    kept = raw[raw["mark_iv"] != 100.0]
    otm = ((kept["option_type"] == "call") & (kept["strike"] >= kept["index_price"])) | (
        (kept["option_type"] == "put") & (kept["strike"] < kept["index_price"]))
    assert len(q) == int(otm.sum())
    np.testing.assert_allclose(q["k"], np.log(q["strike"] / q["forward"]))
    np.testing.assert_allclose(q["w"], q["iv"] ** 2 * q["T"])
    assert (q["T"] > 0).all() and q["T"].max() < 1.0


def test_book_summary_loader_backs_out_black76_vol():
    path = sample_data_dir() / "deribit_eth_options_snapshot_2024-01-08.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuoteFilterWarning)
        q = load_deribit_book_summary(path, otm_only=False)
    raw = pd.read_csv(path)
    raw["key_expiry"] = pd.to_datetime(raw["expiry"], utc=True) + pd.Timedelta(hours=8)
    raw["key_type"] = np.where(raw["option_type"] == "C", "call", "put")
    m = q.merge(raw[["key_expiry", "strike", "key_type", "mark_price", "underlying_price"]],
                left_on=["expiry", "strike", "option_type"], right_on=["key_expiry", "strike", "key_type"])
    assert len(m) == len(q) and len(q) >= 680  # 2 of 684 quotes dropped (zero mark)
    np.testing.assert_allclose(m["forward"], m["underlying_price"], rtol=0)
    # T from the snapshot time (latest quote_time_utc) to expiry 08:00 UTC, ACT/365
    t0 = pd.to_datetime(raw["quote_time_utc"], utc=True).max()
    np.testing.assert_allclose(m["T"], (m["expiry"] - t0) / pd.Timedelta(days=365), rtol=1e-12)
    # reprice with Black-76 written here (scipy normal cdf): USD premium = mark_price * F
    F, K, T, s = m["forward"], m["strike"], m["T"], m["iv"]
    d1 = (np.log(F / K) + 0.5 * s**2 * T) / (s * np.sqrt(T))
    d2 = d1 - s * np.sqrt(T)
    call = F * stats.norm.cdf(d1) - K * stats.norm.cdf(d2)
    price = np.where(m["option_type"] == "call", call, call - (F - K))
    np.testing.assert_allclose(price, m["mark_price"] * F, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("name,max_svi,max_ssvi", [
    ("deribit_btc_options_snapshot_2024-05.csv", 0.03, 0.05),
    ("deribit_eth_options_snapshot_2024-01-08.csv", 0.03, 0.07),
])
def test_fits_on_real_snapshots(name, max_svi, max_ssvi):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuoteFilterWarning)
        from margincal.vol.surface import load_deribit_snapshot

        q = load_deribit_snapshot(sample_data_dir() / name)
        svi = SVISurface().fit(q)
        ssvi = SSVISurface().fit(q)
    assert svi.rmse_iv_ < max_svi  # RMSE in vol (0.03 = 3 vol points) over all quotes
    assert ssvi.rmse_iv_ < max_ssvi
    assert butterfly_violations(svi).empty  # inside the quoted range, with the Lee bound imposed
    assert calendar_violations(ssvi, np.linspace(-1.5, 1.5, 301)).empty
    iv = svi.implied_vol(strike=svi.forwards_[3], T=svi.expiries_T_[3])
    assert 0.2 < float(iv) < 1.5


def test_loader_errors(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    from margincal.vol.surface import load_deribit_snapshot

    with pytest.raises(DataError, match="neither"):
        load_deribit_snapshot(p)
    with pytest.raises(DataError, match="at least 5"):
        fit_svi([0.0, 0.1], [0.01, 0.02])


def test_parity_forward_recovers_a_known_forward(tmp_path):
    # synthetic mark-IV snapshot: index S = 100, true forward F = 103 for the one expiry, flat 60 % vol.
    # Deribit-style coin prices: USD Black-76 price / S. Parity: F = K + (C - P) * S.
    S, F, vol = 100.0, 103.0, 0.6
    t0 = pd.Timestamp("2024-05-24 12:00", tz="UTC")
    expiry = pd.Timestamp("2024-08-23 08:00", tz="UTC")
    T = (expiry - t0) / pd.Timedelta(days=365)
    rows = []
    for K in (90.0, 95.0, 100.0, 105.0, 110.0, 120.0):
        call = _black_call(F, K, vol**2 * T)
        for typ, usd in (("call", call), ("put", call - (F - K))):
            rows.append({"option_type": typ, "strike": K, "instrument_creation_utc": "2024-05-24 12:00:00",
                         "expiry_utc": "2024-08-23 08:00:00", "mark_price": usd / S, "last_price": 0.0,
                         "mark_iv": 60.0, "index_price": S})
    path = tmp_path / "snap.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    q_idx = load_deribit_mark_iv_snapshot(path)
    q_par = load_deribit_mark_iv_snapshot(path, forward="parity")
    assert (q_idx["forward"] == S).all()
    np.testing.assert_allclose(q_par["forward"], F, rtol=1e-12)
    np.testing.assert_allclose(q_par["T"], T, rtol=1e-12)
    # OTM selection follows the forward: puts below 103, calls at or above
    assert set(q_par.loc[q_par["option_type"] == "put", "strike"]) == {90.0, 95.0, 100.0}
