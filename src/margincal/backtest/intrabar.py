"""Adverse intrabar excursion: the loss a margin must cover while a position waits to be closed.

Close-to-close returns hide intraday moves: a long liquidated during a bar
loses down to the bar's low, not to its close. With ``C_t`` the close of bar
``t`` (the last price at which the margin was checked) and the next ``h``
bars' highs and lows, the loss per unit of notional over the close-out
horizon of ``h`` bars is::

    long_t  = 1 - min(L_{t+1}, ..., L_{t+h}) / C_t      (previous close to the lowest low)
    short_t = max(H_{t+1}, ..., H_{t+h}) / C_t - 1      (previous close to the highest high)
    both_t  = max(long_t, short_t)                       (what one margin rate for both sides faces)

(``long`` is floored at 0: a bar entirely above the close costs a long
nothing; same for ``short``.) The last ``h`` bars have no complete horizon and
are NaN. A horizon shorter than one bar cannot be resolved by the bars and
rounds UP to one bar (conservative: the whole bar's range is charged).

:func:`adverse_excursion` is vectorised (a sliding-window min/max);
:func:`adverse_excursion_reference` is the plain loop tests compare it to.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from margincal.errors import ConfigError, DataError


def _ohlc(bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    for col in ("high", "low", "close"):
        if col not in bars.columns:
            raise DataError(f"bars lack a {col!r} column; the excursion needs high, low and close")
    h, lo, c = (bars[col].to_numpy(float) for col in ("high", "low", "close"))
    bad = ~(np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & (lo > 0) & (c > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"bar {bars.index[i]}: high/low/close must be finite and > 0")
    if np.any(h < lo):
        i = int(np.flatnonzero(h < lo)[0])
        raise DataError(f"bar {bars.index[i]}: high {h[i]} < low {lo[i]}")
    return h, lo, c


def horizon_in_bars(horizon_hours: float, bar_hours: float) -> int:
    """Bars needed to cover ``horizon_hours`` (rounded up, at least 1)."""
    if not (horizon_hours > 0 and math.isfinite(horizon_hours)):
        raise ConfigError(f"horizon_hours is {horizon_hours}; it must be > 0")
    if not (bar_hours > 0 and math.isfinite(bar_hours)):
        raise ConfigError(f"bar_hours is {bar_hours}; it must be > 0")
    return max(1, math.ceil(horizon_hours / bar_hours - 1e-9))


def adverse_excursion(bars: pd.DataFrame, horizon_bars: int) -> pd.DataFrame:
    """Long, short and two-sided adverse excursion over the next ``horizon_bars`` bars (see module doc).

    Returns a frame on ``bars.index`` (labelled by the bar whose close starts
    the horizon) with columns ``long``, ``short``, ``both`` (fractions of
    notional; NaN for the last ``horizon_bars`` rows).
    """
    h = int(horizon_bars)
    if h != horizon_bars or h < 1:
        raise ConfigError(f"horizon_bars is {horizon_bars}; it must be a whole number >= 1")
    hi, lo, c = _ohlc(bars)
    n = c.size
    long_ = np.full(n, np.nan)
    short = np.full(n, np.nan)
    if n > h:
        lmin = sliding_window_view(lo[1:], h).min(axis=1)[: n - h]
        hmax = sliding_window_view(hi[1:], h).max(axis=1)[: n - h]
        long_[: n - h] = np.maximum(1.0 - lmin / c[: n - h], 0.0)
        short[: n - h] = np.maximum(hmax / c[: n - h] - 1.0, 0.0)
    return pd.DataFrame({"long": long_, "short": short, "both": np.fmax(long_, short)}, index=bars.index)


def adverse_excursion_reference(bars: pd.DataFrame, horizon_bars: int) -> pd.DataFrame:
    """Loop version of :func:`adverse_excursion` (for tests)."""
    hi, lo, c = _ohlc(bars)
    n, h = c.size, int(horizon_bars)
    rows = []
    for t in range(n):
        if t + h >= n:
            rows.append((np.nan, np.nan, np.nan))
            continue
        lmin = min(lo[t + 1: t + h + 1])
        hmax = max(hi[t + 1: t + h + 1])
        lg = max(1.0 - lmin / c[t], 0.0)
        sh = max(hmax / c[t] - 1.0, 0.0)
        rows.append((lg, sh, max(lg, sh)))
    return pd.DataFrame(rows, columns=["long", "short", "both"], index=bars.index)


def close_to_close_loss(bars: pd.DataFrame, horizon_bars: int) -> pd.DataFrame:
    """The close-to-close counterpart: ``long = 1 - C_{t+h}/C_t``, ``short = C_{t+h}/C_t - 1`` (floored at 0)."""
    h = int(horizon_bars)
    if h != horizon_bars or h < 1:
        raise ConfigError(f"horizon_bars is {horizon_bars}; it must be a whole number >= 1")
    _, _, c = _ohlc(bars)
    ratio = np.full(c.size, np.nan)
    ratio[: c.size - h] = c[h:] / c[: c.size - h]
    lg = np.maximum(1.0 - ratio, 0.0)
    sh = np.maximum(ratio - 1.0, 0.0)
    lg[np.isnan(ratio)] = np.nan
    sh[np.isnan(ratio)] = np.nan
    return pd.DataFrame({"long": lg, "short": sh, "both": np.fmax(lg, sh)}, index=bars.index)


def breach_rate(loss: pd.Series | np.ndarray, margin: pd.Series | np.ndarray | float) -> tuple[int, int, float]:
    """``(breaches, observations, rate)`` of ``loss > margin`` over the periods where both are defined."""
    x = np.asarray(loss, dtype=float)
    m = np.broadcast_to(np.asarray(margin, dtype=float), x.shape)
    ok = np.isfinite(x) & np.isfinite(m)
    n = int(ok.sum())
    b = int(np.count_nonzero(x[ok] > m[ok]))
    return b, n, (b / n if n else float("nan"))


__all__ = ["adverse_excursion", "adverse_excursion_reference", "breach_rate", "close_to_close_loss",
           "horizon_in_bars"]
