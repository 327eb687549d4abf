"""GARCH-family conditional volatility through the ``arch`` package.

:class:`GarchVolatility` wraps :func:`arch.arch_model` as an sklearn-style
estimator. Models (one lag each)::

    garch   s2_t = omega + alpha e_{t-1}^2 + beta s2_{t-1}
    gjr     s2_t = omega + (alpha + gamma 1[e_{t-1} < 0]) e_{t-1}^2 + beta s2_{t-1}
    egarch  ln s2_t = omega + alpha (|z_{t-1}| - sqrt(2/pi)) + gamma z_{t-1} + beta ln s2_{t-1}

with ``e_t = r_t - mu`` (``mean="constant"``) or ``e_t = r_t`` (``mean="zero"``),
``z_t = e_t / s_t`` and innovations normal, Student-t or Hansen skew-t.

Rescaling, honestly
-------------------
arch's optimiser is tuned for returns in percent. With ``rescale=True`` arch
multiplies the returns by a power of ten ``scale_`` (10, 100, 1000...) chosen so
their variance lies in [0.1, 10000), and estimates on ``scale_ * r``. This class
then reports everything back in the units of the data you passed:

* ``sigma_``, ``forecast_variance`` and ``filter_variance`` are divided by
  ``scale_`` (``scale_**2`` for variances);
* ``params_`` are the parameters of the model for the ORIGINAL returns:
  ``mu / scale``; ``omega / scale^2`` for GARCH and GJR (their recursion is
  homogeneous of degree 2); ``omega - (1 - beta) ln(scale^2)`` for EGARCH (its
  recursion is in ``ln s2``); alpha, gamma, beta and the distribution's shape
  parameters do not depend on the scale;
* ``params_scaled_`` are arch's raw estimates on ``scale_ * r``.

Horizon: ``forecast_variance(horizon_bars)`` counts bars of the fitted data
(see :mod:`margincal.vol.horizon`) and returns the SUM of the per-step variance
forecasts (arch's analytic forecasts; EGARCH beyond one step by arch's
simulation method with ``n_simulations`` paths drawn from a generator seeded
with ``seed``, so the result is reproducible).
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
import pandas as pd
from arch import arch_model
from arch.univariate import HARX, Normal, SkewStudent, StudentsT
from numpy.typing import ArrayLike

from margincal.errors import (
    CalibrationError,
    ConfigError,
    DataError,
    MargincalWarning,
    check_choice,
    check_fitted,
    check_int,
)

KINDS = ("garch", "gjr", "egarch")
DISTS = ("normal", "t", "skewt")
MEANS = ("constant", "zero")
MIN_OBS = 100

_DIST_CLASS: dict[str, type[Normal] | type[StudentsT] | type[SkewStudent]] = {
    "normal": Normal, "t": StudentsT, "skewt": SkewStudent}


class GarchConvergenceWarning(MargincalWarning):
    """arch's optimiser reported that the likelihood maximisation did not converge."""


def _as_returns(returns: ArrayLike) -> tuple[np.ndarray, pd.Index | None]:
    index = returns.index if isinstance(returns, pd.Series) else None
    r = np.asarray(returns, dtype=float).ravel()
    if r.size == 0:
        raise DataError("returns is empty")
    if not np.all(np.isfinite(r)):
        bad = int(np.flatnonzero(~np.isfinite(r))[0])
        where = f" ({index[bad]})" if index is not None else ""
        raise DataError(f"returns[{bad}]{where} is {r[bad]}; returns must be finite (drop or fill NaN first)")
    return r, index


