"""Margin policies compared through the liquidation cascade: real crash replays and Monte Carlo.

Policies (all for the BTC USDT-margined perpetual):

* ``static``: the exchange preset ``binance_btcusdt`` of :mod:`margincal.margin.presets`
  (leverage brackets: 125x / MM 0.4% up to 50,000 USDT notional, then lower leverage and higher
  MM for larger positions). Each account gets its bracket's IM (leverage cap) and effective MM.
* ``calibrated``: FHS ES 99% over 24 h (the ``margincal run`` settings) fitted with
  :func:`margincal.margin.published.calibrate_bars` on the hourly perp bars strictly BEFORE the window
  (no look-ahead), or the published ParameterSet's ``BTC-PERP`` row when one is given.
* ``dynamic``: the causal margin path of :func:`margincal.margin.published.published_history` (EWMA volatility
  updated every bar, FHS multiplier refitted weekly): the IM in force when the window opens
  caps leverage; the MM moves bar by bar through the window (as a venue that re-marks
  maintenance margin with volatility would).

Exogenous shock: the REAL hourly BTCUSDT perpetual bars of the window (bundled file), each bar
expanded to four sub-steps open -> high -> low -> close for a falling bar (close < open), or
open -> low -> high -> close otherwise, so intrabar wicks (2025-10-10 21:00Z: low 101,516.5)
reach the accounts. The simulated liquidation flow moves the price *further* than the real path
(which already contains the real liquidations): the numbers are a stress, conservative by design.

Scale: the population is ``n_accounts`` real-size accounts (:func:`draw_population`); the book
depth and the insurance fund are set relative to the population's total notional:

* ``depth_ratio = 0.008``: resting size per side within 2% of mid = 0.8% of open interest. Kaiko
  reported aggregate BTC depth within 2% falling to about 7,000 BTC (both sides) after FTX
  (Nov 2022), about $115m at $16.5k, i.e. 1.6% of the $7.1bn aggregate BTC futures OI of
  2022-11-08 in the bundled OI file, 0.8% per side.
* ``fund_ratio = 0.02``: insurance fund = 2% of open interest (assumption; venues publish their
  fund balances, of the order of a few percent of their OI).
* ``resilience = 0.5`` per sub-step: half of the consumed depth is replenished between sub-steps
  (about 94% per hour).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from margincal.config import CalibrationSettings
from margincal.errors import ConfigError, DataError
from margincal.stress.cascade import (
    CascadeResult,
    DepthProfile,
    PopulationDraw,
    draw_population,
    population_for_policy,
    simulate_cascade,
)
from margincal.stress.mcpaths import MCState, MonteCarloSetup, mc_state, perp_bars  # noqa: F401  (re-exported)

POLICIES = ("static", "calibrated", "dynamic")


@dataclass(frozen=True)
class ReplayEvent:
    key: str
    start: str
    end: str
    description: str


EVENTS: dict[str, ReplayEvent] = {
    "ftx": ReplayEvent("ftx", "2022-11-07T00:00:00Z", "2022-11-11T00:00:00Z",
                       "FTX collapse: BTC perp 20,9xx -> 15,6xx, hourly bars 2022-11-07..10"),
    "2025-10-10": ReplayEvent("2025-10-10", "2025-10-10T00:00:00Z", "2025-10-12T00:00:00Z",
                              "2025-10-10 crash: 21:00Z bar 114,200 -> low 101,516.5, hourly bars 10-10..11"),
}


def bar_substeps(bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Four prices per bar (see module doc) and the bar index of each sub-step."""
    o, h, lo, c = (bars[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
    falling = c < o
    mid1 = np.where(falling, h, lo)
    mid2 = np.where(falling, lo, h)
    prices = np.column_stack([o, mid1, mid2, c]).ravel()
    return prices, np.repeat(np.arange(len(bars)), 4)


# ---------------------------------------------------------------- policies


@dataclass(frozen=True)
class MarginPolicy:
    """IM at entry (per account via ``im_fn`` or flat ``im_rate``) and MM per bar of the window."""

    name: str
    source: str
    im_rate: float | None = None
    mm_bars: np.ndarray | None = None  # one MM rate per bar of the window (dynamic) ...
    mm_rate: float | None = None  # ... or one flat rate
    im_fn: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None  # notional -> (im, mm)
    details: dict[str, Any] = field(default_factory=dict)

    def rates(self, notional: np.ndarray, bar_of_step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(IM per account, MM as (steps,) or (steps, accounts))."""
        if self.im_fn is not None:
            im, mm = self.im_fn(notional)
            return np.asarray(im, float), np.broadcast_to(np.asarray(mm, float), (bar_of_step.size, notional.size))
        if self.im_rate is None:
            raise ConfigError(f"policy {self.name} has no IM")
        if self.mm_bars is not None:
            return np.full(notional.size, self.im_rate), np.asarray(self.mm_bars, float)[bar_of_step]
        return np.full(notional.size, self.im_rate), np.full(bar_of_step.size, float(self.mm_rate or 0.0))


def static_policy(preset: str = "binance_btcusdt") -> MarginPolicy:
    from margincal.margin import presets

    p = presets.get(preset)

    def fn(notional: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = p.margin_rate(notional)
        return np.asarray(r.im, float), np.asarray(r.mm, float)

    r0 = p.margin_rate(0.0)
    return MarginPolicy("static", f"exchange preset {preset}", im_fn=fn,
                        details={"preset": preset, "im_small": float(r0.im), "mm_small": float(r0.mm)})


def calibrated_policy(bars: pd.DataFrame, start: pd.Timestamp, settings: CalibrationSettings,
                      params: Any = None) -> MarginPolicy:
    if params is not None:
        row = params["BTC-PERP"]
        return MarginPolicy("calibrated", f"published ParameterSet v{getattr(params, 'version', '?')} BTC-PERP",
                            im_rate=row.im_rate, mm_rate=row.mm_rate,
                            details={"im": row.im_rate, "mm": row.mm_rate, "note": "fitted on all data (look-ahead)"})
    from margincal.margin.published import calibrate_bars

    hist = bars[bars.index < start]
    cal = calibrate_bars(hist, "BTC-PERP", "1h", settings)
    return MarginPolicy("calibrated", f"FHS ES{settings.level:g} {settings.horizon_hours:g}h on perp bars < {start}",
                        im_rate=cal.im_rate, mm_rate=cal.mm_rate,
                        details={"im": cal.im_rate, "mm": cal.mm_rate, "window_end": cal.window_end})


def dynamic_policy(bars: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, settings: CalibrationSettings,
                   path: pd.DataFrame | None = None) -> MarginPolicy:
    from margincal.margin.published import published_history

    if path is None:
        path = published_history(bars[bars.index < end], "1h", settings)
    w = path[(path.index >= start) & (path.index < end)]
    if w.empty or w["im_rate"].isna().any():
        raise DataError(f"dynamic margin path does not cover {start}..{end}")
    im0 = float(w["im_rate"].iloc[0])
    mm = w["mm_rate"].to_numpy(dtype=float)
    return MarginPolicy("dynamic", "causal history of the published IM/MM (published rule on data before each bar)", im_rate=im0,
                        mm_bars=mm, details={"im_at_start": im0, "mm_min": float(mm.min()), "mm_max": float(mm.max())})


# ---------------------------------------------------------------- runs


@dataclass(frozen=True)
class CascadeSetup:
    """Market scale around the population (see module doc)."""

    n_accounts: int = 5_000
    seed: int = 7
    depth_ratio: float = 0.05
    fund_ratio: float = 0.02
    resilience: float = 0.5
    fee_rate: float = 0.005
    depth_step: float = 0.0005
    depth_max_offset: float = 0.6

    def depth(self, draw: PopulationDraw, price: float) -> DepthProfile:
        base_units = self.depth_ratio * float(draw.notional.sum()) / price
        return DepthProfile.linear(base_units, within=0.02, step=self.depth_step, max_offset=self.depth_max_offset)

    def fund(self, draw: PopulationDraw) -> float:
        return self.fund_ratio * float(draw.notional.sum())


def run_policy(policy: MarginPolicy, draw: PopulationDraw, prices: np.ndarray, bar_of_step: np.ndarray,
               setup: CascadeSetup, depth: DepthProfile | None = None, record_events: bool = False
               ) -> CascadeResult:
    """One cascade of ``draw`` opened at ``prices[0]`` under ``policy``."""
    im, mm = policy.rates(draw.notional, bar_of_step)
    pop = population_for_policy(draw, float(prices[0]), im)
    return simulate_cascade(pop, prices, depth or setup.depth(draw, float(prices[0])), mm_rate=mm,
                            insurance_fund=setup.fund(draw), fee_rate=setup.fee_rate,
                            resilience=setup.resilience, record_events=record_events)


@dataclass(frozen=True)
class PolicyComparison:
    """Cascade outcomes per (event, policy); Monte Carlo distributions per policy when run."""

    rows: list[dict[str, Any]]
    paths: dict[str, dict[str, Any]]
    mc: dict[str, dict[str, Any]]
    provenance: dict[str, Any]

    def table(self) -> list[dict[str, Any]]:
        return self.rows

    def payload(self) -> dict[str, Any]:
        """JSON-able form stored by ``margincal cascade`` (rows, price paths, Monte Carlo samples)."""
        return {"rows": self.rows, "paths": self.paths, "mc": self.mc, "provenance": self.provenance}


def _row(event: str, pol: MarginPolicy, res: CascadeResult, draw: PopulationDraw, setup: CascadeSetup,
         im: np.ndarray) -> dict[str, Any]:
    total = float(draw.notional.sum())
    return {"event": event, "policy": pol.name, "mean_im": float(np.average(im, weights=draw.notional)),
            "max_leverage_used": float(np.max(np.minimum(draw.desired_leverage, 1 / im))),
            **res.row(), "fund_start": setup.fund(draw), "population_notional": total,
            "bad_debt_pct_oi": 100.0 * res.bad_debt / total,
            "liquidated_pct_oi": 100.0 * res.liquidated_notional / total}


def replay(event: str, policies: Sequence[str] = POLICIES, *, setup: CascadeSetup | None = None,
           settings: CalibrationSettings | None = None, params: Any = None,
           on_step: Callable[[str], None] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Replay a crash (``"ftx"`` or ``"2025-10-10"``) under each policy: table rows and price paths."""
    if event not in EVENTS:
        raise ConfigError(f"event {event!r} unknown; choose one of {', '.join(EVENTS)} or mc")
    ev = EVENTS[event]
    setup = setup or CascadeSetup()
    settings = settings or CalibrationSettings()
    bars = perp_bars("BTC")
    start, end = pd.Timestamp(ev.start), pd.Timestamp(ev.end)
    window = bars[(bars.index >= start) & (bars.index < end)]
    if len(window) < 2:
        raise DataError(f"bundled perp bars do not cover {ev.start}..{ev.end}")
    prices, bar_of = bar_substeps(window)
    draw = draw_population(setup.n_accounts, seed=setup.seed)
    rows, paths = [], {"time": [str(t) for t in window.index], "fundamental": prices.tolist(), "marks": {}}
    for name in policies:
        if on_step:
            on_step(f"{event}: {name}")
        pol = make_policy(name, bars, start, end, settings, params)
        res = run_policy(pol, draw, prices, bar_of, setup)
        im, _ = pol.rates(draw.notional, bar_of)
        rows.append(_row(event, pol, res, draw, setup, im) | {"policy_source": pol.source})
        paths["marks"][name] = res.mark_path.tolist()
    return rows, paths


def make_policy(name: str, bars: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp,
                settings: CalibrationSettings, params: Any = None) -> MarginPolicy:
    if name == "static":
        return static_policy()
    if name == "calibrated":
        return calibrated_policy(bars, start, settings, params)
    if name == "dynamic":
        return dynamic_policy(bars, start, end, settings)
    raise ConfigError(f"policy {name!r} unknown; choose static, calibrated, dynamic or all")


# ---------------------------------------------------------------- Monte Carlo


def monte_carlo(policies: Sequence[str] = POLICIES, *, n_paths: int = 200, setup: CascadeSetup | None = None,
                mc: MonteCarloSetup | None = None, settings: CalibrationSettings | None = None, seed: int = 11,
                params: Any = None, on_path: Callable[[], None] | None = None) -> dict[str, dict[str, Any]]:
    """Bad-debt distribution per policy over common random paths (crude Monte Carlo)."""
    setup = setup or CascadeSetup()
    mc = mc or MonteCarloSetup()
    settings = settings or CalibrationSettings()
    state = mc_state(mc, settings)
    z = np.random.default_rng(seed).standard_normal((n_paths, mc.steps))
    P = state.paths(z)
    draw = draw_population(setup.n_accounts, seed=setup.seed)
    start = pd.Timestamp(mc.as_of)
    bars = perp_bars("BTC")
    bar_of = np.zeros(mc.steps + 1, dtype=np.int64)
    out = {}
    for name in policies:
        pol = make_policy(name, bars, start, start + pd.Timedelta(hours=1), settings, params)
        pol = _flatten_dynamic(pol)
        bd, liq = np.empty(n_paths), np.empty(n_paths)
        for k in range(n_paths):
            res = run_policy(pol, draw, P[k], bar_of, setup)
            bd[k], liq[k] = res.bad_debt, res.liquidated_notional
            if on_path:
                on_path()
        fund = setup.fund(draw)
        out[name] = {"policy": name, "n_paths": n_paths, "mean_bad_debt": float(bd.mean()),
                     "q99_bad_debt": float(np.quantile(bd, 0.99)), "max_bad_debt": float(bd.max()),
                     "p_bad_debt_gt_fund": float((bd > fund).mean()),
                     "mean_liquidated_notional": float(liq.mean()), "fund": fund, "sigma_hourly": state.sigma,
                     "t_df": state.df, "start_price": state.s0, "steps": mc.steps, "bad_debt": bd.tolist()}
    return out


def _flatten_dynamic(pol: MarginPolicy) -> MarginPolicy:
    """In Monte Carlo the dynamic policy keeps the MM in force at the start (no future bars to read)."""
    if pol.mm_bars is None:
        return pol
    return MarginPolicy(pol.name, pol.source + " (MM held at its start value over the simulated path)",
                        im_rate=pol.im_rate, mm_rate=float(pol.mm_bars[0]), details=pol.details)


@dataclass(frozen=True)
class ExceedanceResult:
    """P(bad debt > insurance fund): importance sampling vs crude Monte Carlo at the same n."""

    policy: str
    probability: float
    std_error: float
    ci95: tuple[float, float]
    crude_probability: float
    crude_std_error: float
    crude_ci95: tuple[float, float]
    n: int
    threshold: float
    shift: list[list[float]]
    method: str
    variance_ratio: float | None
    t_df: float

    def row(self) -> dict[str, Any]:
        return {"policy": self.policy, "p_is": self.probability, "se_is": self.std_error,
                "ci95_is": list(self.ci95), "p_crude": self.crude_probability, "se_crude": self.crude_std_error,
                "ci95_crude": list(self.crude_ci95), "n": self.n, "threshold": self.threshold,
                "shift_down_first_step": self.shift[0][0], "shift_up_first_step": self.shift[1][0],
                "method": self.method, "t_df": self.t_df,
                "variance_ratio": self.variance_ratio}


def bad_debt_exceedance(policy: str = "calibrated", *, n: int = 400, setup: CascadeSetup | None = None,
                        mc: MonteCarloSetup | None = None, settings: CalibrationSettings | None = None,
                        seed: int = 5, params: Any = None, on_eval: Callable[[], None] | None = None
                        ) -> ExceedanceResult:
    """Probability that bad debt exceeds the insurance fund under the Monte Carlo shock paths.

    Crashes hurt the longs and squeezes the shorts, so the event is split by the sign of the
    path's total normal input ``S = sum z``: ``p = P(B > F, S < 0) + P(B > F, S >= 0)``. Each part is
    estimated with :func:`margincal.risk.rare_event.tail_probability_is` (a
    ``GaussianLossFunction``, proposal = the normal mean-shifted to that side's design point) on
    ``n // 2`` draws; the parts are independent, so estimates and variances add. The design point of a
    side is the shorter of two boundary points found by bisection: a jump in the first step, or
    equal steps. The crude estimate at the same total ``n`` comes from the same calls.
    """
    from margincal.risk.montecarlo import GaussianLossFunction
    from margincal.risk.rare_event import tail_probability_is

    setup = setup or CascadeSetup()
    mc = mc or MonteCarloSetup()
    settings = settings or CalibrationSettings()
    state = mc_state(mc, settings)
    draw = draw_population(setup.n_accounts, seed=setup.seed)
    start = pd.Timestamp(mc.as_of)
    pol = _flatten_dynamic(make_policy(policy, perp_bars("BTC"), start, start + pd.Timedelta(hours=1), settings,
                                       params))
    bar_of = np.zeros(mc.steps + 1, dtype=np.int64)
    fund = setup.fund(draw)

    def bad_debt(z: np.ndarray) -> np.ndarray:
        P = state.paths(z)
        out = np.empty(P.shape[0])
        for k in range(P.shape[0]):
            out[k] = run_policy(pol, draw, P[k], bar_of, setup).bad_debt
            if on_eval:
                on_eval()
        return out

    half = max(n // 2, 40)
    est = var = crude = crude_var = 0.0
    shifts, labels = [], []
    for k, sign in enumerate((-1.0, 1.0)):
        def side_loss(z: np.ndarray, sign: float = sign) -> np.ndarray:
            z = np.atleast_2d(z)
            keep = (z.sum(axis=1) < 0) if sign < 0 else (z.sum(axis=1) >= 0)
            out = np.zeros(z.shape[0])
            if keep.any():
                out[keep] = bad_debt(z[keep])
            return out

        f = GaussianLossFunction(side_loss, mc.steps, f"bad debt of {policy} cascade, side {sign:+.0f}")
        shift, label = _design_point(f, fund, mc.steps, sign)
        r = tail_probability_is(f, fund, half, shift=shift, rng=seed + k)
        est += r.estimate
        var += r.std_error ** 2
        crude += r.crude_estimate * half
        crude_var += r.crude_std_error ** 2
        shifts.append([float(x) for x in shift])
        labels.append(("down: " if sign < 0 else "up: ") + label)
    se = math.sqrt(var)
    ntot = 2 * half
    p_crude = crude / ntot
    se_crude = math.sqrt(crude_var) / 2.0
    ci = (max(0.0, est - 1.96 * se), est + 1.96 * se)
    vr = (p_crude * (1 - p_crude) / ntot) / se ** 2 if se > 0 and p_crude > 0 else None
    return ExceedanceResult(policy, est, se, ci, p_crude, se_crude, _wilson(p_crude, ntot), ntot, fund, shifts,
                            "Gaussian mean shift per side (" + "; ".join(labels) + ")", vr, state.df)


def _design_point(f: Any, threshold: float, steps: int, sign: float = -1.0, a_max: float = 12.0
                  ) -> tuple[np.ndarray, str]:
    """Shortest point among two rays in normal space (direction ``sign``) where the loss reaches ``threshold``.

    Rays: a jump in the first step only ``sign (a, 0, ..., 0)`` and equal steps ``sign (a, ..., a)``;
    each searched by bisection on ``a``. Without any crossing within ``a_max`` the shift is 0
    (plain Monte Carlo for that part: still unbiased).
    """
    cands = []
    for label, d in (("first-step jump", np.r_[1.0, np.zeros(steps - 1)]), ("equal steps", np.ones(steps))):
        def g(a: float, d: np.ndarray = d) -> float:
            return float(f((sign * a * d)[None, :])[0])

        if g(a_max) < threshold:
            continue
        lo, hi = 0.0, a_max
        for _ in range(25):
            mid = 0.5 * (lo + hi)
            if g(mid) >= threshold:
                hi = mid
            else:
                lo = mid
        cands.append((float(np.linalg.norm(hi * d)), sign * hi * d, label))
    if not cands:
        return np.zeros(steps), f"no boundary within {a_max} sigma: no shift"
    best = min(cands, key=lambda c: c[0])
    return best[1], f"design point {best[2]}, |mu| = {best[0]:.2f}"


def _wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (valid also when no exceedance was seen)."""
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, c - h), min(1.0, c + h))


# ---------------------------------------------------------------- top level + figures


def compare_policies(events: Sequence[str] = ("ftx", "2025-10-10", "mc"), policies: Sequence[str] = POLICIES, *,
                     setup: CascadeSetup | None = None, settings: CalibrationSettings | None = None,
                     n_paths: int = 200, params: Any = None, on_step: Callable[[str], None] | None = None,
                     on_path: Callable[[], None] | None = None) -> PolicyComparison:
    """Replays and Monte Carlo under each policy (see the module doc); returns table rows and paths."""
    setup = setup or CascadeSetup()
    settings = settings or CalibrationSettings()
    rows: list[dict[str, Any]] = []
    paths: dict[str, dict[str, Any]] = {}
    mc_out: dict[str, dict[str, Any]] = {}
    for ev in events:
        if ev == "mc":
            if on_step:
                on_step("Monte Carlo")
            mc_out = monte_carlo(policies, n_paths=n_paths, setup=setup, settings=settings, params=params,
                                 on_path=on_path)
            for name, m in mc_out.items():
                rows.append({"event": "mc", "policy": name, "bad_debt": m["mean_bad_debt"],
                             "liquidated_notional": m["mean_liquidated_notional"],
                             "q99_bad_debt": m["q99_bad_debt"], "p_bad_debt_gt_fund": m["p_bad_debt_gt_fund"],
                             "fund_start": m["fund"]})
            continue
        r, p = replay(ev, policies, setup=setup, settings=settings, params=params, on_step=on_step)
        rows += r
        paths[ev] = p
    prov = {"setup": setup.__dict__, "settings": {k: v for k, v in settings.__dict__.items() if k != "extra"},
            "events": list(events), "policies": list(policies), "n_paths": n_paths,
            "data": "bundled btcusdt_perp_1h.csv.gz (Binance USD-M BTCUSDT hourly)",
            "created_at": pd.Timestamp.now(tz="UTC").isoformat()}
    return PolicyComparison(rows, paths, mc_out, prov)
