"""Feeds: event objects, ReplayFeed over a store, LiveFeed over a real ccxt client with recorded responses."""

from __future__ import annotations

import asyncio
import math
import sys
from pathlib import Path

import ccxt
import ccxt.pro
import pandas as pd
import pytest

from margincal.config import sample_data_dir
from margincal.data.feeds import (
    BarEvent,
    DepthEvent,
    FundingEvent,
    LiveFeed,
    OpenInterestEvent,
    ReplayFeed,
    event_key,
)
from margincal.data.store import connect, transaction
from margincal.errors import ConfigError, DataError

sys.path.insert(0, str(Path(__file__).parent))
from binance_fake import FakeAiohttpSession, FakeBinanceSession, fixture

H = pd.Timedelta(hours=1)


# ------------------------------------------------------------------ events
def test_bar_event_is_known_at_its_close():
    ev = BarEvent("BTC-PERP", "2022-11-09 10:00", 1.0, 2.0, 0.5, 1.5, 10.0, "1h")
    assert ev.ts == pd.Timestamp("2022-11-09 10:00", tz="UTC")
    assert ev.available_at == pd.Timestamp("2022-11-09 11:00", tz="UTC")
    assert ev.t_ns == pd.Timestamp("2022-11-09 11:00", tz="UTC").value
    with pytest.raises(AttributeError):  # frozen
        ev.close = 3.0  # type: ignore[misc]
    assert BarEvent("X", "2022-11-09", 1, 1, 1, 1, 0, "1d").available_at == pd.Timestamp("2022-11-10", tz="UTC")


def test_depth_event_measures_worked_example():
    ev = DepthEvent("BTC-PERP", "2022-11-09", bids=((99.0, 2.0), (100.0, 1.0), (98.0, 5.0)),
                    asks=((100.5, 1.0), (101.0, 3.0), (103.0, 7.0)))
    assert ev.bids[0] == (100.0, 1.0) and ev.asks[0] == (100.5, 1.0)  # sorted best first
    assert ev.mid == 100.25
    assert ev.spread_bps == pytest.approx(1e4 * 0.5 / 100.25)
    # within 100 bps of 100.25: bids >= 99.2475 -> 100x1; asks <= 101.2525 -> 100.5x1 + 101x3
    assert ev.depth_notional(100) == pytest.approx(100.0 + 100.5 + 303.0)
    with pytest.raises(DataError, match="crossed book"):
        DepthEvent("X", "2022-11-09", bids=((101.0, 1.0),), asks=((100.0, 1.0),))
    with pytest.raises(DataError, match="neither notional nor contracts"):
        OpenInterestEvent("X", "2022-11-09", None, None)


def test_event_key_orders_by_time_then_kind():
    t = pd.Timestamp("2022-11-09 08:00", tz="UTC")
    bar = BarEvent("ETH-PERP", t - H, 1, 1, 1, 1, 1, "1h")  # known at 08:00
    fund = FundingEvent("BTC-PERP", t, 0.0001)
    oi = OpenInterestEvent("BTC-PERP", t, 1e9)
    assert sorted([oi, fund, bar], key=event_key) == [bar, fund, oi]


# ------------------------------------------------------------------ replay
@pytest.fixture(scope="module")
def csv() -> dict[str, pd.DataFrame]:
    d = sample_data_dir()
    out = {}
    for f, inst in [("btcusdt_perp_1h.csv.gz", "BTC-PERP"), ("ethusdt_perp_1h.csv.gz", "ETH-PERP")]:
        df = pd.read_csv(d / f)
        df["ts"] = pd.to_datetime(df["timestamp"], utc=True)
        out[inst] = df[(df["ts"] >= "2022-10-30") & (df["ts"] < "2022-11-06")].reset_index(drop=True)
    f = pd.read_csv(d / "btcusdt_funding.csv")
    f["ts"] = pd.to_datetime(f["funding_time"], utc=True)
    out["funding"] = f[(f["ts"] >= "2022-10-30") & (f["ts"] < "2022-11-06")].reset_index(drop=True)
    return out


@pytest.fixture(scope="module")
def replay_store(tmp_path_factory, csv) -> Path:
    path = tmp_path_factory.mktemp("feeds") / "replay.duckdb"
    con = connect(path)
    with transaction(con):
        for inst in ("BTC-PERP", "ETH-PERP"):
            for r in csv[inst].itertuples():
                con.execute("INSERT INTO bars VALUES (?, '1h', ?, ?, ?, ?, ?, ?)",
                            [inst, r.ts.tz_localize(None), r.open, r.high, r.low, r.close, r.volume])
        for r in csv["funding"].itertuples():
            con.execute("INSERT INTO funding VALUES ('BTC-PERP', ?, ?)", [r.ts.tz_localize(None), r.funding_rate])
        con.execute("INSERT INTO open_interest VALUES ('BTC-PERP', '2022-11-02', 7.1e9, NULL)")
        for side, p, s in [("bid", 20000.0, 1.0), ("bid", 19990.0, 2.0), ("ask", 20010.0, 1.5)]:
            con.execute("INSERT INTO depth_snapshots VALUES ('BTC-PERP', '2022-11-02 12:30', ?, ?, ?)", [side, p, s])
    con.close()
    return path