class GarchVolatility:
    """GARCH(1,1), GJR-GARCH(1,1,1) or EGARCH(1,1,1) fitted by arch (sklearn style).

    Parameters
    ----------
    kind : ``"garch"``, ``"gjr"`` or ``"egarch"``.
    dist : innovation distribution, ``"normal"``, ``"t"`` (standardised Student-t)
        or ``"skewt"`` (Hansen's skewed t).
    rescale : let arch rescale the returns by a power of ten before estimating
        (recommended for raw log returns; see the module docstring).
    mean : ``"constant"`` (arch's default) or ``"zero"``.
    n_simulations, seed : paths and generator seed of EGARCH multi-step forecasts.

    Attributes after :meth:`fit`
    ----------------------------
    ``scale_`` (factor arch applied), ``params_`` (original units, a Series),
    ``params_scaled_`` (arch's estimates), ``sigma_`` (conditional sigma per bar,
    element ``t`` uses returns strictly before ``t``; a Series on the input's
    index when one was given), ``standardized_residuals_``, ``loglikelihood_``
    (of the scaled data, as arch reports it), ``converged_``, ``n_obs_``,
    ``result_`` (arch's ``ARCHModelResult``).
    """

    def __init__(
        self,
        *,
        kind: Literal["garch", "gjr", "egarch"] = "garch",
        dist: Literal["normal", "t", "skewt"] = "normal",
        rescale: bool = True,
        mean: Literal["constant", "zero"] = "constant",
        n_simulations: int = 2000,
        seed: int = 12345,
    ) -> None:
        self.kind = kind
        self.dist = dist
        self.rescale = rescale
        self.mean = mean
        self.n_simulations = n_simulations
        self.seed = seed

    # ------------------------------------------------------------------ helpers
    def _check_params(self) -> None:
        check_choice("kind", self.kind, KINDS)
        check_choice("dist", self.dist, DISTS)
        check_choice("mean", self.mean, MEANS)
        check_int("n_simulations", self.n_simulations, 100)
        check_int("seed", self.seed, 0)
        if not isinstance(self.rescale, bool):
            raise ConfigError(f"rescale is {self.rescale!r}; it must be True or False")

    def _model(self, y: np.ndarray | pd.Series, rescale: bool | None) -> HARX:
        vol: Literal["EGARCH", "GARCH"] = "EGARCH" if self.kind == "egarch" else "GARCH"
        o = 0 if self.kind == "garch" else 1
        dists: dict[str, Literal["normal", "t", "skewt"]] = {"normal": "normal", "t": "t", "skewt": "skewt"}
        dist = dists[self.dist]
        return arch_model(
            y, mean="Constant" if self.mean == "constant" else "Zero", vol=vol, p=1, o=o, q=1, dist=dist, rescale=rescale
        )

    def _require_fit(self) -> None:
        check_fitted(self, "result_", "fit(returns)")

    def _to_original_units(self, p: pd.Series, scale: float) -> pd.Series:
        q = p.copy()
        if "mu" in q.index:
            q["mu"] = q["mu"] / scale
        if self.kind == "egarch":
            q["omega"] = q["omega"] - (1.0 - q["beta[1]"]) * math.log(scale**2)
        else:
            q["omega"] = q["omega"] / scale**2
        return q

    # ------------------------------------------------------------------ API
    def fit(self, returns: ArrayLike) -> GarchVolatility:
        """Fit by maximum likelihood (arch); ``returns`` are log returns, one per bar."""
        self._check_params()
        r, index = _as_returns(returns)
        if r.size < MIN_OBS:
            raise DataError(f"returns has {r.size} observations; GARCH needs at least {MIN_OBS}")
        if float(np.var(r)) <= 0.0:
            raise DataError("returns are constant; their variance is 0 and no GARCH model can be fitted")
        y = pd.Series(r, index=index) if index is not None else r
        am = self._model(y, rescale=bool(self.rescale))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # arch's ConvergenceWarning is re-raised below as ours
            try:
                res = am.fit(disp="off", show_warning=False)
            except (ValueError, np.linalg.LinAlgError) as exc:
                raise CalibrationError(f"arch could not fit {self.kind}-{self.dist} on {r.size} returns: {exc}") from exc
        scale = float(res.scale)
        self.result_ = res
        self.scale_ = scale
        self.converged_ = int(res.convergence_flag) == 0
        if not self.converged_:
            warnings.warn(
                f"{self.kind}-{self.dist}: arch's optimiser did not converge (flag {res.convergence_flag}); "
                "estimates may be unreliable",
                GarchConvergenceWarning,
                stacklevel=2,
            )
        self.params_scaled_ = res.params.copy()
        # the backcast arch used to start the recursion (weighted first squared residuals at the starting values)
        self.backcast_ = res.model.volatility.backcast(res.model.resids(res.model.starting_values()))
        self.params_ = self._to_original_units(res.params, scale)
        self.params_.name = "params"
        sig = np.asarray(res.conditional_volatility, dtype=float) / scale
        if not np.all(np.isfinite(sig)) or np.any(sig <= 0):
            raise CalibrationError(f"{self.kind}-{self.dist} fit produced non-positive or non-finite sigma")
        z = np.asarray(res.std_resid, dtype=float)
        self.sigma_ = pd.Series(sig, index=index, name="sigma") if index is not None else sig
        self.standardized_residuals_ = pd.Series(z, index=index, name="std_resid") if index is not None else z
        self.loglikelihood_ = float(res.loglikelihood)
        self.n_obs_ = int(r.size)
        return self

    def forecast_variance_path(self, horizon_bars: int = 1) -> np.ndarray:
        """Per-step variance forecasts for bars ``T+1 .. T+h`` after the fitted data (original units)."""
        self._require_fit()
        h = int(horizon_bars)
        if h != horizon_bars or h < 1:
            raise ConfigError(f"horizon_bars is {horizon_bars}; it must be a whole number of bars >= 1 (see horizon_to_bars)")
        res = self.result_
        if self.kind == "egarch" and h > 1:
            dist_params = res.params[res.model.distribution.parameter_names()].to_numpy() if self.dist != "normal" else []
            rng = _DIST_CLASS[self.dist](seed=int(self.seed)).simulate(dist_params)
            fc = res.forecast(horizon=h, method="simulation", simulations=int(self.n_simulations), rng=rng, reindex=False)
        else:
            fc = res.forecast(horizon=h, reindex=False)
        v = np.asarray(fc.variance.to_numpy()[-1], dtype=float) / self.scale_**2
        return v

    def forecast_variance(self, horizon_bars: int = 1) -> float:
        """Variance of the sum of the next ``horizon_bars`` returns: the sum of the per-step forecasts."""
        return float(np.sum(self.forecast_variance_path(horizon_bars)))

    def filter_variance(self, returns: ArrayLike) -> np.ndarray:
        """Conditional variances of ``returns`` under the FITTED parameters (no re-estimation).

        Returns ``n + 1`` values: element ``t`` uses returns strictly before
        ``t`` and the last one is the forecast for the bar after the data. Used
        for walk-forward forecasting between refits. The recursion is arch's
        own (``volatility.compute_variance``), started from the backcast arch
        used in :meth:`fit` (``backcast_``, a weighted mean of the first 75
        squared residuals of the FITTED sample), so passing the fitted returns
        reproduces ``sigma_**2`` and passing a longer series never changes the
        earlier values. (Re-running arch's ``fix`` on the longer series would
        not do that: it recomputes the backcast around the longer sample's mean,
        a small look-ahead.) No variance bounds are applied.
        """
        self._require_fit()
        r, _ = _as_returns(returns)
        model = self.result_.model
        vol = model.volatility
        mu = float(self.params_scaled_["mu"]) if "mu" in self.params_scaled_.index else 0.0
        e = np.append(r * self.scale_ - mu, 0.0)  # the appended value only pads the array: sigma2[n] uses e[:n]
        vp = self.params_scaled_[vol.parameter_names()].to_numpy(dtype=float)
        s2 = np.zeros(e.size)
        bounds = np.column_stack([np.zeros(e.size), np.full(e.size, np.inf)])
        vol.compute_variance(vp, e, s2, self.backcast_, bounds)
        return s2 / self.scale_**2

    def __repr__(self) -> str:
        return f"GarchVolatility(kind={self.kind!r}, dist={self.dist!r}, rescale={self.rescale!r}, mean={self.mean!r})"


__all__ = ["DISTS", "KINDS", "GarchConvergenceWarning", "GarchVolatility"]
