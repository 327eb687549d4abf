"""Compare every tail model on the bundled daily data (``*_daily.csv`` of :mod:`margincal.datasets`).

``python -m margincal.risk.compare`` prints the markdown table of 99% 1-day
VaR/ES as of the last date that ``docs/risk_models.md`` shows.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from margincal import datasets
from margincal.errors import DataError, MargincalWarning
from margincal.risk.base import Horizon
from margincal.risk.models import MODELS, make_model


def bundled_daily_symbols(data_dir: str | Path | None = None) -> list[str]:
    """Symbols of the bundled daily files (``btc`` for ``btc_daily.csv``), sorted."""
    if data_dir is None:
        return sorted(s.lower() for s in datasets.DAILY_SYMBOLS)
    return sorted(p.name[: -len("_daily.csv")] for p in Path(data_dir).glob("*_daily.csv")
                  if "open_interest" not in p.name)


def load_daily_log_returns(symbol: str, data_dir: str | Path | None = None) -> pd.Series:
    """Daily close-to-close log returns of a bundled coin, tz-aware UTC index, named ``SYMBOL``.

    The bundled files have no gaps before 2026 and six missing days in 2026 (see
    src/margincal/datasets/PROVENANCE.md); a return across a gap spans the gap and is kept as one bar.
    """
    name = f"{symbol.lower()}_daily.csv"
    if symbol.lower() not in bundled_daily_symbols(data_dir):
        raise DataError(f"{name}: no such bundled file; choose one of {', '.join(bundled_daily_symbols(data_dir))}")
    df = datasets.load(name, data_dir)[["date", "close"]]
    close = df["close"].to_numpy(dtype=float)
    if np.any(~np.isfinite(close)) or np.any(close <= 0):
        i = int(np.flatnonzero(~(np.isfinite(close) & (close > 0)))[0])
        raise DataError(f"{name} line {i + 2}: close is {close[i]}; prices must be > 0")
    idx = pd.DatetimeIndex(pd.to_datetime(df["date"], utc=True))
    r = pd.Series(np.diff(np.log(close)), index=idx[1:], name=symbol.upper())
    return r


def load_daily_panel(symbols: Sequence[str] | None = None, data_dir: str | Path | None = None) -> pd.DataFrame:
    """Log returns of several bundled coins side by side (outer join: NaN before a coin's listing)."""
    symbols = list(symbols) if symbols is not None else bundled_daily_symbols(data_dir)
    return pd.concat([load_daily_log_returns(s, data_dir) for s in symbols], axis=1)


def compare_models(*, level: float = 0.99, horizon: Horizon = 24.0, models: Sequence[str] | None = None,
                   symbols: Sequence[str] | None = None, data_dir: str | Path | None = None,
                   params: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """Fit every model on every bundled daily instrument (full history) and forecast at the last date.

    Returns one row per (instrument, model): ``var``, ``es``, ``side``, ``sigma``,
    ``as_of`` (last return date), ``n_obs``, ``warnings`` (count of margincal
    warnings raised by the fit, e.g. the Cornish-Fisher guard).
    """
    models = list(models) if models is not None else list(MODELS)
    params = params or {}
    rows = []
    for sym in symbols if symbols is not None else bundled_daily_symbols(data_dir):
        r = load_daily_log_returns(sym, data_dir)
        for m in models:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", MargincalWarning)
                f = make_model(m, **params.get(m, {})).fit(r).forecast(horizon, level)
            rows.append({"instrument": r.name, "model": m, "var": f.var, "es": f.es, "side": f.side,
                         "sigma": f.sigma, "as_of": r.index[-1].date().isoformat(), "n_obs": f.n_obs,
                         "warnings": sum(issubclass(w.category, MargincalWarning) for w in caught)})
    return pd.DataFrame(rows)


def markdown_table(df: pd.DataFrame) -> str:
    """Instrument x model table of ``VaR / ES`` in percent of notional."""
    models = list(dict.fromkeys(df["model"]))
    lines = ["| instrument | as of | " + " | ".join(models) + " |",
             "|---|---|" + "---|" * len(models)]
    for inst, g in df.groupby("instrument", sort=True):
        g = g.set_index("model")
        cells = [f"{100 * g.loc[m, 'var']:.2f} / {100 * g.loc[m, 'es']:.2f}" for m in models]
        lines.append(f"| {inst} | {g['as_of'].iloc[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--level", type=float, default=0.99)
    ap.add_argument("--horizon", default="24")
    args = ap.parse_args(argv)
    horizon: Horizon = float(args.horizon) if args.horizon.replace(".", "", 1).isdigit() else args.horizon
    df = compare_models(level=args.level, horizon=horizon)
    print(markdown_table(df))


if __name__ == "__main__":
    main()
