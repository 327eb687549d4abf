"""Offset groups: instruments whose positions may offset each other in portfolio margin.

Hierarchical clustering (:func:`scipy.cluster.hierarchy.linkage`) on the
correlation distance ``d_ij = sqrt(2 (1 - rho_ij))`` (a metric: the Euclidean
distance between standardised return series), cut at the distance that
corresponds to ``min_correlation``::

    d* = sqrt(2 (1 - min_correlation))

With ``method="complete"`` (the default) the distance between two clusters is
the largest pairwise distance, so after the cut **every pair inside a group has
correlation >= min_correlation** - a guarantee a risk committee can state. The
default ``min_correlation = 0.7`` (``d* = 0.775``) keeps offsets to instruments
whose daily returns share at least half their variance (``rho^2 >= 0.49``).
``method="average"`` or ``"single"`` give looser, chain-like groups and lose the
guarantee; they are offered for exploration.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from margincal.dependence.correlation import CorrelationEstimate
from margincal.errors import DataError


def correlation_distance(corr: pd.DataFrame | np.ndarray) -> np.ndarray:
    """``sqrt(2 (1 - rho))`` with a zero diagonal."""
    c = np.asarray(corr, dtype=float)
    d = np.sqrt(np.clip(2.0 * (1.0 - c), 0.0, None))
    np.fill_diagonal(d, 0.0)
    return (d + d.T) / 2


def offset_groups(corr: pd.DataFrame | CorrelationEstimate, min_correlation: float = 0.7, *,
                  method: str = "complete") -> pd.Series:
    """Group instruments by correlation; returns a Series ``instrument -> group`` (1, 2, ...).

    Groups are numbered by size (largest first), then by first instrument name.
    """
    c = corr.matrix if isinstance(corr, CorrelationEstimate) else corr
    if not isinstance(c, pd.DataFrame) or c.shape[0] != c.shape[1]:
        raise DataError("corr must be a square DataFrame labelled by instrument")
    if not -1.0 <= min_correlation <= 1.0:
        raise DataError(f"min_correlation is {min_correlation}; it must be in [-1, 1]")
    if method not in ("complete", "average", "single"):
        raise DataError(f"method is {method!r}; use 'complete', 'average' or 'single'")
    if c.isna().to_numpy().any():
        raise DataError("corr has NaN entries")
    names = list(c.columns)
    if len(names) == 1:
        return pd.Series([1], index=names, name="group")
    dist = correlation_distance(c.to_numpy())
    z = hierarchy.linkage(squareform(dist, checks=False), method=method)
    cut = float(np.sqrt(2.0 * (1.0 - min_correlation)))
    raw = hierarchy.fcluster(z, t=cut + 1e-12, criterion="distance")
    groups: dict[int, list[str]] = {}
    for name, g in zip(names, raw, strict=True):
        groups.setdefault(int(g), []).append(str(name))
    ordered = sorted(groups.values(), key=lambda m: (-len(m), sorted(m)[0]))
    out = {name: i + 1 for i, members in enumerate(ordered) for name in members}
    return pd.Series([out[str(n)] for n in names], index=names, name="group")
