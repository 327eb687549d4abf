"""Many-account portfolio margin: one sparse-dense product, then a max (or ES) per account.

Positions are a ``scipy.sparse`` CSR matrix, accounts x instruments (signed
contracts). With the scenario matrix ``M`` (instruments x scenarios, USD P&L
per contract, see :mod:`.scenarios`)::

    account P&L  = positions @ M            (accounts x scenarios, one product)
    risk matrix  : charge = sum over underlying segments of max(0, max_j -P&L[:, j])
    historical   : charge = sum over settlement-currency segments of
                   offset * ES(joint) + (1 - offset) * sum_g ES(group g)
    IM = im_multiplier * (charge + contingencies),   MM = mm_fraction * IM

Base-asset collateral (Derive's ``basePosition``, instruments of kind
``"base"``) is a column of ``positions`` like any other: its scenario P&L is
linear in the spot shock, so it stays inside the one product; its
``basePercent`` contingency is a per-|contract| charge like the perpetuals'.
Negative base quantities are refused (:func:`as_positions`).

Derive's static MtM discount (when the scenario set carries one) is applied
to the product before the max: per (segment, expiry) group of options, only
the accounts holding that expiry get ``-(1 - d) max(0, B_g @ V_g)`` added to
their scenario P&L (``V_g``: the group's unweighted shocked values), a second
sparse product per group. Derive's oracle-confidence contingency is added to
IM after the multiplier and leaves MM unchanged:
``IM = im_multiplier * (charge + contingencies) + confidence``,
``MM = mm_fraction * im_multiplier * (charge + contingencies)``.

The driving scenario is the argmax of the loss (for the risk matrix: in the
segment with the largest charge; for ES: of the joint loss in the segment with the largest charge), reported with
its label. Ties go to the first scenario in matrix order.

:func:`portfolio_margin_blocks` is the chunked path: it takes an iterator of
account blocks (so a book larger than memory, or a Dask partitioning, can be
streamed) and calls ``progress(n_accounts_in_block)`` after each block.
:func:`portfolio_margin_reference` is the plain per-account Python loop kept
beside the fast path; tests check they agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from margincal.errors import ConfigError, DataError, NotFittedError
from margincal.margin.portfolio.instruments import InstrumentSpec, MarketState
from margincal.margin.portfolio.scenarios import (
    RiskMatrixConfig,
    ScenarioPnL,
    deribit_like,
    scenario_pnl_matrix,
)
from margincal.risk.measures import expected_shortfall

DEFAULT_BLOCK = 100_000


@dataclass(frozen=True)
class PortfolioMarginResult:
    """Per-account IM and MM with the driving scenario, and provenance.

    ``scenario_charge`` is the worst-scenario loss (risk matrix) or the
    offset-blended ES (historical); ``contingency`` the add-ons; both before
    ``im_multiplier``. ``confidence``: Derive's oracle-confidence contingency,
    added to IM only (``None`` when the scenario set charges none). Amounts in
    USD (quote currency).
    """

    accounts: np.ndarray
    im: np.ndarray
    mm: np.ndarray
    scenario_charge: np.ndarray
    contingency: np.ndarray
    driving_scenario: np.ndarray
    driving_label: np.ndarray
    method: str
    params: dict[str, Any]
    created_at: str = field(default_factory=lambda: pd.Timestamp.now(tz="UTC").isoformat())
    confidence: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.im.size)

    def to_frame(self) -> pd.DataFrame:
        cols: dict[str, Any] = {
            "account": self.accounts, "im": self.im, "mm": self.mm, "scenario_charge": self.scenario_charge,
            "contingency": self.contingency, "driving_scenario": self.driving_scenario,
            "driving_label": self.driving_label,
        }
        if self.confidence is not None:
            cols["confidence_contingency"] = self.confidence
        return pd.DataFrame(cols)

    def records(self, order: Sequence[int] | np.ndarray | None = None) -> list[dict[str, Any]]:
        idx = range(len(self)) if order is None else order
        out = []
        for i in idx:
            r = {"account": _py(self.accounts[i]), "im": float(self.im[i]), "mm": float(self.mm[i]),
                 "scenario_charge": float(self.scenario_charge[i]), "contingency": float(self.contingency[i]),
                 "driving_scenario": str(self.driving_label[i])}
            if self.confidence is not None:
                r["confidence_contingency"] = float(self.confidence[i])
            out.append(r)
        return out


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


# ---------------------------------------------------------------- inputs


def as_positions(positions: Any, pnl: ScenarioPnL) -> sparse.csr_matrix:
    """Accounts x instruments CSR (float64) from sparse, dense 2-D/1-D arrays or ``{instrument: qty}``."""
    n = len(pnl.instruments)
    if isinstance(positions, Mapping):
        P = sparse.csr_matrix(pnl.vector(positions)[None, :])
    elif sparse.issparse(positions):
        P = sparse.csr_matrix(positions, dtype=np.float64)
    else:
        a = np.asarray(positions, dtype=float)
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2:
            raise DataError(f"positions has {a.ndim} dimensions; give accounts x instruments")
        P = sparse.csr_matrix(a)
    if P.shape[1] != n:
        raise DataError(
            f"positions has {P.shape[1]} instrument columns, the scenario matrix {n}; columns must follow "
            "ScenarioPnL.instruments"
        )
    if P.nnz and not np.all(np.isfinite(P.data)):
        raise DataError("positions contain NaN or infinite quantities")
    P.sum_duplicates()
    mask = pnl.base_mask
    if mask is not None and P.nnz:
        neg = np.flatnonzero(mask[P.indices] & (P.data < 0))
        if neg.size:
            k = int(neg[0])
            row = int(np.searchsorted(P.indptr, k, side="right") - 1)
            raise DataError(f"base collateral {pnl.instruments[int(P.indices[k])]} is {P.data[k]:g} in position row "
                            f"{row} ({neg.size} such entries); a base-asset balance cannot be negative (Derive's "
                            "basePosition is a balance >= 0; a borrowed base asset is not modelled)")
    return P


# ---------------------------------------------------------------- kernels


def expected_shortfall_rows(losses: np.ndarray, level: float) -> np.ndarray:
    """Acerbi-Tasche ES of each row of ``losses`` (positive = loss), as :func:`risk.measures.expected_shortfall`."""
    n = losses.shape[1]
    tail = n * (1.0 - level)
    k = int(math.floor(tail + 1e-9))
    frac = max(tail - k, 0.0)
    if k >= n:
        return losses.mean(axis=1)
    part = np.partition(losses, n - k - 1, axis=1)
    top = part[:, n - k:].sum(axis=1) if k else np.zeros(losses.shape[0])
    return (top + frac * part[:, n - k - 1]) / tail


def _contingency(B: sparse.csr_matrix, pnl: ScenarioPnL) -> np.ndarray:
    out = np.zeros(B.shape[0])
    if pnl.option_groups.shape[1] and pnl.option_group_charge.any():
        net = (B @ pnl.option_groups).tocsr()
        net.data = np.minimum(net.data, 0.0)  # keep net short amounts (negative)
        out -= net @ pnl.option_group_charge
    if pnl.futures_charge.any():
        A = B.copy()
        A.data = np.abs(A.data)
        out += A @ pnl.futures_charge
    if pnl.delta_shock_max > 0 and pnl.delta_notional is not None:
        out += delta_liquidity_charge(np.abs(np.asarray((B @ _delta_matrix(pnl)).todense())), pnl)
    return out


def _delta_matrix(pnl: ScenarioPnL) -> sparse.csr_matrix:
    seg = np.asarray(pnl.delta_segments)
    n = seg.size
    return sparse.csr_matrix((pnl.delta_notional, (np.arange(n), seg)), shape=(n, int(seg.max()) + 1))


def delta_liquidity_charge(net_delta_usd: np.ndarray, pnl: ScenarioPnL) -> np.ndarray:
    """Deribit-style delta-liquidity shock: ``|D| * max_shock * min(1, |D| / threshold)`` per segment, summed.

    ``D`` is the net USD delta of a segment (underlying x settlement
    currency). Deribit publishes ``max_delta_shock`` (0.1) and
    ``delta_total_liq_shock_threshold`` (20,000,000) in ``private/pme/simulate``;
    the linear ramp of the shock up to the threshold is our assumption
    (docs/portfolio_margin.md).
    """
    d = np.abs(net_delta_usd)
    shock = pnl.delta_shock_max * np.minimum(1.0, d / pnl.delta_shock_threshold)
    return (d * shock).sum(axis=1)


NOISE = 1e-10


def _noise_floor(B: sparse.csr_matrix, pnl: ScenarioPnL) -> np.ndarray:
    """Losses below ``NOISE * sum_i |q_i| max_j |M_ij|`` are rounding (e.g. an exact hedge): treated as 0."""
    A = B.copy()
    A.data = np.abs(A.data)
    return NOISE * (A @ pnl.instrument_scale)


def confidence_contingency(B: sparse.csr_matrix, pnl: ScenarioPnL) -> np.ndarray | None:
    """Derive's oracle-confidence contingency per account (IM only): ``sum_i |q_i| * charge_i``, or ``None``."""
    if pnl.confidence_charge is None:
        return None
    A = B.copy()
    A.data = np.abs(A.data)
    return np.asarray(A @ pnl.confidence_charge, dtype=float)


