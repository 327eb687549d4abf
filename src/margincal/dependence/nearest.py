"""Nearest correlation matrix (Higham 2002, alternating projections with Dykstra's correction).

Hand-written because no well-kept Python library offers it: numpy/scipy have
no nearest-correlation routine, statsmodels' ``corr_nearest`` is a clipped
eigenvalue heuristic without a convergence guarantee to the Frobenius-nearest
matrix, and scikit-learn has none. The algorithm is short and its answer is
checked against the published NAG example (g02aac) in the tests.

Reference: N. J. Higham, "Computing the nearest correlation matrix - a problem
from finance", IMA J. Numer. Anal. 22 (2002) 329-343, Algorithm 3.3 with
``W = I``::

    dS = 0; Y = A
    repeat
        R  = Y - dS
        X  = P_S(R)        # projection onto the PSD cone: clip negative eigenvalues
        dS = X - R         # Dykstra's correction
        Y  = P_U(X)        # projection onto unit-diagonal matrices
    until ||X - Y||_F <= tol ||Y||_F

The result minimises ``||A - X||_F`` over symmetric PSD matrices with unit diagonal.
On exit the PSD iterate is rescaled to an exact unit diagonal
(``D^-1/2 X D^-1/2``, which keeps it PSD); the change is below ``tol``.
``eig_floor > 0`` projects onto ``{eigenvalues >= eig_floor}`` instead, giving a
strictly positive definite answer (useful before a Cholesky factorisation).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from margincal.errors import CalibrationError, DataError


def _as_square(a: ArrayLike) -> tuple[np.ndarray, pd.Index | None]:
    labels = a.index if isinstance(a, pd.DataFrame) else None
    m = np.asarray(a, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise DataError(f"matrix has shape {m.shape}; a correlation matrix must be square")
    if not np.all(np.isfinite(m)):
        raise DataError("matrix has NaN or infinite entries; fill or drop them before repairing")
    return m, labels


def is_correlation_matrix(a: ArrayLike, tol: float = 1e-10) -> bool:
    """Symmetric, unit diagonal and positive semidefinite (smallest eigenvalue >= -tol)."""
    m, _ = _as_square(a)
    if not np.allclose(m, m.T, atol=tol) or not np.allclose(np.diag(m), 1.0, atol=tol):
        return False
    return bool(np.linalg.eigvalsh((m + m.T) / 2).min() >= -tol)


def _psd_projection(r: np.ndarray, floor: float) -> np.ndarray:
    w, v = np.linalg.eigh((r + r.T) / 2)
    return (v * np.maximum(w, floor)) @ v.T


def nearest_correlation(a: ArrayLike, *, tol: float = 1e-10, max_iter: int = 10_000,
                        eig_floor: float = 0.0) -> np.ndarray | pd.DataFrame:
    """Frobenius-nearest correlation matrix to the symmetric matrix ``a`` (see module doc).

    Returns a DataFrame with the same labels when ``a`` is one. Raises
    :class:`CalibrationError` if it does not converge in ``max_iter`` iterations.
    """
    m, labels = _as_square(a)
    if eig_floor < 0 or eig_floor >= 1:
        raise DataError(f"eig_floor is {eig_floor}; it must be in [0, 1)")
    m = (m + m.T) / 2
    y = m.copy()
    np.fill_diagonal(y, 1.0)
    ds = np.zeros_like(y)
    x = y
    for _ in range(max_iter):
        r = y - ds
        x = _psd_projection(r, eig_floor)
        ds = x - r
        y_new = x.copy()
        np.fill_diagonal(y_new, 1.0)
        done = np.linalg.norm(x - y_new) <= tol * np.linalg.norm(y_new) and \
            np.linalg.norm(y_new - y) <= tol * np.linalg.norm(y_new)
        y = y_new
        if done:
            break
    else:
        raise CalibrationError(f"nearest_correlation did not converge in {max_iter} iterations (tol={tol})")
    d = np.sqrt(np.clip(np.diag(x), 1e-300, None))
    out = x / np.outer(d, d)
    out = (out + out.T) / 2
    np.fill_diagonal(out, 1.0)
    if labels is not None:
        return pd.DataFrame(out, index=labels, columns=labels)
    return out


def repair_correlation(a: ArrayLike, *, tol: float = 1e-10, eig_floor: float = 0.0) -> np.ndarray | pd.DataFrame:
    """Return ``a`` unchanged if it is already a correlation matrix, else its nearest correlation matrix."""
    m, labels = _as_square(a)
    if is_correlation_matrix(m, tol=1e-12) and np.linalg.eigvalsh(m).min() >= eig_floor:
        return a if isinstance(a, pd.DataFrame) else m
    return nearest_correlation(a, tol=tol, eig_floor=eig_floor)
