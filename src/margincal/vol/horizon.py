"""The horizon convention shared by every variance forecaster in :mod:`margincal.vol`.

Rule
----
Every forecaster (``EWMAVolatility``, ``GarchVolatility``, ``HARVolatility``,
``MLVarianceForecaster``) exposes ``forecast_variance(horizon_bars)``:

* ``horizon_bars`` counts BARS OF THE DATA THE MODEL WAS FITTED ON (hourly bars
  for a model fitted on hourly returns, days for a model fitted on daily
  realized variance);
* the result is the variance of the SUM of the next ``horizon_bars`` log returns,
  i.e. the sum of the per-bar variance forecasts, in the fitted data's units
  (not annualised, not in percent).

The rest of margincal speaks in hours (``horizon_hours``) or
``pandas.Timedelta``. :func:`horizon_to_bars` is the one place that turns an
hour horizon into a bar count, and it refuses to guess: a horizon that is not a
whole number of bars raises unless a rounding rule is asked for explicitly.

Example: a 24 h margin period of risk on a model fitted to hourly returns is
``forecast_variance(horizon_to_bars(24, 1))`` = 24 bars; on a model fitted to
daily data it is ``horizon_to_bars(24, 24)`` = 1 bar.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd

from margincal.errors import ConfigError, DataError

_TOL = 1e-9


def _hours(value: float | pd.Timedelta, name: str) -> float:
    if isinstance(value, pd.Timedelta):
        h = value / pd.Timedelta(hours=1)
    else:
        try:
            h = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} is {value!r}; it must be a number of hours or a pandas.Timedelta") from None
    if not math.isfinite(h) or h <= 0:
        raise ConfigError(f"{name} is {value!r}; it must be a finite number of hours > 0")
    return float(h)


def horizon_to_bars(
    horizon_hours: float | pd.Timedelta,
    bar_hours: float | pd.Timedelta,
    *,
    rounding: Literal["exact", "ceil", "floor", "nearest"] = "exact",
) -> int:
    """Number of bars of length ``bar_hours`` in ``horizon_hours``.

    Both arguments are hours (float) or ``pandas.Timedelta``. With the default
    ``rounding="exact"`` a horizon that is not a whole number of bars (relative
    tolerance 1e-9) raises :class:`ConfigError`; ``"ceil"`` (conservative for
    margin: never shortens the horizon), ``"floor"`` and ``"nearest"`` round.
    The result is at least 1.

    >>> horizon_to_bars(24, 1)
    24
    >>> horizon_to_bars(pd.Timedelta(days=2), 24)
    2
    """
    h = _hours(horizon_hours, "horizon_hours")
    b = _hours(bar_hours, "bar_hours")
    ratio = h / b
    nearest = round(ratio)
    if rounding == "exact":
        if abs(ratio - nearest) > _TOL * max(1.0, ratio) or nearest < 1:
            raise ConfigError(
                f"horizon_hours={h:g} is not a whole number of {b:g}-hour bars (ratio {ratio:.6g}); "
                "pass rounding='ceil' (conservative), 'floor' or 'nearest' to round"
            )
        return int(nearest)
    if rounding == "ceil":
        n = math.ceil(ratio - _TOL * max(1.0, ratio))
    elif rounding == "floor":
        n = math.floor(ratio + _TOL * max(1.0, ratio))
    elif rounding == "nearest":
        n = int(nearest)
    else:
        raise ConfigError(f"rounding is {rounding!r}; it must be 'exact', 'ceil', 'floor' or 'nearest'")
    return max(1, int(n))


def infer_bar_hours(index: pd.DatetimeIndex) -> float:
    """Bar length in hours of a time index: the median spacing of its timestamps.

    The median ignores occasional gaps (exchange maintenance). Raises
    :class:`DataError` for fewer than two timestamps or a non-positive spacing.
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(f"index is a {type(index).__name__}; a DatetimeIndex is needed to infer the bar length")
    if len(index) < 2:
        raise DataError(f"index has {len(index)} timestamp(s); at least 2 are needed to infer the bar length")
    d = np.diff(index.as_unit("ns").asi8) / 3.6e12
    med = float(np.median(d))
    if med <= 0:
        raise DataError("index is not increasing; sort the bars by time first")
    return med


__all__ = ["horizon_to_bars", "infer_bar_hours"]
