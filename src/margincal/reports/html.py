"""Self-contained HTML reports (plotly charts with plotly.js inlined: opens offline).

A report is a list of :class:`Section` objects; each holds HTML and plotly
figures. Other parts of margincal (backtest, stress, adjustments) contribute
sections through the same type, and :func:`write_report` renders them into
one file with plotly.js embedded once (compressed) and each figure as compact JSON
(:func:`figure_json`: long lines thinned, floats rounded, no per-figure template).
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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


#: per-trace cap on line points (longer series are thinned evenly; markers are never thinned)
MAX_LINE_POINTS = 1000
#: significant digits kept for floats in the figure JSON (a chart cannot show more)
SIG_DIGITS = 5

_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?$")


def _short_ts(s: str) -> str:
    """ISO timestamps as plotly reads them, shorter: the date alone at midnight, else minutes."""
    m = _ISO.match(s)
    if not m:
        return s
    return m.group(1) if m.group(2) == "00:00" and not (m.group(3) or ":00").strip(":0.") else f"{m.group(1)} {m.group(2)}"


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return v if not math.isfinite(v) or v == 0.0 else float(f"{v:.{SIG_DIGITS}g}")
    if isinstance(v, str):
        return _short_ts(v)
    if isinstance(v, list):
        return [_round(x) for x in v]
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    return v


def _looks_like_date(v: Any) -> bool:
    return isinstance(v, str) and bool(re.match(r"^\d{4}-\d{2}-\d{2}", v))


def _thin(trace: dict[str, Any]) -> None:
    mode = str(trace.get("mode", "lines"))
    if trace.get("type", "scatter") not in ("scatter", "scattergl") or "markers" in mode and "lines" not in mode:
        return
    n = max((len(trace[k]) for k in ("x", "y") if isinstance(trace.get(k), list)), default=0)
    if n <= MAX_LINE_POINTS:
        return
    idx = sorted(set(np.linspace(0, n - 1, MAX_LINE_POINTS).round().astype(int).tolist()))
    for k in ("x", "y", "text", "customdata"):
        if isinstance(trace.get(k), list) and len(trace[k]) == n:
            trace[k] = [trace[k][i] for i in idx]


def _categorical_axes(fig: dict[str, Any]) -> None:
    """Bars, boxes and heatmaps over names are on category axes, so a name such as "2025-10-10" is never
    read as a date (which drops the other categories)."""
    layout = fig.setdefault("layout", {})
    for t in fig.get("data", []):
        if t.get("type") not in ("bar", "box", "heatmap", "violin"):
            continue
        for ax in ("x", "y"):
            vals = t.get(ax)
            if not isinstance(vals, list) or not vals or not all(isinstance(v, str) for v in vals):
                continue
            if all(_looks_like_date(v) for v in vals) and len(vals) > 1 and t.get("type") != "heatmap":
                continue  # a time axis of dates stays a date axis
            ref = str(t.get(f"{ax}axis", ax))
            name = f"{ax}axis" + ref[1:]
            layout.setdefault(name, {})["type"] = "category"


def figure_json(fig: go.Figure | dict[str, Any]) -> dict[str, Any]:
    """A figure as compact plain JSON: no template (the page holds one), long lines thinned, floats rounded to
    :data:`SIG_DIGITS` significant digits, timestamps shortened, categorical axes made categorical."""
    d = json.loads(fig.to_json()) if isinstance(fig, go.Figure) else json.loads(json.dumps(fig))
    d.get("layout", {}).pop("template", None)
    for t in d.get("data", []):
        _thin(t)
    d = _round(d)
    _categorical_axes(d)
    return d


@functools.lru_cache(maxsize=1)
def _plotly_gz_b64() -> str:
    """plotly.min.js of the installed plotly package, gzip-compressed and base64-encoded (about 2 MB, from 4.8)."""
    import plotly

    js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return base64.b64encode(gzip.compress(js.read_bytes(), 9, mtime=0)).decode("ascii")


@functools.lru_cache(maxsize=1)
def _template_json() -> str:
    return json.dumps(go.Figure().to_plotly_json()["layout"].get("template", {}), separators=(",", ":"))


# The page's one loader: inflate plotly.js and the figures (the browser's DecompressionStream, no network), run
# plotly.js, then draw every figure with the shared template.
_LOADER = """
(async () => {
  const inflate = async (id) => {
    const b64 = document.getElementById(id).textContent.trim();
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    return new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text();
  };
  const s = document.createElement("script");
  s.textContent = await inflate("mc-plotly");
  document.head.appendChild(s);
  const template = JSON.parse(document.getElementById("mc-template").textContent);
  const figures = JSON.parse(await inflate("mc-figures"));
  for (let i = 0; i < figures.length; i++) {
    const f = figures[i];
    f.layout = Object.assign({template}, f.layout || {});
    await Plotly.newPlot(document.getElementById("mc-fig-" + (i + 1)), f.data, f.layout,
                         {displaylogo: false, responsive: true});
  }
  document.body.dataset.plotted = String(figures.length);
})();
"""


def _gz_b64(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode("utf-8"), 9, mtime=0)).decode("ascii")


def figures_of(document: str) -> list[dict[str, Any]]:
    """The figure JSON of a rendered report (inverse of :func:`render`'s packing; for tests and tooling)."""
    m = re.search(r"<script type='application/octet-stream' id='mc-figures'>([^<]*)</script>", document)
    if m is None:
        return []
    return list(json.loads(gzip.decompress(base64.b64decode(m.group(1))).decode("utf-8")))


def _script_json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def render(title: str, sections: Sequence[Section], meta: str = "") -> str:
    """Render sections into one self-contained HTML document.

    plotly.js is embedded once and the figures' JSON (:func:`figure_json`) once, each gzip + base64, inflated in
    the browser by one loader script: the file opens offline in any browser with ``DecompressionStream``
    (Chromium 80+, Firefox 113+, Safari 16.4+). :func:`figures_of` reads the figures back."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if meta:
        parts.append(f"<p class='meta'>{meta}</p>")
    figs: list[dict[str, Any]] = []
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>{s.html}")
        for fig in s.figures:
            d = figure_json(fig)
            figs.append(d)
            height = int(d.get("layout", {}).get("height") or 450)
            parts.append(f"<div class='mc-fig' id='mc-fig-{len(figs)}' style='height:{height}px'></div>")
    if figs:
        parts.append(f"<script type='application/json' id='mc-template'>{_template_json()}</script>"
                     f"<script type='application/octet-stream' id='mc-plotly'>{_plotly_gz_b64()}</script>"
                     f"<script type='application/octet-stream' id='mc-figures'>{_gz_b64(_script_json(figs))}</script>"
                     f"<script>{_LOADER}</script>")
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
