"""Collateral haircuts calibrated with the same tail models as margin.

The haircut of a collateral currency ``c`` held in amount ``A_c`` (USD value)
is the loss the venue can suffer selling it during the liquidation horizon::

    h_c = ES_level(collateral, horizon)                      market risk (risk.make_model(...).fit(r).forecast)
        + half_spread + Y sigma_daily sqrt(A_c / ADV_c)     liquidity cost of selling A_c (square-root law,
                                                          margincal.margin.liquidity.sqrt_impact_cost, Y = impact)
    h_c <- h_c + (1 - h_c) * ww * max(rho_c, 0)             wrong-way: rho_c = corr(collateral, account P&L)
    h_c <- max(h_c, own_token_haircut)                      the venue's own token (FTT, BNB on Binance)
    h_c <- max(h_c, stress floor)                           e.g. a stablecoin's depeg scenario loss
    h_c <- min(h_c, 1)

and the credited value of a currency is capped at ``concentration_limit``
times the account's total haircut collateral (amounts above the cap get no
credit). ES is the long-side ES of the model, a fraction of value (losses
positive), exactly as margin rates are calibrated.

What is assumed and why (docs/accounts.md): the multiplicative wrong-way
form (``ww`` = 1 by default: perfectly correlated collateral loses its
remaining value in proportion to rho), a 100% haircut for a venue's own
token (FTX accepted FTT; its value fell with the venue), and the 50%
concentration cap. No venue publishes these rules in a form we could check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from margincal.errors import ConfigError, DataError
from margincal.margin.liquidity import SQRT_IMPACT_Y, sqrt_impact_cost
from margincal.risk import make_model

STABLECOINS = ("USD", "USDT", "USDC", "USDE", "DAI", "FDUSD")


@dataclass(frozen=True)
class HaircutPolicy:
    """Parameters of :func:`collateral_haircuts` (module doc)."""

    level: float = 0.99
    horizon_hours: float = 48.0
    model: str = "fhs"
    model_params: Mapping[str, Any] = field(default_factory=dict)
    half_spread: float = 0.0005
    impact: float = SQRT_IMPACT_Y
    wrong_way: float = 1.0
    own_tokens: tuple[str, ...] = ()
    own_token_haircut: float = 1.0
    concentration_limit: float = 0.5
    stress_floors: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.5 < self.level < 1:
            raise ConfigError(f"level is {self.level}; it must be in (0.5, 1)")
        if not (self.horizon_hours > 0 and math.isfinite(self.horizon_hours)):
            raise ConfigError(f"horizon_hours is {self.horizon_hours}; it must be > 0")
        for f in ("half_spread", "impact", "wrong_way", "own_token_haircut"):
            v = getattr(self, f)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{f} is {v}; it must be finite and >= 0")
        if not 0 < self.concentration_limit <= 1:
            raise ConfigError(f"concentration_limit is {self.concentration_limit}; it must be in (0, 1]")
        object.__setattr__(self, "own_tokens", tuple(t.upper() for t in self.own_tokens))


@dataclass(frozen=True)
class Haircut:
    """One currency's haircut and its parts (fractions of value)."""

    currency: str
    haircut: float
    market_es: float
    liquidity: float
    wrong_way_add: float
    correlation: float | None
    floor: str | None
    amount_usd: float
    credited_usd: float
    model: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def market_es(returns: pd.Series | np.ndarray, policy: HaircutPolicy) -> tuple[float, str]:
    """Long-side ES of one unit of the collateral over the liquidation horizon (the margin tail model)."""
    m = make_model(policy.model, side="long", **dict(policy.model_params)).fit(returns)
    fc = m.forecast(horizon=policy.horizon_hours, level=policy.level)
    return float(fc.es), fc.model


