"""Exchange margin rules reproduced as presets (for comparing policies in backtests).

Each :class:`Preset` has ``margin_rate(notional, open_interest=None, price=None)``
returning :class:`MarginRates` (IM and MM as fractions of notional, vectorised
over notionals) and ``to_parameter_set()`` / ``to_instrument_params()`` for the
publishing and export machinery. Sources (stored copies read with the project's
search tool in 2026; figures can change without notice at the venues):

* ``deribit_btc_future`` / ``deribit_eth_future``: Deribit standard-margin
  futures, linear size rule (IM 2% + 0.005%/BTC, MM 1% + 0.005%/BTC; ETH
  2% / 1% + 0.0004%/ETH), in force from 2022-01-11:
  https://support.deribit.com/hc/en-us/articles/25944826427293-11-January-2022 .
  Sizes are in coins, so notionals are divided by ``price`` (default
  ``reference_price``: 100,000 USD for BTC as in Deribit's own worked example at
  https://support.deribit.com/hc/en-us/articles/25944738177565-Linear-Perpetual ;
  2,500 USD for ETH, assumed).
* ``binance_btcusdt``: Binance USD-M BTCUSDT leverage brackets, a
  ``GET /fapi/v1/leverageBracket`` response snapshot kept in the public repository
  boolean404/heikin-ashi-trading-bot, file json/fapiPrivate_get_leverage_bracket.py
  at commit f4c6c76f2b465421681cded5f60c2f3cf29c256d (snapshot date not stated
  there; 10 brackets, 125x to 1x, cum 0 to 103,046,300). IM is Binance's step rule
  ``N / max_leverage`` of the bracket; MM is ``N * maintMarginRatio - cum``
  (formula: https://www.binance.com/en/futures/trading-rules/perpetual/portfolio-margin/notional-limit).
  The same table is in tests/reference/binance_btcusdt_brackets.csv.
* ``dydx_large_cap`` / ``dydx_mid_cap`` / ``dydx_small_cap`` / ``dydx_long_tail``:
  dYdX v4 liquidity tiers (IMF, maintenance fraction, OI caps in USDC) as in the
  default genesis of dydxprotocol/v4-chain, protocol/testing/genesis.sh (Large-Cap
  2% / 0.6, no OI caps -- "OIMF doesn't apply to Large-Cap", which the
  v4-documentation PR #385 of 2025-08-13 also lists as caps "None"; Mid-Cap
  5% / 0.6, 40M / 100M; Small-Cap 10% / 0.5, 20M / 50M; Long-Tail 20% / 0.5,
  5M / 10M). Mid-Cap was added by the governance proposal
  https://dydx.forum/t/liquidity-tier-maintenance/2939 . The OI rule is
  https://help.dydx.trade/en/articles/228341-open-interest-initial-margin-fraction ;
  the MMF stays ``IMF_base * maintenance_fraction``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from margincal.errors import ConfigError
from margincal.margin.params import InstrumentParams, ParameterSet
from margincal.margin.size_rules import linear_size_rate, oi_scaled_imf, oi_scaled_mmf
from margincal.margin.tiers import Tier, TierSchedule


@dataclass(frozen=True)
class MarginRates:
    """IM and MM rates (fractions of notional); floats for scalar input, arrays otherwise."""

    im: Any
    mm: Any


@dataclass(frozen=True)
class Preset:
    """A venue's published margin rule."""

    name: str
    venue: str
    instrument: str
    rule: str
    source: str
    retrieved: str
    description: str
    params: dict[str, Any] = field(default_factory=dict)
    schedule: TierSchedule | None = None
    reference_price: float | None = None
    _fn: Callable[..., MarginRates] | None = field(default=None, repr=False, compare=False)

    def margin_rate(self, notional: object, open_interest: object = None, *, price: float | None = None
                    ) -> MarginRates:
        """IM and MM rates for positions of ``notional`` (quote currency); see each rule."""
        if self._fn is None:  # pragma: no cover - every preset sets one
            raise ConfigError(f"preset {self.name} has no rule")
        return self._fn(self, np.abs(np.asarray(notional, dtype=float)), open_interest, price)

    def margin(self, notional: object, open_interest: object = None, *, price: float | None = None
               ) -> MarginRates:
        """IM and MM amounts (quote currency)."""
        n = np.abs(np.asarray(notional, dtype=float))
        r = self.margin_rate(n, open_interest, price=price)
        im, mm = np.asarray(r.im) * n, np.asarray(r.mm) * n
        return MarginRates(_o(im), _o(mm))

    def details(self) -> dict[str, Any]:
        d: dict[str, Any] = {"preset": self.name, "venue": self.venue, "rule": self.rule, "source": self.source,
                             "retrieved": self.retrieved, "description": self.description, **self.params}
        if self.reference_price is not None:
            d["reference_price"] = self.reference_price
        if self.schedule is not None:
            d["tiers"] = self.schedule.to_details()
        return d

    def to_instrument_params(self) -> InstrumentParams:
        """Row with the rates of the smallest position (notional 0) and the rule in ``details``."""
        r = self.margin_rate(0.0, 0.0)
        return InstrumentParams(self.instrument, float(r.im), float(r.mm), self.details())


