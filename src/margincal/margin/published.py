"""The calibration use case behind ``margincal run`` / ``calibrate``, and the history of what it publishes.

store bars -> log returns -> tail model (FHS with EWMA volatility by default)
-> ES at the level over the liquidation horizon -> liquidity add-on -> the
published rule (:func:`margincal.margin.calibration.published_rates`: buffer,
add-on, rounding up to the grid, cap at 100%, MM) -> ParameterSet -> published.

One definition, two uses:

* :func:`calibrate_bars` fits the model on all bars and applies the rule: the
  frozen numbers that are published;
* :func:`published_path` runs the same model's causal ``fit_path`` and the same
  liquidity estimate on every prefix of the bars and applies the same rule:
  row ``t`` is exactly what :func:`calibrate_bars` gives on ``bars[:t + 1]``
  (tested), and its last row is the published number. The backtest
  (:mod:`margincal.backtest.published`) replays this history.

The EWMA decay is a :class:`~margincal.units.Decay`:
:class:`~margincal.config.CalibrationSettings` holds ``ewma_lambda`` per day
(RiskMetrics 0.94) and it is converted to the bar spacing here, so the memory is
the same in hours on daily and hourly bars.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from margincal.config import CalibrationSettings
from margincal.data.ingest import timeframe_hours
from margincal.data.returns import log_returns
from margincal.data.store import load_bars
from margincal.errors import CalibrationError, DataError
from margincal.margin.calibration import calibrate_instrument, published_rates
from margincal.margin.liquidity import SQRT_IMPACT_Y, LiquidityModel
from margincal.margin.params import InstrumentParams, ParameterSet, new_run_id, publish
from margincal.risk.base import jsonable_params
from margincal.units import Decay
from margincal.risk.models import TailModel, make_model

#: daily bars of the liquidity estimate (ADV, volatility), as :meth:`LiquidityModel.from_bars`
LIQUIDITY_WINDOW = 30


@dataclass(frozen=True)
class InstrumentCalibration:
    """One instrument's calibrated rates with provenance."""

    instrument: str
    timeframe: str
    im_rate: float
    mm_rate: float
    es: float
    var: float
    sigma: float
    last_price: float
    window_start: str
    window_end: str
    n_obs: int
    model: str
    model_params: dict[str, Any]
    level: float
    horizon_hours: float
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {
            "instrument": self.instrument, "bars": self.timeframe, "last_price": self.last_price,
            "sigma_horizon": self.sigma, "var": self.var, "es": self.es, "im_rate": self.im_rate,
            "liq_addon": self.extra.get("liquidity_addon", 0.0), "mm_rate": self.mm_rate,
            "max_leverage": round(1.0 / self.im_rate, 1),
            "data_to": self.window_end[:10], "n_obs": self.n_obs,
        }


def model_params(settings: CalibrationSettings, bar_hours: float) -> dict[str, Any]:
    """Tail-model parameters of the published rule on bars of ``bar_hours``.

    Whole multi-bar horizons use overlapping h-bar returns (``scaling="direct"``),
    otherwise square-root-of-time; every filtered model takes the EWMA decay per day.
    """
    h_bars = settings.horizon_hours / bar_hours
    params: dict[str, Any] = {"scaling": "direct" if h_bars > 1.5 and abs(h_bars - round(h_bars)) < 1e-9
                              else "sqrt"}
    if settings.model != "hs":
        params["lam"] = Decay(per_day=settings.ewma_lambda)
    return params


def published_model(settings: CalibrationSettings, bar_hours: float) -> TailModel:
    """The tail model the published rule uses (one place: calibration and history both call it)."""
    return make_model(settings.model, **model_params(settings, bar_hours))


