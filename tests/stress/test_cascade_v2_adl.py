"""Cascade v2: ranked auto-deleveraging (issue 19 items 2/6 and 7), checked by hand and against v1's ranking."""

from __future__ import annotations

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
    simulate_cascade,
    simulate_paths,
)

OFF = Agents(market_makers=False, arbitrageurs=False, stop_losses=False)
_CFG = MarketConfig(liquidation="full", fee_rate=0.0, fund_ratio=0.0, half_spread=0.0, depth_ratio=0.3,
                    mark=MarkRule("last"), agents=OFF)


def _linear(qty, entry, cash, mm=0.05):
    n = len(qty)
    return Accounts(np.asarray(qty, float), np.asarray(entry, float), np.zeros(n), np.asarray(entry, float),
                    np.round(np.asarray(cash, float) * 100).astype(np.int64), np.zeros(n, np.int64),
                    np.zeros(n, np.int64), np.full(n, mm), np.full(n, 0.1), np.ones(n, bool))


def _hand():
    # A long 2 @100 cash 15; D1 short 1 @100 cash 100; D2 short 1 @110 cash 10; D3 short 2 @100 cash 20
    return _linear([2, -1, -1, -2], [100, 100, 110, 100], [15, 100, 10, 20])


def test_ranked_adl_by_hand():
    """Path 100 -> 90, mark = last, no fee, insurance fund 0, MM 5%.

    At 90 (the book untouched, last = 90): A's equity 15 + 2 (90 - 100) = -5 < MM: bankrupt, and the fund (0)
    cannot pay, so A goes to ADL instead of the book. A is closed at the mark 90: -2000 cents -> cash -500.
    Counterparties (shorts in profit at 90), score = profit ratio x effective leverage
    = (upnl / wallet) x (notional / (wallet + upnl)):
      D1: upnl 10, wallet 100: 0.1 x 90 / 110 = 0.082
      D2: upnl 20, wallet 10:  2.0 x 90 / 30  = 6.0
      D3: upnl 20, wallet 20:  1.0 x 180 / 40 = 4.5
    Order D2, D3, D1; A's 2 BTC are absorbed by D2 (all 1) and D3 (1 of 2); D1 untouched.
    They close at A's bankruptcy price 100 - 15 / 2 = 92.5: D2 (110 - 92.5) x 1 = 17.50 -> cash 10 + 17.50 = 27.50;
    D3 (100 - 92.5) x 1 = 7.50 -> cash 27.50, 1 BTC short left; A ends at 0.
    (Engine: both close at the mark and pay the 500-cent deficit pro rata to the quantity taken: 250 each.)
    Bad debt 500 cents, all socialised, ADL volume 2 x 90 = 180 USD; external market paid -(-2000 + 2000 + 1000).
    """
    r = simulate_paths(_hand(), np.array([[100.0, 90.0]]), _CFG, record_paths=True)
    assert (r.bad_debt_c[0], r.socialised_c[0], r.uncovered_c[0], r.fund_paid_c[0]) == (500, 500, 0, 0)
    assert r.adl_notional[0] == pytest.approx(180.0)
    assert r.n_liquidations[0] == 1 and r.liquidated_notional[0] == pytest.approx(180.0)
    assert r.last_path[0, 1] == pytest.approx(90.0)  # ADL does not go through the book
    assert r.conservation_c[0] == 0
    fin = r.final
    assert list(fin["cash_c"][0]) == [0, 10_000, 2_750, 2_750]
    assert list(fin["lin_qty"][0]) == [0.0, -1.0, 0.0, -1.0]


def test_pro_rata_option_keeps_the_v1_clawback():
    """``adl="pro_rata"``: A goes through the book; the unpaid debt is taken from the shorts' cash pro rata."""
    r = simulate_paths(_hand(), np.array([[100.0, 90.0]]), replace(_CFG, adl="pro_rata"))
    assert r.bad_debt_c[0] > 500 and r.socialised_c[0] == r.bad_debt_c[0] and r.conservation_c[0] == 0
    ranked = simulate_paths(_hand(), np.array([[100.0, 90.0]]), _CFG)
    assert ranked.bad_debt_c[0] < r.bad_debt_c[0]  # no book slippage on the bankrupt position


def test_bad_adl_option_is_refused():
    from margincal.errors import ConfigError

    with pytest.raises(ConfigError, match="adl"):
        MarketConfig(adl="random")


