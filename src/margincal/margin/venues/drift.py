"""Drift protocol-v2 perp market margin parameters (margin ratios and the IMF factor), and Drift's integer arithmetic.

Shape (fields of the PerpMarket account as the SDKs print it, camelCase or snake_case)::

    {"perpMarkets": [{"marketIndex": 1, "name": "BTC-PERP", "marginRatioInitial": 1000,
                      "marginRatioMaintenance": 500, "imfFactor": 0, "unrealizedPnlImfFactor": 0}]}

Precisions (programs/drift/src/math/constants.rs): MARGIN_PRECISION 1e4 (a
margin ratio of 1000 is 10%), SPOT_IMF_PRECISION 1e6 (imf_factor), SPOT_WEIGHT_PRECISION
1e4, BASE_PRECISION = AMM_RESERVE_PRECISION 1e9, PRICE_PRECISION = QUOTE_PRECISION 1e6.

Size premium (programs/drift/src/math/margin.rs, ``calculate_size_premium_liability_weight``), all integer::

    size_sqrt = isqrt(size * 10 + 1)                      # size in 1e9 -> 1e5
    premium   = (w - w // 5) + size_sqrt * imf // (100_000 * 1e6 // precision)
    weight    = max(w, premium)  if bounded  else premium  (imf 0 -> w)

Size discount of an asset weight (``calculate_size_discount_asset_weight``)::

    discounted = (1e6 + 1e6 // 10) * 1e4 // (1e6 + size_sqrt * imf // 100_000);  weight = min(w, discounted)

A perp's margin ratio is the size premium of ``margin_ratio_initial`` (or
maintenance; "fill" is their mean) at MARGIN_PRECISION; the requirement is
``|base| * oracle_price / 1e9 * ratio / 1e4`` in QUOTE_PRECISION. Python's
:func:`math.isqrt` is the exact integer square root (floor) the Rust ``nth_root(2)``
computes. The high-leverage-mode ratios are not modelled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from margincal.errors import ConfigError
from margincal.instruments import perpetual_name, underlying_of
from margincal.margin.params import InstrumentParams, ParameterSet
from margincal.margin.venues._common import Ctx, base_rates, ceil_frac, get, integer, rate
from margincal.margin.venues.dydx import _snake

VENUE = "drift"
MARGIN_PRECISION = 10_000
SPOT_IMF_PRECISION = 1_000_000
SPOT_WEIGHT_PRECISION = 10_000
BASE_PRECISION = 1_000_000_000
PRICE_PRECISION = 1_000_000
QUOTE_PRECISION = 1_000_000


def size_premium_liability_weight(size: int, imf_factor: int, liability_weight: int, precision: int,
                                  bounded: bool = True) -> int:
    if imf_factor == 0:
        return liability_weight
    size_sqrt = math.isqrt(size * 10 + 1)
    numerator = liability_weight - liability_weight // 5
    premium = numerator + size_sqrt * imf_factor // (100_000 * SPOT_IMF_PRECISION // precision)
    return max(liability_weight, premium) if bounded else premium


def size_discount_asset_weight(size: int, imf_factor: int, asset_weight: int) -> int:
    if imf_factor == 0:
        return asset_weight
    size_sqrt = math.isqrt(size * 10 + 1)
    imf_numerator = SPOT_IMF_PRECISION + SPOT_IMF_PRECISION // 10
    discounted = imf_numerator * SPOT_WEIGHT_PRECISION // (SPOT_IMF_PRECISION + size_sqrt * imf_factor // 100_000)
    return min(asset_weight, discounted)


def size_in_amm_precision(amount: int, decimals: int) -> int:
    """A token amount with ``decimals`` as AMM_RESERVE_PRECISION (1e9), as Drift's spot market does."""
    p = 10**decimals
    return amount // (p // BASE_PRECISION) if p > BASE_PRECISION else amount * BASE_PRECISION // p


