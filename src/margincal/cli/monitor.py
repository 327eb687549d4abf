"""`margincal monitor`: replay stored history (or watch an exchange) and print signals and margin moves.

A thin shell over :class:`margincal.adjust.monitor.Monitor`: it builds the
feed, shows a live Rich display (latest state per instrument + a log of
signals and adjustments) or, with ``--json``, prints one JSON object per line
(``type`` = signal / adjustment / proposal / summary).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from margincal.adjust.monitor import Monitor, jsonable, load_checkpoint, summarize_state
from margincal.adjust.policy import load_policy
from margincal.cli.common import JsonOption, StoreOption, console, err_console
from margincal.config import resolve_store_path
from margincal.data.feeds import LiveFeed, ReplayFeed, timeframe_ns
from margincal.data.store import bar_instruments, load_bars, open_store, to_utc
from margincal.errors import ConfigError


def _parse_end(value: str) -> pd.Timestamp:
    ts = to_utc(value)
    if len(value.strip()) <= 10:  # a date: the whole day is included
        ts = ts + pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
    return ts


def _calibrate_base(store: Path, instruments: list[str], before: pd.Timestamp) -> dict[str, Any]:
    """Calibrate each instrument on its bars strictly before ``before`` and publish that as the base version."""
    from margincal.config import CalibrationSettings
    from margincal.margin.params import new_run_id, publish
    from margincal.margin.published import calibrate_bars, to_parameter_set

    settings = CalibrationSettings()
    with open_store(store) as con:
        cals = []
        for inst in instruments:
            tfs = [r[0] for r in con.execute("SELECT DISTINCT timeframe FROM bars WHERE instrument = ?",
                                             [inst]).fetchall()]
            if not tfs:
                raise ConfigError(f"--calibrate: no bars stored for {inst}")
            tf = min(tfs, key=timeframe_ns)
            bars = load_bars(con, inst, tf, end=before - pd.Timedelta(timeframe_ns(tf), "ns"))
            cals.append(calibrate_bars(bars, inst, tf, settings))
        pset = to_parameter_set(cals, settings, new_run_id())
        version = publish(con, pset, created_by="monitor-cli", source="calibration",
                          note=f"calibrated on data before {before.isoformat()} for a monitor replay")
    return {"version": version, "im": {c.instrument: c.im_rate for c in cals}}


def _state_table(mon: Monitor, last_ts: str) -> Table:
    t = Table(title=f"monitor state at {last_ts}", title_justify="left")
    for c in ("instrument", "close", "vol 24h", "vol 30d", "ratio", "vol target", "breaches", "IM", "pending IM"):
        t.add_column(c, justify="left" if c == "instrument" else "right")
    assert mon.engine is not None

    def pct(x: Any) -> str:
        return "-" if x is None or x != x else f"{100 * x:.1f}%"

    for r in summarize_state(mon.engine):
        t.add_row(r["instrument"], "-" if r["close"] != r["close"] else f"{r['close']:,.2f}", pct(r["vol_24h"]),
                  pct(r["vol_30d"]), "-" if r["ratio"] != r["ratio"] else f"{r['ratio']:.2f}x", pct(r["vol_target"]),
                  "-" if r["breaches"] != r["breaches"] else f"{r['breaches']:.0f}",
                  "-" if r["im_rate"] != r["im_rate"] else f"{100 * r['im_rate']:.2f}%",
                  "-" if r["pending_im"] != r["pending_im"] else f"{100 * r['pending_im']:.2f}%")
    return t


_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


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
) -> None:
    """Run the margin monitor: signals and margin adjustments as they happen."""
    if replay == live:
        raise ConfigError("choose exactly one of --replay or --live")
    pol = load_policy(policy)
    store_path = resolve_store_path(store)
    if replay:
        if not store_path.exists():
            raise ConfigError(f"store {store_path} does not exist; run `margincal run` or `margincal ingest` first")
        if start is None:
            raise ConfigError("--replay needs --from (the first time the monitor acts on)")
        live_from = to_utc(start)
        stop = _parse_end(end) if end else None
        if stop is not None and stop < live_from:
            raise ConfigError(f"--to {end} is before --from {start}")
        insts = list(instrument) if instrument else None
        ck_name = name or f"replay:{','.join(insts) if insts else 'all'}:{start}:{end or 'end'}"
    else:
        if not symbol:
            raise ConfigError("--live needs at least one --symbol, e.g. --symbol BTC/USDT:USDT")
        live_from = to_utc(start) if start else pd.Timestamp.now(tz="UTC")
        stop = None
        insts = None
        ck_name = name or f"live:{exchange}:{','.join(symbol)}:{timeframe}"
    mon = Monitor(store_path, pol, name=ck_name, live_from=live_from, fresh=fresh)
    with open_store(store_path) as con:
        resuming = (not fresh) and load_checkpoint(con, ck_name) is not None
    if calibrate and replay:
        if resuming:
            err_console.print("[yellow]--calibrate skipped: resuming a checkpointed run[/]")
        else:
            with open_store(store_path) as con:
                if insts is None:
                    insts = bar_instruments(con)
            info = _calibrate_base(store_path, insts, live_from)
            if json_out:
                typer.echo(jsonable({"type": "calibration", **info}))
            else:
                err_console.print(f"published base version {info['version']} calibrated on data before {start}: "
                                  + ", ".join(f"{k} IM {100 * v:.2f}%" for k, v in info["im"].items()))
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
        def out_json(ev: Any, sigs: list[Any], records: list[dict[str, Any]]) -> None:
            for s in sigs:
                typer.echo(jsonable({"type": "signal", **s.as_dict()}))
            for r in records:
                typer.echo(jsonable(r))

        rep = mon.run(feed, on_output=out_json)
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

        rep = mon.run(feed, on_output=on_output_plain)
        console.print(_state_table(mon, last["ts"]))
    err_console.print(f"processed {rep.events} events ({rep.events_total} in total for {ck_name}), "
                      f"{rep.signals} signals, {rep.auto_adjustments} automatic adjustments "
                      f"(versions {', '.join(map(str, rep.versions)) or '-'}), {rep.proposals} proposals; "
                      f"last event {rep.last_event}")
