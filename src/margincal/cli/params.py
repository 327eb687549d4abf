"""`margincal params ...`: show, diff, export and list published parameter sets (read-only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from margincal.cli.common import JsonOption, StoreOption, console, print_json, print_table
from margincal.data.store import open_store
from margincal.errors import ConfigError
from margincal.margin import params as P

app = typer.Typer(name="params", help="Show, compare and export published parameter sets.",
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


@app.command("export")
def export(version: VersionArg = None,
           fmt: Annotated[str, typer.Option("--format", "-f", help="json or csv (exchange bracket shape).")] = "json",
           out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file (default: stdout).")] = None,
           store: StoreOption = None) -> None:
    """Write a parameter set as JSON or as an exchange-style bracket CSV."""
    if fmt not in ("json", "csv"):
        raise ConfigError(f"--format is {fmt!r}; use json or csv")
    with open_store(store, read_only=True) as con:
        pset = P.load(con, version)
    text = pset.to_json() if fmt == "json" else pset.to_csv()
    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    typer.echo(f"wrote v{pset.version} ({len(pset.params)} instruments) to {out}", err=True)


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
