"""Self-contained HTML reports (plotly charts with plotly.js inlined: opens offline).

A report is a list of :class:`Section` objects; each holds HTML and plotly
figures. Other parts of margincal (backtest, stress, adjustments) contribute
sections through the same type, and :func:`write_report` renders them into
one file with plotly.js embedded once.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from margincal.fmt import column_header, column_kind, format_value

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#1d2330}
h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid #d9dde5;padding-bottom:.3rem;margin-top:2.2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}th,td{padding:.25rem .6rem;border-bottom:1px solid #e6e8ee;
text-align:right}th{background:#f4f6fa}td:first-child,th:first-child{text-align:left}.meta{color:#5a6475;font-size:.85rem}
.note{background:#fff8e5;border-left:3px solid #e0a800;padding:.4rem .8rem;font-size:.85rem}
"""


@dataclass
class Section:
    """One report section: a title, some HTML (already escaped) and plotly figures."""

    title: str
    html: str = ""
    figures: list[go.Figure] = field(default_factory=list)


def table_html(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, digits: int = 4) -> str:
    """Rows of dicts -> an HTML table (values escaped; numbers in the CLI's format, :mod:`margincal.fmt`: a
    column's kind follows from its name, rates in percent, amounts with separators, headers with units).
    ``digits`` is kept for callers and no longer used."""
    if not rows:
        return "<p class='meta'>no rows</p>"
    cols = list(columns) if columns else list(rows[0])
    kinds = {c: column_kind(str(c)) for c in cols}

    def cell(c: str, v: Any) -> str:
        if v is None:
            return ""
        return html.escape(format_value(v, kinds[c]))

    head = "".join(f"<th>{html.escape(column_header(str(c), kinds[c]))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{cell(c, r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def instrument_figure(instrument: str, path: pd.DataFrame, max_points: int = 4000) -> go.Figure:
    """Price, annualised EWMA volatility and IM/MM rate over time for one instrument."""
    df = path.dropna(subset=["im_rate"])
    if len(df) > max_points:  # hourly data: one point per day keeps the file small
        df = df.resample("1D").last().dropna(subset=["im_rate"])
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        subplot_titles=("price", "EWMA volatility (annualised)", "margin rate (fraction of notional)"))
    fig.add_trace(go.Scatter(x=df.index, y=df["close"], name="close", line={"width": 1}), row=1, col=1)
    fig.add_trace(go.Scatter(x=df.index, y=df["sigma_ann"], name="volatility", line={"width": 1}), row=2, col=1)
    fig.add_trace(go.Scatter(x=df.index, y=df["im_rate"], name="IM rate", line={"width": 1}), row=3, col=1)
    fig.add_trace(go.Scatter(x=df.index, y=df["mm_rate"], name="MM rate", line={"width": 1, "dash": "dot"}),
                  row=3, col=1)
    if "breach" in path.columns:  # bars whose loss exceeded the MM in force (all of them, before thinning)
        b = path[path["breach"].fillna(False).astype(bool)]
        fig.add_trace(go.Scatter(x=b.index, y=b["mm_rate"], name="MM breach", mode="markers",
                                 marker={"color": "red", "size": 5, "symbol": "x"}), row=3, col=1)
    fig.update_layout(title=instrument, height=620, margin={"l": 50, "r": 20, "t": 60, "b": 30},
                      legend={"orientation": "h"})
    fig.update_yaxes(type="log", row=1, col=1)
    return fig


def render(title: str, sections: Sequence[Section], meta: str = "") -> str:
    """Render sections into one self-contained HTML document."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if meta:
        parts.append(f"<p class='meta'>{meta}</p>")
    first = True
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>{s.html}")
        for fig in s.figures:
            parts.append(fig.to_html(full_html=False, include_plotlyjs=bool(first),
                                     config={"displaylogo": False}))
            first = False
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: str | Path, title: str, sections: Sequence[Section], meta: str = "") -> Path:
    """Write the report atomically (temp file then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(render(title, sections, meta), encoding="utf-8")
    tmp.replace(p)
    return p
