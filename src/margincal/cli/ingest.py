"""`margincal ingest FILE`: validate a CSV/Parquet file and load it into the store in one transaction."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

from margincal.cli.common import (
    JsonOption,
    StoreOption,
    console,
    date_option,
    open_store,
    print_json,
    print_table,
)


def ingest(
    file: Annotated[Path, typer.Argument(help="CSV (optionally .gz) or Parquet file.", show_default=False)],
    instrument: Annotated[str, typer.Option("--instrument", "-i", help="Instrument name, e.g. BTC-PERP, "
                                            "BTC-USDT; for option snapshots the underlying, e.g. BTC.")],
    timeframe: Annotated[str | None, typer.Option("--timeframe", "-t", help="Bar spacing for OHLCV files: "
                                                  "1m, 5m, 1h, 4h, 1d ...")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="bars, funding, open_interest, options or depth "
                                             "(default: detected from the columns).")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite stored rows whose values differ.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and report; write nothing.")] = False,
    snapshot_ts: Annotated[str | None, typer.Option("--snapshot-ts", callback=date_option(), help="Quote time (UTC) for option "
                                                    "snapshots that have none.")] = None,
    store: StoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Validate FILE (every rule, with file/line/field in each error) and load it atomically."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from margincal.config import resolve_store_path
        from margincal.data.ingest import ingest_file

        # a dry run against a store that does not exist yet validates in memory: it creates no file
        target = ":memory:" if dry_run and not resolve_store_path(store).exists() else store
        with open_store(target) as con:
            rep = ingest_file(con, file, instrument=instrument, timeframe=timeframe, kind=kind,
                              replace=replace, snapshot_ts=snapshot_ts, dry_run=dry_run)
    d = rep.as_dict()
    d["warnings"] = [str(w.message) for w in caught]
    d["dry_run"] = dry_run
    if json_out:
        print_json(d)
        return
    print_table([{k: v for k, v in d.items() if k not in ("notes", "warnings")}], title="ingest")
    for n in rep.notes + d["warnings"]:
        console.print(f"[yellow]note:[/] {n}")
    if dry_run:
        console.print("[cyan]dry run: nothing written[/]")
