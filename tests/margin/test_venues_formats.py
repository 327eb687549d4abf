"""Venue formats: import / export round trips, provenance, clear errors, and the CLI.

Inputs are the bundled venue tables (src/margincal/margin/venue_tables, sources in MANIFEST.json) and
small files written here in each venue's documented response shape.
"""

from __future__ import annotations

import json
import warnings
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from margincal.cli.app import app
from margincal.data.store import open_store
from margincal.errors import ConfigError, MargincalWarning
from margincal.margin import params as P
from margincal.margin import presets, venues
from margincal.margin.tiers import TierSchedule

TABLES = presets.TABLES_DIR
REF = Path(__file__).resolve().parents[1] / "reference"
runner = CliRunner()

BYBIT = {"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": [
    {"id": 1, "symbol": "BTCUSDT", "riskLimitValue": "2000000", "maintenanceMargin": "0.005",
     "initialMargin": "0.01", "isLowestRisk": 1, "maxLeverage": "100.00", "mmDeduction": ""},
    {"id": 2, "symbol": "BTCUSDT", "riskLimitValue": "4000000", "maintenanceMargin": "0.01",
     "initialMargin": "0.02", "isLowestRisk": 0, "maxLeverage": "50.00", "mmDeduction": "10000"}]}}
OKX = {"code": "0", "msg": "", "data": [
    {"instFamily": "BTC-USDT", "uly": "BTC-USDT", "tier": "1", "minSz": "0", "maxSz": "1000", "imr": "0.01",
     "mmr": "0.004", "maxLever": "100"},
    {"instFamily": "BTC-USDT", "uly": "BTC-USDT", "tier": "2", "minSz": "1001", "maxSz": "3000", "imr": "0.02",
     "mmr": "0.008", "maxLever": "50"}]}
DRIFT = {"perpMarkets": [{"marketIndex": 1, "name": "BTC-PERP", "marginRatioInitial": 1000,
                          "marginRatioMaintenance": 500, "imfFactor": 50}]}


def _btc_pset():
    return presets.parameter_set(["binance_btcusdt"])


def _sched(p):
    return TierSchedule.from_details(p.details["tiers"])


# ------------------------------------------------------------------------------- bundled tables
@pytest.mark.parametrize("file,fmt", [("binance_usdm_BTCUSDT.json", "binance"),
                                      ("hyperliquid_meta_BTC_ETH.json", "hyperliquid"),
                                      ("dydx_liquidity_tiers.json", "dydx"),
                                      ("deribit_standard_futures.json", "deribit")])
def test_bundled_table_export_gives_back_the_file(file, fmt):
    original = json.loads((TABLES / file).read_text())
    pset = venues.import_table(TABLES / file, fmt)
    assert pset.provenance["venue"] == venues.get_format(fmt).venue and pset.provenance["sha256"]
    assert pset.provenance["fetched"]  # the file's date when not given
    again = venues.export_table(pset, fmt)
    if fmt == "binance":
        for a, b in zip(original[0]["brackets"], again[0]["brackets"], strict=True):
            assert {k: float(a[k]) for k in a} == {k: float(b[k]) for k in a}
    elif fmt == "dydx":
        for a, b in zip(sorted(original["liquidity_tiers"], key=lambda t: t["id"]),
                        sorted(again["liquidity_tiers"], key=lambda t: t["id"]), strict=True):
            for k in ("initial_margin_ppm", "maintenance_fraction_ppm", "open_interest_lower_cap",
                      "open_interest_upper_cap", "name"):
                assert str(a[k]) == str(b[k])
    elif fmt == "hyperliquid":
        assert again["marginTables"] == original["marginTables"]
        assert [(u["name"], u["marginTableId"]) for u in again["universe"]] == \
            [(u["name"], u["marginTableId"]) for u in original["universe"]]
    else:
        assert again["futures"] == original["futures"]


def test_binance_import_matches_the_published_csv_table():
    p = venues.import_table(TABLES / "binance_usdm_BTCUSDT.json", "binance")["BTCUSDT"]
    ref = TierSchedule.from_brackets(REF / "binance_btcusdt_brackets.csv")
    pd.testing.assert_series_equal(pd.Series(_sched(p).maintenance_amounts), pd.Series(ref.maintenance_amounts))


# --------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("fmt,opts", [("binance", {}), ("binance-coinm", {"price": 100_000}), ("bybit", {}),
                                      ("okx", {"price": 100_000}), ("hyperliquid", {})])
