"""The published-backtest use case: replay the IM and MM that ``margincal run`` publishes.

The margins are the causal history of the published rule
(:func:`margincal.margin.published.published_path`, through the path models
``published`` and ``published-mm`` of :mod:`margincal.backtest.models`): the
same function that computes the published numbers, add-on, rounding, cap and
MM included. Each is judged against the realised two-sided loss over the
liquidation horizon (:mod:`margincal.backtest.engine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from margincal.backtest.data import load_returns
from margincal.backtest.engine import BacktestResult, combine_results, run_backtest
from margincal.backtest.policies import make_policy
from margincal.config import CalibrationSettings
from margincal.data.ingest import timeframe_hours

PUBLISHED_MODELS = ("published", "published-mm")


def _settings_kwargs(settings: CalibrationSettings) -> dict[str, Any]:
    keep = ("level", "ewma_lambda", "mm_fraction", "buffer", "rounding", "min_history", "model",
            "reference_size", "half_spread", "rule", "curve_caps", "participation", "check_interval_hours",
            "detection_hours", "im_gap", "taker_fee", "liquidity_window_days", "depth_to_adv", "apc", "risk_basis")
    return {k: getattr(settings, k) for k in keep}


def backtest_published_data(data: object, settings: CalibrationSettings,
                            horizon_hours: float | None = None,
                            underlyings: dict[str, Any] | None = None) -> BacktestResult:
    """Backtest the published IM and MM on ``data`` (InstrumentData with bars; see ``load_returns``).

    The loss horizon is ``horizon_hours`` (default: ``settings.horizon_hours`` for the flat rule; for the
    v2 rule the caller passes one bar, the shortest horizon bars can test, see :func:`backtest_curve`).
    """
    from margincal.backtest.models import PublishedPath

    kw = _settings_kwargs(settings)
    models = [PublishedPath(rate="im", underlyings=underlyings, **kw),
              PublishedPath(rate="mm", underlyings=underlyings, **kw)]
    h = horizon_hours
    if h is None:
        bar_hours = [getattr(d, "bar_hours", None) for d in data]  # type: ignore[attr-defined]
        h = bar_hours[0] if settings.rule == "v2" and bar_hours and bar_hours[0] else settings.horizon_hours
    return run_backtest(data, models=models, policies=[make_policy("raw")], levels=(settings.level,),
                        horizons=(h,), min_history=settings.min_history)


def backtest_published(store: Any, settings: CalibrationSettings,
                       timeframe: str | Sequence[str] = "1d",
                       targets: Sequence[tuple[str, str]] | None = None,
                       version: int | None = None) -> BacktestResult:
    """Out-of-sample backtest of the published IM and MM on every instrument of ``timeframe`` (one or several),
    or on the ``(instrument, timeframe)`` pairs of ``targets`` (what was calibrated).

    Stores the result (kind ``"backtest"``, with ``version`` in its parameters when given: the parameter-set
    version whose rule this backtests) so that ``margincal report`` and the service show it as that
    version's evidence, and returns it.
    """
    from margincal.data.store import open_store, save_result

    if targets is not None:
        tfs = sorted({tf for _, tf in targets})
    else:
        tfs = [timeframe] if isinstance(timeframe, str) else list(timeframe)
    results = []
    from margincal.margin.published import store_underlyings

    for tf in tfs:
        names = None if targets is None else [i for i, t in targets if t == tf]
        data = load_returns(names, timeframe=tf, store=store)
        h = timeframe_hours(tf) if settings.rule == "v2" else None
        und: dict[str, Any] = {}
        if settings.rule == "v2" and settings.risk_basis == "underlying":
            from pathlib import Path

            from margincal.config import resolve_store_path

            sp = resolve_store_path(store)
            if Path(sp).exists():
                with open_store(sp, read_only=True) as con:
                    und = {i: u for (i, _), u in store_underlyings(con, [(d.instrument, tf) for d in data],
                                                                   settings).items()}
        results.append(backtest_published_data(data, settings, horizon_hours=h, underlyings=und))
    res = combine_results(results)
    params: dict[str, Any] = {"instruments": [d["instrument"] for d in res.instruments], "models": list(PUBLISHED_MODELS),
              "policies": ["raw"], "levels": [settings.level], "rule": settings.rule,
              "horizons_hours": ([timeframe_hours(tf) for tf in tfs] if settings.rule == "v2"
                                 else [settings.horizon_hours]),
              "timeframes": tfs, "source": "margincal run"}
    if version is not None:
        params["version"] = int(version)
    with open_store(store) as con:
        save_result(con, res.run_id, "backtest", params, res.to_payload(include_series=True))
    return res


def breach_summary(res: BacktestResult) -> dict[str, dict[str, Any]]:
    """Breaches of the published IM and MM per bar spacing: ``{"IM 1d": {...}, "MM 1h": {...}}``."""
    out: dict[str, dict[str, Any]] = {}
    for p in res.paths:
        if p.model not in PUBLISHED_MODELS:
            continue
        tf = "1d" if abs(p.bar_hours - 24.0) < 1e-9 else f"{p.bar_hours:g}h"
        key = f"{'IM' if p.model == 'published' else 'MM'} {tf}"
        d = out.setdefault(key, {"rate": "IM" if p.model == "published" else "MM", "bars": tf, "instruments": 0,
                                 "n_obs": 0, "breaches": 0})
        d["instruments"] += 1
        d["n_obs"] += p.stats.n_obs
        d["breaches"] += p.stats.n_breaches
    for d in out.values():
        d["breach_rate"] = d["breaches"] / d["n_obs"] if d["n_obs"] else 0.0
    return out


__all__ = ["PUBLISHED_MODELS", "backtest_published", "backtest_published_data", "breach_summary"]


# ----------------------------------------------------------------------------- margin v2 (issue 15)

def _tier_row(instrument: str, timeframe: str, notional: float, rate: str, margin: np.ndarray,
              horizon_hours: np.ndarray, bars: pd.DataFrame, bar_hours: float, level: float) -> dict[str, Any]:
    from margincal.backtest.intrabar import adverse_excursion, close_to_close_loss, horizon_in_bars

    h = float(np.nanmedian(horizon_hours)) if np.isfinite(horizon_hours).any() else bar_hours
    hb = horizon_in_bars(h, bar_hours)
    exc = adverse_excursion(bars, hb)["both"].to_numpy()
    c2c = close_to_close_loss(bars, hb)["both"].to_numpy()
    ok = np.flatnonzero(np.isfinite(margin) & np.isfinite(exc))
    ok = ok[:: hb]  # non-overlapping horizons for the tests
    m, x = margin[ok], exc[ok]
    br = x > m
    row: dict[str, Any] = {"instrument": instrument, "bars": timeframe, "tier_cap": notional, "rate": rate,
                           "horizon_hours": h, "horizon_bars": hb, "n_obs": int(ok.size),
                           "breaches": int(br.sum()), "breach_rate": float(br.mean()) if ok.size else float("nan"),
                           "breach_rate_close": float(np.mean(c2c[ok] > m)) if ok.size else float("nan"),
                           "avg_margin": float(m.mean()) if ok.size else float("nan")}
    row.update(coverage_tests(x, m, level))
    return row


def coverage_tests(loss: np.ndarray, margin: np.ndarray, level: float) -> dict[str, Any]:
    """Kupiec p, Christoffersen independence LR and p, yellow/red rolling 250-observation windows and the cost
    against the hindsight static rate of ``loss > margin`` over non-overlapping close-outs (empty under 20)."""
    from margincal.backtest.stats import christoffersen, cost_of_coverage, rolling_traffic_light

    if loss.size < 20:
        return {}
    br = loss > margin
    ch = christoffersen(br, coverage=level)
    zones = rolling_traffic_light(br, window=250, coverage=level) if loss.size >= 250 else None
    cc = cost_of_coverage(loss, margin)
    return {"kupiec_p": ch.unconditional.pvalue, "lr_ind": ch.independence.statistic,
            "ind_p": ch.independence.pvalue,
            "windows": zones.n_windows if zones else 0, "yellow": zones.n_yellow if zones else 0,
            "red": zones.n_red if zones else 0, "static_rate": cc.static_rate, "avg_over_static": cc.ratio}


def backtest_curve(bars: pd.DataFrame, path: Any, instrument: str, timeframe: str,
                   level: float = 0.99) -> list[dict[str, Any]]:
    """Validate the published margin v2 rule per tier (issue 15 item 4) on its own causal history.

    ``path`` is :func:`margincal.margin.published.published_curve_path` of ``bars`` (the function whose last
    row is published). For each bracket cap ``N`` and each of MM and IM, the rate in force at the close of
    bar ``t`` (from ``bars[: t + 1]``) is judged against the adverse intrabar excursion of either side
    (previous close to the low for a long, to the high for a short) over the next ``ceil(H / bar)`` bars,
    ``H`` the median close-out horizon of that tier (``H_MM`` for MM, ``H_IM`` for IM; at least one bar, so
    tiers closed out within minutes are judged over a whole bar, which is conservative). Observations are
    non-overlapping horizons. Per row: breach rate (intrabar and close to close), Kupiec p, Christoffersen
    independence LR and p, counts of yellow/red rolling 250-observation windows, the average margin against
    the hindsight lowest static rate with no more breaches (``avg_over_static`` < 1: cheaper).
    """
    rows = []
    for nv in path.caps:
        j = path.column(float(nv))
        rows.append(_tier_row(instrument, timeframe, float(nv), "MM", path.mm[:, j], path.h_mm[:, j], bars,
                              path.bar_hours, level))
        rows.append(_tier_row(instrument, timeframe, float(nv), "IM", path.im[:, j], path.h_im[:, j], bars,
                              path.bar_hours, level))
    return rows


def curve_summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Totals per rate and bar spacing: ``{"MM 1h": {"n_obs", "breaches", "breach_rate", "yellow", "red",
    "tiers_over_1pct", "instruments_ind_rejected"}, ...}``."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        d = out.setdefault(f"{r['rate']} {r['bars']}", {"n_obs": 0, "breaches": 0, "yellow": 0, "red": 0,
                                                       "windows": 0, "tiers": 0, "tiers_over_1pct": 0,
                                                       "ind_rejected": 0})
        d["n_obs"] += r["n_obs"]
        d["breaches"] += r["breaches"]
        d["tiers"] += 1
        d["tiers_over_1pct"] += int(r["breach_rate"] > 0.01)
        for k in ("yellow", "red", "windows"):
            d[k] += int(r.get(k, 0))
        d["ind_rejected"] += int(r.get("ind_p", 1.0) < 0.05)
    for d in out.values():
        d["breach_rate"] = d["breaches"] / d["n_obs"] if d["n_obs"] else float("nan")
    return out


__all__ += ["backtest_curve", "coverage_tests", "curve_summary"]
