"""Validation of the published margin v2 rule (issue 15 items 4-5), shared by ``margincal backtest --published``
and docs/make_validation.py.

Every instrument's causal history comes from :func:`margincal.margin.published.published_curve_path` (the
function whose last row ``margincal run`` publishes) and is judged per tier by
:func:`margincal.backtest.published.backtest_curve` (adverse intrabar excursion over the close-out
horizon, Kupiec, Christoffersen, rolling 250-observation zones, cost of coverage). The targets of item 5
are measured here and reported whether met or not.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from margincal.backtest.data import load_returns
from margincal.backtest.procyclicality import max_increase
from margincal.backtest.published import backtest_curve, curve_summary
from margincal.backtest.stats import acerbi_szekely_z2, z2_test
from margincal.config import CalibrationSettings
from margincal.data.ingest import timeframe_hours
from margincal.errors import MargincalError


def _funding(instrument: str) -> pd.Series | None:
    from margincal import datasets

    if not instrument.upper().endswith("-PERP"):
        return None
    try:
        return datasets.load_funding(instrument.split("-")[0].upper())
    except MargincalError:  # no bundled funding for this perpetual: no provision
        return None


Z2_SIMS = 200


def fhs_null_sampler(returns: np.ndarray, bar_hours: float, ewma_lambda_per_day: float,
                     seed_bars: int = 30) -> Any:
    """``simulate(rng)`` for :func:`margincal.backtest.stats.z2_test` under the published FHS, causally.

    Return ``i`` (bar ``i`` to ``i + 1``) is drawn as ``sigma_i z*`` with ``sigma_i`` the EWMA volatility
    from returns before ``i`` (the filter of :class:`margincal.risk.historical.FilteredHistoricalSimulation`,
    decay per day converted to the bar) and ``z*`` one of the standardised residuals the model held at that
    time (``z_j``, ``seed_bars <= j < i``, uniformly: the model's own expanding residual set, so the null
    uses no future data). The loss is that of the rate's two sides, ``max(-expm1(x), expm1(x))``, the
    loss the published one-rate margin faces. Rows with an empty residual set give NaN (drop them).
    """
    from margincal.units import Decay
    from margincal.vol.ewma import ewma_variance

    r = np.asarray(returns, dtype=float)
    lam = Decay(per_day=ewma_lambda_per_day).for_bars(bar_hours)
    sig = np.sqrt(np.maximum(ewma_variance(r, lam, seed_bars), 1e-300))[: r.size]
    z = np.full(r.size, np.nan)
    z[seed_bars:] = r[seed_bars:] / sig[seed_bars:]
    count = np.maximum(np.arange(r.size) - seed_bars, 0)

    def simulate(rng: np.random.Generator) -> np.ndarray:
        u = rng.random(r.size)
        idx = seed_bars + np.floor(u * count).astype(np.int64)
        x = np.where(count > 0, sig * z[np.minimum(idx, r.size - 1)], np.nan)
        return np.maximum(-np.expm1(x), np.expm1(x))

    return simulate


def rate_row_at(index: pd.Index, bar_hours: float, fine_index: pd.Index, fine_hours: float) -> np.ndarray:
    """Row of the coarse history (labelled by bar open time) whose rate is in force at the close of each fine
    bar: the last coarse bar CLOSED by then (-1 before the first). Both sides in ns (bars read back from the
    store carry microsecond ticks, the bundled files nanoseconds)."""
    known = (pd.DatetimeIndex(index).as_unit("ns") + pd.Timedelta(hours=bar_hours)).asi8
    close = (pd.DatetimeIndex(fine_index).as_unit("ns") + pd.Timedelta(hours=fine_hours)).asi8
    return np.searchsorted(known, close, side="right") - 1


def gapless_excursion(fine: pd.DataFrame, horizon_bars: int, bar_hours: float) -> np.ndarray:
    """Adverse excursion of either side over the next ``horizon_bars`` bars of ``fine``, NaN where that window
    is not ``horizon_bars`` consecutive bars (the bundled minute files have stretches and missing bars: a
    close-out window never spans a gap)."""
    from margincal.backtest.intrabar import adverse_excursion

    exc = adverse_excursion(fine, horizon_bars)["both"].to_numpy()
    ts = pd.DatetimeIndex(fine.index).as_unit("ns").asi8
    whole = np.zeros(ts.size, dtype=bool)
    if ts.size > horizon_bars:
        step = int(round(bar_hours * 3600e9))
        whole[: ts.size - horizon_bars] = (ts[horizon_bars:] - ts[: ts.size - horizon_bars]) == horizon_bars * step
    return np.where(whole, exc, np.nan)


def fine_rows(bars: pd.DataFrame, path: Any, instrument: str, timeframe: str,
              fine_sets: Sequence[tuple[str, pd.DataFrame]], level: float = 0.99) -> list[dict[str, Any]]:
    """Tiers whose close-out is shorter than the instrument's own bar, judged on finer bundled bars.

    The rate in force at each fine bar's close is the published rate of the last CLOSED bar of ``bars`` (the
    history is indexed by bar open time, so bar ``t``'s rate is known from ``t + bar``). The loss is the
    adverse excursion of either side over ``ceil(H / fine bar)`` fine bars after that close, ``H`` the tier's
    median close-out horizon over the fine data's period; non-overlapping close-outs; windows across a gap of
    the fine data are dropped. Each tier and rate is judged on ONE of ``fine_sets`` (``(label, bars)``): among
    those whose bar is no longer than ``H`` (bars that resolve the horizon), the one covering the most time;
    if none resolves it, the finest (the horizon is then rounded up to one fine bar, conservative). Tiers
    with ``H`` of at least one own bar are left to :func:`margincal.backtest.published.backtest_curve`.
    MM rows also carry each venue preset's MM at the same notional (``<preset>_mm``, at the median price of
    the close-outs: the presets' bracket rates depend on the USD notional) and its breach rate over the SAME
    close-outs (``<preset>_breach_rate``).
    """
    from margincal.backtest.intrabar import horizon_in_bars
    from margincal.backtest.published import coverage_tests
    from margincal.margin import presets
    from margincal.margin.liquidity import index_bar_hours

    sets = []
    for label, fine in fine_sets:
        fh = index_bar_hours(fine.index)
        k = rate_row_at(bars.index, path.bar_hours, fine.index, fh)
        sets.append((label, fine, fh, k, len(fine) * fh))
    rows: list[dict[str, Any]] = []
    excursions: dict[tuple[str, int], np.ndarray] = {}
    for nv in path.caps:
        j = path.column(float(nv))
        for rate, m_all, h_all in (("MM", path.mm[:, j], path.h_mm[:, j]), ("IM", path.im[:, j], path.h_im[:, j])):
            cands = []
            for label, fine, fh, k, span in sets:
                hk = h_all[k[k >= 0]]
                h = float(np.nanmedian(hk)) if np.isfinite(hk).any() else np.nan
                if h < path.bar_hours:
                    cands.append((fh <= h, span if fh <= h else -fh, label, fine, fh, k, h))
            if not cands:
                continue
            _, _, label, fine, fh, k, h = max(cands, key=lambda c: (c[0], c[1]))
            hb = horizon_in_bars(h, fh)
            if (label, hb) not in excursions:  # tiers and rates often share a horizon in fine bars
                excursions[(label, hb)] = gapless_excursion(fine, hb, fh)
            exc = excursions[(label, hb)]
            m = np.where(k >= 0, m_all[np.clip(k, 0, None)], np.nan)
            ok = np.flatnonzero(np.isfinite(m) & np.isfinite(exc))[::hb]
            x, mm = exc[ok], m[ok]
            row: dict[str, Any] = {
                "instrument": instrument, "bars": timeframe, "data": label, "tier_cap": float(nv), "rate": rate,
                "horizon_hours": h, "horizon_min": 60 * h, "bars_tested": hb, "fine_bar_min": 60 * fh,
                "n_obs": int(ok.size),
                "first": str(fine.index[ok[0]].date()) if ok.size else "",
                "last": str(fine.index[ok[-1]].date()) if ok.size else "",
                "breaches": int(np.count_nonzero(x > mm)),
                "breach_rate": float(np.mean(x > mm)) if ok.size else float("nan"),
                "avg_margin": float(mm.mean()) if ok.size else float("nan")}
            row.update(coverage_tests(x, mm, level))
            if ok.size and rate == "MM":  # the venues' MM at the same notional over the same close-outs
                price = float(np.median(fine["close"].to_numpy(float)[ok]))
                for name in _venue_presets(instrument):
                    vm = float(np.asarray(presets.get(name).margin_rate(np.array([float(nv)]),
                                                                         price=price).mm).ravel()[0])
                    row[f"{name}_mm"] = vm
                    row[f"{name}_breach_rate"] = float(np.mean(x > vm))
            rows.append(row)
    return rows


def fine_sets_for(instrument: str, timeframe: str) -> list[tuple[str, pd.DataFrame]]:
    """The bundled bars finer than ``timeframe`` that can judge ``instrument``'s short tiers: the coin's
    1-minute spot file for every BTC/ETH product, its own 5-minute perpetual file for a perpetual, and the
    coin's hourly spot file for a daily spot pair."""
    from margincal import datasets
    from margincal.errors import DataError

    coin, hours = instrument.upper().split("-")[0], timeframe_hours(timeframe)
    perp = instrument.upper().endswith("-PERP")
    wanted = [("1m", "spot", "1m spot")] + ([("5m", "perpetual", "5m perp")] if perp else [])
    out: list[tuple[str, pd.DataFrame]] = []
    for tf, market, label in wanted:
        if timeframe_hours(tf) < hours:
            with contextlib.suppress(DataError):  # no bundled minute file for this coin
                out.append((label, datasets.load_minute(coin, tf, market)))
    if hours > 1 and not perp and coin in datasets.HOURLY_SPOT_SYMBOLS:
        out.append(("1h spot", datasets.load_hourly(coin, "spot")))
    return out