def test_bracket_formats_round_trip_our_tiers(fmt, opts):
    pset = _btc_pset()
    src = _sched(pset["BTCUSDT"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MargincalWarning)
        doc = venues.export_table(pset, fmt, **opts)
    back = venues.import_table(json.dumps(doc), fmt, **({"price": 100_000} if fmt in ("okx", "binance-coinm")
                                                          else {}))
    (p,) = back.params.values()
    got = _sched(p)
    assert list(got.max_leverages) == list(src.max_leverages)
    assert got.lowers == pytest.approx(src.lowers)
    if fmt != "hyperliquid":  # Hyperliquid's MM is always half the IM at max leverage
        assert list(got.mm_rates) == pytest.approx(list(src.mm_rates))
    # fixed point: exporting the import gives the same document
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MargincalWarning)
        assert venues.export_table(back, fmt, **opts) == doc


@pytest.mark.parametrize("fmt,doc,opts", [("bybit", BYBIT, {}), ("okx", OKX, {"price": 50_000}),
                                          ("drift", DRIFT, {})])
def test_venue_files_round_trip(fmt, doc, opts):
    pset = venues.import_table(json.dumps(doc), fmt, **opts)
    again = venues.export_table(pset, fmt)
    if fmt == "bybit":
        assert [(r["riskLimitValue"], r["maintenanceMargin"], r["initialMargin"]) for r in again["result"]["list"]] \
            == [(r["riskLimitValue"], r["maintenanceMargin"], r["initialMargin"]) for r in doc["result"]["list"]]
        assert again["result"]["list"][1]["mmDeduction"] == "10000"  # 2,000,000 * (0.01 - 0.005)
    elif fmt == "okx":
        assert [(r["maxSz"], r["imr"], r["mmr"], r["maxLever"]) for r in again["data"]] == \
            [(r["maxSz"], r["imr"], r["mmr"], r["maxLever"]) for r in doc["data"]]
        # 1000 contracts x 0.01 BTC x 50,000 = 500,000 USDT
        assert pset["BTC-USDT"].details["tiers"][1]["lower"] == 500_000
    else:
        assert again == {"perpMarkets": [{**doc["perpMarkets"][0], "name": "BTC-PERP"}]}


def test_okx_tiers_follow_on_by_one_lot_and_gaps_are_errors():
    # BTC-USDT-SWAP's lot is 0.01 contract: OKX writes the next tier's minSz as 1000.01 after maxSz 1000
    lot = json.loads(json.dumps(OKX))
    lot["data"][1]["minSz"] = "1000.01"
    a = venues.import_table(json.dumps(lot), "okx", price=50_000)["BTC-USDT"]
    b = venues.import_table(json.dumps(OKX), "okx", price=50_000)["BTC-USDT"]
    assert a.details["tiers"] == b.details["tiers"]
    assert a.details["venue_brackets"][1]["minSz"] == "1000.01"
    gap = json.loads(json.dumps(OKX))
    gap["data"][1]["minSz"] = "1002"
    with pytest.raises(ConfigError, match=r"tier 2: minSz is '1002'; it must follow the previous maxSz 1000"):
        venues.import_table(json.dumps(gap), "okx", price=50_000)


def test_dydx_and_drift_and_deribit_export_our_calibrated_shape():
    pset = _btc_pset()
    with pytest.warns(MargincalWarning, match="no size brackets"):
        d = venues.export_table(pset, "dydx")
    t = d["liquidity_tiers"][0]
    assert t["initial_margin_ppm"] == 8_000 and t["maintenance_fraction_ppm"] == 500_000  # 0.8%, MM 0.4%
    assert d["perpetuals"][0]["params"]["atomic_resolution"] == -10
    dr = venues.export_table(pset, "drift", price=100_000)["perpMarkets"][0]
    assert (dr["marginRatioInitial"], dr["marginRatioMaintenance"]) == (80, 40)
    # the fitted IMF factor covers the brackets' average IM at every cap
    a = venues.drift.DriftArithmetic(80, 40, dr["imfFactor"])
    sched = _sched(pset["BTCUSDT"])
    for cap in sched.uppers:
        size = int(Fraction(str(cap)) / 100_000 * venues.drift.BASE_PRECISION)
        assert a.margin_ratio(size) / 1e4 >= sched.initial_rate(cap) - 1e-4
    de = venues.export_table(pset, "deribit", price=100_000)["futures"][0]
    assert de["initial_margin"]["base"] == "0.008"
    with pytest.raises(ConfigError, match="--price"):
        venues.export_table(pset, "drift")


