"""The DuckDB store: one file, a versioned schema, explicit connections.

Conventions
-----------
* Timestamps are stored as ``TIMESTAMP`` holding **UTC** wall time (no zone);
  readers get naive values that mean UTC. :func:`to_utc` converts.
* Parameter sets, proposals, decisions and the audit log are append-only: this
  module offers no update or delete for them, and the audit log is hash-chained
  (see :mod:`margincal.data.audit`).
* Every multi-row write goes through :func:`transaction`: it commits all or
  nothing.
* DuckDB lets one process write, or several read. Writers here keep their
  connection short (open, one transaction, close); readers open with
  ``read_only=True`` and retry while a writer holds the lock, so a reader can
  open the file while a writer is working.

Schema migrations are an ordered list of ``(id, sql)``; new tables are added by
appending to :data:`MIGRATIONS` (never by editing an applied one).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from margincal.config import lock_wait, resolve_store_path
from margincal.errors import StoreError

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_core",
        """
        CREATE TABLE IF NOT EXISTS instruments (
            instrument VARCHAR PRIMARY KEY,
            kind VARCHAR NOT NULL CHECK (kind IN ('spot','perpetual','future','option')),
            underlying VARCHAR NOT NULL,
            quote VARCHAR NOT NULL DEFAULT 'USDT',
            contract_size DOUBLE NOT NULL DEFAULT 1.0 CHECK (contract_size > 0),
            tick_size DOUBLE NOT NULL DEFAULT 0.01 CHECK (tick_size > 0),
            listing_date DATE,
            exchange VARCHAR,
            meta JSON
        );
        CREATE TABLE IF NOT EXISTS bars (
            instrument VARCHAR NOT NULL,
            timeframe VARCHAR NOT NULL,
            ts TIMESTAMP NOT NULL,
            open DOUBLE NOT NULL,
            high DOUBLE NOT NULL,
            low DOUBLE NOT NULL,
            close DOUBLE NOT NULL,
            volume DOUBLE NOT NULL,
            PRIMARY KEY (instrument, timeframe, ts)
        );
        CREATE TABLE IF NOT EXISTS funding (
            instrument VARCHAR NOT NULL,
            ts TIMESTAMP NOT NULL,
            rate DOUBLE NOT NULL,
            PRIMARY KEY (instrument, ts)
        );
        CREATE TABLE IF NOT EXISTS open_interest (
            instrument VARCHAR NOT NULL,
            ts TIMESTAMP NOT NULL,
            oi_notional DOUBLE NOT NULL,
            oi_contracts DOUBLE,
            PRIMARY KEY (instrument, ts)
        );
        CREATE TABLE IF NOT EXISTS option_quotes (
            instrument VARCHAR NOT NULL,
            snapshot_ts TIMESTAMP NOT NULL,
            underlying VARCHAR NOT NULL,
            expiry TIMESTAMP NOT NULL,
            strike DOUBLE NOT NULL,
            option_type VARCHAR NOT NULL CHECK (option_type IN ('C','P')),
            bid_iv DOUBLE,
            ask_iv DOUBLE,
            mark_iv DOUBLE,
            mark_price DOUBLE,
            bid_price DOUBLE,
            ask_price DOUBLE,
            underlying_price DOUBLE,
            index_price DOUBLE,
            PRIMARY KEY (instrument, snapshot_ts)
        );
        CREATE TABLE IF NOT EXISTS depth_snapshots (
            instrument VARCHAR NOT NULL,
            ts TIMESTAMP NOT NULL,
            side VARCHAR NOT NULL CHECK (side IN ('bid','ask')),
            price DOUBLE NOT NULL,
            size DOUBLE NOT NULL,
            PRIMARY KEY (instrument, ts, side, price)
        );
        CREATE SEQUENCE IF NOT EXISTS parameter_set_version START 1;
        CREATE TABLE IF NOT EXISTS parameter_sets (
            version INTEGER PRIMARY KEY,
            created_at TIMESTAMP NOT NULL,
            created_by VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            run_id VARCHAR NOT NULL,
            parent_version INTEGER,
            note VARCHAR,
            provenance JSON
        );
        CREATE TABLE IF NOT EXISTS parameter_rows (
            version INTEGER NOT NULL,
            instrument VARCHAR NOT NULL,
            im_rate DOUBLE NOT NULL,
            mm_rate DOUBLE NOT NULL,
            details JSON,
            PRIMARY KEY (version, instrument)
        );
        CREATE TABLE IF NOT EXISTS proposals (
            proposal_id VARCHAR PRIMARY KEY,
            created_at TIMESTAMP NOT NULL,
            author VARCHAR NOT NULL,
            base_version INTEGER,
            reason VARCHAR NOT NULL,
            changes JSON NOT NULL,
            evidence JSON
        );
        CREATE TABLE IF NOT EXISTS proposal_decisions (
            proposal_id VARCHAR PRIMARY KEY,
            decided_at TIMESTAMP NOT NULL,
            decided_by VARCHAR NOT NULL,
            decision VARCHAR NOT NULL CHECK (decision IN ('approved','rejected')),
            comment VARCHAR,
            published_version INTEGER
        );
        CREATE TABLE IF NOT EXISTS audit_log (
            seq BIGINT PRIMARY KEY,
            ts TIMESTAMP NOT NULL,
            actor VARCHAR NOT NULL,
            action VARCHAR NOT NULL,
            subject VARCHAR,
            details JSON,
            prev_hash VARCHAR NOT NULL,
            hash VARCHAR NOT NULL
        );
        CREATE TABLE IF NOT EXISTS results (
            run_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            params JSON,
            payload JSON,
            PRIMARY KEY (run_id, kind)
        );
        CREATE TABLE IF NOT EXISTS api_keys (
            key_id VARCHAR PRIMARY KEY,
            key_hash VARCHAR NOT NULL,
            role VARCHAR NOT NULL,
            name VARCHAR,
            created_at TIMESTAMP NOT NULL,
            revoked_at TIMESTAMP
        );
        CREATE TABLE IF NOT EXISTS monitor_state (
            name VARCHAR PRIMARY KEY,
            last_event_ts TIMESTAMP,
            state JSON,
            updated_at TIMESTAMP NOT NULL
        );
        """,
    ),
    (
        "0100_book_positions",
        # large position books (margincal.data.book.StoreBook): one row per position, ``part`` = the
        # partition (block of accounts) a task reads; ``books`` holds the instrument order and metadata
        """
        CREATE TABLE IF NOT EXISTS books (
            book VARCHAR PRIMARY KEY,
            instruments JSON NOT NULL,
            partitions JSON NOT NULL,
            meta JSON,
            created_at TIMESTAMP NOT NULL
        );
        CREATE TABLE IF NOT EXISTS book_positions (
            book VARCHAR NOT NULL,
            part INTEGER NOT NULL,
            account VARCHAR NOT NULL,
            instrument VARCHAR NOT NULL,
            quantity DOUBLE NOT NULL
        );
        """,
    ),
    (
        "0200_signals",
        """
        CREATE TABLE IF NOT EXISTS signals (
            monitor VARCHAR NOT NULL,
            ts TIMESTAMP NOT NULL,
            instrument VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            severity VARCHAR NOT NULL,
            reason VARCHAR NOT NULL,
            threshold DOUBLE,
            "values" JSON,
            recorded_at TIMESTAMP NOT NULL,
            PRIMARY KEY (monitor, ts, instrument, kind, severity)
        );
        """,
    ),
    (
        "0300_key_identity",
        # who minted each key, and its holder's name normalised (casefold, whitespace collapsed) so that
        # names are unique identities: "Alice" and "alice " are the same person
        """
        ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS created_by VARCHAR;
        ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS name_norm VARCHAR;
        UPDATE api_keys SET name_norm = lower(regexp_replace(trim(name), '\\s+', ' ', 'g'));
        """,
    ),
    (
        "0400_signal_seq",
        # an insertion sequence for signals: the event stream (/api/signals/stream) cursors on it (not on market
        # time, so signals of a replay of an earlier period are still delivered); every insert takes the next
        # value; existing rows are numbered in storage (insertion) order
        """
        CREATE SEQUENCE IF NOT EXISTS signal_seq START 1;
        ALTER TABLE signals ADD COLUMN IF NOT EXISTS seq BIGINT;
        UPDATE signals SET seq = nextval('signal_seq') WHERE seq IS NULL;
        ALTER TABLE signals ALTER COLUMN seq SET DEFAULT nextval('signal_seq');
        """,
    ),
    (
        "0500_monitor_outbox",
        # the lines of `monitor --json`, written in the transaction that commits the signals and decisions
        # they report (a transactional outbox): a reader that lost the process can ask for every line after the
        # last cursor it received (`monitor ... --json --after N`) and gets each committed line exactly once
        """
        CREATE TABLE IF NOT EXISTS monitor_outbox (
            monitor VARCHAR NOT NULL,
            seq BIGINT NOT NULL,
            line VARCHAR NOT NULL,
            committed_at TIMESTAMP NOT NULL,
            PRIMARY KEY (monitor, seq)
        );
        """,
    ),
]

SCHEMA_VERSION = len(MIGRATIONS)

_LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked", "Resource temporarily unavailable")


def _is_lock_error(exc: BaseException) -> bool:
    return any(m in str(exc) for m in _LOCK_MARKERS)


def lock_holder(message: str) -> str:
    """Who holds the store, from DuckDB's lock error: ``PID 123 (margincal serve --port 8000)``.

    DuckDB names the holder's PID and executable; the command line is read from ``/proc/PID/cmdline`` where
    that exists (Linux), else the executable DuckDB named is kept.
    """
    m = re.search(r"\(PID (\d+)\)", message)
    if m is None:
        return "another process"
    pid = int(m.group(1))
    cmd = ""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        cmd = " ".join(a.decode(errors="replace") for a in raw.split(b"\0") if a)
    except OSError:
        m2 = re.search(r"held in (.+?) \(PID", message)
        cmd = m2.group(1) if m2 else ""
    cmd = " ".join(cmd.split())
    if len(cmd) > 160:
        cmd = cmd[:157] + "..."
    return f"PID {pid} ({cmd})" if cmd else f"PID {pid}"


def connect(
    store: str | Path | None = None,
    *,
    read_only: bool = False,
    timeout: float | None = None,
    migrate: bool = True,
) -> duckdb.DuckDBPyConnection:
    """Open the store and return a DuckDB connection (caller closes it).

    A read-only open of a file that does not exist raises :class:`StoreError`
    with the path. While another process holds the write lock, the open is
    retried for up to ``timeout`` seconds (default: :func:`set_lock_wait`, 30 s
    unless a shell changed it); the error then names the process holding it.
    """
    notify = None
    if timeout is None:
        timeout, notify = lock_wait()
    path = resolve_store_path(store)
    if read_only and str(path) != ":memory:" and not path.exists():
        raise StoreError(f"store {path} does not exist; run `margincal run` or `margincal ingest` first")
    if str(path) != ":memory:" and path.exists():
        _check_is_store(path)
    if str(path) != ":memory:" and path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    deadline = t0 + timeout
    delay = 0.01
    told = -1
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if not _is_lock_error(exc):
                raise StoreError(f"cannot open store {path}: {exc}") from None
            now = time.monotonic()
            if now > deadline:
                waited = f"waited {now - t0:.0f} s; " if timeout >= 1 else ""
                if notify is not None and told >= 0:
                    notify(None, 0.0)
                raise StoreError(f"store {path} is locked by {lock_holder(str(exc))}: {waited}stop that process, "
                                 "or retry with --wait SECONDS") from None
            if notify is not None and int(now - t0) != told:
                told = int(now - t0)
                notify(lock_holder(str(exc)), deadline - now)
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
    if notify is not None and told >= 0:
        notify(None, 0.0)
    if _has_icu(con):
        con.execute("SET TimeZone = 'UTC'")
    if migrate and not read_only:
        apply_migrations(con)
    elif read_only:
        check_schema(con, path)
    return con


def _check_is_store(path: Path) -> None:
    """Refuse to open (and so to overwrite) a file that is not a DuckDB database: a CSV passed as --store by
    mistake, an empty file. DuckDB files carry the magic bytes ``DUCK`` at offset 8."""
    if path.is_dir():
        raise StoreError(f"store {path} is a folder, not a DuckDB file")
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
    except OSError as exc:
        raise StoreError(f"cannot read store {path}: {exc.strerror or exc}") from None
    if len(head) < 12 or head[8:12] != b"DUCK":
        raise StoreError(f"{path} is not a margincal store (not a DuckDB database file); check --store")


def _has_icu(con: duckdb.DuckDBPyConnection) -> bool:
    try:
        con.execute("SELECT current_setting('TimeZone')")
        return True
    except duckdb.Error:
        return False


@contextlib.contextmanager
def open_store(
    store: str | Path | None = None, *, read_only: bool = False, timeout: float | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Context manager around :func:`connect` that always closes the connection."""
    con = connect(store, read_only=read_only, timeout=timeout)
    try:
        yield con
    finally:
        con.close()


