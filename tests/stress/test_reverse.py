"""Reverse stress against the analytic linear answer |shock*| = (margin + fund) / |dollar delta|."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from margincal.errors import CalibrationError
from margincal.stress.book import Book, StressInstrument, StressMarket
from margincal.stress.reverse import BoundaryFunction, reverse_stress_spot, reverse_stress_spot_vol

MARKET = StressMarket({"BTC": 50_000.0}, {"BTC": 0.6})
PERP = StressInstrument("BTC-PERP", "perpetual", "BTC")
CALL = StressInstrument("BTC-C", "option", "BTC", 1.0, 50_000.0, 30 / 365, "C")


def _book(qty, instruments=(PERP,)):
    m = np.atleast_2d(np.asarray(qty, float))
    return Book(tuple(f"a{i}" for i in range(m.shape[0])), tuple(instruments), sp.csr_matrix(m))


@settings(max_examples=30, deadline=None)
@given(q=st.floats(0.1, 50.0), sign=st.sampled_from([-1.0, 1.0]), rate=st.floats(0.01, 0.3),
       fund_frac=st.floats(0.0, 0.5))
def test_linear_single_account_analytic(q, sign, rate, fund_frac):
    """Long (short) q BTC: loss(s) = -q S s, margin M = rate q S: s* = -(M + F) / (q S) (long), + for short."""
    delta = sign * q * 50_000.0
    margin = rate * abs(delta)
    fund = fund_frac * abs(delta)
    expect = (margin + fund) / abs(delta)
    if sign < 0 and expect > 10.0:  # beyond the search bound for rallies
        return
    r = reverse_stress_spot(_book([[sign * q]]), MARKET, margin=rate, insurance_fund=fund)
    assert r.spot == pytest.approx(-sign * expect, rel=1e-9, abs=1e-12)
    assert r.value_at_shock == pytest.approx(fund, rel=1e-6, abs=1e-6)


def test_linear_book_total_criterion_analytic():
    # three accounts, net dollar delta (2 - 0.5 + 1) * 50,000 = 125,000; margins 10% of gross = 17,500; fund 5,000
    b = _book([[2.0], [-0.5], [1.0]])
    r = reverse_stress_spot(b, MARKET, margin=0.10, insurance_fund=5_000.0, criterion="total")
    assert r.spot == pytest.approx(-(17_500 + 5_000) / 125_000, rel=1e-9)


def test_spot_vol_search_on_linear_book_needs_no_vol():
    b = _book([[2.0]])
    r1 = reverse_stress_spot(b, MARKET, margin=0.05, insurance_fund=2_000.0)
    r2 = reverse_stress_spot_vol(b, MARKET, margin=0.05, insurance_fund=2_000.0, spot_scale=0.1, vol_scale=0.1)
    # the boundary is the vertical line s = -(5,000 + 2,000)/100,000 = -0.07: the nearest point has vol 0
    assert r2.spot == pytest.approx(-0.07, abs=1e-6)
    assert abs(r2.vol) < 1e-4
    assert r2.norm == pytest.approx(abs(r1.spot) / 0.1, rel=1e-5)


def test_spot_vol_point_is_on_boundary_and_no_grid_point_is_closer():
    # short 4 calls + long 1 perp: vega makes vol shocks matter
    b = _book([[1.0, -4.0]], instruments=(PERP, CALL))
    r = reverse_stress_spot_vol(b, MARKET, margin=0.05, insurance_fund=1_000.0, n_directions=16)
    h = BoundaryFunction(b, MARKET, 0.05, 1_000.0)
    assert h(r.spot, r.vol) == pytest.approx(0.0, abs=1e-3)
    # brute-force check: no point of a polar grid strictly inside the found radius reaches the boundary
    for ang in np.linspace(0, 2 * math.pi, 72, endpoint=False):
        for rad in np.linspace(0.05, 0.97, 12) * r.norm:
            s, v = rad * math.cos(ang) * 0.1, rad * math.sin(ang) * 0.1
            assert h(s, v) < 0.0


def test_no_shock_can_exhaust_a_hedged_book():
    b = _book([[1.0], [-1.0]])
    with pytest.raises(CalibrationError):
        reverse_stress_spot(b, MARKET, margin=0.5, insurance_fund=1e9, criterion="total")
