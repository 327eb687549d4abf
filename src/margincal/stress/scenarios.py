"""Stress scenarios: frozen, named, documented dataclasses.

Every scenario turns a market state into one or more *legs*
(:class:`ShockLeg`: a joint move of spot, volatility and funding per
underlying) plus an optional close-out (liquidity) cost. A scenario with
several legs (``CorrelationShock``, a two-sided ``FundingSpike``) reports, for
each account, its worst leg: the direction that hurts that account most.

Sign conventions (as everywhere in margincal): spot moves are **log returns**
(``-0.20`` = price x exp(-0.20)); the losses :meth:`Scenario.apply` returns are
**positive numbers** (a gain is a negative loss); volatility shifts are in
annualised volatility units (``+0.30`` = +30 vol points); funding is the
accumulated funding rate over the scenario, positive = longs pay shorts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from margincal.errors import ConfigError

if TYPE_CHECKING:
    from margincal.stress.book import StressMarket

HOURS_PER_YEAR = 24.0 * 365.0


@dataclass(frozen=True)
class ShockLeg:
    """A joint move: log spot return, vol shift and accumulated funding per underlying.

    ``default_spot`` applies to underlyings absent from ``spot`` (None: 0).
    ``horizon_hours`` is the time that passes (options lose that much time value).
    """

    spot: Mapping[str, float] = field(default_factory=dict)
    vol: Mapping[str, float] = field(default_factory=dict)
    funding: Mapping[str, float] = field(default_factory=dict)
    default_spot: float = 0.0
    default_vol: float = 0.0
    horizon_hours: float = 0.0

    def spot_of(self, u: str) -> float:
        return float(self.spot.get(u, self.default_spot))

    def vol_of(self, u: str) -> float:
        return float(self.vol.get(u, self.default_vol))


@dataclass(frozen=True)
class LiquidityCost:
    """Close-out cost of a position of notional ``N``: ``|N| x (half_spread + impact x sqrt(|N| / ADV))``.

    The square-root law of market impact (Almgren et al. 2005; Toth et al. 2011)
    with ``impact`` the coefficient (about 1 on daily volume in equities; for a
    stress it is typically doubled). ``ADV`` is the average daily quote volume of
    the underlying (:class:`~margincal.stress.book.StressMarket.adv`); without one
    only the half spread applies.
    """

    half_spread: float = 0.0005
    impact: float = 1.0

    def __post_init__(self) -> None:
        if self.half_spread < 0 or self.impact < 0:
            raise ConfigError("LiquidityCost: half_spread and impact must be >= 0")


@dataclass(frozen=True)
class Scenario:
    """Base class. Subclasses define :meth:`legs` (and optionally :attr:`liquidity`)."""

    name: str
    description: str = ""

    @property
    def kind(self) -> str:
        return type(self).__name__

    def legs(self, market: StressMarket) -> list[ShockLeg]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def liquidity(self) -> LiquidityCost | None:
        return None

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "description": self.description}


@dataclass(frozen=True)
class SpotShock(Scenario):
    """Every underlying's spot moves by ``move`` (log return), or by ``per_underlying[u]`` where given."""

    move: float = -0.20
    per_underlying: Mapping[str, float] = field(default_factory=dict)

    def legs(self, market: StressMarket) -> list[ShockLeg]:
        return [ShockLeg(spot=dict(self.per_underlying), default_spot=self.move)]


@dataclass(frozen=True)
class VolShock(Scenario):
    """Implied volatility of every underlying shifts by ``shift`` (absolute) or scales by ``1 + shift`` (relative)."""

    shift: float = 0.30
    relative: bool = False

    def legs(self, market: StressMarket) -> list[ShockLeg]:
        if self.relative:
            return [ShockLeg(vol={u: v * self.shift for u, v in market.vol.items()})]
        return [ShockLeg(default_vol=self.shift)]


@dataclass(frozen=True)
class CorrelationShock(Scenario):
    """Correlation to one: every underlying moves ``sigmas`` of its own horizon vol in the SAME direction.

    Move of underlying ``u``: ``sign x sigmas x vol_u x sqrt(horizon_hours / 8760)``. Diversification
    between underlyings disappears; both directions are evaluated and each account gets the worse one.
    """

    sigmas: float = 3.0
    horizon_hours: float = 24.0

    def legs(self, market: StressMarket) -> list[ShockLeg]:
        scale = self.sigmas * math.sqrt(self.horizon_hours / HOURS_PER_YEAR)
        return [ShockLeg(spot={u: sgn * scale * v for u, v in market.vol.items()}) for sgn in (-1.0, 1.0)]


@dataclass(frozen=True)
class LiquidityShock(Scenario):
    """Close-out cost only: liquidating every position at once pays spread + square-root impact."""

    cost: LiquidityCost = field(default_factory=lambda: LiquidityCost(0.001, 2.0))

    def legs(self, market: StressMarket) -> list[ShockLeg]:
        return [ShockLeg()]

    @property
    def liquidity(self) -> LiquidityCost | None:
        return self.cost


