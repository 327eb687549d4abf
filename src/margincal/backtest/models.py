"""Margin-path models: a whole causal margin history in one pass.

A *path model* turns a series of one-bar log returns ``r_0 .. r_{n-1}`` into
two arrays ``var_long[t]``, ``var_short[t]``: the per-side VaR (fraction of
notional, positive = loss) for the horizon that starts at bar ``t``, computed
from ``r_0 .. r_{t-1}`` only (data strictly before ``t``). Elements where the
model has too little history are NaN.

Fast models (no per-day refit where a recursive update exists):

``fhs``
    Filtered historical simulation, the same estimator as
    :class:`margincal.risk.historical.FilteredHistoricalSimulation`: EWMA
    volatility by the recursive filter (:func:`margincal.vol.ewma.ewma_variance`,
    one pass, O(n)); the empirical quantile of the standardised residuals over
    an expanding (or rolling ``window``) set is kept in a **sorted window**
    (binary insertion, and deletion for a rolling window), so each day costs one
    insertion and two index look-ups: the tail quantile is exact every day (no
    refit frequency to tune).
``hs``
    Historical simulation on the raw returns, same sorted window.
``evt``
    Conditional EVT (generalised Pareto tail of the residuals above their 90%
    quantile), the tail refitted every 90 days, the volatility every bar.
``normal``, ``t``, ``cf``
    Parametric on EWMA-standardised residuals (``sigma="ewma"``, default) or on
    the rolling sample volatility (``sigma="sample"``): zero location, scale the
    volatility forecast, shape (Student-t degrees of freedom from the excess
    kurtosis ``nu = 4 + 6/K``; Cornish-Fisher skew and excess kurtosis) from
    rolling/expanding moments of the residuals by **cumulative sums** of
    ``z, z^2, z^3, z^4``.

Horizon scaling is square-root-of-time on the one-bar quantile (the
``scaling="sqrt"`` of :mod:`margincal.risk`); losses are on the simple return:
long ``1 - exp(R)``, short ``exp(R) - 1``.

``lam`` is the EWMA decay **per day** (RiskMetrics 0.94); on bars of
``bar_hours`` the per-bar decay is ``lam ** (bar_hours / 24)`` (the convention
of :func:`margincal.pipeline.bar_lambda`).

Pluggable models: :class:`RefitModel` runs any model of
:func:`margincal.risk.models.make_model` (``normal``, ``t``, ``cf``, ``evt``,
``mc`` ... as they exist) by refitting it every ``refit_every`` bars on the data
before each refit date and holding its margin until the next refit. With
``refit_every=1`` it is the naive refit-every-day reference.
"""

from __future__ import annotations

import bisect
import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from margincal.errors import CalibrationError, ConfigError, DataError
from margincal.vol.ewma import ewma_variance

SIGMAS = ("ewma", "sample")


def per_bar_lambda(lam_day: float, bar_hours: float) -> float:
    """EWMA decay per bar from the decay per day: ``lam ** (bar_hours / 24)``."""
    if not 0.0 < lam_day < 1.0:
        raise ConfigError(f"lam is {lam_day}; the EWMA decay per day must be in (0, 1)")
    return float(lam_day ** (bar_hours / 24.0))


def inverted_cdf_index(n: object, q: float) -> np.ndarray:
    """0-based position of numpy's ``method="inverted_cdf"`` quantile ``q`` in a sorted sample of size ``n``.

    The same floating-point steps as numpy (``v = n q - 1``; the floor of ``v``
    when ``v`` is whole, else the next integer; clipped at 0), so a value read
    at this position equals ``np.quantile(x, q, method="inverted_cdf")``.
    """
    v = np.asarray(n, dtype=float) * float(q) - 1.0
    prev = np.floor(v)
    idx = np.where((v - prev) == 0, prev, prev + 1.0)
    idx = np.maximum(idx, 0.0)
    return idx.astype(np.intp)


