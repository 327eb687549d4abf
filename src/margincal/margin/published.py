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
from margincal.data.store import load_bars, load_series
from margincal.errors import CalibrationError, ConfigError, DataError
from margincal.margin.calibration import calibrate_instrument, published_rates
from margincal.margin.liquidity import SQRT_IMPACT_Y, LiquidityModel
from margincal.margin.params import InstrumentParams, ParameterSet, new_run_id, publish
from margincal.risk.base import jsonable_params
from margincal.risk.models import TailModel, make_model
from margincal.units import Decay

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
        sched = self.extra.get("tiers")
        if sched is not None:  # margin v2: rates at reference_size plus the bracket table's ends
            return {
                "instrument": self.instrument, "bars": self.timeframe, "last_price": self.last_price,
                "es_1bar": self.es, "horizon_min": round(60.0 * self.horizon_hours, 2), "im_rate": self.im_rate,
                "liq_addon": self.extra.get("liquidity_addon", 0.0), "mm_rate": self.mm_rate,
                "max_leverage": round(1.0 / self.im_rate, 2),
                "tier1_leverage": float(sched.tiers[0].max_leverage), "tier1_mm": sched.tiers[0].maintenance_rate,
                "last_tier_leverage": float(sched.tiers[-1].max_leverage),
                "data_to": self.window_end[:10], "n_obs": self.n_obs,
            }
        return {
            "instrument": self.instrument, "bars": self.timeframe, "last_price": self.last_price,
            "sigma_horizon": self.sigma, "var": self.var, "es": self.es, "im_rate": self.im_rate,
            "liq_addon": self.extra.get("liquidity_addon", 0.0), "mm_rate": self.mm_rate,
            "max_leverage": round(1.0 / self.im_rate, 2),
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
                   settings: CalibrationSettings, funding: pd.Series | None = None,
                   underlying: UnderlyingRisk | None = None) -> InstrumentCalibration:
    """Calibrate one instrument's IM/MM rates from its bars (the published numbers).

    ``settings.rule == "v2"`` (default): the last row of :func:`published_curve_path` (so the published
    rates are exactly the history's last value), with the bracket table of the curve in
    ``details["tiers"]``; the headline ``im_rate``/``mm_rate`` are the curve at ``reference_size``.
    ``"flat"``: the pre-v2 rule (one horizon ``horizon_hours`` for every size).
    ``underlying``: the coin's shared tail risk (:class:`UnderlyingRisk`; v2 only).
    """
    if len(bars) < settings.min_history + 1:
        raise CalibrationError(
            f"{instrument} {timeframe}: {len(bars)} bars, need at least {settings.min_history + 1}"
        )
    if settings.rule == "v2":
        return _calibrate_curve(bars, instrument, timeframe, settings, funding, underlying)
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


