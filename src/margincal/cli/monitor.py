"""`margincal monitor`: replay stored history (or watch an exchange) and print signals and margin moves.

A thin shell over :class:`margincal.adjust.monitor.Monitor`: it builds the
feed, shows a live Rich display (latest state per instrument + a log of
signals and adjustments) or, with ``--json``, prints one JSON object per line
(``type`` = signal / adjustment / proposal / summary).

A replay never touches the live parameter set by default: it runs in a named
sandbox, a separate store file ``<store>.sandbox-<name>.duckdb`` created as a
copy of the live store (:func:`margincal.data.store.open_sandbox`). Writing a
replay's versions and proposals into the live store needs ``--live-store``;
they are then marked ``[replay]`` (author ``monitor-replay``, ``replay: true`` in
their evidence) everywhere they show. Every argument is validated before
anything is written (a rejected ``--calibrate`` run publishes nothing).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from margincal.cli.common import (
    JsonOption,
    StoreOption,
    console,
    err_console,
    open_store,
    parse_number,
    parse_time,
    progress,
)
from margincal.config import resolve_store_path
from margincal.errors import ConfigError
from margincal.fmt import format_count, format_leverage, format_money, format_rate

if TYPE_CHECKING:
    import pandas as pd

    from margincal.adjust.monitor import Monitor

REPLAY_ACTOR = "monitor-replay"


def _calibrate_base(store: Path, instruments: list[str], before: pd.Timestamp, *, actor: str = "monitor-cli",
                    note_prefix: str = "", sandbox: bool = True) -> dict[str, Any]:
    """Calibrate each instrument on its bars strictly before ``before`` and submit that as the base version
    (through the proposal/decision path: applied at once in a sandbox, by the policy's rule in the live store)."""
    from margincal.config import CalibrationSettings
    from margincal.data.feeds import timeframe_ns
    from margincal.margin.published import calibrate_store
    from margincal.usecases.calibration import submit_calibration

    settings = CalibrationSettings()
    with open_store(store) as con:
        targets = []
        for inst in instruments:
            tfs = [r[0] for r in con.execute("SELECT DISTINCT timeframe FROM bars WHERE instrument = ?",
                                             [inst]).fetchall()]
            if not tfs:
                raise ConfigError(f"--calibrate: no bars stored for {inst}")
            targets.append((inst, min(tfs, key=timeframe_ns)))
        # the published rule's own calibration (coin reference series, funding), on data known before the window
        cals = calibrate_store(con, targets, settings, before=before)
        sub, _ = submit_calibration(
            con, cals, settings, author=actor, sandbox=sandbox,
            note=f"{note_prefix}calibrated on data before {before.isoformat()} for a monitor replay",
            evidence={"replay": True} if note_prefix else None)
    return {"version": sub.version, "proposal_id": sub.proposal_id, "applied": sub.applied, "rule": sub.rule,
            "pending_reason": sub.pending_reason, "im": {c.instrument: c.im_rate for c in cals}}


def _state_table(mon: Monitor, last_ts: str) -> Table:
    t = Table(title=f"monitor state at {last_ts}", title_justify="left")
    for c in ("instrument", "close (USD)", "vol 24h (%)", "vol 30d (%)", "ratio (x)", "vol target (%)", "breaches",
              "IM (%)", "pending IM (%)"):
        t.add_column(c, justify="left" if c == "instrument" else "right")
    from margincal.adjust.monitor import summarize_state

    assert mon.engine is not None
    for r in summarize_state(mon.engine):
        t.add_row(r["instrument"], format_money(r["close"]), format_rate(r["vol_24h"]), format_rate(r["vol_30d"]),
                  format_leverage(r["ratio"]), format_rate(r["vol_target"]), format_count(r["breaches"]),
                  format_rate(r["im_rate"]), format_rate(r["pending_im"]))
    return t


_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
TICK_EVERY = 500  # events between progress updates


@contextlib.contextmanager
def _replay_progress() -> Iterator[Callable[[Any], None]]:
    """Progress of a monitor run outside the live table (``--json``, or stderr not a terminal): the shared
    :func:`~margincal.cli.common.progress`, i.e. periodic ``monitor: 12,000 done (events, market time
    2022-11-09 13:00), 4.1 s`` lines on stderr off a terminal and a bar on one. The total is open-ended
    (a live feed has none), so the lines come every few seconds rather than per 10%; the count moves in steps
    of :data:`TICK_EVERY` (the exact total is in the closing summary)."""
    import pandas as pd

    with progress(name="monitor") as prog:
        task = prog.add_task("events", total=None)
        seen = {"n": 0}

        def tick(ev: Any) -> None:
            seen["n"] += TICK_EVERY
            prog.update(task, completed=seen["n"],
                        description=f"events, market time {str(pd.Timestamp(ev.t_ns, tz='UTC'))[:16]}")

        yield tick


def monitor(
    replay: Annotated[bool, typer.Option("--replay", help="Replay stored history (bars, funding, OI, depth).")]
    = False,
    live: Annotated[bool, typer.Option("--live", help="Poll an exchange through ccxt instead of replaying.")]
    = False,
    start: Annotated[str | None, typer.Option("--from", help="First time the monitor acts on (UTC date/time).")]
    = None,
    end: Annotated[str | None, typer.Option("--to", help="Last time replayed (a date includes the whole day).")]
    = None,
    instrument: Annotated[list[str] | None, typer.Option("--instrument", "-i", help="Instruments (default: all "
                                                          "with bars).")] = None,
    speed: Annotated[float | None, typer.Option("--speed", help="Market seconds per wall second (default: as "
                                                "fast as possible).")] = None,
    json_out: JsonOption = False,
    policy: Annotated[Path | None, typer.Option("--policy", help="Policy TOML (default: the shipped one).")]
    = None,
    store: StoreOption = None,
    warmup_days: Annotated[float, typer.Option("--warmup-days", help="Days before --from replayed silently to "
                                               "warm the estimators up.")] = 60.0,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="First calibrate the instruments on data "
                                            "before --from and publish that as the base version.")] = False,
    name: Annotated[str | None, typer.Option("--name", help="Checkpoint name (default from the arguments); "
                                             "a rerun with the same name resumes.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore an existing checkpoint and start over.")] = False,
    exchange: Annotated[str, typer.Option("--exchange", help="--live: ccxt exchange id.")] = "binanceusdm",
    symbol: Annotated[list[str] | None, typer.Option("--symbol", help="--live: ccxt symbols, e.g. "
                                                     "BTC/USDT:USDT.")] = None,
    timeframe: Annotated[str, typer.Option("--timeframe", help="--live: bar timeframe.")] = "1m",
    poll: Annotated[float, typer.Option("--poll", help="--live: seconds between polls.")] = 10.0,
    group_commit: Annotated[float | None, typer.Option("--group-commit", help="Seconds a decision may wait to be "
                                                       "written with others in one transaction (default 1 for "
                                                       "an unpaced replay, 0 for --live and --speed).")] = None,
    sandbox: Annotated[str | None, typer.Option("--sandbox", help="--replay: the sandbox store to run in "
                                                "(default: one named after the arguments); --fresh recreates "
                                                "it from the live store.")] = None,
    live_store: Annotated[bool, typer.Option("--live-store", help="--replay: write versions and proposals into "
                                             "the LIVE store (marked [replay]) instead of a sandbox.")] = False,
    after: Annotated[str | None, typer.Option("--after", help="--json: first print every line this monitor "
                                              "(same arguments or --name) committed after this cursor (the "
                                              "`cursor` of the last line received; 0 for all), then go on.")]
    = None,
) -> None:
    """Run the margin monitor: signals and margin adjustments as they happen.

    A replay runs in a sandbox store (a copy of the live one) unless --live-store is given."""
    # the engine, the feeds and the store (pandas, numpy, duckdb) are imported when the command runs
    import pandas as pd

    from margincal.adjust.monitor import Monitor, jsonable, load_checkpoint, outbox_after, outbox_tail
    from margincal.adjust.policy import load_policy
    from margincal.data.feeds import LiveFeed, ReplayFeed, timeframe_ns
    from margincal.data.store import bar_instruments, open_sandbox, sandbox_path

    # ---- every argument is checked before anything is written
    if replay == live:
        raise ConfigError("choose exactly one of --replay or --live")
    if speed is not None:
        speed = parse_number(speed, "--speed", lo=1e-3, hi=1e12)
    warmup_days = parse_number(warmup_days, "--warmup-days", lo=0.0, hi=3650.0)
    poll = parse_number(poll, "--poll", lo=0.1, hi=86400.0)
    if live_store and not replay:
        raise ConfigError("--live-store applies to --replay (a --live monitor writes into the store it is given)")
    if live_store and sandbox is not None:
        raise ConfigError("choose one of --sandbox NAME or --live-store")
    after_cursor = None
    if after is not None:
        after_cursor = int(parse_number(after, "--after", lo=0, hi=2**62, integer=True))
        if not json_out:
            raise ConfigError("--after resumes the --json stream; add --json")
        if fresh:
            raise ConfigError("--after resumes a run's stream; --fresh starts the run over (drop one of them)")
    pol = load_policy(policy)
    live_path = resolve_store_path(store)
    if replay:
        if not live_path.exists():
            raise ConfigError(f"store {live_path} does not exist; run `margincal run` or `margincal ingest` first")
        if start is None:
            raise ConfigError("--replay needs --from (the first time the monitor acts on)")
        live_from = parse_time(start, "--from")
        stop = parse_time(end, "--to", end=True) if end is not None else None
        if stop is not None and stop < live_from:
            raise ConfigError(f"--to {end} is before --from {start}")
        insts = list(instrument) if instrument else None
        ck_name = name or f"replay:{','.join(insts) if insts else 'all'}:{start}:{end or 'end'}"
    else:
        if not symbol:
            raise ConfigError("--live needs at least one --symbol, e.g. --symbol BTC/USDT:USDT")
        try:
            timeframe_ns(timeframe)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"--timeframe {timeframe!r} is not a timeframe (e.g. 1m, 1h): {exc}") from None
        live_from = parse_time(start, "--from") if start else pd.Timestamp.now(tz="UTC")
        stop = None
        insts = None
        ck_name = name or f"live:{exchange}:{','.join(symbol)}:{timeframe}"
    if group_commit is None:
        group_commit = 1.0 if (replay and speed is None) else 0.0
    elif not (group_commit >= 0 and group_commit < float("inf")):
        raise ConfigError(f"--group-commit is {group_commit}; it must be a finite number of seconds >= 0")
    if name is not None and not (0 < len(name) <= 200) or any(ord(ch) < 32 for ch in ck_name):
        raise ConfigError("--name must be 1-200 printable characters")
    target = live_path
    if replay and not live_store:
        import hashlib

        sb_name = sandbox if sandbox is not None else "replay-" + hashlib.sha256(ck_name.encode()).hexdigest()[:10]
        target = sandbox_path(live_path, sb_name)  # validates the name before anything is created
    if after_cursor:
        tail = 0
        if target.exists() and not fresh:
            with open_store(target, read_only=True) as con:
                tail = outbox_tail(con, ck_name)
        if after_cursor > tail:
            raise ConfigError(f"--after {after_cursor} is past the last line of monitor {ck_name!r} in "
                              f"{target.name} (cursor {tail}); send the cursor of a line this monitor printed")
    if replay and insts:
        with open_store(live_path, read_only=True) as con:
            stored = set(bar_instruments(con))
        missing = [i for i in insts if i not in stored]
        if missing:
            raise ConfigError(f"{'--calibrate: ' if calibrate else ''}no bars stored for {', '.join(missing)}; "
                              f"stored: {', '.join(sorted(stored)) or 'none'}")
    # ---- from here on the store is written: the sandbox, or the live store when asked for explicitly
    if replay and not live_store:
        store_path = open_sandbox(live_path, sb_name, fresh=fresh)
        msg = (f"replaying in sandbox {store_path.name} (the live store {live_path.name} is not touched; "
               "--live-store writes there instead)")
        if json_out:
            typer.echo(jsonable({"type": "sandbox", "store": store_path.name, "live_store": live_path.name}))
        else:
            err_console.print(msg)
    else:
        store_path = live_path
        if replay:
            err_console.print(f"[bold yellow]--live-store: this replay writes into the live store {live_path.name}; "
                              "its versions and proposals are marked [replay][/]")
    marked = replay and live_store
    mon = Monitor(store_path, pol, name=ck_name, live_from=live_from, fresh=fresh, commit_latency_s=group_commit,
                  actor=REPLAY_ACTOR if marked else "monitor", replay=marked)
    with open_store(store_path) as con:
        resuming = (not fresh) and load_checkpoint(con, ck_name) is not None
    if calibrate and replay:
        if resuming:
            err_console.print("[yellow]--calibrate skipped: resuming a checkpointed run[/]")
        else:
            with open_store(store_path) as con:
                if insts is None:
                    insts = bar_instruments(con)
            info = _calibrate_base(store_path, insts, live_from, actor=REPLAY_ACTOR if marked else "monitor-cli",
                                   note_prefix="[replay] " if marked else "", sandbox=not marked)
            if json_out:
                typer.echo(jsonable({"type": "calibration", **info}))
            elif info["proposal_id"] is not None and not info["applied"]:
                err_console.print(f"[yellow]base calibration on data before {start} is proposal "
                                  f"{info['proposal_id']}, pending for a risk officer ({info['pending_reason']}); "
                                  f"the replay runs on version {info['version']}[/]")
            else:
                err_console.print(f"base version {info['version']} calibrated on data before {start}: "
                                  + ", ".join(f"{k} IM {format_rate(v)}" for k, v in info["im"].items()))
    eng = mon.start()
    if eng.params is None:
        err_console.print("[yellow]no parameter set is published: signals only, no adjustments "
                          "(run `margincal run`, or pass --calibrate)[/]")
    if replay:
        feed: Any = ReplayFeed(store_path, insts, live_from - pd.Timedelta(days=warmup_days), stop, speed,
                               after=mon.resume_key())
    else:
        backfill = int(warmup_days * 86400e9 // timeframe_ns(timeframe))
        feed = LiveFeed(exchange, symbol or [], timeframe, poll, backfill_bars=backfill)
    if mon.report.resumed_after is not None:
        msg = f"resuming {ck_name} after event {pd.Timestamp(mon.report.resumed_after[0], tz='UTC')}"
        if json_out:
            typer.echo(jsonable({"type": "resume", "name": ck_name, "after": mon.report.resumed_after}))
        else:
            err_console.print(msg)

    if json_out:
        def out_lines(lines: list[str]) -> None:
            typer.echo("\n".join(lines))

        if after_cursor is not None:  # what was committed after the reader's cursor, before going on
            with open_store(store_path, read_only=True) as con:
                missed = outbox_after(con, ck_name, after_cursor)
            if missed:
                out_lines(missed)
        with _replay_progress() as tick:  # plain progress lines on stderr; stdout stays one JSON object per line
            # every signal and decision line is written to the store's outbox with the commit that holds it
            rep = mon.run(feed, on_tick=tick, tick_every=TICK_EVERY, on_lines=out_lines)
        typer.echo(jsonable({"type": "summary", **rep.as_dict()}))
        return

    log: deque[Text] = deque(maxlen=14)
    last = {"ts": "-"}
    interactive = console.is_terminal

    def render() -> Group:
        return Group(_state_table(mon, last["ts"]), Text("signals and adjustments", style="bold"), *log)

    def lines(ev: Any, sigs: list[Any], records: list[dict[str, Any]]) -> list[Text]:
        out = []
        for s in sigs:
            out.append(Text(f"{str(s.ts)[:16]}  {s.severity:<8} {s.reason}", style=_STYLE[s.severity]))
        for r in records:
            tag = f"v{r['version']}" if "version" in r else r.get("proposal_id", "")
            kind = "AUTO" if r["type"] == "adjustment" else "PROPOSE"
            if "skipped" in r:
                kind, tag = "SKIP", r["skipped"]
            out.append(Text(f"{r['ts'][:16]}  {kind:<8} {tag}  {r['reason']}",
                            style="bold green" if kind == "AUTO" else "magenta"))
        return out

    if interactive:
        with Live(render(), console=console, refresh_per_second=4) as lv:
            def on_output(ev: Any, sigs: list[Any], records: list[dict[str, Any]]) -> None:
                last["ts"] = str(pd.Timestamp(ev.t_ns, tz="UTC"))[:16]
                log.extend(lines(ev, sigs, records))
                lv.update(render())

            def on_tick(ev: Any) -> None:
                last["ts"] = str(pd.Timestamp(ev.t_ns, tz="UTC"))[:16]
                lv.update(render())

            rep = mon.run(feed, on_output=on_output, on_tick=on_tick, tick_every=500)
    else:  # not a terminal (pipe, file, CI): print the log as it happens, then the final state
        def on_output_plain(ev: Any, sigs: list[Any], records: list[dict[str, Any]]) -> None:
            last["ts"] = str(pd.Timestamp(ev.t_ns, tz="UTC"))[:16]
            for line in lines(ev, sigs, records):
                console.print(line, soft_wrap=True)

        with _replay_progress() as tick:
            rep = mon.run(feed, on_output=on_output_plain, on_tick=tick, tick_every=TICK_EVERY)
        console.print(_state_table(mon, last["ts"]))
    err_console.print(f"processed {format_count(rep.events)} events ({format_count(rep.events_total)} in total for "
                      f"{ck_name}), {format_count(rep.signals)} signals, {format_count(rep.auto_adjustments)} "
                      f"automatic adjustments (versions {', '.join(map(str, rep.versions)) or '-'}), "
                      f"{format_count(rep.proposals)} proposals; "
                      f"last event {rep.last_event}")
