"""Book-wide portfolio margin, one task per book partition.

Each task reads ONE partition (a block of accounts), builds its sparse
``accounts x instruments`` block in the column order of the scenario matrix,
and runs :func:`margincal.margin.portfolio.portfolio_margin_blocks` on it: the
very kernel of the single-process path, so per-account IM/MM are the same
numbers. The task writes its per-account results to ``out/part-KKKKK.parquet``
when ``out`` is given and returns only sums and its ``top`` largest accounts.
The client adds the sums in partition order and keeps the overall top
accounts; it never holds the book or the per-account results (unless
``collect=True``, for small books and tests).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from margincal.data.book import _fs_and_path, _join, open_book
from margincal.errors import ConfigError, DataError
from margincal.margin.portfolio import (
    InstrumentSpec,
    MarketState,
    RiskMatrixConfig,
    ScenarioPnL,
    deribit_like,
    parse_instrument,
    portfolio_margin_blocks,
    scenario_pnl_matrix,
)

RESULT_META = "_result.json"
TOP_COLUMNS = ("account", "im", "mm", "scenario_charge", "contingency", "driving_scenario")


def as_book(book: Any) -> Any:
    """A book handle: a :class:`PartitionedBook`, a :class:`~margincal.data.book.StoreBook`, or a folder path."""
    if hasattr(book, "block") and hasattr(book, "n_partitions"):
        return book
    if isinstance(book, (str, Path)):
        return open_book(book)
    raise ConfigError(f"book of type {type(book).__name__}: give a folder of Parquet partitions, a "
                      "PartitionedBook or a StoreBook")


def book_specs(book: Any) -> list[InstrumentSpec]:
    """Instrument specs of the book's instruments (Deribit-style names, linear unless the name says otherwise)."""
    return [parse_instrument(n) for n in as_book(book).instruments]


def book_market(book: Any, *, spot: dict[str, float] | None = None, flat_vol: float | None = None,
                asof: Any = None) -> MarketState:
    """MarketState from the reference market a synthetic book records (``_book.json``), overridable.

    Options are priced at the recorded 30-day realised volatility of their
    underlying, or at ``flat_vol`` when given (it then applies to every option).
    """
    bk = as_book(book)
    ref = (getattr(bk, "meta", None) or {}).get("reference_market") or {}
    sp = {**(ref.get("spot") or {}), **{k.upper(): float(v) for k, v in (spot or {}).items()}}
    when = asof if asof is not None else ref.get("asof")
    if when is None:
        raise ConfigError("the book records no valuation time; pass asof=")
    if not sp:
        raise ConfigError("the book records no spot prices; pass spot=")
    vols: dict[str, float] = {}
    if flat_vol is None:
        ref_vol = ref.get("vol") or {}
        for s in book_specs(bk):
            if s.is_option and s.underlying in ref_vol:
                vols[s.name] = float(ref_vol[s.underlying])
    return MarketState(spot=sp, valuation_time=when, vols=vols, flat_vol=flat_vol)


@dataclass(frozen=True)
class PartitionMargin:
    """What one partition task returns (small)."""

    index: int
    n_accounts: int
    im_sum: float
    mm_sum: float
    charge_sum: float
    contingency_sum: float
    n_with_margin: int
    top: pd.DataFrame
    file: str | None = None
    frame: pd.DataFrame | None = None


