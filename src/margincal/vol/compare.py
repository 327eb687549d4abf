"""Walk-forward comparison of next-day variance forecasts on real data.

Models (all forecast ``RV_{t+1}``, the sum of squared hourly log returns of
UTC day ``t+1``, at the end of day ``t``):

* ``EWMA``: RiskMetrics, lambda 0.94, on daily log returns
  (:func:`margincal.vol.ewma.ewma_variance`, a causal recursion: no refit);
* ``GARCH(1,1)-t``: :class:`~margincal.vol.garch.GarchVolatility` on daily log
  returns, refitted every ``refit_every`` days, filtered with fixed parameters
  in between;
* ``HAR``: :class:`~margincal.vol.har.HARVolatility` on daily RV;
* ``ML``: :class:`~margincal.vol.ml.MLVarianceForecaster` (log objective).

Walk-forward, strictly without look-ahead: at each refit origin ``t0`` a model
sees data up to the end of ``t0`` only (training pairs ``(X_s, RV_{s+1})``
with ``s + 1 <= t0``), then forecasts the targets ``t0+1 .. t0+N`` from origins
``t0 .. t0+N-1`` using data up to each origin. The window is expanding (all
data since the first day) or rolling (the last ``window`` days).

Losses per target day: QLIKE ``RV/F - ln(RV/F) - 1`` and squared error
``(RV - F)^2``, both robust to noise in the RV proxy (Patton, 2011).
:func:`diebold_mariano` tests equal expected loss with a Newey-West (Bartlett)
long-run variance and the Harvey-Leybourne-Newbold (1997) small-sample
correction (Student-t reference with ``T - 1`` degrees of freedom).

Reproduce the table of ``docs/vol_forecasting.md``::

    python -m margincal.vol.compare --start 2021-01-01 --refit-every 30
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from margincal import datasets
from margincal.errors import ConfigError, DataError
from margincal.vol.ewma import ewma_variance
from margincal.vol.garch import GarchVolatility
from margincal.vol.har import HARVolatility
from margincal.vol.ml import MLVarianceForecaster, build_features, daily_panel, next_day_target

CLASSICAL = ("EWMA", "GARCH(1,1)-t", "HAR")
ALL_MODELS = ("EWMA", "GARCH(1,1)-t", "HAR", "ML")


# --------------------------------------------------------------------------- losses and DM test
def qlike(rv: ArrayLike, forecast: ArrayLike) -> np.ndarray:
    """QLIKE loss ``RV/F - ln(RV/F) - 1`` (>= 0, zero iff F = RV); needs RV > 0 and F > 0."""
    y = np.asarray(rv, dtype=float)
    f = np.asarray(forecast, dtype=float)
    if np.any(f <= 0) or np.any(y <= 0):
        raise DataError("qlike needs strictly positive realized variances and forecasts")
    x = y / f
    return x - np.log(x) - 1.0


def squared_error(rv: ArrayLike, forecast: ArrayLike) -> np.ndarray:
    """Squared error ``(RV - F)^2``."""
    return (np.asarray(rv, dtype=float) - np.asarray(forecast, dtype=float)) ** 2


@dataclass(frozen=True)
class DMResult:
    """Diebold-Mariano test of equal expected loss, ``d_t = loss_a_t - loss_b_t``.

    ``stat > 0`` means model a has the larger loss (b is better). ``pvalue`` is two-sided.
    """

    stat: float
    pvalue: float
    mean_diff: float
    lags: int
    n: int
    h: int
    hln: bool


def newey_west_lags(n: int) -> int:
    """Automatic Newey-West truncation ``floor(4 (n/100)^(2/9))``."""
    return int(math.floor(4.0 * (n / 100.0) ** (2.0 / 9.0)))


def diebold_mariano(
    loss_a: ArrayLike,
    loss_b: ArrayLike,
    *,
    h: int = 1,
    lags: int | str | None = None,
    hln: bool = True,
) -> DMResult:
    """Diebold-Mariano (1995) test with the Harvey-Leybourne-Newbold (1997) correction.

    ``d_t = loss_a_t - loss_b_t`` (pairs with a non-finite value are dropped),
    ``d_bar`` its mean, ``g_k = (1/T) sum_{t>=k} (d_t - d_bar)(d_{t-k} - d_bar)``
    its autocovariances and ``V = g_0 + 2 sum_{k=1}^{L} (1 - k/(L+1)) g_k`` the
    Newey-West long-run variance. ``DM = d_bar / sqrt(V / T)``.

    ``lags``: ``None`` uses ``h - 1`` (Diebold-Mariano's truncation for an
    ``h``-step forecast), ``"auto"`` uses :func:`newey_west_lags`, an int is
    used as given. With ``hln`` the statistic is multiplied by
    ``sqrt((T + 1 - 2h + h(h-1)/T) / T)`` and compared with Student-t(T-1);
    otherwise with the standard normal.
    """
    a = np.asarray(loss_a, dtype=float).ravel()
    b = np.asarray(loss_b, dtype=float).ravel()
    if a.size != b.size:
        raise DataError(f"loss_a has {a.size} values and loss_b {b.size}; they must be aligned")
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    T = d.size
    h = int(h)
    if h < 1:
        raise ConfigError(f"h is {h}; the forecast horizon must be >= 1")
    if T < 3:
        raise DataError(f"only {T} finite loss pairs; the DM test needs at least 3")
    if lags is None:
        L = h - 1
    elif lags == "auto":
        L = newey_west_lags(T)
    else:
        L = int(lags)
    if not 0 <= L < T:
        raise ConfigError(f"lags is {lags!r} (= {L}); it must be in [0, {T - 1}]")
    dbar = float(d.mean())
    e = d - dbar
    v = float(e @ e) / T
    for k in range(1, L + 1):  # L is small (a handful of lags)
        v += 2.0 * (1.0 - k / (L + 1.0)) * float(e[k:] @ e[:-k]) / T
    if v <= 0:  # Bartlett weights keep V >= 0; V == 0 only when d is constant
        raise DataError(f"the loss differential is constant ({dbar:g}) over {T} pairs; the DM statistic is undefined")
    stat = dbar / math.sqrt(v / T)
    if hln:
        stat *= math.sqrt((T + 1.0 - 2.0 * h + h * (h - 1.0) / T) / T)
        p = float(2.0 * stats.t.sf(abs(stat), df=T - 1))
    else:
        p = float(2.0 * stats.norm.sf(abs(stat)))
    return DMResult(stat=float(stat), pvalue=p, mean_diff=dbar, lags=L, n=T, h=h, hln=hln)


# --------------------------------------------------------------------------- data
def load_asset_panel(asset: str, data_dir: str | Path | None = None) -> pd.DataFrame:
    """Daily panel of a bundled asset (``"BTC"`` or ``"ETH"``): hourly spot -> RV, OHLC, volume; + OI, funding.

    Files (:mod:`margincal.datasets`, or ``data_dir``): ``<asset>usdt_1h.csv.gz`` (Binance spot hourly),
    ``<asset>usdt_funding.csv`` (Binance USD-M funding) when present, and
    ``btc_open_interest_daily.csv`` for BTC (aggregate BTC futures OI, source
    not stated, indicative only).
    """
    a = asset.upper()
    hourly = datasets.load_hourly(a, "spot", data_dir)
    hourly.index.name = "timestamp"
    funding = oi = None
    if a in datasets.PERPETUAL_SYMBOLS:
        funding = datasets.load_funding(a, data_dir).astype(float).rename(None)
        funding.index.name = None
    if a == "BTC":
        oi = datasets.load_open_interest(a, data_dir).astype(float).rename(None)
        oi.index.name = None
    return daily_panel(hourly, open_interest=oi, funding=funding)


# --------------------------------------------------------------------------- walk-forward
def _window_start(pos: int, window: int | str) -> int:
    if window == "expanding":
        return 0
    return max(0, pos - int(window) + 1)


def walk_forward(
    panel: pd.DataFrame,
    *,
    start: str | pd.Timestamp,
    end: str | pd.Timestamp | None = None,
    refit_every: int = 30,
    window: int | str = "expanding",
    models: Sequence[str] = ALL_MODELS,
    ewma_lambda: float = 0.94,
    ml_params: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Out-of-sample next-day variance forecasts, one row per target day in ``[start, end]``.

    Returns a DataFrame indexed by target day with ``rv`` (realized) and one
    column per model. ``panel`` comes from :func:`daily_panel` /
    :func:`load_asset_panel` (consecutive UTC days).
    """
    models = tuple(models)
    unknown = set(models) - set(ALL_MODELS)
    if unknown:
        raise ConfigError(f"models {sorted(unknown)} unknown; choose from {ALL_MODELS}")
    if int(refit_every) < 1:
        raise ConfigError(f"refit_every is {refit_every}; it must be >= 1 day")
    if window != "expanding" and (isinstance(window, str) or int(window) < 250):
        raise ConfigError(f"window is {window!r}; it must be 'expanding' or a number of days >= 250")
    days = panel.index
    tz = days.tz
    start_ts = pd.Timestamp(start)
    start_ts = start_ts.tz_localize(tz) if start_ts.tz is None else start_ts.tz_convert(tz)
    first_target = int(days.searchsorted(start_ts))
    last_target = len(days) - 1
    if end is not None:
        end_ts = pd.Timestamp(end)
        end_ts = end_ts.tz_localize(tz) if end_ts.tz is None else end_ts.tz_convert(tz)
        last_target = int(days.searchsorted(end_ts, side="right")) - 1
    if first_target < 300 or first_target > last_target:
        raise DataError(
            f"start {start_ts.date()} leaves {first_target} training days before it (need >= 300) "
            f"or no target day before the end of the data ({days[-1].date()})"
        )
    rv = panel["rv"].to_numpy(float)
    ret = panel["ret"].to_numpy(float)  # ret[0] is NaN
    out = pd.DataFrame({"rv": rv[first_target : last_target + 1]}, index=days[first_target : last_target + 1])
    out.index.name = "target_day"

    if "EWMA" in models:
        ev = ewma_variance(ret[1:], ewma_lambda)  # ev[i] forecasts ret[1 + i] from ret[1 .. i]
        out["EWMA"] = ev[first_target - 1 : last_target]

    X = build_features(panel) if "ML" in models else None
    y_next = next_day_target(panel).to_numpy(float)
    origins = list(range(first_target - 1, last_target, int(refit_every)))
    cols = {m: np.full(len(out), np.nan) for m in models if m != "EWMA"}
    n_warn = 0
    for i, t0 in enumerate(origins):
        t_end = min(t0 + int(refit_every) - 1, last_target - 1)  # last origin of this block
        ws = _window_start(t0, window)
        sl = slice(t0 + 1 - first_target, t_end + 2 - first_target)  # target rows in `out`
        if "GARCH(1,1)-t" in cols:
            gs = max(ws, 1)
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                g = GarchVolatility(kind="garch", dist="t").fit(ret[gs : t0 + 1])
                n_warn += len(w)
            fv = g.filter_variance(ret[gs : t_end + 1])  # fv[j] forecasts day gs + j
            cols["GARCH(1,1)-t"][sl] = fv[t0 + 1 - gs : t_end + 2 - gs]
        if "HAR" in cols:
            har = HARVolatility().fit(rv[ws : t0 + 1])
            f = har.predict_one_step(rv[ws : t_end + 1])  # f[j] forecasts day ws + j + 1
            cols["HAR"][sl] = f[t0 - ws : t_end + 1 - ws]
        if "ML" in cols:
            assert X is not None
            tr = slice(ws, t0)  # rows s with target RV_{s+1}, s + 1 <= t0
            ml = MLVarianceForecaster(**(ml_params or {})).fit(X.iloc[tr], y_next[tr])
            cols["ML"][sl] = ml.predict_variance(X.iloc[t0 : t_end + 1])
        if progress is not None:
            progress(i + 1, len(origins))
    for m in models:
        if m != "EWMA":
            out[m] = cols[m]
    out.attrs["garch_warnings"] = n_warn
    return out[["rv", *models]]


