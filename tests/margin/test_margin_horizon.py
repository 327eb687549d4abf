"""Close-out horizon and the MM(N)/IM(N) curve (margin/horizon.py): hand-computed values."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from margincal.errors import ConfigError
from margincal.margin.horizon import CloseOutModel, CostModel, as_loss_function, displayed_depth, margin_curve
from margincal.margin.liquidity import DepthBook, LiquidityModel


def test_close_time_volume_and_depth_bounds():
    # ADV 2.4e9/day -> 1e8/hour; 10% participation -> 1e7 per hour
    m = CloseOutModel(adv=2.4e9, participation=0.10)
    assert m.close_time(5e6) == pytest.approx(0.5)
    assert m.close_time(0.0) == 0.0
    assert m.floor_hours == pytest.approx((1 / 60, 2 / 60))
    assert m.mm_horizon(5e6) == pytest.approx(1 / 60 + 0.5)
    assert m.im_horizon(5e6) == pytest.approx(2 / 60 + 0.5)
    # depth 4e6 per side, 25% per 1-minute refresh -> 1e6 per minute = 6e7 per hour, faster than the
    # volume bound (1e7 per hour), which therefore still binds
    d = CloseOutModel(adv=2.4e9, participation=0.10, depth=4e6)
    assert d.close_time(5e6) == pytest.approx(0.5)
    # thin book: 4e4 per side -> 1e4 per minute = 6e5 per hour -> 5e6 takes 5e6/6e5 h
    thin = CloseOutModel(adv=2.4e9, participation=0.10, depth=4e4)
    assert thin.close_time(5e6) == pytest.approx(5e6 / 6e5)
    np.testing.assert_allclose(m.close_time([1e7, 2e7]), [1.0, 2.0])
    with pytest.raises(ConfigError, match="participation"):
        CloseOutModel(adv=1e9, participation=0.0)


def test_cost_model_pieces():
    c = CostModel(adv=1e9, sigma_daily=0.03, half_spread=0.0001, fee=0.0005, funding_per_event=0.003,
                  funding_accrual="events")
    # N = 1e7: impact 1 * 0.03 * sqrt(0.01) = 0.003
    assert c.execution(1e7) == pytest.approx(0.0001 + 0.003 + 0.0005)
    # funding by events: 0.5 h -> 1 event, 8 h -> 1, 8.5 h -> 2
    assert c.funding(0.5) == pytest.approx(0.003)
    assert c.funding(8.0) == pytest.approx(0.003)
    assert c.funding(8.5) == pytest.approx(0.006)
    assert c.cost(1e7, 8.5) == pytest.approx(0.0036 + 0.006)
    # pro rata (default): 0.003 * h / 8
    p = CostModel(adv=1e9, sigma_daily=0.03, funding_per_event=0.003)
    assert p.funding(2.0) == pytest.approx(0.00075)
    # stressed book: depth 89M/1% collapsing to 2M; for N = 8M the book walk costs 0.00875 > sqrt impact
    s = CostModel(adv=1e9, sigma_daily=0.03, stressed_depth=89e6, stressed_depth_band=0.01,
                  stressed_collapse=2 / 89)
    assert s.execution(8e6) == pytest.approx(max(0.03 * math.sqrt(0.008), 0.00875))


def test_margin_curve_with_a_closed_form_normal_loss():
    # loss(h) = ES99 of a normal with sigma 1%/sqrt(hour): ES = sigma sqrt(h) phi(z)/(1-p)
    z = stats.norm.ppf(0.99)
    es_unit = stats.norm.pdf(z) / 0.01

    def loss(h: float) -> float:
        return 0.01 * math.sqrt(h) * es_unit

    co = CloseOutModel(adv=2.4e9, participation=0.10)
    cost = CostModel(adv=2.4e9, sigma_daily=0.0)
    n = np.array([1e4, 1e7, 1e8])
    cur = margin_curve(n, loss, co, cost, im_gap=0.5)
    h_mm = 1 / 60 + n / 1e7
    h_im = h_mm + 1 / 60
    np.testing.assert_allclose(cur.mm_rate, 0.01 * np.sqrt(h_mm) * es_unit, rtol=1e-12)
    np.testing.assert_allclose(cur.im_rate, np.maximum(0.01 * np.sqrt(h_im) * es_unit, 1.5 * cur.mm_rate),
                               rtol=1e-12)
    assert np.all(cur.im_rate >= 1.5 * cur.mm_rate - 1e-15)
    assert np.all(np.diff(cur.mm_rate) >= 0) and np.all(np.diff(cur.im_rate) >= 0)
    im_f, mm_f = cur.rate_functions()
    assert im_f(1e7) == pytest.approx(cur.im_rate[1])
    assert mm_f(1e3) == pytest.approx(cur.mm_rate[0])  # flat below the grid


def test_margin_curve_caps_and_validation():
    co = CloseOutModel(adv=1e6)
    cost = CostModel(adv=1e6, sigma_daily=0.05)
    cur = margin_curve([1e3, 1e9], lambda h: 0.1 * math.sqrt(h), co, cost)
    assert cur.im_rate[-1] == 1.0 and cur.mm_rate[-1] == 1.0
    with pytest.raises(ConfigError, match="increasing"):
        margin_curve([2.0, 1.0], lambda h: 0.01, co, cost)
    with pytest.raises(ConfigError, match="negative"):
        margin_curve([1.0], lambda h: -0.01, co, cost)


def test_forecast_object_is_accepted_and_matches_the_model():
    from margincal import risk

    rng = np.random.default_rng(3)
    r = pd.Series(rng.standard_t(4, 3000) * 0.01, index=pd.date_range("2020-01-01", periods=3000, freq="h", tz="UTC"))
    model = risk.make_model("fhs").fit(r)
    f = as_loss_function(model, level=0.99)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert f(4.0) == pytest.approx(model.forecast(horizon=4.0, level=0.99).es)
    plain = as_loss_function(lambda h: 0.5)
    assert plain(3.0) == 0.5
    with pytest.raises(ConfigError):
        as_loss_function(3.0)  # type: ignore[arg-type]


def test_depth_from_a_snapshot():
    # bids 99 x 10 + 98 x 10 = 1970 ; asks 101 x 5 + 102 x 5 = 1015 -> thinner side 1015
    book = DepthBook(np.array([99.0, 98.0]), np.array([10.0, 10.0]), np.array([101.0, 102.0]), np.array([5.0, 5.0]))
    assert displayed_depth(book) == pytest.approx(1015.0)
    # within 1.5% of mid (100): bid 99 only (990), ask 101 only (505)
    assert displayed_depth(book, band=0.015) == pytest.approx(505.0)
    liq = LiquidityModel(adv=2.4e8, sigma_daily=0.02, depth=book)
    co = CloseOutModel.from_liquidity(liq, participation=0.1)
    assert co.depth == pytest.approx(1015.0) and co.adv == 2.4e8
    # volume bound N / 1e6 h; depth bound 1 minute x N / (0.25 x 1015) = N / 15225 h, slower: it binds
    assert co.close_time(1e4) == pytest.approx(1e4 / (0.25 * 1015) / 60)
