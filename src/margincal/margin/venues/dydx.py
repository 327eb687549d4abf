"""dYdX v4 liquidity tiers and perpetual parameters (x/perpetuals state, integers throughout).

Accepted shapes: the chain's REST answers (``/dydxprotocol/perpetuals/liquidity_tiers``
-> ``{"liquidity_tiers": [...]}``, ``/dydxprotocol/perpetuals/perpetual`` ->
``{"perpetual": [{"params": {...}}]}``), a genesis file
(``app_state.perpetuals``) or one object with both lists. Keys may be
snake_case (chain) or camelCase (indexer/clients)::

    {"liquidity_tiers": [{"id": 1, "name": "Mid-Cap", "initial_margin_ppm": 50000,
       "maintenance_fraction_ppm": 600000, "impact_notional": 5000000000,
       "open_interest_lower_cap": 40000000000000, "open_interest_upper_cap": 100000000000000}],
     "perpetuals": [{"params": {"id": 0, "ticker": "BTC-USD", "market_id": 0, "atomic_resolution": -10,
       "default_funding_ppm": 0, "liquidity_tier": 0, "market_type": "PERPETUAL_MARKET_TYPE_CROSS"}}]}

Units: ppm (1e6 = 100%); OI caps and impact notional in quote quantums (USDC,
1 USDC = 10^6 quantums; quote atomic resolution -6).

:class:`DydxArithmetic` is the protocol's integer rule (dydxprotocol/v4-chain
protocol/x/perpetuals/types/liquidity_tier.go and x/perpetuals/lib/lib.go, read
2026; see tests/reference/dydx_v4_margin_vectors.md):

* notional in quote quantums = ``trunc(base_quantums * price * 10^(exponent + atomic_resolution + 6))``;
* adjusted IMF ppm = base ppm when OI <= lower cap (or upper cap 0), 1e6 when OI
  >= upper cap, else ``base + floor((1e6 - base) * (OI - lower) / (upper - lower))``
  (a whole ppm, rounded down);
* IM = ``ceil(notional * adjusted_ppm / 1e6)``; MM = ``ceil(ceil(notional *
  base_ppm / 1e6) * maintenance_fraction_ppm / 1e6)`` (from the BASE IMF: OI
  does not move the MM).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from margincal.errors import ConfigError, MargincalWarning
from margincal.margin.params import InstrumentParams, ParameterSet
from margincal.margin.venues._common import Ctx, base_rates, ceil_frac, get, integer

VENUE = "dydx"
ONE_MILLION = 1_000_000
QUOTE_ATOMIC_RESOLUTION = -6
#: atomic resolutions of the two large perpetuals in dYdX's genesis (protocol/testing/genesis.sh)
ATOMIC_RESOLUTION = {"BTC-USD": -10, "ETH-USD": -9}


def _mul_ppm_ceil(x: int, ppm: int) -> int:
    return -((-x * ppm) // ONE_MILLION)


@dataclass(frozen=True)
class DydxArithmetic:
    """One liquidity tier (and optionally the perpetual's atomic resolution), in dYdX's integer arithmetic."""

    initial_margin_ppm: int
    maintenance_fraction_ppm: int
    open_interest_lower_cap: int = 0
    open_interest_upper_cap: int = 0
    atomic_resolution: int | None = None

    def maintenance_margin_ppm(self) -> int:
        return self.initial_margin_ppm * self.maintenance_fraction_ppm // ONE_MILLION

    def adjusted_initial_margin_ppm(self, oi_quote_quantums: int) -> int:
        lo, hi, base = self.open_interest_lower_cap, self.open_interest_upper_cap, self.initial_margin_ppm
        if hi == 0 or oi_quote_quantums <= lo:
            return base
        if oi_quote_quantums >= hi:
            return ONE_MILLION
        return base + (ONE_MILLION - base) * (oi_quote_quantums - lo) // (hi - lo)

    def initial_margin_quote_quantums(self, quote_quantums: int, oi_quote_quantums: int = 0) -> int:
        return _mul_ppm_ceil(abs(quote_quantums), self.adjusted_initial_margin_ppm(oi_quote_quantums))

    def maintenance_margin_quote_quantums(self, quote_quantums: int) -> int:
        base_imr = _mul_ppm_ceil(abs(quote_quantums), self.initial_margin_ppm)
        return _mul_ppm_ceil(base_imr, self.maintenance_fraction_ppm)

    @staticmethod
    def quote_quantums(base_quantums: int, atomic_resolution: int, price: int, exponent: int) -> int:
        """``trunc(base_quantums * price * 10^(exponent + atomic_resolution + 6))`` (rounded toward zero)."""
        e = exponent + atomic_resolution - QUOTE_ATOMIC_RESOLUTION
        num = base_quantums * price
        if e >= 0:
            return num * 10**e
        q = abs(num) // 10**-e
        return q if num >= 0 else -q

    def margin_requirements(self, base_quantums: int, price: int, exponent: int,
                            open_interest_base_quantums: int = 0) -> tuple[int, int]:
        """(IM, MM) in quote quantums of a position of ``base_quantums`` (dYdX's GetMarginRequirementsInQuoteQuantums)."""
        if self.atomic_resolution is None:
            raise ConfigError("margin_requirements needs the perpetual's atomic_resolution")
        qq = self.quote_quantums(abs(base_quantums), self.atomic_resolution, price, exponent)
        oi = self.quote_quantums(open_interest_base_quantums, self.atomic_resolution, price, exponent)
        return self.initial_margin_quote_quantums(qq, oi), self.maintenance_margin_quote_quantums(qq)

    def margin_usdc(self, notional: Fraction | float | str, open_interest: Fraction | float | str = 0
                    ) -> tuple[Fraction, Fraction]:
        """(IM, MM) in USDC of a notional and an OI given in USDC (each rounded down to whole quantums first)."""
        qq = int(abs(Fraction(str(notional))) * ONE_MILLION)
        oi = int(abs(Fraction(str(open_interest))) * ONE_MILLION)
        return (Fraction(self.initial_margin_quote_quantums(qq, oi), ONE_MILLION),
                Fraction(self.maintenance_margin_quote_quantums(qq), ONE_MILLION))


def _snake(d: Mapping[str, Any]) -> dict[str, Any]:
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): v for k, v in d.items()}


