"""One self-contained HTML report of one parameter-set version and its evidence (``margincal report``).

The report states ONE version (the latest, or ``version=``) and shows evidence of that version only:
the backtest and stress runs of its published rule (:func:`margincal.reports.views.version_evidence`; where
none exists the section says so and which command produces it), never whatever ran last. Sections:

1. the version: provenance and its rates (percent, 2 decimals);
2. the version timeline by date (author, source, changes) and this version's diff from its parent;
3. price and the published IM/MM over time per instrument, with the breaches of the version's backtest marked;
4. the backtest of the version (per instrument: breaches, Kupiec, zone);
5. the bracket curve of the perpetuals beside the venue presets;
6. implied-vol smiles and surface (SVI fits of the bundled Deribit snapshots);
7. stress: scenario x instrument heatmap against the version's rates, and the stored stress run of the version;
8. liquidation cascades (the latest stored run: cascades test margin policies, not a parameter version);
9. announced MM changes (pending, applied, superseded) with their effective times;
10. proposals (pending first) and the audit-chain status.

plotly.js is embedded once (compressed) and the series are thinned and rounded, so the file stays under 5 MB
and opens offline.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from margincal import datasets, usecases
from margincal.config import CalibrationSettings
from margincal.data import audit
from margincal.errors import MargincalError
from margincal.margin import params as mparams
from margincal.reports import views
from margincal.reports.html import Section, table_html, write_report

PRODUCE = {
    "backtest": "margincal run (or margincal backtest --store STORE)",
    "stress": "margincal stress --margin published --store STORE",
    "cascade": "margincal cascade --store STORE",
}


def _note(text: str) -> str:
    return f"<p class='note'>{text}</p>"


def _pct(v: Any, digits: int = 2) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    return "-" if f != f else f"{100 * f:.{digits}f}%"


def _num(v: Any, digits: int = 2) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return html.escape(str(v)) if v not in (None, "") else "-"
    if f != f:
        return "-"
    return f"{f:,.0f}" if abs(f) >= 1000 or (f == int(f) and digits == 0) else f"{f:,.{digits}f}"


def _p(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    return "-" if f != f else ("<0.0001" if f < 1e-4 else f"{f:.4f}")


def settings_of(pset: mparams.ParameterSet | None) -> CalibrationSettings:
    """Calibration settings recorded in a parameter set's provenance (:func:`margincal.usecases.settings_of`)."""
    return usecases.settings_of(pset)


def _evidence_attr(version: int | None) -> str:
    return "" if version is None else f" data-evidence-version='{version}'"


# ------------------------------------------------------------------ 1. the version


def version_section(pset: mparams.ParameterSet) -> Section:
    prov = pset.provenance
    first = next(iter(pset.params.values()), None)
    model = prov.get("model") or (first.details.get("model") if first else None) or "-"
    level = prov.get("level") or (first.details.get("level") if first else None)
    rule = prov.get("rule") or (first.details.get("rule") if first else None) or "flat"
    meta = (f"<p class='meta' id='report-version' data-version='{pset.version}'>parameter set "
            f"<b>version {pset.version}</b> &middot; created {str(pset.created_at)[:19]} UTC by "
            f"{html.escape(str(pset.created_by))} &middot; source {html.escape(str(pset.source))} &middot; "
            f"model {html.escape(str(model))} &middot; rule {html.escape(str(rule))} &middot; ES level "
            f"{level if level is not None else '-'} &middot; run {html.escape(str(pset.run_id or '-'))}. "
            "Every result below is evidence of this version unless it says otherwise.</p>")
    rows = []
    for name, p in sorted(pset.params.items()):
        d = p.details
        rows.append({"instrument": name, "IM rate": _pct(p.im_rate), "MM rate": _pct(p.mm_rate),
                     "max leverage": f"{p.max_leverage:.2f}x", "last price": _num(d.get("last_price")),
                     "bars": d.get("timeframe", "-"), "model": d.get("model", "-"),
                     "brackets": len(d.get("tiers") or []) or "-",
                     "data window": f"{str(d.get('window_start', ''))[:10]} .. {str(d.get('window_end', ''))[:10]}"})
    return Section(f"Parameter set version {pset.version}", meta + table_html(rows))


