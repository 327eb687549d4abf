"""Proposals and their approval by a risk officer (four-eyes), each step atomic and audited.

* :func:`create_proposal` - the monitor (or a person) proposes new IM/MM rates
  with a reason and evidence; the proposal and its audit entry are written
  together.
* :func:`approve` - a user with role ``risk_officer`` who is not the
  proposal's author approves it: the new parameter-set version is published,
  the decision recorded and the audit entry appended in ONE transaction.
* :func:`reject` - the same checks; records the decision and the audit entry.
* :func:`list_proposals` / :func:`get_proposal` - read them with their status.

A proposal is decided once (``proposal_decisions`` has the proposal id as its
primary key, and the check runs inside the deciding transaction). Its status
is ``approved`` / ``rejected`` once decided; otherwise ``superseded`` when a
newer proposal covers one of its instruments, ``stale`` when its "before"
rates are no longer the rates in force (e.g. an automatic change happened
since), or ``pending``. Superseded and stale proposals cannot be approved
(reject them; the monitor proposes again from the current rates).

Authentication is the caller's job, and both callers bind the decider to an API
key: the CLI takes ``--key`` (or ``MARGINCAL_API_KEY``), the service the
``X-API-Key`` header; each key maps to one unique, normalised name and a role.
The four-eyes check here compares normalised names (``"Alice "`` is
``alice``) and refuses a decider whose key was minted by the proposal's author.

Removing an instrument from the live set is its own proposal
(:func:`create_removal_proposal`); :func:`margincal.margin.params.publish`
refuses removals from anything but an approval.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd

from margincal.data import audit
from margincal.data.store import dumps, transaction, utcnow
from margincal.errors import AuthError, ConfigError, StoreError
from margincal.margin.params import InstrumentParams, ParameterSet, latest_version, load, publish

__all__ = [
    "OFFICER_ROLE",
    "STATUSES",
    "Decision",
    "Proposal",
    "adjusted_row",
    "approve",
    "create_proposal",
    "create_removal_proposal",
    "get_proposal",
    "list_proposals",
    "reject",
]

OFFICER_ROLE = "risk_officer"
STATUSES = ("pending", "approved", "rejected", "superseded", "stale")
_TOL = 1e-12


@dataclass(frozen=True)
class Proposal:
    """A proposed change of IM/MM rates, with its status and (once decided) the decision."""

    proposal_id: str
    created_at: pd.Timestamp
    author: str
    base_version: int | None
    reason: str
    changes: list[dict[str, Any]]
    evidence: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"
    decided_by: str | None = None
    decided_at: pd.Timestamp | None = None
    comment: str | None = None
    published_version: int | None = None
    superseded_by: str | None = None

    @property
    def instruments(self) -> list[str]:
        return [c["instrument"] for c in self.changes]

    def as_dict(self) -> dict[str, Any]:
        return {
            "proposal_id": self.proposal_id, "created_at": self.created_at.isoformat(), "author": self.author,
            "base_version": self.base_version, "reason": self.reason, "changes": self.changes,
            "evidence": self.evidence, "status": self.status, "decided_by": self.decided_by,
            "decided_at": None if self.decided_at is None else self.decided_at.isoformat(),
            "comment": self.comment, "published_version": self.published_version,
            "superseded_by": self.superseded_by,
        }

    def row(self) -> dict[str, Any]:
        """One line for a table."""
        ch = "; ".join(f"{c['instrument']} IM {100 * c['im_before']:.2f}%->{100 * c['im_after']:.2f}%"
                       if c.get("im_after") is not None else f"{c['instrument']} REMOVE"
                       for c in self.changes)
        return {"proposal_id": self.proposal_id, "created_at": str(self.created_at)[:19], "author": self.author,
                "status": self.status, "changes": ch, "decided_by": self.decided_by or "",
                "version": self.published_version if self.published_version is not None else ""}


@dataclass(frozen=True)
class Decision:
    proposal_id: str
    decision: str
    decided_by: str
    decided_at: pd.Timestamp
    comment: str | None
    published_version: int | None
    audit_seq: int


def adjusted_row(prev: InstrumentParams, im_rate: float, mm_rate: float,
                 meta: Mapping[str, Any] | None = None) -> InstrumentParams:
    """``prev`` moved to new rates: tiers scaled by the same factor, base rates and anchor kept in details.

    Marginal tier tables scale linearly (IM, MM and maintenance amounts times
    ``f = im_rate / prev.im_rate``, max leverage divided by ``f``).
    ``details["im_base"]`` / ``["mm_base"]`` keep the calibrated rates so that
    later targets are computed from the calibration, not from the last change.
    """
    d = dict(prev.details or {})
    d.setdefault("im_base", prev.im_rate)
    d.setdefault("mm_base", prev.mm_rate)
    f = im_rate / prev.im_rate
    tiers = d.get("tiers")
    if isinstance(tiers, list) and tiers:
        new_tiers = []
        for t in tiers:
            t2 = dict(t)
            for k in ("im_rate", "mm_rate", "maintenance_amount"):
                if isinstance(t2.get(k), (int, float)):
                    t2[k] = min(float(t2[k]) * f, 1.0) if k != "maintenance_amount" else float(t2[k]) * f
            if isinstance(t2.get("im_rate"), (int, float)) and t2["im_rate"] > 0:
                t2["max_leverage"] = round(1.0 / t2["im_rate"], 4)
            new_tiers.append(t2)
        d["tiers"] = new_tiers
    if meta:
        d.update(meta)
    return InstrumentParams(prev.instrument, float(im_rate), float(min(mm_rate, im_rate)), d)


def _new_id(now: pd.Timestamp) -> str:
    return "P" + now.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def create_proposal(con: duckdb.DuckDBPyConnection, *, author: str, changes: Sequence[Mapping[str, Any]],
                    reason: str, evidence: Mapping[str, Any] | None = None, base_version: int | None = None,
                    in_transaction: bool = False) -> str:
    """Insert a proposal and its audit entry; returns the proposal id.

    Each change is ``{"instrument", "im_before", "im_after", "mm_before", "mm_after"}`` plus optional
    ``"meta"`` (details to set on the published row, e.g. the calibration anchor).
    """
    if not changes:
        raise ConfigError("a proposal needs at least one change")
    clean = []
    for c in changes:
        if c.get("action") == "remove":
            for k in ("instrument", "im_before", "mm_before"):
                if k not in c:
                    raise ConfigError(f"proposal change {dict(c)} lacks {k!r}")
            clean.append({"instrument": str(c["instrument"]), "action": "remove", "im_before": float(c["im_before"]),
                          "im_after": None, "mm_before": float(c["mm_before"]), "mm_after": None})
            continue
        for k in ("instrument", "im_before", "im_after", "mm_before", "mm_after"):
            if k not in c:
                raise ConfigError(f"proposal change {dict(c)} lacks {k!r}")
        im, mm = float(c["im_after"]), float(c["mm_after"])
        InstrumentParams(str(c["instrument"]), im, mm)  # validates the rates
        clean.append({**dict(c), "im_before": float(c["im_before"]), "im_after": im,
                      "mm_before": float(c["mm_before"]), "mm_after": mm})
    if not reason.strip():
        raise ConfigError("a proposal needs a reason")

    def _write() -> str:
        now = utcnow()
        pid = _new_id(now)
        con.execute("INSERT INTO proposals VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [pid, now, author, base_version, reason, dumps(clean), dumps(dict(evidence or {}))])
        audit.append(con, author, "propose", f"proposal:{pid}",
                     {"instruments": [c["instrument"] for c in clean],
                      "im": {c["instrument"]: [c["im_before"], c["im_after"]] for c in clean},
                      "base_version": base_version, "reason": reason})
        return pid

    if in_transaction:
        return _write()
    with transaction(con):
        return _write()


def create_removal_proposal(con: duckdb.DuckDBPyConnection, *, author: str, instruments: Sequence[str],
                            reason: str) -> str:
    """Propose removing ``instruments`` from the live parameter set (published only once approved)."""
    if not instruments:
        raise ConfigError("name at least one instrument to remove")
    with transaction(con):
        v = latest_version(con)
        if v is None:
            raise StoreError("no parameter set is published; there is nothing to remove")
        current = load(con, v)
        missing = [i for i in instruments if i not in current.params]
        if missing:
            raise ConfigError(f"{', '.join(missing)} is not in the live parameter set v{v} "
                              f"(it has {', '.join(current.instruments())})")
        if len(set(instruments)) >= len(current.params):
            raise ConfigError("a removal cannot empty the live parameter set")
        changes = [{"instrument": i, "action": "remove", "im_before": current.params[i].im_rate,
                    "mm_before": current.params[i].mm_rate} for i in dict.fromkeys(instruments)]
        return create_proposal(con, author=author, changes=changes, reason=reason, base_version=v,
                               evidence={"removal": True}, in_transaction=True)


_SELECT = ("SELECT p.proposal_id, p.created_at, p.author, p.base_version, p.reason, p.changes, p.evidence, "
           "d.decision, d.decided_by, d.decided_at, d.comment, d.published_version "
           "FROM proposals p LEFT JOIN proposal_decisions d USING (proposal_id)")


def _current_rates(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    v = latest_version(con)
    if v is None:
        return {}
    rows = con.execute("SELECT instrument, im_rate FROM parameter_rows WHERE version = ?", [v]).fetchall()
    return {r[0]: float(r[1]) for r in rows}


def _rows(con: duckdb.DuckDBPyConnection) -> list[Proposal]:
    raw = con.execute(_SELECT + " ORDER BY p.created_at, p.proposal_id").fetchall()
    rates = _current_rates(con)
    out: list[Proposal] = []
    latest_for: dict[str, str] = {}
    for r in raw:
        changes = json.loads(r[5])
        for c in changes:
            latest_for[c["instrument"]] = r[0]
    for r in raw:
        changes = json.loads(r[5])
        status = r[7] if r[7] is not None else "pending"
        sup = None
        if r[7] is None:
            newer = [latest_for[c["instrument"]] for c in changes if latest_for[c["instrument"]] != r[0]]
            if newer:
                status, sup = "superseded", newer[0]
            elif any(c["instrument"] in rates and abs(rates[c["instrument"]] - float(c["im_before"]))
                     > _TOL * max(1.0, rates[c["instrument"]]) for c in changes):
                status = "stale"
        out.append(Proposal(
            proposal_id=r[0], created_at=pd.Timestamp(r[1], tz="UTC"), author=r[2],
            base_version=None if r[3] is None else int(r[3]), reason=r[4], changes=changes,
            evidence=json.loads(r[6]) if r[6] else {}, status=status, decided_by=r[8],
            decided_at=None if r[9] is None else pd.Timestamp(r[9], tz="UTC"), comment=r[10],
            published_version=None if r[11] is None else int(r[11]), superseded_by=sup))
    return out


def list_proposals(con: duckdb.DuckDBPyConnection, status: str | None = None) -> list[Proposal]:
    """All proposals, oldest first, optionally only those with ``status`` (pending/approved/rejected/superseded)."""
    if status is not None and status not in STATUSES:
        raise ConfigError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    rows = _rows(con)
    return [p for p in rows if status is None or p.status == status]


def get_proposal(con: duckdb.DuckDBPyConnection, proposal_id: str) -> Proposal:
    for p in _rows(con):
        if p.proposal_id == proposal_id:
            return p
    n = con.execute("SELECT count(*) FROM proposals").fetchone()
    raise ConfigError(f"proposal {proposal_id!r} does not exist ({n[0] if n else 0} proposals in the store; "
                      "see `margincal proposals list`)")


def pending_rates(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """instrument -> proposed IM of its newest pending proposal (what the monitor treats as awaiting a decision)."""
    out: dict[str, float] = {}
    for p in _rows(con):
        if p.status == "pending":
            for c in p.changes:
                if c.get("im_after") is not None:
                    out[c["instrument"]] = float(c["im_after"])
    return out


def _norm(name: str | None) -> str:
    return " ".join(str(name or "").split()).casefold()


def _check_decider(p: Proposal, officer: str, role: str, verb: str,
                   con: duckdb.DuckDBPyConnection | None = None) -> None:
    if not officer or not officer.strip():
        raise AuthError(f"to {verb} proposal {p.proposal_id} authenticate with an API key (--key or "
                        "MARGINCAL_API_KEY)")
    if role != OFFICER_ROLE:
        raise AuthError(f"user {officer!r} has role {role!r}; only role {OFFICER_ROLE!r} may {verb} proposals")
    if _norm(officer) == _norm(p.author):
        raise AuthError(f"user {officer!r} wrote proposal {p.proposal_id} and cannot {verb} it (four-eyes rule: "
                        "the decider must not be the author)")
    if con is not None:
        # the decider's key must not have been minted by the author (an author cannot issue their own approver)
        try:
            rows = con.execute("SELECT created_by FROM api_keys WHERE name_norm = ? AND revoked_at IS NULL",
                               [_norm(officer)]).fetchall()
        except duckdb.Error:  # a store from before 0300_key_identity (read-only): no minting record
            rows = []
        if any(r[0] is not None and _norm(r[0]) == _norm(p.author) for r in rows):
            raise AuthError(f"the key of {officer!r} was created by {p.author!r}, the author of proposal "
                            f"{p.proposal_id}; four-eyes needs a decider the author did not appoint")
    if p.status in ("approved", "rejected"):
        raise ConfigError(f"proposal {p.proposal_id} was already {p.status} by {p.decided_by} at {p.decided_at}; "
                          "a proposal is decided once")


def approve(con: duckdb.DuckDBPyConnection, proposal_id: str, officer: str, comment: str | None = None, *,
            role: str) -> Decision:
    """Approve: publish the proposed rates, record the decision and the audit entry in one transaction."""
    with transaction(con):
        p = get_proposal(con, proposal_id)
        _check_decider(p, officer, role, "approve", con)
        if p.status == "superseded":
            raise ConfigError(f"proposal {proposal_id} is superseded by {p.superseded_by}; decide that one "
                              "(and reject this one)")
        # stale proposals fall through to the per-instrument check below, which names the rate in force
        if latest_version(con) is None:
            raise StoreError("no parameter set is published; a proposal can only change a published set")
        current = load(con)
        rows = {}
        removed = []
        for c in p.changes:
            inst = c["instrument"]
            if c.get("action") == "remove":
                if inst not in current.params:
                    raise ConfigError(f"proposal {proposal_id}: {inst} is no longer in parameter set "
                                      f"v{current.version}")
                removed.append(inst)
                continue
            if inst not in current.params:
                raise ConfigError(f"proposal {proposal_id}: {inst} is not in parameter set v{current.version}")
            now_im = current.params[inst].im_rate
            if abs(now_im - float(c["im_before"])) > _TOL * max(1.0, now_im):
                raise ConfigError(
                    f"proposal {proposal_id} is stale: it changes {inst} IM from {c['im_before']:.6g} but the rate in "
                    f"force (v{current.version}) is {now_im:.6g}; reject it and let the monitor propose again")
            rows[inst] = adjusted_row(current.params[inst], float(c["im_after"]), float(c["mm_after"]),
                                      c.get("meta"))
        new = ParameterSet(params=rows, provenance={
            "source": "approval", "proposal_id": proposal_id, "proposal_author": p.author, "reason": p.reason,
            "approved_by": officer, "comment": comment, "evidence": p.evidence, "changes": p.changes,
            "parent_provenance_run_id": current.run_id}, parent_version=current.version)
        version = publish(con, new, created_by=officer, source="approval", remove=removed,
                          note=f"proposal {proposal_id}" + (f": {comment}" if comment else ""), in_transaction=True)
        now = utcnow()
        con.execute("INSERT INTO proposal_decisions VALUES (?, ?, ?, 'approved', ?, ?)",
                    [proposal_id, now, officer, comment, version])
        seq = audit.append(con, officer, "approve", f"proposal:{proposal_id}",
                           {"published_version": version, "comment": comment, "author": p.author,
                            "role": role, "instruments": p.instruments})
    return Decision(proposal_id, "approved", officer, pd.Timestamp(now, tz="UTC"), comment, version, seq)


def reject(con: duckdb.DuckDBPyConnection, proposal_id: str, officer: str, comment: str | None = None, *,
           role: str) -> Decision:
    """Reject: record the decision and the audit entry in one transaction (nothing is published)."""
    with transaction(con):
        p = get_proposal(con, proposal_id)
        _check_decider(p, officer, role, "reject", con)
        now = utcnow()
        con.execute("INSERT INTO proposal_decisions VALUES (?, ?, ?, 'rejected', ?, NULL)",
                    [proposal_id, now, officer, comment])
        seq = audit.append(con, officer, "reject", f"proposal:{proposal_id}",
                           {"comment": comment, "author": p.author, "role": role, "instruments": p.instruments})
    return Decision(proposal_id, "rejected", officer, pd.Timestamp(now, tz="UTC"), comment, None, seq)