# -------------------------------------------------------------------------------------- errors
def test_errors_name_file_record_field_and_rule(tmp_path):
    bad = tmp_path / "brackets.json"
    bad.write_text('[{"symbol": "BTCUSDT", "brackets": [')
    with pytest.raises(ConfigError, match=r"brackets.json line 1 column \d+: not valid JSON"):
        venues.import_table(bad, "binance")
    doc = json.loads((TABLES / "binance_usdm_BTCUSDT.json").read_text())
    doc[0]["brackets"][2]["maintMarginRatio"] = "x"
    with pytest.raises(ConfigError, match="<text>: BTCUSDT bracket 3: maintMarginRatio is 'x'; it must be a decimal"):
        venues.import_table(json.dumps(doc), "binance")
    doc = json.loads((TABLES / "binance_usdm_BTCUSDT.json").read_text())
    doc[0]["brackets"][3]["cum"] = 46_301
    with pytest.raises(ConfigError, match="bracket 4: published maintenance deduction is 46301 but the brackets give "
                                          "46300"):
        venues.import_table(json.dumps(doc), "binance", name="live.json")
    del doc[0]["brackets"][1]["initialLeverage"]
    with pytest.raises(ConfigError, match="bracket 2: field 'initialLeverage' is missing"):
        venues.import_table(json.dumps(doc), "binance")
    # Bybit's own documentation example of the inverse response writes percent ("0.5", "1" at 100x)
    pct = {"retCode": 0, "result": {"category": "inverse", "list": [
        {"id": 1, "symbol": "BTCUSD", "riskLimitValue": "150", "maintenanceMargin": "0.5", "initialMargin": "1",
         "isLowestRisk": 1, "maxLeverage": "100.00"}]}}
    with pytest.raises(ConfigError, match="BTCUSD id 1: initialMargin is '1'; it must be 1/maxLeverage = 0.01"):
        venues.import_table(json.dumps(pct), "bybit", price=60_000)
    with pytest.raises(ConfigError, match="open_interest_lower_cap is 5; it must not exceed open_interest_upper_cap 1"):
        venues.import_table(json.dumps({"liquidity_tiers": [{"id": 0, "name": "X", "initial_margin_ppm": 1,
                                                             "maintenance_fraction_ppm": 1,
                                                             "open_interest_lower_cap": 5,
                                                             "open_interest_upper_cap": 1}]}), "dydx")
    with pytest.raises(ConfigError, match="initial_margin_ppm is 1.5; it must be a whole number"):
        venues.import_table(json.dumps({"liquidity_tiers": [{"initial_margin_ppm": 1.5,
                                                             "maintenance_fraction_ppm": 1}]}), "dydx")
    with pytest.raises(ConfigError, match="marginRatioMaintenance is 2000; it must not exceed marginRatioInitial 1000"):
        venues.import_table(json.dumps({"perpMarkets": [{"name": "X", "marginRatioInitial": 1000,
                                                         "marginRatioMaintenance": 2000}]}), "drift")
    with pytest.raises(ConfigError, match="OKX tiers are in contracts; give the reference price"):
        venues.import_table(json.dumps(OKX), "okx")
    with pytest.raises(ConfigError, match="unknown venue format 'ftx'"):
        venues.import_table(json.dumps(OKX), "ftx")
    with pytest.raises(ConfigError, match="format binance takes no option price"):
        venues.import_table(TABLES / "binance_usdm_BTCUSDT.json", "binance", price=1.0)


# ------------------------------------------------------------------------------- presets from files
def test_newer_table_from_a_file_without_code_changes(tmp_path):
    doc = json.loads((TABLES / "hyperliquid_meta_BTC_ETH.json").read_text())
    doc["marginTables"][0][1]["marginTiers"][0]["maxLeverage"] = 50  # a "newer" BTC table
    f = tmp_path / "meta.json"
    f.write_text(json.dumps(doc))
    new = presets.from_file(f, "hyperliquid", as_of="2026-12-01", source="https://api.hyperliquid.xyz/info meta")
    p = new["hyperliquid_btc"]
    assert p.as_of == "2026-12-01" and p.table_file == "meta.json"
    assert p.margin_rate(1_000_000).im == pytest.approx(0.02)
    presets.register(p)
    try:
        assert presets.get("hyperliquid_btc").details()["as_of"] == "2026-12-01"
    finally:
        presets.register(*presets.load_manifest(TABLES / "MANIFEST.json").values())
    assert presets.get("hyperliquid_btc").margin_rate(1_000_000).im == pytest.approx(0.025)


def test_every_preset_names_its_table_date_and_source():
    for name in presets.names():
        d = presets.get(name).details()
        assert d["source"] and d["retrieved"] and d["table_file"]
        # a table of unknown date says so instead of inventing one
        assert d["as_of"] if "as_of" in d else "as_of unknown" in d["notes"]


# -------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def store(tmp_path):
    path = tmp_path / "s.duckdb"
    with open_store(path) as con:
        P.publish(con, presets.parameter_set(["binance_btcusdt", "dydx_mid_cap"]), created_by="t", source="test")
    return path