# ------------------------------------------------------------------ 2. timeline and diff


def timeline_section(con: duckdb.DuckDBPyConnection, pset: mparams.ParameterSet) -> Section:
    tl = views.timeline(con)
    fig = go.Figure(go.Scatter(
        x=[t["created_at"] for t in tl], y=[t["version"] for t in tl], mode="markers+lines",
        line={"shape": "hv", "width": 1},
        marker={"size": [12 if t["version"] == pset.version else 7 for t in tl],
                "color": ["#d62728" if t["version"] == pset.version else "#1f77b4" for t in tl]},
        text=[f"v{t['version']} by {t['created_by']} ({t['source']}): +{t['added']} -{t['removed']} "
              f"~{t['changed']}" for t in tl], hoverinfo="text+x"))
    fig.update_layout(title="Parameter-set versions by date", height=300, xaxis={"type": "date", "title": "UTC"},
                      yaxis={"title": "version"}, margin={"l": 50, "r": 20, "t": 50, "b": 40})
    rows = [{"version": f"v{t['version']}", "created (UTC)": t["created_at"][:19].replace("T", " "),
             "by": t["created_by"], "source": t["source"], "instruments": t["instruments"], "added": t["added"],
             "removed": t["removed"], "changed": t["changed"], "note": t["note"]} for t in tl[::-1][:30]]
    body = table_html(rows) + ("" if len(tl) <= 30 else f"<p class='meta'>latest 30 of {len(tl)} versions</p>")
    if pset.parent_version is not None:
        d = mparams.diff(mparams.load(con, pset.parent_version), pset)
        drows = [{"instrument": c.get("instrument"), "change": c.get("change"), "IM before": _pct(c.get("im_before")),
                  "IM after": _pct(c.get("im_after")), "MM before": _pct(c.get("mm_before")),
                  "MM after": _pct(c.get("mm_after"))} for c in d]
        body += (f"<h3>Changes in version {pset.version} from version {pset.parent_version}</h3>"
                 + (table_html(drows) if drows else "<p class='meta'>no changes</p>"))
    return Section("Version timeline", body, [fig])


# ------------------------------------------------------------------ 3-4. margin history and backtest


def _margin_figure(v: Mapping[str, Any]) -> go.Figure:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=[0.45, 0.55],
                        subplot_titles=("price", "published margin rate (fraction of notional)"))
    fig.add_trace(go.Scatter(x=v["ts"], y=v["close"], name="close", mode="lines", line={"width": 1}), row=1, col=1)
    fig.add_trace(go.Scatter(x=v["ts"], y=v["im_rate"], name="IM rate", mode="lines", line={"width": 1}),
                  row=2, col=1)
    fig.add_trace(go.Scatter(x=v["ts"], y=v["mm_rate"], name="MM rate", mode="lines",
                             line={"width": 1, "dash": "dot"}), row=2, col=1)
    br = v["breaches"]
    for key, label, color in (("im", "IM breach", "#d62728"), ("mm", "MM breach", "#ff7f0e")):
        pts = br.get(key) or []
        if pts:
            fig.add_trace(go.Scatter(x=[b["ts"] for b in pts], y=[b["margin"] for b in pts], mode="markers",
                                     name=f"{label} ({br.get(f'{key}_count', len(pts)):,})",
                                     marker={"color": color, "size": 5, "symbol": "x"}), row=2, col=1)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(title=f"{v['instrument']} ({v['timeframe']} bars)", height=460,
                      margin={"l": 50, "r": 20, "t": 60, "b": 30}, legend={"orientation": "h"})
    return fig


