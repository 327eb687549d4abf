"""`margincal book ...`: generate, partition and inspect large position books; the partitioned
portfolio-margin path used by `margincal portfolio --book DIR`.

* ``margincal book generate --accounts N --out DIR`` writes a synthetic book
  (distributions in :func:`margincal.data.book.generate_book`) as Parquet partitions;
* ``margincal book partition FILE --out DIR`` turns a CSV/Parquet book file into partitions;
* ``margincal book info DIR`` prints what ``_book.json`` records;
* ``margincal book load DIR --name NAME`` copies a partitioned book into the DuckDB store,
  after which ``--book store:NAME`` reads it from there (one partition per task).

Thin shells over :mod:`margincal.data.book` and :mod:`margincal.distributed`.
"""

from __future__ import annotations

import re
import time
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
from margincal.errors import ConfigError, DataError

app = typer.Typer(help="Large position books: generate, partition, inspect.", no_args_is_help=True)

EngineOption = Annotated[str, typer.Option("--engine", help="local (this process) or dask.")]
WorkersOption = Annotated[int | None, typer.Option("--workers", help="Dask workers of a local cluster "
                                                  "(default: CPU count).")]
SchedulerOption = Annotated[str | None, typer.Option("--scheduler", help="Running Dask scheduler, e.g. "
                                                     "tcp://HOST:8786 (instead of a local cluster).")]
MemoryOption = Annotated[str | None, typer.Option("--memory-limit", help="Per local Dask worker, e.g. 6GiB "
                                                  "(default: 80% of available memory / workers).")]


def _engine(engine: str, workers: int | None, scheduler: str | None, memory_limit: str | None = None) -> Any:
    from margincal.distributed import make_engine

    if engine not in ("local", "dask"):
        raise ConfigError(f"--engine {engine!r} is not one of local, dask")
    if scheduler is not None:
        engine = "dask"  # a scheduler address means a Dask cluster
    if engine == "local" and (workers is not None or memory_limit is not None):
        raise ConfigError("--workers and --memory-limit need --engine dask")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers is {workers}; it must be >= 1")
    kw = {} if memory_limit is None else {"memory_limit": memory_limit}
    return make_engine(engine, workers=workers, scheduler=scheduler, **kw)


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*") if f.is_file()) if path.is_dir() else 0


@app.command("generate")
def generate(
    accounts: Annotated[int, typer.Option("--accounts", callback=number_option(lo=1, hi=100_000_000, integer=True), help="Number of accounts.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the partitions to (must not hold a book).")],
    seed: Annotated[int, typer.Option("--seed", help="Seed of numpy's SeedSequence.")] = 20260331,
    per_partition: Annotated[int, typer.Option("--accounts-per-partition", callback=number_option(lo=1, hi=10_000_000, integer=True), help="Accounts per Parquet file.")
                             ] = 100_000,
    engine: EngineOption = "local",
    workers: WorkersOption = None,
    scheduler: SchedulerOption = None,
    memory_limit: MemoryOption = None,
    json_out: JsonOption = False,
) -> None:
    """Write a synthetic book (documented distributions) as partitioned Parquet."""
    if accounts < 1:
        raise ConfigError(f"--accounts is {accounts}; it must be >= 1")
    t0 = time.perf_counter()
    with _engine(engine, workers, scheduler, memory_limit) as eng, progress(transient=True) as prog:
        task = prog.add_task("generating book", total=accounts)
        bk = eng.generate_book(accounts, out_dir=location(out), seed=seed, accounts_per_partition=per_partition,
                               progress=lambda n: prog.update(task, advance=n))
        desc = eng.describe()
    el = time.perf_counter() - t0
    info = {"out": str(out), "accounts": bk.n_accounts, "positions": bk.n_rows, "partitions": bk.n_partitions,
            "instruments": len(bk.instruments), "bytes": _du(out), "seconds": round(el, 3), "engine": desc,
            "seed": seed}
    if json_out:
        print_json(info)
        return
    console.print(f"wrote {bk.n_accounts:,} accounts, {bk.n_rows:,} positions on {len(bk.instruments)} instruments "
                  f"in {bk.n_partitions} partition(s) to {out} ({info['bytes'] / 2**20:,.1f} MiB) in {el:.1f} s "
                  f"({desc['engine']}, {desc['workers']} worker(s))")


