"""Risk-matrix configuration, presets, and the instruments x scenarios P&L matrix.

The P&L matrix is computed ONCE per (instrument set, market state, config):
``matrix[i, j]`` is the USD P&L of one contract of instrument ``i`` in scenario
``j`` (full Black-76 revaluation of options), already multiplied by the
scenario weight. Account P&Ls are then one sparse-dense product
``positions @ matrix`` (see :mod:`margincal.margin.portfolio.engine`).

Risk-matrix scenarios (Deribit / Derive style), per underlying ``u``:

* regular: every spot shock ``s`` in ``spot_shocks`` x vol {up, unchanged, down};
* extended: every ``e`` in ``extended_shocks`` with vol up (or unchanged, see
  ``extended_vol``), its P&L multiplied by the weight ``extended_weights[k]``
  (the "fraction of simulated P&L / dampener" of Deribit's extended table).

A scenario of underlying ``u`` moves only ``u``'s forward: ``F' = F (1 + s)``.
The implied vol of an option with ``T_days`` to expiry becomes::

    vol_up   = vol * (1 + vol_up   * (ref_days / max(T_days, t_floor_days)) ** p)
    vol_down = vol * max(0, 1 - vol_down * (ref_days / max(T_days, t_floor_days)) ** p)

with ``p = vol_power_short`` if ``T_days <= power_switch_days`` else
``vol_power_long`` (Derive uses 0.3 / 0.13; Deribit a single power).

Margin (engine): each underlying is a *segment* of scenarios; the account's
risk charge is the sum over underlyings of ``max(0, worst weighted loss)``
(no offset across underlyings, as Deribit's segregated portfolio margin);
``IM = im_multiplier * (risk charge + contingencies)`` and
``MM = mm_fraction * IM``.

Contingencies (added to the scenario loss):

* short options: ``short_option_contingency * spot * max(0, -net)``, where
  ``net`` is the signed coin amount of options per (underlying, expiry,
  strike), calls and puts netted (Deribit's "net short options per strike",
  Derive's "naked shorts per strike");
* futures: ``futures_contingency * |notional|`` summed over every perpetual
  and dated future position (gross).

Basis (forward) contingency (Derive's PMRM, ``basis_shock > 0``): per
(segment, expiry) the options (and dated futures of that expiry, our
extension: Derive's PMRM lists none) are revalued with only their forward moved by
``+/- basis_shock`` (vol unchanged); the group's loss ``max(0, -min(P&L up,
P&L down))`` is scaled by ``basis_add_factor + basis_mult_factor * T`` (years)
and summed over the segment's expiries. It competes with the scenarios: the
segment's charge is ``max(worst scenario loss, basis contingency)`` (v2-core
PMRMLib: the scenario minimum starts from the basis contingency).

Static MtM discount (Derive's PMRM, on when ``static_discount < 1`` or a rate
factor is > 0): per (segment, expiry) the options' shocked value in each
scenario, ``E = sum_i q_i (V0_i + P&L_ij)``, counts only
``d = static_discount * exp(-T (max(rate, 0) * static_rate_mult +
static_rate_add))`` of itself when positive, so the scenario P&L of the
expiry is ``min(E, d E) - V0`` rather than ``E - V0`` (PMRMLib
``_applyMTMDiscount`` / ``_addStaticDiscount``). A long option therefore
always carries at least ``(1 - d) x`` its value (the unshocked scenario). This
is not linear in the positions: the engine adds ``-(1 - d) max(E, 0)`` per
account and expiry group after the one product (:mod:`.engine`). Dated
futures are not in the groups (Derive's expiry holdings are options; futures
stay linear like perpetuals). The basis contingency uses undiscounted values,
as in PMRMLib.

Oracle-confidence contingency (Derive's PMRM, IM only, ``confidence_factor >
0``): with ``MarketState.confidence`` ``c`` of the underlying (perpetuals) or
of the expiry (options and dated futures of that expiry, the minimum with the
underlying's), every contract whose ``c < confidence_threshold`` adds
``(1 - c) * confidence_factor * |q| * notional`` (USD) to IM after the
multiplier; MM is unchanged (PMRMLib ``_getConfidenceContingency``: the amount
is ``|perp|`` for perps and the gross ``sum |q|`` of an expiry's options).

Base-asset collateral (Derive's PMRM ``basePosition``, on when
``base_in_scenarios``; instruments of kind ``"base"``, e.g. ``BTC-USDC``, in
coins, never short): in every scenario of its underlying's USD-settled segment
the holding of ``b`` coins gains ``b * spot * (m - 1) / stable`` (``m`` the
scenario's spot multiplier, ``stable`` = ``MarketState.spot[stablecoin]``, 1
when absent: PMRMLib ``_getBaseValue`` values the base in the stablecoin), so it
sits in the P&L matrix like a linear perpetual and nets with it; it is in no
expiry group (no basis contingency, no static discount). Static contingency
``base_contingency * b * spot`` (``basePercent``; no division by the stable
price, as PMRMLib ``addPrecomputes``); the oracle-confidence contingency counts
``b`` at the underlying's confidence, with ``|perp|``. A config without
``base_in_scenarios`` refuses base instruments (Deribit's risk matrix margins
derivatives; collateral goes to the account view, :mod:`.whatif`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from margincal.errors import ConfigError, DataError
from margincal.margin.portfolio.instruments import InstrumentSpec, MarketState
from margincal.pricing.black76 import black76_price

DERIBIT_SOURCES = (
    "https://support.deribit.com/hc/en-us/articles/25944756247837-Portfolio-Margin",
    "https://www.deribit.com/pages/docs/portfoliomargin",
    "https://docs.deribit.com/api-reference/account-management/private-simulate",
)
DERIVE_SOURCES = (
    "https://github.com/derivexyz/v2-core/blob/master/scripts/config-mainnet.sol",
    "https://github.com/derivexyz/v2-core/blob/master/src/risk-managers/PMRMLib.sol",
    "https://docs.derive.xyz/untitled-page-3.md",
)


SETTLEMENT_MODES = ("segregated", "cross")


def settlement_of(spec: InstrumentSpec) -> str:
    """Settlement currency: the coin for inverse (coin-margined) contracts, ``USD`` for linear ones."""
    return spec.underlying if spec.inverse else "USD"


def _tuple(x: Sequence[float] | np.ndarray) -> tuple[float, ...]:
    # rounded to 12 decimals so that linspace noise (0.04000000000000001) does not leak into labels
    return tuple(round(float(v), 12) for v in x)


@dataclass(frozen=True)
class RiskMatrixConfig:
    """Parameters of the risk-matrix (scenario) portfolio margin; see the module doc.

    All shocks and rates are fractions (0.16 = 16%).
    """

    spot_shocks: tuple[float, ...] = _tuple(np.linspace(-0.16, 0.16, 9))
    vol_up: float = 0.45
    vol_down: float = 0.30
    vol_power_short: float = 0.30
    vol_power_long: float = 0.30
    power_switch_days: float = 30.0
    ref_days: float = 30.0
    t_floor_days: float = 1.0
    extended_shocks: tuple[float, ...] = ()
    extended_weights: tuple[float, ...] = ()
    extended_vol: str = "up"
    short_option_contingency: float = 0.01
    futures_contingency: float = 0.012
    im_multiplier: float = 1.0
    mm_fraction: float = 0.8
    horizon_hours: float = 0.0
    min_vol_shock_up: float = 0.0
    settlement_mode: str = "segregated"
    delta_shock_max: float = 0.0
    delta_shock_threshold: float = math.inf
    peg_loss_threshold: float = 0.0
    peg_loss_factor: float = 0.0
    basis_shock: float = 0.0
    basis_add_factor: float = 0.0
    basis_mult_factor: float = 0.0
    static_discount: float = 1.0
    static_rate_mult: float = 0.0
    static_rate_add: float = 0.0
    confidence_threshold: float = 0.0
    confidence_factor: float = 0.0
    base_in_scenarios: bool = False
    base_contingency: float = 0.0
    stablecoin: str = "USDC"
    name: str = "custom"
    sources: tuple[str, ...] = ()
    notes: str = ""

    def __post_init__(self) -> None:
        for f in ("spot_shocks", "extended_shocks", "extended_weights", "sources"):
            v = getattr(self, f)
            object.__setattr__(self, f, tuple(v) if f == "sources" else _tuple(v))
        if not self.spot_shocks:
            raise ConfigError("spot_shocks is empty; give at least one shock, e.g. (-0.16, ..., 0.16)")
        for f in ("spot_shocks", "extended_shocks"):
            bad = [s for s in getattr(self, f) if not (math.isfinite(s) and s > -1.0)]
            if bad:
                raise ConfigError(f"{f} contains {bad[0]}; shocks must be finite and > -1 (a -100% move)")
        if len(self.extended_weights) != len(self.extended_shocks):
            raise ConfigError(
                f"extended_weights has {len(self.extended_weights)} entries, extended_shocks "
                f"{len(self.extended_shocks)}; give one weight per extended shock"
            )
        if any(not (0.0 <= w <= 1.0) for w in self.extended_weights):
            raise ConfigError(f"extended_weights {self.extended_weights}: each weight must be in [0, 1]")
        if self.settlement_mode not in SETTLEMENT_MODES:
            raise ConfigError(f"settlement_mode is {self.settlement_mode!r}; use one of {', '.join(SETTLEMENT_MODES)}")
        if not (self.delta_shock_threshold > 0):
            raise ConfigError(f"delta_shock_threshold is {self.delta_shock_threshold}; it must be > 0 (USD)")
        if self.extended_vol not in ("up", "same"):
            raise ConfigError(f"extended_vol is {self.extended_vol!r}; use 'up' or 'same'")
        for f in ("vol_up", "vol_down", "vol_power_short", "vol_power_long", "short_option_contingency",
                  "futures_contingency", "horizon_hours", "min_vol_shock_up", "delta_shock_max",
                  "peg_loss_threshold", "peg_loss_factor", "basis_shock", "basis_add_factor",
                  "basis_mult_factor", "static_rate_mult", "static_rate_add", "confidence_threshold",
                  "confidence_factor", "base_contingency"):
            v = getattr(self, f)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{f} is {v}; it must be finite and >= 0")
        for f in ("ref_days", "t_floor_days", "power_switch_days"):
            v = getattr(self, f)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{f} is {v}; it must be > 0")
        if not (math.isfinite(self.im_multiplier) and self.im_multiplier > 0):
            raise ConfigError(f"im_multiplier is {self.im_multiplier}; it must be > 0")
        if not 0.0 < self.mm_fraction <= 1.0:
            raise ConfigError(f"mm_fraction is {self.mm_fraction}; it must be in (0, 1]")
        if self.basis_shock >= 1.0:
            raise ConfigError(f"basis_shock is {self.basis_shock}; it must be < 1 (a forward move of -100%)")
        if not (math.isfinite(self.static_discount) and 0.0 < self.static_discount <= 1.0):
            raise ConfigError(f"static_discount is {self.static_discount}; it must be in (0, 1] (1 = no discount)")
        if self.confidence_threshold > 1.0:
            raise ConfigError(f"confidence_threshold is {self.confidence_threshold}; it must be in [0, 1]")
        if not isinstance(self.base_in_scenarios, bool):
            raise ConfigError(f"base_in_scenarios is {self.base_in_scenarios!r}; use True or False")
        if self.base_contingency > 1.0:
            raise ConfigError(f"base_contingency is {self.base_contingency}; it must be in [0, 1] (a fraction of "
                              "the base notional)")

    @property
    def static_discount_on(self) -> bool:
        """Whether positive expiry values are discounted (module doc)."""
        return self.static_discount < 1.0 or self.static_rate_mult > 0 or self.static_rate_add > 0

    def static_discount_factor(self, t_years: np.ndarray | float, rate: float = 0.0) -> np.ndarray:
        """``static_discount * exp(-T (max(rate, 0) * static_rate_mult + static_rate_add))`` (module doc)."""
        shock_rate = max(float(rate), 0.0) * self.static_rate_mult + self.static_rate_add
        return self.static_discount * np.exp(-np.asarray(t_years, dtype=float) * shock_rate)

    def vol_multipliers(self, t_days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(up, down) multipliers of implied vol for options with ``t_days`` to expiry."""
        t = np.asarray(t_days, dtype=float)
        power = np.where(t <= self.power_switch_days, self.vol_power_short, self.vol_power_long)
        scale = (self.ref_days / np.maximum(t, self.t_floor_days)) ** power
        return 1.0 + self.vol_up * scale, np.maximum(0.0, 1.0 - self.vol_down * scale)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def dampened_weights(shocks: Sequence[float], fraction: float, price_range: float) -> tuple[float, ...]:
    """Extended-table weights ``fraction * min(1, price_range / |shock|)``.

    A move ``k`` times the regular price range counts ``fraction / k`` of its
    loss, so a +500% move of a deep OTM short call charges about what a
    +16% move of an at-the-money one does. This form is our assumption (the
    exchanges do not publish theirs; see docs/portfolio_margin.md).
    """
    return tuple(float(fraction * min(1.0, price_range / abs(s))) for s in shocks)


