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

import math
import warnings

import numpy as np
from scipy import integrate, stats

from margincal.errors import CalibrationError
from margincal.risk.base import (
    ModelFitWarning,
    Side,
    SubBarHorizonWarning,
    TailForecast,
    TailModel,
    check_level,
    filter_returns,
    overlapping_sums,
    sides_of,
    whole_bars,
)

# ---------------------------------------------------------------- closed forms


def normal_var_es(level: float, mu: float = 0.0, sigma: float = 1.0) -> tuple[float, float]:
    """VaR and ES of a loss ``N(mu, sigma^2)`` at ``level`` (upper tail)."""
    p = check_level(level)
    z = stats.norm.ppf(p)
    return float(mu + sigma * z), float(mu + sigma * stats.norm.pdf(z) / (1.0 - p))


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
    z = stats.norm.ppf(p)
    s = np.asarray(skew, dtype=float)
    k = np.asarray(exkurt, dtype=float)
    q = z + (z * z - 1) * s / 6 + (z**3 - 3 * z) * k / 24 - (2 * z**3 - 5 * z) * s**2 / 36
    es = stats.norm.pdf(z) * (1 + s * z / 6 + k * (z * z - 1) / 24 - s**2 * (2 * z * z - 1) / 36) / (1.0 - p)
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

    def __init__(self, *, sigma: str = "ewma", lam: float = 0.94, fit_lambda: bool = False, seed: int = 30,
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

    def fit(self, returns: object, bar_hours: float | None = None) -> ParametricModel:
        r = self._prepare(returns, bar_hours)
        f = filter_returns(r, self.sigma, self.lam, self.fit_lambda, self.seed, self.window)
        self.lam_ = f["lam"]
        self.residuals_ = f["residuals"]
        self.sigma_path_ = f["sigma_path"]
        self.sigma_next_ = f["sigma_next"]
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

    def forecast(self, horizon: object = 24.0, level: float = 0.99) -> TailForecast:
        self._check_fitted()
        level = check_level(level)
        hh, h = self._bars(horizon)
        shape, scale, eff = self._horizon_shape(h)
        per_side = {s: self._log_var_es(shape, scale, level, s) for s in sides_of(self.side)}
        return self._from_log_losses(per_side, level, hh, scale, eff)


class NormalModel(ParametricModel):
    """Normal (RiskMetrics with ``sigma="ewma"``) VaR/ES; symmetric, zero mean."""

    name = "normal"

    def _log_var_es(self, shape: dict[str, float], scale: float, level: float, side: str) -> tuple[float, float]:
        return normal_var_es(level, 0.0, scale)


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
                 sigma: str = "ewma", lam: float = 0.94, fit_lambda: bool = False, seed: int = 30,
                 window: int | None = None, scaling: str = "sqrt", side: Side = "both") -> None:
        super().__init__(sigma=sigma, lam=lam, fit_lambda=fit_lambda, seed=seed, window=window,
                         scaling=scaling, side=side)
        self.df = df
        self.df_min = df_min
        self.df_max = df_max

    def _fit_shape(self, x: np.ndarray) -> dict[str, float]:
        if self.df is not None:
            if not self.df > 2:
                raise CalibrationError(f"df is {self.df}; it must be > 2 for a volatility-scaled t")
            return {"df": float(self.df)}
        nu, _, _ = stats.t.fit(x, floc=0)
        nu = float(nu)
        if not np.isfinite(nu):
            raise CalibrationError("t: maximum-likelihood df is not finite")
        if nu < self.df_min or nu > self.df_max:
            clamped = min(max(nu, self.df_min), self.df_max)
            warnings.warn(f"t: fitted df {nu:.3g} clamped to {clamped:.3g}", ModelFitWarning, stacklevel=4)
            nu = clamped
        return {"df": nu}

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
