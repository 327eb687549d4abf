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

from margincal.backtest.data import load_returns
from margincal.backtest.engine import BacktestResult, combine_results, run_backtest
from margincal.backtest.policies import make_policy
from margincal.config import CalibrationSettings

PUBLISHED_MODELS = ("published", "published-mm")


def _settings_kwargs(settings: CalibrationSettings) -> dict[str, Any]:
    keep = ("level", "ewma_lambda", "mm_fraction", "buffer", "rounding", "min_history", "model",
            "reference_size", "half_spread")
    return {k: getattr(settings, k) for k in keep}


def backtest_published_data(data: object, settings: CalibrationSettings) -> BacktestResult:
    """Backtest the published IM and MM on ``data`` (InstrumentData with bars; see ``load_returns``)."""
    from margincal.backtest.models import PublishedPath

    kw = _settings_kwargs(settings)
    models = [PublishedPath(rate="im", **kw), PublishedPath(rate="mm", **kw)]
    return run_backtest(data, models=models, policies=[make_policy("raw")], levels=(settings.level,),
                        horizons=(settings.horizon_hours,), min_history=settings.min_history)


def backtest_published(store: Any, settings: CalibrationSettings,
                       timeframe: str | Sequence[str] = "1d",
                       targets: Sequence[tuple[str, str]] | None = None) -> BacktestResult:
    """Out-of-sample backtest of the published IM and MM on every instrument of ``timeframe`` (one or several),
    or on the ``(instrument, timeframe)`` pairs of ``targets`` (what was calibrated).

    Stores the result (kind ``"backtest"``) so that ``margincal report`` and the
    service show it, and returns it.
    """
    from margincal.data.store import open_store, save_result

    if targets is not None:
        tfs = sorted({tf for _, tf in targets})
    else:
        tfs = [timeframe] if isinstance(timeframe, str) else list(timeframe)
    results = []
    for tf in tfs:
        names = None if targets is None else [i for i, t in targets if t == tf]
        data = load_returns(names, timeframe=tf, store=store)
        results.append(backtest_published_data(data, settings))
    res = combine_results(results)
    params = {"instruments": [d["instrument"] for d in res.instruments], "models": list(PUBLISHED_MODELS),
              "policies": ["raw"], "levels": [settings.level], "horizons_hours": [settings.horizon_hours],
              "timeframes": tfs, "source": "margincal run"}
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
