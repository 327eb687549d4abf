"""What the routes call: thin adapters over the Python API, plus the service's caches.

* instruments, parameter sets, diffs: :mod:`margincal.margin.params`; per-instrument history:
  :func:`margincal.usecases.margin_history` (cached per instrument, timeframe and last bar);
* portfolio margin and what-if: :func:`margincal.usecases.portfolio_scenarios` (risk matrix, inputs
  cached here), or the published rates (:func:`margincal.usecases.standalone_margin`, no offsets) with
  ``method="standalone"``; see :class:`MarginEngine`;
* proposals: :mod:`margincal.adjust.approval` (list, approve, reject: role and four-eyes checks,
  one transaction per decision);
* signals: the ``signals`` table when the monitor has written to it, else the signals the monitor recorded as
  evidence of its proposals and automatic adjustments; events: the audit log;
* backtest / stress / cascade results: :func:`margincal.data.store.latest_result`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from margincal import usecases
from margincal.config import CalibrationSettings
from margincal.data.store import latest_result, scalar
from margincal.errors import AuthError, ConfigError, MargincalError, StoreError
from margincal.margin import params as mparams


def optional_module(name: str) -> Any | None:
    """Import ``name`` when it exists (a module other parts of margincal may not have shipped yet)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            return None
        raise


def jsonable(v: Any) -> Any:
    """Plain JSON values: NaN/inf -> None, numpy/pandas scalars -> Python, timestamps -> ISO text."""
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return [jsonable(x) for x in v.tolist()]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, pd.Timestamp):
        return None if pd.isna(v) else v.isoformat()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "as_dict"):
        return jsonable(v.as_dict())
    return v


# ------------------------------------------------------------------ instruments and parameters


def latest_params_or_none(con: duckdb.DuckDBPyConnection) -> mparams.ParameterSet | None:
    if mparams.latest_version(con) is None:
        return None
    return mparams.load(con)


