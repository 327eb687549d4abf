"""Issue 16 item 10: SIGKILL anywhere in `monitor --replay --calibrate` never republishes nor files twice.

The real command (a separate process) is killed with SIGKILL at staggered moments - during start-up, around the
base calibration's publish, before and after the first checkpoint, mid-run - and restarted each time, then run to
the end. Whatever the kill point, the store holds exactly one base-calibration proposal (applied as one version
when the policy allows it, else pending for a risk officer), no version equal to the one before it, a verified
audit chain and whole versions only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from margincal.data import audit
from margincal.data.store import connect
from margincal.margin import params as P

from .test_crash import _cli

ARGS = ["monitor", "--replay", "--from", "2022-11-05", "--to", "2022-11-12", "--warmup-days", "14", "--json",
        "--live-store", "--calibrate", "--speed", "100000"]


def _rows(con, v: int) -> tuple:  # type: ignore[no-untyped-def]
    return tuple(sorted((k, p.im_rate, p.mm_rate) for k, p in P.load(con, v).params.items()))


@pytest.mark.slow
def test_sigkill_loop_never_republishes(ftx_store):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    con = connect(ftx_store)
    v0 = P.latest_version(con) or 0
    con.close()
    kills = 0
    for delay in (0.3, 1.0, 1.8, 2.4, 3.0, 4.0):
        proc = subprocess.Popen(_cli() + ARGS + ["--store", str(ftx_store)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=env)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    assert kills >= 4
    done = subprocess.run(_cli() + ARGS + ["--store", str(ftx_store)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    con = connect(ftx_store)
    try:
        assert audit.verify_chain(con).ok
        heads = con.execute("SELECT version, source FROM parameter_sets WHERE version > ? ORDER BY version",
                            [v0]).fetchall()
        # the base calibration goes through the proposal/decision path (issue 16 item 1): ONE proposal whatever the
        # kills (a rerun finds its own undecided proposal), applied as one version when the policy's rule allows
        # it, else pending for a risk officer (a decrease of the live set's IM) - never a second one
        n_cal = con.execute("SELECT count(*) FROM proposals WHERE json_extract_string(evidence, '$.source') = "
                            "'calibration'").fetchone()[0]
        assert n_cal == 1, n_cal
        pending = con.execute("SELECT count(*) FROM proposals p LEFT JOIN proposal_decisions d USING (proposal_id) "
                              "WHERE d.proposal_id IS NULL AND json_extract_string(p.evidence, '$.source') = "
                              "'calibration'").fetchone()[0]
        assert [s for _, s in heads].count("calibration") == 1 - pending, (heads, pending)
        versions = [v0, *[v for v, _ in heads]] if v0 else [v for v, _ in heads]
        rows = [_rows(con, v) for v in versions]
        assert all(rows[i] != rows[i - 1] for i in range(1, len(rows))), "an identical set was republished"
        n_pub = con.execute("SELECT count(*) FROM audit_log WHERE action = 'publish'").fetchone()[0]
        assert n_pub == con.execute("SELECT count(*) FROM parameter_sets").fetchone()[0]
    finally:
        con.close()
