"""Implied volatility surfaces: raw SVI slices, SSVI, arbitrage checks, Deribit loaders.

Notation: ``k = ln(K / F)`` log-moneyness against the forward ``F`` of the
expiry, ``T`` years to expiry (ACT/365 from the snapshot time), ``w = iv^2 T``
total implied variance.

Raw SVI (Gatheral, 2004), one expiry::

    w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))

with ``b >= 0``, ``|rho| < 1``, ``sigma > 0`` and ``a + b sigma sqrt(1 - rho^2) >= 0``
(the minimum of ``w`` is non-negative). :func:`fit_svi` fits it by
:func:`scipy.optimize.least_squares` on total variance, with the last
constraint made a box bound by fitting ``v_min = a + b sigma sqrt(1 - rho^2)``
instead of ``a``; several starting points, best one kept.

SSVI (Gatheral & Jacquier, 2014), whole surface::

    w(k, theta_T) = theta_T / 2 (1 + rho phi k + sqrt((phi k + rho)^2 + 1 - rho^2)),   phi(theta) = eta theta^(-gamma)

``theta_T`` is the ATM total variance of expiry ``T``; it is fitted per expiry as
non-decreasing in ``T`` (cumulative non-negative increments) together with
``rho, eta, gamma`` (``0 < gamma < 1``). With the power-law ``phi`` and a
non-decreasing ``theta`` the surface is free of calendar arbitrage (GJ 2014,
Thm 4.1); butterfly freedom needs ``theta phi (1 + |rho|) < 4`` and
``theta phi^2 (1 + |rho|) <= 4`` (Thm 4.2), which is checked, not imposed.

Arbitrage checks return the violations (an empty DataFrame when clean):

* butterfly: Gatheral-Jacquier's density condition per slice
  ``g(k) = (1 - k w'/(2w))^2 - w'^2/4 (1/w + 1/4) + w''/2 >= 0``
  (the risk-neutral density is ``g(k)/sqrt(2 pi w) exp(-d_-^2/2)``);
* calendar: ``w(k, T)`` non-decreasing in ``T`` at every fixed ``k``.

Interpolation ``implied_vol(k or strike, T)``: SSVI directly (``theta`` linear
in ``T`` between expiries); for raw-SVI slices total variance is interpolated
linearly in ``T`` at fixed ``k``. Before the first expiry ``w = w_1 T / T_1``,
after the last ``w = w_N T / T_N`` (flat implied vol). Strikes are converted
with the forward interpolated linearly in ``T`` (flat outside).

Deribit loaders (:func:`load_deribit_snapshot`) turn the bundled snapshots into
a tidy quote table: ``expiry, T, strike, option_type, forward, k, iv, w``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import optimize

from margincal import datasets
from margincal.errors import (
    CalibrationError,
    ConfigError,
    DataError,
    MargincalWarning,
    check_choice,
    check_fitted,
    check_int,
    check_number,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

YEAR_DAYS = 365.0
DEFAULT_K_GRID = np.linspace(-1.5, 1.5, 601)


class QuoteFilterWarning(MargincalWarning):
    """Quotes were dropped while loading an option snapshot (the message says how many and why)."""


# =========================================================================== raw SVI
@dataclass(frozen=True)
class SVIParams:
    """Raw SVI parameters of one expiry (total variance)."""

    a: float
    b: float
    rho: float
    m: float
    sigma: float

    def __post_init__(self) -> None:
        if not (self.b >= 0 and abs(self.rho) < 1 and self.sigma > 0):
            raise ConfigError(f"SVI parameters {self}: need b >= 0, |rho| < 1, sigma > 0")

    def as_tuple(self) -> tuple[float, float, float, float, float]:
        return (self.a, self.b, self.rho, self.m, self.sigma)

    @property
    def min_total_variance(self) -> float:
        """``a + b sigma sqrt(1 - rho^2)``, the minimum of ``w`` over ``k``."""
        return self.a + self.b * self.sigma * math.sqrt(1.0 - self.rho**2)

    def total_variance(self, k: ArrayLike) -> np.ndarray:
        return svi_total_variance(k, *self.as_tuple())

    def derivatives(self, k: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``w, dw/dk, d2w/dk2`` at ``k`` (closed form)."""
        x = np.asarray(k, dtype=float) - self.m
        r = np.sqrt(x * x + self.sigma**2)
        w = self.a + self.b * (self.rho * x + r)
        return w, self.b * (self.rho + x / r), self.b * self.sigma**2 / r**3

    def g(self, k: ArrayLike) -> np.ndarray:
        """Gatheral-Jacquier density function ``g(k)``; the slice is butterfly-free iff ``g >= 0`` everywhere."""
        w, w1, w2 = self.derivatives(k)
        return _g_from_derivatives(np.asarray(k, dtype=float), w, w1, w2)


def svi_total_variance(k: ArrayLike, a: float, b: float, rho: float, m: float, sigma: float) -> np.ndarray:
    """Raw SVI total implied variance ``a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))``."""
    x = np.asarray(k, dtype=float) - m
    return a + b * (rho * x + np.sqrt(x * x + sigma * sigma))


