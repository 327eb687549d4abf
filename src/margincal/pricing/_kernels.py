"""Compiled (numba) kernels for Black-76 prices and implied volatility, one option per loop iteration.

Same formulas, branch by branch, as the numpy code in :mod:`margincal.pricing.black76` and
:mod:`margincal.pricing.implied_vol` (the default backend and the
reference); see those modules for the method. Differences:

* the normal cdf is ``0.5 erfc(-x / sqrt 2)`` with erf/erfc from Cephes' rational approximations (the
  coefficients scipy's ``ndtr`` uses), written out here because the C library's ``erfc`` (what
  ``math.erfc`` compiles to) made the price kernel 15% slower; relative accuracy ~1e-16 near the centre and
  better than scipy's in the far lower tail (``exp(-x^2/2)`` on the exact square of ``x``);
* the inverse normal cdf (used only by the two wing branches of the initial guess) is written here:
  P. J. Acklam's rational approximation (:func:`_acklam`, relative error below 1.15e-9, published
  coefficients), without refinement: the guesses it serves are ~1e-2 off and the Householder steps
  that follow do not see the difference (a Halley step to ~1e-15 cost 7 ms per 1e6 options for
  nothing). scipy's ``ndtri`` could be called from compiled code through ``scipy.special.cython_special``,
  but a ctypes function pointer stops numba from caching the compiled kernel on disk (every process
  would recompile it, about 1 s);
* the low-wing objective ``ln b`` where ``d1 <= -sqrt 2`` is taken, as in the numpy path's ``erfcx`` form,
  from ``b = exp(-(h^2 + t^2)/2) (erfcx(-d1/sqrt 2) - erfcx(-d2/sqrt 2)) / 2`` with ``erfcx`` = Cephes'
  erfc rationals without their ``exp(-z^2)`` factor (:func:`_erfcx_ge1`; valid for ``z >= 1``, which is
  why the form is used from ``d1 <= -sqrt 2`` on). No element is left to the numpy code any more, except
  (status ``DEFER``) a low-wing element with ``d1 > -sqrt 2`` whose ``b`` is below 1e-250, which needs
  ``x`` within ~1e-250 of 0 and was never seen;
* the Gaussian factors are shared: one exponential per Householder step, ``g = exp(-(h^2 + t^2)/2)``,
  gives ``b' = g / sqrt(2 pi)`` and both cdf tails (``exp(-d1^2/2) = g e^{-x/2}``, ``exp(-d2^2/2) = g
  e^{x/2}``); the numpy path calls ``ndtr`` twice and ``exp`` once. Rounding ``h^2 + t^2`` costs a relative
  ``~eps (h^2 + t^2)`` on ``b``, the same order as rounding ``d1`` itself costs either way.

``@njit(cache=True, error_model="numpy")``, no ``parallel``: one core, so that the benchmark against QuantLib
is per core. The first call in a fresh checkout compiles (a few seconds per kernel on the benchmark
machine) and writes the machine code to ``__pycache__``; later processes load it from there (about 1 s,
mostly importing numba).

Floating-point flags: ``fastmath=False`` except ``{"contract"}`` (``_CONTRACT``) on the two kernels and the
implied-vol helpers: LLVM may then fuse ``a * b + c`` into one FMA instruction (one rounding instead of
two). That never loosens an error bound of the code here (Horner polynomials, rationals, differences of
products); what it could break is an error-free transformation that relies on the separate rounding of
a product. The only one in this module, the Dekker split of :func:`_gauss_exact`, is a function
compiled without the flag (not inlined into the flagged code at numba level; LLVM keeps the flags per
instruction when it inlines). :func:`vexp`'s rounding to an integer (``x / ln 2 + 1.5 * 2**52``) stays
exact when fused (the sum lies in a binade of spacing 1), and its ``k * ln2_hi`` is exact either way.
No other fast-math assumption (no reassociation, no "no NaN/inf"). The contraction makes the price
kernel ~1.2x and the implied-vol kernel ~1.07x faster (Horner chains are latency-bound);
tests/pricing/test_black76_numba.py checks the contracted primitives against numpy/scipy.

The price kernel is written so that LLVM vectorises its loop: no libm calls (``exp`` and ``log`` are
:func:`vexp` / :func:`vlog`, straight-line polynomial code on the float's bits, and the normal cdf is
:func:`vncdf`, the same Cephes rationals with both branches evaluated and one selected), no branches
that are not selects. On the benchmark machine it runs 4 options per AVX2 instruction, about 2.7x the
numpy path (docs/benchmarks.md, ``bench/bench_black76.py``).

The implied-vol kernel has data-dependent branches per option (three initial-guess branches, a variable
number of Householder steps), so it is not vectorised; per option the work is a long dependent chain of
``exp``/``log``/cdf evaluations. It works on blocks of ``_BLOCK`` options in passes (classify, guess the
middle branch, guess the wings, then one Householder step for every still-active option, grouped by
branch, repeated), so that the CPU overlaps the chains of consecutive options; about 1.7x the numpy path.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

_SQRT1_2 = 0.7071067811865476
_SQRT_2PI = 2.5066282746310002
_INV_SQRT_2PI = 0.3989422804014327
_LN_SQRT_2PI = 0.9189385332046728
_SQRT3 = 1.7320508075688772
_C_LOW = 1.2091995761561452  # 2 pi / (3 sqrt 3)
_TINY = 2.2250738585072014e-308
_EPS = 2.220446049250313e-16
_MAX_HOUSEHOLDER = 5
_TINY_B = 1e-250
_ACCEPT_FIRST = 5e-4
_ACCEPT_LATER = 1e-4

_CONTRACT = {"contract"}  # see the module doc

# statuses (the first six are margincal.pricing.IVStatus)
OK, AT_INTRINSIC, BELOW_INTRINSIC, ABOVE_MAX, INVALID_INPUT, NOT_CONVERGED, DEFER = 0, 1, 2, 3, 4, 5, 6


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _erf_tu(zz: float) -> tuple[float, float]:
    """Cephes' erf rationals: erf(z) / z = T(z^2) / U(z^2) for |z| < 1 (``zz = z^2``), as (T, U)."""
    t = (((9.60497373987051638749e0 * zz + 9.00260197203842689217e1) * zz + 2.23200534594684319226e3) * zz
         + 7.00332514112805075473e3) * zz + 5.55923013010394962768e4
    u = ((((zz + 3.35617141647503099647e1) * zz + 5.21357949780152679795e2) * zz + 4.59432382970980127987e3) * zz
         + 2.26290000613890934246e4) * zz + 4.92673942608635921086e4
    return t, u


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _erfc_pq(z: float) -> tuple[float, float]:
    """Cephes' erfc rationals for ``1 <= z < 8``: erfc(z) = exp(-z^2) P(z) / Q(z), as (P, Q)."""
    p = (((((((2.46196981473530512524e-10 * z + 5.64189564831068821977e-1) * z + 7.46321056442269912687e0) * z
             + 4.86371970985681366614e1) * z + 1.96520832956077098242e2) * z + 5.26445194995477358631e2) * z
          + 9.34528527171957607540e2) * z + 1.02755188689515710272e3) * z + 5.57535335369399327526e2
    q = (((((((z + 1.32281951154744992508e1) * z + 8.67072140885989742329e1) * z + 3.54937778887819891062e2) * z
            + 9.75708501743205489753e2) * z + 1.82390916687909736289e3) * z + 2.24633760818710981792e3) * z
         + 1.65666309194161350182e3) * z + 5.57535340817727675546e2
    return p, q


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _erf_ratio(zz: float) -> float:
    """Cephes' erf(z) / z = T(z^2) / U(z^2) for |z| < 1 (``zz = z^2``)."""
    t, u = _erf_tu(zz)
    return t / u


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _erfcx_ge1(z: float) -> float:
    """``erfcx(z) = exp(z^2) erfc(z)`` for ``z >= 1``: Cephes' erfc rationals ``P/Q`` (``z < 8``) or ``R/S``.

    Cephes (and scipy's ndtr) compute ``erfc(z) = exp(-z^2) P(z)/Q(z)`` for ``1 <= z < 8`` and
    ``exp(-z^2) R(z)/S(z)`` beyond: the rationals alone are the scaled function ``erfcx``. Measured against
    scipy's ``erfcx``: relative error <= 1.2e-15 on [1, 30], 3.2e-15 up to 1e8
    (tests/pricing/test_black76_numba.py).
    Below ``z = 1`` ``P/Q`` is not valid (1e-8 off at 0): callers use the erf rational there.
    """
    if z < 8.0:
        p, q = _erfc_pq(z)
    else:
        p = ((((5.64189583547755073984e-1 * z + 1.27536670759978104416e0) * z + 5.01905042251180477414e0) * z
              + 6.16021097993053585195e0) * z + 7.40974269950448939160e0) * z + 2.97886665372100240670e0
        q = (((((z + 2.26052863220117276590e0) * z + 9.39603524938001434673e0) * z + 1.20489539808096656605e1) * z
              + 1.70814450747565897222e1) * z + 9.60896809063285878198e0) * z + 3.36907645100081516050e0
    return p / q


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _ncdf_e(x: float, e: float) -> float:
    """Normal cdf given ``e = exp(-x^2 / 2)``, which is used only for ``|x| >= sqrt 2`` (tail formula).

    The implied-vol kernel derives ``e`` for ``d1`` and ``d2`` (and ``b'``) from one exponential per
    evaluation: ``d1^2 / 2 = (h^2 + t^2) / 2 + x / 2`` and ``d2^2 / 2 = (h^2 + t^2) / 2 - x / 2`` with
    ``h = x / s``, ``t = s / 2``.
    """
    a = abs(x)
    z = a * _SQRT1_2
    if a < 1.0:
        return 0.5 + 0.5 * (x * _SQRT1_2) * _erf_ratio(z * z)
    c = 1.0 - z * _erf_ratio(z * z) if z < 1.0 else e * _erfcx_ge1(z)
    y = 0.5 * c
    return 1.0 - y if x > 0.0 else y


