"""Run a command and report its wall time and the peak memory of its process tree.

Samples every ``--interval`` seconds (psutil) the resident set size (RSS) of the
command and of every descendant (Dask nanny and worker processes), and prints
one JSON object: wall seconds, peak RSS of the whole tree (sum at one sample),
peak RSS per process (by command line), the bytes Dask spilled to disk
(size of the ``margincal-dask-*`` spill folders under the temp dir, sampled),
the CPU seconds (user + system) of the tree (last sample of each process, so
a little is missed at exit) and the mean 1-minute load average of the machine
while it ran (the machine is shared: a load above 2 on 2 cores means waiting).

    python bench/measure_cli.py -- margincal portfolio --book book10m --engine dask --workers 2

Used for the 10,000,000-account figures of docs/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def _label(p: psutil.Process) -> str:
    try:
        cmd = " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return str(p.pid)
    if "multiprocessing" in cmd or "spawn_main" in cmd or "forkserver" in cmd:
        return f"worker-or-nanny pid {p.pid}"
    return cmd[:80]


def _spill_bytes() -> int:
    total = 0
    for d in Path(tempfile.gettempdir()).glob("margincal-dask-*"):
        for f in d.rglob("*"):
            try:
                if f.is_file():
                    total += f.stat().st_size
            except OSError:
                pass
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--interval", type=float, default=0.25)
    ap.add_argument("--spill-every", type=int, default=8, help="check spill folders every N samples")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        ap.error("give a command after --")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    root = psutil.Process(proc.pid)
    peak_total = 0
    peak: dict[int, tuple[int, str]] = {}
    peak_spill = 0
    cpu: dict[int, float] = {}  # last seen user + system CPU seconds per process
    loads = []
    i = 0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        total = 0
        for p in procs:
            try:
                rss = p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total += rss
            try:
                ct = p.cpu_times()
                cpu[p.pid] = ct.user + ct.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
            if rss > peak.get(p.pid, (0, ""))[0]:
                peak[p.pid] = (rss, _label(p))
        peak_total = max(peak_total, total)
        if i % max(args.spill_every, 1) == 0:
            peak_spill = max(peak_spill, _spill_bytes())
            loads.append(psutil.getloadavg()[0])
        i += 1
        time.sleep(args.interval)
    rc = proc.wait()
    wall = time.perf_counter() - t0
    rows = sorted(peak.values(), reverse=True)
    out = {"cmd": " ".join(cmd), "returncode": rc, "wall_s": round(wall, 2),
           "peak_tree_rss_mib": round(peak_total / 2**20, 1),
           "peak_rss_per_process_mib": [{"process": lab, "rss_mib": round(r / 2**20, 1)} for r, lab in rows[:6]],
           "peak_spill_mib": round(peak_spill / 2**20, 1),
           "cpu_s_tree": round(sum(cpu.values()), 1),
           "load_avg_1min_mean": round(sum(loads) / len(loads), 2) if loads else None}
    print(json.dumps(out, indent=1), file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
