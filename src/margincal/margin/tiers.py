"""Size tiers ("brackets"): leverage falls and maintenance rate rises with position notional.

A :class:`TierSchedule` is a list of :class:`Tier` (``lower`` notional bound,
``max_leverage``, ``maintenance_rate``), sorted by ``lower`` with the first at
0. Tier ``k`` covers notionals ``[lower_k, lower_{k+1})``.

Maintenance margin (the exchanges' "tax bracket" rule, e.g. Binance ``cum``)::

    amount_0 = 0
    amount_k = amount_{k-1} + lower_k * (rate_k - rate_{k-1})
    MM(N)    = N * rate_k - amount_k          for N in tier k

so MM is continuous at every boundary and equals charging each slice of the
notional at its own tier's rate. With Binance's BTCUSDT table (tests/reference/
binance_btcusdt_brackets.*) the amounts reproduce the published ``cum``
column exactly.

Initial margin is made continuous the same way with ``im_rate_k =
1 / max_leverage_k`` (cumulative IM amounts ``im_amount_k = im_amount_{k-1} +
lower_k * (im_rate_k - im_rate_{k-1})``). ``initial_margin(N,
continuous=False)`` gives the exchanges' step rule ``N / max_leverage_k``
instead (what Binance charges at the bracket's maximum leverage).

Everything is vectorised over numpy arrays of notionals (``np.searchsorted``
for the tier lookup); ``*_reference`` functions are the plain loops tests
compare against. Negative notionals (short positions) use their absolute value.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from margincal.errors import CalibrationError, ConfigError
from margincal.margin.rounding import ceil_to_increment


class SizeCurve(Protocol):
    """What :meth:`TierSchedule.from_size_curve` reads of a calibration
    (:class:`margincal.margin.calibration.Calibration` is one; typed structurally so that tiers,
    which calibration builds on, does not import it back)."""

    @property
    def instrument(self) -> str | None: ...

    @property
    def rounding(self) -> float: ...

    def im_at(self, notional: Any, *, rounded: bool = True) -> Any: ...

    def mm_at(self, notional: Any, *, rounded: bool = True) -> Any: ...


@dataclass(frozen=True)
class Tier:
    """One size tier: from ``lower`` notional up, at most ``max_leverage``, maintenance ``maintenance_rate``."""

    lower: float
    max_leverage: float
    maintenance_rate: float

    def __post_init__(self) -> None:
        if not (self.lower >= 0 and math.isfinite(self.lower)):
            raise ConfigError(f"tier lower bound is {self.lower}; it must be a finite notional >= 0")
        if not (self.max_leverage >= 1 and math.isfinite(self.max_leverage)):
            raise ConfigError(f"tier at {self.lower:g}: max_leverage is {self.max_leverage}; it must be >= 1")
        if not (0 < self.maintenance_rate <= 1):
            raise ConfigError(
                f"tier at {self.lower:g}: maintenance_rate is {self.maintenance_rate}; it must be in (0, 1]")
        if self.maintenance_rate > 1.0 / self.max_leverage + 1e-12:
            raise ConfigError(
                f"tier at {self.lower:g}: maintenance_rate {self.maintenance_rate} exceeds the initial rate "
                f"1/max_leverage = {1.0 / self.max_leverage:.6g}; maintenance must not exceed initial margin")

    @property
    def im_rate(self) -> float:
        return 1.0 / self.max_leverage


def cumulative_amounts(lowers: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """``amount_k = amount_{k-1} + lower_k * (rate_k - rate_{k-1})``, ``amount_0 = 0`` (vectorised)."""
    lowers = np.asarray(lowers, dtype=float)
    rates = np.asarray(rates, dtype=float)
    steps = np.concatenate([[0.0], lowers[1:] * np.diff(rates)])
    return np.cumsum(steps)


def cumulative_amounts_reference(lowers: Sequence[float], rates: Sequence[float]) -> list[float]:
    """Loop version of :func:`cumulative_amounts`."""
    out = [0.0]
    for k in range(1, len(lowers)):
        out.append(out[-1] + lowers[k] * (rates[k] - rates[k - 1]))
    return out


@dataclass(frozen=True)
class TierSchedule:
    """Validated, sorted list of tiers with vectorised margin functions.

    ``max_notional`` (optional) is the cap of the last tier; notionals above it
    are priced with the last tier (the caller decides whether to reject them:
    :meth:`within_cap`).

    ``cap_inclusive``: which tier a notional exactly on a boundary belongs to. False (this project's
    brackets, Hyperliquid's ``lowerBound``): ``lower_k <= N < lower_{k+1}``, the upper tier. True
    (Binance "Position <= cap", Bybit's ``riskLimitValue``, OKX's ``maxSz``): ``lower_k < N <= lower_{k+1}``,
    the lower tier. Only ``N / max_leverage`` (``continuous=False``) differs: the cumulative-deduction
    amounts are continuous at every boundary.

    ``whole_position``: the tier's rates apply to the whole position, with no deduction (OKX's position
    tiers: "the required maintenance margin rate for the position"), so MM jumps at each cap; False (the
    default, Binance / Bybit / Hyperliquid and this project): the slice-by-slice rule with the amounts below.
    """

    tiers: tuple[Tier, ...]
    max_notional: float | None = None
    source: dict[str, Any] = field(default_factory=dict)
    cap_inclusive: bool = False
    whole_position: bool = False

    def __init__(self, tiers: Iterable[Tier], max_notional: float | None = None,
                 source: dict[str, Any] | None = None, *, cap_inclusive: bool = False,
                 whole_position: bool = False) -> None:
        ts = tuple(tiers)
        object.__setattr__(self, "tiers", ts)
        object.__setattr__(self, "max_notional", None if max_notional is None else float(max_notional))
        object.__setattr__(self, "source", dict(source or {}))
        object.__setattr__(self, "cap_inclusive", bool(cap_inclusive))
        object.__setattr__(self, "whole_position", bool(whole_position))
        self._validate()

    def _validate(self) -> None:
        ts = self.tiers
        if not ts:
            raise ConfigError("a tier schedule needs at least one tier")
        if any(not isinstance(t, Tier) for t in ts):
            raise ConfigError("TierSchedule takes Tier objects")
        if ts[0].lower != 0:
            raise ConfigError(f"tier 1 lower bound is {ts[0].lower:g}; the first tier must start at notional 0")
        for k in range(1, len(ts)):
            a, b = ts[k - 1], ts[k]
            if not b.lower > a.lower:
                raise ConfigError(
                    f"tiers must be sorted by lower bound: tier {k + 1} starts at {b.lower:g}, "
                    f"not above tier {k} at {a.lower:g}")
            if b.max_leverage > a.max_leverage:
                raise ConfigError(
                    f"max_leverage must be non-increasing with size: tier {k + 1} has {b.max_leverage:g}x "
                    f"> tier {k} {a.max_leverage:g}x")
            if b.maintenance_rate < a.maintenance_rate:
                raise ConfigError(
                    f"maintenance_rate must be non-decreasing with size: tier {k + 1} has {b.maintenance_rate:g} "
                    f"< tier {k} {a.maintenance_rate:g}")
        if self.max_notional is not None and not self.max_notional > ts[-1].lower:
            raise ConfigError(
                f"max_notional {self.max_notional:g} must be above the last tier's lower bound {ts[-1].lower:g}")

    # ------------------------------------------------------------------ arrays
    def __len__(self) -> int:
        return len(self.tiers)

    @property
    def lowers(self) -> np.ndarray:
        return np.array([t.lower for t in self.tiers])

    @property
    def uppers(self) -> list[float | None]:
        """Upper bound of each tier (next tier's lower; ``max_notional`` or None for the last)."""
        return [t.lower for t in self.tiers[1:]] + [self.max_notional]

    @property
    def max_leverages(self) -> np.ndarray:
        return np.array([t.max_leverage for t in self.tiers])

    @property
    def im_rates(self) -> np.ndarray:
        return 1.0 / self.max_leverages

    @property
    def mm_rates(self) -> np.ndarray:
        return np.array([t.maintenance_rate for t in self.tiers])

    @property
    def maintenance_amounts(self) -> np.ndarray:
        """Cumulative maintenance deductions (Binance's ``cum``): see module doc; zeros when ``whole_position``."""
        if self.whole_position:
            return np.zeros(len(self.tiers))
        return cumulative_amounts(self.lowers, self.mm_rates)

    @property
    def initial_amounts(self) -> np.ndarray:
        """Cumulative initial-margin deductions with ``im_rate_k = 1 / max_leverage_k``; zeros when
        ``whole_position``."""
        if self.whole_position:
            return np.zeros(len(self.tiers))
        return cumulative_amounts(self.lowers, self.im_rates)

    # --------------------------------------------------------------- lookups
    def _tier(self, n: np.ndarray) -> np.ndarray:
        if self.cap_inclusive:  # lower_k < N <= lower_{k+1}; N = 0 is in the first tier
            return np.maximum(np.searchsorted(self.lowers, n, side="left") - 1, 0)
        return np.searchsorted(self.lowers, n, side="right") - 1

    def tier_index(self, notional: object) -> np.ndarray | int:
        """0-based tier of each notional (``lower_k <= |N| < lower_{k+1}``; ``<`` / ``<=`` with ``cap_inclusive``)."""
        n = np.abs(np.asarray(notional, dtype=float))
        if np.isnan(n).any():
            raise ConfigError("notional is NaN")
        k = self._tier(n)
        return int(k) if np.ndim(k) == 0 else k

    def within_cap(self, notional: object) -> np.ndarray | bool:
        n = np.abs(np.asarray(notional, dtype=float))
        out = np.ones_like(n, dtype=bool) if self.max_notional is None else n <= self.max_notional
        return bool(out) if np.ndim(out) == 0 else out

    def maintenance_margin(self, notional: object) -> np.ndarray | float:
        """``N * rate_k - amount_k`` (quote currency), vectorised."""
        n = np.abs(np.asarray(notional, dtype=float))
        k = self._tier(n)
        out = n * self.mm_rates[k] - self.maintenance_amounts[k]
        return float(out) if np.ndim(out) == 0 else out

    def initial_margin(self, notional: object, *, continuous: bool = True) -> np.ndarray | float:
        """Initial margin (quote currency): continuous bracket rule, or ``N / max_leverage_k`` when not."""
        n = np.abs(np.asarray(notional, dtype=float))
        k = self._tier(n)
        out = n * self.im_rates[k] - (self.initial_amounts[k] if continuous else 0.0)
        return float(out) if np.ndim(out) == 0 else out

    def maintenance_rate(self, notional: object) -> np.ndarray | float:
        """Effective maintenance rate ``MM(N) / N`` (tier-1 rate at N = 0)."""
        return _rate(self.maintenance_margin, notional, self.mm_rates[0])

    def initial_rate(self, notional: object, *, continuous: bool = True) -> np.ndarray | float:
        """Effective initial rate ``IM(N) / N`` (tier-1 rate at N = 0)."""
        return _rate(lambda x: self.initial_margin(x, continuous=continuous), notional, self.im_rates[0])

    # ---------------------------------------------------------------- export
    def to_frame(self) -> pd.DataFrame:
        """Exchange-style bracket table (one row per tier)."""
        return pd.DataFrame({
            "bracket": np.arange(1, len(self) + 1),
            "notional_floor": self.lowers,
            "notional_cap": [np.nan if u is None else u for u in self.uppers],
            "max_leverage": self.max_leverages,
            "initial_margin_rate": self.im_rates,
            "maintenance_margin_rate": self.mm_rates,
            "maintenance_amount": self.maintenance_amounts,
            "initial_amount": self.initial_amounts,
        })

    def to_details(self) -> list[dict[str, Any]]:
        """List of dicts for ``InstrumentParams.details['tiers']`` (the keys ``ParameterSet.to_csv`` reads)."""
        mm_amt, im_amt = self.maintenance_amounts, self.initial_amounts
        return [
            {"lower": float(t.lower), "upper": None if u is None else float(u),
             "max_leverage": float(t.max_leverage), "im_rate": float(t.im_rate), "mm_rate": float(t.maintenance_rate),
             "maintenance_amount": float(mm_amt[i]), "initial_amount": float(im_amt[i])}
            for i, (t, u) in enumerate(zip(self.tiers, self.uppers, strict=True))
        ]

    @classmethod
    def from_details(cls, rows: Sequence[dict[str, Any]], *, cap_inclusive: bool = False,
                     whole_position: bool = False) -> TierSchedule:
        """Inverse of :meth:`to_details` (as stored in a published ParameterSet; the boundary rule is
        ``details["cap_inclusive"]`` beside the tiers)."""
        if not rows:
            raise ConfigError("no tiers in details")
        tiers = [Tier(float(r["lower"]), float(r["max_leverage"]), float(r["mm_rate"])) for r in rows]
        last_upper = rows[-1].get("upper")
        return cls(tiers, max_notional=None if last_upper in (None, "") else float(last_upper),
                   cap_inclusive=cap_inclusive, whole_position=whole_position)

    # --------------------------------------------------------------- loaders
    @classmethod
    def from_brackets(cls, table: pd.DataFrame | str | Path | Sequence[dict[str, Any]], *,
                      check_cum: bool = True, tol: float = 1e-6, cap_inclusive: bool | None = None) -> TierSchedule:
        """Load a published bracket table.

        Accepts a DataFrame, a CSV/JSON path, CSV text, or a list of dicts, with
        Binance's column names (``notionalFloor, notionalCap, initialLeverage,
        maintMarginRatio, cum``; a Binance ``leverageBracket`` JSON response with
        a ``brackets`` list works too) or this project's export names
        (``notional_floor, notional_cap, max_leverage, maintenance_margin_rate,
        maintenance_amount``). When a cumulative-amount column is present and
        ``check_cum`` is true, the recomputed amounts must match it (relative
        ``tol``) or :class:`ConfigError` names the first bracket that differs.
        ``cap_inclusive`` (default: True for Binance's column names, whose caps are inclusive, False for this
        project's) says which bracket a notional exactly on a cap belongs to.
        """
        df = _as_frame(table)
        aliases = {
            "lower": ["notionalFloor", "notional_floor", "lower", "qtyFloor", "qtylFloor"],
            "upper": ["notionalCap", "notional_cap", "upper", "qtyCap"],
            "lev": ["initialLeverage", "max_leverage", "maxLeverage"],
            "mmr": ["maintMarginRatio", "maintenance_margin_rate", "mm_rate", "maintenance_rate"],
            "cum": ["cum", "maintenance_amount", "maintAmount"],
        }
        cols: dict[str, str | None] = {}
        for key, names in aliases.items():
            cols[key] = next((c for c in names if c in df.columns), None)
        for key in ("lower", "lev", "mmr"):
            if cols[key] is None:
                raise ConfigError(
                    f"bracket table lacks a {key!r} column (one of {', '.join(aliases[key])}); "
                    f"it has {', '.join(map(str, df.columns))}")
        df = df.copy()
        for c in cols.values():
            if c is not None:
                df[c] = pd.to_numeric(df[c], errors="raise")
        df = df.sort_values(cols["lower"]).reset_index(drop=True)
        tiers = [Tier(float(r[cols["lower"]]), float(r[cols["lev"]]), float(r[cols["mmr"]]))
                 for _, r in df.iterrows()]
        max_notional = None
        if cols["upper"] is not None:
            uppers = df[cols["upper"]].to_numpy(float)
            lowers = df[cols["lower"]].to_numpy(float)
            gaps = np.flatnonzero(np.abs(uppers[:-1] - lowers[1:]) > tol * np.maximum(1.0, lowers[1:]))
            if gaps.size:
                i = int(gaps[0])
                raise ConfigError(
                    f"bracket {i + 1} cap {uppers[i]:g} != bracket {i + 2} floor {lowers[i + 1]:g}; "
                    "brackets must be contiguous")
            max_notional = float(uppers[-1]) if np.isfinite(uppers[-1]) else None
        if cap_inclusive is None:
            cap_inclusive = cols["upper"] in ("notionalCap", "qtyCap")
        sched = cls(tiers, max_notional=max_notional, source={"columns": {k: v for k, v in cols.items() if v}},
                    cap_inclusive=cap_inclusive)
        if check_cum and cols["cum"] is not None:
            published = df[cols["cum"]].to_numpy(float)
            ours = sched.maintenance_amounts
            bad = np.flatnonzero(np.abs(ours - published) > tol * np.maximum(1.0, np.abs(published)))
            if bad.size:
                i = int(bad[0])
                raise ConfigError(
                    f"bracket {i + 1}: published maintenance amount (cum) is {published[i]:g} but the tiers give "
                    f"{ours[i]:g}; amount_k = amount_(k-1) + lower_k * (rate_k - rate_(k-1))")
        return sched

    @classmethod
    def from_size_curve(cls, calibration: SizeCurve, boundaries: Sequence[float], *,
                        max_leverage_cap: float = 125.0, convention: str = "marginal",
                        rounding: float | None = None) -> TierSchedule:
        """Tiers from a calibrated size curve (IM and MM as functions of notional).

        ``boundaries`` are the tier caps ``c_1 < c_2 < ... < c_K`` (tier k covers
        ``[c_{k-1}, c_k)``, ``c_0 = 0``; ``c_K`` becomes ``max_notional``). With
        ``IM(c)``, ``MM(c)`` the calibrated rates at notional c (liquidity add-on
        included, :meth:`Calibration.im_at`):

        * ``convention="average"`` (the literal rule): tier rate ``r_k = IM(c_k)``,
          ``max_leverage_k = floor(1 / r_k)`` bounded to ``[1, max_leverage_cap]``,
          ``maintenance_k = MM(c_k)`` (= ``mm_fraction * IM`` floored at the
          liquidation cost). Each tier's step rate covers every size in it, but the
          *continuous* (bracket) margin charges lower slices at lower rates, so it
          can fall below ``N * IM(N)``.
        * ``convention="marginal"`` (default): rates are the marginal rates of the
          total-margin curve, ``r_k = (c_k IM(c_k) - c_{k-1} IM(c_{k-1})) /
          (c_k - c_{k-1})`` (same for MM), so the continuous bracket margin equals
          the calibrated total ``c_k * IM(c_k)`` at every cap (and is above it in
          between when the total is convex, as with square-root impact).

        Rates are rounded UP to ``rounding`` (default: the calibration's), leverage
        is forced non-increasing and maintenance non-decreasing, and maintenance
        never exceeds ``1 / max_leverage``.
        """
        inc = calibration.rounding if rounding is None else rounding
        caps = _check_caps(boundaries)
        sched = brackets_from_curve(
            caps, lambda n: calibration.im_at(n, rounded=False), lambda n: calibration.mm_at(n, rounded=False),
            convention=convention, rounding=inc, max_leverage_cap=max_leverage_cap)
        return cls(sched.tiers, max_notional=sched.max_notional,
                   source={"from": "size_curve", "convention": convention, "boundaries": caps.tolist(),
                           "instrument": calibration.instrument, "rounding": inc,
                           "max_leverage_cap": max_leverage_cap})


def _check_caps(boundaries: Sequence[float] | np.ndarray) -> np.ndarray:
    caps = np.asarray(boundaries, dtype=float)
    if caps.ndim != 1 or caps.size == 0:
        raise ConfigError("boundaries must be a non-empty list of tier caps (notional)")
    if not np.all(np.isfinite(caps)) or np.any(caps <= 0) or np.any(np.diff(caps) <= 0):
        raise ConfigError(f"boundaries must be finite, > 0 and strictly increasing, got {caps.tolist()}")
    return caps


def geometric_boundaries(first_cap: float, last_cap: float, per_decade: int = 2) -> np.ndarray:
    """Tier caps on a 1-2-5 style geometric grid from ``first_cap`` to ``last_cap`` (inclusive, rounded).

    ``per_decade`` caps per factor of ten (1: 1e5, 1e6...; 2: 1e5, ~3e5, 1e6...; 3: 1e5, 2e5, 5e5, 1e6...).
    """
    if not (0 < first_cap < last_cap) or not math.isfinite(last_cap):
        raise ConfigError(f"need 0 < first_cap < last_cap, got {first_cap}, {last_cap}")
    if per_decade < 1:
        raise ConfigError(f"per_decade is {per_decade}; it must be >= 1")
    mant = {1: [1.0], 2: [1.0, 3.0], 3: [1.0, 2.0, 5.0]}.get(per_decade)
    if mant is None:
        mant = [10 ** (i / per_decade) for i in range(per_decade)]
    lo, hi = math.floor(math.log10(first_cap)), math.ceil(math.log10(last_cap))
    grid = np.array(sorted({m * 10.0**e for e in range(lo, hi + 1) for m in mant}))
    grid = grid[(grid >= first_cap * (1 - 1e-12)) & (grid <= last_cap * (1 + 1e-12))]
    if grid.size == 0 or grid[-1] < last_cap * (1 - 1e-12):
        grid = np.append(grid, last_cap)
    return grid


def brackets_from_curve(boundaries: Sequence[float] | np.ndarray, im_rate: Callable[[np.ndarray], Any],
                        mm_rate: Callable[[np.ndarray], Any], *, convention: str = "marginal",
                        rounding: float = 0.0001, max_leverage_cap: float = 125.0,
                        leverage_grid: Sequence[float] | None = None) -> TierSchedule:
    """Exchange-style brackets from a margin curve (IM and MM rates as functions of notional).

    ``boundaries`` are the tier caps ``c_1 < ... < c_K`` (tier k covers
    ``[c_{k-1}, c_k)``, ``c_0 = 0``; ``c_K`` becomes ``max_notional``);
    ``im_rate(N)`` / ``mm_rate(N)`` return fractions of notional (e.g.
    :meth:`margincal.margin.horizon.MarginCurve.rate_functions`).

    * ``convention="marginal"`` (default): the tier rate is the marginal rate
      of the total margin ``T(N) = N * rate(N)`` between caps,
      ``r_k = (T(c_k) - T(c_{k-1})) / (c_k - c_{k-1})``, so the bracket margin
      (cumulative-deduction form, continuous at every boundary) equals the
      curve's total at every cap;
    * ``convention="average"``: ``r_k = rate(c_k)`` (each tier's step rate
      covers every size in it).

    Then: ``max_leverage_k = floor(1 / r_im_k)`` on the integer grid (or the largest value of
    ``leverage_grid`` not above it), bounded to ``[1, max_leverage_cap]`` and
    made non-increasing (the IM rate is ``1 / max_leverage_k``); MM rates are
    rounded UP to ``rounding``, made non-decreasing and never above
    ``1 / max_leverage_k``. Maintenance amounts follow Binance's rule
    ``amount_k = amount_{k-1} + lower_k * (mmr_k - mmr_{k-1})``
    (:attr:`TierSchedule.maintenance_amounts`).
    """
    caps = _check_caps(boundaries)
    if max_leverage_cap < 1:
        raise ConfigError(f"max_leverage_cap is {max_leverage_cap}; it must be >= 1")
    if not rounding > 0:
        raise ConfigError(f"rounding is {rounding}; it must be > 0")
    im = np.asarray(im_rate(caps), dtype=float).reshape(caps.shape)
    mm = np.asarray(mm_rate(caps), dtype=float).reshape(caps.shape)
    for name, a in (("im_rate", im), ("mm_rate", mm)):
        if not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise ConfigError(f"{name} must return finite rates > 0 at every cap")
    if convention == "average":
        r_im, r_mm = im, mm
    elif convention == "marginal":
        prev = np.concatenate([[0.0], caps[:-1]])
        r_im = np.diff(np.concatenate([[0.0], caps * im])) / (caps - prev)
        r_mm = np.diff(np.concatenate([[0.0], caps * mm])) / (caps - prev)
    else:
        raise ConfigError(f"convention is {convention!r}; use 'marginal' or 'average'")
    # leverage from the unrounded IM rate: the published IM rate is 1 / max_leverage >= r_im anyway
    r_im = np.maximum.accumulate(np.minimum(r_im, 1.0))
    lev = np.clip(np.floor(1.0 / r_im + 1e-9), 1.0, max_leverage_cap)
    if leverage_grid is not None:
        g = np.sort(np.asarray(leverage_grid, dtype=float))
        if g.size == 0 or g[0] < 1:
            raise ConfigError("leverage_grid must hold leverages >= 1")
        idx = np.searchsorted(g, lev, side="right") - 1
        lev = np.where(idx >= 0, g[np.clip(idx, 0, g.size - 1)], 1.0)
    lev = np.minimum.accumulate(lev)
    r_mm = np.maximum.accumulate(np.minimum(ceil_to_increment(r_mm, rounding), 1.0))
    r_mm = np.minimum(r_mm, 1.0 / lev)
    r_mm = np.maximum.accumulate(r_mm)
    if np.any(r_mm > 1.0 / lev + 1e-12):  # the cap of an earlier tier can exceed a later tier's 1/lev
        raise CalibrationError("maintenance rates cannot stay non-decreasing below 1/max_leverage; "
                               "lower the curve's MM/IM ratio (im_gap) or use fewer tiers")
    lowers = np.concatenate([[0.0], caps[:-1]])
    tiers = [Tier(float(lo), float(lv), float(m)) for lo, lv, m in zip(lowers, lev, r_mm, strict=True)]
    return TierSchedule(tiers, max_notional=float(caps[-1]),
                        source={"from": "curve", "convention": convention, "boundaries": caps.tolist(),
                                "rounding": rounding, "max_leverage_cap": max_leverage_cap})


def bracket_coverage(schedule: TierSchedule, rate: Callable[[np.ndarray], Any], notional: object, *,
                     which: str = "mm") -> np.ndarray:
    """Bracket margin divided by the curve's margin ``N * rate(N)`` at each notional (>= 1 means covered)."""
    n = np.abs(np.asarray(notional, dtype=float))
    curve = n * np.asarray(rate(n), dtype=float)
    if which == "mm":
        br = np.asarray(schedule.maintenance_margin(n), dtype=float)
    elif which == "im":
        br = np.asarray(schedule.initial_margin(n), dtype=float)
    else:
        raise ConfigError(f"which is {which!r}; use 'mm' or 'im'")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(curve > 0, br / np.where(curve > 0, curve, 1.0), np.inf)


def _rate(fn: Any, notional: object, at_zero: float) -> np.ndarray | float:
    n = np.abs(np.asarray(notional, dtype=float))
    m = np.asarray(fn(n), dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(n > 0, m / np.where(n > 0, n, 1.0), at_zero)
    return float(out) if np.ndim(out) == 0 else out


def _as_frame(table: Any) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table
    if isinstance(table, (list, tuple)):
        rows = list(table)
        if rows and isinstance(rows[0], dict) and "brackets" in rows[0]:
            rows = rows[0]["brackets"]
        return pd.DataFrame(rows)
    if isinstance(table, dict) and "brackets" in table:
        return pd.DataFrame(table["brackets"])
    if isinstance(table, Path) or (isinstance(table, str) and "\n" not in table and Path(table).exists()):
        p = Path(table)
        text = p.read_text()
        if p.suffix.lower() == ".json":
            return _as_frame(json.loads(text))
        return pd.read_csv(io.StringIO(text))
    if isinstance(table, str):
        s = table.lstrip()
        if s.startswith("[") or s.startswith("{"):
            return _as_frame(json.loads(s))
        return pd.read_csv(io.StringIO(table))
    raise ConfigError(f"cannot read a bracket table from {type(table).__name__}")


def _slice_reference(schedule: TierSchedule, notional: float, rate: Callable[[Tier], float]) -> float:
    """Slice-by-slice (tax bracket) margin of one notional: each tier's slice at that tier's rate."""
    n = abs(float(notional))
    total, lowers = 0.0, [t.lower for t in schedule.tiers] + [math.inf]
    for k, t in enumerate(schedule.tiers):
        lo, hi = lowers[k], lowers[k + 1]
        if n <= lo:
            break
        total += (min(n, hi) - lo) * rate(t)
    return total


def maintenance_margin_reference(schedule: TierSchedule, notional: float) -> float:
    """Slice-by-slice maintenance margin of one notional (for tests)."""
    return _slice_reference(schedule, notional, lambda t: t.maintenance_rate)


def initial_margin_reference(schedule: TierSchedule, notional: float) -> float:
    """Slice-by-slice continuous initial margin of one notional (for tests)."""
    return _slice_reference(schedule, notional, lambda t: t.im_rate)
