"""Adjustment policy: which margin moves are automatic, within which bounds, and which need an officer.

A policy is a TOML file (see ``default_policy.toml`` shipped in this package
for every key with its meaning). :func:`load_policy` reads it with
:mod:`tomllib`, merges it over the defaults and validates every key; any
problem raises :class:`~margincal.errors.ConfigError` naming the file, the
key and the rule (``policy.toml: [auto] max_increase is -0.5; it must be > 0``).

The rules themselves live in :func:`bound_target` (speed limits, hysteresis,
floor/cap) and :func:`route` (automatic vs. proposal) as pure functions, so
they can be read and tested on their own:

* increases: at most ``+max_increase`` of the current IM in one step and at
  least ``increase_cooldown_hours`` apart;
* decreases: at most ``max_decrease_per_day`` per day elapsed since the
  instrument's last change (linear: 2 days -> 10% with 5%/day);
* hysteresis: nothing happens while ``|target / current - 1| <= hysteresis``,
  and a speed-limited step smaller than the band waits;
* floor and cap: ``max(im_floor, floor_fraction_of_base * IM_base) <= IM <= im_cap``;
* routing: decreases (``approval.decrease``), increases above
  ``approval.increase_above`` (optionally split: the first part automatic, the
  rest proposed) and, with ``approval.critical_signals``, any change while a
  critical signal is active become proposals for a risk officer.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from margincal.errors import ConfigError

__all__ = ["DEFAULT_POLICY_FILE", "Bounds", "Policy", "apc_settings", "bound_target", "default_policy", "load_policy",
           "route"]

DEFAULT_POLICY_FILE = "default_policy.toml"

# (type, rule, rule text); every key of the default file must appear here.
_pos = (lambda v: v > 0, "it must be > 0")
_nonneg = (lambda v: v >= 0, "it must be >= 0")
_frac = (lambda v: 0 < v < 1, "it must be in (0, 1)")
_frac_incl = (lambda v: 0 <= v <= 1, "it must be in [0, 1]")
_rate = (lambda v: 0 < v <= 1, "it must be a rate in (0, 1]")
_gt1 = (lambda v: v > 1, "it must be > 1")
_any = (lambda v: True, "")

_SCHEMA: dict[str, dict[str, tuple[type, tuple[Callable[[Any], bool], str]]]] = {
    "": {"name": (str, _any)},
    "estimators": {
        "short_halflife_hours": (float, _pos), "long_halflife_hours": (float, _pos),
        "target_halflife_hours": (float, _pos), "stats_halflife_hours": (float, _pos),
        "vol_seed_bars": (int, (lambda v: v >= 1, "it must be >= 1")), "depth_band_bps": (float, _pos),
        "warmup_hours": (float, _nonneg),
    },
    "signals.vol_regime": {"enabled": (bool, _any), "warning": (float, _gt1), "critical": (float, _gt1),
                           "rearm": (float, _pos)},
    "signals.volume_surge": {"enabled": (bool, _any), "warning": (float, _pos), "critical": (float, _pos),
                             "rearm": (float, _nonneg)},
    "signals.oi_surge": {"enabled": (bool, _any), "warning": (float, _pos), "critical": (float, _pos),
                         "rearm": (float, _nonneg)},
    "signals.liquidity_drop": {
        "enabled": (bool, _any), "depth_drop_warning": (float, _frac), "depth_drop_critical": (float, _frac),
        "spread_warning": (float, _gt1), "spread_critical": (float, _gt1), "bar_spread_proxy": (bool, _any),
        "proxy_warning": (float, _gt1), "proxy_critical": (float, _gt1), "rearm_fraction": (float, _frac),
        "volume_drop_warning": (float, _frac), "volume_drop_critical": (float, _frac),
    },
    "signals.funding_extreme": {"enabled": (bool, _any), "warning": (float, _pos), "critical": (float, _pos),
                                "z_warning": (float, _pos), "rearm_fraction": (float, _frac)},
    "signals.breach_cluster": {"enabled": (bool, _any), "horizon_hours": (float, _pos),
                               "window_hours": (float, _pos),
                               "warning": (int, (lambda v: v >= 1, "it must be >= 1")),
                               "critical": (int, (lambda v: v >= 1, "it must be >= 1"))},
    "signals.stale_data": {"enabled": (bool, _any), "max_gap_bars": (float, (lambda v: v >= 1, "it must be >= 1"))},
    "signals.new_listing": {"enabled": (bool, _any), "min_history_hours": (float, _pos)},
    "target": {"anchor": (str, (lambda v: v in ("calibration", "start"), "it must be 'calibration' or 'start'")),
               "im_floor": (float, _rate), "im_cap": (float, _rate),
               "floor_fraction_of_base": (float, _frac_incl), "rounding": (float, _nonneg)},
    "auto": {"max_increase": (float, _pos), "increase_cooldown_hours": (float, _nonneg),
             "max_decrease_per_day": (float, _frac), "hysteresis": (float, (lambda v: 0 <= v < 1,
                                                                                "it must be in [0, 1)"))},
    "approval": {"decrease": (bool, _any), "increase_above": (float, _nonneg),
                 "split_large_increases": (bool, _any), "critical_signals": (bool, _any),
                 "proposal_cooldown_hours": (float, _nonneg)},
    "moves.volatility": {"enabled": (bool, _any), "regime_short_vol": (bool, _any)},
    "moves.open_interest": {"enabled": (bool, _any), "lower_cap_multiple": (float, _pos),
                            "upper_cap_multiple": (float, _pos), "reference_halflife_hours": (float, _pos),
                            "tier_boundaries": (bool, _any)},
    "moves.liquidity": {"enabled": (bool, _any), "horizon_exponent": (float, _frac_incl),
                        "max_horizon_factor": (float, (lambda v: v >= 1, "it must be >= 1")),
                        "addon_multiplier": (float, _nonneg), "tier_boundaries": (bool, _any)},
    "moves.funding": {"enabled": (bool, _any), "interval_hours": (float, _pos), "horizon_hours": (float, _pos)},
    "moves.breach": {"enabled": (bool, _any), "cushion": (float, _nonneg)},
    "effective": {"mm_notice_hours": (float, _nonneg), "decrease_batch_hours": (float, _nonneg),
                  "decrease_hysteresis": (float, (lambda v: 0 <= v < 1, "it must be in [0, 1)"))},
    "apc": {"enabled": (bool, _any),
            "preset": (str, (lambda v: v == "published" or v in _apc_presets(),
                             "it must be 'published' (the rule of the published rates) or a margin.apc preset "
                             "(off, emir_a, emir_a_speed)")),
            "buffer": (float, _nonneg), "stress_threshold": (float, _nonneg),
            "rebuild_steps": (int, (lambda v: v >= 1, "it must be >= 1"))},
}


def _apc_presets() -> tuple[str, ...]:
    from margincal.margin.apc import APC_PRESETS

    return tuple(APC_PRESETS)


def apc_settings(policy: Policy) -> tuple[bool, Any]:
    """``(on, APCConfig)``: the anti-procyclicality rule the monitor applies under ``policy``'s ``[apc]``.

    ``preset = "published"`` (the default) is the preset of the published rule
    (:attr:`margincal.config.CalibrationSettings.apc`, ``emir_a``), so published rates, replays and
    backtests follow one rule; ``buffer``, ``stress_threshold`` and ``rebuild_steps``, when the file sets
    them, override the preset's. Off when ``enabled = false``, or when the rule does nothing (no buffer
    and no stateful tool, e.g. preset ``off``).
    """
    from margincal.config import CalibrationSettings
    from margincal.margin.apc import apc_config

    ap = policy["apc"]
    name = CalibrationSettings().apc if ap["preset"] == "published" else ap["preset"]
    over: dict[str, Any] = {k: ap[k] for k in ("buffer", "stress_threshold", "rebuild_steps") if k in ap}
    if "rebuild_steps" in over:
        over["rebuild_days"] = None  # the file counts the rebuild in bars: it replaces the preset's days
    try:
        cfg = apc_config(name, **over)
    except ConfigError as exc:
        raise ConfigError(f"{policy.source}: [apc] {exc}") from None
    on = bool(ap["enabled"]) and (cfg.buffer > 0 or cfg.stateful or cfg.floor is not None
                                  or cfg.stressed_margin is not None)
    return on, cfg

# cross-key rules: (section, lower key, higher key)
_ORDERED = [
    ("signals.vol_regime", "warning", "critical"), ("signals.vol_regime", "rearm", "warning"),
    ("signals.volume_surge", "warning", "critical"), ("signals.volume_surge", "rearm", "warning"),
    ("signals.oi_surge", "warning", "critical"), ("signals.oi_surge", "rearm", "warning"),
    ("signals.liquidity_drop", "depth_drop_warning", "depth_drop_critical"),
    ("signals.liquidity_drop", "spread_warning", "spread_critical"),
    ("signals.liquidity_drop", "proxy_warning", "proxy_critical"),
    ("signals.liquidity_drop", "volume_drop_warning", "volume_drop_critical"),
    ("moves.open_interest", "lower_cap_multiple", "upper_cap_multiple"),
    ("signals.funding_extreme", "warning", "critical"),
    ("signals.breach_cluster", "warning", "critical"),
    ("estimators", "short_halflife_hours", "long_halflife_hours"),
    ("target", "im_floor", "im_cap"),
]


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """{'signals': {'vol_regime': {...}}} -> {'signals.vol_regime': {...}}; top-level scalars under ''."""
    out: dict[str, dict[str, Any]] = {}
    for k, v in doc.items():
        path = f"{prefix}.{k}" if prefix else k
        if isinstance(v, Mapping):
            sub = _flatten(v, path)
            if not sub:
                out.setdefault(path, {})
            for sk, sv in sub.items():
                out.setdefault(sk, {}).update(sv)
        else:
            out.setdefault(prefix, {})[k] = v
    return out


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None


def _default_doc() -> dict[str, Any]:
    text = resources.files("margincal.adjust").joinpath(DEFAULT_POLICY_FILE).read_text(encoding="utf-8")
    return _read_toml(text, DEFAULT_POLICY_FILE)


@dataclass(frozen=True)
class Policy:
    """A validated adjustment policy: ``values[section][key]`` plus where it came from.

    ``policy["auto"]["max_increase"]`` or ``policy.get("auto", "max_increase")``
    read a value; :attr:`sha256` identifies the exact rules (stored with every
    automatic change and in the monitor's checkpoint).
    """

    values: Mapping[str, Mapping[str, Any]]
    source: str = DEFAULT_POLICY_FILE

    def __getitem__(self, section: str) -> Mapping[str, Any]:
        return self.values[section]

    def get(self, section: str, key: str) -> Any:
        return self.values[section][key]

    @property
    def name(self) -> str:
        return str(self.values[""]["name"])

    @functools.cached_property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {s: dict(kv) for s, kv in self.values.items()}

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "sha256": self.sha256}


def _validate(flat: dict[str, dict[str, Any]], source: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section, keys in flat.items():
        spec = _SCHEMA.get(section)
        label = f"[{section}]" if section else "top level"
        if spec is None:
            known = ", ".join(f"[{s}]" for s in _SCHEMA if s)
            raise ConfigError(f"{source}: unknown section [{section}]; known sections: {known}")
        for key, value in keys.items():
            if key not in spec:
                raise ConfigError(f"{source}: {label} has unknown key {key!r}; known keys: {', '.join(spec)}")
            typ, (rule, text) = spec[key]
            if typ is bool:
                if not isinstance(value, bool):
                    raise ConfigError(f"{source}: {label} {key} is {value!r}; it must be true or false")
            elif typ is int:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f"{source}: {label} {key} is {value!r}; it must be a whole number")
            elif typ is float:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ConfigError(f"{source}: {label} {key} is {value!r}; it must be a finite number")
                value = float(value)
            elif typ is str and not isinstance(value, str):
                raise ConfigError(f"{source}: {label} {key} is {value!r}; it must be a string")
            if not rule(value):
                raise ConfigError(f"{source}: {label} {key} is {value!r}; {text}")
            out.setdefault(section, {})[key] = value
    for section, lo, hi in _ORDERED:
        a, b = out[section][lo], out[section][hi]
        if not a <= b:
            raise ConfigError(f"{source}: [{section}] {lo} is {a!r} but {hi} is {b!r}; {lo} must be <= {hi}")
    return out


def default_policy() -> Policy:
    """The shipped default policy (``margincal/adjust/default_policy.toml``)."""
    return load_policy(None)


def load_policy(path: str | Path | None = None, *, overrides: Mapping[str, Mapping[str, Any]] | None = None
                ) -> Policy:
    """Read and validate a policy TOML file (None = the shipped default).

    Keys missing from the file take the default values; unknown sections or
    keys, wrong types and broken rules raise :class:`ConfigError` naming the
    file, the key and the rule. ``overrides`` (``{"auto": {"hysteresis": 0.1}}``)
    are applied last, with the same validation.
    """
    base = _flatten(_default_doc())
    source = DEFAULT_POLICY_FILE
    if path is not None:
        p = Path(path)
        source = p.name
        if not p.exists():
            raise ConfigError(f"policy file {p} does not exist")
        user = _flatten(_read_toml(p.read_text(encoding="utf-8"), source))
        _validate_keys_only(user, source)
        for s, kv in user.items():
            base.setdefault(s, {}).update(kv)
    if overrides:
        ov = _flatten(overrides)
        _validate_keys_only(ov, "overrides")
        for s, kv in ov.items():
            base.setdefault(s, {}).update(kv)
    return Policy(values=_validate(base, source), source=str(path) if path is not None else DEFAULT_POLICY_FILE)


def _validate_keys_only(flat: dict[str, dict[str, Any]], source: str) -> None:
    for section, keys in flat.items():
        spec = _SCHEMA.get(section)
        if spec is None:
            known = ", ".join(f"[{s}]" for s in _SCHEMA if s)
            raise ConfigError(f"{source}: unknown section [{section}]; known sections: {known}")
        for key in keys:
            if key not in spec:
                label = f"[{section}]" if section else "top level"
                raise ConfigError(f"{source}: {label} has unknown key {key!r}; known keys: {', '.join(spec)}")


# ====================================================================== rules


def _ceil_to(x: float, step: float) -> float:
    if step <= 0:
        return x
    return math.ceil(x / step - 1e-9) * step


class Bounds:
    """The speed limits, hysteresis, floor/cap and rounding of a policy, as plain floats (fast to apply)."""

    __slots__ = ("band", "cap", "cooldown_h", "floor", "floor_frac", "max_down_day", "max_up", "rounding")

    def __init__(self, policy: Policy) -> None:
        tg, au = policy["target"], policy["auto"]
        self.floor = float(tg["im_floor"])
        self.floor_frac = float(tg["floor_fraction_of_base"])
        self.cap = float(tg["im_cap"])
        self.rounding = float(tg["rounding"])
        self.band = float(au["hysteresis"])
        self.cooldown_h = float(au["increase_cooldown_hours"])
        self.max_up = float(au["max_increase"])
        self.max_down_day = float(au["max_decrease_per_day"])

    def bound(self, current: float, target: float, im_base: float, hours_since_change: float,
              hours_since_increase: float) -> float | None:
        floor = self.floor if self.floor >= self.floor_frac * im_base else self.floor_frac * im_base
        t = target if target > floor else floor
        cap = self.cap
        if t > cap:
            t = cap
        if self.rounding > 0:
            t = _ceil_to(t, self.rounding)
            if t > cap:
                t = cap
        band = self.band + 1e-12  # the band edge counts as inside (0.084 vs 0.08 is exactly +5%)
        rel = t / current - 1.0
        if -band <= rel <= band:
            return None
        if t > current:
            if hours_since_increase < self.cooldown_h:
                return None
            hi = current * (1.0 + self.max_up)
            new = t if t < hi else hi
        else:
            days = hours_since_change / 24.0 if hours_since_change > 0 else 0.0
            cut = self.max_down_day * days
            lowest = current * (1.0 - (cut if cut < 1.0 else 1.0))
            new = t if t > lowest else lowest
            if new >= current * (1.0 - band):  # the step allowed so far is inside the band: wait
                return None
        return None if new == current else new


def bound_target(policy: Policy, *, current: float, target: float, im_base: float, hours_since_change: float,
                 hours_since_increase: float) -> float | None:
    """The IM rate to move to now, or None when the policy says "no change yet".

    ``target`` is the unconstrained target (e.g. vol-scaled); the result
    respects floor/cap, rounding, hysteresis and the speed limits (see the
    module doc). Same as ``Bounds(policy).bound(...)``.
    """
    return Bounds(policy).bound(current, target, im_base, hours_since_change, hours_since_increase)


def route(policy: Policy, *, current: float, new: float, critical: bool) -> list[tuple[str, float]]:
    """Split a change ``current -> new`` into ``[("auto", rate)]``, ``[("proposal", rate)]`` or both.

    An automatic step always comes first; a proposal's rate is the full ``new``.
    """
    ap = policy["approval"]
    if critical and ap["critical_signals"]:
        return [("proposal", new)]
    if new < current:
        return [("proposal", new)] if ap["decrease"] else [("auto", new)]
    step = new / current - 1.0
    limit = ap["increase_above"]
    if step <= limit + 1e-12:
        return [("auto", new)]
    if ap["split_large_increases"] and limit > 0:
        part = math.floor(current * (1.0 + limit) * 1e10) / 1e10  # tidy, never above the automatic limit
        return [("auto", part), ("proposal", new)]
    return [("proposal", new)]