def history_section(con: duckdb.DuckDBPyConnection, pset: mparams.ParameterSet, backtest: Mapping[str, Any] | None,
                    on_step: Callable[[str], None] | None = None) -> Section:
    title = "Price, forecast volatility and margin over time"
    figs, skipped = [], []
    for inst in pset.instruments():
        if on_step:
            on_step(inst)
        try:
            v = views.margin_view(con, inst, pset, backtest, max_points=700)
        except KeyError:  # no stored bars
            skipped.append(inst)
            continue
        if v["too_short"]:
            skipped.append(inst)
            continue
        figs.append(_margin_figure(v))
    bt = (f"breaches marked from backtest run {html.escape(str(backtest['run_id']))} "
          f"({html.escape(backtest['attribution'])}); hourly breaches are shown one marker per day"
          if backtest else f"no backtest of version {pset.version} is stored, so no breaches are marked "
          f"(produce one with <code>{PRODUCE['backtest']}</code>)")
    text = (f"<p class='note'{_evidence_attr(pset.version)}>Causal history: each bar uses only data before it "
            f"(the published rule on the data available then) with the settings of version {pset.version}; "
            f"{bt}.</p>")
    if skipped:
        text += f"<p class='meta'>no chart (no or too few stored bars): {html.escape(', '.join(skipped))}</p>"
    return Section(title, text, figs)


def backtest_section(pset: mparams.ParameterSet, backtest: Mapping[str, Any] | None) -> Section:
    title = "Backtests"
    if backtest is None:
        return Section(title, _note(f"No backtest of version {pset.version} is stored. Produce one with "
                                    f"<code>{html.escape(PRODUCE['backtest'])}</code>, then run "
                                    "<code>margincal report</code> again."))
    payload = backtest["payload"] if isinstance(backtest["payload"], Mapping) else {}
    rows = [{"instrument": r.get("instrument"), "rate": "IM" if r.get("model") == "published" else
             ("MM" if r.get("model") == "published-mm" else r.get("model")),
             "bars": f"{r.get('horizon_hours', 0):g} h", "from": str(r.get("start", ""))[:10],
             "to": str(r.get("end", ""))[:10], "obs": _num(r.get("n_obs"), 0), "breaches": _num(r.get("breaches"), 0),
             "breach rate": _pct(r.get("breach_rate")), "expected": _pct(r.get("expected_rate")),
             "Kupiec p": _p(r.get("kupiec_p")), "Christoffersen p": _p(r.get("christoffersen_p")),
             "zone": r.get("zone", "-"), "avg margin": _pct(r.get("avg_margin"))}
            for r in payload.get("rows") or [] if isinstance(r, Mapping)]
    meta = (f"<p class='meta'{_evidence_attr(pset.version)}>run {html.escape(str(backtest['run_id']))} &middot; "
            f"stored {backtest['created_at'][:19].replace('T', ' ')} UTC &middot; "
            f"{html.escape(backtest['attribution'])}</p>")
    return Section(title, meta + (table_html(rows[:200]) if rows else "<p class='meta'>no rows</p>"))


# ------------------------------------------------------------------ 5. brackets vs venues


def brackets_section(pset: mparams.ParameterSet) -> Section:
    title = "Bracket curve beside the venues"
    figs = []
    for inst in views.bracket_instruments(pset)[:4]:
        try:
            b = views.bracket_view(pset, inst)
        except (MargincalError, KeyError, ValueError):
            continue
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=b["notional"], y=b["im_rate"], name="published IM (brackets)", mode="lines",
                                 line={"width": 2}))
        fig.add_trace(go.Scatter(x=b["notional"], y=b["mm_rate"], name="published MM (brackets)", mode="lines",
                                 line={"width": 2, "dash": "dot"}))
        if b["curve"]:
            fig.add_trace(go.Scatter(x=[c["notional"] for c in b["curve"]], y=[c["im_rate"] for c in b["curve"]],
                                     name="calibrated curve (IM)", mode="markers", marker={"size": 7}))
        for k, ys in b["venues"].items():
            fig.add_trace(go.Scatter(x=b["notional"], y=ys, name=f"{k} IM", mode="lines", line={"width": 1}))
        fig.update_layout(title=f"{inst}: initial margin rate vs position size (version {pset.version})",
                          height=420, xaxis={"type": "log", "title": "notional (USD)"},
                          yaxis={"type": "log", "title": "IM / notional", "tickformat": ".1%"},
                          legend={"orientation": "h"}, margin={"l": 60, "r": 20, "t": 50, "b": 40})
        figs.append(fig)
    if not figs:
        return Section(title, _note(f"Version {pset.version} has no bracket schedules."))
    return Section(title, "<p class='meta'>Effective rates IM(N)/N and MM(N)/N of the published brackets "
                          "(details['tiers']), the calibrated curve points (details['curve']) and the venue presets "
                          "(margincal.margin.presets) at the same price.</p>", figs)


