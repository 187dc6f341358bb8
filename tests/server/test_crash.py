"""Crash trials in the suite (`benchmarks/live_crash.py` runs 100): the server killed with
SIGKILL at random moments under load and restarted; then 0 acknowledged orders lost, 0
duplicates after the clients' retries, no slot cleared or settled twice, the ledger verifies and
replays to the same root. Two servers on one PostgreSQL database, one of them killed and
restarted repeatedly: every slot cleared exactly once."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "live_crash.py"


def _harness() -> Any:
    spec = importlib.util.spec_from_file_location("live_crash", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["live_crash"] = module
    spec.loader.exec_module(module)
    return module


def _assert_clean(f: dict[str, Any]) -> None:
    assert f["orders_acknowledged"] > 0 and f["readings_stored"] > 0
    assert f["orders_lost"] == 0
    assert f["orders_duplicated"] == 0
    assert f["slots_cleared_twice"] == 0 and f["slots_settled_twice"] == 0
    assert f["slots_cleared"] == f["slots"] == f["gates_closed"]
    assert f["slots_settled"] == f["slots"]
    assert f["replay_equal"], f["replay_differences"]


def test_twenty_kills_of_one_server_on_sqlite() -> None:
    figures = _harness().run(trials=20, servers=1, pg=False)
    assert figures["kills"] == 20
    _assert_clean(figures)


def test_two_servers_on_postgresql_one_killed_repeatedly() -> None:
    figures = _harness().run(trials=10, servers=2, pg=True)
    assert figures["kills"] == 10 and figures["servers"] == 2
    _assert_clean(figures)
    # one server is always up (the victim is back before the next kill): the other carries on
    assert figures["gates_fallback"] == 0
