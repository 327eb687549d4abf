"""Extreme value theory: peaks over threshold with a generalised Pareto tail.

Method (McNeil & Frey 2000, "Estimation of tail-related risk measures for
heteroscedastic financial time series", J. Empirical Finance 7):

1. filter the returns with the EWMA volatility (``filter="ewma"``, the default;
   the same filter as FHS) to get roughly i.i.d. residuals ``z_t``;
2. per side, take the losses of the residuals (``-z`` for a long, ``z`` for a
   short), sort them, and put the threshold ``u`` at the ``(k+1)``-th largest loss
   with ``k = round(n (1 - threshold))`` exceedances (``threshold=0.90``: the top
   10%, McNeil & Frey used k = 100 of n = 1000);
3. fit a generalised Pareto distribution to the ``k`` excesses ``L - u`` by
   maximum likelihood, ``scipy.stats.genpareto.fit(excesses, floc=0)``
   (shape ``xi``, scale ``beta``);
4. tail quantile and ES (``n`` observations, ``N_u = k`` exceedances, ``p`` = level)::

       VaR_p = u + beta/xi * ((n/N_u * (1 - p))^(-xi) - 1)
       ES_p  = (VaR_p + beta - xi u) / (1 - xi)           (xi < 1)

   (``xi -> 0``: ``VaR_p = u - beta ln(n/N_u (1 - p))``, ``ES_p = VaR_p + beta``);
5. scale by the volatility forecast (``sqrt`` horizon scaling) or, with
   ``scaling="direct"``, refit the tail on the overlapping ``h``-bar sums of the
   filtered scenarios.

Threshold choice: the 90th percentile keeps enough exceedances for a stable
two-parameter fit on one to two years of daily data (36-73 points) while staying
in the tail. :func:`threshold_stability` refits at the 85th to 95th percentiles
so a user can see that the 99% figure does not hinge on the choice
(``EVTModel(stability=True)`` stores it in ``stability_`` and warns when the VaR
spread across thresholds exceeds ``stability_tolerance``); :func:`mean_excess` and
:func:`mean_excess_figure` give the classic mean-excess plot (linear above a
good threshold, with slope ``xi / (1 - xi)``).

When the requested level is not beyond the threshold (``1 - level >= k / n``)
the tail formula does not apply; the model then uses the empirical VaR/ES of
the residual losses and warns.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from margincal.errors import CalibrationError, DataError
from margincal.risk.base import (
    Horizon,
    ModelFitWarning,
    Side,
    SubBarHorizonWarning,
    TailForecast,
    TailModel,
    check_choice,
    check_level,
    check_number,
    filter_returns,
    filtered_path,
    log_loss_to_simple,
    overlapping_sums,
    sides_of,
    store_filter,
    whole_bars,
)
from margincal.risk.measures import expected_shortfall, value_at_risk
from margincal.risk.path import PATH_COLUMNS, newton_minimize
from margincal.units import RISKMETRICS, Decay

MIN_EXCEEDANCES = 10


def gpd_var_es(level: float, u: float, xi: float, beta: float, n: int, n_u: int) -> tuple[float, float]:
    """Closed-form POT VaR and ES (module doc, step 4). ES needs ``xi < 1``."""
    p = check_level(level)
    if not beta > 0:
        raise CalibrationError(f"GPD scale beta is {beta}; it must be > 0")
    ratio = n / n_u * (1.0 - p)
    # xi -> 0 is the exponential tail: beta/xi (ratio^-xi - 1) -> -beta ln(ratio)
    var = u - beta * math.log(ratio) if abs(xi) < 1e-9 else u + beta / xi * (ratio ** (-xi) - 1.0)
    if xi >= 1.0:
        raise CalibrationError(f"GPD shape xi is {xi:.3g} >= 1: the expected shortfall is infinite")
    es = (var + beta - xi * u) / (1.0 - xi)
    return float(var), float(es)


def _gpd_nll(theta: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean negative GPD log-likelihood of excesses ``y`` and its gradient in ``(xi, log beta)``."""
    xi = float(theta[0])
    if not (abs(float(theta[1])) < 700 and math.isfinite(xi)):
        return 1e10, np.zeros(2)
    beta = math.exp(float(theta[1]))
    a = y / beta
    w = 1.0 + xi * a
    if np.any(w <= 0):
        return 1e10, np.zeros(2)
    if abs(xi) < 1e-8:
        nll = math.log(beta) + float(np.mean(a))
        return nll, -np.array([float(np.mean(a * a / 2 - a)), -1.0 + float(np.mean(a))])
    lw = np.log(w)
    nll = math.log(beta) + (1.0 + 1.0 / xi) * float(np.mean(lw))
    d_xi = float(np.mean(lw)) / xi**2 - (1.0 + 1.0 / xi) * float(np.mean(a / w))
    d_lb = -1.0 + (1.0 + xi) * float(np.mean(a / w))
    return nll, -np.array([d_xi, d_lb])


