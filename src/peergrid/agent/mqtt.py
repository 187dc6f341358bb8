"""A meter's side of readings over MQTT: publish a signed batch and wait for the server's ack
(docs/live.md "Meter readings over MQTT"; topics, payload and signature: `ledger.meter`).

One call is one short connection: subscribe to the meter's ack topic, publish the payload with
QoS 1, wait for the ack that names this payload's SHA-256, disconnect. An ack with status 503 or
500, or none in time, means: send the same payload again later (readings are idempotent).
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from peergrid.ledger.meter import (
    MeterReading,
    ack_topic,
    encode_payload,
    payload_sha256,
    readings_topic,
)


def publish_readings(
    host: str,
    port: int,
    ledger_id: bytes,
    name: str,
    key: Ed25519PrivateKey,
    readings: Sequence[MeterReading],
    *,
    timeout_s: float = 10.0,
    wait_ack: bool = True,
) -> dict[str, Any] | None:
    """Sign `readings` with the participant's `key` and publish them on its meter's topic.

    Returns the server's ack (JSON: `status`, and `stored`/`duplicates`/`late` or `detail`), or
    None without `wait_ack`.

    Raises:
        OSError: the broker cannot be reached.
        TimeoutError: no subscription, publication or ack within `timeout_s` [s].
    """
    payload = encode_payload(ledger_id, name, key, readings)
    return publish_payload(
        host, port, ledger_id, name, payload, timeout_s=timeout_s, wait_ack=wait_ack
    )


def publish_payload(
    host: str,
    port: int,
    ledger_id: bytes,
    name: str,
    payload: bytes,
    *,
    timeout_s: float = 10.0,
    wait_ack: bool = True,
) -> dict[str, Any] | None:
    """Publish a ready payload on `name`'s readings topic (QoS 1); with `wait_ack`, return the
    server's ack of it (`publish_readings`)."""
    deadline = time.monotonic() + timeout_s
    digest = payload_sha256(payload)
    acks: queue.Queue[dict[str, Any]] = queue.Queue()
    ready = threading.Event()
    refused: list[str] = []

    def on_connect(
        client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if reason.is_failure:
            refused.append(str(reason))
            ready.set()
        elif wait_ack:
            client.subscribe(ack_topic(ledger_id, name), qos=1)
        else:
            ready.set()

    def on_subscribe(
        client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        if any(r.is_failure for r in reasons):
            refused.append(f"subscription to {ack_topic(ledger_id, name)} refused")
        ready.set()

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(body, dict) and body.get("payload_sha256") == digest:
            acks.put(body)

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"peergrid-meter-{name}-{secrets.token_hex(4)}",
        protocol=mqtt.MQTTv311,
    )
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(host, port, keepalive=max(5, int(timeout_s) + 5))
    client.loop_start()
    try:
        if not ready.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"the broker {host}:{port} did not answer in {timeout_s:g} s")
        if refused:
            raise ConnectionRefusedError(f"the broker {host}:{port} refused: {refused[0]}")
        info = client.publish(readings_topic(ledger_id, name), payload, qos=1)
        info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        if not info.is_published():
            raise TimeoutError(f"the broker did not take the readings in {timeout_s:g} s")
        if not wait_ack:
            return None
        try:
            return acks.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"no ack from the server in {timeout_s:g} s") from None
    finally:
        client.disconnect()
        client.loop_stop()