def _find(doc: Any, key: str) -> Any:
    if isinstance(doc, dict):
        for k in (key, re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)):
            if k in doc:
                return doc[k]
        for path in (("app_state", "perpetuals"), ("appState", "perpetuals"), ("perpetuals",)):
            d: Any = doc
            for p in path:
                d = d.get(p) if isinstance(d, dict) else None
            if isinstance(d, dict) and d is not doc:
                found = _find(d, key)
                if found is not None:
                    return found
    return None


def _tier(rec: Mapping[str, Any], ctx: Ctx) -> dict[str, Any]:
    r = _snake(rec)
    c = ctx.at(f"liquidity tier {r.get('id', '?')} ({r.get('name', '')})")
    t: dict[str, Any] = {"id": integer(get(r, c, "id", default=0), c, "id", low=0), "name": str(get(r, c, "name", default="")),
         "initial_margin_ppm": integer(get(r, c, "initial_margin_ppm"), c, "initial_margin_ppm", low=1,
                                       high=ONE_MILLION),
         "maintenance_fraction_ppm": integer(get(r, c, "maintenance_fraction_ppm"), c, "maintenance_fraction_ppm",
                                             low=1, high=ONE_MILLION),
         "impact_notional": integer(get(r, c, "impact_notional", default=0), c, "impact_notional", low=0),
         "open_interest_lower_cap": integer(get(r, c, "open_interest_lower_cap", default=0), c,
                                            "open_interest_lower_cap", low=0),
         "open_interest_upper_cap": integer(get(r, c, "open_interest_upper_cap", default=0), c,
                                            "open_interest_upper_cap", low=0)}
    if t["open_interest_lower_cap"] > t["open_interest_upper_cap"]:
        raise c.error("open_interest_lower_cap", t["open_interest_lower_cap"],
                      f"it must not exceed open_interest_upper_cap {t['open_interest_upper_cap']}")
    return t


def tier_params(instrument: str, t: Mapping[str, Any], perp: Mapping[str, Any] | None = None) -> InstrumentParams:
    a = DydxArithmetic(t["initial_margin_ppm"], t["maintenance_fraction_ppm"], t["open_interest_lower_cap"],
                       t["open_interest_upper_cap"])
    details = {"venue": VENUE, "rule": "oi_scaled", "base_imf": t["initial_margin_ppm"] / ONE_MILLION,
               "maintenance_fraction": t["maintenance_fraction_ppm"] / ONE_MILLION,
               "oi_lower_cap": t["open_interest_lower_cap"] / ONE_MILLION,
               "oi_upper_cap": t["open_interest_upper_cap"] / ONE_MILLION,
               "dydx": {"liquidity_tier": dict(t), **({"perpetual": dict(perp)} if perp else {})}}
    return InstrumentParams(instrument, t["initial_margin_ppm"] / ONE_MILLION,
                            a.maintenance_margin_ppm() / ONE_MILLION, details)