def apply_migrations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply every migration not yet applied, each in its own transaction."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (id VARCHAR PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"
    )
    done = {r[0] for r in con.execute("SELECT id FROM schema_migrations").fetchall()}
    known = {m[0] for m in MIGRATIONS}
    unknown = done - known
    if unknown:
        raise StoreError(
            f"store schema has migrations this version does not know ({', '.join(sorted(unknown))}); "
            "upgrade margincal"
        )
    applied = []
    for mig_id, sql in MIGRATIONS:
        if mig_id in done:
            continue
        with transaction(con):
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?)", [mig_id, utcnow()])
        applied.append(mig_id)
    return applied


def check_schema(con: duckdb.DuckDBPyConnection, path: Path | str = "store") -> None:
    """Raise :class:`StoreError` when a read-only store lacks migrations this code needs."""
    try:
        done = {r[0] for r in con.execute("SELECT id FROM schema_migrations").fetchall()}
    except duckdb.CatalogException:
        raise StoreError(f"store {path} has no margincal schema; open it once for writing") from None
    missing = [m for m, _ in MIGRATIONS if m not in done]
    if missing:
        raise StoreError(
            f"store {path} lacks schema migrations {', '.join(missing)}; open it once for writing to upgrade"
        )


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    """The first column of the one row of an aggregate query (``count(*)``, ``max(...)``).

    Such a query always returns one row; none is a :class:`StoreError`, not an ``IndexError`` on ``None``.
    """
    row = con.execute(sql, params).fetchone() if params is not None else con.execute(sql).fetchone()
    if row is None:
        raise StoreError(f"query returned no row: {sql.split(chr(10))[0][:120]}")
    return row[0]


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    return int(scalar(con, "SELECT count(*) FROM schema_migrations"))


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Run the block in one transaction: commit on success, roll back on any error."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    else:
        con.execute("COMMIT")


