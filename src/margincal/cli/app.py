"""The ``margincal`` command: a thin Typer shell over the Python API.

Each command lives in its own module and is registered here. Errors derived
from :class:`margincal.errors.MargincalError` become one line on stderr and
exit code 2 (never a traceback).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer import _click as click  # typer >= 0.20 vendors click: its exceptions are these, not click's
from typer._click import exceptions as click_exc
from typer.core import TyperGroup

from margincal.errors import MargincalError


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:2000]


def _input_error(exc: BaseException) -> str | None:
    """One line for an error caused by the user's input or environment (files, store), else None.

    These are the exceptions a command raises on a bad file or store rather than on a bug: a truncated
    or corrupt compressed file (EOFError, zlib/gzip/lzma errors), undecodable text, operating-system
    errors (missing file, permission, disk full) and DuckDB's own errors on a damaged store file.
    """
    import gzip
    import lzma
    import zlib

    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)):
        return f"cannot read the input: it is truncated or not validly compressed ({type(exc).__name__}: {exc})"
    if isinstance(exc, UnicodeDecodeError):
        return f"cannot read the input as UTF-8 text: {exc}"
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return f"{where}{exc.strerror or exc}"
    mod = type(exc).__module__ or ""
    if mod.startswith(("duckdb", "_duckdb")):
        return f"store error: {exc}"
    if mod.startswith("pyarrow") or type(exc).__name__ in ("ArrowInvalid", "ArrowIOError"):
        return f"cannot read the file as Parquet/Arrow: {exc}"
    if type(exc).__name__ in ("ParserError", "EmptyDataError") and mod.startswith("pandas"):
        return f"cannot parse the file as CSV: {exc}"
    return None


class _Group(TyperGroup):
    """Root group: every error ends as ONE line on stderr, never a traceback.

    * :class:`MargincalError` (bad input named by the API) and input/environment errors (unreadable,
      truncated or non-UTF-8 files, OS errors, a damaged store) -> ``error: ...``, exit 2;
    * usage errors (unknown option, a value of the wrong type, a missing argument) -> one line, exit 2;
    * anything else is a bug: one line saying so, exit 1 (``MARGINCAL_DEBUG=1`` re-raises it for the
      traceback).
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except MargincalError as exc:
            typer.echo(f"error: {_one_line(exc)}", err=True)
            ctx.exit(2)
        except (typer.Exit, typer.Abort, click_exc.ClickException, KeyboardInterrupt):
            raise
        except Exception as exc:
            import os

            if os.environ.get("MARGINCAL_DEBUG"):
                raise
            msg = _input_error(exc)
            if msg is not None:
                typer.echo(f"error: {_one_line(msg)}", err=True)
                ctx.exit(2)
            typer.echo(f"internal error: {type(exc).__name__}: {_one_line(exc)} (a bug: please report it; "
                       "MARGINCAL_DEBUG=1 shows the traceback)", err=True)
            ctx.exit(1)
        return None  # pragma: no cover - ctx.exit raises

    def get_command(self, ctx: click.Context, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            _add_wait_option(cmd)
        return cmd

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False,
                              windows_expand_args=windows_expand_args, **extra)
        except click_exc.NoArgsIsHelpError as exc:  # `margincal` or `margincal params` alone: the help
            exc.show()
            rv = 2
            if not standalone_mode:
                raise
        except click_exc.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "margincal"
            typer.echo(f"error: {_one_line(exc.format_message())} (see `{where} --help`)", err=True)
            rv = 2
            if not standalone_mode:
                raise
        except click_exc.ClickException as exc:
            typer.echo(f"error: {_one_line(exc.format_message())}", err=True)
            rv = exc.exit_code
            if not standalone_mode:
                raise
        except (typer.Abort, KeyboardInterrupt):
            typer.echo("interrupted", err=True)
            rv = 130
            if not standalone_mode:
                raise
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def _wait_callback(ctx: click.Context, param: Any, value: Any) -> Any:
    from margincal.cli.common import configure_lock_wait, parse_number
    from margincal.errors import ConfigError

    try:
        seconds = None if value is None else parse_number(value, "--wait", lo=0, hi=86400)
        configure_lock_wait(seconds)
    except ConfigError as exc:
        raise click_exc.BadParameter(str(exc)) from None
    return value


def _add_wait_option(cmd: Any) -> None:
    """Give every command ``--wait SECONDS``: how long to wait for a store another process holds (with a
    countdown), before failing with the holder named (exit 2). Default: 15 s on a terminal, 0 otherwise (or
    ``$MARGINCAL_WAIT``)."""
    sub = getattr(cmd, "commands", None)
    if isinstance(sub, dict):
        for c in sub.values():
            _add_wait_option(c)
        return
    if any(getattr(p, "name", None) == "wait" for p in cmd.params):
        return
    cmd.params.append(_wait_param())


_WAIT: list[Any] = []


def _wait_param() -> Any:
    """The ``--wait`` parameter, built once by Typer itself from an annotated signature."""
    if not _WAIT:
        holder = typer.Typer(add_completion=False)

        @holder.command()
        def _hold(wait: Annotated[str | None, typer.Option(
                "--wait", callback=_wait_callback, metavar="SECONDS", show_default=False,
                help="If another process holds the store: wait up to SECONDS with a countdown, then fail "
                     "naming it (default 15 on a terminal, 0 otherwise; $MARGINCAL_WAIT).")] = None) -> None:
            """(only builds the parameter)"""

        param = typer.main.get_command(holder).params[0]
        param.expose_value = False
        _WAIT.append(param)
    return _WAIT[0]


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
        from margincal import __version__

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
from margincal.cli import data as _data  # noqa: E402

app.add_typer(_data.app, name="data")


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
