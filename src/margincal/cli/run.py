"""`margincal run`: the main job end to end on the embedded default store and the bundled real data."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Annotated, Any

import typer

from margincal.cli.common import (
    JsonOption,
    StoreOption,
    console,
    number_option,
    open_store,
    print_json,
    print_table,
    progress,
)
from margincal.config import CalibrationSettings, resolve_store_path
from margincal.fmt import format_count as cnt
from margincal.fmt import format_rate as pct


def tier_validation_rows(tier_rows: list[dict[str, Any]], level: float) -> list[dict[str, Any]]:
    """One row per instrument and rate from :func:`backtest_curve` rows: tiers within ``1 - level``, the
    horizons judged, the pooled and the worst tier breach rate, rolling-zone and independence counts."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    acc: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in tier_rows:
        acc.setdefault((str(r["instrument"]), str(r["rate"])), []).append(r)
    for (inst, rate), rs in acc.items():
        n = sum(int(r["n_obs"]) for r in rs)
        b = sum(int(r["breaches"]) for r in rs)
        hs = [float(r["horizon_hours"]) for r in rs]
        worst = max(rs, key=lambda r: float(r["breach_rate"]))
        judged = sorted({str(r.get("data", f"{r['bars']} own")) for r in rs})
        out[(inst, rate)] = {
            "instrument": inst, "bars": rs[0]["bars"], "rate": rate,
            "horizons": f"{min(hs):.3g}-{max(hs):.3g} h", "judged on": ", ".join(judged),
            "tiers <= target": f"{sum(float(r['breach_rate']) <= 1 - level for r in rs)} of {len(rs)}",
            "close-outs": f"{n:,}", "breach rate": f"{100 * b / n:.2f}%" if n else "-",
            "worst tier": f"{float(worst['tier_cap']):,.0f}: {100 * float(worst['breach_rate']):.2f}%",
            "red / yellow 250-windows": f"{sum(int(r.get('red', 0)) for r in rs):,} / "
                                         f"{sum(int(r.get('yellow', 0)) for r in rs):,}",
        }
    return list(out.values())


