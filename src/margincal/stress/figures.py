"""Plotly figures of stress and cascade results, for the HTML report.

Both functions accept the result object or its stored payload (``latest_result(con, kind)["payload"]``),
so ``margincal report`` can draw them from the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

_LAYOUT = {"height": 380, "margin": {"l": 60, "r": 20, "t": 50, "b": 40}}


def _payload(result: Any) -> Mapping[str, Any]:
    if isinstance(result, Mapping):
        return result
    if hasattr(result, "payload"):
        return result.payload()
    if hasattr(result, "summary"):
        return {"summary": result.summary()}
    raise TypeError(f"cannot draw figures for {type(result).__name__}")


def cascade_figures(result: Any) -> list[Any]:
    """Bad debt and liquidated notional per policy and event, price paths, Monte Carlo bad debt."""
    import plotly.graph_objects as go

    p = _payload(result)
    rows = list(p.get("rows") or [])
    figs = []
    events = list(dict.fromkeys(r["event"] for r in rows))
    pols = list(dict.fromkeys(r["policy"] for r in rows))
    for metric, title in (("bad_debt", "Bad debt"), ("liquidated_notional", "Liquidated notional")):
        fig = go.Figure()
        for pol in pols:
            ys = [next((r.get(metric) for r in rows if r["event"] == ev and r["policy"] == pol), None) for ev in events]
            fig.add_trace(go.Bar(name=pol, x=[e if e != "mc" else "Monte Carlo (mean)" for e in events], y=ys))
        # categories such as "2025-10-10" would otherwise be read as dates, dropping the other bars
        fig.update_layout(barmode="group", title=f"{title} per margin policy (quote currency)",
                          yaxis_title="USDT", xaxis={"type": "category"}, **_LAYOUT)
        figs.append(fig)
    for ev, path in (p.get("paths") or {}).items():
        fig = go.Figure()
        x = np.arange(len(path["fundamental"])) / 4.0
        fig.add_trace(go.Scatter(x=x, y=path["fundamental"], name="real perp path (exogenous)", line={"width": 1}))
        for pol, m in path.get("marks", {}).items():
            fig.add_trace(go.Scatter(x=x, y=m, name=f"mark with {pol} liquidations", line={"width": 1}))
        fig.update_layout(title=f"{ev}: price with simulated liquidation impact", xaxis_title="hours from start",
                          yaxis_title="BTC perp price", **_LAYOUT)
        figs.append(fig)
    mc = p.get("mc") or {}
    if mc:
        fig = go.Figure()
        for pol, m in mc.items():
            if m.get("bad_debt") is not None:
                fig.add_trace(go.Box(y=m["bad_debt"], name=pol, boxpoints="outliers"))
        fig.update_layout(title="Monte Carlo bad debt per policy", yaxis_title="USDT", **_LAYOUT)
        figs.append(fig)
    return figs


def book_stress_figures(result: Any) -> list[Any]:
    """Total shortfall and Cover-1 / Cover-2 per scenario."""
    import plotly.graph_objects as go

    rows = list(_payload(result).get("summary") or [])
    if not rows:
        return []
    names = [r["scenario"] for r in rows]
    fig = go.Figure()
    for key, label in (("total_shortfall", "total loss beyond margin"), ("cover2", "Cover-2"), ("cover1", "Cover-1")):
        fig.add_trace(go.Bar(name=label, x=names, y=[r.get(key) for r in rows]))
    fig.update_layout(barmode="group", title="Book stress: losses beyond margin per scenario", yaxis_title="USDT",
                      xaxis={"type": "category"}, **{**_LAYOUT, "height": 460})
    return [fig]


def stress_figures(result: Any) -> list[Any]:
    """Figures for a policy comparison (cascade) or a book stress result, chosen by content."""
    p = _payload(result)
    if p.get("rows") and "policy" in (p["rows"][0] if p["rows"] else {}):
        return cascade_figures(p)
    return book_stress_figures(p)