def instruments(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
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
        out.append(jsonable(row))
    return out


def instrument_detail(con: duckdb.DuckDBPyConnection, instrument: str) -> dict[str, Any]:
    rows = [r for r in instruments(con) if r["instrument"] == instrument]
    if not rows:
        raise KeyError(instrument)
    pset = latest_params_or_none(con)
    p = pset.params.get(instrument) if pset else None
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
    return jsonable({**rows[0], "details": p.details if p else {}, "parameter_history": history})


def pset_dict(p: mparams.ParameterSet) -> dict[str, Any]:
    return jsonable(json.loads(p.to_json()))


def versions(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    df = mparams.history(con)
    counts = dict(con.execute("SELECT version, count(*) FROM parameter_rows GROUP BY version").fetchall())
    out = []
    for r in df.to_dict("records"):
        r["created_at"] = pd.Timestamp(r["created_at"]).isoformat() + "Z"
        r["instruments"] = int(counts.get(r["version"], 0))
        out.append(jsonable(r))
    return out


def settings_of(pset: mparams.ParameterSet | None) -> CalibrationSettings:
    """The calibration settings a parameter set was made with (:func:`margincal.usecases.settings_of`)."""
    return usecases.settings_of(pset)


class HistoryCache:
    """LRU cache of causal margin histories keyed by (instrument, timeframe, last bar, settings)."""

    def __init__(self, size: int = 32):
        self.size = size
        self._d: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: tuple[Any, ...], fn: Any) -> dict[str, Any]:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        value = fn()
        with self._lock:
            self._d[key] = value
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value


def instrument_history(con: duckdb.DuckDBPyConnection, instrument: str, timeframe: str | None,
                       max_points: int, cache: HistoryCache) -> dict[str, Any]:
    """Price, forecast (EWMA, causal) volatility and IM/MM rate paths of one instrument
    (:func:`margincal.usecases.margin_history`), plus its published rates by version. Cached per
    instrument, timeframe, last bar and settings; hourly data are thinned to one point per day past
    ``max_points``."""
    pset = latest_params_or_none(con)
    tf = usecases.history.resolve_timeframe(con, instrument, timeframe, pset)
    settings = settings_of(pset)
    last = con.execute("SELECT max(ts), count(*) FROM bars WHERE instrument = ? AND timeframe = ?",
                       [instrument, tf]).fetchone()
    assert last is not None  # an aggregate query returns one row
    key = (instrument, tf, str(last[0]), int(last[1]), settings.level, settings.horizon_hours,
           settings.ewma_lambda, settings.mm_fraction, settings.buffer, max_points)

    def compute() -> dict[str, Any]:
        path = usecases.margin_history(con, instrument, tf, pset=pset, use_latest=False).path
        if len(path) > max_points:
            path = path.resample("1D").last().dropna(subset=["close"])
            if len(path) > max_points:
                path = path.iloc[-max_points:]
        return {"instrument": instrument, "timeframe": tf,
                "settings": {"level": settings.level, "horizon_hours": settings.horizon_hours,
                             "ewma_lambda_per_day": settings.ewma_lambda, "mm_fraction": settings.mm_fraction},
                "ts": [t.isoformat() for t in path.index],
                "close": jsonable(path["close"].to_numpy(dtype=float)),
                "sigma_ann": jsonable(path["sigma_ann"].to_numpy(dtype=float)),
                "im_rate": jsonable(path["im_rate"].to_numpy(dtype=float)),
                "mm_rate": jsonable(path["mm_rate"].to_numpy(dtype=float))}

    out = dict(cache.get_or_compute(key, compute))
    out["published"] = instrument_detail(con, instrument)["parameter_history"]
    return out


# ------------------------------------------------------------------ portfolio margin


_prices = usecases.store_prices
_standalone = usecases.standalone_margin
_aggregate = usecases.aggregate_positions


class MarginUnavailable(MargincalError):
    """HTTP 501: this margincal build has no risk-matrix portfolio module."""


class _FixedPnL:
    """A margin engine for :func:`margincal.margin.portfolio.what_if` that returns one precomputed
    instruments x scenarios matrix (of a superset of the portfolio's instruments).

    Instruments with zero quantity add nothing to a scenario loss, to the short-option contingency
    (net short per strike is 0) or to the futures contingency (gross |0| = 0), so margin over the
    superset equals margin over the portfolio's own instruments; the tests check the two agree.
    """

    def __init__(self, pnl: Any, market: Any):
        self.pnl = pnl
        self.market = market
        self.specs = dict(zip(pnl.instruments, pnl.specs, strict=True))

    def scenario_pnl(self, specs: Any, market: Any) -> Any:
        return self.pnl


class MarginEngine:
    """Portfolio margin and what-if for the service, with the inputs cached.

    ``method="risk_matrix"`` (default): :mod:`margincal.margin.portfolio` (Deribit-style risk matrix:
    spot x vol scenarios per underlying, full option revaluation, contingencies); instruments are
    Deribit-style names (BTC-PERP, BTC-27DEC24, BTC-27DEC24-70000-C). The market (spots from the
    store's latest bars, option vols from stored / bundled quotes or ``flat_vol``) is built once for
    the union of every instrument asked about so far, with its scenario matrix, and reused until
    the store changes (checked at most once a second); a request then costs two P&L vectors and
    one two-row margin product.

    ``method="standalone"``: the published parameter set, IM rate x |notional| per instrument (no
    offsets: an upper bound of any offsetting margin); works for every instrument with published rates.
    """

    MAX_UNIVERSE = 20_000
    FINGERPRINT_TTL = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fp: tuple[int, float, tuple[Any, ...]] | None = None
        self._pset: tuple[Any, mparams.ParameterSet, dict[str, float]] | None = None
        self._markets: OrderedDict[tuple[Any, ...], tuple[frozenset[str], Any, dict[str, Any]]] = OrderedDict()

    # ---- published-rates (standalone) state
    def _state(self, con: duckdb.DuckDBPyConnection, generation: int) -> tuple[mparams.ParameterSet,
                                                                              dict[str, float]]:
        v = mparams.latest_version(con)
        if v is None:
            raise StoreError("no parameter set has been published yet; run `margincal run` or `margincal calibrate`")
        last_bar = con.execute("SELECT max(ts) FROM bars").fetchone()[0]  # type: ignore[index]
        key = (generation, v, str(last_bar))
        with self._lock:
            if self._pset is not None and self._pset[0] == key:
                return self._pset[1], self._pset[2]
        pset = mparams.load(con, v)
        prices = _prices(con, pset.instruments())
        with self._lock:
            self._pset = (key, pset, prices)
        return pset, prices

    def _check(self, pset: mparams.ParameterSet, names: Sequence[str]) -> None:
        missing = sorted({n for n in names if n not in pset.params})
        if missing:
            # the request's names are not echoed back (issue 16): the count, and what the set does know
            raise UnknownInstrument(
                f"{len(missing)} instrument(s) of the request have no margin parameters in version {pset.version}; "
                f"known: {', '.join(pset.instruments()[:30])}")

    # ---- risk-matrix state
    def _fingerprint(self, con: duckdb.DuckDBPyConnection, generation: int) -> tuple[Any, ...]:
        """What the market depends on in the store (latest bar, option quotes), re-read at most once a second."""
        now = time.monotonic()
        with self._lock:
            fp = self._fp
        if fp is not None and fp[0] == generation and now - fp[1] < self.FINGERPRINT_TTL:
            return fp[2]
        q = con.execute("SELECT max(snapshot_ts), count(*) FROM option_quotes").fetchone()
        b = con.execute("SELECT max(ts), count(*) FROM bars").fetchone()
        value = (generation, str(b), str(q))
        with self._lock:
            self._fp = (generation, now, value)
        return value

    def _market(self, con: duckdb.DuckDBPyConnection, names: set[str], flat_vol: float | None,
                spot: Mapping[str, float] | None, generation: int) -> tuple[Any, _FixedPnL, dict[str, Any]]:
        """(portfolio module, engine holding the universe's scenario matrix, market provenance)."""
        pm = optional_module("margincal.margin.portfolio")
        if pm is None:
            raise MarginUnavailable("this margincal build has no risk-matrix portfolio margin; use method=standalone")
        key = (self._fingerprint(con, generation), flat_vol, tuple(sorted((spot or {}).items())))
        with self._lock:
            entry = self._markets.get(key)
            if entry is not None and names <= entry[0]:
                self._markets.move_to_end(key)
                return pm, entry[1], entry[2]
            universe = names if entry is None or len(entry[0]) + len(names) > self.MAX_UNIVERSE else entry[0] | names
            specs = [pm.parse_instrument(n) for n in sorted(universe)]
            pnl, market, prov = usecases.portfolio_scenarios(specs, con=con, spot=spot, flat_vol=flat_vol)
            engine = _FixedPnL(pnl, market)
            self._markets[key] = (frozenset(universe), engine, prov)
            self._markets.move_to_end(key)
            while len(self._markets) > 8:
                self._markets.popitem(last=False)
            return pm, engine, prov

    def portfolio(self, con: duckdb.DuckDBPyConnection, positions: list[dict[str, Any]], *,
                  method: str = "risk_matrix", flat_vol: float | None = None,
                  spot: Mapping[str, float] | None = None, generation: int = 0) -> dict[str, Any]:
        if method == "standalone":
            pset, prices = self._state(con, generation)
            self._check(pset, [p["instrument"] for p in positions])
            return jsonable(_standalone(pset, positions, prices))
        pos = _aggregate(positions)
        if not pos:
            return {"im": 0.0, "mm": 0.0, "driving_scenario": None, "method": "risk_matrix", "positions": 0}
        pm, engine, prov = self._market(con, set(pos), flat_vol, spot, generation)
        res = pm.portfolio_margin(pos, engine.pnl).records()[0]
        return jsonable({"im": res["im"], "mm": res["mm"], "scenario_charge": res["scenario_charge"],
                         "contingency": res["contingency"], "driving_scenario": res["driving_scenario"],
                         "method": engine.pnl.method, "positions": len(pos),
                         "market": _market_info(engine.market, prov)})

    def what_if(self, con: duckdb.DuckDBPyConnection, positions: list[dict[str, Any]], order: dict[str, Any], *,
                method: str = "risk_matrix", flat_vol: float | None = None,
                spot: Mapping[str, float] | None = None, generation: int = 0,
                limits: Mapping[str, Any] | None = None, collateral: Mapping[str, float] | None = None,
                haircuts: Mapping[str, float] | None = None) -> dict[str, Any]:
        from margincal.margin.limits import Limits, check_order

        lim = Limits(**limits) if limits is not None else None
        if method == "standalone":
            out = self._what_if_standalone(con, positions, order, generation)
            breaches = check_order(_aggregate(positions), {order["instrument"]: order["signed_quantity"]},
                                   lim) if lim is not None else []
            out.update({"accepted": not breaches, "refusal": "; ".join(b.message for b in breaches) or None,
                        "breaches": [b.as_dict() for b in breaches]})
            return jsonable(out)
        pos = _aggregate(positions)
        names = set(pos) | {order["instrument"]}
        pm, engine, prov = self._market(con, names, flat_vol, spot, generation)
        r = pm.what_if(pm.Portfolio(positions=pos, market=engine.market, engine=engine, specs=engine.specs),
                       {order["instrument"]: order["signed_quantity"]}, limits=lim)
        out = {
            "before": {"im": r.im_before, "mm": r.mm_before}, "after": {"im": r.im_after, "mm": r.mm_after},
            "marginal_im": r.marginal_im, "marginal_mm": r.marginal_mm,
            "driving_scenario": r.driving_after, "driving_scenario_before": r.driving_before,
            "order": order, "method": r.method, "market": _market_info(engine.market, prov),
            "accepted": r.accepted, "refusal": r.refusal, "breaches": r.breaches,
        }
        if collateral is not None:
            # the account view revalues at moved prices, so it needs a live engine, not the cached matrix
            after = dict(pos)
            after[order["instrument"]] = after.get(order["instrument"], 0.0) + order["signed_quantity"]
            live = pm.RiskMatrixMargin()
            out["account"] = {
                k: pm.account_view(pm.Portfolio(positions=p, market=engine.market, engine=live, specs=engine.specs),
                                   collateral, haircuts=haircuts)
                for k, p in (("before", pos), ("after", after))}
        return jsonable(out)

    def _what_if_standalone(self, con: duckdb.DuckDBPyConnection, positions: list[dict[str, Any]],
                            order: dict[str, Any], generation: int) -> dict[str, Any]:
        pset, prices = self._state(con, generation)
        self._check(pset, [p["instrument"] for p in positions] + [order["instrument"]])
        before = _standalone(pset, positions, prices)
        merged: dict[str, dict[str, Any]] = {}
        for p in positions:
            cur = merged.setdefault(p["instrument"], {"instrument": p["instrument"], "quantity": 0.0,
                                                      "price": p.get("price")})
            cur["quantity"] += float(p["quantity"])
        cur = merged.setdefault(order["instrument"], {"instrument": order["instrument"], "quantity": 0.0,
                                                      "price": order.get("price")})
        cur["quantity"] += float(order["signed_quantity"])
        after = _standalone(pset, [p for p in merged.values() if p["quantity"] != 0.0], prices)
        return jsonable({
            "before": {"im": before["im"], "mm": before["mm"]}, "after": {"im": after["im"], "mm": after["mm"]},
            "marginal_im": after["im"] - before["im"], "marginal_mm": after["mm"] - before["mm"],
            "driving_scenario": after["driving_scenario"], "driving_scenario_before": before["driving_scenario"],
            "order": order, "method": "standalone_sum", "version": pset.version,
        })


def _market_info(market: Any, prov: Mapping[str, Any]) -> dict[str, Any]:
    return {"valuation_time": market.valuation_time.isoformat(), "spot": dict(market.spot),
            "spot_source": prov.get("spot", {})}


class UnknownInstrument(ConfigError):
    """A request named an instrument with no published parameters (HTTP 422)."""


# ------------------------------------------------------------------ proposals


def _approval() -> Any:
    mod = optional_module("margincal.adjust.approval")
    if mod is None:  # pragma: no cover - every build ships it
        raise MarginUnavailable("this margincal build has no approval workflow")
    return mod


def list_proposals(con: duckdb.DuckDBPyConnection, status: str | None = None) -> list[dict[str, Any]]:
    """Proposals with their status (pending, approved, rejected, superseded, stale), newest first.

    Each also carries ``changes_normalized``: instrument, proposed IM/MM and the rates in force now."""
    rows = [p.as_dict() for p in _approval().list_proposals(con, status)][::-1]
    pset = latest_params_or_none(con)
    for r in rows:
        try:
            norm = proposal_changes(r.get("changes"))
        except (ConfigError, KeyError, TypeError, ValueError):
            norm = {}
        before = {c.get("instrument"): c for c in r.get("changes") or [] if isinstance(c, Mapping)}
        r["changes_normalized"] = [
            {"instrument": k, "im_rate": v["im_rate"], "mm_rate": v["mm_rate"],
             "im_before": before.get(k, {}).get("im_before"), "mm_before": before.get(k, {}).get("mm_before"),
             "im_current": pset.params[k].im_rate if pset and k in pset.params else None,
             "mm_current": pset.params[k].mm_rate if pset and k in pset.params else None}
            for k, v in norm.items()]
    return jsonable(rows)


def proposal_changes(changes: Any) -> dict[str, dict[str, float | None]]:
    """Normalise a proposal's ``changes`` to ``{instrument: {"im_rate": .., "mm_rate": ..}}``.

    Accepts the approval module's list of ``{"instrument", "im_after", "mm_after", ...}`` or a mapping
    ``instrument -> {im_rate, mm_rate}``."""
    if isinstance(changes, str):
        changes = json.loads(changes)
    items: list[tuple[str, Mapping[str, Any]]]
    if isinstance(changes, Mapping):
        items = [(str(k), v) for k, v in changes.items()]
    elif isinstance(changes, list):
        items = [(str(c["instrument"]), c) for c in changes]
    else:
        raise ConfigError(f"proposal changes must be a mapping or a list, not {type(changes).__name__}")
    out: dict[str, dict[str, float | None]] = {}
    for inst, c in items:
        im = c.get("im_after", c.get("im_rate"))
        mm = c.get("mm_after", c.get("mm_rate"))
        if im is None:
            raise ConfigError(f"proposal change for {inst} has no im_after")
        out[inst] = {"im_rate": float(im), "mm_rate": None if mm is None else float(mm)}
    return out


def decide(con: duckdb.DuckDBPyConnection, proposal_id: str, *, actor: str, role: str, decision: str,
           comment: str | None = None) -> dict[str, Any]:
    """Approve or reject a proposal as ``actor`` through :mod:`margincal.adjust.approval`.

    The approval module enforces the role and the four-eyes rule (the actor is never the author) and
    writes the decision, the new parameter-set version (approve) and the audit entries in one
    transaction. Unknown proposal -> :class:`ProposalNotFound`; already decided, superseded or stale
    -> :class:`ProposalConflict`; wrong role or own proposal -> :class:`AuthError`."""
    if decision not in ("approved", "rejected"):
        raise ConfigError(f"decision {decision!r} must be 'approved' or 'rejected'")
    if not con.execute("SELECT count(*) FROM proposals WHERE proposal_id = ?", [proposal_id]).fetchone()[0]:  # type: ignore[index]
        raise ProposalNotFound(f"proposal {proposal_id!r} does not exist")
    ap = _approval()
    fn = ap.approve if decision == "approved" else ap.reject
    try:
        d = fn(con, proposal_id, actor, comment, role=role)
    except AuthError:
        raise
    except ConfigError as exc:
        raise ProposalConflict(str(exc)) from None
    return jsonable({"proposal_id": d.proposal_id, "decision": d.decision, "decided_by": d.decided_by,
                     "decided_at": d.decided_at, "comment": d.comment, "published_version": d.published_version,
                     "audit_seq": d.audit_seq})


class ProposalNotFound(MargincalError):
    """HTTP 404."""


class ProposalConflict(MargincalError):
    """HTTP 409: already decided."""


# ------------------------------------------------------------------ signals and events


def _has_signal_rows(con: duckdb.DuckDBPyConnection) -> bool:
    """The monitor has written signals (the table exists from schema 0200_signals on, possibly empty)."""
    if not _has_table(con, "signals"):
        return False
    return scalar(con, "SELECT count(*) FROM (SELECT 1 FROM signals LIMIT 1)") > 0


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                            [name]).fetchone()[0])  # type: ignore[index]