def evaluate(forecasts: pd.DataFrame, *, dm_lags: int | str | None = "auto") -> pd.DataFrame:
    """Mean QLIKE and MSE per model, and DM tests of each model against the best classical one.

    The best classical model (lowest mean loss among EWMA, GARCH, HAR present)
    is chosen per loss; its own DM cells are NaN. ``dm_stat > 0`` means the
    model's loss is larger than the best classical model's.
    """
    models = [c for c in forecasts.columns if c != "rv"]
    rv = forecasts["rv"].to_numpy(float)
    losses = {
        "qlike": {m: qlike(rv, forecasts[m].to_numpy(float)) for m in models},
        "mse": {m: squared_error(rv, forecasts[m].to_numpy(float)) for m in models},
    }
    rows = []
    best = {}
    for lname, L in losses.items():
        classical = [m for m in models if m in CLASSICAL]
        best[lname] = min(classical, key=lambda m: float(np.mean(L[m]))) if classical else None
    for m in models:
        row: dict[str, object] = {"model": m, "n": int(len(rv))}
        for lname, L in losses.items():
            row[lname] = float(np.mean(L[m]))
            b = best[lname]
            if b is None or m == b:
                row[f"dm_{lname}_vs"] = b
                row[f"dm_{lname}_stat"] = math.nan
                row[f"dm_{lname}_p"] = math.nan
            else:
                r = diebold_mariano(L[m], L[b], h=1, lags=dm_lags)
                row[f"dm_{lname}_vs"] = b
                row[f"dm_{lname}_stat"] = r.stat
                row[f"dm_{lname}_p"] = r.pvalue
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ComparisonResult:
    """Table and forecasts of a walk-forward comparison, with what produced them."""

    table: pd.DataFrame
    forecasts: dict[str, pd.DataFrame]
    params: dict[str, object]
    created_at: str
    runtime_s: float
    notes: tuple[str, ...] = field(default_factory=tuple)


