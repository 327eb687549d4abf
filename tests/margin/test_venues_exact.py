"""Venue-exact arithmetic reproduces the venues' own test vectors and documentation examples to the unit.

Sources of every figure: tests/reference/dydx_v4_margin_vectors.md, drift_margin_vectors.md,
venue_doc_examples.md, binance_btcusdt_brackets.md.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest

from margincal.margin import presets, venues
from margincal.margin.size_rules import oi_scaled_imf
from margincal.margin.venues import drift
from margincal.margin.venues.binance import BinanceArithmetic
from margincal.margin.venues.deribit import DeribitArithmetic
from margincal.margin.venues.dydx import DydxArithmetic
from margincal.margin.venues.hyperliquid import HyperliquidArithmetic

REF = Path(__file__).resolve().parents[1] / "reference"
DYDX = json.loads((REF / "dydx_v4_margin_vectors.json").read_text())
DRIFT = json.loads((REF / "drift_margin_vectors.json").read_text())
DOCS = json.loads((REF / "venue_doc_examples.json").read_text())


# ----------------------------------------------------------------------------------------------- dYdX
@pytest.mark.parametrize("case", DYDX["margin_requirements"], ids=lambda c: c["case"])
def test_dydx_margin_requirements_match_protocol_tests(case):
    a = DydxArithmetic(case["initial_margin_ppm"], case["maintenance_fraction_ppm"], case["oi_lower_cap"],
                       case["oi_upper_cap"], case["atomic_resolution"])
    imr, mmr = a.margin_requirements(case["base_quantums"], case["price"], case["exponent"], case["open_interest"])
    assert (imr, mmr) == (int(case["imr"]), int(case["mmr"]))


@pytest.mark.parametrize("case", DYDX["initial_margin_quote_quantums"], ids=lambda c: c["case"])
def test_dydx_initial_margin_quote_quantums(case):
    a = DydxArithmetic(case["initial_margin_ppm"], 0, case["lower"], case["upper"])
    assert a.initial_margin_quote_quantums(case["quote_quantums"], case["oi"]) == case["expected"]


@pytest.mark.parametrize("case", DYDX["adjusted_initial_margin_ppm"], ids=lambda c: c["case"])
def test_dydx_adjusted_imf_is_floored_to_whole_ppm(case):
    a = DydxArithmetic(case["initial_margin_ppm"], 0, case["lower"], case["upper"])
    assert a.adjusted_initial_margin_ppm(case["oi"]) == case["expected"]


@pytest.mark.parametrize("case", DYDX["maintenance_margin_ppm"])
def test_dydx_maintenance_margin_ppm(case):
    assert DydxArithmetic(case["initial_margin_ppm"], case["maintenance_fraction_ppm"]).maintenance_margin_ppm() \
        == case["expected"]


@pytest.mark.parametrize("case", DYDX["net_notional"])
def test_dydx_net_notional_truncates_toward_zero(case):
    got = DydxArithmetic.quote_quantums(case["base_quantums"], case["atomic_resolution"], case["price"],
                                        case["exponent"])
    assert got == case["expected"]


def test_dydx_float_rule_is_off_by_hundreds_of_quantums_where_exact_is_not():
    case = next(c for c in DYDX["margin_requirements"] if c["case"].startswith("OIMF: IM 20%, scaled to 60%"))
    qq = 12_000 * 36_750
    oi = 408_163_265 * 36_750
    float_im = oi_scaled_imf(0.2, oi, case["oi_lower_cap"], case["oi_upper_cap"]) * qq
    assert abs(float_im - int(case["imr"])) > 400  # the float rule: 264,600,000 vs dYdX's 264,599,559


def test_dydx_preset_exact_mode_in_usdc():
    p = presets.get("dydx_small_cap")
    # 0.3333335 USDC is 333,333.5 quantums -> 333,333; base IM = ceil(333,333 * 100,000 / 1e6) = 33,334
    im, mm = p.margin_exact("0.3333335")
    assert im == Fraction(33_334, 10**6) and mm == Fraction(16_667, 10**6)  # ceil(33,334 * 0.5)
    # OI 35M USDC: IMF = 100,000 + floor(900,000 * 15/30) = 550,000 ppm
    im, _ = p.margin_exact(100_000, open_interest=35_000_000)
    assert im == 55_000
    assert p.margin(100_000, 35e6, exact=True).im == 55_000.0


# ---------------------------------------------------------------------------------------------- Drift
@pytest.mark.parametrize("case", DRIFT["spot_market_asset_weight"]["cases"])
def test_drift_spot_size_discount_and_premium(case):
    spec = DRIFT["spot_market_asset_weight"]
    size = drift.size_in_amm_precision(case["size_tokens"], spec["decimals"])
    assert drift.size_discount_asset_weight(size, case["imf_factor"], spec["initial_asset_weight"]) \
        == case["asset_weight"]
    if "initial_liability_weight" in case:
        assert drift.size_premium_liability_weight(size, case["imf_factor"], spec["initial_liability_weight"],
                                                   drift.SPOT_WEIGHT_PRECISION) == case["initial_liability_weight"]
    if "maintenance_liability_weight" in case:
        assert drift.size_premium_liability_weight(size, case["imf_factor"], spec["maintenance_liability_weight"],
                                                   drift.SPOT_WEIGHT_PRECISION) == case["maintenance_liability_weight"]


@pytest.mark.parametrize("case", DRIFT["perp_margin_ratio"]["cases"])
def test_drift_perp_margin_ratio(case):
    a = drift.DriftArithmetic(case["margin_ratio_initial"], case["margin_ratio_maintenance"], case["imf_factor"])
    assert a.margin_ratio(case["size"], case["kind"]) == case["expected"]


def test_drift_docs_asset_weight_example():
    ex = DRIFT["docs_asset_weight_example"]
    size = drift.size_in_amm_precision(ex["size_tokens"], ex["decimals"])
    assert drift.size_discount_asset_weight(size, ex["imf_factor"], ex["asset_weight"]) == ex["expected"]
    unbounded = drift.size_discount_asset_weight(size, ex["imf_factor"], 10**9) / drift.SPOT_WEIGHT_PRECISION
    assert unbounded == pytest.approx(ex["unbounded_discount_approx"], abs=1e-4)


def test_drift_bounded_and_unbounded_premium():
    # below the size where the premium passes the default, bounded keeps the default, unbounded does not
    assert drift.size_premium_liability_weight(10**9, 50, 1000, drift.MARGIN_PRECISION, bounded=True) == 1000
    assert drift.size_premium_liability_weight(10**9, 50, 1000, drift.MARGIN_PRECISION, bounded=False) == 800
    # requirement: 2 BTC at 50,000 with a 10% ratio = 10,000 USDC (QUOTE_PRECISION)
    a = drift.DriftArithmetic(1000, 500, 0)
    assert a.margin_requirement(2 * drift.BASE_PRECISION, 50_000 * drift.PRICE_PRECISION) == 10_000 * 10**6


# ------------------------------------------------------------------------------ Binance / Hyperliquid
def test_binance_exact_cum_reproduces_published_column():
    df = pd.read_csv(REF / "binance_btcusdt_brackets.csv", dtype=str)
    a = venues.binance.arithmetic(presets.parameter_set(["binance_btcusdt"])["BTCUSDT"])
    assert [str(c) for c in a.cum] == [str(Fraction(c)) for c in df["cum"]]
    # MM is continuous at every floor (the deduction's purpose), exactly
    for b, prev in zip(a.brackets[1:], a.brackets, strict=False):
        assert b.floor * b.mm_rate - a.cum[a.brackets.index(b)] == b.floor * prev.mm_rate - a.cum[a.brackets.index(prev)]


def test_binance_docs_example_bracket():
    ex = DOCS["binance"][0]
    doc = [{"symbol": ex["symbol"], "brackets": [{k: ex[k] for k in ("bracket", "initialLeverage", "notionalCap",
                                                                      "notionalFloor", "maintMarginRatio", "cum")}]}]
    p = venues.import_table(json.dumps(doc), "binance")[ex["symbol"]]
    a = BinanceArithmetic(tuple(venues.binance.brackets_from_params(p)))
    assert a.initial_margin(10_000) == Fraction(10_000, 75)
    assert a.maintenance_margin(10_000) == 65


def test_hyperliquid_docs_rate_and_deduction():
    ex = DOCS["hyperliquid"][0]
    a = HyperliquidArithmetic((Fraction(0),), (ex["max_leverage"],))
    assert a.mm_rates[0] == Fraction(ex["mm_rate"])
    btc = venues.hyperliquid.arithmetic(presets.parameter_set(["hyperliquid_btc"])["HYPERLIQUID-BTC"])
    # deduction(1) = 150M * (1/40 - 1/80) = 1,875,000; MM continuous at 150M
    assert btc.deductions == [0, 1_875_000]
    assert btc.maintenance_margin(150_000_000) == Fraction(150_000_000, 80)
    assert btc.initial_margin(200_000_000) == 10_000_000


def test_deribit_docs_examples():
    btc, eth = DOCS["deribit"]
    a = DeribitArithmetic(Fraction("0.02"), Fraction("0.00005"), Fraction("0.01"), Fraction("0.00005"))
    assert a.im_rate(btc["size"]) == Fraction(btc["im_rate"])
    assert a.initial_margin(350) == Fraction("13.125")
    e = venues.deribit.arithmetic(presets.parameter_set(["deribit_eth_future"])["ETH-FUTURE"])
    assert e.im_rate(eth["size"]) == Fraction(eth["im_rate"]) and e.mm_rate(eth["size"]) == Fraction(eth["mm_rate"])
    # through the preset: 35,000,000 USD at 100,000 = 350 BTC -> IM 13.125 BTC = 1,312,500 USD
    assert presets.get("deribit_btc_future").margin_exact(35_000_000, price=100_000)[0] == 1_312_500


def test_binance_coinm_docs_example_in_coin():
    ex = DOCS["binance_coinm"][0]
    row = {k: ex[k] for k in ("bracket", "initialLeverage", "qtyCap", "qtylFloor", "maintMarginRatio", "cum")}
    p = venues.import_table(json.dumps([{"pair": ex["pair"], "brackets": [row]}]), "binance-coinm",
                            price=60_000)["BTCUSD"]
    # 50 BTC at 60,000 USD = 3,000,000 USD of notional cap; rates as published
    assert p.details["tiers"][0]["upper"] == 3_000_000 and p.mm_rate == 0.004 and p.im_rate == 1 / 125
    a = venues.binance.arithmetic(p)
    assert a.maintenance_margin(3_000_000) == 12_000  # 3,000,000 * 0.004 - 0
    assert p.details["coin_brackets"][0]["cap"] == "50"
