"""Dask engine == local engine == the single-process kernels, on a real LocalCluster (2 workers).

References are independent of the distributed code: the whole book is read
into one sparse matrix and run through the single-process functions
(:func:`portfolio_margin`, :func:`stress_book`, :func:`run_backtest`); Monte
Carlo samples are rebuilt in the test from ``SeedSequence(seed).spawn(n)`` and
measured with :mod:`margincal.risk.measures`; importance-sampling estimates
are checked against scipy closed forms.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
from scipy import sparse, stats

from margincal.backtest import load_returns, run_backtest
from margincal.data.book import generate_book
from margincal.distributed import (
    DaskEngine,
    LocalEngine,
    book_market,
    book_specs,
    make_engine,
    stress_instruments,
)
from margincal.errors import ConfigError, DataError
from margincal.margin.portfolio import deribit_like, derive_like, portfolio_margin, scenario_pnl_matrix
from margincal.risk.measures import expected_shortfall, value_at_risk
from margincal.risk.montecarlo import MonteCarloModel, TCopulaMonteCarlo
from margincal.stress.book import Book, market_from_samples
from margincal.stress.engine import stress_book
from margincal.stress.scenarios import hypothetical_scenarios

RTOL = 1e-12


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    return generate_book(6_000, out_dir=tmp_path_factory.mktemp("book") / "b", accounts_per_partition=2_000,
                         seed=11)


@pytest.fixture(scope="module")
def dask_engine():
    with DaskEngine(workers=2, processes=False, memory_limit="1GiB") as eng:
        yield eng


@pytest.fixture(scope="module")
def local_engine():
    return LocalEngine()


@pytest.fixture(scope="module")
def whole(book):
    """The whole book as one CSR matrix in the book's instrument order (the single-process input)."""
    df = book.to_frame()
    codes, ids = pd.factorize(df["account"], sort=False)
    col = {n: i for i, n in enumerate(book.instruments)}
    P = sparse.csr_matrix((df["quantity"].to_numpy(), (codes, df["instrument"].astype(str).map(col).to_numpy())),
                          shape=(len(ids), len(col)))
    return np.asarray(ids), P


@pytest.fixture(scope="module")
def pnl(book):
    return scenario_pnl_matrix(book_specs(book), book_market(book), deribit_like())


def test_dask_engine_runs_two_workers(dask_engine):
    assert dask_engine.n_workers == 2
    assert dask_engine.describe()["memory_limit_per_worker"] == 2**30


def test_portfolio_margin_dask_equals_local_equals_single_process(book, dask_engine, local_engine, whole, pnl,
                                                                    tmp_path):
    seen = []
    d = dask_engine.portfolio_margin(book, pnl=pnl, collect=True, out=tmp_path / "out", top=5,
                                     progress=seen.append)
    loc = local_engine.portfolio_margin(book, pnl=pnl, collect=True, top=5)
    assert sorted(seen) == [2000, 2000, 2000]  # as_completed drove the progress, one call per partition
    pd.testing.assert_frame_equal(d.frame, loc.frame, rtol=RTOL)
    ids, P = whole
    ref = portfolio_margin(P, pnl, accounts=ids)  # single process, whole book, one call
    np.testing.assert_array_equal(d.frame["account"].to_numpy(), ref.accounts)
    np.testing.assert_allclose(d.frame["im"], ref.im, rtol=RTOL)
    np.testing.assert_allclose(d.frame["mm"], ref.mm, rtol=RTOL)
    np.testing.assert_array_equal(d.frame["driving_scenario"].to_numpy(), ref.driving_label)
    assert d.n_accounts == loc.n_accounts == 6_000
    assert d.total_im == pytest.approx(ref.im.sum(), rel=RTOL)
    assert d.total_mm == pytest.approx(0.8 * d.total_im, rel=RTOL)  # deribit_like: MM = 80% of IM
    assert d.accounts_with_margin == int((ref.im > 0).sum())
    top = np.sort(ref.im)[::-1][:5]
    np.testing.assert_allclose(d.top["im"].to_numpy(), top, rtol=RTOL)
    # per-account results written as Parquet partitions, read back = the frame
    import pyarrow.dataset as ds

    written = ds.dataset(tmp_path / "out", format="parquet").to_table().to_pandas()
    written = written.sort_values("account").reset_index(drop=True)
    np.testing.assert_allclose(written["im"], d.frame.sort_values("account")["im"], rtol=0)
    assert (tmp_path / "out" / "_result.json").exists()


def test_portfolio_margin_with_another_preset_and_without_contingency(book, dask_engine, whole):
    mk = book_market(book, flat_vol=0.8)
    pnl = scenario_pnl_matrix(book_specs(book), mk, derive_like())
    d = dask_engine.portfolio_margin(book, pnl=pnl, include_contingency=False, collect=True)
    ids, P = whole
    ref = portfolio_margin(P, pnl, accounts=ids, include_contingency=False)
    np.testing.assert_allclose(d.frame["im"], ref.im, rtol=RTOL)
    assert d.total_contingency == 0.0


