"""The canonical encoding: the fast builder equals the reference one, decoding is exact and
strict."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.ledger import encoding as enc

LEDGER = bytes(range(16))


@settings(max_examples=60, deadline=None)
@given(
    n_p=st.integers(1, 8),
    per=st.lists(st.integers(0, 3), min_size=1, max_size=8),
    seed=st.integers(0, 2**32 - 1),
)
def test_gate_messages_equal_one_message_per_participant(
    n_p: int, per: list[int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    counts = (per * n_p)[:n_p]
    who = np.repeat(np.arange(n_p), counts)
    rng.shuffle(who)
    k = who.size
    slot = rng.integers(0, 100, k)
    side = rng.integers(0, 2, k).astype(np.int8)
    q = rng.uniform(0, 5, k)
    price = rng.uniform(0, 1, k)
    owners, msgs = enc.order_messages(LEDGER, 7, who, slot, side, q, price)
    assert owners.tolist() == sorted(set(who.tolist()))
    for p, m in zip(owners.tolist(), msgs, strict=True):
        sel = np.flatnonzero(who == p)  # stable: the participant's orders in their order
        assert m == enc.order_message(LEDGER, p, 7, slot[sel], side[sel], q[sel], price[sel])
        back = enc.read_order_message(m)
        assert back.participant == p and back.gate_slot == 7 and back.ledger_id == LEDGER
        np.testing.assert_array_equal(back.quantity_kwh, q[sel])
        np.testing.assert_array_equal(back.limit_price, price[sel])
        np.testing.assert_array_equal(back.slot, slot[sel])


def test_decoding_is_strict() -> None:
    body = enc.meter_body(np.array([1.5, -2.0]))
    data = enc.entry(enc.Kind.METER, 3, body)
    kind, slot, r = enc.read_header(data)
    assert (kind, slot) == (enc.Kind.METER, 3)
    np.testing.assert_array_equal(enc.read_meter(r), [1.5, -2.0])
    with pytest.raises(enc.FormatError, match="trailing"):
        enc.read_meter(enc.read_header(data + b"\x00")[2])
    with pytest.raises(enc.FormatError, match="truncated"):
        enc.read_meter(enc.read_header(data[:-1])[2])
    with pytest.raises(enc.FormatError, match="version"):
        enc.read_header(data[:2] + b"\x09" + data[3:])
    with pytest.raises(enc.FormatError, match="kind"):
        enc.read_header(data[:3] + b"\x63" + data[4:])


def test_tree_head_bytes_round_trip() -> None:
    head = enc.tree_head(LEDGER, 12, 5, b"\xab" * 32)
    assert enc.read_tree_head(head) == (LEDGER, 12, 5, b"\xab" * 32)
    assert head.startswith(b"peergrid-sth/v1")
