"""Store: schema versioning, transactions, read-only readers beside a writer."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from margincal.data.store import (
    FRAME_MIN_ROWS,
    MIGRATIONS,
    connect,
    insert_rows,
    open_store,
    schema_version,
    transaction,
)
from margincal.errors import StoreError

TABLES = {"instruments", "bars", "funding", "open_interest", "option_quotes", "depth_snapshots", "parameter_sets",
          "parameter_rows", "proposals", "proposal_decisions", "audit_log", "results", "api_keys", "monitor_state"}


def test_schema_created_and_versioned(con):
    names = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert names >= TABLES
    assert schema_version(con) == len(MIGRATIONS)
    ids = [r[0] for r in con.execute("SELECT id FROM schema_migrations ORDER BY id").fetchall()]
    assert ids == sorted(m[0] for m in MIGRATIONS)


def test_reopen_does_not_reapply(store_path):
    with open_store(store_path) as c:
        n = schema_version(c)
    with open_store(store_path) as c:
        assert schema_version(c) == n


def test_unknown_migration_refused(store_path):
    with open_store(store_path) as c:
        c.execute("INSERT INTO schema_migrations VALUES ('9999_future', now()::TIMESTAMP)")
    with pytest.raises(StoreError, match="upgrade margincal"):
        connect(store_path)


def test_read_only_missing_file(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        connect(tmp_path / "nope.duckdb", read_only=True)


def test_transaction_rolls_back(con):
    with pytest.raises(RuntimeError), transaction(con):
        con.execute("INSERT INTO funding VALUES ('X', '2024-01-01', 0.0001)")
        raise RuntimeError("boom")
    assert con.execute("SELECT count(*) FROM funding").fetchall() == [(0,)]


def test_env_var_overrides_default(tmp_path, monkeypatch):
    target = tmp_path / "env.duckdb"
    monkeypatch.setenv("MARGINCAL_STORE", str(target))
    with open_store() as c:
        c.execute("SELECT 1").fetchall()
    assert target.exists()


def test_readers_open_read_only_while_a_writer_works(store_path):
    with open_store(store_path):
        pass
    writer = textwrap.dedent(f"""
        import time
        from margincal.data.store import open_store, transaction
        t0 = time.time(); i = 0
        while time.time() - t0 < 4.0:
            with open_store({str(store_path)!r}) as c:
                with transaction(c):
                    c.execute("INSERT INTO funding VALUES ('W', TIMESTAMP '2020-01-01' + INTERVAL (?) HOUR, 0.0)", [i])
            i += 1
        print(i)
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    counts = []
    try:
        for _ in range(15):
            with open_store(store_path, read_only=True, timeout=20) as r:
                counts.append(r.execute("SELECT count(*) FROM funding").fetchall()[0][0])
                with pytest.raises(Exception, match="read-only"):
                    r.execute("INSERT INTO funding VALUES ('R', '2020-01-01', 0.0)")
            time.sleep(0.1)
    finally:
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    written = int(out.strip())
    assert written > 10 and len(counts) == 15
    assert counts == sorted(counts) and counts[-1] > counts[0]  # readers saw the writer progress


def test_insert_rows_frame_path_writes_the_same_rows_as_values() -> None:
    """Many rows go through a registered frame, few through bound VALUES: the stored rows must be identical
    (types cast by DuckDB the same way, NULLs kept, JSON text unchanged), also with a result left open."""
    import pandas as pd

    n = 3 * FRAME_MIN_ROWS
    rows = [[i + 1, pd.Timestamp("2024-01-01 00:00:00.123456") + pd.Timedelta(hours=i), "actor", "publish",
             None if i % 3 == 0 else f"parameter_set:{i}", '{"a": [1, 2.5, null], "b": "x"}', f"p{i}", f"h{i}"]
            for i in range(n)]
    cols = ("seq", "ts", "actor", "action", "subject", "details", "prev_hash", "hash")
    many, few = connect(":memory:"), connect(":memory:")
    many.execute("SELECT 1")  # an open result must not stop the insert
    insert_rows(many, "audit_log", cols, rows)
    for k in range(0, n, FRAME_MIN_ROWS - 1):
        insert_rows(few, "audit_log", cols, rows[k:k + FRAME_MIN_ROWS - 1])
    q = "SELECT seq, ts, actor, action, subject, details::VARCHAR, prev_hash, hash FROM audit_log ORDER BY seq"
    a, b = many.execute(q).fetchall(), few.execute(q).fetchall()
    assert len(a) == n and a == b
    assert a[0][4] is None and a[1][4] == "parameter_set:1" and str(a[0][1]) == "2024-01-01 00:00:00.123456"
    insert_rows(many, "audit_log", cols, [])  # nothing to write: no statement
    assert many.execute("SELECT count(*) FROM audit_log").fetchone()[0] == n
