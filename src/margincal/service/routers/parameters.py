"""Published parameter sets: versions, contents, diffs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import PlainTextResponse

from margincal.margin import params as mparams
from margincal.service import backends
from margincal.service.deps import Con, Reader

router = APIRouter(prefix="/api/parameter-sets", tags=["parameter sets"])


def _load(con: Any, version: int | None = None) -> mparams.ParameterSet:
    latest = mparams.latest_version(con)
    if latest is None:
        raise HTTPException(404, "no parameter set has been published yet; run `margincal run` or `margincal calibrate`")
    if version is not None and not con.execute("SELECT count(*) FROM parameter_sets WHERE version = ?",
                                               [version]).fetchone()[0]:
        raise HTTPException(404, f"parameter set version {version} does not exist (latest is {latest})")
    return mparams.load(con, version)
Version = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("", summary="Every published version (newest last)", response_model=None)
def list_versions(_: Reader, con: Con) -> list[dict[str, Any]]:
    return backends.versions(con)


@router.get("/latest", summary="The latest published parameter set", response_model=None)
def latest(_: Reader, con: Con) -> dict[str, Any]:
    return backends.pset_dict(_load(con))


@router.get("/{version}", summary="One published parameter set", response_model=None)
def get_version(version: Version, _: Reader, con: Con) -> dict[str, Any]:
    return backends.pset_dict(_load(con, version))


class CSVResponse(PlainTextResponse):
    """A text/csv answer (so the OpenAPI schema documents the content type the route sends)."""

    media_type = "text/csv"


@router.get("/{version}/csv", summary="Exchange-style bracket CSV of one version", response_class=CSVResponse)
def get_csv(version: Version, _: Reader, con: Con) -> CSVResponse:
    return CSVResponse(_load(con, version).to_csv())


@router.get("/{version}/diff", summary="Per-instrument changes from another version (default: the parent)",
            response_model=None)
def get_diff(version: Version, _: Reader, con: Con,
             against: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> dict[str, Any]:
    b = _load(con, version)
    base = against if against is not None else b.parent_version
    if base is None:
        return {"version": version, "against": None, "changes": backends.jsonable(
            mparams.diff(mparams.ParameterSet(params={}), b))}
    a = _load(con, base)
    return {"version": version, "against": base, "changes": backends.jsonable(mparams.diff(a, b))}
