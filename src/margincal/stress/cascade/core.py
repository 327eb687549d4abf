"""Liquidation-cascade simulation: finite book depth, price impact feeding back, insurance fund, ADL.

Model (every rule below is implemented in :func:`simulate_cascade` and, independently and
one account at a time, in :func:`simulate_cascade_reference`)
----------------------------------------------------------------------------------------------

**Population.** Accounts hold one linear perpetual each: signed quantity ``q`` (base units,
long > 0), entry price ``e`` and collateral ``C`` (integer cents). Equity at price ``p`` is
``C + q (p - e)``. :func:`draw_population` documents the size / leverage / side distribution.

**Exogenous path and order book.** The *fundamental* price ``f_t`` follows a given path
(real hourly perp bars or Monte Carlo). Around it sits a symmetric book, a ladder of levels
``f (1 -/+ o_k)`` holding ``s_k`` base units per side (:class:`DepthProfile`). The book state is
the cumulative net volume ``V`` sold into it (``V > 0`` consumed bids, ``V < 0`` consumed asks).
Selling ``q`` walks the ladder from ``V`` to ``V + q``; the seller receives
``G(V + q) - G(V)`` where ``G(V) = integral_0^V price(v) dv``. The mark price is the last
traded price: ``f`` when ``V = 0``, else the price of the level where the walk stopped. Beyond
the last level every unit trades at the last level's price (the ladder should be long enough).
Between two steps of the path the book recovers: ``V <- (1 - resilience) V``.

**Rounds.** At each step, repeat until no account triggers (or ``max_rounds``): every open
account with ``equity(mark) < mm_rate x |q| x mark`` is liquidated this round, longs first in
descending order of their trigger price, then shorts in ascending order (the order in which a
continuous price move would have reached them). Each liquidation is a market order walking
the book, so it moves the mark for the next liquidation and the next round.

**Accounting (integer cents, exact).** A liquidation that receives ``cash`` for selling ``q``
realises ``pnl = floor(100 (cash - q e))`` cents; equity ``E = C + pnl``.
* ``E >= 0``: a liquidation fee ``min(E, floor(100 x fee_rate x |cash|))`` goes to the insurance
  fund; the account keeps the rest.
* ``E < 0`` (bad debt ``B = -E``) and the fund holds ``>= B``: the fund pays ``B``; the account ends at 0.
* ``E < 0`` and the fund holds ``< B``: the position is NOT sent to the book. It is
  auto-deleveraged (ADL) against open opposite positions that are in profit at the mark, ranked by
  ``(upnl / C) x (notional / (C + upnl))`` (profit percentage x effective leverage, Binance's ADL
  ranking), taking whole positions down the ranking and a part of the last. The cross price is
  the bankruptcy price ``e - C / q`` when the account is insolvent at the mark (its equity goes
  to exactly 0 and its mark-to-market shortfall ``-E_mark`` is *socialised*: the counterparties'
  realised profit is reduced by it, allocated pro rata to the quantity taken, largest remainder
  to the cent), or the mark itself when it is still solvent there (nothing to socialise).
  If the opposite side cannot absorb the quantity, the order goes to the book and the fund pays
  what it has; the rest is reported as ``uncovered``.
* Every realised P&L is paid by (or to) the *external market* ledger, the counterparty of the
  positions outside this population. Hence, exactly, in cents::

      sum(collateral) + fund + external   is constant
      bad_debt = fund_paid + adl_socialised + uncovered
      fund_end = fund_start + fees - fund_paid
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from margincal.errors import ConfigError

# ---------------------------------------------------------------- order book


@dataclass(frozen=True)
class DepthProfile:
    """Symmetric ladder: ``sizes[k]`` base units at relative distance ``offsets[k]`` on each side."""

    offsets: tuple[float, ...]
    sizes: tuple[float, ...]

    def __post_init__(self) -> None:
        o, s = np.asarray(self.offsets, float), np.asarray(self.sizes, float)
        if o.ndim != 1 or o.size == 0 or o.shape != s.shape:
            raise ConfigError("DepthProfile: offsets and sizes must be non-empty and of equal length")
        if np.any(np.diff(o) <= 0) or o[0] < 0 or o[-1] >= 1:
            raise ConfigError("DepthProfile: offsets must increase strictly within [0, 1)")
        if np.any(s <= 0) or not np.all(np.isfinite(s)):
            raise ConfigError("DepthProfile: sizes must be finite and > 0")
        object.__setattr__(self, "_o", o)
        object.__setattr__(self, "_s", s)
        object.__setattr__(self, "_cum", np.cumsum(s))
        object.__setattr__(self, "_vbid", np.cumsum(s * (1.0 - o)))
        object.__setattr__(self, "_vask", np.cumsum(s * (1.0 + o)))

    @classmethod
    def linear(cls, depth: float, within: float = 0.02, step: float = 0.0005, max_offset: float = 0.5
               ) -> DepthProfile:
        """Uniform density: ``depth`` base units per side between the mid and ``within``, same density out
        to ``max_offset`` (levels every ``step``)."""
        if not (depth > 0 and 0 < step <= within < 1 and within <= max_offset < 1):
            raise ConfigError("DepthProfile.linear: need depth > 0 and 0 < step <= within <= max_offset < 1")
        n = int(round(max_offset / step))
        offsets = step * np.arange(1, n + 1)
        sizes = np.full(n, depth * step / within)
        return cls(tuple(offsets.tolist()), tuple(sizes.tolist()))

    def scaled(self, m: float) -> DepthProfile:
        """Same ladder with every size multiplied by ``m``."""
        if not m > 0:
            raise ConfigError(f"depth multiplier is {m}; it must be > 0")
        return DepthProfile(self.offsets, tuple((np.asarray(self.sizes) * m).tolist()))

    def depth_within(self, offset: float) -> float:
        o, s = self._o, self._s  # type: ignore[attr-defined]
        return float(s[o <= offset + 1e-12].sum())

    # -- vectorised book functions (ref = fundamental price) --
    def _side_value(self, x: np.ndarray, vcum: np.ndarray, mult_last: float) -> np.ndarray:
        cum = self._cum  # type: ignore[attr-defined]
        k = np.searchsorted(cum, x, side="left")
        L = cum.size
        kc = np.minimum(k, L - 1)
        prev_cum = np.where(kc > 0, cum[np.maximum(kc - 1, 0)], 0.0)
        prev_val = np.where(kc > 0, vcum[np.maximum(kc - 1, 0)], 0.0)
        mult = (vcum - np.r_[0.0, vcum[:-1]]) / self._s  # type: ignore[attr-defined]
        inside = prev_val + (x - prev_cum) * mult[kc]
        beyond = vcum[-1] + (x - cum[-1]) * mult_last
        return np.where(k >= L, beyond, inside)

    def G(self, ref: float, V: np.ndarray | float) -> np.ndarray:
        """``integral_0^V price(v) dv`` (quote currency); negative V integrates the ask side (negative)."""
        V = np.asarray(V, dtype=float)
        o = self._o  # type: ignore[attr-defined]
        bid = self._side_value(np.clip(V, 0.0, None), self._vbid, 1.0 - o[-1])  # type: ignore[attr-defined]
        ask = self._side_value(np.clip(-V, 0.0, None), self._vask, 1.0 + o[-1])  # type: ignore[attr-defined]
        return ref * (bid - ask)

    def mark(self, ref: float, V: float) -> float:
        """Last traded price after net volume ``V`` (``ref`` when ``V == 0``)."""
        if V == 0.0:
            return float(ref)
        cum, o = self._cum, self._o  # type: ignore[attr-defined]
        k = min(int(np.searchsorted(cum, abs(V), side="left")), cum.size - 1)
        return float(ref * (1.0 - o[k]) if V > 0 else ref * (1.0 + o[k]))


def walk_reference(depth: DepthProfile, ref: float, V: float, q: float) -> tuple[float, float]:
    """Level-by-level book walk (reference for :meth:`DepthProfile.G`): cash for selling ``q`` from ``V``.

    Net volume moves from ``V`` to ``V + q`` through segments: bid level ``k`` holds the net volume
    in ``(cum[k-1], cum[k]]`` at ``ref (1 - o_k)``, ask level ``k`` holds ``[-cum[k], -cum[k-1])`` at
    ``ref (1 + o_k)``; beyond the ladder the last level's price applies. Returns (cash, new V).
    """
    offsets, sizes = list(depth.offsets), list(depth.sizes)
    cum = [0.0]
    for s_ in sizes:
        cum.append(cum[-1] + s_)
    L = len(sizes)

    def seg_up(v: float) -> tuple[float, float]:
        """(price, upper edge) of the segment just above ``v``."""
        if v >= 0:
            for k in range(L):
                if v < cum[k + 1]:
                    return ref * (1.0 - offsets[k]), cum[k + 1]
            return ref * (1.0 - offsets[-1]), math.inf
        a = -v
        for k in range(L):
            if a <= cum[k + 1]:
                return ref * (1.0 + offsets[k]), -cum[k]
        return ref * (1.0 + offsets[-1]), -cum[L]

    def seg_down(v: float) -> tuple[float, float]:
        """(price, lower edge) of the segment just below ``v``."""
        if v > 0:
            for k in range(L):
                if v <= cum[k + 1]:
                    return ref * (1.0 - offsets[k]), cum[k]
            return ref * (1.0 - offsets[-1]), cum[L]
        a = -v
        for k in range(L):
            if a < cum[k + 1]:
                return ref * (1.0 + offsets[k]), -cum[k + 1]
        return ref * (1.0 + offsets[-1]), -math.inf

    cash, v, target = 0.0, float(V), float(V) + float(q)
    while v != target:
        if target > v:
            price, edge = seg_up(v)
            nxt = target if edge >= target else edge
            cash += (nxt - v) * price
        else:
            price, edge = seg_down(v)
            nxt = target if edge <= target else edge
            cash -= (v - nxt) * price
        v = nxt
    return cash, v


def _bid_price_at(offsets: list[float], sizes: list[float], ref: float, x: float) -> float:
    """Price of the bid level holding the unit just below cumulative ``x`` (> 0)."""
    acc = 0.0
    for o, s in zip(offsets, sizes, strict=True):
        if x <= acc + s:
            return ref * (1.0 - o)
        acc += s
    return ref * (1.0 - offsets[-1])


def _ask_price_at(offsets: list[float], sizes: list[float], ref: float, x: float) -> float:
    acc = 0.0
    for o, s in zip(offsets, sizes, strict=True):
        if x <= acc + s:
            return ref * (1.0 + o)
        acc += s
    return ref * (1.0 + offsets[-1])


# ---------------------------------------------------------------- population

#: Open-interest share per leverage bracket (low, high, share). Source: on-chain positions of a
#: perp DEX (Hyperliquid) reported 2025-12-15 by analyst Ai Yi via Odaily: of $7.63bn open interest,
#: $2.77bn at 0-3x, $3.70bn at 3-7x, the remaining $1.16bn above 7x. The >7x bracket is spread
#: log-uniformly to 50x (assumption: the venue caps BTC at 40x; 50x stands in for CEX retail tails).
DEFAULT_LEVERAGE_MIX: tuple[tuple[float, float, float], ...] = (
    (1.0, 3.0, 2.77 / 7.63), (3.0, 7.0, 3.70 / 7.63), (7.0, 50.0, 1.16 / 7.63))


@dataclass(frozen=True)
class PopulationDraw:
    """Policy-independent draw: notional (quote), side (+1 long / -1 short), desired leverage."""

    notional: np.ndarray
    side: np.ndarray
    desired_leverage: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)


def draw_population(n: int, total_notional: float | None = None, *, seed: int = 7, median_notional: float = 5_000.0,
                    long_fraction: float = 0.55,
                    leverage_mix: Sequence[tuple[float, float, float]] = DEFAULT_LEVERAGE_MIX,
                    size_sigma: float = 1.2, tail_fraction: float = 0.03, tail_alpha: float = 1.5
                    ) -> PopulationDraw:
    """Draw ``n`` accounts (notional in quote currency, side, desired leverage).

    * Size: lognormal body (median ``median_notional``, sigma ``size_sigma``); a fraction ``tail_fraction`` of accounts instead
      gets a Pareto(``tail_alpha``) size starting at the body's 99th percentile (alpha ~1.5 is the
      trade-size tail exponent of Gabaix, Gopikrishnan, Plerou & Stanley, Nature 423, 2003).
    * Side: long with probability ``long_fraction`` (0.55: the long bias typical of exchanges'
      published account long/short ratios in stress periods; an assumption).
    * Leverage: bracket drawn with the OI shares of :data:`DEFAULT_LEVERAGE_MIX`, log-uniform within.
      Sizes and leverage are independent, so the brackets' shares of notional match on average.
    * ``total_notional``: when given, sizes are rescaled to add up to it (else they are real-size
      accounts and the market around them -- depth, fund -- is scaled to their total instead).
    """
    if n < 1 or (total_notional is not None and not total_notional > 0) or not median_notional > 0:
        raise ConfigError(f"draw_population: n={n} must be >= 1 and total_notional={total_notional} > 0")
    mix = np.asarray(leverage_mix, dtype=float)
    if mix.ndim != 2 or mix.shape[1] != 3 or np.any(mix[:, 0] < 1) or np.any(mix[:, 1] < mix[:, 0]):
        raise ConfigError("leverage_mix rows must be (low >= 1, high >= low, share)")
    rng = np.random.default_rng(seed)
    body = median_notional * np.exp(size_sigma * rng.standard_normal(n))
    q99 = median_notional * math.exp(size_sigma * 2.3263)
    tail = rng.random(n) < tail_fraction
    body[tail] = q99 * (1.0 + rng.pareto(tail_alpha, size=int(tail.sum())))
    notional = body if total_notional is None else body * (total_notional / body.sum())
    side = np.where(rng.random(n) < long_fraction, 1.0, -1.0)
    p = mix[:, 2] / mix[:, 2].sum()
    b = rng.choice(len(p), size=n, p=p)
    lo, hi = np.log(mix[b, 0]), np.log(mix[b, 1])
    lev = np.exp(lo + (hi - lo) * rng.random(n))
    return PopulationDraw(notional, side, lev, {
        "n": n, "total_notional": float(notional.sum()), "median_notional": median_notional, "seed": seed, "long_fraction": long_fraction,
        "leverage_mix": [list(r) for r in leverage_mix], "size_sigma": size_sigma,
        "tail_fraction": tail_fraction, "tail_alpha": tail_alpha})


@dataclass(frozen=True)
class Population:
    """Open positions of the simulated accounts (collateral in integer cents)."""

    qty: np.ndarray
    entry: np.ndarray
    collateral_c: np.ndarray
    leverage: np.ndarray

    def __post_init__(self) -> None:
        n = self.qty.size
        if not (self.entry.size == n and self.collateral_c.size == n and self.leverage.size == n):
            raise ConfigError("Population arrays must have the same length")
        if self.collateral_c.dtype.kind != "i":
            raise ConfigError("Population.collateral_c must be integer cents")

    @classmethod
    def from_lists(cls, qty: Sequence[float], entry: Sequence[float], collateral: Sequence[float]) -> Population:
        """Hand-made population; ``collateral`` in quote currency (rounded to cents)."""
        q = np.asarray(qty, float)
        e = np.asarray(entry, float)
        c = np.round(np.asarray(collateral, float) * 100).astype(np.int64)
        lev = np.abs(q) * e / np.maximum(c / 100.0, 1e-12)
        return cls(q, e, c, lev)


def population_for_policy(draw: PopulationDraw, price: float, im_rate: float | np.ndarray) -> Population:
    """Open every drawn account at ``price`` with leverage ``min(desired, 1 / im_rate)``.

    ``im_rate``: one rate, or one per account (size-dependent rules such as exchange brackets).
    """
    im = np.asarray(im_rate, dtype=float)
    if np.any(~(im > 0)) or np.any(im > 1):
        raise ConfigError(f"im_rate must be in (0, 1]; got {im.min()}..{im.max()}")
    lev = np.minimum(draw.desired_leverage, 1.0 / im)
    qty = draw.side * draw.notional / price
    coll = np.round(draw.notional / lev * 100.0).astype(np.int64)
    return Population(qty, np.full(qty.size, float(price)), coll, lev)


# ---------------------------------------------------------------- simulation


@dataclass(frozen=True)
class CascadeResult:
    """Outcome of one run. Money in cents (``*_c``, exact ints) with float conveniences in quote currency."""

    steps: int
    rounds: int
    rounds_per_step: np.ndarray
    n_liquidated: int
    liquidated_qty: float
    liquidated_notional: float
    fundamental: np.ndarray
    mark_path: np.ndarray
    min_mark: float
    bad_debt_c: int
    fund_start_c: int
    fund_end_c: int
    fund_min_c: int
    fund_paid_c: int
    fees_c: int
    adl_qty: float
    adl_notional: float
    adl_socialised_c: int
    uncovered_c: int
    adl_events: int
    external_c: int
    collateral_start_c: int
    collateral_end_c: int
    final_qty: np.ndarray
    final_collateral_c: np.ndarray
    events: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def bad_debt(self) -> float:
        return self.bad_debt_c / 100.0

    @property
    def fund_drawdown(self) -> float:
        """Largest fall of the fund below its starting balance (quote currency)."""
        return max(0, self.fund_start_c - self.fund_min_c) / 100.0

    def conservation_error_c(self) -> int:
        """Cents created or destroyed (0 when every transfer balances)."""
        return (self.collateral_end_c + self.fund_end_c + self.external_c) - (
            self.collateral_start_c + self.fund_start_c)

    def row(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "liquidations": self.n_liquidated,
                "liquidated_notional": self.liquidated_notional, "min_price": self.min_mark,
                "bad_debt": self.bad_debt, "fund_paid": self.fund_paid_c / 100.0,
                "fund_drawdown": self.fund_drawdown, "fund_end": self.fund_end_c / 100.0,
                "adl_volume": self.adl_notional, "adl_socialised": self.adl_socialised_c / 100.0,
                "uncovered": self.uncovered_c / 100.0}


def _as_steps(x: float | Sequence[float] | np.ndarray, n: int, name: str, n_accounts: int | None = None
              ) -> np.ndarray:
    """Scalar -> (n,); (n,) per step; (n, n_accounts) per step and account."""
    a = np.asarray(x, dtype=float)
    if a.ndim == 0:
        a = np.full(n, float(a))
    if a.ndim == 2:
        if n_accounts is None or a.shape != (n, n_accounts):
            raise ConfigError(f"{name} has shape {a.shape}; a 2-D rate needs (steps, accounts) = ({n}, {n_accounts})")
    elif a.shape != (n,):
        raise ConfigError(f"{name} has {a.size} values for {n} path steps")
    if np.any(~np.isfinite(a)) or np.any(a < 0):
        raise ConfigError(f"{name} must be finite and >= 0")
    return a


def _check_inputs(pop: Population, path: Sequence[float] | np.ndarray, insurance_fund: float,
                  fee_rate: float, resilience: float) -> np.ndarray:
    f = np.asarray(path, dtype=float)
    if f.ndim != 1 or f.size < 1 or np.any(~(f > 0)):
        raise ConfigError("path must be a non-empty 1-D array of prices > 0")
    if insurance_fund < 0 or not 0 <= fee_rate < 1 or not 0 <= resilience <= 1:
        raise ConfigError("insurance_fund >= 0, 0 <= fee_rate < 1 and 0 <= resilience <= 1 are required")
    return f


def _trigger_prices(q: np.ndarray, e: np.ndarray, c: np.ndarray, mm: float) -> np.ndarray:
    """Price at which equity equals maintenance margin (longs: below it triggers; shorts: above it)."""
    cq = c / 100.0
    aq = np.abs(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        long_p = (q * e - cq) / (q * (1.0 - mm))
        short_p = (cq + aq * e) / (aq * (1.0 + mm))
    return np.where(q > 0, long_p, short_p)


def _allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Split integer ``total`` cents pro rata to ``weights`` (largest remainder; sums exactly)."""
    if total == 0 or weights.size == 0:
        return np.zeros(weights.size, dtype=np.int64)
    w = weights / weights.sum()
    raw = w * total
    base = np.floor(raw).astype(np.int64)
    rest = int(total - base.sum())
    if rest:
        order = np.argsort(-(raw - base), kind="stable")[:rest]
        base[order] += 1
    return base


