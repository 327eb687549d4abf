"""`margincal book ...` and `margincal portfolio --book DIR --engine local|dask`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from scipy import sparse
from typer.testing import CliRunner

from margincal.cli import book as book_cli
from margincal.cli.app import app
from margincal.data.book import open_book
from margincal.distributed import DaskEngine, book_market, book_specs
from margincal.margin.portfolio import deribit_like, portfolio_margin, scenario_pnl_matrix

runner = CliRunner()


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli") / "bk"
    r = runner.invoke(app, ["book", "generate", "--accounts", "3000", "--out", str(d), "--accounts-per-partition",
                            "1000", "--seed", "5", "--json"])
    assert r.exit_code == 0, r.output
    return d, json.loads(r.stdout)


def test_generate_writes_partitions_and_info_reads_them(generated):
    d, info = generated
    assert info["accounts"] == 3000 and info["partitions"] == 3 and info["instruments"] == 101
    assert sorted(p.name for p in d.glob("*.parquet")) == [f"part-0000{k}.parquet" for k in range(3)]
    r = runner.invoke(app, ["book", "info", str(d), "--json"])
    assert r.exit_code == 0, r.output
    meta = json.loads(r.stdout)
    assert meta["positions"] == info["positions"]
    assert "Poisson(1.5)" in meta["generator"]["positions_per_account"]


def test_portfolio_on_a_partitioned_book_local_and_dask(generated, tmp_path, monkeypatch):
    d, _ = generated
    r = runner.invoke(app, ["portfolio", "--book", str(d), "--out", str(tmp_path / "loc"), "--top", "3", "--json"])
    assert r.exit_code == 0, r.output
    loc = json.loads(r.stdout)
    # the dask path of the CLI on an in-process 2-worker cluster (threads: quick to start in a test)
    monkeypatch.setattr(book_cli, "_engine", lambda *a, **k: DaskEngine(workers=2, processes=False))
    r = runner.invoke(app, ["portfolio", "--book", str(d), "--engine", "dask", "--workers", "2",
                            "--out", str(tmp_path / "dsk"), "--top", "3", "--json"])
    assert r.exit_code == 0, r.output
    dsk = json.loads(r.stdout)
    assert dsk["engine"]["engine"] == "dask" and dsk["engine"]["workers"] == 2
    assert dsk["n_accounts"] == loc["n_accounts"] == 3000
    assert dsk["total_im"] == pytest.approx(loc["total_im"], rel=1e-12)
    assert [t["account"] for t in dsk["top"]] == [t["account"] for t in loc["top"]]
    # the single-process reference on the whole book
    bk = open_book(d)
    pnl = scenario_pnl_matrix(book_specs(bk), book_market(bk), deribit_like())
    frame = bk.to_frame()
    codes, _ids = pd.factorize(frame["account"], sort=False)
    col = {n: i for i, n in enumerate(pnl.instruments)}
    P = sparse.csr_matrix((frame["quantity"].to_numpy(),
                           (codes, frame["instrument"].astype(str).map(col).to_numpy())),
                          shape=(len(_ids), len(col)))
    ref = portfolio_margin(P, pnl)
    assert dsk["total_im"] == pytest.approx(float(ref.im.sum()), rel=1e-12)
    assert dsk["top"][0]["im"] == pytest.approx(float(ref.im.max()), rel=1e-12)
    written = ds.dataset(tmp_path / "dsk", format="parquet").to_table().to_pandas()
    assert len(written) == 3000 and written["im"].sum() == pytest.approx(dsk["total_im"], rel=1e-12)


def test_table_output_prints_summary(generated, tmp_path):
    d, _ = generated
    r = runner.invoke(app, ["portfolio", "--book", str(d), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "3,000 accounts in 3 partition(s): total IM" in r.stdout
    assert "top 10 accounts by IM" in r.stdout


def test_partition_a_csv_book_gives_the_same_margin(tmp_path):
    df = pd.DataFrame({"account": ["a", "b", "a", "c", "b", "c", "d"],
                       "instrument": ["BTC-PERP", "ETH-PERP", "ETH-PERP", "BTC-PERP", "BTC-PERP", "ETH-PERP",
                                      "BTC-PERP"],
                       "quantity": [1.0, -20.0, 10.0, -0.5, 0.25, 5.0, 2.0]})
    csv = tmp_path / "book.csv"
    df.to_csv(csv, index=False)
    r = runner.invoke(app, ["book", "partition", str(csv), "--out", str(tmp_path / "p"),
                            "--accounts-per-partition", "2"])
    assert r.exit_code == 0, r.output
    args = ["--spot", "BTC=60000", "--spot", "ETH=3000", "--asof", "2026-03-31T00:00", "--json"]
    a = runner.invoke(app, ["portfolio", str(csv), *args])
    b = runner.invoke(app, ["portfolio", "--book", str(tmp_path / "p"), "--out", str(tmp_path / "o"), *args])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    assert jb["n_accounts"] == 4
    assert jb["total_im"] == pytest.approx(ja["total_im"], rel=1e-12)
    ims = {x["account"]: x["im"] for x in ja["accounts"]}
    assert jb["top"][0]["im"] == pytest.approx(max(ims.values()), rel=1e-12)
    assert str(jb["top"][0]["account"]) == max(ims, key=ims.get)
    # worked check of one account: d holds 2 BTC-PERP long at 60,000; worst deribit move -16% -> 19,200,
    # futures contingency 1.2% x 120,000 = 1,440; delta-liquidity 120,000 x 0.1 x 120,000 / 2e7 = 72; IM = 20,712
    assert ims["d"] == pytest.approx(0.16 * 120_000 + 0.012 * 120_000 + 120_000 * 0.1 * 120_000 / 2e7, rel=1e-12)
    assert np.isfinite(jb["total_mm"])


def test_errors_are_one_line(tmp_path, generated):
    d, _ = generated
    csv = tmp_path / "b.csv"
    pd.DataFrame({"account": ["a"], "instrument": ["BTC-PERP"], "quantity": [1.0]}).to_csv(csv, index=False)
    r = runner.invoke(app, ["portfolio", "--book", str(csv), "--engine", "dask", "--spot", "BTC=1"])
    assert r.exit_code == 2 and "partitioned --book DIR" in r.output
    r = runner.invoke(app, ["portfolio", "--book", str(d), "--engine", "spark"])
    assert r.exit_code == 2 and "not one of local, dask" in r.output
    r = runner.invoke(app, ["portfolio", "--book", str(d), "--workers", "2"])
    assert r.exit_code == 2 and "--engine dask" in r.output
    r = runner.invoke(app, ["book", "generate", "--accounts", "5", "--out", str(d)])
    assert r.exit_code == 2 and "already holds a book" in r.output
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.parquet").write_bytes(b"")
    r = runner.invoke(app, ["portfolio", "--book", str(d), "--out", str(other)])
    assert r.exit_code == 2 and "already holds results" in r.output


def test_a_second_run_replaces_its_own_results(generated, tmp_path):
    d, _ = generated
    for _ in range(2):
        r = runner.invoke(app, ["portfolio", "--book", str(d), "--out", str(tmp_path / "o"), "--json"])
        assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "o").glob("*.parquet"))) == 3


def test_load_into_the_store_and_margin_from_there(generated, tmp_path):
    d, _ = generated
    store = tmp_path / "m.duckdb"
    r = runner.invoke(app, ["book", "load", str(d), "--name", "syn", "--store", str(store)])
    assert r.exit_code == 0, r.output
    a = runner.invoke(app, ["portfolio", "--book", "store:syn", "--store", str(store), "--out", str(tmp_path / "o1"),
                            "--json"])
    b = runner.invoke(app, ["portfolio", "--book", str(d), "--out", str(tmp_path / "o2"), "--json"])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert json.loads(a.stdout)["total_im"] == pytest.approx(json.loads(b.stdout)["total_im"], rel=1e-12)
    r = runner.invoke(app, ["portfolio", "--book", "store:nope", "--store", str(store)])
    assert r.exit_code == 2 and "has no book 'nope'" in r.output


def test_book_and_out_as_uris(generated, tmp_path):
    # typer turns s3://b/k into the Path s3:/b/k; the command puts the // back (file:// shown here)
    d, _ = generated
    r = runner.invoke(app, ["portfolio", "--book", f"file://{d.resolve()}", "--out", f"file://{tmp_path / 'u'}",
                            "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n_accounts"] == 3000
    assert len(list((tmp_path / "u").glob("part-*.parquet"))) == 3
    assert book_cli.location("s3:/bucket/book") == "s3://bucket/book"
