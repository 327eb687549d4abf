"""Issue 16 item 11: a request-header time-out (slowloris): a client trickling its headers is disconnected after
the time-out, while a normal request on the same server is answered. Real uvicorn server, real sockets."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from margincal.service.httpproto import protocol_with_timeout


async def _app(scope, receive, send):  # type: ignore[no-untyped-def]
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_slow_headers_are_cut_off_normal_requests_are_served() -> None:
    port = _free_port()
    cfg = uvicorn.Config(_app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                         http=protocol_with_timeout(0.5), timeout_keep_alive=5)
    server = uvicorn.Server(cfg)
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    try:
        t0 = time.monotonic()
        while not server.started and time.monotonic() - t0 < 10:
            time.sleep(0.02)
        assert server.started
        with socket.create_connection(("127.0.0.1", port), timeout=5) as ok:
            ok.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert ok.recv(1024).startswith(b"HTTP/1.1 200")
        slow = socket.create_connection(("127.0.0.1", port), timeout=5)
        t1 = time.monotonic()
        closed_after = None
        try:
            for ch in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 50:
                slow.sendall(bytes([ch]))
                time.sleep(0.05)
        except OSError:
            closed_after = time.monotonic() - t1
        if closed_after is None:
            assert slow.recv(1024) == b""  # the server closed the connection
            closed_after = time.monotonic() - t1
        slow.close()
        assert 0.4 <= closed_after < 4.0, closed_after
        # a header sent in one go after a pause shorter than the time-out is still served
        with socket.create_connection(("127.0.0.1", port), timeout=5) as ok2:
            time.sleep(0.2)
            ok2.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert ok2.recv(1024).startswith(b"HTTP/1.1 200")
    finally:
        server.should_exit = True
        th.join(timeout=10)
