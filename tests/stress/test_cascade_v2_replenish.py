"""Measured replenishment speeds (committee.measured_replenishment): estimators on synthetic data with a
known decay, and the measurement on the bundled 5-minute bars (properties, one figure recomputed
independently)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from margincal import datasets
from margincal.errors import ConfigError
from margincal.stress.cascade import Agents
from margincal.stress.cascade.committee import (
    abdi_ranaldo_spread,
    decay_half_life,
    excursion_starts,
    measured_replenishment,
    recovery_half_life,
)


def _ar1_with_jumps(half_life_min: float, n: int = 40_000, seed: int = 3) -> np.ndarray:
    """AR(1) on 5-minute bars with the given half-life, small noise and rare large jumps (the excursions)."""
    rng = np.random.default_rng(seed)
    phi = 2.0 ** (-5.0 / half_life_min)
    e = 0.1 * rng.standard_normal(n) + np.where(rng.random(n) < 0.01, 5.0 * rng.choice([-1.0, 1.0], n), 0.0)
    x = np.zeros(n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x


@pytest.mark.parametrize("half_life", [3.0, 10.0, 30.0])
def test_decay_half_life_recovers_a_known_decay(half_life):
    x = _ar1_with_jumps(half_life)
    st = excursion_starts(x, 2.0, 6)
    r = decay_half_life(x, st, horizon=6, n_boot=500, seed=1)
    assert r["episodes"] > 100
    assert r["half_life_min"] == pytest.approx(half_life, rel=0.15)
    lo, hi = r["band_min"]
    assert lo <= half_life <= hi and lo <= r["half_life_min"] <= hi


def test_excursion_starts_do_not_overlap_and_edge_cases():
    x = np.array([0, 3, 3, 3, 0, 0, 0, 3, 0, 0, 0, 0.0])
    assert excursion_starts(x, 1.0, 3).tolist() == [1, 7]
    assert excursion_starts(np.array([np.nan, 5.0, 0, 0]), 1.0, 2).tolist() == [1]
    # a sign flip every bar: closed within a bar, half-life 0; a unit root: infinite
    flip = np.array([1.0, -0.5, 0.25, -0.125, 0.0625, 0.0, 0.0])
    assert decay_half_life(flip, np.array([0]), horizon=4, n_boot=10)["half_life_min"] == 0.0
    assert decay_half_life(np.ones(8), np.array([0]), horizon=4, n_boot=10)["half_life_min"] == math.inf
    with pytest.raises(ConfigError):
        decay_half_life(flip, np.array([], dtype=int))


def test_recovery_half_life_on_a_known_exponential():
    t = pd.date_range("2022-11-07", periods=3 * 288, freq="5min", tz="UTC")
    pre, peak, tau = 5e-4, 2e-2, 40.0  # log excess decays with a 40-minute half-life
    minutes = (t - pd.Timestamp("2022-11-08 12:00", tz="UTC")).total_seconds().to_numpy() / 60.0
    logx = np.where(minutes < 0, 0.0, math.log(peak / pre) * 2.0 ** (-minutes / tau))
    r = recovery_half_life(pd.Series(pre * np.exp(logx), index=t), ("2022-11-08",))
    assert r["pre"] == pytest.approx(pre) and r["peak"] == pytest.approx(peak)
    assert r["peak_at"].startswith("2022-11-08 12:00")
    assert r["half_life_min"] == pytest.approx(tau, abs=5.0)  # on the 5-minute grid


def test_abdi_ranaldo_spread_sees_a_bid_ask_bounce():
    """Trades alternate at mid +/- s/2 on a slow random walk: the estimate is of the order of s, and 0 without bounce."""
    rng = np.random.default_rng(0)
    n, k, s = 2_000, 50, 0.002
    mid = 100.0 * np.exp(np.cumsum(1e-5 * rng.standard_normal(n * k)))
    px = mid * (1.0 + np.where(rng.random(n * k) < 0.5, s / 2, -s / 2))
    b = px.reshape(n, k)
    bars = pd.DataFrame({"open": b[:, 0], "high": b.max(1), "low": b.min(1), "close": b[:, -1]})
    est = float(abdi_ranaldo_spread(bars, 12).median())
    assert 0.3 * s < est < 3.0 * s
    m = mid.reshape(n, k)
    calm = pd.DataFrame({"open": m[:, 0], "high": m.max(1), "low": m.min(1), "close": m[:, -1]})
    assert float(abdi_ranaldo_spread(calm, 12).median()) < 0.2 * est


@pytest.fixture(scope="module")
def measured():
    return {e: measured_replenishment(e, n_boot=500) for e in ("ftx", "2025-10-10")}


@pytest.mark.parametrize("event", ["ftx", "2025-10-10"])
def test_measurement_on_the_bundled_bars(measured, event):
    r = measured[event]
    for series in ("basis_dev", "low_gap_dev"):
        for kind in ("crash", "calm"):
            x = r["dislocation_decay"][series][kind]
            assert x["episodes"] >= 5
            lo, hi = x["band_min"]
            assert 0 <= lo <= x["half_life_min"] <= hi and math.isfinite(hi)
            assert 0 < x["phi"] < 1
    sr = r["spread_recovery"]
    assert len(sr["estimates"]) == 8
    assert all(e["peak"] > 10 * e["pre"] > 0 for e in sr["estimates"])  # the crash widens the spread > 10x
    assert 0 < sr["band_min"][0] <= sr["half_life_min"] <= sr["band_min"][1] < 24 * 60
    for name in ("arb_per_minute", "rho_per_hour"):
        p = r[name]
        assert 0 < p["band"][0] <= p["value"] <= p["band"][1] and math.isfinite(p["band"][1])


def test_defaults_are_the_measured_speeds(measured):
    """The defaults are the two events' central measurements combined (geometric mean, rho rounded to 0.1 per
    hour, arb to 0.01 per minute; docs/stress_testing.md), between the two events' values, and below the values
    assumed until then (rho 4 per hour, arb 0.5 x D0 per minute)."""
    ag = Agents()
    for name, nd in (("rho_per_hour", 1), ("arb_per_minute", 2)):
        v = [m[name]["value"] for m in measured.values()]
        assert getattr(ag, name) == round(math.sqrt(v[0] * v[1]), nd)
        assert min(v) < getattr(ag, name) < max(v), name
    assert (ag.rho_per_hour, ag.arb_per_minute) == (1.1, 0.1)
    for m in measured.values():
        assert m["rho_per_hour"]["value"] < 4.0 and m["arb_per_minute"]["value"] < 0.5


def test_btc_spot_spread_recovery_recomputed_independently(measured):
    """FTX, BTC spot, 3-pair window: the same definition written with plain numpy on the raw bars."""
    b = datasets.load_bars_5m("BTC", "spot", "2022-11")
    hi, lo, c = (np.log(b[k].to_numpy()) for k in ("high", "low", "close"))
    eta = (hi + lo) / 2
    pair = np.maximum(4.0 * (c[:-1] - eta[:-1]) * (c[:-1] - eta[1:]), 0.0)  # pair (t-1, t), dated t
    spread = np.full(c.size, np.nan)
    spread[3:] = np.sqrt(np.convolve(pair, np.ones(3) / 3, mode="valid"))
    t = b.index
    pre = np.median(spread[(t >= "2022-11-07") & (t < "2022-11-08")])
    crash = np.flatnonzero((t >= "2022-11-08") & (t < "2022-11-10"))
    ip = crash[np.nanargmax(spread[crash])]
    ih = ip + np.flatnonzero(spread[ip:] <= math.sqrt(pre * spread[ip]))[0]
    got = next(e for e in measured["ftx"]["spread_recovery"]["estimates"]
               if e["coin"] == "BTC" and e["market"] == "spot" and e["window_bars"] == 3)
    assert got["half_life_min"] == 5.0 * (ih - ip)
    assert got["pre"] == pytest.approx(pre, rel=1e-9)
