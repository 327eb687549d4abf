"""Tables and figures of docs/vol_surfaces.md: SVI / SSVI fits to the bundled Deribit snapshots.

Usage::

    python docs/make_vol_surfaces.py [--figures docs/figures]

Prints the per-expiry and summary RMSE tables; writes one plotly smile figure per snapshot.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from margincal import datasets
from margincal.vol.surface import BUNDLED_SNAPSHOTS, fit_report, markdown_table, smile_figure


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python docs/make_vol_surfaces.py",
                                 description="Fit SVI / SSVI to the bundled Deribit snapshots and print the RMSE table.")
    ap.add_argument("--figures", default=None, help="folder to write one plotly HTML smile figure per snapshot")
    args = ap.parse_args(argv)
    rows = []
    for name in BUNDLED_SNAPSHOTS:
        rep = fit_report(datasets.path(name))
        rows.append(rep["row"])
        for n in rep["notes"]:  # type: ignore[union-attr]
            print(f"note: {n}")
        print(f"\n{name}: per-expiry fit (vol points)")
        per = rep["svi"].slices_[["T", "k_min", "k_max", "rmse_iv"]].copy()  # type: ignore[union-attr]
        per = rep["ssvi"].by_expiry_.rename(columns={"rmse_iv": "ssvi_rmse_iv"}).merge(  # type: ignore[union-attr]
            per, on="T", how="left")[["expiry", "T", "n", "k_min", "k_max", "rmse_iv", "ssvi_rmse_iv"]]
        per["rmse_iv"] *= 100
        per["ssvi_rmse_iv"] *= 100
        per = per.rename(columns={"rmse_iv": "svi_rmse_volpts", "ssvi_rmse_iv": "ssvi_rmse_volpts"})
        print(markdown_table(per))
        if args.figures:
            out = Path(args.figures)
            out.mkdir(parents=True, exist_ok=True)
            smile_figure(rep).write_html(out / f"smiles_{Path(name).stem}.html", include_plotlyjs="cdn")
    for name in BUNDLED_SNAPSHOTS:  # the mark-IV files again with put-call-parity forwards
        if "2024-05" in name:
            rows.append(fit_report(datasets.path(name), forward="parity")["row"])
    print("\nsummary")
    table = pd.DataFrame(rows)
    print(markdown_table(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
