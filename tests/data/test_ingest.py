"""Ingest validation: every bad-input rule, atomicity and idempotency."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from margincal.data import ingest as ingest_mod
from margincal.data.ingest import IngestWarning, ingest_file
from margincal.errors import DataError

HEADER = "timestamp,open,high,low,close,volume\n"
GOOD = [
    "2024-01-01T00:00:00Z,100,110,95,105,10",
    "2024-01-01T01:00:00Z,105,108,101,102,12",
    "2024-01-01T02:00:00Z,102,104,99,103,8",
    "2024-01-01T03:00:00Z,103,107,100,106,9",
]


def write(tmp_path: Path, lines: list[str], header: str = HEADER, name: str = "bars.csv") -> Path:
    p = tmp_path / name
    p.write_text(header + "\n".join(lines) + "\n")
    return p


def count(con, table: str = "bars") -> int:
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_good_file_loads(con, tmp_path):
    rep = ingest_file(con, write(tmp_path, GOOD), instrument="T-USDT", timeframe="1h")
    assert rep.rows_inserted == 4 and rep.rows_already_present == 0
    df = con.execute("SELECT * FROM bars ORDER BY ts").df()
    assert list(df["close"]) == [105, 102, 103, 106]
    assert str(df["ts"].iloc[0]) == "2024-01-01 00:00:00"
    kind = con.execute("SELECT kind, underlying FROM instruments WHERE instrument='T-USDT'").fetchone()
    assert kind == ("spot", "T")


def test_missing_column_names_file_line_and_column(con, tmp_path):
    p = write(tmp_path, [g.rsplit(",", 1)[0] for g in GOOD], header="timestamp,open,high,low,close\n")
    with pytest.raises(DataError) as e:
        ingest_file(con, p, instrument="T", timeframe="1h")
    msg = str(e.value)
    assert "bars.csv line 1" in msg and "'volume'" in msg and "found: timestamp" in msg


def test_misnamed_column_gets_a_hint(con, tmp_path):
    p = write(tmp_path, GOOD, header="timestamp,open,high,low,close,vol\n")
    with pytest.raises(DataError, match=r"'volume' \(did you mean 'vol'\?\)"):
        ingest_file(con, p, instrument="T", timeframe="1h")


def test_missing_time_column(con, tmp_path):
    p = write(tmp_path, GOOD, header="when,open,high,low,close,volume\n")
    with pytest.raises(DataError, match=r"line 1: no time column"):
        ingest_file(con, p, instrument="T", timeframe="1h")


@pytest.mark.parametrize(
    ("row", "line_no", "pattern"),
    [
        ("2024-01-01T04:00:00Z,106,abc,100,104,5", 6, r"line 6: high is 'abc'; high must be a finite number"),
        ("2024-01-01T04:00:00Z,106,108,100,-3.2,5", 6, r"line 6: close is -3.2; prices must be > 0"),
        ("2024-01-01T04:00:00Z,106,108,100,0,5", 6, r"line 6: close is 0; prices must be > 0"),
        ("2024-01-01T04:00:00Z,106,99,100,99.5,5", 6, r"line 6: high 99 < low 100; high must be >= low"),
        ("2024-01-01T04:00:00Z,106,108,100,109,5", 6, r"line 6: close 109 is outside \[low 100, high 108\]"),
        ("2024-01-01T04:00:00Z,106,108,100,104,-1", 6, r"line 6: volume is -1; volume must be >= 0"),
        ("2024-13-45T04:00:00Z,106,108,100,104,5", 6, r"line 6: timestamp '2024-13-45T04:00:00Z' is not a timestamp"),
        ("2024-01-01T04:30:00Z,106,108,100,104,5", 6, r"line 6: timestamp is not on the 1h grid"),
    ],
)
def test_bad_values_name_line_field_and_rule(con, tmp_path, row, line_no, pattern):
    p = write(tmp_path, [*GOOD, row])
    with pytest.raises(DataError, match=pattern) as e:
        ingest_file(con, p, instrument="T", timeframe="1h")
    assert "bars.csv" in str(e.value)
    assert count(con) == 0  # nothing written


def test_spacing_not_multiple_of_timeframe(con, tmp_path):
    rows = ["2024-01-01T00:00:00Z,100,110,95,105,10", "2024-01-01T04:00:00Z,105,108,101,102,12",
            "2024-01-01T06:00:00Z,102,104,99,103,8"]
    with pytest.raises(DataError, match=r"line 4: timestamp spacing is not a whole multiple of 4h"):
        ingest_file(con, write(tmp_path, rows), instrument="T", timeframe="4h")


def test_conflicting_duplicate_timestamps(con, tmp_path):
    p = write(tmp_path, [*GOOD, "2024-01-01T01:00:00Z,105,108,101,104,12"])
    with pytest.raises(DataError, match=r"line 6: duplicate timestamp \(ts=2024-01-01 01:00:00\) with conflicting"):
        ingest_file(con, p, instrument="T", timeframe="1h")
    assert count(con) == 0


def test_exact_duplicates_dropped_with_warning(con, tmp_path):
    p = write(tmp_path, [*GOOD, GOOD[1]])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        rep = ingest_file(con, p, instrument="T", timeframe="1h")
    assert rep.duplicates_dropped == 1 and rep.rows_inserted == 4
    assert any(issubclass(x.category, IngestWarning) and "1 exact duplicate" in str(x.message) for x in w)


def test_gaps_are_reported_not_rejected(con, tmp_path):
    rows = [GOOD[0], GOOD[1], "2024-01-01T05:00:00Z,103,107,100,106,9", "2024-01-01T09:00:00Z,106,107,100,101,9"]
    rep = ingest_file(con, write(tmp_path, rows), instrument="T", timeframe="1h")
    # gaps: 01->05 misses 02,03,04 (3 bars); 05->09 misses 06,07,08 (3 bars): 2 gaps, largest 3h missing
    assert rep.gaps == 2 and rep.largest_gap == "0 days 03:00:00"
    assert rep.rows_inserted == 4


def test_several_problems_are_listed_with_a_count(con, tmp_path):
    bad = [f"2024-01-01T{h:02d}:00:00Z,100,110,95,-1,10" for h in range(8)]
    with pytest.raises(DataError) as e:
        ingest_file(con, write(tmp_path, bad), instrument="T", timeframe="1h")
    msg = str(e.value)
    assert msg.count("prices must be > 0") == 5 and "(and 3 more problem(s))" in msg


def test_ingest_twice_changes_nothing(con, tmp_path):
    p = write(tmp_path, GOOD)
    ingest_file(con, p, instrument="T", timeframe="1h")
    before = con.execute("SELECT * FROM bars ORDER BY ts").df()
    rep = ingest_file(con, p, instrument="T", timeframe="1h")
    after = con.execute("SELECT * FROM bars ORDER BY ts").df()
    assert rep.rows_inserted == 0 and rep.rows_already_present == 4
    pd.testing.assert_frame_equal(before, after)


def test_conflict_with_stored_rows_needs_replace(con, tmp_path):
    ingest_file(con, write(tmp_path, GOOD), instrument="T", timeframe="1h")
    changed = [*GOOD[:3], "2024-01-01T03:00:00Z,103,107,100,104,9", "2024-01-01T04:00:00Z,104,105,101,102,3"]
    p2 = write(tmp_path, changed, name="b2.csv")
    with pytest.raises(DataError, match=r"b2.csv: 1 row\(s\) conflict with data already stored"):
        ingest_file(con, p2, instrument="T", timeframe="1h")
    assert count(con) == 4  # the new 04:00 row was not written either
    rep = ingest_file(con, p2, instrument="T", timeframe="1h", replace=True)
    assert rep.rows_inserted == 2 and count(con) == 5
    assert con.execute("SELECT close FROM bars WHERE ts='2024-01-01 03:00:00'").fetchone()[0] == 104


def test_failure_half_way_leaves_store_as_it_was(con, tmp_path, monkeypatch):
    ingest_file(con, write(tmp_path, GOOD[:2]), instrument="T", timeframe="1h")
    snapshot = con.execute("SELECT * FROM bars ORDER BY ts").df()

    def boom(*a, **k):
        raise RuntimeError("disk full (simulated) after the bars insert")

    monkeypatch.setattr(ingest_mod, "upsert_instrument", boom)
    with pytest.raises(RuntimeError):
        ingest_file(con, write(tmp_path, GOOD, name="more.csv"), instrument="U", timeframe="1h")
    pd.testing.assert_frame_equal(snapshot, con.execute("SELECT * FROM bars ORDER BY ts").df())
    assert con.execute("SELECT count(*) FROM instruments WHERE instrument='U'").fetchone()[0] == 0


def test_dry_run_writes_nothing(con, tmp_path):
    rep = ingest_file(con, write(tmp_path, GOOD), instrument="T", timeframe="1h", dry_run=True)
    assert rep.rows_inserted == 4 and count(con) == 0


def test_parquet_errors_name_rows(con, tmp_path):
    df = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC"),
                       "open": [1.0, 2.0, 3.0], "high": [1.5, 2.5, 3.5], "low": [0.5, 1.5, 2.5],
                       "close": [1.2, 2.2, 4.0], "volume": [1.0, 1.0, 1.0]})
    p = tmp_path / "x.parquet"
    df.to_parquet(p)
    with pytest.raises(DataError, match=r"x.parquet row 3: close 4 is outside \[low 2.5, high 3.5\]"):
        ingest_file(con, p, instrument="T", timeframe="1d")
    df.loc[2, "close"] = 3.2
    df.to_parquet(p)
    assert ingest_file(con, p, instrument="T", timeframe="1d").rows_inserted == 3


def test_timeframe_required_and_validated(con, tmp_path):
    p = write(tmp_path, GOOD)
    with pytest.raises(DataError, match="bars need a timeframe"):
        ingest_file(con, p, instrument="T")
    with pytest.raises(DataError, match="timeframe '1x' is not valid"):
        ingest_file(con, p, instrument="T", timeframe="1x")


def test_unknown_file_kind(con, tmp_path):
    p = write(tmp_path, ["1,2"], header="a,b\n")
    with pytest.raises(DataError, match="cannot tell what the file holds"):
        ingest_file(con, p, instrument="T")


def test_bundled_funding_oi_and_options(con, data_dir):
    r1 = ingest_file(con, data_dir / "btcusdt_funding.csv", instrument="BTC-PERP")
    r2 = ingest_file(con, data_dir / "btc_open_interest_daily.csv", instrument="BTC-PERP")
    r3 = ingest_file(con, data_dir / "deribit_eth_options_snapshot_2024-01-08.csv", instrument="ETH")
    r4 = ingest_file(con, data_dir / "deribit_btc_options_snapshot_2024-05.csv", instrument="BTC")
    # row counts documented in src/margincal/datasets/PROVENANCE.md
    assert (r1.rows_inserted, r2.rows_inserted, r3.rows_inserted, r4.rows_inserted) == (7323, 2063, 684, 578)
    assert r1.kind == "funding" and r2.kind == "open_interest" and r3.kind == "options"
    # 34 placeholder IVs of exactly 100.0 are stored as NULL (PROVENANCE.md caveat)
    n_null = con.execute("SELECT count(*) FROM option_quotes WHERE underlying='BTC' AND mark_iv IS NULL").fetchone()[0]
    assert n_null == 34
    name = con.execute("SELECT instrument FROM option_quotes WHERE underlying='ETH' ORDER BY instrument LIMIT 1"
                       ).fetchone()[0]
    assert name.startswith("ETH-") and name.endswith(("-C", "-P"))


def test_bundled_daily_btc_matches_provenance_checks(con, data_dir):
    rep = ingest_file(con, data_dir / "btc_daily.csv", instrument="BTC-USDT", timeframe="1d")
    assert rep.rows_inserted == 3142
    # PROVENANCE.md: 6 missing days in 2026 in 4 gaps (01-08, 01-20, 03-20..22, 03-25)
    assert rep.gaps == 4
    close = con.execute("SELECT close FROM bars WHERE instrument='BTC-USDT' AND ts='2020-03-12'").fetchone()[0]
    assert close == 4800.00
