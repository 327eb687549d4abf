"""Books of accounts, instruments and the market state that stress scenarios move.

A :class:`Book` is a sparse ``accounts x instruments`` matrix of signed
quantities (contracts; long > 0) plus optional per-account collateral in quote
currency. Instruments are :class:`StressInstrument` rows (delta-one spot,
perpetual, dated future, or European option on a linear contract); the market
is a :class:`StressMarket` (spot, annualised volatility and average daily
quote volume per underlying).

These are the stress layer's own light types. When
:mod:`margincal.margin.portfolio` is available its ``InstrumentSpec`` /
``MarketState`` are converted with :func:`from_portfolio` (see
``docs/stress_testing.md``).

The synthetic book (:func:`synthetic_book`) is the default of ``margincal
stress``: a fixed-seed population documented in its docstring.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from margincal.errors import ConfigError, DataError
from margincal.instruments import parse as parse_instrument_name

KINDS = ("spot", "perpetual", "future", "option")


@dataclass(frozen=True)
class StressInstrument:
    """One instrument as the stress engine sees it.

    ``expiry_years`` and ``strike`` only matter for options (and ``expiry_years``
    for futures: none of the shocks here move the basis, so futures revalue like
    spot). ``option_type`` is ``"C"`` or ``"P"``. P&L is in quote currency per
    contract; a contract is ``contract_size`` units of ``underlying``.
    """

    name: str
    kind: str
    underlying: str
    contract_size: float = 1.0
    strike: float | None = None
    expiry_years: float | None = None
    option_type: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"instrument {self.name}: kind is {self.kind!r}; it must be one of {KINDS}")
        if not self.contract_size > 0:
            raise ConfigError(f"instrument {self.name}: contract_size is {self.contract_size}; it must be > 0")
        if self.kind == "option":
            if self.strike is None or not self.strike > 0:
                raise ConfigError(f"instrument {self.name}: an option needs strike > 0")
            if self.expiry_years is None or not self.expiry_years > 0:
                raise ConfigError(f"instrument {self.name}: an option needs expiry_years > 0")
            if self.option_type not in ("C", "P"):
                raise ConfigError(f"instrument {self.name}: option_type is {self.option_type!r}; use 'C' or 'P'")


@dataclass(frozen=True)
class StressMarket:
    """Market state per underlying: spot (quote currency), annualised vol, average daily quote volume.

    ``as_of`` names the data the state was taken from (provenance).
    """

    spot: Mapping[str, float]
    vol: Mapping[str, float]
    adv: Mapping[str, float] = field(default_factory=dict)
    as_of: str = ""

    def __post_init__(self) -> None:
        for u, s in self.spot.items():
            if not (s > 0 and math.isfinite(s)):
                raise ConfigError(f"market spot[{u}] is {s}; it must be finite and > 0")
        for u, v in self.vol.items():
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"market vol[{u}] is {v}; it must be finite and > 0 (annualised)")

    def need(self, underlyings: Sequence[str]) -> None:
        missing = [u for u in underlyings if u not in self.spot or u not in self.vol]
        if missing:
            raise ConfigError(f"market has no spot/vol for {', '.join(sorted(set(missing)))}; "
                              f"it has {', '.join(sorted(self.spot))}")


@dataclass(frozen=True)
class Book:
    """Positions of many accounts: ``positions`` is CSR ``accounts x instruments`` (signed contracts)."""

    accounts: tuple[str, ...]
    instruments: tuple[StressInstrument, ...]
    positions: sp.csr_matrix
    collateral: np.ndarray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        n, m = len(self.accounts), len(self.instruments)
        if self.positions.shape != (n, m):
            raise DataError(f"book positions have shape {self.positions.shape}; expected ({n}, {m})")
        if self.collateral is not None and np.asarray(self.collateral).shape != (n,):
            raise DataError(f"book collateral has {np.asarray(self.collateral).size} values for {n} accounts")
        names = [i.name for i in self.instruments]
        if len(set(names)) != len(names):
            raise DataError("book instruments have duplicate names")

    @property
    def n_accounts(self) -> int:
        return len(self.accounts)

    def instrument_names(self) -> list[str]:
        return [i.name for i in self.instruments]

    def underlyings(self) -> list[str]:
        return sorted({i.underlying for i in self.instruments})

    def subset(self, rows: np.ndarray) -> Book:
        rows = np.asarray(rows)
        return Book(tuple(np.asarray(self.accounts, dtype=object)[rows]), self.instruments,
                    self.positions[rows], None if self.collateral is None else np.asarray(self.collateral)[rows],
                    self.source)


def instrument_from_name(name: str) -> StressInstrument:
    """The stress instrument of a name in any form of :mod:`margincal.instruments`.

    ``BTC-PERP`` / ``BTC-PERPETUAL`` / ``BTC/USDT:USDT`` -> perpetual, ``BTC-USDT`` -> spot,
    ``BTC-27DEC24`` -> future. Options need their time to expiry, which depends on the
    valuation time (:func:`margincal.distributed.stress.stress_instruments` computes it);
    describe them explicitly here (see :func:`load_book`). The stress engine values linear
    contracts only, so an inverse name (``BTC-USD-SWAP``) is refused, as on the Dask path.
    """
    inst = parse_instrument_name(name)
    if inst.inverse:
        raise ConfigError(f"{name}: the stress engine values linear contracts only")
    if inst.kind == "option":
        raise DataError(f"{name}: an option needs its time to expiry; pass an instruments list "
                        "(or use margincal.distributed.stress.stress_instruments with a valuation time)")
    return StressInstrument(name, inst.kind, inst.base)


def book_from_frame(df: pd.DataFrame, instruments: Sequence[StressInstrument] | None = None,
                    source: str = "frame") -> Book:
    """Build a :class:`Book` from rows ``account, instrument, quantity[, collateral]``.

    Duplicate (account, instrument) rows are summed; collateral is per account
    (the first non-missing value of each account; all rows of an account must agree).
    """
    cols = {c.lower().strip(): c for c in df.columns}
    for need in ("account", "instrument", "quantity"):
        if need not in cols:
            raise DataError(f"{source}: column {need!r} is missing; a book needs account, instrument, quantity"
                            "[, collateral]")
    acc = df[cols["account"]].astype(str).to_numpy()
    ins = df[cols["instrument"]].astype(str).to_numpy()
    qty = pd.to_numeric(df[cols["quantity"]], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(qty))
    if bad.size:
        raise DataError(f"{source} row {int(bad[0]) + 2}: quantity is {df[cols['quantity']].iloc[bad[0]]!r}; "
                        "it must be a finite number")
    if instruments is None:
        names = sorted(set(ins))
        instruments = [instrument_from_name(n) for n in names]
    inst_index = {i.name: k for k, i in enumerate(instruments)}
    unknown = sorted(set(ins) - set(inst_index))
    if unknown:
        raise DataError(f"{source}: instrument(s) {', '.join(unknown[:5])} not in the instrument list")
    accounts, a_idx = np.unique(acc, return_inverse=True)
    j_idx = np.array([inst_index[x] for x in ins], dtype=np.int64)
    pos = sp.coo_matrix((qty, (a_idx, j_idx)), shape=(accounts.size, len(instruments))).tocsr()
    pos.sum_duplicates()
    pos.eliminate_zeros()
    collateral = None
    if "collateral" in cols:
        c = pd.to_numeric(df[cols["collateral"]], errors="coerce").to_numpy(dtype=float)
        per = pd.Series(c).groupby(a_idx).agg(["min", "max"])
        if (per["min"] != per["max"]).any():
            k = int(np.flatnonzero((per["min"] != per["max"]).to_numpy())[0])
            raise DataError(f"{source}: account {accounts[k]} has different collateral values on its rows")
        collateral = per["min"].to_numpy(dtype=float)
        if np.any(~np.isfinite(collateral)) or np.any(collateral < 0):
            k = int(np.flatnonzero(~(collateral >= 0))[0])
            raise DataError(f"{source}: account {accounts[k]} collateral is {collateral[k]}; it must be >= 0")
    return Book(tuple(str(a) for a in accounts), tuple(instruments), pos, collateral, source)


def load_book(path: str | Path, instruments: Sequence[StressInstrument] | None = None) -> Book:
    """Read a book file (CSV, CSV.GZ or Parquet) with columns ``account,instrument,quantity[,collateral]``."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"book file {p}: not found")
    name = p.name.lower()
    try:
        df = pd.read_parquet(p) if name.endswith((".parquet", ".pq")) else pd.read_csv(p, compression="infer")
    except Exception as exc:  # parser errors of several types
        raise DataError(f"book file {p.name}: cannot read ({exc})") from None
    if len(df) == 0:
        raise DataError(f"book file {p.name}: no positions (only a header, or empty)")
    return book_from_frame(df, instruments, source=p.name)