@pytest.mark.parametrize("seed", range(6))
def test_ranked_adl_agrees_with_v1_on_one_path(seed):
    """One bankrupt long and random shorts in profit, one step: v1's ``_adl`` and v2 pick the same
    counterparties in the same order and leave every account with the same cash and position."""
    rng = np.random.default_rng(seed)
    k = 6
    short_q = -np.round(rng.uniform(0.2, 2.0, k), 3)
    short_e = np.round(rng.uniform(95, 130, k), 2)
    short_c = np.round(rng.uniform(5, 200, k), 2)
    qty, entry, cash = [3.0, *short_q], [100.0, *short_e], [20.0, *short_c]
    path = [100.0, 90.0]
    v1 = simulate_cascade(Population.from_lists(qty, entry, cash), path,
                          DepthProfile(tuple(0.001 * i for i in range(1, 501)), (1e6,) * 500),
                          mm_rate=0.05, insurance_fund=0.0, fee_rate=0.0, resilience=0.5, record_events=True)
    assert [e["kind"] for e in v1.events] == ["adl"]
    v2 = simulate_paths(_linear(qty, entry, cash), np.array([path]), _CFG)
    fin = v2.final
    # to the cent, except that when two largest-remainder fractions tie in exact arithmetic (seed 5: 1000
    # cents split 1.649 : 0.89 : 0.461 of 3 BTC, all remainders 2/3) float noise decides who pays the spare cent
    assert np.abs(fin["cash_c"][0] - v1.final_collateral_c).max() <= 1
    assert fin["cash_c"][0].sum() == v1.final_collateral_c.sum()
    assert sum(fin["cash_c"][0] != v1.final_collateral_c) <= 2
    assert fin["lin_qty"][0] == pytest.approx(v1.final_qty, abs=1e-12)
    assert v2.adl_notional[0] == pytest.approx(v1.adl_qty * 90.0)
    assert v2.socialised_c[0] == v1.adl_socialised_c and v2.conservation_c[0] == 0


def test_adl_runs_on_many_paths_with_exact_conservation():
    """Random population, fat-tailed paths, a thin fund: ranked ADL fires on many paths, money is conserved
    to the cent, satoshi and stablecoin cent on every path, and the bad-debt identity holds."""
    from margincal.stress.cascade import build_accounts, draw_population

    rng = np.random.default_rng(21)
    P, T = 48, 24
    idx = 20_000.0 * np.exp(np.c_[np.zeros(P), np.cumsum(0.03 * rng.standard_t(3, (P, T - 1)), axis=1)])
    d = draw_population(250, seed=4)
    acc = build_accounts(d.notional, d.side, d.desired_leverage, 20_000.0, im_rate=0.05, mm_rate=0.02, seed=4)
    for liq in ("full", "partial", "ladder"):
        cfg = MarketConfig(liquidation=liq, fund_ratio=0.0005, depth_ratio=np.exp(rng.normal(-2.5, 1, P)),
                           capacity_ratio=0.05, funding_every=4)
        r = simulate_paths(acc, idx, cfg, stable=np.clip(1 - 0.1 * rng.random((P, T)), 0.6, 1), funding=3e-4)
        assert (r.adl_notional > 0).sum() >= 5 and r.socialised_c.sum() > 0
        assert np.all(r.conservation_c == 0) and np.all(r.conservation_sats == 0)
        assert np.all(r.conservation_stable == 0)
        assert np.all(r.bad_debt_c == r.fund_paid_c + r.socialised_c + r.uncovered_c)
        assert np.all(r.fund_end_c == r.fund_start_c + r.fees_c - r.fund_paid_c)


_INDEX_MARK = MarkRule(clamp=1e-9)  # mark = index: the book's dislocation cannot feed back into the triggers


