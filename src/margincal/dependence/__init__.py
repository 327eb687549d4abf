"""margincal.dependence: EWMA / shrunk / stressed correlation, nearest correlation, offset groups."""

from margincal.dependence.correlation import (
    STRESS_WINDOWS,
    CorrelationEstimate,
    blend_correlation,
    cov_to_corr,
    ewma_correlation,
    ewma_correlation_path,
    ewma_covariance,
    ewma_covariance_path,
    ledoit_wolf_correlation,
    stressed_correlation,
    worst_days,
)
from margincal.dependence.groups import correlation_distance, offset_groups
from margincal.dependence.nearest import is_correlation_matrix, nearest_correlation, repair_correlation

__all__ = [
    "STRESS_WINDOWS",
    "CorrelationEstimate",
    "blend_correlation",
    "correlation_distance",
    "cov_to_corr",
    "ewma_correlation",
    "ewma_correlation_path",
    "ewma_covariance",
    "ewma_covariance_path",
    "is_correlation_matrix",
    "ledoit_wolf_correlation",
    "nearest_correlation",
    "offset_groups",
    "repair_correlation",
    "stressed_correlation",
    "worst_days",
]
