"""One instrument vocabulary: every name form against the venue references and every consumer."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from margincal.errors import ConfigError, DataError
from margincal.instruments import Instrument, format_name, parse, perpetual_name, spot_name, underlying_of

REF = Path(__file__).parent / "reference" / "instrument_names.csv"
ROWS = list(csv.DictReader(REF.open()))
IDS = [r["name"] for r in ROWS]
LINEAR_NON_SPOT = [r for r in ROWS if r["kind"] != "spot" and r["settle"] != r["base"] and not r["venue"]]


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_parse_matches_venue_documentation(row):
    i = parse(row["name"], venue=row["venue"] or None)
    assert (i.kind, i.base, i.quote, i.settle) == (row["kind"], row["base"], row["quote"], row["settle"])
    assert i.inverse == (row["settle"] == row["base"])
    assert i.expiry == (pd.Timestamp(row["expiry"]) if row["expiry"] else None)
    assert i.strike == (float(row["strike"]) if row["strike"] else None)
    assert i.option_type == (row["option_type"] or None)
    assert i.raw == row["name"]


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_ccxt_form_is_lossless(row):
    i = parse(row["name"], venue=row["venue"] or None)
    assert parse(format_name(i, "ccxt")) == i


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_margincal_form_is_a_fixed_point(row):
    i = parse(row["name"], venue=row["venue"] or None)
    name = format_name(i)
    assert format_name(parse(name)) == name
    again = parse(name)
    assert (again.kind, again.base, again.expiry, again.strike, again.option_type) == (
        i.kind, i.base, i.expiry, i.strike, i.option_type)


def test_spellings_of_one_contract_are_equal_and_case_insensitive():
    assert parse("BTC-PERP") == parse("BTC-PERPETUAL") == parse("btc-perpetual") == parse(" BTC-SWAP ")
    assert parse("BTC-USDT") == parse("BTC/USDT") == parse("BTCUSDT") == parse("btc_usdt")
    assert parse("BTCUSDT perp") == parse("BTC/USDT:USDT") == parse("BTC-USDT-SWAP")
    assert parse("BTC-USD-SWAP") == parse("BTC/USD:BTC") == parse("BTCUSD_PERP")
    assert parse("BTC-28JUN24") == parse("BTC-240628")
    assert parse("BTC-PERP") != parse("BTC-PERP", inverse=True)


def test_formats_and_helpers():
    assert format_name(parse("BTC/USDT:USDT")) == "BTC-PERP"
    assert format_name(parse("BTC_USDC-PERPETUAL")) == "BTC_USDC-PERP"
    assert format_name(parse("BTCUSDT_240628")) == "BTC-28JUN24"
    assert format_name(parse("XRP_USDC-27DEC24-0d6-C")) == "XRP_USDC-27DEC24-0d6-C"
    assert format_name(parse("BTC-28JUN24-60000-P"), "ccxt") == "BTC/USD:USD-240628-60000-P"
    assert perpetual_name("btc") == "BTC-PERP" and spot_name("eth") == "ETH-USDT"
    assert underlying_of("SOL_USDC-28JUN24-150-C") == "SOL"
    assert parse("BTC-28JUN24").years_to_expiry("2024-06-27 08:00") == pytest.approx(1 / 365)


@pytest.mark.parametrize("bad", ["", "BTC", "BTC-FOO", "BTC-32JAN24", "BTC-28XXX24", "BTC-28JUN24-x-C",
                                 "BTC-28JUN24-60000-Q", "BTC-28JUN24-0-C", "BTC--PERP", "BTC/USDT:USDT-2406",
                                 "FOOBAR perp", "btc_daily", "BTC_FOO-PERP"])
def test_bad_names_raise_a_data_error_naming_the_text(bad):
    with pytest.raises(DataError, match="instrument"):
        parse(bad)
    with pytest.raises(DataError, match="venue"):
        parse("ETH-USD", venue="nowhere")


def test_instrument_type_is_frozen_and_validated():
    i = parse("BTC-PERP")
    with pytest.raises(AttributeError):
        i.base = "ETH"  # type: ignore[misc]
    with pytest.raises(DataError):
        Instrument("perpetual", "BTC", expiry=pd.Timestamp("2024-06-28"))
    with pytest.raises(DataError):
        Instrument("option", "BTC", expiry=pd.Timestamp("2024-06-28"), strike=1.0, option_type="X")


# ------------------------------------------------------------------ every consumer reads every form alike


def _expected(row):
    return row["kind"], row["base"]


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_consumer_ingest(row, tmp_path):
    from margincal.data.ingest import infer_instrument_kind

    if row["venue"]:
        pytest.skip("the store names instruments without a venue")
    assert infer_instrument_kind(row["name"]) == _expected(row)


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_consumer_stress_book_and_dask_path_agree(row):
    from margincal.distributed.stress import stress_instruments
    from margincal.stress.book import instrument_from_name

    if row["venue"]:
        pytest.skip("venue-specific names need parse(..., venue=)")
    when = pd.Timestamp("2024-05-24", tz="UTC")
    inverse = row["settle"] == row["base"] and row["kind"] != "spot"
    if inverse:
        with pytest.raises(ConfigError, match="linear"):
            stress_instruments([row["name"]], when)
        with pytest.raises(ConfigError, match="linear"):
            instrument_from_name(row["name"])
        return
    (dask,) = stress_instruments([row["name"]], when)
    assert (dask.kind, dask.underlying) == _expected(row)
    if row["kind"] == "option":
        assert dask.strike == float(row["strike"]) and dask.option_type == row["option_type"]
        with pytest.raises(DataError, match="expiry"):
            instrument_from_name(row["name"])
    else:
        local = instrument_from_name(row["name"])
        assert (local.kind, local.underlying) == (dask.kind, dask.underlying)


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_consumer_portfolio_margin(row):
    from margincal.margin.portfolio import parse_instrument

    if row["venue"]:
        pytest.skip("venue-specific names need parse(..., venue=)")
    if row["kind"] == "spot":
        # a spot pair is base-asset collateral (Derive's basePosition) when quoted in USD or a stablecoin
        spec = parse_instrument(row["name"])
        assert (spec.kind, spec.underlying, spec.inverse) == ("base", row["base"], False)
        with pytest.raises(DataError, match="spot pair quoted in BTC"):
            parse_instrument(f"ETH/{row['base']}" if row["base"] == "BTC" else f"{row['base']}/BTC")
        return
    spec = parse_instrument(row["name"])
    assert (spec.kind, spec.underlying) == _expected(row)
    assert spec.inverse == (row["settle"] == row["base"])
    assert spec.strike == (float(row["strike"]) if row["strike"] else None)
    assert spec.expiry == (pd.Timestamp(row["expiry"]) if row["expiry"] else None)


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_consumer_book_generator_underlying(row):
    from margincal.data.book import underlying_of as book_underlying

    if row["venue"]:
        pytest.skip("venue-specific names need parse(..., venue=)")
    assert book_underlying(row["name"]) == row["base"]


@pytest.mark.parametrize("row", [r for r in ROWS if "/" in r["name"]], ids=lambda r: r["name"])
def test_consumer_ccxt_fetch_and_live_feed_names(row):
    from margincal.data.feeds import default_instrument_name
    from margincal.data.fetch import default_instrument

    name = default_instrument(row["name"])
    assert parse(name).kind == row["kind"] and parse(name).base == row["base"]
    if row["kind"] in ("spot", "perpetual", "future"):
        market = {"base": row["base"], "quote": row["quote"], "settle": row["settle"],
                  "swap": row["kind"] == "perpetual", "future": row["kind"] == "future",
                  "expiry": int(pd.Timestamp(row["expiry"]).value // 1_000_000) if row["expiry"] else None}
        assert default_instrument_name(market) == name


def test_consumer_store_records_the_kind(tmp_path):
    """The store's instrument table gets kind and underlying from the one parser, whatever the spelling."""
    from margincal.data.ingest import ingest_file
    from margincal.data.store import connect, list_instruments

    f = tmp_path / "f.csv"
    f.write_text("funding_time,funding_rate\n2024-01-01T00:00:00Z,0.0001\n2024-01-01T08:00:00Z,0.0002\n")
    con = connect(tmp_path / "s.duckdb")
    names = ["BTC-PERP", "ETH-PERPETUAL", "SOL/USDT:USDT", "XRPUSDT_PERP", "DOGE-USDT-SWAP"]
    for n in names:
        ingest_file(con, f, instrument=n)
    got = list_instruments(con).set_index("instrument")
    for n in names:
        assert got.loc[n, "kind"] == "perpetual"
        assert got.loc[n, "underlying"] == parse(n).base


