"""`margincal backtest`: rolling out-of-sample backtest of margin models and policies.

Data: bars from the store when it exists and holds them (``--store`` or
``$MARGINCAL_STORE`` / ``./margincal.duckdb``), else the bundled CSVs. Horizons
that are whole days use daily bars, others hourly bars. The result is saved to
the store (kind ``backtest``) when a store is given or already exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from margincal.cli.common import (
    JsonOption,
    StoreOption,
    console,
    number_option,
    print_json,
    print_table,
    progress,
)
from margincal.fmt import format_leverage, format_rate


def _pct(v: Any, digits: int = 2) -> str:
    return format_rate(v, digits)  # one format for every rate: percent, 2 decimals unless a table says otherwise


def _p(v: Any) -> str:
    return "-" if v is None or v != v else (f"{v:.3f}" if v >= 0.001 else f"{v:.0e}")


def _display(rows: list[dict[str, Any]], first: tuple[str, ...], multi: bool) -> list[dict[str, Any]]:
    """Rows formatted for the terminal (percentages, p-values); level/horizon only when they vary."""
    out = []
    for r in rows:
        d: dict[str, Any] = {k: r[k] for k in first}
        if multi:
            d["level"] = f"{r['level']:g}"
            d["horizon"] = f"{r['horizon_hours']:g}h"
        d["days"] = r["n_obs"]
        d["breaches"] = r["breaches"]
        d["rate"] = _pct(r["breach_rate"])
        d["kupiec p"] = _p(r["kupiec_p"])
        d["christ. p"] = _p(r["christoffersen_p"])
        d["zone" if "zone" in r else "g/y/r"] = r.get("zone", r.get("zones"))
        if "passed" in r:
            d["tests ok"] = f"{r['passed']}/{r['instruments']}"
        d["avg margin"] = _pct(r["avg_margin"])
        d["peak/trough"] = format_leverage(r["peak_to_trough"])
        d["max 30d rise"] = _pct(r["max_30d_increase"])
        d["crash cover"] = _pct(r["crash_coverage"])
        out.append(d)
    return out


def _crash_wide(crash: list[dict[str, Any]], policies: tuple[str, ...] = ("raw", "static")) -> list[dict[str, Any]]:
    """Crash rows pivoted: one row per instrument x day, a column per model (raw) and static; '*' = breached."""
    rows: dict[tuple[str, float, float, str], dict[str, Any]] = {}
    for c in crash:
        if c["policy"] not in policies:
            continue
        key = (c["instrument"], c["level"], c["horizon_hours"], c["day"])
        r = rows.setdefault(key, {"instrument": c["instrument"], "day": c["day"], "event": c["event"][:28],
                                  "move": ("+" if c["move"] > 0 else "") + _pct(c["move"])})
        col = c["model"] if c["policy"] == "raw" else c["policy"]
        r[col] = _pct(c["margin"]) + ("" if c["covered"] else "*")
    return list(rows.values())


def _number_or_text(x: str) -> float | str:
    try:
        return float(x)
    except ValueError:
        return x


def backtest(
    instrument: Annotated[list[str] | None, typer.Option(
        "--instrument", "-i", help="Instrument (repeatable; BTC-USDT, btc, btc_daily...). Default: all.")] = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", "-m", help="Model (repeatable): fhs, hs, normal, t, cf, evt, mc, published (the published IM), "
        "published-mm; name@k re-estimates the tail every k bars; risk:<name> runs a model's reference refit "
        "loop. Default: fhs hs normal t cf evt.")] = None,
    policy: Annotated[list[str] | None, typer.Option(
        "--policy", "-p", help="Policy (repeatable): raw, static, apc:<name>, preset:<name>. Default: all.")] = None,
    level: Annotated[list[float] | None, typer.Option(
        "--level", callback=number_option(lo=0.5, hi=0.9999), help="Coverage of the two-sided loss (repeatable). Default 0.99.")] = None,
    horizon: Annotated[list[str] | None, typer.Option(
        "--horizon", help="Liquidation horizon in hours or 1d/8h (repeatable). Default 24.")] = None,
    min_history: Annotated[int, typer.Option("--min-history", callback=number_option(lo=20, hi=100_000, integer=True), help="Bars of data before the first test day.")] = 250,
    worst: Annotated[int, typer.Option("--worst", callback=number_option(lo=0, hi=1000, integer=True), help="Worst days per instrument added to the crash table.")] = 5,
    per_instrument: Annotated[bool, typer.Option("--per-instrument", help="Also print one row per "
                                                 "instrument.")] = False,
    crash: Annotated[bool, typer.Option("--crash/--no-crash", help="Print the crash-day table.")] = True,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Run id for the stored result.")] = None,
    published: Annotated[bool, typer.Option(
        "--published", help="Validate the published margin v2 rule instead (per tier: intrabar adverse excursion "
        "over the close-out horizon, Kupiec, Christoffersen, rolling 250-window zones, cost of coverage, APC; "
        "the daily coins and the hourly perpetuals, or --instrument).")] = False,
    store: StoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Backtest margin models x policies: coverage tests, procyclicality, crash days."""
    if published:
        _published(instrument, levels=[float(x) for x in (level or [0.99])], store=store, json_out=json_out)
        return
    from margincal.backtest.data import load_returns, timeframe_for_horizon
    from margincal.backtest.engine import run_backtest
    from margincal.backtest.models import DEFAULT_MODELS
    from margincal.config import resolve_store_path
    from margincal.errors import ConfigError
    from margincal.risk.base import horizon_hours

    hours = [horizon_hours(_number_or_text(h)) for h in (horizon or ["24"])]
    levels = [float(x) for x in (level or [0.99])]
    path = resolve_store_path(store)
    store_exists = Path(path).exists()
    by_tf: dict[str, list[float]] = {}
    for h in hours:
        by_tf.setdefault(timeframe_for_horizon(h), []).append(h)
    results = []
    with progress(transient=True) as prog:
        task = prog.add_task("backtest", total=None)
        for tf, hs in by_tf.items():
            data = load_returns(instrument, timeframe=tf, store=path, use_store=store_exists)
            if not data:
                raise ConfigError(f"no {tf} bars to backtest")

            def step(done: int, total: int, label: str) -> None:
                prog.update(task, total=total, completed=done, description=label)

            results.append(run_backtest(data, models=model or DEFAULT_MODELS, policies=policy, levels=levels,
                                        horizons=hs, min_history=min_history, worst_n=worst, progress=step,
                                        run_id=run_id))
    from margincal.backtest.engine import combine_results

    res = combine_results(results)
    payload = res.to_payload()
    saved = None
    if store is not None or store_exists:
        from margincal.data.store import open_store, save_result

        params = {"instruments": [d["instrument"] for d in res.instruments], "models": list(res.params["models"]),
                  "policies": list(res.params["policies"]), "levels": levels, "horizons_hours": hours,
                  "min_history": min_history, "worst": worst}
        with open_store(path) as con:
            save_result(con, res.run_id, "backtest", params, res.to_payload(include_series=True))
        saved = str(path)
    if json_out:
        print_json({**payload, "stored": saved})
        return
    multi = len(levels) > 1 or len(hours) > 1
    what = "" if multi else f" coverage {levels[0]:g}, {hours[0]:g}h horizon;"
    print_table(_display(res.summary(), ("model", "policy"), multi),
                title=f"margin backtest {res.run_id}:{what} pooled over {len(res.instruments)} instrument(s); "
                      "g/y/r = instruments in the green/yellow/red zone; tests ok = instruments with Kupiec and "
                      "Christoffersen p >= 0.05")
    if per_instrument:
        print_table(_display(res.rows(), ("instrument", "model", "policy"), multi), title="per instrument")
    if crash:
        wide = _crash_wide(res.crash_rows())
        if wide:
            print_table(wide, title="crash days: margin in force before the move (raw models, static); "
                                    "* = breached")
    console.print(f"data: {', '.join(sorted({d['source'].split(':')[0] for d in res.instruments}))}"
                  + (f" - stored in {saved} (run {res.run_id})" if saved else " - not stored (no store)"))


