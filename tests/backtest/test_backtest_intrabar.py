"""Adverse intrabar excursion over a close-out horizon (backtest/intrabar.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margincal.backtest.intrabar import (
    adverse_excursion,
    adverse_excursion_reference,
    breach_rate,
    close_to_close_loss,
    horizon_in_bars,
)
from margincal.errors import ConfigError, DataError


def _bars(close, high, low):
    idx = pd.date_range("2024-01-01", periods=len(close), freq="h", tz="UTC")
    return pd.DataFrame({"open": close, "high": high, "low": low, "close": close}, index=idx)


def test_hand_example():
    b = _bars([100.0, 101.0, 99.0, 100.0], [100.5, 103.0, 101.0, 100.5], [99.5, 98.0, 97.0, 99.0])
    one = adverse_excursion(b, 1)
    # t0: next bar low 98 -> long 2%; high 103 -> short 3%
    assert one["long"].iloc[0] == pytest.approx(0.02)
    assert one["short"].iloc[0] == pytest.approx(0.03)
    assert one["both"].iloc[0] == pytest.approx(0.03)
    two = adverse_excursion(b, 2)
    # t0 over bars 1-2: min low 97 -> 3%; max high 103 -> 3%
    assert two["long"].iloc[0] == pytest.approx(0.03)
    # t1 (close 101) over bars 2-3: min low 97 -> 1 - 97/101; max high 101 -> 0
    assert two["long"].iloc[1] == pytest.approx(1 - 97 / 101)
    assert two["short"].iloc[1] == 0.0
    assert two.iloc[2:].isna().all().all()
    cc = close_to_close_loss(b, 1)
    assert cc["long"].iloc[1] == pytest.approx(1 - 99 / 101) and cc["short"].iloc[1] == 0.0
    # the excursion is never below the close-to-close loss
    assert (one["both"].dropna() >= cc["both"].dropna() - 1e-15).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 6), st.integers(2, 60))
def test_vectorised_equals_loop(seed, h, n):
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    hi = c * (1 + np.abs(rng.normal(0, 0.005, n)))
    lo = c * (1 - np.abs(rng.normal(0, 0.005, n)))
    b = _bars(c, hi, lo)
    pd.testing.assert_frame_equal(adverse_excursion(b, h), adverse_excursion_reference(b, h))


def test_helpers_and_errors():
    assert horizon_in_bars(2 / 60, 1.0) == 1
    assert horizon_in_bars(24.0, 1.0) == 24
    assert horizon_in_bars(25.0, 24.0) == 2
    assert breach_rate(np.array([0.01, 0.03, np.nan]), 0.02) == (1, 2, 0.5)
    with pytest.raises(ConfigError):
        adverse_excursion(_bars([1.0, 2.0], [1.0, 2.0], [1.0, 2.0]), 0)
    with pytest.raises(DataError, match="high"):
        adverse_excursion(_bars([1.0, 2.0], [1.0, 1.0], [1.0, 2.0]), 1)
