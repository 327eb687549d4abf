"""Liquidation cascade: a hand-computed run, exact conservation, no shock no cascade, depth monotonicity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margincal.errors import ConfigError
from margincal.stress.cascade import (
    DepthProfile,
    Population,
    draw_population,
    population_for_policy,
    simulate_cascade,
    simulate_cascade_reference,
    walk_reference,
)

# Ladder: 1 BTC per side at 1%, 2%, ..., 10% from the fundamental price.
LADDER = DepthProfile(tuple(0.01 * k for k in range(1, 11)), (1.0,) * 10)


def test_book_walk_by_hand():
    # ref 100: bids 99, 98, 97 ... one BTC each.
    # sell 1 from V=0.5: 0.5 @ 99 + 0.5 @ 98 = 49.5 + 49 = 98.5
    assert walk_reference(LADDER, 100.0, 0.5, 1.0) == pytest.approx((98.5, 1.5))
    assert float(LADDER.G(100.0, 1.5) - LADDER.G(100.0, 0.5)) == pytest.approx(98.5)
    # sell 2 from V=-0.5 (asks 101, 102 consumed by half a unit): 0.5 @ 101 + 1 @ 99 + 0.5 @ 98 = 50.5+99+49
    assert walk_reference(LADDER, 100.0, -0.5, 2.0)[0] == pytest.approx(198.5)
    assert float(LADDER.G(100.0, 1.5) - LADDER.G(100.0, -0.5)) == pytest.approx(198.5)
    # buy 3 from V=1.5: 0.5 @ 98 + 1 @ 99 + 1 @ 101 + 0.5 @ 102 = 49 + 99 + 101 + 51 = 300 paid
    assert walk_reference(LADDER, 100.0, 1.5, -3.0)[0] == pytest.approx(-300.0)
    # beyond the ladder (10 BTC), the rest trades at the last level 90: sum_k (100 - k) + 10 * 90 = 945 + 900
    assert float(LADDER.G(100.0, 20.0)) == pytest.approx(1845.0)
    # mark = last traded price: 99 after exactly 1 BTC sold, 98 after 1.5
    assert LADDER.mark(100.0, 1.0) == pytest.approx(99.0)
    assert LADDER.mark(100.0, 1.5) == pytest.approx(98.0)
    assert LADDER.mark(100.0, 0.0) == 100.0


@settings(max_examples=60, deadline=None)
@given(v0=st.floats(-15, 15), q=st.floats(-15, 15), ref=st.floats(10, 1e5))
def test_vectorised_walk_matches_level_by_level_walk(v0, q, ref):
    cash, v1 = walk_reference(LADDER, ref, v0, q)
    assert v1 == pytest.approx(v0 + q)
    assert float(LADDER.G(ref, v0 + q) - LADDER.G(ref, v0)) == pytest.approx(cash, rel=1e-9, abs=1e-9 * ref)


def _hand_population() -> Population:
    # accounts: A long 2 @100 with 15, B long 1 @100 with 12, C long 1 @100 with 20, D short 4 @100 with 100
    return Population.from_lists([2, 1, 1, -4], [100, 100, 100, 100], [15, 12, 20, 100])


def test_hand_computed_cascade_step_by_step():
    """Three longs and one short, MM 5%, fee 0.5%, fund $1.00, path 100 -> 92 -> 85, resilience 0.5.

    Step 0 (ref 100): nobody below MM (A: 15 >= 0.05*200 = 10).
    Step 1 (ref 92, V = 0, mark 92):
      A equity 15 + 2*(92-100) = -1  < 0.05*2*92 = 9.2   -> triggered, trigger price (200-15)/1.9 = 97.37
      B equity 12 - 8 = 4            < 0.05*92 = 4.6     -> triggered, trigger price 88/0.95 = 92.63
      C equity 20 - 8 = 12 >= 4.6; D (short) 100 + 32 = 132 fine.
      Order A then B (higher trigger first).
      A through the book would sell 1 @ 91.08 + 1 @ 90.16 = 181.24: pnl = 18124 - 20000 = -1876 cents,
        equity 1500 - 1876 = -376 cents > fund 100 cents -> ADL instead.
        ADL at mark 92: equity at mark 1500 + 100*2*(92-100) = -100 cents -> insolvent: bankruptcy price
        100 - 15/2 = 92.5; A ends at 0; socialised 100 cents, taken from D (the only profitable short):
        D closes 2 of its 4 at 92.5: pnl at mark 2*(100-92)*100 = 1600, minus transfer 100 = 1500 cents.
      B sells 1 into the book from V=0: 1 @ 92*0.99 = 91.08. pnl = 9108 - 10000 = -892, equity 1200-892 = 308,
        fee floor(0.005 * 91.08 * 100) = floor(45.54) = 45 -> fund 100 + 45 = 145, B keeps 263. V = 1, mark 91.08.
      Round 2 at 91.08: C 20 - 8.92 = 11.08 >= 4.554; D (-2) 116 + 2*(100-91.08) = 133.84: nothing. 1 round.
    Step 2 (ref 85, V = 1 * (1 - 0.5) = 0.5, mark 85*0.99 = 84.15):
      C equity 20 - 15.85 = 4.15 < 0.05*84.15 = 4.2075 -> triggered.
      C sells 1 from V=0.5: 0.5 @ 84.15 + 0.5 @ 83.30 = 83.725. pnl = 8372.5 - 10000 = -1627.5 -> floor -1628,
        equity 2000 - 1628 = 372, fee floor(0.005 * 83.725 * 100) = floor(41.8625) = 41 -> fund 186, C keeps 331.
      V = 1.5, mark 85*0.98 = 83.30. D: 116 + 2*(100-83.3) = 149.4 fine.
    Totals: bad debt 100 (all socialised), fund paid 0, fees 86, fund 100 -> 186, ADL 2 BTC = 185 USDT.
    External market paid the realised P&L: -(-1500 + 1500 - 892 - 1628) = 2520 cents.
    """
    r = simulate_cascade(_hand_population(), [100, 92, 85], LADDER, mm_rate=0.05, insurance_fund=1.0,
                         fee_rate=0.005, resilience=0.5, record_events=True)
    ev = r.events
    assert [e["account"] for e in ev] == [0, 1, 2]
    assert [e["kind"] for e in ev] == ["adl", "market", "market"]
    a, b, c = ev
    assert a["price"] == pytest.approx(92.5) and a["mark"] == pytest.approx(92.0)
    assert (a["pnl_c"], a["bad_debt_c"], a["counterparties"], a["counter_pnl_c"], a["transfers_c"]) == (
        -1500, 100, [3], [1500], [100])
    assert b["cash"] == pytest.approx(91.08) and (b["pnl_c"], b["fee_c"], b["bad_debt_c"]) == (-892, 45, 0)
    assert c["cash"] == pytest.approx(83.725) and c["V_before"] == pytest.approx(0.5)
    assert (c["pnl_c"], c["fee_c"]) == (-1628, 41)
    assert list(r.rounds_per_step) == [0, 1, 1]
    assert r.mark_path == pytest.approx([100.0, 91.08, 83.30])
    assert (r.bad_debt_c, r.adl_socialised_c, r.fund_paid_c, r.fees_c, r.fund_end_c) == (100, 100, 0, 86, 186)
    assert r.adl_qty == pytest.approx(2.0) and r.adl_notional == pytest.approx(185.0)
    assert list(r.final_collateral_c) == [0, 263, 331, 11500]
    assert r.final_qty == pytest.approx([0, 0, 0, -2])
    assert r.external_c == 2520
    assert r.conservation_error_c() == 0
    ref = simulate_cascade_reference(_hand_population(), [100, 92, 85], LADDER, mm_rate=0.05, insurance_fund=1.0,
                                     fee_rate=0.005, resilience=0.5)
    assert (ref["bad_debt_c"], ref["fees_c"], ref["fund_end_c"], ref["external_c"]) == (100, 86, 186, 2520)


def test_fund_pays_bad_debt_when_it_can():
    # Same as above but a fund of $10: A goes through the book (bad debt 376 cents paid by the fund).
    # A: cash 91.08 + 90.16 = 181.24, pnl -1876, equity -376 -> fund 1000 - 376 = 624, V = 2, mark 90.16.
    # B (triggered in the same round: 4 < 4.6 at 92) sells 1 after A, from V=2 @ 92*0.97 = 89.24:
    #   pnl -1076, equity 124, fee floor(44.62) = 44 -> fund 668. V = 3, mark 89.24.
    # Round 2 at 89.24: C 20 - 10.76 = 9.24 >= 4.462: stop (one round).
    r = simulate_cascade(_hand_population(), [100, 92], LADDER, mm_rate=0.05, insurance_fund=10.0,
                         fee_rate=0.005, resilience=0.5, record_events=True)
    assert [e["kind"] for e in r.events] == ["market", "market"]
    assert (r.events[0]["pnl_c"], r.events[0]["bad_debt_c"]) == (-1876, 376)
    assert (r.events[1]["pnl_c"], r.events[1]["fee_c"]) == (-1076, 44)
    assert (r.bad_debt_c, r.fund_paid_c, r.fund_end_c, r.fund_min_c) == (376, 376, 668, 624)
    assert r.fund_drawdown == pytest.approx(3.76)
    assert list(r.rounds_per_step) == [0, 1]
    assert r.conservation_error_c() == 0


def _random_population(seed: int, n: int = 60) -> Population:
    d = draw_population(n, seed=seed, median_notional=2_000.0)
    return population_for_policy(d, 100.0, 0.02)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_conservation_to_the_cent_with_adl(seed):
    pop = _random_population(seed)
    depth = DepthProfile.linear(0.005 * float(np.abs(pop.qty).sum()), step=0.001, max_offset=0.5)
    path = [100, 96, 91, 97, 88, 93, 104]
    r = simulate_cascade(pop, path, depth, mm_rate=0.01, insurance_fund=50.0, fee_rate=0.005, resilience=0.3,
                         record_events=True)
    assert r.n_liquidated > 0 and r.adl_events > 0  # the case exercises the ADL branch
    # identities, exact in integer cents
    assert r.bad_debt_c == r.fund_paid_c + r.adl_socialised_c + r.uncovered_c
    assert r.fund_end_c == r.fund_start_c + r.fees_c - r.fund_paid_c
    assert r.conservation_error_c() == 0
    # recompute from the event log, independently of the simulator's running totals
    assert sum(e["bad_debt_c"] for e in r.events) == r.bad_debt_c
    assert sum(e["fee_c"] for e in r.events) == r.fees_c
    for e in r.events:
        if e["kind"] == "market":
            q, i = e["qty"], e["account"]
            assert e["pnl_c"] == math.floor(round(100 * (e["cash"] - q * pop.entry[i]), 6))
            assert r.final_collateral_c[i] >= 0
        if e["kind"] == "adl":
            assert sum(e["transfers_c"]) == e["bad_debt_c"]  # socialised loss allocated to the cent
            assert sum(e["counter_qty"]) == pytest.approx(-e["qty"])
            assert r.final_collateral_c[e["account"]] >= 0


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_fast_matches_reference(seed):
    pop = _random_population(seed, n=40)
    depth = DepthProfile.linear(0.01 * float(np.abs(pop.qty).sum()), step=0.002, max_offset=0.5)
    path = [100, 95, 90, 94, 86]
    kw = dict(mm_rate=0.01, insurance_fund=20.0, fee_rate=0.005, resilience=0.4)
    fast = simulate_cascade(pop, path, depth, **kw)
    ref = simulate_cascade_reference(pop, path, depth, **kw)
    assert fast.n_liquidated == ref["n_liquidated"]
    assert fast.rounds == ref["rounds"]
    assert fast.adl_events == ref["adl_events"]
    # per liquidation the two may differ by float noise at a cent boundary: allow one cent per liquidation
    tol = fast.n_liquidated + 1
    assert abs(fast.bad_debt_c - ref["bad_debt_c"]) <= tol
    assert abs(fast.fund_end_c - ref["fund_end_c"]) <= tol
    assert abs(fast.external_c - ref["external_c"]) <= tol
    assert fast.mark_path == pytest.approx(ref["marks"])


def test_no_shock_no_cascade():
    pop = _random_population(11, n=200)
    depth = DepthProfile.linear(1.0, step=0.001)
    r = simulate_cascade(pop, [100.0] * 24, depth, mm_rate=0.01, insurance_fund=10.0)
    assert r.n_liquidated == 0 and r.rounds == 0 and r.bad_debt_c == 0
    assert r.fund_end_c == r.fund_start_c and r.external_c == 0
    assert np.all(r.mark_path == 100.0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), m1=st.floats(0.2, 5.0), m2=st.floats(0.2, 5.0),
       shock=st.floats(0.70, 0.99))
def test_more_depth_never_more_bad_debt(seed, m1, m2, shock):
    """One down shock, a fund large enough that ADL is never needed: bad debt is non-increasing in depth."""
    lo, hi = sorted((m1, m2))
    pop = _random_population(seed, n=80)
    base = DepthProfile.linear(0.01 * float(np.abs(pop.qty).sum()), step=0.002, max_offset=0.6)
    kw = dict(mm_rate=0.01, insurance_fund=1e9, fee_rate=0.005, resilience=0.5)
    shallow = simulate_cascade(pop, [100.0, 100.0 * shock], base.scaled(lo), **kw)
    deep = simulate_cascade(pop, [100.0, 100.0 * shock], base.scaled(hi), **kw)
    assert deep.bad_debt_c <= shallow.bad_debt_c
    assert deep.n_liquidated <= shallow.n_liquidated
    assert deep.min_mark >= shallow.min_mark


def test_inputs_are_validated():
    pop = _random_population(1, n=5)
    with pytest.raises(ConfigError, match="path"):
        simulate_cascade(pop, [], LADDER)
    with pytest.raises(ConfigError, match="mm_rate"):
        simulate_cascade(pop, [100, 99], LADDER, mm_rate=[0.01, 0.01, 0.01])
    with pytest.raises(ConfigError, match="offsets"):
        DepthProfile((0.02, 0.01), (1.0, 1.0))


def test_population_leverage_cap_and_draw():
    d = draw_population(20_000, seed=3)
    # leverage brackets: shares close to the OI shares of the source (2.77, 3.70, 1.16 of 7.63 bn)
    b = np.digitize(d.desired_leverage, [3.0, 7.0])
    shares = np.bincount(b, minlength=3) / b.size
    assert shares == pytest.approx([2.77 / 7.63, 3.70 / 7.63, 1.16 / 7.63], abs=0.015)
    pop = population_for_policy(d, 20_000.0, 0.10)
    assert pop.leverage.max() <= 10.0 + 1e-12
    # collateral = notional / leverage, to the cent
    assert np.abs(pop.collateral_c / 100.0 - d.notional / pop.leverage).max() <= 0.005 + 1e-9
