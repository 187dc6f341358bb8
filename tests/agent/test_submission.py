"""From a gate's books to each home's signed submission: the server's own message rebuilt from
the JSON body verifies, and every order lies inside the market's floor, cap and capacity."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import numpy as np

from peergrid.agent.submission import clipped, gate_orders, signed_body
from peergrid.ledger.keys import participant_keys, verify
from peergrid.markets.base import Side
from peergrid.server.orders import OrdersIn, message_of
from peergrid.settlement.slot import orders_from_net

LEDGER_ID = bytes(range(16))
KEYS = participant_keys(11, 3)


def books() -> list[Any]:
    """Two slots of three homes: home 0 buys, home 1 sells, home 2 is idle in slot 0 and wants
    more than its connection carries in slot 1."""
    buy = np.array([0.30, 0.28, 0.31])
    sell = np.array([0.12, 0.15, 0.10])
    return [
        orders_from_net(np.array([-0.4, 0.25, 0.0]), buy, sell),
        orders_from_net(np.array([-0.2, 0.5, -9.0]), buy, sell),
    ]


def server_message(body: dict[str, Any], index: int) -> bytes:
    """The bytes the server checks the signature against, from the body as it arrives."""
    received = OrdersIn.model_validate(json.loads(json.dumps(body)))
    setup: Any = SimpleNamespace(genesis=SimpleNamespace(ledger_id=LEDGER_ID))
    return message_of(setup, index, received)


def test_gate_orders_gather_every_home_in_slot_order() -> None:
    o = gate_orders(7, 8, books())
    assert o.gate_slot == 7
    assert o.home.tolist() == [0, 1, 0, 1, 2]
    assert o.slot.tolist() == [8, 8, 9, 9, 9]
    assert o.side.tolist() == [Side.BUY, Side.SELL, Side.BUY, Side.SELL, Side.BUY]
    assert np.allclose(o.quantity_kwh, [0.4, 0.25, 0.2, 0.5, 9.0])


def test_clipping_to_floor_cap_and_capacity() -> None:
    cap_kwh = np.array([6.0, 6.0, 6.0])  # 24 kW for 15 minutes
    o = clipped(gate_orders(7, 8, books()), 0.05, 1.0, cap_kwh)
    assert o.limit_price.tolist() == [0.30, 0.15, 0.30, 0.15, 0.31]  # inside: unchanged
    assert o.quantity_kwh.tolist() == [0.4, 0.25, 0.2, 0.5, 6.0]  # 9 kWh → the capacity
    tight = clipped(gate_orders(7, 8, books()), 0.2, 0.3, cap_kwh)
    assert tight.limit_price.tolist() == [0.30, 0.2, 0.30, 0.2, 0.3]  # floor for the seller
    # a home that may not take anything has no order left
    none = clipped(gate_orders(7, 8, books()), 0.0, 1.0, np.array([1.0, 0.0, 1.0]))
    assert 1 not in none.home.tolist()


def test_signed_body_verifies_over_the_servers_message() -> None:
    o = clipped(gate_orders(7, 8, books()), 0.05, 1.0, np.full(3, 6.0))
    for home, index in ((0, 0), (1, 2), (2, 1)):  # a home's ledger index is the market's
        body = signed_body(o.of_home(home), KEYS[index], LEDGER_ID, index)
        assert body["gate_slot"] == 7
        assert [x["slot"] for x in body["orders"]] == o.of_home(home).slot.tolist()
        signature = bytes.fromhex(body["signature"])
        assert verify(KEYS[index].public_key(), signature, server_message(body, index))
        # signed for another member, another market or another key: refused
        other = (index + 1) % 3
        assert not verify(KEYS[index].public_key(), signature, server_message(body, other))
        assert not verify(KEYS[other].public_key(), signature, server_message(body, index))
    body = signed_body(o.of_home(1), KEYS[1], LEDGER_ID, 1)
    assert [(x["side"], x["quantity_kwh"], x["limit_price"]) for x in body["orders"]] == [
        ("sell", 0.25, 0.15),
        ("sell", 0.5, 0.15),
    ]