def test_replay_merges_all_kinds_in_key_order(replay_store, csv):
    start, end = pd.Timestamp("2022-11-01", tz="UTC"), pd.Timestamp("2022-11-03 23:59", tz="UTC")
    evs = list(ReplayFeed(replay_store, ["BTC-PERP", "ETH-PERP"], start, end))
    keys = [event_key(e) for e in evs]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert all(start.value <= e.t_ns <= end.value for e in evs)
    # bars: every CSV row whose close time (open + 1h) is inside [start, end], with identical values
    for inst in ("BTC-PERP", "ETH-PERP"):
        ref = csv[inst][(csv[inst]["ts"] + H >= start) & (csv[inst]["ts"] + H <= end)]
        got = [e for e in evs if e.kind == "bar" and e.instrument == inst]
        assert len(got) == len(ref) == 72
        for e, r in zip(got, ref.itertuples(), strict=True):
            assert (e.ts, e.open, e.high, e.low, e.close, e.volume) == (r.ts, r.open, r.high, r.low, r.close, r.volume)
    fund = [e for e in evs if e.kind == "funding"]
    ref_f = csv["funding"][(csv["funding"]["ts"] >= start) & (csv["funding"]["ts"] <= end)]
    assert [(e.ts, e.rate) for e in fund] == list(zip(ref_f["ts"], ref_f["funding_rate"], strict=True))
    oi = [e for e in evs if e.kind == "oi"]
    assert len(oi) == 1 and oi[0].oi_notional == 7.1e9
    depth = [e for e in evs if e.kind == "depth"]
    assert len(depth) == 1 and depth[0].bids == ((20000.0, 1.0), (19990.0, 2.0)) and depth[0].asks == ((20010.0, 1.5),)


def test_replay_resume_after_key_and_chunking(replay_store):
    start, end = "2022-11-01", "2022-11-04"
    full = list(ReplayFeed(replay_store, None, start, end))
    small_chunks = list(ReplayFeed(replay_store, None, start, end, chunk="7h"))
    assert small_chunks == full
    k = 57
    rest = list(ReplayFeed(replay_store, None, start, end, after=event_key(full[k])))
    assert rest == full[k + 1:]


def test_replay_with_connection_and_missing_instrument(replay_store):
    con = connect(replay_store, read_only=True)
    try:
        evs = list(ReplayFeed(con, ["ETH-PERP"], "2022-11-01", "2022-11-01 05:00", kinds=("bar",)))
        # events KNOWN in [00:00, 05:00] (both inclusive): the bars opened 23:00 .. 04:00
        assert [e.ts.hour for e in evs] == [23, 0, 1, 2, 3, 4]
        with pytest.raises(DataError, match="no stored data for SOL-PERP"):
            list(ReplayFeed(con, ["SOL-PERP"], "2022-11-01", "2022-11-02"))
        with pytest.raises(DataError, match="has no 1d bars"):
            list(ReplayFeed(con, ["BTC-PERP"], "2022-11-01", "2022-11-02", timeframe="1d"))
    finally:
        con.close()
    with pytest.raises(ConfigError, match="speed"):
        ReplayFeed(replay_store, None, "2022-11-01", "2022-11-02", speed=0)
    with pytest.raises(ConfigError, match="before its start"):
        ReplayFeed(replay_store, None, "2022-11-02", "2022-11-01")


def test_replay_speed_sleeps_market_gaps_over_speed(replay_store):
    clock = {"t": 100.0}
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock["t"] += s

    feed = ReplayFeed(replay_store, ["BTC-PERP"], "2022-11-01 01:00", "2022-11-01 06:00", speed=1800.0,
                      kinds=("bar",), sleep=sleep, clock=lambda: clock["t"])
    evs = list(feed)
    assert len(evs) == 6
    # hourly bars at speed 1800 (half an hour of market per second): 2 s between events, 5 gaps
    assert sleeps == pytest.approx([2.0] * 5)


# ------------------------------------------------------------------ live (ccxt with recorded responses)
NOW = 1668121200000 + 3_600_000 + 5_000  # 5 s after the last recorded bar (2022-11-10 23:00) closed


def _exchange() -> ccxt.binanceusdm:
    ex = ccxt.binanceusdm({"enableRateLimit": False})
    ex.session = FakeBinanceSession()  # only the HTTP transport is replaced
    return ex


