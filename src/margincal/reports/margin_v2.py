"""Report sections of the margin v2 rule (issue 15): brackets, the bracket curve beside the venue presets,
and per-tier coverage of the published rule's intrabar backtest."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from margincal.config import CalibrationSettings
from margincal.errors import MargincalError
from margincal.instruments import parse as parse_instrument
from margincal.margin import presets
from margincal.reports.html import Section, table_html

#: venue presets compared with the engine, per underlying (margin/presets.py)
VENUE_PRESETS = presets.VENUE_PRESETS


def _underlying(name: str) -> str:
    try:
        return str(parse_instrument(name).base).upper()
    except (MargincalError, AttributeError):
        return name.split("-")[0].upper()


def venue_rates(underlying: str, notional: np.ndarray, price: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{preset: (im_rates, mm_rates)}`` of the venue presets of ``underlying`` at ``notional``."""
    out = {}
    for name in VENUE_PRESETS.get(underlying, ()):
        try:
            r = presets.get(name).margin_rate(notional, price=price)
        except MargincalError:
            continue
        out[name] = (np.broadcast_to(np.asarray(r.im, float), notional.shape),
                     np.broadcast_to(np.asarray(r.mm, float), notional.shape))
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def margin_v2_sections(cals: list[Any], tier_rows: list[dict[str, Any]],
                       settings: CalibrationSettings) -> list[Section]:
    """Brackets per perpetual/future with the venues beside them, and per-tier coverage (HTML sections)."""
    sections = []
    for c in cals:
        sched = c.extra.get("tiers")
        if sched is None or c.timeframe == "1d":
            continue
        n = np.asarray(sched.lowers[1:].tolist() + [sched.max_notional], dtype=float)
        venues = venue_rates(_underlying(c.instrument), n, c.last_price)
        rows = []
        for t, up in zip(sched.to_details(), n, strict=True):
            row = {"floor": f"{t['lower']:,.0f}", "cap": f"{up:,.0f}", "max leverage": f"{t['max_leverage']:.0f}x",
                   "MM rate": _pct(t["mm_rate"]), "maint. amount": f"{t['maintenance_amount']:,.0f}"}
            k = int(np.flatnonzero(n == up)[0])
            for v, (im, mm) in venues.items():
                row[v] = f"{_pct(im[k])} / {_pct(mm[k])}"
            cov = [r for r in tier_rows if r["instrument"] == c.instrument and r["tier_cap"] == up]
            for r in cov:
                row[f"{r['rate']} breach (intrabar, {r['horizon_bars']} bar)"] = _pct(r["breach_rate"])
            rows.append(row)
        grid = np.geomspace(1e3, float(n[-1]), 200)
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=grid, y=np.asarray(sched.initial_margin(grid)) / grid, name="engine IM (brackets)"))
        fig.add_trace(go.Scatter(x=grid, y=np.asarray(sched.maintenance_margin(grid)) / grid,
                                 name="engine MM (brackets)", line={"dash": "dot"}))
        for v, (im, _mm) in venue_rates(_underlying(c.instrument), grid, c.last_price).items():
            fig.add_trace(go.Scatter(x=grid, y=im, name=f"{v} IM", line={"width": 1}))
        fig.update_layout(title=f"{c.instrument}: initial margin rate vs position size", height=420,
                          xaxis={"type": "log", "title": "notional (USD)"},
                          yaxis={"type": "log", "title": "IM / notional"}, legend={"orientation": "h"})
        sections.append(Section(
            f"{c.instrument}: published brackets beside the venues",
            "<p class='meta'>Brackets from the margin curve (cumulative-deduction form: MM(N) = N x rate - "
            "amount). Venue columns are IM / MM rates at the bracket cap (presets in margincal.margin.presets). "
            "Breach columns: the published rule's causal history at that cap against the adverse intrabar "
            "excursion over its close-out horizon, at least one bar (a sub-hour close-out is judged over a "
            "whole hour: conservative).</p>" + table_html(rows), [fig]))
    cov_rows = [{"instrument": r["instrument"], "bars": r["bars"], "tier cap": f"{r['tier_cap']:,.0f}",
                 "rate": r["rate"], "horizon h": round(r["horizon_hours"], 3), "bars tested": r["horizon_bars"],
                 "obs": r["n_obs"], "breach intrabar": _pct(r["breach_rate"]),
                 "breach close-close": _pct(r["breach_rate_close"]), "avg margin": _pct(r["avg_margin"]),
                 "Kupiec p": r.get("kupiec_p"), "LR ind": r.get("lr_ind"), "yellow windows": r.get("yellow"),
                 "red windows": r.get("red"), "avg / static": r.get("avg_over_static")} for r in tier_rows]
    sections.append(Section(
        "Per-tier coverage of the published rule (intrabar adverse excursion)",
        f"<p class='meta'>Target at {settings.level:g}: at most {100 * (1 - settings.level):.0f}% breaches per "
        "tier, no red rolling 250-observation window, independence not rejected, average margin below the "
        "hindsight static rate with no more breaches (avg / static &lt; 1). Non-overlapping horizons.</p>"
        + table_html(cov_rows)))
    return sections


__all__ = ["VENUE_PRESETS", "margin_v2_sections", "venue_rates"]
