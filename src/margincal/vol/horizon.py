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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

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


# ------------------------------------------------------------------ scaling measured from data
#
# Sub-bar horizons (a 2-minute close-out on hourly bars) cannot be observed in
# hourly data, so the rule "scale by sqrt(h)" is an assumption. These
# functions measure the exponent from bars of several intervals instead.


@dataclass(frozen=True)
class ScalingFit:
    """Measured horizon scaling: ``sd(h) ~ h ** exponent`` over ``interval_hours``.

    ``sd`` is the root mean square (``method="variance"``) or the mean
    absolute value times sqrt(pi/2) (``method="mad"``, robust to a few extreme
    bars) of the non-overlapping log returns at each interval;
    ``variance_ratio[k] = sd_k^2 / (sd_0^2 * h_k / h_0)`` (1 under a random walk).
    """

    exponent: float
    stderr: float
    interval_hours: tuple[float, ...]
    sd: tuple[float, ...]
    n_obs: tuple[int, ...]
    variance_ratio: tuple[float, ...]
    method: str

    def scaler(self, reference_hours: float | None = None) -> HorizonScaler:
        """A :class:`HorizonScaler` using this exponent (reference: the longest fitted interval by default)."""
        ref = max(self.interval_hours) if reference_hours is None else reference_hours
        return HorizonScaler(exponent=self.exponent, reference_hours=float(ref))


@dataclass(frozen=True)
class HorizonScaler:
    """Scale a loss or volatility measured at ``reference_hours`` to other horizons with ``(h / ref) ** exponent``."""

    exponent: float
    reference_hours: float

    def __post_init__(self) -> None:
        if not (0 < self.exponent < 1.5 and math.isfinite(self.exponent)):
            raise ConfigError(f"scaling exponent is {self.exponent}; it must be in (0, 1.5) (0.5 = random walk)")
        _hours(self.reference_hours, "reference_hours")

    def factor(self, hours: ArrayLike) -> np.ndarray | float:
        h = np.asarray(hours, dtype=float)
        if np.any(~np.isfinite(h)) or np.any(h < 0):
            raise ConfigError("horizons must be finite and >= 0 hours")
        out = (h / self.reference_hours) ** self.exponent
        return float(out) if np.ndim(out) == 0 else out

    def below(self, loss_at_horizon: Callable[[float], float]) -> Callable[[float], float]:
        """Wrap ``loss(hours)``: horizons below ``reference_hours`` are scaled down from ``loss(reference)``.

        Horizons at or above the reference go to ``loss_at_horizon`` itself (a
        model fitted on bars of ``reference_hours`` handles whole-bar horizons).
        """
        ref = self.reference_hours

        def loss(hours: float) -> float:
            h = float(hours)
            if h >= ref:
                return float(loss_at_horizon(h))
            return float(loss_at_horizon(ref)) * float(self.factor(h))

        return loss


def scaling_exponent(close: pd.Series, intervals: Sequence[str | pd.Timedelta], *,
                     method: Literal["variance", "mad"] = "variance", min_obs: int = 30) -> ScalingFit:
    """Fit ``log sd(h) = a + H log h`` across ``intervals`` from one close-price series.

    ``close`` has a DatetimeIndex (bars of any size up to the shortest
    interval). For each interval the last close in each UTC-aligned bin is
    taken and log-differenced; bins next to a missing bin give NaN and are
    dropped (a return across a gap would be longer than the interval).
    ``H`` is the OLS slope (``stderr`` its standard error); 0.5 is the
    random-walk (square-root) rule, below 0.5 means mean reversion at short
    horizons (bid-ask bounce), above it momentum.
    """
    if not isinstance(close, pd.Series) or not isinstance(close.index, pd.DatetimeIndex):
        raise DataError("scaling_exponent needs a close-price Series with a DatetimeIndex")
    c = close.astype(float)
    if (c <= 0).any() or not np.all(np.isfinite(c.to_numpy())):
        raise DataError("close prices must be finite and > 0")
    if len(intervals) < 2:
        raise ConfigError("need at least two intervals to fit a scaling exponent")
    lp = np.log(c.sort_index())
    hours, sds, ns = [], [], []
    for iv in intervals:
        td = pd.Timedelta(iv)
        r = lp.resample(td, label="left", closed="left").last().diff().dropna()
        if r.size < min_obs:
            raise DataError(f"interval {iv}: {r.size} returns; need at least {min_obs}")
        x = r.to_numpy()
        sd = float(np.sqrt(np.mean(x**2))) if method == "variance" else float(np.mean(np.abs(x)) * math.sqrt(math.pi / 2))
        if method not in ("variance", "mad"):
            raise ConfigError(f"method is {method!r}; use 'variance' or 'mad'")
        hours.append(td / pd.Timedelta(hours=1))
        sds.append(sd)
        ns.append(int(r.size))
    lx, ly = np.log(hours), np.log(sds)
    slope, intercept = np.polyfit(lx, ly, 1)
    resid = ly - (intercept + slope * lx)
    k = len(hours)
    se = float(np.sqrt(np.sum(resid**2) / (k - 2) / np.sum((lx - lx.mean()) ** 2))) if k > 2 else float("nan")
    vr = tuple(float((s / sds[0]) ** 2 / (h / hours[0])) for s, h in zip(sds, hours, strict=True))
    return ScalingFit(exponent=float(slope), stderr=se, interval_hours=tuple(hours), sd=tuple(sds),
                      n_obs=tuple(ns), variance_ratio=vr, method=method)


__all__ = ["HorizonScaler", "ScalingFit", "horizon_to_bars", "infer_bar_hours", "scaling_exponent"]