def _g_from_derivatives(k: np.ndarray, w: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (1.0 - k * w1 / (2.0 * w)) ** 2 - 0.25 * w1**2 * (1.0 / w + 0.25) + 0.5 * w2
    return np.where(w > 0, g, -np.inf)  # w <= 0 is itself an arbitrage (no density)


def g_function_reference(w_func: Callable[[np.ndarray], np.ndarray], k: ArrayLike, dk: float = 1e-4) -> np.ndarray:
    """``g(k)`` with central finite differences of any total-variance function (for tests)."""
    k = np.asarray(k, dtype=float)
    w = w_func(k)
    w1 = (w_func(k + dk) - w_func(k - dk)) / (2 * dk)
    w2 = (w_func(k + dk) - 2 * w + w_func(k - dk)) / dk**2
    return _g_from_derivatives(k, w, w1, w2)


@dataclass(frozen=True)
class SVIFit:
    """Result of :func:`fit_svi`: parameters and fit quality on total variance (and on vol when ``T`` is known)."""

    params: SVIParams
    rmse_w: float
    rmse_iv: float
    n: int
    T: float
    success: bool


def _b_cap(rho: float, b_max: float, lee: bool) -> float:
    return min(b_max, 2.0 / (1.0 + abs(rho))) if lee else b_max


def _svi_from_x(x: np.ndarray, b_max: float, lee: bool) -> tuple[float, float, float, float, float]:
    """Map the fitted vector ``(v_min, u, rho, m, sigma)`` to raw SVI ``(a, b, rho, m, sigma)``.

    ``b = u * b_cap(rho)`` with ``u in [0, 1]``: with ``lee`` the cap is
    ``min(b_max, 2 / (1 + |rho|))``, Roger Lee's moment bound on the wings
    (``w(k) <= 2|k|`` asymptotically), so a box bound on ``u`` imposes it exactly.
    """
    vmin, u, rho, m, sig = (float(v) for v in x)
    b = u * _b_cap(rho, b_max, lee)
    a = vmin - b * sig * math.sqrt(max(0.0, 1.0 - rho * rho))
    return a, b, rho, m, sig


def _grid_starts(k: np.ndarray, w: np.ndarray, sw: np.ndarray, n_best: int) -> list[tuple[float, float, float, float, float]]:
    """Quasi-explicit starting points (Zeliade, 2009): for fixed ``(m, sigma)`` SVI is linear in
    ``(a, rho b sigma, b sigma)``; solve that least squares on a grid of ``(m, sigma)`` (vectorised) and
    return the raw parameters of the ``n_best`` grid points with the smallest error."""
    kmin, kmax = float(k.min()), float(k.max())
    span = max(kmax - kmin, 1e-3)
    ms = np.linspace(kmin - 0.25 * span, kmax + 0.25 * span, 17)
    sigs = np.geomspace(1e-3 * max(span, 0.05), 2.0 * max(span, 0.05), 15)
    M, S = (a.ravel() for a in np.meshgrid(ms, sigs))
    Y = (k[None, :] - M[:, None]) / S[:, None]
    A = np.stack([np.ones_like(Y), Y, np.sqrt(Y * Y + 1.0)], axis=-1) * sw[None, :, None]
    bw = sw * w
    AtA = np.einsum("gni,gnj->gij", A, A) + 1e-14 * np.eye(3)
    Atb = np.einsum("gni,n->gi", A, bw)
    coef = np.linalg.solve(AtA, Atb[..., None])[..., 0]
    sse = np.sum((np.einsum("gni,gi->gn", A, coef) - bw[None, :]) ** 2, axis=1)
    a, d, c = coef.T
    valid = (c > 0) & (np.abs(d) < c)
    sse = np.where(valid, sse, np.inf)
    order = np.argsort(sse)[:n_best]
    out = []
    for g in order:
        if not np.isfinite(sse[g]):
            continue
        b = c[g] / S[g]
        out.append((float(a[g]), float(b), float(d[g] / c[g]), float(M[g]), float(S[g])))
    return out


def fit_svi(
    k: ArrayLike,
    w: ArrayLike,
    *,
    T: float | None = None,
    weights: ArrayLike | None = None,
    space: str = "w",
    lee_bound: bool = True,
    b_max: float = 5.0,
    sigma_bounds: tuple[float, float] = (1e-4, 5.0),
) -> SVIFit:
    """Fit raw SVI to one slice of total implied variances ``w`` at log-moneyness ``k``.

    Least squares (``scipy.optimize.least_squares``, trust-region reflective)
    over ``(v_min, u, rho, m, sigma)`` with box bounds: ``v_min = a + b sigma
    sqrt(1 - rho^2) in [0, max w]`` (non-negative minimum variance),
    ``b = u * b_cap``, ``u in [0, 1]`` (``b_cap = min(b_max, 2/(1+|rho|))`` with
    ``lee_bound``, else ``b_max``), ``|rho| <= 0.999``, ``m`` within the quoted
    ``k`` range widened by 1, ``sigma`` in ``sigma_bounds``. Starting points:
    the best points of a vectorised quasi-explicit grid search plus a few
    fixed shapes; the lowest-cost fit is kept.

    ``space="w"`` (default) fits total variance, ``space="iv"`` fits implied
    vol ``sqrt(w/T)`` (needs ``T``). ``T`` also gives ``rmse_iv`` (decimal vol:
    0.01 = 1 vol point).
    """
    kk = np.asarray(k, dtype=float).ravel()
    ww = np.asarray(w, dtype=float).ravel()
    if kk.size != ww.size:
        raise DataError(f"k has {kk.size} values and w {ww.size}; they must be aligned")
    if space not in ("w", "iv"):
        raise ConfigError(f"space is {space!r}; it must be 'w' (total variance) or 'iv' (implied vol)")
    if space == "iv" and (T is None or T <= 0):
        raise ConfigError("space='iv' needs T > 0 (years)")
    ok = np.isfinite(kk) & np.isfinite(ww) & (ww > 0)
    if ok.sum() < 5:
        raise DataError(f"only {int(ok.sum())} usable quotes (finite k, w > 0); raw SVI has 5 parameters and needs at least 5")
    wt = np.ones(kk.size) if weights is None else np.asarray(weights, dtype=float).ravel()
    kk, ww, wt = kk[ok], ww[ok], wt[ok]
    if np.any(wt < 0) or not np.all(np.isfinite(wt)):
        raise DataError("weights must be finite and >= 0")
    sw = np.sqrt(wt)
    kmin, kmax = float(kk.min()), float(kk.max())
    lo = np.array([0.0, 0.0, -0.999, kmin - 1.0, sigma_bounds[0]])
    hi = np.array([float(ww.max()), 1.0, 0.999, kmax + 1.0, sigma_bounds[1]])
    iv_q = np.sqrt(ww / T) if space == "iv" else None

    def resid(x: np.ndarray) -> np.ndarray:
        wm = svi_total_variance(kk, *_svi_from_x(x, b_max, lee_bound))
        if space == "iv":
            return sw * (np.sqrt(np.maximum(wm, 0.0) / T) - iv_q)
        return sw * (wm - ww)

    def to_x(a: float, b: float, rho: float, m: float, sig: float) -> np.ndarray:
        rho = float(np.clip(rho, -0.99, 0.99))
        sig = float(np.clip(sig, *sigma_bounds))
        u = b / _b_cap(rho, b_max, lee_bound)
        vmin = a + b * sig * math.sqrt(1.0 - rho * rho)
        return np.clip(np.array([vmin, u, rho, m, sig]), lo + 1e-9, hi - 1e-9)

    slope = max((ww.max() - ww.min()) / max(kmax - kmin, 1e-6), 1e-4)
    starts = [to_x(*p) for p in _grid_starts(kk, ww, sw, n_best=4)]
    for m0 in (float(kk[np.argmin(ww)]), 0.0):
        for rho0 in (-0.5, 0.0, 0.5):
            starts.append(to_x(0.9 * ww.min(), slope, rho0, m0, 0.1))
    best = None
    for x0 in starts:
        r = optimize.least_squares(resid, x0, bounds=(lo, hi), method="trf", x_scale="jac", max_nfev=2000)
        if best is None or r.cost < best.cost:
            best = r
    if best is None:  # pragma: no cover
        raise CalibrationError("SVI fit failed from every starting point")
    p = SVIParams(*_svi_from_x(best.x, b_max, lee_bound))
    fitted = p.total_variance(kk)
    rmse_w = float(np.sqrt(np.mean((fitted - ww) ** 2)))
    rmse_iv = math.nan
    if T is not None:
        rmse_iv = float(np.sqrt(np.mean((np.sqrt(np.maximum(fitted, 0) / T) - np.sqrt(ww / T)) ** 2)))
    return SVIFit(params=p, rmse_w=rmse_w, rmse_iv=rmse_iv, n=int(kk.size), T=math.nan if T is None else float(T),
                  success=bool(best.success))


# =========================================================================== SSVI
def ssvi_phi(theta: ArrayLike, eta: float, gamma: float) -> np.ndarray:
    """Power-law SSVI curvature ``phi(theta) = eta theta^(-gamma)``."""
    return eta * np.asarray(theta, dtype=float) ** (-gamma)


def ssvi_total_variance(k: ArrayLike, theta: ArrayLike, rho: float, eta: float, gamma: float) -> np.ndarray:
    """SSVI ``w = theta/2 (1 + rho phi k + sqrt((phi k + rho)^2 + 1 - rho^2))`` (arrays broadcast)."""
    k = np.asarray(k, dtype=float)
    th = np.asarray(theta, dtype=float)
    phi = ssvi_phi(th, eta, gamma)
    return 0.5 * th * (1.0 + rho * phi * k + np.sqrt((phi * k + rho) ** 2 + 1.0 - rho * rho))


def ssvi_slice_to_svi(theta: float, rho: float, eta: float, gamma: float) -> SVIParams:
    """The raw SVI parameters of one SSVI slice (Gatheral-Jacquier 2014, Lemma 3.2).

    ``a = theta (1 - rho^2) / 2``, ``b = theta phi / 2``, ``m = -rho / phi``,
    ``sigma = sqrt(1 - rho^2) / phi``, ``rho`` unchanged.
    """
    phi = float(ssvi_phi(theta, eta, gamma))
    return SVIParams(a=0.5 * theta * (1 - rho * rho), b=0.5 * theta * phi, rho=rho, m=-rho / phi,
                     sigma=math.sqrt(1 - rho * rho) / phi)


# =========================================================================== quotes
_REQUIRED = ("T", "k", "w")


def _check_quotes(quotes: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(quotes, pd.DataFrame):
        raise DataError(f"quotes is a {type(quotes).__name__}; a DataFrame from load_deribit_snapshot() is needed")
    q = quotes.copy()
    if "w" not in q.columns and {"iv", "T"} <= set(q.columns):
        q["w"] = q["iv"].astype(float) ** 2 * q["T"].astype(float)
    missing = [c for c in _REQUIRED if c not in q.columns]
    if missing:
        raise DataError(f"quotes has no {missing} column(s); need T (years), k = ln(K/F) and w (or iv)")
    bad = ~np.isfinite(q[list(_REQUIRED)].to_numpy(float)).all(axis=1) | (q["T"] <= 0) | (q["w"] <= 0)
    if bad.any():
        raise DataError(f"quotes: {int(bad.sum())} row(s) with non-finite k/T/w or T <= 0 or w <= 0; filter them first")
    return q


def _interp_forward(Ts: np.ndarray, Fs: np.ndarray, T: np.ndarray) -> np.ndarray:
    return np.interp(T, Ts, Fs)  # flat outside the quoted expiries


class _SurfaceBase:
    """Shared interpolation in strike and time; subclasses provide ``_w_at_expiries(k)``."""

    expiries_T_: np.ndarray
    forwards_: np.ndarray

    def _require_fit(self) -> None:
        check_fitted(self, "expiries_T_", "fit(quotes)")

    def _w_at_expiries(self, k: np.ndarray) -> np.ndarray:  # (n_expiries, *k.shape)
        raise NotImplementedError

    def total_variance(self, k: ArrayLike, T: ArrayLike) -> np.ndarray:
        """Total implied variance at log-moneyness ``k`` and time ``T`` (years); arrays broadcast."""
        self._require_fit()
        k, T = np.broadcast_arrays(np.asarray(k, dtype=float), np.asarray(T, dtype=float))
        if np.any(T <= 0):
            raise DataError("T must be > 0 years")
        Ts = self.expiries_T_
        W = self._w_at_expiries(k)  # (n, *shape)
        j = np.clip(np.searchsorted(Ts, T, side="right") - 1, 0, Ts.size - 1)  # last expiry <= T
        jn = np.minimum(j + 1, Ts.size - 1)
        take = lambda idx: np.take_along_axis(W, idx[None, ...], axis=0)[0]  # noqa: E731
        w_lo, w_hi = take(j), take(jn)
        T_lo, T_hi = Ts[j], Ts[jn]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(T_hi > T_lo, (T - T_lo) / (T_hi - T_lo), 0.0)
        inside = w_lo + frac * (w_hi - w_lo)
        before = take(np.zeros_like(j)) * T / Ts[0]
        after = take(np.full_like(j, Ts.size - 1)) * T / Ts[-1]
        return np.where(Ts[0] > T, before, np.where(Ts[-1] < T, after, inside))

    def implied_vol(self, k: ArrayLike | None = None, T: ArrayLike | None = None, *,
                    strike: ArrayLike | None = None) -> np.ndarray:
        """Implied vol (decimal, annualised) at log-moneyness ``k`` or at ``strike``, time ``T`` (years)."""
        self._require_fit()
        if T is None:
            raise ConfigError("T (years to expiry) is required")
        if (k is None) == (strike is None):
            raise ConfigError("give exactly one of k (log-moneyness) or strike")
        T_arr = np.asarray(T, dtype=float)
        if strike is not None:
            K = np.asarray(strike, dtype=float)
            if np.any(K <= 0):
                raise DataError("strike must be > 0")
            k = np.log(K / _interp_forward(self.expiries_T_, self.forwards_, T_arr))
        assert k is not None  # exactly one of k and strike, checked above
        w = self.total_variance(k, T_arr)
        return np.sqrt(np.maximum(w, 0.0) / T_arr)

    def slice_params(self) -> list[tuple[float, SVIParams]]:
        raise NotImplementedError


class SVISurface(_SurfaceBase):
    """Raw SVI fitted per expiry, total variance interpolated linearly in ``T`` (sklearn style).

    ``fit(quotes)`` needs columns ``T``, ``k`` and ``w`` (or ``iv``); ``forward``
    and ``expiry`` are used when present. Attributes: ``slices_`` (DataFrame
    per expiry: T, forward, a, b, rho, m, sigma, n, rmse_w, rmse_iv),
    ``expiries_T_``, ``forwards_``, ``k_ranges_`` (quoted k range per expiry),
    ``rmse_iv_`` (all quotes). ``space``, ``lee_bound``, ``b_max``: see :func:`fit_svi`.
    """

    def __init__(self, *, min_quotes: int = 6, space: str = "w", lee_bound: bool = True, b_max: float = 5.0) -> None:
        self.min_quotes = min_quotes
        self.space = space
        self.lee_bound = lee_bound
        self.b_max = b_max

    def fit(self, quotes: pd.DataFrame) -> SVISurface:
        check_int("min_quotes", self.min_quotes, 1)  # below 5 (raw SVI's parameter count) means 5
        check_choice("space", self.space, ("w", "iv"))
        check_number("b_max", self.b_max, low=0.0)
        if not isinstance(self.lee_bound, bool):
            raise ConfigError(f"lee_bound is {self.lee_bound!r}; it must be True or False")
        q = _check_quotes(quotes)
        rows, params = [], []
        sq_err, n_tot = 0.0, 0
        for T, g in q.groupby("T", sort=True):
            if len(g) < max(5, int(self.min_quotes)):
                warnings.warn(f"expiry T={T:.5f}y has {len(g)} quotes (< {self.min_quotes}); slice skipped",
                              QuoteFilterWarning, stacklevel=2)
                continue
            f = fit_svi(g["k"], g["w"], T=float(T), space=self.space, lee_bound=self.lee_bound, b_max=self.b_max)
            params.append(f.params)
            rows.append({
                "expiry": g["expiry"].iloc[0] if "expiry" in g else pd.NaT, "T": float(T),
                "forward": float(g["forward"].median()) if "forward" in g else math.nan,
                **dict(zip(("a", "b", "rho", "m", "sigma"), f.params.as_tuple(), strict=True)),
                "n": f.n, "k_min": float(g["k"].min()), "k_max": float(g["k"].max()),
                "rmse_w": f.rmse_w, "rmse_iv": f.rmse_iv,
            })
            sq_err += f.rmse_iv**2 * f.n
            n_tot += f.n
        if not rows:
            raise CalibrationError("no expiry had enough quotes to fit an SVI slice")
        self.slices_ = pd.DataFrame(rows)
        self.params_ = params
        self.expiries_T_ = self.slices_["T"].to_numpy(float)
        self.forwards_ = self.slices_["forward"].to_numpy(float)
        self.k_ranges_ = self.slices_[["k_min", "k_max"]].to_numpy(float)
        self.rmse_iv_ = math.sqrt(sq_err / n_tot)
        return self

    def _w_at_expiries(self, k: np.ndarray) -> np.ndarray:
        return np.stack([p.total_variance(k) for p in self.params_])

    def slice_params(self) -> list[tuple[float, SVIParams]]:
        self._require_fit()
        return list(zip(self.expiries_T_.tolist(), self.params_, strict=True))


class SSVISurface(_SurfaceBase):
    """SSVI surface with power-law ``phi`` (sklearn style).

    ``fit(quotes)`` (columns ``T``, ``k``, ``w`` or ``iv``; ``forward`` used when
    present): least squares over ``rho, eta, gamma`` and one ``theta`` per
    expiry, ``theta`` non-decreasing in ``T``. ``space="iv"`` (default) fits
    implied vol, every quote equally; ``space="w"`` fits total variance, where
    the short expiries (tiny ``w``) weigh almost nothing and end up 10-25 vol
    points off on the bundled Deribit snapshots. Attributes:
    ``rho_, eta_, gamma_``, ``theta_`` (Series by T), ``expiries_T_``,
    ``forwards_``, ``k_ranges_``, ``rmse_iv_``, ``rmse_w_``, ``residuals_``
    (per quote, in vol), ``by_expiry_`` (n and RMSE in vol per expiry).
    """

    def __init__(self, *, min_quotes: int = 3, space: str = "iv") -> None:
        self.min_quotes = min_quotes
        self.space = space

    def fit(self, quotes: pd.DataFrame) -> SSVISurface:
        check_choice("space", self.space, ("w", "iv"))
        check_int("min_quotes", self.min_quotes, 1)
        q = _check_quotes(quotes)
        counts = q.groupby("T")["k"].transform("size")
        q = q[counts >= int(self.min_quotes)]
        Ts = np.sort(q["T"].unique())
        if Ts.size == 0:
            raise CalibrationError("no expiry has enough quotes to fit SSVI")
        idx = np.searchsorted(Ts, q["T"].to_numpy(float))
        k, w = q["k"].to_numpy(float), q["w"].to_numpy(float)
        # starting thetas: ATM total variance interpolated in k per expiry, made non-decreasing
        th0 = np.array([np.interp(0.0, *_sorted_xy(k[idx == i], w[idx == i])) for i in range(Ts.size)])
        th0 = np.maximum.accumulate(np.maximum(th0, 1e-8))
        inc0 = np.diff(np.concatenate([[0.0], th0]))
        n = Ts.size
        lo = np.concatenate([[-0.999, 1e-4, 1e-3], np.full(n, 0.0)])
        hi = np.concatenate([[0.999, 50.0, 0.999], np.full(n, np.inf)])
        lo[3] = 1e-10  # first theta > 0

        def unpack(x: np.ndarray) -> tuple[float, float, float, np.ndarray]:
            return float(x[0]), float(x[1]), float(x[2]), np.cumsum(x[3:])

        Tq = Ts[idx]
        iv_q = np.sqrt(w / Tq)

        def resid(x: np.ndarray) -> np.ndarray:
            rho, eta, gam, th = unpack(x)
            wm = ssvi_total_variance(k, th[idx], rho, eta, gam)
            if self.space == "iv":
                return np.sqrt(np.maximum(wm, 0.0) / Tq) - iv_q
            return wm - w

        best = None
        for rho0 in (-0.3, 0.0, 0.3):
            for eta0, g0 in ((0.5, 0.4), (1.5, 0.3)):
                x0 = np.clip(np.concatenate([[rho0, eta0, g0], inc0]), lo + 1e-12, np.where(np.isfinite(hi), hi - 1e-12, np.inf))
                r = optimize.least_squares(resid, x0, bounds=(lo, hi), method="trf", x_scale="jac", max_nfev=5000)
                if best is None or r.cost < best.cost:
                    best = r
        assert best is not None
        rho, eta, gam, th = unpack(best.x)
        self.rho_, self.eta_, self.gamma_ = rho, eta, gam
        self.theta_ = pd.Series(th, index=pd.Index(Ts, name="T"), name="theta")
        self.expiries_T_ = Ts
        if "forward" in q:
            self.forwards_ = q.groupby("T")["forward"].median().reindex(Ts).to_numpy(float)
        else:
            self.forwards_ = np.full(n, np.nan)
        fitted = ssvi_total_variance(k, th[idx], rho, eta, gam)
        T_q = Ts[idx]
        self.residuals_ = pd.Series(np.sqrt(fitted / T_q) - np.sqrt(w / T_q), index=q.index, name="iv_error")
        self.rmse_iv_ = float(np.sqrt(np.mean(self.residuals_**2)))
        self.rmse_w_ = float(np.sqrt(np.mean((fitted - w) ** 2)))
        self.k_ranges_ = np.array([[k[idx == i].min(), k[idx == i].max()] for i in range(n)])
        self.by_expiry_ = pd.DataFrame({
            "T": Ts,
            "expiry": q.groupby("T")["expiry"].first().reindex(Ts).to_numpy() if "expiry" in q else pd.NaT,
            "n": np.bincount(idx, minlength=n),
            "rmse_iv": np.sqrt(np.bincount(idx, weights=self.residuals_.to_numpy() ** 2, minlength=n)
                               / np.bincount(idx, minlength=n)),
        })
        self.success_ = bool(best.success)
        return self

    def theta(self, T: ArrayLike) -> np.ndarray:
        """ATM total variance at ``T``: linear between expiries, ``theta_1 T/T_1`` before, ``theta_N T/T_N`` after."""
        self._require_fit()
        T = np.asarray(T, dtype=float)
        Ts, th = self.expiries_T_, self.theta_.to_numpy()
        inside = np.interp(T, Ts, th)
        return np.where(Ts[0] > T, th[0] * T / Ts[0], np.where(Ts[-1] < T, th[-1] * T / Ts[-1], inside))

    def total_variance(self, k: ArrayLike, T: ArrayLike) -> np.ndarray:
        self._require_fit()
        k, T = np.broadcast_arrays(np.asarray(k, dtype=float), np.asarray(T, dtype=float))
        if np.any(T <= 0):
            raise DataError("T must be > 0 years")
        return ssvi_total_variance(k, self.theta(T), self.rho_, self.eta_, self.gamma_)

    def _w_at_expiries(self, k: np.ndarray) -> np.ndarray:
        th = self.theta_.to_numpy().reshape((-1,) + (1,) * np.ndim(k))
        return ssvi_total_variance(k[None, ...], th, self.rho_, self.eta_, self.gamma_)

    def slice_params(self) -> list[tuple[float, SVIParams]]:
        self._require_fit()
        return [(float(T), ssvi_slice_to_svi(float(t), self.rho_, self.eta_, self.gamma_))
                for T, t in self.theta_.items()]

    def gj_butterfly_conditions(self) -> pd.DataFrame:
        """Gatheral-Jacquier Thm 4.2 sufficient conditions per expiry: ``theta phi (1+|rho|) < 4``, ``theta phi^2 (1+|rho|) <= 4``."""
        self._require_fit()
        th = self.theta_.to_numpy()
        phi = ssvi_phi(th, self.eta_, self.gamma_)
        c1 = th * phi * (1 + abs(self.rho_))
        c2 = th * phi**2 * (1 + abs(self.rho_))
        return pd.DataFrame({"T": self.expiries_T_, "theta": th, "theta_phi_1p_rho": c1, "theta_phi2_1p_rho": c2,
                             "ok": (c1 < 4) & (c2 <= 4)})


def _sorted_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    o = np.argsort(x)
    return x[o], y[o]


# =========================================================================== arbitrage checks
def _slices(obj: object) -> list[tuple[float, SVIParams, tuple[float, float] | None]]:
    """(T, params, quoted k range or None) for every slice of ``obj``."""
    if isinstance(obj, SVIParams):
        return [(math.nan, obj, None)]
    if isinstance(obj, _SurfaceBase):
        rng = getattr(obj, "k_ranges_", None)
        return [(T, p, None if rng is None else (float(rng[i, 0]), float(rng[i, 1])))
                for i, (T, p) in enumerate(obj.slice_params())]
    if isinstance(obj, Iterable):
        out: list[tuple[float, SVIParams, tuple[float, float] | None]] = []
        for item in obj:
            if isinstance(item, SVIParams):
                out.append((math.nan, item, None))
            else:
                T, p = item
                out.append((float(T), p, None))
        return out
    raise ConfigError(f"cannot check arbitrage on a {type(obj).__name__}; pass SVIParams, a surface or (T, SVIParams) pairs")


def _grid(k_grid: ArrayLike | None, rng: tuple[float, float] | None, n: int = 201) -> np.ndarray:
    if k_grid is not None:
        return np.asarray(k_grid, dtype=float)
    if rng is None:
        return DEFAULT_K_GRID
    return np.linspace(rng[0], rng[1], n)


def butterfly_violations(obj: object, k_grid: ArrayLike | None = None, *, tol: float = 1e-10) -> pd.DataFrame:
    """Points where Gatheral-Jacquier's ``g(k) < -tol`` (negative risk-neutral density).

    ``obj``: :class:`SVIParams`, a fitted :class:`SVISurface` / :class:`SSVISurface`,
    or ``(T, SVIParams)`` pairs. ``k_grid`` defaults to each fitted slice's
    QUOTED k range (201 points; no judgement on extrapolated wings) and to
    ``linspace(-1.5, 1.5, 601)`` for bare parameters; pass a grid to check wider.
    Returns columns ``T, k, g, w`` (empty when clean).
    """
    frames = []
    for T, p, rng in _slices(obj):
        kg = _grid(k_grid, rng)
        g = p.g(kg)
        bad = g < -tol
        if bad.any():
            frames.append(pd.DataFrame({"T": T, "k": kg[bad], "g": g[bad], "w": p.total_variance(kg[bad])}))
    cols = ["T", "k", "g", "w"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def calendar_violations(obj: object, k_grid: ArrayLike | None = None, *, tol: float = 1e-10) -> pd.DataFrame:
    """Points where total variance DEcreases from one expiry to the next at the same ``k``.

    ``obj``: a fitted surface or ``(T, SVIParams)`` pairs (sorted by ``T`` here).
    ``k_grid`` defaults to the overlap of the two expiries' quoted k ranges
    (fitted surfaces) or ``linspace(-1.5, 1.5, 601)``. Returns columns
    ``T_short, T_long, k, w_short, w_long`` (empty when clean).
    """
    sl = sorted(_slices(obj), key=lambda x: x[0])
    frames = []
    for (T1, p1, r1), (T2, p2, r2) in zip(sl[:-1], sl[1:], strict=True):
        rng = None
        if r1 is not None and r2 is not None:
            rng = (max(r1[0], r2[0]), min(r1[1], r2[1]))
            if rng[0] >= rng[1] and k_grid is None:
                continue  # quoted ranges do not overlap: nothing observed to compare
        kg = _grid(k_grid, rng)
        w1, w2 = p1.total_variance(kg), p2.total_variance(kg)
        bad = w2 < w1 - tol
        if bad.any():
            frames.append(pd.DataFrame({"T_short": T1, "T_long": T2, "k": kg[bad], "w_short": w1[bad], "w_long": w2[bad]}))
    cols = ["T_short", "T_long", "k", "w_short", "w_long"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


# =========================================================================== Deribit loaders
def _utc(x: ArrayLike) -> pd.Series:
    return pd.to_datetime(x, utc=True)


def _finish(df: pd.DataFrame, otm_only: bool, what: str) -> pd.DataFrame:
    df["k"] = np.log(df["strike"] / df["forward"])
    df["w"] = df["iv"] ** 2 * df["T"]
    if otm_only:
        keep = np.where(df["option_type"] == "call", df["strike"] >= df["forward"], df["strike"] < df["forward"])
        df = df[keep]
    cols = ["expiry", "T", "strike", "option_type", "forward", "k", "iv", "w"]
    out = df[cols].sort_values(["T", "k"]).reset_index(drop=True)
    if out.empty:
        raise DataError(f"{what}: no usable quote left after filtering")
    return out


def load_deribit_mark_iv_snapshot(
    path: str | Path,
    *,
    snapshot_time: str | pd.Timestamp | None = None,
    otm_only: bool = True,
    forward: str = "index",
) -> pd.DataFrame:
    """Deribit snapshot with a ``mark_iv`` column (``deribit_{btc,eth}_options_snapshot_2024-05.csv``).

    * ``iv = mark_iv / 100``; rows with ``mark_iv == 100.0`` exactly are stale
      placeholders and are dropped (with a :class:`QuoteFilterWarning` saying how many);
    * ``forward="index"`` (default): ``forward = index_price`` of the row. The
      file has no futures price, so the index (spot) stands in for the forward.
      Deribit marks its IV against the expiry's futures price, so ``k`` is off
      by the basis ``ln(F/S)``: on the 2024-05 files put-call parity puts it at
      0.1 % (1 day) to 10.7 % (BTC, 10 months) and 0.05 % to 2.9 % (ETH);
    * ``forward="parity"``: per expiry, the median over strikes within 10 % of
      the index of ``K + (C - P) * index`` from the call and put mark prices
      (coin prices times the index give USD; zero rate), falling back to the
      index where an expiry has no call-put pair;
    * ``T`` runs from ``snapshot_time`` to expiry (ACT/365). The file has no quote
      time; the default is the newest ``instrument_creation_utc`` in the file,
      a lower bound on the true snapshot time (so ``T`` may be a few hours long
      for the nearest expiry);
    * ``otm_only``: keep puts below the forward and calls at or above it
      (Deribit marks one IV per strike, so calls and puts duplicate each other).
    """
    p = Path(path)
    raw = pd.read_csv(p)
    need = {"option_type", "strike", "expiry_utc", "mark_iv", "index_price"}
    if not need <= set(raw.columns):
        raise DataError(f"{p.name}: columns {sorted(need - set(raw.columns))} missing; this loader reads mark-IV snapshots")
    t0 = pd.Timestamp(snapshot_time) if snapshot_time is not None else _utc(raw["instrument_creation_utc"]).max()
    t0 = t0.tz_localize("UTC") if t0.tz is None else t0.tz_convert("UTC")
    if forward not in ("index", "parity"):
        raise ConfigError(f"forward is {forward!r}; it must be 'index' or 'parity'")
    fwd = raw["index_price"].astype(float)
    if forward == "parity":
        if "mark_price" not in raw.columns:
            raise DataError(f"{p.name}: forward='parity' needs the mark_price column")
        fwd = raw["expiry_utc"].map(_parity_forwards(raw)).fillna(fwd).astype(float)
    placeholder = raw["mark_iv"].astype(float) == 100.0
    bad = ~np.isfinite(raw["mark_iv"].astype(float)) | (raw["mark_iv"].astype(float) <= 0)
    if placeholder.any() or bad.any():
        warnings.warn(f"{p.name}: dropped {int(placeholder.sum())} rows with mark_iv == 100.0 (stale placeholders) and "
                      f"{int(bad.sum())} with a non-positive or missing mark_iv", QuoteFilterWarning, stacklevel=2)
    keep = ~placeholder & ~bad
    raw, fwd = raw[keep], fwd[keep]
    df = pd.DataFrame({
        "expiry": _utc(raw["expiry_utc"]),
        "strike": raw["strike"].astype(float),
        "option_type": raw["option_type"].str.lower().map({"call": "call", "c": "call", "put": "put", "p": "put"}),
        "forward": fwd,
        "iv": raw["mark_iv"].astype(float) / 100.0,
    })
    df["T"] = (df["expiry"] - t0) / pd.Timedelta(days=YEAR_DAYS)
    expired = df["T"] <= 0
    if expired.any():
        warnings.warn(f"{p.name}: dropped {int(expired.sum())} rows expiring before the snapshot time {t0}",
                      QuoteFilterWarning, stacklevel=2)
        df = df[~expired]
    return _finish(df, otm_only, p.name)


def _parity_forwards(raw: pd.DataFrame) -> pd.Series:
    """Put-call-parity forward per expiry: median of ``K + (C - P) * index`` over strikes within 10 % of the index."""
    typ = raw["option_type"].astype(str).str.lower().str[0]
    cols = ["expiry_utc", "strike", "mark_price", "index_price"]
    c = raw.loc[typ == "c", cols].set_index(["expiry_utc", "strike"])
    p = raw.loc[typ == "p", cols].set_index(["expiry_utc", "strike"])
    j = c.join(p, how="inner", suffixes=("_c", "_p"))
    strike = j.index.get_level_values("strike").to_numpy(float)
    s = j["index_price_c"].to_numpy(float)
    f = strike + (j["mark_price_c"].to_numpy(float) - j["mark_price_p"].to_numpy(float)) * s
    near = np.abs(np.log(strike / s)) < 0.1
    est = pd.Series(f[near], index=j.index.get_level_values("expiry_utc")[near])
    return est.groupby(level=0).median()


def load_deribit_book_summary(path: str | Path, *, otm_only: bool = True) -> pd.DataFrame:
    """Deribit ``get_book_summary_by_currency`` snapshot without IV (``deribit_eth_options_snapshot_2024-01-08.csv``).

    Implied vol is backed out of ``mark_price`` (in coin) with Black-76, using
    ``underlying_price`` (Deribit's future or synthetic future of the expiry) as
    the forward ``F`` and the USD premium ``mark_price * F`` (zero rate, as the
    file's ``interest_rate`` column is 0): :func:`margincal.pricing.implied_vol`
    with ``inverse=True``. ``T`` runs from the snapshot time (the latest
    ``quote_time_utc``; the quotes span about one second) to expiry at 08:00
    UTC. Quotes with a zero mark or a mark outside the no-arbitrage bounds are
    dropped with a :class:`QuoteFilterWarning`.
    """
    from margincal.pricing.implied_vol import implied_vol as black76_implied_vol  # lower layer, lazy

    p = Path(path)
    raw = pd.read_csv(p)
    need = {"quote_time_utc", "expiry", "strike", "option_type", "underlying_price", "mark_price"}
    if not need <= set(raw.columns):
        raise DataError(f"{p.name}: columns {sorted(need - set(raw.columns))} missing; this loader reads Deribit book summaries")
    expiry = _utc(raw["expiry"]) + pd.Timedelta(hours=8)
    t_quote = _utc(raw["quote_time_utc"]).max()  # one snapshot time (quotes span ~1 s), so T is one per expiry
    T = ((expiry - t_quote) / pd.Timedelta(days=YEAR_DAYS)).to_numpy(float)
    F = raw["underlying_price"].astype(float).to_numpy()
    K = raw["strike"].astype(float).to_numpy()
    is_call = raw["option_type"].astype(str).str.upper().str[0].eq("C").to_numpy()
    price = raw["mark_price"].astype(float).to_numpy()
    res = black76_implied_vol(price, F, K, T, is_call, inverse=True)
    iv = np.asarray(res.vol, dtype=float)
    good = np.isfinite(iv) & (iv > 0) & (price > 0) & (T > 0)
    if (~good).any():
        warnings.warn(f"{p.name}: dropped {int((~good).sum())} of {good.size} quotes (zero mark price, expired, or "
                      "mark outside Black-76 no-arbitrage bounds)", QuoteFilterWarning, stacklevel=2)
    df = pd.DataFrame({
        "expiry": expiry, "strike": K, "option_type": np.where(is_call, "call", "put"), "forward": F, "iv": iv, "T": T,
    })[good]
    return _finish(df, otm_only, p.name)


def load_deribit_snapshot(path: str | Path, **kwargs: object) -> pd.DataFrame:
    """Load either bundled Deribit format (dispatch on the columns): see the two loaders above."""
    cols = set(pd.read_csv(path, nrows=0).columns)
    if "mark_iv" in cols:
        return load_deribit_mark_iv_snapshot(path, **kwargs)  # type: ignore[arg-type]
    if "underlying_price" in cols:
        return load_deribit_book_summary(path, **kwargs)  # type: ignore[arg-type]
    raise DataError(f"{Path(path).name}: neither a mark-IV snapshot nor a book summary (columns {sorted(cols)})")


BUNDLED_SNAPSHOTS = tuple(f.file for f in datasets.files(kind="options"))


class SurfaceReport(TypedDict):
    """What :func:`fit_report` returns (a plain dict)."""

    file: str
    quotes: pd.DataFrame
    svi: SVISurface
    ssvi: SSVISurface
    notes: list[str]
    row: dict[str, object]


def fit_report(path: str | Path, **loader_kwargs: object) -> SurfaceReport:
    """Fit raw SVI slices and SSVI to one snapshot; RMSE (vol points) and arbitrage counts.

    Used for ``docs/vol_surfaces.md`` (``python -m margincal.vol.surface``).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", QuoteFilterWarning)
        q = load_deribit_snapshot(path, **loader_kwargs)
        svi = SVISurface().fit(q)
        ssvi = SSVISurface().fit(q)
    wide = np.linspace(-1.5, 1.5, 601)
    return {
        "file": Path(path).name, "quotes": q, "svi": svi, "ssvi": ssvi,
        "notes": [str(w.message) for w in caught],
        "row": {
            "file": Path(path).name,
            "forward": str(loader_kwargs.get("forward", "index" if "2024-05" in Path(path).name else "underlying")),
            "quotes": int(len(q)),
            "expiries": int(q["T"].nunique()),
            "svi_slices": int(len(svi.slices_)),
            "svi_rmse_volpts": 100 * svi.rmse_iv_,
            "svi_worst_slice_volpts": 100 * float(svi.slices_["rmse_iv"].max()),
            "ssvi_rmse_volpts": 100 * ssvi.rmse_iv_,
            "ssvi_rho": ssvi.rho_, "ssvi_eta": ssvi.eta_, "ssvi_gamma": ssvi.gamma_,
            "svi_butterfly_quoted": int(butterfly_violations(svi)["T"].nunique()),
            "svi_butterfly_wide": int(butterfly_violations(svi, wide)["T"].nunique()),
            "svi_calendar_pairs": int(len(calendar_violations(svi).groupby(["T_short", "T_long"]))),
            "ssvi_butterfly_wide": int(butterfly_violations(ssvi, wide)["T"].nunique()),
            "ssvi_calendar_pairs": int(len(calendar_violations(ssvi, wide).groupby(["T_short", "T_long"]))),
        },
    }


def smile_figure(report: SurfaceReport) -> go.Figure:  # pragma: no cover - plotting
    """Plotly figure: market IV per expiry (points) with the SVI (line) and SSVI (dashed) fits."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    q = report["quotes"]
    svi = report["svi"]
    ssvi = report["ssvi"]
    fig = go.Figure()
    colours = qualitative.Dark24
    for i, (T, g) in enumerate(q.groupby("T")):
        c = colours[i % len(colours)]
        label = f"{g['expiry'].iloc[0]:%Y-%m-%d} (T={T:.3f})"
        fig.add_trace(go.Scatter(x=g["k"], y=100 * g["iv"], mode="markers", marker={"color": c, "size": 5},
                                 name=label, legendgroup=label))
        kk = np.linspace(g["k"].min(), g["k"].max(), 80)
        if np.isclose(svi.expiries_T_, T).any():
            fig.add_trace(go.Scatter(x=kk, y=100 * svi.implied_vol(kk, T), mode="lines", line={"color": c},
                                     name=f"SVI {label}", legendgroup=label, showlegend=False))
        fig.add_trace(go.Scatter(x=kk, y=100 * ssvi.implied_vol(kk, T), mode="lines",
                                 line={"color": c, "dash": "dash"}, name=f"SSVI {label}", legendgroup=label,
                                 showlegend=False))
    fig.update_layout(title=f"{report['file']}: mark IV (points), raw SVI (solid), SSVI (dashed)",
                      xaxis_title="k = ln(K/F)", yaxis_title="implied vol, %", template="plotly_white")
    return fig


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a GitHub markdown table (floats with ``digits`` decimals, timestamps as dates)."""

    def fmt(v: object) -> str:
        if isinstance(v, pd.Timestamp):
            return "" if pd.isna(v) else f"{v:%Y-%m-%d}"
        if isinstance(v, (float, np.floating)):
            return "" if not np.isfinite(v) else f"{v:.{digits}f}"
        return "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


__all__ = [
    "BUNDLED_SNAPSHOTS",
    "QuoteFilterWarning",
    "SSVISurface",
    "SVIFit",
    "SVIParams",
    "SVISurface",
    "butterfly_violations",
    "calendar_violations",
    "fit_report",
    "fit_svi",
    "markdown_table",
    "g_function_reference",
    "load_deribit_book_summary",
    "load_deribit_mark_iv_snapshot",
    "load_deribit_snapshot",
    "ssvi_slice_to_svi",
    "ssvi_total_variance",
    "svi_total_variance",
]