# ---------------------------------------------------------------- market from the bundled data


def market_from_samples(as_of: Any = None, underlyings: Sequence[str] | None = None) -> StressMarket:
    """Market state from the bundled daily files: last close, EWMA(0.94) annualised vol, 30-day ADV.

    ``as_of`` (date) cuts the data there (inclusive); default: all data. A coin whose file ends
    earlier keeps its last close (named in the returned ``as_of``).
    """
    from margincal import datasets
    from margincal.vol.ewma import ewma_variance

    coins = underlyings or ["BTC", "ETH", "SOL", "XRP", "DOGE", "BNB", "ADA", "TRX", "BCH", "LTC"]
    spot, vol, adv = {}, {}, {}
    last_dates = []
    for c in coins:
        f = f"{c.lower()}_daily.csv"
        if c.upper() not in datasets.DAILY_SYMBOLS:
            raise DataError(f"no bundled daily file for {c} ({f})")
        d = datasets.load_daily(c)
        d.index = d.index.tz_localize(None)
        if as_of is not None:
            d = d.loc[: pd.Timestamp(as_of).tz_localize(None) if pd.Timestamp(as_of).tzinfo else pd.Timestamp(as_of)]
        if len(d) < 60:
            raise DataError(f"{f}: fewer than 60 days up to {as_of}")
        r = np.diff(np.log(d["close"].to_numpy()))
        v = ewma_variance(r, 0.94)[-1]
        spot[c] = float(d["close"].iloc[-1])
        vol[c] = float(math.sqrt(v * 365.0))
        adv[c] = float(d["volume_quote"].iloc[-30:].mean())
        last_dates.append(d.index[-1])
    newest = max(last_dates)
    stale = [f"{c} to {d.date()}" for c, d in zip(coins, last_dates, strict=True) if d < newest]
    as_of_s = str(newest.date()) + (f" ({', '.join(stale)})" if stale else "")
    return StressMarket(spot, vol, adv, as_of=as_of_s)


