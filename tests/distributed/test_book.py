"""The synthetic-book generator and the partitioned Parquet reader.

Distribution checks use scipy's goodness-of-fit tests against the documented
laws (1 + Poisson(1.5) positions, the instrument probabilities, the
lognormal/Pareto notional mixture, the long share). The seed is fixed, so each
test is deterministic; a p-value below 1e-3 would mean the generator does not
draw from the law its docstring states.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy import sparse, stats

from margincal.data.book import (
    GEN_BLOCK,
    META_FILE,
    generate_block,
    generate_book,
    make_generator,
    open_book,
    partition_frame,
    table_block,
    underlying_of,
)
from margincal.errors import ConfigError, DataError

N = 20_000  # two generation blocks


@pytest.fixture(scope="module")
def gen():
    g, _ = make_generator(seed=7)
    return g


@pytest.fixture(scope="module")
def rows(gen) -> pd.DataFrame:
    return pd.concat([generate_block(gen, b, N) for b in range(N // GEN_BLOCK)], ignore_index=True)


def _slot(frame: pd.DataFrame) -> np.ndarray:
    return frame.groupby("account").cumcount().to_numpy()


def test_positions_per_account_follow_one_plus_poisson(rows, gen):
    k = rows.groupby("account").size().to_numpy()
    assert k.min() >= 1
    lam = gen.positions_lambda
    # bins 1, 2, ..., 6, >=7 against P(K = k) = P(Poisson(lam) = k - 1)
    obs = np.array([(k == j).sum() for j in range(1, 7)] + [(k >= 7).sum()])
    p = np.array([stats.poisson.pmf(j - 1, lam) for j in range(1, 7)] + [stats.poisson.sf(5, lam)])
    assert stats.chisquare(obs, p * k.size).pvalue > 1e-3
    # worked: E[K] = 1 + 1.5 = 2.5
    assert abs(k.mean() - 2.5) < 4 * math.sqrt(lam / k.size)


def test_instruments_are_distinct_within_an_account(rows):
    assert not rows.duplicated(["account", "instrument"]).any()


def test_first_position_instrument_follows_the_documented_probabilities(rows, gen):
    # the first position of an account is never redrawn nor touched by the hedge rule
    first = rows[_slot(rows) == 0]["instrument"].to_numpy()
    p = gen.probabilities()
    # P(i) = share(u) * rank^-s / sum over the underlying's ranks; worked for BTC-PERP (rank 1 of 33, s = 2):
    h = sum(r ** -2.0 for r in range(1, 34))
    btc_share = gen.underlying_share[0]
    assert gen.instruments[0] == "BTC-PERP"
    assert p[0] == pytest.approx(btc_share / h, rel=1e-12)
    assert p.sum() == pytest.approx(1.0, rel=1e-12)
    # chi-square on instruments with expected count >= 5, the rest pooled
    obs = np.bincount(first, minlength=p.size)
    exp = p * first.size
    big = exp >= 5
    o = np.r_[obs[big], obs[~big].sum()]
    e = np.r_[exp[big], exp[~big].sum()]
    assert stats.chisquare(o, e).pvalue > 1e-3


def test_notional_is_the_lognormal_pareto_mixture(rows, gen):
    first = rows[_slot(rows) == 0]
    spot = np.array([gen.spot[underlying_of(n)] for n in gen.instruments])
    notional = np.abs(first["quantity"].to_numpy()) * spot[first["instrument"].to_numpy()]
    ln = stats.lognorm(s=gen.notional_sigma, scale=gen.notional_median)
    par = stats.pareto(b=gen.tail_alpha, scale=gen.tail_scale)  # classical Pareto, x >= 50,000

    def cdf(x):
        return (1 - gen.tail_prob) * ln.cdf(x) + gen.tail_prob * par.cdf(x)

    assert stats.kstest(notional, cdf).pvalue > 1e-3
    # median of the mixture is close to the lognormal median 5,000 (the 3% tail lies above it)
    assert 4_500 < np.median(notional) < 6_000


def test_every_position_respects_the_notional_cap():
    # a cap that binds often: no position, hedges and reshuffled rows included, may exceed it in USD
    g, _ = make_generator(seed=3, notional_cap=60_000.0)
    f = generate_block(g, 0, GEN_BLOCK)
    spot = np.array([g.spot[underlying_of(n)] for n in g.instruments])
    usd = np.abs(f["quantity"].to_numpy()) * spot[f["instrument"].to_numpy()]
    assert usd.max() <= 60_000.0 * (1 + 1e-12)
    assert (usd > 59_999.0).sum() > 100  # the 3% Pareto tail (minimum 50,000) hits the cap


def test_long_share_of_delta_one_positions(rows, gen):
    first = rows[_slot(rows) == 0]
    d1 = ~np.array([len(n.split("-")) == 4 for n in gen.instruments])
    q = first["quantity"].to_numpy()[d1[first["instrument"].to_numpy()]]
    assert stats.binomtest(int((q > 0).sum()), q.size, gen.long_prob).pvalue > 1e-3


def test_hedged_accounts_share_and_shape(gen):
    # same seed with hedged_share=0 draws the same random numbers: only the hedged accounts differ
    g0, _ = make_generator(seed=7, hedged_share=0.0)
    a = generate_block(gen, 0, N)
    b = generate_block(g0, 0, N)
    assert len(a) == len(b)
    diff_acc = np.unique(a["account"].to_numpy()[(a["instrument"].to_numpy() != b["instrument"].to_numpy())
                                                 | (a["quantity"].to_numpy() != b["quantity"].to_numpy())])
    k = b.groupby("account").size()
    first = b[_slot(b) == 0].set_index("account")["instrument"]
    d1 = ~np.array([len(n.split("-")) == 4 for n in gen.instruments])
    und = np.array([underlying_of(n) for n in gen.instruments])
    # a delta-one first position is hedgeable when its underlying has another delta-one contract
    # (BTC, ETH, SOL have futures; XRP and DOGE only a perpetual)
    hedgeable = d1 & np.array([(d1 & (und == u)).sum() > 1 for u in und])
    eligible = int(((k >= 2) & hedgeable[first.reindex(k.index).to_numpy()]).sum())
    # an eligible account is hedged with probability 0.10
    assert stats.binomtest(diff_acc.size, eligible, gen.hedged_share).pvalue > 1e-3
    for acc in diff_acc[:50]:
        rows_a = a[a["account"] == acc]
        q0, q1 = rows_a["quantity"].iloc[0], rows_a["quantity"].iloc[1]
        i0, i1 = rows_a["instrument"].iloc[0], rows_a["instrument"].iloc[1]
        assert d1[i1] and i1 != i0
        assert underlying_of(gen.instruments[i0]) == underlying_of(gen.instruments[i1])
        assert -1.0 <= q1 / q0 <= -0.9
        assert not rows_a["instrument"].duplicated().any()


def test_book_does_not_depend_on_partitioning(tmp_path):
    a = generate_book(12_000, out_dir=tmp_path / "a", accounts_per_partition=5_000, seed=3)
    b = generate_book(12_000, out_dir=tmp_path / "b", accounts_per_partition=3_500, seed=3)
    assert (a.n_partitions, b.n_partitions) == (3, 4)
    assert a.n_accounts == b.n_accounts == 12_000
    fa, fb = a.to_frame(), b.to_frame()
    pd.testing.assert_frame_equal(fa, fb)
    assert fa["account"].is_monotonic_increasing
    c = generate_book(12_000, out_dir=tmp_path / "c", accounts_per_partition=5_000, seed=4)
    assert not c.to_frame()["quantity"].equals(fa["quantity"])


def test_block_seeds_are_seedsequence_spawn_children(gen):
    # block b draws from SeedSequence(seed).spawn(n)[b]: the first draw of block 1 is the Poisson count
    child = np.random.SeedSequence(gen.seed).spawn(5)[1]
    k = np.minimum(1 + np.random.default_rng(child).poisson(gen.positions_lambda, GEN_BLOCK), gen.max_positions)
    blk = generate_block(gen, 1, 2 * GEN_BLOCK)
    np.testing.assert_array_equal(blk.groupby("account").size().to_numpy(), k)
    assert blk["account"].min() == GEN_BLOCK


def test_metadata_and_partition_files(tmp_path):
    bk = generate_book(2_500, out_dir=tmp_path / "bk", accounts_per_partition=1_000, seed=1)
    meta = json.loads((tmp_path / "bk" / META_FILE).read_text())
    assert meta["n_accounts"] == 2_500 and len(meta["partitions"]) == 3
    assert meta["reference_market"]["asof"].startswith("2026-03-31")
    assert [p.n_accounts for p in bk.partitions] == [1000, 1000, 500]
    t = pq.read_table(tmp_path / "bk" / "part-00002.parquet")
    assert t.column_names == ["account", "instrument", "quantity"]
    assert t.column("account").to_numpy().min() == 2000
    with pytest.raises(DataError, match="already holds a book"):
        generate_book(10, out_dir=tmp_path / "bk")


def test_table_block_against_a_dense_loop(tmp_path):
    df = pd.DataFrame({"account": ["b", "a", "b", "c", "a", "b"],
                       "instrument": ["X-PERP", "Y-PERP", "X-PERP", "Z-PERP", "Z-PERP", "Y-PERP"],
                       "quantity": [1.0, -2.0, 0.5, 3.0, 4.0, -1.5]})
    import pyarrow as pa

    names = ("Z-PERP", "Y-PERP", "X-PERP", "W-PERP")
    ids, P = table_block(pa.Table.from_pandas(df), names)
    assert list(ids) == ["b", "a", "c"]  # order of first appearance
    dense = np.zeros((3, 4))
    for acc, inst, q in df.itertuples(index=False):
        dense[list(ids).index(acc), names.index(inst)] += q
    assert sparse.isspmatrix_csr(P) or sparse.issparse(P)
    np.testing.assert_array_equal(P.toarray(), dense)
    with pytest.raises(DataError, match="V-PERP"):
        table_block(pa.Table.from_pandas(df.assign(instrument="V-PERP")), names)
    with pytest.raises(DataError, match="finite"):
        table_block(pa.Table.from_pandas(df.assign(quantity=[1.0, np.nan, 1, 1, 1, 1])), names)


def test_partition_frame_and_discovery_without_metadata(tmp_path):
    df = pd.DataFrame({"account": [f"acc{i % 7}" for i in range(30)],
                       "instrument": [["BTC-PERP", "ETH-PERP", "SOL-PERP"][i % 3] for i in range(30)],
                       "quantity": np.arange(30, dtype=float) - 10})
    bk = partition_frame(df, tmp_path / "p", accounts_per_partition=3)
    assert bk.n_partitions == 3 and bk.n_accounts == 7
    (tmp_path / "p" / META_FILE).unlink()
    disc = open_book(tmp_path / "p")
    assert disc.instruments == ("BTC-PERP", "ETH-PERP", "SOL-PERP")
    total = np.zeros(3)
    for k in range(disc.n_partitions):
        _, P = disc.block(k)
        total += np.asarray(P.sum(axis=0)).ravel()
    expect = df.groupby("instrument")["quantity"].sum().reindex(disc.instruments).to_numpy()
    np.testing.assert_allclose(total, expect)


def test_discovery_rejects_overlapping_integer_accounts(tmp_path):
    import pyarrow as pa

    (tmp_path / "o").mkdir()
    for k, accs in enumerate(([1, 2, 3], [3, 4])):
        pq.write_table(pa.table({"account": accs, "instrument": ["BTC-PERP"] * len(accs),
                                 "quantity": [1.0] * len(accs)}), tmp_path / "o" / f"part-{k}.parquet")
    with pytest.raises(DataError, match="overlap"):
        open_book(tmp_path / "o")


def test_errors_name_the_input(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_book(tmp_path / "nope")
    with pytest.raises(ConfigError, match="n_accounts"):
        generate_book(0, out_dir=tmp_path / "z")
    with pytest.raises(ConfigError, match="probability"):
        make_generator(seed=1, long_prob=1.5)
