"""Error and warning hierarchy.

Every error margincal raises on purpose derives from :class:`MargincalError`, so a
caller can catch them all at once; every warning derives from
:class:`MargincalWarning`, so ``warnings.filterwarnings("ignore", category=MargincalWarning)``
silences margincal and nothing else.

Messages say where (file, line, field) and which rule was broken, e.g.
``DataError("btc.csv line 1042: close is -3.2; prices must be > 0")``.
"""

from __future__ import annotations


class MargincalError(Exception):
    """Root of every error margincal raises on purpose."""


class DataError(MargincalError):
    """Input data breaks a rule (missing column, bad value, bad spacing...)."""


class ConfigError(MargincalError):
    """A setting, policy file or argument is invalid."""


class CalibrationError(MargincalError):
    """A model could not be fitted or a margin could not be calibrated."""


class NotFittedError(CalibrationError):
    """An estimator was used before ``fit`` (same class for every model of the package)."""


class StoreError(MargincalError):
    """The store is missing, locked, or its schema is newer than this code."""


class AuthError(MargincalError):
    """Authentication or authorisation failed (service, approval workflow)."""


class MargincalWarning(UserWarning):
    """Root of every warning margincal emits (repairs, fallbacks, thin data)."""


__all__ = [
    "AuthError",
    "CalibrationError",
    "ConfigError",
    "DataError",
    "MargincalError",
    "MargincalWarning",
    "NotFittedError",
    "StoreError",
]
