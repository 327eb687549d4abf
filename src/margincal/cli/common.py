"""Shared CLI pieces: options, console, table/JSON output, progress bars."""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer._click.globals import get_current_context

from margincal.fmt import column_header, column_kind, format_count, format_value


class _LazyModule:
    """A module imported on first attribute access: command modules name the heavy stack (duckdb, pandas,
    numpy, scipy) this way, so ``margincal --help`` and ``margincal CMD --help`` import none of it."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import importlib

        return getattr(importlib.import_module(self._name), attr)


def lazy_module(name: str) -> Any:
    """The module ``name``, imported when an attribute is first read (see :class:`_LazyModule`)."""
    return _LazyModule(name)


def open_store(store: Any = None, *, read_only: bool = False, timeout: float | None = None) -> Any:
    """:func:`margincal.data.store.open_store`, imported when called (duckdb and pandas are not imported for
    ``--help``)."""
    from margincal.data.store import open_store as _open

    return _open(store, read_only=read_only, timeout=timeout)


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


def fmt(v: Any, kind: str | None = None) -> str:
    """One cell of human output (see :mod:`margincal.fmt`: rates in percent, separators, no float noise)."""
    return format_value(v, kind)


def print_table(
    rows: Sequence[dict[str, Any]],
    *,
    title: str | None = None,
    columns: Iterable[str] | None = None,
    as_json: bool = False,
    kinds: dict[str, str | None] | None = None,
) -> None:
    """Print rows (dicts) as a Rich table, or as JSON when ``as_json`` (JSON keeps the raw values: fractions).

    Each column is formatted by its kind (:func:`margincal.fmt.column_kind` from its name, or ``kinds``) and
    its header names the unit (``IM (%)``, ``lower (USD)``).
    """
    if as_json:
        print_json(list(rows))
        return
    cols = list(columns) if columns is not None else (list(rows[0].keys()) if rows else [])
    kind = {c: (kinds[c] if kinds is not None and c in kinds else column_kind(c)) for c in cols}
    cells = [[format_value(r.get(c), kind[c]) for c in cols] for r in rows]
    table = Table(title=title, show_lines=False)
    for j, c in enumerate(cols):
        numeric = any(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) for r in rows)
        # values are never cut (a header may wrap instead); very long text columns still fold
        widest = min(max((len(row[j]) for row in cells), default=1), 40)
        table.add_column(column_header(c, kind[c]), justify="right" if numeric else "left", min_width=widest)
    for row in cells:
        table.add_row(*row)
    console.print(table)


PROGRESS_SECONDS_ENV = "MARGINCAL_PROGRESS_SECONDS"


def _command_name() -> str:
    """``backtest``, ``book generate``: the running command's path without the program name."""
    ctx = get_current_context(silent=True)
    if ctx is None:
        return "margincal"
    parts = ctx.command_path.split()
    return " ".join(parts[1:]) or parts[0] if parts else "margincal"


