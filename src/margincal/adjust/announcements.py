"""Announced maintenance-margin changes: what the monitor announced, when it takes effect, whether it has.

An MM change applies to existing positions, so the monitor announces it with the IM change that causes it
and lets it take effect ``[effective] mm_notice_hours`` later (:class:`margincal.adjust.engine.MonitorEngine`).
The announcement travels in the published row (``details["mm_scheduled"] = {"rate", "effective_at",
"scope"}``) of the version that announced it; the version that applies it is an automatic version of kind
``mm_effective`` (``details["adjusted"]["kind"]``) whose MM is the announced rate.

:func:`announcements` reads the published versions and lists every announcement with its status:

* ``pending`` - announced, not yet in force;
* ``applied`` - a later version put the announced MM in force (``applied_version``, ``applied_at``);
* ``superseded`` - never applied because a later announcement for the same instrument took effect first
  (the engine applies the latest announcement whose notice has passed).

Times: ``announced_at`` and ``effective_at`` are market (event) times of the monitor run - the same clock as
the effective time it announced; ``published_at`` is when the announcing version was written.
"""

from __future__ import annotations

import json
import math
from typing import Any

import duckdb
import pandas as pd

__all__ = ["STATUSES", "announcements"]

STATUSES = ("pending", "applied", "superseded")


def _obj(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    v = json.loads(text) if isinstance(text, str) else text
    return v if isinstance(v, dict) else None


def _iso(ts: Any) -> str | None:
    if ts is None:
        return None
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.isoformat()


def announcements(con: duckdb.DuckDBPyConnection, *, status: str | None = None, instrument: str | None = None,
                  limit: int | None = None) -> list[dict[str, Any]]:
    """Every MM change announced in the published versions, newest first (see module doc).

    Each item: ``instrument``, ``status``, ``mm_before`` (MM in force when announced), ``mm_after`` (the
    announced MM), ``im_at_announcement`` (the IM of the announcing version), ``announced_version``,
    ``announced_at``, ``effective_at``, ``scope`` (``all_positions``), ``published_at``, ``applied_version``
    and ``applied_at`` (None unless applied). ``status`` / ``instrument`` filter; ``limit`` keeps the newest.
    """
    if status is not None and status not in STATUSES:
        from margincal.errors import ConfigError

        raise ConfigError(f"status is {status!r}; it must be one of {', '.join(STATUSES)}")
    sql = ("SELECT r.instrument, r.version, r.im_rate, r.mm_rate, json_extract(r.details, '$.mm_scheduled'), "
           "json_extract(r.details, '$.adjusted'), s.created_at FROM parameter_rows r "
           "JOIN parameter_sets s ON s.version = r.version "
           + ("WHERE r.instrument = ? " if instrument is not None else "")
           + "ORDER BY r.instrument, r.version")
    rows = con.execute(sql, [instrument] if instrument is not None else []).fetchall()
    out: list[dict[str, Any]] = []
    open_: list[dict[str, Any]] = []  # announcements of the current instrument not yet applied
    current = None
    for inst, version, im, mm, sched_j, adj_j, created in rows:
        if inst != current:
            open_ = []
            current = inst
        adj = _obj(adj_j) or {}
        if adj.get("kind") == "mm_effective":
            # the earliest open announcement of this rate is the one applied; older ones were overtaken
            hit = next((a for a in open_ if math.isclose(a["mm_after"], float(mm), rel_tol=0, abs_tol=1e-12)), None)
            if hit is not None:
                for a in open_:
                    if a is hit:
                        break
                    a["status"] = "superseded"
                hit["status"] = "applied"
                hit["applied_version"] = int(version)
                hit["applied_at"] = adj.get("effective_at") or adj.get("event_ts") or _iso(created)
                open_ = open_[open_.index(hit) + 1:]
            continue
        sched = _obj(sched_j)
        if not sched or not isinstance(sched.get("rate"), (int, float)):
            continue
        rate, eff = float(sched["rate"]), sched.get("effective_at")
        if any(math.isclose(a["mm_after"], rate, rel_tol=0, abs_tol=1e-15) and a["effective_at"] == eff
               for a in open_):
            continue  # the same announcement carried by a later version (e.g. the next IM change)
        a = {"instrument": inst, "status": "pending", "mm_before": float(mm), "mm_after": rate,
             "im_at_announcement": float(im), "announced_version": int(version),
             "announced_at": adj.get("event_ts") or _iso(created), "effective_at": eff,
             "scope": sched.get("scope") or "all_positions", "published_at": _iso(created),
             "applied_version": None, "applied_at": None}
        open_.append(a)
        out.append(a)
    out.sort(key=lambda a: (a["announced_version"], a["instrument"]), reverse=True)
    if status is not None:
        out = [a for a in out if a["status"] == status]
    return out[:limit] if limit is not None else out
