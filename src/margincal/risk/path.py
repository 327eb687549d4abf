"""Kernels of the causal ``fit_path`` of the tail models: one pass over the data, no look-ahead.

A path row ``t`` (``t = 0 .. n``) is the forecast made after seeing the first
``t`` returns ``r_0 .. r_{t-1}``; row ``n`` is the forecast of ``fit`` on all
the data. The kernels here make that history fast without a second model:

* :func:`sorted_tails`: the empirical VaR/ES (the definitions of
  :mod:`margincal.risk.measures`) of a growing (or sliding) set of scenarios,
  kept in a sorted list (one binary insertion, and one deletion for a window,
  per bar), scaled by a per-bar volatility and mapped to simple-return losses
  per side. Used by historical and filtered historical simulation. Its VaR-only read
  (``es=False``, the backtest's) of a sample that only grows skips the per-bar loop: the
  order statistics far in the tails are read from the few values that ever reach them.
* :func:`rolling_moments`: count, skewness and excess kurtosis of the residuals
  so far (or the last ``window``) for every ``t`` from cumulative sums of
  ``z, z^2, z^3, z^4``. Used by Cornish-Fisher.
* :func:`cornish_fisher_domain_vec`: the monotonicity guard of
  :func:`margincal.risk.parametric.cornish_fisher_domain`, element-wise.

Each model's ``_path_reference`` (refit the model on every prefix) is the
definition; ``tests/risk/test_risk_family.py`` checks these kernels against it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from margincal.errors import ConfigError

#: columns of a path frame
PATH_COLUMNS = ("var_long", "es_long", "var_short", "es_short")


def inverted_cdf_index(n: ArrayLike, q: float) -> np.ndarray:
    """0-based position of numpy's ``method="inverted_cdf"`` quantile ``q`` in a sorted sample of size ``n``.

    The same floating-point steps as numpy (``v = n q - 1``; the floor of ``v``
    when ``v`` is whole, else the next integer; clipped at 0).
    """
    v = np.asarray(n, dtype=float) * float(q) - 1.0
    prev = np.floor(v)
    idx = np.where((v - prev) == 0, prev, prev + 1.0)
    return np.maximum(idx, 0.0).astype(np.intp)


def tail_count(m: int, level: float) -> tuple[int, float]:
    """(k, used): the ES of :func:`margincal.risk.measures.expected_shortfall` with ``m`` equal weights takes
    the ``k`` largest losses in full and ``tail - used`` of the next one."""
    tail = 1.0 - level
    k = int(math.floor((tail + 1e-12) * m))
    k = min(k, m)
    return k, k / m


def sorted_tails(values: np.ndarray, avail: np.ndarray, scale: np.ndarray, *, level: float, t_min: int,
                 drop_before: np.ndarray | None = None, refit: int = 1, es: bool = True) -> dict[str, np.ndarray]:
    """Per-side VaR/ES of the scenarios available at each ``t``, on the simple-loss scale.

    ``values[j]`` (log-return scenario in units of ``scale``) joins the sample
    at row ``avail[j]`` (non-decreasing); with ``drop_before`` given, the
    sample at row ``t`` keeps only ``j >= drop_before[t]`` (a sliding window,
    non-decreasing too). At row ``t >= t_min`` with a non-empty sample the
    scenario returns are ``scale[t] * values`` and, per side, the losses are
    ``1 - exp(x)`` (long) and ``exp(x) - 1`` (short). With ``refit = k > 1``
    the order statistics are re-read every ``k``-th row from ``t_min`` and held
    in between while ``scale`` still moves every row. ``es=False`` reads the two VaR
    order statistics only (ES columns NaN): what a VaR backtest needs, far cheaper.
    """
    n1 = scale.size
    out = {c: np.full(n1, np.nan) for c in PATH_COLUMNS}
    if int(refit) != refit or refit < 1:
        raise ConfigError(f"refit is {refit}; it must be a whole number of bars >= 1")
    if not es:
        lo_v, hi_v = _var_order_statistics(np.asarray(values, dtype=float), np.asarray(avail, dtype=np.intp),
                                           n1, level=level, t_min=t_min, drop_before=drop_before, refit=int(refit))
        out["var_long"] = -np.expm1(scale * lo_v)
        out["var_short"] = np.expm1(scale * hi_v)
        return out
    vals = np.asarray(values, dtype=float).tolist()
    av = np.asarray(avail, dtype=np.intp)
    buf: list[float] = []
    j_in = 0
    j_out = 0
    held: tuple[np.ndarray, np.ndarray, int, int, float] | None = None
    idx_table = inverted_cdf_index(np.arange(len(vals) + 1), level).tolist()
    for t in range(n1):
        while j_in < len(vals) and av[j_in] <= t:
            bisect.insort(buf, vals[j_in])
            j_in += 1
        if drop_before is not None:
            lo = int(drop_before[t])
            while j_out < min(lo, j_in):
                del buf[bisect.bisect_left(buf, vals[j_out])]
                j_out += 1
        if t < t_min or not buf:
            continue
        if held is None or (t - t_min) % refit == 0:
            m = len(buf)
            i = idx_table[m]
            k, used = tail_count(m, level)
            kk = min(k + 1, m)
            # smallest values -> long losses, largest -> short losses; both in descending loss order
            top = max(kk, m - i)
            held = (np.array(buf[:top]), np.array(buf[m - top:][::-1]), m, i, float(used))
        low, high, m, i, used = held
        k, _ = tail_count(m, level)
        s = float(scale[t])
        tail = 1.0 - level
        for side, arr in (("long", low), ("short", high)):
            x = s * arr
            loss = -np.expm1(x) if side == "long" else np.expm1(x)
            var = float(loss[m - 1 - i])
            total = float(np.sum(loss[:k])) / m
            if k < m and used < tail:
                total += (tail - used) * float(loss[k])
            out[f"var_{side}"][t] = var
            out[f"es_{side}"][t] = max(total / tail, var)
    return out


def _var_order_statistics(vals_arr: np.ndarray, av: np.ndarray, n1: int, *, level: float, t_min: int,
                          drop_before: np.ndarray | None, refit: int) -> tuple[np.ndarray, np.ndarray]:
    """The two VaR order statistics of :func:`sorted_tails` (``es=False``): (lower, upper) per row, NaN where none.

    The same sorted list as the ES branch; the loop is kept minimal (it runs once per bar of every
    instrument of a backtest): how many values have joined (and left) by each row is computed up front.
    """
    rows = np.arange(n1)
    if av.size and av[0] >= 0:  # values joined by row t: vals[:n_in[t]] (av is non-decreasing)
        n_in = np.cumsum(np.bincount(av, minlength=n1)[:n1])
    else:
        n_in = np.searchsorted(av, rows, side="right")
    if drop_before is None and not _mixed_signed_zeros(vals_arr):
        return _expanding_var_order_statistics(vals_arr, n_in, n1, level=level, t_min=t_min, refit=refit)
    n_out = None if drop_before is None else np.minimum(np.asarray(drop_before, dtype=np.intp), n_in)
    idx_table = inverted_cdf_index(np.arange(vals_arr.size + 1), level).tolist()
    vals = vals_arr.tolist()
    lo_v = [math.nan] * n1
    hi_v = [math.nan] * n1
    insort, bisect_left = bisect.insort, bisect.bisect_left
    start = min(t_min, n1)
    # rows before t_min only fill the list
    c0 = int(n_in[start - 1]) if start > 0 else 0
    o0 = int(n_out[start - 1]) if (n_out is not None and start > 0) else 0
    buf = sorted(vals[o0:c0])
    j_in, j_out = c0, o0
    n_in_l = n_in.tolist()
    n_out_l = None if n_out is None else n_out.tolist()
    lo = hi = math.nan
    have = False
    for t in range(start, n1):
        c = n_in_l[t]
        while j_in < c:
            insort(buf, vals[j_in])
            j_in += 1
        if n_out_l is not None:
            o = n_out_l[t]
            while j_out < o:
                del buf[bisect_left(buf, vals[j_out])]
                j_out += 1
        m = j_in - j_out
        if not m:
            continue
        if not have or (t - t_min) % refit == 0:
            i = idx_table[m]
            lo, hi = buf[m - 1 - i], buf[i]
            have = True
        lo_v[t] = lo
        hi_v[t] = hi
    return np.array(lo_v), np.array(hi_v)


def _mixed_signed_zeros(x: np.ndarray) -> bool:
    """Whether ``x`` holds both ``0.0`` and ``-0.0`` (equal values that the upper-tail read on ``-x`` could swap)."""
    zeros = x[x == 0.0]
    if not zeros.size:
        return False
    neg = np.signbit(zeros)
    return bool(neg.any() and not neg.all())


def _expanding_var_order_statistics(vals_arr: np.ndarray, n_in: np.ndarray, n1: int, *, level: float,
                                    t_min: int, refit: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_var_order_statistics` without a window (the sample only grows), without a per-row loop.

    The rows that read the order statistics (every ``refit``-th from ``t_min``, and the first row with a
    sample) need the ``k``-th smallest and the ``k``-th largest of ``vals[:m]`` with ``m = n_in[t]`` and
    ``k = m - 1 - i`` (``i`` the inverted-cdf index of ``m``): both far in the tails, so
    :func:`_prefix_order_statistics` reads them from the few values that are ever among the ``k + 1``
    most extreme. The values are picked, not computed: the same numbers as the sorted-list loop.
    """
    lo_v = np.full(n1, np.nan)
    hi_v = np.full(n1, np.nan)
    start = min(t_min, n1)
    live = np.flatnonzero(n_in[start:])  # n_in is non-decreasing: rows with a sample form a suffix
    if not live.size:
        return lo_v, hi_v
    t0 = start + int(live[0])
    tail_rows = np.arange(t0, n1)
    read = tail_rows if refit == 1 else tail_rows[((tail_rows - t_min) % refit == 0) | (tail_rows == t0)]
    m = n_in[read]
    k = m - 1 - inverted_cdf_index(m, level)
    lo = _prefix_order_statistics(vals_arr, m, k)
    hi = -_prefix_order_statistics(-vals_arr, m, k)
    if read.size == tail_rows.size:  # refit = 1: every row reads
        lo_v[t0:], hi_v[t0:] = lo, hi
    else:
        held = np.searchsorted(read, tail_rows, side="right") - 1
        lo_v[t0:], hi_v[t0:] = lo[held], hi[held]
    return lo_v, hi_v


