"""Read-only views a risk officer works from (viewer role and up): version timeline and evidence, margin vs
price with breaches, brackets vs venues, implied-vol smiles, stress heatmap, cascades, audit-chain status.

Thin shells over :mod:`margincal.reports.views`, the same functions the offline report draws from. Every
view that depends on a parameter set takes ``version`` (default: the latest) and answers with evidence of
that version only.
"""

from __future__ import annotations

from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, HTTPException, Path, Query, Request

from margincal.margin import params as mparams
from margincal.reports import views
from margincal.service.deps import Con, Reader

router = APIRouter(prefix="/api/views", tags=["views"])

InstrumentPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")]
VersionQuery = Annotated[int | None, Query(ge=1, le=2**31 - 1, description="parameter-set version (default: latest)")]


def _pset(con: duckdb.DuckDBPyConnection, version: int | None) -> mparams.ParameterSet:
    latest = mparams.latest_version(con)
    if latest is None:
        raise HTTPException(404, "no parameter set has been published yet; run `margincal run` or `margincal calibrate`")
    if version is not None and not con.execute("SELECT count(*) FROM parameter_sets WHERE version = ?",
                                               [version]).fetchone()[0]:  # type: ignore[index]
        raise HTTPException(404, f"parameter set version {version} does not exist (latest is {latest})")
    return mparams.load(con, version)


def _brief(r: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if r is None else {k: r[k] for k in ("run_id", "created_at", "attribution", "params")}


@router.get("/timeline", summary="Parameter-set versions by date: author, source, changes, link to the diff",
            response_model=None)
def timeline(_: Reader, con: Con) -> list[dict[str, Any]]:
    return views.timeline(con)


@router.get("/evidence", summary="The backtest and stress runs of one version (never whatever ran last)",
            response_model=None)
def evidence(_: Reader, con: Con, version: VersionQuery = None) -> dict[str, Any]:
    p = _pset(con, version)
    ev = views.version_evidence(con, int(p.version or 0))
    return {"version": p.version, "backtest": _brief(ev["backtest"]), "stress": _brief(ev["stress"])}


@router.get("/margin/{instrument}", summary="Price and published IM/MM over time, breaches of the version's backtest",
            response_model=None)
def margin(request: Request, instrument: InstrumentPath, _: Reader, con: Con, version: VersionQuery = None,
           max_points: Annotated[int, Query(ge=50, le=5000)] = 1500) -> dict[str, Any]:
    p = _pset(con, version)
    ev = views.result_of_version(con, "backtest", int(p.version or 0))
    last = con.execute("SELECT max(ts), count(*) FROM bars WHERE instrument = ?", [instrument]).fetchone()
    if not last or not last[1]:
        raise HTTPException(404, "the instrument has no stored bars")
    key = ("views.margin", instrument, p.version, str(last[0]), int(last[1]), (ev or {}).get("run_id"), max_points)
    try:
        return request.app.state.history_cache.get_or_compute(
            key, lambda: views.margin_view(con, instrument, p, ev, max_points=max_points))
    except KeyError:
        raise HTTPException(404, "the instrument has no stored bars") from None


@router.get("/brackets", summary="Published bracket curves (perpetuals) beside the venue presets", response_model=None)
def brackets(_: Reader, con: Con, version: VersionQuery = None) -> dict[str, Any]:
    p = _pset(con, version)
    return {"version": p.version, "instruments": [views.bracket_view(p, k) for k in views.bracket_instruments(p)[:4]]}


@router.get("/smiles", summary="SVI smiles and implied-vol surface of a bundled Deribit option snapshot",
            response_model=None)
def smiles(_: Reader, snapshot: Annotated[str | None, Query(max_length=80, pattern=r"^[A-Za-z0-9_.-]+$")] = None
           ) -> dict[str, Any]:
    try:
        return views.smile_view(snapshot)
    except KeyError:
        from margincal.vol.surface import BUNDLED_SNAPSHOTS

        raise HTTPException(404, f"unknown snapshot; bundled: {', '.join(BUNDLED_SNAPSHOTS)}") from None


@router.get("/stress", summary="Scenario x instrument stress heatmap of a version, with its stored stress run",
            response_model=None)
def stress(_: Reader, con: Con, version: VersionQuery = None) -> dict[str, Any]:
    p = _pset(con, version)
    return views.stress_view(p, views.result_of_version(con, "stress", int(p.version or 0)))


@router.get("/cascade", summary="The latest stored liquidation-cascade run (event x policy); `available` is false "
            "when the store holds none", response_model=None)
def cascade(_: Reader, con: Con) -> dict[str, Any]:
    c = views.cascade_view(con)
    if c is None:
        return {"available": False, "rows": [], "events": [], "policies": [],
                "note": "no cascade result in the store; produce one with `margincal cascade`"}
    return {"available": True, **c}


@router.get("/audit", summary="Audit hash-chain status (`margincal audit verify`)", response_model=None)
def audit_status(_: Reader, con: Con) -> dict[str, Any]:
    return views.audit_view(con)
