"""Shared CLI pieces: options, console, table/JSON output, progress bars."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def _console(stderr: bool = False) -> Console:
    c = Console(stderr=stderr)
    if not c.is_terminal:  # pipes and CI logs: do not squeeze tables into 80 columns
        c = Console(stderr=stderr, width=150)
    return c


console = _console()
err_console = _console(stderr=True)

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help="DuckDB store file (default: $MARGINCAL_STORE or ./margincal.duckdb).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        try:
            return _jsonable(v.item())
        except (AttributeError, ValueError):
            pass
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def print_json(obj: Any) -> None:
    """Print JSON to stdout (plain, no Rich markup), numpy/pandas values converted."""
    from margincal.data.store import _json_default

    typer.echo(json.dumps(obj, indent=2, default=_json_default, allow_nan=False) if _finite(obj) else
               json.dumps(_clean(obj), indent=2, default=_json_default))


def _finite(obj: Any) -> bool:
    try:
        json.dumps(obj, allow_nan=False, default=str)
        return True
    except ValueError:
        return False


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return _jsonable(obj)


def fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.{digits}f}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


def print_table(
    rows: Sequence[dict[str, Any]],
    *,
    title: str | None = None,
    columns: Iterable[str] | None = None,
    as_json: bool = False,
    digits: int = 4,
) -> None:
    """Print rows (dicts) as a Rich table, or as JSON when ``as_json``."""
    if as_json:
        print_json(list(rows))
        return
    cols = list(columns) if columns is not None else (list(rows[0].keys()) if rows else [])
    table = Table(title=title, show_lines=False)
    for c in cols:
        table.add_column(c, justify="right" if rows and isinstance(rows[0].get(c), (int, float)) else "left")
    for r in rows:
        table.add_row(*(fmt(r.get(c), digits) for c in cols))
    console.print(table)


def progress(transient: bool = False) -> Progress:
    """A Rich progress bar writing to stderr (so --json stdout stays clean)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=transient,
    )
