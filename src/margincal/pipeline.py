"""The end-to-end job behind ``margincal run`` and ``margincal calibrate``.

store bars -> log returns -> tail model (FHS with EWMA volatility by default)
-> ES at the level over the liquidation horizon -> IM/MM rates -> ParameterSet
-> published (versioned, audited) -> table and HTML report.

The EWMA decay is given per day (RiskMetrics 0.94) and converted to the bar
spacing so that the memory is the same in hours: ``lam_bar = lam_day ** (bar_hours / 24)``.
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
from margincal.data.store import load_bars
from margincal.errors import CalibrationError
from margincal.margin.calibration import calibrate_instrument
from margincal.margin.liquidity import LiquidityModel
from margincal.margin.params import InstrumentParams, ParameterSet, new_run_id, publish
from margincal.margin.rounding import ceil_to_increment
from margincal.risk.measures import expected_shortfall
from margincal.vol.ewma import ewma_variance


def ceil_to(x: float, step: float) -> float:
    """Round ``x`` up to a multiple of ``step`` (noise-tolerant; see :func:`ceil_to_increment`)."""
    return float(ceil_to_increment(x, step)) if step > 0 else float(x)


def bar_lambda(lam_day: float, bar_hours: float) -> float:
    return float(lam_day ** (bar_hours / 24.0))


def log_returns(bars: pd.DataFrame, instrument: str | None = None) -> pd.Series:
    """Close-to-close log returns (the first bar has none)."""
    r = np.log(bars["close"]).diff().iloc[1:]
    r.name = instrument or "returns"
    return r


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


def calibrate_bars(bars: pd.DataFrame, instrument: str, timeframe: str,
                   settings: CalibrationSettings) -> InstrumentCalibration:
    """Calibrate one instrument's IM/MM rates from its bars."""
    if len(bars) < settings.min_history + 1:
        raise CalibrationError(
            f"{instrument} {timeframe}: {len(bars)} bars, need at least {settings.min_history + 1}"
        )
    bh = timeframe_hours(timeframe)
    r = log_returns(bars, instrument)
    h_bars = settings.horizon_hours / bh
    # whole multi-bar horizons use overlapping h-bar returns; otherwise square-root-of-time
    params: dict[str, Any] = {"scaling": "direct" if h_bars > 1.5 and abs(h_bars - round(h_bars)) < 1e-9 else "sqrt"}
    if settings.model != "hs":  # every filtered / parametric model takes the EWMA decay, per bar
        params["lam"] = bar_lambda(settings.ewma_lambda, bh)
    liq = LiquidityModel.from_bars(bars, half_spread=settings.half_spread, reference_size=settings.reference_size)
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
        model_params=dict(cal.provenance.get("model_params", params)), level=settings.level,
        horizon_hours=settings.horizon_hours,
        extra={"params": cal.to_params(), "liquidity_addon": cal.liquidity_addon},
    )


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


def margin_path(bars: pd.DataFrame, timeframe: str, settings: CalibrationSettings,
                refit_every: int | None = None) -> pd.DataFrame:
    """Causal FHS margin-rate history (for reports): at each bar, only data strictly before it is used.

    The EWMA sigma is recursive (exact every bar); the ES multiplier of the
    standardised residuals is refitted every ``refit_every`` bars (default: one
    week's worth of bars) on all residuals available then.
    """
    bh = timeframe_hours(timeframe)
    r = log_returns(bars).to_numpy()
    lam = bar_lambda(settings.ewma_lambda, bh)
    seed = 30
    v = ewma_variance(r, lam, seed)
    sig = np.sqrt(v[:-1])
    z = r / sig
    h = settings.horizon_hours / bh
    step = refit_every or max(1, int(round(7 * 24.0 / bh)))
    mult = np.full(r.size, np.nan)
    last = np.nan
    for t in range(seed + settings.min_history, r.size):
        if (t - seed - settings.min_history) % step == 0:
            zz = z[seed:t]
            last = max(expected_shortfall(-zz, settings.level), expected_shortfall(zz, settings.level))
        mult[t] = last
    # margin for bar t: sigma_t (data < t) x residual ES x sqrt(h) in log terms, then to a simple-return
    # loss of the worse side: expm1 (the short side's loss exp(x)-1 exceeds the long side's 1-exp(-x)).
    im = np.minimum(np.expm1(sig * mult * math.sqrt(h)) * (1 + settings.buffer), 1.0)  # capped like the published IM
    out = pd.DataFrame({"close": bars["close"].iloc[1:].to_numpy(), "sigma_ann": sig * math.sqrt(24 * 365 / bh),
                        "im_rate": im, "mm_rate": im * settings.mm_fraction,
                        "ret": r}, index=bars.index[1:])
    return out


def backtest_published(store: Any, settings: CalibrationSettings, timeframe: str = "1d") -> Any:
    """Out-of-sample backtest of the margin this pipeline publishes, on every instrument of ``timeframe``.

    Uses :class:`margincal.backtest.models.PublishedPath` (the causal
    :func:`margin_path`) against the realised two-sided loss over the
    liquidation horizon, and stores the result (kind ``"backtest"``) so that
    ``margincal report`` and the service show it. Returns the
    :class:`margincal.backtest.engine.BacktestResult`.
    """
    from margincal.backtest import load_returns, run_backtest  # backtest imports this module
    from margincal.backtest.policies import make_policy
    from margincal.data.store import open_store, save_result

    data = load_returns(None, timeframe=timeframe, store=store)
    res = run_backtest(data, models=("published",), policies=[make_policy("raw")], levels=(settings.level,),
                       horizons=(settings.horizon_hours,))
    params = {"instruments": [d["instrument"] for d in res.instruments], "models": ["published"],
              "policies": ["raw"], "levels": [settings.level], "horizons_hours": [settings.horizon_hours],
              "source": "margincal run"}
    with open_store(store) as con:
        save_result(con, res.run_id, "backtest", params, res.to_payload(include_series=True))
    return res
