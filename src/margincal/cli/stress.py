"""`margincal stress`: apply the scenario library to a book of accounts (thin shell over margincal.stress)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
from margincal.config import resolve_store_path
from margincal.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from margincal.margin.params import ParameterSet


def _margin_policy(margin: str, store: Path | None) -> tuple[ParameterSet | str | float, str]:
    """'published' -> latest ParameterSet; 'portfolio' -> risk-matrix portfolio margin; a number -> flat rate."""
    if margin == "portfolio":
        return "portfolio", "portfolio (risk matrix)"
    if margin == "published":
        from margincal.margin import params

        path = resolve_store_path(store)
        if not path.exists():
            raise ConfigError(f"--margin published: store {path} does not exist; run `margincal run` first or "
                              "pass --margin 0.1 (a flat IM rate)")
        with open_store(path, read_only=True) as con:
            try:
                return params.load(con), "published"
            except StoreError as exc:
                raise ConfigError(f"--margin published: {exc}; or pass --margin 0.1") from None
    try:
        rate = float(margin)
    except ValueError:
        raise ConfigError(f"--margin is {margin!r}; use 'published', 'portfolio' or a rate such as 0.1") from None
    if not 0 < rate <= 1:
        raise ConfigError(f"--margin is {rate}; a rate must be in (0, 1]")
    return rate, f"flat {rate:g}"


def stress(
    scenario: Annotated[str, typer.Option("--scenario", help="Scenario name, comma list, 'historical', "
                                          "'hypothetical' or 'all'.")] = "all",
    book: Annotated[Path | None, typer.Option("--book", help="Book file (CSV/Parquet): account,instrument,"
                                              "quantity[,collateral]. Default: the synthetic book.")] = None,
    accounts: Annotated[int, typer.Option("--accounts", callback=number_option(lo=1, hi=1_000_000, integer=True), help="Size of the synthetic book.")] = 10_000,
    margin: Annotated[str, typer.Option("--margin", help="'published' (latest ParameterSet), 'portfolio' (risk-matrix portfolio "
                                          "margin) or a flat IM rate.")
                      ] = "published",
    resources: Annotated[str, typer.Option("--resources", help="'margin' (requirement) or 'collateral'.")
                         ] = "margin",
    n_worst: Annotated[int, typer.Option("--worst", callback=number_option(lo=1, hi=1000, integer=True), help="Worst windows per horizon and direction.")] = 3,
    reverse: Annotated[bool, typer.Option("--reverse/--no-reverse", help="Also run reverse stress.")] = False,
    fund: Annotated[float, typer.Option("--fund", callback=number_option(lo=0, hi=1e15), help="Insurance fund for reverse stress (quote currency).")
                    ] = 0.0,
    store: StoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Stress a book under historical and hypothetical scenarios: losses beyond margin, Cover-1 / Cover-2."""
    from margincal.margin.params import new_run_id
    from margincal.stress.book import load_book, market_from_samples, synthetic_book
    from margincal.stress.engine import stress_book
    from margincal.stress.library import get_scenarios
    from margincal.stress.reverse import reverse_stress_spot, reverse_stress_spot_vol

    if resources not in ("margin", "collateral"):
        raise ConfigError(f"--resources is {resources!r}; use margin or collateral")
    policy, policy_label = _margin_policy(margin, store) if resources == "margin" else (None, "collateral")
    with progress(transient=json_out) as prog:
        t = prog.add_task("loading book and scenarios", total=4 + (2 if reverse else 0))
        market = market_from_samples()
        bk = load_book(book) if book is not None else synthetic_book(accounts, market=market)
        prog.advance(t)
        scenarios = get_scenarios(scenario, n_worst)
        prog.update(t, advance=1, description=f"stressing {bk.n_accounts:,} accounts x {len(scenarios)} scenarios")
        result = stress_book(bk, market, scenarios, margin=policy, resources=resources)
        prog.update(t, advance=1, description="summarising")
        rows = result.summary()
        rev = []
        if reverse:
            if policy is None:
                raise ConfigError("--reverse needs --resources margin (reverse stress is against margin + fund)")
            prog.update(t, advance=1, description="reverse stress (spot)")
            rev.append({"search": "spot", **reverse_stress_spot(bk, market, margin=policy, insurance_fund=fund).row()})
            prog.update(t, advance=1, description="reverse stress (spot and vol)")
            rev.append({"search": "spot+vol", **reverse_stress_spot_vol(bk, market, margin=policy,
                                                                          insurance_fund=fund).row()})
        run_id = new_run_id()
        params = {"scenario": scenario, "book": str(book) if book else f"synthetic({accounts})",
                  "margin": policy_label, "resources": resources, "n_worst": n_worst, "fund": fund}
        if policy_label == "published":  # the version whose rates were stressed (the report's evidence)
            params["version"] = getattr(policy, "version", None)
        payload = {"summary": rows, "reverse": rev, "provenance": result.provenance,
                   "scenarios": [s.summary() for s in scenarios]}
        with open_store(store) as con:
            from margincal.data.store import save_result

            save_result(con, run_id, "stress", params, payload)
        prog.update(t, advance=1, description="stored")
    if json_out:
        print_json({"run_id": run_id, "params": params, **payload})
        return
    cols = ["scenario", "total_loss", "accounts_short", "total_shortfall", "cover1", "cover1_account", "cover2"]
    print_table(rows, title=f"book stress: {bk.source} ({bk.n_accounts:,} accounts), resources = "
                f"{result.resources_kind} [{policy_label}]", columns=cols)
    if rev:
        print_table(rev, title=f"reverse stress: smallest shock exhausting margin + fund {fund:,.0f}")
    worst = max(rows, key=lambda r: r["cover2"])
    console.print(f"worst Cover-2: [bold]{worst['scenario']}[/] {worst['cover2']:,.0f} - stored as run {run_id}")
