"""Signed smart-meter readings over MQTT: the topics, the payload and the bytes a meter signs
(docs/live.md "Meter readings over MQTT").

No network here: the server (`server.mqtt`) and the home agent (`agent.mqtt`) both build on
these functions, so the two sides cannot drift apart.

Topics, one per meter (``<ledger-id>`` is the market's 16-byte ledger id as 32 lower-case hex
digits, ``<name>`` the participant's registered name, which is always one topic level):

- ``peergrid/<ledger-id>/meters/<name>/readings`` — the meter publishes its readings (QoS 1);
- ``peergrid/<ledger-id>/meters/<name>/ack`` — the server answers each message.

Payload: UTF-8 JSON ``{"readings": [...], "signature": HEX}``, the readings being the same
objects as the body of ``POST /v1/readings`` (``timestamp``, ``import_register``,
``export_register``, ``unit``) and the signature the participant's Ed25519 signature (128 hex
digits) over the canonical message:

``b"peergrid-readings/v1" ‖ ledger_id[16] ‖ u16 len ‖ name (UTF-8) ‖ u32 n ‖
i64 time_us[n] ‖ f64 import_register[n] ‖ f64 export_register[n] ‖ (u16 len ‖ unit (UTF-8))[n]``

integers big-endian; ``time_us`` the reading's instant in whole microseconds since
1970-01-01T00:00:00Z (so ``…T21:15:00+00:00`` and ``…T22:15:00+01:00`` sign the same); the
registers IEEE 754 binary64 big-endian, exactly the values the JSON numbers denote, in the
reading's own unit. Like the ledger's order message (`ledger.encoding`) the message is built from
the values, never from the JSON text, so any JSON writer may format the payload; the domain tag,
the ledger id and the name keep a signature from being replayed in another market, for another
meter or as another kind of message, and every variable-length part carries its length, so two
different batches never give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from peergrid.ledger.encoding import LEDGER_ID_SIZE

READINGS_TAG = b"peergrid-readings/v1"
#: The first level of every peergrid topic.
TOPIC_ROOT = "peergrid"

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class MeterReading:
    """A meter's registers at a slot boundary, as it reports them (`POST /v1/readings`).

    Attributes:
        timestamp: the slot boundary, with its UTC offset.
        import_register, export_register: energy imported and exported since installation
            [`unit`].
        unit: "kWh" or "Wh".
    """

    timestamp: dt.datetime
    import_register: float
    export_register: float
    unit: str = "kWh"

    def as_json(self) -> dict[str, Any]:
        """The reading as a JSON object of `POST /v1/readings` (ISO 8601 timestamp)."""
        return {
            "timestamp": self.timestamp.isoformat(),
            "import_register": self.import_register,
            "export_register": self.export_register,
            "unit": self.unit,
        }


def _ledger_hex(ledger_id: bytes) -> str:
    if len(ledger_id) != LEDGER_ID_SIZE:
        raise ValueError(f"a ledger id has {LEDGER_ID_SIZE} bytes, got {len(ledger_id)}")
    return ledger_id.hex()


def readings_topic(ledger_id: bytes, name: str) -> str:
    """The topic a meter publishes its readings on."""
    return f"{TOPIC_ROOT}/{_ledger_hex(ledger_id)}/meters/{name}/readings"


def ack_topic(ledger_id: bytes, name: str) -> str:
    """The topic the server answers a meter's messages on."""
    return f"{TOPIC_ROOT}/{_ledger_hex(ledger_id)}/meters/{name}/ack"


def readings_subscription(ledger_id: bytes) -> str:
    """The topic filter of every meter's readings of one market."""
    return readings_topic(ledger_id, "+")


def meter_of_topic(ledger_id: bytes, topic: str) -> str | None:
    """The participant name of a readings topic of this market (None: not one)."""
    parts = topic.split("/")
    if (
        len(parts) != 5
        or parts[0] != TOPIC_ROOT
        or parts[1] != _ledger_hex(ledger_id)
        or parts[2] != "meters"
        or parts[4] != "readings"
        or not parts[3]
    ):
        return None
    return parts[3]


def time_us(timestamp: dt.datetime) -> int:
    """A timestamp as whole microseconds since the Unix epoch (UTC) [µs].

    Raises:
        ValueError: the timestamp has no UTC offset.
    """
    if timestamp.tzinfo is None or timestamp.utcoffset() is None:
        raise ValueError(f"{timestamp.isoformat()} has no UTC offset")
    return (timestamp - _EPOCH) // _MICROSECOND


def _str(s: str) -> bytes:
    raw = s.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return len(raw).to_bytes(2, "big") + raw


def readings_message(ledger_id: bytes, name: str, readings: Sequence[MeterReading]) -> bytes:
    """The canonical bytes a meter signs for a batch of its readings (module docstring).

    Raises:
        ValueError: a ledger id that is not 16 bytes, or a timestamp without a UTC offset.
    """
    n = len(readings)
    return b"".join(
        [
            READINGS_TAG,
            bytes.fromhex(_ledger_hex(ledger_id)),
            _str(name),
            n.to_bytes(4, "big"),
            struct.pack(f">{n}q", *(time_us(r.timestamp) for r in readings)),
            struct.pack(f">{n}d", *(r.import_register for r in readings)),
            struct.pack(f">{n}d", *(r.export_register for r in readings)),
            *(_str(r.unit) for r in readings),
        ]
    )


def encode_payload(
    ledger_id: bytes, name: str, key: Ed25519PrivateKey, readings: Sequence[MeterReading]
) -> bytes:
    """The MQTT payload of a batch: the readings and the meter's signature, UTF-8 JSON."""
    signature = key.sign(readings_message(ledger_id, name, readings))
    body = {"readings": [r.as_json() for r in readings], "signature": signature.hex()}
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")


def payload_sha256(payload: bytes) -> str:
    """The hex SHA-256 of a payload: the server's ack names the message it answers by it."""
    return hashlib.sha256(payload).hexdigest()
