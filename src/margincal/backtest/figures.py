"""Plotly figures of a backtest: margin in force vs realised loss, breaches marked.

:func:`backtest_figures` takes a :class:`~margincal.backtest.engine.BacktestResult`
or a stored payload with ``series`` (``result.to_payload(include_series=True)``,
what ``margincal backtest --store`` saves) and returns one figure per
instrument x horizon x level. The HTML report adds them as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from margincal.errors import DataError

_SYMBOLS = ("x", "circle-open", "diamond-open", "triangle-up-open", "square-open", "star-open")
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def _series_from_result(result: Any, policies: Sequence[str]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, float, float], dict[str, Any]] = {}
    for p in result.paths:
        if p.policy not in policies:
            continue
        key = (p.instrument, p.horizon_hours, p.level)
        g = groups.setdefault(key, {"instrument": p.instrument, "horizon_hours": p.horizon_hours, "level": p.level,
                                    "index": p.index, "loss_long": p.loss_long, "loss_short": p.loss_short,
                                    "margins": {}})
        g["margins"][p.model if p.policy == "raw" else (p.policy if p.model == "-" else f"{p.model}/{p.policy}")] = (
            p.margin)
    return list(groups.values())


def _series_from_payload(payload: dict[str, Any], policies: Sequence[str]) -> list[dict[str, Any]]:
    if "series" not in payload:
        raise DataError("the backtest payload has no 'series'; store it with to_payload(include_series=True)")
    groups: dict[tuple[str, float, float], dict[str, Any]] = {}
    for s in payload["series"]:
        if s["policy"] not in policies:
            continue
        key = (s["instrument"], s["horizon_hours"], s["level"])
        g = groups.setdefault(key, {"instrument": s["instrument"], "horizon_hours": s["horizon_hours"],
                                    "level": s["level"], "index": pd.DatetimeIndex(pd.to_datetime(s["index"])),
                                    "loss_long": np.asarray(s["loss_long"], dtype=float),
                                    "loss_short": np.asarray(s["loss_short"], dtype=float), "margins": {}})
        lab = s["model"] if s["policy"] == "raw" else (s["policy"] if s["model"] == "-" else
                                                       f"{s['model']}/{s['policy']}")
        g["margins"][lab] = np.asarray(s["margin"], dtype=float)
    return list(groups.values())


def backtest_figures(result: Any, *, policies: Sequence[str] = ("raw", "static"),
                     instruments: Sequence[str] | None = None, max_points: int = 5000) -> list[go.Figure]:
    """One figure per instrument x horizon x level: realised two-sided loss (grey), each margin path
    (a line per model under ``policies``; model-free rows such as ``static`` dashed) and its breaches
    (markers where the loss exceeded that margin)."""
    series = (_series_from_payload(result, policies) if isinstance(result, dict)
              else _series_from_result(result, policies))
    figs = []
    for g in series:
        if instruments and g["instrument"] not in instruments:
            continue
        idx = pd.DatetimeIndex(g["index"])
        loss = np.maximum(g["loss_long"], g["loss_short"])
        step = max(1, int(np.ceil(len(idx) / max_points)))
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=idx[::step], y=loss[::step], mode="lines", name="realised loss (either side)",
                                 line={"color": "#9aa3b2", "width": 1}))
        for k, (lab, m) in enumerate(g["margins"].items()):
            color = _COLORS[k % len(_COLORS)]
            dash = "dash" if ("static" in lab or lab.startswith("preset:")) else "solid"
            fig.add_trace(go.Scatter(x=idx[::step], y=m[::step], mode="lines", name=f"margin {lab}",
                                     line={"color": color, "width": 1.3, "dash": dash}))
            b = np.flatnonzero(loss > m)
            fig.add_trace(go.Scatter(x=idx[b], y=loss[b], mode="markers", name=f"breaches {lab} ({b.size})",
                                     marker={"color": color, "symbol": _SYMBOLS[k % len(_SYMBOLS)], "size": 8}))
        fig.update_layout(
            title=(f"{g['instrument']}: margin in force vs realised {g['horizon_hours']:g}h loss "
                   f"(coverage {g['level']:.2%}, breach = loss of the losing side above the margin)"),
            yaxis={"title": "fraction of notional", "tickformat": ".0%"},
            template="plotly_white", height=460, legend={"orientation": "h", "y": -0.15},
            margin={"l": 60, "r": 20, "t": 60, "b": 40})
        figs.append(fig)
    return figs


__all__ = ["backtest_figures"]
