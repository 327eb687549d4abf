"""Online (O(1) per event) estimators used by the monitor.

Each class keeps a few plain Python floats in ``__slots__`` and updates them
with one observation at a time, so the monitor's hot loop costs a handful of
float operations per event. Every estimator can be saved with ``state()``
(a JSON-able dict) and restored with ``from_state``; the monitor stores that
state in the ``monitor_state`` table to resume after a crash.

Definitions (``a = 1 - lam``, ``lam = 0.5 ** (1 / halflife_obs)``):

* :class:`EWMAVariance` - zero-mean exponentially weighted variance of
  returns (RiskMetrics): ``v_t = lam v_{t-1} + a x_t^2``. Seeded with the mean
  of the first ``seed`` squares (a running mean until then). With ``seed=1``
  it equals ``pandas.Series(x**2).ewm(alpha=a, adjust=False).mean()``.
* :class:`EWMStats` - exponentially weighted mean and (biased) variance with
  exactly pandas' ``ewm(alpha=a, adjust=False)`` recursions::

      m_t = (1-a) m_{t-1} + a x_t
      v_t = (1-a) (v_{t-1} + (m_{t-1} - m_t)^2) + a (x_t - m_t)^2

  (= ``.mean()`` and ``.var(bias=True)``). :meth:`EWMStats.zscore` scores a new
  observation against the state *before* it is added.
* :class:`RollingCount` - exact count of flags over the last ``n``
  observations (ring buffer of 0/1 and an integer running sum).
* :func:`corwin_schultz_spread` - the Corwin-Schultz (2012) bid-ask spread
  estimate from two consecutive bars' highs and lows (a bar-based liquidity
  proxy for replays without order-book data).
* :class:`BreachCounter` - margin breaches: a breach at bar ``t`` is a move
  over the last ``h`` bars (either side, as a simple return) larger than the
  IM rate that was in effect ``h`` bars earlier; after a breach the next one
  can only be counted ``h`` bars later (breach *episodes*, not the same move
  seen by ``h`` overlapping windows). The count over the last ``window``
  bars is a :class:`RollingCount`.
"""

from __future__ import annotations

import math
from typing import Any

from margincal.errors import ConfigError

__all__ = [
    "BreachCounter",
    "EWMAVariance",
    "EWMStats",
    "RollingCount",
    "corwin_schultz_spread",
    "halflife_to_lambda",
]


def halflife_to_lambda(halflife_obs: float) -> float:
    """Decay ``lam`` whose weights halve after ``halflife_obs`` observations: ``0.5 ** (1 / halflife_obs)``."""
    if not (halflife_obs > 0 and math.isfinite(halflife_obs)):
        raise ConfigError(f"halflife is {halflife_obs} observations; it must be a positive number")
    return 0.5 ** (1.0 / halflife_obs)


def _check_lam(lam: float) -> float:
    lam = float(lam)
    if not 0.0 < lam < 1.0:
        raise ConfigError(f"lam is {lam}; it must be in (0, 1)")
    return lam


class EWMAVariance:
    """Zero-mean EWMA variance of returns, updated one return at a time."""

    __slots__ = ("a", "lam", "n", "seed", "var")

    def __init__(self, lam: float, seed: int = 1) -> None:
        self.lam = _check_lam(lam)
        self.a = 1.0 - self.lam  # the weight of the new observation (the same double on every update)
        if int(seed) < 1:
            raise ConfigError(f"seed is {seed}; it must be >= 1")
        self.seed = int(seed)
        self.n = 0
        self.var = math.nan

    def update(self, x: float) -> float:
        """Add return ``x``; returns the variance including it."""
        n = self.n + 1
        self.n = n
        if n <= self.seed:
            self.var = x * x if n == 1 else self.var + (x * x - self.var) / n
        else:
            self.var = self.lam * self.var + self.a * (x * x)
        return self.var

    def update_scaled(self, x2: float) -> float:
        """Add an already squared (and possibly gap-scaled) return ``x2``."""
        n = self.n + 1
        self.n = n
        if n <= self.seed:
            self.var = x2 if n == 1 else self.var + (x2 - self.var) / n
        else:
            self.var = self.lam * self.var + self.a * x2
        return self.var

    @property
    def sigma(self) -> float:
        return math.sqrt(self.var) if self.n else math.nan

    def state(self) -> dict[str, Any]:
        return {"lam": self.lam, "seed": self.seed, "n": self.n, "var": None if self.n == 0 else self.var}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> EWMAVariance:
        obj = cls(s["lam"], s["seed"])
        obj.n = int(s["n"])
        obj.var = math.nan if s["var"] is None else float(s["var"])
        return obj


