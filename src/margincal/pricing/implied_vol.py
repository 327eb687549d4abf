"""Black-76 implied volatility, vectorised and safe at the wings.

Method
------
1. Undiscount the price (``u = price / D``; coin prices of inverse options are
   first converted to USD with ``price * F``) and strip the intrinsic value.
   By put-call parity the remaining time value ``tv = u - intrinsic`` is the
   price of the *out-of-the-money* option of the same strike, so every input
   becomes an OTM option. Inputs outside the no-arbitrage bounds
   ``0 <= tv < min(F, K)`` get ``NaN`` and a status flag (:class:`IVStatus`);
   ``tv == 0`` gives volatility 0 (status ``AT_INTRINSIC``).
2. Normalise as in P. Jaeckel, "Let's be rational", Wilmott (2015):
   ``x = -|ln(F/K)| <= 0``, ``beta = tv / sqrt(F K)`` and solve ``b(x, s) = beta``
   for the total standard deviation ``s = sigma sqrt(T)``, with
   ``b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2)`` increasing from 0 to
   ``b_max = e^{x/2}``.
3. Initial guess (Jaeckel's four branches, written here from the paper's
   formulas). ``s_c = sqrt(2|x|)`` is the inflection point of ``b``;
   ``s_l``/``s_u`` are where the tangent at ``s_c`` meets 0 / ``b_max``.

   * ``b_l <= beta <= b_u``: rational cubic (Delbourgo-Gregory) interpolation of
     the inverse function ``s(beta)`` through ``(b_l, s_l), (b_c, s_c)`` or
     ``(b_c, s_c), (b_u, s_u)`` with the exact slopes ``1/b'`` and the curvature
     at ``s_c`` (where ``b'' = 0``);
   * ``beta < b_l`` (the low wing): interpolate the map
     ``f(s) = 2 pi |x| / (3 sqrt 3) N(-|x| / (sqrt 3 s))^3``, which has the same
     asymptotics as ``b`` for ``s -> 0``, between ``beta = 0`` and ``b_l``, and
     invert it in closed form;
   * ``beta > b_u`` (close to the upper bound): same with ``f(s) = N(-s/2)``.
4. Householder iterations of third order (quartic convergence) on an objective
   per branch: ``1/ln b(s) - 1/ln beta`` in the low wing (``ln b`` is evaluated
   with ``erfcx`` where ``b`` underflows), ``b(s) - beta`` in the middle and
   ``ln(b_max - beta) - ln(b_max - b(s))`` near the upper bound (``b_max - b`` is
   computed directly, without cancellation). The derivatives are closed-form:
   ``b' = exp(-(x^2/s^2 + s^2/4)/2) / sqrt(2 pi)``, ``b''/b' = x^2/s^3 - s/4``.
   Two iterations give machine precision for almost every input; an element
   is accepted after iteration ``k`` when its last relative step is below
   ``5e-4`` (``k = 1``) or ``1e-4`` (``k >= 2``): with quartic convergence the
   remaining error is then ~ (step)^4 (below 0.9 step^4 on the benchmark's
   options, i.e. 6e-14 relative after one step). Elements that need more than
   ``_MAX_HOUSEHOLDER`` iterations (none were seen in the tests and
   benchmarks) go to the bracketed Newton solver kept from the first version.

Speed: all work is on whole numpy arrays in blocks of ``_BLOCK`` elements (so
temporaries stay in cache); special functions are ``scipy.special.ndtr``
(``ndtri`` only for the two wing branches, ``erfcx`` only where ``b``
underflows). No Python loop over options.

Edge cases (documented rule): ``T <= 0``, ``F <= 0``, ``K <= 0``, a negative or
non-finite price give ``NaN`` with status ``INVALID_INPUT`` (at zero time the
price carries no volatility information); a price at the discounted intrinsic
value (within 4 ulps) gives volatility 0 (``AT_INTRINSIC``); below it
``BELOW_INTRINSIC``; at or above the upper bound (``D F`` for calls, ``D K``
for puts) ``ABOVE_MAX``, both ``NaN``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import erfcx, ndtr, ndtri

from margincal.pricing.black76 import as_is_call, use_numba

_LN_SQRT_2PI = 0.9189385332046728
_SQRT1_2 = 0.7071067811865476


class IVStatus(IntEnum):
    """Per-element outcome of :func:`implied_vol`."""

    OK = 0
    AT_INTRINSIC = 1  # price equals intrinsic value: volatility 0
    BELOW_INTRINSIC = 2  # price below discounted intrinsic value: no volatility fits (NaN)
    ABOVE_MAX = 3  # price at/above the upper bound (D F for calls, D K for puts): NaN
    INVALID_INPUT = 4  # non-finite input, F/K <= 0, T <= 0 or price < 0: NaN
    NOT_CONVERGED = 5  # iteration limit reached (NaN); should not happen inside the bounds


@dataclass(frozen=True)
class ImpliedVolResult:
    """Implied volatilities (annualised) and a status code per element."""

    vol: np.ndarray
    status: np.ndarray
    iterations: int  # the largest number of iterations any element needed
    iteration_counts: np.ndarray | None = None  # per element (0 where nothing was solved)

    @property
    def ok(self) -> np.ndarray:
        """True where a volatility was found (``OK`` or ``AT_INTRINSIC``)."""
        return (self.status == IVStatus.OK) | (self.status == IVStatus.AT_INTRINSIC)


def _log_b(x: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ln of the normalised OTM call price b(x, s) (x <= 0, s > 0) and ln of its s-derivative."""
    d1 = x / s + 0.5 * s
    d2 = d1 - s
    low = d1 < 0.0
    out = np.empty_like(s)
    # lower region: b = 0.5 e^{x/2 - d1^2/2} [erfcx(-d1/sqrt2) - erfcx(-d2/sqrt2)]
    if low.any():
        a1, a2 = d1[low], d2[low]
        diff = erfcx(-a1 * _SQRT1_2) - erfcx(-a2 * _SQRT1_2)
        with np.errstate(divide="ignore"):
            out[low] = 0.5 * x[low] - 0.5 * a1 * a1 + np.log(0.5 * diff)
    hi = ~low
    if hi.any():
        xh = x[hi]
        b = np.exp(0.5 * xh) * ndtr(d1[hi]) - np.exp(-0.5 * xh) * ndtr(d2[hi])
        with np.errstate(divide="ignore"):
            out[hi] = np.log(b)
    log_vega = 0.5 * x - 0.5 * d1 * d1 - _LN_SQRT_2PI
    return out, log_vega


