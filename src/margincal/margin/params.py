"""Published parameter sets: versioned, append-only, with provenance.

A :class:`ParameterSet` maps instrument -> :class:`InstrumentParams` (IM and
MM rates as fractions of notional, plus optional tiers and details). Publishing
writes the header, every row and an audit entry in ONE transaction, so a crash
never leaves a half-published version. Versions are never updated or deleted.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd

from margincal.data import audit
from margincal.data.store import dumps, transaction, utcnow
from margincal.errors import ConfigError, StoreError


@dataclass(frozen=True)
class InstrumentParams:
    """Margin parameters of one instrument (rates are fractions of notional)."""

    instrument: str
    im_rate: float
    mm_rate: float
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (0.0 < self.im_rate <= 1.0):
            raise ConfigError(f"{self.instrument}: im_rate is {self.im_rate}; it must be in (0, 1]")
        if not (0.0 < self.mm_rate <= self.im_rate):
            raise ConfigError(
                f"{self.instrument}: mm_rate is {self.mm_rate}; it must be in (0, im_rate={self.im_rate}]"
            )

    @property
    def max_leverage(self) -> float:
        return 1.0 / self.im_rate


@dataclass(frozen=True)
class ParameterSet:
    """A set of per-instrument margin parameters, as published (or about to be)."""

    params: Mapping[str, InstrumentParams]
    provenance: dict[str, Any] = field(default_factory=dict)
    version: int | None = None
    created_at: str | None = None
    created_by: str | None = None
    source: str | None = None
    run_id: str | None = None
    parent_version: int | None = None
    note: str | None = None

    def __getitem__(self, instrument: str) -> InstrumentParams:
        try:
            return self.params[instrument]
        except KeyError:
            raise ConfigError(
                f"instrument {instrument!r} is not in parameter set v{self.version}; "
                f"it has {', '.join(sorted(self.params))}"
            ) from None

    def instruments(self) -> list[str]:
        return sorted(self.params)

    def with_changes(self, changes: Mapping[str, InstrumentParams]) -> ParameterSet:
        new = dict(self.params)
        new.update(changes)
        return ParameterSet(params=new, provenance=dict(self.provenance), parent_version=self.version)

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"instrument": p.instrument, "im_rate": p.im_rate, "mm_rate": p.mm_rate,
             "max_leverage": round(p.max_leverage, 2), **{k: v for k, v in p.details.items()
                                                          if isinstance(v, (int, float, str))}}
            for p in (self.params[k] for k in self.instruments())
        ]

    def to_json(self) -> str:
        return json.dumps(
            {"version": self.version, "created_at": self.created_at, "created_by": self.created_by,
             "source": self.source, "run_id": self.run_id, "parent_version": self.parent_version,
             "note": self.note, "provenance": self.provenance,
             "instruments": [
                 {"instrument": p.instrument, "im_rate": p.im_rate, "mm_rate": p.mm_rate, "details": p.details}
                 for p in (self.params[k] for k in self.instruments())
             ]},
            indent=2, sort_keys=False, default=str,
        )

    def to_csv(self) -> str:
        """Exchange-style bracket CSV: one row per instrument and tier (tier 1 only when no tiers)."""
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["instrument", "bracket", "notional_floor", "notional_cap", "max_leverage",
                    "initial_margin_rate", "maintenance_margin_rate", "maintenance_amount"])
        for name in self.instruments():
            p = self.params[name]
            tiers = p.details.get("tiers") or [
                {"lower": 0.0, "upper": None, "max_leverage": p.max_leverage, "im_rate": p.im_rate,
                 "mm_rate": p.mm_rate, "maintenance_amount": 0.0}
            ]
            for i, t in enumerate(tiers, start=1):
                w.writerow([name, i, *(_csv_number(t.get(k, d)) for k, d in (
                    ("lower", 0.0), ("upper", None), ("max_leverage", None), ("im_rate", None), ("mm_rate", None),
                    ("maintenance_amount", 0.0)))])
        return buf.getvalue()


def _csv_number(x: Any) -> Any:
    """A number as the bracket CSV writes it: 12 significant digits, so arithmetic noise (15225.000000000002,
    a 1/x leverage) does not reach the file; the value itself is unchanged to 1e-12 relative."""
    if x is None or x == "":
        return ""
    if isinstance(x, float):
        return repr(float(f"{x:.12g}"))
    return x


def new_run_id() -> str:
    return pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def _same_row(a: InstrumentParams, b: InstrumentParams) -> bool:
    """True when two rows publish the same numbers and details (compared as stored, i.e. after JSON)."""
    return (float(a.im_rate) == float(b.im_rate) and float(a.mm_rate) == float(b.mm_rate)
            and dumps(a.details or {}) == dumps(b.details or {}))


def same_params(a: Mapping[str, InstrumentParams], b: Mapping[str, InstrumentParams]) -> bool:
    """True when two instrument -> params maps would publish identical rows."""
    return set(a) == set(b) and all(_same_row(a[k], b[k]) for k in a)


def scope_of(current: ParameterSet | None, pset: ParameterSet, *, remove: Sequence[str] = ()) -> dict[str, Any]:
    """How publishing ``pset`` (and removing ``remove``) on top of ``current`` changes it: the ``changed``,
    ``added``, ``carried``, ``removed`` and ``unchanged`` instruments (a pure function of the two sets)."""
    base = dict(current.params) if current is not None else {}
    unknown = [r for r in remove if r not in base]
    if unknown:
        raise ConfigError(f"cannot remove {', '.join(unknown)}: not in the live parameter set"
                          + (f" v{current.version}" if current is not None else ""))
    both = set(pset.params) & set(remove)
    if both:
        raise ConfigError(f"{', '.join(sorted(both))} is both updated and removed in one publication")
    return {
        "added": sorted(k for k in pset.params if k not in base),
        "changed": sorted(k for k in pset.params if k in base and not _same_row(base[k], pset.params[k])),
        "unchanged": sorted(k for k in pset.params if k in base and _same_row(base[k], pset.params[k])),
        "carried": sorted(k for k in base if k not in pset.params and k not in remove),
        "removed": sorted(remove),
    }


def scoped(con: duckdb.DuckDBPyConnection, pset: ParameterSet, *,
           remove: Sequence[str] = ()) -> tuple[ParameterSet | None, dict[str, Any]]:
    """What publishing ``pset`` would make the live set: the version in force with ``pset``'s rows
    replacing (or adding) theirs and every other instrument carried unchanged; ``remove`` drops rows.

    Returns ``(current, scope)``; ``scope`` lists ``changed``, ``added``, ``carried``, ``removed`` and
    ``unchanged`` instruments.
    """
    v = latest_version(con)
    current = load(con, v) if v is not None else None
    return current, scope_of(current, pset, remove=remove)


@dataclass(frozen=True)
class Publication:
    """The rows that publish one version: its header, its parameter rows and its audit entry.

    :func:`publication_rows` builds them; :func:`publish` writes one publication, the monitor's group writer
    writes many with one multi-row INSERT per table. Both write exactly these rows."""

    version: int
    parent_version: int | None
    params: dict[str, InstrumentParams]
    head: list[Any]
    rows: list[list[Any]]
    audit: tuple[str, str, str, dict[str, Any]]

    def as_set(self, pset: ParameterSet) -> ParameterSet:
        """The published set (the merged rows, with the version and header fields filled in)."""
        return ParameterSet(params=self.params, provenance=json.loads(self.head[7]), version=self.version,
                            created_by=self.head[2], source=self.head[3], run_id=self.head[4],
                            parent_version=self.parent_version, note=self.head[6])


def _check_publishable(pset: ParameterSet, source: str, remove: Sequence[str]) -> None:
    if not pset.params and not remove:
        raise ConfigError("cannot publish an empty parameter set")
    if remove and source != "approval":
        raise ConfigError("removing instruments from the live set needs an approved proposal "
                          "(`margincal proposals remove`), not a direct publication")
    if source == "calibration":
        from margincal.config import MAX_LEVERAGE

        wild = [p for p in pset.params.values() if p.max_leverage > MAX_LEVERAGE]
        if wild:
            p = wild[0]
            raise ConfigError(f"calibration gives {p.instrument} IM {100 * p.im_rate:.3g}% ({p.max_leverage:,.0f}x "
                              f"leverage), above the {MAX_LEVERAGE:g}x bound; check --horizon and --level "
                              "(nothing published)")


def publication_rows(current: ParameterSet | None, pset: ParameterSet, *, created_by: str, source: str,
                     run_id: str | None = None, note: str | None = None, remove: Sequence[str] = (),
                     now: Any = None) -> Publication | None:
    """The rows publishing ``pset`` on top of ``current`` (the version in force, None for an empty store):
    scoped (every other instrument carried unchanged, ``remove`` dropped), or None when the result equals
    ``current`` (an identical set is never republished). Writes nothing."""
    _check_publishable(pset, source, remove)
    run_id = run_id or pset.run_id or new_run_id()
    scope = scope_of(current, pset, remove=remove)
    merged = dict(current.params) if current is not None else {}
    for r in remove:
        merged.pop(r, None)
    merged.update(pset.params)
    if not merged:
        raise ConfigError("cannot publish an empty parameter set (it would remove every instrument)")
    if current is not None and same_params(merged, current.params):
        return None
    parent = current.version if current is not None else None
    version = int(parent or 0) + 1
    prov = dict(pset.provenance)
    if current is not None and (scope["carried"] or scope["removed"]):
        prov["scope"] = {**scope, "carried_from_version": parent}
    head = [version, now if now is not None else utcnow(), created_by, source, run_id, parent, note, dumps(prov)]
    rows = [[version, p.instrument, float(p.im_rate), float(p.mm_rate), dumps(p.details)] for p in merged.values()]
    entry = (created_by, "publish", f"parameter_set:{version}",
             {"source": source, "run_id": run_id, "parent_version": parent,
              "instruments": sorted(pset.params), "changed": scope["changed"], "added": scope["added"],
              "carried": scope["carried"], "removed": scope["removed"], "note": note})
    return Publication(version, parent, merged, head, rows, entry)


def write_publications(con: duckdb.DuckDBPyConnection, pubs: Sequence[Publication]) -> None:
    """Insert the header and parameter rows of ``pubs`` (one multi-row statement per table; the caller owns
    the transaction and appends the audit entries, in order, with the rest of its group)."""
    if not pubs:
        return
    con.execute("INSERT INTO parameter_sets VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(pubs)),
                [v for p in pubs for v in p.head])
    rows = [r for p in pubs for r in p.rows]
    # one multi-row statement: duckdb's executemany runs one statement per row (about 0.6 ms each)
    con.execute("INSERT INTO parameter_rows VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * len(rows)),
                [v for r in rows for v in r])


def publish(con: duckdb.DuckDBPyConnection, pset: ParameterSet, *, created_by: str, source: str,
            run_id: str | None = None, note: str | None = None, in_transaction: bool = False,
            remove: Sequence[str] = ()) -> int:
    """Publish ``pset`` as the next version (one transaction with its audit entry); returns the version.

    Publishing is **scoped**: the new version is the version in force with the rows of ``pset``
    replaced or added and every other instrument carried unchanged (a calibration of one instrument
    never drops the others). Removing an instrument is its own explicit action (``remove``), which only
    the approval workflow passes (:func:`margincal.adjust.approval.create_removal_proposal`). When the
    result equals the version in force, nothing is written and that version is returned (an identical
    set is never republished).

    This is the low-level write. Changes to the live set go through the proposal/decision path of
    :mod:`margincal.adjust.approval` (:func:`~margincal.adjust.approval.submit` for calibrations and the
    monitor, :func:`~margincal.adjust.approval.approve` for an officer), which calls it inside the deciding
    transaction.

    With ``in_transaction=True`` the caller owns the transaction (used by the
    approval workflow to publish and record the decision atomically).
    """
    _check_publishable(pset, source, remove)

    def _write() -> int:
        v = latest_version(con)
        current = load(con, v) if v is not None else None
        pub = publication_rows(current, pset, created_by=created_by, source=source, run_id=run_id, note=note,
                               remove=remove)
        if pub is None:
            assert current is not None and current.version is not None
            return int(current.version)
        write_publications(con, [pub])
        audit.append(con, *pub.audit)
        return pub.version

    if in_transaction:
        return _write()
    with transaction(con):
        return _write()


def latest_version(con: duckdb.DuckDBPyConnection) -> int | None:
    row = con.execute("SELECT max(version) FROM parameter_sets").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def load(con: duckdb.DuckDBPyConnection, version: int | None = None) -> ParameterSet:
    """Load a published version (latest when ``version`` is None)."""
    if version is None:
        version = latest_version(con)
        if version is None:
            raise StoreError("no parameter set has been published yet; run `margincal run` or `margincal calibrate`")
    head = con.execute(
        "SELECT version, created_at, created_by, source, run_id, parent_version, note, provenance "
        "FROM parameter_sets WHERE version = ?", [version]).fetchone()
    if head is None:
        latest = latest_version(con)
        raise StoreError(f"parameter set version {version} does not exist (latest is {latest})")
    rows = con.execute(
        "SELECT instrument, im_rate, mm_rate, details FROM parameter_rows WHERE version = ? ORDER BY instrument",
        [version]).fetchall()
    params = {r[0]: InstrumentParams(r[0], float(r[1]), float(r[2]), json.loads(r[3]) if r[3] else {})
              for r in rows}
    return ParameterSet(
        params=params, provenance=json.loads(head[7]) if head[7] else {}, version=int(head[0]),
        created_at=pd.Timestamp(head[1]).isoformat() + "Z", created_by=head[2], source=head[3],
        run_id=head[4], parent_version=head[5], note=head[6],
    )


def history(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute(
        "SELECT version, created_at, created_by, source, run_id, parent_version, note "
        "FROM parameter_sets ORDER BY version").df()


def diff(a: ParameterSet, b: ParameterSet) -> list[dict[str, Any]]:
    """Per-instrument change from ``a`` to ``b`` (added, removed, changed rates)."""
    out = []
    for name in sorted(set(a.params) | set(b.params)):
        pa, pb = a.params.get(name), b.params.get(name)
        if pa is None or pb is None:
            out.append({"instrument": name, "change": "added" if pa is None else "removed",
                        "im_before": pa.im_rate if pa else None, "im_after": pb.im_rate if pb else None,
                        "mm_before": pa.mm_rate if pa else None, "mm_after": pb.mm_rate if pb else None})
            continue
        if (pa.im_rate, pa.mm_rate, pa.details.get("tiers")) != (pb.im_rate, pb.mm_rate, pb.details.get("tiers")):
            out.append({"instrument": name, "change": "changed", "im_before": pa.im_rate, "im_after": pb.im_rate,
                        "mm_before": pa.mm_rate, "mm_after": pb.mm_rate,
                        "im_change_pct": 100.0 * (pb.im_rate / pa.im_rate - 1.0)})
    return out
