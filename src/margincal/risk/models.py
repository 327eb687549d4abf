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

The family is a volatility filter times a tail method (like ``arch``'s mean x
volatility x distribution); :func:`tail_model` builds any pair::

    tail_model(vol="ewma", tail="historical", lam=Decay(per_day=0.94))   # = FHS
    tail_model(vol="garch", tail="evt")                                   # GARCH-filtered EVT

The EWMA decay ``lam`` is a :class:`~margincal.units.Decay` (a unit is
required: ``Decay(per_day=0.94)``, ``Decay(half_life_hours=...)``,
``Decay(per_bar=...)``); a bare float raises :class:`~margincal.errors.ConfigError`.
Every model has ``fit``/``forecast`` and the causal ``fit_path`` (see
:mod:`margincal.risk.base`).

Conventions (losses positive, simple-return losses of one unit of notional,
``side``, horizon ``scaling``) are in :mod:`margincal.risk.base`. The portfolio
model :class:`~margincal.risk.montecarlo.TCopulaMonteCarlo` takes a DataFrame of
several instruments and is not in the univariate registry.
"""

from __future__ import annotations

from typing import Any

from margincal.errors import ConfigError
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
from margincal.units import RISKMETRICS, Decay, as_decay

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
    """Build a tail model by its short name (see :data:`MODELS`); unknown names or parameters: ConfigError."""
    try:
        cls = MODELS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}") from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None


#: volatility filters and tail methods of :func:`tail_model`
VOL_FILTERS = ("none", "ewma", "garch")
TAIL_METHODS = ("historical", "normal", "t", "cornish-fisher", "evt", "monte-carlo")


def tail_model(*, vol: str = "ewma", tail: str = "historical", **params: Any) -> TailModel:
    """One model of the family: a volatility filter (``none``, ``ewma``, ``garch``) x a tail method.

    ``historical`` with ``vol="none"`` is plain HS, with ``ewma``/``garch`` it is FHS;
    ``monte-carlo`` with ``garch`` is the GARCH-t simulation. ``params`` go to the model.
    """
    if vol not in VOL_FILTERS:
        raise ConfigError(f"vol is {vol!r}; use one of {', '.join(VOL_FILTERS)}")
    if tail not in TAIL_METHODS:
        raise ConfigError(f"tail is {tail!r}; use one of {', '.join(TAIL_METHODS)}")
    if tail == "historical":
        if vol == "none":
            return make_model("hs", **params)
        return make_model("fhs", sigma=vol, **params)
    if tail == "evt":
        return make_model("evt", filter=vol, **params)
    if tail == "monte-carlo":
        if vol == "garch":
            return make_model("mc", dist="garch-t", **params)
        return make_model("mc", sigma="sample" if vol == "none" else vol, **params)
    name = {"normal": "normal", "t": "t", "cornish-fisher": "cf"}[tail]
    return make_model(name, sigma="sample" if vol == "none" else vol, **params)


__all__ = [
    "MODELS",
    "RISKMETRICS",
    "TAIL_METHODS",
    "VOL_FILTERS",
    "Decay",
    "as_decay",
    "tail_model",
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
