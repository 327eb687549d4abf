"""Input validation (422), the body limit (413), and that no error body ever carries a stack trace."""

from __future__ import annotations

import re
from typing import Any

import pytest

from margincal.service.deps import get_con
from margincal.service.schemas import MAX_NAMES, MAX_POSITIONS

TRACE_MARKERS = ("Traceback", 'File "', ".py", "site-packages", "/src/", "/tmp/", "line ")


def _no_trace(r: Any) -> None:
    text = r.text
    for m in TRACE_MARKERS:
        assert m not in text, f"{m!r} leaked in {r.status_code} body: {text[:400]}"


def _what_if(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"positions": [{"instrument": "BTC-USDT", "quantity": 1.0}],
                            "order": {"instrument": "ETH-USDT", "side": "buy", "quantity": 2.0},
                            "method": "standalone"}
    body.update(over)
    return body


BAD_BODIES = [
    ("zero-quantity", _what_if(positions=[{"instrument": "BTC-USDT", "quantity": 0}]), ["body", "positions", 0, "quantity"]),
    ("nan-as-string", _what_if(positions=[{"instrument": "BTC-USDT", "quantity": "NaN"}]),
     ["body", "positions", 0, "quantity"]),
    ("huge-quantity", _what_if(positions=[{"instrument": "BTC-USDT", "quantity": 1e13}]),
     ["body", "positions", 0, "quantity"]),
    ("negative-price", _what_if(positions=[{"instrument": "BTC-USDT", "quantity": 1, "price": -5}]),
     ["body", "positions", 0, "price"]),
    ("bad-instrument", _what_if(positions=[{"instrument": "BTC USDT; DROP", "quantity": 1}]),
     ["body", "positions", 0, "instrument"]),
    ("extra-field", _what_if(positions=[{"instrument": "BTC-USDT", "quantity": 1, "leverage": 100}]),
     ["body", "positions", 0, "leverage"]),
    ("bad-side", _what_if(order={"instrument": "BTC-USDT", "side": "hold", "quantity": 1}), ["body", "order", "side"]),
    ("order-quantity-negative", _what_if(order={"instrument": "BTC-USDT", "side": "buy", "quantity": -1}),
     ["body", "order", "quantity"]),
    ("missing-order", {"positions": []}, ["body", "order"]),
    ("bad-method", _what_if(method="magic"), ["body", "method"]),
    ("bad-flat-vol", _what_if(flat_vol=50), ["body", "flat_vol"]),
    ("too-many-positions", _what_if(positions=[{"instrument": "BTC-USDT", "quantity": 1}] * (MAX_POSITIONS + 1)),
     ["body", "positions"]),
]


@pytest.mark.parametrize(("body", "loc"), [pytest.param(b, loc, id=i) for i, b, loc in BAD_BODIES])
def test_invalid_what_if_is_422_naming_the_field(module_client: Any, body: dict[str, Any], loc: list[Any]) -> None:
    r = module_client.post("/api/margin/what-if", json=body, headers={"X-API-Key": module_client.keys["trader"]})
    assert r.status_code == 422, r.text[:300]
    j = r.json()
    assert j["error"] == "validation_error"
    assert any(d["loc"][: len(loc)] == loc for d in j["detail"]), j["detail"]
    assert re.fullmatch(r"[0-9a-f]{16}", j["request_id"])
    assert all("input" not in d for d in j["detail"])  # the bad input is not echoed back
    _no_trace(r)


def test_names_per_request_are_capped(module_client: Any) -> None:
    """Issue 16 item 11: the cost of a what-if is bounded by its distinct names (each a scenario row), not only by
    its positions: 1,000 distinct names pass validation, 1,001 are refused with a 422 saying the cap."""
    key = {"X-API-Key": module_client.keys["trader"]}
    names = [f"BTC-27DEC24-{1000 + i}-C" for i in range(MAX_NAMES)]  # plus the order's ETH-USDT: one too many
    body = _what_if(positions=[{"instrument": n, "quantity": 1} for n in names])
    r = module_client.post("/api/margin/what-if", json=body, headers=key)
    assert r.status_code == 422, r.text[:300]
    j = r.json()
    assert j["error"] == "validation_error" and f"at most {MAX_NAMES} distinct instruments" in str(j["detail"])
    assert "BTC-27DEC24-1000-C" not in r.text  # the names are not echoed
    _no_trace(r)
    within = _what_if(positions=[{"instrument": n, "quantity": 1} for n in names[: MAX_NAMES - 1]])
    r = module_client.post("/api/margin/what-if", json=within, headers=key)
    assert r.status_code != 422 or "distinct instruments" not in r.text, r.text[:300]