def collateral_haircuts(
    balances: Mapping[str, float],
    prices: Mapping[str, float],
    returns: Mapping[str, pd.Series],
    *,
    adv_usd: Mapping[str, float] | None = None,
    exposure_pnl: pd.Series | None = None,
    policy: HaircutPolicy | None = None,
) -> dict[str, Haircut]:
    """Haircut of every collateral currency of one account (module doc).

    ``returns[c]``: log returns of currency ``c`` against USD (bars with a
    DatetimeIndex, as the margin models take). A stablecoin without returns
    gets 0 market risk plus its ``stress_floors`` entry (e.g. the depeg
    scenario's loss). ``exposure_pnl``: the account's P&L series (same
    index) for the wrong-way correlation; ``None`` skips it.
    """
    pol = policy or HaircutPolicy()
    adv = {k.upper(): float(v) for k, v in (adv_usd or {}).items()}
    floors = {k.upper(): float(v) for k, v in pol.stress_floors.items()}
    rets = {k.upper(): v for k, v in returns.items()}
    out: dict[str, Haircut] = {}
    for ccy, amount in balances.items():
        c = ccy.upper()
        px = float(prices.get(c, 1.0 if c in STABLECOINS else math.nan))
        if not math.isfinite(px):
            raise DataError(f"no USD price for collateral {c}: add prices[{c!r}]")
        value = float(amount) * px
        if c in rets:
            es, model = market_es(rets[c], pol)
        elif c in STABLECOINS:
            es, model = 0.0, "stablecoin (stress floor only)"
        else:
            raise DataError(f"no return history for collateral {c}: give returns[{c!r}] (log returns)")
        liq = 0.0
        if value > 0 and c in adv:
            sd = _daily_sigma(rets[c]) if c in rets else 0.0
            liq = pol.half_spread + float(sqrt_impact_cost(value, adv[c], sd, pol.impact))
        elif value > 0 and c not in STABLECOINS:
            liq = pol.half_spread
        h = es + liq
        rho = None
        ww = 0.0
        if exposure_pnl is not None and c in rets:
            joined = pd.concat([pd.Series(rets[c]).rename("c"), pd.Series(exposure_pnl).rename("p")],
                               axis=1, join="inner").dropna()
            if len(joined) >= 30:
                rho = float(np.corrcoef(joined["c"], joined["p"])[0, 1])
                ww = (1.0 - min(h, 1.0)) * pol.wrong_way * max(rho, 0.0)
        h += ww
        floor = None
        if c in pol.own_tokens and pol.own_token_haircut > h:
            h, floor = pol.own_token_haircut, "venue's own token"
        if c in floors and floors[c] > h:
            h, floor = floors[c], "stress scenario"
        h = min(max(h, 0.0), 1.0)
        out[c] = Haircut(c, h, es, liq, ww, rho, floor, value, value * (1.0 - h) if value > 0 else value, model)
    return _apply_concentration(out, pol.concentration_limit)


def _daily_sigma(r: pd.Series | np.ndarray) -> float:
    """Daily volatility of a log-return series (bar spacing from its DatetimeIndex, else daily bars)."""
    x = np.asarray(r, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return 0.0
    bar_h = 24.0
    if isinstance(r, pd.Series) and isinstance(r.index, pd.DatetimeIndex) and len(r) > 1:
        bar_h = float(np.median((r.index[1:] - r.index[:-1]).total_seconds().to_numpy())) / 3600.0
    return float(np.std(x, ddof=1)) * math.sqrt(24.0 / bar_h)


def _apply_concentration(hc: dict[str, Haircut], limit: float) -> dict[str, Haircut]:
    """Cap each currency's credited value at ``limit`` x the total credited value (one pass, documented)."""
    total = sum(max(h.credited_usd, 0.0) for h in hc.values())
    if total <= 0 or limit >= 1:
        return hc
    out = {}
    cap = limit * total
    for c, h in hc.items():
        if h.credited_usd > cap and len(hc) > 1:
            out[c] = Haircut(h.currency, 1.0 - cap / h.amount_usd, h.market_es, h.liquidity, h.wrong_way_add,
                             h.correlation, (h.floor + "; " if h.floor else "") + f"concentration cap {limit:.0%}",
                             h.amount_usd, cap, h.model)
        else:
            out[c] = h
    return out


def haircut_fractions(hc: Mapping[str, Haircut]) -> dict[str, float]:
    """``{currency: haircut}`` for :class:`margincal.margin.account.Account`."""
    return {c: h.haircut for c, h in hc.items()}


__all__ = ["STABLECOINS", "Haircut", "HaircutPolicy", "collateral_haircuts", "haircut_fractions", "market_es"]
