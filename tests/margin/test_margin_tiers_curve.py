"""Brackets from a margin curve (tiers.brackets_from_curve): Binance's published cum, continuity, grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margincal.errors import ConfigError
from margincal.margin.tiers import (
    bracket_coverage,
    brackets_from_curve,
    cumulative_amounts_reference,
    geometric_boundaries,
    maintenance_margin_reference,
)

REF = Path(__file__).parents[1] / "reference" / "binance_btcusdt_brackets.csv"


def test_binance_table_rebuilt_from_its_step_curve():
    # The published table seen as a curve (rate of the bracket containing N): the "average" convention
    # must give back Binance's leverages, rates and its own `cum` column.
    b = pd.read_csv(REF)
    caps = b["notionalCap"].to_numpy(float)

    def step(col: str):
        vals = b[col].to_numpy(float)
        return lambda n: vals[np.searchsorted(caps, np.asarray(n, float), side="left")]

    lev = b["initialLeverage"].to_numpy(float)
    im = lambda n: 1.0 / lev[np.searchsorted(caps, np.asarray(n, float), side="left")]  # noqa: E731
    sched = brackets_from_curve(caps, im, step("maintMarginRatio"), convention="average", rounding=1e-6)
    np.testing.assert_array_equal(sched.max_leverages, lev)
    np.testing.assert_allclose(sched.mm_rates, b["maintMarginRatio"])
    np.testing.assert_allclose(sched.maintenance_amounts, b["cum"], rtol=0, atol=1e-6)


def _curve(n):
    n = np.asarray(n, dtype=float)
    mm = 0.004 + 0.002 * np.sqrt(n / 1e6)
    return 1.5 * mm, mm


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 6), st.floats(1e4, 1e6))
def test_mm_continuous_at_boundaries_and_monotone(per_decade, first):
    caps = geometric_boundaries(first, 1e9, per_decade=min(per_decade, 3))
    sched = brackets_from_curve(caps, lambda n: _curve(n)[0], lambda n: _curve(n)[1])
    lowers = sched.lowers[1:]
    eps = 1e-10 * lowers
    left = sched.maintenance_margin(lowers - eps)
    right = sched.maintenance_margin(lowers)
    np.testing.assert_allclose(left, right, rtol=1e-8)
    # slice-by-slice reference equals the cumulative-deduction form
    for x in (lowers[0] * 0.5, lowers[-1] * 1.3):
        assert sched.maintenance_margin(x) == pytest.approx(maintenance_margin_reference(sched, x), rel=1e-12)
    np.testing.assert_allclose(sched.maintenance_amounts,
                               cumulative_amounts_reference(sched.lowers.tolist(), sched.mm_rates.tolist()))
    assert np.all(np.diff(sched.max_leverages) <= 0) and np.all(np.diff(sched.mm_rates) >= 0)
    assert np.all(sched.max_leverages == np.floor(sched.max_leverages))
    assert np.all(sched.mm_rates <= sched.im_rates + 1e-15)


def test_marginal_convention_matches_the_curve_total_at_caps():
    caps = np.array([1e5, 1e6, 1e7, 1e8])
    sched = brackets_from_curve(caps, lambda n: _curve(n)[0], lambda n: _curve(n)[1], rounding=1e-9)
    # the bracket MM at each cap equals cap * mm(cap) up to the rounding
    np.testing.assert_allclose(sched.maintenance_margin(caps), caps * _curve(caps)[1], rtol=1e-6)
    cov = bracket_coverage(sched, lambda n: _curve(n)[1], np.geomspace(1e3, 1e8, 200))
    assert np.all(cov >= 1 - 1e-6)  # the total is convex, so the brackets cover the curve in between


def test_leverage_grid_and_errors():
    caps = np.array([1e5, 1e6, 1e7])
    sched = brackets_from_curve(caps, lambda n: np.full(np.shape(n), 1 / 90), lambda n: np.full(np.shape(n), 0.004),
                                leverage_grid=[1, 2, 5, 10, 20, 50, 75, 100, 125], rounding=1e-9)
    assert sched.max_leverages.tolist() == [75.0, 75.0, 75.0]
    with pytest.raises(ConfigError, match="increasing"):
        brackets_from_curve([2.0, 1.0], lambda n: n, lambda n: n)
    with pytest.raises(ConfigError, match="convention"):
        brackets_from_curve([1.0], lambda n: np.array([0.1]), lambda n: np.array([0.05]), convention="x")
    assert geometric_boundaries(1e5, 1e6, per_decade=3).tolist() == [1e5, 2e5, 5e5, 1e6]
