"""The data of the views a risk officer works from, shared by the dashboard (``/api/views/...``) and the
offline report (``margincal report``): one function per view, plain JSON-ready dicts.

* :func:`version_evidence`: the backtest and stress results *of one parameter-set version* (never
  "whatever ran last"), with how each was attributed;
* :func:`margin_view`: price and the published IM/MM over time (:func:`margincal.usecases.margin_history`,
  the causal history of the published rule) with the breaches of that version's backtest marked;
* :func:`timeline`: parameter-set versions by date, with author, source and the count of changes;
* :func:`bracket_view`: the published bracket curve (``details["tiers"]`` / ``details["curve"]``) beside the
  venue presets;
* :func:`smile_view`: SVI smiles and the implied-vol surface of the bundled Deribit option snapshots;
* :func:`stress_view`: scenario x instrument heatmap (scenario move as a multiple of the version's IM rate);
* :func:`cascade_view`: stored liquidation-cascade results;
* :func:`audit_view`: the audit hash-chain check (``audit verify``).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from margincal import usecases
from margincal.data import audit
from margincal.errors import MargincalError
from margincal.margin import params as mparams

#: how a backtest / stress run of the published rule is recognised in its stored parameters
_OF_PUBLISHED = {"backtest": lambda p: "published" in (p.get("models") or []),
                 "stress": lambda p: p.get("margin") == "published"}


def _iso(ts: Any) -> str:
    return pd.Timestamp(ts).isoformat()


def _finite(v: Any, digits: int = 6) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return float(f"{f:.{digits}g}") if math.isfinite(f) else None


# ------------------------------------------------------------------ versions and their evidence


def version_window(con: duckdb.DuckDBPyConnection, version: int) -> tuple[pd.Timestamp, pd.Timestamp | None]:
    """When ``version`` was the live set: its creation time and the next version's (None: still live)."""
    row = con.execute("SELECT created_at FROM parameter_sets WHERE version = ?", [version]).fetchone()
    if row is None:
        raise KeyError(version)
    nxt = con.execute("SELECT min(created_at) FROM parameter_sets WHERE version > ?", [version]).fetchone()
    return pd.Timestamp(row[0]), (pd.Timestamp(nxt[0]) if nxt and nxt[0] is not None else None)


def result_of_version(con: duckdb.DuckDBPyConnection, kind: str, version: int) -> dict[str, Any] | None:
    """The latest ``kind`` result (backtest, stress) of the published rule of ``version``, or None.

    A result is of a version when its parameters name it (``params["version"]``, written by ``margincal run``
    and ``margincal stress --margin published``), or, for results stored without that field, when it ran on
    the published rule while that version was the live set. ``attribution`` says which."""
    start, end = version_window(con, version)
    rows = con.execute("SELECT run_id, created_at, params, payload FROM results WHERE kind = ? "
                       "ORDER BY created_at DESC", [kind]).fetchall()
    import json

    fallback = None
    for run_id, created, params_text, payload_text in rows:
        params = json.loads(params_text)
        tagged = params.get("version") if isinstance(params, Mapping) else None
        if tagged is not None:
            if tagged == version:
                return {"run_id": run_id, "created_at": _iso(created), "params": params,
                        "payload": json.loads(payload_text), "attribution": f"run of version {version}"}
            continue
        ts = pd.Timestamp(created)
        if fallback is None and isinstance(params, Mapping) and _OF_PUBLISHED.get(kind, lambda p: False)(params) \
                and ts >= start and (end is None or ts < end):
            fallback = {"run_id": run_id, "created_at": _iso(created), "params": params,
                        "payload": json.loads(payload_text),
                        "attribution": f"run of the published rule while version {version} was live"}
    return fallback


def version_evidence(con: duckdb.DuckDBPyConnection, version: int) -> dict[str, Any]:
    """``{"version", "backtest", "stress"}``: the results of ``version`` (None where it has none)."""
    return {"version": version, "backtest": result_of_version(con, "backtest", version),
            "stress": result_of_version(con, "stress", version)}


