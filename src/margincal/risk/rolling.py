"""Rolling-window VaR/ES forecasts: refit a model on every window of ``window`` bars.

:func:`rolling_forecasts` returns, for each window end ``t``, the forecast a
model fitted on bars ``t-window+1 .. t`` gives for the horizon after ``t``. It is
exactly ``make_model(name, **params).fit(window_returns).forecast(horizon, level)``
for every window; for the models where that can be vectorised across windows it
is computed without a Python loop:

* ``hs``: all windows at once as a 2-D sliding view, sorted along each row; VaR
  and ES come from the sorted tail (the loss map ``1 - exp(x)`` / ``exp(x) - 1`` is
  monotone, so sorting returns sorts losses);
* ``fhs`` and ``normal``: the EWMA recursion of every window (each re-seeded on
  its own first ``seed`` returns, as a refit does) runs as one
  :func:`scipy.signal.lfilter` call along the rows of the 2-D view;
* ``cf``: the same filter, then skewness/kurtosis along the rows.

Other models (``t``, ``evt``, ``mc``) and non-default options (``direct``
scaling, ``fit_lambda``, a residual ``window``, one ``side``) loop over windows
with the model itself: a maximum-likelihood fit per window has no shortcut.
:func:`rolling_forecasts_reference` always loops and is tested to agree.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal, stats

from margincal.errors import CalibrationError, DataError
from margincal.risk.base import ModelFitWarning, horizon_hours, infer_bar_hours
from margincal.risk.parametric import (
    cornish_fisher_domain,
    cornish_fisher_is_monotone,
    cornish_fisher_var_es_arrays,
)

FAST_MODELS = ("hs", "fhs", "normal", "cf")
_FAST_PARAMS = {
    "hs": {"scaling": "sqrt", "side": "both", "window": None},
    "fhs": {"lam": None, "seed": None, "scaling": "sqrt", "side": "both", "fit_lambda": False, "window": None},
    "normal": {"lam": None, "seed": None, "scaling": "sqrt", "side": "both", "fit_lambda": False,
               "window": None, "sigma": "ewma"},
    "cf": {"lam": None, "seed": None, "scaling": "sqrt", "side": "both", "fit_lambda": False,
           "window": None, "sigma": "ewma"},
}


def _series(returns: object) -> tuple[np.ndarray, pd.Index]:
    if isinstance(returns, pd.DataFrame):
        if returns.shape[1] != 1:
            raise DataError("rolling_forecasts needs one column of returns")
        returns = returns.iloc[:, 0]
    if isinstance(returns, pd.Series):
        idx = returns.index
        r = returns.to_numpy(dtype=float)
    else:
        r = np.asarray(returns, dtype=float).ravel()
        idx = pd.RangeIndex(r.size)
    if not np.all(np.isfinite(r)):
        i = int(np.flatnonzero(~np.isfinite(r))[0])
        raise DataError(f"returns[{i}] is {r[i]}; returns must be finite")
    return r, idx


def _fast_ok(model: str, params: dict[str, Any]) -> bool:
    if model not in FAST_MODELS:
        return False
    allowed = _FAST_PARAMS[model]
    for k, v in params.items():
        if k not in allowed:
            return False
        if allowed[k] is not None and v != allowed[k]:
            return False
    return True


def _tail_ranks(n: int, level: float) -> tuple[int, int, float]:
    """(m, k, used): VaR is the m-th largest of n; ES takes k full losses (as measures.py does)."""
    j = int(np.quantile(np.arange(n), level, method="inverted_cdf"))  # 0-based ascending index of the VaR
    cw = np.cumsum(np.full(n, 1.0 / n))
    tail = 1.0 - level
    k = int(np.searchsorted(cw, tail + 1e-12, side="right"))
    used = float(cw[k - 1]) if k > 0 else 0.0
    return n - j, k, used


def _var_es_from_desc(top: np.ndarray, n: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """VaR/ES per row from the largest losses of each row sorted descending (Acerbi-Tasche, equal weights)."""
    m, k, used = _tail_ranks(n, level)
    tail = 1.0 - level
    var = top[:, m - 1]
    total = top[:, :k].sum(axis=1) / n if k > 0 else np.zeros(top.shape[0])
    if k < n and used < tail:
        total = total + (tail - used) * top[:, k]
    return var, total / tail


def _empirical_rows(scen: np.ndarray, level: float) -> dict[str, np.ndarray]:
    """VaR/ES of both sides for each row of horizon log-return scenarios; keeps the side with larger ES."""
    n = scen.shape[1]
    m, k, _ = _tail_ranks(n, level)
    need = min(n, max(m, k + 1))
    xs = np.sort(scen, axis=1)
    long_top = -np.expm1(xs[:, :need])  # smallest returns -> largest long losses, descending
    short_top = np.expm1(xs[:, ::-1][:, :need])
    vl, el = _var_es_from_desc(long_top, n, level)
    vs, es_ = _var_es_from_desc(short_top, n, level)
    short = es_ > el  # empirical_side keeps the first (long) on ties
    return {"var": np.where(short, vs, vl), "es": np.maximum(np.where(short, es_, el), np.where(short, vs, vl)),
            "side": np.where(short, "short", "long")}


def _ewma_windows(w: np.ndarray, lam: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """EWMA of each row re-seeded on its first ``seed`` squares: (residuals, sigma_next)."""
    k = max(1, min(seed, w.shape[1]))
    s0 = np.mean(w[:, :k] ** 2, axis=1)
    bad = s0 <= 0
    if bad.any():
        alt = np.var(w[bad], axis=1)
        s0[bad] = np.where(alt > 0, alt, 1e-12)
    y, _ = signal.lfilter([1.0 - lam], [1.0, -lam], w * w, axis=1, zi=(lam * s0)[:, None])
    sig = np.sqrt(np.maximum(np.concatenate([s0[:, None], y], axis=1), 1e-300))
    z = w[:, seed:] / sig[:, :-1][:, seed:]
    return z, sig[:, -1]


def rolling_forecasts(returns: object, model: str = "fhs", *, window: int = 365, horizon: object = 24.0,
                      level: float = 0.99, params: dict[str, Any] | None = None, bar_hours: float | None = None,
                      step: int = 1, fast: bool = True) -> pd.DataFrame:
    """VaR/ES of ``model`` refitted on every rolling window (module doc).

    Returns a DataFrame indexed by the last bar of each window with columns
    ``var``, ``es``, ``side`` (``step`` > 1 keeps every ``step``-th window, counted
    back from the last). ``fast=False`` forces the per-window loop.
    """
    from margincal.risk.models import MODELS

    if model not in MODELS:
        raise CalibrationError(f"unknown model {model!r}; choose one of {', '.join(sorted(MODELS))}")
    params = dict(params or {})
    r, idx = _series(returns)
    if bar_hours is None:
        bar_hours = infer_bar_hours(idx) if isinstance(idx, pd.DatetimeIndex) else 24.0
    if window < 20 or window > r.size:
        raise DataError(f"window is {window}; it must be in 20..{r.size} (the number of returns)")
    hh = horizon_hours(horizon)
    h = hh / float(bar_hours)
    ends = np.arange(window - 1, r.size)[::-1][::step][::-1]
    if not (fast and _fast_ok(model, params)) or h < 1.0 - 1e-12:
        return rolling_forecasts_reference(r, model, window=window, horizon=hh, level=level, params=params,
                                           bar_hours=float(bar_hours), ends=ends, index=idx)
    w = sliding_window_view(r, window)[ends - window + 1]
    sq = math.sqrt(h)
    lam = float(params.get("lam", 0.94))
    seed = int(params.get("seed", 30))
    if model != "hs" and window <= seed + 10:
        raise CalibrationError(f"{model}: need more than {seed + 10} returns per window, got {window}")
    if model == "hs":
        out = _empirical_rows(w * sq, level)
    else:
        z, s_next = _ewma_windows(w, lam, seed)
        if model == "fhs":
            out = _empirical_rows((s_next * sq)[:, None] * z, level)
        else:
            if model == "normal":
                zq = stats.norm.ppf(level)
                v_log = s_next * sq * zq
                e_log = s_next * sq * stats.norm.pdf(zq) / (1.0 - level)
                per = {"long": (v_log, e_log), "short": (v_log, e_log)}
            else:
                s_raw = stats.skew(z, axis=1)
                k_raw = stats.kurtosis(z, axis=1)
                sk, ku = s_raw.copy(), k_raw.copy()
                bad = np.flatnonzero([not cornish_fisher_is_monotone(a, b) for a, b in zip(s_raw, k_raw, strict=True)])
                for i in bad:
                    sk[i], ku[i], _ = cornish_fisher_domain(float(s_raw[i]), float(k_raw[i]))
                if bad.size:
                    warnings.warn(f"cf: {bad.size} of {s_raw.size} windows needed the monotonicity guard",
                                  ModelFitWarning, stacklevel=2)
                sc = s_next * sq
                per = {}
                for side, sgn in (("long", -1.0), ("short", 1.0)):
                    q, e = cornish_fisher_var_es_arrays(level, sgn * sk, ku)
                    per[side] = (sc * q, sc * e)
            vl, el = -np.expm1(-per["long"][0]), -np.expm1(-per["long"][1])
            vs, es_ = np.expm1(per["short"][0]), np.expm1(per["short"][1])
            short = es_ > el
            var = np.where(short, vs, vl)
            out = {"var": var, "es": np.maximum(np.where(short, es_, el), var),
                   "side": np.where(short, "short", "long")}
    return pd.DataFrame(out, index=idx[ends])


def rolling_forecasts_reference(returns: object, model: str = "fhs", *, window: int = 365,
                                horizon: object = 24.0, level: float = 0.99, params: dict[str, Any] | None = None,
                                bar_hours: float | None = None, ends: np.ndarray | None = None,
                                index: pd.Index | None = None) -> pd.DataFrame:
    """Per-window loop over ``make_model(...).fit(...).forecast(...)`` (the definition; also the slow path).

    Windows whose fit fails get NaN (counted in one :class:`ModelFitWarning`).
    """
    from margincal.risk.models import make_model

    r, idx = _series(returns)
    if index is not None:
        idx = index
    if bar_hours is None:
        bar_hours = infer_bar_hours(idx) if isinstance(idx, pd.DatetimeIndex) else 24.0
    if ends is None:
        ends = np.arange(window - 1, r.size)
    params = dict(params or {})
    var = np.full(ends.size, np.nan)
    es = np.full(ends.size, np.nan)
    side = np.empty(ends.size, dtype=object)
    failed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelFitWarning)
        for i, e in enumerate(ends):
            try:
                f = make_model(model, **params).fit(r[e - window + 1:e + 1], bar_hours=bar_hours).forecast(
                    horizon, level)
            except CalibrationError:
                failed += 1
                continue
            var[i], es[i], side[i] = f.var, f.es, f.side
    if failed:
        warnings.warn(f"{model}: {failed} of {ends.size} windows could not be fitted (NaN)", ModelFitWarning,
                      stacklevel=2)
    return pd.DataFrame({"var": var, "es": es, "side": side}, index=idx[ends])
