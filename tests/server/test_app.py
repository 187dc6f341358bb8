"""The HTTP API's first endpoints, in process on both databases and as a real `peergrid serve`
process on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from peergrid.ledger.keys import participant_keys, public_bytes
from peergrid.server.admin import add_participant
from peergrid.server.app import create_app
from peergrid.server.db import engine_for, migrate

KEY = public_bytes(participant_keys(3, 1)[0]).hex()


def test_health_identity_and_401(db_url: str) -> None:
    engine = engine_for(db_url)
    migrate(engine)
    reg = add_participant(engine, "house-1", "participant", KEY)
    with TestClient(create_app(engine)) as client:
        health = client.get("/v1/health").json()
        assert health == {
            "status": "ok",
            "database": engine.dialect.name,
            "revision": "0003",
            "market": False,
        }
        me = client.get("/v1/me", headers={"Authorization": f"Bearer {reg.token}"})
        assert me.status_code == 200
        assert me.json() == {"id": reg.id, "name": "house-1", "role": "participant"}
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eA=="}):
            r = client.get("/v1/me", headers=headers)
            assert r.status_code == 401 and "API token" in r.json()["detail"]
            assert r.headers["www-authenticate"] == "Bearer"
        spec = client.get("/openapi.json").json()
        assert {"/v1/health", "/v1/me"} <= set(spec["paths"])
        assert client.get("/docs").status_code == 404  # no CDN-loaded page offline
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_peergrid_serve_answers_on_loopback(tmp_path: Path) -> None:
    port = _free_port()
    url = f"sqlite:///{tmp_path / 'p.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "peergrid.cli", "serve", "--db", url, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the server did not answer in 30 s"
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["database"] == "sqlite"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