def implied_vol(
    price: ArrayLike,
    forward: ArrayLike,
    strike: ArrayLike,
    expiry_years: ArrayLike,
    option_type: ArrayLike = True,
    *,
    rate: ArrayLike = 0.0,
    inverse: bool = False,
    max_iter: int = 100,
    rtol: float = 1e-12,
    backend: str = "numpy",
) -> ImpliedVolResult:
    """Black-76 implied volatility for arrays of prices (broadcast like :func:`black76_price`).

    ``price`` is in quote currency, or in coins when ``inverse`` (Deribit
    style). Elements outside the no-arbitrage bounds get ``NaN`` and a
    non-zero :class:`IVStatus`; nothing is raised for them, so one bad quote
    does not stop a chain. ``max_iter`` and ``rtol`` apply to the bracketed
    fallback solver only (see the module doc).

    ``backend``: "numpy" (default) runs this module's code; "numba" the compiled kernel of
    :mod:`margincal.pricing._kernels` (the same initial guess and Householder steps, per option, on one
    core; about 1.7x the numpy code on 1e6 options, docs/benchmarks.md). Not the default: importing numba
    costs about 1 s per process (and the first call in a fresh checkout compiles), which only pays off on
    large batches.
    """
    r_arr = np.asarray(rate, dtype=float)
    scalar_rate = r_arr.ndim == 0
    arrays = [
        np.asarray(price, dtype=float),
        np.asarray(forward, dtype=float),
        np.asarray(strike, dtype=float),
        np.asarray(expiry_years, dtype=float),
        as_is_call(option_type),
    ]
    if not scalar_rate:
        arrays.append(r_arr)
    bcast = np.broadcast_arrays(*arrays)
    shape = bcast[0].shape
    p, F, K, T, call, *rest = (a.ravel() for a in bcast)
    r = float(r_arr) if scalar_rate else math.nan
    ra = rest[0] if rest else None
    n = p.size
    vol = np.empty(n)
    status = np.empty(n, dtype=np.int8)
    counts = np.zeros(n, dtype=np.int8)
    if use_numba(backend):
        from margincal.pricing import _kernels

        rk = np.array([r]) if ra is None else np.ascontiguousarray(ra)
        deferred = _kernels.implied_vol_kernel(
            np.ascontiguousarray(p), np.ascontiguousarray(F), np.ascontiguousarray(K), np.ascontiguousarray(T),
            np.ascontiguousarray(call), rk, inverse, vol, status, counts)
        if deferred:  # low-wing elements that need erfcx: the numpy solver
            d = np.flatnonzero(status == _kernels.DEFER)
            vd, sd_, cd = np.empty(d.size), np.empty(d.size, dtype=np.int8), np.zeros(d.size, dtype=np.int8)
            for i in range(0, d.size, _BLOCK):
                blk = slice(i, i + _BLOCK)
                j = d[blk]
                _block(p[j], F[j], K[j], T[j], call[j], r if ra is None else ra[j], inverse, vd[blk], sd_[blk],
                       cd[blk])
            vol[d], status[d], counts[d] = vd, sd_, cd
    else:
        for i in range(0, n, _BLOCK):
            blk = slice(i, i + _BLOCK)
            rb = r if ra is None else ra[blk]
            _block(p[blk], F[blk], K[blk], T[blk], call[blk], rb, inverse, vol[blk], status[blk], counts[blk])
    # elements the Householder iterations did not settle (none seen in tests and benchmarks): bracketed Newton
    bad = np.flatnonzero(status == IVStatus.NOT_CONVERGED)
    if bad.size:
        rb = r if ra is None else ra[bad]
        Fb, Kb, Tb = F[bad], K[bad], T[bad]
        u = p[bad] * (Fb if inverse else 1.0) * np.exp(rb * Tb)
        tv = u - np.where(call[bad], np.maximum(Fb - Kb, 0.0), np.maximum(Kb - Fb, 0.0))
        s, it, conv = _solve_safeguarded(Fb, Kb, tv, max_iter, rtol)
        vol[bad] = np.where(conv, s / np.sqrt(Tb), np.nan)
        status[bad] = np.where(conv, int(IVStatus.OK), int(IVStatus.NOT_CONVERGED))
        counts[bad] = np.minimum(_MAX_HOUSEHOLDER + it, 127)
    return ImpliedVolResult(vol.reshape(shape), status.reshape(shape), int(counts.max(initial=0)),
                            counts.reshape(shape))