@pytest.mark.parametrize("mm", [0.005, 0.025])
def test_ftx_replay_bad_debt_does_not_rise_with_depth_under_v2_defaults(mm):
    """Issue 19 item 7: the FTX week (bundled index), 400 accounts drawn with seed 7, v2 defaults (mark trigger,
    partial liquidation, agents on with the measured replenishment speeds, ranked ADL), one path per depth ratio.

    With the mark clamped to the index (the book cannot feed back into the triggers) bad debt is non-increasing
    in depth from 2% of OI up. With the default mark (index + 30 s EMA of the basis) it is non-increasing from
    10% of OI up and largest at 2%; between 2% and 10% a liquidation wave that runs away within a step can clear
    the leveraged accounts early (next test). Measured when written (% of OI, 0.02 ... 1.6):
    default mark, MM 0.5%: 2.46 2.02 0.83 0.65 0.56 0.52 0.50; MM 2.5%: 4.86 0.41 0.48 0.29 0.24 0.22 0.21;
    index mark, MM 0.5%: 1.98 1.21 0.84 0.66 0.57 0.52 0.50; MM 2.5%: 2.03 0.89 0.44 0.29 0.24 0.22 0.21.
    Below 2% the book's impact clip binds (the test after next): at 0.8% of OI with MM 2.5% bad debt is 4.45%,
    below the 4.86% at 2%."""
    from margincal.stress.cascade import bundled_index_and_perp
    from margincal.stress.cascade.committee import EVENTS, Policy, _accounts

    idx, _perp, _ = bundled_index_and_perp(*EVENTS["ftx"])
    grid = np.array([0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6])
    acc = _accounts(400, 7, float(idx[0]), Policy(mm))
    paths = np.broadcast_to(idx, (grid.size, idx.size))
    r = simulate_paths(acc, paths, MarketConfig(depth_ratio=grid))
    bad = r.bad_debt_c
    assert bad[0] > 0 and bad[0] == bad.max() and np.all(np.diff(bad[2:]) <= 0), bad
    assert np.all(r.conservation_c == 0)
    flat = simulate_paths(acc, paths, MarketConfig(depth_ratio=grid, mark=_INDEX_MARK)).bad_debt_c
    assert flat[0] > 0 and np.all(np.diff(flat) <= 0), flat


def test_more_depth_more_bad_debt_on_ftx_is_an_early_runaway_wave_through_the_mark():
    """Issue 19 item 7, the "more depth, more bad debt" left on the FTX path under the measured replenishment
    speeds (MM 2.5%, 400 accounts, v2 defaults): 0.41% of OI at depth 0.05 x OI against 0.72% at 0.07.

    Mechanism: the mark (index + 30 s EMA of the basis) follows the last price the liquidations push down, so
    each 5-second round's liquidations can bring the next accounts below maintenance; a step's chain goes on
    while every round finds at least one more. On the 0.05 book the chain at step 170 (index 18,386) runs away:
    263 liquidations at a 13.07% dislocation, and through step 173 it has 350 liquidations (bad debt 0.41% of
    OI) against 113 (0.05%) on the 0.07 book, whose chains stopped after a few rounds (dislocation at most
    2.34%). The index then falls 8.3% in step 174 (18,723 -> 17,167): the 0.05 book has nobody leveraged left
    to liquidate (no liquidation in that step), the 0.07 book liquidates 166 accounts at a 12.9% dislocation,
    price, adding 0.67% of OI of bad debt - more than the 0.05 book's whole week. Early deleveraging at a
    higher price beats late deleveraging into a thin book; which depth's chain runs away is a threshold
    effect (the slower measured arbitrage, 0.1 x D0 a minute, keeps the last price dislocated longer within
    a step, so chains run further than with the assumed 0.5).
    Pinned: the order under the defaults, the early wave, the step-174 bad debt; with the mark on the index
    (0.89% and 0.59%) or with the assumed speeds rho 4 / arb 0.5 (1.36% and 0.63%) the order is restored."""
    from margincal.stress.cascade import bundled_index_and_perp
    from margincal.stress.cascade.committee import EVENTS, Policy, _accounts

    idx, _perp, _ = bundled_index_and_perp(*EVENTS["ftx"])
    acc = _accounts(400, 7, float(idx[0]), Policy(0.025))
    depth = np.array([0.05, 0.07])
    cfg = MarketConfig(depth_ratio=depth)
    week = simulate_paths(acc, np.broadcast_to(idx, (2, idx.size)), cfg)
    before = simulate_paths(acc, np.broadcast_to(idx[:174], (2, 174)), cfg)  # steps 0..173
    oi = week.population_notional
    assert week.bad_debt_c[0] < week.bad_debt_c[1], week.bad_debt_c
    assert idx[174] / idx[173] - 1 < -0.08
    # the early runaway wave on the thinner book
    assert before.n_liquidations[0] > 3 * before.n_liquidations[1], before.n_liquidations
    assert before.max_dislocation[0] > 0.1 and before.max_dislocation[1] < 0.03, before.max_dislocation
    assert before.bad_debt_c[0] > before.bad_debt_c[1]
    # the thicker book meets the step-174 drop still leveraged: its bad debt from there on exceeds the
    # thinner book's whole week
    assert week.bad_debt_c[1] - before.bad_debt_c[1] > week.bad_debt_c[0]
    assert week.bad_debt[1] - before.bad_debt[1] > 0.006 * oi
    assert np.all(week.conservation_c == 0)
    # switching the feedback off (mark on the index) or back to the fast assumed speeds restores the order
    flat = simulate_paths(acc, np.broadcast_to(idx, (2, idx.size)), replace(cfg, mark=_INDEX_MARK))
    assert flat.bad_debt_c[0] > flat.bad_debt_c[1], flat.bad_debt_c
    fast = simulate_paths(acc, np.broadcast_to(idx, (2, idx.size)),
                          replace(cfg, agents=Agents(rho_per_hour=4.0, arb_per_minute=0.5)))
    assert fast.bad_debt_c[0] > fast.bad_debt_c[1], fast.bad_debt_c


