"""margincal.datasets: every bundled file is listed, loads, matches PROVENANCE.md, and ships in the wheel."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from margincal import datasets
from margincal.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "margincal" / "datasets"
PROVENANCE = (PKG / "PROVENANCE.md").read_text()


def test_every_file_in_the_folder_is_listed_and_every_listed_file_exists():
    on_disk = {p.name for p in PKG.iterdir() if p.name.endswith((".csv", ".csv.gz"))}
    assert on_disk == {f.file for f in datasets.files()}
    for f in datasets.files():
        assert f.file in PROVENANCE, f"{f.file} is not documented in PROVENANCE.md"


@pytest.mark.parametrize("f", datasets.files(), ids=lambda f: f.file)
def test_every_file_loads(f):
    df = datasets.load(f.file)
    assert len(df) > 0
    assert datasets.path(f.file).exists()


@pytest.mark.parametrize("row", re.findall(r"^\| (\w+_daily\.csv)\s*\| \w+\s*\| (\d+) \| ([\d-]+) \| ([\d-]+) \|",
                                           PROVENANCE, flags=re.M), ids=lambda r: r[0])
def test_daily_files_match_the_provenance_table(row):
    file, rows, first, last = row
    df = datasets.load_daily(file.split("_")[0])
    assert len(df) == int(rows)
    assert str(df.index[0].date()) == first and str(df.index[-1].date()) == last
    assert str(df.index.tz) == "UTC"


@pytest.mark.parametrize("row", re.findall(r"^\| (\w+_(?:1m|5m)_[\d-]+\.csv\.gz) \| ([\d,]+) \|", PROVENANCE,
                                           flags=re.M), ids=lambda r: r[0])
def test_intraday_files_match_the_provenance_table(row):
    file, rows = row
    f = next(x for x in datasets.files(kind="intraday") if x.file == file)
    key = next((k for k, v in datasets.BARS_5M.items() if v == file), None)
    df = datasets.load_bars_5m(*key) if key else datasets.load_intraday(f.symbol, f.timeframe)
    assert len(df) == int(rows.replace(",", ""))
    step = pd.Timedelta(f.timeframe.replace("m", "min"))
    assert (df.index.to_series().diff().dropna() == step).all()  # "no missing bar" (PROVENANCE.md)


def test_closes_checked_in_provenance():
    # PROVENANCE.md "Checks done (close prices)"
    btc = datasets.load_daily("BTC")["close"]
    assert btc.loc["2020-03-12"].item() == 4800.00
    assert btc.loc["2022-11-09"].item() == 15922.81
    assert datasets.load_daily("eth")["close"].loc["2022-11-09"].item() == 1102.73
    assert datasets.load_daily("SOL-USDT")["close"].loc["2022-11-09"].item() == 14.08


def test_typed_loaders():
    h = datasets.load_hourly("BTC", "perpetual")
    assert list(h.columns) == ["open", "high", "low", "close", "volume"] and h.index.is_monotonic_increasing
    f = datasets.load_funding("ETH")
    assert f.name == "ETH-PERP" and f.abs().max() <= 0.03
    assert datasets.load_options_snapshot("ETH", "2024-01-08")["instrument_name"].str.startswith("ETH-").all()
    r = datasets.load_daily_returns("BTC")
    assert r.name == "BTCUSDT" and len(r) == len(datasets.load_daily("BTC")) - 1
    for bad in (lambda: datasets.load_daily("FOO"), lambda: datasets.load_hourly("XRP"),
                lambda: datasets.path("nope.csv"), lambda: datasets.load_options_snapshot("SOL")):
        with pytest.raises(DataError):
            bad()


def test_loaders_return_copies():
    a = datasets.load_daily("BTC")
    a["close"] = 0.0
    assert (datasets.load_daily("BTC")["close"] > 0).all()


def test_no_library_module_reads_bundled_files_itself():
    """Only margincal.datasets knows where the bundled files are (config keeps a delegating alias)."""
    offenders = []
    for p in (ROOT / "src" / "margincal").rglob("*.py"):
        rel = p.relative_to(ROOT / "src" / "margincal").as_posix()
        if rel.startswith("datasets/") or rel == "config.py":
            continue
        text = p.read_text()
        if ("sample_data_dir" in text or any(f'"{f.file}"' in text for f in datasets.files())
                or re.search(r'/ f"\{[^}]+\}(_daily\.csv|usdt_1h\.csv\.gz|usdt_perp_1h\.csv\.gz|usdt_funding\.csv)"',
                             text)):
            offenders.append(rel)
    assert offenders == []


def test_wheel_carries_the_bundled_data(tmp_path):
    """Build a wheel from a copy of the repo (pip wheel, as a user would) and load the data from it."""
    src = tmp_path / "src_copy"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                    "-q", "-w", str(out)], check=True, capture_output=True)
    (whl,) = out.glob("margincal-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    for f in datasets.files():
        assert f"margincal/datasets/{f.file}" in names
    assert "margincal/datasets/PROVENANCE.md" in names
    site = tmp_path / "site"
    zipfile.ZipFile(whl).extractall(site)
    code = ("import sys; from margincal import datasets as d; assert d.__file__.startswith(sys.argv[1]); "
            "print(sum(len(d.load(f.file)) for f in d.files()), d.load_daily('BTC')['close'].loc['2020-03-12'].item())")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)}
    res = subprocess.run([sys.executable, "-c", code, str(site)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    total, close = res.stdout.split()
    assert int(total) == sum(len(pd.read_csv(PKG / f.file)) for f in datasets.files())
    assert float(close) == 4800.0
