"""The bundled venue tables against their sources (tests/reference/venue_tables_sources.md)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest

from margincal.margin import presets, venues

TABLES = presets.TABLES_DIR
REF = Path(__file__).resolve().parents[1] / "reference"
MANIFEST = json.loads((TABLES / "MANIFEST.json").read_text())


def _entry(file: str) -> dict:
    (e,) = [t for t in MANIFEST["tables"] if t["file"] == file]
    return e


# ------------------------------------------------------------------------------------------ Bybit
@pytest.mark.parametrize(("name", "cap", "im", "mm", "doc_max_leverage"), [
    ("bybit_btcusdt", 2_000_000, 0.01, 0.005, "100.00"),
    ("bybit_ethperp", 500_000, 0.015, 0.01, "66.67"),
])
def test_bybit_presets_are_the_documented_first_tier(name, cap, im, mm, doc_max_leverage):
    p = presets.get(name)
    assert p.schedule is not None and len(p.schedule.tiers) == 1 and p.schedule.max_notional == cap
    # Bybit's documented maxLeverage is 1 / initialMargin to two decimals
    assert f"{p.schedule.tiers[0].max_leverage:.2f}" == doc_max_leverage
    r = p.margin(cap)
    assert r.im == pytest.approx(im * cap) and r.mm == pytest.approx(mm * cap)
    assert p.schedule.within_cap(cap) and not p.schedule.within_cap(cap + 1)
    assert "PARTIAL" in p.details()["notes"] and p.as_of.startswith("2022-")


def test_bybit_v3_example_reads_as_the_v5_shape():
    v3 = json.loads((TABLES / "bybit_v3_BTCUSDT_risk_limit.json").read_text())
    (row,) = v3["result"]["list"]
    v5 = {"retCode": 0, "result": {"category": "linear", "list": [
        {"id": 1, "symbol": "BTCUSDT", "riskLimitValue": row["limit"], "maintenanceMargin": row["maintainMargin"],
         "initialMargin": row["initialMargin"], "isLowestRisk": 1, "maxLeverage": row["maxLeverage"],
         "mmDeduction": ""}]}}
    a = venues.import_table(v3, "bybit")["BTCUSDT"].details["venue_brackets"]
    b = venues.import_table(v5, "bybit")["BTCUSDT"].details["venue_brackets"]
    assert a == b and a[0]["cap"] == "2000000" and Fraction(a[0]["im_rate"]) == Fraction(1, 100)
    bad = json.loads(json.dumps(v3))
    bad["result"]["list"][0].pop("limit")
    with pytest.raises(Exception, match="riskLimitValue"):
        venues.import_table(bad, "bybit", name="v3.json")


# ------------------------------------------------------------------------------------------ dYdX
GENESIS = {0: ("Large-Cap", 20_000, 600_000, 0, 0), 1: ("Small-Cap", 100_000, 500_000, 20e6, 50e6),
           2: ("Long-Tail", 200_000, 500_000, 5e6, 10e6), 3: ("Safety", 1_000_000, 200_000, 2e6, 5e6),
           4: ("Isolated", 50_000, 600_000, 5e5, 1e6), 5: ("Mid-Cap", 50_000, 600_000, 40e6, 100e6),
           6: ("FX", 10_000, 500_000, 5e5, 1e6)}


def test_dydx_table_uses_the_genesis_tier_ids():
    pset = venues.import_table(TABLES / "dydx_liquidity_tiers.json", "dydx")
    got = {p.details["dydx"]["liquidity_tier"]["id"]: p.details["dydx"]["liquidity_tier"] for p in pset.params.values()}
    assert sorted(got) == sorted(GENESIS)
    for i, (name, im, mf, lo, hi) in GENESIS.items():
        t = got[i]
        assert (t["name"], t["initial_margin_ppm"], t["maintenance_fraction_ppm"]) == (name, im, mf)
        assert t["open_interest_lower_cap"] == int(lo * 10**6) and t["open_interest_upper_cap"] == int(hi * 10**6)
    # the presets point at the tiers of the same names (Mid-Cap is tier 5, Small-Cap 1, Long-Tail 2)
    for preset, tid in (("dydx_large_cap", 0), ("dydx_small_cap", 1), ("dydx_long_tail", 2), ("dydx_mid_cap", 5)):
        a = presets.get(preset).arithmetic
        assert (a.initial_margin_ppm, a.maintenance_fraction_ppm) == GENESIS[tid][1:3]
    assert "b358dff9b076112c12f055e5f7708e1d18ff8a02" in _entry("dydx_liquidity_tiers.json")["source"]


def test_dydx_export_keeps_the_real_tier_id():
    pset = venues.import_table(TABLES / "dydx_liquidity_tiers.json", "dydx")
    doc = venues.export_table(pset, "dydx", instruments=["DYDX-MID_CAP"])
    assert doc["liquidity_tiers"][0]["id"] == 5 and doc["liquidity_tiers"][0]["name"] == "Mid-Cap"
    # the presets (and a parameter set published from them) keep it too
    doc = venues.export_table(presets.parameter_set(["dydx_large_cap", "dydx_mid_cap"]), "dydx")
    assert [(t["id"], t["name"]) for t in doc["liquidity_tiers"]] == [(0, "Large-Cap"), (5, "Mid-Cap")]


# ----------------------------------------------------------------------------------- Hyperliquid
def test_hyperliquid_table_ids_are_the_mainnet_meta_ids():
    doc = json.loads((TABLES / "hyperliquid_meta_BTC_ETH.json").read_text())
    ids = {u["name"]: u["marginTableId"] for u in doc["universe"]}
    tables = dict((k, v) for k, v in doc["marginTables"])
    assert ids == {"BTC": 56, "ETH": 55}
    assert tables[55]["description"] == "tiered 25x" and tables[56]["description"] == "tiered 40x"
    assert [(t["lowerBound"], t["maxLeverage"]) for t in tables[55]["marginTiers"]] == [("0.0", 25),
                                                                                       ("100000000.0", 15)]
    # ETH above 100M: IM 1/15
    assert presets.get("hyperliquid_eth").margin_rate(2e8).im == pytest.approx(1 / 15)
    assert "1001" not in _entry("hyperliquid_meta_BTC_ETH.json")["source"]


# --------------------------------------------------------------------------------------- Binance
# BTC/USDT:USDT in freqtrade's binance_leverage_tiers.json @ e73f215a67125640d73be66b72ff1a24a7a1d793, each tier's
# info (tests/reference/venue_tables_sources.md): (notionalFloor, notionalCap, initialLeverage, maintMarginRatio, cum)
# as written there; the same file lists the quarterlies BTC/USDT:USDT-230929 and -231229, not -230630.
FREQTRADE_2023Q3 = [("0", "50000", "125", "0.004", "0.0"), ("50000", "250000", "100", "0.005", "50.0"),
                    ("250000", "3000000", "50", "0.01", "1300.0"), ("3000000", "20000000", "20", "0.025", "46300.0"),
                    ("20000000", "40000000", "10", "0.05", "546300.0"),
                    ("40000000", "100000000", "5", "0.1", "2546300.0"),
                    ("100000000", "120000000", "4", "0.125", "5046300.0"),
                    ("120000000", "200000000", "3", "0.15", "8046300.0"),
                    ("200000000", "300000000", "2", "0.25", "2.80463E7"),
                    ("300000000", "500000000", "1", "0.5", "1.030463E8")]


def test_binance_snapshot_is_dated_by_the_freqtrade_recording_and_differs_from_the_dated_2021_table():
    doc = json.loads((TABLES / "binance_usdm_BTCUSDT.json").read_text())
    (sym,) = doc
    got = [(Fraction(b["notionalFloor"]), Fraction(b["notionalCap"]), b["initialLeverage"],
            Fraction(str(b["maintMarginRatio"])), Fraction(str(b["cum"]))) for b in sym["brackets"]]
    assert got == [(Fraction(f), Fraction(c), int(lev), Fraction(m), Fraction(cum))
                   for f, c, lev, m, cum in FREQTRADE_2023Q3]
    p = presets.get("binance_btcusdt")
    assert p.as_of.startswith("between 2023-06-30 and 2023-09-29")
    assert "e73f215a67125640d73be66b72ff1a24a7a1d793" in p.details()["notes"]
    # freqtrade's older binance_leverage_brackets.json @ 778f0d9d (floors and ratios only) is another table
    assert "778f0d9d0a832940ebc58e9c80213e87230e12ee" in p.details()["notes"]
    dated = pd.read_csv(REF / "binance_btcusdt_brackets_2021.csv")
    caps = [b[1] for b in presets.BINANCE_BTCUSDT_BRACKETS]
    assert caps[:2] == list(dated["notionalCap"][:2]) and caps[2] != dated["notionalCap"][2]


# The BTCUSDT table Binance announced for 2021-03-18 09:00 UTC (tests/reference/venue_tables_sources.md):
# (cap USDT, leverage, maintenance margin %) as printed; floors are the previous caps.
BINANCE_2021_03_18 = [(50_000, 125, "0.40"), (250_000, 100, "0.50"), (1_000_000, 50, "1.00"),
                      (10_000_000, 20, "2.50"), (20_000_000, 10, "5.00"), (50_000_000, 5, "10.00"),
                      (100_000_000, 4, "12.50"), (200_000_000, 3, "15.00"), (300_000_000, 2, "25.00"),
                      (500_000_000, 1, "50.00")]


def test_binance_dated_2021_table_is_the_announcement():
    doc = json.loads((TABLES / "binance_usdm_BTCUSDT_2021-03-18.json").read_text())
    (sym,) = doc
    rows = [(b["notionalFloor"], b["notionalCap"], b["initialLeverage"], Fraction(str(b["maintMarginRatio"])))
            for b in sym["brackets"]]
    floors = [0] + [c for c, _, _ in BINANCE_2021_03_18[:-1]]
    assert rows == [(f, c, lev, Fraction(m) / 100) for f, (c, lev, m) in zip(floors, BINANCE_2021_03_18, strict=True)]
    # cum (not printed in the announcement) equals the maintenance amounts read from Binance's web app on 2021-03-26
    gist = pd.read_csv(REF / "binance_btcusdt_brackets_2021.csv")
    assert [b["cum"] for b in sym["brackets"]] == list(gist["cum"].astype(float))
    assert [b["notionalCap"] for b in sym["brackets"]] == list(gist["notionalCap"])


def test_binance_dated_2021_preset_by_hand():
    p = presets.get("binance_btcusdt_20210318")
    assert p.as_of.startswith("2021-03-18") and p.schedule.max_notional == 500_000_000
    # 600,000 USDT: bracket 3 (50x, 1.00%, cum 1,300): IM 600,000 / 50 = 12,000; MM 6,000 - 1,300 = 4,700
    r = p.margin(600_000)
    assert r.im == pytest.approx(12_000) and r.mm == pytest.approx(4_700)
    # 5,000,000 USDT: bracket 4 (20x, 2.50%, cum 16,300): IM 250,000; MM 125,000 - 16,300 = 108,700
    r = p.margin(5_000_000)
    assert r.im == pytest.approx(250_000) and r.mm == pytest.approx(108_700)
    # 150,000,000 USDT: bracket 8 (3x, 15.00%, cum 5,016,300): IM 50,000,000; MM 22,500,000 - 5,016,300
    r = p.margin(150_000_000)
    assert r.im == pytest.approx(50_000_000) and r.mm == pytest.approx(17_483_700)
    im, mm = p.margin_exact(150_000_000)
    assert (im, mm) == (Fraction(50_000_000), Fraction(17_483_700))
    # 30,000 USDT: bracket 1 (125x, 0.40%): IM 240, MM 120
    assert p.margin(30_000).im == pytest.approx(240) and p.margin(30_000).mm == pytest.approx(120)



# BTC/USDT:USDT in freqtrade's binance_leverage_tiers.json @ 01d10aebcab25c526473c603a88e14eb7d9699cc, each tier's
# info (tests/reference/venue_tables_sources.md): (notionalFloor, notionalCap, maintMarginRatio, cum, initialLeverage)
# as written there; the same file lists BTC/USDT:USDT-240927 and -241227, not -240628.
BINANCE_2024Q3 = [("0", "50000", "0.004", "0.0", "125"), ("50000", "600000", "0.005", "50.0", "100"),
                  ("600000", "3000000", "0.0065", "950.0", "75"), ("3000000", "12000000", "0.01", "11450.0", "50"),
                  ("12000000", "70000000", "0.02", "131450.0", "25"),
                  ("70000000", "100000000", "0.025", "481450.0", "20"),
                  ("100000000", "230000000", "0.05", "2981450.0", "10"),
                  ("230000000", "480000000", "0.1", "14481450.0", "5"),
                  ("480000000", "600000000", "0.125", "26481450.0", "4"),
                  ("600000000", "800000000", "0.15", "41481450.0", "3"),
                  ("800000000", "1200000000", "0.25", "121481450.0", "2"),
                  ("1200000000", "1800000000", "0.5", "421481450.0", "1")]


def test_binance_2024q3_table_is_the_recording_and_its_cum_follows_binances_rule():
    doc = json.loads((TABLES / "binance_usdm_BTCUSDT_2024Q3.json").read_text())
    (sym,) = doc
    assert sym["symbol"] == "BTCUSDT" and [b["bracket"] for b in sym["brackets"]] == list(range(1, 13))
    got = [(Fraction(b["notionalFloor"]), Fraction(b["notionalCap"]), Fraction(str(b["maintMarginRatio"])),
            Fraction(str(b["cum"])), b["initialLeverage"]) for b in sym["brackets"]]
    assert got == [(Fraction(f), Fraction(c), Fraction(m), Fraction(cum), int(lev))
                   for f, c, m, cum, lev in BINANCE_2024Q3]
    # contiguous, and cum(k) = cum(k-1) + floor(k) x (MMR(k) - MMR(k-1)), exactly
    cum = Fraction(0)
    for k, (floor, _cap, mmr, rec, _lev) in enumerate(got):
        if k:
            assert floor == got[k - 1][1]
            cum += floor * (mmr - got[k - 1][2])
        assert rec == cum
    assert cum == 421_481_450
    e = _entry("binance_usdm_BTCUSDT_2024Q3.json")
    assert "01d10aebcab25c526473c603a88e14eb7d9699cc" in e["source"] and e["as_of"].startswith("between 2024-06-28")


def test_binance_2024q3_preset_by_hand():
    p = presets.get("binance_btcusdt_2024q3")
    assert p.as_of.startswith("between 2024-06-28 and 2024-09-27") and p.schedule.max_notional == 1_800_000_000
    assert len(p.schedule.tiers) == 12 and p.schedule.cap_inclusive
    # 30,000 USDT: bracket 1 (125x, 0.4%): IM 240, MM 120
    r = p.margin(30_000)
    assert r.im == pytest.approx(240) and r.mm == pytest.approx(120)
    # 600,000 USDT, exactly the cap of bracket 2 (100x, 0.5%, cum 50; Binance's caps are inclusive):
    # IM 600,000 / 100 = 6,000 (not / 75 = 8,000); MM 3,000 - 50 = 2,950
    r = p.margin(600_000)
    assert r.im == pytest.approx(6_000) and r.mm == pytest.approx(2_950)
    assert p.margin_exact("600000") == (Fraction(6_000), Fraction(2_950))
    # a cent above: bracket 3 (75x, 0.65%, cum 950): IM 600,000.01 / 75; MM 3,900.000065 - 950 (continuous)
    r = p.margin(600_000.01)
    assert r.im == pytest.approx(8_000.000133, rel=1e-9) and r.mm == pytest.approx(2_950.000065, rel=1e-9)
    # 10,000,000 USDT: bracket 4 (50x, 1%, cum 11,450): IM 200,000; MM 100,000 - 11,450 = 88,550
    r = p.margin(10_000_000)
    assert r.im == pytest.approx(200_000) and r.mm == pytest.approx(88_550)
    # 100,000,000 USDT, the cap of bracket 6 (20x, 2.5%, cum 481,450): IM 5,000,000; MM 2,500,000 - 481,450
    assert p.margin_exact(100_000_000) == (Fraction(5_000_000), Fraction(2_018_550))
    # 1,000,000,000 USDT: bracket 11 (2x, 25%, cum 121,481,450): IM 500,000,000; MM 250,000,000 - 121,481,450
    assert p.margin_exact("1000000000") == (Fraction(500_000_000), Fraction(128_518_550))
    assert p.schedule.within_cap(1_800_000_000) and not p.schedule.within_cap(1_800_000_001)

# --------------------------------------------------------------------------------- OKX and Drift
def test_missing_venues_are_named_not_invented():
    assert not [n for n in presets.names() if n.startswith("drift")]
    assert "Drift" in MANIFEST["missing"] and "Bybit BTCUSDT" in MANIFEST["missing"]
    # the files read without result are named with their commits
    for commit in ("02140ad047b4047caf72b2e8a98f99e3297a5398", "05776890e288bf88d1aeba7b62da9e697d3e37f5",
                   "21a68b0143d7a9b9b48d578455117e9fe2620e2d", "0117dcb9f9d7ef6fdd11d7dd649c8ca200f061d7"):
        assert commit in MANIFEST["missing"]
    # the Bybit mirror's 20-tier ladder is named, not bundled; the Drift searches are listed
    assert "bybitx.global" in MANIFEST["missing"] and "marginRatioMaintenance" in MANIFEST["missing"]
    assert not [t for t in MANIFEST["tables"] if "bybitx" in t["source"]]


# -------------------------------------------------------------------------------------------- OKX
def test_okx_eth_table_is_the_announced_rule():
    """Tiers 1-3 as printed in OKEx's 2021-06-11 announcement, tier 4 on by its rule (+12,000 contracts,
    +0.5% MMR, +0.5% IMR, max leverage 1/IMR as the page prints 66.66) until the IMR reaches 100%."""
    doc = json.loads((TABLES / "okx_ETH-USDT_swap_position_tiers_2021-06-11.json").read_text())
    rows = doc["data"]
    printed = [("0", "3000", "0.004", "0.008", "125"), ("3001", "6000", "0.005", "0.01", "100"),
               ("6001", "12000", "0.01", "0.015", "66.66")]
    assert [(r["minSz"], r["maxSz"], r["mmr"], r["imr"], r["maxLever"]) for r in rows[:3]] == printed
    for k, r in enumerate(rows[3:], start=4):
        assert int(r["maxSz"]) == 12_000 * (k - 2) and int(r["minSz"]) == 12_000 * (k - 3) + 1
        assert Fraction(r["mmr"]) == Fraction(1, 100) + Fraction(k - 3, 200)
        assert Fraction(r["imr"]) == Fraction(15, 1000) + Fraction(k - 3, 200)
        assert Fraction(r["maxLever"]) == Fraction(int(100 / Fraction(r["imr"])), 100)
    assert Fraction(rows[-1]["imr"]) == 1 and len(rows) == 200


def test_okx_eth_preset_prices_contracts_at_its_reference_price():
    p = presets.get("okx_eth_usdt_swap")
    assert p.reference_price == 2500.0 and p.as_of.startswith("2021-06-11")
    # tier 1 ends at 3,000 contracts x 0.1 ETH x 2,500 USD = 750,000 USD; tier 3 (66.66x) at 3,000,000
    assert p.schedule.lowers[1] == pytest.approx(750_000) and p.schedule.lowers[3] == pytest.approx(3_000_000)
    r = p.margin_rate(2_000_000)
    assert r.im == pytest.approx(0.015)
    assert f"{int(100 * p.schedule.tiers[2].max_leverage) / 100:.2f}" == "66.66"
    # the same file at another price: bounds scale with it
    (q,) = presets.from_file(TABLES / p.table_file, "okx", price=2000.0, ct_val=0.1).values()
    assert q.schedule.lowers[1] == pytest.approx(600_000)


# ------------------------------------------------------------------------- exactly on a bracket cap
def test_a_position_exactly_on_a_cap_is_in_the_lower_bracket_where_the_venue_says_so():
    """Binance prints "Position <= cap" (the 2021-03-18 announcement, tests/reference/venue_tables_sources.md),
    OKX's tiers run minSz..maxSz with the next tier at maxSz + 1: a position exactly on a cap is in the
    lower bracket. Hyperliquid's tiers start AT their lowerBound. Only N / leverage differs at the cap
    (the maintenance amounts are continuous)."""
    b = presets.get("binance_btcusdt_20210318")
    # 50,000 USDT: bracket 1 (125x, 0.40%): IM 400, MM 200; a cent more: bracket 2 (100x, 0.50%, cum 50)
    r = b.margin(50_000)
    assert r.im == pytest.approx(400) and r.mm == pytest.approx(200)
    r = b.margin(50_000.01)
    assert r.im == pytest.approx(500.0001) and r.mm == pytest.approx(200.00005)
    # 1,000,000 USDT, the cap of bracket 3 (50x): IM 20,000 (not 1,000,000 / 20 = 50,000), exact and float alike
    assert b.margin(1_000_000).im == pytest.approx(20_000)
    im_x, mm_x = b.margin_exact("1000000")
    assert im_x == Fraction(20_000) and mm_x == Fraction(1_000_000) / 100 - 1_300
    assert b.schedule.tier_index(1_000_000) == 2 and b.schedule.tier_index(0) == 0
    # OKX ETH-USDT-SWAP (ctVal 0.1 ETH at the preset's 2,500 USDT): 3,000 contracts = 750,000 USDT is tier 1
    o = presets.get(next(n for n, e in presets.PRESETS.items() if e.venue == "okx"))
    assert o.margin_rate(750_000).im == pytest.approx(0.008) and o.margin_rate(750_001).im == pytest.approx(0.01)
    # Hyperliquid ETH: from lowerBound 100,000,000 on, 15x
    assert presets.get("hyperliquid_eth").margin_rate(1e8).im == pytest.approx(1 / 15)
    assert presets.get("hyperliquid_eth").margin_rate(1e8 - 1).im == pytest.approx(1 / 25)

# OKX BTC-USDT-SWAP position tiers (cross), a recorded GET /api/v5/public/position-tiers answer
# (tests/reference/venue_tables_sources.md): tiers 1-3 as listed, then +20,000 contracts, +0.5% MMR, +0.5% IMR per tier.
OKX_BTC = "okx_BTC-USDT_swap_position_tiers_cross.json"


def test_okx_btc_table_is_the_recorded_answer():
    raw = (TABLES / OKX_BTC).read_text()
    assert len(raw) == 20_311  # byte for byte the stored copy at the cited commit
    rows = json.loads(raw)["data"]
    assert len(rows) == 99 and {r["instFamily"] for r in rows} == {"BTC-USDT"}
    first = [("1", "0", "1000", "0.004", "0.01", "100"), ("2", "1000.01", "5000", "0.005", "0.015", "66.66"),
             ("3", "5000.01", "20000", "0.0075", "0.02", "50"), ("4", "20000.01", "40000", "0.0125", "0.025", "40"),
             ("5", "40000.01", "60000", "0.0175", "0.03", "33.33")]  # as in the source repository's docs/okx-rules.md
    assert [(r["tier"], r["minSz"], r["maxSz"], r["mmr"], r["imr"], r["maxLever"]) for r in rows[:5]] == first
    for k, r in enumerate(rows[2:], start=3):
        assert int(r["maxSz"]) == 20_000 * (k - 2)
        assert Fraction(r["minSz"]) == Fraction(rows[k - 2]["maxSz"]) + Fraction(1, 100)  # previous maxSz + one lot
        assert Fraction(r["mmr"]) == Fraction(75, 10_000) + Fraction(k - 3, 200)
        assert Fraction(r["imr"]) == Fraction(2, 100) + Fraction(k - 3, 200)
    for r in rows:  # maxLever is 1 / IMR truncated to two decimals
        assert Fraction(r["maxLever"]) == Fraction(int(100 / Fraction(r["imr"])), 100)
    # the dated isolated reading (2026-09-18) in BTC: the last tier ends at 19,400 BTC, 2x, MMR 48.75%
    assert (int(rows[-1]["maxSz"]) / 100, rows[-1]["maxLever"], rows[-1]["mmr"]) == (19_400, "2", "0.4875")
    assert "bc51029770b3cad1a038d088748a0fb44d1149c0" in _entry(OKX_BTC)["source"]
    assert _entry(OKX_BTC)["as_of"].startswith("2026-09-18")


def test_okx_btc_preset_by_hand():
    p = presets.get("okx_btc_usdt_swap")
    assert p.reference_price == 100_000.0 and p.as_of.startswith("2026-09") and len(p.schedule.tiers) == 99
    # one contract is 0.01 BTC x 100,000 USD = 1,000 USD: tier 1 ends at 1,000,000 USD, tier 99 at 1,940,000,000
    assert list(p.schedule.lowers[:4]) == [0, 1_000_000, 5_000_000, 20_000_000]
    assert p.schedule.max_notional == pytest.approx(1_940_000_000)
    # 500,000 USD (500 contracts, tier 1): IM 1% = 5,000; MM 0.4% = 2,000
    r = p.margin(500_000)
    assert r.im == pytest.approx(5_000) and r.mm == pytest.approx(2_000)
    # 3,000,000 USD (tier 2): IM 1.5% = 45,000; MM the tier's 0.5% on the whole position = 15,000
    # (slice by slice it would be 1,000,000 x 0.4% + 2,000,000 x 0.5% = 14,000)
    r = p.margin(3_000_000)
    assert r.im == pytest.approx(45_000) and r.mm == pytest.approx(15_000)
    # 50,000,000 USD (tier 5, 40M-60M): IM 3% = 1,500,000; MM 1.75% x 50M = 875,000 (slice by slice: 561,500)
    r = p.margin(50_000_000)
    assert r.im == pytest.approx(1_500_000) and r.mm == pytest.approx(875_000)
    assert p.schedule.within_cap(1_940_000_000) and not p.schedule.within_cap(1_940_000_001)
    # the same file at another price: bounds scale with it (tier 1 ends at 1,000 contracts x 0.01 x 60,000)
    (q,) = presets.from_file(TABLES / p.table_file, "okx", price=60_000.0, ct_val=0.01).values()
    assert q.schedule.lowers[1] == pytest.approx(600_000)


def test_okx_tiers_price_the_whole_position_at_its_tier():
    """OKX applies the tier's rates to the whole position (no deduction; OKX help "Tiered maintenance margin
    ratio"): MM = N x mmr and IM = N x imr of the tier holding N (minSz < contracts <= maxSz), read here
    straight from the bundled answer; float and exact paths agree, and MM jumps at a cap."""
    p = presets.get("okx_btc_usdt_swap")
    doc = json.loads((TABLES / p.table_file).read_text())
    rows = doc["data"]
    px = p.reference_price
    ct = float(_entry(p.table_file)["options"]["ct_val"]) if "options" in _entry(p.table_file) else 0.01
    for notional in (500_000, 3_000_000, 50_000_000):
        contracts = notional / (ct * px)
        (row,) = [r for r in rows if float(r["minSz"]) <= contracts <= float(r["maxSz"])]
        r = p.margin(notional)
        assert r.mm == pytest.approx(notional * float(row["mmr"]), rel=1e-12)
        assert r.im == pytest.approx(notional * float(row["imr"]), rel=1e-12)
        im_x, mm_x = p.margin_exact(str(notional))
        assert float(mm_x) == pytest.approx(r.mm, rel=1e-12) and float(im_x) == pytest.approx(r.im, rel=1e-12)
    cap = float(rows[0]["maxSz"]) * ct * px
    below, above = p.margin(cap).mm, p.margin(cap * (1 + 1e-9)).mm
    assert above - below == pytest.approx(cap * (float(rows[1]["mmr"]) - float(rows[0]["mmr"])), rel=1e-6)
