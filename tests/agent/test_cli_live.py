"""`peergrid keygen`, `peergrid agent` and `peergrid live-demo` from the command line: a home
against a real `peergrid serve` on loopback, its clear errors (exit 2), and a whole live
community that clears, settles and verifies (exit 0)."""

from __future__ import annotations

import math
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from peergrid.agent.keyfile import read_key_file, write_key_file
from peergrid.cli import main
from peergrid.ledger.keys import public_bytes
from peergrid.scenario.load import load_scenario
from peergrid.server.admin import Registered, add_participant
from peergrid.server.db import engine_for, migrate
from peergrid.server.market import open_market

SLOT_S = 2.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    good_key: Path
    other_key: Path
    home: Registered
    home2: Registered
    late: Registered


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A market of two homes (3 slots of 2 s, intraday 1) opening a few seconds from now,
    served by `peergrid serve`; one more account registered after it opened."""
    tmp = tmp_path_factory.mktemp("live")
    db = f"sqlite:///{tmp / 'p.db'}"
    engine = engine_for(db)
    migrate(engine)
    good, other = write_key_file(tmp / "home.key"), write_key_file(tmp / "other.key")
    home = add_participant(engine, "home-01", "participant", public_bytes(good).hex())
    home2 = add_participant(engine, "home-02", "participant", public_bytes(good).hex())
    sc = load_scenario("demo")
    sc = sc.model_copy(
        update={"market": sc.market.model_copy(update={"gate_closure": "intraday 1"})}
    )
    open_market(
        engine, sc, start_unix_s=math.ceil(time.time() + 7.0), slot_seconds=SLOT_S, n_slots=3
    )
    late = add_participant(engine, "late-home", "participant", public_bytes(other).hex())
    engine.dispose()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "peergrid.cli", "serve", "--db", db, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert proc.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not answer in 30 s"
                time.sleep(0.1)
        yield Server(url, tmp / "home.key", tmp / "other.key", home, home2, late)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_keygen_writes_a_private_key_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "home.key"
    assert main(["keygen", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == public_bytes(read_key_file(out)).hex() and len(printed) == 64
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    before = out.read_bytes()
    assert main(["keygen", "--out", str(out)]) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert out.read_bytes() == before


def agent(srv_url: str, who: str, token: str | None, key: Path) -> list[str]:
    args = ["agent", "--server", srv_url, "--participant", who, "--key", str(key), "--quiet"]
    return args + (["--token", token] if token is not None else [])


def test_unreachable_server_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "k"
    write_key_file(key)
    url = f"http://127.0.0.1:{_free_port()}"
    assert main(agent(url, "home-01", "t", key)) == 2
    err = capsys.readouterr().err
    assert "cannot reach the peergrid server" in err and url in err
    assert "Traceback" not in err


def test_bad_token_and_not_a_member_exit_2(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(agent(server.url, "home-01", "not-a-token", server.good_key)) == 2
    err = capsys.readouterr().err
    assert "refused the API token given for 'home-01'" in err
    assert main(agent(server.url, "home-01", server.home2.token, server.good_key)) == 2
    assert "belongs to participant 'home-02'" in capsys.readouterr().err
    assert main(agent(server.url, "late-home", server.late.token, server.other_key)) == 2
    assert "'late-home' is not a member of the market" in capsys.readouterr().err


def test_key_that_does_not_match_exit_2(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    # home-02 registered the public key of home.key; other.key signs orders it cannot verify
    assert main(agent(server.url, "home-02", server.home2.token, server.other_key)) == 2
    err = capsys.readouterr().err
    assert "refused the signed orders of 'home-02'" in err
    assert f"the key in {server.other_key} does not match the public key registered" in err
    assert "Traceback" not in err


def test_agent_runs_its_home_to_the_end(
    server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PEERGRID_TOKEN", server.home.token)
    assert main(agent(server.url, "home-01", None, server.good_key)) == 0
    out = capsys.readouterr().out
    assert "simulating 'bakery-flat' of 'demo'" in out  # ledger index 0 of the demo
    assert "slots " in out and "–2 delivered" in out


def test_live_demo_clears_settles_and_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    args = ["live-demo", "--agents", "3", "--slots", "4", "--slot-seconds", "1", "--db", db]
    assert main([*args, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "3 homes of 'demo' (bakery-flat, old-mill, pv-home-01)" in out
    assert "4 / 0 / 4 of 4" in out  # cleared / fell back / settled
    # the agents bid at every gate and reported every boundary (on a busy machine some may be
    # late, which the summary counts, without failing the market)
    submitted = re.search(r"order submissions accepted\s*│\s*(\d+)", out)
    assert submitted is not None and int(submitted.group(1)) >= 4
    assert "15 stored" in out  # 3 meters × 5 boundaries
    assert ": verified" in out and "OK: every slot cleared and settled" in out
    assert (tmp_path / "demo.db").exists()  # --db keeps the database
    # a database that runs a market already cannot run another demo
    assert main([*args, "--quiet"]) == 2
    assert "--db: the live demo registers its own participants" in capsys.readouterr().err