@njit(cache=True, fastmath=False, error_model="numpy")
def _gauss_exact(a: float) -> float:
    """``exp(-a^2 / 2)`` on the exact square of ``a`` (Dekker split: ``a^2 = hi + lo``), to full relative accuracy."""
    sp = 134217729.0 * a
    ah = sp - (sp - a)
    al = a - ah
    hi = a * a
    lo = ((ah * ah - hi) + 2.0 * ah * al) + al * al
    return math.exp(-0.5 * hi) * (1.0 - 0.5 * lo)


@njit(cache=True, fastmath=False, error_model="numpy")
def ncdf(x: float) -> float:
    """Standard normal cdf ``0.5 erfc(-x / sqrt 2)``, erf/erfc by Cephes' rational approximations.

    ``|x| < 1``: ``1/2 + erf(x/sqrt 2)/2`` with erf = z T(z^2)/U(z^2); beyond, ``erfc(z) = exp(-z^2) P(z)/Q(z)``
    (``z < 8``) or ``exp(-z^2) R(z)/S(z)``, ``z = |x|/sqrt 2``, with ``exp(-x^2/2)`` evaluated on the exact
    square of ``x`` (Dekker split) so that the tail keeps its relative accuracy. Coefficients: S. L. Moshier,
    Cephes Math Library, ndtr.c (the ones scipy.special.ndtr uses).
    """
    a = abs(x)
    return _ncdf_e(x, _gauss_exact(a) if a * _SQRT1_2 >= 1.0 else 1.0)


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def _acklam(p: float) -> float:
    """P. J. Acklam's inverse normal cdf, relative error below 1.15e-9: all the initial guesses (themselves
    ~1e-2 off) need, so no refinement step (module doc)."""
    if p <= 0.0:
        return -np.inf
    if p >= 1.0:
        return np.inf
    if p < 0.02425:
        q = math.sqrt(-2.0 * math.log(p))
        x = ((((( -7.784894002430293e-03 * q - 3.223964580411365e-01) * q - 2.400758277161838e+00) * q
                - 2.549732539343734e+00) * q + 4.374664141464968e+00) * q + 2.938163982698783e+00) / \
            ((((7.784695709041462e-03 * q + 3.224671290700398e-01) * q + 2.445134137142996e+00) * q
              + 3.754408661907416e+00) * q + 1.0)
    elif p <= 1.0 - 0.02425:
        q = p - 0.5
        r = q * q
        x = (((((-3.969683028665376e+01 * r + 2.209460984245205e+02) * r - 2.759285104469687e+02) * r
               + 1.383577518672690e+02) * r - 3.066479806614716e+01) * r + 2.506628277459239e+00) * q / \
            (((((-5.447609879822406e+01 * r + 1.615858368580409e+02) * r - 1.556989798598866e+02) * r
               + 6.680131188771972e+01) * r - 1.328068155288572e+01) * r + 1.0)
    else:
        q = math.sqrt(-2.0 * math.log(1.0 - p))
        x = -((((( -7.784894002430293e-03 * q - 3.223964580411365e-01) * q - 2.400758277161838e+00) * q
                 - 2.549732539343734e+00) * q + 4.374664141464968e+00) * q + 2.938163982698783e+00) / \
            ((((7.784695709041462e-03 * q + 3.224671290700398e-01) * q + 2.445134137142996e+00) * q
              + 3.754408661907416e+00) * q + 1.0)
    return x


