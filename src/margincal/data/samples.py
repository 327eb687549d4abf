"""The real sample data bundled in the project's ``data/`` folder (see data/PROVENANCE.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from margincal.config import sample_data_dir


@dataclass(frozen=True)
class Sample:
    file: str
    instrument: str
    kind: str  # ingest kind: bars, funding, open_interest, options
    timeframe: str | None = None
    instrument_kind: str | None = None
    note: str = ""


_DAILY = ["btc", "eth", "sol", "xrp", "doge", "bnb", "ada", "trx", "bch", "ltc"]

SAMPLES: tuple[Sample, ...] = (
    *(Sample(f"{c}_daily.csv", f"{c.upper()}-USDT", "bars", "1d", "spot", "Binance spot daily") for c in _DAILY),
    Sample("btcusdt_1h.csv.gz", "BTC-USDT", "bars", "1h", "spot", "Binance spot hourly"),
    Sample("ethusdt_1h.csv.gz", "ETH-USDT", "bars", "1h", "spot", "Binance spot hourly"),
    Sample("solusdt_1h.csv.gz", "SOL-USDT", "bars", "1h", "spot", "Binance spot hourly"),
    Sample("btcusdt_perp_1h.csv.gz", "BTC-PERP", "bars", "1h", "perpetual", "Binance USD-M perpetual hourly"),
    Sample("ethusdt_perp_1h.csv.gz", "ETH-PERP", "bars", "1h", "perpetual", "Binance USD-M perpetual hourly"),
    Sample("btcusdt_funding.csv", "BTC-PERP", "funding", None, "perpetual", "Binance 8h funding"),
    Sample("ethusdt_funding.csv", "ETH-PERP", "funding", None, "perpetual", "Binance 8h funding"),
    Sample("btc_open_interest_daily.csv", "BTC-PERP", "open_interest", None, "perpetual",
           "aggregate BTC futures open interest in USD, source not stated: indicative only"),
    Sample("deribit_btc_options_snapshot_2024-05.csv", "BTC", "options", None, None, "Deribit BTC options ~2024-05-24"),
    Sample("deribit_eth_options_snapshot_2024-05.csv", "ETH", "options", None, None, "Deribit ETH options ~2024-05-24"),
    Sample("deribit_eth_options_snapshot_2024-01-08.csv", "ETH", "options", None, None,
           "Deribit ETH options 2024-01-08 11:19 UTC"),
)


def sample_path(file: str) -> Path:
    return sample_data_dir() / file


def calibration_targets() -> list[tuple[str, str]]:
    """(instrument, timeframe) pairs calibrated by `margincal run`: daily spot and hourly perpetuals."""
    return [(s.instrument, s.timeframe) for s in SAMPLES
            if s.kind == "bars" and (s.timeframe == "1d" or s.instrument_kind == "perpetual")]  # type: ignore[misc]


def ingest_samples(con: duckdb.DuckDBPyConnection, progress=None) -> list:  # type: ignore[no-untyped-def]
    """Ingest every bundled sample (idempotent). ``progress(sample)`` is called before each file."""
    from margincal.data.ingest import ingest_file

    reports = []
    for s in SAMPLES:
        if progress is not None:
            progress(s)
        reports.append(ingest_file(con, sample_path(s.file), instrument=s.instrument, timeframe=s.timeframe,
                                   kind=s.kind, instrument_kind=s.instrument_kind))
    return reports
