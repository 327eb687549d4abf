"""Parameter-change proposals as the shells show and decide them.

:func:`list_proposals` adds to each proposal of :mod:`margincal.adjust.approval` its changes in one
shape (:func:`proposal_changes`) beside the rates in force now; :func:`decide` approves or rejects one
through the approval module (role and four-eyes checks, one transaction), telling an unknown
proposal (:class:`ProposalNotFound`) from one that can no longer be decided (:class:`ProposalConflict`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import duckdb

from margincal.adjust import approval
from margincal.errors import AuthError, ConfigError, MargincalError
from margincal.usecases.catalog import latest_params_or_none


class ProposalNotFound(MargincalError):
    """No proposal has this id (HTTP 404)."""


class ProposalConflict(MargincalError):
    """The proposal was already decided, superseded or is stale (HTTP 409)."""


def proposal_changes(changes: Any) -> dict[str, dict[str, float | None]]:
    """Normalise a proposal's ``changes`` to ``{instrument: {"im_rate": .., "mm_rate": ..}}``.

    Accepts the approval module's list of ``{"instrument", "im_after", "mm_after", ...}`` or a mapping
    ``instrument -> {im_rate, mm_rate}`` (or either as JSON text)."""
    if isinstance(changes, str):
        changes = json.loads(changes)
    items: list[tuple[str, Mapping[str, Any]]]
    if isinstance(changes, Mapping):
        items = [(str(k), v) for k, v in changes.items()]
    elif isinstance(changes, list):
        items = [(str(c["instrument"]), c) for c in changes]
    else:
        raise ConfigError(f"proposal changes must be a mapping or a list, not {type(changes).__name__}")
    out: dict[str, dict[str, float | None]] = {}
    for inst, c in items:
        im = c.get("im_after", c.get("im_rate"))
        mm = c.get("mm_after", c.get("mm_rate"))
        if im is None:
            raise ConfigError(f"proposal change for {inst} has no im_after")
        out[inst] = {"im_rate": float(im), "mm_rate": None if mm is None else float(mm)}
    return out


def list_proposals(con: duckdb.DuckDBPyConnection, status: str | None = None) -> list[dict[str, Any]]:
    """Proposals with their status (pending, approved, rejected, superseded, stale), newest first.

    Each also carries ``changes_normalized``: instrument, proposed IM/MM, the rates before and the
    rates in force now."""
    rows = [p.as_dict() for p in approval.list_proposals(con, status)][::-1]
    pset = latest_params_or_none(con)
    for r in rows:
        try:
            norm = proposal_changes(r.get("changes"))
        except (ConfigError, KeyError, TypeError, ValueError):
            norm = {}
        before = {c.get("instrument"): c for c in r.get("changes") or [] if isinstance(c, Mapping)}
        r["changes_normalized"] = [
            {"instrument": k, "im_rate": v["im_rate"], "mm_rate": v["mm_rate"],
             "im_before": before.get(k, {}).get("im_before"), "mm_before": before.get(k, {}).get("mm_before"),
             "im_current": pset.params[k].im_rate if pset and k in pset.params else None,
             "mm_current": pset.params[k].mm_rate if pset and k in pset.params else None}
            for k, v in norm.items()]
    return rows


def decide(con: duckdb.DuckDBPyConnection, proposal_id: str, *, actor: str, role: str, decision: str,
           comment: str | None = None) -> dict[str, Any]:
    """Approve or reject a proposal as ``actor`` through :mod:`margincal.adjust.approval`.

    The approval module enforces the role and the four-eyes rule (the actor is never the author) and
    writes the decision, the new parameter-set version (approve) and the audit entries in one
    transaction. Unknown proposal -> :class:`ProposalNotFound`; already decided, superseded or stale
    -> :class:`ProposalConflict`; wrong role or own proposal -> :class:`AuthError`."""
    if decision not in ("approved", "rejected"):
        raise ConfigError(f"decision {decision!r} must be 'approved' or 'rejected'")
    if not con.execute("SELECT count(*) FROM proposals WHERE proposal_id = ?", [proposal_id]).fetchone()[0]:  # type: ignore[index]
        raise ProposalNotFound(f"proposal {proposal_id!r} does not exist")
    fn = approval.approve if decision == "approved" else approval.reject
    try:
        d = fn(con, proposal_id, actor, comment, role=role)
    except AuthError:
        raise
    except ConfigError as exc:
        raise ProposalConflict(str(exc)) from None
    return {"proposal_id": d.proposal_id, "decision": d.decision, "decided_by": d.decided_by,
            "decided_at": d.decided_at, "comment": d.comment, "published_version": d.published_version,
            "audit_seq": d.audit_seq}


__all__ = ["ProposalConflict", "ProposalNotFound", "decide", "list_proposals", "proposal_changes"]
