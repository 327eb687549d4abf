"""The ``margincal`` command: a thin Typer shell over the Python API.

Each command lives in its own module and is registered here. Errors derived
from :class:`margincal.errors.MargincalError` become one line on stderr and
exit code 2 (never a traceback).
"""

from __future__ import annotations

import sys
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from margincal import __version__
from margincal.errors import MargincalError


class _Group(TyperGroup):
    """Root group that turns MargincalError into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except MargincalError as exc:
            typer.echo(f"error: {exc}", err=True)
            ctx.exit(2)


app = typer.Typer(
    cls=_Group,
    name="margincal",
    help="Calibrate initial and maintenance margin for crypto derivatives.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"margincal {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """margincal: initial and maintenance margin for crypto derivatives."""


# ---- command registration (one line per command module) ----
from margincal.cli import ingest as _ingest  # noqa: E402

app.command("ingest")(_ingest.ingest)
from margincal.cli import portfolio as _portfolio  # noqa: E402

app.command("portfolio")(_portfolio.portfolio)
from margincal.cli import calibrate as _calibrate  # noqa: E402

app.command("calibrate")(_calibrate.calibrate)
from margincal.cli import run as _run  # noqa: E402

app.command("run")(_run.run)
from margincal.cli import fetch as _fetch  # noqa: E402

app.command("fetch")(_fetch.fetch)
from margincal.cli import params as _params  # noqa: E402

app.add_typer(_params.app, name="params")

from margincal.cli import monitor as _monitor  # noqa: E402

app.command("monitor")(_monitor.monitor)
from margincal.cli import audit as _audit  # noqa: E402

app.add_typer(_audit.app, name="audit")
from margincal.cli import proposals as _proposals  # noqa: E402

app.add_typer(_proposals.app, name="proposals")
from margincal.cli import backtest as _backtest  # noqa: E402

app.command("backtest")(_backtest.backtest)
from margincal.cli import keys as _keys  # noqa: E402
from margincal.cli import report as _report  # noqa: E402
from margincal.cli import serve as _serve  # noqa: E402

app.command("serve")(_serve.serve)
app.add_typer(_keys.app, name="keys")
app.command("report")(_report.report)
from margincal.cli import cascade as _cascade  # noqa: E402
from margincal.cli import stress as _stress  # noqa: E402

app.command("stress")(_stress.stress)
app.command("cascade")(_cascade.cascade)
from margincal.cli import book as _book  # noqa: E402

app.add_typer(_book.app, name="book")


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
