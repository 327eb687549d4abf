"""Rolling out-of-sample margin backtest: any model x policy x instrument x level x horizon.

Timing
------
Bars ``t = 0 .. n-1`` carry one-bar log returns ``r_t`` (labelled by the bar's
start). The margin for the horizon that starts at bar ``t`` is computed from
``r_0 .. r_{t-1}`` only, and compared with the realised horizon log return
``R_t = r_t + ... + r_{t+h-1}`` (``h`` = horizon in bars, a whole number).

Losses and breaches
-------------------
One margin rate serves both sides. A long loses ``1 - exp(R)``, a short
``exp(R) - 1`` (simple returns on one unit of notional); the *two-sided loss*
is the larger of the two, ``|exp(R) - 1|``. Day ``t`` is a **breach** when the
two-sided loss exceeds the margin, i.e. the losing side's loss is above it
(``long_breaches`` / ``short_breaches`` say which side).

Coverage ``level`` (e.g. 0.99) is the probability that the margin covers the
move on **either** side, so the expected breach rate is ``1 - level``. Each
model is therefore asked for its per-side VaR at ``side_level = (1 + level)/2``
(0.995) and the margin is ``max(VaR_long, VaR_short)``: under the model
``P(breach) <= P(long loss > VaR_long) + P(short loss > VaR_short) = 1 - level``,
with equality up to the asymmetry of the forecast. (A margin set at a per-side
99% covers only about 98% of days on either side.)

Overlapping horizons
--------------------
When ``h > 1`` the windows of consecutive days overlap, so breaches are
serially dependent by construction. Breach counts and rates use **all**
overlapping windows (every day's margin is judged); the Kupiec, Christoffersen
and traffic-light tests use the **non-overlapping subsample** of every ``h``-th
evaluation day starting at the first (phase 0), where the binomial and Markov
assumptions of the tests can hold. This loses power (n/h observations) but
keeps the p-values honest; a Newey-West style adjustment of the overlapping
count would keep more data at the price of an asymptotic approximation that is
poor for rare events.

Evaluation sample
-----------------
Per instrument, every model and policy is evaluated on the same bars: from
``min_history`` bars of data on, where every model has a margin, up to the last
bar whose horizon is complete. Pooled rows (:meth:`BacktestResult.summary`)
add counts over instruments and assume breaches independent across
instruments (they are not: crypto crashes are joint), which overstates the
tests' power; per-instrument rows are the primary evidence.
"""

from __future__ import annotations

import math
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from margincal.backtest.crash import STRESS_EVENTS, StressEvent, crash_positions
from margincal.backtest.data import InstrumentData
from margincal.backtest.models import DEFAULT_MODELS, PathModel, make_path_model
from margincal.backtest.policies import Policy, PolicyContext, default_policies, make_policy
from margincal.backtest.procyclicality import ProcyclicalityMetrics, procyclicality, trailing_rms
from margincal.backtest.stats import (
    ChristoffersenResult,
    KupiecResult,
    TrafficLightResult,
    christoffersen,
    christoffersen_from_counts,
    kupiec_pof,
    traffic_light,
)
from margincal.errors import ConfigError, DataError, MargincalWarning


class BacktestWarning(MargincalWarning):
    """An instrument was skipped (too little data for the requested history or horizon)."""


def side_level(level: float) -> float:
    """Per-side VaR level that gives two-sided coverage ``level``: ``(1 + level) / 2``."""
    return (1.0 + float(level)) / 2.0


def horizon_log_returns(returns: np.ndarray, h: int) -> np.ndarray:
    """``R[t] = r[t] + ... + r[t+h-1]`` (cumulative sums); NaN where the horizon runs past the data."""
    r = np.asarray(returns, dtype=float)
    n = r.size
    out = np.full(n, np.nan)
    if h < 1:
        raise ConfigError(f"horizon is {h} bars; it must be >= 1")
    if n >= h:
        c = np.concatenate([[0.0], np.cumsum(r)])
        out[: n - h + 1] = c[h:] - c[: n - h + 1]
    return out


