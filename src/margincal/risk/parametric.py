"""Parametric tail models: normal, Student-t and Cornish-Fisher.

Closed forms (loss ``L = mu + s X``, ``X`` standardised, ``p`` = level, ``z_p = Phi^-1(p)``):

* normal: ``VaR = mu + s z_p``, ``ES = mu + s phi(z_p) / (1 - p)``;
* Student-t with ``nu`` degrees of freedom (``t_p`` its quantile, ``f`` its density):
  ``VaR = mu + s t_p``, ``ES = mu + s f(t_p) (nu + t_p^2) / ((nu - 1)(1 - p))`` (needs ``nu > 1``);
* Cornish-Fisher (skewness ``S``, excess kurtosis ``K``)::

      q(z) = z + (z^2 - 1) S/6 + (z^3 - 3z) K/24 - (2z^3 - 5z) S^2/36
      VaR  = mu + s q(z_p)
      ES   = mu + s/(1-p) * integral_p^1 q(Phi^-1(u)) du
           = mu + s phi(z_p)/(1-p) * [1 + S z_p/6 + K (z_p^2 - 1)/24 - S^2 (2 z_p^2 - 1)/36]

  The ES is the exact integral of the CF quantile over the tail, using
  ``int_z^inf He_k(x) phi(x) dx = He_{k-1}(z) phi(z)`` for the Hermite polynomials
  ``He_1 = x``, ``He_2 = x^2 - 1``, ``He_3 = x^3 - 3x``; :func:`cornish_fisher_es_numeric`
  integrates the quantile numerically and is tested to agree.

  The expansion is a valid quantile function only where ``q`` is increasing in
  ``z``: ``q'(z) = a z^2 + b z + c`` with ``a = K/8 - S^2/6``, ``b = S/3``,
  ``c = 1 - K/8 + 5 S^2/36`` must be >= 0 for every ``z`` (Maillard 2012, "A user's
  guide to the Cornish Fisher expansion"). With ``S = 0`` this means
  ``0 <= K <= 8``. The guard :func:`cornish_fisher_domain` keeps ``K`` in ``[0, 8]``
  and shrinks ``|S|`` until ``q`` is monotone, with a :class:`ModelFitWarning`.

Model conventions (all three models)
------------------------------------
* zero mean (``mu = 0``): the drift of crypto returns is not estimable at margin horizons;
* scale ``s``: the EWMA volatility forecast for the next bar (``sigma="ewma"``, the default,
  RiskMetrics) or the zero-mean sample volatility (``sigma="sample"``), times ``sqrt(h)``;
* shape (t degrees of freedom, CF skewness/kurtosis) is fitted on the volatility-filtered
  residuals ``z_t = r_t / sigma_t`` (or ``r_t / s`` for ``sigma="sample"``);
* ``scaling="direct"``: the one-bar scenarios ``s z_t`` are summed over overlapping
  ``h``-bar windows; the scale is the root mean square of those sums and the shape is
  refitted on them. Effective sample size ``n / h`` (reported in ``effective_n``).
* VaR and ES are computed for the log-return loss (``-R`` long, ``R`` short) and mapped to
  the simple-return loss with ``g_long(x) = 1 - exp(-x)``, ``g_short(x) = exp(x) - 1``
  (:func:`margincal.risk.base.log_loss_to_simple`). VaR maps exactly (quantiles commute
  with increasing maps). The reported ES is ``g(ES_log)``: for a long ``g`` is concave, so
  it is at least the exact simple-return ES (conservative); for a short the exact
  simple-return ES of a t tail is infinite (``E[exp(R)]`` diverges), so the log scale is
  the only finite definition. At 1 day and 99% the two differ by about 1% of the figure
  for a 4% daily volatility.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
from numpy.typing import ArrayLike
from scipy import integrate, special, stats

from margincal.errors import CalibrationError, ConfigError
from margincal.risk.base import (
    FILTERS,
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
    filtered_residuals,
    filtered_scale_path,
    held_index,
    log_loss_to_simple,
    overlapping_sums,
    sides_of,
    store_filter,
    whole_bars,
)
from margincal.risk.path import PATH_COLUMNS, cornish_fisher_domain_vec, newton_minimize, rolling_moments
from margincal.units import RISKMETRICS, Decay

# ---------------------------------------------------------------- closed forms


@functools.lru_cache(maxsize=64)
def _std_normal_at(p: float) -> tuple[float, float]:
    """``(z_p, phi(z_p))`` of the standard normal by scipy, cached per level (the fast paths ask for the same
    few levels once per instrument)."""
    z = float(stats.norm.ppf(p))
    return z, float(stats.norm.pdf(z))


def normal_var_es(level: float, mu: float = 0.0, sigma: float = 1.0) -> tuple[float, float]:
    """VaR and ES of a loss ``N(mu, sigma^2)`` at ``level`` (upper tail)."""
    p = check_level(level)
    z, phi = _std_normal_at(p)
    return float(mu + sigma * z), float(mu + sigma * phi / (1.0 - p))


def student_t_var_es(level: float, df: float, loc: float = 0.0, scale: float = 1.0) -> tuple[float, float]:
    """VaR and ES of a loss ``loc + scale * T_df`` at ``level``; ES needs ``df > 1``."""
    p = check_level(level)
    if not df > 1.0:
        raise CalibrationError(f"df is {df}; the Student-t ES exists only for df > 1")
    q = stats.t.ppf(p, df)
    es = stats.t.pdf(q, df) * (df + q * q) / ((df - 1.0) * (1.0 - p))
    return float(loc + scale * q), float(loc + scale * es)


def standardized_t_scale(df: float) -> float:
    """Scale that gives a Student-t with ``df > 2`` unit variance: ``sqrt((df - 2) / df)``."""
    if not df > 2.0:
        raise CalibrationError(f"df is {df}; a Student-t has finite variance only for df > 2")
    return math.sqrt((df - 2.0) / df)


def _t_nll(theta: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean negative log-likelihood of ``x`` under ``scale * T_nu`` (location 0) and its gradient in
    ``(log nu, log scale)``."""
    v, sc = math.exp(theta[0]), math.exp(theta[1])
    u2 = (x / sc) ** 2
    a = 1.0 + u2 / v
    la = np.log(a)
    ll = (special.gammaln((v + 1) / 2) - special.gammaln(v / 2) - 0.5 * math.log(v * math.pi) - math.log(sc)
          - (v + 1) / 2 * float(np.mean(la)))
    d_v = (0.5 * special.digamma((v + 1) / 2) - 0.5 * special.digamma(v / 2) - 0.5 / v - 0.5 * float(np.mean(la))
           + (v + 1) / 2 * float(np.mean(u2 / (v * v) / a)))
    d_sc = -1.0 / sc + (v + 1) / (v * sc) * float(np.mean(u2 / a))
    return -ll, -np.array([v * d_v, sc * d_sc])


