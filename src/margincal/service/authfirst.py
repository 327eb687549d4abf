"""Authenticate before the body is read.

FastAPI parses a request body before it runs the dependencies that check the API key, so an anonymous
request with invalid JSON would get a 422 (and cost a parse) instead of a 401. This ASGI middleware checks
the key of every ``/api/`` request that carries a body (POST, PUT, PATCH, DELETE) first, with the same
:func:`margincal.service.auth.authenticate` and the same cache of verified keys as the route dependency,
and answers 401 in the service's error envelope without reading the body. Role checks stay in the
routes (403), which see the cached principal.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from margincal.errors import AuthError
from margincal.service.auth import authenticate

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# anything shaped like an API key (mc_<12 hex>_<secret>), also percent-encoded separators
_KEY_IN_TEXT = re.compile(r"mc(?:_|%5[fF])[0-9a-fA-F]{12}(?:_|%5[fF])[A-Za-z0-9_%-]{8,}")


def redact(text: str) -> str:
    """``text`` with every key-shaped token replaced by ``mc_<redacted>``."""
    return _KEY_IN_TEXT.sub("mc_<redacted>", text)


class RedactKeys(logging.Filter):
    """Access-log filter: a key someone put in a URL never reaches the log (uvicorn logs path and query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install_log_redaction() -> None:
    for name in ("uvicorn.access", "uvicorn.error"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, RedactKeys) for f in lg.filters):
            lg.addFilter(RedactKeys())


def _key(headers: dict[bytes, bytes]) -> str | None:
    k = headers.get(b"x-api-key")
    if k:
        return k.decode("latin-1")
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


class AuthFirstMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _KEY_IN_TEXT.search(scope.get("query_string", b"").decode("latin-1")):
            # a key in the URL leaks (proxies, history, logs): refused, whatever the route
            await _answer(scope, send, 400, "bad_request", "API keys go in the X-API-Key header (or Authorization: "
                          "Bearer), never in the URL; revoke a key that was sent in one")
            return
        if (scope["type"] != "http" or scope.get("method") not in _BODY_METHODS
                or not str(scope.get("path", "")).startswith("/api/")):
            await self.app(scope, receive, send)
            return
        app: Any = scope.get("app")
        state = getattr(app, "state", None)
        store = getattr(state, "store", None)
        cache = getattr(state, "principals", None)
        key = _key(dict(scope.get("headers") or []))
        if store is None or cache is None:
            await self.app(scope, receive, send)
            return
        ok = key is not None and cache.get(key, store.generation) is not None
        detail = "missing API key: send it in the X-API-Key header (or Authorization: Bearer)"
        if key is not None and not ok:
            def check() -> Any:
                if not store.is_open():
                    store.open()
                with store.cursor() as cur:
                    return authenticate(cur, key)

            try:
                principal = await anyio.to_thread.run_sync(check)
                cache.put(key, store.generation, principal)
                ok = True
            except AuthError as exc:
                detail = str(exc)
        if ok:
            await self.app(scope, receive, send)
            return
        await _answer(scope, send, 401, "unauthorized", detail,
                      [(b"www-authenticate", b'Bearer, ApiKey header="X-API-Key"')])


async def _answer(scope: Scope, send: Send, status: int, error: str, detail: str,
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """An answer in the service's error envelope, sent without reading the request body."""
    rid = str((scope.get("state") or {}).get("request_id") or uuid.uuid4().hex[:16])
    body = json.dumps({"error": error, "detail": detail, "request_id": rid}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *(extra or []), (b"x-request-id", rid.encode())]})
    await send({"type": "http.response.body", "body": body})
