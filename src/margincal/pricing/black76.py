"""Black-76 prices and greeks, vectorised over numpy arrays (full broadcasting).

Model (Black 1976) for a European option on a forward ``F`` with strike ``K``,
time to expiry ``T`` (years), volatility ``sigma`` and continuously compounded
discount rate ``r`` (``D = exp(-r T)``)::

    d1 = (ln(F/K) + sigma^2 T / 2) / (sigma sqrt(T)),   d2 = d1 - sigma sqrt(T)
    call = D (F N(d1) - K N(d2))
    put  = D (K N(-d2) - F N(-d1))

Greeks (USD-margined / *linear* contracts, value in quote currency per unit of
underlying):

* ``delta = dV/dF``: ``D N(d1)`` (call), ``D (N(d1) - 1)`` (put);
* ``gamma = d2V/dF2 = D n(d1) / (F sigma sqrt(T))``;
* ``vega = dV/dsigma = D F n(d1) sqrt(T)`` per unit of volatility (1.00 = 100
  vol points; divide by 100 for "per vol point");
* ``theta = dV/dt`` with ``F`` held fixed, per year (divide by 365 for per
  day): ``r V - D F n(d1) sigma / (2 sqrt(T))``. This is QuantLib's
  ``BlackCalculator.theta(F, T)``.

Coin-margined (*inverse*, Deribit-style) options are quoted in the coin: the
premium is ``c = V / F`` coins. Their greeks here are:

* ``price = V / F`` (coins);
* ``delta = dV/dF - V/F`` (coins of underlying), the USD delta minus the price
  in coin. This is the delta Deribit reports: the holder paid the premium in
  coin, so ``c`` coins of the exposure are already "owned". Equivalently
  ``delta = F dc/dF``: the coin P&L per unit relative move of ``F``;
* ``gamma = d(delta)/dF = Gamma_usd - (Delta_usd - c) / F`` (coins per USD);
* ``vega = Vega_usd / F`` and ``theta = Theta_usd / F`` (coins).

At ``T == 0`` or ``sigma == 0`` the option is worth its discounted intrinsic
value; delta is the step ``D 1{F > K}`` (call) / ``-D 1{F < K}`` (put), and
gamma, vega and theta (apart from ``r V``) are 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr

from margincal.errors import DataError

_INV_SQRT_2PI = 0.3989422804014327


def _npdf(x: np.ndarray) -> np.ndarray:
    return _INV_SQRT_2PI * np.exp(-0.5 * x * x)


def as_is_call(option_type: ArrayLike) -> np.ndarray:
    """Normalise an option type (bool, 'C'/'P', 'call'/'put', or arrays of them) to a bool array."""
    a = np.asarray(option_type)
    if a.dtype == bool:
        return a
    if a.dtype.kind in "iuf":
        return a.astype(bool)
    s = np.char.lower(np.char.strip(a.astype(str)))
    is_call = (s == "c") | (s == "call")
    is_put = (s == "p") | (s == "put")
    bad = ~(is_call | is_put)
    if bad.any():
        first = a.ravel()[int(np.flatnonzero(bad.ravel())[0])]
        raise DataError(f"option_type is {first!r}; use True/False, 'C'/'P' or 'call'/'put'")
    return is_call


def _check_inputs(**arrays: np.ndarray) -> None:
    for name, a in arrays.items():
        if name == "vol" or name == "expiry_years":
            bad = ~(a >= 0) | ~np.isfinite(a)
            rule = "must be finite and >= 0"
        elif name == "rate":
            bad = ~np.isfinite(a)
            rule = "must be finite"
        else:
            bad = ~(a > 0) | ~np.isfinite(a)
            rule = "must be finite and > 0"
        if bad.any():
            i = int(np.flatnonzero(bad.ravel())[0])
            raise DataError(f"{name}[{i}] is {a.ravel()[i]}; {name} {rule}")


def _prepare(forward: ArrayLike, strike: ArrayLike, expiry_years: ArrayLike, vol: ArrayLike, option_type: ArrayLike,
             rate: ArrayLike) -> tuple[np.ndarray, ...]:
    F = np.asarray(forward, dtype=float)
    K = np.asarray(strike, dtype=float)
    T = np.asarray(expiry_years, dtype=float)
    s = np.asarray(vol, dtype=float)
    r = np.asarray(rate, dtype=float)
    _check_inputs(forward=F, strike=K, expiry_years=T, vol=s, rate=r)
    call = as_is_call(option_type)
    F, K, T, s, r, call = np.broadcast_arrays(F, K, T, s, r, call)
    return F, K, T, s, r, call


def _core(F: np.ndarray, K: np.ndarray, T: np.ndarray, s: np.ndarray, r: np.ndarray,
          call: np.ndarray) -> tuple[np.ndarray, ...]:
    """Undiscounted pieces shared by price and greeks."""
    sd = s * np.sqrt(T)
    live = sd > 0
    sd_safe = np.where(live, sd, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = np.where(live, (np.log(F / K) + 0.5 * sd_safe * sd_safe) / sd_safe, 0.0)
    d2 = d1 - np.where(live, sd_safe, 0.0)
    sign = np.where(call, 1.0, -1.0)
    nd1 = ndtr(sign * d1)
    nd2 = ndtr(sign * d2)
    undisc_live = np.maximum(sign * (F * nd1 - K * nd2), 0.0)  # rounding can dip below 0 far OTM
    intrinsic = np.maximum(sign * (F - K), 0.0)
    undisc = np.where(live, undisc_live, intrinsic)
    disc = np.exp(-r * T)
    return sd, live, sd_safe, d1, d2, sign, nd1, undisc, disc


def use_numba(backend: str) -> bool:
    """Whether to run the compiled kernels: ``backend`` is "numpy" (the default) or "numba"."""
    global _NUMBA_OK
    if backend == "numpy":
        return False
    if backend != "numba":
        raise DataError(f"backend is {backend!r}; use 'numpy' or 'numba'")
    if _NUMBA_OK is None:
        import importlib.util

        _NUMBA_OK = importlib.util.find_spec("numba") is not None  # found, not imported (import costs ~1 s)
    if not _NUMBA_OK:
        raise DataError("backend is 'numba' but the numba package is not installed; use backend='numpy'")
    return True


_NUMBA_OK: bool | None = None

_BLOCK = 1 << 14  # elements per block: temporaries stay in cache (full-size temporaries cost ~3x)


def _check_fast(**arrays: np.ndarray) -> None:
    """:func:`_check_inputs` behind a cheap min/max screen (NaN fails the screen too)."""
    for name, a in arrays.items():
        if a.size == 0:
            continue
        lo, hi = a.min(), a.max()
        ok = (lo >= 0 if name in ("vol", "expiry_years") else lo > 0) and hi < np.inf
        if name == "rate":
            ok = bool(np.isfinite(lo) and np.isfinite(hi))
        if not ok:
            _check_inputs(**{name: a})


def _price_block(F: np.ndarray, K: np.ndarray, T: np.ndarray, s: np.ndarray, call: np.ndarray,
                 r: np.ndarray | float, out: np.ndarray) -> None:
    """Undiscounted-then-discounted Black-76 price of one block into ``out``."""
    sd = s * np.sqrt(T)
    sign = call * 2.0 - 1.0
    live = sd > 0
    all_live = bool(live.all())
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = np.log(F / K)
        d1 /= sd
        d1 += 0.5 * sd
        d2 = d1 - sd
        d1 *= sign
        d2 *= sign
        v = F * ndtr(d1)
        v -= K * ndtr(d2)
    v *= sign
    np.maximum(v, 0.0, out=v)  # rounding can dip below 0 far OTM
    if not all_live:
        intrinsic = np.maximum(sign * (F - K), 0.0)
        v = np.where(live, v, intrinsic)
    if np.ndim(r) or r != 0.0:
        v *= np.exp(-r * T)
    out[...] = v


def black76_price(
    forward: ArrayLike,
    strike: ArrayLike,
    expiry_years: ArrayLike,
    vol: ArrayLike,
    option_type: ArrayLike = True,
    *,
    rate: ArrayLike = 0.0,
    inverse: bool = False,
    backend: str = "numpy",
) -> np.ndarray:
    """Black-76 price; arrays broadcast against each other.

    ``option_type``: True/'C'/'call' for calls, False/'P'/'put' for puts.
    Returns the value in quote currency per unit of underlying, or in coins
    (``V / F``) when ``inverse``.

    ``backend``: "numpy" (default) computes in blocks of ``_BLOCK`` options with ``scipy.special.ndtr``;
    "numba" runs the compiled, vectorised kernel of :mod:`margincal.pricing._kernels` (about 2.7x the
    numpy path on 1e6 options, docs/benchmarks.md). Same formula as :func:`black76_greeks`; the two
    agree to ~1e-13 absolute on prices of ~100. The kernel is not the default because importing numba
    costs about 1 s per process (and the first call in a fresh checkout compiles, a few seconds), which
    only pays off on large batches.
    """
    F = np.asarray(forward, dtype=float)
    K = np.asarray(strike, dtype=float)
    T = np.asarray(expiry_years, dtype=float)
    s = np.asarray(vol, dtype=float)
    r = np.asarray(rate, dtype=float)
    numba = use_numba(backend)
    if not numba:  # the kernel checks the inputs in its own loop
        _check_fast(forward=F, strike=K, expiry_years=T, vol=s, rate=r)
    call = as_is_call(option_type)
    scalar_rate = r.ndim == 0
    arrs = np.broadcast_arrays(F, K, T, s, call) if scalar_rate else np.broadcast_arrays(F, K, T, s, call, r)
    shape = arrs[0].shape
    flat = [a.ravel() for a in arrs]
    Ff, Kf, Tf, sf, cf = flat[:5]
    rf = float(r) if scalar_rate else math.nan
    rfa = None if scalar_rate else flat[5]
    n = Ff.size
    out = np.empty(n)
    if numba:
        from margincal.pricing import _kernels

        rk = np.array([rf]) if rfa is None else np.ascontiguousarray(rfa)
        ok = _kernels.price_kernel(np.ascontiguousarray(Ff), np.ascontiguousarray(Kf), np.ascontiguousarray(Tf),
                              np.ascontiguousarray(sf), np.ascontiguousarray(cf), rk, out)
        if not ok:  # the kernel flagged a bad input: the check names it
            _check_inputs(forward=F, strike=K, expiry_years=T, vol=s, rate=r)
        if inverse:
            out /= Ff
        res = out.reshape(shape)
        return res if shape else res[()]
    for i in range(0, n, _BLOCK):
        b = slice(i, i + _BLOCK)
        _price_block(Ff[b], Kf[b], Tf[b], sf[b], cf[b], rf if rfa is None else rfa[b], out[b])
    if inverse:
        out /= Ff
    res = out.reshape(shape)
    return res if shape else res[()]


@dataclass(frozen=True)
class Greeks:
    """Black-76 price and greeks (arrays of the broadcast shape). See the module doc for units."""

    price: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray
    inverse: bool = False


def black76_greeks(
    forward: ArrayLike,
    strike: ArrayLike,
    expiry_years: ArrayLike,
    vol: ArrayLike,
    option_type: ArrayLike = True,
    *,
    rate: ArrayLike = 0.0,
    inverse: bool = False,
) -> Greeks:
    """Price, delta, gamma, vega, theta (module doc gives the formulas and units)."""
    F, K, T, s, r, call = _prepare(forward, strike, expiry_years, vol, option_type, rate)
    sd, live, sd_safe, d1, d2, sign, nd1, undisc, disc = _core(F, K, T, s, r, call)
    value = disc * undisc
    pdf = np.where(live, _npdf(d1), 0.0)
    step = np.where(call, (F > K).astype(float), -(F < K).astype(float))
    delta = np.where(live, disc * sign * nd1, disc * step)
    gamma = np.where(live, disc * pdf / (F * sd_safe), 0.0)
    sqrt_t = np.sqrt(T)
    vega = disc * F * pdf * sqrt_t
    with np.errstate(divide="ignore", invalid="ignore"):
        decay = np.where(live, disc * F * pdf * s / (2.0 * np.where(sqrt_t > 0, sqrt_t, 1.0)), 0.0)
    theta = r * value - decay
    if not inverse:
        return Greeks(value, delta, gamma, vega, theta, False)
    coin = value / F
    d_inv = delta - coin
    g_inv = gamma - d_inv / F
    return Greeks(coin, d_inv, g_inv, vega / F, theta / F, True)


def black76_price_reference(
    forward: float, strike: float, expiry_years: float, vol: float, is_call: bool, rate: float = 0.0
) -> float:
    """Scalar, obviously-correct Black-76 with :mod:`math` only (kept beside the vectorised one)."""
    import math

    disc = math.exp(-rate * expiry_years)
    sd = vol * math.sqrt(expiry_years)
    if sd == 0.0:
        return disc * max((forward - strike) if is_call else (strike - forward), 0.0)

    def n_cdf(x: float) -> float:
        return 0.5 * math.erfc(-x / math.sqrt(2.0))

    d1 = (math.log(forward / strike) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    if is_call:
        return disc * (forward * n_cdf(d1) - strike * n_cdf(d2))
    return disc * (strike * n_cdf(-d2) - forward * n_cdf(-d1))


__all__ = ["Greeks", "as_is_call", "black76_greeks", "black76_price", "black76_price_reference"]