def test_below_two_percent_depth_the_impact_clip_binds_and_sets_the_order(monkeypatch):
    """Issue 19 item 7, the remaining "more depth, more bad debt" on the FTX path (MM 2.5%): at 0.4%-2% of OI
    the simulated flow pushes the book to its impact clip (the price never falls more than 60% below the
    reference: the last level of the book), so every such book reaches the same lowest price and a thinner
    book no longer makes executions worse; what differs is only when each account meets that price, and
    bad debt is not ordered by depth there. Pinned: with the default clip those replays all dislocate by
    exactly the clip and bad debt is not monotone, and it is strictly decreasing from 2% up where the clip
    does not bind. With the clip moved to 99% the books that never reached 60% are unchanged, the 2% book no
    longer reaches it (65.1%) and falls in line, but the 0.4%-1.2% books (the measured arbitrage, 0.1 x D0 a
    minute, is too slow to refill them) reach any clip: their bad debt is set by the clip's level and still
    not ordered by depth. With the mark on the index (the book cannot feed back into the triggers) bad debt
    is strictly decreasing in depth even with the 60% clip binding: the clip orders bad debt by when each
    account meets it, and that timing comes from the mark following the last price.
    Measured when written (% of OI at 0.4, 0.8, 1.2, 2, 3, 5% depth): clip 60% 4.86 4.45 5.51 4.86 4.17
    0.41; clip 99% 18.85 31.86 12.29 4.88 4.17 0.41; mark on the index, clip 60%: 2.70 2.38 2.14 2.03 1.56
    0.89. (With the assumed speeds rho 4 / arb 0.5: clip 60% 4.92 4.45 5.29 5.04 3.55 1.36, clip 99% 65.08
    37.64 9.60 6.76 3.55 1.36, strictly decreasing.)"""
    from margincal.stress.cascade import bundled_index_and_perp, market
    from margincal.stress.cascade.committee import EVENTS, Policy, _accounts

    idx, _perp, _ = bundled_index_and_perp(*EVENTS["ftx"])
    grid = np.array([0.004, 0.008, 0.012, 0.02, 0.03, 0.05])
    acc = _accounts(400, 7, float(idx[0]), Policy(0.025))
    paths = np.broadcast_to(idx, (grid.size, idx.size))
    r = simulate_paths(acc, paths, MarketConfig(depth_ratio=grid))
    clipped = r.max_dislocation >= market._CLIP - 1e-9
    assert clipped[:4].all() and not clipped[4:].any(), r.max_dislocation
    assert np.any(np.diff(r.bad_debt_c) > 0), r.bad_debt_c  # not monotone while the clip binds
    assert np.all(np.diff(r.bad_debt_c[3:]) < 0)  # monotone once it does not
    flat = simulate_paths(acc, paths, MarketConfig(depth_ratio=grid, mark=_INDEX_MARK))
    assert flat.max_dislocation[0] >= market._CLIP - 1e-9, flat.max_dislocation  # the clip still binds
    assert np.all(np.diff(flat.bad_debt_c) < 0), flat.bad_debt_c
    monkeypatch.setattr(market, "_CLIP", 0.99)
    wide = simulate_paths(acc, paths, MarketConfig(depth_ratio=grid))
    assert np.array_equal(wide.bad_debt_c[4:], r.bad_debt_c[4:])  # books that never reach the clip: unchanged
    assert np.all(wide.max_dislocation[:3] >= 0.99 - 1e-9) and wide.max_dislocation[3] < 0.99
    assert np.all(wide.bad_debt_c[:3] > r.bad_debt_c[:3])  # the clip's level sets their bad debt
    assert np.any(np.diff(wide.bad_debt_c[:3]) > 0) and np.all(np.diff(wide.bad_debt_c[2:]) < 0), wide.bad_debt_c
    assert np.all(wide.conservation_c == 0)