def deribit_like() -> RiskMatrixConfig:
    """Deribit segregated portfolio margin (S:PM), per settlement currency.

    Sources (DERIBIT_SOURCES; the example values are kept in
    tests/reference/venue_liquidation_examples.json):

    * support article [0]: each settlement currency is margined separately;
      price range in 9 evenly spaced buckets incl. 0; vol up / same / down in
      each; extended table of -66%, -33%, +50%, +100%, +200%, +300%, +400%,
      +500%, vol up only, a fraction of the P&L with a dampener;
    * ``private/pme/simulate`` example [2] (``btc_usd``): ``price_range``
      0.16, ``volatility_range_up`` 0.5, ``volatility_range_down`` 0.25,
      ``short_term_vega_power`` 0.3, ``long_term_vega_power`` 0.13,
      ``min_volatility_for_shock_up`` 0.5, ``max_delta_shock`` 0.1,
      ``delta_total_liq_shock_threshold`` 20,000,000, ``mm_factor`` 0.8;
    * older docs page [1]: the ``(30 / days) ** power`` scaling and 0.01 BTC
      per net short option per strike.

    **Assumed** (no published text found): the short/long power switch at 30
    days (Derive's ``dteFloor``-style rule), a 1-day floor on T, how the
    minimum vol enters (the up shock is taken on ``max(vol, 0.5)``), the
    linear ramp of the delta-liquidity shock up to its threshold, futures
    contingency 1.2% of gross notional, and the extended weights
    ``dampened_weights(..., fraction=0.5, price_range=0.16)`` (Deribit
    publishes ``extended_table_factor`` 1 and ``extended_dampener``
    100,000 / 25,000 but not the formula that uses them).
    """
    ext = (-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)
    return RiskMatrixConfig(
        spot_shocks=_tuple(np.linspace(-0.16, 0.16, 9)),
        vol_up=0.5,
        vol_down=0.25,
        vol_power_short=0.30,
        vol_power_long=0.13,
        power_switch_days=30.0,
        t_floor_days=1.0,
        extended_shocks=ext,
        extended_weights=dampened_weights(ext, 0.5, 0.16),
        extended_vol="up",
        short_option_contingency=0.01,
        futures_contingency=0.012,
        im_multiplier=1.0,
        mm_fraction=0.8,
        min_vol_shock_up=0.5,
        settlement_mode="segregated",
        delta_shock_max=0.1,
        delta_shock_threshold=20_000_000.0,
        name="deribit_like",
        sources=DERIBIT_SOURCES,
        notes=("price range, vol range 50%/25%, powers 0.3/0.13, min vol 0.5, delta shock 0.1 / 20M, MM 80%: "
               "Deribit pme/simulate; 30-day power switch, 1-day floor, futures 1.2%, extended weights, "
               "delta-shock ramp: assumed"),
    )


