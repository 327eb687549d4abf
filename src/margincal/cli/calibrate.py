"""`margincal calibrate`: calibrate IM/MM rates of stored instruments and publish a parameter set."""

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
from margincal.config import CalibrationSettings
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
    json_out: JsonOption = False,
) -> None:
    """Calibrate IM/MM rates and publish them as a new parameter-set version."""
    from margincal.margin.published import calibrate_and_publish
    from margincal.risk.models import MODELS, horizon_hours

    if model not in MODELS:
        raise ConfigError(f"--model {model!r} is not one of {', '.join(sorted(MODELS))}")
    settings = CalibrationSettings(model=model, level=level, horizon_hours=horizon_hours(horizon),
                                   mm_fraction=mm_fraction, buffer=buffer, rule=rule)
    with open_store(store) as con:
        from margincal.margin.params import latest_version

        before = latest_version(con)
        targets = _targets(con, instrument, timeframe)
        with progress(transient=True) as prog:
            task = prog.add_task("calibrating", total=len(targets))

            def step(label: str) -> None:
                prog.update(task, advance=1, description=f"calibrating {label}")

            version, pset, cals = calibrate_and_publish(con, targets, settings, actor="cli", on_step=step)
    rows = [c.row() for c in cals]
    if json_out:
        print_json({"version": version, "run_id": pset.run_id, "provenance": pset.provenance, "rows": rows})
        return
    print_table(rows, title=f"parameter set v{version} ({model}, ES {level:g}, {settings.horizon_hours:g}h)")
    if version == before:
        console.print(f"unchanged: the live set v{version} already holds these rates (nothing published)")
    else:
        console.print(f"published version {version}, run id {pset.run_id} (instruments not calibrated here are "
                      "carried over unchanged)")
