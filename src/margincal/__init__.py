"""margincal: calibrate initial and maintenance margin for crypto derivatives."""

from __future__ import annotations

from typing import Any

from margincal.errors import (
    CalibrationError,
    ConfigError,
    DataError,
    MargincalError,
    MargincalWarning,
)


def __getattr__(name: str) -> Any:
    # ``__version__`` is read from the installed metadata on first use: importlib.metadata costs about 0.1-0.3 s,
    # which `margincal --help` should not pay
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("margincal")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
            v = "0.0.0"
        globals()["__version__"] = v
        return v
    raise AttributeError(f"module 'margincal' has no attribute {name!r}")

__all__ = [
    "CalibrationError",
    "ConfigError",
    "DataError",
    "MargincalError",
    "MargincalWarning",
    "__version__",
]