def derive_like() -> RiskMatrixConfig:
    """Derive (ex-Lyra) v2 PMRM, from its mainnet deployment config (DERIVE_SOURCES[0]).

    Scenarios: spot -15%..+15% in 5% steps with vol up / none / down, plus
    -20% and +20% with vol up only (weight 1: "all regular scenarios have
    dampening 1"). ``volRangeUp`` 0.6, ``volRangeDown`` 0.3, powers 0.3
    (T <= 30 days) / 0.13 (longer), ``dteFloor`` 1 day (PMRMLib._addVolShocks).
    Contingencies: ``optionPercent`` 2% per naked short per strike,
    ``perpPercent`` 3% of |perp| notional. IM = 1.25 x MM (``imFactor``), so
    ``im_multiplier=1.25`` and ``mm_fraction=0.8`` (MM = scenario loss +
    contingencies, as on Derive). Stable-peg contingency: when the USDC mark
    (``MarketState.spot["USDC"]``) is below ``peg_loss_threshold``, IM uses
    ``imFactor + (threshold - price) * pegLossFactor`` (``pegLossThreshold``
    0.99, ``pegLossFactor`` 4.0). Basis (forward) contingency: options
    revalued at forward x 1.05 and x 0.95 (``scenarioSpotUp/Down``), loss per
    expiry scaled by ``1.0 + 1.2 * T`` (``basisContAddFactor`` /
    ``basisContMultFactor``), competing with the scenarios (PMRMLib
    ``_addBasisContingency``, ``getMarginAndMarkToMarket``). Values from
    scripts/config-mainnet.sol at commit 037ee3ac59a37852e0144b4a934a6a33601a4f0d,
    formulas from src/risk-managers/PMRMLib.sol at commit
    b02a82dcd76e5a9e75683bce7e3fccaecd21767b (tests/reference/derive_pmrm_basis.md).
    Static MtM discount: a positive shocked expiry value counts
    ``baseStaticDiscount`` 0.95 x ``exp(-T (max(rate, 0) x rateMultScale 1.0 +
    rateAddScale 0.12))`` of itself (``static_discount``, ``static_rate_mult``,
    ``static_rate_add``; PMRMLib ``_applyMTMDiscount`` / ``_addStaticDiscount``;
    the rate is the expiry's rate feed floored at 0 in src/risk-managers/PMRM.sol
    ``_initialiseExpiries`` at commit 02ab723e8180d444abe3f7b721d2898c6c3551d3,
    here ``MarketState.rate``). Oracle-confidence contingency (IM only):
    ``confThreshold`` 0.55, ``confMargin`` 1.0, the confidences from
    ``MarketState.confidence`` (default 1: none; PMRMLib
    ``_getConfidenceContingency``, the gross option amount per expiry
    ``netOptions += |balance|`` in PMRM.sol ``_arrangeOptions``, same commit);
    tests/reference/derive_pmrm_static_discount.md.
    Base-asset collateral (``base_in_scenarios``; instruments of kind
    ``"base"``, e.g. ``BTC-USDC`` in coins): revalued in every scenario at
    ``b x spot x m / stablePrice`` (PMRMLib ``getScenarioMtM`` /
    ``_getBaseValue``), static contingency ``basePercent`` 3% x ``b`` x spot
    (``base_contingency``; ``OtherContingencyParameters`` in config-mainnet.sol
    at 037ee3ac, ``addPrecomputes`` in PMRMLib.sol at b02a82dc), and ``b``
    counted with ``|perp|`` in the confidence contingency (same function);
    ``basePosition`` is the account's balance of the market's wrapped base
    asset, never negative (``toUint256`` in PMRM.sol ``_arrangeOptions`` at
    02ab723e); tests/reference/derive_pmrm_base.md.
    Not modelled: Derive's per-market caps (``getPMRMCaps``: e.g. 15 BTC of
    base), the perpetual's own mark and confidence (margincal values perps at
    spot with the underlying's confidence), one rate per expiry, and the
    settlement buffer of just-expired options.
    """
    return RiskMatrixConfig(
        spot_shocks=(-0.15, -0.10, -0.05, 0.0, 0.05, 0.10, 0.15),
        vol_up=0.6,
        vol_down=0.3,
        vol_power_short=0.3,
        vol_power_long=0.13,
        power_switch_days=30.0,
        t_floor_days=1.0,
        extended_shocks=(-0.20, 0.20),
        extended_weights=(1.0, 1.0),
        extended_vol="up",
        short_option_contingency=0.02,
        futures_contingency=0.03,
        im_multiplier=1.25,
        mm_fraction=0.8,
        peg_loss_threshold=0.99,
        peg_loss_factor=4.0,
        basis_shock=0.05,
        basis_add_factor=1.0,
        basis_mult_factor=1.2,
        static_discount=0.95,
        static_rate_mult=1.0,
        static_rate_add=0.12,
        confidence_threshold=0.55,
        confidence_factor=1.0,
        base_in_scenarios=True,
        base_contingency=0.03,
        stablecoin="USDC",
        name="derive_like",
        sources=DERIVE_SOURCES,
        notes=("from derivexyz/v2-core scripts/config-mainnet.sol (getDefaultScenarios, getPMRMParams) and "
               "PMRMLib.sol / PMRM.sol, base-asset collateral included (basePercent 3%)"),
    )


