"""Risk-committee outputs from the v2 cascade: replays with bands, Monte Carlo, insolvency VaR, optimiser.

* :func:`observed_dislocation`: the largest fall of the perp's low below the spot index's low over the
  replay window (bundled hourly bars): the price dislocation the model is calibrated to.
* :func:`replay_bands`: an event replayed over a *distribution* of depth (lognormal around the
  calibrated ratio, ``depth_sigma``), one path per draw, 5/50/95% bands, and the same draws with the
  mark rule switched to the last trade (how much the trigger choice changes liquidations).
* :func:`monte_carlo_paths`: Student-t hourly index paths from the 2022-11-07 state
  (:func:`margincal.stress.policies.mc_state`), all paths at once (chunks), depth drawn per path.
* :func:`committee_metrics`: bad debt, insurance-fund drawdown, ADL (socialised) volume,
  liquidations-at-risk and insolvency VaR at 95% / 99%.
* :func:`optimise`: grid over maintenance rate, initial / maintenance ratio and fund size, on common
  random numbers (one seed), minimising ``E[bad debt] + cost_fund x fund + cost_margin x initial
  margin posted`` subject to ``P(bad debt > fund) <= alpha``; returns every point, the efficient
  frontier (no other point has both lower expected bad debt and lower capital) and the chosen point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from margincal.errors import ConfigError
from margincal.stress.cascade.core import draw_population
from margincal.stress.cascade.mark import MarkRule, bundled_index_and_perp
from margincal.stress.cascade.market import MarketConfig, PathResults, build_accounts, simulate_paths

EVENTS = {"ftx": ("2022-11-07T00:00:00Z", "2022-11-11T00:00:00Z"),
          "2025-10-10": ("2025-10-10T00:00:00Z", "2025-10-12T00:00:00Z")}


def observed_dislocation(event: str) -> dict[str, Any]:
    """Largest ``1 - perp_low / spot_low`` over the window's hourly bars (bundled Binance files)."""
    from margincal.config import sample_data_dir

    if event not in EVENTS:
        raise ConfigError(f"event {event!r} unknown; use {', '.join(EVENTS)}")
    a, b = EVENTS[event]
    d = sample_data_dir()
    s = pd.read_csv(d / "btcusdt_1h.csv.gz", parse_dates=["timestamp"]).set_index("timestamp")
    p = pd.read_csv(d / "btcusdt_perp_1h.csv.gz", parse_dates=["timestamp"]).set_index("timestamp")
    j = s[["low"]].join(p[["low"]].rename(columns={"low": "perp_low"}), how="inner")
    j = j[(j.index >= a) & (j.index < b)]
    x = 1.0 - j["perp_low"] / j["low"]
    return {"event": event, "dislocation": float(x.max()), "at": str(x.idxmax())}


@dataclass(frozen=True)
class Policy:
    """Flat margin policy for the v2 engine: maintenance rate and IM = ``im_mult x mm``."""

    mm_rate: float = 0.025
    im_mult: float = 2.0

    @property
    def im_rate(self) -> float:
        return min(self.mm_rate * self.im_mult, 1.0)


def _accounts(n_accounts: int, seed: int, price: float, pol: Policy):
    d = draw_population(n_accounts, seed=seed)
    return build_accounts(d.notional, d.side, d.desired_leverage, price, im_rate=pol.im_rate, mm_rate=pol.mm_rate,
                          seed=seed + 1)


def _bands(x: np.ndarray) -> dict[str, float]:
    q = np.quantile(x, [0.05, 0.5, 0.95])
    return {"p05": float(q[0]), "p50": float(q[1]), "p95": float(q[2]), "mean": float(np.mean(x))}


