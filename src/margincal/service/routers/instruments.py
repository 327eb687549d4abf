"""Instruments and their current margin parameters; per-instrument history for the dashboard."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request

from margincal.service import backends
from margincal.service.deps import Con, Reader
from margincal.service.schemas import Instrument

router = APIRouter(prefix="/api/instruments", tags=["instruments"])

InstrumentPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")]


@router.get("", summary="Instruments with their current IM/MM rates", response_model=None)
def list_instruments(_: Reader, con: Con) -> list[dict[str, Any]]:
    return backends.instruments(con)


@router.get("/{instrument}", summary="One instrument: reference data, current parameters, rate changes by version",
            response_model=None)
def get_instrument(instrument: InstrumentPath, _: Reader, con: Con) -> dict[str, Any]:
    try:
        return backends.instrument_detail(con, instrument)
    except KeyError:
        raise HTTPException(404, f"instrument {instrument!r} is not known") from None


@router.get("/{instrument}/history",
            summary="Causal price, forecast volatility and IM/MM rate paths, and published rates by version",
            response_model=None)
def instrument_history(
    request: Request, instrument: InstrumentPath, _: Reader, con: Con,
    timeframe: Annotated[str | None, Query(pattern=r"^\d+[mhdw]$", description="bars: 1d, 1h...")] = None,
    max_points: Annotated[int, Query(ge=50, le=20000)] = 4000,
) -> dict[str, Any]:
    try:
        return backends.instrument_history(con, instrument, timeframe, max_points, request.app.state.history_cache)
    except KeyError:
        raise HTTPException(404, f"instrument {instrument!r} has no stored bars") from None


__all__ = ["Instrument", "router"]
