"""Position limits and open-interest caps, checked before an order is accepted.

* **Position limit** (per account, per instrument): the absolute position
  after the order may not exceed ``position_limits[instrument]`` contracts.
* **OI cap** (per instrument, venue-wide): an order that *opens* exposure
  adds ``|q_after| - |q_before|`` contracts to open interest; the open
  interest after the order may not exceed ``oi_caps[instrument]``. The caps
  can be set from the calibration's OI rule with :func:`oi_caps_from_adv`
  (``k_upper x ADV``, :func:`margincal.margin.size_rules.oi_caps_from_liquidity`).

Orders that only reduce a position are always accepted (they lower risk).
A refused order names the limit, the instrument, the value and the cap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from margincal.errors import ConfigError
from margincal.margin.size_rules import oi_caps_from_liquidity


@dataclass(frozen=True)
class Limits:
    """Limits in contracts: ``position_limits`` per account, ``oi_caps`` and current ``open_interest`` per instrument."""

    position_limits: Mapping[str, float] = field(default_factory=dict)
    oi_caps: Mapping[str, float] = field(default_factory=dict)
    open_interest: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what in ("position_limits", "oi_caps", "open_interest"):
            for k, v in getattr(self, what).items():
                if not (math.isfinite(float(v)) and float(v) >= 0):
                    raise ConfigError(f"{what}[{k!r}] is {v}; limits must be finite and >= 0")


@dataclass(frozen=True)
class LimitBreach:
    """One breached limit, with a sentence that names it."""

    limit: str
    instrument: str
    value: float
    cap: float
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_order(positions: Mapping[str, float], order: Mapping[str, float], limits: Limits) -> list[LimitBreach]:
    """Breaches of ``limits`` if ``order`` (``{instrument: signed contracts}``) is added to ``positions``."""
    out: list[LimitBreach] = []
    for name, dq in order.items():
        before = float(positions.get(name, 0.0))
        after = before + float(dq)
        opened = abs(after) - abs(before)
        if opened <= 0:
            continue  # reduces (or keeps) exposure: always allowed
        if name in limits.position_limits and abs(after) > float(limits.position_limits[name]):
            cap = float(limits.position_limits[name])
            out.append(LimitBreach("position_limit", name, abs(after), cap,
                                   f"position limit on {name}: |position| would be {abs(after):,.6g} contracts, "
                                   f"above the account limit of {cap:,.6g}"))
        if name in limits.oi_caps:
            cap = float(limits.oi_caps[name])
            oi = float(limits.open_interest.get(name, 0.0)) + opened
            if oi > cap:
                out.append(LimitBreach("oi_cap", name, oi, cap,
                                       f"open-interest cap on {name}: open interest would be {oi:,.6g} contracts, "
                                       f"above the cap of {cap:,.6g}"))
    return out


def oi_caps_from_adv(adv_contracts: Mapping[str, float], **kwargs: float) -> dict[str, float]:
    """Hard OI caps ``k_upper x ADV`` per instrument from the calibration's OI rule (size_rules)."""
    return {k: oi_caps_from_liquidity(float(v), **kwargs)[1] for k, v in adv_contracts.items()}


__all__ = ["LimitBreach", "Limits", "check_order", "oi_caps_from_adv"]
