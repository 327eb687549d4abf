"""Position books: CSV/Parquet files of (account, instrument, quantity) -> sparse accounts x instruments.

Required columns: ``account``, ``instrument`` (Deribit-style name, see
:func:`parse_instrument`; a spot pair such as ``BTC-USDC`` is base-asset collateral,
in coins, margined only by ``derive_like()``), ``quantity`` (signed contracts). Optional columns,
constant per instrument: ``inverse`` (true for coin-margined contracts) and
``contract_size``. Repeated (account, instrument) rows are summed, with a
:class:`BookWarning` saying how many.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from margincal.errors import DataError, MargincalError, MargincalWarning
from margincal.margin.portfolio.engine import iter_blocks
from margincal.margin.portfolio.instruments import InstrumentSpec, parse_instrument

REQUIRED = ("account", "instrument", "quantity")


class BookWarning(MargincalWarning):
    """A book was repaired (duplicate rows summed)."""


@dataclass(frozen=True)
class Book:
    """Accounts x instruments positions (CSR), with the instrument specs in column order."""

    accounts: np.ndarray
    instruments: tuple[str, ...]
    positions: sparse.csr_matrix
    specs: tuple[InstrumentSpec, ...]
    source: str = "book"

    @property
    def n_accounts(self) -> int:
        return int(self.positions.shape[0])

    def blocks(self, size: int) -> Iterator[tuple[np.ndarray, sparse.csr_matrix]]:
        """``(account_ids, rows)`` blocks of ``size`` accounts (for :func:`portfolio_margin_blocks`)."""
        return iter_blocks(self.positions, self.accounts, size)


def _truthy(v: object) -> bool:
    return str(v).strip().lower() in ("1", "true", "t", "yes", "y")


def book_from_frame(df: pd.DataFrame, name: str = "book", *, line_offset: int = 2,
                    inverse: bool | None = None) -> Book:
    """Validate a positions frame (see module doc); ``line_offset`` maps row 0 to its file line."""
    cols = {c.strip().lower(): c for c in df.columns}
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise DataError(f"{name}: missing column(s) {', '.join(missing)}; a book needs account, instrument, quantity")
    acc = df[cols["account"]].astype(str).str.strip()
    inst = df[cols["instrument"]].astype(str).str.strip()
    qty = pd.to_numeric(df[cols["quantity"]], errors="coerce").to_numpy(dtype=float)
    for label, bad in (("account is empty", (acc == "") | df[cols["account"]].isna()),
                       ("instrument is empty", (inst == "") | df[cols["instrument"]].isna()),
                       ("quantity is not a finite number", ~np.isfinite(qty))):
        b = np.flatnonzero(np.asarray(bad))
        if b.size:
            raw = df[cols["quantity"]].iloc[b[0]] if "quantity" in label else ""
            extra = f" ({raw!r})" if "quantity" in label else ""
            raise DataError(f"{name} line {b[0] + line_offset}: {label}{extra}; {b.size} such row(s)")
    if len(df) == 0:
        raise DataError(f"{name}: no positions")
    a_codes, a_names = pd.factorize(acc, sort=False)
    i_codes, i_names = pd.factorize(inst, sort=False)
    dup = pd.DataFrame({"a": a_codes, "i": i_codes}).duplicated().to_numpy()
    if dup.any():
        warnings.warn(f"{name}: {int(dup.sum())} repeated (account, instrument) rows were summed",
                      BookWarning, stacklevel=2)
    P = sparse.csr_matrix((qty, (a_codes, i_codes)), shape=(len(a_names), len(i_names)))
    P.sum_duplicates()
    inv_col = cols.get("inverse")
    cs_col = cols.get("contract_size")
    specs = []
    for k, n in enumerate(i_names):
        rows = np.flatnonzero(i_codes == k)
        inv: bool | None = inverse  # None: the name says (margincal.instruments)
        cs = 1.0
        if inv_col is not None:
            vals = {_truthy(v) for v in df[inv_col].iloc[rows]}
            if len(vals) > 1:
                raise DataError(f"{name}: instrument {n} has both inverse and linear rows (line {rows[0] + line_offset})")
            inv = vals.pop()
        if cs_col is not None:
            vals_cs = set(pd.to_numeric(df[cs_col].iloc[rows], errors="coerce").tolist())
            if len(vals_cs) > 1 or not all(np.isfinite(v) and v > 0 for v in vals_cs):
                raise DataError(f"{name}: instrument {n} needs one contract_size > 0 (line {rows[0] + line_offset})")
            cs = float(vals_cs.pop())
        try:
            specs.append(parse_instrument(n, inverse=inv, contract_size=cs))
        except MargincalError as exc:
            raise DataError(f"{name} line {rows[0] + line_offset}: {exc}") from None
    return Book(np.asarray(a_names, dtype=object), tuple(str(x) for x in i_names), P, tuple(specs), name)


def read_book(path: str | Path, *, inverse: bool | None = None) -> Book:
    """Read a CSV (``.csv``/``.csv.gz``) or Parquet book (module doc)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"book {p} does not exist")
    if p.suffix.lower() in (".parquet", ".pq"):
        df = pd.read_parquet(p)
        return book_from_frame(df, p.name, line_offset=0, inverse=inverse)
    try:
        df = pd.read_csv(p, dtype={"account": str, "instrument": str}, compression="infer")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{p.name}: cannot read as CSV ({exc})") from None
    return book_from_frame(df, p.name, inverse=inverse)


__all__ = ["Book", "BookWarning", "book_from_frame", "read_book"]