def _calibrate_curve(bars: pd.DataFrame, instrument: str, timeframe: str, settings: CalibrationSettings,
                     funding: pd.Series | None, underlying: UnderlyingRisk | None = None) -> InstrumentCalibration:
    p = published_curve_path(bars, timeframe, settings, funding=funding, underlying=underlying)
    if not np.isfinite(p.im[-1]).all():
        raise CalibrationError(f"{instrument} {timeframe}: the margin curve is not defined at the last bar "
                               "(too little history or no traded volume in the liquidity window)")
    j = p.column(settings.reference_size)
    sched = p.brackets(settings=settings)
    curve = [{"notional": float(nv), "h_mm_hours": float(p.h_mm[-1, k]), "h_im_hours": float(p.h_im[-1, k]),
              "cost_mm": float(p.cost_mm[-1, k]), "mm_rate": float(p.mm[-1, k]), "im_rate": float(p.im[-1, k])}
             for k, nv in enumerate(p.notional)]
    r = log_returns(bars, instrument)
    liq = {"adv": float(p.adv[-1]), "sigma_daily": float(p.sigma_daily[-1]),
           "half_spread": float(p.half_spread[-1]), "spread_estimator": "corwin_schultz",
           "adv_window_days": settings.liquidity_window_days,
           "funding_per_event": float(p.funding_per_event[-1])}
    details: dict[str, Any] = {
        "rule": "v2", "es": float(p.loss_1bar[-1]), "es_raw": float(p.loss_raw[-1]), "es_horizon_hours": p.bar_hours,
        "scaling_exponent": float(p.exponent[-1]), "level": settings.level, "apc": settings.apc,
        "horizon_hours": float(p.h_mm[-1, j]), "im_horizon_hours": float(p.h_im[-1, j]),
        "reference_size": settings.reference_size, "liquidation_cost": float(p.cost_mm[-1, j]),
        "liquidity_addon": float(p.cost_im[-1, j]), "liquidity": liq, "curve": curve,
        "tiers": sched.to_details(), "im_gap": settings.im_gap, "rounding": settings.rounding,
        "model": settings.model, "window_start": str(r.index[0]), "window_end": str(r.index[-1]), "n_obs": len(r),
        "underlying_risk": {"underlying": underlying_of(instrument), "reference": p.risk_source or
                            f"{instrument} {timeframe}",
                            "es_1bar_product": (float(p.loss_product[-1]) if p.loss_product is not None
                                                else float(p.loss_1bar[-1]))},
        "provenance": {"model": settings.model, "rule": "margin v2 (issue 15): MM(N) = loss(H_MM(N)) + cost, "
                       "IM(N) = max(loss(H_IM(N)) + cost, (1 + im_gap) MM(N)), brackets from the curve",
                       "window_start": str(r.index[0]), "window_end": str(r.index[-1])},
    }
    params = InstrumentParams(instrument, float(p.im[-1, j]), float(p.mm[-1, j]), details)
    return InstrumentCalibration(
        instrument=instrument, timeframe=timeframe, im_rate=float(p.im[-1, j]), mm_rate=float(p.mm[-1, j]),
        es=float(p.loss_1bar[-1]), var=float("nan"), sigma=float(p.sigma_daily[-1]),
        last_price=float(bars["close"].iloc[-1]), window_start=str(r.index[0]), window_end=str(r.index[-1]),
        n_obs=len(r), model=settings.model, model_params={"lam_per_day": settings.ewma_lambda},
        level=settings.level, horizon_hours=float(p.h_mm[-1, j]),
        extra={"params": params, "liquidity_addon": float(p.cost_im[-1, j]), "path": p, "bars": bars,
               "funding": funding, "tiers": sched, "underlying": underlying})


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


