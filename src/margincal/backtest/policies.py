"""Margin policies: what turns a model's raw margin path into the margin actually charged.

A policy gets the raw margin series of one model (per-bar rates, data strictly
before each bar) and returns the applied series. Causal policies (``raw``,
anti-procyclicality tools) may only use the past; the engine's no-look-ahead
test covers them. Two kinds of rows ignore the model (``model_free``):

``static``
    The constant rate tuned to the coverage **in sample**: the
    ``inverted_cdf`` ``level``-quantile of the realised two-sided loss over the
    evaluation days, so its in-sample breach rate is ``1 - level`` (exactly,
    up to ties, when ``n (1 - level)`` is whole). It knows the future by
    construction: a benchmark for the cost of a margin that never moves, not a
    deployable policy.
``preset:<name>``
    An exchange's published rule from :mod:`margincal.margin.presets`, its
    initial-margin rate for a position of ``notional`` (default 100,000 USD,
    open interest 0), applied to every instrument as a constant.

Anti-procyclicality (``apc:<name>``) wraps :func:`margincal.margin.apc.apply_apc`
(EMIR RTS 153/2013 Art. 28 tools); the named configurations are in
:data:`APC_CONFIGS`. ``apc:floor`` passes as floor the same coverage taken by
historical simulation over the longest lookback available (up to 10 years,
:class:`margincal.risk.historical.HistoricalSimulation` ``fit_path``), the margin option (c) asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from margincal.errors import ConfigError


@dataclass(frozen=True, eq=False)
class PolicyContext:
    """What a policy may look at, for one instrument, level and horizon.

    ``loss`` is the realised two-sided loss of the horizon starting at each bar
    (NaN where the horizon runs past the data): only in-sample benchmarks
    (``static``) may read it. ``eval_mask`` marks the evaluation bars.
    ``cache`` lets policies share work across models (e.g. a floor series).
    """

    instrument: str
    returns: pd.Series
    bar_hours: float
    horizon_bars: int
    level: float
    side_level: float
    loss: np.ndarray
    eval_mask: np.ndarray
    cache: dict[str, Any] = field(default_factory=dict)


class Policy:
    """Base policy: subclasses set ``name`` and implement :meth:`apply`."""

    name = "policy"
    model_free = False
    in_sample = False

    def apply(self, margin: pd.Series | None, ctx: PolicyContext) -> pd.Series:
        raise NotImplementedError

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class RawPolicy(Policy):
    """The model's margin as it is."""

    name = "raw"

    def apply(self, margin: pd.Series | None, ctx: PolicyContext) -> pd.Series:
        assert margin is not None
        return margin


class StaticTunedPolicy(Policy):
    """Constant rate = in-sample ``level``-quantile of the realised two-sided loss (look-ahead on purpose)."""

    name = "static"
    model_free = True
    in_sample = True

    def apply(self, margin: pd.Series | None, ctx: PolicyContext) -> pd.Series:
        losses = ctx.loss[ctx.eval_mask]
        if losses.size == 0:
            raise ConfigError(f"{ctx.instrument}: no evaluation days to tune the static margin on")
        rate = float(np.quantile(losses, ctx.level, method="inverted_cdf"))
        return pd.Series(rate, index=ctx.returns.index, name="static")


class PresetPolicy(Policy):
    """An exchange preset's initial-margin rate at ``notional`` (constant), from :mod:`margincal.margin.presets`."""

    model_free = True

    def __init__(self, preset: str, *, notional: float = 100_000.0, rate: str = "im") -> None:
        if rate not in ("im", "mm"):
            raise ConfigError(f"preset rate is {rate!r}; use 'im' or 'mm'")
        self.preset = preset
        self.notional = notional
        self.rate = rate
        self.name = f"preset:{preset}" if rate == "im" else f"preset:{preset}:mm"

    def value(self) -> float:
        try:
            from margincal.margin import presets
        except ImportError as exc:  # pragma: no cover - part of the package
            raise ConfigError(f"exchange presets need margincal.margin.presets: {exc}") from None
        r = presets.get(self.preset).margin_rate(self.notional, 0.0)
        return float(np.asarray(r.im if self.rate == "im" else r.mm))

    def apply(self, margin: pd.Series | None, ctx: PolicyContext) -> pd.Series:
        return pd.Series(self.value(), index=ctx.returns.index, name=self.name)


#: named anti-procyclicality configurations (keyword arguments of margincal.margin.apc.APCConfig)
APC_CONFIGS: dict[str, dict[str, Any]] = {
    # EMIR (a): 25% buffer on top of the model margin, released when the margin rises > 10% in a step
    "buffer25": {"buffer": 0.25, "release_in_stress": True, "stress_threshold": 0.10},
    # EMIR (c): never below the margin of the longest (<= 10y) historical lookback
    "floor": {},
    # speed limit on the way down: the margin falls at most 2% per bar (slow release after stress)
    "slowdown": {"max_down": 0.02},
}
APC_FLOOR = {"floor"}


