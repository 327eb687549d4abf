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
from collections.abc import Callable
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


@dataclass(frozen=True)
class RollingZones:
    """Basel zone of every rolling ``window``-observation window of a breach series.

    ``counts[j]`` is the number of breaches in window ``j`` (observations
    ``j .. j+window-1``); ``zones[j]`` is 0 green, 1 yellow, 2 red.
    """

    window: int
    coverage: float
    counts: np.ndarray
    zones: np.ndarray
    green_max: int
    yellow_max: int

    @property
    def n_windows(self) -> int:
        return int(self.zones.size)

    @property
    def n_yellow(self) -> int:
        return int(np.count_nonzero(self.zones == 1))

    @property
    def n_red(self) -> int:
        return int(np.count_nonzero(self.zones == 2))

    @property
    def worst(self) -> str:
        return ("green", "yellow", "red")[int(self.zones.max())] if self.zones.size else "green"


def rolling_traffic_light(breaches: object, window: int = 250, coverage: float = 0.99) -> RollingZones:
    """Zone of every rolling window, vectorised with a cumulative sum (see module doc for the zones).

    The breach count of window ``j`` is ``cs[j + window] - cs[j]`` with
    ``cs`` the cumulative breach count; the zone thresholds come once from
    :func:`traffic_light` for ``n = window``. :func:`rolling_traffic_light_reference`
    is the plain loop over windows.
    """
    b = _as_bool(breaches)
    w = int(window)
    if w != window or w < 1:
        raise DataError(f"window is {window}; it must be a whole number >= 1")
    c = _check_coverage(coverage)
    ref = traffic_light(w, 0, c)
    if b.size < w:
        empty = np.zeros(0, dtype=np.int64)
        return RollingZones(w, c, empty, empty.astype(np.int8), ref.green_max, ref.yellow_max)
    cs = np.concatenate([[0], np.cumsum(b, dtype=np.int64)])
    counts = cs[w:] - cs[:-w]
    zones = np.where(counts <= ref.green_max, 0, np.where(counts <= ref.yellow_max, 1, 2)).astype(np.int8)
    zones[counts == 0] = 0
    return RollingZones(w, c, counts, zones, ref.green_max, ref.yellow_max)


def rolling_traffic_light_reference(breaches: object, window: int = 250, coverage: float = 0.99) -> list[str]:
    """Loop version: :func:`traffic_light` on each window separately (for tests)."""
    b = _as_bool(breaches)
    return [traffic_light(window, int(b[j:j + window].sum()), coverage).zone for j in range(b.size - window + 1)]


# ------------------------------------------------------------------ Expected Shortfall backtest


@dataclass(frozen=True)
class Z2Result:
    """Acerbi-Szekely Z2 statistic, its simulated p-value and the number of simulations."""

    statistic: float
    pvalue: float
    n_obs: int
    n_breaches: int
    n_sims: int


def acerbi_szekely_z2(losses: object, var: object, es: object, coverage: float = 0.975) -> float:
    """Acerbi-Szekely (2014) ``Z2`` in loss terms.

    Acerbi, C. and Szekely, B., *Backtesting Expected Shortfall*, Risk
    (December 2014), test 2: with P&L ``X_t``, ``Z2 = sum_t X_t I_t / (T alpha
    ES_t) + 1``, ``I_t = 1{X_t + VaR_t < 0}``, ``alpha = 1 - coverage``. With
    losses ``L_t = -X_t`` (positive = loss) this is::

        Z2 = 1 - sum_t L_t 1{L_t > VaR_t} / (T alpha ES_t)

    ``E[Z2] = 0`` when VaR and ES are the true ones; negative values mean
    the ES is too small (more or larger tail losses than predicted). The
    paper reports 5% critical values near -0.70 across distributions.
    """
    x, v, e = (np.asarray(x, dtype=float).ravel() for x in (losses, var, es))
    if not (x.size == v.size == e.size) or x.size == 0:
        raise DataError(f"losses ({x.size}), var ({v.size}) and es ({e.size}) must have the same non-zero length")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(v)) and np.all(np.isfinite(e))):
        raise DataError("losses, var and es must be finite (drop the periods without a forecast)")
    if np.any(e <= 0):
        i = int(np.flatnonzero(e <= 0)[0])
        raise DataError(f"es[{i}] is {e[i]}; Expected Shortfall forecasts must be > 0")
    alpha = 1.0 - _check_coverage(coverage)
    hit = x > v
    return float(1.0 - np.sum(np.where(hit, x, 0.0) / e) / (x.size * alpha))


