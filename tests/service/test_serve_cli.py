"""`margincal serve` options reach the app and uvicorn (uvicorn.run replaced by a recorder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from margincal.cli.app import app


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import uvicorn

    seen: dict[str, Any] = {}

    def fake_run(asgi: Any, **kw: Any) -> None:
        seen["app"] = asgi
        seen.update(kw)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    return seen


def test_serve_passes_options(recorded: dict[str, Any], seeded: tuple[Path, dict[str, str]], policy_file: Path) -> None:
    store, _ = seeded
    r = CliRunner().invoke(app, ["serve", "--port", "8123", "--store", str(store), "--policy", str(policy_file),
                                 "--release-after", "2", "--private-docs", "--no-access-log"])
    assert r.exit_code == 0, r.output
    assert (recorded["host"], recorded["port"], recorded["access_log"]) == ("127.0.0.1", 8123, False)
    s = recorded["app"].state.settings
    assert (s.store, s.policy_path, s.release_after, s.docs_public) == (store, policy_file, 2.0, False)
    assert "no active API key" not in r.output


def test_serve_warns_about_an_empty_store_and_a_public_interface(recorded: dict[str, Any], tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--store", str(tmp_path / "new.duckdb")])
    assert r.exit_code == 0, r.output
    assert "no active API key" in r.output and "margincal keys create --role admin" in r.output
    assert "no parameter set published" in r.output
    assert "TLS" in r.output


def test_serve_rejects_a_missing_policy_file(recorded: dict[str, Any], tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["serve", "--store", str(tmp_path / "s.duckdb"), "--policy", str(tmp_path / "no.toml")])
    assert r.exit_code == 2 and "no.toml" in r.output and "app" not in recorded
