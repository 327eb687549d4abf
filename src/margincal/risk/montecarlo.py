"""Monte Carlo tail models: univariate (t or GARCH-t) and a t-copula portfolio model.

Univariate :class:`MonteCarloModel` (``make_model("mc")``)
-----------------------------------------------------------
* ``dist="t"``: EWMA-filtered residuals, Student-t degrees of freedom by scipy MLE
  (as :class:`margincal.risk.parametric.StudentTModel`), one-bar returns
  ``sigma_next * sqrt((nu-2)/nu) * T_nu``;
* ``dist="garch-t"``: GARCH(1,1) with standardised Student-t innovations fitted by
  ``arch`` (zero mean, returns in percent), simulated forward from the one-step
  variance forecast: ``e_t = s_t z_t``, ``s_{t+1}^2 = omega + alpha e_t^2 + beta s_t^2``.

``scaling="sqrt"``: one-bar draws times ``sqrt(h)``. ``scaling="direct"``: ``h``-bar
paths are simulated (sums of ``h`` i.i.d. t draws; for GARCH-t the variance
recursion runs along the path, so volatility clustering inside the horizon
counts). VaR/ES are empirical on the ``n_sims`` simulated LOG-return losses and
mapped to simple-return losses as in :mod:`margincal.risk.parametric` (VaR
exactly; ES as ``g(ES_log)``). Taking the ES of the simulated simple-return
losses directly would estimate ``E[exp(R) - 1 | tail]`` for a short, which is
infinite for a t tail: the sample value is then driven by a handful of draws
(for BTC, 10 days, sqrt scaling: 309% of notional with 100,000 draws).
The generator is ``numpy.random.default_rng(random_state)``, re-created at each
``forecast`` call, so a forecast is reproducible.

:class:`TCopulaMonteCarlo` (portfolios)
---------------------------------------
1. each column is EWMA-filtered (``filter="ewma"``) into residuals ``z_i``;
2. marginals: a Student-t per column (``scipy.stats.t.fit`` with ``floc=0``) or the
   empirical distribution of the residuals (``marginals="empirical"``, linear
   interpolation between order statistics, bounded by the observed extremes);
3. copula correlation from Kendall's tau, ``rho_ij = sin(pi tau_ij / 2)`` (exact for
   elliptical copulas), repaired to the nearest correlation matrix (Higham 2002)
   when the pairwise matrix is not PSD;
4. copula degrees of freedom by profile likelihood: the t-copula log density of the
   pseudo-observations ``u = rank / (n + 1)`` at the fixed correlation is maximised
   over ``nu`` in ``df_bounds`` (bounded Brent). ``df=`` fixes it instead.

Simulation: ``Y ~ N(0, R)``, ``W ~ chi2_nu / nu``, ``X = Y / sqrt(W)``,
``U = t_nu.cdf(X)``, ``z_i = F_i^-1(U_i)``, one-bar return ``sigma_next_i z_i``
(then ``sqrt(h)`` or ``h`` i.i.d. steps). Tail probabilities near 0 and 1 go through
``sf``/``isf`` so no precision is lost far in the tail.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import optimize, special, stats

from margincal.errors import CalibrationError, DataError
from margincal.risk.base import (
    Horizon,
    ModelFitWarning,
    Side,
    SubBarHorizonWarning,
    TailForecast,
    TailModel,
    check_choice,
    check_fitted,
    check_int,
    check_level,
    filter_returns,
    filtered_path,
    horizon_hours,
    infer_bar_hours,
    log_loss_to_simple,
    sides_of,
    store_filter,
    whole_bars,
)
from margincal.risk.measures import expected_shortfall, value_at_risk
from margincal.risk.parametric import clamp_df, fit_t_mle, standardized_t_scale
from margincal.risk.path import PATH_COLUMNS, inverted_cdf_index, tail_count
from margincal.units import RISKMETRICS, Decay


def _fit_t_df(x: np.ndarray, df_min: float = 2.1, df_max: float = 500.0,
              start: tuple[float, float] | None = None) -> tuple[float, tuple[float, float]]:
    """Clamped maximum-likelihood df and the raw ``(nu, scale)`` (for a warm start)."""
    mle = fit_t_mle(x, start)
    return clamp_df(mle[0], df_min, df_max), mle


class MonteCarloModel(TailModel):
    """Univariate Monte Carlo VaR/ES from a fitted t or GARCH-t (see module doc)."""

    name = "mc"

    _fitted_attr = "df_"

    def __init__(self, *, dist: str = "t", n_sims: int = 100_000, random_state: int = 12345,
                 sigma: str = "ewma", lam: Decay = RISKMETRICS, fit_lambda: bool = False, seed: int = 30,
                 window: int | None = None, scaling: str = "sqrt", side: Side = "both") -> None:
        self.dist = dist
        self.n_sims = n_sims
        self.random_state = random_state
        self.sigma = sigma
        self.lam = lam
        self.fit_lambda = fit_lambda
        self.seed = seed
        self.window = window
        self.scaling = scaling
        self.side = side

    def _validate(self) -> None:
        super()._validate()
        check_choice("dist", self.dist, ("t", "garch-t"))
        check_choice("sigma", self.sigma, ("ewma", "garch", "sample", "none"))
        check_int("n_sims", self.n_sims, 1000)
        check_int("random_state", self.random_state, 0)

    def fit(self, returns: ArrayLike, bar_hours: float | None = None) -> MonteCarloModel:
        r = self._prepare(returns, bar_hours)
        if self.dist == "t":
            store_filter(self, filter_returns(r, self.sigma, self.lam, self.fit_lambda, self.seed, self.window,
                                              self.bar_hours_))
            self.df_, _ = _fit_t_df(self.residuals_)
        else:
            from arch import arch_model

            x = r[-self.window:] if self.window else r
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                res = arch_model(100.0 * x, mean="Zero", vol="GARCH", p=1, q=1, dist="t",
                                 rescale=False).fit(disp="off")
            if res.convergence_flag != 0:
                warnings.warn(f"mc garch-t: arch optimiser flag {res.convergence_flag}", ModelFitWarning,
                              stacklevel=2)
            p = res.params
            self.garch_params_ = {"omega": float(p["omega"]) / 1e4, "alpha": float(p["alpha[1]"]),
                                  "beta": float(p["beta[1]"]), "nu": float(p["nu"])}
            self.df_ = self.garch_params_["nu"]
            if not self.df_ > 2:
                raise CalibrationError(f"mc garch-t: fitted nu {self.df_:.3g} <= 2 (infinite variance)")
            s2 = float(res.forecast(horizon=1, reindex=False).variance.to_numpy()[-1, 0]) / 1e4
            self.sigma_next_ = math.sqrt(s2)
            self.residuals_ = np.asarray(res.std_resid, dtype=float)
            self.filter_ = "garch"
        return self

    def _unit_tails(self, nu: float, level: float) -> dict[str, tuple[float, float]]:
        """Per-side log-loss (VaR, ES) of the unit one-bar draws ``sqrt((nu-2)/nu) T_nu`` (seeded)."""
        rng = np.random.default_rng(self.random_state)
        d = np.sort(standardized_t_scale(nu) * rng.standard_t(nu, int(self.n_sims)))
        # one sort serves both sides: the definitions of margincal.risk.measures on sorted draws
        m = d.size
        i = int(inverted_cdf_index(m, level))
        k, used = tail_count(m, level)
        tail = 1.0 - level
        out = {}
        for side, desc in (("long", -d), ("short", d[::-1])):  # losses, largest first
            var = float(desc[m - 1 - i])
            total = float(np.sum(desc[:k])) / m + ((tail - used) * float(desc[k]) if k < m and used < tail else 0.0)
            out[side] = (var, total / tail)
        return out

    def _path_fast(self, r: np.ndarray, bar_hours: float, hh: float, level: float,
                   refit: int) -> dict[str, np.ndarray] | None:
        """t fitted every ``refit`` rows (warm start), unit draws simulated once per fit, volatility every row.

        With common random numbers (the generator is re-seeded with ``random_state`` for every
        forecast, as ``forecast`` does) the simulated VaR/ES scale exactly with the volatility.
        """
        h = hh / bar_hours
        if (self.dist != "t" or self.fit_lambda or self.sigma == "garch"
                or (self.scaling == "direct" and h > 1.0 + 1e-12)):
            return None
        n = r.size
        sig, z, first, t_min = filtered_path(self, r, bar_hours, self.sigma)
        out = {c: np.full(n + 1, np.nan) for c in PATH_COLUMNS}
        start: tuple[float, float] | None = None
        unit: dict[str, tuple[float, float]] = {}
        sq = math.sqrt(h)
        for t in range(t_min, n + 1):
            if (t - t_min) % refit == 0:
                lo = first if self.window is None else max(first, t - int(self.window))
                x = z[lo:t] if self.sigma == "ewma" else z[lo:t] / sig[t]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ModelFitWarning)
                    nu, start = _fit_t_df(x, start=start)
                unit = self._unit_tails(nu, level)
            s = sig[t] * sq
            for side in sides_of(self.side):
                v = float(log_loss_to_simple(s * unit[side][0], side))
                e = float(log_loss_to_simple(s * unit[side][1], side))
                out[f"var_{side}"][t], out[f"es_{side}"][t] = v, max(e, v)
        return out

    def simulate(self, horizon: Horizon = 24.0) -> np.ndarray:
        """``n_sims`` simulated horizon log returns (reproducible: seeded with ``random_state``)."""
        self._check_fitted()
        _, h = self._bars(horizon)
        if h < 1.0 - 1e-12:
            warnings.warn(f"horizon is {h:.4g} bars (shorter than one bar); scaled down by sqrt(h).",
                          SubBarHorizonWarning, stacklevel=2)
        rng = np.random.default_rng(self.random_state)
        n = int(self.n_sims)
        nu = self.df_
        ts = standardized_t_scale(nu)
        if self.scaling == "sqrt" or h <= 1.0 + 1e-12:
            return self.sigma_next_ * math.sqrt(h) * ts * rng.standard_t(nu, n)
        hi = whole_bars(h)
        total = np.zeros(n)
        if self.dist == "t":
            for _ in range(hi):
                total += ts * rng.standard_t(nu, n)
            return self.sigma_next_ * total
        g = self.garch_params_
        s2 = np.full(n, self.sigma_next_**2)
        for _ in range(hi):
            e = np.sqrt(s2) * ts * rng.standard_t(nu, n)
            total += e
            s2 = g["omega"] + g["alpha"] * e * e + g["beta"] * s2
        return total

    def forecast(self, horizon: Horizon = 24.0, level: float = 0.99) -> TailForecast:
        self._check_fitted()
        level = check_level(level)
        hh, _ = self._bars(horizon)
        sims = self.simulate(horizon)
        per_side = {s: (value_at_risk(-sims if s == "long" else sims, level),
                        expected_shortfall(-sims if s == "long" else sims, level)) for s in sides_of(self.side)}
        return self._from_log_losses(per_side, level, hh, float(np.std(sims)), float(self.residuals_.size))


# ---------------------------------------------------------------- t copula


def t_copula_loglik(u: np.ndarray, corr: np.ndarray, df: float) -> float:
    """Log-likelihood of pseudo-observations ``u`` (n x d, in (0,1)) under a t copula."""
    n, d = u.shape
    x = stats.t.ppf(u, df)
    chol = np.linalg.cholesky(corr)
    y = np.linalg.solve(chol, x.T)  # d x n
    q = np.sum(y * y, axis=0)
    logdet = 2.0 * np.sum(np.log(np.diag(chol)))
    const = (special.gammaln((df + d) / 2) + (d - 1) * special.gammaln(df / 2)
             - d * special.gammaln((df + 1) / 2) - 0.5 * logdet)
    ll = n * const - (df + d) / 2 * np.sum(np.log1p(q / df)) + (df + 1) / 2 * np.sum(np.log1p(x * x / df))
    return float(ll)


def kendall_correlation(x: np.ndarray) -> np.ndarray:
    """``sin(pi tau / 2)`` from pairwise Kendall's tau (columns of ``x``)."""
    d = x.shape[1]
    out = np.eye(d)
    for i in range(d):
        for j in range(i + 1, d):
            tau = stats.kendalltau(x[:, i], x[:, j]).statistic
            out[i, j] = out[j, i] = math.sin(math.pi * float(tau) / 2.0)
    return out