#: the named crash days of issue 15 item 4 (UTC days; judged where an instrument's data cover them)
NAMED_CRASH_DAYS: tuple[tuple[str, str], ...] = (
    ("2020-03-12", "COVID 2020-03-12"),
    *((f"2022-05-{d:02d}", "LUNA 2022-05-09..12") for d in (9, 10, 11, 12)),
    *((f"2022-11-{d:02d}", "FTX 2022-11-08..10") for d in (8, 9, 10)),
    ("2025-10-10", "cascade 2025-10-10"),
)
CRASH_TIERS = (5e4, 1e6, 1e7, 1e8, 1e9)
#: the finer bars (:func:`fine_sets_for` labels) on which :func:`validate_published` judges the named days again:
#: the perpetuals' own 5-minute bars (FTX and 2025-10-10) and the hourly spot bars of the daily pairs (every
#: named day); the 1-minute stretches hold none of the named days
CRASH_FINE = ("5m perp", "1h spot")


def _venue_presets(instrument: str) -> tuple[str, ...]:
    from margincal.margin.presets import VENUE_PRESETS

    return VENUE_PRESETS.get(instrument.split("-")[0].upper(), ())


def crash_day_rows(bars: pd.DataFrame, path: Any, instrument: str, timeframe: str, *,
                   days: Sequence[tuple[str, str]] = NAMED_CRASH_DAYS,
                   tiers: Sequence[float] = CRASH_TIERS, fine: pd.DataFrame | None = None,
                   fine_label: str | None = None) -> list[dict[str, Any]]:
    """The named crash days at the close-out horizon, for the engine's MM and every venue preset's MM.

    For each day ``D`` and tier cap ``N`` (those of ``tiers`` on the curve): every close-out that starts at
    the close of a bar ``t`` whose NEXT bar opens within ``D`` (24 on hourly bars, one on daily bars) is
    judged over the tier's close-out horizon at that time, ``ceil(H_MM_t(N) / bar)`` bars (at least one),
    against the adverse excursion of either side (:func:`margincal.backtest.intrabar.adverse_excursion`).
    The engine's MM is the published rate in force at that close (``path`` row ``t``); a venue's is its
    preset MM rate at ``N`` (at the close price). Venues publish no close-out time: each venue is judged
    over the SAME horizon, the time the market allowed to close ``N`` that day (the participation rule of
    :mod:`margincal.margin.horizon`), so engine and venues face the same loss. Per row: the worst excursion
    of the day, the close-outs in the day, and for the engine and each venue the breaches among them and the
    margin in force at the worst one.

    ``fine`` (e.g. the bundled 5-minute perpetual bars of October 2025): the close-outs start at every fine
    bar of the day instead, with the rate published at the last CLOSED bar of ``bars`` and the horizon in
    fine bars (so a close-out of minutes is judged over minutes, not over a whole hour).
    """
    from margincal.backtest.intrabar import adverse_excursion, horizon_in_bars
    from margincal.margin import presets
    from margincal.margin.liquidity import index_bar_hours

    if not isinstance(bars.index, pd.DatetimeIndex):
        return []
    if fine is None:
        ev, ev_h = bars, path.bar_hours
        row_of = np.arange(len(bars))
    else:
        ev, ev_h = fine, index_bar_hours(fine.index)
        row_of = rate_row_at(bars.index, path.bar_hours, fine.index, ev_h)
    idx = ev.index
    close = ev["close"].to_numpy(float)
    venues = _venue_presets(instrument)
    exc_cache: dict[int, np.ndarray] = {}
    rows: list[dict[str, Any]] = []
    for day, label in days:
        start = pd.Timestamp(day, tz="UTC") if idx.tz is not None else pd.Timestamp(day)
        nxt = np.flatnonzero((idx >= start) & (idx < start + pd.Timedelta(days=1)))
        ts = nxt - 1
        ts = ts[(ts >= 0) & (row_of[np.clip(ts, 0, None)] >= 0)]
        if ts.size == 0:
            continue
        rows_t = row_of[ts]
        for nv in tiers:
            if not np.any(np.isclose(path.notional, nv)):
                continue
            j = path.column(float(nv))
            m, hh = path.mm[rows_t, j], path.h_mm[rows_t, j]
            ok = np.isfinite(m) & np.isfinite(hh)
            if not ok.any():
                continue
            t_ok, m_ok, h_ok = ts[ok], m[ok], hh[ok]
            loss = np.empty(t_ok.size)
            hbs = np.empty(t_ok.size, dtype=int)
            for k, (t, h) in enumerate(zip(t_ok, h_ok, strict=True)):
                hb = horizon_in_bars(float(h), ev_h)
                if hb not in exc_cache:
                    exc_cache[hb] = adverse_excursion(ev, hb)["both"].to_numpy()
                loss[k], hbs[k] = exc_cache[hb][t], hb
            fin = np.isfinite(loss)
            if not fin.any():
                continue
            t_ok, m_ok, h_ok, loss, hbs = t_ok[fin], m_ok[fin], h_ok[fin], loss[fin], hbs[fin]
            w = int(np.argmax(loss))
            row: dict[str, Any] = {"instrument": instrument, "bars": fine_label or timeframe, "day": day,
                                   "event": label, "tier_cap": float(nv), "horizon_hours": float(h_ok[w]),
                                   "horizon_bars": int(hbs[w]), "closeouts": int(loss.size),
                                   "worst_excursion": float(loss[w]), "engine_mm": float(m_ok[w]),
                                   "engine_breaches": int(np.count_nonzero(loss > m_ok))}
            for name in venues:
                vm = float(np.asarray(presets.get(name).margin_rate(np.array([nv]),
                                                                     price=float(close[t_ok[w]])).mm).ravel()[0])
                row[f"{name}_mm"] = vm
                row[f"{name}_breaches"] = int(np.count_nonzero(loss > vm))
            rows.append(row)
    return rows


