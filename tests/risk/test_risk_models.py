"""The common model interface: registry, horizons, bar spacing, HS/FHS, properties shared by all models."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margincal.errors import CalibrationError, ConfigError, DataError, NotFittedError
from margincal.risk.base import ModelFitWarning, SubBarHorizonWarning, jsonable_params
from margincal.risk.measures import expected_shortfall, value_at_risk
from margincal.risk.models import (
    MODELS,
    FilteredHistoricalSimulation,
    HistoricalSimulation,
    TailForecast,
    horizon_hours,
    infer_bar_hours,
    make_model,
    overlapping_sums,
)
from margincal.vol.ewma import ewma_variance

CLI_NAMES = ("hs", "fhs", "normal", "t", "cf", "evt", "mc")


@pytest.fixture(scope="module")
def btc() -> pd.Series:
    from margincal.risk.compare import load_daily_log_returns

    return load_daily_log_returns("btc").iloc[-1200:]


def test_registry_has_cli_names() -> None:
    assert set(CLI_NAMES) == set(MODELS)
    with pytest.raises(ConfigError, match="unknown model 'garch'"):
        make_model("garch")
    with pytest.raises(ConfigError, match="model 'hs'"):
        make_model("hs", lam=0.9)


@pytest.mark.parametrize(
    ("h", "hours"), [(24, 24.0), (1.5, 1.5), ("1d", 24.0), ("10d", 240.0), ("4h", 4.0), ("1w", 168.0),
                     (pd.Timedelta(hours=8), 8.0), ("30min", 0.5), ("30m", 0.5), ("P1D", 24.0)],
)
def test_horizon_hours(h: object, hours: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no pandas deprecation for lower-case 'd'
        assert horizon_hours(h) == hours


@pytest.mark.parametrize("bad", [0, -1, "soon", True])
def test_horizon_hours_rejects(bad: object) -> None:
    with pytest.raises(ConfigError):
        horizon_hours(bad)


@pytest.mark.parametrize("unit", ["ns", "us", "ms", "s"])
def test_infer_bar_hours_any_resolution(unit: str) -> None:
    # pandas 3 parses dates to microseconds: the first version assumed nanoseconds and returned 0.024 for daily
    idx = pd.date_range("2024-01-01", periods=10, freq="D", tz="UTC").as_unit(unit)
    assert infer_bar_hours(idx) == 24.0
    assert infer_bar_hours(pd.date_range("2024-01-01", periods=10, freq="h").as_unit(unit)) == 1.0


def test_bar_hours_inferred_from_csv_dates(btc: pd.Series) -> None:
    m = HistoricalSimulation().fit(btc)
    assert m.bar_hours_ == 24.0
    # so a 10-day horizon is 10 bars: sqrt scaling multiplies the one-day VaR's log loss by sqrt(10)
    f1, f10 = m.forecast("1d"), m.forecast("10d")
    assert f10.sigma == pytest.approx(f1.sigma * math.sqrt(10), rel=1e-12)


def test_overlapping_sums() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert overlapping_sums(x, 2).tolist() == [3.0, 5.0, 7.0, 9.0]
    assert overlapping_sums(x, 1).tolist() == x.tolist()
    with pytest.raises(CalibrationError):
        overlapping_sums(x, 6)


def test_hs_is_the_empirical_measure(btc: pd.Series) -> None:
    f = HistoricalSimulation(window=500, side="long").fit(btc).forecast(24, 0.99)
    losses = -np.expm1(btc.to_numpy()[-500:])
    assert f.var == value_at_risk(losses, 0.99)
    assert f.es == pytest.approx(expected_shortfall(losses, 0.99), rel=1e-15)
    assert f.window_start == str(btc.index[0]) and f.instrument == "BTC"


def test_fhs_residuals_and_rescaling(btc: pd.Series) -> None:
    m = FilteredHistoricalSimulation().fit(btc)
    r = btc.to_numpy()
    sig = np.sqrt(ewma_variance(r, 0.94, 30))
    assert m.sigma_next_ == pytest.approx(sig[-1], rel=1e-14)
    assert np.allclose(m.residuals_, r[30:] / sig[30:-1])
    f = FilteredHistoricalSimulation(side="short").fit(btc).forecast(24, 0.99)
    assert f.var == pytest.approx(value_at_risk(np.expm1(sig[-1] * m.residuals_), 0.99), rel=1e-14)


@pytest.mark.parametrize("name", CLI_NAMES)
def test_every_model_same_interface(name: str, btc: pd.Series) -> None:
    params = {"n_sims": 20_000} if name == "mc" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelFitWarning)
        model = make_model(name, **params)
        assert model.fit(btc) is model
        f = model.forecast(24, 0.99)
        f10 = model.forecast("10d", 0.99)
        d = make_model(name, scaling="direct", **params).fit(btc).forecast("10d", 0.99)
    assert isinstance(f, TailForecast) and dataclasses.is_dataclass(f)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.var = 0.0  # type: ignore[misc]
    assert f.model == name and f.level == 0.99 and f.horizon_hours == 24.0
    assert 0 < f.var <= f.es < 1.0
    assert f10.var > f.var and d.var > f.var
    assert f.side in ("long", "short")
    assert f.n_obs == btc.size and f.window_end == str(btc.index[-1])
    assert f.params == jsonable_params(model.get_params())
    # a daily model asked for 1 hour scales down and says so
    with pytest.warns(SubBarHorizonWarning):
        f1h = model.forecast(1, 0.99)
    assert f1h.var < f.var


def test_unfitted_and_bad_options(btc: pd.Series) -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        make_model("t").forecast(24, 0.99)
    with pytest.raises(ConfigError, match="scaling"):
        make_model("fhs", scaling="linear").fit(btc)
    with pytest.raises(ConfigError, match="side"):
        make_model("normal", side="up").fit(btc)
    with pytest.raises(DataError, match="finite"):
        make_model("hs").fit(pd.Series([0.01] * 30 + [np.nan]))


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["hs", "fhs", "normal", "t", "cf", "evt"]), st.floats(0.5, 4.0), st.integers(0, 2**31 - 1))
def test_positive_homogeneity_of_log_losses(name: str, c: float, seed: int) -> None:
    # scaling all returns by c scales the log-loss VaR by c; mapped back: log1p(var) (short side) scales by c
    rng = np.random.default_rng(seed)
    r = 0.01 * rng.standard_t(5, 400)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelFitWarning)
        a = make_model(name, side="short").fit(r, bar_hours=24).forecast(24, 0.99)
        b = make_model(name, side="short").fit(c * r, bar_hours=24).forecast(24, 0.99)
    assert math.log1p(b.var) == pytest.approx(c * math.log1p(a.var), rel=1e-6)
