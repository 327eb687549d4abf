"""`margincal --help` stays light: the command modules do not import ccxt, FastAPI or the portfolio margin engine at
import time (issue 16 item 8). duckdb, pandas, numpy and scipy: tests/cli/test_cli_ux.py."""

from __future__ import annotations

import subprocess
import sys


def test_help_imports_no_heavy_stack() -> None:
    code = ("import sys; import margincal.cli.app; "
            "print(','.join(m for m in ('ccxt', 'sklearn', "
            "'margincal.margin.portfolio', 'fastapi') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"imported by `margincal --help`: {out}"


def test_calibrate_help_lists_the_real_models() -> None:
    from margincal.cli.calibrate import MODEL_NAMES
    from margincal.risk.models import MODELS

    assert tuple(sorted(MODELS)) == MODEL_NAMES
