"""Correlation estimators: EWMA (vectorised == loop), Ledoit-Wolf (hand formula), stressed windows, blends."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from margincal.dependence.correlation import (
    STRESS_WINDOWS,
    blend_correlation,
    cov_to_corr,
    ewma_correlation,
    ewma_correlation_path,
    ewma_covariance,
    ewma_covariance_path,
    ewma_covariance_reference,
    ledoit_wolf_correlation,
    stressed_correlation,
    worst_days,
)
from margincal.dependence.nearest import is_correlation_matrix
from margincal.errors import CalibrationError, DataError
from margincal.risk.compare import load_daily_panel
from margincal.vol.ewma import ewma_variance


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return load_daily_panel(["btc", "eth", "sol", "xrp", "doge"])


@pytest.fixture(scope="module")
def aligned(panel: pd.DataFrame) -> pd.DataFrame:
    return panel.dropna().iloc[-800:]


def test_ewma_path_equals_loop_and_univariate_ewma(aligned: pd.DataFrame) -> None:
    fast = ewma_covariance_path(aligned, 0.94, 30)
    slow = ewma_covariance_reference(aligned, 0.94, 30)
    assert fast.shape == (len(aligned) + 1, 5, 5)
    assert np.allclose(fast, slow, rtol=1e-10, atol=1e-16)
    # the diagonal is the univariate RiskMetrics variance of each column
    for j, col in enumerate(aligned.columns):
        assert np.allclose(fast[:, j, j], ewma_variance(aligned[col].to_numpy(), 0.94, 30), rtol=1e-10)
    # the one-shot forecast is the last element of the path
    assert np.allclose(ewma_covariance(aligned, 0.94, 30), fast[-1], rtol=1e-10)


def test_ewma_correlation_estimate(aligned: pd.DataFrame) -> None:
    est = ewma_correlation(aligned, lam=0.97)
    assert list(est.matrix.columns) == list(aligned.columns)
    assert is_correlation_matrix(est.matrix.to_numpy())
    assert est.params == {"lam": 0.97, "seed": 30} and est.n_obs == 800
    assert est.window_end == str(aligned.index[-1])
    path = ewma_correlation_path(aligned, lam=0.97)
    assert np.allclose(path[-1], est.matrix.to_numpy())


def test_ewma_two_asset_by_hand() -> None:
    # x = [(1, 2), (3, -1)], seed 1, lam 0.5: C0 = [[1, 2], [2, 4]]
    # C1 = 0.5 C0 + 0.5 [[1, 2], [2, 4]] = C0 ; C2 = 0.5 C1 + 0.5 [[9, -3], [-3, 1]] = [[5, -0.5], [-0.5, 2.5]]
    x = pd.DataFrame([[1.0, 2.0], [3.0, -1.0]], columns=["a", "b"])
    path = ewma_covariance_path(x, 0.5, 1)
    assert np.allclose(path[2], [[5.0, -0.5], [-0.5, 2.5]])
    assert np.allclose(cov_to_corr(path[2])[0, 1], -0.5 / np.sqrt(12.5))


def test_ledoit_wolf_matches_hand_formula(aligned: pd.DataFrame) -> None:
    # Ledoit & Wolf (2004), target mu I on the standardised data (sklearn's convention: divide by p, centre)
    est = ledoit_wolf_correlation(aligned)
    x = aligned.to_numpy()
    x = x / x.std(axis=0, ddof=1)
    x = x - x.mean(axis=0)
    n, p = x.shape
    s = x.T @ x / n
    mu = np.trace(s) / p
    d2 = np.linalg.norm(s - mu * np.eye(p)) ** 2 / p
    b2 = sum(np.linalg.norm(np.outer(r, r) - s) ** 2 for r in x) / n**2 / p
    delta = min(b2, d2) / d2
    assert est.shrinkage == pytest.approx(delta, rel=1e-8)
    shrunk = delta * mu * np.eye(p) + (1 - delta) * s
    assert np.allclose(est.matrix.to_numpy(), cov_to_corr(shrunk), atol=1e-10)
    # shrinkage pulls every correlation toward 0
    sample = np.corrcoef(aligned.to_numpy().T)
    off = ~np.eye(p, dtype=bool)
    assert (np.abs(est.matrix.to_numpy()[off]) <= np.abs(sample[off]) + 1e-12).all()


def test_stressed_correlation_uses_only_window_rows(panel: pd.DataFrame) -> None:
    est = stressed_correlation(panel[["BTC", "ETH"]])
    rows = pd.concat([panel.loc[a:b, ["BTC", "ETH"]] for a, b in STRESS_WINDOWS.values()])
    assert est.n_obs == len(rows) == 12 + 16 + 16
    assert est.matrix.loc["BTC", "ETH"] == pytest.approx(rows.corr().loc["BTC", "ETH"], rel=1e-12)
    assert not est.repaired


def test_stressed_correlation_pairwise_and_repair(panel: pd.DataFrame) -> None:
    # SOL starts trading 2020-08-11: it has no rows in the COVID window, so the matrix is pairwise
    est = stressed_correlation(panel)
    assert is_correlation_matrix(est.matrix.to_numpy(), tol=1e-9)
    sol_rows = pd.concat([panel.loc[a:b, ["BTC", "SOL"]] for a, b in STRESS_WINDOWS.values()]).dropna()
    assert len(sol_rows) == 32
    if not est.repaired:
        assert est.matrix.loc["BTC", "SOL"] == pytest.approx(sol_rows.corr().iloc[0, 1], rel=1e-12)
    with pytest.raises(CalibrationError, match="rows"):
        stressed_correlation(panel, {"tiny": ("2021-01-01", "2021-01-03")})


def test_worst_days_stress(aligned: pd.DataFrame) -> None:
    index = aligned.mean(axis=1)
    days = worst_days(index, 25)
    assert len(days) == 25 and days.is_monotonic_increasing
    assert index.loc[days].max() <= index.drop(days).min()
    est = stressed_correlation(aligned, dates=days)
    assert est.n_obs == 25
    assert np.allclose(est.matrix.to_numpy(), aligned.loc[days].corr().to_numpy(), atol=1e-12)


def test_blend(aligned: pd.DataFrame) -> None:
    base = ewma_correlation(aligned)
    stress = stressed_correlation(aligned, dates=worst_days(aligned.mean(axis=1), 30))
    b = blend_correlation(base, stress, 0.25)
    expected = 0.75 * base.matrix + 0.25 * stress.matrix
    assert np.allclose(b.matrix.to_numpy(), expected.to_numpy())
    assert is_correlation_matrix(b.matrix.to_numpy())
    assert np.allclose(blend_correlation(base, stress, 0.0).matrix, base.matrix)
    with pytest.raises(DataError, match="stressed_weight"):
        blend_correlation(base, stress, 1.5)


def test_input_errors(panel: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="NaN in columns"):
        ewma_correlation(panel)
    with pytest.raises(DataError, match="at least 2"):
        ewma_correlation(panel[["BTC"]].dropna())
    with pytest.raises(DataError, match="DataFrame"):
        ledoit_wolf_correlation(np.zeros((10, 2)))
