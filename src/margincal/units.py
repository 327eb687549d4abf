"""A decay with its unit: ``Decay(per_day=0.94)``, ``Decay(half_life_hours=11.2)``, ``Decay(per_bar=0.97)``.

An exponential weight ``w_k = lam^k`` on the observation ``k`` bars back only
means something together with the bar spacing: RiskMetrics' 0.94 is a decay
per *day*; on hourly bars the same memory is ``0.94 ** (1 / 24)`` per bar. A
bare float therefore cannot say which one it is, and every model of
:mod:`margincal.risk` refuses it (:class:`~margincal.errors.ConfigError`); it
takes a :class:`Decay` and converts it to the bar spacing of the data it is
fitted on:

* ``Decay(per_day=d)`` -> per bar ``d ** (bar_hours / 24)``;
* ``Decay(half_life_hours=H)`` -> per bar ``0.5 ** (bar_hours / H)`` (weights halve every ``H`` hours);
* ``Decay(per_bar=l)`` -> ``l`` whatever the spacing (what older code meant by ``lam=``).

Shells (CLI options, config files, :class:`margincal.config.CalibrationSettings`
``ewma_lambda``) hold a per-day number and build ``Decay(per_day=...)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from margincal.errors import ConfigError


@dataclass(frozen=True)
class Decay:
    """EWMA decay with its unit; give exactly one of ``per_day``, ``half_life_hours``, ``per_bar``."""

    per_day: float | None = None
    half_life_hours: float | None = None
    per_bar: float | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("per_day", "half_life_hours", "per_bar") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError("Decay needs exactly one of per_day=, half_life_hours=, per_bar= "
                              f"(got {', '.join(given) or 'none'})")
        v = getattr(self, given[0])
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise ConfigError(f"Decay {given[0]} is {v!r}; it must be a finite number")
        if given[0] == "half_life_hours":
            if not v > 0:
                raise ConfigError(f"Decay half_life_hours is {v}; it must be > 0")
        elif not 0.0 < v < 1.0:
            raise ConfigError(f"Decay {given[0]} is {v}; a decay factor must be in (0, 1)")

    def for_bars(self, bar_hours: float) -> float:
        """The decay per bar of ``bar_hours`` hours."""
        if self.per_bar is not None:
            return float(self.per_bar)
        if not (bar_hours > 0 and math.isfinite(bar_hours)):
            raise ConfigError(f"bar_hours is {bar_hours}; it must be > 0")
        if self.per_day is not None:
            return float(self.per_day ** (bar_hours / 24.0))
        assert self.half_life_hours is not None
        return float(0.5 ** (bar_hours / self.half_life_hours))

    @property
    def label(self) -> str:
        if self.per_day is not None:
            return f"{self.per_day:g}/day"
        if self.half_life_hours is not None:
            return f"half-life {self.half_life_hours:g}h"
        return f"{self.per_bar:g}/bar"

    def as_dict(self) -> dict[str, float]:
        """The one given field, e.g. ``{"per_day": 0.94}`` (JSON-ready provenance)."""
        return {k: float(v) for k, v in (("per_day", self.per_day), ("half_life_hours", self.half_life_hours),
                                         ("per_bar", self.per_bar)) if v is not None}

    def __repr__(self) -> str:
        k = "per_day" if self.per_day is not None else "half_life_hours" if self.half_life_hours is not None \
            else "per_bar"
        return f"Decay({k}={getattr(self, k)!r})"


#: RiskMetrics daily decay
RISKMETRICS = Decay(per_day=0.94)


def as_decay(value: object, name: str = "lam") -> Decay:
    """``value`` if it is a :class:`Decay`; a clear :class:`ConfigError` for a bare number (unit unknown)."""
    if isinstance(value, Decay):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ConfigError(
            f"{name}={value!r} is a bare number and its unit is ambiguous (per bar or per day?); pass "
            f"{name}=Decay(per_day={value!r}) (RiskMetrics convention), Decay(per_bar={value!r}) or "
            "Decay(half_life_hours=...)")
    raise ConfigError(f"{name} is {value!r}; pass a margincal.risk.Decay, e.g. Decay(per_day=0.94)")


__all__ = ["RISKMETRICS", "Decay", "as_decay"]
