"""Coverage tests for VaR-type margin: Kupiec POF, Christoffersen, Basel traffic light.

Notation: ``coverage`` is the confidence of the margin (0.99); a *breach*
(exception) is a day whose realised loss exceeds the margin, expected with
probability ``p = 1 - coverage``; ``n`` observations hold ``x`` breaches.

Kupiec (1995) proportion-of-failures test::

    LR_pof = -2 ln[(1-p)^(n-x) p^x] + 2 ln[(1-x/n)^(n-x) (x/n)^x]   ~ chi2(1)

Christoffersen (1998): from the breach indicator series ``I_t`` count the
transitions ``n_ij`` = number of ``t`` with ``I_{t-1} = i`` and ``I_t = j``;
``pi_01 = n01/(n00+n01)``, ``pi_11 = n11/(n10+n11)``,
``pi = (n01+n11)/(n00+n01+n10+n11)``::

    LR_ind = -2 ln[(1-pi)^(n00+n10) pi^(n01+n11)]
             + 2 ln[(1-pi_01)^n00 pi_01^n01 (1-pi_11)^n10 pi_11^n11]     ~ chi2(1)
    LR_cc  = LR_pof + LR_ind                                               ~ chi2(2)

``LR_pof`` inside ``LR_cc`` is Kupiec's statistic on all ``n`` observations
(the usual textbook decomposition, e.g. Jorion, *Value at Risk*, ch. 6);
``LR_ind`` uses the ``n - 1`` transitions.

Edge cases, without NaN: every ``k ln q`` term is taken as **0 when k = 0**
(the ``0 ln 0 = 0`` convention, the limit of ``k ln(k/n)`` as ``k -> 0``). So
zero breaches, all breaches, and a state that is never left (``n10 + n11 = 0``,
making ``pi_11`` undefined) all give finite statistics: e.g. no breach at all
gives ``LR_ind = 0`` (nothing to test) and ``LR_pof = -2 n ln(1-p)``. An
undefined transition probability is reported as 0. Statistics are clipped at 0
(rounding can make an exact-fit LR -1e-15).

Basel traffic light (Basel Committee, *Supervisory framework for the use of
"backtesting" in conjunction with the internal models approach to market risk
capital requirements*, January 1996): with ``X ~ Binomial(n, p)`` the
cumulative probability ``P(X <= x)`` decides the zone: **green** below 95%,
**yellow** from 95% up to (not including) 99.99%, **red** from 99.99%. For
250 days at 99% this is green 0-4, yellow 5-9, red 10+. For ``n != 250`` the
same probability cut-offs are applied to the binomial with the actual ``n``.
Zero exceptions is always green: for very short samples (``(1-p)^n >= 95%``,
e.g. n <= 5 at 99%) the cut-offs would otherwise put a perfect record in the
yellow zone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from margincal.errors import DataError

GREEN_BELOW = 0.95
RED_FROM = 0.9999


def _xlogy(k: float, q: float) -> float:
    """``k * ln(q)`` with the convention ``0 * ln(0) = 0``."""
    if k == 0:
        return 0.0
    if q <= 0.0:  # k > 0 events with zero probability: impossible under the MLE, guard anyway
        return -math.inf
    return k * math.log(q)


def _check_coverage(coverage: float) -> float:
    c = float(coverage)
    if not 0.0 < c < 1.0:
        raise DataError(f"coverage is {coverage}; it must be in (0, 1), e.g. 0.99")
    return c


def _check_counts(n_obs: int, n_breaches: int) -> tuple[int, int]:
    n, x = int(n_obs), int(n_breaches)
    if n != n_obs or x != n_breaches:
        raise DataError(f"n_obs={n_obs}, n_breaches={n_breaches}: counts must be whole numbers")
    if n < 0 or x < 0:
        raise DataError(f"n_obs={n}, n_breaches={x}: counts must be >= 0")
    if x > n:
        raise DataError(f"n_breaches={x} exceeds n_obs={n}")
    return n, x


@dataclass(frozen=True)
class LikelihoodRatio:
    """A likelihood-ratio statistic, its chi-square degrees of freedom and p-value."""

    statistic: float
    pvalue: float
    dof: int


@dataclass(frozen=True)
class KupiecResult:
    """Kupiec proportion-of-failures test (``statistic`` = LR_pof, ``pvalue`` from chi2(1))."""

    n_obs: int
    n_breaches: int
    coverage: float
    expected_rate: float
    observed_rate: float
    statistic: float
    pvalue: float


@dataclass(frozen=True)
class ChristoffersenResult:
    """Christoffersen independence and conditional-coverage tests with their transition counts."""

    n_obs: int
    n_breaches: int
    coverage: float
    n00: int
    n01: int
    n10: int
    n11: int
    pi01: float
    pi11: float
    pi: float
    unconditional: KupiecResult
    independence: LikelihoodRatio
    conditional_coverage: LikelihoodRatio


@dataclass(frozen=True)
class TrafficLightResult:
    """Basel traffic-light zone of ``n_breaches`` in ``n_obs`` at ``coverage``."""

    n_obs: int
    n_breaches: int
    coverage: float
    zone: str
    cumulative_probability: float
    green_max: int
    yellow_max: int


def _lr_pof(n: int, x: int, p: float) -> float:
    if n == 0:
        return 0.0
    phat = x / n
    ll0 = _xlogy(n - x, 1.0 - p) + _xlogy(x, p)
    ll1 = _xlogy(n - x, 1.0 - phat) + _xlogy(x, phat)
    return max(0.0, -2.0 * (ll0 - ll1))


def kupiec_pof(n_obs: int, n_breaches: int, coverage: float = 0.99) -> KupiecResult:
    """Kupiec's proportion-of-failures likelihood-ratio test (see module doc).

    >>> round(kupiec_pof(250, 10, 0.99).statistic, 4)
    12.9555
    """
    n, x = _check_counts(n_obs, n_breaches)
    c = _check_coverage(coverage)
    p = 1.0 - c
    lr = _lr_pof(n, x, p)
    return KupiecResult(
        n_obs=n,
        n_breaches=x,
        coverage=c,
        expected_rate=p,
        observed_rate=(x / n) if n else 0.0,
        statistic=lr,
        pvalue=float(stats.chi2.sf(lr, 1)),
    )


def transition_counts(breaches: object) -> tuple[int, int, int, int]:
    """``(n00, n01, n10, n11)`` of a boolean breach series (consecutive pairs)."""
    b = _as_bool(breaches)
    if b.size < 2:
        return 0, 0, 0, 0
    prev, cur = b[:-1], b[1:]
    n11 = int(np.count_nonzero(prev & cur))
    n10 = int(np.count_nonzero(prev & ~cur))
    n01 = int(np.count_nonzero(~prev & cur))
    n00 = int(b.size - 1 - n11 - n10 - n01)
    return n00, n01, n10, n11


def _as_bool(breaches: object) -> np.ndarray:
    a = np.asarray(breaches)
    if a.ndim != 1:
        a = a.ravel()
    if a.dtype == bool:
        return a
    af = a.astype(float)
    if np.isnan(af).any():
        i = int(np.flatnonzero(np.isnan(af))[0])
        raise DataError(f"breaches[{i}] is NaN; pass only evaluated days (True/False)")
    if not np.isin(af, (0.0, 1.0)).all():
        i = int(np.flatnonzero(~np.isin(af, (0.0, 1.0)))[0])
        raise DataError(f"breaches[{i}] is {a[i]!r}; breach indicators must be True/False or 0/1")
    return af.astype(bool)


def lr_independence(n00: int, n01: int, n10: int, n11: int) -> float:
    """Christoffersen's LR_ind from transition counts (``0 ln 0 = 0``; see module doc)."""
    t = n00 + n01 + n10 + n11
    if t == 0:
        return 0.0
    pi = (n01 + n11) / t
    pi01 = n01 / (n00 + n01) if (n00 + n01) else 0.0
    pi11 = n11 / (n10 + n11) if (n10 + n11) else 0.0
    ll0 = _xlogy(n00 + n10, 1.0 - pi) + _xlogy(n01 + n11, pi)
    ll1 = _xlogy(n00, 1.0 - pi01) + _xlogy(n01, pi01) + _xlogy(n10, 1.0 - pi11) + _xlogy(n11, pi11)
    return max(0.0, -2.0 * (ll0 - ll1))


