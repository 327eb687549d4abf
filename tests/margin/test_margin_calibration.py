"""Per-instrument calibration: rounding, IM/MM rules by hand, size curve, tiers, end-to-end on bundled coins."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margincal.data.store import connect
from margincal.errors import ConfigError
from margincal.margin import params as P
from margincal.margin._bundled import BUNDLED_DAILY, daily_bars, daily_log_returns
from margincal.margin.calibration import calibrate_instrument, calibrate_universe
from margincal.margin.liquidity import LiquidityModel
from margincal.margin.rounding import ceil_to_increment, ceil_to_increment_reference
from margincal.margin.tiers import TierSchedule

# ------------------------------------------------------------------ rounding


def test_ceil_to_increment_ignores_float_noise():
    assert ceil_to_increment(0.0100000001, 0.0005) == 0.01  # noise: stays on the grid
    assert ceil_to_increment(0.1 + 0.2, 0.1) == pytest.approx(0.3)  # 0.30000000000000004
    assert ceil_to_increment(0.01002, 0.0005) == 0.0105  # a real excess rounds up
    assert ceil_to_increment(0.0105, 0.0005) == 0.0105
    assert ceil_to_increment(0.0, 0.0005) == 0.0
    assert ceil_to_increment(0.0123, 0.0) == 0.0123
    np.testing.assert_allclose(ceil_to_increment(np.array([0.0101, 0.0199999999999]), 0.001), [0.011, 0.02])
    with pytest.raises(ConfigError):
        ceil_to_increment(0.01, -0.001)


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=0.0, max_value=1.0), st.sampled_from([0.0001, 0.0005, 0.001, 0.0025, 0.01]))
def test_ceil_matches_decimal_reference(x, inc):
    got = ceil_to_increment(x, inc)
    assert got == pytest.approx(ceil_to_increment_reference(x, inc), abs=1e-12)
    assert got >= x - 1e-9  # never more than the tolerance below the input
    k = Decimal(repr(got)) / Decimal(repr(inc))
    assert k == k.to_integral_value()  # on the grid


# -------------------------------------------------------------- IM/MM rules


def _returns() -> pd.Series:
    # 100 daily returns: one -10% log return, one +5%, the rest +-0.1%: with n = 100 at level 0.99 the
    # HS tail is exactly one observation, so ES = the largest loss = 1 - exp(-0.10) = 0.0951626 (long side).
    r = np.tile([0.001, -0.001], 50)
    r[10], r[60] = -0.10, 0.05
    idx = pd.date_range("2024-01-01", periods=100, freq="D", tz="UTC")
    return pd.Series(r, index=idx, name="TEST")


def test_im_mm_rules_by_hand():
    liq = LiquidityModel(adv=1e9, sigma_daily=0.04, half_spread=0.0005)
    cal = calibrate_instrument(_returns(), model="hs", level=0.99, horizon_hours=24, buffer=0.10,
                               liquidity=liq, reference_size=1e7, instrument="TEST", bar_hours=24.0)
    es = 1.0 - math.exp(-0.10)  # 0.0951626
    cost = 0.0005 + 1.0 * 0.04 * math.sqrt(1e7 / 1e9)  # 0.0005 + 0.004 = 0.0045
    im_raw = es * 1.10 + cost  # 0.104679 + 0.0045 = 0.109179
    assert cal.es == pytest.approx(es)
    assert cal.liquidity_addon == pytest.approx(cost) and cal.liquidation_cost == pytest.approx(cost)
    assert cal.im_raw == pytest.approx(im_raw)
    assert cal.im_rate == pytest.approx(0.1095)  # ceil(0.109179 / 0.0005) * 0.0005 = 219 * 0.0005
    assert cal.mm_raw == pytest.approx(0.5 * im_raw)  # 0.0545894 > cost
    assert cal.mm_rate == pytest.approx(0.0550)  # 110 * 0.0005
    p = cal.to_params()
    assert (p.im_rate, p.mm_rate) == (cal.im_rate, cal.mm_rate)
    assert p.details["provenance"]["model"] == "hs"
    assert p.details["provenance"]["window_start"].startswith("2024-01-01")
    assert p.details["provenance"]["run_id"]


def test_mm_never_below_liquidation_cost():
    # ES 0.0951626 (as above), reference size 1e10 against ADV 1e9: cost = 0.0005 + 0.04 * sqrt(10) = 0.126991
    liq = LiquidityModel(adv=1e9, sigma_daily=0.04, half_spread=0.0005)
    cal = calibrate_instrument(_returns(), model="hs", liquidity=liq, reference_size=1e10, mm_fraction=0.3,
                               bar_hours=24.0)
    cost = 0.0005 + 0.04 * math.sqrt(10.0)
    im_raw = (1 - math.exp(-0.10)) + cost  # 0.222154
    assert cal.im_raw == pytest.approx(im_raw)
    # 0.3 * 0.222154 = 0.066646 < cost 0.126991 -> MM = ceil(0.126991) = 0.1270
    assert cal.mm_raw == pytest.approx(cost)
    assert cal.mm_rate == pytest.approx(0.1270)


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 1e9), st.floats(0, 1e9), st.floats(0.005, 0.2))
def test_margin_non_decreasing_in_size(a, step, sigma):
    liq = LiquidityModel(adv=2e8, sigma_daily=sigma, half_spread=0.0003)
    cal = dataclasses.replace(_CAL, liquidity=liq)
    assert cal.im_at(a + step) >= cal.im_at(a)
    assert cal.mm_at(a + step) >= cal.mm_at(a)
    assert cal.mm_at(a) <= cal.im_at(a)


_CAL = calibrate_instrument(_returns(), model="hs", instrument="TEST", bar_hours=24.0)


def test_validation_errors():
    with pytest.raises(ConfigError, match="mm_fraction"):
        calibrate_instrument(_returns(), model="hs", mm_fraction=1.5, bar_hours=24.0)
    with pytest.raises(ConfigError, match="buffer"):
        calibrate_instrument(_returns(), model="hs", buffer=-0.1, bar_hours=24.0)
    with pytest.raises(ConfigError, match="level"):
        calibrate_instrument(_returns(), model="hs", level=1.2, bar_hours=24.0)


# -------------------------------------------------------------------- tiers


def test_tiers_from_size_curve_conventions():
    liq = LiquidityModel(adv=1e8, sigma_daily=0.04, half_spread=0.0002)
    cal = calibrate_instrument(_returns(), model="hs", liquidity=liq, instrument="TEST", bar_hours=24.0)
    caps = [1e6, 1e7, 5e7, 2e8]
    avg = TierSchedule.from_size_curve(cal, caps, convention="average")
    for k, c in enumerate(caps):
        # IM(c) = ES + 0.0002 + 0.04 * sqrt(c / 1e8), rounded up to 5 bp; leverage = floor(1 / IM)
        im_c = (1 - math.exp(-0.10)) + 0.0002 + 0.04 * math.sqrt(c / 1e8)
        im_c = math.ceil(im_c / 0.0005 - 1e-6) * 0.0005
        assert avg.max_leverages[k] == math.floor(1 / im_c)
    marg = cal.with_tiers(caps).tiers
    assert marg is not None and marg.source["convention"] == "marginal"
    for c in caps:
        # continuous bracket IM at each cap covers the calibrated total c * IM(c) (rates rounded up/floored lev)
        assert marg.initial_margin(c) >= c * cal.im_at(c, rounded=False) - 1e-6
        assert marg.maintenance_margin(c) >= c * cal.mm_at(c, rounded=False) - 1e-6
    # the literal "average" rule can fall below the calibrated total: it charges lower slices less
    shortfalls = [avg.initial_margin(c) < c * cal.im_at(c, rounded=False) for c in caps[1:]]
    assert any(shortfalls)
    p = cal.with_tiers(caps).to_params()
    assert len(p.details["tiers"]) == 4 and p.details["tiers"][-1]["upper"] == 2e8


# ------------------------------------------------------------- end to end


def test_end_to_end_bundled_coins_publish_to_memory_store():
    returns = {f"{c.upper()}USDT": daily_log_returns(c) for c in BUNDLED_DAILY}
    liquidity = {f"{c.upper()}USDT": LiquidityModel.from_bars(daily_bars(c), window=30, half_spread=0.0002,
                                                              reference_size=1e6) for c in BUNDLED_DAILY}
    pset, cals = calibrate_universe(returns, liquidity=liquidity, model="fhs", level=0.99, horizon_hours=24,
                                    tier_boundaries=[1e5, 1e6, 1e7, 5e7])
    assert sorted(pset.params) == sorted(returns)
    for name, cal in cals.items():
        r = returns[name].to_numpy()
        # independent sanity bound: FHS ES within [0.5, 3] x the normal ES with an EWMA(0.94) sigma via pandas
        sig = math.sqrt(float(pd.Series(r ** 2).ewm(alpha=0.06, adjust=False).mean().iloc[-1]))
        normal_es = sig * 2.6652  # phi(2.3263) / 0.01
        assert 0.5 * normal_es < cal.es < 3.0 * normal_es, name
        assert cal.im_rate >= cal.es + cal.liquidity_addon - 1e-12
        assert cal.mm_rate >= max(0.5 * cal.im_raw, cal.liquidation_cost) - 1e-12
        assert round(cal.im_rate / 0.0005, 9) == int(round(cal.im_rate / 0.0005))
        assert cal.provenance["window_end"] == str(returns[name].index[-1])
    con = connect(":memory:")
    try:
        v = P.publish(con, pset, created_by="test", source="test_end_to_end")
        back = P.load(con, v)
        assert back.version == 1
        for name in returns:
            assert back[name].im_rate == pset[name].im_rate
            assert back[name].mm_rate == pset[name].mm_rate
            assert len(back[name].details["tiers"]) == 4
        csv_text = back.to_csv()
        assert csv_text.count("\n") == 1 + 4 * len(returns)
        assert P.history(con)["version"].tolist() == [1]
    finally:
        con.close()
