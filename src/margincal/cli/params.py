"""`margincal params ...`: show, diff, export (our shape or a venue's), import a venue table, list versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from margincal.cli.common import (
    JsonOption,
    StoreOption,
    console,
    date_option,
    lazy_module,
    number_option,
    open_store,
    print_json,
    print_table,
)
from margincal.errors import ConfigError

if TYPE_CHECKING:
    from margincal.margin import params as P
    from margincal.margin import venues
else:
    P = lazy_module("margincal.margin.params")
    venues = lazy_module("margincal.margin.venues")

app = typer.Typer(name="params", help="Show, compare, export and import parameter sets (venue formats too).",
                  no_args_is_help=True, add_completion=False)

VersionArg = Annotated[int | None, typer.Argument(help="Version (default: the latest).", show_default=False)]


@app.command("show")
def show(version: VersionArg = None, store: StoreOption = None, json_out: JsonOption = False) -> None:
    """Print one parameter set (the latest by default)."""
    with open_store(store, read_only=True) as con:
        pset = P.load(con, version)
    if json_out:
        typer.echo(pset.to_json())
        return
    rows = pset.rows()
    cols = ["instrument", "im_rate", "mm_rate", "max_leverage"]
    extra = [c for c in ("model", "es", "liquidity_addon", "window_end") if any(c in r for r in rows)]
    print_table(rows, columns=cols + extra,
                title=f"parameter set v{pset.version} ({pset.created_at}, {pset.source}, by {pset.created_by})")
    for name in pset.instruments():
        tiers = pset[name].details.get("tiers")
        if tiers:
            print_table([{"bracket": i, **t} for i, t in enumerate(tiers, start=1)], title=f"{name} tiers",
                        columns=["bracket", "lower", "upper", "max_leverage", "im_rate", "mm_rate",
                                 "maintenance_amount"])


@app.command("diff")
def diff(v1: Annotated[int, typer.Argument(help="Older version.")],
         v2: Annotated[int, typer.Argument(help="Newer version.")],
         store: StoreOption = None, json_out: JsonOption = False) -> None:
    """Per-instrument changes from V1 to V2."""
    with open_store(store, read_only=True) as con:
        a, b = P.load(con, v1), P.load(con, v2)
    rows = P.diff(a, b)
    if json_out:
        print_json({"from": v1, "to": v2, "changes": rows})
        return
    if not rows:
        console.print(f"v{v1} and v{v2} have the same rates and tiers")
        return
    print_table(rows, title=f"changes v{v1} -> v{v2}",
                columns=["instrument", "change", "im_before", "im_after", "mm_before", "mm_after", "im_change_pct"])


# the venue formats for `--help`, kept here so that `--help` does not import the margin stack (numpy);
# tests/test_cli_help.py checks they are margincal.margin.venues.FORMATS
VENUE_FORMATS = ("binance", "binance-coinm", "bybit", "okx", "hyperliquid", "dydx", "drift", "deribit")
_VENUE_FORMATS = ", ".join(VENUE_FORMATS)


@app.command("export")
def export(version: VersionArg = None,
           fmt: Annotated[str, typer.Option("--format", "-f", help=f"json, csv (our bracket shape) or a venue "
                                                                    f"format: {_VENUE_FORMATS}.")] = "json",
           out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file (default: stdout).")] = None,
           instrument: Annotated[list[str] | None, typer.Option("--instrument", "-i", help="Only these "
                                                                 "instruments (repeatable).")] = None,
           price: Annotated[float | None, typer.Option("--price", help="Reference price for venues sized in coin "
                                                       "or contracts (binance-coinm, okx, drift, deribit).")] = None,
           ct_val: Annotated[float | None, typer.Option("--ct-val", help="OKX contract value (coins per "
                                                        "contract).")] = None,
           store: StoreOption = None) -> None:
    """Write a parameter set as JSON, as an exchange-style bracket CSV, or in a venue's own format."""
    if fmt not in ("json", "csv") and fmt not in venues.FORMATS:
        raise ConfigError(f"--format is {fmt!r}; use json, csv or one of {_VENUE_FORMATS}")
    with open_store(store, read_only=True) as con:
        pset = P.load(con, version)
    if fmt == "json":
        text = pset.to_json()
    elif fmt == "csv":
        text = pset.to_csv()
    else:
        opts = {"price": price, "ct_val": ct_val}
        f = venues.get_format(fmt)
        for k, v in opts.items():
            if v is not None and k not in f.options:
                raise ConfigError(f"--{k.replace('_', '-')} does not apply to --format {fmt}")
        text = venues.export_text(pset, fmt, instruments=instrument or None, **opts)
    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    typer.echo(f"wrote v{pset.version} ({len(instrument or pset.params)} instruments, {fmt}) to {out}", err=True)