def apply_static_discount(B: sparse.csr_matrix, G: np.ndarray, pnl: ScenarioPnL) -> np.ndarray:
    """Derive's static MtM discount on the accounts x scenarios P&L ``G`` (in place; module doc).

    Per (segment, expiry) group ``g`` only the accounts holding one of its
    options are touched: ``E = B[rows, g] @ V[g, segment]`` (shocked expiry
    value), ``G[rows, segment] -= w * (1 - d_g) * max(E, 0)``.
    """
    if pnl.discount_value is None or pnl.discount_group is None or pnl.discount_factor is None:
        return G
    C = B.tocsc()
    groups = pnl.discount_group
    for g, d in enumerate(pnl.discount_factor.tolist()):
        if d >= 1.0:
            continue
        _name, a, z = pnl.segments[int(pnl.discount_segment[g])]  # type: ignore[index]
        cols = np.flatnonzero(groups == g)
        Bg = C[:, cols]
        if Bg.nnz == 0:
            continue
        active = np.unique(Bg.indices)
        E = np.asarray(Bg.tocsr()[active] @ pnl.discount_value[cols, a:z])
        G[active, a:z] -= (1.0 - d) * np.maximum(E, 0.0) * pnl.weights[a:z]
    return G


def _risk_matrix_block(B: sparse.csr_matrix, pnl: ScenarioPnL) -> tuple[np.ndarray, np.ndarray]:
    G = B @ pnl.matrix  # accounts x scenarios P&L: the one sparse-dense product
    G = apply_static_discount(B, np.asarray(G), pnl)
    floor = _noise_floor(B, pnl)
    rows = np.arange(G.shape[0])
    total = np.zeros(G.shape[0])
    best = np.zeros(G.shape[0])
    drv = np.full(G.shape[0], -1, dtype=np.int64)
    basis = basis_losses(B, pnl)
    for k, (_name, a, z) in enumerate(pnl.segments):
        seg = G if (a == 0 and z == G.shape[1]) else G[:, a:z]
        j = seg.argmin(axis=1)
        worst = -seg[rows, j]
        if basis is not None:  # Derive: the basis contingency competes with the scenarios
            bk = basis[:, pnl.basis_segment == k].sum(axis=1)
            use = bk > worst
            worst = np.where(use, bk, worst)
            j = np.where(use, len(pnl.labels) + k - a, j)
        worst = np.where(worst > floor, worst, 0.0)
        total += worst
        upd = worst > best
        best = np.where(upd, worst, best)
        drv = np.where(upd, j + a, drv)
    return total, drv