def crash_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`crash_day_rows` per named EVENT (its days pooled): close-outs, the worst excursion, and the
    breaches of the engine's MM and of each venue's MM (``*_breaches``), with the margins at the worst
    close-out of the event (``engine_mm``, ``<venue>_mm``)."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        key = (r["instrument"], r["bars"], r["event"], r["tier_cap"])
        acc = out.get(key)
        if acc is None:
            out[key] = {**r, "days": 1, "first_day": r["day"]}
            continue
        acc["days"] += 1
        acc["closeouts"] += r["closeouts"]
        for k, v in r.items():
            if k.endswith("_breaches"):
                acc[k] += v
        if r["worst_excursion"] > acc["worst_excursion"]:
            for k in ("worst_excursion", "horizon_hours", "horizon_bars", "day"):
                acc[k] = r[k]
            for k, v in r.items():
                if k.endswith("_mm"):
                    acc[k] = v
    return list(out.values())


def underlying_resolver(settings: CalibrationSettings, *, store: Any = None, use_store: bool = False) -> Any:
    """``resolve(instrument, timeframe, settings=None) -> UnderlyingRisk | None``: the coin's shared tail risk
    (:func:`margincal.margin.published.reference_series` over the hourly and daily series available), as
    :func:`margincal.margin.published.store_underlyings` does for ``margincal run``; None for the product
    basis or when the instrument is its own reference."""
    from margincal.margin.published import reference_series, underlying_risk

    series: list[tuple[str, str, int]] = []
    frames: dict[tuple[str, str], pd.DataFrame] = {}
    if settings.rule == "v2" and settings.risk_basis == "underlying":
        for tf in ("1h", "1d"):
            try:
                data = load_returns(None, timeframe=tf, store=store, use_store=use_store)
            except MargincalError:
                continue
            for d in data:
                if d.bars is not None:
                    series.append((d.instrument, tf, len(d.bars)))
                    frames[(d.instrument, tf)] = d.bars
    cache: dict[tuple[str, str, str], Any] = {}

    def resolve(instrument: str, timeframe: str, cfg: CalibrationSettings | None = None) -> Any:
        c = cfg or settings
        if not series or c.risk_basis != "underlying":
            return None
        ref = reference_series(instrument, series)
        if ref is None or ref == (instrument, timeframe) or ref not in frames:
            return None
        key = (*ref, repr(c))
        if key not in cache:
            cache[key] = underlying_risk(frames[ref], ref[0], ref[1], c)
        return cache[key]

    return resolve


