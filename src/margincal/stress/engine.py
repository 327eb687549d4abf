"""Book-level stress: scenario losses of many accounts, losses beyond margin, Cover-1 / Cover-2.

Fast path (vectorised)::

    P[j, c]   = P&L of one contract of instrument j under scenario leg c      (instruments x legs)
    L         = -(positions @ P)                                              (accounts x legs, sparse @ dense)
    loss[i,s] = max over the legs c of scenario s of L[i, c]  + close-out cost of account i (if s has one)

Accounts are processed in chunks so memory stays bounded. :func:`scenario_losses_reference`
is the obviously-correct loop (account by account, position by position, scalar pricing);
tests check the two agree and the benchmark measures one against the other.

Losses beyond margin: ``shortfall[i, s] = max(0, loss[i, s] - resources[i])`` where the
resources are the account's margin requirement under a policy (default; the published
ParameterSet, a mapping of rates, a single rate, or a per-account array) or its posted
collateral. Cover-1 is the largest single account shortfall, Cover-2 the sum of the two
largest (CPMI-IOSCO PFMI, Principle 4, key consideration 4: resources sufficient for
the default of the one, or for systemically important CCPs two, participants with the
largest credit exposure in extreme but plausible conditions).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from margincal.errors import ConfigError
from margincal.instruments import perpetual_name, spot_name
from margincal.pricing.black76 import black76_price, black76_price_reference
from margincal.stress.book import Book, StressInstrument, StressMarket
from margincal.stress.scenarios import HOURS_PER_YEAR, LiquidityCost, Scenario, ShockLeg

MIN_VOL = 0.01


# ---------------------------------------------------------------- instrument P&L


def _inst_arrays(instruments: Sequence[StressInstrument], market: StressMarket) -> dict[str, np.ndarray]:
    market.need([i.underlying for i in instruments])
    S = np.array([market.spot[i.underlying] for i in instruments], dtype=float)
    vol = np.array([market.vol[i.underlying] for i in instruments], dtype=float)
    cs = np.array([i.contract_size for i in instruments], dtype=float)
    is_opt = np.array([i.kind == "option" for i in instruments])
    is_perp = np.array([i.kind == "perpetual" for i in instruments])
    K = np.array([i.strike or 1.0 for i in instruments], dtype=float)
    T = np.array([i.expiry_years or 0.0 for i in instruments], dtype=float)
    call = np.array([i.option_type == "C" for i in instruments])
    adv = np.array([market.adv.get(i.underlying, np.nan) for i in instruments], dtype=float)
    v0 = np.zeros(len(instruments))
    if is_opt.any():
        v0[is_opt] = black76_price(S[is_opt], K[is_opt], T[is_opt], vol[is_opt], call[is_opt])
    return {"S": S, "vol": vol, "cs": cs, "opt": is_opt, "perp": is_perp, "K": K, "T": T, "call": call,
            "adv": adv, "v0": v0}


def instrument_pnl(instruments: Sequence[StressInstrument], market: StressMarket,
                   legs: Sequence[ShockLeg]) -> np.ndarray:
    """P&L per contract (gain positive, quote currency), shape ``(n_instruments, n_legs)``.

    Delta-one: ``cs S (exp(r) - 1)``, minus ``cs S f`` of funding for perpetuals.
    Options: full Black-76 revaluation at spot ``S exp(r)``, vol ``max(vol + dv, 1%)`` and
    time to expiry reduced by the leg's horizon.
    """
    a = _inst_arrays(instruments, market)
    und = [i.underlying for i in instruments]
    n, m = len(instruments), len(legs)
    r = np.array([[leg.spot_of(u) for leg in legs] for u in und], dtype=float).reshape(n, m)
    dv = np.array([[leg.vol_of(u) for leg in legs] for u in und], dtype=float).reshape(n, m)
    f = np.array([[float(leg.funding.get(u, 0.0)) for leg in legs] for u in und], dtype=float).reshape(n, m)
    h = np.array([leg.horizon_hours for leg in legs], dtype=float)[None, :]
    S = a["S"][:, None]
    pnl = a["cs"][:, None] * S * np.expm1(r)
    pnl -= np.where(a["perp"][:, None], a["cs"][:, None] * S * f, 0.0)
    if a["opt"].any():
        o = a["opt"]
        S1 = S[o] * np.exp(r[o])
        T1 = np.maximum(a["T"][o][:, None] - h / HOURS_PER_YEAR, 0.0)
        v1 = np.maximum(a["vol"][o][:, None] + dv[o], MIN_VOL)
        p1 = black76_price(S1, a["K"][o][:, None], T1, v1, a["call"][o][:, None])
        pnl[o] = a["cs"][o][:, None] * (p1 - a["v0"][o][:, None])
    return pnl


def _liquidity_cost_rows(book: Book, arrays: dict[str, np.ndarray], cost: LiquidityCost,
                         rows: slice) -> np.ndarray:
    pos = book.positions[rows]
    j = pos.indices
    unit = np.where(arrays["opt"], arrays["v0"], arrays["S"]) * arrays["cs"]
    notional = np.abs(pos.data) * unit[j]
    adv = arrays["adv"][j]
    with np.errstate(invalid="ignore", divide="ignore"):
        impact = np.where(np.isfinite(adv) & (adv > 0), cost.impact * np.sqrt(notional / adv), 0.0)
    c = notional * (cost.half_spread + impact)
    m = sp.csr_matrix((c, pos.indices, pos.indptr), shape=pos.shape)
    return np.asarray(m.sum(axis=1)).ravel()


def scenario_losses(book: Book, market: StressMarket, scenarios: Sequence[Scenario],
                    chunk_size: int = 200_000) -> np.ndarray:
    """Loss of every account under every scenario (positive = loss), shape ``(n_accounts, n_scenarios)``."""
    if not scenarios:
        raise ConfigError("no scenarios given")
    legs: list[ShockLeg] = []
    owner: list[int] = []
    for s_idx, s in enumerate(scenarios):
        ls = s.legs(market)
        if not ls:
            raise ConfigError(f"scenario {s.name} has no legs")
        legs += ls
        owner += [s_idx] * len(ls)
    P = instrument_pnl(book.instruments, market, legs)
    arrays = _inst_arrays(book.instruments, market)
    owner_a = np.asarray(owner)
    out = np.empty((book.n_accounts, len(scenarios)), order="F")  # columns contiguous for summaries
    starts = np.r_[0, np.flatnonzero(np.diff(owner_a)) + 1]
    single = all(np.sum(owner_a == k) == 1 for k in range(len(scenarios)))
    for lo in range(0, book.n_accounts, chunk_size):
        rows = slice(lo, min(lo + chunk_size, book.n_accounts))
        L = -(book.positions[rows] @ P)
        L = np.asarray(L)
        block = L if single else np.maximum.reduceat(L, starts, axis=1)
        for s_idx, s in enumerate(scenarios):
            if s.liquidity is not None:
                block[:, s_idx] = block[:, s_idx] + _liquidity_cost_rows(book, arrays, s.liquidity, rows)
        out[rows] = block
    return out


def account_losses(book: Book, market: StressMarket, scenario: Scenario) -> pd.Series:
    """Per-account loss (positive = loss, quote currency) under one scenario, indexed by account.

    Replaces ``Scenario.apply``: scenarios describe shocks, the engine values books.
    """
    loss = scenario_losses(book, market, [scenario])[:, 0]
    return pd.Series(loss, index=pd.Index(book.accounts, name="account"), name=f"loss[{scenario.name}]")


def scenario_losses_reference(book: Book, market: StressMarket, scenarios: Sequence[Scenario],
                              accounts: Sequence[int] | None = None) -> np.ndarray:
    """Loop reference of :func:`scenario_losses`: account by account, position by position, scalar pricing."""
    rows = range(book.n_accounts) if accounts is None else accounts
    pos = book.positions.tocsr()
    out = np.empty((len(rows), len(scenarios)))
    for r_out, i in enumerate(rows):
        start, stop = pos.indptr[i], pos.indptr[i + 1]
        items = [(book.instruments[pos.indices[k]], float(pos.data[k])) for k in range(start, stop)]
        for s_idx, s in enumerate(scenarios):
            worst = -math.inf
            for leg in s.legs(market):
                total = 0.0
                for inst, q in items:
                    total += q * _pnl_one(inst, market, leg)
                worst = max(worst, -total)
            if s.liquidity is not None:
                for inst, q in items:
                    worst += _cost_one(inst, market, q, s.liquidity)
            out[r_out, s_idx] = worst
    return out


def _pnl_one(inst: StressInstrument, market: StressMarket, leg: ShockLeg) -> float:
    S = market.spot[inst.underlying]
    r = leg.spot_of(inst.underlying)
    if inst.kind != "option":
        pnl = inst.contract_size * S * (math.exp(r) - 1.0)
        if inst.kind == "perpetual":
            pnl -= inst.contract_size * S * float(leg.funding.get(inst.underlying, 0.0))
        return pnl
    vol = market.vol[inst.underlying]
    call = inst.option_type == "C"
    K, T = inst.strike, inst.expiry_years
    assert K is not None and T is not None  # StressInstrument.__post_init__: an option has both
    v0 = float(black76_price_reference(S, K, T, vol, call))
    T1 = max(T - leg.horizon_hours / HOURS_PER_YEAR, 0.0)
    v1 = float(black76_price_reference(S * math.exp(r), K, T1, max(vol + leg.vol_of(inst.underlying),
                                                                             MIN_VOL), call))
    return inst.contract_size * (v1 - v0)


def _cost_one(inst: StressInstrument, market: StressMarket, q: float, cost: LiquidityCost) -> float:
    S = market.spot[inst.underlying]
    if inst.kind == "option":
        assert inst.strike is not None and inst.expiry_years is not None  # StressInstrument.__post_init__
        unit = float(black76_price_reference(S, inst.strike, inst.expiry_years, market.vol[inst.underlying],
                                             inst.option_type == "C"))
    else:
        unit = S
    n = abs(q) * inst.contract_size * unit
    adv = market.adv.get(inst.underlying)
    impact = cost.impact * math.sqrt(n / adv) if adv and adv > 0 else 0.0
    return n * (cost.half_spread + impact)


# ---------------------------------------------------------------- margin


MarginSpec = Any  # ParameterSet | Mapping[str, float] | float | np.ndarray


def rate_for(instrument: StressInstrument, rates: Mapping[str, float]) -> float:
    """Margin rate of an instrument: exact name, else ``UND-PERP``, else ``UND-USDT``."""
    keys = (instrument.name, perpetual_name(instrument.underlying), spot_name(instrument.underlying))
    for key in keys:
        if key in rates:
            return float(rates[key])
    raise ConfigError(f"no margin rate for {instrument.name} (looked for {', '.join(keys)}); "
                      f"have {', '.join(sorted(rates))}")


def _rates_from(spec: Any, which: str) -> Mapping[str, float] | float:
    from margincal.margin.params import ParameterSet

    if isinstance(spec, ParameterSet):
        return {k: (p.im_rate if which == "im" else p.mm_rate) for k, p in spec.params.items()}
    if isinstance(spec, Mapping):
        return {k: float(v) for k, v in spec.items()}
    if isinstance(spec, (int, float)):
        return float(spec)
    raise ConfigError(f"margin policy of type {type(spec).__name__} not understood; give a ParameterSet, "
                      "a mapping instrument -> rate, a single rate or a per-account array")


def portfolio_margin_of(book: Book, market: StressMarket, which: str = "im", config: Any = None,
                        valuation_time: Any = None) -> np.ndarray:
    """Risk-matrix portfolio margin of every account, computed by :mod:`margincal.margin.portfolio`.

    Adapter: spot and perpetual instruments become that engine's perpetuals (delta-one), dated
    futures and options get an expiry ``valuation_time + expiry_years`` (futures without one: 90 days),
    option vols are the market's per-underlying vol. ``config``: a ``RiskMatrixConfig``
    (default ``deribit_like()``).
    """
    from margincal.margin.portfolio import InstrumentSpec, MarketState, portfolio_margin, scenario_pnl_matrix

    vt = pd.Timestamp.now(tz="UTC").floor("h") if valuation_time is None else pd.Timestamp(valuation_time)
    specs = []
    for i in book.instruments:
        kind = "perpetual" if i.kind in ("spot", "perpetual") else i.kind
        expiry = None
        if kind in ("future", "option"):
            expiry = vt + pd.Timedelta(days=365.0 * (i.expiry_years or 90 / 365.0))
        specs.append(InstrumentSpec(i.name, kind, i.underlying, strike=i.strike if kind == "option" else None,
                                    expiry=expiry, option_type=i.option_type if kind == "option" else None,
                                    contract_size=i.contract_size))
    ms = MarketState(spot={u: float(market.spot[u]) for u in book.underlyings()}, valuation_time=vt,
                     vols={i.name: float(market.vol[i.underlying]) for i in book.instruments if i.kind == "option"})
    pnl = scenario_pnl_matrix(specs, ms, config)
    res = portfolio_margin(book.positions, pnl)
    return np.asarray(res.im if which == "im" else res.mm, dtype=float)


def account_margin(book: Book, market: StressMarket, policy: MarginSpec, which: str = "im") -> np.ndarray:
    """Per-account margin requirement.

    ``policy``: ``"portfolio"`` (risk-matrix portfolio margin of :func:`portfolio_margin_of`, with
    offsets), a ParameterSet (``which`` = "im" or "mm"), a mapping instrument -> rate, a single rate
    (these three: gross, ``sum |q| x contract_size x spot x rate``, no offsets; for options the rate
    applies to the underlying notional), or a per-account array (returned as is).
    """
    if isinstance(policy, str) and policy == "portfolio":
        return portfolio_margin_of(book, market, which)
    if isinstance(policy, np.ndarray):
        if policy.shape != (book.n_accounts,):
            raise ConfigError(f"margin array has shape {policy.shape}; expected ({book.n_accounts},)")
        return policy.astype(float)
    rates = _rates_from(policy, which)
    if isinstance(rates, float):
        r = np.full(len(book.instruments), rates)
    else:
        r = np.array([rate_for(i, rates) for i in book.instruments])
    S = np.array([market.spot[i.underlying] for i in book.instruments])
    cs = np.array([i.contract_size for i in book.instruments])
    return np.asarray(abs(book.positions) @ (S * cs * r)).ravel()


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class BookStressResult:
    """Losses of every account under every scenario and what exceeds each account's resources."""

    scenarios: tuple[str, ...]
    accounts: tuple[str, ...]
    losses: np.ndarray
    resources: np.ndarray
    resources_kind: str
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def shortfall(self) -> np.ndarray:
        return np.maximum(self.losses - self.resources[:, None], 0.0)

    def summary(self) -> list[dict[str, Any]]:
        """One row per scenario: total shortfall, accounts short, Cover-1 / Cover-2 (column by column)."""
        rows = []
        n = self.losses.shape[0]
        res = np.asarray(self.resources, dtype=float)
        for s_idx, name in enumerate(self.scenarios):
            loss = self.losses[:, s_idx]
            col = np.maximum(loss - res, 0.0)
            if n >= 2:
                i1, i2 = np.argpartition(-col, 1)[:2]
                if col[i2] > col[i1]:
                    i1, i2 = i2, i1
            else:
                i1 = i2 = 0
            c1 = float(col[i1])
            second = float(col[i2]) if n >= 2 else 0.0
            rows.append({
                "scenario": name,
                "total_loss": float(np.clip(loss, 0.0, None).sum()),
                "accounts_short": int(np.count_nonzero(col)),
                "total_shortfall": float(col.sum()),
                "cover1": c1,
                "cover1_account": self.accounts[i1] if c1 > 0 else None,
                "cover2": c1 + second,
                "cover2_accounts": [self.accounts[i1], self.accounts[i2]] if second > 0 else
                ([self.accounts[i1]] if c1 > 0 else []),
            })
        return rows

    def per_account(self, scenario: str) -> pd.DataFrame:
        k = self.scenarios.index(scenario)
        return pd.DataFrame({"loss": self.losses[:, k], "resources": self.resources,
                             "shortfall": self.shortfall[:, k]}, index=pd.Index(self.accounts, name="account"))


