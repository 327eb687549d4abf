"""Accounts: positions, collateral in several currencies, cross / isolated mode, margin ratio, liquidation prices.

An :class:`Account` holds delta-one positions (linear = USD(T)-margined, or
inverse = coin-margined with a USD face per contract), collateral balances in
several currencies (``{"USDT": 10_000, "BTC": 0.5, "USDE": 2_000}``) with
their haircuts, and a margin mode per position: ``cross`` positions share the
cross wallet, ``isolated`` positions carry their own margin.

Conventions (Binance USD-M / COIN-M, the venues with the most detailed
published formulas; see docs/accounts.md for the sources):

* maintenance margin of a position with notional ``N`` (quote currency for
  linear, coin for inverse) is ``N * mmr - cum``, where ``mmr`` and the
  maintenance amount ``cum`` are those of the bracket that ``N`` falls in;
* ``margin balance = wallet balance + unrealised P&L``; for the cross wallet
  the wallet balance is the haircut collateral value in USD;
* ``margin ratio = maintenance margin / margin balance`` (Binance's
  definition: the account is liquidated when it reaches 100%).
  :attr:`AccountView.margin_ratio` follows it; ``1 / margin_ratio`` is the
  "equity / MM" ratio other venues (dYdX, Deribit) display;
* the liquidation price of a position is the mark price of its underlying at
  which the margin balance of its wallet equals the maintenance margin, all
  other prices unchanged.

Closed forms (one position in its wallet, one bracket) are
:func:`linear_liquidation_price` and :func:`inverse_liquidation_price`,
Binance's published formulas; :meth:`Account.liquidation_price` solves the
general cross case numerically (``scipy.optimize.brentq``), which also moves
collateral priced in the same coin (a BTC balance backing a long BTC perp
falls with it) and steps through the brackets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import brentq

from margincal.errors import ConfigError, DataError

MODES = ("cross", "isolated")


# ---------------------------------------------------------------- brackets


@dataclass(frozen=True)
class Bracket:
    """One maintenance bracket: notional in ``[floor, cap)`` has rate ``mmr`` and maintenance amount ``cum``."""

    floor: float
    cap: float
    mmr: float
    cum: float = 0.0


def maintenance_amounts(floors: Sequence[float], rates: Sequence[float]) -> np.ndarray:
    """Binance's maintenance amounts: ``cum_n = floor_n (mmr_n - mmr_{n-1}) + cum_{n-1}``, ``cum_1 = 0``.

    The amount makes ``N * mmr - cum`` continuous across bracket floors.
    """
    f = np.asarray(floors, dtype=float)
    r = np.asarray(rates, dtype=float)
    if f.shape != r.shape or f.size == 0:
        raise ConfigError("floors and rates must be non-empty and of equal length")
    cum = np.zeros(f.size)
    for k in range(1, f.size):
        cum[k] = f[k] * (r[k] - r[k - 1]) + cum[k - 1]
    return cum


def brackets_from_table(floors: Sequence[float], caps: Sequence[float], rates: Sequence[float],
                        cums: Sequence[float] | None = None) -> tuple[Bracket, ...]:
    """Brackets from table columns; ``cums`` defaults to :func:`maintenance_amounts`."""
    c = maintenance_amounts(floors, rates) if cums is None else np.asarray(cums, dtype=float)
    out = tuple(Bracket(float(a), float(b), float(m), float(x)) for a, b, m, x in zip(floors, caps, rates, c,
                                                                                      strict=True))
    for b in out:
        if not (0 <= b.mmr < 1 and b.cap > b.floor >= 0):
            raise ConfigError(f"bracket {b}: need 0 <= floor < cap and 0 <= mmr < 1")
    return out


def bracket_for(brackets: Sequence[Bracket], notional: float) -> Bracket:
    """The bracket whose ``[floor, cap)`` holds ``notional`` (the last one above every cap)."""
    for b in brackets:
        if notional < b.cap:
            return b
    return brackets[-1]


# ---------------------------------------------------------------- closed forms


def linear_liquidation_price(wallet_balance: float, quantity: float, entry_price: float, mmr: float,
                             cum: float = 0.0, *, other_mm: float = 0.0, other_upnl: float = 0.0) -> float:
    """Binance USD-M liquidation price of one position (one-way mode), in quote currency.

    ``LP = (WB - TMM + UPNL + cum - side |Q| EP) / (|Q| mmr - side |Q|)``
    with ``side = sign(quantity)``; ``TMM``/``UPNL`` are the maintenance margin
    and unrealised P&L of the wallet's other positions (0 when isolated).
    Returns ``nan`` when no positive price liquidates the position.
    """
    q = abs(float(quantity))
    if q == 0:
        return math.nan
    side = 1.0 if quantity > 0 else -1.0
    lp = (wallet_balance - other_mm + other_upnl + cum - side * q * entry_price) / (q * mmr - side * q)
    return float(lp) if lp > 0 else math.nan


def inverse_liquidation_price(wallet_balance: float, contracts: float, contract_size: float, entry_price: float,
                              mmr: float, cum: float = 0.0, *, other_mm: float = 0.0,
                              other_upnl: float = 0.0) -> float:
    """Binance COIN-M liquidation price of one position (one-way mode).

    ``LP = |Q| (mmr + side) / ((WB - TMM + UPNL + cum) / CS + side |Q| / EP)``
    with ``Q`` contracts of face ``CS`` USD, wallet and amounts in coin.
    Returns ``nan`` when no positive price liquidates the position.
    """
    q = abs(float(contracts))
    if q == 0:
        return math.nan
    side = 1.0 if contracts > 0 else -1.0
    den = (wallet_balance - other_mm + other_upnl + cum) / contract_size + side * q / entry_price
    if den == 0:
        return math.nan
    lp = q * (mmr + side) / den
    return float(lp) if lp > 0 else math.nan


def liquidation_price_with_brackets(wallet_balance: float, quantity: float, entry_price: float,
                                    brackets: Sequence[Bracket], *, inverse: bool = False,
                                    contract_size: float = 1.0, **others: float) -> float:
    """Closed-form liquidation price re-solved in the bracket of the notional AT the liquidation price.

    Binance: "if your position (calculated at the liquidation price) and the
    current position (calculated at the opening price) are of different
    levels, substitute the maintenance rate and amount of the position level
    at the liquidation price and recalculate". The first self-consistent
    bracket (in table order) is returned.
    """
    for b in brackets:
        if inverse:
            lp = inverse_liquidation_price(wallet_balance, quantity, contract_size, entry_price, b.mmr, b.cum,
                                           **others)
            notional = abs(quantity) * contract_size / lp if lp == lp else math.nan
        else:
            lp = linear_liquidation_price(wallet_balance, quantity, entry_price, b.mmr, b.cum, **others)
            notional = abs(quantity) * lp if lp == lp else math.nan
        if lp == lp and b.floor <= notional < b.cap:
            return lp
    return math.nan


# ---------------------------------------------------------------- account model


@dataclass(frozen=True)
class AccountPosition:
    """A delta-one position.

    ``quantity``: signed coins (linear) or signed contracts (inverse, each of
    ``contract_size`` USD face). ``settlement``: the wallet currency (the
    coin for inverse, e.g. ``"USDT"`` for linear). ``brackets`` (or a flat
    ``mmr``) give the maintenance rate. ``isolated_margin`` is the margin
    posted to an isolated position, in its settlement currency.
    """

    instrument: str
    underlying: str
    quantity: float
    entry_price: float
    inverse: bool = False
    contract_size: float = 1.0
    settlement: str = "USDT"
    mode: str = "cross"
    isolated_margin: float = 0.0
    mmr: float | None = 0.005
    brackets: tuple[Bracket, ...] = ()
    im_rate: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"{self.instrument}: mode is {self.mode!r}; use 'cross' or 'isolated'")
        if not (math.isfinite(self.quantity) and math.isfinite(self.entry_price) and self.entry_price > 0):
            raise ConfigError(f"{self.instrument}: quantity and entry_price must be finite, entry_price > 0")
        if not self.brackets and (self.mmr is None or not 0 <= self.mmr < 1):
            raise ConfigError(f"{self.instrument}: mmr is {self.mmr}; give 0 <= mmr < 1 or brackets")
        if self.mode == "isolated" and not self.isolated_margin >= 0:
            raise ConfigError(f"{self.instrument}: isolated_margin is {self.isolated_margin}; it must be >= 0")
        if self.inverse and self.settlement.upper() != self.underlying.upper():
            raise ConfigError(f"{self.instrument}: an inverse contract settles in {self.underlying}, "
                              f"not {self.settlement}")

    def notional(self, price: float) -> float:
        """Absolute notional in the settlement currency (USD-like for linear, coin for inverse)."""
        if self.inverse:
            return abs(self.quantity) * self.contract_size / price
        return abs(self.quantity) * self.contract_size * price

    def upnl(self, price: float) -> float:
        """Unrealised P&L in the settlement currency (inverse: ``Q CS (1/EP - 1/P)`` coins)."""
        if self.inverse:
            return self.quantity * self.contract_size * (1.0 / self.entry_price - 1.0 / price)
        return self.quantity * self.contract_size * (price - self.entry_price)

    def _rate(self, notional: float) -> tuple[float, float]:
        if self.brackets:
            b = bracket_for(self.brackets, notional)
            return b.mmr, b.cum
        return float(self.mmr), 0.0  # type: ignore[arg-type]

    def maintenance_margin(self, price: float) -> float:
        """``N mmr - cum`` in the settlement currency."""
        n = self.notional(price)
        mmr, cum = self._rate(n)
        return max(n * mmr - cum, 0.0)

    def initial_margin(self, price: float) -> float:
        """``N * im_rate`` (default: twice the maintenance rate of the bracket), settlement currency."""
        n = self.notional(price)
        rate = self.im_rate if self.im_rate is not None else 2.0 * self._rate(n)[0]
        return n * rate


@dataclass(frozen=True)
class AccountView:
    """What an account looks like at one set of prices (all amounts USD unless named ``_coin``)."""

    equity: float
    collateral_value: float
    collateral_after_haircuts: float
    unrealised_pnl: float
    margin_balance: float
    initial_margin: float
    maintenance_margin: float
    margin_ratio: float
    available: float
    liquidation_prices: dict[str, float]
    isolated: dict[str, dict[str, float]]
    haircuts: dict[str, float]
    driving_scenario: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            return v
        return {k: clean(v) for k, v in self.__dict__.items()}


def _usd_rate(ccy: str, prices: Mapping[str, float]) -> float:
    c = ccy.upper()
    if c in prices:
        return float(prices[c])
    if c in ("USD", "USDT", "USDC"):
        return 1.0
    raise DataError(f"no USD price for {ccy}: add prices[{c!r}]")


@dataclass(frozen=True)
class Account:
    """Positions, collateral balances and haircuts (fractions of value, per currency).

    ``prices`` maps every non-USD currency and underlying to its USD mark,
    e.g. ``{"BTC": 68_800, "USDE": 0.999}``; USD, USDT and USDC default to 1.
    """

    positions: tuple[AccountPosition, ...]
    balances: Mapping[str, float]
    haircuts: Mapping[str, float] = field(default_factory=dict)
    name: str = "account"

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", tuple(self.positions))
        for c, h in self.haircuts.items():
            if not 0.0 <= h <= 1.0:
                raise ConfigError(f"haircut of {c} is {h}; it must be in [0, 1]")
        names = [p.instrument for p in self.positions]
        if len(set(names)) != len(names):
            raise ConfigError("each instrument may appear once per account (net it first)")

    # ----- valuation at prices
    def _price(self, p: AccountPosition, prices: Mapping[str, float]) -> float:
        return _usd_rate(p.underlying, prices)

    def collateral(self, prices: Mapping[str, float]) -> tuple[float, float]:
        """(value, value after haircuts) of the cross wallet balances, USD."""
        raw = adj = 0.0
        for c, amount in self.balances.items():
            v = amount * _usd_rate(c, prices)
            raw += v
            h = self.haircuts.get(c.upper(), self.haircuts.get(c, 0.0))
            adj += v * (1.0 - h) if v > 0 else v  # debts are not haircut
        return raw, adj

    def _cross_totals(self, prices: Mapping[str, float]) -> tuple[float, float, float]:
        """(unrealised P&L, MM, IM) of the cross positions, USD."""
        upnl = mm = im = 0.0
        for p in self.positions:
            if p.mode != "cross":
                continue
            px = self._price(p, prices)
            fx = _usd_rate(p.settlement, prices)
            upnl += p.upnl(px) * fx
            mm += p.maintenance_margin(px) * fx
            im += p.initial_margin(px) * fx
        return upnl, mm, im

    def cross_health(self, prices: Mapping[str, float]) -> float:
        """Cross margin balance minus cross maintenance margin (USD); <= 0 means liquidation."""
        _, adj = self.collateral(prices)
        upnl, mm, _ = self._cross_totals(prices)
        return adj + upnl - mm

    def isolated_health(self, p: AccountPosition, price: float) -> float:
        """Isolated margin + unrealised P&L - maintenance margin, settlement currency."""
        return p.isolated_margin + p.upnl(price) - p.maintenance_margin(price)

    def liquidation_price(self, instrument: str, prices: Mapping[str, float]) -> float:
        """Mark price of the instrument's underlying at which its wallet hits maintenance (``nan``: never).

        Isolated: the position alone against its margin. Cross: every cross
        position and every collateral balance priced in that underlying move
        together; other prices stay at ``prices``. Solved by bracketing the
        sign change of the health on a log grid, then ``brentq`` (xtol 1e-10
        relative).
        """
        p = next((x for x in self.positions if x.instrument == instrument), None)
        if p is None:
            raise DataError(f"{self.name}: no position in {instrument}")
        u = p.underlying.upper()
        px0 = self._price(p, prices)

        if p.mode == "isolated":
            def h(x: float) -> float:
                return self.isolated_health(p, x)
        else:
            def h(x: float) -> float:
                q = dict(prices)
                q[u] = x
                return self.cross_health(q)
        h0 = h(px0)
        if h0 <= 0:
            return px0
        direction = -1.0 if p.quantity > 0 else 1.0
        grid = px0 * np.exp(direction * np.linspace(0.0, 12.0, 1201)[1:])
        prev = px0
        for x in grid:
            if h(x) <= 0:
                return float(brentq(h, min(prev, x), max(prev, x), xtol=1e-12 * px0, rtol=1e-14))
            prev = x
        return math.nan

    def view(self, prices: Mapping[str, float]) -> AccountView:
        """Equity, haircut collateral, IM/MM, margin ratio and liquidation prices at ``prices``."""
        raw, adj = self.collateral(prices)
        upnl, mm, im = self._cross_totals(prices)
        iso: dict[str, dict[str, float]] = {}
        iso_eq = 0.0
        for p in self.positions:
            if p.mode != "isolated":
                continue
            px = self._price(p, prices)
            fx = _usd_rate(p.settlement, prices)
            eq = (p.isolated_margin + p.upnl(px)) * fx
            iso_eq += eq
            pm = p.maintenance_margin(px) * fx
            iso[p.instrument] = {"margin_balance": eq, "maintenance_margin": pm,
                                 "margin_ratio": pm / eq if eq > 0 else math.inf}
        mb = adj + upnl
        liq = {p.instrument: self.liquidation_price(p.instrument, prices) for p in self.positions}
        return AccountView(
            equity=raw + upnl + iso_eq,
            collateral_value=raw,
            collateral_after_haircuts=adj,
            unrealised_pnl=upnl,
            margin_balance=mb,
            initial_margin=im,
            maintenance_margin=mm,
            margin_ratio=mm / mb if mb > 0 else math.inf,
            available=mb - im,
            liquidation_prices=liq,
            isolated=iso,
            haircuts={c: float(h) for c, h in self.haircuts.items()},
            params={"prices": {k: float(v) for k, v in prices.items()}, "account": self.name},
        )


__all__ = [
    "MODES",
    "Account",
    "AccountPosition",
    "AccountView",
    "Bracket",
    "bracket_for",
    "brackets_from_table",
    "inverse_liquidation_price",
    "linear_liquidation_price",
    "liquidation_price_with_brackets",
    "maintenance_amounts",
]
