"""A stand-in for the HTTP (requests) and websocket (aiohttp) layers under a real ccxt Binance USD-M client.

Only the transport is replaced: every URL is built, every parameter chosen, every
response parsed and paginated by ccxt's own code. The server side answers from
the fixtures in tests/reference (see ccxt_binance_fapi_README.md).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

REF = Path(__file__).parents[1] / "reference"


def fixture(name: str) -> Any:
    return json.loads((REF / name).read_text())


class _Response:
    def __init__(self, body: Any, status: int = 200) -> None:
        self.status_code = status
        self.reason = "OK" if status == 200 else "Bad Request"
        self.headers: dict[str, str] = {"Content-Type": "application/json"}
        self.text = json.dumps(body)
        self.encoding = "utf-8"

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            import requests

            raise requests.HTTPError(f"{self.status_code}", response=self)  # type: ignore[arg-type]


class _Cookies:
    def clear(self) -> None:
        pass


class FakeBinanceSession:
    """``requests.Session`` look-alike serving recorded Binance USD-M responses."""

    def __init__(self) -> None:
        self.cookies = _Cookies()
        self.headers: dict[str, str] = {}
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.klines = fixture("ccxt_binance_fapi_klines_BTCUSDT_1h.json")

    def request(self, method: str, url: str, **kwargs: Any) -> _Response:
        parts = urlsplit(url)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.calls.append((parts.path, q))
        path = parts.path
        if path == "/fapi/v1/exchangeInfo":
            return _Response(fixture("ccxt_binance_fapi_exchangeInfo.json"))
        if path == "/fapi/v1/klines":
            if q.get("symbol") != "BTCUSDT" or q.get("interval") != "1h":
                return _Response({"code": -1121, "msg": "Invalid symbol."}, 400)
            lo = int(q.get("startTime", 0))
            hi = int(q.get("endTime", 1 << 62))
            limit = min(int(q.get("limit", 500)), 1500)
            rows = [r for r in self.klines if lo <= r[0] <= hi]
            return _Response(rows[:limit])  # Binance returns the first `limit` klines from startTime
        if path == "/fapi/v1/premiumIndex":
            return _Response(fixture("ccxt_binance_fapi_premiumIndex_BTCUSDT.json"))
        if path == "/fapi/v1/openInterest":
            return _Response(fixture("ccxt_binance_fapi_openInterest_BTCUSDT.json"))
        if path == "/fapi/v1/depth":
            book = fixture("ccxt_binance_fapi_depth_BTCUSDT.json")
            n = int(q.get("limit", 500))
            book["bids"], book["asks"] = book["bids"][:n], book["asks"][:n]
            return _Response(book)
        return _Response({"code": -1000, "msg": f"no fixture for {path}"}, 400)


# ------------------------------------------------------------------ websockets (aiohttp look-alike)
class _WSMessage:
    def __init__(self, data: str) -> None:
        from aiohttp import WSMsgType

        self.type = WSMsgType.TEXT
        self.data = data
        self.extra = None


class FakeWebSocket:
    """Server side of a Binance USD-M market stream: acknowledges SUBSCRIBE and replays recorded payloads."""

    def __init__(self, payloads: list[dict[str, Any]]) -> None:
        self.payloads = payloads
        self.queue: asyncio.Queue[_WSMessage] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.closed = False
        self._conn = None

    async def receive(self) -> _WSMessage:
        return await self.queue.get()

    async def send_str(self, text: str) -> None:
        msg = json.loads(text)
        self.sent.append(msg)
        await self.queue.put(_WSMessage(json.dumps({"result": None, "id": msg.get("id")})))
        streams = msg.get("params", [])
        for p in self.payloads:
            if f"{p['s'].lower()}@kline_{p['k']['i']}" in streams:
                await self.queue.put(_WSMessage(json.dumps(p)))

    async def close(self, *args: Any, **kwargs: Any) -> None:
        self.closed = True

    async def ping(self, *args: Any) -> None:
        pass

    async def pong(self, *args: Any) -> None:
        pass


class _Ctx:
    def __init__(self, ws: FakeWebSocket) -> None:
        self.ws = ws

    async def __aenter__(self) -> FakeWebSocket:
        return self.ws

    async def __aexit__(self, *args: Any) -> None:
        return None


class FakeAiohttpSession:
    closed = False

    def __init__(self, payloads: list[dict[str, Any]]) -> None:
        self.ws = FakeWebSocket(payloads)
        self.urls: list[str] = []

    def ws_connect(self, url: str, **kwargs: Any) -> _Ctx:
        self.urls.append(url)
        return _Ctx(self.ws)

    async def close(self) -> None:
        pass