def validate_published(settings: CalibrationSettings | None = None, *,
                       timeframes: Sequence[str] = ("1d", "1h"), instruments: Sequence[str] | None = None,
                       store: Any = None, use_store: bool = False) -> dict[str, Any]:
    """Per-tier validation rows, totals, per-instrument zone counts, Z2 of the one-bar ES (two-sided loss)
    with its p-value simulated under the model's own causal null (:func:`fhs_null_sampler`,
    :data:`Z2_SIMS` paths), APC and the item-5 targets.

    Hourly bars: the perpetuals only (the instruments ``margincal run`` publishes on hourly bars).
    """
    from margincal.margin.published import published_curve_path

    s = settings or CalibrationSettings()
    off = dataclasses.replace(s, apc="off")
    underlying_for = underlying_resolver(s, store=store, use_store=use_store)
    rows: list[dict[str, Any]] = []
    apc_rows: list[dict[str, Any]] = []
    z2_rows: list[dict[str, Any]] = []
    sub_rows: list[dict[str, Any]] = []
    crash_rows: list[dict[str, Any]] = []
    for tf in timeframes:
        names = instruments
        if names is None and tf != "1d":
            names = ["BTC-PERP", "ETH-PERP"]
        try:
            data = load_returns(names, timeframe=tf, store=store, use_store=use_store)
        except MargincalError:
            if instruments is None:
                raise
            continue  # a named instrument without bars of this spacing
        for d in data:
            if d.bars is None:
                continue
            fund = _funding(d.instrument)
            und = underlying_for(d.instrument, tf)
            p = published_curve_path(d.bars, tf, s, funding=fund, underlying=und)
            rows += backtest_curve(d.bars, p, d.instrument, tf, s.level)
            crash_rows += crash_day_rows(d.bars, p, d.instrument, tf)
            fine_sets = fine_sets_for(d.instrument, tf)
            if fine_sets:
                sub_rows += fine_rows(d.bars, p, d.instrument, tf, fine_sets, s.level)
            for label, fine in fine_sets:  # the named days again on the finer bars that cover them
                if label in CRASH_FINE:
                    crash_rows += crash_day_rows(d.bars, p, d.instrument, tf, fine=fine, fine_label=label)
            und_off = underlying_for(d.instrument, tf, off)
            q = published_curve_path(d.bars, tf, off, funding=fund, underlying=und_off)
            j = p.column(s.reference_size)
            lag = max(1, int(round(30 * 24 / timeframe_hours(tf))))
            a, b = p.im[:, j], q.im[:, j]
            ok = np.isfinite(a) & np.isfinite(b)
            # ES backtest (Acerbi-Szekely Z2) of the one-bar ES the margin is built on, before APC
            r = np.diff(np.log(d.bars["close"].to_numpy(float)))
            loss = np.maximum(-np.expm1(r), np.expm1(r))
            v_, e_ = p.var_raw[:-1], p.loss_raw[:-1]
            okz = np.isfinite(v_) & np.isfinite(e_) & (e_ > 0)
            z2p, nsim = float("nan"), 0
            if s.model == "fhs":  # the null below is the FHS's own; other models report the statistic only
                sim_all = fhs_null_sampler(r, p.bar_hours, s.ewma_lambda)
                okz &= np.isfinite(sim_all(np.random.default_rng(0)))
                mask = okz.copy()

                def simulate(rng: np.random.Generator, f: Any = sim_all, m: np.ndarray = mask) -> np.ndarray:
                    return np.asarray(f(rng))[m]

                zt = z2_test(loss[okz], v_[okz], e_[okz], coverage=s.level, simulate=simulate, n_sims=Z2_SIMS,
                             seed=15)
                z2p, nsim = zt.pvalue, zt.n_sims
            z2_rows.append({"instrument": d.instrument, "bars": tf, "n_obs": int(okz.sum()),
                            "var_breaches": int(np.count_nonzero(loss[okz] > v_[okz])),
                            "expected": round((1 - s.level) * int(okz.sum()), 1),
                            "z2": acerbi_szekely_z2(loss[okz], v_[okz], e_[okz], coverage=s.level),
                            "z2_pvalue": z2p, "n_sims": nsim})
            apc_rows.append({"instrument": d.instrument, "bars": tf,
                             "max_30d_rise_emir_a": max_increase(a[ok], lag),
                             "max_30d_rise_off": max_increase(b[ok], lag),
                             "avg_im_emir_a": float(a[ok].mean()), "avg_im_off": float(b[ok].mean()),
                             "im_at_cap_share": float(np.mean(a[ok] >= 1.0 - 1e-9))})
    per_inst: dict[str, dict[str, Any]] = {}
    for r in rows:
        k = f"{r['instrument']} {r['rate']}"
        acc = per_inst.setdefault(k, {"instrument": r["instrument"], "rate": r["rate"], "bars": r["bars"],
                                    "tiers": 0, "tiers_over_1pct": 0, "windows": 0, "yellow": 0, "red": 0,
                                    "ind_rejected": 0, "cheaper_than_static": 0})
        acc["tiers"] += 1
        acc["tiers_over_1pct"] += int(r["breach_rate"] > 1 - s.level)
        for c in ("windows", "yellow", "red"):
            acc[c] += int(r.get(c, 0))
        acc["ind_rejected"] += int(r.get("ind_p", 1.0) < 0.05)
        acc["cheaper_than_static"] += int(r.get("avg_over_static", np.inf) < 1.0)
    finest = finest_rows(rows, sub_rows)
    return {"rows": rows, "summary": curve_summary(rows), "per_instrument": list(per_inst.values()),
            "apc": apc_rows, "z2": z2_rows, "sub_bar": sub_rows, "crash": crash_rows,
            "targets": item5_targets(rows, apc_rows, s.level), "finest": finest,
            "targets_finest": item5_targets(finest, apc_rows, s.level)}