def fit_t_mle(x: np.ndarray, start: tuple[float, float] | None = None) -> tuple[float, float]:
    """Maximum-likelihood ``(nu, scale)`` of a zero-location Student-t (unclamped).

    Without ``start`` the search starts from ``scipy.stats.t.fit(x, floc=0)``; with
    ``start`` (the previous fit of a rolling history) from there. Either way it ends
    with L-BFGS-B on the analytic gradient (in ``log nu``, ``log scale``) to a tight
    tolerance, so a warm start and a cold start reach the same optimum: the warm
    start only saves iterations. Why hand-written: scipy's ``t.fit`` has no warm
    start and stops at a loose Nelder-Mead tolerance.
    """
    x = np.asarray(x, dtype=float)
    if start is not None and not 0.5 < start[0] < 100.0:
        start = None  # a previous fit on the flat part of the likelihood (nearly normal) is a poor start
    if start is None:
        nu0, _, sc0 = stats.t.fit(x, floc=0)
        start = (float(nu0), float(sc0))
    nu0, sc0 = start
    if not (np.isfinite(nu0) and np.isfinite(sc0) and nu0 > 0 and sc0 > 0):
        raise CalibrationError(f"t: maximum-likelihood start ({nu0}, {sc0}) is not finite and positive")
    th0 = np.array([math.log(min(max(nu0, 0.05), 1e6)), math.log(sc0)])
    th = newton_minimize(lambda th: _t_nll(th, x), th0, lower=np.array([math.log(0.05), -np.inf]),
                         upper=np.array([math.log(1e6), np.inf]))
    nu, sc = math.exp(th[0]), math.exp(th[1])
    if not np.isfinite(nu):
        raise CalibrationError("t: maximum-likelihood df is not finite")
    return nu, sc