class LogProgress(Progress):
    """A Rich progress bar on a terminal; elsewhere (pipe, file, CI log) periodic plain lines on stderr.

    Off a terminal no bar is redrawn; instead each task prints ``backtest: 40% (4/10 calibrating BTC-USDT),
    8.1 s`` when it crosses a further 10% of its total, once when it completes, and at least every
    ``MARGINCAL_PROGRESS_SECONDS`` (default 5) seconds while it runs, even through one long step (a
    heartbeat thread). Every CLI progress bar is one of these (:func:`progress`), so every long command
    reports progress the same way.
    """

    def __init__(self, *columns: Any, name: str | None = None, every: float | None = None, **kw: Any) -> None:
        super().__init__(*columns, **kw)
        self.log_lines = self.disable
        self.name = name or _command_name()
        if every is None:
            try:
                every = float(os.environ.get(PROGRESS_SECONDS_ENV, "5"))
            except ValueError:
                every = 5.0
        self.every = every if math.isfinite(every) and every > 0 else 5.0
        self._t0 = time.monotonic()
        self._last: dict[Any, tuple[float, int]] = {}  # task -> (wall time of its last line, tenths reported)
        self._log_lock = threading.Lock()
        self._beat: threading.Thread | None = None
        self._stopped = threading.Event()

    def start(self) -> None:
        super().start()
        if self.log_lines and self._beat is None:
            self._beat = threading.Thread(target=self._heartbeat, name="margincal-progress", daemon=True)
            self._beat.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._beat is not None:
            self._beat.join(timeout=1.0)
            self._beat = None
        super().stop()

    def update(self, task_id: Any, **kw: Any) -> None:
        super().update(task_id, **kw)
        if self.log_lines:
            self._log(task_id)

    def advance(self, task_id: Any, advance: float = 1) -> None:
        super().advance(task_id, advance)
        if self.log_lines:
            self._log(task_id)

    def _heartbeat(self) -> None:
        while not self._stopped.wait(min(self.every, 1.0)):
            with self._lock:
                ids = [t.id for t in self._tasks.values() if not t.finished and t.started]
            for tid in ids:
                self._log(tid)

    def _log(self, task_id: Any) -> None:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return
            total, done, desc = task.total, task.completed, task.description
        with self._log_lock:
            now = time.monotonic()
            last_t, last_tenth = self._last.get(task_id, (self._t0, 0))
            if total:
                frac = min(max(done / total, 0.0), 1.0)
                tenth = int(frac * 10 + 1e-9)
                if last_tenth >= 10 or not (tenth > last_tenth or now - last_t >= self.every):
                    return
                what = f"{frac:.0%} ({format_count(done)}/{format_count(total)} {desc})"
            else:
                tenth = 0
                if now - last_t < self.every:
                    return
                what = f"{format_count(done)} done ({desc})" if done else f"running ({desc})"
            self._last[task_id] = (now, tenth)
            # the process's own stderr: a caller that captures sys.stderr together with stdout (an in-process
            # test runner reading --json) does not get progress lines mixed into the JSON
            err = sys.__stderr__ or sys.stderr
            err.write(f"{self.name}: {what}, {now - self._t0:.1f} s\n")
            err.flush()


def progress(transient: bool = False, name: str | None = None) -> LogProgress:
    """The progress display of every long command (stderr, so --json stdout stays clean): a Rich bar on a
    terminal, periodic log lines elsewhere (see :class:`LogProgress`)."""
    return LogProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=transient,
        disable=not err_console.is_terminal,  # no bar redrawn into pipes and logs: log lines instead
        name=name,
    )


# ---------------------------------------------------------------- a store held by another process

WAIT_ENV = "MARGINCAL_WAIT"
DEFAULT_TTY_WAIT = 15.0


def configure_lock_wait(seconds: float | None) -> float:
    """How long a command waits for a store another process holds, with a countdown on stderr.

    ``seconds`` from ``--wait``; else ``$MARGINCAL_WAIT``; else 15 s when stderr is a terminal (someone
    watches the countdown and can stop the other process) and 0 otherwise (a script fails at once, exit 2,
    with the holder named). Returns the wait in force.
    """
    from margincal.config import set_lock_wait

    if seconds is None:
        env = os.environ.get(WAIT_ENV)
        if env is not None and env.strip():
            seconds = parse_number(env, WAIT_ENV, lo=0, hi=86400)
        else:
            seconds = DEFAULT_TTY_WAIT if err_console.is_terminal else 0.0
    tty = err_console.is_terminal
    state: dict[str, Any] = {"at": None}

    def notify(holder: str | None, left: float) -> None:
        if holder is None:  # the wait is over: the store was opened
            if tty and state["at"] is not None:
                sys.stderr.write("\n")
            state["at"] = None
            return
        now = time.monotonic()
        if tty:
            sys.stderr.write(f"\rthe store is locked by {holder}; waiting {left:3.0f} s (Ctrl-C stops, --wait "
                             "SECONDS changes the wait) ")
        elif state["at"] is None or now - state["at"] >= 5:
            sys.stderr.write(f"the store is locked by {holder}; waiting up to {left:.0f} s more\n")
        else:
            return
        state["at"] = now
        sys.stderr.flush()

    set_lock_wait(seconds, notify)
    return seconds


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
        raise ConfigError(f"{option} is {x:g}; it must be in {left}{'-inf' if lo is None else f'{lo:g}'}, "
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