# ------------------------------------------------------------------ 6. smiles


def smiles_section() -> Section:
    title = "Implied-volatility smiles and surface"
    figs = []
    # one snapshot per underlying: the first bundled one of each (margincal.datasets knows the files)
    names = list({f.file.split("_")[1]: f.file for f in reversed(datasets.files(kind="options"))}.values())[::-1]
    for name in names:
        try:
            s = views.smile_view(name)
        except (MargincalError, KeyError, ValueError) as exc:
            return Section(title, _note(f"smiles unavailable: {html.escape(str(exc))}"))
        fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], subplot_titles=(
            "smiles: quotes (dots) and SVI fits (lines)", "SVI surface: implied vol by k and T"))
        for i, sl in enumerate(s["slices"]):
            color = f"hsl({int(300 * i / max(len(s['slices']) - 1, 1))},65%,45%)"
            label = sl["expiry"] or f"T={sl['T']:.3f}"
            fig.add_trace(go.Scatter(x=sl["k"], y=sl["iv"], mode="markers", marker={"size": 4, "color": color},
                                     name=label, legendgroup=label, showlegend=False), row=1, col=1)
            fig.add_trace(go.Scatter(x=sl["k_fit"], y=sl["iv_fit"], mode="lines", line={"width": 1, "color": color},
                                     name=label, legendgroup=label), row=1, col=1)
        sf = s["surface"]
        fig.add_trace(go.Heatmap(x=sf["k"], y=[f"{t:.3f}" for t in sf["T"]], z=sf["iv"], colorscale="Viridis",
                                 colorbar={"title": {"text": "iv"}, "x": 1.0, "tickformat": ".0%"}, showscale=True),
                      row=1, col=2)
        fig.update_xaxes(title_text="k = ln(K/F)", row=1, col=1)
        fig.update_xaxes(title_text="k = ln(K/F)", row=1, col=2)
        fig.update_yaxes(title_text="implied vol", tickformat=".0%", row=1, col=1)
        fig.update_yaxes(title_text="T (years)", type="category", row=1, col=2)
        fig.update_layout(title=f"{name} (SVI, RMSE {100 * (s['rmse_iv'] or 0):.2f} vol points)", height=480,
                          margin={"l": 60, "r": 40, "t": 60, "b": 40}, legend={"orientation": "h", "y": -0.2})
        figs.append(fig)
    return Section(title, "<p class='meta'>Bundled Deribit option snapshots (margincal.datasets), raw SVI per "
                          "expiry (margincal.vol.surface.SVISurface).</p>", figs)


# ------------------------------------------------------------------ 7. stress


def stress_section(pset: mparams.ParameterSet, stress: Mapping[str, Any] | None) -> Section:
    title = "Stress tests"
    v = views.stress_view(pset, stress)
    fig = go.Figure(go.Heatmap(x=v["instruments"], y=v["scenarios"], z=v["z"], colorscale="RdYlGn_r", zmin=0,
                               zmax=max(2.0, min(10.0, max((max((c or 0) for c in r) for r in v["z"]), default=2))),
                               colorbar={"title": "loss / IM"}, hovertemplate="%{y} / %{x}: %{z:.2f} x IM"
                               "<extra></extra>"))
    fig.update_layout(title=f"Scenario loss as a multiple of the IM rate of version {pset.version}",
                      height=max(360, 22 * len(v["scenarios"]) + 140), xaxis={"type": "category"},
                      yaxis={"type": "category", "autorange": "reversed"}, margin={"l": 230, "r": 20, "t": 50, "b": 80})
    body = (f"<p class='meta'{_evidence_attr(pset.version)}>Scenario library (historical and hypothetical spot "
            "moves; the most adverse leg per underlying) against the rates of version "
            f"{pset.version}: the loss of the losing side as a fraction of notional over the IM rate (above 1: the "
            "scenario costs more than the IM).</p>")
    if stress is None:
        body += _note(f"No stored book stress of version {pset.version}. Produce one with "
                      f"<code>{html.escape(PRODUCE['stress'])}</code>.")
    else:
        rows = [{"scenario": r.get("scenario"), "total loss": _num(r.get("total_loss"), 0),
                 "accounts short": _num(r.get("accounts_short"), 0), "shortfall": _num(r.get("total_shortfall"), 0),
                 "Cover-1": _num(r.get("cover1"), 0), "Cover-2": _num(r.get("cover2"), 0)}
                for r in (stress.get("payload") or {}).get("summary") or [] if isinstance(r, Mapping)]
        body += (f"<h3>Book stress run {html.escape(str(stress['run_id']))} ({html.escape(stress['attribution'])},"
                 f" stored {stress['created_at'][:19].replace('T', ' ')} UTC; USDT)</h3>" + table_html(rows[:200]))
    return Section(title, body, [fig])