#: below this many rows a multi-row VALUES statement is cheaper than scanning a registered frame
FRAME_MIN_ROWS = 16


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, columns: tuple[str, ...] | list[str],
                rows: list[list[Any]], *, or_ignore: bool = False) -> None:
    """Insert ``rows`` (one list per row, values in ``columns`` order) into ``table`` with ONE statement.

    Few rows: a multi-row ``VALUES`` with bound parameters. Many rows: the rows as an all-object pandas
    frame registered on the connection and inserted with ``INSERT ... SELECT`` (DuckDB binds thousands of
    ``?`` parameters slowly: measured 25 ms for 300 signal rows against 9 ms through a frame). Same rows
    either way: each value is cast to the column's type by DuckDB. Does not commit.
    """
    if not rows:
        return
    cols = ", ".join(f'"{c}"' for c in columns)
    verb = "INSERT OR IGNORE INTO" if or_ignore else "INSERT INTO"
    if len(rows) < FRAME_MIN_ROWS:
        ph = "(" + ", ".join(["?"] * len(columns)) + ")"
        con.execute(f"{verb} {table} ({cols}) VALUES " + ", ".join([ph] * len(rows)), [v for r in rows for v in r])
        return
    insert_rows_frame = pd.DataFrame(rows, columns=list(columns), dtype=object)  # noqa: F841 - read by DuckDB
    # DuckDB's replacement scan reads the local frame by its name (``register`` refuses while a previous
    # statement's result is open on the connection)
    con.execute(f"{verb} {table} ({cols}) SELECT {cols} FROM insert_rows_frame")


