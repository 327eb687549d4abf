"""Pure risk measures on arrays of losses.

Sign convention: **losses are positive** (a 5% drop of a long position is a
loss of +0.05). ``level`` is the confidence, e.g. 0.99.

Tail definition (documented once, used everywhere):

* ``value_at_risk(losses, level)`` is the empirical ``level``-quantile of the
  losses with the *lower* (inverse-CDF) definition: the smallest loss ``x`` with
  ``F(x) >= level`` (numpy ``method="inverted_cdf"``). For n=1000 and 0.99 it
  is the 990th smallest loss.
* ``expected_shortfall(losses, level)`` is the Acerbi–Tasche ES, the average of
  the worst ``(1 - level)`` fraction of outcomes, with the fractional weight on
  the VaR observation when ``n (1 - level)`` is not an integer::

      ES = ( sum of losses strictly above the VaR order statistic
             + (n(1-level) - count) * VaR ) / (n(1-level))

  It is coherent, so ES >= VaR and ES is sub-additive on a common scenario set.

Weighted versions accept probability ``weights`` (importance sampling,
age-weighted HS). NaN raises :class:`DataError`; it is never dropped silently.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from margincal.errors import DataError


def _check(losses: ArrayLike, level: float, weights: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    x = np.asarray(losses, dtype=float)
    if x.ndim != 1:
        x = x.ravel()
    if x.size == 0:
        raise DataError("losses is empty; VaR/ES need at least one observation")
    if np.isnan(x).any():
        i = int(np.flatnonzero(np.isnan(x))[0])
        raise DataError(f"losses[{i}] is NaN; remove or fill missing values before computing VaR/ES")
    if not 0.0 < level < 1.0:
        raise DataError(f"level is {level}; it must be in (0, 1), e.g. 0.99")
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=float).ravel()
        if w.shape != x.shape:
            raise DataError(f"weights has {w.size} elements, losses {x.size}; they must match")
        if np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise DataError("weights must be finite, >= 0 and not all zero")
        w = w / w.sum()
    return x, w


def value_at_risk(losses: ArrayLike, level: float = 0.99, weights: ArrayLike | None = None) -> float:
    """Empirical VaR: the lower ``level``-quantile of positive losses (see module doc)."""
    x, w = _check(losses, level, weights)
    if w is None:
        return float(np.quantile(x, level, method="inverted_cdf"))
    order = np.argsort(x, kind="stable")
    cw = np.cumsum(w[order])
    i = int(np.searchsorted(cw, level - 1e-12, side="left"))
    return float(x[order][min(i, x.size - 1)])


def expected_shortfall(losses: ArrayLike, level: float = 0.99, weights: ArrayLike | None = None) -> float:
    """Acerbi–Tasche Expected Shortfall of positive losses at ``level`` (see module doc)."""
    x, w = _check(losses, level, weights)
    n = x.size
    if w is None:
        w = np.full(n, 1.0 / n)
    order = np.argsort(x, kind="stable")[::-1]  # largest first
    xs, ws = x[order], w[order]
    tail = 1.0 - level
    cw = np.cumsum(ws)
    # full-weight observations: cumulative weight <= tail
    k = int(np.searchsorted(cw, tail + 1e-12, side="right"))
    total = float(np.dot(xs[:k], ws[:k]))
    used = float(cw[k - 1]) if k > 0 else 0.0
    if k < n and used < tail:
        total += (tail - used) * xs[k]
    return total / tail


def var_es(losses: ArrayLike, level: float = 0.99, weights: ArrayLike | None = None) -> tuple[float, float]:
    """Both measures at once."""
    return value_at_risk(losses, level, weights), expected_shortfall(losses, level, weights)
