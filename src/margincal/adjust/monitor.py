"""The monitor: an event feed through the engine, with crash-safe persistence.

:class:`Monitor` drives a :class:`~margincal.adjust.engine.MonitorEngine` over
a feed (:class:`~margincal.data.feeds.ReplayFeed` or
:class:`~margincal.data.feeds.LiveFeed`) and writes what must survive:

* an **automatic** adjustment publishes a new parameter-set version
  (``source="auto-adjust"``, the adjustment and its signals as evidence in the
  provenance) and appends an ``auto_adjust`` audit entry;
* a change that needs an officer becomes a **proposal** (reason + evidence
  JSON) with a ``propose`` audit entry;
* in the **same transaction**, the checkpoint row of ``monitor_state``
  (the key of the last processed event and the complete engine state) is
  written. Checkpoints are also written every ``checkpoint_every`` events or
  ``checkpoint_seconds`` of wall time, and at the end.

So a crash (even SIGKILL) between two transactions loses nothing that was
published and leaves nothing half-published; on restart the engine is
restored from the checkpoint and the feed resumes after its last event key.
Events processed after the last checkpoint are processed again, from the same
restored state, which reproduces exactly the decisions that had not been
committed (there is nothing to undo, because nothing of them was written).

The store connection is short-lived (opened for one transaction, then closed)
when ``store`` is a path, so other processes (the service, ``margincal audit
verify``) can open the file between writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from margincal.adjust import audit
from margincal.adjust.approval import adjusted_row, create_proposal, pending_rates
from margincal.adjust.engine import Adjustment, MonitorEngine
from margincal.adjust.policy import Policy, default_policy
from margincal.adjust.signals import Signal
from margincal.data.feeds import event_key
from margincal.data.store import connect, transaction, utcnow
from margincal.margin.params import ParameterSet, latest_version, load, new_run_id, publish

__all__ = ["Monitor", "MonitorReport", "jsonable", "load_checkpoint", "summarize_state"]


@dataclass
class MonitorReport:
    """What a run did."""

    name: str
    events: int = 0
    signals: int = 0
    auto_adjustments: int = 0
    proposals: int = 0
    versions: list[int] = field(default_factory=list)
    proposal_ids: list[str] = field(default_factory=list)
    resumed_after: list[Any] | None = None
    first_event: str | None = None
    last_event: str | None = None
    events_total: int = 0
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def load_checkpoint(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, Any] | None:
    """The saved engine state of monitor ``name`` (None when it never checkpointed)."""
    row = con.execute("SELECT state FROM monitor_state WHERE name = ?", [name]).fetchone()
    return None if row is None or row[0] is None else json.loads(row[0])


class Monitor:
    """Run the engine over a feed and persist adjustments, proposals and checkpoints atomically.

    Parameters
    ----------
    store : store path (short-lived connections) or an open connection.
    policy : the policy (default: the shipped one).
    name : checkpoint name in ``monitor_state`` (one per monitored stream).
    live_from : events before it only warm the estimators up.
    fresh : ignore an existing checkpoint of this name (start over).
    actor : author of proposals and automatic versions.
    replay : the run replays history into a live store (``--live-store``): every version and proposal it
        writes is marked (``[replay]`` in notes and reasons, ``replay: true`` in the evidence).
    """

    def __init__(self, store: str | Path | duckdb.DuckDBPyConnection, policy: Policy | None = None, *,
                 name: str = "monitor", live_from: Any = None, fresh: bool = False, actor: str = "monitor",
                 checkpoint_every: int = 5000, checkpoint_seconds: float = 5.0, sync_seconds: float = 10.0,
                 replay: bool = False) -> None:
        self.replay = bool(replay)
        self.store = store
        self.policy = policy or default_policy()
        self.name = name
        self.live_from = live_from
        self.fresh = fresh
        self.actor = actor
        self.checkpoint_every = int(checkpoint_every)
        self.checkpoint_seconds = float(checkpoint_seconds)
        self.sync_seconds = float(sync_seconds)
        self.engine: MonitorEngine | None = None
        self._version: int | None = None
        self._current: ParameterSet | None = None
        self._pending_signals: list[Signal] = []
        self.report = MonitorReport(name)

    # ---------------------------------------------------------------- store
    @contextlib.contextmanager
    def _con(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if isinstance(self.store, duckdb.DuckDBPyConnection):
            yield self.store
            return
        c = connect(self.store)
        try:
            yield c
        finally:
            c.close()

    def _write_signals(self, con: duckdb.DuckDBPyConnection) -> None:
        """Append the signals raised since the last write (same transaction as the state checkpoint).

        A restart replays the events after the last checkpoint and raises the same
        signals again; the primary key makes that a no-op (INSERT OR IGNORE).
        """
        sigs = self._pending_signals
        if not sigs:
            return
        now = utcnow()
        rows = []
        for sg in sigs:
            d = sg.as_dict()
            rows += [self.name, pd.Timestamp(sg.ts).tz_convert("UTC").tz_localize(None), d["instrument"], d["kind"],
                     d["severity"], d["reason"], d["threshold"], json.dumps(d["values"], allow_nan=False, default=str),
                     now]
        con.execute('INSERT OR IGNORE INTO signals VALUES ' + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(sigs)),
                    rows)

    def _save_state(self, con: duckdb.DuckDBPyConnection) -> None:
        self._write_signals(con)
        eng = self.engine
        assert eng is not None
        lk = eng.last_key
        last_ts = None if lk is None else pd.Timestamp(lk[0], tz="UTC").tz_localize(None)
        con.execute("INSERT OR REPLACE INTO monitor_state VALUES (?, ?, ?, ?)",
                    [self.name, last_ts, json.dumps(eng.state(), allow_nan=False), utcnow()])

    def checkpoint(self) -> None:
        """Write the engine state and the signals raised since the last write (one transaction)."""
        with self._con() as con, transaction(con):
            self._save_state(con)
        self._pending_signals = []

    def start(self) -> MonitorEngine:
        """Load the checkpoint (unless ``fresh``) and the rates in force; returns the engine."""
        with self._con() as con:
            state = None if self.fresh else load_checkpoint(con, self.name)
            self._version = latest_version(con)
            pset = load(con) if self._version is not None else None
            pending = pending_rates(con)
        if state is not None:
            eng = MonitorEngine.from_state(self.policy, state)
            self.report.resumed_after = state.get("last_key")
            self.report.events_total = eng.events_processed
        else:
            eng = MonitorEngine(self.policy, None, live_from=self.live_from)
        if pset is not None:
            eng.set_params(pset, now_ns=None if eng.last_key is None else eng.last_key[0], pending=pending)
        self.engine = eng
        return eng

    def resume_key(self) -> tuple[int, int, str] | None:
        """Key of the last event already processed (feeds resume after it)."""
        if self.engine is None:
            self.start()
        assert self.engine is not None
        return self.engine.last_key

    def _sync(self) -> None:
        """Pick up versions published by others (e.g. an approved proposal)."""
        with self._con() as con:
            v = latest_version(con)
            if v == self._version:
                return
            pset = load(con)
            pending = pending_rates(con)
        assert self.engine is not None
        lk = self.engine.last_key
        self.engine.set_params(pset, now_ns=None if lk is None else lk[0], pending=pending)
        self._version = v

    # ---------------------------------------------------------------- persistence of decisions
    def _persist(self, adjustments: list[Adjustment]) -> list[dict[str, Any]]:
        eng = self.engine
        assert eng is not None
        records: list[dict[str, Any]] = []
        resync = False
        with self._con() as con, transaction(con):
            v = latest_version(con)
            if v is None:
                current: ParameterSet | None = None
            elif self._current is not None and self._current.version == v:
                current = self._current  # unchanged since our last write: no need to read it again
            else:
                current = load(con, v)
            for adj in adjustments:
                rec = {"type": "adjustment" if adj.route == "auto" else "proposal", **adj.as_dict()}
                if current is None or adj.instrument not in current.params:
                    rec["skipped"] = "instrument not in the published parameter set"
                    records.append(rec)
                    continue
                in_force = current.params[adj.instrument].im_rate
                if abs(in_force - adj.im_before) > 1e-12 * max(1.0, in_force):
                    rec["skipped"] = (f"rate in force {in_force:.6g} differs from the engine's {adj.im_before:.6g} "
                                      "(changed by someone else); resynchronised")
                    resync = True
                    records.append(rec)
                    continue
                meta = {"im_base": adj.im_base, "mm_base": adj.mm_base, "sigma_anchor_annual": adj.sigma_anchor}
                evidence = {"event_ts": adj.ts.isoformat(), "policy": self.policy.summary(), "monitor": self.name,
                            "adjustment": adj.as_dict()}
                mark = "[replay] " if self.replay else ""
                if self.replay:
                    evidence["replay"] = True
                if adj.route == "auto":
                    row = adjusted_row(current.params[adj.instrument], adj.im_after, adj.mm_after,
                                       {**meta, "adjusted": {"by": "auto-adjust", "event_ts": adj.ts.isoformat(),
                                                             "target_im": adj.target_im,
                                                             "sigma_now_annual": adj.sigma_now}})
                    new = current.with_changes({adj.instrument: row})
                    new = ParameterSet(params=new.params, provenance={"source": "auto-adjust", **evidence},
                                       parent_version=current.version)
                    version = publish(con, new, created_by=self.actor, source="auto-adjust", run_id=new_run_id(),
                                      note=(mark + adj.reason)[:500], in_transaction=True)
                    audit.append(con, self.actor, "auto_adjust", f"instrument:{adj.instrument}",
                                 {"version": version, "im_before": adj.im_before, "im_after": adj.im_after,
                                  "mm_before": adj.mm_before, "mm_after": adj.mm_after, "event_ts": adj.ts.isoformat(),
                                  "rule": adj.rule, "signals": [s.kind + ":" + s.severity for s in adj.signals]})
                    current = dataclasses.replace(new, version=version)
                    rec["version"] = version
                    self.report.versions.append(version)
                    self.report.auto_adjustments += 1
                else:
                    pid = create_proposal(
                        con, author=self.actor, reason=mark + adj.reason, base_version=current.version,
                        evidence=evidence,
                        changes=[{"instrument": adj.instrument, "im_before": adj.im_before, "im_after": adj.im_after,
                                  "mm_before": adj.mm_before, "mm_after": adj.mm_after, "meta": meta}],
                        in_transaction=True)
                    rec["proposal_id"] = pid
                    self.report.proposal_ids.append(pid)
                    self.report.proposals += 1
                records.append(rec)
            self._save_state(con)
        # only after the commit succeeded
        self._pending_signals = []
        self._version = None if current is None else current.version
        self._current = current
        if resync:
            self._version = -1
            self._sync()
        return records

    # ---------------------------------------------------------------- main loop
    def run(self, feed: Iterable[Any], *,
            on_output: Callable[[Any, list[Signal], list[dict[str, Any]]], None] | None = None,
            on_tick: Callable[[Any], None] | None = None, tick_every: int = 1000,
            max_events: int | None = None) -> MonitorReport:
        """Process the feed; returns a :class:`MonitorReport`.

        ``on_output(event, signals, records)`` is called whenever something
        happened (records are the persisted adjustments/proposals with their
        version or proposal id); ``on_tick(event)`` every ``tick_every`` events.
        """
        eng = self.engine or self.start()
        rep = self.report
        t_start = time.monotonic()
        last_ckpt_wall = last_sync = t_start
        since_ckpt = 0
        last_key = eng.last_key
        process = eng.process
        n = 0
        ev = None
        # False while the engine has taken an event whose effects are not yet written: a checkpoint then
        # would record changes that were never published (so none is written if that step fails)
        consistent = True
        try:
            for ev in feed:
                if last_key is not None and event_key(ev) <= last_key:
                    continue  # already processed before a restart
                consistent = False
                out = process(ev)
                last_key = eng.last_key
                n += 1
                since_ckpt += 1
                if rep.first_event is None:
                    rep.first_event = pd.Timestamp(ev.t_ns, tz="UTC").isoformat()
                if out is not None:
                    sigs = [x for x in out if isinstance(x, Signal)]
                    adjs = [x for x in out if isinstance(x, Adjustment)]
                    rep.signals += len(sigs)
                    self._pending_signals.extend(sigs)
                    records = self._persist(adjs) if adjs else []
                    consistent = True
                    if adjs:
                        since_ckpt = 0
                        last_ckpt_wall = time.monotonic()
                    if on_output is not None:
                        on_output(ev, sigs, records)
                consistent = True
                if on_tick is not None and n % tick_every == 0:
                    on_tick(ev)
                if n & 255 == 0 or since_ckpt >= self.checkpoint_every:
                    now = time.monotonic()
                    if since_ckpt >= self.checkpoint_every or now - last_ckpt_wall >= self.checkpoint_seconds:
                        self.checkpoint()
                        since_ckpt = 0
                        last_ckpt_wall = now
                    if now - last_sync >= self.sync_seconds:
                        self._sync()
                        last_sync = now
                if max_events is not None and n >= max_events:
                    break
        finally:
            if since_ckpt and consistent and eng.last_key is not None:
                self.checkpoint()
            rep.events += n
            rep.events_total = eng.events_processed
            if eng.last_key is not None:
                rep.last_event = pd.Timestamp(eng.last_key[0], tz="UTC").isoformat()
            rep.elapsed_s += time.monotonic() - t_start
        if ev is not None and on_tick is not None:
            on_tick(ev)
        return rep


def summarize_state(engine: MonitorEngine) -> list[dict[str, Any]]:
    """One row per instrument for displays: price, vols, ratio, IM in force, pending proposal."""
    rows = []
    for name in engine.instruments():
        s = engine.snapshot(name)
        rows.append({
            "instrument": name, "close": s["close"], "vol_24h": s["sigma_short_annual"],
            "vol_30d": s["sigma_long_annual"], "ratio": s["vol_ratio"], "vol_target": s["sigma_target_annual"],
            "breaches": s["breaches"], "im_rate": s["im_rate"], "pending_im": s["pending_im"],
        })
    return rows


def _finite(x: float) -> float | None:
    return x if isinstance(x, float) and math.isfinite(x) else None


def jsonable(obj: Any) -> str:
    """One JSON line (NaN/inf -> null)."""
    return json.dumps(_clean(obj), default=str, allow_nan=False)


def _clean(o: Any) -> Any:
    if isinstance(o, float):
        return _finite(o)
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o

