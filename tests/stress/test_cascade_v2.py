"""Cascade v2 (many paths): index and mark rules, exact conservation, partial liquidation by hand,
capacity, agents switched off, collateral depeg, and the depth monotonicity mechanism of v1."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from margincal.stress.cascade import (
    Accounts,
    Agents,
    DepthProfile,
    MarketConfig,
    MarkRule,
    Population,
    build_accounts,
    draw_population,
    index_price,
    simulate_cascade,
    simulate_paths,
)
from margincal.stress.cascade.committee import observed_dislocation, optimise
from margincal.stress.cascade.mark import bundled_index_and_perp, ema_weight

OFF = Agents(market_makers=False, arbitrageurs=False, stop_losses=False)


def test_index_follows_the_deribit_band_rule():
    # tests/reference/deribit_index_rule.md
    x = np.array([[100.0, 100.2, 101.5, 99.0]])
    assert index_price(x)[0] == pytest.approx(100.1, abs=1e-12)
    assert index_price(x, band=None)[0] == pytest.approx(100.175, abs=1e-12)
    # a venue without a quote is left out, weights renormalised
    y = np.array([[100.0, np.nan, 100.4]])
    assert index_price(y, weights=[1, 1, 3])[0] == pytest.approx((100.0 + 3 * 100.4) / 4)


def test_mark_is_index_plus_ema_of_basis():
    assert ema_weight(30.0, 30.0) == pytest.approx(1 - math.exp(-1))
    rule = MarkRule("ema", tau_seconds=30.0)
    ema = rule.update(np.array([0.0]), np.array([100.0]), np.array([90.0]), 30.0)
    # basis -10 enters with weight 1 - 1/e after one time constant
    assert ema[0] == pytest.approx(-10 * (1 - math.exp(-1)))
    assert rule.mark(ema, np.array([100.0]), np.array([90.0]))[0] == pytest.approx(100 - 6.3212, abs=1e-4)
    assert MarkRule("last").mark(ema, np.array([100.0]), np.array([90.0]))[0] == 90.0
    # Binance form: median of the three prices
    assert MarkRule("median").mark(np.array([-1.0]), np.array([100.0]), np.array([90.0]), 0.001)[0] == 99.0


def _accounts(n=300, seed=3, price=20_000.0, mm=0.02, im=0.05):
    d = draw_population(n, seed=seed)
    return build_accounts(d.notional, d.side, d.desired_leverage, price, im_rate=im, mm_rate=mm, seed=seed)


@pytest.mark.parametrize("liq", ["full", "partial", "ladder"])
@pytest.mark.parametrize("mark", ["ema", "last"])
def test_conservation_exact_on_many_paths(liq, mark):
    rng = np.random.default_rng(5)
    P, T = 64, 30
    idx = 20_000.0 * np.exp(np.cumsum(np.r_[0.0, *([0.0] * 0)] + 0.02 * rng.standard_t(3, (P, T)), axis=1))
    idx[:, 0] = 20_000.0
    stable = np.clip(1.0 - 0.1 * rng.random((P, T)), 0.5, 1.0)
    cfg = MarketConfig(liquidation=liq, mark=MarkRule(mark), depth_ratio=np.exp(rng.normal(-3, 1, P)),
                       capacity_ratio=0.05, funding_every=4)
    r = simulate_paths(_accounts(), idx, cfg, stable=stable, funding=0.0003)
    assert r.n_liquidations.sum() > 0 and r.bad_debt_c.sum() > 0
    assert np.all(r.conservation_c == 0) and np.all(r.conservation_sats == 0) and np.all(r.conservation_stable == 0)
    assert np.all(r.bad_debt_c == r.fund_paid_c + r.socialised_c + r.uncovered_c)
    assert np.all(r.fund_end_c == r.fund_start_c + r.fees_c - r.fund_paid_c)


def _one_long(cash=10.0, mm=0.05):
    return Accounts(np.array([1.0]), np.array([100.0]), np.zeros(1), np.array([100.0]),
                    np.array([int(cash * 100)], dtype=np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64),
                    np.array([mm]), np.array([0.1]), np.array([True]))


def test_partial_liquidation_by_hand():
    """Long 1 @100, cash 10, MM 5%, no fee, no buffer, near-infinite depth, no spread.

    At 95 equity 5 >= 0.05 x 95 = 4.75: nothing. At 94.5 equity 4.5 < 4.725: close
    x = (4.725 - 4.5 + 0.01) / (94.5 x 0.05) (the engine aims one cent above MM against cent rounding).
    """
    cfg = MarketConfig(liquidation="partial", buffer=0.0, fee_rate=0.0, depth_ratio=1e6, half_spread=0.0,
                       mark=MarkRule("last"), agents=OFF, fund_ratio=0.0)
    r = simulate_paths(_one_long(), np.array([[100.0, 95.0]]), cfg)
    assert r.n_liquidations[0] == 0
    r = simulate_paths(_one_long(), np.array([[100.0, 94.5]]), cfg)
    assert r.n_liquidations[0] == 1
    assert r.liquidated_notional[0] == pytest.approx(94.5 * 0.235 / 4.725, rel=1e-6)
    full = simulate_paths(_one_long(), np.array([[100.0, 94.5]]), replace(cfg, liquidation="full"))
    assert full.liquidated_notional[0] == pytest.approx(94.5, rel=1e-6)


def test_liquidator_capacity_caps_each_step():
    acc = _accounts(400, seed=9)
    idx = np.array([[20_000.0, 18_000.0, 18_000.0, 18_000.0]])
    cfg = MarketConfig(liquidation="full", capacity_ratio=0.01, agents=OFF, depth_ratio=1.0)
    r = simulate_paths(acc, idx, cfg)
    oi = r.population_notional
    # capacity 1% of OI per step, 4 steps (step 0 has no trigger): at most 3% of OI liquidated
    assert 0 < r.liquidated_notional[0] <= 0.03 * oi * (1 + 1e-9)
    free = simulate_paths(acc, idx, replace(cfg, capacity_ratio=None))
    assert free.liquidated_notional[0] > r.liquidated_notional[0]


def test_market_makers_withdraw_depth_on_2025_10_10_and_off_means_static():
    idx, perp, _ = bundled_index_and_perp("2025-10-10T00:00:00Z", "2025-10-12T00:00:00Z")
    acc = _accounts(200, price=float(idx[0]))
    on = simulate_paths(acc, idx[None, :], MarketConfig(depth_ratio=0.5), ref=perp[None, :])
    off = simulate_paths(acc, idx[None, :], MarketConfig(depth_ratio=0.5, agents=OFF), ref=perp[None, :])
    assert on.min_depth_ratio[0] < 0.5 and off.min_depth_ratio[0] == 1.0
    assert on.max_dislocation[0] > off.max_dislocation[0] * 0.99


def test_stablecoin_depeg_liquidates_stable_collateral_accounts():
    """Flat BTC; the stablecoin goes 1 -> 0.87 (USDC low of 2023-03-11): only its holders are hit."""
    acc = _accounts(300, seed=4, mm=0.045, im=0.05)
    idx = np.full((1, 6), 20_000.0)
    cfg = MarketConfig(agents=OFF, depth_ratio=1.0)
    calm = simulate_paths(acc, idx, cfg)
    dep = simulate_paths(acc, idx, cfg, stable=np.array([[1.0, 0.95, 0.87, 0.87, 0.9, 0.95]]))
    assert calm.n_liquidations[0] == 0 and dep.n_liquidations[0] > 0
    assert dep.conservation_c[0] == 0 and dep.conservation_stable[0] == 0


def test_optimiser_frontier_and_reproducible_choice():
    kw = dict(mm_grid=(0.01, 0.03), im_mult_grid=(2.0,), fund_grid=(0.005, 0.05), n_paths=60, n_accounts=80, seed=3)
    a, b = optimise(**kw), optimise(**kw)
    assert a["chosen"] == b["chosen"]
    pts = a["points"]
    for f in a["frontier"]:
        assert not any(o["expected_bad_debt"] < f["expected_bad_debt"] and o["capital_cost"] < f["capital_cost"]
                       for o in pts)
    if a["chosen"] is not None:
        assert a["chosen"]["p_bad_debt_gt_fund"] <= a["alpha"]


def test_observed_dislocations_from_bundled_bars():
    # perp low vs spot low, hourly bars: FTX 2022-11-08 19:00Z, 2025-10-10 21:00Z (values read from the files)
    f, o = observed_dislocation("ftx"), observed_dislocation("2025-10-10")
    assert f["at"].startswith("2022-11-08 19:00") and 0.015 < f["dislocation"] < 0.025
    assert o["at"].startswith("2025-10-10 21:00") and 0.003 < o["dislocation"] < 0.006


# ---------------------------------------------------------------- v1 depth monotonicity, pinned


def _gap_case(path):
    # A: long 10 @100 with 50; X: long 1 @100 with 8. MM 5%, fee 0, fund large (no ADL), resilience 1.
    pop = Population.from_lists([10, 1], [100, 100], [50, 8])
    offs = tuple(0.001 * k for k in range(1, 501))
    shallow = DepthProfile(offs, (0.4,) * 500)
    deep = DepthProfile(offs, (100.0,) * 500)
    kw = dict(mm_rate=0.05, insurance_fund=1_000.0, fee_rate=0.0, resilience=1.0, record_events=True)
    return simulate_cascade(pop, path, shallow, **kw), simulate_cascade(pop, path, deep, **kw)


def test_more_depth_more_bad_debt_mechanism_is_a_gap_over_the_bankruptcy_price():
    """Step 1 (97): A is triggered (equity 20 < 48.5) and sells 10. In the shallow book the mark falls to
    97 x 0.975 = 94.575, so X (equity 8 - 5.4 < MM) is closed at step 1 while solvent. In the deep book
    the mark stays at 96.903: X's equity 4.903 >= 0.05 x 96.903 = 4.845, it survives; step 2 gaps to 80,
    below X's bankruptcy price 92: bad debt about 12. Without the gap (96.5) depth is monotone again."""
    shallow, deep = _gap_case([100, 97, 80])
    assert shallow.bad_debt_c == 0 and deep.bad_debt_c > 1_100
    step_x = {r: next(e["step"] for e in res.events if e["account"] == 1) for r, res in (("s", shallow), ("d", deep))}
    assert step_x == {"s": 1, "d": 2}
    s2, d2 = _gap_case([100, 97, 96.5])
    assert d2.bad_debt_c <= s2.bad_debt_c == 0
    assert shallow.conservation_error_c() == deep.conservation_error_c() == 0