def _o(x: np.ndarray) -> Any:
    return float(x) if np.ndim(x) == 0 else x


def _linear(p: Preset, n: np.ndarray, _oi: object, price: float | None) -> MarginRates:
    px = price if price is not None else p.reference_price
    if px is None or not px > 0:
        raise ConfigError(f"preset {p.name}: price is {px}; coin-sized rules need the mark price > 0")
    size = n / px
    im = linear_size_rate(size, p.params["im_base"], p.params["im_per_unit"])
    mm = linear_size_rate(size, p.params["mm_base"], p.params["mm_per_unit"])
    return MarginRates(_o(np.asarray(im)), _o(np.asarray(mm)))


def _brackets(p: Preset, n: np.ndarray, _oi: object, _price: float | None) -> MarginRates:
    assert p.schedule is not None
    im = p.schedule.initial_rate(n, continuous=False)
    mm = p.schedule.maintenance_rate(n)
    return MarginRates(_o(np.asarray(im)), _o(np.asarray(mm)))


def _oi(p: Preset, n: np.ndarray, oi: object, _price: float | None) -> MarginRates:
    oi_arr = np.asarray(0.0 if oi is None else oi, dtype=float)
    pr = p.params
    im = np.asarray(oi_scaled_imf(pr["base_imf"], oi_arr, pr["oi_lower_cap"], pr["oi_upper_cap"]))
    mm = np.asarray(oi_scaled_mmf(pr["base_imf"], pr["maintenance_fraction"], oi_arr))
    shape = np.broadcast_shapes(n.shape, im.shape)
    return MarginRates(_o(np.broadcast_to(im, shape).copy()), _o(np.broadcast_to(mm, shape).copy()))


_DERIBIT_SRC = "https://support.deribit.com/hc/en-us/articles/25944826427293-11-January-2022"
_DYDX_SRC = ("https://github.com/dydxprotocol/v4-chain/blob/main/protocol/testing/genesis.sh ; "
             "https://help.dydx.trade/en/articles/228341-open-interest-initial-margin-fraction")
_RETRIEVED = "stored copy read 2026 with the project's search tool"

# Binance BTCUSDT leverage brackets (see module doc for the snapshot's origin).
BINANCE_BTCUSDT_BRACKETS: tuple[tuple[float, float, int, float, float], ...] = (
    # notionalFloor, notionalCap, initialLeverage, maintMarginRatio, cum
    (0, 50_000, 125, 0.004, 0.0),
    (50_000, 250_000, 100, 0.005, 50.0),
    (250_000, 3_000_000, 50, 0.01, 1_300.0),
    (3_000_000, 20_000_000, 20, 0.025, 46_300.0),
    (20_000_000, 40_000_000, 10, 0.05, 546_300.0),
    (40_000_000, 100_000_000, 5, 0.1, 2_546_300.0),
    (100_000_000, 120_000_000, 4, 0.125, 5_046_300.0),
    (120_000_000, 200_000_000, 3, 0.15, 8_046_300.0),
    (200_000_000, 300_000_000, 2, 0.25, 28_046_300.0),
    (300_000_000, 500_000_000, 1, 0.5, 103_046_300.0),
)


def _binance_schedule() -> TierSchedule:
    return TierSchedule([Tier(lo, lev, mmr) for lo, _cap, lev, mmr, _cum in BINANCE_BTCUSDT_BRACKETS],
                        max_notional=BINANCE_BTCUSDT_BRACKETS[-1][1],
                        source={"venue": "binance", "symbol": "BTCUSDT"})


