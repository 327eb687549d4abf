"""`margincal calibrate`: calibrate IM/MM rates of stored instruments.

A calibration is a trial by default: it runs in a named sandbox, a separate store file
``<store>.sandbox-<name>.duckdb`` copied from the live store (as ``monitor --replay`` does), and publishes
there. ``--live-store`` submits it to the live set instead, through the proposal/decision path
(:mod:`margincal.usecases.calibration`): applied at once by ``system:calibrate`` where the rule allows
(first publication, new instruments, IM increases within the policy's automatic bound), otherwise left
pending for a risk officer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from margincal.cli.common import (
    JsonOption,
    StoreOption,
    console,
    open_store,
    print_json,
    print_table,
    progress,
)
from margincal.config import CalibrationSettings, resolve_store_path
from margincal.errors import ConfigError

if TYPE_CHECKING:
    import duckdb

# the model names for `--help`, kept here so that `margincal --help` does not import the model stack (scipy, arch);
# tests/test_cli_help.py checks they are margincal.risk.models.MODELS
MODEL_NAMES = ("cf", "evt", "fhs", "hs", "mc", "normal", "t")


def _targets(con: duckdb.DuckDBPyConnection, instruments: list[str] | None,
             timeframe: str | None) -> list[tuple[str, str]]:
    from margincal.data.samples import calibration_targets
    from margincal.data.store import bar_instruments

    if instruments:
        out = []
        for inst in instruments:
            tfs = [r[0] for r in con.execute(
                "SELECT DISTINCT timeframe FROM bars WHERE instrument = ? ORDER BY timeframe", [inst]).fetchall()]
            if not tfs:
                raise ConfigError(f"no bars stored for {inst}; stored: {', '.join(bar_instruments(con))}")
            tf = timeframe or ("1d" if "1d" in tfs else tfs[0])
            if tf not in tfs:
                raise ConfigError(f"{inst} has no {tf} bars (has {', '.join(tfs)})")
            out.append((inst, tf))
        return out
    stored = {(r[0], r[1]) for r in con.execute("SELECT DISTINCT instrument, timeframe FROM bars").fetchall()}
    default = [t for t in calibration_targets() if t in stored]
    if default:
        return default
    return sorted(stored)


def calibrate(
    model: Annotated[str, typer.Option("--model", "-m", help="Tail model: " + ", ".join(MODEL_NAMES))] = "fhs",
    level: Annotated[float, typer.Option("--level", help="ES confidence level.")] = 0.99,
    horizon: Annotated[str, typer.Option("--horizon", help="Liquidation horizon: hours (24) or 1d, 8h...")] = "1d",
    mm_fraction: Annotated[float, typer.Option("--mm-fraction", help="MM as a fraction of IM.")] = 0.5,
    buffer: Annotated[float, typer.Option("--buffer", help="IM = ES x (1 + buffer).")] = 0.0,
    rule: Annotated[str, typer.Option("--rule", help="v2 (default): size-dependent close-out horizon, brackets "
                                      "from the margin curve; flat: one --horizon for every size (--horizon, "
                                      "--mm-fraction and --buffer apply to flat only).")] = "v2",
    instrument: Annotated[list[str] | None, typer.Option("--instrument", "-i", help="Instruments (default: "
                                                         "every bundled one in the store).")] = None,
    timeframe: Annotated[str | None, typer.Option("--timeframe", "-t")] = None,
    store: StoreOption = None,
    sandbox: Annotated[str | None, typer.Option("--sandbox", help="The sandbox store the trial runs in (default "
                                                "'calibrate'); --fresh recreates it from the live store.")] = None,
    live_store: Annotated[bool, typer.Option("--live-store", help="Submit the calibration to the LIVE parameter set "
                                             "(a proposal, applied at once only where the policy allows) instead of "
                                             "a sandbox trial.")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="Recreate the sandbox from the live store first.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Calibrate IM/MM rates: a trial in a sandbox store, or (--live-store) a proposal to the live set."""
    from margincal.data.store import open_sandbox, sandbox_path
    from margincal.risk.models import MODELS, horizon_hours

    if model not in MODELS:
        raise ConfigError(f"--model {model!r} is not one of {', '.join(sorted(MODELS))}")
    settings = CalibrationSettings(model=model, level=level, horizon_hours=horizon_hours(horizon),
                                   mm_fraction=mm_fraction, buffer=buffer, rule=rule)
    if live_store and (sandbox is not None or fresh):
        raise ConfigError("--live-store writes into the live store; it takes no --sandbox or --fresh")
    live_path = resolve_store_path(store)
    if not live_store:
        sb_name = sandbox or "calibrate"
        sandbox_path(live_path, sb_name)  # validates the name before anything is created
        if not live_path.exists():
            raise ConfigError(f"store {live_path} does not exist; run `margincal run` or `margincal ingest` first")
        with open_store(live_path, read_only=True) as con:
            _targets(con, instrument, timeframe)  # unknown instruments fail before the sandbox is made
        target_path = open_sandbox(live_path, sb_name, fresh=fresh)
    else:
        target_path = live_path
    from margincal.usecases.calibration import calibrate_and_submit

    with open_store(target_path) as con:
        targets = _targets(con, instrument, timeframe)
        with progress(transient=True) as prog:
            task = prog.add_task("calibrating", total=len(targets))

            def step(label: str) -> None:
                prog.update(task, advance=1, description=f"calibrating {label}")

            sub, pset, cals = calibrate_and_submit(
                con, targets, settings, author="cli", on_step=step, sandbox=not live_store,
                evidence={"written_by": "margincal calibrate --live-store" if live_store else
                          f"margincal calibrate (sandbox {target_path.name})"})
    rows = [c.row() for c in cals]
    where = {"store": target_path.name, "live_store": live_store,
             "sandbox": None if live_store else target_path.name}
    if json_out:
        print_json({"version": sub.version, "run_id": pset.run_id, "proposal_id": sub.proposal_id,
                    "applied": sub.applied, "rule": sub.rule, "pending_reason": sub.pending_reason, **where,
                    "provenance": pset.provenance, "rows": rows})
        return
    tag = "live store" if live_store else f"sandbox {target_path.name}"
    print_table(rows, title=f"calibration ({model}, ES {level:g}, {settings.horizon_hours:g}h) in the {tag}")
    console.print(sub.message())
    if live_store:
        if sub.applied:
            console.print("instruments not calibrated here are carried over unchanged")
    else:
        console.print(f"a trial: the live store {live_path.name} is not touched (--live-store submits it there; "
                      f"read the trial with --store {target_path})")