# ------------------------------------------------------------------ the bug of issue 14


MARKET_SPOT = 60_000.0


def _stress_loss(name: str) -> float:
    from margincal.stress.book import StressMarket, book_from_frame
    from margincal.stress.engine import scenario_losses
    from margincal.stress.scenarios import FundingSpike

    book = book_from_frame(pd.DataFrame({"account": ["a"], "instrument": [name], "quantity": [1.0]}))
    market = StressMarket({"BTC": MARKET_SPOT}, {"BTC": 0.6})
    return float(scenario_losses(book, market, [FundingSpike("f", rate_per_8h=0.003, periods=3)])[0, 0])


@pytest.mark.parametrize("name", ["BTC-PERP", "BTC-PERPETUAL", "btc-perpetual", "BTC-SWAP", "BTC/USDT:USDT",
                                  "BTCUSDT perp", "BTC-USDT-SWAP", "BTCUSDT_PERP"])
def test_funding_spike_charges_every_spelling_of_a_perpetual(name):
    # Binance caps BTCUSDT funding at 0.3% per 8h (docs/stress_testing.md); three periods on one
    # BTC at 60,000: 0.009 * 60,000 = 540 of funding paid by the long (the worse side).
    assert _stress_loss(name) == pytest.approx(0.009 * MARKET_SPOT)