class EWMStats:
    """Exponentially weighted mean and biased variance (pandas ``ewm(adjust=False)`` recursions)."""

    __slots__ = ("alpha", "den", "mean", "n", "ow", "var")

    def __init__(self, lam: float) -> None:
        self._set_alpha(1.0 - _check_lam(lam))
        self.n = 0
        self.mean = math.nan
        self.var = math.nan

    def _set_alpha(self, alpha: float) -> None:
        self.alpha = alpha
        # pandas' old and new weights and their sum, computed once (the same doubles on every update)
        self.ow = 1.0 - alpha
        self.den = self.ow + alpha

    def update(self, x: float) -> None:
        n = self.n
        if n == 0:
            self.mean = x
            self.var = 0.0
            self.n = 1
            return
        # same operation order as pandas' ewmcov(adjust=False) so results agree to rounding
        old_wt = self.ow
        new_wt = self.alpha
        den = self.den
        old_mean = self.mean
        mean = (old_wt * old_mean + new_wt * x) / den if old_mean != x else old_mean
        self.mean = mean
        d_old = old_mean - mean
        d_new = x - mean
        self.var = (old_wt * (self.var + d_old * d_old) + new_wt * (d_new * d_new)) / den
        self.n = n + 1

    def zscore(self, x: float) -> float:
        """``(x - mean) / sd`` against the current state (before ``x`` is added); NaN when undefined."""
        if self.n < 2 or not self.var > 0.0:
            return math.nan
        return (x - self.mean) / math.sqrt(self.var)

    def state(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "n": self.n, "mean": None if self.n == 0 else self.mean,
                "var": None if self.n == 0 else self.var}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> EWMStats:
        obj = cls(1.0 - float(s["alpha"]))
        obj._set_alpha(float(s["alpha"]))
        obj.n = int(s["n"])
        obj.mean = math.nan if s["mean"] is None else float(s["mean"])
        obj.var = math.nan if s["var"] is None else float(s["var"])
        return obj


class RollingCount:
    """Number of true flags among the last ``n`` observations (exact; ring buffer)."""

    __slots__ = ("buf", "count", "i", "n")

    def __init__(self, n: int) -> None:
        if int(n) < 1:
            raise ConfigError(f"rolling window is {n} observations; it must be >= 1")
        self.n = int(n)
        self.buf = [0] * self.n
        self.i = 0
        self.count = 0

    def update(self, flag: bool | int) -> int:
        f = 1 if flag else 0
        i = self.i
        self.count += f - self.buf[i]
        self.buf[i] = f
        self.i = i + 1 if i + 1 < self.n else 0
        return self.count

    def state(self) -> dict[str, Any]:
        return {"n": self.n, "buf": list(self.buf), "i": self.i, "count": self.count}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> RollingCount:
        obj = cls(int(s["n"]))
        obj.buf = [int(v) for v in s["buf"]]
        obj.i = int(s["i"])
        obj.count = int(s["count"])
        return obj


_CS_K = 3.0 - 2.0 * math.sqrt(2.0)


