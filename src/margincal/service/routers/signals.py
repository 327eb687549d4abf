"""Signals: a list endpoint and a server-sent events stream (signals and audit events as they land).

The stream polls the store every ``poll_interval`` seconds (a setting of the
app, 1 s by default) for audit-log entries with a higher sequence number and
signals with a higher insertion sequence (not a later market time: signals of a
replay of an earlier period are delivered too), and sends each as one SSE message::

    id: <audit seq>~<signal seq>
    event: audit | signal
    data: {...json...}

A client reconnecting with ``Last-Event-ID`` (browsers' EventSource do) resumes
after the last message it saw. A comment line (``: keep-alive``) goes out every
15 s so proxies keep the connection. The stream closes itself after
``max_seconds`` (default 600); clients reconnect.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from margincal.service import backends
from margincal.service.deps import Con, Reader

router = APIRouter(prefix="/api/signals", tags=["signals"])


@router.get("", summary="Latest signals, newest first", response_model=None)
def list_signals(
    _: Reader, con: Con,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    instrument: Annotated[str | None, Query(max_length=64)] = None,
    severity: Annotated[Literal["info", "warning", "critical"] | None, Query()] = None,
) -> list[dict[str, Any]]:
    return backends.signals(con, limit=limit, instrument=instrument, severity=severity)


def _parse_cursor(text: str | None) -> tuple[int, str | None] | None:
    """``<audit seq>~<signal cursor>`` as sent in the ``id:`` of each event; a malformed one is a 400."""
    if not text:
        return None
    seq, _, ts = text.partition("~")
    if not seq.isascii() or not seq.isdigit() or len(seq) > 18 or (ts and not (ts.isascii() and ts.isdigit()
                                                                                 and len(ts) <= 18)):
        raise HTTPException(400, "malformed Last-Event-ID: send back the id of an event this stream sent")
    return int(seq), (ts or None)


def _sse(event: dict[str, Any], cursor: str) -> bytes:
    return (f"id: {cursor}\nevent: {event.get('type', 'message')}\n"
            f"data: {json.dumps(event, separators=(',', ':'), default=str)}\n\n").encode()


@router.get("/stream", summary="Server-sent events: new signals and audit entries (publish, approve, reject...)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "an SSE stream"}})
async def stream(
    request: Request, _: Reader,
    backlog: Annotated[int, Query(ge=0, le=500, description="recent events sent first")] = 20,
    max_seconds: Annotated[float, Query(ge=0, le=3600, description="the stream closes after this long")] = 600,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=100)] = None,
) -> StreamingResponse:
    store = request.app.state.store
    poll = float(request.app.state.settings.sse_poll_interval)

    cur0 = _parse_cursor(last_event_id)

    def start() -> tuple[int, str | None]:
        cur = cur0
        if cur is not None:
            try:  # a cursor the store cannot resume from is refused now, before the 200
                with store.cursor(touch=False) as con:
                    backends.events_after(con, cur[0], cur[1])
            except Exception:
                raise HTTPException(400, "malformed Last-Event-ID: send back the id of an event this stream "
                                    "sent") from None
            return cur
        with store.cursor(touch=False) as con:
            seq = max(backends.audit_tail(con) - backlog, 0)
            sig = backends.signal_tail(con, skip=backlog)
        return seq, sig

    def fetch(seq: int, sig: str | None) -> tuple[list[dict[str, Any]], int, str | None]:
        with store.cursor(touch=False) as con:
            return backends.events_after(con, seq, sig)

    seq, sig = await anyio.to_thread.run_sync(start)

    async def gen() -> AsyncIterator[bytes]:
        nonlocal seq, sig
        deadline = time.monotonic() + max_seconds
        last_beat = time.monotonic()
        yield b": margincal event stream\nretry: 3000\n\n"
        first = True
        while True:
            events, seq, sig = await anyio.to_thread.run_sync(fetch, seq, sig)
            if first and backlog and cur0 is None:  # a resumed stream gets everything after its cursor
                events = events[-backlog:]
            first = False
            for ev in events:
                yield _sse(ev, ev.pop("cursor", f"{seq}~{sig or ''}"))
            now = time.monotonic()
            if now >= deadline or await request.is_disconnected():
                break
            if now - last_beat >= 15.0:
                yield b": keep-alive\n\n"
                last_beat = now
            await asyncio.sleep(min(poll, max(deadline - now, 0.0)))

    return StreamingResponse(gen(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


__all__ = ["Con", "router"]