def _floor_c(x: float) -> int:
    """Floor to whole cents after rounding away float noise below 1e-6 cent."""
    return math.floor(round(x, 6))


class _State:
    def __init__(self, pop: Population, fund_c: int, depth: DepthProfile, fee_rate: float, record: bool):
        self.q = pop.qty.astype(float).copy()
        self.e = pop.entry.astype(float).copy()
        self.C = pop.collateral_c.astype(np.int64).copy()
        self.alive = self.q != 0
        self.fund = int(fund_c)
        self.fund_min = int(fund_c)
        self.ext = 0
        self.V = 0.0
        self.depth = depth
        self.fee_rate = fee_rate
        self.record = record
        self.events: list[dict[str, Any]] = []
        self.bad = self.paid = self.fees = self.social = self.uncovered = 0
        self.n_liq = 0
        self.liq_qty = self.liq_notional = 0.0
        self.adl_qty = self.adl_notional = 0.0
        self.adl_events = 0

    def touch_fund(self) -> None:
        self.fund_min = min(self.fund_min, self.fund)


def _adl(st: _State, i: int, f: float, step: int, rnd: int) -> bool:
    """Auto-deleverage account ``i`` at the current mark; False when the opposite side cannot absorb it."""
    mark = st.depth.mark(f, st.V)
    qi, ei, Ci = float(st.q[i]), float(st.e[i]), int(st.C[i])
    opp = np.flatnonzero(st.alive & (np.sign(st.q) == -np.sign(qi)))
    if opp.size == 0:
        return False
    upnl = st.q[opp] * (mark - st.e[opp])
    prof = upnl > 0
    opp, upnl = opp[prof], upnl[prof]
    if opp.size == 0 or np.abs(st.q[opp]).sum() < abs(qi) * (1 - 1e-12):
        return False
    cj = st.C[opp] / 100.0
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(cj > 0, (upnl / cj) * (np.abs(st.q[opp]) * mark / (cj + upnl)), np.inf)
    opp = opp[np.argsort(-score, kind="stable")]
    need = abs(qi)
    take_idx, take_amt = [], []
    for j in opp:
        if need <= 0:
            break
        a = min(abs(float(st.q[j])), need)
        take_idx.append(int(j))
        take_amt.append(a)
        need -= a
    take_idx_a = np.asarray(take_idx)
    amt = np.asarray(take_amt) * -np.sign(qi)  # signed portion of each counterparty's position
    pnl_mark_i = _floor_c(100.0 * qi * (mark - ei))
    em = Ci + pnl_mark_i
    if em >= 0:
        price, pnl_i, social = mark, pnl_mark_i, 0
    else:
        price, pnl_i, social = ei - (Ci / 100.0) / qi, -Ci, -em
    transfers = _allocate(social, np.abs(amt))
    pnl_j = np.floor(np.round(100.0 * amt * (mark - st.e[take_idx_a]), 6)).astype(np.int64) - transfers
    st.C[take_idx_a] += pnl_j
    st.q[take_idx_a] -= amt
    full = np.abs(st.q[take_idx_a]) <= 1e-12 * np.maximum(np.abs(amt), 1.0)
    st.q[take_idx_a[full]] = 0.0
    st.alive[take_idx_a[full]] = False
    st.C[i] += pnl_i
    st.q[i] = 0.0
    st.alive[i] = False
    st.ext -= int(pnl_i) + int(pnl_j.sum())
    st.bad += social
    st.social += social
    st.adl_qty += abs(qi)
    st.adl_notional += abs(qi) * price
    st.adl_events += 1
    st.n_liq += 1
    st.liq_qty += abs(qi)
    if st.record:
        st.events.append({"step": step, "round": rnd, "account": i, "kind": "adl", "qty": qi, "price": price,
                          "mark": mark, "pnl_c": int(pnl_i), "fee_c": 0, "bad_debt_c": int(social),
                          "fund_paid_c": 0, "counterparties": take_idx, "counter_qty": amt.tolist(),
                          "counter_pnl_c": pnl_j.tolist(), "transfers_c": transfers.tolist()})
    return True


