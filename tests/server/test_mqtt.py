"""Meter readings over MQTT against the machine's Mosquitto on loopback (../shared/SERVICES.md):
signed batches stored with source "mqtt" on both databases and acknowledged, refusals that say
why and store nothing, redeliveries that are no-ops, a reconnection after the broker went away,
and a real `peergrid serve --mqtt` process."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from peergrid.agent.mqtt import publish_payload, publish_readings
from peergrid.errors import InputError
from peergrid.ledger.keys import participant_keys, public_bytes
from peergrid.ledger.meter import MeterReading, encode_payload
from peergrid.server.admin import add_participant
from peergrid.server.app import create_app
from peergrid.server.db import engine_for, migrate
from peergrid.server.mqtt import MeterSubscriber, broker_address
from peergrid.server.schema import readings
from tests.server.live_market import SLOT_S, START, Live, open_live

HOST, PORT = "127.0.0.1", 1883
WAIT_S = 5.0


@pytest.fixture(scope="module")
def broker() -> tuple[str, int]:
    """The loopback Mosquitto; the module is skipped when nothing answers there."""
    try:
        with socket.create_connection((HOST, PORT), timeout=1):
            pass
    except OSError as e:
        pytest.skip(
            f"no MQTT broker answers on {HOST}:{PORT} ({e}); start it with "
            "`mosquitto -d -c /etc/mosquitto/mosquitto.conf` (../shared/SERVICES.md)"
        )
    return HOST, PORT


def _at(b: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(START + b * SLOT_S, tz=dt.UTC)


def _batch(*rows: tuple[int, float, float]) -> list[MeterReading]:
    return [MeterReading(_at(b), imp, exp, "kWh") for b, imp, exp in rows]


def _until(cond: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"{what} within {timeout_s:g} s"
        time.sleep(0.02)


@contextmanager
def _serving(db_url: str, mqtt: tuple[str, int]) -> Iterator[tuple[Live, TestClient, FastAPI]]:
    """A small market whose app takes readings over MQTT, its fake clock at boundary 3."""
    live, _ = open_live(db_url)
    live.clock.t = START + 3 * SLOT_S
    app = create_app(live.engine, now=live.clock, run_clock=False, mqtt=mqtt)
    try:
        with TestClient(app) as client:
            assert app.state.mqtt.wait_subscribed(WAIT_S), "the server did not subscribe"
            yield live, client, app
    finally:
        live.engine.dispose()


def _stored(live: Live, i: int) -> list[tuple[int, float, str]]:
    r = readings.c
    with live.engine.connect() as conn:
        rows = conn.execute(
            select(r.boundary, r.import_register_kwh, r.source)
            .where(r.participant_id == live.members[i].id)
            .order_by(r.boundary)
        ).all()
    return [tuple(x) for x in rows]


def test_signed_readings_are_stored_acked_and_refusals_say_why(
    db_url: str, broker: tuple[str, int]
) -> None:
    host, port = broker
    with _serving(db_url, broker) as (live, client, _app):
        lid = live.setup.genesis.ledger_id
        batch = _batch((0, 100.0, 20.0), (1, 100.5, 20.25), (2, 101.0, 20.5))
        payload = encode_payload(lid, "home-0", live.keys[0], batch)

        def send(name: str, body: bytes) -> dict[str, Any]:
            ack = publish_payload(host, port, lid, name, body, timeout_s=WAIT_S)
            assert ack is not None
            return ack

        ack = publish_readings(host, port, lid, "home-0", live.keys[0], batch, timeout_s=WAIT_S)
        assert ack is not None and ack["status"] == 200
        assert (ack["stored"], ack["duplicates"], ack["late"]) == (3, 0, 0)
        assert _stored(live, 0) == [(0, 100.0, "mqtt"), (1, 100.5, "mqtt"), (2, 101.0, "mqtt")]
        # the participant sees them over HTTP, marked as come over MQTT
        raw = client.get("/v1/readings", headers=live.auth(live.members[0])).json()["raw"]
        assert [(x["boundary"], x["source"]) for x in raw] == [
            (0, "mqtt"),
            (1, "mqtt"),
            (2, "mqtt"),
        ]

        # a redelivery (QoS 1 may deliver twice; a meter retries without an ack) is a no-op
        again = send("home-0", payload)
        assert again["status"] == 200 and (again["stored"], again["duplicates"]) == (0, 3)
        assert len(_stored(live, 0)) == 3

        good_1 = _batch((3, 7.0, 0.0))
        forged = json.loads(encode_payload(lid, "home-1", live.keys[1], good_1))
        forged["signature"] = live.keys[1].sign(b"something else").hex()
        refusals: list[tuple[str, bytes, int, str]] = [
            ("home-1", json.dumps(forged).encode(), 401, "does not verify"),
            # home-0's key signing for home-1's meter
            ("home-1", encode_payload(lid, "home-1", live.keys[0], good_1), 401, "'home-1'"),
            # home-0's own valid batch replayed on home-1's topic
            ("home-1", payload, 401, "does not verify"),
            ("home-1", b'{"readings": [', 400, "not UTF-8 JSON"),
            ("home-1", b"\xff\xfe", 400, "not UTF-8 JSON"),
            ("home-1", b"[1, 2]", 400, "JSON object"),
            ("home-1", json.dumps({"readings": forged["readings"]}).encode(), 422, "signature"),
            (
                "home-1",
                encode_payload(lid, "home-1", live.keys[1], _batch((3, -1.0, 0.0))),
                422,
                "negative",
            ),
            (
                "home-1",
                encode_payload(lid, "home-1", live.keys[1], [MeterReading(_at(2), 1, 1, "MWh")]),
                422,
                "unit",
            ),
            (
                "home-0",
                encode_payload(lid, "home-0", live.keys[0], _batch((1, 100.75, 20.25))),
                409,
                "different reading",
            ),
            ("nobody", payload, 404, "no member"),
        ]
        for name, body, status, why in refusals:
            ack = send(name, body)
            assert ack["status"] == status and why in ack["detail"], (name, body[:60], ack)
        assert _stored(live, 1) == []
        assert len(_stored(live, 0)) == 3

        status = client.get("/v1/operator/status", headers=live.auth(live.operator)).json()
        counts = status["mqtt"]
        assert counts["connected"] and counts["subscribed"] and counts["connects"] == 1
        assert counts["messages"] == 2 + len(refusals)
        assert (counts["readings_stored"], counts["duplicates"]) == (3, 3)
        assert counts["refused"] == {"400": 3, "401": 3, "404": 1, "409": 1, "422": 3}
        assert counts["errors"] == [] and counts["dropped_busy"] == 0


class _Relay:
    """A TCP relay from loopback to the broker whose connections the test can cut: the broker
    going away, as the server sees it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = int(self.listener.getsockname()[1])
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.pumps: list[threading.Thread] = []
        self.accepted = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, name="test-relay")
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                near, _ = self.listener.accept()
            except TimeoutError:
                continue
            near.settimeout(None)
            far = socket.create_connection(self.target, timeout=2)
            far.settimeout(None)
            with self._lock:
                self.accepted += 1
                self.pairs.append((near, far))
                for a, b in ((near, far), (far, near)):
                    t = threading.Thread(target=self._pump, args=(a, b), name="test-relay-pump")
                    t.start()
                    self.pumps.append(t)

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every relayed connection."""
        with self._lock:
            pairs, self.pairs = self.pairs, []
            pumps, self.pumps = self.pumps, []
        for pair in pairs:
            for s in pair:
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        for t in pumps:
            t.join(WAIT_S)
        for pair in pairs:
            for s in pair:
                s.close()

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(WAIT_S)
        self.cut()
        self.listener.close()


def test_the_subscriber_reconnects_after_the_broker_went_away(
    tmp_path: Path, broker: tuple[str, int]
) -> None:
    relay = _Relay(broker)
    try:
        with _serving(f"sqlite:///{tmp_path / 'p.db'}", ("127.0.0.1", relay.port)) as served:
            live, _client, app = served
            lid = live.setup.genesis.ledger_id
            ack = publish_readings(*broker, lid, "home-2", live.keys[2], _batch((0, 1.0, 0.0)))
            assert ack is not None and ack["stored"] == 1
            relay.cut()
            _until(lambda: app.state.mqtt.counts.connects >= 2, "reconnected", timeout_s=10)
            assert app.state.mqtt.wait_subscribed(WAIT_S), "resubscribed"
            ack = publish_readings(*broker, lid, "home-2", live.keys[2], _batch((1, 1.5, 0.0)))
            assert ack is not None and ack["stored"] == 1
            assert [b for b, _, _ in _stored(live, 2)] == [0, 1]
            assert relay.accepted == 2
    finally:
        relay.close()


def test_a_subscriber_without_a_broker_starts_and_stops(tmp_path: Path) -> None:
    live, _ = open_live(f"sqlite:///{tmp_path / 'p.db'}")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    sub = MeterSubscriber(live.engine, live.setup, "127.0.0.1", port)
    t0 = time.monotonic()
    sub.start()
    assert not sub.wait_subscribed(0.3)
    sub.stop()
    assert time.monotonic() - t0 < 3.0
    snap = sub.counts.snapshot()
    assert not snap["connected"] and snap["connects"] == 0 and snap["broker"] == f"127.0.0.1:{port}"
    live.engine.dispose()


def test_broker_address() -> None:
    assert broker_address("127.0.0.1:1883") == ("127.0.0.1", 1883)
    assert broker_address("mqtt.local") == ("mqtt.local", 1883)
    assert broker_address("[::1]:1884") == ("::1", 1884)
    assert broker_address("[::1]") == ("::1", 1883)
    for bad in ("", ":1883", "host:port", "host:0", "host:70000"):
        with pytest.raises(InputError, match="HOST:PORT"):
            broker_address(bad)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_peergrid_serve_takes_readings_over_mqtt(tmp_path: Path, broker: tuple[str, int]) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    engine = engine_for(url)
    migrate(engine)
    key = participant_keys(11, 1)[0]
    add_participant(engine, "home-a", "participant", public_bytes(key).hex())
    engine.dispose()
    # a market that started two 10-s slots ago, so boundary 1 has passed
    start = dt.datetime.fromtimestamp((int(time.time()) // 10 - 2) * 10, tz=dt.UTC)
    port = _free_port()
    cmd = [sys.executable, "-m", "peergrid.cli", "serve", "--db", url, "--port", str(port)]
    cmd += ["--scenario", "demo", "--start", start.isoformat(), "--slot-seconds", "10"]
    cmd += ["--slots", "8", "--mqtt", f"{broker[0]}:{broker[1]}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                market = httpx.get(f"http://127.0.0.1:{port}/v1/market", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the server did not answer in 30 s"
                time.sleep(0.1)
        lid = bytes.fromhex(market.json()["ledger_id"])
        reading = [MeterReading(start + dt.timedelta(seconds=10), 3.0, 1.0, "kWh")]
        # the subscription may lag the HTTP port by a moment: retry until acked
        ack = None
        while ack is None:
            try:
                ack = publish_readings(*broker, lid, "home-a", key, reading, timeout_s=1)
            except TimeoutError:
                assert time.monotonic() < deadline, "no ack from `peergrid serve --mqtt`"
        assert ack["status"] == 200 and ack["stored"] == 1, ack
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
