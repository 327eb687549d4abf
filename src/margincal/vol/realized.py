"""Realized variance estimators on OHLC bars.

Input: a :class:`pandas.DataFrame` of bars with columns ``open, high, low,
close`` (case-insensitive), one row per bar, sorted by time. Output: variances
of LOG returns per bar, in the bar's own units (not annualised), as a
``pandas.Series`` on the bars' index.

Per-bar estimators (``o, h, l, c`` are the logs of open, high, low, close of a
bar, ``c_prev`` the log close of the previous bar)::

    close-to-close   (c - c_prev)^2
    Parkinson        (h - l)^2 / (4 ln 2)                        Parkinson (1980)
    Garman-Klass     0.5 (h - l)^2 - (2 ln 2 - 1) (c - o)^2       Garman & Klass (1980)
    Rogers-Satchell  (h - c)(h - o) + (l - c)(l - o)              Rogers & Satchell (1991)

Window estimators over ``n`` bars (rolling, computed with cumulative sums, not
``rolling.apply``): the mean of a per-bar estimator, the close-to-close sample
variance, and Yang-Zhang (2000)::

    YZ = V_overnight + k V_open_to_close + (1 - k) mean(RS),  k = 0.34 / (1.34 + (n + 1) / (n - 1))

where ``V_overnight`` and ``V_open_to_close`` are the sample variances (divisor
``n - 1``) of ``o - c_prev`` and ``c - o``. Crypto trades around the clock, so
the overnight term is close to zero on exchange bars; it is kept so the
estimator is the published one.

:func:`realized_variance_from_intraday` sums squared intraday log returns per
UTC day (or any pandas frequency): the daily realized variance RV of
Andersen & Bollerslev (1998).

Every fast (cumulative-sum) function has a loop reference beside it
(``*_reference``) that the tests compare against.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd

from margincal.errors import ConfigError, DataError

LN2 = math.log(2.0)
PARKINSON_FACTOR = 1.0 / (4.0 * LN2)
GK_CLOSE_FACTOR = 2.0 * LN2 - 1.0

Estimator = Literal["close_to_close", "parkinson", "garman_klass", "rogers_satchell", "yang_zhang"]
ESTIMATORS: tuple[str, ...] = ("close_to_close", "parkinson", "garman_klass", "rogers_satchell", "yang_zhang")


# --------------------------------------------------------------------------- validation
def _column(bars: pd.DataFrame, name: str, what: str) -> np.ndarray:
    lower = {str(c).lower(): c for c in bars.columns}
    if name not in lower:
        raise DataError(f"{what} has no '{name}' column (columns: {list(bars.columns)}); OHLC bars need open, high, low, close")
    x = pd.to_numeric(bars[lower[name]], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(x) | (x <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{what} row {i} ({bars.index[i]}): {name} is {bars[lower[name]].iloc[i]!r}; prices must be finite and > 0")
    return x


def _log_ohlc(bars: pd.DataFrame, what: str = "bars") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(bars, pd.DataFrame):
        raise DataError(f"{what} is a {type(bars).__name__}; a DataFrame with open, high, low, close columns is needed")
    if len(bars) == 0:
        raise DataError(f"{what} is empty")
    o, h, lo, c = (_column(bars, n, what) for n in ("open", "high", "low", "close"))
    # A high below the open/close (or a low above) is a corrupt bar: reject it, naming the row.
    rel = 1e-12
    bad = (h < lo * (1 - rel)) | (h < np.maximum(o, c) * (1 - rel)) | (lo > np.minimum(o, c) * (1 + rel))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{what} row {i} ({bars.index[i]}): open={o[i]}, high={h[i]}, low={lo[i]}, close={c[i]}; "
            "need low <= min(open, close) and high >= max(open, close)"
        )
    return np.log(o), np.log(h), np.log(lo), np.log(c)


def _series(values: np.ndarray, bars: pd.DataFrame, name: str) -> pd.Series:
    return pd.Series(values, index=bars.index, name=name)


def _check_window(window: int, n: int) -> int:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 2:
        raise ConfigError(f"window is {window!r}; it must be an integer >= 2")
    return int(window)


# --------------------------------------------------------------------------- per-bar estimators
def close_to_close_variance(bars: pd.DataFrame) -> pd.Series:
    """Squared close-to-close log return per bar; the first bar is NaN (no previous close)."""
    _, _, _, c = _log_ohlc(bars)
    out = np.full(c.size, np.nan)
    out[1:] = np.diff(c) ** 2
    return _series(out, bars, "close_to_close")


def parkinson_variance(bars: pd.DataFrame) -> pd.Series:
    """Parkinson (1980) range estimator per bar: ``ln(H/L)^2 / (4 ln 2)``."""
    _, h, lo, _ = _log_ohlc(bars)
    return _series(PARKINSON_FACTOR * (h - lo) ** 2, bars, "parkinson")


def garman_klass_variance(bars: pd.DataFrame) -> pd.Series:
    """Garman-Klass (1980) per bar: ``0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2``."""
    o, h, lo, c = _log_ohlc(bars)
    return _series(0.5 * (h - lo) ** 2 - GK_CLOSE_FACTOR * (c - o) ** 2, bars, "garman_klass")


def rogers_satchell_variance(bars: pd.DataFrame) -> pd.Series:
    """Rogers-Satchell (1991) per bar: ``ln(H/C) ln(H/O) + ln(L/C) ln(L/O)`` (drift-independent)."""
    o, h, lo, c = _log_ohlc(bars)
    return _series((h - c) * (h - o) + (lo - c) * (lo - o), bars, "rogers_satchell")


def yang_zhang_k(n: int) -> float:
    """Yang-Zhang weight ``k = 0.34 / (1.34 + (n + 1) / (n - 1))`` for a window of ``n`` bars."""
    if n < 2:
        raise ConfigError(f"window is {n}; Yang-Zhang needs at least 2 bars")
    return 0.34 / (1.34 + (n + 1.0) / (n - 1.0))


def yang_zhang_bar_variance(bars: pd.DataFrame, *, k: float | None = None) -> pd.Series:
    """Zero-drift per-bar Yang-Zhang building block ``o_t^2 + k c_t^2 + (1 - k) RS_t``.

    ``o_t = ln(O_t / C_{t-1})`` (overnight), ``c_t = ln(C_t / O_t)``; ``k``
    defaults to the large-window limit ``0.34 / 2.34``. Yang-Zhang proper is a
    window estimator (it demeans); its rolling mean with means set to zero is
    this series' rolling mean. The first bar is NaN (no previous close).
    """
    o, h, lo, c = _log_ohlc(bars)
    kk = 0.34 / 2.34 if k is None else float(k)
    if not 0.0 <= kk <= 1.0:
        raise ConfigError(f"k is {k}; it must be in [0, 1]")
    on = np.full(c.size, np.nan)
    on[1:] = o[1:] - c[:-1]
    rs = (h - c) * (h - o) + (lo - c) * (lo - o)
    return _series(on**2 + kk * (c - o) ** 2 + (1.0 - kk) * rs, bars, "yang_zhang_bar")


_PER_BAR = {
    "close_to_close": close_to_close_variance,
    "parkinson": parkinson_variance,
    "garman_klass": garman_klass_variance,
    "rogers_satchell": rogers_satchell_variance,
}


def per_bar_variance(bars: pd.DataFrame, estimator: str) -> pd.Series:
    """Per-bar variance by estimator name (``close_to_close``, ``parkinson``, ``garman_klass``, ``rogers_satchell``)."""
    if estimator not in _PER_BAR:
        raise ConfigError(f"estimator is {estimator!r}; per-bar estimators are {sorted(_PER_BAR)}")
    return _PER_BAR[estimator](bars)


# --------------------------------------------------------------------------- rolling (cumulative sums)
def _rolling_sum(x: np.ndarray, window: int) -> np.ndarray:
    """Sum of the last ``window`` values at each position; NaN unless all ``window`` values are finite."""
    ok = np.isfinite(x)
    filled = np.where(ok, x, 0.0)
    cs = np.concatenate([[0.0], np.cumsum(filled)])
    cnt = np.concatenate([[0], np.cumsum(ok)])
    out = np.full(x.size, np.nan)
    if x.size >= window:
        s = cs[window:] - cs[:-window]
        n = cnt[window:] - cnt[:-window]
        out[window - 1 :] = np.where(n == window, s, np.nan)
    return out


def _rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    return _rolling_sum(x, window) / window


def _rolling_sample_var(x: np.ndarray, window: int) -> np.ndarray:
    """Sample variance (divisor ``window - 1``) over the last ``window`` values, via sums of x and x^2."""
    fin = np.isfinite(x)
    centre = float(np.mean(x[fin])) if fin.any() else 0.0  # variance is shift-invariant; centring limits cancellation
    y = x - centre
    s1 = _rolling_sum(y, window)
    s2 = _rolling_sum(y * y, window)
    v = (s2 - s1 * s1 / window) / (window - 1)
    return np.where(np.isfinite(v), np.maximum(v, 0.0), np.nan)


def rolling_variance(
    bars: pd.DataFrame,
    window: int,
    estimator: Estimator = "parkinson",
    *,
    demean: bool = True,
) -> pd.Series:
    """Rolling-window variance per bar over the last ``window`` bars (the current one included).

    ``parkinson``, ``garman_klass``, ``rogers_satchell``: the window mean of the
    per-bar estimator. ``close_to_close``: the sample variance of the log
    returns (divisor ``window - 1``) when ``demean``, else their mean square.
    ``yang_zhang``: see :func:`yang_zhang_variance`. Values before the first
    full window are NaN. Computed with cumulative sums (O(n)).
    """
    window = _check_window(window, len(bars))
    if estimator == "yang_zhang":
        return yang_zhang_variance(bars, window)
    if estimator == "close_to_close":
        _, _, _, c = _log_ohlc(bars)
        r = np.full(c.size, np.nan)
        r[1:] = np.diff(c)
        v = _rolling_sample_var(r, window) if demean else _rolling_mean(r * r, window)
        return _series(v, bars, f"close_to_close_{window}")
    x = per_bar_variance(bars, estimator).to_numpy()
    return _series(_rolling_mean(x, window), bars, f"{estimator}_{window}")


def yang_zhang_variance(bars: pd.DataFrame, window: int) -> pd.Series:
    """Yang-Zhang (2000) rolling variance per bar over ``window`` bars (NaN before the first full window).

    ``V_o + k V_c + (1 - k) mean(RS)`` with ``k = 0.34 / (1.34 + (n+1)/(n-1))``;
    the first bar has no overnight return, so the first value is at bar ``window``.
    """
    window = _check_window(window, len(bars))
    o, h, lo, c = _log_ohlc(bars)
    on = np.full(c.size, np.nan)
    on[1:] = o[1:] - c[:-1]
    oc = c - o
    oc = np.where(np.isfinite(on), oc, np.nan)  # same window support as the overnight term
    rs = np.where(np.isfinite(on), (h - c) * (h - o) + (lo - c) * (lo - o), np.nan)
    k = yang_zhang_k(window)
    v = _rolling_sample_var(on, window) + k * _rolling_sample_var(oc, window) + (1.0 - k) * _rolling_mean(rs, window)
    return _series(v, bars, f"yang_zhang_{window}")


# --------------------------------------------------------------------------- references (loops)
def rolling_variance_reference(bars: pd.DataFrame, window: int, estimator: str = "parkinson", *, demean: bool = True) -> pd.Series:
    """Plain-loop version of :func:`rolling_variance` (for tests): one window at a time."""
    o, h, lo, c = _log_ohlc(bars)
    n = c.size
    out = np.full(n, np.nan)
    for t in range(n):
        start = t - window + 1
        if estimator == "yang_zhang":
            if start < 1:
                continue
            idx = range(start, t + 1)
            ov = [o[i] - c[i - 1] for i in idx]
            cv = [c[i] - o[i] for i in idx]
            rs = [(h[i] - c[i]) * (h[i] - o[i]) + (lo[i] - c[i]) * (lo[i] - o[i]) for i in idx]
            mo, mc = sum(ov) / window, sum(cv) / window
            vo = sum((x - mo) ** 2 for x in ov) / (window - 1)
            vc = sum((x - mc) ** 2 for x in cv) / (window - 1)
            k = 0.34 / (1.34 + (window + 1) / (window - 1))
            out[t] = vo + k * vc + (1 - k) * sum(rs) / window
        elif estimator == "close_to_close":
            if start < 1:
                continue
            r = [c[i] - c[i - 1] for i in range(start, t + 1)]
            if demean:
                m = sum(r) / window
                out[t] = sum((x - m) ** 2 for x in r) / (window - 1)
            else:
                out[t] = sum(x * x for x in r) / window
        else:
            if start < 0:
                continue
            vals = []
            for i in range(start, t + 1):
                if estimator == "parkinson":
                    vals.append((h[i] - lo[i]) ** 2 / (4 * math.log(2)))
                elif estimator == "garman_klass":
                    vals.append(0.5 * (h[i] - lo[i]) ** 2 - (2 * math.log(2) - 1) * (c[i] - o[i]) ** 2)
                elif estimator == "rogers_satchell":
                    vals.append((h[i] - c[i]) * (h[i] - o[i]) + (lo[i] - c[i]) * (lo[i] - o[i]))
                else:
                    raise ConfigError(f"estimator is {estimator!r}; must be one of {ESTIMATORS}")
            out[t] = sum(vals) / window
    return _series(out, bars, f"{estimator}_{window}")


# --------------------------------------------------------------------------- intraday -> daily
def _time_index(bars: pd.DataFrame | pd.Series, what: str) -> pd.DatetimeIndex:
    idx = bars.index
    if not isinstance(idx, pd.DatetimeIndex) and isinstance(bars, pd.DataFrame) and "timestamp" in bars.columns:
        idx = pd.DatetimeIndex(pd.to_datetime(bars["timestamp"], utc=True))
    if not isinstance(idx, pd.DatetimeIndex):
        raise DataError(f"{what} needs a DatetimeIndex (bar open times) or a 'timestamp' column")
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    if len(idx) > 1 and not (np.diff(idx.as_unit("ns").asi8) > 0).all():
        i = int(np.flatnonzero(np.diff(idx.as_unit("ns").asi8) <= 0)[0]) + 1
        raise DataError(f"{what} row {i} ({idx[i]}): timestamps must be strictly increasing (sorted, no duplicates)")
    return idx


def _closes(bars: pd.DataFrame | pd.Series, what: str) -> np.ndarray:
    if isinstance(bars, pd.Series):
        c = pd.to_numeric(bars, errors="coerce").to_numpy(dtype=float)
    else:
        c = _column(bars, "close", what)
    bad = ~np.isfinite(c) | (c <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{what} row {i}: close is {c[i]}; prices must be finite and > 0")
    return c


def realized_variance_from_intraday(
    hourly_bars: pd.DataFrame | pd.Series,
    freq: str = "1D",
    *,
    return_counts: bool = False,
) -> pd.Series | pd.DataFrame:
    """Realized variance per period: the sum of squared intraday log close-to-close returns.

    ``hourly_bars``: bars indexed by their OPEN time (tz-aware, or naive meaning
    UTC; a ``timestamp`` column is accepted too) with a ``close`` column, or a
    Series of closes. The return of bar ``t`` is ``ln(C_t / C_{t-1})`` and covers
    ``[open_t, open_t + bar)``, so it is assigned to the period containing
    ``open_t``: the day's RV runs from 00:00 to 24:00 UTC. A return spanning a
    data gap is kept (it still carries the gap's variance) and assigned to the
    period of the bar after the gap. The first bar has no return.

    Returns a Series indexed by period start (UTC) named ``rv``; with
    ``return_counts`` a DataFrame with ``rv`` and ``n_returns``.
    """
    what = "hourly_bars"
    idx = _time_index(hourly_bars, what)
    c = _closes(hourly_bars, what)
    if c.size < 2:
        raise DataError(f"{what} has {c.size} bar(s); at least 2 are needed for one return")
    r2 = np.diff(np.log(c)) ** 2
    try:
        period = idx[1:].floor(freq)
    except ValueError as exc:
        raise ConfigError(f"freq is {freq!r}; it must be a fixed pandas frequency such as '1D' ({exc})") from None
    s = pd.Series(r2, index=period)
    g = s.groupby(level=0)
    rv = g.sum()
    rv.index.name = "period"
    rv.name = "rv"
    if return_counts:
        return pd.DataFrame({"rv": rv, "n_returns": g.size().astype(int)})
    return rv


def intraday_to_ohlc(hourly_bars: pd.DataFrame, freq: str = "1D") -> pd.DataFrame:
    """Aggregate intraday OHLC(V) bars to ``freq`` bars (UTC periods): first open, max high, min low, last close, summed volume."""
    what = "hourly_bars"
    idx = _time_index(hourly_bars, what)
    _log_ohlc(hourly_bars.set_axis(idx), what)  # validates prices
    lower = {str(c).lower(): c for c in hourly_bars.columns}
    df = pd.DataFrame(
        {k: pd.to_numeric(hourly_bars[lower[k]], errors="coerce").to_numpy() for k in ("open", "high", "low", "close")},
        index=idx,
    )
    agg = {"open": "first", "high": "max", "low": "min", "close": "last"}
    if "volume" in lower:
        df["volume"] = pd.to_numeric(hourly_bars[lower["volume"]], errors="coerce").to_numpy()
        agg["volume"] = "sum"
    out = df.groupby(idx.floor(freq)).agg(agg)
    out.index.name = "period"
    return out


__all__ = [
    "ESTIMATORS",
    "close_to_close_variance",
    "garman_klass_variance",
    "intraday_to_ohlc",
    "parkinson_variance",
    "per_bar_variance",
    "realized_variance_from_intraday",
    "rogers_satchell_variance",
    "rolling_variance",
    "rolling_variance_reference",
    "yang_zhang_bar_variance",
    "yang_zhang_k",
    "yang_zhang_variance",
]