# ------------------------------------------------------------------ 8. cascades


def cascade_section(con: duckdb.DuckDBPyConnection) -> Section:
    title = "Liquidation cascades"
    c = views.cascade_view(con)
    if c is None:
        return Section(title, _note("No cascade result in the store. Produce one with "
                                    f"<code>{html.escape(PRODUCE['cascade'])}</code>, then run "
                                    "<code>margincal report</code> again."))
    rows = c["rows"]
    figs = []
    for metric, label in (("bad_debt", "Bad debt"), ("liquidated_notional", "Liquidated notional")):
        if not any(metric in r for r in rows):
            continue
        fig = go.Figure()
        for pol in c["policies"]:
            ys = [next((r.get(metric) for r in rows if str(r.get("event")) == ev and str(r.get("policy")) == pol),
                       None) for ev in c["events"]]
            fig.add_trace(go.Bar(name=pol, x=[e if e != "mc" else "Monte Carlo (mean)" for e in c["events"]], y=ys))
        fig.update_layout(barmode="group", title=f"{label} per event and margin policy (USDT)", height=380,
                          xaxis={"type": "category"}, margin={"l": 60, "r": 20, "t": 50, "b": 40})
        figs.append(fig)
    keep = ("event", "policy", "mean_im", "rounds", "liquidations", "liquidated_notional", "min_price", "bad_debt",
            "fund_paid", "adl_volume")
    trows = [{k: (_num(r.get(k)) if isinstance(r.get(k), (int, float)) else r.get(k, "-")) for k in keep if k in r}
             for r in rows]
    meta = (f"<p class='meta'>run {html.escape(str(c['run_id']))} &middot; stored {c['created_at'][:19]} UTC. "
            "Cascades compare margin policies on replayed and simulated crashes; they are not a run of a parameter "
            "version.</p>")
    return Section(title, meta + table_html(trows[:100]), figs)


# ------------------------------------------------------------------ 9. announcements, 10. proposals and audit


def announcements_section(con: duckdb.DuckDBPyConnection) -> Section:
    """MM changes the monitor announced (they apply to existing positions after the notice period)."""
    from margincal.adjust.announcements import announcements

    rows = announcements(con, limit=200)
    title = "Announced MM changes"
    if not rows:
        return Section(title, _note(
            "No MM change has been announced. The monitor (<code>margincal monitor</code>) raises IM for new "
            "exposure at once and announces the MM change with its effective time (<code>[effective] "
            "mm_notice_hours</code>); list them with <code>margincal params announcements</code>."))
    pending = sum(r["status"] == "pending" for r in rows)
    shown = [{"instrument": r["instrument"], "status": r["status"], "MM before": f"{100 * r['mm_before']:.2f}%",
              "MM after": f"{100 * r['mm_after']:.2f}%", "announced (UTC)": _hm(r["announced_at"]),
              "effective (UTC)": _hm(r["effective_at"]), "announced in": f"v{r['announced_version']}",
              "applied in": "" if r["applied_version"] is None else f"v{r['applied_version']}"} for r in rows]
    return Section(title, f"<p class='meta'>{len(rows)} announcements (newest first), {pending} pending. An MM "
                   "change applies to existing positions too, from its effective time.</p>" + table_html(shown))


def _hm(ts: str | None) -> str:
    return "" if not ts else ts[:16].replace("T", " ")


