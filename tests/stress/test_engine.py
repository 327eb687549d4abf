"""Book stress: closed forms per instrument, fast == loop reference, margins, Cover-1 / Cover-2."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import norm

from margincal.errors import ConfigError, DataError
from margincal.stress.book import Book, StressInstrument, StressMarket, book_from_frame, synthetic_book
from margincal.stress.engine import account_margin, scenario_losses, scenario_losses_reference, stress_book
from margincal.stress.scenarios import (
    CompositeScenario,
    CorrelationShock,
    FundingSpike,
    LiquidityCost,
    LiquidityShock,
    SpotShock,
    VolShock,
    hypothetical_scenarios,
)

MARKET = StressMarket({"BTC": 50_000.0, "ETH": 2_500.0}, {"BTC": 0.60, "ETH": 0.80},
                      {"BTC": 1e9, "ETH": 4e8}, as_of="test")
PERP = StressInstrument("BTC-PERP", "perpetual", "BTC")
ETHP = StressInstrument("ETH-PERP", "perpetual", "ETH")
CALL = StressInstrument("BTC-30D-50000-C", "option", "BTC", 1.0, 50_000.0, 30 / 365, "C")


def _book(rows, instruments=(PERP, ETHP, CALL), collateral=None):
    m = np.zeros((len(rows), len(instruments)))
    for i, r in enumerate(rows):
        m[i, : len(r)] = r
    return Book(tuple(f"a{i}" for i in range(len(rows))), tuple(instruments), sp.csr_matrix(m),
                None if collateral is None else np.asarray(collateral, float))


def _black_call(F, K, T, s):
    # Black (1976), zero rate: F N(d1) - K N(d2)
    d1 = (math.log(F / K) + 0.5 * s * s * T) / (s * math.sqrt(T))
    return F * norm.cdf(d1) - K * norm.cdf(d1 - s * math.sqrt(T))


def test_linear_and_option_losses_closed_form():
    b = _book([[2.0, 0, 0], [0, -10.0, 0], [0, 0, -3.0]])
    r = math.log(0.8)
    loss = scenario_losses(b, MARKET, [SpotShock("d", move=r), CompositeScenario(
        "dv", parts=(SpotShock("s", move=r), VolShock("v", shift=0.3)))])
    # long 2 BTC perp: loss = -2 * 50,000 * (0.8 - 1) = 20,000
    assert loss[0, 0] == pytest.approx(20_000.0)
    # short 10 ETH perp: gains 10 * 2,500 * 0.2 = 5,000 -> loss -5,000
    assert loss[1, 0] == pytest.approx(-5_000.0)
    # short 3 calls: loss = 3 * (C(40k, vol 0.6) - C(50k, vol 0.6)) (negative: calls lost value)
    c0 = _black_call(50_000, 50_000, 30 / 365, 0.6)
    c1 = _black_call(40_000, 50_000, 30 / 365, 0.6)
    c2 = _black_call(40_000, 50_000, 30 / 365, 0.9)
    assert loss[2, 0] == pytest.approx(3 * (c1 - c0), rel=1e-9)
    assert loss[2, 1] == pytest.approx(3 * (c2 - c0), rel=1e-9)


def test_funding_correlation_and_liquidity_closed_form():
    b = _book([[1.0, -4.0, 0]])
    # funding 0.3% x 3 = 0.9%: long BTC pays 0.009 * 50,000 = 450, short ETH receives 0.009 * 10,000 = 90;
    # the other side (shorts pay) gives -450 + 90: worst = 360
    f = scenario_losses(b, MARKET, [FundingSpike("f", rate_per_8h=0.003, periods=3)])
    assert f[0, 0] == pytest.approx(360.0)
    # correlation to one, 3 sigma over 24h: BTC down 3*0.6*sqrt(24/8760), ETH down 3*0.8*sqrt(24/8760)
    k = 3 * math.sqrt(24 / 8760)
    down = -(50_000 * math.expm1(-k * 0.6)) - (-4 * 2_500 * math.expm1(-k * 0.8))
    up = -(50_000 * math.expm1(k * 0.6)) - (-4 * 2_500 * math.expm1(k * 0.8))
    c = scenario_losses(b, MARKET, [CorrelationShock("c", sigmas=3.0, horizon_hours=24.0)])
    assert c[0, 0] == pytest.approx(max(down, up))
    # liquidity: N (hs + k sqrt(N / ADV)) per position
    cost = LiquidityCost(0.001, 2.0)
    expect = 50_000 * (0.001 + 2 * math.sqrt(50_000 / 1e9)) + 10_000 * (0.001 + 2 * math.sqrt(10_000 / 4e8))
    liq = scenario_losses(b, MARKET, [LiquidityShock("l", cost=cost)])
    assert liq[0, 0] == pytest.approx(expect)


def test_fast_matches_reference_on_synthetic_book():
    mk = StressMarket({u: p for u, p in zip(("BTC", "ETH", "SOL", "XRP", "DOGE"), (6e4, 3e3, 150.0, 0.6, 0.1),
                                             strict=True)},
                      {"BTC": 0.5, "ETH": 0.7, "SOL": 0.9, "XRP": 0.8, "DOGE": 1.0},
                      {"BTC": 2e9, "ETH": 1e9, "SOL": 3e8, "XRP": 2e8, "DOGE": 1e8})
    b = synthetic_book(300, market=mk, seed=3)
    sc = hypothetical_scenarios()
    fast = scenario_losses(b, mk, sc, chunk_size=77)  # odd chunk size exercises the chunking
    ref = scenario_losses_reference(b, mk, sc)
    np.testing.assert_allclose(fast, ref, rtol=1e-9, atol=1e-6)


def test_cover1_cover2_and_margin():
    b = _book([[1.0], [2.0], [-1.0], [0.5]], instruments=(PERP,))
    # IM 10% of notional: 5,000, 10,000, 5,000, 2,500
    np.testing.assert_allclose(account_margin(b, MARKET, 0.10), [5_000, 10_000, 5_000, 2_500])
    np.testing.assert_allclose(account_margin(b, MARKET, {"BTC-PERP": 0.2}), [10_000, 20_000, 10_000, 5_000])
    res = stress_book(b, MARKET, [SpotShock("d30", move=math.log(0.7))], margin=0.10)
    # losses 15,000, 30,000, -15,000, 7,500; beyond margin: 10,000, 20,000, 0, 5,000
    row = res.summary()[0]
    assert row["total_shortfall"] == pytest.approx(35_000.0)
    assert row["cover1"] == pytest.approx(20_000.0) and row["cover1_account"] == "a1"
    assert row["cover2"] == pytest.approx(30_000.0) and row["cover2_accounts"] == ["a1", "a0"]
    assert row["accounts_short"] == 3
    pa = res.per_account("d30")
    assert pa.loc["a2", "shortfall"] == 0.0


def test_collateral_resources_and_errors():
    b = _book([[1.0], [1.0]], instruments=(PERP,), collateral=[20_000.0, 1_000.0])
    res = stress_book(b, MARKET, [SpotShock("d", move=math.log(0.9))], resources="collateral")
    # loss 5,000 each; beyond collateral: 0 and 4,000
    assert res.summary()[0]["total_shortfall"] == pytest.approx(4_000.0)
    with pytest.raises(ConfigError, match="margin"):
        stress_book(b, MARKET, [SpotShock("d")])
    with pytest.raises(ConfigError, match="no margin rate"):
        account_margin(b, MARKET, {"ETH-PERP": 0.1})


def test_book_from_frame_sums_duplicates_and_validates():
    df = pd.DataFrame({"account": ["x", "x", "y"], "instrument": ["BTC-PERP", "BTC-PERP", "ETH-PERP"],
                       "quantity": [1.0, 0.5, -2.0], "collateral": [100.0, 100.0, 50.0]})
    b = book_from_frame(df)
    assert b.accounts == ("x", "y")
    assert b.positions.toarray().tolist() == [[1.5, 0.0], [0.0, -2.0]]
    assert b.collateral.tolist() == [100.0, 50.0]
    bad = df.assign(quantity=["1", "oops", "2"])
    with pytest.raises(DataError, match="row 3: quantity"):
        book_from_frame(bad)
    with pytest.raises(DataError, match="different collateral"):
        book_from_frame(df.assign(collateral=[100.0, 90.0, 50.0]))


def test_portfolio_margin_adapter_offsets():
    """The risk-matrix engine (margincal.margin.portfolio) nets spot against the perp of the same underlying."""
    spot = StressInstrument("BTC-USDT", "spot", "BTC")
    b = Book(("long", "short", "hedged"), (PERP, spot),
             sp.csr_matrix(np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, -1.0]])))
    im = account_margin(b, MARKET, "portfolio")
    assert im[0] > 0 and im[1] == pytest.approx(im[0], rel=0.05)  # symmetric shocks: long ~ short
    assert im[2] < 0.2 * im[0]  # long perp + short spot: only the engine's contingency add-on is left
    assert im[0] < account_margin(b, MARKET, 1.0)[0]  # far below 100% of notional
    res = stress_book(b, MARKET, [SpotShock("d", move=math.log(0.7))], margin="portfolio")
    assert "portfolio" in res.provenance["margin_source"]