def z2_test(losses: object, var: object, es: object, coverage: float = 0.975, *,
            simulate: Callable[[np.random.Generator], np.ndarray], n_sims: int = 2000,
            seed: int = 0) -> Z2Result:
    """Z2 with a p-value from simulation under the null (Acerbi-Szekely's procedure).

    ``simulate(rng)`` must return one path of ``T`` losses drawn from the
    forecast distributions (the ones whose VaR/ES were given), e.g.
    ``lambda rng: sigma * rng.standard_t(5, T) * scale``. The p-value is the
    share of simulated ``Z2`` at or below the observed one (one-sided: only
    an ES that is too small is rejected).
    """
    z = acerbi_szekely_z2(losses, var, es, coverage)
    x = np.asarray(losses, dtype=float).ravel()
    if n_sims < 100:
        raise DataError(f"n_sims is {n_sims}; use at least 100 simulations for a p-value")
    rng = np.random.default_rng(seed)
    sims = np.empty(n_sims)
    for k in range(n_sims):
        path = np.asarray(simulate(rng), dtype=float).ravel()
        if path.size != x.size:
            raise DataError(f"simulate returned {path.size} losses; the sample has {x.size}")
        sims[k] = acerbi_szekely_z2(path, var, es, coverage)
    p = float((np.count_nonzero(sims <= z) + 1) / (n_sims + 1))
    return Z2Result(statistic=z, pvalue=p, n_obs=int(x.size),
                    n_breaches=int(np.count_nonzero(x > np.asarray(var, dtype=float).ravel())), n_sims=int(n_sims))


# ------------------------------------------------------------------ cost of coverage


@dataclass(frozen=True)
class CoverageCost:
    """Average dynamic margin against the lowest static rate with no more breaches (hindsight)."""

    n_obs: int
    dynamic_breaches: int
    mean_margin: float
    static_rate: float
    static_breaches: int

    @property
    def ratio(self) -> float:
        """``mean_margin / static_rate`` (< 1: the dynamic margin is cheaper at equal coverage)."""
        return self.mean_margin / self.static_rate if self.static_rate > 0 else math.inf


def cost_of_coverage(losses: object, margin: object) -> CoverageCost:
    """Lowest static rate ``s`` with ``#{L_t > s} <= #{L_t > m_t}``, against the mean of ``m_t``.

    With the ``b`` dynamic breaches and the losses sorted in decreasing order
    ``L_(1) >= L_(2) >= ...``, the answer is ``s = L_(b+1)`` (the static rate
    is breached only by the ``b`` larger losses; ties can only lower the
    count), or 0 when ``b >= n``. Hindsight: this static rate uses the whole
    sample, so a dynamic margin that costs more than it has no advantage
    over a fixed rate at equal coverage.
    """
    x = np.asarray(losses, dtype=float).ravel()
    m = np.asarray(margin, dtype=float).ravel()
    if x.size != m.size or x.size == 0:
        raise DataError(f"losses ({x.size}) and margin ({m.size}) must have the same non-zero length")
    ok = np.isfinite(x) & np.isfinite(m)
    if not ok.all():
        raise DataError("losses and margin must be finite (drop the periods without a margin)")
    b = int(np.count_nonzero(x > m))
    srt = np.sort(x)[::-1]
    s = float(max(srt[b], 0.0)) if b < x.size else 0.0
    return CoverageCost(n_obs=int(x.size), dynamic_breaches=b, mean_margin=float(m.mean()), static_rate=s,
                        static_breaches=int(np.count_nonzero(x > s)))


def cost_of_coverage_reference(losses: object, margin: object) -> float:
    """Brute force: the smallest candidate rate (0 or a loss value) with no more breaches (for tests)."""
    x = np.asarray(losses, dtype=float).ravel()
    m = np.asarray(margin, dtype=float).ravel()
    b = int(np.count_nonzero(x > m))
    for s in sorted(set([0.0] + [float(x) for x in x if x > 0])):
        if np.count_nonzero(x > s) <= b:
            return s
    return float(x.max())


__all__ = [
    "ChristoffersenResult",
    "CoverageCost",
    "RollingZones",
    "Z2Result",
    "acerbi_szekely_z2",
    "cost_of_coverage",
    "cost_of_coverage_reference",
    "rolling_traffic_light",
    "rolling_traffic_light_reference",
    "z2_test",
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
