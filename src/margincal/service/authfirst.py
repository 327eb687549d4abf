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
import uuid
from typing import Any

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from margincal.errors import AuthError
from margincal.service.auth import authenticate

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


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
        rid = str((scope.get("state") or {}).get("request_id") or uuid.uuid4().hex[:16])
        body = json.dumps({"error": "unauthorized", "detail": detail, "request_id": rid}).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer, ApiKey header="X-API-Key"'), (b"x-request-id", rid.encode())]})
        await send({"type": "http.response.body", "body": body})