def _market_batch(st: _State, idx: np.ndarray, f: float, step: int, rnd: int, allow_adl: bool = True) -> None:
    """Liquidate ``idx`` in order against the book (vectorised while the fund can pay)."""
    pending = idx
    while pending.size:
        qs = st.q[pending]
        Vs = st.V + np.cumsum(qs)
        Vprev = np.r_[st.V, Vs[:-1]]
        cash = st.depth.G(f, Vs) - st.depth.G(f, Vprev)
        pnl = np.floor(np.round(100.0 * (cash - qs * st.e[pending]), 6)).astype(np.int64)
        eq = st.C[pending] + pnl
        fee = np.where(eq > 0, np.minimum(eq, np.floor(np.round(100.0 * st.fee_rate * np.abs(cash), 6)).astype(np.int64)), 0)
        bad = np.where(eq < 0, -eq, 0).astype(np.int64)
        fund_before = st.fund + np.r_[0, np.cumsum(fee - bad)[:-1]]
        fail = np.flatnonzero(fund_before < bad)
        k = int(fail[0]) if fail.size else pending.size
        if k > 0:
            acc = pending[:k]
            st.ext -= int(pnl[:k].sum())
            st.C[acc] = eq[:k] - fee[:k] + bad[:k]
            fund_path = st.fund + np.cumsum(fee[:k] - bad[:k])
            st.fund_min = min(st.fund_min, int(fund_path.min()))
            st.fund = int(fund_path[-1])
            st.fees += int(fee[:k].sum())
            st.paid += int(bad[:k].sum())
            st.bad += int(bad[:k].sum())
            st.q[acc] = 0.0
            st.alive[acc] = False
            st.V = float(Vs[k - 1])
            st.n_liq += k
            st.liq_qty += float(np.abs(qs[:k]).sum())
            st.liq_notional += float(np.abs(cash[:k]).sum())
            if st.record:
                for n_, i in enumerate(acc):
                    st.events.append({"step": step, "round": rnd, "account": int(i), "kind": "market",
                                      "qty": float(qs[n_]), "cash": float(cash[n_]), "V_before": float(Vprev[n_]),
                                      "pnl_c": int(pnl[n_]), "fee_c": int(fee[n_]), "bad_debt_c": int(bad[n_]),
                                      "fund_paid_c": int(bad[n_])})
        if k == pending.size:
            return
        i = int(pending[k])
        if not (allow_adl and _adl(st, i, f, step, rnd)):
            _market_uncovered(st, i, f, step, rnd)
        pending = pending[k + 1:]