def fit_gpd(excesses: np.ndarray, start: tuple[float, float] | None = None) -> tuple[float, float]:
    """(xi, beta) of a GPD fitted by maximum likelihood to positive excesses, location fixed at 0.

    Without ``start`` the search starts from ``scipy.stats.genpareto.fit(y, floc=0)``;
    with ``start`` (the previous fit of a rolling history) from there. Both end with
    a damped Newton polish (:func:`margincal.risk.path.newton_minimize`) on the analytic gradient to a tight tolerance, so warm and cold starts
    reach the same optimum. Why hand-written: scipy's fit has no warm start.
    """
    y = np.asarray(excesses, dtype=float)
    if y.size < MIN_EXCEEDANCES:
        raise CalibrationError(f"GPD fit needs at least {MIN_EXCEEDANCES} excesses, got {y.size}")
    if np.any(y < 0) or not np.all(np.isfinite(y)):
        raise DataError("GPD excesses must be finite and >= 0")
    if not y.max() > 0:
        raise CalibrationError("GPD fit: all excesses are 0")
    if start is None:
        xi0, _, beta0 = stats.genpareto.fit(y, floc=0)
        start = (float(xi0), float(beta0))
    th0 = np.array([start[0], math.log(max(start[1], 1e-300))])
    f0 = _gpd_nll(th0, y)[0]
    if f0 >= 1e10:  # the start is outside the support of these excesses: restart cold
        xi0, _, beta0 = stats.genpareto.fit(y, floc=0)
        th0 = np.array([float(xi0), math.log(float(beta0))])
        f0 = _gpd_nll(th0, y)[0]
    th = newton_minimize(lambda th: _gpd_nll(th, y), th0)
    return float(th[0]), float(math.exp(th[1]))


def pot_tail(losses: np.ndarray, threshold: float = 0.90,
             start: tuple[float, float] | None = None) -> dict[str, float]:
    """Peaks-over-threshold fit on positive ``losses``: threshold ``u``, ``k``, ``n``, ``xi``, ``beta``."""
    x = np.asarray(losses, dtype=float).ravel()
    if not np.all(np.isfinite(x)):
        raise DataError("losses must be finite for a POT fit")
    if not 0.0 < threshold < 1.0:
        raise CalibrationError(f"threshold is {threshold}; it must be a quantile level in (0, 1), e.g. 0.90")
    n = x.size
    k = int(round(n * (1.0 - threshold)))
    if k < MIN_EXCEEDANCES or k >= n:
        raise CalibrationError(
            f"POT: {n} losses at threshold {threshold} leave {k} exceedances; need {MIN_EXCEEDANCES}..{n - 1}"
        )
    top = -np.partition(-x, k)[: k + 1]  # the k+1 largest, unordered except top[k] is the (k+1)-th largest
    u = float(top[k])
    xi, beta = fit_gpd(top[:k] - u, start)
    return {"u": u, "k": k, "n": n, "xi": xi, "beta": beta, "threshold": float(threshold)}


