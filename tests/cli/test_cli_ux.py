"""CLI operation (issue 16 item 8): light `--help`, progress off a terminal, a store held by another process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

HEAVY = ("duckdb", "pandas", "numpy", "scipy")
COMMANDS = ["", "run", "calibrate", "backtest", "stress", "cascade", "monitor", "report", "fetch", "ingest",
            "portfolio", "params", "params show", "params export", "proposals", "audit", "keys", "serve"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("MARGINCAL_WAIT", None)
    return env


def test_help_imports_no_heavy_module() -> None:
    """`margincal --help` and `margincal CMD --help` import neither duckdb, pandas, numpy nor scipy."""
    code = textwrap.dedent("""
        import sys
        from margincal.cli.app import app
        import typer.main
        cmd = typer.main.get_command(app)
        bad = {}
        for c in sys.argv[1:]:
            try:
                cmd.main((c.split() if c else []) + ["--help"], prog_name="margincal", standalone_mode=False)
            except SystemExit:
                pass
            heavy = [m for m in HEAVY if m in sys.modules]
            if heavy:
                bad[c or "--help"] = heavy
                break
        print(bad)
    """).replace("HEAVY", repr(HEAVY), 1)
    out = subprocess.run([sys.executable, "-c", code, *COMMANDS], capture_output=True, text=True, env=_env(),
                         check=True, timeout=120).stdout.strip().splitlines()[-1]
    assert out == "{}", f"heavy modules imported by --help: {out}"


def test_venue_formats_for_help_are_the_real_ones() -> None:
    from margincal.cli.params import VENUE_FORMATS
    from margincal.margin.venues import FORMATS

    assert tuple(VENUE_FORMATS) == tuple(FORMATS)


def test_progress_prints_log_lines_off_a_terminal() -> None:
    code = textwrap.dedent("""
        import time
        from margincal.cli.common import progress
        with progress(name="demo") as p:
            t = p.add_task("instruments", total=10)
            for _ in range(10):
                time.sleep(0.01)
                p.advance(t)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    pat = re.compile(r"^demo: (\d+)% \((\d+)/10 instruments\), \d+\.\d s$")
    assert lines and all(pat.match(x) for x in lines), lines
    pcts = [int(pat.match(x).group(1)) for x in lines]  # type: ignore[union-attr]
    assert pcts == sorted(pcts) and pcts[-1] == 100 and len(pcts) >= 10


def test_locked_store_names_the_holder_and_exits_2(tmp_path: Path) -> None:
    """A real second process holds the DuckDB file: off a terminal the command fails at once, exit 2, one line
    naming the holder's PID and command line; with --wait it counts down and then fails the same way."""
    store = tmp_path / "held.duckdb"
    subprocess.run([sys.executable, "-c", f"from margincal.data.store import connect; connect({str(store)!r}).close()"],
                   env=_env(), check=True, timeout=120)
    script = tmp_path / "holder_marker.py"
    script.write_text("import sys, time\nimport duckdb\ncon = duckdb.connect(sys.argv[1])\n"
                      "print('ready', flush=True)\ntime.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, str(script), str(store)], stdout=subprocess.PIPE, text=True,
                              env=_env())
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "margincal", "params", "show", "--store", str(store)],
                             capture_output=True, text=True, env=_env(), timeout=120, stdin=subprocess.DEVNULL)
        fast = time.monotonic() - t0
        assert res.returncode == 2, res.stderr
        err = [x for x in res.stderr.splitlines() if x.strip()]
        assert len(err) == 1, res.stderr
        assert f"PID {holder.pid}" in err[0] and "holder_marker.py" in err[0], err[0]
        assert "Traceback" not in res.stderr
        res = subprocess.run([sys.executable, "-m", "margincal", "params", "show", "--store", str(store),
                              "--wait", "2"], capture_output=True, text=True, env=_env(), timeout=120,
                             stdin=subprocess.DEVNULL)
        assert res.returncode == 2
        assert "waiting up to" in res.stderr and f"PID {holder.pid}" in res.stderr.splitlines()[-1]
        assert fast < 30  # no silent 30 s wait off a terminal
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("bad", ["-1", "soon", "inf"])
def test_wait_rejects_bad_values(bad: str, tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "margincal", "params", "show", "--store", str(tmp_path / "x.duckdb"),
                          "--wait", bad], capture_output=True, text=True, env=_env(), timeout=120)
    assert res.returncode == 2 and "--wait" in res.stderr and "Traceback" not in res.stderr
