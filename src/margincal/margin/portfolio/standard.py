"""Standard (non-portfolio) option margin: Deribit standard margin and Derive's standard manager (SRM).

Every account that is not on portfolio margin is margined position by
position with these venue rules; :func:`standard_margin` applies them to a
``{instrument: contracts}`` account so it can be compared with the
risk-matrix portfolio margin of the same positions
(:func:`compare_margin_modes`).

Deribit (inverse options, amounts in coin per 1-coin option; ``F`` the
underlying mark, ``c`` the option mark in coin, OTM amount ``max(K - F, 0)``
for calls and ``max(F - K, 0)`` for puts)::

    short call  IM = max(0.15 - OTM/F, 0.10) + c          MM = 0.075 + c
    short put   IM = max(max(0.15 - OTM/F, 0.10) + c, MM)  MM = max(0.075, 0.075 c) + c
    long        no margin (the premium is paid)

Derive SRM (``derivexyz/v2-core`` ``StandardManager._getIsolatedMarginFor{Call,Put}``;
USD, per short option of mark value ``v``, spot ``S``; BTC/ETH parameters
``maxSpotReq`` 0.15, ``minSpotReq`` 0.13, ``mmCallSpotReq`` = ``mmPutSpotReq``
= ``MMPutMtMReq`` 0.09, ``mmOffsetScale`` 1.05)::

    m          = max(maxSpotReq - OTM/S, minSpotReq)
    call  MM   = v + mmCallSpotReq S                    IM = v + m S
    put   MM   = v + max(mmPutSpotReq S, MMPutMtMReq v)  IM = max(v + m S, mmOffsetScale MM)

Derive also caps an expiry's requirement at its maximum settlement loss
(the ``_calcMaxLoss`` branch); this module applies the isolated rule only,
which is the larger of the two for naked shorts (documented gap).
Sources and worked numbers: tests/reference/venue_liquidation_examples.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from margincal.errors import ConfigError, DataError
from margincal.margin.portfolio.instruments import InstrumentSpec, MarketState, parse_instrument
from margincal.pricing.black76 import black76_price


@dataclass(frozen=True)
class DeribitStandard:
    """Deribit standard-margin constants (inverse options)."""

    im_max: float = 0.15
    im_min: float = 0.10
    mm_call: float = 0.075
    mm_put: float = 0.075
    futures_im: float = 0.02  # assumed for delta-one positions (Deribit's futures schedule is size-dependent)
    futures_mm: float = 0.01  # assumed, see futures_im


@dataclass(frozen=True)
class DeriveSRM:
    """Derive standard-manager constants (BTC/ETH), from the v2-core deploy config and docs.derive.xyz."""

    max_spot_req: float = 0.15
    min_spot_req: float = 0.13
    mm_call_spot_req: float = 0.09
    mm_put_spot_req: float = 0.09
    mm_put_mtm_req: float = 0.09
    mm_offset_scale: float = 1.05
    perp_im: float = 0.066  # PERP_REQ_IM, BTC/ETH (docs.derive.xyz standard margin parameters)
    perp_mm: float = 0.05  # PERP_REQ_MM


def deribit_option_margin(is_call: Any, strike: Any, underlying: Any, mark_coin: Any, quantity: Any,
                          p: DeribitStandard | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(IM, MM) in coin for ``quantity`` Deribit inverse options (longs: 0). Arrays broadcast."""
    p = p or DeribitStandard()
    call = np.asarray(is_call, dtype=bool)
    K, F, c, q = (np.asarray(a, dtype=float) for a in (strike, underlying, mark_coin, quantity))
    otm = np.where(call, np.maximum(K - F, 0.0), np.maximum(F - K, 0.0))
    base = np.maximum(p.im_max - otm / F, p.im_min)
    mm = np.where(call, p.mm_call + c, np.maximum(p.mm_put, p.mm_put * c) + c)
    im = np.where(call, base + c, np.maximum(base + c, mm))
    short = np.maximum(-q, 0.0)
    return im * short, mm * short


