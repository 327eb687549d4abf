"""`margincal audit verify|show`: check and read the hash-chained audit log (read-only)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from margincal.cli.common import (
    JsonOption,
    StoreOption,
    console,
    lazy_module,
    number_option,
    open_store,
    print_json,
    print_table,
)

if TYPE_CHECKING:
    from margincal.data import audit as A
else:
    A = lazy_module("margincal.data.audit")

app = typer.Typer(name="audit", help="Verify and read the append-only, hash-chained audit log.",
                  no_args_is_help=True, add_completion=False)


@app.command("verify")
def verify(store: StoreOption = None, json_out: JsonOption = False) -> None:
    """Recompute every hash and link: exit 0 when the chain is intact, 2 (with the first bad seq) when broken."""
    with open_store(store, read_only=True) as con:
        rep = A.verify_chain(con)
    if json_out:
        print_json({"ok": rep.ok, "entries": rep.entries, "first_bad_seq": rep.first_bad_seq, "reason": rep.reason})
    elif rep.ok:
        console.print(f"[green]audit chain intact[/]: {rep.entries} entries")
    else:
        console.print(f"[bold red]audit chain BROKEN at seq {rep.first_bad_seq}[/]: {rep.reason} "
                      f"({rep.entries} entries)")
    if not rep.ok:
        raise typer.Exit(2)


@app.command("show")
def show(
    limit: Annotated[int, typer.Option("--limit", "-n", callback=number_option(lo=1, hi=1_000_000, integer=True), help="Newest N entries.")] = 20,
    action: Annotated[str | None, typer.Option("--action", help="Only this action (publish, propose, "
                                               "approve, reject, auto_adjust...).")] = None,
    subject: Annotated[str | None, typer.Option("--subject", help="Only subjects containing this text.")] = None,
    store: StoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show the newest audit entries (newest first)."""
    sql = "SELECT seq, ts, actor, action, subject, details, hash FROM audit_log WHERE 1=1"
    params: list[object] = []
    if action:
        sql += " AND action = ?"
        params.append(action)
    if subject:
        sql += " AND subject LIKE ?"
        params.append(f"%{subject}%")
    sql += " ORDER BY seq DESC LIMIT ?"
    params.append(int(limit))
    with open_store(store, read_only=True) as con:
        rows = con.execute(sql, params).fetchall()
    out = [{"seq": int(r[0]), "ts": str(r[1])[:19], "actor": r[2], "action": r[3], "subject": r[4] or "",
            "details": json.loads(r[5]) if r[5] else {}, "hash": r[6][:12]} for r in rows]
    if json_out:
        print_json(out)
        return
    for r in out:
        d = r["details"]
        r["details"] = ", ".join(f"{k}={v}" for k, v in d.items() if not isinstance(v, (dict, list)))[:90]
    print_table(out, title=f"audit log (newest {len(out)})",
                columns=["seq", "ts", "actor", "action", "subject", "details", "hash"])