def sorted_window_quantiles(values: np.ndarray, *, first: int, window: int | None, t_min: int,
                            q: float, refit_every: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper ``inverted_cdf`` order statistics of ``values[first:t]`` (or its last ``window``), per ``t``.

    Returns ``(lo, hi)`` of length ``len(values)``: for ``t >= t_min``,
    ``hi[t]`` is the element at position ``idx`` of the ascending sample and
    ``lo[t]`` the element at position ``m - 1 - idx`` (``m`` = sample size,
    ``idx`` = :func:`inverted_cdf_index`), i.e. what the short and long side's
    empirical VaR read. A sorted list is maintained incrementally: one binary
    insertion (and one deletion for a rolling window) per step. With
    ``refit_every = k > 1`` the order statistics are read only every ``k``-th
    step from ``t_min`` and held in between (the "refit every k bars" variant).
    """
    n = values.size
    lo = np.full(n, np.nan)
    hi = np.full(n, np.nan)
    if window is not None and window < 1:
        raise ConfigError(f"window is {window}; it must be >= 1 or None (expanding)")
    if int(refit_every) != refit_every or refit_every < 1:
        raise ConfigError(f"refit_every is {refit_every}; it must be a whole number >= 1")
    last_hi = last_lo = np.nan
    idx_table = inverted_cdf_index(np.arange(n + 1), q)
    vals = values.tolist()
    buf: list[float] = []
    insort = bisect.insort
    bl = bisect.bisect_left
    for t in range(first + 1, n):
        insort(buf, vals[t - 1])
        if window is not None and len(buf) > window:
            del buf[bl(buf, vals[t - 1 - window])]
        if t >= t_min:
            if (t - t_min) % refit_every == 0:
                m = len(buf)
                i = int(idx_table[m])
                last_hi, last_lo = buf[i], buf[m - 1 - i]
            hi[t] = last_hi
            lo[t] = last_lo
    return lo, hi


def _rolling_sums(x: np.ndarray, first: int, window: int | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Count and sums of ``x^1..x^4`` over ``x[first:t]`` (or its last ``window``) for each ``t`` (cumsums)."""
    n = x.size
    xs = np.where(np.arange(n) >= first, x, 0.0)
    cs = [np.concatenate([[0.0], np.cumsum(xs**k)]) for k in (1, 2, 3, 4)]  # cs[k-1][t] = sum_{i<t}
    t = np.arange(n)
    start = np.full(n, first) if window is None else np.maximum(first, t - window)
    start = np.minimum(start, t)
    cnt = (t - start).astype(float)
    sums = [c[t] - c[start] for c in cs]
    return cnt, sums


def _central_moments(cnt: np.ndarray, sums: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(variance ddof=0, skewness, excess kurtosis) from power sums; NaN where cnt < 2."""
    with np.errstate(invalid="ignore", divide="ignore"):
        m1 = sums[0] / cnt
        e2, e3, e4 = sums[1] / cnt, sums[2] / cnt, sums[3] / cnt
        m2 = e2 - m1**2
        m3 = e3 - 3 * m1 * e2 + 2 * m1**3
        m4 = e4 - 4 * m1 * e3 + 6 * m1**2 * e2 - 3 * m1**4
        m2 = np.maximum(m2, 0.0)
        skew = np.where(m2 > 0, m3 / m2**1.5, 0.0)
        kurt = np.where(m2 > 0, m4 / m2**2 - 3.0, 0.0)
    bad = cnt < 2
    return np.where(bad, np.nan, m2), np.where(bad, np.nan, skew), np.where(bad, np.nan, kurt)


class PathModel:
    """Base of the fast path models. ``var_paths`` is the one method to implement."""

    name = "base"

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.endswith("_") and not k.startswith("_")}

    #: the ``refit_every`` that needs no suffix in the label (``fhs`` refits every bar by default)
    default_refit: int | None = None

    @property
    def label(self) -> str:
        """Name, with ``@k`` when the model refits every ``k`` bars instead of its default."""
        refit = getattr(self, "refit_every", None)
        return self.name if refit == self.default_refit else f"{self.name}@{refit}"

    def var_paths(self, returns: np.ndarray, *, side_level: float, horizon_bars: float,
                  bar_hours: float, index: pd.DatetimeIndex | None = None) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def _check_returns(r: object) -> np.ndarray:
    a = np.asarray(r, dtype=float).ravel()
    if not np.all(np.isfinite(a)):
        i = int(np.flatnonzero(~np.isfinite(a))[0])
        raise DataError(f"returns[{i}] is {a[i]}; returns must be finite")
    return a


def _ewma_sigma(r: np.ndarray, lam_day: float, seed: int, bar_hours: float) -> np.ndarray:
    """One-step-ahead EWMA sigma, element t from r[:t] (length n + 1), floored like the risk module."""
    v = ewma_variance(r, per_bar_lambda(lam_day, bar_hours), seed)
    return np.sqrt(np.maximum(v, 1e-300))


class FHSPath(PathModel):
    """Filtered historical simulation with EWMA volatility; exact sorted-window quantile every bar."""

    name = "fhs"
    default_refit = 1

    def __init__(self, *, lam: float = 0.94, seed: int = 30, window: int | None = None,
                 refit_every: int = 1) -> None:
        self.lam = lam
        self.seed = seed
        self.window = window
        self.refit_every = refit_every


    def var_paths(self, returns: np.ndarray, *, side_level: float, horizon_bars: float,
                  bar_hours: float, index: pd.DatetimeIndex | None = None) -> tuple[np.ndarray, np.ndarray]:
        r = _check_returns(returns)
        n = r.size
        sig = _ewma_sigma(r, self.lam, self.seed, bar_hours)
        z = np.zeros(n)
        z[self.seed:] = r[self.seed:] / sig[:-1][self.seed:]
        # the risk model needs more than seed + 10 returns (and at least 20)
        t_min = max(self.seed + 11, 20)
        lo, hi = sorted_window_quantiles(z, first=self.seed, window=self.window, t_min=t_min, q=side_level,
                                         refit_every=self.refit_every)
        s = sig[:n]
        sq = math.sqrt(horizon_bars)
        return -np.expm1((s * lo) * sq), np.expm1((s * hi) * sq)


class HSPath(PathModel):
    """Historical simulation on the last ``window`` returns (expanding when None); sorted window."""

    name = "hs"
    default_refit = 1

    def __init__(self, *, window: int | None = None, refit_every: int = 1) -> None:
        self.window = window
        self.refit_every = refit_every


    def var_paths(self, returns: np.ndarray, *, side_level: float, horizon_bars: float,
                  bar_hours: float, index: pd.DatetimeIndex | None = None) -> tuple[np.ndarray, np.ndarray]:
        r = _check_returns(returns)
        lo, hi = sorted_window_quantiles(r, first=0, window=self.window, t_min=20, q=side_level,
                                         refit_every=self.refit_every)
        sq = math.sqrt(horizon_bars)
        return -np.expm1(lo * sq), np.expm1(hi * sq)


class _ParametricPath(PathModel):
    """Zero-location parametric quantile on a volatility scale, shape from the residuals.

    The same estimator as :mod:`margincal.risk.parametric` (``sigma="ewma"``:
    EWMA forecast, residuals ``r_t / sigma_t``; ``sigma="sample"``: zero-mean
    RMS of all returns so far, residuals ``r / s``; ``window`` keeps the last
    residuals for the shape), computed for every bar at once.
    """

    def __init__(self, *, sigma: str = "ewma", lam: float = 0.94, seed: int = 30,
                 window: int | None = None) -> None:
        self.sigma = sigma
        self.lam = lam
        self.seed = seed
        self.window = window

    def _scale_and_residuals(self, r: np.ndarray, bar_hours: float) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(scale[t] from r[:t], residuals z, first residual index, first valid t)."""
        n = r.size
        if self.sigma not in SIGMAS:
            raise ConfigError(f"{self.name}: sigma is {self.sigma!r}; use 'ewma' or 'sample'")
        if self.sigma == "ewma":
            sig = _ewma_sigma(r, self.lam, self.seed, bar_hours)
            z = np.zeros(n)
            z[self.seed:] = r[self.seed:] / sig[:-1][self.seed:]
            return sig[:n], z, self.seed, max(self.seed + 11, 20)
        c2 = np.concatenate([[0.0], np.cumsum(r * r)])[:n]
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.sqrt(c2 / np.arange(n))
        return s, r, 0, 20

    def _log_var(self, z: np.ndarray, first: int, t_min: int, scale: np.ndarray, scale_h: np.ndarray,
                 q: float, bar_hours: float) -> tuple[np.ndarray, np.ndarray]:
        """Log-return VaR of the long (``-R``) and short (``R``) side at ``q`` for every bar.

        ``scale`` is the one-bar scale, ``scale_h`` the horizon scale (``scale * sqrt(h)``).
        """
        raise NotImplementedError

    def var_paths(self, returns: np.ndarray, *, side_level: float, horizon_bars: float,
                  bar_hours: float, index: pd.DatetimeIndex | None = None) -> tuple[np.ndarray, np.ndarray]:
        r = _check_returns(returns)
        n = r.size
        scale, z, first, t_min = self._scale_and_residuals(r, bar_hours)
        valid = np.arange(n) >= t_min
        scale_h = np.where(valid, scale, np.nan) * math.sqrt(horizon_bars)
        lv_long, lv_short = self._log_var(z, first, t_min, scale, scale_h, side_level, bar_hours)
        vl = -np.expm1(-lv_long)
        vs = np.expm1(lv_short)
        return np.where(valid, vl, np.nan), np.where(valid, vs, np.nan)


class NormalPath(_ParametricPath):
    """Normal quantile on the volatility forecast (RiskMetrics when ``sigma='ewma'``)."""

    name = "normal"

    def _log_var(self, z: np.ndarray, first: int, t_min: int, scale: np.ndarray, scale_h: np.ndarray,
                 q: float, bar_hours: float) -> tuple[np.ndarray, np.ndarray]:
        zq = float(stats.norm.ppf(q))
        v = 0.0 + scale_h * zq
        return v, v


def t_dof_from_kurtosis(excess_kurtosis: np.ndarray, nu_max: float = 500.0) -> np.ndarray:
    """Moment-matched Student-t degrees of freedom: ``nu = 4 + 6 / K`` (K = excess kurtosis), capped."""
    k = np.asarray(excess_kurtosis, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = np.where(k > 0, 4.0 + 6.0 / k, nu_max)
    return np.minimum(nu, nu_max)


class StudentTPath(_ParametricPath):
    """Unit-variance Student-t on the volatility forecast.

    ``df_method="mle"`` (default, the estimator of
    :class:`margincal.risk.parametric.StudentTModel`): ``nu`` by
    ``scipy.stats.t.fit(z, floc=0)`` on the residuals, clamped to
    ``[df_min, df_max]``. A likelihood fit has no recursive update, so ``nu`` is
    refitted every ``refit_hours`` (default 2160 h = 90 days) while the
    volatility moves every bar; ``nu`` of an expanding residual set moves
    slowly (docs/validation.md measures the effect of the refit frequency).
    ``refit_every`` (bars) overrides ``refit_hours``.
    ``df_method="moments"``: ``nu = 4 + 6/K`` from the rolling excess kurtosis
    by cumulative sums, every bar. ``df`` fixes ``nu``.
    """

    name = "t"

    def __init__(self, *, df: float | None = None, df_min: float = 2.1, df_max: float = 500.0,
                 df_method: str = "mle", refit_hours: float = 2160.0, refit_every: int | None = None,
                 sigma: str = "ewma", lam: float = 0.94, seed: int = 30, window: int | None = None) -> None:
        super().__init__(sigma=sigma, lam=lam, seed=seed, window=window)
        self.df = df
        self.df_min = df_min
        self.df_max = df_max
        self.df_method = df_method
        self.refit_hours = refit_hours
        self.refit_every = refit_every


    def _nu_path(self, z: np.ndarray, first: int, t_min: int, scale: np.ndarray, bar_hours: float) -> np.ndarray:
        n = z.size
        if self.df is not None:
            if not self.df > 2:
                raise ConfigError(f"t: df is {self.df}; it must be > 2 for a volatility-scaled t")
            return np.full(n, float(self.df))
        if self.df_method == "moments":
            cnt, sums = _rolling_sums(z, first, self.window)
            _, _, kurt = _central_moments(cnt, sums)
            nu = t_dof_from_kurtosis(np.nan_to_num(kurt, nan=0.0), self.df_max)
            return np.clip(nu, self.df_min, self.df_max)
        if self.df_method != "mle":
            raise ConfigError(f"t: df_method is {self.df_method!r}; use 'mle' or 'moments'")
        step = self.refit_every or max(1, int(round(self.refit_hours / bar_hours)))
        nu = np.full(n, np.nan)
        last = np.nan
        for t in range(t_min, n):
            if (t - t_min) % step == 0:
                lo = first if self.window is None else max(first, t - int(self.window))
                x = z[lo:t] if self.sigma == "ewma" else z[lo:t] / scale[t]
                f = float(stats.t.fit(x, floc=0)[0])
                if not np.isfinite(f):
                    raise CalibrationError("t: maximum-likelihood df is not finite")
                last = min(max(f, self.df_min), self.df_max)
            nu[t] = last
        return nu

    def _log_var(self, z: np.ndarray, first: int, t_min: int, scale: np.ndarray, scale_h: np.ndarray,
                 q: float, bar_hours: float) -> tuple[np.ndarray, np.ndarray]:
        nu = self._nu_path(z, first, t_min, scale, bar_hours)
        safe = np.where(np.isfinite(nu), nu, 3.0)
        tq = stats.t.ppf(q, safe)
        v = 0.0 + (scale_h * np.sqrt((safe - 2.0) / safe)) * tq
        v = np.where(np.isfinite(nu), v, np.nan)
        return v, v


def cornish_fisher_z(z: float | np.ndarray, skew: np.ndarray, excess_kurtosis: np.ndarray) -> np.ndarray:
    """Cornish-Fisher quantile ``z + (z^2-1)S/6 + (z^3-3z)K/24 - (2z^3-5z)S^2/36`` (vectorised)."""
    s, k = np.asarray(skew, dtype=float), np.asarray(excess_kurtosis, dtype=float)
    return z + (z * z - 1) * s / 6 + (z**3 - 3 * z) * k / 24 - (2 * z**3 - 5 * z) * s**2 / 36


def _cf_monotone(skew: np.ndarray, exkurt: np.ndarray) -> np.ndarray:
    a = exkurt / 8 - skew * skew / 6
    b = skew / 3
    c = 1 - exkurt / 8 + 5 * skew * skew / 36
    tol = 1e-12
    return np.where(a > tol, b * b - 4 * a * c <= tol, (np.abs(a) <= tol) & (np.abs(b) <= tol) & (c >= -tol))


def cornish_fisher_domain_vec(skew: np.ndarray, exkurt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`margincal.risk.parametric.cornish_fisher_domain` (same steps, element-wise).

    Keeps monotone pairs; else clips the excess kurtosis to ``[0, 8]`` and, if
    still not monotone, shrinks ``|skew|`` by 60 bisection steps.
    """
    s = np.asarray(skew, dtype=float).copy()
    k = np.asarray(exkurt, dtype=float).copy()
    ok = _cf_monotone(s, k)
    kc = np.minimum(np.maximum(k, 0.0), 8.0)
    k = np.where(ok, k, kc)
    ok2 = ok | _cf_monotone(s, k)
    need = ~ok2
    if need.any():
        lo = np.zeros(int(need.sum()))
        hi = np.abs(s[need])
        kk = k[need]
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            m = _cf_monotone(mid, kk)
            lo = np.where(m, mid, lo)
            hi = np.where(m, hi, mid)
        s[need] = np.copysign(lo, s[need])
    return s, k


class CornishFisherPath(_ParametricPath):
    """Cornish-Fisher quantiles with rolling skewness / excess kurtosis of the residuals (cumulative sums).

    Moment estimators as ``scipy.stats.skew`` / ``kurtosis`` (biased), the
    monotonicity guard of :func:`margincal.risk.parametric.cornish_fisher_domain`;
    the long side uses the skewness of ``-R``.
    """

    name = "cf"

    def _log_var(self, z: np.ndarray, first: int, t_min: int, scale: np.ndarray, scale_h: np.ndarray,
                 q: float, bar_hours: float) -> tuple[np.ndarray, np.ndarray]:
        cnt, sums = _rolling_sums(z, first, self.window)
        _, skew, kurt = _central_moments(cnt, sums)
        skew, kurt = np.nan_to_num(skew, nan=0.0), np.nan_to_num(kurt, nan=0.0)
        skew, kurt = cornish_fisher_domain_vec(skew, kurt)
        zq = float(stats.norm.ppf(q))
        return scale_h * cornish_fisher_z(zq, -skew, kurt), scale_h * cornish_fisher_z(zq, skew, kurt)


def gpd_var(level: float, u: float, xi: float, beta: float, n: int, n_u: int) -> float:
    """Peaks-over-threshold VaR ``u + beta/xi ((n/N_u (1-p))^-xi - 1)`` (``-beta ln(.)`` as xi -> 0).

    The VaR half of :func:`margincal.risk.evt.gpd_var_es`, the same arithmetic; finite for any
    ``xi`` (the ES needs ``xi < 1``, a VaR margin does not).
    """
    ratio = n / n_u * (1.0 - level)
    return u - beta * math.log(ratio) if abs(xi) < 1e-9 else u + beta / xi * (ratio ** (-xi) - 1.0)


class EVTPath(_ParametricPath):
    """Conditional EVT (McNeil-Frey) as :class:`margincal.risk.evt.EVTModel`, volatility every bar.

    Per side, a generalised Pareto tail (``scipy.stats.genpareto`` by maximum
    likelihood) above the ``threshold`` quantile of the residual losses is
    refitted every ``refit_hours`` (default 2160 h = 90 days; ``refit_every``
    bars overrides it) and held in between, while the EWMA volatility scales it
    every bar. On refit days it equals the risk model fitted on all data before
    that day. Where the level is not beyond the threshold the empirical residual
    quantile is used, as the risk model does. A fitted shape ``xi >= 1`` (infinite
    ES: the risk model refuses the fit) still has a finite VaR, which is used.
    """

    name = "evt"

    def __init__(self, *, threshold: float = 0.90, refit_hours: float = 2160.0, refit_every: int | None = None,
                 sigma: str = "ewma", lam: float = 0.94, seed: int = 30, window: int | None = None) -> None:
        super().__init__(sigma=sigma, lam=lam, seed=seed, window=window)
        self.threshold = threshold
        self.refit_hours = refit_hours
        self.refit_every = refit_every


    def _log_var(self, z: np.ndarray, first: int, t_min: int, scale: np.ndarray, scale_h: np.ndarray,
                 q: float, bar_hours: float) -> tuple[np.ndarray, np.ndarray]:
        from margincal.risk.evt import pot_tail
        from margincal.risk.measures import value_at_risk

        n = z.size
        step = self.refit_every or max(1, int(round(self.refit_hours / bar_hours)))
        unit = {"long": np.full(n, np.nan), "short": np.full(n, np.nan)}
        last = {"long": np.nan, "short": np.nan}
        for t in range(t_min, n):
            # refit on schedule, and every bar while a fit has not succeeded yet (too few exceedances)
            if (t - t_min) % step == 0 or np.isnan(last["long"]) or np.isnan(last["short"]):
                lo = first if self.window is None else max(first, t - int(self.window))
                x = z[lo:t] if self.sigma == "ewma" else z[lo:t] / scale[t]
                for side, losses in (("long", -x), ("short", x)):
                    try:
                        tail = pot_tail(losses, self.threshold)
                    except CalibrationError:
                        last[side] = np.nan
                        continue
                    if 1.0 - q >= tail["k"] / tail["n"]:
                        last[side] = value_at_risk(losses, q)
                    else:
                        last[side] = gpd_var(q, tail["u"], tail["xi"], tail["beta"], int(tail["n"]),
                                             int(tail["k"]))
            unit["long"][t] = last["long"]
            unit["short"][t] = last["short"]
        return scale_h * unit["long"], scale_h * unit["short"]


class RefitModel(PathModel):
    """Any tail model of :mod:`margincal.risk`, refitted every ``refit_every`` bars.

    ``model`` is a name for :func:`margincal.risk.models.make_model` or a model
    class / factory called with keyword parameters. At each refit bar ``t`` the
    model is fitted on ``returns[:t]`` twice (``side="long"`` and
    ``side="short"``, so each side's VaR is exact) and its VaR at ``side_level``
    for the horizon is held until the next refit. ``refit_every=1`` is the naive
    refit-every-day reference. A fit that raises :class:`CalibrationError` (too
    little data yet) leaves NaN.
    """

    default_refit = 1

    def __init__(self, model: str | Callable[..., Any], *, refit_every: int = 1, t_min: int = 20,
                 **params: Any) -> None:
        self.model = model
        self.refit_every = refit_every
        self.t_min = t_min
        self.params = params

    @property
    def _model_name(self) -> str:
        m = self.model
        return m if isinstance(m, str) else str(getattr(m, "name", getattr(m, "__name__", "model")))

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"risk:{self._model_name}"


    def get_params(self) -> dict[str, Any]:
        return {"model": self._model_name, "refit_every": self.refit_every, "t_min": self.t_min, **self.params}

    def _factory(self) -> Callable[..., Any]:
        if not isinstance(self.model, str):
            return lambda **kw: self.model(**kw)  # type: ignore[operator]
        from margincal.risk.models import make_model

        name = self.model
        return lambda **kw: make_model(name, **kw)

    def var_paths(self, returns: np.ndarray, *, side_level: float, horizon_bars: float,
                  bar_hours: float, index: pd.DatetimeIndex | None = None) -> tuple[np.ndarray, np.ndarray]:
        r = _check_returns(returns)
        if int(self.refit_every) != self.refit_every or self.refit_every < 1:
            raise ConfigError(f"refit_every is {self.refit_every}; it must be a whole number >= 1")
        factory = self._factory()
        n = r.size
        vl = np.full(n, np.nan)
        vs = np.full(n, np.nan)
        horizon = horizon_bars * bar_hours
        sides = ("long", "short")
        models = {s: factory(side=s, **self.params) for s in sides}
        takes_bar_hours = "bar_hours" in inspect.signature(models["long"].fit).parameters
        last = (np.nan, np.nan)
        for t in range(max(self.t_min, 1), n):
            if (t - self.t_min) % self.refit_every == 0:
                out = []
                for s in sides:
                    m = models[s]
                    try:
                        (m.fit(r[:t], bar_hours=bar_hours) if takes_bar_hours else m.fit(r[:t]))
                        out.append(float(m.forecast(horizon, side_level).var))
                    except CalibrationError:
                        out.append(np.nan)
                last = (out[0], out[1])
            vl[t], vs[t] = last
        return vl, vs


class PublishedPath(PathModel):
    """The initial-margin history that ``margincal run`` publishes (:func:`margincal.pipeline.margin_path`).

    FHS Expected Shortfall at :class:`margincal.config.CalibrationSettings`
    ``level`` per side (0.99 by default), tail multiplier refitted weekly, EWMA
    volatility every bar, buffer applied. It ignores ``side_level``: it is the
    production rule as it stands, judged at the backtest's coverage.
    """

    name = "published"

    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    def get_params(self) -> dict[str, Any]:
        return dict(self.settings)

    def var_paths(self, returns: np.ndarray, *, side_level: float, horizon_bars: float,
                  bar_hours: float, index: pd.DatetimeIndex | None = None) -> tuple[np.ndarray, np.ndarray]:
        from margincal.config import CalibrationSettings
        from margincal.pipeline import margin_path

        r = _check_returns(returns)
        tf = f"{int(round(bar_hours))}h" if abs(bar_hours - round(bar_hours)) < 1e-9 else None
        if tf is None:
            raise ConfigError(f"published: bars of {bar_hours} hours have no timeframe label")
        if tf == "24h":
            tf = "1d"
        cfg = CalibrationSettings(**{"horizon_hours": horizon_bars * bar_hours, **self.settings})
        close = np.exp(np.concatenate([[0.0], np.cumsum(r)]))
        idx = pd.date_range("2000-01-01", periods=r.size + 1, freq=pd.Timedelta(hours=bar_hours), tz="UTC")
        out = margin_path(pd.DataFrame({"close": close}, index=idx), tf, cfg)
        im = out["im_rate"].to_numpy(float)
        return im, im


PATH_MODELS: dict[str, type[PathModel]] = {
    "fhs": FHSPath,
    "hs": HSPath,
    "normal": NormalPath,
    "t": StudentTPath,
    "cf": CornishFisherPath,
    "evt": EVTPath,
    "published": PublishedPath,
}

#: models of the default comparison (all fast paths)
DEFAULT_MODELS: tuple[str, ...] = ("fhs", "hs", "normal", "t", "cf", "evt")


def make_path_model(spec: str | PathModel, **params: Any) -> PathModel:
    """A path model from a name, ``name@k``, ``risk:<name>[@k]``, or an instance.

    * ``"fhs"``, ``"hs"``, ``"normal"``, ``"t"``, ``"cf"``: the fast paths of :data:`PATH_MODELS`;
    * ``"fhs@5"`` / ``"hs@5"`` / ``"t@20"``: the same with the tail quantile (or t degrees of freedom)
      refitted every 5 (20) bars and held in between (the volatility still moves every bar);
    * ``"risk:evt@5"``: :func:`margincal.risk.models.make_model("evt")` refitted every 5 bars
      (:class:`RefitModel`); a name known to ``make_model`` but not in :data:`PATH_MODELS` is
      run this way too.
    """
    if isinstance(spec, PathModel):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"model {spec!r} is not a model name or a PathModel")
    spec = spec.strip()
    name, refit = spec, None
    if "@" in spec:
        name, _, k = spec.partition("@")
        try:
            refit = int(k)
        except ValueError:
            raise ConfigError(f"model {spec!r}: the refit frequency after '@' must be a whole number") from None
        if refit < 1:
            raise ConfigError(f"model {spec!r}: the refit frequency after '@' must be >= 1")
    if name.startswith("risk:"):
        return RefitModel(name[5:], refit_every=refit or 1, **params)
    if name in PATH_MODELS:
        cls = PATH_MODELS[name]
        if refit is not None:
            if "refit_every" not in inspect.signature(cls.__init__).parameters:
                raise ConfigError(f"model {spec!r}: {name} updates every bar recursively; '@k' does not apply")
            params = {**params, "refit_every": refit}
        return cls(**params)
    try:
        from margincal.risk.models import MODELS as RISK_MODELS
    except ImportError:  # pragma: no cover
        RISK_MODELS = {}
    if name in RISK_MODELS:
        return RefitModel(name, refit_every=refit or 1, **params)
    known = sorted(set(PATH_MODELS) | {f"risk:{m}" for m in RISK_MODELS})
    raise ConfigError(f"unknown model {spec!r}; choose one of {', '.join(known)} (append @k to refit every k bars)")


__all__ = [
    "DEFAULT_MODELS",
    "PATH_MODELS",
    "CornishFisherPath",
    "EVTPath",
    "gpd_var",
    "FHSPath",
    "HSPath",
    "NormalPath",
    "PathModel",
    "PublishedPath",
    "RefitModel",
    "StudentTPath",
    "cornish_fisher_domain_vec",
    "cornish_fisher_z",
    "inverted_cdf_index",
    "make_path_model",
    "per_bar_lambda",
    "sorted_window_quantiles",
    "t_dof_from_kurtosis",
]
