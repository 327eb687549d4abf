"""Rolling backtests over many instruments: one task per instrument.

:func:`margincal.backtest.run_backtest` loops over instruments and never mixes
them (every path is instrument x model x policy x level x horizon), so each task
runs it on one instrument with the same arguments and the same ``run_id``; the
paths are concatenated in instrument order, which is the order of the
single-process loop. Warnings raised in a task (e.g. an instrument skipped for
lack of data) are re-emitted here.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable
from typing import Any

from margincal.backtest.engine import BacktestResult, _as_instruments, run_backtest
from margincal.errors import ConfigError, DataError


def backtest_one(inst: Any, kwargs: dict[str, Any]) -> tuple[BacktestResult, list[tuple[type[Warning], str]]]:
    """Task: :func:`run_backtest` on one instrument; returns the result and the warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run_backtest([inst], **kwargs)
    return res, [(w.category, str(w.message)) for w in caught]


def backtests(engine: Any, data: Any, *, progress: Callable[[int], None] | None = None,
              **kwargs: Any) -> BacktestResult:
    """:func:`margincal.backtest.run_backtest` with one task per instrument (module doc).

    ``data`` as for ``run_backtest``; ``kwargs`` are passed on (``models``,
    ``policies``, ``levels``, ``horizons``, ``min_history``, ...). ``progress(1)``
    is called per finished instrument.
    """
    if "progress" in kwargs:
        raise ConfigError("pass progress= as a callback of finished instruments")
    insts = _as_instruments(data)
    if not insts:
        raise DataError("no instruments to backtest")
    kwargs = {**kwargs, "run_id": kwargs.get("run_id") or uuid.uuid4().hex[:12]}
    parts = engine.map(backtest_one, insts, kwargs, progress=progress)
    for _res, ws in parts:
        for cat, msg in ws:
            warnings.warn(msg, cat, stacklevel=2)
    first = parts[0][0]
    params = {**first.params, "engine": engine.describe()}
    return BacktestResult(params=params, paths=tuple(p for r, _ in parts for p in r.paths),
                          instruments=tuple(i for r, _ in parts for i in r.instruments))


__all__ = ["backtest_one", "backtests"]
