"""The margincal HTTP service: a FastAPI app over the store.

``create_app(ServiceSettings(store=...))`` builds the app; ``margincal serve``
runs it with uvicorn. Every route but ``/health``, the dashboard's static files
and (by default) the API docs needs an API key (see :mod:`margincal.service.auth`).

Errors never carry a stack trace: validation problems answer 422 with the
field and rule, unknown things 404, a locked/unavailable store 503, and any
unexpected exception 500 ``{"error": "internal_error", "request_id": ...}``
while the traceback goes to the server log under that request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from margincal import __version__
from margincal.config import resolve_store_path
from margincal.errors import AuthError, ConfigError, MargincalError, StoreError
from margincal.service import backends
from margincal.service.auth import PrincipalCache
from margincal.service.db import StoreManager
from margincal.service.deps import Forbidden, Unauthenticated, require
from margincal.service.routers import (
    admin,
    announcements,
    health,
    instruments,
    margin,
    parameters,
    proposals,
    results,
    signals,
    views,
)

log = logging.getLogger("margincal.service")

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ServiceSettings:
    """Settings of one service instance.

    ``max_body_bytes``: larger request bodies are refused with 413.
    ``docs_public``: ``/docs`` and ``/openapi.json`` need no key (they describe the API, hold no data);
    set False to require a viewer key for ``/openapi.json``.
    ``sse_poll_interval``: seconds between store polls of the event stream.
    ``busy_timeout``: seconds a request waits for another process's write lock before 503.
    ``release_after``: close the store connection after this many idle seconds (None: keep it open).
    ``policy_path``: the adjustment-policy TOML file admins may replace through ``PUT /api/policy``.
    """

    store: Path | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    docs_public: bool = True
    sse_poll_interval: float = 1.0
    busy_timeout: float = 5.0
    release_after: float | None = None
    policy_path: Path | None = None

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024:
            raise ConfigError(f"max_body_bytes is {self.max_body_bytes}; it must be >= 1024")
        if self.sse_poll_interval <= 0:
            raise ConfigError(f"sse_poll_interval is {self.sse_poll_interval}; it must be > 0")
        if self.release_after is not None and self.release_after <= 0:
            raise ConfigError(f"release_after is {self.release_after}; it must be > 0 (or None)")


class BodyTooLarge(HTTPException):
    """Raised while reading a streamed body past the limit (answered 413 by the HTTP error handler)."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body exceeds the {limit} byte limit")


