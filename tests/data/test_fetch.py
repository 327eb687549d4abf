"""ccxt fetch against recorded Binance responses (only the HTTP call is replaced)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import ccxt
import pandas as pd
import pytest

from margincal.data.fetch import fetch_bars, make_exchange
from margincal.data.store import load_bars
from margincal.errors import ConfigError, DataError


class Recorded:
    """Serves recorded responses by URL, like Binance would; can inject failures."""

    def __init__(self, reference_dir, fail_on: dict[int, Exception] | None = None):
        self.klines = json.loads((reference_dir / "ccxt_binance_klines_BTCUSDT_1h_2024-01-01_03.json").read_text())[
            "klines"]
        self.info = json.loads((reference_dir / "ccxt_binance_exchangeInfo_BTCUSDT.json").read_text())
        self.kline_calls: list[dict[str, list[str]]] = []
        self.fail_on = fail_on or {}

    def __call__(self, url, method="GET", headers=None, body=None):
        if "exchangeInfo" in url:
            return self.info
        if "/klines" in url:
            q = parse_qs(urlparse(url).query)
            self.kline_calls.append(q)
            n = len(self.kline_calls)
            if n in self.fail_on:
                exc = self.fail_on.pop(n)
                raise exc
            start, limit = int(q["startTime"][0]), int(q.get("limit", ["500"])[0])
            return [k for k in self.klines if k[0] >= start][:limit]
        raise ccxt.ExchangeError(f"no recording for {url}")


@pytest.fixture
def exchange():
    ex = make_exchange("binance", {"enableRateLimit": False, "options": {"fetchMarkets": {"types": ["spot"]}}})
    return ex


def ts(s: str) -> int:
    return int(pd.Timestamp(s).value // 1_000_000)


def test_paginated_fetch_stores_the_real_bars(con, exchange, reference_dir, data_dir):
    rec = Recorded(reference_dir)
    exchange.fetch = rec
    rep = fetch_bars(con, exchange, "BTC/USDT", "1h", "2024-01-01", now="2024-01-04", page_limit=24)
    assert rep.pages == 3 and rep.bars_inserted == 72 and rep.instrument == "BTC-USDT"
    # each page starts one bar after the previous page's last bar
    assert [int(c["startTime"][0]) for c in rec.kline_calls[:3]] == [
        ts("2024-01-01"), ts("2024-01-02"), ts("2024-01-03")]
    assert all(c["symbol"] == ["BTCUSDT"] and c["interval"] == ["1h"] for c in rec.kline_calls)
    stored = load_bars(con, "BTC-USDT", "1h")
    ref = pd.read_csv(data_dir / "btcusdt_1h.csv.gz")
    ref = ref[(ref.timestamp >= "2024-01-01T00:00:00Z") & (ref.timestamp < "2024-01-04T00:00:00Z")]
    assert stored["close"].tolist() == ref["close"].tolist()
    assert stored["volume"].tolist() == pytest.approx(ref["volume"].tolist(), rel=1e-12)


def test_resumes_after_last_stored_bar(con, exchange, reference_dir):
    rec = Recorded(reference_dir)
    exchange.fetch = rec
    first = fetch_bars(con, exchange, "BTC/USDT", "1h", "2024-01-01", until="2024-01-02", now="2024-01-04")
    assert first.bars_inserted == 24
    rec.kline_calls.clear()
    second = fetch_bars(con, exchange, "BTC/USDT", "1h", "2024-01-01", now="2024-01-04")
    assert second.resumed_from == "2024-01-01 23:00:00+00:00"
    assert int(rec.kline_calls[0]["startTime"][0]) == ts("2024-01-02")
    assert second.bars_inserted == 48 and len(load_bars(con, "BTC-USDT", "1h")) == 72


def test_bar_still_forming_is_not_stored(con, exchange, reference_dir):
    exchange.fetch = Recorded(reference_dir)
    fetch_bars(con, exchange, "BTC/USDT", "1h", "2024-01-03", now="2024-01-03T10:30:00Z")
    bars = load_bars(con, "BTC-USDT", "1h")
    # 00:00..09:00 are complete at 10:30; the 10:00 bar closes at 11:00
    assert len(bars) == 10 and str(bars.index[-1]) == "2024-01-03 09:00:00+00:00"


def test_rate_limit_is_retried_with_backoff(con, exchange, reference_dir):
    rec = Recorded(reference_dir, fail_on={2: ccxt.RateLimitExceeded("429 Too Many Requests")})
    exchange.fetch = rec
    sleeps: list[float] = []
    rep = fetch_bars(con, exchange, "BTC/USDT", "1h", "2024-01-01", now="2024-01-04", page_limit=24,
                     base_delay=0.5, sleep=sleeps.append)
    assert rep.retries == 1 and sleeps == [0.5] and rep.bars_inserted == 72


def test_interrupted_fetch_keeps_finished_pages_and_resumes(con, exchange, reference_dir):
    failures = {i: ccxt.NetworkError("connection reset") for i in range(2, 9)}
    rec = Recorded(reference_dir, fail_on=failures)
    exchange.fetch = rec
    with pytest.raises(DataError, match="giving up after 2 retries.*rerun to resume"):
        fetch_bars(con, exchange, "BTC/USDT", "1h", "2024-01-01", now="2024-01-04", page_limit=24,
                   max_retries=2, sleep=lambda s: None)
    assert len(load_bars(con, "BTC-USDT", "1h")) == 24  # page 1 was committed
    rec.fail_on.clear()
    rep = fetch_bars(con, exchange, "BTC/USDT", "1h", "2024-01-01", now="2024-01-04", page_limit=24)
    assert rep.bars_inserted == 48 and len(load_bars(con, "BTC-USDT", "1h")) == 72


def test_bad_exchange_data_is_rejected_with_page_and_row(con, exchange, reference_dir):
    rec = Recorded(reference_dir)
    rec.klines[30][4] = "-1.0"  # close of the 31st bar, on page 2 (24 per page), row 7
    exchange.fetch = rec
    with pytest.raises(DataError, match=r"binance BTC/USDT 1h page 2 row 7: close is -1; prices must be > 0"):
        fetch_bars(con, exchange, "BTC/USDT", "1h", "2024-01-01", now="2024-01-04", page_limit=24)
    assert len(load_bars(con, "BTC-USDT", "1h")) == 24


def test_unknown_exchange_symbol_and_timeframe(con, exchange, reference_dir):
    with pytest.raises(ConfigError, match="not supported by ccxt"):
        make_exchange("nosuchexchange")
    exchange.fetch = Recorded(reference_dir)
    with pytest.raises(ConfigError, match="no market 'DOGE/EUR'"):
        fetch_bars(con, exchange, "DOGE/EUR", "1h", "2024-01-01", now="2024-01-04")
    with pytest.raises(ConfigError, match="does not offer timeframe 7h"):
        fetch_bars(con, exchange, "BTC/USDT", "7h", "2024-01-01", now="2024-01-04")