def utcnow() -> pd.Timestamp:
    """Current UTC time as a naive timestamp (the store's convention), microsecond precision."""
    return pd.Timestamp.now(tz="UTC").tz_localize(None).floor("us")


def to_utc(ts: Any) -> pd.Timestamp:
    """Parse anything timestamp-like to a tz-aware UTC :class:`pandas.Timestamp`."""
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def to_store_ts(ts: Any) -> pd.Timestamp:
    """Convert to the store's naive-UTC convention."""
    return to_utc(ts).tz_localize(None)


def dumps(obj: Any) -> str:
    """JSON for the store: sorted keys, numpy/pandas scalars converted."""
    return json.dumps(obj, sort_keys=True, default=_json_default)


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (pd.Timestamp,)):
        return o.isoformat()
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialise {type(o).__name__} to JSON")


# ---------------------------------------------------------------- readers


def list_instruments(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute("SELECT * FROM instruments ORDER BY instrument").df()


def upsert_instrument(
    con: duckdb.DuckDBPyConnection,
    instrument: str,
    *,
    kind: str,
    underlying: str,
    quote: str = "USDT",
    contract_size: float = 1.0,
    tick_size: float = 0.01,
    listing_date: Any = None,
    exchange: str | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Insert or replace an instrument's static data (not append-only: reference data)."""
    con.execute(
        """
        INSERT OR REPLACE INTO instruments
        (instrument, kind, underlying, quote, contract_size, tick_size, listing_date, exchange, meta)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [
            instrument,
            kind,
            underlying,
            quote,
            contract_size,
            tick_size,
            None if listing_date is None else pd.Timestamp(listing_date).date(),
            exchange,
            dumps(meta or {}),
        ],
    )


def load_bars(
    con: duckdb.DuckDBPyConnection,
    instrument: str,
    timeframe: str = "1d",
    start: Any = None,
    end: Any = None,
) -> pd.DataFrame:
    """OHLCV bars of one instrument, indexed by UTC timestamp (tz-aware), ascending."""
    sql = "SELECT ts, open, high, low, close, volume FROM bars WHERE instrument = ? AND timeframe = ?"
    params: list[Any] = [instrument, timeframe]
    if start is not None:
        sql += " AND ts >= ?"
        params.append(to_store_ts(start))
    if end is not None:
        sql += " AND ts <= ?"
        params.append(to_store_ts(end))
    df = con.execute(sql + " ORDER BY ts", params).df()
    df["ts"] = pd.to_datetime(df["ts"]).dt.tz_localize("UTC")
    return df.set_index("ts")


def load_series(
    con: duckdb.DuckDBPyConnection, table: str, instrument: str, column: str
) -> pd.Series:
    """A single column of ``funding`` or ``open_interest`` as a UTC-indexed series."""
    if table not in {"funding", "open_interest"}:
        raise StoreError(f"load_series supports funding and open_interest, not {table!r}")
    df = con.execute(f"SELECT ts, {column} FROM {table} WHERE instrument = ? ORDER BY ts", [instrument]).df()
    s = pd.Series(df[column].to_numpy(), index=pd.to_datetime(df["ts"]).dt.tz_localize("UTC"), name=column)
    return s


def bar_instruments(con: duckdb.DuckDBPyConnection, timeframe: str | None = None) -> list[str]:
    if timeframe is None:
        rows = con.execute("SELECT DISTINCT instrument FROM bars ORDER BY 1").fetchall()
    else:
        rows = con.execute(
            "SELECT DISTINCT instrument FROM bars WHERE timeframe = ? ORDER BY 1", [timeframe]
        ).fetchall()
    return [r[0] for r in rows]


def save_result(
    con: duckdb.DuckDBPyConnection, run_id: str, kind: str, params: dict[str, Any], payload: Any
) -> None:
    """Store a backtest / stress / cascade result with its parameters (one transaction)."""
    with transaction(con):
        con.execute(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)",
            [run_id, kind, utcnow(), dumps(params), dumps(payload)],
        )


def latest_result(con: duckdb.DuckDBPyConnection, kind: str) -> dict[str, Any] | None:
    row = con.execute(
        "SELECT run_id, created_at, params, payload FROM results WHERE kind = ? ORDER BY created_at DESC LIMIT 1",
        [kind],
    ).fetchone()
    if row is None:
        return None
    return {"run_id": row[0], "created_at": row[1], "params": json.loads(row[2]), "payload": json.loads(row[3])}


# ---------------------------------------------------------------- sandboxes

_SANDBOX_NAME = __import__("re").compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def sandbox_path(store: str | Path | None, name: str) -> Path:
    """Where the sandbox ``name`` of ``store`` lives: ``<store stem>.sandbox-<name>.duckdb`` beside it."""
    if not _SANDBOX_NAME.match(name or ""):
        raise StoreError(f"sandbox name {str(name)[:70]!r} is invalid: 1-64 letters, digits, '_', '.', '-', "
                         "starting with a letter or digit")
    live = resolve_store_path(store)
    return live.with_name(f"{live.stem}.sandbox-{name}.duckdb")


def open_sandbox(store: str | Path | None, name: str, *, fresh: bool = False) -> Path:
    """Create (or reuse) the sandbox ``name``: a separate store file holding a copy of the live store.

    Replays and experiments write there, never into the live parameter set. The copy is taken through
    DuckDB (live store attached read-only, ``COPY FROM DATABASE``), into a temporary file renamed into
    place, so a crash never leaves a half-copied sandbox. An existing sandbox is reused (a replay resumes
    there) unless ``fresh``. Returns the sandbox path.
    """
    live = resolve_store_path(store)
    if not live.exists():
        raise StoreError(f"store {live} does not exist; run `margincal run` or `margincal ingest` first")
    path = sandbox_path(live, name)
    if path.exists() and not fresh:
        return path
    tmp = path.with_name(path.name + ".tmp")
    for p in (tmp, Path(str(tmp) + ".wal")):
        p.unlink(missing_ok=True)
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{_sql_path(live)}' AS live_src (READ_ONLY)")
        con.execute(f"ATTACH '{_sql_path(tmp)}' AS sandbox_dst")
        con.execute("COPY FROM DATABASE live_src TO sandbox_dst")
        con.execute("DETACH sandbox_dst")
    except duckdb.Error as exc:
        raise StoreError(f"cannot copy {live} into sandbox {path.name}: {exc}") from None
    finally:
        con.close()
    Path(str(path) + ".wal").unlink(missing_ok=True)
    tmp.replace(path)
    return path


def _sql_path(p: Path) -> str:
    return str(p).replace("'", "''")


# ---------------------------------------------------------------- removing rows ingested by mistake

DELETABLE: dict[str, tuple[str, str]] = {
    # kind -> (table, time column); parameter sets, proposals and the audit log are never deletable
    "bars": ("bars", "ts"),
    "funding": ("funding", "ts"),
    "open_interest": ("open_interest", "ts"),
    "options": ("option_quotes", "snapshot_ts"),
    "depth": ("depth_snapshots", "ts"),
}


def delete_rows(con: duckdb.DuckDBPyConnection, kind: str, instrument: str, *, timeframe: str | None = None,
                start: Any = None, end: Any = None, dry_run: bool = False) -> int:
    """Delete market-data rows of one instrument (optionally one timeframe and a time window, both ends
    included); returns how many. The caller owns the transaction and records the audit entry."""
    if kind not in DELETABLE:
        raise StoreError(f"kind {kind!r} is not one of {', '.join(DELETABLE)} (parameter sets, proposals and the "
                         "audit log are append-only)")
    table, tcol = DELETABLE[kind]
    icol = "underlying" if kind == "options" else "instrument"
    where = [f"{icol} = ?"]
    args: list[Any] = [instrument]
    if timeframe is not None:
        if kind != "bars":
            raise StoreError("--timeframe applies to bars only")
        where.append("timeframe = ?")
        args.append(timeframe)
    if start is not None:
        where.append(f"{tcol} >= ?")
        args.append(to_store_ts(start))
    if end is not None:
        where.append(f"{tcol} <= ?")
        args.append(to_store_ts(end))
    sql = " AND ".join(where)
    n = int(scalar(con, f"SELECT count(*) FROM {table} WHERE {sql}", args))
    if n and not dry_run:
        con.execute(f"DELETE FROM {table} WHERE {sql}", args)
    return n