PRESETS = {"deribit": deribit_like, "derive": derive_like}


@dataclass(frozen=True)
class ScenarioPnL:
    """Instruments x scenarios P&L matrix (USD per contract, weights applied) with what the engines need."""

    matrix: np.ndarray
    instruments: tuple[str, ...]
    labels: tuple[str, ...]
    weights: np.ndarray
    segments: tuple[tuple[str, int, int], ...]
    specs: tuple[InstrumentSpec, ...]
    method: str
    params: dict[str, Any]
    spot: dict[str, float]
    option_groups: sparse.csr_matrix  # instruments x (underlying, expiry, strike) groups: coins per contract
    option_group_charge: np.ndarray  # USD charged per coin of net short option in each group
    futures_charge: np.ndarray  # USD charged per |contract| of each future / perpetual
    offset_groups: np.ndarray  # int group of each instrument (historical method)
    offset_group_names: tuple[str, ...]
    im_multiplier: float = 1.0
    mm_fraction: float = 0.8
    option_contingency_rate: float = 0.0
    futures_contingency_rate: float = 0.0
    delta_notional: np.ndarray | None = None  # USD delta per contract (delta-liquidity shock)
    delta_segments: np.ndarray | None = None  # segment index of each instrument
    delta_shock_max: float = 0.0
    delta_shock_threshold: float = math.inf
    basis_up: sparse.csr_matrix | None = None  # instruments x (segment, expiry) groups: scaled P&L, forward up
    basis_down: sparse.csr_matrix | None = None  # the same, forward down
    basis_segment: np.ndarray | None = None  # segment index of each basis group
    discount_value: np.ndarray | None = None  # instruments x scenarios: options' unweighted shocked value
    discount_group: np.ndarray | None = None  # (segment, expiry) discount group of each instrument, -1: none
    discount_factor: np.ndarray | None = None  # static discount d of each group
    discount_segment: np.ndarray | None = None  # segment index of each group
    confidence: np.ndarray | None = None  # oracle confidence of each instrument
    confidence_charge: np.ndarray | None = None  # USD added to IM per |contract| (confidence contingency)
    confidence_threshold: float = 0.0
    confidence_factor: float = 0.0
    base_contingency_rate: float = 0.0  # basePercent: fraction of the base notional (coins x spot) charged
    base_value_scale: float = 1.0  # 1 / stable price applied to the base rows (Derive's base in the stablecoin)
    level: float | None = None  # ES confidence (historical method)
    offset: float = 1.0  # cross-group offset fraction (historical method)
    created_at: str = field(default_factory=lambda: pd.Timestamp.now(tz="UTC").isoformat())

    @property
    def instrument_scale(self) -> np.ndarray:
        """max_j |matrix[i, j]| per instrument (scale of the rounding-noise floor)."""
        cached = self.__dict__.get("_scale")
        if cached is None:
            cached = np.abs(self.matrix).max(axis=1) if self.matrix.size else np.zeros(self.matrix.shape[0])
            object.__setattr__(self, "_scale", cached)
        return cached

    @property
    def base_mask(self) -> np.ndarray | None:
        """Boolean mask of the base-collateral instruments, ``None`` when there are none."""
        if "_base_mask" not in self.__dict__:
            m = np.array([s.is_base for s in self.specs], dtype=bool)
            object.__setattr__(self, "_base_mask", m if m.any() else None)
        return self.__dict__["_base_mask"]

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    @property
    def driver_labels(self) -> tuple[str, ...]:
        """Labels a driving-scenario index points to: the scenarios, then one basis-contingency label per segment."""
        if self.basis_up is None:
            return self.labels
        return self.labels + tuple(f"{name}: basis contingency" for name, _a, _z in self.segments)

    def index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.instruments)}

    def vector(self, positions: Mapping[str, float]) -> np.ndarray:
        """Dense position vector (one account) from ``{instrument: quantity}``."""
        idx = self.index()
        v = np.zeros(len(self.instruments))
        for name, q in positions.items():
            if name not in idx:
                raise DataError(f"instrument {name!r} is not in the scenario matrix ({len(idx)} instruments)")
            v[idx[name]] += float(q)
        return v


