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

The family (composed like ``arch``: a volatility filter x a tail method)
--------------------------------------------------------------------------
Volatility filter (``sigma=`` / ``filter=``): ``"ewma"`` (RiskMetrics, decay a
:class:`~margincal.units.Decay` with its unit), ``"garch"`` (GARCH(1,1) by
``arch``), ``"sample"`` / ``"none"`` (the zero-mean sample volatility: no
filter). Tail method: historical, normal, Student-t, Cornish-Fisher, EVT,
Monte Carlo. :func:`margincal.risk.models.tail_model` builds any pair.

Every model has ``fit(returns)`` (a frozen forecast via ``forecast``) and a
causal ``fit_path(returns, horizon=, level=, refit=)``: a frame of ``n + 1``
rows, row ``t`` the forecast made from ``returns[:t]`` only (row ``n`` is what
``fit`` on all the data gives). ``refit=k`` re-estimates the tail (residual
distribution, t degrees of freedom, GPD, skewness/kurtosis) every ``k`` bars
and holds it in between while the volatility filter moves every bar (a GARCH
filter, whose parameters come from a likelihood fit, is held with the tail).
A row whose fit fails (too little history) is NaN, and the following rows try
again until a fit succeeds. Each model's fast path is checked against
:meth:`TailModel._path_reference`, the refit loop that defines it.

Errors: parameter mistakes raise :class:`~margincal.errors.ConfigError`, data
mistakes :class:`~margincal.errors.DataError`, fits that cannot be done
:class:`~margincal.errors.CalibrationError`, use before ``fit``
:class:`~margincal.errors.NotFittedError` (helpers :func:`check_choice`,
:func:`check_level`, :func:`check_fitted`).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, Self, TypeAlias

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from margincal.errors import (
    CalibrationError,
    ConfigError,
    DataError,
    MargincalWarning,
    check_choice,
    check_int,
    check_level,
    check_number,
)
from margincal.errors import check_fitted as _check_fitted
from margincal.risk.measures import expected_shortfall, value_at_risk
from margincal.risk.path import PATH_COLUMNS
from margincal.units import Decay, as_decay
from margincal.vol.ewma import ewma_variance, fit_lambda

Side = Literal["long", "short", "both"]
SCALINGS = ("sqrt", "direct")
SIDES = ("long", "short", "both")
FILTERS = ("ewma", "garch", "sample", "none")


class SubBarHorizonWarning(MargincalWarning):
    """The horizon is shorter than one bar of the data; the forecast was scaled down by sqrt(h)."""


class ModelFitWarning(MargincalWarning):
    """A model fit hit a guard (clamped parameter, non-monotone expansion, unstable tail)."""


_HORIZON_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(h|hr|hrs|hour|hours|d|day|days|w|week|weeks|min)\s*$", re.I)
_UNIT_HOURS = {"h": 1.0, "hr": 1.0, "hrs": 1.0, "hour": 1.0, "hours": 1.0, "d": 24.0, "day": 24.0, "days": 24.0,
               "w": 168.0, "week": 168.0, "weeks": 168.0, "min": 1 / 60}


#: a horizon: hours as a number, a duration string ('1d', '8h') or a Timedelta (:func:`horizon_hours`)
Horizon: TypeAlias = "float | str | pd.Timedelta"


def horizon_hours(horizon: Horizon) -> float:
    """Normalise a horizon (hours as a number, a Timedelta, or a string like '1d', '4h') to hours."""
    if isinstance(horizon, bool):
        raise ConfigError(f"horizon {horizon!r} is not hours or a duration like '1d', '8h'")
    if isinstance(horizon, (int, float, np.floating, np.integer)):
        h = float(horizon)
    elif isinstance(horizon, str) and (m := _HORIZON_RE.match(horizon)):
        h = float(m.group(1)) * _UNIT_HOURS[m.group(2).lower()]
    else:
        try:
            h = pd.Timedelta(horizon).total_seconds() / 3600.0
        except (ValueError, TypeError):
            raise ConfigError(f"horizon {horizon!r} is not hours or a duration like '1d', '8h'") from None
    if not (h > 0 and math.isfinite(h)):
        raise ConfigError(f"horizon is {h} hours; it must be > 0")
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
        if not np.ndim(x):
            return float(-math.expm1(-float(x)))
        y = np.negative(x, dtype=float)  # the one new array: expm1 and the sign flip write into it
        return np.negative(np.expm1(y, out=y), out=y)
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


