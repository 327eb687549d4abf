"""The service's store manager: pooled cursors, the write lock and releasing the file when idle."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb
import pytest

from margincal.data.store import connect
from margincal.service.db import StoreManager


def test_cursors_are_pooled_and_lent_to_one_user_at_a_time(tmp_path: Path) -> None:
    sm = StoreManager(tmp_path / "s.duckdb")
    with sm.cursor() as a, sm.cursor() as b:
        assert a is not b  # two users at once get two cursors
    with sm.cursor() as c:
        assert c is a or c is b  # a returned cursor is lent again
        assert c.execute("SELECT current_setting('TimeZone')").fetchone()[0] == "UTC"
    sm.close()


def test_a_cursor_that_saw_an_error_is_not_reused(tmp_path: Path) -> None:
    sm = StoreManager(tmp_path / "s.duckdb")
    with pytest.raises(duckdb.Error), sm.cursor() as bad:
        bad.execute("SELECT * FROM no_such_table")
    with sm.cursor() as c:
        assert c is not bad
    sm.close()


def test_writes_are_serialised(tmp_path: Path) -> None:
    sm = StoreManager(tmp_path / "s.duckdb")
    with sm.writer() as w:
        w.execute("CREATE TABLE n (i INTEGER)")
    order: list[str] = []

    def write(tag: str) -> None:
        with sm.writer() as w:
            order.append(f"{tag}-start")
            w.execute("INSERT INTO n VALUES (1)")
            time.sleep(0.05)
            order.append(f"{tag}-end")

    ts = [threading.Thread(target=write, args=(t,)) for t in "ab"]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert order in (["a-start", "a-end", "b-start", "b-end"], ["b-start", "b-end", "a-start", "a-end"])
    with sm.cursor() as c:
        assert c.execute("SELECT count(*) FROM n").fetchone()[0] == 2
    sm.close()


def test_release_after_lets_another_connection_open_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    sm = StoreManager(path, release_after=0.1)
    with sm.cursor() as c:
        c.execute("SELECT 1")
    gen = sm.generation
    assert not sm.maybe_release()  # used just now
    with sm.cursor(touch=False):
        pass  # a poll of the event stream is not activity
    time.sleep(0.15)
    assert sm.maybe_release()
    ro = connect(path, read_only=True)  # a different configuration: only possible once the service let go
    ro.close()
    with sm.cursor() as c:  # the next request reopens the store
        assert c.execute("SELECT 1").fetchone()[0] == 1
    assert sm.generation == gen + 1
    sm.close()
