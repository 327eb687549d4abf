"""EWMA (RiskMetrics) volatility, with lambda fixed or fitted by likelihood.

Recursion (returns r_t, variance s2_t is the forecast for bar t made with data
strictly before t)::

    s2_0 = mean(r_0..r_{k-1}^2)   (seed: mean square of the first ``seed`` returns)
    s2_{t+1} = lam * s2_t + (1 - lam) * r_t^2

Implemented with :func:`scipy.signal.lfilter` (a recursive filter, O(n), no
Python loop); :func:`ewma_variance_reference` is the plain loop kept beside it
and tested to agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import optimize, signal

from margincal.errors import CalibrationError, ConfigError, DataError, check_fitted, check_int, check_number

if TYPE_CHECKING:
    from margincal.units import Decay

RISKMETRICS_LAMBDA = 0.94


def _as_array(returns: ArrayLike, name: str = "returns") -> np.ndarray:
    r = np.asarray(returns, dtype=float).ravel()
    if r.size == 0:
        raise DataError(f"{name} is empty")
    if not np.all(np.isfinite(r)):
        bad = int(np.flatnonzero(~np.isfinite(r))[0])
        raise DataError(f"{name}[{bad}] is {r[bad]}; returns must be finite (drop or fill NaN first)")
    return r


def ewma_variance(returns: ArrayLike, lam: float = RISKMETRICS_LAMBDA, seed: int = 30, *,
                  check_input: bool = True) -> np.ndarray:
    """One-step-ahead EWMA variances; element ``t`` uses returns ``< t`` only.

    Returns an array of length ``n + 1``: the last element is the forecast for
    the bar after the data. ``check_input=False`` skips the checks of ``returns``
    (non-empty, finite) and ``lam`` (in [0, 1]) for a caller that has made them.
    """
    if check_input:
        r = _as_array(returns)
        lam = check_number("lam", lam, low=0.0, high=1.0)  # a bad decay is a bad parameter: ConfigError
    else:
        r = np.asarray(returns, dtype=float).ravel()
    # x_0 = 0, x_{t+1} = r_t^2: y_t = lam*y_{t-1} + (1-lam)*x_t started at y_0 = s0 (the seed, x_0 adds
    # nothing) is s2_t for t = 0 .. n, with no second array to prepend the seed to.
    x = np.empty(r.size + 1)
    x[0] = 0.0
    np.square(r, out=x[1:])
    k = max(1, min(seed, r.size))
    s0 = float(x[1 : k + 1].sum()) / k  # mean(r[:k]^2)
    if s0 <= 0:
        s0 = float(np.var(r)) or 1e-12
    y, _ = signal.lfilter([1.0 - lam], [1.0, -lam], x, zi=[s0])
    return y


def ewma_variance_reference(returns: ArrayLike, lam: float = RISKMETRICS_LAMBDA, seed: int = 30) -> np.ndarray:
    """Obviously-correct loop version of :func:`ewma_variance` (for tests)."""
    r = _as_array(returns)
    k = max(1, min(seed, r.size))
    s2 = float(np.mean(r[:k] ** 2)) or float(np.var(r)) or 1e-12
    out = [s2]
    for x in r:
        s2 = lam * s2 + (1.0 - lam) * x * x
        out.append(s2)
    return np.array(out)


def fit_lambda(returns: ArrayLike, seed: int = 30, bounds: tuple[float, float] = (0.80, 0.999)) -> float:
    """Lambda maximising the Gaussian likelihood of the returns under the EWMA variance."""
    r = _as_array(returns)
    if r.size < 2 * seed:
        raise CalibrationError(f"need at least {2 * seed} returns to fit lambda, got {r.size}")

    def nll(lam: float) -> float:
        s2 = ewma_variance(r, lam, seed)[:-1][seed:]
        x = r[seed:]
        s2 = np.maximum(s2, 1e-300)
        return float(0.5 * np.sum(np.log(s2) + x * x / s2))

    res = optimize.minimize_scalar(nll, bounds=bounds, method="bounded", options={"xatol": 1e-5})
    if not res.success:  # pragma: no cover - bounded Brent does not fail on smooth input
        raise CalibrationError(f"lambda fit did not converge: {res.message}")
    return float(res.x)


class EWMAVolatility:
    """EWMA volatility estimator (sklearn style).

    Parameters
    ----------
    lam : decay per bar of the data (a float), or a :class:`margincal.units.Decay` with its unit
        (``Decay(per_day=0.94)``), converted to the bar spacing of a Series' DatetimeIndex (24 h
        without one); ignored when ``fit_lambda`` is true. The functions of this module
        (:func:`ewma_variance`) take the decay per bar.
    fit_lambda : fit lambda by maximum likelihood on the data.
    seed : number of first returns whose mean square seeds the recursion.

    Attributes after ``fit``: ``lam_``, ``variance_`` (one-step forecasts,
    aligned to the returns: element ``t`` uses data strictly before ``t``),
    ``sigma_`` (its square root, a Series if the input was one),
    ``next_variance_`` (forecast for the bar after the data).
    """

    def __init__(self, *, lam: float | Decay = RISKMETRICS_LAMBDA, fit_lambda: bool = False, seed: int = 30) -> None:
        self.lam = lam
        self.fit_lambda = fit_lambda
        self.seed = seed

    def fit(self, returns: ArrayLike) -> EWMAVolatility:
        from margincal.units import Decay

        if not isinstance(self.lam, Decay):
            check_number("lam", self.lam, low=0.0, high=1.0)
        if not isinstance(self.fit_lambda, bool):
            raise ConfigError(f"fit_lambda is {self.fit_lambda!r}; it must be True or False")
        check_int("seed", self.seed, 0)
        r = _as_array(returns)
        self.lam_ = fit_lambda(r, self.seed) if self.fit_lambda else self._per_bar(returns)
        v = ewma_variance(r, self.lam_, self.seed)
        self.variance_ = v[:-1]
        self.next_variance_ = float(v[-1])
        sig = np.sqrt(self.variance_)
        self.sigma_ = pd.Series(sig, index=returns.index, name="sigma") if isinstance(returns, pd.Series) else sig
        self.n_obs_ = r.size
        return self

    def _per_bar(self, returns: ArrayLike) -> float:
        from margincal.units import Decay

        if not isinstance(self.lam, Decay):
            return float(self.lam)
        idx = getattr(returns, "index", None)
        bh = 24.0
        if isinstance(idx, pd.DatetimeIndex) and len(idx) > 1:
            bh = float(np.median(np.asarray((idx[1:] - idx[:-1]).total_seconds(), dtype=float))) / 3600.0
        return self.lam.for_bars(bh)

    def forecast_variance(self, horizon_bars: float = 1.0) -> float:
        """Variance of the sum of the next ``horizon_bars`` returns (flat EWMA term structure)."""
        check_fitted(self, "next_variance_", "fit(returns)")
        return float(self.next_variance_ * horizon_bars)
