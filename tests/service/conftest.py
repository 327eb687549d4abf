"""Fixtures of the service tests: a seeded store (real bundled data, calibrated), keys per role, an app."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():  # starlette's TestClient warns once at import about its httpx backend
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from margincal.adjust.approval import create_proposal
from margincal.config import CalibrationSettings
from margincal.data.ingest import ingest_file
from margincal.data.samples import sample_path
from margincal.data.store import connect, save_result
from margincal.margin import params as mparams
from margincal.margin.published import calibrate_and_publish
from margincal.service.app import ServiceSettings, create_app
from margincal.service.auth import create_key

ROLES = ("viewer", "trader", "risk_officer", "admin")
SEED_FILES = (("btc_daily.csv", "BTC-USDT", "1d"), ("eth_daily.csv", "ETH-USDT", "1d"))


def seed_store(path: Path) -> dict[str, str]:
    """Ingest two bundled daily series, calibrate and publish v1, create one key per role (named
    ``<role>-user``) plus a risk officer named ``alice`` who authors proposals. Returns role -> key."""
    con = connect(path)
    try:
        for file, inst, tf in SEED_FILES:
            ingest_file(con, sample_path(file), instrument=inst, timeframe=tf, kind="bars", instrument_kind="spot")
        calibrate_and_publish(con, [(inst, tf) for _, inst, tf in SEED_FILES], CalibrationSettings(), actor="seed")
        keys = {r: create_key(con, r, name=f"{r}-user", actor="seed").key for r in ROLES}
        keys["alice"] = create_key(con, "risk_officer", name="alice", actor="seed").key
        save_result(con, "bt-seed", "backtest", {"levels": [0.99]},
                    {"summary": {"instruments": 2, "breaches": 3}, "rows": [{"instrument": "BTC-USDT", "breaches": 3}]})
    finally:
        con.close()
    return keys


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("service-seed")
    path = d / "seed.duckdb"
    keys = seed_store(path)
    return path, keys


def copy_store(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / "store.duckdb"
    shutil.copy(src, dst)
    wal = Path(str(src) + ".wal")
    if wal.exists():
        shutil.copy(wal, Path(str(dst) + ".wal"))
    return dst


@pytest.fixture
def seeded(seeded_template: tuple[Path, dict[str, str]], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A private copy of the seeded store for one test."""
    src, keys = seeded_template
    return copy_store(src, tmp_path), keys


def make_proposal(con, author: str = "alice", instrument: str = "BTC-USDT", factor: float = 1.1) -> str:  # type: ignore[no-untyped-def]
    """A proposal by ``author`` raising ``instrument``'s IM and MM by ``factor`` from the rates in force."""
    p = mparams.load(con)[instrument]
    return create_proposal(con, author=author, reason="test: volatility up", base_version=mparams.latest_version(con),
                           changes=[{"instrument": instrument, "im_before": p.im_rate, "im_after": p.im_rate * factor,
                                     "mm_before": p.mm_rate, "mm_after": p.mm_rate * factor}])


def app_client(path: Path, keys: dict[str, str], policy: Path, **settings):  # type: ignore[no-untyped-def]
    app = create_app(ServiceSettings(store=path, policy_path=policy, sse_poll_interval=0.05, **settings))
    c = TestClient(app, raise_server_exceptions=False)
    c.keys = keys  # type: ignore[attr-defined]
    c.store_path = path  # type: ignore[attr-defined]

    def proposal(author: str = "alice", instrument: str = "BTC-USDT", factor: float = 1.1) -> str:
        with app.state.store.writer() as cur:
            return make_proposal(cur, author, instrument, factor)

    c.proposal = proposal  # type: ignore[attr-defined]
    return c


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    from importlib import resources

    p = tmp_path / "policy.toml"
    p.write_text(resources.files("margincal.adjust").joinpath("default_policy.toml").read_text(encoding="utf-8"))
    return p


@pytest.fixture
def client(seeded: tuple[Path, dict[str, str]], policy_file: Path):  # type: ignore[no-untyped-def]
    """A TestClient on a private copy of the seeded store; ``client.keys[role]``, ``client.proposal()``."""
    path, keys = seeded
    with app_client(path, keys, policy_file) as c:
        yield c


@pytest.fixture(scope="module")
def module_client(seeded_template: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One client (and store copy) shared by a module's tests: for the many read-mostly matrix cases."""
    src, keys = seeded_template
    d = tmp_path_factory.mktemp("service-module")
    path = copy_store(src, d)
    policy = d / "policy.toml"
    from importlib import resources

    policy.write_text(resources.files("margincal.adjust").joinpath("default_policy.toml").read_text(encoding="utf-8"))
    with app_client(path, keys, policy) as c:
        yield c
