"""Monte Carlo index paths from the market state when the FTX window opened (Student-t, EWMA sigma).

Shared by the policy comparison (:mod:`margincal.stress.policies`) and the many-path cascade engine
(:mod:`margincal.stress.cascade.committee`); it sits below both so neither imports the other.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from margincal import datasets
from margincal.config import CalibrationSettings
from margincal.errors import DataError


@functools.lru_cache(maxsize=2)
def perp_bars(coin: str = "BTC") -> pd.DataFrame:
    """Bundled hourly USDT-perpetual bars (tz-aware UTC index)."""
    return datasets.load_hourly(coin, "perpetual")[["open", "high", "low", "close", "volume"]]


@dataclass(frozen=True)
class MonteCarloSetup:
    """Hourly log-return paths from the market state when the FTX window opened.

    Return of step ``k``: ``sigma_hourly x x_k`` with ``x_k`` unit-variance Student-t innovations
    (``df`` fitted by maximum likelihood to the EWMA-standardised hourly perp returns before
    ``as_of``), generated from standard normals ``z_k`` by the quantile transform
    ``x = t_df^-1(Phi(z)) sqrt((df - 2) / df)`` (so Gaussian importance sampling applies).
    ``sigma_hourly``: default the EWMA (0.94/day) hourly sigma at ``as_of`` times ``vol_multiplier``.
    """

    steps: int = 24
    as_of: str = "2022-11-07T00:00:00Z"
    vol_multiplier: float = 1.0
    sigma_hourly: float | None = None
    df: float | None = None


@dataclass(frozen=True)
class MCState:
    s0: float
    sigma: float
    df: float

    def innovations(self, z: np.ndarray) -> np.ndarray:
        from scipy import stats

        z = np.clip(np.asarray(z, dtype=float), -37.0, 37.0)
        t = np.where(z < 0, stats.t.ppf(stats.norm.cdf(z), self.df), stats.t.isf(stats.norm.sf(z), self.df))
        return t * math.sqrt((self.df - 2.0) / self.df)

    def paths(self, z: np.ndarray) -> np.ndarray:
        """Price paths (rows) with ``steps + 1`` points: ``s0`` then ``s0 exp(sigma cumsum(x))``.

        The cumulative log move is clipped to [log 0.05, log 20] (prices stay finite and positive).
        """
        x = self.innovations(np.atleast_2d(z))
        lp = np.clip(self.sigma * np.cumsum(x, axis=1), math.log(0.05), math.log(20.0))
        return np.column_stack([np.full(x.shape[0], self.s0), self.s0 * np.exp(lp)])


@functools.lru_cache(maxsize=8)
def _mc_state_cached(as_of: str, lam_day: float, mult: float, sigma: float | None, df: float | None) -> MCState:
    from scipy import stats

    from margincal.data.returns import log_returns
    from margincal.units import Decay
    from margincal.vol.ewma import ewma_variance

    bars = perp_bars("BTC")
    hist = bars[bars.index < pd.Timestamp(as_of)]
    if len(hist) < 500:
        raise DataError(f"Monte Carlo as_of {as_of}: fewer than 500 hourly bars before it")
    r = log_returns(hist).to_numpy()
    v = ewma_variance(r, Decay(per_day=lam_day).for_bars(1.0))
    sig = sigma if sigma is not None else math.sqrt(v[-1]) * mult
    if df is None:
        zres = r[30:] / np.sqrt(v[30:-1])
        df = float(stats.t.fit(zres[np.isfinite(zres)], floc=0.0)[0])
    return MCState(float(hist["close"].iloc[-1]), float(sig), max(float(df), 2.5))


def mc_state(mc: MonteCarloSetup, settings: CalibrationSettings) -> MCState:
    """Start price, hourly sigma and Student-t df of the Monte Carlo paths (see MonteCarloSetup)."""
    return _mc_state_cached(mc.as_of, settings.ewma_lambda, mc.vol_multiplier, mc.sigma_hourly, mc.df)