def pot_var_es(losses: np.ndarray, level: float, threshold: float = 0.90) -> tuple[float, float, dict[str, float]]:
    """POT VaR and ES of ``losses`` at ``level`` with the tail fitted above the ``threshold`` quantile."""
    t = pot_tail(losses, threshold)
    v, e = gpd_var_es(level, t["u"], t["xi"], t["beta"], int(t["n"]), int(t["k"]))
    return v, e, t


def threshold_stability(losses: np.ndarray, level: float = 0.99,
                        thresholds: Sequence[float] = (0.85, 0.875, 0.90, 0.925, 0.95)) -> pd.DataFrame:
    """Refit the POT tail at several threshold quantiles: one row per threshold (u, k, xi, beta, var, es)."""
    rows = []
    for q in thresholds:
        try:
            v, e, t = pot_var_es(losses, level, q)
        except CalibrationError as exc:
            rows.append({"threshold": q, "error": str(exc)})
            continue
        rows.append({**t, "var": v, "es": e})
    return pd.DataFrame(rows).set_index("threshold")


def mean_excess(losses: ArrayLike, thresholds: ArrayLike | None = None) -> pd.DataFrame:
    """Empirical mean-excess function ``e(u) = mean(L - u | L > u)``.

    ``thresholds`` default: the 50th to 99th percentiles of the losses (50 points).
    Columns: ``threshold``, ``mean_excess``, ``n_exceed``, ``std_error`` (std of the
    excesses / sqrt(n_exceed), for a 95% band).
    """
    x = np.asarray(losses, dtype=float).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise DataError("losses must be a non-empty array of finite numbers")
    u = np.quantile(x, np.linspace(0.5, 0.99, 50)) if thresholds is None else np.asarray(thresholds, float).ravel()
    xs = np.sort(x)
    # vectorised: suffix sums over the sorted losses
    idx = np.searchsorted(xs, u, side="right")
    suffix = np.concatenate([np.cumsum(xs[::-1])[::-1], [0.0]])
    suffix2 = np.concatenate([np.cumsum((xs * xs)[::-1])[::-1], [0.0]])
    cnt = xs.size - idx
    with np.errstate(invalid="ignore", divide="ignore"):
        me = suffix[idx] / cnt - u
        var = suffix2[idx] / cnt - (suffix[idx] / cnt) ** 2
        se = np.sqrt(np.maximum(var, 0.0) * cnt / np.maximum(cnt - 1, 1)) / np.sqrt(cnt)
    return pd.DataFrame({"threshold": u, "mean_excess": np.where(cnt > 0, me, np.nan), "n_exceed": cnt,
                         "std_error": np.where(cnt > 1, se, np.nan)})


def mean_excess_reference(losses: ArrayLike, thresholds: ArrayLike) -> np.ndarray:
    """Loop version of :func:`mean_excess` (obviously correct; for tests)."""
    x = np.asarray(losses, dtype=float).ravel()
    out = []
    for u in np.asarray(thresholds, float).ravel():
        exc = x[x > u] - u
        out.append(exc.mean() if exc.size else np.nan)
    return np.array(out)


def mean_excess_figure(losses: ArrayLike, thresholds: ArrayLike | None = None, *, title: str = "Mean excess",
                       fitted: dict[str, float] | None = None) -> Any:
    """Plotly mean-excess plot with a 95% band; ``fitted`` (``u``, ``xi``, ``beta``) adds the GPD line.

    Above a threshold where the GPD holds, ``e(v) = (beta + xi (v - u)) / (1 - xi)`` for ``v > u``.
    """
    import plotly.graph_objects as go

    me = mean_excess(losses, thresholds)
    fig = go.Figure()
    band_hi = me["mean_excess"] + 1.96 * me["std_error"]
    band_lo = me["mean_excess"] - 1.96 * me["std_error"]
    fig.add_trace(go.Scatter(x=me["threshold"], y=band_hi, mode="lines", line={"width": 0}, showlegend=False,
                             hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=me["threshold"], y=band_lo, mode="lines", line={"width": 0}, fill="tonexty",
                             fillcolor="rgba(31,119,180,0.2)", name="95% band", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=me["threshold"], y=me["mean_excess"], mode="lines+markers", name="mean excess",
                             customdata=me["n_exceed"],
                             hovertemplate="u=%{x:.4g}<br>e(u)=%{y:.4g}<br>n=%{customdata}<extra></extra>"))
    if fitted is not None:
        v = me["threshold"][me["threshold"] >= fitted["u"]]
        if len(v):
            line = (fitted["beta"] + fitted["xi"] * (v - fitted["u"])) / (1.0 - fitted["xi"])
            fig.add_trace(go.Scatter(x=v, y=line, mode="lines", name="GPD fit", line={"dash": "dash"}))
    fig.update_layout(title=title, xaxis_title="threshold u (loss)", yaxis_title="mean excess e(u)",
                      template="plotly_white")
    return fig


