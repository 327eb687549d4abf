"""Cascade v2: many paths at once, mark-price triggers, partial liquidation, endogenous liquidity, agents.

Everything is an array of shape (paths, accounts) or (paths,), so 10,000 Monte Carlo paths run as one
numpy computation (hand-written: no library simulates liquidation engines; the v1 one-path engine
:func:`margincal.stress.cascade.core.simulate_cascade` keeps the level-by-level reference).

Model, one step ``t`` (a path sub-step, 15 minutes in replays, 1 hour in Monte Carlo)
----------------------------------------------------------------------------------------
**Prices.** ``index[t]`` (exogenous: spot constituents, :mod:`.mark`) and ``ref[t]`` (the perp's
own price without our population's flow; = index in Monte Carlo). The book around ``ref`` has
linear density: ``D`` base units per side within 2%, so the level at net sold volume ``v`` trades
at ``ref (1 - k v)``, ``k = 0.02 / D``, clipped to +/-60%; a seller also pays the half spread ``s``.
Last trade = ``ref (1 - k V)``. Mark = :class:`MarkRule` (index + 30 s EMA of the basis, or last).

**Rounds** (``round_seconds`` apart, at most ``max_rounds`` a step): accounts whose margin equity at
the trigger price is below maintenance are liquidated; all liquidations of a round and the stop
orders hit in it are one net market order per path, every participant gets its VWAP.

**Liquidation size** (``liquidation``): ``"full"``; ``"partial"`` (Binance/dYdX style): close the
fraction ``x`` that brings equity back to ``MM x (1 + buffer)`` net of the fee,
``x = (m(1+b) N - E + 0.01) / (N (m(1+b) - fee))`` (one cent above, against rounding), all of it when ``E < full_below x MM`` or ``x`` > 1;
``"ladder"`` (risk-limit tiers): close down to the notional cap of the next lower tier.
**Liquidator capacity**: at most ``capacity`` (quote currency) of notional liquidated per step and
path; above it every triggered account's ``x`` is scaled pro rata and the rest waits.

**Accounts** (:class:`Accounts`): a linear perp (base units) and an inverse perp (1-USD contracts,
settled in BTC) per account; collateral in quote cents, BTC satoshis and a stablecoin (cents of
coin) with haircuts. Cross margin = one equity over everything; isolated = one position per
account (an isolated position *is* an account). Margin equity
``cash + sats I (1 - h_btc) + stable S (1 - h_stable) + upnl_linear + upnl_inverse``.

**Settlement, exact integers.** Linear P&L floor(100 q (p - e)) cents; inverse floor(1e8 n (1/e -
1/p)) satoshis; fee floor(100 fee notional) cents to the insurance fund, limited to what the account
is worth; funding every ``funding_every`` steps against the external market. On full close the
BTC and stablecoin balances are sold to the external market at ``price (1 - haircut)``; a negative
cash balance left is bad debt: the fund pays accounts in index order while it can. The rest:

* ``adl="ranked"`` (default): the round is redone without the bankrupt positions the fund cannot
  pay; they are closed at the mark and absorbed by the open opposite-side accounts in profit, in
  rank order of profit ratio x effective leverage ``(upnl / wallet) (notional / (wallet + upnl))``
  (v1's ``_adl``), until the quantity is covered; the counterparties close the quantity taken at the
  mark and pay the deficit pro rata to it (largest remainder in rank order), i.e. both sides trade at
  the bankruptcy price; a counterparty never pays more than its cash after closing. Unabsorbed or
  unpaid deficit, and deficits of option-only accounts, are ``uncovered``. ADL volume = notional taken.
* ``adl="pro_rata"``: the bankrupt position goes through the book; the rest is clawed back pro rata
  from the cash of open opposite-side accounts, or left ``uncovered``.

**Options** (:class:`OptionLeg`, :func:`accounts_from_model`): one European BTC option line per
account, Black-76 on the index (fixed vol, r = 0), value change in equity, Derive's standard MM on
shorts, closed with the same fraction ``x`` against the external option market at the model value. Per path, exactly: ``cash + fund + external`` cents,
``sats + external_sats`` and ``stable + external_stable`` are constant.

**Liquidity and agents** (each switchable off in :class:`Agents`):
* market makers: when a step's index move is ``z > z0`` EWMA sigmas, depth is withdrawn,
  ``D <- D exp(-gamma (z - z0))``, and each round's liquidation volume ``Q`` withdraws
  ``D <- D exp(-eta |Q| / D)``; never below ``floor x D0``; depth replenishes toward ``D0`` at
  ``rho`` per hour (``D0 - D`` decays as ``exp(-rho t)``; default 1.1, measured: the spread recovery after
  the FTX and 2025-10-10 crashes, :func:`.committee.measured_replenishment`); half spread ``s = s0 sqrt(D0 / D)`` capped at 1%. Off: ``D = D0``, ``s = s0``.
* book resilience: between steps ``V <- (1 - resilience) V`` (consumed depth refilled).
* arbitrageurs: after every round and between steps ``V`` is pulled toward 0 (last toward index)
  by at most ``arb_per_minute x D0`` base units per minute of elapsed time (a capital bound, not a
  fraction: a large gap closes slowly; default 0.1, measured: the decay of the perp-vs-spot basis after the
  two crashes, 0.05-0.19, :func:`.committee.measured_replenishment`). Off: no pull.
* stop-loss clusters: external stop orders of ``stop_size`` x OI at each level
  ``start (1 -/+ stop_levels)``, sent as market orders when the last price crosses the level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np

from margincal.errors import ConfigError
from margincal.margin.account import Account, AccountPosition
from margincal.margin.portfolio.standard import derive_option_margin
from margincal.pricing.black76 import black76_price
from margincal.stress.cascade.mark import MarkRule

_SAT = 1e8
_YEAR = 365.0 * 86400.0
_OPT_FIELDS = ("opt_qty", "opt_strike", "opt_expiry", "opt_call", "opt_vol", "opt_entry")
_CLIP = 0.6


@dataclass(frozen=True)
class Accounts:
    """Minimal cross / isolated account set (pluggable: any object with these arrays works).

    Arrays of length N. ``mm_rate`` per account (the policy's maintenance rate); ``tiers``: the
    risk-limit ladder as (notional cap, mm rate) rows, used by ``liquidation="ladder"``.
    """

    lin_qty: np.ndarray
    lin_entry: np.ndarray
    inv_contracts: np.ndarray
    inv_entry: np.ndarray
    cash_c: np.ndarray
    btc_sats: np.ndarray
    stable_c: np.ndarray
    mm_rate: np.ndarray
    im_rate: np.ndarray
    isolated: np.ndarray
    labels: dict[str, Any] = field(default_factory=dict)
    # one European BTC option line per account (quantity 0 = none), USD-margined, Black-76 on the index
    opt_qty: np.ndarray | None = None
    opt_strike: np.ndarray | None = None
    opt_expiry: np.ndarray | None = None  # years to expiry at the first step
    opt_call: np.ndarray | None = None
    opt_vol: np.ndarray | None = None  # fixed (sticky-strike) Black-76 volatility
    opt_entry: np.ndarray | None = None  # premium per unit at the opening price (USD)
    # per-account collateral haircuts (NaN: the MarketConfig value)
    haircut_btc: np.ndarray | None = None
    haircut_stable: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = np.asarray(self.lin_qty).size
        for name in ("lin_entry", "inv_contracts", "inv_entry", "cash_c", "btc_sats", "stable_c", "mm_rate",
                     "im_rate", "isolated"):
            if np.asarray(getattr(self, name)).shape != (n,):
                raise ConfigError(f"Accounts.{name} must have {n} values")
        for name in ("cash_c", "btc_sats", "stable_c"):
            if np.asarray(getattr(self, name)).dtype.kind != "i":
                raise ConfigError(f"Accounts.{name} must be integers (cents / satoshis)")
        opt = [getattr(self, k) for k in _OPT_FIELDS]
        if any(o is not None for o in opt):
            if any(o is None or np.asarray(o).shape != (n,) for o in opt):
                raise ConfigError(f"Accounts option fields {', '.join(_OPT_FIELDS)} must all have {n} values")
            if np.any(np.asarray(self.opt_qty) != 0) and not (
                    np.all(np.asarray(self.opt_strike)[np.asarray(self.opt_qty) != 0] > 0)
                    and np.all(np.asarray(self.opt_expiry) >= 0) and np.all(np.asarray(self.opt_vol) >= 0)):
                raise ConfigError("Accounts options: strike > 0, expiry >= 0 and vol >= 0")
        for name in ("haircut_btc", "haircut_stable"):
            h = getattr(self, name)
            if h is not None and (np.asarray(h).shape != (n,) or np.any(np.asarray(h) >= 1) or np.any(np.asarray(h) < 0)):
                raise ConfigError(f"Accounts.{name} must have {n} values in [0, 1) (NaN: the market default)")

    @property
    def has_options(self) -> bool:
        return self.opt_qty is not None and bool(np.any(np.asarray(self.opt_qty) != 0))

    @property
    def n(self) -> int:
        return int(np.asarray(self.lin_qty).size)

    def notional(self, price: float) -> np.ndarray:
        return np.abs(self.lin_qty) * price + np.abs(self.inv_contracts)


def build_accounts(notional: np.ndarray, side: np.ndarray, leverage: np.ndarray, price: float, *,
                   im_rate: float | np.ndarray, mm_rate: float | np.ndarray, seed: int = 1,
                   inverse_share: float = 0.15, cross_share: float = 0.10, btc_collateral_share: float = 0.10,
                   stable_collateral_share: float = 0.20) -> Accounts:
    """Open accounts at ``price`` from a drawn population (notional, side, desired leverage).

    Shares (assumptions, documented in docs/stress_testing.md): ``inverse_share`` of accounts trade
    the inverse perp with BTC collateral; ``cross_share`` hold a linear AND an inverse position on one
    cross-margined account (half the notional each, opposite legs not allowed: same side); of the linear
    accounts, ``btc_collateral_share`` post BTC and ``stable_collateral_share`` a USD stablecoin
    instead of USDT. Leverage is capped at ``1 / im_rate``.
    """
    rng = np.random.default_rng(seed)
    n = notional.size
    im = np.broadcast_to(np.asarray(im_rate, float), (n,)).copy()
    mm = np.broadcast_to(np.asarray(mm_rate, float), (n,)).copy()
    lev = np.minimum(leverage, 1.0 / im)
    margin = notional / lev
    u = rng.random(n)
    inv = u < inverse_share
    cross = (u >= inverse_share) & (u < inverse_share + cross_share)
    lin_notional = np.where(inv, 0.0, np.where(cross, 0.5, 1.0) * notional)
    inv_notional = notional - lin_notional
    lin_qty = side * lin_notional / price
    inv_c = side * np.round(inv_notional)
    v = rng.random(n)
    btc_coll = inv | cross | (~inv & (v < btc_collateral_share))
    stab_coll = ~btc_coll & (v < btc_collateral_share + stable_collateral_share)
    usd_coll = ~btc_coll & ~stab_coll
    cash_c = np.where(usd_coll, np.round(margin * 100), 0).astype(np.int64)
    sats = np.where(btc_coll, np.round(margin / price * _SAT), 0).astype(np.int64)
    stab = np.where(stab_coll, np.round(margin * 100), 0).astype(np.int64)
    return Accounts(lin_qty, np.full(n, price), inv_c.astype(float), np.full(n, price), cash_c, sats, stab, mm, im,
                    ~cross, {"inverse": int(inv.sum()), "cross": int(cross.sum()), "btc_collateral": int(btc_coll.sum()),
                             "stable_collateral": int(stab_coll.sum()), "usdt_collateral": int(usd_coll.sum())})


@dataclass(frozen=True)
class OptionLeg:
    """A European BTC option held on an account's cross wallet (v2: one line per account).

    ``quantity`` signed (BTC of underlying; negative = sold), ``expiry_years`` at the first step, ``vol`` the
    fixed Black-76 volatility (sticky strike: the same vol for this strike on every step of the path).
    """

    quantity: float
    strike: float
    expiry_years: float
    is_call: bool
    vol: float


_USD = ("USD", "USDT", "USDC")


def accounts_from_model(accounts: Sequence[Account], price: float, *, stable: str = "USDE",
                        options: Mapping[str, OptionLeg] | None = None) -> Accounts:
    """v2 :class:`Accounts` from account-model objects (:class:`margincal.margin.account.Account`).

    Mapping (the nearest v2 form; anything v2 cannot hold is refused with a one-line error):

    * the cross wallet of each account is one v2 account: its linear BTC position (coins x contract size)
      and its inverse BTC position (contracts x contract size = USD face), at most one of each;
      balances in USD / USDT / USDC -> cash cents, BTC -> satoshis, ``stable`` (the coin that can depeg)
      -> stablecoin cents; its haircuts on BTC and ``stable`` become per-account haircuts;
    * every isolated position is a v2 account of its own (``isolated`` True), its isolated margin in its
      settlement currency (USDT -> cash, BTC -> satoshis, haircut 0: the settlement coin);
    * maintenance and initial rates: the account model's MM and IM at ``price`` divided by the notional
      (= the flat ``mmr``, or the bracket's effective rate ``(N mmr - cum) / N`` at the opening notional);
    * ``options[account.name]``: an :class:`OptionLeg` on that cross wallet, opened at its Black-76
      value at ``price`` (the premium is the entry; ``cash`` is margin only, as for the perps).

    Every underlying must be BTC (v2 simulates one index).
    """
    if not price > 0:
        raise ConfigError(f"price is {price}; it must be > 0")
    stable = stable.upper()
    options = dict(options or {})
    rows: list[dict[str, Any]] = []
    for a in accounts:
        for pos in a.positions:
            if pos.underlying.upper() != "BTC":
                raise ConfigError(f"{a.name}: {pos.instrument} has underlying {pos.underlying}; v2 simulates BTC only")
        cross = [x for x in a.positions if x.mode == "cross"]
        lin = [x for x in cross if not x.inverse]
        inv = [x for x in cross if x.inverse]
        if len(lin) > 1 or len(inv) > 1:
            raise ConfigError(f"{a.name}: v2 holds one linear and one inverse BTC position per cross wallet")
        cash = sats = stab = 0
        for ccy, amount in a.balances.items():
            c = ccy.upper()
            if c == stable:
                stab += round(amount * 100)
            elif c in _USD:
                cash += round(amount * 100)
            elif c == "BTC":
                sats += round(amount * _SAT)
            else:
                raise ConfigError(f"{a.name}: balance in {ccy}; v2 holds USD(T/C), BTC and one stablecoin ({stable})")
        hc = {k.upper(): v for k, v in a.haircuts.items()}
        leg = options.pop(a.name, None)
        if cross or leg is not None:
            rows.append(_model_row(a.name, lin[0] if lin else None, inv[0] if inv else None, cash, sats, stab,
                                   hc.get("BTC", 0.0), hc.get(stable, 0.0), False, leg, price))
        for x in a.positions:
            if x.mode != "isolated":
                continue
            c_, s_ = (0, round(x.isolated_margin * _SAT)) if x.settlement.upper() == "BTC" else (
                round(x.isolated_margin * 100), 0)
            rows.append(_model_row(f"{a.name}/{x.instrument}", None if x.inverse else x, x if x.inverse else None,
                                   c_, s_, 0, 0.0, 0.0, True, None, price))
    if options:
        raise ConfigError(f"options given for unknown accounts: {', '.join(sorted(options))}")
    if not rows:
        raise ConfigError("no positions: give at least one account with a BTC position or an option")
    col = {k: [r[k] for r in rows] for k in rows[0]}
    ints = {k: np.asarray(col[k], dtype=np.int64) for k in ("cash_c", "btc_sats", "stable_c")}
    f = {k: np.asarray(col[k], dtype=float) for k in ("lin_qty", "lin_entry", "inv_contracts", "inv_entry", "mm_rate",
                                                    "im_rate", "opt_qty", "opt_strike", "opt_expiry", "opt_vol",
                                                    "opt_entry", "haircut_btc", "haircut_stable")}
    return Accounts(f["lin_qty"], f["lin_entry"], f["inv_contracts"], f["inv_entry"], ints["cash_c"],
                    ints["btc_sats"], ints["stable_c"], f["mm_rate"], f["im_rate"],
                    np.asarray(col["isolated"], dtype=bool), {"names": col["name"], "source": "margin.account"},
                    f["opt_qty"], f["opt_strike"], f["opt_expiry"], np.asarray(col["opt_call"], dtype=bool),
                    f["opt_vol"], f["opt_entry"], f["haircut_btc"], f["haircut_stable"])


def _model_row(name: str, lin: AccountPosition | None, inv: AccountPosition | None, cash: int, sats: int, stab: int,
               h_btc: float, h_stable: float, isolated: bool, leg: OptionLeg | None, price: float) -> dict[str, Any]:
    notional = mm = im = 0.0
    for x in (lin, inv):
        if x is not None:
            fx = price if x.inverse else 1.0  # inverse amounts are in coin
            notional += x.notional(price) * fx
            mm += x.maintenance_margin(price) * fx
            im += x.initial_margin(price) * fx
    ok = notional > 0
    row: dict[str, Any] = {
        "name": name, "lin_qty": lin.quantity * lin.contract_size if lin else 0.0,
        "lin_entry": lin.entry_price if lin else price,
        "inv_contracts": inv.quantity * inv.contract_size if inv else 0.0, "inv_entry": inv.entry_price if inv else price,
        "cash_c": cash, "btc_sats": sats, "stable_c": stab, "mm_rate": mm / notional if ok else 0.0,
        "im_rate": im / notional if ok else 0.0, "isolated": isolated, "haircut_btc": h_btc,
        "haircut_stable": h_stable, "opt_qty": 0.0, "opt_strike": price, "opt_expiry": 0.0, "opt_call": True,
        "opt_vol": 0.0, "opt_entry": 0.0}
    if leg is not None:
        if not (leg.strike > 0 and leg.expiry_years > 0 and leg.vol > 0):
            raise ConfigError(f"{name}: option strike, expiry_years and vol must be > 0")
        row.update(opt_qty=float(leg.quantity), opt_strike=float(leg.strike), opt_expiry=float(leg.expiry_years),
                   opt_call=bool(leg.is_call), opt_vol=float(leg.vol),
                   opt_entry=float(black76_price(price, leg.strike, leg.expiry_years, leg.vol, leg.is_call)))
    return row


@dataclass(frozen=True)
class Agents:
    """Switches and parameters of the market's agents (see the module doc)."""

    market_makers: bool = True
    arbitrageurs: bool = True
    stop_losses: bool = True
    z0: float = 3.0
    gamma: float = 0.02
    eta: float = 0.05
    floor: float = 2.0 / 89.0
    # measured on the bundled 5-minute Binance bars (committee.measured_replenishment, docs/stress_testing.md):
    # rho 0.98 (FTX) / 1.28 (2025-10-10) per hour, arb 0.19 / 0.053 per minute; defaults = geometric mean of the
    # two events, rounded (until h22: 4.0 and 0.5, assumed)
    rho_per_hour: float = 1.1
    arb_per_minute: float = 0.1
    stop_levels: tuple[float, ...] = (0.03, 0.05, 0.10)
    stop_size: float = 0.002


@dataclass(frozen=True)
class MarketConfig:
    """Book, mark, liquidation engine and fund (quote-currency amounts; ratios of the population's OI)."""

    depth_ratio: float | np.ndarray = 0.4  # calibrated centre, committee.DEPTH_CENTER (docs/stress_testing.md)
    half_spread: float = 0.0001
    resilience: float = 0.5
    mark: MarkRule = field(default_factory=MarkRule)
    liquidation: str = "partial"
    adl: str = "ranked"
    buffer: float = 0.5
    full_below: float = 0.5
    tiers: tuple[tuple[float, float], ...] = ((50_000.0, 0.004), (500_000.0, 0.005), (10_000_000.0, 0.01),
                                              (float("inf"), 0.025))
    capacity_ratio: float | None = None
    fee_rate: float = 0.005
    fund_ratio: float = 0.02
    haircut_btc: float | np.ndarray = 0.05  # an array: one per account (Accounts.haircut_btc)
    haircut_stable: float | np.ndarray = 0.02
    step_seconds: float = 900.0
    round_seconds: float = 5.0
    max_rounds: int = 40
    funding_every: int = 32
    agents: Agents = field(default_factory=Agents)

    def __post_init__(self) -> None:
        if self.liquidation not in ("full", "partial", "ladder"):
            raise ConfigError(f"liquidation is {self.liquidation!r}; use full, partial or ladder")
        if self.adl not in ("ranked", "pro_rata"):
            raise ConfigError(f"adl is {self.adl!r}; use ranked or pro_rata")
        if not (0 <= self.resilience <= 1 and 0 <= self.fee_rate < 0.1 and self.fund_ratio >= 0
                and np.all((np.asarray(self.haircut_btc) >= 0) & (np.asarray(self.haircut_btc) < 1))
                and np.all((np.asarray(self.haircut_stable) >= 0) & (np.asarray(self.haircut_stable) < 1))
                and self.max_rounds >= 1):
            raise ConfigError("MarketConfig: resilience in [0,1], fee in [0,0.1), fund >= 0, haircuts in [0,1)")
        if np.any(~(np.asarray(self.depth_ratio, float) > 0)):
            raise ConfigError("MarketConfig.depth_ratio must be > 0")


@dataclass(frozen=True)
class PathResults:
    """Per-path outcomes (arrays of length P) and the conservation residuals (must all be 0)."""

    bad_debt_c: np.ndarray
    fund_paid_c: np.ndarray
    socialised_c: np.ndarray
    uncovered_c: np.ndarray
    fees_c: np.ndarray
    fund_start_c: np.ndarray
    fund_end_c: np.ndarray
    fund_min_c: np.ndarray
    liquidated_notional: np.ndarray
    adl_notional: np.ndarray
    n_liquidations: np.ndarray
    max_dislocation: np.ndarray
    min_last: np.ndarray
    min_depth_ratio: np.ndarray
    conservation_c: np.ndarray
    conservation_sats: np.ndarray
    conservation_stable: np.ndarray
    last_path: np.ndarray
    mark_path: np.ndarray
    population_notional: float
    params: dict[str, Any] = field(default_factory=dict)
    final: dict[str, np.ndarray] = field(default_factory=dict)  # end state (P, N): cash_c, sats, lin_qty, ...

    @property
    def bad_debt(self) -> np.ndarray:
        return self.bad_debt_c / 100.0

    @property
    def fund_drawdown(self) -> np.ndarray:
        return np.maximum(self.fund_start_c - self.fund_min_c, 0) / 100.0


def _G(ref: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Integral of the linear book price from 0 to ``v`` (beyond +/-60% the last level's price)."""
    vmax = _CLIP / k
    vc = np.clip(v, -vmax, vmax)
    inside = ref * (vc - 0.5 * k * vc * vc)
    return inside + ref * (1.0 - _CLIP * np.sign(v)) * (v - vc)


def _last(ref: np.ndarray, k: np.ndarray, V: np.ndarray) -> np.ndarray:
    return ref * (1.0 - np.clip(k * V, -_CLIP, _CLIP))


def _floor(x: np.ndarray) -> np.ndarray:
    return np.floor(np.round(x, 6)).astype(np.int64)


_PER_PATH = ("q", "n", "o", "cash", "sats", "stab", "fund", "fund_min", "ext", "ext_s", "ext_u", "bad", "paid", "social",
             "uncov", "fees", "liq_not", "adl_not", "n_liq", "V", "ema", "disl", "min_last", "D", "hs", "stops", "used")


class _Sub:
    """Per-path state (every attribute has the paths as first axis); ``take``/``put`` select active paths."""

    q: np.ndarray
    n: np.ndarray
    o: np.ndarray
    cash: np.ndarray
    sats: np.ndarray
    stab: np.ndarray
    fund: np.ndarray
    fund_min: np.ndarray
    ext: np.ndarray
    ext_s: np.ndarray
    ext_u: np.ndarray
    bad: np.ndarray
    paid: np.ndarray
    social: np.ndarray
    uncov: np.ndarray
    fees: np.ndarray
    liq_not: np.ndarray
    adl_not: np.ndarray
    n_liq: np.ndarray
    V: np.ndarray
    ema: np.ndarray
    disl: np.ndarray
    min_last: np.ndarray
    D: np.ndarray
    hs: np.ndarray
    stops: np.ndarray
    used: np.ndarray

    def take(self, idx: np.ndarray) -> _Sub:
        o = _Sub()
        for k in _PER_PATH:
            setattr(o, k, getattr(self, k)[idx])
        return o

    def put(self, idx: np.ndarray, o: _Sub) -> None:
        for k in _PER_PATH:
            getattr(self, k)[idx] = getattr(o, k)


@dataclass(frozen=True)
class _Opt:
    """Option marks of one step: value per unit, MM per short unit (USD), entry premium (1, N)."""

    value: np.ndarray
    mm_short: np.ndarray
    entry: np.ndarray

    def rows(self, idx: np.ndarray) -> _Opt:
        return _Opt(self.value[idx], self.mm_short[idx], self.entry)


def _option_marks(acc: Accounts, It: np.ndarray, years_elapsed: float) -> _Opt:
    """Black-76 value on the index (fixed sticky-strike vol, r = 0) and Derive's standard MM per short unit."""
    P, N = It.size, acc.n
    value = np.zeros((P, N))
    mm_short = np.zeros((P, N))
    qo = np.asarray(acc.opt_qty, float)
    cols = np.flatnonzero(qo != 0)
    K, T0 = np.asarray(acc.opt_strike, float)[cols], np.asarray(acc.opt_expiry, float)[cols]
    call, vol = np.asarray(acc.opt_call, bool)[cols], np.asarray(acc.opt_vol, float)[cols]
    F = It[:, None]
    v = black76_price(F, K[None, :], np.maximum(T0 - years_elapsed, 0.0)[None, :], vol[None, :], call[None, :])
    value[:, cols] = v
    mm_short[:, cols] = derive_option_margin(call[None, :], K[None, :], F, v, -1.0)[1]
    return _Opt(value, mm_short, np.asarray(acc.opt_entry, float)[None, :])


def _round(s: _Sub, It: np.ndarray, Rt: np.ndarray, St: np.ndarray, D0: np.ndarray, acc_side: np.ndarray,
           eq_: np.ndarray, ei_: np.ndarray, mm: np.ndarray, p0: float, stop_q: float, cap: float | None,
           cfg: MarketConfig, opt: _Opt | None = None) -> np.ndarray:
    """One matching round on the paths in ``s`` (module doc); returns which paths traded."""
    ag = cfg.agents
    hb, hsb = cfg.haircut_btc, cfg.haircut_stable
    P = It.size
    k = 0.02 / s.D
    last = _last(Rt, k, s.V)
    M = cfg.mark.mark(s.ema, It, last)
    Mc = M[:, None]
    q, n_ = s.q, s.n
    notl = np.abs(q) * Mc + np.abs(n_)
    open_ = notl > 0
    me = (s.cash / 100.0 + s.sats / _SAT * It[:, None] * (1 - hb) + s.stab / 100.0 * St[:, None] * (1 - hsb)
          + q * (Mc - eq_) + n_ * (1.0 / ei_ - 1.0 / Mc) * Mc)
    need = mm * notl
    L = notl  # notional the liquidation fee applies to
    if opt is not None:  # options: value in equity, the venue's option MM on shorts, closed at their value
        me = me + s.o * (opt.value - opt.entry)
        need = need + opt.mm_short * np.maximum(-s.o, 0.0)
        open_ = open_ | (s.o != 0)
        L = notl + np.abs(s.o) * opt.value
    trig = open_ & (me < need * (1.0 - 1e-9) - 1e-9)  # no re-trigger on float noise at exactly MM
    st_q = np.zeros(P)
    if ag.stop_losses:
        lv = np.asarray(ag.stop_levels, float)
        hit_lo = (last[:, None] <= p0 * (1 - lv)[None, :]) & s.stops[:, :, 0]
        hit_hi = (last[:, None] >= p0 * (1 + lv)[None, :]) & s.stops[:, :, 1]
        st_q = stop_q * (hit_lo.sum(1) - hit_hi.sum(1))
        s.stops[:, :, 0] &= ~hit_lo
        s.stops[:, :, 1] &= ~hit_hi
    if cfg.liquidation == "full":
        x = trig.astype(float)
    elif cfg.liquidation == "partial":
        nb = need * (1.0 + cfg.buffer)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = (nb - me + 0.01) / (nb - cfg.fee_rate * L)  # + 1 cent: rounding
        x = np.where((me < cfg.full_below * need) | ~(x > 0) | (x > 1) | ~np.isfinite(x), 1.0, x)
        x = np.where(trig, x, 0.0)
    else:
        caps = np.asarray(cfg.tiers, float)[:, 0]
        tier = np.searchsorted(caps, notl, side="left")
        lower = np.where(tier > 0, caps[np.maximum(tier - 1, 0)], 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(notl > 0, 1.0 - lower / notl, 1.0)
        x = np.where((me < cfg.full_below * need) | (x <= 0), 1.0, x)
        x = np.where(trig, x, 0.0)
    if cap is not None:
        dem = (x * L).sum(1)
        room = np.maximum(cap - s.used, 0.0)
        scale = np.where(dem > room, room / np.maximum(dem, 1e-300), 1.0)
        x = x * scale[:, None]
    full = x >= 1.0 - 1e-12
    x = np.where(full, 1.0, x)
    active = (x > 0).any(1) | (st_q != 0)
    if not active.any():
        return active
    fp = np.flatnonzero(full.any(1)) if cfg.adl == "ranked" else np.empty(0, dtype=np.intp)
    snap = s.take(fp) if fp.size else None
    Q, rest, closed = _execute(s, x, full, st_q, It, Rt, St, k, last, Mc, eq_, ei_, acc_side, cap, cfg, opt)
    if snap is not None and rest.any():
        # the fund cannot pay these bankruptcies: their positions go to ranked ADL, not to the book.
        # Redo those paths' round without them (a smaller order: the others trade at least as well).
        bad_rows = rest[fp].any(1)
        bp = fp[bad_rows]
        s.put(bp, snap.take(np.flatnonzero(bad_rows)))
        go = full[bp] & (rest[bp] > 0)
        sub = s.take(bp)
        ob = None if opt is None else opt.rows(bp)
        Qb, rest_b, closed_b = _execute(sub, np.where(go, 0.0, x[bp]), full[bp] & ~go, st_q[bp], It[bp], Rt[bp],
                                        St[bp], k[bp], last[bp], Mc[bp], eq_, ei_, acc_side, cap, cfg, ob)
        _adl_ranked(sub, go, rest_b, closed_b, It[bp], St[bp], M[bp], eq_, ei_, acc_side, cfg, ob)
        s.put(bp, sub)
        Q = Q.copy()
        Q[bp] = Qb
    s.fund_min = np.minimum(s.fund_min, s.fund)
    # time passes (one round) only on the paths that traded: the others have finished this step
    if ag.arbitrageurs:
        pull = np.minimum(np.abs(s.V), ag.arb_per_minute * D0 * cfg.round_seconds / 60.0)
        s.V = s.V - np.where(active, np.sign(s.V) * pull, 0.0)
    last = _last(Rt, k, s.V)
    s.ema = np.where(active, cfg.mark.update(s.ema, It, last, cfg.round_seconds), s.ema)
    s.disl = np.minimum(s.disl, last / It - 1.0)
    s.min_last = np.minimum(s.min_last, last)
    if ag.market_makers:
        s.D = np.maximum(s.D * np.exp(-ag.eta * np.abs(Q) / s.D), ag.floor * D0)
        s.hs = np.minimum(cfg.half_spread * np.sqrt(D0 / s.D), 0.01)
    return active


def _execute(s: _Sub, x: np.ndarray, full: np.ndarray, st_q: np.ndarray, It: np.ndarray, Rt: np.ndarray,
             St: np.ndarray, k: np.ndarray, last: np.ndarray, Mc: np.ndarray, eq_: np.ndarray, ei_: np.ndarray,
             acc_side: np.ndarray, cap: float | None, cfg: MarketConfig,
             opt: _Opt | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Close fraction ``x`` of every account as one net market order per path (module doc).

    Returns the net order ``Q``, the bad debt the fund could not pay per account (left for ranked ADL;
    zeros with ``adl="pro_rata"``, which claws it back here) and the base quantity closed per account.
    """
    hb, hsb = cfg.haircut_btc, cfg.haircut_stable
    P = It.size
    q, n_ = s.q, s.n
    rest = np.zeros(q.shape, dtype=np.int64)
    dq = x * q
    dn = np.where(full, n_, np.trunc(x * n_))
    if cap is None:  # at least one contract, so a small partial close of an inverse position makes progress
        dn = np.where((x > 0) & (dn == 0) & (n_ != 0), np.sign(n_) * np.minimum(1.0, np.abs(n_)), dn)
    Q = (dq + dn / Mc).sum(1) + st_q
    cashQ = _G(Rt, k, s.V + Q) - _G(Rt, k, s.V) - s.hs * Rt * np.abs(Q)
    with np.errstate(divide="ignore", invalid="ignore"):
        px = np.where(Q != 0, cashQ / np.where(Q != 0, Q, 1.0), last)
    px = np.maximum(px, Rt * (1 - _CLIP))
    s.V = s.V + Q
    pxc = px[:, None]
    lin_c = _floor(100.0 * dq * (pxc - eq_))
    inv_s = _floor(_SAT * dn * (1.0 / ei_ - 1.0 / pxc))
    s.cash += lin_c
    s.ext -= lin_c.sum(1)
    s.sats += inv_s
    s.ext_s -= inv_s.sum(1)
    s.q = np.where(full, 0.0, q - dq)
    s.n = np.where(full, 0.0, n_ - dn)
    liq_notional = np.abs(dq) * pxc + np.abs(dn)
    if opt is not None:  # options are closed against the external option market at their Black-76 value
        do = np.where(full, s.o, x * s.o)
        opt_c = _floor(100.0 * do * (opt.value - opt.entry))
        s.cash += opt_c
        s.ext -= opt_c.sum(1)
        s.o = np.where(full, 0.0, s.o - do)
        liq_notional = liq_notional + np.abs(do) * opt.value
    worth = s.cash + _floor(s.sats * It[:, None] * (1 - hb) / 1e6) + _floor(s.stab * St[:, None] * (1 - hsb))
    fee = np.where(x > 0, np.minimum(_floor(100.0 * cfg.fee_rate * liq_notional), np.maximum(worth, 0)), 0)
    s.cash -= fee
    s.fund += fee.sum(1)
    s.fees += fee.sum(1)
    s.liq_not += liq_notional.sum(1)
    s.n_liq += (x > 0).sum(1)
    s.used += liq_notional.sum(1)
    # full close: collateral sold to the external market at the haircut price (debts at full price)
    _sell_collateral(s, full, It, St, hb, hsb)
    B = np.where(full & (s.cash < 0), -s.cash, 0)
    if B.any():
        rest = _fund_pays(s, B)
        R_ = rest.sum(1)
        if R_.any() and cfg.adl == "pro_rata":
            # clawback, pro rata to cash, from open accounts on the other side of the bankrupt positions
            bankrupt_side = np.sign((rest * acc_side[None, :]).sum(1))
            elig = (np.abs(s.q) + np.abs(s.n) > 0) & (acc_side[None, :] == -bankrupt_side[:, None]) & (s.cash > 0)
            w = np.where(elig, s.cash, 0)
            W = w.sum(1)
            take = np.minimum(R_, W)
            share = np.where(W[:, None] > 0, _floor(w * (take / np.maximum(W, 1))[:, None]), 0)
            j = np.argmax(w, axis=1)
            share[np.arange(P), j] += take - share.sum(1)
            share = np.minimum(share, w)
            taken = share.sum(1)
            s.cash -= share
            cumr = np.cumsum(rest, axis=1)
            s.cash += np.clip(taken[:, None] - (cumr - rest), 0, rest)
            s.social += taken
            s.uncov += R_ - taken
            s.adl_not += np.where(rest > 0, liq_notional, 0.0).sum(1)
            rest = np.zeros_like(rest)
    s.fund_min = np.minimum(s.fund_min, s.fund)
    return Q, rest, np.abs(dq) + np.abs(dn) / pxc


def _adl_ranked(s: _Sub, go: np.ndarray, rest: np.ndarray, closed: np.ndarray, It: np.ndarray, St: np.ndarray,
                M: np.ndarray, eq_: np.ndarray, ei_: np.ndarray, acc_side: np.ndarray, cfg: MarketConfig,
                opt: _Opt | None = None) -> None:
    """Ranked auto-deleveraging (module doc, "ADL"), vectorised over paths.

    ``go``: open bankrupt accounts whose positions go to ADL (closed here at the mark ``M``, collateral
    sold, the fund pays what it still has in account order); ``rest``: bad debt the fund could not pay
    of accounts already closed in the book this round, ``closed`` their base quantity.
    """
    hb, hsb = cfg.haircut_btc, cfg.haircut_stable
    P, N = go.shape
    Mc = M[:, None]
    need_q = np.where(go, np.abs(s.q) + np.abs(s.n) / Mc, np.where(rest > 0, closed, 0.0))
    lin_c = np.where(go, _floor(100.0 * s.q * (Mc - eq_)), 0)
    inv_s = np.where(go, _floor(_SAT * s.n * (1.0 / ei_ - 1.0 / Mc)), 0)
    s.liq_not += np.where(go, np.abs(s.q) * Mc + np.abs(s.n), 0.0).sum(1)
    s.n_liq += go.sum(1)
    s.cash += lin_c
    s.ext -= lin_c.sum(1)
    s.sats += inv_s
    s.ext_s -= inv_s.sum(1)
    s.q = np.where(go, 0.0, s.q)
    s.n = np.where(go, 0.0, s.n)
    if opt is not None:
        opt_c = np.where(go, _floor(100.0 * s.o * (opt.value - opt.entry)), 0)
        s.cash += opt_c
        s.ext -= opt_c.sum(1)
        s.liq_not += np.where(go, np.abs(s.o) * opt.value, 0.0).sum(1)
        s.o = np.where(go, 0.0, s.o)
    _sell_collateral(s, go, It, St, hb, hsb)
    B = np.where(go & (s.cash < 0), -s.cash, 0)
    rest = rest + _fund_pays(s, B)
    for side in (1, -1):
        r_side = np.where(acc_side[None, :] == side, rest, 0)
        D_ = r_side.sum(1)
        if not D_.any():
            continue
        A = np.where(D_ > 0, np.where(acc_side[None, :] == side, need_q, 0.0).sum(1), 0.0)
        # counterparties: open, opposite side, in profit at the mark; rank = profit ratio x effective leverage
        q, n_ = s.q, s.n
        upnl = q * (Mc - eq_) + n_ * (1.0 / ei_ - 1.0 / Mc) * Mc
        wallet = s.cash / 100.0 + s.sats / _SAT * It[:, None] * (1 - hb) + s.stab / 100.0 * St[:, None] * (1 - hsb)
        pos = np.abs(q) + np.abs(n_) / Mc
        elig = (pos > 0) & (acc_side[None, :] == -side) & (upnl > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(wallet > 0, (upnl / wallet) * (pos * Mc / (wallet + upnl)), np.inf)
        score = np.where(elig, score, -np.inf)
        order = np.argsort(-score, axis=1, kind="stable")
        pos_o = np.take_along_axis(np.where(elig, pos, 0.0), order, axis=1)
        cum_o = np.cumsum(pos_o, axis=1)
        take_o = np.clip(A[:, None] - (cum_o - pos_o), 0.0, pos_o)
        take = np.zeros((P, N))
        np.put_along_axis(take, order, take_o, axis=1)
        absorbed = take.sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(pos > 0, take / pos, 0.0)
            cover = np.where(A > 0, _floor(D_ * np.minimum(absorbed / np.where(A > 0, A, 1.0), 1.0)), 0)
        fullc = f >= 1.0 - 1e-9
        dq = np.where(fullc, q, f * q)
        dn = np.where(fullc, n_, np.trunc(f * n_))
        lc = np.where(f > 0, _floor(100.0 * dq * (Mc - eq_)), 0)
        ic = np.where(f > 0, _floor(_SAT * dn * (1.0 / ei_ - 1.0 / Mc)), 0)
        s.cash += lc
        s.ext -= lc.sum(1)
        s.sats += ic
        s.ext_s -= ic.sum(1)
        s.q = np.where(fullc, 0.0, q - dq)
        s.n = np.where(fullc, 0.0, n_ - dn)
        _sell_collateral(s, fullc & (f > 0) & (s.o == 0), It, St, hb, hsb)
        # the counterparties pay the deficit (= closing at the bankruptcy price instead of the mark),
        # pro rata to the quantity taken, never more than the cash they hold after closing
        # largest remainder in rank order (ties to the higher-ranked): integer shares sum to ``cover`` exactly
        W_o = take_o.sum(1)
        raw = (take_o / np.where(W_o > 0, W_o, 1.0)[:, None]) * cover[:, None]
        tr_o = np.floor(raw).astype(np.int64)
        by_frac = np.argsort(-(raw - tr_o), axis=1, kind="stable")
        pos_rank = np.empty_like(by_frac)
        np.put_along_axis(pos_rank, by_frac, np.broadcast_to(np.arange(N), (P, N)), axis=1)
        tr_o += pos_rank < (cover - tr_o.sum(1))[:, None]
        tr = np.zeros((P, N), dtype=np.int64)
        np.put_along_axis(tr, order, tr_o, axis=1)
        tr = np.clip(tr, 0, np.maximum(s.cash, 0))
        got = tr.sum(1)
        s.cash -= tr
        cumr = np.cumsum(r_side, axis=1)
        s.cash += np.clip(got[:, None] - (cumr - r_side), 0, r_side)
        s.social += got
        s.uncov += D_ - got
        s.adl_not += (take * Mc).sum(1)
    # deficits of accounts holding no perp (options only): no ADL counterparty side, left uncovered
    s.uncov += np.where(acc_side[None, :] == 0, rest, 0).sum(1)


def _fund_pays(s: _Sub, B: np.ndarray) -> np.ndarray:
    """Bad debt ``B`` (paths x accounts, integer cents) is booked and the insurance fund pays it in account
    order while it lasts; returns what the fund could not pay (the ADL's share)."""
    s.bad += B.sum(1)
    cum = np.cumsum(B, axis=1)
    pay = np.clip(s.fund[:, None] - (cum - B), 0, B)
    s.cash += pay
    s.fund -= pay.sum(1)
    s.paid += pay.sum(1)
    return B - pay


def _sell_collateral(s: _Sub, mask: np.ndarray, It: np.ndarray, St: np.ndarray, hb: float | np.ndarray,
                     hsb: float | np.ndarray) -> None:
    """Closed accounts' BTC and stablecoin balances sold to the external market at the haircut price."""
    conv_b = np.where(mask, _floor(s.sats * It[:, None] * np.where(s.sats > 0, 1 - hb, 1.0) / 1e6), 0)
    conv_s = np.where(mask, _floor(s.stab * St[:, None] * (1 - hsb)), 0)
    s.cash += conv_b + conv_s
    s.ext -= (conv_b + conv_s).sum(1)
    s.ext_s += np.where(mask, s.sats, 0).sum(1)
    s.ext_u += np.where(mask, s.stab, 0).sum(1)
    s.sats = np.where(mask, 0, s.sats)
    s.stab = np.where(mask, 0, s.stab)


def simulate_paths(acc: Accounts, index: np.ndarray, cfg: MarketConfig, *, ref: np.ndarray | None = None,
                   stable: np.ndarray | None = None, funding: np.ndarray | float = 0.0,
                   record_paths: bool = False) -> PathResults:
    """Run the v2 cascade on ``index`` paths of shape (P, T) (see the module doc for every rule).

    ``ref``: the perp's own price (default = index); ``stable``: stablecoin price paths (default 1);
    ``funding``: rate per funding period (scalar or (P, T)); ``cfg.depth_ratio``: a scalar or one value per
    path (depth as a distribution). Positions open at ``index[:, 0]``. After the first round of a step only
    the paths that traded are carried to the next round (the others cannot trigger again in that step).
    """
    IX = np.atleast_2d(np.asarray(index, dtype=float))
    P, T = IX.shape
    R = IX if ref is None else np.broadcast_to(np.atleast_2d(np.asarray(ref, float)), (P, T))
    S = np.ones((P, T)) if stable is None else np.broadcast_to(np.atleast_2d(np.asarray(stable, float)), (P, T))
    F = np.broadcast_to(np.asarray(funding, float), (P, T)) if np.ndim(funding) else np.full((P, T), float(funding))
    if np.any(~(IX > 0)) or np.any(~(R > 0)) or np.any(~(S >= 0)):
        raise ConfigError("index, ref and stable paths must be finite and > 0 (stable >= 0)")
    N = acc.n
    ag = cfg.agents
    p0 = float(np.median(IX[:, 0]))
    # open interest: perp notional plus the options' underlying notional (a book exists for option-only sets)
    oi = float(acc.notional(p0).sum()) + (float(np.abs(np.asarray(acc.opt_qty, float)).sum()) * p0 if acc.has_options else 0.0)
    if not oi > 0:
        raise ConfigError("accounts hold no position: nothing to simulate")
    D0 = np.broadcast_to(np.asarray(cfg.depth_ratio, float), (P,)) * oi / p0
    s = _Sub()
    s.D = D0.copy()
    s.hs = np.full(P, cfg.half_spread)
    s.q = np.broadcast_to(acc.lin_qty, (P, N)).astype(float).copy()
    s.n = np.broadcast_to(acc.inv_contracts, (P, N)).astype(float).copy()
    has_opt = acc.has_options
    s.o = (np.broadcast_to(np.asarray(acc.opt_qty, float), (P, N)).copy() if has_opt else np.zeros((P, N)))
    if acc.haircut_btc is not None or acc.haircut_stable is not None:
        h_b = np.full(N, np.nan) if acc.haircut_btc is None else np.asarray(acc.haircut_btc, float)
        h_s = np.full(N, np.nan) if acc.haircut_stable is None else np.asarray(acc.haircut_stable, float)
        cfg = replace(cfg, haircut_btc=np.where(np.isnan(h_b), cfg.haircut_btc, h_b)[None, :],
                      haircut_stable=np.where(np.isnan(h_s), cfg.haircut_stable, h_s)[None, :])
    s.cash = np.broadcast_to(acc.cash_c, (P, N)).astype(np.int64).copy()
    s.sats = np.broadcast_to(acc.btc_sats, (P, N)).astype(np.int64).copy()
    s.stab = np.broadcast_to(acc.stable_c, (P, N)).astype(np.int64).copy()
    fund0 = int(round(cfg.fund_ratio * oi * 100))
    s.fund = np.full(P, fund0, dtype=np.int64)
    s.fund_min = s.fund.copy()
    for name in ("ext", "ext_s", "ext_u", "bad", "paid", "social", "uncov", "fees", "n_liq"):
        setattr(s, name, np.zeros(P, dtype=np.int64))
    for name in ("liq_not", "adl_not", "V", "ema", "disl", "used"):
        setattr(s, name, np.zeros(P))
    s.min_last = R[:, 0].copy()
    s.stops = np.full((P, len(ag.stop_levels), 2), bool(ag.stop_losses))
    eq_, ei_, mm = acc.lin_entry[None, :], acc.inv_entry[None, :], acc.mm_rate[None, :]
    acc_side = np.sign(np.sign(acc.lin_qty) + np.sign(acc.inv_contracts))
    tot0 = s.cash.sum(1) + s.fund
    sats0, stab0 = s.sats.sum(1), s.stab.sum(1)
    stop_q = ag.stop_size * oi / p0
    cap = None if cfg.capacity_ratio is None else cfg.capacity_ratio * oi
    hours = cfg.step_seconds / 3600.0
    lam = 0.94 ** (hours / 24.0)
    var = np.full(P, (0.03 ** 2) * hours / 24.0)
    min_depth = np.ones(P)
    last_path = np.empty((P, T)) if record_paths else np.empty((0, 0))
    mark_path = np.empty((P, T)) if record_paths else np.empty((0, 0))
    allp = np.arange(P)
    for t in range(T):
        It, Rt, St = IX[:, t], R[:, t], S[:, t]
        if t > 0:
            r = np.log(It / IX[:, t - 1])
            z = np.abs(r) / np.sqrt(var)
            var = lam * var + (1 - lam) * r * r
            if ag.market_makers:
                s.D = s.D + (1.0 - np.exp(-ag.rho_per_hour * hours)) * (D0 - s.D)
                s.D = s.D * np.exp(-ag.gamma * np.maximum(z - ag.z0, 0.0))
            s.V = s.V * (1.0 - cfg.resilience)
            if ag.arbitrageurs:
                s.V = s.V - np.sign(s.V) * np.minimum(np.abs(s.V), ag.arb_per_minute * D0 * cfg.step_seconds / 60.0)
            if cfg.funding_every and t % cfg.funding_every == 0:
                last_f = _last(Rt, 0.02 / s.D, s.V)
                fl = _floor(100.0 * F[:, t:t + 1] * s.q * last_f[:, None])
                fi = _floor(_SAT * F[:, t:t + 1] * s.n / last_f[:, None])
                s.cash -= fl
                s.ext += fl.sum(1)
                s.sats -= fi
                s.ext_s += fi.sum(1)
        if ag.market_makers:
            s.D = np.maximum(s.D, ag.floor * D0)
            s.hs = np.minimum(cfg.half_spread * np.sqrt(D0 / s.D), 0.01)
        s.ema = cfg.mark.update(s.ema, It, _last(Rt, 0.02 / s.D, s.V), cfg.step_seconds)
        s.used = np.zeros(P)
        opt = _option_marks(acc, It, t * cfg.step_seconds / _YEAR) if has_opt else None
        act = allp
        for _ in range(cfg.max_rounds):
            if act.size == P:
                moved = _round(s, It, Rt, St, D0, acc_side, eq_, ei_, mm, p0, stop_q, cap, cfg, opt)
            else:
                sub = s.take(act)
                moved = _round(sub, It[act], Rt[act], St[act], D0[act], acc_side, eq_, ei_, mm, p0, stop_q, cap, cfg,
                               None if opt is None else opt.rows(act))
                s.put(act, sub)
            act = act[moved]
            if act.size == 0:
                break
        last = _last(Rt, 0.02 / s.D, s.V)
        s.disl = np.minimum(s.disl, last / It - 1.0)
        s.min_last = np.minimum(s.min_last, last)
        min_depth = np.minimum(min_depth, s.D / D0)
        if record_paths:
            last_path[:, t] = last
            mark_path[:, t] = cfg.mark.mark(s.ema, It, last)
    cons = s.cash.sum(1) + s.fund + s.ext - tot0
    return PathResults(s.bad, s.paid, s.social, s.uncov, s.fees, np.full(P, fund0), s.fund, s.fund_min, s.liq_not,
                       s.adl_not, s.n_liq, -s.disl, s.min_last, min_depth, cons, s.sats.sum(1) + s.ext_s - sats0,
                       s.stab.sum(1) + s.ext_u - stab0, last_path, mark_path, oi,
                       {"liquidation": cfg.liquidation, "adl": cfg.adl, "mark": cfg.mark.kind, "paths": P, "steps": T,
                        "accounts": N, "agents": dict(cfg.agents.__dict__)},
                       {"cash_c": s.cash, "btc_sats": s.sats, "stable_c": s.stab, "lin_qty": s.q, "inv_contracts": s.n,
                        "opt_qty": s.o})


def with_agents(cfg: MarketConfig, **switches: bool) -> MarketConfig:
    """Same configuration with some agents switched on or off."""
    # dict[str, Any]: mypy checks ** against every field type of Agents; the dataclass checks names at runtime
    return replace(cfg, agents=replace(cfg.agents, **cast(dict[str, Any], switches)))
