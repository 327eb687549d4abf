"""`margincal proposals list|show|approve|reject`: the four-eyes approval workflow from the command line.

The CLI names the deciding user with ``--as USER --role ROLE``; the HTTP
service does the same through API keys (each key maps to a user and a role)
and calls the same :mod:`margincal.adjust.approval` functions.
"""

from __future__ import annotations

from typing import Annotated

import typer

from margincal.adjust import approval as AP
from margincal.cli.common import JsonOption, StoreOption, console, print_json, print_table
from margincal.data.store import open_store

app = typer.Typer(name="proposals", help="List, approve and reject margin-change proposals (four-eyes).",
                  no_args_is_help=True, add_completion=False)

IdArg = Annotated[str, typer.Argument(help="Proposal id (see `margincal proposals list`).")]
AsOption = Annotated[str, typer.Option("--as", help="The deciding user.")]
RoleOption = Annotated[str, typer.Option("--role", help="The user's role; deciding needs risk_officer.")]
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


def _decide(verb: str, proposal_id: str, user: str, role: str, comment: str | None, store: object,
            json_out: bool) -> None:
    fn = AP.approve if verb == "approve" else AP.reject
    with open_store(store) as con:  # type: ignore[arg-type]
        d = fn(con, proposal_id, user, comment, role=role)
    if json_out:
        print_json({"proposal_id": d.proposal_id, "decision": d.decision, "decided_by": d.decided_by,
                    "decided_at": d.decided_at.isoformat(), "comment": d.comment,
                    "published_version": d.published_version, "audit_seq": d.audit_seq})
        return
    extra = f", published version {d.published_version}" if d.published_version is not None else ""
    console.print(f"proposal {d.proposal_id} {d.decision} by {d.decided_by}{extra} (audit seq {d.audit_seq})")


@app.command("approve")
def approve(proposal_id: IdArg, user: AsOption, role: RoleOption, comment: CommentOption = None,
            store: StoreOption = None, json_out: JsonOption = False) -> None:
    """Approve: publish the proposed rates (one transaction with the decision and the audit entry)."""
    _decide("approve", proposal_id, user, role, comment, store, json_out)


@app.command("reject")
def reject(proposal_id: IdArg, user: AsOption, role: RoleOption, comment: CommentOption = None,
           store: StoreOption = None, json_out: JsonOption = False) -> None:
    """Reject: record the decision and the audit entry (nothing is published)."""
    _decide("reject", proposal_id, user, role, comment, store, json_out)