APC_TRADEOFF = ("off", "emir_a", "emir_a_speed", "emir_a_50", "emir_a_100")
"""The anti-procyclicality presets :func:`apc_tradeoff` compares (:data:`margincal.margin.apc.APC_PRESETS`)."""


def apc_tradeoff(settings: CalibrationSettings | None = None, *, names: Sequence[str] = APC_TRADEOFF,
                 timeframes: Sequence[str] = ("1d", "1h"), instruments: Sequence[str] | None = None,
                 store: Any = None, use_store: bool = False) -> list[dict[str, Any]]:
    """What each anti-procyclicality preset does to the published IM at the reference size: its largest
    30-day rise and its average against ``apc="off"``, and the breach rates of the reference tier's MM and IM
    over whole own bars (:func:`margincal.backtest.published.backtest_curve`). One row per instrument and
    preset; hourly bars for the perpetuals only, as :func:`validate_published`."""
    from margincal.margin.published import published_curve_path

    s = settings or CalibrationSettings()
    rows: list[dict[str, Any]] = []
    for tf in timeframes:
        names_i = instruments if instruments is not None or tf == "1d" else ["BTC-PERP", "ETH-PERP"]
        for d in load_returns(names_i, timeframe=tf, store=store, use_store=use_store):
            if d.bars is None:
                continue
            off_rise = off_avg = float("nan")
            for name in ("off", *[n for n in names if n != "off"]):
                c = dataclasses.replace(s, apc=name)
                und = underlying_resolver(c, store=store, use_store=use_store)(d.instrument, tf)
                p = published_curve_path(d.bars, tf, c, funding=_funding(d.instrument), underlying=und)
                j = p.column(c.reference_size)
                im = p.im[:, j][np.isfinite(p.im[:, j])]
                rise = max_increase(im, max(1, int(round(30 * 24 / timeframe_hours(tf)))))
                avg = float(im.mean())
                if name == "off":
                    off_rise, off_avg = rise, avg
                cap = float(p.caps[np.searchsorted(p.caps, c.reference_size)])
                tier = {r["rate"]: r for r in backtest_curve(d.bars, p, d.instrument, tf, c.level)
                        if r["tier_cap"] == cap}
                rows.append({"instrument": d.instrument, "bars": tf, "apc": name, "max_30d_rise": rise,
                             "rise_over_off": rise / off_rise if off_rise > 0 else float("nan"), "avg_im": avg,
                             "avg_im_over_off": avg / off_avg if off_avg > 0 else float("nan"),
                             "mm_breach_rate": tier["MM"]["breach_rate"], "im_breach_rate": tier["IM"]["breach_rate"]})
    return [r for r in rows if r["apc"] in names]


