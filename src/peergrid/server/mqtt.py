"""Smart-meter readings over MQTT (docs/live.md "Meter readings over MQTT").

The server subscribes (QoS 1) to ``peergrid/<ledger-id>/meters/+/readings`` on the broker given
by ``peergrid serve --mqtt HOST:PORT``. Each message is one meter's batch, signed with its
participant's Ed25519 key (topics, payload and signed bytes: `ledger.meter`). A broker is open
to whoever can reach it, so the topic names the meter but proves nothing: a batch is stored only
when its signature verifies against the key the market's GENESIS holds for that name. It then
goes through `store_readings(..., source="mqtt")`, the same checks as ``POST /v1/readings``.

The server answers every message on ``peergrid/<ledger-id>/meters/<name>/ack`` with JSON: the
status, ``payload_sha256`` (which message this answers) and either what was stored (200:
``stored``, ``duplicates``, ``late``) or why not (``detail``):

- 400 the payload is not a JSON object; 413 it is larger than `MAX_PAYLOAD_BYTES`;
- 404 no member of the market has the topic's name;
- 422 the payload does not have the schema, or a reading is invalid (`server.readings`);
- 401 the signature does not verify with the member's key;
- 409 a different reading for the same instant is stored already;
- 503 the server is busy or its database unreachable: send the same payload again later;
- 500 an unexpected error (logged, and kept in the counters).

A meter should send a batch again until it has an ack that is not 503 or 500: readings are
idempotent (a reading identical to a stored one is a no-op), so the redeliveries of QoS 1 and
a meter's own retries are harmless.

Threads: paho's network thread (`loop_start`, reconnecting with `reconnect_delay_set` after the
broker goes away, resubscribing on every connect) only parses the topic and hands the message to
one worker thread through a bounded queue; the worker does the database work and publishes the
ack. When the queue is full, the message is answered 503 at once.
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from peergrid.errors import InputError
from peergrid.ledger.keys import load_public_key, verify
from peergrid.ledger.meter import (
    MeterReading,
    ack_topic,
    meter_of_topic,
    payload_sha256,
    readings_message,
    readings_subscription,
)
from peergrid.server.market import MarketSetup
from peergrid.server.readings import (
    MAX_READINGS,
    ReadingIn,
    ReadingRefused,
    ReadingsIn,
    store_readings,
)

log = logging.getLogger(__name__)

#: The largest payload accepted [bytes] (a full batch of `MAX_READINGS` readings is ~150 kB).
MAX_PAYLOAD_BYTES = 512 * 1024
#: Messages waiting for the worker before new ones are answered 503.
QUEUE_SIZE = 256
DEFAULT_PORT = 1883


class MeterPayload(BaseModel):
    """A meter's MQTT message: a batch of readings and the meter's signature."""

    model_config = ConfigDict(extra="forbid")

    readings: list[ReadingIn] = Field(min_length=1, max_length=MAX_READINGS)
    signature: str = Field(
        pattern=r"^[0-9a-fA-F]{128}$",
        description="Ed25519 signature over ledger.meter.readings_message, hex",
    )


def broker_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6-address]:PORT``; the port defaults to 1883) as (host, port).

    Raises:
        InputError: not a host and port.
    """
    host, sep, port = text.strip().rpartition(":")
    if not sep or "]" in port:
        host, port = text.strip(), str(DEFAULT_PORT)
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"expected HOST:PORT, got {text!r}", source="--mqtt")
    return host, int(port)