# ---------------------------------------------------------------- revaluation


def instrument_arrays(specs: Sequence[InstrumentSpec], market: MarketState) -> dict[str, np.ndarray]:
    """Per-instrument base quantities: forward, years to expiry, vol, strike, type flags."""
    n = len(specs)
    F = np.empty(n)
    T = np.zeros(n)
    vol = np.zeros(n)
    K = np.ones(n)
    call = np.zeros(n, dtype=bool)
    opt = np.zeros(n, dtype=bool)
    inv = np.zeros(n, dtype=bool)
    cs = np.empty(n)
    for i, s in enumerate(specs):
        F[i] = market.forward_of(s)
        cs[i] = s.contract_size
        inv[i] = s.inverse
        if s.expiry is not None:
            T[i] = s.years_to_expiry(market.valuation_time)
            if T[i] <= 0:
                raise DataError(
                    f"{s.name} expired at {s.expiry} (valuation time {market.valuation_time}); remove it or "
                    "value the book at an earlier time"
                )
        if s.is_option:
            opt[i] = True
            K[i] = float(s.strike)  # type: ignore[arg-type]
            call[i] = s.option_type == "C"
            vol[i] = market.vol_of(s)
    return {"F": F, "T": T, "vol": vol, "K": K, "call": call, "option": opt, "inverse": inv, "cs": cs}


