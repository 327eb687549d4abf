"""Small reader of the bundled daily coin files (data/<coin>_daily.csv), for validation and tests.

Kept private to the margin package: the data layer owns ingestion; this only
reads the CSVs documented in data/PROVENANCE.md (columns date, open, high,
low, close, volume, volume_quote, trades; UTC days).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from margincal.config import sample_data_dir
from margincal.errors import DataError

BUNDLED_DAILY = ("btc", "eth", "sol", "xrp", "doge", "bnb", "ada", "trx", "bch", "ltc")


@lru_cache(maxsize=16)
def _read(coin: str) -> pd.DataFrame:
    path = sample_data_dir() / f"{coin}_daily.csv"
    if not path.exists():
        raise DataError(f"bundled file {path.name} not found; coins are {', '.join(BUNDLED_DAILY)}")
    df = pd.read_csv(path)
    if "date" not in df.columns or "close" not in df.columns:
        raise DataError(f"{path.name}: needs columns 'date' and 'close'")
    df["date"] = pd.to_datetime(df["date"], utc=True)
    # nanosecond unit: pandas 3 parses to microseconds, and some readers assume ns ticks
    df = df.set_index("date").sort_index()
    df.index = df.index.as_unit("ns")
    if (df["close"] <= 0).any():
        raise DataError(f"{path.name}: close must be > 0")
    return df


def daily_bars(coin: str) -> pd.DataFrame:
    """UTC-indexed daily OHLCV of a bundled coin (a copy)."""
    return _read(coin.lower()).copy()


def daily_log_returns(coin: str) -> pd.Series:
    """Daily close-to-close log returns (dated by the later close), named ``<COIN>USDT``.

    The 2026 gaps of the source files (PROVENANCE.md) make a few returns span
    two or more days; they are kept (a real margin period sees them too).
    """
    c = _read(coin.lower())["close"]
    r = np.log(c).diff().dropna()
    r.name = f"{coin.upper()}USDT"
    return r
