"""Every command, driven with malformed values (hypothesis): one line on stderr, exit 2, no traceback, and the
store (and the folder around it) unchanged.

Each command has a list of "slots" that must reject a malformed value (a date, a number out of its documented
range or not a number, an unknown name, a missing or garbage file). Each example picks one or more slots and a
bad value for each, runs the command in-process (Typer's CliRunner) and checks the outcome. The number of
examples per command is ``MARGINCAL_FUZZ_EXAMPLES``: 120 by default (``make test``: every command, every slot),
1000 with ``make fuzz`` (the figure issue 16 asks for; measured in docs/reliability.md).
"""

from __future__ import annotations

import gzip
import math
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import typer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from margincal.cli.app import app
from margincal.data.store import connect, transaction
from margincal.margin import params as P
from margincal.margin.presets import TABLES_DIR as TABLES
from margincal.margin.venues import FORMATS
from margincal.service.auth import create_key

N = int(os.environ.get("MARGINCAL_FUZZ_EXAMPLES", "120"))
runner = CliRunner()

# ---------------------------------------------------------------- malformed values

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=24)
_DATE_OK = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$|^now$", re.I)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


bad_date = st.one_of(
    _text.filter(lambda s: not _DATE_OK.match(s.strip())),
    st.builds("{:04d}-{:02d}-{:02d}".format, st.integers(0, 9999), st.integers(13, 99), st.integers(1, 28)),
    st.builds("{:04d}-{:02d}-{:02d}".format, st.integers(2010, 2025), st.integers(1, 12), st.integers(32, 99)),
    st.builds("{:04d}-02-30".format, st.integers(2010, 2025)),
    st.builds("{:04d}-06-01".format, st.one_of(st.integers(0, 2008), st.integers(2100, 9999))),
    st.builds("2024-01-01T00:00+{:02d}:00".format, st.integers(15, 99)),
    st.builds("2024-01-01T{:02d}:00".format, st.integers(24, 99)),
)


def bad_number(lo: float, hi: float, *, integer: bool = False) -> st.SearchStrategy[str]:
    """Text that is not a number, not finite, not whole (for integers), or outside [lo, hi]."""
    outside = st.one_of(st.floats(max_value=lo, exclude_max=True, allow_nan=False, allow_infinity=False),
                        st.floats(min_value=hi, exclude_min=True, allow_nan=False, allow_infinity=False))
    parts = [
        st.sampled_from(["abc", "", "nan", "inf", "-inf", "1e400", "-1e400", "1,5", "0x10", "--", "1e", "NaN"]),
        _text.filter(lambda s: not _is_number(s)),
        outside.map(lambda x: str(math.floor(x) if x < lo else math.ceil(x)) if integer and abs(x) < 1e18
                    else repr(x)).filter(lambda t: not lo <= float(t) <= hi),
    ]
    if integer:
        parts.append(st.floats(lo, hi, allow_nan=False).filter(lambda x: x != int(x)).map(repr))
    return st.one_of(*parts)


def bad_name(valid: set[str]) -> st.SearchStrategy[str]:
    return _text.filter(lambda s: s.strip() not in valid and s not in valid)


