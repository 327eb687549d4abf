"""Reverse stress: the smallest shock that exhausts margin plus the insurance fund.

The shock is ``x = (spot, vol)``: ``spot`` a simple relative move applied to every underlying
(``-0.25`` = every price x 0.75), ``vol`` an absolute implied-volatility shift. The boundary is

* ``criterion="shortfall"`` (default): ``sum_i max(0, loss_i(x) - margin_i) = fund`` -- the losses
  beyond each account's own margin use up the insurance fund (defaulters' margin, then the fund,
  as in a default waterfall);
* ``criterion="total"``: ``sum_i loss_i(x) = sum_i margin_i + fund`` (the book as one portfolio).

For one account, or a book whose accounts all lose in the same direction, both agree. For a
linear book (delta-one positions, dollar delta ``D = sum q S``) the answer is analytic:
``|spot*| = (margin + fund) / |D|`` (tests check it).

Search, not a grid: in one dimension, expansion from a small move to a bracket in each direction
then Brent's method (scipy ``brentq``) on the boundary function; the smaller of the two roots.
In two dimensions, the same ray search along ``n_directions`` directions of the scaled plane
``(spot / spot_scale, vol / vol_scale)`` gives a starting point, refined by SLSQP
(``minimize |u|^2`` subject to ``h(u) = 0``); the refined point is kept only if it is on the
boundary (``|h| <= 1e-6 x capacity``) and closer to the origin.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

from margincal.errors import CalibrationError, ConfigError
from margincal.stress.book import Book, StressMarket
from margincal.stress.engine import MarginSpec, account_margin, scenario_losses
from margincal.stress.scenarios import CompositeScenario, SpotShock, VolShock

MAX_DOWN = -0.99
MAX_UP = 10.0


@dataclass(frozen=True)
class ReverseStressResult:
    """The minimal shock found, with the search's provenance."""

    spot: float
    vol: float
    norm: float
    capacity: float
    value_at_shock: float
    criterion: str
    method: str
    evaluations: int
    details: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {"spot_move": self.spot, "vol_shift": self.vol, "scaled_norm": self.norm,
                "capacity": self.capacity, "loss_at_shock": self.value_at_shock, "criterion": self.criterion,
                "method": self.method, "evaluations": self.evaluations}


class BoundaryFunction:
    """``h(spot, vol) = value(shock) - capacity`` for a book (counts its evaluations)."""

    def __init__(self, book: Book, market: StressMarket, margin: MarginSpec, insurance_fund: float,
                 criterion: str = "shortfall") -> None:
        if criterion not in ("shortfall", "total"):
            raise ConfigError(f"criterion is {criterion!r}; use 'shortfall' or 'total'")
        if insurance_fund < 0:
            raise ConfigError(f"insurance_fund is {insurance_fund}; it must be >= 0")
        self.book, self.market, self.criterion = book, market, criterion
        self.margin = account_margin(book, market, margin, "im")
        self.fund = float(insurance_fund)
        self.capacity = self.fund if criterion == "shortfall" else float(self.margin.sum()) + self.fund
        self.evaluations = 0

    def _losses(self, spot: float, vol: float) -> np.ndarray:
        self.evaluations += 1
        sc = CompositeScenario("reverse", parts=(SpotShock("s", move=math.log1p(spot)), VolShock("v", shift=vol)))
        return scenario_losses(self.book, self.market, [sc])[:, 0]

    def value(self, spot: float, vol: float = 0.0) -> float:
        """Total loss beyond margin ("shortfall") or total loss ("total") under the shock."""
        loss = self._losses(spot, vol)
        if self.criterion == "shortfall":
            return float(np.maximum(loss - self.margin, 0.0).sum())
        return float(loss.sum())

    def __call__(self, spot: float, vol: float = 0.0) -> float:
        """Continuous boundary function, zero on the boundary, negative inside.

        For "shortfall": ``sum max(0, d_i) + min(0, max_i d_i) - fund`` with ``d = loss - margin``;
        while no account is beyond its margin it equals ``max_i d_i - fund`` (< 0), so a zero fund
        still has a proper root (the first account to exhaust its margin).
        """
        loss = self._losses(spot, vol)
        if self.criterion == "shortfall":
            d = loss - self.margin
            return float(np.maximum(d, 0.0).sum() + min(0.0, float(d.max())) - self.capacity)
        return float(loss.sum()) - self.capacity


