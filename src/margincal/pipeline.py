"""Deprecated: the old home of the calibration job. Import from where the code now lives.

======================================  =============================================
old ``margincal.pipeline`` name         new home
======================================  =============================================
``log_returns``                         :func:`margincal.data.returns.log_returns`
``ceil_to``                             :func:`margincal.margin.rounding.ceil_to_increment`
``bar_lambda(lam_day, bar_hours)``      ``Decay(per_day=lam_day).for_bars(bar_hours)`` (:mod:`margincal.units`)
``InstrumentCalibration``,              :mod:`margincal.margin.published`
``calibrate_bars``, ``calibrate_store``,
``to_parameter_set``,
``calibrate_and_publish``
``margin_path``                         :func:`margincal.margin.published.published_history` (the causal
                                        history of the published rule, add-on and rounding included)
``backtest_published``                  :func:`margincal.backtest.published.backtest_published`
======================================  =============================================

Accessing a name here still works and emits a :class:`DeprecationWarning`.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED = {
    "log_returns": ("margincal.data.returns", "log_returns"),
    "InstrumentCalibration": ("margincal.margin.published", "InstrumentCalibration"),
    "calibrate_bars": ("margincal.margin.published", "calibrate_bars"),
    "calibrate_store": ("margincal.margin.published", "calibrate_store"),
    "to_parameter_set": ("margincal.margin.published", "to_parameter_set"),
    "calibrate_and_publish": ("margincal.margin.published", "calibrate_and_publish"),
    "margin_path": ("margincal.margin.published", "published_history"),
    "backtest_published": ("margincal.backtest.published", "backtest_published"),
}


def _ceil_to(x: float, step: float) -> float:
    from margincal.margin.rounding import ceil_to_increment

    return float(ceil_to_increment(x, step)) if step > 0 else float(x)


def _bar_lambda(lam_day: float, bar_hours: float) -> float:
    from margincal.units import Decay

    return Decay(per_day=lam_day).for_bars(bar_hours)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        mod, attr = _MOVED[name]
        warnings.warn(f"margincal.pipeline.{name} moved to {mod}.{attr}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(mod), attr)
    if name in ("ceil_to", "bar_lambda"):
        warnings.warn(f"margincal.pipeline.{name} is deprecated; see the module doc", DeprecationWarning,
                      stacklevel=2)
        return _ceil_to if name == "ceil_to" else _bar_lambda
    raise AttributeError(f"module 'margincal.pipeline' has no attribute {name!r}")


__all__: list[str] = []  # every name here is deprecated (module doc)