def basis_losses(B: sparse.csr_matrix, pnl: ScenarioPnL) -> np.ndarray | None:
    """Accounts x basis groups: ``max(0, -min(P&L forward up, P&L forward down))``, scaled (scenarios module doc)."""
    if pnl.basis_up is None or pnl.basis_down is None:
        return None
    up = np.asarray((B @ pnl.basis_up).todense())
    down = np.asarray((B @ pnl.basis_down).todense())
    return np.maximum(0.0, -np.minimum(up, down))


def _historical_segment(B: sparse.csr_matrix, M: np.ndarray, pnl: ScenarioPnL) -> tuple[np.ndarray, np.ndarray]:
    """Offset-blended ES charge and joint loss (accounts x scenarios) of one segment's columns ``M``."""
    level = float(pnl.level)  # type: ignore[arg-type]
    groups = pnl.offset_groups
    n_groups = len(pnl.offset_group_names)
    if pnl.offset >= 1.0 or n_groups == 1:
        joint = -np.asarray(B @ M)
        return np.maximum(expected_shortfall_rows(joint, level), 0.0), joint
    joint = np.zeros((B.shape[0], M.shape[1]))
    sum_groups = np.zeros(B.shape[0])
    for g in range(n_groups):
        Mg = np.where((groups == g)[:, None], M, 0.0)
        Lg = -np.asarray(B @ Mg)
        sum_groups += np.maximum(expected_shortfall_rows(Lg, level), 0.0)
        joint += Lg
    es_joint = np.maximum(expected_shortfall_rows(joint, level), 0.0)
    return pnl.offset * es_joint + (1.0 - pnl.offset) * sum_groups, joint