def _ray_root(h: Callable[[float], float], t_max: float, t0: float = 1e-3, tol: float = 1e-12) -> float | None:
    """Smallest-ish t in (0, t_max] with h(t) >= 0: doubling from t0 to a bracket, then brentq."""
    if h(0.0) >= 0:  # already beyond the boundary without any shock
        return 0.0
    lo, t = 0.0, t0
    while True:
        t = min(t, t_max)
        if h(t) >= 0:
            break
        if t >= t_max:
            return None
        lo, t = t, t * 2.0
    if h(lo) >= 0:
        return lo
    return float(optimize.brentq(h, lo, t, xtol=tol, rtol=1e-12, maxiter=200))


def reverse_stress_spot(book: Book, market: StressMarket, *, margin: MarginSpec, insurance_fund: float = 0.0,
                        criterion: str = "shortfall") -> ReverseStressResult:
    """Smallest uniform spot move (simple return, either sign) at which the boundary is reached."""
    h = BoundaryFunction(book, market, margin, insurance_fund, criterion)
    roots = []
    for sign, t_max in ((-1.0, -MAX_DOWN), (1.0, MAX_UP)):
        def along(x: float, s: float = sign) -> float:
            return h(s * x)

        t = _ray_root(along, t_max)
        if t is not None:
            roots.append(sign * t)
    if not roots:
        raise CalibrationError(f"no spot move in [{MAX_DOWN:+.0%}, +{MAX_UP:.0%}] exhausts the capacity "
                               f"{h.capacity:,.2f} ({criterion})")
    best = min(roots, key=abs)
    return ReverseStressResult(best, 0.0, abs(best), h.capacity, h.value(best), criterion,
                               "bracket expansion + brentq in both directions", h.evaluations,
                               {"roots": roots})


def reverse_stress_spot_vol(book: Book, market: StressMarket, *, margin: MarginSpec, insurance_fund: float = 0.0,
                            criterion: str = "shortfall", spot_scale: float = 0.10, vol_scale: float = 0.10,
                            n_directions: int = 24, max_vol_shift: float = 3.0) -> ReverseStressResult:
    """Minimal-norm (spot, vol) shock on the boundary, in units of ``spot_scale`` and ``vol_scale``.

    ``spot_scale = 0.10``: a 10% move counts as one unit; ``vol_scale = 0.10``: 10 vol points.
    """
    if n_directions < 4:
        raise ConfigError("n_directions must be >= 4")
    h = BoundaryFunction(book, market, margin, insurance_fund, criterion)
    cap = h.capacity

    def hu(u: np.ndarray) -> float:
        s = float(np.clip(u[0] * spot_scale, MAX_DOWN, MAX_UP))
        v = float(np.clip(u[1] * vol_scale, -0.99, max_vol_shift))
        return h(s, v)

    best: tuple[float, np.ndarray] | None = None
    for ang in np.linspace(0.0, 2 * math.pi, n_directions, endpoint=False):
        d = np.array([math.cos(ang), math.sin(ang)])
        lim = []
        if d[0] < -1e-12:
            lim.append(-MAX_DOWN / spot_scale / -d[0])
        if d[0] > 1e-12:
            lim.append(MAX_UP / spot_scale / d[0])
        if d[1] > 1e-12:
            lim.append(max_vol_shift / vol_scale / d[1])
        if d[1] < -1e-12:
            lim.append(0.99 / vol_scale / -d[1])
        def along_dir(r: float, d: np.ndarray = d) -> float:
            return hu(r * d)

        t = _ray_root(along_dir, min(lim))
        if t is not None and (best is None or t < best[0]):
            best = (t, t * d)
    if best is None:
        raise CalibrationError(f"no (spot, vol) shock within the bounds exhausts the capacity {cap:,.2f}")
    start = best[1]
    method = f"ray search over {n_directions} directions + brentq"
    refined = False
    if best[0] > 0:
        res = optimize.minimize(lambda u: float(u @ u), start, method="SLSQP",
                                constraints=[{"type": "eq", "fun": lambda u: hu(u) / max(cap, 1.0)}],
                                options={"maxiter": 100, "ftol": 1e-12})
        u = np.asarray(res.x, float)
        if res.success and abs(hu(u)) <= 1e-6 * max(cap, 1.0) and float(np.linalg.norm(u)) < best[0]:
            start, refined = u, True
            method += " + SLSQP refinement"
    s, v = float(start[0] * spot_scale), float(start[1] * vol_scale)
    return ReverseStressResult(s, v, float(np.linalg.norm(start)), cap, h.value(s, v), criterion, method,
                               h.evaluations, {"ray_norm": best[0], "refined": refined,
                                               "spot_scale": spot_scale, "vol_scale": vol_scale})
