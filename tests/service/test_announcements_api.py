"""GET /api/announcements: announced MM changes with before/after, announcement and effective times, status."""

from __future__ import annotations

from typing import Any

from margincal.margin import params as mparams


def _h(client: Any, role: str) -> dict[str, str]:
    return {"X-API-Key": client.keys[role]}


def _announce(cur: Any, instrument: str, mm_new: float, event_ts: str, effective_at: str) -> int:
    """Publish what the monitor publishes for an IM increase: IM up at once, the MM change announced."""
    pset = mparams.load(cur)
    p = pset[instrument]
    d = {**p.details, "mm_scheduled": {"rate": mm_new, "effective_at": effective_at, "scope": "all_positions"},
         "adjusted": {"by": "auto-adjust", "event_ts": event_ts, "kind": "rate", "scope": "new_exposure",
                      "effective_at": event_ts}}
    rows = {**pset.params, instrument: mparams.InstrumentParams(instrument, p.im_rate * 1.2, p.mm_rate, d)}
    return mparams.publish(cur, mparams.ParameterSet(rows), created_by="monitor:t", source="auto-adjust")


def _apply(cur: Any, instrument: str, mm_new: float, effective_at: str) -> int:
    pset = mparams.load(cur)
    p = pset[instrument]
    d = {**p.details, "mm_scheduled": None,
         "adjusted": {"by": "auto-adjust", "event_ts": effective_at, "kind": "mm_effective",
                      "scope": "all_positions", "effective_at": effective_at}}
    rows = {**pset.params, instrument: mparams.InstrumentParams(instrument, p.im_rate, mm_new, d)}
    return mparams.publish(cur, mparams.ParameterSet(rows), created_by="monitor:t", source="auto-adjust")


def test_announcements_list_pending_and_applied(client: Any) -> None:
    assert client.get("/api/announcements", headers=_h(client, "viewer")).json() == []
    with client.app.state.store.writer() as cur:
        mm0 = {i: p.mm_rate for i, p in mparams.load(cur).params.items()}
        v_btc = _announce(cur, "BTC-USDT", 0.031, "2022-11-08T14:00:00+00:00", "2022-11-09T14:00:00+00:00")
        v_eth = _announce(cur, "ETH-USDT", 0.052, "2022-11-08T15:00:00+00:00", "2022-11-09T15:00:00+00:00")
        v_app = _apply(cur, "BTC-USDT", 0.031, "2022-11-09T14:00:00+00:00")
    rows = client.get("/api/announcements", headers=_h(client, "viewer")).json()
    assert [(r["instrument"], r["status"]) for r in rows] == [("ETH-USDT", "pending"), ("BTC-USDT", "applied")]
    eth, btc = rows
    assert btc == {"instrument": "BTC-USDT", "status": "applied", "mm_before": mm0["BTC-USDT"], "mm_after": 0.031,
                   "im_at_announcement": btc["im_at_announcement"], "announced_version": v_btc,
                   "announced_at": "2022-11-08T14:00:00+00:00", "effective_at": "2022-11-09T14:00:00+00:00",
                   "scope": "all_positions", "published_at": btc["published_at"], "applied_version": v_app,
                   "applied_at": "2022-11-09T14:00:00+00:00"}
    assert eth["announced_version"] == v_eth and eth["mm_before"] == mm0["ETH-USDT"] and eth["applied_at"] is None
    # filters
    q = client.get("/api/announcements?status=pending", headers=_h(client, "viewer")).json()
    assert [r["instrument"] for r in q] == ["ETH-USDT"]
    q = client.get("/api/announcements?instrument=BTC-USDT", headers=_h(client, "viewer")).json()
    assert [r["status"] for r in q] == ["applied"]
    assert len(client.get("/api/announcements?limit=1", headers=_h(client, "viewer")).json()) == 1


def test_announcements_bad_query_is_the_error_envelope(client: Any) -> None:
    r = client.get("/api/announcements?status=later", headers=_h(client, "viewer"))
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
    assert "Traceback" not in r.text
    r = client.get("/api/announcements?limit=0", headers=_h(client, "viewer"))
    assert r.status_code == 422


def test_announcements_schema_in_openapi(client: Any) -> None:
    spec = client.get("/openapi.json", headers=_h(client, "viewer")).json()
    op = spec["paths"]["/api/announcements"]["get"]
    assert op["x-permission"] == "read"
    ref = op["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"].rsplit("/", 1)[1]
    props = spec["components"]["schemas"][ref]["properties"]
    assert {"instrument", "mm_before", "mm_after", "announced_at", "effective_at", "status"} <= set(props)


def test_report_lists_announcements(seeded: Any, tmp_path: Any) -> None:
    import json

    from typer.testing import CliRunner

    from margincal.cli.app import app
    from margincal.data.store import connect

    store, _ = seeded
    out = tmp_path / "r.html"
    r = CliRunner().invoke(app, ["report", "--store", str(store), "--out", str(out), "--json", "--no-charts"])
    status = {s["section"]: s for s in json.loads(r.stdout)["sections"]}
    assert not status["Announced MM changes"]["has_results"]
    assert "margincal params announcements" in out.read_text(encoding="utf-8")
    con = connect(store)
    try:
        _announce(con, "BTC-USDT", 0.031, "2022-11-08T14:00:00+00:00", "2022-11-09T14:00:00+00:00")
        _announce(con, "ETH-USDT", 0.052, "2022-11-08T15:00:00+00:00", "2022-11-09T15:00:00+00:00")
        _apply(con, "BTC-USDT", 0.031, "2022-11-09T14:00:00+00:00")
    finally:
        con.close()
    r = CliRunner().invoke(app, ["report", "--store", str(store), "--out", str(out), "--json", "--no-charts"])
    assert r.exit_code == 0, r.output
    status = {s["section"]: s for s in json.loads(r.stdout)["sections"]}
    assert status["Announced MM changes"]["has_results"]
    html = out.read_text(encoding="utf-8")
    assert "2 announcements (newest first), 1 pending" in html
    assert "2022-11-09 15:00" in html and "5.20%" in html and "3.10%" in html
