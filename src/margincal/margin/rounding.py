"""Rounding margin rates UP to a published increment, without float noise.

A margin rate is published on a grid (e.g. 0.05% = 0.0005). Rounding must go
UP (a rate below the model's figure is under-margin), but a naive
``ceil(x / inc) * inc`` turns a value that is on the grid up to float noise
(``0.01`` computed as ``0.010000000000000002``, or ``0.0100000001`` after a
chain of products) into the next step (``0.0105``). :func:`ceil_to_increment`
subtracts an absolute tolerance (default ``1e-9``, i.e. 0.0000001 basis point
of notional: far below anything economic) before taking the ceiling, then
removes the representation noise of ``k * inc`` by rounding to 12 decimals.

:func:`ceil_to_increment_reference` is the obviously-correct scalar version
using :class:`decimal.Decimal`; tests check they agree.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal

import numpy as np
from numpy.typing import ArrayLike

from margincal.errors import ConfigError

RATE_TOLERANCE = 1e-9


def ceil_to_increment(x: ArrayLike, increment: float, tol: float = RATE_TOLERANCE) -> np.ndarray | float:
    """Round ``x`` (scalar or array) UP to a multiple of ``increment``.

    Values within ``tol`` above a grid point round to that grid point (float
    noise), everything else rounds up. ``increment == 0`` returns ``x``
    unchanged (no rounding). Scalars in, float out; arrays in, arrays out.
    """
    if increment < 0 or not math.isfinite(increment):
        raise ConfigError(f"rounding increment is {increment}; it must be a finite number >= 0")
    arr = np.asarray(x, dtype=float)
    if increment == 0:
        out = arr.copy()
    else:
        k = np.ceil((arr - tol) / increment)
        out = np.round(k * increment, 12) + 0.0  # + 0.0 turns -0.0 into 0.0
    return float(out) if np.ndim(out) == 0 else out


def ceil_to_increment_reference(x: float, increment: float, tol: float = RATE_TOLERANCE) -> float:
    """Scalar Decimal version of :func:`ceil_to_increment` (for tests)."""
    if increment == 0:
        return float(x)
    dx = Decimal(repr(float(x))) - Decimal(repr(tol))
    inc = Decimal(repr(float(increment)))
    k = (dx / inc).to_integral_value(rounding=ROUND_CEILING)
    return float(k * inc)
