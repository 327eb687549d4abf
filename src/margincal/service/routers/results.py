"""Latest backtest, stress and liquidation-cascade results stored by their commands."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query

from margincal.service import backends
from margincal.service.deps import Con, Reader

router = APIRouter(prefix="/api/results", tags=["results"])


@router.get("", summary="Which result kinds the store holds (latest run id and time of each)",
            response_model=None)
def list_results(_: Reader, con: Con) -> list[dict[str, Any]]:
    out = []
    for kind in backends.RESULT_KINDS:
        r = backends.result(con, kind, full=False)
        out.append({"kind": kind, "available": r is not None, "run_id": r["run_id"] if r else None,
                    "created_at": r["created_at"] if r else None,
                    "produce_with": backends.PRODUCE[kind]})
    return out


@router.get("/{kind}", summary="The latest result of a kind, with its parameters", response_model=None)
def get_result(kind: Literal["backtest", "stress", "cascade"], _: Reader, con: Con,
               full: Annotated[bool, Query(description="include per-bar series and paths (large)")] = False,
               ) -> dict[str, Any]:
    r = backends.result(con, kind, full=full)
    if r is None:
        raise HTTPException(404, f"no {kind} result in the store; produce one with `{backends.PRODUCE[kind]}`")
    return r