def corwin_schultz_spread(h1: float, l1: float, h2: float, l2: float) -> float:
    """Corwin & Schultz (2012, J. Finance 67(2), eq. 14) spread from two consecutive bars.

    ``beta = ln(H1/L1)^2 + ln(H2/L2)^2``, ``gamma = ln(max(H1,H2)/min(L1,L2))^2``,
    ``alpha = (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt 2) - sqrt(gamma / (3 - 2 sqrt 2))``,
    ``S = 2 (e^alpha - 1) / (1 + e^alpha)``; negative estimates are set to 0 (as
    the paper does). Returns a fraction of price (0.001 = 10 bps).
    """
    a = math.log(h1 / l1)
    b = math.log(h2 / l2)
    beta = a * a + b * b
    g = math.log((h1 if h1 > h2 else h2) / (l1 if l1 < l2 else l2))
    alpha = (math.sqrt(2.0 * beta) - math.sqrt(beta)) / _CS_K - math.sqrt(g * g / _CS_K)
    ea = math.exp(alpha)
    s = 2.0 * (ea - 1.0) / (1.0 + ea)
    return s if s > 0.0 else 0.0


class BreachCounter:
    """Margin-breach episodes over a horizon of ``h`` bars, counted over the last ``window`` bars."""

    __slots__ = ("cooldown", "counts", "h", "i", "last_margin", "last_move", "margins", "n", "prices")

    def __init__(self, horizon_bars: int, window_bars: int) -> None:
        if int(horizon_bars) < 1:
            raise ConfigError(f"breach horizon is {horizon_bars} bars; it must be >= 1")
        self.h = int(horizon_bars)
        self.prices = [math.nan] * (self.h + 1)
        self.margins = [math.nan] * (self.h + 1)
        self.i = 0
        self.n = 0
        self.cooldown = 0
        self.counts = RollingCount(window_bars)
        self.last_move = math.nan  # |move| and IM rate of the latest breach
        self.last_margin = math.nan

    def update(self, close: float, im_rate: float) -> bool:
        """Add a bar close and the IM rate in effect from now on; returns True when this bar is a breach."""
        h1 = self.h + 1
        i = self.i
        self.prices[i] = close
        self.margins[i] = im_rate
        j = i + 1 if i + 1 < h1 else 0  # slot of the bar h bars ago (oldest in the ring)
        self.i = j
        self.n += 1
        breach = False
        if self.n > self.h:
            p0 = self.prices[j]
            m0 = self.margins[j]
            move = close / p0 - 1.0
            loss = move if move > 0.0 else -move
            if self.cooldown > 0:
                self.cooldown -= 1
            elif loss > m0:
                breach = True
                self.cooldown = self.h - 1
                self.last_move = loss
                self.last_margin = m0
        self.counts.update(breach)
        return breach

    @property
    def count(self) -> int:
        return self.counts.count

    def state(self) -> dict[str, Any]:
        return {"h": self.h, "prices": [p if math.isfinite(p) else None for p in self.prices],
                "margins": [m if math.isfinite(m) else None for m in self.margins], "i": self.i, "n": self.n,
                "cooldown": self.cooldown, "counts": self.counts.state(),
                "last_move": self.last_move if math.isfinite(self.last_move) else None,
                "last_margin": self.last_margin if math.isfinite(self.last_margin) else None}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> BreachCounter:
        obj = cls(int(s["h"]), int(s["counts"]["n"]))
        obj.prices = [math.nan if p is None else float(p) for p in s["prices"]]
        obj.margins = [math.nan if m is None else float(m) for m in s["margins"]]
        obj.i, obj.n, obj.cooldown = int(s["i"]), int(s["n"]), int(s["cooldown"])
        obj.counts = RollingCount.from_state(s["counts"])
        obj.last_move = math.nan if s.get("last_move") is None else float(s["last_move"])
        obj.last_margin = math.nan if s.get("last_margin") is None else float(s["last_margin"])
        return obj