_SQRT_2PI = 2.5066282746310002
_SQRT3 = 1.7320508075688772
_C_LOW = 1.2091995761561452  # 2 pi / (3 sqrt 3)
_BLOCK = 1 << 13
_MAX_HOUSEHOLDER = 5
_TINY_B = 1e-250  # below this (or d1 < -5) ln b is taken from the erfcx form
_ACCEPT_FIRST = 5e-4  # relative step after which one iteration is enough (remaining error ~ step^4)
_ACCEPT_LATER = 1e-4
_EPS = np.finfo(float).eps


def _block(p: np.ndarray, F: np.ndarray, K: np.ndarray, T: np.ndarray, call: np.ndarray, r: np.ndarray | float,
           inverse: bool, vol: np.ndarray, status: np.ndarray, counts: np.ndarray) -> None:
    """Classify and solve one block in place (``vol``, ``status``, ``counts`` are views)."""
    with np.errstate(invalid="ignore", over="ignore"):
        inf = np.inf
        valid = (p >= 0) & (p < inf) & (F > 0) & np.less(F, inf) & (K > 0) & np.less(K, inf) & (T > 0) & np.less(T, inf)
        u = p * F if inverse else p
        if np.ndim(r) or r != 0.0:
            valid &= np.isfinite(r)
            u = u * np.exp(r * T)
        intrinsic = (call * 2.0 - 1.0) * (F - K)
        np.maximum(intrinsic, 0.0, out=intrinsic)
        tv = u - intrinsic
        cap = np.minimum(F, K)
        # rounding slack on the intrinsic comparison: a few ulps of the larger term
        below = tv < -4.0 * _EPS * np.maximum(u, intrinsic)
        solve = valid & (tv > 0.0) & (tv < cap)
    status.fill(IVStatus.OK)
    vol.fill(np.nan)
    if not solve.all():
        at = valid & ~below & (tv <= 0.0)
        status[valid & (tv >= cap)] = IVStatus.ABOVE_MAX
        status[valid & below] = IVStatus.BELOW_INTRINSIC
        status[at] = IVStatus.AT_INTRINSIC
        status[~valid] = IVStatus.INVALID_INPUT
        vol[at] = 0.0
        idx = np.flatnonzero(solve)
        if idx.size == 0:
            return
        F, K, T, tv = F[idx], K[idx], T[idx], tv[idx]
    else:
        idx = None
    s, conv, count = _solve_block(F, K, tv)
    v = s / np.sqrt(T)
    all_conv = bool(conv.all())
    if not all_conv:
        v[~conv] = np.nan
    if idx is None:
        vol[:] = v
        counts[:] = count
        if not all_conv:
            status[~conv] = IVStatus.NOT_CONVERGED
    else:
        vol[idx] = v
        counts[idx] = count
        if not all_conv:
            status[idx[~conv]] = IVStatus.NOT_CONVERGED


