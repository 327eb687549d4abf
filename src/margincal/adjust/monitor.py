"""The monitor: an event feed through the engine, with crash-safe persistence.

:class:`Monitor` drives a :class:`~margincal.adjust.engine.MonitorEngine` over
a feed (:class:`~margincal.data.feeds.ReplayFeed` or
:class:`~margincal.data.feeds.LiveFeed`) and writes what must survive:

* an **automatic** adjustment goes the way of every change of the live set: a
  proposal (author ``monitor``), its automatic approval by ``system:monitor``
  naming the policy rule that allowed the step (``auto_approve`` audit entry),
  and the new parameter-set version (``source="auto-adjust"``, created by
  ``system:monitor``, the adjustment and its signals as evidence in the
  provenance), plus an ``auto_adjust`` audit entry per instrument;
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

With ``run(on_lines=...)`` (``monitor --json``) the stream lines of each group
are written to ``monitor_outbox`` in the same transaction, numbered by a
per-monitor cursor: a reader that lost the process (SIGKILL after a commit,
before the lines reached it) reruns with the last cursor it received and gets
every committed line after it, exactly once and in order (:func:`outbox_after`).

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

from margincal.adjust.approval import SYSTEM_MONITOR, adjusted_row, decision_row, pending_rates, proposal_rows
from margincal.adjust.engine import Adjustment, MonitorEngine
from margincal.adjust.policy import Policy, default_policy
from margincal.adjust.signals import Signal
from margincal.data import audit
from margincal.data.feeds import SharesConnection, event_key
from margincal.data.store import connect, insert_rows, transaction, utcnow
from margincal.errors import ConfigError
from margincal.margin.params import (
    InstrumentParams,
    ParameterSet,
    Publication,
    latest_version,
    load,
    new_run_id,
    publication_rows,
    write_publications,
)

__all__ = ["Monitor", "MonitorReport", "jsonable", "load_checkpoint", "outbox_after", "outbox_tail", "summarize_state"]


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
    commit_latency_s : group commit. A decision (published version, proposal) or signal waits at most this
        long (wall time) before the transaction that writes it, with every other decision of the group and
        the checkpoint, commits; 0 commits after each event that produced one (use 0 for a live feed, which
        may idle between events). With a value > 0 and a store path, :meth:`run` keeps one connection (and
        so the store's write lock) for its duration; with 0 it opens one per transaction.
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
                 checkpoint_every: int = 100_000, checkpoint_seconds: float = 5.0, sync_seconds: float = 10.0,
                 commit_latency_s: float = 1.0, replay: bool = False) -> None:
        self.replay = bool(replay)
        #: the system identity that approves automatic steps (a replay into the live store is marked)
        self.system = SYSTEM_MONITOR + ("-replay" if self.replay else "")
        self.store = store
        self.policy = policy or default_policy()
        self.name = name
        self.live_from = live_from
        self.fresh = fresh
        self.actor = actor
        self.checkpoint_every = int(checkpoint_every)
        self.checkpoint_seconds = float(checkpoint_seconds)
        self.sync_seconds = float(sync_seconds)
        if not commit_latency_s >= 0:
            raise ConfigError(f"commit_latency_s is {commit_latency_s}; it must be >= 0")
        self.commit_latency_s = float(commit_latency_s)
        self.engine: MonitorEngine | None = None
        self._version: int | None = None
        self._current: ParameterSet | None = None
        self._pending_signals: list[Signal] = []
        self._queue: list[Adjustment] = []
        self._lines: list[str] = []  # the stream lines of the last committed group (run(on_lines=...))
        self._held: duckdb.DuckDBPyConnection | None = None
        self.report = MonitorReport(name)

    # ---------------------------------------------------------------- store
    @contextlib.contextmanager
    def _con(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if isinstance(self.store, duckdb.DuckDBPyConnection):
            yield self.store
            return
        if self._held is not None:
            yield self._held
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
            rows.append([self.name, pd.Timestamp(sg.ts).tz_convert(None), d["instrument"],  # naive UTC
                         d["kind"], d["severity"], d["reason"], d["threshold"],
                         json.dumps(d["values"], allow_nan=False, default=str), now])
        # ``seq`` (the stream's cursor) takes the next value of signal_seq; a replayed duplicate is ignored
        insert_rows(con, "signals", _SIGNAL_COLUMNS, rows, or_ignore=True)

    def _save_state(self, con: duckdb.DuckDBPyConnection) -> None:
        self._write_signals(con)
        eng = self.engine
        assert eng is not None
        lk = eng.last_key
        last_ts = None if lk is None else pd.Timestamp(lk[0], tz="UTC").tz_localize(None)
        con.execute("INSERT OR REPLACE INTO monitor_state VALUES (?, ?, ?, ?)",
                    [self.name, last_ts, json.dumps(eng.state(), allow_nan=False), utcnow()])

    def checkpoint(self) -> None:
        """Write the queued decisions, the signals and the engine state (one transaction)."""
        self.flush()

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
    def _write_decisions(self, con: duckdb.DuckDBPyConnection, adjustments: list[Adjustment],
                         current: ParameterSet | None) -> tuple[list[dict[str, Any]], ParameterSet | None, bool]:
        """Write adjustments inside the caller's transaction; returns (records, current set, resync needed).

        Adjustments sharing a ``group`` (the decreases of one batch window) become ONE proposal, or one
        version for automatic ones, with one diff over every instrument of the group.
        """
        records: list[dict[str, Any]] = []
        resync = False
        writer = GroupWriter(con)
        k = 0
        n = len(adjustments)
        while k < n:
            adj = adjustments[k]
            grp = [adj]
            if adj.group is not None:
                while k + len(grp) < n and adjustments[k + len(grp)].group == adj.group \
                        and adjustments[k + len(grp)].route == adj.route:
                    grp.append(adjustments[k + len(grp)])
            k += len(grp)
            ok: list[Adjustment] = []
            for a in grp:
                rec = {"type": "adjustment" if a.route == "auto" else "proposal", **a.as_dict()}
                records.append(rec)
                if current is None or a.instrument not in current.params:
                    rec["skipped"] = "instrument not in the published parameter set"
                    continue
                in_force = current.params[a.instrument].im_rate
                if abs(in_force - a.im_before) > 1e-12 * max(1.0, in_force):
                    rec["skipped"] = (f"rate in force {in_force:.6g} differs from the engine's {a.im_before:.6g} "
                                      "(changed by someone else); resynchronised")
                    resync = True
                    continue
                ok.append(a)
            if not ok or current is None:
                continue
            recs = records[len(records) - len(grp):]
            recs = [r for r in recs if "skipped" not in r]
            evidence = {"event_ts": ok[0].ts.isoformat(), "policy": self.policy.summary(), "monitor": self.name,
                        "adjustment": ok[0].as_dict()}
            if len(ok) > 1:
                evidence["group"] = ok[0].group
                evidence["adjustments"] = [a.as_dict() for a in ok]
            if self.replay:
                evidence["replay"] = True
            reason = ok[0].reason if len(ok) == 1 else (
                f"{len(ok)} instruments, decreases of the window from "
                f"{str(ok[0].group).split(':', 1)[1].split('@')[0]}: "
                + "; ".join(a.reason for a in ok))
            if self.replay:
                reason = "[replay] " + reason
            changes = [{"instrument": a.instrument, "im_before": a.im_before, "im_after": a.im_after,
                        "mm_before": a.mm_before, "mm_after": a.mm_after, "meta": _meta(a)} for a in ok]
            if ok[0].route == "auto":
                # the same path as every change of the live set: a proposal, decided at once by the system
                # identity under the policy rule that allowed the step, and the publication, in this transaction
                rows = {a.instrument: _row(current.params[a.instrument], a) for a in ok}
                pid = writer.propose(author=self.actor, reason=reason, base_version=current.version,
                                     evidence=evidence, changes=changes)
                rule = "; ".join(dict.fromkeys(a.rule for a in ok))
                new = ParameterSet(params=rows, provenance={"source": "auto-adjust", "proposal_id": pid,
                                                            "decided_by": self.system, "rule": rule, **evidence},
                                   parent_version=current.version)
                published = writer.publish(current, new, created_by=self.system, source="auto-adjust",
                                           run_id=new_run_id(), note=reason[:500])
                assert published is not None  # an automatic step changes a rate
                version = published
                writer.decide(pid, system=self.system, version=version, rule=rule, author=self.actor,
                              instruments=[a.instrument for a in ok])
                for a in ok:
                    writer.audit(self.actor, "auto_adjust", f"instrument:{a.instrument}",
                                 {"version": version, "im_before": a.im_before, "im_after": a.im_after,
                                  "mm_before": a.mm_before, "mm_after": a.mm_after, "event_ts": a.ts.isoformat(),
                                  "scope": a.scope, "effective_at": (a.effective_at or a.ts).isoformat(),
                                  "mm_scheduled": None if a.mm_scheduled != a.mm_scheduled else a.mm_scheduled,
                                  "mm_effective_at": None if a.mm_effective_at is None
                                  else a.mm_effective_at.isoformat(),
                                  "rule": a.rule, "signals": [s.kind + ":" + s.severity for s in a.signals]})
                current = dataclasses.replace(current.with_changes(rows), provenance=new.provenance,
                                              version=version)
                for r in recs:
                    r["version"] = version
                    r["proposal_id"] = pid
                self.report.versions.append(version)
                self.report.auto_adjustments += 1
            else:
                pid = writer.propose(author=self.actor, reason=reason, base_version=current.version,
                                     evidence=evidence, changes=changes)
                for r in recs:
                    r["proposal_id"] = pid
                self.report.proposal_ids.append(pid)
                self.report.proposals += 1
        writer.write()
        return records, current, resync

    def _persist(self, adjustments: list[Adjustment]) -> list[dict[str, Any]]:
        """Write adjustments, the pending signals and the checkpoint in one transaction (see :meth:`flush`)."""
        self._queue.extend(adjustments)
        return self.flush()

    def flush(self, lines_of: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
              ) -> list[dict[str, Any]]:
        """Group commit: every queued decision, the pending signals and the checkpoint in ONE transaction.

        Nothing is written before the commit: a crash loses the whole group, and the restart replays its
        events from the previous checkpoint, reproducing the same decisions (exactly once in the store).
        ``lines_of(records)``, when given, returns the stream lines of the group; they are numbered and written
        to the outbox in the same transaction (:meth:`lines`), so a line exists exactly when what it reports was
        committed.
        """
        eng = self.engine
        assert eng is not None
        queue = self._queue
        with self._con() as con, transaction(con):
            current: ParameterSet | None = None
            if queue:
                v = latest_version(con)
                if v is None:
                    current = None
                elif self._current is not None and self._current.version == v:
                    current = self._current  # unchanged since our last write: no need to read it again
                else:
                    current = load(con, v)
                records, current, resync = self._write_decisions(con, queue, current)
            else:
                records, resync = [], False
            self._save_state(con)
            if lines_of is not None:
                self._lines = _write_outbox(con, self.name, lines_of(records))
        # only after the commit succeeded
        self._queue = []
        self._pending_signals = []
        if queue:
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
            max_events: int | None = None,
            on_lines: Callable[[list[str]], None] | None = None) -> MonitorReport:
        """Process the feed; returns a :class:`MonitorReport`.

        Writes are grouped: the decisions and signals of many events, with the checkpoint, are committed in
        one transaction every ``checkpoint_every`` events or ``checkpoint_seconds`` of wall time (and at the
        end). ``on_output(event, signals, records)`` is called for each event where something happened,
        after the transaction holding it committed (records carry their version or proposal id);
        ``on_tick(event)`` every ``tick_every`` events.

        ``on_lines(lines)``, when given, receives the JSON lines of each committed group (a signal line per
        signal, then the event's decision records, in event order), each with its ``cursor``: the lines are
        written to the store's outbox in the group's transaction, so :func:`outbox_after` gives a reader that
        lost the process every committed line after the last cursor it received (exactly once, in order).
        """
        if self.commit_latency_s > 0 and not isinstance(self.store, duckdb.DuckDBPyConnection):
            # group commit: one connection for the run (opening a store file costs more than a group's writes),
            # opened before the checkpoint is loaded so that start() reads through it too; it holds the store's
            # write lock until the run ends
            self._held = connect(self.store)
        shared = False
        try:
            eng = self.engine or self.start()
            shared = self._held is not None and isinstance(feed, SharesConnection) and \
                feed.share_connection(self.store, self._held)
            return self._run(eng, feed, on_output, on_tick, tick_every, max_events, on_lines)
        finally:
            if shared and isinstance(feed, SharesConnection):
                feed.share_connection(self.store, None)
            if self._held is not None:
                self._held.close()
                self._held = None

    def _run(self, eng: MonitorEngine, feed: Iterable[Any],
             on_output: Callable[[Any, list[Signal], list[dict[str, Any]]], None] | None,
             on_tick: Callable[[Any], None] | None, tick_every: int, max_events: int | None,
             on_lines: Callable[[list[str]], None] | None = None) -> MonitorReport:
        rep = self.report
        t_start = time.monotonic()
        last_ckpt_wall = last_sync = t_start
        since_ckpt = 0
        last_key = eng.last_key
        process = eng.process
        n = 0
        ev = None
        outputs: list[tuple[Any, list[Signal], int]] = []  # (event, signals, number of decisions) since the commit
        pend_sigs = self._pending_signals
        queue = self._queue
        latency = self.commit_latency_s
        ckpt_every = self.checkpoint_every
        first_output_wall = t_start

        def lines_of(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            i = 0
            for _e, sigs, k in outputs:
                out += [{"type": "signal", **s.as_dict()} for s in sigs]
                out += records[i:i + k]
                i += k
            return out

        def commit() -> None:
            nonlocal pend_sigs, queue
            records = self.flush(lines_of if on_lines is not None else None)
            pend_sigs = self._pending_signals
            queue = self._queue
            if on_lines is not None and self._lines:
                on_lines(self._lines)
                self._lines = []
            if on_output is not None:
                i = 0
                for e, sigs, k in outputs:
                    on_output(e, sigs, records[i:i + k])
                    i += k
            outputs.clear()

        # False while the engine has taken an event whose decisions are not yet queued: a commit then would
        # checkpoint a state whose decisions were never written
        consistent = True
        try:
            for ev in feed:
                if last_key is not None:
                    if event_key(ev) <= last_key:
                        continue  # already processed before a restart
                    last_key = None  # feeds deliver events in key order: no need to compare any further
                consistent = False
                out = process(ev)
                n += 1
                since_ckpt += 1
                if n == 1 and rep.first_event is None:
                    rep.first_event = pd.Timestamp(ev.t_ns, tz="UTC").isoformat()
                if out is not None:
                    sigs = [x for x in out if isinstance(x, Signal)]
                    adjs = [x for x in out if isinstance(x, Adjustment)]
                    if sigs or adjs:
                        rep.signals += len(sigs)
                        pend_sigs.extend(sigs)
                        queue.extend(adjs)
                        if not outputs:
                            first_output_wall = time.monotonic()
                        outputs.append((ev, sigs, len(adjs)))
                consistent = True
                if outputs and (latency <= 0.0 or time.monotonic() - first_output_wall >= latency):
                    commit()
                    since_ckpt = 0
                    last_ckpt_wall = time.monotonic()
                if on_tick is not None and n % tick_every == 0:
                    on_tick(ev)
                if n & 255 == 0 or since_ckpt >= ckpt_every:
                    now = time.monotonic()
                    if since_ckpt >= ckpt_every or now - last_ckpt_wall >= self.checkpoint_seconds:
                        commit()
                        since_ckpt = 0
                        last_ckpt_wall = now
                    if now - last_sync >= self.sync_seconds and not queue:
                        self._sync()
                        last_sync = now
                if max_events is not None and n >= max_events:
                    break
        finally:
            if consistent and eng.last_key is not None and (since_ckpt or queue or pend_sigs):
                commit()
            rep.events += n
            rep.events_total = eng.events_processed
            if eng.last_key is not None:
                rep.last_event = pd.Timestamp(eng.last_key[0], tz="UTC").isoformat()
            rep.elapsed_s += time.monotonic() - t_start
        if ev is not None and on_tick is not None:
            on_tick(ev)
        return rep


_SIGNAL_COLUMNS = ("monitor", "ts", "instrument", "kind", "severity", "reason", "threshold", "values", "recorded_at")


def _write_outbox(con: duckdb.DuckDBPyConnection, name: str, lines: list[dict[str, Any]]) -> list[str]:
    """Number ``lines`` after this monitor's last outbox line and insert them (in the caller's transaction).

    Returns the lines as JSON text, each with its ``cursor`` (the outbox sequence number)."""
    if not lines:
        return []
    nxt = outbox_tail(con, name) + 1
    texts = [jsonable({**ln, "cursor": nxt + i}) for i, ln in enumerate(lines)]
    now = utcnow()
    insert_rows(con, "monitor_outbox", ("monitor", "seq", "line", "committed_at"),
                [[name, nxt + i, t, now] for i, t in enumerate(texts)])
    return texts


def _has_outbox(con: duckdb.DuckDBPyConnection) -> bool:
    # a store opened read-only before its migration to the outbox has no such table (and nothing in it)
    row = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'monitor_outbox'").fetchone()
    return bool(row and row[0])


def outbox_tail(con: duckdb.DuckDBPyConnection, name: str) -> int:
    """The cursor of the last line the monitor ``name`` committed to its outbox (0: none yet)."""
    if not _has_outbox(con):
        return 0
    row = con.execute("SELECT max(seq) FROM monitor_outbox WHERE monitor = ?", [name]).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def outbox_after(con: duckdb.DuckDBPyConnection, name: str, after: int) -> list[str]:
    """Every line the monitor ``name`` committed after cursor ``after``, in commit order."""
    if not _has_outbox(con):
        return []
    return [r[0] for r in con.execute("SELECT line FROM monitor_outbox WHERE monitor = ? AND seq > ? ORDER BY seq",
                                      [name, int(after)]).fetchall()]
_PROPOSAL_COLUMNS = ("proposal_id", "created_at", "author", "base_version", "reason", "changes", "evidence")
_DECISION_COLUMNS = ("proposal_id", "decided_at", "decided_by", "decision", "comment", "published_version")


class GroupWriter:
    """Rows of many proposals, decisions, versions and audit entries, written with one multi-row INSERT per table.

    Group commit needs the writes themselves to be cheap: ``params.publish``, ``approval.create_proposal``
    and ``audit.append`` cost a few statements each (about 5 ms per decision in DuckDB, most of it the
    audit chain's read of its last entry). This writer builds its rows with the same functions those use -
    :func:`margincal.margin.params.publication_rows`, :func:`margincal.adjust.approval.proposal_rows` and
    :func:`~margincal.adjust.approval.decision_row` - and inserts every row of a table in one statement, the
    audit entries through :func:`margincal.data.audit.append_many`. It writes nothing until :meth:`write`,
    inside the caller's transaction.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self._pubs: list[Publication] = []
        self._props: list[list[Any]] = []
        self._decisions: list[list[Any]] = []
        self._audit: list[tuple[str, str, str | None, dict[str, Any]]] = []

    def publish(self, current: ParameterSet | None, pset: ParameterSet, *, created_by: str, source: str,
                run_id: str, note: str | None) -> int | None:
        """Queue ``pset``'s rows published on top of ``current`` (scoped); the new version, None when identical."""
        pub = publication_rows(current, pset, created_by=created_by, source=source, run_id=run_id, note=note)
        if pub is None:
            return None
        self._pubs.append(pub)
        self._audit.append(pub.audit)
        return pub.version

    def propose(self, *, author: str, changes: list[dict[str, Any]], reason: str, evidence: dict[str, Any],
                base_version: int | None) -> str:
        pid, row, entry = proposal_rows(author=author, changes=changes, reason=reason, evidence=evidence,
                                        base_version=base_version)
        self._props.append(row)
        self._audit.append(entry)
        return pid

    def decide(self, proposal_id: str, *, system: str, version: int, rule: str, author: str,
               instruments: list[str]) -> None:
        """Queue the automatic approval of ``proposal_id`` by ``system`` under ``rule`` (published as ``version``)."""
        self._decisions.append(decision_row(proposal_id, system, "approved", f"automatic: {rule}", version))
        self._audit.append((system, "auto_approve", f"proposal:{proposal_id}",
                            {"published_version": version, "rule": rule, "author": author,
                             "instruments": instruments}))

    def audit(self, actor: str, action: str, subject: str, details: dict[str, Any]) -> None:
        self._audit.append((actor, action, subject, details))

    def write(self) -> None:
        con = self.con
        write_publications(con, self._pubs)
        insert_rows(con, "proposals", _PROPOSAL_COLUMNS, self._props)
        insert_rows(con, "proposal_decisions", _DECISION_COLUMNS, self._decisions)
        if self._audit:
            audit.append_many(con, self._audit)
        self._pubs, self._props, self._decisions, self._audit = [], [], [], []


def _meta(a: Adjustment) -> dict[str, Any]:
    """Details written on the instrument's row with a change: base rates, anchor, announced MM, tier scale."""
    m: dict[str, Any] = {"im_base": a.im_base, "mm_base": a.mm_base, "sigma_anchor_annual": a.sigma_anchor,
                         "mm_scheduled": None if a.mm_scheduled != a.mm_scheduled else
                         {"rate": a.mm_scheduled, "effective_at": a.mm_effective_at.isoformat()
                          if a.mm_effective_at is not None else None, "scope": "all_positions"}}
    if a.components:
        m["tier_scale"] = a.components.get("tier_scale", 1.0)
        m["moved_by"] = list(a.components.get("moved_by", []))
    return m


def _row(prev: InstrumentParams, a: Adjustment) -> InstrumentParams:
    """The published row after an automatic adjustment: rates, tiers rescaled, effective time and scope."""
    meta = _meta(a)
    meta["adjusted"] = {"by": "auto-adjust", "event_ts": a.ts.isoformat(), "target_im": a.target_im,
                        "sigma_now_annual": a.sigma_now, "kind": a.kind, "scope": a.scope,
                        "effective_at": (a.effective_at or a.ts).isoformat()}
    if a.kind == "mm_effective":
        meta["mm_scheduled"] = None
        meta.pop("tier_scale", None)
    row = adjusted_row(prev, a.im_after, a.mm_after, meta)
    scale = meta.get("tier_scale")
    tiers = row.details.get("tiers")
    if isinstance(scale, (int, float)) and isinstance(tiers, list) and tiers:
        d = dict(row.details)
        base = d.setdefault("tier_bounds_base", [{k: t.get(k) for k in _BOUND_KEYS if k in t} for t in tiers])
        prev_scale = float(prev.details.get("tier_scale", 1.0) or 1.0)
        new_tiers = []
        for t, b in zip(tiers, base, strict=False):
            t2 = dict(t)
            for key, v in b.items():
                if isinstance(v, (int, float)):
                    t2[key] = float(v) * float(scale)
            if isinstance(t2.get("maintenance_amount"), (int, float)) and prev_scale > 0:
                # cumulative deduction = sum of boundary x rate step: it scales with the boundaries
                t2["maintenance_amount"] = float(t2["maintenance_amount"]) * float(scale) / prev_scale
            new_tiers.append(t2)
        d["tiers"] = new_tiers
        row = InstrumentParams(row.instrument, row.im_rate, row.mm_rate, d)
    return row


_BOUND_KEYS = ("lower", "upper", "notional_floor", "notional_cap", "max_notional")


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

