"""Error and warning hierarchy.

Every error margincal raises on purpose derives from :class:`MargincalError`, so a
caller can catch them all at once; every warning derives from
:class:`MargincalWarning`, so ``warnings.filterwarnings("ignore", category=MargincalWarning)``
silences margincal and nothing else.

Messages say where (file, line, field) and which rule was broken, e.g.
``DataError("btc.csv line 1042: close is -3.2; prices must be > 0")``.

The same mistake raises the same class everywhere: an estimator used before ``fit``
raises :class:`NotFittedError` (:func:`check_fitted`); a bad parameter raises
:class:`ConfigError` (:func:`check_choice`, :func:`check_level`, :func:`check_number`,
:func:`check_int`). Every estimator of the package (tail models, volatility models,
surfaces, portfolio margin) uses these helpers; ``tests/test_estimator_checks.py`` runs them
all through the same checks.
"""

from __future__ import annotations

import math
import numbers


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


# ------------------------------------------------------------------ shared checks


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    """A parameter that must be one of ``allowed`` (:class:`ConfigError` otherwise)."""
    if value not in allowed:
        raise ConfigError(f"{name} is {value!r}; use one of {', '.join(map(repr, allowed))}")


def _is_real(value: object) -> bool:
    # numbers.Real covers int, float and numpy's scalars (registered with the ABCs); a bool is not a number here.
    # A plain int or float is answered first: the ABC check costs several times as much, on every parameter check.
    return type(value) in (int, float) or (isinstance(value, numbers.Real) and not isinstance(value, bool))


def check_level(level: object, name: str = "level") -> float:
    """A confidence level in (0, 1) (:class:`ConfigError` otherwise)."""
    if not _is_real(level):
        raise ConfigError(f"{name} is {level!r}; it must be a number in (0, 1), e.g. 0.99")
    lv = float(level)  # type: ignore[arg-type]
    if not 0.0 < lv < 1.0:
        raise ConfigError(f"{name} is {lv}; it must be in (0, 1), e.g. 0.99")
    return lv


def check_int(name: str, value: object, minimum: int, *, allow_none: bool = False) -> int | None:
    """A whole-number parameter ``>= minimum`` (None allowed when ``allow_none``)."""
    if value is None and allow_none:
        return None
    ok = _is_real(value) and math.isfinite(float(value)) and int(value) == value  # type: ignore[arg-type, call-overload]
    if not ok or int(value) < minimum:  # type: ignore[call-overload]
        raise ConfigError(f"{name} is {value!r}; it must be a whole number >= {minimum}"
                          + (" or None" if allow_none else ""))
    return int(value)  # type: ignore[call-overload]


def check_number(name: str, value: object, *, low: float, high: float = math.inf, low_open: bool = True,
                 high_open: bool = True) -> float:
    """A real parameter inside ``(low, high)`` (ends open or closed as given; :class:`ConfigError` otherwise)."""
    if not _is_real(value):
        raise ConfigError(f"{name} is {value!r}; it must be a number")
    v = float(value)  # type: ignore[arg-type]
    ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high) and not math.isnan(v)
    if not ok:
        lb, hb = "(" if low_open else "[", ")" if high_open else "]"
        raise ConfigError(f"{name} is {v}; it must be in {lb}{low:g}, {high:g}{hb}")
    return v


def check_fitted(estimator: object, attribute: str = "n_obs_", how: str = "fit(...)") -> None:
    """:class:`NotFittedError` (the same class for every estimator) when ``estimator`` lacks ``attribute``,
    which its ``fit`` sets; ``how`` names the call to make, e.g. ``"fit(returns)"``."""
    if not hasattr(estimator, attribute):
        raise NotFittedError(f"{type(estimator).__name__} is not fitted; call {how} first")


__all__ = [
    "AuthError",
    "CalibrationError",
    "ConfigError",
    "DataError",
    "MargincalError",
    "MargincalWarning",
    "NotFittedError",
    "StoreError",
    "check_choice",
    "check_fitted",
    "check_int",
    "check_level",
    "check_number",
]
