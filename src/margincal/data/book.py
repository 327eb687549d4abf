"""Large position books: a synthetic-book generator and a partitioned Parquet reader.

A *partitioned book* is a folder of Parquet files, one per block of accounts::

    book/
      _book.json            metadata: instruments (column order), partitions, generator parameters
      part-00000.parquet    columns account (int64 or string), instrument (string), quantity (float64)
      part-00001.parquet
      ...

Every account lives in exactly one partition (a partition is a contiguous
range of accounts), so a task can read one file, build its sparse
``accounts x instruments`` block and compute per-account numbers without
seeing the rest of the book. ``quantity`` is signed (long > 0) and counted in
contracts; the synthetic book's contracts are linear, one coin of the
underlying each (see :func:`generate_book`). The folder is a plain
``pyarrow.dataset`` (files starting with ``_`` are ignored by pyarrow), so
other tools (DuckDB ``read_parquet('book/*.parquet')``, polars, Spark) read it
too. Paths may be local folders or URIs pyarrow understands (``s3://...``,
``gs://...``) when the matching filesystem is available.

This module knows nothing of margin: it returns CSR matrices in the
instrument order the caller asks for (e.g. ``ScenarioPnL.instruments``).

The synthetic book
------------------
:func:`generate_book` writes ``n_accounts`` accounts with the distributions
documented in its docstring (and in docs/scaling.md). Accounts are generated
in fixed blocks of :data:`GEN_BLOCK` accounts, block ``b`` drawing from
``numpy.random.SeedSequence(seed).spawn(...)[b]`` (the ``b``-th child), so the
book depends on ``seed`` and the generator parameters only: not on
``accounts_per_partition``, not on how many workers wrote it.
"""

from __future__ import annotations

import calendar
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from scipy import sparse

from margincal.errors import ConfigError, DataError
from margincal.instruments import Instrument, format_name, kind_of, perpetual_name, underlying_of

META_FILE = "_book.json"
FORMAT = "margincal-book/1"
GEN_BLOCK = 10_000
DEFAULT_PARTITION = 100_000
COLUMNS = ("account", "instrument", "quantity")

# ---------------------------------------------------------------- filesystem helpers


def _fs_and_path(path: str | Path) -> tuple[Any, str]:
    """(pyarrow filesystem, path inside it) for a local path or a URI (``s3://bucket/book``)."""
    s = str(path)
    if "://" in s:
        from pyarrow import fs as pafs

        try:
            return pafs.FileSystem.from_uri(s)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise DataError(f"book {s}: cannot open this URI with pyarrow ({exc})") from None
    from pyarrow import fs as pafs

    return pafs.LocalFileSystem(), str(Path(s).resolve())


def _join(root: str, name: str) -> str:
    return root.rstrip("/") + "/" + name


def _read_text(fs: Any, path: str) -> str | None:
    from pyarrow import fs as pafs

    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read().decode("utf-8")


def _write_text(fs: Any, path: str, text: str) -> None:
    with fs.open_output_stream(path) as f:
        f.write(text.encode("utf-8"))


# ---------------------------------------------------------------- partitioned book


@dataclass(frozen=True)
class BookPartition:
    """One Parquet file of a book: a contiguous block of accounts."""

    index: int
    file: str  # name relative to the book root
    n_rows: int
    n_accounts: int | None = None
    first_account: Any = None
    last_account: Any = None


class _PartitionCounts:
    """Counts shared by the book kinds, from their ``partitions``."""

    partitions: tuple[BookPartition, ...]

    @property
    def n_partitions(self) -> int:
        return len(self.partitions)

    @property
    def n_rows(self) -> int:
        return int(sum(p.n_rows for p in self.partitions))

    @property
    def n_accounts(self) -> int | None:
        """Number of accounts (None when a partition does not record it)."""
        if any(p.n_accounts is None for p in self.partitions):
            return None
        return int(sum(p.n_accounts for p in self.partitions))  # type: ignore[misc]


@dataclass(frozen=True)
class PartitionedBook(_PartitionCounts):
    """A book stored as Parquet partitions (module doc). Cheap to pickle: holds paths, not data."""

    root: str
    instruments: tuple[str, ...]
    partitions: tuple[BookPartition, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def path_of(self, k: int) -> str:
        return _join(self.root, self.partitions[k].file)

    def read_partition(self, k: int, columns: Sequence[str] = COLUMNS) -> pa.Table:
        """The rows of partition ``k`` (only that file is read)."""
        if not 0 <= k < len(self.partitions):
            raise DataError(f"book {self.root}: partition {k} does not exist ({len(self.partitions)} partitions)")
        path = self.path_of(k)
        fs, inner = _fs_and_path(path)
        try:
            return pq.read_table(inner, columns=list(columns), filesystem=fs)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"book partition {path}: cannot read ({exc})") from None

    def block(self, k: int, instruments: Sequence[str] | None = None) -> tuple[np.ndarray, sparse.csr_matrix]:
        """``(account_ids, positions)`` of partition ``k``: CSR accounts x ``instruments`` (default: the book's)."""
        names = self.instruments if instruments is None else tuple(instruments)
        return table_block(self.read_partition(k), names, source=self.path_of(k))

    def to_frame(self) -> pd.DataFrame:
        """The whole book as one frame: for small books and tests only."""
        return pd.concat([self.read_partition(k).to_pandas() for k in range(self.n_partitions)],
                         ignore_index=True)


