"""The import contract (.importlinter) holds on the code, and breaks on an upward import or a cycle."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(src: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), "--config", str(config), "--no-cache"], cwd=src.parent,
                          env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A copy of src/ (code only) to break on purpose."""
    root = tmp_path_factory.mktemp("layers")
    shutil.copytree(ROOT / "src", root / "src", ignore=shutil.ignore_patterns(
        "__pycache__", "*.egg-info", "*.csv", "*.gz", "static"))
    shutil.copy(ROOT / ".importlinter", root / ".importlinter")
    return root


def test_contract_is_kept_by_the_code():
    res = _lint(ROOT / "src", ROOT / ".importlinter")
    assert res.returncode == 0, res.stdout[-3000:]
    assert "3 kept, 0 broken" in res.stdout


@pytest.mark.parametrize("module,line,broken", [
    # data must not know margin (upward import)
    ("data/store.py", "import margincal.margin.params  # noqa: F401", "Layers"),
    # the vocabulary at the bottom must not reach the shells
    ("instruments.py", "import margincal.cli.app  # noqa: F401", "Layers"),
    # adjust | backtest | stress are independent siblings
    ("stress/engine.py", "import margincal.adjust.policy  # noqa: F401", "Layers"),
    # a library module growing an argparse main
    ("vol/ewma.py", "import argparse  # noqa: F401", "shells use"),
])
def test_contract_breaks_on_upward_imports(tree, module, line, broken):
    f = tree / "src" / "margincal" / module
    original = f.read_text()
    try:
        f.write_text(original + "\n" + line + "\n")
        res = _lint(tree / "src", tree / ".importlinter")
        assert res.returncode != 0
        assert broken in res.stdout.split("Broken contracts")[-1]
    finally:
        f.write_text(original)


def test_contract_breaks_on_a_cycle_inside_a_package(tree):
    # margin.tiers <- margin.calibration already; tiers importing calibration back closes a cycle
    f = tree / "src" / "margincal" / "margin" / "tiers.py"
    original = f.read_text()
    try:
        f.write_text(original + "\nimport margincal.margin.calibration  # noqa: F401,E402\n")
        res = _lint(tree / "src", tree / ".importlinter")
        assert res.returncode != 0 and "No import cycles" in res.stdout.split("Broken contracts")[-1]
    finally:
        f.write_text(original)


def test_old_import_paths_still_work():
    from margincal.adjust import audit as old
    from margincal.data import audit as new

    assert old.verify_chain is new.verify_chain and old.append is new.append