def published_path(bars: pd.DataFrame, timeframe: str, settings: CalibrationSettings,
                   funding: pd.Series | None = None, underlying: UnderlyingRisk | None = None) -> pd.DataFrame:
    """Causal history of the published IM and MM: row ``t`` from ``bars[: t + 1]`` only (module doc).

    With ``settings.rule == "v2"`` (default) the rates are those of :func:`published_curve_path` at
    ``settings.reference_size`` (``es`` is then the one-bar ES after anti-procyclicality, ``liq_addon``
    the close-out cost over the IM horizon, ``h_mm`` the MM close-out horizon in hours).

    ``len(bars)`` rows indexed by the bars' timestamps: ``es`` (the model's ES,
    larger side), ``liq_addon``, ``im_raw``, ``mm_raw``, ``im_rate``, ``mm_rate``,
    ``sigma`` (one-bar volatility forecast of the filter where it has one), NaN
    before ``settings.min_history`` returns. The last row equals
    :func:`calibrate_bars` on all the bars.
    """
    if settings.rule == "v2":
        c = published_curve_path(bars, timeframe, settings, funding=funding, underlying=underlying)
        j = c.column(settings.reference_size)
        return pd.DataFrame({"es": c.loss_1bar, "liq_addon": c.cost_im[:, j], "im_raw": c.im_raw[:, j],
                             "mm_raw": c.mm_raw[:, j], "im_rate": c.im[:, j], "mm_rate": c.mm[:, j],
                             "h_mm": c.h_mm[:, j]}, index=bars.index)
    bh = timeframe_hours(timeframe)
    r = log_returns(bars)
    model = published_model(settings, bh)
    path = model.fit_path(r.to_numpy(), horizon=settings.horizon_hours, level=settings.level,
                          refit=path_refit(settings.model, bh), bar_hours=bh)
    es = path["es"].to_numpy(float).copy()
    es[: settings.min_history] = np.nan
    from margincal.margin.liquidity import window_bars

    # the window counts DAYS as LiquidityModel.from_bars does (30 days = 720 hourly bars)
    cost = liquidity_cost_path(bars, size=settings.reference_size, half_spread=settings.half_spread,
                               window=window_bars(LIQUIDITY_WINDOW, bh))
    im, mm, im_raw, mm_raw = published_rates(es, cost, buffer=settings.buffer, mm_fraction=settings.mm_fraction,
                                             rounding=settings.rounding)
    return pd.DataFrame({"es": es, "liq_addon": cost, "im_raw": im_raw, "mm_raw": mm_raw, "im_rate": im,
                         "mm_rate": mm}, index=bars.index)


# ----------------------------------------------------------------------------- margin v2 (issue 15)

HOURLY_SCALING_INTERVALS = ("1h", "4h", "1D")
DAILY_SCALING_INTERVALS = ("1D", "2D", "5D", "10D")
STRESSED_DEPTH_BAND = 0.01


@dataclass(frozen=True)
class PublishedCurvePath:
    """Causal history of the size-dependent published rule (margin v2): row ``t`` from ``bars[: t + 1]``.

    ``notional`` holds the curve's notionals (the bracket caps and ``reference_size``,
    increasing); ``im``/``mm`` (and their unrounded ``*_raw``), ``h_mm``/``h_im``
    (close-out horizons in hours) and ``cost_mm``/``cost_im`` are ``(len(bars), K)``
    arrays; ``loss_1bar`` is the model's one-bar ES (after anti-procyclicality),
    ``loss_raw`` before it. NaN before ``settings.min_history`` returns.
    """

    index: pd.DatetimeIndex
    bar_hours: float
    notional: np.ndarray
    caps: np.ndarray
    exponent: np.ndarray
    var_raw: np.ndarray
    loss_raw: np.ndarray
    loss_1bar: np.ndarray
    adv: np.ndarray
    sigma_daily: np.ndarray
    half_spread: np.ndarray
    funding_per_event: np.ndarray
    h_mm: np.ndarray
    h_im: np.ndarray
    cost_mm: np.ndarray
    cost_im: np.ndarray
    im_raw: np.ndarray
    mm_raw: np.ndarray
    im: np.ndarray
    mm: np.ndarray
    #: where the tail loss came from: None (the product's own bars) or the reference series of the
    #: underlying (``"BTC-USDT 1h"``, :class:`UnderlyingRisk`); ``loss_product`` is then the product's
    #: own one-bar ES after anti-procyclicality (for comparison; not used by the rates)
    risk_source: str | None = None
    loss_product: np.ndarray | None = None

    def column(self, notional: float) -> int:
        return int(np.flatnonzero(np.isclose(self.notional, notional))[0])

    def brackets(self, row: int = -1, settings: CalibrationSettings | None = None) -> Any:
        """Exchange-style brackets (:func:`margincal.margin.tiers.brackets_from_curve`) of row ``row``."""
        from margincal.margin.tiers import brackets_from_curve

        rounding = 0.0001 if settings is None else max(settings.rounding / 5.0, 1e-6)
        x = np.log(self.notional)
        im_r, mm_r = self.im_raw[row], self.mm_raw[row]

        def f(y: np.ndarray) -> Callable[[object], np.ndarray]:
            return lambda n: np.interp(np.log(np.asarray(n, dtype=float)), x, y)

        return brackets_from_curve(self.caps, f(im_r), f(mm_r), rounding=rounding)


