"""The real market data bundled with margincal, loaded in one place (like ``arch.data``).

Every bundled file lives in this package folder beside ``PROVENANCE.md`` (source
repository, commit and licence of each file), so an installed wheel carries
them. No other module reads these files itself: they call the loaders here.

>>> from margincal import datasets
>>> datasets.load_daily("BTC").loc["2020-03-12", "close"]        # doctest: +SKIP
4800.0
>>> [f.file for f in datasets.files(kind="funding")]              # doctest: +SKIP
['btcusdt_funding.csv', 'ethusdt_funding.csv']

All times are UTC. Loaders return copies (callers may modify them); the parsed
files are cached per process. ``MARGINCAL_DATA`` points the loaders at another
folder holding the same file names (for a trimmed or refreshed copy).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from margincal.errors import ConfigError, DataError

DATA_ENV = "MARGINCAL_DATA"
DAILY_SYMBOLS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "BNB", "ADA", "TRX", "BCH", "LTC")
HOURLY_SPOT_SYMBOLS = ("BTC", "ETH", "SOL")
PERPETUAL_SYMBOLS = ("BTC", "ETH")


@dataclass(frozen=True)
class DatasetFile:
    """One bundled file and where it comes from (details in PROVENANCE.md, section ``section``)."""

    file: str
    kind: str  # daily, hourly, intraday, funding, open_interest, options
    symbol: str  # coin, e.g. BTC
    instrument: str  # margincal instrument name the file describes
    market: str  # spot, perpetual, futures (aggregate), options
    timeframe: str | None
    source: str
    licence: str
    section: int
    note: str = ""


_CDD = "mschindler779/CausCrypto@1bf6341 (CryptoDataDownload, from Binance)"
_FT = "Roshan7869/algotrading@4e790fe (freqtrade download of Binance klines)"
_DAILY_FILES = tuple(
    DatasetFile(f"{c.lower()}_daily.csv", "daily", c, f"{c}-USDT", "spot", "1d",
                "min-seo-kimm/crypto-vol-modeling@c2edeb1 (CryptoDataDownload, from Binance)" if c == "LTC" else _CDD,
                "no LICENSE file" if c == "LTC" else "The Unlicense", 1, "Binance spot daily OHLCV")
    for c in DAILY_SYMBOLS
)
FILES: tuple[DatasetFile, ...] = (
    *_DAILY_FILES,
    *(DatasetFile(f"{c.lower()}usdt_1h.csv.gz", "hourly", c, f"{c}-USDT", "spot", "1h",
                  _FT + (" and NIC-project-team/TradingStrategyGA@996bc69 before 2018" if c == "BTC" else ""),
                  "GPL-3.0 (repository code; data is Binance public klines)", 2, "Binance spot hourly OHLCV")
      for c in HOURLY_SPOT_SYMBOLS),
    *(DatasetFile(f"{c.lower()}usdt_perp_1h.csv.gz", "hourly", c, f"{c}-PERP", "perpetual", "1h", _FT,
                  "GPL-3.0 (repository code; data is Binance public klines)", 3,
                  "Binance USD-M perpetual hourly OHLCV") for c in PERPETUAL_SYMBOLS),
    *(DatasetFile(f"{c.lower()}usdt_funding.csv", "funding", c, f"{c}-PERP", "perpetual", None, _FT,
                  "GPL-3.0 (repository code; data is Binance public funding history)", 4,
                  "Binance USD-M 8-hourly funding rates") for c in PERPETUAL_SYMBOLS),
    DatasetFile("btc_open_interest_daily.csv", "open_interest", "BTC", "BTC-PERP", "futures", "1d",
                "heun630/Onchain-Data-Eval-Algorithm", "see PROVENANCE.md", 5,
                "aggregate BTC futures open interest in USD, source not stated: indicative only"),
    DatasetFile("deribit_btc_options_snapshot_2024-05.csv", "options", "BTC", "BTC", "options", None,
                "sol-dnn/HestonCryptoPricing@b0d978e (Deribit API)", "see PROVENANCE.md", 6,
                "Deribit BTC option chain ~2024-05-24"),
    DatasetFile("deribit_eth_options_snapshot_2024-05.csv", "options", "ETH", "ETH", "options", None,
                "sol-dnn/HestonCryptoPricing@b0d978e (Deribit API)", "see PROVENANCE.md", 6,
                "Deribit ETH option chain ~2024-05-24"),
    DatasetFile("deribit_eth_options_snapshot_2024-01-08.csv", "options", "ETH", "ETH", "options", None,
                "jiaxiang-cheng/definer (Deribit API)", "see PROVENANCE.md", 6,
                "Deribit ETH option chain 2024-01-08 11:19 UTC"),
)
INTRADAY = {("BTC", "1m"): "btcusdt_1m_2024-08.csv.gz", ("ETH", "1m"): "ethusdt_1m_2024-08.csv.gz",
            ("BTC", "5m"): "btcusdt_perp_5m_2025-10.csv.gz", ("ETH", "5m"): "ethusdt_perp_5m_2025-10.csv.gz"}
FILES = FILES + (
    *(DatasetFile(INTRADAY[(c, "1m")], "intraday", c, f"{c}-USDT", "spot", "1m",
                  "mintanam/ftrade@ee12b33 (freqtrade download of Binance klines)", "no LICENSE file", 7,
                  "Binance spot 1-minute bars 2024-07-26..2024-08-25") for c in ("BTC", "ETH")),
    *(DatasetFile(INTRADAY[(c, "5m")], "intraday", c, f"{c}-PERP", "perpetual", "5m",
                  "Harthor/marketlab (freqtrade download of Binance USD-M klines)", "see PROVENANCE.md", 8,
                  "Binance USD-M perpetual 5-minute bars, October 2025") for c in ("BTC", "ETH")),
)
#: 5-minute bars by (coin, market, period): spot and USD-M perpetual over the FTX fortnight (2022-11-01..20)
#: and October 2025 (2025-10-10 crash); the October perp files are the ``INTRADAY`` 5m ones.
BARS_5M = {(c, m, per): (f"{c.lower()}usdt_perp_5m_{per}.csv.gz" if m == "perpetual" else f"{c.lower()}usdt_5m_{per}.csv.gz")
           for c in ("BTC", "ETH") for m in ("spot", "perpetual") for per in ("2022-11", "2025-10")}
FILES = FILES + (
    *(DatasetFile(BARS_5M[(c, m, per)], "intraday", c, f"{c}-PERP" if m == "perpetual" else f"{c}-USDT", m, "5m",
                  "see PROVENANCE.md (freqtrade downloads of Binance klines)", "see PROVENANCE.md", 9,
                  f"Binance {'USD-M perpetual' if m == 'perpetual' else 'spot'} 5-minute bars, "
                  + ("2022-11-01..2022-11-20 (FTX)" if per == "2022-11" else "October 2025"))
      for c in ("BTC", "ETH") for m in ("spot", "perpetual") for per in ("2022-11", "2025-10")
      if BARS_5M[(c, m, per)] not in INTRADAY.values()),
)
#: whole bundled minute files by (coin, timeframe, market): Binance spot 1-minute (several stretches since
#: 2019-11) and USD-M perpetual 5-minute (2022-06..2026-02); not continuous, missing bars absent
MINUTE = {("BTC", "1m", "spot"): "btcusdt_1m.csv.gz", ("ETH", "1m", "spot"): "ethusdt_1m.csv.gz",
          ("BTC", "5m", "perpetual"): "btcusdt_perp_5m.csv.gz", ("ETH", "5m", "perpetual"): "ethusdt_perp_5m.csv.gz"}
FILES = FILES + (
    *(DatasetFile(f, "intraday", c, f"{c}-PERP" if m == "perpetual" else f"{c}-USDT", m, tf,
                  "see PROVENANCE.md (freqtrade downloads of Binance klines, merged)", "see PROVENANCE.md", 10,
                  f"Binance {'USD-M perpetual' if m == 'perpetual' else 'spot'} {tf} bars, all bundled stretches")
      for (c, tf, m), f in MINUTE.items()),
)
OPTIONS_SNAPSHOTS = {("BTC", "2024-05"): "deribit_btc_options_snapshot_2024-05.csv",
                     ("ETH", "2024-05"): "deribit_eth_options_snapshot_2024-05.csv",
                     ("ETH", "2024-01-08"): "deribit_eth_options_snapshot_2024-01-08.csv"}


def files(kind: str | None = None) -> tuple[DatasetFile, ...]:
    """The bundled files with their provenance, optionally of one ``kind``."""
    return tuple(f for f in FILES if kind is None or f.kind == kind)


def data_dir() -> Path:
    """Folder of the bundled files: ``MARGINCAL_DATA`` when set, else this package's folder."""
    env = os.environ.get(DATA_ENV)
    d = Path(env) if env else Path(__file__).resolve().parent
    if not (d / "PROVENANCE.md").exists():
        raise ConfigError(f"bundled data not found in {d} (no PROVENANCE.md there)"
                          + (f"; {DATA_ENV} points there" if env else "; reinstall margincal"))
    return d