TAIL_WINDOWS: tuple[float | None, ...] = (None, 4 * 365.25, 2 * 365.25, 365.25)
"""Tail memories :func:`tail_memory_tradeoff` compares (days of residuals; None: all)."""


def tail_memory_tradeoff(settings: CalibrationSettings | None = None, *,
                         windows: Sequence[float | None] = TAIL_WINDOWS) -> list[dict[str, Any]]:
    """The published rule with each tail memory (``CalibrationSettings.tail_window_days``), validated as
    :func:`validate_published` does: per window the item-5 targets at the finest bundled resolution, the
    pooled MM breach rate over every tier's close-outs, the average IM at the reference size over the
    instruments and the share of bars where that IM is at the 100% cap."""
    s = settings or CalibrationSettings()
    rows = []
    for w in windows:
        v = validate_published(dataclasses.replace(s, tail_window_days=w))
        mm = [r for r in v["finest"] if r["rate"] == "MM"]
        rows.append({"tail_window_days": w, **{k: a for k, (a, _) in v["targets_finest"].items()},
                     "of": {k: b for k, (_, b) in v["targets_finest"].items()},
                     "mm_breach_rate": sum(r["breaches"] for r in mm) / max(1, sum(r["n_obs"] for r in mm)),
                     "avg_im": float(np.mean([a["avg_im_emir_a"] for a in v["apc"]])),
                     "im_at_cap_share": float(np.mean([a["im_at_cap_share"] for a in v["apc"]]))})
    return rows


