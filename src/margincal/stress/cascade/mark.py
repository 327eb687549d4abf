"""Index and mark prices: which price triggers a liquidation.

Venue conventions (checked with the project's documentation search, 2026-12):

* **Deribit index**: mid prices of several spot venues (Bitstamp, Coinbase, Kraken, LMAX Digital);
  each constituent outside +/-0.5% of their median is moved to the nearest band edge, then the
  equally weighted average is the index (support.deribit.com, "Prices of Virtual Assets").
  **Deribit perpetual mark** = index + 30-second EMA of (fair price - index) (the convention the
  issue cites; third-party summaries of Deribit's methodology state the same 30 s EMA).
* **Binance USD(S)-M index**: volume-weighted average of spot prices on several venues
  (binance.com/en/support/faq/360033525071). **Binance mark** = median(Price 1, Price 2, contract
  price), Price 1 = index x (1 + last funding rate x time-to-funding / 8h), Price 2 = index +
  moving average of the basis ((bid1 + ask1)/2 - index) over a short window (2.5 minutes, 30
  five-second samples, on the COIN-M page quoted by Binance).
* **DerivaDEX** (docs.derivadex.com, "price feeds and mark price inputs"): median anchor, clamp
  +/-0.5%, average; mark = index + smoothed premium clamped to +/-0.5% of index.

Here: :func:`index_price` is the band-clamped weighted average (Deribit's rule; ``band=None`` gives
the plain weighted average of Binance); :class:`MarkRule` turns a last-trade / book price and the
index into a mark, in the Deribit form (index + EMA of the basis, time constant ``tau_seconds``)
or the Binance form (median of the three prices). Liquidation engines (:mod:`.market`) call
:meth:`MarkRule.update` once per matching round.

Bundled data: the only *spot* venue in ``data/`` is Binance (``btcusdt_1h.csv.gz``), next to the
Binance USD-M perpetual (``btcusdt_perp_1h.csv.gz``). :func:`bundled_index_and_perp` builds the
index from the spot constituents available (one, so the clamp is inactive) and returns the perp
bars as the exchange's own traded price; the function accepts more constituents unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from margincal.errors import ConfigError, DataError


def index_price(constituents: np.ndarray, weights: Sequence[float] | np.ndarray | None = None,
                band: float | None = 0.005) -> np.ndarray:
    """Index from venue prices: ``constituents`` has one column per venue (rows = times).

    With ``band`` (Deribit: 0.005) every price outside ``median x (1 +/- band)`` is clamped to the
    band edge before the weighted average; NaN (a venue without a quote) is left out and the
    weights renormalised. ``weights`` default: equal.
    """
    x = np.atleast_2d(np.asarray(constituents, dtype=float))
    if x.ndim != 2 or x.shape[1] < 1:
        raise ConfigError("index_price: constituents must be (times, venues)")
    w = np.ones(x.shape[1]) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (x.shape[1],) or np.any(w < 0) or not w.sum() > 0:
        raise ConfigError(f"index_price: {w.size} weights for {x.shape[1]} venues; they must be >= 0, not all 0")
    ok = np.isfinite(x) & (x > 0)
    if not ok.any(axis=1).all():
        raise DataError("index_price: a row has no valid constituent price")
    if band is not None:
        med = np.nanmedian(np.where(ok, x, np.nan), axis=1, keepdims=True)
        x = np.clip(x, med * (1.0 - band), med * (1.0 + band))
    ww = np.where(ok, w[None, :], 0.0)
    return np.sum(np.where(ok, x, 0.0) * ww, axis=1) / ww.sum(axis=1)


def ema_weight(dt_seconds: float, tau_seconds: float) -> float:
    """Weight of a new sample in a continuous-time EMA with time constant ``tau`` after ``dt`` seconds."""
    if dt_seconds < 0 or tau_seconds < 0:
        raise ConfigError("ema_weight: dt and tau must be >= 0")
    return 1.0 if tau_seconds == 0 else 1.0 - math.exp(-dt_seconds / tau_seconds)


@dataclass(frozen=True)
class MarkRule:
    """How the price that triggers liquidations is formed.

    * ``kind="last"``: the last traded price (what the v1 cascade used);
    * ``kind="ema"`` (Deribit): ``index + EMA(basis)``, time constant ``tau_seconds`` (30);
    * ``kind="median"`` (Binance): ``median(index x (1 + funding x frac), index + EMA(basis), last)``;
      the Binance moving average of the basis is approximated by the same EMA (``tau_seconds``).
    ``clamp``: optional cap of ``|mark / index - 1|`` (DerivaDEX 0.005; None = none).
    """

    kind: str = "ema"
    tau_seconds: float = 30.0
    clamp: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("last", "ema", "median"):
            raise ConfigError(f"MarkRule kind is {self.kind!r}; use last, ema or median")
        if self.tau_seconds < 0 or (self.clamp is not None and not self.clamp > 0):
            raise ConfigError("MarkRule: tau_seconds >= 0 and clamp > 0 (or None) required")

    def update(self, ema_basis: np.ndarray, index: np.ndarray, last: np.ndarray, dt_seconds: float
               ) -> np.ndarray:
        """New basis EMA after ``dt_seconds`` with the current basis ``last - index``."""
        a = ema_weight(dt_seconds, self.tau_seconds)
        return ema_basis + a * ((last - index) - ema_basis)

    def mark(self, ema_basis: np.ndarray, index: np.ndarray, last: np.ndarray,
             funding_adj: np.ndarray | float = 0.0) -> np.ndarray:
        if self.kind == "last":
            m = np.asarray(last, dtype=float)
        elif self.kind == "ema":
            m = index + ema_basis
        else:
            p1 = index * (1.0 + funding_adj)
            m = np.median(np.stack(np.broadcast_arrays(p1, index + ema_basis, last)), axis=0)
        if self.clamp is not None:
            m = np.clip(m, index * (1.0 - self.clamp), index * (1.0 + self.clamp))
        return m


def bar_path(bars: pd.DataFrame) -> np.ndarray:
    """Four prices per bar: open -> high -> low -> close for a falling bar, open -> low -> high -> close else."""
    o, h, lo, c = (bars[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
    falling = c < o
    return np.column_stack([o, np.where(falling, h, lo), np.where(falling, lo, h), c]).ravel()


def bundled_index_and_perp(start: str, end: str, coin: str = "BTC") -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """(index path, perp path, bar times) from the bundled hourly spot and perp bars, 4 sub-steps a bar.

    The index is :func:`index_price` of the spot constituents on the perp's sub-step grid (the bars'
    open/high/low/close ordered by the *perp* bar's direction, so both series visit their extremes at
    the same sub-step). Constituents: the bundled Binance spot series.
    """
    from margincal import datasets

    s = datasets.load_hourly(coin, "spot")
    p = datasets.load_hourly(coin, "perpetual")
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    s = s[(s.index >= t0) & (s.index < t1)]
    p = p[(p.index >= t0) & (p.index < t1)]
    common = s.index.intersection(p.index)
    if len(common) < 2:
        raise DataError(f"bundled spot and perp bars do not overlap on {start}..{end}")
    s, p = s.loc[common], p.loc[common]
    falling = (p["close"] < p["open"]).to_numpy()
    cols = []
    for frame in (s,):
        o, h, lo, c = (frame[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
        cols.append(np.column_stack([o, np.where(falling, h, lo), np.where(falling, lo, h), c]).ravel())
    index = index_price(np.column_stack(cols))
    return index, bar_path(p), common
