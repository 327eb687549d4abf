"""What the routes return, checked against the store and the library called directly, or worked arithmetic."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from margincal.data.store import connect, save_result
from margincal.margin import params as mparams
from margincal.service import auth


def _h(client: Any, role: str) -> dict[str, str]:
    return {"X-API-Key": client.keys[role]}


# ------------------------------------------------------------------ keys


def test_key_is_stored_as_salted_hmac_never_in_clear(tmp_path: Any) -> None:
    con = connect(tmp_path / "k.duckdb")
    new = auth.create_key(con, "trader", "bob")
    stored = con.execute("SELECT key_hash FROM api_keys WHERE key_id = ?", [new.key_id]).fetchone()[0]
    secret = new.key.split("_", 2)[2]
    assert secret not in stored and new.key not in stored
    scheme, salt_hex, digest = stored.split("$")
    assert scheme == "hmac-sha256" and len(bytes.fromhex(salt_hex)) == 16
    # independent recomputation with the standard library: HMAC-SHA256(key=salt, msg=secret)
    assert digest == hmac.new(bytes.fromhex(salt_hex), secret.encode(), hashlib.sha256).hexdigest()
    # a second key gets another salt, so equal secrets would not give equal hashes
    other = con.execute("SELECT key_hash FROM api_keys WHERE key_id = ?",
                        [auth.create_key(con, "trader", "bob2").key_id]).fetchone()[0]
    assert other.split("$")[1] != salt_hex
    assert auth.authenticate(con, new.key) == auth.Principal(new.key_id, "trader", "bob")
    with pytest.raises(auth.AuthError):
        auth.authenticate(con, new.key[:-1] + ("A" if new.key[-1] != "A" else "B"))
    con.close()


def test_keys_cli_create_list_revoke(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from margincal.cli.app import app

    store = str(tmp_path / "cli.duckdb")
    runner = CliRunner()
    r = runner.invoke(app, ["keys", "create", "--role", "risk_officer", "--name", "carol", "--store", store, "--json"])
    assert r.exit_code == 0, r.output
    made = json.loads(r.stdout)
    assert made["key"].startswith(f"mc_{made['key_id']}_")
    r = runner.invoke(app, ["keys", "list", "--store", store, "--json"])
    listed = json.loads(r.stdout)
    assert [(k["key_id"], k["role"], k["name"], k["active"]) for k in listed] == [
        (made["key_id"], "risk_officer", "carol", True)]
    assert made["key"].split("_", 2)[2] not in r.stdout
    r = runner.invoke(app, ["keys", "revoke", made["key_id"], "--store", store])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["keys", "revoke", made["key_id"], "--store", store])
    assert r.exit_code == 2 and "already revoked" in r.output
    r = runner.invoke(app, ["keys", "create", "--role", "superuser", "--store", store])
    assert r.exit_code == 2 and "superuser" in r.output and "Traceback" not in r.output
    con = connect(store)
    with pytest.raises(auth.AuthError):
        auth.authenticate(con, made["key"])
    actions = [r[0] for r in con.execute("SELECT action FROM audit_log ORDER BY seq").fetchall()]
    con.close()
    assert actions == ["key_create", "key_revoke"]


# ------------------------------------------------------------------ instruments and parameter sets


def test_instruments_carry_the_published_rates(client: Any) -> None:
    rows = client.get("/api/instruments", headers=_h(client, "viewer")).json()
    con = connect(client.store_path)
    try:
        pset = mparams.load(con)
    finally:
        con.close()
    got = {r["instrument"]: (r["im_rate"], r["mm_rate"], r["version"]) for r in rows}
    assert got == {n: (pset[n].im_rate, pset[n].mm_rate, pset.version) for n in pset.instruments()}
    for r in rows:
        assert r["max_leverage"] == pytest.approx(1.0 / r["im_rate"], abs=0.006)
        assert r["timeframes"] == ["1d"]


def test_history_is_the_causal_margin_path(client: Any) -> None:
    from margincal.config import CalibrationSettings
    from margincal.data.store import load_bars
    from margincal.margin.published import published_history

    h = client.get("/api/instruments/ETH-USDT/history", headers=_h(client, "viewer")).json()
    con = connect(client.store_path)
    try:
        path = published_history(load_bars(con, "ETH-USDT", "1d"), "1d", CalibrationSettings())
    finally:
        con.close()
    assert h["timeframe"] == "1d" and len(h["ts"]) == len(path)
    assert h["close"][-1] == pytest.approx(float(path["close"].iloc[-1]))
    im = [x for x in h["im_rate"] if x is not None]
    assert im[-1] == pytest.approx(float(path["im_rate"].iloc[-1]))
    assert h["mm_rate"][-1] == pytest.approx(float(path["mm_rate"].iloc[-1]))
    # MM = 0.5 x IM before rounding up to 5 bp (CalibrationSettings), never above IM
    assert 0.5 * h["im_rate"][-1] - 0.0005 <= h["mm_rate"][-1] <= h["im_rate"][-1]
    assert [p["version"] for p in h["published"]] == [1]


def test_versions_diff_and_csv(client: Any) -> None:
    pid = client.proposal(factor=1.2)
    r = client.post(f"/api/proposals/{pid}/approve", json={"comment": "ok"}, headers=_h(client, "risk_officer"))
    assert r.status_code == 200, r.text
    assert r.json()["published_version"] == 2
    versions = client.get("/api/parameter-sets", headers=_h(client, "viewer")).json()
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["created_by"] == "risk_officer-user" and versions[1]["parent_version"] == 1
    v1 = client.get("/api/parameter-sets/1", headers=_h(client, "viewer")).json()
    d = client.get("/api/parameter-sets/2/diff", headers=_h(client, "viewer")).json()
    im1 = next(i["im_rate"] for i in v1["instruments"] if i["instrument"] == "BTC-USDT")
    assert d["against"] == 1
    assert [(c["instrument"], c["change"]) for c in d["changes"]] == [("BTC-USDT", "changed")]
    assert d["changes"][0]["im_after"] == pytest.approx(1.2 * im1)
    assert d["changes"][0]["im_change_pct"] == pytest.approx(20.0)
    csv1 = client.get("/api/parameter-sets/1/csv", headers=_h(client, "viewer"))
    csv2 = client.get("/api/parameter-sets/2/csv", headers=_h(client, "viewer"))
    assert csv2.headers["content-type"].startswith("text/csv")

    def tier1_im(text: str) -> float:
        line = next(ln for ln in text.splitlines() if ln.startswith("BTC-USDT,1,"))
        return float(line.split(",")[5])  # column 6: initial_margin_rate

    # an approved change scales the whole bracket table by the same factor (1.2)
    assert tier1_im(csv2.text) == pytest.approx(1.2 * tier1_im(csv1.text))


# ------------------------------------------------------------------ margin


def test_standalone_what_if_worked_arithmetic(client: Any) -> None:
    """IM = |qty| x last close x IM rate per instrument, summed (no offsets)."""
    con = connect(client.store_path)
    try:
        pset = mparams.load(con)
        px = {i: con.execute("SELECT close FROM bars WHERE instrument = ? ORDER BY ts DESC LIMIT 1",
                             [i]).fetchone()[0] for i in ("BTC-USDT", "ETH-USDT")}
    finally:
        con.close()
    body = {"positions": [{"instrument": "BTC-USDT", "quantity": 2.0}, {"instrument": "ETH-USDT", "quantity": -10}],
            "order": {"instrument": "BTC-USDT", "side": "sell", "quantity": 0.5}, "method": "standalone"}
    r = client.post("/api/margin/what-if", json=body, headers=_h(client, "trader")).json()
    r_btc, r_eth = pset["BTC-USDT"].im_rate, pset["ETH-USDT"].im_rate
    before = 2.0 * px["BTC-USDT"] * r_btc + 10 * px["ETH-USDT"] * r_eth
    after = 1.5 * px["BTC-USDT"] * r_btc + 10 * px["ETH-USDT"] * r_eth
    assert r["before"]["im"] == pytest.approx(before)
    assert r["after"]["im"] == pytest.approx(after)
    assert r["marginal_im"] == pytest.approx(-0.5 * px["BTC-USDT"] * r_btc)
    assert r["driving_scenario"] is not None


def test_risk_matrix_what_if_matches_the_portfolio_module(client: Any) -> None:
    from margincal.margin.portfolio import Portfolio, build_market, parse_instrument, what_if

    positions = {"BTC-PERP": 2.0, "BTC-25DEC26-90000-C": -3.0, "BTC-25DEC26": -1.0}
    body = {"positions": [{"instrument": k, "quantity": v} for k, v in positions.items()],
            "order": {"instrument": "BTC-PERP", "side": "sell", "quantity": 1.0}, "flat_vol": 0.55}
    r = client.post("/api/margin/what-if", json=body, headers=_h(client, "trader"))
    assert r.status_code == 200, r.text
    got = r.json()
    con = connect(client.store_path)
    try:
        specs = [parse_instrument(n) for n in [*positions, "BTC-PERP"]]
        market, _ = build_market(specs, con=con, flat_vol=0.55)
    finally:
        con.close()
    ref = what_if(Portfolio(positions=positions, market=market), {"BTC-PERP": -1.0})
    assert got["before"]["im"] == pytest.approx(ref.im_before, rel=1e-12)
    assert got["after"]["im"] == pytest.approx(ref.im_after, rel=1e-12)
    assert got["marginal_im"] == pytest.approx(ref.marginal_im, rel=1e-9, abs=1e-9)
    assert got["driving_scenario"] == ref.driving_after
    assert got["method"] == "risk_matrix"
    # the same portfolio through /portfolio gives the "before" margin
    p = client.post("/api/margin/portfolio", json={k: v for k, v in body.items() if k != "order"},
                    headers=_h(client, "trader")).json()
    assert p["im"] == pytest.approx(ref.im_before, rel=1e-12)
    # a second, larger request reuses (and widens) the cached market: same answer for the first
    body2 = {**body, "positions": [*body["positions"], {"instrument": "BTC-25DEC26-70000-P", "quantity": 1}]}
    assert client.post("/api/margin/what-if", json=body2, headers=_h(client, "trader")).status_code == 200
    again = client.post("/api/margin/what-if", json=body, headers=_h(client, "trader")).json()
    assert again["before"]["im"] == pytest.approx(ref.im_before, rel=1e-12)


# ------------------------------------------------------------------ proposals


def test_four_eyes_author_cannot_decide(client: Any) -> None:
    pid = client.proposal(author="alice")
    for verb in ("approve", "reject"):
        r = client.post(f"/api/proposals/{pid}/{verb}", headers=_h(client, "alice"))
        assert r.status_code == 403, r.text
        assert "four-eyes" in r.json()["detail"]
    listed = client.get("/api/proposals?status=pending", headers=_h(client, "viewer")).json()
    assert [p["proposal_id"] for p in listed] == [pid]
    assert listed[0]["changes_normalized"][0]["instrument"] == "BTC-USDT"


def test_reject_then_conflicts_and_not_found(client: Any) -> None:
    pid = client.proposal()
    r = client.post(f"/api/proposals/{pid}/reject", json={"comment": "not convinced"},
                    headers=_h(client, "risk_officer"))
    assert r.status_code == 200 and r.json()["decision"] == "rejected" and r.json()["published_version"] is None
    assert client.post(f"/api/proposals/{pid}/approve", headers=_h(client, "risk_officer")).status_code == 409
    assert client.post("/api/proposals/P-nope/approve", headers=_h(client, "risk_officer")).status_code == 404
    versions = client.get("/api/parameter-sets", headers=_h(client, "viewer")).json()
    assert len(versions) == 1  # nothing published by a rejection
    p = client.get("/api/proposals", headers=_h(client, "viewer")).json()[0]
    assert (p["status"], p["decided_by"], p["comment"]) == ("rejected", "risk_officer-user", "not convinced")


def test_decisions_are_audited_and_the_chain_holds(client: Any) -> None:
    from margincal.data.audit import verify_chain

    pid = client.proposal()
    client.post(f"/api/proposals/{pid}/approve", headers=_h(client, "risk_officer"))
    con = connect(client.store_path, read_only=False)
    try:
        rows = con.execute("SELECT actor, action, subject FROM audit_log ORDER BY seq DESC LIMIT 3").fetchall()
        chain = verify_chain(con)
    finally:
        con.close()
    assert rows[0] == ("risk_officer-user", "approve", f"proposal:{pid}")
    assert rows[1][:2] == ("risk_officer-user", "publish")
    assert chain.ok


# ------------------------------------------------------------------ signals and events


def _events(text: str) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":") and ": " in line)
        if "data" in fields:
            out.append((fields["id"], fields["event"], json.loads(fields["data"])))
    return out


def test_event_stream_backlog_and_resume(client: Any) -> None:
    r = client.get("/api/signals/stream?max_seconds=0&backlog=3", headers=_h(client, "viewer"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    ev = _events(r.text)
    assert len(ev) == 3 and all(e[1] == "audit" for e in ev)
    seqs = [e[2]["seq"] for e in ev]
    assert seqs == sorted(seqs)
    last_id = ev[-1][0]
    pid = client.proposal()
    client.post(f"/api/proposals/{pid}/approve", headers=_h(client, "risk_officer"))
    r2 = client.get("/api/signals/stream?max_seconds=0", headers={**_h(client, "viewer"), "Last-Event-ID": last_id})
    actions = [e[2]["action"] for e in _events(r2.text)]
    assert actions == ["propose", "publish", "approve"]


def test_event_stream_resumed_from_its_cursor_is_exactly_once(client: Any) -> None:
    """Issue 16 item 10: 450 signals and the audit entries of a decided proposal, read over reconnections that
    each send back the id of the last event received (one poll per connection, at most 200 of each kind):
    every audit entry and every signal arrives exactly once, each kind in insertion order."""
    pid = client.proposal()
    client.post(f"/api/proposals/{pid}/approve", headers=_h(client, "risk_officer"))
    values = ", ".join(f"('m', TIMESTAMP '2024-03-05 00:00' + INTERVAL {i} MINUTE, 'BTC-USDT', 'vol_regime', "
                       f"'warning', 'vol up {i}', '{{}}', now()::TIMESTAMP)" for i in range(450))
    with client.app.state.store.writer() as cur:
        cur.execute(f"INSERT INTO signals (monitor, ts, instrument, kind, severity, reason, \"values\", "
                    f"recorded_at) VALUES {values}")
        audit_seqs = [r[0] for r in cur.execute("SELECT seq FROM audit_log ORDER BY seq").fetchall()]
        signal_seqs = [r[0] for r in cur.execute("SELECT seq FROM signals ORDER BY seq").fetchall()]
    got: list[tuple[str, str, dict[str, Any]]] = []
    last = "0~"
    for _ in range(20):
        r = client.get("/api/signals/stream?max_seconds=0", headers={**_h(client, "viewer"), "Last-Event-ID": last})
        assert r.status_code == 200
        ev = _events(r.text)
        if not ev:
            break
        got += ev
        last = ev[-1][0]
    assert [e[2]["seq"] for e in got if e[1] == "audit"] == audit_seqs
    assert [e[2]["seq"] for e in got if e[1] == "signal"] == signal_seqs
    assert len(signal_seqs) == 450


def test_signals_from_a_signals_table(client: Any) -> None:
    """Signals the monitor wrote to the ``signals`` table: listed newest first and streamed."""
    assert client.get("/api/signals", headers=_h(client, "viewer")).json() == []
    with client.app.state.store.writer() as cur:
        cur.execute("INSERT INTO signals (monitor, ts, instrument, kind, severity, reason, \"values\", recorded_at) "
                    "VALUES ('m', '2024-03-05 10:00', 'BTC-USDT', 'vol_regime', 'warning', 'vol up', "
                    "'{\"ratio\": 1.9}', now()::TIMESTAMP), ('m', '2024-03-05 11:00', 'ETH-USDT', 'volume_surge', "
                    "'critical', 'volume', '{\"z\": 7}', now()::TIMESTAMP)")
    rows = client.get("/api/signals", headers=_h(client, "viewer")).json()
    assert [(r["instrument"], r["severity"]) for r in rows] == [("ETH-USDT", "critical"), ("BTC-USDT", "warning")]
    assert rows[0]["values"] == {"z": 7}
    crit = client.get("/api/signals?severity=critical", headers=_h(client, "viewer")).json()
    assert [r["instrument"] for r in crit] == ["ETH-USDT"]
    ev = _events(client.get("/api/signals/stream?max_seconds=0&backlog=1", headers=_h(client, "viewer")).text)
    assert [e[1] for e in ev] == ["audit"] or [e[1] for e in ev][-1] == "signal"
    sig = [e for e in ev if e[1] == "signal"]
    assert [e[2]["instrument"] for e in sig] == ["ETH-USDT"]


# ------------------------------------------------------------------ results, keys over HTTP, policy, docs


def test_results_list_and_payload(client: Any) -> None:
    listed = {r["kind"]: r for r in client.get("/api/results", headers=_h(client, "viewer")).json()}
    assert listed["backtest"]["available"] and not listed["stress"]["available"]
    assert "margincal stress" in listed["stress"]["produce_with"]
    with client.app.state.store.writer() as cur:
        save_result(cur, "st-1", "stress", {"scenarios": 2}, {"rows": [{"scenario": "crash", "loss": 0.3}]})
    r = client.get("/api/results/stress", headers=_h(client, "viewer")).json()
    assert r["run_id"] == "st-1" and r["payload"]["rows"][0]["loss"] == 0.3


def test_http_key_admin_roundtrip(client: Any) -> None:
    # an admin cannot mint an approver (segregation of duties), nor a second key for an existing name
    r = client.post("/api/keys", json={"role": "risk_officer", "name": "dora"}, headers=_h(client, "admin"))
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    r = client.post("/api/keys", json={"role": "trader", "name": " Alice"}, headers=_h(client, "admin"))
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    made = client.post("/api/keys", json={"role": "trader", "name": "dora"}, headers=_h(client, "admin"))
    assert made.status_code == 201
    key = made.json()["key"]
    who = client.get("/api/whoami", headers={"X-API-Key": key}).json()
    assert (who["role"], who["name"], who["permissions"]) == ("trader", "dora", ["margin", "read"])
    listed = client.get("/api/keys", headers=_h(client, "admin")).json()
    assert "dora" in [k["name"] for k in listed] and all("hash" not in json.dumps(k) for k in listed)
    assert client.post("/api/keys", json={"role": "god"}, headers=_h(client, "admin")).status_code == 422
    assert client.delete("/api/keys/ffffffffffff", headers=_h(client, "admin")).status_code == 404
    kid = made.json()["key_id"]
    assert client.delete(f"/api/keys/{kid}", headers=_h(client, "admin")).status_code == 200
    again = client.delete(f"/api/keys/{kid}", headers=_h(client, "admin"))  # revoking twice: a conflict
    assert again.status_code == 409 and again.json()["error"] == "conflict" and "already revoked" in again.text


def test_policy_replace_is_validated_and_audited(client: Any) -> None:
    pol = client.get("/api/policy", headers=_h(client, "viewer")).json()
    text = "name = \"tight\"\n[auto]\nmax_increase = 0.25\n"
    r = client.put("/api/policy", json={"toml": text}, headers=_h(client, "admin"))
    assert r.status_code == 200, r.text
    assert r.json()["policy"]["auto"]["max_increase"] == 0.25 and r.json()["sha256"] != pol["sha256"]
    bad = client.put("/api/policy", json={"toml": "[auto]\nmax_increase = -1\n"}, headers=_h(client, "admin"))
    assert bad.status_code == 422 and "max_increase" in bad.json()["detail"]
    assert client.get("/api/policy", headers=_h(client, "viewer")).json()["policy"]["auto"]["max_increase"] == 0.25


def test_private_docs_need_a_key(seeded: Any) -> None:
    from fastapi.testclient import TestClient

    from margincal.service.app import ServiceSettings, create_app

    path, keys = seeded
    with TestClient(create_app(ServiceSettings(store=path, docs_public=False))) as c:
        assert c.get("/openapi.json").status_code == 401
        assert c.get("/openapi.json", headers={"X-API-Key": keys["viewer"]}).status_code == 200
        assert c.get("/docs").status_code == 200  # the page itself asks for the key


def test_openapi_lists_security_schemes(module_client: Any) -> None:
    spec = module_client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"apiKey", "http"}
    assert spec["paths"]["/api/margin/what-if"]["post"]["requestBody"]["content"]["application/json"]


def test_signals_recorded_as_evidence_by_the_monitor(client: Any) -> None:
    """Without a signals table, the signals behind the monitor's proposals are listed and streamed."""
    import pandas as pd

    from margincal.adjust import signals as sg
    from margincal.adjust.approval import create_proposal

    sig = sg.vol_regime("BTC-USDT", pd.Timestamp("2024-03-05 10:00", tz="UTC"), 2, 0.05, 0.02, 2.5, 24, 720)
    with client.app.state.store.writer() as cur:
        p = mparams.load(cur)["BTC-USDT"]
        seq0 = cur.execute("SELECT max(seq) FROM audit_log").fetchone()[0]
        pid = create_proposal(cur, author="monitor", reason=sig.reason, base_version=1,
                              evidence={"adjustment": {"signals": [sig.as_dict()]}},
                              changes=[{"instrument": "BTC-USDT", "im_before": p.im_rate, "im_after": p.im_rate * 1.3,
                                        "mm_before": p.mm_rate, "mm_after": p.mm_rate * 1.3}])
    rows = client.get("/api/signals", headers=_h(client, "viewer")).json()
    assert [(r["instrument"], r["kind"], r["severity"], r["source"]) for r in rows] == [
        ("BTC-USDT", "vol_regime", "critical", f"proposal:{pid}")]
    assert rows[0]["reason"] == sig.reason
    r = client.get("/api/signals/stream?max_seconds=0", headers={**_h(client, "viewer"), "Last-Event-ID": f"{seq0}~"})
    kinds = [(e[1], e[2].get("action") or e[2].get("kind")) for e in _events(r.text)]
    assert kinds == [("audit", "propose"), ("signal", "vol_regime")]


