"""The latest stored backtest, stress and cascade results, as the shells show them."""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd

from margincal.data.store import latest_result

RESULT_KINDS = ("backtest", "stress", "cascade")
#: the command that stores each kind of result
PRODUCE = {
    "backtest": "margincal backtest --store STORE",
    "stress": "margincal stress --store STORE",
    "cascade": "margincal cascade --store STORE",
}
BULKY = ("series", "paths", "mc")  # per-bar / per-path arrays: left out unless asked for


def latest(con: duckdb.DuckDBPyConnection, kind: str, full: bool = True) -> dict[str, Any] | None:
    """The latest stored result of ``kind`` (None if there is none); without ``full`` the bulky arrays
    (:data:`BULKY`) are dropped and listed under ``omitted``."""
    r = latest_result(con, kind)
    if r is None:
        return None
    if not full and isinstance(r["payload"], dict):
        dropped = [k for k in BULKY if k in r["payload"]]
        r["payload"] = {k: v for k, v in r["payload"].items() if k not in BULKY}
        r["omitted"] = dropped
    r["created_at"] = pd.Timestamp(r["created_at"]).isoformat() + "Z"
    return {"kind": kind, **r}


__all__ = ["BULKY", "PRODUCE", "RESULT_KINDS", "latest"]