def clamp_df(nu: float, df_min: float, df_max: float, warn: bool = True) -> float:
    """``nu`` kept in ``[df_min, df_max]``, with a :class:`ModelFitWarning` when clamped."""
    if nu < df_min or nu > df_max:
        clamped = min(max(nu, df_min), df_max)
        if warn:
            warnings.warn(f"t: fitted df {nu:.3g} clamped to {clamped:.3g}", ModelFitWarning, stacklevel=4)
        return clamped
    return nu


def cornish_fisher_quantile(level: float | np.ndarray, skew: float, exkurt: float) -> float | np.ndarray:
    """Cornish-Fisher quantile of a standardised variable (no monotonicity guard; see module doc)."""
    z = stats.norm.ppf(level)
    q = z + (z * z - 1) * skew / 6 + (z**3 - 3 * z) * exkurt / 24 - (2 * z**3 - 5 * z) * skew**2 / 36
    return float(q) if np.ndim(q) == 0 else q


def cornish_fisher_es(level: float, skew: float, exkurt: float) -> float:
    """Exact tail integral of the CF quantile: ``1/(1-p) int_p^1 q(u) du`` (standardised)."""
    p = check_level(level)
    z = stats.norm.ppf(p)
    bracket = 1 + skew * z / 6 + exkurt * (z * z - 1) / 24 - skew**2 * (2 * z * z - 1) / 36
    return float(stats.norm.pdf(z) * bracket / (1.0 - p))


