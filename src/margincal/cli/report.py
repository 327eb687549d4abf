"""`margincal report`: one self-contained HTML report of everything in the store (opens offline)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Annotated

import typer

from margincal.cli.common import (
    JsonOption,
    StoreOption,
    console,
    open_store,
    print_json,
    print_table,
    progress,
)
from margincal.config import resolve_store_path
from margincal.errors import ConfigError


def report(
    out: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path("reports/margincal-report.html"),
    store: StoreOption = None,
    charts: Annotated[bool, typer.Option("--charts/--no-charts", help="Per-instrument history charts "
                                         "(a few seconds per hourly instrument).")] = True,
    version: Annotated[int | None, typer.Option("--version", min=1, help="The parameter-set version to report "
                                                "(default: the latest); every result shown is of that version.")
                       ] = None,
    json_out: JsonOption = False,
) -> None:
    """Write calibration, parameter history, backtest, stress and adjustment results to one HTML file."""
    # plotly and the report stack: imported when the command runs, not for `--help`
    import pandas as pd

    from margincal.reports.html import write_report
    from margincal.reports.store_report import build_sections, report_version, section_status
    path = resolve_store_path(store)
    if out.is_dir() or str(out).endswith(("/", "\\")):
        raise ConfigError(f"--out {out} is a folder; give the HTML file to write, e.g. {out / 'report.html'}")
    with progress(transient=True) as prog:
        task = prog.add_task("report", total=None)
        with open_store(path, read_only=True) as con:
            stated = report_version(con, version)
            sections = build_sections(con, charts=charts, version=stated,
                                      on_step=lambda s: prog.update(task, description=f"history {s}"))
    meta = f"store {html.escape(path.name)} &middot; generated {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC"
    title = "margincal: margin report" + (f", parameter set version {stated}" if stated is not None else "")
    written = write_report(out, title, sections, meta)
    rows = section_status(sections)
    if json_out:
        print_json({"report": str(written), "bytes": written.stat().st_size, "version": stated, "sections": rows})
        return
    print_table(rows, title="report sections")
    console.print(f"wrote [bold]{written}[/] ({written.stat().st_size / 1e6:.1f} MB, opens offline)")
