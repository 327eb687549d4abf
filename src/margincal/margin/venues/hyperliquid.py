"""Hyperliquid margin tables (``POST /info {"type": "meta"}``: ``universe`` and ``marginTables``).

Shape::

    {"universe": [{"name": "BTC", "szDecimals": 5, "maxLeverage": 40, "marginTableId": 56}, ...],
     "marginTables": [[56, {"description": "tiered 40x",
                            "marginTiers": [{"lowerBound": "0.0", "maxLeverage": 40},
                                            {"lowerBound": "150000000.0", "maxLeverage": 20}]}]]}

Rules (https://hyperliquid.gitbook.io/hyperliquid-docs/trading/margin-tiers):
a table id below 50 is a single tier at that leverage; the maintenance rate of a
tier is half the initial rate at its maximum leverage, ``mmr = 1 / (2 *
maxLeverage)``; ``maintenance_deduction_n = maintenance_deduction_(n-1) +
lowerBound_n * (mmr_n - mmr_(n-1))``; ``MM = N * mmr - deduction``. All of it is
rational in the published integers, which :class:`HyperliquidArithmetic` keeps
exact. Hyperliquid has no free maintenance rate: exporting our tiers keeps the
IM leverage (rounded down to a whole number) and the MM becomes half the IM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from margincal.errors import ConfigError, MargincalWarning
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
    integer,
)

VENUE = "hyperliquid"


@dataclass(frozen=True)
class HyperliquidArithmetic:
    """Margin-tier rule in fractions: IM = N / maxLeverage (at max leverage), MM = N * mmr - deduction."""

    lower_bounds: tuple[Fraction, ...]
    max_leverages: tuple[int, ...]

    @property
    def mm_rates(self) -> list[Fraction]:
        return [Fraction(1, 2 * lev) for lev in self.max_leverages]

    @property
    def deductions(self) -> list[Fraction]:
        out = [Fraction(0)]
        r = self.mm_rates
        for k in range(1, len(r)):
            out.append(out[-1] + self.lower_bounds[k] * (r[k] - r[k - 1]))
        return out

    def tier(self, notional: Fraction | int | str) -> int:
        n = abs(Fraction(notional))
        return max(k for k, lo in enumerate(self.lower_bounds) if n >= lo)

    def maintenance_margin(self, notional: Fraction | int | str) -> Fraction:
        n = abs(Fraction(notional))
        k = self.tier(n)
        return n * self.mm_rates[k] - self.deductions[k]

    def initial_margin(self, notional: Fraction | int | str, leverage: int | None = None) -> Fraction:
        n = abs(Fraction(notional))
        lev = self.max_leverages[self.tier(n)]
        return n / (lev if leverage is None else min(leverage, lev))


def _table(tid: int, tables: dict[int, Any], ctx: Ctx) -> list[tuple[Fraction, int]]:
    if tid < 50 and tid not in tables:
        return [(Fraction(0), tid)]
    if tid not in tables:
        raise ctx.error("marginTableId", tid, f"no such table in marginTables (ids {sorted(tables)})")
    t = tables[tid]
    c = ctx.at(f"marginTable {tid}")
    tiers = get(t, c, "marginTiers")
    if not isinstance(tiers, list) or not tiers:
        raise c.error("marginTiers", tiers, "it must be a non-empty list")
    out = []
    for i, r in enumerate(tiers, start=1):
        ci = c.at(f"tier {i}")
        out.append((frac(get(r, ci, "lowerBound"), ci, "lowerBound", low=Fraction(0)),
                    integer(get(r, ci, "maxLeverage"), ci, "maxLeverage", low=1)))
    return out


def parse(doc: Any, ctx: Ctx, **_: Any) -> dict[str, InstrumentParams]:
    if isinstance(doc, list) and len(doc) == 2 and isinstance(doc[0], dict):  # metaAndAssetCtxs
        doc = doc[0]
    universe = get(doc, ctx, "universe")
    if not isinstance(universe, list):
        raise ctx.error("universe", type(universe).__name__, "it must be a list of assets")
    tables: dict[int, Any] = {}
    for i, pair in enumerate(doc.get("marginTables", []) or [], start=1):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise ctx.error(f"marginTables[{i}]", pair, "each entry must be [id, table]")
        tables[integer(pair[0], ctx, f"marginTables[{i}] id", low=0)] = pair[1]
    out: dict[str, InstrumentParams] = {}
    for i, a in enumerate(universe, start=1):
        c = ctx.at(f"universe[{i}]")
        name = str(get(a, c, "name"))
        c = ctx.at(name)
        if a.get("isDelisted"):
            continue
        tid = integer(get(a, c, "marginTableId", default=get(a, c, "maxLeverage")), c, "marginTableId", low=0)
        tiers = _table(tid, tables, c)
        br = []
        for k, (lo, lev) in enumerate(tiers):
            cap = tiers[k + 1][0] if k + 1 < len(tiers) else None
            br.append(Bracket(lo, cap, Fraction(1, lev), Fraction(1, 2 * lev), Fraction(lev)))
        check_brackets(br, c)
        out[name] = bracket_params(name, br, c, venue=VENUE, rule="brackets",
                                   extra={"symbol": name, "marginTableId": tid,
                                          "szDecimals": a.get("szDecimals"),
                                          "description": tables.get(tid, {}).get("description", "")})
    return out


def render(pset: ParameterSet, *, instruments: Sequence[str] | None = None, **_: Any) -> dict[str, Any]:
    import warnings

    universe: list[dict[str, Any]] = []
    tables: list[list[Any]] = []
    for i, name in enumerate(instruments or pset.instruments()):
        p = pset[name]
        br = brackets_from_params(p)
        tiers: list[dict[str, Any]] = []
        dropped_mm = False
        for b in br:
            lev = max(1, floor_frac(1 / b.im_rate))
            if Fraction(1, 2 * lev) != b.mm_rate:
                dropped_mm = True
            if tiers and lev >= int(tiers[-1]["maxLeverage"]):
                continue  # a tier must lower the leverage
            lb = fmt(b.floor)
            tiers.append({"lowerBound": lb if "." in lb else lb + ".0",
                          "maxLeverage": lev})
        if dropped_mm:
            warnings.warn(f"{name}: Hyperliquid's maintenance rate is half the initial rate at max leverage; "
                          "our maintenance rates are not carried over", MargincalWarning, stacklevel=2)
        tid = int(p.details.get("marginTableId") or 0)
        if len(tiers) == 1 and int(tiers[0]["maxLeverage"]) < 50:
            tid = int(tiers[0]["maxLeverage"])  # ids below 50 are single tiers at that leverage
        else:
            if tid < 50 or any(t[0] == tid for t in tables):
                tid = 1000 + i
            tables.append([tid, {"description": f"tiered {tiers[0]['maxLeverage']}x", "marginTiers": tiers}])
        universe.append({"name": p.details.get("symbol", name.removesuffix("USDT")),
                         "szDecimals": p.details.get("szDecimals") or 0,
                         "maxLeverage": tiers[0]["maxLeverage"], "marginTableId": tid})
    return {"universe": universe, "marginTables": tables}


def arithmetic(p: InstrumentParams) -> HyperliquidArithmetic:
    br = brackets_from_params(p)
    levs = tuple(int(b.max_leverage) for b in br)
    if any(Fraction(lv) != b.max_leverage for lv, b in zip(levs, br, strict=True)):
        raise ConfigError(f"{p.instrument}: Hyperliquid leverages are whole numbers")
    return HyperliquidArithmetic(tuple(b.floor for b in br), levs)


__all__ = ["HyperliquidArithmetic", "arithmetic", "deductions", "parse", "render"]