def stress_book(book: Book, market: StressMarket, scenarios: Sequence[Scenario], *,
                margin: MarginSpec = None, resources: str = "margin", chunk_size: int = 200_000
                ) -> BookStressResult:
    """Apply every scenario to every account; resources = margin requirement (default) or collateral.

    ``margin``: policy for :func:`account_margin` (IM). Required when ``resources="margin"``.
    """
    if resources not in ("margin", "collateral"):
        raise ConfigError(f"resources is {resources!r}; use 'margin' or 'collateral'")
    if resources == "collateral":
        if book.collateral is None:
            raise ConfigError("resources='collateral' but the book has no collateral column")
        res = np.asarray(book.collateral, dtype=float)
        kind = "collateral"
    else:
        if margin is None:
            raise ConfigError("stress_book needs margin= (a ParameterSet, rates, or per-account array)")
        res = account_margin(book, market, margin, "im")
        kind = "initial margin"
    losses = scenario_losses(book, market, scenarios, chunk_size=chunk_size)
    prov = {"book": book.source, "market_as_of": market.as_of, "n_accounts": book.n_accounts,
            "n_scenarios": len(scenarios), "resources": kind,
            "margin_source": _describe_margin(margin),
            "created_at": pd.Timestamp.now(tz="UTC").isoformat()}
    return BookStressResult(tuple(s.name for s in scenarios), tuple(book.accounts), losses, res, kind, prov)


def _describe_margin(margin: Any) -> str:
    if margin is None:
        return "none"
    v = getattr(margin, "version", None)
    if v is not None:
        return f"ParameterSet v{v}"
    if isinstance(margin, np.ndarray):
        return "per-account array"
    if isinstance(margin, str):
        return f"{margin} margin (margincal.margin.portfolio, deribit_like risk matrix)"
    if isinstance(margin, Mapping):
        return "rates " + ", ".join(f"{k}={float(x):g}" for k, x in sorted(margin.items())[:6])
    return f"rate {margin}"
