"""What the routes call: the service's caches and JSON shaping over the use-case layer.

The questions themselves are answered by :mod:`margincal.usecases` (shared with the CLI and the
report): the instrument catalogue, parameter versions and per-instrument history
(:mod:`~margincal.usecases.catalog`, cached here per instrument, timeframe and last bar); portfolio
margin and what-if (:func:`~margincal.usecases.portfolio_scenarios`, with the market and scenario
matrix cached here by :class:`MarginEngine`, or the published rates with ``method="standalone"``);
proposals (:mod:`~margincal.usecases.proposals`); signals and the event feed
(:mod:`~margincal.usecases.events`); stored results (:mod:`~margincal.usecases.results`). This
module adds what only a long-running HTTP service needs (caches, locks) and turns answers into
plain JSON values (:func:`jsonable`).
"""

from __future__ import annotations

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
from margincal.errors import ConfigError, MargincalError, StoreError
from margincal.margin import params as mparams
from margincal.usecases import catalog, events, proposals, results
from margincal.usecases.proposals import ProposalConflict, ProposalNotFound, proposal_changes
from margincal.usecases.results import BULKY, PRODUCE, RESULT_KINDS


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


latest_params_or_none = catalog.latest_params_or_none


def instruments(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every known instrument with its current rates (:func:`margincal.usecases.catalog.list_instruments`)."""
    return jsonable(catalog.list_instruments(con))


def instrument_detail(con: duckdb.DuckDBPyConnection, instrument: str) -> dict[str, Any]:
    """One instrument (:func:`margincal.usecases.catalog.instrument_detail`; KeyError when unknown)."""
    return jsonable(catalog.instrument_detail(con, instrument))


def pset_dict(p: mparams.ParameterSet) -> dict[str, Any]:
    return jsonable(json.loads(p.to_json()))


def versions(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Published versions (:func:`margincal.usecases.catalog.parameter_versions`)."""
    return jsonable(catalog.parameter_versions(con))


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
    """:func:`margincal.usecases.catalog.history_view` (price, forecast volatility and IM/MM rate paths),
    cached per instrument, timeframe, last bar and settings, plus the published rates by version."""
    pset = latest_params_or_none(con)
    tf = usecases.history.resolve_timeframe(con, instrument, timeframe, pset)
    settings = settings_of(pset)
    last = catalog.last_bar(con, instrument, tf)
    key = (instrument, tf, last[0], last[1], settings.level, settings.horizon_hours,
           settings.ewma_lambda, settings.mm_fraction, settings.buffer, max_points)
    out = dict(cache.get_or_compute(
        key, lambda: jsonable(catalog.history_view(con, instrument, tf, pset, settings, max_points))))
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
        return jsonable(usecases.standalone_what_if(pset, positions, order, prices))


def _market_info(market: Any, prov: Mapping[str, Any]) -> dict[str, Any]:
    return {"valuation_time": market.valuation_time.isoformat(), "spot": dict(market.spot),
            "spot_source": prov.get("spot", {})}


class UnknownInstrument(ConfigError):
    """A request named an instrument with no published parameters (HTTP 422)."""


# ------------------------------------------------------------------ proposals


def list_proposals(con: duckdb.DuckDBPyConnection, status: str | None = None) -> list[dict[str, Any]]:
    """Proposals, newest first, with ``changes_normalized`` (:func:`margincal.usecases.proposals.list_proposals`)."""
    return jsonable(proposals.list_proposals(con, status))


def decide(con: duckdb.DuckDBPyConnection, proposal_id: str, *, actor: str, role: str, decision: str,
           comment: str | None = None) -> dict[str, Any]:
    """Approve or reject (:func:`margincal.usecases.proposals.decide`: role and four-eyes checks, one
    transaction; :class:`ProposalNotFound` -> 404, :class:`ProposalConflict` -> 409)."""
    return jsonable(proposals.decide(con, proposal_id, actor=actor, role=role, decision=decision, comment=comment))


# ------------------------------------------------------------------ signals and events

stored_signals = events.stored_signals
audit_tail = events.audit_tail
signal_tail = events.signal_tail


def signals(con: duckdb.DuckDBPyConnection, limit: int = 100, instrument: str | None = None,
            severity: str | None = None) -> list[dict[str, Any]]:
    """Latest signals, newest first (:func:`margincal.usecases.events.signals`)."""
    return jsonable(events.signals(con, limit=limit, instrument=instrument, severity=severity))


def events_after(con: duckdb.DuckDBPyConnection, after_seq: int, signal_after: str | None,
                 limit: int = 200) -> tuple[list[dict[str, Any]], int, str | None]:
    """New audit entries and signals after the cursor (:func:`margincal.usecases.events.events_after`)."""
    ev, seq, sig = events.events_after(con, after_seq, signal_after, limit)
    return jsonable(ev), seq, sig


# ------------------------------------------------------------------ results


def result(con: duckdb.DuckDBPyConnection, kind: str, full: bool = True) -> dict[str, Any] | None:
    """The latest stored result of ``kind`` (:func:`margincal.usecases.results.latest`)."""
    r = results.latest(con, kind, full)
    return None if r is None else jsonable(r)


__all__ = ["BULKY", "PRODUCE", "RESULT_KINDS", "HistoryCache", "MarginEngine", "MarginUnavailable",
           "ProposalConflict", "ProposalNotFound", "UnknownInstrument", "audit_tail", "decide", "events_after",
           "instrument_detail", "instrument_history", "instruments", "jsonable", "list_proposals",
           "optional_module", "proposal_changes", "pset_dict", "result", "settings_of", "signal_tail", "signals",
           "stored_signals", "versions"]
