"""Market signals raised by the monitor.

A :class:`Signal` is frozen and self-explaining: which instrument, when (the
time the triggering data became known), what kind, how severe, the measured
values that fired it, the threshold it crossed and a sentence a risk officer
can read ("BTC-PERP 24h vol 92% annualised is 2.4x its 30-day level
(threshold 1.8x)").

Signals fire on *crossings*, not on every bar above a threshold: a
:class:`Trigger` remembers the severity it last fired at, fires again only to
escalate (warning -> critical), and re-arms once the measure falls back below
its re-arm level (hysteresis). This keeps the log readable during a crash.

Kinds:

``vol_regime``       short/long EWMA volatility ratio >= threshold
``volume_surge``     z-score of log(1 + volume) >= threshold
``oi_surge``         |z-score| of the log change in open interest >= threshold
``liquidity_drop``   order-book depth down X% / quoted spread up Nx against their
                     EWMA level, or (no book data) the Corwin-Schultz bar spread
                     proxy up Nx
``funding_extreme``  |funding rate| >= threshold, or its |z-score| >= threshold
``breach_cluster``   k margin breaches within the last n days
``new_listing``      instrument seen with fewer than N bars of history
``stale_data``       a gap of more than N bar intervals in an instrument's bars: the monitor
                     does not adjust on the bar after a gap (the data it would act on is stale)

Which parameter each signal moves is set in the policy's ``[moves.*]`` sections
(see :mod:`margincal.adjust.engine` and docs/monitoring.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["KINDS", "SEVERITIES", "Signal", "Trigger", "severity_name"]

SEVERITIES = ("info", "warning", "critical")
KINDS = ("vol_regime", "volume_surge", "oi_surge", "liquidity_drop", "funding_extreme", "breach_cluster",
         "new_listing", "stale_data")


def severity_name(level: int) -> str:
    """1 -> 'warning', 2 -> 'critical', 0 -> 'info'."""
    return SEVERITIES[level]


@dataclass(frozen=True, slots=True)
class Signal:
    """One signal, with the evidence that fired it."""

    instrument: str
    ts: pd.Timestamp
    kind: str
    severity: str
    values: Mapping[str, float] = field(default_factory=dict)
    threshold: float = math.nan
    reason: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {KINDS}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "instrument": self.instrument, "ts": self.ts.isoformat(), "kind": self.kind,
            "severity": self.severity,
            "values": {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                       for k, v in self.values.items()},
            "threshold": None if not math.isfinite(self.threshold) else self.threshold, "reason": self.reason,
        }


class Trigger:
    """Edge trigger with escalation and re-arm (hysteresis) for one measure of one instrument.

    ``check(x, warning, critical, rearm)`` returns 2 (fire critical), 1 (fire
    warning) or 0 (nothing). After firing it stays silent until ``x`` exceeds
    the next level or drops below ``rearm``, which re-arms it. NaN never fires
    and never re-arms.
    """

    __slots__ = ("level",)

    def __init__(self, level: int = 0) -> None:
        self.level = level

    def check(self, x: float, warning: float, critical: float, rearm: float) -> int:
        lvl = self.level
        if x >= critical:
            if lvl < 2:
                self.level = 2
                return 2
            return 0
        if x >= warning:
            if lvl < 1:
                self.level = 1
                return 1
            return 0
        if lvl and x < rearm:
            self.level = 0
        return 0

    def observe(self, level_now: int, rearm: bool) -> int:
        """Same logic when the caller has already classified the measure: fire on escalation, re-arm on request."""
        if level_now > self.level:
            self.level = level_now
            return level_now
        if level_now == 0 and rearm:
            self.level = 0
        return 0


# ------------------------------------------------------------------ reason builders
def _pct(x: float) -> str:
    return f"{100.0 * x:.0f}%"


def _hours(h: float) -> str:
    if h >= 48 and h % 24 == 0:
        return f"{h / 24:g}-day"
    return f"{h:g}h"


def vol_regime(instrument: str, ts: pd.Timestamp, level: int, sigma_short: float, sigma_long: float,
               threshold: float, short_hours: float, long_hours: float) -> Signal:
    ratio = sigma_short / sigma_long
    return Signal(instrument, ts, "vol_regime", SEVERITIES[level],
                  {"sigma_short_annual": sigma_short, "sigma_long_annual": sigma_long, "ratio": ratio},
                  threshold,
                  f"{instrument} {_hours(short_hours)} vol {_pct(sigma_short)} annualised is {ratio:.1f}x its "
                  f"{_hours(long_hours)} level {_pct(sigma_long)} (threshold {threshold:g}x)")


def volume_surge(instrument: str, ts: pd.Timestamp, level: int, volume: float, typical: float, z: float,
                 threshold: float) -> Signal:
    return Signal(instrument, ts, "volume_surge", SEVERITIES[level],
                  {"volume": volume, "typical_volume": typical, "z": z}, threshold,
                  f"{instrument} bar volume {volume:,.0f} is {volume / typical:.1f}x its typical {typical:,.0f} "
                  f"(z-score of log volume {z:.1f}, threshold {threshold:g})")


def oi_surge(instrument: str, ts: pd.Timestamp, level: int, oi: float, change: float, z: float,
             threshold: float) -> Signal:
    return Signal(instrument, ts, "oi_surge", SEVERITIES[level],
                  {"open_interest": oi, "log_change": change, "z": z}, threshold,
                  f"{instrument} open interest {oi:,.0f} moved {100.0 * (math.exp(change) - 1.0):+.1f}% "
                  f"(z-score {z:+.1f}, threshold {threshold:g})")


def depth_drop(instrument: str, ts: pd.Timestamp, level: int, depth: float, typical: float, threshold: float,
               band_bps: float) -> Signal:
    drop = 1.0 - depth / typical
    return Signal(instrument, ts, "liquidity_drop", SEVERITIES[level],
                  {"depth": depth, "typical_depth": typical, "drop": drop}, threshold,
                  f"{instrument} order-book depth within {band_bps:g} bps {depth:,.0f} is {_pct(drop)} below its "
                  f"typical {typical:,.0f} (threshold {_pct(threshold)})")


def spread_widening(instrument: str, ts: pd.Timestamp, level: int, spread_bps: float, typical_bps: float,
                    threshold: float, proxy: bool = False) -> Signal:
    ratio = spread_bps / typical_bps
    what = "bar-range spread estimate (Corwin-Schultz)" if proxy else "quoted spread"
    return Signal(instrument, ts, "liquidity_drop", SEVERITIES[level],
                  {"spread_bps": spread_bps, "typical_spread_bps": typical_bps, "ratio": ratio,
                   "proxy": 1.0 if proxy else 0.0}, threshold,
                  f"{instrument} {what} {spread_bps:.1f} bps is {ratio:.1f}x its typical {typical_bps:.1f} bps "
                  f"(threshold {threshold:g}x)")


def funding_extreme(instrument: str, ts: pd.Timestamp, level: int, rate: float, z: float,
                    threshold: float) -> Signal:
    return Signal(instrument, ts, "funding_extreme", SEVERITIES[level], {"rate": rate, "z": z}, threshold,
                  f"{instrument} funding {100.0 * rate:+.4f}% per period (threshold +/-{100.0 * threshold:.4f}%, "
                  f"z-score {z:+.1f})")


def breach_cluster(instrument: str, ts: pd.Timestamp, level: int, count: int, window_hours: float,
                   threshold: int, last_move: float, last_margin: float, horizon_hours: float) -> Signal:
    days = window_hours / 24.0
    return Signal(instrument, ts, "breach_cluster", SEVERITIES[level],
                  {"breaches": float(count), "window_hours": window_hours, "last_move": last_move,
                   "last_im_rate": last_margin}, float(threshold),
                  f"{instrument} {count} moves beyond the IM rate in force in the last {days:g} days "
                  f"(latest: a {_hours(horizon_hours)} move of {100 * last_move:.1f}% against IM "
                  f"{100 * last_margin:.2f}%; threshold {threshold})")


def new_listing(instrument: str, ts: pd.Timestamp, bars: int, min_bars: int, bar_hours: float) -> Signal:
    return Signal(instrument, ts, "new_listing", "info", {"bars": float(bars), "min_bars": float(min_bars)},
                  float(min_bars),
                  f"{instrument} has {bars} bars ({bars * bar_hours / 24:.1f} days) of history, fewer than "
                  f"{min_bars}: treat as a new listing (thin history, margins rest on few observations)")


def volume_drop(instrument: str, ts: pd.Timestamp, level: int, recent: float, typical: float,
                threshold: float) -> Signal:
    drop = 1.0 - recent / typical
    return Signal(instrument, ts, "liquidity_drop", SEVERITIES[level],
                  {"volume_recent": recent, "typical_volume": typical, "drop": drop}, threshold,
                  f"{instrument} traded volume (24h EWMA {recent:,.0f} per bar) is {_pct(drop)} below its typical "
                  f"{typical:,.0f} (threshold {_pct(threshold)})")


def stale_data(instrument: str, ts: pd.Timestamp, gap_bars: float, max_gap_bars: float, bar_hours: float) -> Signal:
    return Signal(instrument, ts, "stale_data", "warning", {"gap_bars": float(gap_bars), "bar_hours": bar_hours},
                  float(max_gap_bars),
                  f"{instrument} no bar for {gap_bars:g} bar intervals ({gap_bars * bar_hours:g}h; threshold "
                  f"{max_gap_bars:g}): data were stale, no margin change is made on this bar")
