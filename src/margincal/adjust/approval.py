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
from margincal.margin.params import (
    InstrumentParams,
    ParameterSet,
    latest_version,
    load,
    publication_rows,
    publish,
    same_params,
)

__all__ = [
    "OFFICER_ROLE",
    "STATUSES",
    "Decision",
    "Proposal",
    "SYSTEM_CALIBRATE",
    "SYSTEM_MONITOR",
    "SYSTEM_IMPORT",
    "Submission",
    "adjusted_row",
    "approve",
    "auto_rule",
    "calibration_changes",
    "decision_row",
    "proposal_rows",
    "submit",
    "create_proposal",
    "create_removal_proposal",
    "get_proposal",
    "list_proposals",
    "reject",
]

OFFICER_ROLE = "risk_officer"
#: prefix of the system identities that decide automatically, by a rule (reserved: no key may carry it)
SYSTEM_PREFIX = "system:"
SYSTEM_CALIBRATE = "system:calibrate"
SYSTEM_MONITOR = "system:monitor"
SYSTEM_IMPORT = "system:import"  # `params import --publish`: a venue table submitted to the live set
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
        ch = "; ".join(f"{c['instrument']} REMOVE" if c.get("im_after") is None
                       else f"{c['instrument']} ADD IM {100 * c['im_after']:.2f}%" if c.get("im_before") is None
                       else f"{c['instrument']} IM {100 * c['im_before']:.2f}%->{100 * c['im_after']:.2f}%"
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


def _clean_changes(changes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Validate proposal changes: a rate change (``im_before`` -> ``im_after``), an addition (``"action":
    "add"``, no "before") or a removal (``"action": "remove"``)."""
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
        adding = c.get("action") == "add"
        for k in ("instrument", "im_after", "mm_after") if adding else (
                "instrument", "im_before", "im_after", "mm_before", "mm_after"):
            if k not in c:
                raise ConfigError(f"proposal change {dict(c)} lacks {k!r}")
        im, mm = float(c["im_after"]), float(c["mm_after"])
        InstrumentParams(str(c["instrument"]), im, mm)  # validates the rates
        clean.append({**dict(c), "im_before": None if adding else float(c["im_before"]), "im_after": im,
                      "mm_before": None if adding else float(c["mm_before"]), "mm_after": mm})
    return clean


def proposal_rows(*, author: str, changes: Sequence[Mapping[str, Any]], reason: str,
                  evidence: Mapping[str, Any] | None = None, base_version: int | None = None,
                  now: Any = None) -> tuple[str, list[Any], tuple[str, str, str, dict[str, Any]]]:
    """The row of a new proposal and its audit entry, ``(proposal_id, row, (actor, action, subject, details))``.

    :func:`create_proposal` writes one; the monitor's group writer writes many with one INSERT. Writes nothing.
    """
    clean = _clean_changes(changes)
    if not reason.strip():
        raise ConfigError("a proposal needs a reason")
    now = now if now is not None else utcnow()
    pid = _new_id(now)
    row = [pid, now, author, base_version, reason, dumps(clean), dumps(dict(evidence or {}))]
    entry = (author, "propose", f"proposal:{pid}",
             {"instruments": [c["instrument"] for c in clean],
              "im": {c["instrument"]: [c["im_before"], c["im_after"]] for c in clean},
              "base_version": base_version, "reason": reason})
    return pid, row, entry


def create_proposal(con: duckdb.DuckDBPyConnection, *, author: str, changes: Sequence[Mapping[str, Any]],
                    reason: str, evidence: Mapping[str, Any] | None = None, base_version: int | None = None,
                    in_transaction: bool = False) -> str:
    """Insert a proposal and its audit entry; returns the proposal id.

    Each change is ``{"instrument", "im_before", "im_after", "mm_before", "mm_after"}`` plus optional
    ``"meta"`` (details to set on the published row, e.g. the calibration anchor) or ``"details"`` (the
    whole details of the new row, e.g. a calibration's tiers); ``"action": "add"`` adds an instrument
    (no "before" rates), ``"action": "remove"`` removes one.
    """
    pid, row, entry = proposal_rows(author=author, changes=changes, reason=reason, evidence=evidence,
                                    base_version=base_version)

    def _write() -> str:
        con.execute("INSERT INTO proposals VALUES (?, ?, ?, ?, ?, ?, ?)", row)
        audit.append(con, *entry)
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
        if r[8] is not None and str(r[8]).startswith(SYSTEM_PREFIX):
            continue  # applied automatically by a rule: it supersedes no officer's proposal (stale covers it)
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
            elif any(_stale(c, rates) for c in changes):
                status = "stale"
        out.append(Proposal(
            proposal_id=r[0], created_at=pd.Timestamp(r[1], tz="UTC"), author=r[2],
            base_version=None if r[3] is None else int(r[3]), reason=r[4], changes=changes,
            evidence=json.loads(r[6]) if r[6] else {}, status=status, decided_by=r[8],
            decided_at=None if r[9] is None else pd.Timestamp(r[9], tz="UTC"), comment=r[10],
            published_version=None if r[11] is None else int(r[11]), superseded_by=sup))
    return out


def _stale(c: Mapping[str, Any], rates: Mapping[str, float]) -> bool:
    """True when the "before" of change ``c`` is no longer the rate in force."""
    inst = c["instrument"]
    if c.get("im_before") is None:  # an addition: stale once the instrument is in the live set
        return inst in rates
    return inst in rates and abs(rates[inst] - float(c["im_before"])) > _TOL * max(1.0, rates[inst])


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
            rows[inst] = _approved_row(proposal_id, c, current)
        new = ParameterSet(params=rows, provenance={
            "source": "approval", "proposal_id": proposal_id, "proposal_author": p.author, "reason": p.reason,
            "approved_by": officer, "comment": comment, "evidence": p.evidence, "changes": p.changes,
            "parent_provenance_run_id": current.run_id}, parent_version=current.version)
        version = publish(con, new, created_by=officer, source="approval", remove=removed,
                          note=f"proposal {proposal_id}" + (f": {comment}" if comment else ""), in_transaction=True)
        now = utcnow()
        con.execute("INSERT INTO proposal_decisions VALUES (?, ?, ?, ?, ?, ?)",
                    decision_row(proposal_id, officer, "approved", comment, version, now))
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
        con.execute("INSERT INTO proposal_decisions VALUES (?, ?, ?, ?, ?, ?)",
                    decision_row(proposal_id, officer, "rejected", comment, None, now))
        seq = audit.append(con, officer, "reject", f"proposal:{proposal_id}",
                           {"comment": comment, "author": p.author, "role": role, "instruments": p.instruments})
    return Decision(proposal_id, "rejected", officer, pd.Timestamp(now, tz="UTC"), comment, None, seq)


def decision_row(proposal_id: str, decided_by: str, decision: str, comment: str | None, version: int | None,
                 now: Any = None) -> list[Any]:
    """The ``proposal_decisions`` row of a decision (approve, reject and the automatic decisions write it)."""
    if decision not in ("approved", "rejected"):
        raise ConfigError(f"decision {decision!r} is not approved or rejected")
    return [proposal_id, now if now is not None else utcnow(), decided_by, decision, comment, version]


def _approved_row(proposal_id: str, c: Mapping[str, Any], current: ParameterSet) -> InstrumentParams:
    """The published row of an approved change ``c`` on top of ``current`` (checks it is not stale)."""
    inst = c["instrument"]
    if c.get("action") == "add" or c.get("im_before") is None:
        if inst in current.params:
            raise ConfigError(f"proposal {proposal_id} is stale: it adds {inst}, which parameter set "
                              f"v{current.version} already holds; reject it and calibrate again")
        return InstrumentParams(inst, float(c["im_after"]), float(c["mm_after"]), dict(c.get("details") or {}))
    if inst not in current.params:
        raise ConfigError(f"proposal {proposal_id}: {inst} is not in parameter set v{current.version}")
    now_im = current.params[inst].im_rate
    if abs(now_im - float(c["im_before"])) > _TOL * max(1.0, now_im):
        raise ConfigError(
            f"proposal {proposal_id} is stale: it changes {inst} IM from {c['im_before']:.6g} but the rate in "
            f"force (v{current.version}) is {now_im:.6g}; reject it and let the monitor propose again")
    if c.get("details") is not None:  # a calibration: the whole new row (its own tiers and details)
        return InstrumentParams(inst, float(c["im_after"]), float(c["mm_after"]), dict(c["details"]))
    return adjusted_row(current.params[inst], float(c["im_after"]), float(c["mm_after"]), c.get("meta"))


# ---------------------------------------------------------------- changes submitted by the system

@dataclass(frozen=True)
class Submission:
    """What :func:`submit` did: the proposal (None when nothing changes), whether it was applied and why."""

    proposal_id: str | None
    version: int | None
    applied: bool
    rule: str | None
    pending_reason: str | None
    changes: list[dict[str, Any]]

    def message(self) -> str:
        if self.proposal_id is None:
            return f"unchanged: the set in force v{self.version} already holds these rates (nothing proposed)"
        if self.applied:
            return f"published version {self.version} (proposal {self.proposal_id}, applied automatically: {self.rule})"
        return (f"proposal {self.proposal_id} is pending for a risk officer ({self.pending_reason}); the live set "
                f"stays v{self.version}: `margincal proposals approve {self.proposal_id} --key KEY`")


def calibration_changes(current: ParameterSet | None, pset: ParameterSet) -> list[dict[str, Any]]:
    """Proposal changes turning ``current`` into ``current`` with ``pset``'s rows (whole rows: a calibration
    replaces the row's tiers and details); instruments whose row is unchanged are left out."""
    out: list[dict[str, Any]] = []
    base = dict(current.params) if current is not None else {}
    for name in sorted(pset.params):
        new = pset.params[name]
        old = base.get(name)
        if old is not None and same_params({name: old}, {name: new}):
            continue
        ch: dict[str, Any] = {"instrument": name, "im_after": float(new.im_rate), "mm_after": float(new.mm_rate),
                              "details": new.details}
        if old is None:
            ch.update(action="add", im_before=None, mm_before=None)
        else:
            ch.update(im_before=float(old.im_rate), mm_before=float(old.mm_rate))
        out.append(ch)
    return out


def auto_rule(current: ParameterSet | None, changes: Sequence[Mapping[str, Any]], policy: Any = None, *,
              sandbox: bool = False) -> tuple[str | None, str | None]:
    """Whether a system change applies automatically: ``(rule, None)`` when it does, ``(None, why not)``
    when it waits for a risk officer. The rule (docs/monitoring.md, "who changes the live set"):

    * ``initial``: the store has no parameter set yet (the first publication, e.g. ``make run``);
    * ``sandbox``: the store is a sandbox (a replay or trial), not the live set;
    * ``policy``: every change adds a new instrument or raises IM within the policy's automatic bound
      (``[approval] increase_above``, +25% by default) without lowering MM; a decrease, a larger
      increase or a removal needs an officer.
    """
    if current is None:
        return "initial: first publication into an empty store", None
    if sandbox:
        return "sandbox: the store is a sandbox, not the live set", None
    from margincal.adjust.policy import default_policy, route

    pol = policy or default_policy()
    limit = float(pol["approval"]["increase_above"])
    for c in changes:
        inst = c["instrument"]
        if c.get("action") == "remove":
            return None, f"removing {inst} needs a risk officer"
        if c.get("im_before") is None:
            continue
        before, after = float(c["im_before"]), float(c["im_after"])
        if after != before and any(k != "auto" for k, _ in route(pol, current=before, new=after, critical=False)):
            how = "decrease" if after < before else f"increase above +{100 * limit:g}%"
            return None, (f"{inst} IM {100 * before:.2f}% -> {100 * after:.2f}% is a {how}, which the policy "
                          "sends to a risk officer")
        if float(c["mm_after"]) < float(c["mm_before"]) and bool(pol["approval"]["decrease"]):
            return None, f"{inst} MM falls from {100 * float(c['mm_before']):.2f}% to {100 * float(c['mm_after']):.2f}%"
    return (f"policy: new instruments and IM increases within +{100 * limit:g}% (approval.increase_above) "
            "apply automatically"), None


def _same_pending(con: duckdb.DuckDBPyConnection, author: str, changes: list[dict[str, Any]],
                  base_version: int | None) -> str | None:
    """An undecided proposal of ``author`` on ``base_version`` with exactly these changes (a rerun after a crash
    finds it instead of filing a duplicate)."""
    want = json.loads(dumps(_clean_changes(changes)))
    rows = con.execute("SELECT p.proposal_id, p.changes FROM proposals p LEFT JOIN proposal_decisions d "
                       "USING (proposal_id) WHERE d.proposal_id IS NULL AND p.author = ? AND "
                       "p.base_version IS NOT DISTINCT FROM ?", [author, base_version]).fetchall()
    for pid, ch in rows:
        if json.loads(ch) == want:
            return str(pid)
    return None


def submit(con: duckdb.DuckDBPyConnection, pset: ParameterSet, *, author: str, system: str, source: str,
           reason: str, evidence: Mapping[str, Any] | None = None, note: str | None = None,
           run_id: str | None = None, policy: Any = None, sandbox: bool = False,
           in_transaction: bool = False) -> Submission:
    """Submit a system change of the live set (a calibration) through the proposal/decision path.

    In ONE transaction: a proposal by ``author`` holding every changed row of ``pset`` (instruments it does
    not hold are carried unchanged), then, when :func:`auto_rule` allows it, the automatic decision by the
    system identity ``system`` (``system:calibrate``, ``system:monitor``) with the rule as its comment, the
    publication and their audit entries (``auto_approve`` names the rule). Otherwise the proposal stays
    pending for a risk officer. Nothing is proposed when ``pset`` changes nothing (an identical set is never
    republished), and a rerun finds its own undecided proposal instead of filing it twice.
    """
    if not system.startswith(SYSTEM_PREFIX):
        raise ConfigError(f"automatic decisions are taken by a system identity ({SYSTEM_PREFIX}...), not {system!r}")

    def _write() -> Submission:
        v = latest_version(con)
        current = load(con, v) if v is not None else None
        # the same checks as a direct publication (bounds of a calibration, empty sets), before anything is written
        if publication_rows(current, pset, created_by=system, source=source, run_id=run_id) is None:
            return Submission(None, v, False, None, None, [])
        changes = calibration_changes(current, pset)
        rule, why = auto_rule(current, changes, policy, sandbox=sandbox)
        ev = {**dict(evidence or {}), "run_id": run_id or pset.run_id, "source": source}
        pid = _same_pending(con, author, changes, v)
        if pid is None:
            pid = create_proposal(con, author=author, changes=changes, reason=reason, evidence=ev, base_version=v,
                                  in_transaction=True)
        if rule is None:
            return Submission(pid, v, False, None, why, changes)
        prov = {**dict(pset.provenance), "proposal_id": pid, "decided_by": system, "rule": rule}
        new = ParameterSet(params=dict(pset.params), provenance=prov, run_id=pset.run_id, parent_version=v)
        version = publish(con, new, created_by=system, source=source, run_id=run_id or pset.run_id,
                          note=note, in_transaction=True)
        now = utcnow()
        con.execute("INSERT INTO proposal_decisions VALUES (?, ?, ?, ?, ?, ?)",
                    decision_row(pid, system, "approved", f"automatic: {rule}", version, now))
        audit.append(con, system, "auto_approve", f"proposal:{pid}",
                     {"published_version": version, "rule": rule, "author": author,
                      "instruments": [c["instrument"] for c in changes]})
        return Submission(pid, version, True, rule, None, changes)

    if in_transaction:
        return _write()
    with transaction(con):
        return _write()
