"""HAR-RV: the heterogeneous autoregressive model of realized variance (Corsi, 2009).

On a series of daily realized variances ``RV_t`` (e.g. from
:func:`margincal.vol.realized.realized_variance_from_intraday`)::

    RV_{t+1} = b0 + b_d RV_t + b_w RV^(5)_t + b_m RV^(22)_t + u_{t+1}
    RV^(n)_t = (RV_t + RV_{t-1} + ... + RV_{t-n+1}) / n

fitted by ordinary least squares (:func:`numpy.linalg.lstsq`). The windows are
the ``lags`` parameter (default ``(1, 5, 22)``: day, week, month of trading
days; crypto trades 7 days a week, and the classic windows are kept so the
numbers compare with the literature).

Multi-step forecasts are iterated: the one-step forecast is appended to the
history and the averages are recomputed. ``forecast_variance(h)`` returns the
SUM of the ``h`` per-day forecasts, the variance of the ``h``-day return (the
horizon convention of :mod:`margincal.vol.horizon`: ``h`` counts bars of the
fitted data, here days). A levels HAR can predict a negative variance; every
forecast is floored at ``floor_``, the smallest positive RV of the training
data, and ``n_floored_`` counts how often the in-sample fit hit the floor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from margincal.errors import CalibrationError, ConfigError, DataError, check_fitted


def _rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    cs = np.concatenate([[0.0], np.cumsum(x)])
    out = np.full(x.size, np.nan)
    if x.size >= window:
        out[window - 1 :] = (cs[window:] - cs[:-window]) / window
    return out


def _as_rv(rv: ArrayLike) -> tuple[np.ndarray, pd.Index | None]:
    index = rv.index if isinstance(rv, pd.Series) else None
    x = np.asarray(rv, dtype=float).ravel()
    if x.size == 0:
        raise DataError("rv is empty")
    bad = ~np.isfinite(x) | (x < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        where = f" ({index[i]})" if index is not None else ""
        raise DataError(f"rv[{i}]{where} is {x[i]}; realized variances must be finite and >= 0")
    return x, index


def har_design(rv: ArrayLike, lags: Sequence[int] = (1, 5, 22)) -> pd.DataFrame:
    """HAR regressors at each day ``t``: the mean RV over the last ``n`` days (day ``t`` included) for each ``n`` in ``lags``.

    Rows before the longest window is full are NaN. Columns ``rv_<n>``.
    """
    x, index = _as_rv(rv)
    cols = {f"rv_{n}": _rolling_mean(x, int(n)) for n in lags}
    return pd.DataFrame(cols, index=index)


class HARVolatility:
    """HAR-RV estimator (sklearn style).

    Parameters
    ----------
    lags : averaging windows in days, increasing (default ``(1, 5, 22)``).

    Attributes after :meth:`fit`
    ----------------------------
    ``params_`` (Series ``const, rv_1, rv_5, rv_22``), ``resid_``, ``r2_``,
    ``fitted_`` (one-step forecasts aligned to the TARGET day: element ``t``
    uses RV strictly before ``t``), ``sigma_`` (its square root),
    ``floor_``, ``n_floored_``, ``n_obs_`` (regression rows).
    """

    def __init__(self, *, lags: Sequence[int] = (1, 5, 22)) -> None:
        self.lags = lags

    def _check(self) -> tuple[int, ...]:
        try:
            lags = tuple(int(n) for n in self.lags)
            whole = all(int(n) == n for n in self.lags)
        except (TypeError, ValueError):
            lags, whole = (), False
        if not whole or not lags or any(n < 1 for n in lags) or list(lags) != sorted(set(lags)):
            raise ConfigError(f"lags is {self.lags!r}; it must be strictly increasing positive integers, e.g. (1, 5, 22)")
        return lags

    def fit(self, rv: ArrayLike) -> HARVolatility:
        """Fit by OLS on a series of daily realized variances (consecutive days, oldest first)."""
        lags = self._check()
        x, index = _as_rv(rv)
        need = lags[-1] + 1 + (len(lags) + 1) * 5
        if x.size < need:
            raise DataError(f"rv has {x.size} days; HAR{lags} needs at least {need}")
        X = har_design(x, lags).to_numpy()
        rows = np.arange(lags[-1] - 1, x.size - 1)  # regressors at t, target at t + 1
        A = np.column_stack([np.ones(rows.size), X[rows]])
        y = x[rows + 1]
        beta, *_ = np.linalg.lstsq(A, y, rcond=None)
        if not np.all(np.isfinite(beta)):
            raise CalibrationError("HAR OLS produced non-finite coefficients")
        self.lags_ = lags
        self.params_ = pd.Series(beta, index=["const", *[f"rv_{n}" for n in lags]], name="params")
        pos = x[x > 0]
        if pos.size == 0:
            raise DataError("rv has no positive value; HAR cannot be fitted")
        self.floor_ = float(pos.min())
        fit = A @ beta
        self.resid_ = y - fit
        self.r2_ = float(1.0 - np.sum(self.resid_**2) / np.sum((y - y.mean()) ** 2))
        self.n_floored_ = int(np.sum(fit < self.floor_))
        fitted = np.full(x.size, np.nan)
        fitted[rows + 1] = np.maximum(fit, self.floor_)
        self.fitted_ = pd.Series(fitted, index=index, name="har_forecast") if index is not None else fitted
        self.sigma_ = np.sqrt(self.fitted_)
        self.history_ = x[-lags[-1] :].copy()
        self.n_obs_ = int(rows.size)
        return self

    def _require_fit(self) -> None:
        check_fitted(self, "params_", "fit(rv)")

    def predict_one_step(self, rv: ArrayLike) -> np.ndarray:
        """One-step forecasts with the fitted coefficients over a (possibly longer) RV history.

        Element ``t`` is the forecast for day ``t + 1`` made with RV up to day
        ``t``; NaN until the longest window is full. No re-estimation.
        """
        self._require_fit()
        x, _ = _as_rv(rv)
        X = har_design(x, self.lags_).to_numpy()
        b = self.params_.to_numpy()
        f = b[0] + X @ b[1:]
        return np.where(np.isfinite(f), np.maximum(f, self.floor_), np.nan)

    def forecast_variance_path(self, horizon_bars: int = 1) -> np.ndarray:
        """Iterated per-day forecasts for days ``T+1 .. T+h`` after the fitted data."""
        self._require_fit()
        h = int(horizon_bars)
        if h != horizon_bars or h < 1:
            raise ConfigError(f"horizon_bars is {horizon_bars}; it must be a whole number of days >= 1")
        b = self.params_.to_numpy()
        hist = list(self.history_)
        out = np.empty(h)
        for i in range(h):  # h is small (days); each step needs the previous forecast
            arr = np.asarray(hist)
            reg = np.array([arr[-n:].mean() for n in self.lags_])
            f = max(float(b[0] + reg @ b[1:]), self.floor_)
            out[i] = f
            hist.append(f)
        return out

    def forecast_variance(self, horizon_bars: int = 1) -> float:
        """Variance of the ``h``-day return: the sum of the iterated per-day forecasts."""
        return float(np.sum(self.forecast_variance_path(horizon_bars)))


__all__ = ["HARVolatility", "har_design"]