class LimitsMiddleware:
    """Request id on every request (``X-Request-ID``), security headers, and the body-size limit.

    A declared ``Content-Length`` over the limit is refused before the body is
    read; a chunked body is counted as it streams and refused once past it.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max
            except ValueError:
                too_big = False
            if too_big:
                await _send_json(send, 413, _body_413(self.max, rid), rid)
                return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max:
                    raise BodyTooLarge(self.max)
            return msg

        async def send_with_headers(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                hs = list(msg.get("headers", []))
                hs += [(b"x-request-id", rid.encode()), (b"x-content-type-options", b"nosniff"),
                       (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]
                msg = {**msg, "headers": hs}
            await send(msg)

        await self.app(scope, limited_receive, send_with_headers)


def _body_413(limit: int, rid: str) -> dict[str, Any]:
    return {"error": "payload_too_large", "detail": f"request body exceeds the {limit} byte limit",
            "request_id": rid}


async def _send_json(send: Send, status: int, body: dict[str, Any], rid: str) -> None:
    import json

    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"x-request-id", rid.encode())]})
    await send({"type": "http.response.body", "body": data})


def _rid(request: Request) -> str:
    return str(getattr(request.state, "request_id", None) or uuid.uuid4().hex[:16])


def _err(request: Request, status: int, error: str, detail: Any, headers: dict[str, str] | None = None
         ) -> JSONResponse:
    rid = _rid(request)
    return JSONResponse({"error": error, "detail": detail, "request_id": rid}, status_code=status,
                        headers={**(headers or {}), "X-Request-ID": rid})


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()[:50]]
        return _err(request, 422, "validation_error", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        names = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 422: "validation_error",
                 501: "not_implemented", 503: "unavailable"}
        return _err(request, exc.status_code, names.get(exc.status_code, "error"), exc.detail,
                    dict(exc.headers or {}))

    @app.exception_handler(Unauthenticated)
    async def _unauth(request: Request, exc: Unauthenticated) -> JSONResponse:
        return _err(request, 401, "unauthorized", str(exc), {"WWW-Authenticate": 'Bearer, ApiKey header="X-API-Key"'})

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return _err(request, 403, "forbidden", str(exc))

    @app.exception_handler(backends.ProposalNotFound)
    async def _nf(request: Request, exc: backends.ProposalNotFound) -> JSONResponse:
        return _err(request, 404, "not_found", str(exc))

    @app.exception_handler(backends.ProposalConflict)
    async def _conflict(request: Request, exc: backends.ProposalConflict) -> JSONResponse:
        return _err(request, 409, "conflict", str(exc))

    @app.exception_handler(backends.MarginUnavailable)
    async def _unavailable(request: Request, exc: backends.MarginUnavailable) -> JSONResponse:
        return _err(request, 501, "not_implemented", str(exc))

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        rid = _rid(request)
        log.warning("request %s: store error: %s", rid, exc)
        text = str(exc)
        if "no parameter set has been published" in text:
            return _err(request, 404, "not_found", text)
        return _err(request, 503, "unavailable", "the store is busy or unavailable; retry shortly",
                    {"Retry-After": "2"})

    @app.exception_handler(MargincalError)
    async def _margincal(request: Request, exc: MargincalError) -> JSONResponse:
        if isinstance(exc, AuthError):  # e.g. the four-eyes rule
            return _err(request, 403, "forbidden", str(exc))
        return _err(request, 422, "invalid_request", str(exc))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        rid = _rid(request)
        log.error("request %s %s %s failed", rid, request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal_error", "detail": "internal server error; quote the request id "
                             "to the operator", "request_id": rid}, status_code=500, headers={"X-Request-ID": rid})


def plotly_js_path() -> Path:
    """The plotly.js bundle shipped inside the plotly Python package (served locally: no CDN)."""
    import plotly

    p = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not p.exists():  # pragma: no cover - a broken plotly install
        raise ConfigError(f"plotly.min.js not found in the plotly package ({p.parent.name}); reinstall plotly")
    return p


def create_app(settings: ServiceSettings | None = None, *, store: StoreManager | None = None) -> FastAPI:
    """Build the FastAPI app. ``store`` may be given (tests); otherwise one is made from ``settings.store``."""
    settings = settings or ServiceSettings()
    manager = store or StoreManager(resolve_store_path(settings.store), busy_timeout=settings.busy_timeout,
                                    release_after=settings.release_after)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        manager.open()
        task = asyncio.create_task(_releaser(manager)) if manager.release_after else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            manager.close()

    app = FastAPI(
        title="margincal",
        version=__version__,
        description="Initial and maintenance margin for crypto derivatives: parameters, portfolio margin and "
                    "what-if, signals, proposals (four-eyes), backtest and stress results. Send the API key in "
                    "`X-API-Key` (or `Authorization: Bearer`).",
        docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = manager
    app.state.engine = backends.MarginEngine()
    app.state.history_cache = backends.HistoryCache()
    app.state.principals = PrincipalCache()
    from margincal.service.authfirst import AuthFirstMiddleware, install_log_redaction

    install_log_redaction()

    app.add_middleware(AuthFirstMiddleware)  # inner: runs after the request id and size limit are set
    app.add_middleware(LimitsMiddleware, max_body_bytes=settings.max_body_bytes)
    _install_handlers(app)
    for r in (health, instruments, parameters, margin, signals, announcements, proposals, results, views, admin):
        _annotate_permissions(r.router.routes)
        _document_errors(r.router.routes)
        app.include_router(r.router)

    docs_deps = [] if settings.docs_public else [Depends(require("read"))]

    base_openapi = app.openapi

    def openapi_with_errors() -> dict[str, Any]:
        """The generated schema with every error answer as JSON (a text route's errors are JSON envelopes too)."""
        if app.openapi_schema is None:
            doc = base_openapi()
            for item in doc.get("paths", {}).values():
                for op in item.values():
                    for code, resp in (op.get("responses") or {}).items():
                        content = resp.get("content") or {}
                        if code[:1] in "45" and "application/json" not in content and content:
                            resp["content"] = {"application/json": next(iter(content.values()))}
            _close_pattern_maps(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi_with_errors  # type: ignore[method-assign]

    @app.get("/openapi.json", include_in_schema=False, dependencies=docs_deps)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        return FileResponse(STATIC_DIR / "docs.html", headers=_page_headers())

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    @app.get("/dashboard", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=_page_headers())

    @app.get("/static/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(plotly_js_path(), media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _annotate_permissions(routes: list[Any]) -> None:
    """Write each route's required permission into the OpenAPI schema as ``x-permission``."""
    from fastapi.routing import APIRoute

    def find(dep: Any) -> str | None:
        perm = getattr(dep.call, "permission", None)
        if perm:
            return str(perm)
        for sub in dep.dependencies:
            found = find(sub)
            if found:
                return found
        return None

    for route in routes:
        if isinstance(route, APIRoute):
            perm = find(route.dependant) or "none"
            route.openapi_extra = {**(route.openapi_extra or {}), "x-permission": perm}


_ERROR_TEXT = {
    400: "Malformed request (e.g. a Last-Event-ID this stream never sent)",
    401: "Missing, malformed, unknown or revoked API key",
    403: "The key's role lacks the permission, or the four-eyes rule forbids the action",
    404: "No such resource (version, instrument, proposal, key, result)",
    409: "Conflicts with the current state (already decided, superseded or stale; already revoked)",
    413: "Request body over the size limit, or too many names in one request",
    422: "Invalid field: the envelope's detail names the field and the rule",
    500: "Unexpected error: no stack trace, quote the request id",
    501: "Not available in this build or for this input",
    503: "The store is busy or unavailable; retry after the Retry-After seconds",
}


def _close_pattern_maps(node: Any) -> None:
    """A pydantic ``dict[Annotated[str, Field(pattern=...)], X]`` becomes ``patternProperties`` in the schema, which
    by JSON Schema still admits keys outside the pattern; the model refuses them, so say so
    (``additionalProperties: false``): the schema then describes what the service accepts."""
    if isinstance(node, dict):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for v in node.values():
            _close_pattern_maps(v)
    elif isinstance(node, list):
        for v in node:
            _close_pattern_maps(v)


def _document_errors(routes: list[Any]) -> None:
    """Write the error answers a route can give, with the real envelope (:class:`ErrorBody`), into the OpenAPI
    schema: every /api route 401/403/422/500/503; a body 413; path parameters, ``latest``, results and views 404;
    writes 409; the margin and policy routes 501; the signal routes 400."""
    from fastapi.routing import APIRoute

    from margincal.service.schemas import ErrorBody

    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        codes: set[int] = {500}
        path = route.path
        methods = set(route.methods or ())
        if path.startswith("/api"):
            codes |= {401, 403, 422, 503}
            if "{" in path or path.endswith("/latest") or path.startswith("/api/results"):
                codes.add(404)
            if methods & {"POST", "PUT", "DELETE"}:
                codes |= {409, 413}
            if path.startswith(("/api/margin", "/api/policy")):
                codes.add(501)
            if path.startswith("/api/signals"):
                codes.add(400)
            if path.startswith(("/api/parameter-sets", "/api/views")):
                codes.add(404)  # an unknown version / snapshot, or nothing published yet
        else:
            codes.add(503)
        extra: dict[int | str, dict[str, Any]] = {c: {"model": ErrorBody, "description": _ERROR_TEXT[c]}
                                                 for c in sorted(codes)}
        route.responses = {**extra, **(route.responses or {})}


def _page_headers() -> dict[str, str]:
    return {"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                       "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'",
            "Cache-Control": "no-cache"}


async def _releaser(manager: StoreManager) -> None:
    while True:
        await asyncio.sleep(min(1.0, manager.release_after or 1.0))
        manager.maybe_release()