def _f2i_typer(typingctx, x):  # type: ignore[no-untyped-def]
    """The bits of a float64 as an int64 (an LLVM bitcast: no memory round trip, so loops stay vectorisable)."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return sig, codegen


def _i2f_typer(typingctx, x):  # type: ignore[no-untyped-def]
    """The float64 whose bits are the int64 ``x`` (inverse of :func:`_f2i`)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return sig, codegen


_f2i: Any = intrinsic(_f2i_typer)
_i2f: Any = intrinsic(_i2f_typer)

_INV_LN2 = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 rounded to 32 significant bits: k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
_ROUND = 6755399441055744.0  # 1.5 * 2**52: (y + _ROUND) - _ROUND rounds y to the nearest integer


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def vexp(x: float) -> float:
    """exp(x) in straight-line arithmetic (no libm call), so that LLVM vectorises the loops calling it.

    ``x = k ln 2 + r`` (``|r| <= ln 2 / 2``, Cody-Waite two-part ln 2), ``exp(r)`` by its Taylor
    polynomial to degree 13 (truncation below 4e-18 relative), times ``2**k`` built in the exponent
    bits. ``x`` is clamped to [-708, 709] (results below ~3e-308 come out as ~3e-308: harmless where
    only absolute accuracy matters, i.e. prices). Measured relative error <= 2.3e-16 against numpy.
    """
    x = min(max(x, -708.0), 709.0)
    kf = (x * _INV_LN2 + _ROUND) - _ROUND
    r = (x - kf * _LN2_HI) - kf * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _i2f((np.int64(kf) + 1023) << 52)


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def vlog(x: float) -> float:
    """ln(x) for finite normal ``x > 0`` in straight-line arithmetic (see :func:`vexp`).

    ``x = 2**e m`` from the bits, ``m`` moved into [sqrt(1/2), sqrt 2), ``ln m = 2 atanh(s)`` with
    ``s = (m - 1)/(m + 1)`` (``|s| <= 0.172``) by its series to ``s**23`` (truncation below 1e-19).
    Measured error <= 2.3e-16 relative (absolute near x = 1) against numpy.
    """
    b = _f2i(x)
    e = (b >> 52) - 1023
    m = _i2f((b & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000)
    big = m > 1.4142135623730951
    m = 0.5 * m if big else m
    ef = np.float64(e) + (1.0 if big else 0.0)
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    p = 1.0 / 23.0
    p = p * z + 1.0 / 21.0
    p = p * z + 1.0 / 19.0
    p = p * z + 1.0 / 17.0
    p = p * z + 1.0 / 15.0
    p = p * z + 1.0 / 13.0
    p = p * z + 1.0 / 11.0
    p = p * z + 1.0 / 9.0
    p = p * z + 1.0 / 7.0
    p = p * z + 1.0 / 5.0
    p = p * z + 1.0 / 3.0
    return (ef * _LN2_HI + 2.0 * s) + (2.0 * s * z * p + ef * _LN2_LO)


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def vgauss(x: float) -> float:
    """``exp(-x^2 / 2)`` by :func:`vexp`, for prices: ``x^2`` is rounded (relative error ~``x^2 eps``,
    e.g. 7e-15 at x = 8 on a value of 1e-14, so the absolute error stays below 1e-28; ``ncdf`` keeps the
    exact square for the relative accuracy the implied-vol kernel needs in the tail)."""
    return vexp(-0.5 * (x * x))


@njit(cache=True, fastmath=False, error_model="numpy", inline="always")
def vncdf(x: float, e: float) -> float:
    """Normal cdf for the price kernel given ``e = exp(-x^2 / 2)``: :func:`ncdf`'s formulas, branch-free.

    Both rationals (erf near 0, erfc beyond) are evaluated and one is selected before the single
    division, so a loop over options vectorises. The erfc rational is used past its domain
    (``z >= 8``, where ``ncdf`` switches to a third one): there the value is below 1e-28 and its
    relative error does not matter for a price. With ``e = vgauss(x)``: absolute error <= 2.3e-16
    against scipy's ndtr (tests/pricing/test_black76_numba.py).
    """
    a = abs(x)
    z = a * _SQRT1_2
    zz = z * z
    t, u = _erf_tu(zz)
    p, q = _erfc_pq(z)
    small = a < 1.0
    mid = z < 1.0
    num = (x * _SQRT1_2 if small else z) * t if mid else e * p
    r = num / (u if mid else q)
    if small:
        return 0.5 + 0.5 * r
    c = 0.5 * (1.0 - r) if mid else 0.5 * r
    return 1.0 - c if x > 0.0 else c


@njit(cache=True, fastmath=_CONTRACT, error_model="numpy")
def price_kernel(F: np.ndarray, K: np.ndarray, T: np.ndarray, s: np.ndarray, call: np.ndarray,
                 r: np.ndarray, out: np.ndarray) -> bool:
    """Black-76 price per element into ``out``; ``r`` has one element (shared) or one per option.

    Returns False if an input breaks the rules of ``black76._check_inputs`` (F, K > 0, T, vol >= 0,
    all finite): the caller then runs that check for its error message. Branch-free body with
    :func:`vlog` and :func:`vncdf` (and :func:`vexp` for discounting, in a second loop that a zero
    shared rate skips), so LLVM vectorises the loop (4 doubles per AVX2 instruction). One Gaussian
    exponential per option: ``exp(-d2^2/2) = exp(-d1^2/2) F/K`` (as ``d1^2 - d2^2 = 2 ln(F/K)``).
    """
    n = F.size
    inf = np.inf
    bad = False
    for i in range(n):
        f = F[i]
        k = K[i]
        t = T[i]
        vi = s[i]
        bad |= not ((f > 0.0) & (f < inf) & (k > 0.0) & (k < inf) & (t >= 0.0) & (t < inf)
                    & (vi >= 0.0) & (vi < inf))
        sd = vi * math.sqrt(t)
        sign = 1.0 if call[i] else -1.0
        live = sd > 0.0
        sdl = sd if live else 1.0
        q = min(max(f / k, 1e-300), 1e300)  # vlog needs a normal number; beyond, the price is its limit
        d1 = vlog(q) / sdl + 0.5 * sdl
        d2 = d1 - sdl
        e1 = vgauss(d1)
        v = sign * (f * vncdf(sign * d1, e1) - k * vncdf(sign * d2, e1 * q)) if live else sign * (f - k)
        out[i] = max(v, 0.0)  # rounding can dip below 0 far out of the money
    shared = r.size == 1
    for i in range(r.size):
        bad |= not math.isfinite(r[i])
    if bad or (shared and r[0] == 0.0):
        return not bad
    for i in range(n):
        ri = r[0] if shared else r[i]
        out[i] *= vexp(-ri * T[i])
    return True


@njit(cache=True, fastmath=_CONTRACT, error_model="numpy")
def _shape_r(r: float, delta: float, dl: float, dr: float) -> float:
    lo = (dl + dr) / delta
    if not (r >= lo):  # fmax: a NaN r takes the bound
        r = lo
    if not (r < 1e8):
        r = 1e8
    return r


@njit(cache=True, fastmath=_CONTRACT, error_model="numpy")
def _rc(t: float, omt: float, h: float, yl: float, yr: float, dl: float, dr: float, r: float) -> float:
    tc = t if t > 1e-100 else 1e-100
    oc = omt if omt > 1e-100 else 1e-100
    num = t * (yr * tc * tc + (r * yr - h * dr) * tc * omt + (r * yl + h * dl) * omt * oc) + yl * omt * oc * oc
    return num / (1.0 + (r - 3.0) * t * omt)


@njit(cache=True, fastmath=_CONTRACT, error_model="numpy")
def _guess_middle(x: float, ex: float, beta: float, qbeta: float) -> tuple[float, int, float, float, float, float]:
    """The numpy path's initial guess (``implied_vol._initial_guess``) for one option, middle branch.

    Returns ``(s0, branch, s_e, y_e, v_e, c2_e)``: branch 1 (middle) with its guess ``s0``, or 0 (low wing)
    / 2 (near ``b_max``) with what :func:`_guess_low` / :func:`_guess_high` need: the node ``s_e``, ``y_e``
    = ``b(s_e)`` (low) or ``b_max - b(s_e)`` (high), ``b'(s_e)`` and ``b''/b'`` there. Same formulas as the
    numpy path, with the Gaussian factors shared: ``exp(-s_c^2/2) = e^x = ex^2``; at the node one
    exponential ``g = exp(-(h^2 + t^2)/2)`` gives ``b'(s_e) = g / sqrt(2 pi)`` and the cdf tails of
    ``d1 = h + t`` and ``d2 = h - t`` (``exp(-d1^2/2) = g / ex``, ``exp(-d2^2/2) = g ex``).
    """
    iex = 1.0 / ex
    s_c = math.sqrt(-2.0 * x)
    b_c = 0.5 * ex - _ncdf_e(-s_c, ex * ex) * iex
    upper = beta > b_c
    s_e = s_c + ((ex - b_c) if upper else -b_c) * (_SQRT_2PI * iex)  # b'(s_c) = ex / sqrt(2 pi)
    i_se = 1.0 / s_e
    h = x * i_se
    t = 0.5 * s_e
    g = math.exp(-0.5 * (h * h + t * t))
    a1 = ex * _ncdf_e(-(h + t) if upper else (h + t), g * iex)
    a2 = _ncdf_e(h - t, g * ex) * iex
    q_e = a1 + a2
    b_e = (ex - a1 - a2) if upper else (a1 - a2)
    v_e = g * _INV_SQRT_2PI
    c2_e = h * h * i_se - 0.25 * s_e
    if upper and qbeta < q_e:  # near b_max
        return 0.0, 2, s_e, q_e, v_e, c2_e
    if not upper and beta < b_e:  # low wing
        return 0.0, 0, s_e, b_e, v_e, c2_e
    # middle: rational cubic for s(beta) between the node and the inflection point (slopes 1/b')
    d_c = _SQRT_2PI * iex
    d_e = _SQRT_2PI / g
    if upper:
        bl, br, sl, sr, dl, dr = b_c, b_e, s_c, s_e, d_c, d_e
    else:
        bl, br, sl, sr, dl, dr = b_e, b_c, s_e, s_c, d_e, d_c
    hh = br - bl
    ihh = 1.0 / hh
    delta = (sr - sl) * ihh
    r = (dr - dl) / (delta - dl) if upper else (dr - dl) / (dr - delta)
    r = _shape_r(r, delta, dl, dr)
    tt = (beta - bl) * ihh
    return _rc(tt, 1.0 - tt, hh, sl, sr, dl, dr, r), 1, s_e, b_e, v_e, c2_e


@njit(cache=True, fastmath=_CONTRACT, error_model="numpy")
def _guess_high(qbeta: float, s_e: float, q_e: float, v_e: float, c2_e: float) -> float:
    """Initial guess near ``b_max``: ``f(s) = N(-s/2)`` interpolated on ``[b_u, b_max]``, ``s = -2 N^-1(f)``."""
    gu = _gauss_exact(0.5 * s_e)
    f_u = _ncdf_e(-0.5 * s_e, gu)
    pu = gu * _INV_SQRT_2PI
    fp = -0.5 * pu
    d_l = fp / v_e
    d2_l = (0.125 * s_e * pu - fp * c2_e) / (v_e * v_e)
    delta = -f_u / q_e
    r = _shape_r((0.5 * q_e * d2_l - 0.5 - d_l) / (delta - d_l), delta, d_l, -0.5)
    omt = qbeta / q_e
    f = _rc(1.0 - omt, omt, q_e, f_u, 0.0, d_l, -0.5, r)
    f = min(max(f, _TINY), f_u)
    return -2.0 * _acklam(f)


@njit(cache=True, fastmath=_CONTRACT, error_model="numpy")
def _guess_low(x: float, beta: float, s_e: float, b_e: float, v_e: float, c2_e: float) -> float:
    """Initial guess in the low wing: ``f(s) = c |x| N(-|x|/(sqrt3 s))^3`` interpolated on ``[0, b_l]``, inverted."""
    ax = -x
    i_se = 1.0 / s_e
    i_ve = 1.0 / v_e
    z = -ax * (i_se * (1.0 / _SQRT3))
    gz = _gauss_exact(z)
    nz = _ncdf_e(z, gz)
    pz = gz * _INV_SQRT_2PI
    nz2 = nz * nz
    f_l = _C_LOW * ax * nz2 * nz
    fp = 3.0 * _C_LOW * ax * nz2 * pz * (-z * i_se)
    fpp = 3.0 * _C_LOW * ax * nz * pz * (i_se * i_se) * z * (2.0 * pz * z - nz * z * z + 2.0 * nz)
    d_r = fp * i_ve
    d2_r = (fpp - fp * c2_e) * (i_ve * i_ve)
    i_be = 1.0 / b_e
    delta = f_l * i_be
    r = _shape_r((0.5 * b_e * d2_r + d_r - 1.0) / (d_r - delta), delta, 1.0, d_r)
    tt = beta * i_be
    f = _rc(tt, 1.0 - tt, b_e, 0.0, f_l, 1.0, d_r, r)
    f = min(max(f, _TINY), f_l)
    return ax / (_SQRT3 * -_acklam(np.cbrt(f / (_C_LOW * ax))))


@njit(cache=True, fastmath=_CONTRACT, error_model="numpy")
def _householder(x: float, ex: float, iex: float, s: float, kind: int, beta: float, ln_beta: float,
                 qbeta: float) -> float:
    """One third-order Householder step on the branch's objective (``iex = 1/ex``); NaN asks the caller to defer.

    One exponential per step, ``g = exp(-(h^2 + t^2)/2)``: ``b' = g / sqrt(2 pi)`` and the Gaussian factors
    of both cdf tails (see :func:`_ncdf_e`). In the low wing with ``d1 <= -sqrt 2`` (both cdfs in the lower
    tail) ``b = g (erfcx(-d1/sqrt 2) - erfcx(-d2/sqrt 2)) / 2``: ``ln b`` and ``b'/b`` need no exponential
    at all, and nothing underflows (the numpy path's ``erfcx`` form, with Cephes' rationals as erfcx).
    """
    i_s = 1.0 / s
    h = x * i_s
    t = 0.5 * s
    d1 = h + t
    d2 = h - t
    hh = h * h
    q = hh + t * t  # d1^2 - x = d2^2 + x
    c2 = hh * i_s - 0.25 * s
    c3 = c2 * c2 - 3.0 * hh * i_s * i_s - 0.25
    if kind == 0:
        z1 = -d1 * _SQRT1_2
        if z1 >= 1.0:
            w = 0.5 * (_erfcx_ge1(z1) - _erfcx_ge1(-d2 * _SQRT1_2))  # b = g w
            lnb = math.log(w) - 0.5 * q
            rho = _INV_SQRT_2PI / w  # b'/b
        else:
            g = math.exp(-0.5 * q)
            val = ex * _ncdf_e(d1, g * iex) - _ncdf_e(d2, g * ex) * iex
            if not (val > _TINY_B):
                return math.nan  # only when x is (about) 0 and s tiny: the numpy path decides
            lnb = math.log(val)
            rho = g * _INV_SQRT_2PI / val
        ilnb = 1.0 / lnb
        w = (lnb + 2.0) * ilnb * rho
        nu = lnb * (ln_beta - lnb) / (rho * ln_beta)
        h2 = c2 - w
        h3 = ((2.0 * lnb + 6.0) * ilnb + 6.0 * ilnb * ilnb) * rho * rho - 3.0 * w * c2 + c3
    else:
        # floor: b' below e^-700 only far from the root (the numpy path floors there too); no subnormals
        g = math.exp(max(-0.5 * q, -700.0))
        bp = g * _INV_SQRT_2PI
        if kind == 2:
            val = ex * _ncdf_e(-d1, g * iex) + _ncdf_e(d2, g * ex) * iex  # b_max - b, no cancellation
            u = bp / val
            nu = math.log(val / qbeta) / u
            h2 = u + c2
            h3 = (2.0 * u + 3.0 * c2) * u + c3
        else:
            val = ex * _ncdf_e(d1, g * iex) - _ncdf_e(d2, g * ex) * iex
            nu = (beta - val) / bp
            h2 = c2
            h3 = c3
    return nu * (1.0 + 0.5 * h2 * nu) / (1.0 + nu * (h2 + h3 * nu * (1.0 / 6.0)))


_BLOCK = 256  # options per block of the implied-vol kernel (its per-block arrays stay in L1)


@njit(cache=True, fastmath=_CONTRACT, error_model="numpy")
def implied_vol_kernel(p: np.ndarray, F: np.ndarray, K: np.ndarray, T: np.ndarray, call: np.ndarray,
                       r: np.ndarray, inverse: bool, vol: np.ndarray, status: np.ndarray,
                       counts: np.ndarray) -> int:
    """Implied vol per element into ``vol``/``status``/``counts``; returns how many got ``DEFER``.

    Blocks of ``_BLOCK`` options, each in passes: classify and normalise, initial guesses, then one
    Householder step for every option still active (grouped by branch), repeated. Within a pass the
    options are independent, so the CPU overlaps one option's long chain of dependent operations with
    the next option's; one option at a time (all its steps, then the next option) was 1.4x slower.
    """
    n = p.size
    shared = r.size == 1
    deferred = 0
    inf = np.inf
    bi = np.empty(_BLOCK, np.int64)  # option index
    bx = np.empty(_BLOCK)
    bex = np.empty(_BLOCK)
    bbeta = np.empty(_BLOCK)
    bq = np.empty(_BLOCK)
    bs = np.empty(_BLOCK)
    blb = np.empty(_BLOCK)
    bk = np.empty(_BLOCK, np.int64)
    act = np.empty(_BLOCK, np.int64)
    ws = np.empty(_BLOCK)
    wy = np.empty(_BLOCK)
    wv = np.empty(_BLOCK)
    wc = np.empty(_BLOCK)
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        m = 0
        for i in range(start, stop):
            pi, f, k, t = p[i], F[i], K[i], T[i]
            ri = r[0] if shared else r[i]
            vol[i] = math.nan
            counts[i] = 0
            status[i] = NOT_CONVERGED
            valid = (pi >= 0.0) and (pi < inf) and (f > 0.0) and (f < inf) and (k > 0.0) and (k < inf) \
                and (t > 0.0) and (t < inf)
            u = pi * f if inverse else pi
            if ri != 0.0:
                valid = valid and math.isfinite(ri)
                u = u * math.exp(ri * t)
            if not valid:
                status[i] = INVALID_INPUT
                continue
            intrinsic = (f - k) if call[i] else (k - f)
            if intrinsic < 0.0:
                intrinsic = 0.0
            tv = u - intrinsic
            if tv >= min(f, k):
                status[i] = ABOVE_MAX
                continue
            if tv < -4.0 * _EPS * max(u, intrinsic):
                status[i] = BELOW_INTRINSIC
                continue
            if tv <= 0.0:
                status[i] = AT_INTRINSIC
                vol[i] = 0.0
                continue
            x = -abs(math.log(f / k))
            sqfk = math.sqrt(f * k)
            bi[m] = i
            bx[m] = x
            bbeta[m] = tv / sqfk
            bq[m] = (min(f, k) - tv) / sqfk
            m += 1
        nw = 0  # wing options, guessed in a pass of their own
        for j in range(m):
            x = bx[j]
            ex = math.exp(0.5 * x)
            bex[j] = ex
            s, kind, s_e, y_e, v_e, c2_e = _guess_middle(x, ex, bbeta[j], bq[j])
            bs[j] = s
            bk[j] = kind
            if kind != 1:
                act[nw] = j
                ws[nw], wy[nw], wv[nw], wc[nw] = s_e, y_e, v_e, c2_e
                nw += 1
        for jj in range(nw):
            j = act[jj]
            if bk[j] == 0:
                bs[j] = _guess_low(bx[j], bbeta[j], ws[jj], wy[jj], wv[jj], wc[jj])
                blb[j] = math.log(bbeta[j])  # the low wing's objective only
            else:
                bs[j] = _guess_high(bq[j], ws[jj], wy[jj], wv[jj], wc[jj])
        na = 0  # active options, grouped by branch so that the branch in _householder is predictable
        for kind in range(3):
            for j in range(m):
                if bk[j] == kind:
                    act[na] = j
                    na += 1
        for it in range(1, _MAX_HOUSEHOLDER + 1):
            tol = _ACCEPT_FIRST if it == 1 else _ACCEPT_LATER
            keep = 0
            for jj in range(na):
                j = act[jj]
                i = bi[j]
                kind = bk[j]
                ex = bex[j]
                s = bs[j]
                step = _householder(bx[j], ex, 1.0 / ex, s, kind, bbeta[j], blb[j], bq[j])
                if math.isnan(step) and kind == 0:
                    status[i] = DEFER
                    deferred += 1
                    continue
                s_new = s + step
                counts[i] = it
                if not (math.isfinite(s_new) and s_new > 0.0):
                    continue  # NOT_CONVERGED: the caller's bracketed solver takes it
                bs[j] = s_new
                if abs(step) <= tol * s_new:
                    status[i] = OK
                    vol[i] = s_new / math.sqrt(T[i])
                else:
                    act[keep] = j
                    keep += 1
            na = keep
            if na == 0:
                break
    return deferred
