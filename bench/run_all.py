"""Run every benchmark in bench/ and write docs/benchmarks.md.

Each ``bench/bench_*.py`` module exposes ``run(quick: bool = False) -> list[dict]``
returning rows ``{"name", "ours_s", "baseline_name", "baseline_s", "ratio", "notes"}``
(optionally ``"section"`` to group rows, e.g. a scaling table). Ours and the
baseline are measured in the same run on the same machine; ``ratio`` is
baseline time / our time (above 1 means we are faster).

Usage::

    python bench/run_all.py            # full run, writes docs/benchmarks.md
    python bench/run_all.py --quick    # small sizes, for a smoke check
    python bench/run_all.py --only portfolio --only black76
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    import numpy as np

    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), {mem} RAM, "
            f"Python {platform.python_version()}, numpy {np.__version__}")


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[path.stem] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def fmt_s(x: object) -> str:
    if not isinstance(x, (int, float)):
        return str(x) if x is not None else "-"
    if x >= 1:
        return f"{x:.2f} s"
    if x >= 1e-3:
        return f"{x * 1e3:.1f} ms"
    return f"{x * 1e6:.1f} us"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--only", action="append", default=[], help="run only bench_<NAME>.py (repeatable)")
    ap.add_argument("--quick-for", action="append", default=[],
                    help="run bench_<NAME>.py in quick mode even in a full run (repeatable)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = ap.parse_args()
    files = sorted(HERE.glob("bench_*.py"))
    if args.only:
        files = [f for f in files if f.stem.removeprefix("bench_") in args.only]
    results: list[tuple[str, list[dict], float, str | None]] = []
    for f in files:
        print(f"== {f.stem}", flush=True)
        t0 = time.perf_counter()
        try:
            rows = load(f).run(quick=args.quick or f.stem.removeprefix("bench_") in args.quick_for)
            err = None
        except Exception:  # a failing benchmark is reported, the others still run
            rows, err = [], traceback.format_exc(limit=3)
            print(err, file=sys.stderr)
        el = time.perf_counter() - t0
        for r in rows:
            print(f"   {r.get('name')}: ours {fmt_s(r.get('ours_s'))}, {r.get('baseline_name')} "
                  f"{fmt_s(r.get('baseline_s'))}, ratio {r.get('ratio', 0):.1f}x  {r.get('notes', '')}", flush=True)
        results.append((f.stem, rows, el, err))
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Benchmarks", "",
             f"Measured {now} on: {machine()}.", "",
             f"Produced by `make bench` (`python bench/run_all.py {' '.join(sys.argv[1:])}`). Each row "
             "times our code and a baseline in the same run; ratio = baseline time / our time (above 1: we are "
             "faster). Where a baseline was timed on a subsample and extrapolated, the notes say so.", ""]
    for stem, rows, el, err in results:
        mode = "quick" if args.quick or stem.removeprefix("bench_") in args.quick_for else "full"
        lines += [f"## {stem.removeprefix('bench_')}", "", f"Run time of this benchmark: {el:.1f} s ({mode} mode).", ""]
        if err:
            lines += ["FAILED:", "", "```", err.strip(), "```", ""]
            continue
        sections: dict[str, list[dict]] = {}
        for r in rows:
            sections.setdefault(r.get("section", ""), []).append(r)
        for sec, srows in sections.items():
            if sec:
                lines += [f"### {sec}", ""]
            lines += ["| what | ours | baseline | baseline time | ratio | notes |", "|---|---|---|---|---|---|"]
            for r in srows:
                ratio = r.get("ratio")
                lines.append(f"| {r.get('name')} | {fmt_s(r.get('ours_s'))} | {r.get('baseline_name', '-')} | "
                             f"{fmt_s(r.get('baseline_s'))} | "
                             f"{f'{ratio:.1f}x' if isinstance(ratio, (int, float)) else '-'} | "
                             f"{r.get('notes', '')} |")
            lines.append("")
    if not args.only:
        Path(args.out).write_text("\n".join(lines) + "\n")
        print(f"wrote {args.out}")
    else:
        print("\n".join(lines))
    return 1 if any(err for *_, err in results) else 0


if __name__ == "__main__":
    sys.exit(main())
