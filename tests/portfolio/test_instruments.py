"""Instrument names (Deribit style) and market-state lookups."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from margincal.errors import ConfigError, DataError
from margincal.margin.portfolio import InstrumentSpec, MarketState, parse_instrument


def test_parse_deribit_names():
    p = parse_instrument("BTC-PERP")
    assert (p.kind, p.underlying, p.expiry, p.offset_group) == ("perpetual", "BTC", None, "BTC")
    assert parse_instrument("ETH-PERPETUAL").kind == "perpetual"
    f = parse_instrument("BTC-27DEC24")
    assert f.kind == "future" and f.expiry == pd.Timestamp("2024-12-27 08:00", tz="UTC")
    o = parse_instrument("BTC-7JUN24-60000-P")
    assert (o.kind, o.strike, o.option_type) == ("option", 60000.0, "P")
    assert o.expiry == pd.Timestamp("2024-06-07 08:00", tz="UTC")
    assert parse_instrument("XRP_USDC-27DEC24-0d6-C").strike == 0.6
    assert parse_instrument("XRP_USDC-27DEC24-0d6-C").underlying == "XRP"


@pytest.mark.parametrize("bad", ["BTC", "BTC-27XYZ24", "BTC-31FEB24", "BTC-27DEC24-abc-C", "BTC-27DEC24-1-X"])
def test_bad_names_raise(bad):
    with pytest.raises(DataError, match="instrument"):
        parse_instrument(bad)


def test_spec_validation():
    with pytest.raises(ConfigError, match="needs an expiry"):
        InstrumentSpec("X", "future", "BTC")
    with pytest.raises(ConfigError, match="strike"):
        InstrumentSpec("X", "option", "BTC", expiry="2024-06-28", option_type="C")
    with pytest.raises(ConfigError, match="contract_size"):
        InstrumentSpec("X", "perpetual", "BTC", contract_size=0.0)
    with pytest.raises(ConfigError, match="only options"):
        InstrumentSpec("X", "perpetual", "BTC", strike=1.0)


def test_market_lookups_and_years_to_expiry():
    spec = parse_instrument("BTC-28JUN24-70000-C")
    m = MarketState(spot={"BTC": 68800.0}, valuation_time="2024-05-24T08:00", flat_vol=0.5, rate=0.05,
                    vol_surface=lambda u, k, t, f: 0.4 + 0.1 * (k / f - 1.0))
    # 2024-05-24 08:00 -> 2024-06-28 08:00 = 35 days exactly
    assert spec.years_to_expiry(m.valuation_time) == pytest.approx(35 / 365)
    assert m.forward_of(spec) == pytest.approx(68800.0 * math.exp(0.05 * 35 / 365))
    assert m.vol_of(spec) == pytest.approx(0.4 + 0.1 * (70000.0 / m.forward_of(spec) - 1.0))
    m2 = MarketState(spot={"BTC": 68800.0}, valuation_time="2024-05-24", vols={spec.name: 0.61}, flat_vol=0.5,
                     forwards={spec.name: 69000.0})
    assert m2.vol_of(spec) == 0.61 and m2.forward_of(spec) == 69000.0
    with pytest.raises(DataError, match="no spot price for ETH"):
        m2.spot_of("ETH")
    with pytest.raises(ConfigError, match="spot"):
        MarketState(spot={"BTC": -1.0}, valuation_time="2024-05-24")