def _rc(t: np.ndarray, omt: np.ndarray, h: np.ndarray, yl: np.ndarray | float, yr: np.ndarray | float,
        dl: np.ndarray | float, dr: np.ndarray | float, r: np.ndarray) -> np.ndarray:
    """Rational cubic (Delbourgo-Gregory) interpolant at ``t = (z - z_l)/h``, ``omt = 1 - t`` (given separately).

    ``(yr t^3 + (r yr - h dr) t^2 omt + (r yl + h dl) t omt^2 + yl omt^3) / (1 + (r - 3) t omt)``, written so
    that tiny ``t`` (deep wings) gives no subnormal intermediates: powers use t and omt floored at 1e-100,
    whose omitted parts are below 1e-100 of the kept linear term.
    """
    tc = np.maximum(t, 1e-100)
    oc = np.maximum(omt, 1e-100)
    num = t * (yr * tc * tc + (r * yr - h * dr) * tc * omt + (r * yl + h * dl) * omt * oc) + yl * omt * oc * oc
    return num / (1.0 + (r - 3.0) * t * omt)


def _shape_r(r: np.ndarray, delta: np.ndarray, dl: np.ndarray | float, dr: np.ndarray | float) -> np.ndarray:
    """Keep the rational cubic monotone: r >= (dl + dr) / delta (r = 3 is the Hermite cubic, r -> inf a line).

    ``r`` comes from matching a second derivative at one end: r = (h d2/2 + dr - dl)/(delta - dl) at the
    left end, (h d2/2 + dr - dl)/(dr - delta) at the right. With d2 = 0 at the inflection point this is
    also the convexity bound, so only monotonicity needs enforcing. Non-finite values give a line.
    """
    r = np.fmax(r, (dl + dr) / delta)
    return np.where(r < 1e8, r, 1e8)  # NaN -> 1e8 too


def _npdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / _SQRT_2PI