def _historical_block(B: sparse.csr_matrix, pnl: ScenarioPnL) -> tuple[np.ndarray, np.ndarray]:
    """Sum over settlement-currency segments of the segment's charge; driver from the largest one."""
    floor = _noise_floor(B, pnl)
    rows = np.arange(B.shape[0])
    total = np.zeros(B.shape[0])
    best = np.zeros(B.shape[0])
    drv = np.full(B.shape[0], -1, dtype=np.int64)
    for _name, a, z in pnl.segments:
        M = pnl.matrix if (a == 0 and z == pnl.matrix.shape[1]) else pnl.matrix[:, a:z]
        charge, joint = _historical_segment(B, M, pnl)
        charge = np.where(charge > floor, charge, 0.0)
        j = joint.argmax(axis=1)
        total += charge
        upd = (charge > best) | ((drv < 0) & (joint[rows, j] > floor))
        best = np.where(charge > best, charge, best)
        drv = np.where(upd, j + a, drv)
    return total, drv


def _params(pnl: ScenarioPnL, include_contingency: bool) -> dict[str, Any]:
    return {**pnl.params, "method": pnl.method, "n_instruments": len(pnl.instruments),
            "n_scenarios": len(pnl.labels), "include_contingency": include_contingency,
            "im_multiplier": pnl.im_multiplier, "mm_fraction": pnl.mm_fraction, "scenario_set_created": pnl.created_at}


def _result(pnl: ScenarioPnL, accounts: np.ndarray, charge: np.ndarray, cont: np.ndarray, drv: np.ndarray,
            include_contingency: bool, conf: np.ndarray | None = None) -> PortfolioMarginResult:
    base = pnl.im_multiplier * (charge + cont)
    labels = np.asarray(pnl.driver_labels + ("",), dtype=object)
    return PortfolioMarginResult(
        accounts=accounts, im=base if conf is None else base + conf, mm=pnl.mm_fraction * base,
        scenario_charge=charge, contingency=cont, driving_scenario=drv, driving_label=labels[drv],
        method=pnl.method, params=_params(pnl, include_contingency), confidence=conf,
    )


# ---------------------------------------------------------------- public paths