# ----------------------------------------------------------------------------- one risk rate per underlying

RISK_BASES = ("underlying", "product")


def underlying_of(instrument: str) -> str:
    """The underlying coin of an instrument name (``BTC`` for ``BTC-USDT``, ``BTC-PERP``, ``BTCUSD_PERP``)."""
    from margincal.instruments import parse

    try:
        return str(parse(instrument).base).upper()
    except (DataError, ConfigError, ValueError):
        return str(instrument).upper().replace("_", "-").split("-")[0]


@dataclass(frozen=True)
class UnderlyingRisk:
    """One tail-risk rate per underlying (issue 15 item 3), from one reference series of that coin.

    The published tail loss of every product on the coin (spot, perpetual, future) is::

        loss(h) = ES_ref(one bar of the reference) * (h / ref_bar_hours) ** H_ref

    with the reference's causal one-bar ES after anti-procyclicality and its measured scaling exponent
    ``H_ref``, both as known at the close of the product's bar (the last reference bar closed by then).
    Products differ only by their own contract terms, added on top by the published rule: the close-out
    horizon and cost from the product's own traded volume and bars, the funding provision (perpetuals);
    futures would add their basis and inverse contracts their settlement convexity (none is bundled).
    """

    underlying: str
    instrument: str
    timeframe: str
    bar_hours: float
    known_ns: np.ndarray
    loss_1bar: np.ndarray
    exponent: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.instrument} {self.timeframe}"

    def at(self, index: pd.DatetimeIndex, bar_hours: float) -> tuple[np.ndarray, np.ndarray]:
        """``(one-bar loss on bars of bar_hours, exponent)`` for bars opening at ``index``, as known at their
        close (NaN where the reference has no forecast yet)."""
        idx = pd.DatetimeIndex(index)
        if idx.tz is None:
            idx = idx.tz_localize("UTC")
        close_ns = (idx + pd.Timedelta(hours=bar_hours)).as_unit("ns").asi8
        k = np.searchsorted(self.known_ns, close_ns, side="right") - 1
        kk = np.clip(k, 0, None)
        h = np.where(k >= 0, self.exponent[kk], np.nan)
        base = np.where(k >= 0, self.loss_1bar[kk], np.nan)
        with np.errstate(invalid="ignore"):
            return base * (bar_hours / self.bar_hours) ** h, h


def reference_series(instrument: str, series: list[tuple[str, str, int]]) -> tuple[str, str] | None:
    """The reference of ``instrument``'s underlying among ``series`` (``(instrument, timeframe, n_bars)``):
    the most granular bars of the same coin (smallest bar spacing), then the longest history, then the name
    (a deterministic tie-break). None when no series of the coin is given."""
    u = underlying_of(instrument)
    cand = []
    for name, tf, n in series:
        if underlying_of(name) != u:
            continue
        try:
            bh = timeframe_hours(tf)
        except (DataError, ConfigError, ValueError):
            continue
        cand.append((bh, -int(n), name, tf))
    if not cand:
        return None
    _, _, name, tf = min(cand)
    return name, tf


def underlying_risk(bars: pd.DataFrame, instrument: str, timeframe: str,
                    settings: CalibrationSettings) -> UnderlyingRisk:
    """The :class:`UnderlyingRisk` of the reference series ``bars`` (its own published curve path's one-bar
    ES after anti-procyclicality and its scaling exponent)."""
    p = published_curve_path(bars, timeframe, settings)
    idx = pd.DatetimeIndex(bars.index)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    known = (idx + pd.Timedelta(hours=p.bar_hours)).as_unit("ns").asi8
    return UnderlyingRisk(underlying=underlying_of(instrument), instrument=instrument, timeframe=timeframe,
                          bar_hours=p.bar_hours, known_ns=np.asarray(known), loss_1bar=p.loss_1bar,
                          exponent=p.exponent)


