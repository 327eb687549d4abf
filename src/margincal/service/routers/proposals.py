"""Proposals: list, approve, reject (four-eyes: never your own)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request

from margincal.service import backends
from margincal.service.auth import Principal
from margincal.service.deps import Con, Decider, Reader
from margincal.service.schemas import Decision

router = APIRouter(prefix="/api/proposals", tags=["proposals"])
ProposalId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


@router.get("", summary="Proposals with their status (pending, approved, rejected), newest first",
            response_model=None)
def list_proposals(_: Reader, con: Con,
                   status: Annotated[Literal["pending", "approved", "rejected", "superseded", "stale"] | None,
                                     Query()] = None,
                   ) -> list[dict[str, Any]]:
    return backends.list_proposals(con, status)


def _decide(request: Request, proposal_id: str, who: Principal, decision: str, comment: str | None
            ) -> dict[str, Any]:
    with request.app.state.store.writer() as cur:
        return backends.decide(cur, proposal_id, actor=who.name, role=who.role, decision=decision, comment=comment)


@router.post("/{proposal_id}/approve", summary="Approve a proposal (publishes a new parameter-set version)",
             response_model=None)
def approve(proposal_id: ProposalId, request: Request, who: Decider,
            body: Decision | None = None) -> dict[str, Any]:
    return _decide(request, proposal_id, who, "approved", body.comment if body else None)


@router.post("/{proposal_id}/reject", summary="Reject a proposal", response_model=None)
def reject(proposal_id: ProposalId, request: Request, who: Decider, body: Decision | None = None) -> dict[str, Any]:
    return _decide(request, proposal_id, who, "rejected", body.comment if body else None)