def calibrate_bars(bars: pd.DataFrame, instrument: str, timeframe: str,
                   settings: CalibrationSettings) -> InstrumentCalibration:
    """Calibrate one instrument's IM/MM rates from its bars (the published numbers)."""
    if len(bars) < settings.min_history + 1:
        raise CalibrationError(
            f"{instrument} {timeframe}: {len(bars)} bars, need at least {settings.min_history + 1}"
        )
    bh = timeframe_hours(timeframe)
    r = log_returns(bars, instrument)
    params = model_params(settings, bh)
    liq = LiquidityModel.from_bars(bars, window=LIQUIDITY_WINDOW, half_spread=settings.half_spread,
                                   reference_size=settings.reference_size)
    cal = calibrate_instrument(
        r, model=settings.model, model_params=params, level=settings.level, horizon_hours=settings.horizon_hours,
        buffer=settings.buffer, liquidity=liq, reference_size=settings.reference_size,
        mm_fraction=settings.mm_fraction, rounding=settings.rounding, instrument=instrument,
        tier_boundaries=list(settings.tier_boundaries), bar_hours=bh,
    )
    return InstrumentCalibration(
        instrument=instrument, timeframe=timeframe, im_rate=cal.im_rate, mm_rate=cal.mm_rate, es=cal.es,
        var=cal.var, sigma=cal.sigma, last_price=float(bars["close"].iloc[-1]), window_start=str(r.index[0]),
        window_end=str(r.index[-1]), n_obs=int(cal.provenance.get("n_obs", len(r))), model=settings.model,
        model_params=jsonable_params(params), level=settings.level, horizon_hours=settings.horizon_hours,
        extra={"params": cal.to_params(), "liquidity_addon": cal.liquidity_addon},
    )


