"""The README's worked session runs as written from a fresh clone: each command exits 0, in order."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from margincal.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
# float noise in human output (issue 16 item 8): 0.14414687499999998, 200.00000000000017
NOISE = re.compile(r"\d\.\d{8,}")


def _session() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- readme-test:start -->\s*```sh\n(.*?)```\s*<!-- readme-test:end -->", text, re.S)
    assert m, "README.md lost its worked-session block"
    return [ln.strip() for ln in m.group(1).splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_readme_worked_session_runs_as_written(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    env: dict[str, str] = {}
    ran = []
    for line in _session():
        words = shlex.split(line)
        if words[0] == "export":
            k, v = words[1].split("=", 1)
            env[k] = v
            continue
        assert words[0] == "margincal", line
        res = CliRunner().invoke(app, words[1:], env={**os.environ, **env})
        assert res.exit_code == 0, f"{line}\n{res.output[-2000:]}"
        ran.append(line)
        if "--json" not in words:
            noise = NOISE.search(res.output)
            assert noise is None, f"{line}: float noise {noise.group(0) if noise else ''} in human output"
        if words[1] == "params" and words[2] == "diff":
            assert "BTC-USDT" in res.output and "removed" not in res.output
    assert len(ran) >= 7
    # the replay ran in a sandbox: the live store has only the two calibration versions
    assert list(tmp_path.glob("margincal.sandbox-replay-*.duckdb"))
    res = CliRunner().invoke(app, ["params", "history", "--json"], env={**os.environ, **env})
    assert res.exit_code == 0 and len(__import__("json").loads(res.output)) == 2
