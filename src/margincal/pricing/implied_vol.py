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
2. Normalise (Jäckel's form): ``x = -|ln(F/K)| <= 0``, ``beta = tv / sqrt(F K)``
   and solve ``b(s) = beta`` for the total standard deviation
   ``s = sigma sqrt(T)``, with ``b(s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2)``
   increasing from 0 to ``e^{x/2}``.
3. Initial guess in closed form from the two asymptotes: below the inflection
   point ``s_c = sqrt(2|x|)`` (small prices, the wings) ``ln b ~ -x^2/(2 s^2)``
   gives ``s0 = |x| / sqrt(-2 ln beta)``, which lies *left* of the root;
   above it ``s0 = 2 N^{-1}((1 + beta e^{-x/2}) / 2)`` (exact at the money).
4. Safeguarded Newton: on ``ln b(s)`` in the lower region (``ln b`` is concave
   there, so Newton from the left converges monotonically and the tiny vega of
   deep OTM options does not matter), on ``b(s)`` in the upper region. A bracket
   ``[lo, hi]`` is kept from the sign of ``b - beta``; any step that leaves it,
   or is not finite, is replaced by bisection (or by doubling while no upper
   bracket is known). ``ln b`` is evaluated with ``erfcx`` below the
   inflection point, so it stays finite where ``b`` itself underflows.

Everything runs on whole arrays; converged elements drop out of the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from scipy.special import erfcx, ndtr, ndtri

from margincal.pricing.black76 import as_is_call

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
    iterations: int

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
    price: object,
    forward: object,
    strike: object,
    expiry_years: object,
    option_type: object = True,
    *,
    rate: object = 0.0,
    inverse: bool = False,
    max_iter: int = 100,
    rtol: float = 1e-12,
) -> ImpliedVolResult:
    """Black-76 implied volatility for arrays of prices (broadcast like :func:`black76_price`).

    ``price`` is in quote currency, or in coins when ``inverse`` (Deribit
    style). Elements outside the no-arbitrage bounds get ``NaN`` and a
    non-zero :class:`IVStatus`; nothing is raised for them, so one bad quote
    does not stop a chain.
    """
    p, F, K, T, r, call = np.broadcast_arrays(
        np.asarray(price, dtype=float),
        np.asarray(forward, dtype=float),
        np.asarray(strike, dtype=float),
        np.asarray(expiry_years, dtype=float),
        np.asarray(rate, dtype=float),
        as_is_call(option_type),
    )
    shape = p.shape
    p, F, K, T, r, call = (a.ravel() for a in (p, F, K, T, r, call))
    n = p.size
    vol = np.full(n, np.nan)
    status = np.full(n, int(IVStatus.OK), dtype=np.int8)

    with np.errstate(invalid="ignore"):
        valid = (
            np.isfinite(p) & np.isfinite(F) & np.isfinite(K) & np.isfinite(T) & np.isfinite(r)
            & (F > 0) & (K > 0) & (T > 0) & (p >= 0)
        )
    status[~valid] = IVStatus.INVALID_INPUT
    u = np.where(valid, p, 0.0) * np.where(valid & inverse, F, 1.0) * np.exp(np.where(valid, r * T, 0.0))
    intrinsic = np.where(call, np.maximum(F - K, 0.0), np.maximum(K - F, 0.0))
    tv = u - intrinsic
    cap = np.minimum(F, K)
    # rounding slack on the intrinsic comparison: a few ulps of the larger term
    slack = 4.0 * np.finfo(float).eps * np.maximum(u, intrinsic)
    below = valid & (tv < -slack)
    at = valid & ~below & (tv <= 0.0)
    above = valid & ~below & ~at & (tv >= cap)
    status[below] = IVStatus.BELOW_INTRINSIC
    status[above] = IVStatus.ABOVE_MAX
    status[at] = IVStatus.AT_INTRINSIC
    vol[at] = 0.0

    todo = np.flatnonzero(valid & ~below & ~at & ~above)
    iterations = 0
    if todo.size:
        s, iterations, conv = _solve(F[todo], K[todo], tv[todo], max_iter, rtol)
        vol[todo] = np.where(conv, s / np.sqrt(T[todo]), np.nan)
        status[todo[~conv]] = IVStatus.NOT_CONVERGED
    return ImpliedVolResult(vol.reshape(shape), status.reshape(shape), iterations)


def _solve(F: np.ndarray, K: np.ndarray, tv: np.ndarray, max_iter: int, rtol: float):
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
