"""`margincal keys`: create, list and revoke API keys of the service (stored hashed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from margincal.cli.common import (
    JsonOption,
    StoreOption,
    console,
    err_console,
    lazy_module,
    open_store,
    print_json,
    print_table,
)

if TYPE_CHECKING:
    from margincal.service import auth
else:
    auth = lazy_module("margincal.service.auth")

app = typer.Typer(name="keys", help="Manage API keys of the HTTP service.", no_args_is_help=True,
                  add_completion=False)


@app.command("create")
def create(
    role: Annotated[str, typer.Option("--role", help="viewer, trader, risk_officer or admin.")],
    name: Annotated[str | None, typer.Option("--name", help="Who holds the key (the actor in the audit log; "
                                             "default: <role>-<id>).")] = None,
    store: StoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Create a key; it is printed ONCE (only its salted hash is stored)."""
    with open_store(store) as con:
        new = auth.create_key(con, role, name)
    if json_out:
        print_json({"key_id": new.key_id, "key": new.key, "role": new.role, "name": new.name})
        return
    typer.echo(new.key)
    err_console.print(f"key {new.key_id} ({new.role}, {new.name}) created; the line above is the only copy of "
                      "the key: store it now. Send it as the X-API-Key header.")


@app.command("list")
def list_(
    store: StoreOption = None,
    active: Annotated[bool, typer.Option("--active", help="Only keys not revoked.")] = False,
    json_out: JsonOption = False,
) -> None:
    """List keys (id, role, name, created, revoked); secrets are never shown."""
    with open_store(store, read_only=True) as con:
        rows = auth.list_keys(con, include_revoked=not active)
    if json_out:
        print_json(rows)
        return
    if not rows:
        console.print("no API keys; create one with `margincal keys create --role admin`")
        return
    print_table(rows, title="API keys", columns=["key_id", "role", "name", "created_at", "revoked_at"])


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (the 12 hex characters after mc_).")],
    store: StoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Revoke a key (it stays listed, marked revoked)."""
    import re

    from margincal.errors import ConfigError

    if not re.fullmatch(r"[0-9a-f]{12}", key_id):
        raise ConfigError(f"key id {key_id[:40]!r} is not 12 hex characters; `margincal keys list` shows the ids")
    with open_store(store) as con:
        row = auth.revoke_key(con, key_id)
    if json_out:
        print_json(row)
        return
    console.print(f"key {row['key_id']} ({row['role']}, {row['name']}) revoked at {row['revoked_at']}")


@app.command("rotate")
def rotate(
    key: Annotated[str | None, typer.Option("--key", envvar="MARGINCAL_API_KEY", show_default=False,
                                            help="Your current key (default $MARGINCAL_API_KEY).")] = None,
    store: StoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Replace your own key: same name and role, a new secret; the old key is revoked."""
    from margincal.errors import AuthError

    if not key:
        raise AuthError("rotating needs your current key: pass --key mc_... or set MARGINCAL_API_KEY")
    if auth.parse_key(key) is None:
        raise AuthError("invalid or revoked API key")
    with open_store(store) as con:
        new = auth.rotate_key(con, key)
    if json_out:
        print_json({"key_id": new.key_id, "key": new.key, "role": new.role, "name": new.name})
        return
    typer.echo(new.key)
    err_console.print(f"key {new.key_id} ({new.role}, {new.name}) replaces your old key, now revoked; the line "
                      "above is the only copy of the new key.")