DYDX_TIERS: dict[str, tuple[float, float, float, float]] = {
    # name: base IMF, maintenance fraction, OI lower cap, OI upper cap (USDC)
    "large_cap": (0.02, 0.6, 0.0, 0.0),
    "mid_cap": (0.05, 0.6, 40_000_000.0, 100_000_000.0),
    "small_cap": (0.10, 0.5, 20_000_000.0, 50_000_000.0),
    "long_tail": (0.20, 0.5, 5_000_000.0, 10_000_000.0),
}


def _build() -> dict[str, Preset]:
    out: dict[str, Preset] = {}
    out["deribit_btc_future"] = Preset(
        name="deribit_btc_future", venue="deribit", instrument="BTC-FUTURE", rule="linear_size",
        source=_DERIBIT_SRC, retrieved=_RETRIEVED,
        description="IM 2% + 0.5% per 100 BTC, MM 1% + 0.5% per 100 BTC (standard margin, from 2022-01-11)",
        params={"im_base": 0.02, "im_per_unit": 0.005 / 100, "mm_base": 0.01, "mm_per_unit": 0.005 / 100,
                "size_unit": "BTC"},
        reference_price=100_000.0, _fn=_linear)
    out["deribit_eth_future"] = Preset(
        name="deribit_eth_future", venue="deribit", instrument="ETH-FUTURE", rule="linear_size",
        source=_DERIBIT_SRC, retrieved=_RETRIEVED,
        description="IM 2% + 0.0004% per ETH, MM 1% + 0.0004% per ETH (standard margin, from 2022-01-11)",
        params={"im_base": 0.02, "im_per_unit": 0.000004, "mm_base": 0.01, "mm_per_unit": 0.000004,
                "size_unit": "ETH", "reference_price_note": "2,500 USD assumed"},
        reference_price=2_500.0, _fn=_linear)
    out["binance_btcusdt"] = Preset(
        name="binance_btcusdt", venue="binance", instrument="BTCUSDT", rule="brackets",
        source=("GET /fapi/v1/leverageBracket snapshot in github.com/boolean404/heikin-ashi-trading-bot "
                "json/fapiPrivate_get_leverage_bracket.py @ f4c6c76f2b465421681cded5f60c2f3cf29c256d; formula "
                "https://www.binance.com/en/futures/trading-rules/perpetual/portfolio-margin/notional-limit"),
        retrieved=_RETRIEVED + "; snapshot date not stated in the source",
        description="10 brackets 125x..1x; IM = N / max_leverage of the bracket; MM = N * maintMarginRatio - cum",
        schedule=_binance_schedule(), _fn=_brackets)
    for tier, (imf, frac, lo, hi) in DYDX_TIERS.items():
        label = tier.replace("_", "-").title()
        out[f"dydx_{tier}"] = Preset(
            name=f"dydx_{tier}", venue="dydx", instrument=f"DYDX-{tier.upper()}", rule="oi_scaled",
            source=_DYDX_SRC, retrieved=_RETRIEVED,
            description=(f"dYdX v4 {label}: IMF {imf:.0%}, MMF {imf * frac:.1%} (fraction {frac}); "
                         + ("no OI scaling" if hi == 0 else f"IMF linear from OI {lo / 1e6:.0f}M to 100% at "
                            f"{hi / 1e6:.0f}M USDC")),
            params={"base_imf": imf, "maintenance_fraction": frac, "oi_lower_cap": lo, "oi_upper_cap": hi},
            _fn=_oi)
    return out


PRESETS: dict[str, Preset] = _build()


def names() -> list[str]:
    """Names of the available presets."""
    return sorted(PRESETS)


def get(name: str) -> Preset:
    """The preset called ``name`` (ConfigError lists the names when unknown)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown margin preset {name!r}; choose one of {', '.join(names())}") from None


def parameter_set(preset_names: Sequence[str] | None = None) -> ParameterSet:
    """The presets as one :class:`ParameterSet` (instrument = each preset's instrument name)."""
    chosen = [get(n) for n in (preset_names or names())]
    params = {p.instrument: p.to_instrument_params() for p in chosen}
    return ParameterSet(params=params, provenance={"kind": "exchange_presets", "presets": [p.name for p in chosen]},
                        source="presets")