def _market_uncovered(st: _State, i: int, f: float, step: int, rnd: int) -> None:
    """Book execution when neither the fund nor ADL can absorb the loss: the fund pays what it has."""
    qi = float(st.q[i])
    cash = float(st.depth.G(f, st.V + qi) - st.depth.G(f, st.V))
    pnl = _floor_c(100.0 * (cash - qi * float(st.e[i])))
    eq = int(st.C[i]) + pnl
    bad = -eq if eq < 0 else 0
    pay = min(bad, st.fund)
    st.ext -= pnl
    st.C[i] = eq + pay
    st.fund -= pay
    st.touch_fund()
    st.bad += bad
    st.paid += pay
    st.uncovered += bad - pay
    st.q[i] = 0.0
    st.alive[i] = False
    st.V += qi
    st.n_liq += 1
    st.liq_qty += abs(qi)
    st.liq_notional += abs(cash)
    if st.record:
        st.events.append({"step": step, "round": rnd, "account": i, "kind": "uncovered", "qty": qi, "cash": cash,
                          "pnl_c": pnl, "fee_c": 0, "bad_debt_c": bad, "fund_paid_c": pay})


def simulate_cascade(pop: Population, path: Sequence[float] | np.ndarray, depth: DepthProfile, *,
                     mm_rate: float | Sequence[float] | np.ndarray = 0.005, insurance_fund: float = 0.0,
                     fee_rate: float = 0.005, resilience: float = 0.5, max_rounds: int = 500,
                     record_events: bool = False) -> CascadeResult:
    """Run the cascade over the fundamental ``path`` (see the module doc for every rule).

    ``path[0]`` is the price at which the population was opened or last marked; liquidations are
    checked from step 0 on. ``mm_rate`` is a constant or one rate per step (dynamic policy).
    ``insurance_fund`` in quote currency (rounded to cents).
    """
    f = _check_inputs(pop, path, insurance_fund, fee_rate, resilience)
    mm = _as_steps(mm_rate, f.size, "mm_rate", pop.qty.size)
    st = _State(pop, int(round(insurance_fund * 100)), depth, fee_rate, record_events)
    coll0 = int(pop.collateral_c.sum())
    rounds_per_step = np.zeros(f.size, dtype=np.int64)
    marks = np.empty(f.size)
    for t in range(f.size):
        if t > 0:
            st.V *= 1.0 - resilience
        ref = float(f[t])
        r = 0
        while r < max_rounds:
            mark = depth.mark(ref, st.V)
            idx = np.flatnonzero(st.alive)
            if idx.size == 0:
                break
            q, e, c = st.q[idx], st.e[idx], st.C[idx]
            eq = c / 100.0 + q * (mark - e)
            m_t = mm[t] if mm.ndim == 1 else mm[t, idx]
            hit = eq < m_t * np.abs(q) * mark
            trig = idx[hit]
            if trig.size == 0:
                break
            r += 1
            tp = _trigger_prices(st.q[trig], st.e[trig], st.C[trig], m_t if mm.ndim == 1 else m_t[hit])
            longs, shorts = trig[st.q[trig] > 0], trig[st.q[trig] < 0]
            tl, ts = tp[st.q[trig] > 0], tp[st.q[trig] < 0]
            order = np.r_[longs[np.argsort(-tl, kind="stable")], shorts[np.argsort(ts, kind="stable")]]
            _market_batch(st, order, ref, t, r)
        rounds_per_step[t] = r
        marks[t] = depth.mark(ref, st.V)
    return CascadeResult(
        steps=int(f.size), rounds=int(rounds_per_step.sum()), rounds_per_step=rounds_per_step,
        n_liquidated=st.n_liq, liquidated_qty=st.liq_qty, liquidated_notional=st.liq_notional + st.adl_notional,
        fundamental=f, mark_path=marks, min_mark=float(marks.min()), bad_debt_c=int(st.bad),
        fund_start_c=int(round(insurance_fund * 100)), fund_end_c=int(st.fund), fund_min_c=int(st.fund_min),
        fund_paid_c=int(st.paid), fees_c=int(st.fees), adl_qty=st.adl_qty, adl_notional=st.adl_notional,
        adl_socialised_c=int(st.social), uncovered_c=int(st.uncovered), adl_events=st.adl_events,
        external_c=int(st.ext), collateral_start_c=coll0, collateral_end_c=int(st.C.sum()),
        final_qty=st.q, final_collateral_c=st.C, events=st.events,
        params={"mm_rate": (float(mm.flat[0]) if np.ptp(mm) == 0 else
                            f"varies {float(mm.min()):.4g}..{float(mm.max()):.4g}"), "insurance_fund": insurance_fund,
                "fee_rate": fee_rate, "resilience": resilience, "max_rounds": max_rounds,
                "depth_within_2pct": depth.depth_within(0.02), "n_accounts": int(pop.qty.size)},
    )


