"""margincal: calibrate initial and maintenance margin for crypto derivatives."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from margincal.errors import (
    CalibrationError,
    ConfigError,
    DataError,
    MargincalError,
    MargincalWarning,
)

try:
    __version__ = version("margincal")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "CalibrationError",
    "ConfigError",
    "DataError",
    "MargincalError",
    "MargincalWarning",
    "__version__",
]
