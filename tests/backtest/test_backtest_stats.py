"""Coverage tests against published tables and hand-written arithmetic."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from margincal.backtest.stats import (
    christoffersen,
    christoffersen_from_counts,
    kupiec_pof,
    traffic_light,
    transition_counts,
)
from margincal.errors import DataError

REF = Path(__file__).resolve().parents[1] / "reference"


def chi2_sf_1(x: float) -> float:
    """Survival function of chi-square(1): P(Z^2 > x) = erfc(sqrt(x / 2))."""
    return math.erfc(math.sqrt(x / 2.0))


def chi2_sf_2(x: float) -> float:
    """Survival function of chi-square(2): exp(-x / 2)."""
    return math.exp(-x / 2.0)


# ---------------------------------------------------------------- Basel traffic light


def test_basel_table_matches_the_binomial_distribution() -> None:
    """The published percentages are P(X <= k) for X ~ Binomial(250, 0.01), rounded to 2 decimals."""
    ref = json.loads((REF / "basel_traffic_light_250_99.json").read_text())
    for row in ref["rows"]:
        cdf = stats.binom.cdf(row["exceptions"], ref["n_obs"], 1 - ref["coverage"])
        assert round(100 * cdf, 2) == pytest.approx(row["cumulative_probability_pct"], abs=1e-9), row


def test_traffic_light_reproduces_the_basel_table() -> None:
    ref = json.loads((REF / "basel_traffic_light_250_99.json").read_text())
    for row in ref["rows"]:
        tl = traffic_light(250, row["exceptions"], 0.99)
        assert tl.zone == row["zone"], row
        assert round(100 * tl.cumulative_probability, 2) == pytest.approx(row["cumulative_probability_pct"])
        assert (tl.green_max, tl.yellow_max) == (4, 9)
    for x in (11, 15, 250):  # "10 or more" is red
        assert traffic_light(250, x, 0.99).zone == "red"


def test_traffic_light_zone_boundaries_other_sizes() -> None:
    # n = 500 at 99%: P(X <= 9) = 0.9682 >= 0.95 (yellow), P(X <= 8) = 0.9319 (green)
    assert stats.binom.cdf(8, 500, 0.01) < 0.95 <= stats.binom.cdf(9, 500, 0.01)
    assert traffic_light(500, 8, 0.99).zone == "green"
    assert traffic_light(500, 9, 0.99).zone == "yellow"
    # zero exceptions is green even where (1 - p)^n >= 95% (n <= 5 at 99%); one in 5 days is red-ish
    assert traffic_light(0, 0, 0.99).zone == "green"
    assert traffic_light(5, 0, 0.99).zone == "green"
    assert traffic_light(5, 1, 0.99).zone == "yellow"  # P(X <= 1) = 0.99902 in [95%, 99.99%)


# ---------------------------------------------------------------- Kupiec


def test_kupiec_by_hand_250_obs_10_breaches() -> None:
    n, x, p = 250, 10, 0.01
    # LR = -2 ln[(1-p)^(n-x) p^x] + 2 ln[(1-x/n)^(n-x) (x/n)^x]
    #    = -2 [240 ln 0.99 + 10 ln 0.01] + 2 [240 ln 0.96 + 10 ln 0.04]
    #    = -2 [-2.412081 - 46.051702] + 2 [-9.797283 - 32.188758] = 96.927566 - 83.972083 = 12.955483
    lr = -2 * (240 * math.log(0.99) + 10 * math.log(0.01)) + 2 * (240 * math.log(0.96) + 10 * math.log(0.04))
    assert lr == pytest.approx(12.9555, abs=5e-4)
    res = kupiec_pof(n, x, 1 - p)
    assert res.statistic == pytest.approx(lr, rel=1e-12)
    assert res.pvalue == pytest.approx(chi2_sf_1(lr), rel=1e-9)
    assert res.pvalue == pytest.approx(3.19e-4, rel=1e-2)
    assert res.observed_rate == pytest.approx(0.04)


def test_kupiec_edge_cases_use_zero_log_zero() -> None:
    # zero breaches: LR = -2 n ln(1 - p) (the (x/n)^x term is 0^0 = 1)
    r0 = kupiec_pof(250, 0, 0.99)
    assert r0.statistic == pytest.approx(-2 * 250 * math.log(0.99), rel=1e-12)
    assert r0.statistic == pytest.approx(5.02517, abs=1e-5)
    # all breaches: LR = -2 n ln p
    r1 = kupiec_pof(20, 20, 0.99)
    assert r1.statistic == pytest.approx(-2 * 20 * math.log(0.01), rel=1e-12)
    # exactly the expected count: LR = 0, p-value 1
    r2 = kupiec_pof(200, 2, 0.99)
    assert r2.statistic == pytest.approx(0.0, abs=1e-9) and r2.pvalue == pytest.approx(1.0)
    # no observations
    r3 = kupiec_pof(0, 0, 0.99)
    assert (r3.statistic, r3.pvalue) == (0.0, 1.0)
    for r in (r0, r1, r2, r3):
        assert math.isfinite(r.statistic) and math.isfinite(r.pvalue)


def test_kupiec_nonrejection_regions_match_kupiec_1995() -> None:
    ref = json.loads((REF / "kupiec_nonrejection_regions.json").read_text())
    for row in ref["rows"]:
        p, T = row["p"], row["T"]
        accepted = [x for x in range(T + 1) if kupiec_pof(T, x, 1 - p).pvalue >= ref["test_level"]]
        assert max(accepted) == row["upper"] - 1, row
        if row["lower"] is not None:
            assert min(accepted) == row["lower"] + 1, row
        else:  # see the .md: the LR test rejects N = 0 at p = 1%, T = 252 (LR = 5.065)
            assert kupiec_pof(T, 0, 1 - p).statistic == pytest.approx(-2 * T * math.log(1 - p))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), frac=st.floats(0, 1), cov=st.floats(0.5, 0.999))
def test_kupiec_matches_scipy_loglikelihoods(n: int, frac: float, cov: float) -> None:
    x = int(round(frac * n))
    p = 1 - cov
    ll0 = stats.binom.logpmf(x, n, p)
    ll1 = stats.binom.logpmf(x, n, x / n)  # the binomial coefficient cancels in the ratio
    expected = max(0.0, -2 * (ll0 - ll1))
    res = kupiec_pof(n, x, cov)
    assert res.statistic == pytest.approx(expected, rel=1e-7, abs=1e-7)
    assert 0.0 <= res.pvalue <= 1.0


def test_kupiec_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="exceeds"):
        kupiec_pof(10, 11, 0.99)
    with pytest.raises(DataError, match="coverage"):
        kupiec_pof(10, 1, 1.0)
    with pytest.raises(DataError, match="whole"):
        kupiec_pof(10.5, 1, 0.99)  # type: ignore[arg-type]


# ---------------------------------------------------------------- Christoffersen

SERIES = [0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
# consecutive pairs (I_{t-1}, I_t), t = 1..19, counted by hand:
#   00 at t = 1, 5, 6, 9, 10, 11, 16, 17, 18, 19 -> n00 = 10
#   01 at t = 2, 7, 12                          -> n01 = 3
#   10 at t = 4, 8, 15                          -> n10 = 3
#   11 at t = 3, 13, 14                         -> n11 = 3
# breaches x = 6 of T = 20; pi01 = 3/13, pi11 = 3/6, pi = 6/19


def test_christoffersen_transition_counts_by_hand() -> None:
    assert transition_counts(SERIES) == (10, 3, 3, 3)
    res = christoffersen(np.array(SERIES, dtype=bool), coverage=0.9)
    assert (res.n00, res.n01, res.n10, res.n11) == (10, 3, 3, 3)
    assert res.pi01 == pytest.approx(3 / 13) and res.pi11 == pytest.approx(0.5) and res.pi == pytest.approx(6 / 19)


def test_christoffersen_statistics_by_hand() -> None:
    ln = math.log
    lr_ind = (-2 * (13 * ln(13 / 19) + 6 * ln(6 / 19))
              + 2 * (10 * ln(10 / 13) + 3 * ln(3 / 13) + 3 * ln(0.5) + 3 * ln(0.5)))
    # unconditional coverage at p = 0.1 on all 20 days, 6 breaches
    lr_uc = -2 * (14 * ln(0.9) + 6 * ln(0.1)) + 2 * (14 * ln(0.7) + 6 * ln(0.3))
    res = christoffersen(SERIES, coverage=0.9)
    assert res.independence.statistic == pytest.approx(lr_ind, rel=1e-12)
    assert res.independence.pvalue == pytest.approx(chi2_sf_1(lr_ind), rel=1e-9)
    assert res.unconditional.statistic == pytest.approx(lr_uc, rel=1e-12)
    assert res.conditional_coverage.statistic == pytest.approx(lr_uc + lr_ind, rel=1e-12)
    assert res.conditional_coverage.pvalue == pytest.approx(chi2_sf_2(lr_uc + lr_ind), rel=1e-9)
    assert res.conditional_coverage.dof == 2 and res.independence.dof == 1
    # figures: LR_ind = -2(-4.93337 - 6.91608) + 2(-2.62364 - 4.39901 - 4.15888) = 23.69890 - 22.36306
    #          LR_uc  = -2(-1.47505 - 13.81551) + 2(-4.99343 - 7.22380)           = 30.58112 - 24.43446
    assert lr_ind == pytest.approx(1.3358, abs=1e-4) and lr_uc == pytest.approx(6.1465, abs=1e-4)


@pytest.mark.parametrize("series", [
    [0] * 30,                     # no breach: pi = 0, state 1 never visited (pi11 undefined)
    [1] * 30,                     # all breaches: pi = 1, state 0 never visited
    [0] * 29 + [1],               # one breach at the end: no transition out of state 1
    [1] + [0] * 29,               # one breach at the start: n11 = 0, n10 = 1
    [0, 1] * 15,                  # perfect alternation: n00 = n11 = 0
    [1],                          # one observation: no transitions
    [],                           # nothing
])
def test_christoffersen_edge_cases_have_no_nan(series: list[int]) -> None:
    res = christoffersen(series, 0.99)
    for v in (res.independence.statistic, res.independence.pvalue, res.conditional_coverage.statistic,
              res.conditional_coverage.pvalue, res.pi01, res.pi11, res.pi):
        assert math.isfinite(v)
    assert res.independence.statistic >= 0


def test_christoffersen_edge_values_by_hand() -> None:
    # no breach: nothing to test for independence, LR_ind = 0
    assert christoffersen([0] * 30, 0.99).independence.statistic == 0.0
    # perfect alternation 0101...: n01 = 15, n10 = 14; pi01 = 1, pi11 = 0 -> the unrestricted likelihood is 1
    res = christoffersen([0, 1] * 15, 0.5)
    pi = 15 / 29
    expected = -2 * (14 * math.log(1 - pi) + 15 * math.log(pi))
    assert res.independence.statistic == pytest.approx(expected, rel=1e-12)
    # one breach at the end: pairs are 28 x 00 and 1 x 01; pi01 = 1/29 = pi -> LR_ind = 0
    assert christoffersen([0] * 29 + [1], 0.99).independence.statistic == pytest.approx(0.0, abs=1e-12)


def test_christoffersen_from_counts_equals_series_version() -> None:
    a = christoffersen(SERIES, 0.95)
    b = christoffersen_from_counts(10, 3, 3, 3, 20, 6, 0.95)
    assert a.independence == b.independence
    assert a.conditional_coverage == b.conditional_coverage


def test_christoffersen_rejects_non_boolean_input() -> None:
    with pytest.raises(DataError, match="NaN"):
        christoffersen([0.0, float("nan"), 1.0])
    with pytest.raises(DataError, match="True/False"):
        christoffersen([0, 2, 1])
