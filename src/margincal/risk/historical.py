"""Historical simulation (HS) and filtered historical simulation (FHS).

Both are empirical: VaR/ES are taken with :func:`margincal.risk.measures.value_at_risk`
and :func:`~margincal.risk.measures.expected_shortfall` on simple-return losses of
the horizon scenarios (see :mod:`margincal.risk.base` for sides and scaling).
"""

from __future__ import annotations

import math

import numpy as np

from margincal.risk.base import Side, TailForecast, TailModel, filter_returns, scale_one_bar


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
        hret, eff = scale_one_bar(x, h, self.scaling)
        return self._empirical(hret, level, hh, float(np.std(x, ddof=1) * math.sqrt(h)), self.side, eff)


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
        f = filter_returns(r, "ewma", self.lam, self.fit_lambda, self.seed, self.window)
        self.lam_ = f["lam"]
        self.residuals_ = f["residuals"]
        self.sigma_path_ = f["sigma_path"]
        self.sigma_next_ = f["sigma_next"]
        return self

    def forecast(self, horizon: object = 24.0, level: float = 0.99) -> TailForecast:
        self._check_fitted()
        hh, h = self._bars(horizon)
        one_bar = self.sigma_next_ * self.residuals_
        hret, eff = scale_one_bar(one_bar, h, self.scaling)
        return self._empirical(hret, level, hh, self.sigma_next_ * math.sqrt(h), self.side, eff)