@pytest.mark.parametrize("name", ["BTC-USDT", "BTC-28JUN24"])
def test_funding_spike_spares_spot_and_futures(name):
    assert _stress_loss(name) == 0.0


def test_stress_csv_book_and_dask_reader_give_the_same_instruments(tmp_path):
    from margincal.distributed.stress import stress_instruments
    from margincal.stress.book import load_book

    names = ["BTC-PERP", "BTC-PERPETUAL", "ETH/USDT:USDT", "SOL-USDT", "BTC-28JUN24"]
    p = tmp_path / "book.csv"
    pd.DataFrame({"account": ["a"] * len(names), "instrument": names,
                  "quantity": np.ones(len(names))}).to_csv(p, index=False)
    local = {i.name: (i.kind, i.underlying) for i in load_book(p).instruments}
    dask = {i.name: (i.kind, i.underlying) for i in stress_instruments(names, "2024-05-01")}
    assert local == dask
    assert local["BTC-PERPETUAL"] == ("perpetual", "BTC")


def test_consumer_portfolio_book_file_reads_settlement_from_the_name(tmp_path):
    from margincal.margin.portfolio import read_book

    p = tmp_path / "book.csv"
    p.write_text("account,instrument,quantity\na,BTC-USD-SWAP,1\na,BTC-PERPETUAL,1\nb,BTC/USD:BTC,-2\n")
    specs = {s.name: s for s in read_book(p).specs}
    assert specs["BTC-USD-SWAP"].inverse and specs["BTC/USD:BTC"].inverse
    assert not specs["BTC-PERPETUAL"].inverse
    assert all(s.inverse for s in read_book(p, inverse=True).specs)
