"""Procyclicality and cost metrics of a margin path (CPMI-IOSCO 2017, ESMA APC guidelines).

CPMI-IOSCO, *Resilience of central counterparties (CCPs): further guidance on
the PFMI* (July 2017), section 5, and ESMA's guidelines on EMIR anti-procyclicality
margin measures (ESMA70-151-3001, 2020) ask for measures of how much and how
fast margins move. For a margin-rate path ``m_t`` on consecutive evaluation
bars, with ``d`` bars per day:

``peak_to_trough``
    ``max(m) / min(m)`` over the evaluation period.
``max_1d_increase``, ``max_30d_increase``
    largest relative rise over 1 and 30 days: ``max_t m_t / m_{t-k} - 1`` with
    ``k = d`` and ``k = 30 d`` (0 when the margin never rises).
``corr_vol``, ``elasticity``
    Pearson correlation of ``m_t`` with the trailing realised volatility
    ``rv_t`` (root mean square of the one-bar log returns of the 30 days before
    ``t``: the information the margin had), and the OLS slope of ``log m_t``
    on ``log rv_t``: 1 means the margin is proportional to recent volatility
    (fully procyclical), 0 means it ignores it. A constant margin has 0 for both
    (its correlation is undefined; 0 is reported).
``avg_margin``
    mean margin rate: the cost of collateral.
``avg_excess``, ``avg_shortfall``
    mean of ``max(m_t - L_t, 0)`` (margin posted beyond the realised two-sided
    loss ``L_t``: margin-days in excess of what the move used) and of
    ``max(L_t - m_t, 0)`` (uncovered loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from margincal.errors import DataError


@dataclass(frozen=True)
class ProcyclicalityMetrics:
    """See the module doc for definitions; rates are fractions of notional."""

    avg_margin: float
    min_margin: float
    max_margin: float
    peak_to_trough: float
    max_1d_increase: float
    max_30d_increase: float
    corr_vol: float
    elasticity: float
    avg_excess: float
    avg_shortfall: float


def max_increase(margin: np.ndarray, lag: int) -> float:
    """Largest relative increase ``m_t / m_{t-lag} - 1`` (0 if none or too short)."""
    m = np.asarray(margin, dtype=float)
    if lag < 1 or m.size <= lag:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        r = m[lag:] / m[:-lag] - 1.0
    r = r[np.isfinite(r)]
    return float(max(0.0, r.max())) if r.size else 0.0


def trailing_rms(returns: np.ndarray, window: int) -> np.ndarray:
    """``rv[t]`` = root mean square of ``returns[t-window:t]`` (fewer at the start; NaN at t=0)."""
    r = np.asarray(returns, dtype=float)
    c = np.concatenate([[0.0], np.cumsum(r * r)])
    t = np.arange(r.size)
    lo = np.maximum(0, t - window)
    cnt = t - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt((c[t] - c[lo]) / cnt)


def _corr_slope(m: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    ok = np.isfinite(m) & np.isfinite(v) & (m > 0) & (v > 0)
    if ok.sum() < 3:
        return 0.0, 0.0
    x, y = v[ok], m[ok]
    if np.ptp(y) == 0 or np.ptp(x) == 0:
        return 0.0, 0.0
    corr = float(np.corrcoef(x, y)[0, 1])
    lx, ly = np.log(x), np.log(y)
    lxc = lx - lx.mean()
    slope = float(np.dot(lxc, ly - ly.mean()) / np.dot(lxc, lxc))
    return corr, slope


def procyclicality(margin: object, loss: object, realized_vol: object, *, bars_per_day: float = 1.0
                   ) -> ProcyclicalityMetrics:
    """Metrics of one margin path on consecutive evaluation bars (arrays of equal length)."""
    m = np.asarray(margin, dtype=float)
    lo = np.asarray(loss, dtype=float)
    rv = np.asarray(realized_vol, dtype=float)
    if not (m.shape == lo.shape == rv.shape) or m.ndim != 1:
        raise DataError(f"margin ({m.shape}), loss ({lo.shape}) and realized_vol ({rv.shape}) must be 1-d "
                        "and of equal length")
    if m.size == 0:
        raise DataError("margin is empty; nothing to measure")
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        i = int(np.flatnonzero(~np.isfinite(m) | (m < 0))[0])
        raise DataError(f"margin[{i}] is {m[i]}; rates must be finite and >= 0 on evaluation bars")
    d = max(1, int(round(bars_per_day)))
    corr, slope = _corr_slope(m, rv)
    mn = float(m.min())
    return ProcyclicalityMetrics(
        avg_margin=float(m.mean()),
        min_margin=mn,
        max_margin=float(m.max()),
        peak_to_trough=float(m.max() / mn) if mn > 0 else float("inf"),
        max_1d_increase=max_increase(m, d),
        max_30d_increase=max_increase(m, 30 * d),
        corr_vol=corr,
        elasticity=slope,
        avg_excess=float(np.mean(np.maximum(m - lo, 0.0))),
        avg_shortfall=float(np.mean(np.maximum(lo - m, 0.0))),
    )


__all__ = ["ProcyclicalityMetrics", "max_increase", "procyclicality", "trailing_rms"]