def check_fitted(estimator: object, attribute: str = "n_obs_") -> None:
    """:class:`NotFittedError` (the same class for every model) when ``fit`` has not run
    (:func:`margincal.errors.check_fitted` with the tail models' wording)."""
    _check_fitted(estimator, attribute, "fit(returns)")


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
    """Base class: holds the input, its time window, the shared forecast logic and ``fit_path``.

    Subclasses implement ``fit(returns, bar_hours=None)`` (calling :meth:`_prepare`),
    ``forecast(horizon=24.0, level=0.99)``, :meth:`_validate` (parameter checks) and,
    where a one-pass history exists, :meth:`_path_fast`.
    """

    name = "base"
    #: fitted attribute whose absence means "not fitted"
    _fitted_attr = "n_obs_"

    # Declared for the type checker only (no class attribute is created, so ``hasattr`` still tells
    # whether a model has them): parameters of the models with a volatility filter ...
    lam: float | Decay
    seed: int
    # ... and what ``fit`` sets (:meth:`_prepare`, :func:`store_filter`).
    n_obs_: int
    bar_hours_: float
    lam_: float
    residuals_: np.ndarray
    sigma_path_: np.ndarray
    sigma_next_: float
    filter_: str
    garch_filter_params_: dict[str, Any]
    _direct_cache: dict[Any, Any]  # per-model cache of the direct multi-bar fits, cleared on rescale

    def fit(self, returns: ArrayLike, bar_hours: float | None = None) -> Self:
        """Fit to ``returns`` (subclasses; they call :meth:`_prepare`)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement fit")

    def forecast(self, horizon: Horizon = 24.0, level: float = 0.99) -> TailForecast:
        """VaR/ES over ``horizon`` at ``level`` from the fitted state (subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forecast")

    # ------------------------------------------------------------ parameters
    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.endswith("_") and not k.startswith("_")}

    def set_params(self, **params: Any) -> TailModel:
        known = self.get_params()
        for k, v in params.items():
            if k not in known:
                raise ConfigError(f"{type(self).__name__} has no parameter {k!r}; parameters: {', '.join(known)}")
            setattr(self, k, v)
        return self

    def clone(self, **overrides: Any) -> TailModel:
        """A new, unfitted model with the same parameters (``overrides`` replace some)."""
        return type(self)(**{**self.get_params(), **overrides})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def _validate(self) -> None:
        """Check every parameter (shared helpers; :class:`ConfigError`). Subclasses extend."""
        p = self.get_params()
        if "scaling" in p:
            check_choice("scaling", p["scaling"], SCALINGS)
        if "side" in p:
            check_choice("side", p["side"], SIDES)
        if "window" in p:
            check_int("window", p["window"], 2, allow_none=True)
        if "seed" in p:
            check_int("seed", p["seed"], 1)
        if "lam" in p:
            as_decay(p["lam"], "lam")
        if "fit_lambda" in p and not isinstance(p["fit_lambda"], bool):
            raise ConfigError(f"fit_lambda is {p['fit_lambda']!r}; it must be True or False")

    # ------------------------------------------------------------------ data
    @staticmethod
    def _as_series_array(returns: ArrayLike) -> tuple[np.ndarray, pd.Index | None, str | None]:
        if isinstance(returns, pd.DataFrame):
            if returns.shape[1] != 1:
                raise DataError("a univariate tail model needs one column of returns")
            returns = returns.iloc[:, 0]
        r = np.asarray(returns, dtype=float).ravel()
        if r.size and not np.isfinite(r).all():
            i = int(np.flatnonzero(~np.isfinite(r))[0])
            raise DataError(f"returns[{i}] is {r[i]}; returns must be finite")
        idx = returns.index if isinstance(returns, pd.Series) else None
        name = str(returns.name) if isinstance(returns, pd.Series) and returns.name is not None else None
        return r, idx, name

    @staticmethod
    def _bar_hours_of(idx: pd.Index | None, bar_hours: float | None) -> float:
        if bar_hours is None:
            bar_hours = infer_bar_hours(idx) if isinstance(idx, pd.DatetimeIndex) else 24.0
        return check_number("bar_hours", bar_hours, low=0.0)

    def _prepare(self, returns: ArrayLike, bar_hours: float | None) -> np.ndarray:
        self._validate()
        r, idx, name = self._as_series_array(returns)
        if r.size < 20:
            raise CalibrationError(f"{self.name}: need at least 20 returns, got {r.size}")
        self.bar_hours_ = self._bar_hours_of(idx, bar_hours)
        self.n_obs_ = int(r.size)
        self.window_ = (
            (str(idx[0]), str(idx[-1])) if isinstance(idx, pd.DatetimeIndex) and len(idx) else (None, None)
        )
        self.instrument_ = name
        self.returns_ = r
        return r

    def _check_fitted(self) -> None:
        check_fitted(self, self._fitted_attr)

    def _bars(self, horizon: Horizon) -> tuple[float, float]:
        hh = horizon_hours(horizon)
        return hh, hh / self.bar_hours_

    def _decay_per_bar(self, bar_hours: float) -> float:
        return as_decay(self.lam, "lam").for_bars(bar_hours)

    # -------------------------------------------------------------- results
    def _result(self, level: float, hh: float, var: float, es: float, sigma: float, side: str,
                eff_n: float) -> TailForecast:
        if not (np.isfinite(var) and np.isfinite(es)):
            raise CalibrationError(f"{self.name}: forecast is not finite (var={var}, es={es})")
        return TailForecast(
            model=self.name,
            params=jsonable_params(self.get_params()),
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

    # ------------------------------------------------------------ fit_path
    def fit_path(self, returns: ArrayLike, *, horizon: Horizon = 24.0, level: float = 0.99, refit: int = 1,
                 bar_hours: float | None = None, fast: bool = True, es: bool = True) -> pd.DataFrame:
        """Causal forecast history: row ``t`` from ``returns[:t]`` only (module doc).

        Returns a frame of ``n + 1`` rows with ``var_long``, ``es_long``,
        ``var_short``, ``es_short`` (the sides the model's ``side`` asks for;
        fractions of notional, positive = loss) and ``var``, ``es``, ``side``
        (the side with the larger ES for ``side="both"``). The index is the
        returns' index plus one bar (row ``t`` is labelled by the bar whose
        horizon it covers); a RangeIndex without timestamps. ``fast=False``
        runs the reference refit loop. ``es=False`` may skip the ES columns (NaN; ``var``/``side``
        then follow the larger VaR) where that is cheaper (historical simulation: two order
        statistics per bar instead of the tail average). The model itself is not fitted by this call.
        :meth:`path_arrays` gives the same four columns as arrays, without building the frame.
        """
        out, idx, bh = self._path_columns(returns, horizon, level, refit, bar_hours, fast, es)
        return self._path_frame(out, idx, bh)

    def path_arrays(self, returns: ArrayLike, *, horizon: Horizon = 24.0, level: float = 0.99, refit: int = 1,
                    bar_hours: float | None = None, fast: bool = True, es: bool = True) -> dict[str, np.ndarray]:
        """The ``var_long``, ``es_long``, ``var_short``, ``es_short`` columns of :meth:`fit_path` as arrays.

        The same numbers, the same checks and errors; no DataFrame is built (what a loop over many
        instruments, such as the backtest, wants). A side the model's ``side`` does not ask for is NaN.
        """
        return self._path_columns(returns, horizon, level, refit, bar_hours, fast, es)[0]

    def _path_columns(self, returns: ArrayLike, horizon: Horizon, level: float, refit: int,
                      bar_hours: float | None, fast: bool, es: bool
                      ) -> tuple[dict[str, np.ndarray], pd.Index | None, float]:
        self._validate()
        r, idx, _ = self._as_series_array(returns)
        bh = self._bar_hours_of(idx, bar_hours)
        hh = horizon_hours(horizon)
        lv = check_level(level)
        k = check_int("refit", refit, 1)
        assert k is not None
        if hh / bh < 1.0 - 1e-12:
            warnings.warn(f"horizon is {hh / bh:.4g} bars (shorter than one bar of the data); scaled down by "
                          "sqrt(h). Use data with shorter bars for intraday horizons.", SubBarHorizonWarning,
                          stacklevel=3)
        out = None
        if fast:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SubBarHorizonWarning)
                self._path_es = bool(es)
                out = self._path_fast(r, bh, hh, lv, k)
        if out is None:
            out = self._path_reference(r, bh, hh, lv, k)
        side_param = getattr(self, "side", "both")
        if side_param != "both":
            n1 = next(iter(out.values())).size
            other = "short" if side_param == "long" else "long"
            out = {**out, f"var_{other}": np.full(n1, np.nan), f"es_{other}": np.full(n1, np.nan)}
        return out, idx, bh

    def _path_fast(self, r: np.ndarray, bar_hours: float, hh: float, level: float,
                   refit: int) -> dict[str, np.ndarray] | None:
        """One-pass history for these parameters, or None (then the reference loop runs)."""
        return None

    def _rescale_to(self, r_prefix: np.ndarray) -> bool:
        """Move the fitted volatility forecast to the end of ``r_prefix`` keeping the tail (for ``refit > 1``).

        Returns False when the model has no separate volatility (the whole forecast is held).
        """
        filt = getattr(self, "filter_", None)
        if filt == "ewma":
            v = ewma_variance(r_prefix, self.lam_, self.seed)
            self.sigma_next_ = float(np.sqrt(max(v[-1], 1e-300)))
        elif filt == "sample":
            self.sigma_next_ = float(np.sqrt(np.mean(r_prefix * r_prefix)))
        else:
            return False
        if hasattr(self, "_direct_cache"):
            self._direct_cache = {}
        return True

    def _path_reference(self, r: np.ndarray, bar_hours: float, hh: float, level: float,
                        refit: int) -> dict[str, np.ndarray]:
        """The definition of ``fit_path``: fit a clone on every prefix (tail every ``refit`` bars)."""
        n = r.size
        out = {c: np.full(n + 1, np.nan) for c in PATH_COLUMNS}
        sides = sides_of(getattr(self, "side", "both"))
        models: dict[str, TailModel | None] = {s: None for s in sides}
        anchor: dict[str, int] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MargincalWarning)
            for t in range(20, n + 1):
                for s in sides:
                    m = models[s]
                    due = m is None or (t - anchor[s]) % refit == 0
                    try:
                        if due:
                            m = self.clone(**({"side": s} if "side" in self.get_params() else {}))
                            m.fit(r[:t], bar_hours=bar_hours)
                            models[s], anchor[s] = m, t
                        else:
                            assert m is not None
                            m._rescale_to(r[:t])
                        f = m.forecast(hh, level)
                    except CalibrationError:
                        if due:
                            models[s] = None
                        continue
                    out[f"var_{s}"][t], out[f"es_{s}"][t] = f.var, f.es
        return out

    def _path_frame(self, out: dict[str, np.ndarray], idx: pd.Index | None, bar_hours: float) -> pd.DataFrame:
        n1 = next(iter(out.values())).size
        side_param = getattr(self, "side", "both")
        el, es_ = out["es_long"], out["es_short"]
        if np.isnan(el).all() and np.isnan(es_).all():  # ES skipped (es=False): choose by VaR
            el, es_ = out["var_long"], out["var_short"]
        if side_param == "long":
            short = np.zeros(n1, dtype=bool)
        elif side_param == "short":
            short = np.ones(n1, dtype=bool)
        else:
            short = np.nan_to_num(es_, nan=-np.inf) > np.nan_to_num(el, nan=-np.inf)
        var = np.where(short, out["var_short"], out["var_long"])
        es = np.where(short, es_, el)
        side = np.where(np.isfinite(es), np.where(short, "short", "long"), np.array(None, dtype=object))
        if isinstance(idx, pd.DatetimeIndex) and len(idx):
            index: pd.Index = idx.append(pd.DatetimeIndex([idx[-1] + pd.Timedelta(hours=bar_hours)]))
        else:
            index = pd.RangeIndex(n1)
        frame = pd.DataFrame({**{c: out[c] for c in PATH_COLUMNS}, "var": var, "es": es, "side": side}, index=index)
        frame.attrs.update({"model": self.name, "params": self.get_params()})
        return frame


