"""What-if / pre-trade margin: the IM of a portfolio before and after an order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from margincal.errors import DataError
from margincal.margin.portfolio.engine import PortfolioMarginResult, RiskMatrixMargin, portfolio_margin
from margincal.margin.portfolio.instruments import InstrumentSpec, MarketState, parse_instrument
from margincal.margin.portfolio.scenarios import ScenarioPnL


class MarginEngine(Protocol):
    def scenario_pnl(self, specs: Any, market: MarketState) -> ScenarioPnL: ...


@dataclass(frozen=True)
class Portfolio:
    """One account: ``positions`` ``{instrument name: contracts}`` valued in ``market`` by ``engine``.

    Instruments not in ``specs`` are built from their Deribit-style names
    (:func:`parse_instrument`, linear contracts of 1 coin).
    """

    positions: Mapping[str, float]
    market: MarketState
    engine: MarginEngine = field(default_factory=RiskMatrixMargin)
    specs: Mapping[str, InstrumentSpec] = field(default_factory=dict)
    account: str = "account"

    def spec(self, name: str) -> InstrumentSpec:
        return self.specs[name] if name in self.specs else parse_instrument(name)


@dataclass(frozen=True)
class WhatIfResult:
    """Margin before and after an order; ``marginal_im = im_after - im_before`` (USD)."""

    account: str
    order: dict[str, float]
    im_before: float
    im_after: float
    mm_before: float
    mm_after: float
    marginal_im: float
    marginal_mm: float
    driving_before: str
    driving_after: str
    method: str
    params: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _order_dict(order: Any) -> dict[str, float]:
    if isinstance(order, Mapping):
        items: Iterable[tuple[str, float]] = order.items()
    elif isinstance(order, tuple) and len(order) == 2 and isinstance(order[0], str):
        items = [order]
    else:
        items = list(order)
    out: dict[str, float] = {}
    for name, q in items:
        qf = float(q)
        if not np.isfinite(qf):
            raise DataError(f"order quantity for {name} is {q}; it must be finite")
        out[str(name)] = out.get(str(name), 0.0) + qf
    if not out:
        raise DataError("the order is empty; give {instrument: quantity} or (instrument, quantity)")
    return out


def what_if(portfolio: Portfolio, order: Any) -> WhatIfResult:
    """IM/MM before and after adding ``order`` (``{name: qty}``, ``(name, qty)`` or a list of pairs).

    One scenario matrix over the union of instruments, one two-row product.
    """
    o = _order_dict(order)
    names = list(dict.fromkeys([*portfolio.positions.keys(), *o.keys()]))
    specs = [portfolio.spec(n) for n in names]
    pnl = portfolio.engine.scenario_pnl(specs, portfolio.market)
    before = pnl.vector(portfolio.positions)
    after = before + pnl.vector(o)
    res: PortfolioMarginResult = portfolio_margin(np.vstack([before, after]), pnl,
                                                  accounts=[f"{portfolio.account} before", f"{portfolio.account} after"])
    return WhatIfResult(
        account=portfolio.account,
        order=o,
        im_before=float(res.im[0]),
        im_after=float(res.im[1]),
        mm_before=float(res.mm[0]),
        mm_after=float(res.mm[1]),
        marginal_im=float(res.im[1] - res.im[0]),
        marginal_mm=float(res.mm[1] - res.mm[0]),
        driving_before=str(res.driving_label[0]),
        driving_after=str(res.driving_label[1]),
        method=res.method,
        params=res.params,
    )


__all__ = ["MarginEngine", "Portfolio", "WhatIfResult", "what_if"]