def adjustments_section(con: duckdb.DuckDBPyConnection) -> Section:
    parts = []
    try:
        from margincal.adjust.approval import list_proposals

        props = [p.row() for p in list_proposals(con)]
    except ImportError:  # pragma: no cover - every build ships the approval module
        props = []
    order = {"pending": 0, "stale": 1, "superseded": 2}
    props = sorted(props[::-1], key=lambda r: order.get(str(r.get("status")), 3))
    n_pending = sum(1 for r in props if r.get("status") == "pending")
    parts.append(f"<h3>Proposals ({n_pending} pending, {len(props)} in all; pending first)</h3>" + (
        table_html(props[:200]) if props else _note(
            "No proposals. The monitor (<code>margincal monitor</code>) proposes changes that need a risk officer; "
            "decide them with <code>margincal proposals</code> or the dashboard.")))
    a = views.audit_view(con)
    status = "intact" if a["ok"] else f"BROKEN at entry {a['first_bad_seq']}"
    parts.append(f"<h3>Audit chain</h3><p class='meta' id='audit-status' data-ok='{str(a['ok']).lower()}'>"
                 f"hash chain: {status} ({html.escape(a['reason'])}) &middot; {a['entries']:,} entries &middot; last "
                 f"entry {a['last_seq'] or '-'} at {str(a['last_ts'] or '-')[:19]} by "
                 f"{html.escape(str(a['last_actor'] or '-'))} ({html.escape(str(a['last_action'] or '-'))}) &middot; "
                 f"last hash <code>{html.escape(str(a['last_hash'] or '-'))}</code></p>")
    log = audit.entries(con, 30)
    rows = [{"seq": int(r["seq"]), "ts": str(r["ts"])[:19], "actor": r["actor"], "action": r["action"],
             "subject": r["subject"] or ""} for r in log.to_dict("records")]
    parts.append(table_html(rows))
    return Section("Adjustments and audit", "".join(parts))


# ------------------------------------------------------------------ assembly


def report_version(con: duckdb.DuckDBPyConnection, version: int | None = None) -> int | None:
    """The version a report states: ``version`` (checked) or the latest; None when nothing is published."""
    latest = mparams.latest_version(con)
    if version is None:
        return latest
    if latest is None or not con.execute("SELECT count(*) FROM parameter_sets WHERE version = ?",
                                         [version]).fetchone()[0]:  # type: ignore[index]
        raise MargincalError(f"parameter-set version {version} does not exist (latest is {latest or 'none'})")
    return version


def build_sections(con: duckdb.DuckDBPyConnection, *, charts: bool = True, version: int | None = None,
                   on_step: Callable[[str], None] | None = None) -> list[Section]:
    """Every report section of ``version`` (default: the latest) from the store (see the module doc)."""
    v = report_version(con, version)
    if v is None:
        return [Section("Published margin parameters", _note(
            "No parameter set is published yet: run <code>margincal run</code> (bundled data) or "
            "<code>margincal calibrate</code>.")), cascade_section(con), adjustments_section(con)]
    pset = mparams.load(con, v)
    ev = views.version_evidence(con, v)
    sections = [version_section(pset), timeline_section(con, pset)]
    if charts:
        sections.append(history_section(con, pset, ev["backtest"], on_step))
    sections.append(backtest_section(pset, ev["backtest"]))
    if charts:
        sections += [brackets_section(pset), smiles_section()]
    sections += [stress_section(pset, ev["stress"]), cascade_section(con), announcements_section(con),
                 adjustments_section(con)]
    return sections


def write_store_report(con: duckdb.DuckDBPyConnection, out: str | Path, *, store_name: str = "store",
                       charts: bool = True, version: int | None = None,
                       on_step: Callable[[str], None] | None = None) -> Path:
    """Write the report of the store behind ``con`` to ``out`` (one HTML file, opens offline)."""
    sections = build_sections(con, charts=charts, version=version, on_step=on_step)
    meta = f"store {html.escape(store_name)} &middot; generated {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC"
    return write_report(out, "margincal: margin report", sections, meta)


def section_status(sections: Sequence[Section]) -> list[dict[str, Any]]:
    """Which sections hold results (not just a note saying how to produce them) and how many figures."""
    return [{"section": s.title, "figures": len(s.figures),
             "has_results": bool(s.figures) or not s.html.startswith("<p class='note'>")} for s in sections]


__all__ = ["PRODUCE", "build_sections", "report_version", "section_status", "write_store_report"]