@dataclass(frozen=True)
class FundingSpike(Scenario):
    """Perpetual funding of ``rate_per_8h`` for ``periods`` settlements (longs pay when positive).

    ``side="worst"`` evaluates +rate and -rate and charges each account the worse.
    Binance caps BTCUSDT funding at +/-0.3% per 8 h; the bundled history reaches both caps.
    """

    rate_per_8h: float = 0.003
    periods: int = 3
    side: str = "worst"

    def __post_init__(self) -> None:
        if self.side not in ("worst", "long_pays", "short_pays"):
            raise ConfigError(f"FundingSpike.side is {self.side!r}; use worst, long_pays or short_pays")

    def legs(self, market: StressMarket) -> list[ShockLeg]:
        total = self.rate_per_8h * self.periods
        signs = {"worst": (1.0, -1.0), "long_pays": (1.0,), "short_pays": (-1.0,)}[self.side]
        return [ShockLeg(funding={u: s * total for u in market.spot}, horizon_hours=8.0 * self.periods)
                for s in signs]


@dataclass(frozen=True)
class HistoricalScenario(Scenario):
    """A window cut from real data: each underlying moves by its log return over ``[start, end]``.

    ``spot``: realised close-to-close log returns; ``funding``: funding accrued in the window (perps);
    ``extremes``: the worst intra-window low and high versus the start close (log), for reference;
    ``proxied``: underlyings whose move is the driver's move times their beta (no data at that
    resolution); ``source``: files and resolution used.
    """

    start: str = ""
    end: str = ""
    horizon_hours: float = 0.0
    spot: Mapping[str, float] = field(default_factory=dict)
    funding: Mapping[str, float] = field(default_factory=dict)
    extremes: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    proxied: tuple[str, ...] = ()
    source: str = ""
    fallback: float | None = None

    def legs(self, market: StressMarket) -> list[ShockLeg]:
        default = self.fallback if self.fallback is not None else self.spot.get("BTC", 0.0)
        return [ShockLeg(spot=dict(self.spot), funding=dict(self.funding), default_spot=float(default),
                         horizon_hours=self.horizon_hours)]

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out.update({"start": self.start, "end": self.end, "horizon_hours": self.horizon_hours,
                    "btc_move": self.spot.get("BTC"), "eth_move": self.spot.get("ETH")})
        return out


@dataclass(frozen=True)
class CompositeScenario(Scenario):
    """Several scenarios at once: legs combine (every combination; moves add), liquidity costs add."""

    parts: tuple[Scenario, ...] = ()

    def legs(self, market: StressMarket) -> list[ShockLeg]:
        combos: list[ShockLeg] = [ShockLeg()]
        for p in self.parts:
            combos = [_add(a, b) for a in combos for b in p.legs(market)]
        return combos

    @property
    def liquidity(self) -> LiquidityCost | None:
        costs = [p.liquidity for p in self.parts if p.liquidity is not None]
        if not costs:
            return None
        return LiquidityCost(sum(c.half_spread for c in costs), sum(c.impact for c in costs))


def _add(a: ShockLeg, b: ShockLeg) -> ShockLeg:
    keys = set(a.spot) | set(b.spot)
    spot = {k: a.spot_of(k) + b.spot_of(k) for k in keys}
    vkeys = set(a.vol) | set(b.vol)
    vol = {k: a.vol_of(k) + b.vol_of(k) for k in vkeys}
    fkeys = set(a.funding) | set(b.funding)
    funding = {k: float(a.funding.get(k, 0.0)) + float(b.funding.get(k, 0.0)) for k in fkeys}
    return ShockLeg(spot, vol, funding, a.default_spot + b.default_spot, a.default_vol + b.default_vol,
                    a.horizon_hours + b.horizon_hours)


def hypothetical_scenarios() -> list[Scenario]:
    """The standard hypothetical set (documented in docs/stress_testing.md)."""
    return [
        SpotShock("spot-down-10", "all spot -10% (log)", move=math.log(0.90)),
        SpotShock("spot-down-30", "all spot -30% (log)", move=math.log(0.70)),
        SpotShock("spot-up-30", "all spot +30% (log)", move=math.log(1.30)),
        VolShock("vol-up-30pts", "implied vol +30 points, spot unchanged", shift=0.30),
        VolShock("vol-down-50pct", "implied vol halves", shift=-0.5, relative=True),
        CompositeScenario("crash-spot-30-vol-up-50", "spot -30% with implied vol +50 points",
                          parts=(SpotShock("s", move=math.log(0.70)), VolShock("v", shift=0.50))),
        CorrelationShock("correlation-to-one-3sd-1d", "all underlyings move 3 daily sigmas together (worst sign)",
                         sigmas=3.0, horizon_hours=24.0),
        LiquidityShock("liquidity-haircut", "close everything: 10 bp half spread + 2x square-root impact"),
        FundingSpike("funding-spike-0.3pct-x3", "funding at the +/-0.3%/8h cap for 24 h (worst side)"),
    ]


__all__ = [
    "CompositeScenario", "CorrelationShock", "FundingSpike", "HistoricalScenario", "LiquidityCost",
    "LiquidityShock", "Scenario", "ShockLeg", "SpotShock", "VolShock", "hypothetical_scenarios",
]

