"""Shared fixtures: a fresh store per test, paths to bundled data."""

from __future__ import annotations

from pathlib import Path

import pytest

from margincal.config import sample_data_dir
from margincal.data.store import connect

REFERENCE = Path(__file__).parent / "reference"


@pytest.fixture
def data_dir() -> Path:
    return sample_data_dir()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "test.duckdb"


@pytest.fixture
def con(store_path: Path):
    c = connect(store_path)
    yield c
    c.close()


@pytest.fixture
def reference_dir() -> Path:
    return REFERENCE