def table_block(table: pa.Table, instruments: Sequence[str], *,
                source: str = "partition") -> tuple[np.ndarray, sparse.csr_matrix]:
    """CSR ``accounts x instruments`` (signed quantities, repeated rows summed) from a partition table.

    Accounts keep the order of their first row (the generator writes rows sorted
    by account). Raises :class:`DataError` for an instrument not in
    ``instruments``, an empty account or a non-finite quantity.
    """
    for c in COLUMNS:
        if c not in table.column_names:
            raise DataError(f"{source}: missing column {c!r}; a book needs account, instrument, quantity")
    n_inst = len(instruments)
    if table.num_rows == 0:
        return np.zeros(0, dtype=np.int64), sparse.csr_matrix((0, n_inst))
    acc_col = table.column("account")
    if acc_col.null_count:
        raise DataError(f"{source}: {acc_col.null_count} row(s) with an empty account")
    acc = acc_col.to_numpy()
    codes_a, ids = pd.factorize(acc, sort=False)
    inst = table.column("instrument")
    if inst.null_count:
        raise DataError(f"{source}: {inst.null_count} row(s) with an empty instrument")
    inst = inst.combine_chunks() if isinstance(inst, pa.ChunkedArray) else inst
    if not pa.types.is_dictionary(inst.type):
        inst = pc.dictionary_encode(inst)
    dict_names = [str(x) for x in inst.dictionary.to_pylist()]
    pos = {n: i for i, n in enumerate(instruments)}
    unknown = [n for n in dict_names if n not in pos]
    if unknown:
        used = set(np.unique(inst.indices.to_numpy(zero_copy_only=False)).tolist())
        unknown = [n for i, n in enumerate(dict_names) if n not in pos and i in used]
        if unknown:
            raise DataError(f"{source}: instrument(s) {', '.join(unknown[:5])} are not among the "
                            f"{n_inst} instruments of the book")
    mapping = np.array([pos.get(n, -1) for n in dict_names], dtype=np.int64)
    codes_i = mapping[inst.indices.to_numpy(zero_copy_only=False)]
    q = table.column("quantity").to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    bad = np.flatnonzero(~np.isfinite(q))
    if bad.size:
        raise DataError(f"{source} row {int(bad[0])}: quantity is {q[bad[0]]}; it must be a finite number "
                        f"({bad.size} such row(s))")
    P = sparse.csr_matrix((q, (codes_a, codes_i)), shape=(len(ids), n_inst))
    P.sum_duplicates()
    return np.asarray(ids), P


def open_book(path: str | Path) -> PartitionedBook:
    """Open a partitioned book (module doc): ``_book.json`` when present, else discover the Parquet files.

    Without metadata, every ``*.parquet`` file under ``path`` is one partition
    (pyarrow dataset discovery), the instrument list is the sorted union of the
    ``instrument`` columns (one column read per file), and the account ranges
    come from the Parquet statistics when available. Accounts must not span
    partitions; for integer accounts this is checked from the statistics.
    """
    fs, root = _fs_and_path(path)
    from pyarrow import fs as pafs

    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"book {path} does not exist")
    if info.type == pafs.FileType.File:
        raise DataError(f"book {path} is a file; a partitioned book is a folder of Parquet files "
                        "(see `margincal book partition`)")
    text = _read_text(fs, _join(root, META_FILE))
    root_s = str(path) if "://" in str(path) else root
    if text is not None:
        meta = json.loads(text)
        if meta.get("format") != FORMAT:
            raise DataError(f"book {path}: {META_FILE} has format {meta.get('format')!r}; expected {FORMAT!r}")
        return PartitionedBook(root_s, tuple(meta["instruments"]),
                               tuple(BookPartition(**p) for p in meta["partitions"]),
                               {k: v for k, v in meta.items() if k not in ("partitions", "instruments")})
    try:
        dset = ds.dataset(root, format="parquet", filesystem=fs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"book {path}: not a Parquet dataset ({exc})") from None
    files = sorted(dset.files)
    if not files:
        raise DataError(f"book {path}: no Parquet files")
    names: set[str] = set()
    parts: list[BookPartition] = []
    for k, f in enumerate(files):
        meta_f = pq.ParquetFile(f, filesystem=fs).metadata
        col = pq.read_table(f, columns=["instrument"], filesystem=fs).column("instrument")
        names.update(str(x) for x in pc.unique(col).to_pylist() if x is not None)
        lo, hi = _account_range(meta_f)
        rel = f[len(root):].lstrip("/")
        parts.append(BookPartition(k, rel, int(meta_f.num_rows), None, lo, hi))
    ranges = [(p.first_account, p.last_account) for p in parts]
    if all(isinstance(a, int) and isinstance(b, int) for a, b in ranges):
        order = sorted(range(len(parts)), key=lambda i: ranges[i][0])
        for x, y in zip(order, order[1:], strict=False):
            if ranges[y][0] <= ranges[x][1]:
                raise DataError(f"book {path}: accounts of {parts[x].file} and {parts[y].file} overlap "
                                f"({ranges[x]} vs {ranges[y]}); each account must be in one partition")
    return PartitionedBook(root_s, tuple(sorted(names)), tuple(parts), {"format": FORMAT, "discovered": True})