def portfolio_margin_blocks(
    positions_iter: Iterable[Any],
    pnl_matrix: ScenarioPnL,
    *,
    include_contingency: bool = True,
    progress: Callable[[int], None] | None = None,
) -> PortfolioMarginResult:
    """Chunked path: ``positions_iter`` yields CSR blocks (accounts x instruments) or ``(account_ids, block)``.

    Blocks are processed one at a time (memory ~ block rows x scenarios);
    ``progress(n)`` is called with the number of accounts of each finished block.
    """
    pnl = pnl_matrix
    kernel = _risk_matrix_block if pnl.method == "risk_matrix" else _historical_block
    acc_parts, charge_parts, cont_parts, drv_parts = [], [], [], []
    conf_parts: list[np.ndarray] = []
    with_conf = include_contingency and pnl.method == "risk_matrix" and pnl.confidence_charge is not None
    start = 0
    for item in positions_iter:
        ids, block = item if isinstance(item, tuple) else (None, item)
        B = as_positions(block, pnl)
        charge, drv = kernel(B, pnl)
        cont = _contingency(B, pnl) if include_contingency and pnl.method == "risk_matrix" else np.zeros(B.shape[0])
        if with_conf:
            conf_parts.append(confidence_contingency(B, pnl))  # type: ignore[arg-type]
        if ids is None:
            ids = np.arange(start, start + B.shape[0])
        ids = np.asarray(ids)
        if ids.shape[0] != B.shape[0]:
            raise DataError(f"block has {B.shape[0]} rows but {ids.shape[0]} account ids")
        start += B.shape[0]
        acc_parts.append(ids)
        charge_parts.append(charge)
        cont_parts.append(cont)
        drv_parts.append(drv)
        if progress is not None:
            progress(B.shape[0])
    if not acc_parts:
        e = np.zeros(0)
        return _result(pnl, np.zeros(0, dtype=object), e, e, np.zeros(0, dtype=np.int64), include_contingency,
                       e if with_conf else None)
    return _result(pnl, np.concatenate(acc_parts), np.concatenate(charge_parts), np.concatenate(cont_parts),
                   np.concatenate(drv_parts), include_contingency,
                   np.concatenate(conf_parts) if with_conf else None)


def iter_blocks(P: sparse.csr_matrix, accounts: np.ndarray | None,
                block_size: int) -> Iterator[tuple[np.ndarray, sparse.csr_matrix]]:
    """Yield ``(account_ids, rows)`` blocks of ``block_size`` accounts from a CSR matrix."""
    n = P.shape[0]
    ids = np.arange(n) if accounts is None else np.asarray(accounts)
    if ids.shape[0] != n:
        raise DataError(f"accounts has {ids.shape[0]} entries for {n} position rows")
    step = max(int(block_size), 1)
    for a in range(0, n, step):
        yield ids[a:a + step], P[a:a + step]


def portfolio_margin(
    positions: Any,
    pnl: ScenarioPnL,
    *,
    accounts: Sequence[Any] | np.ndarray | None = None,
    include_contingency: bool = True,
    block_size: int = DEFAULT_BLOCK,
    progress: Callable[[int], None] | None = None,
) -> PortfolioMarginResult:
    """IM / MM of every account (rows of ``positions``) under the method of ``pnl`` (module doc)."""
    P = as_positions(positions, pnl)
    acc = None if accounts is None else np.asarray(accounts)
    return portfolio_margin_blocks(iter_blocks(P, acc, block_size), pnl,
                                   include_contingency=include_contingency, progress=progress)


