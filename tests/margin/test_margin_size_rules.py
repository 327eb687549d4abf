"""Closed-form size / OI rules against the venues' own worked examples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margincal.errors import ConfigError
from margincal.margin.size_rules import (
    linear_size_rate,
    oi_caps_from_liquidity,
    oi_scaled_imf,
    oi_scaled_mmf,
    sqrt_size_imf,
)


def test_deribit_linear_rule_worked_examples():
    per_btc = 0.005 / 100  # 0.5% per 100 BTC
    # Deribit's own examples (support.deribit.com, Linear-Perpetual / 11-January-2022):
    #   0 BTC:   2%
    #   25 BTC:  2% + 25 * 0.005% = 2.125%
    #   350 BTC: 2% + 350 * 0.005% = 3.75%  (350 * 3.75% = 13.125 BTC)
    assert linear_size_rate(0, 0.02, per_btc) == pytest.approx(0.02)
    assert linear_size_rate(25, 0.02, per_btc) == pytest.approx(0.02125)
    assert linear_size_rate(350, 0.02, per_btc) == pytest.approx(0.0375)
    assert 350 * linear_size_rate(350, 0.02, per_btc) == pytest.approx(13.125)
    # issue example: 300 BTC -> IM 2% + 1.5% = 3.5%, MM 1% + 1.5% = 2.5%
    assert linear_size_rate(300, 0.02, per_btc) == pytest.approx(0.035)
    assert linear_size_rate(300, 0.01, per_btc) == pytest.approx(0.025)
    # maintenance at 25 BTC: 1% + 25 * 0.005% = 1.125% (Deribit's example)
    assert linear_size_rate(25, 0.01, per_btc) == pytest.approx(0.01125)
    # vectorised, capped at 100%
    np.testing.assert_allclose(linear_size_rate(np.array([0, 100, 1e6]), 0.02, per_btc), [0.02, 0.025, 1.0])


def test_sqrt_size_imf_worked_example():
    # base 5% (20x), factor 0.002: size 100 -> 0.002 * 10 = 2% < 5% -> 5%; size 10,000 -> 0.002 * 100 = 20%
    assert sqrt_size_imf(0.05, 0.002, 100) == pytest.approx(0.05)
    assert sqrt_size_imf(0.05, 0.002, 10_000) == pytest.approx(0.20)
    # crossover at sqrt(size) = 0.05 / 0.002 = 25 -> size 625
    assert sqrt_size_imf(0.05, 0.002, 625) == pytest.approx(0.05)
    assert sqrt_size_imf(0.05, 0.002, -10_000) == pytest.approx(0.20)


def test_oi_scaled_imf_dydx_formula():
    # dYdX Small-Cap: IMF 10%, caps 20M / 50M USDC
    # OI 35M: scaling = (35 - 20) / (50 - 20) = 0.5; IMF = 0.10 + 0.5 * 0.90 = 0.55
    assert oi_scaled_imf(0.10, 35e6, 20e6, 50e6) == pytest.approx(0.55)
    assert oi_scaled_imf(0.10, 10e6, 20e6, 50e6) == pytest.approx(0.10)
    assert oi_scaled_imf(0.10, 20e6, 20e6, 50e6) == pytest.approx(0.10)
    assert oi_scaled_imf(0.10, 50e6, 20e6, 50e6) == pytest.approx(1.0)
    assert oi_scaled_imf(0.10, 80e6, 20e6, 50e6) == pytest.approx(1.0)
    # Large-Cap has caps 0/0: not OI-scaled
    assert oi_scaled_imf(0.02, 1e12, 0.0, 0.0) == pytest.approx(0.02)
    # MMF fixed (dYdX): 10% * 0.5 = 5% whatever the OI; scaled variant: 0.55 * 0.5 = 0.275
    assert oi_scaled_mmf(0.10, 0.5, 35e6, 20e6, 50e6) == pytest.approx(0.05)
    assert oi_scaled_mmf(0.10, 0.5, 35e6, 20e6, 50e6, scale_with_oi=True) == pytest.approx(0.275)
    with pytest.raises(ConfigError, match="upper_cap"):
        oi_scaled_imf(0.1, 1.0, 5.0, 5.0)


@settings(max_examples=80, deadline=None)
@given(st.floats(0.01, 0.5), st.floats(0, 1e8), st.floats(0, 1e8), st.floats(1e3, 1e8), st.floats(1e3, 1e8))
def test_oi_imf_monotone_and_continuous(base, oi, d, lo, width):
    hi = lo + width
    a = oi_scaled_imf(base, oi, lo, hi)
    b = oi_scaled_imf(base, oi + d, lo, hi)
    assert base - 1e-12 <= a <= b + 1e-12 <= 1.0 + 1e-12
    # continuity at the caps
    # just above the lower cap the IMF is within (1 - base) * 1e-9 of the base; just below the upper cap near 1
    assert oi_scaled_imf(base, lo + width * 1e-9, lo, hi) == pytest.approx(base, abs=2e-9)
    assert oi_scaled_imf(base, hi - width * 1e-9, lo, hi) == pytest.approx(1.0, abs=2e-9)


def test_oi_caps_from_liquidity():
    # ADV 40M: lower = 1 * 40M, upper = 2.5 * 40M = 100M (the dYdX Mid-Cap caps)
    assert oi_caps_from_liquidity(40e6) == (40e6, 100e6)
    assert oi_caps_from_liquidity(10e6, k_lower=0.5, k_upper=2.0) == (5e6, 20e6)
    with pytest.raises(ConfigError):
        oi_caps_from_liquidity(10e6, k_lower=2.0, k_upper=1.0)