EXPONENT_REFIT_DAYS = 365.0

# Tail models whose shape is an optimisation (t's degrees of freedom by MLE, EVT's GPD fit, MC's simulation)
# re-estimate the shape once a day; their volatility filter still updates every bar. One MLE per hourly bar
# over the 58,000-bar BTC reference series took more than 10 minutes for `calibrate --model t`. The
# empirical and closed-form models (fhs, hs, normal, cf) have exact per-bar paths and refit every bar.
SHAPE_REFIT_HOURS = 24.0
PER_BAR_MODELS = ("fhs", "hs", "normal", "cf")


def path_refit(model: str, bar_hours: float) -> int:
    """Bars between re-estimations of the tail shape in the published path (1 for fhs/hs/normal/cf)."""
    return 1 if model in PER_BAR_MODELS else max(1, round(SHAPE_REFIT_HOURS / bar_hours))


def scaling_exponent_path(bars: pd.DataFrame, bar_hours: float) -> np.ndarray:
    """Causal scaling exponent per bar: refitted every :data:`EXPONENT_REFIT_DAYS` days on the bars up to
    the refit (refit points counted from the first bar, so a prefix of the bars gives a prefix of the
    path), 0.5 (square root) before the first refit or when it cannot be measured."""
    from margincal.margin.liquidity import window_bars

    n = len(bars)
    step = max(window_bars(EXPONENT_REFIT_DAYS, bar_hours), 2)
    out = np.full(n, 0.5)
    for k in range(step, n, step):
        out[k:] = scaling_exponent_of(bars.iloc[: k + 1], bar_hours)
    return out


def scaling_exponent_of(bars: pd.DataFrame, bar_hours: float) -> float:
    """The measured horizon-scaling exponent (:func:`margincal.vol.horizon.scaling_exponent`, variance) of
    the bars' closes: 1 h, 4 h, 1 d on hourly bars, 1..10 d on daily bars; 0.5 when it cannot be measured
    (0.45-0.51 on the bundled data, docs/margin_v2.md).
    """
    from margincal.vol.horizon import scaling_exponent

    iv = HOURLY_SCALING_INTERVALS if bar_hours < 24.0 - 1e-9 else DAILY_SCALING_INTERVALS
    try:
        h = float(scaling_exponent(bars["close"], iv).exponent)
    except (DataError, ValueError, ConfigError):
        return 0.5
    return h if 0.2 < h < 1.0 else 0.5


def _rolling_mean(x: np.ndarray, window: int, min_periods: int = 3) -> np.ndarray:
    return pd.Series(x).rolling(window, min_periods=min_periods).mean().to_numpy()