def path(file: str) -> Path:
    """Path of one bundled file by name (``btc_daily.csv``); :class:`DataError` if unknown."""
    names = {f.file for f in FILES} | {"PROVENANCE.md"}
    if file not in names:
        raise DataError(f"{file!r} is not a bundled file; bundled: {', '.join(sorted(names))}")
    return data_dir() / file


@lru_cache(maxsize=32)
def _read(file: str, root: str) -> pd.DataFrame:
    p = Path(root) / file
    if not p.exists():
        raise DataError(f"bundled file {file} is missing from {root}")
    return pd.read_csv(p, compression="infer")


def load(file: str, root: str | Path | None = None) -> pd.DataFrame:
    """A bundled file as read from disk (no parsing of times), as a copy.

    ``root``: another folder holding a file of the same name (default :func:`data_dir`).
    """
    if root is None:
        path(file)
    return _read(file, str(root if root is not None else data_dir())).copy()


def _symbol(symbol: str, allowed: tuple[str, ...], what: str) -> str:
    s = str(symbol).upper().split("-")[0].split("/")[0]
    for q in ("USDT",):
        if s.endswith(q) and len(s) > len(q):
            s = s[: -len(q)]
    if s not in allowed:
        raise DataError(f"no bundled {what} for {symbol!r}; bundled: {', '.join(allowed)}")
    return s