def run_comparison(
    assets: Sequence[str] = ("BTC", "ETH"),
    *,
    start: str = "2021-01-01",
    end: str | None = None,
    refit_every: int = 30,
    window: int | str = "expanding",
    models: Sequence[str] = ALL_MODELS,
    data_dir: str | Path | None = None,
    dm_lags: int | str | None = "auto",
    ml_params: dict | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ComparisonResult:
    """Walk-forward comparison on the bundled real data (see the module docstring)."""
    t_start = time.perf_counter()
    tables, fcs, notes = [], {}, []
    for a in assets:
        panel = load_asset_panel(a, data_dir)
        cb = (lambda i, n, _a=a: progress(_a, i, n)) if progress is not None else None
        f = walk_forward(panel, start=start, end=end, refit_every=refit_every, window=window, models=models,
                         ml_params=ml_params, progress=cb)
        if f.attrs.get("garch_warnings"):
            notes.append(f"{a}: {f.attrs['garch_warnings']} warning(s) from GARCH refits")
        t = evaluate(f, dm_lags=dm_lags)
        t.insert(0, "asset", a.upper())
        t.insert(2, "first_day", f.index[0].date().isoformat())
        t.insert(3, "last_day", f.index[-1].date().isoformat())
        tables.append(t)
        fcs[a.upper()] = f
    params: dict[str, object] = {
        "assets": list(assets), "start": start, "end": end, "refit_every": refit_every, "window": window,
        "models": list(models), "dm_lags": dm_lags, "ewma_lambda": 0.94, "garch": "GARCH(1,1), Student-t, constant mean, arch",
        "har_lags": [1, 5, 22], "ml": "HistGradientBoostingRegressor (MLVarianceForecaster)", "ml_params": ml_params or {},
    }
    return ComparisonResult(
        table=pd.concat(tables, ignore_index=True),
        forecasts=fcs,
        params=params,
        created_at=pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        runtime_s=time.perf_counter() - t_start,
        notes=tuple(notes),
    )


def to_markdown(table: pd.DataFrame) -> str:
    """The comparison table as GitHub markdown (MSE in units of 1e-7, i.e. (daily variance)^2 x 1e7)."""
    head = "| asset | model | QLIKE | DM vs best (QLIKE) | p | MSE x1e7 | DM vs best (MSE) | p |"
    sep = "|---|---|---:|---:|---:|---:|---:|---:|"
    lines = [head, sep]

    def cell(v: float, fmt: str) -> str:
        return "ref." if not np.isfinite(v) else format(v, fmt)

    for _, r in table.iterrows():
        lines.append(
            f"| {r['asset']} | {r['model']} | {r['qlike']:.4f} | {cell(r['dm_qlike_stat'], '+.2f')} | "
            f"{cell(r['dm_qlike_p'], '.3f')} | {r['mse'] * 1e7:.3f} | {cell(r['dm_mse_stat'], '+.2f')} | "
            f"{cell(r['dm_mse_p'], '.3f')} |"
        )
    return "\n".join(lines)