def test_cached_universe_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The risk-matrix cache grows by union of the names asked about; it holds at most 8 markets and a universe
    of at most MAX_UNIVERSE names, so a stream of requests with fresh names cannot grow it without bound."""
    from types import SimpleNamespace

    from margincal.service import backends

    built: list[int] = []

    def scenarios(specs: Any, **_: Any) -> Any:
        built.append(len(specs))
        return SimpleNamespace(instruments=list(specs), specs=list(specs)), None, {}

    monkeypatch.setattr(backends.usecases, "portfolio_scenarios", scenarios)
    monkeypatch.setattr(backends, "optional_module", lambda name: SimpleNamespace(parse_instrument=str))
    eng = backends.MarginEngine()
    monkeypatch.setattr(eng, "_fingerprint", lambda con, gen: ("fp", gen))
    cap = eng.MAX_UNIVERSE
    for i in range(3 * cap // MAX_NAMES):  # fresh names on one market: the union is rebuilt from scratch at the cap
        names = {f"N{i}-{j}" for j in range(MAX_NAMES)}
        _, engine, _ = eng._market(None, names, None, None, 0)  # type: ignore[arg-type]
        assert names <= set(engine.pnl.instruments)
    assert max(built) <= cap and len(eng._markets) == 1
    for spot in range(20):  # distinct markets (spot overrides): at most 8 kept
        eng._market(None, {"BTC-PERP"}, None, {"BTC": 1000.0 + spot}, 0)  # type: ignore[arg-type]
    assert len(eng._markets) == 8


def test_exactly_the_limit_of_positions_is_accepted(module_client: Any) -> None:
    body = _what_if(positions=[{"instrument": "BTC-USDT", "quantity": 1}] * MAX_POSITIONS)
    r = module_client.post("/api/margin/what-if", json=body, headers={"X-API-Key": module_client.keys["trader"]})
    assert r.status_code == 200, r.text[:300]


def test_malformed_json_is_422(module_client: Any) -> None:
    r = module_client.post("/api/margin/portfolio", content=b'{"positions": [', headers={
        "X-API-Key": module_client.keys["trader"], "Content-Type": "application/json"})
    assert r.status_code == 422
    _no_trace(r)


@pytest.mark.parametrize(("path", "status"), [
    ("/api/parameter-sets/0", 422),          # version must be >= 1
    ("/api/parameter-sets/abc", 422),
    ("/api/parameter-sets/999", 404),
    ("/api/parameter-sets/1/diff?against=0", 422),
    ("/api/instruments/NOPE-USDT", 404),
    ("/api/instruments/BTC-USDT/history?timeframe=fortnight", 422),
    ("/api/instruments/BTC-USDT/history?timeframe=1h", 422),  # no hourly bars stored for it
    ("/api/instruments/BTC-USDT/history?max_points=5", 422),
    ("/api/results/everything", 422),
    ("/api/results/stress", 404),
    ("/api/signals?limit=0", 422),
    ("/api/proposals?status=maybe", 422),
    ("/api/nothing-here", 404),
])
def test_bad_paths_and_queries(module_client: Any, path: str, status: int) -> None:
    r = module_client.get(path, headers={"X-API-Key": module_client.keys["viewer"]})
    assert r.status_code == status, r.text[:300]
    assert "request_id" in r.json()
    _no_trace(r)


def test_unknown_instrument_in_standalone_margin_is_422(module_client: Any) -> None:
    body = _what_if(order={"instrument": "DOGE-USDT", "side": "buy", "quantity": 1})
    r = module_client.post("/api/margin/what-if", json=body, headers={"X-API-Key": module_client.keys["trader"]})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "DOGE" not in r.text and "1 instrument(s)" in detail and "known: BTC-USDT" in detail  # no echo
    _no_trace(r)


def test_unparseable_risk_matrix_instrument_is_422(module_client: Any) -> None:
    body = _what_if(method="risk_matrix")  # BTC-USDT is spot: not a derivative name the risk matrix knows
    r = module_client.post("/api/margin/what-if", json=body, headers={"X-API-Key": module_client.keys["trader"]})
    assert r.status_code == 422
    assert "BTC-USDT" in r.json()["detail"]
    _no_trace(r)


def test_declared_body_over_1_mib_is_413_before_reading(module_client: Any) -> None:
    big = b'{"positions": [' + b" " * (1024 * 1024) + b"]}"
    r = module_client.post("/api/margin/portfolio", content=big, headers={
        "X-API-Key": module_client.keys["trader"], "Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"] == "payload_too_large"
    _no_trace(r)


def test_streamed_body_over_1_mib_is_413(module_client: Any) -> None:
    def chunks():  # no Content-Length: chunked transfer, counted as it arrives
        yield b'{"positions": ['
        for _ in range(40):
            yield b" " * 32768
        yield b"]}"

    r = module_client.post("/api/margin/portfolio", content=chunks(), headers={
        "X-API-Key": module_client.keys["trader"], "Content-Type": "application/json"})
    assert r.status_code == 413
    _no_trace(r)


def test_body_just_under_the_limit_is_read(module_client: Any) -> None:
    body = b'{"positions": []' + b" " * (1024 * 1024 - 100) + b"}"
    r = module_client.post("/api/margin/portfolio", content=body, headers={
        "X-API-Key": module_client.keys["trader"], "Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:200]
    assert r.json()["im"] == 0.0


def test_internal_error_is_500_with_request_id_and_no_trace(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    secret_path = "/srv/secret/margincal/internals.py"

    def broken():  # type: ignore[no-untyped-def]
        raise RuntimeError(f"boom at {secret_path} line 42")
        yield  # pragma: no cover

    client.app.dependency_overrides[get_con] = broken
    try:
        with caplog.at_level("ERROR", logger="margincal.service"):
            r = client.get("/api/instruments", headers={"X-API-Key": client.keys["viewer"]})
    finally:
        client.app.dependency_overrides.clear()
    assert r.status_code == 500
    j = r.json()
    assert j["error"] == "internal_error"
    assert set(j) == {"error", "detail", "request_id"}
    assert r.headers["X-Request-ID"] == j["request_id"]
    assert "boom" not in r.text and secret_path not in r.text
    _no_trace(r)
    # the server log has the traceback under the same request id
    logged = "\n".join(rec.getMessage() + (str(rec.exc_info[1]) if rec.exc_info else "") for rec in caplog.records)
    assert j["request_id"] in logged and "boom" in logged


def test_internal_error_inside_margin_engine_is_500(client: Any) -> None:
    class Broken:
        def what_if(self, *a: Any, **k: Any) -> Any:
            raise ZeroDivisionError("division by zero in /opt/x.py")

    client.app.state.engine = Broken()
    r = client.post("/api/margin/what-if", json=_what_if(), headers={"X-API-Key": client.keys["trader"]})
    assert r.status_code == 500
    _no_trace(r)
    assert "division" not in r.text


def test_security_headers(module_client: Any) -> None:
    r = module_client.get("/dashboard")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert "cdn" not in r.text.lower()


def test_a_key_in_the_query_string_is_refused_and_never_logged(module_client: Any, caplog: Any) -> None:
    import logging

    from margincal.service.authfirst import RedactKeys

    key = module_client.keys["viewer"]
    for url in (f"/api/instruments?api_key={key}", f"/health?k={key.replace('_', '%5F')}"):
        r = module_client.get(url, headers={"X-API-Key": key})
        assert r.status_code == 400 and r.json()["error"] == "bad_request", (url, r.text)
        assert key not in r.text and "header" in r.json()["detail"]
    # the access-log line (uvicorn formats client, method, path with query, version, status) is redacted
    rec = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                            ("1.2.3.4:5", "GET", f"/api/instruments?api_key={key}", "1.1", 400), None)
    assert RedactKeys().filter(rec) and key not in rec.getMessage() and "mc_<redacted>" in rec.getMessage()
    assert any(isinstance(f, RedactKeys) for f in logging.getLogger("uvicorn.access").filters)


def test_what_if_writes_nothing(module_client: Any) -> None:
    """Issue 16 item 3: a what-if never touches the live set (nor anything else in the store)."""
    tables = ("parameter_sets", "parameter_rows", "proposals", "proposal_decisions", "audit_log", "results")

    def counts() -> tuple[int, ...]:
        with module_client.app.state.store.writer() as cur:
            return tuple(cur.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables)

    before = counts()
    for method in ("standalone", "risk_matrix"):
        r = module_client.post("/api/margin/what-if", json=_what_if(method=method),
                               headers={"X-API-Key": module_client.keys["trader"]})
        assert r.status_code == 200 or (method == "risk_matrix" and r.status_code in (422, 501)), r.text[:300]
    assert counts() == before