# ---------------------------------------------------------------- reference (one account at a time)


def simulate_cascade_reference(pop: Population, path: Sequence[float], depth: DepthProfile, *,
                               mm_rate: float | Sequence[float] = 0.005, insurance_fund: float = 0.0,
                               fee_rate: float = 0.005, resilience: float = 0.5, max_rounds: int = 500
                               ) -> dict[str, Any]:
    """Plain-Python version of :func:`simulate_cascade`: level-by-level book walk, account by account.

    Returns the totals as a dict of ints (cents) and floats, for comparison in tests.
    """
    f = [float(x) for x in _check_inputs(pop, path, insurance_fund, fee_rate, resilience)]
    mm_a = _as_steps(mm_rate, len(f), "mm_rate", pop.qty.size)
    mm = [[float(x)] * pop.qty.size for x in mm_a] if mm_a.ndim == 1 else mm_a.tolist()
    q = [float(x) for x in pop.qty]
    e = [float(x) for x in pop.entry]
    C = [int(x) for x in pop.collateral_c]
    alive = [x != 0 for x in q]
    fund = int(round(insurance_fund * 100))
    tot: dict[str, Any] = {"bad_debt_c": 0, "fund_paid_c": 0, "fees_c": 0, "adl_socialised_c": 0, "uncovered_c": 0,
           "n_liquidated": 0, "adl_events": 0, "external_c": 0, "rounds": 0}
    V = 0.0
    marks = []
    offsets = list(depth.offsets)
    sizes = list(depth.sizes)

    def mark_of(ref: float, v: float) -> float:
        if v == 0:
            return ref
        return _bid_price_at(offsets, sizes, ref, v) if v > 0 else _ask_price_at(offsets, sizes, ref, -v)

    for t, ref in enumerate(f):
        if t > 0:
            V *= 1.0 - resilience
        for _ in range(max_rounds):
            mark = mark_of(ref, V)
            trig = [i for i in range(len(q))
                    if alive[i] and C[i] / 100.0 + q[i] * (mark - e[i]) < mm[t][i] * abs(q[i]) * mark]
            if not trig:
                break
            tot["rounds"] += 1

            def tprice(i: int, t: int = t) -> float:
                m = mm[t][i]
                if q[i] > 0:
                    return (q[i] * e[i] - C[i] / 100.0) / (q[i] * (1.0 - m))
                return (C[i] / 100.0 + abs(q[i]) * e[i]) / (abs(q[i]) * (1.0 + m))

            longs = sorted([i for i in trig if q[i] > 0], key=lambda i: -tprice(i))
            shorts = sorted([i for i in trig if q[i] < 0], key=tprice)
            for i in longs + shorts:
                cash, V_new = walk_reference(depth, ref, V, q[i])
                pnl = _floor_c(100.0 * (cash - q[i] * e[i]))
                eq = C[i] + pnl
                if eq >= 0:
                    fee = min(eq, _floor_c(100.0 * fee_rate * abs(cash)))
                    C[i] = eq - fee
                    fund += fee
                    tot["fees_c"] += fee
                    tot["external_c"] -= pnl
                    V = V_new
                elif fund >= -eq:
                    fund += eq
                    tot["fund_paid_c"] -= eq
                    tot["bad_debt_c"] -= eq
                    tot["external_c"] -= pnl
                    C[i] = 0
                    V = V_new
                else:
                    m = mark_of(ref, V)
                    opp = [j for j in range(len(q)) if alive[j] and q[j] * q[i] < 0 and q[j] * (m - e[j]) > 0]
                    cap = sum(abs(q[j]) for j in opp)
                    if cap < abs(q[i]) * (1 - 1e-12):
                        pay = min(-eq, fund)
                        fund -= pay
                        tot["fund_paid_c"] += pay
                        tot["bad_debt_c"] -= eq
                        tot["uncovered_c"] += -eq - pay
                        tot["external_c"] -= pnl
                        C[i] = eq + pay
                        V = V_new
                    else:
                        def score(j: int, m: float = m) -> float:
                            u = q[j] * (m - e[j])
                            cj = C[j] / 100.0
                            return math.inf if cj <= 0 else (u / cj) * (abs(q[j]) * m / (cj + u))
                        opp.sort(key=lambda j: -score(j))
                        need, takes = abs(q[i]), []
                        for j in opp:
                            if need <= 0:
                                break
                            a = min(abs(q[j]), need)
                            takes.append((j, a * (-1.0 if q[i] > 0 else 1.0)))
                            need -= a
                        pm = _floor_c(100.0 * q[i] * (m - e[i]))
                        em = C[i] + pm
                        social = 0 if em >= 0 else -em
                        pnl_i = pm if em >= 0 else -C[i]
                        w = np.abs(np.array([a for _, a in takes]))
                        tr = _allocate(social, w)
                        for (j, a), tj in zip(takes, tr, strict=True):
                            pj = _floor_c(100.0 * a * (m - e[j])) - int(tj)
                            C[j] += pj
                            tot["external_c"] -= pj
                            q[j] -= a
                            if abs(q[j]) <= 1e-12 * max(abs(a), 1.0):
                                q[j] = 0.0
                                alive[j] = False
                        C[i] += pnl_i
                        tot["external_c"] -= pnl_i
                        tot["bad_debt_c"] += social
                        tot["adl_socialised_c"] += social
                        tot["adl_events"] += 1
                q[i] = 0.0
                alive[i] = False
                tot["n_liquidated"] += 1
        marks.append(mark_of(ref, V))
    tot["fund_end_c"] = fund
    tot["collateral_end_c"] = sum(C)
    tot["marks"] = marks
    return tot