def replay_bands(event: str, *, policy: Policy | None = None, cfg: MarketConfig | None = None, draws: int = 200,
                 depth_center: float = 0.05, depth_sigma: float = 0.5, n_accounts: int = 400, seed: int = 7
                 ) -> dict[str, Any]:
    """Replay ``event`` over ``draws`` depth draws; bands for mark-triggered and last-triggered runs."""
    if event not in EVENTS:
        raise ConfigError(f"event {event!r} unknown; use {', '.join(EVENTS)}")
    pol = policy or Policy()
    cfg = cfg or MarketConfig()
    idx, perp, times = bundled_index_and_perp(*EVENTS[event])
    acc = _accounts(n_accounts, seed, float(idx[0]), pol)
    depth = depth_center * np.exp(depth_sigma * np.random.default_rng(seed).standard_normal(draws))
    out: dict[str, Any] = {"event": event, "draws": draws, "depth_center": depth_center, "depth_sigma": depth_sigma,
                           "observed_dislocation": observed_dislocation(event)["dislocation"],
                           "mm_rate": pol.mm_rate, "im_rate": pol.im_rate, "accounts": acc.labels}
    for trig in ("mark", "last"):
        c = replace(cfg, depth_ratio=depth, mark=cfg.mark if trig == "mark" else MarkRule("last"))
        r = simulate_paths(acc, np.broadcast_to(idx, (draws, idx.size)), c, ref=np.broadcast_to(perp, (draws, idx.size)))
        _check(r)
        oi = r.population_notional
        out[trig] = {"bad_debt_pct_oi": _bands(100 * r.bad_debt / oi),
                     "liquidated_pct_oi": _bands(100 * r.liquidated_notional / oi),
                     "liquidations": _bands(r.n_liquidations.astype(float)),
                     "dislocation": _bands(r.max_dislocation), "min_depth_ratio": _bands(r.min_depth_ratio)}
    out["liquidations_change_mark_vs_last_pct"] = 100.0 * (
        out["mark"]["liquidated_pct_oi"]["mean"] / max(out["last"]["liquidated_pct_oi"]["mean"], 1e-12) - 1.0)
    return out


def _check(r: PathResults) -> None:
    if np.any(r.conservation_c) or np.any(r.conservation_sats) or np.any(r.conservation_stable):
        raise AssertionError("cascade v2 lost or created money: conservation residual is not 0")


def calibrate_depth(grid: Sequence[float] = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8), *, cfg: MarketConfig | None = None,
                    n_accounts: int = 400, seed: int = 7) -> dict[str, Any]:
    """Depth ratio (per side within 2%, x OI) whose replays best match the observed dislocations.

    Criterion: sum over the two events of ``log(model / observed)^2`` (order of magnitude), model =
    the dislocation of one replay at that depth with every agent on.
    """
    cfg = cfg or MarketConfig()
    obs = {e: observed_dislocation(e)["dislocation"] for e in EVENTS}
    rows = []
    for g in grid:
        row: dict[str, Any] = {"depth_ratio": g}
        err = 0.0
        for e, (a, b) in EVENTS.items():
            idx, perp, _ = bundled_index_and_perp(a, b)
            acc = _accounts(n_accounts, seed, float(idx[0]), Policy())
            r = simulate_paths(acc, idx[None, :], replace(cfg, depth_ratio=g), ref=perp[None, :])
            m = float(r.max_dislocation[0])
            row[f"{e}_model"] = m
            row[f"{e}_observed"] = obs[e]
            err += math.log(max(m, 1e-6) / obs[e]) ** 2
        row["log_error"] = err
        rows.append(row)
    best = min(rows, key=lambda r: r["log_error"])
    return {"rows": rows, "best": best["depth_ratio"], "observed": obs}


def monte_carlo_paths(n_paths: int, *, steps: int = 24, seed: int = 11) -> np.ndarray:
    """(n_paths, steps + 1) hourly BTC index paths from the 2022-11-07 state (Student-t, EWMA sigma)."""
    from margincal.config import CalibrationSettings
    from margincal.stress.policies import MonteCarloSetup, mc_state

    st = mc_state(MonteCarloSetup(steps=steps), CalibrationSettings())
    z = np.random.default_rng(seed).standard_normal((n_paths, steps))
    return st.paths(z)


def simulate_mc(policy: Policy, *, n_paths: int = 10_000, fund_ratio: float = 0.02, cfg: MarketConfig | None = None,
                n_accounts: int = 300, depth_center: float = 0.05, depth_sigma: float = 0.5, seed: int = 11,
                chunk: int = 2_500, paths: np.ndarray | None = None) -> PathResults:
    """All Monte Carlo paths through the v2 engine (hourly steps), depth drawn per path; merged results."""
    cfg = replace(cfg or MarketConfig(), step_seconds=3600.0, funding_every=8, fund_ratio=fund_ratio)
    P = monte_carlo_paths(n_paths, seed=seed) if paths is None else paths
    depth = depth_center * np.exp(depth_sigma * np.random.default_rng(seed + 1).standard_normal(P.shape[0]))
    acc = _accounts(n_accounts, 7, float(P[0, 0]), policy)
    parts = []
    for a in range(0, P.shape[0], chunk):
        r = simulate_paths(acc, P[a:a + chunk], replace(cfg, depth_ratio=depth[a:a + chunk]))
        _check(r)
        parts.append(r)
    if len(parts) == 1:
        return parts[0]
    f = {k: np.concatenate([getattr(p, k) for p in parts]) for k in PathResults.__dataclass_fields__
         if isinstance(getattr(parts[0], k), np.ndarray) and getattr(parts[0], k).ndim == 1}
    return replace(parts[0], **f)


