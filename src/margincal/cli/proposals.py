"""`margincal proposals list|show|approve|reject`: the four-eyes approval workflow from the command line.

The deciding user is whoever holds the API key given with ``--key`` (or the
``MARGINCAL_API_KEY`` environment variable): the key is checked against the
store and maps to one unique name and a role, exactly as in the HTTP service,
and both call the same :mod:`margincal.adjust.approval` functions. Nobody
declares a name or a role on the command line.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

import typer

from margincal.cli.common import (
    JsonOption,
    StoreOption,
    console,
    lazy_module,
    open_store,
    print_json,
    print_table,
)

if TYPE_CHECKING:
    from margincal.adjust import approval as AP
else:
    AP = lazy_module("margincal.adjust.approval")

app = typer.Typer(name="proposals", help="List, approve and reject margin-change proposals (four-eyes).",
                  no_args_is_help=True, add_completion=False)

_ID_RE = re.compile(r"P\d{8}T\d{6}-[0-9a-f]{6}")


def _check_id(value: str) -> str:
    """Proposal ids have one shape (``P<yyyymmdd>T<hhmmss>-<6 hex>``): anything else is refused before the store is
    opened (one line, exit 2)."""
    text = value.strip()
    if not _ID_RE.fullmatch(text):
        raise typer.BadParameter(f"{value[:60]!r} is not a proposal id (shape P20240101T000000-1a2b3c; see "
                                 "`margincal proposals list`)")
    return text


IdArg = Annotated[str, typer.Argument(help="Proposal id (see `margincal proposals list`).", callback=_check_id)]
KeyOption = Annotated[str | None, typer.Option(
    "--key", envvar="MARGINCAL_API_KEY", show_envvar=True, show_default=False,
    help="Your API key (mc_...; `margincal keys create`); default $MARGINCAL_API_KEY. Its holder is the decider.")]
CommentOption = Annotated[str | None, typer.Option("--comment", "-c", help="Why (kept in the decision and "
                                                   "the audit log).")]


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option("--status", help="Only pending, approved, rejected, superseded "
                                               "or stale.")] = None,
    store: StoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """List proposals (oldest first) with their status."""
    with open_store(store, read_only=True) as con:
        props = AP.list_proposals(con, status)
    if json_out:
        print_json([p.as_dict() for p in props])
        return
    print_table([p.row() for p in props], title=f"proposals ({len(props)})",
                columns=["proposal_id", "created_at", "author", "status", "changes", "decided_by", "version"])


@app.command("show")
def show(proposal_id: IdArg, store: StoreOption = None, json_out: JsonOption = False) -> None:
    """One proposal with its reason and evidence."""
    with open_store(store, read_only=True) as con:
        p = AP.get_proposal(con, proposal_id)
    if json_out:
        print_json(p.as_dict())
        return
    console.print(f"[bold]{p.proposal_id}[/] by {p.author} at {p.created_at} - [bold]{p.status}[/]")
    console.print(p.reason, soft_wrap=True)
    print_table(p.changes, columns=["instrument", "im_before", "im_after", "mm_before", "mm_after"])
    if p.decided_by:
        console.print(f"{p.status} by {p.decided_by} at {p.decided_at}: {p.comment or ''} "
                      f"(version {p.published_version})")


def _who(con: object, key: str | None) -> tuple[str, str]:
    from margincal.errors import AuthError
    from margincal.service.auth import authenticate

    if not key:
        raise AuthError("deciding needs your API key: pass --key mc_... or set MARGINCAL_API_KEY "
                        "(create one with `margincal keys create --role risk_officer --name YOU`)")
    p = authenticate(con, key)  # type: ignore[arg-type]
    return p.name, p.role


def _decide(verb: str, proposal_id: str, key: str | None, comment: str | None, store: object,
            json_out: bool) -> None:
    from margincal.errors import AuthError
    from margincal.service.auth import parse_key

    if not key:
        raise AuthError("deciding needs your API key: pass --key mc_... or set MARGINCAL_API_KEY "
                        "(create one with `margincal keys create --role risk_officer --name YOU`)")
    if parse_key(key) is None:  # not shaped like a key: refused before the store is opened
        raise AuthError("invalid or revoked API key")
    fn = AP.approve if verb == "approve" else AP.reject
    with open_store(store) as con:
        user, role = _who(con, key)
        d = fn(con, proposal_id, user, comment, role=role)
    if json_out:
        print_json({"proposal_id": d.proposal_id, "decision": d.decision, "decided_by": d.decided_by,
                    "decided_at": d.decided_at.isoformat(), "comment": d.comment,
                    "published_version": d.published_version, "audit_seq": d.audit_seq})
        return
    extra = f", published version {d.published_version}" if d.published_version is not None else ""
    console.print(f"proposal {d.proposal_id} {d.decision} by {d.decided_by}{extra} (audit seq {d.audit_seq})")


@app.command("approve")
def approve(proposal_id: IdArg, key: KeyOption = None, comment: CommentOption = None,
            store: StoreOption = None, json_out: JsonOption = False) -> None:
    """Approve as the holder of --key: publish the proposed rates (one transaction with the decision and the
    audit entry)."""
    _decide("approve", proposal_id, key, comment, store, json_out)


@app.command("reject")
def reject(proposal_id: IdArg, key: KeyOption = None, comment: CommentOption = None,
           store: StoreOption = None, json_out: JsonOption = False) -> None:
    """Reject as the holder of --key: record the decision and the audit entry (nothing is published)."""
    _decide("reject", proposal_id, key, comment, store, json_out)


@app.command("remove")
def remove(
    instrument: Annotated[list[str], typer.Option("--instrument", "-i", help="Instrument to remove from the live "
                                                  "set (repeat for several).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the proposal and the audit log).")],
    key: KeyOption = None,
    store: StoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Propose removing instruments from the live parameter set; another risk officer approves it."""
    from margincal.errors import AuthError
    from margincal.service.auth import authenticate

    if not key:
        raise AuthError("proposing needs your API key: pass --key mc_... or set MARGINCAL_API_KEY")
    with open_store(store) as con:
        who = authenticate(con, key)
        pid = AP.create_removal_proposal(con, author=who.name, instruments=instrument, reason=reason)
    if json_out:
        print_json({"proposal_id": pid, "author": who.name, "remove": instrument})
        return
    console.print(f"proposal {pid} by {who.name}: remove {', '.join(instrument)} (pending approval)")
