"""Crash trials of the live server: kill -9 at random moments under load, restart, check.

One market on a real database (a SQLite file, or a fresh PostgreSQL database with `--pg`), one
or two `peergrid serve` processes on loopback, one client thread per participant that signs
orders for every gate (two submissions per gate, the second replacing the first, each with its
own Idempotency-Key, retried with the same key through every crash) and reports its meter
readings. A killer sends SIGKILL to a server at a random moment, `--trials` times, and restarts
it at once. Afterwards the market runs to its end and the checks follow:

- every acknowledged order (HTTP 201) is in the database exactly once (0 lost, 0 duplicates);
- no slot is cleared or settled twice (one CLEARING and at most one SETTLEMENT per slot in the
  ledger), every gate closed once;
- the ledger verifies, and the recorded inputs replay to the same ledger root and bills.

    python benchmarks/live_crash.py --trials 100            # SQLite, one server
    python benchmarks/live_crash.py --trials 40 --pg --servers 2
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import create_engine, func, select, text

from peergrid.ledger import encoding as enc
from peergrid.ledger.keys import participant_keys, public_bytes
from peergrid.ledger.store import iter_entries
from peergrid.ledger.verify import verify_ledger
from peergrid.markets.base import Side
from peergrid.scenario.load import load_scenario
from peergrid.server.admin import add_participant
from peergrid.server.db import engine_for, migrate
from peergrid.server.ledger_store import SqlLedgerStore
from peergrid.server.market import open_market
from peergrid.server.replay import check_replay
from peergrid.server.schema import gates, orders

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def scratch_database(pg: bool, folder: Path, name: str) -> tuple[str, str | None]:
    """A new empty database for one run: a fresh PostgreSQL database on the loopback server,
    or a SQLite file in `folder`. Returns its URL and the PostgreSQL name (for
    `drop_scratch_database`; None for SQLite)."""
    if not pg:
        return f"sqlite:///{folder / (name + '.db')}", None
    db_name = f"peergrid_{name}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db_name}"'))
    admin.dispose()
    return f"postgresql://postgres@127.0.0.1:5432/{db_name}", db_name


def drop_scratch_database(db_name: str | None) -> None:
    """Remove a PostgreSQL database `scratch_database` made (nothing for SQLite)."""
    if db_name is None:
        return
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
    admin.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One `peergrid serve` process that can be killed and restarted."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, wait: bool = True) -> None:
        """Start the process; `wait`: until it answers."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "peergrid",
                    "serve",
                    "--db",
                    self.url,
                    "--port",
                    str(self.port),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        if not wait:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/v1/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"server did not start, see {self.log}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class Client(threading.Thread):
    """A participant that bids for every gate and reports its readings, retrying through
    crashes with the same Idempotency-Key."""

    def __init__(
        self,
        i: int,
        key: Any,
        token: str,
        servers: list[Server],
        info: dict[str, Any],
        stop: threading.Event,
    ) -> None:
        super().__init__(daemon=True)
        self.i, self.key, self.token, self.servers = i, key, token, servers
        self.info, self.stop_event = info, stop
        self.acked: dict[str, int] = {}
        self.refused: Counter[str] = Counter()
        self.readings = 0
        self.rng = random.Random(i)
        self.http = httpx.Client(timeout=5)

    def _post(
        self, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> httpx.Response | None:
        server = self.rng.choice(self.servers)
        try:
            return self.http.post(server.base + path, json=body, headers=headers)
        except httpx.HTTPError:
            return None

    def run(self) -> None:
        start, slot_s, n = self.info["start"], self.info["slot_seconds"], self.info["n_slots"]
        auth = {"Authorization": f"Bearer {self.token}"}
        imp, exp = 4000.0 + self.i, 1500.0
        next_reading = 0
        for s in range(n):
            gate_slot = s - 1  # intraday 1
            closes = start + gate_slot * slot_s
            for version in range(2):
                key = f"{self.i}-{s}-{version}"
                q = round(self.rng.uniform(0.1, 0.8), 3)
                side = "sell" if self.i % 2 == 0 else "buy"
                price = 0.12 if side == "sell" else 0.28
                msg = enc.order_message(
                    self.info["ledger_id"],
                    self.i,
                    gate_slot,
                    np.array([s], np.int64),
                    np.array([Side.SELL if side == "sell" else Side.BUY], np.int8),
                    np.array([q]),
                    np.array([price]),
                )
                body = {
                    "gate_slot": gate_slot,
                    "orders": [{"slot": s, "side": side, "quantity_kwh": q, "limit_price": price}],
                    "signature": self.key.sign(msg).hex(),
                }
                while not self.stop_event.is_set():
                    if time.time() > closes + 2 * slot_s:
                        break  # the gate is long gone: nothing was acknowledged
                    r = self._post("/v1/orders", body, {**auth, "Idempotency-Key": key})
                    if r is None or r.status_code >= 500 or r.status_code == 409:
                        time.sleep(0.05)
                        continue
                    if r.status_code == 201:
                        self.acked[key] = int(r.json()["order_id"])
                    else:
                        self.refused[r.json().get("detail", "")[:40]] += 1
                    break
            # readings of every boundary that has passed
            while (
                next_reading <= n
                and start + next_reading * slot_s <= time.time()
                and not self.stop_event.is_set()
            ):
                if next_reading > 0:
                    net = self.rng.gauss(0.0, 0.3)
                    imp += max(-net, 0.0)
                    exp += max(net, 0.0)
                ts = dt.datetime.fromtimestamp(start + next_reading * slot_s, tz=dt.UTC).isoformat()
                reading = {
                    "readings": [
                        {
                            "timestamp": ts,
                            "import_register": imp,
                            "export_register": exp,
                            "unit": "kWh",
                        }
                    ]
                }
                for _ in range(200):
                    r = self._post("/v1/readings", reading, auth)
                    if r is not None and r.status_code < 500:
                        self.readings += r.status_code == 200
                        break
                    time.sleep(0.05)
                next_reading += 1
            wait = start + (s - 0.5) * slot_s - time.time()  # the next gate, half a slot ahead
            if wait > 0 and self.stop_event.wait(wait):
                break
        self.http.close()


def run(
    trials: int = 20,
    servers: int = 1,
    pg: bool = False,
    n_participants: int = 4,
    slot_seconds: float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """The crash trials (module docstring); returns the figures."""
    rnd = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="peergrid-crash-"))
    url, db_name = scratch_database(pg, tmp, "crash")
    engine = engine_for(url)
    try:
        migrate(engine)
        keys = participant_keys(seed + 11, n_participants)
        tokens = [
            add_participant(engine, f"home-{i}", "participant", public_bytes(k).hex()).token
            for i, k in enumerate(keys)
        ]
        sc = load_scenario("demo")
        sc = sc.model_copy(
            update={"market": sc.market.model_copy(update={"gate_closure": "intraday 1"})}
        )
        # long enough for the kills (1.15 s apart on average, most after a restart of ~2.3 s)
        # and a few slots after them
        n_slots = math.ceil(trials * (1.15 + 0.75 * 2.3) / servers / slot_seconds) + 4
        start = math.ceil(time.time() / slot_seconds) * slot_seconds + 4 * slot_seconds
        setup = open_market(
            engine, sc, start_unix_s=start, slot_seconds=slot_seconds, n_slots=n_slots
        )
        info = {
            "start": start,
            "slot_seconds": slot_seconds,
            "n_slots": n_slots,
            "ledger_id": setup.genesis.ledger_id,
        }
        procs = [Server(url, tmp / f"server-{k}.log") for k in range(servers)]
        for p in procs:
            p.start()
        stop = threading.Event()
        clients = [Client(i, keys[i], tokens[i], procs, info, stop) for i in range(n_participants)]
        for c in clients:
            c.start()
        t0 = time.time()
        kills = 0
        while kills < trials:  # at random moments, a lone server's start-up included
            time.sleep(rnd.uniform(0.3, 2.0))
            victim = procs[kills % servers]
            victim.kill()
            kills += 1
            # mostly the victim is back and serving before the next kill (a quarter of the kills
            # of a lone server hit it while it starts); with two servers the other carries on
            victim.start(wait=servers > 1 or rnd.random() < 0.75)
        for p in procs:
            p.kill()
            p.start()
        end = start + (n_slots + 1) * slot_seconds + setup.calendar.settle_after_s + 3.0
        while time.time() < end:
            time.sleep(0.2)
        stop.set()
        for c in clients:
            c.join(timeout=30)
        for p in procs:
            p.stop()
        wall = time.time() - t0
        return _check(engine, setup, clients, kills, wall, procs)
    finally:
        engine.dispose()
        drop_scratch_database(db_name)


