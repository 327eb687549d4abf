"""Historical simulation (HS) and filtered historical simulation (FHS), one definition each.

Both are empirical: VaR/ES are taken with :func:`margincal.risk.measures.value_at_risk`
and :func:`~margincal.risk.measures.expected_shortfall` on simple-return losses of
the horizon scenarios (see :mod:`margincal.risk.base` for sides and scaling).
``fit_path`` keeps the scenarios in a sorted list (:func:`margincal.risk.path.sorted_tails`):
the exact empirical tail at every bar, no refit frequency to tune.
"""

from __future__ import annotations

import math

import numpy as np

from margincal.risk.base import (
    Side,
    TailForecast,
    TailModel,
    check_choice,
    ewma_path,
    filter_returns,
    scale_one_bar,
    store_filter,
    whole_bars,
)
from margincal.risk.path import sorted_tails
from margincal.units import RISKMETRICS, Decay


def _scenario_layout(x: np.ndarray, first: int, h: float, scaling: str, window: int | None, n: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]:
    """Scenario values, the row each joins the sample, the window's first value per row, and sqrt-or-not.

    ``x[first:]`` are the one-bar values (returns or residuals); value ``i`` is known at row ``i + 1``.
    """
    direct = scaling == "direct" and h > 1.0 + 1e-12
    base = x[first:]
    t = np.arange(n + 1)
    if not direct:
        avail = np.arange(first, n) + 1
        drop = None if window is None else np.maximum(0, t - int(window) - first)
        return base, avail, drop, True
    hi = whole_bars(h)
    if base.size < hi:
        return np.empty(0), np.empty(0, dtype=np.intp), None, False
    c = np.concatenate([[0.0], np.cumsum(base)])
    sums = c[hi:] - c[:-hi]
    avail = np.arange(sums.size) + first + hi
    drop = None if window is None else np.maximum(0, t - int(window) - first)
    return sums, avail, drop, False


class HistoricalSimulation(TailModel):
    """Plain historical simulation on the last ``window`` returns (all if None): no volatility filter."""

    name = "hs"
    _fitted_attr = "sample_"

    def __init__(self, *, window: int | None = None, scaling: str = "sqrt", side: Side = "both") -> None:
        self.window = window
        self.scaling = scaling
        self.side = side

    def fit(self, returns: object, bar_hours: float | None = None) -> HistoricalSimulation:
        r = self._prepare(returns, bar_hours)
        self.sample_ = r[-self.window:] if self.window else r
        self.filter_ = "none"
        return self

    def forecast(self, horizon: object = 24.0, level: float = 0.99) -> TailForecast:
        self._check_fitted()
        hh, h = self._bars(horizon)
        x = self.sample_
        hret, eff = scale_one_bar(x, h, self.scaling)
        return self._empirical(hret, level, hh, float(np.std(x, ddof=1) * math.sqrt(h)), self.side, eff)

    def _path_fast(self, r: np.ndarray, bar_hours: float, hh: float, level: float,
                   refit: int) -> dict[str, np.ndarray] | None:
        n = r.size
        h = hh / bar_hours
        vals, avail, drop, sq = _scenario_layout(r, 0, h, self.scaling, self.window, n)
        scale = np.full(n + 1, math.sqrt(h) if sq else 1.0)
        return sorted_tails(vals, avail, scale, level=level, t_min=20, drop_before=drop, refit=refit,
                            es=getattr(self, "_path_es", True))


class FilteredHistoricalSimulation(TailModel):
    """Filtered historical simulation (Barone-Adesi/Hull-White): a volatility filter x the empirical tail.

    Standardised residuals ``z_t = r_t / sigma_t`` (sigma from data strictly
    before t; ``sigma="ewma"`` with decay ``lam`` = a :class:`~margincal.units.Decay`,
    or ``sigma="garch"`` via ``arch``) are rescaled by the volatility forecast
    ``sigma_{n+1}``; VaR/ES are taken on the resulting scenarios at the horizon.
    This is the one definition of FHS in the package: calibration, backtest,
    monitor, stress and reports all call it.
    """

    name = "fhs"
    _fitted_attr = "residuals_"

    def __init__(self, *, lam: Decay = RISKMETRICS, fit_lambda: bool = False, window: int | None = None,
                 scaling: str = "sqrt", side: Side = "both", seed: int = 30, sigma: str = "ewma") -> None:
        self.lam = lam
        self.fit_lambda = fit_lambda
        self.window = window
        self.scaling = scaling
        self.side = side
        self.seed = seed
        self.sigma = sigma

    def _validate(self) -> None:
        super()._validate()
        check_choice("sigma", self.sigma, ("ewma", "garch"))

    def fit(self, returns: object, bar_hours: float | None = None) -> FilteredHistoricalSimulation:
        r = self._prepare(returns, bar_hours)
        store_filter(self, filter_returns(r, self.sigma, self.lam, self.fit_lambda, self.seed, self.window,
                                          self.bar_hours_))
        return self

    def forecast(self, horizon: object = 24.0, level: float = 0.99) -> TailForecast:
        self._check_fitted()
        hh, h = self._bars(horizon)
        one_bar = self.sigma_next_ * self.residuals_
        hret, eff = scale_one_bar(one_bar, h, self.scaling)
        return self._empirical(hret, level, hh, self.sigma_next_ * math.sqrt(h), self.side, eff)

    def _path_fast(self, r: np.ndarray, bar_hours: float, hh: float, level: float,
                   refit: int) -> dict[str, np.ndarray] | None:
        if self.sigma != "ewma" or self.fit_lambda:
            return None
        n = r.size
        h = hh / bar_hours
        sig, z = ewma_path(r, self._decay_per_bar(bar_hours), int(self.seed))
        vals, avail, drop, sq = _scenario_layout(z, int(self.seed), h, self.scaling, self.window, n)
        scale = sig * math.sqrt(h) if sq else sig
        t_min = max(int(self.seed) + 11, 20)
        return sorted_tails(vals, avail, scale, level=level, t_min=t_min, drop_before=drop, refit=refit,
                            es=getattr(self, "_path_es", True))
