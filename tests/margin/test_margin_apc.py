"""Anti-procyclicality: each tool on a constructed series, expected outputs worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margincal.errors import ConfigError, DataError
from margincal.margin.apc import (
    AntiProcyclicality,
    APCConfig,
    apply_apc,
    apply_apc_reference,
    lookback_floor,
    step,
    stressed_period_margin,
)


def test_defaults_are_identity():
    raw = np.array([0.1, 0.2, 0.05])
    np.testing.assert_allclose(apply_apc(raw, APCConfig()), raw)


def test_option_a_buffer_without_and_with_release():
    raw = [0.10, 0.10, 0.15, 0.20, 0.12, 0.10]
    # without release: raw * 1.25
    out = apply_apc(raw, APCConfig(buffer=0.25, release_in_stress=False))
    np.testing.assert_allclose(out, [0.125, 0.125, 0.1875, 0.25, 0.15, 0.125])
    # with release (stress = base up more than 10% on the step):
    # t2: 0.15 > 0.10 * 1.1 -> max(0.15, min(prev 0.125, 0.1875)) = 0.15  (buffer absorbs the rise)
    # t3: 0.20 > 0.15 * 1.1 -> max(0.20, min(0.15, 0.25)) = 0.20
    # t4: calm again (base falls): the buffer is rebuilt by 0.25 / 20 = 0.0125 per calm step:
    #     0.12 * 1.0125 = 0.1215 ; t5: 0.10 * 1.025 = 0.1025
    out = apply_apc(raw, APCConfig(buffer=0.25))
    np.testing.assert_allclose(out, [0.125, 0.125, 0.15, 0.20, 0.1215, 0.1025])
    # rebuild_steps=1 rebuilds at once on the first calm step: 0.12 * 1.25, 0.10 * 1.25
    out = apply_apc(raw, APCConfig(buffer=0.25, rebuild_steps=1))
    np.testing.assert_allclose(out, [0.125, 0.125, 0.15, 0.20, 0.15, 0.125])
    assert APCConfig(buffer=0.25).emir_options() == ["a"]


def test_option_b_stressed_weight():
    raw = [0.10, 0.15, 0.20, 0.30, 0.12]
    # base = max(raw, 0.75 * raw + 0.25 * 0.20):
    # 0.10 -> 0.075 + 0.05 = 0.125 ; 0.15 -> 0.1125 + 0.05 = 0.1625 ; 0.20 -> 0.20 ; 0.30 -> max(0.30, 0.275) ;
    # 0.12 -> 0.09 + 0.05 = 0.14
    out = apply_apc(raw, APCConfig(stressed_weight=0.25, stressed_margin=0.20))
    np.testing.assert_allclose(out, [0.125, 0.1625, 0.20, 0.30, 0.14])
    assert APCConfig(stressed_weight=0.25, stressed_margin=0.2).emir_options() == ["b"]


def test_option_c_floor_series():
    raw = pd.Series([0.10, 0.15, 0.20, 0.30, 0.12], index=pd.date_range("2024-01-01", periods=5, tz="UTC"))
    floor = pd.Series([0.11, 0.11, 0.25, 0.25, 0.25], index=raw.index)
    out = apply_apc(raw, APCConfig(), floor=floor)
    assert isinstance(out, pd.Series) and out.index.equals(raw.index)
    np.testing.assert_allclose(out.to_numpy(), [0.11, 0.15, 0.25, 0.30, 0.25])


def test_speed_limits():
    raw = [0.10, 0.20, 0.20, 0.05, 0.05, 0.05]
    # up at most +20%, down at most -10% per step:
    # 0.10 ; min(0.20, 0.12) = 0.12 ; min(0.20, 0.144) = 0.144 ; max(0.05, 0.1296) = 0.1296 ;
    # max(0.05, 0.11664) ; max(0.05, 0.104976)
    out = apply_apc(raw, APCConfig(max_up=0.2, max_down=0.1))
    np.testing.assert_allclose(out, [0.10, 0.12, 0.144, 0.1296, 0.11664, 0.104976])


def test_hysteresis():
    raw = [0.10, 0.097, 0.104, 0.12, 0.118, 0.09]
    # band 5%: t1 0.097 within 0.005 of 0.10 and 0.10 covers it -> hold 0.10
    # t2 0.104 within the band but 0.10 < 0.104 (would under-margin) -> 0.104
    # t3 0.12 (change 0.016 > 0.0052) ; t4 0.118 within 0.006 of 0.12 -> hold 0.12 ; t5 0.09
    out = apply_apc(raw, APCConfig(hysteresis=0.05))
    np.testing.assert_allclose(out, [0.10, 0.10, 0.104, 0.12, 0.12, 0.09])


def test_step_and_stateful_wrapper_match_series():
    cfg = APCConfig(buffer=0.25, stressed_weight=0.25, stressed_margin=0.2, max_down=0.05, hysteresis=0.01)
    raw = [0.1, 0.3, 0.25, 0.08, 0.08, 0.09]
    apc = AntiProcyclicality(cfg)
    live = [apc.step(x) for x in raw]
    np.testing.assert_allclose(live, apply_apc(raw, cfg))
    out, state = step(None, 0.1, cfg)
    assert out == pytest.approx(0.125 * 1.25) and state.base == pytest.approx(0.125)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.001, 1.0), min_size=1, max_size=40), st.floats(0, 0.5), st.floats(0, 1),
       st.one_of(st.none(), st.floats(0, 0.5)), st.one_of(st.none(), st.floats(0, 0.5)), st.floats(0, 0.1),
       st.booleans())
def test_fast_path_equals_reference(raw, buffer, w, up, down, band, release):
    cfg = APCConfig(buffer=buffer, release_in_stress=release, stressed_weight=w, max_up=up, max_down=down,
                    hysteresis=band)
    rng = np.random.default_rng(len(raw))
    stressed = rng.uniform(0, 0.5, len(raw))
    floor = rng.uniform(0, 0.2, len(raw))
    fast = apply_apc(np.array(raw), cfg, stressed=stressed, floor=floor)
    ref = apply_apc_reference(raw, cfg, stressed=stressed, floor=floor)
    np.testing.assert_allclose(fast, ref, rtol=1e-12)


def test_lookback_floor_and_stressed_period_by_hand():
    r = pd.Series([0.01, -0.02, 0.03, -0.04, 0.05], index=pd.date_range("2024-01-01", periods=5, tz="UTC"))
    out = lookback_floor(r, level=0.75, min_obs=4)
    assert np.isnan(out.iloc[:4]).all()
    # t = 4 uses r[:4]; both-side losses, 8 values; ES(0.75) = mean of the 2 largest:
    # long of -0.04: 1 - e^-0.04 = 0.0392106 ; short of +0.03: e^0.03 - 1 = 0.0304545
    expected = ((1 - math.exp(-0.04)) + math.expm1(0.03)) / 2
    assert out.iloc[4] == pytest.approx(expected)
    sp = stressed_period_margin(r, "2024-01-01", "2024-01-05", level=0.9)
    # 10 losses, tail 1 observation: the short loss of +0.05 = e^0.05 - 1 = 0.0512711
    assert sp == pytest.approx(math.expm1(0.05))


def test_validation():
    with pytest.raises(ConfigError, match="buffer"):
        APCConfig(buffer=-0.1)
    with pytest.raises(ConfigError, match="stressed_weight"):
        APCConfig(stressed_weight=1.5)
    with pytest.raises(DataError, match="raw margin"):
        apply_apc([0.1, float("nan")], APCConfig())
    with pytest.raises(DataError, match="align"):
        apply_apc([0.1, 0.2], APCConfig(), floor=[0.1, 0.2, 0.3])
