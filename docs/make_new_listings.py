"""Table of docs/new_listings.md: replay new-listing margins on the bundled daily coins.

Usage::

    python docs/make_new_listings.py [--assets eth,sol,...] [--reference btc] [--every-days 180] [--windows 30,90]

Prints the markdown summary table (stdout) and the runtime (stderr).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from margincal.margin.new_listing import VALIDATION_ASSETS, markdown_summary, validate_new_listings


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python docs/make_new_listings.py",
                                description="Replay new-listing margins on the bundled daily coins.")
    p.add_argument("--assets", default=",".join(VALIDATION_ASSETS))
    p.add_argument("--reference", default="btc")
    p.add_argument("--every-days", type=int, default=180)
    p.add_argument("--windows", default="30,90")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    summary, detail = validate_new_listings(
        [a.strip() for a in args.assets.split(",") if a.strip()], args.reference, every_days=args.every_days,
        windows=[int(w) for w in args.windows.split(",")],
        progress=lambda a: print(f"... {a}", file=sys.stderr))
    print(markdown_summary(summary))
    print(f"\n{len(detail)} margin-days; runtime {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