def side_losses(horizon_returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Long loss ``1 - exp(R)`` and short loss ``exp(R) - 1`` (positive = loss)."""
    R = np.asarray(horizon_returns, dtype=float)
    return -np.expm1(R), np.expm1(R)


@dataclass(frozen=True)
class PathStats:
    """Coverage, tests and procyclicality of one margin path (see module doc)."""

    n_obs: int
    n_breaches: int
    breach_rate: float
    expected_rate: float
    n_long_breaches: int
    n_short_breaches: int
    n_test: int
    kupiec: KupiecResult
    christoffersen: ChristoffersenResult
    traffic_light: TrafficLightResult
    procyclicality: ProcyclicalityMetrics
    crash_days: int
    crash_covered: int

    @property
    def crash_coverage(self) -> float:
        return self.crash_covered / self.crash_days if self.crash_days else float("nan")


def evaluate_path(margin: np.ndarray, loss_long: np.ndarray, loss_short: np.ndarray, *, level: float,
                  horizon_bars: int = 1, realized_vol: np.ndarray | None = None, bars_per_day: float = 1.0,
                  crash_pos: Sequence[int] = ()) -> PathStats:
    """Statistics of one margin path on its evaluation bars (consecutive, all arrays aligned)."""
    m = np.asarray(margin, dtype=float)
    ll = np.asarray(loss_long, dtype=float)
    ls = np.asarray(loss_short, dtype=float)
    if not (m.shape == ll.shape == ls.shape):
        raise DataError("margin, loss_long and loss_short must have the same length")
    for name, a in (("margin", m), ("loss_long", ll), ("loss_short", ls)):
        if not np.all(np.isfinite(a)):
            i = int(np.flatnonzero(~np.isfinite(a))[0])
            raise DataError(f"{name}[{i}] is {a[i]}; evaluation bars need finite values")
    loss = np.maximum(ll, ls)
    breach = loss > m
    n = int(m.size)
    x = int(breach.sum())
    sub = breach[:: max(1, int(horizon_bars))]
    rv = np.full(n, np.nan) if realized_vol is None else np.asarray(realized_vol, dtype=float)
    cp = np.asarray(list(crash_pos), dtype=int)
    return PathStats(
        n_obs=n,
        n_breaches=x,
        breach_rate=x / n if n else 0.0,
        expected_rate=1.0 - level,
        n_long_breaches=int((ll > m).sum()),
        n_short_breaches=int((ls > m).sum()),
        n_test=int(sub.size),
        kupiec=kupiec_pof(int(sub.size), int(sub.sum()), level),
        christoffersen=christoffersen(sub, level),
        traffic_light=traffic_light(int(sub.size), int(sub.sum()), level),
        procyclicality=procyclicality(m, loss, rv, bars_per_day=bars_per_day),
        crash_days=int(cp.size),
        crash_covered=int((~breach[cp]).sum()) if cp.size else 0,
    )


@dataclass(frozen=True, eq=False)
class PathResult:
    """One margin path (instrument x model x policy x level x horizon) on its evaluation bars."""

    instrument: str
    model: str
    policy: str
    level: float
    horizon_hours: float
    horizon_bars: int
    bar_hours: float
    index: pd.DatetimeIndex
    margin: np.ndarray
    loss_long: np.ndarray
    loss_short: np.ndarray
    stats: PathStats
    crash: tuple[tuple[int, str, str], ...] = ()

    @property
    def loss(self) -> np.ndarray:
        """Two-sided realised loss ``max(long, short)``."""
        return np.maximum(self.loss_long, self.loss_short)

    @property
    def breach(self) -> np.ndarray:
        return self.loss > self.margin

    def row(self) -> dict[str, Any]:
        s = self.stats
        p = s.procyclicality
        c = s.christoffersen
        return {
            "instrument": self.instrument,
            "model": self.model,
            "policy": self.policy,
            "level": self.level,
            "horizon_hours": self.horizon_hours,
            "start": str(self.index[0].date()) if len(self.index) else "",
            "end": str(self.index[-1].date()) if len(self.index) else "",
            "n_obs": s.n_obs,
            "breaches": s.n_breaches,
            "breach_rate": s.breach_rate,
            "expected_rate": s.expected_rate,
            "long_breaches": s.n_long_breaches,
            "short_breaches": s.n_short_breaches,
            "n_test": s.n_test,
            "test_breaches": s.kupiec.n_breaches,
            "kupiec_lr": s.kupiec.statistic,
            "kupiec_p": s.kupiec.pvalue,
            "ind_lr": c.independence.statistic,
            "ind_p": c.independence.pvalue,
            "cc_lr": c.conditional_coverage.statistic,
            "christoffersen_p": c.conditional_coverage.pvalue,
            "zone": s.traffic_light.zone,
            "cum_prob": s.traffic_light.cumulative_probability,
            "avg_margin": p.avg_margin,
            "min_margin": p.min_margin,
            "max_margin": p.max_margin,
            "peak_to_trough": p.peak_to_trough,
            "max_1d_increase": p.max_1d_increase,
            "max_30d_increase": p.max_30d_increase,
            "corr_vol": p.corr_vol,
            "elasticity": p.elasticity,
            "avg_excess": p.avg_excess,
            "avg_shortfall": p.avg_shortfall,
            "crash_days": s.crash_days,
            "crash_covered": s.crash_covered,
            "crash_coverage": s.crash_coverage,
        }


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """All paths of a backtest run with provenance; tables via :meth:`rows`, :meth:`summary`, :meth:`crash_rows`."""

    params: dict[str, Any]
    paths: tuple[PathResult, ...]
    instruments: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def run_id(self) -> str:
        return str(self.params.get("run_id", ""))

    def rows(self) -> list[dict[str, Any]]:
        """One row per instrument x model x policy x level x horizon."""
        return [p.row() for p in self.paths]

    def summary(self) -> list[dict[str, Any]]:
        """One row per model x policy x level x horizon, pooled over instruments (see module doc).

        ``passed`` counts the instruments whose own Kupiec and Christoffersen (conditional coverage)
        p-values are both >= 0.05; ``zones`` counts them per traffic-light zone (green/yellow/red).
        """
        groups: dict[tuple[str, str, float, float], list[PathResult]] = {}
        for p in self.paths:
            groups.setdefault((p.model, p.policy, p.level, p.horizon_hours), []).append(p)
        out = []
        for (model, policy, level, hh), ps in groups.items():
            n = sum(p.stats.n_obs for p in ps)
            x = sum(p.stats.n_breaches for p in ps)
            nt = sum(p.stats.n_test for p in ps)
            xt = sum(p.stats.kupiec.n_breaches for p in ps)
            cs = [p.stats.christoffersen for p in ps]
            cc = christoffersen_from_counts(sum(c.n00 for c in cs), sum(c.n01 for c in cs),
                                            sum(c.n10 for c in cs), sum(c.n11 for c in cs), nt, xt, level)
            zones = [p.stats.traffic_light.zone for p in ps]
            cd = sum(p.stats.crash_days for p in ps)
            cv = sum(p.stats.crash_covered for p in ps)
            pro = [p.stats.procyclicality for p in ps]
            passed = sum(1 for p in ps if p.stats.kupiec.pvalue >= 0.05
                         and p.stats.christoffersen.conditional_coverage.pvalue >= 0.05)
            out.append({
                "model": model,
                "policy": policy,
                "level": level,
                "horizon_hours": hh,
                "instruments": len(ps),
                "n_obs": n,
                "breaches": x,
                "breach_rate": x / n if n else 0.0,
                "expected_rate": 1.0 - level,
                "kupiec_p": kupiec_pof(nt, xt, level).pvalue,
                "christoffersen_p": cc.conditional_coverage.pvalue,
                "zones": f"{zones.count('green')}/{zones.count('yellow')}/{zones.count('red')}",
                "passed": passed,
                "avg_margin": float(np.mean([q.avg_margin for q in pro])),
                "peak_to_trough": float(np.median([q.peak_to_trough for q in pro])),
                "max_30d_increase": float(np.median([q.max_30d_increase for q in pro])),
                "elasticity": float(np.median([q.elasticity for q in pro])),
                "avg_excess": float(np.mean([q.avg_excess for q in pro])),
                "crash_days": cd,
                "crash_coverage": cv / cd if cd else float("nan"),
            })
        return out

    def crash_rows(self) -> list[dict[str, Any]]:
        """Long-format crash table: one row per crash day x path (margin in force vs realised move)."""
        out = []
        for p in self.paths:
            loss = p.loss
            for pos, day, label in p.crash:
                move = p.loss_short[pos]  # exp(R) - 1, the simple return of the horizon
                out.append({
                    "instrument": p.instrument,
                    "level": p.level,
                    "horizon_hours": p.horizon_hours,
                    "day": day,
                    "event": label,
                    "start": p.index[pos].isoformat(),
                    "move": float(move),
                    "loss": float(loss[pos]),
                    "losing_side": "long" if move < 0 else "short",
                    "model": p.model,
                    "policy": p.policy,
                    "margin": float(p.margin[pos]),
                    "covered": bool(loss[pos] <= p.margin[pos]),
                })
        return out

    def to_payload(self, *, include_series: bool = False, series_policies: Sequence[str] = ("raw", "static"),
                   digits: int = 6) -> dict[str, Any]:
        """JSON-ready dict: params, instruments, summary, rows, crash table; with ``include_series`` also
        the margin and loss series of the paths under ``series_policies`` (for :func:`backtest_figures`)."""
        payload: dict[str, Any] = {
            "params": self.params,
            "instruments": list(self.instruments),
            "summary": self.summary(),
            "rows": self.rows(),
            "crash": self.crash_rows(),
        }
        if include_series:
            series = []
            for p in self.paths:
                if p.policy not in series_policies:
                    continue
                series.append({
                    "instrument": p.instrument, "model": p.model, "policy": p.policy, "level": p.level,
                    "horizon_hours": p.horizon_hours,
                    "index": [t.isoformat() for t in p.index],
                    "margin": np.round(p.margin, digits).tolist(),
                    "loss_long": np.round(p.loss_long, digits).tolist(),
                    "loss_short": np.round(p.loss_short, digits).tolist(),
                })
            payload["series"] = series
        return _finite(payload)


def _finite(obj: Any) -> Any:
    """Replace NaN/inf floats by None (JSON has neither)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _as_instruments(data: object) -> list[InstrumentData]:
    if isinstance(data, InstrumentData):
        return [data]
    if isinstance(data, pd.Series):
        data = {str(data.name or "instrument"): data}
    if isinstance(data, Mapping):
        out = []
        for name, s in data.items():
            if isinstance(s, InstrumentData):
                out.append(s)
                continue
            if not isinstance(s, pd.Series) or not isinstance(s.index, pd.DatetimeIndex):
                raise DataError(f"{name}: returns must be a pandas Series with a DatetimeIndex")
            from margincal.vol.horizon import infer_bar_hours

            out.append(InstrumentData(str(name), s, infer_bar_hours(s.index), "memory"))
        return out
    if isinstance(data, Iterable):
        items = list(data)
        if all(isinstance(d, InstrumentData) for d in items):
            return items
    raise DataError("data must be InstrumentData, a list of them, or a mapping name -> returns Series")


ProgressFn = Callable[[int, int, str], None]


def run_backtest(
    data: object,
    *,
    models: Sequence[str | PathModel] = DEFAULT_MODELS,
    policies: Sequence[str | Policy] | None = None,
    levels: Sequence[float] = (0.99,),
    horizons: Sequence[float] = (24.0,),
    min_history: int = 250,
    worst_n: int = 5,
    events: Sequence[StressEvent] = STRESS_EVENTS,
    vol_window_days: float = 30.0,
    progress: ProgressFn | None = None,
    run_id: str | None = None,
) -> BacktestResult:
    """Run the rolling out-of-sample backtest (see module doc).

    ``data``: ``{name: log-return Series}`` or :class:`InstrumentData` items
    (see :func:`margincal.backtest.data.load_returns`). ``models``: names for
    :func:`~margincal.backtest.models.make_path_model` or instances.
    ``policies``: names for :func:`~margincal.backtest.policies.make_policy`
    (default :func:`~margincal.backtest.policies.default_policies`).
    ``horizons`` in hours; each must be a whole number of the data's bars.
    ``progress(done, total, label)`` is called after each unit of work.
    """
    from margincal import __version__
    from margincal.vol.horizon import horizon_to_bars

    insts = _as_instruments(data)
    if not insts:
        raise DataError("no instruments to backtest")
    mods = [make_path_model(m) for m in models]
    labels = [m.label for m in mods]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"models {labels} contain duplicates")
    pols = [make_policy(p) for p in (default_policies() if policies is None else policies)]
    if len({p.name for p in pols}) != len(pols):
        raise ConfigError(f"policies {[p.name for p in pols]} contain duplicates")
    for lv in levels:
        if not 0.5 < float(lv) < 1.0:
            raise ConfigError(f"level is {lv}; it must be in (0.5, 1), e.g. 0.99")
    if int(min_history) != min_history or min_history < 1:
        raise ConfigError(f"min_history is {min_history}; it must be a whole number of bars >= 1")
    total = len(insts) * len(horizons) * len(levels) * (len(mods) + 1)
    done = 0
    paths: list[PathResult] = []
    inst_meta: list[dict[str, Any]] = []
    for inst in insts:
        r = inst.returns.to_numpy(float)
        idx = pd.DatetimeIndex(inst.returns.index)
        n = r.size
        bpd = 24.0 / inst.bar_hours
        rv = trailing_rms(r, max(1, int(round(vol_window_days * bpd))))
        inst_meta.append({"instrument": inst.instrument, "source": inst.source, "bar_hours": inst.bar_hours,
                          "first": inst.window[0], "last": inst.window[1], "n_returns": n})
        for hh in horizons:
            h = horizon_to_bars(float(hh), inst.bar_hours)
            R = horizon_log_returns(r, h)
            ll, ls = side_losses(R)
            loss = np.maximum(ll, ls)
            for lv in levels:
                lv = float(lv)
                q = side_level(lv)
                raw: dict[str, np.ndarray] = {}
                for m in mods:
                    extra = ({"bars": inst.bars, "instrument": inst.instrument} if getattr(m, "needs_bars", False)
                             else {})
                    vl, vs = m.var_paths(r, side_level=q, horizon_bars=float(h), bar_hours=inst.bar_hours,
                                         index=idx, **extra)
                    raw[m.label] = np.maximum(vl, vs)
                    done += 1
                    if progress:
                        progress(done, total, f"{inst.instrument} {m.label} L={lv:g} {hh:g}h")
                ok = np.arange(n) >= min_history
                ok &= np.isfinite(loss)
                for a in raw.values():
                    ok &= np.isfinite(a)
                pos = np.flatnonzero(ok)
                if pos.size == 0:
                    warnings.warn(f"{inst.instrument}: no evaluation bars at {hh:g}h (n={n}, min_history="
                                  f"{min_history}); skipped", BacktestWarning, stacklevel=2)
                    done += 1
                    continue
                if pos.size != pos[-1] - pos[0] + 1:
                    raise DataError(f"{inst.instrument}: evaluation bars are not contiguous; a model returned "
                                    "NaN inside the sample")
                sl = slice(int(pos[0]), int(pos[-1]) + 1)
                eidx = idx[sl]
                crash = tuple(crash_positions(eidx, loss[sl], events=tuple(events), worst_n=worst_n))
                cpos = [c[0] for c in crash]
                ctx = PolicyContext(instrument=inst.instrument, returns=inst.returns, bar_hours=inst.bar_hours,
                                    horizon_bars=h, level=lv, side_level=q, loss=loss, eval_mask=ok)

                applied: list[tuple[str, str, np.ndarray]] = []
                for pol in pols:
                    if pol.model_free:
                        applied.append(("-", pol.name, pol.apply(None, ctx).to_numpy(float)))
                        continue
                    for lab in labels:
                        out = pol.apply(pd.Series(raw[lab], index=idx, name=lab), ctx)
                        applied.append((lab, pol.name, out.to_numpy(float)))
                for model, policy, arr in applied:
                    mm = np.asarray(arr, dtype=float)[sl]
                    if not np.all(np.isfinite(mm)):
                        raise DataError(f"{inst.instrument}: policy {policy} on {model} gave a non-finite "
                                        "margin on an evaluation bar")
                    st = evaluate_path(mm, ll[sl], ls[sl], level=lv, horizon_bars=h, realized_vol=rv[sl],
                                       bars_per_day=bpd, crash_pos=cpos)
                    paths.append(PathResult(inst.instrument, model, policy, lv, float(hh), h, inst.bar_hours,
                                            eidx, mm, ll[sl], ls[sl], st, crash))
                done += 1
                if progress:
                    progress(done, total, f"{inst.instrument} policies L={lv:g} {hh:g}h")
    params = {
        "run_id": run_id or uuid.uuid4().hex[:12],
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "margincal_version": __version__,
        "models": {m.label: {"class": type(m).__name__, **_jsonable_params(m.get_params())} for m in mods},
        "policies": {p.name: {"class": type(p).__name__, **_jsonable_params(p.get_params())} for p in pols},
        "levels": [float(x) for x in levels],
        "side_levels": [side_level(x) for x in levels],
        "horizons_hours": [float(x) for x in horizons],
        "min_history_bars": int(min_history),
        "worst_n": int(worst_n),
        "stress_events": [asdict(e) for e in events],
        "vol_window_days": float(vol_window_days),
        "method": ("margin for bar t from returns before t; breach when max(1-exp(R), exp(R)-1) > margin; "
                   "margin = max per-side VaR at (1+level)/2; tests on non-overlapping subsample"),
    }
    return BacktestResult(params=params, paths=tuple(paths), instruments=tuple(inst_meta))


def combine_results(results: Sequence[BacktestResult]) -> BacktestResult:
    """One result from several runs (e.g. daily and hourly horizons); params of the first, horizons merged."""
    if not results:
        raise DataError("no backtest results to combine")
    if len(results) == 1:
        return results[0]
    params = dict(results[0].params)
    params["horizons_hours"] = [h for r in results for h in r.params.get("horizons_hours", [])]
    params["models"] = {k: v for r in results for k, v in r.params.get("models", {}).items()}
    params["policies"] = {k: v for r in results for k, v in r.params.get("policies", {}).items()}
    return BacktestResult(params=params, paths=tuple(p for r in results for p in r.paths),
                          instruments=tuple(i for r in results for i in r.instruments))


def _jsonable_params(p: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in p.items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, dict):
            out[k] = _jsonable_params(v)
        else:
            out[k] = repr(v)
    return out


__all__ = [
    "BacktestResult",
    "BacktestWarning",
    "PathResult",
    "combine_results",
    "PathStats",
    "evaluate_path",
    "horizon_log_returns",
    "run_backtest",
    "side_level",
    "side_losses",
]
