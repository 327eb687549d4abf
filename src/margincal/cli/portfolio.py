"""`margincal portfolio FILE.csv`: portfolio IM / MM per account with the driving scenario.

A thin shell over :mod:`margincal.usecases` (scenario matrix and market of a book,
shared with the service) and :mod:`margincal.margin.portfolio`: read the book, build
the market state (store bars / --spot, option vols from the store or the bundled
Deribit snapshots / --vol) and the scenario matrix once, run the chunked margin
path with a progress bar, print a table or JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from margincal.cli.common import (
    JsonOption,
    StoreOption,
    console,
    date_option,
    err_console,
    number_option,
    print_json,
    print_table,
    progress,
)
from margincal.errors import ConfigError, DataError

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

# the margin stack (scipy, arch, the risk models) is imported when the command runs, not for `--help`
_LAZY = {"PRESETS": "margincal.margin.portfolio", "portfolio_margin_blocks": "margincal.margin.portfolio",
         "read_book": "margincal.margin.portfolio", "open_store_if_present": "margincal.margin.portfolio.market",
         "PORTFOLIO_METHODS": "margincal.usecases", "history_closes": "margincal.usecases",
         "portfolio_scenarios": "margincal.usecases", "METHODS": "margincal.usecases"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), "PORTFOLIO_METHODS" if name == "METHODS" else name)
    raise AttributeError(name)



def _parse_offset(value: str | float) -> str | float:
    if isinstance(value, (int, float)) or value == "stressed":
        return value
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"--offset {value!r}: give 'stressed' or a fraction between 0 and 1") from None


def _parse_spots(items: list[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for it in items or []:
        for part in it.split(","):
            if not part.strip():
                continue
            name, sep, val = part.partition("=")
            try:
                if not sep:
                    raise ValueError
                out[name.strip().upper()] = float(val)
            except ValueError:
                raise ConfigError(f"--spot {part!r}: use UNDERLYING=PRICE, e.g. --spot BTC=65000") from None
    return out


def _history(con: duckdb.DuckDBPyConnection, underlyings: list[str]) -> pd.DataFrame:
    """Daily closes (moved to :func:`margincal.usecases.history_closes`; kept for callers)."""
    from margincal.usecases import history_closes

    return history_closes(con, underlyings)


def portfolio(
    file: Annotated[Path | None, typer.Argument(help="Positions CSV: account, instrument, quantity.")] = None,
    book: Annotated[Path | None, typer.Option("--book", help="Positions file (CSV or Parquet), or a folder of "
                                              "Parquet partitions, instead of FILE.")] = None,
    spot: Annotated[list[str] | None, typer.Option("--spot", help="Spot override, e.g. BTC=65000 (repeatable).")] = None,
    vol: Annotated[float | None, typer.Option("--vol", callback=number_option(lo=1e-4, hi=10), help="Flat implied vol for options without a quote "
                                              "(0.6 = 60%).")] = None,
    asof: Annotated[str | None, typer.Option("--asof", callback=date_option(),
                                             help="Valuation time (UTC), e.g. 2024-05-24T13:00.")] = None,
    method: Annotated[str, typer.Option("--method", help="risk-matrix or historical (FHS ES).")] = "risk-matrix",
    preset: Annotated[str, typer.Option("--preset", help="Risk-matrix preset: deribit or derive.")] = "deribit",
    level: Annotated[float, typer.Option("--level", callback=number_option(lo=0.5, hi=0.999999), help="ES level (historical).")] = 0.99,
    horizon_hours: Annotated[float, typer.Option("--horizon-hours", callback=number_option(lo=0.01, hi=24 * 365), help="Liquidation horizon (historical).")] = 24.0,
    offset: Annotated[str, typer.Option("--offset", help="Cross-underlying offset (historical): 'stressed' "
                                        "(stressed-correlation credit, floor 0.5, cap 0.8) or a fraction 0..1; "
                                        "1 = full offset.")] = "stressed",
    inverse: Annotated[bool, typer.Option("--inverse", help="Treat instruments as coin-margined (inverse).")] = False,
    no_contingency: Annotated[bool, typer.Option("--no-contingency", help="Leave out contingency add-ons.")] = False,
    block_size: Annotated[int, typer.Option("--block-size", help="Accounts per block.")] = 100_000,
    top: Annotated[int | None, typer.Option("--top", help="Show only the N accounts with the largest IM.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write every account's result (CSV or Parquet; "
                                             "a folder for a partitioned --book).")] = None,
    store: StoreOption = None,
    json_out: JsonOption = False,
    engine: Annotated[str, typer.Option("--engine", help="Partitioned --book DIR: local or dask.")] = "local",
    workers: Annotated[int | None, typer.Option("--workers", help="Dask workers (--engine dask).")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler tcp://HOST:PORT.")] = None,
) -> None:
    """Portfolio initial and maintenance margin per account, with the scenario that drives it."""
    from margincal.margin.portfolio import PRESETS, portfolio_margin_blocks, read_book
    from margincal.margin.portfolio.market import open_store_if_present
    from margincal.usecases import PORTFOLIO_METHODS as METHODS
    from margincal.usecases import portfolio_scenarios

    if (file is None) == (book is None):
        raise ConfigError("give a positions FILE or --book PATH (exactly one)")
    if method not in METHODS:
        raise ConfigError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    off = _parse_offset(offset)
    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r} is not one of {', '.join(sorted(PRESETS))}")
    from margincal.cli import book as _book  # partitioned books (folder of Parquet files): docs/scaling.md

    if book is not None and _book.is_partitioned(book):
        return _book.portfolio_book(book, engine=engine, workers=workers, scheduler=scheduler,
                                    spot=_parse_spots(spot), vol=vol, asof=asof, method=method, preset=preset,
                                    level=level, horizon_hours=horizon_hours, offset=off,
                                    no_contingency=no_contingency, top=top, out=out, store=store, json_out=json_out)
    if engine != "local" or workers is not None or scheduler is not None:
        raise ConfigError("--engine dask, --workers and --scheduler need a partitioned --book DIR "
                          "(see `margincal book partition`)")
    if block_size < 1:
        raise ConfigError(f"--block-size is {block_size}; it must be >= 1")
    path = file if file is not None else book
    assert path is not None  # checked above: exactly one of FILE and --book
    bk = read_book(path, inverse=True if inverse else None)
    con = open_store_if_present(store)
    try:
        pnl, market, prov = portfolio_scenarios(
            bk.specs, con=con, method=method, preset=preset, level=level, horizon_hours=horizon_hours,
            offset=off, spot=_parse_spots(spot), flat_vol=vol, asof=asof,
            on_note=lambda m: err_console.print(f"note: {m}"))
    finally:
        if con is not None:
            con.close()
    with progress(transient=True) as prog:
        task = prog.add_task("portfolio margin", total=bk.n_accounts)
        res = portfolio_margin_blocks(bk.blocks(block_size), pnl, include_contingency=not no_contingency,
                                      progress=lambda n: prog.update(task, advance=n))
    if out is not None:
        frame = res.to_frame()
        if out.suffix.lower() in (".parquet", ".pq"):
            frame.to_parquet(out, index=False)
        elif out.suffix.lower() in (".csv", ".gz"):
            frame.to_csv(out, index=False)
        else:
            raise DataError(f"--out {out}: use a .csv or .parquet file name")
    order = res.im.argsort()[::-1][:top] if top is not None else range(len(res))
    rows = res.records(order)
    label = method if method == "historical" else f"risk matrix ({preset})"
    if json_out:
        print_json({"method": label, "n_accounts": len(res), "total_im": float(res.im.sum()),
                    "market": prov, "accounts": rows})
        return
    print_table(rows, title=f"portfolio margin, {label}, valued {market.valuation_time:%Y-%m-%d %H:%M} UTC",
                columns=["account", "im", "mm", "scenario_charge", "contingency", "driving_scenario"],
                kinds={"im": "money", "mm": "money", "scenario_charge": "money", "contingency": "money"})
    spots = ", ".join(f"{u}={v:g} ({prov['spot'][u]})" for u, v in market.spot.items())
    console.print(f"{len(res)} account(s); spot {spots}")
    if prov.get("vols", {}).get("sources"):
        console.print("option vols: " + "; ".join(f"{k}: {v}" for k, v in prov["vols"]["sources"].items()))
