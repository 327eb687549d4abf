"""Calibrate stored instruments and submit the result through the proposal/decision path.

Every change of the live parameter set goes one way (issue 16, item 1): a proposal, then a decision.
:func:`calibrate_and_submit` is what ``margincal run``, ``margincal calibrate`` and the monitor's
``--calibrate`` base call: it calibrates, files the changed rows as one proposal and, where the rule of
:func:`margincal.adjust.approval.auto_rule` allows it (first publication into an empty store, a sandbox,
or new instruments and IM increases within the policy's automatic bound), records the automatic decision
by ``system:calibrate`` and publishes, all in one transaction; otherwise the proposal waits for a risk officer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb

from margincal.adjust.approval import SYSTEM_CALIBRATE, Submission, submit
from margincal.config import CalibrationSettings
from margincal.margin.params import ParameterSet, new_run_id
from margincal.margin.published import InstrumentCalibration, calibrate_store, to_parameter_set

__all__ = ["calibrate_and_submit", "submit_calibration"]


def submit_calibration(con: duckdb.DuckDBPyConnection, cals: list[InstrumentCalibration],
                       settings: CalibrationSettings, *, author: str, run_id: str | None = None,
                       note: str | None = None, sandbox: bool = False, policy: Any = None,
                       evidence: dict[str, Any] | None = None) -> tuple[Submission, ParameterSet]:
    """File calibrations ``cals`` as a proposal by ``author`` and apply it where the rule allows (see module doc)."""
    run_id = run_id or new_run_id()
    pset = to_parameter_set(cals, settings, run_id)
    what = f"{settings.model} ES{settings.level:g} {settings.horizon_hours:g}h"
    reason = (f"calibration ({what}, rule {settings.rule}) of {len(cals)} instrument(s): "
              + ", ".join(f"{c.instrument} IM {100 * c.im_rate:.2f}%" for c in cals[:12])
              + (" ..." if len(cals) > 12 else ""))
    ev = {"calibration": {"model": settings.model, "level": settings.level, "horizon_hours": settings.horizon_hours,
                          "rule": settings.rule, "targets": [[c.instrument, c.timeframe] for c in cals]},
          **(evidence or {})}
    sub = submit(con, pset, author=author, system=SYSTEM_CALIBRATE, source="calibration", reason=reason,
                 evidence=ev, note=note or what, run_id=run_id, sandbox=sandbox, policy=policy)
    return sub, pset


def calibrate_and_submit(con: duckdb.DuckDBPyConnection, targets: list[tuple[str, str]],
                         settings: CalibrationSettings, *, author: str,
                         on_step: Callable[[str], None] | None = None, sandbox: bool = False,
                         policy: Any = None, evidence: dict[str, Any] | None = None,
                         ) -> tuple[Submission, ParameterSet, list[InstrumentCalibration]]:
    """Calibrate ``targets`` (instrument, timeframe) and submit them; returns (submission, set, calibrations)."""
    cals = calibrate_store(con, targets, settings, on_step)
    sub, pset = submit_calibration(con, cals, settings, author=author, sandbox=sandbox, policy=policy,
                                   evidence=evidence)
    return sub, pset, cals