def cornish_fisher_var_es_arrays(level: float, skew: np.ndarray, exkurt: np.ndarray
                                 ) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`cornish_fisher_quantile` and :func:`cornish_fisher_es` over arrays of (S, K)."""
    p = check_level(level)
    z, phi = _std_normal_at(p)
    s = np.asarray(skew, dtype=float)
    k = np.asarray(exkurt, dtype=float)
    q = z + (z * z - 1) * s / 6 + (z**3 - 3 * z) * k / 24 - (2 * z**3 - 5 * z) * s**2 / 36
    es = phi * (1 + s * z / 6 + k * (z * z - 1) / 24 - s**2 * (2 * z * z - 1) / 36) / (1.0 - p)
    return q, es


def cornish_fisher_es_numeric(level: float, skew: float, exkurt: float) -> float:
    """Numerical version of :func:`cornish_fisher_es` (quadrature over z; reference for tests)."""
    p = check_level(level)
    zp = stats.norm.ppf(p)

    def integrand(x: float) -> float:
        q = x + (x * x - 1) * skew / 6 + (x**3 - 3 * x) * exkurt / 24 - (2 * x**3 - 5 * x) * skew**2 / 36
        return q * stats.norm.pdf(x)

    val, _ = integrate.quad(integrand, zp, np.inf, epsabs=1e-13, epsrel=1e-11, limit=200)
    return float(val / (1.0 - p))


def cornish_fisher_is_monotone(skew: float, exkurt: float) -> bool:
    """True when the CF quantile ``q(z)`` is non-decreasing for every real ``z``."""
    a = exkurt / 8 - skew * skew / 6
    b = skew / 3
    c = 1 - exkurt / 8 + 5 * skew * skew / 36
    tol = 1e-12
    if a > tol:
        return b * b - 4 * a * c <= tol
    return abs(a) <= tol and abs(b) <= tol and c >= -tol


def cornish_fisher_domain(skew: float, exkurt: float) -> tuple[float, float, bool]:
    """Project ``(skew, exkurt)`` into the monotone domain.

    Keeps ``exkurt`` clipped to ``[0, 8]`` and shrinks ``|skew|`` by bisection to
    the largest value with a monotone expansion. Returns ``(skew, exkurt, adjusted)``.
    """
    if cornish_fisher_is_monotone(skew, exkurt):
        return float(skew), float(exkurt), False
    k = float(min(max(exkurt, 0.0), 8.0))
    if cornish_fisher_is_monotone(skew, k):
        return float(skew), k, True
    lo, hi = 0.0, abs(float(skew))  # monotone at lo (S=0, K in [0, 8]), not at hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if cornish_fisher_is_monotone(mid, k):
            lo = mid
        else:
            hi = mid
    return math.copysign(lo, skew), k, True


# ---------------------------------------------------------------- models


class ParametricModel(TailModel):
    """Base of the parametric models: volatility filter, horizon handling, sides."""

    name = "parametric"

    def __init__(self, *, sigma: str = "ewma", lam: Decay = RISKMETRICS, fit_lambda: bool = False, seed: int = 30,
                 window: int | None = None, scaling: str = "sqrt", side: Side = "both") -> None:
        self.sigma = sigma
        self.lam = lam
        self.fit_lambda = fit_lambda
        self.seed = seed
        self.window = window
        self.scaling = scaling
        self.side = side

    # subclasses: shape parameters from a standardised-ish sample, and log-loss VaR/ES per side
    def _fit_shape(self, x: np.ndarray) -> dict[str, float]:
        return {}

    def _log_var_es(self, shape: dict[str, float], scale: float, level: float, side: str) -> tuple[float, float]:
        raise NotImplementedError

    _fitted_attr = "shape_"

    def _validate(self) -> None:
        super()._validate()
        check_choice("sigma", self.sigma, FILTERS)

    def fit(self, returns: ArrayLike, bar_hours: float | None = None) -> ParametricModel:
        r = self._prepare(returns, bar_hours)
        store_filter(self, filter_returns(r, self.sigma, self.lam, self.fit_lambda, self.seed, self.window,
                                          self.bar_hours_))
        self.shape_ = self._fit_shape(self.residuals_)
        self._direct_cache: dict[int, tuple[dict[str, float], float, float]] = {}
        for k, v in self.shape_.items():
            setattr(self, f"{k}_", v)
        return self

    def _horizon_shape(self, h: float) -> tuple[dict[str, float], float, float]:
        """(shape, scale, effective_n) at ``h`` bars."""
        if h < 1.0 - 1e-12:
            warnings.warn(
                f"horizon is {h:.4g} bars (shorter than one bar of the data); scaled down by sqrt(h). "
                "Use data with shorter bars for intraday horizons.",
                SubBarHorizonWarning,
                stacklevel=3,
            )
        if self.scaling == "sqrt" or h <= 1.0 + 1e-12:
            return self.shape_, self.sigma_next_ * math.sqrt(h), float(self.residuals_.size)
        hi = whole_bars(h)
        if hi not in self._direct_cache:
            sums = overlapping_sums(self.sigma_next_ * self.residuals_, hi)
            scale = float(np.sqrt(np.mean(sums * sums)))
            self._direct_cache[hi] = (self._fit_shape(sums / scale), scale, self.residuals_.size / hi)
        return self._direct_cache[hi]

    def forecast(self, horizon: Horizon = 24.0, level: float = 0.99) -> TailForecast:
        self._check_fitted()
        level = check_level(level)
        hh, h = self._bars(horizon)
        shape, scale, eff = self._horizon_shape(h)
        per_side = {s: self._log_var_es(shape, scale, level, s) for s in sides_of(self.side)}
        return self._from_log_losses(per_side, level, hh, scale, eff)

    # ------------------------------------------------------------ fit_path
    def _unit_path(self, r: np.ndarray, first: int, t_min: int, level: float, refit: int,
                   scale: np.ndarray) -> dict[str, tuple[np.ndarray | float, np.ndarray | float]] | None:
        """Per side, log-loss (VaR, ES) of a unit-scale loss for every row, or one value for all rows
        (subclasses). ``scale`` is the filter's volatility path; a shape fitted on the residuals takes
        them from :func:`~margincal.risk.base.filtered_residuals` (the normal quantile needs none)."""
        return None

    def _path_fast(self, r: np.ndarray, bar_hours: float, hh: float, level: float,
                   refit: int) -> dict[str, np.ndarray] | None:
        h = hh / bar_hours
        if self.fit_lambda or self.sigma == "garch" or (self.scaling == "direct" and h > 1.0 + 1e-12):
            return None
        n = r.size
        sig, first, t_min = filtered_scale_path(self, r, bar_hours, self.sigma)
        if self.sigma != "ewma" and n >= t_min and not np.all(sig[t_min:] > 0):
            return None
        unit = self._unit_path(r, first, t_min, level, refit, sig)
        if unit is None:
            return None
        scale_h = sig * math.sqrt(h)  # a new array: rows before t_min have no tail yet
        scale_h[:t_min] = np.nan
        want_es = getattr(self, "_path_es", True)  # path_arrays(es=False): the ES columns stay NaN
        out: dict[str, np.ndarray] = {}
        with np.errstate(invalid="ignore"):
            for side, (uv, ue) in unit.items():
                out[f"var_{side}"] = np.asarray(log_loss_to_simple(scale_h * uv, side), dtype=float)
                if want_es:
                    es = np.asarray(log_loss_to_simple(scale_h * ue, side), dtype=float)
                    out[f"es_{side}"] = np.maximum(es, out[f"var_{side}"])
        for c in PATH_COLUMNS:
            if c not in out:
                out[c] = np.full(n + 1, np.nan)
        return {c: out[c] for c in PATH_COLUMNS}


class NormalModel(ParametricModel):
    """Normal (RiskMetrics with ``sigma="ewma"``) VaR/ES; symmetric, zero mean."""

    name = "normal"

    def _log_var_es(self, shape: dict[str, float], scale: float, level: float, side: str) -> tuple[float, float]:
        return normal_var_es(level, 0.0, scale)

    def _unit_path(self, r: np.ndarray, first: int, t_min: int, level: float, refit: int,
                   scale: np.ndarray) -> dict[str, tuple[np.ndarray | float, np.ndarray | float]] | None:
        v, e = normal_var_es(level)  # the same unit quantile on every row (broadcast by the caller)
        return {s: (v, e) for s in ("long", "short")}


class StudentTModel(ParametricModel):
    """Student-t VaR/ES: degrees of freedom by scipy MLE, scaled to the volatility.

    ``df=None`` fits ``nu`` by maximum likelihood (``scipy.stats.t.fit`` with
    ``floc=0`` on the filtered residuals; the fitted scale is discarded); the
    loss is then ``s * sqrt((nu - 2)/nu) * T_nu``, a t with standard deviation ``s``.
    ``nu`` is kept in ``[df_min, df_max]`` (default ``[2.1, 500]``; a finite variance
    needs ``nu > 2``), with a :class:`ModelFitWarning` when clamped.
    """

    name = "t"

    def __init__(self, *, df: float | None = None, df_min: float = 2.1, df_max: float = 500.0,
                 sigma: str = "ewma", lam: Decay = RISKMETRICS, fit_lambda: bool = False, seed: int = 30,
                 window: int | None = None, scaling: str = "sqrt", side: Side = "both") -> None:
        super().__init__(sigma=sigma, lam=lam, fit_lambda=fit_lambda, seed=seed, window=window,
                         scaling=scaling, side=side)
        self.df = df
        self.df_min = df_min
        self.df_max = df_max

    def _validate(self) -> None:
        super()._validate()
        if self.df is not None:
            check_number("df", self.df, low=2.0)
        lo = check_number("df_min", self.df_min, low=2.0)
        if not check_number("df_max", self.df_max, low=lo, low_open=False) >= lo:  # pragma: no cover
            raise ConfigError("df_max must be >= df_min")

    def _fit_shape(self, x: np.ndarray, start: tuple[float, float] | None = None) -> dict[str, float]:
        if self.df is not None:
            return {"df": float(self.df)}
        nu, sc = fit_t_mle(x, start)
        self._mle_ = (nu, sc)
        return {"df": clamp_df(nu, self.df_min, self.df_max)}

    def _unit_path(self, r: np.ndarray, first: int, t_min: int, level: float, refit: int,
                   scale: np.ndarray) -> dict[str, tuple[np.ndarray | float, np.ndarray | float]] | None:
        """Degrees of freedom by maximum likelihood at each refit row, warm-started from the previous fit."""
        z = filtered_residuals(r, scale, first, self.sigma)
        n1 = z.size + 1
        nu = np.full(n1, np.nan)
        start: tuple[float, float] | None = None
        clamped = 0
        for t in range(t_min, n1):
            if (t - t_min) % refit == 0:
                lo = first if self.window is None else max(first, t - int(self.window))
                x = z[lo:t] if self.sigma == "ewma" else z[lo:t] / scale[t]
                if self.df is not None:
                    cur = float(self.df)
                else:
                    mle = fit_t_mle(x, start)
                    start = mle
                    cur = clamp_df(mle[0], self.df_min, self.df_max, warn=False)
                    clamped += cur != mle[0]
            nu[t] = cur
        if clamped:
            warnings.warn(f"t: fitted df clamped to [{self.df_min:g}, {self.df_max:g}] at {clamped} refits",
                          ModelFitWarning, stacklevel=5)
        ok = np.isfinite(nu)
        safe = np.where(ok, nu, 3.0)
        q = stats.t.ppf(level, safe)
        ts = np.sqrt((safe - 2.0) / safe)
        es = stats.t.pdf(q, safe) * (safe + q * q) / ((safe - 1.0) * (1.0 - level))
        v, e = np.where(ok, ts * q, np.nan), np.where(ok, ts * es, np.nan)
        return {s: (v, e) for s in ("long", "short")}

    def _log_var_es(self, shape: dict[str, float], scale: float, level: float, side: str) -> tuple[float, float]:
        nu = shape["df"]
        return student_t_var_es(level, nu, 0.0, scale * standardized_t_scale(nu))


class CornishFisherModel(ParametricModel):
    """Cornish-Fisher (modified) VaR/ES from the skewness and excess kurtosis of the residuals.

    The long side uses the skewness of ``-R`` (``-S``), the short side ``S``. See the
    module doc for the ES integral and the monotonicity guard.
    """

    name = "cf"

    def _fit_shape(self, x: np.ndarray) -> dict[str, float]:
        s = float(stats.skew(x))
        k = float(stats.kurtosis(x))  # excess kurtosis, moment estimator
        s2, k2, adjusted = cornish_fisher_domain(s, k)
        if adjusted:
            warnings.warn(
                f"cf: skew {s:.3g}, excess kurtosis {k:.3g} give a non-monotone expansion; "
                f"using skew {s2:.3g}, excess kurtosis {k2:.3g}",
                ModelFitWarning,
                stacklevel=4,
            )
        return {"skew": s2, "exkurt": k2, "skew_raw": s, "exkurt_raw": k}

    def _log_var_es(self, shape: dict[str, float], scale: float, level: float, side: str) -> tuple[float, float]:
        s = shape["skew"] if side == "short" else -shape["skew"]
        k = shape["exkurt"]
        return (scale * float(cornish_fisher_quantile(level, s, k)), scale * cornish_fisher_es(level, s, k))

    def _unit_path(self, r: np.ndarray, first: int, t_min: int, level: float, refit: int,
                   scale: np.ndarray) -> dict[str, tuple[np.ndarray | float, np.ndarray | float]] | None:
        """Skewness and excess kurtosis of the residuals so far by cumulative sums (moments are scale-free)."""
        z = filtered_residuals(r, scale, first, self.sigma)
        _, sk, ku = rolling_moments(z, first, self.window)
        hold = held_index(z.size + 1, t_min, refit)
        sk, ku = np.nan_to_num(sk[hold], nan=0.0), np.nan_to_num(ku[hold], nan=0.0)
        sk, ku, adjusted = cornish_fisher_domain_vec(sk, ku)
        n_adj = int(np.count_nonzero(adjusted[t_min:]))
        if n_adj:
            warnings.warn(f"cf: {n_adj} rows needed the monotonicity guard", ModelFitWarning, stacklevel=5)
        out: dict[str, tuple[np.ndarray | float, np.ndarray | float]] = {}
        for side, sgn in (("long", -1.0), ("short", 1.0)):
            q, e = cornish_fisher_var_es_arrays(level, sgn * sk, ku)
            out[side] = (np.asarray(q, dtype=float), np.asarray(e, dtype=float))
        return out
