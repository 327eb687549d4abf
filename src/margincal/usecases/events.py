"""The monitor's signals and the audit trail as a feed: latest signals, and what is new after a cursor.

The queries behind ``GET /api/signals`` and its event stream. Signals come from the store's ``signals``
table when the monitor has written to it, else from the evidence the monitor recorded with its
proposals and automatic adjustments. Plain Python values; the shells shape them for output.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

import duckdb
import pandas as pd

from margincal.data.store import scalar


def _has_signal_rows(con: duckdb.DuckDBPyConnection) -> bool:
    """The monitor has written signals (the table exists from schema 0200_signals on, possibly empty)."""
    if not _has_table(con, "signals"):
        return False
    return scalar(con, "SELECT count(*) FROM (SELECT 1 FROM signals LIMIT 1)") > 0


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                            [name]).fetchone()[0])  # type: ignore[index]


def _evidence_signals(evidence: Any, source: str) -> list[dict[str, Any]]:
    """Signals recorded with an adjustment (``evidence["adjustment"]["signals"]``), tagged with their source."""
    if isinstance(evidence, str):
        try:
            evidence = json.loads(evidence)
        except ValueError:
            return []
    adj = evidence.get("adjustment") if isinstance(evidence, Mapping) else None
    sigs = adj.get("signals") if isinstance(adj, Mapping) else None
    return [{**s, "source": source} for s in sigs or [] if isinstance(s, Mapping)]


def stored_signals(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Signals the monitor recorded as evidence of its proposals and automatic adjustments."""
    out: list[dict[str, Any]] = []
    for pid, ev in con.execute("SELECT proposal_id, evidence FROM proposals WHERE evidence IS NOT NULL").fetchall():
        out += _evidence_signals(ev, f"proposal:{pid}")
    for v, prov in con.execute(
            "SELECT version, provenance FROM parameter_sets WHERE source = 'auto-adjust'").fetchall():
        out += _evidence_signals(prov, f"parameter_set:{v}")
    return out


def signals(con: duckdb.DuckDBPyConnection, limit: int = 100, instrument: str | None = None,
            severity: str | None = None) -> list[dict[str, Any]]:
    """Latest signals, newest first: the store's ``signals`` table when it has one, else the signals the
    monitor recorded as evidence of its proposals and automatic adjustments."""
    if not _has_signal_rows(con):
        rows = [r for r in stored_signals(con)
                if (instrument is None or r.get("instrument") == instrument)
                and (severity is None or r.get("severity") == severity)]
        rows.sort(key=lambda r: str(r.get("ts", "")), reverse=True)
        return rows[:limit]
    cols = [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'signals' ORDER BY ordinal_position"
    ).fetchall()]
    where, args = [], []
    if instrument and "instrument" in cols:
        where.append("instrument = ?")
        args.append(instrument)
    if severity and "severity" in cols:
        where.append("severity = ?")
        args.append(severity)
    order = "ts" if "ts" in cols else "1"
    sql = "SELECT * FROM signals" + (" WHERE " + " AND ".join(where) if where else "") + \
        f" ORDER BY {order} DESC LIMIT ?"
    cur = con.execute(sql, [*args, limit])
    names = [c[0] for c in cur.description]
    out = []
    for r in cur.fetchall():
        d = dict(zip(names, r, strict=True))
        for k, v in d.items():
            if isinstance(v, str) and v[:1] in "{[":
                with contextlib.suppress(ValueError):
                    d[k] = json.loads(v)
        out.append(d)
    return out


def _audit_signals(con: duckdb.DuckDBPyConnection, action: str, subject: str | None,
                   details: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Signals behind a ``propose`` or ``auto_adjust`` audit entry (from the proposal's evidence or the
    published version's provenance)."""
    if action == "propose" and subject and subject.startswith("proposal:"):
        row = con.execute("SELECT evidence FROM proposals WHERE proposal_id = ?", [subject[9:]]).fetchone()
        return _evidence_signals(row[0], subject) if row and row[0] else []
    if action == "auto_adjust" and isinstance(details.get("version"), int):
        row = con.execute("SELECT provenance FROM parameter_sets WHERE version = ?", [details["version"]]).fetchone()
        return _evidence_signals(row[0], f"parameter_set:{details['version']}") if row and row[0] else []
    return []


def events_after(con: duckdb.DuckDBPyConnection, after_seq: int, signal_after: str | None,
                 limit: int = 200) -> tuple[list[dict[str, Any]], int, str | None]:
    """New audit entries (seq > after_seq) and new signals (insertion seq > signal_after), oldest first.

    Returns (events, last audit seq, last signal seq) for the next poll."""
    ev: list[dict[str, Any]] = []
    has_signal_table = _has_signal_rows(con)
    rows = con.execute("SELECT seq, ts, actor, action, subject, details FROM audit_log WHERE seq > ? "
                       "ORDER BY seq LIMIT ?", [after_seq, limit]).fetchall()
    for seq, ts, actor, action, subject, details in rows:
        after_seq = int(seq)
        det = json.loads(details) if details else {}
        cursor = f"{after_seq}~{signal_after or ''}"
        ev.append({"type": "audit", "cursor": cursor, "seq": seq, "ts": pd.Timestamp(ts).isoformat() + "Z",
                   "actor": actor, "action": action, "subject": subject, "details": det})
        if not has_signal_table:
            ev += [{**sg, "type": "signal", "cursor": cursor} for sg in _audit_signals(con, action, subject, det)]
    if has_signal_table:
        cols = {r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'signals'").fetchall()}
        if "seq" in cols:
            # cursor on the insertion sequence (not market time: a replay of an earlier period is delivered too)
            after = int(signal_after) if signal_after else 0
            cur = con.execute("SELECT * FROM signals WHERE seq > ? ORDER BY seq LIMIT ?", [after, limit])
            names = [c[0] for c in cur.description]
            for r in cur.fetchall():
                d = dict(zip(names, r, strict=True))
                signal_after = str(d["seq"])
                d["type"] = "signal"
                d["cursor"] = f"{after_seq}~{signal_after}"
                ev.append(d)
    return ev, after_seq, signal_after


def audit_tail(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT max(seq) FROM audit_log").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def signal_tail(con: duckdb.DuckDBPyConnection, skip: int = 0) -> str | None:
    """Timestamp after which the newest ``skip`` signals lie (None: from the first signal)."""
    if not _has_signal_rows(con):
        return None
    try:
        row = con.execute("SELECT seq FROM signals ORDER BY seq DESC LIMIT 1 OFFSET ?", [skip]).fetchone()
    except duckdb.Error:
        return None
    return None if not row or row[0] is None else str(int(row[0]))


__all__ = ["audit_tail", "events_after", "signal_tail", "signals", "stored_signals"]