def _prefix_order_statistics(v: np.ndarray, m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The ``k[r]``-th smallest (0-based) of ``v[:m[r]]`` for each ``r`` (``m``, ``k`` non-decreasing, ``k < m``).

    Only values that are ever among the ``L = max(k) + 1`` smallest of the prefix ending at them can be
    read: a value ``v[j]`` above the ``L``-th smallest of a shorter prefix ``v[:s]`` (``s <= j``) never is.
    Those thresholds, from prefixes doubling in length, leave about ``L log2(n / L)`` candidates. One
    pass over the candidates in time order keeps the ``L`` smallest so far in a sorted list (the same
    insertion order, so the same element among ties, as a sorted list of all values) and records the
    ranks the reading rows of each state need.
    """
    L = int(k[-1]) + 1
    M = int(m[-1])
    v = v[:M]
    cand = np.ones(M, dtype=bool)
    s = L
    while s < M:
        e = min(2 * s, M)
        cand[s:e] = v[s:e] <= np.partition(v[:s], L - 1)[L - 1]
        s = e
    ci = np.flatnonzero(cand)
    state = np.cumsum(cand)[m - 1]  # candidates joined by each reading row (>= k + 1: the first L all join)
    # per state (candidates joined), the ranks its reading rows read: k of its first and last row
    first = np.searchsorted(state, np.arange(1, ci.size + 1), side="left")
    last = np.searchsorted(state, np.arange(1, ci.size + 1), side="right") - 1
    has = first <= last
    klo = np.where(has, k[np.minimum(first, k.size - 1)], 0)
    khi = np.where(has, k[np.maximum(last, 0)], -1)
    width = khi - klo + 1
    offset = np.cumsum(width) - width
    buf = [math.inf] * L
    flat: list[float] = []
    insort = bisect.insort
    for x, a, b in zip(v[ci].tolist(), klo.tolist(), (khi + 1).tolist(), strict=True):
        if x < buf[-1]:
            insort(buf, x)
            buf.pop()
        if b > a:
            flat.extend(buf[a:b])
    return np.array(flat)[offset[state - 1] + k - klo[state - 1]]


def rolling_moments(z: np.ndarray, first: int, window: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, skewness, excess kurtosis) of ``z[first:t]`` (or its last ``window``) for ``t = 0 .. n``.

    Biased moment estimators, as ``scipy.stats.skew`` / ``kurtosis``; NaN where the count is below 2.
    """
    n = z.size
    xs = np.where(np.arange(n) >= first, z, 0.0)
    x2 = xs * xs
    cs = [np.concatenate([[0.0], np.cumsum(p)]) for p in (xs, x2, x2 * xs, x2 * x2)]  # products: no pow calls
    t = np.arange(n + 1)
    start = np.full(n + 1, first) if window is None else np.maximum(first, t - int(window))
    start = np.minimum(start, t)
    cnt = (t - start).astype(float)
    s1, s2, s3, s4 = (c[t] - c[start] for c in cs)
    with np.errstate(invalid="ignore", divide="ignore"):
        m1, e2, e3, e4 = s1 / cnt, s2 / cnt, s3 / cnt, s4 / cnt
        m2 = np.maximum(e2 - m1**2, 0.0)
        m3 = e3 - 3 * m1 * e2 + 2 * m1**3
        m4 = e4 - 4 * m1 * e3 + 6 * m1**2 * e2 - 3 * m1**4
        skew = np.where(m2 > 0, m3 / m2**1.5, 0.0)
        kurt = np.where(m2 > 0, m4 / m2**2 - 3.0, 0.0)
    bad = cnt < 2
    return cnt, np.where(bad, np.nan, skew), np.where(bad, np.nan, kurt)


def _cf_monotone(skew: np.ndarray, exkurt: np.ndarray) -> np.ndarray:
    a = exkurt / 8 - skew * skew / 6
    b = skew / 3
    c = 1 - exkurt / 8 + 5 * skew * skew / 36
    tol = 1e-12
    return np.where(a > tol, b * b - 4 * a * c <= tol, (np.abs(a) <= tol) & (np.abs(b) <= tol) & (c >= -tol))


def _cf_bracket(abs_skew: np.ndarray, exkurt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A tight starting bracket ``(lo, hi)`` for the bisection of :func:`cornish_fisher_domain_vec`.

    With ``A = K / 8`` and ``u = S^2`` the monotonicity test ``b^2 - 4ac <= 0`` reads
    ``f(u) = 5/54 u^2 + (7 - 11 A)/9 u - 4 A (1 - A) <= 1e-12``; the positive root ``u*`` of
    ``f(u) = 1e-12`` is the boundary
    (``f(6A) = 2A/3 >= 0``, so ``a >= 0`` there). The bracket is ``sqrt(u*)`` widened by 1e-8
    (relative) and checked with :func:`_cf_monotone` (``|S| = 3e-12`` where ``K = 0``: there only
    ``|b| <= 1e-12`` passes); where the check fails it is ``[0, |S|]``, the bisection's own start. The bisection then ends on the same boundary in ~27 steps instead of ~55.
    """
    a8 = exkurt / 8
    qb = (7 - 11 * a8) / 9
    qc = -4 * a8 * (1 - a8) - 1e-12  # the test's tolerance: b^2 - 4ac <= 1e-12
    qa = 5 / 54
    with np.errstate(invalid="ignore"):
        u = (-qb + np.sqrt(qb * qb - 4 * qa * qc)) / (2 * qa)
        est = np.sqrt(np.maximum(u, 0.0))
    lo, hi = np.zeros(abs_skew.size), abs_skew.copy()
    # where a <= 0 everywhere (K clipped to 0) only the |b| <= 1e-12 branch is monotone: |S| <= 3e-12
    for cand in (np.full(abs_skew.size, 3e-12), np.where(np.isfinite(est), est, 0.0)):
        c_lo = np.minimum(cand * (1 - 1e-8), abs_skew)
        c_hi = np.minimum(cand * (1 + 1e-8), abs_skew)
        good = _cf_monotone(c_lo, exkurt) & ~_cf_monotone(c_hi, exkurt)
        lo, hi = np.where(good, c_lo, lo), np.where(good, c_hi, hi)
    return lo, hi


def cornish_fisher_domain_vec(skew: np.ndarray, exkurt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Element-wise :func:`margincal.risk.parametric.cornish_fisher_domain`: (skew, exkurt, adjusted)."""
    s = np.asarray(skew, dtype=float).copy()
    k = np.asarray(exkurt, dtype=float).copy()
    ok = _cf_monotone(s, k)
    k = np.where(ok, k, np.minimum(np.maximum(k, 0.0), 8.0))
    need = ~(ok | _cf_monotone(s, k))
    if need.any():
        hi = np.abs(s[need])
        kk = k[need]
        lo, hi = _cf_bracket(hi, kk)
        # _cf_monotone(mid, kk) with the parts that do not depend on mid computed once (the same
        # floating-point steps); the loop stops once (lo, hi) no longer move (the remaining steps of
        # the 60 could not move them either).
        k8 = kk / 8
        c0 = 1 - k8
        tol = 1e-12
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            a = k8 - mid * mid / 6
            b = mid / 3
            c = c0 + 5 * mid * mid / 36
            mono = np.where(a > tol, b * b - 4 * a * c <= tol, (np.abs(a) <= tol) & (np.abs(b) <= tol) & (c >= -tol))
            new_lo = np.where(mono, mid, lo)
            new_hi = np.where(mono, hi, mid)
            if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
                break
            lo, hi = new_lo, new_hi
        s[need] = np.copysign(lo, s[need])
    return s, k, ~ok


__all__ = ["PATH_COLUMNS", "cornish_fisher_domain_vec", "inverted_cdf_index", "rolling_moments", "sorted_tails",
           "tail_count"]


def newton_minimize(fun: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray, *, lower: np.ndarray | None = None,
                    upper: np.ndarray | None = None, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """Damped Newton minimisation of a smooth function of a few variables from a good start.

    ``fun(x) -> (value, gradient)``; the Hessian is the central difference of the
    analytic gradient; a non-positive-definite Hessian falls back to a gradient
    step; steps are halved until the value decreases (Armijo) and clipped to the
    bounds. It stops when a step moves no coordinate by more than ``tol``.
    Why hand-written: the warm-started rolling fits (t degrees of freedom, GPD tail)
    need a few cheap iterations and a tight, deterministic stopping rule; scipy's
    general minimisers cost more per call than the fit itself on these sizes.
    """
    f = fun
    x = np.asarray(x0, dtype=float).copy()
    lo = np.full(x.size, -np.inf) if lower is None else np.asarray(lower, dtype=float)
    hi = np.full(x.size, np.inf) if upper is None else np.asarray(upper, dtype=float)
    x = np.clip(x, lo, hi)
    val, g = f(x)
    eye = np.eye(x.size)
    for _ in range(max_iter):
        hstep = 1e-5 * np.maximum(1.0, np.abs(x))
        H = np.empty((x.size, x.size))
        for i in range(x.size):
            H[:, i] = (f(x + hstep[i] * eye[i])[1] - f(x - hstep[i] * eye[i])[1]) / (2 * hstep[i])
        H = 0.5 * (H + H.T)
        try:
            np.linalg.cholesky(H)
            step = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            step = -g / max(1.0, float(np.linalg.norm(g)))
        alpha = 1.0
        while True:
            xn = np.clip(x + alpha * step, lo, hi)
            vn, gn = f(xn)
            if vn <= val + 1e-4 * float(np.dot(g, xn - x)) or alpha < 1e-10:
                break
            alpha *= 0.5
        moved = float(np.max(np.abs(xn - x)))
        if vn > val:  # no decrease possible: at the optimum up to rounding
            break
        x, val, g = xn, vn, gn
        if moved < tol:
            break
    return x
