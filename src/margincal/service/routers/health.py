"""``GET /health`` (no key needed): liveness and whether the store opens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from margincal import __version__
from margincal.errors import MargincalError

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness and store check (no key needed)", response_model=None)
def health(request: Request) -> Any:
    store = request.app.state.store
    try:
        with store.cursor() as cur:
            version = cur.execute("SELECT max(version) FROM parameter_sets").fetchone()[0]
    except MargincalError:
        return JSONResponse({"status": "degraded", "store": "unavailable", "version": __version__},
                            status_code=503)
    return {"status": "ok", "store": "ok", "version": __version__, "parameter_set": version}