def _account_range(meta: Any) -> tuple[Any, Any]:
    lo = hi = None
    try:
        idx = [meta.schema.column(i).name for i in range(meta.num_columns)].index("account")
    except ValueError:
        raise DataError("partition has no account column") from None
    for g in range(meta.num_row_groups):
        st = meta.row_group(g).column(idx).statistics
        if st is None or not st.has_min_max:
            return None, None
        lo = st.min if lo is None else min(lo, st.min)
        hi = st.max if hi is None else max(hi, st.max)
    return lo, hi


# ---------------------------------------------------------------- the DuckDB store


@dataclass(frozen=True)
class StoreBook(_PartitionCounts):
    """A book kept in the DuckDB store (tables ``books`` and ``book_positions``); same interface as
    :class:`PartitionedBook`. Each task opens the store read-only and reads one partition (``part``).

    Accounts are stored as text. Load a partitioned book with :func:`load_book_to_store`.
    """

    store: str
    name: str
    instruments: tuple[str, ...]
    partitions: tuple[BookPartition, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> str:
        return f"store:{self.name} ({self.store})"

    def read_partition(self, k: int, columns: Sequence[str] = COLUMNS) -> pa.Table:
        from margincal.data.store import connect

        if not 0 <= k < len(self.partitions):
            raise DataError(f"book {self.root}: partition {k} does not exist ({len(self.partitions)} partitions)")
        con = connect(self.store, read_only=True)
        try:
            cols = ", ".join(c for c in columns if c in COLUMNS)
            return con.sql(f"SELECT {cols} FROM book_positions WHERE book = $1 AND part = $2",
                           params=[self.name, k]).to_arrow_table()
        finally:
            con.close()

    def block(self, k: int, instruments: Sequence[str] | None = None) -> tuple[np.ndarray, sparse.csr_matrix]:
        names = self.instruments if instruments is None else tuple(instruments)
        return table_block(self.read_partition(k), names, source=f"{self.root} partition {k}")

    def to_frame(self) -> pd.DataFrame:
        return pd.concat([self.read_partition(k).to_pandas() for k in range(self.n_partitions)],
                         ignore_index=True)


def open_store_book(store: str | Path | None, name: str) -> StoreBook:
    """The book ``name`` of the store (see :func:`load_book_to_store`)."""
    from margincal.config import resolve_store_path
    from margincal.data.store import connect

    path = str(resolve_store_path(store))
    con = connect(path, read_only=True)
    try:
        row = con.execute("SELECT instruments, partitions, meta FROM books WHERE book = ?", [name]).fetchone()
        names = [r[0] for r in con.execute("SELECT book FROM books ORDER BY book").fetchall()]
    finally:
        con.close()
    if row is None:
        raise DataError(f"store {path} has no book {name!r}; it has: {', '.join(names) or 'none'} "
                        "(load one with `margincal book load`)")
    return StoreBook(path, name, tuple(json.loads(row[0])), tuple(BookPartition(**p) for p in json.loads(row[1])),
                     json.loads(row[2]) if row[2] else {})


def load_book_to_store(book: PartitionedBook, con: Any, name: str, *, replace: bool = False) -> int:
    """Copy a partitioned book into the store as ``name`` (one transaction); returns the rows written.

    Each Parquet partition becomes ``part = k`` of ``book_positions``, inserted
    through Arrow one partition at a time (memory: one partition).
    """
    from margincal.data.store import scalar, transaction, utcnow

    if not name or not str(name).strip():
        raise ConfigError("a store book needs a name")
    exists = scalar(con, "SELECT count(*) FROM books WHERE book = ?", [name])
    if exists and not replace:
        raise DataError(f"the store already has a book {name!r}; choose another name or replace it")
    total = 0
    with transaction(con):
        if exists:
            con.execute("DELETE FROM book_positions WHERE book = ?", [name])
            con.execute("DELETE FROM books WHERE book = ?", [name])
        for k in range(book.n_partitions):
            t = book.read_partition(k)
            t = pa.table({"account": pc.cast(t.column("account"), pa.string()),
                          "instrument": pc.cast(t.column("instrument"), pa.string()),
                          "quantity": pc.cast(t.column("quantity"), pa.float64())})
            con.register("_book_part", t)
            con.execute("INSERT INTO book_positions SELECT ?, ?, account, instrument, quantity FROM _book_part",
                        [name, k])
            con.unregister("_book_part")
            total += t.num_rows
        parts = [{**asdict(p), "first_account": None if p.first_account is None else str(p.first_account),
                  "last_account": None if p.last_account is None else str(p.last_account)}
                 for p in book.partitions]
        con.execute("INSERT INTO books VALUES (?, ?, ?, ?, ?)",
                    [name, json.dumps(list(book.instruments)), json.dumps(parts),
                     json.dumps({**book.meta, "source": str(book.root)}, default=_json_default), utcnow()])
    return total


# ---------------------------------------------------------------- writing partitions


def write_partition_table(root: str | Path, k: int, table: pa.Table) -> BookPartition:
    """Write ``table`` as partition ``k`` of the folder ``root`` (created if needed)."""
    fs, r = _fs_and_path(root)
    fs.create_dir(r, recursive=True)
    name = f"part-{k:05d}.parquet"
    pq.write_table(table, _join(r, name), filesystem=fs, compression="zstd")
    acc = table.column("account")
    n_acc = int(pc.count_distinct(acc).as_py()) if table.num_rows else 0
    lo = pc.min(acc).as_py() if table.num_rows else None
    hi = pc.max(acc).as_py() if table.num_rows else None
    return BookPartition(k, name, int(table.num_rows), n_acc, lo, hi)


def write_book_meta(root: str | Path, instruments: Sequence[str], partitions: Sequence[BookPartition],
                    **extra: Any) -> PartitionedBook:
    """Write ``_book.json`` (after every partition is written) and return the opened book."""
    fs, r = _fs_and_path(root)
    parts = sorted(partitions, key=lambda p: p.index)
    meta = {"format": FORMAT, "instruments": list(instruments), "partitions": [asdict(p) for p in parts],
            "n_accounts": int(sum(p.n_accounts or 0 for p in parts)), "n_rows": int(sum(p.n_rows for p in parts)),
            "created_at": pd.Timestamp.now(tz="UTC").isoformat(), **extra}
    _write_text(fs, _join(r, META_FILE), json.dumps(meta, indent=1, default=_json_default))
    return open_book(root)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if hasattr(o, "isoformat"):
        return o.isoformat()
    raise TypeError(f"cannot serialise {type(o).__name__}")


def partition_frame(df: pd.DataFrame, out_dir: str | Path, *, accounts_per_partition: int = DEFAULT_PARTITION,
                    source: str = "book") -> PartitionedBook:
    """Write an in-memory positions frame (account, instrument, quantity) as a partitioned book.

    Rows are grouped by account (accounts keep the order of their first row),
    ``accounts_per_partition`` accounts per file.
    """
    cols = {c.strip().lower(): c for c in df.columns}
    missing = [c for c in COLUMNS if c not in cols]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)}; a book needs account, instrument, "
                        "quantity")
    if accounts_per_partition < 1:
        raise ConfigError(f"accounts_per_partition is {accounts_per_partition}; it must be >= 1")
    frame = pd.DataFrame({"account": df[cols["account"]].to_numpy(),
                          "instrument": df[cols["instrument"]].astype(str).to_numpy(),
                          "quantity": pd.to_numeric(df[cols["quantity"]], errors="coerce").to_numpy(float)})
    bad = np.flatnonzero(~np.isfinite(frame["quantity"].to_numpy()))
    if bad.size:
        raise DataError(f"{source} row {int(bad[0])}: quantity is not a finite number ({bad.size} such row(s))")
    codes, _ = pd.factorize(frame["account"], sort=False)
    order = np.argsort(codes, kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    codes = codes[order]
    names = sorted(set(frame["instrument"]))
    parts = []
    n_acc = int(codes.max()) + 1 if codes.size else 0
    bounds = np.searchsorted(codes, np.arange(0, n_acc + accounts_per_partition, accounts_per_partition))
    for k in range(max(1, math.ceil(n_acc / accounts_per_partition))):
        sl = frame.iloc[bounds[k]:bounds[k + 1]]
        t = pa.Table.from_pandas(sl, preserve_index=False)
        t = t.set_column(1, "instrument", pc.dictionary_encode(t.column("instrument")))
        parts.append(write_partition_table(out_dir, k, t))
    return write_book_meta(out_dir, names, parts, source=source)


# ---------------------------------------------------------------- synthetic book


@dataclass(frozen=True)
class BookGenerator:
    """Parameters of the synthetic book (see :func:`generate_book` for what each means)."""

    instruments: tuple[str, ...]
    underlying_share: tuple[float, ...]  # per instrument: share of its underlying
    spot: dict[str, float]
    seed: int = 20260331
    positions_lambda: float = 1.5
    max_positions: int = 40
    zipf_s: float = 2.0
    notional_median: float = 5_000.0
    notional_sigma: float = 1.2
    tail_prob: float = 0.03
    tail_scale: float = 50_000.0
    tail_alpha: float = 1.5
    notional_cap: float = 250e6
    long_prob: float = 0.55
    long_prob_options: float = 0.5
    hedged_share: float = 0.10
    hedge_ratio: tuple[float, float] = (0.9, 1.0)

    def __post_init__(self) -> None:
        if not self.instruments:
            raise ConfigError("a synthetic book needs at least one instrument")
        if len(set(self.instruments)) != len(self.instruments):
            raise ConfigError("instrument names must be unique")
        for f in ("positions_lambda", "zipf_s", "notional_sigma", "tail_alpha"):
            if not (getattr(self, f) >= 0 and math.isfinite(getattr(self, f))):
                raise ConfigError(f"{f} is {getattr(self, f)}; it must be finite and >= 0")
        for f in ("tail_prob", "long_prob", "long_prob_options", "hedged_share"):
            if not 0.0 <= getattr(self, f) <= 1.0:
                raise ConfigError(f"{f} is {getattr(self, f)}; it must be a probability in [0, 1]")
        if not (self.notional_median > 0 and self.tail_scale > 0 and self.notional_cap > 0):
            raise ConfigError("notional_median, tail_scale and notional_cap must be > 0")
        for n in self.instruments:
            u = underlying_of(n)
            if u not in self.spot or not self.spot[u] > 0:
                raise ConfigError(f"no spot price > 0 for {u} (instrument {n}); pass spot={{'{u}': ...}}")

    def probabilities(self) -> np.ndarray:
        """P(instrument) of one position draw: underlying share x Zipf(rank within the underlying)."""
        und = [underlying_of(n) for n in self.instruments]
        p = np.zeros(len(self.instruments))
        rank: dict[str, int] = {}
        for i, u in enumerate(und):
            rank[u] = rank.get(u, 0) + 1
            p[i] = rank[u] ** -self.zipf_s
        for u in set(und):
            m = np.array([x == u for x in und])
            p[m] /= p[m].sum()
        p *= np.asarray(self.underlying_share, dtype=float)
        return p / p.sum()


def _is_option(name: str) -> bool:
    return kind_of(name) == "option"


def _last_friday(year: int, month: int) -> pd.Timestamp:
    last = calendar.monthrange(year, month)[1]
    d = pd.Timestamp(year=year, month=month, day=last)
    return d - pd.Timedelta(days=(d.weekday() - 4) % 7)


def _future_name(u: str, d: pd.Timestamp) -> str:
    return format_name(Instrument("future", u, expiry=d))


def _option_name(u: str, d: pd.Timestamp, k: float, cp: str) -> str:
    return format_name(Instrument("option", u, expiry=d, strike=k, option_type=cp))


DEFAULT_UNDERLYINGS = ("BTC", "ETH", "SOL", "XRP", "DOGE")
OPTION_UNDERLYINGS = ("BTC", "ETH", "SOL")
MONEYNESS = (1.0, 0.9, 1.1, 0.8, 1.2)


def reference_market(underlyings: Sequence[str] = DEFAULT_UNDERLYINGS) -> dict[str, Any]:
    """Spot (last close), 30-day ADV share and as-of time from the bundled daily files.

    The as-of time is the close of the last common day (00:00 UTC of the next day).
    """
    from margincal import datasets

    spot, adv, vol, last = {}, {}, {}, []
    for u in underlyings:
        if u.upper() not in datasets.DAILY_SYMBOLS:
            raise DataError(f"no bundled daily file for {u} ({u.lower()}_daily.csv); pass spot= explicitly")
        d = datasets.load_daily(u)[["close", "volume_quote"]]
        d = d.assign(date=d.index.tz_localize(None)).reset_index(drop=True)
        spot[u] = float(d["close"].iloc[-1])
        adv[u] = float(d["volume_quote"].iloc[-30:].mean())
        r = np.diff(np.log(d["close"].to_numpy(float)[-31:]))
        vol[u] = float(np.sqrt(np.mean(r * r) * 365.0))
        last.append(d["date"].iloc[-1])
    asof = (min(last) + pd.Timedelta(days=1)).tz_localize("UTC")
    total = sum(adv.values())
    return {"asof": asof.isoformat(), "spot": spot, "adv_share": {u: adv[u] / total for u in underlyings},
            "vol": vol,
            "source": "bundled Binance daily files (margincal.datasets, *_daily.csv): last close, mean quote volume and "
                      "realised volatility (zero-mean, annualised with 365 days) of the last 30 days"}


def default_instruments(asof: Any, spot: Mapping[str, float],
                        underlyings: Sequence[str] = DEFAULT_UNDERLYINGS,
                        option_underlyings: Sequence[str] = OPTION_UNDERLYINGS) -> list[str]:
    """Deribit-style names, in popularity rank order within each underlying.

    Per underlying: the perpetual; for ``option_underlyings`` also the next two
    quarterly futures (last Friday of Mar/Jun/Sep/Dec, at least 7 days away) and
    European calls and puts on the next three monthly expiries (last Friday of the
    month) at moneyness 1.0, 0.9, 1.1, 0.8, 1.2 of spot (rounded to a strike grid of
    about 1% of spot). Options are ranked nearest expiry first, then nearest the money.
    """
    t0 = pd.Timestamp(asof)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    months: list[pd.Timestamp] = []
    y, m = t0.year, t0.month
    while len(months) < 12:
        d = _last_friday(y, m).tz_localize("UTC") + pd.Timedelta(hours=8)
        if d - t0 >= pd.Timedelta(days=7):
            months.append(d)
        m += 1
        if m > 12:
            y, m = y + 1, 1
    monthly = months[:3]
    quarterly = [d for d in months if d.month in (3, 6, 9, 12)][:2]
    out: list[str] = []
    for u in underlyings:
        out.append(perpetual_name(u))
        if u not in option_underlyings:
            continue
        out += [_future_name(u, d) for d in quarterly]
        s = float(spot[u])
        step = 10 ** math.floor(math.log10(s * 0.01))
        step = step * (5 if s * 0.01 / step >= 5 else (2 if s * 0.01 / step >= 2 else 1))
        for d in monthly:
            for mny in MONEYNESS:
                k = round(s * mny / step) * step
                k = float(round(k, 10))
                for cp in ("C", "P"):
                    out.append(_option_name(u, d, k, cp))
    return list(dict.fromkeys(out))  # first occurrence of each name, in order


def make_generator(instruments: Sequence[str] | None = None, *, seed: int = 20260331,
                   spot: Mapping[str, float] | None = None, asof: Any = None,
                   underlying_share: Mapping[str, float] | None = None, **params: Any) -> tuple[BookGenerator,
                                                                                              dict[str, Any]]:
    """Generator and its reference market (spot, as-of, ADV shares); defaults from the bundled data."""
    ref: dict[str, Any] | None = None
    if instruments is None:
        ref = reference_market()
        sp = {**ref["spot"], **{k.upper(): float(v) for k, v in (spot or {}).items()}}
        when = asof if asof is not None else ref["asof"]
        instruments = default_instruments(when, sp)
    else:
        instruments = [str(n) for n in instruments]
        unds = sorted({underlying_of(n) for n in instruments})
        if spot is None or underlying_share is None:
            try:
                ref = reference_market(unds)
            except DataError:
                if spot is None:
                    raise
        sp = {k.upper(): float(v) for k, v in (spot or ref["spot"]).items()}  # type: ignore[index]
        when = asof if asof is not None else (ref["asof"] if ref else None)
    unds = [underlying_of(n) for n in instruments]
    share_map = dict(underlying_share) if underlying_share is not None else (
        ref["adv_share"] if ref else {u: 1.0 for u in set(unds)})
    missing = sorted({u for u in unds if u not in share_map})
    if missing:
        raise ConfigError(f"underlying_share has no entry for {', '.join(missing)}")
    gen = BookGenerator(tuple(instruments), tuple(float(share_map[u]) for u in unds), sp, seed=int(seed), **params)
    market = {"asof": None if when is None else pd.Timestamp(when).isoformat(), "spot": sp,
              "underlying_share": {u: float(share_map[u]) for u in sorted(set(unds))},
              "vol": {u: v for u, v in (ref or {}).get("vol", {}).items() if u in set(unds)},
              "source": ref["source"] if ref else "given"}
    return gen, market


def generate_block(gen: BookGenerator, b: int, n_accounts: int) -> pd.DataFrame:
    """Rows of generation block ``b`` (accounts ``b * GEN_BLOCK ..``, at most ``GEN_BLOCK`` of them)."""
    a0 = b * GEN_BLOCK
    m = int(min(GEN_BLOCK, n_accounts - a0))
    if m <= 0:
        return pd.DataFrame({"account": np.zeros(0, np.int64), "instrument": np.zeros(0, np.int32),
                             "quantity": np.zeros(0)})
    # SeedSequence(seed, spawn_key=(b,)) is SeedSequence(seed).spawn(n)[b] for any n > b
    rng = np.random.default_rng(np.random.SeedSequence(gen.seed, spawn_key=(b,)))
    n_inst = len(gen.instruments)
    cdf = np.cumsum(gen.probabilities())
    cdf[-1] = 1.0
    kmax = int(min(gen.max_positions, n_inst))
    k = np.minimum(1 + rng.poisson(gen.positions_lambda, m), kmax)
    acc = np.repeat(np.arange(m, dtype=np.int64), k)
    slot = np.arange(acc.size) - np.repeat(np.cumsum(k) - k, k)  # position number inside the account
    inst = np.searchsorted(cdf, rng.random(acc.size), side="right").astype(np.int64)
    # distinct instruments per account: redraw repeated (account, instrument) pairs until none is left
    for _ in range(200):
        code = acc * n_inst + inst
        order = np.lexsort((slot, code))
        dup_sorted = np.r_[False, code[order][1:] == code[order][:-1]]
        dup = np.zeros(acc.size, bool)
        dup[order] = dup_sorted
        if not dup.any():
            break
        inst[dup] = np.searchsorted(cdf, rng.random(int(dup.sum())), side="right")
    else:  # pragma: no cover - needs k close to n_inst; drop what is still repeated
        acc, slot, inst = acc[~dup], slot[~dup], inst[~dup]
    n = acc.size
    notional = np.exp(math.log(gen.notional_median) + gen.notional_sigma * rng.standard_normal(n))
    tail = rng.random(n) < gen.tail_prob
    notional[tail] = gen.tail_scale * (1.0 + rng.pareto(gen.tail_alpha, int(tail.sum())))
    np.minimum(notional, gen.notional_cap, out=notional)
    opt = np.array([_is_option(x) for x in gen.instruments])
    u_side = rng.random(n)
    spot = np.array([gen.spot[underlying_of(x)] for x in gen.instruments])
    # hedged accounts: the second position offsets 90-100% of a delta-one first position with another
    # delta-one contract on the same underlying (perp vs future: a basis / calendar trade)
    hedged = rng.random(m) < gen.hedged_share
    und = np.array([underlying_of(x) for x in gen.instruments])
    d1 = ~opt
    # candidates per delta-one instrument: the other delta-one contracts of its underlying
    cand = [np.flatnonzero(d1 & (und == und[j]) & (np.arange(n_inst) != j)) if d1[j] else np.zeros(0, np.int64)
            for j in range(n_inst)]
    n_cand = np.array([c.size for c in cand])
    cand_mat = np.zeros((n_inst, max(1, int(n_cand.max()))), dtype=np.int64)
    for j, c in enumerate(cand):
        cand_mat[j, :c.size] = c
    first = np.flatnonzero(slot == 0)  # first[a] = row of account a's first position
    second = np.flatnonzero(slot == 1)
    r_hedge = rng.uniform(gen.hedge_ratio[0], gen.hedge_ratio[1], second.size)
    u_pick = rng.random(second.size)
    row1 = first[acc[second]]
    i1 = inst[row1]
    ok = hedged[acc[second]] & d1[i1] & (n_cand[i1] > 0)
    row2, row1, r_hedge, u_pick, i1 = second[ok], row1[ok], r_hedge[ok], u_pick[ok], i1[ok]
    j = cand_mat[i1, np.minimum((u_pick * n_cand[i1]).astype(np.int64), n_cand[i1] - 1)]
    # if the account already holds j on another row, that row takes the 2nd position's old instrument
    j_of = np.full(m, -1, dtype=np.int64)
    old_of = np.full(m, -1, dtype=np.int64)
    j_of[acc[row2]] = j
    old_of[acc[row2]] = inst[row2]
    clash = (j_of[acc] == inst) & (slot != 1)
    inst[clash] = old_of[acc[clash]]
    inst[row2] = j
    # sides and contract counts from the final instruments (a swapped row keeps its USD notional)
    side = np.where(u_side < np.where(opt[inst], gen.long_prob_options, gen.long_prob), 1.0, -1.0)
    qty = side * notional / spot[inst]
    qty[row2] = -qty[row1] * r_hedge  # same underlying, one coin per contract: same notional scale
    out = pd.DataFrame({"account": acc + a0, "instrument": inst.astype(np.int32), "quantity": qty})
    return out


def generation_table(gen: BookGenerator, first: int, last: int, n_accounts: int) -> pa.Table:
    """Arrow table of accounts ``first .. last - 1`` (instrument dictionary-encoded)."""
    frames = []
    for b in range(first // GEN_BLOCK, (max(last, first + 1) - 1) // GEN_BLOCK + 1):
        f = generate_block(gen, b, n_accounts)
        lo, hi = np.searchsorted(f["account"].to_numpy(), [first, last])
        frames.append(f.iloc[lo:hi])
    f = pd.concat(frames, ignore_index=True) if frames else generate_block(gen, 0, 0)
    dictionary = pa.array(list(gen.instruments), type=pa.string())
    inst = pa.DictionaryArray.from_arrays(pa.array(f["instrument"].to_numpy(np.int32)), dictionary)
    return pa.table({"account": pa.array(f["account"].to_numpy(np.int64)), "instrument": inst,
                     "quantity": pa.array(f["quantity"].to_numpy(np.float64))})


def write_generated_partition(k: int, gen: BookGenerator, n_accounts: int, accounts_per_partition: int,
                              out_dir: str) -> BookPartition:
    """Generate and write partition ``k`` (a task: workers call this, each writing its own file)."""
    first = k * accounts_per_partition
    last = min(first + accounts_per_partition, n_accounts)
    return write_partition_table(out_dir, k, generation_table(gen, first, last, n_accounts))


def generator_doc(gen: BookGenerator) -> dict[str, Any]:
    return {**asdict(gen), "instruments": len(gen.instruments),
            "distributions": {
                "positions_per_account": f"1 + Poisson({gen.positions_lambda}), at most {gen.max_positions}, "
                                         "distinct instruments",
                "instrument": f"underlying share (30-day quote volume) x Zipf(s={gen.zipf_s}) over the "
                              "instrument rank within the underlying",
                "notional_usd": f"lognormal(median {gen.notional_median:g}, sigma {gen.notional_sigma}); with "
                                f"probability {gen.tail_prob} instead {gen.tail_scale:g} x Pareto(alpha="
                                f"{gen.tail_alpha}); capped at {gen.notional_cap:g}",
                "side": f"long with probability {gen.long_prob} (futures, perps), {gen.long_prob_options} "
                        "(options)",
                "hedged": f"{gen.hedged_share:.0%} of accounts: 2nd position = -U{gen.hedge_ratio} x 1st, on "
                          "another delta-one contract of the same underlying (when the 1st is delta-one)",
                "contracts": "linear, 1 coin of the underlying per contract; quantity = side x notional / spot",
            }}


def generate_book(
    n_accounts: int,
    instruments: Sequence[str] | None = None,
    *,
    seed: int = 20260331,
    out_dir: str | Path,
    accounts_per_partition: int = DEFAULT_PARTITION,
    spot: Mapping[str, float] | None = None,
    asof: Any = None,
    underlying_share: Mapping[str, float] | None = None,
    progress: Callable[[int], None] | None = None,
    map_partitions: Callable[..., Any] | None = None,
    **params: Any,
) -> PartitionedBook:
    """Write a synthetic book of ``n_accounts`` accounts as partitioned Parquet and return it opened.

    Distributions (all assumed unless stated; docs/scaling.md discusses them):

    * **Instruments** (default :func:`default_instruments`): perpetuals on BTC, ETH,
      SOL, XRP, DOGE, two quarterly futures and 30 options each on BTC, ETH, SOL,
      sized at the bundled data's last closes (2026-03-30), as of the close.
    * **Positions per account**: ``1 + Poisson(positions_lambda=1.5)`` (mean 2.5),
      on distinct instruments, at most ``max_positions``.
    * **Instrument popularity**: ``P(i) = share(underlying of i) x Zipf``: the
      underlying's share of the last 30 days' quote volume in the bundled Binance
      files (*calibrated*: BTC about half), times ``rank^-zipf_s`` (``zipf_s=2``) over
      the instrument's rank within its underlying (perpetual first, then futures,
      then options nearest expiry and nearest the money first).
    * **Notional** (USD, per position): lognormal, median 5,000, sigma 1.2; with
      probability 3% instead ``50,000 x Pareto(alpha=1.5)`` (classical Pareto with
      minimum 50,000, the tail exponent ~1.5 of trade sizes in Gabaix et al.,
      Nature 423, 2003), capped at 250 million. Same numbers as the stress layer's
      ``synthetic_book``.
    * **Side**: long with probability 0.55 for perpetuals and futures (a retail long
      bias), 0.5 for options.
    * **Hedged accounts**: 10% of accounts; when such an account has two or more
      positions and its first is a perpetual or future, its second becomes
      ``-U(0.9, 1.0)`` times the first on another delta-one contract of the same
      underlying, when there is one (a basis / calendar trade whose risk-matrix
      margin is small; XRP and DOGE have only a perpetual, so no hedge).
    * **Quantity** = side x notional / spot in contracts of one coin (linear).

    ``map_partitions(fn, ks, *args)`` (e.g. a Dask engine's) runs the per-partition
    writes ``fn(k, *args)``; default: one after the other here. ``progress(n)`` is called with the
    accounts of each written partition.
    """
    if int(n_accounts) != n_accounts or n_accounts < 1:
        raise ConfigError(f"n_accounts is {n_accounts}; it must be a whole number >= 1")
    if accounts_per_partition < 1:
        raise ConfigError(f"accounts_per_partition is {accounts_per_partition}; it must be >= 1")
    n_accounts = int(n_accounts)
    gen, market = make_generator(instruments, seed=seed, spot=spot, asof=asof,
                                 underlying_share=underlying_share, **params)
    fs, root = _fs_and_path(out_dir)
    from pyarrow import fs as pafs

    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        raise DataError(f"--out {out_dir} is a file; give a folder")
    if info.type == pafs.FileType.Directory:
        sel = pafs.FileSelector(root, recursive=False)
        if any(f.base_name.endswith(".parquet") or f.base_name == META_FILE for f in fs.get_file_info(sel)):
            raise DataError(f"{out_dir} already holds a book; remove it or choose another folder")
    fs.create_dir(root, recursive=True)
    root_s = str(out_dir) if "://" in str(out_dir) else root
    n_parts = math.ceil(n_accounts / accounts_per_partition)
    ks = list(range(n_parts))
    parts: list[BookPartition] = []
    if map_partitions is None:
        for k in ks:
            p = write_generated_partition(k, gen, n_accounts, accounts_per_partition, root_s)
            parts.append(p)
            if progress is not None:
                progress(int(p.n_accounts or 0))
    else:
        parts = list(map_partitions(write_generated_partition, ks, gen, n_accounts, accounts_per_partition,
                                    root_s))
    return write_book_meta(root_s, gen.instruments, parts, n_accounts_requested=n_accounts,
                           generator=generator_doc(gen), reference_market=market,
                           accounts_per_partition=int(accounts_per_partition))


__all__ = [
    "COLUMNS",
    "DEFAULT_PARTITION",
    "GEN_BLOCK",
    "META_FILE",
    "BookGenerator",
    "BookPartition",
    "PartitionedBook",
    "StoreBook",
    "default_instruments",
    "generate_block",
    "generate_book",
    "load_book_to_store",
    "make_generator",
    "open_book",
    "open_store_book",
    "partition_frame",
    "reference_market",
    "table_block",
    "underlying_of",
    "write_book_meta",
    "write_generated_partition",
    "write_partition_table",
]
