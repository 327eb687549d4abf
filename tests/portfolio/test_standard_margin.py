"""Standard option margin (Deribit, Derive SRM): the venues' published rules, evaluated by hand."""

from __future__ import annotations

import math

import pytest
import QuantLib as ql

from margincal.errors import ConfigError
from margincal.margin.portfolio import MarketState
from margincal.margin.portfolio.standard import (
    compare_margin_modes,
    deribit_option_margin,
    derive_option_margin,
    standard_margin,
)

F = 68800.0


@pytest.mark.parametrize(("call", "K", "c", "im", "mm"), [
    # short call, 1,200 OTM: max(0.15 - 1200/68800, 0.10) + 0.05 = 0.182558; MM 0.075 + 0.05
    (True, 70000.0, 0.05, 0.15 - 1200.0 / 68800.0 + 0.05, 0.125),
    # deep OTM call: the 0.10 floor binds
    (True, 100000.0, 0.004, 0.104, 0.079),
    # OTM put: floor 0.10 + 0.02 = 0.12 > MM max(0.075, 0.0015) + 0.02 = 0.095
    (False, 60000.0, 0.02, 0.12, 0.095),
    # ITM put: 0.15 + 0.18 = 0.33 ; MM 0.075 + 0.18 = 0.255
    (False, 80000.0, 0.18, 0.33, 0.255),
])
def test_deribit_short_option_rule(call, K, c, im, mm):
    got_im, got_mm = deribit_option_margin(call, K, F, c, -2.0)
    assert float(got_im) == pytest.approx(2 * im, rel=1e-12)
    assert float(got_mm) == pytest.approx(2 * mm, rel=1e-12)
    # longs pay no margin
    assert float(deribit_option_margin(call, K, F, c, 3.0)[0]) == 0.0


def test_derive_srm_rule():
    # call, 1,200 OTM: m = max(0.15 - 0.017442, 0.13) = 0.132558; IM = 3000 + m 68800 = 12120; MM = 3000 + 0.09 S
    im, mm = derive_option_margin(True, 70000.0, F, 3000.0, -1.0)
    assert float(im) == pytest.approx(3000.0 + (0.15 - 1200.0 / 68800.0) * 68800.0)
    assert float(mm) == pytest.approx(3000.0 + 0.09 * 68800.0)
    # put 12.8% OTM: m floors at 0.13 -> 1000 + 8944 = 9944 ; MM = 1000 + max(6192, 90) = 7192 ; 1.05 MM = 7551.6
    im, mm = derive_option_margin(False, 60000.0, F, 1000.0, -1.0)
    assert float(im) == pytest.approx(9944.0)
    assert float(mm) == pytest.approx(7192.0)
    # deep ITM put: IM = max(v + 0.15 S, 1.05 MM) = max(41,820, 1.05 x 37,692 = 39,576.6)
    im, mm = derive_option_margin(False, 100000.0, F, 31500.0, -1.0)
    assert float(mm) == pytest.approx(31500.0 + 0.09 * 68800.0)
    assert float(im) == pytest.approx(max(31500.0 + 0.15 * 68800.0, 1.05 * (31500.0 + 0.09 * 68800.0)))


def test_account_standard_margin_marks_with_black76_and_compares_with_pm():
    mkt = MarketState(spot={"BTC": F}, valuation_time="2024-05-24T13:00Z", flat_vol=0.55)
    name = "BTC-28JUN24-70000-C"
    T = (35 * 86400 - 5 * 3600) / (365 * 86400)  # 24 May 13:00 -> 28 Jun 08:00
    v = ql.blackFormula(ql.Option.Call, 70000.0, F, 0.55 * math.sqrt(T), 1.0)
    res = standard_margin({name: -1.0, "BTC-PERP": 0.5}, mkt, venue="deribit")
    want_opt = (0.15 - 1200.0 / F + v / F) * F
    assert res.by_instrument[name]["im"] == pytest.approx(want_opt, rel=1e-9)
    assert res.by_instrument["BTC-PERP"]["im"] == pytest.approx(0.02 * 0.5 * F)
    assert res.im == pytest.approx(want_opt + 0.02 * 0.5 * F, rel=1e-9)
    d = standard_margin({name: -1.0}, mkt, venue="derive")
    assert d.im == pytest.approx(v + (0.15 - 1200.0 / F) * F, rel=1e-9)
    # a delta-hedged short call: portfolio margin recognises the hedge, standard margin does not
    cmp = compare_margin_modes({name: -1.0, "BTC-PERP": 0.5}, mkt)
    assert cmp["portfolio_im"] < cmp["standard_im"]
    with pytest.raises(ConfigError, match="venue"):
        standard_margin({name: -1.0}, mkt, venue="okx")