def test_live_poll_uses_ccxt_parsing_and_pagination(csv):
    ex = _exchange()
    feed = LiveFeed(ex, ["BTC/USDT:USDT"], "1h", 5.0, backfill_bars=1200, clock_ms=lambda: NOW)
    evs = feed.poll_once()
    calls = [c for c in ex.session.calls]
    paths = [p for p, _ in calls]
    assert paths[0] == "/fapi/v1/exchangeInfo"
    kl = [q for p, q in calls if p == "/fapi/v1/klines"]
    assert len(kl) == 2  # 1200 bars > 1000 per request: ccxt split the range into two requests
    assert all(q["symbol"] == "BTCUSDT" and q["interval"] == "1h" for q in kl)
    bars = [e for e in evs if e.kind == "bar"]
    assert len(bars) == 1200 and bars[-1].ts == pd.Timestamp("2022-11-10 23:00", tz="UTC")
    assert all(b.instrument == "BTC-PERP" for b in bars)
    # values equal the bundled CSV (the fixture's source), parsed from strings by ccxt
    src = pd.read_csv(sample_data_dir() / "btcusdt_perp_1h.csv.gz")
    src["ts"] = pd.to_datetime(src["timestamp"], utc=True)
    src = src.set_index("ts")
    for b in bars[::97] + [bars[-1]]:
        r = src.loc[b.ts]
        assert (b.open, b.high, b.low, b.close) == pytest.approx((r.open, r.high, r.low, r.close), rel=1e-12)
        assert b.volume == pytest.approx(r.volume, rel=1e-12)
    prem = fixture("ccxt_binance_fapi_premiumIndex_BTCUSDT.json")
    (fund,) = [e for e in evs if e.kind == "funding"]
    assert fund.rate == float(prem["lastFundingRate"]) and fund.mark_price == float(prem["markPrice"])
    assert fund.ts.value == prem["time"] * 1_000_000
    assert fund.next_funding_ts.value == prem["nextFundingTime"] * 1_000_000
    (oi,) = [e for e in evs if e.kind == "oi"]
    # Binance gives contracts only; notional = contracts x contract size (1 BTC) x mark price
    assert oi.oi_contracts == 10659.509
    assert oi.oi_notional == pytest.approx(10659.509 * 11793.63104562, rel=1e-12)
    (book,) = [e for e in evs if e.kind == "depth"]
    raw = fixture("ccxt_binance_fapi_depth_BTCUSDT.json")
    assert len(book.bids) == len(book.asks) == 20
    assert book.best_bid == float(raw["bids"][0][0]) and book.best_ask == float(raw["asks"][0][0])
    dq = [q for p, q in calls if p == "/fapi/v1/depth"]
    assert dq[0]["limit"] == "20"
    # second round: nothing new has closed and the other endpoints repeat the same timestamps
    assert feed.poll_once() == []


def test_live_poll_emits_only_closed_bars_once():
    ex = _exchange()
    clock = {"now": 1668121200000 + 1_800_000}  # 23:30: the 23:00 bar is still forming
    feed = LiveFeed(ex, ["BTC/USDT:USDT"], "1h", 5.0, channels=("bar",), backfill_bars=3,
                    clock_ms=lambda: clock["now"])
    first = feed.poll_once()
    assert [e.ts.hour for e in first] == [20, 21, 22]
    clock["now"] = NOW  # the 23:00 bar has closed
    assert [e.ts.hour for e in feed.poll_once()] == [23]
    assert feed.poll_once() == []


def test_live_rejects_unknown_symbol_and_timeframe():
    with pytest.raises(ConfigError, match="no market 'DOGE/XYZ:XYZ'"):
        LiveFeed(_exchange(), ["DOGE/XYZ:XYZ"], "1h").poll_once()
    with pytest.raises(ConfigError, match="does not offer timeframe 7h"):
        LiveFeed(_exchange(), ["BTC/USDT:USDT"], "7h").poll_once()


