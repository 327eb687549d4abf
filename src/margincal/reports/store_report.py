"""One self-contained HTML report of everything the store holds (``margincal report``).

Sections, each present whether or not its results exist (a missing one says
which command produces it):

1. published margin parameters (latest version, with provenance);
2. price, forecast volatility and IM/MM over time per instrument (causal,
   :func:`margincal.margin.published.published_history` with the latest set's settings);
3. parameter-set history and the latest version's changes;
4. backtests, 5. stress tests, 6. liquidation cascades (latest stored result of
   each kind: summary tables, and figures where the producing module has a figure function);
7. announced MM changes (pending, applied, superseded) with their effective times;
8. adjustments: proposals and decisions, signals, the audit log with its hash-chain check.

plotly.js is inlined once, so the file opens offline.
"""

from __future__ import annotations

import html
import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from margincal import usecases
from margincal.config import CalibrationSettings
from margincal.data import audit
from margincal.data.store import latest_result
from margincal.errors import MargincalError
from margincal.margin import params as mparams
from margincal.reports.html import Section, instrument_figure, table_html, write_report

RESULT_SECTIONS: tuple[tuple[str, str, str, str], ...] = (
    # (kind, title, command that produces it, "module:function" returning figures from a payload)
    ("backtest", "Backtests", "margincal backtest --store STORE", "margincal.backtest.figures:backtest_figures"),
    ("stress", "Stress tests", "margincal stress --store STORE", "margincal.stress.figures:stress_figures"),
    ("cascade", "Liquidation cascades", "margincal cascade --store STORE",
     "margincal.stress.figures:cascade_figures"),
)


def _note(text: str) -> str:
    return f"<p class='note'>{text}</p>"


def settings_of(pset: mparams.ParameterSet | None) -> CalibrationSettings:
    """Calibration settings recorded in a parameter set's provenance (:func:`margincal.usecases.settings_of`)."""
    return usecases.settings_of(pset)


def _figure_fn(spec: str) -> Callable[..., Any] | None:
    mod_name, _, fn = spec.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError:
        return None
    f = getattr(mod, fn, None)
    return f if callable(f) else None


_FIRST = ("instrument", "scenario", "event", "search", "model", "policy", "level", "horizon_hours")


