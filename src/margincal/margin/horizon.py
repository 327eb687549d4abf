"""Close-out horizon as a function of position size, and the margin curve MM(N), IM(N) built on it.

Conventions: notionals ``N`` in the quote currency; horizons in **hours**;
margins and costs as **fractions of notional** (positive = loss/cost).

Close-out horizon
-----------------
A position of notional ``N`` whose margin is breached is closed out in::

    T_close(N) = max( N / (rho * V_hour),            # participation of traded volume
                      tau * N / (phi * D) )          # share of displayed depth per refresh (if D known)

with ``V_hour = ADV / 24`` (ADV measured over a window in days,
:meth:`margincal.margin.liquidity.LiquidityModel.from_bars`), ``rho`` the
maximum participation rate (default 10% of traded volume), ``D`` the
displayed depth on one side (quote currency), ``phi`` the share of it a
liquidator may take per refresh (default 25%) and ``tau`` the book refresh
time (default 1 minute). Both bounds must hold, so the slower one wins.

Horizons (documented floor for the smallest positions):

* ``H_MM(N) = detection + T_close(N)``: from the moment the maintenance
  margin is breached to the end of the close-out. MM covers this;
* ``H_IM(N) = check_interval + detection + T_close(N)``: from the last margin
  check that found the account healthy to the end of the close-out. IM covers
  this.

Defaults: ``check_interval_hours = 1/60`` (venues mark-to-market and check
margin at least every minute; Binance, Deribit and dYdX check continuously
against a mark price updated every second or block) and ``detection_hours =
1/60`` (time for the liquidation engine to detect, take over and submit the
first order). So the floor is 1 minute for MM and 2 minutes for IM. A
project that uses hourly bars can only backtest these at one bar (the
intrabar excursion over one hour), which is conservative.

Margin curve
------------
With ``loss(h)`` the tail loss (ES or VaR at the chosen confidence) of a
position held ``h`` hours, injected as a callable or any object with
``forecast(horizon=..., level=...)`` returning ``.es`` (the risk model family)::

    cost(N, h)  = half_spread + Y sigma_daily sqrt(N / ADV) + fee + funding(h)
                  [max'ed with the stressed-book cost for large N when configured]
    MM(N) = loss(H_MM(N)) + cost(N, H_MM(N))
    IM(N) = max( loss(H_IM(N)) + cost(N, H_IM(N)),  MM(N) * (1 + im_gap) )

``im_gap`` (default 0.5: IM at least 1.5x MM) keeps a documented distance
between opening and liquidation: a position opened at IM needs a move worth
at least ``im_gap * MM`` before it is liquidated.

Every function here is pure; :class:`CloseOutModel` only stores parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from margincal.errors import ConfigError
from margincal.margin.liquidity import SQRT_IMPACT_Y, DepthBook, LiquidityModel, stressed_liquidity_addon

LossAtHorizon = Callable[[float], float]


class _Forecaster(Protocol):
    def forecast(self, horizon: Any = ..., level: float = ...) -> Any: ...


def _pos(name: str, v: float, *, zero_ok: bool = False) -> float:
    v = float(v)
    ok = (v >= 0) if zero_ok else (v > 0)
    if not (ok and math.isfinite(v)):
        raise ConfigError(f"{name} is {v}; it must be a finite number {'>= 0' if zero_ok else '> 0'}")
    return v


@dataclass(frozen=True)
class CloseOutModel:
    """Parameters of the close-out horizon (see module doc). Sizes in quote currency, times in hours."""

    adv: float
    participation: float = 0.10
    depth: float | None = None
    depth_share: float = 0.25
    depth_refresh_hours: float = 1.0 / 60.0
    check_interval_hours: float = 1.0 / 60.0
    detection_hours: float = 1.0 / 60.0

    def __post_init__(self) -> None:
        _pos("CloseOutModel.adv", self.adv)
        if not 0 < self.participation <= 1:
            raise ConfigError(f"CloseOutModel.participation is {self.participation}; it must be in (0, 1]")
        if self.depth is not None:
            _pos("CloseOutModel.depth", self.depth)
        if not 0 < self.depth_share <= 1:
            raise ConfigError(f"CloseOutModel.depth_share is {self.depth_share}; it must be in (0, 1]")
        _pos("CloseOutModel.depth_refresh_hours", self.depth_refresh_hours)
        _pos("CloseOutModel.check_interval_hours", self.check_interval_hours, zero_ok=True)
        _pos("CloseOutModel.detection_hours", self.detection_hours, zero_ok=True)

    def close_time(self, notional: object) -> np.ndarray | float:
        """``T_close(N)`` in hours (0 at N = 0), vectorised."""
        n = np.abs(np.asarray(notional, dtype=float))
        t = n / (self.participation * self.adv / 24.0)
        if self.depth is not None:
            t = np.maximum(t, self.depth_refresh_hours * n / (self.depth_share * self.depth))
        return float(t) if np.ndim(t) == 0 else t

    def mm_horizon(self, notional: object) -> np.ndarray | float:
        """``H_MM(N) = detection + T_close(N)`` (hours)."""
        out = self.detection_hours + np.asarray(self.close_time(notional))
        return float(out) if np.ndim(out) == 0 else out

    def im_horizon(self, notional: object) -> np.ndarray | float:
        """``H_IM(N) = check_interval + detection + T_close(N)`` (hours)."""
        out = self.check_interval_hours + np.asarray(self.mm_horizon(notional))
        return float(out) if np.ndim(out) == 0 else out

    @classmethod
    def from_liquidity(cls, liquidity: LiquidityModel, **params: Any) -> CloseOutModel:
        """ADV from a :class:`LiquidityModel` and, when it holds a depth snapshot, its displayed depth
        (the thinner side's total notional: a close-out may have to sell or to buy)."""
        depth = params.pop("depth", None)
        if depth is None and liquidity.depth is not None:
            depth = displayed_depth(liquidity.depth)
        return cls(adv=liquidity.adv, depth=depth, **params)

    @property
    def floor_hours(self) -> tuple[float, float]:
        """``(H_MM(0), H_IM(0))``: the documented floor for the smallest positions."""
        return self.detection_hours, self.check_interval_hours + self.detection_hours


def displayed_depth(book: DepthBook, band: float | None = None) -> float:
    """Notional displayed on the thinner side of a snapshot (quote currency), within ``band`` of mid if given."""
    sides = []
    for side in ("bid", "ask"):
        notional, slip = book.side_levels(side)
        if band is not None:
            notional = notional[slip <= band]
        sides.append(float(np.sum(notional)))
    out = min(sides)
    if not out > 0:
        raise ConfigError(f"no displayed depth within {band} of mid on one side of the snapshot")
    return out


def as_loss_function(model: LossAtHorizon | _Forecaster, *, level: float = 0.99,
                     measure: str = "es") -> LossAtHorizon:
    """Turn a fitted model (``forecast(horizon=hours, level=...)`` -> ``.es``/``.var``) into ``loss(hours)``.

    A plain callable is returned unchanged. The result memoises per horizon
    (curves evaluate the same horizons many times).
    """
    if measure not in ("es", "var"):
        raise ConfigError(f"measure is {measure!r}; use 'es' or 'var'")
    if hasattr(model, "forecast"):
        cache: dict[float, float] = {}
        fc = model

        def loss(hours: float) -> float:
            h = float(hours)
            if h not in cache:
                cache[h] = float(getattr(fc.forecast(horizon=h, level=level), measure))
            return cache[h]

        return loss
    if callable(model):
        return model
    raise ConfigError("loss model must be a callable loss(hours) or an object with forecast(horizon, level)")


@dataclass(frozen=True)
class CostModel:
    """Close-out cost over a horizon (fractions of notional; see module doc).

    ``funding_per_event`` is the provision per funding time (e.g. the largest
    observed ``|rate|`` or the venue cap, :func:`margincal.margin.liquidity.funding_provision`
    with ``horizon_hours = funding_interval_hours``). ``funding_accrual="pro_rata"``
    (default) charges ``funding_per_event * h / funding_interval_hours``;
    ``"events"`` charges it for each of the ``ceil(h / interval)`` (at least one)
    funding times the horizon can cross.
    """

    adv: float
    sigma_daily: float
    half_spread: float = 0.0
    y: float = SQRT_IMPACT_Y
    fee: float = 0.0
    funding_per_event: float = 0.0
    funding_interval_hours: float = 8.0
    funding_accrual: str = "pro_rata"
    stressed_depth: float | None = None
    stressed_depth_band: float = 0.01
    stressed_collapse: float | None = None

    def __post_init__(self) -> None:
        _pos("CostModel.adv", self.adv)
        _pos("CostModel.sigma_daily", self.sigma_daily, zero_ok=True)
        for name in ("half_spread", "y", "fee", "funding_per_event"):
            _pos(f"CostModel.{name}", getattr(self, name), zero_ok=True)
        _pos("CostModel.funding_interval_hours", self.funding_interval_hours)
        if self.funding_accrual not in ("pro_rata", "events"):
            raise ConfigError(f"CostModel.funding_accrual is {self.funding_accrual!r}; use 'pro_rata' or 'events'")

    def funding(self, hours: object) -> np.ndarray | float:
        h = np.asarray(hours, dtype=float)
        if self.funding_accrual == "pro_rata":
            events = h / self.funding_interval_hours
        else:
            events = np.where(h > 0, np.maximum(np.ceil(h / self.funding_interval_hours - 1e-12), 1.0), 0.0)
        out = events * self.funding_per_event
        return float(out) if np.ndim(out) == 0 else out

    def execution(self, notional: object) -> np.ndarray | float:
        """Spread + square-root impact + fee, max'ed with the stressed-book cost when configured."""
        n = np.abs(np.asarray(notional, dtype=float))
        out = self.half_spread + self.y * self.sigma_daily * np.sqrt(n / self.adv) + self.fee
        if self.stressed_depth is not None:
            kw: dict[str, Any] = {"depth_notional": self.stressed_depth, "depth_band": self.stressed_depth_band}
            if self.stressed_collapse is not None:
                kw["collapse"] = self.stressed_collapse
            out = np.maximum(out, self.half_spread + self.fee + np.asarray(stressed_liquidity_addon(n, **kw)))
        return float(out) if np.ndim(out) == 0 else out

    def cost(self, notional: object, hours: object) -> np.ndarray | float:
        out = np.asarray(self.execution(notional)) + np.asarray(self.funding(hours))
        return float(out) if np.ndim(out) == 0 else out


@dataclass(frozen=True)
class MarginCurve:
    """MM(N) and IM(N) with the pieces that produced them (arrays over ``notional``)."""

    notional: np.ndarray
    mm_horizon_hours: np.ndarray
    im_horizon_hours: np.ndarray
    mm_loss: np.ndarray
    im_loss: np.ndarray
    mm_cost: np.ndarray
    im_cost: np.ndarray
    mm_rate: np.ndarray
    im_rate: np.ndarray
    im_gap: float

    def rate_functions(self) -> tuple[Callable[[object], np.ndarray], Callable[[object], np.ndarray]]:
        """``(im_rate(N), mm_rate(N))`` interpolated on the curve (log-notional, flat outside)."""
        x = np.log(np.maximum(self.notional, 1e-300))

        def f(y: np.ndarray) -> Callable[[object], np.ndarray]:
            return lambda n: np.interp(np.log(np.maximum(np.abs(np.asarray(n, dtype=float)), 1e-300)), x, y)

        return f(self.im_rate), f(self.mm_rate)


def margin_curve(notional: object, loss_at_horizon: LossAtHorizon | _Forecaster, closeout: CloseOutModel,
                 cost: CostModel, *, level: float = 0.99, im_gap: float = 0.5, cap: float = 1.0) -> MarginCurve:
    """MM(N) and IM(N) on a grid of notionals (see module doc); rates are made non-decreasing in N.

    ``loss_at_horizon`` is ``loss(hours) -> fraction`` or a fitted model with
    ``forecast(horizon=hours, level=level)``. Rates are capped at ``cap``
    (100% of notional by default) and made monotone with a running maximum
    over increasing notional (a larger position never gets a lower rate).
    """
    n = np.abs(np.asarray(notional, dtype=float)).ravel()
    if n.size == 0 or not np.all(np.isfinite(n)):
        raise ConfigError("notional grid must be a non-empty array of finite notionals")
    if np.any(np.diff(n) <= 0):
        raise ConfigError("notional grid must be strictly increasing")
    if not (im_gap >= 0 and math.isfinite(im_gap)):
        raise ConfigError(f"im_gap is {im_gap}; it must be >= 0")
    loss = as_loss_function(loss_at_horizon, level=level)
    h_mm = np.asarray(closeout.mm_horizon(n), dtype=float).reshape(n.shape)
    h_im = np.asarray(closeout.im_horizon(n), dtype=float).reshape(n.shape)
    l_mm = np.array([loss(float(h)) for h in h_mm])
    l_im = np.array([loss(float(h)) for h in h_im])
    if not (np.all(np.isfinite(l_mm)) and np.all(l_mm >= 0) and np.all(np.isfinite(l_im)) and np.all(l_im >= 0)):
        raise ConfigError("loss_at_horizon returned a negative or non-finite loss; losses must be >= 0")
    c_mm = np.asarray(cost.cost(n, h_mm), dtype=float).reshape(n.shape)
    c_im = np.asarray(cost.cost(n, h_im), dtype=float).reshape(n.shape)
    mm = np.minimum(np.maximum.accumulate(l_mm + c_mm), cap)
    im = np.minimum(np.maximum.accumulate(np.maximum(l_im + c_im, mm * (1.0 + im_gap))), cap)
    return MarginCurve(notional=n, mm_horizon_hours=h_mm, im_horizon_hours=h_im, mm_loss=l_mm, im_loss=l_im,
                       mm_cost=c_mm, im_cost=c_im, mm_rate=mm, im_rate=im, im_gap=float(im_gap))


__all__ = ["CloseOutModel", "CostModel", "LossAtHorizon", "MarginCurve", "as_loss_function", "displayed_depth",
           "margin_curve"]