def test_key_is_checked_before_the_body_is_parsed(client: Any) -> None:
    bad_json = {"content": b"{not json", "headers": {"Content-Type": "application/json"}}
    r = client.post("/api/proposals/P-x/approve", **bad_json)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized" and "request_id" in r.json()
    r = client.post("/api/proposals/P-x/approve", content=b"{not json",
                    headers={"Content-Type": "application/json", "X-API-Key": "mc_000000000000_" + "x" * 43})
    assert r.status_code == 401
    r = client.post("/api/proposals/P-x/approve", content=b"{not json",
                    headers={"Content-Type": "application/json", **_h(client, "risk_officer")})
    assert r.status_code == 422  # authenticated: now the body is parsed and refused


@pytest.mark.parametrize("cursor", ["abc", "-1~x", "1" * 30, "5~not-a-time\x01"])
def test_malformed_last_event_id_is_a_400(client: Any, cursor: str) -> None:
    r = client.get("/api/signals/stream?max_seconds=0", headers={**_h(client, "viewer"), "Last-Event-ID": cursor})
    assert r.status_code == 400 and "Last-Event-ID" in r.json()["detail"]


def test_stream_cursor_is_the_insertion_order_so_replays_of_earlier_periods_are_delivered(client: Any) -> None:
    """Issue 16 item 10: the signal cursor is an insertion sequence, not market time; a cursor resumes exactly."""
    def insert(ts: str, inst: str) -> None:
        with client.app.state.store.writer() as cur:
            cur.execute("INSERT INTO signals (monitor, ts, instrument, kind, severity, reason, \"values\", recorded_at) "
                        f"VALUES ('m', '{ts}', '{inst}', 'vol_regime', 'warning', 'r', '{{}}', now()::TIMESTAMP)")

    insert("2025-06-01 00:00", "BTC-USDT")
    ev = _events(client.get("/api/signals/stream?max_seconds=0&backlog=500", headers=_h(client, "viewer")).text)
    assert [e[2]["instrument"] for e in ev if e[1] == "signal"] == ["BTC-USDT"]
    last_id = ev[-1][0]
    insert("2022-11-09 00:00", "ETH-USDT")  # a replay of an earlier period, written later
    insert("2022-11-08 00:00", "SOL-USDT")
    r = client.get("/api/signals/stream?max_seconds=0", headers={**_h(client, "viewer"), "Last-Event-ID": last_id})
    sig = [e for e in _events(r.text) if e[1] == "signal"]
    assert [e[2]["instrument"] for e in sig] == ["ETH-USDT", "SOL-USDT"]  # each once, in insertion order
    r = client.get("/api/signals/stream?max_seconds=0", headers={**_h(client, "viewer"), "Last-Event-ID": sig[-1][0]})
    assert not [e for e in _events(r.text) if e[1] == "signal"]
    for bad in ("1~2024-01-01T00:00:00", "x~1", "1~-1", "1~1e3"):
        r = client.get("/api/signals/stream?max_seconds=0", headers={**_h(client, "viewer"), "Last-Event-ID": bad})
        assert r.status_code == 400, (bad, r.status_code)
