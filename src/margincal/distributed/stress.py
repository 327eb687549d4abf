"""Book-wide stress, one task per book partition.

Each task reads one partition, turns it into a :class:`margincal.stress.book.Book`
and runs :func:`margincal.stress.engine.scenario_losses` (the single-process
kernel) on it, then computes per scenario what
:meth:`margincal.stress.engine.BookStressResult.summary` reports: total loss
(losses clipped at 0), accounts short, total shortfall beyond the account's
resources, and the two largest shortfalls (Cover-1 / Cover-2 candidates). The
client adds the sums and keeps the overall two largest; per-account losses are
written to Parquet when ``out`` is given.

Resources of an account (what its loss is compared with):

* ``margin`` = a single rate, a mapping instrument -> rate, or a ParameterSet:
  gross margin, :func:`margincal.stress.engine.account_margin` (IM);
* ``pnl`` = a :class:`~margincal.margin.portfolio.ScenarioPnL`: the account's
  portfolio IM under that scenario matrix (risk matrix or historical).

Instruments of the book are converted from their Deribit-style names
(:func:`stress_instruments`): perpetuals, dated futures and European options
(time to expiry measured from ``valuation_time``), linear, one coin per
contract unless the name parser says otherwise; ``UND-USDT`` spot names work too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from margincal.data.book import _fs_and_path, _join
from margincal.distributed.portfolio import _prepare_out, as_book
from margincal.errors import ConfigError, DataError
from margincal.instruments import parse as parse_name
from margincal.instruments import underlying_of
from margincal.margin.portfolio import ScenarioPnL, portfolio_margin_blocks
from margincal.stress.book import (
    Book,
    StressInstrument,
    StressMarket,
    instrument_from_name,
    market_from_samples,
)
from margincal.stress.engine import account_margin, scenario_losses
from margincal.stress.scenarios import Scenario


def stress_instruments(names: Sequence[str], valuation_time: Any) -> list[StressInstrument]:
    """StressInstrument per name (any form of :mod:`margincal.instruments`); options need
    ``valuation_time`` before expiry. Perpetuals, futures and spot read exactly as
    :func:`margincal.stress.book.instrument_from_name` reads them."""
    t = pd.Timestamp(valuation_time)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    out = []
    for n in names:
        s = parse_name(n)
        if s.inverse:
            raise ConfigError(f"{n}: the stress engine values linear contracts only")
        if s.kind == "option":
            T = s.years_to_expiry(t)
            if not T > 0:
                raise DataError(f"{n} expired at {s.expiry} (valuation time {t}); value the book earlier")
            out.append(StressInstrument(n, "option", s.base, 1.0, float(s.strike),  # type: ignore[arg-type]
                                        T, s.option_type))
        elif s.kind == "future":
            out.append(StressInstrument(n, "future", s.base, 1.0, expiry_years=max(s.years_to_expiry(t), 0.0)))
        else:
            out.append(instrument_from_name(n))
    return out


@dataclass(frozen=True)
class PartitionStress:
    index: int
    n_accounts: int
    total_loss: np.ndarray  # per scenario
    accounts_short: np.ndarray
    total_shortfall: np.ndarray
    top_values: np.ndarray  # 2 x scenarios, largest first
    top_accounts: np.ndarray  # 2 x scenarios (object)
    frame: pd.DataFrame | None = None


@dataclass(frozen=True)
class BookStressSummary:
    """Book-wide stress: one row per scenario (as ``BookStressResult.summary``), with provenance."""

    scenarios: tuple[str, ...]
    n_accounts: int
    rows: list[dict[str, Any]]
    resources_kind: str
    provenance: dict[str, Any]
    elapsed_s: float
    out: str | None = None
    frame: pd.DataFrame | None = None  # collect=True: loss[<scenario>] and resources per account
    created_at: str = field(default_factory=lambda: pd.Timestamp.now(tz="UTC").isoformat())

    def summary(self) -> list[dict[str, Any]]:
        return self.rows


def _resources(book: Book, market: StressMarket, margin: Any, pnl: ScenarioPnL | None,
               ids: np.ndarray, B: Any) -> np.ndarray:
    if pnl is not None:
        return portfolio_margin_blocks([(ids, B)], pnl).im
    return account_margin(book, market, margin, "im")


def stress_partition(k: int, bk: Any, instruments: tuple[StressInstrument, ...], market: StressMarket,
                     scenarios: tuple[Scenario, ...], margin: Any, pnl: ScenarioPnL | None, out: str | None,
                     collect: bool) -> PartitionStress:
    """Task: stress losses of partition ``k`` and their per-scenario aggregates (module doc)."""
    names = [i.name for i in instruments]
    ids, B = bk.block(k, names)
    book = Book(tuple(str(a) for a in ids), instruments, B, None, f"partition {k}")
    losses = scenario_losses(book, market, scenarios)
    if pnl is not None:
        col = {n: i for i, n in enumerate(names)}
        res = _resources(book, market, margin, pnl, ids, B[:, [col[n] for n in pnl.instruments]])
    else:
        res = _resources(book, market, margin, None, ids, B)
    sf = np.maximum(losses - res[:, None], 0.0)
    n, S = sf.shape
    top_v = np.zeros((2, S))
    top_a = np.full((2, S), None, dtype=object)
    for s in range(S):
        if n == 0:
            continue
        order = np.argsort(-sf[:, s], kind="stable")[:2]
        top_v[: order.size, s] = sf[order, s]
        top_a[: order.size, s] = [book.accounts[i] for i in order]
    frame = None
    if out is not None or collect:
        cols: dict[str, Any] = {"account": ids, "resources": res}
        for j, sc in enumerate(scenarios):
            cols[f"loss[{sc.name}]"] = losses[:, j]
        frame = pd.DataFrame(cols)
        if out is not None:
            fs, root = _fs_and_path(out)
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), _join(root, f"part-{k:05d}.parquet"),
                           filesystem=fs, compression="zstd")
    return PartitionStress(k, n, np.clip(losses, 0.0, None).sum(axis=0), (sf > 0).sum(axis=0),
                           sf.sum(axis=0), top_v, top_a, frame if collect else None)


def book_stress(
    engine: Any,
    book: Any,
    scenarios: Sequence[Scenario],
    market: StressMarket | None = None,
    *,
    margin: float | Mapping[str, float] | Any = None,
    pnl: ScenarioPnL | None = None,
    valuation_time: Any = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    collect: bool = False,
    progress: Callable[[int], None] | None = None,
) -> BookStressSummary:
    """Apply every scenario to every account of a partitioned ``book`` on ``engine`` (module doc).

    ``market`` default: :func:`margincal.stress.book.market_from_samples` for the
    book's underlyings. ``valuation_time`` (for option expiries) default: the
    book's reference as-of time, else now. Give ``margin`` or ``pnl``.
    """
    t0 = time.perf_counter()
    scenarios = tuple(scenarios)
    if not scenarios:
        raise ConfigError("no scenarios given")
    if (margin is None) == (pnl is None):
        raise ConfigError("give margin= (rate, mapping or ParameterSet) or pnl= (portfolio IM), exactly one")
    bk = as_book(book)
    ref = (getattr(bk, "meta", None) or {}).get("reference_market") or {}
    when = valuation_time if valuation_time is not None else (ref.get("asof") or pd.Timestamp.now(tz="UTC"))
    insts = tuple(stress_instruments(bk.instruments, when))
    if pnl is not None and sorted(pnl.instruments) != sorted(bk.instruments):
        raise ConfigError(f"pnl has {len(pnl.instruments)} instruments, the book {len(bk.instruments)}; the "
                          "scenario matrix must cover exactly the book's instruments")
    if market is None:
        market = market_from_samples(underlyings=sorted({underlying_of(n) for n in bk.instruments}))
    out_s = _prepare_out(out, overwrite)
    parts: list[PartitionStress] = engine.map(
        stress_partition, range(bk.n_partitions), bk, insts, market, scenarios, margin, pnl, out_s, bool(collect),
        progress=progress, weight=lambda _k, r: r.n_accounts)
    n = sum(p.n_accounts for p in parts)
    rows = []
    for s, sc in enumerate(scenarios):
        cands = [(float(p.top_values[r, s]), p.index, r, p.top_accounts[r, s]) for p in parts for r in range(2)
                 if p.top_accounts[r, s] is not None]
        cands.sort(key=lambda c: (-c[0], c[1], c[2]))
        c1 = cands[0][0] if cands else 0.0
        c2v = cands[1][0] if len(cands) > 1 else 0.0
        rows.append({
            "scenario": sc.name,
            "total_loss": math.fsum(float(p.total_loss[s]) for p in parts),
            "accounts_short": int(sum(int(p.accounts_short[s]) for p in parts)),
            "total_shortfall": math.fsum(float(p.total_shortfall[s]) for p in parts),
            "cover1": c1,
            "cover1_account": cands[0][3] if c1 > 0 else None,
            "cover2": c1 + (c2v if n >= 2 else 0.0),
            "cover2_accounts": ([cands[0][3], cands[1][3]] if n >= 2 and c2v > 0 else
                                ([cands[0][3]] if c1 > 0 else [])),
        })
    kind = "portfolio initial margin" if pnl is not None else "initial margin"
    frame = pd.concat([p.frame for p in parts if p.frame is not None], ignore_index=True) if collect else None
    prov = {"book": str(getattr(bk, "root", bk)), "market_as_of": market.as_of, "valuation_time": str(when),
            "n_accounts": n, "n_scenarios": len(scenarios), "resources": kind, "engine": engine.describe()}
    return BookStressSummary(tuple(s.name for s in scenarios), n, rows, kind, prov, time.perf_counter() - t0,
                             out_s, frame)


__all__ = ["BookStressSummary", "PartitionStress", "book_stress", "stress_instruments", "stress_partition"]