def finest_rows(rows: list[dict[str, Any]], fine: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every tier and rate judged at the finest resolution the bundled data offer: its :func:`fine_rows` row
    where there is one (a close-out shorter than the own bar), else its whole-bar row."""
    by_key = {(r["instrument"], r["tier_cap"], r["rate"]): r for r in fine}
    return [by_key.get((r["instrument"], r["tier_cap"], r["rate"]), r) for r in rows]


def item5_targets(rows: list[dict[str, Any]], apc_rows: list[dict[str, Any]],
                  level: float) -> dict[str, tuple[int, int]]:
    """Issue 15 item 5, as ``(met, out of)``: MM tiers breached on at most ``1 - level`` of close-outs,
    instruments with no red 250-window and with independence not rejected at 5% on any tier, IM tiers cheaper
    than the hindsight static rate, instruments whose anti-procyclicality halves the largest 30-day rise."""
    mm = [r for r in rows if r["rate"] == "MM"]
    im = [r for r in rows if r["rate"] == "IM"]
    insts = sorted({r["instrument"] for r in rows})
    return {
        "mm_tiers_within_1pct": (sum(r["breach_rate"] <= 1 - level for r in mm), len(mm)),
        "instruments_without_red_window": (
            sum(all(r.get("red", 0) == 0 for r in rows if r["instrument"] == i) for i in insts), len(insts)),
        "instruments_independence_not_rejected": (
            sum(all(r.get("ind_p", 1.0) >= 0.05 for r in rows if r["instrument"] == i) for i in insts), len(insts)),
        "im_tiers_cheaper_than_static": (sum(r.get("avg_over_static", np.inf) < 1.0 for r in im), len(im)),
        "instruments_apc_halves_30d_rise": (
            sum(a["max_30d_rise_emir_a"] <= 0.5 * a["max_30d_rise_off"] for a in apc_rows), len(apc_rows)),
    }


__all__ = ["APC_TRADEOFF", "CRASH_FINE", "CRASH_TIERS", "NAMED_CRASH_DAYS", "TAIL_WINDOWS", "Z2_SIMS", "apc_tradeoff", "crash_day_rows",
           "crash_summary", "fhs_null_sampler", "fine_rows", "fine_sets_for", "finest_rows", "gapless_excursion",
           "item5_targets", "rate_row_at", "tail_memory_tradeoff", "underlying_resolver", "validate_published"]