def derive_option_margin(is_call: Any, strike: Any, spot: Any, mark_usd: Any, quantity: Any,
                         p: DeriveSRM | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(IM, MM) in USD for ``quantity`` options under Derive's isolated SRM rule (longs: 0)."""
    p = p or DeriveSRM()
    call = np.asarray(is_call, dtype=bool)
    K, S, v, q = (np.asarray(a, dtype=float) for a in (strike, spot, mark_usd, quantity))
    otm = np.where(call, np.maximum(K - S, 0.0), np.maximum(S - K, 0.0)) / S
    m = np.maximum(p.max_spot_req - otm, p.min_spot_req)
    mm = np.where(call, v + p.mm_call_spot_req * S, v + np.maximum(p.mm_put_spot_req * S, p.mm_put_mtm_req * v))
    im = np.where(call, v + m * S, np.maximum(v + m * S, p.mm_offset_scale * mm))
    short = np.maximum(-q, 0.0)
    return im * short, mm * short


@dataclass(frozen=True)
class StandardMarginResult:
    """Standard margin of one account, USD, with the per-instrument breakdown."""

    im: float
    mm: float
    by_instrument: dict[str, dict[str, float]]
    venue: str

    def as_dict(self) -> dict[str, Any]:
        return {"im": self.im, "mm": self.mm, "venue": self.venue, "by_instrument": self.by_instrument}


def standard_margin(positions: Mapping[str, float], market: MarketState, *, venue: str = "deribit",
                    specs: Mapping[str, InstrumentSpec] | None = None,
                    params: DeribitStandard | DeriveSRM | None = None) -> StandardMarginResult:
    """Position-by-position margin of ``{instrument: contracts}`` under ``venue`` rules (USD).

    Options are marked with Black-76 at the market's vol and forward.
    Delta-one positions pay a flat fraction of notional (``futures_im`` /
    ``futures_mm`` for Deribit, ``perp_im`` / ``perp_mm`` for Derive).
    """
    if venue not in ("deribit", "derive"):
        raise ConfigError(f"venue is {venue!r}; standard margin is implemented for 'deribit' and 'derive'")
    sp = dict(specs or {})
    out: dict[str, dict[str, float]] = {}
    tot_im = tot_mm = 0.0
    for name, q in positions.items():
        s = sp.get(name) or parse_instrument(name)
        if s.is_base:
            raise DataError(f"{name} is base-asset collateral (a spot holding); standard margin is position by "
                            "position for derivatives: give the holding as collateral instead")
        F = market.forward_of(s)
        S = market.spot_of(s.underlying)
        if s.is_option:
            assert s.strike is not None  # InstrumentSpec.__post_init__: an option has a strike
            T = s.years_to_expiry(market.valuation_time)
            v = float(black76_price(F, s.strike, max(T, 0.0), market.vol_of(s), s.option_type == "C",
                                    rate=market.rate))
            if venue == "deribit":
                im_c, mm_c = deribit_option_margin(s.option_type == "C", s.strike, F, v / F, q * s.contract_size,
                                                   params if isinstance(params, DeribitStandard) else None)
                im, mm = float(im_c) * F, float(mm_c) * F
            else:
                im_u, mm_u = derive_option_margin(s.option_type == "C", s.strike, S, v, q * s.contract_size,
                                                  params if isinstance(params, DeriveSRM) else None)
                im, mm = float(im_u), float(mm_u)
        else:
            notional = abs(q) * (s.contract_size if s.inverse else s.contract_size * F)
            if venue == "deribit":
                dp = params if isinstance(params, DeribitStandard) else DeribitStandard()
                im, mm = dp.futures_im * notional, dp.futures_mm * notional
            else:
                rp = params if isinstance(params, DeriveSRM) else DeriveSRM()
                im, mm = rp.perp_im * notional, rp.perp_mm * notional
        out[name] = {"quantity": float(q), "im": im, "mm": mm}
        tot_im += im
        tot_mm += mm
    return StandardMarginResult(tot_im, tot_mm, out, venue)


def compare_margin_modes(positions: Mapping[str, float], market: MarketState, *, venue: str = "deribit",
                         specs: Mapping[str, InstrumentSpec] | None = None) -> dict[str, Any]:
    """Standard vs risk-matrix portfolio margin of the same account (USD), venue presets on both sides."""
    from margincal.margin.portfolio.engine import portfolio_margin
    from margincal.margin.portfolio.scenarios import deribit_like, derive_like, scenario_pnl_matrix

    sp = dict(specs or {})
    names = list(positions)
    spec_list = [sp.get(n) or parse_instrument(n) for n in names]
    cfg = deribit_like() if venue == "deribit" else derive_like()
    pnl = scenario_pnl_matrix(spec_list, market, cfg)
    pm = portfolio_margin(dict(positions), pnl)
    std = standard_margin(positions, market, venue=venue, specs={s.name: s for s in spec_list})
    return {"venue": venue, "standard_im": std.im, "standard_mm": std.mm, "portfolio_im": float(pm.im[0]),
            "portfolio_mm": float(pm.mm[0]), "driving_scenario": str(pm.driving_label[0]),
            "standard": std.as_dict()}


__all__ = [
    "DeribitStandard",
    "DeriveSRM",
    "StandardMarginResult",
    "compare_margin_modes",
    "deribit_option_margin",
    "derive_option_margin",
    "standard_margin",
]