def _check(
    engine: Any, setup: Any, clients: list[Client], kills: int, wall: float, procs: list[Server]
) -> dict[str, Any]:
    acked = {k: v for c in clients for k, v in c.acked.items()}
    with engine.connect() as conn:
        stored = Counter(r.idempotency_key for r in conn.execute(select(orders.c.idempotency_key)))
        n_gates = conn.execute(select(func.count()).select_from(gates)).scalar_one()
        fallback = conn.execute(
            select(func.count()).where(gates.c.status == "fallback")
        ).scalar_one()
    lost = [k for k in acked if stored.get(k, 0) == 0]
    duplicates = [k for k, n in stored.items() if n > 1]
    clearing: Counter[int] = Counter()
    settlement: Counter[int] = Counter()
    for _, data in iter_entries(SqlLedgerStore(engine)):
        kind, slot, _ = enc.read_header(data)
        if kind is enc.Kind.CLEARING:
            clearing[slot] += 1
        elif kind is enc.Kind.SETTLEMENT:
            settlement[slot] += 1
    t0 = time.perf_counter()
    report = verify_ledger(SqlLedgerStore(engine))
    verify_s = time.perf_counter() - t0
    replayed = check_replay(engine, setup)
    return {
        "kills": kills,
        "server_starts": sum(p.starts for p in procs),
        "servers": len(procs),
        "database": engine.dialect.name,
        "wall_s": round(wall, 1),
        "orders_acknowledged": len(acked),
        "orders_lost": len(lost),
        "orders_duplicated": len(duplicates),
        "orders_refused": dict(sum((c.refused for c in clients), Counter())),
        "readings_stored": sum(c.readings for c in clients),
        "gates_closed": int(n_gates),
        "gates_fallback": int(fallback),
        "slots": setup.calendar.n_slots,
        "slots_cleared_twice": sum(1 for n in clearing.values() if n > 1),
        "slots_cleared": len(clearing),
        "slots_settled_twice": sum(1 for n in settlement.values() if n > 1),
        "slots_settled": len(settlement),
        "ledger_entries": report.entries,
        "ledger_verify_s": round(verify_s, 2),
        "replay_equal": replayed.equal,
        "replay_differences": replayed.differences[:5],
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--servers", type=int, choices=(1, 2), default=1)
    ap.add_argument(
        "--pg", action="store_true", help="PostgreSQL on 127.0.0.1:5432 instead of SQLite"
    )
    ap.add_argument("--participants", type=int, default=4)
    ap.add_argument("--slot-seconds", type=float, default=1.0)
    args = ap.parse_args()
    figures = run(args.trials, args.servers, args.pg, args.participants, args.slot_seconds)
    print(json.dumps(figures, indent=2))
    ok = (
        figures["orders_lost"] == 0
        and figures["orders_duplicated"] == 0
        and figures["slots_cleared_twice"] == 0
        and figures["slots_settled_twice"] == 0
        and figures["replay_equal"]
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