def liquidity_cost_path(bars: pd.DataFrame, *, size: float, half_spread: float = 0.0, y: float = SQRT_IMPACT_Y,
                        window: int = LIQUIDITY_WINDOW) -> np.ndarray:
    """``LiquidityModel.from_bars(bars.iloc[:t + 1], window=window, ...).cost(size)`` for every row ``t``.

    Cumulative sums over the trailing ``window`` bars (ADV of ``close * volume`` or
    ``volume_quote``; sample volatility of the log returns), NaN where fewer than 3
    bars exist. ``tests/margin/test_published.py`` checks it against the loop over
    :meth:`LiquidityModel.from_bars`.
    """
    n = len(bars)
    close = bars["close"].to_numpy(float)
    if "volume_quote" in bars.columns:
        traded = bars["volume_quote"].to_numpy(float)
    elif "volume" in bars.columns:
        traded = close * bars["volume"].to_numpy(float)
    else:
        raise DataError("bars need 'volume' (base units) or 'volume_quote' to estimate ADV")
    t = np.arange(n)
    bh = np.full(n, 24.0)
    if isinstance(bars.index, pd.DatetimeIndex) and n > 1:
        d = np.asarray((bars.index[1:] - bars.index[:-1]).total_seconds(), dtype=float) / 3600.0
        # the median spacing of each trailing window, as from_bars; bars are regular, so a rolling median
        med = pd.Series(d).rolling(window, min_periods=1).median().to_numpy()
        bh[1:] = med
    ct = np.concatenate([[0.0], np.cumsum(traded)])
    start = np.maximum(1, t - window + 1)
    cnt_t = np.maximum(t + 1 - start, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        adv = (ct[t + 1] - ct[start]) / cnt_t * 24.0 / bh
        r = np.diff(np.log(close))
        c1 = np.concatenate([[0.0], np.cumsum(r)])
        c2 = np.concatenate([[0.0], np.cumsum(r * r)])
        rs = np.maximum(0, t - window)
        m = (t - rs).astype(float)
        s1, s2 = c1[t] - c1[rs], c2[t] - c2[rs]
        var = np.maximum(s2 - s1 * s1 / m, 0.0) / (m - 1.0)
        sigma = np.sqrt(var) * np.sqrt(24.0 / bh)
        cost = half_spread + y * sigma * np.sqrt(size / adv)
    cost[t < 2] = np.nan
    return cost


def published_path(bars: pd.DataFrame, timeframe: str, settings: CalibrationSettings) -> pd.DataFrame:
    """Causal history of the published IM and MM: row ``t`` from ``bars[: t + 1]`` only (module doc).

    ``len(bars)`` rows indexed by the bars' timestamps: ``es`` (the model's ES,
    larger side), ``liq_addon``, ``im_raw``, ``mm_raw``, ``im_rate``, ``mm_rate``,
    ``sigma`` (one-bar volatility forecast of the filter where it has one), NaN
    before ``settings.min_history`` returns. The last row equals
    :func:`calibrate_bars` on all the bars.
    """
    bh = timeframe_hours(timeframe)
    r = log_returns(bars)
    model = published_model(settings, bh)
    path = model.fit_path(r.to_numpy(), horizon=settings.horizon_hours, level=settings.level, refit=1,
                          bar_hours=bh)
    es = path["es"].to_numpy(float).copy()
    es[: settings.min_history] = np.nan
    cost = liquidity_cost_path(bars, size=settings.reference_size, half_spread=settings.half_spread)
    im, mm, im_raw, mm_raw = published_rates(es, cost, buffer=settings.buffer, mm_fraction=settings.mm_fraction,
                                             rounding=settings.rounding)
    return pd.DataFrame({"es": es, "liq_addon": cost, "im_raw": im_raw, "mm_raw": mm_raw, "im_rate": im,
                         "mm_rate": mm}, index=bars.index)


def published_history(bars: pd.DataFrame, timeframe: str, settings: CalibrationSettings) -> pd.DataFrame:
    """The published margin in force over each bar, for charts and the backtest.

    Indexed like :func:`log_returns` (``bars.index[1:]``): the row of bar ``i``
    holds the IM/MM published at the close before it (from data strictly before
    the bar), the bar's ``close`` and return ``ret``, and ``sigma_ann`` (the
    annualised EWMA volatility forecast, for the chart).
    """
    from margincal.vol.ewma import ewma_variance

    p = published_path(bars, timeframe, settings)
    bh = timeframe_hours(timeframe)
    r = log_returns(bars)
    lam = Decay(per_day=settings.ewma_lambda).for_bars(bh)
    sig = np.sqrt(ewma_variance(r.to_numpy(), lam, 30)[:-1])
    return pd.DataFrame({"close": bars["close"].iloc[1:].to_numpy(), "sigma_ann": sig * math.sqrt(24 * 365 / bh),
                         "es": p["es"].to_numpy()[:-1], "liq_addon": p["liq_addon"].to_numpy()[:-1],
                         "im_rate": p["im_rate"].to_numpy()[:-1], "mm_rate": p["mm_rate"].to_numpy()[:-1],
                         "ret": r.to_numpy()}, index=bars.index[1:])


def calibrate_store(con: duckdb.DuckDBPyConnection, targets: list[tuple[str, str]],
                    settings: CalibrationSettings,
                    on_step: Callable[[str], None] | None = None) -> list[InstrumentCalibration]:
    out = []
    for inst, tf in targets:
        if on_step:
            on_step(f"{inst} {tf}")
        bars = load_bars(con, inst, tf)
        if bars.empty:
            raise CalibrationError(f"no {tf} bars stored for {inst}; ingest them first")
        out.append(calibrate_bars(bars, inst, tf, settings))
    return out


def to_parameter_set(cals: list[InstrumentCalibration], settings: CalibrationSettings,
                     run_id: str) -> ParameterSet:
    params = {}
    for c in cals:
        base: InstrumentParams = c.extra["params"]
        details = dict(base.details)
        details.update({"timeframe": c.timeframe, "last_price": c.last_price, "model_params": c.model_params})
        details["provenance"] = {**details.get("provenance", {}), "model_params": c.model_params}
        params[c.instrument] = InstrumentParams(c.instrument, c.im_rate, c.mm_rate, details)
    prov = {
        "run_id": run_id, "model": settings.model, "level": settings.level,
        "horizon_hours": settings.horizon_hours, "ewma_lambda_per_day": settings.ewma_lambda,
        "mm_fraction": settings.mm_fraction, "buffer": settings.buffer, "rounding": settings.rounding,
        "reference_size": settings.reference_size, "half_spread": settings.half_spread,
        "tier_boundaries": list(settings.tier_boundaries),
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "windows": {c.instrument: [c.window_start, c.window_end] for c in cals},
    }
    return ParameterSet(params=params, provenance=prov, run_id=run_id)


def calibrate_and_publish(con: duckdb.DuckDBPyConnection, targets: list[tuple[str, str]],
                          settings: CalibrationSettings, *, actor: str = "margincal-run",
                          on_step: Callable[[str], None] | None = None,
                          ) -> tuple[int, ParameterSet, list[InstrumentCalibration]]:
    run_id = new_run_id()
    cals = calibrate_store(con, targets, settings, on_step)
    pset = to_parameter_set(cals, settings, run_id)
    version = publish(con, pset, created_by=actor, source="calibration", run_id=run_id,
                      note=f"{settings.model} ES{settings.level:g} {settings.horizon_hours:g}h")
    return version, pset, cals


__all__ = [
    "InstrumentCalibration",
    "calibrate_and_publish",
    "calibrate_bars",
    "calibrate_store",
    "liquidity_cost_path",
    "model_params",
    "published_history",
    "published_model",
    "published_path",
    "to_parameter_set",
]