def test_cli_export_venue_formats_and_import_publish(store, tmp_path):
    out = tmp_path / "bybit.json"
    r = runner.invoke(app, ["params", "export", "--format", "bybit", "-i", "BTCUSDT", "--out", str(out),
                            "--store", str(store)])
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())["result"]["list"]
    assert len(rows) == 10 and rows[3]["mmDeduction"] == "46300"
    r = runner.invoke(app, ["params", "export", "--format", "dydx", "-i", "DYDX-MID_CAP", "--store", str(store)])
    assert r.exit_code == 0, r.output
    t = json.loads(r.stdout)["liquidity_tiers"][0]
    assert t["open_interest_lower_cap"] == str(40_000_000 * 10**6)
    r = runner.invoke(app, ["params", "import", str(out), "--format", "bybit", "--fetched", "2026-12-04",
                            "--publish", "--json", "--store", str(store)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["version"] == 2 and doc["provenance"]["fetched"] == "2026-12-04"
    assert doc["provenance"]["source_file"] == "bybit.json" and doc["provenance"]["venue"] == "bybit"
    with open_store(store, read_only=True) as con:
        v2 = P.load(con, 2)
    assert v2.source == "import:bybit" and len(v2["BTCUSDT"].details["tiers"]) == 10


def test_import_publish_is_a_proposal_a_lower_table_waits_for_an_officer(store, tmp_path):
    """`params import --publish` goes through the proposal/decision path like every change of the live set:
    a venue table that lowers a live rate is filed as a proposal and the live set stays as it was."""
    out = tmp_path / "bybit.json"
    assert runner.invoke(app, ["params", "export", "--format", "bybit", "-i", "BTCUSDT", "--out", str(out),
                               "--store", str(store)]).exit_code == 0
    with open_store(store) as con:  # the live BTCUSDT row at twice the table's rates (an officer's earlier raise)
        cur = P.load(con)
        row = cur["BTCUSDT"]
        P.publish(con, cur.with_changes({"BTCUSDT": P.InstrumentParams("BTCUSDT", 2 * row.im_rate, 2 * row.mm_rate,
                                                                        {})}), created_by="t", source="test")
    r = runner.invoke(app, ["params", "import", str(out), "--format", "bybit", "--fetched", "2026-12-04",
                            "--publish", "--json", "--store", str(store)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["version"] is None and doc["applied"] is False and doc["proposal_id"]
    assert "decrease" in doc["pending_reason"]
    with open_store(store, read_only=True) as con:
        assert P.latest_version(con) == 2
        n = con.execute("SELECT count(*) FROM proposals p LEFT JOIN proposal_decisions d USING (proposal_id) "
                        "WHERE d.proposal_id IS NULL").fetchone()[0]
    assert n == 1


def test_cli_errors_one_line_exit_2(store, tmp_path):
    r = runner.invoke(app, ["params", "export", "--format", "kraken", "--store", str(store)])
    assert r.exit_code == 2 and "--format" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["params", "export", "--format", "binance", "--price", "1", "--store", str(store)])
    assert r.exit_code == 2 and "--price does not apply" in r.output
    bad = tmp_path / "okx.json"
    bad.write_text(json.dumps(OKX))
    r = runner.invoke(app, ["params", "import", str(bad), "--format", "okx"])
    assert r.exit_code == 2 and "okx.json: BTC-USDT" in r.output and "--price" in r.output


def test_env_manifest_replaces_a_bundled_table_and_reaches_backtest_policies(tmp_path, monkeypatch):
    from margincal.backtest.policies import make_policy

    doc = json.loads((TABLES / "dydx_liquidity_tiers.json").read_text())
    doc["liquidity_tiers"][0]["initial_margin_ppm"] = 25_000  # a newer Large-Cap IMF
    (tmp_path / "dydx.json").write_text(json.dumps(doc))
    manifest = {"tables": [{"file": "dydx.json", "format": "dydx", "as_of": "2026-12-04",
                            "retrieved": "2026-12-04", "source": "https://example.invalid/dydx",
                            "presets": {"dydx_large_cap": {"symbol": "DYDX-LARGE_CAP",
                                                           "instrument": "DYDX-LARGE_CAP"}}}]}
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    (tmp_path / "bad.json").write_text("{")
    monkeypatch.setenv(presets.ENV_TABLES, f"{tmp_path / 'm.json'}{__import__('os').pathsep}{tmp_path / 'bad.json'}")
    with pytest.warns(MargincalWarning, match="bad.json skipped"):
        built = presets._build()
    assert built["dydx_large_cap"].margin_rate(1e6).im == pytest.approx(0.025)
    assert built["dydx_large_cap"].as_of == "2026-12-04"
    monkeypatch.setattr(presets, "PRESETS", built)
    assert make_policy("preset:dydx_large_cap").value() == pytest.approx(0.025)
