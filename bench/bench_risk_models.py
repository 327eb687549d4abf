"""Benchmark: rolling 1-year VaR/ES of every tail model, every day, every bundled daily coin.

For each model (hs, fhs, normal, t, cf, evt, mc) and each of the 10 bundled
daily coins, a model is fitted on the last 365 daily log returns and asked for
the 99% 1-day VaR/ES, for every day with a full window (23,787 windows in all).

* ours: :func:`margincal.risk.rolling.rolling_forecasts` - all windows at once
  for hs (sorted 2-D sliding windows), fhs and normal (one ``lfilter`` EWMA
  recursion along the rows of the window matrix, each window re-seeded as a
  refit is) and cf (same filter + row-wise moments); a plain loop over windows
  for t, evt and mc, whose maximum-likelihood fits have no shortcut.
* baseline: the naive pandas idiom ``returns.rolling(365, step=k).apply(f,
  raw=True)`` where ``f`` refits ``make_model(name)`` on each window. It runs on
  every k-th window only (k = 20; 60 with ``quick``) and its time is
  extrapolated LINEARLY to all windows; the notes say so.

Both are measured in the same run, and the notes report the largest absolute
VaR difference on the windows both computed (they must agree: both are the
same estimator). ``mc`` uses 10,000 simulations per window in both.
``quick=True``: 3 coins (btc, eth, sol), the last 120 windows each.
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
import pandas as pd

from margincal.risk.base import ModelFitWarning
from margincal.risk.compare import bundled_daily_symbols, load_daily_log_returns
from margincal.risk.models import make_model
from margincal.risk.rolling import FAST_MODELS, rolling_forecasts

WINDOW = 365
MODELS = ("hs", "fhs", "normal", "t", "cf", "evt", "mc")
PARAMS: dict[str, dict] = {"mc": {"n_sims": 10_000}}


def _baseline(r: pd.Series, model: str, step: int, keep_last: int | None) -> tuple[float, pd.Series, int]:
    """pandas rolling(...).apply refit on every ``step``-th window; returns (seconds, VaR series, windows)."""
    if keep_last is not None:
        r = r.iloc[-(keep_last + WINDOW - 1):]
    params = PARAMS.get(model, {})

    def f(w: np.ndarray) -> float:
        try:
            return make_model(model, **params).fit(w, bar_hours=24.0).forecast(24.0, 0.99).var
        except Exception:  # a failed fit is NaN, as in the fast path
            return np.nan

    t = time.perf_counter()
    out = r.rolling(WINDOW, step=step).apply(f, raw=True)
    secs = time.perf_counter() - t
    out = out.dropna()
    return secs, out, int(out.size)


def run(quick: bool = False) -> list[dict]:
    symbols = ["btc", "eth", "sol"] if quick else bundled_daily_symbols()
    keep_last = 120 if quick else None
    step = 60 if quick else 20
    series = {s: load_daily_log_returns(s) for s in symbols}
    rows = []
    for model in MODELS:
        ours_s = base_s = 0.0
        n_all = n_base = 0
        max_diff = 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ModelFitWarning)
            for s in symbols:
                r = series[s]
                rr = r.iloc[-(keep_last + WINDOW - 1):] if keep_last else r
                t = time.perf_counter()
                ours = rolling_forecasts(rr, model, window=WINDOW, horizon=24.0, level=0.99,
                                         params=PARAMS.get(model, {}), bar_hours=24.0)
                ours_s += time.perf_counter() - t
                n_all += len(ours)
                secs, base, nb = _baseline(r, model, step, keep_last)
                base_s += secs
                n_base += nb
                common = base.index.intersection(ours.index)
                if len(common):
                    d = np.nanmax(np.abs(ours.loc[common, "var"].to_numpy() - base.loc[common].to_numpy()))
                    max_diff = max(max_diff, float(d))
        extrapolated = base_s * n_all / max(n_base, 1)
        how = "vectorised across windows" if model in FAST_MODELS else "loop over windows (MLE per window)"
        rows.append({
            "name": f"rolling {model} VaR/ES, 1y window, daily, {len(symbols)} coins, {n_all} windows",
            "ours_s": round(ours_s, 4),
            "baseline_name": f"pandas rolling(365).apply refit per window, timed on {n_base} windows "
                             f"(every {step}th) and extrapolated x{n_all / max(n_base, 1):.1f}",
            "baseline_s": round(extrapolated, 3),
            "ratio": round(extrapolated / ours_s, 2) if ours_s > 0 else float("inf"),
            "notes": f"ours: {how}; max |VaR ours - baseline| on common windows = {max_diff:.1e}"
                     + ("; 10,000 simulations per window" if model == "mc" else ""),
        })
    return rows


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for row in run(quick=quick):
        print(f"{row['name']}\n  ours {row['ours_s']:.3f}s | baseline {row['baseline_s']:.3f}s "
              f"({row['baseline_name']}) | ratio {row['ratio']:.1f}x\n  {row['notes']}")
