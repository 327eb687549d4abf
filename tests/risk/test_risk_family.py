"""Common estimator checks for every model of the tail-model family (like scikit-learn's parametrize_with_checks).

Every model, whatever its volatility filter and tail method, must: return itself
from ``fit``; store its ``__init__`` parameters unchanged; raise
``NotFittedError`` before ``fit``; give a causal ``fit_path`` (perturbing future
returns leaves earlier rows bit-identical); end ``fit_path`` on what ``fit``
gives on the same data; keep ES >= VaR; raise ``ConfigError`` for bad
parameters; and, where it has a fast path, agree with its reference refit loop.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from margincal.errors import ConfigError, NotFittedError
from margincal.risk import Decay, make_model, tail_model
from margincal.risk.base import TailModel
from margincal.risk.compare import load_daily_log_returns
from margincal.risk.models import TAIL_METHODS, VOL_FILTERS
from margincal.units import as_decay

# (label, name, params, rtol of fit_path's last row against fit, refit used in the path checks)
CASES = [
    ("hs", "hs", {}, 1e-12, 1),
    ("hs-window-direct", "hs", {"window": 120, "scaling": "direct"}, 1e-12, 1),
    ("fhs", "fhs", {}, 1e-12, 1),
    ("fhs-window", "fhs", {"window": 100, "lam": Decay(half_life_hours=24 * 11)}, 1e-12, 1),
    ("fhs-direct", "fhs", {"scaling": "direct"}, 1e-12, 1),
    ("normal", "normal", {}, 1e-12, 1),
    ("normal-sample", "normal", {"sigma": "sample"}, 1e-12, 1),
    ("t", "t", {}, 1e-7, 1),
    ("cf", "cf", {}, 1e-9, 1),
    ("evt", "evt", {}, 1e-7, 1),
    ("mc", "mc", {"n_sims": 2000}, 1e-7, 1),
    ("fhs-garch", "fhs", {"sigma": "garch"}, 1e-12, 60),
]
IDS = [c[0] for c in CASES]


@pytest.fixture(scope="module")
def r() -> pd.Series:
    return load_daily_log_returns("btc").iloc[-260:]


@pytest.mark.parametrize(("label", "name", "params", "rtol", "refit"), CASES, ids=IDS)
def test_fit_returns_self_and_params_are_stored_unchanged(label: str, name: str, params: dict, rtol: float,
                                                          refit: int, r: pd.Series) -> None:
    m = make_model(name, **params)
    got = m.get_params()
    for k, v in params.items():
        assert got[k] is v
    with pytest.raises(NotFittedError):
        m.forecast(24, 0.99)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert m.fit(r) is m
    assert m.get_params() == got  # fit does not touch parameters
    assert repr(m).startswith(type(m).__name__)


@pytest.mark.parametrize(("label", "name", "params", "rtol", "refit"), CASES, ids=IDS)
def test_fit_path_is_causal_ends_on_fit_and_es_above_var(label: str, name: str, params: dict, rtol: float,
                                                         refit: int, r: pd.Series) -> None:
    m = make_model(name, **params)
    k = 200
    bumped = r.copy()
    bumped.iloc[k:] = bumped.iloc[k:] * 3.0 + 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = m.fit_path(r, horizon=48, level=0.99, refit=refit)
        q = m.fit_path(bumped, horizon=48, level=0.99, refit=refit)
        f = make_model(name, **params).fit(r).forecast(48, 0.99)
    assert len(p) == r.size + 1
    assert p.index[-1] == r.index[-1] + pd.Timedelta(days=1)
    cols = ["var_long", "es_long", "var_short", "es_short"]
    # rows 0..k use r[:k] at most: bit-identical whatever happens from bar k on
    np.testing.assert_array_equal(p[cols].to_numpy()[: k + 1], q[cols].to_numpy()[: k + 1])
    assert not np.allclose(p[cols].to_numpy()[-1], q[cols].to_numpy()[-1])
    last = p.iloc[-1]
    if refit == 1 or (r.size - p[cols].notna().all(axis=1).to_numpy().argmax()) % refit == 0:
        assert last["es"] == pytest.approx(f.es, rel=rtol)
        assert last["var"] == pytest.approx(f.var, rel=rtol)
        assert last["side"] == f.side
    ok = p["es"].notna()
    assert ok.sum() > 100
    assert (p.loc[ok, "es"] >= p.loc[ok, "var"]).all()
    assert (p.loc[ok, "var"] > 0).all()


FAST = [c for c in CASES if c[1] != "fhs" or c[2].get("sigma") != "garch"]


@pytest.mark.parametrize(("label", "name", "params", "rtol", "refit"), FAST, ids=[c[0] for c in FAST])
def test_fast_path_agrees_with_the_reference_refit_loop(label: str, name: str, params: dict, rtol: float,
                                                        refit: int, r: pd.Series) -> None:
    x = r.iloc[-160:]
    m = make_model(name, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = m.fit_path(x, horizon=24, level=0.99)
        ref = m.fit_path(x, horizon=24, level=0.99, fast=False)
        # refit every 7 bars: tails held, volatility moving every bar, on both paths
        fast7 = m.fit_path(x, horizon=24, level=0.99, refit=7)
        ref7 = m.fit_path(x, horizon=24, level=0.99, refit=7, fast=False)
    cols = ["var_long", "es_long", "var_short", "es_short"]
    tol = max(rtol, 1e-10)
    np.testing.assert_allclose(fast[cols].to_numpy(), ref[cols].to_numpy(), rtol=tol, equal_nan=True)
    np.testing.assert_allclose(fast7[cols].to_numpy(), ref7[cols].to_numpy(), rtol=tol, equal_nan=True)
    if name != "normal":  # the normal tail has no shape to hold: refit changes nothing
        assert not np.allclose(fast7[cols].to_numpy(), fast[cols].to_numpy(), equal_nan=True)


@pytest.mark.parametrize(("label", "name", "params", "rtol", "refit"), CASES, ids=IDS)
def test_bad_parameters_raise_config_error(label: str, name: str, params: dict, rtol: float, refit: int,
                                           r: pd.Series) -> None:
    bad: list[dict] = [{"side": "up"}, {"scaling": "linear"}, {"window": 0}]
    if "lam" in make_model(name).get_params():
        bad.append({"lam": 0.94})  # a bare float: per bar or per day?
    for b in bad:
        with pytest.raises(ConfigError):
            make_model(name, **{**params, **b}).fit(r)
        with pytest.raises(ConfigError):
            make_model(name, **{**params, **b}).fit_path(r)
    m = make_model(name, **params)
    for kw in ({"level": 1.5}, {"horizon": -1}, {"refit": 0}):
        with pytest.raises(ConfigError):
            m.fit_path(r, **kw)
    with pytest.raises(ConfigError):
        make_model(name, no_such_parameter=1)


def test_tail_model_composes_every_filter_with_every_tail(r: pd.Series) -> None:
    seen = set()
    for vol in VOL_FILTERS:
        for tail in TAIL_METHODS:
            kw = {"n_sims": 2000} if tail == "monte-carlo" else {}
            m = tail_model(vol=vol, tail=tail, **kw)
            assert isinstance(m, TailModel)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                f = m.fit(r).forecast(24, 0.99)
            assert 0 < f.var <= f.es < 1
            seen.add((type(m).__name__, str(getattr(m, "sigma", getattr(m, "filter", getattr(m, "dist", ""))))))
    assert len(seen) == len(VOL_FILTERS) * len(TAIL_METHODS) - 1  # hs has no filter parameter
    with pytest.raises(ConfigError):
        tail_model(vol="har", tail="evt")


def test_decay_carries_its_unit() -> None:
    assert Decay(per_day=0.94).for_bars(24.0) == pytest.approx(0.94)
    assert Decay(per_day=0.94).for_bars(1.0) == pytest.approx(0.94 ** (1 / 24))
    # 24 hourly steps of the per-bar decay give the daily one: the same memory in hours
    assert Decay(per_day=0.94).for_bars(1.0) ** 24 == pytest.approx(0.94, rel=1e-12)
    assert Decay(half_life_hours=48).for_bars(24.0) == pytest.approx(0.5 ** 0.5)
    assert Decay(per_bar=0.97).for_bars(1.0) == Decay(per_bar=0.97).for_bars(24.0) == 0.97
    for bad in ({}, {"per_day": 0.9, "per_bar": 0.9}, {"per_day": 1.0}, {"half_life_hours": 0}):
        with pytest.raises(ConfigError):
            Decay(**bad)
    with pytest.raises(ConfigError, match="ambiguous"):
        as_decay(0.94)


def test_fhs_same_decay_same_memory_on_daily_and_hourly_bars() -> None:
    """The per-day decay gives the same EWMA memory in hours whatever the bars: a constant-variance series gives
    the same volatility per sqrt(hour) on both spacings (the old per-bar lam gave 24x the memory on hourly bars)."""
    rng = np.random.default_rng(3)
    hourly = pd.Series(rng.normal(0, 0.01, 24 * 400), index=pd.date_range("2024-01-01", periods=24 * 400,
                                                                          freq="h", tz="UTC"))
    daily = hourly.resample("1D").sum()
    fh = make_model("fhs").fit(hourly).forecast(24, 0.99)
    fd = make_model("fhs").fit(daily).forecast(24, 0.99)
    assert fh.sigma == pytest.approx(fd.sigma, rel=0.15)


@pytest.mark.parametrize("name", ["hs", "fhs"])
def test_var_only_path_reads_the_same_order_statistics(name: str, r: pd.Series) -> None:
    m = make_model(name, window=150)
    full = m.fit_path(r, horizon=24, level=0.995, refit=3)
    var_only = m.fit_path(r, horizon=24, level=0.995, refit=3, es=False)
    for c in ("var_long", "var_short"):
        np.testing.assert_allclose(var_only[c].to_numpy(), full[c].to_numpy(), rtol=1e-15, equal_nan=True)
    assert var_only["es_long"].isna().all()


@pytest.mark.parametrize("params", [{}, {"scaling": "direct"}], ids=["all", "direct"])
@pytest.mark.parametrize("name", ["hs", "fhs"])
def test_var_only_path_of_a_growing_sample_reads_the_same_order_statistics(name: str, params: dict,
                                                                           r: pd.Series) -> None:
    """Without a window the VaR-only read takes another route (the tail candidates): the same numbers."""
    m = make_model(name, **params)
    for refit in (1, 3):
        full = m.fit_path(r, horizon=48, level=0.995, refit=refit, bar_hours=24.0)
        var_only = m.fit_path(r, horizon=48, level=0.995, refit=refit, bar_hours=24.0, es=False)
        for c in ("var_long", "var_short"):
            np.testing.assert_array_equal(var_only[c].to_numpy(), full[c].to_numpy())


@pytest.mark.parametrize(("label", "name", "params", "rtol", "refit"), FAST, ids=[c[0] for c in FAST])
def test_path_arrays_are_fit_path_columns_without_the_frame(label: str, name: str, params: dict, rtol: float,
                                                            refit: int, r: pd.Series) -> None:
    m = make_model(name, **{**params, "side": "long"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for es in (True, False):
            frame = m.fit_path(r, horizon=24, level=0.99, refit=3, es=es)
            arrays = m.path_arrays(r, horizon=24, level=0.99, refit=3, es=es)
            assert set(arrays) == {"var_long", "es_long", "var_short", "es_short"}
            for c, a in arrays.items():
                np.testing.assert_array_equal(a, frame[c].to_numpy(float))
            assert np.isnan(arrays["var_short"]).all()  # a side the model does not ask for
    with pytest.raises(ConfigError):
        m.path_arrays(r, level=1.5)
