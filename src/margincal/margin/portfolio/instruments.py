"""Instruments and market state for the portfolio-margin engines.

Conventions
-----------
* Quantities are signed numbers of contracts (long > 0, short < 0).
* ``contract_size`` is in coins of the underlying per contract, except for
  *inverse futures/perpetuals*, where it is the USD face value per contract
  (Deribit's BTC-PERP is 10 USD per contract).
* Every P&L is in the quote currency (USD). For inverse (coin-settled)
  instruments the coin P&L is converted at the scenario price: the holder of
  a coin-priced option worth ``c = V/F`` coins gains ``(c1 - c0) F1`` USD when
  the forward moves from ``F0`` to ``F1`` (``= V1 - V0 F1 / F0``).
* Times are tz-aware UTC; time to expiry is ACT/365 in years.
* Names are read by :mod:`margincal.instruments` (one vocabulary for every package):
  ``BTC-PERP`` (also ``BTC-PERPETUAL``, ``BTC/USDT:USDT``...), ``BTC-27DEC24``
  (future) and ``BTC-27DEC24-60000-C`` (option); dated contracts expire at
  08:00 UTC. Strikes may use ``d`` for the decimal point (``XRP-27DEC24-0d6-C``).
* A spot pair quoted in USD or a stablecoin (``BTC-USDC``, ``ETH/USDT``) is
  *base-asset collateral* (kind ``"base"``): a holding of the coin itself, in
  coins (``contract_size`` 1), never short, never inverse. Only a risk-matrix
  config with ``base_in_scenarios`` (Derive's PMRM, ``derive_like()``)
  revalues it in its scenarios; the other engines refuse it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from margincal.errors import ConfigError, DataError
from margincal.instruments import SETTLEMENT_HOUR_UTC, USD_LIKE
from margincal.instruments import parse as parse_name

KINDS = ("perpetual", "future", "option", "base")


def _utc(ts: Any, what: str) -> pd.Timestamp:
    try:
        t = pd.Timestamp(ts)
    except (ValueError, TypeError):
        raise ConfigError(f"{what} is {ts!r}; it must be a timestamp") from None
    if t is pd.NaT:
        raise ConfigError(f"{what} is NaT; it must be a timestamp")
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


@dataclass(frozen=True)
class InstrumentSpec:
    """Static description of one contract.

    ``offset_group`` (default: the underlying) names the group whose
    instruments net fully in the historical (ES) method. Kind ``"base"``:
    base-asset collateral (module doc), linear, no expiry.
    """

    name: str
    kind: str
    underlying: str
    strike: float | None = None
    expiry: pd.Timestamp | None = None
    option_type: str | None = None  # "C" or "P"
    inverse: bool = False
    contract_size: float = 1.0
    offset_group: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"{self.name}: kind is {self.kind!r}; it must be one of {', '.join(KINDS)}")
        if not self.underlying:
            raise ConfigError(f"{self.name}: underlying is empty")
        if not (self.contract_size > 0 and math.isfinite(self.contract_size)):
            raise ConfigError(f"{self.name}: contract_size is {self.contract_size}; it must be > 0")
        if self.kind in ("future", "option"):
            if self.expiry is None:
                raise ConfigError(f"{self.name}: a {self.kind} needs an expiry")
            object.__setattr__(self, "expiry", _utc(self.expiry, f"{self.name}: expiry"))
        elif self.expiry is not None:
            raise ConfigError(f"{self.name}: a {self.kind} has no expiry (got {self.expiry})")
        if self.kind == "base" and self.inverse:
            raise ConfigError(f"{self.name}: base-asset collateral is a coin holding; it cannot be inverse")
        if self.kind == "option":
            if self.strike is None or not (self.strike > 0 and math.isfinite(self.strike)):
                raise ConfigError(f"{self.name}: strike is {self.strike}; an option needs a strike > 0")
            ot = str(self.option_type or "").upper()[:1]
            if ot not in ("C", "P"):
                raise ConfigError(f"{self.name}: option_type is {self.option_type!r}; use 'C' or 'P'")
            object.__setattr__(self, "option_type", ot)
        elif self.strike is not None or self.option_type is not None:
            raise ConfigError(f"{self.name}: only options have a strike and an option_type")
        if self.offset_group is None:
            object.__setattr__(self, "offset_group", self.underlying)

    @property
    def is_option(self) -> bool:
        return self.kind == "option"

    @property
    def is_base(self) -> bool:
        """Base-asset collateral (a spot holding of the underlying; module doc)."""
        return self.kind == "base"

    def years_to_expiry(self, at: pd.Timestamp) -> float:
        """ACT/365 years from ``at`` to expiry (0 for perpetuals)."""
        if self.expiry is None:
            return 0.0
        return (self.expiry - at).total_seconds() / (365.0 * 86400.0)


def parse_instrument(
    name: str, *, inverse: bool | None = None, contract_size: float = 1.0, offset_group: str | None = None
) -> InstrumentSpec:
    """Build an :class:`InstrumentSpec` from a name in any form of :mod:`margincal.instruments`.

    ``inverse`` overrides what the name says (bare Deribit-style names are linear
    unless ``inverse=True``; ``BTC-USD-SWAP`` or ``BTC/USD:BTC`` are inverse). A spot
    pair quoted in USD or a stablecoin (``BTC-USDC``) is base-asset collateral, kind
    ``"base"`` (module doc); other spot pairs (``ETH-BTC``) and ``inverse=True`` on a
    spot pair are refused.
    """
    raw = str(name).strip()
    inst = parse_name(raw, inverse=inverse)
    if inst.kind == "spot":
        if inst.quote not in USD_LIKE:
            raise DataError(f"instrument {name!r} is a spot pair quoted in {inst.quote}; base-asset collateral "
                            f"must be quoted in USD or a stablecoin ({inst.base}-USDC)")
        if inverse:
            raise DataError(f"instrument {name!r} is base-asset collateral (a spot holding); it cannot be inverse")
        return InstrumentSpec(raw, "base", inst.base, contract_size=contract_size, offset_group=offset_group)
    return InstrumentSpec(raw, inst.kind, inst.base, strike=inst.strike, expiry=inst.expiry,
                          option_type=inst.option_type, inverse=inst.inverse, contract_size=contract_size,
                          offset_group=offset_group)


VolSurface = Callable[[str, float, float, float], float]
"""``surface(underlying, strike, years_to_expiry, forward) -> annualised vol``."""


@dataclass(frozen=True)
class MarketState:
    """Spot prices, volatilities and the valuation time.

    Volatility of an option is looked up in this order: ``vols[name]``, then
    ``vol_surface(underlying, strike, T, F)``, then ``flat_vol``. Forwards are
    ``forwards[name]`` when given, else ``spot * exp(rate * T)`` (``rate``
    defaults to 0, the usual crypto convention of pricing off the index).

    ``confidence`` (optional, each in [0, 1], default 1 = fully trusted): the
    oracle confidence of an underlying's spot / perpetual feeds
    (``confidence["BTC"]``) and of one expiry's forward, rate and vol feeds,
    keyed by that expiry's future name (``confidence["BTC-27SEP24"]``; any
    spelling :mod:`margincal.instruments` reads). An expiry's confidence is the
    minimum of its own and its underlying's. Only Derive's oracle-confidence
    contingency reads it (:mod:`.scenarios`).
    """

    spot: Mapping[str, float]
    valuation_time: pd.Timestamp
    vols: Mapping[str, float] = field(default_factory=dict)
    flat_vol: float | None = None
    vol_surface: VolSurface | None = None
    forwards: Mapping[str, float] = field(default_factory=dict)
    rate: float = 0.0
    confidence: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "valuation_time", _utc(self.valuation_time, "valuation_time"))
        for u, s in self.spot.items():
            if not (isinstance(s, (int, float)) and math.isfinite(s) and s > 0):
                raise ConfigError(f"spot[{u!r}] is {s!r}; spot prices must be finite and > 0")
        for n, v in self.vols.items():
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"vols[{n!r}] is {v}; volatilities must be finite and >= 0")
        if self.flat_vol is not None and not (math.isfinite(self.flat_vol) and self.flat_vol >= 0):
            raise ConfigError(f"flat_vol is {self.flat_vol}; it must be finite and >= 0")
        if not math.isfinite(self.rate):
            raise ConfigError(f"rate is {self.rate}; it must be finite")
        keys: dict[str, tuple[str, pd.Timestamp | None]] = {}
        for k, c in self.confidence.items():
            if not (isinstance(c, (int, float)) and 0.0 <= c <= 1.0):
                raise ConfigError(f"confidence[{k!r}] is {c!r}; a confidence must be in [0, 1]")
            if "-" not in str(k):
                keys[str(k)] = (str(k), None)
                continue
            inst = parse_name(str(k))
            if inst.kind != "future":
                raise ConfigError(f"confidence key {k!r} is a {inst.kind}; use an underlying (BTC) or an expiry "
                                  "named as its dated future (BTC-27SEP24)")
            keys[str(k)] = (inst.base, inst.expiry)
        object.__setattr__(self, "_confidence_keys", keys)

    def spot_of(self, underlying: str) -> float:
        try:
            return float(self.spot[underlying])
        except KeyError:
            raise DataError(f"no spot price for {underlying}: add it to MarketState.spot") from None

    def forward_of(self, spec: InstrumentSpec) -> float:
        if spec.name in self.forwards:
            f = float(self.forwards[spec.name])
            if not (math.isfinite(f) and f > 0):
                raise DataError(f"forwards[{spec.name!r}] is {f}; it must be finite and > 0")
            return f
        return self.spot_of(spec.underlying) * math.exp(self.rate * spec.years_to_expiry(self.valuation_time))

    def confidence_of(self, spec: InstrumentSpec) -> float:
        """Oracle confidence of ``spec``: its underlying's, and for dated contracts the minimum with its expiry's."""
        keys: dict[str, tuple[str, pd.Timestamp | None]] = self.__dict__["_confidence_keys"]
        c = 1.0
        for k, (und, expiry) in keys.items():
            if und == spec.underlying and (expiry is None or expiry == spec.expiry):
                c = min(c, float(self.confidence[k]))
        return c

    def vol_of(self, spec: InstrumentSpec) -> float:
        if spec.name in self.vols:
            return float(self.vols[spec.name])
        if self.vol_surface is not None:
            t = spec.years_to_expiry(self.valuation_time)
            v = float(self.vol_surface(spec.underlying, float(spec.strike or 0.0), t, self.forward_of(spec)))
            if not (math.isfinite(v) and v >= 0):
                raise DataError(f"{spec.name}: the vol surface returned {v}; it must be finite and >= 0")
            return v
        if self.flat_vol is not None:
            return float(self.flat_vol)
        raise DataError(f"no volatility for option {spec.name}: give MarketState.vols, vol_surface or flat_vol")


__all__ = ["KINDS", "SETTLEMENT_HOUR_UTC", "InstrumentSpec", "MarketState", "VolSurface", "parse_instrument"]