def portfolio_margin_reference(
    positions: Any,
    pnl: ScenarioPnL,
    *,
    accounts: Sequence[Any] | np.ndarray | None = None,
    include_contingency: bool = True,
) -> PortfolioMarginResult:
    """The obviously-correct version: a Python loop per account, per scenario, per position.

    Contingencies are recomputed from the instrument specs (not from the
    precomputed charge vectors of the fast path).
    """
    P = as_positions(positions, pnl)
    M = pnl.matrix.tolist()
    S = len(pnl.labels)
    n = P.shape[0]
    charge = np.zeros(n)
    cont = np.zeros(n)
    with_conf = include_contingency and pnl.method == "risk_matrix" and pnl.confidence_charge is not None
    conf = np.zeros(n)
    drv = np.full(n, -1, dtype=np.int64)
    specs = pnl.specs
    for r in range(n):
        lo, hi = P.indptr[r], P.indptr[r + 1]
        items = list(zip(P.indices[lo:hi].tolist(), P.data[lo:hi].tolist(), strict=True))
        losses = []
        for j in range(S):
            pl = 0.0
            for i, q in items:
                pl += q * M[i][j]
            losses.append(-pl)
        if pnl.discount_value is not None:
            _reference_static_discount(items, pnl, losses)
        floor = NOISE * sum(abs(q) * max(abs(x) for x in M[i]) for i, q in items)
        if pnl.method == "risk_matrix":
            best, best_j = 0.0, -1
            for k, (_name, a, z) in enumerate(pnl.segments):
                worst, wj = 0.0, -1
                for j in range(a, z):
                    if losses[j] > worst:
                        worst, wj = losses[j], j
                if pnl.basis_up is not None:
                    b = _reference_basis(items, pnl, k)
                    if b > worst:
                        worst, wj = b, S + k
                if worst <= floor:
                    worst, wj = 0.0, -1
                charge[r] += worst
                if worst > best:
                    best, best_j = worst, wj
            drv[r] = best_j
            if include_contingency:
                cont[r] = _reference_contingency(items, specs, pnl)
            if with_conf:
                conf[r] = _reference_confidence(items, specs, pnl)
        else:
            level = float(pnl.level)  # type: ignore[arg-type]
            best, best_j = 0.0, -1
            for _name, a, z in pnl.segments:  # settlement currencies, margined separately and summed
                seg_losses = losses[a:z]
                es_joint = max(expected_shortfall(seg_losses, level), 0.0)
                by_group: dict[int, list[float]] = {}
                for g in range(len(pnl.offset_group_names)):
                    members = [(i, q) for i, q in items if pnl.offset_groups[i] == g]
                    by_group[g] = [-sum(q * M[i][j] for i, q in members) for j in range(a, z)]
                sum_groups = sum(max(expected_shortfall(v, level), 0.0) for v in by_group.values())
                c = pnl.offset * es_joint + (1.0 - pnl.offset) * sum_groups
                c = c if c > floor else 0.0
                charge[r] += c
                wj = max(range(a, z), key=lambda j: (losses[j], -j))
                if c > best or (best_j < 0 and losses[wj] > floor):
                    best_j = wj
                best = max(best, c)
            drv[r] = best_j
    acc = np.arange(n) if accounts is None else np.asarray(accounts)
    return _result(pnl, acc, charge, cont, drv, include_contingency, conf if with_conf else None)


def _reference_static_discount(items: list[tuple[int, float]], pnl: ScenarioPnL, losses: list[float]) -> None:
    """Static MtM discount, one expiry group, scenario and position at a time; ``d`` recomputed from the config."""
    cfg = pnl.params["config"]
    rate = max(float(pnl.params["rate"]), 0.0)
    at = pd.Timestamp(pnl.params["valuation_time"])
    V = pnl.discount_value.tolist()  # type: ignore[union-attr]
    by_group: dict[int, list[tuple[int, float]]] = {}
    for i, q in items:
        g = int(pnl.discount_group[i])  # type: ignore[index]
        if g >= 0:
            by_group.setdefault(g, []).append((i, q))
    for g, members in by_group.items():
        t = pnl.specs[members[0][0]].years_to_expiry(at)
        d = cfg["static_discount"] * math.exp(-t * (rate * cfg["static_rate_mult"] + cfg["static_rate_add"]))
        _name, a, z = pnl.segments[int(pnl.discount_segment[g])]  # type: ignore[index]
        for j in range(a, z):
            value = sum(q * V[i][j] for i, q in members)
            if value > 0:
                losses[j] += float(pnl.weights[j]) * (1.0 - d) * value


def _reference_confidence(items: list[tuple[int, float]], specs: Sequence[InstrumentSpec], pnl: ScenarioPnL) -> float:
    total = 0.0
    for i, q in items:
        c = float(pnl.confidence[i])  # type: ignore[index]
        if c < pnl.confidence_threshold:
            s = specs[i]
            notional = s.contract_size if (s.inverse and not s.is_option) else s.contract_size * pnl.spot[s.underlying]
            total += (1.0 - c) * pnl.confidence_factor * abs(q) * notional
    return total


