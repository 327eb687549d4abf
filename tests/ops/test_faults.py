"""Issue 16 item 12: the fault-injection suite, short (a few kills each; docs/make_reliability.py runs the full
loops and writes their counts into docs/reliability.md). The scenarios and their checks are in faults.py."""

from __future__ import annotations

import pytest

from . import faults as F

pytestmark = pytest.mark.slow


def _clean(c: F.Counts) -> None:
    assert c.bad() == 0, c.as_dict()


def test_sigkill_during_ingest_loses_and_duplicates_nothing(tmp_path):  # type: ignore[no-untyped-def]
    c = F.ingest_kill_loop(tmp_path, kills=2, rows_per_file=3000)
    _clean(c)
    assert c.runs == 4 and c.kills >= 1 and c.rows == 6000


def test_sigkill_during_publish_leaves_whole_versions(tmp_path):  # type: ignore[no-untyped-def]
    c = F.publish_kill_loop(tmp_path, delays=[1.5, 2.5, 3.5])
    _clean(c)
    assert c.kills >= 2 and c.rows >= 3


def test_concurrent_writers(tmp_path):  # type: ignore[no-untyped-def]
    c = F.concurrent_writers(tmp_path, rows_per_file=2000, steps=6)
    _clean(c)


def test_read_while_serve_holds_the_store(tmp_path):  # type: ignore[no-untyped-def]
    c = F.read_while_serving(tmp_path, reads=1)
    _clean(c)
    assert c.runs == 1