def test_live_websocket_stream_emits_closed_bars():
    payloads = fixture("ccxt_binance_ws_kline_BTCUSDT_1h.json")

    async def run() -> tuple[list[BarEvent], list[dict], list[str]]:
        session = FakeAiohttpSession(payloads)
        ws = ccxt.pro.binanceusdm({"session": session})
        feed = LiveFeed(_exchange(), ["BTC/USDT:USDT"], "1h", 1000.0, channels=("bar",), ws_exchange=ws,
                        clock_ms=lambda: NOW)
        out = []
        try:
            async for e in feed.stream(max_events=3):
                out.append(e)
        finally:
            await ws.close()
        return out, session.ws.sent, session.urls

    out, sent, urls = asyncio.run(asyncio.wait_for(run(), timeout=60))
    assert sent[0]["method"] == "SUBSCRIBE" and sent[0]["params"] == ["btcusdt@kline_1h"]
    assert urls[0].startswith("wss://fstream.binance.com/")
    # four bars stream in (each first forming, then closed); the last is still open when the 4th starts
    closed = [p["k"] for p in payloads if p["k"]["x"]][:3]
    assert [e.ts.value // 1_000_000 for e in out] == [k["t"] for k in closed]
    assert [e.close for e in out] == [float(k["c"]) for k in closed]
    assert [e.volume for e in out] == [float(k["v"]) for k in closed]
    assert all(math.isfinite(e.high) and e.high >= e.low for e in out)


# ------------------------------------------------------------------ live == replay, through outages
class _FlakySession:
    """The recorded Binance session, with a dropped connection, a gap and out-of-order, repeated rows."""

    def __init__(self, missing: set[int]) -> None:
        import requests

        self.inner = FakeBinanceSession()
        self.inner.klines = [r for r in self.inner.klines if r[0] not in missing]
        self.cookies, self.headers = self.inner.cookies, self.inner.headers
        self.kline_calls = 0
        self.exc = requests.exceptions.ConnectionError("connection reset by peer")

    def request(self, method, url, **kwargs):
        if "/fapi/v1/klines" in url:
            self.kline_calls += 1
            if self.kline_calls in (3, 4):  # two failures in a row: a disconnect of a few seconds
                raise self.exc
            resp = self.inner.request(method, url, **kwargs)
            rows = resp.json() if hasattr(resp, "json") else None
            if isinstance(rows, list) and len(rows) > 1 and self.kline_calls % 2 == 0:
                # out of order, with an old row repeated: what a reconnecting client can receive
                from binance_fake import _Response

                return _Response(list(reversed(rows)) + [rows[0]])
            return resp
        return self.inner.request(method, url, **kwargs)


def test_live_and_replay_deliver_the_same_stream_through_disconnects_gaps_and_disorder(tmp_path):
    from margincal.adjust.engine import Adjustment, MonitorEngine
    from margincal.adjust.policy import default_policy

    raw = fixture("ccxt_binance_fapi_klines_BTCUSDT_1h.json")
    first, tf = raw[-260][0], 3_600_000
    missing = {first + k * tf for k in (200, 201, 202, 203)}  # four bars the exchange never serves
    ex = ccxt.binanceusdm({"enableRateLimit": False})
    ex.session = _FlakySession(missing)
    clock = {"now": first + 120 * tf + 5_000}
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        clock["now"] += 3 * tf  # three more bars close during each pause (including the retry pauses)

    feed = LiveFeed(ex, ["BTC/USDT:USDT"], "1h", 5.0, channels=("bar",), backfill_bars=120,
                    clock_ms=lambda: clock["now"], sleep=sleep)
    live = list(feed.iter_events(max_polls=50))
    assert feed.disconnects == 2 and (feed.last_error or "").startswith("NetworkError")
    assert sleeps[:4].count(5.0) >= 1 and 10.0 in sleeps  # back-off: 5 s then 10 s
    # the replay of the same bars from a store (the bundled CSV is the fixture's source)
    src = pd.read_csv(sample_data_dir() / "btcusdt_perp_1h.csv.gz")
    src["ts"] = pd.to_datetime(src["timestamp"], utc=True)
    lo, hi = live[0].ts, live[-1].ts
    src = src[(src["ts"] >= lo) & (src["ts"] <= hi)]
    src = src[~src["ts"].map(lambda t: t.value // 1_000_000).isin(missing)]
    con = connect(tmp_path / "s.duckdb")
    with transaction(con):
        frame = pd.DataFrame({"instrument": "BTC-PERP", "timeframe": "1h", "ts": src["ts"].dt.tz_localize(None),
                              "open": src["open"], "high": src["high"], "low": src["low"], "close": src["close"],
                              "volume": src["volume"]})
        con.register("frame", frame)
        con.execute("INSERT INTO bars SELECT * FROM frame")
    con.close()
    replay = list(ReplayFeed(tmp_path / "s.duckdb", ["BTC-PERP"], lo, hi + H))
    assert [event_key(e) for e in live] == [event_key(e) for e in replay]  # same order, each once
    for a, b in zip(live, replay, strict=True):
        assert (a.open, a.high, a.low, a.close) == pytest.approx((b.open, b.high, b.low, b.close), rel=1e-12)
        assert a.volume == pytest.approx(b.volume, rel=1e-12)
    # the monitor reports the gap as stale data and makes no change on that bar
    eng = MonitorEngine(default_policy(), None, live_from=lo)
    after_gap = None
    for e in live:
        out = eng.process(e) or []
        if any(getattr(x, "kind", "") == "stale_data" for x in out):
            after_gap = (e, out)
    assert after_gap is not None and after_gap[0].ts.value // 1_000_000 == max(missing) + tf
    assert not any(isinstance(x, Adjustment) for x in after_gap[1])