def published_curve_path(bars: pd.DataFrame, timeframe: str, settings: CalibrationSettings,
                         funding: pd.Series | None = None,
                         underlying: UnderlyingRisk | None = None) -> PublishedCurvePath:
    """Causal history of the margin v2 rule (issue 15): MM(N), IM(N) at every bar for every curve notional.

    At each bar ``t``, from data up to ``t`` only:

    * tail loss: the published tail model's one-bar ES (``fit_path`` every bar; the tail shape of t/EVT/MC daily, :func:`path_refit`), through
      anti-procyclicality ``settings.apc`` (:func:`margincal.margin.apc.apply_apc`, ``emir_a`` by
      default: 25% buffer released in stress, rebuilt over 20 calm days), then
      ``loss(h) = ES_1bar * (h / bar_hours) ** H`` with ``H`` the measured scaling exponent
      (:func:`scaling_exponent_path`, refitted yearly on the data up to the refit);
    * liquidity over the last ``liquidity_window_days`` DAYS: ADV, daily volatility and the
      Corwin-Schultz half-spread of the bars; close-out ``T(N) = N / (participation * ADV / 24)``,
      ``H_MM = detection + T``, ``H_IM = check_interval + H_MM``
      (:class:`margincal.margin.horizon.CloseOutModel` defines these; the floor for small positions is
      ``detection`` = 1 min for MM and 2 min for IM);
    * close-out cost ``half_spread + sqrt impact (Y sigma_daily sqrt(N / ADV)) + taker fee``, max'ed with
      the stressed-book cost (1% depth ``depth_to_adv * ADV`` collapsed as on 2025-10-10,
      :func:`margincal.margin.liquidity.stressed_liquidity_addon`), plus for perpetuals the funding
      provision pro rata over the horizon at the largest ``|rate|`` observed so far;
    * rates: :func:`margincal.margin.calibration.published_rates` (size-dependent form).

    ``underlying`` (:class:`UnderlyingRisk`, issue 15 item 3): the tail loss and its scaling exponent are the
    underlying's reference series' instead of the product's own fit, wherever the reference has a forecast
    at the product's bar; the product keeps its own liquidity, close-out horizon, costs and funding.
    """
    if settings.risk_basis == "product":
        underlying = None
    key = (id(bars), len(bars), timeframe, repr(settings), id(funding), id(underlying))
    for k, b, f, u, out in _CURVE_CACHE:
        if k == key and b is bars and f is funding and u is underlying:
            return out
    out = _published_curve_path(bars, timeframe, settings, funding, underlying)
    _CURVE_CACHE.append((key, bars, funding, underlying, out))
    del _CURVE_CACHE[:-12]
    return out


#: the last few curve paths (the run computes each once for publishing, the report and the backtest);
#: entries hold the bars and funding objects, so an ``id`` in a key cannot be reused while cached
_CURVE_CACHE: list[tuple[Any, pd.DataFrame, Any, Any, PublishedCurvePath]] = []


