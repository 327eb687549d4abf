"""Nearest correlation matrix (Higham 2002) against published examples and its defining properties."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margincal.dependence.nearest import is_correlation_matrix, nearest_correlation, repair_correlation
from margincal.errors import DataError


@pytest.fixture
def published(reference_dir):  # type: ignore[no-untyped-def]
    return json.loads((reference_dir / "nearest_correlation.json").read_text())


@pytest.mark.parametrize("case", ["nag_g02aac", "higham_3x3"])
def test_published_examples(published, case: str) -> None:  # type: ignore[no-untyped-def]
    ex = published[case]
    x = nearest_correlation(np.array(ex["input"]))
    assert np.round(x, ex["decimals"]) == pytest.approx(np.array(ex["nearest"]), abs=0.6 * 10 ** -ex["decimals"])
    assert is_correlation_matrix(x)


def _random_symmetric(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.uniform(-1, 1, (d, d))
    a = (a + a.T) / 2
    np.fill_diagonal(a, 1.0)
    return a


def _candidates(a: np.ndarray, rng: np.random.Generator, k: int = 200) -> list[np.ndarray]:
    """Other correlation matrices to compare distances with: clipped-eigenvalue rescaling and random ones."""
    w, v = np.linalg.eigh(a)
    clip = (v * np.maximum(w, 0)) @ v.T
    d = np.sqrt(np.diag(clip))
    out = [clip / np.outer(d, d), np.eye(a.shape[0])]
    for _ in range(k):
        g = rng.standard_normal((a.shape[0], a.shape[0] + 2))
        c = g @ g.T
        s = np.sqrt(np.diag(c))
        out.append(c / np.outer(s, s))
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 8), st.integers(0, 2**32 - 1))
def test_result_is_correlation_and_closest(d: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = _random_symmetric(rng, d)
    x = nearest_correlation(a)
    assert is_correlation_matrix(x, tol=1e-9)
    assert np.allclose(np.diag(x), 1.0) and np.allclose(x, x.T)
    dist = np.linalg.norm(a - x)
    for c in _candidates(a, rng, 50):
        assert dist <= np.linalg.norm(a - c) + 1e-7
    # optimality (convex projection): <A - X, C - X> <= 0 for every correlation matrix C
    for c in _candidates(a, rng, 20):
        assert np.sum((a - x) * (c - x)) <= 1e-6


def test_local_perturbations_do_not_get_closer() -> None:
    rng = np.random.default_rng(0)
    a = _random_symmetric(rng, 6)
    x = nearest_correlation(a)
    base = np.linalg.norm(a - x)
    for _ in range(300):
        e = rng.standard_normal((6, 6)) * 1e-3
        e = (e + e.T) / 2
        np.fill_diagonal(e, 0)
        y = x + e
        if np.linalg.eigvalsh(y).min() >= 0:  # a feasible neighbour
            assert np.linalg.norm(a - y) >= base - 1e-12


def test_valid_matrix_unchanged_and_labels_kept() -> None:
    c = pd.DataFrame([[1.0, 0.3], [0.3, 1.0]], index=["A", "B"], columns=["A", "B"])
    assert np.allclose(nearest_correlation(c), c, atol=1e-12)
    assert repair_correlation(c) is c
    bad = pd.DataFrame([[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1]], index=list("XYZ"), columns=list("XYZ"))
    fixed = repair_correlation(bad)
    assert isinstance(fixed, pd.DataFrame) and list(fixed.index) == list("XYZ")
    assert is_correlation_matrix(fixed)


def test_eig_floor_gives_positive_definite() -> None:
    a = np.array([[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1.0]])
    x = nearest_correlation(a, eig_floor=1e-4)
    assert np.linalg.eigvalsh(x).min() > 5e-5
    np.linalg.cholesky(x)


def test_errors() -> None:
    with pytest.raises(DataError, match="square"):
        nearest_correlation(np.ones((2, 3)))
    with pytest.raises(DataError, match="NaN"):
        nearest_correlation(np.array([[1.0, np.nan], [np.nan, 1.0]]))
