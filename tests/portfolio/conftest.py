"""Shared fixtures: a small BTC/ETH instrument set on the Deribit snapshot day (2024-05-24)."""

from __future__ import annotations

import pytest

from margincal.margin.portfolio import InstrumentSpec, MarketState, parse_instrument

ASOF = "2024-05-24T13:00:00Z"
SPOT = {"BTC": 68800.0, "ETH": 3725.0}

NAMES = [
    "BTC-PERP",
    "BTC-28JUN24",
    "BTC-27SEP24",
    "BTC-28JUN24-70000-C",
    "BTC-28JUN24-70000-P",
    "BTC-28JUN24-60000-P",
    "BTC-31MAY24-90000-C",
    "BTC-27DEC24-100000-C",
    "ETH-PERP",
    "ETH-28JUN24-3800-C",
    "ETH-28JUN24-3000-P",
]


@pytest.fixture
def specs() -> list[InstrumentSpec]:
    out = [parse_instrument(n) for n in NAMES]
    # one coin-margined (inverse) option and an inverse perpetual with a 10 USD face, Deribit style
    out.append(parse_instrument("BTC-28JUN24-65000-C", inverse=True))
    out.append(InstrumentSpec("BTC-PERP-INV", "perpetual", "BTC", inverse=True, contract_size=10.0))
    return out


@pytest.fixture
def market() -> MarketState:
    return MarketState(spot=SPOT, valuation_time=ASOF, flat_vol=0.55, vols={"BTC-31MAY24-90000-C": 0.8})
