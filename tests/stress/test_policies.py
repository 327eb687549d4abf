"""Policy comparison on the real replays, and importance sampling against an exact probability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from margincal.config import CalibrationSettings
from margincal.stress.cascade import draw_population
from margincal.stress.figures import cascade_figures, stress_figures
from margincal.stress.policies import (
    CascadeSetup,
    MonteCarloSetup,
    bad_debt_exceedance,
    bar_substeps,
    calibrated_policy,
    compare_policies,
    mc_state,
    perp_bars,
    run_policy,
)


def test_bar_substeps_order():
    bars = pd.DataFrame({"open": [10.0, 10.0], "high": [12.0, 11.0], "low": [9.0, 7.0], "close": [11.0, 8.0]})
    p, b = bar_substeps(bars)
    # rising bar: open, low, high, close; falling bar: open, high, low, close
    assert p.tolist() == [10, 9, 12, 11, 10, 11, 7, 8]
    assert b.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_calibrated_policy_uses_no_data_from_the_window():
    from margincal.margin.published import calibrate_bars

    bars = perp_bars("BTC")
    start = pd.Timestamp("2022-11-07T00:00:00Z")
    pol = calibrated_policy(bars, start, CalibrationSettings())
    ref = calibrate_bars(bars[bars.index < start], "BTC-PERP", "1h", CalibrationSettings())
    assert (pol.im_rate, pol.mm_rate) == (ref.im_rate, ref.mm_rate)
    assert pd.Timestamp(pol.details["window_end"]) < start


def test_replays_conserve_and_policies_rank_on_ftx():
    setup = CascadeSetup(n_accounts=400, seed=3)
    res = compare_policies(["ftx"], setup=setup)
    rows = {r["policy"]: r for r in res.rows}
    assert set(rows) == {"static", "calibrated", "dynamic"}
    # the static preset allows 125x (IM 0.8% for small positions); calibrated ES margins are far higher
    assert rows["static"]["mean_im"] < rows["calibrated"]["mean_im"]
    for r in rows.values():
        assert r["liquidations"] > 0
        assert r["bad_debt"] == pytest.approx(r["fund_paid"] + r["adl_socialised"] + r["uncovered"], abs=0.011)
    assert rows["static"]["bad_debt"] >= rows["calibrated"]["bad_debt"]
    figs = cascade_figures(res.payload())
    assert len(figs) == 3 and len(stress_figures(res)) == 3
    # one run re-done directly conserves cash to the cent
    bars = perp_bars("BTC")
    w = bars[(bars.index >= "2022-11-07") & (bars.index < "2022-11-11")]
    prices, bar_of = bar_substeps(w)
    draw = draw_population(400, seed=3)
    pol = calibrated_policy(bars, pd.Timestamp("2022-11-07T00:00:00Z"), CalibrationSettings())
    r = run_policy(pol, draw, prices, bar_of, setup)
    assert r.conservation_error_c() == 0


def test_importance_sampling_matches_exact_one_step_probability():
    """One-step paths: bad debt is monotone in the step's normal z on each side, so
    P(bad debt > fund) = Phi(-a_down) + Phi(-a_up) with a_down, a_up the boundary points (bisection here)."""
    setup = CascadeSetup(n_accounts=150, seed=2, fund_ratio=0.002)
    mc = MonteCarloSetup(steps=1)
    settings = CalibrationSettings()
    state = mc_state(mc, settings)
    draw = draw_population(150, seed=2)
    pol = calibrated_policy(perp_bars("BTC"), pd.Timestamp(mc.as_of), settings)
    fund = setup.fund(draw)

    def bad(z: float) -> float:
        return run_policy(pol, draw, state.paths(np.array([[z]]))[0], np.zeros(2, dtype=np.int64), setup).bad_debt

    def boundary(sign: float) -> float:
        lo, hi = 0.0, 12.0
        if bad(sign * hi) <= fund:
            return np.inf
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if bad(sign * mid) <= fund else (lo, mid)
        return hi

    exact = norm.cdf(-boundary(-1.0)) + norm.sf(boundary(1.0))
    r = bad_debt_exceedance("calibrated", n=400, setup=setup, mc=mc, settings=settings, seed=9)
    assert exact > 0
    assert abs(r.probability - exact) <= 4 * r.std_error + 1e-3 * exact
    assert r.ci95[0] <= r.probability <= r.ci95[1]
    assert r.crude_ci95[0] <= r.crude_probability <= r.crude_ci95[1]
