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
    open_store,
    print_json,
    print_table,
    progress,
)
from margincal.errors import ConfigError

_EVENTS = ("ftx", "2025-10-10", "mc")


def cascade(
    policy: Annotated[str, typer.Option("--policy", help="static, calibrated, dynamic or all.")] = "all",
    event: Annotated[str, typer.Option("--event", help="ftx, 2025-10-10, mc or all.")] = "ftx",
    accounts: Annotated[int, typer.Option("--accounts", callback=number_option(lo=1, hi=1_000_000, integer=True), help="Simulated accounts.")] = 5_000,
    paths: Annotated[int, typer.Option("--paths", callback=number_option(lo=1, hi=100_000, integer=True), help="Monte Carlo paths (event mc; v1 200, v2 use 10000).")] = 200,
    rare_event: Annotated[int, typer.Option("--rare-event", callback=number_option(lo=0, hi=10_000_000, integer=True), help="Importance-sampling draws for "
                                            "P(bad debt > fund) per policy (event mc; 0 = skip).")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Population seed.")] = 7,
    html: Annotated[Path | None, typer.Option("--html", help="Also write an HTML report with the charts.")] = None,
    engine: Annotated[str, typer.Option("--engine", help="v1 (one path, exact ranked ADL, the policy comparison) "
                                        "or v2 (mark price, partial liquidation, endogenous liquidity, agents, "
                                        "many paths; see docs/stress_testing.md).")] = "v1",
    liquidation: Annotated[str, typer.Option("--liquidation", help="v2: full, partial or ladder.")] = "partial",
    trigger: Annotated[str, typer.Option("--trigger", help="v2: mark (index + 30 s EMA of the basis) or last.")
                       ] = "mark",
    mm: Annotated[float, typer.Option("--mm", help="v2: maintenance margin rate (IM = --im-mult x MM).")] = 0.025,
    im_mult: Annotated[float, typer.Option("--im-mult", help="v2: initial / maintenance ratio.")] = 2.0,
    adl: Annotated[str, typer.Option("--adl", help="v2: ranked (profit x leverage, the default) or pro_rata "
                                     "auto-deleveraging when the fund runs out.")] = "ranked",
    capacity: Annotated[float | None, typer.Option("--capacity", help="v2: liquidator capacity per step, "
                                                   "fraction of OI (default unlimited).")] = None,
    draws: Annotated[int, typer.Option("--depth-draws", help="v2: depth draws per replay (uncertainty bands).")
                     ] = 200,
    market_makers: Annotated[bool, typer.Option("--market-makers/--no-market-makers",
                                                help="v2: depth and spread respond to volatility and flow.")] = True,
    arbitrageurs: Annotated[bool, typer.Option("--arbitrageurs/--no-arbitrageurs",
                                               help="v2: bounded pull of the price toward the index.")] = True,
    stop_losses: Annotated[bool, typer.Option("--stop-losses/--no-stop-losses",
                                              help="v2: stop-loss clusters at -/+3, 5, 10%.")] = True,
    optimise: Annotated[bool, typer.Option("--optimise", help="v2: also search MM, IM and fund size "
                                           "(efficient frontier).")] = False,
    store: StoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Replay real crashes (hourly BTC perp) and Monte Carlo shocks: bad debt, liquidations, fund, ADL per policy."""
    if engine not in ("v1", "v2"):
        raise ConfigError(f"--engine is {engine!r}; use v1 or v2")
    if engine == "v2":
        _cascade_v2(event, accounts, paths, seed, html, liquidation, trigger, mm, im_mult, capacity, draws,
                    market_makers, arbitrageurs, stop_losses, optimise, store, json_out, adl=adl)
        return
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
            from margincal.data.store import save_result

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
    print_table(res.rows, title=f"liquidation cascades: {accounts:,} accounts (seed {seed})", columns=cols)
    if exceed:
        print_table(exceed, title="P(bad debt > insurance fund): importance sampling vs crude MC at the same n",
                    columns=["policy", "p_is", "se_is", "ci95_is", "p_crude", "ci95_crude", "n"])
    console.print(f"stored as run {run_id}" + (f" - report {html}" if html else ""))


def _cascade_v2(event: str, accounts: int, paths: int, seed: int, html: Path | None, liquidation: str, trigger: str,
                mm: float, im_mult: float, capacity: float | None, draws: int, market_makers: bool,
                arbitrageurs: bool, stop_losses: bool, optimise: bool, store: Path | None, json_out: bool, *,
                adl: str = "ranked") -> None:
    from margincal.margin.params import new_run_id
    from margincal.stress.cascade import Agents, MarketConfig, MarkRule
    from margincal.stress.cascade.committee import Policy, run_v2

    evs = list(_EVENTS) if event == "all" else [event]
    for e in evs:
        if e not in _EVENTS:
            raise ConfigError(f"--event is {e!r}; use ftx, 2025-10-10, mc or all")
    if trigger not in ("mark", "last"):
        raise ConfigError(f"--trigger is {trigger!r}; use mark or last")
    if adl not in ("ranked", "pro_rata"):
        raise ConfigError(f"--adl is {adl!r}; use ranked or pro_rata")
    if not (0 < mm < 1 and im_mult >= 1 and mm * im_mult <= 1):
        raise ConfigError(f"--mm {mm} and --im-mult {im_mult}: need 0 < mm < 1, im-mult >= 1, mm x im-mult <= 1")
    if accounts < 10 or paths < 1 or draws < 1:
        raise ConfigError("--accounts >= 10, --paths >= 1 and --depth-draws >= 1 are required")
    if capacity is not None and not capacity > 0:
        raise ConfigError(f"--capacity is {capacity}; it must be > 0")
    cfg = MarketConfig(liquidation=liquidation, mark=MarkRule("ema" if trigger == "mark" else "last"),
                       capacity_ratio=capacity, adl=adl,
                       agents=Agents(market_makers=market_makers, arbitrageurs=arbitrageurs, stop_losses=stop_losses))
    with progress(transient=json_out) as prog:
        prog.add_task("cascade v2 (replays, Monte Carlo" + (", optimiser)" if optimise else ")"), total=None)
        out = run_v2(evs, policy=Policy(mm, im_mult), cfg=cfg, draws=draws, n_paths=paths, n_accounts=accounts,
                     seed=seed, with_optimiser=optimise, optimiser_paths=min(paths, 2_000))
        run_id = new_run_id()
        params = {"engine": "v2", "event": event, "accounts": accounts, "paths": paths, "seed": seed,
                  "liquidation": liquidation, "trigger": trigger, "adl": adl, "mm": mm, "im_mult": im_mult, "capacity": capacity,
                  "depth_draws": draws, "market_makers": market_makers, "arbitrageurs": arbitrageurs,
                  "stop_losses": stop_losses, "optimise": optimise}
        with open_store(store) as con:
            from margincal.data.store import save_result

            save_result(con, run_id, "cascade", params, out)
    if html is not None:
        from margincal.reports.html import Section, table_html, write_report
        from margincal.stress.figures import cascade_figures

        secs = [Section("Cascade v2", table_html(out["rows"])), Section("Charts", "", cascade_figures(out))]
        if optimise:
            secs.append(Section("Efficient frontier", table_html(out["optimiser"]["frontier"])))
        write_report(html, "margincal: liquidation cascades (v2)", secs)
    if json_out:
        print_json({"run_id": run_id, "params": params, **out})
        return
    rep = [r for r in out["rows"] if r["event"] != "mc"]
    mcr = [r for r in out["rows"] if r["event"] == "mc"]
    if rep:
        print_table(rep, title=f"cascade v2 replays: {accounts:,} accounts, {draws} depth draws (bands 5-95%), "
                    "liquidations with mark vs last-trade triggers")
    if mcr:
        print_table(mcr, title=f"cascade v2 Monte Carlo: {paths:,} paths (seed {seed})")
    if optimise:
        o = out["optimiser"]
        print_table(o["frontier"], title=f"efficient frontier ({o['constraint']})")
        c = o["chosen"]
        console.print("chosen: " + (f"MM {c['mm_rate']:g}, IM {c['im_rate']:g}, fund {100 * c['fund_ratio']:g}% of OI, "
                                    f"E[bad debt] {c['expected_bad_debt']:,.0f}, objective {c['objective']:,.0f}"
                                    if c else "no feasible point on the grid"), markup=False)
    console.print(f"stored as run {run_id}" + (f" - report {html}" if html else ""))
