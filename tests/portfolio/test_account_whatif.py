"""What-if with limits (refusal names the limit) and the account view (equity, haircuts, liquidation move)."""

from __future__ import annotations

import pytest

from margincal.errors import ConfigError
from margincal.margin.limits import Limits, check_order, oi_caps_from_adv
from margincal.margin.portfolio import MarketState, RiskMatrixMargin, deribit_like
from margincal.margin.portfolio.whatif import Portfolio, account_view, what_if

F = 68800.0
MKT = MarketState(spot={"BTC": F, "ETH": 3725.0}, valuation_time="2024-05-24T13:00Z", flat_vol=0.55)


def _deribit_mm_perp(qty: float, f: float) -> float:
    """Deribit-like MM of a long perp by hand: 0.8 x (16% move + 1.2% contingency + delta-liquidity term)."""
    d = qty * f
    return 0.8 * (0.16 * d + 0.012 * d + d * 0.1 * min(1.0, d / 2e7))


def test_limits_refuse_and_name_the_limit():
    lim = Limits(position_limits={"BTC-PERP": 10.0}, oi_caps={"BTC-PERP": 1_000.0}, open_interest={"BTC-PERP": 999.0})
    pf = Portfolio({"BTC-PERP": 8.0}, MKT, RiskMatrixMargin(config=deribit_like()))
    r = what_if(pf, {"BTC-PERP": 3.0}, limits=lim)
    assert not r.accepted
    assert "position limit on BTC-PERP" in r.refusal and "above the account limit of 10" in r.refusal
    assert "open-interest cap on BTC-PERP" in r.refusal and "would be 1,002 contracts" in r.refusal
    assert {b["limit"] for b in r.breaches} == {"position_limit", "oi_cap"}
    # reducing orders are always accepted, even above the limits
    big = Portfolio({"BTC-PERP": 50.0}, MKT, RiskMatrixMargin(config=deribit_like()))
    assert what_if(big, {"BTC-PERP": -5.0}, limits=lim).accepted
    # a flip from +8 to -12 opens 4 contracts of |position| and breaches the 10-contract limit at 12
    assert [b.limit for b in check_order({"BTC-PERP": 8.0}, {"BTC-PERP": -20.0}, lim)] == ["position_limit", "oi_cap"]
    # caps from the calibration's OI rule: k_upper (2.5) x ADV
    assert oi_caps_from_adv({"BTC-PERP": 400.0}) == {"BTC-PERP": 1000.0}
    with pytest.raises(ConfigError, match="oi_caps"):
        Limits(oi_caps={"X": -1.0})


def test_account_view_equity_margin_ratio_and_liquidation_move():
    pf = Portfolio({"BTC-PERP": 1.0}, MKT, RiskMatrixMargin(config=deribit_like()))
    v = account_view(pf, {"USDT": 20_000.0, "ETH": 2.0}, haircuts={"ETH": 0.2})
    assert v["collateral_value"] == pytest.approx(20_000.0 + 2 * 3725.0)
    assert v["equity"] == pytest.approx(20_000.0 + 0.8 * 2 * 3725.0)
    assert v["mm"] == pytest.approx(_deribit_mm_perp(1.0, F))
    assert v["margin_ratio"] == pytest.approx(v["mm"] / v["equity"])
    # at the liquidation move m, haircut collateral + P&L equals the MM recomputed at F (1 + m)
    m = v["liquidation_moves"]["BTC"]
    f1 = F * (1 + m)
    assert m < 0
    assert v["equity"] + (f1 - F) == pytest.approx(_deribit_mm_perp(1.0, f1), abs=1e-5)
    assert v["liquidation_prices"]["BTC"] == pytest.approx(f1)
    assert v["liquidation_moves"].keys() == {"BTC"}


def test_what_if_reports_the_account_before_and_after():
    pf = Portfolio({"BTC-PERP": 1.0}, MKT, RiskMatrixMargin(config=deribit_like()))
    r = what_if(pf, {"BTC-PERP": 1.0}, collateral={"USDT": 30_000.0})
    assert r.accepted and r.refusal is None
    assert r.account_after["mm"] == pytest.approx(_deribit_mm_perp(2.0, F))
    assert r.account_after["margin_ratio"] > r.account_before["margin_ratio"]
    assert r.account_after["liquidation_prices"]["BTC"] > r.account_before["liquidation_prices"]["BTC"]
