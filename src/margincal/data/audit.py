"""Append-only, hash-chained audit log.

Each entry stores ``prev_hash`` (the previous entry's hash, or 64 zeros for
the first) and ``hash = sha256(canonical JSON of seq, ts, actor, action,
subject, details, prev_hash)``. Editing, deleting or reordering any entry
breaks the chain from that point; :func:`verify_chain` finds where.

:func:`append` must be called inside the caller's transaction when the
audited change is written in the same transaction (it never commits itself).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd

from margincal.data.store import dumps, insert_rows, utcnow

GENESIS = "0" * 64


def _entry_hash(seq: int, ts: str, actor: str, action: str, subject: str | None, details: str,
                prev_hash: str) -> str:
    payload = json.dumps(
        {"seq": seq, "ts": ts, "actor": actor, "action": action, "subject": subject,
         "details": json.loads(details), "prev": prev_hash},
        sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


_COLUMNS = ("seq", "ts", "actor", "action", "subject", "details", "prev_hash", "hash")


def _ts_text(ts: Any) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%dT%H:%M:%S.%f")


def append(con: duckdb.DuckDBPyConnection, actor: str, action: str, subject: str | None = None,
           details: dict[str, Any] | None = None) -> int:
    """Append one entry; returns its sequence number. Does not commit."""
    return append_many(con, [(actor, action, subject, details or {})])


def append_many(con: duckdb.DuckDBPyConnection,
                items: Sequence[tuple[str, str, str | None, dict[str, Any]]]) -> int:
    """Append entries ``(actor, action, subject, details)`` in order, chained, with ONE multi-row INSERT
    (group commit writes many at once); returns the last sequence number. Does not commit."""
    row = con.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (0, GENESIS) if row is None else (int(row[0]), str(row[1]))
    if not items:
        return seq
    ts = utcnow()
    ts_text = _ts_text(ts)
    out: list[list[Any]] = []
    for actor, action, subject, details in items:
        seq += 1
        det = dumps(details)
        h = _entry_hash(seq, ts_text, actor, action, subject, det, prev)
        out.append([seq, ts, actor, action, subject, det, prev, h])
        prev = h
    insert_rows(con, "audit_log", _COLUMNS, out)
    return seq


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    first_bad_seq: int | None
    reason: str


def verify_chain(con: duckdb.DuckDBPyConnection) -> ChainReport:
    """Recompute every hash and link; report the first broken entry."""
    rows = con.execute(
        "SELECT seq, ts, actor, action, subject, details, prev_hash, hash FROM audit_log ORDER BY seq"
    ).fetchall()
    prev = GENESIS
    expected_seq = 1
    for seq, ts, actor, action, subject, details, prev_hash, h in rows:
        if seq != expected_seq:
            return ChainReport(False, len(rows), int(seq), f"sequence gap: expected {expected_seq}, found {seq}")
        if prev_hash != prev:
            return ChainReport(False, len(rows), int(seq), "prev_hash does not match the previous entry's hash")
        calc = _entry_hash(int(seq), _ts_text(ts), actor, action, subject, details, prev_hash)
        if calc != h:
            return ChainReport(False, len(rows), int(seq), "entry content does not match its hash (edited)")
        prev = h
        expected_seq += 1
    return ChainReport(True, len(rows), None, f"{len(rows)} entries, chain intact")


def entries(con: duckdb.DuckDBPyConnection, limit: int = 100) -> pd.DataFrame:
    return con.execute("SELECT * FROM audit_log ORDER BY seq DESC LIMIT ?", [limit]).df()


__all__ = ["GENESIS", "ChainReport", "append", "entries", "verify_chain"]