def test_stress_dask_equals_single_process_stress_book(book, dask_engine, local_engine, whole, pnl):
    scen = hypothetical_scenarios()
    market = market_from_samples(underlyings=sorted({s.underlying for s in book_specs(book)}))
    d = dask_engine.stress(book, scen, market, margin=0.05)
    loc = local_engine.stress(book, scen, market, margin=0.05)
    ids, P = whole
    insts = stress_instruments(book.instruments, book.meta["reference_market"]["asof"])
    ref = stress_book(Book(tuple(str(a) for a in ids), tuple(insts), P), market, scen, margin=0.05).summary()
    for a, b, r in zip(d.rows, loc.rows, ref, strict=True):
        assert a == b
        assert a["scenario"] == r["scenario"]
        for f in ("total_loss", "total_shortfall", "cover1", "cover2"):
            assert a[f] == pytest.approx(r[f], rel=RTOL, abs=1e-9)
        assert a["accounts_short"] == r["accounts_short"]
        assert a["cover1_account"] == r["cover1_account"]
        assert a["cover2_accounts"] == r["cover2_accounts"]
    # resources = each account's portfolio IM (risk matrix): the same as stress_book with that array
    dp = dask_engine.stress(book, scen[:3], market, pnl=pnl)
    im = portfolio_margin(P[:, [book.instruments.index(n) for n in pnl.instruments]], pnl).im
    refp = stress_book(Book(tuple(str(a) for a in ids), tuple(insts), P), market, scen[:3], margin=im).summary()
    for a, r in zip(dp.rows, refp, strict=True):
        assert a["total_shortfall"] == pytest.approx(r["total_shortfall"], rel=RTOL, abs=1e-9)
        assert a["cover2"] == pytest.approx(r["cover2"], rel=RTOL, abs=1e-9)


@pytest.fixture(scope="module")
def btc_returns() -> pd.Series:
    return load_returns(["BTC-USDT"], use_store=False)[0].returns


def _reference_sample(model, n_paths, block, seed, **sim):
    """All paths, block b seeded with SeedSequence(seed).spawn(n_blocks)[b] (built here, not by the engine)."""
    sizes = [min(block, n_paths - a) for a in range(0, n_paths, block)]
    children = np.random.SeedSequence(seed).spawn(len(sizes))
    out = []
    for child, nb in zip(children, sizes, strict=True):
        m = copy.copy(model)
        m.random_state = child
        if isinstance(model, MonteCarloModel):
            m.n_sims = nb
            out.append(m.simulate(24.0))
        else:
            out.append(m.simulate(n=nb, horizon=24.0).to_numpy())
    return np.concatenate(out)


def test_monte_carlo_does_not_depend_on_workers_or_chunks(btc_returns, dask_engine, local_engine):
    model = MonteCarloModel(dist="t", n_sims=1000, random_state=5).fit(btc_returns)
    a = dask_engine.monte_carlo(model, 60_000, chunks=5, block_paths=7_000, level=0.995)
    b = local_engine.monte_carlo(model, 60_000, chunks=1, block_paths=7_000, level=0.995)
    c = dask_engine.monte_carlo(model, 60_000, chunks=9, block_paths=7_000, level=0.995)
    for x in (b, c):
        assert (x.var, x.es, x.side) == (a.var, a.es, a.side)
        assert x.sigma == pytest.approx(a.sigma, rel=RTOL)
    x = _reference_sample(model, 60_000, 7_000, 5)
    ref = {s: (value_at_risk(L, 0.995), expected_shortfall(L, 0.995)) for s, L in
           (("long", -np.expm1(x)), ("short", np.expm1(x)))}
    side = max(ref, key=lambda s: ref[s][1])
    assert a.side == side
    assert a.var == pytest.approx(ref[side][0], rel=RTOL)
    assert a.es == pytest.approx(ref[side][1], rel=RTOL)
    assert a.sigma == pytest.approx(float(np.std(x)), rel=1e-10)
    assert a.params["n_paths"] == 60_000 and a.params["seed"] == 5


def test_copula_portfolio_monte_carlo_matches_the_full_sample(dask_engine, local_engine):
    rets = pd.DataFrame({n: load_returns([n], use_store=False)[0].returns for n in ("BTC-USDT", "ETH-USDT")}
                        ).dropna().iloc[-600:]
    model = TCopulaMonteCarlo(df=5.0, random_state=9).fit(rets)
    w = {"BTC-USDT": 1.0, "ETH-USDT": -0.5}
    a = dask_engine.monte_carlo(model, 30_000, chunks=4, block_paths=4_000, weights=w)
    b = local_engine.monte_carlo(model, 30_000, chunks=2, block_paths=4_000, weights=w)
    assert (a.var, a.es) == (b.var, b.es)
    sims = _reference_sample(model, 30_000, 4_000, 9)
    loss = model.portfolio_losses(sims, np.array([1.0, -0.5]))
    assert a.var == pytest.approx(value_at_risk(loss, 0.99), rel=RTOL)
    assert a.es == pytest.approx(expected_shortfall(loss, 0.99), rel=RTOL)


