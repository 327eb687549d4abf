"""`margincal cascade`: liquidation cascades under margin policies (thin shell over margincal.stress.policies)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
from margincal.data.store import open_store, save_result
from margincal.errors import ConfigError

_EVENTS = ("ftx", "2025-10-10", "mc")


def cascade(
    policy: Annotated[str, typer.Option("--policy", help="static, calibrated, dynamic or all.")] = "all",
    event: Annotated[str, typer.Option("--event", help="ftx, 2025-10-10, mc or all.")] = "ftx",
    accounts: Annotated[int, typer.Option("--accounts", callback=number_option(lo=1, hi=1_000_000, integer=True), help="Simulated accounts.")] = 5_000,
    paths: Annotated[int, typer.Option("--paths", callback=number_option(lo=1, hi=100_000, integer=True), help="Monte Carlo paths (event mc).")] = 200,
    rare_event: Annotated[int, typer.Option("--rare-event", callback=number_option(lo=0, hi=10_000_000, integer=True), help="Importance-sampling draws for "
                                            "P(bad debt > fund) per policy (event mc; 0 = skip).")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Population seed.")] = 7,
    html: Annotated[Path | None, typer.Option("--html", help="Also write an HTML report with the charts.")] = None,
    store: StoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Replay real crashes (hourly BTC perp) and Monte Carlo shocks: bad debt, liquidations, fund, ADL per policy."""
    from margincal.margin.params import new_run_id
    from margincal.stress.figures import cascade_figures
    from margincal.stress.policies import POLICIES, CascadeSetup, bad_debt_exceedance, compare_policies

    pols = list(POLICIES) if policy == "all" else [policy]
    evs = list(_EVENTS) if event == "all" else [event]
    for p in pols:
        if p not in POLICIES:
            raise ConfigError(f"--policy is {p!r}; use static, calibrated, dynamic or all")
    for e in evs:
        if e not in _EVENTS:
            raise ConfigError(f"--event is {e!r}; use ftx, 2025-10-10, mc or all")
    if accounts < 10:
        raise ConfigError(f"--accounts is {accounts}; use at least 10")
    setup = CascadeSetup(n_accounts=accounts, seed=seed)
    n_replays = len([e for e in evs if e != "mc"]) * len(pols)
    n_mc = (paths * len(pols)) if "mc" in evs else 0
    with progress(transient=json_out) as prog:
        t1 = prog.add_task("cascades", total=max(n_replays + (1 if n_mc else 0), 1))
        t2 = prog.add_task("Monte Carlo paths", total=max(n_mc, 1))
        res = compare_policies(evs, pols, setup=setup, n_paths=paths,
                               on_step=lambda s: prog.update(t1, advance=1, description=s),
                               on_path=lambda: prog.advance(t2))
        exceed = []
        if rare_event and "mc" in evs:
            t3 = prog.add_task("importance sampling", total=len(pols))
            for p in pols:
                exceed.append(bad_debt_exceedance(p, n=rare_event, setup=setup).row())
                prog.advance(t3)
        run_id = new_run_id()
        params = {"policy": policy, "event": event, "accounts": accounts, "paths": paths, "rare_event": rare_event,
                  "seed": seed}
        payload = {**res.payload(), "exceedance": exceed}
        with open_store(store) as con:
            save_result(con, run_id, "cascade", params, payload)
    if html is not None:
        from margincal.reports.html import Section, table_html, write_report

        write_report(html, "margincal: liquidation cascades", [
            Section("Policy comparison", table_html(res.rows)), Section("Charts", "", cascade_figures(res))])
    if json_out:
        print_json({"run_id": run_id, "params": params, "rows": res.rows, "exceedance": exceed})
        return
    cols = ["event", "policy", "mean_im", "rounds", "liquidations", "liquidated_notional", "min_price", "bad_debt",
            "fund_paid", "adl_volume", "q99_bad_debt", "p_bad_debt_gt_fund"]
    print_table(res.rows, title=f"liquidation cascades: {accounts:,} accounts (seed {seed})", columns=cols, digits=3)
    if exceed:
        print_table(exceed, title="P(bad debt > insurance fund): importance sampling vs crude MC at the same n",
                    columns=["policy", "p_is", "se_is", "ci95_is", "p_crude", "ci95_crude", "n"], digits=8)
    console.print(f"stored as run {run_id}" + (f" - report {html}" if html else ""))