def _reference_basis(items: list[tuple[int, float]], pnl: ScenarioPnL, segment: int) -> float:
    """Basis contingency of one segment, one position and one group at a time."""
    up = pnl.basis_up.tocsr()  # type: ignore[union-attr]
    down = pnl.basis_down.tocsr()  # type: ignore[union-attr]
    total = 0.0
    for g in range(up.shape[1]):
        if pnl.basis_segment[g] != segment:  # type: ignore[index]
            continue
        pu = sum(q * up[i, g] for i, q in items)
        pd_ = sum(q * down[i, g] for i, q in items)
        total += max(0.0, -min(pu, pd_))
    return total


def _reference_contingency(items: list[tuple[int, float]], specs: Sequence[InstrumentSpec], pnl: ScenarioPnL) -> float:
    net: dict[tuple[str, Any, float], float] = {}
    total = 0.0
    for i, q in items:
        s = specs[i]
        spot = pnl.spot[s.underlying]
        if s.is_option:
            key = (s.underlying, s.expiry, float(s.strike))  # type: ignore[arg-type]
            net[key] = net.get(key, 0.0) + q * s.contract_size
        else:
            notional = s.contract_size if s.inverse else s.contract_size * spot
            rate = pnl.base_contingency_rate if s.is_base else pnl.futures_contingency_rate
            total += rate * abs(q) * notional
    for (und, _e, _k), amount in net.items():
        if amount < 0:
            total += pnl.option_contingency_rate * (-amount) * pnl.spot[und]
    if pnl.delta_shock_max > 0 and pnl.delta_notional is not None:
        seg_delta: dict[int, float] = {}
        for i, q in items:
            g = int(pnl.delta_segments[i])  # type: ignore[index]
            seg_delta[g] = seg_delta.get(g, 0.0) + q * float(pnl.delta_notional[i])
        for d in seg_delta.values():
            total += abs(d) * pnl.delta_shock_max * min(1.0, abs(d) / pnl.delta_shock_threshold)
    return total


# ---------------------------------------------------------------- estimator


class RiskMatrixNotFittedError(NotFittedError, DataError):
    """:class:`~margincal.errors.NotFittedError` of :class:`RiskMatrixMargin`; also a ``DataError``, the class
    this mistake raised before the shared taxonomy, so existing ``except DataError`` keeps working."""


class RiskMatrixMargin:
    """Risk-matrix portfolio margin (estimator style).

    ``RiskMatrixMargin(config=deribit_like()).fit(specs, market)`` builds the
    scenario P&L matrix once (``pnl_``); ``margin(positions)`` then prices any
    number of accounts against it.
    """

    def __init__(self, *, config: RiskMatrixConfig | None = None) -> None:
        self.config = config

    def scenario_pnl(self, specs: Sequence[InstrumentSpec], market: MarketState) -> ScenarioPnL:
        return scenario_pnl_matrix(specs, market, self.config if self.config is not None else deribit_like())

    def fit(self, specs: Sequence[InstrumentSpec], market: MarketState) -> RiskMatrixMargin:
        if self.config is not None and not isinstance(self.config, RiskMatrixConfig):
            raise ConfigError(f"config is a {type(self.config).__name__}; give a RiskMatrixConfig "
                              "(e.g. deribit_like()) or None")
        self.pnl_ = self.scenario_pnl(specs, market)
        return self

    def margin(self, positions: Any, pnl: ScenarioPnL | None = None, **kwargs: Any) -> PortfolioMarginResult:
        if pnl is None:
            if not hasattr(self, "pnl_"):
                raise RiskMatrixNotFittedError("RiskMatrixMargin is not fitted; call fit(specs, market) or pass pnl=")
            pnl = self.pnl_
        return portfolio_margin(positions, pnl, **kwargs)


__all__ = [
    "DEFAULT_BLOCK",
    "apply_static_discount",
    "confidence_contingency",
    "delta_liquidity_charge",
    "PortfolioMarginResult",
    "RiskMatrixMargin",
    "as_positions",
    "expected_shortfall_rows",
    "iter_blocks",
    "portfolio_margin",
    "portfolio_margin_blocks",
    "portfolio_margin_reference",
]