def revalue(
    arrays: Mapping[str, np.ndarray],
    spot_mult: np.ndarray,
    vol_mult: np.ndarray,
    *,
    rate: float = 0.0,
    horizon_years: float = 0.0,
    coin_measure: bool = False,
) -> np.ndarray:
    """USD P&L per contract, shape (instruments, scenarios).

    ``spot_mult[i, j]``: forward multiplier of instrument ``i`` in scenario
    ``j``; ``vol_mult[i, j]``: implied-vol multiplier (ignored for
    non-options). ``horizon_years`` ages options before the shocked valuation.

    ``coin_measure``: inverse (coin-settled) rows are returned as their COIN
    P&L times today's forward, ``F0 (c1 - c0) = USD P&L / m``: the requirement
    in the settlement coin, in today's USD. A long inverse perp of face ``N``
    loses ``N (1/m - 1)`` of it at ``m = 0.84`` (19.05% of ``N``, not the 16% a
    USD measure shows): the convexity of inverse P&L.
    """
    F, T, cs = arrays["F"], arrays["T"], arrays["cs"]
    opt, inv = arrays["option"], arrays["inverse"]
    m = np.asarray(spot_mult, dtype=float)
    out = np.empty(m.shape)
    lin = ~opt
    # delta-one: linear = coins * F * (m - 1); inverse (USD face) = face * (m - 1)
    notional = np.where(inv, cs, cs * F)
    out[lin] = notional[lin, None] * (m[lin] - 1.0)
    if opt.any():
        o = np.flatnonzero(opt)
        Fo, To, Ko, co, vo = F[o], T[o], arrays["K"][o], arrays["call"][o], arrays["vol"][o]
        v0 = black76_price(Fo, Ko, To, vo, co, rate=rate)
        T1 = np.maximum(To - horizon_years, 0.0)[:, None]
        F1 = Fo[:, None] * m[o]
        v1 = black76_price(F1, Ko[:, None], T1, vo[:, None] * vol_mult[o], co[:, None], rate=rate)
        # inverse: (c1 - c0) * F1 with c = V / F  ->  V1 - V0 * F1 / F0
        base = np.where(inv[o, None], v0[:, None] * m[o], v0[:, None])
        out[o] = cs[o, None] * (v1 - base)
    if coin_measure and inv.any():
        out[inv] = out[inv] / m[inv]
    return out


def _contingency_inputs(
    specs: Sequence[InstrumentSpec], market: MarketState, option_rate: float, futures_rate: float,
    base_rate: float = 0.0,
) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
    keys: dict[tuple[str, Any, float], int] = {}
    rows, cols, vals, charge = [], [], [], []
    fut = np.zeros(len(specs))
    for i, s in enumerate(specs):
        if s.is_option:
            key = (s.underlying, s.expiry, float(s.strike))  # type: ignore[arg-type]
            if key not in keys:
                keys[key] = len(keys)
                charge.append(option_rate * market.spot_of(s.underlying))
            rows.append(i)
            cols.append(keys[key])
            vals.append(s.contract_size)
        else:
            notional = s.contract_size if s.inverse else s.contract_size * market.spot_of(s.underlying)
            fut[i] = (base_rate if s.is_base else futures_rate) * notional
    groups = sparse.csr_matrix((vals, (rows, cols)), shape=(len(specs), len(keys)))
    return groups, np.asarray(charge, dtype=float), fut


def _pct(x: float) -> str:
    v = round(x * 100.0, 4)
    return "0%" if v == 0 else f"{v:+g}%"


def offset_groups_of(specs: Sequence[InstrumentSpec]) -> tuple[np.ndarray, tuple[str, ...]]:
    names = tuple(sorted({str(s.offset_group) for s in specs}))
    pos = {n: i for i, n in enumerate(names)}
    return np.array([pos[str(s.offset_group)] for s in specs], dtype=np.int64), names


def check_specs(specs: Sequence[InstrumentSpec]) -> tuple[InstrumentSpec, ...]:
    specs = tuple(specs)
    if not specs:
        raise DataError("no instruments: the scenario matrix needs at least one")
    seen: set[str] = set()
    for s in specs:
        if not isinstance(s, InstrumentSpec):
            raise DataError(f"instrument {s!r} is not an InstrumentSpec (use parse_instrument(name))")
        if s.name in seen:
            raise DataError(f"instrument {s.name!r} appears twice; names must be unique")
        seen.add(s.name)
    return specs


