"""The bundled real data as ingest jobs (files and provenance: :mod:`margincal.datasets`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from margincal import datasets

if TYPE_CHECKING:
    from margincal.data.ingest import IngestReport


@dataclass(frozen=True)
class Sample:
    file: str
    instrument: str
    kind: str  # ingest kind: bars, funding, open_interest, options
    timeframe: str | None = None
    instrument_kind: str | None = None
    note: str = ""


_INGEST_KIND = {"daily": "bars", "hourly": "bars", "funding": "funding", "open_interest": "open_interest",
                "options": "options"}


def _sample(f: datasets.DatasetFile) -> Sample:
    kind = _INGEST_KIND[f.kind]
    return Sample(f.file, f.instrument, kind, f.timeframe if kind == "bars" else None,
                  None if f.kind == "options" else ("spot" if f.market == "spot" else "perpetual"), f.note)


# what `margincal run` ingests: every bundled file but the intraday samples (evidence scripts read those)
SAMPLES: tuple[Sample, ...] = tuple(_sample(f) for f in datasets.files() if f.kind in _INGEST_KIND)


def sample_path(file: str) -> Path:
    return datasets.path(file)


def calibration_targets() -> list[tuple[str, str]]:
    """(instrument, timeframe) pairs calibrated by `margincal run`: daily spot and hourly perpetuals."""
    return [(s.instrument, s.timeframe) for s in SAMPLES
            if s.kind == "bars" and s.timeframe is not None
            and (s.timeframe == "1d" or s.instrument_kind == "perpetual")]


def ingest_samples(con: duckdb.DuckDBPyConnection,
                   progress: Callable[[Sample], object] | None = None) -> list[IngestReport]:
    """Ingest every bundled sample (idempotent). ``progress(sample)`` is called before each file."""
    from margincal.data.ingest import ingest_file

    reports: list[IngestReport] = []
    for s in SAMPLES:
        if progress is not None:
            progress(s)
        reports.append(ingest_file(con, sample_path(s.file), instrument=s.instrument, timeframe=s.timeframe,
                                   kind=s.kind, instrument_kind=s.instrument_kind))
    return reports
