"""Market-data feeds: one event stream from stored history (replay) or an exchange (live).

Both feeds deliver the same frozen event objects, so the monitor does not know
(or care) whether it is replaying 2022-11 or watching Binance now:

* :class:`BarEvent` - one OHLCV bar. ``ts`` is the bar's **open** time (the
  store's and ccxt's convention); the bar is only known once it has closed, at
  ``available_at = ts + timeframe``.
* :class:`FundingEvent` - a funding rate (fraction per funding period).
* :class:`OpenInterestEvent` - open interest (notional in quote currency and/or
  contracts).
* :class:`DepthEvent` - an order-book snapshot (bids descending, asks ascending).

Every event carries ``t_ns``: the UTC nanosecond time at which the event became
known (``available_at`` for bars, ``ts`` otherwise). Feeds emit events in the
order of :func:`event_key` ``(t_ns, kind rank, instrument)``, which is total
and deterministic; a consumer that remembers the key of the last event it
processed can resume exactly after it (``ReplayFeed(after=key)``).

:class:`ReplayFeed` reads bars, funding, open interest and depth from the
store and merges them in time order; ``speed=None`` replays as fast as
possible, ``speed=x`` sleeps so that ``x`` seconds of market time pass per
second of wall time. :class:`LiveFeed` polls an exchange through ccxt
(``fetch_ohlcv`` / ``fetch_funding_rate`` / ``fetch_open_interest`` /
``fetch_order_book``) or, with :meth:`LiveFeed.stream`, uses the websocket
``watch_ohlcv`` / ``watch_order_book`` of ``ccxt.pro``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import duckdb
import pandas as pd

from margincal.data.ingest import timeframe_delta
from margincal.data.store import connect, to_store_ts, to_utc
from margincal.errors import ConfigError, DataError
from margincal.instruments import Instrument, format_name

__all__ = [
    "KIND_RANK",
    "BarEvent",
    "DepthEvent",
    "Event",
    "FundingEvent",
    "LiveFeed",
    "OpenInterestEvent",
    "ReplayFeed",
    "SharesConnection",
    "event_key",
    "timeframe_ns",
]

#: Tie-break order of events known at the same instant: bars first (they
#: carry the price the others are compared against), then funding, OI, depth.
KIND_RANK = {"bar": 0, "funding": 1, "oi": 2, "depth": 3}

_TF_NS: dict[str, int] = {}


def timeframe_ns(timeframe: str) -> int:
    """'1h' -> 3_600_000_000_000 (cached)."""
    ns = _TF_NS.get(timeframe)
    if ns is None:
        ns = int(timeframe_delta(timeframe).value)
        _TF_NS[timeframe] = ns
    return ns


def _utc_ts(ts: Any, what: str) -> pd.Timestamp:
    if isinstance(ts, pd.Timestamp) and ts.tzinfo is not None and str(ts.tzinfo) == "UTC":
        return ts
    try:
        return to_utc(ts)
    except (ValueError, TypeError):
        raise DataError(f"{what}: ts {ts!r} is not a timestamp") from None


@dataclass(frozen=True, slots=True)
class BarEvent:
    """One OHLCV bar; ``ts`` is the open time (UTC), known at ``ts + timeframe``."""

    instrument: str
    ts: pd.Timestamp
    open: float
    high: float
    low: float
    close: float
    volume: float
    timeframe: str = "1h"
    t_ns: int = field(init=False, repr=False, compare=False)

    kind: ClassVar[str] = "bar"

    def __post_init__(self) -> None:
        ts = _utc_ts(self.ts, f"bar of {self.instrument}")
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "t_ns", ts.value + timeframe_ns(self.timeframe))

    @property
    def available_at(self) -> pd.Timestamp:
        return pd.Timestamp(self.t_ns, tz="UTC")


@dataclass(frozen=True, slots=True)
class FundingEvent:
    """A funding rate (fraction per funding period, positive = longs pay shorts)."""

    instrument: str
    ts: pd.Timestamp
    rate: float
    mark_price: float | None = None
    next_funding_ts: pd.Timestamp | None = None
    t_ns: int = field(init=False, repr=False, compare=False)

    kind: ClassVar[str] = "funding"

    def __post_init__(self) -> None:
        ts = _utc_ts(self.ts, f"funding of {self.instrument}")
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "t_ns", ts.value)

    @property
    def available_at(self) -> pd.Timestamp:
        return self.ts


@dataclass(frozen=True, slots=True)
class OpenInterestEvent:
    """Open interest: notional in quote currency and/or number of contracts."""

    instrument: str
    ts: pd.Timestamp
    oi_notional: float | None
    oi_contracts: float | None = None
    t_ns: int = field(init=False, repr=False, compare=False)

    kind: ClassVar[str] = "oi"

    def __post_init__(self) -> None:
        ts = _utc_ts(self.ts, f"open interest of {self.instrument}")
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "t_ns", ts.value)
        if self.oi_notional is None and self.oi_contracts is None:
            raise DataError(f"open interest of {self.instrument} at {ts}: neither notional nor contracts given")

    @property
    def available_at(self) -> pd.Timestamp:
        return self.ts


@dataclass(frozen=True, slots=True)
class DepthEvent:
    """Order-book snapshot: ``bids`` (price, size) descending, ``asks`` ascending, sizes in base units."""

    instrument: str
    ts: pd.Timestamp
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]
    t_ns: int = field(init=False, repr=False, compare=False)

    kind: ClassVar[str] = "depth"

    def __post_init__(self) -> None:
        ts = _utc_ts(self.ts, f"depth of {self.instrument}")
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "t_ns", ts.value)
        bids = tuple(sorted(((float(p), float(s)) for p, s in self.bids), key=lambda x: -x[0]))
        asks = tuple(sorted(((float(p), float(s)) for p, s in self.asks), key=lambda x: x[0]))
        if not bids or not asks:
            raise DataError(f"depth of {self.instrument} at {ts}: needs at least one bid and one ask")
        if bids[0][0] >= asks[0][0]:
            raise DataError(f"depth of {self.instrument} at {ts}: best bid {bids[0][0]} >= best ask {asks[0][0]} "
                            "(crossed book)")
        object.__setattr__(self, "bids", bids)
        object.__setattr__(self, "asks", asks)

    @property
    def available_at(self) -> pd.Timestamp:
        return self.ts

    @property
    def best_bid(self) -> float:
        return self.bids[0][0]

    @property
    def best_ask(self) -> float:
        return self.asks[0][0]

    @property
    def mid(self) -> float:
        return 0.5 * (self.bids[0][0] + self.asks[0][0])

    @property
    def spread_bps(self) -> float:
        """Quoted spread ``(ask - bid) / mid`` in basis points."""
        b, a = self.bids[0][0], self.asks[0][0]
        return 1e4 * (a - b) / (0.5 * (a + b))

    def depth_notional(self, band_bps: float = 100.0) -> float:
        """Quote notional resting within ``band_bps`` of the mid on both sides (sum of price x size)."""
        mid = self.mid
        lo, hi = mid * (1.0 - band_bps * 1e-4), mid * (1.0 + band_bps * 1e-4)
        tot = 0.0
        for p, s in self.bids:
            if p < lo:
                break
            tot += p * s
        for p, s in self.asks:
            if p > hi:
                break
            tot += p * s
        return tot


Event = BarEvent | FundingEvent | OpenInterestEvent | DepthEvent


def event_key(ev: Event) -> tuple[int, int, str]:
    """Total, deterministic order of events: (time known in ns, kind rank, instrument)."""
    return (ev.t_ns, KIND_RANK[ev.kind], ev.instrument)


@runtime_checkable
class SharesConnection(Protocol):
    """A feed that can read through a writer's open connection (:meth:`ReplayFeed.share_connection`)."""

    def share_connection(self, store: Any, con: duckdb.DuckDBPyConnection | None) -> bool: ...


