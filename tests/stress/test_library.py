"""Scenario library: moves cut from the bundled data, worst non-overlapping windows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margincal.errors import ConfigError
from margincal.stress.library import (
    NAMED_EVENTS,
    daily_closes,
    get_scenarios,
    historical_scenarios,
    worst_windows,
)


def _by_name():
    return {s.name: s for s in historical_scenarios(3)}


def test_named_events_match_closes_documented_in_provenance():
    # src/margincal/datasets/PROVENANCE.md lists BTC closes 2020-03-12 4,800.00 and 2022-11-09 15,922.81, ETH 2022-11-09 1,102.73
    s = _by_name()
    btc = daily_closes("BTC")["close"]
    assert btc.loc["2020-03-11"] * math.exp(s["covid-2020-03-12"].spot["BTC"]) == pytest.approx(4_800.00)
    # FTX window 11-08..11-10: from the 11-07 close to the 11-10 close
    ftx = s["ftx-2022-11-08-10"]
    assert btc.loc["2022-11-07"] * math.exp(ftx.spot["BTC"]) == pytest.approx(btc.loc["2022-11-10"])
    assert ftx.horizon_hours == 72.0
    # the FTX window contains 2022-11-09, whose close is documented: the low must be at or below it
    assert btc.loc["2022-11-07"] * math.exp(ftx.extremes["BTC"][0]) <= 15_922.81
    assert len([e for e in NAMED_EVENTS]) == 7
    # SOL was not listed in March 2020: proxied by beta
    assert "SOL" in s["covid-2020-03-12"].proxied


def _greedy_bruteforce(x, h, n, direction):
    moves = [(t, x[t] - x[t - h]) for t in range(h, len(x)) if np.isfinite(x[t]) and np.isfinite(x[t - h])]
    moves.sort(key=lambda p: p[1] if direction == "down" else -p[1])
    chosen = []
    for t, m in moves:
        if all(abs(t - u) >= h for u, _ in chosen):  # windows t-h+1..t and u-h+1..u share no bar
            chosen.append((t, m))
        if len(chosen) == n:
            break
    return chosen


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), h=st.integers(1, 6), n=st.integers(1, 5),
       direction=st.sampled_from(["down", "up"]))
def test_worst_windows_equal_bruteforce_greedy(seed, h, n, direction):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.standard_normal(80))
    x[rng.integers(0, 80, 3)] = np.nan  # gaps invalidate windows
    got = worst_windows(x, h, n, direction)
    exp = _greedy_bruteforce(x, h, n, direction)
    assert [t for t, _ in got] == [t for t, _ in exp]
    assert [m for _, m in got] == pytest.approx([m for _, m in exp])


def test_worst_windows_in_library_are_non_overlapping_and_sorted():
    s = historical_scenarios(3)
    for label in ("1h", "4h", "1d", "3d"):
        for word in ("fall", "rise"):
            group = [x for x in s if x.name.startswith(f"worst-{label}-{word}-")]
            assert len(group) == 3
            spans = sorted((pd.Timestamp(g.start), pd.Timestamp(g.end)) for g in group)
            for (_a0, a1), (b0, _b1) in zip(spans, spans[1:], strict=False):
                assert a1 <= b0
            moves = [g.spot["BTC"] for g in group]
            assert moves == sorted(moves, reverse=(word == "rise"))
    # the worst BTC 1-day fall on Binance daily data is 2020-03-12 (-50% log)
    one_d = next(x for x in s if x.name == "worst-1d-fall-1")
    assert one_d.start.startswith("2020-03-12") and one_d.spot["BTC"] < -0.45


def test_get_scenarios():
    assert len(get_scenarios("all")) == (len(get_scenarios("historical")) + len(get_scenarios("hypothetical"))
                                         + len(get_scenarios("depeg")))
    two = get_scenarios("covid-2020-03-12, spot-down-30")
    assert [s.name for s in two] == ["covid-2020-03-12", "spot-down-30"]
    with pytest.raises(ConfigError, match="not in the library"):
        get_scenarios("nope")
