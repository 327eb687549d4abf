"""Download OHLCV bars from an exchange through ccxt into the store.

* Paginated: ``fetch_ohlcv(symbol, timeframe, since, limit)`` page after page,
  each page starting one bar after the last stored one.
* Rate-limit aware: ccxt's own throttle (``enableRateLimit``) spaces the
  requests; on ``RateLimitExceeded`` / ``DDoSProtection`` / network errors the
  page is retried with exponential back-off (``max_retries``).
* Resumable: every page is validated with the same rules as file ingest and
  written in its own transaction, so an interrupted fetch keeps the pages it
  finished, and the next run starts after the last stored bar.
* The bar still forming (open time + timeframe after "now") is never stored.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ccxt
import duckdb
import pandas as pd

from margincal.data.ingest import store_frame, timeframe_delta, validate_bars
from margincal.data.store import to_utc
from margincal.errors import ConfigError, DataError
from margincal.instruments import format_name
from margincal.instruments import parse as parse_instrument_name

_RETRYABLE = (ccxt.RateLimitExceeded, ccxt.DDoSProtection, ccxt.RequestTimeout, ccxt.NetworkError,
              ccxt.ExchangeNotAvailable)


def make_exchange(exchange_id: str, config: dict[str, Any] | None = None) -> ccxt.Exchange:
    """A ccxt exchange with its rate limiter on. Public data needs no keys."""
    if exchange_id not in ccxt.exchanges:
        raise ConfigError(f"exchange {exchange_id!r} is not supported by ccxt {ccxt.__version__}")
    cfg = {"enableRateLimit": True, "timeout": 30_000}
    cfg.update(config or {})
    return getattr(ccxt, exchange_id)(cfg)


def default_instrument(symbol: str) -> str:
    """'BTC/USDT' -> 'BTC-USDT'; 'BTC/USDT:USDT' (linear swap) -> 'BTC-PERP' (margincal form of
    :func:`margincal.instruments.format_name`)."""
    return format_name(parse_instrument_name(symbol))


@dataclass
class FetchReport:
    exchange: str
    symbol: str
    instrument: str
    timeframe: str
    resumed_from: str | None
    pages: int = 0
    bars_inserted: int = 0
    first_ts: str | None = None
    last_ts: str | None = None
    retries: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _last_stored(con: duckdb.DuckDBPyConnection, instrument: str, timeframe: str) -> pd.Timestamp | None:
    row = con.execute("SELECT max(ts) FROM bars WHERE instrument = ? AND timeframe = ?",
                      [instrument, timeframe]).fetchone()
    return None if row is None or row[0] is None else to_utc(row[0])


def _with_retries(call: Callable[[], Any], max_retries: int, base_delay: float, report: FetchReport,
                  sleep: Callable[[float], None]) -> Any:
    attempt = 0
    while True:
        try:
            return call()
        except _RETRYABLE as exc:
            attempt += 1
            report.retries += 1
            if attempt > max_retries:
                raise DataError(f"{report.exchange} {report.symbol}: giving up after {max_retries} retries "
                                f"({type(exc).__name__}: {exc}); bars fetched so far are stored, rerun to resume") \
                    from None
            sleep(base_delay * 2 ** (attempt - 1))


def fetch_bars(
    con: duckdb.DuckDBPyConnection,
    exchange: ccxt.Exchange,
    symbol: str,
    timeframe: str,
    since: Any,
    *,
    until: Any = None,
    instrument: str | None = None,
    page_limit: int = 1000,
    max_retries: int = 5,
    base_delay: float = 1.0,
    now: Any = None,
    on_page: Callable[[FetchReport], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchReport:
    """Fetch bars ``[since, until)`` (resuming after the last stored bar) and store them page by page."""
    step = timeframe_delta(timeframe)
    if exchange.timeframes and timeframe not in exchange.timeframes:
        raise ConfigError(f"{exchange.id} does not offer timeframe {timeframe}; it offers "
                          f"{', '.join(exchange.timeframes)}")
    instrument = instrument or default_instrument(symbol)
    start = to_utc(since)
    now_ts = to_utc(now) if now is not None else pd.Timestamp.now(tz="UTC")
    end = min(to_utc(until), now_ts) if until is not None else now_ts
    last = _last_stored(con, instrument, timeframe)
    report = FetchReport(exchange.id, symbol, instrument, timeframe,
                         resumed_from=str(last) if last is not None and last >= start else None)
    if last is not None and last + step > start:
        start = last + step
    _with_retries(exchange.load_markets, max_retries, base_delay, report, sleep)
    if symbol not in exchange.markets:
        raise ConfigError(f"{exchange.id} has no market {symbol!r}")
    cursor = start
    while cursor + step <= end:
        ms = int(cursor.value // 1_000_000)
        rows = _with_retries(functools.partial(exchange.fetch_ohlcv, symbol, timeframe, since=ms, limit=page_limit),
                             max_retries, base_delay, report, sleep)
        if not rows:
            break
        df = pd.DataFrame(rows, columns=["timestamp", "open", "high", "low", "close", "volume"])
        df["volume"] = df["volume"].fillna(0.0)
        ts = pd.to_datetime(df["timestamp"], unit="ms", utc=True)
        keep = (ts >= cursor) & (ts + step <= end)  # never store the bar still forming
        df = df[keep.to_numpy()].reset_index(drop=True)
        page_name = f"{exchange.id} {symbol} {timeframe} page {report.pages + 1}"
        if df.empty:
            break
        frame, _ = validate_bars(df, page_name, True, timeframe)
        frame.insert(0, "timeframe", timeframe)
        frame.insert(0, "instrument", instrument)
        inserted, _ = store_frame(con, "bars", frame, instrument=instrument, name=page_name)
        report.pages += 1
        report.bars_inserted += inserted
        first, newest = to_utc(frame["ts"].iloc[0]), to_utc(frame["ts"].iloc[-1])
        report.first_ts = report.first_ts or str(first)
        report.last_ts = str(newest)
        if on_page:
            on_page(report)
        nxt = newest + step
        if nxt <= cursor:
            break
        cursor = nxt
    if report.pages == 0:
        report.notes.append("no new complete bars")
    return report
