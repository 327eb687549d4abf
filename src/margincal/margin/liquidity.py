"""Liquidity add-on: the expected cost of liquidating a position of a given size.

All costs are **fractions of notional** (positive = cost), sizes are
**notional in the quote currency**.

Square-root impact (no order book)
----------------------------------
::

    cost(Q) = half_spread + Y * sigma_daily * sqrt(Q / ADV)

``sigma_daily`` is the daily volatility of log returns, ``ADV`` the average
daily traded notional (quote currency), ``Q`` the notional to liquidate.
This is the "square-root law" of market impact. The constant ``Y`` is of order
one across markets and periods: Tóth, Lemperière, Deremble, de Lataillade,
Kockelkoren and Bouchaud, *Anomalous price impact and the critical nature of
liquidity in financial markets*, Phys. Rev. X 1, 021006 (2011) report Y of
order 1 on futures; Almgren, Thum, Hauptmann and Li, *Direct estimation of
equity market impact*, Risk 18(7) (2005) fit an impact exponent close to 1/2
(0.6) on US equities; Donier and Bonart, *A million metaorder analysis of
market impact on the Bitcoin*, Market Microstructure and Liquidity 1(2) (2015)
find the square-root law holds on BTC/USD. We use ``Y = 1.0`` (the upper,
conservative end of the usual 0.5-1 range; :data:`SQRT_IMPACT_Y`).

Book walk (depth snapshots present)
-----------------------------------
With a depth snapshot, the cost of selling ``Q`` (liquidating a long) is the
volume-weighted slippage from the mid of walking the bids; buying back a short
walks the asks; a margin rate serves both sides so the larger is used. The
first level's slippage already contains the half-spread. Beyond the displayed
depth ``D`` the remaining ``Q - D`` is charged at::

    max(s_last, half_spread + Y * sigma_daily * sqrt(Q / ADV))

per unit (``s_last`` = slippage of the deepest level). Every added unit costs
at least as much as every unit before it, and that per-unit rate rises with
``Q``, so the average cost is **non-decreasing in size** (tested with
hypothesis), and the curve is continuous at ``Q = D``.

:func:`book_walk_cost_reference` is the plain loop version of the vectorised
:func:`book_walk_cost`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from margincal.errors import CalibrationError, ConfigError, DataError

SQRT_IMPACT_Y = 1.0
"""Square-root impact constant Y (order one; see module doc for the sources)."""


def index_bar_hours(index: pd.DatetimeIndex) -> float:
    """Median spacing of a DatetimeIndex in hours (unit-safe: ns, us or s resolution)."""
    d = np.asarray((index[1:] - index[:-1]).total_seconds(), dtype=float)
    return float(np.median(d)) / 3600.0


def window_bars(window_days: float, bar_hours: float) -> int:
    """Number of bars of ``bar_hours`` in a window of ``window_days`` days (at least 2)."""
    if not (window_days > 0 and math.isfinite(window_days)):
        raise ConfigError(f"window is {window_days}; it must be a number of days > 0")
    if not (bar_hours > 0 and math.isfinite(bar_hours)):
        raise DataError(f"bar length is {bar_hours} hours; it must be > 0")
    return max(2, int(round(window_days * 24.0 / bar_hours)))


def sqrt_impact_cost(size: ArrayLike, adv: float, sigma_daily: float, y: float = SQRT_IMPACT_Y) -> np.ndarray | float:
    """Square-root impact ``y * sigma_daily * sqrt(size / adv)`` (fraction of notional), vectorised."""
    if not (adv > 0 and math.isfinite(adv)):
        raise ConfigError(f"adv is {adv}; the average daily traded notional must be > 0")
    if not (sigma_daily >= 0 and math.isfinite(sigma_daily)):
        raise ConfigError(f"sigma_daily is {sigma_daily}; it must be a finite number >= 0")
    if y < 0:
        raise ConfigError(f"impact constant y is {y}; it must be >= 0")
    q = np.abs(np.asarray(size, dtype=float))
    out = y * sigma_daily * np.sqrt(q / adv)
    return float(out) if np.ndim(out) == 0 else out


@dataclass(frozen=True)
class DepthBook:
    """One order-book snapshot: prices and sizes (base units) per side, best level first."""

    bid_prices: np.ndarray
    bid_sizes: np.ndarray
    ask_prices: np.ndarray
    ask_sizes: np.ndarray
    ts: str | None = None

    def __post_init__(self) -> None:
        for name in ("bid_prices", "bid_sizes", "ask_prices", "ask_sizes"):
            arr = np.asarray(getattr(self, name), dtype=float)
            if arr.ndim != 1:
                raise DataError(f"depth {name} must be one-dimensional")
            if arr.size and (not np.all(np.isfinite(arr)) or np.any(arr <= 0)):
                raise DataError(f"depth {name} has a value <= 0 or not finite; prices and sizes must be > 0")
            object.__setattr__(self, name, arr)
        if self.bid_prices.size != self.bid_sizes.size or self.ask_prices.size != self.ask_sizes.size:
            raise DataError("depth: each side needs as many sizes as prices")
        if self.bid_prices.size == 0 or self.ask_prices.size == 0:
            raise DataError("depth snapshot needs at least one bid and one ask level")
        if np.any(np.diff(self.bid_prices) >= 0):
            raise DataError("depth bid_prices must be strictly decreasing (best bid first)")
        if np.any(np.diff(self.ask_prices) <= 0):
            raise DataError("depth ask_prices must be strictly increasing (best ask first)")
        if self.bid_prices[0] >= self.ask_prices[0]:
            raise DataError(
                f"depth is crossed: best bid {self.bid_prices[0]} >= best ask {self.ask_prices[0]}")

    @property
    def mid(self) -> float:
        return 0.5 * float(self.bid_prices[0] + self.ask_prices[0])

    @property
    def half_spread(self) -> float:
        """Half the quoted spread as a fraction of the mid."""
        return 0.5 * float(self.ask_prices[0] - self.bid_prices[0]) / self.mid

    def side_levels(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        """(notional per level, slippage from mid per level) of ``side`` ('bid' sells, 'ask' buys)."""
        mid = self.mid
        if side == "bid":
            return self.bid_prices * self.bid_sizes, (mid - self.bid_prices) / mid
        if side == "ask":
            return self.ask_prices * self.ask_sizes, (self.ask_prices - mid) / mid
        raise ConfigError(f"side is {side!r}; use 'bid' or 'ask'")

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> DepthBook:
        """Build from rows with columns ``side`` ('bid'/'ask'), ``price``, ``size`` (one snapshot)."""
        missing = {"side", "price", "size"} - set(df.columns)
        if missing:
            raise DataError(f"depth frame lacks column(s) {', '.join(sorted(missing))}")
        bids = df[df["side"] == "bid"].sort_values("price", ascending=False)
        asks = df[df["side"] == "ask"].sort_values("price", ascending=True)
        ts = str(df["ts"].iloc[0]) if "ts" in df.columns and len(df) else None
        return cls(bids["price"].to_numpy(float), bids["size"].to_numpy(float),
                   asks["price"].to_numpy(float), asks["size"].to_numpy(float), ts)


def book_walk_cost(size: ArrayLike, level_notional: np.ndarray, level_slippage: np.ndarray, *,
                   tail_rate: ArrayLike = 0.0) -> np.ndarray | float:
    """Average cost (fraction) of executing notional ``size`` against the levels, vectorised.

    ``tail_rate`` (scalar or array broadcast with ``size``) is the per-unit
    rate charged on the part of ``size`` beyond the displayed depth; it is
    floored at the deepest level's slippage.
    """
    q = np.abs(np.asarray(size, dtype=float))
    notional = np.asarray(level_notional, dtype=float)
    slip = np.asarray(level_slippage, dtype=float)
    cum_n = np.concatenate([[0.0], np.cumsum(notional)])
    cum_c = np.concatenate([[0.0], np.cumsum(notional * slip)])
    depth = cum_n[-1]
    inside = np.minimum(q, depth)
    # level index j such that cum_n[j] < inside <= cum_n[j+1]
    j = np.clip(np.searchsorted(cum_n, inside, side="left") - 1, 0, notional.size - 1)
    cost_inside = cum_c[j] + (inside - cum_n[j]) * slip[j]
    tail = np.maximum(np.asarray(tail_rate, dtype=float), slip[-1])
    total = cost_inside + np.maximum(q - depth, 0.0) * tail
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = np.where(q > 0, total / np.where(q > 0, q, 1.0), slip[0])
    return float(avg) if np.ndim(avg) == 0 else avg


def book_walk_cost_reference(size: float, level_notional: list[float], level_slippage: list[float],
                             tail_rate: float = 0.0) -> float:
    """Loop version of :func:`book_walk_cost` for one size (for tests)."""
    q = abs(float(size))
    if q == 0:
        return float(level_slippage[0])
    left, cost = q, 0.0
    for n, s in zip(level_notional, level_slippage, strict=True):
        take = min(left, n)
        cost += take * s
        left -= take
        if left <= 0:
            break
    if left > 0:
        cost += left * max(tail_rate, level_slippage[-1])
    return cost / q


@dataclass(frozen=True)
class LiquidityModel:
    """Liquidation-cost model of one instrument (fractions of notional; sizes in quote notional).

    Parameters
    ----------
    adv : average daily traded notional (quote currency).
    sigma_daily : daily volatility of log returns (fraction).
    half_spread : half the bid-ask spread as a fraction of mid (ignored when ``depth`` is given:
        the book's own spread is used).
    y : square-root impact constant (default :data:`SQRT_IMPACT_Y` = 1).
    depth : optional order-book snapshot; its levels are walked first.
    reference_size : the position notional whose liquidation cost is the add-on of a
        single-rate calibration (None: no size, add-on = half-spread only).
    """

    adv: float
    sigma_daily: float
    half_spread: float = 0.0
    y: float = SQRT_IMPACT_Y
    depth: DepthBook | None = None
    reference_size: float | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (self.adv > 0 and math.isfinite(self.adv)):
            raise ConfigError(f"LiquidityModel.adv is {self.adv}; it must be > 0")
        if not (self.sigma_daily >= 0 and math.isfinite(self.sigma_daily)):
            raise ConfigError(f"LiquidityModel.sigma_daily is {self.sigma_daily}; it must be >= 0")
        if not (0 <= self.half_spread < 1):
            raise ConfigError(f"LiquidityModel.half_spread is {self.half_spread}; it must be in [0, 1)")
        if self.y < 0:
            raise ConfigError(f"LiquidityModel.y is {self.y}; it must be >= 0")
        if self.reference_size is not None and not self.reference_size >= 0:
            raise ConfigError(f"LiquidityModel.reference_size is {self.reference_size}; it must be >= 0")

    @property
    def effective_half_spread(self) -> float:
        return self.depth.half_spread if self.depth is not None else self.half_spread

    def impact(self, size: ArrayLike) -> np.ndarray | float:
        """Square-root impact part only (no spread)."""
        return sqrt_impact_cost(size, self.adv, self.sigma_daily, self.y)

    def cost(self, size: ArrayLike) -> np.ndarray | float:
        """Expected cost of liquidating notional ``size`` (fraction of notional), non-decreasing in size."""
        if self.depth is None:
            out = self.half_spread + np.asarray(self.impact(size))
        else:
            tail = self.depth.half_spread + np.asarray(self.impact(size))
            out = np.maximum(
                *(np.asarray(book_walk_cost(size, *self.depth.side_levels(s), tail_rate=tail))
                  for s in ("bid", "ask"))
            )
        return float(out) if np.ndim(out) == 0 else out

    def addon(self, size: ArrayLike | None = None) -> float | np.ndarray:
        """Liquidity add-on at ``size`` (default: ``reference_size``; half-spread only when both are None)."""
        s = self.reference_size if size is None else size
        if s is None:
            return self.effective_half_spread
        return self.cost(s)

    def as_dict(self) -> dict[str, Any]:
        return {"adv": self.adv, "sigma_daily": self.sigma_daily, "half_spread": self.effective_half_spread,
                "y": self.y, "reference_size": self.reference_size,
                "depth_ts": self.depth.ts if self.depth is not None else None,
                "depth_levels": (int(self.depth.bid_prices.size), int(self.depth.ask_prices.size))
                if self.depth is not None else None, **self.source}

    @classmethod
    def from_bars(cls, bars: pd.DataFrame, *, window: float = 30, half_spread: float = 0.0,
                  y: float = SQRT_IMPACT_Y, depth: DepthBook | None = None,
                  reference_size: float | None = None) -> LiquidityModel:
        """Estimate ADV and daily volatility from the last ``window`` DAYS of bars.

        ``window`` is a number of days whatever the bar size: on hourly bars
        the last ``window * 24`` bars are used (before issue 15 the window
        counted bars, so hourly perpetuals used 30 hours instead of 30 days).
        ADV is the mean of ``close * volume`` (volume in base units) or of
        ``volume_quote`` when that column exists, per bar, times bars per day;
        ``sigma_daily`` the sample standard deviation of the bars' log returns
        over the same window scaled by ``sqrt(24 / bar_hours)``.
        """
        if "close" not in bars.columns:
            raise DataError("bars lack a 'close' column")
        if len(bars) < 3:
            raise CalibrationError(f"need at least 3 bars to estimate liquidity, got {len(bars)}")
        if not (window > 0 and math.isfinite(window)):
            raise ConfigError(f"window is {window}; it must be a number of days > 0")
        bar_hours = 24.0
        if isinstance(bars.index, pd.DatetimeIndex) and len(bars) > 1:
            bar_hours = index_bar_hours(bars.index[-min(len(bars), 1000):])
        n_bars = window_bars(window, bar_hours)
        tail = bars.iloc[-(n_bars + 1):]
        if "volume_quote" in tail.columns:
            traded = tail["volume_quote"].to_numpy(float)
        elif "volume" in tail.columns:
            traded = (tail["close"] * tail["volume"]).to_numpy(float)
        else:
            raise DataError("bars need 'volume' (base units) or 'volume_quote' to estimate ADV")
        adv = float(np.mean(traded[1:])) * 24.0 / bar_hours
        r = np.diff(np.log(tail["close"].to_numpy(float)))
        sigma = float(np.std(r, ddof=1)) * math.sqrt(24.0 / bar_hours)
        src = {"adv_window_bars": int(r.size), "adv_window_days": float(window), "bar_hours": bar_hours,
               "window_end": str(tail.index[-1]) if len(tail.index) else None}
        return cls(adv=adv, sigma_daily=sigma, half_spread=half_spread, y=y, depth=depth,
                   reference_size=reference_size, source=src)

    @classmethod
    def from_store(cls, con: Any, instrument: str, *, timeframe: str = "1d", window: float = 30,
                   at: Any = None, half_spread: float = 0.0, y: float = SQRT_IMPACT_Y,
                   reference_size: float | None = None) -> LiquidityModel:
        """ADV and volatility from stored bars, plus the latest depth snapshot (at or before ``at``) if any."""
        from margincal.data.store import load_bars

        bars = load_bars(con, instrument, timeframe, end=at)
        if bars.empty:
            raise DataError(f"no {timeframe} bars for {instrument!r} in the store")
        depth = load_depth(con, instrument, at=at)
        return cls.from_bars(bars, window=window, half_spread=half_spread, y=y, depth=depth,
                             reference_size=reference_size)


def load_depth(con: Any, instrument: str, at: Any = None) -> DepthBook | None:
    """Latest ``depth_snapshots`` snapshot of ``instrument`` at or before ``at`` (None if there is none)."""
    from margincal.data.store import to_store_ts

    sql = "SELECT max(ts) FROM depth_snapshots WHERE instrument = ?"
    params: list[Any] = [instrument]
    if at is not None:
        sql += " AND ts <= ?"
        params.append(to_store_ts(at))
    row = con.execute(sql, params).fetchone()
    if row is None or row[0] is None:
        return None
    df = con.execute("SELECT ts, side, price, size FROM depth_snapshots WHERE instrument = ? AND ts = ?",
                     [instrument, row[0]]).df()
    return DepthBook.from_frame(df)


# ------------------------------------------------------------------ spreads from bars
#
# Hand-written: no maintained Python library ships these two closed-form
# estimators (the R package ``bidask`` does; it is not a Python dependency).


def _hl_arrays(high: ArrayLike, low: ArrayLike, close: ArrayLike | None = None) -> tuple[np.ndarray, ...]:
    h = np.asarray(high, dtype=float)
    lo = np.asarray(low, dtype=float)
    arrays = [h, lo] + ([np.asarray(close, dtype=float)] if close is not None else [])
    n = h.size
    for name, a in zip(("high", "low", "close"), arrays, strict=False):
        if a.ndim != 1 or a.size != n:
            raise DataError(f"{name} must be one-dimensional with as many values as high ({n})")
        bad = ~(np.isfinite(a) & (a > 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{name}[{i}] is {a[i]}; prices must be finite and > 0")
    if np.any(h < lo):
        i = int(np.flatnonzero(h < lo)[0])
        raise DataError(f"bar {i}: high {h[i]} < low {lo[i]}")
    if n < 2:
        raise DataError(f"need at least 2 bars to estimate a spread, got {n}")
    return tuple(arrays)


def corwin_schultz_spread(high: ArrayLike, low: ArrayLike, *, clip_negative: bool = True) -> np.ndarray:
    """Corwin-Schultz (2012) two-bar spread estimates (full spread as a fraction of price).

    Corwin, S. A. and Schultz, P., *A Simple Way to Estimate Bid-Ask Spreads
    from Daily High and Low Prices*, Journal of Finance 67(2), 719-760 (2012),
    eqs. (14), (18)-(20). For each pair of consecutive bars ``t, t+1``::

        beta  = ln(H_t/L_t)^2 + ln(H_{t+1}/L_{t+1})^2
        gamma = ln(max(H_t, H_{t+1}) / min(L_t, L_{t+1}))^2
        alpha = (sqrt(2 beta) - sqrt(beta)) / (3 - 2 sqrt 2) - sqrt(gamma / (3 - 2 sqrt 2))
        S     = 2 (e^alpha - 1) / (1 + e^alpha)

    Returns ``n - 1`` estimates. As in the paper, negative two-bar estimates
    are set to 0 before averaging (``clip_negative``). No overnight-gap
    adjustment: crypto trades around the clock, so bars have no close-to-open gap.
    """
    h, lo = _hl_arrays(high, low)
    lr2 = np.log(h / lo) ** 2
    beta = lr2[:-1] + lr2[1:]
    gamma = np.log(np.maximum(h[:-1], h[1:]) / np.minimum(lo[:-1], lo[1:])) ** 2
    k = 3.0 - 2.0 * math.sqrt(2.0)
    alpha = (math.sqrt(2.0) - 1.0) * np.sqrt(beta) / k - np.sqrt(gamma / k)
    s = 2.0 * np.expm1(alpha) / (1.0 + np.exp(alpha))
    return np.maximum(s, 0.0) if clip_negative else s


def abdi_ranaldo_spread(high: ArrayLike, low: ArrayLike, close: ArrayLike, *, method: str = "two_day") -> float:
    """Abdi-Ranaldo (2017) CHL spread estimate (full spread as a fraction of price).

    Abdi, F. and Ranaldo, A., *A Simple Estimation of Bid-Ask Spreads from
    Daily Close, High, and Low Prices*, Review of Financial Studies 30(12),
    4437-4480 (2017). With log close ``c_t`` and log mid-range
    ``eta_t = (ln H_t + ln L_t) / 2`` the squared spread is
    ``S^2 = 4 E[(c_t - eta_t)(c_t - eta_{t+1})]`` (their eq. 9). ``method``:

    * ``"two_day"`` (the paper's preferred version): average over ``t`` of
      ``sqrt(max(4 (c_t - eta_t)(c_t - eta_{t+1}), 0))``;
    * ``"sample"``: ``sqrt(max(4 * mean((c_t - eta_t)(c_t - eta_{t+1})), 0))``.
    """
    h, lo, c = _hl_arrays(high, low, close)
    lc = np.log(c)
    eta = 0.5 * (np.log(h) + np.log(lo))
    prod = (lc[:-1] - eta[:-1]) * (lc[:-1] - eta[1:])
    if method == "two_day":
        return float(np.mean(np.sqrt(np.maximum(4.0 * prod, 0.0))))
    if method == "sample":
        return float(math.sqrt(max(4.0 * float(np.mean(prod)), 0.0)))
    raise ConfigError(f"method is {method!r}; use 'two_day' or 'sample'")


def spread_from_bars(bars: pd.DataFrame, *, window: float = 30, estimator: str = "max") -> dict[str, float]:
    """Half-spread estimates from the last ``window`` days of OHLC bars.

    Returns ``{"corwin_schultz": S_cs, "abdi_ranaldo": S_ar, "half_spread": h}``
    where the two are full spreads (fractions) and ``half_spread`` is half of
    the estimator chosen: ``"max"`` (default, conservative), ``"cs"`` or ``"ar"``.
    Both estimators are biased upward by volatility on bars much longer than
    the quote refresh time; on hourly crypto bars they remain an upper bound
    of the quoted spread, which is what a margin add-on may use.
    """
    for col in ("high", "low", "close"):
        if col not in bars.columns:
            raise DataError(f"bars lack a {col!r} column; OHLC bars are needed to estimate a spread")
    bar_hours = index_bar_hours(bars.index) if isinstance(bars.index, pd.DatetimeIndex) and len(bars) > 1 else 24.0
    tail = bars.iloc[-(window_bars(window, bar_hours) + 1):]
    cs = float(np.mean(corwin_schultz_spread(tail["high"], tail["low"])))
    ar = abdi_ranaldo_spread(tail["high"], tail["low"], tail["close"])
    pick = {"max": max(cs, ar), "cs": cs, "ar": ar}
    if estimator not in pick:
        raise ConfigError(f"estimator is {estimator!r}; use 'max', 'cs' or 'ar'")
    return {"corwin_schultz": cs, "abdi_ranaldo": ar, "half_spread": 0.5 * pick[estimator]}


# ------------------------------------------------------------------ stressed liquidity

DEPTH_COLLAPSE_2025_10_10 = 2.0 / 89.0
"""Displayed depth in stress as a fraction of normal depth: about 89M -> 2M USD as reported for
BTC on 2025-10-10 (figure from issue 15, not verified here against a primary source; commentators
report "depth collapsed by more than 90%" (FTI Consulting, quoted on Binance Square) and
"executable depth collapsed by more than 98%" for perpetuals on that day)."""


def stressed_liquidity_addon(size: ArrayLike, *, depth_notional: float, depth_band: float,
                             collapse: float = DEPTH_COLLAPSE_2025_10_10) -> np.ndarray | float:
    """Cost (fraction of notional) of executing ``size`` against a collapsed displayed book.

    Model: in normal times one side of the book holds ``depth_notional``
    (quote currency) spread uniformly over ``depth_band`` (fraction of mid,
    e.g. 0.01 for the "1% depth"). In stress the depth is ``D = collapse *
    depth_notional`` over the same band. Walking ``Q <= D`` of a uniform book
    costs an average slippage ``band * Q / (2 D)``; beyond ``D`` the rest is
    charged at the band edge, so for ``Q > D`` the average is
    ``band * (1 - D / (2 Q))``. The result is continuous and non-decreasing in
    size and tends to ``band``. A margin uses ``max(normal cost, this)`` for
    the large tiers: a position that fits in a small fraction of the stressed
    book gets almost nothing.
    """
    if not (depth_notional > 0 and math.isfinite(depth_notional)):
        raise ConfigError(f"depth_notional is {depth_notional}; it must be > 0")
    if not (0 < depth_band < 1):
        raise ConfigError(f"depth_band is {depth_band}; it must be in (0, 1)")
    if not (0 < collapse <= 1):
        raise ConfigError(f"collapse is {collapse}; stressed depth must be a fraction in (0, 1] of normal depth")
    q = np.abs(np.asarray(size, dtype=float))
    d = collapse * depth_notional
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = np.where(q <= d, depth_band * q / (2.0 * d),
                       depth_band * (1.0 - d / (2.0 * np.where(q > 0, q, 1.0))))
    return float(out) if np.ndim(out) == 0 else out


# ------------------------------------------------------------------ funding over the horizon


def funding_provision(funding_rates: ArrayLike, horizon_hours: float, *, interval_hours: float = 8.0,
                      method: str = "max", quantile: float = 0.99, cap: float | None = None,
                      accrual: str = "pro_rata") -> float:
    """Funding a perpetual position may pay over a close-out horizon (fraction of notional).

    A perpetual pays (or receives) ``rate`` times notional at each funding
    time (every ``interval_hours``). The per-event rate is the largest
    observed ``|rate|`` (``method="max"``) or its ``quantile``
    (``method="quantile"``), optionally capped at the venue's funding cap
    ``cap``. ``accrual="pro_rata"`` (default) charges ``rate * horizon /
    interval`` (the expected funding of a horizon that starts at a random
    time); ``accrual="events"`` charges ``rate`` for each of the at most
    ``ceil(horizon / interval)`` funding times the horizon can cross (at least
    one: the worst case, a close-out straddling a funding time).
    """
    r = np.abs(np.asarray(funding_rates, dtype=float))
    r = r[np.isfinite(r)]
    if r.size == 0:
        raise DataError("funding_rates has no finite value")
    if not (horizon_hours >= 0 and math.isfinite(horizon_hours)):
        raise ConfigError(f"horizon_hours is {horizon_hours}; it must be >= 0")
    if not (interval_hours > 0):
        raise ConfigError(f"interval_hours is {interval_hours}; it must be > 0")
    if method == "max":
        per_event = float(r.max())
    elif method == "quantile":
        if not 0 < quantile < 1:
            raise ConfigError(f"quantile is {quantile}; it must be in (0, 1)")
        per_event = float(np.quantile(r, quantile))
    else:
        raise ConfigError(f"method is {method!r}; use 'max' or 'quantile'")
    if cap is not None:
        per_event = min(per_event, float(cap))
    if accrual == "pro_rata":
        return float(per_event * horizon_hours / interval_hours)
    if accrual != "events":
        raise ConfigError(f"accrual is {accrual!r}; use 'pro_rata' or 'events'")
    events = math.ceil(horizon_hours / interval_hours - 1e-12) if horizon_hours > 0 else 0
    return float(max(events, 1 if horizon_hours > 0 else 0) * per_event)