class Files:
    """Bad files: missing, a folder, empty, garbage bytes, a truncated gzip, non-UTF-8 text."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / "empty.csv").write_text("")
        (root / "garbage.csv").write_bytes(bytes(range(256)) * 4)
        (root / "latin1.csv").write_bytes("ts,close\n2024-01-01,1\xe9\n".encode("latin-1"))
        good = gzip.compress(b"timestamp,open,high,low,close,volume\n" + b"2024-01-01,1,2,0.5,1.5,10\n" * 200)
        (root / "trunc.csv.gz").write_bytes(good[: len(good) // 2])
        (root / "notgz.csv.gz").write_text("timestamp,close\n2024-01-01,1\n")
        (root / "junk.parquet").write_bytes(b"PAR1" + os.urandom(64))
        (root / "header.csv").write_text("account,instrument,quantity\n")
        (root / "dir").mkdir(exist_ok=True)
        (root / "policy.toml").write_bytes(b"\xff\xfe[auto]\n")
        self.root = root
        self.names = ["empty.csv", "garbage.csv", "latin1.csv", "trunc.csv.gz", "notgz.csv.gz", "junk.parquet",
                      "header.csv", "dir", "policy.toml"]

    def strategy(self, only: list[str] | None = None) -> st.SearchStrategy[str]:
        names = only or self.names
        return st.one_of(st.sampled_from([str(self.root / n) for n in names]),
                         _text.filter(lambda s: s.strip() != "").map(lambda s: str(self.root / "missing" / s)))


# ---------------------------------------------------------------- the store every command sees


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("fuzz")
    store = root / "s.duckdb"
    con = connect(store)
    idx = pd.date_range("2023-01-01", periods=400, freq="D")
    close = 100 * (1 + 0.01 * pd.Series(range(400)).map(lambda i: math.sin(i / 7))).to_numpy()
    with transaction(con):
        for inst in ("BTC-USDT", "ETH-USDT"):
            df = pd.DataFrame({"instrument": inst, "timeframe": "1d", "ts": idx, "open": close, "high": close * 1.01,
                               "low": close * 0.99, "close": close, "volume": 1000.0})
            con.register("b", df)
            con.execute("INSERT INTO bars SELECT * FROM b")
            con.unregister("b")
    P.publish(con, P.ParameterSet({"BTC-USDT": P.InstrumentParams("BTC-USDT", 0.1, 0.05, {}),
                                   "ETH-USDT": P.InstrumentParams("ETH-USDT", 0.12, 0.06, {})}),
              created_by="calibrator", source="calibration")
    officer = create_key(con, "risk_officer", "olga").key
    con.close()
    files = Files(root / "files")
    return {"root": root, "store": str(store), "files": files, "officer": officer}


def _fingerprint(env: dict) -> tuple:
    con = connect(env["store"], read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_schema = 'main' ORDER BY 1").fetchall()]
        counts = tuple((t, con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables)
        last = con.execute("SELECT max(seq), max(hash) FROM audit_log").fetchone()
    finally:
        con.close()
    return counts, last


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ---------------------------------------------------------------- per command: base arguments and bad slots


def _specs(env: dict) -> dict[str, tuple[list[str], dict[str, st.SearchStrategy[str]]]]:
    s = ["--store", env["store"]]
    f = env["files"]
    insts = {"BTC-USDT", "ETH-USDT"}
    nowhere = str(env["root"] / "out" / "nowhere")
    return {
        "ingest": ([str(f.root / "garbage.csv"), "-i", "BTC-USDT", *s],
                   {"FILE": f.strategy(), "--snapshot-ts": bad_date, "--timeframe": bad_name(set())
                    .filter(lambda x: not re.fullmatch(r"\s*\d+\s*[smhdwM]\s*", x))}),
        "portfolio": ([*s], {"FILE": f.strategy(), "--asof": bad_date, "--vol": bad_number(1e-4, 10),
                             "--level": bad_number(0.5, 0.999999), "--horizon-hours": bad_number(0.01, 24 * 365),
                             "--offset": bad_number(0, 1)}),
        "calibrate": ([*s], {"--level": bad_number(0.5, 0.9999), "--horizon": _text.filter(
            lambda x: not re.fullmatch(r"\s*\d+(\.\d+)?\s*[hdmw]?\s*", x)) | bad_number(0.25, 24 * 30).map(str),
            "--mm-fraction": bad_number(0, 1), "--buffer": bad_number(0, 10),
            "--instrument": bad_name(insts), "--model": bad_name({"hs", "fhs", "normal", "t", "cf", "evt", "mc"})}),
        "run": ([*s, "--report", nowhere + ".html"], {"--level": bad_number(0.5, 0.9999),
                                                    "--horizon": bad_number(0.25, 24 * 30).map(lambda x: x + "x")}),
        "fetch": ([*s, "--symbol", "BTC/USDT"], {"--since": bad_date, "--until": bad_date}),
        "monitor": ([*s, "--replay", "--from", "2023-06-01"],
                    {"--from": bad_date, "--to": bad_date, "--speed": bad_number(1e-3, 1e12),
                     "--warmup-days": bad_number(0, 3650), "--instrument": bad_name(insts),
                     "--after": bad_number(0, 2**62, integer=True),
                     "--policy": f.strategy(["policy.toml", "garbage.csv", "dir"]),
                     "--sandbox": _text.filter(lambda x: not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", x))}),
        "backtest": ([*s], {"--level": bad_number(0.5, 0.9999), "--min-history": bad_number(20, 100_000, integer=True),
                            "--worst": bad_number(0, 1000, integer=True), "--instrument": bad_name(insts)}),
        "serve": ([*s], {"--port": bad_number(1, 65535, integer=True), "--release-after": bad_number(0, 86400),
                         "--header-timeout": bad_number(0.1, 300),
                         "--policy": f.strategy(["policy.toml", "garbage.csv", "dir"])}),
        "report": ([*s], {"--out": st.sampled_from([str(f.root / "dir"), str(f.root / "garbage.csv" / "r.html"),
                                                    str(f.root / "dir") + "/"])}),
        "stress": ([*s], {"--worst": bad_number(1, 1000, integer=True), "--accounts": bad_number(1, 1_000_000,
                                                                                               integer=True),
                          "--fund": bad_number(0, 1e15), "--book": f.strategy(),
                          "--margin": bad_name({"published", "portfolio"}),
                          "--resources": bad_name({"margin", "collateral"})}),
        "cascade": ([*s], {"--accounts": bad_number(1, 1_000_000, integer=True),
                           "--paths": bad_number(1, 100_000, integer=True),
                           "--rare-event": bad_number(0, 10_000_000, integer=True),
                           "--policy": bad_name({"static", "calibrated", "dynamic", "all"}),
                           "--event": bad_name({"ftx", "2025-10-10", "mc", "all"})}),
        "params show": ([*s], {"VERSION": bad_number(1, 1, integer=True)}),
        "params diff": ([*s, "1", "1"], {"V1": bad_number(1, 1, integer=True)}),
        "params export": ([*s], {"VERSION": bad_number(1, 1, integer=True), "--format": bad_name({"json", "csv"})}),
        "params import": ([str(TABLES / "dydx_liquidity_tiers.json"), "--format", "dydx", "--publish", *s],
                          {"FILE": f.strategy(), "--format": bad_name(set(FORMATS)), "--fetched": bad_date,
                           "--price": bad_number(1e-12, 1e12), "--ct-val": bad_number(1e-12, 1e12)}),
        "params history": ([*s], {"--store": f.strategy(["garbage.csv", "empty.csv", "dir"])}),
        "params announcements": ([*s], {"--status": bad_name({"pending", "applied", "superseded"}),
                                        "--limit": bad_number(1, 1_000_000, integer=True)}),
        "audit verify": ([*s], {"--store": f.strategy(["garbage.csv", "empty.csv", "dir"])}),
        "audit show": ([*s], {"--limit": bad_number(1, 1_000_000, integer=True)}),
        "proposals list": ([*s], {"--status": bad_name({"pending", "approved", "rejected", "superseded", "stale"})}),
        "proposals show": ([*s], {"PROPOSAL": _text}),
        "proposals approve": ([*s, "--key", env["officer"]], {"PROPOSAL": _text, "--key": _text}),
        "proposals reject": ([*s, "--key", env["officer"]], {"PROPOSAL": _text, "--key": _text}),
        "proposals remove": ([*s, "--reason", "x", "--key", env["officer"]],
                             {"--instrument": bad_name(insts), "--key": _text}),
        "keys create": ([*s], {"--role": bad_name({"viewer", "trader", "risk_officer", "admin"}),
                               "--name": _text.filter(lambda x: not re.fullmatch(r"\s*[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}",
                                                                                  x)) | st.just("olga")}),
        "keys list": ([*s], {"--store": f.strategy(["garbage.csv", "empty.csv", "dir"])}),
        "keys revoke": ([*s], {"KEY_ID": _text}),
        "keys rotate": ([*s], {"--key": _text}),
        "book generate": (["--out", nowhere], {"--accounts": bad_number(1, 100_000_000, integer=True),
                                               "--accounts-per-partition": bad_number(1, 10_000_000, integer=True)}),
        "book partition": ([str(f.root / "garbage.csv"), "--out", nowhere], {"FILE": f.strategy()}),
        "book info": ([str(f.root / "dir")], {"PATH": f.strategy()}),
        "book load": ([str(f.root / "dir"), "--name", "b", *s], {"PATH": f.strategy()}),
        "data delete": ([*s, "--instrument", "BTC-USDT", "--kind", "bars", "--reason", "x"],
                        {"--from": bad_date, "--to": bad_date, "--instrument": bad_name(insts),
                         "--kind": bad_name({"bars", "funding", "open_interest", "options", "depth"})}),
    }


def _leaf_commands() -> list[str]:
    root = typer.main.get_command(app)
    out: list[str] = []

    def walk(cmd, path):  # type: ignore[no-untyped-def]
        subs = getattr(cmd, "commands", None)
        if subs:
            for n, c in subs.items():
                walk(c, [*path, n])
        else:
            out.append(" ".join(path))

    walk(root, [])
    return sorted(out)


def test_every_command_is_fuzzed(env: dict) -> None:
    assert sorted(_specs(env)) == _leaf_commands()


POSITIONAL = {"FILE", "VERSION", "V1", "PROPOSAL", "KEY_ID", "PATH"}


def _args(cmd: str, base: list[str], chosen: dict[str, str]) -> list[str]:
    """Command words, base arguments, the malformed options as ``--opt=value``; a malformed positional
    replaces the base one and goes after ``--`` (so a value starting with '-' stays a value)."""
    opts = [f"{k}={v}" for k, v in chosen.items() if k not in POSITIONAL]
    pos = [v for k, v in chosen.items() if k in POSITIONAL]
    if not pos:
        return [*cmd.split(), *base, *opts]
    rest = base[1:] if base and not base[0].startswith("-") else base
    extra = ["1"] if cmd == "params diff" else []
    rest = [a for a in rest if a != "1"] if cmd == "params diff" else rest
    return [*cmd.split(), *rest, *opts, "--", *pos, *extra]


@pytest.mark.parametrize("cmd", _leaf_commands())
def test_malformed_values_one_line_exit_2_store_unchanged(env: dict, cmd: str, monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    import uvicorn

    def no_server(*a: object, **k: object) -> None:
        raise AssertionError("a malformed `serve` started the server")

    monkeypatch.setattr(uvicorn, "run", no_server)
    # build the click command once (typer's CliRunner rebuilds it from the Typer app on every call)
    import typer.testing

    cli = typer.main.get_command(app)
    monkeypatch.setattr(typer.testing, "_get_command", lambda _app: cli)
    base, slots = _specs(env)[cmd]
    before = _fingerprint(env)
    listing = _listing(env["root"])
    seen = {"n": 0}

    @settings(max_examples=N, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck),
              phases=(Phase.explicit, Phase.generate) if not os.environ.get("MARGINCAL_FUZZ_SHRINK")
              else tuple(Phase))
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        names = data.draw(st.lists(st.sampled_from(sorted(slots)), min_size=1, max_size=min(3, len(slots)),
                                   unique=True))
        chosen = {n: data.draw(slots[n], label=n) for n in names}
        args = _args(cmd, base, chosen)
        res = runner.invoke(app, args, env={"MARGINCAL_API_KEY": "", "COLUMNS": "200"})
        seen["n"] += 1
        text = res.output.strip()
        assert res.exit_code == 2, (" ".join(args[4:]), res.exit_code, text[-300:], res.exception)
        assert "Traceback" not in text and len(text.splitlines()) == 1, (args, text)
        assert text.startswith("error: "), (args, text)
        assert _listing(env["root"]) == listing, args

    one()
    assert seen["n"] >= 1
    assert _fingerprint(env) == before