@dataclass(frozen=True)
class DriftArithmetic:
    """A perp market's margin rule in Drift's integers."""

    margin_ratio_initial: int
    margin_ratio_maintenance: int
    imf_factor: int = 0

    def margin_ratio(self, base_asset_amount: int, kind: str = "initial") -> int:
        default = {"initial": self.margin_ratio_initial, "maintenance": self.margin_ratio_maintenance,
                   "fill": (self.margin_ratio_initial + self.margin_ratio_maintenance) // 2}.get(kind)
        if default is None:
            raise ConfigError(f"margin kind is {kind!r}; use initial, maintenance or fill")
        return max(default, size_premium_liability_weight(abs(base_asset_amount), self.imf_factor, default,
                                                          MARGIN_PRECISION))

    def margin_requirement(self, base_asset_amount: int, oracle_price: int, kind: str = "initial") -> int:
        """Requirement in QUOTE_PRECISION of ``base_asset_amount`` (1e9) at ``oracle_price`` (1e6)."""
        value = abs(base_asset_amount) * oracle_price // (BASE_PRECISION * PRICE_PRECISION // QUOTE_PRECISION)
        return value * self.margin_ratio(base_asset_amount, kind) // MARGIN_PRECISION

    def margin_usd(self, notional: Fraction | float | str, price: Fraction | float | str
                   ) -> tuple[Fraction, Fraction]:
        """(IM, MM) in USD of a notional at a price (size and price rounded down to Drift's precisions)."""
        px = int(Fraction(str(price)) * PRICE_PRECISION)
        base = int(abs(Fraction(str(notional))) / Fraction(str(price)) * BASE_PRECISION)
        return (Fraction(self.margin_requirement(base, px, "initial"), QUOTE_PRECISION),
                Fraction(self.margin_requirement(base, px, "maintenance"), QUOTE_PRECISION))


def market_params(name: str, m: dict[str, Any], extra: dict[str, Any] | None = None) -> InstrumentParams:
    details = {"venue": VENUE, "rule": "sqrt_size_premium", "drift": dict(m),
               "margin_ratio_initial": m["margin_ratio_initial"],
               "margin_ratio_maintenance": m["margin_ratio_maintenance"], "imf_factor": m["imf_factor"],
               **(extra or {})}
    return InstrumentParams(name, m["margin_ratio_initial"] / MARGIN_PRECISION,
                            m["margin_ratio_maintenance"] / MARGIN_PRECISION, details)


def parse(doc: Any, ctx: Ctx, **_: Any) -> dict[str, InstrumentParams]:
    rows = doc
    if isinstance(doc, dict):
        rows = doc.get("perpMarkets", doc.get("perp_markets", [doc]))
    if not isinstance(rows, list) or not rows:
        raise ctx.error("perpMarkets", rows, "it must be a non-empty list of perp markets")
    out: dict[str, InstrumentParams] = {}
    for i, r in enumerate(rows, start=1):
        s = _snake(r)
        c = ctx.at(f"perp market {s.get('market_index', i)}")
        name = get(s, c, "name", "symbol", default=f"PERP-{s.get('market_index', i)}")
        if isinstance(name, list):  # the on-chain name is 32 bytes
            name = bytes(name).decode("utf-8", "replace").strip("\x00 ")
        name = str(name).strip()
        c = ctx.at(name)
        m = {"market_index": integer(get(s, c, "market_index", default=i - 1), c, "marketIndex", low=0),
             "margin_ratio_initial": integer(get(s, c, "margin_ratio_initial"), c, "marginRatioInitial", low=1,
                                             high=MARGIN_PRECISION),
             "margin_ratio_maintenance": integer(get(s, c, "margin_ratio_maintenance"), c, "marginRatioMaintenance",
                                                 low=1, high=MARGIN_PRECISION),
             "imf_factor": integer(get(s, c, "imf_factor", default=0), c, "imfFactor", low=0,
                                   high=SPOT_IMF_PRECISION)}
        if m["margin_ratio_maintenance"] > m["margin_ratio_initial"]:
            raise c.error("marginRatioMaintenance", m["margin_ratio_maintenance"],
                          f"it must not exceed marginRatioInitial {m['margin_ratio_initial']}")
        for k in ("unrealized_pnl_imf_factor", "contract_tier", "high_leverage_margin_ratio_initial",
                  "high_leverage_margin_ratio_maintenance"):
            if k in s:
                m[k] = s[k]
        out[name] = market_params(name, m)
    return out


def fit_imf_factor(p: InstrumentParams, price: float, ratio_initial: int) -> int:
    """Smallest imf_factor whose size premium covers our average IM rate at every tier cap (0 without tiers)."""
    tiers = p.details.get("tiers") or []
    if len(tiers) < 2:
        return 0
    from margincal.margin.tiers import TierSchedule

    sched = TierSchedule.from_details(tiers)
    need = 0
    for cap in [t["upper"] for t in tiers if t.get("upper")]:
        avg = rate(float(sched.initial_rate(float(cap))))
        size = Fraction(str(cap)) / Fraction(str(price))
        if avg * MARGIN_PRECISION <= ratio_initial:
            continue  # the bounded premium never charges less than the base ratio
        gap = avg * MARGIN_PRECISION - Fraction(ratio_initial) * 4 / 5
        if gap > 0:  # premium ~ sqrt(size * 1e10) * imf / 1e7 in MARGIN_PRECISION units
            need = max(need, ceil_frac(gap * 10**7 / Fraction(math.isqrt(int(size * BASE_PRECISION) * 10 + 1))))
    return min(need, SPOT_IMF_PRECISION)


def render(pset: ParameterSet, *, price: float | None = None, instruments: Sequence[str] | None = None,
           **_: Any) -> dict[str, Any]:
    rows = []
    for i, name in enumerate(instruments or pset.instruments()):
        p = pset[name]
        d = p.details.get("drift")
        if d:
            rows.append({"marketIndex": d["market_index"], "name": name, "marginRatioInitial": d["margin_ratio_initial"],
                         "marginRatioMaintenance": d["margin_ratio_maintenance"], "imfFactor": d["imf_factor"]})
            continue
        im, mm = base_rates(p)
        ri = ceil_frac(im * MARGIN_PRECISION)
        rm = min(ri, ceil_frac(mm * MARGIN_PRECISION))
        px = price if price is not None else p.details.get("reference_price")
        if len(p.details.get("tiers") or []) > 1 and px is None:
            raise ConfigError(f"{name}: fitting Drift's IMF factor to our tiers needs the reference price (--price)")
        imf = fit_imf_factor(p, float(px), ri) if px is not None else 0
        perp = perpetual_name(underlying_of(name, default=name.removesuffix("USDT").removesuffix("USD")))
        rows.append({"marketIndex": i, "name": perp, "marginRatioInitial": ri, "marginRatioMaintenance": rm,
                     "imfFactor": imf})
    return {"perpMarkets": rows}


def arithmetic(p: InstrumentParams) -> DriftArithmetic:
    return DriftArithmetic(int(p.details["margin_ratio_initial"]), int(p.details["margin_ratio_maintenance"]),
                           int(p.details.get("imf_factor", 0)))