class EVTModel(TailModel):
    """Conditional EVT (McNeil-Frey): GPD tail on EWMA-filtered residuals, per side.

    Parameters: ``threshold`` (quantile level of the POT threshold, 0.90),
    ``filter`` (``"ewma"`` or ``"none"``: the raw returns over their zero-mean
    sample volatility), ``lam``/``fit_lambda``/``seed`` (EWMA), ``window``,
    ``scaling``, ``side``, ``stability`` (also refit at 0.85..0.95 and store
    ``stability_``), ``stability_tolerance`` (relative VaR spread that warns).
    Fitted: ``tails_`` (per side: u, k, n, xi, beta), ``sigma_next_``, ``residuals_``.
    """

    name = "evt"

    _fitted_attr = "tails_"

    def __init__(self, *, threshold: float = 0.90, filter: str = "ewma", lam: Decay = RISKMETRICS,
                 fit_lambda: bool = False, seed: int = 30, window: int | None = None, scaling: str = "sqrt",
                 side: Side = "both", stability: bool = False, stability_tolerance: float = 0.2) -> None:
        self.threshold = threshold
        self.filter = filter
        self.lam = lam
        self.fit_lambda = fit_lambda
        self.seed = seed
        self.window = window
        self.scaling = scaling
        self.side = side
        self.stability = stability
        self.stability_tolerance = stability_tolerance

    @staticmethod
    def _side_losses(x: np.ndarray, side: str) -> np.ndarray:
        return -x if side == "long" else x

    def _validate(self) -> None:
        super()._validate()
        check_choice("filter", self.filter, ("ewma", "garch", "none", "sample"))
        check_number("threshold", self.threshold, low=0.0, high=1.0)
        check_number("stability_tolerance", self.stability_tolerance, low=0.0)

    def fit(self, returns: ArrayLike, bar_hours: float | None = None) -> EVTModel:
        r = self._prepare(returns, bar_hours)
        filt = "sample" if self.filter in ("none", "sample") else self.filter
        store_filter(self, filter_returns(r, filt, self.lam, self.fit_lambda, self.seed, self.window,
                                          self.bar_hours_))
        self.tails_ = {s: pot_tail(self._side_losses(self.residuals_, s), self.threshold)
                       for s in sides_of(self.side)}
        self._direct_cache: dict[tuple[int, str], dict[str, float]] = {}
        if self.stability:
            self.stability_ = {
                s: threshold_stability(self._side_losses(self.residuals_, s), 0.99) for s in sides_of(self.side)
            }
            for s, tab in self.stability_.items():
                v = tab["var"].dropna() if "var" in tab else pd.Series(dtype=float)
                spread = float((v.max() - v.min()) / v.median()) if len(v) > 1 else float("nan")
                if spread > self.stability_tolerance:
                    warnings.warn(
                        f"evt: {s} 99% VaR varies by {spread:.0%} across thresholds 0.85-0.95; "
                        "the tail estimate is threshold-sensitive",
                        ModelFitWarning,
                        stacklevel=2,
                    )
        return self

    def _side_var_es(self, losses: np.ndarray | None, tail: dict[str, float], level: float, scale: float,
                     side: str) -> tuple[float, float]:
        if 1.0 - level >= tail["k"] / tail["n"]:
            warnings.warn(
                f"evt: level {level} is not beyond the {tail['threshold']:.0%} threshold; "
                "using the empirical tail of the residuals",
                ModelFitWarning,
                stacklevel=3,
            )
            assert losses is not None
            return scale * value_at_risk(losses, level), scale * expected_shortfall(losses, level)
        v, e = gpd_var_es(level, tail["u"], tail["xi"], tail["beta"], int(tail["n"]), int(tail["k"]))
        return scale * v, scale * e

    def forecast(self, horizon: Horizon = 24.0, level: float = 0.99) -> TailForecast:
        self._check_fitted()
        level = check_level(level)
        hh, h = self._bars(horizon)
        if h < 1.0 - 1e-12:
            warnings.warn(
                f"horizon is {h:.4g} bars (shorter than one bar of the data); scaled down by sqrt(h).",
                SubBarHorizonWarning,
                stacklevel=2,
            )
        per_side: dict[str, tuple[float, float]] = {}
        if self.scaling == "sqrt" or h <= 1.0 + 1e-12:
            scale = self.sigma_next_ * math.sqrt(h)
            eff = float(self.residuals_.size)
            for s in sides_of(self.side):
                per_side[s] = self._side_var_es(self._side_losses(self.residuals_, s), self.tails_[s], level,
                                                scale, s)
            sigma = scale
        else:
            hi = whole_bars(h)
            sums = overlapping_sums(self.sigma_next_ * self.residuals_, hi)
            eff = self.residuals_.size / hi
            for s in sides_of(self.side):
                losses = self._side_losses(sums, s)
                key = (hi, s)
                if key not in self._direct_cache:
                    self._direct_cache[key] = pot_tail(losses, self.threshold)
                per_side[s] = self._side_var_es(losses, self._direct_cache[key], level, 1.0, s)
            sigma = float(np.sqrt(np.mean(sums * sums)))
        return self._from_log_losses(per_side, level, hh, sigma, eff)

    def _path_fast(self, r: np.ndarray, bar_hours: float, hh: float, level: float,
                   refit: int) -> dict[str, np.ndarray] | None:
        """GPD tails refitted every ``refit`` rows (warm-started from the previous fit), volatility every row."""
        h = hh / bar_hours
        if self.fit_lambda or self.filter == "garch" or (self.scaling == "direct" and h > 1.0 + 1e-12):
            return None
        n = r.size
        sig, z, first, t_min = filtered_path(self, r, bar_hours, self.filter)
        out = {c: np.full(n + 1, np.nan) for c in PATH_COLUMNS}
        sq = math.sqrt(h)
        for side in sides_of(self.side):
            unit = (np.nan, np.nan)
            start: tuple[float, float] | None = None
            anchor: int | None = None
            for t in range(t_min, n + 1):
                if anchor is None or (t - anchor) % refit == 0:
                    lo = first if self.window is None else max(first, t - int(self.window))
                    x = z[lo:t] if self.filter == "ewma" else z[lo:t] / sig[t]
                    losses = self._side_losses(x, side)
                    try:
                        tail = pot_tail(losses, self.threshold, start)
                        start = (tail["xi"], tail["beta"])
                        if 1.0 - level >= tail["k"] / tail["n"]:
                            unit = (value_at_risk(losses, level), expected_shortfall(losses, level))
                        else:
                            unit = gpd_var_es(level, tail["u"], tail["xi"], tail["beta"], int(tail["n"]),
                                              int(tail["k"]))
                        anchor = t
                    except CalibrationError:
                        unit, anchor = (np.nan, np.nan), None
                        continue
                s = sig[t] * sq
                v = float(log_loss_to_simple(s * unit[0], side))
                e = float(log_loss_to_simple(s * unit[1], side))
                out[f"var_{side}"][t], out[f"es_{side}"][t] = v, max(e, v)
        return out