def _evidence_signals(evidence: Any, source: str) -> list[dict[str, Any]]:
    """Signals recorded with an adjustment (``evidence["adjustment"]["signals"]``), tagged with their source."""
    if isinstance(evidence, str):
        try:
            evidence = json.loads(evidence)
        except ValueError:
            return []
    adj = evidence.get("adjustment") if isinstance(evidence, Mapping) else None
    sigs = adj.get("signals") if isinstance(adj, Mapping) else None
    return [{**s, "source": source} for s in sigs or [] if isinstance(s, Mapping)]


def stored_signals(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Signals the monitor recorded as evidence of its proposals and automatic adjustments."""
    out: list[dict[str, Any]] = []
    for pid, ev in con.execute("SELECT proposal_id, evidence FROM proposals WHERE evidence IS NOT NULL").fetchall():
        out += _evidence_signals(ev, f"proposal:{pid}")
    for v, prov in con.execute(
            "SELECT version, provenance FROM parameter_sets WHERE source = 'auto-adjust'").fetchall():
        out += _evidence_signals(prov, f"parameter_set:{v}")
    return out


def signals(con: duckdb.DuckDBPyConnection, limit: int = 100, instrument: str | None = None,
            severity: str | None = None) -> list[dict[str, Any]]:
    """Latest signals, newest first: the store's ``signals`` table when it has one, else the signals the
    monitor recorded as evidence of its proposals and automatic adjustments."""
    if not _has_signal_rows(con):
        rows = [r for r in stored_signals(con)
                if (instrument is None or r.get("instrument") == instrument)
                and (severity is None or r.get("severity") == severity)]
        rows.sort(key=lambda r: str(r.get("ts", "")), reverse=True)
        return jsonable(rows[:limit])
    cols = [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'signals' ORDER BY ordinal_position"
    ).fetchall()]
    where, args = [], []
    if instrument and "instrument" in cols:
        where.append("instrument = ?")
        args.append(instrument)
    if severity and "severity" in cols:
        where.append("severity = ?")
        args.append(severity)
    order = "ts" if "ts" in cols else "1"
    sql = "SELECT * FROM signals" + (" WHERE " + " AND ".join(where) if where else "") + \
        f" ORDER BY {order} DESC LIMIT ?"
    cur = con.execute(sql, [*args, limit])
    names = [c[0] for c in cur.description]
    out = []
    for r in cur.fetchall():
        d = dict(zip(names, r, strict=True))
        for k, v in d.items():
            if isinstance(v, str) and v[:1] in "{[":
                with contextlib.suppress(ValueError):
                    d[k] = json.loads(v)
        out.append(jsonable(d))
    return out


def _audit_signals(con: duckdb.DuckDBPyConnection, action: str, subject: str | None,
                   details: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Signals behind a ``propose`` or ``auto_adjust`` audit entry (from the proposal's evidence or the
    published version's provenance)."""
    if action == "propose" and subject and subject.startswith("proposal:"):
        row = con.execute("SELECT evidence FROM proposals WHERE proposal_id = ?", [subject[9:]]).fetchone()
        return _evidence_signals(row[0], subject) if row and row[0] else []
    if action == "auto_adjust" and isinstance(details.get("version"), int):
        row = con.execute("SELECT provenance FROM parameter_sets WHERE version = ?", [details["version"]]).fetchone()
        return _evidence_signals(row[0], f"parameter_set:{details['version']}") if row and row[0] else []
    return []


def events_after(con: duckdb.DuckDBPyConnection, after_seq: int, signal_after: str | None,
                 limit: int = 200) -> tuple[list[dict[str, Any]], int, str | None]:
    """New audit entries (seq > after_seq) and new signals (insertion seq > signal_after), oldest first.

    Returns (events, last audit seq, last signal seq) for the next poll."""
    ev: list[dict[str, Any]] = []
    has_signal_table = _has_signal_rows(con)
    rows = con.execute("SELECT seq, ts, actor, action, subject, details FROM audit_log WHERE seq > ? "
                       "ORDER BY seq LIMIT ?", [after_seq, limit]).fetchall()
    for seq, ts, actor, action, subject, details in rows:
        after_seq = int(seq)
        det = json.loads(details) if details else {}
        cursor = f"{after_seq}~{signal_after or ''}"
        ev.append({"type": "audit", "cursor": cursor, "seq": seq, "ts": pd.Timestamp(ts).isoformat() + "Z",
                   "actor": actor, "action": action, "subject": subject, "details": det})
        if not has_signal_table:
            ev += [{**sg, "type": "signal", "cursor": cursor} for sg in _audit_signals(con, action, subject, det)]
    if has_signal_table:
        cols = {r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'signals'").fetchall()}
        if "seq" in cols:
            # cursor on the insertion sequence (not market time: a replay of an earlier period is delivered too)
            after = int(signal_after) if signal_after else 0
            cur = con.execute("SELECT * FROM signals WHERE seq > ? ORDER BY seq LIMIT ?", [after, limit])
            names = [c[0] for c in cur.description]
            for r in cur.fetchall():
                d = jsonable(dict(zip(names, r, strict=True)))
                signal_after = str(d["seq"])
                d["type"] = "signal"
                d["cursor"] = f"{after_seq}~{signal_after}"
                ev.append(d)
    return jsonable(ev), after_seq, signal_after


def audit_tail(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT max(seq) FROM audit_log").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def signal_tail(con: duckdb.DuckDBPyConnection, skip: int = 0) -> str | None:
    """Timestamp after which the newest ``skip`` signals lie (None: from the first signal)."""
    if not _has_signal_rows(con):
        return None
    try:
        row = con.execute("SELECT seq FROM signals ORDER BY seq DESC LIMIT 1 OFFSET ?", [skip]).fetchone()
    except duckdb.Error:
        return None
    return None if not row or row[0] is None else str(int(row[0]))


# ------------------------------------------------------------------ results

RESULT_KINDS = ("backtest", "stress", "cascade")
PRODUCE = {
    "backtest": "margincal backtest --store STORE",
    "stress": "margincal stress --store STORE",
    "cascade": "margincal cascade --store STORE",
}
BULKY = ("series", "paths", "mc")  # per-bar / per-path arrays: left out unless asked for


def result(con: duckdb.DuckDBPyConnection, kind: str, full: bool = True) -> dict[str, Any] | None:
    """The latest stored result of ``kind``; without ``full`` the bulky arrays (:data:`BULKY`) are dropped."""
    r = latest_result(con, kind)
    if r is None:
        return None
    if not full and isinstance(r["payload"], dict):
        dropped = [k for k in BULKY if k in r["payload"]]
        r["payload"] = {k: v for k, v in r["payload"].items() if k not in BULKY}
        r["omitted"] = dropped
    r["created_at"] = pd.Timestamp(r["created_at"]).isoformat() + "Z"
    return jsonable({"kind": kind, **r})