def _table(rows: list[dict[str, Any]]) -> str:
    """A scrollable table with the identifying columns first (stored payloads have sorted keys)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cols = [c for c in _FIRST if c in cols] + [c for c in cols if c not in _FIRST]
    return f"<div style='overflow-x:auto'>{table_html(rows, cols)}</div>"


def _rows_of(obj: Any) -> list[dict[str, Any]] | None:
    if isinstance(obj, list) and obj and all(isinstance(r, Mapping) for r in obj):
        return [{k: v for k, v in r.items() if not isinstance(v, (list, dict))} for r in obj]
    if isinstance(obj, Mapping) and obj and all(not isinstance(v, (list, dict)) for v in obj.values()):
        return [dict(obj)]
    return None


def parameters_section(con: duckdb.DuckDBPyConnection) -> tuple[Section, mparams.ParameterSet | None]:
    if mparams.latest_version(con) is None:
        return Section("Published margin parameters", _note(
            "No parameter set is published yet: run <code>margincal run</code> (bundled data) or "
            "<code>margincal calibrate</code>.")), None
    p = mparams.load(con)
    prov = p.provenance
    meta = (f"<p class='meta'>version {p.version} &middot; created {html.escape(str(p.created_at))} by "
            f"{html.escape(str(p.created_by))} &middot; source {html.escape(str(p.source))} &middot; "
            f"model {html.escape(str(prov.get('model', '-')))} &middot; ES level {prov.get('level', '-')} &middot; "
            f"horizon {prov.get('horizon_hours', '-')} h &middot; MM = {prov.get('mm_fraction', '-')} x IM</p>")
    return Section("Published margin parameters", meta + _table(p.rows())), p


def history_figures(con: duckdb.DuckDBPyConnection, pset: mparams.ParameterSet | None,
                    on_step: Callable[[str], None] | None = None) -> Section:
    title = "Price, forecast volatility and margin over time"
    if pset is None:
        return Section(title, _note("No published instruments to chart yet."))
    figs, skipped = [], []
    for inst in pset.instruments():
        if on_step:
            on_step(inst)
        try:
            h = usecases.margin_history(con, inst, pset=pset)
        except KeyError:  # no stored bars
            skipped.append(inst)
            continue
        if h.too_short:
            skipped.append(inst)
            continue
        figs.append(instrument_figure(f"{inst} ({h.timeframe} bars)", h.path))
    text = _note("Causal history: each bar uses only data before it (the published rule - ES, liquidity "
                 "add-on, rounding, MM - on the data available then), with the settings of "
                 f"version {pset.version}.")
    if skipped:
        text += f"<p class='meta'>no chart (no or too few stored bars): {html.escape(', '.join(skipped))}</p>"
    return Section(title, text, figs)


def versions_section(con: duckdb.DuckDBPyConnection) -> Section:
    hist = mparams.history(con)
    if hist.empty:
        return Section("Parameter-set history", _note("No versions yet."))
    rows = [{**r, "created_at": str(r["created_at"])[:19]} for r in hist.to_dict("records")]
    body = table_html(rows, ["version", "created_at", "created_by", "source", "parent_version", "note"])
    latest = mparams.load(con)
    if latest.parent_version is not None:
        d = mparams.diff(mparams.load(con, latest.parent_version), latest)
        body += f"<h3>Changes in version {latest.version} from {latest.parent_version}</h3>" + table_html(d)
    return Section("Parameter-set history", body)


def result_section(con: duckdb.DuckDBPyConnection, kind: str, title: str, command: str, fig_spec: str) -> Section:
    r = latest_result(con, kind)
    if r is None:
        return Section(title, _note(f"No {kind} result in the store. Produce one with <code>{html.escape(command)}"
                                    "</code>, then run <code>margincal report</code> again."))
    payload = r["payload"]
    parts = [f"<p class='meta'>run {html.escape(str(r['run_id']))} &middot; stored {str(r['created_at'])[:19]} UTC"
             f" &middot; parameters {html.escape(str(r['params']))[:600]}</p>"]
    if isinstance(payload, Mapping):
        for key in ("summary", "rows", "crash", "scenarios", "accounts", "results"):
            rows = _rows_of(payload.get(key))
            if rows:
                more = f" (first 200 of {len(rows)})" if len(rows) > 200 else ""
                parts.append(f"<h3>{html.escape(key)}{more}</h3>" + _table(rows[:200]))
    else:
        rows = _rows_of(payload)
        if rows:
            parts.append(_table(rows[:200]))
    figs: list[Any] = []
    fn = _figure_fn(fig_spec)
    if fn is not None:
        try:
            figs = list(fn(payload))
        except (MargincalError, KeyError, TypeError, ValueError) as exc:
            parts.append(f"<p class='meta'>figures unavailable: {html.escape(str(exc))}</p>")
    return Section(title, "".join(parts), figs)


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
    parts.append("<h3>Proposals</h3>" + (table_html(props[::-1][:200]) if props else _note(
        "No proposals. The monitor (<code>margincal monitor</code>) proposes changes that need a risk officer; "
        "decide them with <code>margincal proposals</code> or the dashboard.")))
    has_signals = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'signals'").fetchone()[0]  # type: ignore[index]
    if has_signals:
        sig = con.execute("SELECT * FROM signals ORDER BY ts DESC LIMIT 100").df()
        parts.append("<h3>Latest signals</h3>" + table_html(
            [{k: (str(v) if not isinstance(v, (int, float)) else v) for k, v in r.items()}
             for r in sig.to_dict("records")]))
    chain = audit.verify_chain(con)
    log = audit.entries(con, 50)
    rows = [{"seq": int(r["seq"]), "ts": str(r["ts"])[:19], "actor": r["actor"], "action": r["action"],
             "subject": r["subject"] or ""} for r in log.to_dict("records")]
    parts.append(f"<h3>Audit log (latest 50 of {chain.entries})</h3><p class='meta'>hash chain: "
                 f"{'intact' if chain.ok else 'BROKEN at entry ' + str(chain.first_bad_seq)} ({html.escape(chain.reason)})"
                 "</p>" + table_html(rows))
    return Section("Adjustments and audit", "".join(parts))


def build_sections(con: duckdb.DuckDBPyConnection, *, charts: bool = True,
                   on_step: Callable[[str], None] | None = None) -> list[Section]:
    """Every report section from the store (see the module doc)."""
    params, pset = parameters_section(con)
    sections = [params]
    if charts:
        sections.append(history_figures(con, pset, on_step))
    sections.append(versions_section(con))
    for kind, title, command, fig in RESULT_SECTIONS:
        sections.append(result_section(con, kind, title, command, fig))
    sections.append(announcements_section(con))
    sections.append(adjustments_section(con))
    return sections


def write_store_report(con: duckdb.DuckDBPyConnection, out: str | Path, *, store_name: str = "store",
                       charts: bool = True, on_step: Callable[[str], None] | None = None) -> Path:
    """Write the report of the store behind ``con`` to ``out`` (one HTML file, opens offline)."""
    sections = build_sections(con, charts=charts, on_step=on_step)
    meta = f"store {html.escape(store_name)} &middot; generated {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC"
    return write_report(out, "margincal: margin report", sections, meta)


def section_status(sections: Sequence[Section]) -> list[dict[str, Any]]:
    """Which sections hold results (not just a note saying how to produce them) and how many figures."""
    return [{"section": s.title, "figures": len(s.figures),
             "has_results": bool(s.figures) or not s.html.startswith("<p class='note'>")} for s in sections]
