"""Common estimator checks for the estimators outside the tail-model family (like scikit-learn's
parametrize_with_checks; the tail models run the same checks in tests/risk/test_risk_family.py).

Every volatility model (EWMA, GARCH, HAR, ML), volatility surface (SVI, SSVI) and
portfolio-margin model must: raise ``NotFittedError`` (the one class of
:mod:`margincal.errors`) when used before ``fit``, still a ``CalibrationError`` as
before the shared taxonomy (``RiskMatrixMargin``'s is still a ``DataError`` too);
return itself from ``fit``; leave its parameters as given; raise ``ConfigError``
for every bad parameter, the same class whichever estimator it is.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest

from margincal.errors import CalibrationError, ConfigError, DataError, NotFittedError
from margincal.margin.portfolio import (
    HistoricalPortfolioMargin,
    MarketState,
    RiskMatrixMargin,
    parse_instrument,
)
from margincal.margin.portfolio.historical import load_daily_closes
from margincal.risk.compare import load_daily_log_returns
from margincal.vol.ewma import EWMAVolatility
from margincal.vol.garch import GarchVolatility
from margincal.vol.har import HARVolatility
from margincal.vol.ml import MLVarianceForecaster
from margincal.vol.surface import SSVISurface, SVISurface, ssvi_total_variance


def _returns() -> pd.Series:
    return load_daily_log_returns("btc").iloc[-400:]


def _features() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"log_rv_1": rng.normal(-8, 0.8, 400), "noise": rng.normal(size=400)})
    return X, np.exp(-8 + 0.6 * (X["log_rv_1"].to_numpy() + 8) + rng.normal(0, 0.3, 400))


def _quotes() -> pd.DataFrame:
    rows = []
    for T, th in ((0.05, 0.01), (0.2, 0.03), (0.5, 0.06), (1.0, 0.12)):
        k = np.linspace(-0.6, 0.6, 15)
        w = ssvi_total_variance(k, th, -0.3, 0.8, 0.4)
        rows.append(pd.DataFrame({"T": T, "k": k, "w": w, "iv": np.sqrt(w / T), "forward": 100.0}))
    return pd.concat(rows, ignore_index=True)


MARKET = MarketState(spot={"BTC": 68800.0}, valuation_time="2024-05-24T13:00Z", flat_vol=0.6)


@dataclass
class Case:
    make: Callable[..., Any]
    fit: Callable[[Any], Any]  # fit(estimator) -> whatever fit returns
    use: Callable[[Any], Any]  # a call that needs a fitted estimator
    bad: list[dict[str, Any]] = field(default_factory=list)  # each a parameter set that must raise ConfigError


CASES: dict[str, Case] = {
    "ewma": Case(EWMAVolatility, lambda m: m.fit(_returns()), lambda m: m.forecast_variance(1),
                 [{"lam": 1.5}, {"lam": "0.94"}, {"seed": -1}, {"fit_lambda": "yes"}]),
    "garch": Case(GarchVolatility, lambda m: m.fit(_returns()), lambda m: m.forecast_variance(1),
                  [{"kind": "arch"}, {"dist": "cauchy"}, {"mean": "ar"}, {"n_simulations": 10},
                   {"n_simulations": "many"}, {"rescale": "no"}]),
    "har": Case(HARVolatility, lambda m: m.fit(_returns().to_numpy() ** 2), lambda m: m.forecast_variance(1),
                [{"lags": (5, 1)}, {"lags": ()}, {"lags": (1, 5.5, 22)}, {"lags": ("a",)}]),
    "ml": Case(lambda **kw: MLVarianceForecaster(max_iter=20, **kw), lambda m: m.fit(*_features()),
               lambda m: m.forecast_variance(1),
               [{"objective": "mae"}, {"holdout": 0.7}, {"learning_rate": -0.1}, {"min_samples_leaf": 0},
                {"max_leaf_nodes": 1}, {"l2_regularization": "high"}]),
    "svi": Case(SVISurface, lambda m: m.fit(_quotes()), lambda m: m.total_variance(0.0, 0.5),
                [{"space": "vol"}, {"min_quotes": 0}, {"b_max": 0.0}, {"lee_bound": "yes"}]),
    "ssvi": Case(SSVISurface, lambda m: m.fit(_quotes()), lambda m: m.total_variance(0.0, 0.5),
                 [{"space": "vol"}, {"min_quotes": 0}]),
    "historical-portfolio": Case(
        HistoricalPortfolioMargin, lambda m: m.fit(load_daily_closes(["BTC", "ETH"])), lambda m: m.default_market(),
        [{"level": 1.2}, {"level": "0.99"}, {"horizon_hours": 0.0}, {"lam": 1.0}, {"offset": 2.0},
         {"offset_floor": 1.0}, {"mm_fraction": 0.0}, {"scaling": "linear"}, {"window": 0}, {"seed": -1}]),
    "risk-matrix": Case(RiskMatrixMargin, lambda m: m.fit([parse_instrument("BTC-PERP")], MARKET),
                        lambda m: m.margin({"BTC-PERP": 1.0}), [{"config": {"shocks": 10}}]),
}
IDS = list(CASES)


def _params(m: Any) -> dict[str, Any]:
    """The constructor parameters as stored (public attributes without the fitted trailing underscore)."""
    return {k: v for k, v in vars(m).items() if not k.startswith("_") and not k.endswith("_")}


@pytest.mark.parametrize("name", IDS)
def test_use_before_fit_raises_the_shared_not_fitted_error(name: str) -> None:
    c = CASES[name]
    with pytest.raises(NotFittedError, match="is not fitted; call fit") as exc:
        c.use(c.make())
    assert isinstance(exc.value, CalibrationError)  # what these estimators raised before: still caught
    if name == "risk-matrix":
        assert isinstance(exc.value, DataError)


@pytest.mark.parametrize("name", IDS)
def test_fit_returns_self_and_leaves_parameters_unchanged(name: str) -> None:
    c = CASES[name]
    m = c.make()
    before = _params(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert c.fit(m) is m
        c.use(m)  # usable once fitted
    after = _params(m)
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert after[k] is v, k


@pytest.mark.parametrize("name", IDS)
def test_bad_parameters_raise_config_error(name: str) -> None:
    c = CASES[name]
    assert c.bad
    for b in c.bad:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(ConfigError, match=next(iter(b))):
                c.fit(c.make(**b))