def _t_to_marginal(xc: np.ndarray, nu_c: float, marg: dict[str, Any]) -> np.ndarray:
    """Map copula-scale t variates to the marginal through U = t_nu(x), keeping tail precision."""
    if marg["kind"] == "t":
        out = np.empty_like(xc)
        lo = xc <= 0
        out[lo] = stats.t.ppf(stats.t.cdf(xc[lo], nu_c), marg["df"])
        out[~lo] = stats.t.isf(stats.t.sf(xc[~lo], nu_c), marg["df"])
        return marg["scale"] * out
    u = stats.t.cdf(xc, nu_c)
    return np.interp(u, marg["probs"], marg["sorted"])


class TCopulaMonteCarlo:
    """Multivariate Monte Carlo with a t copula and t or empirical marginals (see module doc).

    Fitted attributes: ``columns_``, ``corr_`` (copula correlation, DataFrame),
    ``df_`` (copula degrees of freedom), ``marginals_`` (per column), ``sigma_next_``
    (per-column EWMA volatility forecast), ``residuals_`` (DataFrame), ``repaired_``
    (whether the Kendall matrix needed the nearest-correlation repair).
    """

    name = "tcopula"

    def __init__(self, *, df: float | None = None, marginals: str = "t", filter: str = "ewma",
                 lam: Decay = RISKMETRICS, seed: int = 30, df_bounds: tuple[float, float] = (2.05, 100.0),
                 n_sims: int = 100_000, random_state: int = 12345, scaling: str = "sqrt") -> None:
        self.df = df
        self.marginals = marginals
        self.filter = filter
        self.lam = lam
        self.seed = seed
        self.df_bounds = df_bounds
        self.n_sims = n_sims
        self.random_state = random_state
        self.scaling = scaling

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.endswith("_") and not k.startswith("_")}

    def fit(self, returns: pd.DataFrame, bar_hours: float | None = None) -> TCopulaMonteCarlo:
        from margincal.dependence.nearest import is_correlation_matrix, nearest_correlation

        check_choice("marginals", self.marginals, ("t", "empirical"))
        check_choice("filter", self.filter, ("ewma", "none"))
        check_choice("scaling", self.scaling, ("sqrt", "direct"))
        if not isinstance(returns, pd.DataFrame) or returns.shape[1] < 2:
            raise DataError("TCopulaMonteCarlo.fit needs a DataFrame of log returns with >= 2 columns")
        if returns.isna().to_numpy().any():
            bad = returns.columns[returns.isna().any()].tolist()
            raise DataError(f"returns has NaN in columns {bad}; align the instruments first (e.g. .dropna())")
        x = returns.to_numpy(dtype=float)
        if not np.all(np.isfinite(x)):
            raise DataError("returns has infinite values")
        if x.shape[0] < 100:
            raise CalibrationError(f"t copula: need at least 100 aligned rows, got {x.shape[0]}")
        idx = returns.index
        if bar_hours is None:
            bar_hours = infer_bar_hours(idx) if isinstance(idx, pd.DatetimeIndex) else 24.0
        self.bar_hours_ = float(bar_hours)
        self.columns_ = [str(c) for c in returns.columns]
        self.window_ = (str(idx[0]), str(idx[-1])) if isinstance(idx, pd.DatetimeIndex) else (None, None)
        self.n_obs_ = x.shape[0]
        sig = "ewma" if self.filter == "ewma" else "sample"
        fs = [filter_returns(x[:, j], sig, self.lam, False, self.seed, None, self.bar_hours_)
              for j in range(x.shape[1])]
        z = np.column_stack([f["residuals"] for f in fs])
        self.sigma_next_ = np.array([f["sigma_next"] for f in fs])
        self.residuals_ = pd.DataFrame(z, columns=self.columns_, index=idx[-z.shape[0]:])
        n = z.shape[0]
        self.marginals_ = []
        for j in range(z.shape[1]):
            if self.marginals == "t":
                nu, _, sc = stats.t.fit(z[:, j], floc=0)
                self.marginals_.append({"kind": "t", "df": float(nu), "scale": float(sc)})
            else:
                zs = np.sort(z[:, j])
                self.marginals_.append({"kind": "empirical", "sorted": zs, "probs": np.arange(1, n + 1) / (n + 1)})
        rho = kendall_correlation(z)
        self.repaired_ = not is_correlation_matrix(rho, tol=1e-12) or np.linalg.eigvalsh(rho).min() < 1e-8
        if self.repaired_:
            rho = np.asarray(nearest_correlation(rho, eig_floor=1e-8))
        self.corr_ = pd.DataFrame(rho, index=self.columns_, columns=self.columns_)
        self.chol_ = np.linalg.cholesky(rho)
        u = (stats.rankdata(z, axis=0)) / (n + 1.0)
        self.pseudo_obs_ = u
        if self.df is not None:
            if not self.df > 0:
                raise CalibrationError(f"df is {self.df}; it must be > 0")
            self.df_ = float(self.df)
        else:
            lo, hi = self.df_bounds
            res = optimize.minimize_scalar(lambda v: -t_copula_loglik(u, rho, v), bounds=(lo, hi),
                                           method="bounded", options={"xatol": 1e-3})
            self.df_ = float(res.x)
        self.loglik_ = t_copula_loglik(u, rho, self.df_)
        return self

    def _check_fitted(self) -> None:
        check_fitted(self, "corr_")

    def _steps(self, horizon: Horizon) -> tuple[float, float, int]:
        hh = horizon_hours(horizon)
        h = hh / self.bar_hours_
        if h < 1.0 - 1e-12:
            warnings.warn(f"horizon is {h:.4g} bars (shorter than one bar); scaled down by sqrt(h).",
                          SubBarHorizonWarning, stacklevel=3)
        if self.scaling == "sqrt" or h <= 1.0 + 1e-12:
            return hh, math.sqrt(h), 1
        return hh, 1.0, whole_bars(h)

    def _one_bar_from_gaussians(self, y_std: np.ndarray, w_gauss: np.ndarray) -> np.ndarray:
        """One-bar log returns from iid N(0,1) arrays: ``y_std`` (m x d), ``w_gauss`` (m,)."""
        nu = self.df_
        y = y_std @ self.chol_.T
        # W = chi2_nu / nu through its quantile function, precise in both tails
        w = np.where(w_gauss < 0, stats.chi2.ppf(stats.norm.cdf(w_gauss), nu),
                     stats.chi2.isf(stats.norm.sf(w_gauss), nu)) / nu
        xc = y / np.sqrt(np.maximum(w, 1e-300))[:, None]
        out = np.empty_like(xc)
        for j, marg in enumerate(self.marginals_):
            out[:, j] = _t_to_marginal(xc[:, j], nu, marg)
        return out * self.sigma_next_

    def simulate(self, n: int | None = None, horizon: Horizon = 24.0) -> pd.DataFrame:
        """``n`` joint horizon log returns (columns = instruments); seeded with ``random_state``."""
        self._check_fitted()
        n = int(self.n_sims if n is None else n)
        _, mult, steps = self._steps(horizon)
        rng = np.random.default_rng(self.random_state)
        d = len(self.columns_)
        total = np.zeros((n, d))
        for _ in range(steps):
            total += self._one_bar_from_gaussians(rng.standard_normal((n, d)), rng.standard_normal(n))
        return pd.DataFrame(total * mult, columns=self.columns_)

    def _weights(self, weights: Sequence[float] | pd.Series | dict[str, float]) -> np.ndarray:
        if isinstance(weights, dict):
            weights = pd.Series(weights)
        if isinstance(weights, pd.Series):
            unknown = set(map(str, weights.index)) - set(self.columns_)
            if unknown:
                raise DataError(f"weights name instruments not in the fitted data: {sorted(unknown)}")
            w = np.array([float(weights.get(c, 0.0)) for c in self.columns_])
        else:
            w = np.asarray(weights, dtype=float).ravel()
        if w.size != len(self.columns_):
            raise DataError(f"weights has {w.size} entries; the model has {len(self.columns_)} instruments")
        if not np.all(np.isfinite(w)) or not np.any(w != 0):
            raise DataError("weights must be finite and not all zero")
        return w

    @staticmethod
    def portfolio_losses(joint_log_returns: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Loss of notional weights ``w`` (long > 0, short < 0): ``-sum_i w_i (exp(R_i) - 1)``."""
        return -(np.expm1(joint_log_returns) @ weights)

    def portfolio_forecast(self, weights: Sequence[float] | pd.Series | dict[str, float],
                           horizon: Horizon = 24.0, level: float = 0.99) -> TailForecast:
        """VaR/ES of the portfolio loss, in the units of ``weights``.

        ``weights`` are signed notionals (long > 0, short < 0), e.g. fractions of the
        account's gross notional; the result is then a fraction of that notional.
        """
        level = check_level(level)
        w = self._weights(weights)
        sims = self.simulate(horizon=horizon).to_numpy()
        loss = self.portfolio_losses(sims, w)
        hh = horizon_hours(horizon)
        var, es = value_at_risk(loss, level), expected_shortfall(loss, level)
        return TailForecast(
            model=self.name,
            params={**self.get_params(), "weights": dict(zip(self.columns_, w.tolist(), strict=True)),
                    "copula_df": self.df_},
            level=level,
            horizon_hours=hh,
            var=var,
            es=max(es, var),
            sigma=float(np.std(loss)),
            side="portfolio",
            n_obs=self.n_obs_,
            effective_n=float(self.residuals_.shape[0]),
            window_start=self.window_[0],
            window_end=self.window_[1],
            instrument="+".join(self.columns_),
        )

    def loss_function(self, weights: Sequence[float] | pd.Series | dict[str, float],
                      horizon: Horizon = 24.0) -> GaussianLossFunction:
        """The portfolio loss as a function of i.i.d. standard normals (for importance sampling).

        Each bar of the horizon uses ``d + 1`` normals: ``d`` for the copula's Gaussian part
        and one mapped to the chi-square mixing variable; ``dim = steps * (d + 1)``.
        """
        self._check_fitted()
        w = self._weights(weights)
        _, mult, steps = self._steps(horizon)
        d = len(self.columns_)

        def f(zs: np.ndarray) -> np.ndarray:
            zs = np.atleast_2d(zs)
            total = np.zeros((zs.shape[0], d))
            for k in range(steps):
                blk = zs[:, k * (d + 1):(k + 1) * (d + 1)]
                total += self._one_bar_from_gaussians(blk[:, :d], blk[:, d])
            return self.portfolio_losses(total * mult, w)

        return GaussianLossFunction(f, steps * (d + 1), f"t-copula portfolio loss, {steps} step(s)")


class GaussianLossFunction:
    """A loss ``L = f(Z)`` of ``dim`` i.i.d. standard normals ``Z`` (rows of an ``(n, dim)`` array)."""

    def __init__(self, fn: Any, dim: int, description: str = "") -> None:
        self.fn = fn
        self.dim = int(dim)
        self.description = description

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(z), dtype=float)

    def __repr__(self) -> str:
        return f"GaussianLossFunction(dim={self.dim}, {self.description!r})"