def test_cascade_bar_charts_use_categorical_axes():
    from margincal.stress.figures import cascade_figures

    rows = [{"event": e, "policy": p, "bad_debt": 1.0, "liquidated_notional": 2.0}
            for e in ("ftx", "2025-10-10", "mc") for p in ("static", "dynamic")]
    figs = cascade_figures({"rows": rows})
    for fig in figs[:2]:
        assert fig.layout.xaxis.type == "category"
        assert list(fig.data[0].x) == ["ftx", "2025-10-10", "Monte Carlo (mean)"]


def test_paths_at_once_equal_paths_one_by_one():
    """Vectorising over paths (and carrying only the active paths between rounds) changes nothing."""
    rng = np.random.default_rng(8)
    P, T = 12, 20
    idx = 20_000.0 * np.exp(np.c_[np.zeros(P), np.cumsum(0.03 * rng.standard_t(3, (P, T - 1)), axis=1)])
    depth = np.exp(rng.normal(-2, 1, P))
    acc = _accounts(150, seed=2)
    cfg = MarketConfig(depth_ratio=depth, capacity_ratio=0.1)
    both = simulate_paths(acc, idx, cfg, record_paths=True)
    for p in range(P):
        one = simulate_paths(acc, idx[p:p + 1], replace(cfg, depth_ratio=depth[p]), record_paths=True)
        for f in ("bad_debt_c", "fund_end_c", "fees_c", "n_liquidations", "socialised_c", "uncovered_c"):
            assert getattr(one, f)[0] == getattr(both, f)[p], (p, f)
        assert one.last_path[0] == pytest.approx(both.last_path[p], rel=1e-12)


