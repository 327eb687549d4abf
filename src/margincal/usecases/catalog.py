"""What a store knows about its instruments and parameter sets: the listing, one instrument, the versions.

The queries behind ``GET /api/instruments``, ``/api/instruments/{id}``, ``/api/instruments/{id}/history``
and ``GET /api/parameter-sets``. They return plain Python values (timestamps of the store as ISO-8601
UTC text ending in ``Z``); the shells shape them for their output (the service: JSON, with its caches).
"""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd

from margincal.config import CalibrationSettings
from margincal.margin import params as mparams
from margincal.usecases.history import margin_history


def latest_params_or_none(con: duckdb.DuckDBPyConnection) -> mparams.ParameterSet | None:
    """The latest published parameter set, or None before the first publication."""
    if mparams.latest_version(con) is None:
        return None
    return mparams.load(con)


def list_instruments(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every known instrument (stored reference data or published parameters) with its current rates."""
    ref = {r["instrument"]: r for r in con.execute(
        "SELECT instrument, kind, underlying, quote, contract_size, tick_size, exchange FROM instruments "
        "ORDER BY instrument").df().to_dict("records")}
    pset = latest_params_or_none(con)
    names = sorted(set(ref) | set(pset.params if pset else {}))
    tfs: dict[str, list[str]] = {}
    for inst, tf in con.execute("SELECT DISTINCT instrument, timeframe FROM bars ORDER BY 1, 2").fetchall():
        tfs.setdefault(inst, []).append(tf)
    out = []
    for name in names:
        row: dict[str, Any] = {"instrument": name, **{k: v for k, v in ref.get(name, {}).items() if k != "instrument"}}
        row["timeframes"] = tfs.get(name, [])
        p = pset.params.get(name) if pset else None
        row.update({"im_rate": p.im_rate if p else None, "mm_rate": p.mm_rate if p else None,
                    "max_leverage": round(p.max_leverage, 2) if p else None,
                    "last_price": p.details.get("last_price") if p else None,
                    "timeframe": p.details.get("timeframe") if p else None,
                    "version": pset.version if p and pset else None})
        out.append(row)
    return out


def parameter_history(con: duckdb.DuckDBPyConnection, instrument: str) -> list[dict[str, Any]]:
    """The instrument's published IM/MM by version, oldest first, with the IM change against the previous one."""
    changes = con.execute(
        "SELECT r.version, s.created_at, s.created_by, s.source, r.im_rate, r.mm_rate "
        "FROM parameter_rows r JOIN parameter_sets s USING (version) WHERE r.instrument = ? ORDER BY r.version",
        [instrument]).fetchall()
    history = []
    prev = None
    for v, at, by, src, im, mm in changes:
        history.append({"version": v, "created_at": at.isoformat() + "Z", "created_by": by, "source": src,
                        "im_rate": im, "mm_rate": mm,
                        "im_change_pct": None if prev is None else 100.0 * (im / prev - 1.0)})
        prev = im
    return history


def instrument_detail(con: duckdb.DuckDBPyConnection, instrument: str) -> dict[str, Any]:
    """One instrument of :func:`list_instruments` with its parameter details and rate history
    (:class:`KeyError` when the store does not know it)."""
    rows = [r for r in list_instruments(con) if r["instrument"] == instrument]
    if not rows:
        raise KeyError(instrument)
    pset = latest_params_or_none(con)
    p = pset.params.get(instrument) if pset else None
    return {**rows[0], "details": p.details if p else {}, "parameter_history": parameter_history(con, instrument)}


def parameter_versions(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every published parameter-set version (:func:`margincal.margin.params.history`) with its instrument count."""
    df = mparams.history(con)
    counts = dict(con.execute("SELECT version, count(*) FROM parameter_rows GROUP BY version").fetchall())
    out = []
    for r in df.to_dict("records"):
        r["created_at"] = pd.Timestamp(r["created_at"]).isoformat() + "Z"
        r["instruments"] = int(counts.get(r["version"], 0))
        out.append(r)
    return out


def history_view(con: duckdb.DuckDBPyConnection, instrument: str, timeframe: str,
                 pset: mparams.ParameterSet | None, settings: CalibrationSettings, max_points: int) -> dict[str, Any]:
    """Price, forecast volatility and IM/MM rate paths of :func:`margincal.usecases.margin_history` as columns;
    bars past ``max_points`` are thinned to one a day, then the last ``max_points`` kept."""
    path = margin_history(con, instrument, timeframe, pset=pset, use_latest=False).path
    if len(path) > max_points:
        path = path.resample("1D").last().dropna(subset=["close"])
        if len(path) > max_points:
            path = path.iloc[-max_points:]
    return {"instrument": instrument, "timeframe": timeframe,
            "settings": {"level": settings.level, "horizon_hours": settings.horizon_hours,
                         "ewma_lambda_per_day": settings.ewma_lambda, "mm_fraction": settings.mm_fraction},
            "ts": [t.isoformat() for t in path.index],
            "close": path["close"].to_numpy(dtype=float),
            "sigma_ann": path["sigma_ann"].to_numpy(dtype=float),
            "im_rate": path["im_rate"].to_numpy(dtype=float),
            "mm_rate": path["mm_rate"].to_numpy(dtype=float)}


def last_bar(con: duckdb.DuckDBPyConnection, instrument: str, timeframe: str) -> tuple[str, int]:
    """(time of the last stored bar as text, number of bars) of an instrument on a timeframe: what a
    cache of its history is keyed on."""
    row = con.execute("SELECT max(ts), count(*) FROM bars WHERE instrument = ? AND timeframe = ?",
                      [instrument, timeframe]).fetchone()
    assert row is not None  # an aggregate query returns one row
    return str(row[0]), int(row[1])


__all__ = ["history_view", "instrument_detail", "last_bar", "latest_params_or_none", "list_instruments",
           "parameter_history", "parameter_versions"]