def parse(doc: Any, ctx: Ctx, **_: Any) -> dict[str, InstrumentParams]:
    tiers_raw = _find(doc, "liquidity_tiers")
    if not isinstance(tiers_raw, list) or not tiers_raw:
        raise ctx.error("liquidity_tiers", tiers_raw, "a dYdX file needs a non-empty liquidity_tiers list")
    tiers = {t["id"]: t for t in (_tier(r, ctx) for r in tiers_raw)}
    perps_raw = _find(doc, "perpetuals") or _find(doc, "perpetual") or []
    out: dict[str, InstrumentParams] = {}
    if isinstance(perps_raw, dict):
        perps_raw = [perps_raw]
    for i, pr in enumerate(perps_raw, start=1):
        c = ctx.at(f"perpetual {i}")
        p = _snake(get(pr, c, "params", default=pr))
        ticker = str(get(p, c, "ticker"))
        c = ctx.at(ticker)
        lt = integer(get(p, c, "liquidity_tier", default=0), c, "liquidity_tier", low=0)
        if lt not in tiers:
            raise c.error("liquidity_tier", lt, f"no such liquidity tier (ids {sorted(tiers)})")
        perp = {"id": integer(get(p, c, "id", default=i - 1), c, "id", low=0), "ticker": ticker,
                "market_id": integer(get(p, c, "market_id", default=0), c, "market_id", low=0),
                "atomic_resolution": integer(get(p, c, "atomic_resolution"), c, "atomic_resolution"),
                "default_funding_ppm": integer(get(p, c, "default_funding_ppm", default=0), c, "default_funding_ppm"),
                "liquidity_tier": lt, "market_type": p.get("market_type", "PERPETUAL_MARKET_TYPE_CROSS")}
        out[ticker] = tier_params(ticker, tiers[lt], perp)
    if not out:
        for t in tiers.values():
            name = "DYDX-" + (t["name"] or str(t["id"])).upper().replace("-", "_").replace(" ", "_")
            out[name] = tier_params(name, t)
    return out


def arithmetic(p: InstrumentParams) -> DydxArithmetic:
    d = p.details.get("dydx")
    if d:
        t = d["liquidity_tier"]
        return DydxArithmetic(t["initial_margin_ppm"], t["maintenance_fraction_ppm"], t["open_interest_lower_cap"],
                              t["open_interest_upper_cap"], (d.get("perpetual") or {}).get("atomic_resolution"))
    im, mm = base_rates(p)
    return DydxArithmetic(ceil_frac(im * ONE_MILLION), min(ONE_MILLION, ceil_frac(mm / im * ONE_MILLION)),
                          int(round(float(p.details.get("oi_lower_cap", 0.0)) * ONE_MILLION)),
                          int(round(float(p.details.get("oi_upper_cap", 0.0)) * ONE_MILLION)))


def render(pset: ParameterSet, *, instruments: Sequence[str] | None = None, **_: Any) -> dict[str, Any]:
    tiers, perps = [], []
    for i, name in enumerate(instruments or pset.instruments()):
        p = pset[name]
        if len(p.details.get("tiers") or []) > 1 and "dydx" not in p.details:
            warnings.warn(f"{name}: dYdX has no size brackets; the instrument's base IM/MM rates are exported, "
                          "its brackets are not", MargincalWarning, stacklevel=2)
        a = arithmetic(p)
        d = p.details.get("dydx") or {}
        lt = d.get("liquidity_tier") or {}
        impact = lt.get("impact_notional") or ceil_frac(Fraction(500 * ONE_MILLION) * ONE_MILLION
                                                        / a.initial_margin_ppm)
        tiers.append({"id": lt.get("id", i), "name": lt.get("name") or name,
                      "initial_margin_ppm": a.initial_margin_ppm, "maintenance_fraction_ppm": a.maintenance_fraction_ppm,
                      "impact_notional": str(impact), "open_interest_lower_cap": str(a.open_interest_lower_cap),
                      "open_interest_upper_cap": str(a.open_interest_upper_cap)})
        perp = d.get("perpetual")
        if perp is None and not name.startswith("DYDX-"):
            ticker = name if "-" in name else name.removesuffix("USDT").removesuffix("USD") + "-USD"
            if ticker in ATOMIC_RESOLUTION:
                perp = {"id": i, "ticker": ticker, "market_id": i, "atomic_resolution": ATOMIC_RESOLUTION[ticker],
                        "default_funding_ppm": 0, "market_type": "PERPETUAL_MARKET_TYPE_CROSS"}
        if perp is not None:
            perps.append({"params": {**perp, "liquidity_tier": tiers[-1]["id"]}})
    # ids must be unique: renumber collisions
    seen: set[int] = set()
    for k, t in enumerate(tiers):
        if t["id"] in seen:
            t["id"] = max(seen) + 1
            if k < len(perps):
                perps[k]["params"]["liquidity_tier"] = t["id"]
        seen.add(t["id"])
    out: dict[str, Any] = {"liquidity_tiers": tiers}
    if perps:
        out["perpetuals"] = perps
    return out