def test_ladder_liquidation_steps_down_one_risk_limit_tier():
    """Long 30 BTC @20,000 (600k notional, tier (500k, 10m]) with 20k cash, MM 2.5%. At 19,800:
    equity 14,000 < 0.025 x 594,000 = 14,850 -> reduce to the lower tier's cap 500k: x = 1 - 500/594."""
    acc = Accounts(np.array([30.0]), np.array([20_000.0]), np.zeros(1), np.array([20_000.0]),
                   np.array([2_000_000], dtype=np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64),
                   np.array([0.025]), np.array([0.05]), np.array([True]))
    cfg = MarketConfig(liquidation="ladder", fee_rate=0.0, depth_ratio=1e6, half_spread=0.0, mark=MarkRule("last"),
                       agents=OFF, fund_ratio=0.0)
    r = simulate_paths(acc, np.array([[20_000.0, 19_800.0]]), cfg)
    assert r.n_liquidations[0] == 1
    assert r.liquidated_notional[0] == pytest.approx(594_000.0 - 500_000.0, rel=1e-6)


def test_no_shock_no_liquidation_and_money_stays_put():
    acc = _accounts(200, seed=12)
    r = simulate_paths(acc, np.full((3, 40), 20_000.0), MarketConfig(depth_ratio=[0.05, 0.4, 2.0]))
    assert np.all(r.n_liquidations == 0) and np.all(r.bad_debt_c == 0) and np.all(r.fees_c == 0)
    assert np.all(r.fund_end_c == r.fund_start_c) and np.all(r.max_dislocation == 0)