# =================================================================== replay


def _ns(x: Any) -> int:
    return int(to_utc(x).value)


class ReplayFeed:
    """Replay stored bars, funding, open interest and depth in time order.

    Parameters
    ----------
    con : an open DuckDB connection, or a store path (each chunk is then read
        with a short-lived read-only connection, so a writer in the same
        process or another one is never blocked for long).
    instruments : instruments to replay (default: every instrument with bars).
    start, end : replay events known in ``[start, end]`` (UTC, inclusive).
    speed : None = as fast as possible; ``x`` = ``x`` seconds of market time
        per wall-clock second (so ``speed=3600`` plays an hourly bar a second).
    timeframe : bar timeframe (default: each instrument's finest stored one).
    kinds : subset of ``("bar", "funding", "oi", "depth")``.
    after : an :func:`event_key`; events at or before it are skipped (resume).
    chunk : events are read in windows of this length (bounded memory).
    sleep, clock : injectable for tests (default ``time.sleep``, ``time.monotonic``).
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection | str | Path,
        instruments: Sequence[str] | None = None,
        start: Any = None,
        end: Any = None,
        speed: float | None = None,
        *,
        timeframe: str | None = None,
        kinds: Iterable[str] = ("bar", "funding", "oi", "depth"),
        after: tuple[int, int, str] | Sequence[Any] | None = None,
        chunk: Any = "30D",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed is not None and not (speed > 0 and math.isfinite(speed)):
            raise ConfigError(f"speed is {speed}; it must be a positive number (or None for as fast as possible)")
        self.kinds = tuple(kinds)
        bad = [k for k in self.kinds if k not in KIND_RANK]
        if bad:
            raise ConfigError(f"kinds {bad} are not known; use some of {', '.join(KIND_RANK)}")
        self.source = con
        self.speed = speed
        self.timeframe = timeframe
        self.start_ns = _ns(start) if start is not None else None
        self.end_ns = _ns(end) if end is not None else None
        if self.start_ns is not None and self.end_ns is not None and self.end_ns < self.start_ns:
            raise ConfigError(f"replay end {to_utc(end)} is before its start {to_utc(start)}")
        self.after = None if after is None else (int(after[0]), int(after[1]), str(after[2]))
        self.chunk_ns = int(pd.Timedelta(chunk).value)
        if self.chunk_ns <= 0:
            raise ConfigError(f"chunk is {chunk}; it must be a positive duration")
        self._sleep = sleep
        self._clock = clock
        self.instruments = list(instruments) if instruments else None
        self.timeframes_: dict[str, str] = {}
        self._shared: duckdb.DuckDBPyConnection | None = None

    def share_connection(self, store: Any, con: duckdb.DuckDBPyConnection | None) -> bool:
        """Read through ``con`` (a writer's open connection to the same store file) while it is set.

        DuckDB refuses a second, read-only connection to a file the same process holds open for writing;
        the monitor's group commit holds one for its run and hands it over here. Returns whether the feed
        reads from ``store`` (else nothing changes); ``con=None`` goes back to short-lived connections.
        """
        if isinstance(self.source, duckdb.DuckDBPyConnection) or isinstance(store, duckdb.DuckDBPyConnection):
            return False
        if Path(self.source).resolve() != Path(store).resolve():
            return False
        self._shared = con
        return True

    # ---------------------------------------------------------------- store access
    @contextlib.contextmanager
    def _con(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if isinstance(self.source, duckdb.DuckDBPyConnection):
            yield self.source
            return
        if self._shared is not None:
            yield self._shared
            return
        c = connect(self.source, read_only=True)
        try:
            yield c
        finally:
            c.close()

    def _resolve(self, con: duckdb.DuckDBPyConnection) -> tuple[list[str], dict[str, str], tuple[int, int] | None]:
        rows = con.execute("SELECT instrument, timeframe FROM bars GROUP BY 1, 2").fetchall()
        tfs: dict[str, list[str]] = {}
        for inst, tf in rows:
            tfs.setdefault(inst, []).append(tf)
        if self.instruments is None:
            insts = sorted(tfs)
            if not insts:
                raise DataError("the store has no bars to replay; run `margincal ingest` or `margincal run` first")
        else:
            insts = self.instruments
        chosen: dict[str, str] = {}
        for inst in insts:
            have = tfs.get(inst, [])
            if self.timeframe is not None:
                if have and self.timeframe not in have:
                    raise DataError(f"{inst} has no {self.timeframe} bars in the store (it has {', '.join(have)})")
                if have:
                    chosen[inst] = self.timeframe
            elif have:
                chosen[inst] = min(have, key=timeframe_ns)
        if self.instruments is not None:
            known = set(tfs)
            for table in ("funding", "open_interest", "depth_snapshots"):
                known |= {r[0] for r in con.execute(f"SELECT DISTINCT instrument FROM {table}").fetchall()}
            missing = [i for i in insts if i not in known]
            if missing:
                raise DataError(f"no stored data for {', '.join(missing)}; stored instruments: "
                                f"{', '.join(sorted(known)) or 'none'}")
        lo_hi = None
        parts = []
        for table in ("bars", "funding", "open_interest", "depth_snapshots"):
            parts.append(f"SELECT min(ts) AS lo, max(ts) AS hi FROM {table} WHERE instrument IN "
                         f"({','.join('?' * len(insts))})")
        row = con.execute(f"SELECT min(lo), max(hi) FROM ({' UNION ALL '.join(parts)})", insts * 4).fetchone()
        if row is not None and row[0] is not None:
            lo_hi = (_ns(row[0]), _ns(row[1]) + max((timeframe_ns(t) for t in chosen.values()), default=0))
        return insts, chosen, lo_hi

    def _load(self, con: duckdb.DuckDBPyConnection, insts: list[str], tfs: dict[str, str], lo: int,
              hi: int) -> list[Event]:
        """Events known in [lo, hi) (ns). The store keeps microseconds: query a superset, filter exactly."""
        out: list[Event] = []

        def us_floor(ns: int) -> Any:
            return to_store_ts(pd.Timestamp(ns - ns % 1000, tz="UTC"))

        def us_after(ns: int) -> Any:  # first microsecond strictly after ns
            return to_store_ts(pd.Timestamp(ns - ns % 1000 + 1000, tz="UTC"))

        ph = ",".join("?" * len(insts))
        if "bar" in self.kinds:
            for inst, tf in tfs.items():
                step = timeframe_ns(tf)
                q = con.execute(
                    "SELECT ts, open, high, low, close, volume FROM bars WHERE instrument = ? AND timeframe = ? "
                    "AND ts >= ? AND ts < ? ORDER BY ts",
                    [inst, tf, us_floor(lo - step), us_after(hi - step)]).fetchnumpy()
                ts = q["ts"].astype("datetime64[ns]").astype("int64")
                o, h, lw, c, v = (q[k].tolist() for k in ("open", "high", "low", "close", "volume"))
                for i, t in enumerate(ts.tolist()):
                    if lo <= t + step < hi:
                        out.append(BarEvent(inst, pd.Timestamp(t, tz="UTC"), o[i], h[i], lw[i], c[i], v[i], tf))
        rng = [us_floor(lo), us_after(hi)]
        if "funding" in self.kinds:
            rows = con.execute(f"SELECT instrument, ts, rate FROM funding WHERE instrument IN ({ph}) AND ts >= ? "
                               "AND ts < ? ORDER BY ts", [*insts, *rng]).fetchall()
            out.extend(e for e in (FundingEvent(r[0], pd.Timestamp(r[1], tz="UTC"), float(r[2])) for r in rows)
                       if lo <= e.t_ns < hi)
        if "oi" in self.kinds:
            rows = con.execute(f"SELECT instrument, ts, oi_notional, oi_contracts FROM open_interest WHERE "
                               f"instrument IN ({ph}) AND ts >= ? AND ts < ? ORDER BY ts", [*insts, *rng]).fetchall()
            out.extend(e for e in (OpenInterestEvent(r[0], pd.Timestamp(r[1], tz="UTC"),
                                                     None if r[2] is None else float(r[2]),
                                                     None if r[3] is None else float(r[3])) for r in rows)
                       if lo <= e.t_ns < hi)
        if "depth" in self.kinds:
            rows = con.execute(f"SELECT instrument, ts, side, price, size FROM depth_snapshots WHERE instrument "
                               f"IN ({ph}) AND ts >= ? AND ts < ? ORDER BY instrument, ts",
                               [*insts, *rng]).fetchall()
            books: dict[tuple[str, Any], tuple[list, list]] = {}
            for inst, ts, side, price, size in rows:
                b = books.setdefault((inst, ts), ([], []))
                (b[0] if side == "bid" else b[1]).append((float(price), float(size)))
            for (inst, ts), (bids, asks) in books.items():
                if bids and asks:
                    e = DepthEvent(inst, pd.Timestamp(ts, tz="UTC"), tuple(bids), tuple(asks))
                    if lo <= e.t_ns < hi:
                        out.append(e)
        out.sort(key=event_key)
        return out

    # ---------------------------------------------------------------- iteration
    def events(self) -> Iterator[Event]:
        """Events in :func:`event_key` order without any pacing (same as iterating with ``speed=None``)."""
        with self._con() as con:
            insts, tfs, lo_hi = self._resolve(con)
        self.timeframes_ = dict(tfs)
        if lo_hi is None:
            return
        lo = lo_hi[0] if self.start_ns is None else self.start_ns
        if self.after is not None:
            lo = max(lo, self.after[0])
        hi_incl = lo_hi[1] if self.end_ns is None else self.end_ns
        after = self.after
        w = lo
        while w <= hi_incl:
            w_end = min(w + self.chunk_ns, hi_incl + 1)
            with self._con() as con:
                chunk = self._load(con, insts, tfs, w, w_end)
            for ev in chunk:
                if after is not None and event_key(ev) <= after:
                    continue
                yield ev
            w = w_end

    def __iter__(self) -> Iterator[Event]:
        if self.speed is None:
            yield from self.events()
            return
        wall0 = None
        t0 = 0
        for ev in self.events():
            if wall0 is None:
                wall0, t0 = self._clock(), ev.t_ns
            else:
                due = wall0 + (ev.t_ns - t0) / 1e9 / self.speed
                wait = due - self._clock()
                if wait > 0:
                    self._sleep(wait)
            yield ev


# =================================================================== live


def default_instrument_name(market: Mapping[str, Any]) -> str:
    """Name an instrument from a ccxt market in the margincal form of :mod:`margincal.instruments`:
    swap -> 'BTC-PERP', spot -> 'BTC-USDT', future -> 'BTC-30DEC22' (Deribit date form)."""
    base, quote = str(market.get("base")).upper(), str(market.get("quote")).upper()
    settle = str(market.get("settle") or quote).upper()
    if market.get("swap"):
        return format_name(Instrument("perpetual", base, quote, settle))
    if market.get("future") and market.get("expiry"):
        return format_name(Instrument("future", base, quote, settle,
                                      expiry=pd.Timestamp(market["expiry"], unit="ms", tz="UTC")))
    return format_name(Instrument("spot", base, quote, quote))


class LiveFeed:
    """Live events from an exchange through ccxt (REST polling, or websockets with :meth:`stream`).

    Parameters
    ----------
    exchange : a ccxt exchange object (``ccxt.binanceusdm()``) or its id.
    symbols : ccxt unified symbols, e.g. ``["BTC/USDT:USDT"]``.
    timeframe : bar timeframe (``"1m"``, ``"1h"``...).
    poll_seconds : seconds between two polling rounds.
    channels : subset of ``("bar", "funding", "oi", "depth")``.
    instruments : optional map symbol -> instrument name (default from the market).
    depth_limit : order-book levels per side.
    backfill_bars : on the first round, fetch this many past closed bars (to
        warm the estimators up); ccxt paginates when it exceeds one request.
    ws_exchange : a ``ccxt.pro`` exchange for :meth:`stream` (default: built
        from the REST exchange's id when ``ccxt.pro`` offers it).
    clock_ms : "now" in ms (default: the exchange's clock); a bar is emitted
        only once it has closed (open time + timeframe <= now).

    Only closed bars are emitted, each once; funding, open interest and depth
    are emitted when their exchange timestamp is newer than the last one seen.
    """

    def __init__(
        self,
        exchange: Any,
        symbols: Sequence[str],
        timeframe: str = "1m",
        poll_seconds: float = 10.0,
        *,
        channels: Iterable[str] = ("bar", "funding", "oi", "depth"),
        instruments: Mapping[str, str] | None = None,
        depth_limit: int = 20,
        backfill_bars: int = 0,
        ws_exchange: Any = None,
        clock_ms: Callable[[], int] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import ccxt

        if isinstance(exchange, str):
            if exchange not in ccxt.exchanges:
                raise ConfigError(f"exchange {exchange!r} is not supported by ccxt {ccxt.__version__}")
            exchange = getattr(ccxt, exchange)({"enableRateLimit": True})
        if not symbols:
            raise ConfigError("LiveFeed needs at least one symbol, e.g. 'BTC/USDT:USDT'")
        if not poll_seconds > 0:
            raise ConfigError(f"poll_seconds is {poll_seconds}; it must be > 0")
        self.channels = tuple(channels)
        bad = [c for c in self.channels if c not in KIND_RANK]
        if bad:
            raise ConfigError(f"channels {bad} are not known; use some of {', '.join(KIND_RANK)}")
        self.exchange = exchange
        self.symbols = list(symbols)
        self.timeframe = timeframe
        self.tf_ns = timeframe_ns(timeframe)
        self.poll_seconds = float(poll_seconds)
        self.depth_limit = int(depth_limit)
        self.backfill_bars = int(backfill_bars)
        self._names = dict(instruments or {})
        self._ws = ws_exchange
        self._clock_ms = clock_ms or exchange.milliseconds
        self._sleep = sleep
        self._last_bar: dict[str, int] = {}
        self._last_ts: dict[tuple[str, str], int] = {}
        self._mark: dict[str, float] = {}
        self._loaded = False
        self.disconnects = 0
        self.last_error: str | None = None

    # ---------------------------------------------------------------- helpers
    def _load(self) -> None:
        if self._loaded:
            return
        ex = self.exchange
        ex.load_markets()
        missing = [s for s in self.symbols if s not in ex.markets]
        if missing:
            raise ConfigError(f"{ex.id} has no market {', '.join(map(repr, missing))}")
        if ex.timeframes and self.timeframe not in ex.timeframes:
            raise ConfigError(f"{ex.id} does not offer timeframe {self.timeframe}; it offers "
                              f"{', '.join(ex.timeframes)}")
        for s in self.symbols:
            self._names.setdefault(s, default_instrument_name(ex.markets[s]))
        self._loaded = True

    def instrument(self, symbol: str) -> str:
        self._load()
        return self._names[symbol]

    def _bars_from_ohlcv(self, symbol: str, rows: Iterable[Sequence[Any]], now_ms: int) -> list[BarEvent]:
        inst = self._names[symbol]
        tf_ms = self.tf_ns // 1_000_000
        last = self._last_bar.get(symbol, -1)
        out = []
        for r in sorted(rows, key=lambda r: r[0]):
            t = int(r[0])
            if t <= last or t + tf_ms > now_ms:  # already emitted, or still forming
                continue
            out.append(BarEvent(inst, pd.Timestamp(t * 1_000_000, tz="UTC"), float(r[1]), float(r[2]),
                                float(r[3]), float(r[4]), float(r[5] or 0.0), self.timeframe))
            last = t
        if out:
            self._last_bar[symbol] = last
            self._mark.setdefault(symbol, out[-1].close)
        return out

    def _fresh(self, symbol: str, kind: str, ts_ms: int | None) -> bool:
        if ts_ms is None:
            return False
        key = (symbol, kind)
        if ts_ms <= self._last_ts.get(key, -1):
            return False
        self._last_ts[key] = ts_ms
        return True

    def _funding_event(self, symbol: str, fr: Mapping[str, Any]) -> FundingEvent | None:
        ts = fr.get("timestamp")
        rate = fr.get("fundingRate")
        if rate is None or ts is None or not self._fresh(symbol, "funding", ts):
            return None
        if fr.get("markPrice"):
            self._mark[symbol] = float(fr["markPrice"])
        nxt = fr.get("fundingTimestamp")
        return FundingEvent(self._names[symbol], pd.Timestamp(int(ts) * 1_000_000, tz="UTC"), float(rate),
                            None if fr.get("markPrice") is None else float(fr["markPrice"]),
                            None if nxt is None else pd.Timestamp(int(nxt) * 1_000_000, tz="UTC"))

    def _oi_event(self, symbol: str, oi: Mapping[str, Any]) -> OpenInterestEvent | None:
        ts = oi.get("timestamp")
        if ts is None or not self._fresh(symbol, "oi", ts):
            return None
        amount = oi.get("openInterestAmount")
        value = oi.get("openInterestValue")
        market = self.exchange.markets[symbol]
        if value is None and amount is not None and symbol in self._mark:
            # linear contracts: amount is in base units x contract size; value = amount x mark price
            value = float(amount) * float(market.get("contractSize") or 1.0) * self._mark[symbol]
        if value is None and amount is None:
            return None
        return OpenInterestEvent(self._names[symbol], pd.Timestamp(int(ts) * 1_000_000, tz="UTC"),
                                 None if value is None else float(value), None if amount is None else float(amount))

    def _depth_event(self, symbol: str, ob: Mapping[str, Any], now_ms: int) -> DepthEvent | None:
        ts = ob.get("timestamp") or now_ms
        if not ob.get("bids") or not ob.get("asks") or not self._fresh(symbol, "depth", ts):
            return None
        n = self.depth_limit
        return DepthEvent(self._names[symbol], pd.Timestamp(int(ts) * 1_000_000, tz="UTC"),
                          tuple((float(p), float(s)) for p, s, *_ in ob["bids"][:n]),
                          tuple((float(p), float(s)) for p, s, *_ in ob["asks"][:n]))

    # ---------------------------------------------------------------- polling
    def poll_once(self) -> list[Event]:
        """One polling round over every symbol and channel; events sorted by :func:`event_key`."""
        self._load()
        ex = self.exchange
        now_ms = int(self._clock_ms())
        tf_ms = self.tf_ns // 1_000_000
        out: list[Event] = []
        for s in self.symbols:
            if "bar" in self.channels:
                last = self._last_bar.get(s)
                if last is None:
                    n = max(self.backfill_bars, 2)
                    since = (now_ms // tf_ms - n) * tf_ms
                else:
                    since = last + tf_ms
                n_bars = max(1, (now_ms - since) // tf_ms + 1)
                params: dict[str, Any] = {"until": now_ms}
                limit = int(n_bars)
                if n_bars > 1000:
                    # ccxt's own deterministic pagination splits [since, until] into requests
                    params.update(paginate=True, paginationCalls=int(math.ceil(n_bars / 1000)) + 1)
                    limit = None  # type: ignore[assignment]
                rows = ex.fetch_ohlcv(s, self.timeframe, since=since, limit=limit, params=params)
                out.extend(self._bars_from_ohlcv(s, rows, now_ms))
            market = ex.markets[s]
            contract = bool(market.get("contract") or market.get("swap") or market.get("future"))
            if "funding" in self.channels and contract and market.get("swap") and ex.has.get("fetchFundingRate"):
                e = self._funding_event(s, ex.fetch_funding_rate(s))
                if e is not None:
                    out.append(e)
            if "oi" in self.channels and contract and ex.has.get("fetchOpenInterest"):
                e2 = self._oi_event(s, ex.fetch_open_interest(s))
                if e2 is not None:
                    out.append(e2)
            if "depth" in self.channels:
                e3 = self._depth_event(s, ex.fetch_order_book(s, self.depth_limit), now_ms)
                if e3 is not None:
                    out.append(e3)
        out.sort(key=event_key)
        return out

    def iter_events(self, max_polls: int | None = None, *, max_retries: int | None = 10) -> Iterator[Event]:
        """Poll forever (or ``max_polls`` rounds), sleeping ``poll_seconds`` between rounds.

        A dropped connection or time-out (ccxt ``NetworkError``) does not end the stream: the round is
        retried after ``poll_seconds`` times 1, 2, 4 ... (at most 60 s), up to ``max_retries`` failures in
        a row (None: forever), and counted in :attr:`disconnects`. The next successful round fetches every
        bar closed since the last one emitted (``since`` = last bar + one bar), so an outage leaves no gap
        where the exchange has the bars; bars the exchange no longer returns stay missing, and the monitor
        reports that gap as a ``stale_data`` signal. Rows that arrive out of order are sorted, and rows at
        or before the last emitted bar are dropped, so the events come out in the replay's order, each once.
        """
        import ccxt

        n = 0
        fails = 0
        while max_polls is None or n < max_polls:
            try:
                events = self.poll_once()
            except ccxt.NetworkError as exc:
                fails += 1
                self.disconnects += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                if max_retries is not None and fails > max_retries:
                    raise
                self._sleep(min(self.poll_seconds * 2 ** (fails - 1), 60.0))
                continue
            fails = 0
            yield from events
            n += 1
            if max_polls is None or n < max_polls:
                self._sleep(self.poll_seconds)

    def __iter__(self) -> Iterator[Event]:
        return self.iter_events()

    # ---------------------------------------------------------------- websockets
    def ws_exchange(self) -> Any:
        """The ``ccxt.pro`` exchange used by :meth:`stream` (built from the REST exchange's id)."""
        if self._ws is None:
            try:
                import ccxt.pro as ccxtpro
            except ImportError:  # pragma: no cover - ccxt>=4 ships ccxt.pro
                raise ConfigError("this ccxt has no ccxt.pro; use polling (iterate the LiveFeed)") from None
            if self.exchange.id not in ccxtpro.exchanges:
                raise ConfigError(f"ccxt.pro has no websocket client for {self.exchange.id}; use polling")
            self._ws = getattr(ccxtpro, self.exchange.id)({"enableRateLimit": True})
        return self._ws

    async def stream(self, max_events: int | None = None) -> AsyncIterator[Event]:
        """Websocket events: closed bars from ``watch_ohlcv`` and books from ``watch_order_book``.

        A websocket kline update repeats the forming bar; a bar is emitted
        once a later bar has started (it is then closed). Funding and open
        interest have no ccxt websocket method and are polled over REST every
        ``poll_seconds`` (in a worker thread, so the event loop is not blocked).
        """
        ws = self.ws_exchange()
        self._load()
        if not ws.markets:
            ws.set_markets(self.exchange.markets, self.exchange.currencies)
        queue: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        has_ohlcv = bool(ws.has.get("watchOHLCV"))
        has_book = bool(ws.has.get("watchOrderBook"))

        tf_ms = self.tf_ns // 1_000_000

        async def bars(symbol: str) -> None:
            forming: list[Any] | None = None  # latest values of the bar still open
            while True:
                rows = await ws.watch_ohlcv(symbol, self.timeframe)
                closed = []
                for r in sorted(rows, key=lambda r: r[0]):
                    if forming is not None and r[0] > forming[0]:
                        closed.append(forming)  # a later bar started: the previous one has closed
                    if forming is None or r[0] >= forming[0]:
                        forming = list(r)
                if closed:
                    now_ms = int(closed[-1][0]) + tf_ms
                    for e in self._bars_from_ohlcv(symbol, closed, now_ms):
                        await queue.put(e)

        async def books(symbol: str) -> None:
            while True:
                ob = await ws.watch_order_book(symbol, self.depth_limit)
                e = self._depth_event(symbol, ob, int(self._clock_ms()))
                if e is not None:
                    await queue.put(e)

        async def rest_poll() -> None:
            chans = [c for c in self.channels if c in ("funding", "oi")]
            if not chans:
                return
            while True:
                for s in self.symbols:
                    market = self.exchange.markets[s]
                    if "funding" in chans and market.get("swap") and self.exchange.has.get("fetchFundingRate"):
                        fr = await asyncio.to_thread(self.exchange.fetch_funding_rate, s)
                        e = self._funding_event(s, fr)
                        if e is not None:
                            await queue.put(e)
                    if "oi" in chans and market.get("contract") and self.exchange.has.get("fetchOpenInterest"):
                        oi = await asyncio.to_thread(self.exchange.fetch_open_interest, s)
                        e2 = self._oi_event(s, oi)
                        if e2 is not None:
                            await queue.put(e2)
                await asyncio.sleep(self.poll_seconds)

        async def guard(coro: Any) -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # surface the failure to the consumer
                await queue.put(exc)

        tasks = []
        for s in self.symbols:
            if "bar" in self.channels and has_ohlcv:
                tasks.append(asyncio.ensure_future(guard(bars(s))))
            if "depth" in self.channels and has_book:
                tasks.append(asyncio.ensure_future(guard(books(s))))
        tasks.append(asyncio.ensure_future(guard(rest_poll())))
        n = 0
        try:
            while max_events is None or n < max_events:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                n += 1
                yield item
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
