"""Historical (FHS ES) portfolio margin on the bundled real daily data."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse

from margincal.errors import CalibrationError, ConfigError, DataError
from margincal.margin.portfolio import (
    GapWarning,
    HistoricalPortfolioMargin,
    InstrumentSpec,
    load_daily_closes,
    parse_instrument,
    portfolio_margin,
    portfolio_margin_reference,
)
from margincal.risk.measures import expected_shortfall
from margincal.vol.ewma import ewma_variance_reference

pytestmark = pytest.mark.filterwarnings("ignore::margincal.margin.portfolio.historical.GapWarning")


@pytest.fixture(scope="module")
def closes():
    return load_daily_closes(["BTC", "ETH", "SOL"])


@pytest.fixture(scope="module")
def model(closes):
    return HistoricalPortfolioMargin(level=0.99, horizon_hours=24.0).fit(closes)


def test_bundled_history_has_gaps_and_says_so(closes):
    # the 2026 rows of the Binance daily files miss 6 days (src/margincal/datasets/PROVENANCE.md): 4 joint gaps remain
    with pytest.warns(GapWarning, match="4 of 2051 returns"):
        HistoricalPortfolioMargin().fit(closes)


def test_scenarios_are_current_vol_times_joint_residual_rows(closes, model):
    r = np.diff(np.log(closes.to_numpy()), axis=0)
    z_cols, s_next = [], []
    for u in range(3):
        v = ewma_variance_reference(r[:, u], 0.94, 30)  # the plain loop, independent of lfilter
        z_cols.append(r[30:, u] / np.sqrt(v[:-1][30:]))
        s_next.append(math.sqrt(v[-1]))
    z = np.column_stack(z_cols)
    np.testing.assert_allclose(model.scenario_returns_, z * np.array(s_next), rtol=1e-10)
    # whole rows are kept: the cross-asset dependence of the data survives (BTC/ETH residual corr ~0.82)
    c = np.corrcoef(model.scenario_returns_.T)
    assert c[0, 1] == pytest.approx(np.corrcoef(z.T)[0, 1], abs=1e-12)
    assert c[0, 1] > 0.7
    # scenario labels carry the date and the moves
    assert model.scenario_dates_[-1].strftime("%Y-%m-%d") == "2026-03-30"


def test_single_perp_equals_fhs_es_of_the_long_loss(closes, model):
    pnl = model.scenario_pnl([parse_instrument("BTC-PERP")])
    spot = closes["BTC"].iloc[-1]
    res = portfolio_margin({"BTC-PERP": 2.0}, pnl)
    losses = -2.0 * spot * np.expm1(model.scenario_returns_[:, 0])
    assert res.im[0] == pytest.approx(expected_shortfall(losses, 0.99), rel=1e-12)
    assert res.mm[0] == pytest.approx(0.5 * res.im[0])
    worst = int(np.argmax(losses))
    assert res.driving_label[0].startswith(model.scenario_dates_[worst].strftime("%Y-%m-%d"))


def test_option_revalued_at_shocked_forward_with_unchanged_vol(model):
    import QuantLib as ql  # the independent reference: a test dependency, never skipped

    from margincal.margin.portfolio import MarketState

    mkt = model.default_market(flat_vol=0.5)
    spec = parse_instrument("ETH-26JUN26-2500-C")
    pnl = model.scenario_pnl([spec], mkt)
    T = spec.years_to_expiry(mkt.valuation_time)
    F = mkt.spot["ETH"]
    j = 100
    F1 = F * math.exp(model.scenario_returns_[j, 1])
    sd = 0.5 * math.sqrt(T)
    ref = ql.blackFormula(ql.Option.Call, 2500.0, F1, sd) - ql.blackFormula(ql.Option.Call, 2500.0, F, sd)
    assert pnl.matrix[0, j] == pytest.approx(ref, abs=1e-8)
    assert isinstance(mkt, MarketState)


def test_offset_formula_between_sum_of_groups_and_joint(model):
    specs = [parse_instrument("BTC-PERP"), parse_instrument("ETH-PERP")]
    pnl = model.scenario_pnl(specs)
    # a long BTC / short ETH spread, and each leg alone
    book = np.array([[1.0, -30.0], [1.0, 0.0], [0.0, -30.0]])
    joint = portfolio_margin(book, dataclasses.replace(pnl, offset=1.0))
    none = portfolio_margin(book, dataclasses.replace(pnl, offset=0.0))
    part = portfolio_margin(book, dataclasses.replace(pnl, offset=0.25))
    btc, eth = joint.im[1], joint.im[2]
    assert none.im[0] == pytest.approx(btc + eth, rel=1e-12)  # offset 0: sum of the group margins
    assert joint.im[0] < 0.8 * (btc + eth)  # correlated legs offset (BTC/ETH residual corr ~0.8)
    assert part.im[0] == pytest.approx(0.25 * joint.im[0] + 0.75 * (btc + eth), rel=1e-12)


def test_same_offset_group_nets_fully_even_with_zero_offset(model):
    specs = [InstrumentSpec("BTC-PERP", "perpetual", "BTC", offset_group="majors"),
             InstrumentSpec("ETH-PERP", "perpetual", "ETH", offset_group="majors")]
    pnl = dataclasses.replace(model.scenario_pnl(specs), offset=0.0)
    one_group = portfolio_margin(np.array([[1.0, -30.0]]), pnl)
    joint = portfolio_margin(np.array([[1.0, -30.0]]), dataclasses.replace(pnl, offset=1.0))
    assert one_group.im[0] == pytest.approx(joint.im[0], rel=1e-12)


def test_fast_path_equals_loop_with_groups(model):
    names = ["BTC-PERP", "ETH-PERP", "SOL-PERP", "BTC-26JUN26-70000-C", "ETH-26JUN26-2000-P"]
    specs = [parse_instrument(n) for n in names]
    specs[2] = InstrumentSpec("SOL-PERP", "perpetual", "SOL", offset_group="ETH")  # SOL nets with ETH
    pnl = dataclasses.replace(model.scenario_pnl(specs, model.default_market(flat_vol=0.55)), offset=0.4)
    rng = np.random.default_rng(11)
    P = sparse.random(40, len(names), density=0.5, random_state=rng, data_rvs=lambda n: rng.normal(0, 5, n))
    fast = portfolio_margin(P, pnl, block_size=16)
    ref = portfolio_margin_reference(P, pnl)
    np.testing.assert_allclose(fast.im, ref.im, rtol=1e-10, atol=1e-8)
    np.testing.assert_array_equal(fast.driving_scenario, ref.driving_scenario)


def test_horizon_uses_overlapping_sums_or_sqrt(closes):
    m3 = HistoricalPortfolioMargin(horizon_hours=72.0).fit(closes)
    m1 = HistoricalPortfolioMargin(horizon_hours=24.0).fit(closes)
    z = m1.scenario_returns_ / m1.sigma_next_.to_numpy()
    np.testing.assert_allclose(m3.scenario_returns_, (z[:-2] + z[1:-1] + z[2:]) * m1.sigma_next_.to_numpy(),
                               rtol=1e-10)
    ms = HistoricalPortfolioMargin(horizon_hours=72.0, scaling="sqrt").fit(closes)
    np.testing.assert_allclose(ms.scenario_returns_, m1.scenario_returns_ * math.sqrt(3.0), rtol=1e-12)


def test_errors(closes, model):
    with pytest.raises(ConfigError, match="offset"):
        HistoricalPortfolioMargin(offset=1.5).fit(closes)
    with pytest.raises(DataError, match="no price history for XRP"):
        model.scenario_pnl([parse_instrument("XRP-PERP")])
    with pytest.raises(CalibrationError, match="not fitted"):
        HistoricalPortfolioMargin().scenario_pnl([parse_instrument("BTC-PERP")])
    with pytest.raises(DataError, match="no daily data for FOO"):
        load_daily_closes(["FOO"])


_NAMES = ["BTC-PERP", "ETH-PERP", "SOL-PERP", "BTC-26JUN26-70000-C", "BTC-26JUN26-60000-P"]


@pytest.fixture(scope="module")
def prop_pnl(model):
    return model.scenario_pnl([parse_instrument(n) for n in _NAMES], model.default_market(flat_vol=0.5))


vec = st.lists(st.floats(-10.0, 10.0, allow_nan=False), min_size=len(_NAMES), max_size=len(_NAMES))


@settings(max_examples=60, deadline=None)
@given(a=vec, b=vec, offset=st.sampled_from([0.0, 0.5, 1.0]))
def test_es_margin_is_subadditive_with_offsets(prop_pnl, a, b, offset):
    pnl = dataclasses.replace(prop_pnl, offset=offset)
    res = portfolio_margin(np.array([a, b, np.add(a, b)]), pnl)
    assert res.im[2] <= res.im[0] + res.im[1] + 1e-7 * (1.0 + res.im[0] + res.im[1])


@settings(max_examples=40, deadline=None)
@given(a=vec, lam=st.floats(0.01, 100.0))
def test_es_margin_is_positively_homogeneous(prop_pnl, a, lam):
    pnl = dataclasses.replace(prop_pnl, offset=0.5)
    res = portfolio_margin(np.array([a, np.multiply(a, lam)]), pnl)
    assert res.im[1] == pytest.approx(lam * res.im[0], rel=1e-9, abs=1e-6)


def test_cross_underlying_credit_uses_the_stressed_correlation_with_floor_and_cap(closes):
    import pandas as pd

    from margincal.dependence.correlation import STRESS_WINDOWS

    m = HistoricalPortfolioMargin(level=0.99, horizon_hours=24.0).fit(closes)  # offset="stressed" by default
    specs = [parse_instrument("BTC-PERP"), parse_instrument("ETH-PERP")]
    pnl = m.scenario_pnl(specs)
    # the stressed correlation, recomputed with pandas on the COVID / LUNA / FTX windows of the log returns
    r = np.log(closes[["BTC", "ETH"]]).diff().dropna()
    mask = np.zeros(len(r), dtype=bool)
    for a, b in STRESS_WINDOWS.values():
        mask |= (r.index >= pd.Timestamp(a, tz="UTC")) & (r.index < pd.Timestamp(b, tz="UTC") + pd.Timedelta(days=1))
    rho = float(r[mask].corr().loc["BTC", "ETH"])
    want = 0.8 * min(1.0, max(0.0, (rho - 0.5) / 0.5))
    assert pnl.offset == pytest.approx(want, rel=1e-12)
    assert pnl.params["rho_min"] == pytest.approx(rho, rel=1e-12)
    assert 0.0 < pnl.offset < 1.0  # capped: never the 100% of a full offset unless asked
    # the spread: 1 BTC long vs 33 ETH short
    book = np.array([[1.0, -33.0], [1.0, 0.0], [0.0, -33.0]])
    res = portfolio_margin(book, pnl)
    loss = -np.asarray(book @ pnl.matrix)
    es = [max(expected_shortfall(x, 0.99), 0.0) for x in loss]
    assert res.im[0] == pytest.approx(pnl.offset * es[0] + (1 - pnl.offset) * (es[1] + es[2]), rel=1e-10)
    full = portfolio_margin(book, dataclasses.replace(pnl, offset=1.0))
    assert full.im[0] < res.im[0] < res.im[1] + res.im[2]
    # 100% only when asked
    asked = HistoricalPortfolioMargin(level=0.99, horizon_hours=24.0, offset=1.0).fit(closes).scenario_pnl(specs)
    assert asked.offset == 1.0
    with pytest.raises(ConfigError, match="offset"):
        HistoricalPortfolioMargin(offset="half").fit(closes)


def _worked_example_model(closes, settlement_mode="segregated"):
    """100 hand-set BTC scenarios: -20% once, +25% once, the rest within +-1%; ES 99% = the worst loss."""
    m = HistoricalPortfolioMargin(level=0.99, horizon_hours=24.0, settlement_mode=settlement_mode)
    m.fit(closes[["BTC"]])
    small = np.log1p(np.linspace(-0.01, 0.01, 98))
    m.scenario_returns_ = np.concatenate([[math.log(0.8), math.log(1.25)], small])[:, None]
    m.scenario_dates_ = m.scenario_dates_[-100:]
    return m


def test_inverse_perp_is_margined_in_coin_per_settlement_currency_worked_example(closes):
    """Worked example by hand (F0 = 50,000; ES 99% of 100 scenarios is the single worst loss).

    Long inverse BTC perp, face N = 10,000 USD: coin P&L = N (1/F0 - 1/F1). At -20% (F1 = 40,000):
    10,000 (1/50,000 - 1/40,000) = 0.2 - 0.25 = -0.05 BTC, i.e. 2,500 USD at today's price (a USD
    measure shows 10,000 * 20% = 2,000). At +25%: +0.04 BTC. IM = 0.05 BTC = 2,500 in today's USD.
    Short linear perp, 0.2 BTC: worst at +25%, 0.2 * 50,000 * 25% = 2,500 USD.
    Together, per settlement currency: 0.05 BTC + 2,500 USD = 5,000 in today's USD (nothing nets across
    currencies); one USD segment (settlement_mode="cross") nets them to 0 at every scenario price.
    """
    from margincal.margin.portfolio import MarketState

    specs = [InstrumentSpec("BTC-USD-SWAP", "perpetual", "BTC", inverse=True, contract_size=10_000.0),
             InstrumentSpec("BTC-PERP", "perpetual", "BTC", contract_size=0.2)]
    m = _worked_example_model(closes)
    mkt = MarketState(spot={"BTC": 50_000.0}, valuation_time=m.last_prices_.name)
    pnl = m.scenario_pnl(specs, mkt)
    assert [s[0] for s in pnl.segments] == ["USD-settled", "BTC-settled"]
    res = portfolio_margin(np.array([[1.0, 0.0], [0.0, -1.0], [1.0, -1.0]]), pnl)
    F0 = 50_000.0
    coin_loss = -(10_000.0 * (1 / F0 - 1 / 40_000.0))  # 0.05 BTC
    assert coin_loss == pytest.approx(0.05, abs=1e-15)
    assert res.im[0] == pytest.approx(2_500.0, rel=1e-12)  # 0.05 BTC * 50,000
    assert res.im[0] / F0 == pytest.approx(0.05, rel=1e-12)
    assert res.driving_label[0].startswith("BTC-settled: ") and "BTC -20.0%" in res.driving_label[0]
    assert res.im[1] == pytest.approx(2_500.0, rel=1e-12)
    assert "BTC +25.0%" in res.driving_label[1]
    assert res.im[2] == pytest.approx(5_000.0, rel=1e-12)
    assert res.mm[2] == pytest.approx(0.5 * 5_000.0, rel=1e-12)
    # the former single USD segment: 10,000 (m - 1) - 10,000 (m - 1) = 0 in every scenario
    cross = _worked_example_model(closes, "cross").scenario_pnl(specs, mkt)
    assert [s[0] for s in cross.segments] == ["joint"]
    res_x = portfolio_margin(np.array([[1.0, 0.0], [1.0, -1.0]]), cross)
    assert res_x.im[0] == pytest.approx(2_000.0, rel=1e-12)  # USD measure of the inverse perp alone
    assert res_x.im[1] == 0.0


def test_inverse_option_coin_measure_and_reference_loop_with_two_currencies(closes):
    # a BTC-settled put and a USD-settled ETH perp: fast path = per-account loop, segments summed
    from margincal.margin.portfolio import MarketState

    m = HistoricalPortfolioMargin(level=0.99, horizon_hours=24.0, offset=0.5).fit(closes)
    mkt = m.default_market(flat_vol=0.6)
    specs = [InstrumentSpec("BTC-26JUN26-60000-P", "option", "BTC", strike=60_000.0,
                            expiry=parse_instrument("BTC-26JUN26-60000-P").expiry, option_type="P", inverse=True),
             parse_instrument("ETH-PERP"), parse_instrument("BTC-PERP")]
    pnl = m.scenario_pnl(specs, mkt)
    assert [s[0] for s in pnl.segments] == ["USD-settled", "BTC-settled"]
    n = len(m.scenario_returns_)
    # the inverse row: USD P&L / m (coin P&L times F0), zero in the USD block
    x = HistoricalPortfolioMargin(level=0.99, horizon_hours=24.0, offset=0.5, settlement_mode="cross").fit(closes)
    usd_row = x.scenario_pnl(specs, mkt).matrix[0]
    mult = np.exp(m.scenario_returns_[:, 0])
    np.testing.assert_allclose(pnl.matrix[0, n:], usd_row / mult, rtol=1e-12, atol=1e-9)
    assert not pnl.matrix[0, :n].any() and not pnl.matrix[1:, n:].any()
    rng = np.random.default_rng(5)
    P = sparse.random(30, 3, density=0.7, random_state=rng, data_rvs=lambda k: rng.normal(0, 3, k))
    fast = portfolio_margin(P, pnl, block_size=7)
    ref = portfolio_margin_reference(P, pnl)
    np.testing.assert_allclose(fast.im, ref.im, rtol=1e-10, atol=1e-8)
    np.testing.assert_array_equal(fast.driving_scenario, ref.driving_scenario)
    # short put alone: ES of its coin-measured loss (a short's loss is the long's P&L)
    loss = pnl.matrix[0, n:]
    from margincal.risk.measures import expected_shortfall as es

    one = portfolio_margin(np.array([[-1.0, 0.0, 0.0]]), pnl)
    assert one.im[0] == pytest.approx(max(es(loss, 0.99), 0.0), rel=1e-12)
    assert isinstance(mkt, MarketState)
    with pytest.raises(ConfigError, match="settlement_mode"):
        HistoricalPortfolioMargin(settlement_mode="both").fit(closes)