def _initial_guess(x: np.ndarray, ex: np.ndarray, beta: np.ndarray,
                   qbeta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Jaeckel's four-branch initial guess; returns (s0, branch) with branch 0 low wing, 1 middle, 2 near b_max."""
    s_c = np.sqrt(-2.0 * x)
    b_c = 0.5 * ex - ndtr(-s_c) / ex  # d1 = 0, d2 = -s_c at the inflection point
    v_c = ex / _SQRT_2PI  # b'(s_c)
    upper = beta > b_c
    u = upper.astype(float)  # 0/1 blends below replace np.where on a random mask (several times cheaper)
    sg = 1.0 - 2.0 * u
    # the second node: s_l (tangent at s_c meets 0) below b_c, s_u (meets b_max) above
    s_e = s_c + (u * ex - b_c) / v_c
    h = x / s_e
    t = 0.5 * s_e
    a1 = ex * ndtr(sg * (h + t))
    a2 = ndtr(h - t) / ex
    q_e = a1 + a2  # b_max - b(s_u) on the upper side (no cancellation)
    b_e = u * ex + sg * a1 - a2  # b(s_e) on both sides
    v_e = np.exp(-0.5 * (h * h + t * t)) / _SQRT_2PI
    c2_e = h * h / s_e - 0.25 * s_e  # b''/b' at the node
    wing = (upper & (qbeta < q_e)) | (~upper & (beta < b_e))
    kind = (1 + wing * (2 * upper - 1)).astype(np.int8)  # 0 low wing, 1 middle, 2 near b_max
    # middle: rational cubic for s(beta) between the node and (b_c, s_c); s''(b_c) = 0 fixes r.
    # Endpoints ordered left/right by blending (the rounding this adds is irrelevant for a guess).
    inv_vc = 1.0 / v_c
    inv_ve = 1.0 / v_e
    bl = b_e + u * (b_c - b_e)
    br = b_c + u * (b_e - b_c)
    sl = s_e + u * (s_c - s_e)
    sr = s_c + u * (s_e - s_c)
    dl = inv_ve + u * (inv_vc - inv_ve)
    dr = inv_vc + u * (inv_ve - inv_vc)
    hh = br - bl
    delta = (sr - sl) / hh
    r = (dr - dl) / (dr - delta + u * (2.0 * delta - dl - dr))  # right end below b_c, left end above
    r = _shape_r(r, delta, dl, dr)
    tt = (beta - bl) / hh
    s0 = _rc(tt, 1.0 - tt, hh, sl, sr, dl, dr, r)

    lo = np.flatnonzero(wing & ~upper)
    if lo.size:  # low wing: f(s) = c |x| N(-|x|/(sqrt3 s))^3 interpolated on [0, b_l], inverted in closed form
        ax = -x[lo]
        sl_, bl_, vl, c2 = s_e[lo], b_e[lo], v_e[lo], c2_e[lo]
        z = -ax / (_SQRT3 * sl_)
        nz, pz = ndtr(z), _npdf(z)
        nz2 = nz * nz
        f_l = _C_LOW * ax * nz2 * nz
        fp = 3.0 * _C_LOW * ax * nz2 * pz * (-z / sl_)  # dz/ds = -z/s
        fpp = 3.0 * _C_LOW * ax * nz * pz / (sl_ * sl_) * z * (2.0 * pz * z - nz * z * z + 2.0 * nz)
        d_r = fp / vl
        d2_r = (fpp - fp * c2) / (vl * vl)
        delta = f_l / bl_
        r = _shape_r((0.5 * bl_ * d2_r + d_r - 1.0) / (d_r - delta), delta, 1.0, d_r)
        tt = beta[lo] / bl_
        f = _rc(tt, 1.0 - tt, bl_, 0.0, f_l, 1.0, d_r, r)
        f = np.clip(f, np.finfo(float).tiny, f_l)
        s0[lo] = ax / (_SQRT3 * -ndtri(np.cbrt(f / (_C_LOW * ax))))
    hi = np.flatnonzero(wing & upper)
    if hi.size:  # near the upper bound: f(s) = N(-s/2) interpolated on [b_u, b_max], s = -2 N^-1(f)
        su, qu, vu, c2 = s_e[hi], q_e[hi], v_e[hi], c2_e[hi]
        f_u = ndtr(-0.5 * su)
        pu = _npdf(0.5 * su)
        fp = -0.5 * pu
        d_l = fp / vu
        d2_l = (0.125 * su * pu - fp * c2) / (vu * vu)
        delta = -f_u / qu
        r = _shape_r((0.5 * qu * d2_l - 0.5 - d_l) / (delta - d_l), delta, d_l, -0.5)
        omt = qbeta[hi] / qu
        f = _rc(1.0 - omt, omt, qu, f_u, 0.0, d_l, -0.5, r)
        f = np.clip(f, np.finfo(float).tiny, f_u)
        s0[hi] = -2.0 * ndtri(f)
    return s0, kind


def _householder(x: np.ndarray, ex: np.ndarray, s: np.ndarray, kind: np.ndarray, beta: np.ndarray,
                 ln_beta: np.ndarray, qbeta: np.ndarray) -> np.ndarray:
    """One third-order Householder step per element on its branch's objective; returns the step."""
    h = x / s
    t = 0.5 * s
    d1 = h + t
    d2 = h - t
    up = kind == 2
    sg = 1.0 - 2.0 * up  # -1 near the upper bound: evaluate b_max - b = e^{x/2} N(-d1) + e^{-x/2} N(d2)
    # arguments floored at -37.5 so that ndtr returns no subnormals (slow); where that matters (d1 < -5,
    # low wing only) ln b is taken from the erfcx form below
    a1 = ex * ndtr(np.maximum(sg * d1, -37.5))
    a2 = ndtr(np.maximum(d2, -37.5)) / ex
    val = a1 - sg * a2  # b_max - b near the bound, b elsewhere
    hh = h * h
    ln_bp = -0.5 * (hh + t * t) - _LN_SQRT_2PI
    bp = np.exp(np.maximum(ln_bp, -700.0))  # used in the middle/upper branches only (floor: no subnormals)
    c2 = hh / s - 0.25 * s  # b''/b'
    c3 = c2 * c2 - 3.0 * hh / (s * s) - 0.25  # b'''/b'
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        nu = (beta - val) / bp
        h2 = c2.copy()
        h3 = c3.copy()
        low = np.flatnonzero(kind == 0)
        if low.size:
            b = val[low]
            lnb = np.log(np.where(b > 0, b, 1.0))
            tiny = np.flatnonzero(~(b > _TINY_B) | (d1[low] < -5.0))
            if tiny.size:  # ln b = -(h^2 + t^2)/2 + ln((erfcx(-d1/sqrt2) - erfcx(-d2/sqrt2))/2)
                j = low[tiny]
                e = erfcx(-d1[j] * _SQRT1_2) - erfcx(-d2[j] * _SQRT1_2)
                lnb[tiny] = -0.5 * (hh[j] + t[j] * t[j]) + np.log(0.5 * e)
            lb = ln_beta[low]
            rho = np.exp(ln_bp[low] - lnb)  # b'/b
            w = (lnb + 2.0) / lnb * rho
            cl = c2[low]
            nu[low] = lnb * (lb - lnb) / (rho * lb)
            h2[low] = cl - w
            h3[low] = (2.0 * lnb * lnb + 6.0 * lnb + 6.0) / (lnb * lnb) * rho * rho - 3.0 * w * cl + c3[low]
        iu = np.flatnonzero(up)
        if iu.size:
            q = val[iu]
            u = bp[iu] / q
            cu = c2[iu]
            nu[iu] = np.log(q / qbeta[iu]) / u
            h2[iu] = u + cu
            h3[iu] = 2.0 * u * u + 3.0 * u * cu + c3[iu]
        return nu * (1.0 + 0.5 * h2 * nu) / (1.0 + nu * (h2 + h3 * nu / 6.0))


def _solve_block(F: np.ndarray, K: np.ndarray, tv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Total standard deviation s for OTM time values; returns (s, converged, iterations per element)."""
    x = -np.abs(np.log(F / K))
    sqfk = np.sqrt(F * K)
    beta = tv / sqfk
    qbeta = (np.minimum(F, K) - tv) / sqfk  # b_max - beta without cancellation
    ex = np.exp(0.5 * x)
    n = x.size
    conv = np.zeros(n, dtype=bool)
    count = np.zeros(n, dtype=np.int8)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        s, kind = _initial_guess(x, ex, beta, qbeta)
        ln_beta = np.log(beta)
        active = None  # the first iteration runs on the whole block without gathers
        for k in range(1, _MAX_HOUSEHOLDER + 1):
            if active is None:
                sa = s
                step = _householder(x, ex, sa, kind, beta, ln_beta, qbeta)
            else:
                a = active
                sa = s[a]
                step = _householder(x[a], ex[a], sa, kind[a], beta[a], ln_beta[a], qbeta[a])
            s_new = sa + step
            ok = np.isfinite(s_new) & (s_new > 0)
            s_new = np.where(ok, s_new, sa)
            done = ok & (np.abs(step) <= (_ACCEPT_FIRST if k == 1 else _ACCEPT_LATER) * s_new)
            more = ~done & ok
            if active is None:
                s = s_new
                count.fill(k)
                conv = done
                active = np.flatnonzero(more)
            else:
                s[a] = s_new
                count[a] = k
                conv[a[done]] = True
                active = a[more]
            if active.size == 0:
                break
    return s, conv, count


def _solve_safeguarded(F: np.ndarray, K: np.ndarray, tv: np.ndarray, max_iter: int,
                       rtol: float) -> tuple[np.ndarray, int, np.ndarray]:
    x = -np.abs(np.log(F / K))
    beta = tv / np.sqrt(F * K)
    log_beta = np.log(beta)
    s_c = np.sqrt(-2.0 * x)
    # price at the inflection point decides the region (and the objective)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_bc, _ = _log_b(x, np.where(s_c > 0, s_c, 1.0))
    lower = (s_c > 0) & (log_beta < log_bc)
    with np.errstate(divide="ignore", invalid="ignore"):
        s_low = np.abs(x) / np.sqrt(-2.0 * log_beta)
        s_up = 2.0 * ndtri(0.5 * (1.0 + np.minimum(beta * np.exp(-0.5 * x), 1.0 - 1e-16)))
    s = np.where(lower, np.minimum(np.maximum(s_low, s_up), s_c), np.maximum(s_up, s_c))
    s = np.where(np.isfinite(s) & (s > 0), s, np.maximum(s_c, 1.0))

    lo = np.zeros_like(s)
    hi = np.full_like(s, np.inf)
    done = np.zeros(s.size, dtype=bool)
    active = np.arange(s.size)
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - iteration count is reported
        sa, xa = s[active], x[active]
        lb, lv = _log_b(xa, sa)
        f_log = lb - log_beta[active]
        # bracket update from the sign of b(s) - beta
        lo[active] = np.where(f_log < 0, sa, lo[active])
        hi[active] = np.where(f_log > 0, sa, hi[active])
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            step_log = f_log * np.exp(lb - lv)  # (ln b - ln beta) / (d ln b / ds)
            step_lin = (np.exp(lb) - beta[active]) * np.exp(-lv)  # (b - beta) / b'
        step = np.where(lower[active], step_log, step_lin)
        s_new = sa - step
        la, ha = lo[active], hi[active]
        bad = ~np.isfinite(s_new) | (s_new < la) | (s_new > ha) | (s_new <= 0)
        fallback = np.where(np.isfinite(ha), 0.5 * (la + ha), 2.0 * sa)
        s_new = np.where(bad, fallback, s_new)
        conv = (np.abs(s_new - sa) <= rtol * sa) | (f_log == 0) | (np.isfinite(ha) & (ha - la <= rtol * ha))
        s[active] = s_new
        done[active[conv]] = True
        active = active[~conv]
        if active.size == 0:
            break
    return s, it, done


__all__ = ["IVStatus", "ImpliedVolResult", "implied_vol"]
