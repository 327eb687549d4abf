"""`margincal data delete`: remove market-data rows ingested by mistake, in one transaction with an audit entry.

Only market data (bars, funding, open interest, option quotes, depth) can be deleted; parameter sets,
proposals, decisions and the audit log are append-only. The deletion and its audit entry (who, what,
how many rows, why) commit together; ``--dry-run`` counts the rows and writes nothing.
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from margincal.cli.common import (
    JsonOption,
    StoreOption,
    console,
    date_option,
    open_store,
    parse_time,
    print_json,
)
from margincal.errors import ConfigError

app = typer.Typer(name="data", help="Maintain the stored market data.", no_args_is_help=True,
                  add_completion=False)


@app.command("delete")
def delete(
    instrument: Annotated[str, typer.Option("--instrument", "-i", help="Instrument (for options: the underlying).")],
    kind: Annotated[str, typer.Option("--kind", help="bars, funding, open_interest, options or depth.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")],
    timeframe: Annotated[str | None, typer.Option("--timeframe", "-t", help="Bars: only this timeframe.")] = None,
    start: Annotated[str | None, typer.Option("--from", callback=date_option(), help="First time deleted (UTC).")]
    = None,
    end: Annotated[str | None, typer.Option("--to", callback=date_option(end=True), help="Last time deleted (UTC; "
                                            "a date includes the whole day).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count the rows; delete nothing.")] = False,
    store: StoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Delete rows ingested by mistake (one transaction, audited)."""
    from margincal.data import audit
    from margincal.data.store import DELETABLE, delete_rows, transaction

    if kind not in DELETABLE:
        raise ConfigError(f"--kind {kind!r} is not one of {', '.join(DELETABLE)}")
    if not reason.strip():
        raise ConfigError("--reason is required: say why the rows are removed")
    t0 = parse_time(start, "--from") if start else None
    t1 = parse_time(end, "--to", end=True) if end else None
    if t0 is not None and t1 is not None and t1 < t0:
        raise ConfigError(f"--to {end} is before --from {start}")
    with open_store(store, read_only=dry_run) as con, transaction(con) if not dry_run else _nothing():
        n = delete_rows(con, kind, instrument, timeframe=timeframe, start=t0, end=t1, dry_run=dry_run)
        if n == 0:
            raise ConfigError(f"no {kind} rows of {instrument!r}"
                              + (f" ({timeframe})" if timeframe else "")
                              + (f" between {start or 'the start'} and {end or 'the end'}" if start or end
                                 else "") + " are stored; nothing to delete")
        if not dry_run:
            audit.append(con, _actor(), "data_delete", f"{kind}:{instrument}",
                         {"kind": kind, "instrument": instrument, "timeframe": timeframe,
                          "from": None if t0 is None else t0.isoformat(),
                          "to": None if t1 is None else t1.isoformat(), "rows": n, "reason": reason})
    out = {"kind": kind, "instrument": instrument, "timeframe": timeframe, "rows": n, "dry_run": dry_run}
    if json_out:
        print_json(out)
        return
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {n} {kind} row(s) of {instrument}" + ("" if dry_run else " (audited)"))


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
