"""FastAPI dependencies: the store cursor, the caller (API key) and role checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

import anyio
import duckdb
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from margincal.errors import AuthError
from margincal.service.auth import PERMISSIONS, Principal, PrincipalCache, authenticate
from margincal.service.db import StoreManager

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (mc_<id>_<secret>)")
bearer = HTTPBearer(auto_error=False, description="the same API key as a bearer token")


class Unauthenticated(AuthError):
    """HTTP 401: missing, malformed, unknown or revoked key."""


class Forbidden(AuthError):
    """HTTP 403: the key's role lacks the permission (or the four-eyes rule forbids the action)."""


def get_store(request: Request) -> StoreManager:
    return request.app.state.store


async def get_con(request: Request) -> AsyncIterator[duckdb.DuckDBPyConnection]:
    """A cursor on the shared store connection for the duration of the request.

    Async (no thread hop): lending a pooled cursor does not block; only the first request after the
    store is (re)opened waits for the open, and that runs in a worker thread."""
    store: StoreManager = request.app.state.store
    if not store.is_open():
        await anyio.to_thread.run_sync(store.open)
    with store.cursor() as cur:
        yield cur


async def get_principal(
    request: Request,
    x_api_key: Annotated[str | None, Depends(api_key_header)] = None,
    bearer_cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
) -> Principal:
    """The caller of an API key: from the in-process cache of verified keys, else checked against the
    store (in a worker thread)."""
    key = x_api_key or (bearer_cred.credentials if bearer_cred else None)
    store: StoreManager = request.app.state.store
    cache: PrincipalCache = request.app.state.principals
    principal = cache.get(key, store.generation) if key else None
    if principal is None:
        def check() -> Principal:
            with store.cursor() as cur:
                return authenticate(cur, key)

        try:
            principal = await anyio.to_thread.run_sync(check)
        except AuthError as exc:
            raise Unauthenticated(str(exc)) from None
        cache.put(key or "", store.generation, principal)
    request.state.principal = principal
    return principal


def require(permission: str) -> Callable[..., Awaitable[Principal]]:
    """Dependency: the caller must hold ``permission`` (read, margin, decide, keys, policy)."""
    roles = sorted(r for r, p in PERMISSIONS.items() if permission in p)

    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.can(permission):
            raise Forbidden(f"role {principal.role} may not do this ({permission}); allowed roles: {', '.join(roles)}")
        return principal

    check.__name__ = f"require_{permission}"
    check.permission = permission  # type: ignore[attr-defined]
    return check


Reader = Annotated[Principal, Depends(require("read"))]
Trader = Annotated[Principal, Depends(require("margin"))]
Decider = Annotated[Principal, Depends(require("decide"))]
KeyAdmin = Annotated[Principal, Depends(require("keys"))]
PolicyAdmin = Annotated[Principal, Depends(require("policy"))]
Con = Annotated[duckdb.DuckDBPyConnection, Depends(get_con)]
