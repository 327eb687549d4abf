"""Shared machinery of the tail models: horizons, results, the estimator base class.

Every model follows the same shape::

    model = make_model("fhs", lam=0.94).fit(log_returns)
    res = model.forecast(horizon=24, level=0.99)     # horizon in hours (or a Timedelta)
    res.var, res.es, res.sigma                         # fractions of notional, positive = loss

Losses are on the *simple* return of one unit of notional: a long loses
``1 - exp(R)`` and a short ``exp(R) - 1`` for the horizon log return ``R``.
``side="both"`` (the default, what a margin rate needs because one rate serves
both sides) reports the side with the larger ES.

Horizon scaling (``scaling=``), ``h`` = horizon in bars of the fitted data:

* ``"sqrt"``: the one-bar distribution scaled by ``sqrt(h)``;
* ``"direct"``: the model is fitted on overlapping ``h``-bar sums of the
  (filtered) one-bar returns. Overlap makes neighbouring ``h``-bar scenarios
  dependent; the estimate uses all of them (more information than
  non-overlapping blocks) and the ``effective_n`` of the result is ``n / h`` so
  users do not over-trust it. ``h`` must be a whole number of bars.

Horizons shorter than one bar (e.g. 1h on daily data) cannot be built from the
data: they are always scaled down by ``sqrt(h)`` and a
:class:`SubBarHorizonWarning` says so. Use hourly bars for intraday horizons.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from margincal.errors import CalibrationError, DataError, MargincalWarning
from margincal.risk.measures import expected_shortfall, value_at_risk
from margincal.vol.ewma import ewma_variance, fit_lambda

Side = Literal["long", "short", "both"]
SCALINGS = ("sqrt", "direct")
SIDES = ("long", "short", "both")


class SubBarHorizonWarning(MargincalWarning):
    """The horizon is shorter than one bar of the data; the forecast was scaled down by sqrt(h)."""


class ModelFitWarning(MargincalWarning):
    """A model fit hit a guard (clamped parameter, non-monotone expansion, unstable tail)."""


_HORIZON_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(h|hr|hrs|hour|hours|d|day|days|w|week|weeks|min)\s*$", re.I)
_UNIT_HOURS = {"h": 1.0, "hr": 1.0, "hrs": 1.0, "hour": 1.0, "hours": 1.0, "d": 24.0, "day": 24.0, "days": 24.0,
               "w": 168.0, "week": 168.0, "weeks": 168.0, "min": 1 / 60}


def horizon_hours(horizon: object) -> float:
    """Normalise a horizon (hours as a number, a Timedelta, or a string like '1d', '4h') to hours."""
    if isinstance(horizon, bool):
        raise DataError(f"horizon {horizon!r} is not hours or a duration like '1d', '8h'")
    if isinstance(horizon, (int, float, np.floating, np.integer)):
        h = float(horizon)
    elif isinstance(horizon, str) and (m := _HORIZON_RE.match(horizon)):
        h = float(m.group(1)) * _UNIT_HOURS[m.group(2).lower()]
    else:
        try:
            h = pd.Timedelta(horizon).total_seconds() / 3600.0
        except (ValueError, TypeError):
            raise DataError(f"horizon {horizon!r} is not hours or a duration like '1d', '8h'") from None
    if not h > 0:
        raise DataError(f"horizon is {h} hours; it must be > 0")
    return h


def infer_bar_hours(index: object) -> float:
    """Median spacing of a DatetimeIndex in hours (any datetime resolution: ns, us, s)."""
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
        raise DataError("cannot infer bar spacing: pass bar_hours= or a Series with a DatetimeIndex")
    # (index[1:] - index[:-1]) is a TimedeltaIndex in the index's own unit; total_seconds is unit-aware
    d = np.asarray((index[1:] - index[:-1]).total_seconds(), dtype=float) / 3600.0
    h = float(np.median(d))
    if not h > 0:
        raise DataError("cannot infer bar spacing: the DatetimeIndex is not increasing")
    return h


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


def log_loss_to_simple(x: float | np.ndarray, side: str) -> float | np.ndarray:
    """Map a log-return loss ``x`` (``-R`` for a long, ``R`` for a short) to the simple-return loss.

    long: ``1 - exp(-x)``; short: ``exp(x) - 1``. Both are increasing, so quantiles map exactly.
    """
    if side == "long":
        return -np.expm1(-np.asarray(x, dtype=float)) if np.ndim(x) else float(-math.expm1(-float(x)))
    if side == "short":
        return np.expm1(np.asarray(x, dtype=float)) if np.ndim(x) else float(math.expm1(float(x)))
    raise DataError(f"side is {side!r}; use 'long' or 'short'")


def overlapping_sums(x: np.ndarray, h: int) -> np.ndarray:
    """Sums of ``h`` consecutive elements (all overlapping windows), via a cumulative sum."""
    if h <= 1:
        return np.asarray(x, dtype=float).copy()
    if h > x.size:
        raise CalibrationError(f"horizon of {h} bars exceeds the {x.size} observations available")
    c = np.concatenate([[0.0], np.cumsum(x)])
    return c[h:] - c[:-h]


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise CalibrationError(f"{name} is {value!r}; use one of {', '.join(map(repr, allowed))}")


def check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise DataError(f"level is {level}; it must be in (0, 1), e.g. 0.99")
    return level


def whole_bars(h: float) -> int:
    hi = int(round(h))
    if abs(h - hi) > 1e-9 or hi < 1:
        raise CalibrationError(f"direct scaling needs a whole number of bars; horizon is {h:.3f} bars")
    return hi


def scale_one_bar(one_bar: np.ndarray, h: float, scaling: str) -> tuple[np.ndarray, float]:
    """Horizon scenarios from one-bar scenarios: ``sqrt`` scaling or overlapping ``direct`` sums.

    Returns ``(scenarios, effective_n)``. Sub-bar horizons warn and use sqrt scaling.
    """
    check_choice("scaling", scaling, SCALINGS)
    if h < 1.0 - 1e-12:
        warnings.warn(
            f"horizon is {h:.4g} bars (shorter than one bar of the data); scaled down by sqrt(h). "
            "Use data with shorter bars for intraday horizons.",
            SubBarHorizonWarning,
            stacklevel=3,
        )
    if scaling == "sqrt" or h <= 1.0 + 1e-12:
        return one_bar * math.sqrt(h), float(one_bar.size)
    hi = whole_bars(h)
    return overlapping_sums(one_bar, hi), one_bar.size / hi


# kept for backwards compatibility with the first version of models.py
_scale = scale_one_bar


def empirical_side(hret: np.ndarray, level: float, side: Side) -> tuple[float, float, str]:
    """VaR/ES of horizon log-return scenarios on the simple-loss scale; ``both`` keeps the larger ES."""
    best_var, best_es, best_side = -np.inf, -np.inf, str(side)
    for s, losses in tail_losses(hret, side).items():
        v, e = value_at_risk(losses, level), expected_shortfall(losses, level)
        if e > best_es:
            best_var, best_es, best_side = v, e, s
    return best_var, best_es, best_side


class TailModel:
    """Base class: holds the input, its time window, and the shared forecast logic.

    Subclasses implement ``fit(returns, bar_hours=None)`` (calling :meth:`_prepare`)
    and ``forecast(horizon=24.0, level=0.99)``.
    """

    name = "base"

    def _prepare(self, returns: object, bar_hours: float | None) -> np.ndarray:
        if hasattr(self, "scaling"):
            check_choice("scaling", self.scaling, SCALINGS)
        if hasattr(self, "side"):
            check_choice("side", self.side, SIDES)
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
        if not float(bar_hours) > 0:
            raise DataError(f"bar_hours is {bar_hours}; it must be > 0")
        self.bar_hours_ = float(bar_hours)
        self.n_obs_ = int(r.size)
        self.window_ = (
            (str(idx[0]), str(idx[-1])) if isinstance(idx, pd.DatetimeIndex) and len(idx) else (None, None)
        )
        self.instrument_ = getattr(returns, "name", None) if isinstance(returns, pd.Series) else None
        if self.instrument_ is not None:
            self.instrument_ = str(self.instrument_)
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
        v, e, s = empirical_side(hret, level, side)
        return self._result(level, hh, v, e, sigma, s if side == "both" else side, eff_n)

    def _from_log_losses(self, per_side: dict[str, tuple[float, float]], level: float, hh: float,
                         sigma: float, eff_n: float) -> TailForecast:
        """Result from log-loss (VaR, ES) per side, mapped to simple-return losses (see module doc)."""
        best: tuple[float, float, str] | None = None
        for s, (v_log, e_log) in per_side.items():
            v, e = log_loss_to_simple(v_log, s), log_loss_to_simple(e_log, s)
            if best is None or e > best[1]:
                best = (float(v), float(e), s)
        assert best is not None
        return self._result(level, hh, best[0], best[1], sigma, best[2], eff_n)


def sides_of(side: str) -> tuple[str, ...]:
    return ("long", "short") if side == "both" else (side,)


def filter_returns(r: np.ndarray, sigma: str, lam: float, fit_lam: bool, seed: int,
                   window: int | None) -> dict[str, Any]:
    """Volatility filter shared by FHS and the parametric models.

    ``sigma="ewma"``: ``z_t = r_t / s_t`` with the EWMA volatility ``s_t`` built from
    returns strictly before ``t`` (the first ``seed`` returns only seed the
    recursion and give no residual); the scale of the forecast is the EWMA
    forecast for the next bar.
    ``sigma="sample"``: ``z_t = r_t / s`` with the zero-mean sample volatility
    ``s = sqrt(mean(r^2))`` (zero mean, as the EWMA); the scale is ``s``.
    ``window`` keeps the last ``window`` residuals.
    """
    check_choice("sigma", sigma, ("ewma", "sample"))
    if sigma == "ewma":
        if r.size <= seed + 10:
            raise CalibrationError(f"ewma filter: need more than {seed + 10} returns, got {r.size}")
        lam_ = fit_lambda(r, seed) if fit_lam else float(lam)
        v = ewma_variance(r, lam_, seed)
        sig = np.sqrt(np.maximum(v, 1e-300))
        z = r[seed:] / sig[:-1][seed:]
        path, nxt = sig[:-1], float(sig[-1])
    else:
        lam_ = float("nan")
        s = float(np.sqrt(np.mean(r * r)))
        if not s > 0:
            raise CalibrationError("sample volatility is 0; the returns are all zero")
        z = r / s
        path, nxt = np.full(r.size, s), s
    if window:
        z = z[-int(window):]
    return {"lam": lam_, "residuals": z, "sigma_path": path, "sigma_next": nxt}