def christoffersen(breaches: object, coverage: float = 0.99) -> ChristoffersenResult:
    """Christoffersen (1998) independence and conditional-coverage tests on a boolean series.

    ``breaches`` is the breach indicator of consecutive evaluation periods
    (True = the loss exceeded the margin). For overlapping multi-bar horizons
    pass a non-overlapping subsample (see :mod:`margincal.backtest.engine`).
    """
    b = _as_bool(breaches)
    c = _check_coverage(coverage)
    n00, n01, n10, n11 = transition_counts(b)
    uc = kupiec_pof(int(b.size), int(np.count_nonzero(b)), c)
    lr_ind = lr_independence(n00, n01, n10, n11)
    lr_cc = uc.statistic + lr_ind
    t = n00 + n01 + n10 + n11
    return ChristoffersenResult(
        n_obs=int(b.size),
        n_breaches=uc.n_breaches,
        coverage=c,
        n00=n00,
        n01=n01,
        n10=n10,
        n11=n11,
        pi01=n01 / (n00 + n01) if (n00 + n01) else 0.0,
        pi11=n11 / (n10 + n11) if (n10 + n11) else 0.0,
        pi=(n01 + n11) / t if t else 0.0,
        unconditional=uc,
        independence=LikelihoodRatio(lr_ind, float(stats.chi2.sf(lr_ind, 1)), 1),
        conditional_coverage=LikelihoodRatio(lr_cc, float(stats.chi2.sf(lr_cc, 2)), 2),
    )