def timeline(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every version by date: author, source, note, instruments, and how many instruments changed from its
    parent (added, removed, changed); ``diff`` is the API path of the per-instrument diff."""
    hist = mparams.history(con)
    if hist.empty:
        return []
    rows = con.execute("SELECT version, instrument, im_rate, mm_rate FROM parameter_rows").fetchall()
    by_v: dict[int, dict[str, tuple[float, float]]] = {}
    for v, inst, im, mm in rows:
        by_v.setdefault(int(v), {})[inst] = (float(im), float(mm))
    out = []
    for r in hist.to_dict("records"):
        v = int(r["version"])
        cur = by_v.get(v, {})
        par = r.get("parent_version")
        prev = by_v.get(int(par), {}) if par is not None and not pd.isna(par) else {}
        changed = sum(1 for k in cur.keys() & prev.keys() if cur[k] != prev[k])
        out.append({"version": v, "created_at": _iso(r["created_at"]), "created_by": r.get("created_by"),
                    "source": r.get("source"), "note": r.get("note") or "",
                    "parent_version": None if par is None or pd.isna(par) else int(par),
                    "instruments": len(cur), "added": len(cur.keys() - prev.keys()),
                    "removed": len(prev.keys() - cur.keys()), "changed": changed,
                    "diff": f"/api/parameter-sets/{v}/diff"})
    return out


# ------------------------------------------------------------------ margin vs price with breaches


def backtest_breaches(payload: Mapping[str, Any] | None, instrument: str) -> dict[str, Any]:
    """Bars where the realised loss of either side exceeded the published IM (model ``published``) or MM
    (``published-mm``) in a stored backtest of the published rule: ``{"im": [...], "mm": [...]}`` of
    ``{"ts", "margin", "loss"}`` plus the counts and observations."""
    out: dict[str, Any] = {"im": [], "mm": [], "n_obs": {"im": 0, "mm": 0}}
    for s in (payload or {}).get("series") or []:
        if s.get("instrument") != instrument or s.get("model") not in ("published", "published-mm"):
            continue
        key = "im" if s["model"] == "published" else "mm"
        m = np.asarray(s["margin"], dtype=float)
        loss = np.fmax(np.asarray(s["loss_long"], dtype=float), np.asarray(s["loss_short"], dtype=float))
        ok = np.isfinite(m) & np.isfinite(loss)
        out["n_obs"][key] = int(ok.sum())
        idx = np.flatnonzero(ok & (loss > m))
        out[key] = [{"ts": str(s["index"][i]), "margin": _finite(m[i]), "loss": _finite(loss[i])} for i in idx]
    return out


def margin_view(con: duckdb.DuckDBPyConnection, instrument: str, pset: mparams.ParameterSet,
                backtest: Mapping[str, Any] | None, max_points: int = 1000) -> dict[str, Any]:
    """Price, forecast volatility and the published IM/MM over time (causal history of the published rule with
    ``pset``'s settings), thinned to about ``max_points``; breaches of ``backtest`` (the version's) marked."""
    h = usecases.margin_history(con, instrument, pset=pset)
    path = h.path.dropna(subset=["im_rate"]) if not h.too_short else h.path
    if len(path) > max_points:
        step = math.ceil(len(path) / max_points)
        path = path.iloc[::step]
    br = backtest_breaches((backtest or {}).get("payload"), instrument)
    for key in ("im", "mm"):  # a marker per day at most (hourly backtests breach in clusters)
        br[f"{key}_count"] = len(br[key])
        if len(br[key]) > 300:
            df = pd.DataFrame(br[key])
            df["day"] = df["ts"].str[:10]
            g = df.groupby("day", sort=True).agg(margin=("margin", "max"), loss=("loss", "max"), n=("ts", "size"))
            br[key] = [{"ts": d, "margin": _finite(r.margin), "loss": _finite(r.loss), "n": int(r.n)}
                       for d, r in g.iterrows()]
    return {"instrument": instrument, "timeframe": h.timeframe, "version": pset.version, "too_short": h.too_short,
            "ts": [t.isoformat() for t in path.index],
            **{c: [_finite(v) for v in path[c].to_numpy(dtype=float)] for c in ("close", "sigma_ann", "im_rate",
                                                                               "mm_rate")},
            "breaches": br, "backtest_run": (backtest or {}).get("run_id")}


# ------------------------------------------------------------------ brackets vs venues


def bracket_instruments(pset: mparams.ParameterSet) -> list[str]:
    """Instruments of ``pset`` with brackets from the margin curve (``details["curve"]``) to compare with the
    venue presets: the perpetuals of an underlying with presets (BTC-PERP, ETH-PERP), else any curved one."""
    from margincal.reports.margin_v2 import VENUE_PRESETS, _underlying

    curved = [k for k, p in pset.params.items() if p.details.get("tiers") and p.details.get("curve")]
    perps = [k for k in curved if "PERP" in k.upper() and _underlying(k) in VENUE_PRESETS]
    return perps or [k for k in curved if _underlying(k) in VENUE_PRESETS] or curved


def bracket_view(pset: mparams.ParameterSet, instrument: str, n: int = 160) -> dict[str, Any]:
    """Effective IM / MM rate vs notional of the published brackets, the calibrated curve points, and the venue
    presets of the same underlying at the same price."""
    from margincal.margin.tiers import TierSchedule
    from margincal.reports.margin_v2 import _underlying, venue_rates

    p = pset.params[instrument]
    sched = TierSchedule.from_details(p.details["tiers"], cap_inclusive=bool(p.details.get("cap_inclusive", False)),
                                      whole_position=bool(p.details.get("whole_position", False)))
    caps = [t.get("upper") for t in p.details["tiers"]]
    top = float(max([c for c in caps if c] or [1e7]))
    grid = np.geomspace(1e3, top, n)
    price = float(p.details.get("last_price") or 1.0)
    venues = {k: [_finite(x) for x in im] for k, (im, _mm) in venue_rates(_underlying(instrument), grid, price).items()}
    curve = p.details.get("curve") or []
    return {"instrument": instrument, "version": pset.version, "notional": [_finite(x) for x in grid],
            "im_rate": [_finite(x) for x in np.asarray(sched.initial_rate(grid))],
            "mm_rate": [_finite(x) for x in np.asarray(sched.maintenance_rate(grid))],
            "curve": [{"notional": _finite(c.get("notional")), "im_rate": _finite(c.get("im_rate")),
                       "mm_rate": _finite(c.get("mm_rate"))} for c in curve if isinstance(c, Mapping)],
            "tiers": p.details["tiers"], "venues": venues, "price": price}


# ------------------------------------------------------------------ implied-vol smiles and surface


@functools.lru_cache(maxsize=8)
def smile_view(file: str | None = None, n_k: int = 41) -> dict[str, Any]:
    """SVI fit (:class:`margincal.vol.surface.SVISurface`) of a bundled Deribit snapshot: per expiry the quoted
    (k, iv) and the fitted smile, plus the implied-vol surface on a k x T grid. Cached (the data are bundled)."""
    from margincal import datasets
    from margincal.vol.surface import BUNDLED_SNAPSHOTS, SVISurface, load_deribit_snapshot

    names = list(BUNDLED_SNAPSHOTS)
    name = file or names[0]
    if name not in names:
        raise KeyError(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = load_deribit_snapshot(datasets.path(name))
        surf = SVISurface().fit(q)
    slices = []
    for i, row in surf.slices_.reset_index(drop=True).iterrows():
        T = float(row["T"])
        g = q[np.isclose(q["T"], T)]
        kq = g["k"].to_numpy(float)
        ivq = np.sqrt(g["w"].to_numpy(float) / T) if "w" in g else g["iv"].to_numpy(float)
        kk = np.linspace(float(row["k_min"]), float(row["k_max"]), n_k)
        fit = np.sqrt(np.maximum(surf.params_[int(i)].total_variance(kk), 0.0) / T)
        expiry = row.get("expiry")
        slices.append({"T": _finite(T), "expiry": None if expiry is None or pd.isna(expiry) else str(expiry)[:10],
                       "k": [_finite(x, 4) for x in kq], "iv": [_finite(x, 4) for x in ivq],
                       "k_fit": [_finite(x, 4) for x in kk], "iv_fit": [_finite(x, 4) for x in fit],
                       "rmse_iv": _finite(row["rmse_iv"], 4)})
    kg = np.linspace(-0.5, 0.5, 21)
    Tg = np.asarray(surf.expiries_T_, dtype=float)
    iv = np.sqrt(np.maximum(surf.total_variance(kg[None, :], Tg[:, None]), 0.0) / Tg[:, None])
    rng = np.asarray(surf.k_ranges_, dtype=float)
    iv[(kg[None, :] < rng[:, :1]) | (kg[None, :] > rng[:, 1:])] = np.nan  # no extrapolation past the quotes
    return {"snapshot": name, "snapshots": names, "slices": slices, "rmse_iv": _finite(surf.rmse_iv_, 4),
            "surface": {"k": [_finite(x, 4) for x in kg], "T": [_finite(x, 4) for x in Tg],
                        "iv": [[_finite(x, 4) for x in r] for r in iv]}}


# ------------------------------------------------------------------ stress heatmap


def _base(instrument: str) -> str:
    from margincal.reports.margin_v2 import _underlying

    return _underlying(instrument)


@functools.lru_cache(maxsize=1)
def _scenario_moves() -> tuple[tuple[str, ...], tuple[tuple[float, ...], ...], tuple[str, ...]]:
    """(scenario names, worst spot log-move per underlying of each scenario (most adverse leg), underlyings)."""
    from margincal.stress.book import market_from_samples
    from margincal.stress.library import scenario_library

    market = market_from_samples()
    unders = tuple(sorted(market.spot))
    names, moves = [], []
    for s in scenario_library(1):
        try:
            legs = s.legs(market)
        except (MargincalError, KeyError, ValueError):
            continue
        if not legs:
            continue
        row = []
        for u in unders:
            ms = [leg.spot_of(u) for leg in legs]
            row.append(max(ms, key=abs))
        if not any(row):
            continue  # vol-, funding- or liquidity-only scenarios move no spot
        names.append(s.name)
        moves.append(tuple(row))
    return tuple(names), tuple(moves), unders


def stress_view(pset: mparams.ParameterSet, stored: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Scenario x instrument heatmap of the scenario library against ``pset``: the loss of the side that loses
    (a long on a fall, a short on a rise) as a fraction of notional divided by the instrument's IM rate (above 1:
    the scenario costs more than the IM). Plus the stored stress result of the version, when there is one."""
    names, moves, unders = _scenario_moves()
    insts = [k for k in pset.instruments() if _base(k) in unders]
    z = []
    for mv in moves:
        by_u = dict(zip(unders, mv, strict=True))
        row = []
        for k in insts:
            m = by_u[_base(k)]
            loss = -math.expm1(m) if m < 0 else math.expm1(m)
            row.append(_finite(loss / pset.params[k].im_rate, 4))
        z.append(row)
    out: dict[str, Any] = {"version": pset.version, "scenarios": list(names), "instruments": insts, "z": z,
                           "metric": "scenario loss / IM rate"}
    if stored:
        out["stored"] = {"run_id": stored.get("run_id"), "created_at": stored.get("created_at"),
                         "attribution": stored.get("attribution"),
                         "summary": list((stored.get("payload") or {}).get("summary") or [])}
    return out


# ------------------------------------------------------------------ cascades and audit


def cascade_view(con: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
    """The latest stored cascade result: rows (event x policy) with bad debt and liquidated notional."""
    from margincal.data.store import latest_result

    r = latest_result(con, "cascade")
    if r is None:
        return None
    p = r["payload"] if isinstance(r["payload"], Mapping) else {}
    rows = [{k: v for k, v in row.items() if not isinstance(v, (list, dict))} for row in p.get("rows") or []
            if isinstance(row, Mapping)]
    return {"run_id": r["run_id"], "created_at": _iso(r["created_at"]), "params": r["params"], "rows": rows,
            "events": list(dict.fromkeys(str(x.get("event")) for x in rows)),
            "policies": list(dict.fromkeys(str(x.get("policy")) for x in rows))}


def audit_view(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """``audit verify``: entries, ok/broken, first bad entry, and the last entry's hash and time."""
    c = audit.verify_chain(con)
    last = con.execute("SELECT seq, ts, actor, action, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return {"ok": c.ok, "entries": c.entries, "first_bad_seq": c.first_bad_seq, "reason": c.reason,
            "last_seq": int(last[0]) if last else None, "last_ts": _iso(last[1]) if last else None,
            "last_actor": last[2] if last else None, "last_action": last[3] if last else None,
            "last_hash": last[4] if last else None}


__all__ = ["audit_view", "backtest_breaches", "bracket_instruments", "bracket_view", "cascade_view", "margin_view",
           "result_of_version", "smile_view", "stress_view", "timeline", "version_evidence", "version_window"]