def _published_curve_path(bars: pd.DataFrame, timeframe: str, settings: CalibrationSettings,
                          funding: pd.Series | None,
                          underlying: UnderlyingRisk | None = None) -> PublishedCurvePath:
    from margincal.margin.apc import apc_config, apply_apc
    from margincal.margin.liquidity import (
        DEPTH_COLLAPSE_2025_10_10,
        corwin_schultz_spread,
        stressed_liquidity_addon,
        window_bars,
    )

    bh = timeframe_hours(timeframe)
    n = len(bars)
    r = log_returns(bars)
    params: dict[str, Any] = {} if settings.model == "hs" else {"lam": Decay(per_day=settings.ewma_lambda)}
    if settings.tail_window_days is not None and settings.model in ("fhs", "hs"):
        params["window"] = max(2, int(round(settings.tail_window_days * 24.0 / bh)))
    model = make_model(settings.model, **params)
    path = model.fit_path(r.to_numpy(), horizon=bh, level=settings.level, refit=path_refit(settings.model, bh),
                          bar_hours=bh)
    loss_raw = path["es"].to_numpy(float).copy()
    loss_raw[: settings.min_history] = np.nan
    var_raw = path["var"].to_numpy(float).copy()
    var_raw[: settings.min_history] = np.nan
    loss = loss_raw.copy()
    ok = np.isfinite(loss_raw)
    if ok.any():
        loss[ok] = np.asarray(apply_apc(loss_raw[ok], apc_config(settings.apc), bar_hours=bh), dtype=float)
    exponent = scaling_exponent_path(bars, bh)
    loss_product: np.ndarray | None = None
    if underlying is not None:
        u_loss, u_exp = underlying.at(pd.DatetimeIndex(bars.index), bh)
        have = np.isfinite(u_loss) & np.isfinite(loss)
        loss_product = loss.copy()
        loss = np.where(have, u_loss, loss)
        exponent = np.where(have, u_exp, exponent)
    # liquidity over the last window DAYS (bars of any size)
    wb = window_bars(settings.liquidity_window_days, bh)
    close = bars["close"].to_numpy(float)
    traded = (bars["volume_quote"].to_numpy(float) if "volume_quote" in bars.columns
              else close * bars["volume"].to_numpy(float))
    adv = _rolling_mean(traded, wb) * 24.0 / bh
    lr = np.concatenate([[np.nan], np.diff(np.log(close))])
    sigma_daily = pd.Series(lr).rolling(wb, min_periods=3).std().to_numpy() * math.sqrt(24.0 / bh)
    if {"high", "low"} <= set(bars.columns):
        cs = np.concatenate([[np.nan], corwin_schultz_spread(bars["high"], bars["low"])])
        half_spread = 0.5 * _rolling_mean(np.nan_to_num(cs, nan=0.0), wb)
    else:
        half_spread = np.full(n, settings.half_spread)
    fund = np.zeros(n)
    if funding is not None and len(funding):
        f = funding.abs().cummax().reindex(bars.index, method="ffill")
        fund = np.nan_to_num(f.to_numpy(float), nan=0.0)
    caps = np.asarray(settings.curve_caps, dtype=float)
    notional = np.unique(np.concatenate([caps, [settings.reference_size]]))
    with np.errstate(invalid="ignore", divide="ignore"):
        t_close = notional[None, :] / (settings.participation * adv[:, None] / 24.0)
        h_mm = settings.detection_hours + t_close
        h_im = settings.check_interval_hours + h_mm
        impact = SQRT_IMPACT_Y * sigma_daily[:, None] * np.sqrt(notional[None, :] / adv[:, None])
        # the stressed cost depends on size / depth only: evaluate it at depth 1
        stressed = np.asarray(stressed_liquidity_addon(
            np.nan_to_num(notional[None, :] / (settings.depth_to_adv * adv[:, None]), nan=0.0),
            depth_notional=1.0, depth_band=STRESSED_DEPTH_BAND, collapse=DEPTH_COLLAPSE_2025_10_10))
        execution = half_spread[:, None] + settings.taker_fee + np.maximum(impact, stressed)
        cost_mm = execution + fund[:, None] * h_mm / 8.0
        cost_im = execution + fund[:, None] * h_im / 8.0
        loss_mm = loss[:, None] * (h_mm / bh) ** exponent[:, None]
        loss_im = loss[:, None] * (h_im / bh) ** exponent[:, None]
    im, mm, im_raw, mm_raw = published_rates(loss_im, cost_im, mm_es=loss_mm, mm_cost=cost_mm,
                                             im_gap=settings.im_gap, rounding=settings.rounding)
    return PublishedCurvePath(
        index=bars.index, bar_hours=bh, notional=notional, caps=caps, exponent=exponent, var_raw=var_raw,
        loss_raw=loss_raw,
        loss_1bar=loss, adv=adv, sigma_daily=sigma_daily, half_spread=half_spread, funding_per_event=fund,
        h_mm=h_mm, h_im=h_im, cost_mm=cost_mm, cost_im=cost_im, im_raw=im_raw, mm_raw=mm_raw, im=im, mm=mm,
        risk_source=None if underlying is None else underlying.label, loss_product=loss_product)


