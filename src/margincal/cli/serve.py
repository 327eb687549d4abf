"""`margincal serve`: run the HTTP service (FastAPI + uvicorn) and dashboard on the store."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from margincal.cli.common import StoreOption, err_console, number_option, open_store
from margincal.config import resolve_store_path
from margincal.errors import ConfigError


def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.", min=1, max=65535)] = 8000,
    store: StoreOption = None,
    policy: Annotated[Path | None, typer.Option("--policy", help="Adjustment policy TOML that admins may "
                                                "replace through PUT /api/policy.")] = None,
    release_after: Annotated[float | None, typer.Option(
        "--release-after", callback=number_option(lo=0, hi=86400), help="Close the store after this many idle seconds so other processes can write "
        "it (default: keep it open).")] = None,
    private_docs: Annotated[bool, typer.Option("--private-docs", help="Require a key for /openapi.json.")] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="Log every request.")] = True,
    header_timeout: Annotated[float, typer.Option(
        "--header-timeout", callback=number_option(lo=0.1, hi=300),
        help="Seconds a client has to send a request's headers before the connection is closed.")] = 10.0,
) -> None:
    """Serve the HTTP API, the API docs (/docs) and the dashboard (/dashboard)."""
    import uvicorn

    from margincal.service.app import ServiceSettings, create_app

    path = resolve_store_path(store)
    if policy is not None and not policy.exists():
        raise ConfigError(f"--policy {policy} does not exist")
    if policy is not None:  # a policy the service could not load fails now, not at the first request
        from margincal.adjust.policy import load_policy

        load_policy(policy)
    from margincal.data.store import scalar

    with open_store(path) as con:  # creates / migrates the store, and fails now if it is locked
        n_keys = scalar(con, "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL")
        n_sets = scalar(con, "SELECT count(*) FROM parameter_sets")
    if not n_keys:
        err_console.print("[yellow]no active API key: create one with `margincal keys create --role admin` "
                          "(stop the service first: the store has one writer at a time)[/]")
    if not n_sets:
        err_console.print("[yellow]no parameter set published yet: run `margincal run` first[/]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        err_console.print(f"[yellow]listening on {host}: plain HTTP, API keys travel in clear; put a TLS proxy "
                          "in front[/]")
    settings = ServiceSettings(store=path, policy_path=policy, release_after=release_after,
                               docs_public=not private_docs)
    err_console.print(f"margincal service on http://{host}:{port}  (dashboard /dashboard, API docs /docs, "
                      f"store {path})")
    from margincal.service.httpproto import protocol_with_timeout

    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, access_log=access_log,
                timeout_graceful_shutdown=5, timeout_keep_alive=5, http=protocol_with_timeout(header_timeout),
                h11_max_incomplete_event_size=32 * 1024)
