"""Liquidity add-on: square-root impact, book walk, fallback beyond the book, monotonicity in size."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margincal.data.store import to_store_ts
from margincal.errors import ConfigError, DataError
from margincal.margin.liquidity import (
    DepthBook,
    LiquidityModel,
    book_walk_cost,
    book_walk_cost_reference,
    load_depth,
    sqrt_impact_cost,
)


def test_sqrt_impact_worked_example():
    # sigma 4%/day, ADV 1e9, Q = 1e7: 1.0 * 0.04 * sqrt(0.01) = 0.004 (40 bp)
    assert sqrt_impact_cost(1e7, 1e9, 0.04) == pytest.approx(0.004)
    # Y = 0.5 halves it, 4x the size doubles it
    assert sqrt_impact_cost(1e7, 1e9, 0.04, y=0.5) == pytest.approx(0.002)
    assert sqrt_impact_cost(4e7, 1e9, 0.04) == pytest.approx(0.008)
    m = LiquidityModel(adv=1e9, sigma_daily=0.04, half_spread=0.0002)
    assert m.cost(1e7) == pytest.approx(0.0002 + 0.004)


def _book() -> DepthBook:
    # mid 100; bids 99.9 x 10, 99.5 x 20, 99.0 x 50 ; asks 100.1 x 10, 100.5 x 10, 101 x 100
    return DepthBook(np.array([99.9, 99.5, 99.0]), np.array([10.0, 20.0, 50.0]),
                     np.array([100.1, 100.5, 101.0]), np.array([10.0, 10.0, 100.0]))


def test_book_walk_worked_example():
    b = _book()
    assert b.mid == pytest.approx(100.0)
    assert b.half_spread == pytest.approx(0.001)
    notional, slip = b.side_levels("bid")
    # selling 2,000 quote: level 1 has 999 at 0.1% slippage, level 2 has 1,990 at 0.5%
    # cost = 999 * 0.001 + 1,001 * 0.005 = 0.999 + 5.005 = 6.004 -> 6.004 / 2,000 = 0.003002
    assert book_walk_cost(2000.0, notional, slip) == pytest.approx(6.004 / 2000.0)
    assert book_walk_cost_reference(2000.0, notional.tolist(), slip.tolist()) == pytest.approx(6.004 / 2000.0)


def test_beyond_book_falls_back_to_sqrt_impact():
    b = _book()
    m = LiquidityModel(adv=1e6, sigma_daily=0.05, depth=b)
    bid_depth = 999 + 1990 + 4950  # 7,939 quote on the bid side
    q = 20_000.0
    # bid side: all 3 levels + remainder at max(1%, 0.1% + 0.05 * sqrt(0.02) = 0.807%) = 1%
    inside = 999 * 0.001 + 1990 * 0.005 + 4950 * 0.01
    bid_cost = (inside + (q - bid_depth) * 0.01) / q
    # ask side: 1,001 at 0.1%, 1,005 at 0.5%, 10,100 at 1%, remainder at max(1%, 0.807%)
    ask_depth = 1001 + 1005 + 10100
    ask_cost = (1001 * 0.001 + 1005 * 0.005 + 10100 * 0.01 + (q - ask_depth) * 0.01) / q
    assert m.cost(q) == pytest.approx(max(bid_cost, ask_cost))
    # far beyond: sqrt impact dominates: Q = 1e6 -> 0.001 + 0.05 * 1 = 0.051 on the tail part
    big = 1e6
    tail = 0.001 + 0.05 * math.sqrt(big / 1e6)
    bid_big = (inside + (big - bid_depth) * tail) / big
    ask_big = (1001 * 0.001 + 1005 * 0.005 + 10100 * 0.01 + (big - ask_depth) * tail) / big
    assert m.cost(big) == pytest.approx(max(bid_big, ask_big))


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=0.0, max_value=1e7), st.floats(min_value=0.0, max_value=1e7),
       st.floats(min_value=0.001, max_value=0.2), st.booleans())
def test_cost_non_decreasing_in_size(a, step, sigma, with_book):
    m = LiquidityModel(adv=5e5, sigma_daily=sigma, half_spread=0.0005, depth=_book() if with_book else None)
    assert m.cost(a + step) >= m.cost(a) - 1e-12


def test_vectorised_equals_reference():
    rng = np.random.default_rng(3)
    notional = np.sort(rng.uniform(1, 1000, 8))
    slip = np.sort(rng.uniform(0, 0.02, 8))
    q = rng.uniform(0, 9000, 50)
    tail = rng.uniform(0, 0.05, 50)
    fast = book_walk_cost(q, notional, slip, tail_rate=tail)
    ref = [book_walk_cost_reference(x, notional.tolist(), slip.tolist(), t) for x, t in zip(q, tail, strict=True)]
    np.testing.assert_allclose(fast, ref, rtol=1e-12)


def test_depth_validation():
    with pytest.raises(DataError, match="crossed"):
        DepthBook(np.array([101.0]), np.array([1.0]), np.array([100.0]), np.array([1.0]))
    with pytest.raises(DataError, match="decreasing"):
        DepthBook(np.array([99.0, 99.5]), np.array([1.0, 1.0]), np.array([100.0]), np.array([1.0]))
    with pytest.raises(ConfigError, match="adv"):
        LiquidityModel(adv=0.0, sigma_daily=0.01)


def test_from_bars_and_store(con):
    idx = pd.date_range("2024-01-01", periods=40, freq="D", tz="UTC")
    close = 100 * np.exp(np.cumsum(np.r_[0.0, np.tile([0.01, -0.01], 20)[:39]]))
    bars = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1000.0}, index=idx)
    m = LiquidityModel.from_bars(bars, window=30)
    # ADV = mean(close * volume) over the last 30 bars; sigma = sample sd of +-1% log returns
    assert m.adv == pytest.approx(float((bars["close"] * 1000.0).iloc[-30:].mean()))
    r = np.diff(np.log(close[-31:]))
    assert m.sigma_daily == pytest.approx(float(np.std(r, ddof=1)))
    # store: depth snapshots (two timestamps; the later one is used)
    rows = []
    for ts, shift in (("2024-02-01 00:00", 0.0), ("2024-02-01 01:00", 1.0)):
        for side, px, sz in (("bid", 99.0, 5.0), ("bid", 98.0, 5.0), ("ask", 101.0, 5.0), ("ask", 102.0, 5.0)):
            rows.append([ "X", to_store_ts(pd.Timestamp(ts, tz="UTC")), side, px + shift, sz])
    con.executemany("INSERT INTO depth_snapshots VALUES (?, ?, ?, ?, ?)", rows)
    book = load_depth(con, "X")
    assert book is not None and book.mid == pytest.approx(101.0)
    early = load_depth(con, "X", at="2024-02-01 00:30")
    assert early is not None and early.mid == pytest.approx(100.0)
    assert load_depth(con, "Y") is None