def committee_metrics(r: PathResults, fund: float | None = None) -> dict[str, Any]:
    """Bad debt, fund drawdown, ADL volume, liquidations-at-risk, insolvency VaR (95 / 99%), as % of OI too."""
    oi = r.population_notional
    bd = r.bad_debt
    f = float(r.fund_start_c[0]) / 100.0 if fund is None else fund
    q = lambda x, p: float(np.quantile(x, p))  # noqa: E731
    return {"paths": int(bd.size), "population_notional": oi, "fund": f,
            "mean_bad_debt": float(bd.mean()), "insolvency_var95": q(bd, 0.95), "insolvency_var99": q(bd, 0.99),
            "p_bad_debt_gt_fund": float((bd > f).mean()),
            "mean_fund_drawdown": float(r.fund_drawdown.mean()), "fund_drawdown99": q(r.fund_drawdown, 0.99),
            "mean_adl_volume": float(r.adl_notional.mean()), "adl_volume99": q(r.adl_notional, 0.99),
            "liquidations_at_risk95": q(r.liquidated_notional, 0.95),
            "liquidations_at_risk99": q(r.liquidated_notional, 0.99),
            "mean_uncovered": float(r.uncovered_c.mean() / 100.0),
            "insolvency_var99_pct_oi": 100.0 * q(bd, 0.99) / oi}


def optimise(*, mm_grid: Sequence[float] = (0.005, 0.01, 0.02, 0.04), im_mult_grid: Sequence[float] = (1.5, 2.0, 3.0),
             fund_grid: Sequence[float] = (0.0025, 0.005, 0.01, 0.02, 0.04), alpha: float = 0.01,
             cost_fund: float = 0.10 / 52, cost_margin: float = 0.05 / 52, n_paths: int = 2_000,
             n_accounts: int = 300, seed: int = 11, cfg: MarketConfig | None = None) -> dict[str, Any]:
    """Grid search (see the module doc). Costs are per stress horizon (default: annual 10% on the fund
    and 5% on posted initial margin, over one week); all points share the same random paths (seed)."""
    paths = monte_carlo_paths(n_paths, seed=seed)
    pts = []
    for mm in mm_grid:
        for mult in im_mult_grid:
            pol = Policy(mm, mult)
            r = simulate_mc(pol, n_paths=n_paths, fund_ratio=0.0, cfg=cfg, n_accounts=n_accounts, seed=seed,
                            paths=paths)
            oi = r.population_notional
            acc = _accounts(n_accounts, 7, float(paths[0, 0]), pol)
            im_posted = float((acc.notional(float(paths[0, 0])) * pol.im_rate).sum())
            bd = r.bad_debt
            for fr in fund_grid:
                fund = fr * oi
                p_exceed = float((bd > fund).mean())
                cap = cost_fund * fund + cost_margin * im_posted
                pts.append({"mm_rate": mm, "im_rate": pol.im_rate, "fund_ratio": fr, "fund": fund,
                            "expected_bad_debt": float(bd.mean()), "p_bad_debt_gt_fund": p_exceed,
                            "capital_cost": cap, "objective": float(bd.mean()) + cap,
                            "feasible": p_exceed <= alpha})
    feas = [p for p in pts if p["feasible"]]
    frontier = sorted([p for p in pts if not any(
        (o["expected_bad_debt"] <= p["expected_bad_debt"] and o["capital_cost"] <= p["capital_cost"]
         and (o["expected_bad_debt"] < p["expected_bad_debt"] or o["capital_cost"] < p["capital_cost"]))
        for o in pts)], key=lambda p: p["capital_cost"])
    chosen = min(feas, key=lambda p: p["objective"]) if feas else None
    return {"points": pts, "frontier": frontier, "chosen": chosen, "alpha": alpha, "n_paths": n_paths,
            "seed": seed, "cost_fund": cost_fund, "cost_margin": cost_margin,
            "constraint": f"P(bad debt > fund) <= {alpha:g}"}