def jsonable_params(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters with every :class:`Decay` written as its dict (``{"per_day": 0.94}``), for provenance."""
    return {k: (v.as_dict() if isinstance(v, Decay) else v) for k, v in params.items()}


def sides_of(side: str) -> tuple[str, ...]:
    return ("long", "short") if side == "both" else (side,)


def _garch_filter(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, dict[str, float]]:
    """GARCH(1,1), zero mean, normal quasi-likelihood, fitted by ``arch`` on percent returns.

    Returns (standardised residuals, conditional volatility per bar, one-step forecast, params).
    ``arch`` is the implementation; this only converts units (percent <-> fraction).
    """
    from arch import arch_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = arch_model(100.0 * r, mean="Zero", vol="GARCH", p=1, q=1, dist="normal",
                         rescale=False).fit(disp="off")
    if res.convergence_flag != 0:
        warnings.warn(f"garch filter: arch optimiser flag {res.convergence_flag}", ModelFitWarning, stacklevel=3)
    vol = np.asarray(res.conditional_volatility, dtype=float) / 100.0
    nxt = float(np.sqrt(res.forecast(horizon=1, reindex=False).variance.to_numpy()[-1, 0])) / 100.0
    p = res.params
    params = {"omega": float(p["omega"]) / 1e4, "alpha": float(p["alpha[1]"]), "beta": float(p["beta[1]"])}
    return r / vol, vol, nxt, params


def filter_returns(r: np.ndarray, sigma: str, lam: float | Decay, fit_lam: bool, seed: int,
                   window: int | None, bar_hours: float = 24.0) -> dict[str, Any]:
    """The volatility filter shared by FHS, the parametric models, EVT and Monte Carlo.

    ``sigma="ewma"``: ``z_t = r_t / s_t`` with the EWMA volatility ``s_t`` built from
    returns strictly before ``t`` (the first ``seed`` returns only seed the
    recursion and give no residual), decay ``lam`` (a :class:`Decay`, converted to
    ``bar_hours``; ``fit_lam`` fits the per-bar decay by likelihood instead); the
    scale of the forecast is the EWMA forecast for the next bar.
    ``sigma="garch"``: GARCH(1,1) by ``arch`` (:func:`_garch_filter`).
    ``sigma="sample"`` (or ``"none"``): ``z_t = r_t / s`` with the zero-mean sample
    volatility ``s = sqrt(mean(r^2))``; the scale is ``s``.
    ``window`` keeps the last ``window`` residuals.
    """
    check_choice("sigma", sigma, FILTERS)
    extra: dict[str, Any] = {}
    if sigma == "ewma":
        if r.size <= seed + 10:
            raise CalibrationError(f"ewma filter: need more than {seed + 10} returns, got {r.size}")
        lam_ = fit_lambda(r, seed) if fit_lam else as_decay(lam, "lam").for_bars(bar_hours)
        v = ewma_variance(r, lam_, seed)
        sig = np.sqrt(np.maximum(v, 1e-300))
        z = r[seed:] / sig[:-1][seed:]
        path, nxt, kind = sig[:-1], float(sig[-1]), "ewma"
    elif sigma == "garch":
        if r.size < 100:
            raise CalibrationError(f"garch filter: need at least 100 returns, got {r.size}")
        lam_ = float("nan")
        z, path, nxt, extra = _garch_filter(r)
        kind = "garch"
    else:
        lam_ = float("nan")
        s = float(np.sqrt(np.mean(r * r)))
        if not s > 0:
            raise CalibrationError("sample volatility is 0; the returns are all zero")
        z = r / s
        path, nxt, kind = np.full(r.size, s), s, "sample"
    if window:
        z = z[-int(window):]
    return {"lam": lam_, "residuals": z, "sigma_path": path, "sigma_next": nxt, "filter": kind,
            "garch_params": extra}


def store_filter(model: TailModel, f: dict[str, Any]) -> None:
    """Copy the output of :func:`filter_returns` onto the fitted model's attributes."""
    model.lam_ = f["lam"]
    model.residuals_ = f["residuals"]
    model.sigma_path_ = f["sigma_path"]
    model.sigma_next_ = f["sigma_next"]
    model.filter_ = f["filter"]
    if f["garch_params"]:
        model.garch_filter_params_ = f["garch_params"]


def ewma_scale_path(r: np.ndarray, lam_bar: float, seed: int) -> np.ndarray:
    """sigma[0..n] of the EWMA filter on every prefix at once.

    ``sigma[t]`` is the forecast made from ``r[:t]``, the same number :func:`filter_returns`
    gives as ``sigma_next`` on ``r[:t]`` (the recursion is causal and its seed uses the first
    ``seed`` returns only). ``r`` is a validated (finite, non-empty) float array and ``lam_bar``
    a validated decay: the fast paths check both before they get here.
    """
    v = ewma_variance(r, lam_bar, seed, check_input=False)
    np.maximum(v, 1e-300, out=v)
    return np.sqrt(v, out=v)


def ewma_residuals(r: np.ndarray, sig: np.ndarray, seed: int) -> np.ndarray:
    """Residuals z[0..n-1] = r[t] / sigma[t] of :func:`ewma_scale_path` (0 before ``seed``)."""
    z = np.zeros(r.size)
    z[seed:] = r[seed:] / sig[seed:-1]
    return z


def ewma_path(r: np.ndarray, lam_bar: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(sigma[0..n], residuals z[0..n-1]) of the EWMA filter on every prefix at once (z before ``seed`` is 0)."""
    sig = ewma_scale_path(r, lam_bar, seed)
    return sig, ewma_residuals(r, sig, seed)


def sample_scale_path(r: np.ndarray) -> np.ndarray:
    """``sqrt(mean(r[:t]^2))`` for ``t = 0 .. n`` (NaN at 0)."""
    c2 = np.concatenate([[0.0], np.cumsum(r * r)])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(c2 / np.arange(r.size + 1))


def filtered_scale_path(model: TailModel, r: np.ndarray, bar_hours: float, filter_kind: str
                        ) -> tuple[np.ndarray, int, int]:
    """(sigma path, first usable residual, first row with a tail) of a one-pass fit_path.

    The prologue every fast path shares: the EWMA filter of ``model`` on every prefix at once
    (residuals from its ``seed``-th return, tails from row ``max(seed + 11, 20)``), or, without a
    filter, the running root mean square of the raw returns (tails from row 20).
    """
    if filter_kind == "ewma":
        seed = int(model.seed)
        return ewma_scale_path(r, model._decay_per_bar(bar_hours), seed), seed, max(seed + 11, 20)
    return sample_scale_path(r), 0, 20


def filtered_residuals(r: np.ndarray, sig: np.ndarray, first: int, filter_kind: str) -> np.ndarray:
    """The residuals that go with :func:`filtered_scale_path`: ``r / sigma`` for the EWMA filter, else ``r``."""
    return ewma_residuals(r, sig, first) if filter_kind == "ewma" else r


def filtered_path(model: TailModel, r: np.ndarray, bar_hours: float, filter_kind: str
                  ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(sigma path, residuals, first usable residual, first row with a tail): :func:`filtered_scale_path`
    and :func:`filtered_residuals`."""
    sig, first, t_min = filtered_scale_path(model, r, bar_hours, filter_kind)
    return sig, filtered_residuals(r, sig, first, filter_kind), first, t_min


def held_index(n1: int, t_min: int, refit: int) -> np.ndarray:
    """Row whose tail estimate is in force at each row ``t >= t_min`` with a refit every ``refit`` rows."""
    t = np.arange(n1)
    return np.where(t >= t_min, t_min + ((t - t_min) // refit) * refit, t)
