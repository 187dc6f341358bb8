"""Load on the live server: signed orders at a fixed rate, open loop, latency from the intended
send time.

A market of `--participants` members runs on a real database (a SQLite file, or a fresh
PostgreSQL database with `--pg`) behind one `peergrid serve` process on loopback; its clock
clears every gate meanwhile. The client pre-signs every submission (each a participant's orders
for a gate that is open at its send time, with its own Idempotency-Key), then sends them at
exactly `--rate` per second for `--seconds`, each at its intended time whether or not earlier
ones have been answered (open loop: a slow server cannot slow the offered load down, so queueing
shows in the latency, which is measured from the intended send time to the response). The
reference is `GET /v1/health` offered the same way at the same rate in the same process: what
the HTTP stack alone costs on this machine.

    python benchmarks/bench_live_load.py                 # SQLite, 200/s for 60 s
    python benchmarks/bench_live_load.py --pg            # PostgreSQL
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from peergrid.ledger import encoding as enc
from peergrid.ledger.keys import participant_keys, public_bytes
from peergrid.markets.base import Side
from peergrid.scenario.load import load_scenario
from peergrid.server.admin import add_participant
from peergrid.server.db import engine_for, migrate
from peergrid.server.market import open_market
from peergrid.server.schema import orders


def _load_module() -> Any:
    import importlib.util
    import sys

    path = Path(__file__).with_name("live_crash.py")
    spec = importlib.util.spec_from_file_location("live_crash", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["live_crash"] = module
    spec.loader.exec_module(module)
    return module


def _raw(method: str, path: str, headers: dict[str, str], body: Any) -> bytes:
    """One HTTP/1.1 request as bytes (built before the clock starts)."""
    data = b"" if body is None else json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


class _Pool:
    """Keep-alive connections to the server; a request takes a free one or opens one (so the
    offered load never waits for a connection: open loop). The client is a few lines of asyncio
    on purpose: a full HTTP client costs more CPU per request than the server's own work, on the
    same two cores."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.free: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def send(self, raw: bytes) -> int:
        for attempt in range(2):  # a kept-alive connection the server closed: again on a new one
            if self.free and attempt == 0:
                reader, writer = self.free.pop()
            else:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                self.opened += 1
            writer.write(raw)
            status = await reader.readline()
            if status:
                break
            writer.close()
        code = int(status.split()[1])
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await reader.readexactly(length)
        self.free.append((reader, writer))
        return code

    def close(self) -> None:
        for _, w in self.free:
            w.close()


async def _offer(port: int, requests: list[bytes], rate: float) -> tuple[np.ndarray, list[int]]:
    """Send `requests` at `rate` per second, open loop; returns each one's latency from its
    intended send time [s] and its status (0: transport error)."""
    n = len(requests)
    latency = np.full(n, np.nan)
    codes = [0] * n
    pool = _Pool(port)

    async def one(k: int, intended: float) -> None:
        try:
            codes[k] = await pool.send(requests[k])
        except (OSError, ValueError, asyncio.IncompleteReadError):
            codes[k] = 0
        latency[k] = time.perf_counter() - intended

    # the client's own garbage collector must not pause the offered load (its heap holds every
    # pre-built request): collect once, then not at all while sending
    gc.collect()
    gc.freeze()
    gc.disable()
    tasks = []
    t0 = time.perf_counter() + 0.2
    for k in range(n):
        intended = t0 + k / rate
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(k, intended)))
    await asyncio.gather(*tasks)
    gc.enable()
    gc.unfreeze()
    pool.close()
    return latency, codes


