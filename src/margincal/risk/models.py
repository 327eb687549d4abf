"""Tail-risk models with one estimator interface.

Every model follows the same shape::

    model = FilteredHistoricalSimulation(lam=0.94).fit(log_returns)
    res = model.forecast(horizon=24, level=0.99)     # horizon in hours (or a Timedelta)
    res.var, res.es, res.sigma                         # fractions of notional, positive = loss

Losses are on the *simple* return of one unit of notional: a long loses
``1 - exp(R)`` and a short ``exp(R) - 1`` for the horizon log return ``R``.
``side="both"`` (the default, what a margin rate needs because one rate serves
both sides) reports the larger of the long and the short figure.

Horizon scaling (``scaling=``):

* ``"sqrt"``: one-bar scenarios scaled by ``sqrt(h)`` (h = horizon in bars);
* ``"direct"``: overlapping h-bar sums of the (filtered) one-bar scenarios.
  Overlap makes neighbouring h-bar scenarios dependent; the estimate uses all
  of them (more information than non-overlapping blocks) and the
  ``effective_n`` of the result is ``n / h`` so users do not over-trust it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from margincal.errors import CalibrationError, DataError
from margincal.risk.measures import expected_shortfall, value_at_risk
from margincal.vol.ewma import ewma_variance, fit_lambda

Side = Literal["long", "short", "both"]


def horizon_hours(horizon: object) -> float:
    """Normalise a horizon (hours as a number, a Timedelta, or a string like '1d', '4h') to hours."""
    if isinstance(horizon, (int, float, np.floating, np.integer)):
        h = float(horizon)
    else:
        try:
            h = pd.Timedelta(horizon).total_seconds() / 3600.0
        except (ValueError, TypeError):
            raise DataError(f"horizon {horizon!r} is not hours or a duration like '1d', '8h'") from None
    if not h > 0:
        raise DataError(f"horizon is {h} hours; it must be > 0")
    return h


def infer_bar_hours(index: object) -> float:
    """Median spacing of a DatetimeIndex in hours."""
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
        raise DataError("cannot infer bar spacing: pass bar_hours= or a Series with a DatetimeIndex")
    d = np.diff(index.asi8) / 3.6e12  # ns -> hours
    return float(np.median(d))


@dataclass(frozen=True)
class TailForecast:
    """VaR/ES forecast of one model, with provenance. Figures are fractions of notional."""

    model: str
    params: dict[str, Any]
    level: float
    horizon_hours: float
    var: float
    es: float
    sigma: float
    side: str
    n_obs: int
    effective_n: float
    window_start: str | None
    window_end: str | None
    instrument: str | None = None
    created_at: str = field(default_factory=lambda: pd.Timestamp.now(tz="UTC").isoformat())

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def tail_losses(horizon_log_returns: np.ndarray, side: Side) -> dict[str, np.ndarray]:
    """Positive losses per side from horizon log returns."""
    out: dict[str, np.ndarray] = {}
    if side in ("long", "both"):
        out["long"] = -np.expm1(horizon_log_returns)
    if side in ("short", "both"):
        out["short"] = np.expm1(horizon_log_returns)
    return out


def overlapping_sums(x: np.ndarray, h: int) -> np.ndarray:
    """Sums of ``h`` consecutive elements (all overlapping windows), via a cumulative sum."""
    if h <= 1:
        return x.copy()
    if h > x.size:
        raise CalibrationError(f"horizon of {h} bars exceeds the {x.size} observations available")
    c = np.concatenate([[0.0], np.cumsum(x)])
    return c[h:] - c[:-h]


class TailModel:
    """Base class: holds the input, its time window, and the shared forecast logic."""

    name = "base"

    def _prepare(self, returns: object, bar_hours: float | None) -> np.ndarray:
        if isinstance(returns, pd.DataFrame):
            if returns.shape[1] != 1:
                raise DataError("a univariate tail model needs one column of returns")
            returns = returns.iloc[:, 0]
        r = np.asarray(returns, dtype=float).ravel()
        if r.size < 20:
            raise CalibrationError(f"{self.name}: need at least 20 returns, got {r.size}")
        if not np.all(np.isfinite(r)):
            i = int(np.flatnonzero(~np.isfinite(r))[0])
            raise DataError(f"returns[{i}] is {r[i]}; returns must be finite")
        idx = returns.index if isinstance(returns, pd.Series) else None
        if bar_hours is None:
            bar_hours = infer_bar_hours(idx) if isinstance(idx, pd.DatetimeIndex) else 24.0
        self.bar_hours_ = float(bar_hours)
        self.n_obs_ = int(r.size)
        self.window_ = (
            (str(idx[0]), str(idx[-1])) if isinstance(idx, pd.DatetimeIndex) and len(idx) else (None, None)
        )
        self.instrument_ = getattr(returns, "name", None) if isinstance(returns, pd.Series) else None
        self.returns_ = r
        return r

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.endswith("_") and not k.startswith("_")}

    def _check_fitted(self) -> None:
        if not hasattr(self, "returns_"):
            raise CalibrationError(f"{type(self).__name__} is not fitted; call fit(returns) first")

    def _bars(self, horizon: object) -> tuple[float, float]:
        hh = horizon_hours(horizon)
        return hh, hh / self.bar_hours_

    def _result(self, level: float, hh: float, var: float, es: float, sigma: float, side: str,
                eff_n: float) -> TailForecast:
        if not (np.isfinite(var) and np.isfinite(es)):
            raise CalibrationError(f"{self.name}: forecast is not finite (var={var}, es={es})")
        return TailForecast(
            model=self.name,
            params=self.get_params(),
            level=float(level),
            horizon_hours=hh,
            var=float(var),
            es=float(max(es, var)),
            sigma=float(sigma),
            side=side,
            n_obs=self.n_obs_,
            effective_n=float(eff_n),
            window_start=self.window_[0],
            window_end=self.window_[1],
            instrument=self.instrument_,
        )

    def _empirical(self, hret: np.ndarray, level: float, hh: float, sigma: float, side: Side,
                   eff_n: float) -> TailForecast:
        best_var, best_es, best_side = -np.inf, -np.inf, side
        for s, losses in tail_losses(hret, side).items():
            v, e = value_at_risk(losses, level), expected_shortfall(losses, level)
            if e > best_es:
                best_var, best_es, best_side = v, e, s
        return self._result(level, hh, best_var, best_es, sigma, best_side if side == "both" else side, eff_n)


class HistoricalSimulation(TailModel):
    """Plain historical simulation on the last ``window`` returns (all if None)."""

    name = "hs"

    def __init__(self, *, window: int | None = None, scaling: str = "sqrt", side: Side = "both") -> None:
        self.window = window
        self.scaling = scaling
        self.side = side

    def fit(self, returns: object, bar_hours: float | None = None) -> HistoricalSimulation:
        r = self._prepare(returns, bar_hours)
        self.sample_ = r[-self.window:] if self.window else r
        return self

    def forecast(self, horizon: object = 24.0, level: float = 0.99) -> TailForecast:
        self._check_fitted()
        hh, h = self._bars(horizon)
        x = self.sample_
        hret, eff = _scale(x, h, self.scaling)
        return self._empirical(hret, level, hh, float(np.std(x, ddof=1) * math.sqrt(h)), self.side, eff)


def _scale(one_bar: np.ndarray, h: float, scaling: str) -> tuple[np.ndarray, float]:
    if scaling == "sqrt" or h <= 1.0:
        return one_bar * math.sqrt(h), float(one_bar.size)
    if scaling == "direct":
        hi = int(round(h))
        if abs(h - hi) > 1e-9:
            raise CalibrationError(f"direct scaling needs a whole number of bars; horizon is {h:.3f} bars")
        return overlapping_sums(one_bar, hi), one_bar.size / hi
    raise CalibrationError(f"scaling is {scaling!r}; use 'sqrt' or 'direct'")


class FilteredHistoricalSimulation(TailModel):
    """Filtered historical simulation (Barone-Adesi/Hull-White) with EWMA volatility.

    Standardised residuals ``z_t = r_t / sigma_t`` (sigma from data strictly
    before t) are rescaled by the current volatility forecast ``sigma_{n+1}``;
    VaR/ES are taken on the resulting scenarios at the horizon.
    """

    name = "fhs"

    def __init__(self, *, lam: float = 0.94, fit_lambda: bool = False, window: int | None = None,
                 scaling: str = "sqrt", side: Side = "both", seed: int = 30) -> None:
        self.lam = lam
        self.fit_lambda = fit_lambda
        self.window = window
        self.scaling = scaling
        self.side = side
        self.seed = seed

    def fit(self, returns: object, bar_hours: float | None = None) -> FilteredHistoricalSimulation:
        r = self._prepare(returns, bar_hours)
        if r.size <= self.seed + 10:
            raise CalibrationError(f"fhs: need more than {self.seed + 10} returns, got {r.size}")
        self.lam_ = fit_lambda(r, self.seed) if self.fit_lambda else float(self.lam)
        v = ewma_variance(r, self.lam_, self.seed)
        sig = np.sqrt(np.maximum(v, 1e-300))
        z = r[self.seed:] / sig[:-1][self.seed:]
        if self.window:
            z = z[-self.window:]
        self.residuals_ = z
        self.sigma_path_ = sig[:-1]
        self.sigma_next_ = float(sig[-1])
        return self

    def forecast(self, horizon: object = 24.0, level: float = 0.99) -> TailForecast:
        self._check_fitted()
        hh, h = self._bars(horizon)
        one_bar = self.sigma_next_ * self.residuals_
        hret, eff = _scale(one_bar, h, self.scaling)
        return self._empirical(hret, level, hh, self.sigma_next_ * math.sqrt(h), self.side, eff)


MODELS: dict[str, type[TailModel]] = {
    "hs": HistoricalSimulation,
    "fhs": FilteredHistoricalSimulation,
}


def make_model(name: str, **params: Any) -> TailModel:
    """Build a tail model by its short name (see :data:`MODELS`)."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise CalibrationError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}") from None
    return cls(**params)
