"""Tables of docs/vol_forecasting.md: walk-forward comparison of EWMA, GARCH, HAR and the ML forecaster.

Usage::

    python docs/make_vol_forecasting.py --start 2021-01-01 --refit-every 30 [--assets BTC,ETH] [--csv out.csv]

Prints the markdown table and the run's settings.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import pandas as pd

from margincal.vol.compare import newey_west_lags, run_comparison, to_markdown


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python docs/make_vol_forecasting.py",
                                description="Walk-forward volatility forecast comparison on the bundled data.")
    p.add_argument("--assets", default="BTC,ETH", help="comma-separated bundled assets (default BTC,ETH)")
    p.add_argument("--start", default="2021-01-01", help="first out-of-sample target day (UTC)")
    p.add_argument("--end", default=None, help="last target day (default: last complete day of the data)")
    p.add_argument("--refit-every", type=int, default=30, help="days between refits (default 30)")
    p.add_argument("--window", default="expanding", help="'expanding' or a rolling window in days")
    p.add_argument("--ml-objective", default="log", choices=["log", "gamma"], help="ML objective (default log)")
    p.add_argument("--csv", default=None, help="also write the per-day forecasts to this CSV")
    args = p.parse_args(argv)
    window: int | str = args.window if args.window == "expanding" else int(args.window)
    res = run_comparison(
        [a.strip() for a in args.assets.split(",") if a.strip()],
        start=args.start, end=args.end, refit_every=args.refit_every, window=window,
        ml_params={"objective": args.ml_objective},
    )
    print(to_markdown(res.table))
    first = res.table.iloc[0]
    print(f"\nout-of-sample {first['first_day']} .. {first['last_day']} ({int(first['n'])} days); "
          f"refit every {args.refit_every} days, {args.window} window, ML objective {args.ml_objective}; "
          f"DM: Newey-West lags "
          f"{newey_west_lags(int(first['n']))}, HLN correction; runtime {res.runtime_s:.0f} s")
    for n in res.notes:
        print(f"note: {n}")
    if args.csv:
        pd.concat(res.forecasts, names=["asset"]).to_csv(args.csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