def _cpu_s(pid: int) -> float:
    """CPU time of a process so far (user + system) [s] (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stats(latency: np.ndarray, codes: list[int], seconds: float) -> dict[str, Any]:
    ok = np.array([200 <= c < 300 for c in codes])
    ms = latency * 1000.0
    per = max(1, len(codes) // 6)  # the p99 of each sixth of the run: steady, or drifting?
    windows = [round(float(np.percentile(ms[i : i + per], 99)), 1) for i in range(0, len(ms), per)]
    return {
        "p99_ms_by_sixth": windows[:6],
        "sent": len(codes),
        "ok": int(ok.sum()),
        "ok_per_s": round(float(ok.sum()) / seconds, 1),
        "statuses": {str(c): codes.count(c) for c in sorted(set(codes))},
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def run(
    rate: float = 200.0,
    seconds: float = 60.0,
    pg: bool = False,
    n_participants: int = 50,
    slot_seconds: float = 5.0,
) -> dict[str, Any]:
    """The load benchmark (module docstring); returns the figures."""
    harness = _load_module()
    tmp = Path(tempfile.mkdtemp(prefix="peergrid-load-"))
    url, db_name = harness.scratch_database(pg, tmp, "load")
    engine = engine_for(url)
    server = None
    try:
        migrate(engine)
        keys = participant_keys(5, n_participants)
        tokens = [
            add_participant(engine, f"home-{i}", "participant", public_bytes(k).hex()).token
            for i, k in enumerate(keys)
        ]
        sc = load_scenario("demo")
        sc = sc.model_copy(
            update={"market": sc.market.model_copy(update={"gate_closure": "intraday 1"})}
        )
        warmup_s = 3.0
        start = math.ceil(time.time() / slot_seconds) * slot_seconds + 2 * slot_seconds
        n_slots = math.ceil((seconds * 2 + 40) / slot_seconds) + 4
        setup = open_market(
            engine, sc, start_unix_s=start, slot_seconds=slot_seconds, n_slots=n_slots
        )
        server = harness.Server(url, tmp / "server.log")
        server.start()
        wait = start + 0.1 - time.time()
        if wait > 0:
            time.sleep(wait)
        # the reference: the HTTP stack alone, offered the same way
        n = int(rate * min(seconds, 10.0))
        health = _raw("GET", "/v1/health", {}, None)
        ref_lat, ref_codes = asyncio.run(_offer(server.port, [health] * n, rate))
        reference = _stats(ref_lat, ref_codes, n / rate)
        # the orders: pre-signed, each for the gate that is open two slots ahead of its send time
        n = int(rate * seconds)
        t_send0 = time.time() + warmup_s
        reqs = []
        ledger_id = setup.genesis.ledger_id
        for k in range(n):
            t = t_send0 + k / rate
            current = math.floor((t - start) / slot_seconds)
            gate_slot = current + 2
            slot = gate_slot + 1
            i = k % n_participants
            q = round(0.1 + (k % 7) * 0.05, 3)
            side = Side.SELL if i % 2 == 0 else Side.BUY
            price = 0.12 if side == Side.SELL else 0.28
            msg = enc.order_message(
                ledger_id,
                i,
                gate_slot,
                np.array([slot], np.int64),
                np.array([side], np.int8),
                np.array([q]),
                np.array([price]),
            )
            body = {
                "gate_slot": gate_slot,
                "orders": [
                    {
                        "slot": slot,
                        "side": "sell" if side == Side.SELL else "buy",
                        "quantity_kwh": q,
                        "limit_price": price,
                    }
                ],
                "signature": keys[i].sign(msg).hex(),
            }
            headers = {"Authorization": f"Bearer {tokens[i]}", "Idempotency-Key": f"load-{k}"}
            reqs.append(_raw("POST", "/v1/orders", headers, body))
        wait = t_send0 - time.time()
        if wait > 0:
            time.sleep(wait)
        cpu0, own0 = _cpu_s(server.proc.pid), time.process_time()
        lat, codes = asyncio.run(_offer(server.port, reqs, rate))
        server_cpu, client_cpu = _cpu_s(server.proc.pid) - cpu0, time.process_time() - own0
        figures = _stats(lat, codes, seconds)
        figures["server_cpu_ms_per_order"] = round(server_cpu / n * 1000, 3)
        figures["server_cpu_share_of_a_core"] = round(server_cpu / seconds, 2)
        figures["client_cpu_share_of_a_core"] = round(client_cpu / seconds, 2)
        with engine.connect() as conn:
            stored = int(conn.execute(select(func.count()).select_from(orders)).scalar_one())
        return {
            "database": engine.dialect.name,
            "rate_per_s": rate,
            "seconds": seconds,
            "participants": n_participants,
            "orders": figures,
            "orders_stored": stored,
            "reference_health": reference,
            "p99_ratio_to_reference": round(figures["p99_ms"] / max(reference["p99_ms"], 1e-9), 2),
        }
    finally:
        if server is not None:
            server.stop()
        engine.dispose()
        harness.drop_scratch_database(db_name)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rate", type=float, default=200.0, help="signed orders per second")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument(
        "--pg", action="store_true", help="PostgreSQL on 127.0.0.1:5432 instead of SQLite"
    )
    ap.add_argument("--participants", type=int, default=50)
    args = ap.parse_args()
    print(json.dumps(run(args.rate, args.seconds, args.pg, args.participants), indent=2))


if __name__ == "__main__":
    main()
