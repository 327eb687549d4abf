"""The service's store connection.

DuckDB lets ONE process open a file for writing (and no other process may then
open it, even read-only). Opening a file costs 25-40 ms here, too slow to do
per request, so the service holds one read-write connection for the process
and lends each request its own *cursor* (``con.cursor()``: a separate
connection to the same database instance, safe to use from one thread while
other threads use theirs). Making a cursor costs ~0.7 ms, so idle cursors are
kept in a pool and lent again; a cursor is lent to one request at a time. Reads and writes of concurrent requests are then
isolated by DuckDB's MVCC; writes (approve / reject, key admin) additionally
take a process-wide lock so two decisions never race on the same proposal and
the audit chain is appended in order.

``release_after`` (seconds, off by default): when set, the shared connection
is closed once no request has used it for that long, so another process
(``margincal calibrate``, a monitor) can write the file between bursts of
requests; the next request reopens it, waiting up to ``busy_timeout`` for the
other writer and answering 503 if it does not finish in time.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

from margincal.data.store import connect


class StoreManager:
    """One shared read-write DuckDB connection; a cursor per request."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0, release_after: float | None = None):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.release_after = release_after
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()  # guards _con and _inflight
        self.write_lock = threading.RLock()  # serialises writes of this process
        self._inflight = 0
        self._last_used = time.monotonic()
        self._idle: list[duckdb.DuckDBPyConnection] = []  # pooled cursors of the current connection
        self.generation = 0  # bumps each time the connection is (re)opened: cache keys use it

    def is_open(self) -> bool:
        return self._con is not None

    def open(self) -> None:
        with self._lock:
            self._ensure_open()

    def _ensure_open(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = connect(self.path, timeout=self.busy_timeout)
            self.generation += 1
        return self._con

    @contextlib.contextmanager
    def cursor(self, touch: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the shared connection, lent to one request at a time (pooled afterwards).

        ``touch=False`` (the event stream's polls) does not count as activity for ``release_after``,
        so an open dashboard does not keep the store from other writers."""
        with self._lock:
            con = self._ensure_open()
            self._inflight += 1
            gen = self.generation
            cur = self._idle.pop() if self._idle else None
        try:
            if cur is None:
                cur = con.cursor()
                with contextlib.suppress(duckdb.Error):  # a cursor does not inherit the session time zone
                    cur.execute("SET TimeZone = 'UTC'")
        except BaseException:
            with self._lock:
                self._inflight -= 1
            raise
        ok = False
        try:
            yield cur
            ok = True
        finally:
            with self._lock:
                self._inflight -= 1
                if touch:
                    self._last_used = time.monotonic()
                keep = ok and gen == self.generation and self._con is not None and len(self._idle) < 64
                if keep:
                    self._idle.append(cur)
            if not keep:
                with contextlib.suppress(duckdb.Error):
                    cur.close()

    @contextlib.contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor for a write, holding the process-wide write lock."""
        with self.write_lock, self.cursor() as cur:
            yield cur

    def maybe_release(self) -> bool:
        """Close the shared connection when idle for ``release_after`` seconds; True when closed."""
        if self.release_after is None:
            return False
        with self._lock:
            if (self._con is not None and self._inflight == 0
                    and time.monotonic() - self._last_used >= self.release_after):
                self._close_locked()
                return True
        return False

    def _close_locked(self) -> None:
        for cur in self._idle:
            with contextlib.suppress(duckdb.Error):
                cur.close()
        self._idle.clear()
        if self._con is not None:
            self._con.close()
            self._con = None

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def check(self) -> None:
        """Raise :class:`StoreError` when the store cannot be opened."""
        with self.cursor() as cur:
            cur.execute("SELECT 1").fetchone()
