"""Binance futures leverage brackets: USD-M (``GET /fapi/v1/leverageBracket``) and COIN-M (``/dapi/v1/leverageBracket``).

USD-M response (one object per symbol)::

    [{"symbol": "BTCUSDT", "brackets": [{"bracket": 1, "initialLeverage": 125, "notionalCap": 50000,
      "notionalFloor": 0, "maintMarginRatio": 0.004, "cum": 0.0}, ...]}]

COIN-M brackets are in contracts' base quantity (coin) instead of notional:
``qtyCap``, ``qtylFloor`` (Binance's own spelling; ``qtyFloor`` is accepted
too) and ``cum`` in coin. A COIN-M table is turned into notional brackets at a
reference ``price`` (option), recorded in the instrument's details.

Venue arithmetic (https://www.binance.com/en/futures/trading-rules/perpetual/portfolio-margin/notional-limit):
``MM = N * maintMarginRatio - cum`` with ``cum_k = cum_(k-1) + floor_k * (mmr_k - mmr_(k-1))``;
IM at the bracket's maximum leverage is ``N / initialLeverage``. :class:`BinanceArithmetic`
does both in exact fractions of the published decimals, so ``cum`` is reproduced
to the last digit (the published column is checked on import).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    deductions,
    floor_frac,
    fmt,
    frac,
    get,
)

VENUE = "binance"


@dataclass(frozen=True)
class BinanceArithmetic:
    """Binance's bracket rule in exact fractions (amounts in the bracket's unit: quote for USD-M, coin for COIN-M)."""

    brackets: tuple[Bracket, ...]

    @property
    def cum(self) -> list[Fraction]:
        return deductions(self.brackets)

    def bracket_index(self, size: Fraction | int | str) -> int:
        """The bracket of ``size``: ``floor < size <= cap`` (Binance's announcements print "Position <= cap":
        a position exactly on a cap is in the lower bracket; 0 is in the first)."""
        s = abs(Fraction(size))
        k = 0
        for i, b in enumerate(self.brackets):
            if s > b.floor:
                k = i
        return k

    def maintenance_margin(self, size: Fraction | int | str) -> Fraction:
        s = abs(Fraction(size))
        k = self.bracket_index(s)
        return s * self.brackets[k].mm_rate - self.cum[k]

    def initial_margin(self, size: Fraction | int | str, leverage: int | None = None) -> Fraction:
        s = abs(Fraction(size))
        b = self.brackets[self.bracket_index(s)]
        lev = b.max_leverage if leverage is None else min(Fraction(leverage), b.max_leverage)
        return s / lev


def _brackets(rows: Sequence[Mapping[str, Any]], ctx: Ctx, coin: bool) -> list[Bracket]:
    lo_names = ("qtylFloor", "qtyFloor") if coin else ("notionalFloor",)
    cap_names = ("qtyCap",) if coin else ("notionalCap",)
    out = []
    for i, r in enumerate(sorted(rows, key=lambda r: float(get(r, ctx, *lo_names, default=0) or 0)), start=1):
        c = ctx.at(f"bracket {get(r, ctx, 'bracket', default=i)}")
        lev = frac(get(r, c, "initialLeverage"), c, "initialLeverage", low=Fraction(1))
        mmr = frac(get(r, c, "maintMarginRatio"), c, "maintMarginRatio", low=Fraction(0), high=Fraction(1),
                   low_open=True)
        if mmr > 1 / lev:
            raise c.error("maintMarginRatio", fmt(mmr), f"it must not exceed 1/initialLeverage = {float(1 / lev):.6g}")
        cap_raw = get(r, c, *cap_names, default=None)
        out.append(Bracket(frac(get(r, c, *lo_names), c, lo_names[0], low=Fraction(0)),
                           None if cap_raw is None else frac(cap_raw, c, cap_names[0], low=Fraction(0),
                                                             low_open=True),
                           1 / lev, mmr, lev,
                           None if get(r, c, "cum", default=None) is None else frac(r["cum"], c, "cum")))
    return out


def parse(doc: Any, ctx: Ctx, *, coin_margined: bool = False, price: float | None = None) -> dict[str, InstrumentParams]:
    """Read a leverageBracket response (list, or one object) into instrument parameters."""
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise ConfigError(f"{ctx.file}: empty list; expected one object per symbol with a 'brackets' list")
    out: dict[str, InstrumentParams] = {}
    for n, item in enumerate(items, start=1):
        c = ctx.at(f"item {n}")
        sym = str(get(item, c, "symbol", "pair"))
        c = ctx.at(sym)
        rows = get(item, c, "brackets")
        if not isinstance(rows, list) or not rows:
            raise c.error("brackets", rows, "it must be a non-empty list of brackets")
        br = _brackets(rows, c, coin_margined)
        check_brackets(br, c)
        extra: dict[str, Any] = {"symbol": sym, "margin": "coin" if coin_margined else "usd"}
        if "notionalCoef" in item:
            extra["notionalCoef"] = item["notionalCoef"]
        if coin_margined:
            if price is None or not price > 0:
                raise ConfigError(f"{ctx.file}: {sym}: COIN-M brackets are in coin; give the reference price "
                                  "(--price) to turn them into notional brackets")
            px = frac(price, c, "price", low=Fraction(0), low_open=True)
            extra.update({"reference_price": float(price), "coin_brackets": [
                {"floor": fmt(b.floor), "cap": None if b.cap is None else fmt(b.cap), "mm_rate": fmt(b.mm_rate),
                 "max_leverage": fmt(b.max_leverage)} for b in br]})
            br = [Bracket(b.floor * px, None if b.cap is None else b.cap * px, b.im_rate, b.mm_rate, b.max_leverage)
                  for b in br]
        out[sym] = bracket_params(sym, br, c, venue=VENUE, rule="brackets", extra=extra, cap_inclusive=True)
    return out


def render(pset: ParameterSet, *, coin_margined: bool = False, price: float | None = None,
           instruments: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Our parameter set as a leverageBracket response (whole leverages, cum recomputed exactly)."""
    out = []
    for name in instruments or pset.instruments():
        p = pset[name]
        br = brackets_from_params(p)
        px = None
        if coin_margined:
            given = price if price is not None else p.details.get("reference_price")
            if given is None or not float(given) > 0:
                raise ConfigError(f"{name}: COIN-M brackets are in coin; give the reference price (--price)")
            px = Fraction(str(given))
        rows = []
        prev_mmr = Fraction(0)
        cum = Fraction(0)
        for k, b in enumerate(br, start=1):
            lev = floor_frac(b.max_leverage) if b.max_leverage.denominator != 1 else int(b.max_leverage)
            lev = max(lev, 1)
            mmr = min(b.mm_rate, Fraction(1, lev))
            lo, cap = b.floor, b.cap
            if px is not None:
                lo, cap = lo / px, None if cap is None else cap / px
            if k > 1:
                cum += lo * (mmr - prev_mmr)
            prev_mmr = mmr
            row: dict[str, Any] = {"bracket": k, "initialLeverage": lev}
            if coin_margined:
                row.update({"qtyCap": None if cap is None else float(cap), "qtylFloor": float(lo)})
            else:
                row.update({"notionalCap": None if cap is None else float(cap), "notionalFloor": float(lo)})
            row.update({"maintMarginRatio": float(mmr), "cum": float(cum)})
            rows.append(row)
        out.append({("pair" if coin_margined else "symbol"): p.details.get("symbol", name), "brackets": rows})
    return out


def arithmetic(p: InstrumentParams) -> BinanceArithmetic:
    """Exact bracket arithmetic for an imported (or exported-and-reimported) Binance instrument."""
    return BinanceArithmetic(tuple(brackets_from_params(p)))
