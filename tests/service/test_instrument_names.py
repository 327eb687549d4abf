"""The service reads instrument names through margincal.instruments, like every other consumer."""

from __future__ import annotations

from typing import Any

import pytest

PERP_SPELLINGS = ["BTC-PERPETUAL", "btc-perp", "BTC/USDT:USDT", "BTCUSDT_PERP", "BTC-USDT-SWAP"]


def _im(client: Any, positions: dict[str, float]) -> float:
    body = {"positions": [{"instrument": k, "quantity": v} for k, v in positions.items()], "flat_vol": 0.55}
    r = client.post("/api/margin/portfolio", json=body, headers={"X-API-Key": client.keys["trader"]})
    assert r.status_code == 200, r.text
    return float(r.json()["im"])


@pytest.mark.parametrize("name", PERP_SPELLINGS)
def test_every_spelling_of_a_perpetual_gets_the_same_portfolio_margin(module_client: Any, name: str) -> None:
    ref = _im(module_client, {"BTC-PERP": 2.0, "BTC-25DEC26-90000-C": -1.0})
    assert ref > 0
    assert _im(module_client, {name: 2.0, "BTC-25DEC26-90000-C": -1.0}) == pytest.approx(ref, rel=1e-12)
