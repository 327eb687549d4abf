"""The horizon convention: hours -> bars of the fitted data."""

from __future__ import annotations

import pandas as pd
import pytest

from margincal.errors import ConfigError, DataError
from margincal.vol import horizon_to_bars, infer_bar_hours


def test_whole_numbers_of_bars():
    assert horizon_to_bars(24, 1) == 24
    assert horizon_to_bars(24, 24) == 1
    assert horizon_to_bars(72, 24) == 3
    assert horizon_to_bars(pd.Timedelta(days=2), 24) == 2
    assert horizon_to_bars(8, pd.Timedelta(hours=8)) == 1
    assert horizon_to_bars(0.25, 0.25) == 1  # 15-minute bars


def test_non_whole_horizons_refuse_unless_rounding_asked():
    with pytest.raises(ConfigError, match="not a whole number"):
        horizon_to_bars(36, 24)
    assert horizon_to_bars(36, 24, rounding="ceil") == 2
    assert horizon_to_bars(36, 24, rounding="floor") == 1
    assert horizon_to_bars(12, 24, rounding="floor") == 1  # never 0
    assert horizon_to_bars(40, 24, rounding="nearest") == 2
    with pytest.raises(ConfigError, match="rounding"):
        horizon_to_bars(36, 24, rounding="up")


def test_invalid_inputs():
    for bad in (0, -1, float("nan"), "x"):
        with pytest.raises(ConfigError):
            horizon_to_bars(bad, 1)


def test_infer_bar_hours_ignores_gaps():
    idx = pd.date_range("2024-01-01", periods=100, freq="h", tz="UTC").delete([10, 11, 12, 50])
    assert infer_bar_hours(idx) == 1.0
    assert infer_bar_hours(pd.date_range("2024-01-01", periods=5, freq="D")) == 24.0
    with pytest.raises(DataError):
        infer_bar_hours(pd.DatetimeIndex(["2024-01-01"]))
