"""Run every benchmark in bench/ and write docs/benchmarks.md.

Each ``bench/bench_*.py`` module exposes ``run(quick: bool = False) -> list[dict]``
returning rows ``{"name", "ours_s", "baseline_name", "baseline_s", "ratio", "notes"}``
(optionally ``"section"`` to group rows, e.g. a scaling table), and may expose
``section_notes(rows) -> list[str]``: paragraphs written under its heading. Ours
and the baseline are measured in the same run on the same machine; ``ratio`` is
baseline time / our time (above 1 means we are faster).

Usage::

    python bench/run_all.py            # full run, writes docs/benchmarks.md
    python bench/run_all.py --quick    # small sizes, for a smoke check
    python bench/run_all.py --only portfolio --only black76
    python bench/run_all.py --only backtest --update   # re-measure one section of docs/benchmarks.md
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
    ap.add_argument("--update", action="store_true",
                    help="with --only: replace those benchmarks' sections of --out, keep the others")
    args = ap.parse_args()
    files = sorted(HERE.glob("bench_*.py"))
    if args.only:
        files = [f for f in files if f.stem.removeprefix("bench_") in args.only]
    results: list[tuple[str, list[dict], float, str | None, list[str], tuple[float, float]]] = []
    for f in files:
        print(f"== {f.stem}", flush=True)
        t0 = time.perf_counter()
        load_start = os.getloadavg()[0]
        notes: list[str] = []
        try:
            mod = load(f)
            rows = mod.run(quick=args.quick or f.stem.removeprefix("bench_") in args.quick_for)
            notes = mod.section_notes(rows) if hasattr(mod, "section_notes") else []
            err = None
        except Exception:  # a failing benchmark is reported, the others still run
            rows, err = [], traceback.format_exc(limit=3)
            print(err, file=sys.stderr)
        el = time.perf_counter() - t0
        for r in rows:
            print(f"   {r.get('name')}: ours {fmt_s(r.get('ours_s'))}, {r.get('baseline_name')} "
                  f"{fmt_s(r.get('baseline_s'))}, ratio {r.get('ratio', 0):.1f}x  {r.get('notes', '')}", flush=True)
        for p in notes:
            print(f"   {p}", flush=True)
        results.append((f.stem, rows, el, err, notes, (load_start, os.getloadavg()[0])))
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = ["# Benchmarks", "",
              f"Measured {now} on: {machine()}.", "",
              f"Produced by `make bench` (`python bench/run_all.py {' '.join(sys.argv[1:])}`). Each row "
              "times our code and a baseline in the same run; ratio = baseline time / our time (above 1: we are "
              "faster). Where a baseline was timed on a subsample and extrapolated, the notes say so.", ""]
    sections: dict[str, list[str]] = {}
    for stem, rows, el, err, notes, (load_start, load_end) in results:
        mode = "quick" if args.quick or stem.removeprefix("bench_") in args.quick_for else "full"
        lines = sections.setdefault(stem.removeprefix("bench_"), [f"## {stem.removeprefix('bench_')}", ""])
        if args.update:
            lines += [f"Re-measured for this section: {now} on: {machine()} (`python bench/run_all.py "
                      f"{' '.join(sys.argv[1:])}`). Load average {load_start:.2f} (1 min) at the start, "
                      f"{load_end:.2f} at the end, on {os.cpu_count()} cores shared with other jobs.", ""]
        lines += [f"Run time of this benchmark: {el:.1f} s ({mode} mode).", ""]
        if err:
            lines += ["FAILED:", "", "```", err.strip(), "```", ""]
            continue
        for p in notes:
            lines += [p, ""]
        tables: dict[str, list[dict]] = {}
        for r in rows:
            tables.setdefault(r.get("section", ""), []).append(r)
        for sec, srows in tables.items():
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
        Path(args.out).write_text("\n".join(header + [x for sec in sections.values() for x in sec]) + "\n")
        print(f"wrote {args.out}")
    elif args.update:  # a failed benchmark's section is left as it was
        done = [stem.removeprefix("bench_") for stem, _, _, err, *_ in results if not err]
        for name in done:
            replace_section(Path(args.out), name, sections[name])
        print(f"updated {', '.join(done) or 'no section'} in {args.out}")
    else:
        print("\n".join(header + [x for sec in sections.values() for x in sec]))
    return 1 if any(r[3] for r in results) else 0


def replace_section(path: Path, name: str, section: list[str]) -> None:
    """Replace the ``## name`` section of the markdown file ``path`` (up to the next ``## `` heading) by the
    lines ``section``, or append them when the file has no such section; blank lines around it are kept."""
    text = path.read_text().split("\n")
    body = list(section)
    while body and body[-1] == "":
        body.pop()
    heading = f"## {name}"
    if heading in text:
        start = text.index(heading)
        stop = next((i for i in range(start + 1, len(text)) if text[i].startswith("## ")), len(text))
        while stop > start and text[stop - 1] == "":
            stop -= 1
    else:  # after the last non-blank line
        start = len(text)
        while start and text[start - 1] == "":
            start -= 1
        stop, body = start, ["", *body]
    text[start:stop] = body
    path.write_text("\n".join(text))


if __name__ == "__main__":
    sys.exit(main())