def scenario_pnl_matrix(
    specs: Sequence[InstrumentSpec], market: MarketState, config: RiskMatrixConfig | None = None
) -> ScenarioPnL:
    """Risk-matrix P&L of every instrument in every scenario (module doc), computed once."""
    cfg = config if config is not None else deribit_like()
    specs = check_specs(specs)
    held = [s for s in specs if s.is_base]
    if held and not cfg.base_in_scenarios:
        raise ConfigError(f"{held[0].name} is base-asset collateral (a spot holding); the {cfg.name} risk matrix "
                          "margins derivatives only (derive_like() revalues base collateral); give it as "
                          "collateral to the account view instead")
    arr = instrument_arrays(specs, market)
    segregated = cfg.settlement_mode == "segregated"
    keys = [(s.underlying, settlement_of(s) if segregated else "cross") for s in specs]
    seg_keys = sorted(set(keys), key=lambda k: (k[0], k[1] != "USD", k[1]))  # USD-settled first
    seg_of = np.array([seg_keys.index(k) for k in keys])
    up_m, down_m = cfg.vol_multipliers(arr["T"] * 365.0)
    if cfg.min_vol_shock_up > 0:
        # the up shock is taken on max(vol, min_vol): vol' = vol + max(vol, min_vol) * shock (module doc)
        v = arr["vol"]
        with np.errstate(divide="ignore", invalid="ignore"):
            lift = np.where(v > 0, np.maximum(v, cfg.min_vol_shock_up) / np.where(v > 0, v, 1.0), 1.0)
        up_m = 1.0 + (up_m - 1.0) * lift

    # one scenario list per segment: (spot shock, vol direction, weight, extended?)
    base: list[tuple[float, str, float, bool]] = [
        (s, v, 1.0, False) for s in cfg.spot_shocks for v in ("up", "same", "down")
    ]
    base += [(e, cfg.extended_vol, w, True) for e, w in zip(cfg.extended_shocks, cfg.extended_weights, strict=True)]
    n_s = len(base)
    shocks = np.array([b[0] for b in base])
    wts = np.array([b[2] for b in base])
    dirs = [b[1] for b in base]

    matrix = np.zeros((len(specs), n_s * len(seg_keys)))
    disc = _discount_groups(specs, arr, seg_of, cfg, market.rate) if cfg.static_discount_on else None
    dvalue = np.zeros_like(matrix) if disc is not None else None
    v0 = np.zeros(len(specs))
    if dvalue is not None and arr["option"].any():
        o = np.flatnonzero(arr["option"])
        v0[o] = arr["cs"][o] * black76_price(arr["F"][o], arr["K"][o], arr["T"][o], arr["vol"][o], arr["call"][o],
                                             rate=market.rate)
    labels: list[str] = []
    segments = []
    vol_label = {"up": f"vol {_pct(cfg.vol_up)}", "same": "vol unch", "down": f"vol {_pct(-cfg.vol_down)}"}
    for k, (u, settle) in enumerate(seg_keys):
        rows = np.flatnonzero(seg_of == k)
        sub = {key: val[rows] for key, val in arr.items()}
        spot_mult = np.broadcast_to(1.0 + shocks, (rows.size, n_s))
        vm = np.ones((rows.size, n_s))
        for j, d in enumerate(dirs):
            if d == "up":
                vm[:, j] = up_m[rows]
            elif d == "down":
                vm[:, j] = down_m[rows]
        pnl = revalue(sub, spot_mult, vm, rate=market.rate, horizon_years=cfg.horizon_hours / 8760.0,
                      coin_measure=segregated)
        matrix[np.ix_(rows, np.arange(k * n_s, (k + 1) * n_s))] = pnl * wts
        if dvalue is not None:
            # shocked value = P&L + the value it is measured from: V0 (linear; inverse in the coin measure,
            # where it is V1 / m), V0 * m (inverse in USD: the coin holding moves with the price)
            inv = sub["inverse"] & (not segregated)
            base_v = np.where(inv[:, None], v0[rows, None] * spot_mult, v0[rows, None])
            val = np.where(sub["option"][:, None], pnl + base_v, 0.0)
            dvalue[np.ix_(rows, np.arange(k * n_s, (k + 1) * n_s))] = val
        name = u if (not segregated or settle == "USD") else f"{u} ({u}-settled)"
        segments.append((name, k * n_s, (k + 1) * n_s))
        for (s, d, w, ext) in base:
            lab = f"{name}: spot {_pct(s)}, {vol_label[d]}"
            labels.append(lab + (f" (extended, weight {w:.3g})" if ext and w != 1.0 else ""))
    stable = market.spot.get(cfg.stablecoin)
    base_scale = 1.0 / float(stable) if stable is not None else 1.0
    if held and base_scale != 1.0:
        # Derive values the base asset in the stablecoin: b * spot * m / stablePrice (module doc)
        rows_b = np.flatnonzero([s.is_base for s in specs])
        matrix[rows_b] *= base_scale
    basis = _basis_inputs(specs, arr, seg_of, cfg, market.rate, segregated) if cfg.basis_shock > 0 else None
    delta = _delta_notional(specs, arr)
    im_mult, mm_frac = cfg.im_multiplier, cfg.mm_fraction
    peg = market.spot.get(cfg.stablecoin)
    if cfg.peg_loss_factor > 0 and peg is not None and peg < cfg.peg_loss_threshold:
        # Derive: the IM factor grows as the stablecoin depegs; MM (= IM / imFactor) is unchanged
        mm_dollars_per_im = cfg.mm_fraction * cfg.im_multiplier
        im_mult = cfg.im_multiplier + (cfg.peg_loss_threshold - float(peg)) * cfg.peg_loss_factor
        mm_frac = mm_dollars_per_im / im_mult
    groups, gcharge, fcharge = _contingency_inputs(specs, market, cfg.short_option_contingency,
                                                   cfg.futures_contingency, cfg.base_contingency)
    og, og_names = offset_groups_of(specs)
    conf, conf_charge = _confidence_inputs(specs, market, cfg)
    matrix.setflags(write=False)
    if dvalue is not None:
        dvalue.setflags(write=False)
    return ScenarioPnL(
        matrix=matrix,
        instruments=tuple(s.name for s in specs),
        labels=tuple(labels),
        weights=np.tile(wts, len(seg_keys)),
        segments=tuple(segments),
        specs=specs,
        method="risk_matrix",
        params={"config": cfg.as_dict(), "valuation_time": market.valuation_time.isoformat(),
                "rate": market.rate},
        spot={u: market.spot_of(u) for u in sorted({s.underlying for s in specs})},
        option_groups=groups,
        option_group_charge=gcharge,
        futures_charge=fcharge,
        offset_groups=og,
        offset_group_names=og_names,
        im_multiplier=im_mult,
        mm_fraction=mm_frac,
        option_contingency_rate=cfg.short_option_contingency,
        futures_contingency_rate=cfg.futures_contingency,
        delta_notional=delta,
        delta_segments=seg_of,
        delta_shock_max=cfg.delta_shock_max,
        delta_shock_threshold=cfg.delta_shock_threshold,
        basis_up=None if basis is None else basis[0],
        basis_down=None if basis is None else basis[1],
        basis_segment=None if basis is None else basis[2],
        discount_value=dvalue,
        discount_group=None if disc is None else disc[0],
        discount_factor=None if disc is None else disc[1],
        discount_segment=None if disc is None else disc[2],
        confidence=conf,
        confidence_charge=conf_charge,
        confidence_threshold=cfg.confidence_threshold,
        confidence_factor=cfg.confidence_factor,
        base_contingency_rate=cfg.base_contingency,
        base_value_scale=base_scale if held else 1.0,
    )


