"""Tail-risk models with one estimator interface, and the registry the CLI uses.

Every model follows the same shape::

    model = make_model("fhs", lam=0.94).fit(log_returns)
    res = model.forecast(horizon=24, level=0.99)     # horizon in hours (or a Timedelta)
    res.var, res.es, res.sigma                         # fractions of notional, positive = loss

Short names (``--model`` of the CLI):

========  ==========================================================  ==============================
name      model                                                       module
========  ==========================================================  ==============================
``hs``    historical simulation                                       :mod:`margincal.risk.historical`
``fhs``   filtered HS with EWMA volatility                            :mod:`margincal.risk.historical`
``normal`` normal on EWMA (or sample) volatility                      :mod:`margincal.risk.parametric`
``t``     Student-t, df by MLE, scaled to the volatility              :mod:`margincal.risk.parametric`
``cf``    Cornish-Fisher (skew/kurtosis-adjusted)                     :mod:`margincal.risk.parametric`
``evt``   conditional EVT, GPD peaks over threshold (McNeil-Frey)     :mod:`margincal.risk.evt`
``mc``    Monte Carlo from a fitted t or GARCH-t                      :mod:`margincal.risk.montecarlo`
========  ==========================================================  ==============================

Conventions (losses positive, simple-return losses of one unit of notional,
``side``, horizon ``scaling``) are in :mod:`margincal.risk.base`. The portfolio
model :class:`~margincal.risk.montecarlo.TCopulaMonteCarlo` takes a DataFrame of
several instruments and is not in the univariate registry.
"""

from __future__ import annotations

from typing import Any

from margincal.errors import CalibrationError
from margincal.risk.base import (
    ModelFitWarning,
    Side,
    SubBarHorizonWarning,
    TailForecast,
    TailModel,
    _scale,  # noqa: F401 - kept for code written against the first version of this module
    horizon_hours,
    infer_bar_hours,
    overlapping_sums,
    tail_losses,
)
from margincal.risk.evt import EVTModel
from margincal.risk.historical import FilteredHistoricalSimulation, HistoricalSimulation
from margincal.risk.montecarlo import MonteCarloModel, TCopulaMonteCarlo
from margincal.risk.parametric import CornishFisherModel, NormalModel, StudentTModel

MODELS: dict[str, type[TailModel]] = {
    "hs": HistoricalSimulation,
    "fhs": FilteredHistoricalSimulation,
    "normal": NormalModel,
    "t": StudentTModel,
    "cf": CornishFisherModel,
    "evt": EVTModel,
    "mc": MonteCarloModel,
}


def make_model(name: str, **params: Any) -> TailModel:
    """Build a tail model by its short name (see :data:`MODELS`)."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise CalibrationError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}") from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise CalibrationError(f"model {name!r}: {exc}") from None


__all__ = [
    "MODELS",
    "CornishFisherModel",
    "EVTModel",
    "FilteredHistoricalSimulation",
    "HistoricalSimulation",
    "ModelFitWarning",
    "MonteCarloModel",
    "NormalModel",
    "Side",
    "StudentTModel",
    "SubBarHorizonWarning",
    "TCopulaMonteCarlo",
    "TailForecast",
    "TailModel",
    "horizon_hours",
    "infer_bar_hours",
    "make_model",
    "overlapping_sums",
    "tail_losses",
]