def _published(instrument: list[str] | None, *, levels: list[float], store: Any, json_out: bool) -> None:
    """``margincal backtest --published``: :func:`margincal.backtest.validation.validate_published`."""
    from margincal.backtest.validation import validate_published
    from margincal.config import CalibrationSettings, resolve_store_path

    path = resolve_store_path(store)
    settings = CalibrationSettings(level=levels[0])
    with progress(transient=True) as prog:
        prog.add_task("validating the published rule per tier", total=None)
        v = validate_published(settings, instruments=instrument, store=path, use_store=Path(path).exists(),
                               timeframes=("1d", "1h"))
    if json_out:
        print_json({k: v[k] for k in ("rows", "summary", "per_instrument", "apc", "z2", "crash", "targets",
                                      "sub_bar", "targets_finest")})
        return
    print_table([{"rate": k, **{c: d[c] for c in ("tiers", "n_obs", "breaches", "tiers_over_1pct", "windows",
                                                   "yellow", "red", "ind_rejected")},
                  "breach rate": _pct(d["breach_rate"])} for k, d in v["summary"].items()],
                title=f"published margin v2 rule, per tier, intrabar adverse excursion over the close-out horizon "
                      f"(at least one bar), coverage {settings.level:g}")
    print_table(v["per_instrument"], title="per instrument (counts over its tiers)")
    from margincal.backtest.validation import crash_summary

    crash = crash_summary(v["crash"])
    if crash:
        venues = sorted({k[:-9] for r in crash for k in r if k.endswith("_breaches") and k != "engine_breaches"})
        print_table([{"instrument": r["instrument"], "bars": r["bars"], "event": r["event"],
                      "tier cap": f"{r['tier_cap']:,.0f}", "H_MM": f"{r['horizon_hours']:.3g} h",
                      "close-outs": r["closeouts"], "worst exc.": _pct(r["worst_excursion"], 1),
                      "engine": f"{r['engine_breaches']} ({_pct(r['engine_mm'], 2)})",
                      **{v_: (f"{r[v_ + '_breaches']} ({_pct(r[v_ + '_mm'], 2)})" if v_ + "_mm" in r else "")
                         for v_ in venues}} for r in crash],
                    title="named crash days at the close-out horizon: MM breaches among the day's close-outs "
                          "(MM at the worst one), engine and venue presets over the same horizon")
    print_table([{"instrument": z["instrument"], "bars": z["bars"], "n_obs": z["n_obs"],
                  "VaR breaches": z["var_breaches"], "Z2": f"{z['z2']:.3f}",
                  "simulated p": f"{z['z2_pvalue']:.3f}" if z["n_sims"] else "-"} for z in v["z2"]],
                title="Acerbi-Szekely Z2 of the one-bar ES (two-sided loss), p-value simulated under the FHS null")
    if v["sub_bar"]:
        print_table([{"instrument": r["instrument"], "tier cap": f"{r['tier_cap']:,.0f}", "rate": r["rate"],
                      "horizon": f"{r['horizon_min']:.3g} min", "data": r["data"], "from": r["first"],
                      "to": r["last"], "close-outs": f"{r['n_obs']:,}", "breach rate": _pct(r["breach_rate"], 3),
                      "red / yellow": f"{r.get('red', 0):,} / {r.get('yellow', 0):,}"} for r in v["sub_bar"]],
                    title="tiers that close out within one bar, judged on the bundled finer bars that resolve them")
    print_table([{"target (issue 15 item 5)": k, "met (whole bar)": f"{a} of {b}",
                  "met (finest bundled bars)": "{} of {}".format(*v["targets_finest"][k])}
                 for k, (a, b) in v["targets"].items()], title="targets")