@app.command("partition")
def partition(
    file: Annotated[Path, typer.Argument(help="Book file (CSV or Parquet): account, instrument, quantity.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the partitions to.")],
    per_partition: Annotated[int, typer.Option("--accounts-per-partition", callback=number_option(lo=1, hi=10_000_000, integer=True), help="Accounts per Parquet file.")
                             ] = 100_000,
) -> None:
    """Split a book file into Parquet partitions (the whole file is read here once)."""
    import pandas as pd

    from margincal.data.book import partition_frame

    if not file.exists():
        raise DataError(f"book {file} does not exist")
    if file.suffix.lower() in (".parquet", ".pq"):
        df = pd.read_parquet(file)
    else:
        try:
            df = pd.read_csv(file, dtype={"account": str, "instrument": str}, compression="infer")
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"{file.name}: cannot read as CSV ({exc})") from None
    if out.exists() and any(out.glob("*.parquet")):
        raise DataError(f"{out} already holds Parquet files; choose another folder")
    if len(df) == 0:
        raise DataError(f"{file.name}: the book has no positions (only a header, or empty)")
    bk = partition_frame(df, out, accounts_per_partition=per_partition, source=file.name)
    console.print(f"wrote {bk.n_accounts:,} accounts, {bk.n_rows:,} rows in {bk.n_partitions} partition(s) to {out}")


@app.command("info")
def info(
    path: Annotated[Path, typer.Argument(help="Folder of a partitioned book.")],
    json_out: JsonOption = False,
) -> None:
    """What a partitioned book holds (from _book.json, or discovered)."""
    from margincal.data.book import open_book

    bk = open_book(location(path))
    d = {"path": location(path), "accounts": bk.n_accounts, "positions": bk.n_rows, "partitions": bk.n_partitions,
         "instruments": len(bk.instruments), "reference_market": bk.meta.get("reference_market"),
         "generator": (bk.meta.get("generator") or {}).get("distributions")}
    if json_out:
        print_json(d)
        return
    rows = []
    for k, v in d.items():
        if isinstance(v, dict):
            rows += [{"field": f"{k}.{a}", "value": b if not isinstance(b, dict) else
                      ", ".join(f"{x}={y:.6g}" if isinstance(y, float) else f"{x}={y}" for x, y in b.items())}
                     for a, b in v.items()]
        else:
            rows.append({"field": k, "value": v})
    print_table(rows, title=f"book {path}")


@app.command("load")
def load(
    path: Annotated[Path, typer.Argument(help="Folder of a partitioned book.")],
    name: Annotated[str, typer.Option("--name", help="Name of the book in the store.")],
    replace: Annotated[bool, typer.Option("--replace", help="Replace a book of the same name.")] = False,
    store: StoreOption = None,
) -> None:
    """Copy a partitioned book into the DuckDB store (one transaction); then use --book store:NAME."""
    from margincal.data.book import load_book_to_store, open_book
    from margincal.data.store import open_store

    bk = open_book(path)
    with open_store(store) as con:
        n = load_book_to_store(bk, con, name, replace=replace)
    console.print(f"loaded {n:,} positions of {bk.n_accounts or 0:,} accounts in {bk.n_partitions} partition(s) "
                  f"as store book {name!r}; use --book store:{name}")


# ---------------------------------------------------------------- `margincal portfolio --book DIR`

STORE_PREFIX = "store:"
_URI = re.compile(r"^([a-z][a-z0-9+.-]*):/+(?=[^/])", re.I)


def location(path: Path | str) -> str:
    """The path as the user typed it: ``Path("s3://b/k")`` prints ``s3:/b/k``; put the ``//`` back."""
    s = str(path)
    m = _URI.match(s)
    if m and len(m.group(1)) > 1:
        return f"{m.group(1)}:///{s[m.end():]}" if m.group(1).lower() == "file" else f"{m.group(1)}://{s[m.end():]}"
    return s


