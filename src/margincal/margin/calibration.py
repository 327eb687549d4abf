"""Per-instrument margin calibration: IM and MM rates from a tail model plus liquidity.

Rules (all rates are fractions of notional; losses positive)::

    IM_raw(N) = ES(level, horizon) * (1 + buffer) + liquidity_addon(N)
    MM_raw(N) = max(mm_fraction * IM_raw(N), liquidation_cost(N))
    IM, MM    = ceil_to_increment(IM_raw, rounding), ceil_to_increment(MM_raw, rounding)

* ``ES`` comes from a :mod:`margincal.risk` tail model
  (``make_model(model, **model_params).fit(returns).forecast(horizon_hours, level)``),
  the larger of the long and short side (one rate serves both).
* ``liquidity_addon(N) = liquidation_cost(N)`` is the expected cost of
  liquidating notional N (half-spread + square-root impact, or a book walk; see
  :mod:`margincal.margin.liquidity`). The single published rate uses ``N =
  reference_size``; :meth:`Calibration.im_at` gives the whole size curve.
* ``mm_fraction = 0.5`` by default. Venues publish first-tier ratios close to
  one half: Binance BTCUSDT tier 1 has IM 1/125 = 0.8% and MM 0.4% (0.5);
  Deribit BTC futures IM 2% and MM 1% (0.5); dYdX v4 Large-Cap IMF 2% and MMF
  1.2% (``maintenance_fraction_ppm`` 600000 = 0.6), older dYdX tiers IMF 5% /
  MMF 3% (0.6). Half leaves the IM-MM gap as the room the liquidation engine
  works in, and MM never drops below the cost of actually liquidating.
* Rounding goes UP to ``rounding`` (0.0005 = 5 bp by default) with the
  noise-tolerant ceiling of :mod:`margincal.margin.rounding`. IM is capped at
  1.0 (max leverage 1) with a :class:`MarginWarning` when the model asks for more.

:class:`MarginCalibrator` is the estimator; :func:`calibrate_instrument` is the
one-call form; :func:`calibrate_universe` builds a :class:`ParameterSet`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from margincal.errors import CalibrationError, ConfigError, MargincalWarning
from margincal.margin.liquidity import LiquidityModel
from margincal.margin.params import InstrumentParams, ParameterSet, new_run_id
from margincal.margin.rounding import ceil_to_increment
from margincal.margin.tiers import TierSchedule
from margincal.risk.models import TailForecast, make_model

DEFAULT_MM_FRACTION = 0.5


class MarginWarning(MargincalWarning):
    """A calibrated margin was capped or otherwise adjusted."""


@dataclass(frozen=True)
class Calibration:
    """Calibrated margin of one instrument, with the pieces and provenance that produced it."""

    instrument: str | None
    im_rate: float
    mm_rate: float
    es: float
    var: float
    sigma: float
    liquidity_addon: float
    liquidation_cost: float
    level: float
    horizon_hours: float
    buffer: float
    mm_fraction: float
    rounding: float
    reference_size: float | None = None
    im_raw: float = float("nan")
    mm_raw: float = float("nan")
    liquidity: LiquidityModel | None = None
    tiers: TierSchedule | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def max_leverage(self) -> float:
        return 1.0 / self.im_rate

    # ------------------------------------------------------------ size curve
    def _cost(self, notional: object) -> np.ndarray:
        n = np.asarray(notional, dtype=float)
        if self.liquidity is None:
            return np.zeros_like(n)
        return np.asarray(self.liquidity.cost(n), dtype=float)

    def im_at(self, notional: object, *, rounded: bool = True) -> np.ndarray | float:
        """IM rate for a position of ``notional`` (quote): ``ES (1 + buffer) + cost(N)``, vectorised."""
        raw = np.minimum(self.es * (1.0 + self.buffer) + self._cost(notional), 1.0)
        out = ceil_to_increment(raw, self.rounding) if rounded else raw
        out = np.minimum(out, 1.0)
        return float(out) if np.ndim(out) == 0 else out

    def mm_at(self, notional: object, *, rounded: bool = True) -> np.ndarray | float:
        """MM rate at ``notional``: ``max(mm_fraction * IM_raw(N), cost(N))``, never above IM."""
        im_raw = np.asarray(self.im_at(notional, rounded=False))
        raw = np.minimum(np.maximum(self.mm_fraction * im_raw, self._cost(notional)), im_raw)
        out = ceil_to_increment(raw, self.rounding) if rounded else raw
        out = np.minimum(out, np.asarray(self.im_at(notional, rounded=rounded)))
        return float(out) if np.ndim(out) == 0 else out

    def with_tiers(self, boundaries: Sequence[float], **kwargs: Any) -> Calibration:
        """Copy with a :class:`TierSchedule` generated from the size curve (see ``from_size_curve``)."""
        return dataclasses.replace(self, tiers=TierSchedule.from_size_curve(self, boundaries, **kwargs))

    # ---------------------------------------------------------------- export
    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in (
            "instrument", "im_rate", "mm_rate", "es", "var", "sigma", "liquidity_addon", "liquidation_cost",
            "level", "horizon_hours", "buffer", "mm_fraction", "rounding", "reference_size", "im_raw", "mm_raw")}
        d["liquidity"] = self.liquidity.as_dict() if self.liquidity is not None else None
        d["tiers"] = self.tiers.to_details() if self.tiers is not None else None
        d["provenance"] = self.provenance
        return d

    def to_params(self) -> InstrumentParams:
        """The :class:`InstrumentParams` row to publish (details keep the evidence and provenance)."""
        if self.instrument is None:
            raise ConfigError("calibration has no instrument name; pass instrument= to calibrate")
        details: dict[str, Any] = {
            "es": self.es, "var": self.var, "sigma": self.sigma, "liquidity_addon": self.liquidity_addon,
            "liquidation_cost": self.liquidation_cost, "level": self.level, "horizon_hours": self.horizon_hours,
            "buffer": self.buffer, "mm_fraction": self.mm_fraction, "rounding": self.rounding,
            "model": self.provenance.get("model"), "window_start": self.provenance.get("window_start"),
            "window_end": self.provenance.get("window_end"), "n_obs": self.provenance.get("n_obs"),
            "provenance": self.provenance,
        }
        if self.reference_size is not None:
            details["reference_size"] = self.reference_size
        if self.liquidity is not None:
            details["liquidity"] = self.liquidity.as_dict()
        if self.tiers is not None:
            details["tiers"] = self.tiers.to_details()
        return InstrumentParams(self.instrument, self.im_rate, self.mm_rate, details)


class MarginCalibrator:
    """Estimator: ``MarginCalibrator(model="fhs", level=0.99, ...).fit(log_returns).calibration_``.

    Parameters (keyword-only) are those of :func:`calibrate_instrument`; ``model_params``
    go to :func:`margincal.risk.models.make_model` (an EWMA decay is a
    :class:`margincal.risk.Decay`, e.g. ``{"lam": Decay(per_day=0.94)}``).
    Attributes after ``fit``: ``calibration_`` (:class:`Calibration`),
    ``forecast_`` (the :class:`~margincal.risk.models.TailForecast`), ``model_``.
    """

    def __init__(self, *, model: str = "fhs", model_params: Mapping[str, Any] | None = None,
                 level: float = 0.99, horizon_hours: float = 24.0, buffer: float = 0.0,
                 liquidity: LiquidityModel | None = None, reference_size: float | None = None,
                 mm_fraction: float = DEFAULT_MM_FRACTION, rounding: float = 0.0005,
                 instrument: str | None = None, tier_boundaries: Sequence[float] | None = None,
                 tier_convention: str = "marginal", max_leverage_cap: float = 125.0,
                 run_id: str | None = None) -> None:
        self.model = model
        self.model_params = model_params
        self.level = level
        self.horizon_hours = horizon_hours
        self.buffer = buffer
        self.liquidity = liquidity
        self.reference_size = reference_size
        self.mm_fraction = mm_fraction
        self.rounding = rounding
        self.instrument = instrument
        self.tier_boundaries = tier_boundaries
        self.tier_convention = tier_convention
        self.max_leverage_cap = max_leverage_cap
        self.run_id = run_id

    def _validate(self) -> None:
        if not isinstance(self.level, (int, float)) or not 0.5 < self.level < 1.0:
            raise ConfigError(f"level is {self.level}; it must be in (0.5, 1), e.g. 0.99")
        if not (self.horizon_hours > 0 and math.isfinite(self.horizon_hours)):
            raise ConfigError(f"horizon_hours is {self.horizon_hours}; it must be > 0")
        if not (self.buffer >= 0 and math.isfinite(self.buffer)):
            raise ConfigError(f"buffer is {self.buffer}; it must be >= 0")
        if not 0.0 < self.mm_fraction <= 1.0:
            raise ConfigError(f"mm_fraction is {self.mm_fraction}; it must be in (0, 1]")
        if not (self.rounding >= 0 and math.isfinite(self.rounding)):
            raise ConfigError(f"rounding is {self.rounding}; it must be >= 0")
        if self.reference_size is not None and not self.reference_size >= 0:
            raise ConfigError(f"reference_size is {self.reference_size}; it must be >= 0")
        if self.liquidity is not None and not isinstance(self.liquidity, LiquidityModel):
            raise ConfigError("liquidity must be a LiquidityModel (or None)")

    def fit(self, returns: ArrayLike, bar_hours: float | None = None) -> MarginCalibrator:
        """Fit the tail model on log ``returns`` and calibrate the rates."""
        self._validate()
        model = make_model(self.model, **dict(self.model_params or {}))
        model.fit(returns, bar_hours=bar_hours)
        fc = model.forecast(self.horizon_hours, self.level)
        self.model_ = model
        self.forecast_ = fc
        instrument = self.instrument or fc.instrument
        self.calibration_ = calibration_from_forecast(
            fc, buffer=self.buffer, liquidity=self.liquidity, reference_size=self.reference_size,
            mm_fraction=self.mm_fraction, rounding=self.rounding, instrument=instrument, run_id=self.run_id,
            tier_boundaries=self.tier_boundaries, tier_convention=self.tier_convention,
            max_leverage_cap=self.max_leverage_cap)
        return self


def published_rates(es: object, cost: object, *, buffer: float = 0.0, mm_fraction: float = DEFAULT_MM_FRACTION,
                    rounding: float = 0.0005, mm_es: object = None, mm_cost: object = None,
                    im_gap: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """THE published rule, vectorised: ``(im, mm, im_raw, mm_raw)`` from the tail loss and the close-out cost.

    Flat form (one horizon for every size; ``mm_es`` not given)::

        IM_raw = min(ES (1 + buffer) + cost, 1)
        MM_raw = min(max(mm_fraction IM_raw, cost), IM_raw)

    Size-dependent form (margin v2, issue 15; ``mm_es`` given): ``es``/``cost`` are the tail loss and
    close-out cost over the IM horizon ``H_IM(N)``, ``mm_es``/``mm_cost`` those over the MM horizon
    ``H_MM(N)`` (:mod:`margincal.margin.horizon`)::

        MM_raw = min(mm_es + mm_cost, 1)
        IM_raw = min(max(es (1 + buffer) + cost, (1 + im_gap) MM_raw), 1)

    and, for 2-D inputs (time x size tier, tiers by increasing notional), both are made
    non-decreasing along the size axis (a larger position never gets a lower rate).
    Then ``IM = min(ceil(IM_raw, rounding), 1)``; ``MM = min(ceil(MM_raw, rounding), IM)``.

    The frozen calibration (:func:`calibration_from_forecast`, :func:`margincal.margin.published.calibrate_bars`)
    and the causal history that the backtest replays (:func:`margincal.margin.published.published_path`,
    :func:`margincal.margin.published.published_curve_path`) all call this function. NaN in, NaN out.
    """
    e = np.asarray(es, dtype=float)
    c = np.asarray(cost, dtype=float)
    with np.errstate(invalid="ignore"):
        if mm_es is None:
            im_raw = np.minimum(e * (1.0 + buffer) + c, 1.0)
            mm_raw = np.minimum(np.maximum(mm_fraction * im_raw, c), im_raw)
        else:
            gap = 0.5 if im_gap is None else float(im_gap)
            if not (gap >= 0 and math.isfinite(gap)):
                raise ConfigError(f"im_gap is {im_gap}; it must be >= 0")
            me = np.asarray(mm_es, dtype=float)
            mc = np.asarray(0.0 if mm_cost is None else mm_cost, dtype=float)
            mm_raw = np.minimum(me + mc, 1.0)
            im_raw = np.minimum(np.maximum(e * (1.0 + buffer) + c, (1.0 + gap) * mm_raw), 1.0)
            if mm_raw.ndim == 2:
                mm_raw = np.fmax.accumulate(mm_raw, axis=1)
                im_raw = np.fmax.accumulate(im_raw, axis=1)
        im = np.minimum(np.asarray(ceil_to_increment(im_raw, rounding), dtype=float), 1.0)
        mm = np.minimum(np.asarray(ceil_to_increment(mm_raw, rounding), dtype=float), im)
    return im, mm, im_raw, mm_raw


def calibration_from_forecast(forecast: TailForecast, *, buffer: float = 0.0,
                              liquidity: LiquidityModel | None = None, reference_size: float | None = None,
                              mm_fraction: float = DEFAULT_MM_FRACTION, rounding: float = 0.0005,
                              instrument: str | None = None, run_id: str | None = None,
                              tier_boundaries: Sequence[float] | None = None, tier_convention: str = "marginal",
                              max_leverage_cap: float = 125.0) -> Calibration:
    """Apply the margin rules to an existing tail forecast (see module doc)."""
    if not (np.isfinite(forecast.es) and forecast.es > 0):
        raise CalibrationError(f"{instrument or forecast.instrument}: ES is {forecast.es}; it must be > 0")
    ref = reference_size if reference_size is not None else (liquidity.reference_size if liquidity else None)
    if liquidity is None:
        cost = 0.0
    elif ref is None:
        cost = float(liquidity.effective_half_spread)
    else:
        cost = float(liquidity.cost(ref))
    if forecast.es * (1.0 + buffer) + cost > 1.0:
        warnings.warn(f"{instrument}: calibrated IM {forecast.es * (1.0 + buffer) + cost:.4f} exceeds 100% of "
                      "notional; capped at 1.0", MarginWarning, stacklevel=3)
    im_a, mm_a, im_raw_a, mm_raw_a = published_rates(forecast.es, cost, buffer=buffer, mm_fraction=mm_fraction,
                                                     rounding=rounding)
    im, mm, im_raw, mm_raw = float(im_a), float(mm_a), float(im_raw_a), float(mm_raw_a)
    if liquidity is not None and ref is not None and liquidity.reference_size != ref:
        liquidity = dataclasses.replace(liquidity, reference_size=ref)
    prov = {
        "model": forecast.model, "model_params": forecast.params, "level": forecast.level,
        "horizon_hours": forecast.horizon_hours, "side": forecast.side, "n_obs": forecast.n_obs,
        "effective_n": forecast.effective_n, "window_start": forecast.window_start,
        "window_end": forecast.window_end, "instrument": instrument, "run_id": run_id or new_run_id(),
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(), "forecast_created_at": forecast.created_at,
        "rules": {"im": "ceil(ES*(1+buffer) + liquidity_addon)",
                  "mm": "ceil(max(mm_fraction*IM_raw, liquidation_cost))"},
    }
    cal = Calibration(
        instrument=instrument, im_rate=im, mm_rate=mm, es=float(forecast.es), var=float(forecast.var),
        sigma=float(forecast.sigma), liquidity_addon=cost, liquidation_cost=cost, level=float(forecast.level),
        horizon_hours=float(forecast.horizon_hours), buffer=float(buffer), mm_fraction=float(mm_fraction),
        rounding=float(rounding), reference_size=ref, im_raw=float(im_raw), mm_raw=float(mm_raw),
        liquidity=liquidity, tiers=None, provenance=prov)
    if tier_boundaries is not None:
        cal = cal.with_tiers(tier_boundaries, convention=tier_convention, max_leverage_cap=max_leverage_cap)
    return cal


def calibrate_instrument(returns: ArrayLike, *, model: str = "fhs", model_params: Mapping[str, Any] | None = None,
                         level: float = 0.99, horizon_hours: float = 24.0, buffer: float = 0.0,
                         liquidity: LiquidityModel | None = None, reference_size: float | None = None,
                         mm_fraction: float = DEFAULT_MM_FRACTION, rounding: float = 0.0005,
                         instrument: str | None = None, tier_boundaries: Sequence[float] | None = None,
                         tier_convention: str = "marginal", max_leverage_cap: float = 125.0,
                         run_id: str | None = None, bar_hours: float | None = None) -> Calibration:
    """Calibrate IM/MM of one instrument from its log returns (see module doc for the rules)."""
    return MarginCalibrator(
        model=model, model_params=model_params, level=level, horizon_hours=horizon_hours, buffer=buffer,
        liquidity=liquidity, reference_size=reference_size, mm_fraction=mm_fraction, rounding=rounding,
        instrument=instrument, tier_boundaries=tier_boundaries, tier_convention=tier_convention,
        max_leverage_cap=max_leverage_cap, run_id=run_id,
    ).fit(returns, bar_hours=bar_hours).calibration_


def calibrate_universe(returns: Mapping[str, ArrayLike], *, liquidity: Mapping[str, LiquidityModel] | None = None,
                       run_id: str | None = None, **kwargs: Any) -> tuple[ParameterSet, dict[str, Calibration]]:
    """Calibrate every instrument of ``returns`` (name -> log returns) into one :class:`ParameterSet`.

    ``kwargs`` go to :func:`calibrate_instrument` (same for every instrument);
    ``liquidity`` maps instrument -> :class:`LiquidityModel`. Returns the set
    (not yet published: pass it to :func:`margincal.margin.params.publish`) and
    the calibrations by instrument.
    """
    if not returns:
        raise ConfigError("no instruments to calibrate")
    run_id = run_id or new_run_id()
    cals: dict[str, Calibration] = {}
    for name in sorted(returns):
        liq = (liquidity or {}).get(name)
        cals[name] = calibrate_instrument(returns[name], instrument=name, liquidity=liq, run_id=run_id, **kwargs)
    first = next(iter(cals.values()))
    prov = {"run_id": run_id, "kind": "calibrate_universe", "model": first.provenance.get("model"),
            "level": first.level, "horizon_hours": first.horizon_hours, "buffer": first.buffer,
            "mm_fraction": first.mm_fraction, "rounding": first.rounding,
            "instruments": sorted(cals), "created_at": pd.Timestamp.now(tz="UTC").isoformat()}
    pset = ParameterSet(params={k: c.to_params() for k, c in cals.items()}, provenance=prov, run_id=run_id)
    return pset, cals


def bundled_example(*, reference_size: float = 1e6, half_spread: float = 0.0002,
                    tier_boundaries: Sequence[float] = (1e5, 1e6, 1e7, 5e7, 2e8)
                    ) -> tuple[ParameterSet, dict[str, Calibration]]:
    """Calibrate the 10 bundled daily coins (FHS, ES 99%, 24 h; liquidity from the last 30 daily bars)."""
    from margincal.margin._bundled import BUNDLED_DAILY, daily_bars, daily_log_returns

    returns = {f"{c.upper()}USDT": daily_log_returns(c) for c in BUNDLED_DAILY}
    liq = {f"{c.upper()}USDT": LiquidityModel.from_bars(daily_bars(c), window=30, half_spread=half_spread,
                                                        reference_size=reference_size) for c in BUNDLED_DAILY}
    return calibrate_universe(returns, liquidity=liq, tier_boundaries=list(tier_boundaries))


def main() -> int:  # pragma: no cover - prints the tables of docs/margin_calibration.md
    import time

    t0 = time.perf_counter()
    pset, cals = bundled_example()
    print("| instrument | window end | sigma 1d | ES 99% 24h | add-on @1M | IM | MM | max lev | ADV (USDT) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, c in cals.items():
        adv = c.liquidity.adv if c.liquidity else float("nan")
        print(f"| {name} | {str(c.provenance['window_end'])[:10]} | {c.sigma:.2%} | {c.es:.2%} | "
              f"{c.liquidity_addon:.3%} | {c.im_rate:.2%} | {c.mm_rate:.2%} | {c.max_leverage:.1f}x | {adv:,.0f} |")
    btc = cals["BTCUSDT"]
    assert btc.tiers is not None
    print("\nBTCUSDT tiers (marginal convention):\n")
    print("| bracket | notional floor | notional cap | max leverage | IM rate | MM rate | maintenance amount |")
    print("|---|---|---|---|---|---|---|")
    for i, t in enumerate(btc.tiers.to_details(), start=1):
        print(f"| {i} | {t['lower']:,.0f} | {t['upper']:,.0f} | {t['max_leverage']:.0f}x | {t['im_rate']:.2%} | "
              f"{t['mm_rate']:.2%} | {t['maintenance_amount']:,.0f} |")
    print(f"\nruntime {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
