"""Announced maintenance-margin changes (issue 18 item 2): pending, applied and superseded, with their times.

The monitor raises IM for new exposure at once and announces the MM change (which also applies to existing
positions) with an effective time ``[effective] mm_notice_hours`` later; this route lists those announcements
(:func:`margincal.adjust.announcements.announcements`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from margincal.adjust.announcements import announcements
from margincal.service.deps import Con, Reader

router = APIRouter(prefix="/api/announcements", tags=["announcements"])


class Announcement(BaseModel):
    """One announced MM change."""

    instrument: str
    status: Literal["pending", "applied", "superseded"] = Field(
        description="pending: announced, not yet in force; applied: in force since applied_at; superseded: a later "
                    "announcement for the instrument took effect first")
    mm_before: float = Field(description="MM rate in force when the change was announced")
    mm_after: float = Field(description="the announced MM rate")
    im_at_announcement: float = Field(description="IM rate of the version that announced it (IM applies at once)")
    announced_version: int = Field(description="the parameter-set version that announced it")
    announced_at: str | None = Field(description="market time of the event that caused it (ISO 8601, UTC)")
    effective_at: str | None = Field(description="when the MM change takes effect (ISO 8601, UTC)")
    scope: str = Field(description="all_positions: an MM change applies to existing positions too")
    published_at: str | None = Field(description="when the announcing version was written (ISO 8601, UTC)")
    applied_version: int | None = Field(description="the version that put it in force (applied only)")
    applied_at: str | None = Field(description="when it took effect (applied only)")


@router.get("", summary="Announced MM changes with their effective time, newest first",
            response_model=list[Announcement])
def list_announcements(
    _: Reader, con: Con,
    status: Annotated[Literal["pending", "applied", "superseded"] | None, Query()] = None,
    instrument: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Announcement]:
    return [Announcement(**a) for a in announcements(con, status=status, instrument=instrument, limit=limit)]


__all__ = ["Announcement", "router"]
