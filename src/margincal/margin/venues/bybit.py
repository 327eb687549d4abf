"""Bybit risk-limit tiers (``GET /v5/market/risk-limit``, categories linear and inverse).

Response shape (https://bybit-exchange.github.io/docs/v5/market/risk-limit)::

    {"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": [
      {"id": 1, "symbol": "BTCUSDT", "riskLimitValue": "2000000", "maintenanceMargin": "0.005",
       "initialMargin": "0.01", "isLowestRisk": 1, "maxLeverage": "100.00", "mmDeduction": ""}]}}

``riskLimitValue`` is the tier's position-value cap; the floor is the previous
tier's cap. Rates are fractions (0.005 = 0.5%). ``mmDeduction``, when present,
is checked against the exact recomputation ``d_k = d_(k-1) + floor_k *
(mmr_k - mmr_(k-1))`` (the same "tax bracket" rule as Binance's ``cum``).
Inverse contracts' values are in coin; give ``price`` to turn them into notional.

The v3 answer (``GET /derivatives/v3/public/risk-limit/list``) is read too: its
``limit`` and ``maintainMargin`` are v5's ``riskLimitValue`` and
``maintenanceMargin`` (the bundled Bybit tables are v3 documentation examples).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from margincal.errors import ConfigError
from margincal.margin.params import InstrumentParams, ParameterSet
from margincal.margin.venues._common import (
    Bracket,
    Ctx,
    bracket_params,
    brackets_from_params,
    check_brackets,
    check_leverage,
    deductions,
    fmt,
    frac,
    get,
)

VENUE = "bybit"


def parse(doc: Any, ctx: Ctx, *, price: float | None = None) -> dict[str, InstrumentParams]:
    res = doc.get("result", doc) if isinstance(doc, dict) else {"list": doc}
    if isinstance(doc, dict) and doc.get("retCode") not in (None, 0, "0"):
        raise ctx.error("retCode", doc.get("retCode"), f"the response is an error ({doc.get('retMsg')!r})")
    rows = get(res, ctx.at("result"), "list")
    if not isinstance(rows, list) or not rows:
        raise ctx.at("result").error("list", rows, "it must be a non-empty list of tiers")
    category = res.get("category", "linear") if isinstance(res, dict) else "linear"
    by_sym: dict[str, list[dict[str, Any]]] = {}
    for i, r in enumerate(rows, start=1):
        by_sym.setdefault(str(get(r, ctx.at(f"list[{i}]"), "symbol")), []).append(r)
    out: dict[str, InstrumentParams] = {}
    for sym, rs in by_sym.items():
        c0 = ctx.at(sym)
        tiers = []
        for r in rs:
            c = c0.at(f"id {r.get('id')}")
            cap = frac(get(r, c, "riskLimitValue", "limit"), c, "riskLimitValue", low=Fraction(0), low_open=True)
            im = frac(get(r, c, "initialMargin"), c, "initialMargin", low=Fraction(0), high=Fraction(1),
                      low_open=True)
            mm = frac(get(r, c, "maintenanceMargin", "maintainMargin"), c, "maintenanceMargin", low=Fraction(0), high=Fraction(1),
                      low_open=True)
            if mm > im:
                raise c.error("maintenanceMargin", fmt(mm), f"it must not exceed initialMargin {fmt(im)}")
            lev = frac(get(r, c, "maxLeverage"), c, "maxLeverage", low=Fraction(1))
            check_leverage(im, lev, c, "initialMargin", "maxLeverage")
            ded = get(r, c, "mmDeduction", default=None)
            tiers.append((cap, im, mm, lev, None if ded is None else frac(ded, c, "mmDeduction"), r.get("id")))
        tiers.sort(key=lambda t: t[0])
        br, floor = [], Fraction(0)
        for cap, im, mm, lev, ded, tid in tiers:
            br.append(Bracket(floor, cap, im, mm, lev, ded, {"id": tid}))
            floor = cap
        check_brackets(br, c0)
        extra: dict[str, Any] = {"symbol": sym, "category": category}
        if category == "inverse":
            if price is None or not price > 0:
                raise ConfigError(f"{ctx.file}: {sym}: inverse risk limits are in coin; give --price")
            px = Fraction(str(price))
            extra["reference_price"] = float(price)
            br = [Bracket(b.floor * px, None if b.cap is None else b.cap * px, b.im_rate, b.mm_rate,
                          b.max_leverage, None, b.extra) for b in br]
        # riskLimitValue is the largest position value of the tier: a position on it is in that tier
        out[sym] = bracket_params(sym, br, c0, venue=VENUE, rule="brackets", extra=extra, cap_inclusive=True)
    return out


def render(pset: ParameterSet, *, instruments: Sequence[str] | None = None, **_: Any) -> dict[str, Any]:
    rows = []
    for name in instruments or pset.instruments():
        p = pset[name]
        br = brackets_from_params(p)
        if br[-1].cap is None:
            raise ConfigError(f"{name}: the last tier has no cap; Bybit risk limits need riskLimitValue on every tier")
        sym = p.details.get("symbol", name)
        for k, (b, d) in enumerate(zip(br, deductions(br), strict=True), start=1):
            rows.append({"id": k, "symbol": sym, "riskLimitValue": fmt(b.cap),  # type: ignore[arg-type]
                         "maintenanceMargin": fmt(b.mm_rate), "initialMargin": fmt(b.im_rate),
                         "isLowestRisk": 1 if k == 1 else 0, "maxLeverage": f"{float(1 / b.im_rate):.2f}",
                         "mmDeduction": fmt(d) if k > 1 else ""})
    return {"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": rows}}
