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
        disable=not err_console.is_terminal,  # no bar redrawn into pipes and logs (stderr stays one line per error)
    )


# ---------------------------------------------------------------- shared input parsers
# One parser per kind of value, used by every command, so that a malformed date or number anywhere is
# one line naming the option and the rule, exit code 2 (raised as typer.BadParameter: the root group
# prints usage errors as one line).

_DATE_RE = __import__("re").compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-](\d{2}):?(\d{2}))?$")


def parse_time(value: Any, option: str = "time", *, end: bool = False, check_range: bool = True) -> Any:
    """Parse a UTC date or date-time given on the command line to a tz-aware :class:`pandas.Timestamp`.

    Accepted: ``YYYY-MM-DD``, ``YYYY-MM-DDTHH:MM[:SS[.f]]`` (``T`` or a space) with an optional ``Z`` or
    ``+HH:MM`` offset (|offset| <= 14 h), or ``now``. ``end=True`` makes a bare date mean the end of that
    day (the whole day is included). The result must lie in the plausible range of
    :func:`margincal.config.plausible_time_range` (default 2009-01-01 to now + 1 day).
    Raises :class:`margincal.errors.ConfigError` with one line naming the option.
    """
    import pandas as pd

    from margincal.config import plausible_time_range
    from margincal.errors import ConfigError

    text = str(value).strip()
    if text.lower() == "now":
        ts = pd.Timestamp.now(tz="UTC")
    else:
        m = _DATE_RE.match(text)
        if m is None:
            raise ConfigError(f"{option} {text[:60]!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS] "
                              "(UTC, or with Z / +HH:MM)")
        if m.group(8) and m.group(8) != "Z" and (int(m.group(9)) > 14 or int(m.group(10)) > 59):
            raise ConfigError(f"{option} {text!r} has UTC offset {m.group(8)}; offsets lie within +-14:00")
        if not 1900 <= int(m.group(1)) <= 2200:
            raise ConfigError(f"{option} {text!r}: year {m.group(1)} is implausible for market data")
        try:
            ts = pd.Timestamp(text)
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
            if end and m.group(4) is None:
                ts = ts + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
        except (ValueError, OverflowError) as exc:
            raise ConfigError(f"{option} {text!r} is not a valid date: {' '.join(str(exc).split())}") from None
    if check_range:
        lo, hi = plausible_time_range()
        if not lo <= ts <= hi:
            raise ConfigError(f"{option} {text!r} is outside the plausible range {lo.date()} .. {hi.isoformat()} "
                              "(set MARGINCAL_TIME_RANGE to widen it)")
    return ts


def parse_number(value: Any, option: str, *, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False, integer: bool = False) -> float:
    """A finite number within ``[lo, hi]`` (open ends with ``lo_open`` / ``hi_open``); one-line ConfigError."""
    from margincal.errors import ConfigError

    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{option} {str(value)[:60]!r} is not a number") from None
    if not math.isfinite(x):
        raise ConfigError(f"{option} is {value}; it must be a finite number")
    if integer and x != int(x):
        raise ConfigError(f"{option} is {value}; it must be a whole number")
    bad_lo = lo is not None and (x <= lo if lo_open else x < lo)
    bad_hi = hi is not None and (x >= hi if hi_open else x > hi)
    if bad_lo or bad_hi:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ConfigError(f"{option} is {value:g}; it must be in {left}{'-inf' if lo is None else f'{lo:g}'}, "
                          f"{'inf' if hi is None else f'{hi:g}'}{right}")
    return int(x) if integer else x


def date_option(*, end: bool = False) -> Any:
    """A Typer ``callback`` that validates a date option with :func:`parse_time` (the text is kept)."""
    def cb(ctx: Any, param: Any, value: Any) -> Any:
        from margincal.errors import ConfigError

        if value is None:
            return None
        try:
            parse_time(value, "--" + param.name.replace("_", "-") if param is not None else "date", end=end)
        except ConfigError as exc:
            raise typer.BadParameter(str(exc)) from None
        return str(value).strip()

    return cb


def number_option(**bounds: Any) -> Any:
    """A Typer ``callback`` that checks a number option is finite and within bounds (see :func:`parse_number`)."""
    def cb(ctx: Any, param: Any, value: Any) -> Any:
        from margincal.errors import ConfigError

        if value is None:
            return None
        name = param.opts[0] if param is not None and getattr(param, "opts", None) else "value"
        try:
            if isinstance(value, (list, tuple)):
                return [parse_number(v, name, **bounds) for v in value]
            return parse_number(value, name, **bounds)
        except ConfigError as exc:
            raise typer.BadParameter(str(exc)) from None

    return cb