@app.command("import")
def import_(file: Annotated[Path, typer.Argument(help="The venue's file (its own JSON answer).")],
            fmt: Annotated[str, typer.Option("--format", "-f", help=f"Venue format: {_VENUE_FORMATS}.")],
            fetched: Annotated[str | None, typer.Option("--fetched", callback=date_option(),
                                                        help="Date the table was fetched "
                                                        "(default: the file's date).")] = None,
            source: Annotated[str | None, typer.Option("--source", help="Where the table comes from (URL).")] = None,
            price: Annotated[float | None, typer.Option("--price", callback=number_option(lo=0, lo_open=True,
                                                                                         hi=1e12), help="Reference price (binance-coinm, okx, "
                                                        "bybit inverse).")] = None,
            ct_val: Annotated[float | None, typer.Option("--ct-val", callback=number_option(lo=0, lo_open=True,
                                                                                           hi=1e12),
                                                         help="OKX contract value.")] = None,
            publish: Annotated[bool, typer.Option("--publish", help="Submit it to the live set as a proposal "
                                                  "(applied at once only where the policy allows), so it can be "
                                                  "backtested like ours.")] = False,
            by: Annotated[str, typer.Option("--by", help="Author recorded when publishing.")] = "cli",
            store: StoreOption = None, json_out: JsonOption = False) -> None:
    """Read a venue's margin table into a parameter set (provenance: venue, file, sha256, fetched date)."""
    opts: dict[str, float] = {k: v for k, v in {"price": price, "ct_val": ct_val}.items() if v is not None}
    f = venues.get_format(fmt)
    for k in opts:
        if k not in f.options:
            raise ConfigError(f"--{k.replace('_', '-')} does not apply to --format {fmt}")
    pset = venues.import_table(file, fmt, fetched=fetched, source_note=source, price=price, ct_val=ct_val)
    version = None
    sub = None
    if publish:
        from margincal.adjust.approval import SYSTEM_IMPORT, submit

        # the same proposal/decision path as every other change of the live set (issue 16 item 1): applied at
        # once by system:import where the policy's rule allows (first publication, new instruments, IM
        # increases within the automatic bound), otherwise a proposal pending for a risk officer
        note = f"{fmt} table {file.name} fetched {pset.provenance.get('fetched')}"
        with open_store(store) as con:
            sub = submit(con, pset, author=by, system=SYSTEM_IMPORT, source=pset.source or f"import:{fmt}",
                         reason=f"import of the {note}", evidence={"format": fmt, "file": file.name},
                         note=note, run_id=pset.run_id)
        version = sub.version if sub.applied else None
    if json_out:
        doc = json.loads(pset.to_json())
        doc["version"] = version
        if sub is not None:
            doc.update({"proposal_id": sub.proposal_id, "applied": sub.applied, "rule": sub.rule,
                        "pending_reason": sub.pending_reason})
        print_json(doc)
        return
    print_table(pset.rows(), columns=["instrument", "im_rate", "mm_rate", "max_leverage", "venue", "rule"],
                title=f"{fmt} table {file.name} (fetched {pset.provenance.get('fetched')}, "
                      f"sha256 {str(pset.provenance.get('sha256'))[:12]})")
    if sub is not None:
        console.print(sub.message() if sub.applied or sub.proposal_id is None else f"[yellow]{sub.message()}[/]")


@app.command("history")
def history(store: StoreOption = None, json_out: JsonOption = False) -> None:
    """List every published version."""
    with open_store(store, read_only=True) as con:
        df = P.history(con)
    rows = df.to_dict(orient="records")
    if json_out:
        print_json(rows)
        return
    if not rows:
        console.print("no parameter set has been published yet")
        return
    print_table(rows, title="published parameter sets")


@app.command("announcements")
def announcements(
    status: Annotated[str | None, typer.Option("--status", help="Only pending, applied or superseded.")] = None,
    instrument: Annotated[str | None, typer.Option("--instrument", "-i", help="Only this instrument.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", callback=number_option(lo=1, hi=1_000_000, integer=True),
                                       help="At most this many, newest first.")] = 100,
    store: StoreOption = None, json_out: JsonOption = False) -> None:
    """Announced MM changes: before/after, when announced, when in force, pending or applied."""
    from margincal.adjust.announcements import announcements as _announcements

    with open_store(store, read_only=True) as con:
        rows = _announcements(con, status=status, instrument=instrument, limit=int(limit))
    if json_out:
        print_json(rows)
        return
    if not rows:
        console.print("no MM change has been announced" + (f" with status {status}" if status else ""))
        return
    shown = [{**r, "mm_before": f"{100 * r['mm_before']:.2f}%", "mm_after": f"{100 * r['mm_after']:.2f}%",
              "announced_at": (r["announced_at"] or "")[:16].replace("T", " "),
              "effective_at": (r["effective_at"] or "")[:16].replace("T", " ")} for r in rows]
    print_table(shown, title="announced MM changes (newest first; MM applies to existing positions too)",
                columns=["instrument", "status", "mm_before", "mm_after", "announced_at", "effective_at",
                         "announced_version", "applied_version"])
