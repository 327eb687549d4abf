"""Size tiers: Binance's published maintenance amounts, continuity, monotonicity, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margincal.errors import ConfigError
from margincal.margin.tiers import (
    Tier,
    TierSchedule,
    cumulative_amounts,
    cumulative_amounts_reference,
    initial_margin_reference,
    maintenance_margin_reference,
)

REF = Path(__file__).resolve().parents[1] / "reference"


@pytest.fixture(scope="module")
def binance() -> TierSchedule:
    return TierSchedule.from_brackets(REF / "binance_btcusdt_brackets.csv", check_cum=False)


def test_maintenance_amounts_reproduce_binance_cum_column(binance):
    published = pd.read_csv(REF / "binance_btcusdt_brackets.csv")["cum"].to_numpy()
    np.testing.assert_allclose(binance.maintenance_amounts, published, rtol=0, atol=1e-6)
    # spelled out for brackets 2-4:
    # 0 + 50,000 * (0.005 - 0.004) = 50
    # 50 + 250,000 * (0.01 - 0.005) = 1,300
    # 1,300 + 3,000,000 * (0.025 - 0.01) = 46,300
    assert binance.maintenance_amounts[1:4].tolist() == pytest.approx([50.0, 1300.0, 46300.0])


def test_maintenance_amounts_reproduce_older_published_table():
    df = pd.read_csv(REF / "binance_btcusdt_brackets_2021.csv")
    amounts = cumulative_amounts(df["notionalFloor"].to_numpy(float), df["maintMarginRatio"].to_numpy(float))
    np.testing.assert_allclose(amounts, df["cum"].to_numpy(float), rtol=0, atol=1e-6)
    assert cumulative_amounts_reference(df["notionalFloor"].tolist(), df["maintMarginRatio"].tolist()) == \
        pytest.approx(df["cum"].tolist())


def test_from_brackets_checks_published_cum(tmp_path):
    df = pd.read_csv(REF / "binance_btcusdt_brackets.csv")
    TierSchedule.from_brackets(df)  # consistent: no error
    bad = df.copy()
    bad.loc[3, "cum"] = 46000.0
    with pytest.raises(ConfigError, match="bracket 4: published maintenance amount"):
        TierSchedule.from_brackets(bad)


def test_binance_worked_margins(binance):
    # 1,000,000 USDT in bracket 3 (250k..3M, 1%, cum 1,300): MM = 1e6 * 0.01 - 1,300 = 8,700
    assert binance.maintenance_margin(1_000_000) == pytest.approx(8_700.0)
    # 25,000,000 in bracket 5 (5%, cum 546,300): 1,250,000 - 546,300 = 703,700
    assert binance.maintenance_margin(25_000_000) == pytest.approx(703_700.0)
    # the same by slices: 50k*0.4% + 200k*0.5% + 2.75M*1% + 17M*2.5% + 5M*5%
    slices = 50_000 * 0.004 + 200_000 * 0.005 + 2_750_000 * 0.01 + 17_000_000 * 0.025 + 5_000_000 * 0.05
    assert slices == pytest.approx(703_700.0)
    # Binance's step IM at the bracket's max leverage: 1e6 / 50 = 20,000
    assert binance.initial_margin(1_000_000, continuous=False) == pytest.approx(20_000.0)
    # continuous IM: 50k/125 + 200k/100 + 750k/50 = 400 + 2,000 + 15,000 = 17,400
    assert binance.initial_margin(1_000_000) == pytest.approx(17_400.0)


def test_vectorised_equals_reference(binance):
    n = np.array([0.0, 1.0, 49_999.99, 50_000.0, 250_000.0, 2_999_999.0, 3e6, 1.2e8, 4.99e8, -7e6])
    mm = binance.maintenance_margin(n)
    im = binance.initial_margin(n)
    for x, a, b in zip(n, mm, im, strict=True):
        assert a == pytest.approx(maintenance_margin_reference(binance, x), rel=1e-12, abs=1e-9)
        assert b == pytest.approx(initial_margin_reference(binance, x), rel=1e-12, abs=1e-9)
    # Binance's caps are inclusive ("Position <= cap"): 50,000 is in bracket 1, 3,000,000 in bracket 3
    assert binance.cap_inclusive
    assert binance.tier_index(np.array([0, 49_999, 50_000, 50_000.01, 3e6])).tolist() == [0, 0, 0, 1, 2]


@settings(max_examples=80, deadline=None)
@given(st.floats(min_value=0, max_value=4.9e8, allow_nan=False), st.floats(min_value=0, max_value=1e7))
def test_margins_monotone_and_continuous(binance, a, step):
    b = a + step
    assert binance.maintenance_margin(b) >= binance.maintenance_margin(a) - 1e-6
    assert binance.initial_margin(b) >= binance.initial_margin(a) - 1e-6


@pytest.mark.parametrize("k", range(1, 10))
def test_continuity_at_every_boundary(binance, k):
    lo = binance.lowers[k]
    eps = 1e-6
    assert binance.maintenance_margin(lo - eps) == pytest.approx(binance.maintenance_margin(lo), abs=1e-5)
    assert binance.initial_margin(lo - eps) == pytest.approx(binance.initial_margin(lo), abs=1e-5)


def test_validation_messages():
    with pytest.raises(ConfigError, match="must start at notional 0"):
        TierSchedule([Tier(10, 20, 0.01)])
    with pytest.raises(ConfigError, match="sorted"):
        TierSchedule([Tier(0, 20, 0.01), Tier(100, 10, 0.02), Tier(50, 5, 0.05)])
    with pytest.raises(ConfigError, match="non-increasing"):
        TierSchedule([Tier(0, 20, 0.01), Tier(100, 25, 0.02)])
    with pytest.raises(ConfigError, match="non-decreasing"):
        TierSchedule([Tier(0, 20, 0.02), Tier(100, 10, 0.01)])
    with pytest.raises(ConfigError, match="exceeds the initial rate"):
        Tier(0, 100, 0.02)
    with pytest.raises(ConfigError, match="contiguous"):
        TierSchedule.from_brackets(pd.DataFrame({"notionalFloor": [0, 60], "notionalCap": [50, 100],
                                                 "initialLeverage": [20, 10], "maintMarginRatio": [0.01, 0.02]}))


def test_from_brackets_accepts_binance_json_and_export_roundtrip(binance):
    df = pd.read_csv(REF / "binance_btcusdt_brackets.csv")
    payload = [{"symbol": "BTCUSDT", "brackets": [{k: str(v) for k, v in r.items()}
                                                 for r in df.to_dict(orient="records")]}]
    s2 = TierSchedule.from_brackets(payload)
    np.testing.assert_allclose(s2.maintenance_amounts, binance.maintenance_amounts)
    exported = binance.to_frame().to_csv(index=False)
    s3 = TierSchedule.from_brackets(exported)
    assert s3.max_notional == 500_000_000
    np.testing.assert_allclose(s3.mm_rates, binance.mm_rates)
    s4 = TierSchedule.from_details(binance.to_details())
    np.testing.assert_allclose(s4.max_leverages, binance.max_leverages)
