"""Anti-procyclicality (APC) tools applied to a margin-rate time series.

EMIR RTS 153/2013, Article 28 asks a CCP to use at least one of three tools
so that margins do not fall too far in calm markets and jump in stress:

(a) a buffer of at least 25% of the calculated margin, which may be
    temporarily exhausted when calculated margins rise significantly;
(b) at least 25% weight on stressed observations in the lookback;
(c) margins no lower than those from a 10-year historical lookback.

This module implements them, plus two smoothing tools common at exchanges
(speed limits and hysteresis). Every tool is OFF by default and they compose
in this fixed order at each step ``t`` (``raw_t`` = the model's margin rate)::

    base_t   = raw_t
    (b)      base_t = max(base_t, (1 - w) * base_t + w * stressed_t)      # stressed_weight w
    (c)      base_t = max(base_t, floor_t)                                # longest-lookback floor
    (a)      target = base_t * (1 + beta_t)       beta_t = buffer fraction in force, beta_0 = buffer
             with release_in_stress:
               stress  (base_t > base_{t-1} (1 + stress_threshold)):
                       beta_t = clip(out_{t-1} / base_t - 1, 0, buffer)   # buffer absorbs the rise
               rising  (base_{t-1} < base_t <= base_{t-1} (1 + thr)):
                       beta_t = beta_{t-1}                                 # margin rises like the base
               calm    (base_t <= base_{t-1}):
                       beta_t = min(buffer, beta_{t-1} + buffer / rebuild_steps)   # gradual rebuild
    hysteresis: if |target - out_{t-1}| <= band * out_{t-1} and out_{t-1} >= base_t:
                 target = out_{t-1}                                       # ignore small changes
    speed:   out_t = clip(target, out_{t-1} * (1 - max_down), out_{t-1} * (1 + max_up))

So the buffer is released in stress and rebuilt over ``rebuild_steps`` calm
steps (default 20), or over ``rebuild_days`` calm DAYS whatever the bar size when
that is set (the ``emir_a`` preset: 20 days; :meth:`APCConfig.for_bars` converts it
with the series' ``bar_hours``); the margin never rises faster than the base except by
one rebuild increment ``buffer / rebuild_steps`` on a calm step. Issue 15's
example: with a 25% buffer the raw path [0.10, 0.15, 0.16] gives
[0.125, 0.15, 0.16] (before the fix the buffer came back at once: 0.20).

Hysteresis never holds a level below ``base_t`` (it only suppresses changes
that keep the margin at or above the requirement). The up speed limit CAN
leave ``out_t`` below ``base_t`` for a few steps: that is the price of a speed
limit, and the backtest shows its cost.

:func:`apply_apc` runs a whole series (vectorised when no tool needs the
previous output, the recursion otherwise); :func:`step` is one update, used
by the live engine; :func:`apply_apc_reference` is the plain loop over
:func:`step` that tests compare the fast path against.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from margincal.errors import ConfigError, DataError
from margincal.risk.measures import expected_shortfall

EMIR_MIN_BUFFER = 0.25
EMIR_MIN_STRESSED_WEIGHT = 0.25
EMIR_FLOOR_YEARS = 10


@dataclass(frozen=True)
class APCConfig:
    """Anti-procyclicality settings (everything off by default; see module doc).

    ``stressed_margin`` and ``floor`` may be scalars here or series passed to
    :func:`apply_apc`; ``max_up`` / ``max_down`` / ``hysteresis`` are relative
    (0.1 = 10% of the previous margin per step).
    """

    buffer: float = 0.0
    release_in_stress: bool = True
    stress_threshold: float = 0.10
    stressed_weight: float = 0.0
    stressed_margin: float | None = None
    floor: float | None = None
    max_up: float | None = None
    max_down: float | None = None
    hysteresis: float = 0.0
    rebuild_steps: int = 20
    rebuild_days: float | None = None

    def __post_init__(self) -> None:
        if int(self.rebuild_steps) != self.rebuild_steps or self.rebuild_steps < 1:
            raise ConfigError(f"APC rebuild_steps is {self.rebuild_steps}; it must be a whole number >= 1")
        if self.rebuild_days is not None and not (self.rebuild_days > 0 and math.isfinite(self.rebuild_days)):
            raise ConfigError(f"APC rebuild_days is {self.rebuild_days}; it must be a duration in days > 0 or None")
        if not (self.buffer >= 0 and math.isfinite(self.buffer)):
            raise ConfigError(f"APC buffer is {self.buffer}; it must be >= 0 (EMIR option (a) uses >= 0.25)")
        if self.stress_threshold < 0:
            raise ConfigError(f"APC stress_threshold is {self.stress_threshold}; it must be >= 0")
        if not 0 <= self.stressed_weight <= 1:
            raise ConfigError(f"APC stressed_weight is {self.stressed_weight}; it must be in [0, 1]")
        for name in ("max_up", "max_down"):
            v = getattr(self, name)
            if v is not None and not v >= 0:
                raise ConfigError(f"APC {name} is {v}; it must be >= 0 (relative change per step) or None")
        if self.max_down is not None and self.max_down > 1:
            raise ConfigError(f"APC max_down is {self.max_down}; it must be <= 1")
        if self.hysteresis < 0:
            raise ConfigError(f"APC hysteresis is {self.hysteresis}; it must be >= 0")
        for name in ("stressed_margin", "floor"):
            v = getattr(self, name)
            if v is not None and not (v >= 0 and math.isfinite(v)):
                raise ConfigError(f"APC {name} is {v}; it must be a finite rate >= 0 or None")

    def for_bars(self, bar_hours: float) -> APCConfig:
        """This configuration on bars of ``bar_hours``: durations in days become whole steps.

        ``rebuild_days`` (when set) replaces ``rebuild_steps`` by ``round(rebuild_days * 24 / bar_hours)``
        (at least 1), so the buffer rebuilds over the same time on daily and hourly bars (a rebuild over
        20 *steps* is 20 hours on hourly bars). Without ``rebuild_days`` the configuration is unchanged.
        The converted configuration counts steps only (``rebuild_days=None``), so converting it again, or
        passing it to :func:`step` on every bar, costs nothing and changes nothing.
        """
        if not (bar_hours > 0 and math.isfinite(bar_hours)):
            raise ConfigError(f"bar_hours is {bar_hours}; it must be > 0")
        if self.rebuild_days is None:
            return self
        steps = max(1, int(round(self.rebuild_days * 24.0 / bar_hours)))
        return dataclasses.replace(self, rebuild_steps=steps, rebuild_days=None)

    @property
    def stateful(self) -> bool:
        """True when the output depends on the previous output (needs the recursion)."""
        return bool((self.buffer > 0 and self.release_in_stress) or self.hysteresis > 0
                    or self.max_up is not None or self.max_down is not None)

    def emir_options(self, *, has_stressed: bool = False, has_floor: bool = False) -> list[str]:
        """Which EMIR Art. 28 options this configuration meets ('a', 'b', 'c')."""
        out = []
        if self.buffer >= EMIR_MIN_BUFFER:
            out.append("a")
        if self.stressed_weight >= EMIR_MIN_STRESSED_WEIGHT and (has_stressed or self.stressed_margin is not None):
            out.append("b")
        if has_floor or self.floor is not None:
            out.append("c")
        return out


@dataclass(frozen=True)
class APCState:
    """What :func:`step` needs from the previous step (``buffer_level``: the buffer fraction in force)."""

    out: float
    base: float
    buffer_level: float | None = None


def _base(raw: float, cfg: APCConfig, stressed: float | None, floor: float | None) -> float:
    b = float(raw)
    s = cfg.stressed_margin if stressed is None else stressed
    if cfg.stressed_weight > 0 and s is not None and np.isfinite(s):
        b = max(b, (1.0 - cfg.stressed_weight) * b + cfg.stressed_weight * float(s))
    f = cfg.floor if floor is None else floor
    if f is not None and np.isfinite(f):
        b = max(b, float(f))
    return b


def step(prev: APCState | None, raw: float, config: APCConfig, *, stressed: float | None = None,
         floor: float | None = None, bar_hours: float | None = None) -> tuple[float, APCState]:
    """One APC update: returns ``(margin_t, state_t)``; ``prev=None`` on the first step.

    ``bar_hours`` (default 24: one step a day) converts ``config.rebuild_days`` to steps
    (:meth:`APCConfig.for_bars`); it does nothing when the config counts ``rebuild_steps`` only.
    """
    if not (np.isfinite(raw) and raw >= 0):
        raise DataError(f"raw margin is {raw}; it must be a finite rate >= 0")
    cfg = config.for_bars(24.0 if bar_hours is None else bar_hours)
    return _step_from_base(prev, _base(raw, cfg, stressed, floor), cfg)


def _step_from_base(prev: APCState | None, base: float, cfg: APCConfig) -> tuple[float, APCState]:
    """Buffer (released in stress, rebuilt gradually), hysteresis and speed limits, given the base."""
    if prev is None:
        beta = cfg.buffer
        target = base * (1.0 + beta)
        return target, APCState(target, base, beta)
    out, beta = _next(prev.out, prev.base, prev.buffer_level, base, cfg)
    return out, APCState(out, base, beta)


def _next(prev_out: float, prev_base: float, prev_beta: float | None, base: float, cfg: APCConfig
          ) -> tuple[float, float]:
    """One step after the first on plain floats: ``(out_t, beta_t)`` (see module doc; ``prev_beta`` None: derived
    from the previous output and base). The single implementation behind :func:`step` and :func:`step_floats`."""
    buf = cfg.buffer
    if buf > 0 and cfg.release_in_stress:
        if prev_beta is None:
            prev_beta = min(max(prev_out / prev_base - 1.0, 0.0), buf) if prev_base > 0 else buf
        if base > prev_base * (1.0 + cfg.stress_threshold):
            # stress: the buffer absorbs the rise (the margin stays at the previous level if it covers base)
            beta = min(max(prev_out / base - 1.0, 0.0), buf) if base > 0 else prev_beta
        elif base > prev_base:
            beta = prev_beta  # rising but not stress: the margin rises exactly like the base
        else:
            # calm: rebuild gradually; min(buf, x) written out (the same value, a builtin call less on every bar)
            x = prev_beta + buf / cfg.rebuild_steps
            beta = x if x < buf else buf
    else:
        beta = buf
    target = base * (1.0 + beta)
    if cfg.hysteresis > 0 and abs(target - prev_out) <= cfg.hysteresis * prev_out and prev_out >= base:
        target = prev_out
    # the speed limits, when set (without them the clip to -inf / +inf returns the target itself)
    if cfg.max_down is not None:
        target = max(target, prev_out * (1.0 - cfg.max_down))
    if cfg.max_up is not None:
        target = min(target, prev_out * (1.0 + cfg.max_up))
    return float(target), beta


def step_floats(prev_out: float, prev_base: float, prev_beta: float, raw: float, config: APCConfig
                ) -> tuple[float, float, float]:
    """:func:`step` after the first step, for a previous state held as three floats (the live engine's hot path).

    ``prev_beta`` NaN stands for ``buffer_level=None``. ``config`` must count steps already
    (:meth:`APCConfig.for_bars` applied: ``rebuild_days`` None). Returns ``(out_t, base_t, beta_t)``: the same
    numbers as ``step(APCState(prev_out, prev_base, prev_beta), raw, config)``, without building the state
    object or calling numpy on a scalar.
    """
    if not (0.0 <= raw < math.inf):
        raise DataError(f"raw margin is {raw}; it must be a finite rate >= 0")
    if config.rebuild_days is not None:
        raise ConfigError("step_floats needs a configuration that counts steps (APCConfig.for_bars)")
    base = float(raw)
    if config.stressed_weight > 0 or config.stressed_margin is not None or config.floor is not None:
        base = _base(raw, config, None, None)
    out, beta = _next(prev_out, prev_base, None if prev_beta != prev_beta else prev_beta, base, config)
    return out, base, beta


class AntiProcyclicality:
    """Stateful wrapper for the live engine: ``apc = AntiProcyclicality(cfg); apc.step(raw)``."""

    def __init__(self, config: APCConfig, state: APCState | None = None, *, bar_hours: float | None = None) -> None:
        self.config = config
        self.state = state
        self.bar_hours = bar_hours

    def step(self, raw: float, *, stressed: float | None = None, floor: float | None = None) -> float:
        out, self.state = step(self.state, raw, self.config, stressed=stressed, floor=floor, bar_hours=self.bar_hours)
        return out


def _aligned(x: Any, n: int, name: str, index: Any) -> np.ndarray | None:
    if x is None:
        return None
    if isinstance(x, pd.Series) and index is not None:
        x = x.reindex(index)
    a = np.asarray(x, dtype=float)
    if a.ndim == 0:
        return np.full(n, float(a))
    if a.shape != (n,):
        raise DataError(f"{name} has {a.size} values, the margin series {n}; they must align")
    return a


def apply_apc(raw: pd.Series | np.ndarray | list[float], config: APCConfig, *, stressed: Any = None,
              floor: Any = None, bar_hours: float | None = None) -> pd.Series | np.ndarray:
    """Apply the APC tools to a whole margin-rate series (see module doc).

    ``stressed`` / ``floor`` may be scalars or series aligned with ``raw``
    (a Series is reindexed on ``raw``'s index); they override the config's
    scalars. ``bar_hours`` is the spacing of the series (default 24): with
    ``config.rebuild_days`` the rebuild takes that many DAYS whatever the bar
    size (:meth:`APCConfig.for_bars`). Returns the same type as ``raw``
    (Series keeps its index).
    """
    config = config.for_bars(24.0 if bar_hours is None else bar_hours)
    idx = raw.index if isinstance(raw, pd.Series) else None
    r = np.asarray(raw, dtype=float)
    if r.ndim != 1:
        raise DataError("raw margin must be one-dimensional")
    if r.size and (not np.all(np.isfinite(r)) or np.any(r < 0)):
        i = int(np.flatnonzero(~np.isfinite(r) | (r < 0))[0])
        raise DataError(f"raw margin[{i}] is {r[i]}; rates must be finite and >= 0")
    n = r.size
    s = _aligned(stressed if stressed is not None else config.stressed_margin, n, "stressed", idx)
    f = _aligned(floor if floor is not None else config.floor, n, "floor", idx)
    base = r.copy()
    if config.stressed_weight > 0 and s is not None:
        blend = (1.0 - config.stressed_weight) * base + config.stressed_weight * s
        base = np.where(np.isfinite(blend), np.maximum(base, blend), base)
    if f is not None:
        base = np.where(np.isfinite(f), np.maximum(base, f), base)
    if not config.stateful:
        out = base * (1.0 + config.buffer)
    else:
        out = np.empty(n)
        state: APCState | None = None
        for t in range(n):
            out[t], state = _step_from_base(state, float(base[t]), config)
    return pd.Series(out, index=idx, name=getattr(raw, "name", None)) if idx is not None else out


def apply_apc_reference(raw: Any, config: APCConfig, *, stressed: Any = None, floor: Any = None,
                        bar_hours: float | None = None) -> np.ndarray:
    """Plain loop of :func:`step` over the series (for tests)."""
    r = [float(x) for x in np.asarray(raw, dtype=float)]
    n = len(r)
    s = _aligned(stressed, n, "stressed", None) if stressed is not None else None
    f = _aligned(floor, n, "floor", None) if floor is not None else None
    out, state = [], None
    for t in range(n):
        o, state = step(state, r[t], config, stressed=None if s is None else s[t],
                        floor=None if f is None else f[t], bar_hours=bar_hours)
        out.append(o)
    return np.array(out)


# ------------------------------------------------------------------ inputs


def _horizon_losses(returns: np.ndarray, h: float) -> np.ndarray:
    x = returns * math.sqrt(h)
    return np.concatenate([-np.expm1(x), np.expm1(x)])


def stressed_period_margin(returns: pd.Series, start: Any, end: Any, *, level: float = 0.99,
                           horizon_bars: float = 1.0) -> float:
    """ES (both sides, sqrt-of-time scaled) of the returns in a stressed period ``[start, end]``.

    The input of option (b): e.g. BTC daily returns 2020-03-01..2020-03-31 or
    2022-11-01..2022-11-30.
    """
    if not isinstance(returns, pd.Series) or not isinstance(returns.index, pd.DatetimeIndex):
        raise DataError("stressed_period_margin needs a Series of log returns with a DatetimeIndex")
    idx = returns.index
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    if idx.tz is not None:
        lo = lo.tz_localize("UTC") if lo.tzinfo is None else lo
        hi = hi.tz_localize("UTC") if hi.tzinfo is None else hi
    window = returns.loc[lo:hi].to_numpy(float)
    if window.size < 5:
        raise DataError(f"stressed period {start}..{end} has {window.size} returns; need at least 5")
    return float(expected_shortfall(_horizon_losses(window, horizon_bars), level))


def lookback_floor(returns: pd.Series | np.ndarray, *, level: float = 0.99, horizon_bars: float = 1.0,
                   min_obs: int = 250, max_obs: int | None = None, years: float = EMIR_FLOOR_YEARS,
                   bar_hours: float | None = None, step: int = 1) -> np.ndarray | pd.Series:
    """Option (c): ES over a lookback of up to ``years`` (10) years ending before each date.

    Element ``t`` uses returns strictly before ``t`` (NaN until ``min_obs``
    exist). The window is the last ``years`` of bars (``max_obs`` overrides
    it): 10 years where the data allow, everything available before that.
    ``bar_hours`` defaults to the index spacing (24 without an index).
    Both sides, sqrt-of-time scaled to ``horizon_bars``. ``step > 1``
    recomputes every ``step`` bars and carries the value forward (for long
    hourly series).
    """
    idx = returns.index if isinstance(returns, pd.Series) else None
    r = np.asarray(returns, dtype=float)
    if max_obs is None:
        bh = bar_hours
        if bh is None:
            bh = (float(np.median(np.diff(idx.as_unit("ns").asi8))) / 3.6e12
                  if isinstance(idx, pd.DatetimeIndex) and len(idx) > 1 else 24.0)
        max_obs = int(round(years * 365.25 * 24.0 / bh))
    if int(step) != step or step < 1:
        raise ConfigError(f"step is {step}; it must be a whole number >= 1")
    out = np.full(r.size, np.nan)
    last = np.nan
    for t in range(min_obs, r.size):
        if (t - min_obs) % step == 0:
            lo = max(0, t - max_obs)
            last = expected_shortfall(_horizon_losses(r[lo:t], horizon_bars), level)
        out[t] = last
    return pd.Series(out, index=idx, name="lookback_floor") if idx is not None else out


# ------------------------------------------------------------------ option (b) inside the lookback


def stressed_weighted_es(losses: ArrayLike, stressed_losses: ArrayLike, *, level: float = 0.99,
                         weight: float = EMIR_MIN_STRESSED_WEIGHT) -> float:
    """ES of a lookback sample in which the stressed observations carry ``weight`` of the total.

    EMIR RTS 153/2013 Art. 28(1)(b): "assigning at least 25% weight to
    stressed observations in the lookback period". The ``n`` ordinary
    observations get ``(1 - weight) / n`` each and the ``m`` stressed ones
    ``weight / m`` each; the weighted Acerbi-Tasche ES follows
    (:func:`margincal.risk.measures.expected_shortfall` with ``weights``).
    An observation must be in one set only (pass the lookback without the
    stressed period).
    """
    a = np.asarray(losses, dtype=float).ravel()
    b = np.asarray(stressed_losses, dtype=float).ravel()
    if not 0 <= weight <= 1:
        raise ConfigError(f"stressed weight is {weight}; it must be in [0, 1]")
    if b.size == 0 or weight == 0:
        return float(expected_shortfall(a, level))
    if a.size == 0 or weight == 1:
        return float(expected_shortfall(b, level))
    w = np.concatenate([np.full(a.size, (1.0 - weight) / a.size), np.full(b.size, weight / b.size)])
    return float(expected_shortfall(np.concatenate([a, b]), level, weights=w))


def stressed_lookback_path(returns: pd.Series, stressed: tuple[Any, Any], *, lookback_obs: int,
                           level: float = 0.99, weight: float = EMIR_MIN_STRESSED_WEIGHT,
                           horizon_bars: float = 1.0, min_obs: int = 250, step: int = 1) -> pd.Series:
    """Causal option-(b) margin: at each ``t`` the ES of the last ``lookback_obs`` returns plus the
    stressed period's returns (only those before ``t``) weighted at ``weight`` (see
    :func:`stressed_weighted_es`). Stressed observations inside the lookback window count once, in
    the stressed set. Before the stressed period has happened the plain lookback ES is used.
    Both sides, sqrt-of-time scaled to ``horizon_bars``; ``step`` as in :func:`lookback_floor`.
    """
    if not isinstance(returns, pd.Series) or not isinstance(returns.index, pd.DatetimeIndex):
        raise DataError("stressed_lookback_path needs a Series of log returns with a DatetimeIndex")
    idx = returns.index
    lo_ts, hi_ts = (pd.Timestamp(x) for x in stressed)
    if idx.tz is not None:
        lo_ts = lo_ts.tz_localize("UTC") if lo_ts.tzinfo is None else lo_ts
        hi_ts = hi_ts.tz_localize("UTC") if hi_ts.tzinfo is None else hi_ts
    in_stress = np.asarray((idx >= lo_ts) & (idx <= hi_ts))
    if not in_stress.any():
        raise DataError(f"stressed period {stressed[0]}..{stressed[1]} holds no return of the series")
    if int(step) != step or step < 1:
        raise ConfigError(f"step is {step}; it must be a whole number >= 1")
    r = returns.to_numpy(float)
    out = np.full(r.size, np.nan)
    last = np.nan
    for t in range(min_obs, r.size):
        if (t - min_obs) % step == 0:
            lo = max(0, t - lookback_obs)
            win, st = r[lo:t], in_stress[lo:t]
            stressed_before = r[:t][in_stress[:t]]
            last = stressed_weighted_es(_horizon_losses(win[~st], horizon_bars),
                                        _horizon_losses(stressed_before, horizon_bars) if stressed_before.size
                                        else np.zeros(0), level=level, weight=weight)
        out[t] = last
    return pd.Series(out, index=idx, name="stressed_lookback")


# ------------------------------------------------------------------ bounded tail memory


def age_weights(n: int, half_life: float) -> np.ndarray:
    """Exponentially decaying weights of ``n`` observations, oldest first, newest weight largest.

    Boudoukh, Richardson and Whitelaw, *The Best of Both Worlds*, Risk 11(5)
    (1998): observation of age ``a`` (0 = newest) gets weight proportional to
    ``0.5 ** (a / half_life)``; weights sum to 1. With these weights one crash
    residual loses half its influence every ``half_life`` observations instead
    of staying in the tail for ever.
    """
    if int(n) != n or n < 1:
        raise ConfigError(f"n is {n}; it must be a whole number >= 1")
    if not (half_life > 0 and math.isfinite(half_life)):
        raise ConfigError(f"half_life is {half_life}; it must be > 0 observations")
    age = np.arange(n - 1, -1, -1, dtype=float)
    w = 0.5 ** (age / half_life)
    return w / w.sum()


def bounded_memory_es(losses: ArrayLike, *, level: float = 0.99, half_life: float | None = None,
                      window: int | None = None) -> float:
    """ES of a loss sample (oldest first) with bounded tail memory: a window, an age decay, or both.

    ``window`` keeps only the last ``window`` observations; ``half_life``
    weights them with :func:`age_weights`. Both None is the plain ES. Meant for
    the standardised residuals of a filtered model (FHS), where one crash
    residual otherwise pins the margin at its level as long as it stays in the
    sample.
    """
    x = np.asarray(losses, dtype=float).ravel()
    if window is not None:
        if int(window) != window or window < 1:
            raise ConfigError(f"window is {window}; it must be a whole number >= 1")
        x = x[-int(window):]
    if half_life is None:
        return float(expected_shortfall(x, level))
    return float(expected_shortfall(x, level, weights=age_weights(x.size, half_life)))


# ------------------------------------------------------------------ selectable presets

APC_PRESETS: dict[str, dict[str, Any]] = {
    "off": {},
    "emir_a": {"buffer": EMIR_MIN_BUFFER, "release_in_stress": True, "stress_threshold": 0.10, "rebuild_days": 20.0},
    "emir_a_speed": {"buffer": EMIR_MIN_BUFFER, "release_in_stress": True, "stress_threshold": 0.10,
                     "rebuild_days": 20.0, "max_up": 0.5, "max_down": 0.05},
    # stronger buffers than EMIR's minimum, for the trade-off of docs/validation.md (issue 15 item 5)
    "emir_a_50": {"buffer": 0.50, "release_in_stress": True, "stress_threshold": 0.10, "rebuild_days": 20.0},
    "emir_a_100": {"buffer": 1.00, "release_in_stress": True, "stress_threshold": 0.10, "rebuild_days": 20.0},
}
"""Named APC configurations. ``emir_a`` (buffer 25%, released in stress, rebuilt over 20 calm
DAYS: 20 steps on daily bars, 480 on hourly bars, :meth:`APCConfig.for_bars`) is the default;
``emir_a_speed`` adds a speed limit (+50% / -5% per step); ``emir_a_50`` / ``emir_a_100`` hold a 50% / 100%
buffer; (b) and (c) need a stressed series / floor series passed to
:func:`apply_apc` (:func:`stressed_lookback_path`, :func:`lookback_floor`)."""

DEFAULT_APC = "emir_a"


def apc_config(name: str = DEFAULT_APC, **overrides: Any) -> APCConfig:
    """The named :data:`APC_PRESETS` configuration, with keyword overrides."""
    if name not in APC_PRESETS:
        raise ConfigError(f"unknown APC preset {name!r}; choose one of {', '.join(sorted(APC_PRESETS))}")
    return APCConfig(**{**APC_PRESETS[name], **overrides})
