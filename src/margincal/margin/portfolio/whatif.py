"""What-if / pre-trade margin: the IM of a portfolio before and after an order, limits, and the account view.

:func:`what_if` prices the order against one scenario matrix; with
``limits`` it refuses an order that breaches a position limit or an OI cap
(:mod:`margincal.margin.limits`), naming the limit; with ``collateral`` it
adds the account view before and after (:func:`account_view`): equity,
collateral after haircuts, IM/MM, margin ratio (MM / equity), the
liquidation move of each underlying and the driving scenario.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy.optimize import brentq

from margincal.errors import DataError
from margincal.margin.limits import Limits, check_order
from margincal.margin.portfolio.engine import PortfolioMarginResult, RiskMatrixMargin, portfolio_margin
from margincal.margin.portfolio.instruments import InstrumentSpec, MarketState, parse_instrument
from margincal.margin.portfolio.scenarios import ScenarioPnL, instrument_arrays, revalue


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
    accepted: bool = True
    refusal: str | None = None
    breaches: list[dict[str, Any]] = field(default_factory=list)
    account_before: dict[str, Any] | None = None
    account_after: dict[str, Any] | None = None

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


def what_if(portfolio: Portfolio, order: Any, *, limits: Limits | None = None,
            collateral: Mapping[str, float] | None = None, haircuts: Mapping[str, float] | None = None,
            prices: Mapping[str, float] | None = None) -> WhatIfResult:
    """IM/MM before and after adding ``order`` (``{name: qty}``, ``(name, qty)`` or a list of pairs).

    One scenario matrix over the union of instruments, one two-row product.
    ``limits``: refuse (``accepted=False``, ``refusal`` names the limit) an
    order breaching a position limit or OI cap. ``collateral``: balances per
    currency for the account view (``account_before`` / ``account_after``).
    """
    o = _order_dict(order)
    breaches = check_order(portfolio.positions, o, limits) if limits is not None else []
    names = list(dict.fromkeys([*portfolio.positions.keys(), *o.keys()]))
    specs = [portfolio.spec(n) for n in names]
    pnl = portfolio.engine.scenario_pnl(specs, portfolio.market)
    before = pnl.vector(portfolio.positions)
    after = before + pnl.vector(o)
    res: PortfolioMarginResult = portfolio_margin(np.vstack([before, after]), pnl,
                                                  accounts=[f"{portfolio.account} before", f"{portfolio.account} after"])
    acc_b = acc_a = None
    if collateral is not None:
        after_pos = dict(portfolio.positions)
        for k, v in o.items():
            after_pos[k] = after_pos.get(k, 0.0) + v
        acc_b = account_view(portfolio, collateral, haircuts=haircuts, prices=prices)
        acc_a = account_view(dataclasses.replace(portfolio, positions=after_pos), collateral, haircuts=haircuts,
                             prices=prices)
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
        accepted=not breaches,
        refusal="; ".join(b.message for b in breaches) or None,
        breaches=[b.as_dict() for b in breaches],
        account_before=acc_b,
        account_after=acc_a,
    )


STABLE = ("USD", "USDT", "USDC")


def _collateral_value(collateral: Mapping[str, float], prices: Mapping[str, float], haircuts: Mapping[str, float],
                      move: Mapping[str, float]) -> tuple[float, float]:
    raw = adj = 0.0
    for c, amt in collateral.items():
        cu = c.upper()
        if cu in prices:
            px = float(prices[cu])
        elif cu in STABLE:
            px = 1.0
        else:
            raise DataError(f"no USD price for collateral {c}: add it to prices (or MarketState.spot)")
        v = float(amt) * px * move.get(cu, 1.0)
        raw += v
        adj += v * (1.0 - float(haircuts.get(cu, haircuts.get(c, 0.0)))) if v > 0 else v
    return raw, adj


def account_view(portfolio: Portfolio, collateral: Mapping[str, float], *,
                 haircuts: Mapping[str, float] | None = None,
                 prices: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Account view of a portfolio-margined account (USD).

    ``equity`` = collateral value after haircuts (positions are marked to
    market into the balances, as on Deribit/Derive); ``margin_ratio`` = MM /
    equity (liquidation at 1); ``liquidation_moves[u]`` = the relative move
    of underlying ``u`` (other prices fixed) at which equity, revalued with
    the positions' P&L and the collateral in ``u``, equals the portfolio MM
    recomputed at the moved price (``brentq``; ``None`` if no move within
    -95%..+1000% liquidates). ``liquidation_prices[u]`` = spot x (1 + move).

    Base-asset collateral held as a position (kind ``"base"``, e.g.
    ``BTC-USDC``: margined inside the scenarios by ``derive_like()``) counts in
    ``equity`` at its full spot value (``base_collateral_value``, no haircut:
    its risk is in the margin, as Derive adds ``baseValue`` to the MtM) and moves
    with its underlying; do not list the same coins again in ``collateral``.
    """
    hc = {k.upper(): float(v) for k, v in (haircuts or {}).items()}
    px = {k.upper(): float(v) for k, v in portfolio.market.spot.items()}
    px.update({k.upper(): float(v) for k, v in (prices or {}).items()})
    names = list(portfolio.positions)
    specs = [portfolio.spec(n) for n in names]
    raw, adj = _collateral_value(collateral, px, hc, {})
    if not names:
        return {"equity": adj, "collateral_value": raw, "collateral_after_haircuts": adj, "im": 0.0, "mm": 0.0,
                "margin_ratio": 0.0, "liquidation_prices": {}, "liquidation_moves": {}, "driving_scenario": None,
                "haircuts": hc}
    q = np.array([float(portfolio.positions[n]) for n in names])
    base_value = sum(float(qi) * s.contract_size * portfolio.market.spot_of(s.underlying)
                     for qi, s in zip(q, specs, strict=True) if s.is_base)

    def margin_at(market: MarketState) -> PortfolioMarginResult:
        pnl = portfolio.engine.scenario_pnl(specs, market)
        return portfolio_margin(q[None, :], pnl)

    res = margin_at(portfolio.market)
    im, mm = float(res.im[0]), float(res.mm[0])
    arr = instrument_arrays(specs, portfolio.market)
    liq: dict[str, float | None] = {}
    moves: dict[str, float | None] = {}
    for u in sorted({s.underlying for s in specs}):
        rows = np.array([s.underlying == u for s in specs])

        def health(m: float, u: str = u, rows: np.ndarray = rows) -> float:
            mult = np.where(rows, 1.0 + m, 1.0)[:, None]
            pl = float(q @ revalue(arr, mult, np.ones_like(mult), rate=portfolio.market.rate)[:, 0])
            _, a = _collateral_value(collateral, px, hc, {u.upper(): 1.0 + m})
            spot = dict(portfolio.market.spot)
            spot[u] = spot[u] * (1.0 + m)
            shocked = dataclasses.replace(portfolio.market, spot=spot,
                                          forwards={k: v * (1.0 + m) if k in {s.name for s in specs
                                                                                 if s.underlying == u} else v
                                                    for k, v in portfolio.market.forwards.items()})
            return a + base_value + pl - float(margin_at(shocked).mm[0])

        h0 = health(0.0)
        found = None
        if h0 <= 0:
            found = 0.0
        else:
            for side in (-1.0, 1.0):
                grid = np.linspace(0.0, 0.95 if side < 0 else 10.0, 60)[1:] * side
                prev = 0.0
                for m in grid:
                    if health(float(m)) <= 0:
                        r = brentq(health, min(prev, m), max(prev, m), xtol=1e-9)
                        if found is None or abs(r) < abs(found):
                            found = float(r)
                        break
                    prev = float(m)
        moves[u] = found
        liq[u] = None if found is None else float(portfolio.market.spot_of(u) * (1.0 + found))
    eq = adj + base_value
    out = {"equity": eq, "collateral_value": raw, "collateral_after_haircuts": adj, "im": im, "mm": mm,
           "margin_ratio": mm / eq if eq > 0 else math.inf, "available": eq - im,
           "liquidation_prices": liq, "liquidation_moves": moves, "driving_scenario": str(res.driving_label[0]),
           "haircuts": hc}
    if any(s.is_base for s in specs):
        out["base_collateral_value"] = base_value
    return out


__all__ = ["MarginEngine", "Portfolio", "WhatIfResult", "account_view", "what_if"]
