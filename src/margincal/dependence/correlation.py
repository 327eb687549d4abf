"""Correlation estimators: EWMA, Ledoit-Wolf shrinkage, stressed windows, blends.

All take a DataFrame of LOG returns (rows = bars, columns = instruments) and
return a correlation matrix as a labelled DataFrame inside a frozen
:class:`CorrelationEstimate` carrying provenance (method, parameters, window).

* :func:`ewma_correlation` - RiskMetrics EWMA covariance, zero mean::

      C_0 = mean of x_t x_t' over the first ``seed`` rows
      C_{t+1} = lam C_t + (1 - lam) x_t x_t'

  The forecast for the bar after the data is one weighted matrix product
  ``lam^n C_0 + (1 - lam) X' diag(lam^(n-1-t)) X``; :func:`ewma_covariance_path`
  returns every ``C_t`` with a vectorised recursive filter
  (:func:`scipy.signal.lfilter` along time on the ``d(d+1)/2`` distinct entries);
  :func:`ewma_covariance_reference` is the plain loop, tested to agree. The
  diagonal is exactly :func:`margincal.vol.ewma.ewma_variance` of each column.
* :func:`ledoit_wolf_correlation` - :class:`sklearn.covariance.LedoitWolf` on the
  returns standardised by their sample volatility, so the shrinkage target
  ``mu I`` is the identity correlation (shrinking correlations towards 0).
* :func:`stressed_correlation` - Pearson correlation on the union of stress
  windows (default :data:`STRESS_WINDOWS`: the COVID crash, the Terra/LUNA
  collapse, the FTX collapse) or on the worst-N days of an index
  (:func:`worst_days`). Instruments that did not trade in every window give a
  pairwise (not jointly) estimated matrix, which can fail to be PSD; it is then
  repaired with :func:`margincal.dependence.nearest.nearest_correlation`.
* :func:`blend_correlation` - ``(1 - w) base + w stressed``, the stressed
  weight ``w`` a policy choice (e.g. 0.25), repaired if needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import signal

from margincal.dependence.nearest import is_correlation_matrix, nearest_correlation
from margincal.errors import CalibrationError, DataError

STRESS_WINDOWS: dict[str, tuple[str, str]] = {
    "covid_2020": ("2020-03-09", "2020-03-20"),
    "luna_2022": ("2022-05-05", "2022-05-20"),
    "ftx_2022": ("2022-11-05", "2022-11-20"),
}
"""Crash windows (inclusive UTC dates) used for the stressed correlation by default."""


@dataclass(frozen=True)
class CorrelationEstimate:
    """A correlation matrix with what produced it."""

    matrix: pd.DataFrame
    method: str
    params: dict[str, Any]
    n_obs: int
    window_start: str | None
    window_end: str | None
    shrinkage: float | None = None
    repaired: bool = False
    created_at: str = field(default_factory=lambda: pd.Timestamp.now(tz="UTC").isoformat())


def _frame(returns: ArrayLike, *, allow_nan: bool = False, min_rows: int = 2) -> pd.DataFrame:
    if not isinstance(returns, pd.DataFrame):
        raise DataError("returns must be a DataFrame with one column of log returns per instrument")
    if returns.shape[1] < 2:
        raise DataError(f"returns has {returns.shape[1]} column(s); a correlation needs at least 2")
    df = returns.astype(float)
    if not allow_nan and df.isna().to_numpy().any():
        col = df.columns[df.isna().any()].tolist()
        raise DataError(f"returns has NaN in columns {col}; align the instruments first (e.g. .dropna())")
    if np.isinf(df.to_numpy()).any():
        raise DataError("returns has infinite values")
    if len(df) < min_rows:
        raise DataError(f"returns has {len(df)} rows; need at least {min_rows}")
    return df


def _window(df: pd.DataFrame) -> tuple[str | None, str | None]:
    if isinstance(df.index, pd.DatetimeIndex) and len(df):
        return str(df.index[0]), str(df.index[-1])
    return None, None


def cov_to_corr(cov: np.ndarray) -> np.ndarray:
    """Correlation from a covariance matrix (or a stack of them, last two axes)."""
    d = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    c = cov / (d[..., :, None] * d[..., None, :])
    idx = np.arange(c.shape[-1])
    c[..., idx, idx] = 1.0
    return c


def _seed_cov(x: np.ndarray, seed: int) -> np.ndarray:
    k = max(1, min(seed, x.shape[0]))
    return x[:k].T @ x[:k] / k


def ewma_covariance(returns: ArrayLike, lam: float = 0.94, seed: int = 30) -> np.ndarray:
    """EWMA covariance forecast for the bar after the data (one weighted matrix product)."""
    x = _frame(returns).to_numpy()
    _check_lam(lam)
    n = x.shape[0]
    w = (1.0 - lam) * lam ** np.arange(n - 1, -1, -1)
    return lam**n * _seed_cov(x, seed) + (x * w[:, None]).T @ x


def ewma_covariance_path(returns: ArrayLike, lam: float = 0.94, seed: int = 30) -> np.ndarray:
    """All EWMA covariances, shape ``(n + 1, d, d)``; element ``t`` uses rows ``< t`` only."""
    x = _frame(returns).to_numpy()
    _check_lam(lam)
    n, d = x.shape
    iu = np.triu_indices(d)
    prods = x[:, iu[0]] * x[:, iu[1]]  # (n, d(d+1)/2) distinct entries of x_t x_t'
    c0 = _seed_cov(x, seed)[iu]
    y, _ = signal.lfilter([1.0 - lam], [1.0, -lam], prods, axis=0, zi=(lam * c0)[None, :])
    tri = np.vstack([c0[None, :], y])
    out = np.empty((n + 1, d, d))
    out[:, iu[0], iu[1]] = tri
    out[:, iu[1], iu[0]] = tri
    return out


def ewma_covariance_reference(returns: ArrayLike, lam: float = 0.94, seed: int = 30) -> np.ndarray:
    """Plain loop version of :func:`ewma_covariance_path` (obviously correct; for tests)."""
    x = _frame(returns).to_numpy()
    c = _seed_cov(x, seed)
    out = [c.copy()]
    for row in x:
        c = lam * c + (1.0 - lam) * np.outer(row, row)
        out.append(c.copy())
    return np.array(out)


def _check_lam(lam: float) -> None:
    if not 0.0 < lam < 1.0:
        raise DataError(f"lam is {lam}; it must be in (0, 1)")


def ewma_correlation(returns: ArrayLike, lam: float = 0.94, seed: int = 30) -> CorrelationEstimate:
    """EWMA correlation forecast for the bar after the data (see module doc)."""
    df = _frame(returns)
    c = cov_to_corr(ewma_covariance(df, lam, seed))
    m = pd.DataFrame(c, index=df.columns, columns=df.columns)
    return CorrelationEstimate(m, "ewma", {"lam": lam, "seed": seed}, len(df), *_window(df))


def ewma_correlation_path(returns: ArrayLike, lam: float = 0.94, seed: int = 30) -> np.ndarray:
    """EWMA correlations for every bar, shape ``(n + 1, d, d)`` (element ``t`` uses rows ``< t``)."""
    return cov_to_corr(ewma_covariance_path(returns, lam, seed))


def ledoit_wolf_correlation(returns: ArrayLike) -> CorrelationEstimate:
    """Ledoit-Wolf shrunk correlation (sklearn) of the volatility-standardised returns."""
    from sklearn.covariance import LedoitWolf

    df = _frame(returns, min_rows=3)
    x = df.to_numpy()
    sd = x.std(axis=0, ddof=1)
    if np.any(sd <= 0):
        raise DataError(f"columns {df.columns[sd <= 0].tolist()} have zero variance")
    lw = LedoitWolf().fit(x / sd)
    m = pd.DataFrame(cov_to_corr(lw.covariance_), index=df.columns, columns=df.columns)
    return CorrelationEstimate(m, "ledoit_wolf", {}, len(df), *_window(df), shrinkage=float(lw.shrinkage_))


def worst_days(index_returns: pd.Series, n: int = 20) -> pd.DatetimeIndex:
    """Dates of the ``n`` most negative returns of an index (e.g. BTC, or an equal-weight basket)."""
    if not isinstance(index_returns, pd.Series) or not isinstance(index_returns.index, pd.DatetimeIndex):
        raise DataError("index_returns must be a Series with a DatetimeIndex")
    s = index_returns.dropna()
    if n < 2 or n > len(s):
        raise DataError(f"n is {n}; it must be in 2..{len(s)}")
    return pd.DatetimeIndex(s.nsmallest(n).index).sort_values()


def _window_mask(index: pd.DatetimeIndex, start: str, end: str) -> np.ndarray:
    tz = index.tz
    lo = pd.Timestamp(start, tz=tz) if tz is not None else pd.Timestamp(start)
    hi = pd.Timestamp(end, tz=tz) if tz is not None else pd.Timestamp(end)
    hi = hi + pd.Timedelta(days=1)  # inclusive end date
    return np.asarray((index >= lo) & (index < hi))


def stressed_correlation(returns: ArrayLike, windows: Mapping[str, tuple[str, str]] | None = None, *,
                         dates: Iterable[Any] | None = None, min_periods: int = 10) -> CorrelationEstimate:
    """Correlation over stress windows (default :data:`STRESS_WINDOWS`) or explicit ``dates``.

    Rows of all windows are pooled; correlations are pairwise over the rows where
    both instruments have data (``min_periods`` at least), then repaired to the
    nearest correlation matrix if the pairwise matrix is not PSD.
    """
    df = _frame(returns, allow_nan=True)
    if not isinstance(df.index, pd.DatetimeIndex):
        raise DataError("returns needs a DatetimeIndex to select stress windows")
    if dates is not None:
        want = pd.DatetimeIndex(list(dates))
        if df.index.tz is not None and want.tz is None:
            want = want.tz_localize(df.index.tz)
        mask = np.asarray(df.index.isin(want))
        params: dict[str, Any] = {"dates": [str(d) for d in want]}
    else:
        windows = dict(STRESS_WINDOWS if windows is None else windows)
        mask = np.zeros(len(df), dtype=bool)
        for start, end in windows.values():
            mask |= _window_mask(df.index, start, end)
        params = {"windows": windows}
    sub = df.loc[mask]
    if len(sub) < min_periods:
        raise CalibrationError(f"stress windows select {len(sub)} rows; need at least {min_periods}")
    c = sub.corr(min_periods=min_periods)
    if c.isna().to_numpy().any():
        bad = c.columns[c.isna().any()].tolist()
        raise CalibrationError(f"instruments {bad} have fewer than {min_periods} rows in the stress windows")
    repaired = not is_correlation_matrix(c.to_numpy(), tol=1e-12)
    m = nearest_correlation(c) if repaired else c
    params["min_periods"] = min_periods
    return CorrelationEstimate(m, "stressed", params, len(sub), *_window(sub), repaired=repaired)


def blend_correlation(base: pd.DataFrame | CorrelationEstimate, stressed: pd.DataFrame | CorrelationEstimate,
                      stressed_weight: float = 0.25) -> CorrelationEstimate:
    """``(1 - w) base + w stressed`` on the common instruments, repaired to a correlation matrix if needed."""
    b = base.matrix if isinstance(base, CorrelationEstimate) else base
    s = stressed.matrix if isinstance(stressed, CorrelationEstimate) else stressed
    if not 0.0 <= stressed_weight <= 1.0:
        raise DataError(f"stressed_weight is {stressed_weight}; it must be in [0, 1]")
    missing = set(b.columns) ^ set(s.columns)
    if missing:
        raise DataError(f"base and stressed matrices cover different instruments: {sorted(map(str, missing))}")
    s = s.loc[b.index, b.columns]
    m = (1.0 - stressed_weight) * b + stressed_weight * s
    repaired = not is_correlation_matrix(m.to_numpy(), tol=1e-12)
    if repaired:
        m = nearest_correlation(m)
    return CorrelationEstimate(m, "blend", {"stressed_weight": stressed_weight}, 0, None, None, repaired=repaired)