class APCPolicy(Policy):
    """Anti-procyclicality via :func:`margincal.margin.apc.apply_apc` with a named or given config.

    ``floor_years`` (for ``floor=True``) caps the lookback of the historical
    floor (EMIR: 10 years); the bundled data is shorter, so all history is used.
    The APC recursion starts at the model's first finite margin.
    """

    def __init__(self, name: str = "buffer25", *, config: dict[str, Any] | None = None,
                 floor: bool | None = None, floor_years: float = 10.0) -> None:
        if config is None:
            if name not in APC_CONFIGS:
                raise ConfigError(f"unknown APC configuration {name!r}; choose one of {', '.join(APC_CONFIGS)} "
                                  "or pass config=")
            config = APC_CONFIGS[name]
        self.config = dict(config)
        self.floor = (name in APC_FLOOR) if floor is None else bool(floor)
        self.floor_years = floor_years
        self.name = f"apc:{name}"

    def _floor_series(self, ctx: PolicyContext) -> np.ndarray:
        key = f"hs-floor:{self.floor_years}"
        if key not in ctx.cache:
            from margincal.risk.historical import HistoricalSimulation

            window = int(round(self.floor_years * 365 * 24 / ctx.bar_hours))
            r = ctx.returns.to_numpy(float)
            p = HistoricalSimulation(window=window).fit_path(r, horizon=ctx.horizon_bars * ctx.bar_hours,
                                                             level=ctx.side_level, bar_hours=ctx.bar_hours)
            ctx.cache[key] = np.maximum(p["var_long"].to_numpy(float), p["var_short"].to_numpy(float))[: r.size]
        return ctx.cache[key]

    def apply(self, margin: pd.Series | None, ctx: PolicyContext) -> pd.Series:
        assert margin is not None
        try:
            from margincal.margin.apc import APCConfig, apply_apc
        except ImportError as exc:  # pragma: no cover - part of the package
            raise ConfigError(f"anti-procyclicality policies need margincal.margin.apc: {exc}") from None
        m = margin.to_numpy(float)
        ok = np.isfinite(m)
        out = np.full(m.size, np.nan)
        if not ok.any():
            return pd.Series(out, index=margin.index, name=self.name)
        start = int(np.flatnonzero(ok)[0])
        seg = m[start:]
        if not np.all(np.isfinite(seg)):
            raise ConfigError(f"{ctx.instrument}: the raw margin has gaps after its first value; APC needs a "
                              "contiguous series")
        floor = None
        if self.floor:
            f = self._floor_series(ctx)[start:]
            floor = np.where(np.isfinite(f), f, np.nan)
        res = apply_apc(seg, APCConfig(**self.config), floor=floor)
        out[start:] = np.asarray(res, dtype=float)
        return pd.Series(out, index=margin.index, name=self.name)


def apc_available() -> bool:
    try:
        import margincal.margin.apc  # noqa: F401
    except ImportError:
        return False
    return True


def preset_names() -> list[str]:
    """Exchange presets available (empty if :mod:`margincal.margin.presets` is absent)."""
    try:
        from margincal.margin import presets
    except ImportError:
        return []
    return list(presets.names())


def make_policy(spec: str | Policy) -> Policy:
    """``"raw"``, ``"static"``, ``"preset:<name>"``, ``"apc:<name>"`` or a :class:`Policy` instance."""
    if isinstance(spec, Policy):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"policy {spec!r} is not a policy name or a Policy")
    s = spec.strip()
    if s == "raw":
        return RawPolicy()
    if s == "static":
        return StaticTunedPolicy()
    if s.startswith("preset:"):
        name = s[7:]
        known = preset_names()
        if name not in known:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(known) or '(none available)'}")
        return PresetPolicy(name)
    if s.startswith("apc:"):
        return APCPolicy(s[4:])
    raise ConfigError(f"unknown policy {spec!r}; use raw, static, preset:<name> ({', '.join(preset_names())}) "
                      f"or apc:<name> ({', '.join(APC_CONFIGS)})")


def default_policies() -> list[str]:
    """The comparison's policies: raw, every APC configuration, static, every exchange preset."""
    out = ["raw"]
    if apc_available():
        out += [f"apc:{n}" for n in APC_CONFIGS]
    out.append("static")
    out += [f"preset:{n}" for n in preset_names()]
    return out


__all__ = [
    "APC_CONFIGS",
    "APCPolicy",
    "Policy",
    "PolicyContext",
    "PresetPolicy",
    "RawPolicy",
    "StaticTunedPolicy",
    "default_policies",
    "make_policy",
    "preset_names",
]