def test_importance_sampling_against_closed_forms(dask_engine, local_engine):
    # P(Z > 4.5) = 3.398e-6 (scipy norm.sf); crude MC at n = 200,000 would see ~0.7 exceedances
    tp = dask_engine.tail_probability(stats.norm(), 4.5, 200_000, seed=2, block_paths=50_000, chunks=3)
    tl = local_engine.tail_probability(stats.norm(), 4.5, 200_000, seed=2, block_paths=50_000, chunks=1)
    assert tp.estimate == pytest.approx(tl.estimate, rel=RTOL)
    assert abs(tp.estimate - stats.norm.sf(4.5)) < 4 * tp.std_error
    assert tp.relative_error < 0.02
    # ES of N(0,1) at 0.9999: pdf(z) / (1 - level) with z = ppf(0.9999) = 3.719 -> 3.9585
    es = dask_engine.expected_shortfall_is(stats.norm(), 0.9999, 200_000, seed=3, block_paths=20_000, chunks=4)
    el = local_engine.expected_shortfall_is(stats.norm(), 0.9999, 200_000, seed=3, block_paths=20_000)
    z = stats.norm.ppf(0.9999)
    assert (es.var, es.es) == pytest.approx((el.var, el.es), rel=RTOL)
    assert abs(es.es - stats.norm.pdf(z) / 1e-4) < 4 * es.es_std_error
    assert abs(es.var - z) < 4 * es.var_std_error


def test_backtests_one_task_per_instrument_equal_the_single_loop(dask_engine):
    data = load_returns(["BTC-USDT", "ETH-USDT", "SOL-USDT"], use_store=False)
    kw = {"models": ["fhs", "normal"], "policies": ["raw"], "levels": [0.99], "run_id": "t"}
    d = dask_engine.backtests(data, **kw)
    ref = run_backtest(data, **kw)
    assert [p.instrument for p in d.paths] == [p.instrument for p in ref.paths]
    for a, b in zip(d.paths, ref.paths, strict=True):
        np.testing.assert_array_equal(a.margin, b.margin)
    rows_d = pd.DataFrame(d.rows())
    rows_r = pd.DataFrame(ref.rows())
    pd.testing.assert_frame_equal(rows_d, rows_r)
    assert d.params["run_id"] == "t"


def test_errors_in_tasks_reach_the_caller(book, dask_engine, pnl):
    few = scenario_pnl_matrix(book_specs(book)[:5], book_market(book), deribit_like())
    with pytest.raises(DataError, match="not among the 5 instruments"):
        dask_engine.portfolio_margin(book, pnl=few)
    with pytest.raises(ConfigError, match="exactly one"):
        dask_engine.stress(book, hypothetical_scenarios()[:1])


@pytest.mark.filterwarnings("ignore:Port 8787")
def test_engine_choice_and_scheduler_address():
    from distributed import LocalCluster

    with pytest.raises(ConfigError, match="not one of"):
        make_engine("spark")
    with pytest.raises(ConfigError, match="tcp://"):
        DaskEngine(scheduler="localhost:8786")
    with pytest.raises(ConfigError, match="--engine dask"):
        make_engine("local", scheduler="tcp://127.0.0.1:1")
    assert isinstance(make_engine("local"), LocalEngine)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        addr = cluster.scheduler_address
        assert addr.startswith("tcp://127.0.0.1:")
        with DaskEngine(scheduler=addr) as eng:
            assert eng.map(math.sqrt, [4.0, 9.0]) == [2.0, 3.0]
            assert eng.describe()["scheduler"] == addr


def test_book_from_the_duckdb_store_gives_the_same_margin(book, dask_engine, pnl, tmp_path):
    from margincal.data.book import load_book_to_store, open_store_book
    from margincal.data.store import open_store

    store = tmp_path / "s.duckdb"
    with open_store(store) as con:
        assert load_book_to_store(book, con, "synthetic") == book.n_rows
        with pytest.raises(DataError, match="already has a book"):
            load_book_to_store(book, con, "synthetic")
    sb = open_store_book(store, "synthetic")
    assert sb.n_partitions == book.n_partitions and sb.instruments == book.instruments
    a = dask_engine.portfolio_margin(sb, pnl=pnl, collect=True)
    b = dask_engine.portfolio_margin(book, pnl=pnl, collect=True)
    assert a.frame["account"].tolist() == [str(x) for x in b.frame["account"]]  # accounts are text in the store
    np.testing.assert_allclose(a.frame["im"], b.frame["im"], rtol=RTOL)
    with pytest.raises(DataError, match="has no book 'other'"):
        open_store_book(store, "other")
