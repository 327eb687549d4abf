"""Settings, validated at construction.

The store path resolves in this order: explicit argument (``--store``), the
``MARGINCAL_STORE`` environment variable, then ``./margincal.duckdb``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from margincal.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_STORE = "margincal.duckdb"
STORE_ENV = "MARGINCAL_STORE"
DATA_ENV = "MARGINCAL_DATA"
TIME_RANGE_ENV = "MARGINCAL_TIME_RANGE"
DEFAULT_TIME_FLOOR = "2009-01-01"  # before the first Bitcoin block there is no crypto market data


# How long a store open waits for a lock held by another process when its caller gives no ``timeout``, and whom
# it tells while it waits. The library default is 30 s, silent; the CLI sets its own (``--wait``, a countdown).
_LOCK_WAIT: dict[str, Any] = {"seconds": 30.0, "notify": None}


def set_lock_wait(seconds: float, notify: Callable[[str | None, float], None] | None = None) -> None:
    """Process-wide lock wait of :func:`margincal.data.store.connect` calls that give no ``timeout``.

    ``notify(holder, seconds_left)`` is called when a wait starts and about once a second while it lasts
    (``holder``: ``PID 123 (its command line)``), so a shell can show a countdown; ``notify(None, 0)`` when
    the store was opened after a wait.
    """
    _LOCK_WAIT["seconds"] = max(0.0, float(seconds))
    _LOCK_WAIT["notify"] = notify


def lock_wait() -> tuple[float, Callable[[str | None, float], None] | None]:
    """(seconds, notify) as :func:`set_lock_wait` last set them."""
    return float(_LOCK_WAIT["seconds"]), _LOCK_WAIT["notify"]


def resolve_store_path(store: str | os.PathLike[str] | None = None) -> Path:
    """Return the store path from the argument, ``MARGINCAL_STORE`` or the default."""
    if store is not None and str(store) != "":
        return Path(store)
    env = os.environ.get(STORE_ENV)
    if env:
        return Path(env)
    return Path(DEFAULT_STORE)


def plausible_time_range() -> tuple[pd.Timestamp, pd.Timestamp]:
    """The timestamps accepted at the door (ingest, fetch, command-line dates): by default from
    2009-01-01 to now + 1 day, both UTC. ``MARGINCAL_TIME_RANGE="FROM/TO"`` overrides it (``TO`` may be
    ``now+Nd``; an empty side keeps the default)."""
    import pandas as pd

    lo_txt, hi_txt = DEFAULT_TIME_FLOOR, "now+1d"
    env = os.environ.get(TIME_RANGE_ENV, "").strip()
    if env:
        if "/" not in env:
            raise ConfigError(f"{TIME_RANGE_ENV}={env!r}: write FROM/TO, e.g. 2009-01-01/now+1d")
        a, b = (x.strip() for x in env.split("/", 1))
        lo_txt, hi_txt = a or lo_txt, b or hi_txt

    def one(txt: str) -> pd.Timestamp:
        try:
            if txt.startswith("now"):
                rest = txt[3:].strip()
                m = re.fullmatch(r"\+?(\d+(?:\.\d+)?)([dhm])", rest) if rest else None
                if rest and m is None:
                    raise ValueError(rest)
                ahead = pd.Timedelta(float(m.group(1)) * {"d": 86400, "h": 3600, "m": 60}[m.group(2)], "s") if m \
                    else pd.Timedelta(0)
                return pd.Timestamp.now(tz="UTC") + ahead
            t = pd.Timestamp(txt)
        except (ValueError, OverflowError):
            raise ConfigError(f"{TIME_RANGE_ENV}: {txt!r} is not a date or now+<duration>") from None
        return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")

    lo, hi = one(lo_txt), one(hi_txt)
    if not lo < hi:
        raise ConfigError(f"{TIME_RANGE_ENV}: {lo_txt} is not before {hi_txt}")
    return lo, hi


def sample_data_dir() -> Path:
    """Directory holding the bundled real data: :func:`margincal.datasets.data_dir`.

    ``MARGINCAL_DATA`` overrides it; otherwise the ``margincal/datasets`` package
    folder (shipped in the wheel). Kept for existing callers; new code calls the
    loaders of :mod:`margincal.datasets`.
    """
    from margincal.datasets import data_dir

    return data_dir()


LEVEL_BOUNDS = (0.9, 0.9999)
HORIZON_BOUNDS_H = (0.25, 720.0)
BUFFER_MAX = 10.0
MAX_LEVERAGE = 200.0  # a calibrated IM below 0.5% (above 200x) is rejected at publication


@dataclass(frozen=True)
class CalibrationSettings:
    """Defaults of the first-line calibration (FHS with EWMA volatility).

    ``mm_fraction`` = 0.5: maintenance margin is half the initial margin, the
    ratio most crypto venues publish for their first tier (Binance BTCUSDT
    1/125 IM vs 0.4% MM ~ 0.5; Deribit futures 2% vs 1%; dYdX IMF 5% vs MMF 3%).
    It leaves the IM-MM gap as the buffer a liquidation engine works in.

    ``reference_size`` (quote currency) is the position size at which the
    published single rate includes the liquidity add-on; ``half_spread`` is an
    assumed 2 bp because the bundled bars carry no quotes; ``tier_boundaries``
    are the notional caps of the size tiers generated from the size curve.
    """

    level: float = 0.99
    horizon_hours: float = 24.0
    ewma_lambda: float = 0.94
    mm_fraction: float = 0.5
    buffer: float = 0.0
    rounding: float = 0.0005
    min_history: int = 250
    model: str = "fhs"
    reference_size: float = 1_000_000.0
    half_spread: float = 0.0002
    tier_boundaries: tuple[float, ...] = (1e5, 1e6, 1e7, 5e7, 2e8)
    extra: dict[str, float] = field(default_factory=dict)
    # ---- margin v2 (issue 15): size-dependent close-out horizon; ``rule="flat"`` is the pre-v2 rule
    rule: str = "v2"
    curve_caps: tuple[float, ...] = (5e4, 2.5e5, 1e6, 5e6, 1e7, 5e7, 1e8, 2.5e8, 5e8, 1e9)
    participation: float = 0.10
    check_interval_hours: float = 1.0 / 60.0
    detection_hours: float = 1.0 / 60.0
    im_gap: float = 0.5
    taker_fee: float = 0.0005
    liquidity_window_days: float = 30.0
    depth_to_adv: float = 89e6 / 10.6e9
    apc: str = "emir_a"
    #: "underlying" (default): every product on a coin takes its tail risk from one reference series of the
    #: coin (the most granular, then longest, bars stored), products differ only by their contract terms
    #: (margin.published.UnderlyingRisk); "product": each product's own bars (the rule before issue 15 item 3)
    risk_basis: str = "underlying"
    #: tail memory of the empirical models (fhs, hs) in the published rule: only the residuals of the last
    #: ``tail_window_days`` days enter the tail (None: every residual since the first bar)
    tail_window_days: float | None = None

    def __post_init__(self) -> None:
        # documented bounds (docs/margin_calibration.md): outside them a calibration is a typo, not a choice
        if not (math.isfinite(self.level) and LEVEL_BOUNDS[0] <= self.level <= LEVEL_BOUNDS[1]):
            raise ConfigError(f"level is {self.level}; it must be in [{LEVEL_BOUNDS[0]}, {LEVEL_BOUNDS[1]}], e.g. 0.99")
        if not (math.isfinite(self.horizon_hours) and HORIZON_BOUNDS_H[0] <= self.horizon_hours <= HORIZON_BOUNDS_H[1]):
            raise ConfigError(f"horizon_hours is {self.horizon_hours}; it must be in [{HORIZON_BOUNDS_H[0]}, "
                              f"{HORIZON_BOUNDS_H[1]}] hours (15 minutes to 30 days)")
        if not (math.isfinite(self.buffer) and self.buffer <= BUFFER_MAX):
            raise ConfigError(f"buffer is {self.buffer}; it must be in [0, {BUFFER_MAX:g}] (IM = ES x (1 + buffer))")
        if not 0.0 < self.ewma_lambda < 1.0:
            raise ConfigError(f"ewma_lambda is {self.ewma_lambda}; it must be in (0, 1)")
        if not 0.0 < self.mm_fraction <= 1.0:
            raise ConfigError(f"mm_fraction is {self.mm_fraction}; it must be in (0, 1]")
        if self.buffer < 0:
            raise ConfigError(f"buffer is {self.buffer}; it must be >= 0")
        if self.rounding < 0:
            raise ConfigError(f"rounding is {self.rounding}; it must be >= 0")
        if self.reference_size <= 0:
            raise ConfigError(f"reference_size is {self.reference_size}; it must be > 0")
        if self.half_spread < 0:
            raise ConfigError(f"half_spread is {self.half_spread}; it must be >= 0")
        if list(self.tier_boundaries) != sorted(set(self.tier_boundaries)):
            raise ConfigError("tier_boundaries must be strictly increasing")
        if self.min_history < 20:
            raise ConfigError(f"min_history is {self.min_history}; it must be >= 20")
        if self.rule not in ("v2", "flat"):
            raise ConfigError(f"rule is {self.rule!r}; use 'v2' (size-dependent horizon) or 'flat' (one horizon)")
        if not self.curve_caps or list(self.curve_caps) != sorted(set(self.curve_caps)) or self.curve_caps[0] <= 0:
            raise ConfigError("curve_caps must be strictly increasing notionals > 0")
        if not 0.0 < self.participation <= 1.0:
            raise ConfigError(f"participation is {self.participation}; it must be in (0, 1]")
        for name in ("check_interval_hours", "detection_hours", "im_gap", "taker_fee"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} is {v}; it must be a finite number >= 0")
        if self.risk_basis not in ("underlying", "product"):
            raise ConfigError(f"risk_basis is {self.risk_basis!r}; use 'underlying' (one tail risk per coin) or "
                              "'product' (each product's own bars)")
        if not (self.liquidity_window_days > 0 and self.depth_to_adv > 0):
            raise ConfigError("liquidity_window_days and depth_to_adv must be > 0")
        if self.tail_window_days is not None and not (math.isfinite(self.tail_window_days)
                                                      and self.tail_window_days >= 30):
            raise ConfigError(f"tail_window_days is {self.tail_window_days}; it must be a number of days >= 30, "
                              "or None for every residual")