def _validation_detail(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        where = ".".join(str(x) for x in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else err["msg"])
    more = e.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _refused(status: int, detail: str) -> dict[str, Any]:
    return {"status": status, "detail": detail}


def handle_payload(
    engine: Engine, setup: MarketSetup, name: str, payload: bytes, now_s: float
) -> dict[str, Any]:
    """Authenticate and store one meter's message; the ack's body without `payload_sha256`
    (module docstring). `now_s`: the server's clock [s since the epoch]."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return _refused(413, f"the payload has {len(payload)} bytes; at most {MAX_PAYLOAD_BYTES}")
    try:
        index = setup.names.index(name)
    except ValueError:
        return _refused(404, f"no member of this market is named {name!r}")
    try:
        # Python's parser rounds every number correctly, so the registers are exactly the
        # values the meter signed whatever JSON writer it used
        raw = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return _refused(400, f"the payload is not UTF-8 JSON: {e}")
    if not isinstance(raw, dict):
        return _refused(400, "the payload must be a JSON object {readings, signature}")
    try:
        body = MeterPayload.model_validate(raw)
    except ValidationError as e:
        return _refused(422, _validation_detail(e))
    try:
        message = readings_message(
            setup.genesis.ledger_id,
            name,
            [
                MeterReading(r.timestamp, r.import_register, r.export_register, r.unit)
                for r in body.readings
            ],
        )
    except ValueError as e:
        return _refused(422, f"readings: a timestamp without a UTC offset ({e})")
    key = load_public_key(setup.genesis.public_keys[index])
    if not verify(key, bytes.fromhex(body.signature), message):
        return _refused(
            401,
            f"signature: does not verify over the canonical readings message with {name!r}'s "
            "public key (ledger.meter.readings_message, docs/live.md)",
        )
    batch = ReadingsIn(readings=body.readings)
    participant_id = int(setup.participant_id[index])
    for attempt in (1, 2):
        try:
            out = store_readings(engine, setup, participant_id, batch, now_s, source="mqtt")
        except ReadingRefused as e:
            return _refused(e.status, e.detail)
        except IntegrityError:
            # the same instant stored concurrently (over HTTP, or by a second server): once
            # more, the stored reading makes this one a duplicate or a conflict
            if attempt == 2:
                return _refused(503, "readings were stored concurrently; send again")
        except OperationalError as e:
            log.warning("meter readings of %s not stored: %s", name, e)
            return _refused(503, "the database is unavailable; send again later")
        else:
            return {"status": 200, **out.model_dump()}
    raise AssertionError("unreachable")  # pragma: no cover


class MqttCounts:
    """What the subscriber did since it started (thread-safe; `snapshot` for the operator)."""

    def __init__(self, broker: str, subscription: str) -> None:
        self._lock = threading.Lock()
        self.broker = broker
        self.subscription = subscription
        self.connected = False
        self.subscribed = False
        self.connects = 0
        self.received = 0
        self.stored = 0
        self.duplicates = 0
        self.late = 0
        self.dropped = 0
        self.refused: collections.Counter[int] = collections.Counter()
        self.errors: collections.deque[str] = collections.deque(maxlen=20)

    def count(self, **by: int) -> None:
        """Add to counters by name."""
        with self._lock:
            for k, v in by.items():
                setattr(self, k, getattr(self, k) + v)

    def answered(self, ack: dict[str, Any]) -> None:
        """Count one message's ack."""
        with self._lock:
            if ack["status"] == 200:
                self.stored += int(ack["stored"])
                self.duplicates += int(ack["duplicates"])
                self.late += int(ack["late"])
            else:
                self.refused[int(ack["status"])] += 1

    def error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)

    def state(self, *, connected: bool | None = None, subscribed: bool | None = None) -> None:
        with self._lock:
            if connected is not None:
                self.connected = connected
                self.connects += int(connected)
            if subscribed is not None:
                self.subscribed = subscribed

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON."""
        with self._lock:
            return {
                "broker": self.broker,
                "subscription": self.subscription,
                "connected": self.connected,
                "subscribed": self.subscribed,
                "connects": self.connects,
                "messages": self.received,
                "readings_stored": self.stored,
                "duplicates": self.duplicates,
                "late": self.late,
                "dropped_busy": self.dropped,
                "refused": {str(k): v for k, v in sorted(self.refused.items())},
                "errors": list(self.errors),
            }


@dataclass(frozen=True)
class _Message:
    name: str
    payload: bytes


class MeterSubscriber:
    """The server's MQTT subscriber of one market's meters (module docstring).

    `now` is the server's clock [s since the epoch]; `reconnect_min_s`, `reconnect_max_s` bound
    the wait between reconnection attempts [s]; `queue_size` the messages waiting for the
    worker."""

    def __init__(
        self,
        engine: Engine,
        setup: MarketSetup,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        now: Callable[[], float] = time.time,
        queue_size: int = QUEUE_SIZE,
        reconnect_min_s: int = 1,
        reconnect_max_s: int = 30,
        keepalive_s: int = 30,
    ) -> None:
        self.engine = engine
        self.setup = setup
        self.host = host
        self.port = port
        self.now = now
        self.keepalive_s = keepalive_s
        self.ledger_id = setup.genesis.ledger_id
        self.subscription = readings_subscription(self.ledger_id)
        self.counts = MqttCounts(f"{host}:{port}", self.subscription)
        self._queue: queue.Queue[_Message | None] = queue.Queue(maxsize=queue_size)
        self._subscribed = threading.Event()
        self._worker: threading.Thread | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"peergrid-server-{self.ledger_id.hex()[:8]}-{secrets.token_hex(4)}",
            protocol=mqtt.MQTTv311,
        )
        self._client.reconnect_delay_set(reconnect_min_s, reconnect_max_s)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    # --- lifecycle (the app's lifespan) -------------------------------------------------------

    def start(self) -> None:
        """Start the worker and connect in the background (retrying until the broker answers)."""
        if self._worker is not None:
            return
        self._worker = threading.Thread(target=self._work, name="peergrid-mqtt-worker", daemon=True)
        self._worker.start()
        self._client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        self._client.loop_start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Answer the messages already received, then disconnect and join the threads."""
        if self._worker is None:
            return
        self._client.on_message = None  # take no new messages
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:  # pragma: no cover - a worker stuck in the database
            log.error("the MQTT worker did not drain its queue in %.0f s", timeout_s)
        self._worker.join(timeout_s)
        self._worker = None
        self._client.disconnect()
        self._client.loop_stop()
        self.counts.state(connected=False, subscribed=False)

    def wait_subscribed(self, timeout_s: float) -> bool:
        """Whether the subscription is in place (waiting up to `timeout_s`)."""
        return self._subscribed.wait(timeout_s)

    # --- paho's network thread -------------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        if reason.is_failure:
            self.counts.error(f"the broker refused the connection: {reason}")
            return
        self.counts.state(connected=True)
        client.subscribe(self.subscription, qos=1)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        self._subscribed.clear()
        self.counts.state(connected=False, subscribed=False)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Any,
    ) -> None:
        if any(r.is_failure for r in reasons):
            self.counts.error(f"the broker refused the subscription {self.subscription}")
            return
        self.counts.state(subscribed=True)
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        name = meter_of_topic(self.ledger_id, msg.topic)
        if name is None:  # pragma: no cover - the subscription admits only readings topics
            return
        self.counts.count(received=1)
        payload = bytes(msg.payload)
        try:
            self._queue.put_nowait(_Message(name, payload))
        except queue.Full:
            self.counts.count(dropped=1)
            self._ack(name, payload, _refused(503, "the server is busy; send again later"))

    # --- the worker ------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                ack = handle_payload(self.engine, self.setup, item.name, item.payload, self.now())
            except Exception as e:
                log.exception("meter readings of %s failed", item.name)
                self.counts.error(f"{type(e).__name__}: {e}")
                ack = _refused(500, "the server failed to handle the readings; send again later")
            self._ack(item.name, item.payload, ack)

    def _ack(self, name: str, payload: bytes, ack: dict[str, Any]) -> None:
        self.counts.answered(ack)
        body = {**ack, "payload_sha256": payload_sha256(payload)}
        self._client.publish(ack_topic(self.ledger_id, name), json.dumps(body), qos=1)