def _utc_index(df: pd.DataFrame, col: str, file: str) -> pd.DataFrame:
    df[col] = pd.to_datetime(df[col], utc=True)
    # nanosecond unit: pandas 3 parses to microseconds, and some readers assume ns ticks
    df = df.set_index(col).sort_index()
    df.index = df.index.as_unit("ns")
    if not df.index.is_unique:
        raise DataError(f"{file}: duplicate {col} values")
    return df


def load_daily(symbol: str, root: str | Path | None = None) -> pd.DataFrame:
    """Daily Binance spot OHLCV of a coin (``BTC``, ``btc``, ``BTC-USDT``), indexed by the UTC day.

    Columns ``open, high, low, close, volume, volume_quote, trades``.
    """
    s = _symbol(symbol, DAILY_SYMBOLS, "daily file")
    f = f"{s.lower()}_daily.csv"
    df = _utc_index(load(f, root), "date", f)
    if (df["close"] <= 0).any():
        raise DataError(f"{f}: close must be > 0")
    return df


def load_daily_returns(symbol: str, root: str | Path | None = None) -> pd.Series:
    """Close-to-close daily log returns (dated by the later close), named ``<COIN>USDT``.

    The 2026 gaps of the source files (PROVENANCE.md) make a few returns span two
    or more days; they are kept (a real margin period sees them too).
    """
    c = load_daily(symbol, root)["close"]
    r = np.log(c).diff().dropna()
    r.name = f"{_symbol(symbol, DAILY_SYMBOLS, 'daily file')}USDT"
    return r


def load_hourly(symbol: str, market: str = "spot", root: str | Path | None = None) -> pd.DataFrame:
    """Hourly Binance OHLCV (``open, high, low, close, volume``) indexed by the bar's UTC open time.

    ``market``: ``spot`` (BTC, ETH, SOL) or ``perpetual`` (USD-M; BTC, ETH).
    """
    if market not in ("spot", "perpetual"):
        raise DataError(f"market is {market!r}; use 'spot' or 'perpetual'")
    allowed = HOURLY_SPOT_SYMBOLS if market == "spot" else PERPETUAL_SYMBOLS
    s = _symbol(symbol, allowed, f"hourly {market} file")
    f = f"{s.lower()}usdt_1h.csv.gz" if market == "spot" else f"{s.lower()}usdt_perp_1h.csv.gz"
    return _utc_index(load(f, root), "timestamp", f)


_Key = TypeVar("_Key", bound=tuple[str, ...])


