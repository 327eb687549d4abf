"""Issue 15 anti-procyclicality: buffer released and rebuilt gradually, (b) inside the lookback,
10-year floor, bounded tail memory, presets. EMIR text: tests/reference/emir_rts_153_2013_art28.md."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margincal.errors import ConfigError, DataError
from margincal.margin.apc import (
    APC_PRESETS,
    EMIR_FLOOR_YEARS,
    EMIR_MIN_BUFFER,
    EMIR_MIN_STRESSED_WEIGHT,
    APCConfig,
    age_weights,
    apc_config,
    apply_apc,
    apply_apc_reference,
    bounded_memory_es,
    lookback_floor,
    stressed_lookback_path,
    stressed_weighted_es,
)
from margincal.risk.measures import expected_shortfall


def test_emir_constants_match_the_regulation_text():
    # Art. 28(1)(a) "at least equal to 25 %", (b) "at least 25 % weight", (c) "10 year historical lookback"
    assert (EMIR_MIN_BUFFER, EMIR_MIN_STRESSED_WEIGHT, EMIR_FLOOR_YEARS) == (0.25, 0.25, 10)


def test_issue_example_no_jump_after_release():
    out = apply_apc([0.10, 0.15, 0.16], APCConfig(buffer=0.25))
    # 0.10 * 1.25 ; stress step (+50%): buffer absorbs -> 0.15 ; +6.7% rise: margin rises like raw -> 0.16
    np.testing.assert_allclose(out, [0.125, 0.15, 0.16])


def test_gradual_rebuild_hand_values():
    # after the release, a flat base rebuilds the buffer by 0.25 / 4 per step
    out = apply_apc([0.10, 0.20, 0.20, 0.20, 0.20, 0.20, 0.20], APCConfig(buffer=0.25, rebuild_steps=4))
    np.testing.assert_allclose(out, [0.125, 0.20, 0.2125, 0.225, 0.2375, 0.25, 0.25])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0.01, 1.0), min_size=2, max_size=60), st.integers(1, 30))
def test_margin_never_rises_faster_than_base_plus_one_rebuild_step(raw, k):
    cfg = APCConfig(buffer=0.25, rebuild_steps=k)
    out = np.asarray(apply_apc(raw, cfg))
    r = np.asarray(raw)
    up = out[1:] / out[:-1]
    bound = np.maximum(r[1:] / r[:-1], 1.0 + 0.25 / k)
    assert np.all(up <= bound * (1 + 1e-12))
    assert np.all(out >= r - 1e-15) and np.all(out <= 1.25 * r + 1e-15)
    np.testing.assert_allclose(out, apply_apc_reference(raw, cfg))


def test_stressed_weighted_es_hand_case():
    # lookback losses 1..8 (weight 0.75/8 each), stressed losses 20, 30 (weight 0.125 each); level 0.8 -> tail 0.2
    # tail from the top: 30 (0.125) + 20 (0.075 of its 0.125) -> ES = (30*0.125 + 20*0.075)/0.2 = 26.25
    es = stressed_weighted_es(np.arange(1.0, 9.0), [20.0, 30.0], level=0.8, weight=0.25)
    assert es == pytest.approx(26.25)
    assert stressed_weighted_es([1.0, 2.0, 3.0], [], level=0.5) == pytest.approx(expected_shortfall([1.0, 2.0, 3.0], 0.5))
    with pytest.raises(ConfigError):
        stressed_weighted_es([1.0], [2.0], weight=1.5)


def test_stressed_lookback_path_is_causal():
    idx = pd.date_range("2020-01-01", periods=400, freq="D", tz="UTC")
    r = pd.Series(np.tile([0.01, -0.01], 200), index=idx)
    r.iloc[300:305] = -0.2
    p = stressed_lookback_path(r, ("2020-10-27", "2020-10-31"), lookback_obs=100, level=0.99, min_obs=250)
    assert np.isnan(p.iloc[249]) and np.isfinite(p.iloc[250])
    # before the stressed period happened the path is the plain lookback ES (small)
    assert p.iloc[299] == pytest.approx(expected_shortfall(np.concatenate(
        [-np.expm1(r.iloc[199:299]), np.expm1(r.iloc[199:299])]), 0.99))
    # afterwards the stressed returns weigh 25% even when they leave the 100-day lookback
    assert p.iloc[399] > 0.15
    with pytest.raises(DataError):
        stressed_lookback_path(r, ("2030-01-01", "2030-02-01"), lookback_obs=100)


def test_floor_uses_ten_years_of_bars():
    idx = pd.date_range("2000-01-01", periods=4000, freq="D", tz="UTC")
    r = pd.Series(np.random.default_rng(0).normal(0, 0.01, 4000), index=idx)
    r.iloc[10] = -0.5  # an old crash: out of the 10-year window (3653 days) after t = 3663
    f = lookback_floor(r, min_obs=250, step=50)
    n10 = round(10 * 365.25)  # 3653 daily bars
    x = r.to_numpy()

    def es(lo: int, hi: int) -> float:
        return expected_shortfall(np.concatenate([-np.expm1(x[lo:hi]), np.expm1(x[lo:hi])]), 0.99)

    assert f.iloc[3650] == pytest.approx(es(0, 3650))           # computed at t = 3650: everything so far
    assert f.iloc[3999] == pytest.approx(es(3950 - n10, 3950))  # last recomputation t = 3950: ten years only
    assert f.iloc[3650] > f.iloc[3999]
    g = lookback_floor(r.to_numpy(), min_obs=250, max_obs=100)
    assert np.isfinite(g[300])


def test_bounded_memory_weights_and_es():
    w = age_weights(4, half_life=1.0)
    np.testing.assert_allclose(w, np.array([1, 2, 4, 8]) / 15)
    x = np.r_[50.0, np.ones(999)]  # an old crash at the start of the sample
    assert bounded_memory_es(x, level=0.99) > 5
    assert bounded_memory_es(x, level=0.99, window=500) == pytest.approx(1.0)
    # half-life 100 over 1000 observations: the crash keeps weight w0 = 0.5**9.99.. / sum -> ES hand formula
    w0 = age_weights(1000, 100)[0]
    assert bounded_memory_es(x, level=0.99, half_life=100) == pytest.approx((50 * w0 + (0.01 - w0)) / 0.01)
    assert bounded_memory_es(x, level=0.99, half_life=100) < 1.05


def test_presets():
    assert apc_config().buffer == 0.25 and apc_config("off") == APCConfig()
    assert set(APC_PRESETS) >= {"off", "emir_a"}
    with pytest.raises(ConfigError):
        apc_config("nope")


# ---------------------------------------------------------------- rebuild period in days (issue 15 item 6)


def test_rebuild_days_is_a_duration_whatever_the_bar_size():
    # hand values: a released buffer rebuilds by 0.25 / (2 days * 24 / bar_hours) per calm step
    cfg = APCConfig(buffer=0.25, rebuild_days=2.0)
    assert cfg.for_bars(24.0).rebuild_steps == 2
    assert cfg.for_bars(1.0).rebuild_steps == 48
    assert cfg.for_bars(1.0 / 60.0).rebuild_steps == 2880
    daily = np.asarray(apply_apc([0.10, 0.20, 0.20, 0.20], cfg, bar_hours=24.0))
    np.testing.assert_allclose(daily, [0.125, 0.20, 0.225, 0.25])
    # the same two days on hourly bars: 48 calm steps, full buffer again after exactly 48 of them
    hourly = np.asarray(apply_apc([0.10, 0.20] + [0.20] * 60, cfg, bar_hours=1.0))
    np.testing.assert_allclose(hourly[2], 0.20 * (1 + 0.25 / 48))
    np.testing.assert_allclose(hourly[1 + 47], 0.20 * (1 + 0.25 * 47 / 48))
    np.testing.assert_allclose(hourly[1 + 48:], 0.25)
    np.testing.assert_allclose(hourly, apply_apc_reference([0.10, 0.20] + [0.20] * 60, cfg, bar_hours=1.0))


def test_rebuild_days_defaults_to_daily_steps_and_old_configs_are_unchanged():
    raw = [0.10, 0.20, 0.19, 0.18, 0.18, 0.30, 0.25, 0.25]
    old = APCConfig(buffer=0.25, rebuild_steps=3)
    np.testing.assert_allclose(apply_apc(raw, old, bar_hours=1.0), apply_apc(raw, old))  # steps stay steps
    np.testing.assert_allclose(apply_apc(raw, APCConfig(buffer=0.25, rebuild_days=3.0)), apply_apc(raw, old))
    assert apc_config("emir_a").rebuild_days == 20.0
    with pytest.raises(ConfigError, match="rebuild_days"):
        APCConfig(buffer=0.25, rebuild_days=0.0)
    with pytest.raises(ConfigError, match="bar_hours"):
        APCConfig(rebuild_days=1.0).for_bars(0.0)


def test_live_wrapper_counts_days_on_hourly_bars():
    from margincal.margin.apc import AntiProcyclicality

    cfg = APCConfig(buffer=0.25, rebuild_days=1.0)
    live = AntiProcyclicality(cfg, bar_hours=1.0)
    raw = [0.10, 0.20] + [0.20] * 30
    out = [live.step(x) for x in raw]
    np.testing.assert_allclose(out, apply_apc(raw, cfg, bar_hours=1.0))
    np.testing.assert_allclose(out[1 + 24], 0.25)
    assert out[1 + 23] < 0.25


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 2.0), min_size=2, max_size=40), st.sampled_from([
    APCConfig(buffer=0.25, rebuild_steps=5), APCConfig(buffer=0.25, release_in_stress=False),
    APCConfig(buffer=0.3, max_up=0.2, max_down=0.05, hysteresis=0.02, rebuild_steps=3),
    APCConfig(buffer=0.25, stressed_weight=0.3, stressed_margin=0.4, floor=0.05),
    apc_config("emir_a").for_bars(1.0)]), st.booleans())
def test_step_floats_is_step_on_three_floats(raw, cfg, drop_beta):
    """The engine's hot path (three floats, no state object) gives exactly step()'s numbers."""
    from margincal.margin.apc import APCState, step, step_floats

    out, state = step(None, raw[0], cfg)
    f_out, f_base = state.out, state.base
    f_beta = float("nan") if drop_beta else state.buffer_level
    if drop_beta:  # a state restored without its buffer level: derived from out / base by both
        state = APCState(state.out, state.base, None)
    for r in raw[1:]:
        out, state = step(state, r, cfg)
        f_out, f_base, f_beta = step_floats(f_out, f_base, f_beta, r, cfg)
        assert (f_out, f_base, f_beta) == (out, state.base, state.buffer_level)
    with pytest.raises(DataError):
        step_floats(f_out, f_base, f_beta, float("nan"), cfg)