def is_partitioned(path: Path | None) -> bool:
    if path is None:
        return False
    s = location(path)
    return s.startswith(STORE_PREFIX) or "://" in s or Path(path).is_dir()


def resolve_book(path: Path, store: Path | None) -> Any:
    """A folder of Parquet partitions, a URI (``s3://bucket/book``), or ``store:NAME`` (a book in the store)."""
    from margincal.data.book import open_book, open_store_book

    s = location(path)
    if s.startswith(STORE_PREFIX):
        return open_store_book(store, s[len(STORE_PREFIX):])
    return open_book(s)


def portfolio_book(
    book: Path,
    *,
    engine: str,
    workers: int | None,
    scheduler: str | None,
    spot: dict[str, float],
    vol: float | None,
    asof: str | None,
    method: str,
    preset: str,
    level: float,
    horizon_hours: float,
    offset: float | str,
    no_contingency: bool,
    top: int | None,
    out: Path | None,
    store: Path | None,
    json_out: bool,
    memory_limit: str | None = None,
) -> None:
    """Partitioned-book portfolio margin (`margincal portfolio --book DIR`): streams partitions through the
    engine, writes per-account results as Parquet partitions, prints a summary and the top accounts."""
    from margincal.cli.common import err_console
    from margincal.distributed import book_market, book_specs
    from margincal.margin.portfolio import build_market
    from margincal.margin.portfolio.market import open_store_if_present
    from margincal.usecases import portfolio_scenarios

    bk = resolve_book(book, store)
    specs = book_specs(bk)
    ref = bk.meta.get("reference_market")
    con = open_store_if_present(store)
    try:
        if ref:
            market = book_market(bk, spot=spot, flat_vol=vol, asof=asof)
            prov: dict[str, Any] = {"market": "reference market recorded in the book"
                                    + (" (with overrides)" if spot or vol is not None or asof else "")}
        else:
            market, prov = build_market(specs, con=con, spot=spot, flat_vol=vol, asof=asof)
        pnl, market, _ = portfolio_scenarios(specs, con=con, method=method, preset=preset, level=level,
                                             horizon_hours=horizon_hours, offset=offset, market=market,
                                             on_note=lambda m: err_console.print(f"note: {m}"))
    finally:
        if con is not None:
            con.close()
    b = location(book)
    default_out = f"{b[len(STORE_PREFIX):]}-margin" if b.startswith(STORE_PREFIX) else b.rstrip("/") + "-margin"
    out_dir = location(out) if out is not None else default_out
    n_top = 10 if top is None else top
    # a folder holding a previous run's results (our _result.json) is replaced; anything else is refused
    replace = "://" not in str(out_dir) and (Path(out_dir) / "_result.json").exists()
    with _engine(engine, workers, scheduler, memory_limit) as eng, progress(transient=True) as prog:
        task = prog.add_task(f"portfolio margin ({eng.name}, {eng.n_workers} worker(s))", total=bk.n_accounts)
        res = eng.portfolio_margin(bk, pnl=pnl, include_contingency=not no_contingency, out=out_dir, top=n_top,
                                   overwrite=replace, progress=lambda n: prog.update(task, advance=n))
    label = method if method == "historical" else f"risk matrix ({preset})"
    summary = res.summary()
    if json_out:
        print_json({"method": label, **summary, "valuation_time": market.valuation_time.isoformat(), **prov})
        return
    rows = summary["top"]
    print_table(rows, title=f"top {len(rows)} accounts by IM, {label}, valued "
                f"{market.valuation_time:%Y-%m-%d %H:%M} UTC", columns=list(rows[0].keys()) if rows else None,
                kinds={c: "money" for c in ("im", "mm", "scenario_charge", "contingency")})
    console.print(f"{res.n_accounts:,} accounts in {res.n_partitions} partition(s): total IM {res.total_im:,.2f}, "
                  f"total MM {res.total_mm:,.2f} (scenario charge {res.total_scenario_charge:,.2f}, "
                  f"contingency {res.total_contingency:,.2f}); {res.accounts_with_margin:,} accounts with IM > 0")
    console.print(f"{res.elapsed_s:.1f} s on {res.engine['engine']} ({res.engine['workers']} worker(s)); "
                  f"per-account results in {res.out}")
