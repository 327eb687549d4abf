"""`margincal fetch`: download bars through ccxt (paginated, rate-limited, resumable)."""

from __future__ import annotations

from typing import Annotated

import typer

from margincal.cli.common import (
    JsonOption,
    StoreOption,
    date_option,
    open_store,
    print_json,
    print_table,
    progress,
)


def fetch(
    exchange: Annotated[str, typer.Option("--exchange", "-e", help="ccxt exchange id, e.g. binance.")] = "binance",
    symbol: Annotated[str, typer.Option("--symbol", "-s", help="ccxt symbol: BTC/USDT (spot), "
                                        "BTC/USDT:USDT (USD-M perpetual).")] = "BTC/USDT",
    timeframe: Annotated[str, typer.Option("--timeframe", "-t")] = "1h",
    since: Annotated[str, typer.Option("--since", callback=date_option(), help="Start (UTC), e.g. 2024-01-01.")] = "2024-01-01",
    until: Annotated[str | None, typer.Option("--until", callback=date_option(), help="End (UTC, exclusive); default now.")] = None,
    instrument: Annotated[str | None, typer.Option("--instrument", "-i", help="Store name (default from the "
                                                   "symbol: BTC-USDT, BTC-PERP).")] = None,
    store: StoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Download OHLCV bars into the store, resuming after the last stored bar."""
    from margincal.data.fetch import fetch_bars, make_exchange  # ccxt: imported when the command runs

    ex = make_exchange(exchange)
    with open_store(store) as con, progress(transient=True) as prog:
        task = prog.add_task(f"fetching {symbol} {timeframe}", total=None)
        rep = fetch_bars(con, ex, symbol, timeframe, since, until=until, instrument=instrument,
                         on_page=lambda r: prog.update(task, advance=1,
                                                       description=f"{symbol} up to {r.last_ts}"))
    if json_out:
        print_json(rep.as_dict())
    else:
        print_table([{k: v for k, v in rep.as_dict().items() if k != "notes"}], title="fetch")
