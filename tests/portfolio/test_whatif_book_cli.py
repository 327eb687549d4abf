"""What-if margin, position books, and the `margincal portfolio` command."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from margincal.cli.app import app
from margincal.data.store import connect
from margincal.errors import DataError
from margincal.margin.portfolio import (
    BookWarning,
    HistoricalPortfolioMargin,
    MarketState,
    Portfolio,
    RiskMatrixMargin,
    book_from_frame,
    derive_like,
    load_daily_closes,
    parse_instrument,
    portfolio_margin,
    read_book,
    scenario_pnl_matrix,
    what_if,
)

MKT = MarketState(spot={"BTC": 68800.0, "ETH": 3725.0}, valuation_time="2024-05-24T13:00Z", flat_vol=0.55)
runner = CliRunner()


# ---------------------------------------------------------------- what-if


def test_what_if_hedging_order_lowers_im_and_reports_driver():
    pf = Portfolio({"BTC-28JUN24-70000-C": -1.0}, MKT)
    res = what_if(pf, {"BTC-PERP": 0.5})
    assert res.marginal_im == pytest.approx(res.im_after - res.im_before)
    assert res.marginal_im < 0  # a partial delta hedge of a short call
    assert res.driving_before == "BTC: spot +16%, vol +50%"  # a short call loses most when spot and vol rise
    # independent check: the before/after IM equal portfolio_margin on the same matrix
    specs = [parse_instrument("BTC-28JUN24-70000-C"), parse_instrument("BTC-PERP")]
    pnl = scenario_pnl_matrix(specs, MKT)
    direct = portfolio_margin(np.array([[-1.0, 0.0], [-1.0, 0.5]]), pnl)
    assert (res.im_before, res.im_after) == pytest.approx(tuple(direct.im))
    assert res.mm_after == pytest.approx(0.8 * res.im_after)


def test_what_if_order_forms_and_engines():
    pf = Portfolio({"BTC-PERP": 1.0}, MKT, engine=RiskMatrixMargin(config=derive_like()))
    a = what_if(pf, ("BTC-PERP", -1.0))
    assert a.im_after == pytest.approx(0.0, abs=1e-9)  # flat after the order
    assert a.driving_after == ""
    b = what_if(pf, [("ETH-PERP", 1.0), ("ETH-PERP", 1.0)])
    assert b.order == {"ETH-PERP": 2.0}
    # derive: long 2 ETH, worst is the -20% (vol up) scenario: 1.25 * (0.20 + 0.03 contingency) * 2 * 3725
    assert b.marginal_im == pytest.approx(1.25 * (0.20 + 0.03) * 2 * 3725.0)
    with pytest.raises(DataError, match="empty"):
        what_if(pf, {})
    closes = load_daily_closes(["BTC", "ETH"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = HistoricalPortfolioMargin().fit(closes)
    ph = Portfolio({"BTC-PERP": 1.0}, hist.default_market(), engine=hist)
    h = what_if(ph, {"ETH-PERP": -20.0})
    alone = what_if(Portfolio({}, hist.default_market(), engine=hist), {"ETH-PERP": -20.0})
    assert h.method == "historical"
    # BTC and ETH move together: the short ETH leg adds less than its stand-alone ES
    assert alone.im_before == 0.0 and h.marginal_im < 0.5 * alone.im_after


# ---------------------------------------------------------------- books


def test_book_from_frame_builds_sparse_matrix_and_specs():
    df = pd.DataFrame({
        "account": ["a", "b", "a", "a"],
        "instrument": ["BTC-PERP", "BTC-28JUN24-70000-C", "BTC-PERP", "ETH-PERP"],
        "quantity": [1.0, -2.0, 0.5, 3.0],
    })
    with pytest.warns(BookWarning, match="1 repeated"):
        bk = book_from_frame(df, "test.csv")
    assert list(bk.accounts) == ["a", "b"]
    assert bk.instruments == ("BTC-PERP", "BTC-28JUN24-70000-C", "ETH-PERP")
    assert bk.positions.toarray().tolist() == [[1.5, 0.0, 3.0], [0.0, -2.0, 0.0]]
    assert bk.specs[1].strike == 70000.0 and bk.specs[1].option_type == "C"
    assert [len(ids) for ids, _ in bk.blocks(1)] == [1, 1]


def test_book_errors_name_line_and_column(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("account,instrument,quantity\na,BTC-PERP,1\nb,BTC-PERP,abc\n")
    with pytest.raises(DataError, match=r"bad.csv line 3: quantity is not a finite number \('abc'\)"):
        read_book(p)
    p.write_text("account,instrument\na,BTC-PERP\n")
    with pytest.raises(DataError, match="missing column"):
        read_book(p)
    p.write_text("account,instrument,quantity\na,BTC-32JAN24,1\n")
    with pytest.raises(DataError, match="line 2"):
        read_book(p)


def test_inverse_and_contract_size_columns():
    df = pd.DataFrame({"account": ["a"], "instrument": ["BTC-PERPETUAL"], "quantity": [100.0],
                       "inverse": ["true"], "contract_size": [10.0]})
    bk = book_from_frame(df)
    assert bk.specs[0].inverse and bk.specs[0].contract_size == 10.0 and bk.specs[0].kind == "perpetual"


# ---------------------------------------------------------------- CLI

BOOK = """account,instrument,quantity
alice,BTC-PERP,1
bob,BTC-28JUN24-70000-C,-2
bob,BTC-PERP,0.5
carol,BTC-28JUN24-70000-C,1
carol,BTC-28JUN24-70000-P,-1
carol,BTC-28JUN24,-1
dave,ETH-PERP,-10
"""


@pytest.fixture
def book_csv(tmp_path):
    p = tmp_path / "book.csv"
    p.write_text(BOOK)
    return p


def _cli(*args):
    return runner.invoke(app, ["portfolio", *map(str, args)])


def test_cli_json_matches_api_and_uses_snapshot_vols(book_csv, tmp_path):
    r = _cli(book_csv, "--spot", "BTC=68800,ETH=3725", "--asof", "2024-05-24T13:00",
             "--store", tmp_path / "none.duckdb", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    rows = {a["account"]: a for a in out["accounts"]}
    assert rows["alice"]["im"] == pytest.approx(0.16 * 68800 + 0.012 * 68800 + _delta_shock(68800))
    assert rows["alice"]["driving_scenario"] == "BTC: spot -16%, vol +50%"
    assert rows["carol"]["scenario_charge"] == 0.0 and rows["carol"]["driving_scenario"] == ""
    # the two 28JUN24 70000 options take Deribit's mark_iv from the bundled snapshot
    srcs = out["market"]["vols"]["sources"]
    assert any("deribit_btc_options_snapshot_2024-05.csv" in k and v == 2 for k, v in srcs.items())
    bk = read_book(book_csv)
    from margincal.margin.portfolio import build_market

    market, _ = build_market(bk.specs, spot={"BTC": 68800, "ETH": 3725}, asof="2024-05-24T13:00")
    res = portfolio_margin(bk.positions, scenario_pnl_matrix(bk.specs, market), accounts=bk.accounts)
    assert [rows[a]["im"] for a in res.accounts] == pytest.approx(list(res.im))


def test_snapshot_vol_is_the_deribit_mark_iv():
    from margincal.config import sample_data_dir
    from margincal.margin.portfolio import build_market

    snap = pd.read_csv(sample_data_dir() / "deribit_btc_options_snapshot_2024-05.csv")
    row = snap[(snap.strike == 70000) & (snap.option_type == "call") & (snap.expiry_utc == "2024-06-28 08:00:00")]
    market, _ = build_market([parse_instrument("BTC-28JUN24-70000-C")], spot={"BTC": 68800}, asof="2024-05-24")
    assert market.vols["BTC-28JUN24-70000-C"] == pytest.approx(row.mark_iv.iloc[0] / 100.0)


@pytest.mark.filterwarnings("ignore::margincal.margin.portfolio.historical.GapWarning")
def test_cli_book_parquet_top_out_and_historical(book_csv, tmp_path):
    pq = tmp_path / "book.parquet"
    pd.read_csv(book_csv).to_parquet(pq)
    out = tmp_path / "res.csv"
    r = _cli("--book", pq, "--spot", "BTC=68800", "--spot", "ETH=3725", "--asof", "2024-05-24T13:00",
             "--top", 2, "--out", out, "--preset", "derive", "--store", tmp_path / "none.duckdb", "--json")
    assert r.exit_code == 0, r.output
    body = json.loads(r.output)
    assert len(body["accounts"]) == 2 and body["n_accounts"] == 4
    assert body["accounts"][0]["im"] >= body["accounts"][1]["im"]
    assert len(pd.read_csv(out)) == 4
    perps = tmp_path / "perps.csv"
    perps.write_text("account,instrument,quantity\nx,BTC-PERP,1\nx,ETH-PERP,-20\ny,BTC-PERP,1\nz,ETH-PERP,-20\n")
    r = _cli(perps, "--method", "historical", "--spot", "BTC=66797.37", "--spot", "ETH=2026.48",
             "--store", tmp_path / "none.duckdb", "--json")
    assert r.exit_code == 0, r.output
    acc = {a["account"]: a for a in json.loads(r.stdout)["accounts"]}  # stderr carries the GapWarning note
    assert acc["x"]["im"] < 0.7 * (acc["y"]["im"] + acc["z"]["im"])  # the spread is cheaper than its legs


def _delta_shock(delta_usd):
    """Deribit delta-liquidity term: |D| x 0.1 x min(1, |D| / 20,000,000) (pme/simulate parameters)."""
    return abs(delta_usd) * 0.1 * min(1.0, abs(delta_usd) / 20_000_000.0)


def test_cli_spot_from_store_bars(tmp_path):
    db = tmp_path / "m.duckdb"
    con = connect(db)
    con.execute("INSERT INTO bars VALUES ('BTC-PERP', '1h', TIMESTAMP '2026-05-17 06:00:00', 1, 1, 1, 70000, 1),"
                "('BTC-PERP', '1h', TIMESTAMP '2026-05-17 07:00:00', 1, 1, 1, 71000, 1)")
    con.close()
    p = tmp_path / "b.csv"
    p.write_text("account,instrument,quantity\nz,BTC-PERP,2\n")
    r = _cli(p, "--store", db, "--json")
    assert r.exit_code == 0, r.output
    body = json.loads(r.output)
    assert body["accounts"][0]["im"] == pytest.approx(2 * (0.16 + 0.012) * 71000 + _delta_shock(2 * 71000))
    assert "BTC-PERP" in body["market"]["spot"]["BTC"] and body["market"]["valuation_time"].startswith("2026-05-17")


def test_cli_errors_are_one_line_exit_2(book_csv, tmp_path):
    r = _cli(book_csv, "--asof", "2024-05-24", "--store", tmp_path / "none.duckdb")
    assert r.exit_code == 2 and "no spot price for BTC" in r.output
    r = _cli(book_csv, "--spot", "BTC=68800", "--spot", "ETH=3725", "--store", tmp_path / "none.duckdb")
    assert r.exit_code == 2 and "expired" in r.output  # valued now, the 2024 contracts have expired
    r = _cli("--spot", "BTC=1")
    assert r.exit_code == 2 and "exactly one" in r.output
    r = _cli(book_csv, "--spot", "BTC:1")
    assert r.exit_code == 2 and "UNDERLYING=PRICE" in r.output
    assert "Traceback" not in r.output


@pytest.mark.filterwarnings("ignore::margincal.margin.portfolio.historical.GapWarning")
def test_cli_historical_defaults_to_end_of_history(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("account,instrument,quantity\nx,BTC-PERP,1\n")
    r = _cli(p, "--method", "historical", "--store", tmp_path / "none.duckdb", "--json")
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert "4 of 3141 returns span more than one bar" in r.stderr
    assert body["market"]["valuation_time"].startswith("2026-03-30")  # last row of the bundled btc_daily.csv
    assert body["market"]["spot"]["BTC"] == "last close of the price history"
    closes = load_daily_closes(["BTC"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = HistoricalPortfolioMargin().fit(closes)
    ref = portfolio_margin({"BTC-PERP": 1.0}, m.scenario_pnl([parse_instrument("BTC-PERP")]))
    assert body["accounts"][0]["im"] == pytest.approx(float(ref.im[0]), rel=1e-12)