@dataclass(frozen=True)
class BookMarginResult:
    """Book-wide portfolio margin: totals, the largest accounts, provenance; per-account rows in ``out``.

    Amounts in USD. ``top`` holds the ``top`` accounts by IM (ties: book order).
    ``frame`` (every account, book order) only when run with ``collect=True``.
    """

    n_accounts: int
    n_partitions: int
    total_im: float
    total_mm: float
    total_scenario_charge: float
    total_contingency: float
    accounts_with_margin: int
    top: pd.DataFrame
    method: str
    params: dict[str, Any]
    engine: dict[str, Any]
    elapsed_s: float
    out: str | None = None
    frame: pd.DataFrame | None = None
    created_at: str = field(default_factory=lambda: pd.Timestamp.now(tz="UTC").isoformat())

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no per-account data except the top accounts)."""
        return {
            "n_accounts": self.n_accounts, "n_partitions": self.n_partitions, "total_im": self.total_im,
            "total_mm": self.total_mm, "total_scenario_charge": self.total_scenario_charge,
            "total_contingency": self.total_contingency, "accounts_with_margin": self.accounts_with_margin,
            "method": self.method, "engine": self.engine, "elapsed_s": self.elapsed_s, "out": self.out,
            "created_at": self.created_at,
            "top": [{k: _py(v) for k, v in r.items()} for r in self.top.to_dict("records")],
        }


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _top(frame: pd.DataFrame, top: int) -> pd.DataFrame:
    if top <= 0 or frame.empty:
        return frame.iloc[:0]
    k = min(top, len(frame))
    im = frame["im"].to_numpy()
    idx = np.argpartition(-im, k - 1)[:k] if k < len(frame) else np.arange(len(frame))
    idx = idx[np.lexsort((idx, -im[idx]))]
    return frame.iloc[idx].reset_index(drop=True)


def _result_table(frame: pd.DataFrame, drv: np.ndarray, labels: Sequence[str]) -> pa.Table:
    ind = np.where(drv < 0, len(labels), drv).astype(np.int32)
    dictionary = pa.array(list(labels) + [""], type=pa.string())
    return pa.table({
        "account": pa.array(frame["account"].to_numpy()),
        "im": pa.array(frame["im"].to_numpy(float)), "mm": pa.array(frame["mm"].to_numpy(float)),
        "scenario_charge": pa.array(frame["scenario_charge"].to_numpy(float)),
        "contingency": pa.array(frame["contingency"].to_numpy(float)),
        "driving_scenario": pa.array(drv.astype(np.int32)),
        "driving_label": pa.DictionaryArray.from_arrays(pa.array(ind), dictionary),
    })


def margin_partition(k: int, book: Any, pnl: ScenarioPnL, include_contingency: bool, out: str | None,
                     top: int, collect: bool) -> PartitionMargin:
    """Task: portfolio margin of partition ``k`` (module doc)."""
    ids, B = book.block(k, pnl.instruments)
    res = portfolio_margin_blocks([(ids, B)], pnl, include_contingency=include_contingency)
    frame = pd.DataFrame({"account": res.accounts, "im": res.im, "mm": res.mm,
                          "scenario_charge": res.scenario_charge, "contingency": res.contingency,
                          "driving_scenario": res.driving_label})
    file = None
    if out is not None:
        fs, root = _fs_and_path(out)
        file = f"part-{k:05d}.parquet"
        pq.write_table(_result_table(frame, np.asarray(res.driving_scenario), pnl.driver_labels), _join(root, file),
                       filesystem=fs, compression="zstd")
    return PartitionMargin(
        index=k, n_accounts=len(res), im_sum=float(res.im.sum()), mm_sum=float(res.mm.sum()),
        charge_sum=float(res.scenario_charge.sum()), contingency_sum=float(res.contingency.sum()),
        n_with_margin=int((res.im > 0).sum()), top=_top(frame, top), file=file,
        frame=frame if collect else None,
    )


def _prepare_out(out: str | Path | None, overwrite: bool) -> str | None:
    if out is None:
        return None
    from pyarrow import fs as pafs

    fs, root = _fs_and_path(out)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        raise DataError(f"out {out} is a file; per-account results are written as a folder of Parquet files")
    if info.type == pafs.FileType.Directory:
        old = [f for f in fs.get_file_info(pafs.FileSelector(root)) if f.base_name.endswith(".parquet")
               or f.base_name == RESULT_META]
        if old and not overwrite:
            raise DataError(f"out {out} already holds results ({len(old)} files); choose another folder or "
                            "pass overwrite=True")
        for f in old:
            fs.delete_file(f.path)
    fs.create_dir(root, recursive=True)
    return str(out) if "://" in str(out) else root


def book_portfolio_margin(
    engine: Any,
    book: Any,
    market: MarketState | None = None,
    config: RiskMatrixConfig | None = None,
    *,
    pnl: ScenarioPnL | None = None,
    include_contingency: bool = True,
    out: str | Path | None = None,
    overwrite: bool = False,
    top: int = 10,
    collect: bool = False,
    progress: Callable[[int], None] | None = None,
) -> BookMarginResult:
    """Portfolio IM/MM of every account of a partitioned ``book`` on ``engine``.

    The scenario matrix is ``pnl`` when given (e.g. from
    :class:`~margincal.margin.portfolio.HistoricalPortfolioMargin`), else the
    risk matrix of ``config`` (default :func:`deribit_like`) for the book's
    instruments in ``market`` (default :func:`book_market`). It is built once
    here and sent to every worker once. ``out``: folder for per-account results
    (one Parquet file per partition, plus ``_result.json``). ``progress(n)`` is
    called with the accounts of each finished partition.
    """
    t0 = time.perf_counter()
    bk = as_book(book)
    if pnl is None:
        mk = market if market is not None else book_market(bk)
        pnl = scenario_pnl_matrix(book_specs(bk), mk, config if config is not None else deribit_like())
    elif config is not None:
        raise ConfigError("give config= or pnl=, not both")
    out_s = _prepare_out(out, overwrite)
    parts: list[PartitionMargin] = engine.map(
        margin_partition, range(bk.n_partitions), bk, pnl, include_contingency, out_s, int(top), bool(collect),
        progress=progress, weight=lambda _k, r: r.n_accounts)
    n = sum(p.n_accounts for p in parts)
    tops = [p.top.assign(_order=p.index) for p in parts if len(p.top)]
    top_frame = (_top(pd.concat(tops, ignore_index=True), top).drop(columns="_order") if tops
                 else pd.DataFrame(columns=list(TOP_COLUMNS)))
    frame = pd.concat([p.frame for p in parts if p.frame is not None], ignore_index=True) if collect else None
    params = {"method": pnl.method, "n_instruments": len(pnl.instruments), "n_scenarios": len(pnl.labels),
              "include_contingency": include_contingency, "im_multiplier": pnl.im_multiplier,
              "mm_fraction": pnl.mm_fraction, "book": str(getattr(bk, "root", bk)),
              "n_rows": getattr(bk, "n_rows", None), "valuation_time": pnl.params.get("valuation_time"),
              "config": pnl.params.get("config", {}).get("name") if isinstance(pnl.params.get("config"), dict)
              else None}
    res = BookMarginResult(
        n_accounts=n, n_partitions=len(parts),
        total_im=math.fsum(p.im_sum for p in parts), total_mm=math.fsum(p.mm_sum for p in parts),
        total_scenario_charge=math.fsum(p.charge_sum for p in parts),
        total_contingency=math.fsum(p.contingency_sum for p in parts),
        accounts_with_margin=sum(p.n_with_margin for p in parts), top=top_frame, method=pnl.method,
        params=params, engine=engine.describe(), elapsed_s=time.perf_counter() - t0, out=out_s, frame=frame,
    )
    if out_s is not None:
        fs, root = _fs_and_path(out_s)
        meta = {**res.summary(), "params": params, "files": [p.file for p in parts],
                "columns": ["account", "im", "mm", "scenario_charge", "contingency", "driving_scenario",
                            "driving_label"]}
        with fs.open_output_stream(_join(root, RESULT_META)) as f:
            f.write(json.dumps(meta, indent=1, default=str).encode())
    return res


__all__ = [
    "BookMarginResult",
    "PartitionMargin",
    "as_book",
    "book_market",
    "book_portfolio_margin",
    "book_specs",
    "margin_partition",
]
