"""Deribit standard-margin futures parameters: a per-size linear rule in coin.

Deribit publishes the rule as text, not through an API
(https://support.deribit.com/hc/en-us/articles/25944826427293-11-January-2022): for BTC futures
IM = 2% + 0.005% per BTC of position, MM = 1% + 0.005% per BTC; for ETH 2% / 1% +
0.0004% per ETH. The file format margincal reads and writes states exactly that::

    {"venue": "deribit", "effective": "2022-01-11",
     "futures": [{"currency": "BTC", "size_unit": "BTC",
                  "initial_margin": {"base": "0.02", "per_unit": "0.00005"},
                  "maintenance_margin": {"base": "0.01", "per_unit": "0.00005"}}]}

:class:`DeribitArithmetic` computes in coin with fractions: ``rate(size) =
min(base + per_unit * |size|, 1)``, ``margin = |size| * rate`` (Deribit's worked
example: 350 BTC -> 2% + 350 * 0.005% = 3.75%, IM 13.125 BTC).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from margincal.errors import ConfigError
from margincal.instruments import underlying_of
from margincal.margin.params import InstrumentParams, ParameterSet
from margincal.margin.venues._common import Ctx, base_rates, ceil_frac, fmt, frac, get, rate

VENUE = "deribit"


@dataclass(frozen=True)
class DeribitArithmetic:
    im_base: Fraction
    im_per_unit: Fraction
    mm_base: Fraction
    mm_per_unit: Fraction

    def im_rate(self, size: Fraction | int | str) -> Fraction:
        return min(self.im_base + self.im_per_unit * abs(Fraction(size)), Fraction(1))

    def mm_rate(self, size: Fraction | int | str) -> Fraction:
        return min(self.mm_base + self.mm_per_unit * abs(Fraction(size)), Fraction(1))

    def initial_margin(self, size: Fraction | int | str) -> Fraction:
        """IM in coin of a position of ``size`` coins."""
        return abs(Fraction(size)) * self.im_rate(size)

    def maintenance_margin(self, size: Fraction | int | str) -> Fraction:
        return abs(Fraction(size)) * self.mm_rate(size)


def _pair(rec: Any, ctx: Ctx, name: str) -> tuple[Fraction, Fraction]:
    r = get(rec, ctx, name)
    c = ctx.at(name)
    base = frac(get(r, c, "base"), c, "base", low=Fraction(0), high=Fraction(1), low_open=True)
    per = frac(get(r, c, "per_unit"), c, "per_unit", low=Fraction(0))
    return base, per


def parse(doc: Any, ctx: Ctx, **_: Any) -> dict[str, InstrumentParams]:
    rows = get(doc, ctx, "futures") if isinstance(doc, dict) else doc
    if not isinstance(rows, list) or not rows:
        raise ctx.error("futures", rows, "it must be a non-empty list of currencies")
    out: dict[str, InstrumentParams] = {}
    for i, r in enumerate(rows, start=1):
        cur = str(get(r, ctx.at(f"futures[{i}]"), "currency")).upper()
        c = ctx.at(cur)
        ib, ip = _pair(r, c, "initial_margin")
        mb, mp = _pair(r, c, "maintenance_margin")
        if mb > ib or mp > ip:
            raise c.error("maintenance_margin", f"{fmt(mb)} + {fmt(mp)}/unit",
                          f"it must not exceed initial_margin {fmt(ib)} + {fmt(ip)}/unit")
        name = f"{cur}-FUTURE"
        details = {"venue": VENUE, "rule": "linear_size", "currency": cur, "size_unit": r.get("size_unit", cur),
                   "im_base": float(ib), "im_per_unit": float(ip), "mm_base": float(mb), "mm_per_unit": float(mp),
                   "deribit": {"im_base": fmt(ib), "im_per_unit": fmt(ip), "mm_base": fmt(mb),
                               "mm_per_unit": fmt(mp)},
                   "effective": doc.get("effective") if isinstance(doc, dict) else None}
        out[name] = InstrumentParams(name, float(ib), float(mb), details)
    return out


def arithmetic(p: InstrumentParams) -> DeribitArithmetic:
    d = p.details.get("deribit") or {k: repr(p.details[k]) for k in ("im_base", "im_per_unit", "mm_base",
                                                                     "mm_per_unit")}
    return DeribitArithmetic(*(Fraction(d[k]) for k in ("im_base", "im_per_unit", "mm_base", "mm_per_unit")))


def _fit_per_unit(p: InstrumentParams, key: str, base: Fraction, price: float) -> Fraction:
    """Smallest per-coin slope (in 1e-8 steps) whose linear rate covers our average rate at every tier cap."""
    tiers = p.details.get("tiers") or []
    if len(tiers) < 2:
        return Fraction(0)
    from margincal.margin.tiers import TierSchedule

    sched = TierSchedule.from_details(tiers)
    need = Fraction(0)
    for cap in [t["upper"] for t in tiers if t.get("upper")]:
        avg = rate(float(sched.initial_rate(float(cap)) if key == "im" else sched.maintenance_rate(float(cap))))
        size = Fraction(str(cap)) / Fraction(str(price))
        need = max(need, (avg - base) / size)
    return Fraction(ceil_frac(need * 10**8), 10**8)


def render(pset: ParameterSet, *, price: float | None = None, instruments: Sequence[str] | None = None,
           **_: Any) -> dict[str, Any]:
    rows = []
    for name in instruments or pset.instruments():
        p = pset[name]
        if p.details.get("rule") == "linear_size":
            a = arithmetic(p)
            ib, ip, mb, mp = a.im_base, a.im_per_unit, a.mm_base, a.mm_per_unit
            cur = p.details.get("currency", underlying_of(name, default=name.split("-")[0]))
        else:
            px = price if price is not None else p.details.get("reference_price")
            if len(p.details.get("tiers") or []) > 1 and px is None:
                raise ConfigError(f"{name}: fitting Deribit's per-coin slope to our tiers needs --price")
            ib, mb = (Fraction(ceil_frac(x * 10**8), 10**8) for x in base_rates(p))  # rounded up to 1e-8
            ip = _fit_per_unit(p, "im", ib, float(px)) if px is not None else Fraction(0)
            mp = min(ip, _fit_per_unit(p, "mm", mb, float(px))) if px is not None else Fraction(0)
            cur = underlying_of(name, default=name.split("-")[0])
        rows.append({"currency": cur, "size_unit": cur,
                     "initial_margin": {"base": fmt(ib), "per_unit": fmt(ip)},
                     "maintenance_margin": {"base": fmt(mb), "per_unit": fmt(mp)}})
    return {"venue": VENUE, "futures": rows}