def _ms_bars(table: dict[_Key, str], key: _Key, what: str, root: str | Path | None) -> pd.DataFrame:
    """The bundled bar file ``table[key]`` (epoch-ms ``timestamp`` column) indexed by UTC bar open time;
    :class:`DataError` naming ``what`` and the bundled keys when ``key`` is not one of them."""
    if key not in table:
        raise DataError(f"no bundled {what}; bundled: {', '.join(' '.join(k) for k in table)}")
    f = table[key]
    df = load(f, root)
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="ms", utc=True)
    return _utc_index(df, "timestamp", f)


def load_intraday(symbol: str, timeframe: str = "1m", root: str | Path | None = None) -> pd.DataFrame:
    """Intraday OHLCV indexed by the bar's UTC open time: ``1m`` Binance spot (BTC, ETH, Jul-Aug 2024),
    ``5m`` Binance USD-M perpetual (BTC, ETH, October 2025, with the 2025-10-10 crash)."""
    return _ms_bars(INTRADAY, (str(symbol).upper().split("-")[0], timeframe), f"{timeframe} bars for {symbol!r}",
                    root)


def load_minute(symbol: str, timeframe: str = "1m", market: str = "spot",
                root: str | Path | None = None) -> pd.DataFrame:
    """A whole bundled minute file (:data:`MINUTE`): ``1m`` Binance spot or ``5m`` USD-M perpetual bars of BTC or
    ETH, indexed by the bar's UTC open time. The files hold several stretches; missing bars are absent, never
    filled, so consecutive rows are not always one bar apart."""
    return _ms_bars(MINUTE, (str(symbol).upper().split("-")[0], timeframe, market),
                    f"{timeframe} {market} file for {symbol!r}", root)


def load_bars_5m(symbol: str, market: str = "perpetual", period: str = "2025-10",
                 root: str | Path | None = None) -> pd.DataFrame:
    """5-minute Binance OHLCV (``open, high, low, close, volume``; volume in base units) indexed by the bar's
    UTC open time: ``market`` ``spot`` or ``perpetual`` (USD-M), ``period`` ``2022-11`` (2022-11-01..20, the
    FTX collapse) or ``2025-10`` (the month of the 2025-10-10 crash); BTC and ETH. No bar is missing."""
    return _ms_bars(BARS_5M, (str(symbol).upper().split("-")[0], market, period),
                    f"5m bars for {symbol!r} {market} {period}", root)


def load_funding(symbol: str, root: str | Path | None = None) -> pd.Series:
    """8-hourly funding rates of the Binance USD-M perpetual (fraction per 8 h), indexed by UTC time."""
    s = _symbol(symbol, PERPETUAL_SYMBOLS, "funding file")
    f = f"{s.lower()}usdt_funding.csv"
    return _utc_index(load(f, root), "funding_time", f)["funding_rate"].rename(f"{s}-PERP")


def load_open_interest(symbol: str = "BTC", root: str | Path | None = None) -> pd.Series:
    """Daily aggregate futures open interest in USD (indicative only, PROVENANCE.md section 5)."""
    s = _symbol(symbol, ("BTC",), "open-interest file")
    f = f"{s.lower()}_open_interest_daily.csv"
    return _utc_index(load(f, root), "date", f)["open_interest_usd"]


def load_options_snapshot(symbol: str, date: str = "2024-05") -> pd.DataFrame:
    """A Deribit option-chain snapshot as bundled (columns differ per snapshot; see PROVENANCE.md).

    Snapshots: ``("BTC", "2024-05")``, ``("ETH", "2024-05")``, ``("ETH", "2024-01-08")``.
    """
    key = (str(symbol).upper(), str(date))
    if key not in OPTIONS_SNAPSHOTS:
        raise DataError(f"no bundled options snapshot for {key}; bundled: "
                        f"{', '.join(f'{k[0]} {k[1]}' for k in OPTIONS_SNAPSHOTS)}")
    return load(OPTIONS_SNAPSHOTS[key])


__all__ = ["DAILY_SYMBOLS", "FILES", "HOURLY_SPOT_SYMBOLS", "OPTIONS_SNAPSHOTS", "PERPETUAL_SYMBOLS",
           "DatasetFile", "data_dir", "files", "load", "load_daily", "load_daily_returns", "load_funding",
           "load_bars_5m", "load_hourly", "load_intraday", "load_minute", "load_open_interest", "load_options_snapshot", "path"]
