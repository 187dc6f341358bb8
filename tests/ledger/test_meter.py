"""Signed meter readings (`ledger.meter`): the message decodes back to the batch (so no two
batches sign the same bytes), an instant signs the same whatever its UTC offset, the payload
carries exactly the signed values, and the topics parse back."""

from __future__ import annotations

import datetime as dt
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.ledger.keys import participant_keys, verify
from peergrid.ledger.meter import (
    READINGS_TAG,
    MeterReading,
    ack_topic,
    encode_payload,
    meter_of_topic,
    readings_message,
    readings_subscription,
    readings_topic,
    time_us,
)

LEDGER = bytes(range(16))
T0 = dt.datetime(2027, 1, 15, 8, 0, tzinfo=dt.UTC)


def _decode(m: bytes) -> tuple[bytes, str, list[tuple[int, float, float, str]]]:
    """The message's parts, read back strictly (the test's own reader of the documented
    layout)."""
    at = len(READINGS_TAG)
    assert m[:at] == READINGS_TAG
    ledger_id, at = m[at : at + 16], at + 16
    k = int.from_bytes(m[at : at + 2], "big")
    name, at = m[at + 2 : at + 2 + k].decode(), at + 2 + k
    n, at = int.from_bytes(m[at : at + 4], "big"), at + 4
    t, at = struct.unpack_from(f">{n}q", m, at), at + 8 * n
    imp, at = struct.unpack_from(f">{n}d", m, at), at + 8 * n
    exp, at = struct.unpack_from(f">{n}d", m, at), at + 8 * n
    units = []
    for _ in range(n):
        k = int.from_bytes(m[at : at + 2], "big")
        units.append(m[at + 2 : at + 2 + k].decode())
        at += 2 + k
    assert at == len(m), "trailing bytes"
    return ledger_id, name, list(zip(t, imp, exp, units, strict=True))


finite = st.floats(allow_nan=False, allow_infinity=False)
readings = st.lists(
    st.builds(
        MeterReading,
        timestamp=st.datetimes(timezones=st.just(dt.UTC)),
        import_register=finite,
        export_register=finite,
        unit=st.text(max_size=4),
    ),
    max_size=5,
)


@settings(max_examples=80, deadline=None)
@given(name=st.text(max_size=8), batch=readings)
def test_message_decodes_to_the_batch(name: str, batch: list[MeterReading]) -> None:
    ledger_id, back_name, rows = _decode(readings_message(LEDGER, name, batch))
    assert ledger_id == LEDGER and back_name == name
    assert rows == [
        (time_us(r.timestamp), r.import_register, r.export_register, r.unit) for r in batch
    ]


def test_an_instant_signs_the_same_in_any_offset_and_needs_one() -> None:
    plus_one = dt.timezone(dt.timedelta(hours=1))
    a = MeterReading(T0, 5231.25, 1802.5, "kWh")
    b = MeterReading(T0.astimezone(plus_one), 5231.25, 1802.5, "kWh")
    assert readings_message(LEDGER, "home-0", [a]) == readings_message(LEDGER, "home-0", [b])
    assert time_us(T0) == 1_800_000_000 * 10**6
    with pytest.raises(ValueError, match="no UTC offset"):
        readings_message(LEDGER, "home-0", [MeterReading(T0.replace(tzinfo=None), 1, 1)])
    with pytest.raises(ValueError, match="16 bytes"):
        readings_message(LEDGER[:8], "home-0", [a])
    # the name and the ledger are signed: the same readings for another meter or market differ
    assert readings_message(LEDGER, "home-1", [a]) != readings_message(LEDGER, "home-0", [a])
    assert readings_message(bytes(16), "home-0", [a]) != readings_message(LEDGER, "home-0", [a])


def test_payload_carries_the_signed_values() -> None:
    key = participant_keys(7, 1)[0]
    batch = [
        MeterReading(T0, 0.1 + 0.2, 1e-7, "kWh"),
        MeterReading(T0 + dt.timedelta(minutes=15), 5231.25, 1802.000000001, "Wh"),
    ]
    body = json.loads(encode_payload(LEDGER, "home-0", key, batch))
    assert set(body) == {"readings", "signature"}
    back = [
        MeterReading(
            dt.datetime.fromisoformat(r["timestamp"]),
            r["import_register"],
            r["export_register"],
            r["unit"],
        )
        for r in body["readings"]
    ]
    assert back == batch
    message = readings_message(LEDGER, "home-0", back)
    assert verify(key.public_key(), bytes.fromhex(body["signature"]), message)
    with pytest.raises(ValueError):  # JSON has no NaN: refused before anything is sent
        encode_payload(LEDGER, "home-0", key, [MeterReading(T0, float("nan"), 0.0)])


def test_topics() -> None:
    hexid = LEDGER.hex()
    assert readings_topic(LEDGER, "home-0") == f"peergrid/{hexid}/meters/home-0/readings"
    assert ack_topic(LEDGER, "home-0") == f"peergrid/{hexid}/meters/home-0/ack"
    assert readings_subscription(LEDGER) == f"peergrid/{hexid}/meters/+/readings"
    assert meter_of_topic(LEDGER, readings_topic(LEDGER, "home-0")) == "home-0"
    for other in (
        readings_topic(bytes(16), "home-0"),
        ack_topic(LEDGER, "home-0"),
        f"peergrid/{hexid}/meters//readings",
        f"peergrid/{hexid}/meters/a/b/readings",
    ):
        assert meter_of_topic(LEDGER, other) is None
