"""Portfolio margin and what-if (pre-trade): margin before and after an order and the driving scenario."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from margincal.service.deps import Con, Trader
from margincal.service.schemas import Portfolio, WhatIfRequest

router = APIRouter(prefix="/api/margin", tags=["margin"])


@router.post("/portfolio", summary="IM and MM of a portfolio, per position, and the driving scenario",
             response_model=None)
def portfolio_margin(body: Portfolio, request: Request, _: Trader, con: Con) -> dict[str, Any]:
    positions = [p.model_dump() for p in body.positions]
    return request.app.state.engine.portfolio(con, positions, method=body.method, flat_vol=body.flat_vol,
                                              spot=body.spot, generation=request.app.state.store.generation)


@router.post("/what-if", summary="Pre-trade check: IM/MM before and after an order, marginal IM, driving scenario",
             response_model=None)
def what_if(body: WhatIfRequest, request: Request, _: Trader, con: Con) -> dict[str, Any]:
    positions = [p.model_dump() for p in body.positions]
    order = {**body.order.model_dump(), "signed_quantity": body.order.signed_quantity}
    extra = {}
    if body.limits is not None:
        extra["limits"] = body.limits.model_dump()
    if body.collateral is not None:
        extra["collateral"] = dict(body.collateral)
        extra["haircuts"] = dict(body.haircuts or {})
    return request.app.state.engine.what_if(con, positions, order, method=body.method, flat_vol=body.flat_vol,
                                            spot=body.spot, generation=request.app.state.store.generation, **extra)
