"""Offset groups by hierarchical clustering on the correlation distance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margincal.dependence.correlation import ewma_correlation
from margincal.dependence.groups import correlation_distance, offset_groups
from margincal.errors import DataError
from margincal.risk.compare import load_daily_panel


def _block(names: list[str], blocks: list[list[str]], within: float, across: float) -> pd.DataFrame:
    m = np.full((len(names), len(names)), across)
    pos = {n: i for i, n in enumerate(names)}
    for b in blocks:
        ix = [pos[n] for n in b]
        m[np.ix_(ix, ix)] = within
    np.fill_diagonal(m, 1.0)
    return pd.DataFrame(m, index=names, columns=names)


def test_block_structure_is_recovered() -> None:
    names = ["A", "B", "C", "D", "E", "F"]
    c = _block(names, [["A", "B", "C"], ["D", "E"], ["F"]], 0.85, 0.2)
    g = offset_groups(c, 0.7)
    assert g.to_dict() == {"A": 1, "B": 1, "C": 1, "D": 2, "E": 2, "F": 3}
    # at min_correlation 0.9 nobody is close enough: all singletons
    assert offset_groups(c, 0.9).nunique() == 6
    # at 0.1 everything is one group
    assert offset_groups(c, 0.1).nunique() == 1


def test_distance_by_hand() -> None:
    # rho = 0.5 -> sqrt(2 * 0.5) = 1 ; rho = -1 -> 2 ; rho = 1 -> 0
    d = correlation_distance(np.array([[1.0, 0.5, -1.0], [0.5, 1.0, 1.0], [-1.0, 1.0, 1.0]]))
    assert d[0, 1] == pytest.approx(1.0) and d[0, 2] == pytest.approx(2.0) and d[1, 2] == 0.0


@settings(max_examples=50, deadline=None)
@given(st.integers(3, 9), st.floats(0.2, 0.9), st.integers(0, 2**32 - 1))
def test_complete_linkage_guarantee(d: int, rho_min: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((d, 2))
    c = f @ f.T + 0.3 * np.eye(d)
    s = np.sqrt(np.diag(c))
    names = [f"X{i}" for i in range(d)]
    corr = pd.DataFrame(c / np.outer(s, s), index=names, columns=names)
    g = offset_groups(corr, rho_min)
    for grp in g.unique():
        members = g.index[g == grp]
        sub = corr.loc[members, members].to_numpy()
        assert sub.min() >= rho_min - 1e-9  # every pair inside a group meets the threshold
    # groups are numbered by size, largest first
    sizes = g.value_counts().sort_index().to_numpy()
    assert (np.diff(sizes) <= 0).all()


def test_real_coins() -> None:
    panel = load_daily_panel(["btc", "eth", "sol", "xrp", "doge", "trx"]).dropna().iloc[-730:]
    corr = ewma_correlation(panel, lam=0.99)
    g = offset_groups(corr, 0.7)
    assert g["BTC"] == g["ETH"]  # BTC-ETH correlation ~0.8 over the last two years
    members = g.index[g == g["BTC"]]
    assert corr.matrix.loc[members, members].to_numpy().min() >= 0.7


def test_errors() -> None:
    with pytest.raises(DataError, match="square DataFrame"):
        offset_groups(np.eye(2))  # type: ignore[arg-type]
    with pytest.raises(DataError, match="method"):
        offset_groups(pd.DataFrame(np.eye(2)), method="ward")
