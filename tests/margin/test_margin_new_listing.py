"""New listings: proxy formula by hand, credibility blend, decaying add-on, no look-ahead in the replay."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from margincal.margin._bundled import daily_log_returns
from margincal.margin.new_listing import (
    ProxyCalibrator,
    expected_breach_rate,
    listing_dates,
    reference_tail,
    validate_new_listings,
)


@pytest.fixture(scope="module")
def ref() -> pd.Series:
    return daily_log_returns("btc").loc[:"2022-12-31"]


def test_listing_day_uses_priors(ref):
    rt = reference_tail(ref)
    res = ProxyCalibrator(rounding=0.0).fit(None, ref, reference=rt).result_
    # n = 0: beta = prior 1, idio sigma = 1 x sigma_R -> sigma_proxy = sqrt(2) sigma_R; add-on 50%
    assert res.n_obs == 0 and res.credibility == 0.0
    assert res.beta == pytest.approx(1.0)
    assert res.proxy_sigma == pytest.approx(math.sqrt(2.0) * rt.sigma_next)
    assert res.proxy_es == pytest.approx(rt.es_multiple * math.sqrt(2.0) * rt.sigma_next)
    assert res.im_raw == pytest.approx(1.5 * res.proxy_es)
    assert res.mm_rate == pytest.approx(0.5 * res.im_raw)


def test_thirty_days_of_history_by_hand(ref):
    rt = reference_tail(ref)
    x = ref.iloc[-30:]
    asset = 2.0 * x  # beta_ols = 2 exactly, residuals 0
    res = ProxyCalibrator(rounding=0.0).fit(asset, ref, reference=rt).result_
    s2 = rt.sigma_next ** 2
    # beta = (30 * 2 + 20 * 1) / (30 + 20) = 1.6 ; residual with the shrunk beta: e = 2x - 1.6x = 0.4x
    # idio var = (30 * mean(0.16 x^2) + 20 * s2) / 50
    mx2 = float(np.mean(x.to_numpy() ** 2))
    idio = (30 * 0.16 * mx2 + 20 * s2) / 50
    assert res.beta == pytest.approx(1.6)
    assert res.idio_sigma ** 2 == pytest.approx(idio)
    proxy_var = 1.6 ** 2 * s2 + idio
    assert res.proxy_sigma == pytest.approx(math.sqrt(proxy_var))
    # own EWMA seeded at the proxy variance, lambda 0.94 (plain loop)
    v = proxy_var
    for r in asset.to_numpy():
        v = 0.94 * v + 0.06 * r * r
    assert res.own_sigma == pytest.approx(math.sqrt(v))
    z = 30 / (30 + 60)  # 1/3
    addon = 0.5 * 0.5 ** (30 / 30)  # 0.25
    own_es, proxy_es = rt.es_multiple * math.sqrt(v), rt.es_multiple * math.sqrt(proxy_var)
    assert res.credibility == pytest.approx(z)
    assert res.addon_factor == pytest.approx(addon)
    assert res.im_raw == pytest.approx((z * own_es + (1 - z) * proxy_es) * (1 + addon))


def test_expected_breach_rate_normal():
    # ES_0.99 of a standard normal is phi(2.3263)/0.01 = 2.6652 sd; P(Z > 2.6652) = 0.003847; both sides
    assert expected_breach_rate(0.99) == pytest.approx(2 * 0.003847, abs=2e-6)


def test_listing_dates_rule():
    a = pd.date_range("2020-08-11", "2021-12-31", freq="D", tz="UTC")
    r = pd.date_range("2017-08-18", "2021-12-31", freq="D", tz="UTC")
    d = listing_dates(a, r, every_days=180, min_reference_days=365, window=90)
    assert d[0] == pd.Timestamp("2020-08-11", tz="UTC")
    assert all((b - c).days == 180 for b, c in zip(d[1:], d[:-1], strict=False))
    assert d[-1] + pd.Timedelta(days=90) <= a[-1]


def test_replay_uses_only_past_data():
    summary, detail = validate_new_listings(["sol"], every_days=720, windows=(10,))
    assert set(detail["day"]) == set(range(1, 11))
    sol, btc = daily_log_returns("sol"), daily_log_returns("btc")
    row = detail.iloc[7]
    L = pd.Timestamp(row["listing_date"], tz="UTC")
    t = L + pd.Timedelta(days=int(row["day"]))
    own = sol[(sol.index > L) & (sol.index < t)]
    again = ProxyCalibrator().fit(own, btc[btc.index < t]).result_
    assert again.im_rate == row["im_rate"] and again.n_obs == row["day"] - 1
    r = float(sol.loc[t])
    assert row["loss"] == pytest.approx(max(-math.expm1(r), math.expm1(r)))
    all_row = summary[summary["asset"] == "ALL"].iloc[0]
    assert all_row["margin_days"] == len(detail)
    assert all_row["breaches"] == int(detail["breach"].sum())
    assert np.isfinite(all_row["p_value_vs_1pct"])
