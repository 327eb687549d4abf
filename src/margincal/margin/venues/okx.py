"""OKX position tiers (``GET /api/v5/public/position-tiers``, instType SWAP or FUTURES).

Response shape (https://www.okx.com/docs-v5/en/#public-data-rest-api-get-position-tiers)::

    {"code": "0", "msg": "", "data": [{"instFamily": "BTC-USDT", "uly": "BTC-USDT", "tier": "1",
      "minSz": "0", "maxSz": "1000", "imr": "0.01", "mmr": "0.004", "maxLever": "100", ...}]}

For derivatives the sizes are numbers of contracts (``minSz`` of a tier is the
previous ``maxSz`` plus one lot: ``1000.01`` after ``1000`` for BTC-USDT-SWAP,
whose lot is 0.01 contract). A contract is ``ctVal``
coins (BTC-USDT-SWAP 0.01 BTC, ETH-USDT-SWAP 0.1 ETH: ``GET
/api/v5/public/instruments``), so the notional of a tier bound is ``sz * ctVal *
price``. The importer needs ``ct_val`` (per family, or one for the file) and a
reference ``price``; both are recorded in the details and the exporter uses them
to turn notional bounds back into contracts (rounded down to whole contracts).
OKX publishes no maintenance deduction: a tier's rates apply to the whole
position ("the number of contracts, the tier, and the required maintenance
margin rate for the position", OKX help "Tiered maintenance margin ratio",
https://tr.okx.com/help/tier), so the imported schedule is ``whole_position``
(MM = N x mmr of N's tier, jumping at each cap) and ``cap_inclusive`` (a tier
runs minSz..maxSz). :class:`OkxArithmetic` is the same rule in exact fractions.
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
    check_leverage,
    floor_frac,
    fmt,
    frac,
    get,
)

VENUE = "okx"


@dataclass(frozen=True)
class OkxArithmetic:
    """OKX's tier rule in exact fractions: the tier of N (``minSz < N <= maxSz``) prices the whole position,
    MM = N x mmr, IM = N x imr (the tier's minimum initial margin ratio; at ``maxLever``, which OKX prints
    truncated to two decimals, a position's IM is N / maxLever, e.g. 1.50015% at 66.66x for imr 1.5%).
    Amounts in the quote currency."""

    brackets: tuple[Bracket, ...]

    def tier_index(self, size: Fraction | int | str) -> int:
        s = abs(Fraction(size))
        return max([0] + [i for i, b in enumerate(self.brackets) if s > b.floor])

    def maintenance_margin(self, size: Fraction | int | str) -> Fraction:
        s = abs(Fraction(size))
        return s * self.brackets[self.tier_index(s)].mm_rate

    def initial_margin(self, size: Fraction | int | str, leverage: int | None = None) -> Fraction:
        s = abs(Fraction(size))
        b = self.brackets[self.tier_index(s)]
        if leverage is None:
            return s * b.im_rate
        return s / min(Fraction(leverage), b.max_leverage)


def arithmetic(p: InstrumentParams) -> OkxArithmetic:
    """Exact tier arithmetic for an imported OKX instrument (notional bounds at its reference price)."""
    return OkxArithmetic(tuple(brackets_from_params(p)))
#: Contract values of the linear perpetuals (coins per contract), as listed by /api/v5/public/instruments.
CT_VAL = {"BTC-USDT": "0.01", "ETH-USDT": "0.1"}


def parse(doc: Any, ctx: Ctx, *, price: float | Mapping[str, float] | None = None,
          ct_val: float | Mapping[str, float] | None = None) -> dict[str, InstrumentParams]:
    if isinstance(doc, dict) and str(doc.get("code", "0")) != "0":
        raise ctx.error("code", doc.get("code"), f"the response is an error ({doc.get('msg')!r})")
    rows = doc.get("data") if isinstance(doc, dict) else doc
    if not isinstance(rows, list) or not rows:
        raise ctx.error("data", rows, "it must be a non-empty list of tiers")
    fams: dict[str, list[dict[str, Any]]] = {}
    for i, r in enumerate(rows, start=1):
        fams.setdefault(str(get(r, ctx.at(f"data[{i}]"), "instFamily", "uly", "instId")), []).append(r)
    out: dict[str, InstrumentParams] = {}
    for fam, rs in fams.items():
        c0 = ctx.at(fam)
        px_raw: object = price.get(fam) if isinstance(price, Mapping) else price
        cv_raw: object = ct_val.get(fam) if isinstance(ct_val, Mapping) else ct_val
        if cv_raw is None:
            cv_raw = CT_VAL.get(fam)
        if px_raw is None or cv_raw is None:
            raise ConfigError(f"{ctx.file}: {fam}: OKX tiers are in contracts; give the reference price (--price)"
                              + ("" if cv_raw is not None else " and the contract value (--ct-val)"))
        px = frac(px_raw, c0, "price", low=Fraction(0), low_open=True)
        cv = frac(cv_raw, c0, "ct_val", low=Fraction(0), low_open=True)
        tiers = []
        for r in rs:
            c = c0.at(f"tier {r.get('tier')}")
            lo = frac(get(r, c, "minSz"), c, "minSz", low=Fraction(0))
            hi = frac(get(r, c, "maxSz"), c, "maxSz", low=Fraction(0), low_open=True)
            imr = frac(get(r, c, "imr"), c, "imr", low=Fraction(0), high=Fraction(1), low_open=True)
            mmr = frac(get(r, c, "mmr"), c, "mmr", low=Fraction(0), high=Fraction(1), low_open=True)
            if mmr > imr:
                raise c.error("mmr", fmt(mmr), f"it must not exceed imr {fmt(imr)}")
            lev = frac(get(r, c, "maxLever"), c, "maxLever", low=Fraction(1))
            check_leverage(imr, lev, c, "imr", "maxLever")
            tiers.append((lo, hi, imr, mmr, lev, r.get("tier")))
        tiers.sort(key=lambda t: t[0])
        # OKX writes the next tier's minSz as the previous maxSz plus one lot: one contract where the lot is a
        # whole contract (ETH-USDT 2021: 3000 -> 3001), 0.01 where it is 0.01 (BTC-USDT-SWAP: 1000 -> 1000.01).
        # Make the bounds contiguous on the cap; a gap of more than one contract is an error.
        br = []
        for k, (lo, hi, imr, mmr, lev, tier) in enumerate(tiers):
            floor = Fraction(0) if k == 0 else tiers[k - 1][1]
            if k > 0 and not floor <= lo <= floor + 1:
                raise c0.at(f"tier {tier}").error("minSz", fmt(lo), f"it must follow the previous maxSz {fmt(floor)}"
                                                  " (by at most one contract)")
            br.append(Bracket(floor, hi, imr, mmr, lev, None, {"tier": tier, "minSz": fmt(lo), "maxSz": fmt(hi)}))
        check_brackets(br, c0, check_deduction=False)
        scale = cv * px
        notional = [Bracket(b.floor * scale, None if b.cap is None else b.cap * scale, b.im_rate, b.mm_rate,
                            b.max_leverage, None, b.extra) for b in br]
        # a tier holds minSz..maxSz (the next starts at maxSz + 1 contract): a size on maxSz is in that tier
        out[fam] = bracket_params(fam, notional, c0, venue=VENUE, rule="brackets", cap_inclusive=True,
                                  whole_position=True,
                                  extra={"symbol": fam, "ct_val": float(cv), "reference_price": float(px)})
    return out


def render(pset: ParameterSet, *, price: float | None = None, ct_val: float | None = None,
           instruments: Sequence[str] | None = None, **_: Any) -> dict[str, Any]:
    rows = []
    for name in instruments or pset.instruments():
        p = pset[name]
        fam = p.details.get("symbol", name)
        if "-" not in fam and fam.endswith("USDT"):
            fam = fam[:-4] + "-USDT"
        px = price if price is not None else p.details.get("reference_price")
        cv = ct_val if ct_val is not None else p.details.get("ct_val", CT_VAL.get(fam))
        if px is None or cv is None:
            raise ConfigError(f"{name}: OKX tiers are in contracts; give --price" + ("" if cv else " and --ct-val"))
        scale = Fraction(str(cv)) * Fraction(str(px))
        br = brackets_from_params(p)
        if br[-1].cap is None:
            raise ConfigError(f"{name}: the last tier has no cap; OKX tiers need maxSz on every tier")
        prev = 0
        for k, b in enumerate(br, start=1):
            hi = floor_frac(b.cap / scale)  # type: ignore[operator]
            if hi <= prev:
                raise ConfigError(f"{name}: tier {k} cap {float(b.cap):,.0f} is less than one contract above the "  # type: ignore[arg-type]
                                  f"previous tier at price {px} and ctVal {cv}")
            rows.append({"instFamily": fam, "uly": fam, "instId": "", "tier": str(k),
                         "minSz": "0" if k == 1 else str(prev + 1), "maxSz": str(hi), "imr": fmt(b.im_rate),
                         "mmr": fmt(b.mm_rate), "maxLever": fmt(Fraction(floor_frac(1 / b.im_rate))),
                         "optMgnFactor": "0", "quoteMaxLoan": "", "baseMaxLoan": ""})
            prev = hi
    return {"code": "0", "msg": "", "data": rows}