def christoffersen_from_counts(n00: int, n01: int, n10: int, n11: int, n_obs: int, n_breaches: int,
                               coverage: float = 0.99) -> ChristoffersenResult:
    """The same tests from pooled counts (e.g. summed over instruments, assuming independence)."""
    c = _check_coverage(coverage)
    for name, v in (("n00", n00), ("n01", n01), ("n10", n10), ("n11", n11)):
        if int(v) != v or v < 0:
            raise DataError(f"{name} is {v}; transition counts must be whole numbers >= 0")
    uc = kupiec_pof(n_obs, n_breaches, c)
    lr_ind = lr_independence(n00, n01, n10, n11)
    lr_cc = uc.statistic + lr_ind
    t = n00 + n01 + n10 + n11
    return ChristoffersenResult(
        n_obs=int(n_obs), n_breaches=int(n_breaches), coverage=c, n00=int(n00), n01=int(n01), n10=int(n10),
        n11=int(n11), pi01=n01 / (n00 + n01) if (n00 + n01) else 0.0,
        pi11=n11 / (n10 + n11) if (n10 + n11) else 0.0, pi=(n01 + n11) / t if t else 0.0,
        unconditional=uc, independence=LikelihoodRatio(lr_ind, float(stats.chi2.sf(lr_ind, 1)), 1),
        conditional_coverage=LikelihoodRatio(lr_cc, float(stats.chi2.sf(lr_cc, 2)), 2),
    )


def traffic_light(n_obs: int = 250, n_breaches: int = 0, coverage: float = 0.99) -> TrafficLightResult:
    """Basel traffic-light zone from the cumulative binomial probability (see module doc).

    >>> traffic_light(250, 5, 0.99).zone
    'yellow'
    """
    n, x = _check_counts(n_obs, n_breaches)
    c = _check_coverage(coverage)
    p = 1.0 - c
    cum = float(stats.binom.cdf(x, n, p))
    zone = "green" if (cum < GREEN_BELOW or x == 0) else ("yellow" if cum < RED_FROM else "red")
    ks = np.arange(n + 1)
    cdf = stats.binom.cdf(ks, n, p)
    green_max = max(0, int(np.count_nonzero(cdf < GREEN_BELOW)) - 1)
    yellow_max = max(green_max, int(np.count_nonzero(cdf < RED_FROM)) - 1)
    return TrafficLightResult(
        n_obs=n,
        n_breaches=x,
        coverage=c,
        zone=zone,
        cumulative_probability=cum,
        green_max=green_max,
        yellow_max=yellow_max,
    )


__all__ = [
    "ChristoffersenResult",
    "KupiecResult",
    "LikelihoodRatio",
    "TrafficLightResult",
    "christoffersen",
    "christoffersen_from_counts",
    "kupiec_pof",
    "lr_independence",
    "traffic_light",
    "transition_counts",
]