def _discount_groups(specs: Sequence[InstrumentSpec], arr: Mapping[str, np.ndarray], seg_of: np.ndarray,
                     cfg: RiskMatrixConfig, rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Static-discount groups: (segment, expiry) of every option; ``d`` and segment of each group (module doc)."""
    group = np.full(len(specs), -1, dtype=np.int64)
    keys: dict[tuple[int, Any], int] = {}
    t_of: list[float] = []
    for i in np.flatnonzero(arr["option"]):
        key = (int(seg_of[i]), specs[int(i)].expiry)
        if key not in keys:
            keys[key] = len(keys)
            t_of.append(float(arr["T"][i]))
        group[i] = keys[key]
    if not keys:
        return None
    d = cfg.static_discount_factor(np.asarray(t_of), rate)
    return group, d, np.array([k[0] for k in keys], dtype=np.int64)


def _confidence_inputs(specs: Sequence[InstrumentSpec], market: MarketState,
                       cfg: RiskMatrixConfig) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per-instrument confidence and its IM charge per |contract| (module doc); ``None`` when nothing is charged."""
    if cfg.confidence_factor <= 0:
        return None, None
    conf = np.array([market.confidence_of(s) for s in specs], dtype=float)
    low = conf < cfg.confidence_threshold
    if not low.any():
        return conf, None
    notional = np.array([s.contract_size if (s.inverse and not s.is_option) else
                         s.contract_size * market.spot_of(s.underlying) for s in specs])
    return conf, np.where(low, (1.0 - conf) * cfg.confidence_factor * notional, 0.0)


def _basis_inputs(specs: Sequence[InstrumentSpec], arr: Mapping[str, np.ndarray], seg_of: np.ndarray,
                  cfg: RiskMatrixConfig, rate: float, coin_measure: bool,
                  ) -> tuple[sparse.csr_matrix, sparse.csr_matrix, np.ndarray] | None:
    """Basis-contingency P&L per option and (segment, expiry) group, scaled by ``add + mult * T`` (module doc)."""
    # options, and dated futures (same expiry, same forward: our extension, Derive lists none); not perpetuals
    opt = np.flatnonzero(arr["option"] | np.array([s.expiry is not None for s in specs]))
    if opt.size == 0:
        return None
    keys: dict[tuple[int, Any], int] = {}
    cols = np.empty(opt.size, dtype=np.int64)
    for n, i in enumerate(opt):
        key = (int(seg_of[i]), specs[int(i)].expiry)
        cols[n] = keys.setdefault(key, len(keys))
    sub = {k: v[opt] for k, v in arr.items()}
    m = np.broadcast_to(np.array([1.0 + cfg.basis_shock, 1.0 - cfg.basis_shock]), (opt.size, 2))
    pnl = revalue(sub, m, np.ones((opt.size, 2)), rate=rate, coin_measure=coin_measure)
    factor = cfg.basis_add_factor + cfg.basis_mult_factor * arr["T"][opt]
    shape = (len(specs), len(keys))
    up = sparse.csr_matrix((pnl[:, 0] * factor, (opt, cols)), shape=shape)
    down = sparse.csr_matrix((pnl[:, 1] * factor, (opt, cols)), shape=shape)
    return up, down, np.array([k[0] for k in keys], dtype=np.int64)


def _delta_notional(specs: Sequence[InstrumentSpec], arr: Mapping[str, np.ndarray]) -> np.ndarray:
    """USD delta per contract (``dV/dF * F`` for options, the notional for delta-one contracts)."""
    from margincal.pricing.black76 import black76_greeks

    F, cs, opt, inv = arr["F"], arr["cs"], arr["option"], arr["inverse"]
    out = np.where(inv, cs, cs * F)
    if opt.any():
        o = np.flatnonzero(opt)
        g = black76_greeks(F[o], arr["K"][o], arr["T"][o], arr["vol"][o], arr["call"][o])
        # inverse: coin delta (dV/dF - V/F) in USD, the delta Deribit reports for coin-settled options
        out[o] = cs[o] * (g.delta * F[o] - np.where(inv[o], g.price, 0.0))
    return out.astype(float)


__all__ = [
    "DERIBIT_SOURCES",
    "DERIVE_SOURCES",
    "PRESETS",
    "RiskMatrixConfig",
    "ScenarioPnL",
    "dampened_weights",
    "deribit_like",
    "derive_like",
    "instrument_arrays",
    "revalue",
    "scenario_pnl_matrix",
    "settlement_of",
]