# ---------------------------------------------------------------- synthetic book


SYNTHETIC_UNDERLYINGS = ("BTC", "ETH", "SOL", "XRP", "DOGE")


def synthetic_instruments(market: StressMarket) -> list[StressInstrument]:
    """Perpetuals on five majors plus eight BTC and ETH options (30 and 90 days, ATM and 10% OTM)."""
    out = [StressInstrument(f"{u}-PERP", "perpetual", u) for u in SYNTHETIC_UNDERLYINGS]
    for u in ("BTC", "ETH"):
        s = market.spot[u]
        step = 1000.0 if u == "BTC" else 50.0
        for days in (30, 90):
            for typ, mny in (("C", 1.0), ("P", 1.0), ("C", 1.1), ("P", 0.9)):
                k = round(s * mny / step) * step
                out.append(StressInstrument(f"{u}-{days}D-{int(k)}-{typ}", "option", u, 1.0, k, days / 365.0, typ))
    return out


def synthetic_book(n_accounts: int = 10_000, *, market: StressMarket | None = None, seed: int = 20240805,
                   im_rate: float = 0.10) -> Book:
    """A documented synthetic book (fixed seed), the default of ``margincal stress``.

    * Instruments: :func:`synthetic_instruments` (5 perpetuals, 16 options).
    * Each account holds 1 to 4 positions (number ~ 1 + Binomial(3, 0.35)), on
      distinct instruments; 75% of positions are on perpetuals, 25% on options,
      perps weighted BTC 40%, ETH 30%, SOL 15%, XRP 8%, DOGE 7%.
    * Position notional (quote currency) is lognormal (median 5,000, sigma 1.2)
      with a Pareto tail: 3% of positions are instead 50,000 x Pareto(alpha=1.5)
      (the trade-size tail exponent ~1.5 of Gabaix et al., Nature 2003).
    * Direction: long with probability 0.55 (perps), 0.5 (options).
    * Collateral: gross notional x ``im_rate`` x (1 + Exp(mean 1)), i.e. every
      account posts at least ``im_rate`` of its gross notional, on average twice that.
    """
    if n_accounts < 1:
        raise ConfigError(f"n_accounts is {n_accounts}; it must be >= 1")
    market = market or market_from_samples()
    insts = synthetic_instruments(market)
    rng = np.random.default_rng(seed)
    n_pos = 1 + rng.binomial(3, 0.35, size=n_accounts)
    total = int(n_pos.sum())
    acc = np.repeat(np.arange(n_accounts), n_pos)
    perp_idx = np.arange(5)
    opt_idx = np.arange(5, len(insts))
    is_perp = rng.random(total) < 0.75
    j = np.where(is_perp, rng.choice(perp_idx, size=total, p=[0.40, 0.30, 0.15, 0.08, 0.07]),
                 rng.choice(opt_idx, size=total))
    notional = np.exp(np.log(5000.0) + 1.2 * rng.standard_normal(total))
    tail = rng.random(total) < 0.03
    notional[tail] = 50_000.0 * (1.0 + rng.pareto(1.5, size=int(tail.sum())))
    side = np.where(rng.random(total) < np.where(is_perp, 0.55, 0.5), 1.0, -1.0)
    spot = np.array([market.spot[i.underlying] for i in insts])
    qty = side * notional / spot[j]
    pos = sp.coo_matrix((qty, (acc, j)), shape=(n_accounts, len(insts))).tocsr()
    pos.sum_duplicates()
    gross = np.asarray(abs(pos) @ spot).ravel()
    collateral = gross * im_rate * (1.0 + rng.exponential(1.0, size=n_accounts))
    accounts = tuple(f"A{k:07d}" for k in range(n_accounts))
    return Book(accounts, tuple(insts), pos, collateral, f"synthetic(n={n_accounts}, seed={seed})")
