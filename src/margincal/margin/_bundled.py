"""Bundled daily coin files for validation and tests: thin names over :mod:`margincal.datasets`.

Kept so existing imports work; new code calls :mod:`margincal.datasets` directly.
"""

from __future__ import annotations

import pandas as pd

from margincal import datasets

BUNDLED_DAILY = tuple(s.lower() for s in datasets.DAILY_SYMBOLS)


def daily_bars(coin: str) -> pd.DataFrame:
    """UTC-indexed daily OHLCV of a bundled coin (a copy)."""
    return datasets.load_daily(coin)


def daily_log_returns(coin: str) -> pd.Series:
    """Daily close-to-close log returns (dated by the later close), named ``<COIN>USDT``."""
    return datasets.load_daily_returns(coin)