def run(
    store: StoreOption = None,
    report: Annotated[Path, typer.Option("--report", help="Where to write the HTML report.")] = Path(
        "reports/margincal-report.html"),
    horizon: Annotated[str, typer.Option("--horizon", help="Liquidation horizon (hours or 1d, 8h...).")] = "1d",
    level: Annotated[float, typer.Option("--level", callback=number_option(lo=0.5, hi=0.9999),
                                         help="Expected Shortfall confidence.")] = 0.99,
    rule: Annotated[str, typer.Option("--rule", help="v2 (default): size-dependent close-out horizon, brackets "
                                      "from the margin curve; flat: one --horizon for every size (--horizon, "
                                      "--mm-fraction and --buffer apply to flat only).")] = "v2",
    json_out: JsonOption = False,
) -> None:
    """Ingest the bundled data, calibrate every bundled instrument, publish, print and report."""
    # the whole modelling stack is imported when the command runs, not for `--help`
    import numpy as np

    from margincal.backtest import backtest_figures
    from margincal.backtest.published import backtest_curve, backtest_published, breach_summary, curve_summary
    from margincal.backtest.validation import fine_rows, fine_sets_for, finest_rows
    from margincal.data.samples import SAMPLES, calibration_targets, ingest_samples
    from margincal.data.store import load_bars
    from margincal.margin.published import published_history
    from margincal.reports.html import Section, instrument_figure, table_html, write_report
    from margincal.reports.margin_v2 import margin_v2_sections
    from margincal.risk.models import horizon_hours
    from margincal.usecases.calibration import calibrate_and_submit

    settings = CalibrationSettings(level=level, horizon_hours=horizon_hours(horizon), rule=rule)
    targets = calibration_targets()
    path = resolve_store_path(store)
    with progress() as prog:
        t_ing = prog.add_task("ingesting bundled data", total=len(SAMPLES))
        t_cal = prog.add_task("calibrating", total=len(targets))
        t_rep = prog.add_task("margin history for the report", total=len(targets))
        t_bt = prog.add_task("backtest of the published margin", total=1)
        with open_store(path) as con:
            reports = ingest_samples(con, progress=lambda s: prog.update(
                t_ing, advance=1, description=f"ingesting {s.file}"))
            # through the proposal/decision path: the first run (empty store) applies at once (rule "initial"),
            # later runs where the policy allows; a decrease waits for a risk officer
            sub, pset, cals = calibrate_and_submit(
                con, targets, settings, author="margincal-run",
                on_step=lambda label: prog.update(t_cal, advance=1, description=f"calibrating {label}"))
            version = sub.version
            figures = []
            for c in cals:
                inst, tf = c.instrument, c.timeframe
                prog.update(t_rep, advance=1, description=f"history {inst} {tf}")
                bars = c.extra.get("bars")
                hist = published_history(load_bars(con, inst, tf) if bars is None else bars, tf, settings,
                                         funding=c.extra.get("funding"), underlying=c.extra.get("underlying"))
                hist["breach"] = -np.expm1(-hist["ret"].abs()) > hist["mm_rate"]
                figures.append(instrument_figure(f"{inst} ({tf} bars)", hist))
        bt = backtest_published(path, settings, targets=targets, version=version)
        tier_rows = [r for c in cals if "path" in c.extra
                     for r in backtest_curve(c.extra["bars"], c.extra["path"], c.instrument, c.timeframe,
                                             settings.level)]
        # the tiers that close out within one own bar, judged again on the bundled finer bars that resolve them
        fine = [r for c in cals if "path" in c.extra
                for r in fine_rows(c.extra["bars"], c.extra["path"], c.instrument, c.timeframe,
                                   fine_sets_for(c.instrument, c.timeframe), settings.level)]
        tier_finest = finest_rows(tier_rows, fine)
        prog.update(t_bt, advance=1)
    rows = [c.row() for c in cals]
    inserted = sum(r.rows_inserted for r in reports)
    breaches = breach_summary(bt)
    bt_rows = [{"rate": "IM" if r["model"] == "published" else "MM",
                **{k: r[k] for k in ("instrument", "start", "end", "n_obs", "breaches", "breach_rate", "kupiec_p",
                                     "christoffersen_p", "zone", "avg_margin", "crash_coverage")}}
               for r in bt.rows()]
    lines = "; ".join(f"{k}: {cnt(v['breaches'])} breaches in {cnt(v['n_obs'])} bars ({pct(v['breach_rate'])})"
                      for k, v in breaches.items())
    meta = (f"parameter set v{version} &middot; run {html.escape(str(pset.run_id))} &middot; model FHS (EWMA "
            f"&lambda;={settings.ewma_lambda}/day) &middot; ES {settings.level:g} over {settings.horizon_hours:g}h "
            f"&middot; MM = {settings.mm_fraction:g} x IM &middot; store {html.escape(path.name)}")
    v2_sections = margin_v2_sections(cals, tier_rows, settings) if tier_rows else []
    bt_horizon = (f"over {settings.horizon_hours:g}h" if settings.rule != "v2" else
                  "over ONE BAR close to close at the reference size (a reference figure, not like-for-like: the "
                  "rule's horizon differs by tier; the per-tier validation at each tier's own close-out horizon is "
                  "in the coverage section above)")
    sections = [
        Section("Calibrated margin parameters", table_html(rows)),
        *v2_sections,
        Section("Data ingested", table_html([
            {"file": r.file, "instrument": r.instrument, "kind": r.kind, "timeframe": r.timeframe or "",
             "rows": r.rows_in_file, "new rows": r.rows_inserted, "from": (r.first_ts or "")[:16],
             "to": (r.last_ts or "")[:16], "gaps": r.gaps} for r in reports])),
        Section("Backtest of the published IM and MM",
                f"<p class='meta'>The IM and MM in force at each bar are the published rule (ES, liquidity add-on, "
                f"rounding up, cap, MM) computed from data before the bar by the same function that publishes "
                f"them; each is judged against the realised loss of either side {html.escape(bt_horizon)}. "
                f"{html.escape(lines)}. The IM is an Expected Shortfall at {settings.level:g}, so it is expected "
                f"to be breached less often than {100 * (1 - settings.level):.0f}% of bars; the MM, about half of "
                "it, is expected to be breached more often. <code>margincal backtest</code> compares every model "
                "and policy.</p>" + table_html(bt_rows), backtest_figures(bt)),
        Section("Price, volatility and margin over time",
                "<p class='note'>Margin history is causal: each bar uses only data before it (the published rule "
                "on the data available then: EWMA volatility and the FHS tail updated every bar).</p>",
                figures),
    ]
    if settings.rule == "v2":
        meta = (f"parameter set v{version} &middot; run {html.escape(str(pset.run_id))} &middot; margin v2: "
                f"FHS ES {settings.level:g} at the close-out horizon of each size, anti-procyclicality "
                f"{html.escape(settings.apc)}, IM &ge; {1 + settings.im_gap:g} x MM &middot; store "
                f"{html.escape(path.name)}")
    out = write_report(report, "margincal: calibration report", sections, meta)
    if json_out:
        print_json({"store": str(path), "version": version, "run_id": pset.run_id, "rows_ingested": inserted,
                    "proposal_id": sub.proposal_id, "applied": sub.applied, "rule": sub.rule,
                    "pending_reason": sub.pending_reason,
                    "report": str(out), "parameters": rows,
                    "backtest": {"breaches": breaches, "summary": bt.summary(), "rows": bt_rows,
                                 "tiers": tier_rows, "tier_summary": curve_summary(tier_rows),
                                 "tier_validation": tier_validation_rows(tier_rows, settings.level),
                                 "tiers_finest": tier_finest,
                                 "tier_validation_finest": tier_validation_rows(tier_finest, settings.level)}})
        return
    if settings.rule == "v2":
        print_table(rows, title=f"parameter set v{version}: margin v2, FHS ES {settings.level:g} at the close-out "
                    f"horizon of each size (rates at {settings.reference_size:,.0f}; brackets in the report)")
    else:
        print_table(rows, title=f"parameter set v{version}: FHS ES {settings.level:g}, {settings.horizon_hours:g}h "
                    f"liquidation horizon")
    if settings.rule != "v2" or not tier_rows:
        for k, v in breaches.items():
            console.print(f"backtest of the published {k}: {cnt(v['breaches'])} breaches in {cnt(v['n_obs'])} bars "
                          f"of {cnt(v['instruments'])} instrument(s) ({pct(v['breach_rate'])})")
    else:
        print_table(tier_validation_rows(tier_rows, settings.level),
                    title="validation of the published brackets: each tier at its OWN close-out horizon (adverse "
                          "intrabar excursion of either side over ceil(H / bar) bars, at least one bar; "
                          f"non-overlapping); target: every tier's breach rate <= {1 - settings.level:.0%}")
        print_table(tier_validation_rows(tier_finest, settings.level),
                    title="the same at the finest bundled resolution: tiers that close out within one bar judged "
                          "on finer bars where bundled (1-minute spot, 5-minute perpetual, hourly spot; see "
                          "docs/validation.md), the others as above")
    for k, v in curve_summary(tier_rows).items():
        console.print(f"intrabar backtest of the published {k} per tier: {cnt(v['breaches'])} breaches in "
                      f"{cnt(v['n_obs'])} close-outs ({pct(v['breach_rate'])}), {cnt(v['tiers_over_1pct'])} of "
                      f"{cnt(v['tiers'])} instrument-tiers above 1%, {cnt(v['red'])} red / {cnt(v['yellow'])} "
                      f"yellow of {cnt(v['windows'])} rolling 250-windows")
    if sub.proposal_id is not None and not sub.applied:
        console.print(f"[yellow]{sub.message()}[/]")
    console.print(f"store [bold]{path}[/] ({cnt(inserted)} new rows) - live version [bold]{version}[/] "
                  f"- report [bold]{out}[/]")
