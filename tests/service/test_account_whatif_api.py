"""The what-if API: limits refuse an order and name the limit; collateral adds the account view."""

from __future__ import annotations

from typing import Any

import pytest


def _h(client: Any, role: str) -> dict[str, str]:
    return {"X-API-Key": client.keys[role]}


def test_what_if_refuses_over_a_limit_and_shows_the_account(client: Any) -> None:
    from margincal.margin.portfolio import MarketState, Portfolio
    from margincal.margin.portfolio.whatif import account_view

    body = {"positions": [{"instrument": "BTC-PERP", "quantity": 2.0}],
            "order": {"instrument": "BTC-PERP", "side": "buy", "quantity": 1.0},
            "limits": {"position_limits": {"BTC-PERP": 2.5}},
            "collateral": {"USDT": 50_000.0}, "haircuts": {"USDT": 0.01}}
    r = client.post("/api/margin/what-if", json=body, headers=_h(client, "trader"))
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["accepted"] is False
    assert got["refusal"].startswith("position limit on BTC-PERP") and "2.5" in got["refusal"]
    m = got["market"]  # the service's market (spot from the store), rebuilt for the module reference
    market = MarketState(spot=m["spot"], valuation_time=m["valuation_time"])
    ref = account_view(Portfolio({"BTC-PERP": 3.0}, market), {"USDT": 50_000.0}, haircuts={"USDT": 0.01})
    acc = got["account"]["after"]
    assert acc["equity"] == pytest.approx(49_500.0)
    assert acc["mm"] == pytest.approx(ref["mm"], rel=1e-12)
    assert acc["margin_ratio"] == pytest.approx(ref["mm"] / 49_500.0, rel=1e-12)
    assert acc["liquidation_prices"]["BTC"] == pytest.approx(ref["liquidation_prices"]["BTC"], rel=1e-9)
    assert acc["driving_scenario"] == got["driving_scenario"]
    # within the limit: accepted; standalone pre-trade checks the same limits
    ok = client.post("/api/margin/what-if", json={**body, "limits": {"position_limits": {"BTC-PERP": 5}}},
                     headers=_h(client, "trader")).json()
    assert ok["accepted"] is True and ok["refusal"] is None
    body_s = {"positions": [{"instrument": "BTC-USDT", "quantity": 2.0}],
              "order": {"instrument": "BTC-USDT", "side": "buy", "quantity": 1.0}, "method": "standalone",
              "limits": {"oi_caps": {"BTC-USDT": 10}, "open_interest": {"BTC-USDT": 9.5}}}
    s = client.post("/api/margin/what-if", json=body_s, headers=_h(client, "trader")).json()
    assert s["accepted"] is False and "open-interest cap on BTC-USDT" in s["refusal"]