def published_history(bars: pd.DataFrame, timeframe: str, settings: CalibrationSettings,
                      funding: pd.Series | None = None, underlying: UnderlyingRisk | None = None) -> pd.DataFrame:
    """The published margin in force over each bar, for charts and the backtest.

    Indexed like :func:`log_returns` (``bars.index[1:]``): the row of bar ``i``
    holds the IM/MM published at the close before it (from data strictly before
    the bar), the bar's ``close`` and return ``ret``, and ``sigma_ann`` (the
    annualised EWMA volatility forecast, for the chart).
    """
    from margincal.vol.ewma import ewma_variance

    p = published_path(bars, timeframe, settings, funding=funding, underlying=underlying)
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
                    on_step: Callable[[str], None] | None = None,
                    before: pd.Timestamp | None = None) -> list[InstrumentCalibration]:
    """Calibrate ``targets`` (instrument, timeframe) on the store's bars, funding and coin reference series.

    ``before``: use only data known before it (bars that closed before it, funding paid before it), as a
    replay's base calibration must (``monitor --calibrate``); None: everything stored (``run``, ``calibrate``).
    """
    out = []
    refs = store_underlyings(con, targets, settings, before=before)
    for inst, tf in targets:
        if on_step:
            on_step(f"{inst} {tf}")
        end = None if before is None else pd.Timestamp(before) - pd.Timedelta(timeframe_hours(tf), "h")
        bars = load_bars(con, inst, tf, end=end)
        if bars.empty:
            raise CalibrationError(f"no {tf} bars stored for {inst}"
                                   + ("" if before is None else f" before {pd.Timestamp(before).isoformat()}")
                                   + "; ingest them first")
        funding = load_series(con, "funding", inst, "rate") if settings.rule == "v2" else None
        if funding is not None and before is not None:
            funding = funding[funding.index < pd.Timestamp(before)]
        out.append(calibrate_bars(bars, inst, tf, settings, funding if funding is not None and len(funding) else None,
                                  underlying=refs.get((inst, tf))))
    return out


def store_underlyings(con: duckdb.DuckDBPyConnection, targets: list[tuple[str, str]],
                      settings: CalibrationSettings,
                      before: pd.Timestamp | None = None) -> dict[tuple[str, str], UnderlyingRisk]:
    """``{(instrument, timeframe): UnderlyingRisk}`` for the targets whose coin has a reference series in the
    store other than themselves (:func:`reference_series` over every stored bar series; v2 rule with
    ``risk_basis="underlying"`` only). One reference path per coin. ``before``: only reference bars that
    closed before it (a replay's base calibration must not see the window it replays)."""
    if settings.rule != "v2" or settings.risk_basis != "underlying":
        return {}
    series = [(str(a), str(b), int(n)) for a, b, n in
              con.execute("SELECT instrument, timeframe, count(*) FROM bars GROUP BY 1, 2").fetchall()]
    by_ref: dict[tuple[str, str], UnderlyingRisk] = {}
    out: dict[tuple[str, str], UnderlyingRisk] = {}
    for inst, tf in targets:
        ref = reference_series(inst, series)
        if ref is None or ref == (inst, tf):
            continue
        if ref not in by_ref:
            rb = load_bars(con, *ref, end=None if before is None else
                           pd.Timestamp(before) - pd.Timedelta(timeframe_hours(ref[1]), "h"))
            if len(rb) < settings.min_history + 1:
                continue
            by_ref[ref] = underlying_risk(rb, ref[0], ref[1], settings)
        out[(inst, tf)] = by_ref[ref]
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
        "tier_boundaries": list(settings.tier_boundaries), "rule": settings.rule,
        "curve_caps": list(settings.curve_caps), "apc": settings.apc, "participation": settings.participation,
        "im_gap": settings.im_gap, "taker_fee": settings.taker_fee, "risk_basis": settings.risk_basis,
        "tail_window_days": settings.tail_window_days,
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
    "RISK_BASES",
    "InstrumentCalibration",
    "UnderlyingRisk",
    "reference_series",
    "store_underlyings",
    "underlying_of",
    "underlying_risk",
    "calibrate_and_publish",
    "calibrate_bars",
    "calibrate_store",
    "liquidity_cost_path",
    "path_refit",
    "model_params",
    "published_history",
    "published_model",
    "PublishedCurvePath",
    "published_curve_path",
    "published_path",
    "scaling_exponent_of",
    "scaling_exponent_path",
    "to_parameter_set",
]
